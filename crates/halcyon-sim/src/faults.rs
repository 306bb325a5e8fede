//! The fault schedule: drawn from the seed, so the same seed gives the same faults.

use std::fmt;
use std::time::Duration;

/// A small deterministic generator (SplitMix64): the schedule must not depend on a crate's
/// choice of algorithm across versions.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }

    pub fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(self.range(low, high))
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What a fault does.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// Power loss: the daemon, its services and its guard stop; the node boots after `for`.
    Crash,
    /// The daemon alone is killed (its services and guard keep running); restarted after `for`.
    DaemonKill,
    /// The daemon stops answering: every message to and from it is held, then delivered at
    /// once (turmoil cannot stop a host's runtime; the node's own timers keep running).
    Pause,
    /// `nodes` cut off from the others both ways.
    Partition,
    /// Messages from `nodes` to the others are dropped; the other direction works.
    OneWay,
    /// A share of the messages to and from `nodes` is lost.
    Loss(f64),
    /// Messages to and from `nodes` take up to this long (and so are reordered).
    Delay(Duration),
    /// Every log append and vote save on `nodes` takes this long.
    SlowDisk(Duration),
    /// The disk of `nodes` is full: every write of its Raft store fails (`ENOSPC`). A quiet
    /// cluster writes nothing, so a service exits as the disk fills (on the node if it runs
    /// one): the failure the cluster then commits stops the node's replica, and its daemon
    /// halts its packages and exits as the real one does; at the end of the fault (space
    /// back) the daemon is started again on its kept storage. Drawn only with
    /// `--disk-errors`.
    DiskError,
    /// A service of package number `package` exits by itself (the daemon restarts it or
    /// fails the package over).
    ServiceExit { package: usize },
    /// The node's executor holds every plan action it is handed (never carried out, never
    /// reported: a stuck executor), while the node heartbeats and renews its lease; its
    /// daemon is restarted when the fault ends (`--hang`).
    Hang,
}

/// One fault of a schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub at: Duration,
    pub kind: Kind,
    pub nodes: Vec<u32>,
    pub lasts: Duration,
}

/// In a scripted fault's nodes: the node that coordinates when the fault begins
/// (`run::strike_coordinator`).
pub const COORDINATOR: u32 = 0;

/// The quorum witness's number (`--witness`): its host is `run::node_ip(WITNESS)`, apart from
/// the nodes' (`--grow` adds node `nodes + 1`).
pub const WITNESS: u32 = 200;
/// The number of the witness that replaces it in a two-node run with `--apply`.
pub const WITNESS_REPLACEMENT: u32 = 201;

/// `--witness`: about one in four of the drawn faults that strike one node with a crash, a
/// daemon kill, a pause, a partition, a one-way cut, losses, delays or a slow disk strike the
/// witness instead (from a stream of the seed's own: the schedule is otherwise the one drawn
/// without it). With `--wipe` its crash empties its state directory as a node's does (a
/// witness rebuilt under its number: `witness::admission`).
pub fn strike_witness(seed: u64, faults: &mut [Fault]) {
    let mut rng = Rng::new(seed ^ 0x0077_6974_6e65_7373);
    for fault in faults {
        let strikes = match fault.kind {
            Kind::Crash
            | Kind::DaemonKill
            | Kind::Pause
            | Kind::Partition
            | Kind::OneWay
            | Kind::Loss(_)
            | Kind::Delay(_)
            | Kind::SlowDisk(_) => true,
            Kind::DiskError | Kind::ServiceExit { .. } | Kind::Hang => false,
        };
        if rng.range(0, 3) == 0 && strikes {
            fault.nodes = vec![WITNESS];
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|&n| {
                if n == WITNESS {
                    "the witness".to_owned()
                } else if n == WITNESS_REPLACEMENT {
                    "the replacement witness".to_owned()
                } else {
                    format!("n{n}")
                }
            })
            .collect();
        let nodes = nodes.join(",");
        let lasts = self.lasts.as_secs_f64();
        match &self.kind {
            Kind::Crash => write!(f, "crash {nodes}, off {lasts:.2} s"),
            Kind::DaemonKill => write!(f, "kill the daemon of {nodes}, down {lasts:.2} s"),
            Kind::Pause => write!(f, "pause {nodes} for {lasts:.2} s"),
            Kind::Partition => write!(f, "partition {nodes} from the rest for {lasts:.2} s"),
            Kind::OneWay => write!(f, "drop messages from {nodes} to the rest for {lasts:.2} s"),
            Kind::Loss(rate) => write!(
                f,
                "lose {:.0} % of {nodes}'s messages for {lasts:.2} s",
                rate * 100.0
            ),
            Kind::Delay(max) => write!(
                f,
                "delay {nodes}'s messages up to {} ms for {lasts:.2} s",
                max.as_millis()
            ),
            Kind::SlowDisk(delay) => write!(
                f,
                "slow disk on {nodes} ({} ms a write) for {lasts:.2} s",
                delay.as_millis()
            ),
            Kind::DiskError => write!(f, "full disk on {nodes} for {lasts:.2} s"),
            Kind::ServiceExit { package } => write!(f, "the service of package p{package} exits"),
            Kind::Hang => write!(
                f,
                "{nodes} holds every plan action for {lasts:.2} s, then its daemon restarts"
            ),
        }
    }
}

