//! The fault campaign (SPEC 12 and 13): random faults from a seed, applied one after another
//! to a Halcyon cluster on a lab while the external checker watches.
//!
//! A fault is drawn (kind, target, durations) from a xorshift64* generator seeded with
//! `seed`, so the same seed gives the same schedule; a target may be "the host running package
//! k", resolved against the live cluster when the fault is applied. Each fault is injected,
//! held, healed, and then the cluster must recover within `recovery_bound`: every daemon
//! answering with a quorum and every node a member, and every package served to the client by
//! the node the API names. Invariants checked:
//!
//! - *double activations*: the checker never saw a package active on two hosts;
//! - *lost committed changes*: an event-log entry, once seen under an id, never changes or
//!   disappears under that id, and the highest applied index and event id never go back;
//! - *packages not recovered*: after each heal every node is up, so a quorum with an eligible
//!   node exists and every package must be served again within the bound;
//! - *collateral restarts*: a package restarted or moved although the fault did not touch the
//!   host holding it. Precisely: an outage (an interval in which the checker saw no host serve
//!   the package) that began between a fault's injection and the end of its recovery (plus
//!   the settling pause), of a package whose holder when the fault was injected is not one of
//!   the hosts the fault touched ([`touched_hosts`]: the target of a crash, daemon restart,
//!   pause, link flap, coordinator pause or kill; the minority of a partition; none for an API
//!   flood). A coordinator change, a flood or a partition of other hosts must cost a package
//!   on a healthy host in the majority nothing ([`collateral_restarts`]).
//!
//! The report also gives the outages (intervals during which no host served a package, as the
//! checker saw them) with their median and 99th percentile.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::checker::{Checker, CheckerOptions, Interval};
use crate::cluster::{ClusterSpec, LabCluster, PackageSpec, has_quorum, holder_in};
use crate::lab::{Lab, LabSpec, host_label};
use crate::{LabError, fault};

/// Size of a node's state directory with `--with-disk-faults` (a tmpfs each).
pub const STATE_SIZE: u64 = 64 << 20;
/// Longest wait for a daemon started on a full or corrupted disk to exit or answer.
const START_VERDICT: Duration = Duration::from_secs(15);

/// Pause between the recovery of one fault and the next fault.
const SETTLE: Duration = Duration::from_millis(500);
/// Most faults one campaign may run.
pub const FAULTS_MAX: usize = 100_000;

/// What to run.
#[derive(Debug, Clone)]
pub struct CampaignOptions {
    pub hosts: usize,
    pub networks: usize,
    pub packages: usize,
    pub faults: usize,
    pub seed: u64,
    pub halcyon: PathBuf,
    /// Also draw daemon pauses (SIGSTOP for longer than detection + lease, then SIGCONT). A
    /// stopped daemon cannot halt its packages itself: its lease guard process does. Off by
    /// default (`--with-pause`).
    pub with_pause: bool,
    /// Also draw the coordinator's faults: pause (SIGSTOP, SIGCONT after a hold), kill
    /// (SIGKILL of the daemon, started again after a while) and an API flood (hundreds of
    /// concurrent status requests). Off by default (`--with-coordinator-faults`).
    pub with_coordinator_faults: bool,
    /// Also draw storage faults of a node: its state directory full (the daemon restarted
    /// on the full disk, then space freed) and its Raft database corrupted while its daemon
    /// is down (a daemon that refuses to start is rebuilt: state emptied, started again).
    /// Every node's state directory is then a tmpfs of its own ([`STATE_SIZE`]). Off by
    /// default (`--with-disk-faults`).
    pub with_disk_faults: bool,
    pub disk_heartbeat: bool,
    /// `[heartbeat] profile` of the cluster (None: the default heartbeat).
    pub heartbeat_profile: Option<halcyon_config::HeartbeatProfile>,
    /// How long the cluster may take to recover after a fault is healed.
    pub recovery_bound: Duration,
    /// Busy threads at normal priority for the whole campaign (`--cpu-load`): the cores
    /// saturated by other work, as a build or a batch job would (0: none).
    pub cpu_load: usize,
    /// After the faults, this long with none (`--soak-seconds`): every outage in it is a
    /// false failover, every lapsed lease or new Raft term a fault of the cluster itself.
    pub soak: Duration,
    pub keep_directory: bool,
    /// Draw only these kinds ([`CampaignFault::kind`], `--only`; empty: every enabled kind).
    pub only: Vec<String>,
}

impl CampaignOptions {
    pub fn new(halcyon: impl Into<PathBuf>) -> CampaignOptions {
        CampaignOptions {
            hosts: 5,
            networks: 2,
            packages: 2,
            faults: 10,
            seed: 1,
            halcyon: halcyon.into(),
            with_pause: false,
            with_coordinator_faults: false,
            with_disk_faults: false,
            disk_heartbeat: true,
            heartbeat_profile: None,
            recovery_bound: Duration::from_secs(30),
            cpu_load: 0,
            soak: Duration::ZERO,
            keep_directory: false,
            only: Vec::new(),
        }
    }
}

/// Whom a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The host running package number k when the fault is applied (any host if none).
    HolderOf(usize),
    Host(usize),
    /// The node that coordinates (the Raft leader) when the fault is applied.
    Coordinator,
}

/// Concurrent requests of an API flood.
pub const FLOOD_REQUESTS: usize = 300;
/// Each flood request's timeout: the flood ends within about this.
pub const FLOOD_TIMEOUT: Duration = Duration::from_secs(5);

/// One drawn fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CampaignFault {
    /// Power loss (links down, everything killed, addresses gone), then power on and boot.
    Crash { target: Target, down_for: Duration },
    /// The target and `others` more hosts (a minority) cut off from the rest on every IP
    /// network, then healed.
    Partition {
        target: Target,
        others: Vec<usize>,
        hold: Duration,
    },
    /// One link down, then up.
    LinkFlap {
        target: Target,
        network: usize,
        down_for: Duration,
    },
    /// SIGKILL of the daemon only, started again at once.
    DaemonRestart { target: Target },
    /// SIGSTOP of the daemon, SIGCONT after `hold`.
    Pause { target: Target, hold: Duration },
    /// SIGSTOP of the coordinator's daemon, SIGCONT after `hold`.
    CoordinatorPause { hold: Duration },
    /// SIGKILL of the coordinator's daemon, started again after `down_for`.
    CoordinatorKill { down_for: Duration },
    /// [`FLOOD_REQUESTS`] concurrent `GET /v1/status` of the coordinator's API from another
    /// host, each within [`FLOOD_TIMEOUT`].
    ApiFlood,
    /// The target's state directory filled up; its daemon killed and started again on the
    /// full disk (its start and registration write); space freed after `hold`, and the
    /// daemon started again if it had exited.
    DiskFull { target: Target, hold: Duration },
    /// The target's daemon killed, `bytes` written into its Raft database (position in
    /// millionths of the file's length, value), the daemon started again; if it refuses to start, its
    /// state directory is emptied and it is started again (the documented rebuild).
    DiskCorruption {
        target: Target,
        bytes: Vec<(u32, u8)>,
    },
}

