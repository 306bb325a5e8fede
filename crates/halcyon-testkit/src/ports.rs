//! Blocks of consecutive ports that no two test processes on this machine hold at once.
//!
//! Every port has a lock file `port-N.lock` under one fixed directory ([`LOCK_DIRECTORY`]). A
//! block is handed out only once an exclusive, non-blocking `flock(2)` is held on the file of
//! every one of its ports and every port binds (TCP and UDP) on every address the caller will
//! use. The locks belong to the returned [`PortBlock`]: dropping it releases them, and the
//! kernel releases them when the process dies, however it dies. `flock` locks belong to the
//! open file, so two threads of one process exclude each other exactly like two processes.
//!
//! Lock files are never deleted: removing a file another process is about to lock would let
//! two processes lock two different files of the same name.
//!
//! The range [`PORTS_LOW`]..[`PORTS_HIGH`] lies below Linux's default ephemeral range
//! (32768..60999), so outgoing connections do not take ports of a block, and below the ports
//! the daemon's tests used to pick by hand (27100..28200), so a test of an older checkout
//! running beside this one does not collide either.

use std::fs::{File, OpenOptions};
use std::net::{IpAddr, Ipv4Addr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The directory of the lock files, shared by every process on the machine.
pub const LOCK_DIRECTORY: &str = "/tmp/halcyon-testkit-ports";
/// First port ever handed out.
pub const PORTS_LOW: u16 = 20_000;
/// One past the last port ever handed out.
pub const PORTS_HIGH: u16 = 27_000;
/// Longest block.
pub const BLOCK_PORTS_MAX: u16 = 100;
/// Modes of the lock directory (everyone may create files, like /tmp) and of a lock file.
const DIRECTORY_MODE: u32 = 0o1777;
const LOCK_FILE_MODE: u32 = 0o666;
/// Most addresses a block is checked on.
pub const CHECK_ADDRESSES_MAX: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("a block of {0} ports was asked for; a block has 1 to {BLOCK_PORTS_MAX} ports")]
    BlockLength(u16),
    #[error("{0} addresses to check; at most {CHECK_ADDRESSES_MAX}")]
    TooManyAddresses(usize),
    #[error("the port range {low}..{high} holds no block of {len} ports")]
    EmptyRange { low: u16, high: u16, len: u16 },
    #[error("lock directory {path}: {source}")]
    LockDirectory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lock file {path}: {source}")]
    LockFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no free block of {len} ports in {low}..{high} ({candidates} candidates: {locked} held by \
         other tests, {in_use} with a port already bound on {addresses})"
    )]
    Exhausted {
        len: u16,
        low: u16,
        high: u16,
        candidates: usize,
        locked: usize,
        in_use: usize,
        addresses: String,
    },
}

/// Consecutive ports `base..base + len`, reserved for as long as this value lives.
#[derive(Debug)]
pub struct PortBlock {
    base: u16,
    len: u16,
    // Closing these files releases the locks.
    _locks: Vec<File>,
}

impl PortBlock {
    /// The first port of the block.
    pub fn base(&self) -> u16 {
        self.base
    }

    pub fn len(&self) -> u16 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The port `offset` ports after the base. Panics when the block is shorter: asking for a
    /// port the caller did not reserve is a mistake in the test.
    pub fn port(&self, offset: u16) -> u16 {
        assert!(
            offset < self.len,
            "port offset {offset} outside a block of {} ports",
            self.len
        );
        self.base + offset
    }

    pub fn ports(&self) -> std::ops::Range<u16> {
        self.base..self.base + self.len
    }
}

/// Where blocks come from: the lock directory, the range and the addresses to check.
#[derive(Debug, Clone)]
pub struct PortAllocator {
    directory: PathBuf,
    low: u16,
    high: u16,
    addresses: Vec<IpAddr>,
}

