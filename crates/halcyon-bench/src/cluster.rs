//! A live cluster of `halcyon daemon` processes on loopback (node `i` on 127.0.0.i), built the
//! way `halcyon demo` builds its own: one generated configuration, one failover package whose
//! service is `halcyon demo-http` on the node's own address, one state directory per node. The
//! processes, the ports and the configuration come from `halcyon-testkit`.
//!
//! The [`Cluster`] guard owns every process it started: dropping it (also on an error or
//! Ctrl-C) SIGKILLs the daemons it spawned, the process groups those daemons started and any
//! process naming the cluster's own service port, and removes the temporary directory.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use halcyon_testkit::cluster::{self as testkit_cluster, Launch};
use halcyon_testkit::config::{self as testkit_config, loopback_address};
use halcyon_testkit::{ClusterConfig, http};
use serde_json::Value;

use crate::interrupt;

/// The package every benchmark cluster runs.
pub const PACKAGE: &str = testkit_config::DEMO_PACKAGE;
/// Most nodes a loopback cluster may have here (one 127.0.0.x address each).
pub const NODES_MAX: usize = 64;
/// The demo service's port, after the daemon's own (heartbeats on the base port, Raft on +1,
/// the API on +2, the internal API on +3).
const SERVICE_OFFSET: u16 = testkit_cluster::DAEMON_PORTS;
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
const PROBE_TIMEOUT: Duration = Duration::from_millis(100);
const MOVE_TIMEOUT: Duration = Duration::from_secs(60);
/// The quorum witness's name; its number is one above the most nodes, so is its address's
/// last byte (`127.0.0.65`).
pub const WITNESS: &str = "w";
const WITNESS_NUMBER: usize = NODES_MAX + 1;

/// How a benchmark cluster is configured beyond the demo's defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Setup {
    /// `[heartbeat] profile` (e.g. "fast"); `None` leaves the section out, so the daemon's
    /// own defaults apply.
    pub heartbeat_profile: Option<&'static str>,
    /// The service's `restart` count (the demo's 2 when `None`).
    pub service_restarts: Option<u32>,
    /// A quorum witness (`[quorum.witness]`, [`WITNESS`] on 127.0.0.65), started with the
    /// nodes; the cluster is settled only while it is a reachable voter.
    pub witness: bool,
}

/// A node as started.
pub struct Daemon {
    pub name: String,
    pub address: Ipv4Addr,
    pub pid: u32,
}

/// What a settled cluster looks like: everyone a member, the package up on one node and its
/// service answering there with that node's name, no event pending or running.
#[derive(Clone, Debug)]
pub struct Ready {
    pub coordinator: String,
    /// Index into [`Cluster::daemons`] of the node running the package.
    pub holder: usize,
    pub lease_ms: Option<u64>,
}

pub struct Cluster {
    pub daemons: Vec<Daemon>,
    pub port: u16,
    halcyon: PathBuf,
    /// Killed by the benchmark (it may also have exited by itself): not expected to run.
    killed: Vec<bool>,
    inner: testkit_cluster::Cluster,
}

/// The cluster's configuration: the demo's (see `halcyon_testkit::config::demo`) with `nodes`
/// nodes, whose service serves `hello from NODE` on the node's address at
/// `port + SERVICE_OFFSET`.
pub fn config(nodes: usize, port: u16, setup: Setup, halcyon: &Path) -> ClusterConfig {
    // node<i> serves on 127.0.0.<i>, as the cluster file places the nodes.
    let command = format!(
        "exec '{}' demo-http --bind 127.0.0.${{HALCYON_NODE#node}}:{} --name $HALCYON_NODE",
        halcyon.display(),
        port + SERVICE_OFFSET
    );
    let mut config = testkit_config::demo("bench", port, nodes, command);
    config.id = u32::from(port);
    if let Some(profile) = setup.heartbeat_profile {
        config = config.heartbeat_profile(profile);
    }
    if setup.witness {
        config.quorum.witness = Some(testkit_config::Witness {
            name: WITNESS.into(),
            number: WITNESS_NUMBER as u32,
            address: loopback_address(WITNESS_NUMBER),
        });
    }
    if let Some(count) = setup.service_restarts {
        for resource in &mut config.packages[0].resources {
            if let testkit_config::Resource::Service { restart, .. } = resource {
                *restart = Some(count);
            }
        }
    }
    config
}