impl CampaignFault {
    pub fn kind(&self) -> &'static str {
        match self {
            CampaignFault::Crash { .. } => "crash",
            CampaignFault::Partition { .. } => "partition",
            CampaignFault::LinkFlap { .. } => "link flap",
            CampaignFault::DaemonRestart { .. } => "daemon restart",
            CampaignFault::Pause { .. } => "pause",
            CampaignFault::CoordinatorPause { .. } => "coordinator pause",
            CampaignFault::CoordinatorKill { .. } => "coordinator kill",
            CampaignFault::ApiFlood => "api flood",
            CampaignFault::DiskFull { .. } => "disk full",
            CampaignFault::DiskCorruption { .. } => "disk corruption",
        }
    }

    fn target(&self) -> Target {
        match self {
            CampaignFault::Crash { target, .. }
            | CampaignFault::Partition { target, .. }
            | CampaignFault::LinkFlap { target, .. }
            | CampaignFault::DaemonRestart { target }
            | CampaignFault::Pause { target, .. }
            | CampaignFault::DiskFull { target, .. }
            | CampaignFault::DiskCorruption { target, .. } => *target,
            CampaignFault::CoordinatorPause { .. }
            | CampaignFault::CoordinatorKill { .. }
            | CampaignFault::ApiFlood => Target::Coordinator,
        }
    }
}

/// xorshift64* (Vigna), seeded through splitmix64: small, fast, reproducible everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_f491_4f6c_dd1d } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high);
        low + self.next_u64() % (high - low + 1)
    }

    pub fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(self.range(low, high))
    }
}

/// Draws `options.faults` faults for a cluster of `options.hosts` hosts, `options.networks`
/// IP networks and `options.packages` packages (pauses and the coordinator's faults if
/// asked for). Deterministic in `options.seed`.
pub fn draw_faults(options: &CampaignOptions, pause_hold_min: Duration) -> Vec<CampaignFault> {
    let CampaignOptions {
        seed,
        faults: count,
        hosts,
        networks,
        packages,
        with_pause,
        with_coordinator_faults,
        with_disk_faults,
        ..
    } = *options;
    let mut rng = Rng::new(seed);
    // Without the coordinator's faults a seed draws what it drew before they existed; the
    // disk faults come after every other kind, so without them nothing changes either.
    let kinds = match (with_pause, with_coordinator_faults) {
        (false, false) => 4,
        (true, false) => 5,
        (_, true) => 8,
    };
    let disk_kinds = if with_disk_faults { 2 } else { 0 };
    let draw_one = |rng: &mut Rng| {
        let target = if rng.range(0, 1) == 0 {
            Target::HolderOf(rng.range(0, packages as u64 - 1) as usize)
        } else {
            Target::Host(rng.range(1, hosts as u64) as usize)
        };
        let kind = rng.range(0, kinds + disk_kinds - 1);
        if kind == kinds {
            return CampaignFault::DiskFull {
                target,
                hold: rng.millis(500, 3000),
            };
        }
        if kind == kinds + 1 {
            let count = rng.range(1, 8);
            let bytes = (0..count)
                .map(|_| (rng.range(0, 999_999) as u32, rng.range(0, 255) as u8))
                .collect();
            return CampaignFault::DiskCorruption { target, bytes };
        }
        match kind {
            0 => CampaignFault::Crash {
                target,
                down_for: rng.millis(500, 4000),
            },
            1 => {
                let minority_max = (hosts - 1) / 2;
                let size = rng.range(1, minority_max.max(1) as u64) as usize;
                // Host numbers drawn now; the target is added when it is resolved.
                let others = (0..size - 1)
                    .map(|_| rng.range(1, hosts as u64) as usize)
                    .collect();
                CampaignFault::Partition {
                    target,
                    others,
                    hold: rng.millis(500, 4000),
                }
            }
            2 => CampaignFault::LinkFlap {
                target,
                network: rng.range(1, networks as u64) as usize,
                down_for: rng.millis(200, 2000),
            },
            3 => CampaignFault::DaemonRestart { target },
            4 if with_pause => CampaignFault::Pause {
                target,
                hold: pause_hold_min + rng.millis(0, 2000),
            },
            // Without pauses, kind 4 is a coordinator pause too: still a pause of the
            // coordinator only, asked for by --with-coordinator-faults.
            4 | 5 => CampaignFault::CoordinatorPause {
                hold: rng.millis(300, 3000),
            },
            6 => CampaignFault::CoordinatorKill {
                down_for: rng.millis(0, 3000),
            },
            _ => CampaignFault::ApiFlood,
        }
    };
    if options.only.is_empty() {
        return (0..count).map(|_| draw_one(&mut rng)).collect();
    }
    // Only some kinds (`--only`): drawn from the same sequence, the others skipped. Each
    // enabled kind is drawn about once in 10, so the bound is never what stops it.
    let mut faults = Vec::with_capacity(count);
    for _ in 0..count.saturating_mul(1000).max(1000) {
        if faults.len() == count {
            break;
        }
        let fault = draw_one(&mut rng);
        if options.only.iter().any(|kind| kind == fault.kind()) {
            faults.push(fault);
        }
    }
    faults
}

/// Every kind of fault a campaign draws ([`CampaignFault::kind`]) and the flag that enables
/// it (None: always drawn).
pub const FAULT_KINDS: [(&str, Option<&str>); 10] = [
    ("crash", None),
    ("partition", None),
    ("link flap", None),
    ("daemon restart", None),
    ("pause", Some("--with-pause")),
    ("coordinator pause", Some("--with-coordinator-faults")),
    ("coordinator kill", Some("--with-coordinator-faults")),
    ("api flood", Some("--with-coordinator-faults")),
    ("disk full", Some("--with-disk-faults")),
    ("disk corruption", Some("--with-disk-faults")),
];

