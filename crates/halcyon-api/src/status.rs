//! `GET /v1/status`: the cluster as one node sees it.

use std::collections::{BTreeMap, BTreeSet};

use halcyon_config::{NetworkName, NodeName, PackageName};
use halcyon_state::RestartCounter;
use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::EventSummary;

/// `GET /v1/status`: coordinator, quorum, lease, nodes with their networks, packages, the
/// event being processed, pending events and the last events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusResponse {
    pub schema_version: u32,
    /// The cluster's name.
    pub cluster: String,
    /// The node that answered.
    pub answered_by: String,
    /// `halcyon cluster halt` is in force: daemons run idle.
    pub halted: bool,
    /// The coordinator (Raft leader) the answering node knows of.
    pub coordinator: Option<String>,
    pub quorum: Quorum,
    /// The answering node's watchdog (`not configured` when none).
    pub watchdog: String,
    /// The answering node's lease.
    pub lease: LeaseStatus,
    pub nodes: Vec<NodeStatus>,
    pub packages: Vec<PackageStatus>,
    pub execution: Option<ExecutionStatus>,
    /// Pending events, as displayed, in queue order.
    pub pending: Vec<String>,
    /// The last events (newest first), summarised: the whole records are `GET /v1/events`.
    pub events: Vec<EventSummary>,
    /// The quorum witness, when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness: Option<WitnessStatus>,
    /// How the answering node's heartbeats are protected, and what it refused.
    #[serde(default)]
    pub heartbeat_auth: HeartbeatAuth,
    /// Whether the answering node requires API tokens and node signatures, and what it
    /// refused.
    #[serde(default)]
    pub api_auth: ApiAuth,
    /// How the configuration files the answering node read at start differ from the
    /// configuration the cluster runs (one line each; empty when they are the same). The
    /// cluster keeps running its own: edited files are not applied to a running cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_drift: Vec<String>,
    /// The running configuration's generation (1 from the bootstrap, one more at each
    /// `halcyon apply`).
    #[serde(default)]
    pub generation: u64,
    /// A reconfiguration in progress (`halcyon apply`): the cluster-wide lock's holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconfiguration: Option<crate::StagedConfig>,
    /// The answering node's failure detector: the heartbeat it judges each network's paths
    /// by (the running configuration's sensitivity, also after `halcyon apply` changed it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detection: Vec<DetectionStatus>,
}

/// How the answering node judges the paths of one network: down after `sensitivity`
/// heartbeats of `interval_ms` missed, `detection_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DetectionStatus {
    #[schemars(with = "String")]
    pub network: NetworkName,
    pub interval_ms: u64,
    pub sensitivity: u32,
    pub detection_ms: u64,
}

/// The answering node's heartbeat authentication: HMAC-SHA256 with the cluster's
/// heartbeat key when it has credentials (`halcyon init`), otherwise none. The counts are
/// heartbeats received since the daemon started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HeartbeatAuth {
    pub authenticated: bool,
    pub accepted: u64,
    /// Right format, wrong tag: not made with this cluster's key.
    pub forged: u64,
    /// Authentic but already seen, too old, or of an older incarnation.
    pub replayed: u64,
    /// Of another cluster id.
    pub other_cluster: u64,
    pub malformed: u64,
}

/// The answering node's API authentication: tokens with roles on the API and signed
/// node-to-node requests when it has credentials; none when it runs `--insecure`. The counts
/// are requests refused since the daemon started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApiAuth {
    pub enforced: bool,
    /// Requests without a valid token (401).
    pub unauthenticated: u64,
    /// Requests whose token's role is not enough (403).
    pub forbidden: u64,
    /// Node requests without a valid signature (401).
    pub nodes: u64,
    /// Raft runs over mutual TLS (node certificates of the cluster CA).
    #[serde(default)]
    pub raft_tls: bool,
    /// Raft connections refused (no or another CA's certificate, a name of no node).
    #[serde(default)]
    pub raft_refused: u64,
    /// The API is served over TLS (the internal API over mutual TLS) with the node
    /// certificate.
    #[serde(default)]
    pub api_tls: bool,
    /// API connections refused at the TLS handshake (plain HTTP, a certificate of another CA
    /// or expired; on the internal API also none, or one naming no node).
    #[serde(default)]
    pub api_tls_refused: u64,
    /// Requests this node sent to other nodes' APIs (lease renewals, forwarded commits) on
    /// a connection it opened for them, since start.
    #[serde(default)]
    pub peer_requests_new: u64,
    /// The same on a connection kept open from an earlier request (no handshake).
    #[serde(default)]
    pub peer_requests_kept: u64,
    /// The credentials in use (none when the node runs `--insecure`).
    #[serde(default)]
    pub credentials: Option<CredentialsState>,
}

