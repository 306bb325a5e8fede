//! The daemon's HTTP/JSON API (axum), at the node's first address, port `cluster.port + 2`.
//!
//! Reads are answered by any node from its applied state; writes are executed by the leader
//! (other nodes forward them). Errors are `{"error": "..."}` with the cause first:
//! `no quorum: ...`, `not leader: forward to ...`, `unknown package ...`, `refused: ...`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use halcyon_config::{NodeName, PackageName};
use halcyon_membership::NodeState;
use halcyon_policy::{Departure, Engine, Event};
use halcyon_state::{Command, Outcome};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::{Instant, sleep};

use crate::node::Node;

/// How long a write request waits for its event to finish before answering "queued".
const EVENT_WAIT: Duration = Duration::from_secs(30);
/// Events shown by `GET /v1/status`.
const STATUS_EVENTS: usize = 10;

type Shared = Arc<Node>;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

fn ok(value: Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

/// Serves the API on every one of `addrs` (the node's IP interfaces).
pub async fn serve(node: Shared, addrs: Vec<SocketAddr>) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/events", get(events))
        .route("/v1/events/raise", post(raise_event))
        .route("/v1/events/{id}/{answer}", post(answer_event))
        .route("/v1/emulate", post(emulate))
        .route("/v1/explain/{package}", get(explain))
        .route("/v1/packages/{package}/{op}", post(package_op))
        .route("/v1/nodes/{node}/{op}", post(node_op))
        .route("/v1/cluster/{op}", post(cluster_op))
        .route("/v1/internal/write", post(internal_write))
        .route("/v1/internal/lease", post(internal_lease))
        .route("/v1/debug/isolate", post(debug_isolate))
        .route("/v1/debug/heartbeats", post(debug_heartbeats))
        .fallback(|uri: Uri| async move {
            error(
                StatusCode::NOT_FOUND,
                format!("no such API endpoint: {uri}"),
            )
        })
        .with_state(Arc::clone(&node));
    node.platform.network.serve_api(app, addrs).await
}

/// "no quorum: 1 of 3 voters reachable (n2, n3 unreachable)".
fn no_quorum(node: &Node) -> String {
    let config = node.config();
    let reach = node.reachability();
    let mut reachable = 0;
    let mut unreachable = Vec::new();
    for n in &config.cluster.nodes {
        if !node.is_isolated() && matches!(reach.get(&n.number), Some(NodeState::Reachable))
            || n.number == node.number
        {
            reachable += 1;
        } else {
            unreachable.push(n.name.to_string());
        }
    }
    let voters = config.cluster.voter_count();
    let mut text = format!(
        "no quorum: {reachable} of {voters} voters reachable from {}",
        node.name
    );
    if !unreachable.is_empty() {
        text.push_str(&format!(" ({} unreachable)", unreachable.join(", ")));
    }
    text
}

/// This node's view of every path (peer, network).
fn lock_status(node: &Node) -> Vec<halcyon_membership::detector::PathStatus> {
    node.membership
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .detector
        .paths
        .clone()
}

