//! Fencing on a loopback cluster (issue 18 item 1, SPEC 6): every node has one fence device,
//! `tests/agents/fence_process`, which powers a node off by killing its daemon's processes.
//! A package that requires fencing starts elsewhere only after its failed node is fenced and
//! its lease has expired; a fence that fails holds it (ERROR, retried) until the
//! administrator answers; `halcyon node fence` fences on request.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use halcyon_testkit::config::FenceDevice;
use serde_json::Value;

const AGENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/agents/fence_process");

/// The pid file the fence device of node `i` reads.
fn pid_file(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("n{i}.pid"))
}

/// Three nodes, each with a fence device; web requires fencing; `fail`: every fence fails.
fn fenced(fail: bool) -> Cluster {
    fenced_with(fail, Vec::new())
}

/// [`fenced`], with these webhooks.
fn fenced_with(fail: bool, webhooks: Vec<halcyon_testkit::Webhook>) -> Cluster {
    let mut spec = Spec::new();
    spec.web(|_, web| web.requires = Some("fencing".into()));
    spec.edits_cluster_in(move |dir, config| {
        config.webhooks = webhooks;
        for (i, node) in config.nodes.iter_mut().enumerate() {
            let i = i + 1;
            let mut options = vec![
                ("pidfile".to_owned(), pid_file(dir, i).display().to_string()),
                (
                    "rundir".to_owned(),
                    dir.join(format!("state/n{i}/run")).display().to_string(),
                ),
                (
                    "log".to_owned(),
                    dir.join("fence.log").display().to_string(),
                ),
            ];
            if fail {
                options.push(("fail".into(), "1".into()));
            }
            node.fencing = Some(FenceDevice {
                agent: AGENT.into(),
                options,
                timeout: Some(Duration::from_secs(5)),
            });
        }
    });
    let c = Cluster::start_with(spec);
    for i in 1..=3 {
        let pid = c.pid(i).expect("the daemon runs");
        std::fs::write(pid_file(c.path(), i), pid.to_string()).unwrap();
    }
    assert_eq!(
        c.state_dir(1).join("run"),
        c.path().join("state/n1/run"),
        "the fence device kills the groups of the node's run directory"
    );
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    c.wait_all_members(1, FORM_TIMEOUT);
    c.wait_activity_from("n1", Duration::from_secs(5));
    c
}

/// The event-log record named `event` on node `i`, the newest.
fn record(c: &Cluster, i: usize, event: &str) -> Option<Value> {
    let (code, v) = c.request(i, "GET", "/v1/events", None);
    assert_eq!(code, 200, "{v}");
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["event"] == event)
        .cloned()
}

fn daemon_gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.rsplit(") ").next().is_some_and(|s| s.starts_with('Z')))
        .unwrap_or(true)
}

