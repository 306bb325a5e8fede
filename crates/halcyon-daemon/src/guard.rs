//! The daemon's side of the lease guard (`halcyon-guard`, ARCHITECTURE.md "Timing and safety").
//!
//! The guard is a separate process (the small `halcyon-guard` binary beside this executable,
//! else `halcyon guard` from this executable: [`spawn`]) that kills
//! the registered process groups and deletes the registered addresses when the lease deadline
//! passes unextended or the daemon's pipe closes, so a paused, hung or killed daemon cannot
//! keep a failover package alive past its lease. What the daemon does (halcyon-guard's
//! integration list):
//! - spawns it at start (no failover package starts before `event ready`) and respawns a dead
//!   or long-stalled guard from the lease loop;
//! - on every grant sends `extend(t_boot + lease)`, `t_boot` read on CLOCK_BOOTTIME before the
//!   renewal's `t_send`;
//! - registers an address before adding it, and a service's process group right after the
//!   spawn while the service waits at its start gate ([`Gate`]): the service's shell blocks
//!   reading a FIFO that the daemon writes only after the guard's `ok`;
//! - unregisters what it stops; `release`s after halting everything for lack of a lease;
//! - treats a dead, stalled or fenced guard as a lost lease ([`Guard::lost`]);
//! - on a clean stop: halts the packages, then shuts the guard down.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use halcyon_guard::{
    Address, BootTime, FenceSummary, GuardConfig, GuardHandle, GuardMonitor, Health,
};

use crate::blocking;
use crate::platform::LeaseGuard;

/// Longest wait for the guard's answer to a registration.
const REPLY_TIMEOUT: Duration = Duration::from_millis(500);
/// Why every call fails once the guard client thread is gone (only a panic ends it).
const GONE: &str = "the lease guard's client thread is gone";
/// A guard that has not answered for this long is replaced.
const STALL_RESPAWN: Duration = Duration::from_secs(2);

/// What the guard client thread owns: the guard process's handle (none after a failed
/// respawn or the shutdown) and how to spawn another.
struct Owner {
    handle: Option<GuardHandle>,
    program: PathBuf,
    config: GuardConfig,
    /// The current handle's monitor, replaced with the handle.
    monitor: Watched,
}

/// The monitor of the guard process the client thread holds (none when it holds none). The
/// lock is held only to clone or replace it, never across a wait.
type Watched = Arc<Mutex<Option<GuardMonitor>>>;

impl Owner {
    /// Holds `handle` (or none) from now on, and says so to the monitor's readers.
    fn hold(&mut self, handle: Option<GuardHandle>) {
        *self.monitor.lock().unwrap_or_else(|p| p.into_inner()) =
            handle.as_ref().map(GuardHandle::monitor);
        self.handle = handle;
    }
}

/// A piece of work for the guard client thread, run with exclusive use of the handle.
type Job = Box<dyn FnOnce(&mut Owner) + Send>;

/// The daemon's handle on its guard process. The process's pipe is owned by one thread
/// (`guard-client`), which runs the callers' requests one at a time in the order sent: the
/// lease task's extensions and the supervisors' registrations never interleave on the pipe.
/// The guard's health (dead, fenced, stalled) is read from its handle's monitor
/// ([`GuardMonitor`]) in the caller's thread: the lease checks that ask it every renewal
/// neither wait behind a registration nor hand the runtime's worker over to another thread
/// (`block_in_place`), which cost an idle node about four thread switches per check.
pub struct Guard {
    jobs: mpsc::Sender<Job>,
    monitor: Watched,
    /// A request unanswered for longer than this makes the guard stalled (a lost lease).
    max_reply_delay: Duration,
}

impl Guard {
    /// Spawns the guard ([`spawn`]), waits for `event ready`, and starts the thread that owns
    /// its pipe.
    pub fn start(max_reply_delay: Duration) -> anyhow::Result<Guard> {
        let program = std::env::current_exe()?;
        let config = GuardConfig::default();
        let handle = spawn(&program, &config)?;
        let monitor: Watched = Arc::new(Mutex::new(Some(handle.monitor())));
        let mut owner = Owner {
            handle: Some(handle),
            program,
            config,
            monitor: Arc::clone(&monitor),
        };
        let (jobs, inbox) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("guard-client".into())
            .spawn(move || {
                // Ends when the daemon drops its `Guard`; dropping the handle then closes the
                // pipe (an armed guard fences) as a dying daemon's would.
                for job in inbox {
                    job(&mut owner);
                }
            })?;
        Ok(Guard {
            jobs,
            monitor,
            max_reply_delay,
        })
    }

