//! The daemon's runtime runs above the machine's ordinary work (issue 15, finding 1 under
//! load; issue 21, CPU saturation).
//!
//! Consensus, lease renewals and grants, the coordinator and the executor share the node's
//! runtime. On a machine whose cores are saturated by other work at normal priority, they
//! got a share of the CPU like any process; an election then took longer than the lease
//! outlasts (the lease covers the longest election with 50 ms to spare), and healthy nodes
//! lost their leases when the coordinator died. The heartbeat thread and the guard already
//! run at real-time priority; the runtime's threads now run at nice [`RUNTIME_NICE`]:
//! the scheduler gives them about nine times the weight of a normal process, so they run
//! promptly when they have work, yet, unlike real-time priority, a busy daemon cannot
//! starve the machine (its services, an administrator's shell).
//!
//! Each raised thread also sets `SCHED_RESET_ON_FORK`: what it creates — a service, a
//! script, the guard, the API's thread — starts at normal priority (a negative nice value
//! is not inherited), so packages run exactly as they would without Halcyon.
//!
//! Raising needs `CAP_SYS_NICE` (root) or an `RLIMIT_NICE` that allows it; without it the
//! daemon says so once and runs at normal priority.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

/// The nice value of the daemon's runtime threads (normal work runs at 0).
pub const RUNTIME_NICE: i32 = -10;

/// Whether the refusal was already reported (one line, not one per thread).
static REFUSAL_REPORTED: AtomicBool = AtomicBool::new(false);

/// Raises the calling thread to [`RUNTIME_NICE`] with `SCHED_RESET_ON_FORK`; reports a
/// refusal once. Meant for `tokio::runtime::Builder::on_thread_start` and the main thread.
pub fn raise_this_thread() {
    if let Err(e) = set_this_thread(RUNTIME_NICE)
        && !REFUSAL_REPORTED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(
            "could not raise the daemon's runtime to nice {RUNTIME_NICE}: {e}; consensus and leases run at normal priority and a saturated machine can delay them (needs CAP_SYS_NICE or RLIMIT_NICE)"
        );
    }
}

/// Sets the calling thread's policy to `SCHED_OTHER | SCHED_RESET_ON_FORK` and its nice
/// value to `nice`.
fn set_this_thread(nice: i32) -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param for SCHED_OTHER.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER | libc::SCHED_RESET_ON_FORK, &param) }
        != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    // On Linux a thread id names just that thread for PRIO_PROCESS.
    // SAFETY: plain integer arguments.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's nice value.
pub fn this_thread_nice() -> io::Result<i32> {
    // SAFETY: as above.
    let tid = unsafe { libc::gettid() };
    // getpriority returns -1 both for nice -1 and for an error: errno tells them apart.
    // SAFETY: errno is thread-local; plain integer arguments.
    unsafe { *libc::__errno_location() = 0 };
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
    match io::Error::last_os_error().raw_os_error() {
        Some(0) | None => Ok(nice),
        Some(_) => Err(io::Error::last_os_error()),
    }
}

/// A multi-threaded runtime whose threads (workers and blocking threads) run raised; the
/// daemon's and the witness's. The caller raises its own thread too if it drives the
/// runtime (`block_on` runs the main future there).
pub fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("halcyon-node")
        .on_thread_start(raise_this_thread)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        // SAFETY: geteuid cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    /// The runtime's threads run at the raised nice value; a thread and a process they
    /// start do not inherit it.
    #[test]
    fn runtime_threads_are_raised_and_what_they_start_is_not() {
        if !is_root() {
            eprintln!("skipped: raising priority needs root (CAP_SYS_NICE)");
            return;
        }
        let runtime = runtime().unwrap();
        let (worker, thread, process) = runtime.block_on(async {
            tokio::spawn(async {
                let worker = this_thread_nice().unwrap();
                let thread = std::thread::spawn(|| this_thread_nice().unwrap())
                    .join()
                    .unwrap();
                let output = std::process::Command::new("sh")
                    .args(["-c", "cut -d' ' -f19 /proc/self/stat"])
                    .output()
                    .unwrap();
                let process: i32 = String::from_utf8(output.stdout)
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                (worker, thread, process)
            })
            .await
            .unwrap()
        });
        assert_eq!(worker, RUNTIME_NICE, "a runtime worker's nice value");
        assert_eq!(thread, 0, "a thread a worker starts");
        assert_eq!(process, 0, "a process a worker starts");
        let blocking = runtime
            .block_on(runtime.spawn_blocking(|| this_thread_nice().unwrap()))
            .unwrap();
        assert_eq!(blocking, RUNTIME_NICE, "a blocking thread's nice value");
    }
}
