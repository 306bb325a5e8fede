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
//! - Every heartbeat announces this node's interval on its network, and the next one on that
//!   network follows within it (the receivers judge the path by it): a network's interval
//!   changes while heartbeats run ([`Command::Heartbeat`]) without breaking that promise. A
//!   shorter interval is announced and sent at once; a longer one is announced at once but
//!   sent at the old period for `sensitivity` more heartbeats first, so a receiver still
//!   judging by the old interval hears the announcement unless it misses as many heartbeats
//!   in a row as would take the path down under the old interval anyway.
//! - The period each network sends at, the loop step and the links' polling intervals come
//!   from here, and follow the intervals in play now (this node's and those its peers
//!   announce), not only those at start.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use halcyon_config::Heartbeat;
use tokio::sync::watch;

use crate::detector::{Detector, DetectorConfig, Heard};
use crate::runner::{
    CHANGE_BACKLOG_MAX, ChangeBatch, Counters, RunnerSettings, StartError, Status,
};
use crate::wire::{self, HeartbeatMessage, INTERVAL_MAX_MS, INTERVAL_MIN_MS, Sealer};

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

/// What a driver's control handle asks of its loop; `L` is the driver's link type (the
/// thread's or the task's).
pub(crate) enum Command<L: ?Sized> {
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
    /// From now on `network`'s heartbeat is `heartbeat`: this node announces and sends its
    /// interval (switching as the module doc says), and judges the paths of the network with
    /// its sensitivity.
    Heartbeat {
        network: u32,
        heartbeat: Heartbeat,
    },
    /// From now on the detector watches `config`'s peers, networks and paths, and the link
    /// of each network in `links` heartbeats those peers: nodes or networks were added to or
    /// removed from a running cluster. `added`: the links of networks new to the driver
    /// (the links of networks `config` lacks are closed).
    Peers {
        config: DetectorConfig,
        links: LinkPeers,
        added: Vec<Box<L>>,
    },
}

/// What a driver does with its links after a [`Command::Peers`] the detector took.
pub(crate) struct Relink<L: ?Sized> {
    pub(crate) peers: LinkPeers,
    pub(crate) added: Vec<Box<L>>,
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

/// The command that sets a network's heartbeat, refused for a sensitivity of 0 (every path
/// would be down) and for an interval the wire cannot announce (receivers would refuse every
/// heartbeat).
pub(crate) fn heartbeat_command<L: ?Sized>(
    network: u32,
    heartbeat: Heartbeat,
) -> io::Result<Command<L>> {
    if heartbeat.sensitivity == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a sensitivity of 0 declares every path down",
        ));
    }
    if announced_ms(heartbeat.interval).is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a heartbeat interval of {:?} is outside {INTERVAL_MIN_MS}..={INTERVAL_MAX_MS} ms",
                heartbeat.interval
            ),
        ));
    }
    Ok(Command::Heartbeat { network, heartbeat })
}