impl Cluster {
    /// Takes a block of ports, writes the configuration and starts one daemon per node.
    pub fn start(halcyon: &Path, nodes: usize, setup: Setup) -> anyhow::Result<Cluster> {
        Cluster::start_with(halcyon, nodes, |port| config(nodes, port, setup, halcyon))
    }

    /// As [`Cluster::start`], with the configuration `make` builds for the allocated base
    /// port (its nodes must be `nodes` loopback nodes, as [`config`] makes them).
    pub fn start_with(
        halcyon: &Path,
        nodes: usize,
        make: impl FnOnce(u16) -> ClusterConfig,
    ) -> anyhow::Result<Cluster> {
        if !(1..=NODES_MAX).contains(&nodes) {
            bail!("--nodes must be from 1 to {NODES_MAX}");
        }
        // The witness's address too, should the configuration have one (its number is
        // above every node's).
        let addresses = (1..=nodes)
            .chain([WITNESS_NUMBER])
            .map(|i| IpAddr::V4(loopback_address(i)));
        let ports = testkit_cluster::allocate_ports(1, addresses)?;
        let port = ports.base();
        let config = make(port);
        if let Some(witness) = &config.quorum.witness
            && witness.address != loopback_address(WITNESS_NUMBER)
        {
            bail!(
                "the witness must be on {}",
                loopback_address(WITNESS_NUMBER)
            );
        }
        let witness = config.quorum.witness.is_some();
        if config.nodes.len() != nodes {
            bail!(
                "the configuration has {} nodes, not {nodes}",
                config.nodes.len()
            );
        }
        let dir = testkit_cluster::temp_dir("halcyon-bench-")?;
        let mut launch = Launch::new(halcyon);
        // Our own Ctrl-C must reach only the benchmark, which then cleans up; the daemons die
        // with the benchmark even if it is SIGKILLed.
        launch.own_process_group = true;
        launch.die_with_parent = true;
        launch.markers = vec![format!(":{} --name", port + SERVICE_OFFSET)];
        let mut inner = testkit_cluster::Cluster::create(dir, config, launch, Some(ports))?;
        let mut daemons = Vec::new();
        for i in 1..=nodes {
            inner
                .start(i)
                .with_context(|| format!("starting {}", halcyon.display()))?;
            daemons.push(Daemon {
                name: inner.name(i).to_owned(),
                address: loopback_address(i),
                pid: inner.pid(i).expect("started just now"),
            });
        }
        if witness {
            inner
                .start_witness()
                .with_context(|| format!("starting {} witness", halcyon.display()))?;
        }
        Ok(Cluster {
            daemons,
            port,
            halcyon: halcyon.to_owned(),
            killed: vec![false; nodes],
            inner,
        })
    }

    pub fn api_addr(&self, d: &Daemon) -> SocketAddr {
        SocketAddr::from((d.address, self.port + testkit_cluster::API_OFFSET))
    }

    pub fn service_addr(&self, d: &Daemon) -> SocketAddr {
        SocketAddr::from((d.address, self.port + SERVICE_OFFSET))
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.daemons.iter().position(|d| d.name == name)
    }

    /// GET `path` from the first live daemon that answers 200 with JSON.
    pub fn get_json(&self, path: &str) -> Option<Value> {
        self.daemons
            .iter()
            .zip(&self.killed)
            .filter(|(_, killed)| !**killed)
            .find_map(|(d, _)| {
                let r = http::request_tls(
                    self.inner.tls(),
                    self.api_addr(d),
                    "GET",
                    path,
                    self.inner.admin_token(),
                    None,
                    STATUS_TIMEOUT,
                )
                .ok()?;
                (r.status == 200).then(|| r.json())?
            })
    }

