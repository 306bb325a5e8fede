//! What a node needs from the machine it runs on, behind traits, so that the deterministic
//! simulator (`halcyon-sim`) runs this daemon's code with simulated time, network, lease guard
//! and resources (ARCHITECTURE.md, "Deterministic simulation").
//!
//! [`Platform::host`] is the real machine: tokio's clock and the system clock, TCP, the
//! heartbeat thread over UDP and disk, the `halcyon guard` process and the real resource
//! drivers. Nothing in `node.rs` reaches the operating system for these except through here.
//!
//! Not behind the platform (the simulator configures none of them): event-program commands
//! (`sh -c`), monitor samplers, the watchdog device, the witness.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use halcyon_config::{Cluster, Package};
use halcyon_consensus::{
    Application, ClusterId, Consensus, NodeAddrs, NodeId, OpenError, RaftTimings,
};
use halcyon_guard::{Address, BootTime, FenceSummary};
use halcyon_membership::wire::Sealer;
use halcyon_membership::{
    ChangeBatch, DetectorConfig, HmacSealer, Plain, Runner, RunnerSettings, SealerHandle, Status,
    links_from_cluster,
};
use halcyon_resources::fence::{FenceAction, FenceOutcome};
use halcyon_resources::{PackageEnv, PackageResources};
use halcyon_state::{Replicated, State};
use jiff::Timestamp;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::faults::{FaultyLink, HeartbeatFaults};
use crate::local_socket::LocalPeer;
use halcyon_membership::LinkEndpoint;

/// Everything machine-dependent a node uses.
#[derive(Clone)]
pub struct Platform {
    pub clock: Arc<dyn Clock>,
    pub network: Arc<dyn Network>,
    pub heartbeats: Arc<dyn Heartbeats>,
    pub guards: Arc<dyn GuardFactory>,
    pub resources: Arc<dyn ResourceFactory>,
    /// Told of every command the node's replica applies (index, bytes, the state after it):
    /// the simulator checks that a committed entry never changes and that every transition
    /// of the state keeps its invariants.
    pub applied: Option<ApplyObserver>,
}

pub type ApplyObserver = Arc<dyn Fn(u64, &[u8], &State) + Send + Sync>;

impl Platform {
    /// The real machine.
    pub fn host() -> Platform {
        Platform {
            clock: Arc::new(SystemClock),
            network: Arc::new(TcpNetwork),
            heartbeats: Arc::new(HostHeartbeats),
            guards: Arc::new(ProcessGuards),
            resources: Arc::new(HostResources),
            applied: None,
        }
    }
}

// ------------------------------------------------------------------------------------ clock

/// The node's clocks.
pub trait Clock: Send + Sync {
    /// Monotonic time for lease bookkeeping (holder expiry, grant times, release waits). The
    /// simulator's runs at a rate within `lease::DRIFT` of the others'.
    fn now(&self) -> Instant;
    /// Wall-clock time for commands and the event log.
    fn timestamp(&self) -> Timestamp;
}

/// tokio's monotonic clock and the system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn timestamp(&self) -> Timestamp {
        Timestamp::now()
    }
}

// ---------------------------------------------------------------------------------- network

/// A byte stream to or from a peer.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Node-to-node connections: the API (server and client) and consensus.
pub trait Network: Send + Sync {
    /// Opens a connection to a peer's API.
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Pin<Box<dyn Stream>>>>;
    /// Serves the internal API `router` on every address, on the node's runtime (spawned
    /// tasks); returns once all listen, with what adds and removes addresses later.
    fn serve_internal(
        &self,
        router: axum::Router,
        addrs: Vec<SocketAddr>,
    ) -> BoxFuture<'_, anyhow::Result<Listening>>;
    /// Serves `router` on every address (spawned tasks), and on the Unix socket `local` when
    /// given (`local_socket`); returns once all listen, with what adds and removes TCP
    /// addresses later.
    fn serve_api(
        &self,
        router: axum::Router,
        addrs: Vec<SocketAddr>,
        local: Option<PathBuf>,
    ) -> BoxFuture<'_, anyhow::Result<Listening>>;
    /// Serves `consensus`'s Raft RPCs on `addr` too, as on the addresses it was opened on
    /// (over mutual TLS when it was): an address `halcyon apply` gave the running node.
    fn serve_raft_also<'a>(
        &'a self,
        consensus: &'a Consensus,
        addr: SocketAddr,
    ) -> BoxFuture<'a, io::Result<()>>;
    /// Opens the node's consensus (its database at `db_path`) on `addrs`; over mutual TLS
    /// when `tls` is given (a node with credentials).
    // Each argument is the node's own; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    fn open_consensus(
        &self,
        cluster: ClusterId,
        id: NodeId,
        addrs: NodeAddrs,
        db_path: &Path,
        app: NodeApplication,
        timings: RaftTimings,
        tls: Option<Arc<crate::raft_tls::RaftTls>>,
    ) -> BoxFuture<'static, Result<Consensus, OpenError>>;
    /// This network with the node's TLS on the API (a node with credentials): the public
    /// API served over TLS, the internal API over mutual TLS, and connections to peers' APIs
    /// over TLS with the node's certificate. `None`: this network has no TLS (the
    /// simulator's, whose nodes run without credentials).
    fn with_tls(&self, tls: Arc<crate::raft_tls::RaftTls>) -> Option<Arc<dyn Network>> {
        let _ = tls;
        None
    }
    /// The connections this network keeps open between requests to peers' APIs, and the
    /// generation of the TLS configurations in force (`client::KeptConnections`); `None`:
    /// one connection per request.
    fn kept(&self) -> Option<(Arc<crate::client::KeptConnections>, u64)> {
        None
    }
}

