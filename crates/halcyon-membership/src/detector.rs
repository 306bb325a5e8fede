//! The failure detector: path, adapter and node judgements from this node's point of view.
//!
//! Invariants:
//! - Pure: no I/O, no clock reads, no threads, no randomness. Time is an input (`now`, a
//!   monotonic [`Duration`] since an arbitrary epoch) and must never go backwards (asserted).
//! - A path (peer node, network) is judged by its detection time, `interval * sensitivity`:
//!   `interval` is the one its sender announced in the last heartbeat accepted on it (the
//!   sender's promise that its next one follows within it), or the network's configured
//!   interval while the path was never heard; `sensitivity` is the network's configured one.
//!   So while the nodes of a running cluster switch a network's interval one after the other
//!   (`halcyon apply`: [`Detector::set_heartbeat`]), a slow sender is never judged by a short
//!   interval it did not announce.
//! - A path is [`PathState::Unknown`] until first heard or until one detection time has passed
//!   since the detector began watching it (its start, or the peer's addition:
//!   [`Detector::set_peers`]); it is [`PathState::Down`] once `now - last_heard >= detection`,
//!   or at once when the local link of its network loses carrier; it is [`PathState::Up`]
//!   again on the first heartbeat heard (with a newer sequence number, see below).
//! - A peer is [`NodeState::Reachable`] while at least one of its paths (any network, disk
//!   included) is up, [`NodeState::Unreachable`] when all of them are down.
//! - An adapter judgement (SPEC 5: `network_down` or `swap_adapter`, not `node_down`) is made
//!   for a down path only when the peer is *heard on another path after* that path went down:
//!   a dead node whose paths time out one after the other never produces one.
//! - Heartbeats from an older incarnation, and sequence numbers not above the last one accepted
//!   on that path, are ignored (they do not refresh the path): this is where replay protection
//!   hooks in.
//! - Every transition is reported once, as a [`Change`], in a deterministic order: by node
//!   number, then network number (peer-level changes first, node-level ones last), and in the
//!   order they happened among equal keys.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use halcyon_config::limits::{
    HEARTBEAT_INTERVAL_MAX_MS, HEARTBEAT_INTERVAL_MIN_MS, NETWORKS_MAX, NODES_MAX,
};
use halcyon_config::{Cluster, Heartbeat, NetworkKind};

/// Most paths one detector tracks.
pub const PATHS_MAX: usize = NODES_MAX * NETWORKS_MAX;

/// One network as the detector sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkSpec {
    /// 1-based network number (its position in the cluster file).
    pub number: u32,
    pub kind: NetworkKind,
    /// The configured heartbeat: this node's interval and the sensitivity every path of the
    /// network is judged with.
    pub heartbeat: Heartbeat,
}

/// One path (peer, network) to watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathSpec {
    pub node: u32,
    pub network: u32,
    /// The peer has a standby interface on this network (its adapter can be swapped).
    pub peer_has_standby: bool,
}

/// What the detector watches: built from the cluster configuration, or by hand in tests and
/// the simulator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetectorConfig {
    pub local_node: u32,
    pub networks: Vec<NetworkSpec>,
    /// Every peer of the cluster, also those sharing no network with this node (they are
    /// reported unreachable).
    pub peers: Vec<u32>,
    pub paths: Vec<PathSpec>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DetectorError {
    #[error("node {0} is not in the cluster")]
    UnknownNode(u32),
    #[error("network {0} is not in the cluster")]
    UnknownNetwork(u32),
}

/// True when `node` takes part in `network`: an ip network needs a primary interface on it; a
/// disk network needs an interface entry naming it, or, when no node lists one, every node
/// shares the device.
pub fn is_on_network(
    cluster: &Cluster,
    node: &halcyon_config::Node,
    network: &halcyon_config::Network,
) -> bool {
    let name = network.name.as_str();
    match network.kind {
        NetworkKind::Ip => node.interface_on(name).is_some(),
        NetworkKind::Disk => {
            let listed =
                |n: &halcyon_config::Node| n.interfaces.iter().any(|i| i.network.as_str() == name);
            listed(node) || !cluster.nodes.iter().any(listed)
        }
    }
}

