//! The external checker: watches the hosts from outside and does not trust the cluster's view.
//!
//! A sampler thread looks at every host every `sample_period` (5 ms by default): which watched
//! addresses are configured there (a netlink RTM_GETADDR dump through a socket opened inside the
//! host's namespace) and which watched service processes are alive there (by PID or by a marker
//! in the command line, attributed to a host by the process's network namespace). Optionally
//! probe threads per package, inside the client namespace, send an HTTP GET to the package's
//! address every `probe_period`; the response body names the host that answered. With
//! `probes_in_flight` above 1, that many threads take turns, so a probe still starts every
//! `probe_period` while others wait out their timeout (a probe whose SYN went to a host that
//! lost the address is answered by nobody).
//!
//! Definitions, per package:
//! - *active* on a host: its address is configured there, or its service runs there;
//! - *serving* on a host: its address is configured there and (if a service is watched) its
//!   service runs there too;
//! - a *double activation*: an interval during which the package is active on two or more
//!   hosts at once;
//! - an *outage*: an interval during which no host serves the package, once it has been served;
//! - a *probe outage*: from the last answer before one or more failed probes to the next answer.
//!
//! Interval edges are sample instants, so a length is exact to about one sample period.

use std::fmt;
use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::lab::{Topology, host_label, http_get, io_error};
use crate::names::{CLIENT, HOSTS_MAX};
use crate::netlink::RouteSocket;
use crate::{LabError, netns};

/// Largest number of watched packages.
pub const PACKAGES_MAX: usize = 64;
/// Changes kept in the timeline; later ones are counted, not kept.
pub const TIMELINE_ENTRIES_MAX: usize = 1_000_000;
/// Longest command line read when matching a marker.
const COMMAND_LINE_BYTES_MAX: usize = 4096;

const _: () = assert!(HOSTS_MAX < 64, "host sets are u64 bit masks");

/// How a package's service process is recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceMatch {
    /// Any of these PIDs (more can be added with [`Checker::watch_pid`]).
    Pids(Vec<u32>),
    /// Any process whose command line (arguments joined by spaces) contains this text.
    CommandLineContains(String),
}

/// One package to watch.
#[derive(Debug, Clone)]
pub struct PackageWatch {
    pub name: String,
    /// Its relocatable address.
    pub address: Ipv4Addr,
    pub service: Option<ServiceMatch>,
    /// Probe `http://address:port/` from the client namespace.
    pub probe_port: Option<u16>,
}

#[derive(Debug, Clone)]
pub struct CheckerOptions {
    pub sample_period: Duration,
    pub probe_period: Duration,
    /// Connect plus response time allowed to one probe.
    pub probe_timeout: Duration,
    /// Probes of one package that may be in flight at once: that many threads, each probing
    /// every `probe_period * probes_in_flight`, started `probe_period` apart. With 1, one
    /// probe after another: a failed one delays the next by its timeout, so an answer's time
    /// is known to within `probe_timeout` only.
    pub probes_in_flight: u32,
    /// The checker stops by itself after this long.
    pub run_time_max: Duration,
}

impl Default for CheckerOptions {
    fn default() -> Self {
        CheckerOptions {
            sample_period: Duration::from_millis(5),
            probe_period: Duration::from_millis(10),
            probe_timeout: Duration::from_millis(50),
            probes_in_flight: 1,
            run_time_max: Duration::from_secs(3600),
        }
    }
}

/// One change of what the sampler saw for a package.
#[derive(Debug, Clone, Copy)]
struct Change {
    at: Instant,
    package: usize,
    address_hosts: u64,
    service_hosts: u64,
}

/// One change of what the probe of a package got.
#[derive(Debug, Clone)]
struct ProbeChange {
    at: Instant,
    package: usize,
    /// The body of the answer (the host's name), or None when the probe failed.
    answer: Option<String>,
    /// For a failure: the completion of the last successful probe before it.
    last_answer_at: Option<Instant>,
}

