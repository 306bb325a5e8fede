//! The daemon's side: [`GuardHandle`] spawns the guard and speaks the protocol over its stdin
//! and stdout, with std types only (no async runtime needed).
//!
//! Writes never block: a request line is far below PIPE_BUF, so a write on the non-blocking
//! pipe either goes through whole or fails with EAGAIN, which means the guard has stopped
//! reading ([`GuardError::Stalled`]). A reader thread collects replies (matched to
//! [`Ticket`]s by order) and events (`ready`, `fenced`). The daemon must treat a dead guard,
//! a stalled guard and a fence as a lost lease.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::clock::BootTime;
use crate::config::GuardConfig;
use crate::protocol::{Address, Request};

/// How long [`GuardHandle::spawn`] waits for the guard's `event ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// Replies kept for tickets nobody waited on yet (the oldest are dropped first).
const REPLIES_KEPT: usize = 1024;
/// How long dropping a handle waits for the guard to exit after closing its pipe.
const DROP_WAIT: Duration = Duration::from_secs(1);

/// Identifies a request sent; redeem it with [`GuardHandle::wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

/// The guard's `event ready` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyInfo {
    pub pid: u32,
    /// SCHED_FIFO priority obtained, or None.
    pub realtime_priority: Option<i32>,
    pub memory_locked: bool,
    /// Whether addresses can be registered.
    pub netlink: bool,
    /// The digest of the sources the guard was built from ([`crate::BUILD`]).
    pub build: Option<String>,
    pub line: String,
}

/// The guard's `event fenced` line: what it killed and deleted, and when (CLOCK_BOOTTIME).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceSummary {
    /// `expired` or `eof`.
    pub reason: String,
    pub deadline: BootTime,
    pub fire_at: BootTime,
    pub started: BootTime,
    pub finished: BootTime,
    pub groups_killed: u32,
    pub groups_failed: u32,
    pub addresses_deleted: u32,
    pub addresses_failed: u32,
    pub line: String,
}

/// Why a guard request or check failed. Every variant except `Refused` and `Timeout` means
/// the guard no longer protects the lease.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("starting the guard: {0}")]
    Spawn(io::Error),
    #[error("the guard is dead{}", .0.map_or(String::new(), |s| format!(" ({s})")))]
    Dead(Option<ExitStatus>),
    #[error("the guard is not reading its pipe (pipe full)")]
    Stalled,
    #[error("the guard refused: {code}: {message}")]
    Refused { code: String, message: String },
    #[error("no reply from the guard within {0:?}")]
    Timeout(Duration),
    #[error("the guard fenced: {0}")]
    Fenced(String),
    #[error("guard protocol: {0}")]
    Protocol(String),
    #[error("guard pipe: {0}")]
    Io(io::Error),
    #[error(
        "the guard was built from other sources (build {found}, this program's {expected}): \
         install halcyon-guard from the same build as halcyon"
    )]
    Build { found: String, expected: String },
}

/// What [`GuardHandle::health`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// The guard fenced since the daemon last took the fences ([`GuardHandle::take_fences`]).
    Fenced(FenceSummary),
    /// Requests have waited longer than allowed for their replies.
    Stalled {
        unanswered: usize,
        oldest: Duration,
    },
    /// The guard exited or closed its output.
    Dead(Option<ExitStatus>),
}

#[derive(Debug)]
enum Reply {
    Ok(String),
    Err { code: String, message: String },
}

#[derive(Debug, Default)]
struct Inbox {
    /// Replies by ticket number, in order.
    replies: VecDeque<(u64, Reply)>,
    received: u64,
    /// Send times of requests not yet answered, oldest first.
    unanswered: VecDeque<Instant>,
    fences: Vec<FenceSummary>,
    ready: Option<ReadyInfo>,
    /// The guard closed its stdout (it exited).
    closed: bool,
    protocol_errors: Vec<String>,
}

struct Shared {
    inbox: Mutex<Inbox>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inbox> {
        self.inbox
            .lock()
            .expect("a lock was poisoned: a thread panicked while holding it")
    }

    /// The health the reader thread's inbox shows: a closed output is a dead guard (its exit
    /// status unknown here).
    fn health(&self, max_reply_delay: Duration) -> Health {
        let inbox = self.lock();
        if inbox.closed {
            return Health::Dead(None);
        }
        if let Some(fence) = inbox.fences.first() {
            return Health::Fenced(fence.clone());
        }
        let unanswered = inbox.unanswered.len();
        match inbox.unanswered.front().map(|sent| sent.elapsed()) {
            Some(oldest) if oldest > max_reply_delay => Health::Stalled { unanswered, oldest },
            _ => Health::Ok,
        }
    }

    fn take_fences(&self) -> Vec<FenceSummary> {
        std::mem::take(&mut self.lock().fences)
    }
}

