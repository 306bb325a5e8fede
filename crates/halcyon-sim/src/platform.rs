//! The daemon's [`Platform`] inside the simulation: turmoil's network, a drifting clock, a
//! lease guard kept by the [`World`] (so it outlives a killed daemon), simulated resources that
//! record what runs where, and heartbeats over turmoil UDP driven by the membership crate's
//! async task.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use halcyon_config::{Cluster, Package};
use halcyon_consensus::{
    ClusterId, Consensus, FaultHook, Listener, NodeAddrs, NodeId, OpenError, RaftTimings, Transport,
};
use halcyon_daemon::faults::HeartbeatFaults;
use halcyon_daemon::platform::{
    Clock, GuardFactory, HeartbeatHandle, Heartbeats, LeaseGuard, Listening, Network,
    NodeApplication, OpenListener, Platform, ResourceFactory, Stream, spawn_api_server,
};
use halcyon_guard::{Address, BootTime, FenceSummary};
use halcyon_membership::task::{RecvFuture, SendFuture};
use halcyon_membership::{
    AsyncHeartbeatLink, DetectorConfig, HeartbeatTask as Detecting, Plain, RunnerSettings, Status,
};
use halcyon_resources::fence::FenceAction;
use halcyon_resources::{
    Health, PackageEnv, PackageResources, Resource, ResourceError, StopMode, StopReport,
};
use jiff::Timestamp;
use tokio::time::Instant;

use crate::world::World;

/// How long a simulated resource takes to start.
const START_TIME: Duration = Duration::from_millis(20);
/// How long a simulated fence device takes to switch a node off and confirm it.
const FENCE_TIME: Duration = Duration::from_millis(50);
/// The wall-clock time at simulated time zero (2026-01-01T00:00:00Z).
const EPOCH_SECONDS: i64 = 1_767_225_600;

/// The platform of node `node` (built inside its host, on every boot).
pub fn platform(world: &World, node: u32, fault_hook: &FaultHook) -> Platform {
    Platform {
        clock: Arc::new(SimClock::new(world.clone(), node)),
        network: Arc::new(SimNetwork {
            fault_hook: fault_hook.clone(),
        }),
        heartbeats: Arc::new(SimHeartbeats {
            world: world.clone(),
        }),
        guards: Arc::new(SimGuards {
            world: world.clone(),
            node,
        }),
        resources: Arc::new(SimResources {
            world: world.clone(),
            node,
        }),
        // Set by the caller (`run::boot`), which checks the invariants.
        applied: None,
    }
}

// ------------------------------------------------------------------------------------ clock

/// Simulated time at the node's clock rate.
pub struct SimClock {
    world: World,
    node: u32,
    base: Instant,
    base_sim: Duration,
}

impl SimClock {
    fn new(world: World, node: u32) -> SimClock {
        let base_sim = world.now();
        SimClock {
            world,
            node,
            base: Instant::now(),
            base_sim,
        }
    }

    fn rate(&self) -> f64 {
        self.world
            .lock()
            .rates
            .get(&self.node)
            .copied()
            .unwrap_or(1.0)
    }
}

impl Clock for SimClock {
    fn now(&self) -> Instant {
        let elapsed = self.world.now().saturating_sub(self.base_sim);
        self.base + elapsed.mul_f64(self.rate())
    }

    fn timestamp(&self) -> Timestamp {
        let nanos = self.world.now().mul_f64(self.rate()).as_nanos() as i128;
        Timestamp::from_nanosecond(i128::from(EPOCH_SECONDS) * 1_000_000_000 + nanos)
            .unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

// ---------------------------------------------------------------------------------- network

/// turmoil's TCP.
pub struct SimNetwork {
    fault_hook: FaultHook,
}

impl SimNetwork {
    /// The simulator's network, with consensus faults from `fault_hook` (shared by the run).
    pub fn new(fault_hook: FaultHook) -> SimNetwork {
        SimNetwork { fault_hook }
    }
}

struct TurmoilTransport;

impl Transport for TurmoilTransport {
    type Stream = turmoil::net::TcpStream;

    async fn connect(&self, addr: SocketAddr) -> io::Result<Self::Stream> {
        turmoil::net::TcpStream::connect(addr).await
    }
}

/// A turmoil listener (bound to the unspecified address: turmoil binds nothing else) that
/// reports the node's configured address as its own.
struct TurmoilListener {
    listener: turmoil::net::TcpListener,
    addr: SocketAddr,
}

impl TurmoilListener {
    async fn bind(addr: SocketAddr) -> io::Result<TurmoilListener> {
        let any = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), addr.port());
        Ok(TurmoilListener {
            listener: turmoil::net::TcpListener::bind(any).await?,
            addr,
        })
    }
}

