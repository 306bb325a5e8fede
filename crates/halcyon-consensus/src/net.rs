//! Raft RPCs over streams: length-prefixed JSON frames, one request and one reply at a time on a
//! connection, on every IP network of a peer.
//!
//! Wire format: a frame is a 4-byte big-endian length followed by that many bytes of JSON. The
//! client sends a `RequestFrame` (cluster id, sender, addressee, RPC); the server answers with
//! one `ReplyFrame`. A connection carries one exchange at a time; an idle connection returns to
//! a small per-peer pool.
//!
//! Invariants:
//! - every client call finishes within the `hard_ttl` openraft gives it; a connection whose
//!   exchange did not finish is dropped, never reused (so a late reply is never read as the
//!   answer to another request);
//! - a peer's addresses are tried in preference order, except that addresses which failed in
//!   the last [`ADDRESS_RETRY_AFTER`] are tried last; each connect gets a share of the remaining
//!   deadline so a black-holed first network leaves time for the second;
//! - the [`FaultHook`] is consulted on both sides: a blocked link or address fails on the client
//!   before connecting and is dropped by the server, so a partition is symmetric even when only
//!   one process's hook is set;
//! - frames larger than [`MAX_FRAME_BYTES`] are refused on both sides;
//! - a request of another cluster (another cluster id) never reaches Raft: the connection is
//!   closed unanswered, the request counted ([`ServerHandle::foreign_requests`]) and logged at
//!   most once per [`FOREIGN_LOG_INTERVAL`] (a node of another cluster whose configuration
//!   names this cluster's addresses used to get vote answers, issue 15).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{LogId, RPCTypes, Raft};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::acks::{Acknowledged, VoteAges};
use crate::followed::Followed;
use crate::{ClusterId, NodeAddrs, NodeId, TypeConfig};

/// Largest frame sent or accepted.
pub const MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;
/// Most bytes reserved for a frame's body before they arrive.
pub const FRAME_PREALLOCATE_MAX_BYTES: usize = 64 * 1024;
/// Longest a single connect may take, even when the RPC's deadline is longer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long an address that failed is tried after the peer's other addresses.
pub const ADDRESS_RETRY_AFTER: Duration = Duration::from_secs(2);
/// Idle connections kept per peer.
pub const MAX_IDLE_CONNECTIONS_PER_PEER: usize = 4;
/// Connections a listener serves at once; more are closed at accept.
pub const MAX_CONNECTIONS_PER_LISTENER: usize = 256;
/// A served connection with no request for this long is closed.
pub const SERVER_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Least time between two log lines about requests of another cluster.
pub const FOREIGN_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Pause before replication retries a peer none of whose addresses answered.
pub const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(100);

/// Answers the application's own requests on the Raft transport ([`Rpc::Application`]):
/// given the sender's id and the request's text, the answer's text, or `None` to leave it
/// unanswered (the connection is closed, as by a node without an answerer).
pub type Answerer = Arc<
    dyn Fn(NodeId, String) -> std::pin::Pin<Box<dyn Future<Output = Option<String>> + Send>>
        + Send
        + Sync,
>;

/// Where a node's [`Answerer`] is set once the application is ready; until then
/// application requests are closed unanswered.
pub type AnswererSlot = Arc<std::sync::OnceLock<Answerer>>;

/// Why an application request ([`NetworkFactory::ask`]) has no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AskFailed {
    /// The peer's application has set no [`Answerer`] (yet).
    NoAnswerer,
    /// The peer closed the connection unanswered (its answerer left it so, or it is of an
    /// earlier version, which cannot decode the request), or none of its addresses could
    /// be reached, or it answered with another kind of reply.
    Unanswered,
    /// The deadline passed.
    Timeout,
    /// The peer is not a member in the asker's replica of the membership, which therefore
    /// has no address for it: not asked. A node whose store is new learns its leader's id
    /// (from its first append-entries) before it has applied the membership that holds
    /// the leader's addresses.
    NotMember,
}

/// Outgoing connections. The tokio TCP implementation is [`TcpTransport`]; a simulator can plug
/// in its own sockets.
pub trait Transport: Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn connect(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// Incoming connections on one address.
pub trait Listener: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// TCP through tokio, with Nagle's algorithm off (frames are small and latency matters).
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpTransport;

impl Transport for TcpTransport {
    type Stream = tokio::net::TcpStream;

    async fn connect(&self, addr: SocketAddr) -> io::Result<Self::Stream> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

impl Listener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, peer) = tokio::net::TcpListener::accept(self).await?;
        stream.set_nodelay(true)?;
        Ok((stream, peer))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpListener::local_addr(self)
    }
}

/// Injected faults, shared by clones: blocked links between nodes, blocked addresses, slow
/// disks and failing disks. Tests and the simulator partition nodes with it; it is empty
/// (everything allowed, no delay, no disk error) by default, and the daemon never sets one.
#[derive(Debug, Clone, Default)]
pub struct FaultHook {
    faults: Arc<RwLock<Faults>>,
}

#[derive(Debug, Default)]
struct Faults {
    /// Ordered pairs (from, to) whose traffic is dropped.
    blocked_links: HashSet<(NodeId, NodeId)>,
    /// Nodes cut off from every other node, both ways.
    isolated: HashSet<NodeId>,
    /// Destination addresses whose traffic is dropped.
    blocked_addrs: HashSet<SocketAddr>,
    /// Nodes whose log store waits this long (never zero) before each durable append or vote.
    disk_delays: HashMap<NodeId, Duration>,
    /// Nodes whose disk is full or failing: every write of their store fails.
    disk_errors: HashSet<NodeId>,
    /// Nodes that answer every request this long (never zero) after handling it, as a busy
    /// node would.
    reply_delays: HashMap<NodeId, Duration>,
}

