//! The async heartbeat driver, for the deterministic simulator (turmoil: one current-thread
//! tokio runtime per host, time paused and advanced by the simulation).
//!
//! It does what the heartbeat thread in [`crate::runner`] does, with the same code for every
//! heartbeat (the private `heartbeat` module: building, sealing, opening, routing, judging,
//! counting, publishing): one heartbeat per link per period of its network (its interval, or
//! the shorter period of a switch to a longer interval), skipping beats rather than bursting
//! them when behind; received heartbeats go to the detector; the detector ticks once per step
//! (a fraction of the shortest interval in play, which follows changes) and the [`Status`] is
//! published after every tick; changes are logged and sent as [`ChangeBatch`]es; each link is
//! told the shortest interval in play on its network when it changes
//! ([`AsyncHeartbeatLink::set_interval`]).
//!
//! Invariants:
//! - Time comes only from tokio ([`tokio::time::Instant`], [`tokio::time::sleep_until`]), so
//!   simulated time drives it; the epoch (time zero of the detector and of every
//!   [`ChangeBatch::at`]) is the instant [`HeartbeatTask::run`] is first polled.
//! - Deterministic: every `select!` is `biased` (timers, then commands, then links in their
//!   order), nothing iterates a hash map, nothing reads randomness.
//! - Never blocks on the daemon: changes go out with `try_send` and wait in the shared bounded
//!   backlog while the channel is full (the oldest are dropped and counted beyond it).
//! - Bounded: at most `RECV_PER_STEP_MAX` (512) heartbeats are taken from one link per step, and a
//!   link whose `recv` failed is not polled again before the next step, so a flooding or
//!   failing link neither starves the timers nor spins.
//! - Spawns nothing, starts no thread, and ignores [`RunnerSettings::realtime_priority`] and
//!   [`RunnerSettings::lock_memory`] (there is no thread of its own to raise or memory to lock
//!   for a task on someone else's runtime).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use halcyon_config::Heartbeat;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::detector::DetectorConfig;
use crate::heartbeat::{
    self, COMMAND_QUEUE_MAX, Command, Heartbeats, LinkPeers, RECV_PER_STEP_MAX, SendSchedule,
};
use crate::runner::{ChangeBatch, RunnerSettings, StartError, Status};
use crate::wire::Sealer;

/// What [`AsyncHeartbeatLink::recv`] returns.
pub type RecvFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<u8>>> + Send + 'a>>;
/// What [`AsyncHeartbeatLink::send`] returns.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = io::Result<()>> + Send + 'a>>;

/// One network's heartbeat transport for the async driver (a simulated socket or disk).
pub trait AsyncHeartbeatLink: Send {
    /// The network this link carries.
    fn network(&self) -> u32;
    /// Send one sealed heartbeat to every peer on this network. Should not wait longer than a
    /// local socket write: the driver awaits it before anything else.
    fn send<'a>(&'a mut self, bytes: &'a [u8]) -> SendFuture<'a>;
    /// The next sealed heartbeat from a peer, waiting as long as it takes.
    ///
    /// Must be cancel-safe: the driver drops this future whenever a timer or another link is
    /// ready first, and dropping it must lose nothing it has not returned.
    fn recv(&mut self) -> RecvFuture<'_>;
    /// From now on heartbeat `peers` (node number, address) instead of those it was made
    /// with; a link that cannot says so and keeps its peers.
    fn set_peers(&mut self, peers: Vec<crate::LinkPeer>) -> io::Result<()> {
        let _ = peers;
        Err(crate::link::peers_fixed(self.network()))
    }
    /// The shortest heartbeat interval in play on this network changed to `interval`: a link
    /// that polls for heartbeats (a simulated disk) polls often enough for it from now on; one
    /// handed heartbeats as they arrive has nothing to do.
    fn set_interval(&mut self, interval: Duration) {
        let _ = interval;
    }
}

