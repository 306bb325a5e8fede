//! The heartbeat runner: one OS thread that sends, receives and judges.
//!
//! Invariants:
//! - All heartbeat work happens on the runner's own thread, which asks for `SCHED_FIFO`
//!   priority [`REALTIME_PRIORITY`] and locks the process's memory (`mlockall`); when either is
//!   refused it logs one warning naming the errno and carries on.
//! - The thread never blocks on the daemon: changes go out with `try_send` on the caller's
//!   bounded channel, and wait in a bounded backlog ([`CHANGE_BACKLOG_MAX`] batches) when the
//!   channel is full; the oldest batches are dropped (and counted) beyond that, the status
//!   snapshot staying authoritative.
//! - Every loop iteration is bounded by time: it waits at most one step (a fraction of the
//!   shortest heartbeat interval) in the links' `recv` timeouts, never spins, and sees the stop
//!   flag at least once per step.
//! - Each link sends one heartbeat per interval of its network; when the thread falls behind it
//!   skips beats rather than bursting them. Sequence numbers increase with every heartbeat sent.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::detector::{Change, Detector, DetectorConfig, DetectorError, Heard, Snapshot};
use crate::link::HeartbeatLink;
use crate::wire::{self, HeartbeatMessage, Sealer};

/// `SCHED_FIFO` priority of the heartbeat thread.
pub const REALTIME_PRIORITY: i32 = 10;
/// Change batches kept while the daemon's channel is full.
pub const CHANGE_BACKLOG_MAX: usize = 1024;
/// Loop steps per (shortest) heartbeat interval, and bounds on a step.
const STEPS_PER_INTERVAL: u32 = 4;
const STEP_MIN: Duration = Duration::from_millis(1);
const STEP_MAX: Duration = Duration::from_millis(50);
/// Most heartbeats taken from one link in one step.
const RECV_PER_STEP_MAX: usize = 512;
/// Pending local-link commands.
const COMMAND_QUEUE_MAX: usize = 64;
/// At most one warning of each kind per period.
const WARN_PERIOD: Duration = Duration::from_secs(10);

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

