//! What the API shows: the status, the filtered event log, explanations and emulations,
//! built as `halcyon-api` types from a node's applied state. Nothing here changes the
//! cluster; `api.rs` serves these, `operations.rs` holds the writes.

use std::sync::Arc;

use halcyon_api::{
    EmulateResponse, EventRecord, EventsQuery, EventsResponse, ExcludedView, ExecutionState,
    ExecutionStatus, ExplainResponse, FenceView, LeaseStatus, NetworkView, NodeStatus,
    PackageStatus, PathView, Quorum, Reachability, RunningCommand, SCHEMA_VERSION, StatusResponse,
};
use halcyon_config::{Config, NodeName};
use halcyon_membership::NodeState;
use halcyon_membership::detector::PathStatus;
use halcyon_policy::{Engine, Event};
use halcyon_state::State;
use jiff::Timestamp;

use crate::node::Node;
use crate::operations::ApiError;

/// Events shown by `GET /v1/status`.
pub const STATUS_EVENTS: usize = 10;

/// How recent a leader's quorum acknowledgement, or a follower's last append-entries from
/// its leader, must be for `status` to say the node has the quorum.
const QUORUM_FRESH_MS: u64 = 1000;

/// What the answering node learnt of the quorum witness by asking its status just now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WitnessSeen {
    /// Not asked: counted unreachable, as nothing says otherwise.
    NotAsked,
    /// It did not answer.
    Unreachable,
    /// It answered that it holds its vote (a new store waiting for its admission).
    Held,
    /// It answered and votes.
    Voting,
}

/// "no quorum: 1 of 3 voters reachable (n2, n3 unreachable)", without what this node
/// knows of the witness (see [`no_quorum_with_witness`]).
pub fn no_quorum(node: &Node) -> String {
    no_quorum_with_witness(node, WitnessSeen::NotAsked)
}

/// "no quorum: 1 of 4 voters reachable from n1 (n2, n3, witness w unreachable)": every
/// voter this node cannot reach is named, the witness too when it is one, and a witness
/// that answers but holds its vote is named as such ("; witness w answers but holds its
/// vote: ...").
pub fn no_quorum_with_witness(node: &Node, witness: WitnessSeen) -> String {
    let (reachable, unreachable) = voters_reachable(node, witness);
    let mut line = no_quorum_line(
        reachable,
        node.config().cluster.voter_count(),
        node.name.as_str(),
        &unreachable,
    );
    if let (WitnessSeen::Held, Some(w)) = (witness, &node.config().cluster.quorum.witness) {
        line.push_str(&format!(
            "; witness {} answers but holds its vote: a new store waiting for the cluster to \
             forget the log its old one acknowledged",
            w.name
        ));
    }
    line
}

/// How many voters this node reaches (itself included), and the names of those it does not
/// (the witness as `witness NAME`, unless it answered; a witness that holds its vote is
/// not counted reachable, and not named here: see [`no_quorum_with_witness`]).
pub fn voters_reachable(node: &Node, witness: WitnessSeen) -> (usize, Vec<String>) {
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
    if let Some(w) = &config.cluster.quorum.witness {
        match witness {
            WitnessSeen::Voting if !node.is_isolated() => reachable += 1,
            WitnessSeen::Held if !node.is_isolated() => {}
            _ => unreachable.push(format!("witness {}", w.name)),
        }
    }
    (reachable, unreachable)
}

/// Whether this node has the quorum, as `status` says: a leader needs a quorum's
/// acknowledgement within [`QUORUM_FRESH_MS`]; a follower, its leader's append-entries within
/// it (a cut-off follower keeps its leader in openraft's metrics: with pre-vote it does not
/// campaign while it cannot win).
pub fn has_quorum(node: &Node) -> bool {
    let metrics = node.consensus.metrics().borrow().clone();
    !node.is_isolated()
        && metrics.current_leader.is_some()
        && if node.consensus.is_leader() {
            metrics
                .millis_since_quorum_ack
                .is_some_and(|m| m < QUORUM_FRESH_MS)
        } else {
            node.consensus
                .millis_since_leader_contact()
                .is_some_and(|m| m < QUORUM_FRESH_MS)
        }
}

