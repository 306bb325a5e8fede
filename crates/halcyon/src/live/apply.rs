//! `halcyon apply DIR` (Serviceguard `cmapplyconf`, HACMP DARE): check the directory as
//! `halcyon check` does, show what differs from the running configuration field by field
//! and the plan of the `config_change`, ask, then stage it on the cluster and wait for
//! the change to end. The daemon loads and checks the files again and decides (see
//! `halcyon_daemon::reconfigure`); this side only reads, shows and asks.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use halcyon_api::{ApplyPreview, ApplyRequest, ConfigFile, ConfigResponse};
use halcyon_config::Config;
use serde_json::Value;

use super::client::{self, get, post, post_as};
use super::{Failure, Target, render};

/// What `halcyon apply` was asked.
pub struct ApplyOptions {
    pub dir: PathBuf,
    pub yes: bool,
    pub dry_run: bool,
}

pub async fn apply(options: &ApplyOptions, target: &Target) -> Result<(), Failure> {
    let dir = &options.dir;
    if !dir.is_dir() {
        return Err(Failure::Invalid(format!(
            "error: {}: expected a configuration directory",
            dir.display()
        )));
    }
    // Every mistake with its position, exit 2, before the cluster is asked anything.
    crate::offline::check(std::slice::from_ref(dir))?;
    let (new, _) = halcyon_config::load(std::slice::from_ref(dir))
        .map_err(|d| Failure::Invalid(d.to_string()))?;
    let request = ApplyRequest {
        files: files_of(dir)?,
    };
    let running: ConfigResponse = get(target, "/v1/config").await?;
    if let Some(s) = &running.staged {
        return Err(Failure::Failed(format!(
            "error: refused: another reconfiguration holds the lock: generation {} applied by {} \
             at {} (event sequence {}); it is released when that config_change ends",
            s.generation, s.by, s.since, s.sequence
        )));
    }
    let preview: ApplyPreview =
        post_as(target, "/v1/config/preview", Some(client::body(&request))).await?;
    let lines = differences(&running.config, &new, &preview);
    if preview.next_generation == preview.generation {
        println!(
            "nothing to apply: {} is the running configuration (generation {})",
            dir.display(),
            preview.generation
        );
        return Ok(());
    }
    println!(
        "changes from generation {} to {}:",
        preview.generation, preview.next_generation
    );
    for line in &lines {
        println!("  {line}");
    }
    println!("plan of the config_change:");
    let clock = render::Clock::system();
    print!("{}", clock.times_in(&preview.plan_text));
    if options.dry_run {
        println!("dry run: nothing was changed");
        return Ok(());
    }
    if !options.yes && !confirmed(preview.next_generation)? {
        return Err(Failure::Failed("not applied: not confirmed".to_owned()));
    }
    let answer = post(target, "/v1/config/apply", Some(client::body(&request))).await?;
    print!("{}", render::operation(&answer, &clock));
    Ok(())
}

/// `halcyon snapshot save DIR`: the running configuration's files, checked to load as the
/// running configuration, and a `SNAPSHOT` file saying what and when.
pub async fn snapshot_save(dir: &Path, force: bool, target: &Target) -> Result<(), Failure> {
    let running: ConfigResponse = get(target, "/v1/config").await?;
    if running.sources.is_empty() {
        return Err(Failure::Failed(
            "error: the running configuration's files were not recorded (the cluster was \
             formed by an earlier version of halcyon): apply its directory once with \
             `halcyon apply DIR` to record them"
                .to_owned(),
        ));
    }
    let occupied = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
    if occupied && !force {
        return Err(Failure::Invalid(format!(
            "error: {} is not empty; choose an empty or new directory, or --force",
            dir.display()
        )));
    }
    for file in &running.sources {
        let relative = Path::new(&file.name);
        let plain = relative
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain {
            return Err(Failure::Failed(format!(
                "error: the cluster recorded a file name that is not a plain relative path: {:?}",
                file.name
            )));
        }
        let path = dir.join(relative);
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, &file.text));
        written.map_err(|e| Failure::Failed(format!("error: {}: {e}", path.display())))?;
    }
    let saved = jiff::Timestamp::now();
    let about = format!(
        "Halcyon configuration snapshot (halcyon snapshot save)\ncluster: {}\ngeneration: {}\nsaved: {saved}\n",
        running.config.cluster.name, running.generation
    );
    std::fs::write(dir.join("SNAPSHOT"), about)
        .map_err(|e| Failure::Failed(format!("error: {}: {e}", dir.display())))?;
    // The files must be the running configuration, or the snapshot would lie.
    let (loaded, _) = halcyon_config::load(&[dir.to_path_buf()]).map_err(|d| {
        Failure::Failed(format!(
            "error: the saved files do not load: {d}\n(they are what the cluster recorded)"
        ))
    })?;
    if loaded != running.config {
        return Err(Failure::Failed(format!(
            "error: the files saved in {} do not load as the running configuration \
             (generation {}); compare with `halcyon snapshot diff {}`",
            dir.display(),
            running.generation,
            dir.display()
        )));
    }
    println!(
        "saved generation {} of cluster \"{}\" ({} files) in {}",
        running.generation,
        running.config.cluster.name,
        running.sources.len(),
        dir.display()
    );
    Ok(())
}