impl Listener for TurmoilListener {
    type Stream = turmoil::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr)> {
        self.listener.accept().await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

impl axum::serve::Listener for TurmoilListener {
    type Io = turmoil::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Ok(accepted) = self.listener.accept().await {
                return accepted;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

impl Network for SimNetwork {
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Pin<Box<dyn Stream>>>> {
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect(addr).await?;
            Ok(Box::pin(stream) as Pin<Box<dyn Stream>>)
        })
    }

    fn serve_internal(
        &self,
        router: axum::Router,
        addrs: Vec<SocketAddr>,
    ) -> BoxFuture<'_, anyhow::Result<Listening>> {
        self.serve_api(router, addrs, None)
    }

    fn serve_api(
        &self,
        router: axum::Router,
        addrs: Vec<SocketAddr>,
        local: Option<std::path::PathBuf>,
    ) -> BoxFuture<'_, anyhow::Result<Listening>> {
        Box::pin(async move {
            if let Some(path) = local {
                anyhow::bail!(
                    "API socket {}: simulated nodes have no local socket",
                    path.display()
                );
            }
            let open: OpenListener = Box::new(move |addr| {
                let router = router.clone();
                Box::pin(async move {
                    let listener = TurmoilListener::bind(addr).await?;
                    Ok(spawn_api_server(listener, router))
                })
            });
            let listening = Listening::new("API", open);
            for addr in addrs {
                listening.add(addr).await?;
            }
            Ok(listening)
        })
    }

    fn serve_raft_also<'a>(
        &'a self,
        consensus: &'a Consensus,
        addr: SocketAddr,
    ) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move { consensus.serve_also(TurmoilListener::bind(addr).await?) })
    }

    fn open_consensus(
        &self,
        cluster: ClusterId,
        id: NodeId,
        addrs: NodeAddrs,
        db_path: &Path,
        app: NodeApplication,
        timings: RaftTimings,
        tls: Option<Arc<halcyon_daemon::raft_tls::RaftTls>>,
    ) -> BoxFuture<'static, Result<Consensus, OpenError>> {
        assert!(
            tls.is_none(),
            "simulated nodes run without credentials (insecure): the simulator has no TLS"
        );
        let db_path = db_path.to_owned();
        let hook = self.fault_hook.clone();
        Box::pin(async move {
            let mut listeners = Vec::new();
            for addr in addrs.addrs.iter().copied() {
                let listener = TurmoilListener::bind(addr)
                    .await
                    .map_err(|source| OpenError::Listen { addr, source })?;
                listeners.push(listener);
            }
            Consensus::open_with(
                cluster,
                id,
                &db_path,
                app,
                timings,
                TurmoilTransport,
                listeners,
                hook,
            )
            .await
        })
    }
}

// ------------------------------------------------------------------------------- heartbeats

/// Heartbeats over turmoil UDP, judged by the membership crate's detector in a task.
pub struct SimHeartbeats {
    world: World,
}

/// A disk heartbeat link on a simulated shared disk ([`crate::world::Inner::disks`]): each
/// node writes its slot, and reads its peers' slots every poll period (half the shortest
/// interval in play), handing on each slot written since it last looked, once.
struct DiskLink {
    world: World,
    device: String,
    network: u32,
    node: u32,
    peers: Vec<u32>,
    /// Each peer's slot writes seen (a new peer's slot is read from its next write).
    seen: BTreeMap<u32, u64>,
    poll: Duration,
}

impl DiskLink {
    fn new(world: &World, device: &str, network: u32, node: u32, peers: Vec<u32>) -> DiskLink {
        let mut link = DiskLink {
            world: world.clone(),
            device: device.to_owned(),
            network,
            node,
            peers: Vec::new(),
            seen: BTreeMap::new(),
            poll: Duration::from_millis(50),
        };
        link.watch(peers);
        link
    }

