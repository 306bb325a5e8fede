//! What the heartbeat thread ([`crate::runner`]) and the heartbeat task ([`crate::task`]) share:
//! the one implementation of building, sealing, opening and judging heartbeats, of the
//! counters, of rate-limited warnings, and of publishing changes and the status.
//!
//! Invariants:
//! - No I/O, no clock reads, no waiting: the drivers own the links, the clock and the waits,
//!   and pass the time (since the driver started) into every call, so the thread (OS clock)
//!   and the task (tokio's clock, simulated in a simulator) run the same code.
//! - Changes never wait for the daemon: they go out with a non-blocking send, and wait in a
//!   bounded backlog ([`CHANGE_BACKLOG_MAX`] batches) while the channel is full; beyond that
//!   the oldest batches are dropped and counted, the status snapshot staying authoritative.
//! - Sequence numbers increase with every heartbeat built, across all links.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;

use crate::detector::{Detector, DetectorConfig, Heard};
use crate::runner::{
    CHANGE_BACKLOG_MAX, ChangeBatch, Counters, RunnerSettings, StartError, Status,
};
use crate::wire::{self, HeartbeatMessage, Sealer};

/// Loop steps per (shortest) heartbeat interval, and bounds on a step.
const STEPS_PER_INTERVAL: u32 = 4;
const STEP_MIN: Duration = Duration::from_millis(1);
const STEP_MAX: Duration = Duration::from_millis(50);
/// Most heartbeats taken from one link in one step.
pub(crate) const RECV_PER_STEP_MAX: usize = 512;
/// Pending local-link commands.
pub(crate) const COMMAND_QUEUE_MAX: usize = 64;
/// At most one warning of each kind per period.
const WARN_PERIOD: Duration = Duration::from_secs(10);

/// What a driver's control handle asks of its loop.
#[derive(Debug)]
pub(crate) enum Command {
    LocalLink {
        network: u32,
        up: bool,
    },
    /// From now on this node heartbeats as `incarnation` (above its current one): a node
    /// whose state directory was wiped learned from the cluster that its old incarnation
    /// was higher.
    Reincarnate {
        incarnation: u64,
    },
    /// From now on a path on `network` is down after `sensitivity` missed heartbeats.
    Sensitivity {
        network: u32,
        sensitivity: u32,
    },
    /// From now on the detector watches `config`'s peers and paths, and the link of each
    /// network in `links` heartbeats those peers: nodes were added to or removed from a
    /// running cluster.
    Peers {
        config: DetectorConfig,
        links: LinkPeers,
    },
}

/// The peers each network's link heartbeats, by network number.
pub type LinkPeers = BTreeMap<u32, Vec<LinkPeer>>;

/// A peer a link heartbeats: its node number, and its address on an ip network (none on a
/// disk network, where the node's slot is its number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkPeer {
    pub node: u32,
    pub address: Option<SocketAddr>,
}

/// The command that sets a network's sensitivity, refused for 0 (every path would be down).
pub(crate) fn sensitivity_command(network: u32, sensitivity: u32) -> io::Result<Command> {
    if sensitivity == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a sensitivity of 0 declares every path down",
        ));
    }
    Ok(Command::Sensitivity {
        network,
        sensitivity,
    })
}

/// The error a control handle returns when its command cannot be queued (`driver`: "thread"
/// or "task").
pub(crate) fn command_not_queued(queue_full: bool, driver: &str) -> io::Error {
    if queue_full {
        io::Error::new(io::ErrorKind::WouldBlock, "heartbeat command queue full")
    } else {
        io::Error::other(format!("heartbeat {driver} has stopped"))
    }
}

/// How long a driver waits at most between two ticks: a fraction of the shortest heartbeat
/// interval, within [`STEP_MIN`]..=[`STEP_MAX`].
pub(crate) fn step(config: &DetectorConfig) -> Duration {
    let shortest = config
        .networks
        .iter()
        .map(|n| n.heartbeat.interval)
        .min()
        .unwrap_or(STEP_MAX);
    (shortest / STEPS_PER_INTERVAL).clamp(STEP_MIN, STEP_MAX)
}

/// The heartbeat interval of each link's network (`networks`: the network of each link).
pub(crate) fn link_intervals(
    config: &DetectorConfig,
    networks: impl IntoIterator<Item = u32>,
) -> Result<Vec<Duration>, StartError> {
    networks
        .into_iter()
        .map(|network| {
            config
                .heartbeat(network)
                .map(|heartbeat| heartbeat.interval)
                .ok_or(StartError::UnknownLinkNetwork(network))
        })
        .collect()
}

