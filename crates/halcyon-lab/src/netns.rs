//! Entering network namespaces, and finding which namespace a process is in.
//!
//! `setns(CLONE_NEWNET)` changes only the calling thread, so the lab never enters a namespace on
//! a caller's thread: [`in_namespace`] runs a closure on a fresh thread, and long-lived workers
//! (the checker's probes) call [`enter`] first thing on their own thread.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Moves the calling thread into the network namespace at `netns_path`.
pub fn enter(netns_path: &Path) -> io::Result<()> {
    let namespace = File::open(netns_path)?;
    // SAFETY: valid descriptor of a namespace file; affects only this thread.
    if unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `work` on a new thread inside the network namespace at `netns_path` and returns its
/// result. Sockets created by `work` stay in that namespace when used from other threads.
pub fn in_namespace<T: Send + 'static>(
    netns_path: &Path,
    work: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    let netns_path = netns_path.to_path_buf();
    std::thread::Builder::new()
        .name("halcyon-lab-netns".into())
        .spawn(move || -> io::Result<T> {
            enter(&netns_path)?;
            Ok(work())
        })?
        .join()
        .map_err(|_| io::Error::other("thread in namespace panicked"))?
}

/// The inode that identifies the namespace mounted at `netns_path` (as in `net:[INODE]`).
pub fn namespace_inode(netns_path: &Path) -> io::Result<u64> {
    Ok(fs::metadata(netns_path)?.ino())
}

/// The network namespace inode of process `pid`, or `None` if it has exited (a zombie has no
/// namespaces any more) or cannot be read.
pub fn process_namespace_inode(pid: u32) -> Option<u64> {
    let link = fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    let text = link.to_str()?;
    text.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// Every process (by PID) currently in the network namespace with inode `inode`.
pub fn processes_in_namespace(inode: u64) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| process_namespace_inode(pid) == Some(inode))
        .collect()
}

/// True when `pid` exists and is neither a zombie nor dead.
pub fn process_is_live(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(process_state(&stat), Some('Z' | 'X' | 'x') | None),
        Err(_) => false,
    }
}

/// The one-letter state of a process (`R`, `S`, `T` for stopped, `Z`...) from `/proc/PID/stat`.
pub fn process_state_of(pid: u32) -> Option<char> {
    process_state(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Start time (clock ticks since boot, field 22) of `pid`, to tell a PID from its reuse.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split(' ').nth(19)?.parse().ok()
}

fn process_state(stat: &str) -> Option<char> {
    // The command name is in parentheses and may contain spaces; the state follows it.
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_read_after_a_name_with_spaces() {
        assert_eq!(process_state("42 (a b) c) S 1 42"), Some('S'));
    }

    #[test]
    fn own_process_is_live_and_has_a_start_time() {
        let pid = std::process::id();
        assert!(process_is_live(pid));
        assert!(process_start_time(pid).is_some());
    }
}
