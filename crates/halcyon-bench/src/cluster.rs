//! A live cluster of `halcyon daemon` processes on loopback (node `i` on 127.0.0.i), built the
//! way `halcyon demo` builds its own: one generated configuration, one failover package whose
//! service is `halcyon demo-http` on the node's own address, one state directory per node.
//!
//! The [`Cluster`] guard owns every process it started: dropping it (also on an error or
//! Ctrl-C) SIGKILLs the daemons it spawned, then the service process groups those daemons
//! started (recognised by the cluster's own service port), and removes the temporary directory.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::{http, interrupt};

/// The package every benchmark cluster runs.
pub const PACKAGE: &str = "hello";
/// Most nodes a loopback cluster may have here (one 127.0.0.x address each).
pub const NODES_MAX: usize = 64;
/// Offsets from the cluster's base port, as the daemon uses them (heartbeats on the base port,
/// Raft on +1, the API on +2) and as the demo puts its service (+80).
const RAFT_OFFSET: u16 = 1;
const API_OFFSET: u16 = 2;
const SERVICE_OFFSET: u16 = 80;
/// Ports between two clusters' base ports.
pub const PORT_STRIDE: u16 = 100;
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
const PROBE_TIMEOUT: Duration = Duration::from_millis(100);
const MOVE_TIMEOUT: Duration = Duration::from_secs(60);
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// Heartbeat settings written into `[heartbeat]`; `None` leaves the section out, so the
/// daemon's own defaults apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    pub interval_ms: u64,
    pub sensitivity: u32,
}

pub struct Daemon {
    pub name: String,
    pub address: Ipv4Addr,
    pub pid: u32,
    child: Child,
    /// Not killed by the benchmark (it may still have exited by itself).
    alive: bool,
    /// Waited for: its pid may belong to another process now, never signal it again.
    reaped: bool,
    state_dir: PathBuf,
    log: PathBuf,
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
    config_dir: PathBuf,
    dir: Option<tempfile::TempDir>,
}

/// The cluster and package files.
pub fn config_files(
    nodes: usize,
    port: u16,
    heartbeat: Option<Heartbeat>,
    halcyon: &Path,
) -> (String, String) {
    let mut cluster = format!("[cluster]\nname = \"bench\"\nid = {port}\nport = {port}\n\n");
    if let Some(h) = heartbeat {
        cluster.push_str(&format!(
            "[heartbeat]\ninterval = \"{}ms\"\nsensitivity = {}\n\n",
            h.interval_ms, h.sensitivity
        ));
    }
    cluster.push_str("[[network]]\nname = \"lo\"\nkind = \"ip\"\nsubnets = [\"127.0.0.0/8\"]\n");
    for i in 1..=nodes {
        cluster.push_str(&format!(
            "\n[[node]]\nname = \"node{i}\"\nnumber = {i}\n[[node.interface]]\nnetwork = \"lo\"\naddress = \"{}\"\n",
            node_address(i)
        ));
    }
    let names: Vec<String> = (1..=nodes).map(|i| format!("\"node{i}\"")).collect();
    // node<i> serves on 127.0.0.<i>, as the cluster file places the nodes.
    let command = format!(
        "exec '{}' demo-http --bind 127.0.0.${{HALCYON_NODE#node}}:{} --name $HALCYON_NODE",
        halcyon.display(),
        port + SERVICE_OFFSET
    );
    let package = format!(
        "[package]\nname = \"{PACKAGE}\"\ntype = \"failover\"\nnodes = [{}]\nauto_run = true\n\
         failover_policy = \"configured_node\"\nfailback_policy = \"manual\"\n\n\
         [[resource]]\nkind = \"service\"\nname = \"http\"\ncommand = \"{}\"\nrestart = 2\nhalt_timeout = \"2s\"\n",
        names.join(", "),
        command.replace('\\', "\\\\").replace('"', "\\\"")
    );
    (cluster, package)
}

