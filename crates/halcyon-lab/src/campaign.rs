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
//!   node exists and every package must be served again within the bound.
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
    pub disk_heartbeat: bool,
    /// `[heartbeat] profile` of the cluster (None: the default heartbeat).
    pub heartbeat_profile: Option<halcyon_config::HeartbeatProfile>,
    /// How long the cluster may take to recover after a fault is healed.
    pub recovery_bound: Duration,
    pub keep_directory: bool,
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
            disk_heartbeat: true,
            heartbeat_profile: None,
            recovery_bound: Duration::from_secs(30),
            keep_directory: false,
        }
    }
}

/// Whom a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The host running package number k when the fault is applied (any host if none).
    HolderOf(usize),
    Host(usize),
}

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
}

impl CampaignFault {
    pub fn kind(&self) -> &'static str {
        match self {
            CampaignFault::Crash { .. } => "crash",
            CampaignFault::Partition { .. } => "partition",
            CampaignFault::LinkFlap { .. } => "link flap",
            CampaignFault::DaemonRestart { .. } => "daemon restart",
            CampaignFault::Pause { .. } => "pause",
        }
    }

    fn target(&self) -> Target {
        match self {
            CampaignFault::Crash { target, .. }
            | CampaignFault::Partition { target, .. }
            | CampaignFault::LinkFlap { target, .. }
            | CampaignFault::DaemonRestart { target }
            | CampaignFault::Pause { target, .. } => *target,
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

/// Draws `count` faults for a cluster of `hosts` hosts, `networks` IP networks and `packages`
/// packages. Deterministic in `seed`.
pub fn draw_faults(
    seed: u64,
    count: usize,
    hosts: usize,
    networks: usize,
    packages: usize,
    with_pause: bool,
    pause_hold_min: Duration,
) -> Vec<CampaignFault> {
    let mut rng = Rng::new(seed);
    let kinds = if with_pause { 5 } else { 4 };
    (0..count)
        .map(|_| {
            let target = if rng.range(0, 1) == 0 {
                Target::HolderOf(rng.range(0, packages as u64 - 1) as usize)
            } else {
                Target::Host(rng.range(1, hosts as u64) as usize)
            };
            match rng.range(0, kinds - 1) {
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
                _ => CampaignFault::Pause {
                    target,
                    hold: pause_hold_min + rng.millis(0, 2000),
                },
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
    /// From the heal to the moment everything was back; None when it did not recover.
    pub recovered_after: Option<Duration>,
}

/// The campaign's result.
#[derive(Debug, Clone)]
pub struct CampaignReport {
    pub options: CampaignOptions,
    pub faults: Vec<FaultRecord>,
    pub double_activations: Vec<Interval>,
    pub lost_committed_changes: Vec<String>,
    pub not_recovered: Vec<String>,
    pub outages: Vec<Interval>,
    pub guard_violations: u64,
    pub checker_summary: String,
    pub interrupted: bool,
}

impl CampaignReport {
    pub fn passed(&self) -> bool {
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
    if options.hosts < 3 || options.faults > FAULTS_MAX || options.packages == 0 {
        return Err(LabError::Spec(format!(
            "a campaign needs 3 or more hosts, 1 or more packages and at most {FAULTS_MAX} faults"
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
    let faults = draw_faults(
        options.seed,
        options.faults,
        options.hosts,
        options.networks,
        options.packages,
        options.with_pause,
        spec.nominal_takeover() + spec.detection(),
    );
    let run_time_max = Duration::from_secs(600) + Duration::from_secs(60) * faults.len() as u32;
    let checker = Checker::start(
        cluster.lab().topology(),
        cluster.watches(),
        CheckerOptions {
            run_time_max,
            ..CheckerOptions::default()
        },
    )?;
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
        let _ = write!(
            progress,
            "fault {number}/{}: {description} ... ",
            faults.len()
        );
        let _ = progress.flush();
        let healed_at = apply(&cluster, drawn, host, options.hosts)?;
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
        records.push(FaultRecord {
            number,
            description,
            kind: drawn.kind(),
            recovered_after,
        });
        if recovered.is_err() {
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
    }
    let report = checker.stop();
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
        outages: report.outages.clone(),
        guard_violations,
        checker_summary,
        interrupted,
    })
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
        CampaignFault::Pause { hold, .. } => {
            format!("pause daemon {whom} for {:.1} s", hold.as_secs_f64())
        }
    }
}

/// Injects, holds and heals one fault; returns the instant it was healed.
fn apply(
    cluster: &LabCluster,
    drawn: &CampaignFault,
    host: usize,
    hosts: usize,
) -> Result<Instant, LabError> {
    let lab = cluster.lab();
    match drawn {
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
        CampaignFault::Pause { hold, .. } => {
            cluster.pause_daemon(host)?;
            std::thread::sleep(*hold);
            cluster.resume_daemon(host)
        }
    }
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

    #[test]
    fn the_same_seed_draws_the_same_faults() {
        let draw = |seed| draw_faults(seed, 50, 5, 2, 2, false, Duration::from_secs(1));
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let faults = draw(7);
        for kind in ["crash", "partition", "link flap", "daemon restart"] {
            assert!(faults.iter().any(|f| f.kind() == kind), "{kind}");
        }
        assert!(!faults.iter().any(|f| f.kind() == "pause"));
        let with_pause = draw_faults(7, 50, 5, 2, 2, true, Duration::from_secs(1));
        assert!(with_pause.iter().any(|f| f.kind() == "pause"));
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
