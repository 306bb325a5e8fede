//! `mass-failover`: many failover packages on one node, that node lost power-loss style
//! (SIGKILL of its daemon and everything it started: T0), and the time until every one of
//! them runs on another node (SPEC 12: 1,000 packages re-placed and started in <= 2 s plus
//! the packages' own start). A fresh loopback cluster per run.
//!
//! Every package prefers the last node (`node<N>`), then the others in an order rotated per
//! package, with `failover_policy = "configured_node"`: the packages all start on the last
//! node at formation and spread over the survivors when it dies. Each package is one
//! `script` resource running `true` (the cheapest resource that starts a process), or none
//! (`--resource none`: only the daemons' own work).
//!
//! T1 is the first status, polled from a surviving node every [`POLL_PERIOD`], that shows
//! every package running on one surviving node. A status shows the packages where the
//! committed plan put them once their event has finished, so T1 is when the last report of
//! the takeover was committed. The steps come from the committed record of the `node_down`
//! event: queued (detection), plan committed, lease released (the wait for the lost node's
//! lease), and the first and last `run` action done, as stamped by the node that ran it when
//! it finished (before its report was committed: T1 minus the last is the time the reports
//! took to commit).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use halcyon_testkit::ClusterConfig;
use halcyon_testkit::config::{Package, Resource};
use serde_json::Value;

use crate::cluster::Cluster;
use crate::ms;
use crate::stats::{Summary, summarize};
use crate::{interrupt, loadavg};

pub const PACKAGES_MAX: u64 = 10_000;
/// Formation with every package started on the holder.
const READY_TIMEOUT: Duration = Duration::from_secs(600);
/// After the packages run: leases renew a few times, as in a steady cluster.
const SETTLE: Duration = Duration::from_secs(2);
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(300);
/// How often a survivor's status is read while waiting for the packages.
pub const POLL_PERIOD: Duration = Duration::from_millis(50);
const EVENT_LOG_TIMEOUT: Duration = Duration::from_secs(30);
const FAILURES_IN_A_ROW_MAX: usize = 2;
/// SPEC 12's target, beyond the packages' own start.
pub const TARGET_MS: f64 = 2000.0;

/// What each package holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PackageResource {
    /// One `script` resource: `run = "true"`, `halt = "true"`.
    Script,
    /// No resource at all.
    None,
}

pub struct Options {
    pub runs: usize,
    pub nodes: usize,
    pub packages: usize,
    pub resource: PackageResource,
    pub halcyon: PathBuf,
}

/// Milliseconds after T0 of each step of the `node_down` event, from the event log.
#[derive(Clone, Debug, Default)]
pub struct Steps {
    pub queued_ms: Option<f64>,
    pub plan_committed_ms: Option<f64>,
    pub lease_released_ms: Option<f64>,
    pub first_run_ms: Option<f64>,
    pub last_run_ms: Option<f64>,
    /// `run` actions reported done (ok) in the event.
    pub runs_ok: usize,
    pub runs_failed: usize,
}

pub struct Run {
    pub killed: String,
    pub coordinator: String,
    /// Formation to every package running on the holder (start-up, not the measurement).
    pub formed_ms: f64,
    /// T0 -> the first status showing every package running elsewhere.
    pub all_elsewhere_ms: f64,
    /// Packages per surviving node at T1.
    pub spread: Vec<(String, usize)>,
    pub steps: Steps,
}

pub struct Report {
    pub runs: Vec<Run>,
    pub failures: Vec<(usize, String)>,
    pub options_nodes: usize,
    pub options_packages: usize,
    pub resource: PackageResource,
    pub lease_ms: Option<u64>,
    pub load_before: String,
    pub load_after: String,
    pub halcyon: PathBuf,
}

/// Package `k`'s name (1-based): `m0001`, ...
fn package_name(k: usize) -> String {
    format!("m{k:04}")
}

/// The cluster: `nodes` loopback nodes, `packages` failover packages preferring the last.
pub fn config(
    nodes: usize,
    packages: usize,
    resource: PackageResource,
    port: u16,
) -> ClusterConfig {
    let mut config = ClusterConfig::loopback("bench", port, nodes, "node", "lo", "127.0.0.0/8");
    config.id = u32::from(port);
    let names = config.node_names();
    let (holder, others) = names.split_last().expect("at least one node");
    for k in 1..=packages {
        let mut list = vec![holder.as_str()];
        let shift = if others.is_empty() {
            0
        } else {
            k % others.len()
        };
        list.extend(
            others[shift..]
                .iter()
                .chain(&others[..shift])
                .map(String::as_str),
        );
        let mut package = Package::failover(&package_name(k), &list);
        package.failover_policy = Some("configured_node".into());
        package.failback_policy = Some("manual".into());
        if resource == PackageResource::Script {
            package = package.resource(Resource::Script {
                name: "noop".into(),
                run: "true".into(),
                halt: "true".into(),
            });
        }
        config = config.package(package);
    }
    config
}

