//! Halcyon's resource drivers (SPEC 9) behind one trait, [`Resource`].
//!
//! Drivers: [`Service`] (a supervised long-running command in its own process group),
//! [`Script`] (run and halt commands with timeouts), [`ip::IpAddress`] (a relocatable address
//! added through netlink and announced with gratuitous ARP / unsolicited neighbour
//! advertisements, with local LAN failover by [`ip::IpAddress::swap`]), [`ocf::OcfAgent`] (an
//! OCF resource agent), [`storage::Volume`] and [`storage::Filesystem`] (activate and mount
//! shared storage, with a consistency check before mounting).
//!
//! [`PackageResources::from_config_on_node`] builds every kind; the older
//! [`PackageResources::from_config`] (no node) builds everything except `ip`, which needs the
//! local node's interfaces.
//!
//! Invariants:
//! - every command runs in a process group of its own, with the package environment
//!   ([`PackageEnv`]); killing a resource kills its whole group. Scripts and services run
//!   through [`SHELL`]` -c`, OCF agents are executed directly;
//! - every external command is bounded by a timeout; a command that times out has its process
//!   group killed, and the error says so;
//! - captured output is bounded ([`OUTPUT_MAX`] bytes of a command, [`SERVICE_OUTPUT_MAX`]
//!   of a service, the end kept);
//! - this crate spawns processes, never tasks or threads: a service's exit is awaited by the
//!   caller through [`Resource::exited`], and an address's repeated announcements are sent and
//!   a service's output is read while the caller awaits [`Resource::exited`] (the daemon's
//!   supervision loop always does);
//! - every loop is bounded (by a count or a deadline), and so is every socket wait; the one
//!   exception is the loop reading a service's output, which lasts as long as the service.

use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use halcyon_config::{Node, Resource as ResourceConfig, ScriptResource, ServiceResource};
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

/// Most bytes of a command's output kept (the last ones).
pub const OUTPUT_MAX: usize = 2048;
/// Most bytes of a service's output kept (the last ones), see [`Resource::output_tail`].
pub const SERVICE_OUTPUT_MAX: usize = 4096;
/// Capacity asked for the pipe carrying a service's output: what the service may write while
/// the caller is not awaiting [`Resource::exited`] before a write blocks (Linux's default
/// limit for unprivileged processes; the default capacity is 64 KiB).
const SERVICE_PIPE_BYTES: i32 = 1 << 20;
/// Bytes read from a service's output pipe at a time.
const SERVICE_READ_BYTES: usize = 8192;
/// How often a process group is polled while waiting for it to vanish.
const GROUP_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// How long to wait for a killed process, and then for its process group to vanish (the
/// coordinator's bound on a node's halt counts both: `Resource::halt_bound`).
const KILL_WAIT: Duration = halcyon_config::limits::KILL_WAIT;
/// Most `/proc` entries looked at when looking for a group's live members.
const PROC_ENTRIES_MAX: usize = 1_000_000;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Environment given to every command of a package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageEnv {
    pub cluster: String,
    pub package: String,
    pub node: String,
}

impl PackageEnv {
    pub fn vars(&self) -> [(&'static str, &str); 3] {
        [
            ("HALCYON_CLUSTER", self.cluster.as_str()),
            ("HALCYON_PACKAGE", self.package.as_str()),
            ("HALCYON_NODE", self.node.as_str()),
        ]
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResourceError {
    #[error("{what}: cannot start `{command}`: {error}")]
    Spawn {
        what: String,
        command: String,
        error: String,
    },
    #[error("{what}: `{command}` exited with {status}{}", output_suffix(.output))]
    Failed {
        what: String,
        command: String,
        status: String,
        output: String,
    },
    #[error("{what}: `{command}` timed out after {timeout:?}; its process group was killed{}", output_suffix(.output))]
    TimedOut {
        what: String,
        command: String,
        timeout: Duration,
        output: String,
    },
    #[error("{what}: exited at once with {status}")]
    ExitedAtStart { what: String, status: String },
    #[error("{what}: resource kind not supported yet")]
    Unsupported { what: String },
    /// A safety check refused the action (an address already answering elsewhere, a device
    /// already mounted, a failed consistency check...).
    #[error("{what}: {reason}")]
    Refused { what: String, reason: String },
    /// A system call or kernel request failed.
    #[error("{what}: {error}")]
    Io { what: String, error: String },
    /// The driver needs to know the local node (its interfaces), see
    /// [`PackageResources::from_config_on_node`].
    #[error(
        "{what}: needs the local node's interfaces (build the package with PackageResources::from_config_on_node)"
    )]
    NeedsNode { what: String },
    /// The configuration cannot be used on this node (no address for its subnet, no interface
    /// on the network...).
    #[error("{what}: {reason}")]
    Config { what: String, reason: String },
}

fn output_suffix(output: &str) -> String {
    let trimmed = output.trim();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("; output: {trimmed}")
    }
}

