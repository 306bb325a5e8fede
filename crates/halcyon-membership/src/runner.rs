//! The heartbeat runner: one OS thread that sends, receives and judges.
//!
//! The thread owns the links, the OS clock and the waiting; what it does with a heartbeat
//! (build, seal, open, judge, count, publish) is the private `heartbeat` module, shared with
//! the async driver in [`crate::task`].
//!
//! Invariants:
//! - All heartbeat work happens on the runner's own thread, which asks for `SCHED_FIFO`
//!   priority [`REALTIME_PRIORITY`] and locks the process's memory (`mlockall`); when either is
//!   refused it logs one warning naming the errno and carries on.
//! - The thread never blocks on the daemon: changes go out with `try_send` on the caller's
//!   bounded channel, and wait in a bounded backlog ([`CHANGE_BACKLOG_MAX`] batches) when the
//!   channel is full; the oldest batches are dropped (and counted) beyond that, the status
//!   snapshot staying authoritative.
//! - Every loop iteration is bounded by time: it sleeps at most the shortest heartbeat
//!   interval in play (which follows changes) and never spins. It sleeps until the next
//!   send or the next moment a path could expire ([`crate::Detector::next_expiry`]),
//!   whichever comes first, or until a command (a carrier change, new peers, a stop) wakes
//!   it; not until the next heartbeat: those wait in the links, stamped with their arrival
//!   (the kernel's receive time for UDP, the read for a disk), and are judged by it when the
//!   thread wakes. So a path is judged down at the moment it expires and a carrier loss at
//!   once, and an idle node's thread wakes about once per interval instead of once per
//!   heartbeat of every peer (issue 21: 16 nodes, 150 heartbeats a second received).
//! - Each link sends one heartbeat per period of its network (its interval, or the shorter
//!   period of a switch to a longer interval, as the `heartbeat` module decides); when the
//!   thread falls behind it skips beats rather than bursting them. Sequence numbers increase
//!   with every heartbeat sent. Each link is told the shortest interval in play on its network
//!   when it changes ([`HeartbeatLink::set_interval`]: the disk link's read period).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant, SystemTime};

use halcyon_config::Heartbeat;
use tokio::sync::watch;

use crate::detector::{Change, DetectorConfig, DetectorError, Snapshot};
use crate::heartbeat::{
    self, COMMAND_QUEUE_MAX, Command, Heartbeats, LinkPeers, RECV_PER_STEP_MAX, SendSchedule,
};
use crate::link::{Arrived, ArrivedAt, HeartbeatLink};
use crate::wire::Sealer;

/// `SCHED_FIFO` priority of the heartbeat thread.
pub const REALTIME_PRIORITY: i32 = 10;
/// Change batches kept while the daemon's channel is full.
pub const CHANGE_BACKLOG_MAX: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnerSettings {
    pub cluster_id: u64,
    /// This daemon's incarnation: must increase every time the daemon starts.
    pub incarnation: u64,
    /// `SCHED_FIFO` priority to ask for (`None`: stay at normal priority).
    pub realtime_priority: Option<i32>,
    /// Lock the process's memory with `mlockall(MCL_CURRENT | MCL_FUTURE)`.
    pub lock_memory: bool,
}

impl RunnerSettings {
    /// Real-time priority and locked memory (the daemon's settings).
    pub fn new(cluster_id: u64, incarnation: u64) -> Self {
        RunnerSettings {
            cluster_id,
            incarnation,
            realtime_priority: Some(REALTIME_PRIORITY),
            lock_memory: true,
        }
    }
}

/// Changes of one detector tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeBatch {
    /// Runner time (since the runner started) of the tick.
    pub at: Duration,
    pub changes: Vec<Change>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub sent: u64,
    pub send_errors: u64,
    pub received: u64,
    pub recv_errors: u64,
    pub decode_errors: u64,
    /// Decoded but not accepted by the detector (stale, unknown path, misrouted).
    pub ignored: u64,
    pub change_batches_dropped: u64,
}