/// A guard's health as its reader thread sees it ([`GuardHandle::monitor`]), for threads
/// other than the one that holds the handle: reading it never waits for the pipe or for
/// another request. A guard that exits closes its output, which the reader sees at once, so
/// a dead guard shows here as [`Health::Dead`] (without its exit status).
#[derive(Clone)]
pub struct GuardMonitor {
    shared: Arc<Shared>,
    pid: u32,
}

impl GuardMonitor {
    /// The guard's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// As [`GuardHandle::health`], from the reader thread's inbox.
    pub fn health(&self, max_reply_delay: Duration) -> Health {
        self.shared.health(max_reply_delay)
    }

    /// The fences reported since the last call, shared with [`GuardHandle::take_fences`].
    pub fn take_fences(&self) -> Vec<FenceSummary> {
        self.shared.take_fences()
    }
}

impl std::fmt::Debug for GuardMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardMonitor")
            .field("pid", &self.pid)
            .finish()
    }
}

/// The daemon's handle on its guard process.
pub struct GuardHandle {
    child: Child,
    input: Option<ChildStdin>,
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    sent: u64,
    ready: ReadyInfo,
    exit: Option<ExitStatus>,
}

impl GuardHandle {
    /// Spawns `program` (the `halcyon-guard` binary, or `halcyon` with the hidden `guard`
    /// subcommand in `args`) with `config`'s arguments appended.
    pub fn spawn_program<I, S>(
        program: impl AsRef<OsStr>,
        args: I,
        config: &GuardConfig,
    ) -> Result<GuardHandle, GuardError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(program);
        command.args(args).args(config.to_args());
        GuardHandle::spawn(command)
    }

    /// Spawns the guard from a prepared command (its stderr, environment or a pre_exec that
    /// enters a namespace are kept); stdin and stdout become the protocol pipes and the guard
    /// gets a process group of its own. Waits for `event ready`.
    pub fn spawn(mut command: Command) -> Result<GuardHandle, GuardError> {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .process_group(0);
        let mut child = command.spawn().map_err(GuardError::Spawn)?;
        let input = child.stdin.take().expect("piped stdin");
        let output = child.stdout.take().expect("piped stdout");
        set_nonblocking(&input).map_err(GuardError::Spawn)?;
        let shared = Arc::new(Shared {
            inbox: Mutex::new(Inbox::default()),
            changed: Condvar::new(),
        });
        let reader_shared = Arc::clone(&shared);
        let reader = std::thread::Builder::new()
            .name("halcyon-guard-reader".into())
            .spawn(move || read_replies(BufReader::new(output), &reader_shared))
            .map_err(GuardError::Spawn)?;
        let mut handle = GuardHandle {
            child,
            input: Some(input),
            shared,
            reader: Some(reader),
            sent: 0,
            ready: ReadyInfo {
                pid: 0,
                realtime_priority: None,
                memory_locked: false,
                netlink: false,
                build: None,
                line: String::new(),
            },
            exit: None,
        };
        let give_up = Instant::now() + READY_TIMEOUT;
        let mut inbox = handle.shared.lock();
        loop {
            if let Some(ready) = inbox.ready.clone() {
                drop(inbox);
                if ready.build.as_deref() != Some(crate::BUILD) {
                    // Dropped: its pipe closes and it exits (nothing was registered).
                    return Err(GuardError::Build {
                        found: ready.build.unwrap_or_else(|| "unknown".to_owned()),
                        expected: crate::BUILD.to_owned(),
                    });
                }
                handle.ready = ready;
                return Ok(handle);
            }
            if inbox.closed {
                drop(inbox);
                return Err(GuardError::Dead(handle.child.wait().ok()));
            }
            let now = Instant::now();
            if now >= give_up {
                drop(inbox);
                return Err(GuardError::Timeout(READY_TIMEOUT));
            }
            inbox = handle
                .shared
                .changed
                .wait_timeout(inbox, give_up - now)
                .expect("a lock was poisoned: a thread panicked while holding it")
                .0;
        }
    }

    /// The guard's process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the guard reported at start (real-time priority, locked memory, netlink).
    pub fn ready(&self) -> &ReadyInfo {
        &self.ready
    }

    /// Extends the lease to `deadline` (see [`BootTime::lease_deadline`]).
    pub fn extend(&mut self, deadline: BootTime) -> Result<Ticket, GuardError> {
        self.send(Request::Extend(deadline))
    }

    /// Puts process group `pgid` under the guard; wait for the ticket before letting the
    /// group run a failover package (see the crate docs).
    pub fn register_group(&mut self, pgid: i32) -> Result<Ticket, GuardError> {
        self.send(Request::RegisterGroup(pgid))
    }

    pub fn unregister_group(&mut self, pgid: i32) -> Result<Ticket, GuardError> {
        self.send(Request::UnregisterGroup(pgid))
    }

    /// Puts a relocatable address under the guard; register before adding it.
    pub fn register_address(&mut self, address: Address) -> Result<Ticket, GuardError> {
        self.send(Request::RegisterAddress(address))
    }

    pub fn unregister_address(&mut self, address: Address) -> Result<Ticket, GuardError> {
        self.send(Request::UnregisterAddress(address))
    }

    /// The daemon halted all its failover packages itself: the guard forgets everything and
    /// disarms.
    pub fn release(&mut self) -> Result<Ticket, GuardError> {
        self.send(Request::Release)
    }

    pub fn status(&mut self) -> Result<Ticket, GuardError> {
        self.send(Request::Status)
    }

    /// Sends one request without blocking.
    pub fn send(&mut self, request: Request) -> Result<Ticket, GuardError> {
        if self.shared.lock().closed {
            return Err(GuardError::Dead(self.exit_status()));
        }
        let Some(input) = self.input.as_mut() else {
            return Err(GuardError::Dead(None));
        };
        let line = format!("{request}\n");
        // Record the send time first: the reply may come before this call returns.
        self.shared.lock().unanswered.push_back(Instant::now());
        let result = loop {
            match input.write(line.as_bytes()) {
                Ok(written) if written == line.len() => break Ok(()),
                // Below PIPE_BUF a pipe write is all or nothing; anything else is a broken pipe.
                Ok(_) => break Err(GuardError::Protocol("short write on the guard pipe".into())),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    break Err(GuardError::Stalled);
                }
                Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                    break Err(GuardError::Dead(self.exit_status()));
                }
                Err(error) => break Err(GuardError::Io(error)),
            }
        };
        if let Err(error) = result {
            self.shared.lock().unanswered.pop_back();
            return Err(error);
        }
        self.sent += 1;
        Ok(Ticket(self.sent))
    }

    /// The reply to `ticket`, waiting up to `timeout`: Ok with the reply's text after `ok `,
    /// or [`GuardError::Refused`].
    pub fn wait(&mut self, ticket: Ticket, timeout: Duration) -> Result<String, GuardError> {
        let give_up = Instant::now() + timeout;
        let mut inbox = self.shared.lock();
        loop {
            if let Some(index) = inbox.replies.iter().position(|(n, _)| *n == ticket.0) {
                let (_, reply) = inbox.replies.remove(index).expect("found above");
                return match reply {
                    Reply::Ok(text) => Ok(text),
                    Reply::Err { code, message } => Err(GuardError::Refused { code, message }),
                };
            }
            if inbox.received >= ticket.0 {
                return Err(GuardError::Protocol(format!(
                    "the reply to request {} was dropped (not waited for in time)",
                    ticket.0
                )));
            }
            if inbox.closed {
                drop(inbox);
                return Err(GuardError::Dead(self.exit_status()));
            }
            let now = Instant::now();
            if now >= give_up {
                return Err(GuardError::Timeout(timeout));
            }
            inbox = self
                .shared
                .changed
                .wait_timeout(inbox, give_up - now)
                .expect("a lock was poisoned: a thread panicked while holding it")
                .0;
        }
    }

    /// Sends `request` and waits for its reply.
    pub fn call(&mut self, request: Request, timeout: Duration) -> Result<String, GuardError> {
        let ticket = self.send(request)?;
        self.wait(ticket, timeout)
    }

    /// Whether the guard still protects the lease: dead, then fenced, then stalled (a request
    /// unanswered for longer than `max_reply_delay`) take precedence in that order.
    pub fn health(&mut self, max_reply_delay: Duration) -> Health {
        let health = self.shared.health(max_reply_delay);
        if matches!(health, Health::Dead(_)) || self.exit_status().is_some() {
            return Health::Dead(self.exit_status());
        }
        health
    }

    /// The fences reported since the last call (each is a lost lease for the daemon).
    pub fn take_fences(&mut self) -> Vec<FenceSummary> {
        self.shared.take_fences()
    }

    /// A view of this guard's health for other threads, read without the handle (which
    /// stays with the one thread that writes the pipe).
    pub fn monitor(&self) -> GuardMonitor {
        GuardMonitor {
            shared: Arc::clone(&self.shared),
            pid: self.pid(),
        }
    }

    /// Lines from the guard that were neither replies nor known events.
    pub fn take_protocol_errors(&mut self) -> Vec<String> {
        std::mem::take(&mut self.shared.lock().protocol_errors)
    }

    /// Releases, closes the pipe and waits for the guard to exit (a clean daemon shutdown,
    /// after the daemon halted its packages).
    pub fn shutdown(mut self, timeout: Duration) -> Result<ExitStatus, GuardError> {
        let released = self.call(Request::Release, timeout);
        self.input = None;
        let status = self.wait_exit(timeout);
        released?;
        status.ok_or(GuardError::Timeout(timeout))
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let give_up = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.exit = Some(status);
                    return Some(status);
                }
                Ok(None) if Instant::now() < give_up => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                _ => return None,
            }
        }
    }

    fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }
}

