//! Halcyon's replicated log: openraft 0.9 persisted in redb, spoken over TCP on every IP network.
//!
//! Everything the cluster agrees on is an entry of this log; the Raft leader is the cluster
//! coordinator. This crate knows nothing of Halcyon's state types: the application plugs in
//! through [`Application`] and exchanges opaque bytes ([`Command`] in, [`Reply`] out).
//!
//! Map:
//! - `lib.rs`: the type configuration, [`Application`], [`RaftTimings`] and the [`Consensus`]
//!   facade the daemon calls;
//! - `store.rs`: the redb log store and state machine (one database file per node);
//! - `net.rs`: length-prefixed JSON RPCs over a pluggable stream [`Transport`], the
//!   [`FaultHook`] that partitions nodes and slows or fills disks in tests, and the server
//!   that feeds a Raft instance;
//! - `runtime.rs`: [`HalcyonRuntime`], openraft's tokio runtime with a thread-local random
//!   generator that [`seed_thread_rng`] seeds, so a simulator run (all hosts on one thread) draws
//!   the same election timeouts for the same seed. Unseeded, it is seeded from OS entropy.
//!
//! Invariants:
//! - a log entry is reported flushed to openraft only after the redb transaction holding it has
//!   committed durably;
//! - the application's state is persisted only as snapshots; after a restart it is restored from
//!   the latest snapshot and openraft re-applies the committed log after it, so
//!   [`Application::apply`] must be deterministic;
//! - every network call is bounded by the deadline openraft gives it (`RPCOption::hard_ttl`), so
//!   a hung peer never blocks the Raft core;
//! - this crate spawns tasks only for the RPC server (and openraft spawns its own); it reads no
//!   wall clock: deadlines use tokio's monotonic time;
//! - a slow disk ([`FaultHook::set_disk_delay`]) is a `tokio::time::sleep` in the log store
//!   before the durable write of an append or a vote, so it never blocks the runtime's thread and
//!   runs on simulated time in a simulator. openraft 0.9's Raft core awaits the log store, so
//!   while a node's disk is slow its core does nothing else (a leader sends no heartbeats);
//! - a full disk ([`FaultHook::set_disk_error`]) fails every store write with `ENOSPC` before
//!   a transaction begins; openraft's core stops on it and [`Consensus::failed`] resolves;
//! - "I am leader" is not a lease: a leader cut off from the majority keeps believing it leads in
//!   openraft 0.9. Use [`Consensus::millis_since_quorum_ack`] for lease decisions.

/// What a lock taken after a panic says. A thread that panicked while holding a lock may
/// have left what it guards half changed: the taker panics too rather than go on with it
/// (poisoning is never ignored).
pub(crate) const POISONED: &str = "a lock was poisoned: a thread panicked while holding it";

pub mod acks;
pub mod followed;
pub mod net;
pub mod prevote;
pub mod runtime;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{ChangeMembers, Raft, RaftMetrics, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use net::{FaultHook, Listener, ServerHandle, TcpTransport, Transport};
pub use runtime::{HalcyonRng, HalcyonRuntime, seed_thread_rng};

/// A node's identifier in the Raft group.
pub type NodeId = u64;

/// The largest command [`Consensus::write`] accepts. With [`MAX_PAYLOAD_ENTRIES`] it bounds the
/// size of one append-entries frame well below [`net::MAX_FRAME_BYTES`]. A bootstrap carries
/// the whole configuration: 1,000 packages need about 1 MiB (the simulation's scale run found
/// that 64 KiB refused it, silently).
pub const MAX_COMMAND_BYTES: usize = 4 * 1024 * 1024;

/// The most entries sent in one append-entries RPC.
pub const MAX_PAYLOAD_ENTRIES: u64 = 8;

/// Size of one chunk when a snapshot is streamed to a follower.
pub const SNAPSHOT_CHUNK_BYTES: usize = 256 * 1024;

/// How long shutting down the Raft core may take before it is abandoned.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// How often shutdown checks whether the database has been released.
const SHUTDOWN_POLL_INTERVAL: Duration = Duration::from_millis(5);

/// An application command: opaque bytes, encoded and decoded by the application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command(pub Vec<u8>);

/// What the application returned when it applied a [`Command`]: opaque bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply(pub Vec<u8>);

/// The addresses a node listens on for consensus traffic: one per IP network, in preference
/// order. Peers try them in this order and move to the next network when one fails.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddrs {
    pub addrs: Vec<SocketAddr>,
}