impl FaultHook {
    /// Cuts `node` off from every other node, both ways.
    pub fn isolate(&self, node: NodeId) {
        self.write().isolated.insert(node);
    }

    /// Drops traffic between `a` and `b`, both ways.
    pub fn block_link(&self, a: NodeId, b: NodeId) {
        let mut faults = self.write();
        faults.blocked_links.insert((a, b));
        faults.blocked_links.insert((b, a));
    }

    /// Drops traffic to `addr` (connects fail; the server closes connections accepted on it).
    pub fn block_addr(&self, addr: SocketAddr) {
        self.write().blocked_addrs.insert(addr);
    }

    pub fn unblock_addr(&self, addr: SocketAddr) {
        self.write().blocked_addrs.remove(&addr);
    }

    /// Makes node `node`'s log store wait `delay` (tokio time) before it makes an append durable
    /// or saves a vote, as a slow disk would. A zero delay clears it.
    pub fn set_disk_delay(&self, node: NodeId, delay: Duration) {
        let mut faults = self.write();
        if delay.is_zero() {
            faults.disk_delays.remove(&node);
        } else {
            faults.disk_delays.insert(node, delay);
        }
    }

    pub fn clear_disk_delay(&self, node: NodeId) {
        self.write().disk_delays.remove(&node);
    }

    /// How long node `node`'s log store waits before a durable write (zero: no delay).
    pub fn disk_delay(&self, node: NodeId) -> Duration {
        let faults = self.faults.read().expect(crate::POISONED);
        faults
            .disk_delays
            .get(&node)
            .copied()
            .unwrap_or(Duration::ZERO)
    }

    /// Makes node `node` send each reply `delay` (tokio time) after it handled the request,
    /// as a busy node would. A zero delay clears it.
    pub fn set_reply_delay(&self, node: NodeId, delay: Duration) {
        let mut faults = self.write();
        if delay.is_zero() {
            faults.reply_delays.remove(&node);
        } else {
            faults.reply_delays.insert(node, delay);
        }
    }

    /// How long node `node` holds each reply (zero: no delay).
    pub fn reply_delay(&self, node: NodeId) -> Duration {
        let faults = self.faults.read().expect(crate::POISONED);
        faults
            .reply_delays
            .get(&node)
            .copied()
            .unwrap_or(Duration::ZERO)
    }

    /// Makes every write of node `node`'s store (log appends, truncations and purges, the
    /// vote, the committed log id, snapshots) fail with the error a full disk gives
    /// (`ENOSPC`), writing nothing, until [`FaultHook::clear_disk_error`]. Reads still work.
    pub fn set_disk_error(&self, node: NodeId) {
        self.write().disk_errors.insert(node);
    }

    pub fn clear_disk_error(&self, node: NodeId) {
        self.write().disk_errors.remove(&node);
    }

    /// Whether node `node`'s store writes fail (see [`FaultHook::set_disk_error`]).
    pub fn disk_error(&self, node: NodeId) -> bool {
        let faults = self.faults.read().expect(crate::POISONED);
        faults.disk_errors.contains(&node)
    }

    /// Removes every fault, disk delays and disk errors included.
    pub fn heal(&self) {
        *self.write() = Faults::default();
    }

    /// Whether traffic from node `from` to node `to` passes.
    pub fn allows(&self, from: NodeId, to: NodeId) -> bool {
        let faults = self.faults.read().expect(crate::POISONED);
        if from == to {
            return true;
        }
        !(faults.isolated.contains(&from)
            || faults.isolated.contains(&to)
            || faults.blocked_links.contains(&(from, to)))
    }

    /// Whether traffic to `addr` passes.
    pub fn allows_addr(&self, addr: SocketAddr) -> bool {
        let faults = self.faults.read().expect(crate::POISONED);
        !faults.blocked_addrs.contains(&addr)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Faults> {
        self.faults.write().expect(crate::POISONED)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct RequestFrame {
    cluster: ClusterId,
    from: NodeId,
    to: NodeId,
    rpc: Rpc,
    /// A vote asks the voter to say how long ago it last acknowledged a leader
    /// ([`ReplyFrame::VoteAcked`], `acks`). A node of an earlier version ignores it and
    /// answers [`ReplyFrame::Vote`].
    #[serde(default)]
    ack_age: bool,
}

#[derive(Debug, Serialize, Deserialize)]
enum Rpc {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Would the addressee vote now? (See `prevote`.) Answered by Halcyon, not openraft.
    PreVote(PreVoteRequest),
    /// A request of the application's own (the daemon's lease renewals), answered by the
    /// [`Answerer`] it set ([`ReplyFrame::NoAnswerer`] before it set one); a node of an
    /// earlier version cannot decode it and closes the connection unanswered.
    Application(String),
}

/// A pre-vote asked by a voter that hears no leader (see `prevote`).
#[derive(Debug, Serialize, Deserialize)]
struct PreVoteRequest {
    /// The asker's current term (for the addressee's log only).
    term: u64,
    /// The asker's log, compared as a vote compares it. Absent from a node of an earlier
    /// version (or one that could not read its log): granted without the comparison, as
    /// before.
    #[serde(default)]
    log: Option<CandidateLog>,
}

/// The last log id of a pre-vote's asker (or of the voter answering).
#[derive(Debug, Serialize, Deserialize)]
struct CandidateLog {
    last_log_id: Option<LogId<NodeId>>,
}

/// The answer to a [`PreVoteRequest`].
#[derive(Debug, Serialize, Deserialize)]
struct PreVoteResponse {
    granted: bool,
    /// The responder's own log (absent from a node of an earlier version, and from a voter
    /// that does not stand through the gate, the witness): with `granted`, it is a voter
    /// that hears no leader either, so a candidate too (`prevote::outranked`).
    #[serde(default)]
    log: Option<CandidateLog>,
}

#[derive(Debug, Serialize, Deserialize)]
enum ReplyFrame {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// A vote's answer with how long before it the voter last acknowledged a leader, in
    /// microseconds of its clock (`acks`).
    VoteAcked {
        reply: Result<VoteResponse<NodeId>, RaftError<NodeId>>,
        ack_age_us: u64,
    },
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    PreVote(PreVoteResponse),
    /// The [`Answerer`]'s answer to an [`Rpc::Application`].
    Application(String),
    /// An [`Rpc::Application`] reached a node whose application has set no [`Answerer`]
    /// (yet: it is starting, or it is a witness).
    NoAnswerer,
    /// The request was addressed to another node than the one listening here.
    WrongNode {
        serving: NodeId,
    },
}

/// Encodes one frame: the length, then the JSON (public for the fuzz tests).
pub fn encode_frame<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 4];
    serde_json::to_writer(&mut buf, value).map_err(io::Error::other)?;
    let len = buf.len() - 4;
    if len > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {len} bytes exceeds {MAX_FRAME_BYTES}"),
        ));
    }
    let len = u32::try_from(len).expect("MAX_FRAME_BYTES fits in u32");
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