/// A connection's peer, for handlers and middleware (`ConnectInfo<PeerAddr>`: the audit
/// trail, refusals): its address, from any listener whose addresses are socket addresses
/// (axum provides this for tokio's listener only), and on the internal API's mutual TLS the
/// certificate the peer authenticated the connection with (`auth::internal`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAddr {
    pub addr: SocketAddr,
    pub certificate: Option<PeerCertificate>,
}

/// The certificate (DER) a client presented in a mutual TLS handshake that the server
/// accepted: the handshake proved it holds the certificate's key.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerCertificate(pub Arc<[u8]>);

impl std::fmt::Debug for PeerCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerCertificate({} bytes)", self.0.len())
    }
}

/// A listener as it is, named so that its connections can give a [`PeerAddr`];
/// `certificate_of` reads a connection's client certificate (none but on mutual TLS).
struct PeerListener<L: axum::serve::Listener> {
    listener: L,
    certificate_of: fn(&L::Io) -> Option<PeerCertificate>,
}

impl<L> axum::serve::Listener for PeerListener<L>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    type Io = L::Io;
    type Addr = PeerAddr;

    fn accept(&mut self) -> impl Future<Output = (Self::Io, Self::Addr)> + Send {
        let certificate_of = self.certificate_of;
        let accept = self.listener.accept();
        async move {
            let (io, addr) = accept.await;
            let certificate = certificate_of(&io);
            (io, PeerAddr { addr, certificate })
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(PeerAddr {
            addr: self.listener.local_addr()?,
            certificate: None,
        })
    }
}

impl<L> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, PeerListener<L>>>
    for PeerAddr
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, PeerListener<L>>) -> PeerAddr {
        stream.remote_addr().clone()
    }
}

/// Serves `router` on `listener` in a spawned task (any listener: tokio's, the simulator's).
/// Handlers see the client's address ([`PeerAddr`], without a certificate). Aborting the
/// task closes the listener; the connections it accepted finish on their own.
pub fn spawn_api_server<L>(listener: L, router: axum::Router) -> tokio::task::AbortHandle
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    tokio::spawn(api_server(listener, router, |_| None)).abort_handle()
}

/// What [`spawn_api_server`] runs.
async fn api_server<L>(
    listener: L,
    router: axum::Router,
    certificate_of: fn(&L::Io) -> Option<PeerCertificate>,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let service = router.into_make_service_with_connect_info::<PeerAddr>();
    let listener = PeerListener {
        listener,
        certificate_of,
    };
    if let Err(e) = axum::serve(listener, service).await {
        tracing::error!("API server stopped: {e}");
    }
}

/// Opens a listener on an address and serves on it in a task of its own (the task's handle).
pub type OpenListener = Box<
    dyn Fn(SocketAddr) -> BoxFuture<'static, io::Result<tokio::task::AbortHandle>> + Send + Sync,
>;

/// The TCP addresses one server listens on, each served by a task of its own: what the
/// running configuration gives the node, which `halcyon apply` changes (a network added or
/// removed with this node's interface on it; `Node::follow_own_addresses`).
///
/// Invariant: an address is served by at most one task, the one recorded for it here.
pub struct Listening {
    /// What it serves, in errors and the log.
    what: &'static str,
    served: std::sync::Mutex<BTreeMap<SocketAddr, tokio::task::AbortHandle>>,
    open: OpenListener,
}

impl Listening {
    /// A server listening nowhere yet, which listens on an address with `open`.
    pub fn new(what: &'static str, open: OpenListener) -> Listening {
        Listening {
            what,
            served: std::sync::Mutex::default(),
            open,
        }
    }

