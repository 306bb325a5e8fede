//! Commands that work without a running cluster: `check`, and `explain` and
//! `emulate` against a configuration and a cluster state file.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use halcyon_config::{Config, NetworkName, NodeName, PackageName};
use halcyon_policy::{ClusterState, Departure, Engine, Event};
use jiff::Timestamp;

use super::Failure;
pub use crate::cli::Input;

impl Input {
    /// True when a state file or a time was given: only offline commands take them.
    pub fn is_offline(&self) -> bool {
        self.state.is_some() || self.at.is_some()
    }

    /// The configuration directory given with `--config`, if any.
    pub fn config_dir(&self) -> Option<PathBuf> {
        self.config.first().cloned()
    }

    fn config_paths(&self) -> Vec<PathBuf> {
        if self.config.is_empty() {
            vec![PathBuf::from(DEFAULT_CONFIG_DIR)]
        } else {
            self.config.clone()
        }
    }
}

/// Where the configuration is when `--config` is not given.
const DEFAULT_CONFIG_DIR: &str = "/etc/halcyon";

/// The value checks of `halcyon check`: monitor predicates and samplers, OCF parameters
/// against the agents' meta-data, and fence devices against their agents' metadata.
struct Checks;

impl halcyon_config::ValueChecks for Checks {
    fn predicate(&self, text: &str) -> Result<(), halcyon_config::ValueError> {
        halcyon_monitor::Checks.predicate(text)
    }

    fn sampler(&self, text: &str) -> Result<(), halcyon_config::ValueError> {
        halcyon_monitor::Checks.sampler(text)
    }

    fn ocf_params(
        &self,
        agent: &str,
        params: &std::collections::BTreeMap<String, String>,
    ) -> Vec<halcyon_config::ValueError> {
        halcyon_resources::ocf::validate_params(agent, params)
            .into_iter()
            .map(|problem| halcyon_config::ValueError {
                column: None,
                problem,
                expected: None,
                hint: None,
            })
            .collect()
    }

    fn fence_device(
        &self,
        agent: &str,
        options: &std::collections::BTreeMap<String, String>,
    ) -> Vec<halcyon_config::ValueError> {
        halcyon_resources::fence::check_device(&halcyon_config::FenceDevice {
            agent: agent.to_owned(),
            options: options.clone(),
            timeout: halcyon_config::FENCE_TIMEOUT_DEFAULT,
        })
    }
}

/// `halcyon check`: the configuration, and the event rules files (those in the
/// given directories and the one the cluster file names).
pub fn check(paths: &[PathBuf]) -> Result<(), Failure> {
    let loaded = halcyon_config::load_with(paths, Some(&Checks));
    let mut diagnostics = match &loaded {
        Ok(_) => Vec::new(),
        Err(d) => d.0.clone(),
    };
    let referenced = loaded
        .as_ref()
        .ok()
        .and_then(|(c, _)| c.cluster.events.rules.clone());
    let (rule_count, rule_diagnostics) =
        match halcyon_events::load_cluster_rules(paths, referenced.as_deref()) {
            Ok(rules) => (rules.rules.len(), Vec::new()),
            Err(d) => (0, d.0),
        };
    diagnostics.extend(rule_diagnostics);
    if diagnostics.is_empty()
        && let Ok((config, files)) = loaded
    {
        let s = config.summary(files);
        let rules = if rule_count > 0 {
            format!(", {rule_count} event rules")
        } else {
            String::new()
        };
        println!(
            "ok: cluster \"{}\": {} nodes, {} networks, {} packages in {} files{rules}",
            config.cluster.name, s.nodes, s.networks, s.packages, s.files
        );
        println!("{}", timings(&config.cluster));
        return Ok(());
    }
    let diagnostics = halcyon_config::Diagnostics(diagnostics);
    print!("{diagnostics}");
    Err(Failure::Invalid(format!(
        "{} error{} found",
        diagnostics.len(),
        if diagnostics.len() == 1 { "" } else { "s" }
    )))
}