pub fn run(options: &Options) -> anyhow::Result<Report> {
    if options.nodes < 2 {
        bail!("--nodes must be at least 2 (one to lose, one to take over)");
    }
    let mut report = Report {
        runs: Vec::new(),
        failures: Vec::new(),
        options_nodes: options.nodes,
        options_packages: options.packages,
        resource: options.resource,
        lease_ms: None,
        load_before: loadavg(),
        load_after: String::new(),
        halcyon: options.halcyon.clone(),
    };
    let (runs, lease_ms) = (&mut report.runs, &mut report.lease_ms);
    crate::series(
        options.runs,
        FAILURES_IN_A_ROW_MAX,
        &mut report.failures,
        |_| one_run(options, lease_ms),
        |index, run| {
            let spread: Vec<String> = run.spread.iter().map(|(n, c)| format!("{n} {c}")).collect();
            println!(
                "run {:>2}/{}  killed {} (coordinator {}; formed with every package in {:.1} s)  -> every package elsewhere after {:>7.1} ms ({})",
                index + 1,
                options.runs,
                run.killed,
                run.coordinator,
                run.formed_ms / 1000.0,
                run.all_elsewhere_ms,
                spread.join(", "),
            );
            let s = &run.steps;
            println!(
                "          event log: queued {}, plan committed {}, lease released {}, first run done {}, last run done {}; {} runs ok, {} failed",
                ms(s.queued_ms),
                ms(s.plan_committed_ms),
                ms(s.lease_released_ms),
                ms(s.first_run_ms),
                ms(s.last_run_ms),
                s.runs_ok,
                s.runs_failed
            );
            runs.push(run);
        },
    )?;
    report.load_after = loadavg();
    Ok(report)
}

