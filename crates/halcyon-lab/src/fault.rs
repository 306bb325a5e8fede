//! Faults injected into a lab. Every function returns the instant the fault took effect, on the
//! monotonic clock, so outages can be measured from it.
//!
//! | fault | how |
//! | --- | --- |
//! | crash | SIGKILL of the process group of every process the lab started on the host, then of every other process left in its namespace |
//! | pause / resume | SIGSTOP / SIGCONT to one process (the host's daemon) |
//! | partition / heal | nftables drop of the other side's host addresses, in each host's namespace |
//! | link down / up | the bridge-side veth end set down / up: the host sees its carrier go, its peers see silence |
//! | standby link down / up | the same for the host's standby interface on a network |
//! | power off | every link of the host (standby interfaces too) down, then crash |
//! | restart | the command of an exited process started again |

use std::collections::HashMap;
use std::fmt;
use std::time::Instant;

use crate::LabError;
use crate::lab::{HostProcess, Lab, PARTITION_TABLE, host_label, io_error};
use crate::names::{self, CLIENT};

/// Kills everything running on `host`. Returns the instant the first SIGKILLs were sent.
pub fn crash(lab: &Lab, host: usize) -> Result<Instant, LabError> {
    check_host(lab, host)?;
    Ok(lab.kill_host(host))
}

/// Stops `process` (SIGSTOP): it keeps its sockets and addresses but does nothing.
pub fn pause(lab: &Lab, process: &HostProcess) -> Result<Instant, LabError> {
    lab.signal(process, libc::SIGSTOP)?;
    Ok(Instant::now())
}

/// Continues a paused `process` (SIGCONT).
pub fn resume(lab: &Lab, process: &HostProcess) -> Result<Instant, LabError> {
    lab.signal(process, libc::SIGCONT)?;
    Ok(Instant::now())
}

/// Starts again the command of `process`, which must have exited (e.g. after a crash).
pub fn restart(lab: &Lab, process: &HostProcess) -> Result<(HostProcess, Instant), LabError> {
    let restarted = lab.respawn(process)?;
    Ok((restarted, Instant::now()))
}

/// Cuts every group in `groups` off from every other group, on the given networks (all when
/// `networks` is empty). Hosts not named in any group (and the client, unless named) keep
/// talking to everyone. Partitions accumulate until [`heal`].
///
/// Each namespace drops packets to and from the other groups' host addresses (those of
/// standby interfaces included). Relocatable addresses are not covered: a partition cuts the
/// cluster's own traffic, not clients.
pub fn partition(
    lab: &Lab,
    groups: &[Vec<usize>],
    networks: &[usize],
) -> Result<Instant, LabError> {
    let networks: Vec<usize> = if networks.is_empty() {
        (1..=lab.spec().networks).collect()
    } else {
        networks.to_vec()
    };
    for &network in &networks {
        if network == 0 || network > lab.spec().networks {
            return Err(LabError::Spec(format!("no network {network} in this lab")));
        }
    }
    let mut seen = Vec::new();
    for &host in groups.iter().flatten() {
        if host > lab.spec().hosts {
            return Err(LabError::Spec(format!("no host {host} in this lab")));
        }
        if seen.contains(&host) {
            return Err(LabError::Spec(format!(
                "{} is in two partition groups",
                host_label(host)
            )));
        }
        seen.push(host);
    }
    let mut scripts = HashMap::new();
    for (index, group) in groups.iter().enumerate() {
        let blocked: Vec<String> = groups
            .iter()
            .enumerate()
            .filter(|&(other, _)| other != index)
            .flat_map(|(_, other_group)| other_group.iter())
            .flat_map(|&peer| {
                networks
                    .iter()
                    .filter(move |&&network| peer != CLIENT || network == 1)
                    .flat_map(move |&network| {
                        // The standby interface's own address too, where the peer has one.
                        std::iter::once(names::host_address(peer, network))
                            .chain(lab.standby_address(peer, network))
                            .map(|address| address.to_string())
                    })
            })
            .collect();
        if blocked.is_empty() {
            continue;
        }
        for &host in group {
            scripts.insert(
                host,
                format!(
                    "add element inet {PARTITION_TABLE} blocked {{ {} }}\n",
                    blocked.join(", ")
                ),
            );
        }
    }
    lab.nft_in_parallel(&scripts)?;
    Ok(Instant::now())
}

/// Removes every partition.
pub fn heal(lab: &Lab) -> Result<Instant, LabError> {
    let scripts = lab
        .all_namespaces()
        .into_iter()
        .map(|host| (host, format!("flush set inet {PARTITION_TABLE} blocked\n")))
        .collect();
    lab.nft_in_parallel(&scripts)?;
    Ok(Instant::now())
}

/// Sets `host`'s bridge-side veth end on `network` down (through netlink).
pub fn link_down(lab: &Lab, host: usize, network: usize) -> Result<Instant, LabError> {
    set_link(lab, host, network, false)
}

/// Sets `host`'s bridge-side veth end on `network` up again.
pub fn link_up(lab: &Lab, host: usize, network: usize) -> Result<Instant, LabError> {
    set_link(lab, host, network, true)
}

/// Sets `host`'s standby interface on `network` down (its bridge-side veth end, as
/// [`link_down`] does for the primary one). The lab must have standby interfaces there.
pub fn standby_link_down(lab: &Lab, host: usize, network: usize) -> Result<Instant, LabError> {
    set_standby_link(lab, host, network, false)
}