pub fn status_json(node: &Node) -> Value {
    let state = node.snapshot();
    let config = state
        .config
        .clone()
        .unwrap_or_else(|| Arc::clone(&node.boot_config));
    let metrics = node.consensus.metrics().borrow().clone();
    let leader = metrics.current_leader.map(|id| node.node_name_of(id));
    let reach = node.reachability();
    let paths = lock_status(node);
    let nodes: Vec<Value> = config
        .cluster
        .nodes
        .iter()
        .map(|n| {
            let networks: Vec<Value> = config
                .cluster
                .networks
                .iter()
                .filter(|net| halcyon_membership::detector::is_on_network(&config.cluster, n, net))
                .map(|net| {
                    let path = paths
                        .iter()
                        .find(|p| p.node == n.number && p.network == net.number);
                    let seen = if n.number == node.number {
                        "local"
                    } else {
                        match path.map(|p| p.state) {
                            Some(halcyon_membership::PathState::Up) => "up",
                            Some(halcyon_membership::PathState::Down) => "down",
                            _ => "unknown",
                        }
                    };
                    let key = (n.name.clone(), net.name.clone());
                    json!({
                        "network": net.name,
                        "path": seen,
                        "adapter_down": path.is_some_and(|p| p.adapter_down),
                        "down": state.adapters_down.contains(&key),
                    })
                })
                .collect();
            let reachable = match reach.get(&n.number) {
                Some(NodeState::Reachable) => "reachable",
                Some(NodeState::Unreachable) => "unreachable",
                _ => "unknown",
            };
            json!({
                "name": n.name,
                "number": n.number,
                "member": state.cluster.members.contains(&n.name),
                "reachable": reachable,
                "departed": state.departed.contains(&n.name),
                "halted_by_admin": state.halted_by_admin.contains(&n.name),
                "incarnation": state.incarnations.get(&n.name),
                "networks": networks,
            })
        })
        .collect();
    let packages: Vec<Value> = config
        .packages
        .keys()
        .map(|name| {
            let p = state.cluster.package(name.as_str());
            json!({
                "name": name,
                "status": p.status().to_string(),
                "nodes": p.nodes,
                "switching": p.switching_enabled(config.package(name.as_str()).is_some_and(|c| c.auto_run)),
                "failures": p.failures,
                "error": p.error,
                "restarts": state.restarts.get(name),
            })
        })
        .collect();
    let events: Vec<Value> = state
        .log
        .iter()
        .rev()
        .take(STATUS_EVENTS)
        .map(|r| record_json(r))
        .collect();
    let has_quorum = !node.is_isolated()
        && leader.is_some()
        && (node.consensus.is_leader()
            && metrics.millis_since_quorum_ack.is_some_and(|m| m < 1000)
            || !node.consensus.is_leader());
    json!({
        "cluster": config.cluster.name,
        "answered_by": node.name,
        "halted": state.cluster_halted,
        "coordinator": leader,
        "quorum": {
            "has_quorum": has_quorum,
            "term": metrics.current_term,
            "voters": node.consensus.voters().iter().map(|id| node.node_name_of(*id)).collect::<Vec<_>>(),
            "last_applied": state.applied_index,
            "detail": if has_quorum { Value::Null } else { Value::String(no_quorum(node)) },
        },
        "watchdog": node.watchdog_state,
        "lease": {
            "remaining_ms": node.lease_remaining().as_millis() as u64,
            "duration_ms": node.lease_duration.as_millis() as u64,
        },
        "nodes": nodes,
        "packages": packages,
        "execution": state.execution.as_ref().map(execution_json),
        "pending": state.pending.iter().map(|p| p.event.to_string()).collect::<Vec<_>>(),
        "events": events,
    })
}

/// The event being processed: where its program stands, what runs, and in ERROR what
/// failed (node, command, status, output tail).
fn execution_json(e: &halcyon_state::Execution) -> Value {
    let (state, failures) = match e.progress.state() {
        halcyon_events::EventState::Running => ("running", Vec::new()),
        halcyon_events::EventState::Error { failures } => ("error", failures.clone()),
        halcyon_events::EventState::Completed => ("completed", Vec::new()),
        halcyon_events::EventState::Skipped => ("skipped", Vec::new()),
    };
    json!({
        "id": e.id,
        "event": e.plan.event.to_string(),
        "state": state,
        "segment": e.progress.current_segment().map(|s| s + 1),
        "segments": e.progress.segments().len(),
        "last_completed_barrier": e.progress.last_completed_barrier().map(|b| b + 1),
        "failures": failures,
        "running": e.launches.values().map(|l| json!({
            "launch": l.launch,
            "node": l.node,
            "command": l.command,
        })).collect::<Vec<_>>(),
        "open_actions": e.open_actions().len(),
        "started_at": e.started_at,
        "max_duration_ms": e.max_duration.as_millis() as u64,
    })
}

fn record_json(r: &halcyon_state::EventRecord) -> Value {
    json!({
        "id": r.id,
        "event": r.event.to_string(),
        "by": r.by,
        "outcome": r.outcome,
        "queued_at": r.queued_at,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "error": r.error,
        "plan": r.plan_text,
        "program": r.program_text,
        "actions": r.actions,
        "launches": r.launches,
        "notes": r.notes,
    })
}

