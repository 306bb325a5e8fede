//! A configurable multi-process cluster on loopback for the daemon's integration tests.
//!
//! Node `i` has the address `127.0.0.i` on network `lan1` and, when a second IP network is
//! configured, `127.0.1.i` on `lan2`; the witness (when configured) is `127.0.0.9`, number 9.
//! Every daemon runs the `halcyond` binary with `--test-faults`. `Drop` kills every process the
//! test started (daemons by PID, services by process group), passing or failing.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use halcyon_daemon::client;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_halcyond");
pub const FORM_TIMEOUT: Duration = Duration::from_secs(30);
pub const FAILOVER_TIMEOUT: Duration = Duration::from_secs(20);
/// The witness's number and address.
pub const WITNESS_NUMBER: usize = 9;

/// What the test cluster looks like.
pub struct Spec {
    pub port: u16,
    pub nodes: usize,
    /// A second IP network `lan2` (127.0.1.i) besides `lan1`.
    pub lan2: bool,
    /// A disk heartbeat network `disk` (a file in the test directory).
    pub disk: bool,
    pub witness: bool,
    /// Extra lines of the `[quorum]` table.
    pub quorum: String,
    /// Extra lines of package `web`'s `[package]` table (e.g. `failback_policy = "automatic"`).
    pub web: String,
    /// The `service` resource of `web`: `restart` count and command (default: the activity
    /// loop appending `alive NODE NANOS` to `activity.log` every 10 ms).
    pub web_restart: u32,
    pub web_command: Option<String>,
    /// More package files: (file name, contents).
    pub packages: Vec<(String, String)>,
    /// Each daemon in a PID namespace of its own with its own /proc (`unshare --pid
    /// --mount-proc`), so that each node sees only its own processes, as on separate
    /// hosts (process-count monitors). Killing a node kills its whole namespace.
    pub pid_namespaces: bool,
}

impl Spec {
    pub fn new(port: u16) -> Spec {
        Spec {
            port,
            nodes: 3,
            lan2: false,
            disk: false,
            witness: false,
            quorum: String::new(),
            web: String::new(),
            web_restart: 1,
            web_command: None,
            packages: Vec::new(),
            pid_namespaces: false,
        }
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub nodes: usize,
    /// Daemons by node number - 1; the witness is the last slot when configured.
    daemons: Vec<Option<Child>>,
    witness: bool,
    pid_namespaces: bool,
}

/// A service command that appends `alive NODE NANOS` to `log` every 10 ms.
pub fn activity_command(log: &Path) -> String {
    format!(
        "while :; do echo \"alive $HALCYON_NODE $(date +%s%N)\" >> {}; sleep 0.01; done",
        log.display()
    )
}

impl Cluster {
    /// Writes the configuration and starts every daemon (and the witness).
    pub fn start_with(spec: Spec) -> Cluster {
        let c = Cluster::configure(&spec);
        let mut c = c;
        for i in 1..=spec.nodes {
            c.start(i);
        }
        if spec.witness {
            c.start_witness();
        }
        c
    }