/// `interval` as a heartbeat announces it: whole milliseconds, rounded up (a promise kept
/// to the microsecond is kept to the millisecond above it); `None` outside the wire's limits.
pub(crate) fn announced_ms(interval: Duration) -> Option<u32> {
    let ms = interval.as_micros().div_ceil(1000);
    u32::try_from(ms)
        .ok()
        .filter(|ms| (INTERVAL_MIN_MS..=INTERVAL_MAX_MS).contains(ms))
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

/// How long a driver waits at most between two ticks when `shortest` is the shortest
/// interval in play: a fraction of it, within [`STEP_MIN`]..=[`STEP_MAX`].
fn step_for(shortest: Duration) -> Duration {
    (shortest / STEPS_PER_INTERVAL).clamp(STEP_MIN, STEP_MAX)
}

/// Checks that every link's network (`networks`: the network of each link) is one the
/// detector knows: a link of another network would send heartbeats nobody judges.
pub(crate) fn check_link_networks(
    config: &DetectorConfig,
    networks: impl IntoIterator<Item = u32>,
) -> Result<(), StartError> {
    for network in networks {
        if config.heartbeat(network).is_none() {
            return Err(StartError::UnknownLinkNetwork(network));
        }
    }
    Ok(())
}

/// When a link that was due at `due` and sent at `now` sends next: one interval after `due`,
/// or, when the driver fell behind by a whole interval, one interval after `now` (beats are
/// skipped, never burst).
pub(crate) fn next_send(due: Duration, interval: Duration, now: Duration) -> Duration {
    let after = due + interval;
    if after <= now { now + interval } else { after }
}

/// When each link of a driver sends next (both drivers keep one, indexed like their links).
///
/// Invariant: a link sends at most one period (the one its network sends at now) after its
/// last heartbeat, and never twice within a period: beats are skipped when the driver falls
/// behind, never burst, and a shorter period brings the next heartbeat forward to one new
/// period after the last one sent (not later at the old due time).
pub(crate) struct SendSchedule {
    /// Driver time each link is due next.
    next: Vec<Duration>,
    /// Driver time each link last sent (`None`: not yet).
    last: Vec<Option<Duration>>,
}

impl SendSchedule {
    /// `links` links, each due at once.
    pub(crate) fn new(links: usize) -> Self {
        SendSchedule {
            next: vec![Duration::ZERO; links],
            last: vec![None; links],
        }
    }

    /// Whether `link` is due at `now`, when its network sends every `period` now.
    pub(crate) fn due(&mut self, link: usize, period: Duration, now: Duration) -> bool {
        if let Some(last) = self.last[link] {
            self.next[link] = self.next[link].min(last + period);
        }
        now >= self.next[link]
    }

    /// `link` sent at `now`; its network sends every `period` from now on.
    pub(crate) fn sent(&mut self, link: usize, period: Duration, now: Duration) {
        self.last[link] = Some(now);
        self.next[link] = next_send(self.next[link], period, now);
    }

    /// When the first link is due (`None`: no links).
    pub(crate) fn next_due(&self) -> Option<Duration> {
        self.next.iter().min().copied()
    }
}

/// What this node sends on one network.
///
/// Invariant: `period <= announced`, and `switch_remaining == 0` exactly when they are equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sending {
    /// The interval every heartbeat announces: the next one follows within it.
    announced: Duration,
    /// The period heartbeats are sent at: the announced interval, or a shorter one while
    /// switching to a longer interval.
    period: Duration,
    /// Heartbeats still sent at `period` before the switch to `announced` ends.
    switch_remaining: u32,
}

impl Sending {
    fn new(interval: Duration) -> Self {
        Sending {
            announced: interval,
            period: interval,
            switch_remaining: 0,
        }
    }

    /// Send by `heartbeat` from now on: an interval no longer than the period sent at now is
    /// announced and sent at once; a longer one is announced at once and sent after
    /// `heartbeat.sensitivity` more heartbeats at the current period (receivers still judging
    /// by that period hear the announcement). An interval already announced changes nothing.
    fn change(&mut self, heartbeat: Heartbeat) {
        assert!(heartbeat.sensitivity >= 1, "checked by heartbeat_command");
        if heartbeat.interval <= self.period {
            *self = Sending::new(heartbeat.interval);
        } else if heartbeat.interval != self.announced {
            self.announced = heartbeat.interval;
            self.switch_remaining = heartbeat.sensitivity;
        }
        self.check();
    }

    /// One heartbeat was built: count down a switch underway.
    fn built(&mut self) {
        if self.switch_remaining > 0 {
            self.switch_remaining -= 1;
            if self.switch_remaining == 0 {
                self.period = self.announced;
            }
        }
        self.check();
    }

