//! The API's writes as functions of a node: package, node and cluster operations, voter
//! changes, answers to an event in ERROR, raising a user-defined event. `api.rs` parses
//! the request, forwards it to the leader when this node is not the leader (see
//! [`must_forward`]), and turns the result into HTTP; the rules live here.
//!
//! Each operation is checked in two parts where forwarding sits between them: what any
//! node can check (the operation, the package or node names) before forwarding, the rest
//! on the leader.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use halcyon_api::{
    EventDoneResponse, EventRecord, NodeRequest, NoteResponse, OperationResponse, PackageRequest,
    QueuedResponse, RaiseRequest, SCHEMA_VERSION, VoterChangeResponse,
};
use halcyon_config::{Config, NodeName, PackageName};
use halcyon_consensus::NodeId;
use halcyon_membership::NodeState;
use halcyon_policy::{Departure, Engine, Event};
use halcyon_resources::fence::FenceAction;
use halcyon_state::{Command, Outcome, Reply};
use tokio::time::{Instant, sleep};

use crate::node::Node;
use crate::views::{applied_config, unknown_node, unknown_package};

/// How long a write request waits for its event to finish before answering "queued".
pub const EVENT_WAIT: Duration = Duration::from_secs(30);
/// How long a voter change may take.
const VOTER_CHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a waiting write looks at the applied state again.
const WAIT_POLL: Duration = Duration::from_millis(20);

/// Why a request was not carried out; `api.rs` maps the kind to an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed (400).
    BadRequest,
    /// It names a package, node, event or operation that does not exist (404).
    NotFound,
    /// The cluster refuses it in its current state (409).
    Conflict,
    /// No quorum, no leader, not bootstrapped, or a commit that did not happen (503).
    Unavailable,
    /// A test-only endpoint on a daemon without `--test-faults` (403).
    Forbidden,
    /// A node-to-node write sent to a node that does not lead (421).
    Misdirected,
}

/// A request not carried out: the cause first, and a refused event's record with it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    pub event: Option<Box<EventRecord>>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            event: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
}

/// What an operation answered; `pending`: accepted but not finished yet (HTTP 202).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub response: OperationResponse,
    pub pending: bool,
}

impl Answer {
    pub(crate) fn done(response: OperationResponse) -> Self {
        Answer {
            response,
            pending: false,
        }
    }
    pub(crate) fn note(text: impl Into<String>) -> Self {
        Self::done(OperationResponse::Note(NoteResponse {
            schema_version: SCHEMA_VERSION,
            note: text.into(),
        }))
    }
}

/// Whether a write must go to the leader: this node does not lead, or is isolated.
pub fn must_forward(node: &Node) -> bool {
    !node.consensus.is_leader() || node.is_isolated()
}

/// Checks a client's request id (`?request=`): 1 to 64 of `A-Z a-z 0-9 - _`.
pub fn check_request_id(request: Option<&str>) -> Result<(), ApiError> {
    match request {
        Some(id)
            if id.is_empty()
                || id.len() > halcyon_state::REQUEST_ID_MAX
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Err(ApiError::bad_request(format!(
                "bad request id {id:?}: expected 1 to {} of A-Z a-z 0-9 - _",
                halcyon_state::REQUEST_ID_MAX
            )))
        }
        _ => Ok(()),
    }
}

/// The answer to a request whose id already enqueued an event (the client asks again after
/// losing the answer): that event's outcome, waited for as the first time. `None` when the
/// cluster does not know the id.
pub async fn known_request(node: &Node, request: Option<&str>) -> Option<Result<Answer, ApiError>> {
    let request = request?;
    let state = node.snapshot();
    let &(_, sequence) = state.requests().iter().find(|(id, _)| id == request)?;
    let event = state
        .pending()
        .iter()
        .find(|p| p.sequence == sequence)
        .map(|p| p.event.to_string());
    drop(state);
    tracing::info!(
        request,
        sequence,
        "a request asked again: answering with its event's outcome"
    );
    Some(await_outcome(node, sequence, event).await)
}

