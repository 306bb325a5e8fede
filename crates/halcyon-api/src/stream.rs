//! `GET /v1/events/stream`: the event log and the cluster's state as server-sent events
//! (`text/event-stream`), for cluster-aware clients, `halcyon events --follow` and the
//! status page.
//!
//! Messages, by their `event:` name:
//! - [`STREAM_STATUS`]: a [`crate::StatusResponse`] (as `GET /v1/status` answers, without the
//!   witness and with `events` empty: records come as messages of their own), first when the
//!   stream opens, then whenever the answering node's view of the cluster changes;
//! - [`STREAM_RECORD`]: an [`crate::EventRecord`], once for every record the stream opens
//!   with, then each time a record changes (started, a command handed out or finished,
//!   finished). A client keeps the latest message per record `id`. Its SSE `id:` is the
//!   stream's *mark*: every record up to it is finished and has been sent. A client that
//!   reconnects with `Last-Event-ID: MARK` (browsers do it by themselves) gets every
//!   record after the mark again, so it misses no change;
//! - [`STREAM_LOST`]: a [`StreamNotice`]: records the node no longer keeps (its log is
//!   bounded) were asked for, or went by unseen;
//! - [`STREAM_DROPPED`]: a [`StreamNotice`], the last message: the client read too slowly
//!   and fell a whole buffer behind. It reconnects with `Last-Event-ID` to resume.
//!
//! A comment line (`: heartbeat`) comes whenever nothing else was sent for a while, so a
//! client can tell a quiet cluster from a dead connection.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A [`crate::StatusResponse`].
pub const STREAM_STATUS: &str = "status";
/// A [`crate::EventRecord`]; its SSE `id:` is the stream's mark.
pub const STREAM_RECORD: &str = "record";
/// A [`StreamNotice`]: records the client will not get.
pub const STREAM_LOST: &str = "lost";
/// A [`StreamNotice`]: the stream ends because the client read too slowly.
pub const STREAM_DROPPED: &str = "dropped";

/// What [`STREAM_LOST`] and [`STREAM_DROPPED`] carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StreamNotice {
    pub schema_version: u32,
    /// For a person: what happened and what to do.
    pub message: String,
    /// [`STREAM_LOST`]: the first and last record ids the client will not get.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<(u64, u64)>,
}