/// How a resource is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// Orderly: SIGTERM then SIGKILL after the halt timeout; halt commands run.
    Graceful,
    /// At once (self-fencing, forced halt): processes get SIGKILL; halt commands still run,
    /// bounded by their timeouts.
    Immediate,
}

/// What stopping did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StopReport {
    /// Processes had to be killed with SIGKILL (they ignored SIGTERM or timed out).
    pub killed: bool,
    pub detail: String,
}

/// A resource's health as [`Resource::check`] sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Running,
    Stopped,
    /// A supervised process exited by itself.
    Exited(String),
    /// The resource should run but does not (an address gone from its interface, an agent's
    /// monitor saying "not running" or "failed", a file system no longer mounted).
    Failed(String),
}

/// One resource of a package on this node.
pub trait Resource: Send {
    /// For logs and errors, e.g. `service web`.
    fn describe(&self) -> String;
    /// Acquire the resource (start the process, run the run command).
    fn start<'a>(&'a mut self, env: &'a PackageEnv) -> BoxFuture<'a, Result<(), ResourceError>>;
    /// Release it.
    fn stop<'a>(
        &'a mut self,
        env: &'a PackageEnv,
        mode: StopMode,
    ) -> BoxFuture<'a, Result<StopReport, ResourceError>>;
    /// Non-blocking health check.
    fn check(&mut self) -> Health;
    /// Resolves when a supervised process exits by itself (never, for resources without one).
    /// Cancel-safe: dropping the future loses nothing.
    fn exited(&mut self) -> BoxFuture<'_, String>;
    /// The process group to kill if the daemon restarts while this resource runs.
    fn process_group(&self) -> Option<i32> {
        None
    }
    /// The end of what the resource's process printed (stdout and stderr together, at most
    /// [`SERVICE_OUTPUT_MAX`] bytes, cut at a character boundary) since it was last started;
    /// for the event log when a service exits or fails. `None` when nothing was printed or the
    /// resource captures no output (only services do).
    fn output_tail(&mut self) -> Option<String> {
        None
    }
    /// An active health probe, which may run a command (an OCF agent's `monitor`) and so takes
    /// time; bounded by the resource's timeout. The default is [`Resource::check`]. The caller
    /// runs it every [`Resource::monitor_interval`].
    fn monitor<'a>(&'a mut self, _env: &'a PackageEnv) -> BoxFuture<'a, Health> {
        let health = self.check();
        Box::pin(async move { health })
    }
    /// How often [`Resource::monitor`] should run; `None`: only when the caller wants to.
    fn monitor_interval(&self) -> Option<Duration> {
        None
    }
    /// The relocatable address driver behind this resource, if it is one (for local LAN
    /// failover, [`PackageResources::swap_adapter`]).
    fn as_ip_address(&mut self) -> Option<&mut ip::IpAddress> {
        None
    }
}

/// The shell scripts and services run through (`SHELL -c COMMAND`), named by its path: a
/// bare `sh` is searched along `PATH` by `posix_spawnp`: one failed `execve` for every
/// directory before the one holding it (8 per command with a `PATH` that starts with a
/// user's tool directories), in the child, while the daemon's spawning thread waits for it.
pub const SHELL: &str = "/bin/sh";

fn shell(command: &str, env: &PackageEnv) -> Command {
    let mut c = Command::new(SHELL);
    c.arg("-c")
        .arg(command)
        .envs(env.vars())
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(false);
    c
}

/// Sends `signal` to process group `pgid`; false when no process of the group is left.
pub fn signal_group(pgid: i32, signal: i32) -> bool {
    assert!(pgid > 1, "refusing to signal process group {pgid}");
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe { libc::kill(-pgid, signal) == 0 }
}

/// True while some live process of group `pgid` exists. Zombies do not count: a killed
/// process whose parent died is reparented to init and stays a zombie until init reaps it
/// (seconds, with some inits), yet holds nothing (no memory, files, sockets or mounts).
pub fn group_alive(pgid: i32) -> bool {
    // Cheap and exact when the group has no process at all, zombie or not.
    signal_group(pgid, 0) && live_members(pgid)
}

