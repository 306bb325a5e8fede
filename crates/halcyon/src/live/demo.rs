//! `halcyon demo`: a 3-node cluster on 127.0.0.1-3 in child processes, no root needed.
//!
//! The demo cannot be left behind, however it ends:
//! - each daemon is spawned in a process group of its own with `PR_SET_PDEATHSIG` = SIGTERM,
//!   so it halts its packages when the demo dies, even by SIGKILL (the demo spawns them from
//!   the main thread, which lives as long as the process);
//! - a *keeper* (`halcyon demo-keeper`, hidden) is spawned first, in its own process group,
//!   holding the demo's lock and the read end of a pipe; when the pipe closes without the
//!   demo's "done" (the demo was killed), it stops what is left: the daemons (SIGTERM, then
//!   SIGKILL after [`STOP_GRACE`]), their process groups, the services' process groups recorded
//!   under each node's `run/`, the package's address on `lo`, the working directory and the
//!   pointer file;
//! - SIGINT, SIGTERM and SIGHUP stop the demo the orderly way (the same cleanup, in-process).
//!
//! One pointer file per demo ([`pointer_file`], keyed by the base port) tells the CLI how to
//! reach it; a second demo whose ports overlap a running one's is refused with that demo's
//! PID. A lock file per port, held by the demo and its keeper, closes the race between two
//! demos started at once and keeps a new demo out until the old one's cleanup is finished.
//!
//! As root, the three nodes share one `lo`: a restarted node's restart cleanup (which halts
//! every package configured for it, addresses included) removes 127.0.0.100 even while
//! another node runs the package. The service still answers there (127.0.0.0/8 is local);
//! the address comes back with the package's next start or move. Known, not fixed: the
//! daemon has no way to tell a shared interface from its own.
//!
//! The daemons' logs go to a directory that outlives the demo ([`logs_directory`], one per
//! port, emptied when the next demo on that port starts); the working directory (configuration
//! and state) is removed on exit unless `--keep`.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use halcyon_api::StatusResponse;
use halcyon_testkit::config::{ClusterConfig, Resource};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};

use super::Failure;

/// Nodes of the demo cluster.
const NODES: u8 = 3;
/// Offsets from the base port: heartbeats, consensus (+1), API (+2), the demo's HTTP service.
const API_OFFSET: u16 = 2;
const HTTP_OFFSET: u16 = 80;
/// Ports a demo uses, from its base port: `base..base + PORT_SPAN` (the HTTP service's port
/// is the last).
const PORT_SPAN: u16 = HTTP_OFFSET + 1;
/// The relocatable address the package gets on `lo` when the demo runs as root.
pub const PACKAGE_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 100);
/// Its prefix: the demo network's subnet, 127.0.0.0/8 (an `ip` resource's prefix is its
/// subnet's).
const PACKAGE_PREFIX: u8 = 8;
/// The lock of the addresses a root demo adds on `lo` (machine-wide: every demo's package
/// address is the same).
const LO_LOCK: &str = "/run/halcyon-demo-lo.lock";
/// How long a daemon is given to halt its packages before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long the demo waits for the cluster to start its package.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the demo looks at its children.
const WATCH_EVERY: Duration = Duration::from_millis(200);
/// How long `halcyon demo --restart NODE` waits for the demo to restart the node.
const RESTART_TIMEOUT: Duration = Duration::from_secs(10);
/// What the demo writes to its keeper once it has cleaned up itself.
const DONE: &str = "done";

/// Prints a line, ignoring a closed terminal (after SIGHUP the demo still cleans up).
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// The directory of the pointer and lock files: `$XDG_RUNTIME_DIR`, else the temporary
/// directory.
fn runtime_directory() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

fn uid() -> u32 {
    // SAFETY: getuid cannot fail and touches no memory.
    unsafe { libc::getuid() }
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// Where the demo on base port `port` tells the CLI how to reach it.
pub fn pointer_file(port: u16) -> PathBuf {
    runtime_directory().join(format!("halcyon-demo-{}-{port}.json", uid()))
}

fn lock_file(port: u16) -> PathBuf {
    runtime_directory().join(format!("halcyon-demo-{}-{port}.lock", uid()))
}

/// Where the demo on base port `port` keeps its daemons' logs:
/// `$XDG_STATE_HOME/halcyon/demo-PORT`, else `~/.local/state/halcyon/demo-PORT`, else the
/// temporary directory.
pub fn logs_directory(port: u16) -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")));
    match state {
        Some(dir) => dir.join("halcyon").join(format!("demo-{port}")),
        None => std::env::temp_dir().join(format!("halcyon-demo-logs-{}-{port}", uid())),
    }
}

