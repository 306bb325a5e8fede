//! Ctrl-C and SIGTERM: a flag that every wait loop checks, so that the benchmark unwinds
//! through its cleanup (the cluster guards kill what they started) instead of dying mid-run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs the handler for SIGINT and SIGTERM.
pub fn install() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(signal, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// An error once the user asked to stop.
pub fn check() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        anyhow::bail!("interrupted");
    }
    Ok(())
}

/// Sleeps until `until` in short slices, returning early with an error when interrupted.
pub fn sleep_until(until: Instant) -> anyhow::Result<()> {
    const SLICE: Duration = Duration::from_millis(50);
    loop {
        check()?;
        let now = Instant::now();
        if now >= until {
            return Ok(());
        }
        std::thread::sleep((until - now).min(SLICE));
    }
}

pub fn sleep(duration: Duration) -> anyhow::Result<()> {
    sleep_until(Instant::now() + duration)
}