/// The kinds `--only` names (a word may be joined by `-`: `coordinator-pause`), checked
/// against the flags given: a kind its flag does not enable is never drawn, so it is an
/// error, as is an unknown one.
pub fn only_kinds(
    names: &[String],
    with_pause: bool,
    with_coordinator_faults: bool,
    with_disk_faults: bool,
) -> Result<Vec<String>, String> {
    names
        .iter()
        .map(|name| {
            let wanted = name.replace('-', " ");
            let Some((kind, flag)) = FAULT_KINDS.iter().find(|(kind, _)| *kind == wanted) else {
                let known: Vec<String> = FAULT_KINDS
                    .iter()
                    .map(|(k, _)| k.replace(' ', "-"))
                    .collect();
                return Err(format!(
                    "--only {name}: no such fault kind (known: {})",
                    known.join(", ")
                ));
            };
            let enabled = match *flag {
                None => true,
                Some("--with-pause") => with_pause,
                Some("--with-coordinator-faults") => with_coordinator_faults,
                Some(_) => with_disk_faults,
            };
            match flag {
                Some(flag) if !enabled => Err(format!(
                    "--only {name}: {kind} faults are drawn only with {flag}"
                )),
                _ => Ok((*kind).to_owned()),
            }
        })
        .collect()
}

/// What happened to one fault.
#[derive(Debug, Clone)]
pub struct FaultRecord {
    pub number: usize,
    pub description: String,
    pub kind: &'static str,
    /// What the daemon did, for a storage fault.
    pub outcome: Option<&'static str>,
    /// From the heal to the moment everything was back; None when it did not recover.
    pub recovered_after: Option<Duration>,
    /// What a collateral restart is judged against.
    pub window: FaultWindow,
}

/// One fault as collateral restarts are judged: the hosts it touched, which host held each
/// package when it was injected, and from its injection to the end of its recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultWindow {
    pub touched: Vec<usize>,
    pub holders: BTreeMap<String, usize>,
    pub from: Instant,
    pub to: Instant,
}

/// A package restarted or moved on a host the fault did not touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collateral {
    /// The fault's number (from 1) and kind.
    pub fault: usize,
    pub kind: &'static str,
    pub package: String,
    /// Its holder when the fault was injected.
    pub host: usize,
    pub offset: Duration,
    pub length: Duration,
}

/// The hosts a fault touches (`host`: its target resolved): whatever a package does on
/// them is the fault's doing; on any other host it is collateral.
pub fn touched_hosts(drawn: &CampaignFault, host: usize, hosts: usize) -> Vec<usize> {
    match drawn {
        CampaignFault::Partition { others, .. } => minority(host, others, hosts),
        // The flood asks the coordinator for its status: that must cost no node anything.
        CampaignFault::ApiFlood => Vec::new(),
        CampaignFault::Crash { .. }
        | CampaignFault::LinkFlap { .. }
        | CampaignFault::DaemonRestart { .. }
        | CampaignFault::Pause { .. }
        | CampaignFault::CoordinatorPause { .. }
        | CampaignFault::CoordinatorKill { .. }
        | CampaignFault::DiskFull { .. }
        | CampaignFault::DiskCorruption { .. } => vec![host],
    }
}

/// The collateral restarts among `outages` (see the module documentation): an outage that
/// began within a fault's window, of a package whose holder at injection (or, when the API
/// named none, the host that served it just before) the fault did not touch.
pub fn collateral_restarts(faults: &[FaultRecord], outages: &[Interval]) -> Vec<Collateral> {
    let mut found = Vec::new();
    for outage in outages {
        let Some(record) = faults
            .iter()
            .find(|r| r.window.from <= outage.start && outage.start <= r.window.to)
        else {
            continue;
        };
        let holder = record
            .window
            .holders
            .get(&outage.package)
            .copied()
            .or_else(|| outage.hosts.first().copied());
        if let Some(host) = holder
            && !record.window.touched.contains(&host)
        {
            found.push(Collateral {
                fault: record.number,
                kind: record.kind,
                package: outage.package.clone(),
                host,
                offset: outage.offset,
                length: outage.length,
            });
        }
    }
    found
}

/// The campaign's result.
#[derive(Debug, Clone)]
pub struct CampaignReport {
    pub options: CampaignOptions,
    pub faults: Vec<FaultRecord>,
    pub double_activations: Vec<Interval>,
    pub lost_committed_changes: Vec<String>,
    pub not_recovered: Vec<String>,
    pub collateral_restarts: Vec<Collateral>,
    pub outages: Vec<Interval>,
    pub guard_violations: u64,
    pub checker_summary: String,
    pub interrupted: bool,
    /// What the quiet time after the faults showed (none when not asked for).
    pub soak: Option<Soak>,
}

/// The quiet time after the faults (`CampaignOptions::soak`).
#[derive(Debug, Clone)]
pub struct Soak {
    pub length: Duration,
    /// Package outages that began in it: false failovers.
    pub outages: Vec<Interval>,
    /// The highest Raft term any node reported at its start and at its end.
    pub terms: (u64, u64),
    /// Events the cluster recorded during it (names).
    pub events: Vec<String>,
    /// Status samples (each node about once a second) and those in which a member node's
    /// lease had lapsed (`lease.remaining_ms` 0), with the node.
    pub samples: u64,
    pub lapses: Vec<String>,
    /// Renewal warnings seen (a renewal slower than the timings allow), distinct.
    pub renewal_warnings: Vec<String>,
}

impl Soak {
    /// Nothing happened: no outage, no lapsed lease, no new term, no event.
    pub fn quiet(&self) -> bool {
        self.outages.is_empty()
            && self.lapses.is_empty()
            && self.terms.0 == self.terms.1
            && self.events.is_empty()
    }
}

impl CampaignReport {
    /// Every invariant held, collateral restarts included.
    pub fn passed(&self) -> bool {
        self.safe_and_recovered()
            && self.collateral_restarts.is_empty()
            && self.soak.as_ref().is_none_or(Soak::quiet)
    }

    /// The safety invariants held and every package came back: no double activation, no
    /// lost committed change, no guard violation, nothing left unrecovered, not
    /// interrupted. Collateral restarts (an availability target, issue 15) are judged
    /// apart by [`CampaignReport::passed`].
    pub fn safe_and_recovered(&self) -> bool {
        self.double_activations.is_empty()
            && self.lost_committed_changes.is_empty()
            && self.not_recovered.is_empty()
            && self.guard_violations == 0
            && !self.interrupted
    }

