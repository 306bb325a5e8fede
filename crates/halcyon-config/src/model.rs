//! The validated configuration model.
//!
//! Values of these types only come out of [`crate::load`] (or are built by tests and
//! the simulator): every cross-reference has been checked, so a `NodeName` in a
//! package's node list names a node of the cluster, a dependency names a package,
//! and so on. The types derive serde because the configuration is replicated state
//! (SPEC 4: "a configuration that is applied is the same on every node").

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Hard limits (TigerBeetle: "put a limit on everything").
pub mod limits {
    /// Most nodes a cluster may have (SPEC 1: 2 to 64 servers; the engine is
    /// benchmarked at 256 so the bound has head-room).
    pub const NODES_MAX: usize = 256;
    /// Most packages a cluster may have.
    pub const PACKAGES_MAX: usize = 10_000;
    /// Most networks a cluster may have.
    pub const NETWORKS_MAX: usize = 16;
    /// Heartbeat interval bounds.
    pub const HEARTBEAT_INTERVAL_MIN_MS: u64 = 10;
    pub const HEARTBEAT_INTERVAL_MAX_MS: u64 = 10_000;
    /// Missed heartbeats before a path is declared down.
    pub const SENSITIVITY_MIN: u32 = 2;
    pub const SENSITIVITY_MAX: u32 = 100;
    /// Service restart count bound.
    pub const SERVICE_RESTART_MAX: u32 = 1_000;
    /// Node numbers are 1..=NODE_NUMBER_MAX.
    pub const NODE_NUMBER_MAX: u32 = 65_535;
    /// How long a killed process (a service, a command at its timeout) is waited for, and
    /// again its process group (`halcyon-resources`).
    pub const KILL_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
}

/// Default heartbeat interval (see ARCHITECTURE.md, "Failover budget").
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);
/// Default number of missed heartbeats before a path is down.
pub const DEFAULT_SENSITIVITY: u32 = 4;
/// The fast profile's heartbeat interval (`[heartbeat] profile = "fast"`; README,
/// "Configuration", and ARCHITECTURE.md, "The fast profile", give its limits).
pub const FAST_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(30);
/// The fast profile's sensitivity.
pub const FAST_SENSITIVITY: u32 = 3;
/// Default time after which a package failure on a node no longer excludes it.
pub const DEFAULT_FAILURE_EXPIRY: Duration = Duration::from_secs(3600);
/// Default timeout for a script's run or halt command.
pub const DEFAULT_SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);
/// Default time a service is given between SIGTERM and SIGKILL.
pub const DEFAULT_SERVICE_HALT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default restarts of an OCF resource on a node after its monitor fails, before the
/// package fails there.
pub const DEFAULT_OCF_RESTART: u32 = 1;
/// Default maximum event duration before a warning (HACMP's config_too_long).
pub const DEFAULT_MAX_EVENT_DURATION: Duration = Duration::from_secs(360);
/// Largest `[limits] max_event_duration` (and rules-file `max_duration`): a day.
pub const MAX_EVENT_DURATION_MAX: Duration = Duration::from_secs(24 * 3600);
/// Default base port: heartbeats on `port`, consensus on `port + 1`, API on `port + 2`, the
/// nodes' internal API on `port + 3`.
pub const DEFAULT_PORT: u16 = 7400;

macro_rules! name_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_owned())
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// A node's name, unique in the cluster.
    NodeName
);
name_type!(
    /// A network's name, unique in the cluster.
    NetworkName
);
name_type!(
    /// A package's name, unique in the cluster.
    PackageName
);

/// The whole configuration: one cluster and its packages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub cluster: Cluster,
    /// Packages by name.
    pub packages: BTreeMap<PackageName, Package>,
}

impl Config {
    /// The node with this name.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.cluster.node(name)
    }

    /// The network with this name.
    pub fn network(&self, name: &str) -> Option<&Network> {
        self.cluster.network(name)
    }

    /// The package with this name.
    pub fn package(&self, name: &str) -> Option<&Package> {
        self.packages.get(name)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub name: String,
    pub id: u64,
    /// Base port (heartbeats `port`, consensus `port + 1`, API `port + 2`, internal API
    /// `port + 3`).
    pub port: u16,
    /// Nodes in configured order (the order of `["*"]` node lists).
    pub nodes: Vec<Node>,
    /// Networks in configured order; a network's number is its position + 1.
    pub networks: Vec<Network>,
    pub heartbeat: Heartbeat,
    pub quorum: Quorum,
    pub events: EventDefaults,
    pub limits: Limits,
}