/// Whether `/proc` shows a process of group `pgid` that is not a zombie (or dead). When
/// `/proc` cannot be read, every member counts as live.
fn live_members(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    for entry in entries.take(PROC_ENTRIES_MAX).flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue; // exited meanwhile
        };
        if let Some((state, group)) = state_and_group(&stat)
            && group == pgid
            && state != 'Z'
            && state != 'X'
        {
            return true;
        }
    }
    false
}

/// The state letter and process group of a `/proc/PID/stat` line (`pid (comm) S ppid pgrp
/// ...`; the command may contain spaces and parentheses, so fields count from the last `)`).
fn state_and_group(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let group = fields.next()?.parse().ok()?;
    Some((state, group))
}

/// Waits until group `pgid` has no process left, at most `limit`. True when it is gone.
async fn wait_group_gone(pgid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if !group_alive(pgid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(GROUP_POLL_INTERVAL).await;
    }
}

/// SIGKILLs a process group and waits for it to vanish (bounded).
pub async fn kill_group(pgid: i32) -> bool {
    signal_group(pgid, libc::SIGKILL);
    wait_group_gone(pgid, KILL_WAIT).await
}

fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => status.to_string(),
    }
}

/// The last bytes a service printed, and the pipe they come through.
#[derive(Default)]
struct ServiceOutput {
    /// The read end of the pipe that is the service's stdout and stderr; `None` before the
    /// start, after the end of the output (every writer gone) and after a stop.
    pipe: Option<tokio::net::unix::pipe::Receiver>,
    tail: OutputTail,
}

impl ServiceOutput {
    /// Reads what is waiting in the pipe without blocking (bounded: a pipe holds at most
    /// [`SERVICE_PIPE_BYTES`]; a service writing faster than this reads is cut off here and
    /// read on by [`Resource::exited`]).
    fn drain(&mut self) {
        let Some(pipe) = &self.pipe else { return };
        let mut buffer = [0u8; SERVICE_READ_BYTES];
        for _ in 0..=(SERVICE_PIPE_BYTES as usize / SERVICE_READ_BYTES) {
            match pipe.try_read(&mut buffer) {
                Ok(0) => {
                    self.pipe = None;
                    return;
                }
                Ok(n) => self.tail.push(&buffer[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.pipe = None;
                    return;
                }
            }
        }
    }
}

/// The last [`SERVICE_OUTPUT_MAX`] bytes of a stream.
#[derive(Default)]
struct OutputTail {
    bytes: std::collections::VecDeque<u8>,
}

impl OutputTail {
    fn push(&mut self, data: &[u8]) {
        let data = &data[data.len().saturating_sub(SERVICE_OUTPUT_MAX)..];
        let excess = (self.bytes.len() + data.len()).saturating_sub(SERVICE_OUTPUT_MAX);
        self.bytes.drain(..excess);
        self.bytes.extend(data);
    }

    /// The kept bytes as text: a character cut at the front is dropped whole, other invalid
    /// UTF-8 becomes U+FFFD.
    fn text(&self) -> Option<String> {
        let bytes: Vec<u8> = self.bytes.iter().copied().collect();
        // A UTF-8 character is at most 4 bytes: at most 3 continuation bytes lead.
        let start = bytes
            .iter()
            .take(3)
            .take_while(|b| (0x80..0xc0).contains(*b))
            .count();
        let text = String::from_utf8_lossy(&bytes[start..]).into_owned();
        (!text.is_empty()).then_some(text)
    }
}

/// A pipe for a service's output: (read end, write end), close-on-exec, enlarged to
/// [`SERVICE_PIPE_BYTES`] when the kernel allows.
fn output_pipe() -> std::io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: pipe2(2) fills the two-element array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: two fresh descriptors that nothing else owns.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl(2) on a live descriptor; a failure only leaves the default capacity.
    unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, SERVICE_PIPE_BYTES) };
    Ok((read, write))
}

/// A long-running command supervised by the daemon (SPEC 9.2). Its stdout and stderr go to a
/// pipe read while the caller awaits [`Resource::exited`]; the last [`SERVICE_OUTPUT_MAX`]
/// bytes are kept for [`Resource::output_tail`]. A service that prints more than the pipe
/// holds ([`SERVICE_PIPE_BYTES`]) while nobody awaits `exited` blocks in its write until the
/// caller does.
pub struct Service {
    config: ServiceResource,
    child: Option<Child>,
    pgid: Option<i32>,
    /// Set once the child's exit has been reaped.
    exit: Option<String>,
    output: ServiceOutput,
}