/// The credentials a node uses: when it loaded them (at start, or at its last reload) and
/// what they hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CredentialsState {
    #[schemars(with = "String")]
    pub loaded_at: Timestamp,
    /// Reloads taken since the daemon started (SIGHUP, `systemctl reload halcyon`).
    pub reloads: u64,
    /// CA certificates trusted: 2 during a CA rollover.
    pub trusted_cas: u32,
    /// Heartbeat keys accepted: 2 during a key rollover.
    pub heartbeat_keys: u32,
    pub tokens: u32,
    #[schemars(with = "String")]
    pub certificate_expires: Timestamp,
    /// The last reload refused after the last one taken: the credentials above stay in use.
    pub refused_reload: Option<RefusedReload>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RefusedReload {
    #[schemars(with = "String")]
    pub at: Timestamp,
    pub why: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Quorum {
    pub has_quorum: bool,
    pub term: u64,
    pub voters: Vec<String>,
    pub last_applied: u64,
    /// Without quorum: why (`no quorum: 1 of 3 voters reachable from n1 (n2, n3 unreachable)`).
    pub detail: Option<String>,
    /// Raft requests of another cluster (another cluster id) the answering node dropped
    /// since it started: a node elsewhere names this node's address.
    #[serde(default)]
    pub foreign_requests: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LeaseStatus {
    pub remaining_ms: u64,
    pub duration_ms: u64,
    /// The slowest granted lease renewal (send to grant) of the answering node in the last
    /// one to two minutes.
    #[serde(default)]
    pub renewal_slowest_ms: u64,
    /// Set while a renewal was slower than the timings allow for (half the round trip with
    /// which a holder keeps its lease) within the last minute: the network or the machine
    /// is too slow for the heartbeat interval.
    #[serde(default)]
    pub warning: Option<String>,
    /// Set while a `config_change` that shortened the lease may still have longer leases
    /// running (granted before it): their duration. Every coordinator waits that long for a
    /// lease to end until the coordinator settles them (about one such lease after the
    /// change).
    #[serde(default)]
    pub unsettled_ms: Option<u64>,
    /// Set while nodes may still run Raft timings of a longer heartbeat interval than the
    /// running configuration's (openraft's timings are fixed when a daemon starts; `halcyon
    /// apply` shortened the interval): the lease covers their slower elections until they
    /// restart.
    #[serde(default)]
    pub slow_elections: Option<SlowElections>,
}

/// Nodes whose Raft timings may be those of a longer heartbeat interval than the running
/// configuration's (see [`LeaseStatus::slow_elections`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SlowElections {
    /// The longest heartbeat interval their timings may be derived from.
    pub interval_ms: u64,
    /// The running configuration's, which each takes when its daemon restarts.
    pub running_interval_ms: u64,
    pub nodes: Vec<String>,
}

/// One configured node as the answering node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeStatus {
    #[schemars(with = "String")]
    pub name: NodeName,
    pub number: u32,
    pub member: bool,
    pub reachable: Reachability,
    pub departed: bool,
    pub halted_by_admin: bool,
    pub incarnation: Option<u64>,
    pub networks: Vec<NetworkView>,
    /// The node's last fence, if it was ever fenced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<FenceView>,
    /// Set while the node's current incarnation is excluded for not completing its work
    /// within the coordinator's bound; absent once its daemon restarted (a new
    /// incarnation), and from daemons that predate the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded: Option<ExcludedView>,
    /// `halcyon apply` added the node and it is not a Raft voter yet: it becomes one once
    /// its daemon's heartbeats are heard (absent otherwise, and from older daemons).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub joining: bool,
}

