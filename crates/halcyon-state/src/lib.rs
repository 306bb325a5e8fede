//! Halcyon's replicated state machine: everything the cluster agrees on.
//!
//! The state holds the applied configuration, the policy engine's [`ClusterState`], each node's
//! daemon incarnation, service restart counters, the queue of pending events, the plan being
//! executed (with the actions done so far) and a bounded event log. It changes only through
//! [`Command`]s committed in the Raft log ([`State::apply`]).
//!
//! Invariants:
//! - `apply` is deterministic: time comes inside the command (`at`), never from a clock; no I/O,
//!   no randomness, no async;
//! - at most one plan executes at a time (events are processed one at a time, cluster-wide);
//! - a step's actions all report done before the next step is current (the barrier), and when
//!   the last step is done the plan's resulting state becomes the cluster state;
//! - a [`Command::Batch`] changes the state exactly as its commands applied one entry each
//!   would (but for the applied index), each answered on its own; a batch beyond its bounds
//!   ([`BATCH_COMMANDS_MAX`], [`BATCH_BYTES_MAX`], no batch inside) changes nothing;
//! - every queue and log is bounded ([`PENDING_MAX`], [`LOG_MAX`]);
//! - a failover package is never placed on two nodes: asserted when a plan is committed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use halcyon_config::{Config, NetworkName, NodeName, PackageName};
use halcyon_events::{Builtin, EventState, LaunchKind, Rules, Sample};
use halcyon_policy::{ActionKind, ClusterState, Event, Plan};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

mod event_log;
mod execution;

pub use event_log::EventLog;
pub use execution::{Emulation, Execution, LaunchReport, emulate};

/// Most events waiting to be processed; beyond this new events are refused.
pub const PENDING_MAX: usize = 1024;
/// Request ids remembered (the latest ones): a client that lost the answer to an operation
/// (its leader died mid-request) asks again with the same id and learns the outcome of the
/// event it already enqueued instead of enqueuing it twice.
pub const REQUESTS_MAX: usize = 1024;
/// Longest request id accepted.
pub const REQUEST_ID_MAX: usize = 64;
/// Most events kept in the event log (the oldest are dropped).
pub const LOG_MAX: usize = 256;
/// How long the coordinator waits before it fences a node again after a fence that was
/// not confirmed (`event retry` asks at once).
pub const FENCE_RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
/// Most characters of an action's detail (command output, error) kept in the log.
pub const DETAIL_MAX: usize = 2048;
/// Most commands in one [`Command::Batch`]. Part of what the log means: a batch beyond it
/// is refused whole when applied, so raising it needs every replica to know the new bound.
pub const BATCH_COMMANDS_MAX: usize = 256;
/// Largest [`Command::Batch`] as encoded in its Raft entry (bytes), refused whole beyond it
/// (by [`Replicated`], which sees the entry). Far below `halcyon_consensus::MAX_COMMAND_BYTES`:
/// one append carries up to `halcyon_consensus::MAX_PAYLOAD_ENTRIES` entries.
pub const BATCH_BYTES_MAX: usize = 1024 * 1024;

/// A change to the replicated state. Encoded as JSON in the Raft log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// The first configuration of a new cluster, with its event rules. Ignored once a
    /// configuration is applied.
    Bootstrap {
        config: Box<Config>,
        #[serde(default)]
        rules: Rules,
        /// The files it was read from (`halcyon snapshot save` writes them back).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sources: Vec<SourceFile>,
        at: Timestamp,
    },
    /// `halcyon apply`: stages `config` (with its rules) as the next generation and enqueues
    /// the `config_change` event that switches to it. Refused while another is staged (the
    /// cluster-wide reconfiguration lock, held until that event ends).
    ConfigApply {
        config: Box<Config>,
        #[serde(default)]
        rules: Rules,
        /// The files it was read from.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sources: Vec<SourceFile>,
        by: String,
        at: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<String>,
    },
    /// A node's daemon started with this incarnation (must increase at every start).
    /// `clean_stop`: the last clean stop the node's state directory remembers. A
    /// registration above a known incarnation records a `node_restart` in the event log,
    /// saying whether the known incarnation ended by that clean stop.
    Register {
        node: NodeName,
        incarnation: u64,
        at: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clean_stop: Option<CleanStop>,
    },
    /// An event to process (from membership, a failed service, a monitor, or a request
    /// by `by`). A monitor's event carries the sample that fired it.
    Enqueue {
        event: Event,
        by: String,
        at: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sample: Option<Sample>,
        /// The client's id for this request (`?request=` of an operation): enqueued once
        /// per id (see [`REQUESTS_MAX`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<String>,
    },
    /// The coordinator's plan for the pending event `sequence`: it becomes the execution.
    PlanCommitted {
        sequence: u64,
        plan: Box<Plan>,
        at: Timestamp,
    },
    /// The policy engine refused the pending event `sequence`: it is dropped and logged.
    EventRefused {
        sequence: u64,
        error: String,
        at: Timestamp,
    },
    /// An action of the current execution finished (on its node, or on the coordinator for
    /// `AwaitRelease` and for a node whose lease has certainly expired).
    ActionDone {
        execution: u64,
        step: usize,
        index: usize,
        ok: bool,
        detail: String,
        at: Timestamp,
    },
    /// A command of the current execution's program (or its recovery or notify command)
    /// ended; `node` is `None` for a notify command (run by the coordinator).
    LaunchDone {
        execution: u64,
        launch: u64,
        node: Option<NodeName>,
        report: LaunchReport,
        at: Timestamp,
    },
    /// `node` failed or was cut off from the quorum (its lease has certainly expired)
    /// while it had commands of the current execution to run: they are abandoned.
    NodeLost {
        execution: u64,
        node: NodeName,
        why: String,
        at: Timestamp,
    },
    /// `node` did not complete its work of the current execution (an action, or a command)
    /// within the bound the coordinator allows it (`why` says which, and the bound): it is
    /// excluded like a failed node. No lease is granted to it any more (so its work is taken
    /// over only once its lease has certainly expired, as for a failed node), `node_down`
    /// of it is queued, and it does not join again until its daemon restarts (a new
    /// incarnation: nothing of the old process, which may still be stuck in a start, is
    /// left). Kept in [`State::stuck`].
    NodeStuck {
        execution: u64,
        node: NodeName,
        why: String,
        at: Timestamp,
    },
    /// The administrator's answer to an execution in ERROR.
    EventControl {
        execution: u64,
        answer: Answer,
        by: String,
        at: Timestamp,
    },
    /// The current execution has run longer than its maximum duration.
    EventTooLong { execution: u64, at: Timestamp },
    /// A supervised service exited unexpectedly (or a monitored resource failed) on
    /// `node`: count one restart. `service` is the resource's restart key
    /// (`halcyon_config::Resource::restart_key`); `detail` why, with the end of its output.
    RestartCounted {
        package: PackageName,
        node: NodeName,
        service: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
        at: Timestamp,
    },
    /// A node halted by an administrator may join again (`node start`).
    NodeStartAllowed { node: NodeName, at: Timestamp },
    /// `reporter`'s standby interfaces that are down, by network (its own links' state).
    /// Replaces its previous report.
    StandbyReport {
        reporter: NodeName,
        down: BTreeSet<NetworkName>,
        at: Timestamp,
    },
    /// `cluster start` after `cluster halt`: nodes may join again. `by`: who asked; the
    /// `cluster_start` the coordinator enqueues when the nodes have joined is recorded as
    /// theirs (see [`State::cluster_start_by`]).
    ClusterStartAllowed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        at: Timestamp,
    },
    /// `reporter`'s failure detector judges these adapters down: (peer, network) paths that
    /// are down while the peer is heard on another network. Replaces its previous report.
    AdapterReport {
        reporter: NodeName,
        down: BTreeSet<(NodeName, NetworkName)>,
        at: Timestamp,
    },
    /// `node` (known as `incarnation`) was fenced by `by`: the coordinator before a
    /// takeover from it, or an administrator. Recorded in the event log as a finished
    /// `node_fence` (one note per agent call) and kept as the node's last fence; a confirmed
    /// fence of the incarnation an open `AwaitRelease` waits for lets it complete.
    FenceReport {
        node: NodeName,
        incarnation: u64,
        report: FenceReport,
        by: String,
        at: Timestamp,
    },
    /// `quorum.auto_shrink`: the coordinator takes `node` out of the voters (`voter:
    /// false`, committed before the membership change) or makes it a voter again (`voter:
    /// true`, committed once the change is done). Kept in [`State::shrunk`].
    AutoShrink {
        node: NodeName,
        voter: bool,
        at: Timestamp,
    },
    /// `node`, which a `config_change` added to the configuration, has become a Raft
    /// voter (committed by the coordinator once the membership change is done). Taken out of
    /// [`State::joining`].
    NodeJoined { node: NodeName, at: Timestamp },
    /// Every lease granted before the lease was last shortened (its `change`th shortening,
    /// by a `config_change` or a [`Command::RaftReport`]) has ended (committed by the
    /// coordinator once it has certainly, see [`State::unsettled_lease`]): a new
    /// coordinator waits the running lease from then on.
    LeaseSettled {
        #[serde(alias = "generation")]
        change: u64,
        at: Timestamp,
    },
    /// The heartbeat interval `reporter`'s Raft timings are derived from: those its daemon
    /// started with (the replicated configuration it held then, else its files), kept until
    /// it restarts (openraft's timings are fixed when it starts). `generation`: the
    /// configuration generation its replica held when it judged. See
    /// [`State::raft_intervals`].
    RaftReport {
        reporter: NodeName,
        interval: Duration,
        generation: u64,
        at: Timestamp,
    },
    /// The consensus voters changed (committed by the leader once the change is done):
    /// `node` became a voter (`added`) or stopped voting, asked `by` an administrator (`node
    /// add|remove`) or the coordinator (`auto-shrink`); `voters` after the change. Recorded
    /// in the event log as a finished `voter_change`.
    VoterChanged {
        node: NodeName,
        added: bool,
        voters: Vec<String>,
        by: String,
        at: Timestamp,
    },
    /// Commands a node's writer had waiting together, committed as one entry and applied in
    /// order exactly as if each were an entry of its own (each gets its own reply, in
    /// [`Reply::Batch`]; a refused one changes nothing and does not affect the others). At
    /// most [`BATCH_COMMANDS_MAX`] commands and [`BATCH_BYTES_MAX`] bytes, none of them a
    /// batch: otherwise the whole batch is refused and nothing of it is applied.
    Batch { commands: Vec<Command> },
}