impl Cluster {
    /// The node with this name.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name.as_str() == name)
    }

    /// The network with this name.
    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name.as_str() == name)
    }

    /// The quorum witness, if it has this name.
    pub fn witness_named(&self, name: &str) -> Option<&Witness> {
        self.quorum
            .witness
            .as_ref()
            .filter(|w| w.name.as_str() == name)
    }

    /// The node with this number (as heartbeats and the detector name nodes).
    pub fn node_numbered(&self, number: u32) -> Option<&Node> {
        self.nodes.iter().find(|n| n.number == number)
    }

    /// The network with this number (as heartbeats and the detector name networks).
    pub fn network_numbered(&self, number: u32) -> Option<&Network> {
        self.networks.iter().find(|n| n.number == number)
    }

    /// How many Raft voters the cluster has (nodes plus the witness).
    pub fn voter_count(&self) -> usize {
        self.nodes.len() + usize::from(self.quorum.witness.is_some())
    }

    /// The smallest voter set allowed: `quorum.min_voters`, by default a majority of the
    /// configured voters (nodes and witness).
    pub fn min_voters(&self) -> usize {
        match self.quorum.min_voters {
            0 => self.voter_count() / 2 + 1,
            n => n as usize,
        }
    }

    /// The smallest voter set auto-shrink leaves: [`Cluster::min_voters`], and never two
    /// voters unless the witness is one of them (two nodes alone lose their quorum when
    /// either fails; with the witness the survivor keeps it).
    pub fn shrink_floor(&self) -> usize {
        let pair = if self.quorum.witness.is_some() { 2 } else { 3 };
        self.min_voters().max(pair)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub name: NodeName,
    /// Node number: orders events (SPEC 7) and is the node's Raft id.
    pub number: u32,
    /// Interfaces on the cluster's networks.
    pub interfaces: Vec<Interface>,
    /// Optional fencing agent for this node.
    pub fencing: Option<Fencing>,
}

impl Node {
    /// The node's primary (non-standby) interface on a network.
    pub fn interface_on(&self, network: &str) -> Option<&Interface> {
        self.interfaces
            .iter()
            .find(|i| i.network.as_str() == network && !i.standby)
    }

    /// The node's standby interfaces on a network.
    pub fn standby_interfaces_on<'a>(
        &'a self,
        network: &'a str,
    ) -> impl Iterator<Item = &'a Interface> + 'a {
        self.interfaces
            .iter()
            .filter(move |i| i.network.as_str() == network && i.standby)
    }

    /// True when the node has a (primary) interface on the network.
    pub fn is_on_network(&self, network: &str) -> bool {
        self.interface_on(network).is_some()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    pub network: NetworkName,
    /// The node's stationary address on this network (absent for `disk` networks).
    pub address: Option<IpAddr>,
    /// The kernel's interface name (found from the address at run time when absent).
    pub device: Option<String>,
    /// A standby interface takes over service addresses when the primary fails
    /// (local LAN failover, HACMP's adapter swap).
    pub standby: bool,
}

/// A node's fencing topology (SPEC 6, Pacemaker's fencing levels): the levels are tried in
/// order until one succeeds; a level succeeds when every one of its devices does.
/// `[node.fencing]` with `agent` is one level of one device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fencing {
    /// At least one level, each with at least one device.
    pub levels: Vec<FenceLevel>,
}

impl Fencing {
    /// Every device, with its level's and its own position (both 1-based).
    pub fn devices(&self) -> impl Iterator<Item = (usize, usize, &FenceDevice)> {
        self.levels.iter().enumerate().flat_map(|(l, level)| {
            level
                .devices
                .iter()
                .enumerate()
                .map(move |(d, device)| (l + 1, d + 1, device))
        })
    }
}

/// One fencing level: devices used together (e.g. both power supplies of a server).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FenceLevel {
    pub devices: Vec<FenceDevice>,
}