/// The timings the cluster runs with, derived as the daemon derives them
/// (`halcyon_config::timing`), on one line.
fn timings(cluster: &halcyon_config::Cluster) -> String {
    use halcyon_config::timing;
    let ms = |d: std::time::Duration| d.as_millis();
    let h = cluster.heartbeat;
    let raft = cluster.raft_timings();
    let lease = cluster.lease();
    format!(
        "timings: heartbeat {} ms x {} (detection {} ms), Raft heartbeat {} ms, election timeout {}-{} ms (a new coordinator within {} ms), lease {} ms{} (fencing lead {} ms); a lease renewal must come back within {} ms (two network round trips)",
        ms(h.interval),
        h.sensitivity,
        ms(cluster.detection_time()),
        ms(raft.heartbeat),
        ms(raft.election_min),
        ms(raft.election_max),
        ms(cluster.election_time_max()),
        ms(lease),
        if cluster.quorum.lease.is_some() {
            " (configured)"
        } else {
            ""
        },
        ms(timing::fence_lead(lease, h.interval, h.interval)),
        ms(timing::renewal_round_trip_max(h.interval, lease)),
    )
}

/// Writes `files` into `out`; refuses (exit 1, nothing written) when any exists
/// already, unless `force`.
fn write_new_files(out: &Path, files: &[(PathBuf, String)], force: bool) -> Result<(), Failure> {
    let existing: Vec<String> = files
        .iter()
        .map(|(name, _)| out.join(name))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() && !force {
        return Err(Failure::Failed(format!(
            "halcyon import: these files exist already and were left untouched: {}; use --force to overwrite, or another --out directory",
            existing.join(", ")
        )));
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("{}: cannot create the directory", out.display()))?;
    for (name, text) in files {
        let path = out.join(name);
        std::fs::write(&path, text)
            .with_context(|| format!("{}: cannot be written", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// `halcyon import serviceguard PKG.conf`: the package file (and control script)
/// against the cluster configuration in `config`; the result is validated with
/// that configuration before anything is written.
pub fn import_serviceguard(
    package: &Path,
    control: Option<&Path>,
    config: &[PathBuf],
    out: &Path,
    force: bool,
) -> Result<(), Failure> {
    let config_paths = if config.is_empty() {
        vec![PathBuf::from(DEFAULT_CONFIG_DIR)]
    } else {
        config.to_vec()
    };
    let cluster_config = match halcyon_config::load(&config_paths) {
        Ok((c, _)) => c,
        Err(diagnostics) => {
            eprint!("{diagnostics}");
            return Err(Failure::Invalid(
                "the cluster configuration is invalid; fix it first (`halcyon check`)".into(),
            ));
        }
    };
    let package_text = std::fs::read_to_string(package)
        .with_context(|| format!("{}: cannot be read", package.display()))?;
    // The control script: given, or the package file's RUN_SCRIPT when it exists.
    let control_path = control.map(Path::to_path_buf).or_else(|| {
        package_text
            .lines()
            .map(str::trim)
            .find_map(|l| {
                l.strip_prefix("RUN_SCRIPT ")
                    .or_else(|| l.strip_prefix("RUN_SCRIPT\t"))
            })
            .map(|p| PathBuf::from(p.trim()))
            .filter(|p| p.exists())
    });
    let control_text = match &control_path {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("{}: cannot be read", p.display()))?,
        ),
        None => None,
    };
    let control_input = control_path.as_deref().zip(control_text.as_deref());
    let imported = match halcyon_config::import_serviceguard(
        package,
        &package_text,
        control_input,
        &cluster_config.cluster,
    ) {
        Ok(i) => i,
        Err(diagnostics) => {
            print!("{diagnostics}");
            return Err(Failure::Invalid("nothing was written".into()));
        }
    };
    // Validate the new package together with the existing configuration.
    let mut texts: Vec<(String, String)> = Vec::new();
    for f in halcyon_config::collect_files(&config_paths).unwrap_or_default() {
        if let Ok(t) = std::fs::read_to_string(&f) {
            texts.push((f.display().to_string(), t));
        }
    }
    let (name, text) = &imported.files[0];
    let new_path = out.join(name).display().to_string();
    texts.retain(|(p, _)| *p != new_path);
    texts.push((new_path, text.clone()));
    let borrowed: Vec<(&str, &str)> = texts
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    if let Err(diagnostics) = halcyon_config::load_texts_with(&borrowed, Some(&Checks)) {
        print!("{diagnostics}");
        return Err(Failure::Invalid(
            "the imported package does not fit the configuration; nothing was written".into(),
        ));
    }
    write_new_files(out, &imported.files, force)?;
    for note in &imported.notes {
        println!("note: {note}");
    }
    println!(
        "imported package \"{}\"; run `halcyon check` on the configuration directory",
        imported.package
    );
    Ok(())
}

/// `halcyon import hacmp RULES`: writes the native rules file and recovery
/// programs into `out`, refusing to overwrite anything unless `force`.
pub fn import_hacmp(
    rules: &Path,
    rp_dir: Option<&Path>,
    out: &Path,
    force: bool,
) -> Result<(), Failure> {
    let imported = match halcyon_events::import_hacmp(rules, rp_dir) {
        Ok(i) => i,
        Err(diagnostics) => {
            print!("{diagnostics}");
            return Err(Failure::Invalid("nothing was written".into()));
        }
    };
    write_new_files(out, &imported.files(), force)?;
    for note in &imported.notes {
        println!("note: {note}");
    }
    println!(
        "imported {} rules; name the rules file in the cluster file ([events] rules = \"rules.toml\") and run `halcyon check`",
        imported.rules.rules.len()
    );
    Ok(())
}

/// The configuration and state an offline command works on, or why they are unusable
/// (the diagnostics printed first).
fn load_input(input: &Input) -> Result<(Config, ClusterState, Timestamp), Failure> {
    let config = match halcyon_config::load_with(&input.config_paths(), Some(&Checks)) {
        Ok((config, _)) => config,
        Err(diagnostics) => {
            eprint!("{diagnostics}");
            return Err(Failure::Invalid(
                "the configuration is invalid; `halcyon check` lists the same errors".into(),
            ));
        }
    };
    let now = input.at.unwrap_or_else(Timestamp::now);
    let state = match &input.state {
        Some(path) => match read_state(path, &config) {
            Ok(state) => state,
            Err(e) => {
                return Err(Failure::Invalid(format!("{e:#}")));
            }
        },
        None => started_cluster(&config, now),
    };
    Ok((config, state, now))
}

fn read_state(path: &Path, config: &Config) -> anyhow::Result<ClusterState> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot be read", path.display()))?;
    let state: ClusterState = toml::from_str(&text).map_err(|e| {
        let (line, column) = e.span().map_or((0, 0), |s| position(&text, s.start));
        anyhow::anyhow!("{}:{line}:{column}: {}", path.display(), e.message())
    })?;
    if let Err(errors) = state.validate(config) {
        let lines: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {e}", path.display()))
            .collect();
        anyhow::bail!("{}", lines.join("\n"));
    }
    Ok(state)
}

fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The state of a cluster whose nodes are all members and whose packages were
/// started by `cluster_start`.
fn started_cluster(config: &Config, now: Timestamp) -> ClusterState {
    let state = ClusterState {
        members: config
            .cluster
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect(),
        ..ClusterState::default()
    };
    match Engine::new(config).plan(&state, &Event::ClusterStart, now) {
        Ok(plan) => plan.state,
        Err(_) => state,
    }
}

/// `halcyon explain PKG` (offline).
pub fn explain(package: &str, input: &Input, json: bool) -> Result<(), Failure> {
    let (config, state, now) = load_input(input)?;
    match Engine::new(&config).explain(&state, package, now) {
        Ok(explanation) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&explanation).map_err(anyhow::Error::from)?
                );
            } else {
                let clock = crate::live::render::Clock::system();
                print!("{}", explanation.render(&|t| clock.time(t)));
            }
            Ok(())
        }
        Err(e) => Err(Failure::Invalid(format!("halcyon explain: {e}"))),
    }
}