#[derive(Default)]
struct Recording {
    samples: u64,
    sample_errors: u64,
    sampler_realtime: bool,
    last_sample: Option<Instant>,
    max_sample_gap: Duration,
    changes: Vec<Change>,
    probes: u64,
    probe_changes: Vec<ProbeChange>,
    /// Per package with a probe: what its probes last recorded.
    probe_states: Vec<ProbeState>,
    overflow: u64,
}

/// What a package's probes (one or several threads) recorded last.
#[derive(Debug, Clone, Default)]
struct ProbeState {
    /// The last recorded result (an answer's body, or None for a failure); None before any.
    previous: Option<Option<String>>,
    /// The completion of the last successful probe.
    last_answer_at: Option<Instant>,
}

impl ProbeState {
    /// A probe of `package` sent at `sent` ended at `at` with `answer`: the change to record,
    /// if any. A failure of a probe sent before the last answer came is stale (another
    /// probe, sent later, was answered meanwhile) and changes nothing.
    fn probed(
        &mut self,
        package: usize,
        sent: Instant,
        at: Instant,
        answer: Option<String>,
    ) -> Option<ProbeChange> {
        assert!(sent <= at, "a probe ends after it was sent");
        if answer.is_none() && self.last_answer_at.is_some_and(|last| last > sent) {
            return None;
        }
        let change = (self.previous.as_ref() != Some(&answer)).then(|| ProbeChange {
            at,
            package,
            answer: answer.clone(),
            last_answer_at: if answer.is_none() {
                self.last_answer_at
            } else {
                None
            },
        });
        if answer.is_some() {
            self.last_answer_at = Some(at);
        }
        self.previous = Some(answer);
        change
    }
}

struct Shared {
    stop: AtomicBool,
    recording: Mutex<Recording>,
    service_pids: Mutex<Vec<Vec<u32>>>,
}

impl Shared {
    fn recording(&self) -> MutexGuard<'_, Recording> {
        self.recording
            .lock()
            .expect("a lock was poisoned: a thread panicked while holding it")
    }
}

