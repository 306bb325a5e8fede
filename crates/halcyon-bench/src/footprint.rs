//! `footprint`: N idle daemons with one package; every daemon's resident memory (VmRSS from
//! /proc/PID/status) and CPU time (utime + stime from /proc/PID/stat, in clock ticks) sampled
//! every second over a window, once the cluster has formed and settled; after the window, the
//! physical pages each daemon and its helpers have resident, each page counted once
//! (/proc/PID/pagemap, root only): what the node's Halcyon holds in memory, where the summed
//! RSS counts twice the pages both processes map (the C library's, for one).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cluster::{Cluster, Setup};
use crate::stats::summarize;
use crate::{interrupt, loadavg};

const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// After formation, before the window: the start-up work (formation plan, package start,
/// first lease rounds) is not idle, and each daemon unmaps the code its start ran 10 s
/// after its API listens (`halcyon_daemon::resident`).
const SETTLE: Duration = Duration::from_secs(15);
const SAMPLE_PERIOD: Duration = Duration::from_secs(1);
pub const SECONDS_MAX: u64 = 3600;

/// SPEC 12's target per node at 16 nodes, idle.
pub const TARGET_RSS_MB: f64 = 20.0;
pub const TARGET_CPU_PERCENT: f64 = 1.0;
pub const TARGET_NODES: usize = 16;

pub struct Options {
    pub nodes: usize,
    pub seconds: u64,
    pub halcyon: PathBuf,
}

pub struct NodeFootprint {
    pub name: String,
    pub pid: u32,
    pub rss_median_mb: f64,
    pub rss_max_mb: f64,
    /// CPU time over the whole window, as a percentage of one core.
    pub cpu_percent: f64,
    /// The busiest one-second interval (clock-tick resolution).
    pub cpu_max_second_percent: f64,
    /// Medians over the window.
    pub locked_mb: f64,
    pub anon_mb: f64,
    pub file_mb: f64,
    pub threads: f64,
    /// The daemon's helper processes (its lease guard, when it runs one): how many (median),
    /// their summed RSS (median) and CPU over the window.
    pub helpers: f64,
    pub helpers_rss_mb: f64,
    pub helpers_cpu_percent: f64,
    /// The daemon's and its helpers' resident pages, each physical page once, after the
    /// window; `None` without the privilege to read page frame numbers.
    pub together_mb: Option<f64>,
}

pub struct Report {
    pub nodes: Vec<NodeFootprint>,
    pub window: Duration,
    pub events_during_window: Option<usize>,
    pub holder_before: String,
    pub holder_after: Option<String>,
    pub load_before: String,
    pub load_after: String,
    pub halcyon: PathBuf,
    pub clock_ticks_per_second: u64,
}

struct Sample {
    rss_kib: u64,
    cpu_ticks: u64,
    /// What the RSS is made of: locked memory (the heartbeat thread's `mlockall` when
    /// permitted locks every mapped page), anonymous and file-backed pages, and threads.
    locked_kib: u64,
    anon_kib: u64,
    file_kib: u64,
    threads: u64,
    /// The daemon's helper processes (pid, VmRSS, utime + stime), e.g. its lease guard.
    helpers: Vec<(u32, u64, u64)>,
}

