//! The daemon and live commands as a standalone binary (the tests run it; the `halcyon`
//! binary offers the same commands).

use clap::Parser;

#[derive(Parser)]
#[command(name = "halcyond", about = "Halcyon daemon and live-cluster commands")]
struct Cli {
    #[command(subcommand)]
    command: halcyon_daemon::LiveCommand,
}

fn main() -> std::process::ExitCode {
    halcyon_daemon::run_live(Cli::parse().command)
}