/// Filters of `GET /v1/events`.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// RFC 3339 time, or a duration back from now (`10m`, `2h`).
    since: Option<String>,
    package: Option<String>,
    node: Option<String>,
    /// Only records with a larger id (for following the log).
    after: Option<u64>,
}

/// Whether a record concerns `package` (its event, or one of its actions).
fn record_has_package(r: &halcyon_state::EventRecord, package: &str) -> bool {
    let of_event = match &r.event {
        Event::PackageFailed { package: p, .. }
        | Event::PackageRun { package: p, .. }
        | Event::PackageHalt { package: p }
        | Event::PackageMove { package: p, .. }
        | Event::PackageEnable { package: p, .. }
        | Event::PackageDisable { package: p, .. }
        | Event::PackageClear { package: p, .. } => p.as_str() == package,
        _ => false,
    };
    of_event
        || r.actions
            .iter()
            .any(|a| a.package.as_ref().is_some_and(|p| p.as_str() == package))
}

/// Whether a record concerns `node` (its event, its actions, or its commands).
fn record_has_node(r: &halcyon_state::EventRecord, node: &str) -> bool {
    r.event.node().is_some_and(|n| n.as_str() == node)
        || r.actions.iter().any(|a| a.node.as_str() == node)
        || r.launches
            .iter()
            .any(|l| l.node.as_ref().is_some_and(|n| n.as_str() == node))
}

fn parse_since(text: &str) -> Result<Timestamp, String> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    let back = humantime::parse_duration(text).map_err(|_| {
        format!("since: \"{text}\" is neither an RFC 3339 time (2026-11-23T10:00:00Z) nor a duration (10m, 2h)")
    })?;
    let span = jiff::SignedDuration::try_from(back).map_err(|e| format!("since: {e}"))?;
    Timestamp::now()
        .checked_sub(span)
        .map_err(|e| format!("since: {e}"))
}