pub fn run(options: &Options) -> anyhow::Result<Report> {
    if !(1..=SECONDS_MAX).contains(&options.seconds) {
        bail!("--seconds must be from 1 to {SECONDS_MAX}");
    }
    // SAFETY: sysconf reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = u64::try_from(ticks)
        .ok()
        .filter(|&t| t > 0)
        .context("sysconf(_SC_CLK_TCK) failed")?;
    let mut cluster = Cluster::start(&options.halcyon, options.nodes, Setup::default())?;
    let port = cluster.port;
    println!(
        "started {} daemons on 127.0.0.1-{} (base port {port}); waiting for formation...",
        options.nodes, options.nodes
    );
    let formed = Instant::now();
    let ready = cluster.wait_ready(READY_TIMEOUT)?;
    println!(
        "formed after {:.1} s (package on {}, coordinator {}); settling {} s, then sampling every {} s for {} s",
        formed.elapsed().as_secs_f64(),
        cluster.daemons[ready.holder].name,
        ready.coordinator,
        SETTLE.as_secs(),
        SAMPLE_PERIOD.as_secs(),
        options.seconds
    );
    let holder_before = cluster.daemons[ready.holder].name.clone();
    interrupt::sleep(SETTLE)?;
    let events_before = event_count(&cluster);
    let load_before = loadavg();

    let pids: Vec<u32> = cluster.daemons.iter().map(|d| d.pid).collect();
    let mut samples: Vec<Vec<Sample>> = pids.iter().map(|_| Vec::new()).collect();
    let mut times = Vec::new();
    let start = Instant::now();
    let window = Duration::from_secs(options.seconds);
    let mut k = 0u32;
    loop {
        let at = start + SAMPLE_PERIOD * k;
        if at > start + window {
            break;
        }
        interrupt::sleep_until(at)?;
        cluster.check_alive()?;
        times.push(Instant::now());
        for (pid, out) in pids.iter().zip(samples.iter_mut()) {
            out.push(sample(*pid)?);
        }
        k += 1;
    }
    let load_after = loadavg();
    let events_after = event_count(&cluster);
    let holder_after = cluster.wait_ready(Duration::from_secs(5)).ok();

    let window_measured = times[times.len() - 1] - times[0];
    let page_bytes = page_size()?;
    let nodes = cluster
        .daemons
        .iter()
        .zip(&samples)
        .map(|(d, s)| {
            let mut f = footprint(&d.name, d.pid, s, &times, ticks);
            let mut pids = vec![d.pid];
            pids.extend(crate::cluster::helper_pids(d.pid));
            f.together_mb = distinct_resident_pages(&pids)
                .map(|pages| (pages * page_bytes) as f64 / 1_000_000.0);
            f
        })
        .collect();
    Ok(Report {
        nodes,
        window: window_measured,
        events_during_window: events_before
            .zip(events_after)
            .map(|(b, a)| a.saturating_sub(b)),
        holder_before,
        holder_after: holder_after.map(|r| cluster.daemons[r.holder].name.clone()),
        load_before,
        load_after,
        halcyon: options.halcyon.clone(),
        clock_ticks_per_second: ticks,
    })
}

fn footprint(
    name: &str,
    pid: u32,
    samples: &[Sample],
    times: &[Instant],
    ticks_per_second: u64,
) -> NodeFootprint {
    let mb = |kib: u64| kib as f64 * 1024.0 / 1_000_000.0;
    let median = |f: &dyn Fn(&Sample) -> f64| {
        let v: Vec<f64> = samples.iter().map(f).collect();
        summarize(&v).map_or(0.0, |s| s.median)
    };
    let rss: Vec<f64> = samples.iter().map(|s| mb(s.rss_kib)).collect();
    let rss = summarize(&rss).expect("at least one sample");
    let percent = |ticks: u64, over: Duration| {
        ticks as f64 / ticks_per_second as f64 / over.as_secs_f64().max(1e-9) * 100.0
    };
    let window = times[times.len() - 1] - times[0];
    let total = samples[samples.len() - 1]
        .cpu_ticks
        .saturating_sub(samples[0].cpu_ticks);
    let cpu_max_second_percent = samples
        .windows(2)
        .zip(times.windows(2))
        .map(|(s, t)| percent(s[1].cpu_ticks.saturating_sub(s[0].cpu_ticks), t[1] - t[0]))
        .fold(0.0, f64::max);
    NodeFootprint {
        name: name.to_owned(),
        pid,
        rss_median_mb: rss.median,
        rss_max_mb: rss.max,
        cpu_percent: percent(total, window),
        cpu_max_second_percent,
        locked_mb: median(&|s| mb(s.locked_kib)),
        anon_mb: median(&|s| mb(s.anon_kib)),
        file_mb: median(&|s| mb(s.file_kib)),
        threads: median(&|s| s.threads as f64),
        helpers: median(&|s| s.helpers.len() as f64),
        helpers_rss_mb: median(&|s| mb(s.helpers.iter().map(|h| h.1).sum())),
        helpers_cpu_percent: percent(helper_ticks(samples), window),
        together_mb: None,
    }
}

