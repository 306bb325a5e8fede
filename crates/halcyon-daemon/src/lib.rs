//! The Halcyon daemon. The CLI that talks to it is the `halcyon` binary's; the types of
//! its API are `halcyon-api`'s.
//!
//! `halcyon daemon --config DIR --node NAME` runs one node: the heartbeat runner
//! (halcyon-membership), openraft (halcyon-consensus) carrying the replicated state
//! (halcyon-state), the coordinator (on the Raft leader: membership -> events -> plans by
//! halcyon-policy -> step barriers), the executor (on every node: runs its actions with
//! halcyon-resources), leases (see `lease`), and the HTTP API (`api`).
//!
//! Invariants:
//! - the node's long-running tasks are spawned here ([`start_on`]; openraft and the heartbeat runner start their own); other spawns
//!   are named where they happen and end with what they serve (a package's supervisor, a
//!   plan action, an event command, a monitor); no decision spawns anything:
//!   `coordinator::decide` and `executor::decide` are pure, and their runtimes act on what
//!   they return;
//! - no task's state is behind a lock: each task owns its state, and tasks talk through
//!   `watch` channels (current values) and `mpsc` queues with closed message enums; the
//!   lease guard's pipe is owned by one thread that runs the callers' requests in order
//!   (`guard`); the only mutexes guard what concurrent request handlers share, never held
//!   across an await: the signed-request replay window and the log rate limits of `auth`
//!   and `raft_tls`;
//! - the replicated state has one writer, the replica (`platform::NodeApplication`), which
//!   publishes every new state as the view the tasks read;
//! - a failover package runs or starts on a node only while that node holds a lease; the
//!   coordinator starts a failed node's packages elsewhere only after `AwaitRelease` has waited
//!   out that node's lease (module `lease` has the timing argument);
//! - a node without a leader confirmed by a quorum commits nothing and starts nothing;
//! - every network call and external command is bounded in time;
//! - every `select!` is `biased`: tokio picks an unbiased branch at random, which orders
//!   timer and channel wake-ups differently from run to run, and the simulator's histories
//!   must repeat for a seed (two packages halted in either order broke it).

/// What a lock taken after a panic says. A thread that panicked while holding a lock may
/// have left what it guards half changed: the taker panics too rather than go on with it
/// (poisoning is never ignored).
pub(crate) const POISONED: &str = "a lock was poisoned: a thread panicked while holding it";

pub mod api;
pub mod archive;
pub mod auth;
pub mod availability;
pub mod client;
pub mod coordinator;
pub mod executor;
pub mod faults;
pub mod guard;
pub mod lease;
pub mod links;
pub mod local_socket;
pub mod metrics;
pub mod node;
pub mod operations;
pub mod page;
pub mod peers;
pub mod platform;
pub mod priority;
pub mod raft_tls;
pub mod reconfigure;
pub mod renewal_watch;
pub mod resident;
pub mod stream;
pub mod views;
pub mod watchdog;
pub mod witness;

use std::sync::Arc;

/// Runs a blocking call (a pipe, a file) without stalling the async runtime's other tasks:
/// on a multi-thread runtime the worker hands its tasks over first; on a current-thread
/// one (the simulator's) it runs in place.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

pub use node::{Node, Settings};

/// Opens a node on `platform` (the host's, or the simulator's), serves its API and starts
/// its long-running tasks; returns once the API listens. No observer runs (what `/metrics`
/// counts and the event stream sends): another task waking on every view would change the
/// simulator's histories; [`run`] starts one.
pub async fn start_on(
    settings: Settings,
    platform: platform::Platform,
) -> anyhow::Result<std::sync::Arc<Node>> {
    start(settings, platform, false).await
}

