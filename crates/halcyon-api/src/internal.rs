//! Node to node (`/v1/internal/...`), the witness's own status, and the test-only fault
//! endpoints (`/v1/debug/...`, daemons started with `--test-faults`).

use serde::{Deserialize, Serialize};

/// `POST /v1/internal/lease`: a node asks the coordinator to renew its lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    pub node: String,
}

/// The answer of `POST /v1/internal/lease`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseResponse {
    pub schema_version: u32,
    pub granted: bool,
    #[serde(default)]
    pub error: Option<String>,
    /// The log index the quorum confirmed as committed for this grant (the read index):
    /// the holder's replica must have applied it before it acts on placements.
    #[serde(default)]
    pub read_index: u64,
}

/// The answer of `POST /v1/internal/write` (whose body is an encoded
/// `halcyon_state::Command`): the state machine's reply as `Reply::encode` wrote it.
/// Node to node only, between daemons of one build, so it carries no `schema_version`.
pub type WriteResponse = halcyon_state::Reply;

/// `GET /v1/status` answered by the quorum witness (`halcyon witness`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessOwnStatus {
    pub schema_version: u32,
    pub witness: String,
    /// Its Raft node id.
    pub number: u64,
    pub cluster: String,
    pub term: u64,
    pub coordinator: Option<String>,
    pub voters: Vec<String>,
    pub last_applied: u64,
    /// A new store held by its admission (its state directory was emptied, or it started
    /// after the nodes formed): why it answers no Raft request, so does not vote, yet.
    /// Absent from a witness of an older version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
}

/// The answer of `POST /v1/debug/isolate` (test only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolateResponse {
    pub schema_version: u32,
    pub isolated: String,
}

/// The answer of `POST /v1/debug/hold-actions` (test only): from now on, until its daemon
/// restarts, the node holds every plan action it is handed (never carried out, never
/// reported), as a node whose executor or replica is stuck.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldActionsResponse {
    pub schema_version: u32,
    pub node: String,
}

/// The answer of `POST /v1/debug/raft-renewals-unanswered` (test only): from now until the
/// daemon restarts, the node leaves lease renewals that come on the Raft transport
/// unanswered, as a coordinator of an earlier version does (nodes then renew on its
/// internal API).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftRenewalsUnansweredResponse {
    pub schema_version: u32,
    pub node: String,
}

/// `POST /v1/debug/heartbeats` (test only): drop the heartbeats of chosen peers on one
/// network, on the answering node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatFaultRequest {
    pub network: String,
    /// Nodes whose heartbeats on `network` the node drops (empty: heal).
    pub drop_from: Vec<String>,
}

/// The answer of `POST /v1/debug/heartbeats`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatFaultResponse {
    pub schema_version: u32,
    pub node: String,
    pub network: String,
    pub drop_from: Vec<String>,
}