impl Drop for GuardHandle {
    /// Closes the pipe: an armed guard fences (the daemon is going away) and exits. A guard
    /// that does not exit within a second is killed.
    fn drop(&mut self) {
        self.input = None;
        if self.wait_exit(DROP_WAIT).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

fn set_nonblocking(input: &ChildStdin) -> io::Result<()> {
    let fd = input.as_raw_fd();
    // SAFETY: fcntl(2) flag get/set on our own end of the pipe.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn read_replies(output: impl BufRead, shared: &Shared) {
    for line in output.lines() {
        let Ok(line) = line else { break };
        let mut inbox = shared.lock();
        if let Some(rest) = line.strip_prefix("ok") {
            let text = rest.strip_prefix(' ').unwrap_or(rest).to_string();
            push_reply(&mut inbox, Reply::Ok(text));
        } else if let Some(rest) = line.strip_prefix("err ") {
            let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
            push_reply(
                &mut inbox,
                Reply::Err {
                    code: code.to_string(),
                    message: message.to_string(),
                },
            );
        } else if let Some(rest) = line.strip_prefix("event ready ") {
            inbox.ready = Some(parse_ready(rest, &line));
        } else if let Some(rest) = line.strip_prefix("event fenced ") {
            match parse_fence(rest, &line) {
                Some(fence) => {
                    tracing::warn!(target: "halcyon_guard", "the guard fenced: {line}");
                    inbox.fences.push(fence);
                }
                None => inbox.protocol_errors.push(line),
            }
        } else {
            inbox.protocol_errors.push(line);
        }
        drop(inbox);
        shared.changed.notify_all();
    }
    shared.lock().closed = true;
    shared.changed.notify_all();
}

fn push_reply(inbox: &mut Inbox, reply: Reply) {
    inbox.received += 1;
    inbox.unanswered.pop_front();
    let number = inbox.received;
    inbox.replies.push_back((number, reply));
    if inbox.replies.len() > REPLIES_KEPT {
        inbox.replies.pop_front();
    }
}

fn field<'a>(fields: &'a str, key: &str) -> Option<&'a str> {
    fields.split(' ').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then_some(v)
    })
}