/// How a fence of a node went, as the replicated state keeps it (the agents' calls are
/// rendered lines: the runner's own types stay in `halcyon-resources`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceReport {
    /// `off`, `reboot` or `on`.
    pub action: String,
    /// A fencing level succeeded (for `off`, confirmed by `status` where the agent has it).
    pub confirmed: bool,
    /// One line an administrator reads.
    pub summary: String,
    /// One line per agent call: level, device, agent, action, exit, took, the end of its
    /// output (passwords masked).
    pub attempts: Vec<String>,
}

/// A node's last fence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    /// The node's incarnation when it was fenced: the fence stands for that one only.
    pub incarnation: u64,
    pub report: FenceReport,
    pub by: String,
    pub at: Timestamp,
    /// Unconfirmed fences of this incarnation in a row (0 once one is confirmed).
    pub failures: u32,
    /// An administrator asked for another attempt now (`event retry`).
    #[serde(default)]
    pub retry_requested: bool,
}

/// A node excluded because it did not complete its work within its bound (see
/// [`Command::NodeStuck`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stuck {
    /// The incarnation that did not complete it: a new one (a restarted daemon) may join.
    pub incarnation: u64,
    /// The execution whose work it did not complete.
    pub execution: u64,
    pub why: String,
    pub at: Timestamp,
}

/// A daemon's clean stop, as its state directory remembers it for the next start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanStop {
    /// The incarnation that stopped.
    pub incarnation: u64,
    pub at: Timestamp,
}

/// What the administrator answers to an event in ERROR (`halcyon event ...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// Continue after the barrier as if the failed commands had succeeded.
    Resume,
    /// Run the failed commands again.
    Retry,
    /// Abandon the rest of the program (the plan's actions are still carried out).
    Skip,
}

impl std::str::FromStr for Answer {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "resume" => Ok(Answer::Resume),
            "retry" => Ok(Answer::Retry),
            "skip" => Ok(Answer::Skip),
            other => Err(format!(
                "unknown answer \"{other}\"; expected resume, retry or skip"
            )),
        }
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Answer::Resume => "resume",
            Answer::Retry => "retry",
            Answer::Skip => "skip",
        })
    }
}

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a command always serialises")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    /// Why `commands` cannot be one [`Command::Batch`] (`None`: they can, size aside). The
    /// writer asserts it of every batch it sends; applying a batch checks it again.
    pub fn batch_error(commands: &[Command]) -> Option<String> {
        if commands.is_empty() {
            return Some("an empty batch".to_owned());
        }
        if commands.len() > BATCH_COMMANDS_MAX {
            return Some(format!(
                "a batch of {} commands (at most {BATCH_COMMANDS_MAX})",
                commands.len()
            ));
        }
        commands
            .iter()
            .position(|c| matches!(c, Command::Batch { .. }))
            .map(|i| format!("command {} of the batch is a batch itself", i + 1))
    }
}

/// What applying a command answered (to the writer, on the leader).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Done,
    /// Bootstrap: whether this command applied the configuration.
    Bootstrapped {
        fresh: bool,
    },
    /// Enqueue: the event's sequence number (an identical pending event's, if any).
    Queued {
        sequence: u64,
        duplicate: bool,
    },
    /// PlanCommitted: the execution's id.
    Executing {
        execution: u64,
    },
    /// RestartCounted: restarts counted for this service on this node (within its window).
    Restarts {
        count: u32,
    },
    /// The command changed nothing, and why.
    Ignored {
        why: String,
    },
    /// Batch: the reply of each of its commands, in order.
    Batch {
        replies: Vec<Reply>,
    },
}

impl Reply {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a reply always serialises")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Running,
    Done,
    /// Done, but some actions or commands failed (listed in the record).
    DoneWithFailures,
    /// The administrator skipped the rest of its program after an ERROR.
    Skipped,
    Refused,
}

/// The outcome of one action, as the event log keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub step: usize,
    pub index: usize,
    pub kind: ActionKind,
    pub package: Option<PackageName>,
    pub node: NodeName,
    pub ok: bool,
    pub detail: String,
    pub at: Timestamp,
}

/// One event of the event log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub id: u64,
    /// The pending event's sequence number it came from.
    pub sequence: u64,
    pub event: Event,
    pub by: String,
    pub queued_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub outcome: Outcome,
    /// The plan as an administrator reads it (`halcyon_policy::render`).
    pub plan_text: Option<String>,
    pub plan: Option<Plan>,
    pub error: Option<String>,
    pub actions: Vec<ActionRecord>,
    /// The recovery program as run: segments, commands per node, barriers.
    #[serde(default)]
    pub program_text: Option<String>,
    /// Every command launched, in launch order.
    #[serde(default)]
    pub launches: Vec<LaunchRecord>,
    /// ERROR entries, administrator answers, duration warnings, abandoned nodes.
    #[serde(default)]
    pub notes: Vec<NoteRecord>,
}

/// One command of an event's program (or its recovery or notify command), as the event
/// log keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchRecord {
    pub launch: u64,
    /// `None`: the coordinator (notify).
    pub node: Option<NodeName>,
    pub command: String,
    pub kind: LaunchKind,
    /// When it was handed out (committed).
    pub assigned_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub status: Option<i32>,
    /// The end of its output (at most [`DETAIL_MAX`] bytes).
    pub output: String,
    /// Why it did not run or finish (abandoned).
    #[serde(default)]
    pub abandoned: Option<String>,
}

/// Something worth telling about an event while it ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteRecord {
    pub at: Timestamp,
    pub text: String,
}

/// A pending event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub sequence: u64,
    pub event: Event,
    pub by: String,
    pub at: Timestamp,
    /// A monitor's sample (user-defined events).
    #[serde(default)]
    pub sample: Option<Sample>,
}

/// Who queued a `package_failed` at the end of an execution for each of its runs that
/// failed (`Pending::by`): the node's own report, or the coordinator's for a node that
/// failed before it reported (the coordinator refuses those once the node is unreachable:
/// `halcyon-daemon`'s `decide::next_event`).
pub const FAILED_TO_START: &str = "failed to start";

/// One service's restart counter on one node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartCounter {
    pub count: u32,
    pub last: Option<Timestamp>,
    /// Why it last exited or failed, with the end of its output.
    #[serde(default)]
    pub last_exit: Option<String>,
}

/// The whole replicated state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The last applied log index.
    applied_index: u64,
    /// Shared: the loops that poll the state copy it often, and a configuration of a
    /// thousand packages is large.
    config: Option<Arc<Config>>,
    /// The event rules (recovery programs and customisation), with the configuration.
    #[serde(default)]
    rules: Rules,
    cluster: ClusterState,
    /// Each node's daemon incarnation, as last registered.
    incarnations: BTreeMap<NodeName, u64>,
    /// Nodes declared down by a committed `node_down` (no lease is granted to them until a
    /// `node_up` is committed).
    departed: BTreeSet<NodeName>,
    /// Nodes halted by an administrator: membership does not bring them back by itself.
    halted_by_admin: BTreeSet<NodeName>,
    /// The cluster was halted (`cluster halt`): no node joins until `cluster start`.
    #[serde(default)]
    cluster_halted: bool,
    /// Who asked the `cluster start` after a halt, until its `cluster_start` is enqueued.
    #[serde(default)]
    cluster_start_by: Option<String>,
    /// Each node's latest adapter report (see [`Command::AdapterReport`]).
    #[serde(default)]
    adapter_reports: BTreeMap<NodeName, BTreeSet<(NodeName, NetworkName)>>,
    /// Adapters committed as down (a `network_down` or `swap_adapter` plan was committed),
    /// until a `network_up` (or the node's next `node_up` / `node_down`).
    #[serde(default)]
    adapters_down: BTreeSet<(NodeName, NetworkName)>,
    /// Each node's latest standby report (see [`Command::StandbyReport`]).
    #[serde(default)]
    standby_reports: BTreeMap<NodeName, BTreeSet<NetworkName>>,
    /// Standby interfaces committed as failed (a `fail_standby` plan was committed),
    /// until a `join_standby` (or the node's next `node_up` / `node_down`).
    #[serde(default)]
    standbys_down: BTreeSet<(NodeName, NetworkName)>,
    /// package -> node -> service -> counter.
    restarts: BTreeMap<PackageName, BTreeMap<NodeName, BTreeMap<String, RestartCounter>>>,
    pending: Vec<Pending>,
    next_sequence: u64,
    execution: Option<Execution>,
    /// Shared with every copy of the state (see [`EventLog`]).
    log: EventLog,
    next_record: u64,
    /// The latest request ids with the sequence of the event each enqueued, oldest first
    /// (at most [`REQUESTS_MAX`]).
    #[serde(default)]
    requests: std::collections::VecDeque<(String, u64)>,
    /// When the policy engine wants to be asked again with no other event (the delayed
    /// fallback timer, a failure's expiry): the `wake_at` of the last committed plan, if
    /// still to come when it was committed. The coordinator raises `timer` then.
    #[serde(default)]
    wake_at: Option<Timestamp>,
    /// The running configuration's generation: 1 from the bootstrap, one more at each
    /// applied `config_change` (0 in a state written before generations existed).
    #[serde(default)]
    generation: u64,
    /// The configuration `halcyon apply` staged, until its `config_change` event ends: the
    /// cluster-wide reconfiguration lock.
    #[serde(default)]
    staged: Option<Staged>,
    /// Each node's last fence (see [`Command::FenceReport`]).
    #[serde(default)]
    fences: BTreeMap<NodeName, Fence>,
    /// Networks whose addresses a node carries on a standby interface since a committed
    /// `swap_adapter` (its primary interface failed), until a swap back, a `network_down`, or
    /// the node's next `node_up` / `node_down`.
    #[serde(default)]
    swapped: BTreeSet<(NodeName, NetworkName)>,
    /// When each departed node's `node_down` was committed (`quorum.auto_shrink` waits
    /// `shrink_after` from it).
    #[serde(default)]
    departed_at: BTreeMap<NodeName, Timestamp>,
    /// Nodes the coordinator took out of the voters by itself (`quorum.auto_shrink`): they
    /// are made voters again when they rejoin; a voter an administrator removed is not.
    #[serde(default)]
    shrunk: BTreeSet<NodeName>,
    /// Nodes a `config_change` added to the configuration that are not Raft voters yet: the
    /// coordinator adds each once its heartbeats are heard ([`Command::NodeJoined`] ends it).
    #[serde(default)]
    joining: BTreeSet<NodeName>,
    /// The files of the running configuration (empty for a cluster formed before they were
    /// kept): shared, like the configuration.
    #[serde(default)]
    sources: Arc<Vec<SourceFile>>,
    /// Nodes excluded because they did not complete their work within its bound (see
    /// [`Command::NodeStuck`]): no lease is granted to them, and membership does not bring
    /// them back, until they register a new incarnation.
    #[serde(default)]
    stuck: BTreeMap<NodeName, Stuck>,
    /// A lease longer than the running configuration's that a node may still hold: set
    /// when a `config_change` shortens the lease (the longest lease granted before it), until
    /// [`Command::LeaseSettled`]. See [`State::longest_lease`].
    #[serde(default)]
    unsettled_lease: Option<Duration>,
    /// How many times the lease was shortened (see [`Command::LeaseSettled`]).
    #[serde(default)]
    lease_change: u64,
    /// The heartbeat intervals each node's Raft timings may be derived from (see
    /// [`RaftIntervals`]); a node without an entry runs the running configuration's.
    #[serde(default)]
    raft_intervals: BTreeMap<NodeName, RaftIntervals>,
}

