//! The daemon's HTTP/JSON API (axum), at the node's first address, port `cluster.port + 2`.
//!
//! Reads are answered by any node from its applied state; writes are executed by the leader
//! (other nodes forward them). Every body is a `halcyon-api` type. Errors are
//! [`ErrorBody`]s with the cause first: `no quorum: ...`, `not leader: forward to ...`,
//! `unknown package ...`, `refused: ...`.
//!
//! The handlers are thin: they parse the request, forward writes to the leader, and map
//! results to HTTP; what the cluster shows is in `views.rs`, what it does in
//! `operations.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};
use halcyon_api::{
    EmulateRequest, ErrorBody, HeartbeatFaultRequest, HeartbeatFaultResponse, HoldActionsResponse,
    IsolateResponse, LeaseRequest, NodeRequest, OperationQuery, RaftRenewalsUnansweredResponse,
    RaiseRequest, SCHEMA_VERSION, WitnessOwnStatus, WitnessStatus,
};
use halcyon_state::Command;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::{self, Caller};
use crate::node::Node;
use crate::node::RenewalTransport;
use crate::operations::{self, Answer, ApiError, EVENT_WAIT, ErrorKind, must_forward};
use crate::views::{self, no_quorum, unknown_node};

type Shared = Arc<Node>;

/// How long `GET /v1/status` waits for the witness's own status.
const WITNESS_STATUS_TIMEOUT: Duration = Duration::from_millis(300);

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = ErrorBody {
        schema_version: SCHEMA_VERSION,
        error: message.into(),
        event: None,
    };
    (status, axum::Json(body)).into_response()
}

fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::Misdirected => StatusCode::MISDIRECTED_REQUEST,
    }
}

fn failed(e: ApiError) -> Response {
    let body = ErrorBody {
        schema_version: SCHEMA_VERSION,
        error: e.message,
        event: e.event,
    };
    (status_of(e.kind), axum::Json(body)).into_response()
}

fn ok(value: impl Serialize) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

fn reply<T: Serialize>(result: Result<T, ApiError>) -> Response {
    result.map_or_else(failed, ok)
}

fn answered(result: Result<Answer, ApiError>) -> Response {
    match result {
        Ok(a) if a.pending => (StatusCode::ACCEPTED, axum::Json(a.response)).into_response(),
        Ok(a) => ok(a.response),
        Err(e) => failed(e),
    }
}

/// Serves the API on every one of `addrs` (the node's IP interfaces).
/// Public requests handled at once on a node; more wait.
const PUBLIC_CONCURRENCY: usize = 16;

