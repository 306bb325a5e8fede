//! The types of Halcyon's HTTP/JSON API (`/v1/...`): every request body and every
//! response, used by the daemon's server (`halcyon-daemon`'s `api.rs`), the `halcyon` CLI
//! and the tests. Types only: serde and the model types they embed, no I/O.
//!
//! Invariants:
//! - every response a client reads carries [`SCHEMA_VERSION`] as `schema_version`, so a
//!   client can tell an answer it understands from one it does not;
//! - an event of the event log has one shape everywhere ([`EventRecord`]): in
//!   `GET /v1/status`, `GET /v1/events`, the answers of operations and refusals;
//! - field names and meanings are those the API had before it had types; new fields are
//!   added, none renamed.
//!
//! The exception, node to node only: `POST /v1/internal/write` answers with the state
//! machine's own reply (`halcyon_state::Reply`, see [`WriteResponse`]).

mod config;
mod events;
mod internal;
mod operations;
pub mod schema;
mod status;
mod stream;
mod webhook;

pub use config::{
    ApplyPreview, ApplyRequest, ConfigFile, ConfigResponse, SettingChange, StagedConfig,
};
pub use events::{
    AvailabilityQuery, AvailabilityResponse, EventRecord, EventSummary, EventsQuery,
    EventsResponse, Outage,
};
pub use internal::{
    HeartbeatFaultRequest, HeartbeatFaultResponse, HoldActionsResponse, IsolateResponse,
    LeaseRequest, LeaseResponse, RaftRenewalsUnansweredResponse, WitnessOwnStatus, WriteResponse,
};
pub use operations::{
    EmulateRequest, EmulateResponse, ErrorBody, EventDoneResponse, ExplainResponse, NodeRequest,
    NoteResponse, OperationQuery, OperationResponse, PackageRequest, QueuedResponse, RaiseRequest,
    VoterChangeResponse,
};
pub use status::{
    ApiAuth, CredentialsState, DetectionStatus, ExcludedView, ExecutionState, ExecutionStatus,
    FenceView, HeartbeatAuth, LeaseStatus, NetworkView, NodeStatus, PackageStatus, PathView,
    Quorum, Reachability, RefusedReload, RunningCommand, SlowElections, StatusResponse,
    WitnessStatus,
};
pub use stream::{STREAM_DROPPED, STREAM_LOST, STREAM_RECORD, STREAM_STATUS, StreamNotice};
pub use webhook::{QuorumChange, WebhookPayload, WebhookReason};

/// The version of the API's JSON that this build speaks; every response carries it as
/// `schema_version`. Raised when a field changes meaning or disappears.
pub const SCHEMA_VERSION: u32 = 2;