/// The no-quorum line from its counts and the unreachable voters' names.
fn no_quorum_line(reachable: usize, voters: usize, from: &str, unreachable: &[String]) -> String {
    let mut text = format!("no quorum: {reachable} of {voters} voters reachable from {from}");
    if !unreachable.is_empty() {
        text.push_str(&format!(" ({} unreachable)", unreachable.join(", ")));
    }
    text
}

pub fn unknown_package(config: &Config, package: &str) -> String {
    let known: Vec<&str> = config.packages.keys().map(|p| p.as_str()).collect();
    format!(
        "unknown package \"{package}\" (packages: {})",
        known.join(", ")
    )
}

pub fn unknown_node(config: &Config, node: &str) -> String {
    let known: Vec<&str> = config
        .cluster
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    format!("unknown node \"{node}\" (nodes: {})", known.join(", "))
}

/// The applied configuration, or why there is none yet.
pub fn applied_config(state: &State) -> Result<&Arc<Config>, ApiError> {
    state
        .config()
        .ok_or_else(|| ApiError::unavailable("the cluster is not bootstrapped yet"))
}

/// This node's view of every path (peer, network).
fn paths(node: &Node) -> Vec<PathStatus> {
    node.membership.borrow().detector.paths.clone()
}

/// `GET /v1/status` without the witness (which `api.rs` asks over the network).
/// How this node's configuration files (read at start) differ from the running
/// configuration.
pub fn config_drift(node: &Node, state: &halcyon_state::State) -> Vec<String> {
    let Some(running) = state.config().map(|c| c.as_ref()) else {
        return Vec::new();
    };
    let mut drift = halcyon_config::drift::differences(&node.boot_config, running);
    if &node.boot_rules != state.rules() {
        drift.push("the event rules differ".to_owned());
    }
    drift
}

/// The answering node's heartbeat authentication and its counts.
fn heartbeat_auth(node: &Node) -> halcyon_api::HeartbeatAuth {
    match &node.heartbeat_sealer {
        Some(sealer) => {
            let c = sealer.counts();
            halcyon_api::HeartbeatAuth {
                authenticated: true,
                accepted: c.accepted,
                forged: c.forged,
                replayed: c.replayed,
                other_cluster: c.other_cluster,
                malformed: c.malformed,
            }
        }
        None => halcyon_api::HeartbeatAuth::default(),
    }
}

/// The answering node's API authentication and its refusals.
fn api_auth(node: &Node) -> halcyon_api::ApiAuth {
    let refusals = &node.auth.refusals;
    let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let kept = node
        .platform
        .network
        .kept()
        .map(|(kept, _)| kept.counts())
        .unwrap_or_default();
    halcyon_api::ApiAuth {
        enforced: node.auth.enforced(),
        unauthenticated: count(&refusals.unauthenticated),
        forbidden: count(&refusals.forbidden),
        nodes: count(&refusals.nodes),
        raft_tls: node.raft_tls.is_some(),
        raft_refused: node.raft_tls.as_ref().map_or(0, |t| t.refused()),
        credentials: node.credentials_state(),
        api_tls: node.raft_tls.is_some(),
        api_tls_refused: node.raft_tls.as_ref().map_or(0, |t| t.api_refused()),
        peer_requests_new: kept.opened,
        peer_requests_kept: kept.reused,
    }
}

/// Nodes that may still run the Raft timings of a longer heartbeat interval than the running
/// configuration's, and the longest (`State::raft_intervals`); `None` when none may.
fn slow_elections(state: &State) -> Option<halcyon_api::SlowElections> {
    let nodes = state.slow_raft_nodes();
    let (_, longest) = state.raft_intervals()?;
    let running = state.config()?.cluster.heartbeat.interval;
    (!nodes.is_empty()).then(|| halcyon_api::SlowElections {
        interval_ms: longest.as_millis() as u64,
        running_interval_ms: running.as_millis() as u64,
        nodes: nodes.iter().map(|n| n.to_string()).collect(),
    })
}

/// The heartbeat this node's detector judges each network by, as it last published it.
fn detection(node: &Node, config: &Config) -> Vec<halcyon_api::DetectionStatus> {
    node.membership
        .borrow()
        .detector
        .networks
        .iter()
        .filter_map(|n| {
            let network = config
                .cluster
                .networks
                .iter()
                .find(|c| c.number == n.network)?;
            Some(halcyon_api::DetectionStatus {
                network: network.name.clone(),
                interval_ms: n.heartbeat.interval.as_millis() as u64,
                sensitivity: n.heartbeat.sensitivity,
                detection_ms: n.heartbeat.detection_time().as_millis() as u64,
            })
        })
        .collect()
}