/// The event log this node holds (oldest first, at most `halcyon_state::LOG_MAX`),
/// filtered: `?since=10m&package=db&node=n2&after=ID`. Each record has its plan, the
/// actions with their node and detail, and every command with its node, start, end,
/// status and output. Clients follow the log by asking again with `after`.
async fn events(
    State(node): State<Shared>,
    axum::extract::Query(query): axum::extract::Query<EventsQuery>,
) -> Response {
    let since = match query.since.as_deref().map(parse_since).transpose() {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let state = node.snapshot();
    if let Some(config) = &state.config {
        if let Some(p) = &query.package
            && config.package(p).is_none()
        {
            return error(StatusCode::NOT_FOUND, unknown_package(config, p));
        }
        if let Some(n) = &query.node
            && config.node(n).is_none()
        {
            return error(StatusCode::NOT_FOUND, unknown_node(config, n));
        }
    }
    let events: Vec<Value> = state
        .log
        .iter()
        .filter(|r| query.after.is_none_or(|a| r.id > a))
        .filter(|r| since.is_none_or(|s| r.queued_at >= s || r.finished_at.is_none_or(|f| f >= s)))
        .filter(|r| {
            query
                .package
                .as_deref()
                .is_none_or(|p| record_has_package(r, p))
        })
        .filter(|r| query.node.as_deref().is_none_or(|n| record_has_node(r, n)))
        .map(|r| record_json(r))
        .collect();
    ok(json!({
        "answered_by": node.name,
        "last_applied": state.applied_index,
        "running": state.execution.as_ref().map(|e| e.id),
        "events": events,
    }))
}

/// `POST /v1/events/{id}/{resume|retry|skip}`: the administrator's answer to the event
/// in ERROR (`id` may be `current`).
async fn answer_event(
    State(node): State<Shared>,
    Path((id, answer)): Path<(String, String)>,
) -> Response {
    let answer: halcyon_state::Answer = match answer.parse() {
        Ok(a) => a,
        Err(e) => return error(StatusCode::NOT_FOUND, e),
    };
    let state = node.snapshot();
    let Some(current) = state.execution.as_ref() else {
        return error(StatusCode::CONFLICT, "refused: no event is being processed");
    };
    let execution = if id == "current" {
        current.id
    } else {
        match id.parse::<u64>() {
            Ok(n) => n,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("event id \"{id}\" is not a number (or `current`)"),
                );
            }
        }
    };
    let command = Command::EventControl {
        execution,
        answer,
        by: "admin".to_owned(),
        at: node.timestamp(),
    };
    match node.submit(&command).await {
        Ok(halcyon_state::Reply::Ignored { why }) => {
            error(StatusCode::CONFLICT, format!("refused: {why}"))
        }
        Ok(_) => ok(json!({ "note": format!("{answer}: event #{execution} continues") })),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RaiseBody {
    name: String,
    node: String,
    #[serde(default)]
    values: Vec<String>,
}

/// `POST /v1/events/raise {"name", "node", "values"}`: queues a user-defined event as a
/// monitor would (for testing a recovery program; HACMP: none, the event was raised by
/// Event Management). Answers once it is queued.
async fn raise_event(State(node): State<Shared>, body: Bytes) -> Response {
    let body: RaiseBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad request body: {e}")),
    };
    let state = node.snapshot();
    let Some(config) = state.config.as_ref() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the cluster is not bootstrapped yet",
        );
    };
    if config.node(&body.node).is_none() {
        return error(StatusCode::NOT_FOUND, unknown_node(config, &body.node));
    }
    let Some(rule) = state.rules.rule(&body.name, None) else {
        let known: Vec<&str> = state
            .rules
            .rules
            .iter()
            .filter(|r| !halcyon_events::builtin::is_builtin(&r.name))
            .map(|r| r.name.as_str())
            .collect();
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no rule for the user-defined event \"{}\" (user-defined events: {})",
                body.name,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        );
    };
    if halcyon_events::builtin::is_builtin(&rule.name) {
        return error(
            StatusCode::CONFLICT,
            format!(
                "refused: {} is a built-in event; only user-defined events are raised",
                rule.name
            ),
        );
    }
    let sample = halcyon_events::Sample {
        resource_variable: rule
            .monitor
            .as_ref()
            .map(|m| m.resource_variable.clone())
            .unwrap_or_default(),
        instance_vector: rule
            .monitor
            .as_ref()
            .and_then(|m| m.instance_vector.clone())
            .unwrap_or_default(),
        values: body.values,
    };
    let command = Command::Enqueue {
        event: Event::UserDefined {
            name: body.name.clone(),
            node: NodeName::from(body.node.as_str()),
        },
        by: "admin (raise)".to_owned(),
        at: node.timestamp(),
        sample: Some(sample),
    };
    match node.submit(&command).await {
        Ok(halcyon_state::Reply::Queued {
            sequence,
            duplicate,
        }) => ok(json!({
            "queued": sequence,
            "note": if duplicate {
                format!("{} on {} is already queued (#{sequence})", body.name, body.node)
            } else {
                format!("{} on {} queued (#{sequence}); `halcyon events --follow` shows it run", body.name, body.node)
            },
        })),
        Ok(other) => error(StatusCode::CONFLICT, format!("refused: {other:?}")),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct EmulateBody {
    event: Event,
}

/// `POST /v1/emulate {"event": ...}`: what the event would do now on this cluster (the
/// plan and the recovery program per node, with its barriers). Changes nothing.
async fn emulate(State(node): State<Shared>, body: Bytes) -> Response {
    let body: EmulateBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad request body: {e}")),
    };
    let state = node.snapshot();
    let Some(config) = state.config.as_ref() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the cluster is not bootstrapped yet",
        );
    };
    match halcyon_state::emulate(
        config,
        &state.rules,
        &state.cluster,
        &body.event,
        node.timestamp(),
    ) {
        Ok(e) => ok(json!({ "text": e.render(), "emulation": e })),
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}

/// How long `GET /v1/status` waits for the witness's own status.
const WITNESS_STATUS_TIMEOUT: Duration = Duration::from_millis(300);

async fn status(State(node): State<Shared>) -> Response {
    let mut value = status_json(&node);
    let config = node.config();
    if let Some(w) = &config.cluster.quorum.witness {
        let addr = SocketAddr::new(w.address, config.cluster.port + 2);
        let answer = node
            .request(addr, "GET", "/v1/status", None, WITNESS_STATUS_TIMEOUT)
            .await
            .ok()
            .and_then(|r| r.json().ok());
        let voter = node
            .consensus
            .voters()
            .contains(&halcyon_consensus::NodeId::from(w.number));
        value["witness"] = json!({
            "name": w.name,
            "address": addr.to_string(),
            "voter": voter,
            "reachable": answer.is_some(),
            "last_applied": answer.as_ref().map(|a| a["last_applied"].clone()),
        });
    }
    ok(value)
}

