//! `failover`: the time from a power-loss-style kill of the node running the package (its
//! daemon, the processes it started and its service's process group, SIGKILL, back to back:
//! T0) to the package's service
//! answering on another node (T1), on a fresh 3-node loopback cluster per run (`--witness`:
//! two nodes and a quorum witness).
//!
//! Runs alternate between "the holder is the coordinator" (the slow path: a Raft election,
//! then the new coordinator's full lease wait) and "the holder is not the coordinator",
//! arranged with `halcyon package move`; each run is classified by what was true at T0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::cluster::{self, Cluster, Ready, Setup};
use crate::ms;
use crate::stats::{Summary, summarize};
use crate::{interrupt, loadavg};

/// The documented fast profile, `[heartbeat] profile = "fast"` (30 ms x 3; the daemon
/// derives the lease and openraft's timings from it under the same safety rule).
pub const FAST_PROFILE: &str = "fast";
const NODES: usize = 3;
/// With a witness: two nodes, the witness the third voter.
const NODES_WITH_WITNESS: usize = 2;
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// After the package answers: let leases renew a few times, as in a steady cluster.
const SETTLE: Duration = Duration::from_secs(1);
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(20);
pub const PROBE_PERIOD: Duration = Duration::from_millis(10);
const EVENT_LOG_TIMEOUT: Duration = Duration::from_secs(5);
/// Consecutive failed runs after which the benchmark gives up.
const FAILURES_IN_A_ROW_MAX: usize = 3;

/// SPEC 12's targets, to compare the measured figures against.
pub const TARGET_DEFAULT_MEDIAN_MS: f64 = 1000.0;
pub const TARGET_DEFAULT_WORST_MS: f64 = 2000.0;
pub const TARGET_FAST_MEDIAN_MS: f64 = 350.0;

pub struct Options {
    pub runs: usize,
    pub fast: bool,
    /// Two nodes and a quorum witness instead of three nodes.
    pub witness: bool,
    pub halcyon: PathBuf,
}