/// One fence device: an agent of the fence-agents convention (options on stdin as
/// `key=value` lines, `action=off|on|reboot|status|monitor|metadata`, exit 0 for success;
/// for `status` 0 = on, 2 = off, 1 = error).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FenceDevice {
    /// The agent program: a path, or a name looked up in `PATH`, `/usr/sbin` and `/sbin`.
    pub agent: String,
    /// The agent's options, passed on stdin as written.
    pub options: BTreeMap<String, String>,
    /// How long one call of the agent may take before it is killed.
    pub timeout: Duration,
}

/// The longest a fence agent call may be given (`timeout`).
pub const FENCE_TIMEOUT_MAX: Duration = Duration::from_secs(600);
/// The default `timeout` of a fence agent call (Pacemaker's `stonith-timeout` is 60 s).
pub const FENCE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkKind {
    Ip,
    Disk,
}

impl fmt::Display for NetworkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetworkKind::Ip => "ip",
            NetworkKind::Disk => "disk",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub name: NetworkName,
    /// 1-based position in the cluster file; orders events (SPEC 7).
    pub number: u32,
    pub kind: NetworkKind,
    /// Subnets of an `ip` network (node and relocatable addresses must lie in one).
    pub subnets: Vec<Subnet>,
    /// Shared file or block device of a `disk` network.
    pub device: Option<String>,
    /// Heartbeat settings of this network (the cluster's unless overridden).
    pub heartbeat: Heartbeat,
}

/// An IP subnet: an address and a prefix length, normalised to the network address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub address: IpAddr,
    pub prefix: u8,
}