    /// Listens on `addr` too; nothing to do when it does already.
    pub async fn add(&self, addr: SocketAddr) -> io::Result<()> {
        if self.served().contains_key(&addr) {
            return Ok(());
        }
        let task = (self.open)(addr).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{}: cannot listen on {addr}: {e}", self.what),
            )
        })?;
        let mut served = self.served();
        if let Some(older) = served.insert(addr, task) {
            // Two adds of one address raced; the first one's task goes.
            older.abort();
        }
        tracing::info!(%addr, "{} served on a new address", self.what);
        Ok(())
    }

    /// Stops listening on `addr` (connections it accepted finish on their own); false when
    /// it did not.
    pub fn close(&self, addr: SocketAddr) -> bool {
        let task = self.served().remove(&addr);
        if let Some(task) = &task {
            task.abort();
            tracing::info!(%addr, "{} no longer served there", self.what);
        }
        task.is_some()
    }

    /// The addresses listened on.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.served().keys().copied().collect()
    }

    fn served(&self) -> std::sync::MutexGuard<'_, BTreeMap<SocketAddr, tokio::task::AbortHandle>> {
        self.served
            .lock()
            .expect("the listeners' lock is never poisoned")
    }
}

/// Serves `router` on the local socket in a spawned task. Handlers and the middleware see the
/// client's credentials ([`LocalPeer`]).
fn spawn_local_api_server(listener: tokio::net::UnixListener, router: axum::Router) {
    tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<LocalPeer>();
        if let Err(e) = axum::serve(listener, service).await {
            tracing::error!("API socket server stopped: {e}");
        }
    });
}

/// TCP through tokio, in the clear (a node started `--insecure`; [`Network::with_tls`] gives
/// its TLS form, [`TlsNetwork`]).
pub struct TcpNetwork;

impl Network for TcpNetwork {
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Pin<Box<dyn Stream>>>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            Ok(Box::pin(stream) as Pin<Box<dyn Stream>>)
        })
    }

    fn serve_internal(
        &self,
        router: axum::Router,
        addrs: Vec<SocketAddr>,
    ) -> BoxFuture<'_, anyhow::Result<Listening>> {
        Box::pin(serve_internal_on(router, addrs, None))
    }

    fn serve_api(
        &self,
        router: axum::Router,
        addrs: Vec<SocketAddr>,
        local: Option<PathBuf>,
    ) -> BoxFuture<'_, anyhow::Result<Listening>> {
        Box::pin(serve_api_on_thread(router, addrs, local, None))
    }

    fn serve_raft_also<'a>(
        &'a self,
        consensus: &'a Consensus,
        addr: SocketAddr,
    ) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move { consensus.serve_also(tokio::net::TcpListener::bind(addr).await?) })
    }

    fn open_consensus(
        &self,
        cluster: ClusterId,
        id: NodeId,
        addrs: NodeAddrs,
        db_path: &Path,
        app: NodeApplication,
        timings: RaftTimings,
        tls: Option<Arc<crate::raft_tls::RaftTls>>,
    ) -> BoxFuture<'static, Result<Consensus, OpenError>> {
        open_consensus_on_tcp(cluster, id, addrs, db_path, app, timings, tls)
    }

    fn with_tls(&self, tls: Arc<crate::raft_tls::RaftTls>) -> Option<Arc<dyn Network>> {
        Some(Arc::new(TlsNetwork {
            tls,
            kept: Arc::default(),
        }))
    }
}

/// TCP through tokio with the node's TLS (`raft_tls`): the public API over TLS, the internal
/// API over mutual TLS, and connections to the other nodes' APIs (and the witness's) over TLS
/// with the node's certificate, checked against the cluster CA and the node dialled
/// (`RaftTls::server_name`), and
/// kept open between requests (`client::KeptConnections`). The unix socket stays plain
/// (local, and its clients' credentials are checked).
pub struct TlsNetwork {
    tls: Arc<crate::raft_tls::RaftTls>,
    kept: Arc<crate::client::KeptConnections>,
}

impl Network for TlsNetwork {
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Pin<Box<dyn Stream>>>> {
        Box::pin(async move {
            let name = self.tls.server_name(addr);
            let stream = crate::raft_tls::connect_api(&self.tls.api_client(), addr, name).await?;
            Ok(Box::pin(stream) as Pin<Box<dyn Stream>>)
        })
    }