impl DetectorConfig {
    /// The paths from `local_node` to every peer on every network both are on.
    pub fn from_cluster(cluster: &Cluster, local_node: u32) -> Result<Self, DetectorError> {
        let local = cluster
            .nodes
            .iter()
            .find(|n| n.number == local_node)
            .ok_or(DetectorError::UnknownNode(local_node))?;
        let networks: Vec<NetworkSpec> = cluster
            .networks
            .iter()
            .map(|n| NetworkSpec {
                number: n.number,
                kind: n.kind,
                heartbeat: n.heartbeat,
            })
            .collect();
        let mut peers = Vec::new();
        let mut paths = Vec::new();
        for peer in cluster.nodes.iter().filter(|n| n.number != local_node) {
            peers.push(peer.number);
            for network in &cluster.networks {
                if is_on_network(cluster, local, network) && is_on_network(cluster, peer, network) {
                    paths.push(PathSpec {
                        node: peer.number,
                        network: network.number,
                        peer_has_standby: peer
                            .standby_interfaces_on(network.name.as_str())
                            .next()
                            .is_some(),
                    });
                }
            }
        }
        Ok(DetectorConfig {
            local_node,
            networks,
            peers,
            paths,
        })
    }

    /// The heartbeat settings of a network.
    pub fn heartbeat(&self, network: u32) -> Option<Heartbeat> {
        self.networks
            .iter()
            .find(|n| n.number == network)
            .map(|n| n.heartbeat)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathState {
    /// Not heard yet, and the first detection time has not passed.
    Unknown,
    Up,
    Down,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// No path up yet, and not all of them judged down.
    Unknown,
    Reachable,
    Unreachable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownCause {
    /// `sensitivity` heartbeat intervals passed with nothing heard.
    MissedHeartbeats,
    /// The local interface on this network lost its carrier.
    LocalLinkDown,
}

/// What the local judgement suggests for a down adapter (the coordinator decides, from every
/// node's view, whether the adapter is down: SPEC 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterAction {
    /// No standby interface: the peer has lost this network (`network_down`).
    NetworkDown,
    /// The peer has a standby interface on this network (`swap_adapter`).
    SwapAdapter,
}

/// A transition, reported once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The peer's daemon restarted (a higher incarnation was heard).
    PeerRestarted {
        node: u32,
        old: u64,
        new: u64,
    },
    PathUp {
        node: u32,
        network: u32,
    },
    PathDown {
        node: u32,
        network: u32,
        cause: DownCause,
    },
    /// The path is down while the peer is heard on another network: an adapter or network
    /// problem, not a node failure.
    AdapterDown {
        node: u32,
        network: u32,
        action: AdapterAction,
    },
    /// A path previously reported by [`Change::AdapterDown`] is up again.
    AdapterUp {
        node: u32,
        network: u32,
    },
    NodeReachable {
        node: u32,
        incarnation: u64,
    },
    NodeUnreachable {
        node: u32,
    },
}

impl Change {
    pub fn node(&self) -> u32 {
        match *self {
            Change::PeerRestarted { node, .. }
            | Change::PathUp { node, .. }
            | Change::PathDown { node, .. }
            | Change::AdapterDown { node, .. }
            | Change::AdapterUp { node, .. }
            | Change::NodeReachable { node, .. }
            | Change::NodeUnreachable { node } => node,
        }
    }

    /// The network of a path's change (`None`: a change of the peer itself).
    pub fn network(&self) -> Option<u32> {
        match *self {
            Change::PathUp { network, .. }
            | Change::PathDown { network, .. }
            | Change::AdapterDown { network, .. }
            | Change::AdapterUp { network, .. } => Some(network),
            Change::PeerRestarted { .. }
            | Change::NodeReachable { .. }
            | Change::NodeUnreachable { .. } => None,
        }
    }

