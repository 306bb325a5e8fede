//! `halcyon-lab compare`: the failover benchmark of SPEC 12, side by side. The same node-failure
//! scenario on the same kind of lab for Halcyon, Pacemaker + Corosync and keepalived, then one
//! table with the three results and the ratios.
//!
//! Scenario, per system: a lab of 3 hosts on one IP network plus the client; a package made of the
//! service address 198.18.1.200/24 and a small HTTP service on it that answers with its host's
//! name. T0 is a power loss of the host holding it ([`fault::power_off`]: links down, then every
//! process of the host SIGKILLed); the failover time is the first answer the client's probe
//! (the [`Checker`]'s HTTP probe: one sent every 10 ms, up to [`PROBES_IN_FLIGHT`] at once, so
//! that the probes lost while the address moved, each waiting out its 50 ms timeout, do not
//! hold back the next ones) gets from another host. Between runs the host is
//! powered on again and the cluster is waited for until it is stable (every host back, the
//! package served); with no failback, the next run kills the new holder, so the holder
//! alternates by itself.
//!
//! Idle footprint, per node: the sum of the resident set sizes of the host's processes (the
//! cluster manager's, not the HTTP service's nor the lab's own init shell), averaged over the
//! idle window, and the CPU time they (and their reaped children) used in that window as a
//! percentage of one core. Both are averaged over the hosts.
//!
//! Split brain (`--split-seconds N`): after the failover runs, the holder cut off from the
//! other hosts for N s, then its cluster manager stopped for N s; the time the address was on
//! two hosts at once ([`split`]).
//!
//! Invariants: each system runs on its own lab, dropped (every process killed, namespaces
//! removed; per-host mount namespaces vanish with their last process) before the next one
//! starts; every wait is bounded; the guard counter of every lab is read before it is dropped.

mod halcyon;
mod keepalived;
mod pacemaker;
pub mod split;

use std::fmt::{self, Write as _};
use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};

use crate::{Checker, CheckerOptions, Lab, LabSpec, PackageWatch, netns};

/// The package's service address.
pub const SERVICE_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 200);
/// The HTTP service's port.
pub const SERVICE_PORT: u16 = 8080;
/// Hosts per lab.
pub const HOSTS: usize = 3;
/// Longest wait for the first answer from another host after T0.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest wait for a cluster to be stable (first start or after a power-on).
const STABLE_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest wait for the probe to see the holder answering before T0.
const PROBE_LIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// The client's probes of the service that may be in flight at once, sent 10 ms apart
/// ([`CheckerOptions::probes_in_flight`]): with one, a probe whose SYN went to the powered-off
/// holder waits out its 50 ms timeout before the next is sent, and every system's failover
/// time is known to within 50 ms only (sessions before 29).
const PROBES_IN_FLIGHT: u32 = 5;
/// Period of the RSS samples in the idle window.
const RSS_SAMPLE_PERIOD: Duration = Duration::from_secs(1);

/// A system to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemKind {
    Halcyon,
    /// Halcyon with `[heartbeat] profile = "fast"`, a system of its own in the table.
    HalcyonFast,
    /// Halcyon without credentials (`--insecure`): what security costs, beside `Halcyon`.
    HalcyonInsecure,
    Pacemaker,
    Keepalived,
}

impl SystemKind {
    pub fn parse(text: &str) -> Result<SystemKind> {
        match text.trim().to_ascii_lowercase().as_str() {
            "halcyon" => Ok(SystemKind::Halcyon),
            "halcyon-fast" | "halcyon:fast" => Ok(SystemKind::HalcyonFast),
            "halcyon-insecure" | "halcyon:insecure" => Ok(SystemKind::HalcyonInsecure),
            "pacemaker" | "pacemaker+corosync" | "corosync" => Ok(SystemKind::Pacemaker),
            "keepalived" => Ok(SystemKind::Keepalived),
            other => {
                bail!(
                    "unknown system {other:?} (halcyon, halcyon-fast, halcyon-insecure, pacemaker, keepalived)"
                )
            }
        }
    }
}