    fn serve_internal(
        &self,
        router: axum::Router,
        addrs: Vec<SocketAddr>,
    ) -> BoxFuture<'_, anyhow::Result<Listening>> {
        Box::pin(serve_internal_on(
            router,
            addrs,
            Some(Arc::clone(&self.tls)),
        ))
    }

    fn serve_raft_also<'a>(
        &'a self,
        consensus: &'a Consensus,
        addr: SocketAddr,
    ) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let tcp = tokio::net::TcpListener::bind(addr).await?;
            consensus.serve_also(self.tls.listener(tcp))
        })
    }

    fn serve_api(
        &self,
        router: axum::Router,
        addrs: Vec<SocketAddr>,
        local: Option<PathBuf>,
    ) -> BoxFuture<'_, anyhow::Result<Listening>> {
        Box::pin(serve_api_on_thread(
            router,
            addrs,
            local,
            Some(Arc::clone(&self.tls)),
        ))
    }

    fn open_consensus(
        &self,
        cluster: ClusterId,
        id: NodeId,
        addrs: NodeAddrs,
        db_path: &Path,
        app: NodeApplication,
        timings: RaftTimings,
        tls: Option<Arc<crate::raft_tls::RaftTls>>,
    ) -> BoxFuture<'static, Result<Consensus, OpenError>> {
        open_consensus_on_tcp(cluster, id, addrs, db_path, app, timings, tls)
    }

    fn with_tls(&self, tls: Arc<crate::raft_tls::RaftTls>) -> Option<Arc<dyn Network>> {
        Some(Arc::new(TlsNetwork {
            tls,
            kept: Arc::default(),
        }))
    }

    fn kept(&self) -> Option<(Arc<crate::client::KeptConnections>, u64)> {
        Some((Arc::clone(&self.kept), self.tls.generation()))
    }
}

/// Serves the internal API `router` on every address on the node's runtime; over mutual TLS
/// when `tls` is given.
async fn serve_internal_on(
    router: axum::Router,
    addrs: Vec<SocketAddr>,
    tls: Option<Arc<crate::raft_tls::RaftTls>>,
) -> anyhow::Result<Listening> {
    let open: OpenListener = Box::new(move |addr| {
        let (router, tls) = (router.clone(), tls.clone());
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            Ok(match tls {
                // Requests on the internal API's mutual TLS are the peer node's by its
                // certificate (`auth::internal`).
                Some(tls) => tokio::spawn(api_server(
                    tls.internal_listener(listener),
                    router,
                    crate::raft_tls::client_certificate,
                ))
                .abort_handle(),
                None => spawn_api_server(listener, router),
            })
        })
    });
    let listening = Listening::new("internal API", open);
    for addr in addrs {
        listening.add(addr).await?;
    }
    Ok(listening)
}

/// Serves the API on a runtime of its own, on its own thread (`halcyon-api`): requests,
/// however many, are handled there, and the node's runtime — consensus, leases, the
/// coordinator — keeps its threads (issue 15, finding 5). Handlers still call into the
/// node; what they await (a commit, a lease grant's quorum check) runs where it is.
/// The local socket is served there too, with the same router: its clients are told
/// apart by their connection's information ([`LocalPeer`] instead of [`PeerAddr`]). The TCP
/// addresses over TLS when `tls` is given; the local socket always in the clear. Addresses
/// added later are bound where asked and served on that runtime too.
async fn serve_api_on_thread(
    router: axum::Router,
    addrs: Vec<SocketAddr>,
    local: Option<PathBuf>,
    tls: Option<Arc<crate::raft_tls::RaftTls>>,
) -> anyhow::Result<Listening> {
    let local = match local {
        Some(path) => Some(crate::local_socket::bind(&path)?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("API: cannot build its runtime: {e}"))?;
    let handle = runtime.handle().clone();
    let open: OpenListener = {
        let router = router.clone();
        Box::new(move |addr| {
            let (router, tls, handle) = (router.clone(), tls.clone(), handle.clone());
            Box::pin(async move {
                let listener = std::net::TcpListener::bind(addr)?;
                listener.set_nonblocking(true)?;
                Ok(handle
                    .spawn(async move {
                        match (tokio::net::TcpListener::from_std(listener), tls) {
                            (Ok(l), Some(tls)) => {
                                api_server(tls.public_listener(l), router, |_| None).await;
                            }
                            (Ok(l), None) => api_server(l, router, |_| None).await,
                            (Err(e), _) => tracing::error!("API: {e}"),
                        }
                    })
                    .abort_handle())
            })
        })
    };
    std::thread::Builder::new()
        .name("halcyon-api".into())
        .spawn(move || {
            runtime.block_on(async move {
                if let Some(listener) = local {
                    match tokio::net::UnixListener::from_std(listener) {
                        Ok(l) => spawn_local_api_server(l, router),
                        Err(e) => tracing::error!("API socket: {e}"),
                    }
                }
                std::future::pending::<()>().await
            })
        })
        .map_err(|e| anyhow::anyhow!("API: cannot start its thread: {e}"))?;
    let listening = Listening::new("API", open);
    for addr in addrs {
        listening.add(addr).await?;
    }
    Ok(listening)
}

/// Opens consensus on TCP: over mutual TLS when `tls` is given.
fn open_consensus_on_tcp(
    cluster: ClusterId,
    id: NodeId,
    addrs: NodeAddrs,
    db_path: &Path,
    app: NodeApplication,
    timings: RaftTimings,
    tls: Option<Arc<crate::raft_tls::RaftTls>>,
) -> BoxFuture<'static, Result<Consensus, OpenError>> {
    let db_path = db_path.to_owned();
    Box::pin(async move {
        match tls {
            Some(tls) => {
                crate::raft_tls::open(&tls, cluster, id, addrs, &db_path, app, timings).await
            }
            None => Consensus::open(cluster, id, addrs, &db_path, app, timings).await,
        }
    })
}

