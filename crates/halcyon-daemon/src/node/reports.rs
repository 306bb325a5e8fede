//! A node's judgements that the coordinator acts on, committed whenever they change: the
//! adapter report (paths down while the peer is heard elsewhere, SPEC 5) and the standby
//! report (standby interfaces down). One loop serves both ([`Node::report_loop`]); a
//! [`Report`] says how to judge, where the committed report is, and which command commits
//! a new one.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;

use super::Node;
use halcyon_config::{Config, NetworkName, NodeName};
use halcyon_membership::PathState;
use halcyon_state::{Command, State};
use jiff::Timestamp;

/// One kind of report.
pub(crate) struct Report<T> {
    /// For the log: "adapter", "standby".
    pub name: &'static str,
    /// This node's judgement now.
    pub judge: fn(&Node, &Config) -> T,
    /// This node's report as committed in the view (empty when none).
    pub committed: fn(&State, &NodeName) -> T,
    /// The command that commits a new report.
    pub command: fn(NodeName, T, Timestamp) -> Command,
    /// The judgement reads the kernel, which tells nothing when it changes: judged every
    /// renewal interval. Otherwise judged when the membership or the view changes.
    pub polls: bool,
}

/// Paths (peer, network) that are down while the peer is heard on another network, and this
/// node's own interfaces without a carrier (`network_down`/`swap_adapter` follow on the
/// coordinator).
pub(crate) const ADAPTERS: Report<BTreeSet<(NodeName, NetworkName)>> = Report {
    name: "adapter",
    judge: adapter_judgements,
    committed: |state, node| {
        state
            .adapter_reports()
            .get(node)
            .cloned()
            .unwrap_or_default()
    },
    command: |reporter, down, at| Command::AdapterReport { reporter, down, at },
    polls: false,
};

/// This node's standby interfaces that are down, by network (`fail_standby` /
/// `join_standby` follow on the coordinator).
pub(crate) const STANDBYS: Report<BTreeSet<NetworkName>> = Report {
    name: "standby",
    judge: standby_judgements,
    committed: |state, node| {
        state
            .standby_reports()
            .get(node)
            .cloned()
            .unwrap_or_default()
    },
    command: |reporter, down, at| Command::StandbyReport { reporter, down, at },
    polls: true,
};

/// This node's adapter judgements (SPEC 5): (peer, network) paths that are down while the
/// peer is heard on another network, and (this node, network) for each of its own
/// interfaces that the kernel says lost its carrier (`crate::links`): this node knows that
/// at once, before its peers miss a heartbeat.
fn adapter_judgements(node: &Node, config: &Config) -> BTreeSet<(NodeName, NetworkName)> {
    let status = node.membership.borrow();
    let network_name = |number: u32| {
        config
            .cluster
            .network_numbered(number)
            .map(|n| n.name.clone())
    };
    let peers = status
        .detector
        .paths
        .iter()
        .filter(|p| p.adapter_down && p.state == PathState::Down)
        .filter_map(|p| {
            let node = config.cluster.node_numbered(p.node)?;
            Some((node.name.clone(), network_name(p.network)?))
        });
    let own = status
        .detector
        .networks
        .iter()
        .filter(|n| !n.local_link_up)
        .filter_map(|n| Some((node.name.clone(), network_name(n.network)?)));
    peers.chain(own).collect()
}

/// This node's standby interfaces that are down, by network: the kernel's view of each
/// standby link (not up with a carrier, or gone; found by name, else by its address).
fn standby_judgements(node: &Node, config: &Config) -> BTreeSet<NetworkName> {
    let Some(me) = config.node(node.name.as_str()) else {
        return BTreeSet::new();
    };
    me.interfaces
        .iter()
        .filter(|i| i.standby && !halcyon_resources::ip::interface_usable(i))
        .map(|i| i.network.clone())
        .collect()
}

impl Node {
    /// While this node is a member and not isolated: commits its judgement when it differs
    /// from its committed report. Judged again when what it reads changes, every renewal
    /// interval for a judgement that polls, and a renewal interval after a failed commit.
    pub(crate) async fn report_loop<T: PartialEq + Debug>(self: Arc<Self>, report: Report<T>) {
        let mut membership = self.membership.clone();
        let mut view = self.view.clone();
        let mut again = report.polls;
        loop {
            tokio::select! {
                biased;
                Ok(()) = membership.changed() => {}
                Ok(()) = view.changed() => {}
                () = tokio::time::sleep(self.renew_interval), if again => {}
                else => return,
            }
            again = report.polls;
            if self.is_isolated() {
                continue;
            }
            let state = self.snapshot();
            let Some(config) = state.config() else {
                continue;
            };
            if !state.cluster().members.contains(&self.name) {
                continue;
            }
            let judged = (report.judge)(&self, config);
            if judged == (report.committed)(&state, &self.name) {
                continue;
            }
            tracing::info!(node = %self.name, down = ?judged, "{} report", report.name);
            let command = (report.command)(self.name.clone(), judged, self.timestamp());
            if self.submit(&command).await.is_err() {
                again = true;
            }
        }
    }
}
