//! The node's TLS, with the node certificates of `halcyon init`: mutual TLS on the Raft port
//! (`port + 1`) and on the internal API (`port + 3`: lease renewals, forwarded commits), TLS on
//! the public API (`port + 2`), and the client side of all three.
//!
//! On the mutual ports both ends present their node certificate. A peer is accepted only
//! when its certificate chains to the cluster CA (rustls' WebPKI verifiers, the CA as the only
//! root) and, on the server side, names a configured node of this cluster (a DNS subject
//! alternative name); the client checks the server's certificate for the node it dialled:
//! the name of the node whose address it is in the running configuration
//! ([`RaftTls::set_addresses`]; node certificates carry their node's name, so an address
//! `halcyon apply` added later is proved by the certificate of the node's start), else the
//! address itself (the witness; node certificates carry every address given at `halcyon
//! init`). Nothing of a refused
//! connection reaches the Raft frame decoder or the HTTP parser. On the public API a client
//! certificate is optional (administrators have tokens; nodes present theirs, which must then
//! be of the cluster CA). Refusals are counted ([`RaftTls::refused`] for Raft,
//! [`RaftTls::api_refused`] for the API ports) and logged at most once per
//! [`REFUSAL_LOG_INTERVAL`]. Raft connections stay open in the consensus transport's pool: one
//! handshake per connection, not per request. So do the API client's connections to other
//! nodes (`client::KeptConnections`): a lease renewal goes out on the connection the last one
//! used. A connection that has to be opened resumes a TLS 1.3 session when it can
//! ([`RaftTls::api_client`]: one `ClientConfig`, so one session cache, for every API
//! connection) instead of verifying certificates again.
//!
//! Handshakes of accepted connections run concurrently, each within [`HANDSHAKE_TIMEOUT`],
//! at most [`HANDSHAKES_MAX`] at once (more are closed at accept), so a slow or silent
//! client cannot hold the accept loop.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use halcyon_consensus::{ClusterId, Consensus, NodeAddrs, NodeId, OpenError, RaftTimings};
use halcyon_pki::Credentials;
/// The name a server's certificate is checked for (a node's name, or an address).
pub use rustls::pki_types::ServerName;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use crate::POISONED;

/// Longest a TLS handshake may take on the server.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Handshakes in progress at once per listener.
pub const HANDSHAKES_MAX: usize = 64;
/// At most one refusal is logged per this interval.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// What a kind of listener refused: counted, and logged at most once per
/// [`REFUSAL_LOG_INTERVAL`] with the number refused so far.
#[derive(Clone, Default)]
struct Refusals {
    count: Arc<AtomicU64>,
    last_log: Arc<Mutex<Option<Instant>>>,
}

impl Refusals {
    fn refuse(&self, what: &str, local: Option<SocketAddr>, peer: SocketAddr, why: &str) {
        let refused = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last_log.lock().expect(POISONED);
        let now = Instant::now();
        if last.is_none_or(|l| now.duration_since(l) >= REFUSAL_LOG_INTERVAL) {
            *last = Some(now);
            tracing::warn!(?local, %peer, refused, "{what} connection refused: {why}");
        }
    }

    fn get(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// The TLS configurations of one version of a node's credentials.
struct Configs {
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
    /// The API client's (node to node): a session cache of its own, apart from Raft's.
    api_client: Arc<ClientConfig>,
    /// The internal API's: a client certificate of the cluster CA required, as on Raft.
    internal_server: Arc<ServerConfig>,
    /// The public API's: a client certificate optional (of the cluster CA when given).
    public_server: Arc<ServerConfig>,
}

/// Which server configuration a listener takes for each handshake.
#[derive(Clone, Copy)]
enum Port {
    Raft,
    Internal,
    Public,
}

impl Configs {
    fn server(&self, port: Port) -> Arc<ServerConfig> {
        Arc::clone(match port {
            Port::Raft => &self.server,
            Port::Internal => &self.internal_server,
            Port::Public => &self.public_server,
        })
    }
}

/// Shared by the node's listeners, transport and API client: each new connection takes the
/// configurations in force when it begins; [`RaftTls::install`] replaces them (connections
/// already made keep theirs).
type SharedConfigs = Arc<std::sync::RwLock<Arc<Configs>>>;

/// The names a client's certificate may carry, shared by the listeners and replaced when
/// the running configuration's nodes change.
type SharedNames = Arc<std::sync::RwLock<BTreeSet<String>>>;

/// The node each cluster node's address belongs to, shared by the transport and the API
/// client and replaced with the running configuration: a peer's certificate is checked for
/// the node dialled (its name), not for the address (which a network added by `halcyon
/// apply` gives a node whose certificate was made before).
type SharedAddresses = Arc<std::sync::RwLock<HashMap<IpAddr, String>>>;

/// The name a server dialled at `addr` must prove: the node `addresses` says `addr` is one of
/// (its certificate names it), else the address itself (the witness, a node not in the
/// running configuration, a name that cannot be a DNS name).
fn server_name(addresses: &SharedAddresses, addr: SocketAddr) -> ServerName<'static> {
    node_or_address_name(&addresses.read().expect(POISONED), addr)
}

/// The name a server dialled at `addr` must prove, given whose each node address is
/// (`peers::node_of_address`): that node's name, else the address itself.
pub fn node_or_address_name(
    nodes: &HashMap<IpAddr, String>,
    addr: SocketAddr,
) -> ServerName<'static> {
    nodes
        .get(&addr.ip())
        .and_then(|name| ServerName::try_from(name.clone()).ok())
        .unwrap_or_else(|| address_name(addr))
}