/// Checks the event against the current state (nothing changes when the engine refuses),
/// enqueues it (once per `request` id) and waits for its outcome. Callers answer a known
/// `request` first ([`known_request`], before their own checks); an id committed since is
/// still enqueued once (the state machine answers it with its first event).
pub async fn submit_event(
    node: &Node,
    event: Event,
    by: &str,
    request: Option<&str>,
) -> Result<Answer, ApiError> {
    {
        let state = node.snapshot();
        let config = applied_config(&state)?;
        if let Err(e) = Engine::new(config).plan(state.cluster(), &event, node.timestamp()) {
            return Err(ApiError::conflict(format!("refused: {e}")));
        }
    }
    let sequence = match node.enqueue_request(event.clone(), by, request).await {
        Ok(Reply::Queued { sequence, .. }) => sequence,
        Ok(other) => return Err(ApiError::conflict(format!("refused: {other:?}"))),
        Err(e) => return Err(ApiError::unavailable(e)),
    };
    await_outcome(node, sequence, Some(event.to_string())).await
}

/// Waits (up to [`EVENT_WAIT`]) for the event enqueued as `sequence` to end, and answers
/// with its record, or says it still runs.
pub(crate) async fn await_outcome(
    node: &Node,
    sequence: u64,
    event: Option<String>,
) -> Result<Answer, ApiError> {
    let deadline = Instant::now() + EVENT_WAIT;
    loop {
        if let Some(r) = node.snapshot().record_of_sequence(sequence)
            && r.outcome != Outcome::Running
        {
            let record = EventRecord::from(r);
            if r.outcome == Outcome::Refused {
                let mut error =
                    ApiError::conflict(format!("refused: {}", r.error.clone().unwrap_or_default()));
                error.event = Some(Box::new(record));
                return Err(error);
            }
            return Ok(Answer::done(OperationResponse::Done(Box::new(
                EventDoneResponse {
                    schema_version: SCHEMA_VERSION,
                    record,
                },
            ))));
        }
        if Instant::now() >= deadline {
            return Ok(Answer {
                response: OperationResponse::Queued(QueuedResponse {
                    schema_version: SCHEMA_VERSION,
                    queued: sequence,
                    event,
                    note: "still running; see `halcyon status`".to_owned(),
                }),
                pending: true,
            });
        }
        sleep(WAIT_POLL).await;
    }
}

/// The operations of `POST /v1/packages/{package}/{op}`.
const PACKAGE_OPS: [&str; 6] = ["run", "halt", "move", "enable", "disable", "clear"];

/// A package operation that names an existing package, operation and node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageOperation {
    pub package: PackageName,
    pub op: String,
    pub request: PackageRequest,
}

/// What any node checks of a package operation before it forwards it.
pub fn check_package_operation(
    config: &Config,
    package: &str,
    op: &str,
    parse_body: impl FnOnce() -> Result<PackageRequest, ApiError>,
) -> Result<PackageOperation, ApiError> {
    if !PACKAGE_OPS.contains(&op) {
        return Err(ApiError::not_found(format!(
            "unknown package operation \"{op}\"; expected run, halt, move, enable, disable or clear"
        )));
    }
    if config.package(package).is_none() {
        return Err(ApiError::not_found(unknown_package(config, package)));
    }
    let request = parse_body()?;
    if let Some(n) = &request.node
        && config.node(n).is_none()
    {
        return Err(ApiError::not_found(unknown_node(config, n)));
    }
    Ok(PackageOperation {
        package: PackageName::from(package),
        op: op.to_owned(),
        request,
    })
}

impl PackageOperation {
    /// The event the operation raises (on the leader).
    pub fn event(self) -> Result<Event, ApiError> {
        let package = self.package;
        let node = self.request.node.map(NodeName);
        Ok(match self.op.as_str() {
            "run" => Event::PackageRun { package, node },
            "halt" => Event::PackageHalt { package, node },
            "move" => Event::PackageMove { package, node },
            "enable" => Event::PackageEnable { package, node },
            "clear" => Event::PackageClear { package, node },
            _ => Event::PackageDisable { package, node },
        })
    }
}

/// The operations of `POST /v1/nodes/{node}/{op}`.
const NODE_OPS: [&str; 5] = ["start", "halt", "add", "remove", "fence"];

/// A node operation that names an existing operation and node (or the witness, for the
/// voter changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeOperation {
    /// `add` or `remove` a voter (takes no body).
    Voters { name: String, add: bool },
    /// `start` (cmrunnode) or `halt` (cmhaltnode) with its request body.
    Membership {
        name: NodeName,
        start: bool,
        request: NodeRequest,
        how: Departure,
    },
    /// `fence` (pcs stonith fence): the node's fencing levels, run by the leader.
    Fence {
        name: NodeName,
        action: FenceAction,
        request: NodeRequest,
    },
}

