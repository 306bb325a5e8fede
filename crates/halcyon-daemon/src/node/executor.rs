//! The executor's runtime: owns the packages running here ([`LocalPackage`], published as
//! `Node::running`) and the executor's memory, decides on every change of what it reads
//! (`executor::decide`, pure) and carries the decision out. Other tasks tell it what they
//! saw and ask it to halt packages through its [`Inbox`]; nobody else changes what runs here.

use std::collections::BTreeMap;
use std::sync::Arc;

use halcyon_config::{Config, NetworkName, NodeName, PackageName};
use halcyon_policy::Event;
use halcyon_resources::StopMode;
use tokio::sync::{mpsc, oneshot, watch};

use super::Node;
use super::package::{Control, ControlMessage};
use crate::executor::INBOX_CAPACITY;
use crate::executor::decide::{self, LocalAction, What};

/// A package running (or starting) on this node.
pub(crate) struct LocalPackage {
    pub failover: bool,
    /// Which start of the package this is (a supervisor's end names it, so that the end of
    /// an older start never removes a newer one).
    pub instance: u64,
    pub control: mpsc::Sender<ControlMessage>,
}

/// What other tasks tell or ask the executor.
pub(crate) enum Inbox {
    /// A plan action started the package here.
    Started(PackageName, LocalPackage),
    /// A plan action could not start the package here: reconciliation must not start it
    /// here again while the view places it here.
    StartFailed(PackageName),
    /// The supervisor of start `instance` ended: the package no longer runs here.
    /// `failed`: its restarts were exhausted (as [`Inbox::StartFailed`]).
    Ended {
        package: PackageName,
        instance: u64,
        failed: bool,
    },
    /// A monitor failed the package here: marked failed here, then halted; the answer says
    /// how the halt went (`None`: it was not running here).
    Fail {
        package: PackageName,
        reply: oneshot::Sender<Option<Result<String, String>>>,
    },
    /// The control queue of the package's supervisor here (`None`: it does not run here),
    /// for a monitor that restarts its services.
    ControlOf {
        package: PackageName,
        reply: oneshot::Sender<Option<mpsc::Sender<ControlMessage>>>,
    },
    /// Halt every package running here (shutdown, fail-fast), then answer; from then on
    /// the executor starts nothing.
    HaltAll {
        mode: StopMode,
        reply: oneshot::Sender<()>,
    },
}

/// What the executor owns.
pub struct Executor {
    inbox: mpsc::Receiver<Inbox>,
    memory: decide::Memory,
    local: BTreeMap<PackageName, LocalPackage>,
    /// The number of the next start.
    next_instance: u64,
    /// Everything was halted for the daemon's end (shutdown, fail-fast): nothing starts
    /// again, whatever the view still places here.
    ending: bool,
    running: watch::Sender<BTreeMap<PackageName, bool>>,
}

impl Executor {
    pub(crate) fn new() -> (
        Executor,
        mpsc::Sender<Inbox>,
        watch::Receiver<BTreeMap<PackageName, bool>>,
    ) {
        let (inbox_tx, inbox) = mpsc::channel(INBOX_CAPACITY);
        let (running, running_rx) = watch::channel(BTreeMap::new());
        let executor = Executor {
            inbox,
            memory: decide::Memory::default(),
            local: BTreeMap::new(),
            next_instance: 1,
            ending: false,
            running,
        };
        (executor, inbox_tx, running_rx)
    }

    fn publish(&self) {
        let running: BTreeMap<PackageName, bool> = self
            .local
            .iter()
            .map(|(name, p)| (name.clone(), p.failover))
            .collect();
        self.running.send_if_modified(|current| {
            let changed = *current != running;
            *current = running;
            changed
        });
    }

    fn instance(&mut self) -> u64 {
        let instance = self.next_instance;
        self.next_instance += 1;
        instance
    }

    fn insert(&mut self, package: PackageName, handle: LocalPackage) {
        assert!(
            !self.local.contains_key(&package),
            "{package} is started here while it runs here"
        );
        self.local.insert(package, handle);
        self.publish();
    }

    fn remove(&mut self, package: &PackageName) -> Option<LocalPackage> {
        let removed = self.local.remove(package);
        self.publish();
        removed
    }
}

/// Asks a package's supervisor to stop it and waits for the answer.
async fn stop(
    name: &PackageName,
    package: LocalPackage,
    mode: StopMode,
    node: &NodeName,
) -> Result<String, String> {
    let (tx, rx) = oneshot::channel();
    if package
        .control
        .send((Control::Stop(mode), tx))
        .await
        .is_err()
    {
        return Ok(format!("{name} had already stopped on {node}"));
    }
    rx.await
        .unwrap_or_else(|_| Ok(format!("{name} stopped on {node}")))
}