    /// The monitor of the guard process now held; `None` when there is none.
    fn monitor(&self) -> Option<GuardMonitor> {
        self.monitor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs `f` on the guard client thread and waits for its result; `None` if the thread
    /// is gone (it ends only by a panic, which the caller treats as a lost guard).
    fn ask<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Owner) -> T + Send + 'static,
    ) -> Option<T> {
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |owner| {
            let _ = reply.send(f(owner));
        });
        self.jobs.send(job).ok()?;
        blocking(|| answer.recv().ok())
    }

    /// Sends `f` to the guard client thread without waiting.
    fn tell(&self, f: impl FnOnce(&mut Owner) + Send + 'static) {
        if self.jobs.send(Box::new(f)).is_err() {
            tracing::error!("{GONE}");
        }
    }

    fn call(
        &self,
        what: String,
        send: impl FnOnce(&mut GuardHandle) -> Result<halcyon_guard::Ticket, halcyon_guard::GuardError>
        + Send
        + 'static,
    ) -> Result<(), String> {
        self.ask(move |owner| {
            let h = owner.handle.as_mut().ok_or("no guard process")?;
            let ticket = send(h).map_err(|e| format!("lease guard: {what}: {e}"))?;
            h.wait(ticket, REPLY_TIMEOUT)
                .map(|_| ())
                .map_err(|e| format!("lease guard: {what}: {e}"))
        })
        .unwrap_or_else(|| Err(GONE.into()))
    }
}

impl LeaseGuard for Guard {
    fn clock(&self) -> BootTime {
        BootTime::now()
    }

    fn pid(&self) -> Option<u32> {
        self.monitor().map(|m| m.pid())
    }

    /// `None` while the guard protects the lease; otherwise why not (dead, stalled, fenced).
    fn lost(&self) -> Option<String> {
        let Some(monitor) = self.monitor() else {
            return Some("no guard process".to_string());
        };
        match monitor.health(self.max_reply_delay) {
            Health::Ok => None,
            Health::Fenced(f) => Some(format!("the guard fenced: {}", f.line)),
            Health::Stalled { unanswered, oldest } => Some(format!(
                "the guard is stalled ({unanswered} requests unanswered, oldest {oldest:?})"
            )),
            Health::Dead(status) => Some(format!("the guard is dead ({status:?})")),
        }
    }

    /// Whether the guard reported a fence not yet taken.
    fn fenced(&self) -> bool {
        self.monitor()
            .is_some_and(|m| matches!(m.health(Duration::MAX), Health::Fenced(_)))
    }

    /// Takes the fences reported since the last call.
    fn take_fences(&self) -> Vec<FenceSummary> {
        self.monitor().map(|m| m.take_fences()).unwrap_or_default()
    }

    /// Replaces a dead guard, or one stalled for [`STALL_RESPAWN`]. True when it did. The
    /// client thread is asked only when the monitor shows one of those (it looks again).
    fn respawn_if_needed(&self) -> bool {
        let healthy = self
            .monitor()
            .is_some_and(|m| matches!(m.health(STALL_RESPAWN), Health::Ok | Health::Fenced(_)));
        if healthy {
            return false;
        }
        self.ask(|o| {
            let needed = match o.handle.as_mut() {
                None => true,
                Some(h) => match h.health(STALL_RESPAWN) {
                    Health::Dead(_) | Health::Stalled { .. } => true,
                    Health::Ok | Health::Fenced(_) => false,
                },
            };
            if !needed {
                return false;
            }
            // Dropping closes the pipe (an armed guard fences) and kills it after a second.
            o.hold(None);
            match spawn(&o.program, &o.config) {
                Ok(h) => {
                    tracing::warn!(pid = h.pid(), "lease guard respawned");
                    o.hold(Some(h));
                    true
                }
                Err(e) => {
                    tracing::error!("cannot respawn the lease guard: {e}");
                    false
                }
            }
        })
        .unwrap_or(false)
    }

    /// Extends the guard's deadline (no wait: a refusal or silence shows in [`Guard::lost`]).
    fn extend(&self, deadline: BootTime) {
        self.tell(move |o| {
            if let Some(h) = o.handle.as_mut()
                && let Err(e) = h.extend(deadline)
            {
                tracing::warn!("lease guard: extend: {e}");
            }
        });
    }