impl Service {
    pub fn new(config: ServiceResource) -> Self {
        Service {
            config,
            child: None,
            pgid: None,
            exit: None,
            output: ServiceOutput::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn config(&self) -> &ServiceResource {
        &self.config
    }

    fn reap(&mut self) {
        if self.exit.is_none()
            && let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            self.exit = Some(describe_status(status));
        }
    }
}

impl Resource for Service {
    fn describe(&self) -> String {
        format!("service {}", self.config.name)
    }

    fn start<'a>(&'a mut self, env: &'a PackageEnv) -> BoxFuture<'a, Result<(), ResourceError>> {
        Box::pin(async move {
            if let Some(old) = self.pgid.take() {
                // A previous run (exited by itself) may have left processes in its group.
                kill_group(old).await;
            }
            let spawn_error = |e: std::io::Error| ResourceError::Spawn {
                what: self.describe(),
                command: self.config.command.clone(),
                error: e.to_string(),
            };
            let (read, write) = output_pipe().map_err(spawn_error)?;
            let pipe =
                tokio::net::unix::pipe::Receiver::from_owned_fd(read).map_err(spawn_error)?;
            let stderr = write.try_clone().map_err(spawn_error)?;
            // The write ends are dropped with the command: only the service holds them.
            let child = shell(&self.config.command, env)
                .stdout(write)
                .stderr(stderr)
                .spawn()
                .map_err(spawn_error)?;
            let pid = child.id().map(|p| p as i32);
            self.pgid = pid;
            self.child = Some(child);
            self.exit = None;
            self.output = ServiceOutput {
                pipe: Some(pipe),
                tail: OutputTail::default(),
            };
            tracing::info!(service = %self.config.name, pid, package = %env.package, "service started");
            Ok(())
        })
    }

    fn stop<'a>(
        &'a mut self,
        _env: &'a PackageEnv,
        mode: StopMode,
    ) -> BoxFuture<'a, Result<StopReport, ResourceError>> {
        Box::pin(async move {
            let Some(pgid) = self.pgid.take() else {
                return Ok(StopReport::default());
            };
            let mut report = StopReport::default();
            let halt_timeout = self.config.halt_timeout;
            self.output.drain();
            if mode == StopMode::Graceful {
                signal_group(pgid, libc::SIGTERM);
                let deadline = Instant::now() + halt_timeout;
                if let Some(child) = self.child.as_mut() {
                    let _ = timeout(halt_timeout, child.wait()).await;
                }
                let rest = deadline.saturating_duration_since(Instant::now());
                if !wait_group_gone(pgid, rest).await {
                    report.killed = true;
                    report.detail = format!(
                        "{} ignored SIGTERM for {halt_timeout:?}: killed",
                        self.describe()
                    );
                }
            } else {
                report.killed = group_alive(pgid);
            }
            if report.killed || mode == StopMode::Immediate {
                signal_group(pgid, libc::SIGKILL);
            }
            // Reap the child first: until then it counts as a member of its group.
            if let Some(mut child) = self.child.take() {
                let _ = timeout(KILL_WAIT, child.wait()).await;
            }
            wait_group_gone(pgid, KILL_WAIT).await;
            self.exit = None;
            // What it printed while stopping is kept; the pipe is closed.
            self.output.drain();
            self.output.pipe = None;
            Ok(report)
        })
    }

    fn check(&mut self) -> Health {
        self.reap();
        match (&self.child, &self.exit) {
            (None, _) => Health::Stopped,
            (Some(_), Some(e)) => Health::Exited(e.clone()),
            (Some(_), None) => Health::Running,
        }
    }

    /// Reads the service's output while waiting for its exit. Cancel-safe: the output read so
    /// far is in `self`, and both the read and the wait lose nothing when dropped.
    fn exited(&mut self) -> BoxFuture<'_, String> {
        Box::pin(async move {
            if let Some(e) = &self.exit {
                return e.clone();
            }
            let Some(child) = self.child.as_mut() else {
                return std::future::pending().await;
            };
            let output = &mut self.output;
            let mut buffer = [0u8; SERVICE_READ_BYTES];
            // Lasts as long as the service: each turn reads output or ends with its exit.
            let waited = loop {
                let read = async {
                    match output.pipe.as_mut() {
                        Some(pipe) => tokio::io::AsyncReadExt::read(pipe, &mut buffer).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    biased;
                    waited = child.wait() => break waited,
                    read = read => match read {
                        Ok(0) | Err(_) => output.pipe = None,
                        Ok(n) => output.tail.push(&buffer[..n]),
                    },
                }
            };
            // What it printed just before exiting.
            output.drain();
            let status = match waited {
                Ok(status) => describe_status(status),
                Err(e) => format!("wait failed: {e}"),
            };
            self.exit = Some(status.clone());
            status
        })
    }

    fn process_group(&self) -> Option<i32> {
        self.pgid
    }

    fn output_tail(&mut self) -> Option<String> {
        self.output.drain();
        self.output.tail.text()
    }
}