/// Serves the API on `addrs` (on a runtime of its own, see `platform::Network::serve_api`)
/// and the internal API (what nodes ask of each other) on `internal` (on the node's runtime).
pub async fn serve(
    node: Shared,
    addrs: Vec<SocketAddr>,
    internal: Vec<SocketAddr>,
) -> anyhow::Result<crate::node::Listenings> {
    // What administrators and programs ask: at most `PUBLIC_CONCURRENCY` at once, the
    // others wait their turn, so that a flood of them cannot crowd out what nodes ask of
    // each other (lease renewals, forwarded writes), which is not limited.
    let public = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/events", get(events))
        .route("/v1/events/raise", post(raise_event))
        .route("/v1/events/{id}/{answer}", post(answer_event))
        .route("/v1/emulate", post(emulate))
        .route("/v1/explain/{package}", get(explain))
        .route("/v1/packages/{package}/{op}", post(package_op))
        .route("/v1/nodes/{node}/{op}", post(node_op))
        .route("/v1/cluster/{op}", post(cluster_op))
        .route("/v1/availability/{package}", get(availability))
        .route("/v1/config", get(config_running))
        .route("/v1/config/{op}", post(config_op))
        .route_layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            PUBLIC_CONCURRENCY,
        ));
    // The test-only fault endpoints exist only on a daemon started with `--test-faults`.
    let mut app = Router::new();
    if node.test_faults {
        app = app
            .route("/v1/debug/isolate", post(debug_isolate))
            .route("/v1/debug/hold-actions", post(debug_hold_actions))
            .route(
                "/v1/debug/raft-renewals-unanswered",
                post(debug_raft_renewals_unanswered),
            )
            .route("/v1/debug/heartbeats", post(debug_heartbeats));
    }
    // Every request, unknown paths included, needs a token with the role it asks for, or a
    // node's signature (`auth`).
    let app = app
        .merge(observe_routes())
        .merge(public)
        .fallback(not_found)
        .with_state(Arc::clone(&node))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&node),
            auth::public::<Node>,
        ));
    let nodes = Router::new()
        .route("/v1/internal/write", post(internal_write))
        .route("/v1/internal/lease", post(internal_lease))
        .route(
            crate::node::admission::MEMBERSHIP_PATH,
            get(async |State(node): State<Shared>| ok(node.membership_answer())),
        )
        .route(crate::node::admission::FORGET_PATH, post(internal_forget))
        .fallback(not_found)
        .with_state(Arc::clone(&node))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&node),
            auth::internal::<Node>,
        ));
    let internal = node
        .platform
        .network
        .serve_internal(nodes, internal)
        .await?;
    // The same router on the local socket: `auth::public` tells its clients apart.
    let public = node
        .platform
        .network
        .serve_api(app, addrs, node.api_socket.clone())
        .await?;
    Ok(crate::node::Listenings { public, internal })
}

/// What watches the cluster: the event stream (long-lived: outside the public concurrency
/// limit, bounded by its own subscriber limit), the metrics, the status page and the JSON
/// Schema of the status and event records.
fn observe_routes() -> Router<Shared> {
    Router::new()
        .route("/v1/events/stream", get(events_stream))
        .route("/metrics", get(metrics))
        .route("/", get(status_page))
        .route(
            "/v1/schema",
            get(async || ok(halcyon_api::schema::generate())),
        )
}

async fn status_page() -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
        ],
        crate::page::PAGE.as_str(),
    )
        .into_response()
}

/// `GET /v1/events/stream?since=&package=&node=&after=` (`Last-Event-ID` wins over `after`).
async fn events_stream(
    State(node): State<Shared>,
    Query(query): Query<halcyon_api::EventsQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().parse::<u64>());
    match last {
        Some(Err(_)) => error(
            StatusCode::BAD_REQUEST,
            "Last-Event-ID: expected the number of the stream's last record message",
        ),
        Some(Ok(id)) => crate::stream::subscribe(&node, &query, Some(id))
            .map_or_else(failed, IntoResponse::into_response),
        None => crate::stream::subscribe(&node, &query, None)
            .map_or_else(failed, IntoResponse::into_response),
    }
}

async fn metrics(State(node): State<Shared>) -> Response {
    if !node.observed() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "metrics are not collected on {} (no observer runs)",
                node.name
            ),
        );
    }
    match crate::metrics::render(&node) {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                crate::metrics::CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn not_found(uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no such API endpoint: {uri}"),
    )
}

fn is_empty(body: &Bytes) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

/// A JSON body; an empty one is `T::default()`.
fn parse<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if is_empty(body) {
        return Ok(T::default());
    }
    parse_required(body)
}

fn parse_required<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("bad request body: {e}")))
}

async fn availability(
    State(node): State<Shared>,
    Path(package): Path<String>,
    Query(query): Query<halcyon_api::AvailabilityQuery>,
) -> Response {
    reply(views::availability(&node, &package, &query))
}

async fn config_running(State(node): State<Shared>) -> Response {
    reply(crate::reconfigure::running(&node))
}