fn current(configs: &SharedConfigs) -> Arc<Configs> {
    Arc::clone(&configs.read().expect(POISONED))
}

/// Configurations built by [`RaftTls::prepare`], not yet in use.
pub struct PreparedTls(Arc<Configs>);

/// The node's TLS settings for Raft and the API, from its credentials (replaced at a
/// reload of the credentials).
pub struct RaftTls {
    configs: SharedConfigs,
    /// The names a peer's certificate may carry: the configured nodes and the witness
    /// (those of the running configuration: [`RaftTls::set_nodes`]).
    nodes: SharedNames,
    /// Whose each node address is (those of the running configuration:
    /// [`RaftTls::set_addresses`]).
    addresses: SharedAddresses,
    refused: Refusals,
    api_refused: Refusals,
    /// Installs since start: connections kept open by the API client are reused only within
    /// the generation they were made in ([`RaftTls::generation`]).
    generation: AtomicU64,
}

impl RaftTls {
    /// From a node's (or the witness's) credentials; `nodes`: the names of the cluster's
    /// Raft members.
    pub fn new(credentials: &Credentials, nodes: BTreeSet<String>) -> Result<RaftTls, String> {
        Ok(RaftTls {
            configs: Arc::new(std::sync::RwLock::new(Arc::new(Configs::new(credentials)?))),
            nodes: Arc::new(std::sync::RwLock::new(nodes)),
            addresses: SharedAddresses::default(),
            refused: Refusals::default(),
            api_refused: Refusals::default(),
            generation: AtomicU64::new(0),
        })
    }

    /// The TLS configurations of `credentials` (a reload: another certificate, more or
    /// fewer trusted CAs), ready for [`RaftTls::install`]; refused when they do not make one.
    pub fn prepare(&self, credentials: &Credentials) -> Result<PreparedTls, String> {
        Ok(PreparedTls(Arc::new(Configs::new(credentials)?)))
    }

    /// The names a peer's certificate may carry from now on (a running cluster's `halcyon
    /// apply` added or removed nodes): handshakes that end after this are checked against
    /// them; connections already accepted stay.
    pub fn set_nodes(&self, nodes: BTreeSet<String>) {
        *self.nodes.write().expect(POISONED) = nodes;
    }

    /// Whose each node address is from now on (the running configuration's interfaces):
    /// a connection to one of them checks the server's certificate for that node's name.
    /// An address in no entry is checked as itself.
    pub fn set_addresses(&self, addresses: HashMap<IpAddr, String>) {
        *self.addresses.write().expect(POISONED) = addresses;
    }

