//! User-defined monitors on a live loopback cluster (SPEC 9.5): the seeds' rwho event
//! fired by a process count on the node where the program dies, a package monitor failing
//! its package over, and a package monitor's event firing once until rearmed. Asserted from
//! the event log (`GET /v1/events`), the status and the commands' journal.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use halcyon_testkit::config::{Monitor, MonitorAction};
use serde_json::Value;

/// Starts the nodes in `start` of a cluster configured by `spec`, with `rules(dir)` as
/// its rules file (`dir`: the test directory).
fn cluster_with_rules(
    mut spec: Spec,
    start: &[usize],
    rules: impl FnOnce(&Path) -> String + 'static,
) -> Cluster {
    spec.rules(rules);
    let mut c = Cluster::configure(spec);
    for &i in start {
        c.start(i);
    }
    c
}

fn wait_stable(c: &Cluster) {
    c.wait_all_members(1, FORM_TIMEOUT);
    c.wait_for(1, "stable", FORM_TIMEOUT, |v| {
        v["execution"].is_null() && v["pending"].as_array().is_some_and(|p| p.is_empty())
    });
}

/// The event log as node `i` holds it.
fn event_log(c: &Cluster, i: usize) -> Vec<Value> {
    let (code, v) = c.request(i, "GET", "/v1/events", None);
    assert_eq!(code, 200, "{v}");
    v["events"].as_array().cloned().unwrap_or_default()
}

/// The finished records of `event` (as displayed, e.g. `UE_X on n2`) in node 1's log.
fn records(c: &Cluster, event: &str) -> Vec<Value> {
    event_log(c, 1)
        .into_iter()
        .filter(|r| r["event"] == event && r["outcome"] != "running")
        .collect()
}