    fn check(&self) {
        assert!(self.period <= self.announced, "{self:?}");
        assert_eq!(
            self.switch_remaining == 0,
            self.period == self.announced,
            "{self:?}"
        );
    }
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
    /// Network number -> what this node sends on it.
    sending: BTreeMap<u32, Sending>,
    /// Network number -> the shortest interval in play on it: the period this node sends at,
    /// or one a path of it is judged by (updated every tick and after every command).
    shortest: BTreeMap<u32, Duration>,
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
        for network in &config.networks {
            let interval = network.heartbeat.interval;
            if announced_ms(interval).is_none() {
                return Err(StartError::IntervalOutOfLimits {
                    network: network.number,
                    interval,
                });
            }
        }
        let mut heartbeats = Heartbeats {
            cluster_id: settings.cluster_id,
            incarnation: settings.incarnation,
            local_node: config.local_node,
            detector: Detector::new(config, Duration::ZERO)?,
            sealer,
            counters: Counters::default(),
            seq: 0,
            sending: config
                .networks
                .iter()
                .map(|n| (n.number, Sending::new(n.heartbeat.interval)))
                .collect(),
            shortest: BTreeMap::new(),
            backlog: VecDeque::new(),
            warned: [None; Warning::COUNT],
        };
        heartbeats.update_shortest();
        Ok(heartbeats)
    }

    /// The period this node sends at on `network` now (the driver's links only carry
    /// networks checked at start: [`check_link_networks`]).
    pub(crate) fn send_interval(&self, network: u32) -> Duration {
        self.sending(network).period
    }

    /// The shortest interval in play on `network` (this node's send period, or one a path of
    /// it is judged by): how often a link polling for its heartbeats (the disk's reads) looks.
    pub(crate) fn poll_interval(&self, network: u32) -> Duration {
        *self
            .shortest
            .get(&network)
            .expect("a link's network is known")
    }

    /// When the detector would judge a path down next (see [`Detector::next_expiry`]).
    pub(crate) fn next_expiry(&self) -> Option<Duration> {
        self.detector.next_expiry()
    }

    /// How long the driver waits at most between two ticks: a fraction of the shortest
    /// interval in play on any network, within [`STEP_MIN`]..=[`STEP_MAX`].
    pub(crate) fn step(&self) -> Duration {
        step_for(
            self.shortest
                .values()
                .copied()
                .min()
                .unwrap_or(STEP_MAX * STEPS_PER_INTERVAL),
        )
    }

    /// The longest the heartbeat thread sleeps: the shortest interval in play (within
    /// `STEPS_PER_INTERVAL` steps' bounds), so it looks at its links at least once per
    /// interval whatever it is told.
    pub(crate) fn longest_sleep(&self) -> Duration {
        self.step() * STEPS_PER_INTERVAL
    }

    fn sending(&self, network: u32) -> &Sending {
        self.sending
            .get(&network)
            .expect("a link's network is known (checked at start)")
    }

    fn update_shortest(&mut self) {
        self.shortest
            .retain(|network, _| self.sending.contains_key(network));
        for (&network, sending) in &self.sending {
            let judged = self
                .detector
                .interval_min(network)
                .expect("the detector and the sender know the same networks");
            self.shortest.insert(network, judged.min(sending.period));
        }
    }

    pub(crate) fn status(&self, now: Duration) -> Status {
        Status {
            detector: self.detector.snapshot(now),
            counters: self.counters,
        }
    }

    /// The sealed bytes of the next heartbeat on `network`, announcing this node's interval
    /// there; counts down a switch to a longer interval ([`Heartbeats::send_interval`] is
    /// the period to send the next one at).
    pub(crate) fn heartbeat(&mut self, network: u32, now: Duration) -> Vec<u8> {
        self.seq += 1;
        let sending = self
            .sending
            .get_mut(&network)
            .expect("a link's network is known (checked at start)");
        let interval_ms = announced_ms(sending.announced).expect("checked when it was set");
        let switching = sending.switch_remaining > 0;
        sending.built();
        if switching && sending.switch_remaining == 0 {
            tracing::debug!(network, period = ?sending.period, "heartbeat switch done");
        }
        let message = HeartbeatMessage {
            cluster_id: self.cluster_id,
            node: self.local_node,
            incarnation: self.incarnation,
            network,
            seq: self.seq,
            send_time_ms: now.as_millis() as u64,
            interval_ms,
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
            Duration::from_millis(u64::from(message.interval_ms)),
        );
        if heard != Heard::Accepted {
            self.counters.ignored += 1;
        }
    }

    /// Carries out `command`; returns the peers the driver's links heartbeat from now on
    /// when it changed them ([`Command::Peers`], once the detector took the new peers).
    pub(crate) fn command<L: ?Sized>(
        &mut self,
        command: Command<L>,
        now: Duration,
    ) -> Option<Relink<L>> {
        match command {
            Command::Peers {
                config,
                links,
                added,
            } => {
                if let Some(n) = config
                    .networks
                    .iter()
                    .find(|n| announced_ms(n.heartbeat.interval).is_none())
                {
                    tracing::error!(
                        network = n.number,
                        "heartbeat peers change ignored: interval {:?} outside \
                         {INTERVAL_MIN_MS}..={INTERVAL_MAX_MS} ms",
                        n.heartbeat.interval
                    );
                    return None;
                }
                return match self.detector.set_peers(now, &config) {
                    Ok(()) => {
                        self.sending
                            .retain(|network, _| config.heartbeat(*network).is_some());
                        for network in &config.networks {
                            self.sending
                                .entry(network.number)
                                .or_insert_with(|| Sending::new(network.heartbeat.interval));
                        }
                        self.update_shortest();
                        tracing::info!(
                            peers = ?config.peers,
                            networks = ?self.sending.keys().collect::<Vec<_>>(),
                            "heartbeat peers changed"
                        );
                        Some(Relink {
                            peers: links,
                            added,
                        })
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
            Command::Heartbeat { network, heartbeat } => {
                match self.detector.set_heartbeat(now, network, heartbeat) {
                    Ok(old) => {
                        let sending = self
                            .sending
                            .get_mut(&network)
                            .expect("the detector and the sender know the same networks");
                        // Receivers still on the old heartbeat judge by its sensitivity:
                        // a switch to a longer interval sends as many heartbeats at the
                        // old period as the larger of the two asks.
                        sending.change(Heartbeat {
                            sensitivity: heartbeat.sensitivity.max(old.sensitivity),
                            ..heartbeat
                        });
                        if old != heartbeat {
                            tracing::info!(
                                network,
                                old_interval = ?old.interval,
                                new_interval = ?heartbeat.interval,
                                sensitivity = heartbeat.sensitivity,
                                detection = ?heartbeat.detection_time(),
                                send_period = ?sending.period,
                                heartbeats_at_send_period = sending.switch_remaining,
                                "heartbeat changed"
                            );
                        }
                        self.update_shortest();
                    }
                    Err(e) => tracing::error!("heartbeat change ignored: {e}"),
                }
            }
        }
        None
    }

    /// Closes the links of networks the detector no longer watches, keeps those of
    /// `relink.added` whose network it watches (one replaces the link its network has: its
    /// device or address moved; one of a network the detector does not watch is logged and
    /// closed), and hands each link its network's peers in `relink.peers`
    /// (those it cannot take are logged). Returns whether the set of links changed (the
    /// driver then schedules and tells them again).
    pub(crate) fn relink<L: ?Sized>(
        &self,
        relink: Relink<L>,
        links: &mut Vec<Box<L>>,
        network: impl Fn(&L) -> u32,
        set: impl Fn(&mut L, Vec<LinkPeer>) -> io::Result<()>,
    ) -> bool {
        let Relink { peers, added } = relink;
        let before = links.len();
        links.retain(|link| {
            let kept = self.sending.contains_key(&network(link));
            if !kept {
                tracing::info!(network = network(link), "heartbeat link closed");
            }
            kept
        });
        let mut changed = links.len() != before;
        for link in added {
            let number = network(&link);
            if !self.sending.contains_key(&number) {
                tracing::error!(
                    network = number,
                    "heartbeat link not added: the detector does not watch its network"
                );
            } else if let Some(old) = links.iter_mut().find(|l| network(l) == number) {
                tracing::info!(network = number, "heartbeat link replaced");
                *old = link;
                changed = true;
            } else {
                tracing::info!(network = number, "heartbeat link added");
                links.push(link);
                changed = true;
            }
        }
        for link in links.iter_mut() {
            let network = network(link);
            if let Some(addresses) = peers.get(&network)
                && let Err(e) = set(link, addresses.clone())
            {
                tracing::error!(network, "heartbeat peers not changed on this link: {e}");
            }
        }
        changed
    }

    /// Tells each link the shortest interval in play on its network
    /// ([`Heartbeats::poll_interval`]) when it changed since it was last told (`told`, by
    /// link, updated).
    pub(crate) fn tell_intervals<L: ?Sized>(
        &self,
        links: &mut [Box<L>],
        told: &mut [Duration],
        network: impl Fn(&L) -> u32,
        set: impl Fn(&mut L, Duration),
    ) {
        assert_eq!(links.len(), told.len(), "one interval told per link");
        for (link, told) in links.iter_mut().zip(told) {
            let interval = self.poll_interval(network(link));
            if interval != *told {
                *told = interval;
                set(link, interval);
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
        self.update_shortest();
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

#[cfg(test)]
mod tests {
    use halcyon_config::NetworkKind;

    use super::*;
    use crate::detector::{NetworkSpec, PathSpec};
    use crate::wire::Plain;

    const LAN: u32 = 1;
    const DISK: u32 = 2;
    const CLUSTER_ID: u64 = 7;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn heartbeat(interval_ms: u64, sensitivity: u32) -> Heartbeat {
        Heartbeat {
            interval: ms(interval_ms),
            sensitivity,
        }
    }

    /// Node 1 with peer 2 on LAN (100 ms x 4) and DISK (200 ms x 3).
    fn config() -> DetectorConfig {
        let network = |number, kind, heartbeat| NetworkSpec {
            number,
            kind,
            heartbeat,
        };
        DetectorConfig {
            local_node: 1,
            networks: vec![
                network(LAN, NetworkKind::Ip, heartbeat(100, 4)),
                network(DISK, NetworkKind::Disk, heartbeat(200, 3)),
            ],
            peers: vec![2],
            paths: [LAN, DISK]
                .map(|network| PathSpec {
                    node: 2,
                    network,
                    peer_has_standby: false,
                })
                .to_vec(),
        }
    }

    fn heartbeats() -> Heartbeats {
        Heartbeats::new(
            &RunnerSettings::new(CLUSTER_ID, 1),
            &config(),
            Box::new(Plain),
        )
        .unwrap()
    }

    fn set(h: &mut Heartbeats, network: u32, heartbeat: Heartbeat, now: Duration) {
        let command = heartbeat_command::<dyn crate::HeartbeatLink>(network, heartbeat).unwrap();
        assert!(h.command(command, now).is_none());
    }

    /// Builds the next heartbeat on `network`: the interval it announces, and the period
    /// to send the one after at.
    fn beat(h: &mut Heartbeats, network: u32) -> (Duration, Duration) {
        let bytes = h.heartbeat(network, Duration::ZERO);
        let message = wire::decode(&bytes, CLUSTER_ID, &Plain).unwrap();
        assert_eq!(message.network, network);
        (ms(u64::from(message.interval_ms)), h.send_interval(network))
    }

    #[test]
    fn a_longer_interval_is_announced_at_once_and_sent_after_sensitivity_heartbeats() {
        let mut h = heartbeats();
        assert_eq!(beat(&mut h, LAN), (ms(100), ms(100)));
        set(&mut h, LAN, heartbeat(300, 5), ms(10));
        assert_eq!(
            h.send_interval(LAN),
            ms(100),
            "the old period until the first"
        );
        for i in 1..5 {
            assert_eq!(beat(&mut h, LAN), (ms(300), ms(100)), "heartbeat {i}");
        }
        // The 5th (the new sensitivity) announcing 300 ms: the next follows 300 ms after it.
        assert_eq!(beat(&mut h, LAN), (ms(300), ms(300)));
        assert_eq!(beat(&mut h, LAN), (ms(300), ms(300)));
        // The other network is untouched; the detector judges LAN with the new heartbeat.
        assert_eq!(beat(&mut h, DISK), (ms(200), ms(200)));
        let networks = h.status(ms(10)).detector.networks;
        assert_eq!(networks[0].heartbeat, heartbeat(300, 5));
        assert_eq!(networks[1].heartbeat, heartbeat(200, 3));
    }

    /// Receivers not switched yet judge by the old sensitivity: a longer interval with a
    /// smaller sensitivity is sent at the old period as many times as the old one asks.
    #[test]
    fn a_longer_interval_with_a_smaller_sensitivity_is_sent_at_the_old_period_as_often_as_the_old_one_asks()
     {
        let mut h = heartbeats();
        set(&mut h, LAN, heartbeat(300, 2), ms(10));
        for i in 1..4 {
            assert_eq!(beat(&mut h, LAN), (ms(300), ms(100)), "heartbeat {i}");
        }
        assert_eq!(beat(&mut h, LAN), (ms(300), ms(300)));
    }

    #[test]
    fn a_shorter_interval_is_announced_and_sent_at_once() {
        let mut h = heartbeats();
        set(&mut h, LAN, heartbeat(30, 3), ms(10));
        assert_eq!(h.send_interval(LAN), ms(30));
        assert_eq!(beat(&mut h, LAN), (ms(30), ms(30)));
    }

    /// A change during a switch to a longer interval: receivers may still judge by the
    /// period sent at, so only an interval no longer than it is sent at once.
    #[test]
    fn a_change_during_a_switch_keeps_the_period_sent_at_until_announced() {
        let mut h = heartbeats();
        set(&mut h, LAN, heartbeat(300, 4), ms(10));
        beat(&mut h, LAN);
        beat(&mut h, LAN);
        // Longer again with a sensitivity of 3: 4 heartbeats (the old sensitivity, which
        // receivers not switched yet judge by) at 100 ms announcing 1 s.
        set(&mut h, LAN, heartbeat(1000, 3), ms(20));
        assert_eq!(beat(&mut h, LAN), (ms(1000), ms(100)));
        // Back to 200 ms, still longer than the period: announced, 3 more at 100 ms (the
        // larger of 3 and 2).
        set(&mut h, LAN, heartbeat(200, 2), ms(30));
        assert_eq!(beat(&mut h, LAN), (ms(200), ms(100)));
        // The same interval with another sensitivity: the switch goes on unchanged.
        set(&mut h, LAN, heartbeat(200, 9), ms(40));
        assert_eq!(beat(&mut h, LAN), (ms(200), ms(100)));
        assert_eq!(beat(&mut h, LAN), (ms(200), ms(200)));
        // Down to the period sent at during a switch: at once.
        set(&mut h, LAN, heartbeat(300, 4), ms(50));
        beat(&mut h, LAN);
        set(&mut h, LAN, heartbeat(200, 4), ms(60));
        assert_eq!(h.send_interval(LAN), ms(200));
        assert_eq!(beat(&mut h, LAN), (ms(200), ms(200)));
    }

    #[test]
    fn an_unchanged_interval_with_another_sensitivity_only_changes_the_detector() {
        let mut h = heartbeats();
        set(&mut h, LAN, heartbeat(100, 7), ms(10));
        assert_eq!(beat(&mut h, LAN), (ms(100), ms(100)));
        assert_eq!(
            h.status(ms(10)).detector.networks[0].heartbeat,
            heartbeat(100, 7)
        );
        // An unknown network is ignored (logged), nothing changes.
        set(&mut h, 9, heartbeat(30, 3), ms(20));
        assert_eq!(beat(&mut h, LAN), (ms(100), ms(100)));
    }

    #[test]
    fn heartbeat_commands_outside_the_limits_are_refused() {
        let refused = |heartbeat| {
            heartbeat_command::<dyn crate::HeartbeatLink>(LAN, heartbeat)
                .err()
                .expect("refused")
        };
        let e = refused(heartbeat(100, 0));
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(e.to_string(), "a sensitivity of 0 declares every path down");
        for interval in [
            ms(0),
            ms(9),
            ms(10_001),
            ms(10_000) + Duration::from_micros(1),
        ] {
            let e = refused(Heartbeat {
                interval,
                sensitivity: 4,
            });
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{interval:?}");
            assert!(e.to_string().ends_with("is outside 10..=10000 ms"), "{e}");
        }
        for interval in [ms(10), ms(10_000)] {
            assert!(
                heartbeat_command::<dyn crate::HeartbeatLink>(
                    LAN,
                    heartbeat(interval.as_millis() as u64, 2)
                )
                .is_ok()
            );
        }
        // A fraction of a millisecond is announced rounded up: the promise is kept.
        assert_eq!(announced_ms(Duration::from_micros(30_001)), Some(31));
    }

    #[test]
    fn a_configured_interval_the_wire_cannot_announce_is_refused_at_start() {
        let mut config = config();
        config.networks[1].heartbeat.interval = ms(5);
        let refused = Heartbeats::new(&RunnerSettings::new(1, 1), &config, Box::new(Plain));
        assert!(matches!(
            refused,
            Err(StartError::IntervalOutOfLimits { network: DISK, interval }) if interval == ms(5)
        ));
    }

    /// The step and the links' polling intervals follow this node's period and the
    /// intervals its peers announce.
    #[test]
    fn the_step_and_the_poll_intervals_follow_the_intervals_in_play() {
        let mut h = heartbeats();
        assert_eq!(h.step(), ms(25));
        assert_eq!(
            (h.poll_interval(LAN), h.poll_interval(DISK)),
            (ms(100), ms(200))
        );
        set(&mut h, LAN, heartbeat(1000, 2), ms(0));
        assert_eq!(
            h.poll_interval(LAN),
            ms(100),
            "sent at 100 ms until the switch is done"
        );
        // 4 heartbeats: the old sensitivity is the larger.
        for _ in 0..4 {
            beat(&mut h, LAN);
        }
        let (sink, status) = (
            None::<std::sync::mpsc::SyncSender<ChangeBatch>>,
            watch::channel(Status::default()).0,
        );
        h.tick(ms(1), &sink, &status);
        assert_eq!(h.poll_interval(LAN), ms(1000));
        assert_eq!(h.step(), ms(50), "200 ms on the disk: 50 ms, the most");
        // Peer 2 announces 20 ms on the disk: polled for from the next tick.
        let message = HeartbeatMessage {
            cluster_id: CLUSTER_ID,
            node: 2,
            incarnation: 1,
            network: DISK,
            seq: 1,
            send_time_ms: 0,
            interval_ms: 20,
        };
        h.received(DISK, &wire::encode(&message, &Plain), ms(2));
        h.tick(ms(2), &sink, &status);
        assert_eq!(h.poll_interval(DISK), ms(20));
        assert_eq!(h.step(), ms(5));
    }

    #[test]
    fn the_schedule_skips_beats_and_follows_a_changed_period() {
        let mut schedule = SendSchedule::new(1);
        let period = ms(100);
        assert!(schedule.due(0, period, ms(0)));
        schedule.sent(0, period, ms(0));
        assert!(!schedule.due(0, period, ms(99)));
        assert!(schedule.due(0, period, ms(100)));
        // Sent late, by more than a period: the next is a period later, not at once.
        schedule.sent(0, period, ms(250));
        assert_eq!(schedule.next_due(), Some(ms(350)));
        // Sent a little late: back on the beat.
        schedule.sent(0, period, ms(360));
        assert_eq!(schedule.next_due(), Some(ms(450)));
        // A shorter period: one new period after the last heartbeat, not the old due time.
        assert!(!schedule.due(0, ms(30), ms(389)));
        assert!(schedule.due(0, ms(30), ms(390)));
        schedule.sent(0, ms(30), ms(391));
        assert_eq!(schedule.next_due(), Some(ms(420)));
        // A longer period once sent: the next is that period after it.
        schedule.sent(0, ms(300), ms(420));
        assert!(!schedule.due(0, ms(300), ms(719)));
        assert!(schedule.due(0, ms(300), ms(720)));
        assert_eq!(SendSchedule::new(0).next_due(), None);
    }
}