impl Options {
    fn nodes(&self) -> usize {
        if self.witness {
            NODES_WITH_WITNESS
        } else {
            NODES
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    HolderIsCoordinator,
    HolderIsNotCoordinator,
}

impl Class {
    fn label(self) -> &'static str {
        match self {
            Class::HolderIsCoordinator => "holder is the coordinator",
            Class::HolderIsNotCoordinator => "holder is not the coordinator",
        }
    }
}

/// Milliseconds after T0 at which the committed event log shows each step of the takeover.
#[derive(Clone, Debug, Default)]
pub struct Phases {
    pub node_down_queued_ms: Option<f64>,
    pub lease_released_ms: Option<f64>,
    pub run_done_ms: Option<f64>,
}

pub struct Run {
    pub class: Class,
    pub killed: String,
    pub coordinator: String,
    pub new_holder: String,
    pub failover_ms: f64,
    pub phases: Phases,
}

pub struct Report {
    pub runs: Vec<Run>,
    pub failures: Vec<(usize, String)>,
    pub lease_ms: Option<u64>,
    pub load_before: String,
    pub load_after: String,
    pub fast: bool,
    pub witness: bool,
    pub nodes: usize,
    pub halcyon: PathBuf,
}

pub fn run(options: &Options) -> anyhow::Result<Report> {
    let setup = Setup {
        heartbeat_profile: options.fast.then_some(FAST_PROFILE),
        service_restarts: None,
        witness: options.witness,
    };
    let mut report = Report {
        runs: Vec::new(),
        failures: Vec::new(),
        lease_ms: None,
        load_before: loadavg(),
        load_after: String::new(),
        fast: options.fast,
        witness: options.witness,
        nodes: options.nodes(),
        halcyon: options.halcyon.clone(),
    };
    let (runs, lease_ms) = (&mut report.runs, &mut report.lease_ms);
    crate::series(
        options.runs,
        FAILURES_IN_A_ROW_MAX,
        &mut report.failures,
        |index| {
            let want = if index % 2 == 0 {
                Class::HolderIsCoordinator
            } else {
                Class::HolderIsNotCoordinator
            };
            one_run(options, setup, want, lease_ms)
        },
        |index, run| {
            println!(
                "run {:>3}/{}  killed {} ({}; coordinator {})  -> {}  {:>7.1} ms   [node_down queued {}, lease released {}, run done {}]",
                index + 1,
                options.runs,
                run.killed,
                run.class.label(),
                run.coordinator,
                run.new_holder,
                run.failover_ms,
                ms(run.phases.node_down_queued_ms),
                ms(run.phases.lease_released_ms),
                ms(run.phases.run_done_ms),
            );
            runs.push(run);
        },
    )?;
    report.load_after = loadavg();
    Ok(report)
}

fn one_run(
    options: &Options,
    setup: Setup,
    want: Class,
    lease_ms: &mut Option<u64>,
) -> anyhow::Result<Run> {
    let mut cluster = Cluster::start(&options.halcyon, options.nodes(), setup)?;
    let ready = cluster.wait_ready(READY_TIMEOUT)?;
    let holder = cluster.daemons[ready.holder].name.clone();
    let target = match want {
        Class::HolderIsCoordinator if holder != ready.coordinator => {
            Some(ready.coordinator.clone())
        }
        Class::HolderIsNotCoordinator if holder == ready.coordinator => cluster
            .daemons
            .iter()
            .map(|d| d.name.clone())
            .find(|n| *n != ready.coordinator),
        _ => None,
    };
    if let Some(target) = target {
        cluster.move_package(&target)?;
        cluster.wait_ready(READY_TIMEOUT)?;
    }
    interrupt::sleep(SETTLE)?;
    let ready = confirmed(&mut cluster)?;
    *lease_ms = ready.lease_ms.or(*lease_ms);
    let killed = cluster.daemons[ready.holder].name.clone();
    let class = if killed == ready.coordinator {
        Class::HolderIsCoordinator
    } else {
        Class::HolderIsNotCoordinator
    };
    let addrs: Vec<SocketAddr> = cluster
        .daemons
        .iter()
        .map(|d| cluster.service_addr(d))
        .collect();
    let t0 = cluster.power_off(ready.holder)?;
    let t0_wall = jiff::Timestamp::now();
    let (t1, new_holder) = match first_other_answer(&addrs, &killed, t0) {
        Ok(answer) => answer,
        Err(e) => {
            let tails: Vec<String> = (0..cluster.daemons.len())
                .filter(|&i| i != ready.holder)
                .map(|i| {
                    format!(
                        "--- {} log:\n{}",
                        cluster.daemons[i].name,
                        cluster.log_tail(i, 15)
                    )
                })
                .collect();
            bail!("{e}\n{}", tails.join("\n"));
        }
    };
    let phases = phases(&cluster, &killed, t0_wall);
    Ok(Run {
        class,
        killed,
        coordinator: ready.coordinator,
        new_holder,
        failover_ms: (t1 - t0).as_secs_f64() * 1000.0,
        phases,
    })
}

/// The settled cluster as its coordinator itself reports it (a follower may lag).
fn confirmed(cluster: &mut Cluster) -> anyhow::Result<Ready> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let ready = cluster.wait_ready(READY_TIMEOUT)?;
        if let Some(i) = cluster.index_of(&ready.coordinator)
            && let Some(status) = cluster.status_of(&cluster.daemons[i])
            && status["coordinator"] == status["answered_by"]
            && status["answered_by"] == ready.coordinator.as_str()
        {
            return Ok(ready);
        }
        if Instant::now() >= deadline {
            bail!("the coordinator did not confirm its role within {READY_TIMEOUT:?}");
        }
        interrupt::sleep(Duration::from_millis(100))?;
    }
}