/// When a link that was due at `due` and sent at `now` sends next: one interval after `due`,
/// or, when the driver fell behind by a whole interval, one interval after `now` (beats are
/// skipped, never burst).
pub(crate) fn next_send(due: Duration, interval: Duration, now: Duration) -> Duration {
    let after = due + interval;
    if after <= now { now + interval } else { after }
}

/// Where a driver's change batches go.
pub(crate) trait ChangeSink {
    fn try_send(&self, batch: ChangeBatch) -> Result<(), Rejected>;
}

pub(crate) enum Rejected {
    /// The channel is full: the batch comes back, to wait in the backlog.
    Full(ChangeBatch),
    /// Nobody reads the channel any more.
    Disconnected,
}

impl ChangeSink for std::sync::mpsc::SyncSender<ChangeBatch> {
    fn try_send(&self, batch: ChangeBatch) -> Result<(), Rejected> {
        use std::sync::mpsc::TrySendError;
        std::sync::mpsc::SyncSender::try_send(self, batch).map_err(|e| match e {
            TrySendError::Full(batch) => Rejected::Full(batch),
            TrySendError::Disconnected(_) => Rejected::Disconnected,
        })
    }
}

impl ChangeSink for tokio::sync::mpsc::Sender<ChangeBatch> {
    fn try_send(&self, batch: ChangeBatch) -> Result<(), Rejected> {
        use tokio::sync::mpsc::error::TrySendError;
        tokio::sync::mpsc::Sender::try_send(self, batch).map_err(|e| match e {
            TrySendError::Full(batch) => Rejected::Full(batch),
            TrySendError::Closed(_) => Rejected::Disconnected,
        })
    }
}