impl Subnet {
    /// True when `addr` lies in this subnet.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.address, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = prefix_mask_u32(self.prefix);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = prefix_mask_u128(self.prefix);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

fn prefix_mask_u32(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

fn prefix_mask_u128(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub interval: Duration,
    /// Consecutive missed heartbeats before a path is declared down.
    pub sensitivity: u32,
}

impl Default for Heartbeat {
    fn default() -> Self {
        HeartbeatProfile::Default.heartbeat()
    }
}

/// A named pair of heartbeat settings (`[heartbeat] profile`); an explicit `interval` or
/// `sensitivity` beside it overrides the profile's. Only the heartbeat is stored: the
/// lease and the Raft timings are derived from it as for any other heartbeat
/// (`timing.rs`), so a profile changes no part of the safety rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeartbeatProfile {
    /// 100 ms x 4: detection 400 ms, lease 619 ms.
    Default,
    /// 30 ms x 3: detection 90 ms, lease 221 ms. For a network whose round trip stays
    /// well under 10 ms and nodes that are not CPU-starved (see its limits in README).
    Fast,
}

impl HeartbeatProfile {
    /// Every profile with its name in the cluster file.
    pub const ALL: [(&'static str, HeartbeatProfile); 2] = [
        ("default", HeartbeatProfile::Default),
        ("fast", HeartbeatProfile::Fast),
    ];

    /// The profile's heartbeat settings.
    pub fn heartbeat(self) -> Heartbeat {
        match self {
            HeartbeatProfile::Default => Heartbeat {
                interval: DEFAULT_HEARTBEAT_INTERVAL,
                sensitivity: DEFAULT_SENSITIVITY,
            },
            HeartbeatProfile::Fast => Heartbeat {
                interval: FAST_HEARTBEAT_INTERVAL,
                sensitivity: FAST_SENSITIVITY,
            },
        }
    }

    /// The profile's name in the cluster file.
    pub fn name(self) -> &'static str {
        match self {
            HeartbeatProfile::Default => "default",
            HeartbeatProfile::Fast => "fast",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quorum {
    /// A witness: a Raft voter that runs no packages (two-node clusters).
    pub witness: Option<Witness>,
    /// Shrink the voter set after a committed node_down (never below `min_voters`).
    pub auto_shrink: bool,
    /// How long a node stays committed down before auto-shrink takes it out of the voters.
    #[serde(default = "default_shrink_after")]
    pub shrink_after: Duration,
    pub min_voters: u32,
    /// How long a node may run failover packages after the quorum last confirmed it.
    /// `None`: derived from the heartbeat settings (see ARCHITECTURE.md).
    pub lease: Option<Duration>,
    /// Linux watchdog device, if the node should arm one.
    pub watchdog: Option<String>,
}

/// `quorum.shrink_after` when not given (Corosync's `last_man_standing_window` is 10 s).
pub const DEFAULT_SHRINK_AFTER: Duration = Duration::from_secs(10);

fn default_shrink_after() -> Duration {
    DEFAULT_SHRINK_AFTER
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Witness {
    pub name: NodeName,
    pub number: u32,
    pub address: IpAddr,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventDefaults {
    /// Run before and after every event (with the outcome in the environment).
    pub notify: Option<String>,
    pub pre_event: Option<String>,
    pub post_event: Option<String>,
    /// The rules file (events -> recovery programs), relative to the cluster file.
    pub rules: Option<String>,
    /// How long each node keeps event records in its durable event log (`events.redb`).
    #[serde(default = "default_keep_events_for")]
    pub keep_events_for: Duration,
    /// The most MiB of records that log keeps (the oldest go first).
    #[serde(default = "default_keep_events_mib")]
    pub keep_events_mib: u64,
    /// Where event records are POSTed as JSON (`[[events.webhook]]`).
    #[serde(default)]
    pub webhooks: Vec<Webhook>,
}

/// Default of `[events] keep_events_for`: 90 days.
pub const DEFAULT_KEEP_EVENTS_FOR: Duration = Duration::from_secs(90 * 24 * 3600);
/// Default of `[events] keep_events_mib`.
pub const DEFAULT_KEEP_EVENTS_MIB: u64 = 256;
/// Largest `[events] keep_events_mib`.
pub const KEEP_EVENTS_MIB_MAX: u64 = 1 << 20;

fn default_keep_events_for() -> Duration {
    DEFAULT_KEEP_EVENTS_FOR
}

fn default_keep_events_mib() -> u64 {
    DEFAULT_KEEP_EVENTS_MIB
}

impl Default for EventDefaults {
    fn default() -> Self {
        EventDefaults {
            notify: None,
            pre_event: None,
            post_event: None,
            rules: None,
            keep_events_for: DEFAULT_KEEP_EVENTS_FOR,
            keep_events_mib: DEFAULT_KEEP_EVENTS_MIB,
            webhooks: Vec::new(),
        }
    }
}

/// A webhook (`[[events.webhook]]`): the coordinator POSTs the record of every chosen event
/// to `url` as JSON, bounded by `timeout` per attempt, with `retries` more attempts after a
/// failure (backing off 0.5 s, 1 s, 2 s, ...), never holding up the event itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    /// `http://HOST[:PORT]/PATH` (plain HTTP).
    pub url: String,
    /// The event kinds sent ([`WEBHOOK_EVENTS`]); empty: every event, once finished.
    pub events: Vec<String>,
    pub timeout: Duration,
    pub retries: u32,
}

/// Webhooks at most.
pub const WEBHOOKS_MAX: usize = 8;
pub const WEBHOOK_TIMEOUT_DEFAULT: Duration = Duration::from_secs(2);
pub const WEBHOOK_TIMEOUT_MAX: Duration = Duration::from_secs(30);
pub const WEBHOOK_RETRIES_DEFAULT: u32 = 3;
pub const WEBHOOK_RETRIES_MAX: u32 = 10;
/// What a webhook's `events` may name: the built-in events (sent once finished), `user` (every
/// user-defined event, once finished), `error` (an event stopped in ERROR, when it stops),
/// `node_restart` (a node's new incarnation, recorded when it registers), `node_fence` (a
/// fence of a node, recorded when it ends), `event_too_long` (an event running longer than its
/// maximum duration, sent by the coordinator then and after every further period) and
/// `quorum_lost` / `quorum_regained` (sent by each node itself when it loses or regains the
/// quorum: a node without the quorum cannot reach the coordinator). `error` and the last three
/// go only to webhooks that name them; an empty `events` list gets every finished event.
pub const WEBHOOK_EVENTS: &[&str] = &[
    "cluster_start",
    "cluster_halt",
    "node_up",
    "node_down",
    "network_up",
    "network_down",
    "swap_adapter",
    "fail_standby",
    "join_standby",
    "package_failed",
    "package_run",
    "package_halt",
    "package_move",
    "package_enable",
    "package_disable",
    "package_clear",
    "config_change",
    "timer",
    "user",
    "error",
    "node_restart",
    "node_fence",
    "voter_change",
    "event_too_long",
    "quorum_lost",
    "quorum_regained",
];

impl Webhook {
    /// The host, port and path of [`Webhook::url`].
    pub fn target(&self) -> Result<(String, u16, String), String> {
        parse_http_url(&self.url)
    }
}

/// `http://HOST[:PORT][/PATH]` as host, port (80 by default) and path (`/` by default).
pub fn parse_http_url(url: &str) -> Result<(String, u16, String), String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(if url.starts_with("https://") {
            "https is not supported (the daemon's client speaks plain HTTP)".to_owned()
        } else {
            "not an http:// URL".to_owned()
        });
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("an unclosed [ in the host")?;
        let port = match after.strip_prefix(':') {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("port \"{p}\" is not a port number"))?,
            None if after.is_empty() => 80,
            None => return Err(format!("unexpected \"{after}\" after the host")),
        };
        (h.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                p.parse::<u16>()
                    .map_err(|_| format!("port \"{p}\" is not a port number"))?,
            ),
            None => (authority.to_owned(), 80),
        }
    };
    if host.is_empty() || host.contains(['@', ' ', '?', '#']) {
        return Err(format!("\"{host}\" is not a host"));
    }
    if port == 0 {
        return Err("port 0".to_owned());
    }
    if path.contains([' ', '\r', '\n']) {
        return Err("the path contains spaces or line breaks".to_owned());
    }
    Ok((host, port, path.to_owned()))
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// After this long a running event is warned about (HACMP's config_too_long): a log
    /// line, a note in its record, the `notify` command with `HALCYON_NOTIFY_PHASE=too_long`
    /// and `event_too_long` webhooks; again after every further period while it runs.
    pub max_event_duration: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_duration: DEFAULT_MAX_EVENT_DURATION,
        }
    }
}