/// The state machine as consensus runs it: the replica, the only writer of the node's
/// [`State`]. After every applied entry or restore it publishes the new state as the view
/// the node's tasks read (a `watch`: they wake on a change instead of polling), then shows
/// the platform's observer the applied entry.
pub struct NodeApplication {
    inner: Replicated,
}

impl NodeApplication {
    pub fn new(views: watch::Sender<Arc<State>>, observer: Option<ApplyObserver>) -> Self {
        let publish = move |index: u64, command: Option<&[u8]>, state: &State| {
            assert_eq!(
                state.applied_index(),
                index,
                "the view is published after the change"
            );
            // Copies pointers for the configuration and the event-log records.
            views.send_replace(Arc::new(state.clone()));
            if let (Some(observer), Some(command)) = (&observer, command) {
                observer(index, command, state);
            }
        };
        NodeApplication {
            inner: Replicated::new(Box::new(publish)),
        }
    }
}

impl From<Replicated> for NodeApplication {
    /// A replica that tells only `replicated`'s own observer (the witness's).
    fn from(replicated: Replicated) -> Self {
        NodeApplication { inner: replicated }
    }
}

impl Application for NodeApplication {
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8> {
        self.inner.apply(index, command)
    }
    fn snapshot(&self) -> Vec<u8> {
        self.inner.snapshot()
    }
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        self.inner.restore(snapshot)
    }
}

// ------------------------------------------------------------------------------- heartbeats

/// Starts the node's heartbeats and failure detector.
pub trait Heartbeats: Send + Sync {
    /// `keys`: the cluster's heartbeat keys (HMAC-SHA256; the first signs); `None`:
    /// heartbeats unauthenticated.
    fn start(
        &self,
        cluster: &Cluster,
        node: u32,
        incarnation: u64,
        faults: Option<HeartbeatFaults>,
        keys: Option<Vec<[u8; halcyon_membership::hmac_sealer::KEY_BYTES]>>,
    ) -> anyhow::Result<Box<dyn HeartbeatHandle>>;
}

/// Running heartbeats.
pub trait HeartbeatHandle: Send {
    /// The detector's judgement, kept current; marked changed when a judgement changes.
    fn status(&self) -> watch::Receiver<Status>;
    fn is_running(&self) -> bool;
    /// Heartbeat as `incarnation` (above the current one) from now on.
    fn reincarnate(&self, incarnation: u64) -> Result<(), String>;
    /// From now on heartbeat on `network` every `heartbeat.interval` (switching as
    /// `halcyon_membership` documents it) and judge its paths down after
    /// `heartbeat.sensitivity` missed heartbeats.
    fn set_heartbeat(
        &self,
        network: u32,
        heartbeat: halcyon_config::Heartbeat,
    ) -> Result<(), String>;
    /// From now on watch `config`'s peers, networks and paths, and heartbeat each network's
    /// peers in `links` (nodes or networks added to or removed from the running
    /// configuration `cluster`): a network new to the heartbeats gets its link (made from
    /// `cluster`), one `config` lacks loses its. A link that cannot be made (a disk device
    /// this node cannot open) leaves its network out, the rest taken, and is the error
    /// (the caller asks again).
    fn set_peers(
        &self,
        cluster: &Cluster,
        config: halcyon_membership::detector::DetectorConfig,
        links: halcyon_membership::LinkPeers,
    ) -> Result<(), String>;
    /// The sealer's handle when heartbeats are authenticated (its refusal counts).
    fn sealer(&self) -> Option<SealerHandle> {
        None
    }
    fn stop(self: Box<Self>);
}

/// The heartbeat thread over UDP and disk links.
pub struct HostHeartbeats;

