//! One node's daemon: what its tasks share (read-only after start, or published on `watch`
//! channels), and the tasks themselves, one module each:
//!
//! | module | task | owns |
//! | --- | --- | --- |
//! | `lease` | the lease task (renewals, watchdog, heartbeats handle) | the holder's lease, published as [`Lease`] |
//! | `coordinator` | the coordinator (acts on the Raft leader only) | its memory and the grant table |
//! | `executor` | the executor | the packages running here, its memory |
//! | `package` | one supervisor per running package | the package's resources and guard registrations |
//! | `reports` | adapter and standby reports | – |
//! | `settings` | one loop per setting that follows the running configuration (heartbeats, watchdog, peers, Raft timings) | the last value asked of each |
//! | `monitor` | user-defined monitors | the running monitors |
//! | `program` | one task per event command | its process |
//! | `writer` | the writer | the one retry policy for writes; the queue of writes it sends in batches |
//!
//! Tasks talk through `watch` channels (current values: the replica's view, the membership
//! status, the lease, the packages running here) and `mpsc` queues with closed message
//! enums (the executor's [`Inbox`], the lease task's [`LeaseCommand`], grants to the
//! coordinator). No task's state is behind a lock. The long-running tasks are spawned by
//! [`crate::start_on`] (in `lib.rs`) from the [`Tasks`] that [`Node::open`] returns; other spawns (a
//! package's supervisor, a plan action, an event command, a monitor) are named where they
//! happen and end with what they serve.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use halcyon_config::{Config, NodeName, PackageName, timing};
use halcyon_consensus::{Consensus, NodeId, RaftTimings};
use halcyon_membership::{NodeState, Status};
use halcyon_resources::{PackageEnv, StopMode};
use halcyon_state::State;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::client;
use crate::faults::HeartbeatFaults;
use crate::lease::{self, Lease};
use crate::peers::{self, Peers};
use crate::platform::{LeaseGuard, NodeApplication, Platform, ResourceFactory};
use crate::renewal_watch::RenewalWatch;

pub(crate) mod admission;
mod coordinator;
mod executor;
mod lease_task;
mod monitor;
pub(crate) mod observer;
mod package;
mod program;
mod reload;
pub(crate) mod reports;
mod settings;
pub(crate) mod webhooks;
mod writer;

pub(crate) use executor::{Inbox, LocalPackage};
pub(crate) use lease_task::{LeaseCommand, RenewalTransport};

/// Settings of one daemon.
#[derive(Clone, Debug)]
pub struct Settings {
    pub config_paths: Vec<PathBuf>,
    pub node: String,
    pub state_dir: PathBuf,
    /// Enables `POST /v1/debug/isolate` (tests only).
    pub test_faults: bool,
    /// Where this node's credentials are (`halcyon init`). `None`: `pki` in the configuration
    /// directory.
    pub pki_dir: Option<PathBuf>,
    /// Run without credentials: heartbeats, the API and node-to-node requests are not
    /// authenticated (`--insecure`, logged). Without it a node without credentials refuses
    /// to start; with it, a node that has credentials refuses too (the flag would be a lie).
    pub insecure: bool,
    /// Where the API is also served for clients on this machine, without a token
    /// (`local_socket`; `--api-socket`). `None`: only TCP (the simulator).
    pub api_socket: Option<PathBuf>,
}