/// Package type (SPEC 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackageType {
    /// Runs on one node at a time.
    Failover,
    /// Runs on every eligible node of its node list.
    MultiNode,
    /// Runs on every node of the cluster.
    SystemMultiNode,
}

impl fmt::Display for PackageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PackageType::Failover => "failover",
            PackageType::MultiNode => "multi_node",
            PackageType::SystemMultiNode => "system_multi_node",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailoverPolicy {
    /// The highest-priority eligible node in the node list.
    ConfiguredNode,
    /// The eligible node running the fewest packages (ties: node-list order).
    MinPackageNode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailbackPolicy {
    /// Stay where it is when a higher-priority node joins.
    Manual,
    /// Move back to the (acting) primary node when it joins.
    Automatic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DependencyLocation {
    /// The dependee must be up on the same node.
    SameNode,
    /// The dependee must be up on some node.
    AnyNode,
    /// The dependee must be up on another node than this package.
    DifferentNode,
}

impl fmt::Display for DependencyLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DependencyLocation::SameNode => "same_node",
            DependencyLocation::AnyNode => "any_node",
            DependencyLocation::DifferentNode => "different_node",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    pub package: PackageName,
    pub location: DependencyLocation,
}

/// When a package with automatic failback may move back (SPEC 8, HACMP's delayed
/// fallback timer). Times are UTC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackTimer {
    Daily {
        hour: i8,
        minute: i8,
    },
    /// `weekday`: 1 = Monday .. 7 = Sunday.
    Weekly {
        weekday: i8,
        hour: i8,
        minute: i8,
    },
    Monthly {
        day: i8,
        hour: i8,
        minute: i8,
    },
    Yearly {
        month: i8,
        day: i8,
        hour: i8,
        minute: i8,
    },
    /// One specific moment.
    Date {
        at: jiff::Timestamp,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Package {
    pub name: PackageName,
    pub package_type: PackageType,
    /// Ordered node list (`["*"]` is expanded to every node in configured order).
    pub nodes: Vec<NodeName>,
    pub auto_run: bool,
    pub failover_policy: FailoverPolicy,
    pub failback_policy: FailbackPolicy,
    pub fallback_timer: Option<FallbackTimer>,
    /// Lower number = more important; packages are placed in this order.
    /// `None` is "no priority" (placed after every prioritised package).
    pub priority: Option<u32>,
    pub dependencies: Vec<Dependency>,
    /// Networks that must be up on a node for the package to run there: the
    /// networks of its `ip` resources plus any listed explicitly.
    pub networks: Vec<NetworkName>,
    pub local_lan_failover_allowed: bool,
    /// What a takeover from a failed node waits for (SPEC 6): its lease's expiry (the
    /// default), or also a confirmed fence of that node (`requires = "fencing"`, e.g. for
    /// shared storage).
    #[serde(default)]
    pub requires: Requires,
    /// `None`: a failure on a node excludes that node until cleared.
    pub failure_expiry: Option<Duration>,
    pub run_timeout: Duration,
    pub halt_timeout: Duration,
    /// Resources in start order (stopped in reverse).
    pub resources: Vec<Resource>,
    pub monitors: Vec<Monitor>,
}

impl Package {
    /// Whether this package, changed from `running` by `halcyon apply`, must halt and run
    /// again where it runs: what runs changed (its type, resources, monitors,
    /// dependencies). A change of where and when it may run only (its node list, `auto_run`,
    /// the failover and failback policies and timer, priority, failure expiry, `requires`,
    /// its networks, the timeouts of its next run and halt, local LAN failover) leaves it
    /// running: the `config_change` plan places it with the new definition and moves it only
    /// when its node is no longer eligible (Serviceguard changes a running package's node
    /// list the same way). A field added later counts as what runs until listed here.
    pub fn restarts_from(&self, running: &Package) -> bool {
        let placed_as_self = Package {
            nodes: self.nodes.clone(),
            auto_run: self.auto_run,
            failover_policy: self.failover_policy,
            failback_policy: self.failback_policy,
            fallback_timer: self.fallback_timer.clone(),
            priority: self.priority,
            networks: self.networks.clone(),
            local_lan_failover_allowed: self.local_lan_failover_allowed,
            requires: self.requires,
            failure_expiry: self.failure_expiry,
            run_timeout: self.run_timeout,
            halt_timeout: self.halt_timeout,
            ..running.clone()
        };
        placed_as_self != *self
    }

    /// Position of `node` in the node list (0 = primary).
    pub fn node_rank(&self, node: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.as_str() == node)
    }

    /// The longest a halt of the package may take on a node: every resource's
    /// [`Resource::halt_bound`], in turn (they are halted in reverse order, one at a time).
    pub fn halt_bound(&self) -> Duration {
        self.resources
            .iter()
            .map(Resource::halt_bound)
            .fold(Duration::ZERO, Duration::saturating_add)
    }

    /// The longest a start of the package may take on a node: `run_timeout` (which bounds
    /// the whole start), then the immediate halt that undoes a start that failed.
    pub fn run_bound(&self) -> Duration {
        self.run_timeout.saturating_add(self.halt_bound())
    }

    pub fn is_failover(&self) -> bool {
        self.package_type == PackageType::Failover
    }
}

/// What a package's takeover from a failed node waits for (`requires`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Requires {
    /// The failed node's lease has certainly expired (its guard has stopped the package),
    /// or a fencing level confirmed the node is off, whichever comes first.
    #[default]
    Lease,
    /// Both: the lease has expired and a fencing level confirmed the node is off.
    Fencing,
}