/// What any node checks of a node operation before it forwards it. `body_empty`: the
/// request had no body; `parse_body` parses it.
pub fn check_node_operation(
    config: &Config,
    name: &str,
    op: &str,
    body_empty: bool,
    parse_body: impl FnOnce() -> Result<NodeRequest, ApiError>,
) -> Result<NodeOperation, ApiError> {
    if !NODE_OPS.contains(&op) {
        return Err(ApiError::not_found(format!(
            "unknown node operation \"{op}\"; expected start, halt, add, remove or fence"
        )));
    }
    let voters = op == "add" || op == "remove";
    let is_witness = config.cluster.witness_named(name).is_some();
    if config.node(name).is_none() && !(is_witness && voters) {
        return Err(ApiError::not_found(format!(
            "{}; a voter must be in the applied configuration",
            unknown_node(config, name)
        )));
    }
    if voters {
        if !body_empty {
            return Err(ApiError::bad_request(format!(
                "bad request body: node {op} takes no body"
            )));
        }
        return Ok(NodeOperation::Voters {
            name: name.to_owned(),
            add: op == "add",
        });
    }
    let request = parse_body()?;
    if op == "fence" {
        return check_fence(config, name, request);
    }
    if request.action.is_some() {
        return Err(ApiError::bad_request(format!(
            "bad request body: {op} takes no `action`"
        )));
    }
    let how = match request.how.as_deref() {
        None | Some("graceful") => Departure::Graceful,
        Some("takeover") => Departure::GracefulTakeover,
        Some("force") => Departure::Forced,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "bad request body: how \"{other}\"; expected graceful, takeover or force"
            )));
        }
    };
    if op == "start" && request.how.is_some() {
        return Err(ApiError::bad_request(
            "bad request body: start takes no `how`",
        ));
    }
    Ok(NodeOperation::Membership {
        name: NodeName::from(name),
        start: op == "start",
        request,
        how,
    })
}

/// `fence`: the node has fencing configured, the action is `off` or `reboot`.
fn check_fence(
    config: &Config,
    name: &str,
    request: NodeRequest,
) -> Result<NodeOperation, ApiError> {
    if request.how.is_some() {
        return Err(ApiError::bad_request(
            "bad request body: fence takes no `how`",
        ));
    }
    let action = match request.action.as_deref() {
        None | Some("off") => FenceAction::Off,
        Some("reboot") => FenceAction::Reboot,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "bad request body: action \"{other}\"; expected off or reboot"
            )));
        }
    };
    if config.node(name).is_some_and(|n| n.fencing.is_none()) {
        return Err(ApiError::conflict(format!(
            "refused: {name} has no [node.fencing] in the running configuration; add a fence \
             agent to its [[node]] table and apply the configuration"
        )));
    }
    Ok(NodeOperation::Fence {
        name: NodeName::from(name),
        action,
        request,
    })
}

/// `node fence`: runs the node's fencing levels here (the leader), commits the outcome (a
/// `node_fence` record in the event log, the node's last fence in `status`) and answers it;
/// a fence no level confirmed is a conflict (exit 1), with every agent call. The fence runs
/// in a task of its own: a request that waits longer than [`EVENT_WAIT`] (agents with long
/// timeouts, several levels) is answered that it still runs, and its outcome is recorded
/// when it ends.
async fn fence_node(
    node: &Arc<Node>,
    config: &Config,
    name: &NodeName,
    action: FenceAction,
    by: &str,
) -> Result<Answer, ApiError> {
    let fencing = config
        .node(name.as_str())
        .and_then(|n| n.fencing.clone())
        .ok_or_else(|| ApiError::conflict(format!("refused: {name} has no [node.fencing]")))?;
    if *name == node.name {
        // Its own fence would end the daemon that runs the agents before it records them.
        return Err(ApiError::conflict(format!(
            "refused: {name} is the coordinator, which runs the fence agents; fence it from \
             another coordinator (halt it first: halcyon node halt {name})"
        )));
    }
    let incarnation = node
        .snapshot()
        .incarnations()
        .get(name)
        .copied()
        .unwrap_or(0);
    tracing::warn!(node = %node.name, target = %name, %action, by, "fencing on request");
    let fence = {
        let (node, name, by) = (Arc::clone(node), name.clone(), by.to_owned());
        tokio::spawn(async move {
            let report = node
                .platform
                .resources
                .fence(name.as_str(), &fencing, action)
                .await;
            let recorded = node
                .submit(&Command::FenceReport {
                    node: name,
                    incarnation,
                    report: report.clone(),
                    by,
                    at: node.timestamp(),
                })
                .await;
            (report, recorded)
        })
    };
    let Ok(ended) = tokio::time::timeout(EVENT_WAIT, fence).await else {
        return Err(ApiError::conflict(format!(
            "the fence of {name} still runs after {EVENT_WAIT:?}; its outcome will be a \
             node_fence record (halcyon events --node {name})"
        )));
    };
    let (report, recorded) =
        ended.map_err(|e| ApiError::unavailable(format!("the fence of {name} failed: {e}")))?;
    let text = std::iter::once(report.summary.clone())
        .chain(report.attempts.iter().map(|a| format!("  {a}")))
        .collect::<Vec<_>>()
        .join("\n");
    recorded
        .map_err(|e| ApiError::unavailable(format!("{text}\nthe outcome is not recorded: {e}")))?;
    if report.confirmed {
        Ok(Answer::note(text))
    } else {
        Err(ApiError::conflict(text))
    }
}