/// The heartbeat intervals a node's Raft timings may be derived from: openraft's election
/// timeouts are fixed when a daemon starts, from the replicated configuration it holds (else
/// its files), so after `halcyon apply` changed the interval a node keeps the timings it
/// started with until it restarts. A node's range is reset by its [`Command::RaftReport`]
/// (what it runs, and the running configuration's, which it takes if it restarts) and
/// widened by every configuration switch (a node may restart into the new one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftIntervals {
    /// What the node last reported its Raft runs with (`None`: not reported).
    pub reported: Option<Duration>,
    pub shortest: Duration,
    pub longest: Duration,
}

impl RaftIntervals {
    /// Only `interval`.
    pub fn only(interval: Duration) -> Self {
        RaftIntervals {
            reported: None,
            shortest: interval,
            longest: interval,
        }
    }

    /// This range and `interval`.
    pub fn with(self, interval: Duration) -> Self {
        RaftIntervals {
            shortest: self.shortest.min(interval),
            longest: self.longest.max(interval),
            ..self
        }
    }
}

/// One file of a configuration directory as text: `name` relative to the directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// A configuration staged by `halcyon apply` (see [`Command::ConfigApply`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Staged {
    pub config: Arc<Config>,
    pub rules: Rules,
    #[serde(default)]
    pub sources: Arc<Vec<SourceFile>>,
    pub generation: u64,
    /// Who asked, and when.
    pub by: String,
    pub since: Timestamp,
    /// The `config_change` event's sequence.
    pub sequence: u64,
}

impl State {
    pub fn new() -> Self {
        Self::default()
    }

    /// The last applied log index.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The running configuration (none before the bootstrap is applied).
    pub fn config(&self) -> Option<&Arc<Config>> {
        self.config.as_ref()
    }

    /// The event rules that came with the running configuration.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The policy engine's view of the cluster.
    pub fn cluster(&self) -> &ClusterState {
        &self.cluster
    }

    /// Each node's daemon incarnation, as last registered.
    pub fn incarnations(&self) -> &BTreeMap<NodeName, u64> {
        &self.incarnations
    }

    /// Nodes declared down by a committed `node_down`.
    /// Networks whose addresses a node carries on a standby interface.
    pub fn swapped(&self) -> &BTreeSet<(NodeName, NetworkName)> {
        &self.swapped
    }

    /// When each departed node's `node_down` was committed.
    pub fn departed_at(&self) -> &BTreeMap<NodeName, Timestamp> {
        &self.departed_at
    }

    /// The nodes auto-shrink took out of the voters.
    pub fn shrunk(&self) -> &BTreeSet<NodeName> {
        &self.shrunk
    }

    /// The nodes a `config_change` added that are not voters yet.
    pub fn joining(&self) -> &BTreeSet<NodeName> {
        &self.joining
    }

    /// Nodes excluded because they did not complete their work within its bound.
    pub fn stuck(&self) -> &BTreeMap<NodeName, Stuck> {
        &self.stuck
    }

    /// Each node's last fence.
    pub fn fences(&self) -> &BTreeMap<NodeName, Fence> {
        &self.fences
    }

    /// The fence of `node` that stands for its current incarnation, if any.
    pub fn current_fence(&self, node: &str) -> Option<&Fence> {
        let known = self.incarnations.get(node).copied().unwrap_or(0);
        self.fences.get(node).filter(|f| f.incarnation == known)
    }

    /// True when a fencing level confirmed that `node`, as the cluster knows it now, is off.
    pub fn fence_confirmed(&self, node: &str) -> bool {
        self.current_fence(node).is_some_and(|f| f.report.confirmed)
    }

    pub fn departed(&self) -> &BTreeSet<NodeName> {
        &self.departed
    }

    /// Nodes halted by an administrator.
    pub fn halted_by_admin(&self) -> &BTreeSet<NodeName> {
        &self.halted_by_admin
    }

    /// Whether the cluster was halted (`cluster halt`) and not started since.
    pub fn cluster_halted(&self) -> bool {
        self.cluster_halted
    }

    /// Who asked the `cluster start` after a halt whose `cluster_start` is not enqueued yet:
    /// the coordinator enqueues it as theirs.
    pub fn cluster_start_by(&self) -> Option<&str> {
        self.cluster_start_by.as_deref()
    }

    /// Each node's latest adapter report.
    pub fn adapter_reports(&self) -> &BTreeMap<NodeName, BTreeSet<(NodeName, NetworkName)>> {
        &self.adapter_reports
    }

    /// Adapters committed as down.
    pub fn adapters_down(&self) -> &BTreeSet<(NodeName, NetworkName)> {
        &self.adapters_down
    }

    /// Each node's latest standby report.
    pub fn standby_reports(&self) -> &BTreeMap<NodeName, BTreeSet<NetworkName>> {
        &self.standby_reports
    }

    /// Standby interfaces committed as failed.
    pub fn standbys_down(&self) -> &BTreeSet<(NodeName, NetworkName)> {
        &self.standbys_down
    }

    /// package -> node -> service -> restart counter.
    pub fn restarts(
        &self,
    ) -> &BTreeMap<PackageName, BTreeMap<NodeName, BTreeMap<String, RestartCounter>>> {
        &self.restarts
    }

    /// The events waiting to be processed, in the order they were enqueued.
    pub fn pending(&self) -> &[Pending] {
        &self.pending
    }

    /// The sequence number the next enqueued event gets.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// The event being processed, if any.
    pub fn execution(&self) -> Option<&Execution> {
        self.execution.as_ref()
    }

    /// The event log (shared by every copy of the state).
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// The id the next event record gets.
    pub fn next_record(&self) -> u64 {
        self.next_record
    }

    /// The latest request ids with the sequence of the event each enqueued, oldest first.
    pub fn requests(&self) -> &std::collections::VecDeque<(String, u64)> {
        &self.requests
    }

    /// When the policy engine wants to be asked again with no other event.
    pub fn wake_at(&self) -> Option<Timestamp> {
        self.wake_at
    }

    /// The running configuration's generation (0 before the bootstrap).
    pub fn generation(&self) -> u64 {
        match self.config {
            Some(_) => self.generation.max(1),
            None => 0,
        }
    }

    /// The lease a node holds now (`None` before the bootstrap): the running
    /// configuration's, derived (when not configured) for the slowest elections the voters'
    /// Raft timings may run ([`State::raft_intervals`], `Cluster::lease_with_raft`).
    pub fn lease(&self) -> Option<Duration> {
        let config = self.config.as_ref()?;
        let (_, longest) = self.raft_intervals()?;
        Some(config.cluster.lease_with_raft(longest))
    }

    /// The longest lease a node may hold now: [`State::lease`], or a longer one held before
    /// the lease was shortened, until those have certainly ended. A coordinator waits this
    /// long for a lease to end (never less); a node holds [`State::lease`] (`None` before
    /// the bootstrap).
    pub fn longest_lease(&self) -> Option<Duration> {
        let running = self.lease()?;
        Some(self.unsettled_lease.map_or(running, |l| l.max(running)))
    }

