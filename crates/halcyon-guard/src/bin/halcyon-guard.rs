//! The lease guard as a stand-alone binary (the daemon will run it as the hidden
//! `halcyon guard` subcommand): `halcyon-guard [--lead-ms N] [--tick-ms N]
//! [--rt-priority N|off] [--mlock|--no-mlock]`, protocol on stdin/stdout, log on stderr.

fn main() {
    match halcyon_guard::GuardConfig::from_args(std::env::args().skip(1)) {
        Ok(config) => halcyon_guard::guard_main_stdio(config),
        Err(error) => {
            eprintln!("halcyon-guard: {error}");
            std::process::exit(2);
        }
    }
}