    /// Order key: node number, then network number; peer-level changes before the node's
    /// paths, node-level changes after them.
    fn order_key(&self) -> (u32, u32) {
        match *self {
            Change::PeerRestarted { node, .. } => (node, 0),
            Change::PathUp { node, network }
            | Change::PathDown { node, network, .. }
            | Change::AdapterDown { node, network, .. }
            | Change::AdapterUp { node, network } => (node, network),
            Change::NodeReachable { node, .. } | Change::NodeUnreachable { node } => {
                (node, u32::MAX)
            }
        }
    }
}

/// What happened to one heartbeat given to [`Detector::heard`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heard {
    Accepted,
    /// No such path (unknown node or network, or this node itself).
    UnknownPath,
    /// The local link of that network is down: a buffered beat, ignored.
    LocalLinkDown,
    /// From an incarnation older than the one already heard.
    StaleIncarnation,
    /// Sequence number not above the last accepted one on this path (duplicate or replay).
    StaleSequence,
}

#[derive(Clone, Debug)]
struct Path {
    /// What the path is judged by: the interval its sender announced in the last heartbeat
    /// accepted on it, or the network's configured interval while it was never heard; but
    /// the longer one it replaces for the first heartbeat announcing a shorter one
    /// ([`Detector::heard`]).
    interval: Duration,
    /// The interval the sender announced last (`interval` while it was never heard): what
    /// this node polls for at once ([`Detector::interval_min`]).
    announced: Duration,
    peer_has_standby: bool,
    /// When the detector began watching this path (its start, or when the peer was
    /// added): a path never heard is down one detection time after it.
    watched_since: Duration,
    state: PathState,
    last_heard: Option<Duration>,
    down_at: Option<Duration>,
    seq_last: Option<u64>,
    adapter_down: bool,
    /// Heartbeats that came more than [`LATE_INTERVALS`] intervals (announced by the previous
    /// one) after the previous one.
    late: u64,
    /// Intervals that passed without a heartbeat between two that came.
    missed: u64,
}

impl Path {
    /// A path not heard yet, watched from `now`, judged by its network's `heartbeat`.
    fn new(spec: &PathSpec, heartbeat: Heartbeat, now: Duration) -> Path {
        assert_heartbeat(heartbeat);
        Path {
            interval: heartbeat.interval,
            announced: heartbeat.interval,
            peer_has_standby: spec.peer_has_standby,
            watched_since: now,
            state: PathState::Unknown,
            last_heard: None,
            down_at: None,
            seq_last: None,
            adapter_down: false,
            late: 0,
            missed: 0,
        }
    }

    /// A heartbeat accepted at `now` announcing `interval`: counted late against what the
    /// previous one promised, then the interval the path is judged by from now on.
    ///
    /// A sender that switched to a shorter interval is judged by it from its second
    /// heartbeat announcing it. The first may have waited for this node to take it for as
    /// long as this node's own, longer, pace allows (the heartbeat thread's sleep, a disk
    /// link's reads: both follow the shortest interval in play, which only this heartbeat
    /// shortens), and judged by the shorter at once that wait alone could take the path
    /// down (a CI run of session 24: 1 s x 4 to 30 ms, 120 ms of detection against up to
    /// 200 ms of sleep). The poll follows it at once ([`Detector::interval_min`]), so the
    /// next one is taken within the new pace.
    fn take_promise(&mut self, now: Duration, interval: Duration) {
        if self.state == PathState::Up
            && let Some(before) = self.last_heard
        {
            let intervals = (now - before).as_secs_f64() / self.interval.as_secs_f64();
            if intervals > LATE_INTERVALS {
                self.late += 1;
                self.missed += (intervals.round() as u64).saturating_sub(1);
            }
        }
        let first_shorter = interval < self.interval && self.announced != interval;
        self.announced = interval;
        if !first_shorter {
            self.interval = interval;
        }
    }
}

/// The detection time of a path judged by `interval` on a network of `heartbeat`: the
/// configuration's rule, with the interval the path is judged by.
fn detection(interval: Duration, heartbeat: Heartbeat) -> Duration {
    halcyon_config::timing::detection_time(interval, heartbeat.sensitivity)
}

/// A configured heartbeat that judges paths: a sensitivity of 0, or a zero interval, would
/// declare every path down at once (the configuration and the control handles refuse them).
fn assert_heartbeat(heartbeat: Heartbeat) {
    assert!(
        heartbeat.sensitivity >= 1 && !heartbeat.interval.is_zero(),
        "bad heartbeat settings: {heartbeat:?}"
    );
}

/// A heartbeat this many intervals (announced by the previous one on its path) after the
/// previous one is counted late.
pub const LATE_INTERVALS: f64 = 1.5;