pub fn status(node: &Node) -> StatusResponse {
    let state = node.snapshot();
    let config = state
        .config()
        .cloned()
        .unwrap_or_else(|| Arc::clone(&node.boot_config));
    let metrics = node.consensus.metrics().borrow().clone();
    let leader = metrics.current_leader.map(|id| node.node_name_of(id));
    let has_quorum = has_quorum(node);
    StatusResponse {
        heartbeat_auth: heartbeat_auth(node),
        api_auth: api_auth(node),
        config_drift: config_drift(node, &state),
        detection: detection(node, &config),
        generation: state.generation(),
        reconfiguration: state.staged().map(|s| halcyon_api::StagedConfig {
            generation: s.generation,
            by: s.by.clone(),
            since: s.since,
            sequence: s.sequence,
        }),
        schema_version: SCHEMA_VERSION,
        cluster: config.cluster.name.clone(),
        answered_by: node.name.to_string(),
        halted: state.cluster_halted(),
        coordinator: leader,
        quorum: Quorum {
            has_quorum,
            term: metrics.current_term,
            voters: node.voter_names(),
            last_applied: state.applied_index(),
            detail: (!has_quorum).then(|| no_quorum(node)),
            foreign_requests: node.consensus.foreign_requests(),
        },
        watchdog: node.watchdog_state(),
        lease: {
            let renewals = node.renewal_report();
            LeaseStatus {
                remaining_ms: node.lease_remaining().as_millis() as u64,
                duration_ms: node.holding_lease().as_millis() as u64,
                renewal_slowest_ms: renewals.slowest.as_millis() as u64,
                warning: renewals.warning,
                unsettled_ms: state.unsettled_lease().map(|(_, l)| l.as_millis() as u64),
                slow_elections: slow_elections(&state),
            }
        },
        nodes: node_statuses(node, &config, &state),
        packages: package_statuses(&config, &state),
        execution: state.execution().map(execution_status),
        pending: state
            .pending()
            .iter()
            .map(|p| p.event.to_string())
            .collect(),
        events: state
            .log()
            .iter()
            .rev()
            .take(STATUS_EVENTS)
            .map(halcyon_api::EventSummary::from)
            .collect(),
        witness: None,
    }
}

fn node_statuses(node: &Node, config: &Config, state: &State) -> Vec<NodeStatus> {
    let reach = node.reachability();
    let paths = paths(node);
    // The networks this node's heartbeats watch (none before they start): one the
    // configuration has that they do not (its link could not be made: a disk device or an
    // address missing here) is down here.
    let watched: Vec<u32> = node
        .membership
        .borrow()
        .detector
        .networks
        .iter()
        .map(|n| n.network)
        .collect();
    config
        .cluster
        .nodes
        .iter()
        .map(|n| {
            let networks = config
                .cluster
                .networks
                .iter()
                .filter(|net| halcyon_membership::detector::is_on_network(&config.cluster, n, net))
                .map(|net| {
                    let path = paths
                        .iter()
                        .find(|p| p.node == n.number && p.network == net.number);
                    let seen = if n.number == node.number {
                        if watched.is_empty() || watched.contains(&net.number) {
                            PathView::Local
                        } else {
                            PathView::Down
                        }
                    } else {
                        match path.map(|p| p.state) {
                            Some(halcyon_membership::PathState::Up) => PathView::Up,
                            Some(halcyon_membership::PathState::Down) => PathView::Down,
                            _ => PathView::Unknown,
                        }
                    };
                    NetworkView {
                        network: net.name.clone(),
                        path: seen,
                        adapter_down: path.is_some_and(|p| p.adapter_down),
                        down: state
                            .adapters_down()
                            .contains(&(n.name.clone(), net.name.clone())),
                    }
                })
                .collect();
            NodeStatus {
                name: n.name.clone(),
                number: n.number,
                member: state.cluster().members.contains(&n.name),
                reachable: match reach.get(&n.number) {
                    Some(NodeState::Reachable) => Reachability::Reachable,
                    Some(NodeState::Unreachable) => Reachability::Unreachable,
                    _ => Reachability::Unknown,
                },
                departed: state.departed().contains(&n.name),
                halted_by_admin: state.halted_by_admin().contains(&n.name),
                incarnation: state.incarnations().get(&n.name).copied(),
                networks,
                fence: state.fences().get(&n.name).map(|f| FenceView {
                    action: f.report.action.clone(),
                    confirmed: f.report.confirmed,
                    current: state.current_fence(n.name.as_str()).is_some(),
                    failures: f.failures,
                    summary: f.report.summary.clone(),
                    attempts: f.report.attempts.clone(),
                    by: f.by.clone(),
                    at: f.at,
                }),
                excluded: excluded(state, &n.name),
                joining: state.joining().contains(&n.name),
            }
        })
        .collect()
}