/// Carries out a checked node operation (on the leader).
pub async fn node_operation(
    node: &Arc<Node>,
    config: &Config,
    operation: NodeOperation,
    request: Option<&str>,
    by: &str,
) -> Result<Answer, ApiError> {
    if let Some(answer) = known_request(node, request).await {
        return answer;
    }
    match operation {
        NodeOperation::Voters { name, add } => voter_change(node, config, &name, add, by).await,
        NodeOperation::Membership {
            name, start: true, ..
        } => {
            // A node excluded for not completing its work joins again only as a new
            // incarnation: its old process may still be stuck in a start.
            if let Some(stuck) = node.snapshot().stuck().get(&name) {
                return Err(ApiError::conflict(format!(
                    "refused: {name} was excluded ({}); restart its daemon (systemctl restart halcyon): it joins again as a new incarnation",
                    stuck.why
                )));
            }
            // A node whose daemon does not run (or that is cut off) cannot join: allowed,
            // it was recorded as joining and then as failing (issue 16, item 9).
            let number = config.node(name.as_str()).map_or(0, |n| n.number);
            if !matches!(node.reachability().get(&number), Some(NodeState::Reachable)) {
                return Err(ApiError::conflict(format!(
                    "refused: {name} is not reachable from {}: its daemon is not running or \
                     its networks are cut; start its daemon (systemctl start halcyon), it \
                     joins by itself unless it was halted, then run this again",
                    node.name
                )));
            }
            node.submit(&Command::NodeStartAllowed {
                node: name.clone(),
                at: node.timestamp(),
            })
            .await
            .map_err(ApiError::unavailable)?;
            if node.snapshot().cluster().members.contains(&name) {
                return Ok(Answer::note(format!("{name} is already a member")));
            }
            submit_event(node, Event::NodeUp { node: name }, by, request).await
        }
        NodeOperation::Membership { name, how, .. } => {
            submit_event(node, Event::NodeDown { node: name, how }, by, request).await
        }
        NodeOperation::Fence { name, action, .. } => {
            fence_node(node, config, &name, action, by).await
        }
    }
}

/// The smallest voter set allowed: `quorum.min_voters`, by default a majority of the
/// configured voters (nodes and witness).
pub fn min_voters(config: &Config) -> usize {
    config.cluster.min_voters()
}

/// Why a voter change is refused before it is tried: `voters` is the current voter set,
/// `own`: the id of the node that would carry it out.
pub fn refuse_voter_change(
    config: &Config,
    voters: &BTreeSet<NodeId>,
    own: NodeId,
    name: &str,
    id: NodeId,
    add: bool,
    names: impl Fn(&BTreeSet<NodeId>) -> String,
) -> Option<String> {
    if add {
        if voters.contains(&id) {
            return Some(format!(
                "refused: {name} is already a voter (voters: {})",
                names(voters)
            ));
        }
        return None;
    }
    if !voters.contains(&id) {
        return Some(format!(
            "refused: {name} is not a voter (voters: {})",
            names(voters)
        ));
    }
    let minimum = min_voters(config);
    if voters.len() - 1 < minimum {
        return Some(format!(
            "refused: removing {name} would leave {} voter(s); the minimum is {minimum} (quorum.min_voters)",
            voters.len() - 1
        ));
    }
    if id == own {
        return Some(format!(
            "refused: {name} is the coordinator; remove it from another coordinator (halt it first)"
        ));
    }
    None
}

