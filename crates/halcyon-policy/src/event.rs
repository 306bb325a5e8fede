//! Events the policy engine plans for, and the order in which pending events are
//! processed (SPEC 7 "Ordering", from the HACMP ES event priority).

use std::collections::BTreeSet;
use std::fmt;

use halcyon_config::{Config, NetworkName, NodeName, PackageName};
use serde::{Deserialize, Serialize};

/// How a node leaves the cluster (SPEC 8, planned departures).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Departure {
    /// The node failed (or was cut off): its packages move once it is safe.
    #[default]
    Failure,
    /// `node halt`: packages stop and are not taken over.
    Graceful,
    /// `node halt --takeover`: packages stop and move to other nodes.
    GracefulTakeover,
    /// `node halt --force`: treated like a failure, packages halted at once.
    Forced,
}

impl fmt::Display for Departure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Departure::Failure => "failure",
            Departure::Graceful => "graceful",
            Departure::GracefulTakeover => "graceful_takeover",
            Departure::Forced => "forced",
        })
    }
}

/// Something that happened in the cluster, or a request, to plan for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// The cluster has formed with the current members: start `auto_run` packages.
    ClusterStart,
    /// Halt every package; the cluster stops.
    ClusterHalt,
    NodeUp {
        node: NodeName,
    },
    NodeDown {
        node: NodeName,
        #[serde(default)]
        how: Departure,
    },
    NetworkUp {
        node: NodeName,
        network: NetworkName,
    },
    NetworkDown {
        node: NodeName,
        network: NetworkName,
    },
    /// The node's interface on `network` failed and a standby interface took over.
    SwapAdapter {
        node: NodeName,
        network: NetworkName,
    },
    /// A standby interface failed: local LAN failover is unavailable there.
    FailStandby {
        node: NodeName,
        network: NetworkName,
    },
    /// A standby interface returned.
    JoinStandby {
        node: NodeName,
        network: NetworkName,
    },
    /// A service exhausted its restarts, a monitor failed the package, or it
    /// failed to start.
    PackageFailed {
        package: PackageName,
        node: NodeName,
    },
    /// `package run PKG [NODE]`.
    PackageRun {
        package: PackageName,
        #[serde(default)]
        node: Option<NodeName>,
    },
    /// `package halt PKG [--node NODE]`: with a node, one instance of a multi-node package
    /// halts there and stays halted there (node switching disabled) until `package run PKG
    /// --node NODE` or `package enable PKG --node NODE`.
    PackageHalt {
        package: PackageName,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<NodeName>,
    },
    /// `package move PKG [NODE]`.
    PackageMove {
        package: PackageName,
        #[serde(default)]
        node: Option<NodeName>,
    },
    /// `package enable PKG [--node NODE]`.
    PackageEnable {
        package: PackageName,
        #[serde(default)]
        node: Option<NodeName>,
    },
    /// `package disable PKG [--node NODE]`.
    PackageDisable {
        package: PackageName,
        #[serde(default)]
        node: Option<NodeName>,
    },
    /// `package clear PKG [--node NODE]`: forget recorded failures.
    PackageClear {
        package: PackageName,
        #[serde(default)]
        node: Option<NodeName>,
    },
    /// A user-defined event (from a monitor); its recovery program does the work.
    UserDefined {
        name: String,
        node: NodeName,
    },
    /// `halcyon apply`: the configuration staged as `generation` replaces the running one.
    /// `restart`: the packages whose definition changed (each running one halts and runs
    /// again where it runs, with its new definition); packages removed halt, packages added
    /// are placed, the others are left alone.
    ConfigChange {
        #[serde(default)]
        generation: u64,
        #[serde(default)]
        restart: BTreeSet<PackageName>,
    },
    /// Time passed (delayed fallback timer, failure expiry): re-evaluate.
    Timer,
    /// A node's daemon started again as `incarnation`; `previous`, the incarnation the
    /// cluster knew, ended by a clean stop or not (a crash, a kill, a power loss, a lost
    /// state directory). Only recorded in the event log when the registration is committed:
    /// never queued nor planned (it changes no placement; a returning node's `node_up` is an
    /// event of its own, which this record never delays).
    NodeRestart {
        node: NodeName,
        incarnation: u64,
        previous: u64,
        clean_stop: bool,
    },
    /// A node was fenced (by the coordinator before a takeover from it, or by an
    /// administrator's `node fence`): `action` (`off`, `reboot`, `on`), whether a fencing
    /// level confirmed it, and by whom. Like `node_restart`, only recorded in the event log
    /// (with every agent call as a note), never queued nor planned.
    NodeFence {
        node: NodeName,
        action: String,
        confirmed: bool,
    },
    /// The consensus voters changed: `node` (a node or the witness) became a voter (`added`)
    /// or stopped voting, by an administrator's `node add|remove` or the coordinator's
    /// auto-shrink. Like `node_fence`, only recorded in the event log (with the voters after
    /// the change as a note), never queued nor planned.
    VoterChange {
        node: NodeName,
        added: bool,
    },
}

