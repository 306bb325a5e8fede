//! The cluster state the policy engine reads: who is a member, which networks are
//! down where, and where each package runs. This is the part of the replicated
//! state that placement depends on; the daemon keeps it in the replicated log.

use std::collections::{BTreeMap, BTreeSet};

use halcyon_config::{Config, NetworkName, NodeName, PackageName};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterState {
    /// Nodes that are members of the cluster now.
    #[serde(default)]
    pub members: BTreeSet<NodeName>,
    /// Since when each node has been available (joined, or its networks came back):
    /// the delayed fallback timer counts from here.
    #[serde(default)]
    pub available_since: BTreeMap<NodeName, Timestamp>,
    /// Networks that are down on a node (its adapter on that network failed).
    #[serde(default)]
    pub networks_down: BTreeMap<NodeName, BTreeSet<NetworkName>>,
    #[serde(default)]
    pub packages: BTreeMap<PackageName, PackageState>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageState {
    /// Where the package runs (at most one node for a failover package).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub nodes: BTreeSet<NodeName>,
    /// Package switching (Serviceguard's global switching attribute). `None`: the
    /// configured `auto_run`. Off: not restarted elsewhere on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switching: Option<bool>,
    /// Nodes where switching is disabled for this package.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub node_switching_disabled: BTreeSet<NodeName>,
    /// When the package last failed on a node; that node is excluded until the
    /// failure is cleared or has expired.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failures: BTreeMap<NodeName, Timestamp>,
    /// After a manual move: the destination acts as the highest-priority node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acting_primary: Option<NodeName>,
    /// After a graceful halt of its node: the package waits for that node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_for: Option<NodeName>,
    /// When the package started where it runs now. Automatic failback moves it
    /// only when its primary became available after this moment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// Why the package is in ERROR (it could not be started anywhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The package's status as an administrator reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackageStatus {
    Up,
    Down,
    Error,
}

impl std::fmt::Display for PackageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PackageStatus::Up => "up",
            PackageStatus::Down => "down",
            PackageStatus::Error => "ERROR",
        })
    }
}

impl PackageState {
    pub fn status(&self) -> PackageStatus {
        if !self.nodes.is_empty() {
            PackageStatus::Up
        } else if self.error.is_some() {
            PackageStatus::Error
        } else {
            PackageStatus::Down
        }
    }

    /// The effective switching attribute given the configured `auto_run`.
    pub fn switching_enabled(&self, auto_run: bool) -> bool {
        self.switching.unwrap_or(auto_run)
    }
}

/// A mistake in a state file: it names something the configuration lacks, or is
/// inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StateError(pub String);

impl ClusterState {
    /// Checks the state against the configuration; every problem is listed.
    pub fn validate(&self, config: &Config) -> Result<(), Vec<StateError>> {
        let mut errors = Vec::new();
        let node_known = |n: &NodeName| config.node(n.as_str()).is_some();
        for n in &self.members {
            if !node_known(n) {
                errors.push(StateError(format!(
                    "members: node \"{n}\" is not in the configuration"
                )));
            }
        }
        for (n, nets) in &self.networks_down {
            if !node_known(n) {
                errors.push(StateError(format!(
                    "networks_down: node \"{n}\" is not in the configuration"
                )));
            }
            for net in nets {
                if config.network(net.as_str()).is_none() {
                    errors.push(StateError(format!(
                        "networks_down.{n}: network \"{net}\" is not in the configuration"
                    )));
                }
            }
        }
        for (name, p) in &self.packages {
            let Some(package) = config.package(name.as_str()) else {
                errors.push(StateError(format!(
                    "packages: package \"{name}\" is not in the configuration"
                )));
                continue;
            };
            for n in p
                .nodes
                .iter()
                .chain(&p.node_switching_disabled)
                .chain(p.failures.keys())
                .chain(&p.acting_primary)
                .chain(&p.held_for)
            {
                if !node_known(n) {
                    errors.push(StateError(format!(
                        "packages.{name}: node \"{n}\" is not in the configuration"
                    )));
                }
            }
            for n in &p.nodes {
                if node_known(n) && !self.members.contains(n) {
                    errors.push(StateError(format!(
                        "packages.{name}: runs on \"{n}\", which is not a member"
                    )));
                }
            }
            if package.is_failover() && p.nodes.len() > 1 {
                errors.push(StateError(format!(
                    "packages.{name}: a failover package runs on {} nodes at once",
                    p.nodes.len()
                )));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The state of a package (a default, down state when none is recorded).
    pub fn package(&self, name: &str) -> PackageState {
        self.packages.get(name).cloned().unwrap_or_default()
    }

    pub fn is_network_up(&self, node: &str, network: &str) -> bool {
        self.networks_down
            .get(node)
            .is_none_or(|down| !down.contains(network))
    }
}