/// The node's exclusion for not completing its work (`State::stuck`), while it stands: only
/// for the incarnation that was excluded. A restarted daemon registers a new incarnation,
/// which joins again (`Register` clears the exclusion; the comparison keeps the status true
/// to that rule on its own).
fn excluded(state: &State, node: &NodeName) -> Option<ExcludedView> {
    let stuck = state.stuck().get(node)?;
    let current = state.incarnations().get(node).copied();
    (current == Some(stuck.incarnation)).then(|| ExcludedView {
        why: stuck.why.clone(),
        since: stuck.at,
        incarnation: stuck.incarnation,
        event: stuck.execution,
    })
}

fn package_statuses(config: &Config, state: &State) -> Vec<PackageStatus> {
    config
        .packages
        .keys()
        .map(|name| {
            let p = state.cluster().package(name.as_str());
            let configured = config.package(name.as_str());
            let auto_run = configured.is_some_and(|c| c.auto_run);
            let expiry = configured
                .and_then(|c| c.failure_expiry)
                .and_then(|d| jiff::SignedDuration::try_from(d).ok());
            PackageStatus {
                name: name.clone(),
                status: p.status().to_string(),
                nodes: p.nodes.clone(),
                switching: p.switching_enabled(auto_run),
                failures: p.failures.clone(),
                failures_expire_at: p
                    .failures
                    .iter()
                    .filter_map(|(node, &at)| Some((node.clone(), at.checked_add(expiry?).ok()?)))
                    .collect(),
                error: p.error.clone(),
                restarts: state.restarts().get(name).cloned(),
            }
        })
        .collect()
}

/// The event being processed: where its program stands, what runs, and in ERROR what
/// failed (node, command, status, output tail).
fn execution_status(e: &halcyon_state::Execution) -> ExecutionStatus {
    let (state, failures) = match e.progress.state() {
        halcyon_events::EventState::Running => (ExecutionState::Running, Vec::new()),
        halcyon_events::EventState::Error { failures } => (ExecutionState::Error, failures.clone()),
        halcyon_events::EventState::Completed => (ExecutionState::Completed, Vec::new()),
        halcyon_events::EventState::Skipped => (ExecutionState::Skipped, Vec::new()),
    };
    ExecutionStatus {
        id: e.id,
        event: e.plan.event.to_string(),
        state,
        segment: e.progress.current_segment().map(|s| s + 1),
        segments: e.progress.segments().len(),
        last_completed_barrier: e.progress.last_completed_barrier().map(|b| b + 1),
        failures,
        running: e
            .launches
            .values()
            .map(|l| RunningCommand {
                launch: l.launch,
                node: l.node.clone(),
                command: l.command.clone(),
            })
            .collect(),
        open_actions: e.open_actions().len(),
        started_at: e.started_at,
        max_duration_ms: e.max_duration.as_millis() as u64,
    }
}

