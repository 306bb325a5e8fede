//! One node's daemon: consensus, membership, the coordinator, the executor, leases.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use halcyon_config::{Config, NetworkName, NodeName, PackageName};
use halcyon_consensus::{Consensus, NodeAddrs, NodeId, RaftTimings, WriteError};
use halcyon_guard::{Address, BootTime};
use halcyon_membership::{NodeState, Status};
use halcyon_policy::Event;
use halcyon_resources::{Health, PackageEnv, PackageResources, StopMode};
use halcyon_state::{Command, Reply, State};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep};

use crate::client;
use crate::coordinator::decide::{Input, LeaseFacts, Memory, decide};
use crate::coordinator::emit;
use crate::executor::decide::{self, LocalAction, What};
use crate::executor::{INBOX_CAPACITY, Inbox};
use crate::faults::HeartbeatFaults;
use crate::guard::Gate;
use crate::lease::{self, Holder};
use crate::platform::{HeartbeatHandle, LeaseGuard, NodeApplication, Platform, ResourceFactory};

mod monitor;
mod program;
mod reports;

/// How often the coordinator and the executor look at the state when nothing wakes them.
const TICK: Duration = Duration::from_millis(20);
/// How long a node tries to get one command committed through the leader.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of one node-to-node API call.
const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Settings of one daemon.
#[derive(Clone, Debug)]
pub struct Settings {
    pub config_paths: Vec<PathBuf>,
    pub node: String,
    pub state_dir: PathBuf,
    /// Enables `POST /v1/debug/isolate` (tests only).
    pub test_faults: bool,
}

/// What the daemon asks of a package's supervision task.
pub(crate) enum Control {
    Stop(StopMode),
    /// Local LAN failover: move the package's addresses on this network to a standby interface.
    SwapAdapter(NetworkName),
}

type ControlMessage = (Control, oneshot::Sender<Result<String, String>>);

/// A package running (or starting) on this node.
pub(crate) struct LocalPackage {
    pub failover: bool,
    control: mpsc::Sender<ControlMessage>,
}

/// What a failover package has under the lease guard: its services' start gates, their
/// registered process groups (by resource index) and its registered addresses.
#[derive(Default)]
struct Guarded {
    gates: BTreeMap<usize, Gate>,
    groups: BTreeMap<usize, i32>,
    addresses: Vec<Address>,
}

impl Guarded {
    /// Registers resource `index`'s process group with the guard, then opens its start gate.
    fn admit(
        &mut self,
        guard: &dyn LeaseGuard,
        resources: &mut PackageResources,
        index: usize,
    ) -> Result<(), String> {
        let Some(gate) = self.gates.get_mut(&index) else {
            return Ok(());
        };
        let Some(pgid) = resources.resources[index].process_group() else {
            return Ok(());
        };
        guard.register_group(pgid)?;
        self.groups.insert(index, pgid);
        gate.open()
            .map_err(|e| format!("opening the start gate of resource {index}: {e}"))
    }

    fn forget_group(&mut self, guard: &dyn LeaseGuard, index: usize) {
        if let Some(pgid) = self.groups.remove(&index) {
            guard.unregister_group(pgid);
        }
        if let Some(gate) = self.gates.get_mut(&index) {
            gate.drain();
        }
    }

    fn register_address(&mut self, guard: &dyn LeaseGuard, address: Address) -> Result<(), String> {
        if !self.addresses.contains(&address) {
            guard.register_address(address)?;
            self.addresses.push(address);
        }
        Ok(())
    }

    /// The package stopped: nothing of it is left for the guard.
    fn unregister_all(&mut self, guard: &dyn LeaseGuard) {
        for (_, pgid) in std::mem::take(&mut self.groups) {
            guard.unregister_group(pgid);
        }
        for address in std::mem::take(&mut self.addresses) {
            guard.unregister_address(address);
        }
    }
}

/// The address of `ip` (resource `index`) as the guard knows it, on interface `device`.
fn guard_address(resources: &mut PackageResources, index: usize, device: &str) -> Option<Address> {
    let ip = resources.resources[index].as_ip_address()?;
    let subnet = ip.address();
    Some(Address {
        interface_index: halcyon_netlink::interface_index(device).ok()?,
        address: subnet.address,
        prefix_length: subnet.prefix,
    })
}

/// Everything a daemon's tasks share.
pub struct Node {
    pub name: NodeName,
    pub number: u32,
    /// The configuration read at start (bootstrap only); the applied one is in the state.
    pub boot_config: Arc<Config>,
    /// The event rules read at start with it (bootstrap only).
    boot_rules: halcyon_events::Rules,
    pub consensus: Consensus,
    /// The replicated state as this node's replica last applied it, published by the
    /// replica (`NodeApplication`) after every applied entry or restore.
    view: watch::Receiver<Arc<State>>,
    /// The highest log index a lease grant said was committed when it was granted.
    /// This node acts on placements (reconcile) only once its replica has applied at
    /// least that far: a node back from a power-off must not start a package its
    /// stale replica still places on it.
    fresh_from: AtomicU64,
    pub membership: Arc<Mutex<Status>>,
    heartbeats: Mutex<Option<Box<dyn HeartbeatHandle>>>,
    /// API addresses of every node (node number -> addresses).
    pub api_addrs: BTreeMap<NodeId, Vec<SocketAddr>>,
    /// The address of each peer that answered last (tried first).
    preferred_api: Mutex<BTreeMap<NodeId, SocketAddr>>,
    pub lease_duration: Duration,
    pub renew_interval: Duration,
    /// openraft's `election_timeout_max`: every voter of a new term waited this long after
    /// it last heard the old leader (the new coordinator's release wait counts on it).
    election_max: Duration,
    holder: Mutex<Holder>,
    /// Leader side: when each node was last granted a lease.
    grants: Mutex<BTreeMap<NodeName, Instant>>,
    pub(crate) local: Mutex<BTreeMap<PackageName, LocalPackage>>,
    /// The executor's inbox (what supervisors and monitors tell it).
    executor_inbox: mpsc::Sender<Inbox>,
    pub incarnation: u64,
    pub isolated: AtomicBool,
    pub test_faults: bool,
    /// Test-only heartbeat drops (`--test-faults`).
    pub heartbeat_faults: HeartbeatFaults,
    /// The watchdog device, when configured and present.
    watchdog: Mutex<Option<crate::watchdog::Watchdog>>,
    /// What `halcyon status` says about the watchdog.
    pub watchdog_state: String,
    run_dir: PathBuf,
    /// Start gates (FIFOs) of guarded services.
    gates_dir: PathBuf,
    /// The lease guard.
    pub guard: Box<dyn LeaseGuard>,
    /// Clocks, network and resources of the machine (or the simulator).
    pub platform: Platform,
}