/// What a running demo publishes in its pointer file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pointer {
    /// The demo process.
    pub pid: u32,
    /// Its keeper process.
    pub keeper: u32,
    /// The base port.
    pub port: u16,
    pub api: Vec<String>,
    /// The working directory (configuration under `config/`, state under `state/NODE`).
    pub directory: PathBuf,
    pub config: PathBuf,
    pub logs: PathBuf,
    /// The relocatable address on `lo` (root only).
    pub address: Option<Ipv4Addr>,
    /// The nodes' addresses the demo added on `lo` (root only; removed on exit).
    #[serde(default)]
    pub added: Vec<Ipv4Addr>,
    /// Each node's daemon (0 while it is not running).
    pub daemons: BTreeMap<String, u32>,
    /// The demo's HTTP service.
    pub url: String,
}

impl Pointer {
    fn read(path: &Path) -> Option<Pointer> {
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
    }

    /// Written whole or not at all (a reader never sees half a file).
    fn write(&self, path: &Path) -> std::io::Result<()> {
        let partial = path.with_extension("json.partial");
        std::fs::write(&partial, serde_json::to_string_pretty(self)?)?;
        std::fs::rename(&partial, path)
    }

    fn ports(&self) -> std::ops::Range<u32> {
        u32::from(self.port)..u32::from(self.port) + u32::from(PORT_SPAN)
    }
}

/// True while process `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses, which may contain anything.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// True while process `pid` exists and its command line mentions `needle` (a PID is not
/// trusted alone: it may have been reused).
fn alive_with(pid: u32, needle: &str) -> bool {
    alive(pid)
        && std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
}

/// The running demos of this user (pointer files whose demo or keeper still runs).
fn running_demos() -> Vec<Pointer> {
    let prefix = format!("halcyon-demo-{}-", uid());
    let Ok(entries) = std::fs::read_dir(runtime_directory()) else {
        return Vec::new();
    };
    let mut demos: Vec<Pointer> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(&prefix) && name.ends_with(".json")
        })
        .filter_map(|e| Pointer::read(&e.path()))
        .filter(|p| alive(p.pid) || alive(p.keeper))
        .collect();
    demos.sort_by_key(|p| p.port);
    demos
}

/// The configuration directory of the running demo (when exactly one runs): the CLI finds
/// its admin token in `pki` there.
pub fn running_demo_config() -> Option<PathBuf> {
    match running_demos().as_slice() {
        [demo] => Some(demo.config.clone()),
        _ => None,
    }
}

/// The API sockets of the running demo's nodes (when exactly one runs), for commands given no
/// `--api`, `--config` or `--socket`.
pub fn running_demo_sockets() -> Option<Vec<PathBuf>> {
    match running_demos().as_slice() {
        [demo] => Some(
            demo.daemons
                .keys()
                .map(|node| api_socket(&demo.directory, node))
                .collect(),
        ),
        _ => None,
    }
}

/// Where a demo's node serves its API socket: in its state directory, so that demos on other
/// ports never share one.
fn api_socket(directory: &Path, node: &str) -> PathBuf {
    directory.join("state").join(node).join("api.sock")
}