/// Run and halt commands with timeouts (SPEC 9.3), in the package environment.
///
/// A run command often starts the package's processes in the background (`myapp &`). They
/// stay in the run command's process group, which the script keeps as its
/// [`Resource::process_group`] while a process of it lives: the daemon hands it to its lease
/// guard like a service's group. Stopping runs the halt command, then ends what the run
/// command left (SIGTERM, SIGKILL after the halt timeout; at once with SIGKILL for an
/// immediate stop, before the halt command), so nothing of the package stays on the node.
/// A process that left the group (`setsid`, a double-forking daemon) is not seen.
pub struct Script {
    config: ScriptResource,
    /// The run command's process group while processes it left run.
    run_group: Option<i32>,
}

/// How long processes a halt command signalled get to exit before they count as left over.
const HALT_SETTLE: Duration = Duration::from_millis(300);

impl Script {
    pub fn new(config: ScriptResource) -> Self {
        Script {
            config,
            run_group: None,
        }
    }

    /// Ends what the run command left running; a description of it when something had to be
    /// ended (SIGTERM with `grace`, then SIGKILL).
    async fn end_run_group(&mut self, grace: Option<Duration>) -> Option<(bool, String)> {
        let pgid = self.run_group.take()?;
        // A halt command's `kill` returns before its target is gone: give what it signalled
        // a moment to exit before calling it left over (seen under load in CI).
        if !group_alive(pgid) || wait_group_gone(pgid, HALT_SETTLE).await {
            return None;
        }
        let left = format!(
            "{}: processes the run command left in process group {pgid}",
            self.describe()
        );
        if let Some(grace) = grace {
            signal_group(pgid, libc::SIGTERM);
            if wait_group_gone(pgid, grace).await {
                return Some((false, format!("{left} were still running: terminated")));
            }
        }
        kill_group(pgid).await;
        let how = match grace {
            Some(grace) => format!("ignored SIGTERM for {grace:?}: killed"),
            None => "were killed".to_owned(),
        };
        Some((true, format!("{left} {how}")))
    }
}

/// Runs `command` through `sh -c` to completion within `limit`; on timeout its process group is
/// killed. A non-zero exit is an error.
pub async fn run_command(
    what: &str,
    command: &str,
    env: &PackageEnv,
    limit: Duration,
) -> Result<String, ResourceError> {
    let (status, output) = run_captured(what, command, shell(command, env), limit).await?;
    if status.success() {
        Ok(output)
    } else {
        Err(ResourceError::Failed {
            what: what.to_owned(),
            command: command.to_owned(),
            status: describe_status(status),
            output,
        })
    }
}

/// Runs a prepared command (already in its own process group) to completion within `limit`,
/// capturing stdout and stderr together (the last [`OUTPUT_MAX`] bytes). On timeout its process
/// group is killed and [`ResourceError::TimedOut`] returned. `shown` is the command as errors
/// quote it.
pub async fn run_captured(
    what: &str,
    shown: &str,
    command: Command,
    limit: Duration,
) -> Result<(ExitStatus, String), ResourceError> {
    run_captured_in_group(what, shown, command, limit)
        .await
        .map(|(status, output, _)| (status, output))
}