/// `node add|remove NAME`: changes the Raft voter set (on the leader). A removed voter is
/// kept as a learner: it still receives the log (plans, leases' state), it only stops
/// voting.
pub(crate) async fn voter_change(
    node: &Node,
    config: &Config,
    name: &str,
    add: bool,
    by: &str,
) -> Result<Answer, ApiError> {
    let number = config
        .node(name)
        .map(|n| n.number)
        .or_else(|| config.cluster.quorum.witness.as_ref().map(|w| w.number))
        .ok_or_else(|| ApiError::not_found(unknown_node(config, name)))?;
    let id = NodeId::from(number);
    let names = |set: &BTreeSet<NodeId>| {
        set.iter()
            .map(|id| node.node_name_of(*id))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let voters = node.consensus.voters();
    if let Some(why) = refuse_voter_change(
        config,
        &voters,
        node.consensus.node_id(),
        name,
        id,
        add,
        names,
    ) {
        return Err(ApiError::conflict(why));
    }
    let result = if add {
        let Some(addrs) = crate::peers::raft_members(config).get(&id).cloned() else {
            return Err(ApiError::conflict(format!(
                "refused: {name} has no consensus address in the configuration"
            )));
        };
        node.consensus
            .add_voter(id, addrs)
            .await
            .map_err(|e| e.to_string())
    } else {
        let change = node.consensus.raft().change_membership(
            openraft::ChangeMembers::RemoveVoters(BTreeSet::from([id])),
            true,
        );
        match tokio::time::timeout(VOTER_CHANGE_TIMEOUT, change).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {VOTER_CHANGE_TIMEOUT:?}")),
        }
    };
    result.map_err(|e| ApiError::unavailable(format!("voter change failed: {e}")))?;
    let after = node.consensus.voters();
    tracing::info!(node = %name, add, voters = %names(&after), by, "voter set changed");
    // In the event log with who asked. The change is made: a failure to record it is
    // reported, not undone.
    let recorded = node
        .submit(&Command::VoterChanged {
            node: NodeName::from(name),
            added: add,
            voters: after.iter().map(|id| node.node_name_of(*id)).collect(),
            by: by.to_owned(),
            at: node.timestamp(),
        })
        .await;
    if let Err(e) = recorded {
        tracing::warn!(node = %name, add, by, "the voter change is not in the event log: {e}");
    }
    Ok(Answer::done(OperationResponse::Voters(
        VoterChangeResponse {
            schema_version: SCHEMA_VERSION,
            note: format!(
                "{name} {}; voters: {}",
                if add {
                    "is a voter"
                } else {
                    "is no longer a voter"
                },
                names(&after)
            ),
            voters: after.iter().map(|id| node.node_name_of(*id)).collect(),
        },
    )))
}

/// What any node checks of `POST /v1/cluster/{op}` before it forwards it: `start` or
/// `halt`, without a body. Returns whether it is `start`.
pub fn check_cluster_operation(op: &str, body_empty: bool) -> Result<bool, ApiError> {
    if !["start", "halt"].contains(&op) {
        return Err(ApiError::not_found(format!(
            "unknown cluster operation \"{op}\"; expected start or halt"
        )));
    }
    if !body_empty {
        return Err(ApiError::bad_request(format!(
            "bad request body: cluster {op} takes no body"
        )));
    }
    Ok(op == "start")
}

/// `cluster start` (cmruncl) and `cluster halt` (cmhaltcl), on the leader.
pub async fn cluster_operation(
    node: &Node,
    start: bool,
    request: Option<&str>,
    by: &str,
) -> Result<Answer, ApiError> {
    if let Some(answer) = known_request(node, request).await {
        return answer;
    }
    let halted = node.snapshot().cluster_halted();
    if !start {
        if halted {
            return Err(ApiError::conflict(
                "refused: the cluster is already halted (`halcyon cluster start` starts it)",
            ));
        }
        return submit_event(node, Event::ClusterHalt, by, request).await;
    }
    if !halted {
        return submit_event(node, Event::ClusterStart, by, request).await;
    }
    node.submit(&Command::ClusterStartAllowed {
        by: Some(by.to_owned()),
        at: node.timestamp(),
    })
    .await
    .map_err(ApiError::unavailable)?;
    // The coordinator's `cluster_start` that follows is recorded as `by`'s.
    tracing::info!(by, "cluster start after a halt: nodes may join again");
    // The coordinator brings the reachable nodes back as members and forms the cluster
    // with one cluster_start; wait for that.
    let deadline = Instant::now() + EVENT_WAIT;
    loop {
        if let Some(answer) = cluster_started(node) {
            return Ok(answer);
        }
        if Instant::now() >= deadline {
            return Ok(Answer {
                response: OperationResponse::Note(NoteResponse {
                    schema_version: SCHEMA_VERSION,
                    note: "the cluster is starting; nodes are still joining (see `halcyon status`)"
                        .to_owned(),
                }),
                pending: true,
            });
        }
        sleep(WAIT_POLL).await;
    }
}