impl NodeAddrs {
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self {
            addrs: addrs.into_iter().collect(),
        }
    }
}

impl fmt::Display for NodeAddrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addrs: Vec<String> = self.addrs.iter().map(ToString::to_string).collect();
        write!(f, "[{}]", addrs.join(", "))
    }
}

openraft::declare_raft_types!(
    /// Halcyon's openraft type configuration.
    pub TypeConfig:
        D = Command,
        R = Reply,
        NodeId = NodeId,
        Node = NodeAddrs,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = HalcyonRuntime,
);

/// Raft's view of the cluster as published by openraft.
pub type Metrics = RaftMetrics<NodeId, NodeAddrs>;
/// openraft's server metrics: the vote, the state, the leader and the membership. They
/// change only with those (not with every append), so a task may wait on them.
pub type ServerMetrics = openraft::metrics::RaftServerMetrics<NodeId, NodeAddrs>;

/// The replicated state machine, supplied by the application.
///
/// The application must start empty: at open, the crate restores it from the latest snapshot
/// (if any) and re-applies the committed log after it.
pub trait Application: Send + Sync + 'static {
    /// Applies the command committed at log `index`; the returned bytes go back to the caller of
    /// [`Consensus::write`] on the leader. Must be deterministic.
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8>;
    /// The whole state, as bytes that [`Application::restore`] accepts.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the whole state with a snapshot.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String>;
}

/// Raft's timing and compaction settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftTimings {
    /// How often the leader sends heartbeats (openraft ticks at 1.5 x this).
    pub heartbeat_interval: Duration,
    /// Lower bound of the random election timeout.
    pub election_timeout_min: Duration,
    /// Upper bound of the random election timeout; also a follower's leader lease.
    pub election_timeout_max: Duration,
    /// Build a snapshot after this many applied entries since the last one.
    pub snapshot_logs_since_last: u64,
    /// How long [`Consensus::write`] waits for its entry to be applied.
    pub write_timeout: Duration,
    /// Whether this node stands for election only after a quorum granted a pre-vote
    /// ([`prevote`]). A node that never leads by itself (the witness) switches elections
    /// itself and turns this off; it then answers pre-votes without its log, so that it is
    /// never taken for a better candidate (`net::PreVoteServer::stands`).
    pub pre_vote: bool,
    /// Whether the RPC server starts held: every connection closed unanswered, as if the
    /// node were cut off, until [`Consensus::admit`]. A node whose store is new holds it
    /// until it knows whether the cluster still counts it as a member with a log it no
    /// longer has (a wiped state directory).
    pub held: bool,
}

impl Default for RaftTimings {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(50),
            election_timeout_min: Duration::from_millis(150),
            election_timeout_max: Duration::from_millis(300),
            snapshot_logs_since_last: 1000,
            write_timeout: Duration::from_secs(5),
            pre_vote: true,
            held: false,
        }
    }
}

impl RaftTimings {
    fn to_config(&self) -> Result<openraft::Config, OpenError> {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let config = openraft::Config {
            cluster_name: "halcyon".to_string(),
            heartbeat_interval: millis(self.heartbeat_interval),
            election_timeout_min: millis(self.election_timeout_min),
            election_timeout_max: millis(self.election_timeout_max),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_logs_since_last),
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES as u64,
            // With pre-vote, the gate switches elections on once a quorum granted one.
            enable_elect: !self.pre_vote,
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| OpenError::Config(e.to_string()))
    }
}

/// Why [`Consensus::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("invalid Raft timings: {0}")]
    Config(String),
    #[error("consensus database {path}: {source}")]
    Store {
        path: String,
        source: store::StoreError,
    },
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("a node needs at least one listening address")]
    NoAddress,
    #[error("starting Raft: {0}")]
    Raft(String),
}

/// Why a write (or a membership change) did not commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("this node is not the leader; the leader is {}", leader_name(.leader))]
    NotLeader {
        leader: Option<NodeId>,
        leader_addrs: Option<NodeAddrs>,
    },
    #[error("command of {size} bytes exceeds the limit of {MAX_COMMAND_BYTES} bytes")]
    TooLarge { size: usize },
    #[error("no answer within {timeout:?}; the entry may or may not commit")]
    Timeout { timeout: Duration },
    #[error("membership change refused: {0}")]
    Membership(String),
    #[error("consensus stopped: {0}")]
    Stopped(String),
}

fn leader_name(leader: &Option<NodeId>) -> String {
    match leader {
        Some(id) => format!("node {id}"),
        None => "unknown".to_string(),
    }
}

