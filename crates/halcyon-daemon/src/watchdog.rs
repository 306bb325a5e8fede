//! The optional Linux watchdog (`quorum.watchdog = "/dev/watchdog"`; SPEC 6).
//!
//! Opened at start, and switched when `halcyon apply` changes `quorum.watchdog` (the old
//! device closed with the magic character, the new one opened: `node::settings`); kept alive from the lease loop only while this node holds a valid lease and
//! the daemon is healthy (its heartbeat thread runs); closed with the magic character `V` on a
//! clean shutdown, so that stopping the daemon does not reset the machine. A daemon that hangs,
//! or keeps running without a lease, stops feeding it and the kernel resets the machine after
//! the device's timeout (whole seconds; it is not shortened here). When the device cannot be
//! opened the daemon says so clearly and runs without it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// An open watchdog device.
pub struct Watchdog {
    path: PathBuf,
    file: File,
    keepalives: u64,
}

impl Watchdog {
    /// Opens the device; `None` (with an error logged) when it cannot be opened.
    pub fn open(path: &Path) -> Option<Watchdog> {
        match OpenOptions::new().append(true).open(path) {
            Ok(file) => {
                tracing::info!(device = %path.display(), "watchdog armed: kept alive only while this node holds a lease");
                Some(Watchdog {
                    path: path.to_owned(),
                    file,
                    keepalives: 0,
                })
            }
            Err(e) => {
                tracing::error!(
                    device = %path.display(),
                    "watchdog device cannot be opened ({e}): running WITHOUT a watchdog; a hung daemon will not reset this machine (load softdog or fix quorum.watchdog)"
                );
                None
            }
        }
    }

    /// One keepalive (any byte other than `V`).
    pub fn keepalive(&mut self) {
        match self.file.write_all(b"k") {
            Ok(()) => self.keepalives += 1,
            Err(e) => {
                tracing::error!(device = %self.path.display(), "watchdog keepalive failed: {e}")
            }
        }
    }

    /// Clean shutdown: the magic close character, then close.
    pub fn close(mut self) {
        match self.file.write_all(b"V").and_then(|()| self.file.flush()) {
            Ok(()) => {
                tracing::info!(device = %self.path.display(), keepalives = self.keepalives, "watchdog disarmed (magic close)")
            }
            Err(e) => {
                tracing::error!(device = %self.path.display(), "watchdog magic close failed: {e}; the machine may reset")
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The cluster's configured watchdog opened (or `None`), and what `halcyon status` says
/// about it.
pub fn open_configured(cluster: &halcyon_config::Cluster) -> (Option<Watchdog>, String) {
    open_path(cluster.quorum.watchdog.as_deref())
}

/// The watchdog at `path` opened (or `None`, also when no path), and what `halcyon status`
/// says about it.
pub fn open_path(path: Option<&str>) -> (Option<Watchdog>, String) {
    let watchdog = path.and_then(|p| Watchdog::open(Path::new(p)));
    let state = match (path, &watchdog) {
        (None, _) => "not configured".to_owned(),
        (Some(p), Some(_)) => format!("armed ({p})"),
        (Some(p), None) => format!("ABSENT ({p} cannot be opened)"),
    };
    (watchdog, state)
}