    /// From now on read `peers`' slots, each from its next write.
    fn watch(&mut self, peers: Vec<u32>) {
        let world = self.world.lock();
        let slots = world.disks.get(&self.device);
        let written = |peer: u32| slots.and_then(|s| s.get(&peer)).map_or(0, |(n, _)| *n);
        self.seen.retain(|peer, _| peers.contains(peer));
        for &peer in &peers {
            self.seen.entry(peer).or_insert_with(|| written(peer));
        }
        self.peers = peers;
    }

    /// A slot written since it was last looked at, marked seen.
    fn take_new(&mut self) -> Option<Vec<u8>> {
        let world = self.world.lock();
        let slots = world.disks.get(&self.device)?;
        for peer in &self.peers {
            let Some((written, bytes)) = slots.get(peer) else {
                continue;
            };
            let seen = self.seen.entry(*peer).or_default();
            if *written > *seen {
                *seen = *written;
                return Some(bytes.clone());
            }
        }
        None
    }
}

impl AsyncHeartbeatLink for DiskLink {
    fn network(&self) -> u32 {
        self.network
    }

    fn send<'a>(&'a mut self, bytes: &'a [u8]) -> SendFuture<'a> {
        Box::pin(async move {
            let mut world = self.world.lock();
            let slot = world
                .disks
                .entry(self.device.clone())
                .or_default()
                .entry(self.node)
                .or_default();
            slot.0 += 1;
            slot.1 = bytes.to_vec();
            Ok(())
        })
    }

    fn set_peers(&mut self, peers: Vec<halcyon_membership::LinkPeer>) -> std::io::Result<()> {
        self.watch(peers.iter().map(|p| p.node).collect());
        Ok(())
    }

    fn set_interval(&mut self, interval: Duration) {
        self.poll = (interval / 2).max(Duration::from_millis(1));
    }

    /// Cancel-safe: a slot is marked seen only as it is returned.
    fn recv(&mut self) -> RecvFuture<'_> {
        Box::pin(async move {
            loop {
                if let Some(bytes) = self.take_new() {
                    return Ok(bytes);
                }
                tokio::time::sleep(self.poll).await;
            }
        })
    }
}

/// The link of node `node` on disk network `network` of `cluster`, if it is on it.
fn disk_link(world: &World, cluster: &Cluster, node: u32, network: u32) -> Option<DiskLink> {
    let network = cluster.networks.iter().find(|n| n.number == network)?;
    let device = network.device.as_deref()?;
    let peers = halcyon_membership::link_peers(cluster, node)
        .ok()?
        .remove(&network.number)?;
    Some(DiskLink::new(
        world,
        device,
        network.number,
        node,
        peers.iter().map(|p| p.node).collect(),
    ))
}

struct UdpLink {
    network: u32,
    socket: turmoil::net::UdpSocket,
    peers: Vec<SocketAddr>,
}

impl AsyncHeartbeatLink for UdpLink {
    fn network(&self) -> u32 {
        self.network
    }

    fn send<'a>(&'a mut self, bytes: &'a [u8]) -> SendFuture<'a> {
        Box::pin(async move {
            for peer in &self.peers {
                // A datagram to a crashed host is lost, as on a LAN.
                let _ = self.socket.send_to(bytes, *peer).await;
            }
            Ok(())
        })
    }

    fn set_peers(&mut self, peers: Vec<halcyon_membership::LinkPeer>) -> std::io::Result<()> {
        self.peers = halcyon_membership::addresses_of(&peers)?
            .into_iter()
            .map(|(_, address)| address)
            .collect();
        Ok(())
    }

    fn recv(&mut self) -> RecvFuture<'_> {
        Box::pin(async move {
            let mut buf = vec![0u8; 512];
            let (n, _) = self.socket.recv_from(&mut buf).await?;
            buf.truncate(n);
            Ok(buf)
        })
    }
}