/// What a daemon's tasks share: settings fixed at start, handles, and the receiving ends of
/// the `watch` channels the tasks publish on.
pub struct Node {
    pub name: NodeName,
    pub number: u32,
    /// The configuration read at start (bootstrap only); the applied one is in the state.
    pub boot_config: Arc<Config>,
    /// The event rules read at start with it (bootstrap only).
    pub(crate) boot_rules: halcyon_events::Rules,
    /// The files of the configuration read at start, as text (see [`read_sources`]).
    pub(crate) boot_sources: Vec<halcyon_state::SourceFile>,
    /// The durable event log (`events.redb` in the state directory).
    pub archive: Arc<crate::archive::Archive>,
    pub consensus: Consensus,
    /// The replicated state as this node's replica last applied it, published by the
    /// replica (`NodeApplication`) after every applied entry or restore.
    pub(crate) view: watch::Receiver<Arc<State>>,
    /// The failure detector's status, published by the heartbeat runner; marked changed
    /// when a judgement changes.
    pub(crate) membership: watch::Receiver<Status>,
    /// This node's lease, published by the lease task.
    pub(crate) lease: watch::Receiver<Lease>,
    /// The packages running (or stopping) here, with whether each is a failover package,
    /// published by the executor.
    pub(crate) running: watch::Receiver<BTreeMap<PackageName, bool>>,
    /// Every node's API addresses: the running configuration's (`node::settings`).
    peers: std::sync::RwLock<Arc<Peers>>,
    pub lease_duration: Duration,
    pub renew_interval: Duration,
    /// The round trips of this node's lease renewals: is the network fast enough for the
    /// timings (fed by the lease task, read by `status`).
    pub(crate) renewal_watch: std::sync::Mutex<RenewalWatch>,
    /// The leader that left a renewal on the Raft transport unanswered and answered it on
    /// the internal API, and when (`lease_task::RaftRenewals`).
    pub(crate) raft_renewals: std::sync::Mutex<lease_task::RaftRenewals>,
    /// Renewals this node answered as coordinator, by transport (`metrics`).
    pub(crate) renewals_answered: lease_task::RenewalsAnswered,
    /// Test fault: renewals on the Raft transport are left unanswered, as by a node of an
    /// earlier version (`POST /v1/debug/raft-renewals-unanswered`).
    pub(crate) raft_renewals_unanswered: AtomicBool,
    /// This node's openraft `election_timeout_max`: as a voter of a new term it waited this
    /// long after it last heard the old leader (the new coordinator's release wait counts
    /// on every voter's, `shortest_election_max`).
    pub(crate) election_max: Duration,
    /// The heartbeat interval this node's Raft timings are derived from (fixed when the
    /// daemon starts, `raft_interval_at_start`; reported, `Node::raft_timings_loop`).
    pub(crate) raft_interval: Duration,
    /// Where the running configuration's heartbeat interval is kept for the next start
    /// (`raft_interval_file`).
    pub(crate) raft_interval_file: PathBuf,
    /// The lease task's queue (isolation, the watchdog's close).
    pub(crate) lease_commands: mpsc::Sender<LeaseCommand>,
    /// Grants of this node as leader, to the coordinator that owns the grant table.
    pub(crate) grants: mpsc::Sender<Grant>,
    /// The executor's inbox (what supervisors, plan actions and monitors tell it).
    pub(crate) executor_inbox: mpsc::Sender<Inbox>,
    /// The writer's queue: every attempt of `Node::submit` (see `writer`).
    writes: mpsc::Sender<writer::QueuedWrite>,
    /// This daemon's incarnation: from the state directory at start, raised once when the
    /// cluster has a higher one committed (a wiped state directory; see `Node::register`).
    incarnation: AtomicU64,
    /// Where the incarnation is kept across restarts.
    incarnation_file: PathBuf,
    /// The last clean stop the state directory remembered at start (sent with the
    /// registration: the cluster records whether the previous incarnation ended by it).
    clean_stop: Option<halcyon_state::CleanStop>,
    /// Where a clean stop is written for the next start.
    clean_stop_file: PathBuf,
    pub isolated: AtomicBool,
    pub test_faults: bool,
    /// The API's local socket (`Settings::api_socket`).
    pub api_socket: Option<PathBuf>,
    /// Test-only heartbeat drops (`--test-faults`).
    pub heartbeat_faults: HeartbeatFaults,
    /// Test only: plan actions handed to this node are held, never carried out nor
    /// reported (a stuck executor). Set by `POST /v1/debug/hold-actions` (`--test-faults`)
    /// or the simulator's `--hang`; nothing else sets it.
    pub hold_actions: AtomicBool,
    /// The heartbeat sealer's counts (authenticated heartbeats only).
    pub heartbeat_sealer: Option<halcyon_membership::SealerHandle>,
    /// Who may call the API, and how node requests are signed (see `auth`).
    pub auth: crate::auth::Auth,
    /// Mutual TLS on the Raft port (a node with credentials).
    pub raft_tls: Option<Arc<crate::raft_tls::RaftTls>>,
    /// Where the credentials are, for a reload, and what status says of them (`None`:
    /// insecure).
    pub(crate) credentials_source: Option<reload::CredentialsSource>,
    /// What `halcyon status` says about the watchdog (switched by `halcyon apply`).
    pub watchdog_state: std::sync::Mutex<String>,
    pub(crate) run_dir: PathBuf,
    /// Start gates (FIFOs) of guarded services.
    pub(crate) gates_dir: PathBuf,
    /// The lease guard.
    pub guard: Box<dyn LeaseGuard>,
    /// Clocks, network and resources of the machine (or the simulator).
    pub platform: Platform,
    /// The event stream's ring, which the observer sends on (`stream.rs`).
    pub(crate) stream: broadcast::Sender<crate::stream::Item>,
    /// What the observer counted of the event log (for `GET /metrics`).
    pub(crate) event_counts: watch::Receiver<Arc<observer::EventCounts>>,
    /// What the webhook task delivered and failed to (for `GET /metrics`).
    pub(crate) webhook_counts: watch::Receiver<webhooks::WebhookCounts>,
}

/// A lease granted by this node as leader: to whom, and when on this node's lease clock.
pub(crate) type Grant = (NodeName, Instant);

/// How many grants may wait for the coordinator: every node renews once per renewal
/// interval and the coordinator takes them as they come, so this is never reached unless
/// the coordinator is stuck, and then a grant is refused rather than left unrecorded.
const GRANTS_QUEUED_MAX: usize = 8 * halcyon_config::limits::NODES_MAX;