impl Heartbeats for HostHeartbeats {
    fn start(
        &self,
        cluster: &Cluster,
        node: u32,
        incarnation: u64,
        faults: Option<HeartbeatFaults>,
        keys: Option<Vec<[u8; halcyon_membership::hmac_sealer::KEY_BYTES]>>,
    ) -> anyhow::Result<Box<dyn HeartbeatHandle>> {
        use anyhow::Context;
        let detector = DetectorConfig::from_cluster(cluster, node).context("failure detector")?;
        let mut links = links_from_cluster(cluster, node).context("heartbeat links")?;
        if let Some(faults) = &faults {
            links = links
                .into_iter()
                .map(|l| FaultyLink::wrap(l, faults.clone(), cluster.id))
                .collect();
        }
        let linked = halcyon_membership::link_endpoints(cluster, node);
        let (changes_tx, changes_rx) = std::sync::mpsc::sync_channel::<ChangeBatch>(64);
        let (sealer, handle): (Box<dyn Sealer>, _) = match keys {
            Some(keys) => {
                let sealer = HmacSealer::new(cluster.id, &keys).context("heartbeat keys")?;
                let handle = sealer.handle();
                (Box::new(sealer), Some(handle))
            }
            None => (Box::new(Plain), None),
        };
        let runner = Runner::start(
            RunnerSettings::new(cluster.id, incarnation),
            detector,
            links,
            sealer,
            changes_tx,
        )
        .context("starting heartbeats")?;
        // Membership is read level-triggered from the status; the change stream is logged.
        std::thread::Builder::new()
            .name("halcyon-changes".into())
            .spawn(move || {
                while let Ok(batch) = changes_rx.recv() {
                    for change in batch.changes {
                        tracing::info!(?change, "membership");
                    }
                }
            })?;
        let links = crate::links::LinkWatch::start(cluster, node, runner.links());
        Ok(Box::new(HostHeartbeatHandle {
            runner,
            node,
            faults,
            linked: std::sync::Mutex::new(linked),
            handed: std::sync::Mutex::new(None),
            handle,
            links,
        }))
    }
}

/// The heartbeat thread, its sealer's handle when heartbeats are authenticated, and the
/// thread that tells it of local carrier changes.
struct HostHeartbeatHandle {
    runner: Runner,
    /// This node's number.
    node: u32,
    /// The faults a test injects, for the links made later too.
    faults: Option<HeartbeatFaults>,
    /// The networks the runner has a link of, with where each link is (those of its
    /// start, then as [`HeartbeatHandle::set_peers`] left them).
    linked: std::sync::Mutex<BTreeMap<u32, LinkEndpoint>>,
    /// What the runner was last told by [`HeartbeatHandle::set_peers`].
    handed: std::sync::Mutex<
        Option<(
            halcyon_membership::detector::DetectorConfig,
            halcyon_membership::LinkPeers,
        )>,
    >,
    handle: Option<SealerHandle>,
    links: Option<crate::links::LinkWatch>,
}

/// What the heartbeats take of a change of the running configuration (pure but for the
/// links `make` makes): a link for each network of `links` (those this node is on) whose
/// endpoint in `wanted` is not the one in `linked` (new, or moved: it replaces the old
/// link). A network whose link cannot be made is left out of `config` and `links` when it
/// is new (its old link keeps running when it moved), and named in the errors. Returns the
/// detector's configuration, the links' peers, the new links, the endpoints linked then and
/// the errors.
pub fn new_links<L>(
    mut config: halcyon_membership::detector::DetectorConfig,
    mut links: halcyon_membership::LinkPeers,
    wanted: &BTreeMap<u32, LinkEndpoint>,
    linked: &BTreeMap<u32, LinkEndpoint>,
    mut make: impl FnMut(u32) -> Result<L, String>,
) -> NewLinks<L> {
    let mut added = Vec::new();
    let mut errors = Vec::new();
    let mut now_linked = BTreeMap::new();
    let networks: Vec<u32> = links.keys().copied().collect();
    for network in networks {
        let endpoint = wanted.get(&network).cloned().unwrap_or_default();
        let old = linked.get(&network);
        if old == Some(&endpoint) {
            now_linked.insert(network, endpoint);
            continue;
        }
        match make(network) {
            Ok(link) => {
                added.push(link);
                now_linked.insert(network, endpoint);
            }
            Err(why) => {
                errors.push(why);
                if let Some(old) = old {
                    now_linked.insert(network, old.clone());
                } else {
                    links.remove(&network);
                    config.networks.retain(|n| n.number != network);
                    config.paths.retain(|p| p.network != network);
                }
            }
        }
    }
    NewLinks {
        config,
        links,
        added,
        linked: now_linked,
        errors,
    }
}

/// What [`new_links`] returns.
pub struct NewLinks<L> {
    pub config: halcyon_membership::detector::DetectorConfig,
    pub links: halcyon_membership::LinkPeers,
    pub added: Vec<L>,
    pub linked: BTreeMap<u32, LinkEndpoint>,
    pub errors: Vec<String>,
}