/// What `halcyon status` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub detector: Snapshot,
    pub counters: Counters,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Detector(#[from] DetectorError),
    #[error("link for network {0}, which the detector does not know")]
    UnknownLinkNetwork(u32),
    #[error("cannot start the heartbeat thread: {0}")]
    Spawn(#[from] io::Error),
}

enum Command {
    LocalLink { network: u32, up: bool },
}

/// A running heartbeat thread; stopped (and joined) by [`Runner::stop`] or on drop.
pub struct Runner {
    stop: Arc<AtomicBool>,
    commands: SyncSender<Command>,
    status: Arc<Mutex<Status>>,
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
        let detector = Detector::new(&config, Duration::ZERO)?;
        let mut intervals = Vec::with_capacity(links.len());
        for link in &links {
            let heartbeat = config
                .heartbeat(link.network())
                .ok_or(StartError::UnknownLinkNetwork(link.network()))?;
            intervals.push(heartbeat.interval);
        }
        let shortest = config
            .networks
            .iter()
            .map(|n| n.heartbeat.interval)
            .min()
            .unwrap_or(STEP_MAX);
        let stop = Arc::new(AtomicBool::new(false));
        let status = Arc::new(Mutex::new(Status {
            detector: detector.snapshot(Duration::ZERO),
            counters: Counters::default(),
        }));
        let (commands, command_queue) = mpsc::sync_channel(COMMAND_QUEUE_MAX);
        let mut heartbeat = Heartbeater {
            settings,
            local_node: config.local_node,
            detector,
            links,
            intervals,
            sealer,
            step: (shortest / STEPS_PER_INTERVAL).clamp(STEP_MIN, STEP_MAX),
            changes,
            backlog: VecDeque::new(),
            commands: command_queue,
            status: Arc::clone(&status),
            counters: Counters::default(),
            seq: 0,
            warned: [None; Warning::COUNT],
        };
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("halcyon-heartbeat".to_owned())
            .spawn(move || heartbeat.run(&thread_stop))?;
        Ok(Runner {
            stop,
            commands,
            status,
            thread: Some(thread),
        })
    }

    /// The latest status (updated every step).
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A handle to the status for readers that outlive a borrow of the runner.
    pub fn status_handle(&self) -> Arc<Mutex<Status>> {
        Arc::clone(&self.status)
    }

    /// Tell the detector that the local interface on `network` gained or lost its carrier
    /// (netlink). Fails only when the runner is gone or its command queue is full.
    pub fn local_link(&self, network: u32, up: bool) -> io::Result<()> {
        self.commands
            .try_send(Command::LocalLink { network, up })
            .map_err(|e| match e {
                TrySendError::Full(_) => {
                    io::Error::new(io::ErrorKind::WouldBlock, "heartbeat command queue full")
                }
                TrySendError::Disconnected(_) => io::Error::other("heartbeat thread has stopped"),
            })
    }

    /// False once the heartbeat thread has ended (stopped, or panicked).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stop heartbeating and wait for the thread (at most about one step plus the links'
    /// shutdown).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
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

#[derive(Clone, Copy)]
enum Warning {
    Send,
    Recv,
    Decode,
    Backlog,
    Disconnected,
}

impl Warning {
    const COUNT: usize = 5;
}

struct Heartbeater {
    settings: RunnerSettings,
    local_node: u32,
    detector: Detector,
    links: Vec<Box<dyn HeartbeatLink>>,
    /// Heartbeat interval of each link's network.
    intervals: Vec<Duration>,
    sealer: Box<dyn Sealer>,
    step: Duration,
    changes: SyncSender<ChangeBatch>,
    backlog: VecDeque<ChangeBatch>,
    commands: Receiver<Command>,
    status: Arc<Mutex<Status>>,
    counters: Counters,
    seq: u64,
    warned: [Option<Instant>; Warning::COUNT],
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
        let mut next_send = vec![Duration::ZERO; self.links.len()];
        while !stop.load(Ordering::Acquire) {
            while let Ok(Command::LocalLink { network, up }) = self.commands.try_recv() {
                if let Err(e) = self.detector.local_link(epoch.elapsed(), network, up) {
                    tracing::error!("local link change ignored: {e}");
                }
            }
            for (i, next) in next_send.iter_mut().enumerate() {
                let now = epoch.elapsed();
                if now >= *next {
                    self.send(i, now);
                    let after = *next + self.intervals[i];
                    *next = if after <= now {
                        now + self.intervals[i]
                    } else {
                        after
                    };
                }
            }
            let now = epoch.elapsed();
            let changes = self.detector.tick(now);
            self.publish(now, changes);
            *self.status.lock().unwrap_or_else(|e| e.into_inner()) = Status {
                detector: self.detector.snapshot(now),
                counters: self.counters,
            };

            let until_send = next_send
                .iter()
                .min()
                .map_or(self.step, |&t| t.saturating_sub(now));
            let wait = until_send.min(self.step);
            if self.links.is_empty() {
                std::thread::sleep(wait);
            }
            let slice = wait / self.links.len().max(1) as u32;
            for i in 0..self.links.len() {
                self.receive(i, slice, epoch);
            }
        }
    }

    fn send(&mut self, link: usize, now: Duration) {
        self.seq += 1;
        let message = HeartbeatMessage {
            cluster_id: self.settings.cluster_id,
            node: self.local_node,
            incarnation: self.settings.incarnation,
            network: self.links[link].network(),
            seq: self.seq,
            send_time_ms: now.as_millis() as u64,
        };
        let bytes = wire::encode(&message, self.sealer.as_ref());
        match self.links[link].send(&bytes) {
            Ok(()) => self.counters.sent += 1,
            Err(e) => {
                self.counters.send_errors += 1;
                if self.should_warn(Warning::Send) {
                    tracing::warn!(network = message.network, "heartbeat send failed: {e}");
                }
            }
        }
    }

    fn receive(&mut self, link: usize, timeout: Duration, epoch: Instant) {
        let network = self.links[link].network();
        let mut timeout = timeout;
        for _ in 0..RECV_PER_STEP_MAX {
            let bytes = match self.links[link].recv(timeout) {
                Ok(Some(bytes)) => bytes,
                Ok(None) => return,
                Err(e) => {
                    self.counters.recv_errors += 1;
                    if self.should_warn(Warning::Recv) {
                        tracing::warn!(network, "heartbeat receive failed: {e}");
                    }
                    return;
                }
            };
            timeout = Duration::ZERO; // Drain what is there, then move on to the next link.
            self.counters.received += 1;
            let message = match wire::decode(&bytes, self.settings.cluster_id, self.sealer.as_ref())
            {
                Ok(message) => message,
                Err(e) => {
                    self.counters.decode_errors += 1;
                    if self.should_warn(Warning::Decode) {
                        tracing::warn!(network, "heartbeat dropped: {e}");
                    }
                    continue;
                }
            };
            if message.network != network {
                self.counters.ignored += 1; // Misrouted: it says another network.
                continue;
            }
            let heard = self.detector.heard(
                epoch.elapsed(),
                message.node,
                message.network,
                message.incarnation,
                message.seq,
            );
            if heard != Heard::Accepted {
                self.counters.ignored += 1;
            }
        }
    }

    fn publish(&mut self, at: Duration, changes: Vec<Change>) {
        if !changes.is_empty() {
            for change in &changes {
                tracing::info!(?change, "membership change");
            }
            if self.backlog.len() == CHANGE_BACKLOG_MAX {
                self.backlog.pop_front();
                self.counters.change_batches_dropped += 1;
                if self.should_warn(Warning::Backlog) {
                    tracing::warn!("membership changes dropped: the daemon is not reading them");
                }
            }
            self.backlog.push_back(ChangeBatch { at, changes });
        }
        while let Some(batch) = self.backlog.pop_front() {
            match self.changes.try_send(batch) {
                Ok(()) => {}
                Err(TrySendError::Full(batch)) => {
                    self.backlog.push_front(batch);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.backlog.clear();
                    if self.should_warn(Warning::Disconnected) {
                        tracing::warn!("membership changes have no reader; heartbeats continue");
                    }
                    return;
                }
            }
        }
    }

    fn should_warn(&mut self, warning: Warning) -> bool {
        let last = &mut self.warned[warning as usize];
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < WARN_PERIOD) {
            return false;
        }
        *last = Some(now);
        true
    }
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