/// Draws a schedule of faults for `nodes` nodes and `packages` packages over `span`: one
/// fault after another, each healed before the next begins, with gaps between them. With
/// `disk_errors`, a full disk ([`Kind::DiskError`]) is among the kinds; without, a seed
/// draws exactly the schedule it drew before that kind existed.
pub fn draw(
    seed: u64,
    nodes: u32,
    packages: usize,
    span: Duration,
    disk_errors: bool,
) -> Vec<Fault> {
    let mut rng = Rng::new(seed);
    let mut faults = Vec::new();
    let mut at = rng.millis(500, 3_000);
    let minority_max = ((nodes - 1) / 2).max(1) as u64;
    while at < span {
        let node = rng.range(1, u64::from(nodes)) as u32;
        // Nine kinds of fault, service exits drawn twice as often; the full disk is the
        // eleventh choice, so that without it every draw stays as it was.
        let choices = if disk_errors { 10 } else { 9 };
        let (kind, lasts, group) = match rng.range(0, choices) {
            0 => (Kind::Crash, rng.millis(300, 4_000), vec![node]),
            1 => (Kind::DaemonKill, rng.millis(100, 3_000), vec![node]),
            2 => (Kind::Pause, rng.millis(200, 3_000), vec![node]),
            3 => {
                let size = rng.range(1, minority_max) as u32;
                let group = (0..size).map(|i| (node - 1 + i) % nodes + 1).collect();
                (Kind::Partition, rng.millis(300, 4_000), group)
            }
            4 => (Kind::OneWay, rng.millis(300, 3_000), vec![node]),
            5 => (
                Kind::Loss(0.1 + rng.unit() * 0.6),
                rng.millis(500, 4_000),
                vec![node],
            ),
            6 => (
                Kind::Delay(rng.millis(10, 150)),
                rng.millis(500, 4_000),
                vec![node],
            ),
            7 => (
                Kind::SlowDisk(rng.millis(20, 400)),
                rng.millis(500, 4_000),
                vec![node],
            ),
            10 => (Kind::DiskError, rng.millis(500, 4_000), vec![node]),
            _ => (
                Kind::ServiceExit {
                    package: rng.range(0, packages as u64 - 1) as usize,
                },
                Duration::ZERO,
                Vec::new(),
            ),
        };
        faults.push(Fault {
            at,
            kind,
            nodes: group,
            lasts,
        });
        at += lasts + rng.millis(300, 3_000);
    }
    faults
}

/// How long a `--hang` node holds its plan actions before its daemon restarts: more than
/// twice the bound on a start of the simulator's packages (2 s run timeout, 1 s + 2 x 2 s
/// halt, a margin of 10 s and two leases: 18.2 s), as a coordinator elected meanwhile counts
/// it again from its
/// own first round, so that the cluster has to give up on the node.
pub const HANG_FOR: Duration = Duration::from_secs(40);

/// `--hang`: the first node of a package drawn from a stream of the seed's own (the other
/// faults are the same with and without it) holds its plan actions from the start of the
/// run for [`HANG_FOR`]: the cluster's formation hands it that package's run.
pub fn draw_hang(seed: u64, nodes: u32, packages: usize) -> Fault {
    let mut rng = Rng::new(seed ^ 0x6861_6e67);
    let package = rng.range(0, packages.saturating_sub(1) as u64) as u32;
    Fault {
        at: Duration::ZERO,
        kind: Kind::Hang,
        // Package p's node list starts with node p % nodes + 1 (`run::write_config_variant`).
        nodes: vec![package % nodes + 1],
        lasts: HANG_FOR,
    }
}