/// What `compare` runs.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub runs: usize,
    pub systems: Vec<SystemKind>,
    /// The `halcyon` binary.
    pub halcyon: PathBuf,
    /// This program (its `serve-name` subcommand is the HTTP service of Pacemaker and
    /// keepalived).
    pub lab_binary: PathBuf,
    /// keepalived `advert_int` values, one run set each.
    pub keepalived_adverts: Vec<f64>,
    /// Length of the idle footprint window.
    pub idle: Duration,
    pub keep_directory: bool,
    /// Halcyon's clusters get the lab's disk heartbeat network (a file every host writes).
    pub disk_heartbeat: bool,
    /// After the failover runs, each split fault for this long ([`split`]); `None`: none.
    pub split: Option<Duration>,
    /// Printed as the command that produced the results.
    pub command_line: String,
}

/// Idle footprint of one node (averaged over the hosts).
#[derive(Debug, Clone, Copy)]
pub struct Footprint {
    pub rss_bytes: f64,
    pub cpu_percent: f64,
    pub processes: f64,
    pub window: Duration,
}

/// The results of one system with one group of settings.
#[derive(Debug, Clone)]
pub struct Row {
    pub system: String,
    pub settings: String,
    pub runs_requested: usize,
    pub failovers: Vec<Duration>,
    /// Runs without a failover time, with the reason.
    pub failed_runs: Vec<String>,
    pub footprint: Option<Footprint>,
    /// Moments the checker saw the service address on two hosts at once.
    pub double_activations: usize,
    pub guard_violations: u64,
    /// The role of the powered-off host in each measured run (parallel to `failovers`), e.g.
    /// Pacemaker's DC or Halcyon's coordinator.
    pub roles: Vec<Option<&'static str>>,
    /// Moves (to mix the roles) the system refused, with its answer.
    pub refused_moves: Vec<String>,
    /// The split faults, when measured.
    pub splits: Vec<split::SplitResult>,
    /// Each measured run's takeover steps from the system's own record, when it keeps one
    /// (parallel to `failovers`).
    pub steps: Vec<Option<TakeoverSteps>>,
    /// Set when the system could not be measured at all (or not to the end).
    pub error: Option<String>,
}

impl Row {
    fn new(system: &str, settings: String, runs: usize) -> Row {
        Row {
            system: system.to_string(),
            settings,
            runs_requested: runs,
            failovers: Vec::new(),
            failed_runs: Vec::new(),
            footprint: None,
            double_activations: 0,
            guard_violations: 0,
            roles: Vec::new(),
            refused_moves: Vec::new(),
            splits: Vec::new(),
            steps: Vec::new(),
            error: None,
        }
    }

    pub fn median(&self) -> Option<Duration> {
        percentile(&self.failovers, 50.0)
    }

    pub fn p90(&self) -> Option<Duration> {
        percentile(&self.failovers, 90.0)
    }

    pub fn worst(&self) -> Option<Duration> {
        self.failovers.iter().max().copied()
    }
}

/// A takeover's steps after T0, from the system's own record of it (Halcyon: the committed
/// event log of the new holder, wall-clock times against T0's).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TakeoverSteps {
    /// The failed node's `node_down` queued (detection).
    pub queued: Option<Duration>,
    /// Its lease certainly over: the plan's `await_release` done.
    pub released: Option<Duration>,
    /// The package started on the new holder: the plan's `run` done.
    pub started: Option<Duration>,
}

/// Everything `compare` found.
#[derive(Debug, Clone)]
pub struct CompareReport {
    pub rows: Vec<Row>,
    /// Systems not measured, with the reason (e.g. packages missing).
    pub skipped: Vec<(String, String)>,
    pub notes: Vec<String>,
    pub command_line: String,
    pub interrupted: bool,
}

impl CompareReport {
    pub fn guard_violations(&self) -> u64 {
        self.rows.iter().map(|row| row.guard_violations).sum()
    }

    /// True when every measured system finished every run without error and the guards
    /// counted nothing.
    pub fn passed(&self) -> bool {
        self.guard_violations() == 0
            && !self.interrupted
            && self
                .rows
                .iter()
                .all(|row| row.error.is_none() && row.failed_runs.is_empty())
    }
}

/// Percentile by linear interpolation between closest ranks; None for no samples.
pub fn percentile(samples: &[Duration], percent: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = (percent / 100.0) * (sorted.len() - 1) as f64;
    let low = rank.floor() as usize;
    let high = rank.ceil() as usize;
    let fraction = rank - low as f64;
    let low_value = sorted[low].as_secs_f64();
    let high_value = sorted[high].as_secs_f64();
    Some(Duration::from_secs_f64(
        low_value + (high_value - low_value) * fraction,
    ))
}