/// `a, b, c` for messages.
pub fn join_addrs(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().expect(crate::POISONED)
}

/// Consensus addresses of every node (and the witness): each IP interface at `port + 1`.
pub fn raft_members(config: &Config) -> BTreeMap<NodeId, NodeAddrs> {
    let port = config.cluster.port + 1;
    let mut members: BTreeMap<NodeId, NodeAddrs> = config
        .cluster
        .nodes
        .iter()
        .map(|n| {
            let addrs = n
                .interfaces
                .iter()
                .filter(|i| !i.standby)
                .filter_map(|i| i.address)
                .map(|a| SocketAddr::new(a, port));
            (NodeId::from(n.number), NodeAddrs::new(addrs))
        })
        .collect();
    if let Some(w) = &config.cluster.quorum.witness {
        members.insert(
            NodeId::from(w.number),
            NodeAddrs::new([SocketAddr::new(w.address, port)]),
        );
    }
    members
}

/// The API addresses of every node: each of its IP interfaces (standby interfaces aside)
/// at `port + 2`, in configuration order. A node listens on all of them and its peers try
/// all of them, so that losing one network does not cut a node off from the leader's API
/// (lease renewals, forwarded writes) while Raft still reaches it on another.
pub fn api_addrs(config: &Config) -> BTreeMap<NodeId, Vec<SocketAddr>> {
    config
        .cluster
        .nodes
        .iter()
        .map(|n| {
            let addrs: Vec<SocketAddr> = n
                .interfaces
                .iter()
                .filter(|i| !i.standby)
                .filter_map(|i| i.address)
                .map(|a| SocketAddr::new(a, config.cluster.port + 2))
                .collect();
            (NodeId::from(n.number), addrs)
        })
        .filter(|(_, addrs)| !addrs.is_empty())
        .collect()
}

fn next_incarnation(state_dir: &Path) -> anyhow::Result<u64> {
    let path = state_dir.join("incarnation");
    let previous = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let next = previous + 1;
    std::fs::write(&path, next.to_string())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(next)
}

/// Kills process groups of services a previous incarnation left running (SPEC 6: a restarted
/// node first stops anything left running).
fn kill_leftovers(run_dir: &Path, resources: &dyn ResourceFactory) {
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if let Some(pgid) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            && pgid > 1
            && resources.group_alive(pgid)
        {
            tracing::warn!(pgid, file = %path.display(), "killing a process group left by a previous incarnation");
            resources.kill_group(pgid);
        }
        let _ = std::fs::remove_file(&path);
    }
}

/// Restart cleanup (SPEC 6): runs the halt side of every resource of every failover package
/// configured for `node` (scripts' halt, addresses removed, file systems unmounted, OCF stop),
/// idempotently, and logs what each did. Every package configured here, not only those the
/// replicated state places here: the state may not show a run that was in flight when the
/// previous incarnation died, and this node may not reach a quorum yet. Service process
/// groups were killed before (`kill_leftovers`).
async fn halt_leftovers(config: &Config, node: &str, factory: &dyn ResourceFactory) {
    let Some(me) = config.node(node).cloned() else {
        return;
    };
    for package in config.packages.values() {
        if !package.is_failover() || package.node_rank(node).is_none() {
            continue;
        }
        let env = PackageEnv {
            cluster: config.cluster.name.clone(),
            package: package.name.to_string(),
            node: node.to_owned(),
        };
        let mut resources = match factory.build(env.clone(), package, &me) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(package = %package.name, "restart cleanup: cannot build the package here: {e}");
                continue;
            }
        };
        for resource in resources.resources.iter_mut().rev() {
            let what = resource.describe();
            let stopped = tokio::time::timeout(
                package.halt_timeout,
                resource.stop(&env, StopMode::Immediate),
            )
            .await;
            match stopped {
                Ok(Ok(report)) => tracing::warn!(
                    package = %package.name,
                    "restart cleanup: {what}: halt side done{}",
                    if report.detail.is_empty() { String::new() } else { format!(": {}", report.detail) }
                ),
                Ok(Err(e)) => {
                    tracing::error!(package = %package.name, "restart cleanup: {what}: halt failed: {e}")
                }
                Err(_) => tracing::error!(
                    package = %package.name,
                    "restart cleanup: {what}: halt did not finish within {:?}",
                    package.halt_timeout
                ),
            }
        }
    }
}

/// What `POST /v1/internal/lease` answers.
#[derive(Debug, Serialize, Deserialize)]
pub struct LeaseAnswer {
    pub granted: bool,
    #[serde(default)]
    pub error: Option<String>,
    /// The log index the quorum confirmed as committed for this grant (the read
    /// index): the holder's replica must have applied it before it acts on placements.
    #[serde(default)]
    pub read_index: u64,
}

impl Node {
    /// Opens everything and starts the node's tasks; returns once the API listens.
    pub async fn start(settings: Settings) -> anyhow::Result<Arc<Node>> {
        Node::start_on(settings, Platform::host()).await
    }

