//! The `halcyon` binary: the CLI. The work lives in the library crates; this file
//! holds the command-line definition and the glue (ripgrep's layout); `live` holds the
//! commands against a running cluster (and the daemon's), `offline` those on files.
//!
//! Exit codes (decided here only, in [`exit_code`]; every command ends in `Ok(())` or a
//! [`Failure`]): 0 success; 1 the command failed (a request was refused, a daemon
//! stopped on an error, no node answered); 2 invalid input (configuration, state file or
//! arguments; an unknown package, node, event or operation).
//!
//! The live-cluster integration tests (`tests/cluster.rs`, `failover.rs`, ... with
//! `tests/common`) run this binary as their daemons and CLI.

mod live;
mod offline;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Halcyon: a high-availability cluster manager for Linux.
///
/// Packages (an application, its addresses and storage) are kept running on
/// exactly one suitable node, failed over in under a second, and never run on
/// two nodes at once.
#[derive(Parser, Debug)]
#[command(name = "halcyon", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a configuration without a running cluster
    /// (Serviceguard: cmcheckconf; HACMP: clverify).
    ///
    /// Prints every mistake as `file:line:column: field: what is wrong; expected
    /// ...; hint ...`. Exit 0 and a one-line summary when valid, 2 otherwise.
    Check {
        /// The configuration directory, or the cluster file and package files.
        #[arg(required = true, value_name = "DIR_OR_FILES")]
        paths: Vec<PathBuf>,
    },
    /// Say why a package runs where it runs, or why it does not run, node by node
    /// (Serviceguard: cmviewcl -v -p PKG; HACMP: clRGinfo -v).
    ///
    /// Asks the running cluster (found like `halcyon status` finds it, or at
    /// `--api`); with `--offline` or `--state`, works on a configuration and a
    /// cluster state file instead.
    Explain {
        /// The package.
        package: String,
        /// Explain from files, without a running cluster.
        #[arg(long)]
        offline: bool,
        /// API address (host:port) of any node of the running cluster.
        #[arg(long, value_name = "ADDR")]
        api: Option<std::net::SocketAddr>,
        #[command(flatten)]
        input: offline::Input,
        /// Print JSON instead of text (offline).
        #[arg(long)]
        json: bool,
    },
    /// Show what an event would do, without changing anything
    /// (HACMP: cluster event emulation; Pacemaker: crm_simulate).
    ///
    /// Offline (default): plays EVENT against a configuration and a cluster state
    /// file. Live (`--live`, or `--api ADDR`): against the running cluster's state.
    /// Either way it prints the plan (what halts and runs where, in which steps, and
    /// why) and the recovery program per node with its barriers, each built-in
    /// command with its share of the plan.
    /// Events: cluster_start, cluster_halt, timer, config_change;
    /// node_up NODE; node_down NODE [failure|graceful|graceful_takeover|forced];
    /// network_up|network_down|swap_adapter|fail_standby|join_standby NODE NETWORK;
    /// package_failed PACKAGE NODE; package_halt PACKAGE;
    /// package_run|package_move|package_enable|package_disable|package_clear PACKAGE [NODE];
    /// user EVENT_NAME NODE.
    Emulate {
        /// The event's name, then its arguments.
        #[arg(required = true, num_args = 1.., value_name = "EVENT [ARGS]")]
        event: Vec<String>,
        #[command(flatten)]
        input: offline::Input,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Against the running cluster (its API found with `--api`, `--config` or the
        /// demo cluster).
        #[arg(long)]
        live: bool,
        /// API address (host:port) of any node of the running cluster (implies --live).
        #[arg(long, value_name = "ADDR")]
        api: Option<std::net::SocketAddr>,
    },
    /// Translate legacy configuration files into native ones.
    Import {
        #[command(subcommand)]
        what: Import,
    },
    #[command(flatten)]
    Live(live::LiveCommand),
}

/// How a command that did not succeed ended, with the line that says why.
#[derive(Debug)]
pub enum Failure {
    /// The cluster refused the request, or the command failed.
    Failed(String),
    /// Invalid input: arguments, files, an unknown package, node, event or operation.
    Invalid(String),
}