/// Reads one frame and decodes its JSON (the frame decoder; public for the fuzz tests).
///
/// Memory follows the bytes that actually arrive, not the length a peer claims: the body
/// buffer starts at most [`FRAME_PREALLOCATE_MAX_BYTES`] and grows as data comes (a 4-byte
/// header claiming [`MAX_FRAME_BYTES`] used to allocate all of it at once, from any
/// connection).
pub async fn read_frame<S: AsyncRead + Unpin, T: DeserializeOwned>(
    stream: &mut S,
) -> io::Result<T> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).await?;
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {MAX_FRAME_BYTES}"),
        ));
    }
    let mut body = Vec::with_capacity(len.min(FRAME_PREALLOCATE_MAX_BYTES));
    (&mut *stream)
        .take(len as u64)
        .read_to_end(&mut body)
        .await?;
    if body.len() < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame truncated: {} of {len} bytes", body.len()),
        ));
    }
    serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &[u8],
) -> io::Result<ReplyFrame> {
    stream.write_all(request).await?;
    stream.flush().await?;
    read_frame(stream).await
}

struct Pooled<S> {
    addr: SocketAddr,
    stream: S,
}

struct Shared<T: Transport> {
    local: NodeId,
    cluster: ClusterId,
    transport: T,
    fault_hook: FaultHook,
    acks: Acks,
    idle: Mutex<HashMap<NodeId, Vec<Pooled<T::Stream>>>>,
    failed_at: Mutex<HashMap<SocketAddr, Instant>>,
}

impl<T: Transport> Shared<T> {
    fn take_idle(&self, peer: NodeId) -> Option<Pooled<T::Stream>> {
        let mut idle = self.idle.lock().expect(crate::POISONED);
        idle.get_mut(&peer).and_then(Vec::pop)
    }

    fn put_idle(&self, peer: NodeId, conn: Pooled<T::Stream>) {
        let mut idle = self.idle.lock().expect(crate::POISONED);
        let conns = idle.entry(peer).or_default();
        if conns.len() < MAX_IDLE_CONNECTIONS_PER_PEER {
            conns.push(conn);
        }
    }

    fn drop_idle(&self, peer: NodeId) {
        let mut idle = self.idle.lock().expect(crate::POISONED);
        idle.remove(&peer);
    }

    fn mark_failed(&self, addr: SocketAddr) {
        let mut failed = self.failed_at.lock().expect(crate::POISONED);
        failed.insert(addr, Instant::now());
    }

    fn mark_ok(&self, addr: SocketAddr) {
        let mut failed = self.failed_at.lock().expect(crate::POISONED);
        failed.remove(&addr);
    }

    /// `addrs` in preference order, recently failed ones moved to the end.
    fn connect_order(&self, addrs: &[SocketAddr]) -> Vec<SocketAddr> {
        let failed = self.failed_at.lock().expect(crate::POISONED);
        let recently_failed = |addr: &SocketAddr| {
            failed
                .get(addr)
                .is_some_and(|at| at.elapsed() < ADDRESS_RETRY_AFTER)
        };
        let (fresh, failed): (Vec<SocketAddr>, Vec<SocketAddr>) =
            addrs.iter().partition(|addr| !recently_failed(addr));
        fresh.into_iter().chain(failed).collect()
    }
}

/// Why one call failed, before it becomes openraft's error type.
#[derive(Debug)]
enum CallError {
    /// No address could be reached (or the fault hook blocks the peer).
    Unreachable(io::Error),
    /// The deadline passed.
    Timeout,
    /// The request could not be encoded or is too large.
    Encode(io::Error),
}

/// Creates one [`PeerClient`] per peer; all share the connection pool and the address health
/// (clones too).
pub struct NetworkFactory<T: Transport> {
    shared: Arc<Shared<T>>,
}

impl<T: Transport> Clone for NetworkFactory<T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// What a node's votes carry of acknowledgements (`acks`): its own (taken when it stands),
/// and the answers of the voters that granted it; as leader, its followers' matches
/// (`followed`).
#[derive(Clone, Default)]
pub struct Acks {
    pub own: Arc<Acknowledged>,
    pub votes: Arc<VoteAges>,
    pub followed: Arc<Followed>,
}

