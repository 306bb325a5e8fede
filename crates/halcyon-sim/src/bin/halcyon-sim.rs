//! `halcyon-sim`: runs seeds of the deterministic cluster simulation.
//!
//! ```text
//! halcyon-sim --seeds 1000 --nodes 5          one line per seed, a summary at the end
//! halcyon-sim --seed 42 --nodes 5 --history   one seed with its whole history
//! halcyon-sim --seed 42 --faults 3,7          replay only those faults of seed 42's schedule
//! halcyon-sim --seeds 200 --fast              the same with the fast heartbeat profile
//! halcyon-sim --seeds 200 --fencing           every node with a simulated fence device
//! halcyon-sim --seeds 200 --auto-shrink       the voters shrink after 2 s of a node down
//! halcyon-sim --seeds 200 --hang              a node holds its plan actions, then restarts
//! halcyon-sim --seeds 200 --disk-errors       full disks among the faults
//! halcyon-sim --scale                         64 nodes, 1000 packages: failover time
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use halcyon_sim::{Options, Outcome, minimize, run, scale};

#[derive(Parser, Debug)]
#[command(
    name = "halcyon-sim",
    about = "Deterministic simulation of a Halcyon cluster"
)]
struct Cli {
    /// How many seeds to run (from --first on).
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    first: u64,
    /// Run this one seed (same as --first S --seeds 1).
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, default_value_t = 5)]
    nodes: u32,
    #[arg(long, default_value_t = 3)]
    packages: usize,
    /// Seconds of simulated time over which faults are drawn.
    #[arg(long, default_value_t = 20)]
    span: u64,
    /// Seconds the cluster has after the last fault before every package must run.
    #[arg(long, default_value_t = 15)]
    settle: u64,
    /// Inject only these faults (indices into the seed's schedule), e.g. `3,7`, or `none`.
    #[arg(long)]
    faults: Option<String>,
    /// Print the whole history of each run.
    #[arg(long)]
    history: bool,
    /// The last node reads files with a 3x slower heartbeat than the cluster runs with (a
    /// rolling change of the timings caught half way).
    #[arg(long)]
    drift: bool,
    /// Three `halcyon apply`s during the faults, at times drawn from the seed, each changing
    /// one package's definition (it halts and runs again where it runs).
    #[arg(long)]
    apply: bool,
    /// A node joins during the faults: its daemon starts from files that add it, and they
    /// are applied (`halcyon apply` adding a node).
    #[arg(long, conflicts_with = "shrink")]
    grow: bool,
    /// The last node dies for good during the faults and is removed (`halcyon apply` of the
    /// files without it); powered on again later, it must disturb nothing.
    #[arg(long)]
    shrink: bool,
    /// The cluster runs the fast heartbeat profile (`[heartbeat] profile = "fast"`).
    #[arg(long)]
    fast: bool,
    /// Every node has a simulated fence device; the even-numbered packages require fencing.
    #[arg(long)]
    fencing: bool,
    /// `[quorum] auto_shrink = true`, `shrink_after = "2s"`.
    #[arg(long)]
    auto_shrink: bool,
    /// A quorum witness votes beside the nodes and takes about one in four of the faults
    /// drawn for one node; with --apply, the second change takes it out (with two nodes:
    /// replaces it by another witness) and the third puts it back; at the end a witness is a
    /// voter exactly when the running configuration has it.
    #[arg(long)]
    witness: bool,
    /// A crashed node boots with its state directory emptied (a rebuilt node); with
    /// --witness, a crashed witness too.
    #[arg(long)]
    wipe: bool,
    /// The first node of a package holds every plan action it is handed (a stuck executor)
    /// for the run's first 40 s, then its daemon restarts; packages start within 2 s.
    #[arg(long)]
    hang: bool,
    /// Full disks among the faults: every write of a node's Raft store fails; its daemon
    /// halts its packages and exits, and starts again on its kept storage when space is back.
    #[arg(long)]
    disk_errors: bool,
    /// Print the daemons' logs (tracing, filter from RUST_LOG, default info).
    #[arg(long)]
    logs: bool,
    /// The scale run: 64 nodes, 1000 packages, one crash of a busy node.
    #[arg(long)]
    scale: bool,
    /// Scale run: how many nodes.
    #[arg(long, default_value_t = 64)]
    scale_nodes: u32,
    /// Scale run: how many packages.
    #[arg(long, default_value_t = 1000)]
    scale_packages: usize,
    /// Scale run: when node 1 loses power (seconds of simulated time).
    #[arg(long, default_value_t = 8)]
    crash_at: u64,
}