fn parse_ready(fields: &str, line: &str) -> ReadyInfo {
    let number = |key| field(fields, key).and_then(|v| v.parse::<i64>().ok());
    ReadyInfo {
        pid: number("pid").unwrap_or(0) as u32,
        realtime_priority: number("realtime").filter(|p| *p > 0).map(|p| p as i32),
        memory_locked: field(fields, "mlock") == Some("on"),
        netlink: field(fields, "netlink") == Some("on"),
        build: field(fields, "build").map(str::to_owned),
        line: line.to_string(),
    }
}

fn parse_fence(fields: &str, line: &str) -> Option<FenceSummary> {
    let time = |key| field(fields, key)?.parse().ok().map(BootTime::from_nanos);
    let count = |key| field(fields, key)?.parse::<u32>().ok();
    Some(FenceSummary {
        reason: field(fields, "reason")?.to_string(),
        deadline: time("deadline")?,
        fire_at: time("fire_at")?,
        started: time("started")?,
        finished: time("finished")?,
        groups_killed: count("groups_killed")?,
        groups_failed: count("groups_failed")?,
        addresses_deleted: count("addresses_deleted")?,
        addresses_failed: count("addresses_failed")?,
        line: line.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_are_parsed() {
        let line = "event fenced reason=expired deadline=100 fire_at=80 started=81 finished=82 late_ns=1000000 groups_killed=2 groups_gone=0 groups_failed=0 addresses_deleted=1 addresses_absent=0 addresses_failed=0";
        let fence = parse_fence(line.strip_prefix("event fenced ").unwrap(), line).unwrap();
        assert_eq!(fence.reason, "expired");
        assert_eq!(fence.deadline, BootTime::from_nanos(100));
        assert_eq!(fence.started, BootTime::from_nanos(81));
        assert_eq!((fence.groups_killed, fence.addresses_deleted), (2, 1));
        let ready = parse_ready(
            "pid=7 pgid=7 realtime=20 mlock=off netlink=on lead_ns=1 tick_ns=2",
            "",
        );
        assert_eq!(ready.pid, 7);
        assert_eq!(ready.realtime_priority, Some(20));
        assert!(!ready.memory_locked && ready.netlink);
        assert_eq!(parse_ready("pid=7 realtime=0", "").realtime_priority, None);
    }
}