#[derive(Clone, Debug)]
struct Peer {
    state: NodeState,
    incarnation: Option<u64>,
}

/// Status of one path, for `halcyon status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathStatus {
    pub node: u32,
    pub network: u32,
    pub state: PathState,
    /// Time since the last accepted heartbeat (`None`: never heard).
    pub last_heard_age: Option<Duration>,
    /// An adapter judgement is standing for this path.
    pub adapter_down: bool,
    pub seq_last: Option<u64>,
    /// What the path is judged by (its detection time is this times the network's
    /// sensitivity): the interval its sender announced in the last heartbeat accepted on it,
    /// or the network's configured one while it was never heard.
    pub interval: Duration,
    /// Heartbeats accepted more than [`LATE_INTERVALS`] intervals (announced by the previous
    /// one) after the previous one on this path, since the detector started.
    pub late: u64,
    /// Heartbeat intervals that passed with nothing accepted on this path between two
    /// heartbeats that were (lost or late heartbeats; a path down is not counted).
    pub missed: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub node: u32,
    pub state: NodeState,
    pub incarnation: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkStatus {
    pub network: u32,
    pub local_link_up: bool,
    /// The network's configured heartbeat (it may have changed since start:
    /// [`Detector::set_heartbeat`]): its sensitivity judges every path of the network, its
    /// interval the paths never heard.
    pub heartbeat: Heartbeat,
}

/// Every state the detector holds, sorted by node then network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub at: Duration,
    pub local_node: u32,
    pub nodes: Vec<NodeStatus>,
    pub paths: Vec<PathStatus>,
    pub networks: Vec<NetworkStatus>,
}

#[derive(Clone, Debug)]
pub struct Detector {
    local_node: u32,
    now_last: Duration,
    /// Network number -> local link up.
    local_link_up: BTreeMap<u32, bool>,
    /// Network number -> its configured heartbeat (the sensitivity of its paths, the interval
    /// of those never heard).
    heartbeats: BTreeMap<u32, Heartbeat>,
    peers: BTreeMap<u32, Peer>,
    paths: BTreeMap<(u32, u32), Path>,
    pending: Vec<Change>,
}

impl Detector {
    /// A detector started at `now`: every path unknown, every local link up.
    pub fn new(config: &DetectorConfig, now: Duration) -> Result<Self, DetectorError> {
        assert!(
            config.paths.len() <= PATHS_MAX,
            "too many paths: {}",
            config.paths.len()
        );
        let mut peers = BTreeMap::new();
        for &node in &config.peers {
            assert_ne!(
                node, config.local_node,
                "the local node is not its own peer"
            );
            peers.insert(
                node,
                Peer {
                    state: NodeState::Unknown,
                    incarnation: None,
                },
            );
        }
        let mut paths = BTreeMap::new();
        for spec in &config.paths {
            if !peers.contains_key(&spec.node) {
                return Err(DetectorError::UnknownNode(spec.node));
            }
            let heartbeat = config
                .heartbeat(spec.network)
                .ok_or(DetectorError::UnknownNetwork(spec.network))?;
            let previous = paths.insert((spec.node, spec.network), Path::new(spec, heartbeat, now));
            assert!(
                previous.is_none(),
                "duplicate path {}/{}",
                spec.node,
                spec.network
            );
        }
        Ok(Detector {
            local_node: config.local_node,
            now_last: now,
            local_link_up: config.networks.iter().map(|n| (n.number, true)).collect(),
            heartbeats: config
                .networks
                .iter()
                .map(|n| (n.number, n.heartbeat))
                .collect(),
            peers,
            paths,
            pending: Vec::new(),
        })
    }

    fn advance(&mut self, now: Duration) {
        assert!(
            now >= self.now_last,
            "time went backwards: {now:?} < {:?}",
            self.now_last
        );
        self.now_last = now;
    }