    /// The name the server at `addr` must prove (see [`RaftTls::set_addresses`]).
    pub fn server_name(&self, addr: SocketAddr) -> ServerName<'static> {
        server_name(&self.addresses, addr)
    }

    /// Puts prepared configurations in use for the connections made from now on.
    pub fn install(&self, prepared: PreparedTls) {
        *self.configs.write().expect(POISONED) = prepared.0;
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// How many times configurations were installed since start: a connection opened before
    /// the latest install is not reused for a new request (`platform::TlsNetwork`), so after
    /// a reload every request goes out with the new credentials.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Raft connections refused since start (handshake failed, or a certificate naming no
    /// node).
    pub fn refused(&self) -> u64 {
        self.refused.get()
    }

    /// API connections (public and internal) refused since start: the TLS handshake failed
    /// (a client speaking plain HTTP, a certificate of another CA or expired), or, on the
    /// internal API, no certificate or one naming no node.
    pub fn api_refused(&self) -> u64 {
        self.api_refused.get()
    }

    /// The client settings for the API of other nodes (and the witness): the node's
    /// certificate as client certificate, servers checked against the cluster CA (and the
    /// name of [`RaftTls::server_name`], given at each connect). Always the same `ClientConfig`, whose session cache lets the next
    /// connection to a server resume.
    pub fn api_client(&self) -> Arc<ClientConfig> {
        Arc::clone(&current(&self.configs).api_client)
    }

    /// The transport for outgoing Raft connections.
    pub fn transport(&self) -> TlsTransport {
        TlsTransport {
            configs: Arc::clone(&self.configs),
            addresses: Arc::clone(&self.addresses),
        }
    }

    /// A listener for incoming Raft connections on `tcp`.
    pub fn listener(&self, tcp: TcpListener) -> TlsListener {
        TlsListener {
            tcp,
            configs: Arc::clone(&self.configs),
            port: Port::Raft,
            nodes: Some(Arc::clone(&self.nodes)),
            what: "Raft",
            refusals: self.refused.clone(),
            handshakes: JoinSet::new(),
        }
    }

    /// A listener for the internal API on `tcp`: only nodes of the cluster come out of it.
    pub fn internal_listener(&self, tcp: TcpListener) -> ApiListener {
        ApiListener(TlsListener {
            tcp,
            configs: Arc::clone(&self.configs),
            port: Port::Internal,
            nodes: Some(Arc::clone(&self.nodes)),
            what: "internal API",
            refusals: self.api_refused.clone(),
            handshakes: JoinSet::new(),
        })
    }

    /// A listener for the public API on `tcp`: any client that completes the handshake
    /// (tokens and node signatures are checked by the API's middleware).
    pub fn public_listener(&self, tcp: TcpListener) -> ApiListener {
        ApiListener(TlsListener {
            tcp,
            configs: Arc::clone(&self.configs),
            port: Port::Public,
            nodes: None,
            what: "API",
            refusals: self.api_refused.clone(),
            handshakes: JoinSet::new(),
        })
    }
}

/// Opens consensus as `Consensus::open` does, on TLS listeners and transport.
pub async fn open<A: halcyon_consensus::Application>(
    tls: &RaftTls,
    cluster: ClusterId,
    id: NodeId,
    addrs: NodeAddrs,
    db_path: &std::path::Path,
    app: A,
    timings: RaftTimings,
) -> Result<Consensus, OpenError> {
    let mut listeners = Vec::with_capacity(addrs.addrs.len());
    for addr in &addrs.addrs {
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| OpenError::Listen {
                addr: *addr,
                source,
            })?;
        listeners.push(tls.listener(tcp));
    }
    Consensus::open_with(
        cluster,
        id,
        db_path,
        app,
        timings,
        tls.transport(),
        listeners,
        halcyon_consensus::FaultHook::default(),
    )
    .await
}

impl Configs {
    /// The client and server configurations of `credentials`: this node's certificate, every
    /// trusted CA (two during a CA rollover) as a root.
    fn new(credentials: &Credentials) -> Result<Configs, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for ca in &credentials.trusted_cas_der {
            roots
                .add(CertificateDer::from(ca.clone()))
                .map_err(|e| format!("a CA certificate: {e}"))?;
        }
        let roots = Arc::new(roots);
        let chain = vec![CertificateDer::from(credentials.certificate_der.clone())];
        let key = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(credentials.key_der.clone()));
        let client = || {
            ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(Arc::clone(&roots))
                .with_client_auth_cert(chain.clone(), key())
                .map_err(|e| format!("the node certificate and key: {e}"))
        };
        let server = |optional: bool| {
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::clone(&roots),
                Arc::clone(&provider),
            );
            let verifier = if optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            }
            .build()
            .map_err(|e| format!("the client verifier: {e}"))?;
            ServerConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain.clone(), key())
                .map_err(|e| format!("the node certificate and key: {e}"))
        };
        Ok(Configs {
            client: Arc::new(client()?),
            server: Arc::new(server(false)?),
            api_client: Arc::new(client()?),
            internal_server: Arc::new(server(false)?),
            public_server: Arc::new(server(true)?),
        })
    }
}

/// Outgoing Raft connections over TLS.
pub struct TlsTransport {
    configs: SharedConfigs,
    addresses: SharedAddresses,
}