/// What `halcyon status` shows, published on a `watch` channel by the runner (or the task).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub detector: Snapshot,
    pub counters: Counters,
}

impl Status {
    /// Whether `self` and `other` judge every node, path and network the same (states,
    /// incarnations, adapter judgements, local links), whatever their times and counters. The
    /// status channel wakes its readers only when this changes, so a reader that waits for
    /// `changed()` is woken by a judgement, not by every step.
    pub fn judged_alike(&self, other: &Status) -> bool {
        let (a, b) = (&self.detector, &other.detector);
        a.nodes == b.nodes
            && a.networks == b.networks
            && a.paths.len() == b.paths.len()
            && a.paths.iter().zip(&b.paths).all(|(x, y)| {
                (x.node, x.network, x.state, x.adapter_down)
                    == (y.node, y.network, y.state, y.adapter_down)
            })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Detector(#[from] DetectorError),
    #[error("link for network {0}, which the detector does not know")]
    UnknownLinkNetwork(u32),
    /// A heartbeat interval the wire cannot announce (receivers would refuse every heartbeat).
    #[error(
        "network {network}: heartbeat interval {interval:?} is outside {}..={} ms",
        crate::wire::INTERVAL_MIN_MS,
        crate::wire::INTERVAL_MAX_MS
    )]
    IntervalOutOfLimits { network: u32, interval: Duration },
    #[error("cannot start the heartbeat thread: {0}")]
    Spawn(#[from] io::Error),
}

/// The heartbeat thread's command queue: a command queued wakes the thread, which sleeps
/// otherwise until its next send or the next moment a path could expire.
#[derive(Clone, Debug)]
struct Commands {
    queue: SyncSender<Command<dyn HeartbeatLink>>,
    thread: Thread,
}

impl Commands {
    /// Queues `command` and wakes the thread. Fails only when the thread is gone or its
    /// queue is full.
    fn send(&self, command: Command<dyn HeartbeatLink>) -> io::Result<()> {
        self.queue.try_send(command).map_err(|e| {
            heartbeat::command_not_queued(matches!(e, TrySendError::Full(_)), "thread")
        })?;
        self.thread.unpark();
        Ok(())
    }
}

/// A running heartbeat thread; stopped (and joined) by [`Runner::stop`] or on drop.
/// Tells the heartbeat thread of local carrier changes, from another thread
/// ([`Runner::links`]).
#[derive(Clone, Debug)]
pub struct LinkControl {
    commands: Commands,
}

impl LinkControl {
    /// The local interface on `network` gained (`up`) or lost its carrier: the thread wakes
    /// and judges it at once. Fails only when the runner is gone or its command queue is
    /// full.
    pub fn local_link(&self, network: u32, up: bool) -> io::Result<()> {
        self.commands.send(Command::LocalLink { network, up })
    }
}

pub struct Runner {
    stop: Arc<AtomicBool>,
    commands: Commands,
    status: watch::Receiver<Status>,
    thread: Option<JoinHandle<()>>,
}

impl Runner {
    /// Start heartbeating on `links`, judging paths as `config` says, publishing changes on
    /// `changes`.
    pub fn start(
        settings: RunnerSettings,
        config: DetectorConfig,
        links: Vec<Box<dyn HeartbeatLink>>,
        sealer: Box<dyn Sealer>,
        changes: SyncSender<ChangeBatch>,
    ) -> Result<Runner, StartError> {
        heartbeat::check_link_networks(&config, links.iter().map(|l| l.network()))?;
        let heartbeats = Heartbeats::new(&settings, &config, sealer)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (status_tx, status) = watch::channel(heartbeats.status(Duration::ZERO));
        let (commands, command_queue) = mpsc::sync_channel(COMMAND_QUEUE_MAX);
        let mut heartbeat = Heartbeater {
            settings,
            heartbeats,
            links,
            arrived: Vec::new(),
            changes,
            commands: command_queue,
            status: status_tx,
        };
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("halcyon-heartbeat".to_owned())
            .spawn(move || heartbeat.run(&thread_stop))?;
        Ok(Runner {
            stop,
            commands: Commands {
                queue: commands,
                thread: thread.thread().clone(),
            },
            status,
            thread: Some(thread),
        })
    }