/// A validated heartbeat driver, not yet running: [`HeartbeatTask::new`] checks what
/// [`crate::Runner::start`] checks, [`HeartbeatTask::run`] is the future that heartbeats.
///
/// ```ignore
/// let task = HeartbeatTask::new(settings, config, links, Box::new(Plain), status, Some(changes))?;
/// let control = task.control(); // Local carrier changes, as netlink would report them.
/// match task.run().await {} // Runs until dropped.
/// ```
pub struct HeartbeatTask {
    heartbeats: Heartbeats,
    links: Vec<Box<dyn AsyncHeartbeatLink>>,
    status: watch::Sender<Status>,
    changes: Option<mpsc::Sender<ChangeBatch>>,
    commands: mpsc::Receiver<Command<dyn AsyncHeartbeatLink>>,
    control: HeartbeatControl,
}

/// Tells a [`HeartbeatTask`] what the node's netlink would tell the thread runner.
#[derive(Clone, Debug)]
pub struct HeartbeatControl {
    commands: mpsc::Sender<Command<dyn AsyncHeartbeatLink>>,
}

impl HeartbeatControl {
    /// The local interface on `network` gained or lost its carrier. Fails only when the task
    /// is gone or its command queue is full.
    pub fn local_link(&self, network: u32, up: bool) -> io::Result<()> {
        self.commands
            .try_send(Command::LocalLink { network, up })
            .map_err(|e| {
                let full = matches!(e, mpsc::error::TrySendError::Full(_));
                heartbeat::command_not_queued(full, "task")
            })
    }

    /// Heartbeat as `incarnation` from now on (it must be above the current one).
    pub fn reincarnate(&self, incarnation: u64) -> io::Result<()> {
        self.commands
            .try_send(Command::Reincarnate { incarnation })
            .map_err(|e| {
                let full = matches!(e, mpsc::error::TrySendError::Full(_));
                heartbeat::command_not_queued(full, "task")
            })
    }

    /// From now on watch `config`'s peers, networks and paths, heartbeat each network's
    /// peers in `links`, close the links of networks `config` lacks and heartbeat on `added`
    /// (the links of networks new to this task), as [`crate::Runner::set_peers`] does.
    pub fn set_peers(
        &self,
        config: DetectorConfig,
        links: LinkPeers,
        added: Vec<Box<dyn AsyncHeartbeatLink>>,
    ) -> io::Result<()> {
        self.commands
            .try_send(Command::Peers {
                config,
                links,
                added,
            })
            .map_err(|e| {
                let full = matches!(e, mpsc::error::TrySendError::Full(_));
                heartbeat::command_not_queued(full, "task")
            })
    }

    /// From now on `network`'s heartbeat is `heartbeat`, as [`crate::Runner::set_heartbeat`]
    /// does it: refused (`InvalidInput`) for a sensitivity of 0 or an interval outside the
    /// wire's limits; fails otherwise only when the task is gone or its command queue is full.
    pub fn set_heartbeat(&self, network: u32, heartbeat: Heartbeat) -> io::Result<()> {
        self.commands
            .try_send(heartbeat::heartbeat_command(network, heartbeat)?)
            .map_err(|e| {
                let full = matches!(e, mpsc::error::TrySendError::Full(_));
                heartbeat::command_not_queued(full, "task")
            })
    }
}

impl HeartbeatTask {
    /// Check `config` and the links' networks as [`crate::Runner::start`] does, and publish
    /// the initial status into `status`. `changes: None`: changes are only logged.
    pub fn new(
        settings: RunnerSettings,
        config: DetectorConfig,
        links: Vec<Box<dyn AsyncHeartbeatLink>>,
        sealer: Box<dyn Sealer>,
        status: watch::Sender<Status>,
        changes: Option<mpsc::Sender<ChangeBatch>>,
    ) -> Result<HeartbeatTask, StartError> {
        heartbeat::check_link_networks(&config, links.iter().map(|l| l.network()))?;
        let heartbeats = Heartbeats::new(&settings, &config, sealer)?;
        status.send_replace(heartbeats.status(Duration::ZERO));
        let (commands, command_queue) = mpsc::channel(COMMAND_QUEUE_MAX);
        Ok(HeartbeatTask {
            heartbeats,
            links,
            status,
            changes,
            commands: command_queue,
            control: HeartbeatControl { commands },
        })
    }