/// One system on its lab, as the measurement loop drives it.
trait System {
    fn lab(&self) -> &Lab;
    /// Links up and the host's cluster software started again (a boot).
    fn power_on(&mut self, host: usize) -> Result<()>;
    /// Waits until every host is back in the cluster and the package is served; the host
    /// serving it.
    fn wait_stable(&mut self, deadline: Instant) -> Result<usize>;
    /// PIDs of the lab's own scaffolding on `host` (e.g. the mount-namespace init shell), left
    /// out of the footprint.
    fn scaffolding(&self, _host: usize) -> Vec<u32> {
        Vec::new()
    }
    /// A role of `host` that matters for the failover time (Pacemaker: "DC"), if any.
    fn role(&self, _host: usize) -> Option<&'static str> {
        None
    }
    /// The host with the role (DC, coordinator) when last seen stable, if the system has one.
    fn role_host(&self) -> Option<usize> {
        None
    }
    /// After a move has completed (Pacemaker: clear the move's location constraint).
    fn moved(&mut self) -> Result<()> {
        Ok(())
    }
    /// Moves the package to `host` with the system's own move command (then the caller waits
    /// for stability).
    fn move_package(&mut self, _host: usize) -> Result<()> {
        bail!("this system has no move command here")
    }
    /// The steps of the takeover of `killed`'s package by `new_holder` after T0 (`t0`, the
    /// wall clock's time of the power loss), from the system's own record; `None` when it
    /// keeps none.
    fn takeover_steps(
        &self,
        _killed: usize,
        _new_holder: usize,
        _t0: SystemTime,
    ) -> Option<TakeoverSteps> {
        None
    }
    /// What the pause fault stops on `host`, and how to say it; `None`: every process of the
    /// manager ([`manager_processes`]).
    fn pause_targets(&self, _host: usize) -> Option<(Vec<u32>, String)> {
        None
    }

    /// Power loss of `host`: links down, every process killed, and the interface addresses it
    /// had gone (what a reboot does). Returns T0, the instant the links went down.
    fn power_off(&mut self, host: usize) -> Result<Instant> {
        let at = crate::fault::power_off(self.lab(), host)?;
        forget_service_address(self.lab(), host)?;
        Ok(at)
    }
}

/// Removes the service address from `host` if present (after a power loss).
fn forget_service_address(lab: &Lab, host: usize) -> Result<()> {
    if lab.addresses(host)?.contains(&SERVICE_ADDRESS) {
        lab.delete_address(
            host,
            1,
            SERVICE_ADDRESS,
            crate::names::NETWORK_PREFIX_LENGTH,
        )?;
    }
    Ok(())
}

/// The host named in an answer of the HTTP service: `hN` (serve-name) or `hello from hN`
/// (Halcyon's demo-http).
pub fn host_of_answer(answer: &str) -> Option<usize> {
    let name = answer.trim();
    let name = name.strip_prefix("hello from ").unwrap_or(name);
    name.strip_prefix('h')?.parse().ok()
}

/// True when a process's command line marks it as the package's HTTP service.
fn is_http_service(pid: u32) -> bool {
    let Ok(mut command_line) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    command_line.truncate(4096);
    let text = String::from_utf8_lossy(&command_line);
    text.contains("serve-name") || text.contains("demo-http")
}

/// Builds the lab every system runs on: 3 hosts, one IP network, the client.
fn build_lab(keep_directory: bool) -> Result<Lab> {
    Lab::build(LabSpec {
        hosts: HOSTS,
        networks: 1,
        keep_directory,
        standby_networks: Vec::new(),
    })
    .context("building the lab")
}

