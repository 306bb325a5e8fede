//! `halcyon-bench`: figures for SPEC 12, measured on a live loopback cluster built from the
//! `halcyon` binary (build both first: `cargo build --release -p halcyon -p halcyon-bench`).
//!
//! - `failover [--runs N] [--fast]` (`--fast`: `[heartbeat] profile = "fast"`): SIGKILL of the package's node (daemon and service process
//!   group) -> the service answering on another node; median, p90 and worst, split by whether
//!   the killed node was the coordinator.
//! - `footprint [--nodes N] [--seconds S]`: idle RSS and CPU of every daemon.
//! - `mass-failover [--nodes N] [--packages P] [--resource script|none] [--runs R]`: P
//!   failover packages on one node, that node killed power-loss style -> every package
//!   running on another node; median and worst, with the `node_down` event's steps.
//! - `restart [--runs N]`: SIGKILL of the package's service -> the service answering again on
//!   the same node (restarted by its daemon); median, p90 and worst.
//!
//! Loopback only (127.0.0.x); every wait is bounded; every process started is killed by pid on
//! exit, on error and on Ctrl-C. Exit codes: 0 figures printed, 1 the measurement failed or was
//! interrupted, 2 invalid input.

mod cluster;
mod failover;
mod footprint;
mod interrupt;
mod mass;
mod restart;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "halcyon-bench",
    about = "Measure Halcyon's failover time and idle footprint on a loopback cluster (SPEC 12)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Time from SIGKILL of the package's node (daemon + service group) to the service
    /// answering on another node, over fresh 3-node clusters (or 2 nodes and a witness).
    Failover {
        /// Number of runs (alternating: the holder is / is not the coordinator).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1000))]
        runs: u64,
        /// The fast profile: `[heartbeat] profile = "fast"` (30 ms x 3; the lease and the Raft
        /// timings derived by the daemon).
        #[arg(long)]
        fast: bool,
        /// Two nodes and a quorum witness (`[quorum.witness]` on 127.0.0.65, started with
        /// them) instead of three nodes.
        #[arg(long)]
        witness: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Idle RSS and CPU of every daemon of an N-node cluster with one package.
    Footprint {
        /// Nodes (127.0.0.1..N).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=cluster::NODES_MAX as u64))]
        nodes: u64,
        /// Length of the sampling window.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=footprint::SECONDS_MAX))]
        seconds: u64,
        #[command(flatten)]
        common: Common,
    },
    /// Time from a power-loss-style kill of the node running every package to every package
    /// running on another node, over fresh clusters.
    MassFailover {
        /// Nodes (127.0.0.1..N); the packages start on the last.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(2..=cluster::NODES_MAX as u64))]
        nodes: u64,
        /// Failover packages, all on the last node.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=mass::PACKAGES_MAX))]
        packages: u64,
        /// What each package holds: one `script` resource running `true`, or nothing.
        #[arg(long, value_enum, default_value_t = mass::PackageResource::Script)]
        resource: mass::PackageResource,
        /// Number of runs (a fresh cluster each).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100))]
        runs: u64,
        #[command(flatten)]
        common: Common,
    },
    /// Time from SIGKILL of the package's service to the service answering again on the
    /// same node (restarted by its daemon), on one 3-node cluster.
    Restart {
        /// Number of runs.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1000))]
        runs: u64,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Args)]
struct Common {
    /// The halcyon binary (default: `halcyon` next to this program).
    #[arg(long)]
    halcyon: Option<PathBuf>,
}

impl Common {
    fn halcyon(&self) -> Result<PathBuf, String> {
        let path = match &self.halcyon {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .map_err(|e| format!("cannot find this program's path: {e}"))?
                .with_file_name("halcyon"),
        };
        if !path.is_file() {
            return Err(format!(
                "{} does not exist; build it first (cargo build --release -p halcyon -p halcyon-bench) or pass --halcyon PATH",
                path.display()
            ));
        }
        Ok(path)
    }
}

/// Runs a series of `count` runs: `one(index)` for each, its result to `done(index, run)`. A
/// failed run is printed and recorded in `failures` (run number, error); after
/// `give_up_after` failed runs in a row the series ends with an error. Ctrl-C ends it before
/// the next run.
pub fn series<R>(
    count: usize,
    give_up_after: usize,
    failures: &mut Vec<(usize, String)>,
    mut one: impl FnMut(usize) -> anyhow::Result<R>,
    mut done: impl FnMut(usize, R),
) -> anyhow::Result<()> {
    let mut failures_in_a_row = 0;
    for index in 0..count {
        interrupt::check()?;
        match one(index) {
            Ok(run) => {
                failures_in_a_row = 0;
                done(index, run);
            }
            Err(e) => {
                interrupt::check()?;
                eprintln!("run {:>3}/{count} FAILED: {e:#}", index + 1);
                failures.push((index + 1, format!("{e:#}")));
                failures_in_a_row += 1;
                if failures_in_a_row >= give_up_after {
                    anyhow::bail!("{failures_in_a_row} runs in a row failed; giving up");
                }
            }
        }
    }
    Ok(())
}

/// Milliseconds for a table: whole, or `-` when not measured.
pub fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.0} ms"))
}

/// /proc/loadavg's three averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("cargo run --release -p halcyon-bench -- {}", args.join(" "))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    interrupt::install();
    let common = match &cli.command {
        Command::Failover { common, .. }
        | Command::Footprint { common, .. }
        | Command::MassFailover { common, .. }
        | Command::Restart { common, .. } => common,
    };
    let halcyon = match common.halcyon() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match &cli.command {
        Command::Failover {
            runs,
            fast,
            witness,
            ..
        } => failover::run(&failover::Options {
            runs: *runs as usize,
            fast: *fast,
            witness: *witness,
            halcyon,
        })
        .map(|report| failover::render(&report, &command_line())),
        Command::Footprint { nodes, seconds, .. } => footprint::run(&footprint::Options {
            nodes: *nodes as usize,
            seconds: *seconds,
            halcyon,
        })
        .map(|report| footprint::render(&report, &command_line())),
        Command::MassFailover {
            nodes,
            packages,
            resource,
            runs,
            ..
        } => mass::run(&mass::Options {
            runs: *runs as usize,
            nodes: *nodes as usize,
            packages: *packages as usize,
            resource: *resource,
            halcyon,
        })
        .map(|report| mass::render(&report, &command_line())),
        Command::Restart { runs, .. } => restart::run(&restart::Options {
            runs: *runs as usize,
            halcyon,
        })
        .map(|report| restart::render(&report, &command_line())),
    };
    match result {
        Ok(table) => {
            print!("{table}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
