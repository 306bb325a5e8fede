//! Other work saturating the machine's cores: busy threads at normal priority, as a
//! compiler or a batch job would be (issue 21: "both cores saturated by other work at
//! normal priority"; issue 15: collateral restarts under load).
//!
//! The threads belong to this process, so they end with it whatever happens; dropping
//! [`CpuLoad`] stops and joins them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// Most busy threads one load may start.
pub const THREADS_MAX: usize = 64;

/// `threads` busy loops at normal priority until dropped.
pub struct CpuLoad {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl CpuLoad {
    /// Starts `threads` busy threads (at most [`THREADS_MAX`]). Each sets itself to
    /// `SCHED_OTHER` at nice 0 first: a thread inherits its creator's policy, and parts of
    /// the lab run at real-time priority.
    pub fn start(threads: usize) -> std::io::Result<CpuLoad> {
        if threads > THREADS_MAX {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("at most {THREADS_MAX} busy threads (asked for {threads})"),
            ));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut load = CpuLoad {
            stop: Arc::clone(&stop),
            threads: Vec::new(),
        };
        for index in 0..threads {
            let stop = Arc::clone(&stop);
            let handle = std::thread::Builder::new()
                .name(format!("cpu-load-{index}"))
                .spawn(move || {
                    normal_priority();
                    let mut x: u64 = index as u64;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..10_000 {
                            x = std::hint::black_box(x.wrapping_mul(6364136223846793005) + 1);
                        }
                    }
                })?;
            load.threads.push(handle);
        }
        Ok(load)
    }

    /// How many busy threads run.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

/// Puts the calling thread at `SCHED_OTHER`, nice 0 (lowering needs no privilege).
fn normal_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is valid for SCHED_OTHER.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
    // SAFETY: plain integer arguments; a thread id names that thread for PRIO_PROCESS.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 0) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// CPU time this process has used (every thread), in seconds.
    fn cpu_seconds() -> f64 {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
        // SAFETY: getrusage fills the struct it is given.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
        // SAFETY: filled above.
        let usage = unsafe { usage.assume_init() };
        usage.ru_utime.tv_sec as f64 + usage.ru_utime.tv_usec as f64 / 1e6
    }

    /// The threads burn CPU while the load lives and stop when it is dropped (waits are
    /// bounded and generous: the machine may be busy with other work).
    #[test]
    fn busy_threads_use_the_cpu_and_stop_when_dropped() {
        let before = cpu_seconds();
        let load = CpuLoad::start(2).unwrap();
        assert_eq!(load.threads(), 2);
        let deadline = Instant::now() + Duration::from_secs(20);
        while cpu_seconds() - before < 0.2 {
            assert!(
                Instant::now() < deadline,
                "two busy threads used under 0.2 s of CPU in 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(load);
        let after_drop = cpu_seconds();
        std::thread::sleep(Duration::from_millis(300));
        let since = cpu_seconds() - after_drop;
        assert!(
            since < 0.1,
            "{since:.3} s of CPU used after the load was dropped"
        );
        assert!(CpuLoad::start(THREADS_MAX + 1).is_err());
    }
}