    /// `/v1/status` from the given daemon.
    pub fn status_of(&self, d: &Daemon) -> Option<Value> {
        let r = http::request_tls(
            self.inner.tls(),
            self.api_addr(d),
            "GET",
            "/v1/status",
            self.inner.admin_token(),
            None,
            STATUS_TIMEOUT,
        )
        .ok()?;
        (r.status == 200).then(|| r.json())?
    }

    /// Waits (bounded) until the cluster is settled; see [`Ready`].
    pub fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<Ready> {
        let deadline = Instant::now() + limit;
        loop {
            interrupt::check()?;
            self.check_alive()?;
            let last = match self.get_json("/v1/status") {
                Some(status) => match self.settled(&status) {
                    Ok(ready) => return Ok(ready),
                    Err(why) => why,
                },
                None => "no daemon answered /v1/status".into(),
            };
            if Instant::now() >= deadline {
                bail!("the cluster did not settle within {limit:?}: {last}");
            }
            interrupt::sleep(Duration::from_millis(100))?;
        }
    }

    fn settled(&self, status: &Value) -> Result<Ready, String> {
        let coordinator = status["coordinator"]
            .as_str()
            .ok_or("no coordinator")?
            .to_owned();
        let members = status["nodes"]
            .as_array()
            .map_or(0, |n| n.iter().filter(|n| n["member"] == true).count());
        let live = self.killed.iter().filter(|k| !**k).count();
        if members < live {
            return Err(format!("{members} of {live} nodes are members"));
        }
        if !testkit_cluster::is_idle(status) {
            return Err("an event is pending or running".into());
        }
        // A witness not yet a reachable voter (its new store still held) counts for no
        // quorum: the loss of a node would then stop the cluster, not fail over.
        let witness = &status["witness"];
        if self.inner.config().quorum.witness.is_some()
            && (witness["voter"] != true || witness["reachable"] != true)
        {
            return Err(format!("the witness is not a reachable voter: {witness}"));
        }
        let package = status["packages"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == PACKAGE))
            .ok_or("the package is not in the status")?;
        let nodes: Vec<&str> = package["nodes"]
            .as_array()
            .map(|n| n.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let [holder] = nodes.as_slice() else {
            return Err(format!("the package is on {nodes:?}"));
        };
        let index = self
            .index_of(holder)
            .ok_or_else(|| format!("unknown node {holder}"))?;
        let answer = self.probe(index);
        if answer.as_deref() != Some(*holder) {
            return Err(format!(
                "the service on {holder} answers {answer:?} at {}",
                self.service_addr(&self.daemons[index])
            ));
        }
        Ok(Ready {
            coordinator,
            holder: index,
            lease_ms: status["lease"]["duration_ms"].as_u64(),
        })
    }

    /// One GET to a node's service address: the node name it answered with.
    pub fn probe(&self, index: usize) -> Option<String> {
        probe(self.service_addr(&self.daemons[index]))
    }

