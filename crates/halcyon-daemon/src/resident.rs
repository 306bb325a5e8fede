//! The daemon's resident code after its start (issue 21, the idle footprint).
//!
//! Starting a daemon runs code that an idle daemon never runs again: reading and checking
//! the files, the certificates, opening the store, the first election. The kernel keeps
//! every page of its executable that was touched mapped (and the fault-around maps the
//! pages beside each one), and the heartbeat thread's `mlockall(MCL_ONFAULT)` locks them:
//! measured, an idle daemon held 16-17 MB of its 18 MB of code. Once started, the daemon
//! unmaps the code pages of its own executable ([`drop_start_code`]); the pages it runs from
//! then on are mapped again at their first use (a minor fault: they are still in the page
//! cache) and locked again, since the mappings keep their lock-on-fault flag.
//!
//! Only read-only private mappings of the executable with no private (copy-on-write) pages
//! are unmapped ([`discardable`]): unmapping them loses nothing, the same bytes come back
//! from the file. The writable data, the heap, the stacks and the libraries are not touched.
//! A mapping locked whole (a kernel without `MCL_ONFAULT`) is left as it is: unmapping
//! would not let it shrink.

use std::io;
use std::path::Path;

/// One mapping of `/proc/self/smaps` as far as [`discardable`] needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: usize,
    pub end: usize,
    pub perms: String,
    pub path: String,
    /// Resident, kB.
    pub rss_kb: u64,
    /// Private copy-on-write pages, kB.
    pub anonymous_kb: u64,
    /// Locked pages, kB.
    pub locked_kb: u64,
    /// `VmFlags`: `lo` (locked), `lf` (locked on fault).
    pub flags: Vec<String>,
}

impl Mapping {
    fn locked(&self) -> bool {
        self.flags.iter().any(|f| f == "lo")
    }

    fn locked_on_fault(&self) -> bool {
        self.flags.iter().any(|f| f == "lf")
    }
}

/// Parses `/proc/PID/smaps` text; `None` on a line it does not understand where it needs one.
pub fn parse_smaps(text: &str) -> Option<Vec<Mapping>> {
    let mut mappings: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            )
        {
            let perms = words.next()?.to_owned();
            // offset, device, inode, then the path (which may hold spaces).
            let path = words.skip(3).collect::<Vec<_>>().join(" ");
            mappings.push(Mapping {
                start,
                end,
                perms,
                path,
                rss_kb: 0,
                anonymous_kb: 0,
                locked_kb: 0,
                flags: Vec::new(),
            });
            continue;
        }
        let current = mappings.last_mut()?;
        match first {
            "Rss:" => current.rss_kb = words.next()?.parse().ok()?,
            "Anonymous:" => current.anonymous_kb = words.next()?.parse().ok()?,
            "Locked:" => current.locked_kb = words.next()?.parse().ok()?,
            "VmFlags:" => current.flags = words.map(str::to_owned).collect(),
            _ => {}
        }
    }
    Some(mappings)
}

/// The mappings whose pages can be unmapped without losing a byte: `executable`'s private,
/// read-only mappings with no copy-on-write page, not locked whole.
pub fn discardable<'a>(mappings: &'a [Mapping], executable: &str) -> Vec<&'a Mapping> {
    mappings
        .iter()
        .filter(|m| {
            let perms = m.perms.as_bytes();
            m.path == executable
                && perms.len() == 4
                && perms[1] != b'w'
                && perms[3] == b'p'
                && m.anonymous_kb == 0
                && (!m.locked() || m.locked_on_fault())
                && m.end > m.start
        })
        .collect()
}

/// What [`drop_start_code`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    pub mappings: usize,
    /// Resident before, kB.
    pub rss_kb: u64,
}