async fn explain(State(node): State<Shared>, Path(package): Path<String>) -> Response {
    let state = node.snapshot();
    let Some(config) = state.config.as_ref() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the cluster is not bootstrapped yet",
        );
    };
    if config.package(&package).is_none() {
        return error(StatusCode::NOT_FOUND, unknown_package(config, &package));
    }
    match Engine::new(config).explain(&state.cluster, &package, node.timestamp()) {
        Ok(e) => ok(json!({ "text": e.to_string(), "explanation": e })),
        Err(e) => error(StatusCode::CONFLICT, e.to_string()),
    }
}

fn unknown_package(config: &halcyon_config::Config, package: &str) -> String {
    let known: Vec<&str> = config.packages.keys().map(|p| p.as_str()).collect();
    format!(
        "unknown package \"{package}\" (packages: {})",
        known.join(", ")
    )
}

fn unknown_node(config: &halcyon_config::Config, node: &str) -> String {
    let known: Vec<&str> = config
        .cluster
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    format!("unknown node \"{node}\" (nodes: {})", known.join(", "))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PackageBody {
    node: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NodeBody {
    how: Option<String>,
}

fn parse_body<T: for<'de> Deserialize<'de> + Default>(body: &Bytes) -> Result<T, Box<Response>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("bad request body: {e}"),
        ))
    })
}

/// Forwards a write to the leader, or says why it cannot.
async fn forward(node: &Node, method: Method, uri: &Uri, body: &Bytes) -> Response {
    if node.is_isolated() {
        return error(StatusCode::SERVICE_UNAVAILABLE, no_quorum(node));
    }
    let Some((leader, addrs)) = node.leader_api() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, no_quorum(node));
    };
    let body_text = String::from_utf8_lossy(body);
    match node
        .leader_request(
            method.as_str(),
            &uri.to_string(),
            Some(&body_text),
            EVENT_WAIT + Duration::from_secs(5),
        )
        .await
    {
        Ok((_, r)) => {
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_GATEWAY);
            let value =
                serde_json::from_str::<Value>(&r.body).unwrap_or(json!({ "error": r.body }));
            (status, axum::Json(value)).into_response()
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not leader: forward to {leader} at {} (it did not answer: {e})",
                crate::node::join_addrs(&addrs)
            ),
        ),
    }
}

/// Checks the event against the current state (nothing changes when the engine refuses),
/// enqueues it and waits for its outcome.
async fn submit_event(node: &Node, event: Event, by: &str) -> Response {
    let state = node.snapshot();
    let Some(config) = state.config.as_ref() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the cluster is not bootstrapped yet",
        );
    };
    if let Err(e) = Engine::new(config).plan(&state.cluster, &event, node.timestamp()) {
        return error(StatusCode::CONFLICT, format!("refused: {e}"));
    }
    let sequence = match node.enqueue(event.clone(), by).await {
        Ok(halcyon_state::Reply::Queued { sequence, .. }) => sequence,
        Ok(other) => return error(StatusCode::CONFLICT, format!("refused: {other:?}")),
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e),
    };
    let deadline = Instant::now() + EVENT_WAIT;
    loop {
        if let Some(r) = node.snapshot().record_of_sequence(sequence).cloned()
            && r.outcome != Outcome::Running
        {
            let body = json!({
                "event": r.event.to_string(),
                "id": r.id,
                "outcome": r.outcome,
                "plan": r.plan_text,
                "actions": r.actions,
                "error": r.error,
            });
            return if r.outcome == Outcome::Refused {
                (StatusCode::CONFLICT, axum::Json(json!({ "error": format!("refused: {}", r.error.unwrap_or_default()), "event": body }))).into_response()
            } else {
                ok(body)
            };
        }
        if Instant::now() >= deadline {
            return (StatusCode::ACCEPTED, axum::Json(json!({ "queued": sequence, "event": event.to_string(), "note": "still running; see `halcyon status`" }))).into_response();
        }
        sleep(Duration::from_millis(20)).await;
    }
}