impl From<anyhow::Error> for Failure {
    /// What the binary's edge reports: a file that could not be read or written.
    fn from(e: anyhow::Error) -> Self {
        Failure::Failed(format!("halcyon: {e:#}"))
    }
}

/// The exit code of a command's end (and the line that says why, on stderr).
fn exit_code(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Failed(line)) => {
            eprintln!("{line}");
            ExitCode::from(1)
        }
        Err(Failure::Invalid(line)) => {
            eprintln!("{line}");
            ExitCode::from(2)
        }
    }
}

#[derive(Subcommand, Debug)]
enum Import {
    /// A Serviceguard package ASCII file (`cmmakepkg` format) and its package
    /// control script (`IP[]`, `SERVICE_NAME[]`/`SERVICE_CMD[]`/`SERVICE_RESTART[]`,
    /// `VG[]`, `LV[]`/`FS[]`, `customer_defined_run_cmds` and `_halt_cmds`) -> a
    /// native package file and the customer commands as scripts
    /// (Serviceguard: cmgetconf + the control script).
    ///
    /// Addresses are matched to the networks of the cluster configuration, and the
    /// result is validated with it before anything is written.
    Serviceguard {
        /// The package ASCII file.
        package: PathBuf,
        /// The package control script (default: the file's RUN_SCRIPT, if it exists).
        #[arg(long, value_name = "FILE")]
        control_script: Option<PathBuf>,
        /// The cluster configuration the package joins (default /etc/halcyon).
        #[arg(long, short = 'c', value_name = "DIR")]
        config: Vec<PathBuf>,
        /// Where to write the package file and scripts.
        #[arg(long, short = 'o', value_name = "DIR", default_value = ".")]
        out: PathBuf,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// An HACMP rules file (`rules.hacmprd`, 9-line records) and its `.rp` recovery
    /// programs -> a native rules file and programs (HACMP ES: the event
    /// management rules of `/usr/sbin/cluster/events`).
    ///
    /// Each record's `.rp` file is found at the path the record names, else by file
    /// name in `--rp-dir`, else beside the rules file. Malformed records are refused
    /// with the record number and line; nothing is written then.
    Hacmp {
        /// The legacy rules file.
        rules: PathBuf,
        /// Where to look for `.rp` files not found at their recorded path.
        #[arg(long, value_name = "DIR")]
        rp_dir: Option<PathBuf>,
        /// Where to write `rules.toml` and the programs.
        #[arg(long, short = 'o', value_name = "DIR", default_value = ".")]
        out: PathBuf,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { paths } => offline::check(&paths),
        Command::Explain {
            package,
            offline,
            api,
            input,
            json,
        } => {
            if offline || input.is_offline() {
                offline::explain(&package, &input, json)
            } else if json {
                Err(Failure::Invalid(
                    "halcyon explain: --json is for --offline; the live answer is text".into(),
                ))
            } else {
                let target = live::Target {
                    api,
                    config: input.config_dir(),
                };
                live::explain(&target, &package)
            }
        }
        Command::Emulate {
            event,
            input,
            json,
            live,
            api,
        } => {
            if live || api.is_some() {
                let target = live::Target {
                    api,
                    config: input.config_dir(),
                };
                if input.is_offline() {
                    Err(Failure::Invalid(
                        "halcyon emulate: --state and --at are for offline emulation, not --live"
                            .into(),
                    ))
                } else {
                    offline::parse_event(&event)
                        .map_err(|e| Failure::Invalid(format!("halcyon emulate: {e}")))
                        .and_then(|e| live::emulate(&target, &e, json))
                }
            } else {
                offline::emulate(&event, &input, json)
            }
        }
        Command::Import {
            what:
                Import::Serviceguard {
                    package,
                    control_script,
                    config,
                    out,
                    force,
                },
        } => {
            offline::import_serviceguard(&package, control_script.as_deref(), &config, &out, force)
        }
        Command::Import {
            what:
                Import::Hacmp {
                    rules,
                    rp_dir,
                    out,
                    force,
                },
        } => offline::import_hacmp(&rules, rp_dir.as_deref(), &out, force),
        Command::Live(cmd) => live::run(cmd),
    };
    exit_code(result)
}