/// Probes every service address every [`PROBE_PERIOD`] from its own thread; returns the
/// first moment a node other than `killed` answered, and that node.
fn first_other_answer(
    addrs: &[SocketAddr],
    killed: &str,
    t0: Instant,
) -> anyhow::Result<(Instant, String)> {
    let deadline = t0 + FAILOVER_TIMEOUT;
    let done = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let probers: Vec<_> = addrs
        .iter()
        .map(|&addr| {
            let done = Arc::clone(&done);
            let tx = tx.clone();
            let killed = killed.to_owned();
            std::thread::spawn(move || {
                let mut next = Instant::now();
                while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
                    if let Some(name) = cluster::probe(addr)
                        && name != killed
                    {
                        let _ = tx.send((Instant::now(), name));
                        return;
                    }
                    next += PROBE_PERIOD;
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                }
            })
        })
        .collect();
    drop(tx);
    let mut first: Option<(Instant, String)> = None;
    let outcome = loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(answer) => {
                first = Some(answer);
                break Ok(());
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Err(e) = interrupt::check() {
                    break Err(e);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Err(anyhow::anyhow!(
                    "no other node answered within {FAILOVER_TIMEOUT:?} of the kill"
                ));
            }
        }
    };
    done.store(true, Ordering::SeqCst);
    for p in probers {
        let _ = p.join();
    }
    // Another prober may have had an earlier answer in flight.
    for answer in rx.try_iter() {
        if first.as_ref().is_none_or(|f| answer.0 < f.0) {
            first = Some(answer);
        }
    }
    outcome?;
    first.ok_or_else(|| anyhow::anyhow!("no answer recorded"))
}