impl fmt::Display for Requires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Requires::Lease => "lease",
            Requires::Fencing => "fencing",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    Ip(IpResource),
    Service(ServiceResource),
    Script(ScriptResource),
    Ocf(OcfResource),
    Volume(VolumeResource),
    Filesystem(FilesystemResource),
}

impl Resource {
    /// How a resource that fails by itself on a node (a service exits, an OCF monitor fails)
    /// is restarted there: (restarts allowed before the package fails, the window after which
    /// the counter resets). `None` for kinds that fail only when acted on (ip, script,
    /// volume, filesystem).
    pub fn restarts(&self) -> Option<(u32, Option<Duration>)> {
        match self {
            Resource::Service(s) => Some((s.restart, s.restart_window)),
            Resource::Ocf(o) => Some((o.restart, o.restart_window)),
            _ => None,
        }
    }

    /// The name its restarts are counted under on a node: a service's name, else
    /// [`Resource::describe`].
    pub fn restart_key(&self) -> String {
        match self {
            Resource::Service(s) => s.name.clone(),
            other => other.describe(),
        }
    }

    /// A short name for logs and plans, e.g. `ip 198.18.1.50/24`.
    pub fn describe(&self) -> String {
        match self {
            Resource::Ip(ip) => {
                let addresses: Vec<String> = ip
                    .addresses
                    .iter()
                    .map(|a| format!("{}/{}", a.address, a.prefix))
                    .collect();
                format!("ip {}", addresses.join(","))
            }
            Resource::Service(s) => format!("service {}", s.name),
            Resource::Script(s) => format!("script {}", s.name),
            Resource::Ocf(o) => format!("ocf {}", o.agent),
            Resource::Volume(v) => format!("volume {}", v.name),
            Resource::Filesystem(f) => format!("filesystem {}", f.mount_point),
        }
    }