/// Sets `host`'s standby interface on `network` up again.
pub fn standby_link_up(lab: &Lab, host: usize, network: usize) -> Result<Instant, LabError> {
    set_standby_link(lab, host, network, true)
}

fn set_link(lab: &Lab, host: usize, network: usize, up: bool) -> Result<Instant, LabError> {
    check_host(lab, host)?;
    if network == 0 || network > lab.spec().networks {
        return Err(LabError::Spec(format!("no network {network} in this lab")));
    }
    set_port(lab, lab.port_index(host, network), up)
}

fn set_standby_link(lab: &Lab, host: usize, network: usize, up: bool) -> Result<Instant, LabError> {
    check_host(lab, host)?;
    let index = lab.standby_port_index(host, network).ok_or_else(|| {
        LabError::Spec(format!(
            "{} has no standby interface on network {network}",
            host_label(host)
        ))
    })?;
    set_port(lab, index, up)
}

fn set_port(lab: &Lab, index: u32, up: bool) -> Result<Instant, LabError> {
    lab.root_netlink()
        .set_link_up(index, up)
        .map_err(io_error("setting a bridge port up or down"))?;
    Ok(Instant::now())
}

/// "Power loss": every link of `host` down, then everything on it killed. Returns the instant
/// the links went down (the survivors hear silence from then on).
pub fn power_off(lab: &Lab, host: usize) -> Result<Instant, LabError> {
    check_host(lab, host)?;
    let mut first = None;
    for network in 1..=lab.spec().networks {
        let at = link_down(lab, host, network)?;
        first.get_or_insert(at);
    }
    for &network in lab.standby_networks() {
        standby_link_down(lab, host, network)?;
    }
    lab.kill_host(host);
    Ok(first.unwrap_or_else(Instant::now))
}

/// Links of a powered-off host up again (its processes must be started again by the caller).
pub fn power_on(lab: &Lab, host: usize) -> Result<Instant, LabError> {
    check_host(lab, host)?;
    for network in 1..=lab.spec().networks {
        link_up(lab, host, network)?;
    }
    for &network in lab.standby_networks() {
        standby_link_up(lab, host, network)?;
    }
    Ok(Instant::now())
}

fn check_host(lab: &Lab, host: usize) -> Result<(), LabError> {
    if host == CLIENT || host > lab.spec().hosts {
        return Err(LabError::Spec(format!("no host {host} in this lab")));
    }
    Ok(())
}

/// One fault, as data: what a campaign draws and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    Crash {
        host: usize,
    },
    Pause {
        process: HostProcess,
    },
    Resume {
        process: HostProcess,
    },
    Restart {
        process: HostProcess,
    },
    Partition {
        groups: Vec<Vec<usize>>,
        networks: Vec<usize>,
    },
    Heal,
    LinkDown {
        host: usize,
        network: usize,
    },
    LinkUp {
        host: usize,
        network: usize,
    },
    PowerOff {
        host: usize,
    },
    PowerOn {
        host: usize,
    },
}

impl Fault {
    /// Injects the fault; the instant it took effect and, for a restart, the new process.
    pub fn inject(&self, lab: &Lab) -> Result<(Instant, Option<HostProcess>), LabError> {
        Ok(match self {
            Fault::Crash { host } => (crash(lab, *host)?, None),
            Fault::Pause { process } => (pause(lab, process)?, None),
            Fault::Resume { process } => (resume(lab, process)?, None),
            Fault::Restart { process } => {
                let (restarted, at) = restart(lab, process)?;
                (at, Some(restarted))
            }
            Fault::Partition { groups, networks } => (partition(lab, groups, networks)?, None),
            Fault::Heal => (heal(lab)?, None),
            Fault::LinkDown { host, network } => (link_down(lab, *host, *network)?, None),
            Fault::LinkUp { host, network } => (link_up(lab, *host, *network)?, None),
            Fault::PowerOff { host } => (power_off(lab, *host)?, None),
            Fault::PowerOn { host } => (power_on(lab, *host)?, None),
        })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let labels = |group: &Vec<usize>| {
            group
                .iter()
                .map(|&host| host_label(host))
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Fault::Crash { host } => write!(formatter, "crash {}", host_label(*host)),
            Fault::Pause { process } => write!(
                formatter,
                "pause pid {} on {}",
                process.pid,
                host_label(process.host)
            ),
            Fault::Resume { process } => write!(
                formatter,
                "resume pid {} on {}",
                process.pid,
                host_label(process.host)
            ),
            Fault::Restart { process } => write!(
                formatter,
                "restart pid {} on {}",
                process.pid,
                host_label(process.host)
            ),
            Fault::Partition { groups, networks } => {
                let groups: Vec<String> = groups.iter().map(labels).collect();
                write!(formatter, "partition {}", groups.join(" | "))?;
                if !networks.is_empty() {
                    write!(formatter, " on networks {networks:?}")?;
                }
                Ok(())
            }
            Fault::Heal => write!(formatter, "heal"),
            Fault::LinkDown { host, network } => write!(
                formatter,
                "link down {} network {network}",
                host_label(*host)
            ),
            Fault::LinkUp { host, network } => {
                write!(formatter, "link up {} network {network}", host_label(*host))
            }
            Fault::PowerOff { host } => write!(formatter, "power off {}", host_label(*host)),
            Fault::PowerOn { host } => write!(formatter, "power on {}", host_label(*host)),
        }
    }
}
