//! One loopback cluster of daemon processes.
//!
//! A [`Cluster`] owns a directory (`config/` written from a [`ClusterConfig`] with the
//! cluster's credentials in `config/pki` unless [`Launch::credentials`] is off, `state/NAME/`
//! per node, the log `NAME.log` of each process), the port block its configuration uses, and
//! the processes it starts: one per node (`PROGRAM daemon --node NAME --config DIR
//! --state-dir DIR --api-socket DIR/api.sock`, plus the launch's extra arguments) and the
//! witness (`PROGRAM witness`).
//! Nodes are numbered from 1 in configured order.
//!
//! Invariants: only processes this cluster started are signalled, by PID (or, with
//! [`Launch::own_process_group`], by the group its daemon leads), and the process groups its
//! daemons started (their direct children's groups, and the groups recorded in a node's run
//! directory); a child is never signalled after it has been reaped. Dropping the cluster —
//! also while a test panics — kills all of it, then every process whose command line names
//! the cluster's own directory or one of the launch's markers (services a daemon had started
//! but not yet recorded), and prints the end of every log when the thread is panicking.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::ClusterConfig;
use crate::http;
use crate::ports::{PortBlock, PortError};

/// Offsets from the base port, as the daemon uses them.
pub const RAFT_OFFSET: u16 = 1;
pub const API_OFFSET: u16 = 2;
/// Ports a cluster's daemons use from the base port on.
pub const DAEMON_PORTS: u16 = 4;
/// Period of every poll.
const POLL_PERIOD: Duration = Duration::from_millis(20);
/// Longest wait for a killed child to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of each log printed when a test panics.
const PANIC_LOG_LINES: usize = 40;

/// How the cluster's processes are started.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The `halcyon` binary.
    pub program: PathBuf,
    /// Arguments after the subcommand, for the daemons and the witness (e.g. `--insecure`).
    pub extra_args: Vec<String>,
    /// Arguments for the nodes' daemons only, after `extra_args` (e.g. `--test-faults`,
    /// which the witness does not take).
    pub daemon_args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Each daemon in a PID namespace of its own with its own /proc (`unshare --pid
    /// --mount-proc --kill-child`; root only): a node sees only its own processes. Killing a
    /// node kills its namespace.
    pub pid_namespaces: bool,
    /// Each daemon leads a process group of its own (a Ctrl-C of the caller reaches only the
    /// caller), and a kill signals the whole group.
    pub own_process_group: bool,
    /// `PR_SET_PDEATHSIG`: a daemon is SIGKILLed when the thread that started it ends (also
    /// when the caller is SIGKILLed). The thread that starts a node must outlive it.
    pub die_with_parent: bool,
    /// Strings that name this cluster's processes in their command lines besides the
    /// cluster's directory (e.g. a service's own port): such processes are killed on drop.
    pub markers: Vec<String>,
    /// Create the cluster's credentials in `config/pki` (as `halcyon init` does), where the
    /// daemons find them (default). Without them the daemons need `--insecure`.
    pub credentials: bool,
}

impl Launch {
    pub fn new(program: impl Into<PathBuf>) -> Launch {
        Launch {
            program: program.into(),
            extra_args: Vec::new(),
            daemon_args: Vec::new(),
            env: Vec::new(),
            pid_namespaces: false,
            own_process_group: false,
            die_with_parent: false,
            markers: Vec::new(),
            credentials: true,
        }
    }
}

/// A wait that ran out.
#[derive(Debug, thiserror::Error)]
#[error("{what}: not within {limit:?}; last status from {node}: {last:#}\nlogs in {directory}")]
pub struct WaitError {
    pub what: String,
    pub limit: Duration,
    pub node: String,
    pub last: Value,
    pub directory: String,
}

#[derive(Debug)]
struct Slot {
    name: String,
    child: Option<Child>,
}

pub struct Cluster {
    config: ClusterConfig,
    launch: Launch,
    dir: tempfile::TempDir,
    nodes: Vec<Slot>,
    witness: Option<Slot>,
    /// The `admin` and `read-only` tokens of its credentials (none without).
    tokens: Option<Tokens>,
    /// HTTPS with its CA, with credentials (without, the API is plain HTTP).
    tls: Option<http::Tls>,
    _ports: Option<PortBlock>,
}

/// A test cluster's API tokens.
#[derive(Clone, Debug)]
pub struct Tokens {
    pub admin: String,
    pub read_only: String,
}