/// `halcyon snapshot diff DIR`: the differences `apply` would show, without the plan.
pub async fn snapshot_diff(dir: &Path, target: &Target) -> Result<(), Failure> {
    let (new, _) =
        halcyon_config::load(&[dir.to_path_buf()]).map_err(|d| Failure::Invalid(format!("{d}")))?;
    let running: ConfigResponse = get(target, "/v1/config").await?;
    let request = ApplyRequest {
        files: files_of(dir)?,
    };
    // The rules' and restarts' part comes from the daemon; a refusal (a setting `apply`
    // cannot change) still leaves the differences to show, with the refusal.
    let (preview, refusal) =
        match post_as::<ApplyPreview>(target, "/v1/config/preview", Some(client::body(&request)))
            .await
        {
            Ok(preview) => (preview, None),
            Err(Failure::Failed(why)) => (
                ApplyPreview {
                    schema_version: halcyon_api::SCHEMA_VERSION,
                    generation: running.generation,
                    next_generation: running.generation,
                    restart: Vec::new(),
                    rules_changed: false,
                    settings: Vec::new(),
                    plan_text: String::new(),
                },
                Some(why),
            ),
            Err(invalid) => return Err(invalid),
        };
    let lines = differences(&running.config, &new, &preview);
    if let Some(why) = refusal {
        println!("apply would refuse it: {why}");
    }
    if lines.is_empty() {
        println!(
            "no differences: {} is the running configuration (generation {})",
            dir.display(),
            running.generation
        );
    } else {
        println!(
            "{} against the running configuration (generation {}):",
            dir.display(),
            running.generation
        );
        for line in &lines {
            println!("  {line}");
        }
    }
    Ok(())
}