    pub fn configure(spec: &Spec) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("halcyon-test-")
            .tempdir()
            .unwrap();
        let config = dir.path().join("config");
        std::fs::create_dir_all(&config).unwrap();
        let port = spec.port;
        let mut cluster = format!(
            "[cluster]\nname = \"t\"\nid = 1\nport = {port}\n[heartbeat]\ninterval = \"100ms\"\nsensitivity = 4\n"
        );
        if spec.witness || !spec.quorum.is_empty() {
            cluster.push_str("[quorum]\n");
            cluster.push_str(&spec.quorum);
            cluster.push('\n');
            if spec.witness {
                cluster.push_str(&format!(
                    "[quorum.witness]\nname = \"w\"\nnumber = {WITNESS_NUMBER}\naddress = \"127.0.0.{WITNESS_NUMBER}\"\n"
                ));
            }
        }
        cluster.push_str(
            "[[network]]\nname = \"lan1\"\nkind = \"ip\"\nsubnets = [\"127.0.0.0/24\"]\n",
        );
        if spec.lan2 {
            cluster.push_str(
                "[[network]]\nname = \"lan2\"\nkind = \"ip\"\nsubnets = [\"127.0.1.0/24\"]\n",
            );
        }
        if spec.disk {
            cluster.push_str(&format!(
                "[[network]]\nname = \"disk\"\nkind = \"disk\"\ndevice = \"{}\"\n",
                dir.path().join("heartbeat.disk").display()
            ));
        }
        for i in 1..=spec.nodes {
            cluster.push_str(&format!(
                "[[node]]\nname = \"n{i}\"\nnumber = {i}\n[[node.interface]]\nnetwork = \"lan1\"\naddress = \"127.0.0.{i}\"\n"
            ));
            if spec.lan2 {
                cluster.push_str(&format!(
                    "[[node.interface]]\nnetwork = \"lan2\"\naddress = \"127.0.1.{i}\"\n"
                ));
            }
        }
        std::fs::write(config.join("cluster.toml"), cluster).unwrap();
        let log = dir.path().join("activity.log");
        let node_list: Vec<String> = (1..=spec.nodes).map(|i| format!("\"n{i}\"")).collect();
        let command = spec
            .web_command
            .clone()
            .unwrap_or_else(|| activity_command(&log));
        let package = format!(
            "[package]\nname = \"web\"\ntype = \"failover\"\nnodes = [{}]\nauto_run = true\n{}\n\
             [[resource]]\nkind = \"service\"\nname = \"srv\"\nrestart = {}\nhalt_timeout = \"1s\"\n\
             command = '''{}'''\n",
            node_list.join(", "),
            spec.web,
            spec.web_restart,
            command
        );
        std::fs::write(config.join("web.toml"), package).unwrap();
        for (name, text) in &spec.packages {
            std::fs::write(config.join(name), text).unwrap();
        }
        let slots = spec.nodes + usize::from(spec.witness);
        Cluster {
            dir,
            port,
            nodes: spec.nodes,
            daemons: (0..slots).map(|_| None).collect(),
            witness: spec.witness,
            pid_namespaces: spec.pid_namespaces,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("state/n{i}"))
    }

    fn log_file(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .unwrap()
    }