    /// The longest its halt may take on a node: its own halt timeout (an OCF agent's,
    /// a volume's and a file system's `timeout`), then the kill of what is left (the process
    /// and then its group, [`limits::KILL_WAIT`] each). An address is removed at once.
    pub fn halt_bound(&self) -> Duration {
        let timeout = match self {
            Resource::Ip(_) => return Duration::ZERO,
            Resource::Service(s) => s.halt_timeout,
            Resource::Script(s) => s.halt_timeout,
            Resource::Ocf(o) => o.timeout,
            Resource::Volume(v) => v.timeout,
            Resource::Filesystem(f) => f.timeout,
        };
        timeout.saturating_add(limits::KILL_WAIT.saturating_mul(2))
    }
}

/// A relocatable address. Cross-subnet clusters list one address per subnet;
/// the adoptive node uses the one in its own subnet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IpResource {
    pub network: NetworkName,
    pub addresses: Vec<Subnet>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceResource {
    pub name: String,
    pub command: String,
    /// Restarts on this node before the package fails.
    pub restart: u32,
    /// The restart counter resets after this long without a failure.
    pub restart_window: Option<Duration>,
    /// The node leaves the cluster (fails fast) when this service fails.
    pub node_fail_fast: bool,
    /// Time between SIGTERM and SIGKILL.
    pub halt_timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScriptResource {
    pub name: String,
    pub run: String,
    pub halt: String,
    pub run_timeout: Duration,
    pub halt_timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OcfResource {
    /// `provider:type`, e.g. `heartbeat:Dummy`.
    pub agent: String,
    pub params: BTreeMap<String, String>,
    pub monitor_interval: Duration,
    pub timeout: Duration,
    /// Restarts (stop, then start) on this node after a failed monitor before the package
    /// fails; [`DEFAULT_OCF_RESTART`] when not given.
    #[serde(default = "default_ocf_restart")]
    pub restart: u32,
    /// The restart counter resets after this long without a failure.
    #[serde(default)]
    pub restart_window: Option<Duration>,
}

fn default_ocf_restart() -> u32 {
    DEFAULT_OCF_RESTART
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VolumeResource {
    pub name: String,
    pub activate: String,
    pub deactivate: String,
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FilesystemResource {
    pub device: String,
    pub mount_point: String,
    pub fstype: String,
    pub options: Option<String>,
    /// Run before mounting (e.g. `fsck -p`); a non-zero exit refuses the mount.
    pub check: Option<String>,
    pub timeout: Duration,
}

/// What a monitor does when its predicate becomes true.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitorAction {
    /// Fire a user-defined event of this name.
    Event(String),
    /// Fail the package on this node.
    FailPackage,
    /// Run this command (with the package's variables, the monitor's name and the sample)
    /// and change nothing: a notification only.
    Notify(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Monitor {
    pub name: String,
    /// The sampler: a command printing a number or a record, or a built-in
    /// (`builtin:process_count NAME`, `builtin:fs_use PATH`, `builtin:memory`, `builtin:load`).
    pub sample: String,
    pub interval: Duration,
    pub predicate: String,
    pub rearm: Option<String>,
    pub action: MonitorAction,
    /// How long after its package has started the monitor waits before its first sample
    /// (HACMP's stabilization interval: an application still starting is not failed).
    #[serde(default)]
    pub stabilization: Duration,
    /// `fail_package` monitors: how many times a firing restarts the package's services
    /// here before the package fails (HACMP's application monitor restart count), and the
    /// window after which the count starts again.
    #[serde(default)]
    pub restart: u32,
    #[serde(default)]
    pub restart_window: Option<Duration>,
}

impl Monitor {
    /// The name its restarts are counted under on a node (beside the services' names).
    pub fn restart_key(&self) -> String {
        format!("monitor:{}", self.name)
    }
}