    /// A heartbeat from `node` arrived on `network` at `now`, announcing that the sender's
    /// next one there follows within `interval`: once accepted, the path is judged by it.
    pub fn heard(
        &mut self,
        now: Duration,
        node: u32,
        network: u32,
        incarnation: u64,
        seq: u64,
        interval: Duration,
    ) -> Heard {
        // The wire refuses other intervals (`WireError::IntervalOutOfLimits`); checked again
        // where it is used.
        assert!(
            (Duration::from_millis(HEARTBEAT_INTERVAL_MIN_MS)
                ..=Duration::from_millis(HEARTBEAT_INTERVAL_MAX_MS))
                .contains(&interval),
            "an announced interval outside the limits: {interval:?}"
        );
        self.advance(now);
        if !self.paths.contains_key(&(node, network)) {
            return Heard::UnknownPath;
        }
        if !self.local_link_up.get(&network).copied().unwrap_or(true) {
            return Heard::LocalLinkDown;
        }
        let peer = self.peers.get_mut(&node).expect("a path's peer exists");
        match peer.incarnation {
            Some(old) if incarnation < old => return Heard::StaleIncarnation,
            Some(old) if incarnation > old => {
                peer.incarnation = Some(incarnation);
                self.pending.push(Change::PeerRestarted {
                    node,
                    old,
                    new: incarnation,
                });
                for path in self
                    .paths
                    .range_mut((node, 0)..=(node, u32::MAX))
                    .map(|(_, p)| p)
                {
                    path.seq_last = None;
                }
            }
            Some(_) => {}
            None => peer.incarnation = Some(incarnation),
        }
        let path = self.paths.get_mut(&(node, network)).expect("checked above");
        if path.seq_last.is_some_and(|last| seq <= last) {
            return Heard::StaleSequence;
        }
        path.seq_last = Some(seq);
        path.take_promise(now, interval);
        path.last_heard = Some(now);
        if path.state != PathState::Up {
            path.state = PathState::Up;
            path.down_at = None;
            self.pending.push(Change::PathUp { node, network });
            if path.adapter_down {
                path.adapter_down = false;
                self.pending.push(Change::AdapterUp { node, network });
            }
        }
        // The peer is alive now: its paths that went down before now are adapter problems.
        for (&(_, other), path) in self.paths.range_mut((node, 0)..=(node, u32::MAX)) {
            if path.state == PathState::Down
                && !path.adapter_down
                && path.down_at.is_some_and(|t| t < now)
            {
                path.adapter_down = true;
                let action = if path.peer_has_standby {
                    AdapterAction::SwapAdapter
                } else {
                    AdapterAction::NetworkDown
                };
                self.pending.push(Change::AdapterDown {
                    node,
                    network: other,
                    action,
                });
            }
        }
        self.update_node(node);
        Heard::Accepted
    }

    /// From `now` on, `network`'s configured heartbeat is `heartbeat` (a running cluster's
    /// `halcyon apply`); returns the one it replaces. Its paths never heard take its
    /// interval; those heard keep the interval their sender announced (the sender switches
    /// when it applies the change, and says so in its heartbeats); every path's detection
    /// time becomes its interval times the new sensitivity. A path up but silent for its new
    /// detection time goes down at the next tick; one already down stays down until heard
    /// again.
    pub fn set_heartbeat(
        &mut self,
        now: Duration,
        network: u32,
        heartbeat: Heartbeat,
    ) -> Result<Heartbeat, DetectorError> {
        assert_heartbeat(heartbeat);
        self.advance(now);
        let configured = self
            .heartbeats
            .get_mut(&network)
            .ok_or(DetectorError::UnknownNetwork(network))?;
        let old = std::mem::replace(configured, heartbeat);
        for path in self
            .paths
            .iter_mut()
            .filter(|((_, n), path)| *n == network && path.last_heard.is_none())
            .map(|(_, path)| path)
        {
            path.interval = heartbeat.interval;
            path.announced = heartbeat.interval;
        }
        Ok(old)
    }

    /// The shortest interval a path of `network` that is not down is judged by, or its
    /// configured interval when shorter (`None`: no such network): how often something
    /// polling for that network's heartbeats (a disk link's reads, a driver's ticks) must look.
    pub fn interval_min(&self, network: u32) -> Option<Duration> {
        let configured = self.heartbeats.get(&network)?.interval;
        Some(
            self.paths
                .iter()
                .filter(|((_, n), path)| *n == network && path.state != PathState::Down)
                .map(|(_, path)| path.interval.min(path.announced))
                .fold(configured, Duration::min),
        )
    }