/// Runs the comparison. Progress goes to `progress`; the result is returned (print it with
/// Display). Stops between runs when `stop` is set (the labs are torn down on the way out).
pub fn run(
    options: &CompareOptions,
    progress: &mut dyn Write,
    stop: &AtomicBool,
) -> Result<CompareReport> {
    if options.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let mut report = CompareReport {
        rows: Vec::new(),
        skipped: Vec::new(),
        notes: Vec::new(),
        command_line: options.command_line.clone(),
        interrupted: false,
    };
    for &kind in &options.systems {
        if stop.load(Ordering::SeqCst) {
            report.interrupted = true;
            break;
        }
        match kind {
            SystemKind::Halcyon => {
                let row = halcyon::measure(options, None, false, progress, stop);
                report.rows.push(row);
            }
            SystemKind::HalcyonFast => {
                let row = halcyon::measure(
                    options,
                    Some(halcyon_config::HeartbeatProfile::Fast),
                    false,
                    progress,
                    stop,
                );
                report.rows.push(row);
            }
            SystemKind::HalcyonInsecure => {
                let row = halcyon::measure(options, None, true, progress, stop);
                report.rows.push(row);
            }
            SystemKind::Pacemaker => match pacemaker::missing_packages() {
                Some(missing) => {
                    let message = format!(
                        "skipped: {missing} not installed (apt-get install -y pacemaker corosync crmsh resource-agents)"
                    );
                    let _ = writeln!(progress, "Pacemaker+Corosync: {message}");
                    report
                        .skipped
                        .push(("Pacemaker+Corosync".to_string(), message));
                }
                None => {
                    let row = pacemaker::measure(options, progress, stop);
                    report.rows.push(row);
                    report.notes.push(pacemaker::FENCING_NOTE.to_string());
                }
            },
            SystemKind::Keepalived => match keepalived::missing_packages() {
                Some(missing) => {
                    let message =
                        format!("skipped: {missing} not installed (apt-get install -y keepalived)");
                    let _ = writeln!(progress, "keepalived: {message}");
                    report.skipped.push(("keepalived".to_string(), message));
                }
                None => {
                    for &advert in &options.keepalived_adverts {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let row = keepalived::measure(options, advert, progress, stop);
                        report.rows.push(row);
                    }
                    report.notes.push(keepalived::NOTE.to_string());
                }
            },
        }
    }
    if stop.load(Ordering::SeqCst) {
        report.interrupted = true;
    }
    Ok(report)
}

/// The measurement loop shared by every system: the idle footprint first, then `runs` node
/// failures of the current holder. Fills `row`; an error ends the measurement of this system.
fn measure_system(
    system: &mut dyn System,
    row: &mut Row,
    options: &CompareOptions,
    progress: &mut dyn Write,
    stop: &AtomicBool,
) -> Result<()> {
    system.wait_stable(Instant::now() + STABLE_TIMEOUT)?;
    let _ = writeln!(
        progress,
        "{}: stable; idle footprint over {} s",
        row.system,
        options.idle.as_secs()
    );
    row.footprint = Some(idle_footprint(system, options.idle, stop));
    for run in 1..=options.runs {
        if stop.load(Ordering::SeqCst) {
            bail!("interrupted after {} runs", run - 1);
        }
        let holder = system
            .wait_stable(Instant::now() + STABLE_TIMEOUT)
            .with_context(|| format!("waiting for a stable cluster before run {run}"))?;
        let holder = place_for_role(system, row, run, holder, progress)?;
        let role = system.role(holder);
        match one_failover(system, holder) {
            Ok((failover, new_holder, double, t0)) => {
                row.double_activations += double;
                row.roles.push(role);
                row.steps
                    .push(system.takeover_steps(holder, new_holder, t0));
                let _ = writeln!(
                    progress,
                    "{} [{}] run {run}/{}: h{holder}{} powered off, h{new_holder} answered after {:.3} s",
                    row.system,
                    row.settings_short(),
                    options.runs,
                    role.map(|role| format!(" ({role})")).unwrap_or_default(),
                    failover.as_secs_f64()
                );
                row.failovers.push(failover);
            }
            Err(error) => {
                let _ = writeln!(progress, "{} run {run}: {error:#}", row.system);
                row.failed_runs.push(format!("run {run}: {error:#}"));
            }
        }
        system
            .power_on(holder)
            .with_context(|| format!("powering h{holder} on after run {run}"))?;
    }
    if let Some(hold) = options.split
        && !stop.load(Ordering::SeqCst)
    {
        let name = format!("{} [{}]", row.system, row.settings_short());
        row.splits = split::measure(system, hold, &name, progress)?;
    }
    system.wait_stable(Instant::now() + STABLE_TIMEOUT)?;
    Ok(())
}