/// `POST /v1/config/preview` (any node: what the files would do now) and
/// `POST /v1/config/apply` (the leader: stage them and run their `config_change`).
async fn config_op(
    State(node): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(op): Path<String>,
    Query(query): Query<OperationQuery>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let request = query.request.as_deref();
    if let Err(e) = operations::check_request_id(request) {
        return failed(e);
    }
    let files: halcyon_api::ApplyRequest = match parse_required(&body) {
        Ok(files) => files,
        Err(e) => return failed(e),
    };
    match op.as_str() {
        "preview" => reply(crate::reconfigure::preview(&node, &files).await),
        "apply" => {
            if must_forward(&node) {
                let text = String::from_utf8_lossy(&body);
                return forward(&node, &caller, method, &uri, &text).await;
            }
            if let Some(answer) = operations::known_request(&node, request).await {
                return answered(answer);
            }
            answered(crate::reconfigure::apply(&node, &files, &caller.audit(), request).await)
        }
        other => failed(ApiError::not_found(format!(
            "unknown configuration operation \"{other}\"; expected preview or apply"
        ))),
    }
}

async fn status(State(node): State<Shared>) -> Response {
    let mut response = views::status(&node);
    let config = node.config();
    if let Some(w) = &config.cluster.quorum.witness {
        let addr = crate::peers::witness_api(&config.cluster, w);
        let answer = node
            .request(
                addr,
                "GET",
                "/v1/status",
                None,
                WITNESS_STATUS_TIMEOUT,
                None,
            )
            .await
            .ok()
            .and_then(|r| serde_json::from_str::<WitnessOwnStatus>(&r.body).ok());
        let voter = node
            .consensus
            .voters()
            .contains(&halcyon_consensus::NodeId::from(w.number));
        let seen = match &answer {
            None => views::WitnessSeen::Unreachable,
            Some(a) if a.held.is_some() => views::WitnessSeen::Held,
            Some(_) => views::WitnessSeen::Voting,
        };
        response.witness = Some(WitnessStatus {
            name: w.name.clone(),
            address: addr.to_string(),
            voter,
            reachable: answer.is_some(),
            last_applied: answer.as_ref().map(|a| a.last_applied),
            joining: node.snapshot().joining().contains(&w.name),
            held: answer.and_then(|a| a.held),
        });
        if response.quorum.detail.is_some() {
            // Now that the witness was asked: name it too when it did not answer, or holds
            // its vote.
            response.quorum.detail = Some(views::no_quorum_with_witness(&node, seen));
        }
    }
    ok(response)
}

/// `GET /v1/events?since=10m&package=db&node=n2&after=ID`; clients follow the log by
/// asking again with `after`.
async fn events(
    State(node): State<Shared>,
    Query(query): Query<halcyon_api::EventsQuery>,
) -> Response {
    reply(views::events(&node, &query))
}

async fn answer_event(
    State(node): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((id, answer)): Path<(String, String)>,
) -> Response {
    answered(operations::answer_event(&node, &id, &answer, &caller.audit()).await)
}

async fn raise_event(
    State(node): State<Shared>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    match parse_required::<RaiseRequest>(&body) {
        Ok(request) => answered(operations::raise_event(&node, request, &caller.audit()).await),
        Err(e) => failed(e),
    }
}

/// `POST /v1/emulate {"event": ...}`: changes nothing.
async fn emulate(State(node): State<Shared>, body: Bytes) -> Response {
    match parse_required::<EmulateRequest>(&body) {
        Ok(request) => reply(views::emulate(&node, &request.event)),
        Err(e) => failed(e),
    }
}

async fn explain(State(node): State<Shared>, Path(package): Path<String>) -> Response {
    reply(views::explain(&node, &package))
}

/// Forwards a write to the leader on behalf of `caller`, or says why it cannot.
async fn forward(node: &Node, caller: &Caller, method: Method, uri: &Uri, body: &str) -> Response {
    if node.is_isolated() {
        return error(StatusCode::SERVICE_UNAVAILABLE, no_quorum(node));
    }
    let Some((leader, addrs)) = node.leader_api() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, no_quorum(node));
    };
    match node
        .leader_request(
            method.as_str(),
            &uri.to_string(),
            Some(body),
            EVENT_WAIT + Duration::from_secs(5),
            caller,
        )
        .await
    {
        Ok((_, r)) => {
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_GATEWAY);
            match serde_json::from_str::<serde_json::Value>(&r.body) {
                Ok(value) => (status, axum::Json(value)).into_response(),
                Err(_) => error(status, r.body),
            }
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not leader: forward to {leader} at {} (it did not answer: {e})",
                crate::peers::join_addrs(&addrs)
            ),
        ),
    }
}