async fn package_op(
    State(node): State<Shared>,
    Path((package, op)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let config = node.config();
    if !["run", "halt", "move", "enable", "disable"].contains(&op.as_str()) {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "unknown package operation \"{op}\"; expected run, halt, move, enable or disable"
            ),
        );
    }
    if config.package(&package).is_none() {
        return error(StatusCode::NOT_FOUND, unknown_package(&config, &package));
    }
    let body: PackageBody = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if let Some(n) = &body.node
        && config.node(n).is_none()
    {
        return error(StatusCode::NOT_FOUND, unknown_node(&config, n));
    }
    if !node.consensus.is_leader() || node.is_isolated() {
        let raw = match &body.node {
            Some(n) => Bytes::from(json!({ "node": n }).to_string()),
            None => Bytes::new(),
        };
        return forward(&node, method, &uri, &raw).await;
    }
    let package = PackageName(package);
    let target = body.node.map(NodeName);
    let event = match op.as_str() {
        "run" => Event::PackageRun {
            package,
            node: target,
        },
        "halt" => {
            if target.is_some() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad request body: halt takes no node",
                );
            }
            Event::PackageHalt { package }
        }
        "move" => Event::PackageMove {
            package,
            node: target,
        },
        "enable" => Event::PackageEnable {
            package,
            node: target,
        },
        _ => Event::PackageDisable {
            package,
            node: target,
        },
    };
    submit_event(&node, event, "api").await
}

async fn node_op(
    State(node): State<Shared>,
    Path((name, op)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let config = node.config();
    if !["start", "halt", "add", "remove"].contains(&op.as_str()) {
        return error(
            StatusCode::NOT_FOUND,
            format!("unknown node operation \"{op}\"; expected start, halt, add or remove"),
        );
    }
    let witness = config
        .cluster
        .quorum
        .witness
        .as_ref()
        .filter(|w| w.name.as_str() == name);
    if config.node(&name).is_none() && !(witness.is_some() && (op == "add" || op == "remove")) {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "{}; a voter must be in the applied configuration",
                unknown_node(&config, &name)
            ),
        );
    }
    if op == "add" || op == "remove" {
        if !body.iter().all(u8::is_ascii_whitespace) {
            return error(
                StatusCode::BAD_REQUEST,
                format!("bad request body: node {op} takes no body"),
            );
        }
        if !node.consensus.is_leader() || node.is_isolated() {
            return forward(&node, method, &uri, &Bytes::new()).await;
        }
        return voter_change(&node, &config, &name, op == "add").await;
    }
    let body: NodeBody = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let how = match body.how.as_deref() {
        None | Some("graceful") => Departure::Graceful,
        Some("takeover") => Departure::GracefulTakeover,
        Some("force") => Departure::Forced,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("bad request body: how \"{other}\"; expected graceful, takeover or force"),
            );
        }
    };
    if op == "start" && body.how.is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "bad request body: start takes no `how`",
        );
    }
    if !node.consensus.is_leader() || node.is_isolated() {
        let raw = match &body.how {
            Some(h) => Bytes::from(json!({ "how": h }).to_string()),
            None => Bytes::new(),
        };
        return forward(&node, method, &uri, &raw).await;
    }
    let name = NodeName(name);
    if op == "start" {
        if let Err(e) = node
            .submit(&Command::NodeStartAllowed {
                node: name.clone(),
                at: node.timestamp(),
            })
            .await
        {
            return error(StatusCode::SERVICE_UNAVAILABLE, e);
        }
        let state = node.snapshot();
        if state.cluster.members.contains(&name) {
            return ok(json!({ "note": format!("{name} is already a member") }));
        }
        return submit_event(&node, Event::NodeUp { node: name }, "api").await;
    }
    submit_event(&node, Event::NodeDown { node: name, how }, "api").await
}

/// How long a voter change may take.
const VOTER_CHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// The smallest voter set allowed: `quorum.min_voters`, by default a majority of the
/// configured voters (nodes and witness).
pub fn min_voters(config: &halcyon_config::Config) -> usize {
    match config.cluster.quorum.min_voters {
        0 => config.cluster.voter_count() / 2 + 1,
        n => n as usize,
    }
}