/// The state each long-running task starts with and owns; [`crate::start_on`] spawns them.
pub struct Tasks {
    pub(crate) lease: lease_task::LeaseTask,
    pub(crate) coordinator: mpsc::Receiver<Grant>,
    pub(crate) executor: executor::Executor,
    pub(crate) observer: observer::Observer,
    pub(crate) webhooks: webhooks::WebhookTask,
    pub(crate) writer: writer::Writer,
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

/// The configuration files as text, named relative to their directory (a file given by
/// itself by its name): what the cluster's `Bootstrap` keeps for `halcyon snapshot save`.
fn read_sources(paths: &[PathBuf]) -> anyhow::Result<Vec<halcyon_state::SourceFile>> {
    let sources = halcyon_config::named_sources(paths)
        .map_err(|d| anyhow::anyhow!("configuration is not readable:\n{d}"))?;
    Ok(sources
        .into_iter()
        .map(|(name, text)| halcyon_state::SourceFile { name, text })
        .collect())
}

/// The node's configuration and rules, read and checked.
fn read_configuration(settings: &Settings) -> anyhow::Result<(Config, halcyon_events::Rules)> {
    let (config, _) = halcyon_config::load(&settings.config_paths)
        .map_err(|d| anyhow::anyhow!("configuration is not valid:\n{d}"))?;
    if config.node(&settings.node).is_none() {
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
    }
    let rules = halcyon_events::load_cluster_rules(
        &settings.config_paths,
        config.cluster.events.rules.as_deref(),
    )
    .map_err(|d| anyhow::anyhow!("event rules are not valid:\n{d}"))?;
    Ok((config, rules))
}

/// The state directory's run and gate directories, what a previous incarnation left in
/// them killed or removed, and this incarnation's number.
fn prepare_state_dir(
    state_dir: &Path,
    resources: &dyn ResourceFactory,
) -> anyhow::Result<(PathBuf, PathBuf, u64)> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    let run_dir = state_dir.join("run");
    std::fs::create_dir_all(&run_dir)?;
    kill_leftovers(&run_dir, resources);
    let gates_dir = state_dir.join("gates");
    let _ = std::fs::remove_dir_all(&gates_dir);
    std::fs::create_dir_all(&gates_dir)?;
    Ok((run_dir, gates_dir, next_incarnation(state_dir)?))
}

impl Node {
    /// Opens everything a node needs (the guard, consensus, heartbeats) and returns it with
    /// its tasks' state, not yet running: [`crate::start_on`] serves the API and spawns them.
    pub async fn open(
        settings: Settings,
        mut platform: Platform,
    ) -> anyhow::Result<(Arc<Node>, Tasks)> {
        let (config, rules) = read_configuration(&settings)?;
        let me = config
            .node(&settings.node)
            .cloned()
            .expect("checked on read");
        let (run_dir, gates_dir, incarnation) =
            prepare_state_dir(&settings.state_dir, platform.resources.as_ref())?;
        // The guard first: no failover package may run here before it is ready.
        let (lease_duration, renew_interval, guard) = lease_and_guard(&config, &platform)?;
        let (credentials, auth, raft_tls) = security(&settings, &config)?;
        // With credentials the API is served and called over TLS (`platform::TlsNetwork`).
        if let Some(tls) = &raft_tls {
            platform.network = platform
                .network
                .with_tls(Arc::clone(tls))
                .context("this platform's network has no TLS for the API")?;
        }
        let raft_interval = raft_interval_at_start(&settings, config.cluster.heartbeat.interval);
        let (view, consensus) = open_consensus(
            &settings,
            &config,
            &platform,
            raft_tls.clone(),
            raft_interval,
        )
        .await?;
        let heartbeat_faults = HeartbeatFaults::default();
        let heartbeats = platform.heartbeats.start(
            &config.cluster,
            me.number,
            incarnation,
            settings.test_faults.then(|| heartbeat_faults.clone()),
            credentials.as_ref().map(|(_, c)| c.heartbeat_keys.clone()),
        )?;
        let credentials_source = credentials
            .map(|(dir, c)| reload::CredentialsSource::new(dir, &c, platform.clock.timestamp()));
        let heartbeat_sealer = heartbeats.sealer();
        let membership = heartbeats.status();
        let (watchdog, watchdog_state) = crate::watchdog::open_configured(&config.cluster);
        let (lease, lease_commands, lease_task) = lease_task::LeaseTask::new(heartbeats, watchdog);
        let (executor, executor_inbox, running) = executor::Executor::new();
        let (writer, writes) = writer::Writer::new();
        let (grants, coordinator) = mpsc::channel(GRANTS_QUEUED_MAX);
        let (stream, event_counts, webhook_counts, observer, webhooks) = observing();
        let renewal_watch = std::sync::Mutex::new(RenewalWatch::new(
            platform.clock.now(),
            timing::renewal_warning_threshold(config.cluster.heartbeat.interval, lease_duration),
            timing::renewal_round_trip_max(config.cluster.heartbeat.interval, lease_duration),
        ));
        let node = Arc::new(Node {
            name: me.name.clone(),
            number: me.number,
            peers: std::sync::RwLock::new(Arc::new(Peers::new(&config))),
            election_max: raft_timings_of(raft_interval).election_timeout_max,
            raft_interval,
            boot_config: Arc::new(config),
            boot_rules: rules,
            boot_sources: read_sources(&settings.config_paths)?,
            consensus,
            view,
            membership,
            lease,
            running,
            lease_duration,
            renew_interval,
            renewal_watch,
            raft_renewals: std::sync::Mutex::new(lease_task::RaftRenewals::default()),
            renewals_answered: lease_task::RenewalsAnswered::default(),
            raft_renewals_unanswered: AtomicBool::new(false),
            lease_commands,
            grants,
            executor_inbox,
            writes,
            incarnation: AtomicU64::new(incarnation),
            incarnation_file: incarnation_file(&settings.state_dir),
            raft_interval_file: raft_interval_file(&settings.state_dir),
            clean_stop: read_clean_stop(&settings.state_dir),
            clean_stop_file: clean_stop_file(&settings.state_dir),
            archive: Arc::new(crate::archive::Archive::open(&settings.state_dir)?),
            isolated: AtomicBool::new(false),
            test_faults: settings.test_faults,
            api_socket: settings.api_socket.clone(),
            heartbeat_faults,
            hold_actions: AtomicBool::new(false),
            heartbeat_sealer,
            auth,
            raft_tls,
            credentials_source,
            watchdog_state: std::sync::Mutex::new(watchdog_state),
            run_dir,
            gates_dir,
            guard,
            platform,
            stream,
            event_counts,
            webhook_counts,
        });
        node.answer_renewals_on_raft();
        let tasks = Tasks {
            lease: lease_task,
            coordinator,
            executor,
            observer,
            webhooks,
            writer,
        };
        Ok((node, tasks))
    }