/// The body a forwarded request carries (empty when there is nothing in it).
fn forwarded_body<T: Serialize + Default + PartialEq>(request: &T) -> String {
    if *request == T::default() {
        String::new()
    } else {
        serde_json::to_string(request).unwrap_or_default()
    }
}

async fn package_op(
    State(node): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((package, op)): Path<(String, String)>,
    Query(query): Query<OperationQuery>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let request = query.request.as_deref();
    if let Err(e) = operations::check_request_id(request) {
        return failed(e);
    }
    if !must_forward(&node)
        && let Some(answer) = operations::known_request(&node, request).await
    {
        return answered(answer);
    }
    let config = node.config();
    let operation =
        match operations::check_package_operation(&config, &package, &op, || parse(&body)) {
            Ok(o) => o,
            Err(e) => return failed(e),
        };
    if must_forward(&node) {
        return forward(
            &node,
            &caller,
            method,
            &uri,
            &forwarded_body(&operation.request),
        )
        .await;
    }
    match operation.event() {
        Ok(event) => {
            answered(operations::submit_event(&node, event, &caller.audit(), request).await)
        }
        Err(e) => failed(e),
    }
}

async fn node_op(
    State(node): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((name, op)): Path<(String, String)>,
    Query(query): Query<OperationQuery>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let request = query.request.as_deref();
    if let Err(e) = operations::check_request_id(request) {
        return failed(e);
    }
    let config = node.config();
    let operation =
        match operations::check_node_operation(&config, &name, &op, is_empty(&body), || {
            parse::<NodeRequest>(&body)
        }) {
            Ok(o) => o,
            Err(e) => return failed(e),
        };
    if must_forward(&node) {
        let body = match &operation {
            operations::NodeOperation::Voters { .. } => String::new(),
            operations::NodeOperation::Membership { request, .. }
            | operations::NodeOperation::Fence { request, .. } => forwarded_body(request),
        };
        return forward(&node, &caller, method, &uri, &body).await;
    }
    answered(operations::node_operation(&node, &config, operation, request, &caller.audit()).await)
}