/// A node excluded because it did not complete the work of an event within the bound the
/// coordinator allows it (`halcyon_state::Stuck`): no lease is granted to it and it does not
/// join again until its daemon restarts (`systemctl restart halcyon` on that node), which
/// makes it a new incarnation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExcludedView {
    /// What it did not complete, and the bound (`n3 did not complete run web within its
    /// bound of 18s 238ms (...)`).
    pub why: String,
    /// When the coordinator excluded it.
    #[schemars(with = "crate::schema::Time")]
    pub since: Timestamp,
    /// The incarnation excluded (the node's current one).
    pub incarnation: u64,
    /// The event whose work it did not complete (its record's id in `GET /v1/events`).
    pub event: u64,
}

/// A node's last fence: how it went, by whom, when, and every agent call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FenceView {
    /// `off`, `reboot` or `on`.
    pub action: String,
    /// A fencing level succeeded (for `off`: the node is confirmed off).
    pub confirmed: bool,
    /// It stands for the node's current incarnation (false once the node has restarted).
    pub current: bool,
    /// Unconfirmed fences of that incarnation in a row.
    pub failures: u32,
    pub summary: String,
    /// One line per agent call (passwords masked).
    pub attempts: Vec<String>,
    pub by: String,
    #[schemars(with = "crate::schema::Time")]
    pub at: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reachability {
    Reachable,
    Unreachable,
    Unknown,
}

/// A node on one of its networks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NetworkView {
    #[schemars(with = "String")]
    pub network: NetworkName,
    /// The heartbeat path from the answering node.
    pub path: PathView,
    /// The answering node's detector suspects the node's adapter.
    pub adapter_down: bool,
    /// The cluster committed the node's adapter on this network as down.
    pub down: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PathView {
    /// The answering node itself.
    Local,
    Up,
    Down,
    Unknown,
}

/// One configured package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PackageStatus {
    #[schemars(with = "String")]
    pub name: PackageName,
    /// `up`, `down`, `halting`, ... (`halcyon_policy::PackageStatus` as displayed).
    pub status: String,
    /// Where it runs.
    #[schemars(with = "BTreeSet<String>")]
    pub nodes: BTreeSet<NodeName>,
    pub switching: bool,
    /// Nodes it failed on, and when.
    #[schemars(with = "BTreeMap<String, crate::schema::Time>")]
    pub failures: BTreeMap<NodeName, Timestamp>,
    /// When each failure stops excluding its node: its time plus the package's
    /// `failure_expiry`. A node of `failures` not here is excluded until `halcyon package
    /// clear` (the package has no `failure_expiry`).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, crate::schema::Time>")]
    pub failures_expire_at: BTreeMap<NodeName, Timestamp>,
    pub error: Option<String>,
    /// Restart counters per node and service.
    #[schemars(with = "Option<BTreeMap<String, BTreeMap<String, crate::schema::RestartCounter>>>")]
    pub restarts: Option<BTreeMap<NodeName, BTreeMap<String, RestartCounter>>>,
}

/// The event being processed: where its program stands, what runs, and in ERROR what
/// failed (node, command, status, output tail).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExecutionStatus {
    pub id: u64,
    /// The event as displayed.
    pub event: String,
    pub state: ExecutionState,
    /// 1-based current segment of the program.
    pub segment: Option<usize>,
    pub segments: usize,
    /// 1-based.
    pub last_completed_barrier: Option<usize>,
    #[schemars(with = "Vec<crate::schema::Failure>")]
    pub failures: Vec<halcyon_events::Failure>,
    pub running: Vec<RunningCommand>,
    pub open_actions: usize,
    #[schemars(with = "crate::schema::Time")]
    pub started_at: Timestamp,
    pub max_duration_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionState {
    Running,
    Error,
    Completed,
    Skipped,
}

/// A command of the event's program that runs now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RunningCommand {
    pub launch: u64,
    /// `None`: the coordinator (notify).
    #[schemars(with = "Option<String>")]
    pub node: Option<NodeName>,
    pub command: String,
}

/// The quorum witness as the answering node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WitnessStatus {
    #[schemars(with = "String")]
    pub name: NodeName,
    pub address: String,
    pub voter: bool,
    /// It answered its own status just now.
    pub reachable: bool,
    /// Its last applied log index, when it answered.
    pub last_applied: Option<u64>,
    /// `halcyon apply` added it and it is not a voter yet: it becomes one once it answers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub joining: bool,
    /// It answered that it holds its vote: a new store (its state directory emptied, or
    /// started after the nodes formed) waiting for the cluster to forget the log its old
    /// store acknowledged; why, in its words. It counts for no quorum meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
}