    /// The latest status (updated at every wake-up of the thread: at least once per
    /// heartbeat interval).
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// A receiver of the status for readers that outlive a borrow of the runner; it is
    /// marked changed only when a judgement changes ([`Status::judged_alike`]).
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Tell the detector that the local interface on `network` gained or lost its carrier
    /// (netlink). Fails only when the runner is gone or its command queue is full.
    pub fn local_link(&self, network: u32, up: bool) -> io::Result<()> {
        self.links().local_link(network, up)
    }

    /// A handle for the thread that reads the kernel's link changes.
    pub fn links(&self) -> LinkControl {
        LinkControl {
            commands: self.commands.clone(),
        }
    }

    /// Heartbeat as `incarnation` from now on (it must be above the current one). Fails only
    /// when the runner is gone or its command queue is full.
    pub fn reincarnate(&self, incarnation: u64) -> io::Result<()> {
        self.commands.send(Command::Reincarnate { incarnation })
    }

    /// From now on `network`'s heartbeat is `heartbeat` (a running cluster's `halcyon
    /// apply`): this node announces and sends at its interval (a longer one after
    /// `heartbeat.sensitivity` more heartbeats at the current period, so peers still judging
    /// by it hear the announcement), and judges the network's paths with its sensitivity
    /// (each by the interval its sender announces). Refused (`InvalidInput`) for a
    /// sensitivity of 0 or an interval outside the wire's limits; fails otherwise only when
    /// the thread is gone or its command queue is full. An unknown network is logged by the
    /// thread.
    pub fn set_heartbeat(&self, network: u32, heartbeat: Heartbeat) -> io::Result<()> {
        self.commands
            .send(heartbeat::heartbeat_command(network, heartbeat)?)
    }

    /// From now on watch `config`'s peers, networks and paths, and heartbeat each network's
    /// peers in `links` (nodes or networks added to or removed from a running cluster): the
    /// links of networks `config` lacks are closed, and `added` (the links of networks new
    /// to this runner) heartbeat from now on. Fails only when the thread is gone or its
    /// command queue is full; a change the detector refuses is logged by the thread.
    pub fn set_peers(
        &self,
        config: DetectorConfig,
        links: LinkPeers,
        added: Vec<Box<dyn HeartbeatLink>>,
    ) -> io::Result<()> {
        self.commands.send(Command::Peers {
            config,
            links,
            added,
        })
    }