    fn register_group(&self, pgid: i32) -> Result<(), String> {
        self.call(format!("register_group {pgid}"), move |h| {
            h.register_group(pgid)
        })
    }

    fn register_address(&self, address: Address) -> Result<(), String> {
        self.call(format!("register_address {address}"), move |h| {
            h.register_address(address)
        })
    }

    fn unregister_group(&self, pgid: i32) {
        self.tell(move |o| {
            if let Some(h) = o.handle.as_mut() {
                let _ = h.unregister_group(pgid);
            }
        });
    }

    fn unregister_address(&self, address: Address) {
        self.tell(move |o| {
            if let Some(h) = o.handle.as_mut() {
                let _ = h.unregister_address(address);
            }
        });
    }

    /// Everything was halted for lack of a lease: the guard forgets and disarms.
    fn release(&self) {
        self.tell(|o| {
            if let Some(h) = o.handle.as_mut() {
                let _ = h.release();
            }
        });
    }

    /// Clean stop (after halting every package): release, close, wait for the exit.
    fn shutdown(&self) {
        self.ask(|o| {
            if let Some(h) = o.handle.take() {
                o.hold(None);
                let _ = h.shutdown(Duration::from_secs(2));
            }
        });
    }
}

/// The name of the guard's own binary, looked for beside the daemon's executable.
pub const GUARD_BINARY: &str = "halcyon-guard";

/// Spawns the guard for the daemon running from `daemon` (its executable): `halcyon-guard`
/// beside it when there is one, else the daemon's own hidden `guard` subcommand. The guard
/// locks its memory so that a fence never waits for a page-in; locked, the daemon's whole
/// executable stays resident in the guard (about 17 MB stripped, more unstripped), the small
/// binary's about 1 MB. A `halcyon-guard` that cannot be used (built from other sources than
/// this daemon, not executable) is said in the log and the subcommand is used instead.
fn spawn(daemon: &Path, config: &GuardConfig) -> Result<GuardHandle, halcyon_guard::GuardError> {
    let beside = daemon.with_file_name(GUARD_BINARY);
    let no_args: [&str; 0] = [];
    let handle = match beside
        .is_file()
        .then(|| GuardHandle::spawn_program(&beside, no_args, config))
    {
        Some(Ok(handle)) => handle,
        Some(Err(e)) => {
            tracing::warn!(
                "{} cannot be used ({e}): running the lease guard as `{} guard`, which keeps \
                 this whole executable in locked memory",
                beside.display(),
                daemon.display()
            );
            GuardHandle::spawn_program(daemon, ["guard"], config)?
        }
        None => GuardHandle::spawn_program(daemon, ["guard"], config)?,
    };
    tracing::info!(pid = handle.pid(), ready = %handle.ready().line, "lease guard started");
    Ok(handle)
}

/// A service's start gate: a FIFO its shell reads one line from before running the service's
/// command; the daemon writes the line only after the guard registered the service's process
/// group (`pre_exec` cannot wait for the guard). The daemon holds the FIFO open read-write
/// (non-blocking), so the shell's open never blocks and a token stays buffered until read.
pub struct Gate {
    path: PathBuf,
    fifo: File,
}

impl Gate {
    /// Creates (or reuses) the FIFO at `path`.
    pub fn create(path: &Path) -> std::io::Result<Gate> {
        let _ = std::fs::remove_file(path);
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        // SAFETY: mkfifo(3) with a valid NUL-terminated path.
        if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fifo = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        Ok(Gate {
            path: path.to_owned(),
            fifo,
        })
    }

    /// The service command behind the gate.
    pub fn wrap(&self, command: &str) -> String {
        let quoted = self.path.display().to_string().replace('\'', r"'\''");
        format!("read halcyon_gate < '{quoted}' || exit 125\n{command}")
    }

    /// Drops a token nobody read (a service stopped before its gate opened), so that the next
    /// start waits for its own registration.
    pub fn drain(&mut self) {
        let mut buf = [0u8; 64];
        for _ in 0..64 {
            match self.fifo.read(&mut buf) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
    }

    /// Lets the service run.
    pub fn open(&mut self) -> std::io::Result<()> {
        self.fifo.write_all(b"go\n")
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
