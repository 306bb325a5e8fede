//! The JSON Schema (draft 2020-12) of the status and event records: `GET /v1/status`,
//! `GET /v1/events`, one event record, the event stream's notices and a webhook's body. Generated from this
//! crate's types with `schemars`; the repository keeps it as `docs/api/halcyon-api.schema.json`
//! and a test fails when the committed file differs from [`generate`]'s (write it again with
//! `HALCYON_BLESS=1 cargo test -p halcyon-api --test schema`).
//!
//! The records embed types of other crates (`halcyon-state`'s action, launch and note records,
//! `halcyon-events`' failures) that do not derive `JsonSchema`; their schemas are written here
//! as mirrors of their serde shapes, and the loopback test `crates/halcyon/tests/observe.rs`
//! checks live answers against the schema, so a mirror cannot drift unseen.

#![allow(dead_code)] // mirrors: their fields exist for the schema only

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

/// An RFC 3339 time (`jiff::Timestamp`), e.g. `2026-11-23T10:00:00Z`.
pub(crate) struct Time;

impl JsonSchema for Time {
    fn schema_name() -> Cow<'static, str> {
        "Time".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "format": "date-time"})
    }
}

/// How an event ended (`halcyon_state::Outcome`).
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    Running,
    Done,
    /// Done, but some actions or commands failed (listed in the record).
    DoneWithFailures,
    /// The administrator skipped the rest of its program after an ERROR.
    Skipped,
    Refused,
}

/// What an action does (`halcyon_policy::ActionKind`).
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ActionKind {
    AwaitRelease,
    Halt,
    HaltForced,
    Run,
    SwapAdapter { network: String },
}

/// One action of an event's plan and how it went (`halcyon_state::ActionRecord`).
#[derive(JsonSchema)]
pub(crate) struct ActionRecord {
    /// 0-based step of the plan.
    step: usize,
    index: usize,
    kind: ActionKind,
    package: Option<String>,
    node: String,
    ok: bool,
    /// What happened (or why it failed).
    detail: String,
    at: Time,
}

/// Why a notify command ran (`halcyon_events::NotifyPhase`).
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum NotifyPhase {
    Before,
    Error,
    TooLong,
    After,
}

/// What a command is (`halcyon_events::LaunchKind`).
#[derive(JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum LaunchKind {
    Command {
        segment: usize,
        index: usize,
        attempt: u32,
    },
    Recovery {
        segment: usize,
        index: usize,
        attempt: u32,
    },
    Notify {
        phase: NotifyPhase,
        result: Option<String>,
    },
}

/// One command of an event (`halcyon_state::LaunchRecord`).
#[derive(JsonSchema)]
pub(crate) struct LaunchRecord {
    launch: u64,
    /// `null`: the coordinator (notify).
    node: Option<String>,
    command: String,
    kind: LaunchKind,
    assigned_at: Time,
    started_at: Option<Time>,
    finished_at: Option<Time>,
    status: Option<i32>,
    /// The end of its output.
    output: String,
    /// Why it did not run or finish.
    #[serde(default)]
    abandoned: Option<String>,
}

/// A note of an event: ERROR, an answer, a warning (`halcyon_state::NoteRecord`).
#[derive(JsonSchema)]
pub(crate) struct NoteRecord {
    at: Time,
    text: String,
}

/// One service's restart counter on one node (`halcyon_state::RestartCounter`).
#[derive(JsonSchema)]
pub(crate) struct RestartCounter {
    count: u32,
    last: Option<Time>,
    #[serde(default)]
    last_exit: Option<String>,
}

/// The exit status a command must return (`halcyon_events::Expected`).
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Expected {
    Status(u8),
    Any,
}

/// A command that returned an unexpected status (`halcyon_events::Failure`).
#[derive(JsonSchema)]
pub(crate) struct Failure {
    segment: usize,
    index: usize,
    node: String,
    command: String,
    expected: Expected,
    status: i32,
    output_tail: String,
    attempts: u32,
}

/// The schema of the status and event records, as the file in the repository holds it.
pub fn generate() -> serde_json::Value {
    let mut generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let roots = [
        generator.subschema_for::<crate::StatusResponse>(),
        generator.subschema_for::<crate::EventsResponse>(),
        generator.subschema_for::<crate::EventRecord>(),
        generator.subschema_for::<crate::StreamNotice>(),
        generator.subschema_for::<crate::WebhookPayload>(),
    ];
    let definitions = generator.take_definitions(true);
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Halcyon API: status and event records",
        "description": format!(
            "The answers of GET /v1/status (StatusResponse), GET /v1/events (EventsResponse), \
             one event record (EventRecord: in GET /v1/events, and the data of the event \
             stream's `record` messages; GET /v1/status lists EventSummary records; a \
             `status` message's data is a StatusResponse) and the event \
             stream's `lost` and `dropped` notices (StreamNotice), and the body a webhook \
             receives (WebhookPayload). schema_version {}: fields \
             are added, never renamed.",
            crate::SCHEMA_VERSION
        ),
        "x-schema-version": crate::SCHEMA_VERSION,
        "anyOf": roots.iter().map(|r| r.as_value().clone()).collect::<Vec<_>>(),
        "$defs": definitions,
    })
}