impl HeartbeatHandle for HostHeartbeatHandle {
    fn status(&self) -> watch::Receiver<Status> {
        self.runner.subscribe()
    }
    fn is_running(&self) -> bool {
        self.runner.is_running()
    }
    fn sealer(&self) -> Option<SealerHandle> {
        self.handle.clone()
    }
    fn reincarnate(&self, incarnation: u64) -> Result<(), String> {
        self.runner
            .reincarnate(incarnation)
            .map_err(|e| e.to_string())
    }
    fn set_heartbeat(
        &self,
        network: u32,
        heartbeat: halcyon_config::Heartbeat,
    ) -> Result<(), String> {
        self.runner
            .set_heartbeat(network, heartbeat)
            .map_err(|e| e.to_string())
    }
    fn set_peers(
        &self,
        cluster: &Cluster,
        config: halcyon_membership::detector::DetectorConfig,
        links: halcyon_membership::LinkPeers,
    ) -> Result<(), String> {
        let mut linked = self.linked.lock().expect("not poisoned");
        let wanted = halcyon_membership::link_endpoints(cluster, self.node);
        let new = new_links(config, links, &wanted, &linked, |network| {
            let link = halcyon_membership::link_of(cluster, self.node, network)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("node {} is not on network {network}", self.node))?;
            Ok(match &self.faults {
                Some(faults) => FaultyLink::wrap(link, faults.clone(), cluster.id),
                None => link,
            })
        });
        // Asked again while a link cannot be made: the runner is told only what is new.
        let mut handed = self.handed.lock().expect("not poisoned");
        let handing = (new.config.clone(), new.links.clone());
        if !new.added.is_empty() || handed.as_ref() != Some(&handing) {
            self.runner
                .set_peers(new.config, new.links, new.added)
                .map_err(|e| e.to_string())?;
            *handed = Some(handing);
        }
        *linked = new.linked;
        if let Some(watch) = &self.links {
            watch.follow(cluster, self.node);
        }
        if new.errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "heartbeat links not made: {}",
                new.errors.join("; ")
            ))
        }
    }
    fn stop(self: Box<Self>) {
        if let Some(links) = self.links {
            links.stop();
        }
        self.runner.stop()
    }
}

// ------------------------------------------------------------------------------ lease guard

/// Starts the node's lease guard.
pub trait GuardFactory: Send + Sync {
    fn start(&self, max_reply_delay: std::time::Duration) -> anyhow::Result<Box<dyn LeaseGuard>>;
}

/// What the daemon asks of its lease guard (see `guard.rs` for the contract).
pub trait LeaseGuard: Send + Sync {
    /// The guard's clock (CLOCK_BOOTTIME for the process), read before a renewal is sent.
    fn clock(&self) -> BootTime;
    fn pid(&self) -> Option<u32>;
    /// `None` while the guard protects the lease; otherwise why not.
    fn lost(&self) -> Option<String>;
    fn fenced(&self) -> bool;
    fn take_fences(&self) -> Vec<FenceSummary>;
    fn respawn_if_needed(&self) -> bool;
    fn extend(&self, deadline: BootTime);
    fn register_group(&self, pgid: i32) -> Result<(), String>;
    fn register_address(&self, address: Address) -> Result<(), String>;
    fn unregister_group(&self, pgid: i32);
    fn unregister_address(&self, address: Address);
    fn release(&self);
    fn shutdown(&self);
}

/// The `halcyon guard` process.
pub struct ProcessGuards;

impl GuardFactory for ProcessGuards {
    fn start(&self, max_reply_delay: std::time::Duration) -> anyhow::Result<Box<dyn LeaseGuard>> {
        Ok(Box::new(crate::guard::Guard::start(max_reply_delay)?))
    }
}

// -------------------------------------------------------------------------------- resources

/// Builds a package's resources on this node, and handles what a previous incarnation left.
pub trait ResourceFactory: Send + Sync {
    fn build(
        &self,
        env: PackageEnv,
        package: &Package,
        node: &halcyon_config::Node,
    ) -> Result<PackageResources, String>;
    /// Whether process group `pgid` still has a live member.
    fn group_alive(&self, pgid: i32) -> bool;
    /// SIGKILL to process group `pgid`.
    fn kill_group(&self, pgid: i32);
    /// Whether `resource`'s address is free for a package `halcyon apply` adds, seen from
    /// `node` (this node): on none of its interfaces and answered by no other host; why not.
    fn check_address_free(
        &self,
        resource: &halcyon_config::IpResource,
        node: &halcyon_config::Node,
    ) -> BoxFuture<'static, Result<(), String>>;
    /// Runs `fencing`'s levels against node `target` (SPEC 6) and says how it went.
    fn fence(
        &self,
        target: &str,
        fencing: &halcyon_config::Fencing,
        action: FenceAction,
    ) -> BoxFuture<'static, halcyon_state::FenceReport>;
}

