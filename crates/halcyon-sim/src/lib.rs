//! Deterministic simulation of a whole Halcyon cluster (issue 7, ARCHITECTURE.md
//! "Deterministic simulation").
//!
//! The daemons are the real ones (`halcyon_daemon::node::Node`: membership, openraft, the
//! event engine, the policy engine, package execution), each on a turmoil host, started
//! through the daemon's [`Platform`](halcyon_daemon::platform::Platform) seam with:
//! simulated time (turmoil's, each node's clock at its own rate within the lease's drift
//! bound), turmoil's network (TCP for Raft and the API, UDP for heartbeats), a lease guard
//! kept outside the host (it outlives a killed daemon and fences on the node's clock), and
//! resources that only record when they run where ([`world`]).
//!
//! A run is determined by its seed: the fault schedule ([`faults`]), turmoil's network
//! randomness and host order, and openraft's election timeouts all come from it.
//!
//! Invariants ([`invariants`], [`world`]): a failover package never runs on two nodes; a
//! committed log entry never changes; events run one at a time in priority order; restart
//! counters never go back; after the faults, every `auto_run` package runs; and no package
//! stopped on a node that no fault reached ([`collateral`]).

// Without it tokio draws its own random numbers from the OS (a `watch` channel parks each
// waiter on one of eight lists chosen at random), turmoil cannot seed them, and a seed no
// longer replays its history. `.cargo/config.toml` sets it; a RUSTFLAGS variable replaces
// that setting.
#[cfg(not(tokio_unstable))]
compile_error!(
    "halcyon-sim needs `--cfg tokio_unstable` (set in .cargo/config.toml; RUSTFLAGS in the \
     environment overrides it): without it a seed does not replay the same history"
);

pub mod collateral;
pub mod faults;
pub mod invariants;
pub mod platform;
pub mod reshape;
pub mod run;
pub mod scale;
pub mod world;

pub use run::{Options, Outcome, minimize, run};