impl WriteError {
    fn from_raft(e: RaftError<NodeId, ClientWriteError<NodeId, NodeAddrs>>) -> Self {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => WriteError::NotLeader {
                leader: f.leader_id,
                leader_addrs: f.leader_node,
            },
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                WriteError::Membership(e.to_string())
            }
            RaftError::Fatal(f) => WriteError::Stopped(f.to_string()),
        }
    }
}

/// Why [`Consensus::initialize`] failed.
#[derive(Debug, thiserror::Error)]
pub enum InitializeFailed {
    #[error("this node ({node}) is not among the initial members")]
    NotAMember { node: NodeId },
    #[error("consensus stopped: {0}")]
    Stopped(String),
}

/// The cluster's id (`[cluster] id`): carried by every Raft request, so that nodes of another
/// cluster that name this cluster's addresses are never answered.
pub type ClusterId = u64;

/// One node's consensus: the Raft instance, its storage and its RPC server.
pub struct Consensus {
    node_id: NodeId,
    node: NodeAddrs,
    raft: Raft<TypeConfig>,
    server: ServerHandle,
    fault_hook: FaultHook,
    timings: RaftTimings,
    /// Lets [`Consensus::shutdown`] wait until openraft's tasks have dropped the storage.
    database: std::sync::Weak<redb::Database>,
    /// The pre-vote gate's task ([`prevote`]), if pre-vote is on; aborted when dropped.
    gate: Option<AbortOnDrop>,
    /// Whether the RPC server answers (see [`RaftTimings::held`]).
    admitted: Arc<std::sync::atomic::AtomicBool>,
    /// When this node last acknowledged a leader (see [`acks`]).
    contact: Arc<acks::Acknowledged>,
    /// What the voters that elected this node said of their last acknowledgements.
    vote_ages: Arc<acks::VoteAges>,
    /// The store's committed index, plus one (0: none): see [`Consensus::committed_index`].
    committed: Arc<std::sync::atomic::AtomicU64>,
    /// Makes the committed log id durable: see [`Consensus::persist_committed`].
    durable: store::Durable,
    /// As leader, what its followers matched: see [`Consensus::confirm_since_now`].
    followed: Arc<followed::Followed>,
    /// Sends application requests to peers ([`Consensus::ask`]).
    asker: Box<dyn Asker>,
    /// Answers application requests once set ([`Consensus::answer_with`]).
    answerer: net::AnswererSlot,
}

/// What an [`Asker`] returns: [`net::NetworkFactory::ask`]'s future, boxed.
type Asked<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<String, net::AskFailed>> + Send + 'a>,
>;

/// [`net::NetworkFactory::ask`] without the transport's type.
trait Asker: Send + Sync {
    fn ask(&self, target: NodeId, node: NodeAddrs, body: String, ttl: Duration) -> Asked<'_>;
}

impl<T: Transport> Asker for net::NetworkFactory<T> {
    fn ask(&self, target: NodeId, node: NodeAddrs, body: String, ttl: Duration) -> Asked<'_> {
        Box::pin(net::NetworkFactory::ask(self, target, node, body, ttl))
    }
}