    /// The longer lease nodes may still hold (see [`State::longest_lease`]), with the count
    /// of shortenings that left it: the coordinator commits [`Command::LeaseSettled`] with
    /// that count once every lease granted before has ended.
    pub fn unsettled_lease(&self) -> Option<(u64, Duration)> {
        self.unsettled_lease.map(|l| (self.lease_change, l))
    }

    /// The shortest and the longest heartbeat interval any node's Raft timings may be
    /// derived from now (see [`RaftIntervals`]), over the running configuration's nodes
    /// (`None` before the bootstrap). A new coordinator counts on the voters' election
    /// timeouts of the shortest; elections may take as long as the longest's.
    pub fn raft_intervals(&self) -> Option<(Duration, Duration)> {
        let config = self.config.as_ref()?;
        let running = RaftIntervals::only(config.cluster.heartbeat.interval);
        let all = config
            .cluster
            .nodes
            .iter()
            .map(|n| self.raft_intervals.get(&n.name).copied().unwrap_or(running))
            .fold(running, |a, b| a.with(b.shortest).with(b.longest));
        Some((all.shortest, all.longest))
    }

    /// The nodes whose Raft timings may be derived from a longer heartbeat interval than the
    /// running configuration's (they take its timings when they restart).
    pub fn slow_raft_nodes(&self) -> Vec<NodeName> {
        let Some(config) = &self.config else {
            return Vec::new();
        };
        let running = config.cluster.heartbeat.interval;
        config
            .cluster
            .nodes
            .iter()
            .filter(|n| {
                self.raft_intervals
                    .get(&n.name)
                    .is_some_and(|r| r.longest > running)
            })
            .map(|n| n.name.clone())
            .collect()
    }

    /// The intervals `node`'s Raft timings may be derived from (see [`RaftIntervals`]; the
    /// running configuration's alone when it has no entry; `None` before the bootstrap).
    pub fn raft_range(&self, node: &str) -> Option<RaftIntervals> {
        let config = self.config.as_ref()?;
        Some(
            self.raft_intervals
                .get(node)
                .copied()
                .unwrap_or(RaftIntervals::only(config.cluster.heartbeat.interval)),
        )
    }

    /// The range a [`Command::RaftReport`] of `interval` judged on the running configuration
    /// gives a node: `interval` reported, and the running configuration's interval.
    pub fn raft_range_reported(&self, interval: Duration) -> Option<RaftIntervals> {
        let config = self.config.as_ref()?;
        Some(RaftIntervals {
            reported: Some(interval),
            ..RaftIntervals::only(config.cluster.heartbeat.interval).with(interval)
        })
    }

    /// What `node` last reported its Raft timings are derived from ([`Command::RaftReport`]).
    pub fn raft_reported(&self, node: &str) -> Option<Duration> {
        self.raft_intervals.get(node).and_then(|r| r.reported)
    }

    /// After a change of [`State::lease`] (`longest_before`: [`State::longest_lease`] before
    /// it): a shorter lease leaves the longer one unsettled (a new shortening, counted),
    /// a lease at least as long as every one before settles it.
    fn lease_changed(&mut self, longest_before: Option<Duration>) {
        let after = self.lease();
        let unsettled = longest_before.filter(|b| after.is_some_and(|a| *b > a));
        if unsettled.is_some() {
            self.lease_change += 1;
        }
        self.unsettled_lease = unsettled;
    }

    /// The files the running configuration was read from (empty when not recorded).
    pub fn sources(&self) -> &[SourceFile] {
        &self.sources
    }

    /// The configuration staged by `halcyon apply`, while its `config_change` runs.
    pub fn staged(&self) -> Option<&Staged> {
        self.staged.as_ref()
    }

    /// The configuration an event is planned with: the staged one for its `config_change`,
    /// else the running one.
    pub fn config_for(&self, sequence: u64) -> Option<&Arc<Config>> {
        match &self.staged {
            Some(staged) if staged.sequence == sequence => Some(&staged.config),
            _ => self.config.as_ref(),
        }
    }

    /// Applies one committed command; deterministic.
    pub fn apply(&mut self, index: u64, command: Command) -> Reply {
        self.applied_index = index;
        match command {
            Command::Bootstrap {
                config,
                rules,
                sources,
                ..
            } => {
                if self.config.is_some() {
                    return Reply::Bootstrapped { fresh: false };
                }
                self.config = Some(Arc::new(*config));
                self.rules = rules;
                self.sources = Arc::new(sources);
                self.generation = 1;
                Reply::Bootstrapped { fresh: true }
            }
            Command::ConfigApply {
                config,
                rules,
                sources,
                by,
                at,
                request,
            } => self.config_apply(*config, rules, sources, by, at, request),
            Command::Register {
                node,
                incarnation,
                at,
                clean_stop,
            } => self.register(node, incarnation, at, clean_stop),
            Command::FenceReport {
                node,
                incarnation,
                report,
                by,
                at,
            } => self.fence_report(node, incarnation, report, by, at),
            Command::AutoShrink { node, voter, at: _ } => {
                let changed = if voter {
                    self.shrunk.remove(&node)
                } else {
                    self.shrunk.insert(node.clone())
                };
                if changed {
                    Reply::Done
                } else {
                    Reply::Ignored {
                        why: format!(
                            "{node} is already {}",
                            if voter { "a voter again" } else { "shrunk" }
                        ),
                    }
                }
            }
            Command::RaftReport {
                reporter,
                interval,
                generation,
                at: _,
            } => {
                let Some(config) = self.config.clone() else {
                    return Reply::Ignored {
                        why: "no configuration is running yet".into(),
                    };
                };
                if config.node(reporter.as_str()).is_none() {
                    return Reply::Ignored {
                        why: format!("{reporter} is not a node of the running configuration"),
                    };
                }
                let running = config.cluster.heartbeat.interval;
                let before = self.longest_lease();
                // Judged on the running configuration: what it runs, or the running one
                // at a restart. Judged on an older one: a restart may still take any
                // configuration since, so the range only widens.
                let range = if generation == self.generation() {
                    RaftIntervals::only(running).with(interval)
                } else {
                    self.raft_intervals
                        .get(&reporter)
                        .copied()
                        .unwrap_or(RaftIntervals::only(running))
                        .with(interval)
                };
                self.raft_intervals.insert(
                    reporter,
                    RaftIntervals {
                        reported: Some(interval),
                        ..range
                    },
                );
                self.lease_changed(before);
                Reply::Done
            }
            Command::LeaseSettled { change, at: _ } => {
                if change == self.lease_change && self.unsettled_lease.take().is_some() {
                    Reply::Done
                } else {
                    Reply::Ignored {
                        why: format!(
                            "the lease's shortening {change} is not unsettled (shortenings: {})",
                            self.lease_change
                        ),
                    }
                }
            }
            Command::NodeJoined { node, at: _ } => {
                if self.joining.remove(&node) {
                    Reply::Done
                } else {
                    Reply::Ignored {
                        why: format!("{node} is not joining"),
                    }
                }
            }
            Command::Enqueue {
                event,
                by,
                at,
                sample,
                request,
            } => {
                if let Some(sequence) = self.known_request(request.as_deref()) {
                    return Reply::Queued {
                        sequence,
                        duplicate: true,
                    };
                }
                let reply = self.enqueue(event, by, at, sample);
                if let (Some(request), Reply::Queued { sequence, .. }) = (request, &reply) {
                    self.remember_request(request, *sequence);
                }
                reply
            }
            Command::PlanCommitted { sequence, plan, at } => {
                self.plan_committed(sequence, *plan, at)
            }
            Command::EventRefused {
                sequence,
                error,
                at,
            } => {
                let Some(position) = self.pending.iter().position(|p| p.sequence == sequence)
                else {
                    return Reply::Ignored {
                        why: format!("no pending event {sequence}"),
                    };
                };
                let pending = self.pending.remove(position);
                if pending.event == Event::Timer {
                    // Refused: not raised again until a plan asks for it.
                    self.wake_at = None;
                }
                if self.staged.as_ref().is_some_and(|s| s.sequence == sequence) {
                    // Nothing was applied: the lock goes with the event.
                    self.staged = None;
                }
                let id = self.new_record(&pending);
                if let Some(r) = self.record_mut(id) {
                    r.outcome = Outcome::Refused;
                    r.error = Some(error);
                    r.started_at = Some(at);
                    r.finished_at = Some(at);
                }
                Reply::Done
            }
            Command::ActionDone {
                execution,
                step,
                index,
                ok,
                detail,
                at,
            } => self.action_done(execution, step, index, ok, detail, at),
            Command::LaunchDone {
                execution,
                launch,
                node,
                report,
                at,
            } => self.launch_done(execution, launch, node, report, at),
            Command::NodeLost {
                execution,
                node,
                why,
                at,
            } => self.node_lost(execution, &node, &why, at),
            Command::NodeStuck {
                execution,
                node,
                why,
                at,
            } => self.node_stuck(execution, node, why, at),
            Command::EventControl {
                execution,
                answer,
                by,
                at,
            } => self.event_control(execution, answer, &by, at),
            Command::EventTooLong { execution, at } => self.event_too_long(execution, at),
            Command::RestartCounted {
                package,
                node,
                service,
                detail,
                at,
            } => {
                let window = self.restart_window(package.as_str(), &service);
                let counter = self
                    .restarts
                    .entry(package)
                    .or_default()
                    .entry(node)
                    .or_default()
                    .entry(service)
                    .or_default();
                let expired = match (window, counter.last) {
                    (Some(window), Some(last)) => at
                        .duration_since(last)
                        .try_into()
                        .is_ok_and(|elapsed: Duration| elapsed > window),
                    _ => false,
                };
                counter.count = if expired { 1 } else { counter.count + 1 };
                counter.last = Some(at);
                counter.last_exit = detail.map(truncated);
                Reply::Restarts {
                    count: counter.count,
                }
            }
            Command::NodeStartAllowed { node, .. } => {
                self.halted_by_admin.remove(&node);
                Reply::Done
            }
            Command::AdapterReport {
                reporter, mut down, ..
            } => {
                // A node that had not switched yet may still report a network the running
                // configuration no longer has: nothing would ever clear it.
                down.retain(|(_, network)| self.has_network(network));
                if down.is_empty() {
                    self.adapter_reports.remove(&reporter);
                } else {
                    self.adapter_reports.insert(reporter, down);
                }
                Reply::Done
            }
            Command::StandbyReport {
                reporter, mut down, ..
            } => {
                down.retain(|network| self.has_network(network));
                if down.is_empty() {
                    self.standby_reports.remove(&reporter);
                } else {
                    self.standby_reports.insert(reporter, down);
                }
                Reply::Done
            }
            Command::ClusterStartAllowed { by, at: _ } => {
                if !self.cluster_halted {
                    return Reply::Ignored {
                        why: "the cluster is not halted".to_owned(),
                    };
                }
                self.cluster_halted = false;
                self.cluster_start_by = by;
                Reply::Done
            }
            Command::VoterChanged {
                node,
                added,
                voters,
                by,
                at,
            } => self.voter_changed(node, added, &voters, by, at),
            Command::Batch { commands } => {
                if let Some(why) = Command::batch_error(&commands) {
                    return Reply::Ignored { why };
                }
                let replies = commands
                    .into_iter()
                    .map(|command| self.apply(index, command))
                    .collect();
                Reply::Batch { replies }
            }
        }
    }