/// `cluster start` (cmruncl) and `cluster halt` (cmhaltcl).
async fn cluster_op(
    State(node): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(op): Path<String>,
    Query(query): Query<OperationQuery>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let request = query.request.as_deref();
    if let Err(e) = operations::check_request_id(request) {
        return failed(e);
    }
    let start = match operations::check_cluster_operation(&op, is_empty(&body)) {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    if must_forward(&node) {
        return forward(&node, &caller, method, &uri, "").await;
    }
    answered(operations::cluster_operation(&node, start, request, &caller.audit()).await)
}

/// Node to node: commits an encoded `Command` on the leader and answers the state
/// machine's reply (`halcyon_api::WriteResponse`).
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
                    crate::peers::join_addrs(&a)
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

/// Node to node: a lease renewal that came on the internal API (`node::lease_task`; the
/// Raft transport carries them first). Only for itself: the signer must be the node named
/// (when nodes have credentials).
async fn internal_lease(
    State(node): State<Shared>,
    Extension(signed): Extension<auth::SignedBy>,
    body: Bytes,
) -> Response {
    let request: LeaseRequest = match parse_required(&body) {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    if node.auth.enforced() && signed.node != request.node {
        return failed(ApiError::new(
            ErrorKind::Forbidden,
            format!(
                "{} may not renew the lease of {}: a node renews only its own",
                signed.node, request.node
            ),
        ));
    }
    ok(node
        .answer_renewal(&request.node, RenewalTransport::Http)
        .await)
}

/// Node to node: a node with a new Raft store asks the leader to take it out of the
/// membership (`node::admission`). Only for itself: the signer must be the node named
/// (when nodes have credentials).
async fn internal_forget(
    State(node): State<Shared>,
    Extension(signed): Extension<auth::SignedBy>,
    body: Bytes,
) -> Response {
    #[derive(serde::Deserialize)]
    struct ForgetRequest {
        node: String,
    }
    let request: ForgetRequest = match parse_required(&body) {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    // Without credentials (an explicit, logged choice) requests carry no node identity;
    // with them, a node asks only for itself.
    if node.auth.enforced() && signed.node != request.node {
        return failed(ApiError::new(
            ErrorKind::Forbidden,
            format!(
                "{} may not ask for {} to be forgotten: a node asks only for itself",
                signed.node, request.node
            ),
        ));
    }
    reply(operations::forget(&node, &request.node).await)
}

fn test_faults_enabled(node: &Node) -> Result<(), ApiError> {
    if node.test_faults {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorKind::Forbidden,
            "test faults are not enabled on this daemon (--test-faults)",
        ))
    }
}

async fn debug_isolate(State(node): State<Shared>) -> Response {
    if let Err(e) = test_faults_enabled(&node) {
        return failed(e);
    }
    node.isolate();
    ok(IsolateResponse {
        schema_version: SCHEMA_VERSION,
        isolated: node.name.to_string(),
    })
}

/// Test only: this node holds every plan action it is handed from now on (a stuck executor).
async fn debug_hold_actions(State(node): State<Shared>) -> Response {
    if let Err(e) = test_faults_enabled(&node) {
        return failed(e);
    }
    tracing::warn!(node = %node.name, "test fault: plan actions held from now on");
    node.hold_actions
        .store(true, std::sync::atomic::Ordering::Relaxed);
    ok(HoldActionsResponse {
        schema_version: SCHEMA_VERSION,
        node: node.name.to_string(),
    })
}

/// Test only: leave lease renewals on the Raft transport unanswered from now on, as a
/// coordinator of an earlier version does.
async fn debug_raft_renewals_unanswered(State(node): State<Shared>) -> Response {
    if let Err(e) = test_faults_enabled(&node) {
        return failed(e);
    }
    tracing::warn!(node = %node.name, "test fault: lease renewals on the Raft transport left unanswered from now on");
    node.raft_renewals_unanswered
        .store(true, std::sync::atomic::Ordering::Relaxed);
    ok(RaftRenewalsUnansweredResponse {
        schema_version: SCHEMA_VERSION,
        node: node.name.to_string(),
    })
}

/// Test only: drop the heartbeats of chosen peers on one network, on this node.
async fn debug_heartbeats(State(node): State<Shared>, body: Bytes) -> Response {
    reply(heartbeat_fault(&node, &body))
}

fn heartbeat_fault(node: &Node, body: &Bytes) -> Result<HeartbeatFaultResponse, ApiError> {
    test_faults_enabled(node)?;
    let request: HeartbeatFaultRequest = parse_required(body)?;
    let config = node.config();
    let Some(network) = config
        .cluster
        .networks
        .iter()
        .find(|n| n.name.as_str() == request.network)
    else {
        return Err(ApiError::not_found(format!(
            "unknown network \"{}\"",
            request.network
        )));
    };
    let mut peers = std::collections::BTreeSet::new();
    for name in &request.drop_from {
        match config.node(name) {
            Some(n) => {
                peers.insert(n.number);
            }
            None => return Err(ApiError::not_found(unknown_node(&config, name))),
        }
    }
    tracing::warn!(node = %node.name, network = %network.name, drop_from = ?request.drop_from, "test fault: heartbeats dropped");
    node.heartbeat_faults.set(network.number, peers);
    Ok(HeartbeatFaultResponse {
        schema_version: SCHEMA_VERSION,
        node: node.name.to_string(),
        network: network.name.to_string(),
        drop_from: request.drop_from,
    })
}