/// Asks on the terminal; refuses to guess when there is none.
fn confirmed(generation: u64) -> Result<bool, Failure> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Failure::Invalid(
            "error: apply asks for confirmation and standard input is not a terminal: \
             run it with --yes (or --dry-run to see the plan only)"
                .to_owned(),
        ));
    }
    print!("apply generation {generation}? [y/N] ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::Failed(format!("error: reading the answer: {e}")))?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

/// The configuration files of `dir` (those `halcyon check` reads: `.toml` files, the
/// credentials directory left out), named relative to it.
fn files_of(dir: &Path) -> Result<Vec<ConfigFile>, Failure> {
    let sources = halcyon_config::named_sources(&[dir.to_path_buf()])
        .map_err(|d| Failure::Invalid(d.to_string()))?;
    Ok(sources
        .into_iter()
        .map(|(name, text)| ConfigFile { name, text })
        .collect())
}

/// One line per difference: packages added, removed (halted first where they run),
/// changed field by field; cluster settings field by field; the event rules.
pub fn differences(running: &Config, new: &Config, preview: &ApplyPreview) -> Vec<String> {
    let mut out = Vec::new();
    for name in new.packages.keys() {
        if !running.packages.contains_key(name) {
            out.push(format!("+ package {name} (added)"));
        }
    }
    for name in running.packages.keys() {
        if !new.packages.contains_key(name) {
            out.push(format!(
                "- package {name} (removed: halted first where it runs)"
            ));
        }
    }
    for (name, package) in &new.packages {
        if let Some(old) = running.packages.get(name)
            && old != package
        {
            let restarts = if preview.restart.iter().any(|r| r == name.as_str()) {
                " (halts and runs again where it runs)"
            } else {
                " (where it may run: it keeps running where it runs while that node stays \
                 eligible)"
            };
            out.push(format!("~ package {name}{restarts}:"));
            walk(
                "",
                &to_value(old),
                &to_value(package),
                &mut |path, change| out.push(format!("    {path}: {change}")),
            );
        }
    }
    // The settings the daemon reports with their values as the files write them (and what
    // the change does) are shown its way, not as the leaves of the serialised form.
    let reported: Vec<String> = preview
        .settings
        .iter()
        .filter_map(|s| value_path(&s.setting))
        .collect();
    for s in &preview.settings {
        out.push(format!("~ {}: {} -> {}", s.setting, s.old, s.new));
        if let Some(note) = &s.note {
            out.push(format!("    {note}"));
        }
    }
    walk(
        "cluster",
        &to_value(&running.cluster),
        &to_value(&new.cluster),
        &mut |path, change| {
            if reported.iter().any(|r| {
                path == r
                    || path
                        .strip_prefix(r.as_str())
                        .is_some_and(|t| t.starts_with('.'))
            }) {
                return;
            }
            // A fence device's password is not shown on the terminal.
            let secret = ["passw", "secret", "_script"]
                .iter()
                .any(|s| path.contains(s));
            let change = if secret {
                "(changed)".to_owned()
            } else {
                change
            };
            out.push(format!("~ {path}: {change}"))
        },
    );
    if preview.rules_changed {
        out.push("~ the event rules (recovery programs) changed".to_owned());
    }
    out
}

/// `[limits] max_event_duration` -> `cluster.limits.max_event_duration`: where a setting
/// the daemon reports is in the serialised configuration.
fn value_path(setting: &str) -> Option<String> {
    let (table, key) = setting.strip_prefix('[')?.split_once("] ")?;
    Some(format!("cluster.{table}.{key}"))
}

fn to_value(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Calls `report(path, "old -> new")` for every leaf that differs between `a` and `b`.
fn walk(path: &str, a: &Value, b: &Value, report: &mut impl FnMut(&str, String)) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let null = Value::Null;
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(
                    &child,
                    x.get(key).unwrap_or(&null),
                    y.get(key).unwrap_or(&null),
                    report,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                walk(&format!("{path}[{i}]"), u, v, report);
            }
        }
        _ if a != b => report(path, format!("{a} -> {b}")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_field_is_named_with_its_path_and_both_values() {
        let a =
            serde_json::json!({"name": "web", "resources": [{"command": "a"}, {"command": "b"}]});
        let b =
            serde_json::json!({"name": "web", "resources": [{"command": "a"}, {"command": "c"}]});
        let mut lines = Vec::new();
        walk("", &a, &b, &mut |p, c| lines.push(format!("{p}: {c}")));
        assert_eq!(lines, ["resources[1].command: \"b\" -> \"c\""]);
        let c = serde_json::json!({"name": "web", "resources": [{"command": "a"}]});
        lines.clear();
        walk("", &a, &c, &mut |p, c| lines.push(format!("{p}: {c}")));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("resources: [{"), "{lines:?}");
    }

    #[test]
    fn a_setting_the_daemon_reports_is_shown_as_the_files_write_it_with_its_note() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/cluster");
        let (running, _) = halcyon_config::load(&[dir]).unwrap();
        let mut new = running.clone();
        new.cluster.limits.max_event_duration = std::time::Duration::from_secs(5);
        new.cluster.events.keep_events_for = std::time::Duration::from_secs(60);
        let preview = ApplyPreview {
            schema_version: halcyon_api::SCHEMA_VERSION,
            generation: 1,
            next_generation: 2,
            restart: Vec::new(),
            rules_changed: false,
            settings: vec![halcyon_api::SettingChange {
                setting: "[limits] max_event_duration".to_owned(),
                old: "6m".to_owned(),
                new: "5s".to_owned(),
                note: Some("from the config_change on".to_owned()),
            }],
            plan_text: String::new(),
        };
        assert_eq!(
            differences(&running, &new, &preview),
            [
                "~ [limits] max_event_duration: 6m -> 5s",
                "    from the config_change on",
                "~ cluster.events.keep_events_for.secs: 7776000 -> 60",
            ]
        );
        assert_eq!(
            value_path("[quorum] min_voters").as_deref(),
            Some("cluster.quorum.min_voters")
        );
    }
}