/// Waits until node 1's log has `count` finished records of `event`; returns them.
fn wait_records(c: &Cluster, event: &str, count: usize, limit: Duration) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let found = records(c, event);
        if found.len() >= count {
            return found;
        }
        assert!(
            started.elapsed() < limit,
            "{event}: {} finished records, not {count}, within {limit:?}; log: {:#}\nlogs in {}",
            found.len(),
            Value::Array(event_log(c, 1)),
            c.path().display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts that node 1's log holds exactly `count` records of `event` for `quiet`.
fn assert_stays(c: &Cluster, event: &str, count: usize, quiet: Duration, why: &str) {
    let started = Instant::now();
    loop {
        let all: Vec<Value> = event_log(c, 1)
            .into_iter()
            .filter(|r| r["event"] == event)
            .collect();
        assert_eq!(
            all.len(),
            count,
            "{why}: {event} recorded {} times, expected {count}: {:#}",
            all.len(),
            Value::Array(all.clone())
        );
        if started.elapsed() >= quiet {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn journal(c: &Cluster) -> Vec<String> {
    std::fs::read_to_string(c.path().join("journal"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn node_log(c: &Cluster, i: usize) -> String {
    std::fs::read_to_string(c.path().join(format!("n{i}.log"))).unwrap_or_default()
}

// ------------------------------------------------------------------ rwho

/// The live (not zombie) processes named rwhod started from `dir`.
fn rwhod_pids(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or("Z");
        if comm.trim_end() == "rwhod"
            && String::from_utf8_lossy(&cmdline).contains(&needle)
            && state != "Z"
            && state != "X"
        {
            pids.push(pid);
        }
    }
    pids
}

fn wait_rwhod(dir: &Path, count: usize, what: &str) {
    let started = Instant::now();
    while rwhod_pids(dir).len() != count {
        assert!(
            started.elapsed() < FAILOVER_TIMEOUT,
            "{what}: {} rwhod processes, expected {count}",
            rwhod_pids(dir).len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill_rwhod(dir: &Path) {
    let pids = rwhod_pids(dir);
    assert_eq!(pids.len(), 1, "one rwhod to kill: {pids:?}");
    // SAFETY: kill(2) of a process this test started (its command line names the test dir).
    unsafe { libc::kill(pids[0], libc::SIGKILL) };
    wait_rwhod(dir, 0, "rwhod killed");
}

/// The daemon of node `i` (the init of its PID namespace: unshare's only child).
fn daemon_pid(c: &Cluster, i: usize) -> u32 {
    let unshare = c.pid(i).expect("node runs");
    let children =
        std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children")).unwrap();
    children.split_whitespace().next().unwrap().parse().unwrap()
}

/// Starts the fake rwhod (a copy of sleep(1) named rwhod: its comm is "rwhod") in node
/// `i`'s PID namespace, detached, as the seeds' start script does with startsrc.
fn start_rwhod(c: &Cluster, i: usize) {
    let status = Command::new("nsenter")
        .arg("--target")
        .arg(daemon_pid(c, i).to_string())
        .args(["--pid", "--mount", "--", "setsid", "-f"])
        .arg(c.path().join("rwhod"))
        .arg("3600")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "nsenter: {status}");
}

/// Seed 001, A.2.3 and A.2.4: the rules.hacmprd record of UE_PGMRWHO_DOWN as a native
/// rule, with the rwho.rp program; the messages and the restart (A.2.5 to A.2.8) append
/// to the journal. The restart starts rwhod again only while the application is on
/// (`rwhod.on`, A.2.1), as the seeds' rwho_restart does.
fn rwho_rules(dir: &Path) -> String {
    let journal = dir.join("journal");
    let journal = journal.display();
    let msg = |kind: &str| {
        format!(
            "echo \\\"$EVNAME {kind} on $HALCYON_NODE: rwhod failed on SP-Node $EVLOCATION, values $HALCYON_VALUE_0,$HALCYON_VALUE_1\\\" >> {journal}"
        )
    };
    let restart = format!(
        "if [ -f {on} ]; then setsid -f {rwhod} 3600 </dev/null >/dev/null 2>&1; echo \\\"$HALCYON_NODE restarted rwhod, values $HALCYON_VALUE_0,$HALCYON_VALUE_1\\\" >> {journal}; else echo \\\"$HALCYON_NODE recovery terminated\\\" >> {journal}; fi",
        on = dir.join("rwhod.on").display(),
        rwhod = dir.join("rwhod").display(),
    );
    format!(
        "[[event]]\nname = \"UE_PGMRWHO_DOWN\"\n\
         resource_variable = \"IBM.PSSP.Prog.xpcount\"\n\
         instance_vector = \"NodeNum=*;ProgName=rwhod;UserName=root\"\n\
         predicate = \"X@0==0&&X@1!=0\"\nrearm_predicate = \"X@0>0\"\n\
         program = '''\n\
         other \"{}\" 0 NULL\n\
         event \"{}\" 0 NULL\n\
         barrier\n\
         event \"{restart}\" 0 NULL\n\
         barrier\n\
         all \"{}\" X NULL\n'''\n",
        msg("remote"),
        msg("local"),
        msg("complete"),
    )
}

/// `node: what` of a record's commands, in launch order.
fn rwho_steps(record: &Value) -> Vec<String> {
    record["launches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let command = l["command"].as_str().unwrap();
            let what = ["remote", "local", "restart", "complete"]
                .into_iter()
                .find(|w| command.contains(w))
                .unwrap_or(command);
            format!("{}: {what}", l["node"].as_str().unwrap_or("coordinator"))
        })
        .collect()
}

#[test]
fn the_seeds_rwho_event_fires_when_rwhod_dies_on_n2_and_again_only_after_it_came_back() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root for a PID namespace per node (unshare --pid)");
        return;
    }
    // Each node in a PID namespace of its own: like separate hosts, only n2 sees its rwhod.
    let mut spec = Spec::new();
    spec.pid_namespaces = true;
    let c = cluster_with_rules(spec, &[1, 2, 3], rwho_rules);
    let dir: PathBuf = c.path().to_owned();
    std::fs::copy("/bin/sleep", dir.join("rwhod")).unwrap();
    wait_stable(&c);
    const EVENT: &str = "UE_PGMRWHO_DOWN on n2";

    // The rwho application runs on n2 (seed A.2.1: the flag file, then the daemon).
    std::fs::write(dir.join("rwhod.on"), "").unwrap();
    start_rwhod(&c, 2);
    wait_rwhod(&dir, 1, "rwhod started on n2");
    // n2's monitor samples every second: let it see rwhod running (X@1 of the next sample).
    assert_stays(&c, EVENT, 0, Duration::from_millis(2500), "rwhod runs");

    // 1. rwhod dies: n2's monitor fires (X@0 = 0 now, X@1 = 1 before); the program runs
    //    on every node with the event on n2, and its restart brings rwhod back.
    let killed = Instant::now();
    kill_rwhod(&dir);
    let record = wait_records(&c, EVENT, 1, FAILOVER_TIMEOUT).remove(0);
    eprintln!(
        "rwhod killed -> UE_PGMRWHO_DOWN finished in {:?}",
        killed.elapsed()
    );
    assert_eq!(record["outcome"], "done", "{record:#}");
    assert_eq!(record["by"], "monitor UE_PGMRWHO_DOWN", "{record:#}");
    assert_eq!(
        rwho_steps(&record),
        [
            "n1: remote",
            "n2: local",
            "n3: remote",
            "n2: restart",
            "n1: complete",
            "n2: complete",
            "n3: complete",
        ],
        "other/event, barrier, event restart, barrier, all: {record:#}"
    );
    let lines = journal(&c);
    for expected in [
        "UE_PGMRWHO_DOWN remote on n1: rwhod failed on SP-Node 2, values 0,1",
        "UE_PGMRWHO_DOWN local on n2: rwhod failed on SP-Node 2, values 0,1",
        "UE_PGMRWHO_DOWN remote on n3: rwhod failed on SP-Node 2, values 0,1",
        "n2 restarted rwhod, values 0,1",
        "UE_PGMRWHO_DOWN complete on n1: rwhod failed on SP-Node 2, values 0,1",
    ] {
        assert!(
            lines.contains(&expected.to_owned()),
            "the journal has no {expected:?} (HALCYON_VALUE_0/1 from the sample): {lines:?}"
        );
    }
    wait_rwhod(&dir, 1, "rwhod restarted by the recovery program");

    // 2. Fired once: not again while rwhod is back (the rearm predicate X@0>0 holds).
    assert_stays(&c, EVENT, 1, Duration::from_millis(2500), "rwhod is back");
    assert!(
        node_log(&c, 2).contains("monitor rearmed"),
        "n2 logs the rearm:\n{}",
        node_log(&c, 2)
    );

    // 3. The application is stopped on purpose (no flag), then rwhod dies again: the
    //    rearmed monitor fires a second time; the restart does nothing this time.
    std::fs::remove_file(dir.join("rwhod.on")).unwrap();
    kill_rwhod(&dir);
    let second = wait_records(&c, EVENT, 2, FAILOVER_TIMEOUT).remove(1);
    assert_eq!(second["outcome"], "done", "{second:#}");
    assert!(
        journal(&c).contains(&"n2 recovery terminated".to_owned()),
        "{:?}",
        journal(&c)
    );
    // rwhod stays dead: X@0 == 0 but X@1 == 0, and the monitor is disarmed anyway.
    assert_stays(
        &c,
        EVENT,
        2,
        Duration::from_secs(3),
        "rwhod stays dead after the second firing",
    );
    assert!(rwhod_pids(&dir).is_empty());
    // Only n2 saw rwhod: n1 and n3 never fired.
    for node in ["n1", "n3"] {
        assert_stays(
            &c,
            &format!("UE_PGMRWHO_DOWN on {node}"),
            0,
            Duration::ZERO,
            "no rwhod ran there",
        );
    }
}

// ------------------------------------------------------------------ package monitors

/// `web`'s monitor sampling `value.NODE` (its node's value file) every 200 ms with `action`.
fn web_monitor(dir: &Path, predicate: &str, rearm: Option<&str>, action: MonitorAction) -> Monitor {
    Monitor {
        name: "load".into(),
        sample: format!("cat {}/value.$HALCYON_NODE", dir.display()),
        interval: Duration::from_millis(200),
        predicate: predicate.into(),
        rearm: rearm.map(str::to_owned),
        action,
        stabilization: Duration::ZERO,
        restart: 0,
        restart_window: None,
    }
}

/// Configures `spec`, writes a healthy value (10) for every node (the monitors' directory is
/// the cluster's: configure first, then write, then start), starts the cluster and waits
/// for web on n1.
fn start_with_healthy_values(spec: Spec) -> (Cluster, PathBuf) {
    let mut c = Cluster::configure(spec);
    let dir: PathBuf = c.path().to_owned();
    for node in ["n1", "n2", "n3"] {
        set_value(&dir, node, 10);
    }
    for i in 1..=3 {
        c.start(i);
    }
    wait_stable(&c);
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    (c, dir)
}

fn set_value(dir: &Path, node: &str, value: u32) {
    let path = dir.join(format!("value.{node}"));
    let tmp = dir.join(format!("value.{node}.tmp"));
    std::fs::write(&tmp, format!("{value}\n")).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

#[test]
fn a_package_monitor_with_fail_package_fails_the_package_over() {
    // The value files are written before the daemons start: the monitor's directory is
    // the cluster's, so configure first, then write, then start.
    let mut spec = Spec::new();
    spec.web(|dir, web| {
        web.monitors
            .push(web_monitor(dir, "X>90", None, MonitorAction::FailPackage))
    });
    let (c, dir) = start_with_healthy_values(spec);
    // A sampler error (the file missing on n1 for a moment) fires nothing.
    std::fs::remove_file(dir.join("value.n1")).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    set_value(&dir, "n1", 10);
    std::thread::sleep(Duration::from_millis(600));
    let status = c.status(1).unwrap();
    assert_eq!(package_of(&status, "web")["nodes"][0], "n1", "{status:#}");
    assert!(
        node_log(&c, 1).contains("sampling failed"),
        "n1 logs the sampler's failure:\n{}",
        node_log(&c, 1)
    );

    let fired = Instant::now();
    set_value(&dir, "n1", 95);
    let moved = c.wait_web_on(1, "n2", FAILOVER_TIMEOUT);
    eprintln!("value 95 on n1 -> web up on n2 in {moved:?}");
    let failed: Vec<Value> = event_log(&c, 1)
        .into_iter()
        .filter(|r| r["event"].as_str().unwrap().starts_with("package_failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{:#}", Value::Array(failed.clone()));
    assert_eq!(failed[0]["by"], "monitor web:load", "{:#}", failed[0]);
    assert!(
        failed[0]["event"].as_str().unwrap().contains("n1"),
        "{:#}",
        failed[0]
    );
    c.wait_activity_from("n2", FAILOVER_TIMEOUT);
    // n1 is not chosen again for web while its failure stands; web stays on n2, whose
    // value is 10.
    std::thread::sleep(Duration::from_secs(1));
    let status = c.status(1).unwrap();
    let web = package_of(&status, "web");
    assert_eq!(web["nodes"][0], "n2", "{status:#}");
    assert!(fired.elapsed() < FAILOVER_TIMEOUT);
    assert_no_overlap(&c.activity(), 1);
}

#[test]
fn a_package_monitor_event_fires_once_until_its_rearm_predicate_held() {
    let mut spec = Spec::new();
    spec.web(|dir, web| {
        web.monitors.push(web_monitor(
            dir,
            "X>90",
            Some("X<80"),
            MonitorAction::Event("UE_WEB_LOAD".into()),
        ))
    });
    spec.rules(|dir| {
        format!(
            "[[event]]\nname = \"UE_WEB_LOAD\"\nprogram = '''\n\
             event \"echo \\\"$HALCYON_NODE load $HALCYON_VALUE $HALCYON_RESOURCE_VARIABLE $HALCYON_INSTANCE_VECTOR\\\" >> {}\" 0\n'''\n",
            dir.join("journal").display()
        )
    });
    let mut c = Cluster::configure(spec);
    let dir: PathBuf = c.path().to_owned();
    set_value(&dir, "n1", 50);
    for i in 1..=3 {
        c.start(i);
    }
    wait_stable(&c);
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    const EVENT: &str = "UE_WEB_LOAD on n1";

    // Above 90: fires once, and not again while it stays above 90, nor between 80 and 90.
    set_value(&dir, "n1", 95);
    let first = wait_records(&c, EVENT, 1, FAILOVER_TIMEOUT).remove(0);
    assert_eq!(first["outcome"], "done", "{first:#}");
    assert_eq!(first["by"], "monitor web:load", "{first:#}");
    assert_stays(&c, EVENT, 1, Duration::from_secs(1), "still above 90");
    set_value(&dir, "n1", 85);
    assert_stays(&c, EVENT, 1, Duration::from_millis(600), "85: not rearmed");
    set_value(&dir, "n1", 97);
    assert_stays(
        &c,
        EVENT,
        1,
        Duration::from_secs(1),
        "97 without a rearm in between",
    );
    // Below 80: rearmed; above 90 again: fires a second time.
    set_value(&dir, "n1", 70);
    std::thread::sleep(Duration::from_millis(600));
    assert_stays(&c, EVENT, 1, Duration::ZERO, "rearming fires nothing");
    set_value(&dir, "n1", 99);
    wait_records(&c, EVENT, 2, FAILOVER_TIMEOUT);
    let sample = format!(
        "cat {}/value.$HALCYON_NODE Package=web;Monitor=load",
        dir.display()
    );
    assert_eq!(
        journal(&c),
        [
            format!("n1 load 95 {sample}"),
            format!("n1 load 99 {sample}")
        ],
        "the sampled values reached the program"
    );
    // The package was never failed by its event monitor.
    let status = c.status(1).unwrap();
    assert_eq!(package_of(&status, "web")["nodes"][0], "n1", "{status:#}");
}

/// Issue 18, item 5: a notify-only monitor runs its command with the monitor's name and the
/// sample, and changes nothing: no event, web stays where it runs.
#[test]
fn a_notify_only_monitor_runs_its_command_and_changes_nothing() {
    let mut spec = Spec::new();
    spec.web(|dir, web| {
        let command = format!(
            "echo \"$HALCYON_NODE $HALCYON_PACKAGE $HALCYON_MONITOR $HALCYON_SAMPLE\" >> {}",
            dir.join("notified").display()
        );
        web.monitors.push(web_monitor(
            dir,
            "X>90",
            Some("X<80"),
            MonitorAction::Notify(command),
        ))
    });
    let (c, dir) = start_with_healthy_values(spec);
    let events_before = event_log(&c, 1).len();
    set_value(&dir, "n1", 95);
    let journal = dir.join("notified");
    let started = Instant::now();
    while !std::fs::read_to_string(&journal).is_ok_and(|t| !t.is_empty()) {
        assert!(
            started.elapsed() < FAILOVER_TIMEOUT,
            "the notify command never ran"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Held above the predicate: one firing, not one per sample.
    std::thread::sleep(Duration::from_secs(1));
    let text = std::fs::read_to_string(&journal).unwrap();
    assert_eq!(text, "n1 web web:load 95\n", "{text}");
    let status = c.status(1).unwrap();
    assert_eq!(package_of(&status, "web")["nodes"][0], "n1", "{status:#}");
    assert_eq!(event_log(&c, 1).len(), events_before, "an event was queued");
}

/// Issue 18, item 5: a monitor with a stabilization interval takes no sample before it has
/// passed since its package started, so an application still starting is not failed; once
/// it has passed, the monitor works as without one.
#[test]
fn a_monitor_waits_its_stabilization_interval_before_it_may_fail_the_package() {
    const STABILIZATION: Duration = Duration::from_secs(3);
    let mut spec = Spec::new();
    spec.web(|dir, web| {
        let mut monitor = web_monitor(dir, "X>90", None, MonitorAction::FailPackage);
        monitor.stabilization = STABILIZATION;
        web.monitors.push(monitor)
    });
    let mut c = Cluster::configure(spec);
    let dir: PathBuf = c.path().to_owned();
    // n1's value is bad from the start: without the interval web would fail at its first
    // sample (200 ms).
    for (node, value) in [("n1", 95), ("n2", 10), ("n3", 10)] {
        set_value(&dir, node, value);
    }
    for i in 1..=3 {
        c.start(i);
    }
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    let up = Instant::now();
    let log_has_waited = || node_log(&c, 1).contains("monitor waits for its package to stabilize");
    std::thread::sleep(STABILIZATION / 2);
    let status = c.status(1).unwrap();
    assert_eq!(package_of(&status, "web")["nodes"][0], "n1", "{status:#}");
    assert!(log_has_waited(), "{}", node_log(&c, 1));
    let moved = c.wait_web_on(1, "n2", FAILOVER_TIMEOUT);
    let after = up.elapsed();
    eprintln!(
        "web up on n1, failed over to n2 {after:?} later (stabilization {STABILIZATION:?}, waited {moved:?})"
    );
    assert!(
        after >= STABILIZATION - Duration::from_millis(500),
        "{after:?}"
    );
    assert_no_overlap(&c.activity(), 1);
}

fn web_pgid(c: &Cluster, i: usize) -> Option<i32> {
    std::fs::read_to_string(c.state_dir(i).join("run/web.0.pgid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Issue 18, item 5 (HACMP's application monitor restart count): a `fail_package` monitor
/// with `restart = 1` first restarts web's service on n1 (a new process group, web stays
/// on n1, counted as `monitor:load`); the next firing within the window fails web over.
#[test]
fn a_fail_package_monitor_restarts_locally_before_it_fails_the_package_over() {
    let mut spec = Spec::new();
    spec.web(|dir, web| {
        let mut monitor = web_monitor(dir, "X>90", Some("X<80"), MonitorAction::FailPackage);
        monitor.restart = 1;
        monitor.restart_window = Some(Duration::from_secs(600));
        web.monitors.push(monitor)
    });
    let (c, dir) = start_with_healthy_values(spec);
    let before = web_pgid(&c, 1).expect("web's process group on n1");
    set_value(&dir, "n1", 95);
    let started = Instant::now();
    let after = loop {
        assert!(
            started.elapsed() < FAILOVER_TIMEOUT,
            "web's service was not restarted"
        );
        if let Some(pgid) = web_pgid(&c, 1).filter(|&p| p != before) {
            break pgid;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "web restarted on n1 {:?} after the firing: group {before} -> {after}",
        started.elapsed()
    );
    let status = c.status(1).unwrap();
    let web = package_of(&status, "web");
    assert_eq!(web["nodes"][0], "n1", "{status:#}");
    assert_eq!(
        web["restarts"]["n1"]["monitor:load"]["count"], 1,
        "{status:#}"
    );
    assert!(
        !event_log(&c, 1)
            .iter()
            .any(|r| r["event"].as_str().unwrap().starts_with("package_failed")),
        "the first firing failed web"
    );
    // Healthy again (rearmed), then a second firing within the window: web moves.
    set_value(&dir, "n1", 10);
    std::thread::sleep(Duration::from_millis(600));
    set_value(&dir, "n1", 95);
    let moved = c.wait_web_on(1, "n2", FAILOVER_TIMEOUT);
    eprintln!("second firing -> web up on n2 in {moved:?}");
    assert_no_overlap(&c.activity(), 1);
}