/// Once every reachable node that was not halted by an administrator is a member again and
/// nothing is pending: the cluster_start that formed it.
fn cluster_started(node: &Node) -> Option<Answer> {
    let state = node.snapshot();
    let reach = node.reachability();
    let config = node.config();
    let joined = config.cluster.nodes.iter().all(|n| {
        state.cluster().members.contains(&n.name)
            || state.halted_by_admin().contains(&n.name)
            || !matches!(reach.get(&n.number), Some(NodeState::Reachable))
    });
    if !joined
        || state.cluster().members.is_empty()
        || !state.pending().is_empty()
        || state.execution().is_some()
    {
        return None;
    }
    Some(
        match state
            .log()
            .iter()
            .rev()
            .find(|r| r.event == Event::ClusterStart)
        {
            Some(r) => Answer::done(OperationResponse::Done(Box::new(EventDoneResponse {
                schema_version: SCHEMA_VERSION,
                record: EventRecord::from(r),
            }))),
            None => Answer::note("the cluster has started"),
        },
    )
}

/// `POST /v1/events/{id}/{resume|retry|skip}`: the administrator's answer to the event in
/// ERROR (`id` may be `current`).
pub async fn answer_event(
    node: &Node,
    id: &str,
    answer: &str,
    by: &str,
) -> Result<Answer, ApiError> {
    let answer: halcyon_state::Answer = answer.parse().map_err(ApiError::not_found)?;
    let Some(current) = node.snapshot().execution().map(|e| e.id) else {
        return Err(ApiError::conflict("refused: no event is being processed"));
    };
    let execution = if id == "current" {
        current
    } else {
        id.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("event id \"{id}\" is not a number (or `current`)"))
        })?
    };
    let command = Command::EventControl {
        execution,
        answer,
        by: by.to_owned(),
        at: node.timestamp(),
    };
    match node.submit(&command).await {
        Ok(Reply::Ignored { why }) => Err(ApiError::conflict(format!("refused: {why}"))),
        Ok(_) => Ok(Answer::note(format!(
            "{answer}: event #{execution} continues"
        ))),
        Err(e) => Err(ApiError::unavailable(e)),
    }
}