/// The system's page size in bytes.
fn page_size() -> anyhow::Result<u64> {
    // SAFETY: sysconf reads a constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .context("sysconf(_SC_PAGESIZE) failed")
}

/// How many distinct physical pages the processes `pids` have resident together: the page
/// frame numbers of every present page of every mapping (/proc/PID/maps, /proc/PID/pagemap),
/// each counted once. `None` when a process cannot be read or the kernel hides the frame
/// numbers (they read as 0 without CAP_SYS_ADMIN).
pub fn distinct_resident_pages(pids: &[u32]) -> Option<u64> {
    use std::io::{Read, Seek, SeekFrom};
    const PRESENT: u64 = 1 << 63;
    const PFN_MASK: u64 = (1 << 55) - 1;
    let page = page_size().ok()?;
    let mut frames = std::collections::HashSet::new();
    let mut present = 0u64;
    for pid in pids {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
        let mut pagemap = std::fs::File::open(format!("/proc/{pid}/pagemap")).ok()?;
        let mut entries = Vec::new();
        for (start, end) in maps.lines().filter_map(mapping_range) {
            let count = ((end - start) / page) as usize;
            entries.resize(count * 8, 0u8);
            // [vsyscall] and the like cannot be read: they hold none of the process's pages.
            if pagemap.seek(SeekFrom::Start(start / page * 8)).is_err()
                || pagemap.read_exact(&mut entries).is_err()
            {
                continue;
            }
            for entry in entries.chunks_exact(8) {
                let entry = u64::from_ne_bytes(entry.try_into().expect("chunks of 8"));
                if entry & PRESENT != 0 {
                    present += 1;
                    frames.insert(entry & PFN_MASK);
                }
            }
        }
    }
    // Hidden frame numbers all read as 0: one "frame" for every present page.
    if present > 0 && frames.len() == 1 && frames.contains(&0) {
        return None;
    }
    Some(frames.len() as u64)
}

/// The address range of a /proc/PID/maps line (`start-end perms ...`, hexadecimal).
fn mapping_range(line: &str) -> Option<(u64, u64)> {
    let (start, end) = line.split_whitespace().next()?.split_once('-')?;
    let (start, end) = (
        u64::from_str_radix(start, 16).ok()?,
        u64::from_str_radix(end, 16).ok()?,
    );
    (start < end).then_some((start, end))
}

/// CPU ticks the helpers used over the samples: per helper pid, last seen minus first seen
/// (a helper respawned during the window counts from its first sample).
fn helper_ticks(samples: &[Sample]) -> u64 {
    let mut span: std::collections::BTreeMap<u32, (u64, u64)> = Default::default();
    for s in samples {
        for &(pid, _, ticks) in &s.helpers {
            span.entry(pid)
                .and_modify(|e| e.1 = ticks)
                .or_insert((ticks, ticks));
        }
    }
    span.values()
        .map(|(first, last)| last.saturating_sub(*first))
        .sum()
}

/// VmRSS and utime + stime of one process.
fn sample(pid: u32) -> anyhow::Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    Ok(Sample {
        rss_kib: status_field(&status, "VmRSS").context("no VmRSS in /proc/PID/status")?,
        cpu_ticks: parse_cpu_ticks(&stat).context("cannot parse /proc/PID/stat")?,
        locked_kib: status_field(&status, "VmLck").unwrap_or(0),
        anon_kib: status_field(&status, "RssAnon").unwrap_or(0),
        file_kib: status_field(&status, "RssFile").unwrap_or(0),
        threads: status_field(&status, "Threads").unwrap_or(0),
        helpers: crate::cluster::helper_pids(pid)
            .into_iter()
            .filter_map(|h| {
                let status = std::fs::read_to_string(format!("/proc/{h}/status")).ok()?;
                let stat = std::fs::read_to_string(format!("/proc/{h}/stat")).ok()?;
                Some((h, status_field(&status, "VmRSS")?, parse_cpu_ticks(&stat)?))
            })
            .collect(),
    })
}