impl<T: Transport> NetworkFactory<T> {
    pub fn new(
        local: NodeId,
        cluster: ClusterId,
        transport: T,
        fault_hook: FaultHook,
        acks: Acks,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                local,
                cluster,
                transport,
                fault_hook,
                acks,
                idle: Mutex::new(HashMap::new()),
                failed_at: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl<T: Transport> NetworkFactory<T> {
    /// Asks voter `target` (at `node`) for a pre-vote for a candidate now at `term` whose log
    /// ends at `last_log_id` (`None`: not known, not compared), within `ttl`:
    /// `Some((granted, the voter's last log id when it sent it))`, or `None` when it did not
    /// answer.
    pub(crate) async fn pre_vote(
        &self,
        target: NodeId,
        node: NodeAddrs,
        term: u64,
        last_log_id: Option<Option<LogId<NodeId>>>,
        ttl: Duration,
    ) -> Option<(bool, Option<Option<LogId<NodeId>>>)> {
        let client = PeerClient {
            target,
            node,
            shared: Arc::clone(&self.shared),
        };
        match client
            .call(
                Rpc::PreVote(PreVoteRequest {
                    term,
                    log: last_log_id.map(|last_log_id| CandidateLog { last_log_id }),
                }),
                ttl,
            )
            .await
        {
            Ok(ReplyFrame::PreVote(answer)) => {
                Some((answer.granted, answer.log.map(|log| log.last_log_id)))
            }
            _ => None,
        }
    }

    /// Sends the application request `body` to `target` (at `node`) and returns its
    /// [`Answerer`]'s answer, within `ttl`.
    pub async fn ask(
        &self,
        target: NodeId,
        node: NodeAddrs,
        body: String,
        ttl: Duration,
    ) -> Result<String, AskFailed> {
        let client = PeerClient {
            target,
            node,
            shared: Arc::clone(&self.shared),
        };
        match client.call(Rpc::Application(body), ttl).await {
            Ok(ReplyFrame::Application(answer)) => Ok(answer),
            Ok(ReplyFrame::NoAnswerer) => Err(AskFailed::NoAnswerer),
            Err(CallError::Timeout) => Err(AskFailed::Timeout),
            Ok(_) | Err(_) => Err(AskFailed::Unanswered),
        }
    }
}

impl<T: Transport> RaftNetworkFactory<TypeConfig> for NetworkFactory<T> {
    type Network = PeerClient<T>;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddrs) -> Self::Network {
        PeerClient {
            target,
            node: node.clone(),
            shared: self.shared.clone(),
        }
    }
}

/// RPCs to one peer.
pub struct PeerClient<T: Transport> {
    target: NodeId,
    node: NodeAddrs,
    shared: Arc<Shared<T>>,
}

impl<T: Transport> PeerClient<T> {
    async fn call(&self, rpc: Rpc, ttl: Duration) -> Result<ReplyFrame, CallError> {
        let deadline = Instant::now() + ttl;
        let shared = &self.shared;
        if !shared.fault_hook.allows(shared.local, self.target) {
            shared.drop_idle(self.target);
            return Err(CallError::Unreachable(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!(
                    "link {} -> {} blocked by the fault hook",
                    shared.local, self.target
                ),
            )));
        }
        let ack_age = matches!(rpc, Rpc::Vote(_));
        let request = encode_frame(&RequestFrame {
            cluster: shared.cluster,
            from: shared.local,
            to: self.target,
            rpc,
            ack_age,
        })
        .map_err(CallError::Encode)?;
        // `call_until` watches the deadline itself; this outer bound only backs it up.
        match tokio::time::timeout_at(deadline, self.call_until(&request, deadline)).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout),
        }
    }

    /// One exchange on `stream`, bounded by `deadline`. An address whose exchange fails or
    /// outlives the deadline is marked failed, so the next call prefers another network.
    async fn exchange_until(
        &self,
        stream: &mut T::Stream,
        addr: SocketAddr,
        request: &[u8],
        deadline: Instant,
    ) -> Result<ReplyFrame, CallError> {
        match tokio::time::timeout_at(deadline, exchange(stream, request)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => {
                tracing::debug!(target = self.target, %addr, "exchange failed: {e}");
                self.shared.mark_failed(addr);
                Err(CallError::Unreachable(e))
            }
            Err(_) => {
                tracing::debug!(target = self.target, %addr, "no reply before the deadline");
                self.shared.mark_failed(addr);
                Err(CallError::Timeout)
            }
        }
    }

    async fn call_until(&self, request: &[u8], deadline: Instant) -> Result<ReplyFrame, CallError> {
        let shared = &self.shared;
        // An idle connection first: no connect cost. An error there may just mean a stale
        // connection, so fall through to fresh ones; a timeout ends the call.
        while let Some(mut conn) = shared.take_idle(self.target) {
            if !shared.fault_hook.allows_addr(conn.addr) || !self.node.addrs.contains(&conn.addr) {
                continue;
            }
            match self
                .exchange_until(&mut conn.stream, conn.addr, request, deadline)
                .await
            {
                Ok(reply) => {
                    shared.put_idle(self.target, conn);
                    return Ok(reply);
                }
                Err(CallError::Timeout) => return Err(CallError::Timeout),
                Err(_) => {}
            }
        }
        let order = shared.connect_order(&self.node.addrs);
        let mut last_error = io::Error::new(io::ErrorKind::NotFound, "peer has no address");
        for (position, addr) in order.iter().enumerate() {
            if !shared.fault_hook.allows_addr(*addr) {
                shared.mark_failed(*addr);
                last_error = io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("address {addr} blocked by the fault hook"),
                );
                continue;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let left = u32::try_from(order.len() - position).unwrap_or(u32::MAX);
            let connect_timeout = CONNECT_TIMEOUT.min(remaining / left);
            let mut stream = match tokio::time::timeout(
                connect_timeout,
                shared.transport.connect(*addr),
            )
            .await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(target = self.target, %addr, "connect failed: {e}");
                    shared.mark_failed(*addr);
                    last_error = e;
                    continue;
                }
                Err(_) => {
                    tracing::debug!(target = self.target, %addr, "connect timed out");
                    shared.mark_failed(*addr);
                    last_error = io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connect to {addr} took over {connect_timeout:?}"),
                    );
                    continue;
                }
            };
            match self
                .exchange_until(&mut stream, *addr, request, deadline)
                .await
            {
                Ok(reply) => {
                    shared.mark_ok(*addr);
                    shared.put_idle(
                        self.target,
                        Pooled {
                            addr: *addr,
                            stream,
                        },
                    );
                    return Ok(reply);
                }
                Err(CallError::Unreachable(e)) => last_error = e,
                Err(other) => return Err(other),
            }
        }
        Err(CallError::Unreachable(last_error))
    }

    fn rpc_error<E: std::error::Error>(
        &self,
        error: CallError,
        action: RPCTypes,
        ttl: Duration,
    ) -> RPCError<NodeId, NodeAddrs, E> {
        match error {
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Timeout => RPCError::Timeout(Timeout {
                action,
                id: self.shared.local,
                target: self.target,
                timeout: ttl,
            }),
            CallError::Encode(e) => RPCError::Network(NetworkError::new(&e)),
        }
    }

    fn unexpected<E: std::error::Error>(
        &self,
        reply: ReplyFrame,
    ) -> RPCError<NodeId, NodeAddrs, E> {
        let e = match reply {
            ReplyFrame::WrongNode { serving } => io::Error::other(format!(
                "node {serving} answers at the addresses of node {}",
                self.target
            )),
            _ => io::Error::new(io::ErrorKind::InvalidData, "reply of the wrong kind"),
        };
        RPCError::Network(NetworkError::new(&e))
    }

    fn remote<E: std::error::Error>(&self, e: E) -> RPCError<NodeId, NodeAddrs, E> {
        RPCError::RemoteError(RemoteError::new_with_node(
            self.target,
            self.node.clone(),
            e,
        ))
    }
}