impl Node {
    /// Decides on every change of what it reads (the view, the lease, leadership, its
    /// inbox) what this node must do, and does it: plan actions and event commands in tasks
    /// of their own, reconciliation in order.
    pub(crate) async fn executor_loop(self: Arc<Self>, mut executor: Executor) {
        let mut view = self.view.clone();
        let mut lease = self.lease.clone();
        let mut server = self.consensus.server_metrics();
        // The log index a lease grant confirmed and this replica had not applied at the last
        // decision: a failover package waits for it (`fresh`). Applying it changes no view
        // when it is a new leader's blank entry, so the wait is on Raft's applied index
        // (seed 18 of the simulator: p2 never restarted after its node's lease came back).
        let mut unapplied: Option<u64> = None;
        loop {
            tokio::select! {
                biased;
                Some(message) = executor.inbox.recv() => self.take(&mut executor, message).await,
                Ok(()) = view.changed() => {}
                Ok(()) = lease.changed() => {}
                Ok(()) = server.changed() => {}
                () = self.consensus.applied_at_least(unapplied.unwrap_or(0)), if unapplied.is_some() => {}
            }
            // Set again below, by the decision that still waits for it.
            unapplied = None;
            // Before the copy: the copy is at least as recent as this.
            let raft_applied = self.raft_applied();
            let state = self.snapshot();
            let Some(config) = state.config().cloned() else {
                continue;
            };
            // After the copy: whatever a plan action told before its report was committed
            // (a start) is taken before a decision on a view that shows the report.
            while let Ok(message) = executor.inbox.try_recv() {
                self.take(&mut executor, message).await;
            }
            if executor.ending {
                continue;
            }
            let running: BTreeMap<PackageName, bool> = executor.running.borrow().clone();
            let confirmed = self.lease.borrow().confirmed;
            unapplied = (raft_applied < confirmed).then_some(confirmed);
            let input = decide::Input {
                node: &self.name,
                state: &state,
                config: &config,
                raft_applied,
                confirmed,
                lease_valid: self.lease_valid(),
                leader: self.consensus.is_leader() && !self.is_isolated(),
                running: &running,
            };
            for action in decide::decide(&input, &mut executor.memory) {
                self.carry_out(&mut executor, &config, action).await;
            }
        }
    }

    /// Takes in one message of the inbox.
    async fn take(&self, executor: &mut Executor, message: Inbox) {
        match message {
            Inbox::Started(package, handle) => {
                executor.memory.starting.remove(&package);
                executor.memory.failed_here.remove(&package);
                executor.insert(package, handle);
            }
            Inbox::StartFailed(package) => {
                executor.memory.starting.remove(&package);
                executor.memory.failed_here.insert(package);
            }
            Inbox::Ended {
                package,
                instance,
                failed,
            } => {
                if failed {
                    executor.memory.failed_here.insert(package.clone());
                }
                if executor
                    .local
                    .get(&package)
                    .is_some_and(|p| p.instance == instance)
                {
                    executor.remove(&package);
                }
            }
            Inbox::Fail { package, reply } => {
                let halted = match executor.remove(&package) {
                    Some(handle) => {
                        executor.memory.failed_here.insert(package.clone());
                        Some(stop(&package, handle, StopMode::Graceful, &self.name).await)
                    }
                    None => None,
                };
                let _ = reply.send(halted);
            }
            Inbox::ControlOf { package, reply } => {
                let _ = reply.send(executor.local.get(&package).map(|p| p.control.clone()));
            }
            Inbox::HaltAll { mode, reply } => {
                executor.ending = true;
                let names: Vec<PackageName> = executor.local.keys().cloned().collect();
                for name in names {
                    if let Some(handle) = executor.remove(&name) {
                        let _ = stop(&name, handle, mode, &self.name).await;
                    }
                }
                let _ = reply.send(());
            }
        }
    }

    /// Carries out one decision of the executor.
    async fn carry_out(
        self: &Arc<Self>,
        executor: &mut Executor,
        config: &Arc<Config>,
        action: LocalAction,
    ) {
        match action {
            // The test fault of a stuck executor: the action stays in flight, so it is
            // neither carried out nor handed out again, and never reported.
            LocalAction::Act { key, package, .. }
                if self.hold_actions.load(std::sync::atomic::Ordering::Relaxed) =>
            {
                tracing::warn!(package = %package, execution = key.0, step = key.1, index = key.2, "test fault: plan action held");
            }
            LocalAction::Act { key, package, what } => {
                self.act(executor, config, key, package, what)
            }
            LocalAction::Launch {
                key,
                launch,
                env,
                limit,
            } => self.spawn_launch(config, key, launch, env, limit),
            LocalAction::Halt { package } => {
                tracing::warn!(package = %package, "runs here but is placed elsewhere: halting");
                if let Some(handle) = executor.remove(&package) {
                    let _ = stop(&package, handle, StopMode::Graceful, &self.name).await;
                }
            }
            LocalAction::Start { package } => self.reconcile_start(executor, config, package).await,
        }
    }

    /// Reconciliation: the view places `package` here and it does not run.
    async fn reconcile_start(
        self: &Arc<Self>,
        executor: &mut Executor,
        config: &Config,
        package: PackageName,
    ) {
        tracing::info!(package = %package, "placed here but not running: starting");
        let instance = executor.instance();
        match self.run_package(config, &package, instance).await {
            Ok((_, handle)) => {
                executor.memory.failed_here.remove(&package);
                executor.insert(package, handle);
            }
            Err(e) => {
                tracing::warn!(package = %package, "restart failed: {e}");
                executor.memory.failed_here.insert(package.clone());
                let event = Event::PackageFailed {
                    package,
                    node: self.name.clone(),
                };
                let _ = self.enqueue(event, "reconcile").await;
            }
        }
    }