struct HeartbeatTask {
    world: World,
    node: u32,
    /// The networks the task has a link of, with where each is (as the host's).
    linked: std::sync::Mutex<BTreeMap<u32, halcyon_membership::LinkEndpoint>>,
    status: tokio::sync::watch::Receiver<Status>,
    /// Set once the task has bound its sockets and started detecting.
    control: Arc<std::sync::OnceLock<halcyon_membership::task::HeartbeatControl>>,
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeats for SimHeartbeats {
    fn start(
        &self,
        cluster: &Cluster,
        node: u32,
        incarnation: u64,
        _faults: Option<HeartbeatFaults>,
        // The simulator's heartbeats are plain: it configures no credentials.
        _keys: Option<Vec<[u8; halcyon_membership::hmac_sealer::KEY_BYTES]>>,
    ) -> anyhow::Result<Box<dyn HeartbeatHandle>> {
        let config = DetectorConfig::from_cluster(cluster, node)?;
        let me = cluster
            .nodes
            .iter()
            .find(|n| n.number == node)
            .ok_or_else(|| anyhow::anyhow!("node {node} is not in the cluster"))?;
        let mut networks = Vec::new();
        for network in &cluster.networks {
            let Some(local) = me
                .interface_on(network.name.as_str())
                .and_then(|i| i.address)
            else {
                continue;
            };
            let peers: Vec<SocketAddr> = cluster
                .nodes
                .iter()
                .filter(|n| n.number != node)
                .filter_map(|n| {
                    n.interface_on(network.name.as_str())
                        .and_then(|i| i.address)
                })
                .map(|a| SocketAddr::new(a, cluster.port))
                .collect();
            networks.push((network.number, SocketAddr::new(local, cluster.port), peers));
        }
        let disks: Vec<DiskLink> = cluster
            .networks
            .iter()
            .filter(|n| n.kind == halcyon_config::NetworkKind::Disk)
            .filter_map(|n| disk_link(&self.world, cluster, node, n.number))
            .collect();
        let (published, status) = tokio::sync::watch::channel(Status::default());
        let settings = RunnerSettings {
            cluster_id: cluster.id,
            incarnation,
            realtime_priority: None,
            lock_memory: false,
        };
        let control = Arc::new(std::sync::OnceLock::new());
        let control_set = Arc::clone(&control);
        // The sockets are bound inside the task (turmoil binds asynchronously).
        let task = tokio::spawn(async move {
            let mut links: Vec<Box<dyn AsyncHeartbeatLink>> = Vec::new();
            for (network, local, peers) in networks {
                let any = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), local.port());
                match turmoil::net::UdpSocket::bind(any).await {
                    Ok(socket) => links.push(Box::new(UdpLink {
                        network,
                        socket,
                        peers,
                    })),
                    Err(e) => tracing::error!("heartbeats: cannot bind {local}: {e}"),
                }
            }
            for disk in disks {
                links.push(Box::new(disk));
            }
            match Detecting::new(settings, config, links, Box::new(Plain), published, None) {
                Ok(detecting) => {
                    let _ = control_set.set(detecting.control());
                    match detecting.run().await {}
                }
                Err(e) => tracing::error!("heartbeats: {e}"),
            }
        });
        Ok(Box::new(HeartbeatTask {
            world: self.world.clone(),
            node,
            linked: std::sync::Mutex::new(halcyon_membership::link_endpoints(cluster, node)),
            status,
            control,
            task,
        }))
    }
}

impl HeartbeatHandle for HeartbeatTask {
    fn status(&self) -> tokio::sync::watch::Receiver<Status> {
        self.status.clone()
    }
    fn is_running(&self) -> bool {
        !self.task.is_finished()
    }
    fn reincarnate(&self, incarnation: u64) -> Result<(), String> {
        let control = self.control.get().ok_or("heartbeats not started yet")?;
        control.reincarnate(incarnation).map_err(|e| e.to_string())
    }
    fn set_heartbeat(
        &self,
        network: u32,
        heartbeat: halcyon_config::Heartbeat,
    ) -> Result<(), String> {
        let control = self.control.get().ok_or("heartbeats not started yet")?;
        control
            .set_heartbeat(network, heartbeat)
            .map_err(|e| e.to_string())
    }
    fn set_peers(
        &self,
        cluster: &Cluster,
        config: halcyon_membership::detector::DetectorConfig,
        links: halcyon_membership::LinkPeers,
    ) -> Result<(), String> {
        let control = self.control.get().ok_or("heartbeats not started yet")?;
        let mut linked = self.linked.lock().unwrap_or_else(|e| e.into_inner());
        let wanted = halcyon_membership::link_endpoints(cluster, self.node);
        // A simulated host has one address: a disk network's link is made here, an ip
        // network new to a running host is refused (`apply` never adds one in a run).
        let new = halcyon_daemon::platform::new_links(config, links, &wanted, &linked, |n| {
            disk_link(&self.world, cluster, self.node, n)
                .map(|link| Box::new(link) as Box<dyn AsyncHeartbeatLink>)
                .ok_or_else(|| format!("the simulator adds no ip network to a running host ({n})"))
        });
        control
            .set_peers(new.config, new.links, new.added)
            .map_err(|e| e.to_string())?;
        *linked = new.linked;
        if new.errors.is_empty() {
            Ok(())
        } else {
            Err(new.errors.join("; "))
        }
    }
    fn stop(self: Box<Self>) {
        self.task.abort();
    }
}

