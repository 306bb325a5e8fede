//! `restart`: the time from a crash of the package's service (SIGKILL of its process group:
//! T0) to the service answering again on the same node (T1), restarted by that node's daemon
//! without a failover (SPEC 12: <= 100 ms). One 3-node loopback cluster for every run; the
//! service is allowed more restarts than the runs need.
//!
//! T1 is the first answer from the node after its service's process group changed (the daemon
//! records the new group in `run/PACKAGE.0.pgid` when it starts the service), so an answer
//! from the dying process cannot count. A run in which the package left the node (a failover
//! instead of a restart) fails the run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::cluster::{self, Cluster, Setup};
use crate::stats::{Summary, summarize};
use crate::{interrupt, loadavg};

const NODES: usize = 3;
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Between runs: the cluster settles (the restart is committed, leases renew).
const SETTLE: Duration = Duration::from_millis(500);
const RESTART_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the service address and the group file are read while waiting.
pub const PROBE_PERIOD: Duration = Duration::from_millis(1);
/// SPEC 12's target.
pub const TARGET_MS: f64 = 100.0;

pub struct Options {
    pub runs: usize,
    pub halcyon: PathBuf,
}

pub struct Report {
    pub restarts_ms: Vec<f64>,
    pub node: String,
    pub load_before: String,
    pub load_after: String,
    pub halcyon: PathBuf,
}

pub fn run(options: &Options) -> anyhow::Result<Report> {
    let setup = Setup {
        heartbeat_profile: None,
        // Every run is a restart; a few spare.
        service_restarts: Some(
            u32::try_from(options.runs)
                .unwrap_or(u32::MAX)
                .saturating_add(5),
        ),
        witness: false,
    };
    let load_before = loadavg();
    let mut cluster = Cluster::start(&options.halcyon, NODES, setup)?;
    let ready = cluster.wait_ready(READY_TIMEOUT)?;
    let holder = ready.holder;
    let node = cluster.daemons[holder].name.clone();
    let address = cluster.service_addr(&cluster.daemons[holder]);
    let mut restarts_ms = Vec::new();
    for index in 0..options.runs {
        interrupt::sleep(SETTLE)?;
        let ready = cluster.wait_ready(READY_TIMEOUT)?;
        if ready.holder != holder {
            bail!(
                "run {}: the package moved to {} (a failover, not a restart)",
                index + 1,
                cluster.daemons[ready.holder].name
            );
        }
        let Some(group) = cluster.service_group(holder) else {
            bail!(
                "run {}: no service process group recorded on {node}",
                index + 1
            );
        };
        let t0 = Instant::now();
        // SAFETY: kill(2) of a process group the daemon under test recorded for its service.
        if unsafe { libc::kill(-group, libc::SIGKILL) } != 0 {
            bail!(
                "run {}: SIGKILL of process group {group}: {}",
                index + 1,
                std::io::Error::last_os_error()
            );
        }
        let deadline = t0 + RESTART_TIMEOUT;
        let t1 = loop {
            let restarted = cluster
                .service_group(holder)
                .is_some_and(|now| now != group);
            if restarted && cluster::probe(address).as_deref() == Some(node.as_str()) {
                break Instant::now();
            }
            if Instant::now() >= deadline {
                bail!(
                    "run {}: the service on {node} did not answer again within {RESTART_TIMEOUT:?}; its log ends:\n{}",
                    index + 1,
                    cluster.log_tail(holder, 15)
                );
            }
            interrupt::check()?;
            std::thread::sleep(PROBE_PERIOD);
        };
        let ms = (t1 - t0).as_secs_f64() * 1000.0;
        println!(
            "run {:>3}/{}  service on {node} killed -> answering again after {ms:>6.1} ms",
            index + 1,
            options.runs
        );
        restarts_ms.push(ms);
    }
    Ok(Report {
        restarts_ms,
        node,
        load_before,
        load_after: loadavg(),
        halcyon: options.halcyon.clone(),
    })
}

/// The closing table.
pub fn render(report: &Report, command_line: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "\n== halcyon-bench restart ==");
    let _ = writeln!(out, "command  : {command_line}");
    let _ = writeln!(out, "halcyon  : {}", report.halcyon.display());
    let _ = writeln!(
        out,
        "cluster  : {NODES} nodes on 127.0.0.1-{NODES}, default settings; the service of the package on {}",
        report.node
    );
    let _ = writeln!(
        out,
        "measured : SIGKILL of the service's process group (T0) -> the restarted service (a new process group) answering HTTP on the same node (T1); checked every {} ms",
        PROBE_PERIOD.as_millis()
    );
    let _ = writeln!(
        out,
        "load avg : before {}, after {} (1/5/15 min, /proc/loadavg)",
        report.load_before, report.load_after
    );
    let summary: Option<Summary> = summarize(&report.restarts_ms);
    match summary {
        Some(s) => {
            let _ = writeln!(
                out,
                "\nT1 - T0 over {} runs: median {:.1} ms, p90 {:.1} ms, worst {:.1} ms",
                s.count, s.median, s.p90, s.max
            );
            let _ = writeln!(
                out,
                "SPEC 12 service crash -> restarted locally <= {TARGET_MS:.0} ms: median {}, worst {}",
                if s.median <= TARGET_MS {
                    "met"
                } else {
                    "NOT met"
                },
                if s.max <= TARGET_MS { "met" } else { "NOT met" }
            );
        }
        None => {
            let _ = writeln!(out, "\nno run measured");
        }
    }
    out
}