impl halcyon_consensus::Transport for TlsTransport {
    type Stream = TlsStream<TcpStream>;

    async fn connect(&self, addr: SocketAddr) -> io::Result<Self::Stream> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = server_name(&self.addresses, addr);
        let connector = TlsConnector::from(Arc::clone(&current(&self.configs).client));
        let tls = connector.connect(name, tcp).await?;
        Ok(TlsStream::Client(tls))
    }
}

/// Incoming connections over TLS: only peers that completed the handshake (and, on the
/// mutual ports, whose certificate names a configured node) come out of `accept`.
pub struct TlsListener {
    tcp: TcpListener,
    /// The configurations in force (read at each handshake) and which server's this is.
    configs: SharedConfigs,
    port: Port,
    /// The names one of which a client's certificate must carry; `None`: no certificate
    /// needed (the public API).
    nodes: Option<SharedNames>,
    /// What it serves, in the log.
    what: &'static str,
    refusals: Refusals,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    fn handshake(&mut self, tcp: TcpStream, peer: SocketAddr) {
        let acceptor = TlsAcceptor::from(current(&self.configs).server(self.port));
        let nodes = self.nodes.clone();
        let refusals = self.refusals.clone();
        let what = self.what;
        let local = self.tcp.local_addr().ok();
        self.handshakes.spawn(async move {
            let why = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Err(_) => format!("no TLS handshake within {HANDSHAKE_TIMEOUT:?}"),
                // The peer went away before the handshake ended (a pre-vote round that ended
                // before this node answered aborts its call): nothing was refused.
                Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    tracing::debug!(?local, %peer, "{what} connection closed by the peer during the TLS handshake");
                    return None;
                }
                Ok(Err(e)) => format!("TLS handshake failed: {e}"),
                Ok(Ok(tls)) => {
                    let Some(nodes) = nodes else {
                        return Some((TlsStream::Server(tls), peer));
                    };
                    let names = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| halcyon_pki::certificate_names(c))
                        .unwrap_or_default();
                    let known = {
                        let nodes = nodes.read().expect(POISONED);
                        names.iter().any(|n| nodes.contains(n))
                    };
                    if known {
                        return Some((TlsStream::Server(tls), peer));
                    }
                    format!("its certificate names no node of this cluster ({names:?})")
                }
            };
            refusals.refuse(what, local, peer, &why);
            None
        });
    }

    /// The next connection whose handshake succeeded (see [`TlsListener`]).
    async fn next(&mut self) -> io::Result<(TlsStream<TcpStream>, SocketAddr)> {
        loop {
            tokio::select! {
                biased;
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(accepted)) = done {
                        return Ok(accepted);
                    }
                }
                accepted = self.tcp.accept() => {
                    let (tcp, peer) = accepted?;
                    if self.handshakes.len() >= HANDSHAKES_MAX {
                        self.refusals.refuse(
                            self.what,
                            self.tcp.local_addr().ok(),
                            peer,
                            &format!("{HANDSHAKES_MAX} TLS handshakes in progress"),
                        );
                        continue;
                    }
                    let _ = tcp.set_nodelay(true);
                    self.handshake(tcp, peer);
                }
            }
        }
    }
}

impl halcyon_consensus::Listener for TlsListener {
    type Stream = TlsStream<TcpStream>;

