//! The daemon's side of the lease guard (`halcyon-guard`, ARCHITECTURE.md "Timing and safety").
//!
//! The guard is a separate process (`halcyon guard`, spawned from this executable) that kills
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
use std::sync::Mutex;
use std::time::Duration;

use halcyon_guard::{Address, BootTime, FenceSummary, GuardConfig, GuardHandle, Health};

use crate::platform::LeaseGuard;

/// Longest wait for the guard's answer to a registration.
const REPLY_TIMEOUT: Duration = Duration::from_millis(500);
/// A guard that has not answered for this long is replaced.
const STALL_RESPAWN: Duration = Duration::from_secs(2);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().expect(crate::POISONED)
}

/// Runs a blocking guard call without stalling the async runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The daemon's handle on its guard process.
pub struct Guard {
    handle: Mutex<Option<GuardHandle>>,
    program: PathBuf,
    config: GuardConfig,
    /// A request unanswered for longer than this makes the guard stalled (a lost lease).
    max_reply_delay: Duration,
}

impl Guard {
    /// Spawns `halcyon guard` from the running executable and waits for `event ready`.
    pub fn start(max_reply_delay: Duration) -> anyhow::Result<Guard> {
        let program = std::env::current_exe()?;
        let config = GuardConfig::default();
        let handle = spawn(&program, &config)?;
        Ok(Guard {
            handle: Mutex::new(Some(handle)),
            program,
            config,
            max_reply_delay,
        })
    }

    fn call(
        &self,
        what: &str,
        send: impl FnOnce(&mut GuardHandle) -> Result<halcyon_guard::Ticket, halcyon_guard::GuardError>,
    ) -> Result<(), String> {
        blocking(|| {
            let mut handle = lock(&self.handle);
            let h = handle.as_mut().ok_or("no guard process")?;
            let ticket = send(h).map_err(|e| format!("lease guard: {what}: {e}"))?;
            h.wait(ticket, REPLY_TIMEOUT)
                .map(|_| ())
                .map_err(|e| format!("lease guard: {what}: {e}"))
        })
    }
}

impl LeaseGuard for Guard {
    fn clock(&self) -> BootTime {
        BootTime::now()
    }

    fn pid(&self) -> Option<u32> {
        lock(&self.handle).as_ref().map(|h| h.pid())
    }

    /// `None` while the guard protects the lease; otherwise why not (dead, stalled, fenced).
    fn lost(&self) -> Option<String> {
        let mut handle = lock(&self.handle);
        let Some(h) = handle.as_mut() else {
            return Some("no guard process".into());
        };
        match h.health(self.max_reply_delay) {
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
        lock(&self.handle)
            .as_mut()
            .is_some_and(|h| matches!(h.health(Duration::MAX), Health::Fenced(_)))
    }

    /// Takes the fences reported since the last call.
    fn take_fences(&self) -> Vec<FenceSummary> {
        lock(&self.handle)
            .as_mut()
            .map(|h| h.take_fences())
            .unwrap_or_default()
    }

    /// Replaces a dead guard, or one stalled for [`STALL_RESPAWN`]. True when it did.
    fn respawn_if_needed(&self) -> bool {
        let needed = match lock(&self.handle).as_mut() {
            None => true,
            Some(h) => match h.health(STALL_RESPAWN) {
                Health::Dead(_) | Health::Stalled { .. } => true,
                Health::Ok | Health::Fenced(_) => false,
            },
        };
        if !needed {
            return false;
        }
        let old = lock(&self.handle).take();
        blocking(|| {
            // Dropping closes the pipe (an armed guard fences) and kills it after a second.
            drop(old);
            match spawn(&self.program, &self.config) {
                Ok(h) => {
                    tracing::warn!(pid = h.pid(), "lease guard respawned");
                    *lock(&self.handle) = Some(h);
                    true
                }
                Err(e) => {
                    tracing::error!("cannot respawn the lease guard: {e}");
                    false
                }
            }
        })
    }

    /// Extends the guard's deadline (no wait: a refusal or silence shows in [`Guard::lost`]).
    fn extend(&self, deadline: BootTime) {
        if let Some(h) = lock(&self.handle).as_mut()
            && let Err(e) = h.extend(deadline)
        {
            tracing::warn!("lease guard: extend: {e}");
        }
    }

    fn register_group(&self, pgid: i32) -> Result<(), String> {
        self.call(&format!("register_group {pgid}"), |h| {
            h.register_group(pgid)
        })
    }

    fn register_address(&self, address: Address) -> Result<(), String> {
        self.call(&format!("register_address {address}"), |h| {
            h.register_address(address)
        })
    }

    fn unregister_group(&self, pgid: i32) {
        if let Some(h) = lock(&self.handle).as_mut() {
            let _ = h.unregister_group(pgid);
        }
    }

    fn unregister_address(&self, address: Address) {
        if let Some(h) = lock(&self.handle).as_mut() {
            let _ = h.unregister_address(address);
        }
    }

    /// Everything was halted for lack of a lease: the guard forgets and disarms.
    fn release(&self) {
        if let Some(h) = lock(&self.handle).as_mut() {
            let _ = h.release();
        }
    }

    /// Clean stop (after halting every package): release, close, wait for the exit.
    fn shutdown(&self) {
        if let Some(h) = lock(&self.handle).take() {
            let _ = blocking(|| h.shutdown(Duration::from_secs(2)));
        }
    }
}

fn spawn(program: &Path, config: &GuardConfig) -> Result<GuardHandle, halcyon_guard::GuardError> {
    let handle = GuardHandle::spawn_program(program, ["guard"], config)?;
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