/// `node add|remove NAME`: changes the Raft voter set (on the leader).
async fn voter_change(
    node: &Node,
    config: &halcyon_config::Config,
    name: &str,
    add: bool,
) -> Response {
    let members = crate::node::raft_members(config);
    let number = config
        .node(name)
        .map(|n| n.number)
        .or_else(|| config.cluster.quorum.witness.as_ref().map(|w| w.number))
        .expect("checked by the caller");
    let id = halcyon_consensus::NodeId::from(number);
    let voters = node.consensus.voters();
    let names = |set: &std::collections::BTreeSet<halcyon_consensus::NodeId>| {
        set.iter()
            .map(|id| node.node_name_of(*id))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let result = if add {
        if voters.contains(&id) {
            return error(
                StatusCode::CONFLICT,
                format!(
                    "refused: {name} is already a voter (voters: {})",
                    names(&voters)
                ),
            );
        }
        let Some(addrs) = members.get(&id).cloned() else {
            return error(
                StatusCode::CONFLICT,
                format!("refused: {name} has no consensus address in the configuration"),
            );
        };
        node.consensus
            .add_voter(id, addrs)
            .await
            .map_err(|e| e.to_string())
    } else {
        if !voters.contains(&id) {
            return error(
                StatusCode::CONFLICT,
                format!(
                    "refused: {name} is not a voter (voters: {})",
                    names(&voters)
                ),
            );
        }
        let minimum = min_voters(config);
        if voters.len() - 1 < minimum {
            return error(
                StatusCode::CONFLICT,
                format!(
                    "refused: removing {name} would leave {} voter(s); the minimum is {minimum} (quorum.min_voters)",
                    voters.len() - 1
                ),
            );
        }
        if id == node.consensus.node_id() {
            return error(
                StatusCode::CONFLICT,
                format!(
                    "refused: {name} is the coordinator; remove it from another coordinator (halt it first)"
                ),
            );
        }
        // Kept as a learner: the node still receives the log (plans, leases' state), it
        // only stops voting. `Consensus::remove_voter` drops it entirely.
        let change = node.consensus.raft().change_membership(
            openraft::ChangeMembers::RemoveVoters(std::collections::BTreeSet::from([id])),
            true,
        );
        match tokio::time::timeout(VOTER_CHANGE_TIMEOUT, change).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {VOTER_CHANGE_TIMEOUT:?}")),
        }
    };
    match result {
        Ok(()) => {
            let after = node.consensus.voters();
            tracing::info!(node = %name, add, voters = %names(&after), "voter set changed");
            ok(json!({
                "note": format!("{name} {}; voters: {}", if add { "is a voter" } else { "is no longer a voter" }, names(&after)),
                "voters": after.iter().map(|id| node.node_name_of(*id)).collect::<Vec<_>>(),
            }))
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("voter change failed: {e}"),
        ),
    }
}