    pub fn start(&mut self, i: usize) {
        let log = self.log_file(&format!("n{i}"));
        let mut command = if self.pid_namespaces {
            // The daemon is the namespace's init: it dies with unshare (--kill-child), and
            // every process of the namespace with it.
            let mut c = Command::new("unshare");
            c.args(["--pid", "--fork", "--mount-proc", "--kill-child"])
                .arg(BIN);
            c
        } else {
            Command::new(BIN)
        };
        let child = command
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

    pub fn start_witness(&mut self) {
        assert!(self.witness, "no witness configured");
        let log = self.log_file("w");
        let child = Command::new(BIN)
            .args(["witness", "--test-faults"])
            .arg("--config")
            .arg(self.dir.path().join("config"))
            .arg("--state-dir")
            .arg(self.dir.path().join("state/w"))
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let slot = self.nodes;
        self.daemons[slot] = Some(child);
    }

    pub fn kill_witness(&mut self) {
        let slot = self.nodes;
        if let Some(mut child) = self.daemons[slot].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn api(&self, i: usize) -> SocketAddr {
        format!("127.0.0.{i}:{}", self.port + 2).parse().unwrap()
    }

    pub fn service_groups(&self, i: usize) -> Vec<i32> {
        std::fs::read_dir(self.state_dir(i).join("run"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
            .collect()
    }

    /// SIGKILL of a node: its daemon and its services' process groups.
    pub fn kill(&mut self, i: usize) {
        // In a PID namespace the recorded groups are the namespace's numbers (not ours to
        // signal); the namespace dies with its daemon.
        let groups = if self.pid_namespaces {
            Vec::new()
        } else {
            self.service_groups(i)
        };
        if let Some(mut child) = self.daemons[i - 1].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for g in groups {
            halcyon_resources::signal_group(g, libc::SIGKILL);
        }
    }

    /// SIGKILL of a node's daemon only: its services keep running (until the restarted
    /// daemon kills what it finds left over).
    pub fn kill_daemon_only(&mut self, i: usize) {
        if let Some(mut child) = self.daemons[i - 1].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM: the daemon halts its packages and exits.
    pub fn stop(&mut self, i: usize) {
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

    /// The PID of node `i`'s daemon, while it runs (with `pid_namespaces`, of its unshare).
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.daemons[i - 1].as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        self.daemons[i - 1]
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn request_to(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        match rt.block_on(client::request(
            addr,
            method,
            path,
            body,
            Duration::from_secs(40),
        )) {
            Ok(r) => (r.status, r.json().unwrap_or(Value::String(r.body))),
            Err(e) => (0, Value::String(e)),
        }
    }

    pub fn request(&self, i: usize, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        self.request_to(self.api(i), method, path, body)
    }

    pub fn status(&self, i: usize) -> Option<Value> {
        match self.request(i, "GET", "/v1/status", None) {
            (200, v) => Some(v),
            _ => None,
        }
    }

    /// Waits until `check` holds for node `i`'s status; panics with the status after `limit`.
    pub fn wait_for(
        &self,
        i: usize,
        what: &str,
        limit: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Duration {
        let started = Instant::now();
        loop {
            if let Some(v) = self.status(i)
                && check(&v)
            {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "{what}: not within {limit:?}; status from n{i}: {:#}\nlogs in {}",
                self.status(i).unwrap_or_default(),
                self.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until node `i` reports `package` up on `node` with no plan running.
    pub fn wait_package_on(
        &self,
        i: usize,
        package: &str,
        node: &str,
        limit: Duration,
    ) -> Duration {
        self.wait_for(i, &format!("{package} up on {node}"), limit, |v| {
            let p = package_of(v, package);
            p["status"] == "up" && p["nodes"][0] == node && v["execution"].is_null()
        })
    }

    pub fn wait_web_on(&self, i: usize, node: &str, limit: Duration) -> Duration {
        self.wait_package_on(i, "web", node, limit)
    }

    /// Waits until node `i` reports every node a member and nothing pending or running.
    pub fn wait_all_members(&self, i: usize, limit: Duration) {
        self.wait_for(i, "every node a member", limit, |v| {
            v["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|n| n["member"] == true)
                && v["execution"].is_null()
                && v["pending"].as_array().is_some_and(|p| p.is_empty())
        });
    }

    /// Waits until node `i` reports `node` a member with `incarnation`, and nothing pending.
    pub fn wait_member(&self, i: usize, node: &str, incarnation: u64, limit: Duration) {
        self.wait_for(
            i,
            &format!("{node} member (incarnation {incarnation})"),
            limit,
            |v| {
                let n = node_of(v, node);
                n["member"] == true
                    && n["incarnation"] == incarnation
                    && v["execution"].is_null()
                    && v["pending"].as_array().is_some_and(|p| p.is_empty())
            },
        );
    }

    /// `(node, nanos)` lines of the service activity log.
    pub fn activity(&self) -> Vec<(String, u128)> {
        read_activity(&self.dir.path().join("activity.log"))
    }

    /// Waits until the activity log has new lines from `node` (the service really runs there).
    pub fn wait_activity_from(&self, node: &str, limit: Duration) {
        let seen = self.activity().iter().filter(|(n, _)| n == node).count();
        let started = Instant::now();
        while self.activity().iter().filter(|(n, _)| n == node).count() <= seen + 2 {
            assert!(
                started.elapsed() < limit,
                "no new activity from {node}'s service within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The event names in node `i`'s event log (oldest first, as far as status shows them).
    pub fn events(&self, i: usize) -> Vec<String> {
        let (code, v) = self.request(i, "GET", "/v1/events", None);
        assert_eq!(code, 200, "{v}");
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"].as_str().unwrap().to_owned())
            .collect()
    }

    pub fn leak(self) {
        let path = self.dir.path().to_owned();
        eprintln!("cluster directory: {}", path.display());
    }
}

/// Kills every process whose command line mentions `dir` (this test's own temporary
/// directory, so only processes this test started): services a daemon started but had
/// not yet recorded (e.g. still waiting at the guard's start gate) when it was killed.
pub fn kill_processes_mentioning(dir: &std::path::Path) {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            // SAFETY: kill(2) with a PID read just now from /proc.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 1..=self.nodes {
            self.kill(i);
        }
        if self.witness {
            self.kill_witness();
        }
        kill_processes_mentioning(self.dir.path());
        if std::thread::panicking() {
            eprintln!("test failed; cluster logs:");
            let mut names: Vec<String> = (1..=self.nodes).map(|i| format!("n{i}")).collect();
            if self.witness {
                names.push("w".into());
            }
            for name in names {
                let log = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- {name} (last lines) ---");
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

pub fn read_activity(path: &Path) -> Vec<(String, u128)> {
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

pub fn package_of<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["packages"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("package {name} in status: {status:#}"))
}

pub fn node_of<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["nodes"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("node {name} in status: {status:#}"))
}

/// Checks the activity log, in time order, shows at most `moves` changes of node: two nodes
/// active at once would interleave their lines and show many more.
pub fn assert_no_overlap(activity: &[(String, u128)], moves: usize) {
    let mut sorted = activity.to_vec();
    sorted.sort_by_key(|a| a.1);
    let mut runs: Vec<&str> = Vec::new();
    for (node, _) in &sorted {
        if runs.last() != Some(&node.as_str()) {
            runs.push(node);
        }
    }
    assert!(
        runs.len() <= moves + 1,
        "the package was active on several nodes at once: activity runs {runs:?}"
    );
}