/// A fence's outcome as the replicated state keeps it.
pub fn fence_report(outcome: &FenceOutcome) -> halcyon_state::FenceReport {
    halcyon_state::FenceReport {
        action: outcome.action.to_string(),
        confirmed: outcome.confirmed,
        summary: outcome.summary(),
        attempts: outcome
            .attempts
            .iter()
            .map(|a| {
                let exit = a.exit.map_or("no exit".to_owned(), |e| format!("exit {e}"));
                format!(
                    "level {} device {} {} {}: {exit}, {} ms{}{}",
                    a.level,
                    a.device,
                    a.agent,
                    a.action,
                    a.took_ms,
                    if a.ok { "" } else { ", FAILED" },
                    if a.detail.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", a.detail)
                    }
                )
            })
            .collect(),
    }
}

/// The real resource drivers.
pub struct HostResources;

impl ResourceFactory for HostResources {
    fn build(
        &self,
        env: PackageEnv,
        package: &Package,
        node: &halcyon_config::Node,
    ) -> Result<PackageResources, String> {
        PackageResources::from_config_on_node(env, package, node).map_err(|e| e.to_string())
    }
    fn group_alive(&self, pgid: i32) -> bool {
        halcyon_resources::group_alive(pgid)
    }
    fn kill_group(&self, pgid: i32) {
        halcyon_resources::signal_group(pgid, libc::SIGKILL);
    }
    fn check_address_free(
        &self,
        resource: &halcyon_config::IpResource,
        node: &halcyon_config::Node,
    ) -> BoxFuture<'static, Result<(), String>> {
        let address = halcyon_resources::ip::IpAddress::new(resource.clone(), node);
        Box::pin(async move {
            address
                .map_err(|e| e.to_string())?
                .check_free()
                .await
                .map_err(|e| e.to_string())
        })
    }
    fn fence(
        &self,
        target: &str,
        fencing: &halcyon_config::Fencing,
        action: FenceAction,
    ) -> BoxFuture<'static, halcyon_state::FenceReport> {
        let (target, fencing) = (target.to_owned(), fencing.clone());
        Box::pin(async move {
            fence_report(&halcyon_resources::fence::fence(&target, &fencing, action).await)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use halcyon_config::NetworkKind;
    use halcyon_membership::detector::DetectorConfig;

    fn example() -> Cluster {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/cluster");
        halcyon_config::load(&[dir])
            .expect("the example loads")
            .0
            .cluster
    }

    #[test]
    fn a_new_link_that_cannot_be_made_leaves_its_network_out_and_a_moved_one_keeps_the_old() {
        let cluster = example();
        let disk = cluster
            .networks
            .iter()
            .find(|n| n.kind == NetworkKind::Disk)
            .expect("the example has a disk network")
            .number;
        let config = DetectorConfig::from_cluster(&cluster, 1).unwrap();
        let links = halcyon_membership::link_peers(&cluster, 1).unwrap();
        let wanted = halcyon_membership::link_endpoints(&cluster, 1);
        let mut linked = wanted.clone();
        linked.remove(&disk);
        // The disk network is new, and its device cannot be opened.
        let refused = |network: u32| -> Result<u32, String> {
            if network == disk {
                Err(format!("network {network}: no such device"))
            } else {
                Ok(network)
            }
        };
        let new = new_links(config.clone(), links.clone(), &wanted, &linked, refused);
        assert_eq!(new.errors, [format!("network {disk}: no such device")]);
        assert!(new.added.is_empty(), "the others were linked already");
        assert!(new.config.networks.iter().all(|n| n.number != disk));
        assert!(new.config.paths.iter().all(|p| p.network != disk));
        assert!(!new.links.contains_key(&disk));
        assert_eq!(new.linked, linked, "asked again later");
        // It can be opened: added.
        let new = new_links(config.clone(), links.clone(), &wanted, &linked, Ok);
        assert_eq!((new.added, new.errors.len()), (vec![disk], 0));
        assert_eq!(new.config, config);
        assert_eq!(new.linked, wanted);
        // Linked elsewhere before (its device moved) and the new one cannot be opened: the
        // old link keeps running, the network stays watched.
        let mut elsewhere = wanted.clone();
        elsewhere.insert(disk, (Some("/dev/old".to_owned()), None));
        let new = new_links(config.clone(), links.clone(), &wanted, &elsewhere, refused);
        assert_eq!(new.errors.len(), 1);
        assert_eq!(new.config, config);
        assert_eq!(new.links, links);
        assert_eq!(new.linked, elsewhere);
    }
}