/// The API addresses of the running demo, for commands given no `--api` or `--config`.
pub fn find_demo_api() -> Result<Vec<SocketAddr>, Failure> {
    let demos = running_demos();
    match demos.as_slice() {
        [] => Err(Failure::Invalid(format!(
            "error: no cluster given: use --api ADDR or --config DIR (no running demo cluster \
             found in {})",
            runtime_directory().display()
        ))),
        [demo] => Ok(demo.api.iter().filter_map(|a| a.parse().ok()).collect()),
        several => Err(Failure::Invalid(format!(
            "error: {} demo clusters run ({}); choose one with --api ADDR",
            several.len(),
            several
                .iter()
                .map(|p| format!(
                    "port {} (pid {}): --api {}",
                    p.port,
                    p.pid,
                    p.api.first().map(String::as_str).unwrap_or("?")
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ))),
    }
}

/// The demo's configuration: the test kit's demo cluster (three nodes on 127.0.0.1-3, the
/// failover package `hello`), whose service answers HTTP with the node's name, port
/// `port + 80`: on `address` when given (the package's relocatable address, added on `lo`
/// by an `ip` resource that comes before the service), else on the node's own address.
pub fn demo_config(port: u16, exe: &Path, address: Option<Ipv4Addr>) -> ClusterConfig {
    let http_port = port + HTTP_OFFSET;
    let bind = match address {
        Some(a) => format!("A={a}"),
        None => {
            "case $HALCYON_NODE in node1) A=127.0.0.1;; node2) A=127.0.0.2;; *) A=127.0.0.3;; esac"
                .to_owned()
        }
    };
    let command = format!(
        "{bind}; exec '{}' demo-http --bind $A:{http_port} --name $HALCYON_NODE",
        exe.display()
    );
    let mut config = halcyon_testkit::config::demo("demo", port, usize::from(NODES), command)
        .heartbeat(Duration::from_millis(100), 4);
    if let Some(address) = address {
        let package = config
            .package_mut(halcyon_testkit::config::DEMO_PACKAGE)
            .expect("the demo cluster has its package");
        package.resources.insert(
            0,
            Resource::Ip {
                network: "lo".into(),
                address,
                prefix: PACKAGE_PREFIX,
            },
        );
    }
    config
}

/// What `halcyon demo` was asked to do.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub port: u16,
    /// Keep the working directory (configuration and state) on exit.
    pub keep: bool,
}

pub async fn run_demo(options: DemoOptions) -> Result<(), Failure> {
    if options.port > u16::MAX - PORT_SPAN {
        return Err(Failure::Invalid(format!(
            "error: --port {}: the demo uses {} ports from it; at most {}",
            options.port,
            PORT_SPAN,
            u16::MAX - PORT_SPAN
        )));
    }
    demo(options).await
}

/// An exclusive `flock` on the port's lock file, or the PID of the demo that holds it.
fn lock_port(port: u16) -> Result<std::fs::File, Failure> {
    let path = lock_file(port);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Failure::Failed(format!("error: cannot open {}: {e}", path.display())))?;
    // SAFETY: flock(2) on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let holder = Pointer::read(&pointer_file(port))
            .map(|p| format!("pid {}", p.pid))
            .unwrap_or_else(|| "it is stopping".to_owned());
        return Err(Failure::Failed(format!(
            "error: a demo already runs on port {port} ({holder}); stop it (Ctrl-C, or kill its \
             pid) or use another --port"
        )));
    }
    Ok(file)
}

/// Refuses a demo whose ports overlap those of a running demo, naming that demo's PID.
fn refuse_overlap(port: u16) -> Result<(), Failure> {
    let mine = u32::from(port)..u32::from(port) + u32::from(PORT_SPAN);
    for other in running_demos() {
        let theirs = other.ports();
        if other.port != port && mine.start < theirs.end && theirs.start < mine.end {
            return Err(Failure::Failed(format!(
                "error: the demo on port {} (pid {}) uses ports {}..{}, which overlap {}..{}; \
                 stop it or choose another --port",
                other.port, other.pid, theirs.start, theirs.end, mine.start, mine.end
            )));
        }
    }
    Ok(())
}

/// The demo's children and what it made, cleaned up in [`Demo::stop`].
struct Demo {
    exe: PathBuf,
    port: u16,
    keep: bool,
    directory: PathBuf,
    config: PathBuf,
    logs: PathBuf,
    address: Option<Ipv4Addr>,
    added: Vec<Ipv4Addr>,
    daemons: BTreeMap<String, Option<Child>>,
    keeper: Child,
    pointer: Pointer,
}

impl Demo {
    fn state_dir(&self, node: &str) -> PathBuf {
        self.directory.join("state").join(node)
    }