    /// The counting window of `service`: a resource's, or a `fail_package` monitor's
    /// (counted as `monitor:NAME`).
    fn restart_window(&self, package: &str, service: &str) -> Option<Duration> {
        let package = self.config.as_ref()?.package(package)?;
        let monitor = package.monitors.iter().find(|m| m.restart_key() == service);
        if let Some(monitor) = monitor {
            return monitor.restart_window;
        }
        package
            .resources
            .iter()
            .find(|r| r.restart_key() == service)
            .and_then(|r| r.restarts())
            .and_then(|(_, window)| window)
    }

    /// A copy without the event log (the daemon's loops read the state every few
    /// milliseconds; the log, with every command's output, is the bulk of it). Every
    /// field is named, so a new field cannot be forgotten here.
    pub fn clone_without_log(&self) -> State {
        let State {
            applied_index,
            config,
            rules,
            cluster,
            incarnations,
            departed,
            halted_by_admin,
            cluster_halted,
            cluster_start_by,
            adapter_reports,
            adapters_down,
            standby_reports,
            standbys_down,
            restarts,
            pending,
            next_sequence,
            execution,
            log: _,
            next_record,
            requests,
            wake_at,
            generation,
            staged,
            fences,
            swapped,
            departed_at,
            shrunk,
            joining,
            sources,
            stuck,
            unsettled_lease,
            lease_change,
            raft_intervals,
        } = self;
        State {
            applied_index: *applied_index,
            config: config.clone(),
            rules: rules.clone(),
            cluster: cluster.clone(),
            incarnations: incarnations.clone(),
            departed: departed.clone(),
            halted_by_admin: halted_by_admin.clone(),
            cluster_halted: *cluster_halted,
            cluster_start_by: cluster_start_by.clone(),
            adapter_reports: adapter_reports.clone(),
            adapters_down: adapters_down.clone(),
            standby_reports: standby_reports.clone(),
            standbys_down: standbys_down.clone(),
            restarts: restarts.clone(),
            pending: pending.clone(),
            next_sequence: *next_sequence,
            execution: execution.clone(),
            log: EventLog::default(),
            next_record: *next_record,
            requests: requests.clone(),
            wake_at: *wake_at,
            generation: *generation,
            staged: staged.clone(),
            fences: fences.clone(),
            swapped: swapped.clone(),
            departed_at: departed_at.clone(),
            shrunk: shrunk.clone(),
            joining: joining.clone(),
            sources: Arc::clone(sources),
            stuck: stuck.clone(),
            unsettled_lease: *unsettled_lease,
            lease_change: *lease_change,
            raft_intervals: raft_intervals.clone(),
        }
    }

    /// Restarts counted for a service on a node.
    pub fn restart_count(&self, package: &str, node: &str, service: &str) -> u32 {
        self.restarts
            .get(package)
            .and_then(|n| n.get(node))
            .and_then(|s| s.get(service))
            .map_or(0, |c| c.count)
    }

    /// [`Command::Register`]. A node's first registration is its start; any later one is
    /// a restart, recorded in the event log as a finished `node_restart` with what ended
    /// the incarnation before it. The record takes a sequence number of its own (so that
    /// [`State::record_of_sequence`] stays one record per number) but is never pending:
    /// no event waits for it, and nothing is planned for it.
    fn register(
        &mut self,
        node: NodeName,
        incarnation: u64,
        at: Timestamp,
        clean_stop: Option<CleanStop>,
    ) -> Reply {
        let known = self.incarnations.get(&node).copied().unwrap_or(0);
        if incarnation <= known {
            return Reply::Ignored {
                why: format!("incarnation {incarnation} is not above {known}"),
            };
        }
        self.incarnations.insert(node.clone(), incarnation);
        // A new daemon halted every failover package of its node before it registered:
        // whatever kept the old one from completing its work is gone with it.
        self.stuck.remove(&node);
        if known == 0 {
            return Reply::Done;
        }
        // Only a clean stop of the very incarnation the cluster knew counts: a marker of
        // an older one means that the known incarnation crashed (or never stopped cleanly).
        let stopped = clean_stop.filter(|c| c.incarnation == known);
        let note = match stopped {
            Some(c) => format!(
                "{node} restarted as incarnation {incarnation}; incarnation {known} ended by a clean stop at {}",
                c.at
            ),
            None => format!(
                "{node} restarted as incarnation {incarnation}; incarnation {known} ended without a clean stop (a crash, a kill, a power loss or a lost state directory)"
            ),
        };
        let event = Event::NodeRestart {
            node,
            incarnation,
            previous: known,
            clean_stop: stopped.is_some(),
        };
        self.finished_record(event, "registration".to_owned(), at, note)
    }

    /// A record-only event (nothing to plan or run): done as it is recorded, with one note.
    fn finished_record(&mut self, event: Event, by: String, at: Timestamp, note: String) -> Reply {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let id = self.new_record(&Pending {
            sequence,
            event,
            by,
            at,
            sample: None,
        });
        if let Some(r) = self.record_mut(id) {
            r.outcome = Outcome::Done;
            r.started_at = Some(at);
            r.finished_at = Some(at);
            r.notes.push(NoteRecord { at, text: note });
        }
        Reply::Done
    }

    /// [`Command::VoterChanged`]: a finished `voter_change` record, the voters as its note.
    fn voter_changed(
        &mut self,
        node: NodeName,
        added: bool,
        voters: &[String],
        by: String,
        at: Timestamp,
    ) -> Reply {
        let note = truncated(format!("voters: {}", voters.join(", ")));
        self.finished_record(Event::VoterChange { node, added }, by, at, note)
    }

    fn fence_report(
        &mut self,
        node: NodeName,
        incarnation: u64,
        report: FenceReport,
        by: String,
        at: Timestamp,
    ) -> Reply {
        if self
            .config
            .as_ref()
            .is_none_or(|c| c.node(node.as_str()).is_none())
        {
            return Reply::Ignored {
                why: format!("{node} is not a node of the configuration"),
            };
        }
        let known = self.incarnations.get(&node).copied().unwrap_or(0);
        if incarnation < known {
            return Reply::Ignored {
                why: format!(
                    "a fence of incarnation {incarnation}, but {node} has registered as {known} since"
                ),
            };
        }
        let failures = match self.fences.get(&node) {
            _ if report.confirmed => 0,
            Some(f) if f.incarnation == incarnation => f.failures.saturating_add(1),
            _ => 1,
        };
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let event = Event::NodeFence {
            node: node.clone(),
            action: report.action.clone(),
            confirmed: report.confirmed,
        };
        let id = self.new_record(&Pending {
            sequence,
            event,
            by: by.clone(),
            at,
            sample: None,
        });
        if let Some(r) = self.record_mut(id) {
            r.outcome = if report.confirmed {
                Outcome::Done
            } else {
                Outcome::DoneWithFailures
            };
            r.started_at = Some(at);
            r.finished_at = Some(at);
            if !report.confirmed {
                r.error = Some(report.summary.clone());
            }
            for line in report.attempts.iter().chain([&report.summary]) {
                r.notes.push(NoteRecord {
                    at,
                    text: truncated(line.clone()),
                });
            }
        }
        // The event waiting for this node hears of it too.
        if let Some(e) = &self.execution
            && e.awaits_release_of(node.as_str())
        {
            let id = e.id;
            let text = if report.confirmed {
                format!("{node} fenced: {}", report.summary)
            } else {
                format!(
                    "ERROR: fencing {node} failed ({failures} in a row): {}; tried again every {}s; `halcyon event retry` tries now, `halcyon event skip` gives up the fence and waits for its lease only",
                    report.summary,
                    FENCE_RETRY_INTERVAL.as_secs()
                )
            };
            self.note(id, at, text);
        }
        self.fences.insert(
            node,
            Fence {
                incarnation,
                report,
                by,
                at,
                failures,
                retry_requested: false,
            },
        );
        Reply::Done
    }