/// [`run_captured`], also returning the command's process group (which processes it left in
/// the background are still in).
async fn run_captured_in_group(
    what: &str,
    shown: &str,
    mut command: Command,
    limit: Duration,
) -> Result<(ExitStatus, String, Option<i32>), ResourceError> {
    let spawn_error = |e: std::io::Error| ResourceError::Spawn {
        what: what.to_owned(),
        command: shown.to_owned(),
        error: e.to_string(),
    };
    let mut output = tempfile::tempfile().map_err(spawn_error)?;
    let stdout = output.try_clone().map_err(spawn_error)?;
    let stderr = output.try_clone().map_err(spawn_error)?;
    let mut child = command
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(spawn_error)?;
    let pgid = child.id().map(|p| p as i32);
    let waited = timeout(limit, child.wait()).await;
    let read_output = |file: &mut std::fs::File| {
        let len = file.seek(SeekFrom::End(0)).unwrap_or(0);
        let start = len.saturating_sub(OUTPUT_MAX as u64);
        let _ = file.seek(SeekFrom::Start(start));
        let mut bytes = Vec::new();
        let _ = file.take(OUTPUT_MAX as u64).read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    };
    match waited {
        // Leftover background processes of a finished command are not ours to keep.
        Ok(Ok(status)) => Ok((status, read_output(&mut output), pgid)),
        Ok(Err(e)) => Err(spawn_error(e)),
        Err(_) => {
            if let Some(pgid) = pgid {
                signal_group(pgid, libc::SIGKILL);
            }
            let _ = timeout(KILL_WAIT, child.wait()).await;
            if let Some(pgid) = pgid {
                wait_group_gone(pgid, KILL_WAIT).await;
            }
            Err(ResourceError::TimedOut {
                what: what.to_owned(),
                command: shown.to_owned(),
                timeout: limit,
                output: read_output(&mut output),
            })
        }
    }
}

impl Resource for Script {
    fn describe(&self) -> String {
        format!("script {}", self.config.name)
    }

    /// Runs the run command. When it fails (or times out), what it left running is killed.
    fn start<'a>(&'a mut self, env: &'a PackageEnv) -> BoxFuture<'a, Result<(), ResourceError>> {
        Box::pin(async move {
            // A previous run's leftovers (a start without a stop) are not this run's.
            self.end_run_group(None).await;
            let what = format!("{} run", self.describe());
            let command = self.config.run.clone();
            let (status, output, pgid) = run_captured_in_group(
                &what,
                &command,
                shell(&command, env),
                self.config.run_timeout,
            )
            .await?;
            self.run_group = pgid.filter(|g| group_alive(*g));
            if status.success() {
                if let Some(pgid) = self.run_group {
                    tracing::info!(script = %self.config.name, pgid, "the run command left processes running");
                }
                return Ok(());
            }
            self.end_run_group(None).await;
            Err(ResourceError::Failed {
                what,
                command,
                status: describe_status(status),
                output,
            })
        })
    }

    /// Runs the halt command, then ends what the run command left running. A halt command
    /// that times out has its process group killed; both are reported in the
    /// [`StopReport`] (`killed` and `detail`), not as errors: the package is off this node.
    /// A halt command that fails is an error.
    fn stop<'a>(
        &'a mut self,
        env: &'a PackageEnv,
        mode: StopMode,
    ) -> BoxFuture<'a, Result<StopReport, ResourceError>> {
        Box::pin(async move {
            let mut report = StopReport::default();
            let mut note = |killed: bool, detail: String| {
                report.killed |= killed;
                if !report.detail.is_empty() {
                    report.detail.push_str("; ");
                }
                report.detail.push_str(&detail);
            };
            if mode == StopMode::Immediate
                && let Some((killed, detail)) = self.end_run_group(None).await
            {
                note(killed, detail);
            }
            let what = format!("{} halt", self.describe());
            let halted =
                match run_command(&what, &self.config.halt, env, self.config.halt_timeout).await {
                    Ok(_) => Ok(()),
                    Err(e @ ResourceError::TimedOut { .. }) => {
                        note(true, e.to_string());
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
            if let Some((killed, detail)) = self.end_run_group(Some(self.config.halt_timeout)).await
            {
                note(killed, detail);
            }
            halted.map(|()| report)
        })
    }

    fn check(&mut self) -> Health {
        Health::Running
    }

    fn exited(&mut self) -> BoxFuture<'_, String> {
        Box::pin(std::future::pending())
    }

    fn process_group(&self) -> Option<i32> {
        self.run_group.filter(|g| group_alive(*g))
    }
}

/// Builds the driver for one configured resource, without knowing the local node: every kind
/// except `ip` (which returns [`ResourceError::NeedsNode`]); see [`driver_on_node`].
pub fn driver(config: &ResourceConfig) -> Result<Box<dyn Resource>, ResourceError> {
    build_driver(config, None, None)
}

/// Builds the driver for one configured resource of package `package` on node `node` (the
/// node's interfaces place `ip` resources; the package name names OCF instances).
pub fn driver_on_node(
    config: &ResourceConfig,
    node: &Node,
    package: &str,
) -> Result<Box<dyn Resource>, ResourceError> {
    let instance = match config {
        ResourceConfig::Ocf(o) => Some(ocf::instance_name(package, &o.agent)),
        _ => None,
    };
    build_driver(config, Some(node), instance.as_deref())
}