/// The takeover's steps from the committed event log of the surviving nodes.
fn phases(cluster: &Cluster, killed: &str, t0: jiff::Timestamp) -> Phases {
    let deadline = Instant::now() + EVENT_LOG_TIMEOUT;
    let after = |at: Option<String>| -> Option<f64> {
        let ts: jiff::Timestamp = at?.parse().ok()?;
        Some((ts.as_microsecond() - t0.as_microsecond()) as f64 / 1000.0)
    };
    while Instant::now() < deadline && interrupt::check().is_ok() {
        let takeover = cluster
            .get_json("/v1/events")
            .and_then(|events| halcyon_testkit::events::takeover(&events, killed));
        if let Some(t) = takeover {
            return Phases {
                node_down_queued_ms: after(t.queued_at),
                lease_released_ms: after(t.released_at),
                run_done_ms: after(t.run_at),
            };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Phases::default()
}

/// The closing table.
pub fn render(report: &Report, command_line: &str) -> String {
    let mut out = String::new();
    render_header(&mut out, report, command_line);
    let overall = render_times(&mut out, report);
    render_steps(&mut out, report);
    if let Some(s) = overall {
        render_targets(&mut out, report, &s);
    }
    out
}

/// What was measured, how and where.
fn render_header(out: &mut String, report: &Report, command_line: &str) {
    use std::fmt::Write as _;
    let profile = if report.fast {
        format!(
            "[heartbeat] profile = \"{FAST_PROFILE}\" (30 ms x 3; lease and Raft timings derived by the daemon)"
        )
    } else {
        "default settings (no [heartbeat] section: the daemon's timings)".into()
    };
    let _ = writeln!(out, "\n== halcyon-bench failover ==");
    let _ = writeln!(out, "command  : {command_line}");
    let _ = writeln!(out, "halcyon  : {}", report.halcyon.display());
    let witness = if report.witness {
        format!(" and the quorum witness {} on 127.0.0.65", cluster::WITNESS)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "cluster  : {} nodes on 127.0.0.1-{}{witness}, {profile}; lease {} as the daemons report it",
        report.nodes,
        report.nodes,
        report
            .lease_ms
            .map_or_else(|| "unknown".into(), |l| format!("{l} ms"))
    );
    let _ = writeln!(
        out,
        "measured : SIGKILL of the holder's daemon, its child process groups and its service group (T0) -> first HTTP answer naming another node (T1); probes every {} ms per address",
        PROBE_PERIOD.as_millis()
    );
    let _ = writeln!(
        out,
        "load avg : before {}, after {} (1/5/15 min, /proc/loadavg)",
        report.load_before, report.load_after
    );
}

/// The failover times by the dead holder's role, and over all runs (returned).
fn render_times(out: &mut String, report: &Report) -> Option<Summary> {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "\n{:<32} {:>5} {:>10} {:>10} {:>10}",
        "T1 - T0", "runs", "median", "p90", "worst"
    );
    let classes = [
        (
            Class::HolderIsCoordinator.label(),
            Some(Class::HolderIsCoordinator),
        ),
        (
            Class::HolderIsNotCoordinator.label(),
            Some(Class::HolderIsNotCoordinator),
        ),
        ("all runs", None),
    ];
    let mut overall = None;
    for (label, class) in classes {
        let samples: Vec<f64> = report
            .runs
            .iter()
            .filter(|r| class.is_none_or(|c| r.class == c))
            .map(|r| r.failover_ms)
            .collect();
        let summary = summarize(&samples);
        let _ = writeln!(out, "{}", summary_row(label, summary.as_ref()));
        if class.is_none() {
            overall = summary;
        }
    }
    let _ = writeln!(out, "{:<32} {:>5}", "failed runs", report.failures.len());
    overall
}

/// The takeover's steps (medians after T0) by the dead holder's role.
fn render_steps(out: &mut String, report: &Report) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "\nsteps after T0 (median, from the committed event log):\n{:<32} {:>16} {:>16} {:>12}",
        "", "node_down queued", "lease released", "run done"
    );
    for class in [Class::HolderIsCoordinator, Class::HolderIsNotCoordinator] {
        let of = |f: fn(&Phases) -> Option<f64>| {
            let v: Vec<f64> = report
                .runs
                .iter()
                .filter(|r| r.class == class)
                .filter_map(|r| f(&r.phases))
                .collect();
            summarize(&v).map_or_else(|| "-".into(), |s| format!("{:.0} ms", s.median))
        };
        let _ = writeln!(
            out,
            "{:<32} {:>16} {:>16} {:>12}",
            class.label(),
            of(|p| p.node_down_queued_ms),
            of(|p| p.lease_released_ms),
            of(|p| p.run_done_ms)
        );
    }
}

/// SPEC 12's targets against the runs' summary `s`.
fn render_targets(out: &mut String, report: &Report, s: &Summary) {
    use std::fmt::Write as _;
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    if report.fast {
        let _ = writeln!(
            out,
            "\nSPEC 12 fast profile: median <= {:.0} ms -> measured {:.1} ms: {}",
            TARGET_FAST_MEDIAN_MS,
            s.median,
            verdict(s.median <= TARGET_FAST_MEDIAN_MS)
        );
    } else {
        let _ = writeln!(
            out,
            "\nSPEC 12 default settings: median <= {:.0} ms -> measured {:.1} ms: {}; worst of 20 <= {:.0} ms -> worst of {} measured {:.1} ms: {}",
            TARGET_DEFAULT_MEDIAN_MS,
            s.median,
            verdict(s.median <= TARGET_DEFAULT_MEDIAN_MS),
            TARGET_DEFAULT_WORST_MS,
            s.count,
            s.max,
            verdict(s.max <= TARGET_DEFAULT_WORST_MS)
        );
    }
}

fn summary_row(label: &str, s: Option<&Summary>) -> String {
    match s {
        Some(s) => format!(
            "{label:<32} {:>5} {:>7.1} ms {:>7.1} ms {:>7.1} ms",
            s.count, s.median, s.p90, s.max
        ),
        None => format!("{label:<32} {:>5} {:>10} {:>10} {:>10}", 0, "-", "-", "-"),
    }
}