/// Before run `run`: where the killed host's role changes the failover path (Pacemaker's
/// DC, Halcyon's coordinator), odd runs kill the host with the role and even runs another
/// one, so the package is moved there first with the system's own move command. Returns the
/// holder the run powers off.
fn place_for_role(
    system: &mut dyn System,
    row: &mut Row,
    run: usize,
    mut holder: usize,
    progress: &mut dyn Write,
) -> Result<usize> {
    let Some(role_host) = system.role_host() else {
        return Ok(holder);
    };
    let want_role = run % 2 == 1;
    if want_role == (holder == role_host) {
        return Ok(holder);
    }
    let target = if want_role {
        role_host
    } else {
        system
            .lab()
            .hosts()
            .find(|&host| host != role_host)
            .unwrap_or(holder)
    };
    // Best effort: a refused move is reported and this run kills the current holder (its
    // role is recorded either way).
    if let Err(error) = system.move_package(target) {
        let _ = writeln!(
            progress,
            "{} run {run}: moving the package to h{target} failed ({error:#}); this run powers off the holder h{holder}",
            row.system
        );
        row.refused_moves
            .push(format!("before run {run}: {error:#}"));
        return Ok(holder);
    }
    let deadline = Instant::now() + STABLE_TIMEOUT;
    loop {
        holder = system.wait_stable(deadline)?;
        if holder == target {
            break;
        }
        if Instant::now() >= deadline {
            bail!("the package did not move to h{target} before run {run}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    system.moved()?;
    Ok(holder)
}

impl Row {
    fn settings_short(&self) -> &str {
        self.settings.split(';').next().unwrap_or("")
    }
}

/// One run: the checker probing, T0 = power off of `holder`, the first answer from another
/// host. Returns the failover time, the new holder, the double activations seen and T0 on
/// the wall clock.
fn one_failover(
    system: &mut dyn System,
    holder: usize,
) -> Result<(Duration, usize, usize, SystemTime)> {
    let checker = start_checker(system.lab())?;
    // The probe must be live and answered by the holder before T0.
    let live_deadline = Instant::now() + PROBE_LIVE_TIMEOUT;
    let holder_answer = loop {
        let report = checker.report();
        if let Some(answer) = report
            .probe_answers
            .last()
            .and_then(|change| change.answer.clone())
            && host_of_answer(&answer) == Some(holder)
        {
            break answer;
        }
        if Instant::now() >= live_deadline {
            bail!("the probe never got an answer from h{holder} before the fault");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let t0 = system.power_off(holder)?;
    let t0_wall = SystemTime::now() - t0.elapsed();
    let deadline = t0 + FAILOVER_TIMEOUT;
    loop {
        let report = checker.report();
        if report
            .first_answer_after("web", t0, Some(&holder_answer))
            .is_some()
        {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "no answer from another host within {} s of T0",
                FAILOVER_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let report = checker.stop();
    let failover = report
        .first_answer_after("web", t0, Some(&holder_answer))
        .context("the failover answer vanished from the report")?;
    let last_before = report
        .probe_answers
        .iter()
        .rfind(|change| change.at < t0)
        .and_then(|change| change.answer.clone());
    if last_before.as_deref() != Some(holder_answer.as_str()) {
        bail!("the probe was not answered by h{holder} at T0 (last: {last_before:?})");
    }
    let new_holder = report
        .probe_answers
        .iter()
        .filter(|change| change.at >= t0)
        .find_map(|change| {
            change
                .answer
                .as_deref()
                .filter(|answer| *answer != holder_answer)
                .and_then(host_of_answer)
        })
        .unwrap_or(0);
    Ok((
        failover,
        new_holder,
        report.double_activations.len(),
        t0_wall,
    ))
}

/// The checker on the service address and the client's probe of the service.
fn start_checker(lab: &Lab) -> Result<Checker> {
    Ok(Checker::start(
        lab.topology(),
        vec![PackageWatch {
            name: "web".into(),
            address: SERVICE_ADDRESS,
            service: None,
            probe_port: Some(SERVICE_PORT),
        }],
        CheckerOptions {
            probes_in_flight: PROBES_IN_FLIGHT,
            ..CheckerOptions::default()
        },
    )?)
}

/// CPU ticks (user + system, own and reaped children's) of `pid`.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    // After the name: state is field 3, so utime (14) .. cstime (17) are at 11..=14.
    let sum = fields
        .get(11..=14)?
        .iter()
        .map(|field| field.parse::<u64>().unwrap_or(0))
        .sum();
    Some(sum)
}

/// Resident set size of `pid` in bytes.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes * 1024)
}

/// The cluster manager's processes on `host`: every process in its namespace except the HTTP
/// service and the scaffolding.
fn manager_processes(system: &dyn System, host: usize) -> Vec<u32> {
    let scaffolding = system.scaffolding(host);
    let inode = system.lab().topology().namespace_inodes[host];
    netns::processes_in_namespace(inode)
        .into_iter()
        .filter(|pid| !scaffolding.contains(pid) && !is_http_service(*pid))
        .collect()
}

/// Measures the idle footprint over `window` (shorter if `stop` is set).
fn idle_footprint(system: &dyn System, window: Duration, stop: &AtomicBool) -> Footprint {
    // SAFETY: sysconf(3) has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let hosts: Vec<usize> = system.lab().hosts().collect();
    let start_ticks: Vec<Vec<(u32, u64)>> = hosts
        .iter()
        .map(|&host| {
            manager_processes(system, host)
                .into_iter()
                .filter_map(|pid| Some((pid, cpu_ticks(pid)?)))
                .collect()
        })
        .collect();
    let started = Instant::now();
    let mut rss_sums = vec![0f64; hosts.len()];
    let mut process_sums = vec![0f64; hosts.len()];
    let mut samples = 0u32;
    loop {
        for (index, &host) in hosts.iter().enumerate() {
            let pids = manager_processes(system, host);
            rss_sums[index] += pids.iter().filter_map(|&pid| rss_bytes(pid)).sum::<u64>() as f64;
            process_sums[index] += pids.len() as f64;
        }
        samples += 1;
        if started.elapsed() >= window || stop.load(Ordering::SeqCst) {
            break;
        }
        std::thread::sleep(RSS_SAMPLE_PERIOD.min(window.saturating_sub(started.elapsed())));
    }
    let elapsed = started.elapsed();
    let mut cpu_percent_sum = 0.0;
    for (index, &host) in hosts.iter().enumerate() {
        let mut used = 0u64;
        for pid in manager_processes(system, host) {
            let Some(now) = cpu_ticks(pid) else { continue };
            let before = start_ticks[index]
                .iter()
                .find(|(known, _)| *known == pid)
                .map_or(0, |(_, ticks)| *ticks);
            used += now.saturating_sub(before);
        }
        cpu_percent_sum += used as f64 / ticks_per_second / elapsed.as_secs_f64() * 100.0;
    }
    let count = hosts.len() as f64;
    Footprint {
        rss_bytes: rss_sums.iter().sum::<f64>() / f64::from(samples) / count,
        cpu_percent: cpu_percent_sum / count,
        processes: process_sums.iter().sum::<f64>() / f64::from(samples) / count,
        window: elapsed,
    }
}

/// Runs `body` against a system and records an error in the row instead of failing the whole
/// comparison; the guard counter is read before the lab goes.
fn finish_row(row: &mut Row, lab: Option<&Lab>, result: Result<()>) {
    if let Err(error) = result {
        row.error = Some(format!("{error:#}"));
    }
    if let Some(lab) = lab {
        match lab.guard_violations() {
            Ok(count) => row.guard_violations = count,
            Err(error) => {
                row.guard_violations = u64::MAX;
                row.error
                    .get_or_insert_with(|| format!("reading the guard counters: {error}"));
            }
        }
    }
}

/// The median of each step over `runs`, with the number of runs that recorded it.
fn steps_summary<'a>(runs: impl Iterator<Item = &'a TakeoverSteps> + Clone) -> String {
    let step = |name: &str, of: fn(&TakeoverSteps) -> Option<Duration>| {
        let samples: Vec<Duration> = runs.clone().filter_map(of).collect();
        format!(
            "{name} {} ({})",
            seconds(percentile(&samples, 50.0)),
            samples.len()
        )
    };
    [
        step("node_down queued", |s| s.queued),
        step("lease released", |s| s.released),
        step("run done", |s| s.started),
    ]
    .join(", ")
}

fn seconds(duration: Option<Duration>) -> String {
    duration.map_or("-".to_string(), |duration| {
        format!("{:.3} s", duration.as_secs_f64())
    })
}

fn ratio(numerator: Option<Duration>, denominator: Option<Duration>) -> String {
    match (numerator, denominator) {
        (Some(numerator), Some(denominator)) if !denominator.is_zero() => {
            format!(
                "{:.2}x",
                numerator.as_secs_f64() / denominator.as_secs_f64()
            )
        }
        _ => "n/a".to_string(),
    }
}

impl CompareReport {
    /// The split faults' figures, per system that measured them.
    fn write_splits(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for row in self.rows.iter().filter(|row| !row.splits.is_empty()) {
            writeln!(
                formatter,
                "split brain: {} [{}]:",
                row.system,
                row.settings_short()
            )?;
            for result in &row.splits {
                writeln!(formatter, "  {result}")?;
            }
        }
        Ok(())
    }

    /// The header line and the table of the systems' failover times and idle footprints.
    fn write_table(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            formatter,
            "node failure (links down + SIGKILL of every process of the holder) -> first HTTP answer from another host at {SERVICE_ADDRESS}:{SERVICE_PORT}, a probe sent every 10 ms (up to {PROBES_IN_FLIGHT} in flight, 50 ms timeout); 3 hosts, 1 IP network"
        )?;
        let header = [
            "system",
            "settings",
            "runs",
            "median",
            "p90",
            "worst",
            "idle RSS/node",
            "idle CPU/node",
        ];
        let mut lines: Vec<[String; 8]> = vec![header.map(str::to_string)];
        for row in &self.rows {
            let runs = if row.failed_runs.is_empty() && row.failovers.len() == row.runs_requested {
                format!("{}", row.failovers.len())
            } else {
                format!("{}/{}", row.failovers.len(), row.runs_requested)
            };
            let (rss, cpu) = match row.footprint {
                Some(footprint) => (
                    format!(
                        "{:.1} MB ({:.0} procs)",
                        footprint.rss_bytes / 1_000_000.0,
                        footprint.processes
                    ),
                    format!(
                        "{:.2} % ({} s)",
                        footprint.cpu_percent,
                        footprint.window.as_secs()
                    ),
                ),
                None => ("-".to_string(), "-".to_string()),
            };
            lines.push([
                row.system.clone(),
                row.settings.clone(),
                runs,
                seconds(row.median()),
                seconds(row.p90()),
                seconds(row.worst()),
                rss,
                cpu,
            ]);
        }
        let mut widths = [0usize; 8];
        for line in &lines {
            for (width, cell) in widths.iter_mut().zip(line.iter()) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for line in &lines {
            let mut text = String::new();
            for (index, cell) in line.iter().enumerate() {
                let _ = write!(text, "{cell:<width$}  ", width = widths[index]);
            }
            writeln!(formatter, "{}", text.trim_end())?;
        }
        Ok(())
    }

    /// Systems skipped, runs failed, moves refused, systems not measured to the end.
    fn write_problems(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (system, reason) in &self.skipped {
            writeln!(formatter, "{system}: {reason}")?;
        }
        for row in &self.rows {
            if let Some(error) = &row.error {
                writeln!(
                    formatter,
                    "{} [{}]: not measured to the end: {error}",
                    row.system, row.settings
                )?;
            }
            for refused in &row.refused_moves {
                writeln!(
                    formatter,
                    "{} [{}]: move refused {refused}",
                    row.system,
                    row.settings_short()
                )?;
            }
            for failed in &row.failed_runs {
                writeln!(
                    formatter,
                    "{} [{}]: {failed}",
                    row.system,
                    row.settings_short()
                )?;
            }
        }
        Ok(())
    }

    /// The ratios of the medians, to Halcyon's and to the fast profile's.
    fn write_ratios(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let halcyon = self
            .rows
            .iter()
            .find(|row| row.system == halcyon::SYSTEM)
            .and_then(Row::median);
        writeln!(formatter, "ratios (median / Halcyon median):")?;
        for row in self
            .rows
            .iter()
            .filter(|row| row.system != halcyon::SYSTEM && row.system != halcyon::FAST_SYSTEM)
        {
            writeln!(
                formatter,
                "  {} [{}]: {}",
                row.system,
                row.settings_short(),
                ratio(row.median(), halcyon)
            )?;
        }
        if halcyon.is_none() {
            writeln!(formatter, "  (Halcyon not measured: no ratios)")?;
        }
        if let Some(fast) = self
            .rows
            .iter()
            .find(|row| row.system == halcyon::FAST_SYSTEM)
        {
            writeln!(formatter, "ratios (Halcyon fast median / median):")?;
            for row in self
                .rows
                .iter()
                .filter(|row| row.system != halcyon::FAST_SYSTEM)
            {
                writeln!(
                    formatter,
                    "  {} [{}]: {}",
                    row.system,
                    row.settings_short(),
                    ratio(fast.median(), row.median())
                )?;
            }
        }
        Ok(())
    }

    /// The checker's double activations per system, and the times and steps by the role of the host lost.
    fn write_checks(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for row in &self.rows {
            writeln!(
                formatter,
                "checker: {} [{}]: service address on two hosts at once in {} of {} runs",
                row.system,
                row.settings_short(),
                row.double_activations,
                row.failovers.len()
            )?;
            let mut roles: Vec<&'static str> = row.roles.iter().flatten().copied().collect();
            roles.sort();
            roles.dedup();
            for role in roles {
                let (with, without): (Vec<_>, Vec<_>) = row
                    .failovers
                    .iter()
                    .zip(&row.roles)
                    .partition(|(_, killed)| **killed == Some(role));
                let with: Vec<Duration> = with.into_iter().map(|(time, _)| *time).collect();
                let without: Vec<Duration> = without.into_iter().map(|(time, _)| *time).collect();
                writeln!(
                    formatter,
                    "  {} of {} measured runs powered off the {role} (median {}, p90 {}, worst {}), the others a non-{role} (median {}, p90 {}, worst {})",
                    with.len(),
                    row.failovers.len(),
                    seconds(percentile(&with, 50.0)),
                    seconds(percentile(&with, 90.0)),
                    seconds(with.iter().max().copied()),
                    seconds(percentile(&without, 50.0)),
                    seconds(percentile(&without, 90.0)),
                    seconds(without.iter().max().copied())
                )?;
                if row.steps.iter().any(Option::is_some) {
                    let (with, without): (Vec<_>, Vec<_>) = row
                        .steps
                        .iter()
                        .zip(&row.roles)
                        .filter_map(|(steps, killed)| Some((*steps.as_ref()?, *killed)))
                        .partition(|(_, killed)| *killed == Some(role));
                    writeln!(
                        formatter,
                        "  steps after T0 (medians; the new holder's event log): the {role} powered off: {}; a non-{role}: {}",
                        steps_summary(with.iter().map(|(steps, _)| steps)),
                        steps_summary(without.iter().map(|(steps, _)| steps)),
                    )?;
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for CompareReport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_table(formatter)?;
        self.write_problems(formatter)?;
        self.write_ratios(formatter)?;
        self.write_checks(formatter)?;
        self.write_splits(formatter)?;
        for note in &self.notes {
            writeln!(formatter, "note: {note}")?;
        }
        if self.interrupted {
            writeln!(formatter, "interrupted: the results are partial")?;
        }
        writeln!(
            formatter,
            "guard violations (packets from a lab namespace to outside 198.18.0.0/15, all labs): {}",
            self.guard_violations()
        )?;
        write!(formatter, "command: {}", self.command_line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate() {
        let samples: Vec<Duration> = (1..=10).map(Duration::from_secs).collect();
        assert_eq!(
            percentile(&samples, 50.0),
            Some(Duration::from_millis(5500))
        );
        assert_eq!(
            percentile(&samples, 90.0),
            Some(Duration::from_millis(9100))
        );
        assert_eq!(percentile(&samples, 100.0), Some(Duration::from_secs(10)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn answers_name_hosts() {
        assert_eq!(host_of_answer("h2"), Some(2));
        assert_eq!(host_of_answer("hello from h3\n"), Some(3));
        assert_eq!(host_of_answer("nobody"), None);
    }

    #[test]
    fn systems_parse() {
        assert_eq!(
            SystemKind::parse("Pacemaker").unwrap(),
            SystemKind::Pacemaker
        );
        assert_eq!(
            SystemKind::parse("halcyon-fast").unwrap(),
            SystemKind::HalcyonFast
        );
        assert_eq!(
            SystemKind::parse("halcyon-insecure").unwrap(),
            SystemKind::HalcyonInsecure
        );
        assert!(SystemKind::parse("heartbeat").is_err());
    }
}