    /// False once the heartbeat thread has ended (stopped, or panicked).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stop heartbeating and wait for the thread (woken at once; then the links'
    /// shutdown).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.commands.thread.unpark();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the heartbeat thread panicked");
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Heartbeater {
    settings: RunnerSettings,
    heartbeats: Heartbeats,
    links: Vec<Box<dyn HeartbeatLink>>,
    /// Heartbeats taken in one wake-up (kept to reuse its allocation).
    arrived: Vec<(u32, Arrived)>,
    changes: SyncSender<ChangeBatch>,
    commands: Receiver<Command<dyn HeartbeatLink>>,
    status: watch::Sender<Status>,
}

impl Heartbeater {
    fn run(&mut self, stop: &AtomicBool) {
        if let Some(priority) = self.settings.realtime_priority {
            raise_priority(priority);
        }
        if self.settings.lock_memory {
            lock_memory();
        }
        let epoch = Instant::now();
        let mut schedule = SendSchedule::new(self.links.len());
        // The interval each link was last told (links are made with their network's).
        let mut told: Vec<Duration> = self
            .links
            .iter()
            .map(|l| self.heartbeats.poll_interval(l.network()))
            .collect();
        while !stop.load(Ordering::Acquire) {
            while let Ok(command) = self.commands.try_recv() {
                if let Some(relink) = self.heartbeats.command(command, epoch.elapsed()) {
                    let relinked = self.heartbeats.relink(
                        relink,
                        &mut self.links,
                        |l| l.network(),
                        |l, p| l.set_peers(p),
                    );
                    if relinked {
                        // Every link is due at once and told its interval again.
                        schedule = SendSchedule::new(self.links.len());
                        told = self
                            .links
                            .iter()
                            .map(|l| self.heartbeats.poll_interval(l.network()))
                            .collect();
                    }
                }
            }
            for i in 0..self.links.len() {
                let now = epoch.elapsed();
                let network = self.links[i].network();
                if schedule.due(i, self.heartbeats.send_interval(network), now) {
                    self.send(i, now);
                    schedule.sent(i, self.heartbeats.send_interval(network), now);
                }
            }
            let now = epoch.elapsed();
            self.heartbeats.tick(now, &self.changes, &self.status);
            self.heartbeats.tell_intervals(
                &mut self.links,
                &mut told,
                |l| l.network(),
                |l, interval| l.set_interval(interval),
            );

            // Asleep until the next send or the next moment a path could expire (at most
            // the shortest interval in play), or until a command wakes it (`Commands`):
            // heartbeats that arrive meanwhile wait in the links, stamped with their
            // arrival, and are taken at once when it wakes.
            let longest = self.heartbeats.longest_sleep();
            let until_send = schedule
                .next_due()
                .map_or(longest, |t| t.saturating_sub(now));
            let until_expiry = self
                .heartbeats
                .next_expiry()
                .map_or(longest, |t| t.saturating_sub(now));
            let wait = until_send.min(until_expiry).min(longest);
            if !wait.is_zero() {
                std::thread::park_timeout(wait);
            }
            self.take_arrived(epoch, now);
        }
    }

    fn send(&mut self, link: usize, now: Duration) {
        let network = self.links[link].network();
        let bytes = self.heartbeats.heartbeat(network, now);
        let result = self.links[link].send(&bytes);
        self.heartbeats.sent(network, result, now);
    }