fn build_driver(
    config: &ResourceConfig,
    node: Option<&Node>,
    ocf_instance: Option<&str>,
) -> Result<Box<dyn Resource>, ResourceError> {
    match config {
        ResourceConfig::Service(s) => Ok(Box::new(Service::new(s.clone()))),
        ResourceConfig::Script(s) => Ok(Box::new(Script::new(s.clone()))),
        ResourceConfig::Ip(ip) => match node {
            Some(node) => Ok(Box::new(ip::IpAddress::new(ip.clone(), node)?)),
            None => Err(ResourceError::NeedsNode {
                what: config.describe(),
            }),
        },
        ResourceConfig::Ocf(o) => {
            let instance = match ocf_instance {
                Some(i) => i.to_owned(),
                None => ocf::instance_name("halcyon", &o.agent),
            };
            Ok(Box::new(ocf::OcfAgent::new(o.clone(), &instance)?))
        }
        ResourceConfig::Volume(v) => Ok(Box::new(storage::Volume::new(v.clone()))),
        ResourceConfig::Filesystem(f) => Ok(Box::new(storage::Filesystem::new(f.clone()))),
    }
}

/// OCF instance names of a package's resources (`None` for other kinds): `PACKAGE.TYPE`, with
/// `.2`, `.3`... for further resources of the same agent. The same on every node, so an agent
/// finds its instance's state after a failover.
fn ocf_instances(package: &halcyon_config::Package) -> Vec<Option<String>> {
    let mut seen: std::collections::BTreeMap<&str, usize> = Default::default();
    package
        .resources
        .iter()
        .map(|r| match r {
            ResourceConfig::Ocf(o) => {
                let n = seen.entry(o.agent.as_str()).or_insert(0);
                *n += 1;
                let base = ocf::instance_name(package.name.as_str(), &o.agent);
                Some(if *n > 1 { format!("{base}.{n}") } else { base })
            }
            _ => None,
        })
        .collect()
}

/// A package's resources on this node, started in order and stopped in reverse.
pub struct PackageResources {
    pub env: PackageEnv,
    pub resources: Vec<Box<dyn Resource>>,
    /// How many resources (from the front) are started.
    started: usize,
}

impl PackageResources {
    pub fn new(env: PackageEnv, resources: Vec<Box<dyn Resource>>) -> Self {
        PackageResources {
            env,
            resources,
            started: 0,
        }
    }

    /// Builds a package's drivers without the local node: every kind but `ip` (an `ip`
    /// resource returns [`ResourceError::NeedsNode`]). Kept for callers that do not know the
    /// node; the daemon should call [`PackageResources::from_config_on_node`].
    pub fn from_config(
        env: PackageEnv,
        package: &halcyon_config::Package,
    ) -> Result<Self, ResourceError> {
        Self::build(env, package, None)
    }

    /// Builds a package's drivers on node `node` (this node's entry of the configuration:
    /// `config.node(&env.node)`). Its interfaces place `ip` resources: the interface on the
    /// resource's network is the configured `device`, or else the one carrying the node's
    /// stationary address; cross-subnet resources use the address whose subnet contains the
    /// node's stationary address on that network.
    pub fn from_config_on_node(
        env: PackageEnv,
        package: &halcyon_config::Package,
        node: &Node,
    ) -> Result<Self, ResourceError> {
        Self::build(env, package, Some(node))
    }

    fn build(
        env: PackageEnv,
        package: &halcyon_config::Package,
        node: Option<&Node>,
    ) -> Result<Self, ResourceError> {
        let resources = package
            .resources
            .iter()
            .zip(ocf_instances(package))
            .map(|(r, instance)| build_driver(r, node, instance.as_deref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(env, resources))
    }

    /// Local LAN failover (HACMP's swap_adapter): moves every started `ip` resource of
    /// `network` to the interface `to_device` (a standby interface of this node on that
    /// network), announcing each moved address. Returns what moved, e.g.
    /// `198.18.0.50/24: eth0 -> eth1`. Stops at the first failure (the addresses moved so far
    /// stay moved).
    pub async fn swap_adapter(
        &mut self,
        network: &str,
        to_device: &str,
    ) -> Result<Vec<String>, ResourceError> {
        let mut moved = Vec::new();
        for r in self.resources[..self.started].iter_mut() {
            if let Some(ip) = r.as_ip_address()
                && ip.network() == network
            {
                moved.push(ip.swap(to_device).await?);
            }
        }
        Ok(moved)
    }

    /// Runs resource `index`'s active health probe ([`Resource::monitor`]).
    pub async fn monitor(&mut self, index: usize) -> Health {
        assert!(index < self.resources.len(), "no resource {index}");
        self.resources[index].monitor(&self.env).await
    }

    /// The started resources that want [`PackageResources::monitor`] at an interval
    /// (index, interval): OCF agents at their `monitor_interval`.
    pub fn monitor_intervals(&self) -> Vec<(usize, Duration)> {
        self.resources[..self.started]
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.monitor_interval().map(|d| (i, d)))
            .collect()
    }