    /// Once the replica holds the running configuration: logs how this node's
    /// configuration files differ from it (they are not applied to a running cluster), then
    /// ends. `status` says the same (`config_drift`).
    pub(crate) async fn report_drift(self: Arc<Self>) {
        let mut view = self.view.clone();
        let Ok(state) = view.wait_for(|s| s.config().is_some()).await else {
            return;
        };
        let drift = crate::views::config_drift(&self, &state);
        drop(state);
        for line in &drift {
            tracing::warn!(node = %self.name, "configuration files differ from the running cluster's: {line}; the cluster keeps running its own");
        }
    }

    /// Wall-clock time (the platform's).
    pub fn timestamp(&self) -> Timestamp {
        self.platform.clock.timestamp()
    }

    /// Sleeps until `at` on the platform's lease clock (which the simulator runs at a rate
    /// of its own): tokio sleeps what is left, then the clock is read again.
    pub(crate) async fn sleep_until(&self, at: Instant) {
        /// Shortest sleep, so that a clock running slower than tokio's never spins.
        const STEP_MIN: Duration = Duration::from_millis(1);
        loop {
            let left = at.saturating_duration_since(self.platform.clock.now());
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left.max(STEP_MIN)).await;
        }
    }

    /// [`Node::sleep_until`], or forever when there is nothing to wait for.
    pub(crate) async fn sleep_until_opt(&self, at: Option<Instant>) {
        match at {
            Some(at) => self.sleep_until(at).await,
            None => std::future::pending().await,
        }
    }

    /// One request to a peer's API over the platform's network, signed by this node (see
    /// `auth`); `caller`: who asked, when this node forwards a client's request.
    pub(crate) async fn request(
        &self,
        addr: std::net::SocketAddr,
        method: &str,
        path: &str,
        body: Option<&str>,
        limit: Duration,
        caller: Option<&crate::auth::Caller>,
    ) -> Result<client::Response, String> {
        let headers = self.auth.sign(
            method,
            path,
            body.unwrap_or("").as_bytes(),
            caller,
            self.timestamp().as_millisecond(),
        );
        client::request_with(
            self.platform.network.as_ref(),
            addr,
            method,
            path,
            &headers,
            body,
            limit,
        )
        .await
    }

    /// Whether the observer runs (it counts events for `/metrics` and feeds the event
    /// stream): in the daemon, not in the simulator.
    pub(crate) fn observed(&self) -> bool {
        self.event_counts.has_changed().is_ok()
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
            .config()
            .cloned()
            .unwrap_or_else(|| Arc::clone(&self.boot_config))
    }

    /// Node `id`'s name in the running configuration (else the files').
    pub fn node_name_of(&self, id: NodeId) -> String {
        peers::name_of(&self.config(), id)
    }

    /// The Raft voters by name (the running configuration's, else `node N`).
    pub(crate) fn voter_names(&self) -> Vec<String> {
        self.consensus
            .voters()
            .into_iter()
            .map(|id| self.node_name_of(id))
            .collect()
    }

    /// The Raft members, voters and learners, by node number.
    pub(crate) fn raft_member_numbers(&self) -> std::collections::BTreeSet<u32> {
        self.consensus
            .voters()
            .into_iter()
            .chain(self.consensus.learners())
            .filter_map(|id| u32::try_from(id).ok())
            .collect()
    }

    /// Every node's API addresses, as the running configuration has them.
    pub(crate) fn peers(&self) -> Arc<Peers> {
        Arc::clone(
            &self
                .peers
                .read()
                .expect("the peers' lock is never poisoned"),
        )
    }

    /// From now on the API addresses of `config`'s nodes.
    pub(crate) fn set_peers(&self, config: &Config) {
        *self
            .peers
            .write()
            .expect("the peers' lock is never poisoned") = Arc::new(Peers::new(config));
    }

    /// This daemon's incarnation.
    pub fn incarnation(&self) -> u64 {
        self.incarnation.load(Ordering::SeqCst)
    }

    /// The last clean stop the state directory remembered when this daemon started.
    pub(crate) fn previous_clean_stop(&self) -> Option<halcyon_state::CleanStop> {
        self.clean_stop
    }

    /// Remembers, for the next start, that this incarnation stopped cleanly now (its
    /// packages halted): the next registration says so, where a crash leaves the marker of
    /// an older incarnation or none. Called last on a clean stop.
    pub fn record_clean_stop(&self) -> Result<(), String> {
        let stop = halcyon_state::CleanStop {
            incarnation: self.incarnation(),
            at: self.timestamp(),
        };
        let text = serde_json::to_string(&stop).expect("a clean stop serialises");
        let file = &self.clean_stop_file;
        let temporary = file.with_extension("new");
        std::fs::write(&temporary, text)
            .and_then(|()| std::fs::rename(&temporary, file))
            .map_err(|e| format!("writing {}: {e}", file.display()))
    }

    /// Becomes incarnation `incarnation` (above the current one): kept in the state
    /// directory, and heartbeated from now on.
    pub(crate) async fn reincarnate(&self, incarnation: u64) -> Result<(), String> {
        let current = self.incarnation();
        assert!(incarnation > current, "an incarnation only grows");
        std::fs::write(&self.incarnation_file, incarnation.to_string())
            .map_err(|e| format!("writing {}: {e}", self.incarnation_file.display()))?;
        self.ask_lease_task(|reply| LeaseCommand::Reincarnate(incarnation, reply))
            .await
            .ok_or("the lease task is gone")??;
        self.incarnation.store(incarnation, Ordering::SeqCst);
        Ok(())
    }

    /// The failure detector's status as last published.
    pub fn membership(&self) -> Status {
        self.membership.borrow().clone()
    }

    /// Reachability of every configured node from here (this node is always reachable).
    pub fn reachability(&self) -> BTreeMap<u32, NodeState> {
        let mut out: BTreeMap<u32, NodeState> = self
            .membership
            .borrow()
            .detector
            .nodes
            .iter()
            .map(|n| (n.node, n.state))
            .collect();
        out.insert(self.number, NodeState::Reachable);
        out
    }

    pub fn lease_remaining(&self) -> Duration {
        self.lease
            .borrow()
            .holder
            .remaining(self.platform.clock.now())
    }

    /// The renewals' round trips as `status` shows them.
    pub fn renewal_report(&self) -> crate::renewal_watch::RenewalReport {
        let now = self.platform.clock.now();
        self.renewal_watch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .report(now)
    }

    /// How long before its lease ends this node starts halting its failover packages
    /// (`timing::fence_lead`): what a renewal interval leaves after the confirmation wait of
    /// the slowest Raft timings a coordinator may run (`State::raft_intervals`).
    fn fence_lead(&self) -> Duration {
        let (interval, raft) = {
            let view = self.view.borrow();
            // The files' renewal interval before the bootstrap: it is their heartbeat interval.
            let interval = view
                .config()
                .map_or(self.renew_interval, |c| c.cluster.heartbeat.interval);
            let raft = view.raft_intervals().map(|(_, longest)| longest);
            (interval, raft.map_or(interval, |r| r.max(interval)))
        };
        lease::fence_lead(self.holding_lease(), interval, raft)
    }

    /// How often this node asks for a renewal of its lease: every heartbeat interval of the
    /// running configuration (`timing::renew_interval`; `halcyon apply` may change it),
    /// else of its files.
    pub(crate) fn renewal_interval(&self) -> Duration {
        self.view
            .borrow()
            .config()
            .map_or(self.renew_interval, |c| {
                timing::renew_interval(c.cluster.heartbeat.interval)
            })
    }

    /// How long this node holds a lease: the replicated state's once the replica holds a
    /// configuration (a node is granted one only then; `State::lease`: the running
    /// configuration's, derived for the slowest elections the voters' Raft timings allow),
    /// else its files'. The holder reads it after its replica applied the grant's read index
    /// (`renew`), so it is the lease of a state at least as recent as the grant: a
    /// coordinator whose state shortened the lease grants no longer one from then on, which
    /// is what lets it settle the older leases (`State::longest_lease`).
    pub fn holding_lease(&self) -> Duration {
        self.view.borrow().lease().unwrap_or(self.lease_duration)
    }

    /// How long this node, as coordinator, waits a lease out: the longest any node may
    /// hold now (`State::longest_lease`: the running configuration's, or an earlier longer
    /// one not settled yet). Not its files': no node holds a lease of its files once the
    /// cluster is bootstrapped (`holding_lease`), and before that none is granted.
    pub fn waiting_lease(&self) -> Duration {
        self.view
            .borrow()
            .longest_lease()
            .unwrap_or(self.lease_duration)
    }

    /// The election timeout a new coordinator may count on every voter having waited: the
    /// shorter of its own and the shortest any node's Raft timings may run
    /// (`State::raft_intervals`: a node keeps the timings it started with until it
    /// restarts).
    fn shortest_election_max(&self) -> Duration {
        let shortest = self
            .view
            .borrow()
            .raft_intervals()
            .map(|(shortest, _)| timing::raft_timing(shortest).election_max);
        shortest.map_or(self.election_max, |r| r.min(self.election_max))
    }

    /// A lease is held: granted, not about to expire, and the guard protects it (a dead,
    /// stalled or fenced guard is a lost lease; asked now, not as the lease task last saw it).
    pub(crate) fn lease_valid(&self) -> bool {
        // The lead first: it reads the view, which is not read while the lease is borrowed.
        let lead = self.fence_lead();
        let now = self.platform.clock.now();
        self.lease.borrow().valid(now, lead) && self.guard.lost().is_none()
    }

    fn lease_valid_for(&self, package: &halcyon_config::Package) -> bool {
        !package.is_failover() || self.lease_valid()
    }

    /// Isolates this node (tests): no consensus traffic, no heartbeats, no node-to-node API.
    pub fn isolate(&self) {
        self.isolated.store(true, Ordering::SeqCst);
        self.consensus
            .fault_hook()
            .isolate(NodeId::from(self.number));
        if self.lease_commands.try_send(LeaseCommand::Isolate).is_err() {
            tracing::error!(node = %self.name, "isolation: the lease task did not take the command; heartbeats go on");
        }
        tracing::warn!(node = %self.name, "isolated by a test fault");
    }

    pub fn is_isolated(&self) -> bool {
        self.isolated.load(Ordering::SeqCst)
    }

    /// The leader's name and API addresses (the one that answered last first), if a
    /// leader is known.
    pub fn leader_api(&self) -> Option<(String, Vec<std::net::SocketAddr>)> {
        self.leader_addrs(false)
    }

    /// The leader's name and API (`internal`: internal API) addresses, the interface that
    /// answered last first.
    pub(crate) fn leader_addrs(
        &self,
        internal: bool,
    ) -> Option<(String, Vec<std::net::SocketAddr>)> {
        let leader = self.consensus.leader()?;
        let number = u32::try_from(leader).ok();
        let down = |network: u32| {
            let status = self.membership.borrow();
            let detector = &status.detector;
            let link_down = detector
                .networks
                .iter()
                .any(|n| n.network == network && !n.local_link_up);
            let path_down = detector.paths.iter().any(|p| {
                Some(p.node) == number
                    && p.network == network
                    && p.state == halcyon_membership::PathState::Down
            });
            link_down || path_down
        };
        let addrs = self.peers().preferred_first(leader, internal, down)?;
        Some((self.node_name_of(leader), addrs))
    }

    /// What `halcyon status` says about the watchdog.
    pub fn watchdog_state(&self) -> String {
        self.watchdog_state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Disarms the watchdog with the magic close (clean shutdown only).
    pub async fn close_watchdog(&self) {
        let _ = self.ask_lease_task(LeaseCommand::CloseWatchdog).await;
    }

    /// Sends the lease task (which owns the heartbeats' handle and the watchdog) a command
    /// and waits for its answer; `None` when the task is gone.
    pub(crate) async fn ask_lease_task<T>(
        &self,
        command: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> LeaseCommand,
    ) -> Option<T> {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.lease_commands.send(command(done)).await.ok()?;
        answer.await.ok()
    }
}