type RpcResult<T, E = RaftError<NodeId>> = Result<T, RPCError<NodeId, NodeAddrs, E>>;

impl<T: Transport> RaftNetwork<TypeConfig> for PeerClient<T> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let ttl = option.hard_ttl();
        // Dated before it leaves: a match confirms the leadership from this moment on.
        let (vote, sent) = (rpc.vote, Instant::now());
        match self.call(Rpc::AppendEntries(rpc), ttl).await {
            Ok(ReplyFrame::AppendEntries(Ok(response))) => {
                if is_match(&response) {
                    self.shared.acks.followed.matched(self.target, vote, sent);
                }
                Ok(response)
            }
            Ok(ReplyFrame::AppendEntries(Err(e))) => Err(self.remote(e)),
            Ok(other) => Err(self.unexpected(other)),
            Err(e) => Err(self.rpc_error(e, RPCTypes::AppendEntries, ttl)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        let ttl = option.hard_ttl();
        match self.call(Rpc::InstallSnapshot(rpc), ttl).await {
            Ok(ReplyFrame::InstallSnapshot(Ok(response))) => Ok(response),
            Ok(ReplyFrame::InstallSnapshot(Err(e))) => Err(self.remote(e)),
            Ok(other) => Err(self.unexpected(other)),
            Err(e) => Err(self.rpc_error(e, RPCTypes::InstallSnapshot, ttl)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        let ttl = option.hard_ttl();
        let term = rpc.vote.leader_id().term;
        let acks = &self.shared.acks;
        acks.votes.standing(
            term,
            self.shared.local,
            Instant::now(),
            acks.own.age(Instant::now()),
        );
        match self.call(Rpc::Vote(rpc), ttl).await {
            Ok(ReplyFrame::VoteAcked {
                reply: Ok(response),
                ack_age_us,
            }) => {
                if response.vote_granted {
                    acks.votes.granted(
                        term,
                        self.target,
                        Instant::now(),
                        Duration::from_micros(ack_age_us),
                    );
                }
                Ok(response)
            }
            Ok(ReplyFrame::Vote(Ok(response))) => Ok(response),
            Ok(ReplyFrame::Vote(Err(e)) | ReplyFrame::VoteAcked { reply: Err(e), .. }) => {
                Err(self.remote(e))
            }
            Ok(other) => Err(self.unexpected(other)),
            Err(e) => Err(self.rpc_error(e, RPCTypes::Vote, ttl)),
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(UNREACHABLE_BACKOFF))
    }
}

/// The running RPC server of one node; stops (closing every served connection) when stopped or
/// dropped.
pub struct ServerHandle {
    /// The accept loops, one per address served.
    tasks: Mutex<JoinSet<()>>,
    /// Each address served and its accept loop: [`ServerHandle::serve_also`] adds one,
    /// [`ServerHandle::close`] ends one.
    addrs: Mutex<HashMap<SocketAddr, tokio::task::AbortHandle>>,
    served: Served,
    foreign: Arc<Foreign>,
}

/// Requests of another cluster seen by one node's server.
#[derive(Default)]
struct Foreign {
    count: AtomicU64,
    /// When the last line about them was logged.
    logged_at: Mutex<Option<Instant>>,
}

impl Foreign {
    /// Counts a request of `cluster` from `peer`; logs it unless a line was logged less than
    /// [`FOREIGN_LOG_INTERVAL`] ago.
    fn record(&self, node_id: NodeId, ours: ClusterId, cluster: ClusterId, peer: SocketAddr) {
        let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let mut logged_at = self.logged_at.lock().expect(crate::POISONED);
        if logged_at.is_none_or(|at| now.duration_since(at) >= FOREIGN_LOG_INTERVAL) {
            *logged_at = Some(now);
            tracing::warn!(
                node_id,
                %peer,
                "dropped a Raft request of cluster {cluster} (this is cluster {ours}); \
                 {count} so far: a node of another cluster names this node's address"
            );
        }
    }
}

impl ServerHandle {
    /// Requests of another cluster dropped since the server started.
    pub fn foreign_requests(&self) -> u64 {
        self.foreign.count.load(Ordering::Relaxed)
    }

    /// Serves on `listener` too (an address a running configuration gave the node); refused
    /// when its address is served already or it has none.
    pub fn serve_also<L: Listener>(&self, listener: L) -> io::Result<()> {
        let addr = listener.local_addr()?;
        let mut addrs = self.addrs.lock().expect(crate::POISONED);
        if addrs.contains_key(&addr) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{addr} is served already"),
            ));
        }
        let task = self
            .tasks
            .lock()
            .expect(crate::POISONED)
            .spawn(accept_loop(listener, self.served.clone()));
        addrs.insert(addr, task);
        tracing::info!(node_id = self.served.node_id, %addr, "Raft RPCs served on a new address");
        Ok(())
    }

    /// Stops serving on `addr` (an address the running configuration no longer gives the
    /// node): its listener closes and so do the connections it accepted. False when it was
    /// not served.
    pub fn close(&self, addr: SocketAddr) -> bool {
        let task = self.addrs.lock().expect(crate::POISONED).remove(&addr);
        if let Some(task) = &task {
            task.abort();
            tracing::info!(node_id = self.served.node_id, %addr, "Raft RPCs no longer served there");
        }
        task.is_some()
    }

    /// The addresses served, in no particular order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.addrs
            .lock()
            .expect(crate::POISONED)
            .keys()
            .copied()
            .collect()
    }

    /// Stops accepting and closes every served connection.
    pub async fn stop(self) {
        let mut tasks = self.tasks.into_inner().expect(crate::POISONED);
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// Serves Raft RPCs for node `node_id` on every listener.
pub fn serve<L: Listener>(
    listeners: Vec<L>,
    node_id: NodeId,
    cluster: ClusterId,
    raft: Raft<TypeConfig>,
    fault_hook: FaultHook,
    answers: Answers,
    admitted: Arc<std::sync::atomic::AtomicBool>,
) -> ServerHandle {
    let Answers {
        pre_vote,
        application: answerer,
    } = answers;
    let mut tasks = JoinSet::new();
    let mut addrs = HashMap::new();
    let foreign = Arc::new(Foreign::default());
    let served = Served {
        node_id,
        cluster,
        raft,
        fault_hook,
        foreign: foreign.clone(),
        pre_vote,
        admitted,
        answerer,
    };
    for listener in listeners {
        let addr = listener.local_addr();
        let task = tasks.spawn(accept_loop(listener, served.clone()));
        if let Ok(addr) = addr {
            addrs.insert(addr, task);
        }
    }
    ServerHandle {
        tasks: Mutex::new(tasks),
        addrs: Mutex::new(addrs),
        served,
        foreign,
    }
}

/// What the server answers besides openraft's RPCs.
pub struct Answers {
    /// Pre-votes ([`Rpc::PreVote`]).
    pub pre_vote: PreVoteServer,
    /// The application's requests ([`Rpc::Application`]), once it set its answerer.
    pub application: AnswererSlot,
}

/// What the server needs to answer pre-votes: when a leader was last heard (updated by the
/// server as it accepts append-entries and snapshots), the quiet time that grants one, and
/// this node's log.
#[derive(Clone)]
pub struct PreVoteServer {
    pub contact: Arc<Acknowledged>,
    pub quiet: Duration,
    pub log: crate::store::LogStore,
    /// Whether this node stands for election through the gate (`RaftTimings::pre_vote`).
    /// One that does not (the quorum witness, which campaigns only in its rescue) sends no
    /// log with its answers, so it is never a better candidate (`prevote::outranked`):
    /// with the highest id of the cluster it would otherwise hold every node's elections
    /// back for `2 x election_timeout_max` each time a coordinator dies, and the leases of
    /// healthy nodes run out meanwhile.
    pub stands: bool,
}

impl PreVoteServer {
    /// Answers a pre-vote of a candidate at `term` whose log is `log` (see
    /// `prevote::grants` and `prevote::log_allows`).
    fn answer(
        &self,
        node_id: NodeId,
        from: NodeId,
        request: &PreVoteRequest,
        raft: &Raft<TypeConfig>,
    ) -> PreVoteResponse {
        let term = request.term;
        let leading_acked = {
            let m = raft.metrics();
            let m = m.borrow();
            (m.state == openraft::ServerState::Leader)
                .then_some(m.millis_since_quorum_ack.map(Duration::from_millis))
                .flatten()
        };
        let quiet = crate::prevote::grants(
            Instant::now(),
            self.contact.last_accepted(),
            leading_acked,
            self.quiet,
        );
        let own = crate::prevote::own_last_log_id(node_id, &self.log);
        let log_allows = match &request.log {
            None => true,
            Some(candidate) => {
                crate::prevote::log_allows(candidate.last_log_id.as_ref(), own.flatten().as_ref())
            }
        };
        let granted = quiet && log_allows;
        tracing::debug!(node_id, from, term, quiet, log_allows, granted, "pre-vote");
        PreVoteResponse {
            granted,
            log: own
                .filter(|_| self.stands)
                .map(|last_log_id| CandidateLog { last_log_id }),
        }
    }
}

/// What every served connection of a node shares.
#[derive(Clone)]
struct Served {
    node_id: NodeId,
    cluster: ClusterId,
    raft: Raft<TypeConfig>,
    fault_hook: FaultHook,
    foreign: Arc<Foreign>,
    pre_vote: PreVoteServer,
    /// False while the server is held: connections are closed unanswered.
    admitted: Arc<std::sync::atomic::AtomicBool>,
    /// Answers [`Rpc::Application`] once the application set it.
    answerer: AnswererSlot,
}

async fn accept_loop<L: Listener>(mut listener: L, served: Served) {
    let node_id = served.node_id;
    let local_addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            tracing::error!(node_id, "listener without address: {e}");
            return;
        }
    };
    // Dropping this set (when the accept task is aborted) aborts every connection task.
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(node_id, %local_addr, "accept failed: {e}");
                tokio::time::sleep(UNREACHABLE_BACKOFF).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        if connections.len() >= MAX_CONNECTIONS_PER_LISTENER {
            tracing::warn!(node_id, %local_addr, %peer, "too many connections; closing");
            continue;
        }
        connections.spawn(serve_connection(stream, local_addr, peer, served.clone()));
    }
}