    /// Starts every resource in order; on a failure, stops what was started (reverse order)
    /// and returns the failure.
    pub async fn start(&mut self) -> Result<(), ResourceError> {
        while self.started < self.resources.len() {
            let i = self.started;
            if let Err(e) = self.resources[i].start(&self.env).await {
                let _ = self.stop(StopMode::Graceful).await;
                return Err(e);
            }
            self.started += 1;
        }
        Ok(())
    }

    /// Stops the started resources in reverse order. Every resource is stopped even when one
    /// fails; the first error is returned with the others' details.
    pub async fn stop(&mut self, mode: StopMode) -> Result<StopReport, ResourceError> {
        let mut report = StopReport::default();
        let mut first_error = None;
        while self.started > 0 {
            self.started -= 1;
            let i = self.started;
            match self.resources[i].stop(&self.env, mode).await {
                Ok(r) => {
                    report.killed |= r.killed;
                    if !r.detail.is_empty() {
                        if !report.detail.is_empty() {
                            report.detail.push_str("; ");
                        }
                        report.detail.push_str(&r.detail);
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// The end of what resource `index` printed since its last start (a service's stdout and
    /// stderr, at most [`SERVICE_OUTPUT_MAX`] bytes): for the event log when the service exits
    /// ([`PackageResources::exited`]) or fails, read before [`PackageResources::restart`],
    /// which starts a new tail. `None` when nothing was printed or the resource captures no
    /// output.
    pub fn output_tail(&mut self, index: usize) -> Option<String> {
        assert!(index < self.resources.len(), "no resource {index}");
        self.resources[index].output_tail()
    }

    /// Starts resource `index` again (a service that exited by itself).
    pub async fn restart(&mut self, index: usize) -> Result<(), ResourceError> {
        assert!(index < self.started, "resource {index} was not started");
        self.resources[index].start(&self.env).await
    }

    /// Stops the started resource `index` (gracefully, within its halt timeout) and starts
    /// it again; the others keep running. For a service a monitor found unhealthy while its
    /// process still runs.
    pub async fn stop_and_restart(&mut self, index: usize) -> Result<(), ResourceError> {
        assert!(index < self.started, "resource {index} was not started");
        self.resources[index]
            .stop(&self.env, StopMode::Graceful)
            .await?;
        self.resources[index].start(&self.env).await
    }

    pub fn is_started(&self) -> bool {
        self.started > 0
    }

    /// Process groups of running services (to kill after a daemon restart).
    pub fn process_groups(&self) -> Vec<i32> {
        self.resources[..self.started]
            .iter()
            .filter_map(|r| r.process_group())
            .collect()
    }

    /// Resolves when a started resource's supervised process exits: (index, exit description).
    /// Cancel-safe. Pending forever when none is supervised.
    pub fn exited(&mut self) -> BoxFuture<'_, (usize, String)> {
        let started = self.started;
        Box::pin(async move {
            if started == 0 {
                return std::future::pending().await;
            }
            let futures: Vec<_> = self.resources[..started]
                .iter_mut()
                .enumerate()
                .map(|(i, r)| {
                    Box::pin(async move { (i, r.exited().await) }) as BoxFuture<'_, (usize, String)>
                })
                .collect();
            select_first(futures).await
        })
    }
}

/// The first of several futures to complete (a small `select_all`).
async fn select_first<T>(mut futures: Vec<BoxFuture<'_, T>>) -> T {
    std::future::poll_fn(move |cx| {
        for f in futures.iter_mut() {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(cx) {
                return std::task::Poll::Ready(v);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

mod announce;
pub mod fence;
pub mod ip;
pub mod ocf;
pub mod storage;

#[cfg(test)]
mod fence_tests;
#[cfg(test)]
mod ip_tests;
#[cfg(test)]
mod ocf_tests;
#[cfg(test)]
mod storage_tests;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