/// Clock rates of the nodes: each within half the drift bound of exact, so that any two
/// differ by at most the bound the lease arithmetic assumes (`lease::DRIFT`).
pub fn clock_rates(seed: u64, nodes: u32, drift: f64) -> Vec<f64> {
    let mut rng = Rng::new(seed.rotate_left(17) ^ 0x5eed);
    (0..nodes)
        .map(|_| 1.0 + (rng.unit() * 2.0 - 1.0) * drift / 2.0 * 0.999)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_schedule_and_another_seed_another() {
        let span = Duration::from_secs(30);
        assert_eq!(draw(7, 5, 3, span, false), draw(7, 5, 3, span, false));
        assert_ne!(draw(7, 5, 3, span, false), draw(8, 5, 3, span, false));
        assert_eq!(draw(7, 5, 3, span, true), draw(7, 5, 3, span, true));
    }

    /// Seed 1's schedule as it was drawn before full disks existed (commit 927aeac): the
    /// seeds run without `--disk-errors` replay the same runs as before.
    #[test]
    fn without_disk_errors_a_seed_draws_what_it_drew_before() {
        let faults = draw(1, 5, 3, Duration::from_secs(20), false);
        let drawn: Vec<String> = faults
            .iter()
            .map(|f| format!("{} ms: {f}", f.at.as_millis()))
            .collect();
        assert_eq!(drawn, SEED_1_BEFORE_DISK_ERRORS);
        for seed in 0..300 {
            let faults = draw(seed, 5, 3, Duration::from_secs(20), false);
            assert!(
                faults.iter().all(|f| f.kind != Kind::DiskError),
                "seed {seed}"
            );
        }
    }

    const SEED_1_BEFORE_DISK_ERRORS: &[&str] = &[
        "1326 ms: pause n2 for 0.67 s",
        "3970 ms: delay n1's messages up to 112 ms for 0.82 s",
        "7605 ms: lose 62 % of n3's messages for 1.70 s",
        "9886 ms: pause n4 for 1.95 s",
        "14303 ms: slow disk on n4 (350 ms a write) for 2.63 s",
        "18679 ms: delay n3's messages up to 105 ms for 2.46 s",
    ];

    #[test]
    fn with_disk_errors_full_disks_are_drawn_on_one_node_and_last() {
        let mut full_disks = 0;
        for seed in 0..300 {
            let faults = draw(seed, 5, 3, Duration::from_secs(20), true);
            for fault in faults.iter().filter(|f| f.kind == Kind::DiskError) {
                assert_eq!(fault.nodes.len(), 1, "seed {seed}");
                assert!(fault.lasts >= Duration::from_millis(500), "seed {seed}");
                full_disks += 1;
            }
        }
        // One choice in eleven, about eight faults a seed.
        assert!(
            full_disks > 100,
            "only {full_disks} full disks in 300 seeds"
        );
    }

    #[test]
    fn partitions_cut_off_a_minority_and_faults_do_not_overlap() {
        for seed in 0..200 {
            let faults = draw(seed, 5, 3, Duration::from_secs(60), true);
            for pair in faults.windows(2) {
                assert!(pair[0].at + pair[0].lasts < pair[1].at, "seed {seed}");
            }
            for fault in faults.iter().filter(|f| f.kind == Kind::Partition) {
                assert!(
                    !fault.nodes.is_empty() && fault.nodes.len() <= 2,
                    "seed {seed}"
                );
            }
        }
    }

    #[test]
    fn clock_rates_stay_within_the_drift_bound_of_each_other() {
        for seed in 0..100 {
            let rates = clock_rates(seed, 7, 0.01);
            let low = rates.iter().copied().fold(f64::MAX, f64::min);
            let high = rates.iter().copied().fold(f64::MIN, f64::max);
            assert!(high / low - 1.0 <= 0.01, "seed {seed}: {rates:?}");
        }
    }
}

/// A `halcyon apply` of `--apply`: at `at`, sent to `node`'s daemon, changing package
/// number `package`'s definition, and with `sensitivity` the heartbeat sensitivity too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Apply {
    pub at: Duration,
    pub node: u32,
    pub package: usize,
    pub sensitivity: bool,
}

/// When `--grow` adds a node: between 1 s and half of `span`, from a stream of the seed's
/// own (the fault schedule stays as without).
pub fn draw_grow(seed: u64, span: Duration) -> Duration {
    let mut rng = Rng::new(seed ^ 0x6772_6f77);
    let half = (span.as_millis() as u64 / 2).max(1_001);
    rng.millis(1_000, half)
}

/// `count` applies over `span`, in time order, from a stream of the seed's own (the fault
/// schedule of a seed is the same with and without them).
pub fn draw_applies(
    seed: u64,
    nodes: u32,
    packages: usize,
    span: Duration,
    count: usize,
) -> Vec<Apply> {
    let mut rng = Rng::new(seed ^ 0x6170_706c_7921);
    let span_ms = span.as_millis().max(1) as u64;
    let mut applies: Vec<Apply> = (0..count)
        .map(|_| Apply {
            at: rng.millis(500, span_ms),
            node: rng.range(1, u64::from(nodes)) as u32,
            package: rng.range(0, packages.saturating_sub(1) as u64) as usize,
            sensitivity: rng.range(0, 1) == 1,
        })
        .collect();
    applies.sort_by_key(|a| a.at);
    applies
}
