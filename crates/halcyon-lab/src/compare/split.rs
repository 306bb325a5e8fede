//! Split brain, side by side (issue 21, item 4): after a system's failover runs, the two
//! faults in which a cluster without a quorum ends up with its address on two hosts. The
//! holder is cut off from the other hosts for `hold` while the client still reaches every
//! host ([`fault::partition`]), then the partition heals; and the holder's cluster manager
//! is stopped (SIGSTOP) for `hold`, then continued. The checker watches the service address
//! on every host throughout and for [`AFTER`] more; the figure is the total time it was on
//! two hosts at once.
//!
//! What a pause stops is each system's own choice ([`super::System::pause_targets`]): for
//! Halcyon its daemon (the guard, a process of its own made to act when the daemon cannot,
//! runs on, as in the campaign's pause fault), for the others every process of the manager.

use std::fmt;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{PROBE_LIVE_TIMEOUT, STABLE_TIMEOUT, System, manager_processes, start_checker};
use crate::fault;

/// How long the checker keeps watching after the fault ended (the heal, the continue).
pub const AFTER: Duration = Duration::from_secs(3);

/// A fault that splits a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitFault {
    /// The holder cut off from the other hosts (not from the client).
    Partition,
    /// The holder's cluster manager stopped.
    Pause,
}

/// One split fault on one system.
#[derive(Clone, Debug)]
pub struct SplitResult {
    pub fault: SplitFault,
    /// The host that held the package when the fault began.
    pub holder: usize,
    /// How long the fault lasted.
    pub hold: Duration,
    /// What a pause stopped ("the daemon", "every process of the manager").
    pub stopped: Option<String>,
    /// Total time the service address was on two hosts at once.
    pub on_two_hosts: Duration,
    /// Separate intervals of it.
    pub intervals: usize,
}

impl fmt::Display for SplitResult {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hold = self.hold.as_secs_f64();
        match (&self.fault, &self.stopped) {
            (SplitFault::Partition, _) => write!(
                formatter,
                "holder h{} cut off from the other hosts for {hold:.0} s (the client reaches every host)",
                self.holder
            )?,
            (SplitFault::Pause, stopped) => write!(
                formatter,
                "{} on the holder h{} stopped (SIGSTOP) for {hold:.0} s",
                stopped.as_deref().unwrap_or("the manager"),
                self.holder
            )?,
        }
        write!(
            formatter,
            ": service address on two hosts for {:.3} s ({} interval{})",
            self.on_two_hosts.as_secs_f64(),
            self.intervals,
            if self.intervals == 1 { "" } else { "s" }
        )
    }
}

/// Both split faults, one after the other, each from a stable cluster. An error ends the
/// measurement of this system (the caller records it).
pub(super) fn measure(
    system: &mut dyn System,
    hold: Duration,
    name: &str,
    progress: &mut dyn Write,
) -> Result<Vec<SplitResult>> {
    let mut results = Vec::new();
    for fault in [SplitFault::Partition, SplitFault::Pause] {
        let result =
            one(system, fault, hold).with_context(|| format!("split brain by {fault:?}"))?;
        let _ = writeln!(progress, "{name}: {result}");
        results.push(result);
    }
    Ok(results)
}

fn one(system: &mut dyn System, fault: SplitFault, hold: Duration) -> Result<SplitResult> {
    let holder = system.wait_stable(Instant::now() + STABLE_TIMEOUT)?;
    let checker = start_checker(system.lab())?;
    let live = Instant::now() + PROBE_LIVE_TIMEOUT;
    while checker.report().probe_answers.is_empty() {
        if Instant::now() >= live {
            bail!("the probe never got an answer before the fault");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stopped = None;
    match fault {
        SplitFault::Partition => {
            let others: Vec<usize> = system.lab().hosts().filter(|&h| h != holder).collect();
            fault::partition(system.lab(), &[vec![holder], others], &[])?;
            std::thread::sleep(hold);
            fault::heal(system.lab())?;
        }
        SplitFault::Pause => {
            let (pids, what) = match system.pause_targets(holder) {
                Some(targets) => targets,
                None => (
                    manager_processes(system, holder),
                    "every process of the manager".to_owned(),
                ),
            };
            if pids.is_empty() {
                bail!("no process of the manager on h{holder} to stop");
            }
            signal_all(&pids, libc::SIGSTOP);
            std::thread::sleep(hold);
            signal_all(&pids, libc::SIGCONT);
            stopped = Some(what);
        }
    }
    std::thread::sleep(AFTER);
    let report = checker.stop();
    let on_two_hosts = report.double_activations.iter().map(|i| i.length).sum();
    Ok(SplitResult {
        fault,
        holder,
        hold,
        stopped,
        on_two_hosts,
        intervals: report.double_activations.len(),
    })
}

/// Sends `signal` to each of `pids`: processes of a lab host this program started (found in
/// the host's namespace).
fn signal_all(pids: &[u32], signal: i32) {
    for &pid in pids {
        let Ok(pid) = i32::try_from(pid) else {
            continue;
        };
        assert!(pid > 1, "refusing to signal PID {pid}");
        // SAFETY: kill(2) of a process of the lab's own host namespace, no memory involved.
        unsafe { libc::kill(pid, signal) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_say_what_was_done_and_for_how_long() {
        let partition = SplitResult {
            fault: SplitFault::Partition,
            holder: 2,
            hold: Duration::from_secs(10),
            stopped: None,
            on_two_hosts: Duration::from_millis(10_250),
            intervals: 1,
        };
        assert_eq!(
            partition.to_string(),
            "holder h2 cut off from the other hosts for 10 s (the client reaches every host): \
             service address on two hosts for 10.250 s (1 interval)"
        );
        let pause = SplitResult {
            fault: SplitFault::Pause,
            stopped: Some("the daemon".into()),
            on_two_hosts: Duration::ZERO,
            intervals: 0,
            ..partition
        };
        assert_eq!(
            pause.to_string(),
            "the daemon on the holder h2 stopped (SIGSTOP) for 10 s: service address on two \
             hosts for 0.000 s (0 intervals)"
        );
    }
}