async fn start(
    settings: Settings,
    platform: platform::Platform,
    observe: bool,
) -> anyhow::Result<std::sync::Arc<Node>> {
    let (node, tasks) = Node::open(settings, platform).await?;
    let me = halcyon_consensus::NodeId::from(node.number);
    let own_api = node
        .peers()
        .api(me)
        .expect("a configured node has API addresses")
        .to_vec();
    let own_internal = node.peers().internal(me).expect("as its API").to_vec();
    let listening = api::serve(Arc::clone(&node), own_api.clone(), own_internal).await?;
    let node::Tasks {
        lease,
        coordinator,
        executor,
        observer,
        webhooks,
        writer,
    } = tasks;
    if observe {
        tokio::spawn(Arc::clone(&node).observer_loop(observer));
        tokio::spawn(webhooks.run(node.name.to_string()));
    }
    tokio::spawn(Arc::clone(&node).writer_loop(writer));
    tokio::spawn(Arc::clone(&node).lease_loop(lease));
    tokio::spawn(Arc::clone(&node).coordinator_loop(coordinator));
    tokio::spawn(Arc::clone(&node).executor_loop(executor));
    tokio::spawn(Arc::clone(&node).report_loop(node::reports::ADAPTERS));
    tokio::spawn(Arc::clone(&node).report_loop(node::reports::STANDBYS));
    tokio::spawn(Arc::clone(&node).raft_timings_loop());
    tokio::spawn(Arc::clone(&node).monitor_loop());
    tokio::spawn(Arc::clone(&node).heartbeat_loop());
    tokio::spawn(Arc::clone(&node).watchdog_loop());
    tokio::spawn(Arc::clone(&node).peers_loop(listening));
    if !node.consensus.is_admitted() {
        tokio::spawn(Arc::clone(&node).admission());
    }
    tokio::spawn(Arc::clone(&node).register());
    tokio::spawn(Arc::clone(&node).report_drift());
    tokio::spawn(archive::keep_events(Arc::clone(&node)));
    tracing::info!(node = %node.name, incarnation = node.incarnation(), api = %own_api[0], "daemon started");
    Ok(node)
}

/// How long after its API listens a daemon unmaps the code its start ran
/// ([`resident::drop_start_code`]): the first election, lease and package starts are over.
const START_SETTLED: std::time::Duration = std::time::Duration::from_secs(10);

/// Unmaps the code the start ran once it has settled, and says how much.
async fn drop_start_code(node: String) {
    tokio::time::sleep(START_SETTLED).await;
    match blocking(resident::drop_start_code) {
        Ok(d) => tracing::info!(
            node = %node,
            "unmapped {} kB of code resident since the start ({} mappings); what runs from now on is mapped again as it runs",
            d.rss_kb,
            d.mappings
        ),
        Err(e) => {
            tracing::warn!(node = %node, "could not unmap the code resident since the start: {e}")
        }
    }
}

/// What a daemon (or the witness) was asked by a signal.
pub(crate) enum Received {
    /// SIGTERM or SIGINT.
    Stop,
    /// SIGHUP: load the credentials again.
    Reload,
}

/// The signals a daemon and the witness wait for.
pub(crate) struct Signals {
    term: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal received.
    pub(crate) async fn next(&mut self) -> Received {
        tokio::select! {
            biased;
            _ = tokio::signal::ctrl_c() => Received::Stop,
            _ = self.term.recv() => Received::Stop,
            _ = self.hangup.recv() => Received::Reload,
        }
    }
}

/// Runs a daemon until SIGTERM or SIGINT, then halts its packages; SIGHUP reloads its
/// credentials (`Node::reload_credentials`). When the node's replica
/// stops on a storage error (a full disk, an I/O error), the node leaves the cluster instead:
/// see [`Node::leave_on_storage_failure`].
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    run_then(settings, |_| {}).await
}

/// [`run`], calling `started` with the node once its API listens (systemd's readiness
/// watches it in-process: the API would want a token).
pub async fn run_then(settings: Settings, started: impl FnOnce(Arc<Node>)) -> anyhow::Result<()> {
    let node = start(settings, platform::Platform::host(), true).await?;
    tokio::spawn(drop_start_code(node.name.to_string()));
    let socket = node
        .api_socket
        .clone()
        .and_then(|path| local_socket::identity(&path).map(|identity| (path, identity)));
    started(Arc::clone(&node));
    let mut signals = Signals::new()?;
    loop {
        tokio::select! {
            biased;
            why = node.consensus.failed() => return Err(node.leave_on_storage_failure(&why).await),
            signal = signals.next() => match signal {
                Received::Stop => break,
                // The outcome is logged and shown by status; a refusal changes nothing.
                Received::Reload => drop(node.reload_credentials()),
            },
        }
    }
    tracing::info!(node = %node.name, "stopping: halting local packages");
    node.stop_all().await;
    // The next start applies at least what is committed now (its addresses among it).
    if let Err(e) = node.consensus.persist_committed() {
        tracing::warn!(node = %node.name, "the committed log id is not made durable: {e}");
    }
    node.guard.shutdown();
    node.close_watchdog().await;
    if let Some((path, identity)) = socket {
        local_socket::remove_if_ours(&path, identity);
    }
    match node.record_clean_stop() {
        Ok(()) => {
            tracing::info!(node = %node.name, incarnation = node.incarnation(), "stopped cleanly")
        }
        Err(e) => {
            tracing::warn!(node = %node.name, "the clean stop is not recorded (the next start reports it as not clean): {e}")
        }
    }
    Ok(())
}
