//! The scale run: a large simulated cluster (64 nodes, 1000 packages by default), one crash
//! of a node that runs packages once everything runs; reports the simulated failover time and
//! the real time the simulation took.

use std::fmt;
use std::time::Duration;

use crate::faults::{Fault, Kind};
use crate::run::Options;

/// When the node crashes by default (every package should run well before).
pub const CRASH_AT: Duration = Duration::from_secs(8);

pub struct Report {
    pub crash_at: Duration,
    pub nodes: u32,
    pub packages: usize,
    pub all_running_at: Option<Duration>,
    pub takeover: Option<Duration>,
    pub violations: Vec<String>,
    pub simulated: Duration,
    pub real: Duration,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = |d: Option<Duration>| {
            d.map_or("never".to_string(), |d| format!("{:.3} s", d.as_secs_f64()))
        };
        writeln!(
            f,
            "scale run: {} nodes, {} packages",
            self.nodes, self.packages
        )?;
        writeln!(
            f,
            "  every package running after {} (simulated)",
            seconds(self.all_running_at)
        )?;
        writeln!(
            f,
            "  crash of n1 at {:.0} s: its packages ran elsewhere after {} (simulated)",
            self.crash_at.as_secs_f64(),
            seconds(self.takeover)
        )?;
        writeln!(
            f,
            "  invariants: {}",
            if self.violations.is_empty() {
                "all held".to_string()
            } else {
                self.violations.join("; ")
            }
        )?;
        write!(
            f,
            "  {:.0} s simulated in {:.1} s of real time ({:.2}x real time)",
            self.simulated.as_secs_f64(),
            self.real.as_secs_f64(),
            self.simulated.as_secs_f64() / self.real.as_secs_f64().max(1e-9)
        )
    }
}

/// `nodes` nodes, `packages` packages; node 1 loses power at `crash_at`, for 10 s; the run
/// ends 12 s later.
pub fn run(nodes: u32, packages: usize, seed: u64, crash_at: Duration) -> anyhow::Result<Report> {
    let options = Options {
        seed,
        nodes,
        packages,
        fault_span: crash_at,
        settle: Duration::from_secs(12),
        only: None,
        script: Some(vec![Fault {
            at: crash_at,
            kind: Kind::Crash,
            nodes: vec![1],
            lasts: Duration::from_secs(10),
        }]),
        drift: false,
        apply: false,
        grow: false,
        shrink: false,
        fast: false,
        fencing: false,
        auto_shrink: false,
        wipe: false,
        hang: false,
        disk_errors: false,
        witness: false,
    };
    let outcome = crate::run::run(&options)?;
    Ok(Report {
        crash_at,
        nodes,
        packages,
        all_running_at: outcome.all_running_at,
        takeover: outcome.takeovers.first().copied(),
        violations: outcome.violations,
        simulated: outcome.simulated,
        real: outcome.real,
    })
}