    /// The outage lengths, sorted.
    pub fn outage_lengths(&self) -> Vec<Duration> {
        let mut lengths: Vec<Duration> = self.outages.iter().map(|o| o.length).collect();
        lengths.sort();
        lengths
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[Duration], percent: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((percent / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn seconds(duration: Option<Duration>) -> String {
    duration.map_or("-".to_string(), |d| format!("{:.3} s", d.as_secs_f64()))
}

impl fmt::Display for CampaignReport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options = &self.options;
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for record in &self.faults {
            *kinds.entry(record.kind).or_default() += 1;
        }
        let kinds: Vec<String> = kinds
            .iter()
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect();
        writeln!(
            formatter,
            "campaign: seed {}, {} hosts, {} IP networks{}, {} packages",
            options.seed,
            options.hosts,
            options.networks,
            if options.disk_heartbeat {
                " + disk"
            } else {
                ""
            },
            options.packages
        )?;
        if options.cpu_load > 0 {
            writeln!(
                formatter,
                "other work: {} busy threads at normal priority throughout",
                options.cpu_load
            )?;
        }
        writeln!(
            formatter,
            "faults injected: {} ({}){}",
            self.faults.len(),
            kinds.join(", "),
            if self.interrupted {
                " -- interrupted"
            } else {
                ""
            }
        )?;
        let mut outcomes: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for record in &self.faults {
            if let Some(outcome) = record.outcome {
                *outcomes.entry((record.kind, outcome)).or_default() += 1;
            }
        }
        if !outcomes.is_empty() {
            let outcomes: Vec<String> = outcomes
                .iter()
                .map(|((kind, outcome), count)| format!("{kind}: {outcome} {count}"))
                .collect();
            writeln!(formatter, "storage faults: {}", outcomes.join(", "))?;
        }
        if let Some(soak) = &self.soak {
            writeln!(
                formatter,
                "soak after the faults: {:.0} s with none: {} outages (false failovers), {} lapsed leases in {} status samples, Raft term {} -> {}, {} events recorded{}",
                soak.length.as_secs_f64(),
                soak.outages.len(),
                soak.lapses.len(),
                soak.samples,
                soak.terms.0,
                soak.terms.1,
                soak.events.len(),
                if soak.quiet() {
                    " (quiet)"
                } else {
                    " (NOT quiet)"
                }
            )?;
            for outage in &soak.outages {
                writeln!(
                    formatter,
                    "  outage of {} at +{:.3} s for {:.1} ms",
                    outage.package,
                    outage.offset.as_secs_f64(),
                    outage.length.as_secs_f64() * 1000.0
                )?;
            }
            for lapse in &soak.lapses {
                writeln!(formatter, "  lease lapsed: {lapse}")?;
            }
            for event in &soak.events {
                writeln!(formatter, "  event: {event}")?;
            }
            for warning in &soak.renewal_warnings {
                writeln!(formatter, "  renewal warning: {warning}")?;
            }
        }
        writeln!(
            formatter,
            "double activations: {}",
            self.double_activations.len()
        )?;
        for interval in &self.double_activations {
            writeln!(
                formatter,
                "  {} on {} at +{:.3} s for {:.1} ms",
                interval.package,
                hosts_text(&interval.hosts),
                interval.offset.as_secs_f64(),
                interval.length.as_secs_f64() * 1000.0
            )?;
        }
        writeln!(
            formatter,
            "lost committed changes: {}",
            self.lost_committed_changes.len()
        )?;
        for change in &self.lost_committed_changes {
            writeln!(formatter, "  {change}")?;
        }
        writeln!(
            formatter,
            "collateral restarts (packages restarted or moved on hosts the fault did not touch): {}",
            self.collateral_restarts.len()
        )?;
        for c in &self.collateral_restarts {
            writeln!(
                formatter,
                "  {} on {} at +{:.3} s for {:.1} ms, during fault {} ({})",
                c.package,
                host_label(c.host),
                c.offset.as_secs_f64(),
                c.length.as_secs_f64() * 1000.0,
                c.fault,
                c.kind
            )?;
        }
        writeln!(
            formatter,
            "packages not recovered (bound {:?} after each heal): {}",
            options.recovery_bound,
            self.not_recovered.len()
        )?;
        for package in &self.not_recovered {
            writeln!(formatter, "  {package}")?;
        }
        let lengths = self.outage_lengths();
        writeln!(
            formatter,
            "outages: {}, p50 {}, p99 {}, max {}",
            lengths.len(),
            seconds(percentile(&lengths, 50.0)),
            seconds(percentile(&lengths, 99.0)),
            seconds(lengths.last().copied())
        )?;
        let mut recoveries: Vec<Duration> = self
            .faults
            .iter()
            .filter_map(|record| record.recovered_after)
            .collect();
        recoveries.sort();
        writeln!(
            formatter,
            "recovery after heal: p50 {}, p99 {}, max {}",
            seconds(percentile(&recoveries, 50.0)),
            seconds(percentile(&recoveries, 99.0)),
            seconds(recoveries.last().copied())
        )?;
        writeln!(formatter, "guard violations: {}", self.guard_violations)?;
        writeln!(formatter, "{}", self.checker_summary)?;
        write!(
            formatter,
            "result: {}",
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
}

fn hosts_text(hosts: &[usize]) -> String {
    hosts
        .iter()
        .map(|&host| host_label(host))
        .collect::<Vec<_>>()
        .join(",")
}

/// Committed changes seen so far, to check that none disappears.
#[derive(Debug, Default)]
pub struct Ledger {
    events: BTreeMap<u64, String>,
    max_applied: u64,
    max_event_id: u64,
}

impl Ledger {
    /// Adds what the nodes show; returns the violations. `complete` when `statuses` comes from
    /// every node of a recovered cluster (only then may the maxima be compared).
    pub fn observe(&mut self, statuses: &[(usize, Value)], complete: bool) -> Vec<String> {
        let mut violations = Vec::new();
        let mut applied = 0u64;
        let mut event_id = 0u64;
        for (host, status) in statuses {
            applied = applied.max(status["quorum"]["last_applied"].as_u64().unwrap_or(0));
            for event in status["events"].as_array().into_iter().flatten() {
                let Some(id) = event["id"].as_u64() else {
                    continue;
                };
                event_id = event_id.max(id);
                let text = format!(
                    "{} (queued {})",
                    event["event"].as_str().unwrap_or("?"),
                    event["queued_at"].as_str().unwrap_or("?")
                );
                match self.events.get(&id) {
                    Some(seen) if *seen != text => violations.push(format!(
                        "event #{id} was \"{seen}\", {} now shows \"{text}\"",
                        host_label(*host)
                    )),
                    Some(_) => {}
                    None => {
                        self.events.insert(id, text);
                    }
                }
            }
        }
        if complete {
            if applied < self.max_applied {
                violations.push(format!(
                    "the highest applied index went back from {} to {applied}",
                    self.max_applied
                ));
            }
            if event_id < self.max_event_id {
                violations.push(format!(
                    "the newest event id went back from {} to {event_id}",
                    self.max_event_id
                ));
            }
        }
        self.max_applied = self.max_applied.max(applied);
        self.max_event_id = self.max_event_id.max(event_id);
        violations
    }
}

/// Builds the lab and cluster, runs the faults, and reports. `progress` gets a line per fault;
/// `stop` (e.g. set by SIGINT) ends the campaign after the current fault.
pub fn run(
    options: &CampaignOptions,
    progress: &mut dyn Write,
    stop: &AtomicBool,
) -> Result<CampaignReport, LabError> {
    if options.faults == 0 && options.soak.is_zero() {
        return Err(LabError::Spec(
            "nothing to do: no faults and no --soak-seconds".into(),
        ));
    }
    if options.hosts < 3 || options.faults > FAULTS_MAX || options.packages == 0 {
        return Err(LabError::Spec(format!(
            "a campaign needs 3 or more hosts, 1 or more packages and at most {FAULTS_MAX} faults"
        )));
    }
    if options.cpu_load > crate::load::THREADS_MAX {
        return Err(LabError::Spec(format!(
            "--cpu-load: at most {} busy threads (asked for {})",
            crate::load::THREADS_MAX,
            options.cpu_load
        )));
    }
    let lab = Lab::build(LabSpec {
        hosts: options.hosts,
        networks: options.networks,
        keep_directory: options.keep_directory,
        standby_networks: Vec::new(),
    })?;
    let mut spec = ClusterSpec::new(&options.halcyon);
    if let Some(profile) = options.heartbeat_profile {
        spec = spec.with_profile(profile);
    }
    spec.disk_heartbeat = options.disk_heartbeat;
    if options.with_disk_faults {
        spec.state_size = Some(STATE_SIZE);
    }
    spec.packages = (0..options.packages)
        .map(|index| PackageSpec::numbered(index as u8))
        .collect();
    let _ = writeln!(
        progress,
        "building a cluster of {} hosts in lab {} ({})",
        options.hosts,
        lab.id(),
        lab.directory().display()
    );
    let cluster = LabCluster::start(lab, spec)?;
    let spec = cluster.spec().clone();
    let faults = draw_faults(options, spec.nominal_takeover() + spec.detection());
    let run_time_max = Duration::from_secs(600) + Duration::from_secs(60) * faults.len() as u32;
    let checker = Checker::start(
        cluster.lab().topology(),
        cluster.watches(),
        CheckerOptions {
            run_time_max,
            ..CheckerOptions::default()
        },
    )?;
    let load = crate::load::CpuLoad::start(options.cpu_load)
        .map_err(|e| LabError::Spec(format!("starting the CPU load: {e}")))?;
    if load.threads() > 0 {
        let _ = writeln!(
            progress,
            "{} busy threads at normal priority until the campaign ends",
            load.threads()
        );
    }
    let mut ledger = Ledger::default();
    let mut lost = ledger.observe(&cluster.statuses(), true);
    let mut records = Vec::new();
    let mut not_recovered = Vec::new();
    let mut interrupted = false;
    for (index, drawn) in faults.iter().enumerate() {
        if stop.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        let number = index + 1;
        let host = resolve(&cluster, drawn.target(), options.hosts);
        let description = describe(drawn, host, options.hosts);
        let holders: BTreeMap<String, usize> = cluster
            .spec()
            .packages
            .iter()
            .filter_map(|p| Some((p.name.clone(), cluster.holder(&p.name)?)))
            .collect();
        let from = Instant::now();
        let _ = write!(
            progress,
            "fault {number}/{}: {description} ... ",
            faults.len()
        );
        let _ = progress.flush();
        let (healed_at, outcome) = apply(&cluster, drawn, host, options.hosts)?;
        if let Some(outcome) = outcome {
            let _ = write!(progress, "{outcome}, ");
        }
        let deadline = healed_at + options.recovery_bound;
        let recovered = wait_recovered(&cluster, deadline);
        let recovered_after = match &recovered {
            Ok(()) => {
                let after = healed_at.elapsed();
                let _ = writeln!(progress, "recovered in {:.3} s", after.as_secs_f64());
                Some(after)
            }
            Err(missing) => {
                let _ = writeln!(progress, "NOT RECOVERED: {missing}");
                not_recovered.push(format!("after fault {number} ({description}): {missing}"));
                None
            }
        };
        lost.extend(
            ledger
                .observe(&cluster.statuses(), recovered.is_ok())
                .into_iter()
                .map(|violation| format!("after fault {number}: {violation}")),
        );
        let recovery_failed = recovered.is_err();
        if recovery_failed {
            // Give a stuck cluster a clean start for the next fault: every host powered on and
            // every daemon running (what an operator would do); the failure is already counted.
            for host in cluster.hosts() {
                let _ = fault::power_on(cluster.lab(), host);
                let _ = cluster.resume_daemon(host);
                let _ = cluster.start_daemon(host);
            }
            let _ = fault::heal(cluster.lab());
            let _ = wait_recovered(&cluster, Instant::now() + options.recovery_bound);
        }
        std::thread::sleep(SETTLE);
        records.push(FaultRecord {
            number,
            description,
            kind: drawn.kind(),
            outcome,
            recovered_after,
            window: FaultWindow {
                touched: touched_hosts(drawn, host, options.hosts),
                holders,
                from,
                to: Instant::now(),
            },
        });
    }
    let soak_started = Instant::now();
    let soaked = if options.soak.is_zero() || interrupted {
        None
    } else {
        let (soaked, violations) = soak(&cluster, options.soak, &mut ledger, progress, stop);
        lost.extend(violations);
        interrupted |= stop.load(Ordering::SeqCst);
        Some(soaked)
    };
    let report = checker.stop();
    let soaked = soaked.map(|mut soaked| {
        soaked.outages = report
            .outages
            .iter()
            .filter(|o| report.started + o.offset >= soak_started)
            .cloned()
            .collect();
        soaked
    });
    let collateral = collateral_restarts(&records, &report.outages);
    let guard_violations = cluster.lab().guard_violations()?;
    cluster.stop_all();
    let checker_summary = report
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    Ok(CampaignReport {
        options: options.clone(),
        faults: records,
        double_activations: report.double_activations.clone(),
        lost_committed_changes: lost,
        not_recovered,
        collateral_restarts: collateral,
        outages: report.outages.clone(),
        guard_violations,
        checker_summary,
        interrupted,
        soak: soaked,
    })
}

/// Interval between two rounds of status samples during a soak.
const SOAK_SAMPLE_PERIOD: Duration = Duration::from_secs(1);
/// Longest wait, before a soak, for the events still running or waiting to end.
const SOAK_SETTLE_MAX: Duration = Duration::from_secs(10);

/// `length` with no fault: samples every node's status about once a second (lapsed leases,
/// renewal warnings, terms), checks the ledger, and lists the events recorded meanwhile.
/// Returns the soak (its outages filled in by the caller from the checker) and the ledger's
/// violations.
fn soak(
    cluster: &LabCluster,
    length: Duration,
    ledger: &mut Ledger,
    progress: &mut dyn Write,
    stop: &AtomicBool,
) -> (Soak, Vec<String>) {
    let _ = writeln!(progress, "soak: {} s with no fault", length.as_secs());
    let term = |statuses: &[(usize, Value)]| {
        statuses
            .iter()
            .filter_map(|(_, v)| v["quorum"]["term"].as_u64())
            .max()
            .unwrap_or(0)
    };
    let events = |host| cluster.events(host).unwrap_or_default();
    let first = cluster.nodes().next().expect("a cluster has nodes");
    // The last events of a formation or a heal (a node_up) may still be running or waiting:
    // the soak starts once nothing is, so that every event it lists came during it. Records
    // are told apart by id (status lists the last ones, newest first).
    let last_id = |events: &[Value]| events.iter().filter_map(|e| e["id"].as_u64()).max();
    let settled_by = Instant::now() + SOAK_SETTLE_MAX;
    let mut events_before = 0;
    loop {
        let status = cluster.status(first).ok();
        if let Some(v) = &status {
            let listed = v["events"].as_array().map_or(&[][..], Vec::as_slice);
            events_before = last_id(listed).unwrap_or(0);
        }
        let settled = status.is_some_and(|v| {
            v["execution"].is_null() && v["pending"].as_array().is_some_and(Vec::is_empty)
        });
        if settled || Instant::now() >= settled_by {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let statuses = cluster.statuses();
    let term_before = term(&statuses);
    let mut violations = ledger.observe(&statuses, true);
    let mut samples = 0;
    let mut lapses = Vec::new();
    let mut renewal_warnings: Vec<String> = Vec::new();
    let started = Instant::now();
    let mut last_report = started;
    let mut statuses = statuses;
    while started.elapsed() < length && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(SOAK_SAMPLE_PERIOD);
        statuses = cluster.statuses();
        for (host, v) in &statuses {
            samples += 1;
            let name = host_label(*host);
            let member = v["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|n| n["name"] == name.as_str() && n["member"] == true);
            if member && v["lease"]["remaining_ms"] == 0 {
                lapses.push(format!(
                    "{name} at +{:.0} s",
                    started.elapsed().as_secs_f64()
                ));
            }
            if let Some(warning) = v["lease"]["warning"].as_str()
                && !renewal_warnings.iter().any(|w| w == warning)
            {
                renewal_warnings.push(warning.to_owned());
            }
        }
        violations.extend(ledger.observe(&statuses, true));
        if last_report.elapsed() >= Duration::from_secs(60) {
            last_report = Instant::now();
            let _ = writeln!(
                progress,
                "soak: {:.0} s, {} lapsed leases so far",
                started.elapsed().as_secs_f64(),
                lapses.len()
            );
        }
    }
    let recorded = events(first);
    let soaked = Soak {
        length: started.elapsed(),
        outages: Vec::new(),
        terms: (term_before, term(&statuses)),
        events: recorded
            .iter()
            .rev()
            .filter(|e| e["id"].as_u64().is_some_and(|id| id > events_before))
            .filter_map(|e| e["event"].as_str().map(str::to_owned))
            .collect(),
        samples,
        lapses,
        renewal_warnings,
    };
    let violations = violations
        .into_iter()
        .map(|violation| format!("during the soak: {violation}"))
        .collect();
    (soaked, violations)
}

/// The host a target names now.
fn resolve(cluster: &LabCluster, target: Target, hosts: usize) -> usize {
    match target {
        Target::Host(host) => host,
        Target::HolderOf(package) => cluster
            .spec()
            .packages
            .get(package)
            .and_then(|package| cluster.holder(&package.name))
            .unwrap_or(1 + package % hosts),
        // Any answering node's view; host 1 when none names one (the fault still happens).
        Target::Coordinator => cluster
            .nodes()
            .find_map(|host| cluster.coordinator(host))
            .unwrap_or(1),
    }
}

/// The minority of a partition: the target plus the drawn others, without repeats, never all
/// hosts but at most (hosts - 1) / 2 of them.
fn minority(host: usize, others: &[usize], hosts: usize) -> Vec<usize> {
    let size_max = ((hosts - 1) / 2).max(1);
    let mut group = vec![host];
    for &other in others {
        if group.len() < size_max && !group.contains(&other) {
            group.push(other);
        }
    }
    group.sort();
    group
}

fn describe(drawn: &CampaignFault, host: usize, hosts: usize) -> String {
    let whom = match drawn.target() {
        Target::HolderOf(package) => format!("{} (holder of package {package})", host_label(host)),
        Target::Host(_) => host_label(host),
        Target::Coordinator => format!("{} (coordinator)", host_label(host)),
    };
    match drawn {
        CampaignFault::Crash { down_for, .. } => {
            format!("crash {whom}, down {:.1} s", down_for.as_secs_f64())
        }
        CampaignFault::Partition { others, hold, .. } => format!(
            "partition {} from the rest on every IP network for {:.1} s ({whom})",
            hosts_text(&minority(host, others, hosts)),
            hold.as_secs_f64()
        ),
        CampaignFault::LinkFlap {
            network, down_for, ..
        } => format!(
            "link flap {whom} network {network}, down {:.1} s",
            down_for.as_secs_f64()
        ),
        CampaignFault::DaemonRestart { .. } => format!("daemon restart {whom}"),
        CampaignFault::Pause { hold, .. } | CampaignFault::CoordinatorPause { hold } => {
            format!("pause daemon {whom} for {:.1} s", hold.as_secs_f64())
        }
        CampaignFault::CoordinatorKill { down_for } => format!(
            "kill daemon {whom}, started again after {:.1} s",
            down_for.as_secs_f64()
        ),
        CampaignFault::ApiFlood => {
            format!("API flood of {whom}: {FLOOD_REQUESTS} concurrent status requests")
        }
        CampaignFault::DiskFull { hold, .. } => format!(
            "disk full {whom}, daemon restarted on it, freed after {:.1} s",
            hold.as_secs_f64()
        ),
        CampaignFault::DiskCorruption { bytes, .. } => format!(
            "disk corruption {whom}: {} bytes of its Raft database changed while its daemon was down",
            bytes.len()
        ),
    }
}

/// Injects, holds and heals one fault; returns the instant it was healed and, for a
/// storage fault, what the daemon did.
fn apply(
    cluster: &LabCluster,
    drawn: &CampaignFault,
    host: usize,
    hosts: usize,
) -> Result<(Instant, Option<&'static str>), LabError> {
    let lab = cluster.lab();
    let healed = match drawn {
        CampaignFault::Crash { down_for, .. } => {
            cluster.power_off(host)?;
            std::thread::sleep(*down_for);
            cluster.power_on(host)
        }
        CampaignFault::Partition { others, hold, .. } => {
            let group = minority(host, others, hosts);
            let rest: Vec<usize> = (1..=hosts).filter(|h| !group.contains(h)).collect();
            fault::partition(lab, &[group, rest], &[])?;
            std::thread::sleep(*hold);
            fault::heal(lab)
        }
        CampaignFault::LinkFlap {
            network, down_for, ..
        } => {
            fault::link_down(lab, host, *network)?;
            std::thread::sleep(*down_for);
            fault::link_up(lab, host, *network)
        }
        CampaignFault::DaemonRestart { .. } => {
            cluster.restart_daemon(host)?;
            Ok(Instant::now())
        }
        CampaignFault::Pause { hold, .. } | CampaignFault::CoordinatorPause { hold } => {
            cluster.pause_daemon(host)?;
            std::thread::sleep(*hold);
            cluster.resume_daemon(host)
        }
        CampaignFault::CoordinatorKill { down_for } => {
            cluster.kill_daemon(host)?;
            std::thread::sleep(*down_for);
            cluster.start_daemon(host)?;
            Ok(Instant::now())
        }
        CampaignFault::ApiFlood => {
            // From a host that is not the coordinator: the flood comes over the network.
            let from = if host == 1 { 2 } else { 1 };
            cluster.api_flood(from, host, FLOOD_REQUESTS, FLOOD_TIMEOUT)?;
            Ok(Instant::now())
        }
        CampaignFault::DiskFull { hold, .. } => {
            cluster.fill_state(host)?;
            cluster.restart_daemon(host)?;
            std::thread::sleep(*hold);
            cluster.free_state(host)?;
            let outcome = match start_verdict(cluster, host) {
                Verdict::Exited => {
                    cluster.start_daemon(host)?;
                    "exited on the full disk"
                }
                Verdict::Answers => "kept running",
            };
            return Ok((Instant::now(), Some(outcome)));
        }
        CampaignFault::DiskCorruption { bytes, .. } => {
            cluster.kill_daemon(host)?;
            cluster.corrupt_state(host, bytes)?;
            cluster.start_daemon(host)?;
            let outcome = match start_verdict(cluster, host) {
                Verdict::Exited => {
                    cluster.wipe_state(host)?;
                    cluster.start_daemon(host)?;
                    "refused to start, rebuilt"
                }
                Verdict::Answers => "started",
            };
            return Ok((Instant::now(), Some(outcome)));
        }
    };
    healed.map(|at| (at, None))
}

/// What a daemon started on a damaged disk did.
enum Verdict {
    Exited,
    Answers,
}

/// Waits until `host`'s daemon has exited or answers with a quorum, within
/// [`START_VERDICT`]; a daemon still undecided by then counts as answering (the recovery
/// check that follows judges it).
fn start_verdict(cluster: &LabCluster, host: usize) -> Verdict {
    let deadline = Instant::now() + START_VERDICT;
    while Instant::now() < deadline {
        if !cluster.daemon_running(host) {
            return Verdict::Exited;
        }
        if cluster.status(host).is_ok_and(|status| has_quorum(&status)) {
            return Verdict::Answers;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Verdict::Answers
}

/// Waits until every daemon answers with a quorum and every node a member, and every package
/// is served to the client by the host the API names. The error says what is missing.
fn wait_recovered(cluster: &LabCluster, deadline: Instant) -> Result<(), String> {
    let mut missing = String::from("nothing checked");
    let outcome = cluster.wait_for("recovery", deadline, || {
        match recovery_gap(cluster) {
            None => return Some(()),
            Some(gap) => missing = gap,
        }
        None
    });
    outcome.map_err(|_| missing)
}

fn recovery_gap(cluster: &LabCluster) -> Option<String> {
    let mut statuses = Vec::new();
    for host in cluster.hosts() {
        match cluster.status(host) {
            Ok(status) => statuses.push((host, status)),
            Err(error) => return Some(format!("{} does not answer: {error}", host_label(host))),
        }
    }
    for (host, status) in &statuses {
        if !has_quorum(status) {
            return Some(format!("{} has no quorum", host_label(*host)));
        }
        let outsiders: Vec<&str> = status["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|node| node["member"] != true)
            .filter_map(|node| node["name"].as_str())
            .collect();
        if !outsiders.is_empty() {
            return Some(format!(
                "{} does not count {} as members",
                host_label(*host),
                outsiders.join(", ")
            ));
        }
    }
    for package in &cluster.spec().packages {
        let named = statuses
            .iter()
            .find_map(|(_, status)| holder_in(status, &package.name));
        let serving = cluster.serving_host(&package.name);
        if named.is_none() || named != serving {
            return Some(format!(
                "package {} placed on {} and served by {}",
                package.name,
                named.map_or("-".into(), host_label),
                serving.map_or("-".into(), host_label)
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 5 hosts, 2 networks, 2 packages.
    fn drawing(seed: u64, faults: usize, pause: bool, coordinator: bool) -> CampaignOptions {
        CampaignOptions {
            seed,
            faults,
            with_pause: pause,
            with_coordinator_faults: coordinator,
            ..CampaignOptions::new("halcyon")
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_faults() {
        let draw = |seed| draw_faults(&drawing(seed, 50, false, false), Duration::from_secs(1));
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let faults = draw(7);
        for kind in ["crash", "partition", "link flap", "daemon restart"] {
            assert!(faults.iter().any(|f| f.kind() == kind), "{kind}");
        }
        assert!(!faults.iter().any(|f| f.kind() == "pause"));
        let with_pause = draw_faults(&drawing(7, 50, true, false), Duration::from_secs(1));
        assert!(with_pause.iter().any(|f| f.kind() == "pause"));
        for kind in ["coordinator pause", "coordinator kill", "api flood"] {
            assert!(!with_pause.iter().any(|f| f.kind() == kind), "{kind}");
        }
    }

    #[test]
    fn coordinator_faults_are_drawn_only_when_asked_for_and_target_the_coordinator() {
        let hold = Duration::from_secs(1);
        let faults = draw_faults(&drawing(7, 200, true, true), hold);
        for kind in [
            "crash",
            "partition",
            "link flap",
            "daemon restart",
            "pause",
            "coordinator pause",
            "coordinator kill",
            "api flood",
        ] {
            assert!(faults.iter().any(|f| f.kind() == kind), "{kind}");
        }
        for f in &faults {
            let coordinator = f.kind().starts_with("coordinator") || f.kind() == "api flood";
            assert_eq!(f.target() == Target::Coordinator, coordinator, "{f:?}");
        }
        // Without --with-pause, no holder pause but still the coordinator's pause.
        let no_pause = draw_faults(&drawing(7, 200, false, true), hold);
        assert!(!no_pause.iter().any(|f| f.kind() == "pause"));
        assert!(no_pause.iter().any(|f| f.kind() == "coordinator pause"));
    }

    #[test]
    fn only_draws_the_kinds_named_and_refuses_the_ones_not_enabled() {
        let hold = Duration::from_secs(1);
        let options = CampaignOptions {
            only: vec!["coordinator pause".to_owned()],
            ..drawing(13, 40, true, true)
        };
        let faults = draw_faults(&options, hold);
        assert_eq!(faults.len(), 40);
        assert!(faults.iter().all(|f| f.kind() == "coordinator pause"));
        // The same seed's sequence: the first one is the first coordinator pause drawn
        // without --only.
        let all = draw_faults(&drawing(13, 400, true, true), hold);
        let first = all.iter().find(|f| f.kind() == "coordinator pause");
        assert_eq!(Some(&faults[0]), first);
        assert_eq!(draw_faults(&options, hold), faults);

        let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(
            only_kinds(&names(&["coordinator-pause", "crash"]), false, true, false),
            Ok(names(&["coordinator pause", "crash"]))
        );
        assert_eq!(
            only_kinds(&names(&["coordinator-pause"]), true, false, true),
            Err(
                "--only coordinator-pause: coordinator pause faults are drawn only with \
                 --with-coordinator-faults"
                    .to_owned()
            )
        );
        let unknown = only_kinds(&names(&["meteor"]), true, true, true).unwrap_err();
        assert!(
            unknown.starts_with("--only meteor: no such fault kind (known: crash, partition"),
            "{unknown}"
        );
    }

    #[test]
    fn disk_faults_are_drawn_only_when_asked_for_and_touch_their_target() {
        let hold = Duration::from_secs(1);
        let without = draw_faults(&drawing(7, 300, true, true), hold);
        let options = CampaignOptions {
            with_disk_faults: true,
            ..drawing(7, 300, true, true)
        };
        let with = draw_faults(&options, hold);
        for kind in ["disk full", "disk corruption"] {
            assert!(!without.iter().any(|f| f.kind() == kind), "{kind}");
            assert!(with.iter().any(|f| f.kind() == kind), "{kind}");
        }
        for f in with.iter().filter(|f| f.kind().starts_with("disk")) {
            assert_ne!(f.target(), Target::Coordinator, "{f:?}");
            assert_eq!(touched_hosts(f, 3, 5), vec![3]);
            if let CampaignFault::DiskCorruption { bytes, .. } = f {
                assert!((1..=8).contains(&bytes.len()), "{f:?}");
                assert!(bytes.iter().all(|(at, _)| *at < 1_000_000), "{f:?}");
            }
        }
    }

    #[test]
    fn a_fault_touches_its_target_a_partition_its_minority_and_a_flood_nobody() {
        let pause = CampaignFault::CoordinatorPause {
            hold: Duration::from_secs(1),
        };
        assert_eq!(touched_hosts(&pause, 3, 5), vec![3]);
        let partition = CampaignFault::Partition {
            target: Target::Host(2),
            others: vec![4],
            hold: Duration::from_secs(1),
        };
        assert_eq!(touched_hosts(&partition, 2, 5), vec![2, 4]);
        assert!(touched_hosts(&CampaignFault::ApiFlood, 1, 5).is_empty());
    }

    fn record(number: usize, touched: Vec<usize>, from: Instant, to: Instant) -> FaultRecord {
        FaultRecord {
            number,
            description: String::new(),
            kind: "coordinator kill",
            outcome: None,
            recovered_after: None,
            window: FaultWindow {
                touched,
                holders: BTreeMap::from([("p0".to_owned(), 1), ("p1".to_owned(), 2)]),
                from,
                to,
            },
        }
    }

    fn outage(package: &str, start: Instant, served_by: Vec<usize>) -> Interval {
        Interval {
            package: package.to_owned(),
            hosts: served_by,
            start,
            offset: Duration::from_secs(1),
            length: Duration::from_millis(300),
            ended: true,
        }
    }

    #[test]
    fn an_outage_of_a_package_on_an_untouched_host_during_a_fault_is_collateral() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // Fault 1 killed h1 (holder of p0) from t0+10 to t0+20; fault 2 flooded from t0+30.
        let faults = [
            record(1, vec![1], t0 + s(10), t0 + s(20)),
            record(2, vec![], t0 + s(30), t0 + s(40)),
        ];
        let outages = [
            // p0 on the killed h1: the fault's own doing.
            outage("p0", t0 + s(11), vec![1]),
            // p1 on h2, which fault 1 did not touch: collateral.
            outage("p1", t0 + s(12), vec![2]),
            // Between faults: belongs to none.
            outage("p1", t0 + s(25), vec![2]),
            // A flood touches nobody: any outage in it is collateral.
            outage("p0", t0 + s(31), vec![1]),
        ];
        let found = collateral_restarts(&faults, &outages);
        let seen: Vec<(usize, &str, usize)> = found
            .iter()
            .map(|c| (c.fault, c.package.as_str(), c.host))
            .collect();
        assert_eq!(seen, vec![(1, "p1", 2), (2, "p0", 1)]);
    }

    #[test]
    fn without_a_known_holder_the_host_that_served_last_is_judged() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut fault = record(1, vec![3], t0, t0 + s(10));
        fault.window.holders.clear();
        let own = outage("p0", t0 + s(1), vec![3]);
        let other = outage("p1", t0 + s(1), vec![4]);
        let unknown = outage("p1", t0 + s(2), vec![]);
        let found = collateral_restarts(&[fault], &[own, other, unknown]);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].package.as_str(), found[0].host), ("p1", 4));
    }

    #[test]
    fn minorities_stay_minorities() {
        assert_eq!(minority(3, &[3, 5, 1], 5), vec![3, 5]);
        assert_eq!(minority(2, &[1], 3), vec![2]);
        assert_eq!(minority(1, &[], 4), vec![1]);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&values, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&values, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(
            percentile(&values[..1], 99.0),
            Some(Duration::from_millis(1))
        );
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn the_ledger_notices_a_changed_or_lost_entry() {
        let status = |applied: u64, events: Value| serde_json::json!({"quorum": {"last_applied": applied}, "events": events});
        let mut ledger = Ledger::default();
        let first = status(
            10,
            serde_json::json!([{"id": 2, "event": "node_up h1", "queued_at": "t2"}]),
        );
        assert!(ledger.observe(&[(1, first.clone())], true).is_empty());
        assert!(ledger.observe(&[(2, first)], true).is_empty());
        let changed = status(
            12,
            serde_json::json!([{"id": 2, "event": "node_down h1", "queued_at": "t3"}]),
        );
        assert_eq!(ledger.observe(&[(1, changed)], true).len(), 1);
        let behind = status(5, serde_json::json!([]));
        assert_eq!(ledger.observe(&[(1, behind.clone())], false).len(), 0);
        assert_eq!(ledger.observe(&[(1, behind)], true).len(), 2);
    }
}
