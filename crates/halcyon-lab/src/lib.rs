//! Halcyon's multi-host lab and external checker (SPEC 12 and 13, tier 3).
//!
//! - [`Lab`] builds N hosts out of Linux network namespaces on one bridge per IP network, plus a
//!   client namespace, all addressed in 198.18.0.0/15 (the plan is in [`names`]); it runs any
//!   command on a host ([`Lab::spawn`]) and removes everything again when dropped.
//! - [`fault`] injects crashes, pauses, partitions, link failures and restarts, each returning
//!   the instant it took effect.
//! - [`checker::Checker`] samples every host from outside every few milliseconds and reports
//!   double activations and outages; it never asks the cluster.
//! - [`cleanup::remove_stale`] removes what labs of dead processes left behind.
//! - [`cluster::LabCluster`] runs a Halcyon daemon on every host of a lab with a generated
//!   configuration; [`campaign`] applies random faults from a seed to such a cluster.
//!
//! Invariants: nothing a lab creates is named without the `hl<pid><letter>` id; no lab
//! namespace can send outside 198.18.0.0/15 and 127.0.0.0/8 (an nftables guard drops and counts
//! it, and the only route out leads to loopback); every loop and external command is bounded;
//! the checker's sampling path spawns no process. Needs root, `ip` (iproute2) and `nft`
//! (nftables); the tests also use `ping` (iputils-ping).

pub mod campaign;
pub mod checker;
pub mod cleanup;
pub mod cluster;
pub mod command;
pub mod compare;
pub mod fault;
mod lab;
pub mod load;
pub mod names;
pub mod netlink;
pub mod netns;
pub mod serve;

pub use checker::{Checker, CheckerOptions, PackageWatch, Report, ServiceMatch};
pub use cluster::{ClusterSpec, LabCluster, PackageSpec};
pub use fault::Fault;
pub use lab::{GUARD_TABLE, HostProcess, Lab, LabSpec, PARTITION_TABLE, Topology, host_label};
pub use names::{CLIENT, LabId};

use std::time::Duration;

/// Everything that can go wrong building or driving a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("invalid lab request: {0}")]
    Spec(String),
    #[error("`{tool}` not found; install the Debian package {package}")]
    MissingTool {
        tool: &'static str,
        package: &'static str,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{what} did not finish within {after:?}")]
    Timeout { what: String, after: Duration },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("process {pid} is still running")]
    StillRunning { pid: u32 },
    #[error("process {pid} is not running")]
    NotRunning { pid: u32 },
}

/// True when running as root; otherwise prints the visible skip line tests use.
pub fn running_as_root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    eprintln!("skipped: needs root ({test})");
    false
}