/// `cluster start` (cmruncl) and `cluster halt` (cmhaltcl).
async fn cluster_op(
    State(node): State<Shared>,
    Path(op): Path<String>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    if !["start", "halt"].contains(&op.as_str()) {
        return error(
            StatusCode::NOT_FOUND,
            format!("unknown cluster operation \"{op}\"; expected start or halt"),
        );
    }
    if !body.iter().all(u8::is_ascii_whitespace) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("bad request body: cluster {op} takes no body"),
        );
    }
    if !node.consensus.is_leader() || node.is_isolated() {
        return forward(&node, method, &uri, &Bytes::new()).await;
    }
    let state = node.snapshot();
    if op == "halt" {
        if state.cluster_halted {
            return error(
                StatusCode::CONFLICT,
                "refused: the cluster is already halted (`halcyon cluster start` starts it)",
            );
        }
        return submit_event(&node, Event::ClusterHalt, "api").await;
    }
    if state.cluster_halted {
        if let Err(e) = node
            .submit(&Command::ClusterStartAllowed {
                at: node.timestamp(),
            })
            .await
        {
            return error(StatusCode::SERVICE_UNAVAILABLE, e);
        }
        // The coordinator brings the reachable nodes back as members and forms the cluster
        // with one cluster_start; wait for that.
        let deadline = Instant::now() + EVENT_WAIT;
        loop {
            let state = node.snapshot();
            let reach = node.reachability();
            let config = node.config();
            let joined = config.cluster.nodes.iter().all(|n| {
                state.cluster.members.contains(&n.name)
                    || state.halted_by_admin.contains(&n.name)
                    || !matches!(reach.get(&n.number), Some(NodeState::Reachable))
            });
            if joined
                && !state.cluster.members.is_empty()
                && state.pending.is_empty()
                && state.execution.is_none()
            {
                let formed = state
                    .log
                    .iter()
                    .rev()
                    .find(|r| r.event == Event::ClusterStart)
                    .map(|r| {
                        json!({ "event": r.event.to_string(), "id": r.id, "outcome": r.outcome, "plan": r.plan_text, "actions": r.actions })
                    });
                return ok(formed.unwrap_or(json!({ "note": "the cluster has started" })));
            }
            if Instant::now() >= deadline {
                return (
                    StatusCode::ACCEPTED,
                    axum::Json(json!({ "note": "the cluster is starting; nodes are still joining (see `halcyon status`)" })),
                )
                    .into_response();
            }
            sleep(Duration::from_millis(20)).await;
        }
    }
    submit_event(&node, Event::ClusterStart, "api").await
}

async fn internal_write(State(node): State<Shared>, body: Bytes) -> Response {
    if node.is_isolated() {
        return error(StatusCode::SERVICE_UNAVAILABLE, no_quorum(&node));
    }
    let command = match Command::decode(&body) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad command: {e}")),
    };
    if !node.consensus.is_leader() {
        return error(
            StatusCode::MISDIRECTED_REQUEST,
            match node.leader_api() {
                Some((n, a)) => format!(
                    "not leader: forward to {n} at {}",
                    crate::node::join_addrs(&a)
                ),
                None => no_quorum(&node),
            },
        );
    }
    match node.consensus.write(command.encode()).await {
        Ok(reply) => (
            StatusCode::OK,
            String::from_utf8_lossy(&reply.0).into_owned(),
        )
            .into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("no quorum: {e}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseRequest {
    node: String,
}

async fn internal_lease(State(node): State<Shared>, body: Bytes) -> Response {
    let request: LeaseRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad request body: {e}")),
    };
    let answer = node.grant_lease(&request.node).await;
    ok(serde_json::to_value(answer).unwrap_or(Value::Null))
}

async fn debug_isolate(State(node): State<Shared>) -> Response {
    if !node.test_faults {
        return error(
            StatusCode::FORBIDDEN,
            "test faults are not enabled on this daemon (--test-faults)",
        );
    }
    node.isolate();
    ok(json!({ "isolated": node.name }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeartbeatFaultRequest {
    network: String,
    /// Nodes whose heartbeats on `network` this node drops (empty: heal).
    drop_from: Vec<String>,
}

/// Test only: drop the heartbeats of chosen peers on one network, on this node.
async fn debug_heartbeats(State(node): State<Shared>, body: Bytes) -> Response {
    if !node.test_faults {
        return error(
            StatusCode::FORBIDDEN,
            "test faults are not enabled on this daemon (--test-faults)",
        );
    }
    let request: HeartbeatFaultRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad request body: {e}")),
    };
    let config = node.config();
    let Some(network) = config
        .cluster
        .networks
        .iter()
        .find(|n| n.name.as_str() == request.network)
    else {
        return error(
            StatusCode::NOT_FOUND,
            format!("unknown network \"{}\"", request.network),
        );
    };
    let mut peers = std::collections::BTreeSet::new();
    for name in &request.drop_from {
        match config.node(name) {
            Some(n) => {
                peers.insert(n.number);
            }
            None => return error(StatusCode::NOT_FOUND, unknown_node(&config, name)),
        }
    }
    tracing::warn!(node = %node.name, network = %network.name, drop_from = ?request.drop_from, "test fault: heartbeats dropped");
    node.heartbeat_faults.set(network.number, peers);
    ok(json!({ "node": node.name, "network": network.name, "drop_from": request.drop_from }))
}
