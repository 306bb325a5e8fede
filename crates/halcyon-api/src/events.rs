//! The event log as the API shows it: `GET /v1/events` and the one shape of a record.

use halcyon_state::{ActionRecord, LaunchRecord, NoteRecord, Outcome};
use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One event of the event log: the event, who raised it, when it was queued, started and
/// finished, its outcome, the plan and the program as an administrator reads them, every
/// action with its node and detail, every command with its node, start, end, status and
/// output, and the notes (ERROR, answers, warnings, abandoned nodes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventRecord {
    pub id: u64,
    /// The event as displayed (`node_down n2 failure`).
    pub event: String,
    pub by: String,
    #[schemars(with = "crate::schema::Outcome")]
    pub outcome: Outcome,
    #[schemars(with = "crate::schema::Time")]
    pub queued_at: Timestamp,
    #[schemars(with = "Option<crate::schema::Time>")]
    pub started_at: Option<Timestamp>,
    #[schemars(with = "Option<crate::schema::Time>")]
    pub finished_at: Option<Timestamp>,
    pub error: Option<String>,
    /// The plan, rendered.
    pub plan: Option<String>,
    /// The recovery program as run, rendered.
    pub program: Option<String>,
    #[schemars(with = "Vec<crate::schema::ActionRecord>")]
    pub actions: Vec<ActionRecord>,
    #[schemars(with = "Vec<crate::schema::LaunchRecord>")]
    pub launches: Vec<LaunchRecord>,
    #[schemars(with = "Vec<crate::schema::NoteRecord>")]
    pub notes: Vec<NoteRecord>,
}

/// The replicated log keeps its records shared (`Arc`): a view copies pointers.
impl From<&std::sync::Arc<halcyon_state::EventRecord>> for EventRecord {
    fn from(record: &std::sync::Arc<halcyon_state::EventRecord>) -> Self {
        EventRecord::from(&**record)
    }
}

impl From<&halcyon_state::EventRecord> for EventRecord {
    fn from(r: &halcyon_state::EventRecord) -> Self {
        EventRecord {
            id: r.id,
            event: r.event.to_string(),
            by: r.by.clone(),
            outcome: r.outcome.clone(),
            queued_at: r.queued_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            error: r.error.clone(),
            plan: r.plan_text.clone(),
            program: r.program_text.clone(),
            actions: r.actions.clone(),
            launches: r.launches.clone(),
            notes: r.notes.clone(),
        }
    }
}

/// One event as `GET /v1/status` lists it: what happened, when and how it ended, without
/// its plan, actions and command launches (the whole record is `GET /v1/events`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventSummary {
    pub id: u64,
    /// The event as displayed (`node_down n2 failure`).
    pub event: String,
    pub by: String,
    #[schemars(with = "crate::schema::Outcome")]
    pub outcome: Outcome,
    #[schemars(with = "crate::schema::Time")]
    pub queued_at: Timestamp,
    #[schemars(with = "Option<crate::schema::Time>")]
    pub started_at: Option<Timestamp>,
    #[schemars(with = "Option<crate::schema::Time>")]
    pub finished_at: Option<Timestamp>,
    pub error: Option<String>,
    /// How many actions and command launches the full record has.
    pub actions: usize,
    pub launches: usize,
}

impl From<&halcyon_state::EventRecord> for EventSummary {
    fn from(r: &halcyon_state::EventRecord) -> Self {
        EventSummary {
            id: r.id,
            event: r.event.to_string(),
            by: r.by.clone(),
            outcome: r.outcome.clone(),
            queued_at: r.queued_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            error: r.error.clone(),
            actions: r.actions.len(),
            launches: r.launches.len(),
        }
    }
}

/// The filters of `GET /v1/events?since=10m&package=db&node=n2&after=ID`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// An RFC 3339 time, or a duration back from now (`10m`, `2h`).
    pub since: Option<String>,
    /// Only records concerning this package (its event or one of its actions).
    pub package: Option<String>,
    /// Only records concerning this node (its event, actions or commands).
    pub node: Option<String>,
    /// Only records with a larger id (for following the log).
    pub after: Option<u64>,
}

/// `GET /v1/events`: the event log the answering node holds, oldest first, filtered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventsResponse {
    pub schema_version: u32,
    pub answered_by: String,
    /// The answering node's last applied log index.
    pub last_applied: u64,
    /// The id of the event being processed, if any.
    pub running: Option<u64>,
    pub events: Vec<EventRecord>,
}

/// `GET /v1/availability/{package}?since=&until=`: the period (RFC 3339 times or durations
/// back from now; default: since the oldest record the node keeps, until now).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvailabilityQuery {
    pub since: Option<String>,
    pub until: Option<String>,
}

/// A package's availability over a period (HACMP's Application Availability Analysis),
/// computed from the durable event log of the answering node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AvailabilityResponse {
    pub schema_version: u32,
    pub package: String,
    pub since: Timestamp,
    pub until: Timestamp,
    pub up_seconds: f64,
    pub down_seconds: f64,
    /// Up time over the period, in percent.
    pub percent: f64,
    pub outages: Vec<Outage>,
}

/// One time the package was not running anywhere, within the period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outage {
    pub start: Timestamp,
    /// `None`: still down at the end of the period.
    pub end: Option<Timestamp>,
    pub seconds: f64,
    /// Why: `node failure (n2)`, `package failure on n1`, `administrator halt`, ...
    pub cause: String,
    /// The event record that began it.
    pub event: u64,
}