/// No channel: changes are only logged.
impl<S: ChangeSink> ChangeSink for Option<S> {
    fn try_send(&self, batch: ChangeBatch) -> Result<(), Rejected> {
        match self {
            Some(sink) => sink.try_send(batch),
            None => Ok(()),
        }
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

/// The heartbeat state of one node: the detector, what it has sent and counted, and the
/// changes not yet taken by the daemon.
pub(crate) struct Heartbeats {
    cluster_id: u64,
    incarnation: u64,
    local_node: u32,
    detector: Detector,
    sealer: Box<dyn Sealer>,
    counters: Counters,
    seq: u64,
    backlog: VecDeque<ChangeBatch>,
    /// Driver time each kind of warning was last logged.
    warned: [Option<Duration>; Warning::COUNT],
}

impl Heartbeats {
    /// Started at driver time zero.
    pub(crate) fn new(
        settings: &RunnerSettings,
        config: &DetectorConfig,
        sealer: Box<dyn Sealer>,
    ) -> Result<Self, StartError> {
        Ok(Heartbeats {
            cluster_id: settings.cluster_id,
            incarnation: settings.incarnation,
            local_node: config.local_node,
            detector: Detector::new(config, Duration::ZERO)?,
            sealer,
            counters: Counters::default(),
            seq: 0,
            backlog: VecDeque::new(),
            warned: [None; Warning::COUNT],
        })
    }

    pub(crate) fn status(&self, now: Duration) -> Status {
        Status {
            detector: self.detector.snapshot(now),
            counters: self.counters,
        }
    }

    /// The sealed bytes of the next heartbeat on `network`.
    pub(crate) fn heartbeat(&mut self, network: u32, now: Duration) -> Vec<u8> {
        self.seq += 1;
        let message = HeartbeatMessage {
            cluster_id: self.cluster_id,
            node: self.local_node,
            incarnation: self.incarnation,
            network,
            seq: self.seq,
            send_time_ms: now.as_millis() as u64,
        };
        wire::encode(&message, self.sealer.as_ref())
    }

    /// Count the outcome of sending a [`Heartbeats::heartbeat`] on `network`.
    pub(crate) fn sent(&mut self, network: u32, result: io::Result<()>, now: Duration) {
        match result {
            Ok(()) => self.counters.sent += 1,
            Err(e) => {
                self.counters.send_errors += 1;
                if self.should_warn(Warning::Send, now) {
                    tracing::warn!(network, "heartbeat send failed: {e}");
                }
            }
        }
    }

    /// A link's receive failed.
    pub(crate) fn recv_failed(&mut self, network: u32, error: &io::Error, now: Duration) {
        self.counters.recv_errors += 1;
        if self.should_warn(Warning::Recv, now) {
            tracing::warn!(network, "heartbeat receive failed: {error}");
        }
    }

    /// Sealed bytes arrived on the link of `network`: open, decode, check the network it
    /// says, and give it to the detector.
    pub(crate) fn received(&mut self, network: u32, bytes: &[u8], now: Duration) {
        self.counters.received += 1;
        let message = match wire::decode(bytes, self.cluster_id, self.sealer.as_ref()) {
            Ok(message) => message,
            Err(e) => {
                self.counters.decode_errors += 1;
                if self.should_warn(Warning::Decode, now) {
                    tracing::warn!(network, "heartbeat dropped: {e}");
                }
                return;
            }
        };
        if message.network != network {
            self.counters.ignored += 1; // Misrouted: it says another network.
            return;
        }
        let heard = self.detector.heard(
            now,
            message.node,
            message.network,
            message.incarnation,
            message.seq,
        );
        if heard != Heard::Accepted {
            self.counters.ignored += 1;
        }
    }

    /// Carries out `command`; returns the peers the driver's links heartbeat from now on
    /// when it changed them ([`Command::Peers`], once the detector took the new peers).
    pub(crate) fn command(&mut self, command: Command, now: Duration) -> Option<LinkPeers> {
        match command {
            Command::Peers { config, links } => {
                return match self.detector.set_peers(now, &config) {
                    Ok(()) => {
                        tracing::info!(peers = ?config.peers, "heartbeat peers changed");
                        Some(links)
                    }
                    Err(e) => {
                        tracing::error!("heartbeat peers change ignored: {e}");
                        None
                    }
                };
            }
            Command::LocalLink { network, up } => {
                if let Err(e) = self.detector.local_link(now, network, up) {
                    tracing::error!("local link change ignored: {e}");
                }
            }
            Command::Reincarnate { incarnation } if incarnation > self.incarnation => {
                tracing::warn!(
                    old = self.incarnation,
                    new = incarnation,
                    "heartbeating as a new incarnation"
                );
                self.incarnation = incarnation;
            }
            Command::Reincarnate { incarnation } => tracing::error!(
                "reincarnation ignored: {incarnation} is not above {}",
                self.incarnation
            ),
            Command::Sensitivity {
                network,
                sensitivity,
            } => match self.detector.set_sensitivity(now, network, sensitivity) {
                Ok(heartbeat) => tracing::info!(
                    network,
                    sensitivity,
                    detection = ?heartbeat.detection_time(),
                    "heartbeat sensitivity changed"
                ),
                Err(e) => tracing::error!("sensitivity change ignored: {e}"),
            },
        }
        None
    }

    /// Hands each link its network's peers in `peers` (those it cannot take are logged).
    pub(crate) fn relink<L: ?Sized>(
        peers: &LinkPeers,
        links: &mut [Box<L>],
        network: impl Fn(&L) -> u32,
        set: impl Fn(&mut L, Vec<LinkPeer>) -> io::Result<()>,
    ) {
        for link in links.iter_mut() {
            let network = network(link);
            if let Some(addresses) = peers.get(&network)
                && let Err(e) = set(link, addresses.clone())
            {
                tracing::error!(network, "heartbeat peers not changed on this link: {e}");
            }
        }
    }

    /// Judge timeouts, log and send the changes (keeping those the channel cannot take yet),
    /// and publish the status.
    pub(crate) fn tick(
        &mut self,
        now: Duration,
        sink: &impl ChangeSink,
        status: &watch::Sender<Status>,
    ) {
        let changes = self.detector.tick(now);
        if !changes.is_empty() {
            for change in &changes {
                tracing::info!(?change, "membership change");
            }
            if self.backlog.len() == CHANGE_BACKLOG_MAX {
                self.backlog.pop_front();
                self.counters.change_batches_dropped += 1;
                if self.should_warn(Warning::Backlog, now) {
                    tracing::warn!("membership changes dropped: the daemon is not reading them");
                }
            }
            self.backlog.push_back(ChangeBatch { at: now, changes });
        }
        self.flush(sink, now);
        let new = self.status(now);
        // Readers always see the latest counters and ages; they are woken only when a
        // judgement changes (see [`Status::judged_alike`]).
        status.send_if_modified(|current| {
            let changed = !current.judged_alike(&new);
            *current = new;
            changed
        });
    }

    fn flush(&mut self, sink: &impl ChangeSink, now: Duration) {
        while let Some(batch) = self.backlog.pop_front() {
            match sink.try_send(batch) {
                Ok(()) => {}
                Err(Rejected::Full(batch)) => {
                    self.backlog.push_front(batch);
                    return;
                }
                Err(Rejected::Disconnected) => {
                    self.backlog.clear();
                    if self.should_warn(Warning::Disconnected, now) {
                        tracing::warn!("membership changes have no reader; heartbeats continue");
                    }
                    return;
                }
            }
        }
    }

    fn should_warn(&mut self, warning: Warning, now: Duration) -> bool {
        let last = &mut self.warned[warning as usize];
        if last.is_some_and(|t| now.saturating_sub(t) < WARN_PERIOD) {
            return false;
        }
        *last = Some(now);
        true
    }
}
