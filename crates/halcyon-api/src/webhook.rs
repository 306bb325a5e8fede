//! What a webhook (`[[events.webhook]]`) receives: `POST` with this JSON body.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::EventRecord;

/// Why a body is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookReason {
    /// The event finished (its outcome is in the record).
    Finished,
    /// The event stopped in ERROR and waits for `halcyon event resume|retry|skip`.
    Error,
    /// The event still runs, longer than its maximum duration (HACMP's config_too_long): sent
    /// when it passes the maximum and again after every further period; the record's notes
    /// say how often (webhook kind `event_too_long`).
    TooLong,
    /// The sending node lost the quorum (`quorum` says which voters it cannot reach). A node
    /// without the quorum cannot reach the coordinator, so it sends this itself.
    QuorumLost,
    /// The sending node has the quorum again.
    QuorumRegained,
}

/// A node's quorum change, as that node saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QuorumChange {
    /// The node that lost or regained the quorum (also `sent_by`).
    pub node: String,
    /// When the node saw the change.
    #[schemars(with = "crate::schema::Time")]
    pub at: Timestamp,
    pub has_quorum: bool,
    /// The voters (the witness as `witness NAME`) this node could not reach then.
    pub unreachable: Vec<String>,
    /// For people: the `status` line of the lost quorum, or how long it was lost.
    pub detail: String,
}

/// The body of a webhook's `POST`. Delivery is at least once: a coordinator change may send
/// a record again; `record.id` with `reason` tells a repeat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WebhookPayload {
    pub schema_version: u32,
    pub cluster: String,
    /// The node that sent it: the coordinator, or for a quorum change the node it is about.
    pub sent_by: String,
    pub reason: WebhookReason,
    /// The event (every reason but the quorum changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<EventRecord>,
    /// The quorum change (`quorum_lost`, `quorum_regained`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<QuorumChange>,
}