    /// The daemon's command line: a process group of its own, SIGTERM when the demo dies.
    fn spawn_daemon(&self, node: &str) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{node}.log")))?;
        let parent = std::process::id();
        let mut command = Command::new(&self.exe);
        command
            .arg("daemon")
            .arg("--config")
            .arg(&self.config)
            .arg("--node")
            .arg(node)
            .arg("--state-dir")
            .arg(self.state_dir(node))
            .arg("--api-socket")
            .arg(api_socket(&self.directory, node))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The demo may have died before the prctl: then nobody would tell us.
                if libc::getppid() as u32 != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        Ok(command.spawn()?)
    }

    fn publish(&mut self) -> anyhow::Result<()> {
        self.pointer.daemons = self
            .daemons
            .iter()
            .map(|(n, c)| (n.clone(), c.as_ref().map_or(0, Child::id)))
            .collect();
        self.pointer.write(&pointer_file(self.port))?;
        Ok(())
    }

    /// A daemon that exited: its name, PID and how it ended.
    fn reap(&mut self) -> Vec<(String, u32, ExitStatus)> {
        let mut dead = Vec::new();
        for (name, slot) in &mut self.daemons {
            if let Some(child) = slot
                && let Ok(Some(status)) = child.try_wait()
            {
                dead.push((name.clone(), child.id(), status));
                *slot = None;
            }
        }
        dead
    }

    /// Restarts the nodes `halcyon demo --restart NODE` asked for (request files under
    /// `requests/`).
    fn serve_restart_requests(&mut self) {
        let requests = self.directory.join("requests");
        let Ok(entries) = std::fs::read_dir(&requests) else {
            return;
        };
        let mut changed = false;
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
            let name = entry.file_name().to_string_lossy().into_owned();
            match self.daemons.get(&name) {
                Some(None) => match self.spawn_daemon(&name) {
                    Ok(child) => {
                        say!("restarted {name} (pid {})", child.id());
                        self.daemons.insert(name, Some(child));
                        changed = true;
                    }
                    Err(e) => say!("cannot restart {name}: {e:#}"),
                },
                Some(Some(c)) => say!("{name} runs already (pid {})", c.id()),
                None => say!("no node {name:?} in the demo"),
            }
        }
        if changed && let Err(e) = self.publish() {
            say!("cannot update {}: {e:#}", pointer_file(self.port).display());
        }
    }

    /// Stops everything the orderly way, then tells the keeper it has nothing to do.
    fn stop(mut self) {
        let pids: Vec<u32> = self.daemons.values().flatten().map(Child::id).collect();
        for pid in &pids {
            // SAFETY: kill(2) on our own child's pid (not yet reaped, so not reused).
            unsafe {
                libc::kill(*pid as i32, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        for child in self.daemons.values_mut().flatten() {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let leftovers = Leftovers {
            directory: self.directory.clone(),
            daemons: pids,
            addresses: self
                .address
                .into_iter()
                .chain(self.added.iter().copied())
                .collect(),
            pointer: pointer_file(self.port),
            keep: self.keep,
        };
        leftovers.remove();
        if let Some(stdin) = self.keeper.stdin.as_mut() {
            let _ = writeln!(stdin, "{DONE}");
        }
        drop(self.keeper.stdin.take());
        let _ = self.keeper.wait();
        if self.keep {
            say!("kept the working directory {}", self.directory.display());
        }
        say!("logs kept in {}", self.logs.display());
    }
}

/// What a demo leaves until it is cleaned up; the demo's own stop and the keeper share this.
struct Leftovers {
    directory: PathBuf,
    daemons: Vec<u32>,
    /// On `lo`: the package's address and the nodes' addresses the demo added.
    addresses: Vec<Ipv4Addr>,
    pointer: PathBuf,
    keep: bool,
}

impl Leftovers {
    /// Kills what still runs and removes the address, the directory (unless kept) and the
    /// pointer file. Returns what it found still running, for the keeper's message.
    fn remove(&self) -> Vec<String> {
        let mut found = Vec::new();
        let needle = self.directory.to_string_lossy().into_owned();
        // Daemons: SIGTERM (they halt their packages), SIGKILL after the grace period.
        let running: Vec<u32> = self
            .daemons
            .iter()
            .copied()
            .filter(|&p| alive_with(p, &needle))
            .collect();
        for &pid in &running {
            found.push(format!("daemon {pid}"));
            // SAFETY: kill(2); the PID was checked to be this demo's daemon just above.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        while running.iter().any(|&p| alive(p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Each daemon's group (its guard and anything else it did not take down).
        let mut killed = Vec::new();
        for &pid in &self.daemons {
            if pid > 1 && halcyon_resources::group_alive(pid as i32) {
                found.push(format!("process group {pid}"));
                halcyon_resources::signal_group(pid as i32, libc::SIGKILL);
                killed.push(pid as i32);
            }
        }
        // Services, whose process groups the daemons record under `run/`.
        if let Ok(nodes) = std::fs::read_dir(self.directory.join("state")) {
            for node in nodes.flatten() {
                let Ok(entries) = std::fs::read_dir(node.path().join("run")) else {
                    continue;
                };
                for e in entries.flatten() {
                    if let Some(pgid) = std::fs::read_to_string(e.path())
                        .ok()
                        .and_then(|s| s.trim().parse::<i32>().ok())
                        && pgid > 1
                        && halcyon_resources::group_alive(pgid)
                    {
                        found.push(format!("service group {pgid}"));
                        halcyon_resources::signal_group(pgid, libc::SIGKILL);
                        killed.push(pgid);
                    }
                }
            }
        }
        // SIGKILL takes effect when each process next runs: on a busy machine a member
        // can outlive the signal by a while. Done means gone, so wait for them (bounded).
        let deadline = Instant::now() + STOP_GRACE;
        while killed.iter().any(|&g| halcyon_resources::group_alive(g)) && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        for &address in &self.addresses {
            match remove_address(address) {
                Ok(true) => found.push(format!("address {address}/{PACKAGE_PREFIX} on lo")),
                Ok(false) => {}
                Err(e) => say!("cannot remove {address}/{PACKAGE_PREFIX} from lo: {e}"),
            }
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.directory);
        }
        let _ = std::fs::remove_file(&self.pointer);
        found
    }
}

/// `lo`'s index, and whether `address` is on it.
fn on_lo(address: Ipv4Addr) -> Result<(halcyon_netlink::Client, u32, bool), String> {
    let mut client = halcyon_netlink::Client::open().map_err(|e| e.to_string())?;
    let index = client.interface_index("lo").map_err(|e| e.to_string())?;
    let present = client
        .addresses(halcyon_netlink::AddressFamily::Ipv4)
        .map_err(|e| e.to_string())?
        .into_iter()
        .any(|a| a.interface_index() == index && a.address() == Some(address.into()));
    Ok((client, index, present))
}

/// Adds `address/PACKAGE_PREFIX` on `lo` unless present; true when it added it.
fn add_address(address: Ipv4Addr) -> Result<bool, String> {
    let (mut client, index, present) = on_lo(address)?;
    if !present {
        client
            .add_address(&halcyon_netlink::InterfaceAddress {
                interface_index: index,
                address: address.into(),
                prefix_length: PACKAGE_PREFIX,
            })
            .map_err(|e| e.to_string())?;
    }
    Ok(!present)
}

/// Removes `address/PACKAGE_PREFIX` from `lo` if present; true when it was there.
fn remove_address(address: Ipv4Addr) -> Result<bool, String> {
    let (mut client, index, present) = on_lo(address)?;
    if present {
        client
            .delete_address(&halcyon_netlink::InterfaceAddress {
                interface_index: index,
                address: address.into(),
                prefix_length: PACKAGE_PREFIX,
            })
            .map_err(|e| e.to_string())?;
    }
    Ok(present)
}

async fn demo(options: DemoOptions) -> Result<(), Failure> {
    let port = options.port;
    refuse_overlap(port)?;
    let lock = lock_port(port)?;
    let failed = |e: anyhow::Error| Failure::Failed(format!("error: {e:#}"));
    // The signals are caught from here on: a SIGTERM during the start still cleans up.
    let mut signals = Signals::new().map_err(failed)?;
    // As root, one demo at a time changes `lo` (the package's address is the same for all).
    let lo_lock = if is_root() { lock_lo() } else { None };
    let mut demo = start(options, &lock, lo_lock.as_ref()).map_err(failed)?;
    let outcome = watch(&mut demo, &mut signals).await;
    say!("\nstopping the demo cluster...");
    demo.stop();
    drop(lock);
    drop(lo_lock);
    outcome.map_err(failed)
}

/// SIGINT, SIGTERM, SIGHUP (stop) and SIGUSR1 (`--restart` requests).
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
    restart: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
            restart: signal(SignalKind::user_defined1())?,
        })
    }
}