    async fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr)> {
        self.next().await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// An API port over TLS, for axum (`platform::spawn_api_server`): connections come out once
/// their handshake succeeded, so a refused client never reaches the HTTP parser.
pub struct ApiListener(TlsListener);

impl axum::serve::Listener for ApiListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.next().await {
                Ok(accepted) => return accepted,
                // Out of file descriptors and the like: as axum's own TCP listener does.
                Err(e) => {
                    tracing::error!(what = self.0.what, "accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.tcp.local_addr()
    }
}

/// The certificate a client authenticated a server-side connection with (the internal
/// API's mutual TLS: its handshake required one of the cluster CA naming a configured node);
/// `None` on a client-side connection or without a client certificate.
pub fn client_certificate(
    stream: &TlsStream<TcpStream>,
) -> Option<crate::platform::PeerCertificate> {
    let TlsStream::Server(tls) = stream else {
        return None;
    };
    let first = tls.get_ref().1.peer_certificates()?.first()?;
    Some(crate::platform::PeerCertificate(Arc::from(first.as_ref())))
}

/// The address dialled as the name a server's certificate must carry (what the CLI checks:
/// a node's certificate names its addresses as given at `halcyon init`).
pub fn address_name(addr: SocketAddr) -> ServerName<'static> {
    ServerName::IpAddress(addr.ip().into())
}

/// Opens a TLS connection to the API at `addr` with `config`, checking the server's
/// certificate for `name` (a node's name, or the address dialled).
pub async fn connect_api(
    config: &Arc<ClientConfig>,
    addr: SocketAddr,
    name: ServerName<'static>,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    TlsConnector::from(Arc::clone(config))
        .connect(name, tcp)
        .await
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use tokio::io::AsyncWriteExt;

    use super::*;

    /// A listener of node n1's credentials (made for 127.0.0.1; n2's for 127.0.0.3) on
    /// 127.0.0.1, accepting in a task.
    async fn listening(dir: &std::path::Path) -> (SocketAddr, RaftTls) {
        listening_on(dir, [127, 0, 0, 1]).await
    }

    async fn listening_on(dir: &std::path::Path, host: [u8; 4]) -> (SocketAddr, RaftTls) {
        let cluster = halcyon_pki::ClusterSpec {
            name: "t".to_owned(),
            id: 7,
            nodes: vec![
                halcyon_pki::NodeSpec {
                    name: "n1".to_owned(),
                    addresses: vec![[127, 0, 0, 1].into()],
                },
                halcyon_pki::NodeSpec {
                    name: "n2".to_owned(),
                    addresses: vec![[127, 0, 0, 3].into()],
                },
            ],
        };
        halcyon_pki::init(dir, &cluster, false, SystemTime::now()).expect("init");
        let credentials = halcyon_pki::load(dir, "n1").expect("load");
        let names = BTreeSet::from(["n1".to_owned(), "n2".to_owned()]);
        let tls = RaftTls::new(&credentials, names).expect("tls");
        let tcp = TcpListener::bind(SocketAddr::from((host, 0)))
            .await
            .expect("bind");
        let addr = tcp.local_addr().expect("addr");
        let mut listener = tls.listener(tcp);
        tokio::spawn(async move {
            use halcyon_consensus::Listener;
            while listener.accept().await.is_ok() {}
        });
        (addr, tls)
    }

    /// A node given an address its certificate does not name (a network `halcyon apply`
    /// added) is reached there once the address is known to be that node's: the certificate
    /// is checked for the node's name. Known as another node's, or not known, it is refused.
    #[tokio::test]
    async fn a_node_is_checked_by_name_at_an_address_its_certificate_lacks() {
        use halcyon_consensus::Transport;
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = dir.path().join("pki");
        let (addr, _server) = listening_on(&pki, [127, 0, 0, 2]).await;
        let credentials = halcyon_pki::load(&pki, "n2").expect("load");
        let names = BTreeSet::from(["n1".to_owned(), "n2".to_owned()]);
        let client = RaftTls::new(&credentials, names).expect("tls");
        let transport = client.transport();
        let Err(refused) = transport.connect(addr).await else {
            panic!("accepted a certificate that names neither the address nor a node there")
        };
        assert!(refused.to_string().contains("certificate"), "{refused}");
        client.set_addresses(HashMap::from([(addr.ip(), "n2".to_owned())]));
        let Err(refused) = transport.connect(addr).await else {
            panic!("accepted n1's certificate for n2")
        };
        assert!(refused.to_string().contains("certificate"), "{refused}");
        client.set_addresses(HashMap::from([(addr.ip(), "n1".to_owned())]));
        assert!(transport.connect(addr).await.is_ok());
        // The API client checks the same way.
        let name = client.server_name(addr);
        assert_eq!(name, ServerName::try_from("n1").expect("a name"));
        client.set_addresses(HashMap::new());
        assert_eq!(client.server_name(addr), address_name(addr));
    }

    async fn refused_after(tls: &RaftTls, at_least: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        while tls.refused() < at_least && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tls.refused()
    }

    /// A peer that goes away before the handshake ends (a pre-vote call aborted when its round
    /// was decided) is not a refusal; a peer speaking without TLS is.
    #[tokio::test]
    async fn a_peer_that_closes_during_the_handshake_is_not_counted_as_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (addr, tls) = listening(&dir.path().join("pki")).await;
        for _ in 0..3 {
            drop(TcpStream::connect(addr).await.expect("connect"));
        }
        let mut clear = TcpStream::connect(addr).await.expect("connect");
        clear.write_all(b"\0\0\0\x02{}").await.expect("write");
        assert_eq!(
            refused_after(&tls, 1).await,
            1,
            "only the frame in the clear"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(tls.refused(), 1);
    }
}