    /// Fails when a daemon we did not kill has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for index in 0..self.daemons.len() {
            if self.killed[index] {
                continue;
            }
            if let Some(status) = self.inner.exited(index + 1) {
                self.killed[index] = true;
                let d = &self.daemons[index];
                bail!(
                    "daemon {} (pid {}) exited with {status}; its log ends:\n{}",
                    d.name,
                    d.pid,
                    self.log_tail(index, 20)
                );
            }
        }
        Ok(())
    }

    /// The process group of the package's service on node `index`, as the daemon recorded it
    /// (`run/PACKAGE.0.pgid`), if it runs there.
    pub fn service_group(&self, index: usize) -> Option<i32> {
        let file = self
            .inner
            .state_dir(index + 1)
            .join("run")
            .join(format!("{PACKAGE}.0.pgid"));
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    }

    /// Power-loss style: SIGKILL, back to back, the daemon's process group, the groups of the
    /// processes it started (a lease guard, if the daemon runs one) and its service's group.
    /// Returns the moment just before the first signal.
    pub fn power_off(&mut self, index: usize) -> anyhow::Result<Instant> {
        let name = &self.daemons[index].name;
        let service = self
            .inner
            .state_dir(index + 1)
            .join("run")
            .join(format!("{PACKAGE}.0.pgid"));
        if !service.exists() {
            bail!("no service process group found on {name}");
        }
        self.power_off_node(index)
    }

    /// Power-loss style, as [`Cluster::power_off`], for a node whose packages have no
    /// service (nothing to check beforehand). Returns the moment just before the first signal.
    pub fn power_off_node(&mut self, index: usize) -> anyhow::Result<Instant> {
        let t0 = self
            .inner
            .kill(index + 1)
            .with_context(|| format!("{} was not running", self.daemons[index].name))?;
        self.killed[index] = true;
        Ok(t0)
    }

    /// `halcyon package move PACKAGE -n NODE --config DIR`, bounded in time.
    pub fn move_package(&self, node: &str) -> anyhow::Result<()> {
        let mut child = Command::new(&self.halcyon)
            .args(["package", "move", PACKAGE, "-n", node, "--config"])
            .arg(self.inner.config_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting halcyon package move")?;
        let deadline = Instant::now() + MOVE_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline || interrupt::check().is_err() {
                let _ = child.kill();
                let _ = child.wait();
                bail!("halcyon package move did not finish within {MOVE_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let output = child.wait_with_output()?;
        if !status.success() {
            bail!(
                "halcyon package move {PACKAGE} -n {node} failed ({status}): {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    pub fn log_tail(&self, index: usize, lines: usize) -> String {
        self.inner.log_tail(&self.daemons[index].name, lines)
    }
}

/// One GET to a service address: the node name in "hello from NODE".
pub fn probe(addr: SocketAddr) -> Option<String> {
    let r = http::get(addr, "/", PROBE_TIMEOUT).ok()?;
    let name = r.body.trim().strip_prefix("hello from ")?;
    (r.status == 200).then(|| name.to_owned())
}

/// The daemon's own helper processes (e.g. its lease guard): its direct children other than
/// the package's service (whose command line names `demo-http`).
pub fn helper_pids(pid: u32) -> Vec<u32> {
    testkit_cluster::children_except(pid, "demo-http")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_names_every_node_and_omits_heartbeat_unless_asked() {
        let c = config(3, 21_000, Setup::default(), Path::new("/x/halcyon"));
        let (cluster, package) = (c.cluster_toml(), c.packages[0].to_toml());
        assert!(!cluster.contains("[heartbeat]"));
        assert!(cluster.contains("address = \"127.0.0.3\""));
        assert!(package.contains("nodes = [\"node1\", \"node2\", \"node3\"]"));
        let service = format!(":{} --name", 21_000 + SERVICE_OFFSET);
        assert!(package.contains(&service), "{package}");
        assert!(package.contains("restart = 2"), "{package}");
        let setup = Setup {
            heartbeat_profile: Some("fast"),
            service_restarts: Some(100),
            witness: false,
        };
        let c = config(16, 21_000, setup, Path::new("/x/halcyon"));
        let cluster = c.cluster_toml();
        assert!(
            cluster.contains("[heartbeat]\nprofile = \"fast\"\n"),
            "{cluster}"
        );
        assert!(!cluster.contains("interval"), "{cluster}");
        assert!(cluster.contains("address = \"127.0.0.16\""));
        let package = c.packages[0].to_toml();
        assert!(package.contains("restart = 100"), "{package}");
        assert!(!cluster.contains("witness"), "{cluster}");
        let setup = Setup {
            witness: true,
            ..Setup::default()
        };
        let c = config(2, 21_000, setup, Path::new("/x/halcyon"));
        let cluster = c.cluster_toml();
        for line in [
            "[quorum.witness]",
            "name = \"w\"",
            "number = 65",
            "address = \"127.0.0.65\"",
        ] {
            assert!(cluster.lines().any(|l| l == line), "{line}: {cluster}");
        }
    }
}