/// Whether a follower's answer to an append-entries is a match (success or partial
/// success): its log agrees with the leader's at the request's previous entry, so it knows
/// the leader's commit index up to there.
fn is_match(response: &AppendEntriesResponse<NodeId>) -> bool {
    matches!(
        response,
        AppendEntriesResponse::Success | AppendEntriesResponse::PartialSuccess(_)
    )
}

/// A follower's handling of a leader's append-entries, with what it acknowledges (`acks`):
/// anything but a refusal of the sender's vote is a leader heard, a match also a leader
/// caught up with.
async fn append_entries(
    raft: &Raft<TypeConfig>,
    contact: &Acknowledged,
    rpc: AppendEntriesRequest<TypeConfig>,
) -> Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> {
    let _handling = contact.handling();
    let reply = raft.append_entries(rpc).await;
    if let Ok(response) = &reply {
        if !matches!(response, AppendEntriesResponse::HigherVote(_)) {
            contact.accepted(Instant::now());
        }
        if is_match(response) {
            contact.matched();
        }
    }
    reply
}

/// Returns when `stream` has something to read: on a connection whose client waits for an
/// answer, its end (EOF or an error; data would break the one-exchange-at-a-time rule and
/// ends it too). Cancel-safe: nothing is read unless it returns.
async fn ended<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut byte = [0u8; 1];
    let _ = stream.read(&mut byte).await;
}