/// `halcyon emulate EVENT [ARGS]` (offline).
pub fn emulate(words: &[String], input: &Input, json: bool) -> Result<(), Failure> {
    let event = match parse_event(words) {
        Ok(e) => e,
        Err(e) => {
            return Err(Failure::Invalid(format!("halcyon emulate: {e}")));
        }
    };
    let (config, state, now) = load_input(input)?;
    let rules = match halcyon_events::load_cluster_rules(
        &input.config_paths(),
        config.cluster.events.rules.as_deref(),
    ) {
        Ok(r) => r,
        Err(d) => {
            eprint!("{d}");
            return Err(Failure::Invalid(
                "the event rules are invalid; `halcyon check` lists the same errors".into(),
            ));
        }
    };
    match halcyon_state::emulate(&config, &rules, &state, &event, now) {
        Ok(emulation) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&emulation).map_err(anyhow::Error::from)?
                );
            } else {
                let clock = crate::live::render::Clock::system();
                print!("{}", emulation.render_with(&|t| clock.time(t)));
            }
            Ok(())
        }
        Err(e) => Err(Failure::Failed(format!("halcyon emulate: {e}"))),
    }
}

/// Parses `EVENT ARGS...` from the command line, with a usage line on error.
pub fn parse_event(words: &[String]) -> Result<Event, String> {
    let (name, args) = words.split_first().ok_or("no event given")?;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let usage = |shape: &str| {
        format!(
            "{name}: expected `halcyon emulate {name} {shape}`, got {} argument(s)",
            args.len()
        )
    };
    let node = |s: &str| NodeName::from(s);
    let package = |s: &str| PackageName::from(s);
    let network = |s: &str| NetworkName::from(s);
    let event = match (name.as_str(), args.as_slice()) {
        ("cluster_start", []) => Event::ClusterStart,
        ("cluster_halt", []) => Event::ClusterHalt,
        ("timer", []) => Event::Timer,
        ("config_change", []) => Event::ConfigChange {
            generation: 0,
            restart: Default::default(),
        },
        ("cluster_start" | "cluster_halt" | "timer" | "config_change", _) => return Err(usage("")),
        ("node_up", [n]) => Event::NodeUp { node: node(n) },
        ("node_up", _) => return Err(usage("NODE")),
        ("node_down", [n]) => Event::NodeDown {
            node: node(n),
            how: Departure::Failure,
        },
        ("node_down", [n, how]) => {
            let how = match *how {
                "failure" => Departure::Failure,
                "graceful" => Departure::Graceful,
                "graceful_takeover" | "takeover" => Departure::GracefulTakeover,
                "forced" | "force" => Departure::Forced,
                other => {
                    return Err(format!(
                        "node_down: \"{other}\" is not a departure; expected failure, graceful, graceful_takeover or forced"
                    ));
                }
            };
            Event::NodeDown { node: node(n), how }
        }
        ("node_down", _) => return Err(usage("NODE [failure|graceful|graceful_takeover|forced]")),
        ("network_up", [n, w]) => Event::NetworkUp {
            node: node(n),
            network: network(w),
        },
        ("network_down", [n, w]) => Event::NetworkDown {
            node: node(n),
            network: network(w),
        },
        ("swap_adapter", [n, w]) => Event::SwapAdapter {
            node: node(n),
            network: network(w),
        },
        ("fail_standby", [n, w]) => Event::FailStandby {
            node: node(n),
            network: network(w),
        },
        ("join_standby", [n, w]) => Event::JoinStandby {
            node: node(n),
            network: network(w),
        },
        ("network_up" | "network_down" | "swap_adapter" | "fail_standby" | "join_standby", _) => {
            return Err(usage("NODE NETWORK"));
        }
        ("package_failed", [p, n]) => Event::PackageFailed {
            package: package(p),
            node: node(n),
        },
        ("package_failed", _) => return Err(usage("PACKAGE NODE")),
        (
            "package_run" | "package_halt" | "package_move" | "package_enable" | "package_disable"
            | "package_clear",
            [p, rest @ ..],
        ) if rest.len() <= 1 => {
            let package = package(p);
            let node = rest.first().map(|n| node(n));
            match name.as_str() {
                "package_run" => Event::PackageRun { package, node },
                "package_halt" => Event::PackageHalt { package, node },
                "package_move" => Event::PackageMove { package, node },
                "package_enable" => Event::PackageEnable { package, node },
                "package_disable" => Event::PackageDisable { package, node },
                _ => Event::PackageClear { package, node },
            }
        }
        (
            "package_run" | "package_move" | "package_enable" | "package_disable" | "package_clear",
            _,
        ) => {
            return Err(usage("PACKAGE [NODE]"));
        }
        ("user", [event_name, n]) => Event::UserDefined {
            name: (*event_name).to_owned(),
            node: node(n),
        },
        ("user", _) => return Err(usage("EVENT_NAME NODE")),
        (other, _) => {
            return Err(format!(
                "\"{other}\" is not an event; expected one of cluster_start, cluster_halt, timer, config_change, node_up, node_down, \
                 network_up, network_down, swap_adapter, fail_standby, join_standby, package_failed, package_run, package_halt, \
                 package_move, package_enable, package_disable, package_clear, user"
            ));
        }
    };
    Ok(event)
}