/// This node's credentials (`halcyon init`): from `--pki DIR`, or from `pki` in the
/// configuration directory. Credentials that fail any check (a key others may read, a
/// certificate of another cluster or node, ...) refuse the start, naming the file; so does a
/// node without credentials, unless it is started `--insecure` (then `None`: heartbeats, the
/// API and node requests go unauthenticated, which is logged), and a node with credentials
/// started `--insecure`.
/// The lease (it outlasts failure detection and an election: holders keep it through a new
/// election), how often it is renewed, and the started lease guard.
fn lease_and_guard(
    config: &Config,
    platform: &Platform,
) -> anyhow::Result<(Duration, Duration, Box<dyn crate::platform::LeaseGuard>)> {
    let lease_duration = config.cluster.lease();
    let renew_interval = halcyon_config::timing::renew_interval(config.cluster.heartbeat.interval);
    let guard = platform
        .guards
        .start((lease_duration / 2).max(Duration::from_millis(100)))
        .context("starting the lease guard (`halcyon guard`)")?;
    Ok((lease_duration, renew_interval, guard))
}

/// The node's credentials and where they are (none when it runs `--insecure`), what the API
/// checks with them, and Raft's TLS.
#[allow(clippy::type_complexity)]
fn security(
    settings: &Settings,
    config: &Config,
) -> anyhow::Result<(
    Option<(PathBuf, halcyon_pki::Credentials)>,
    crate::auth::Auth,
    Option<Arc<crate::raft_tls::RaftTls>>,
)> {
    let credentials = credentials(
        &settings.config_paths,
        settings.pki_dir.as_deref(),
        settings.insecure,
        &settings.node,
        config,
    )?;
    let auth = match &credentials {
        Some((_, c)) => crate::auth::Auth::from_credentials(c)
            .map_err(|e| anyhow::anyhow!("the node's credentials: {e}"))?,
        None => crate::auth::Auth::insecure(),
    };
    let raft_tls = credentials
        .as_ref()
        .map(|(_, c)| crate::raft_tls::RaftTls::new(c, raft_member_names(config)).map(Arc::new))
        .transpose()
        .map_err(|e| anyhow::anyhow!("the node's credentials for Raft's TLS: {e}"))?;
    if let Some(tls) = &raft_tls {
        tls.set_addresses(crate::peers::node_of_address(config));
    }
    Ok((credentials, auth, raft_tls))
}