/// `POST /v1/events/raise`: queues a user-defined event as a monitor would (for testing a
/// recovery program; HACMP: none, the event was raised by Event Management). Answers once
/// it is queued.
pub async fn raise_event(node: &Node, request: RaiseRequest, by: &str) -> Result<Answer, ApiError> {
    let state = node.snapshot();
    let config = applied_config(&state)?;
    if config.node(&request.node).is_none() {
        return Err(ApiError::not_found(unknown_node(config, &request.node)));
    }
    let Some(rule) = state.rules().rule(&request.name, None) else {
        let known: Vec<&str> = state
            .rules()
            .rules
            .iter()
            .filter(|r| !halcyon_events::builtin::is_builtin(&r.name))
            .map(|r| r.name.as_str())
            .collect();
        return Err(ApiError::not_found(format!(
            "no rule for the user-defined event \"{}\" (user-defined events: {})",
            request.name,
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )));
    };
    if halcyon_events::builtin::is_builtin(&rule.name) {
        return Err(ApiError::conflict(format!(
            "refused: {} is a built-in event; only user-defined events are raised",
            rule.name
        )));
    }
    let monitor = rule.monitor.as_ref();
    let sample = halcyon_events::Sample {
        resource_variable: monitor
            .map(|m| m.resource_variable.clone())
            .unwrap_or_default(),
        instance_vector: monitor
            .and_then(|m| m.instance_vector.clone())
            .unwrap_or_default(),
        values: request.values,
    };
    let command = Command::Enqueue {
        event: Event::UserDefined {
            name: request.name.clone(),
            node: NodeName::from(request.node.as_str()),
        },
        by: format!("{by} (raise)"),
        at: node.timestamp(),
        sample: Some(sample),
        request: None,
    };
    let (name, on) = (&request.name, &request.node);
    match node.submit(&command).await {
        Ok(Reply::Queued {
            sequence,
            duplicate,
        }) => Ok(Answer::done(OperationResponse::Queued(QueuedResponse {
            schema_version: SCHEMA_VERSION,
            queued: sequence,
            event: None,
            note: if duplicate {
                format!("{name} on {on} is already queued (#{sequence})")
            } else {
                format!(
                    "{name} on {on} queued (#{sequence}); `halcyon events --follow` shows it run"
                )
            },
        }))),
        Ok(other) => Err(ApiError::conflict(format!("refused: {other:?}"))),
        Err(e) => Err(ApiError::unavailable(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Config {
        let dir =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/cluster");
        halcyon_config::load(&[dir]).unwrap().0
    }

    fn no_body<T>() -> Result<T, ApiError> {
        panic!("the body is not read for this request")
    }

    #[test]
    fn cluster_operations_are_start_or_halt_without_a_body() {
        assert_eq!(check_cluster_operation("start", true), Ok(true));
        assert_eq!(check_cluster_operation("halt", true), Ok(false));
        assert_eq!(
            check_cluster_operation("restart", true),
            Err(ApiError::not_found(
                "unknown cluster operation \"restart\"; expected start or halt"
            ))
        );
        assert_eq!(
            check_cluster_operation("halt", false),
            Err(ApiError::bad_request(
                "bad request body: cluster halt takes no body"
            ))
        );
    }

    #[test]
    fn package_operations_name_what_exists() {
        let config = example();
        let e = check_package_operation(&config, "db", "jump", no_body).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(
            e.message,
            "unknown package operation \"jump\"; expected run, halt, move, enable, disable or clear"
        );
        let e = check_package_operation(&config, "nope", "run", no_body).unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (
                ErrorKind::NotFound,
                "unknown package \"nope\" (packages: batch, db, monitoring, nfs, web)"
            )
        );
        let to = |node: &str| {
            Ok(PackageRequest {
                node: Some(node.to_owned()),
            })
        };
        let e = check_package_operation(&config, "db", "move", || to("node9")).unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (
                ErrorKind::NotFound,
                "unknown node \"node9\" (nodes: node1, node2, node3, node4)"
            )
        );
        let halt = check_package_operation(&config, "db", "halt", || to("node2")).unwrap();
        assert_eq!(
            halt.event(),
            Ok(Event::PackageHalt {
                package: PackageName::from("db"),
                node: Some(NodeName::from("node2")),
            })
        );
        let moved = check_package_operation(&config, "db", "move", || to("node2")).unwrap();
        assert_eq!(
            moved.event(),
            Ok(Event::PackageMove {
                package: PackageName::from("db"),
                node: Some(NodeName::from("node2")),
            })
        );
    }

    #[test]
    fn node_operations_check_names_bodies_and_how() {
        let config = example();
        let e = check_node_operation(&config, "node9", "add", true, no_body).unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (
                ErrorKind::NotFound,
                "unknown node \"node9\" (nodes: node1, node2, node3, node4); a voter must be in the applied configuration"
            )
        );
        let e = check_node_operation(&config, "node1", "reboot", true, no_body).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        let e = check_node_operation(&config, "node1", "add", false, no_body).unwrap_err();
        assert_eq!(
            e,
            ApiError::bad_request("bad request body: node add takes no body")
        );
        assert_eq!(
            check_node_operation(&config, "node1", "remove", true, no_body),
            Ok(NodeOperation::Voters {
                name: "node1".into(),
                add: false
            })
        );
        let how = |h: &str| {
            let h = h.to_owned();
            move || {
                Ok(NodeRequest {
                    how: Some(h),
                    action: None,
                })
            }
        };
        let e = check_node_operation(&config, "node1", "halt", false, how("gently")).unwrap_err();
        assert_eq!(
            e.message,
            "bad request body: how \"gently\"; expected graceful, takeover or force"
        );
        let e = check_node_operation(&config, "node1", "start", false, how("force")).unwrap_err();
        assert_eq!(e.message, "bad request body: start takes no `how`");
        match check_node_operation(&config, "node2", "halt", false, how("takeover")) {
            Ok(NodeOperation::Membership {
                name, start, how, ..
            }) => {
                assert_eq!(name.as_str(), "node2");
                assert!(!start);
                assert_eq!(how, Departure::GracefulTakeover);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn voter_changes_are_refused_precisely() {
        let config = example();
        // Four voters configured: at least a majority, 3, must stay.
        assert_eq!(min_voters(&config), 3);
        let names = |set: &BTreeSet<NodeId>| {
            set.iter()
                .map(|id| format!("n{id}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let four = BTreeSet::from([1, 2, 3, 4]);
        let three = BTreeSet::from([1, 2, 3]);
        let refuse = |voters: &BTreeSet<NodeId>, name: &str, id: NodeId, add: bool| {
            refuse_voter_change(&config, voters, 1, name, id, add, names)
        };
        assert_eq!(
            refuse(&three, "n2", 2, true).as_deref(),
            Some("refused: n2 is already a voter (voters: n1, n2, n3)")
        );
        assert_eq!(refuse(&three, "n4", 4, true), None);
        assert_eq!(
            refuse(&three, "n4", 4, false).as_deref(),
            Some("refused: n4 is not a voter (voters: n1, n2, n3)")
        );
        assert_eq!(
            refuse(&three, "n3", 3, false).as_deref(),
            Some(
                "refused: removing n3 would leave 2 voter(s); the minimum is 3 (quorum.min_voters)"
            )
        );
        assert_eq!(
            refuse(&four, "n1", 1, false).as_deref(),
            Some(
                "refused: n1 is the coordinator; remove it from another coordinator (halt it first)"
            )
        );
        assert_eq!(refuse(&four, "n3", 3, false), None);
    }
}

/// What the leader answers a node that asked to be forgotten.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ForgetAnswer {
    pub note: String,
}

/// `POST /v1/internal/forget` on the leader, asked by member `name` itself (a node or the
/// quorum witness), which started with a new Raft store (`node::admission`): takes it out of
/// the membership entirely (the leader drops what it knew of its log) and records it as
/// taken out by the cluster (`State::shrunk`), so the coordinator adds it again as a learner
/// that catches up from nothing and then votes (the witness: once it answers at its API,
/// `coordinator::decide::join_added_witness`). Idempotent: a member no longer in the
/// membership is only recorded.
pub(crate) async fn forget(node: &Node, name: &str) -> Result<ForgetAnswer, ApiError> {
    let config = node.config();
    let number = config
        .node(name)
        .map(|n| n.number)
        .or(config.cluster.witness_named(name).map(|w| w.number))
        .ok_or_else(|| ApiError::not_found(unknown_node(&config, name)))?;
    let id = NodeId::from(number);
    if !node.consensus.leadership_confirmed() {
        return Err(ApiError::new(
            ErrorKind::Misdirected,
            format!("not leader: ask the coordinator to forget {name}"),
        ));
    }
    if id == node.consensus.node_id() {
        return Err(ApiError::conflict(format!(
            "refused: {name} leads; a leader is never forgotten"
        )));
    }
    let voters = node.consensus.voters();
    let learners = node.consensus.learners();
    if learners.contains(&id) {
        return Err(ApiError::conflict(format!(
            "refused: {name} is a learner (taken out of the voters with `halcyon node remove`): \
             rebuilding a node that does not vote is not supported"
        )));
    }
    let mut note = format!("{name} was not a member");
    if voters.contains(&id) {
        let minimum = min_voters(&config);
        if voters.len() - 1 < minimum {
            return Err(ApiError::conflict(format!(
                "refused: taking {name} out would leave {} voter(s); the minimum is {minimum} \
                 (quorum.min_voters)",
                voters.len() - 1
            )));
        }
        node.consensus
            .remove_voter(id)
            .await
            .map_err(|e| ApiError::unavailable(format!("forgetting {name}: {e}")))?;
        note = format!("{name} is out of the membership");
        tracing::warn!(node = %name, "a member with a new store was forgotten: it is added again once it has copied the log");
    }
    if !node.snapshot().shrunk().contains(name) {
        let command = Command::AutoShrink {
            node: NodeName::from(name),
            voter: false,
            at: node.timestamp(),
        };
        node.submit(&command)
            .await
            .map_err(|e| ApiError::unavailable(format!("recording {name} as taken out: {e}")))?;
    }
    Ok(ForgetAnswer {
        note: format!("{note}; it is added again once it has copied the log"),
    })
}