    /// A plan action, in a task of its own (named `action`), reported when done. What it
    /// changes in the packages running here goes through the inbox (a start) or was taken
    /// out before it was spawned (a halt).
    fn act(
        self: &Arc<Self>,
        executor: &mut Executor,
        config: &Arc<Config>,
        key: decide::ActionKey,
        package: PackageName,
        what: What,
    ) {
        enum Work {
            Run(u64),
            AlreadyRuns,
            Stop(Option<LocalPackage>, StopMode),
            Swap(Option<mpsc::Sender<ControlMessage>>, NetworkName),
        }
        let work = match what {
            What::Run if executor.local.contains_key(&package) => Work::AlreadyRuns,
            What::Run => {
                // Until the task's `Started` or `StartFailed` comes back (`decide::Memory`).
                let first = executor.memory.starting.insert(package.clone());
                assert!(
                    first,
                    "{package}: a second start while one is under way here"
                );
                Work::Run(executor.instance())
            }
            What::Stop(mode) => Work::Stop(executor.remove(&package), mode),
            What::SwapAdapter(network) => Work::Swap(
                executor.local.get(&package).map(|p| p.control.clone()),
                network,
            ),
        };
        let node = Arc::clone(self);
        let config = Arc::clone(config);
        let action = async move {
            let result = match work {
                Work::AlreadyRuns => Ok(format!("{package} already runs on {}", node.name)),
                Work::Run(instance) => match node.run_package(&config, &package, instance).await {
                    Ok((detail, handle)) => {
                        let _ = node
                            .executor_inbox
                            .send(Inbox::Started(package.clone(), handle))
                            .await;
                        Ok(detail)
                    }
                    Err(e) => {
                        let _ = node
                            .executor_inbox
                            .send(Inbox::StartFailed(package.clone()))
                            .await;
                        Err(e)
                    }
                },
                Work::Stop(Some(handle), mode) => stop(&package, handle, mode, &node.name).await,
                Work::Stop(None, _) => Ok(format!("{package} was not running on {}", node.name)),
                Work::Swap(control, network) => node.swap_adapter(&package, control, network).await,
            };
            let (ok, detail) = match result {
                Ok(d) => (true, d),
                Err(e) => (false, e),
            };
            node.report_action(key, ok, detail).await;
        };
        tokio::spawn(action);
    }

    /// The `swap_adapter` action: the package's supervision task moves its addresses.
    async fn swap_adapter(
        &self,
        package: &PackageName,
        control: Option<mpsc::Sender<ControlMessage>>,
        network: NetworkName,
    ) -> Result<String, String> {
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

    /// Halts every package running here (through the executor, which owns them).
    async fn halt_all(&self, mode: StopMode) {
        let (reply, done) = oneshot::channel();
        if self
            .executor_inbox
            .send(Inbox::HaltAll { mode, reply })
            .await
            .is_ok()
        {
            let _ = done.await;
        }
    }

    /// Stops every local package (daemon shutdown).
    pub async fn stop_all(&self) {
        self.halt_all(StopMode::Graceful).await;
    }

    /// The node's replica stopped on a storage error (issue 15: a node whose disk filled kept
    /// heartbeating and being granted leases with a frozen replica, and a move to it hung
    /// forever). It leaves the cluster as a crashed node would, but cleanly: every local
    /// package is stopped at once (its lease must not outlive what it protects), the guard
    /// forgets them, the watchdog is closed (a reboot repairs no disk), and the error to exit
    /// with is returned. Its heartbeats end with the process, so the others declare it down
    /// and take its packages over once its lease has expired.
    pub async fn leave_on_storage_failure(&self, why: &str) -> anyhow::Error {
        let state_dir = self.run_dir.parent().unwrap_or(&self.run_dir).display();
        tracing::error!(
            node = %self.name,
            "the replicated log stopped: {why}; this node halts its packages and leaves the \
             cluster (check the space and health of {state_dir}, then start it again)"
        );
        self.halt_all(StopMode::Immediate).await;
        self.guard.shutdown();
        self.close_watchdog().await;
        anyhow::anyhow!(
            "the replicated log in {state_dir} stopped: {why}; packages halted, node left the cluster"
        )
    }

    /// `node_fail_fast` (Serviceguard's SERVICE_FAIL_FAST_ENABLED): the node leaves the
    /// cluster at once. Every local package is stopped immediately, the guard is told to
    /// forget them, and the daemon exits; the others take its packages over once its lease
    /// has expired, as for a crash.
    pub(super) async fn fail_fast(&self, why: &str) -> ! {
        tracing::error!(node = %self.name, "FAIL FAST: {why}; this node leaves the cluster now");
        self.halt_all(StopMode::Immediate).await;
        self.guard.shutdown();
        std::process::exit(70);
    }
}