/// The channels of what is watched: the event stream, the event and webhook counts, and the
/// observer and webhook tasks that feed them.
#[allow(clippy::type_complexity)]
fn observing() -> (
    broadcast::Sender<crate::stream::Item>,
    watch::Receiver<Arc<observer::EventCounts>>,
    watch::Receiver<webhooks::WebhookCounts>,
    observer::Observer,
    webhooks::WebhookTask,
) {
    let (stream, _) = broadcast::channel(crate::stream::STREAM_BUFFER);
    let (counts, event_counts) = watch::channel(Arc::default());
    let (deliveries, queue) = mpsc::channel(webhooks::QUEUE_MAX);
    let (webhook_counts_sender, webhook_counts) = watch::channel(Default::default());
    let observer = observer::Observer {
        stream: stream.clone(),
        counts,
        webhooks: deliveries,
    };
    let task = webhooks::WebhookTask {
        queue,
        counts: webhook_counts_sender,
    };
    (stream, event_counts, webhook_counts, observer, task)
}

pub(crate) fn credentials(
    config_paths: &[PathBuf],
    pki_dir: Option<&Path>,
    insecure: bool,
    name: &str,
    config: &Config,
) -> anyhow::Result<Option<(PathBuf, halcyon_pki::Credentials)>> {
    let beside_config = config_paths
        .first()
        .filter(|p| p.is_dir())
        .map(|p| p.join("pki"));
    let dir = match (pki_dir, beside_config) {
        (Some(dir), _) => dir.to_path_buf(),
        (None, Some(dir)) if dir.exists() => dir,
        (None, beside) => {
            let missing = beside.map_or_else(|| "--pki".to_owned(), |d| d.display().to_string());
            if !insecure {
                bail!(
                    "no credentials ({missing} does not exist): `halcyon init -c CONFIG --dir \
                     {missing}` creates them (or `--pki DIR`); `--insecure` runs without any \
                     authentication, on a trusted network only"
                );
            }
            tracing::warn!(
                node = %name,
                "INSECURE (--insecure): no credentials ({missing} does not exist): heartbeats, \
                 the API and node-to-node requests are NOT authenticated; anyone who reaches \
                 this node's ports can operate the cluster"
            );
            return Ok(None);
        }
    };
    if insecure {
        bail!(
            "--insecure is for a node without credentials, and {} holds this node's: \
             remove --insecure (or the credentials)",
            dir.display()
        );
    }
    let credentials = halcyon_pki::load(&dir, name)
        .with_context(|| format!("the credentials in {}", dir.display()))?;
    anyhow::ensure!(
        credentials.cluster_id == config.cluster.id,
        "the credentials in {} are for cluster id {}, the configuration's is {}",
        dir.display(),
        credentials.cluster_id,
        config.cluster.id
    );
    tracing::info!(
        node = %name,
        pki = %dir.display(),
        keys = credentials.heartbeat_keys.len(),
        tokens = credentials.tokens.tokens.len(),
        "credentials loaded: heartbeats authenticated (HMAC-SHA256), node requests signed with the node key, API tokens required"
    );
    Ok(Some((dir, credentials)))
}