impl Default for PortAllocator {
    /// The machine-wide allocator: [`LOCK_DIRECTORY`], [`PORTS_LOW`]..[`PORTS_HIGH`], ports
    /// checked on 127.0.0.1.
    fn default() -> Self {
        PortAllocator {
            directory: PathBuf::from(LOCK_DIRECTORY),
            low: PORTS_LOW,
            high: PORTS_HIGH,
            addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        }
    }
}

impl PortAllocator {
    /// An allocator with its own lock directory and range (tests of the allocator itself).
    pub fn with_directory(directory: impl Into<PathBuf>, low: u16, high: u16) -> Self {
        PortAllocator {
            directory: directory.into(),
            low,
            high,
            ..PortAllocator::default()
        }
    }

    /// Checks every port on these addresses (e.g. every node's address) instead of 127.0.0.1.
    pub fn check_addresses(mut self, addresses: impl IntoIterator<Item = IpAddr>) -> Self {
        self.addresses = addresses.into_iter().collect();
        self
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// A block of `len` consecutive ports that is locked by no other holder and binds on every
    /// checked address. The search is bounded: each aligned block of the range is tried once,
    /// starting at a place derived from the process id so that parallel processes spread out.
    pub fn allocate(&self, len: u16) -> Result<PortBlock, PortError> {
        if len == 0 || len > BLOCK_PORTS_MAX {
            return Err(PortError::BlockLength(len));
        }
        if self.addresses.len() > CHECK_ADDRESSES_MAX {
            return Err(PortError::TooManyAddresses(self.addresses.len()));
        }
        let candidates = usize::from(self.high.saturating_sub(self.low) / len);
        if candidates == 0 {
            return Err(PortError::EmptyRange {
                low: self.low,
                high: self.high,
                len,
            });
        }
        self.create_directory()?;
        let first = std::process::id() as usize % candidates;
        let (mut locked, mut in_use) = (0, 0);
        for k in 0..candidates {
            let base = self.low + ((first + k) % candidates) as u16 * len;
            let Some(locks) = self.lock_block(base, len)? else {
                locked += 1;
                continue;
            };
            if !(base..base + len).all(|port| self.binds(port)) {
                in_use += 1;
                continue;
            }
            return Ok(PortBlock {
                base,
                len,
                _locks: locks,
            });
        }
        Err(PortError::Exhausted {
            len,
            low: self.low,
            high: self.high,
            candidates,
            locked,
            in_use,
            addresses: self
                .addresses
                .iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Creates the lock directory, writable by every user like /tmp (sticky), so that tests
    /// run by different users still see each other's locks.
    fn create_directory(&self) -> Result<(), PortError> {
        let error = |source| PortError::LockDirectory {
            path: self.directory.clone(),
            source,
        };
        if !self.directory.is_dir() {
            std::fs::create_dir_all(&self.directory).map_err(error)?;
            // Another user's directory keeps its own mode; ours is opened to everyone.
            let _ = std::fs::set_permissions(
                &self.directory,
                std::fs::Permissions::from_mode(DIRECTORY_MODE),
            );
        }
        Ok(())
    }

    /// The locks of every port of the block, or None when one is held elsewhere (the locks
    /// taken so far are released on return).
    fn lock_block(&self, base: u16, len: u16) -> Result<Option<Vec<File>>, PortError> {
        let mut locks = Vec::with_capacity(usize::from(len));
        for port in base..base + len {
            let path = self.directory.join(format!("port-{port}.lock"));
            // A lock file another user created may be read-only to us: flock needs no write
            // access.
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .mode(LOCK_FILE_MODE)
                .open(&path)
                .or_else(|_| File::open(&path))
                .map_err(|source| PortError::LockFile {
                    path: path.clone(),
                    source,
                })?;
            // SAFETY: flock(2) on a descriptor this function owns.
            let status = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if status != 0 {
                let error = std::io::Error::last_os_error();
                if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    return Ok(None);
                }
                return Err(PortError::LockFile {
                    path,
                    source: error,
                });
            }
            locks.push(file);
        }
        Ok(Some(locks))
    }

    fn binds(&self, port: u16) -> bool {
        self.addresses.iter().all(|&address| {
            TcpListener::bind((address, port)).is_ok() && UdpSocket::bind((address, port)).is_ok()
        })
    }
}

/// A block of `len` ports from the machine-wide allocator, checked on `addresses`.
pub fn allocate(
    len: u16,
    addresses: impl IntoIterator<Item = IpAddr>,
) -> Result<PortBlock, PortError> {
    PortAllocator::default()
        .check_addresses(addresses)
        .allocate(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A private allocator over a range reserved from the machine-wide one, so that these
    /// tests never race the other tests of the machine for real ports.
    fn private(len: u16) -> (tempfile::TempDir, PortBlock, PortAllocator) {
        let reserved = allocate(len, [IpAddr::V4(Ipv4Addr::LOCALHOST)]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let allocator =
            PortAllocator::with_directory(dir.path(), reserved.base(), reserved.base() + len);
        (dir, reserved, allocator)
    }

    #[test]
    fn a_held_block_is_skipped_and_freed_on_drop() {
        let (_dir, _reserved, allocator) = private(6);
        let a = allocator.allocate(3).unwrap();
        let b = allocator.allocate(3).unwrap();
        assert_ne!(a.base(), b.base());
        assert!(a.ports().all(|p| !b.ports().contains(&p)));
        match allocator.allocate(3) {
            Err(PortError::Exhausted {
                locked: 2,
                in_use: 0,
                candidates: 2,
                ..
            }) => {}
            other => panic!("expected both blocks held: {other:?}"),
        }
        let freed = a.base();
        drop(a);
        assert_eq!(allocator.allocate(3).unwrap().base(), freed);
    }

    #[test]
    fn a_bound_port_makes_its_block_skipped() {
        let (_dir, reserved, allocator) = private(4);
        // A port of the first block of 2 is bound by someone else.
        let _busy = TcpListener::bind(("127.0.0.1", reserved.base())).unwrap();
        let block = allocator.allocate(2).unwrap();
        assert_eq!(block.base(), reserved.base() + 2);
        let error = allocator.allocate(2).unwrap_err().to_string();
        assert!(
            error.contains("1 held by other tests, 1 with a port already bound on 127.0.0.1"),
            "{error}"
        );
    }

    #[test]
    fn bad_requests_are_precise_errors() {
        let (_dir, reserved, allocator) = private(2);
        assert!(matches!(
            allocator.allocate(0),
            Err(PortError::BlockLength(0))
        ));
        assert!(matches!(
            allocator.allocate(BLOCK_PORTS_MAX + 1),
            Err(PortError::BlockLength(_))
        ));
        let (low, high) = (reserved.base(), reserved.base() + 2);
        assert_eq!(
            allocator.allocate(3).unwrap_err().to_string(),
            format!("the port range {low}..{high} holds no block of 3 ports")
        );
        let block = allocator.allocate(2).unwrap();
        assert_eq!(block.port(1), low + 1);
        let blocked = PortAllocator::with_directory("/proc/no-such-dir", low, high);
        assert!(matches!(
            blocked.allocate(1),
            Err(PortError::LockDirectory { .. })
        ));
    }

    #[test]
    fn threads_never_receive_overlapping_blocks() {
        let (_dir, _reserved, allocator) = private(30);
        let blocks: Vec<PortBlock> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..10)
                .map(|_| s.spawn(|| allocator.allocate(3).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut ports: Vec<u16> = blocks.iter().flat_map(PortBlock::ports).collect();
        ports.sort_unstable();
        let count = ports.len();
        ports.dedup();
        assert_eq!(ports.len(), count, "overlapping blocks: {blocks:?}");
        assert_eq!(count, 30);
    }
}