/// A task aborted when its handle is dropped.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl AbortOnDrop {
    /// Aborts the task and waits until it has ended (and dropped what it held).
    async fn stop(mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

impl Consensus {
    /// Opens (or creates) the node's database at `db_path`, listens on every address of `node`
    /// with TCP and starts Raft. An existing database restores vote, log and state machine.
    pub async fn open<A: Application>(
        cluster: ClusterId,
        node_id: NodeId,
        node: NodeAddrs,
        db_path: &Path,
        app: A,
        timings: RaftTimings,
    ) -> Result<Self, OpenError> {
        let mut listeners = Vec::with_capacity(node.addrs.len());
        for addr in &node.addrs {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| OpenError::Listen {
                    addr: *addr,
                    source,
                })?;
            listeners.push(listener);
        }
        Self::open_with(
            cluster,
            node_id,
            db_path,
            app,
            timings,
            TcpTransport,
            listeners,
            FaultHook::default(),
        )
        .await
    }

    /// Like [`Consensus::open`], with already bound listeners (their local addresses, in order,
    /// become the node's addresses), a chosen transport for outgoing RPCs and a fault hook
    /// (which may be shared between nodes of one test process).
    // Each argument is a separate choice of the daemon, the simulator or a test; a struct
    // would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub async fn open_with<A: Application, T: Transport, L: Listener<Stream = T::Stream>>(
        cluster: ClusterId,
        node_id: NodeId,
        db_path: &Path,
        app: A,
        timings: RaftTimings,
        transport: T,
        listeners: Vec<L>,
        fault_hook: FaultHook,
    ) -> Result<Self, OpenError> {
        if listeners.is_empty() {
            return Err(OpenError::NoAddress);
        }
        let mut addrs = Vec::with_capacity(listeners.len());
        for listener in &listeners {
            let addr = listener.local_addr().map_err(|source| OpenError::Listen {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })?;
            addrs.push(addr);
        }
        let node = NodeAddrs::new(addrs);
        let config = Arc::new(timings.to_config()?);
        let (log_store, state_machine) =
            store::open(db_path, Box::new(app), node_id, fault_hook.clone()).map_err(|source| {
                OpenError::Store {
                    path: db_path.display().to_string(),
                    source,
                }
            })?;
        let database = log_store.database_handle();
        let committed = log_store.committed_handle();
        let durable = log_store.durable_handle();
        let log_reader = log_store.clone();
        let acknowledged = Arc::new(acks::Acknowledged::default());
        let vote_ages = Arc::new(acks::VoteAges::default());
        let followed = Arc::new(followed::Followed::default());
        let network = net::NetworkFactory::new(
            node_id,
            cluster,
            transport,
            fault_hook.clone(),
            net::Acks {
                own: Arc::clone(&acknowledged),
                votes: Arc::clone(&vote_ages),
                followed: Arc::clone(&followed),
            },
        );
        let raft = Raft::new(node_id, config, network.clone(), log_store, state_machine)
            .await
            .map_err(|e| OpenError::Raft(e.to_string()))?;
        let pre_vote = net::PreVoteServer {
            contact: Arc::clone(&acknowledged),
            quiet: timings.election_timeout_min,
            log: log_reader.clone(),
            stands: timings.pre_vote,
        };
        let admitted = Arc::new(std::sync::atomic::AtomicBool::new(!timings.held));
        let contact = Arc::clone(&pre_vote.contact);
        let asker: Box<dyn Asker> = Box::new(network.clone());
        let answerer = net::AnswererSlot::default();
        let gate = timings.pre_vote.then(|| {
            AbortOnDrop(Some(tokio::spawn(prevote::run(
                node_id,
                raft.clone(),
                log_reader,
                network,
                Arc::clone(&pre_vote.contact),
                prevote::GateTimes {
                    period: timings.heartbeat_interval,
                    quiet: timings.election_timeout_min,
                    defer: timings.election_timeout_max * 2,
                },
            ))))
        });
        let server = net::serve(
            listeners,
            node_id,
            cluster,
            raft.clone(),
            fault_hook.clone(),
            net::Answers {
                pre_vote,
                application: Arc::clone(&answerer),
            },
            Arc::clone(&admitted),
        );
        tracing::info!(node_id, addrs = %node, "consensus open");
        Ok(Self {
            node_id,
            node,
            raft,
            server,
            fault_hook,
            timings,
            database,
            gate,
            admitted,
            contact,
            vote_ages,
            committed,
            durable,
            followed,
            asker,
            answerer,
        })
    }

    /// Serves Raft RPCs on `listener` too: an address a running configuration gave this node
    /// (`halcyon apply` added a network with this node's interface on it). Refused when that
    /// address is served already.
    pub fn serve_also<L: Listener>(&self, listener: L) -> std::io::Result<()> {
        self.server.serve_also(listener)
    }

    /// Stops serving Raft RPCs on `addr` (its network was removed); false when it was not
    /// served.
    pub fn stop_serving(&self, addr: SocketAddr) -> bool {
        self.server.close(addr)
    }

    /// The addresses Raft RPCs are served on.
    pub fn served_addrs(&self) -> Vec<SocketAddr> {
        self.server.addrs()
    }

    /// Bootstraps a new cluster with these voters. A no-op when this node already has a
    /// membership (initialized before, or joined an existing cluster).
    pub async fn initialize(
        &self,
        members: BTreeMap<NodeId, NodeAddrs>,
    ) -> Result<(), InitializeFailed> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| InitializeFailed::Stopped(e.to_string()))?;
        if initialized {
            return Ok(());
        }
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotInMembers(_))) => {
                Err(InitializeFailed::NotAMember { node: self.node_id })
            }
            Err(RaftError::Fatal(f)) => Err(InitializeFailed::Stopped(f.to_string())),
        }
    }

    /// Appends a command to the replicated log and returns what the application's `apply`
    /// returned for it, once it is committed and applied on this node (the leader).
    pub async fn write(&self, command: Vec<u8>) -> Result<Reply, WriteError> {
        if command.len() > MAX_COMMAND_BYTES {
            return Err(WriteError::TooLarge {
                size: command.len(),
            });
        }
        let timeout = self.timings.write_timeout;
        match tokio::time::timeout(timeout, self.raft.client_write(Command(command))).await {
            Ok(Ok(response)) => Ok(response.data),
            Ok(Err(e)) => Err(WriteError::from_raft(e)),
            Err(_) => Err(WriteError::Timeout { timeout }),
        }
    }

    /// The term this node leads, if it believes it leads. Not a lease: see
    /// [`Consensus::leadership_confirmed`].
    ///
    /// Read from openraft's server metrics, the watch the daemon's tasks wake on: openraft
    /// publishes them before its full metrics, so a task woken by a change of leadership
    /// that read the full metrics could find the old state, decide that nothing changed and
    /// sleep until some other change: a new coordinator that did nothing for 90 s after the
    /// old one was powered off (issue 21, the fast profile's stall in `halcyon-lab compare`).
    pub fn leading_term(&self) -> Option<u64> {
        let server = self.raft.server_metrics();
        let server = server.borrow();
        (server.state == ServerState::Leader && server.current_leader == Some(self.node_id))
            .then(|| server.vote.leader_id().get_term())
    }

    /// Whether this node currently believes it is the leader ([`Consensus::leading_term`]).
    pub fn is_leader(&self) -> bool {
        self.leading_term().is_some()
    }

    /// The index of the last entry this node knows to be committed, as openraft last saved it
    /// in the store (openraft 0.9 publishes no commit index in its metrics). On a follower it
    /// can trail the leader's by a heartbeat; applied <= committed.
    pub fn committed_index(&self) -> Option<u64> {
        self.committed
            .load(std::sync::atomic::Ordering::Relaxed)
            .checked_sub(1)
    }

    /// Whether this replica has caught up with a leader since it opened: it leads, or a
    /// leader's append-entries matched its log (or its snapshot was installed), and it has
    /// applied every entry it knows to be committed. Until then what it applied may be older
    /// than the cluster's (its committed log id is learned from the leader).
    pub fn caught_up(&self) -> bool {
        let matched = self.is_leader() || self.contact.has_matched();
        let applied = self.raft.metrics().borrow().last_applied.map(|l| l.index);
        matched && applied >= self.committed_index()
    }

    /// Makes the committed log id the store holds durable now (it is written without waiting
    /// for the disk, and a process killed or exiting without closing the store loses the last
    /// one): a restart then applies at least what was committed now. The daemon calls it when
    /// its running configuration changes and when it stops, so that it starts again from that
    /// configuration (a node restarted on an older one listened on its old addresses).
    pub fn persist_committed(&self) -> Result<(), String> {
        self.durable.persist().map_err(|e| e.to_string())
    }

    /// The leader this node knows of, if any (from the server metrics, as
    /// [`Consensus::leading_term`]).
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.server_metrics().borrow().current_leader
    }

    /// Sends the application request `body` to member `target` over the Raft transport
    /// (its connections, its networks, its TLS) and returns the answer of the `answerer`
    /// that node set ([`Consensus::answer_with`]), within `ttl`. A node that set none says
    /// so ([`net::AskFailed::NoAnswerer`]); one of an earlier version leaves it unanswered
    /// ([`net::AskFailed::Unanswered`]). A target this replica's membership does not hold
    /// is not asked ([`net::AskFailed::NotMember`]).
    pub async fn ask(
        &self,
        target: NodeId,
        body: String,
        ttl: Duration,
    ) -> Result<String, net::AskFailed> {
        let node = {
            let metrics = self.raft.server_metrics();
            let metrics = metrics.borrow();
            metrics
                .membership_config
                .membership()
                .get_node(&target)
                .cloned()
        };
        let node = node.ok_or(net::AskFailed::NotMember)?;
        self.asker.ask(target, node, body, ttl).await
    }

    /// Answers application requests ([`Consensus::ask`]) with `answerer` from now on;
    /// false (and nothing changed) when an answerer was set before.
    pub fn answer_with(&self, answerer: net::Answerer) -> bool {
        self.answerer.set(answerer).is_ok()
    }

    /// openraft's metrics, updated as they change.
    pub fn metrics(&self) -> watch::Receiver<Metrics> {
        self.raft.metrics()
    }

    /// openraft's server metrics ([`ServerMetrics`]): marked changed when the vote, the
    /// leader, the server state or the membership changes.
    pub fn server_metrics(&self) -> watch::Receiver<ServerMetrics> {
        self.raft.server_metrics()
    }

    /// Resolves once this replica has applied the entry at `index` (any entry: also the blank
    /// entry a new leader appends, which reaches no [`Application`]). Wakes on every change of
    /// openraft's metrics while it waits, so it is meant for short waits.
    pub async fn applied_at_least(&self, index: u64) {
        let mut metrics = self.raft.metrics();
        loop {
            if metrics
                .borrow_and_update()
                .last_applied
                .map_or(0, |l| l.index)
                >= index
            {
                return;
            }
            if metrics.changed().await.is_err() {
                // The core has ended: nothing will be applied any more.
                return std::future::pending().await;
            }
        }
    }

    /// Resolves when openraft's core has stopped on an error, with that error: a storage
    /// failure (a full disk, an I/O error, an entry that does not decode). From then on this
    /// replica neither appends nor applies anything. Never resolves after a shutdown asked for
    /// ([`Consensus::shutdown`]). Wakes only when the server metrics change (rarely), so
    /// waiting on it costs nothing while all is well.
    pub async fn failed(&self) -> String {
        let mut server = self.raft.server_metrics();
        // The core owns the only sender: `changed` fails once the core has ended.
        while server.changed().await.is_ok() {}
        let why = match &self.raft.metrics().borrow().running_state {
            Err(openraft::error::Fatal::Stopped) => None,
            Err(fatal) => Some(fatal.to_string()),
            Ok(()) => Some("openraft's core ended without an error".to_owned()),
        };
        match why {
            Some(why) => why,
            None => std::future::pending().await,
        }
    }

    /// A quorum's confirmation that this node leads, for lease grants (openraft's
    /// `ensure_linearizable`): the read index. The round counts as this node's own
    /// acknowledgement of its leadership from before it starts ([`acks`]), so a vote this
    /// node answers later never makes a lease it granted look older than it is.
    pub async fn confirm_leadership(&self) -> Result<u64, String> {
        self.contact.lead(tokio::time::Instant::now());
        match self.raft.ensure_linearizable().await {
            Ok(read) => Ok(read.map_or(0, |l| l.index)),
            Err(e) => Err(e.to_string()),
        }
    }

    /// A quorum's confirmation that this node leads, for a lease renewal that arrived now,
    /// without a round of its own: openraft's heartbeats (append-entries sent to every
    /// follower three times per heartbeat interval) are the rounds. It returns once a
    /// quorum of each voter set has matched append-entries sent from now on under the vote
    /// this node leads with ([`followed`]), and the core still holds that vote; the read
    /// index is the committed index then. Until this leader has applied an entry of its own
    /// term (just elected), it runs openraft's round instead
    /// ([`Consensus::confirm_leadership`], whose read index covers the leader's first entry).
    ///
    /// This node counts itself in the quorum, so it records its own acknowledgement first
    /// ([`acks`]): a vote it answers afterwards never makes a lease it grants now look older
    /// than it is. A vote it answered before that changed the vote its core holds, which the
    /// last check (in the core's order) finds. Waits as long as no quorum confirms: the
    /// caller bounds it.
    pub async fn confirm_since_now(&self) -> Result<u64, String> {
        let arrived = tokio::time::Instant::now();
        self.contact.lead(arrived);
        let mut changes = self.followed.changes();
        // Read again only when they may have changed (a confirmation is checked against those
        // in force at its end): a waiting renewal wakes at every follower's match.
        let mut voters = self.voter_configs();
        loop {
            changes.borrow_and_update();
            let (vote, applied) = {
                let metrics = self.raft.metrics();
                let metrics = metrics.borrow();
                (metrics.vote, metrics.last_applied)
            };
            let leading = vote.is_committed()
                && vote.leader_id().voted_for() == Some(self.node_id)
                && self.is_leader();
            if !leading {
                return Err("not leader".into());
            }
            if applied.map(|l| l.leader_id.term) != Some(vote.leader_id().get_term()) {
                return self.confirm_leadership().await;
            }
            if self
                .followed
                .confirmed_since(&voters, self.node_id, &vote, arrived)
            {
                let now_in_force = self.voter_configs();
                if now_in_force != voters {
                    voters = now_in_force;
                    continue;
                }
                let held = self
                    .raft
                    .with_raft_state(|st| *st.vote_ref())
                    .await
                    .map_err(|e| e.to_string())?;
                if held != vote {
                    return Err(format!("not leader: the vote is {held} now"));
                }
                return Ok(self.committed_index().unwrap_or(0));
            }
            if changes.changed().await.is_err() {
                return Err("the node is shutting down".into());
            }
        }
    }

    /// For `term` (which this node won): how long ago, at most, each voter that granted its
    /// vote, this node included, last acknowledged a leader ([`acks`]). Voters of an earlier
    /// version, and votes whose answer did not arrive, are missing.
    pub fn election_ack_ages(&self, term: u64) -> BTreeMap<NodeId, Duration> {
        self.vote_ages.ages(term, tokio::time::Instant::now())
    }

    /// The voter sets of the membership in force: one, or two while the voters change
    /// (joint consensus; a quorum is then a majority of each).
    pub fn voter_configs(&self) -> Vec<BTreeSet<NodeId>> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_joint_config()
            .clone()
    }

    /// On a follower: milliseconds since it last accepted an append-entries or snapshot from
    /// a leader (`None` before the first). openraft keeps a follower's leader in its metrics
    /// after the leader went silent (the pre-vote gate holds a cut-off follower's elections
    /// back), so "a leader is known" alone does not say the follower hears one.
    pub fn millis_since_leader_contact(&self) -> Option<u64> {
        self.contact.last_accepted().map(|at| {
            u64::try_from(
                tokio::time::Instant::now()
                    .saturating_duration_since(at)
                    .as_millis(),
            )
            .unwrap_or(u64::MAX)
        })
    }

    /// Opens a held RPC server ([`RaftTimings::held`]): from now on it answers.
    pub fn admit(&self) {
        self.admitted
            .store(true, std::sync::atomic::Ordering::SeqCst);
        tracing::info!(
            node_id = self.node_id,
            "consensus admitted: answering Raft requests"
        );
    }

    /// Whether the RPC server answers (false while held).
    pub fn is_admitted(&self) -> bool {
        self.admitted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether this node's Raft membership is set (by its own initialization or a leader's
    /// log): false on a new store.
    pub fn is_initialized(&self) -> bool {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .next()
            .is_some()
    }

    /// The current learners (members that receive the log and do not vote).
    pub fn learners(&self) -> BTreeSet<NodeId> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .learner_ids()
            .collect()
    }

    /// Whether this node leads and a quorum has acknowledged its leadership in this term (a
    /// single voter's own acknowledgement counts). openraft restores a restarted former leader
    /// as leader of its old term until it hears the higher term; until then this is false.
    pub fn leadership_confirmed(&self) -> bool {
        self.confirmed_term().is_some()
    }

    /// The term this node leads with a quorum's acknowledgement ([`leadership_confirmed`]).
    /// The acknowledgement is in openraft's full metrics, which can lag the server metrics
    /// for a moment: it counts only when both show this leadership (the same term).
    ///
    /// [`leadership_confirmed`]: Consensus::leadership_confirmed
    pub fn confirmed_term(&self) -> Option<u64> {
        let term = self.leading_term()?;
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let acked = metrics.state == ServerState::Leader
            && metrics.current_term == term
            && metrics.millis_since_quorum_ack.is_some();
        acked.then_some(term)
    }

    /// Whether this node leads with a quorum's acknowledgement within the last
    /// `election_timeout_min` ([`RaftTimings`]): [`leadership_confirmed`] stays true for a
    /// leader cut off from its quorum (openraft 0.9 keeps it leading its term) while the
    /// others may have elected another in a higher term; this does not. What a node that
    /// rebuilt its store is told about the leader's view comes only from such a leader
    /// (the daemon's admission).
    ///
    /// [`leadership_confirmed`]: Consensus::leadership_confirmed
    pub fn leads_now(&self) -> bool {
        self.leadership_confirmed()
            && self
                .millis_since_quorum_ack()
                .is_some_and(|ms| Duration::from_millis(ms) < self.timings.election_timeout_min)
    }

    /// On the leader: milliseconds since a quorum last acknowledged its append-entries (`None`
    /// elsewhere, or before the first acknowledgement). Frozen if the Raft core stalls.
    pub fn millis_since_quorum_ack(&self) -> Option<u64> {
        self.raft.metrics().borrow().millis_since_quorum_ack
    }

    /// Raft requests of another cluster dropped by this node's server since it started.
    pub fn foreign_requests(&self) -> u64 {
        self.server.foreign_requests()
    }

    /// The current voters.
    pub fn voters(&self) -> BTreeSet<NodeId> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    /// On the leader: adds `id` as a learner, waits until it has caught up, then makes it a
    /// voter.
    pub async fn add_voter(&self, id: NodeId, node: NodeAddrs) -> Result<(), WriteError> {
        let timeout = self.timings.write_timeout;
        let change = async {
            self.raft.add_learner(id, node, true).await?;
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                .await
        };
        match tokio::time::timeout(timeout, change).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(WriteError::from_raft(e)),
            Err(_) => Err(WriteError::Timeout { timeout }),
        }
    }

    /// On the leader: removes voter `id` from the cluster (it is not kept as a learner), so
    /// the leader also forgets what it replicated to it: a node rebuilt with a new, empty
    /// store can be added again ([`Consensus::add_voter`]).
    pub async fn remove_voter(&self, id: NodeId) -> Result<(), WriteError> {
        self.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])))
            .await
    }

    /// On the leader: `change`, committed within the write timeout.
    async fn change_membership(
        &self,
        change: ChangeMembers<NodeId, NodeAddrs>,
    ) -> Result<(), WriteError> {
        let timeout = self.timings.write_timeout;
        match tokio::time::timeout(timeout, self.raft.change_membership(change, false)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(WriteError::from_raft(e)),
            Err(_) => Err(WriteError::Timeout { timeout }),
        }
    }

    /// The consensus addresses the membership holds for each member (voters and learners).
    pub fn member_addrs(&self) -> BTreeMap<NodeId, NodeAddrs> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, node)| (*id, node.clone()))
            .collect()
    }

    /// On the leader: member `id`'s consensus addresses from now on (its interfaces
    /// changed), committed as a membership change that keeps the voters.
    pub async fn set_member_addrs(&self, id: NodeId, node: NodeAddrs) -> Result<(), WriteError> {
        self.change_membership(ChangeMembers::SetNodes(BTreeMap::from([(id, node)])))
            .await
    }

    /// On the leader: takes `id` out of the membership entirely, whether it votes or not (a
    /// node the configuration no longer has).
    pub async fn remove_member(&self, id: NodeId) -> Result<(), WriteError> {
        let change = if self.voters().contains(&id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.change_membership(change).await
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// This node's consensus addresses (the listeners' bound addresses).
    pub fn node(&self) -> &NodeAddrs {
        &self.node
    }

    /// The fault hook the network layer consults (tests partition nodes with it).
    pub fn fault_hook(&self) -> &FaultHook {
        &self.fault_hook
    }

    /// The underlying Raft instance, for what the facade does not cover.
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// Stops serving RPCs, shuts the Raft core down and waits (at most [`SHUTDOWN_TIMEOUT`])
    /// until openraft's tasks have released the database, so the node can be reopened.
    pub async fn shutdown(self) {
        let deadline = tokio::time::Instant::now() + SHUTDOWN_TIMEOUT;
        if let Some(gate) = self.gate {
            gate.stop().await;
        }
        self.server.stop().await;
        match tokio::time::timeout_at(deadline, self.raft.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(node_id = self.node_id, "raft shutdown: {e}"),
            Err(_) => tracing::warn!(node_id = self.node_id, "raft shutdown timed out"),
        }
        drop(self.raft);
        while self.database.strong_count() > 0 {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    node_id = self.node_id,
                    "database still in use after shutdown"
                );
                break;
            }
            tokio::time::sleep(SHUTDOWN_POLL_INTERVAL).await;
        }
        tracing::info!(node_id = self.node_id, "consensus shut down");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_that_openraft_rejects_are_refused() {
        assert!(RaftTimings::default().to_config().is_ok());
        let heartbeat_too_slow = RaftTimings {
            heartbeat_interval: Duration::from_millis(500),
            ..RaftTimings::default()
        };
        assert!(matches!(
            heartbeat_too_slow.to_config(),
            Err(OpenError::Config(_))
        ));
        let inverted = RaftTimings {
            election_timeout_min: Duration::from_millis(400),
            ..RaftTimings::default()
        };
        assert!(matches!(inverted.to_config(), Err(OpenError::Config(_))));
    }

    #[test]
    fn the_frame_limit_holds_a_full_append_entries() {
        // JSON spells a byte as up to 4 characters ("255,").
        const _: () =
            assert!(MAX_COMMAND_BYTES * 4 * (MAX_PAYLOAD_ENTRIES as usize) < net::MAX_FRAME_BYTES);
        const _: () = assert!(SNAPSHOT_CHUNK_BYTES * 4 < net::MAX_FRAME_BYTES);
    }
}
