//! Requests that change the cluster or ask "what if": package, node and cluster
//! operations, voter changes, event answers, raise, emulate, explain; and error bodies.

use halcyon_policy::{Event, Explanation};
use halcyon_state::Emulation;
use serde::{Deserialize, Serialize};

use crate::EventRecord;

/// The query of an operation (`POST /v1/packages/...`, `/v1/nodes/...`, `/v1/cluster/...`):
/// `?request=ID`, the client's id for this request (1 to 64 of `A-Z a-z 0-9 - _`). The
/// cluster enqueues one event per id: a client that lost the answer (its node's leader
/// died mid-request) sends the same request with the same id again and is answered with
/// the outcome of the event it already enqueued.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// The body of `POST /v1/packages/{package}/{run|halt|move|enable|disable}` (may be empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageRequest {
    /// The target node (run, move, enable, disable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// The body of `POST /v1/nodes/{node}/{start|halt}` (may be empty; `add` and `remove`
/// take none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRequest {
    /// For halt: `graceful` (the default), `takeover` or `force`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub how: Option<String>,
    /// For fence: `off` (the default) or `reboot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// `POST /v1/events/raise`: queue a user-defined event as a monitor would.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaiseRequest {
    /// The user-defined event's name (a rule of the rules file).
    pub name: String,
    /// The event node.
    pub node: String,
    /// The sampled values (`X@0`, `X@1`, ...) its commands get.
    #[serde(default)]
    pub values: Vec<String>,
}

/// `POST /v1/emulate`: what an event would do now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulateRequest {
    pub event: Event,
}

/// The answer of `POST /v1/emulate`: the plan and the recovery program per node with its
/// barriers, as text and as data. Nothing changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmulateResponse {
    pub schema_version: u32,
    pub text: String,
    pub emulation: Emulation,
}

/// The answer of `GET /v1/explain/{package}`: why the package runs where it runs, node by
/// node, as text and as data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExplainResponse {
    pub schema_version: u32,
    pub text: String,
    pub explanation: Explanation,
}

/// An operation's event finished (200): its record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventDoneResponse {
    pub schema_version: u32,
    #[serde(flatten)]
    pub record: EventRecord,
}

/// An event was queued and has not finished yet (202), or a user-defined event was
/// raised (200).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedResponse {
    pub schema_version: u32,
    /// The pending event's sequence number.
    pub queued: u64,
    /// The event as displayed (operations only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    pub note: String,
}

/// An answer that is a sentence: an event answer accepted, a node already a member, the
/// cluster started or starting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteResponse {
    pub schema_version: u32,
    pub note: String,
}

/// `POST /v1/nodes/{node}/{add|remove}`: the voter set after the change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoterChangeResponse {
    pub schema_version: u32,
    pub note: String,
    pub voters: Vec<String>,
}

/// Every successful answer of a `POST` operation (packages, nodes, cluster, events). The
/// server sends one of the variants; a client tells them apart by their fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OperationResponse {
    Done(Box<EventDoneResponse>),
    Voters(VoterChangeResponse),
    Queued(QueuedResponse),
    Note(NoteResponse),
}

/// Every error answer: the cause first (`no quorum: ...`, `not leader: forward to ...`,
/// `unknown package ...`, `refused: ...`); a refused event's record with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub schema_version: u32,
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Box<EventRecord>>,
}