    /// [`Node::start`] on a given platform (the simulator's).
    pub async fn start_on(settings: Settings, platform: Platform) -> anyhow::Result<Arc<Node>> {
        let (config, _) = halcyon_config::load(&settings.config_paths)
            .map_err(|d| anyhow::anyhow!("configuration is not valid:\n{d}"))?;
        let Some(me) = config.node(&settings.node).cloned() else {
            let known: Vec<&str> = config
                .cluster
                .nodes
                .iter()
                .map(|n| n.name.as_str())
                .collect();
            bail!(
                "node \"{}\" is not in the configuration (nodes: {})",
                settings.node,
                known.join(", ")
            );
        };
        let rules = halcyon_events::load_cluster_rules(
            &settings.config_paths,
            config.cluster.events.rules.as_deref(),
        )
        .map_err(|d| anyhow::anyhow!("event rules are not valid:\n{d}"))?;
        std::fs::create_dir_all(&settings.state_dir)
            .with_context(|| format!("creating {}", settings.state_dir.display()))?;
        let run_dir = settings.state_dir.join("run");
        std::fs::create_dir_all(&run_dir)?;
        kill_leftovers(&run_dir, platform.resources.as_ref());
        let gates_dir = settings.state_dir.join("gates");
        let _ = std::fs::remove_dir_all(&gates_dir);
        std::fs::create_dir_all(&gates_dir)?;
        let incarnation = next_incarnation(&settings.state_dir)?;
        // Long enough to outlast failure detection and a coordinator election, so the
        // holders keep their leases while a new coordinator is elected.
        let lease_duration = config.cluster.lease();
        let renew_interval =
            halcyon_config::timing::renew_interval(config.cluster.heartbeat.interval);
        // The guard first: no failover package may run here before it is ready.
        let guard = platform
            .guards
            .start((lease_duration / 2).max(Duration::from_millis(100)))
            .context("starting the lease guard (`halcyon guard`)")?;

        let (views, view) = watch::channel(Arc::new(State::new()));
        let app = NodeApplication::new(views, platform.applied.clone());
        let members = raft_members(&config);
        let id = NodeId::from(me.number);
        let addrs = members.get(&id).cloned().unwrap_or_default();
        let consensus = platform
            .network
            .open_consensus(
                id,
                addrs,
                &settings.state_dir.join("raft.redb"),
                app,
                raft_timings(&config.cluster),
            )
            .await
            .context("opening consensus")?;
        // SPEC 6: a restarted node first stops anything a previous incarnation left, before it
        // registers (rejoins). The packages are those of the configuration in force as far as
        // this node knows it (its applied state, else the files).
        let cleanup_config = view
            .borrow()
            .config
            .clone()
            .unwrap_or_else(|| Arc::new(config.clone()));
        halt_leftovers(&cleanup_config, &settings.node, platform.resources.as_ref()).await;
        let lowest = config.cluster.nodes.iter().map(|n| n.number).min();
        if lowest == Some(me.number) {
            consensus
                .initialize(members.clone())
                .await
                .context("initializing the Raft membership")?;
        }

        let heartbeat_faults = HeartbeatFaults::default();
        let heartbeats = platform.heartbeats.start(
            &config.cluster,
            me.number,
            incarnation,
            settings.test_faults.then(|| heartbeat_faults.clone()),
        )?;

        let watchdog = config
            .cluster
            .quorum
            .watchdog
            .as_ref()
            .and_then(|path| crate::watchdog::Watchdog::open(Path::new(path)));
        let watchdog_state = match (&config.cluster.quorum.watchdog, &watchdog) {
            (None, _) => "not configured".to_owned(),
            (Some(p), Some(_)) => format!("armed ({p})"),
            (Some(p), None) => format!("ABSENT ({p} cannot be opened)"),
        };
        let election_max = raft_timings(&config.cluster).election_timeout_max;
        let (executor_inbox, executor_messages) = mpsc::channel(INBOX_CAPACITY);
        let node = Arc::new(Node {
            name: me.name.clone(),
            number: me.number,
            api_addrs: api_addrs(&config),
            preferred_api: Mutex::new(BTreeMap::new()),
            boot_config: Arc::new(config),
            boot_rules: rules,
            consensus,
            view,
            fresh_from: AtomicU64::new(0),
            membership: heartbeats.status(),
            heartbeats: Mutex::new(Some(heartbeats)),
            lease_duration,
            renew_interval,
            election_max,
            holder: Mutex::new(Holder::default()),
            grants: Mutex::new(BTreeMap::new()),
            local: Mutex::new(BTreeMap::new()),
            executor_inbox,
            incarnation,
            isolated: AtomicBool::new(false),
            test_faults: settings.test_faults,
            heartbeat_faults,
            watchdog: Mutex::new(watchdog),
            watchdog_state,
            run_dir,
            gates_dir,
            guard,
            platform,
        });
        let own_api = node.api_addrs[&NodeId::from(node.number)].clone();
        crate::api::serve(Arc::clone(&node), own_api.clone()).await?;
        let api_addr = own_api[0];
        tokio::spawn(Arc::clone(&node).coordinator_loop());
        tokio::spawn(Arc::clone(&node).executor_loop(executor_messages));
        tokio::spawn(Arc::clone(&node).lease_loop());
        tokio::spawn(Arc::clone(&node).fence_loop());
        tokio::spawn(Arc::clone(&node).report_loop(reports::ADAPTERS));
        tokio::spawn(Arc::clone(&node).report_loop(reports::STANDBYS));
        tokio::spawn(Arc::clone(&node).monitor_loop());
        let register = Arc::clone(&node);
        tokio::spawn(async move {
            loop {
                let cmd = Command::Register {
                    node: register.name.clone(),
                    incarnation: register.incarnation,
                    at: register.timestamp(),
                };
                if register.submit(&cmd).await.is_ok() {
                    break;
                }
                sleep(Duration::from_millis(200)).await;
            }
        });
        tracing::info!(node = %node.name, incarnation, %api_addr, "daemon started");
        Ok(node)
    }

    /// Wall-clock time (the platform's).
    pub fn timestamp(&self) -> Timestamp {
        self.platform.clock.timestamp()
    }

    /// One request to a peer's API over the platform's network.
    pub(crate) async fn request(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: Option<&str>,
        limit: Duration,
    ) -> Result<client::Response, String> {
        client::request_via(
            self.platform.network.as_ref(),
            addr,
            method,
            path,
            body,
            limit,
        )
        .await
    }

    /// The replicated state as this node last applied it.
    pub fn snapshot(&self) -> Arc<State> {
        Arc::clone(&self.view.borrow())
    }

