//! `halcyon-lab`: build a lab and keep it up, remove leftovers, and (hidden) the tiny HTTP
//! responder used as a package's service in lab tests; `campaign` runs random faults against a
//! Halcyon cluster on a lab (exit 1 when an invariant is violated). Later: `bench`.
//!
//! Exit codes: 0 success, 1 failure (the error is printed), 2 usage error (clap).

use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use halcyon_lab::campaign::{self, CampaignOptions};
use halcyon_lab::{Lab, LabSpec, cleanup, compare, names, serve};

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
        /// Networks on which every host also gets a standby interface (`eth<n>s`), e.g. `1`.
        #[arg(long, value_delimiter = ',')]
        standby_networks: Vec<usize>,
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
    /// Run random faults from a seed against a Halcyon cluster on a lab, with the external
    /// checker; exit 1 if any invariant is violated.
    Campaign {
        #[arg(long, default_value_t = 5)]
        hosts: usize,
        #[arg(long, default_value_t = 2)]
        networks: usize,
        #[arg(long, default_value_t = 2)]
        packages: usize,
        #[arg(long, default_value_t = 10)]
        faults: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The halcyon binary (default: `halcyon` next to this executable).
        #[arg(long)]
        halcyon: Option<PathBuf>,
        /// Also pause daemons (SIGSTOP for longer than detection + lease, then SIGCONT).
        #[arg(long)]
        with_pause: bool,
        /// Also fault whichever daemon coordinates when the fault comes: pause it (SIGSTOP,
        /// then SIGCONT), kill it (SIGKILL, started again after a while), and flood its API
        /// with hundreds of concurrent requests.
        #[arg(long)]
        with_coordinator_faults: bool,
        /// Also fault a node's storage: its state directory full (daemon restarted on it,
        /// then space freed) and its Raft database corrupted while it is down (rebuilt if it
        /// refuses to start). Each node's state directory is then a tmpfs of its own.
        #[arg(long)]
        with_disk_faults: bool,
        /// No disk heartbeat network.
        #[arg(long)]
        no_disk: bool,
        /// The cluster's `[heartbeat] profile`: default or fast.
        #[arg(long, value_parser = parse_profile)]
        profile: Option<halcyon_config::HeartbeatProfile>,
        /// Seconds the cluster may take to recover after each heal.
        #[arg(long, default_value_t = 30)]
        recovery_seconds: u64,
        /// Busy threads at normal priority for the whole campaign (the cores saturated by
        /// other work), at most 64.
        #[arg(long, default_value_t = 0)]
        cpu_load: usize,
        /// After the faults, this many seconds with none: any outage is a false failover, a
        /// lapsed lease or a new Raft term a failure (`--faults 0 --soak-seconds 600`: a
        /// 10-minute idle run; with `--cpu-load`, under saturated cores).
        #[arg(long, default_value_t = 0)]
        soak_seconds: u64,
        /// Keep the lab directory (daemon logs, configuration) afterwards.
        #[arg(long)]
        keep_directory: bool,
        /// Draw only these kinds of fault (comma-separated: crash, partition, link-flap,
        /// daemon-restart, pause, coordinator-pause, coordinator-kill, api-flood, disk-full,
        /// disk-corruption), from the same seed's sequence; each needs the flag that enables
        /// it (`--only coordinator-pause --with-coordinator-faults`).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// The failover benchmark side by side: the same node failure on the same lab for Halcyon,
    /// Pacemaker+Corosync and keepalived; prints the table and the ratios (exit 1 on a guard
    /// violation or a system that could not be measured).
    Compare {
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// The halcyon binary (default: `halcyon` next to this executable).
        #[arg(long)]
        halcyon: Option<PathBuf>,
        /// Systems to measure, in order: halcyon, halcyon-fast (`[heartbeat] profile = "fast"`),
        /// halcyon-insecure (no credentials, `--insecure`: what security costs), pacemaker,
        /// keepalived.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "halcyon,pacemaker,keepalived"
        )]
        systems: Vec<String>,
        /// keepalived advert_int values (seconds), one run set each.
        #[arg(long, value_delimiter = ',', default_value = "1,0.1")]
        keepalived_advert: Vec<f64>,
        /// Length of the idle footprint window per system.
        #[arg(long, default_value_t = 30)]
        idle_seconds: u64,
        /// Keep the lab directories (logs) afterwards.
        #[arg(long)]
        keep_directory: bool,
        /// Halcyon without the disk heartbeat network (every lab host shares this machine's
        /// disk, so the disk heartbeat's synchronous writes and the Raft stores' fsyncs wait
        /// for each other here, which separate servers do not).
        #[arg(long)]
        no_disk: bool,
        /// After the failover runs of each system, cut the holder off from the other hosts
        /// for this many seconds, then stop its cluster manager (SIGSTOP) as long, and report
        /// how long the service address was on two hosts at once (0: not measured).
        #[arg(long, default_value_t = 0)]
        split_seconds: u64,
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