/// Writes the configuration, starts the keeper and the daemons, publishes the pointer file.
/// The machine-wide lock of the addresses a root demo adds on `lo`, or None (with a line
/// saying why) when another demo holds it.
fn lock_lo() -> Option<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LO_LOCK)
        .ok()?;
    // SAFETY: flock(2) on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        say!(
            "another demo holds {PACKAGE_ADDRESS} on lo ({LO_LOCK}): this one runs without a \
             package address"
        );
        return None;
    }
    Some(file)
}

fn start(
    options: DemoOptions,
    lock: &std::fs::File,
    lo_lock: Option<&std::fs::File>,
) -> anyhow::Result<Demo> {
    let port = options.port;
    let exe = std::env::current_exe()?;
    let directory = tempfile::Builder::new()
        .prefix("halcyon-demo-")
        .tempdir()?
        .keep();
    let config = directory.join("config");
    std::fs::create_dir_all(&config)?;
    std::fs::create_dir_all(directory.join("requests"))?;
    let address = lo_lock.is_some().then_some(PACKAGE_ADDRESS);
    demo_config(port, &exe, address).write(&config)?;
    // Authenticated heartbeats, as on a cluster set up with `halcyon init`.
    crate::init::credentials_beside(&config)?;
    let logs = logs_directory(port);
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs)?;

    // The keeper first, so that nothing the demo starts can outlive it. It inherits the locks
    // (same open files, so the same flocks) and holds them until its cleanup is done.
    let lock_fds = [Some(lock.as_raw_fd()), lo_lock.map(AsRawFd::as_raw_fd)];
    let mut keeper = Command::new(&exe);
    keeper
        .arg("demo-keeper")
        .arg("--port")
        .arg(port.to_string())
        .arg("--directory")
        .arg(&directory)
        .stdin(Stdio::piped())
        .process_group(0);
    if options.keep {
        keeper.arg("--keep");
    }
    // SAFETY: fcntl(2) in the child only; async-signal-safe.
    unsafe {
        keeper.pre_exec(move || {
            for fd in lock_fds.into_iter().flatten() {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let keeper = keeper.spawn()?;
    let http = SocketAddr::from((
        address.unwrap_or(Ipv4Addr::new(127, 0, 0, 1)),
        port + HTTP_OFFSET,
    ));
    let pointer = Pointer {
        pid: std::process::id(),
        keeper: keeper.id(),
        port,
        api: (1..=NODES)
            .map(|i| format!("127.0.0.{i}:{}", port + API_OFFSET))
            .collect(),
        directory: directory.clone(),
        config: config.clone(),
        logs: logs.clone(),
        address,
        added: Vec::new(),
        daemons: BTreeMap::new(),
        url: format!("http://{http}/"),
    };
    let mut demo = Demo {
        exe,
        port,
        keep: options.keep,
        directory,
        config,
        logs,
        address,
        added: Vec::new(),
        daemons: BTreeMap::new(),
        keeper,
        pointer,
    };
    demo.publish()?;
    if address.is_some() {
        // An `ip` resource goes on the interface that holds the node's own address: as root,
        // each node's address is made an address of `lo` (127.0.0.1 already is), and the
        // keeper knows it before it exists.
        for i in 1..=NODES {
            let node = Ipv4Addr::new(127, 0, 0, i);
            demo.pointer.added.push(node);
            demo.publish()?;
            let added = add_address(node)
                .map_err(|e| anyhow::anyhow!("adding {node}/{PACKAGE_PREFIX} on lo: {e}"))?;
            if !added {
                demo.pointer.added.pop();
                demo.publish()?;
            }
        }
        demo.added = demo.pointer.added.clone();
    }
    say!(
        "demo directory {} (removed on exit unless --keep)",
        demo.directory.display()
    );
    say!(
        "started the keeper (pid {}): it stops the cluster if this demo is killed",
        demo.keeper.id()
    );
    for i in 1..=NODES {
        let name = format!("node{i}");
        let child = demo.spawn_daemon(&name)?;
        say!("started {name} (pid {})", child.id());
        demo.daemons.insert(name, Some(child));
        demo.publish()?;
    }
    Ok(demo)
}

/// The command that restarts a node of the demo on `port`.
fn restart_command(exe: &Path, port: u16, node: &str) -> String {
    format!("{} demo --port {port} --restart {node}", exe.display())
}

/// Waits for the package, prints what to try, then watches the daemons until a signal.
async fn watch(demo: &mut Demo, signals: &mut Signals) -> anyhow::Result<()> {
    let api: Vec<SocketAddr> = demo
        .pointer
        .api
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    say!("waiting for the cluster to form and start package \"hello\"...");
    let deadline = tokio::time::Instant::now() + FORM_TIMEOUT;
    let mut announced = false;
    let mut ticker = tokio::time::interval(WATCH_EVERY);
    loop {
        tokio::select! {
            _ = signals.interrupt.recv() => return Ok(()),
            _ = signals.terminate.recv() => return Ok(()),
            _ = signals.hangup.recv() => return Ok(()),
            _ = signals.restart.recv() => demo.serve_restart_requests(),
            _ = ticker.tick() => {}
        }
        for (node, pid, status) in demo.reap() {
            demo.publish()?;
            say!(
                "\n{node} (pid {pid}) died ({status}); the cluster moves its packages to the \
                 other nodes. Restart it with:\n  {}",
                restart_command(&demo.exe, demo.port, &node)
            );
        }
        if announced {
            continue;
        }
        if let Some(status) = package_status(&api, &demo.config).await {
            let running = status.packages.first().filter(|p| p.status == "up");
            if let Some(package) = running {
                say!(
                    "\n{}",
                    super::render::status(&status, &super::render::Clock::system(), None)
                );
                let node = package.nodes.first().map(|n| n.to_string());
                announce(demo, node.as_deref());
                announced = true;
                continue;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            say!(
                "the cluster did not start the package within {} s; logs in {}",
                FORM_TIMEOUT.as_secs(),
                demo.logs.display()
            );
            announce(demo, None);
            announced = true;
        }
    }
}

/// The demo's status, asked with the admin token its credentials hold (in `config/pki`).
async fn package_status(api: &[SocketAddr], config: &Path) -> Option<StatusResponse> {
    let pki = halcyon_pki::Layout::new(&config.join("pki"));
    let token = halcyon_pki::read_admin_token(pki.dir()).ok()??;
    let ca = halcyon_pki::read_ca_certificates(&pki.ca_certificate()).ok()?;
    let tls = halcyon_daemon::client::tls_with_ca(ca).ok()?;
    let headers = [("Authorization", format!("Bearer {token}"))];
    for &addr in api {
        if let Ok(r) = halcyon_daemon::client::request_tls(
            &tls,
            addr,
            halcyon_daemon::raft_tls::address_name(addr),
            "GET",
            "/v1/status",
            &headers,
            None,
            Duration::from_secs(2),
        )
        .await
            && let Ok(v) = serde_json::from_str::<StatusResponse>(&r.body)
        {
            return Some(v);
        }
    }
    None
}

fn announce(demo: &Demo, node: Option<&str>) {
    let hp = demo.port + HTTP_OFFSET;
    let curl = match demo.address {
        Some(a) => format!(
            "curl http://{a}:{hp}/          # the package's address {a} on lo follows it from node to node"
        ),
        None => {
            let on = node.unwrap_or("node1");
            let n = on.trim_start_matches("node");
            format!(
                "curl http://127.0.0.{n}:{hp}/          # {on} runs the package now; after a move, curl 127.0.0.N (nodeN)"
            )
        }
    };
    let pids: Vec<String> = demo
        .daemons
        .iter()
        .map(|(n, c)| format!("{n}={}", c.as_ref().map_or(0, Child::id)))
        .collect();
    let api = demo.port + API_OFFSET;
    // The page asks for data with the token after `#` (the browser keeps it; it is not sent
    // as part of the address). The demo's own admin token: the demo is this user's.
    let token = halcyon_pki::read_admin_token(&demo.directory.join("config").join("pki"))
        .ok()
        .flatten()
        .map_or_else(String::new, |t| format!("#token={t}"));
    let ca = halcyon_pki::Layout::new(&demo.directory.join("config").join("pki")).ca_certificate();
    say!(
        "\nstatus page: https://127.0.0.1:{api}/{token}\n\
         (live, served by every node: also https://127.0.0.2:{api}/ and https://127.0.0.3:{api}/ \
         with the same #token=...; over HTTPS with the demo's own CA {ca}, which a browser does \
         not know: accept the certificate once, or import the CA; Prometheus metrics at \
         /metrics with the token as a bearer token: curl --cacert {ca} ...)\n\
         \nWhat to try (in another terminal):\n\
         \x20 halcyon status                       # finds this demo cluster\n\
         \x20 {curl}\n\
         \x20 halcyon package move hello -n node2  # move it\n\
         \x20 kill -9 <pid of the node running it> # daemons: {pids}; the package moves to the next node\n\
         \x20 halcyon explain hello\n\
         Logs: {logs}\nCtrl-C stops everything (so do kill {pid}, closing the terminal, or kill -9 {pid}).",
        pids = pids.join(" "),
        logs = demo.logs.display(),
        pid = std::process::id(),
        ca = ca.display(),
    );
}

/// `halcyon demo --restart NODE`: asks the demo on `port` to restart the node's daemon (the
/// demo spawns it, so it stays the demo's child and dies with it), and waits for it.
pub fn request_restart(port: u16, node: &str) -> Result<(), Failure> {
    let Some(pointer) = Pointer::read(&pointer_file(port)).filter(|p| alive(p.pid)) else {
        return Err(Failure::Failed(format!(
            "error: no demo runs on port {port} (no {})",
            pointer_file(port).display()
        )));
    };
    let Some(&old) = pointer.daemons.get(node) else {
        return Err(Failure::Invalid(format!(
            "error: no node {node:?} in the demo; nodes: {}",
            pointer
                .daemons
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    if alive(old) {
        return Err(Failure::Failed(format!(
            "error: {node} runs (pid {old}); kill it first to restart it"
        )));
    }
    let request = pointer.directory.join("requests").join(node);
    std::fs::write(&request, b"")
        .map_err(|e| Failure::Failed(format!("error: cannot write {}: {e}", request.display())))?;
    // SAFETY: kill(2) on the PID the demo published, checked alive just above.
    unsafe {
        libc::kill(pointer.pid as i32, libc::SIGUSR1);
    }
    let deadline = Instant::now() + RESTART_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(p) = Pointer::read(&pointer_file(port))
            && let Some(&pid) = p.daemons.get(node)
            && pid != 0
            && alive(pid)
        {
            say!("{node} restarted (pid {pid}); it rejoins the cluster");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(Failure::Failed(format!(
        "error: the demo (pid {}) did not restart {node} within {} s; see its terminal",
        pointer.pid,
        RESTART_TIMEOUT.as_secs()
    )))
}

/// `halcyon demo-keeper`: waits until the demo's pipe closes; if the demo did not say it
/// cleaned up, cleans up after it. Holds the demo's port lock until done.
pub fn keeper(port: u16, directory: PathBuf, keep: bool) -> Result<(), Failure> {
    // The terminal's Ctrl-C goes to the demo, which stops in order; the keeper must outlive it.
    // SAFETY: signal(2) with SIG_IGN.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let mut done = false;
    for line in std::io::stdin().lock().lines() {
        match line {
            Ok(l) if l == DONE => done = true,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    if done {
        return Ok(());
    }
    let pointer_path = pointer_file(port);
    let pointer = Pointer::read(&pointer_path);
    let leftovers = Leftovers {
        directory: directory.clone(),
        daemons: pointer
            .as_ref()
            .map(|p| p.daemons.values().copied().filter(|&p| p != 0).collect())
            .unwrap_or_default(),
        addresses: pointer
            .as_ref()
            .map(|p| {
                p.address
                    .into_iter()
                    .chain(p.added.iter().copied())
                    .collect()
            })
            .unwrap_or_default(),
        pointer: pointer_path,
        keep,
    };
    let found = leftovers.remove();
    let demo = pointer.as_ref().map_or(0, |p| p.pid);
    let mut line =
        format!("halcyon demo (pid {demo}) ended without stopping its cluster; its keeper");
    if found.is_empty() {
        line.push_str(" found nothing left running");
    } else {
        line.push_str(&format!(" stopped: {}", found.join(", ")));
    }
    if keep {
        line.push_str(&format!("; kept {}", directory.display()));
    } else {
        line.push_str(&format!("; removed {}", directory.display()));
    }
    let _ = writeln!(
        std::io::stderr(),
        "{line}; logs kept in {}",
        logs_directory(port).display()
    );
    Ok(())
}

/// The demo service: answers every HTTP request with "hello from NODE".
pub async fn serve_http(bind: SocketAddr, name: String) -> Result<(), Failure> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| Failure::Failed(format!("error: cannot listen on {bind}: {e}")))?;
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let name = name.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
            let body = format!("hello from {name}\n");
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(config: &ClusterConfig) -> halcyon_config::Config {
        let cluster = config.cluster_toml();
        let package = config.packages[0].to_toml();
        halcyon_config::load_texts(&[("cluster.toml", &cluster), ("hello.toml", &package)])
            .unwrap_or_else(|e| panic!("the demo's configuration does not load: {e:?}"))
    }

    #[test]
    fn the_demos_configuration_loads_with_its_address_before_its_service() {
        let exe = Path::new("/x/halcyon");
        let plain = loaded(&demo_config(21_000, exe, None));
        assert_eq!(plain.cluster.nodes.len(), usize::from(NODES));
        assert_eq!(plain.cluster.port, 21_000);
        let hello = &plain.packages["hello"];
        assert_eq!(hello.resources.len(), 1);
        let only = format!("{:?}", hello.resources[0]);
        assert!(only.contains("demo-http --bind $A:21080"), "{only}");

        let with_address = loaded(&demo_config(21_000, exe, Some(PACKAGE_ADDRESS)));
        let hello = &with_address.packages["hello"];
        assert_eq!(hello.resources.len(), 2);
        let first = format!("{:?}", hello.resources[0]);
        assert!(first.contains(&PACKAGE_ADDRESS.to_string()), "{first}");
        let second = format!("{:?}", hello.resources[1]);
        assert!(second.contains(&format!("A={PACKAGE_ADDRESS}")), "{second}");
    }
}