/// A running checker. Dropping it stops its threads.
pub struct Checker {
    started: Instant,
    packages: Vec<PackageWatch>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Checker {
    /// Starts sampling the lab described by `topology` (see [`crate::Lab::topology`]).
    pub fn start(
        topology: Topology,
        packages: Vec<PackageWatch>,
        options: CheckerOptions,
    ) -> Result<Checker, LabError> {
        if packages.is_empty() || packages.len() > PACKAGES_MAX {
            return Err(LabError::Spec(format!("watch 1..={PACKAGES_MAX} packages")));
        }
        let mut sockets = Vec::new();
        for host in 1..=topology.hosts {
            sockets.push(
                RouteSocket::open_in(&topology.namespace_paths[host])
                    .map_err(io_error("opening netlink in a host"))?,
            );
        }
        let service_pids = packages
            .iter()
            .map(|package| match &package.service {
                Some(ServiceMatch::Pids(pids)) => pids.clone(),
                _ => Vec::new(),
            })
            .collect();
        if options.probes_in_flight == 0 {
            return Err(LabError::Spec("probes_in_flight is at least 1".into()));
        }
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            recording: Mutex::new(Recording {
                probe_states: vec![ProbeState::default(); packages.len()],
                ..Recording::default()
            }),
            service_pids: Mutex::new(service_pids),
        });
        let started = Instant::now();
        let mut threads = Vec::new();
        let sampler = Sampler {
            topology: topology.clone(),
            packages: packages.clone(),
            sockets,
            shared: shared.clone(),
            options: options.clone(),
            started,
        };
        threads.push(
            std::thread::Builder::new()
                .name("checker-sampler".into())
                .spawn(move || sampler.run())
                .map_err(io_error("starting the sampler"))?,
        );
        for (index, package) in packages.iter().enumerate() {
            let Some(port) = package.probe_port else {
                continue;
            };
            for turn in 0..options.probes_in_flight {
                let prober = Prober {
                    client_namespace: topology.namespace_paths[CLIENT].clone(),
                    package: index,
                    target: SocketAddrV4::new(package.address, port),
                    shared: shared.clone(),
                    first: started + options.probe_period * turn,
                    period: options.probe_period * options.probes_in_flight,
                    options: options.clone(),
                    started,
                };
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("checker-probe-{index}-{turn}"))
                        .spawn(move || prober.run())
                        .map_err(io_error("starting a probe"))?,
                );
            }
        }
        Ok(Checker {
            started,
            packages,
            shared,
            threads,
        })
    }

    /// Also counts `pid` as the service of package number `package` (e.g. after a restart).
    pub fn watch_pid(&self, package: usize, pid: u32) {
        let mut pids = self
            .shared
            .service_pids
            .lock()
            .expect("a lock was poisoned: a thread panicked while holding it");
        pids[package].push(pid);
    }

    pub fn samples(&self) -> u64 {
        self.shared.recording().samples
    }

    /// Waits (at most `timeout`) until `count` more samples have been taken, so that what the
    /// caller just did has been seen.
    pub fn wait_for_samples(&self, count: u64, timeout: Duration) -> bool {
        let target = self.samples() + count;
        let deadline = Instant::now() + timeout;
        while self.samples() < target {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// The report of everything seen so far (the checker keeps running).
    pub fn report(&self) -> Report {
        let recording = self.shared.recording();
        build_report(self.started, &self.packages, &recording)
    }

    /// Stops the threads and returns the final report.
    pub fn stop(mut self) -> Report {
        self.join();
        self.report()
    }

    fn join(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.join();
    }
}

struct Sampler {
    topology: Topology,
    packages: Vec<PackageWatch>,
    sockets: Vec<RouteSocket>,
    shared: Arc<Shared>,
    options: CheckerOptions,
    started: Instant,
}

impl Sampler {
    fn run(mut self) {
        let realtime = raise_priority();
        self.shared.recording().sampler_realtime = realtime;
        let hosts = self.topology.hosts;
        let mut addresses: Vec<Vec<Ipv4Addr>> = vec![Vec::new(); hosts];
        let mut previous: Vec<Option<(u64, u64)>> = vec![None; self.packages.len()];
        let markers: Vec<Option<String>> = self
            .packages
            .iter()
            .map(|package| match &package.service {
                Some(ServiceMatch::CommandLineContains(marker)) => Some(marker.clone()),
                _ => None,
            })
            .collect();
        let any_marker = markers.iter().any(Option::is_some);
        let mut next = Instant::now();
        while !self.shared.stop.load(Ordering::Relaxed)
            && self.started.elapsed() < self.options.run_time_max
        {
            let at = Instant::now();
            let mut errors = 0;
            for (host_index, socket) in self.sockets.iter_mut().enumerate() {
                match socket.ipv4_addresses() {
                    Ok(found) => {
                        addresses[host_index] =
                            found.into_iter().map(|entry| entry.address).collect()
                    }
                    Err(_) => errors += 1, // keep what was seen last
                }
            }
            let mut service_hosts = vec![0u64; self.packages.len()];
            {
                let pids = self
                    .shared
                    .service_pids
                    .lock()
                    .expect("a lock was poisoned: a thread panicked while holding it");
                for (package, pids) in pids.iter().enumerate() {
                    for &pid in pids {
                        if let Some(host) = self.host_of_process(pid)
                            && netns::process_is_live(pid)
                        {
                            service_hosts[package] |= 1 << host;
                        }
                    }
                }
            }
            if any_marker {
                self.match_markers(&markers, &mut service_hosts);
            }
            let mut recording = self.shared.recording();
            recording.samples += 1;
            recording.sample_errors += errors;
            if let Some(last) = recording.last_sample {
                recording.max_sample_gap = recording.max_sample_gap.max(at - last);
            }
            recording.last_sample = Some(at);
            for (package_index, package) in self.packages.iter().enumerate() {
                let mut address_hosts = 0u64;
                for (host_index, host_addresses) in addresses.iter().enumerate() {
                    if host_addresses.contains(&package.address) {
                        address_hosts |= 1 << (host_index + 1);
                    }
                }
                let state = (address_hosts, service_hosts[package_index]);
                if previous[package_index] != Some(state) {
                    previous[package_index] = Some(state);
                    push_bounded(
                        &mut recording,
                        Change {
                            at,
                            package: package_index,
                            address_hosts,
                            service_hosts: state.1,
                        },
                    );
                }
            }
            drop(recording);
            next += self.options.sample_period;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else {
                next = now; // behind: sample again at once, do not try to catch up
            }
        }
    }

    /// The host (never the client) whose namespace `pid` is in.
    fn host_of_process(&self, pid: u32) -> Option<usize> {
        let host = self
            .topology
            .host_of_namespace(netns::process_namespace_inode(pid)?)?;
        (host != CLIENT).then_some(host)
    }

    fn match_markers(&self, markers: &[Option<String>], service_hosts: &mut [u64]) {
        let Ok(entries) = fs::read_dir("/proc") else {
            return;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<u32>().ok())
            else {
                continue;
            };
            let Some(host) = self.host_of_process(pid) else {
                continue;
            };
            let Ok(mut command_line) = fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            command_line.truncate(COMMAND_LINE_BYTES_MAX);
            for byte in command_line.iter_mut() {
                if *byte == 0 {
                    *byte = b' ';
                }
            }
            let command_line = String::from_utf8_lossy(&command_line);
            for (package, marker) in markers.iter().enumerate() {
                if let Some(marker) = marker
                    && command_line.contains(marker.as_str())
                    && netns::process_is_live(pid)
                {
                    service_hosts[package] |= 1 << host;
                }
            }
        }
    }
}