/// A fresh temporary directory for a cluster, `/tmp/PREFIX...`.
pub fn temp_dir(prefix: &str) -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new().prefix(prefix).tempdir()
}

/// A block of [`DAEMON_PORTS`] + `extra` ports for a cluster whose nodes use `addresses`.
pub fn allocate_ports(
    extra: u16,
    addresses: impl IntoIterator<Item = IpAddr>,
) -> Result<PortBlock, PortError> {
    crate::ports::allocate(DAEMON_PORTS + extra, addresses)
}

impl Cluster {
    /// Writes `config` into `dir/config`; starts nothing. `ports`, if given, is held until the
    /// cluster is dropped (it should be the block `config.port` comes from).
    pub fn create(
        dir: tempfile::TempDir,
        config: ClusterConfig,
        launch: Launch,
        ports: Option<PortBlock>,
    ) -> std::io::Result<Cluster> {
        config.write(&dir.path().join("config"))?;
        let tokens = if launch.credentials {
            let made = halcyon_pki::init(
                &dir.path().join("config").join("pki"),
                &config.credentials_spec(),
                false,
                std::time::SystemTime::now(),
            )
            .map_err(std::io::Error::other)?;
            let secret = |role| {
                made.tokens
                    .iter()
                    .find(|t| t.role == role)
                    .map(|t| t.secret.clone())
                    .expect("init makes an admin and a read-only token")
            };
            Some(Tokens {
                admin: secret(halcyon_pki::Role::Admin),
                read_only: secret(halcyon_pki::Role::ReadOnly),
            })
        } else {
            None
        };
        let tls = if launch.credentials {
            let ca = dir.path().join("config").join("pki").join("ca.crt");
            Some(http::tls_with_ca_file(&ca).map_err(std::io::Error::other)?)
        } else {
            None
        };
        let nodes = config
            .nodes
            .iter()
            .map(|n| Slot {
                name: n.name.clone(),
                child: None,
            })
            .collect();
        let witness = config.quorum.witness.as_ref().map(|w| Slot {
            name: w.name.clone(),
            child: None,
        });
        Ok(Cluster {
            config,
            launch,
            dir,
            nodes,
            witness,
            tokens,
            tls,
            _ports: ports,
        })
    }

    /// The API tokens of the cluster's credentials (`None` when made without).
    pub fn tokens(&self) -> Option<&Tokens> {
        self.tokens.as_ref()
    }

    /// The TLS settings of a client of its API (its CA), `None` without credentials (the
    /// daemons then serve plain HTTP): [`http::request_tls`].
    pub fn tls(&self) -> Option<&http::Tls> {
        self.tls.as_ref()
    }

    /// Reads the cluster's CA file again (after a step of a credentials rollover changed it:
    /// the nodes' certificates may then be of the new CA).
    pub fn refresh_tls(&mut self) -> std::io::Result<()> {
        if self.tls.is_some() {
            let ca = self.config_dir().join("pki").join("ca.crt");
            self.tls = Some(http::tls_with_ca_file(&ca).map_err(std::io::Error::other)?);
        }
        Ok(())
    }

    /// What the CLI needs to reach node `i`'s API: `--api ADDR`, then `--ca` with the
    /// cluster's CA, or `--insecure` without credentials.
    pub fn cli_api_args(&self, i: usize) -> Vec<String> {
        let mut args = vec!["--api".to_owned(), self.api(i).to_string()];
        if self.launch.credentials {
            args.push("--ca".to_owned());
            args.push(
                self.config_dir()
                    .join("pki")
                    .join("ca.crt")
                    .display()
                    .to_string(),
            );
        } else {
            args.push("--insecure".to_owned());
        }
        args
    }

    /// The `admin` token, which [`Cluster::request`] sends (`None` without credentials).
    pub fn admin_token(&self) -> Option<&str> {
        self.tokens.as_ref().map(|t| t.admin.as_str())
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    pub fn port(&self) -> u16 {
        self.config.port
    }

    /// How many nodes are configured.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Node `i`'s name (1-based).
    pub fn name(&self, i: usize) -> &str {
        &self.slot(i).name
    }

    /// The number (1-based) of the node called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|s| s.name == name)
            .map(|p| p + 1)
    }

    pub fn state_dir(&self, i: usize) -> PathBuf {
        self.state_dir_of(&self.slot(i).name)
    }

    /// The configured witness's state directory.
    pub fn witness_state_dir(&self) -> Option<PathBuf> {
        self.witness.as_ref().map(|w| self.state_dir_of(&w.name))
    }