/// The names of the cluster's Raft members (the nodes and the witness): whom a Raft peer's
/// certificate may name.
/// Where a node's API and internal API listen (`api::serve`), followed with the running
/// configuration by the task that owns it (`Node::peers_loop`). Not kept in the node: its
/// servers' routers hold the node.
pub struct Listenings {
    pub public: crate::platform::Listening,
    pub internal: crate::platform::Listening,
}

pub(crate) fn raft_member_names(config: &Config) -> std::collections::BTreeSet<String> {
    config
        .cluster
        .nodes
        .iter()
        .map(|n| n.name.to_string())
        .chain(
            config
                .cluster
                .quorum
                .witness
                .iter()
                .map(|w| w.name.to_string()),
        )
        .collect()
}

/// Opens consensus on the replica that publishes the view, cleans up what a previous
/// incarnation left (SPEC 6), and initialises the Raft membership on the lowest-numbered node (a new store: the
/// admission task does, once it knows the cluster has not formed).
///
/// Raft's timings are fixed when it starts (openraft 0.9 has no setter): those derived from
/// `raft_interval` ([`raft_interval_at_start`]).
async fn open_consensus(
    settings: &Settings,
    config: &Config,
    platform: &Platform,
    tls: Option<Arc<crate::raft_tls::RaftTls>>,
    raft_interval: Duration,
) -> anyhow::Result<(watch::Receiver<Arc<State>>, Consensus)> {
    let (views, view) = watch::channel(Arc::new(State::new()));
    let app = NodeApplication::new(views, platform.applied.clone());
    let members = peers::raft_members(config);
    let me = config.node(&settings.node).expect("checked on read");
    let id = NodeId::from(me.number);
    let addrs = members.get(&id).cloned().unwrap_or_default();
    let db_path = settings.state_dir.join("raft.redb");
    // A new store in a cluster of several nodes answers no Raft request before it knows
    // whether the cluster still counts this node as a member (`admission`).
    let held = !db_path.exists() && config.cluster.nodes.len() > 1;
    let consensus = platform
        .network
        .open_consensus(
            config.cluster.id,
            id,
            addrs,
            &db_path,
            app,
            RaftTimings {
                held,
                ..raft_timings_of(raft_interval)
            },
            tls,
        )
        .await
        .context("opening consensus")?;
    // SPEC 6: a restarted node first stops anything a previous incarnation left, before it
    // registers (rejoins). The packages are those of the configuration in force as far as
    // this node knows it (its applied state, else the files).
    let cleanup_config = view
        .borrow()
        .config()
        .cloned()
        .unwrap_or_else(|| Arc::new(config.clone()));
    halt_leftovers(&cleanup_config, &settings.node, platform.resources.as_ref()).await;
    let lowest = config.cluster.nodes.iter().map(|n| n.number).min();
    if lowest == Some(me.number) && !held {
        consensus
            .initialize(members)
            .await
            .context("initializing the Raft membership")?;
    }
    Ok((view, consensus))
}