// ------------------------------------------------------------------------------ lease guard

/// Lease guards kept in the [`World`]: fired by the harness on the node's clock.
pub struct SimGuards {
    world: World,
    node: u32,
}

impl GuardFactory for SimGuards {
    fn start(&self, _max_reply_delay: Duration) -> anyhow::Result<Box<dyn LeaseGuard>> {
        // A new daemon's guard: like the real one, a previous incarnation's armed guard
        // keeps its deadline (it fences what it registered if the lease runs out).
        Ok(Box::new(SimGuard {
            world: self.world.clone(),
            node: self.node,
            shut: AtomicBool::new(false),
        }))
    }
}

struct SimGuard {
    world: World,
    node: u32,
    shut: AtomicBool,
}

impl LeaseGuard for SimGuard {
    fn clock(&self) -> BootTime {
        self.world.node_clock(self.node)
    }
    fn pid(&self) -> Option<u32> {
        None
    }
    fn lost(&self) -> Option<String> {
        if self.shut.load(Ordering::SeqCst) {
            return Some("no guard".into());
        }
        self.world.read_guard(self.node, |guard| {
            guard
                .and_then(|g| g.fences.first())
                .map(|f| format!("the guard fenced: {}", f.line))
        })
    }
    fn fenced(&self) -> bool {
        self.world
            .read_guard(self.node, |g| g.is_some_and(|g| !g.fences.is_empty()))
    }
    fn take_fences(&self) -> Vec<FenceSummary> {
        self.world
            .with_guard(self.node, |g| std::mem::take(&mut g.fences))
    }
    fn respawn_if_needed(&self) -> bool {
        false
    }
    fn extend(&self, deadline: BootTime) {
        self.world.with_guard(self.node, |g| {
            g.deadline = Some(g.deadline.map_or(deadline, |d| d.max(deadline)));
        });
    }
    fn register_group(&self, pgid: i32) -> Result<(), String> {
        self.world.with_guard(self.node, |g| g.groups.insert(pgid));
        Ok(())
    }
    fn register_address(&self, _address: Address) -> Result<(), String> {
        Ok(())
    }
    fn unregister_group(&self, pgid: i32) {
        self.world.with_guard(self.node, |g| g.groups.remove(&pgid));
    }
    fn unregister_address(&self, _address: Address) {}
    fn release(&self) {
        self.world.with_guard(self.node, |g| {
            g.deadline = None;
            g.groups.clear();
        });
    }
    fn shutdown(&self) {
        self.release();
        self.shut.store(true, Ordering::SeqCst);
    }
}

// -------------------------------------------------------------------------------- resources

/// Resources that record their activity in the [`World`].
pub struct SimResources {
    world: World,
    node: u32,
}

impl ResourceFactory for SimResources {
    fn build(
        &self,
        env: PackageEnv,
        package: &Package,
        _node: &halcyon_config::Node,
    ) -> Result<PackageResources, String> {
        let resources = package
            .resources
            .iter()
            .enumerate()
            .map(|(index, resource)| {
                Box::new(SimResource {
                    world: self.world.clone(),
                    node: self.node,
                    package: package.name.to_string(),
                    index,
                    what: resource.describe(),
                    process: matches!(resource, halcyon_config::Resource::Service(_)),
                    group: None,
                }) as Box<dyn Resource>
            })
            .collect();
        Ok(PackageResources::new(env, resources))
    }

