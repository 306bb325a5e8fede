//! Availability second (SPEC 12: "packages restarted on nodes a fault did not touch: 0"): a
//! package stops only on a node a fault touched, or where the package itself failed. Checked
//! at the end of a run from the activity ledger and the schedule.
//!
//! The schedule's faults come one after another, each healed before the next begins, so
//! each stop has the faults whose window holds it: from the fault's start until
//! [`AFTER`] past its heal (a crashed node boots and rejoins, a paused daemon's held
//! messages arrive at once, an election follows). A stop is justified when one of them
//!
//! - struck the stop's node (whatever the kind: its own crash, pause, partition, ...);
//! - made the package's own service exit (a local restart, or a failover once its
//!   restarts are spent); a full disk makes a service exit too, on another node when the
//!   struck one runs none (a quiet cluster writes nothing), and such a stop says so
//!   ([`INJECTED`]);
//! - is a grey failure of the network or the disk (lost or delayed messages, a slow disk,
//!   a held executor): the lease's budget for a renewal's round trips is finite (rule 8 of
//!   `timing.rs`), so a coordinator whose messages are late may leave other nodes without a
//!   renewal in time, as designed;
//! - left the nodes it did not strike without a majority of the voters (the witness counts).
//!
//! Any other stop is collateral: a node that kept a quorum, and whose packages did not
//! fail, lost a package to a fault somewhere else (a coordinator paused or killed, another
//! node's disk full, ...), or lost one while nothing failed at all.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::faults::{Fault, Kind};

/// How long after a fault heals its effects may still stop packages elsewhere.
pub const AFTER: Duration = Duration::from_secs(3);

/// Why the harness stops a service it makes fail (`run::inject`).
pub const INJECTED: &str = "exited (fault)";

/// A package's activity that stopped.
#[derive(Clone, Debug, PartialEq)]
pub struct Stop {
    pub node: u32,
    pub package: String,
    pub at: Duration,
    pub why: String,
}

/// The stops no fault justifies (see the module's rules), each described; `voters`: the
/// Raft voters of the run (the nodes and the witness).
pub fn unjustified(stops: &[Stop], faults: &[Fault], voters: usize) -> Vec<String> {
    stops
        .iter()
        .filter(|stop| !justified(stop, faults, voters))
        .map(|stop| {
            format!(
                "collateral stop: {} on n{} stopped at {:.3} s ({}) though no fault touched \
                 n{} or the package, and it kept a majority of the {voters} voters",
                stop.package,
                stop.node,
                stop.at.as_secs_f64(),
                stop.why,
                stop.node
            )
        })
        .collect()
}

fn justified(stop: &Stop, faults: &[Fault], voters: usize) -> bool {
    if stop.why == INJECTED {
        return true;
    }
    let around: Vec<&Fault> = faults
        .iter()
        .filter(|f| f.at <= stop.at && stop.at <= f.at + f.lasts + AFTER)
        .collect();
    let mut struck = BTreeSet::new();
    for fault in &around {
        match fault.kind {
            Kind::ServiceExit { package } if format!("p{package}") == stop.package => {
                return true;
            }
            Kind::Loss(_) | Kind::Delay(_) | Kind::SlowDisk(_) | Kind::Hang => return true,
            _ => struck.extend(fault.nodes.iter().copied()),
        }
    }
    struck.contains(&stop.node) || voters.saturating_sub(struck.len()) <= voters / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn fault(at: u64, lasts: u64, kind: Kind, nodes: &[u32]) -> Fault {
        Fault {
            at: ms(at),
            kind,
            nodes: nodes.to_vec(),
            lasts: ms(lasts),
        }
    }

    fn stop(node: u32, package: &str, at: u64) -> Stop {
        Stop {
            node,
            package: package.into(),
            at: ms(at),
            why: "halted".into(),
        }
    }

    #[test]
    fn a_stop_on_a_node_the_fault_struck_or_of_the_failed_package_is_justified() {
        let faults = [
            fault(1_000, 1_000, Kind::Pause, &[2]),
            fault(10_000, 0, Kind::ServiceExit { package: 1 }, &[]),
        ];
        // n2 paused: its own packages stop, during the pause and once it is back.
        assert!(unjustified(&[stop(2, "p0", 1_500), stop(2, "p0", 4_900)], &faults, 5).is_empty());
        // p1's service exits: p1 restarts (or moves), wherever it ran.
        assert!(unjustified(&[stop(3, "p1", 10_001)], &faults, 5).is_empty());
        // A service the harness made exit (a full disk's) is that package's failure.
        let injected = Stop {
            why: INJECTED.into(),
            ..stop(3, "p2", 10_001)
        };
        assert!(unjustified(&[injected], &faults, 5).is_empty());
        // But not another package on another node.
        assert_eq!(
            unjustified(&[stop(3, "p2", 10_001), stop(1, "p0", 1_500)], &faults, 5).len(),
            2
        );
    }

    #[test]
    fn a_stop_while_nothing_failed_or_after_the_window_is_collateral() {
        let faults = [fault(1_000, 1_000, Kind::Crash, &[1])];
        let found = unjustified(&[stop(1, "p0", 500), stop(3, "p0", 6_001)], &faults, 3);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("collateral stop: p0 on n1 stopped at 0.500 s (halted)"),
            "{found:?}"
        );
        // Within the window the crashed node's own stops are its fault's.
        assert!(unjustified(&[stop(1, "p0", 5_000)], &faults, 3).is_empty());
    }

    #[test]
    fn without_a_majority_left_or_with_a_grey_failure_a_stop_is_not_counted() {
        // Two nodes and a witness: the witness and n1 struck one after the other, within
        // the window of both: n2 alone is no majority of three.
        let faults = [
            fault(1_000, 500, Kind::Crash, &[200]),
            fault(2_000, 500, Kind::Pause, &[1]),
        ];
        assert!(unjustified(&[stop(2, "p0", 2_100)], &faults, 3).is_empty());
        // With five voters, two struck leave three: the stop is collateral.
        assert_eq!(unjustified(&[stop(3, "p0", 2_100)], &faults, 5).len(), 1);
        // The coordinator's messages delayed: the renewals' budget is finite.
        let grey = [fault(1_000, 2_000, Kind::Delay(ms(150)), &[1])];
        assert!(unjustified(&[stop(3, "p0", 2_000)], &grey, 5).is_empty());
    }
}