/// The number of a `Name:   value [kB]` line of /proc/PID/status.
fn status_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// utime + stime: fields 14 and 15 of /proc/PID/stat, counted after the command name, which
/// is in parentheses and may itself contain spaces or parentheses.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn event_count(cluster: &Cluster) -> Option<usize> {
    cluster
        .get_json("/v1/events")
        .and_then(|v| v["events"].as_array().map(Vec::len))
}

/// The closing table.
pub fn render(report: &Report, command_line: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let n = report.nodes.len();
    let _ = writeln!(out, "\n== halcyon-bench footprint ==");
    let _ = writeln!(out, "command  : {command_line}");
    let _ = writeln!(out, "halcyon  : {}", report.halcyon.display());
    let _ = writeln!(
        out,
        "cluster  : {n} idle daemons on 127.0.0.1-{n}, default settings, one failover package (on {})",
        report.holder_before
    );
    let _ = writeln!(
        out,
        "window   : {:.1} s, a sample every {} s; CPU from utime+stime at {} ticks/s; MB = 10^6 bytes",
        report.window.as_secs_f64(),
        SAMPLE_PERIOD.as_secs(),
        report.clock_ticks_per_second
    );
    let _ = writeln!(
        out,
        "load avg : before {}, after {} (1/5/15 min, /proc/loadavg)",
        report.load_before, report.load_after
    );
    let _ = writeln!(
        out,
        "events   : {} committed during the window; package on {} after it",
        report
            .events_during_window
            .map_or_else(|| "unknown".into(), |e| e.to_string()),
        report.holder_after.as_deref().unwrap_or("(not settled)")
    );
    write_table(&mut out, report);
    write_verdicts(&mut out, report);
    out
}

/// One line per node.
fn write_table(out: &mut String, report: &Report) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "\n{:<8} {:>8} {:>14} {:>11} {:>15} {:>16} {:>10} {:>8} {:>8} {:>8} {:>8} {:>11} {:>12} {:>12}",
        "node",
        "pid",
        "RSS median MB",
        "RSS max MB",
        "CPU % (window)",
        "CPU % (max 1 s)",
        "locked MB",
        "anon MB",
        "file MB",
        "threads",
        "helpers",
        "helpers MB",
        "helpers CPU%",
        "together MB"
    );
    for f in &report.nodes {
        let _ = writeln!(
            out,
            "{:<8} {:>8} {:>14.1} {:>11.1} {:>15.2} {:>16.1} {:>10.1} {:>8.1} {:>8.1} {:>8.0} {:>8.0} {:>11.1} {:>12.2} {:>12}",
            f.name,
            f.pid,
            f.rss_median_mb,
            f.rss_max_mb,
            f.cpu_percent,
            f.cpu_max_second_percent,
            f.locked_mb,
            f.anon_mb,
            f.file_mb,
            f.threads,
            f.helpers,
            f.helpers_rss_mb,
            f.helpers_cpu_percent,
            f.together_mb
                .map_or_else(|| "-".to_owned(), |mb| format!("{mb:.1}"))
        );
    }
}

/// Across the nodes, and SPEC 12's verdicts for the daemon alone and with its helpers.
fn write_verdicts(out: &mut String, report: &Report) {
    use std::fmt::Write as _;
    let n = report.nodes.len();
    let rss_medians: Vec<f64> = report.nodes.iter().map(|f| f.rss_median_mb).collect();
    let rss_max: Vec<f64> = report.nodes.iter().map(|f| f.rss_max_mb).collect();
    let cpu: Vec<f64> = report.nodes.iter().map(|f| f.cpu_percent).collect();
    if let (Some(rm), Some(rx), Some(c)) = (
        summarize(&rss_medians),
        summarize(&rss_max),
        summarize(&cpu),
    ) {
        let scope = if n == TARGET_NODES {
            String::new()
        } else {
            format!(" (the target is stated for {TARGET_NODES} nodes; this is {n})")
        };
        let _ = writeln!(
            out,
            "\nacross nodes: RSS median {:.1} MB, largest {:.1} MB; CPU median {:.2} %, busiest node {:.2} % of one core",
            rm.median, rx.max, c.median, c.max
        );
        let _ = writeln!(
            out,
            "SPEC 12 footprint per node, the daemon alone: RSS <= {TARGET_RSS_MB:.0} MB -> largest {:.1} MB: {}; CPU <= {TARGET_CPU_PERCENT:.0} % of one core -> busiest {:.2} %: {}{scope}",
            rx.max,
            verdict(rx.max <= TARGET_RSS_MB),
            c.max,
            verdict(c.max <= TARGET_CPU_PERCENT)
        );
        if report.nodes.iter().any(|f| f.helpers > 0.0) {
            write_helpers_verdict(out, report);
        }
    }
}