    fn state_dir_of(&self, name: &str) -> PathBuf {
        self.dir.path().join("state").join(name)
    }

    /// Node `i`'s API socket (`halcyon daemon --api-socket`): in its state directory, so that
    /// clusters running side by side never share one.
    pub fn api_socket(&self, i: usize) -> PathBuf {
        self.state_dir(i).join("api.sock")
    }

    /// The log (standard output and error) of the process called `name`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn slot(&self, i: usize) -> &Slot {
        assert!(
            (1..=self.nodes.len()).contains(&i),
            "node {i} of a cluster of {} nodes",
            self.nodes.len()
        );
        &self.nodes[i - 1]
    }

    fn slot_mut(&mut self, i: usize) -> &mut Slot {
        assert!(
            (1..=self.nodes.len()).contains(&i),
            "node {i} of a cluster of {} nodes",
            self.nodes.len()
        );
        &mut self.nodes[i - 1]
    }

    /// Node `i`'s API address: its first active address, base port + 2.
    pub fn api(&self, i: usize) -> SocketAddr {
        let address = self.config.nodes[i - 1]
            .address()
            .expect("every node of a test cluster has an active interface");
        SocketAddr::from((address, self.config.port + API_OFFSET))
    }

    /// Starts node `i`'s daemon (again, after a kill or stop). No-op while it runs.
    pub fn start(&mut self, i: usize) -> std::io::Result<()> {
        if self.is_running(i) {
            return Ok(());
        }
        let name = self.slot(i).name.clone();
        let mut args = vec!["daemon".to_owned(), "--node".to_owned(), name.clone()];
        args.push("--api-socket".to_owned());
        args.push(self.api_socket(i).display().to_string());
        args.extend(self.launch.extra_args.iter().cloned());
        args.extend(self.launch.daemon_args.iter().cloned());
        let child = self.spawn(&name, args)?;
        self.slot_mut(i).child = Some(child);
        Ok(())
    }

    /// Starts every node not running.
    pub fn start_all(&mut self) -> std::io::Result<()> {
        for i in 1..=self.nodes.len() {
            self.start(i)?;
        }
        Ok(())
    }

    /// Starts the configured witness (`PROGRAM witness`).
    pub fn start_witness(&mut self) -> std::io::Result<()> {
        let name = match &self.witness {
            None => return Err(std::io::Error::other("no witness is configured")),
            Some(Slot { child: Some(_), .. }) => return Ok(()),
            Some(slot) => slot.name.clone(),
        };
        let mut args = vec!["witness".to_owned()];
        args.extend(self.launch.extra_args.iter().cloned());
        let child = self.spawn(&name, args)?;
        if let Some(slot) = &mut self.witness {
            slot.child = Some(child);
        }
        Ok(())
    }

    fn spawn(&self, name: &str, args: Vec<String>) -> std::io::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))?;
        let mut command = if self.launch.pid_namespaces {
            // The daemon is the namespace's init: it dies with unshare (--kill-child), and
            // every process of the namespace with it.
            let mut c = Command::new("unshare");
            c.args(["--pid", "--fork", "--mount-proc", "--kill-child"])
                .arg(&self.launch.program);
            c
        } else {
            Command::new(&self.launch.program)
        };
        command
            .args(&args)
            .arg("--config")
            .arg(self.config_dir())
            .arg("--state-dir")
            .arg(self.state_dir_of(name))
            .envs(self.launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if self.launch.own_process_group {
            command.process_group(0);
        }
        if self.launch.die_with_parent {
            // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        command.spawn()
    }

    /// The PID of node `i`'s daemon while this cluster holds it (with PID namespaces, of its
    /// `unshare`).
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.slot(i).child.as_ref().map(Child::id)
    }

    /// True while node `i`'s daemon runs. A daemon found exited is reaped and forgotten.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.exited(i).is_none() && self.slot(i).child.is_some()
    }

    /// The exit status of node `i`'s daemon if it has exited since it was last looked at (it
    /// is then forgotten: its PID may be reused and is never signalled again).
    pub fn exited(&mut self, i: usize) -> Option<ExitStatus> {
        let slot = self.slot_mut(i);
        let status = slot.child.as_mut()?.try_wait().ok()??;
        slot.child = None;
        Some(status)
    }

    /// The process groups recorded in node `i`'s run directory (its services and event
    /// commands), other than our own group.
    pub fn service_groups(&self, i: usize) -> Vec<i32> {
        let ours = own_group();
        std::fs::read_dir(self.state_dir(i).join("run"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
            .filter(|&g: &i32| g > 1 && g != ours)
            .collect()
    }

    /// Power-loss style SIGKILL of node `i`, back to back: its daemon (its group, with
    /// [`Launch::own_process_group`]), the groups of the processes it started (a lease guard,
    /// services, commands) and the groups recorded in its run directory; then reaps the
    /// daemon. Returns the moment just before the first signal, None when it was not running.
    pub fn kill(&mut self, i: usize) -> Option<Instant> {
        let mut groups = Vec::new();
        if !self.launch.pid_namespaces {
            // In a PID namespace the recorded groups are the namespace's numbers, not ours to
            // signal; the namespace dies with its init.
            groups = self.service_groups(i);
            if let Some(pid) = self.pid(i) {
                groups.extend(child_groups(pid));
            }
        }
        groups.sort_unstable();
        groups.dedup();
        let own_group = self.launch.own_process_group;
        let child = self.slot_mut(i).child.take()?;
        let at = Instant::now();
        signal_child(&child, libc::SIGKILL, own_group);
        for g in groups {
            // SAFETY: kill(2) of a group one of our daemons started (checked > 1 and not ours).
            unsafe { libc::kill(-g, libc::SIGKILL) };
        }
        reap(child, REAP_TIMEOUT);
        Some(at)
    }

    /// SIGKILL of node `i`'s daemon only: what it started keeps running (until the restarted
    /// daemon deals with what it finds left over).
    pub fn kill_daemon_only(&mut self, i: usize) {
        if let Some(mut child) = self.slot_mut(i).child.take() {
            let _ = child.kill();
            reap(child, REAP_TIMEOUT);
        }
    }

    /// SIGTERM (the daemon halts its packages and exits); SIGKILL after `limit`.
    pub fn stop(&mut self, i: usize, limit: Duration) {
        let own_group = self.launch.own_process_group;
        if let Some(mut child) = self.slot_mut(i).child.take() {
            // SIGTERM to the daemon only: it halts what it started itself.
            signal_child(&child, libc::SIGTERM, false);
            let deadline = Instant::now() + limit;
            while Instant::now() < deadline {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(POLL_PERIOD);
            }
            signal_child(&child, libc::SIGKILL, own_group);
            reap(child, REAP_TIMEOUT);
        }
    }

    /// SIGSTOP or SIGCONT (or any signal) to node `i`'s daemon only.
    pub fn signal(&self, i: usize, signal: i32) -> bool {
        match &self.slot(i).child {
            Some(child) => {
                signal_child(child, signal, false);
                true
            }
            None => false,
        }
    }

    /// A signal to the witness's daemon (SIGHUP: reload its credentials).
    pub fn signal_witness(&self, signal: i32) -> bool {
        match self.witness.as_ref().and_then(|w| w.child.as_ref()) {
            Some(child) => {
                signal_child(child, signal, false);
                true
            }
            None => false,
        }
    }

    pub fn kill_witness(&mut self) {
        if let Some(child) = self.witness.as_mut().and_then(|w| w.child.take()) {
            signal_child(&child, libc::SIGKILL, self.launch.own_process_group);
            reap(child, REAP_TIMEOUT);
        }
    }

    /// One request to node `i`'s API, with the admin token.
    pub fn request(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<&str>,
        limit: Duration,
    ) -> Result<http::Response, http::Error> {
        http::request_tls(
            self.tls(),
            self.api(i),
            method,
            path,
            self.admin_token(),
            body,
            limit,
        )
    }

    /// `GET /v1/status` of node `i`, when it answers 200 with JSON within `limit`.
    pub fn status(&self, i: usize, limit: Duration) -> Option<Value> {
        let r = self.request(i, "GET", "/v1/status", None, limit).ok()?;
        (r.status == 200).then(|| r.json())?
    }

    /// Polls node `i`'s status until `check` holds; how long that took, or the last status
    /// after `limit`.
    pub fn wait_for(
        &self,
        i: usize,
        what: &str,
        limit: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Result<Duration, WaitError> {
        let started = Instant::now();
        let request_limit = limit.max(POLL_PERIOD);
        loop {
            let status = self.status(i, request_limit);
            if status.as_ref().is_some_and(&check) {
                return Ok(started.elapsed());
            }
            if started.elapsed() >= limit {
                return Err(WaitError {
                    what: what.to_owned(),
                    limit,
                    node: self.name(i).to_owned(),
                    last: status.unwrap_or_default(),
                    directory: self.path().display().to_string(),
                });
            }
            std::thread::sleep(POLL_PERIOD);
        }
    }

    /// Waits until node `i` reports every node a member and no event pending or running.
    pub fn wait_formed(&self, i: usize, limit: Duration) -> Result<Duration, WaitError> {
        self.wait_for(i, "every node a member", limit, |v| {
            v["nodes"]
                .as_array()
                .is_some_and(|nodes| nodes.iter().all(|n| n["member"] == true))
                && is_idle(v)
        })
    }

    /// The last `lines` lines of the log of the process called `name`.
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(name)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Kills every process this cluster started and what they left: see the module's
    /// invariants. Idempotent.
    pub fn kill_all(&mut self) {
        for i in 1..=self.nodes.len() {
            self.kill(i);
        }
        self.kill_witness();
        let mut needles = vec![self.path().to_string_lossy().into_owned()];
        needles.extend(self.launch.markers.iter().cloned());
        kill_processes_mentioning(&needles);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
        if std::thread::panicking() {
            eprintln!("test failed; cluster logs in {}:", self.path().display());
            let names: Vec<String> = self
                .nodes
                .iter()
                .chain(self.witness.iter())
                .map(|s| s.name.clone())
                .collect();
            for name in names {
                eprintln!("--- {name} (last lines) ---");
                eprintln!("{}", self.log_tail(&name, PANIC_LOG_LINES));
            }
        }
    }
}

/// True when a status shows no event pending or running.
pub fn is_idle(status: &Value) -> bool {
    status["execution"].is_null() && status["pending"].as_array().is_some_and(|p| p.is_empty())
}

fn signal_child(child: &Child, signal: i32, group: bool) {
    let pid = i32::try_from(child.id()).expect("a PID fits i32");
    // SAFETY: kill(2) of our own child (or the group it leads), not yet reaped, so the PID is
    // still its own.
    unsafe { libc::kill(if group { -pid } else { pid }, signal) };
}

/// Waits (bounded) for a signalled child to exit. One that does not is left unreaped and is
/// never signalled again.
fn reap(mut child: Child, limit: Duration) {
    let deadline = Instant::now() + limit;
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn own_group() -> i32 {
    // SAFETY: getpgrp cannot fail and touches no memory.
    unsafe { libc::getpgrp() }
}

/// The process groups of `pid`'s direct children, other than our own group.
pub fn child_groups(pid: u32) -> Vec<i32> {
    let ours = own_group();
    let mut groups: Vec<i32> = proc_pids()
        .into_iter()
        .filter_map(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            let (ppid, pgrp) = parent_and_group(&stat)?;
            (i64::from(ppid) == i64::from(pid) && pgrp > 1 && pgrp != ours).then_some(pgrp)
        })
        .collect();
    groups.sort_unstable();
    groups.dedup();
    groups
}

/// The direct children of `pid` whose command line does not contain `except`.
pub fn children_except(pid: u32, except: &str) -> Vec<u32> {
    proc_pids()
        .into_iter()
        .filter(|&child| {
            let parent = std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| parent_and_group(&stat));
            let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
            parent.is_some_and(|(ppid, _)| i64::from(ppid) == i64::from(pid))
                && !String::from_utf8_lossy(&cmdline).contains(except)
        })
        .filter_map(|child| u32::try_from(child).ok())
        .collect()
}

/// SIGKILL of every process (other than this one) whose command line contains one of
/// `needles`: used with this cluster's unique directory and markers only, so only processes
/// its daemons started are hit.
pub fn kill_processes_mentioning(needles: &[String]) {
    let me = std::process::id() as i32;
    for pid in proc_pids() {
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw);
        if needles.iter().any(|n| cmdline.contains(n.as_str())) {
            // SAFETY: kill(2) with a PID read just now from /proc, of a process whose command
            // line names this cluster.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Fields 4 (ppid) and 5 (pgrp) of /proc/PID/stat, after the parenthesised command name.
pub fn parent_and_group(stat: &str) -> Option<(i32, i32)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_and_group_are_read_after_the_command_name() {
        let stat = "4242 (a (b) c) S 17 4200 4200 0 -1 4194560";
        assert_eq!(parent_and_group(stat), Some((17, 4200)));
        assert_eq!(parent_and_group("garbage"), None);
    }
}