/// Real-time priority for the calling thread (SCHED_FIFO, low priority 10) when allowed, so
/// that a loaded machine delays samples less; the threads sleep almost all the time.
fn raise_priority() -> bool {
    let parameters = libc::sched_param { sched_priority: 10 };
    // SAFETY: sched_setscheduler(2) on the calling thread (pid 0) with a valid parameter block.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &parameters) == 0 }
}

fn push_bounded(recording: &mut Recording, change: Change) {
    if recording.changes.len() < TIMELINE_ENTRIES_MAX {
        recording.changes.push(change);
    } else {
        recording.overflow += 1;
    }
}

struct Prober {
    client_namespace: std::path::PathBuf,
    package: usize,
    target: SocketAddrV4,
    shared: Arc<Shared>,
    /// When its first probe is sent.
    first: Instant,
    /// Between the sends of its probes (when they end in time).
    period: Duration,
    options: CheckerOptions,
    started: Instant,
}

impl Prober {
    fn run(self) {
        raise_priority();
        if let Err(error) = netns::enter(&self.client_namespace) {
            eprintln!("halcyon-lab: checker probe cannot enter the client namespace: {error}");
            return;
        }
        let mut next = self.first;
        while !self.shared.stop.load(Ordering::Relaxed)
            && self.started.elapsed() < self.options.run_time_max
        {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else {
                next = now;
            }
            let sent = Instant::now();
            let answer = http_get(self.target, self.options.probe_timeout).ok();
            let mut recording = self.shared.recording();
            // Read under the lock: the changes of several probe threads stay in time order.
            let at = Instant::now();
            recording.probes += 1;
            if let Some(change) =
                recording.probe_states[self.package].probed(self.package, sent, at, answer)
            {
                if recording.probe_changes.len() < TIMELINE_ENTRIES_MAX {
                    recording.probe_changes.push(change);
                } else {
                    recording.overflow += 1;
                }
            }
            drop(recording);
            next += self.period;
        }
    }
}

/// An interval during which something was wrong with a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    pub package: String,
    /// For a double activation the hosts it was active on; for an outage the hosts that served
    /// it just before.
    pub hosts: Vec<usize>,
    pub start: Instant,
    /// Start, counted from the checker's start.
    pub offset: Duration,
    pub length: Duration,
    /// False when the interval was still open when the report was made.
    pub ended: bool,
}

/// A change of which host (if any) answered a package's probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeAnswer {
    pub package: String,
    pub at: Instant,
    pub offset: Duration,
    pub answer: Option<String>,
}

/// A change of what the sampler saw for a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    pub package: String,
    pub at: Instant,
    pub offset: Duration,
    pub address_hosts: Vec<usize>,
    pub service_hosts: Vec<usize>,
}