/// Unmaps the pages of this process's own code ([`discardable`] mappings of
/// `/proc/self/exe`); they come back, and are locked again, where they run next.
pub fn drop_start_code() -> io::Result<Dropped> {
    let executable = std::fs::read_link("/proc/self/exe")?;
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mappings = parse_smaps(&smaps)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/self/smaps"))?;
    let mut dropped = Dropped::default();
    for mapping in discardable(&mappings, &path_text(&executable)) {
        unmap(mapping)?;
        dropped.mappings += 1;
        dropped.rss_kb += mapping.rss_kb;
    }
    Ok(dropped)
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

/// Unmaps `mapping`'s pages, keeping its lock-on-fault: `MADV_DONTNEED_LOCKED` (Linux 5.18);
/// before it, unlock, `MADV_DONTNEED` and lock on fault again.
fn unmap(mapping: &Mapping) -> io::Result<()> {
    let (start, length) = (
        mapping.start as *mut libc::c_void,
        mapping.end - mapping.start,
    );
    if !mapping.locked() {
        // SAFETY: the range is one whole read-only private file mapping of this process
        // with no private page (checked by `discardable`): its pages come back from the file.
        return check(unsafe { libc::madvise(start, length, libc::MADV_DONTNEED) });
    }
    // SAFETY: as above.
    match check(unsafe { libc::madvise(start, length, libc::MADV_DONTNEED_LOCKED) }) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // SAFETY: as above; munlock and mlock2 change only the range's locking.
            check(unsafe { libc::munlock(start, length) })?;
            let discarded = check(unsafe { libc::madvise(start, length, libc::MADV_DONTNEED) });
            check(unsafe { libc::mlock2(start, length, libc::MLOCK_ONFAULT) })?;
            discarded
        }
        other => other,
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// This process's resident pages of `executable`'s code mappings, kB.
#[cfg(test)]
fn resident_code_kb() -> u64 {
    let executable = path_text(&std::fs::read_link("/proc/self/exe").unwrap());
    let mappings = parse_smaps(&std::fs::read_to_string("/proc/self/smaps").unwrap()).unwrap();
    discardable(&mappings, &executable)
        .iter()
        .map(|m| m.rss_kb)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0000000-55d0c0100000 r--p 00000000 fd:00 123 /usr/sbin/halcyon
Rss:                1024 kB
Anonymous:             0 kB
VmFlags: rd mr mw me lo lf
55d0c0100000-55d0c1000000 r-xp 00100000 fd:00 123 /usr/sbin/halcyon
Rss:               15000 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me lo lf
55d0c1000000-55d0c1080000 r--p 01000000 fd:00 123 /usr/sbin/halcyon
Rss:                 500 kB
Anonymous:           500 kB
VmFlags: rd mr mw me lo lf ac
55d0c1080000-55d0c1090000 rw-p 01080000 fd:00 123 /usr/sbin/halcyon
Rss:                  64 kB
Anonymous:            64 kB
VmFlags: rd wr mr mw me lo lf ac
55d0c2000000-55d0c2100000 r-xp 00000000 fd:00 123 /usr/sbin/halcyon
Rss:                 900 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me lo
7f0000000000-7f0000100000 r-xp 00000000 fd:00 77 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                1000 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me lo lf
7f0000200000-7f0000300000 rw-p 00000000 00:00 0 
Rss:                 100 kB
Anonymous:           100 kB
VmFlags: rd wr mr mw me lo lf ac
7f0000400000-7f0000500000 r-xp 00000000 fd:00 124 /opt/my halcyon/halcyon
Rss:                  10 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
";

    /// Only the executable's own read-only private mappings without a copy-on-write page,
    /// locked on fault or not locked, are discardable: never its relocated data (private
    /// pages), its writable data, a mapping locked whole, a library or the heap.
    #[test]
    fn only_the_executables_clean_read_only_mappings_are_discardable() {
        let mappings = parse_smaps(SMAPS).expect("parses");
        assert_eq!(mappings.len(), 8);
        assert_eq!(mappings[1].rss_kb, 15000);
        assert_eq!(mappings[2].anonymous_kb, 500);
        assert_eq!(mappings[6].path, "");
        assert_eq!(mappings[7].path, "/opt/my halcyon/halcyon");
        let chosen: Vec<(usize, usize)> = discardable(&mappings, "/usr/sbin/halcyon")
            .iter()
            .map(|m| (m.start, m.end))
            .collect();
        assert_eq!(
            chosen,
            vec![
                (0x55d0c0000000, 0x55d0c0100000),
                (0x55d0c0100000, 0x55d0c1000000)
            ]
        );
        let spaced = discardable(&mappings, "/opt/my halcyon/halcyon");
        assert_eq!(spaced.len(), 1, "a path with a space, not locked");
    }

    #[test]
    fn smaps_it_cannot_read_is_refused() {
        assert_eq!(
            parse_smaps("Rss: 12 kB\n"),
            None,
            "a field before any mapping"
        );
        assert_eq!(
            parse_smaps("00400000-00500000 r-xp 0 fd:00 1 /bin/x\nRss: many kB\n"),
            None
        );
    }

    /// This test program's own code: after the call, fewer of its pages are resident than
    /// before, and the program runs on (what it runs next is faulted back).
    #[test]
    fn the_code_of_this_process_is_unmapped_and_runs_on() {
        // Run a good deal of code first, so that much of it is resident.
        let before = resident_code_kb();
        let dropped = drop_start_code().expect("drops");
        let after = resident_code_kb();
        assert!(dropped.mappings >= 1 && dropped.rss_kb > 0, "{dropped:?}");
        assert!(
            after < before,
            "resident code {before} kB before, {after} kB after"
        );
        // The program runs on: formatting and parsing fault their code back.
        let text = format!("{:?}", parse_smaps(SMAPS));
        assert!(text.contains("halcyon"));
    }

    /// A mapping locked on fault (the daemon's, after the heartbeat thread's `mlockall`)
    /// is unmapped too and stays locked on fault: what is faulted back is locked again.
    #[test]
    fn a_mapping_locked_on_fault_is_unmapped_and_stays_locked_on_fault() {
        let executable = path_text(&std::fs::read_link("/proc/self/exe").unwrap());
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mappings = parse_smaps(&smaps).unwrap();
        let code = discardable(&mappings, &executable)
            .into_iter()
            .find(|m| m.perms == "r-xp")
            .expect("this program's code")
            .clone();
        let (start, length) = (code.start as *mut libc::c_void, code.end - code.start);
        // SAFETY: locks (on fault) a mapping of this process; unlocked below.
        if unsafe { libc::mlock2(start, length, libc::MLOCK_ONFAULT) } != 0 {
            eprintln!(
                "skipped: mlock2 refused ({}); needs CAP_IPC_LOCK or a larger RLIMIT_MEMLOCK",
                io::Error::last_os_error()
            );
            return;
        }
        let mapping_now = || {
            parse_smaps(&std::fs::read_to_string("/proc/self/smaps").unwrap())
                .unwrap()
                .into_iter()
                .find(|m| m.start == code.start)
                .unwrap()
        };
        let locked_before = mapping_now().locked_kb;
        drop_start_code().expect("drops");
        let again = mapping_now();
        let locked_after = again.locked_kb;
        // SAFETY: as above.
        unsafe { libc::munlock(start, length) };
        assert!(
            again.locked() && again.locked_on_fault(),
            "{:?}",
            again.flags
        );
        assert!(
            again.rss_kb < code.rss_kb && locked_after < locked_before,
            "resident {} -> {} kB, locked {locked_before} -> {locked_after} kB",
            code.rss_kb,
            again.rss_kb
        );
        assert!(locked_after > 0, "what ran since is locked again");
    }
}