    fn enqueue(
        &mut self,
        event: Event,
        by: String,
        at: Timestamp,
        sample: Option<Sample>,
    ) -> Reply {
        if event.is_record_only() {
            return Reply::Ignored {
                why: format!("{} is only recorded, never queued", event.name()),
            };
        }
        if let Some(p) = self.pending.iter().find(|p| p.event == event) {
            return Reply::Queued {
                sequence: p.sequence,
                duplicate: true,
            };
        }
        if self.pending.len() >= PENDING_MAX {
            return Reply::Ignored {
                why: format!("{PENDING_MAX} events already pending"),
            };
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        if event == Event::ClusterStart {
            // Recorded as theirs: who asked the start is known no longer.
            self.cluster_start_by = None;
        }
        self.pending.push(Pending {
            sequence,
            event,
            by,
            at,
            sample,
        });
        Reply::Queued {
            sequence,
            duplicate: false,
        }
    }

    /// [`Command::ConfigApply`]: stage the configuration and enqueue its `config_change`.
    fn config_apply(
        &mut self,
        config: Config,
        rules: Rules,
        sources: Vec<SourceFile>,
        by: String,
        at: Timestamp,
        request: Option<String>,
    ) -> Reply {
        if let Some(sequence) = self.known_request(request.as_deref()) {
            return Reply::Queued {
                sequence,
                duplicate: true,
            };
        }
        let Some(running) = self.config.clone() else {
            return Reply::Ignored {
                why: "the cluster is not bootstrapped".to_owned(),
            };
        };
        if let Some(staged) = &self.staged {
            return Reply::Ignored {
                why: format!(
                    "another reconfiguration holds the lock: generation {} applied by {} at {} \
                     (event sequence {}); it is released when that config_change ends",
                    staged.generation, staged.by, staged.since, staged.sequence
                ),
            };
        }
        let restart = config
            .packages
            .iter()
            .filter(|(name, package)| {
                running
                    .packages
                    .get(*name)
                    .is_some_and(|r| package.restarts_from(r))
            })
            .map(|(name, _)| name.clone())
            .collect();
        let generation = self.generation() + 1;
        let event = Event::ConfigChange {
            generation,
            restart,
        };
        let reply = self.enqueue(event, by.clone(), at, None);
        let Reply::Queued {
            sequence,
            duplicate: false,
        } = reply
        else {
            return reply;
        };
        self.staged = Some(Staged {
            config: Arc::new(config),
            rules,
            sources: Arc::new(sources),
            generation,
            by,
            since: at,
            sequence,
        });
        if let Some(request) = request {
            self.remember_request(request, sequence);
        }
        reply
    }

    /// The sequence of the event a request id already enqueued.
    fn known_request(&self, request: Option<&str>) -> Option<u64> {
        let request = request?;
        self.requests
            .iter()
            .find(|(id, _)| id == request)
            .map(|&(_, sequence)| sequence)
    }

    /// Remembers that `request` enqueued `sequence` (the oldest id goes beyond
    /// [`REQUESTS_MAX`]).
    fn remember_request(&mut self, request: String, sequence: u64) {
        assert!(
            request.len() <= REQUEST_ID_MAX,
            "request ids are checked at the API"
        );
        if self.requests.len() == REQUESTS_MAX {
            self.requests.pop_front();
        }
        self.requests.push_back((request, sequence));
    }

    /// Whether the running configuration has network `name` (true before there is one).
    fn has_network(&self, name: &NetworkName) -> bool {
        self.config
            .as_ref()
            .is_none_or(|c| c.cluster.networks.iter().any(|n| n.name == *name))
    }

    /// Drops what the state keeps of nodes and networks `config` no longer has (a
    /// `config_change` removed them; none of the nodes is a member). The nodes'
    /// incarnations stay: a node added again later under the same name must not reuse an
    /// old one.
    fn forget_removed(&mut self, config: &Config) {
        let kept = |node: &NodeName| config.node(node.as_str()).is_some();
        assert!(
            self.cluster.members.iter().all(kept),
            "a configuration that removes a member is never switched to"
        );
        let witness = config.cluster.quorum.witness.as_ref().map(|w| &w.name);
        self.joining
            .retain(|n| kept(n) || witness.is_some_and(|w| w == n));
        self.shrunk.retain(kept);
        self.departed.retain(kept);
        self.departed_at.retain(|n, _| kept(n));
        self.halted_by_admin.retain(kept);
        self.stuck.retain(|n, _| kept(n));
        self.fences.retain(|n, _| kept(n));
        self.adapter_reports.retain(|n, _| kept(n));
        self.standby_reports.retain(|n, _| kept(n));
        self.raft_intervals.retain(|n, _| kept(n));
        self.adapters_down.retain(|(n, _)| kept(n));
        self.standbys_down.retain(|(n, _)| kept(n));
        self.swapped.retain(|(n, _)| kept(n));
        for counters in self.restarts.values_mut() {
            counters.retain(|n, _| kept(n));
        }
        // What was reported and committed of a network the configuration no longer has
        // (`halcyon apply` removed a disk network): nothing would ever clear it.
        let network_kept =
            |network: &NetworkName| config.cluster.networks.iter().any(|n| n.name == *network);
        for reported in self.adapter_reports.values_mut() {
            reported.retain(|(_, network)| network_kept(network));
        }
        self.adapter_reports
            .retain(|_, reported| !reported.is_empty());
        for reported in self.standby_reports.values_mut() {
            reported.retain(network_kept);
        }
        self.standby_reports
            .retain(|_, reported| !reported.is_empty());
        self.adapters_down
            .retain(|(_, network)| network_kept(network));
        self.standbys_down
            .retain(|(_, network)| network_kept(network));
        self.swapped.retain(|(_, network)| network_kept(network));
    }

    fn plan_committed(&mut self, sequence: u64, plan: Plan, at: Timestamp) -> Reply {
        if let Some(e) = &self.execution {
            return Reply::Ignored {
                why: format!("execution {} is still running", e.id),
            };
        }
        let Some(position) = self.pending.iter().position(|p| p.sequence == sequence) else {
            return Reply::Ignored {
                why: format!("no pending event {sequence}"),
            };
        };
        let Some(config) = self.config_for(sequence).cloned() else {
            return Reply::Ignored {
                why: "the cluster is not bootstrapped".to_owned(),
            };
        };
        let staged = self
            .staged
            .as_ref()
            .filter(|s| s.sequence == sequence)
            .cloned();
        // One event at a time, in priority order: a plan made before a more urgent event
        // arrived is refused, and the coordinator plans again (simulation seed 31). The
        // cluster's formation goes before the joins it absorbs.
        let forming = plan.event == Event::ClusterStart && self.cluster.members.is_empty();
        if !forming
            && let Some(first) = halcyon_policy::next_event(&config, &self.pending_events())
            && self.pending[first].sequence != sequence
        {
            return Reply::Ignored {
                why: format!(
                    "event #{} ({}) comes before #{sequence}",
                    self.pending[first].sequence, self.pending[first].event
                ),
            };
        }
        for (name, p) in &plan.state.packages {
            let failover = config
                .package(name.as_str())
                .is_some_and(|c| c.is_failover());
            assert!(
                !failover || p.nodes.len() <= 1,
                "plan places failover package {name} on {} nodes",
                p.nodes.len()
            );
        }
        let pending = self.pending.remove(position);
        if pending.event == Event::Timer {
            // Taken: a plan that fails below must not leave it to be raised again at once.
            self.wake_at = None;
        }
        let id = self.next_record;
        let rules = staged.as_ref().map_or(&self.rules, |s| &s.rules);
        // A node the staged configuration removes must not be a member (`halcyon apply`
        // refuses to remove one); one that became a member again since is not left running
        // outside the configuration: the change is refused and nothing switches.
        let member_removed = staged.as_ref().and_then(|s| {
            self.cluster
                .members
                .iter()
                .find(|m| s.config.node(m.as_str()).is_none())
                .cloned()
        });
        let execution = match member_removed.map_or_else(
            || {
                Execution::new(
                    id,
                    &config,
                    rules,
                    plan.clone(),
                    &self.cluster.members,
                    pending.sample.clone(),
                    at,
                )
            },
            |node| {
                Err(format!(
                    "{node} is a member again: the configuration that removes it is not \
                     applied; halt it (`halcyon node halt {node}`) and apply again"
                ))
            },
        ) {
            Ok(e) => e,
            Err(error) => {
                let id = self.new_record(&pending);
                if let Some(r) = self.record_mut(id) {
                    r.outcome = Outcome::Refused;
                    r.error = Some(error);
                    r.started_at = Some(at);
                    r.finished_at = Some(at);
                }
                if staged.is_some() {
                    self.staged = None;
                }
                return Reply::Done;
            }
        };
        // `halcyon apply`: every node switches to the staged configuration as it applies
        // this entry; the lock stays until the event ends.
        if let Some(staged) = staged {
            assert!(
                matches!(pending.event, Event::ConfigChange { generation, .. } if generation == staged.generation),
                "a staged configuration is switched to only by its own config_change"
            );
            if let Some(old) = &self.config {
                // Nodes the change adds become voters once they are heard, and a witness
                // it adds once it answers (the coordinator).
                let new = &staged.config.cluster;
                self.joining.extend(
                    new.nodes
                        .iter()
                        .filter(|n| old.node(n.name.as_str()).is_none())
                        .map(|n| n.name.clone())
                        .chain(
                            new.quorum
                                .witness
                                .as_ref()
                                .filter(|w| old.cluster.quorum.witness.as_ref() != Some(*w))
                                .map(|w| w.name.clone()),
                        ),
                );
            }
            self.forget_removed(&staged.config);
            let before = self.longest_lease();
            // Each node's Raft keeps its timings, or takes the new configuration's when it
            // restarts.
            if let Some(old) = &self.config {
                let new = staged.config.cluster.heartbeat.interval;
                let was = RaftIntervals::only(old.cluster.heartbeat.interval);
                for node in &staged.config.cluster.nodes {
                    if old.node(node.name.as_str()).is_some() {
                        let range = self.raft_intervals.entry(node.name.clone()).or_insert(was);
                        *range = range.with(new);
                    }
                }
            }
            self.config = Some(Arc::clone(&staged.config));
            self.rules = staged.rules;
            self.sources = staged.sources;
            self.generation = staged.generation;
            // Leases granted before the switch may be longer than the new configuration's:
            // kept until the coordinator settles them.
            self.lease_changed(before);
        }
        // Every plan looks at the whole cluster: its wake-up replaces the previous one. One
        // not after the plan's own time would raise `timer` again at once: dropped.
        self.wake_at = plan.wake_at.filter(|w| *w > at);
        // Restart counters start again when the package is halted (and later started), as
        // Serviceguard's do (seed 004); a move or a coordinator change keeps them.
        match &pending.event {
            Event::PackageHalt {
                package,
                node: None,
            } => {
                self.restarts.remove(package);
            }
            Event::PackageHalt {
                package,
                node: Some(node),
            } => {
                if let Some(counters) = self.restarts.get_mut(package) {
                    counters.remove(node);
                }
            }
            Event::ClusterHalt => self.restarts.clear(),
            _ => {}
        }
        match &pending.event {
            Event::NodeDown { node, how } => {
                self.departed.insert(node.clone());
                self.departed_at.insert(node.clone(), at);
                self.adapters_down.retain(|(n, _)| n != node);
                self.swapped.retain(|(n, _)| n != node);
                self.adapter_reports.remove(node);
                self.standbys_down.retain(|(n, _)| n != node);
                self.standby_reports.remove(node);
                if *how != halcyon_policy::Departure::Failure {
                    self.halted_by_admin.insert(node.clone());
                }
            }
            Event::NodeUp { node } => {
                self.departed.remove(node);
                self.departed_at.remove(node);
                self.adapters_down.retain(|(n, _)| n != node);
                self.standbys_down.retain(|(n, _)| n != node);
                self.swapped.retain(|(n, _)| n != node);
            }
            Event::FailStandby { node, network } => {
                self.standbys_down.insert((node.clone(), network.clone()));
            }
            Event::JoinStandby { node, network } => {
                self.standbys_down.remove(&(node.clone(), network.clone()));
            }
            Event::NetworkDown { node, network } => {
                self.adapters_down.insert((node.clone(), network.clone()));
                self.swapped.remove(&(node.clone(), network.clone()));
            }
            // The first swap moves the addresses to a standby because the primary failed; a
            // swap while they are on the standby moves them back to the primary, which has
            // returned (the standby failed): the primary is not down then.
            Event::SwapAdapter { node, network } => {
                let key = (node.clone(), network.clone());
                if !self.swapped.remove(&key) {
                    self.adapters_down.insert(key.clone());
                    self.swapped.insert(key);
                }
            }
            Event::NetworkUp { node, network } => {
                self.adapters_down.remove(&(node.clone(), network.clone()));
            }
            Event::ClusterHalt => {
                self.cluster_halted = true;
            }
            _ => {}
        }
        let record = self.new_record(&pending);
        debug_assert_eq!(record, id);
        let program_text = execution.program_text();
        if let Some(r) = self.record_mut(id) {
            r.started_at = Some(at);
            r.plan_text = Some(halcyon_policy::render(&plan));
            r.plan = Some(plan);
            r.program_text = Some(program_text);
        }
        self.execution = Some(execution);
        self.drive(at);
        Reply::Executing { execution: id }
    }

    /// The current execution, if it is `id`.
    fn execution_mut(&mut self, id: u64) -> Result<&mut Execution, Reply> {
        match self.execution.as_mut() {
            Some(e) if e.id == id => Ok(e),
            Some(e) => Err(Reply::Ignored {
                why: format!("execution {} is running, not {id}", e.id),
            }),
            None => Err(Reply::Ignored {
                why: "no execution is running".to_owned(),
            }),
        }
    }

    fn action_done(
        &mut self,
        execution: u64,
        step: usize,
        index: usize,
        ok: bool,
        detail: String,
        at: Timestamp,
    ) -> Reply {
        let e = match self.execution_mut(execution) {
            Ok(e) => e,
            Err(reply) => return reply,
        };
        let Some(action) = e.action(step, index).cloned() else {
            return Reply::Ignored {
                why: format!("step {step} has no action {index}"),
            };
        };
        if !e.done.insert((step, index)) {
            return Reply::Ignored {
                why: "already done".to_owned(),
            };
        }
        if !ok {
            e.failed.insert((step, index));
            if action.kind == ActionKind::Run
                && let Some(package) = &action.package
            {
                e.run_failures.push((package.clone(), action.node.clone()));
            }
        }
        if let Some(r) = self.record_mut(execution) {
            r.actions.push(ActionRecord {
                step,
                index,
                kind: action.kind,
                package: action.package,
                node: action.node,
                ok,
                detail: truncated(detail),
                at,
            });
        }
        self.drive(at);
        Reply::Done
    }

    fn launch_done(
        &mut self,
        execution: u64,
        launch: u64,
        node: Option<NodeName>,
        report: LaunchReport,
        at: Timestamp,
    ) -> Reply {
        let e = match self.execution_mut(execution) {
            Ok(e) => e,
            Err(reply) => return reply,
        };
        let Some(l) = e.launches.get(&launch) else {
            return Reply::Ignored {
                why: format!("launch {launch} is not running (finished, abandoned or retried)"),
            };
        };
        if l.node != node || Builtin::parse(&l.command).is_some() {
            return Reply::Ignored {
                why: format!(
                    "launch {launch} runs on {}, as {}",
                    l.node.as_ref().map_or("the coordinator", |n| n.as_str()),
                    l.command
                ),
            };
        }
        let reporter = node.clone().unwrap_or_else(|| COORDINATOR.into());
        let runner = l.node.clone().unwrap_or_else(|| COORDINATOR.into());
        if let Err(error) = e
            .progress
            .completed(&runner, launch, report.status, &report.output)
        {
            return Reply::Ignored {
                why: format!("{reporter}: {error}"),
            };
        }
        e.launches.remove(&launch);
        if let Some(r) = self.launch_record_mut(execution, launch) {
            r.started_at = Some(report.started_at);
            r.finished_at = Some(report.finished_at);
            r.status = Some(report.status);
            r.output = truncated(report.output);
        }
        self.note_error(execution, at);
        self.drive(at);
        Reply::Done
    }

    fn node_lost(&mut self, execution: u64, node: &NodeName, why: &str, at: Timestamp) -> Reply {
        let e = match self.execution_mut(execution) {
            Ok(e) => e,
            Err(reply) => return reply,
        };
        if !e.progress.has_unfinished(node) {
            return Reply::Ignored {
                why: format!("{node} has no command left in execution {execution}"),
            };
        }
        let running = e.progress.abandon_node(node, why);
        for launch in &running {
            e.launches.remove(launch);
        }
        for launch in running {
            if let Some(r) = self.launch_record_mut(execution, launch) {
                r.finished_at = Some(at);
                r.abandoned = Some(why.to_owned());
            }
        }
        self.note(
            execution,
            at,
            format!("commands of {node} abandoned: {why}"),
        );
        self.drive(at);
        Reply::Done
    }

    /// [`Command::NodeStuck`]: the node is excluded; its work is given up by the
    /// coordinator once its lease has certainly expired (`NodeLost`, and `ActionDone` for
    /// its actions), as for a failed node.
    fn node_stuck(&mut self, execution: u64, node: NodeName, why: String, at: Timestamp) -> Reply {
        if let Err(reply) = self.execution_mut(execution) {
            return reply;
        }
        let Some(&incarnation) = self.incarnations.get(&node) else {
            return Reply::Ignored {
                why: format!("{node} has never registered"),
            };
        };
        if self.stuck.contains_key(&node) {
            return Reply::Ignored {
                why: format!("{node} is already excluded"),
            };
        }
        self.note(
            execution,
            at,
            format!(
                "ERROR: {why}: {node} is excluded like a failed node: no lease is granted to it; its commands and actions are given up once its lease has certainly expired, and node_down {node} follows; it joins again when its daemon restarts"
            ),
        );
        self.stuck.insert(
            node.clone(),
            Stuck {
                incarnation,
                execution,
                why,
                at,
            },
        );
        let down = Event::NodeDown {
            node,
            how: halcyon_policy::Departure::Failure,
        };
        if !self.is_pending_or_running(&down) {
            self.enqueue(down, "stuck".to_owned(), at, None);
        }
        Reply::Done
    }

    fn event_control(&mut self, execution: u64, answer: Answer, by: &str, at: Timestamp) -> Reply {
        let e = match self.execution_mut(execution) {
            Ok(e) => e,
            Err(reply) => return reply,
        };
        let result = match answer {
            Answer::Resume => e.progress.resume(),
            Answer::Retry => e.progress.retry(),
            Answer::Skip => e.progress.skip(),
        };
        if let Err(error) = result {
            // Not in ERROR for its program: perhaps for a fence that failed.
            let failed_fences: Vec<NodeName> = self
                .fences
                .iter()
                .filter(|(node, f)| {
                    !f.report.confirmed
                        && self.incarnations.get(*node).copied().unwrap_or(0) == f.incarnation
                        && self.execution.as_ref().is_some_and(|e| {
                            e.awaits_release_of(node.as_str()) && !e.fence_waived.contains(*node)
                        })
                })
                .map(|(node, _)| node.clone())
                .collect();
            if failed_fences.is_empty() {
                return Reply::Ignored {
                    why: format!("cannot {answer} execution {execution}: {error}"),
                };
            }
            let names = failed_fences
                .iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let text = match answer {
                Answer::Resume => {
                    return Reply::Ignored {
                        why: format!(
                            "cannot resume execution {execution}: resuming would take {names} as fenced; `event retry` fences again, `event skip` waits for the lease only"
                        ),
                    };
                }
                Answer::Retry => {
                    for node in &failed_fences {
                        if let Some(f) = self.fences.get_mut(node) {
                            f.retry_requested = true;
                        }
                    }
                    format!("retry by {by}: fencing {names} again now")
                }
                Answer::Skip => {
                    if let Some(e) = self.execution.as_mut() {
                        e.fence_waived.extend(failed_fences.iter().cloned());
                    }
                    format!(
                        "skip by {by}: no fence of {names}; the takeover waits for the lease only"
                    )
                }
            };
            self.note(execution, at, text);
            return Reply::Done;
        }
        self.note(execution, at, format!("{answer} by {by}"));
        self.drive(at);
        Reply::Done
    }

    fn event_too_long(&mut self, execution: u64, at: Timestamp) -> Reply {
        let e = match self.execution_mut(execution) {
            Ok(e) => e,
            Err(reply) => return reply,
        };
        // How many maximum durations the event has run past at the command's time (which
        // the command carries, so every replica counts alike); at least one, as the
        // coordinator commits this only once the event is longer than the maximum.
        let elapsed = Duration::try_from(at.duration_since(e.started_at)).unwrap_or_default();
        let times = halcyon_events::too_long_warnings_due(elapsed, e.max_duration).max(1);
        if !e.progress.duration_exceeded(times) {
            return Reply::Ignored {
                why: "already warned, or finished".to_owned(),
            };
        }
        let max = humantime::format_duration(e.max_duration);
        let text = if times == 1 {
            format!("WARNING: the event has run longer than its maximum duration ({max})")
        } else {
            format!(
                "WARNING: the event still runs after {times} times its maximum duration ({max})"
            )
        };
        self.note(execution, at, text);
        self.drive(at);
        Reply::Done
    }

    /// Hands out the program's next launches, completes built-in commands whose share of
    /// the plan is done, and completes the execution when everything is done.
    fn drive(&mut self, at: Timestamp) {
        loop {
            let Some(e) = self.execution.as_mut() else {
                return;
            };
            let id = e.id;
            let launches = e.progress.next_commands();
            let handed_out = !launches.is_empty();
            let mut records = Vec::new();
            for launch in launches {
                e.reopen_share(&launch);
                records.push(LaunchRecord {
                    launch: launch.launch,
                    node: launch.node.clone(),
                    command: launch.command.clone(),
                    kind: launch.kind.clone(),
                    assigned_at: at,
                    started_at: None,
                    finished_at: None,
                    status: None,
                    output: String::new(),
                    abandoned: None,
                });
                e.launches.insert(launch.launch, launch);
            }
            let details: BTreeMap<(usize, usize), String> = self
                .record(id)
                .map(|r| {
                    r.actions
                        .iter()
                        .map(|a| ((a.step, a.index), a.detail.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let e = self.execution.as_mut().expect("checked above");
            let finished = e.finished_builtins(&details);
            for (launch, node, status, output) in &finished {
                e.progress
                    .completed(node, *launch, *status, output)
                    .expect("a running built-in command completes");
                e.launches.remove(launch);
            }
            if let Some(r) = self.record_mut(id) {
                r.launches.extend(records);
            }
            for (launch, _, status, output) in &finished {
                if let Some(r) = self.launch_record_mut(id, *launch) {
                    r.started_at = Some(r.assigned_at);
                    r.finished_at = Some(at);
                    r.status = Some(*status);
                    r.output = truncated(output.clone());
                }
            }
            if !finished.is_empty() {
                self.note_error(id, at);
            }
            if !handed_out && finished.is_empty() {
                break;
            }
        }
        if self.execution.as_ref().is_some_and(Execution::is_complete) {
            self.finish(at);
        }
    }

    /// Notes the ERROR the execution just entered, if it did.
    fn note_error(&mut self, execution: u64, at: Timestamp) {
        let Some(e) = self.execution.as_ref().filter(|e| e.id == execution) else {
            return;
        };
        let EventState::Error { failures } = e.progress.state() else {
            return;
        };
        let text = format!(
            "ERROR at barrier {}: {}; answer with `halcyon event resume|retry|skip {execution}`",
            failures.first().map_or(0, |f| f.segment + 1),
            failures
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        );
        let already = self
            .record(execution)
            .is_some_and(|r| r.notes.last().is_some_and(|n| n.text == text));
        if !already {
            self.note(execution, at, text);
        }
    }

    fn note(&mut self, execution: u64, at: Timestamp, text: String) {
        if let Some(r) = self.record_mut(execution) {
            r.notes.push(NoteRecord {
                at,
                text: truncated(text),
            });
        }
    }

    /// The execution is complete: the plan's state becomes the cluster state.
    fn finish(&mut self, at: Timestamp) {
        let e = self.execution.take().expect("checked by the caller");
        self.cluster = e.plan.state.clone();
        if matches!(e.plan.event, Event::ConfigChange { .. }) {
            // The reconfiguration is over (done, with failures, or skipped): the lock goes.
            self.staged = None;
        }
        let skipped = matches!(e.progress.state(), EventState::Skipped);
        let failed_commands = e
            .progress
            .command_states()
            .iter()
            .flatten()
            .any(|s| matches!(s, halcyon_events::CommandState::Failed { .. }));
        if let Some(r) = self.record_mut(e.id) {
            r.finished_at = Some(at);
            // The final result: a halt that failed and then succeeded on retry is no
            // failure (the log keeps both).
            let failed_any = !e.failed.is_empty() || failed_commands;
            r.outcome = if skipped {
                Outcome::Skipped
            } else if failed_any {
                Outcome::DoneWithFailures
            } else {
                Outcome::Done
            };
        }
        for (package, node) in e.run_failures {
            self.enqueue(
                Event::PackageFailed { package, node },
                FAILED_TO_START.to_owned(),
                at,
                None,
            );
        }
    }

    fn new_record(&mut self, pending: &Pending) -> u64 {
        let id = self.next_record;
        self.next_record += 1;
        self.log.push(EventRecord {
            id,
            sequence: pending.sequence,
            event: pending.event.clone(),
            by: pending.by.clone(),
            queued_at: pending.at,
            started_at: None,
            finished_at: None,
            outcome: Outcome::Running,
            plan_text: None,
            plan: None,
            error: None,
            actions: Vec::new(),
            program_text: None,
            launches: Vec::new(),
            notes: Vec::new(),
        });
        id
    }

    fn launch_record_mut(&mut self, id: u64, launch: u64) -> Option<&mut LaunchRecord> {
        self.record_mut(id)?
            .launches
            .iter_mut()
            .find(|l| l.launch == launch)
    }

    fn record_mut(&mut self, id: u64) -> Option<&mut EventRecord> {
        self.log.get_mut(id)
    }

    /// The event-log record with this id, if still kept.
    pub fn record(&self, id: u64) -> Option<&EventRecord> {
        self.log.iter().rev().find(|r| r.id == id)
    }

    /// The event-log record made from pending event `sequence`, if any.
    pub fn record_of_sequence(&self, sequence: u64) -> Option<&EventRecord> {
        self.log.iter().rev().find(|r| r.sequence == sequence)
    }

    /// The pending events as the policy engine's `next_event` takes them.
    pub fn pending_events(&self) -> Vec<(u64, Event)> {
        self.pending
            .iter()
            .map(|p| (p.sequence, p.event.clone()))
            .collect()
    }

    /// True when `event` is pending or being executed.
    pub fn is_pending_or_running(&self, event: &Event) -> bool {
        self.pending.iter().any(|p| &p.event == event)
            || self
                .execution
                .as_ref()
                .is_some_and(|e| &e.plan.event == event)
    }
}

/// The name a notify command's launch is completed under (it runs on the coordinator).
const COORDINATOR: &str = "coordinator";

/// `text` cut to [`DETAIL_MAX`] bytes (its end kept, at a character boundary).
fn truncated(text: String) -> String {
    halcyon_events::output_tail(&text, DETAIL_MAX)
}

/// What the replica tells its owner after every applied command or restore: the index
/// and the new state (the daemon publishes it as the view its tasks read).
pub type OnApply = Box<dyn FnMut(u64, Option<&[u8]>, &State) + Send + Sync>;

/// The state machine as the consensus layer runs it: it alone owns and writes the [`State`],
/// and tells `on_apply` of every change (with the command's bytes; `None` for a restore).
pub struct Replicated {
    state: State,
    on_apply: OnApply,
}

impl Replicated {
    pub fn new(on_apply: OnApply) -> Self {
        Replicated {
            state: State::new(),
            on_apply,
        }
    }

    /// The state as applied so far.
    pub fn state(&self) -> &State {
        &self.state
    }
}

impl halcyon_consensus::Application for Replicated {
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8> {
        assert!(
            index > self.state.applied_index,
            "log index {index} applied after {}",
            self.state.applied_index
        );
        let reply = match Command::decode(command) {
            Ok(Command::Batch { .. }) if command.len() > BATCH_BYTES_MAX => {
                self.state.applied_index = index;
                Reply::Ignored {
                    why: format!(
                        "a batch of {} bytes (at most {BATCH_BYTES_MAX})",
                        command.len()
                    ),
                }
            }
            Ok(command) => self.state.apply(index, command),
            Err(e) => {
                self.state.applied_index = index;
                Reply::Ignored {
                    why: format!("undecodable command: {e}"),
                }
            }
        };
        (self.on_apply)(index, Some(command), &self.state);
        reply.encode()
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&self.state).expect("the state always serialises")
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let state: State = serde_json::from_slice(snapshot).map_err(|e| e.to_string())?;
        self.state = state;
        (self.on_apply)(self.state.applied_index, None, &self.state);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_apply;
#[cfg(test)]
mod tests_batch;
#[cfg(test)]
mod tests_events;
#[cfg(test)]
mod tests_fence;