fn parse_faults(text: &str) -> Result<Vec<usize>, String> {
    if text == "none" {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|part| {
            part.trim()
                .parse::<usize>()
                .map_err(|_| format!("\"{part}\" is not a fault index (expected e.g. 3,7 or none)"))
        })
        .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.logs {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info,openraft=warn".into()),
            )
            .without_time()
            .init();
    }
    if cli.scale {
        return match scale::run(
            cli.scale_nodes,
            cli.scale_packages,
            cli.first,
            Duration::from_secs(cli.crash_at),
        ) {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("halcyon-sim: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let only = match cli.faults.as_deref().map(parse_faults).transpose() {
        Ok(only) => only,
        Err(e) => {
            eprintln!("halcyon-sim: --faults: {e}");
            return ExitCode::from(2);
        }
    };
    let (first, count) = match cli.seed {
        Some(seed) => (seed, 1),
        None => (cli.first, cli.seeds),
    };
    let mut failed = Vec::new();
    let mut real = Duration::ZERO;
    let mut simulated = Duration::ZERO;
    let mut terms = Vec::new();
    for seed in first..first + count {
        let options = Options {
            seed,
            nodes: cli.nodes,
            packages: cli.packages,
            fault_span: Duration::from_secs(cli.span),
            settle: Duration::from_secs(cli.settle),
            only: only.clone(),
            script: None,
            drift: cli.drift,
            apply: cli.apply,
            grow: cli.grow,
            shrink: cli.shrink,
            fast: cli.fast,
            fencing: cli.fencing,
            auto_shrink: cli.auto_shrink,
            wipe: cli.wipe,
            hang: cli.hang,
            disk_errors: cli.disk_errors,
            witness: cli.witness,
        };
        let outcome = match run(&options) {
            Ok(outcome) => outcome,
            Err(e) => {
                eprintln!("seed {seed}: the simulation could not run: {e:#}");
                return ExitCode::from(2);
            }
        };
        real += outcome.real;
        simulated += outcome.simulated;
        terms.push(outcome.term_at_end);
        println!("{}", line(&outcome));
        if cli.history {
            print!("{}", outcome.history);
        }
        if !outcome.passed() {
            report_failure(&options, &outcome);
            failed.push(seed);
        }
    }
    println!(
        "{count} seeds, {} failed{}; {:.0} s simulated in {:.1} s",
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                failed
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        simulated.as_secs_f64(),
        real.as_secs_f64()
    );
    terms.sort_unstable();
    if let (Some(median), Some(max)) = (terms.get(terms.len() / 2), terms.last()) {
        println!("Raft term at the end of a run: median {median}, max {max}");
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn line(outcome: &Outcome) -> String {
    let takeover = outcome.takeovers.iter().max().map_or(String::new(), |t| {
        format!(", slowest takeover {:.3} s", t.as_secs_f64())
    });
    format!(
        "seed {}: {} — {} faults, {:.0} s simulated in {:.2} s{takeover}, term {}, history {:016x}",
        outcome.seed,
        if outcome.passed() { "ok" } else { "FAILED" },
        outcome.faults.len(),
        outcome.simulated.as_secs_f64(),
        outcome.real.as_secs_f64(),
        outcome.term_at_end,
        outcome.digest
    )
}

/// Prints the violation, the shortest fault list that still shows it, that run's history up
/// to the violation, and the command that replays it.
fn report_failure(options: &Options, outcome: &Outcome) {
    for violation in &outcome.violations {
        println!("  violation: {violation}");
    }
    println!(
        "  minimizing the fault schedule ({} faults)...",
        outcome.faults.len()
    );
    let (shortest, history) = match minimize(options, outcome) {
        Ok(found) => found,
        Err(e) => {
            println!("  could not minimize: {e:#}");
            return;
        }
    };
    println!(
        "  shortest failing schedule: {} of {} faults:",
        shortest.faults.len(),
        outcome.faults.len()
    );
    for (index, fault) in &shortest.faults {
        println!(
            "    fault {index} at {:.3} s: {fault}",
            fault.at.as_secs_f64()
        );
    }
    println!("  history up to the violation:");
    print!("{history}");
    let indices: Vec<String> = shortest.faults.iter().map(|(i, _)| i.to_string()).collect();
    let flags: String = [
        (options.drift, " --drift"),
        (options.apply, " --apply"),
        (options.grow, " --grow"),
        (options.shrink, " --shrink"),
        (options.fast, " --fast"),
        (options.fencing, " --fencing"),
        (options.auto_shrink, " --auto-shrink"),
        (options.wipe, " --wipe"),
        (options.hang, " --hang"),
        (options.disk_errors, " --disk-errors"),
        (options.witness, " --witness"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, flag)| *flag)
    .collect();
    println!(
        "  replay: cargo run --release -p halcyon-sim -- --seed {} --nodes {} --packages {} --span {} --settle {} --faults {}{flags} --history",
        options.seed,
        options.nodes,
        options.packages,
        options.fault_span.as_secs(),
        options.settle.as_secs(),
        if indices.is_empty() {
            "none".to_string()
        } else {
            indices.join(",")
        },
    );
}