/// Whether a record concerns `package` (its event, or one of its actions).
pub(crate) fn record_has_package(r: &halcyon_state::EventRecord, package: &str) -> bool {
    let of_event = match &r.event {
        Event::PackageFailed { package: p, .. }
        | Event::PackageRun { package: p, .. }
        | Event::PackageHalt { package: p, .. }
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
pub(crate) fn record_has_node(r: &halcyon_state::EventRecord, node: &str) -> bool {
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

/// `GET /v1/availability/{package}`: from this node's durable event log and the window.
pub fn availability(
    node: &Node,
    package: &str,
    query: &halcyon_api::AvailabilityQuery,
) -> Result<halcyon_api::AvailabilityResponse, ApiError> {
    let parse = |text: &Option<String>| {
        text.as_deref()
            .map(parse_since)
            .transpose()
            .map_err(|e| ApiError::bad_request(e.replacen("since", "time", 1)))
    };
    let (since, until) = (parse(&query.since)?, parse(&query.until)?);
    let state = node.snapshot();
    let first = state.log().iter().next().map(|r| r.id);
    let older = node.archive.records(first).map_err(ApiError::unavailable)?;
    let records: Vec<&halcyon_state::EventRecord> =
        older.iter().chain(state.log().iter()).collect();
    let known = state.config().is_some_and(|c| c.package(package).is_some())
        || records.iter().any(|r| record_has_package(r, package));
    if !known {
        let config = applied_config(&state)?;
        return Err(ApiError::not_found(unknown_package(config, package)));
    }
    let until = until.unwrap_or_else(|| node.timestamp());
    let since = since
        .or_else(|| records.iter().map(|r| r.queued_at).min())
        .unwrap_or(until);
    if since > until {
        return Err(ApiError::bad_request(format!(
            "the period is empty: since {since} is after until {until}"
        )));
    }
    Ok(crate::availability::compute(
        &records, package, since, until,
    ))
}

/// The event log this node holds (oldest first, at most `halcyon_state::LOG_MAX`),
/// filtered by `query`. Each record has its plan, the actions with their node and detail,
/// and every command with its node, start, end, status and output.
pub fn events(node: &Node, query: &EventsQuery) -> Result<EventsResponse, ApiError> {
    let since = query
        .since
        .as_deref()
        .map(parse_since)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let state = node.snapshot();
    if let Some(config) = &state.config() {
        if let Some(p) = &query.package
            && config.package(p).is_none()
        {
            return Err(ApiError::not_found(unknown_package(config, p)));
        }
        if let Some(n) = &query.node
            && config.node(n).is_none()
        {
            return Err(ApiError::not_found(unknown_node(config, n)));
        }
    }
    // Records older than the replicated log's window come from this node's durable event
    // log, when a time is asked for.
    let older = match since {
        Some(_) => {
            let first = state.log().iter().next().map(|r| r.id);
            node.archive.records(first).map_err(ApiError::unavailable)?
        }
        None => Vec::new(),
    };
    let events = older
        .iter()
        .chain(state.log().iter())
        .filter(|r| query.after.is_none_or(|a| r.id > a))
        .filter(|r| since.is_none_or(|s| r.queued_at >= s || r.finished_at.is_none_or(|f| f >= s)))
        .filter(|r| {
            query
                .package
                .as_deref()
                .is_none_or(|p| record_has_package(r, p))
        })
        .filter(|r| query.node.as_deref().is_none_or(|n| record_has_node(r, n)))
        .map(EventRecord::from)
        .collect();
    Ok(EventsResponse {
        schema_version: SCHEMA_VERSION,
        answered_by: node.name.to_string(),
        last_applied: state.applied_index(),
        running: state.execution().map(|e| e.id),
        events,
    })
}

/// What `event` would do now on this cluster (the plan and the recovery program per
/// node, with its barriers). Changes nothing.
pub fn emulate(node: &Node, event: &Event) -> Result<EmulateResponse, ApiError> {
    let state = node.snapshot();
    let config = applied_config(&state)?;
    match halcyon_state::emulate(
        config,
        state.rules(),
        state.cluster(),
        event,
        node.timestamp(),
    ) {
        Ok(e) => Ok(EmulateResponse {
            schema_version: SCHEMA_VERSION,
            text: e.render(),
            emulation: e,
        }),
        Err(e) => Err(ApiError::conflict(e)),
    }
}

/// Why `package` runs where it runs, or does not run, node by node.
pub fn explain(node: &Node, package: &str) -> Result<ExplainResponse, ApiError> {
    let state = node.snapshot();
    let config = applied_config(&state)?;
    if config.package(package).is_none() {
        return Err(ApiError::not_found(unknown_package(config, package)));
    }
    match Engine::new(config).explain(state.cluster(), package, node.timestamp()) {
        Ok(e) => Ok(ExplainResponse {
            schema_version: SCHEMA_VERSION,
            text: e.to_string(),
            explanation: e,
        }),
        Err(e) => Err(ApiError::conflict(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use halcyon_state::{Command, Reply};

    use super::*;

    const CLUSTER: &str = r#"
[cluster]
name = "t"
id = 1
port = 7400
[[network]]
name = "lan"
kind = "ip"
subnets = ["127.0.0.0/8"]
[[node]]
name = "n1"
number = 1
[[node.interface]]
network = "lan"
address = "127.0.0.1"
[[node]]
name = "n2"
number = 2
[[node.interface]]
network = "lan"
address = "127.0.0.2"
[[node]]
name = "n3"
number = 3
[[node.interface]]
network = "lan"
address = "127.0.0.3"
"#;

    /// Run by `node_up n2`: its run stays open until reported, as on a stuck node.
    const PACKAGE: &str = r#"
[package]
name = "web"
type = "failover"
nodes = ["n2", "n1"]
auto_run = true
[[resource]]
kind = "service"
name = "srv"
command = "sleep 100"
"#;

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    /// A booted state with every node registered at incarnation 1 and `node_up n2` executing
    /// (web's run on n2 not yet reported), whose id is returned.
    fn executing(s: &mut State, index: &mut u64) -> u64 {
        let mut apply = |s: &mut State, command| {
            *index += 1;
            s.apply(*index, command)
        };
        let config =
            halcyon_config::load_texts(&[("cluster.toml", CLUSTER), ("web.toml", PACKAGE)])
                .unwrap_or_else(|e| panic!("{e}"));
        let reply = apply(
            s,
            Command::Bootstrap {
                config: Box::new(config),
                rules: Default::default(),
                sources: Vec::new(),
                at: t(0),
            },
        );
        assert!(matches!(reply, Reply::Bootstrapped { .. }), "{reply:?}");
        for node in ["n1", "n2", "n3"] {
            let reply = apply(
                s,
                Command::Register {
                    node: node.into(),
                    incarnation: 1,
                    at: t(0),
                    clean_stop: None,
                },
            );
            assert_eq!(reply, Reply::Done);
        }
        let reply = apply(
            s,
            Command::Enqueue {
                event: Event::NodeUp { node: "n2".into() },
                by: "test".into(),
                at: t(1),
                sample: None,
                request: None,
            },
        );
        assert!(matches!(reply, Reply::Queued { .. }), "{reply:?}");
        let config = s.config().cloned().expect("bootstrapped");
        let (sequence, event) = s.pending_events()[0].clone();
        let plan = Engine::new(&config)
            .plan(s.cluster(), &event, t(2))
            .unwrap();
        match apply(
            s,
            Command::PlanCommitted {
                sequence,
                plan: Box::new(plan),
                at: t(2),
            },
        ) {
            Reply::Executing { execution } => execution,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_node_is_shown_excluded_while_its_excluded_incarnation_lasts() {
        let mut s = State::new();
        let mut index = 0;
        let event = executing(&mut s, &mut index);
        let n2 = NodeName::from("n2");
        assert_eq!(excluded(&s, &n2), None);
        let why = "n2 did not complete its command within 1d 10s";
        index += 1;
        let reply = s.apply(
            index,
            Command::NodeStuck {
                execution: event,
                node: n2.clone(),
                why: why.into(),
                at: t(9),
            },
        );
        assert_eq!(reply, Reply::Done);
        assert_eq!(
            excluded(&s, &n2),
            Some(ExcludedView {
                why: why.into(),
                since: t(9),
                incarnation: 1,
                event,
            })
        );
        assert_eq!(excluded(&s, &NodeName::from("n1")), None);
        // Its daemon restarted: the new incarnation is not excluded.
        index += 1;
        let reply = s.apply(
            index,
            Command::Register {
                node: n2.clone(),
                incarnation: 2,
                at: t(10),
                clean_stop: None,
            },
        );
        assert_eq!(reply, Reply::Done);
        assert_eq!(excluded(&s, &n2), None);
    }

    #[test]
    fn the_no_quorum_line_names_every_unreachable_voter() {
        let unreachable = ["n2".to_owned(), "witness w".to_owned()];
        assert_eq!(
            no_quorum_line(1, 3, "n1", &unreachable),
            "no quorum: 1 of 3 voters reachable from n1 (n2, witness w unreachable)"
        );
        assert_eq!(
            no_quorum_line(2, 3, "n1", &[]),
            "no quorum: 2 of 3 voters reachable from n1"
        );
    }
}