/// The reply to an application request from `from`, or `None` when it is left unanswered
/// (the connection is then closed, as by a node of an earlier version). The asker sends
/// nothing more before the answer, so anything read meanwhile is its connection ending (it
/// died, or gave up): the answer is abandoned (a lease renewal then records no grant after
/// its holder's death, as an HTTP server drops the request of a closed connection).
async fn answer_application<S: AsyncRead + Unpin>(
    answerer: &AnswererSlot,
    from: NodeId,
    body: String,
    stream: &mut S,
) -> Option<ReplyFrame> {
    let Some(answer) = answerer.get() else {
        return Some(ReplyFrame::NoAnswerer);
    };
    tokio::select! {
        answer = answer(from, body) => answer.map(ReplyFrame::Application),
        () = ended(stream) => None,
    }
}

/// Answers requests on one connection until it closes, idles out or is blocked by the hook.
async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    local_addr: SocketAddr,
    peer: SocketAddr,
    served: Served,
) {
    let Served {
        node_id,
        cluster,
        raft,
        fault_hook,
        foreign,
        pre_vote,
        admitted,
        answerer,
    } = served;
    loop {
        let request: RequestFrame =
            match tokio::time::timeout(SERVER_IDLE_TIMEOUT, read_frame(&mut stream)).await {
                Ok(Ok(request)) => request,
                Ok(Err(e)) => {
                    if e.kind() != io::ErrorKind::UnexpectedEof {
                        tracing::debug!(node_id, %local_addr, "bad request: {e}");
                    }
                    return;
                }
                Err(_) => return,
            };
        if request.cluster != cluster {
            foreign.record(node_id, cluster, request.cluster, peer);
            return;
        }
        if !fault_hook.allows(request.from, node_id) || !fault_hook.allows_addr(local_addr) {
            return;
        }
        if !admitted.load(Ordering::SeqCst) {
            return;
        }
        let reply = if request.to != node_id {
            ReplyFrame::WrongNode { serving: node_id }
        } else {
            let contact = &pre_vote.contact;
            match request.rpc {
                Rpc::AppendEntries(rpc) => {
                    ReplyFrame::AppendEntries(append_entries(&raft, contact, rpc).await)
                }
                Rpc::Vote(rpc) => {
                    let reply = raft.vote(rpc).await;
                    if request.ack_age {
                        let age = contact.age(Instant::now());
                        ReplyFrame::VoteAcked {
                            reply,
                            ack_age_us: u64::try_from(age.as_micros()).unwrap_or(u64::MAX),
                        }
                    } else {
                        ReplyFrame::Vote(reply)
                    }
                }
                Rpc::InstallSnapshot(rpc) => {
                    let vote = rpc.vote;
                    let _handling = contact.handling();
                    let reply = raft.install_snapshot(rpc).await;
                    if reply.as_ref().is_ok_and(|r| r.vote == vote) {
                        contact.accepted(Instant::now());
                        contact.matched();
                    }
                    ReplyFrame::InstallSnapshot(reply)
                }
                Rpc::PreVote(rpc) => {
                    ReplyFrame::PreVote(pre_vote.answer(node_id, request.from, &rpc, &raft))
                }
                Rpc::Application(body) => {
                    match answer_application(&answerer, request.from, body, &mut stream).await {
                        Some(reply) => reply,
                        None => return,
                    }
                }
            }
        };
        let delay = fault_hook.reply_delay(node_id);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        // Faults injected while the request was handled drop the reply too.
        if !fault_hook.allows(node_id, request.from) {
            return;
        }
        let frame = match encode_frame(&reply) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::error!(node_id, "reply not encodable: {e}");
                return;
            }
        };
        if stream.write_all(&frame).await.is_err() || stream.flush().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::Vote;

    use super::*;

    /// Accepts connections and never answers.
    async fn hung_peer() -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        (addr, task)
    }

    /// Grants every vote; counts the requests it answered.
    async fn granting_peer(
        host: &str,
    ) -> (SocketAddr, Arc<Mutex<u32>>, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind((host, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answered = Arc::new(Mutex::new(0));
        let counter = answered.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    while let Ok(request) = read_frame::<_, RequestFrame>(&mut stream).await {
                        assert_eq!((request.from, request.to), (1, 2));
                        let reply =
                            ReplyFrame::Vote(Ok(VoteResponse::new(Vote::new(1, 1), None, true)));
                        stream
                            .write_all(&encode_frame(&reply).unwrap())
                            .await
                            .unwrap();
                        *counter.lock().unwrap() += 1;
                    }
                });
            }
        });
        (addr, answered, task)
    }

    /// An address where nothing listens.
    async fn closed_addr() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    }

    async fn client(addrs: Vec<SocketAddr>, hook: FaultHook) -> PeerClient<TcpTransport> {
        let mut factory = NetworkFactory::new(1, 7, TcpTransport, hook, Acks::default());
        factory.new_client(2, &NodeAddrs::new(addrs)).await
    }

    async fn vote(
        client: &mut PeerClient<TcpTransport>,
        ttl: Duration,
    ) -> RpcResult<VoteResponse<NodeId>> {
        client
            .vote(VoteRequest::new(Vote::new(1, 1), None), RPCOption::new(ttl))
            .await
    }

    #[tokio::test]
    async fn a_hung_peer_costs_no_more_than_the_hard_ttl() {
        let (hung, task) = hung_peer().await;
        let mut client = client(vec![hung], FaultHook::default()).await;
        let started = Instant::now();
        let result = vote(&mut client, Duration::from_millis(100)).await;
        let elapsed = started.elapsed();
        assert!(matches!(result, Err(RPCError::Timeout(_))), "{result:?}");
        assert!(elapsed < Duration::from_millis(300), "took {elapsed:?}");
        task.abort();
    }

    #[tokio::test]
    async fn the_next_network_answers_when_the_first_refuses() {
        let (second, answered, task) = granting_peer("127.0.0.2").await;
        let mut client = client(vec![closed_addr().await, second], FaultHook::default()).await;
        for _ in 0..3 {
            let response = vote(&mut client, Duration::from_millis(500)).await.unwrap();
            assert!(response.vote_granted);
        }
        assert_eq!(*answered.lock().unwrap(), 3);
        task.abort();
    }

    #[tokio::test]
    async fn a_network_that_hangs_is_avoided_on_the_next_call() {
        let (hung, hung_task) = hung_peer().await;
        let (second, answered, task) = granting_peer("127.0.0.2").await;
        let mut client = client(vec![hung, second], FaultHook::default()).await;
        let result = vote(&mut client, Duration::from_millis(100)).await;
        assert!(matches!(result, Err(RPCError::Timeout(_))), "{result:?}");
        let response = vote(&mut client, Duration::from_millis(100)).await.unwrap();
        assert!(response.vote_granted);
        assert_eq!(*answered.lock().unwrap(), 1);
        hung_task.abort();
        task.abort();
    }

    #[tokio::test]
    async fn the_fault_hook_blocks_links_and_addresses() {
        let (first, answered, task) = granting_peer("127.0.0.1").await;
        let hook = FaultHook::default();
        let mut client = client(vec![first], hook.clone()).await;
        vote(&mut client, Duration::from_millis(500)).await.unwrap();

        hook.isolate(2);
        assert!(!hook.allows(2, 3) && !hook.allows(3, 2) && hook.allows(1, 3));
        let result = vote(&mut client, Duration::from_millis(500)).await;
        assert!(
            matches!(result, Err(RPCError::Unreachable(_))),
            "{result:?}"
        );
        hook.heal();
        vote(&mut client, Duration::from_millis(500)).await.unwrap();

        // A blocked address is not used even through a pooled connection.
        hook.block_addr(first);
        let result = vote(&mut client, Duration::from_millis(500)).await;
        assert!(
            matches!(result, Err(RPCError::Unreachable(_))),
            "{result:?}"
        );
        assert_eq!(*answered.lock().unwrap(), 2);
        task.abort();
    }

    #[tokio::test]
    async fn oversized_frames_are_refused() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let too_long = u32::try_from(MAX_FRAME_BYTES + 1).unwrap().to_be_bytes();
        a.write_all(&too_long).await.unwrap();
        let result = read_frame::<_, RequestFrame>(&mut b).await;
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