    /// Takes the heartbeats every link holds and gives them to the detector in the order
    /// they arrived, each at its arrival ([`arrival`]): never before `judged` (the last
    /// tick, which the detector has seen) nor after now.
    fn take_arrived(&mut self, epoch: Instant, judged: Duration) {
        let mut arrived = std::mem::take(&mut self.arrived);
        for link in &mut self.links {
            let network = link.network();
            for _ in 0..RECV_PER_STEP_MAX {
                match link.try_recv() {
                    Ok(Some(heartbeat)) => arrived.push((network, heartbeat)),
                    Ok(None) => break,
                    Err(e) => {
                        self.heartbeats.recv_failed(network, &e, epoch.elapsed());
                        break;
                    }
                }
            }
        }
        let (now, wall) = (epoch.elapsed(), SystemTime::now());
        let mut timed: Vec<(Duration, usize)> = arrived
            .iter()
            .enumerate()
            .map(|(i, (_, h))| (arrival(h.at, epoch, judged, now, wall), i))
            .collect();
        timed.sort_unstable();
        for (at, i) in timed {
            let (network, heartbeat) = &arrived[i];
            self.heartbeats.received(*network, &heartbeat.bytes, at);
        }
        arrived.clear();
        self.arrived = arrived;
    }
}

/// When a heartbeat taken at `now` (runner time; `wall` the wall clock read with it)
/// arrived: its link's reading or the kernel's stamp, kept within `judged..=now`. The
/// kernel stamps with the wall clock, so a wall clock stepped between the arrival and
/// `now` moves it, but never out of that window (at most one sleep of the thread, an
/// interval: the error of taking every heartbeat when the thread wakes); nothing earlier
/// than `judged` is given to the detector, which has judged up to then.
fn arrival(
    at: ArrivedAt,
    epoch: Instant,
    judged: Duration,
    now: Duration,
    wall: SystemTime,
) -> Duration {
    let at = match at {
        ArrivedAt::Taken => now,
        ArrivedAt::Read(read) => read.saturating_duration_since(epoch),
        ArrivedAt::Kernel(stamp) => {
            now.saturating_sub(wall.duration_since(stamp).unwrap_or_default())
        }
    };
    assert!(judged <= now, "the runner's clock went back");
    at.clamp(judged, now)
}

/// Ask for `SCHED_FIFO` at `priority` for the calling thread; warn once when refused.
fn raise_priority(priority: i32) {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `param` is a valid sched_param; pthread_self() is the calling thread.
    let rc = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
    if rc != 0 {
        let error = io::Error::from_raw_os_error(rc);
        tracing::warn!(
            "heartbeat thread: could not set SCHED_FIFO priority {priority}: {error} (errno {rc}); heartbeats run at normal priority and may be delayed when the CPUs are saturated (needs CAP_SYS_NICE or RLIMIT_RTPRIO)"
        );
    }
}

/// Lock the process's memory; warn once when refused.
///
/// `MCL_ONFAULT` locks pages as they are touched rather than every mapped page at
/// once: the heartbeat loop touches its code, data and stack every interval, so
/// they stay resident, while stacks and code that are never used (most of a
/// multi-threaded daemon's reservations) cost no memory. Kernels before 4.4 refuse
/// the flag (EINVAL); then everything mapped is locked.
fn lock_memory() {
    // SAFETY: mlockall takes flags only.
    let mut rc =
        unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) };
    if rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // SAFETY: as above.
        rc = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
    }
    if rc != 0 {
        let error = io::Error::last_os_error();
        let errno = error.raw_os_error().unwrap_or(0);
        tracing::warn!(
            "heartbeat thread: could not lock memory with mlockall: {error} (errno {errno}); heartbeat code may be paged out under memory pressure (needs CAP_IPC_LOCK or a larger RLIMIT_MEMLOCK)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// A heartbeat taken when the thread wakes is judged by when it arrived: the kernel's
    /// stamp (the wall clock) counted back from the moment it is taken, the disk link's
    /// read as it is; never before the last tick (the detector judged up to it) nor after
    /// now, whatever the wall clock did meanwhile.
    #[test]
    fn a_heartbeat_is_judged_by_its_arrival_within_the_last_step() {
        let epoch = Instant::now();
        let wall = SystemTime::now();
        let (judged, now) = (ms(1000), ms(1025));
        let kernel = |ago: u64| ArrivedAt::Kernel(wall - ms(ago));
        assert_eq!(arrival(kernel(7), epoch, judged, now, wall), ms(1018));
        assert_eq!(arrival(kernel(0), epoch, judged, now, wall), now);
        assert_eq!(arrival(ArrivedAt::Taken, epoch, judged, now, wall), now);
        // The wall clock stepped forward since it arrived (or it waited since before the
        // last tick): not before the tick.
        assert_eq!(arrival(kernel(60_000), epoch, judged, now, wall), judged);
        // The wall clock stepped back: a stamp in the future is now.
        assert_eq!(
            arrival(
                ArrivedAt::Kernel(wall + ms(5_000)),
                epoch,
                judged,
                now,
                wall
            ),
            now
        );
        let read = |at: u64| ArrivedAt::Read(epoch + ms(at));
        assert_eq!(arrival(read(1010), epoch, judged, now, wall), ms(1010));
        assert_eq!(arrival(read(990), epoch, judged, now, wall), judged);
        assert_eq!(arrival(read(1100), epoch, judged, now, wall), now);
    }
}