pub fn node_address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        127,
        0,
        0,
        u8::try_from(i).expect("node index fits an octet"),
    )
}

/// True when every port a cluster of `nodes` at `port` needs is free on every node address.
fn ports_free(nodes: usize, port: u16) -> bool {
    (1..=nodes).all(|i| {
        let a = node_address(i);
        UdpSocket::bind((a, port)).is_ok()
            && [0, RAFT_OFFSET, API_OFFSET, SERVICE_OFFSET]
                .iter()
                .all(|o| TcpListener::bind((a, port + o)).is_ok())
    })
}

/// Hands out distinct base ports, one per cluster, skipping any that is in use.
pub struct Ports {
    next: u16,
}

impl Ports {
    const LOW: u16 = 20_000;
    const HIGH: u16 = 64_000;

    pub fn new(start: u16) -> Self {
        Ports {
            next: start.clamp(Self::LOW, Self::HIGH),
        }
    }

    pub fn take(&mut self, nodes: usize) -> anyhow::Result<u16> {
        let candidates = usize::from((Self::HIGH - Self::LOW) / PORT_STRIDE);
        for _ in 0..candidates {
            let port = self.next;
            self.next = if port + PORT_STRIDE > Self::HIGH {
                Self::LOW
            } else {
                port + PORT_STRIDE
            };
            if ports_free(nodes, port) {
                return Ok(port);
            }
        }
        bail!("no free base port between {} and {}", Self::LOW, Self::HIGH)
    }
}

