//! What a webhook (`[[events.webhook]]`) receives: `POST` with this JSON body.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::EventRecord;

/// Why a record is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookReason {
    /// The event finished (its outcome is in the record).
    Finished,
    /// The event stopped in ERROR and waits for `halcyon event resume|retry|skip`.
    Error,
}

/// The body of a webhook's `POST`. Delivery is at least once: a coordinator change may send
/// a record again; `record.id` with `reason` tells a repeat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WebhookPayload {
    pub schema_version: u32,
    pub cluster: String,
    /// The node (the coordinator) that sent it.
    pub sent_by: String,
    pub reason: WebhookReason,
    pub record: EventRecord,
}
