//! A configurable multi-process cluster on loopback for the daemon's integration tests, on
//! `halcyon-testkit`'s harness: its ports come from the machine-wide allocator (no two test
//! processes share one), its configuration from the typed builder.
//!
//! Node `i` has the address `127.0.0.i` on network `lan1` and, when a second IP network is
//! configured, `127.0.1.i` on `lan2`; the witness (when configured) is `127.0.0.9`, number 9.
//! Every daemon runs the `halcyon` binary with `--test-faults`, with the credentials the
//! harness makes for each cluster (requests and the CLI use its admin token). Dropping the cluster kills
//! every process the test started (daemons by PID, services by process group), passing or
//! failing.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::time::{Duration, Instant};

use halcyon_testkit::cluster::{self, Launch};
use halcyon_testkit::config::{Quorum, Witness, loopback_address};
use halcyon_testkit::{ClusterConfig, Node, Package, Resource, http};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_halcyon");
pub const FORM_TIMEOUT: Duration = Duration::from_secs(30);
pub const FAILOVER_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for one API request (a write may wait for a commit).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(40);
/// How long a stopped daemon is given to halt its packages.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The witness's number and address.
pub const WITNESS_NUMBER: usize = 9;

/// A change of the configuration made once the test directory is known.
type Edit = Box<dyn FnOnce(&Path, &mut ClusterConfig)>;

/// What the test cluster looks like.
pub struct Spec {
    pub nodes: usize,
    /// A second IP network `lan2` (127.0.1.i) besides `lan1`.
    pub lan2: bool,
    /// A disk heartbeat network `disk` (a file in the test directory).
    pub disk: bool,
    pub witness: bool,
    /// `[quorum]` (the witness is added by `witness`).
    pub quorum: Quorum,
    /// The `service` resource of `web`: `restart` count and command (default: the activity
    /// loop appending `alive NODE NANOS` to `activity.log` every 10 ms).
    pub web_restart: u32,
    pub web_command: Option<String>,
    /// More packages.
    pub packages: Vec<Package>,
    /// Each daemon in a PID namespace of its own with its own /proc (`unshare --pid
    /// --mount-proc`), so that each node sees only its own processes, as on separate
    /// hosts (process-count monitors). Killing a node kills its whole namespace.
    pub pid_namespaces: bool,
    /// No credentials: the daemons run `--insecure` (default: the harness makes credentials).
    pub insecure: bool,
    /// `--test-faults` (the `/v1/debug/*` endpoints); default on.
    pub test_faults: bool,
    edits: Vec<Edit>,
}

impl Spec {
    pub fn new() -> Spec {
        Spec {
            nodes: 3,
            lan2: false,
            disk: false,
            witness: false,
            quorum: Quorum::default(),
            web_restart: 1,
            web_command: None,
            packages: Vec::new(),
            pid_namespaces: false,
            insecure: false,
            test_faults: true,
            edits: Vec::new(),
        }
    }

    /// Changes package `web` once the test directory is known.
    pub fn web(&mut self, edit: impl FnOnce(&Path, &mut Package) + 'static) {
        self.edits.push(Box::new(|dir, config| {
            edit(dir, config.package_mut("web").expect("package web"))
        }));
    }

    /// Adds a package written once the test directory is known.
    pub fn package(&mut self, package: impl FnOnce(&Path) -> Package + 'static) {
        self.edits
            .push(Box::new(|dir, config| config.packages.push(package(dir))));
    }

    /// Changes the cluster's configuration (cluster-wide settings such as webhooks).
    pub fn edits_cluster(&mut self, edit: impl FnOnce(&mut ClusterConfig) + 'static) {
        self.edits.push(Box::new(|_, config| edit(config)));
    }

    /// Changes the cluster's configuration once the test directory is known.
    pub fn edits_cluster_in(&mut self, edit: impl FnOnce(&Path, &mut ClusterConfig) + 'static) {
        self.edits.push(Box::new(edit));
    }

    /// The rules file `rules.toml`, written once the test directory is known.
    pub fn rules(&mut self, rules: impl FnOnce(&Path) -> String + 'static) {
        self.edits.push(Box::new(|dir, config| {
            config.files.push(("rules.toml".into(), rules(dir)))
        }));
    }
}

/// The harness with the test's conventions: requests with a generous timeout, waits that
/// panic with the last status.
pub struct Cluster(cluster::Cluster);

impl Deref for Cluster {
    type Target = cluster::Cluster;
    fn deref(&self) -> &cluster::Cluster {
        &self.0
    }
}

impl DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut cluster::Cluster {
        &mut self.0
    }
}

/// A service command that appends `alive NODE NANOS` to `log` every 10 ms.
pub fn activity_command(log: &Path) -> String {
    format!(
        "while :; do echo \"alive $HALCYON_NODE $(date +%s%N)\" >> {}; sleep 0.01; done",
        log.display()
    )
}

fn lan2_address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        127,
        0,
        1,
        u8::try_from(i).expect("node index fits an octet"),
    )
}