impl Cluster {
    /// Writes the configuration and starts one daemon per node.
    pub fn start(
        halcyon: &Path,
        nodes: usize,
        port: u16,
        heartbeat: Option<Heartbeat>,
    ) -> anyhow::Result<Cluster> {
        if !(1..=NODES_MAX).contains(&nodes) {
            bail!("--nodes must be from 1 to {NODES_MAX}");
        }
        let dir = tempfile::Builder::new()
            .prefix("halcyon-bench-")
            .tempdir()?;
        let config_dir = dir.path().join("config");
        std::fs::create_dir_all(&config_dir)?;
        let (cluster_file, package_file) = config_files(nodes, port, heartbeat, halcyon);
        std::fs::write(config_dir.join("cluster.toml"), cluster_file)?;
        std::fs::write(config_dir.join(format!("{PACKAGE}.toml")), package_file)?;
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs)?;
        let mut cluster = Cluster {
            daemons: Vec::new(),
            port,
            halcyon: halcyon.to_owned(),
            config_dir,
            dir: Some(dir),
        };
        for i in 1..=nodes {
            let name = format!("node{i}");
            let base = cluster.dir.as_ref().expect("set above").path();
            let state_dir = base.join("state").join(&name);
            let log = logs.join(format!("{name}.log"));
            let out = std::fs::File::create(&log)?;
            let mut command = Command::new(halcyon);
            command
                .arg("daemon")
                .arg("--config")
                .arg(&cluster.config_dir)
                .arg("--node")
                .arg(&name)
                .arg("--state-dir")
                .arg(&state_dir)
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                // Our own Ctrl-C must reach only the benchmark, which then cleans up.
                .process_group(0);
            // SAFETY: prctl is async-signal-safe; the daemon dies with the benchmark even if
            // the benchmark itself is SIGKILLed.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = command
                .spawn()
                .with_context(|| format!("starting {}", halcyon.display()))?;
            cluster.daemons.push(Daemon {
                name,
                address: node_address(i),
                pid: child.id(),
                child,
                alive: true,
                reaped: false,
                state_dir,
                log,
            });
        }
        Ok(cluster)
    }

    pub fn api_addr(&self, d: &Daemon) -> SocketAddr {
        SocketAddr::from((d.address, self.port + API_OFFSET))
    }

    pub fn service_addr(&self, d: &Daemon) -> SocketAddr {
        SocketAddr::from((d.address, self.port + SERVICE_OFFSET))
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.daemons.iter().position(|d| d.name == name)
    }

    /// GET `path` from the first live daemon that answers 200 with JSON.
    pub fn get_json(&self, path: &str) -> Option<Value> {
        self.daemons.iter().filter(|d| d.alive).find_map(|d| {
            let r = http::request(self.api_addr(d), "GET", path, None, STATUS_TIMEOUT).ok()?;
            (r.status == 200).then(|| r.json())?
        })
    }

    /// `/v1/status` from the given daemon.
    pub fn status_of(&self, d: &Daemon) -> Option<Value> {
        let r = http::request(self.api_addr(d), "GET", "/v1/status", None, STATUS_TIMEOUT).ok()?;
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
        let live = self.daemons.iter().filter(|d| d.alive).count();
        if members < live {
            return Err(format!("{members} of {live} nodes are members"));
        }
        if !status["execution"].is_null()
            || status["pending"].as_array().is_some_and(|p| !p.is_empty())
        {
            return Err("an event is pending or running".into());
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
        for d in &mut self.daemons {
            if d.alive
                && let Ok(Some(status)) = d.child.try_wait()
            {
                d.alive = false;
                d.reaped = true;
                bail!(
                    "daemon {} (pid {}) exited with {status}; its log ends:\n{}",
                    d.name,
                    d.pid,
                    log_tail(&d.log, 20)
                );
            }
        }
        Ok(())
    }

    /// The process group of the package's service on a node, checked to be ours.
    pub fn service_group(&self, index: usize) -> Option<i32> {
        let d = &self.daemons[index];
        let text =
            std::fs::read_to_string(d.state_dir.join("run").join(format!("{PACKAGE}.0.pgid")))
                .ok()?;
        let pgid: i32 = text.trim().parse().ok()?;
        (pgid > 1 && self.is_our_service(pgid)).then_some(pgid)
    }

    /// True when `pid` runs (or is the shell about to exec) this cluster's demo service.
    fn is_our_service(&self, pid: i32) -> bool {
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        cmdline.contains("demo-http")
            && cmdline.contains(&format!(":{} --name", self.port + SERVICE_OFFSET))
    }

    /// Power-loss style: SIGKILL, back to back, the daemon's process group, the groups of the
    /// processes it started (a lease guard, if the daemon runs one) and its service's group.
    /// Returns the moment just before the first signal.
    pub fn power_off(&mut self, index: usize) -> anyhow::Result<Instant> {
        let service = self.service_group(index).with_context(|| {
            format!(
                "no service process group found on {}",
                self.daemons[index].name
            )
        })?;
        let d = &mut self.daemons[index];
        let mut groups = child_groups(d.pid);
        if !groups.contains(&service) {
            groups.push(service);
        }
        let t0 = Instant::now();
        // SAFETY: kill(2) on our own child's group (it leads it: `process_group(0)`; not
        // reaped, so the id is still its) and on groups its children lead.
        unsafe {
            libc::kill(-(d.pid as i32), libc::SIGKILL);
            for g in &groups {
                libc::kill(-g, libc::SIGKILL);
            }
        }
        d.alive = false;
        Ok(t0)
    }

    /// `halcyon package move PACKAGE -n NODE --config DIR`, bounded in time.
    pub fn move_package(&self, node: &str) -> anyhow::Result<()> {
        let mut child = Command::new(&self.halcyon)
            .args(["package", "move", PACKAGE, "-n", node, "--config"])
            .arg(&self.config_dir)
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
        log_tail(&self.daemons[index].log, lines)
    }

    /// Kills what this cluster started; idempotent.
    fn stop(&mut self) {
        for d in self.daemons.iter_mut().filter(|d| !d.reaped) {
            let groups = child_groups(d.pid);
            // SAFETY: kill(2) on our own child's group, which we have not reaped yet, and on
            // the groups of the processes it started.
            unsafe {
                libc::kill(-(d.pid as i32), libc::SIGKILL);
                for g in groups {
                    libc::kill(-g, libc::SIGKILL);
                }
            }
            d.alive = false;
        }
        let deadline = Instant::now() + REAP_TIMEOUT;
        for d in self.daemons.iter_mut().filter(|d| !d.reaped) {
            while Instant::now() < deadline {
                if !matches!(d.child.try_wait(), Ok(None)) {
                    d.reaped = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        for index in 0..self.daemons.len() {
            if let Some(group) = self.service_group(index) {
                // SAFETY: a process group our daemon started, checked by its command line.
                unsafe {
                    libc::kill(-group, libc::SIGKILL);
                }
            }
        }
        // A service whose daemon died before writing its pid file: find it by its port.
        for pid in proc_pids() {
            if pid != std::process::id() as i32 && self.is_our_service(pid) {
                // SAFETY: a process running this cluster's service (checked by its command
                // line: our service port), started by one of our daemons.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One GET to a service address: the node name in "hello from NODE".
pub fn probe(addr: SocketAddr) -> Option<String> {
    let r = http::request(addr, "GET", "/", None, PROBE_TIMEOUT).ok()?;
    let name = r.body.trim().strip_prefix("hello from ")?;
    (r.status == 200).then(|| name.to_owned())
}

/// The daemon's own helper processes (e.g. its lease guard): its direct children other than
/// the package's service (whose command line names `demo-http`).
pub fn helper_pids(pid: u32) -> Vec<u32> {
    proc_pids()
        .into_iter()
        .filter(|&child| {
            let parent = std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| parent_and_group(&stat));
            let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
            parent.is_some_and(|(ppid, _)| ppid == pid as i32)
                && !String::from_utf8_lossy(&cmdline).contains("demo-http")
        })
        .filter_map(|child| u32::try_from(child).ok())
        .collect()
}

/// The process groups of `pid`'s direct children, other than our own group.
fn child_groups(pid: u32) -> Vec<i32> {
    // SAFETY: getpgrp cannot fail and touches no memory.
    let ours = unsafe { libc::getpgrp() };
    let mut groups: Vec<i32> = proc_pids()
        .into_iter()
        .filter_map(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            let (ppid, pgrp) = parent_and_group(&stat)?;
            (ppid == pid as i32 && pgrp > 1 && pgrp != ours).then_some(pgrp)
        })
        .collect();
    groups.sort_unstable();
    groups.dedup();
    groups
}

/// Fields 4 (ppid) and 5 (pgrp) of /proc/PID/stat, after the parenthesised command name.
fn parent_and_group(stat: &str) -> Option<(i32, i32)> {
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace().skip(1);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

fn proc_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_files_name_every_node_and_omit_heartbeat_unless_asked() {
        let (cluster, package) = config_files(3, 21_000, None, Path::new("/x/halcyon"));
        assert!(!cluster.contains("[heartbeat]"));
        assert!(cluster.contains("address = \"127.0.0.3\""));
        assert!(package.contains("nodes = [\"node1\", \"node2\", \"node3\"]"));
        assert!(package.contains(":21080 --name"));
        let fast = Heartbeat {
            interval_ms: 50,
            sensitivity: 3,
        };
        let (cluster, _) = config_files(16, 21_000, Some(fast), Path::new("/x/halcyon"));
        assert!(cluster.contains("interval = \"50ms\"\nsensitivity = 3"));
        assert!(cluster.contains("address = \"127.0.0.16\""));
    }

    #[test]
    fn parent_and_group_are_read_after_the_command_name() {
        let stat = "4242 (a (b) c) S 17 4200 4200 0 -1 4194560";
        assert_eq!(parent_and_group(stat), Some((17, 4200)));
        assert_eq!(parent_and_group("garbage"), None);
    }
}