/// What the checker saw.
#[derive(Debug, Clone)]
pub struct Report {
    pub started: Instant,
    pub duration: Duration,
    pub samples: u64,
    pub sample_errors: u64,
    /// Whether the sampler ran at real-time priority.
    pub sampler_realtime: bool,
    pub max_sample_gap: Duration,
    pub probes: u64,
    pub packages: Vec<String>,
    pub double_activations: Vec<Interval>,
    pub outages: Vec<Interval>,
    pub probe_outages: Vec<Interval>,
    pub probe_answers: Vec<ProbeAnswer>,
    pub timeline: Vec<TimelineEntry>,
    /// Changes not kept because the timeline was full.
    pub timeline_overflow: u64,
}

impl Report {
    /// Time from `since` to the first probe answer at or after it from a host other than
    /// `other_than` (any host when None): a failover time as the client sees it.
    pub fn first_answer_after(
        &self,
        package: &str,
        since: Instant,
        other_than: Option<&str>,
    ) -> Option<Duration> {
        self.probe_answers
            .iter()
            .filter(|change| change.package == package && change.at >= since)
            .find(|change| match (&change.answer, other_than) {
                (Some(answer), Some(old)) => answer != old,
                (Some(_), None) => true,
                (None, _) => false,
            })
            .map(|change| change.at - since)
    }
}

fn mask_hosts(mask: u64) -> Vec<usize> {
    (1..64).filter(|host| mask & (1 << host) != 0).collect()
}

fn build_report(started: Instant, packages: &[PackageWatch], recording: &Recording) -> Report {
    let end = recording.last_sample.unwrap_or(started);
    let name = |index: usize| packages[index].name.clone();
    let mut double_activations = Vec::new();
    let mut outages = Vec::new();
    for (index, package) in packages.iter().enumerate() {
        let changes: Vec<&Change> = recording
            .changes
            .iter()
            .filter(|change| change.package == index)
            .collect();
        let mut double: Option<(Instant, u64)> = None;
        let mut outage: Option<(Instant, u64)> = None;
        let mut last_serving = 0u64;
        let mut ever_served = false;
        for change in &changes {
            let active = change.address_hosts | change.service_hosts;
            let serving = if package.service.is_some() {
                change.address_hosts & change.service_hosts
            } else {
                change.address_hosts
            };
            if active.count_ones() >= 2 {
                let entry = double.get_or_insert((change.at, 0));
                entry.1 |= active;
            } else if let Some((start, hosts)) = double.take() {
                double_activations.push(interval(
                    name(index),
                    hosts,
                    start,
                    change.at,
                    started,
                    true,
                ));
            }
            if serving != 0 {
                if let Some((start, hosts)) = outage.take() {
                    outages.push(interval(
                        name(index),
                        hosts,
                        start,
                        change.at,
                        started,
                        true,
                    ));
                }
                ever_served = true;
                last_serving = serving;
            } else if ever_served && outage.is_none() {
                outage = Some((change.at, last_serving));
            }
        }
        if let Some((start, hosts)) = double {
            double_activations.push(interval(name(index), hosts, start, end, started, false));
        }
        if let Some((start, hosts)) = outage {
            outages.push(interval(name(index), hosts, start, end, started, false));
        }
    }

    let mut probe_outages = Vec::new();
    let mut open: Vec<Option<Instant>> = vec![None; packages.len()];
    let mut last_probe = started;
    for change in &recording.probe_changes {
        last_probe = last_probe.max(change.at);
        match (&change.answer, change.last_answer_at) {
            (None, Some(last_answer)) => open[change.package] = Some(last_answer),
            (Some(_), _) => {
                if let Some(start) = open[change.package].take() {
                    probe_outages.push(interval(
                        name(change.package),
                        0,
                        start,
                        change.at,
                        started,
                        true,
                    ));
                }
            }
            (None, None) => {}
        }
    }
    for (package, start) in open.into_iter().enumerate() {
        if let Some(start) = start {
            probe_outages.push(interval(
                name(package),
                0,
                start,
                last_probe.max(end),
                started,
                false,
            ));
        }
    }

    Report {
        started,
        duration: end.saturating_duration_since(started),
        samples: recording.samples,
        sample_errors: recording.sample_errors,
        sampler_realtime: recording.sampler_realtime,
        max_sample_gap: recording.max_sample_gap,
        probes: recording.probes,
        packages: packages
            .iter()
            .map(|package| package.name.clone())
            .collect(),
        double_activations,
        outages,
        probe_outages,
        probe_answers: recording
            .probe_changes
            .iter()
            .map(|change| ProbeAnswer {
                package: name(change.package),
                at: change.at,
                offset: change.at.saturating_duration_since(started),
                answer: change.answer.clone(),
            })
            .collect(),
        timeline: recording
            .changes
            .iter()
            .map(|change| TimelineEntry {
                package: name(change.package),
                at: change.at,
                offset: change.at.saturating_duration_since(started),
                address_hosts: mask_hosts(change.address_hosts),
                service_hosts: mask_hosts(change.service_hosts),
            })
            .collect(),
        timeline_overflow: recording.overflow,
    }
}