    fn group_alive(&self, pgid: i32) -> bool {
        self.world.running(pgid)
    }

    fn kill_group(&self, pgid: i32) {
        self.world
            .stop_activity(pgid, "killed by a restarted daemon");
    }

    /// A simulated fence device (`--fencing`): switches node `nN` off in the world at once
    /// and confirms it after a device's round trip; a target that is no simulated node is
    /// not fenced.
    /// The simulated LAN has no host outside the cluster, and a simulated node adds no
    /// address to an interface: every address is free.
    fn check_address_free(
        &self,
        _resource: &halcyon_config::IpResource,
        _node: &halcyon_config::Node,
    ) -> halcyon_resources::BoxFuture<'static, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    fn fence(
        &self,
        target: &str,
        _fencing: &halcyon_config::Fencing,
        action: FenceAction,
    ) -> BoxFuture<'static, halcyon_state::FenceReport> {
        let world = self.world.clone();
        let target = target.to_owned();
        Box::pin(async move {
            tokio::time::sleep(FENCE_TIME).await;
            let node = target.strip_prefix('n').and_then(|n| n.parse::<u32>().ok());
            let confirmed = node.is_some();
            if let Some(node) = node {
                world.fence(node);
            }
            let summary = if confirmed {
                format!("{target} fenced ({action}) by level 1: the simulated switch")
            } else {
                format!("{target} NOT fenced ({action}): no simulated node of that name")
            };
            halcyon_state::FenceReport {
                action: action.to_string(),
                confirmed,
                summary,
                attempts: Vec::new(),
            }
        })
    }
}

struct SimResource {
    world: World,
    node: u32,
    package: String,
    index: usize,
    what: String,
    /// A supervised process (a service): it has a process group the guard can kill.
    process: bool,
    group: Option<i32>,
}

impl Resource for SimResource {
    fn describe(&self) -> String {
        self.what.clone()
    }

    fn start<'a>(&'a mut self, _env: &'a PackageEnv) -> BoxFuture<'a, Result<(), ResourceError>> {
        Box::pin(async move {
            tokio::time::sleep(START_TIME).await;
            if self.world.is_powered_off(self.node) {
                return Err(ResourceError::Failed {
                    what: self.what.clone(),
                    command: "simulated".into(),
                    status: "no power".into(),
                    output: String::new(),
                });
            }
            self.group = Some(
                self.world
                    .start_activity(self.node, &self.package, self.index),
            );
            Ok(())
        })
    }

    fn stop<'a>(
        &'a mut self,
        _env: &'a PackageEnv,
        _mode: StopMode,
    ) -> BoxFuture<'a, Result<StopReport, ResourceError>> {
        Box::pin(async move {
            match self.group.take() {
                Some(group) => {
                    self.world.stop_activity(group, "halted");
                }
                None if !self.process => {
                    // Like `ip addr del` or a script's halt: stops what is there, whoever
                    // started it (a previous incarnation's leftovers).
                    let leftovers: Vec<i32> = self
                        .world
                        .running_of(&self.package)
                        .into_iter()
                        .filter(|(node, group)| {
                            *node == self.node
                                && self
                                    .world
                                    .lock()
                                    .activities
                                    .get(group)
                                    .is_some_and(|a| a.resource == self.index)
                        })
                        .map(|(_, group)| group)
                        .collect();
                    for group in leftovers {
                        self.world.stop_activity(group, "halted (leftover)");
                    }
                }
                None => {}
            }
            Ok(StopReport {
                killed: false,
                detail: String::new(),
            })
        })
    }

    fn check(&mut self) -> Health {
        match self.group {
            Some(group) if self.world.running(group) => Health::Running,
            Some(_) => Health::Exited("killed".into()),
            None => Health::Stopped,
        }
    }

    fn exited(&mut self) -> BoxFuture<'_, String> {
        Box::pin(async move {
            let Some(group) = self.group.filter(|_| self.process) else {
                return std::future::pending().await;
            };
            self.world.ended(group).await;
            "killed".to_owned()
        })
    }

    fn process_group(&self) -> Option<i32> {
        self.group.filter(|_| self.process)
    }
}
