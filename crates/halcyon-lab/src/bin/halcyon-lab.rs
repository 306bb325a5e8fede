//! `halcyon-lab`: build a lab and keep it up, remove leftovers, and (hidden) the tiny HTTP
//! responder used as a package's service in lab tests. Later: `campaign` and `bench`.
//!
//! Exit codes: 0 success, 1 failure (the error is printed), 2 usage error (clap).

use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use halcyon_lab::{Lab, LabSpec, cleanup, names, serve};

#[derive(Parser)]
#[command(
    name = "halcyon-lab",
    about = "Halcyon's multi-host lab: network namespaces, faults, an external checker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a lab, print its hosts and addresses, and keep it until Ctrl-C (or --seconds).
    Up {
        #[arg(long, default_value_t = 3)]
        hosts: usize,
        #[arg(long, default_value_t = 2)]
        networks: usize,
        /// Tear down after this many seconds instead of waiting for a signal.
        #[arg(long)]
        seconds: Option<u64>,
        /// Keep the lab directory (logs, host directories) afterwards.
        #[arg(long)]
        keep_directory: bool,
    },
    /// Remove what labs of exited processes left behind (namespaces, bridges, veths, directories).
    Cleanup {
        /// Only print what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Answer HTTP GETs with a name (a lab test service; run inside a host by the lab).
    #[command(hide = true)]
    ServeName {
        #[arg(long)]
        bind: SocketAddrV4,
        #[arg(long)]
        name: String,
        #[arg(long, default_value_t = 3600)]
        lifetime_seconds: u64,
    },
}

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

fn main() {
    let cli = Cli::parse();
    if let Err(error) = run(cli) {
        eprintln!("halcyon-lab: {error:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Up {
            hosts,
            networks,
            seconds,
            keep_directory,
        } => up(hosts, networks, seconds, keep_directory),
        Command::Cleanup { dry_run } => {
            let removed = cleanup::remove_stale(dry_run)?;
            let verb = if dry_run { "would remove" } else { "removed" };
            if removed.is_empty() {
                println!("nothing to remove");
            }
            for id in &removed.labs {
                println!("{verb} lab {id}");
            }
            for name in removed.namespaces.iter().chain(&removed.interfaces) {
                println!("  {name}");
            }
            for directory in &removed.directories {
                println!("  {}", directory.display());
            }
            Ok(())
        }
        Command::ServeName {
            bind,
            name,
            lifetime_seconds,
        } => {
            anyhow::ensure!(
                names::is_lab_address(*bind.ip()),
                "{bind} is outside 198.18.0.0/15"
            );
            serve::serve_name(bind, &name, Duration::from_secs(lifetime_seconds))
                .with_context(|| format!("serving on {bind}"))
        }
    }
}

fn up(hosts: usize, networks: usize, seconds: Option<u64>, keep_directory: bool) -> Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, on_signal as *const () as libc::sighandler_t) };
    }
    let lab = Lab::build(LabSpec {
        hosts,
        networks,
        keep_directory,
    })
    .context("building the lab")?;
    println!("{}", lab.describe());
    println!("ready; Ctrl-C to tear down");
    let deadline = seconds.map(|seconds| Instant::now() + Duration::from_secs(seconds));
    while !SIGNALLED.load(Ordering::SeqCst)
        && deadline.is_none_or(|deadline| Instant::now() < deadline)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let violations = lab.guard_violations().unwrap_or(u64::MAX);
    drop(lab);
    println!("torn down; guard violations: {violations}");
    Ok(())
}