    /// From `now` on, watch the peers, networks and paths of `config` (a running cluster's
    /// `halcyon apply` added or removed nodes or networks): a peer, network or path that
    /// stays keeps its state (a kept network its heartbeat: [`Detector::set_heartbeat`]
    /// changes that); a new one starts as at start (a peer or path unknown, its first
    /// detection time counted from `now`; a network with its local link up and its
    /// configured heartbeat); one left out is forgotten, with no change reported for it. A
    /// peer that had paths only on networks left out is judged again at once (unreachable:
    /// nothing is left to hear it on). The local node must be the detector's. Refused, with
    /// nothing changed: a path of a peer or network `config` does not have.
    pub fn set_peers(
        &mut self,
        now: Duration,
        config: &DetectorConfig,
    ) -> Result<(), DetectorError> {
        assert_eq!(config.local_node, self.local_node, "the same local node");
        assert!(config.paths.len() <= PATHS_MAX, "too many paths");
        self.advance(now);
        for spec in &config.paths {
            if !config.peers.contains(&spec.node) {
                return Err(DetectorError::UnknownNode(spec.node));
            }
            if config.heartbeat(spec.network).is_none() {
                return Err(DetectorError::UnknownNetwork(spec.network));
            }
        }
        let kept = |network: &u32| config.heartbeat(*network).is_some();
        self.heartbeats.retain(|network, _| kept(network));
        self.local_link_up.retain(|network, _| kept(network));
        for network in &config.networks {
            assert_heartbeat(network.heartbeat);
            self.heartbeats
                .entry(network.number)
                .or_insert(network.heartbeat);
            self.local_link_up.entry(network.number).or_insert(true);
        }
        // Peers that lose a path (its network left out) are judged again below.
        let unlinked: BTreeSet<u32> = self
            .paths
            .keys()
            .filter(|(_, network)| !kept(network))
            .map(|&(node, _)| node)
            .collect();
        self.peers.retain(|node, _| config.peers.contains(node));
        for &node in &config.peers {
            assert_ne!(node, self.local_node, "the local node is not its own peer");
            self.peers.entry(node).or_insert(Peer {
                state: NodeState::Unknown,
                incarnation: None,
            });
        }
        self.paths.retain(|(node, network), _| {
            config
                .paths
                .iter()
                .any(|p| (p.node, p.network) == (*node, *network))
        });
        for spec in &config.paths {
            let heartbeat = self.heartbeats[&spec.network];
            self.paths
                .entry((spec.node, spec.network))
                .and_modify(|path| path.peer_has_standby = spec.peer_has_standby)
                .or_insert_with(|| Path::new(spec, heartbeat, now));
        }
        self.pending.retain(|change| {
            self.peers.contains_key(&change.node())
                && change.network().is_none_or(|network| kept(&network))
        });
        for node in unlinked {
            if self.peers.contains_key(&node) {
                self.update_node(node);
            }
        }
        Ok(())
    }

    /// The local interface on `network` gained (`up`) or lost its carrier at `now`. Losing it
    /// takes every path on that network down at once; they come up again when heard.
    pub fn local_link(
        &mut self,
        now: Duration,
        network: u32,
        up: bool,
    ) -> Result<(), DetectorError> {
        self.advance(now);
        let link_up = self
            .local_link_up
            .get_mut(&network)
            .ok_or(DetectorError::UnknownNetwork(network))?;
        *link_up = up;
        if up {
            return Ok(());
        }
        let mut affected = Vec::new();
        for (&(node, path_network), path) in self.paths.iter_mut() {
            if path_network == network && path.state != PathState::Down {
                path.state = PathState::Down;
                path.down_at = Some(now);
                affected.push(node);
                self.pending.push(Change::PathDown {
                    node,
                    network,
                    cause: DownCause::LocalLinkDown,
                });
            }
        }
        for node in affected {
            self.update_node(node);
        }
        Ok(())
    }

    /// The earliest moment a [`Detector::tick`] would judge a path down (a path up and not
    /// heard again by then, or one never heard), if no heartbeat comes first; `None` when no
    /// path can expire. A driver that sleeps between ticks wakes by then.
    pub fn next_expiry(&self) -> Option<Duration> {
        self.paths
            .iter()
            .filter_map(|(&(_, network), path)| {
                let heartbeat = self.heartbeats.get(&network)?;
                let since = match (path.state, path.last_heard) {
                    (PathState::Up, Some(last)) => last,
                    (PathState::Unknown, _) => path.watched_since,
                    _ => return None,
                };
                Some(since + detection(path.interval, *heartbeat))
            })
            .min()
    }