    /// A handle for local link changes; take it before [`HeartbeatTask::run`].
    pub fn control(&self) -> HeartbeatControl {
        self.control.clone()
    }

    /// The loop step at start: the detector ticks and the status is published at least this
    /// often while the intervals are those of the start (it follows them when they change).
    pub fn step(&self) -> Duration {
        self.heartbeats.step()
    }

    /// Heartbeat until dropped (it never returns).
    pub async fn run(self) -> Infallible {
        let HeartbeatTask {
            mut heartbeats,
            mut links,
            status,
            changes,
            mut commands,
            control,
        } = self;
        drop(control); // Only the handles taken keep the command queue open.
        let mut networks: Vec<u32> = links.iter().map(|l| l.network()).collect();
        let epoch = Instant::now();
        let mut schedule = SendSchedule::new(links.len());
        // The interval each link was last told (links are made with their network's).
        let mut told: Vec<Duration> = networks
            .iter()
            .map(|&n| heartbeats.poll_interval(n))
            .collect();
        let mut next_tick = Duration::ZERO;
        // Heartbeats each link may still deliver before the next tick.
        let mut budget = vec![RECV_PER_STEP_MAX; links.len()];
        let mut commands_open = true;
        loop {
            for i in 0..links.len() {
                let now = epoch.elapsed();
                if schedule.due(i, heartbeats.send_interval(networks[i]), now) {
                    let bytes = heartbeats.heartbeat(networks[i], now);
                    let result = links[i].send(&bytes).await;
                    heartbeats.sent(networks[i], result, now);
                    schedule.sent(i, heartbeats.send_interval(networks[i]), now);
                }
            }
            let now = epoch.elapsed();
            if now >= next_tick {
                heartbeats.tick(now, &changes, &status);
                next_tick = now + heartbeats.step();
                budget.fill(RECV_PER_STEP_MAX);
                heartbeats.tell_intervals(
                    &mut links,
                    &mut told,
                    |l| l.network(),
                    |l, interval| l.set_interval(interval),
                );
            }
            let wake = schedule.next_due().map_or(next_tick, |t| t.min(next_tick));
            let mut relink = None;
            tokio::select! {
                biased;
                () = tokio::time::sleep_until(epoch + wake) => {}
                command = commands.recv(), if commands_open => match command {
                    Some(command) => relink = heartbeats.command(command, epoch.elapsed()),
                    None => commands_open = false,
                },
                (i, received) = recv_any(&mut links, &budget) => match received {
                    Ok(bytes) => {
                        heartbeats.received(networks[i], &bytes, epoch.elapsed());
                        budget[i] -= 1;
                    }
                    Err(e) => {
                        heartbeats.recv_failed(networks[i], &e, epoch.elapsed());
                        budget[i] = 0;
                    }
                },
            }
            if let Some(relink) = relink
                && heartbeats.relink(relink, &mut links, |l| l.network(), |l, p| l.set_peers(p))
            {
                // Every link is due at once, told its interval again and given its budget.
                networks = links.iter().map(|l| l.network()).collect();
                schedule = SendSchedule::new(links.len());
                told = networks
                    .iter()
                    .map(|&n| heartbeats.poll_interval(n))
                    .collect();
                budget = vec![RECV_PER_STEP_MAX; links.len()];
            }
        }
    }
}

/// The first heartbeat (or error) of any link with budget left, links polled in order.
fn recv_any<'a>(
    links: &'a mut [Box<dyn AsyncHeartbeatLink>],
    budget: &[usize],
) -> impl Future<Output = (usize, io::Result<Vec<u8>>)> + use<'a> {
    let mut receiving: Vec<(usize, RecvFuture<'a>)> = links
        .iter_mut()
        .enumerate()
        .filter(|&(i, _)| budget[i] > 0)
        .map(|(i, link)| (i, link.recv()))
        .collect();
    std::future::poll_fn(move |cx| {
        for (i, recv) in &mut receiving {
            if let Poll::Ready(received) = recv.as_mut().poll(cx) {
                return Poll::Ready((*i, received));
            }
        }
        Poll::Pending
    })
}

#[cfg(test)]
mod tests;