#[test]
fn a_paused_holder_is_fenced_before_a_package_that_requires_fencing_starts_elsewhere() {
    let c = fenced(false);
    let pid = c.pid(1).unwrap();
    let paused = Instant::now();
    assert!(c.signal(1, libc::SIGSTOP));
    let took = c.wait_web_on(2, "n2", FAILOVER_TIMEOUT);
    eprintln!(
        "web up on n2 {:?} after n1 was paused",
        paused.elapsed().min(took)
    );
    // n1 was powered off by its fence device, and the takeover waited for it.
    assert!(daemon_gone(pid), "n1's daemon still runs after its fence");
    let fence = record(&c, 2, "node_fence n1 (off): confirmed").expect("n1's fence is recorded");
    let notes: Vec<&str> = fence["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["text"].as_str().unwrap())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("fence_process off: exit 0"))
            && notes
                .iter()
                .any(|n| n.contains("fence_process status: exit 2")),
        "{notes:#?}"
    );
    let down = record(&c, 2, "node_down n1 (failure)").expect("n1's failure is recorded");
    let release = down["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "await_release")
        .unwrap_or_else(|| panic!("{down:#}"));
    assert_eq!(
        release["detail"], "n1 is fenced and its lease has certainly expired",
        "{down:#}"
    );
    c.wait_activity_from("n2", Duration::from_secs(5));
    assert_no_overlap(&c.activity(), 1);
    // Status shows the fence.
    let v = c.status(2).unwrap();
    let f = &node_of(&v, "n1")["fence"];
    assert_eq!(
        (&f["confirmed"], &f["current"], &f["action"]),
        (&Value::Bool(true), &Value::Bool(true), &Value::from("off")),
        "{v:#}"
    );
    let text = status_text(&c, 2);
    assert!(
        text.contains("n1: fenced (off)") && text.contains("by coordinator"),
        "{text}"
    );
}

#[test]
fn a_fence_that_fails_holds_a_package_that_requires_it_until_the_administrator_skips_it() {
    let mut c = fenced(true);
    c.kill(1);
    // The lease alone would let web start after about 0.7 s: it must wait for the fence.
    c.wait_for(2, "n1's fence failed", FAILOVER_TIMEOUT, |v| {
        node_of(v, "n1")["fence"]["failures"].as_u64() >= Some(1)
    });
    std::thread::sleep(Duration::from_secs(2));
    let v = c.status(2).unwrap();
    assert!(
        package_of(&v, "web")["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n != "n2" && n != "n3"),
        "web started without a fence: {v:#}"
    );
    let execution = v["execution"]
        .as_object()
        .unwrap_or_else(|| panic!("{v:#}"));
    let id = execution["id"].as_u64().unwrap();
    let text = status_text(&c, 2);
    assert!(text.contains("n1: FENCE FAILED (off)"), "{text}");
    let (code, v) = c.request(2, "GET", "/v1/events", None);
    assert_eq!(code, 200);
    let running = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .unwrap()
        .clone();
    assert!(
        running["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["text"]
                .as_str()
                .unwrap()
                .starts_with("ERROR: fencing n1 failed")),
        "{running:#}"
    );
    // resume would take n1 as fenced: refused. retry fences again at once.
    let (code, out) = cli(&c, 2, &["event", "resume", &id.to_string()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("would take n1 as fenced"), "{out}");
    let log = c.path().join("fence.log");
    let offs = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("off n1"))
            .count()
    };
    let before = offs();
    let (code, out) = cli(&c, 2, &["event", "retry", &id.to_string()]);
    assert_eq!(code, 0, "{out}");
    c.wait_for(2, "another fence of n1", FAILOVER_TIMEOUT, |v| {
        node_of(v, "n1")["fence"]["failures"].as_u64() > Some(1)
    });
    assert!(offs() > before, "retry ran no fence agent");
    // skip: the takeover waits for the lease only (long expired): web starts on n2.
    let (code, out) = cli(&c, 2, &["event", "skip", &id.to_string()]);
    assert_eq!(code, 0, "{out}");
    c.wait_web_on(2, "n2", FAILOVER_TIMEOUT);
    c.wait_activity_from("n2", Duration::from_secs(5));
    assert_no_overlap(&c.activity(), 1);
}

#[test]
fn node_fence_powers_a_node_off_and_prints_the_confirmation() {
    let (live, bodies) = webhook_receiver();
    let c = fenced_with(
        false,
        vec![halcyon_testkit::Webhook {
            url: format!("http://{live}/fences"),
            events: vec!["node_fence".into()],
            timeout: None,
            retries: None,
        }],
    );
    // The coordinator runs the agents: fencing itself is refused, and changes nothing.
    let (coordinator, k) = c.coordinator(1);
    let (code, out) = cli(&c, 1, &["node", "fence", &coordinator]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("refused: {coordinator} is the coordinator")),
        "{out}"
    );
    assert!(!daemon_gone(c.pid(k).unwrap()));
    // Another node than the coordinator and web's n1.
    let t = (2..=3).find(|&i| i != k).unwrap();
    let target = format!("n{t}");
    let pid = c.pid(t).unwrap();
    let (code, out) = cli(&c, 1, &["node", "fence", &target]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("{target} fenced (off) by level 1")),
        "{out}"
    );
    assert!(out.contains("fence_process status: exit 2"), "{out}");
    assert!(daemon_gone(pid));
    assert!(record(&c, 1, &format!("node_fence {target} (off): confirmed")).is_some());
    // The fence's record went to the webhook that names node_fence.
    let body = bodies
        .recv_timeout(FAILOVER_TIMEOUT)
        .expect("the webhook receives the node_fence record");
    assert_eq!(body["reason"], "finished", "{body:#}");
    assert_eq!(
        body["record"]["event"],
        format!("node_fence {target} (off): confirmed"),
        "{body:#}"
    );
    // The cluster goes on without it; web stays untouched on n1.
    c.wait_for(1, "the fenced node down", FAILOVER_TIMEOUT, |v| {
        node_of(v, &target)["member"] == false && v["execution"].is_null()
    });
    assert_eq!(package_of(&c.status(1).unwrap(), "web")["nodes"][0], "n1");
    // Bad input: a precise error, nothing done.
    let (code, out) = cli(&c, 1, &["node", "fence", "n1", "--action", "cycle"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("action \"cycle\"; expected off or reboot"),
        "{out}"
    );
    let (code, out) = cli(&c, 1, &["node", "halt", "n1", "--action", "off"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--action is for node fence"), "{out}");
    let (code, out) = cli(&c, 1, &["node", "fence", "n9"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("unknown node \"n9\""), "{out}");
    assert!(
        !daemon_gone(c.pid(1).unwrap()),
        "n1 was fenced by a refused request"
    );
}

#[test]
fn node_fence_of_a_node_without_fencing_is_refused() {
    let c = Cluster::start_with(Spec::new());
    c.wait_all_members(1, FORM_TIMEOUT);
    let (code, out) = cli(&c, 1, &["node", "fence", "n2"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("refused: n2 has no [node.fencing] in the running configuration"),
        "{out}"
    );
}

#[test]
fn apply_adds_fence_devices_to_a_running_cluster_and_leaves_web_untouched() {
    let c = Cluster::start_with(Spec::new());
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    c.wait_all_members(1, FORM_TIMEOUT);
    let pids = c.service_groups(1);
    let mut config = c.config().clone();
    for (i, node) in config.nodes.iter_mut().enumerate() {
        let i = i + 1;
        std::fs::write(pid_file(c.path(), i), c.pid(i).unwrap().to_string()).unwrap();
        node.fencing = Some(FenceDevice {
            agent: AGENT.into(),
            options: vec![
                (
                    "pidfile".to_owned(),
                    pid_file(c.path(), i).display().to_string(),
                ),
                ("password".to_owned(), "hunter2".to_owned()),
            ],
            timeout: None,
        });
    }
    let dir = c.path().join("with-fencing");
    config.write(&dir).unwrap();
    let (code, out) = cli(&c, 1, &["apply", dir.to_str().unwrap(), "--yes"]);
    // The agent does not declare `password`: check (run by apply first) refuses it.
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("unknown option \"password\""), "{out}");
    for node in config.nodes.iter_mut() {
        if let Some(f) = node.fencing.as_mut() {
            f.options.retain(|(k, _)| k != "password");
        }
    }
    config.write(&dir).unwrap();
    let (code, out) = cli(&c, 1, &["apply", dir.to_str().unwrap(), "--yes"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("fencing"), "the difference is shown: {out}");
    c.wait_for(1, "generation 2", FAILOVER_TIMEOUT, |v| {
        v["generation"] == 2 && v["execution"].is_null()
    });
    assert_eq!(c.service_groups(1), pids, "web was restarted by the apply");
    let (code, out) = cli(&c, 1, &["node", "fence", "n3"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("n3 fenced (off)"), "{out}");
}