impl Cluster {
    /// Writes the configuration and starts every daemon (and the witness).
    pub fn start_with(spec: Spec) -> Cluster {
        let (nodes, witness) = (spec.nodes, spec.witness);
        let mut c = Cluster::configure(spec);
        for i in 1..=nodes {
            c.start(i);
        }
        if witness {
            c.start_witness();
        }
        c
    }

    /// Writes the configuration; starts nothing.
    pub fn configure(spec: Spec) -> Cluster {
        let dir = cluster::temp_dir("halcyon-test-").unwrap();
        let mut addresses: Vec<IpAddr> = (1..=spec.nodes)
            .map(|i| IpAddr::V4(loopback_address(i)))
            .collect();
        if spec.lan2 {
            addresses.extend((1..=spec.nodes).map(|i| IpAddr::V4(lan2_address(i))));
        }
        if spec.witness {
            addresses.push(IpAddr::V4(loopback_address(WITNESS_NUMBER)));
        }
        let ports = cluster::allocate_ports(0, addresses).unwrap();
        let mut config = ClusterConfig::new("t", 1, ports.base())
            .heartbeat(Duration::from_millis(100), 4)
            .ip_network("lan1", &["127.0.0.0/24"]);
        if spec.lan2 {
            config = config.ip_network("lan2", &["127.0.1.0/24"]);
        }
        if spec.disk {
            config = config.disk_network("disk", &dir.path().join("heartbeat.disk"));
        }
        for i in 1..=spec.nodes {
            let mut node =
                Node::new(format!("n{i}"), i as u32).interface("lan1", loopback_address(i));
            if spec.lan2 {
                node = node.interface("lan2", lan2_address(i));
            }
            config = config.node(node);
        }
        config.quorum = spec.quorum;
        if spec.witness {
            config.quorum.witness = Some(Witness {
                name: "w".into(),
                number: WITNESS_NUMBER as u32,
                address: loopback_address(WITNESS_NUMBER),
            });
        }
        let command = spec
            .web_command
            .unwrap_or_else(|| activity_command(&dir.path().join("activity.log")));
        let names: Vec<String> = (1..=spec.nodes).map(|i| format!("n{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        config = config.package(
            Package::failover("web", &names).resource(Resource::Service {
                name: "srv".into(),
                command,
                restart: Some(spec.web_restart),
                halt_timeout: Some(Duration::from_secs(1)),
                node_fail_fast: false,
            }),
        );
        config.packages.extend(spec.packages);
        for edit in spec.edits {
            edit(dir.path(), &mut config);
        }
        let mut launch = Launch::new(BIN);
        if spec.test_faults {
            launch.daemon_args.push("--test-faults".into());
        }
        if spec.insecure {
            launch.credentials = false;
            launch.extra_args.push("--insecure".into());
        }
        launch.env = vec![("RUST_LOG".into(), "info,openraft=warn".into())];
        launch.pid_namespaces = spec.pid_namespaces;
        Cluster(cluster::Cluster::create(dir, config, launch, Some(ports)).unwrap())
    }

    pub fn start(&mut self, i: usize) {
        self.0.start(i).unwrap();
    }

    /// The coordinator node `i` knows of: its name and index.
    pub fn coordinator(&self, i: usize) -> (String, usize) {
        let name = self.status(i).unwrap()["coordinator"]
            .as_str()
            .unwrap_or_else(|| panic!("n{i} knows no coordinator"))
            .to_owned();
        let index = name[1..].parse().unwrap();
        (name, index)
    }

    pub fn start_witness(&mut self) {
        self.0.start_witness().unwrap();
    }

    /// SIGTERM: the daemon halts its packages and exits.
    pub fn stop(&mut self, i: usize) {
        self.0.stop(i, STOP_TIMEOUT);
    }

    pub fn request_to(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        match http::request_tls(
            self.tls(),
            addr,
            method,
            path,
            self.admin_token(),
            body,
            REQUEST_TIMEOUT,
        ) {
            Ok(r) => (r.status, r.json().unwrap_or(Value::String(r.body))),
            Err(e) => (0, Value::String(e.to_string())),
        }
    }

    pub fn request(&self, i: usize, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        self.request_to(self.api(i), method, path, body)
    }

    pub fn status(&self, i: usize) -> Option<Value> {
        self.0.status(i, REQUEST_TIMEOUT)
    }

    /// Waits until `check` holds for node `i`'s status; panics with the status after `limit`.
    pub fn wait_for(
        &self,
        i: usize,
        what: &str,
        limit: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Duration {
        self.0
            .wait_for(i, what, limit, check)
            .unwrap_or_else(|e| panic!("{e}"))
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
        self.0
            .wait_formed(i, limit)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Waits until node `i` reports `node` a member with `incarnation`, and nothing pending.
    pub fn wait_member(&self, i: usize, node: &str, incarnation: u64, limit: Duration) {
        self.wait_for(
            i,
            &format!("{node} member (incarnation {incarnation})"),
            limit,
            |v| {
                let n = node_of(v, node);
                n["member"] == true && n["incarnation"] == incarnation && cluster::is_idle(v)
            },
        );
    }

    /// `(node, nanos)` lines of the service activity log.
    pub fn activity(&self) -> Vec<(String, u128)> {
        read_activity(&self.path().join("activity.log"))
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

/// `halcyon ARGS --api <node i's API>`: the exit code and the output (stdout, then stderr).
/// `halcyon status` against node `i`, as a person reads it.
/// `GET /metrics` of node `i` (admin token, the cluster CA): the text exposition.
pub fn metrics_text(c: &Cluster, i: usize) -> String {
    let r = http::request_tls(
        c.tls(),
        c.api(i),
        "GET",
        "/metrics",
        c.admin_token(),
        None,
        REQUEST_TIMEOUT,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

pub fn status_text(c: &Cluster, i: usize) -> String {
    let (code, out) = cli(c, i, &["status"]);
    assert_eq!(code, 0, "halcyon status: {out}");
    out
}

pub fn cli(c: &Cluster, i: usize, args: &[&str]) -> (i32, String) {
    let mut command = std::process::Command::new(BIN);
    command.args(args).args(c.cli_api_args(i));
    if let Some(token) = c.admin_token() {
        command.env("HALCYON_TOKEN", token);
    }
    code_and_text(command.output().unwrap())
}

/// A finished command's exit code (-1: killed by a signal) and its output, stdout then
/// stderr.
pub fn code_and_text(out: std::process::Output) -> (i32, String) {
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A webhook receiver on loopback (an OS-chosen port): answers every `POST` with 200 and hands
/// over its JSON body. Its thread ends with the test process.
pub fn webhook_receiver() -> (SocketAddr, std::sync::mpsc::Receiver<Value>) {
    use std::io::{Read, Write};
    let receiver = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = receiver.local_addr().unwrap();
    let (bodies_tx, bodies) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for stream in receiver.incoming() {
            let Ok(mut stream) = stream else { return };
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 65536];
            let body = loop {
                let n = stream.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                raw.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&raw).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break Some(body[..length].to_owned());
                    }
                }
            };
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            if let Some(body) = body
                && bodies_tx
                    .send(serde_json::from_str(&body).unwrap())
                    .is_err()
            {
                return;
            }
        }
    });
    (addr, bodies)
}

/// Whether `text` holds a time as `YYYY-MM-DDTHH:MM:SS` (how the event log stores them).
pub fn has_rfc3339_time(text: &str) -> bool {
    text.as_bytes().windows(19).any(|w| {
        b"dddd-dd-ddTdd:dd:dd".iter().zip(w).all(|(&shape, &b)| {
            if shape == b'd' {
                b.is_ascii_digit()
            } else {
                b == shape
            }
        })
    })
}

/// The default spec with `web` crashing on n1 at once (no restart; elsewhere it runs and
/// logs its activity), a failure excluding a node for ten minutes.
pub fn web_failing_on_n1() -> Spec {
    let mut spec = Spec::new();
    spec.web_restart = 0;
    spec.web(|dir, web| {
        web.failure_expiry = Some("10m".into());
        if let Resource::Service { command, .. } = &mut web.resources[0] {
            *command = format!(
                "if [ \"$HALCYON_NODE\" = n1 ]; then sleep 0.3; exit 3; fi; {}",
                activity_command(&dir.join("activity.log"))
            );
        }
    });
    spec
}

/// The node names of a three-node test cluster (the names a client certificate must carry).
pub fn member_names() -> std::collections::BTreeSet<String> {
    ["n1", "n2", "n3"].iter().map(|n| n.to_string()).collect()
}

/// The API client settings of a node with `credentials` (its certificate as client
/// certificate, servers checked with its `ca_certificate_der`).
pub fn node_tls(credentials: &halcyon_pki::Credentials) -> halcyon_daemon::client::Tls {
    halcyon_daemon::raft_tls::RaftTls::new(credentials, member_names())
        .unwrap()
        .api_client()
}

/// Sends `request` over TLS with `tls` and reads the whole answer; `Err`: the connection
/// failed (the handshake, or an alert instead of an answer).
pub fn tls_request(
    tls: &halcyon_daemon::client::Tls,
    addr: SocketAddr,
    request: &str,
) -> Result<String, String> {
    let name = halcyon_daemon::raft_tls::address_name(addr);
    tls_request_as(tls, addr, name, request)
}

/// [`tls_request`] with the server's certificate checked for `name` (a node's name) instead
/// of the address dialled.
pub fn tls_request_as(
    tls: &halcyon_daemon::client::Tls,
    addr: SocketAddr,
    name: rustls::pki_types::ServerName<'static>,
    request: &str,
) -> Result<String, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let exchange = async {
            let mut stream = halcyon_daemon::raft_tls::connect_api(tls, addr, name)
                .await
                .map_err(|e| e.to_string())?;
            stream
                .write_all(request.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            stream.flush().await.map_err(|e| e.to_string())?;
            let mut answer = Vec::new();
            stream
                .read_to_end(&mut answer)
                .await
                .map_err(|e| e.to_string())?;
            Ok(String::from_utf8_lossy(&answer).into_owned())
        };
        tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .map_err(|_| "no answer within 10 s".to_owned())?
    })
}