impl Event {
    /// True for the events that are only recorded, never queued nor planned.
    pub fn is_record_only(&self) -> bool {
        matches!(
            self,
            Event::NodeRestart { .. } | Event::NodeFence { .. } | Event::VoterChange { .. }
        )
    }

    /// The event's name as in rules files and the event log (`node_up`, ...).
    pub fn name(&self) -> &str {
        match self {
            Event::ClusterStart => "cluster_start",
            Event::ClusterHalt => "cluster_halt",
            Event::NodeUp { .. } => "node_up",
            Event::NodeDown { .. } => "node_down",
            Event::NetworkUp { .. } => "network_up",
            Event::NetworkDown { .. } => "network_down",
            Event::SwapAdapter { .. } => "swap_adapter",
            Event::FailStandby { .. } => "fail_standby",
            Event::JoinStandby { .. } => "join_standby",
            Event::PackageFailed { .. } => "package_failed",
            Event::PackageRun { .. } => "package_run",
            Event::PackageHalt { .. } => "package_halt",
            Event::PackageMove { .. } => "package_move",
            Event::PackageEnable { .. } => "package_enable",
            Event::PackageDisable { .. } => "package_disable",
            Event::PackageClear { .. } => "package_clear",
            Event::UserDefined { name, .. } => name,
            Event::ConfigChange { .. } => "config_change",
            Event::Timer => "timer",
            Event::NodeRestart { .. } => "node_restart",
            Event::NodeFence { .. } => "node_fence",
            Event::VoterChange { .. } => "voter_change",
        }
    }

    /// The node where the event happened, if any.
    pub fn node(&self) -> Option<&NodeName> {
        match self {
            Event::NodeUp { node }
            | Event::NodeRestart { node, .. }
            | Event::NodeFence { node, .. }
            | Event::VoterChange { node, .. }
            | Event::NodeDown { node, .. }
            | Event::NetworkUp { node, .. }
            | Event::NetworkDown { node, .. }
            | Event::SwapAdapter { node, .. }
            | Event::FailStandby { node, .. }
            | Event::JoinStandby { node, .. }
            | Event::PackageFailed { node, .. }
            | Event::UserDefined { node, .. } => Some(node),
            Event::PackageRun { node, .. }
            | Event::PackageMove { node, .. }
            | Event::PackageEnable { node, .. }
            | Event::PackageDisable { node, .. }
            | Event::PackageClear { node, .. } => node.as_ref(),
            _ => None,
        }
    }

    /// The network the event is about, if any.
    pub fn network(&self) -> Option<&NetworkName> {
        match self {
            Event::NetworkUp { network, .. }
            | Event::NetworkDown { network, .. }
            | Event::SwapAdapter { network, .. }
            | Event::FailStandby { network, .. }
            | Event::JoinStandby { network, .. } => Some(network),
            _ => None,
        }
    }

