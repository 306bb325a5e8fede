//! The `halcyon` command built inside this package, for the daemon's integration tests:
//! cargo hands a test the binaries of its own package only (`CARGO_BIN_EXE_halcyond`), and
//! this package cannot depend on the `halcyon` binary crate, which depends on it. So the
//! CLI's source is included by path: one CLI, two names.

#[path = "../../../halcyon/src/main.rs"]
mod halcyon;

fn main() -> std::process::ExitCode {
    halcyon::main()
}