    /// Raft's applied index. Not the state's: the read index a lease grant confirms may be a
    /// new leader's blank entry, which never reaches the state machine (seed 5 of the
    /// simulation: every lease lost in an election, then no package restarted until the next
    /// real entry). openraft publishes it after the state machine applied the entry, so a
    /// copy of the state taken after reading it is at least that recent.
    fn raft_applied(&self) -> u64 {
        self.consensus
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index)
    }

    /// The configuration in force: the replicated one once bootstrapped.
    pub fn config(&self) -> Arc<Config> {
        self.view
            .borrow()
            .config
            .clone()
            .unwrap_or_else(|| Arc::clone(&self.boot_config))
    }

    pub fn node_name_of(&self, id: NodeId) -> String {
        self.boot_config
            .cluster
            .nodes
            .iter()
            .find(|n| NodeId::from(n.number) == id)
            .map(|n| n.name.to_string())
            .or_else(|| {
                self.boot_config
                    .cluster
                    .quorum
                    .witness
                    .as_ref()
                    .filter(|w| NodeId::from(w.number) == id)
                    .map(|w| w.name.to_string())
            })
            .unwrap_or_else(|| format!("node {id}"))
    }

    /// Reachability of every configured node from here (this node is always reachable).
    pub fn reachability(&self) -> BTreeMap<u32, NodeState> {
        let mut out: BTreeMap<u32, NodeState> = lock(&self.membership)
            .detector
            .nodes
            .iter()
            .map(|n| (n.node, n.state))
            .collect();
        out.insert(self.number, NodeState::Reachable);
        out
    }

    pub fn lease_remaining(&self) -> Duration {
        lock(&self.holder).remaining(self.platform.clock.now())
    }

    /// A lease is held: granted, not about to expire, and the guard protects it (a dead,
    /// stalled or fenced guard is a lost lease).
    fn lease_valid(&self) -> bool {
        lock(&self.holder).valid(
            self.platform.clock.now(),
            lease::fence_lead(self.lease_duration, self.renew_interval),
        ) && self.guard.lost().is_none()
    }

    /// Isolates this node (tests): no consensus traffic, no heartbeats, no node-to-node API.
    pub fn isolate(&self) {
        self.isolated.store(true, Ordering::SeqCst);
        self.consensus
            .fault_hook()
            .isolate(NodeId::from(self.number));
        if let Some(heartbeats) = lock(&self.heartbeats).take() {
            heartbeats.stop();
        }
        tracing::warn!(node = %self.name, "isolated by a test fault");
    }

    pub fn is_isolated(&self) -> bool {
        self.isolated.load(Ordering::SeqCst)
    }

    /// The leader's name and API addresses (the one that answered last first), if a
    /// leader is known.
    pub fn leader_api(&self) -> Option<(String, Vec<SocketAddr>)> {
        let leader = self.consensus.leader()?;
        let mut addrs = self.api_addrs.get(&leader)?.clone();
        if let Some(p) = lock(&self.preferred_api).get(&leader)
            && let Some(i) = addrs.iter().position(|a| a == p)
        {
            addrs[..=i].rotate_right(1);
        }
        Some((self.node_name_of(leader), addrs))
    }

    /// A request to the leader's API: its addresses one after the other (the one that
    /// answered last first), each within `limit`. Not for requests that must not be sent
    /// twice unless a failed attempt cannot have reached the leader (the write path
    /// retries the same command, which the state machine's replies make visible).
    pub async fn leader_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        limit: Duration,
    ) -> Result<(String, client::Response), String> {
        let Some((leader, addrs)) = self.leader_api() else {
            return Err("no leader known".into());
        };
        let id = self.consensus.leader();
        let mut errors = Vec::new();
        for addr in addrs {
            match self.request(addr, method, path, body, limit).await {
                Ok(r) => {
                    if let Some(id) = id {
                        lock(&self.preferred_api).insert(id, addr);
                    }
                    return Ok((leader, r));
                }
                Err(e) => errors.push(e),
            }
        }
        Err(format!("leader {leader}: {}", errors.join("; ")))
    }

    /// A request to the leader's API on all its addresses at once; the first answer wins
    /// (for idempotent requests: lease renewals).
    async fn leader_request_race(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        limit: Duration,
    ) -> Option<client::Response> {
        let (_, addrs) = self.leader_api().filter(|(_, a)| !a.is_empty())?;
        let id = self.consensus.leader();
        let attempts = addrs.into_iter().map(|addr| {
            Box::pin(async move {
                self.request(addr, method, path, body, limit)
                    .await
                    .map(|r| (addr, r))
            })
        });
        let ((addr, response), _) = futures_util::future::select_ok(attempts).await.ok()?;
        if let Some(id) = id {
            lock(&self.preferred_api).insert(id, addr);
        }
        Some(response)
    }

    /// Commits a command through the leader (locally when this node leads).
    pub async fn submit(&self, command: &Command) -> Result<Reply, String> {
        let deadline = Instant::now() + SUBMIT_TIMEOUT;
        let bytes = command.encode();
        let mut last_error = String::from("no leader known");
        while Instant::now() < deadline {
            if self.is_isolated() {
                return Err("no quorum: this node is isolated".into());
            }
            if self.consensus.is_leader() {
                match self.consensus.write(bytes.clone()).await {
                    Ok(reply) => return Reply::decode(&reply.0),
                    Err(WriteError::NotLeader { .. }) => {}
                    Err(e) => last_error = e.to_string(),
                }
            } else if self.consensus.leader().is_some() {
                let body = String::from_utf8_lossy(&bytes).into_owned();
                match self
                    .leader_request("POST", "/v1/internal/write", Some(&body), PEER_CALL_TIMEOUT)
                    .await
                {
                    Ok((_, r)) if r.status == 200 => return Reply::decode(r.body.as_bytes()),
                    Ok((leader, r)) => last_error = format!("leader {leader}: {}", r.body),
                    Err(e) => last_error = e,
                }
            }
            sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "no quorum: could not commit within {SUBMIT_TIMEOUT:?} ({last_error})"
        ))
    }

    // ---------------------------------------------------------------- leases

    /// Leader side of a renewal: quorum check, departed check, then the grant is recorded.
    pub async fn grant_lease(&self, node: &str) -> LeaseAnswer {
        let refuse = |error: String| LeaseAnswer {
            granted: false,
            error: Some(error),
            read_index: 0,
        };
        if self.is_isolated() {
            return refuse("no quorum: this node is isolated".into());
        }
        if !self.consensus.is_leader() {
            return refuse(match self.leader_api() {
                Some((name, addrs)) => {
                    format!("not leader: forward to {name} at {}", join_addrs(&addrs))
                }
                None => "not leader: no leader known".into(),
            });
        }
        let confirm = tokio::time::timeout(
            self.renew_interval * 2,
            self.consensus.raft().ensure_linearizable(),
        )
        .await;
        let read_index = match confirm {
            Ok(Ok(read)) => read.map_or(0, |l| l.index),
            Ok(Err(e)) => return refuse(format!("no quorum: {e}")),
            Err(_) => {
                return refuse("no quorum: the quorum did not confirm the leader in time".into());
            }
        };
        let state = self.snapshot();
        let Some(config) = state.config.as_ref() else {
            return refuse("the cluster is not bootstrapped yet".into());
        };
        if config.node(node).is_none() {
            return refuse(format!("node \"{node}\" is not in the configuration"));
        }
        if state.departed.contains(node) {
            return refuse(format!(
                "node {node} is committed as down; it must join again first"
            ));
        }
        lock(&self.grants).insert(NodeName::from(node), self.platform.clock.now());
        LeaseAnswer {
            granted: true,
            error: None,
            read_index,
        }
    }

    async fn lease_loop(self: Arc<Self>) {
        loop {
            if self.guard.respawn_if_needed() {
                // A new guard is unarmed: no lease until the next grant extends it.
                *lock(&self.holder) = Holder::default();
            }
            // CLOCK_BOOTTIME before the Instant: the guard's deadline comes no later.
            let t_boot = self.guard.clock();
            let t_send = self.platform.clock.now();
            let next = Instant::now() + self.renew_interval;
            let answer = if self.is_isolated() {
                None
            } else if self.consensus.is_leader() {
                Some(self.grant_lease(self.name.as_str()).await)
            } else if self.consensus.leader().is_some() {
                let body = serde_json::json!({ "node": self.name }).to_string();
                self.leader_request_race(
                    "POST",
                    "/v1/internal/lease",
                    Some(&body),
                    self.lease_duration,
                )
                .await
                .and_then(|r| serde_json::from_str::<LeaseAnswer>(&r.body).ok())
            } else {
                None
            };
            if let Some(LeaseAnswer {
                granted: true,
                read_index,
                ..
            }) = answer
            {
                self.fresh_from
                    .fetch_max(read_index, std::sync::atomic::Ordering::SeqCst);
                self.guard
                    .extend(BootTime::lease_deadline(t_boot, self.lease_duration));
                lock(&self.holder).granted(t_send, self.lease_duration);
            } else {
                let why = match &answer {
                    Some(a) => a.error.clone().unwrap_or_default(),
                    None => "no answer".into(),
                };
                tracing::debug!(node = %self.name, "lease not renewed: {why}");
            }
            // The watchdog is fed only while the lease is valid and the heartbeat thread runs.
            let healthy = lock(&self.heartbeats)
                .as_ref()
                .is_some_and(|h| h.is_running());
            if healthy
                && self.lease_valid()
                && let Some(w) = lock(&self.watchdog).as_mut()
            {
                w.keepalive();
            }
            tokio::time::sleep_until(next).await;
        }
    }

    /// Halts every failover package at once when the lease is about to expire.
    async fn fence_loop(self: Arc<Self>) {
        let period = Duration::from_millis(5);
        loop {
            sleep(period).await;
            if self.lease_valid() {
                continue;
            }
            if self.guard.fenced() {
                // The guard killed and deleted what it held: the lease is lost until the next
                // grant (which re-arms the guard); forget the holder's lease first.
                *lock(&self.holder) = Holder::default();
                for fence in self.guard.take_fences() {
                    if fence.groups_killed + fence.addresses_deleted > 0 {
                        tracing::error!(node = %self.name, "the lease guard fenced this node's failover packages: {}", fence.line);
                    } else {
                        tracing::info!(node = %self.name, "the lease guard fenced (nothing registered): {}", fence.line);
                    }
                }
            }
            let victims: Vec<(PackageName, LocalPackage)> = {
                let mut local = lock(&self.local);
                let names: Vec<PackageName> = local
                    .iter()
                    .filter(|(_, p)| p.failover)
                    .map(|(n, _)| n.clone())
                    .collect();
                names
                    .into_iter()
                    .filter_map(|n| local.remove(&n).map(|p| (n, p)))
                    .collect()
            };
            for (name, package) in victims {
                tracing::warn!(node = %self.name, package = %name, "lease expiring: halting the package at once");
                let (tx, rx) = oneshot::channel();
                if package
                    .control
                    .send((Control::Stop(StopMode::Immediate), tx))
                    .await
                    .is_ok()
                {
                    let _ = rx.await;
                }
                tracing::warn!(node = %self.name, package = %name, "halted for lack of a lease");
            }
        }
    }

    // ---------------------------------------------------------------- coordinator

    async fn coordinator_loop(self: Arc<Self>) {
        let mut applied = self.view.clone();
        // (term, when this node saw itself become leader of that term).
        let mut leadership: Option<(u64, Instant)> = None;
        let mut memory = Memory::default();
        loop {
            tokio::select! {
                biased;
                _ = sleep(TICK) => {}
                _ = applied.changed() => {}
            }
            if self.is_isolated() || !self.consensus.is_leader() {
                leadership = None;
                continue;
            }
            let term = self.consensus.metrics().borrow().current_term;
            let since = match leadership {
                Some((t, since)) if t == term => since,
                _ => {
                    tracing::info!(node = %self.name, term, "coordinator: this node leads");
                    let since = self.platform.clock.now();
                    leadership = Some((term, since));
                    lock(&self.grants).clear();
                    since
                }
            };
            if let Err(e) = self.coordinate(term, since, &mut memory).await {
                tracing::debug!("coordinator: {e}");
            }
        }
    }

    /// One round of the coordinator as leader of `term` (since `leader_since`): the decision
    /// taken from this node's view ([`decide`]), its commands committed in order through
    /// [`Node::submit_as_leader`] (decisions taken from this node's view are never forwarded
    /// to another leader) until one fails, which ends the round.
    async fn coordinate(
        &self,
        term: u64,
        leader_since: Instant,
        memory: &mut Memory,
    ) -> Result<(), String> {
        let view = self.snapshot();
        let reachability = self.reachability();
        let grants = lock(&self.grants).clone();
        let input = Input {
            view: &view,
            boot_config: &self.boot_config,
            boot_rules: &self.boot_rules,
            reachability: &reachability,
            lease: LeaseFacts {
                duration: self.lease_duration,
                election_max: self.election_max,
                term,
                leader_since,
                grants: &grants,
            },
            memory: *memory,
            now: self.platform.clock.now(),
            timestamp: self.timestamp(),
        };
        let decision = decide(&input);
        let mut committed = 0;
        let outcome = loop {
            for line in decision.logs_at(committed) {
                emit(line);
            }
            let Some(command) = decision.commands.get(committed) else {
                break Ok(());
            };
            if let Err(e) = self.submit_as_leader(term, command).await {
                break Err(e);
            }
            committed += 1;
        };
        *memory = decision.memory_after(committed);
        outcome
    }

    /// Commits a coordinator decision only as the leader of `term`. A leader cut off from the
    /// majority keeps believing it leads (openraft 0.9) and judges the majority's nodes
    /// unreachable; were its commands forwarded to the new leader once the partition heals (as
    /// [`Node::submit`] does), its stale `node_down` of the majority's nodes would be committed
    /// (false failovers after a heal). A write in `term` either commits in that term or not at
    /// all.
    async fn submit_as_leader(&self, term: u64, command: &Command) -> Result<Reply, String> {
        let deadline = Instant::now() + SUBMIT_TIMEOUT;
        let bytes = command.encode();
        let mut last_error = String::from("not tried");
        while Instant::now() < deadline {
            if self.is_isolated() {
                return Err("no quorum: this node is isolated".into());
            }
            let current = self.consensus.metrics().borrow().current_term;
            if !self.consensus.is_leader() || current != term {
                return Err(format!(
                    "no longer the coordinator of term {term} (term {current}): the decision is dropped"
                ));
            }
            match self.consensus.write(bytes.clone()).await {
                Ok(reply) => return Reply::decode(&reply.0),
                Err(WriteError::NotLeader { .. }) => {
                    return Err(format!(
                        "no longer the coordinator of term {term}: the decision is dropped"
                    ));
                }
                Err(e) => last_error = e.to_string(),
            }
            sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "no quorum: could not commit within {SUBMIT_TIMEOUT:?} ({last_error})"
        ))
    }

    pub async fn enqueue(&self, event: Event, by: &str) -> Result<Reply, String> {
        tracing::info!(event = %event, by, "enqueue");
        self.submit(&Command::Enqueue {
            event,
            by: by.to_owned(),
            at: self.timestamp(),
            sample: None,
        })
        .await
    }

    // ---------------------------------------------------------------- executor

    /// Decides on every change of the view (and every [`TICK`]) what this node must do, and
    /// does it: plan actions and event commands in tasks of their own, reconciliation in
    /// order. Owns the executor's memory; other tasks tell it of failures through `inbox`.
    async fn executor_loop(self: Arc<Self>, mut inbox: mpsc::Receiver<Inbox>) {
        let mut applied = self.view.clone();
        let mut memory = decide::Memory::default();
        loop {
            tokio::select! {
                biased;
                Some(message) = inbox.recv() => memory.note(message),
                _ = sleep(TICK) => {}
                _ = applied.changed() => {}
            }
            // Before the copy: the copy is at least as recent as this.
            let raft_applied = self.raft_applied();
            let state = self.snapshot();
            let Some(config) = state.config.clone() else {
                continue;
            };
            // What runs here first, then the inbox: a package leaves `local` only after its
            // failure was sent, so a decision that does not see it running knows it failed.
            let running: BTreeMap<PackageName, bool> = lock(&self.local)
                .iter()
                .map(|(name, p)| (name.clone(), p.failover))
                .collect();
            while let Ok(message) = inbox.try_recv() {
                memory.note(message);
            }
            let input = decide::Input {
                node: &self.name,
                state: &state,
                config: &config,
                raft_applied,
                confirmed: self.fresh_from.load(Ordering::SeqCst),
                lease_valid: self.lease_valid(),
                leader: self.consensus.is_leader() && !self.is_isolated(),
                running: &running,
            };
            for action in decide::decide(&input, &mut memory) {
                self.carry_out(&config, action, &mut memory).await;
            }
        }
    }

    /// Carries out one decision of the executor.
    async fn carry_out(
        self: &Arc<Self>,
        config: &Arc<Config>,
        action: LocalAction,
        memory: &mut decide::Memory,
    ) {
        match action {
            LocalAction::Act { key, package, what } => {
                let node = Arc::clone(self);
                let config = Arc::clone(config);
                tokio::spawn(async move {
                    let result = match what {
                        What::Run => {
                            let result = node.run_package(&config, &package).await;
                            let message = match &result {
                                Ok(_) => Inbox::Started(package.clone()),
                                Err(_) => Inbox::Failed(package.clone()),
                            };
                            let _ = node.executor_inbox.send(message).await;
                            result
                        }
                        What::Stop(mode) => node.halt_package(&package, mode).await,
                        What::SwapAdapter(network) => node.swap_adapter(&package, network).await,
                    };
                    let (ok, detail) = match result {
                        Ok(d) => (true, d),
                        Err(e) => (false, e),
                    };
                    node.report_action(key, ok, detail).await;
                });
            }
            LocalAction::Launch {
                key,
                launch,
                env,
                limit,
            } => self.spawn_launch(config, key, launch, env, limit),
            LocalAction::Halt { package } => {
                tracing::warn!(package = %package, "runs here but is placed elsewhere: halting");
                let _ = self.halt_package(&package, StopMode::Graceful).await;
            }
            LocalAction::Start { package } => {
                tracing::info!(package = %package, "placed here but not running: starting");
                match self.run_package(config, &package).await {
                    Ok(_) => {
                        memory.failed_here.remove(&package);
                    }
                    Err(e) => {
                        tracing::warn!(package = %package, "restart failed: {e}");
                        memory.failed_here.insert(package.clone());
                        let _ = self
                            .enqueue(
                                Event::PackageFailed {
                                    package,
                                    node: self.name.clone(),
                                },
                                "reconcile",
                            )
                            .await;
                    }
                }
            }
        }
    }

    /// Commits an action's end, until it is accepted, refused, or no longer awaited.
    async fn report_action(&self, key: (u64, usize, usize), ok: bool, detail: String) {
        let command = Command::ActionDone {
            execution: key.0,
            step: key.1,
            index: key.2,
            ok,
            detail,
            at: self.timestamp(),
        };
        let what = format!("action {}/{}/{}", key.0, key.1, key.2);
        self.report(&command, &what, |x| {
            x.id == key.0 && !x.done.contains(&(key.1, key.2))
        })
        .await;
    }

    /// Commits a node's report on the current execution, retrying while `awaited` says the
    /// execution still waits for it (bounded: 60 tries, 500 ms apart, each within
    /// `SUBMIT_TIMEOUT`). A refusal is logged and ends it.
    pub(crate) async fn report(
        &self,
        command: &Command,
        what: &str,
        awaited: impl Fn(&halcyon_state::Execution) -> bool,
    ) {
        for _ in 0..60 {
            match self.submit(command).await {
                Ok(Reply::Ignored { why }) => {
                    tracing::warn!("{what}: report refused: {why}");
                    return;
                }
                Ok(_) => return,
                Err(e) => {
                    if !self.snapshot().execution.as_ref().is_some_and(&awaited) {
                        return;
                    }
                    tracing::warn!("{what}: cannot report yet: {e}");
                }
            }
            sleep(Duration::from_millis(500)).await;
        }
    }

    fn pid_file(&self, package: &str, index: usize) -> PathBuf {
        self.run_dir.join(format!("{package}.{index}.pgid"))
    }

    fn write_pid_files(&self, package: &str, resources: &PackageResources) {
        for (i, pgid) in resources.process_groups().iter().enumerate() {
            let _ = std::fs::write(self.pid_file(package, i), pgid.to_string());
        }
    }

    fn remove_pid_files(&self, package: &str) {
        for i in 0..64 {
            let _ = std::fs::remove_file(self.pid_file(package, i));
        }
    }

    /// Starts a package here and supervises it. A failover package is put under the lease
    /// guard before it can act: its addresses are registered before they are added, and each
    /// service waits at its start gate until its process group is registered.
    async fn run_package(
        self: &Arc<Self>,
        config: &Config,
        package: &PackageName,
    ) -> Result<String, String> {
        if lock(&self.local).contains_key(package) {
            return Ok(format!("{package} already runs on {}", self.name));
        }
        let Some(p) = config.package(package.as_str()).cloned() else {
            return Err(format!("package {package} is not in the configuration"));
        };
        let Some(me) = config.node(self.name.as_str()).cloned() else {
            return Err(format!("node {} is not in the configuration", self.name));
        };
        let env = PackageEnv {
            cluster: config.cluster.name.clone(),
            package: package.to_string(),
            node: self.name.to_string(),
        };
        let mut guarded = Guarded::default();
        let mut gated = p.clone();
        if p.is_failover() {
            for (index, resource) in gated.resources.iter_mut().enumerate() {
                if let halcyon_config::Resource::Service(service) = resource {
                    let path = self.gates_dir.join(format!("{package}.{index}.gate"));
                    let gate = Gate::create(&path)
                        .map_err(|e| format!("creating the start gate {}: {e}", path.display()))?;
                    service.command = gate.wrap(&service.command);
                    guarded.gates.insert(index, gate);
                }
            }
        }
        let mut resources = self.platform.resources.build(env, &gated, &me)?;
        if p.is_failover() {
            for (index, resource) in p.resources.iter().enumerate() {
                if let halcyon_config::Resource::Ip(ip) = resource
                    && let Some(device) = me
                        .interface_on(ip.network.as_str())
                        .and_then(|i| i.device.clone())
                    && let Some(address) = guard_address(&mut resources, index, &device)
                {
                    guarded.register_address(self.guard.as_ref(), address)?;
                }
            }
        }
        let started = tokio::time::timeout(p.run_timeout, resources.start()).await;
        let admitted = match started {
            Ok(Ok(())) => self.admit_all(&mut guarded, &mut resources),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "{package} did not start within {:?}",
                p.run_timeout
            )),
        };
        if let Err(e) = admitted {
            let _ = resources.stop(StopMode::Immediate).await;
            guarded.unregister_all(self.guard.as_ref());
            return Err(e);
        }
        self.write_pid_files(package.as_str(), &resources);
        let (control, rx) = mpsc::channel(4);
        lock(&self.local).insert(
            package.clone(),
            LocalPackage {
                failover: p.is_failover(),
                control,
            },
        );
        tokio::spawn(Arc::clone(self).supervise(p, resources, guarded, rx));
        tracing::info!(node = %self.name, package = %package, "package started");
        Ok(format!("{package} started on {}", self.name))
    }

    /// After a start: every gated service admitted, and the addresses registered where they
    /// really are (an interface found by address, not by name, is known only now).
    fn admit_all(
        &self,
        guarded: &mut Guarded,
        resources: &mut PackageResources,
    ) -> Result<(), String> {
        let indices: Vec<usize> = guarded.gates.keys().copied().collect();
        for index in indices {
            guarded.admit(self.guard.as_ref(), resources, index)?;
        }
        if !guarded.gates.is_empty() || !guarded.addresses.is_empty() {
            self.register_current_addresses(guarded, resources)?;
        }
        Ok(())
    }

    fn register_current_addresses(
        &self,
        guarded: &mut Guarded,
        resources: &mut PackageResources,
    ) -> Result<(), String> {
        for index in 0..resources.resources.len() {
            let device = resources.resources[index]
                .as_ip_address()
                .and_then(|ip| ip.device().map(str::to_owned));
            if let Some(device) = device
                && let Some(address) = guard_address(resources, index, &device)
            {
                guarded.register_address(self.guard.as_ref(), address)?;
            }
        }
        Ok(())
    }

    async fn halt_package(&self, package: &PackageName, mode: StopMode) -> Result<String, String> {
        let entry = lock(&self.local).remove(package);
        let Some(entry) = entry else {
            return Ok(format!("{package} was not running on {}", self.name));
        };
        let (tx, rx) = oneshot::channel();
        if entry.control.send((Control::Stop(mode), tx)).await.is_err() {
            return Ok(format!("{package} had already stopped on {}", self.name));
        }
        rx.await
            .unwrap_or_else(|_| Ok(format!("{package} stopped on {}", self.name)))
    }

    /// The `swap_adapter` action: the package's supervision task moves its addresses.
    async fn swap_adapter(
        &self,
        package: &PackageName,
        network: NetworkName,
    ) -> Result<String, String> {
        let control = lock(&self.local).get(package).map(|p| p.control.clone());
        let Some(control) = control else {
            return Err(format!("{package} does not run on {}", self.name));
        };
        let (tx, rx) = oneshot::channel();
        if control
            .send((Control::SwapAdapter(network), tx))
            .await
            .is_err()
        {
            return Err(format!("{package} stopped on {}", self.name));
        }
        rx.await
            .unwrap_or_else(|_| Err(format!("{package} stopped on {}", self.name)))
    }

    /// Owns a running package: restarts exited services (and failed monitored resources)
    /// within their restart count, fails the package beyond it, moves its addresses on
    /// `swap_adapter`, and stops it on request.
    async fn supervise(
        self: Arc<Self>,
        package: halcyon_config::Package,
        mut resources: PackageResources,
        mut guarded: Guarded,
        mut control: mpsc::Receiver<ControlMessage>,
    ) {
        let name = package.name.clone();
        let start = Instant::now();
        let mut next_monitor: BTreeMap<usize, Instant> = resources
            .monitor_intervals()
            .into_iter()
            .map(|(i, every)| (i, start + every))
            .collect();
        loop {
            let due = next_monitor
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(i, at)| (*i, *at));
            let failure: (usize, String, String, u32) = tokio::select! {
                biased;
                request = control.recv() => {
                    let (what, reply) = match request {
                        Some(r) => r,
                        None => (Control::Stop(StopMode::Graceful), oneshot::channel().0),
                    };
                    match what {
                        Control::Stop(mode) => {
                            let result = resources.stop(mode).await;
                            guarded.unregister_all(self.guard.as_ref());
                            self.remove_pid_files(name.as_str());
                            let _ = reply.send(match result {
                                Ok(r) if r.detail.is_empty() => Ok(format!("{name} halted on {}", self.name)),
                                Ok(r) => Ok(format!("{name} halted on {}: {}", self.name, r.detail)),
                                Err(e) => Err(e.to_string()),
                            });
                            return;
                        }
                        Control::SwapAdapter(network) => {
                            let result = self.swap_addresses(&mut resources, &mut guarded, network.as_str()).await;
                            let _ = reply.send(result);
                            continue;
                        }
                    }
                }
                (index, why) = self.while_leased(package.is_failover(), resources.exited()) => {
                    let Some(halcyon_config::Resource::Service(service)) = package.resources.get(index) else {
                        continue;
                    };
                    let output = resources.output_tail(index).filter(|o| !o.trim().is_empty());
                    let why = match output {
                        Some(o) => format!("service exited: {why}; its output ended with:\n{}", o.trim_end()),
                        None => format!("service exited: {why}"),
                    };
                    (index, service.name.clone(), why, service.restart)
                }
                _ = sleep_until_opt(due.map(|(_, at)| at)) => {
                    let Some((index, _)) = due else { continue };
                    let every = resources.resources[index].monitor_interval().unwrap_or(Duration::from_secs(10));
                    next_monitor.insert(index, Instant::now() + every);
                    match resources.monitor(index).await {
                        Health::Failed(why) => {
                            let resource = &package.resources[index];
                            let limit = resource.restarts().map_or(0, |(n, _)| n);
                            (index, resource.restart_key(), format!("monitor failed: {why}"), limit)
                        }
                        _ => continue,
                    }
                }
            };
            let (index, resource, why, limit) = failure;
            if package.is_failover() && !self.lease_valid() {
                // Fenced (by the guard or the fence loop): not a failure of the package.
                tracing::warn!(package = %name, resource, "{why} while this node holds no lease: stopped for lack of a lease");
                lock(&self.local).remove(&name);
                let _ = resources.stop(StopMode::Immediate).await;
                guarded.unregister_all(self.guard.as_ref());
                self.remove_pid_files(name.as_str());
                return;
            }
            tracing::warn!(package = %name, resource, "{why}");
            let counted = self
                .submit(&Command::RestartCounted {
                    package: name.clone(),
                    node: self.name.clone(),
                    service: resource.clone(),
                    detail: Some(why.clone()),
                    at: self.timestamp(),
                })
                .await;
            let count = match counted {
                Ok(Reply::Restarts { count }) => count,
                _ => u32::MAX, // no quorum: do not restart blindly
            };
            if count <= limit && self.lease_valid_for(&package) {
                tracing::info!(package = %name, resource, count, limit, "restarting");
                guarded.forget_group(self.guard.as_ref(), index);
                let restarted = match resources.restart(index).await {
                    Ok(()) => guarded.admit(self.guard.as_ref(), &mut resources, index),
                    Err(e) => Err(e.to_string()),
                };
                match restarted {
                    Ok(()) => {
                        self.write_pid_files(name.as_str(), &resources);
                        continue;
                    }
                    Err(e) => tracing::warn!(package = %name, resource, "restart failed: {e}"),
                }
            }
            tracing::warn!(package = %name, resource, count, "restarts exhausted: the package fails here");
            let fail_fast = matches!(
                package.resources.get(index),
                Some(halcyon_config::Resource::Service(s)) if s.node_fail_fast
            );
            let _ = self.executor_inbox.send(Inbox::Failed(name.clone())).await;
            lock(&self.local).remove(&name);
            let _ = resources.stop(StopMode::Graceful).await;
            guarded.unregister_all(self.guard.as_ref());
            self.remove_pid_files(name.as_str());
            let _ = self
                .enqueue(
                    Event::PackageFailed {
                        package: name.clone(),
                        node: self.name.clone(),
                    },
                    &format!("restarts exhausted: {resource}: {why}"),
                )
                .await;
            if fail_fast {
                self.fail_fast(&format!(
                    "{name}: {resource} failed ({why}) and has node_fail_fast"
                ))
                .await;
            }
            return;
        }
    }

    /// Polls `future` only while this node holds a lease (for a failover package): the
    /// address driver sends its repeated gratuitous ARPs while its `exited` future is polled,
    /// and a daemon resumed after a pause must not announce an address the guard deleted (the
    /// client would follow it away from the new holder) before its fence loop stops the package.
    fn while_leased<'a, T: 'a>(
        &'a self,
        failover: bool,
        future: halcyon_resources::BoxFuture<'a, T>,
    ) -> impl std::future::Future<Output = T> + 'a {
        let mut future = future;
        std::future::poll_fn(move |cx| {
            if failover && !self.lease_valid() {
                // The fence loop's stop request (on the control channel) wakes the select.
                return std::task::Poll::Pending;
            }
            future.as_mut().poll(cx)
        })
    }

    /// Local LAN failover of a running package: every address on `network` moves to the first
    /// usable standby interface; the guard learns the new interface before the move.
    async fn swap_addresses(
        &self,
        resources: &mut PackageResources,
        guarded: &mut Guarded,
        network: &str,
    ) -> Result<String, String> {
        let mut standby = None;
        for r in resources.resources.iter_mut() {
            if let Some(ip) = r.as_ip_address()
                && ip.network() == network
            {
                standby = ip.usable_standby().map_err(|e| e.to_string())?;
                break;
            }
        }
        let Some(device) = standby else {
            return Err(format!(
                "no usable standby interface on {network} on {} (up, with a carrier)",
                self.name
            ));
        };
        if !guarded.addresses.is_empty() || !guarded.gates.is_empty() {
            for index in 0..resources.resources.len() {
                let on_network = resources.resources[index]
                    .as_ip_address()
                    .is_some_and(|ip| ip.network() == network);
                if on_network && let Some(address) = guard_address(resources, index, &device) {
                    guarded.register_address(self.guard.as_ref(), address)?;
                }
            }
        }
        let moved = resources
            .swap_adapter(network, &device)
            .await
            .map_err(|e| e.to_string())?;
        Ok(if moved.is_empty() {
            format!("no address of the package is on {network}")
        } else {
            moved.join("; ")
        })
    }

    fn lease_valid_for(&self, package: &halcyon_config::Package) -> bool {
        !package.is_failover() || self.lease_valid()
    }

    /// `node_fail_fast` (Serviceguard's SERVICE_FAIL_FAST_ENABLED): the node leaves the
    /// cluster at once. Every local package is stopped immediately, the guard is told to
    /// forget them, and the daemon exits; the others take its packages over once its lease
    /// has expired, as for a crash.
    async fn fail_fast(&self, why: &str) -> ! {
        tracing::error!(node = %self.name, "FAIL FAST: {why}; this node leaves the cluster now");
        let names: Vec<PackageName> = lock(&self.local).keys().cloned().collect();
        for name in names {
            let _ = self.halt_package(&name, StopMode::Immediate).await;
        }
        self.guard.shutdown();
        std::process::exit(70);
    }

    /// Disarms the watchdog with the magic close (clean shutdown only).
    pub fn close_watchdog(&self) {
        if let Some(w) = lock(&self.watchdog).take() {
            w.close();
        }
    }

    /// Stops every local package (daemon shutdown).
    pub async fn stop_all(&self) {
        let names: Vec<PackageName> = lock(&self.local).keys().cloned().collect();
        for name in names {
            let _ = self.halt_package(&name, StopMode::Graceful).await;
        }
    }
}

/// openraft's timings for this cluster: derived from the heartbeat interval so that
/// an election fits in the lease (see `Cluster::raft_timings` and `Cluster::lease`).
pub(crate) fn raft_timings(cluster: &halcyon_config::Cluster) -> RaftTimings {
    let t = halcyon_config::timing::raft_timing(cluster.heartbeat.interval);
    RaftTimings {
        heartbeat_interval: t.heartbeat,
        election_timeout_min: t.election_min,
        election_timeout_max: t.election_max,
        ..RaftTimings::default()
    }
}
