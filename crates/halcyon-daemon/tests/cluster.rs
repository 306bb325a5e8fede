//! Multi-process clusters on loopback (127.0.0.1-3), no root: the `halcyond` binary runs each
//! node. Every test is bounded in time and kills its processes (daemons by PID, services by
//! process group) when it ends, passing or failing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use halcyon_daemon::client;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_halcyond");
const FORM_TIMEOUT: Duration = Duration::from_secs(30);
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(20);

struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    daemons: Vec<Option<Child>>,
}

impl Cluster {
    /// Writes a 3-node configuration whose package `web` runs a service that appends
    /// `alive NODE NANOS` to `activity.log` every 10 ms.
    fn new(port: u16, extra_package: &str) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("halcyon-test-")
            .tempdir()
            .unwrap();
        let config = dir.path().join("config");
        std::fs::create_dir_all(&config).unwrap();
        let mut cluster = format!(
            "[cluster]\nname = \"t\"\nid = 1\nport = {port}\n[heartbeat]\ninterval = \"100ms\"\nsensitivity = 4\n\
             [[network]]\nname = \"lo\"\nkind = \"ip\"\nsubnets = [\"127.0.0.0/8\"]\n"
        );
        for i in 1..=3 {
            cluster.push_str(&format!(
                "[[node]]\nname = \"n{i}\"\nnumber = {i}\n[[node.interface]]\nnetwork = \"lo\"\naddress = \"127.0.0.{i}\"\n"
            ));
        }
        std::fs::write(config.join("cluster.toml"), cluster).unwrap();
        let log = dir.path().join("activity.log");
        let package = format!(
            "[package]\nname = \"web\"\ntype = \"failover\"\nnodes = [\"n1\", \"n2\", \"n3\"]\nauto_run = true\n\
             [[resource]]\nkind = \"service\"\nname = \"srv\"\nrestart = 1\nhalt_timeout = \"1s\"\n\
             command = '''while :; do echo \"alive $HALCYON_NODE $(date +%s%N)\" >> {}; sleep 0.01; done'''\n",
            log.display()
        );
        std::fs::write(config.join("web.toml"), package).unwrap();
        if !extra_package.is_empty() {
            std::fs::write(config.join("extra.toml"), extra_package).unwrap();
        }
        let mut c = Cluster {
            dir,
            port,
            daemons: vec![None, None, None],
        };
        for i in 1..=3 {
            c.start(i);
        }
        c
    }

    fn state_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("state/n{i}"))
    }

    fn start(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("n{i}.log")))
            .unwrap();
        let child = Command::new(BIN)
            .args(["daemon", "--test-faults", "--node", &format!("n{i}")])
            .arg("--config")
            .arg(self.dir.path().join("config"))
            .arg("--state-dir")
            .arg(self.state_dir(i))
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemons[i - 1] = Some(child);
    }

    fn api(&self, i: usize) -> SocketAddr {
        format!("127.0.0.{i}:{}", self.port + 2).parse().unwrap()
    }

    fn service_groups(&self, i: usize) -> Vec<i32> {
        std::fs::read_dir(self.state_dir(i).join("run"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
            .collect()
    }

    /// SIGKILL of a node: its daemon and its services' process groups.
    fn kill(&mut self, i: usize) {
        let groups = self.service_groups(i);
        if let Some(mut child) = self.daemons[i - 1].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for g in groups {
            halcyon_resources::signal_group(g, libc::SIGKILL);
        }
    }

    /// SIGTERM: the daemon halts its packages and exits.
    fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.daemons[i - 1].take() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn is_running(&mut self, i: usize) -> bool {
        self.daemons[i - 1]
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn request(&self, i: usize, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        match rt.block_on(client::request(
            self.api(i),
            method,
            path,
            body,
            Duration::from_secs(40),
        )) {
            Ok(r) => (r.status, r.json().unwrap_or(Value::String(r.body))),
            Err(e) => (0, Value::String(e)),
        }
    }

    fn status(&self, i: usize) -> Option<Value> {
        match self.request(i, "GET", "/v1/status", None) {
            (200, v) => Some(v),
            _ => None,
        }
    }

    /// Waits until node `i` reports `web` up on `node`.
    fn wait_web_on(&self, i: usize, node: &str, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if let Some(v) = self.status(i)
                && web(&v)["status"] == "up"
                && web(&v)["nodes"][0] == node
                && v["execution"].is_null()
            {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "web did not run on {node} within {limit:?}; status from n{i}: {:#}\nlogs in {}",
                self.status(i).unwrap_or_default(),
                self.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until node `i` reports every node a member with incarnation `incarnation`.
    fn wait_members(&self, i: usize, incarnation: u64, limit: Duration) {
        let started = Instant::now();
        loop {
            if let Some(v) = self.status(i)
                && v["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|n| n["member"] == true && n["incarnation"] == incarnation)
                && v["execution"].is_null()
                && v["pending"].as_array().is_some_and(|p| p.is_empty())
            {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "not every node became a member (incarnation {incarnation}) within {limit:?}: {:#}",
                self.status(i).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `(node, nanos)` lines of the service activity log.
    fn activity(&self) -> Vec<(String, u128)> {
        read_activity(&self.dir.path().join("activity.log"))
    }

    fn leak(self) {
        // Keep the directory for inspection after a failure (Drop still kills processes).
        let path = self.dir.path().to_owned();
        eprintln!("cluster directory: {}", path.display());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 1..=3 {
            self.kill(i);
        }
        common::kill_processes_mentioning(self.dir.path());
        if std::thread::panicking() {
            eprintln!("test failed; cluster logs:");
            for i in 1..=3 {
                let log = std::fs::read_to_string(self.dir.path().join(format!("n{i}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- n{i} (last lines) ---");
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

fn read_activity(path: &Path) -> Vec<(String, u128)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next()? == "alive").then_some(())?;
            Some((parts.next()?.to_owned(), parts.next()?.parse().ok()?))
        })
        .collect()
}

fn web(status: &Value) -> &Value {
    status["packages"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "web"))
        .expect("package web in status")
}

/// Checks the activity log never shows two nodes alternating: every node's activity period
/// ends before the next one's begins. Returns the gap between periods (ns).
fn assert_no_overlap(activity: &[(String, u128)]) -> Vec<(String, String, i128)> {
    let mut periods: Vec<(String, u128, u128)> = Vec::new();
    for (node, t) in activity {
        match periods.iter_mut().find(|p| &p.0 == node) {
            Some(p) => {
                p.1 = p.1.min(*t);
                p.2 = p.2.max(*t);
            }
            None => periods.push((node.clone(), *t, *t)),
        }
    }
    periods.sort_by_key(|p| p.1);
    let mut gaps = Vec::new();
    for w in periods.windows(2) {
        let gap = w[1].1 as i128 - w[0].2 as i128;
        assert!(
            gap > 0,
            "package active on {} and {} at once: {}'s last activity is {} ns after {}'s first",
            w[0].0,
            w[1].0,
            w[0].0,
            -gap,
            w[1].0
        );
        gaps.push((w[0].0.clone(), w[1].0.clone(), gap));
    }
    gaps
}

#[test]
fn a_cluster_forms_and_fails_over_when_the_running_node_dies() {
    let mut c = Cluster::new(27100, "");
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    c.wait_members(2, 1, FORM_TIMEOUT);
    assert!(c.status(2).unwrap()["coordinator"].is_string());

    let killed = Instant::now();
    c.kill(1);
    let took = c.wait_web_on(2, "n2", FAILOVER_TIMEOUT);
    eprintln!(
        "failover after SIGKILL of n1 observed in {:?}",
        killed.elapsed().min(took)
    );
    // The service really runs on n2.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !c.activity().iter().any(|(n, _)| n == "n2") {
        assert!(Instant::now() < deadline, "no activity from n2's service");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_no_overlap(&c.activity());
    let v = c.status(3).unwrap();
    let n1 = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "n1")
        .unwrap()
        .clone();
    assert_eq!(n1["member"], false);
    let events: Vec<String> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        events.iter().any(|e| e == "node_down n1 (failure)"),
        "{events:?}"
    );
    c.leak();
}

#[test]
fn an_isolated_node_halts_its_package_before_the_majority_starts_it() {
    let mut c = Cluster::new(27200, "");
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    std::thread::sleep(Duration::from_millis(300));
    let (code, body) = c.request(1, "POST", "/v1/debug/isolate", None);
    assert_eq!(code, 200, "{body}");
    c.wait_web_on(2, "n2", FAILOVER_TIMEOUT);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !c.activity().iter().any(|(n, _)| n == "n2") {
        assert!(Instant::now() < deadline, "no activity from n2's service");
        std::thread::sleep(Duration::from_millis(20));
    }
    // n1's daemon is alive (it fenced itself; it did not die), and answers that it has no quorum.
    assert!(c.is_running(1));
    let v = c.status(1).unwrap();
    assert_eq!(v["quorum"]["has_quorum"], false, "{v:#}");
    std::thread::sleep(Duration::from_millis(500));
    let gaps = assert_no_overlap(&c.activity());
    eprintln!(
        "n1 stopped, then n2 started, {} ms apart",
        gaps[0].2 / 1_000_000
    );
    // A write through the isolated node is refused with the cause.
    let (code, body) = c.request(1, "POST", "/v1/packages/web/move", Some(r#"{"node":"n3"}"#));
    assert_eq!(code, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with("no quorum:"),
        "{body}"
    );
}

#[test]
fn state_survives_a_restart_of_every_node() {
    let mut c = Cluster::new(27300, "");
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    c.wait_members(1, 1, FORM_TIMEOUT);
    let (code, body) = c.request(3, "POST", "/v1/packages/web/move", Some(r#"{"node":"n2"}"#));
    assert_eq!(code, 200, "{body}");
    c.wait_web_on(1, "n2", FAILOVER_TIMEOUT);
    let before = c.status(2).unwrap();
    for i in 1..=3 {
        c.stop(i);
    }
    for i in 1..=3 {
        c.start(i);
    }
    c.wait_members(1, 2, FORM_TIMEOUT);
    c.wait_web_on(1, "n2", FORM_TIMEOUT);
    let after = c.status(1).unwrap();
    let ids = |v: &Value| -> Vec<u64> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_u64().unwrap())
            .collect()
    };
    for id in ids(&before) {
        assert!(ids(&after).contains(&id), "event {id} lost: {after:#}");
    }
    assert!(
        after["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "package_move web n2")
    );
    for n in after["nodes"].as_array().unwrap() {
        assert_eq!(n["incarnation"], 2, "{n}");
    }
    // The service runs again on n2 (restarted by the node from the committed state).
    let restarted = Instant::now();
    let count = |c: &Cluster| c.activity().iter().filter(|(n, _)| n == "n2").count();
    let seen = count(&c);
    while count(&c) <= seen + 2 {
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "n2's service did not restart"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_requests_get_precise_errors_and_change_nothing() {
    let c = Cluster::new(27400, "");
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    c.wait_members(2, 1, FORM_TIMEOUT);
    let before = c.status(2).unwrap();
    let cases: &[(&str, Option<&str>, u16, &str)] = &[
        (
            "/v1/packages/nope/run",
            None,
            404,
            "unknown package \"nope\" (packages: web)",
        ),
        (
            "/v1/packages/web/explode",
            None,
            404,
            "unknown package operation \"explode\"; expected run, halt, move, enable or disable",
        ),
        (
            "/v1/packages/web/move",
            Some(r#"{"node":"n9"}"#),
            404,
            "unknown node \"n9\" (nodes: n1, n2, n3)",
        ),
        (
            "/v1/packages/web/move",
            Some(r#"{"nod":"n2"}"#),
            400,
            "bad request body: unknown field `nod`",
        ),
        ("/v1/packages/web/move", Some("{"), 400, "bad request body:"),
        (
            "/v1/packages/web/run",
            None,
            409,
            "refused: package web already runs on n1",
        ),
        (
            "/v1/packages/web/move",
            Some(r#"{"node":"n1"}"#),
            409,
            "refused:",
        ),
        ("/v1/nodes/n7/halt", None, 404, "unknown node \"n7\""),
        (
            "/v1/nodes/n2/halt",
            Some(r#"{"how":"gently"}"#),
            400,
            "bad request body: how \"gently\"",
        ),
        (
            "/v1/nodes/n2/reboot",
            None,
            404,
            "unknown node operation \"reboot\"",
        ),
        ("/v1/nothing", None, 404, "no such API endpoint"),
    ];
    for (path, body, status, error) in cases {
        // Ask a follower and the leader alike.
        for i in [2, 1] {
            let (code, answer) = c.request(i, "POST", path, *body);
            let text = answer["error"].as_str().unwrap_or_default();
            assert_eq!(code, *status, "{path} {body:?} on n{i}: {answer}");
            assert!(
                text.starts_with(error),
                "{path} {body:?} on n{i}: {text:?} does not start with {error:?}"
            );
        }
    }
    let after = c.status(2).unwrap();
    assert_eq!(before["events"], after["events"]);
    assert_eq!(before["packages"], after["packages"]);
    assert_eq!(
        before["quorum"]["last_applied"],
        after["quorum"]["last_applied"]
    );
}