/// A `[heartbeat] profile` name, as the cluster file spells it.
fn parse_profile(text: &str) -> Result<halcyon_config::HeartbeatProfile, String> {
    halcyon_config::HeartbeatProfile::ALL
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text.trim()))
        .map(|(_, profile)| *profile)
        .ok_or_else(|| format!("unknown profile {text:?} (default, fast)"))
}

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

fn main() {
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(error) => {
            eprintln!("halcyon-lab: {error:#}");
            std::process::exit(1);
        }
    }
}

fn install_signal_handlers() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Ok(false) when the command ran but found a violation.
fn run(cli: Cli) -> Result<bool> {
    match cli.command {
        Command::Campaign {
            hosts,
            networks,
            packages,
            faults,
            seed,
            halcyon,
            with_pause,
            with_coordinator_faults,
            with_disk_faults,
            no_disk,
            profile,
            recovery_seconds,
            cpu_load,
            soak_seconds,
            keep_directory,
            only,
        } => {
            let only = match campaign::only_kinds(
                &only,
                with_pause,
                with_coordinator_faults,
                with_disk_faults,
            ) {
                Ok(only) => only,
                Err(why) => {
                    eprintln!("error: {why}");
                    std::process::exit(2);
                }
            };
            let halcyon = match halcyon {
                Some(path) => path,
                None => std::env::current_exe()
                    .context("finding this executable")?
                    .with_file_name("halcyon"),
            };
            let options = CampaignOptions {
                hosts,
                networks,
                packages,
                faults,
                seed,
                halcyon,
                with_pause,
                with_coordinator_faults,
                with_disk_faults,
                disk_heartbeat: !no_disk,
                heartbeat_profile: profile,
                recovery_bound: Duration::from_secs(recovery_seconds),
                cpu_load,
                soak: Duration::from_secs(soak_seconds),
                keep_directory,
                only,
            };
            install_signal_handlers();
            let report = campaign::run(&options, &mut std::io::stdout(), &SIGNALLED)
                .context("running the campaign")?;
            println!("{report}");
            Ok(report.passed())
        }
        Command::Compare {
            runs,
            halcyon,
            systems,
            keepalived_advert,
            idle_seconds,
            keep_directory,
            no_disk,
            split_seconds,
        } => {
            let halcyon = match halcyon {
                Some(path) => path,
                None => std::env::current_exe()
                    .context("finding this executable")?
                    .with_file_name("halcyon"),
            };
            let options = compare::CompareOptions {
                runs,
                systems: systems
                    .iter()
                    .map(|name| compare::SystemKind::parse(name))
                    .collect::<Result<_>>()?,
                halcyon,
                lab_binary: std::env::current_exe().context("finding this executable")?,
                keepalived_adverts: keepalived_advert,
                idle: Duration::from_secs(idle_seconds),
                keep_directory,
                disk_heartbeat: !no_disk,
                split: (split_seconds > 0).then(|| Duration::from_secs(split_seconds)),
                command_line: std::env::args().collect::<Vec<_>>().join(" "),
            };
            install_signal_handlers();
            let report = compare::run(&options, &mut std::io::stderr(), &SIGNALLED)?;
            println!("{report}");
            Ok(report.passed())
        }
        Command::Up {
            hosts,
            networks,
            standby_networks,
            seconds,
            keep_directory,
        } => up(
            LabSpec {
                hosts,
                networks,
                keep_directory,
                standby_networks,
            },
            seconds,
        )
        .map(|()| true),
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
            Ok(true)
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
                .with_context(|| format!("serving on {bind}"))?;
            Ok(true)
        }
    }
}

fn up(spec: LabSpec, seconds: Option<u64>) -> Result<()> {
    install_signal_handlers();
    let lab = Lab::build(spec).context("building the lab")?;
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
