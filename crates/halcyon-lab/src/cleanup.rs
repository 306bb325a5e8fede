//! Removing what labs left behind when their owner died without running its Drop (SIGKILL,
//! a test timeout): processes, namespaces, veths, bridges, directories, owner records.
//!
//! Only objects whose names parse as a lab's (see [`crate::names`]) are considered, and only
//! labs whose owner process is gone are removed, so labs of concurrently running tests are safe.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use crate::lab::{kill_namespace_processes, netns_path};
use crate::names::{self, LabId};
use crate::{LabError, command, netns};

/// What a cleanup removed (or, in a dry run, would remove).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    pub labs: Vec<LabId>,
    pub namespaces: Vec<String>,
    pub interfaces: Vec<String>,
    pub directories: Vec<PathBuf>,
}

impl Removed {
    pub fn is_empty(&self) -> bool {
        self.labs.is_empty()
    }
}

/// Removes the leftovers of every lab whose owner process has exited. With `dry_run`, only
/// reports what it would remove.
pub fn remove_stale(dry_run: bool) -> Result<Removed, LabError> {
    let namespaces = list_names("/run/netns");
    let interfaces = list_names("/sys/class/net");
    let records = list_names(names::OWNER_DIRECTORY);
    let directories: Vec<(LabId, PathBuf)> = list_names(std::env::temp_dir())
        .into_iter()
        .filter_map(|name| {
            let id = LabId::parse(name.strip_prefix("halcyon-lab-")?)?;
            Some((id, std::env::temp_dir().join(name)))
        })
        .collect();

    let mut ids = BTreeSet::new();
    ids.extend(
        namespaces
            .iter()
            .chain(&interfaces)
            .filter_map(|name| names::lab_of(name)),
    );
    ids.extend(records.iter().filter_map(|name| LabId::parse(name)));
    ids.extend(directories.iter().map(|(id, _)| *id));

    let mut removed = Removed::default();
    for id in ids.into_iter().filter(|id| !owner_is_alive(id)) {
        removed.labs.push(id);
        let own = |name: &&String| names::lab_of(name) == Some(id);
        let lab_namespaces: Vec<String> = namespaces.iter().filter(own).cloned().collect();
        let lab_interfaces: Vec<String> = interfaces.iter().filter(own).cloned().collect();
        let lab_directories: Vec<PathBuf> = directories
            .iter()
            .filter(|(candidate, _)| *candidate == id)
            .map(|(_, path)| path.clone())
            .collect();
        if !dry_run {
            for namespace in &lab_namespaces {
                if let Ok(inode) = netns::namespace_inode(&netns_path(namespace)) {
                    kill_namespace_processes(inode);
                }
            }
            // Ports first (deleting one end deletes its peer), then namespaces, then bridges.
            let (bridges, ports): (Vec<&String>, Vec<&String>) = lab_interfaces
                .iter()
                .partition(|name| name.starts_with(&format!("{}{id}b", names::PREFIX)));
            for port in ports {
                report(command::run("ip", &["link", "del", port]).map(drop));
            }
            for namespace in &lab_namespaces {
                report(command::run("ip", &["netns", "del", namespace]).map(drop));
            }
            for bridge in bridges {
                report(command::run("ip", &["link", "del", bridge]).map(drop));
            }
            for directory in &lab_directories {
                crate::lab::unmount_under(directory);
                report(
                    fs::remove_dir_all(directory).map_err(|source| LabError::Io {
                        context: format!("removing {}", directory.display()),
                        source,
                    }),
                );
            }
            let _ = fs::remove_file(id.owner_record());
        }
        removed.namespaces.extend(lab_namespaces);
        removed.interfaces.extend(lab_interfaces);
        removed.directories.extend(lab_directories);
    }
    Ok(removed)
}

/// True if the process that made lab `id` still runs (same PID and, when recorded, the same
/// start time, so a reused PID does not keep a dead lab's leftovers alive).
fn owner_is_alive(id: &LabId) -> bool {
    let Some(start_time) = netns::process_start_time(id.pid) else {
        return false;
    };
    match fs::read_to_string(id.owner_record()) {
        Ok(text) => match text
            .split_whitespace()
            .nth(1)
            .and_then(|field| field.parse::<u64>().ok())
        {
            Some(recorded) if recorded != 0 => recorded == start_time,
            _ => true,
        },
        Err(_) => true,
    }
}

fn list_names(directory: impl Into<PathBuf>) -> Vec<String> {
    let Ok(entries) = fs::read_dir(directory.into()) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect()
}

fn report(result: Result<(), LabError>) {
    if let Err(error) = result {
        eprintln!("halcyon-lab: cleanup: {error}");
    }
}