fn interval(
    package: String,
    hosts: u64,
    start: Instant,
    end: Instant,
    started: Instant,
    ended: bool,
) -> Interval {
    Interval {
        package,
        hosts: mask_hosts(hosts),
        start,
        offset: start.saturating_duration_since(started),
        length: end.saturating_duration_since(start),
        ended,
    }
}

fn hosts_text(hosts: &[usize]) -> String {
    if hosts.is_empty() {
        return "-".to_string();
    }
    hosts
        .iter()
        .map(|&host| host_label(host))
        .collect::<Vec<_>>()
        .join(",")
}

fn milliseconds(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

impl fmt::Display for Report {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            formatter,
            "checker: {} samples over {:.3} s (largest gap {}, {} sample errors{}), {} probes",
            self.samples,
            self.duration.as_secs_f64(),
            milliseconds(self.max_sample_gap),
            self.sample_errors,
            if self.sampler_realtime {
                ", real-time priority"
            } else {
                ""
            },
            self.probes
        )?;
        writeln!(
            formatter,
            "double activations: {}   outages: {}   probe outages: {}",
            self.double_activations.len(),
            self.outages.len(),
            self.probe_outages.len()
        )?;
        let sections = [
            ("double activation", &self.double_activations),
            ("outage", &self.outages),
            ("probe outage", &self.probe_outages),
        ];
        for (label, intervals) in sections {
            for interval in intervals {
                writeln!(
                    formatter,
                    "  {label} of {} on {} at +{:.3} s for {}{}",
                    interval.package,
                    hosts_text(&interval.hosts),
                    interval.offset.as_secs_f64(),
                    milliseconds(interval.length),
                    if interval.ended { "" } else { " (still open)" }
                )?;
            }
        }
        for answer in &self.probe_answers {
            writeln!(
                formatter,
                "  probe of {} at +{:.3} s: {}",
                answer.package,
                answer.offset.as_secs_f64(),
                answer.answer.as_deref().unwrap_or("no answer")
            )?;
        }
        if self.timeline_overflow > 0 {
            writeln!(
                formatter,
                "  ({} changes not kept: timeline full)",
                self.timeline_overflow
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Probes in flight at once: a failure of a probe sent before the last answer came is
    /// stale and changes nothing; one sent after it is an outage, from that answer; the
    /// first answer after it is recorded at its completion.
    #[test]
    fn a_probe_that_failed_after_a_later_one_was_answered_changes_nothing() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let h1 = || Some("h1".to_owned());
        let h2 = || Some("h2".to_owned());
        let mut state = ProbeState::default();
        let first = state
            .probed(0, ms(0), ms(1), h1())
            .expect("the first answer");
        assert_eq!((first.at, first.answer.clone()), (ms(1), h1()));
        assert!(state.probed(0, ms(10), ms(11), h1()).is_none(), "no change");
        // Sent at 20 and 30 while the address moved; the second one is answered by h2 at
        // 35, the first times out at 70: stale.
        let moved = state.probed(0, ms(30), ms(35), h2()).expect("h2 answers");
        assert_eq!(
            (moved.at, moved.answer, moved.last_answer_at),
            (ms(35), h2(), None)
        );
        assert!(
            state.probed(0, ms(20), ms(70), None).is_none(),
            "stale failure"
        );
        assert!(state.probed(0, ms(40), ms(41), h2()).is_none());
        // Sent after the last answer (41): a real failure, its outage counted from 41.
        let failed = state.probed(0, ms(50), ms(100), None).expect("a failure");
        assert_eq!((failed.at, failed.last_answer_at), (ms(100), Some(ms(41))));
        assert!(
            state.probed(0, ms(60), ms(110), None).is_none(),
            "still failing"
        );
        let back = state
            .probed(0, ms(120), ms(121), h2())
            .expect("answered again");
        assert_eq!(back.answer, h2());
    }

    /// One probe at a time (the default): every failure counts, as before.
    #[test]
    fn one_probe_at_a_time_records_every_change() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut state = ProbeState::default();
        let mut changes = Vec::new();
        let mut sent = 0;
        for (took, answer) in [
            (1, Some("h1")),
            (50, None),
            (50, None),
            (1, Some("h2")),
            (50, None),
        ] {
            let answer = answer.map(str::to_owned);
            changes.extend(state.probed(0, ms(sent), ms(sent + took), answer.clone()));
            sent += took + 10;
        }
        let answers: Vec<Option<&str>> = changes.iter().map(|c| c.answer.as_deref()).collect();
        assert_eq!(answers, [Some("h1"), None, Some("h2"), None]);
        assert_eq!(changes[1].last_answer_at, Some(ms(1)));
        assert_eq!(changes[3].last_answer_at, Some(ms(132)));
    }

    fn watch(service: bool) -> Vec<PackageWatch> {
        vec![PackageWatch {
            name: "web".into(),
            address: Ipv4Addr::new(198, 18, 1, 200),
            service: service.then(|| ServiceMatch::CommandLineContains("web".into())),
            probe_port: None,
        }]
    }

    fn check(
        service: bool,
        steps: &[(u64, u64, u64)],
        expected_double: &[(u64, u64)],
        expected_outage: &[(u64, u64)],
    ) {
        let started = Instant::now();
        let at = |ms: u64| started + Duration::from_millis(ms);
        let mut recording = Recording::default();
        for &(ms, address_hosts, service_hosts) in steps {
            recording.changes.push(Change {
                at: at(ms),
                package: 0,
                address_hosts,
                service_hosts,
            });
            recording.last_sample = Some(at(ms));
        }
        let report = build_report(started, &watch(service), &recording);
        let spans = |intervals: &[Interval]| -> Vec<(u64, u64)> {
            intervals
                .iter()
                .map(|interval| {
                    (
                        interval.offset.as_millis() as u64,
                        interval.length.as_millis() as u64,
                    )
                })
                .collect()
        };
        assert_eq!(
            spans(&report.double_activations),
            expected_double,
            "double activations"
        );
        assert_eq!(spans(&report.outages), expected_outage, "outages");
    }

    const H1: u64 = 1 << 1;
    const H2: u64 = 1 << 2;

    #[test]
    fn address_on_two_hosts_is_one_double_activation() {
        check(
            false,
            &[
                (0, 0, 0),
                (10, H1, 0),
                (50, H1 | H2, 0),
                (150, H2, 0),
                (200, H2, 0),
            ],
            &[(50, 100)],
            &[],
        );
    }

    #[test]
    fn no_host_after_serving_is_an_outage_but_not_before() {
        check(
            false,
            &[(0, 0, 0), (10, H1, 0), (50, 0, 0), (150, H2, 0)],
            &[],
            &[(50, 100)],
        );
    }

    #[test]
    fn service_on_one_host_and_address_on_another_is_double_and_not_serving() {
        check(
            true,
            &[(0, H1, H1), (20, H2, H1), (60, H2, H2)],
            &[(20, 40)],
            &[(20, 40)],
        );
    }

    #[test]
    fn open_intervals_run_to_the_last_sample() {
        check(
            false,
            &[(0, H1, 0), (30, H1 | H2, 0), (80, H1 | H2, 0)],
            &[(30, 50)],
            &[],
        );
    }
}