/// SPEC 12's verdict for each daemon with its helpers: pages counted once when they could be
/// read, else the summed RSS.
fn write_helpers_verdict(out: &mut String, report: &Report) {
    use std::fmt::Write as _;
    let rss = report
        .nodes
        .iter()
        .map(|f| f.rss_max_mb + f.helpers_rss_mb)
        .fold(0.0, f64::max);
    let cpu = report
        .nodes
        .iter()
        .map(|f| f.cpu_percent + f.helpers_cpu_percent)
        .fold(0.0, f64::max);
    let together: Option<Vec<f64>> = report.nodes.iter().map(|f| f.together_mb).collect();
    let (rss, counted) = match together.as_deref().and_then(summarize) {
        Some(t) => (
            t.max,
            format!(
                "each physical page once (median {:.1} MB; summed RSS, which counts twice the pages both map, largest {rss:.1} MB)",
                t.median
            ),
        ),
        None => (
            rss,
            "summed RSS (pages both map counted twice; run as root to count each page once)"
                .to_owned(),
        ),
    };
    let _ = writeln!(
        out,
        "SPEC 12 footprint per node, daemon + helpers: RSS -> largest {rss:.1} MB: {}, {counted}; CPU -> busiest {cpu:.2} %: {}",
        verdict(rss <= TARGET_RSS_MB),
        verdict(cpu <= TARGET_CPU_PERCENT)
    );
}

/// A SPEC 12 target's verdict.
fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_and_cpu_ticks_are_read_from_proc_formats() {
        let status = "Name:\thalcyon\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(status_field(status, "VmRSS"), Some(12345));
        assert_eq!(status_field(status, "VmLck"), None);
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 17 5 0 0 20 0 8 0 1234";
        assert_eq!(parse_cpu_ticks(stat), Some(22));
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(parse_cpu_ticks(&own).is_some());
    }

    #[test]
    fn mapping_ranges_are_read_from_proc_maps_lines() {
        let line = "55d0c2a00000-55d0c2a21000 r--p 00000000 fd:01 1234   /usr/bin/halcyon";
        assert_eq!(mapping_range(line), Some((0x55d0c2a00000, 0x55d0c2a21000)));
        assert_eq!(mapping_range("7ffd-7ffd rw-p"), None);
        assert_eq!(mapping_range("garbage"), None);
    }

    #[test]
    fn pages_two_processes_share_are_counted_once() {
        let own = std::process::id();
        let Some(alone) = distinct_resident_pages(&[own]) else {
            // Without CAP_SYS_ADMIN the frame numbers are hidden: nothing to count.
            eprintln!("skipped: page frame numbers are hidden from this user");
            return;
        };
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let rss_pages = status_field(&status, "VmRSS").unwrap() * 1024 / page_size().unwrap();
        assert!(alone > 0, "{alone}");
        // Within what VmRSS says (it is sampled a moment later; the test allocates).
        assert!(
            alone <= rss_pages + 256,
            "{alone} pages, VmRSS {rss_pages} pages"
        );
        // The same process twice: every page already counted.
        let twice = distinct_resident_pages(&[own, own]).unwrap();
        assert!(twice.abs_diff(alone) <= 64, "{twice} vs {alone}");
        // A child (sleep) maps the same C library, whose pages are resident once: together
        // fewer pages than the two RSS summed.
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("5")
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let child_pages = distinct_resident_pages(&[child.id()]).unwrap();
        let together = distinct_resident_pages(&[own, child.id()]).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            together <= alone + child_pages,
            "{together} > {alone} + {child_pages}"
        );
        assert!(together < alone + child_pages, "nothing shared: {together}");
    }
}