/// Where each package runs, by a status: `None` for a package on no node or on several.
fn placement(status: &Value) -> Vec<(String, Option<String>)> {
    status["packages"]
        .as_array()
        .map(|packages| {
            packages
                .iter()
                .map(|p| {
                    let nodes: Vec<&str> = p["nodes"]
                        .as_array()
                        .map(|n| n.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    let name = p["name"].as_str().unwrap_or_default().to_owned();
                    match nodes.as_slice() {
                        [one] => (name, Some((*one).to_owned())),
                        _ => (name, None),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// How many packages (the cluster has only the benchmark's) a status shows running on
/// exactly one node satisfying `on`.
fn count_on(status: &Value, on: impl Fn(&str) -> bool) -> usize {
    placement(status)
        .iter()
        .filter(|(_, node)| node.as_deref().is_some_and(&on))
        .count()
}

fn one_run(options: &Options, lease_ms: &mut Option<u64>) -> anyhow::Result<Run> {
    let (nodes, packages) = (options.nodes, options.packages);
    let started = Instant::now();
    let mut cluster = Cluster::start_with(&options.halcyon, nodes, |port| {
        config(nodes, packages, options.resource, port)
    })?;
    let holder = nodes - 1;
    let killed = cluster.daemons[holder].name.clone();
    // Formation, every package on the holder, nothing pending.
    let deadline = started + READY_TIMEOUT;
    loop {
        interrupt::check()?;
        cluster.check_alive()?;
        let why = match cluster.get_json("/v1/status") {
            Some(status) => {
                let members = status["nodes"]
                    .as_array()
                    .map_or(0, |n| n.iter().filter(|n| n["member"] == true).count());
                let on_holder = count_on(&status, |n| n == killed);
                if members == nodes
                    && on_holder == packages
                    && halcyon_testkit::cluster::is_idle(&status)
                {
                    *lease_ms = status["lease"]["duration_ms"].as_u64().or(*lease_ms);
                    break;
                }
                format!("{members} members, {on_holder} of {packages} packages on {killed}")
            }
            None => "no daemon answered /v1/status".into(),
        };
        if Instant::now() >= deadline {
            bail!("the cluster did not settle within {READY_TIMEOUT:?}: {why}");
        }
        interrupt::sleep(Duration::from_millis(200))?;
    }
    let formed_ms = started.elapsed().as_secs_f64() * 1000.0;
    interrupt::sleep(SETTLE)?;
    let coordinator = cluster
        .get_json("/v1/status")
        .and_then(|s| s["coordinator"].as_str().map(str::to_owned))
        .context("no coordinator known before the kill")?;
    let survivors: Vec<usize> = (0..nodes).filter(|&i| i != holder).collect();

    let t0 = cluster.power_off_node(holder)?;
    let t0_wall = jiff::Timestamp::now();
    let deadline = t0 + FAILOVER_TIMEOUT;
    let mut next = Instant::now();
    let (t1, last_status) = loop {
        interrupt::check()?;
        // Read from a survivor only (the killed node's API is gone); each in turn answers.
        let status = survivors
            .iter()
            .find_map(|&i| cluster.status_of(&cluster.daemons[i]));
        let at = Instant::now();
        if let Some(status) = status {
            let elsewhere = count_on(&status, |n| n != killed);
            if elsewhere == packages {
                break (at, status);
            }
        }
        if at >= deadline {
            let tails: Vec<String> = survivors
                .iter()
                .map(|&i| {
                    format!(
                        "--- {} log:\n{}",
                        cluster.daemons[i].name,
                        cluster.log_tail(i, 15)
                    )
                })
                .collect();
            bail!(
                "not every package ran elsewhere within {FAILOVER_TIMEOUT:?}\n{}",
                tails.join("\n")
            );
        }
        next += POLL_PERIOD;
        let now = Instant::now();
        if next > now {
            interrupt::sleep(next - now)?;
        } else {
            next = now;
        }
    };
    let mut spread: Vec<(String, usize)> = survivors
        .iter()
        .map(|&i| {
            let name = &cluster.daemons[i].name;
            (name.clone(), count_on(&last_status, |n| n == name))
        })
        .collect();
    spread.retain(|(_, c)| *c > 0);
    let steps = steps(&cluster, &killed, t0_wall);
    let since = |t: Instant| (t - t0).as_secs_f64() * 1000.0;
    Ok(Run {
        killed,
        coordinator,
        formed_ms,
        all_elsewhere_ms: since(t1),
        spread,
        steps,
    })
}

/// The `node_down` event's steps from the committed event log of the survivors, once it
/// finished.
fn steps(cluster: &Cluster, killed: &str, t0: jiff::Timestamp) -> Steps {
    let deadline = Instant::now() + EVENT_LOG_TIMEOUT;
    let after = |v: &Value| -> Option<f64> {
        let ts: jiff::Timestamp = v.as_str()?.parse().ok()?;
        Some((ts.as_microsecond() - t0.as_microsecond()) as f64 / 1000.0)
    };
    let prefix = format!("node_down {killed} ");
    while Instant::now() < deadline && interrupt::check().is_ok() {
        let record = cluster.get_json("/v1/events").and_then(|events| {
            let list = events["events"].as_array()?.clone();
            list.into_iter().rev().find(|r| {
                r["event"].as_str().is_some_and(|e| e.starts_with(&prefix))
                    && !r["finished_at"].is_null()
            })
        });
        if let Some(r) = record {
            let actions = r["actions"].as_array().cloned().unwrap_or_default();
            let runs: Vec<&Value> = actions.iter().filter(|a| a["kind"] == "run").collect();
            let run_times: Vec<f64> = runs.iter().filter_map(|a| after(&a["at"])).collect();
            let ok = runs.iter().filter(|a| a["ok"] == true).count();
            return Steps {
                queued_ms: after(&r["queued_at"]),
                plan_committed_ms: after(&r["started_at"]),
                lease_released_ms: actions
                    .iter()
                    .find(|a| a["kind"] == "await_release")
                    .and_then(|a| after(&a["at"])),
                first_run_ms: run_times.iter().copied().reduce(f64::min),
                last_run_ms: run_times.iter().copied().reduce(f64::max),
                runs_ok: ok,
                runs_failed: runs.len() - ok,
            };
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Steps::default()
}

/// The closing table.
pub fn render(report: &Report, command_line: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let n = report.options_nodes;
    let resource = match report.resource {
        PackageResource::Script => "one script resource each (run = \"true\")",
        PackageResource::None => "no resources",
    };
    let _ = writeln!(out, "\n== halcyon-bench mass-failover ==");
    let _ = writeln!(out, "command  : {command_line}");
    let _ = writeln!(out, "halcyon  : {}", report.halcyon.display());
    let _ = writeln!(
        out,
        "cluster  : {n} nodes on 127.0.0.1-{n}, default settings, lease {}; {} failover packages on node{n}, {resource}, configured_node over the survivors in rotated order",
        report
            .lease_ms
            .map_or_else(|| "unknown".into(), |l| format!("{l} ms")),
        report.options_packages
    );
    let _ = writeln!(
        out,
        "measured : SIGKILL of node{n}'s daemon and what it started (T0) -> the first status of a survivor (read every {} ms) showing every package on one surviving node (T1); steps from the node_down event's committed record",
        POLL_PERIOD.as_millis()
    );
    let _ = writeln!(
        out,
        "load avg : before {}, after {} (1/5/15 min, /proc/loadavg)",
        report.load_before, report.load_after
    );
    let _ = writeln!(
        out,
        "\n{:<40} {:>5} {:>10} {:>10}",
        "after T0", "runs", "median", "worst"
    );
    let rows: [(&str, Figure); 9] = [
        ("every package running elsewhere (T1)", |r| {
            Some(r.all_elsewhere_ms)
        }),
        ("node_down queued (detection)", |r| r.steps.queued_ms),
        ("plan committed", |r| r.steps.plan_committed_ms),
        ("lease released", |r| r.steps.lease_released_ms),
        ("first run done", |r| r.steps.first_run_ms),
        ("last run done", |r| r.steps.last_run_ms),
        ("planning: plan - queued", |r| {
            Some(r.steps.plan_committed_ms? - r.steps.queued_ms?)
        }),
        ("starts: last run done - lease released", |r| {
            Some(r.steps.last_run_ms? - r.steps.lease_released_ms?)
        }),
        ("reports committed: T1 - last run done", |r| {
            Some(r.all_elsewhere_ms - r.steps.last_run_ms?)
        }),
    ];
    let mut overall = None;
    for (label, f) in rows {
        let v: Vec<f64> = report.runs.iter().filter_map(f).collect();
        let s = summarize(&v);
        let _ = writeln!(out, "{}", row(label, s.as_ref()));
        if overall.is_none() {
            overall = Some(s);
        }
    }
    let _ = writeln!(out, "{:<40} {:>5}", "failed runs", report.failures.len());
    if let Some(Some(s)) = overall {
        let _ = writeln!(
            out,
            "\nSPEC 12: {} packages re-placed and started <= {TARGET_MS:.0} ms plus their own start -> median {:.1} ms, worst {:.1} ms (the packages' own start included)",
            report.options_packages, s.median, s.max
        );
    }
    out
}

/// One figure of a run, in milliseconds after T0 (or a difference of two).
type Figure = fn(&Run) -> Option<f64>;

fn row(label: &str, s: Option<&Summary>) -> String {
    match s {
        Some(s) => format!(
            "{label:<40} {:>5} {:>7.1} ms {:>7.1} ms",
            s.count, s.median, s.max
        ),
        None => format!("{label:<40} {:>5} {:>10} {:>10}", 0, "-", "-"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_package_prefers_the_last_node_and_rotates_the_survivors() {
        let c = config(3, 4, PackageResource::Script, 21_000);
        assert_eq!(c.packages.len(), 4);
        let lists: Vec<Vec<&str>> = c
            .packages
            .iter()
            .map(|p| p.nodes.iter().map(String::as_str).collect())
            .collect();
        assert_eq!(lists[0], ["node3", "node2", "node1"]);
        assert_eq!(lists[1], ["node3", "node1", "node2"]);
        assert_eq!(lists[2], ["node3", "node2", "node1"]);
        let text = c.packages[0].to_toml();
        assert!(text.contains("name = \"m0001\""), "{text}");
        assert!(text.contains("run = \"true\""), "{text}");
        let none = config(2, 1, PackageResource::None, 21_000);
        assert!(!none.packages[0].to_toml().contains("[[resource]]"));
    }

    #[test]
    fn placement_counts_a_package_only_on_exactly_one_node() {
        let status = serde_json::json!({"packages": [
            {"name": "m0001", "nodes": ["node1"]},
            {"name": "m0002", "nodes": ["node1", "node2"]},
            {"name": "m0003", "nodes": []},
            {"name": "m0004", "nodes": ["node2"]},
        ]});
        assert_eq!(count_on(&status, |n| n != "node3"), 2);
        assert_eq!(count_on(&status, |n| n == "node2"), 1);
    }
}