/// The file in the state directory that keeps the heartbeat interval of the running
/// configuration this node last applied (`Node::raft_timings_loop` writes it), in
/// milliseconds: what its Raft timings are derived from at its next start.
pub(crate) fn raft_interval_file(state_dir: &Path) -> PathBuf {
    state_dir.join("raft-interval")
}

/// The heartbeat interval this start's Raft timings are derived from: the running
/// configuration's as this node last applied it ([`raft_interval_file`]), else its files'
/// (a first start, or a wiped state directory). A running cluster's `halcyon apply` may
/// have changed the interval since the files were written; the files' is not silently
/// used then, and the difference is logged.
fn raft_interval_at_start(settings: &Settings, files: Duration) -> Duration {
    let path = raft_interval_file(&settings.state_dir);
    let stored = match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(ms)
                if (halcyon_config::limits::HEARTBEAT_INTERVAL_MIN_MS
                    ..=halcyon_config::limits::HEARTBEAT_INTERVAL_MAX_MS)
                    .contains(&ms) =>
            {
                Some(Duration::from_millis(ms))
            }
            _ => {
                tracing::warn!(file = %path.display(), "ignoring an unreadable Raft interval: {text:?}");
                None
            }
        },
        Err(_) => None,
    };
    let interval = stored.unwrap_or(files);
    if interval != files {
        tracing::warn!(
            node = %settings.node,
            "Raft timings of the running configuration's heartbeat interval ({}), not the \
             files' ({}): the files differ from the running configuration",
            humantime::format_duration(interval),
            humantime::format_duration(files)
        );
    }
    interval
}

/// Writes `text` to `path` so that a power loss leaves the old or the new content: a
/// temporary file synced, renamed over `path`, and the directory synced.
pub(crate) fn write_durably(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let temporary = path.with_extension("new");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn incarnation_file(state_dir: &Path) -> PathBuf {
    state_dir.join("incarnation")
}

fn clean_stop_file(state_dir: &Path) -> PathBuf {
    state_dir.join("clean-stop")
}

/// The clean stop a previous incarnation recorded, if any; an unreadable marker counts as
/// none (the previous end is then reported as not clean), with a warning.
fn read_clean_stop(state_dir: &Path) -> Option<halcyon_state::CleanStop> {
    let path = clean_stop_file(state_dir);
    let text = std::fs::read_to_string(&path).ok()?;
    serde_json::from_str(&text)
        .inspect_err(|e| tracing::warn!(file = %path.display(), "ignoring an unreadable clean-stop marker: {e}"))
        .ok()
}

fn next_incarnation(state_dir: &Path) -> anyhow::Result<u64> {
    let path = incarnation_file(state_dir);
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
                // The normal restart: nothing is wrong (a failed halt is an ERROR below).
                Ok(Ok(report)) => tracing::info!(
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

/// openraft's timings for this cluster: derived from the heartbeat interval so that
/// an election fits in the lease (see `Cluster::raft_timings` and `Cluster::lease`).
pub(crate) fn raft_timings(cluster: &halcyon_config::Cluster) -> RaftTimings {
    raft_timings_of(cluster.heartbeat.interval)
}

/// openraft's timings derived from the heartbeat interval `interval`.
fn raft_timings_of(interval: Duration) -> RaftTimings {
    let t = timing::raft_timing(interval);
    RaftTimings {
        heartbeat_interval: t.heartbeat,
        election_timeout_min: t.election_min,
        election_timeout_max: t.election_max,
        ..RaftTimings::default()
    }
}
