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

mod cli;
mod init;
mod live;
mod offline;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command, Import};

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

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { paths } => offline::check(&paths),
        Command::Explain {
            package,
            offline,
            api,
            token_file,
            ca,
            insecure,
            input,
            json,
        } => {
            if offline || input.is_offline() {
                offline::explain(&package, &input, json)
            } else {
                let target = live::Target {
                    api,
                    config: input.config_dir(),
                    token_file,
                    socket: None,
                    ca,
                    insecure,
                };
                live::explain(&target, &package, json)
            }
        }
        Command::Emulate {
            event,
            input,
            json,
            live,
            api,
            token_file,
            ca,
            insecure,
        } => {
            if live || api.is_some() {
                let target = live::Target {
                    api,
                    config: input.config_dir(),
                    token_file,
                    socket: None,
                    ca,
                    insecure,
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
        Command::Init(args) => init::run(&args),
        Command::Live(cmd) => live::run(cmd),
    };
    exit_code(result)
}
