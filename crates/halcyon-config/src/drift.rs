//! What differs between two configurations, said for an administrator: the files a node read
//! at start against the configuration the cluster runs (issue 16, item 2: edited files were
//! silently ignored).

use crate::Config;

/// One line per difference, none when the two are the same: the cluster settings that
/// differ, and the packages added, removed or changed in `files` against `running`.
pub fn differences(files: &Config, running: &Config) -> Vec<String> {
    let (f, r) = (&files.cluster, &running.cluster);
    let settings = [
        ("name", f.name != r.name),
        ("id", f.id != r.id),
        ("port", f.port != r.port),
        ("nodes", f.nodes != r.nodes),
        ("networks", f.networks != r.networks),
        ("heartbeat", f.heartbeat != r.heartbeat),
        ("quorum", f.quorum != r.quorum),
        ("events", f.events != r.events),
        ("limits", f.limits != r.limits),
    ];
    let changed: Vec<&str> = settings
        .iter()
        .filter(|(_, differs)| *differs)
        .map(|(name, _)| *name)
        .collect();
    let mut out = Vec::new();
    if !changed.is_empty() {
        out.push(format!("cluster settings differ: {}", changed.join(", ")));
    }
    for (name, package) in &files.packages {
        match running.packages.get(name) {
            None => out.push(format!(
                "package {name} is in the files, not in the cluster"
            )),
            Some(running) if running != package => out.push(format!("package {name} differs")),
            Some(_) => {}
        }
    }
    for name in running.packages.keys() {
        if !files.packages.contains_key(name) {
            out.push(format!(
                "package {name} is in the cluster, not in the files"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Config {
        let dir =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/cluster");
        crate::load(&[dir]).expect("the example loads").0
    }

    #[test]
    fn the_same_configuration_has_no_difference() {
        assert!(differences(&example(), &example()).is_empty());
    }

    #[test]
    fn packages_added_removed_and_changed_and_cluster_settings_are_named() {
        let running = example();
        let mut files = running.clone();
        files.cluster.heartbeat.sensitivity += 1;
        let names: Vec<_> = files.packages.keys().cloned().collect();
        let removed = files.packages.remove(&names[0]).unwrap();
        let mut added = removed.clone();
        added.name = "added".into();
        files.packages.insert("added".into(), added);
        files.packages.get_mut(&names[1]).unwrap().auto_run ^= true;
        assert_eq!(
            differences(&files, &running),
            vec![
                "cluster settings differ: heartbeat".to_owned(),
                "package added is in the files, not in the cluster".to_owned(),
                format!("package {} differs", names[1]),
                format!("package {} is in the cluster, not in the files", names[0]),
            ]
        );
    }
}