    /// Judge timeouts at `now` and return every change since the last call, in order.
    pub fn tick(&mut self, now: Duration) -> Vec<Change> {
        self.advance(now);
        let mut affected = Vec::new();
        for (&(node, network), path) in self.paths.iter_mut() {
            let detection = detection(path.interval, self.heartbeats[&network]);
            let expired = match (path.state, path.last_heard) {
                (PathState::Up, Some(last)) => now - last >= detection,
                (PathState::Unknown, _) => now - path.watched_since >= detection,
                _ => false,
            };
            if expired {
                path.state = PathState::Down;
                path.down_at = Some(now);
                self.pending.push(Change::PathDown {
                    node,
                    network,
                    cause: DownCause::MissedHeartbeats,
                });
                if affected.last() != Some(&node) {
                    affected.push(node);
                }
            }
        }
        // Nodes are judged after all their paths: a dead node's paths expiring in the same
        // tick give one node change, not a series of adapter changes.
        for node in affected {
            self.update_node(node);
        }
        // Peers with no path at all are unreachable from the start.
        let pathless: Vec<u32> = self
            .peers
            .iter()
            .filter(|(_, p)| p.state == NodeState::Unknown)
            .map(|(&n, _)| n)
            .filter(|&n| self.paths.range((n, 0)..=(n, u32::MAX)).next().is_none())
            .collect();
        for node in pathless {
            self.update_node(node);
        }
        let mut changes = std::mem::take(&mut self.pending);
        changes.sort_by_key(Change::order_key); // Stable: keeps the order of equal keys.
        changes
    }

    fn update_node(&mut self, node: u32) {
        let mut any_up = false;
        let mut all_down = true;
        for path in self
            .paths
            .range((node, 0)..=(node, u32::MAX))
            .map(|(_, p)| p)
        {
            any_up |= path.state == PathState::Up;
            all_down &= path.state == PathState::Down;
        }
        let peer = self.peers.get_mut(&node).expect("known peer");
        let state = if any_up {
            NodeState::Reachable
        } else if all_down {
            NodeState::Unreachable
        } else {
            peer.state
        };
        if state == peer.state {
            return;
        }
        peer.state = state;
        self.pending.push(match state {
            NodeState::Reachable => Change::NodeReachable {
                node,
                incarnation: peer.incarnation.expect("a reachable peer was heard"),
            },
            NodeState::Unreachable => Change::NodeUnreachable { node },
            NodeState::Unknown => unreachable!("never goes back to unknown"),
        });
    }

    /// The state of every node and path at `now` (ages are computed against `now`).
    pub fn snapshot(&self, now: Duration) -> Snapshot {
        let now = now.max(self.now_last);
        Snapshot {
            at: now,
            local_node: self.local_node,
            nodes: self
                .peers
                .iter()
                .map(|(&node, p)| NodeStatus {
                    node,
                    state: p.state,
                    incarnation: p.incarnation,
                })
                .collect(),
            paths: self
                .paths
                .iter()
                .map(|(&(node, network), p)| PathStatus {
                    node,
                    network,
                    state: p.state,
                    last_heard_age: p.last_heard.map(|t| now - t),
                    adapter_down: p.adapter_down,
                    seq_last: p.seq_last,
                    interval: p.interval,
                    late: p.late,
                    missed: p.missed,
                })
                .collect(),
            networks: self
                .local_link_up
                .iter()
                .map(|(&network, &up)| NetworkStatus {
                    network,
                    local_link_up: up,
                    heartbeat: self.heartbeats[&network],
                })
                .collect(),
        }
    }

    pub fn node_state(&self, node: u32) -> Option<NodeState> {
        self.peers.get(&node).map(|p| p.state)
    }

    pub fn path_state(&self, node: u32, network: u32) -> Option<PathState> {
        self.paths.get(&(node, network)).map(|p| p.state)
    }
}

#[cfg(test)]
mod tests;