    /// The priority class (lower is processed first): node joins, node failures,
    /// adapter swaps, network up, network down, standby changes, user-defined
    /// events, then requests and re-evaluations.
    pub fn class(&self) -> EventClass {
        match self {
            // A node restart or fence is never queued; its class is the one of a node's return.
            Event::NodeUp { .. }
            | Event::NodeRestart { .. }
            | Event::NodeFence { .. }
            | Event::VoterChange { .. }
            | Event::ClusterStart => EventClass::NodeJoin,
            Event::NodeDown { .. } => EventClass::NodeFailure,
            Event::SwapAdapter { .. } => EventClass::SwapAdapter,
            Event::NetworkUp { .. } => EventClass::NetworkUp,
            Event::NetworkDown { .. } => EventClass::NetworkDown,
            Event::FailStandby { .. } | Event::JoinStandby { .. } => EventClass::Standby,
            Event::UserDefined { .. } | Event::PackageFailed { .. } => EventClass::UserDefined,
            Event::PackageRun { .. }
            | Event::PackageHalt { .. }
            | Event::PackageMove { .. }
            | Event::PackageEnable { .. }
            | Event::PackageDisable { .. }
            | Event::PackageClear { .. }
            | Event::ClusterHalt => EventClass::Request,
            Event::ConfigChange { .. } => EventClass::ConfigChange,
            Event::Timer => EventClass::Timer,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        match self {
            Event::NodeDown { node, how } => write!(f, " {node} ({how})"),
            Event::PackageFailed { package, node } => write!(f, " {package} on {node}"),
            Event::PackageRun { package, node }
            | Event::PackageMove { package, node }
            | Event::PackageHalt { package, node }
            | Event::PackageEnable { package, node }
            | Event::PackageDisable { package, node }
            | Event::PackageClear { package, node } => {
                write!(f, " {package}")?;
                if let Some(node) = node {
                    write!(f, " {node}")?;
                }
                Ok(())
            }
            Event::NodeFence {
                node,
                action,
                confirmed,
            } => {
                let how = if *confirmed {
                    "confirmed"
                } else {
                    "NOT confirmed"
                };
                write!(f, " {node} ({action}): {how}")
            }
            Event::VoterChange { node, added: true } => write!(f, " {node}: added to the voters"),
            Event::VoterChange { node, added: false } => {
                write!(f, " {node}: removed from the voters")
            }
            Event::NodeRestart {
                node,
                incarnation,
                previous,
                clean_stop,
            } => {
                let end = if *clean_stop {
                    "ended by a clean stop"
                } else {
                    "ended without a clean stop"
                };
                write!(
                    f,
                    " {node}: incarnation {incarnation}, previous incarnation {previous} {end}"
                )
            }
            Event::UserDefined { node, .. } => write!(f, " on {node}"),
            Event::ConfigChange {
                generation,
                restart,
            } => {
                if *generation > 0 {
                    write!(f, " to generation {generation}")?;
                }
                if !restart.is_empty() {
                    let names: Vec<&str> = restart.iter().map(PackageName::as_str).collect();
                    write!(f, " (restarts {})", names.join(", "))?;
                }
                Ok(())
            }
            _ => {
                if let Some(node) = self.node() {
                    write!(f, " {node}")?;
                }
                if let Some(network) = self.network() {
                    write!(f, " {network}")?;
                }
                Ok(())
            }
        }
    }
}

/// Event priority classes, in processing order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventClass {
    NodeJoin,
    NodeFailure,
    SwapAdapter,
    NetworkUp,
    NetworkDown,
    Standby,
    UserDefined,
    Request,
    ConfigChange,
    Timer,
}

/// The sort key of a pending event: class, then node number, then network number,
/// then arrival order (`sequence`).
pub fn priority_key(config: &Config, event: &Event, sequence: u64) -> (EventClass, u32, u32, u64) {
    let node_number = event
        .node()
        .and_then(|n| config.node(n.as_str()))
        .map_or(u32::MAX, |n| n.number);
    let network_number = event
        .network()
        .and_then(|n| config.network(n.as_str()))
        .map_or(0, |n| n.number);
    (event.class(), node_number, network_number, sequence)
}

/// Which pending event to process next: the index into `pending`, whose entries
/// are (arrival sequence, event). `None` when nothing is pending.
pub fn next_event(config: &Config, pending: &[(u64, Event)]) -> Option<usize> {
    pending
        .iter()
        .enumerate()
        .min_by_key(|(_, (sequence, event))| priority_key(config, event, *sequence))
        .map(|(index, _)| index)
}

/// The order in which a set of pending events will be processed, if no new event
/// arrives meanwhile.
pub fn processing_order(config: &Config, pending: &[(u64, Event)]) -> Vec<(u64, Event)> {
    let mut sorted = pending.to_vec();
    sorted.sort_by_key(|(sequence, event)| priority_key(config, event, *sequence));
    sorted
}
