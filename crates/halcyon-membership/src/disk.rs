//! Disk heartbeats: the non-IP path (SPEC 5) over a shared file or block device.
//!
//! Layout: node `n` owns the slot of [`SLOT_SIZE_BYTES`] at offset `n * SLOT_SIZE_BYTES` and is
//! the only writer of it. A slot holds [`SLOT_MAGIC`], the payload length (u16 LE), an FNV-1a
//! checksum of the payload (u64 LE) and the sealed heartbeat; an all-zero slot was never
//! written.
//!
//! Invariants:
//! - All disk I/O runs on the link's own worker thread, so a stalled device never delays the
//!   heartbeat thread (and so never the UDP heartbeats): `send` only queues (bounded, it fails
//!   with `WouldBlock` when the worker is behind), `recv` only waits on a bounded queue. The
//!   worker is spawned by the first `send` or `recv`, that is on the heartbeat thread, so it
//!   inherits that thread's real-time scheduling.
//! - The worker writes its own slot when given a heartbeat (then `fdatasync`, or `O_DSYNC` with
//!   `O_DIRECT`), and reads every peer slot once per read period (`READS_PER_INTERVAL` per
//!   heartbeat interval, within `READ_PERIOD_MIN..=READ_PERIOD_MAX`; the interval is the
//!   shortest in play on the network, which follows changes: `set_interval` hands the new
//!   period to the worker and wakes it, and a shorter period brings its next read forward to
//!   one new period after the last); a slot is delivered only when
//!   its content changed since it was last delivered (every heartbeat carries a new sequence
//!   number, so unchanged content is a stale slot); a torn or invalid slot is skipped and read
//!   again next period.
//! - `O_DIRECT` is used when the file system or device accepts it, so reads see other nodes'
//!   writes and not this node's page cache; buffers are aligned to [`SLOT_SIZE_BYTES`], which
//!   also suits 4 KiB-sector devices. A regular file is created and extended as needed (never
//!   shrunk); a block device must already be large enough.
//! - The peers change while the link runs (`set_peers`: `halcyon apply` added or removed
//!   nodes): checked against a block device's size at once, handed to the worker, which
//!   extends a regular file first and reads the new peers' slots from its next period on.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::heartbeat::LinkPeer;
use crate::link::{Arrived, ArrivedAt, HeartbeatLink};
use crate::wire::SEALED_SIZE_MAX_BYTES;

/// Size and alignment of one node's slot.
pub const SLOT_SIZE_BYTES: usize = 4096;
/// Magic at the start of a written slot.
pub const SLOT_MAGIC: [u8; 4] = *b"HLDS";
const SLOT_HEADER_BYTES: usize = 14;
/// Jobs (heartbeats to write, wake-ups) waiting for the worker (it is behind when this is
/// full).
const WRITE_QUEUE_MAX: usize = 4;
/// Peer changes waiting for the worker.
const PEER_QUEUE_MAX: usize = 4;
/// Received heartbeats (or errors) waiting for the heartbeat thread.
const READ_QUEUE_MAX: usize = 256;
/// Bounds on how often the peer slots are read.
const READ_PERIOD_MIN: Duration = Duration::from_millis(1);
const READ_PERIOD_MAX: Duration = Duration::from_millis(250);
/// Reads per heartbeat interval.
const READS_PER_INTERVAL: u32 = 4;

const _: () = assert!(SLOT_HEADER_BYTES + SEALED_SIZE_MAX_BYTES <= SLOT_SIZE_BYTES);
const _: () = assert!(SEALED_SIZE_MAX_BYTES <= u16::MAX as usize); // The slot's length field.

/// The read period for a heartbeat `interval`.
fn read_period(interval: Duration) -> Duration {
    (interval / READS_PER_INTERVAL).clamp(READ_PERIOD_MIN, READ_PERIOD_MAX)
}

/// What the worker is woken for.
enum Job {
    /// Write this sealed heartbeat into the local slot.
    Write(Vec<u8>),
    /// The read period changed: look at it now.
    ReadPeriodChanged,
}

pub struct DiskLink {
    network: u32,
    direct: bool,
    local_node: u32,
    /// A block device's size (a regular file is extended as needed).
    device_bytes: Option<u64>,
    writes: Option<SyncSender<Job>>,
    peer_changes: SyncSender<Vec<u32>>,
    /// The worker's read period, in microseconds (set here, read by the worker).
    read_period_micros: Arc<AtomicU64>,
    reads: Receiver<io::Result<(Vec<u8>, Instant)>>,
    /// The worker until it is spawned.
    unstarted: Option<Worker>,
    worker: Option<JoinHandle<()>>,
}

/// A slot-sized buffer aligned for `O_DIRECT`, carved out of a larger vector (no unsafe).
struct AlignedSlot {
    storage: Vec<u8>,
    offset: usize,
}

impl AlignedSlot {
    fn new() -> Self {
        let storage = vec![0u8; 2 * SLOT_SIZE_BYTES];
        let offset = storage.as_ptr().align_offset(SLOT_SIZE_BYTES);
        assert!(offset < SLOT_SIZE_BYTES);
        AlignedSlot { storage, offset }
    }

    fn bytes(&mut self) -> &mut [u8] {
        &mut self.storage[self.offset..self.offset + SLOT_SIZE_BYTES]
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn slot_offset(node: u32) -> u64 {
    u64::from(node) * SLOT_SIZE_BYTES as u64
}

/// Fill `slot` with `payload`.
fn encode_slot(slot: &mut [u8], payload: &[u8]) {
    assert!(payload.len() <= SEALED_SIZE_MAX_BYTES);
    slot.fill(0);
    slot[0..4].copy_from_slice(&SLOT_MAGIC);
    slot[4..6].copy_from_slice(&(payload.len() as u16).to_le_bytes());
    slot[6..14].copy_from_slice(&fnv1a(payload).to_le_bytes());
    slot[SLOT_HEADER_BYTES..SLOT_HEADER_BYTES + payload.len()].copy_from_slice(payload);
}

/// The payload of a written, intact slot.
fn decode_slot(slot: &[u8]) -> Option<&[u8]> {
    if slot[0..4] != SLOT_MAGIC {
        return None;
    }
    let len = usize::from(u16::from_le_bytes(slot[4..6].try_into().unwrap()));
    if len > SEALED_SIZE_MAX_BYTES {
        return None;
    }
    let payload = &slot[SLOT_HEADER_BYTES..SLOT_HEADER_BYTES + len];
    (fnv1a(payload).to_le_bytes() == slot[6..14]).then_some(payload)
}

/// The bytes the slots of `local_node` and `peers` need.
fn needed_bytes(local_node: u32, peers: &[u32]) -> (u32, u64) {
    let highest = peers
        .iter()
        .copied()
        .chain([local_node])
        .max()
        .unwrap_or(local_node);
    (highest, slot_offset(highest) + SLOT_SIZE_BYTES as u64)
}

/// Refused when a block device of `size_bytes` has no room for the slots.
fn check_room(size_bytes: u64, local_node: u32, peers: &[u32]) -> io::Result<()> {
    let (highest, needed) = needed_bytes(local_node, peers);
    if size_bytes < needed {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("device is {size_bytes} bytes, slots of node {highest} need {needed}"),
        ));
    }
    Ok(())
}

/// Extends a regular file to hold the slots (never shrinks it).
fn extend_for(file: &File, local_node: u32, peers: &[u32]) -> io::Result<()> {
    let (_, needed) = needed_bytes(local_node, peers);
    if file.metadata()?.len() < needed {
        file.set_len(needed)?;
    }
    Ok(())
}

fn open_device(path: &Path, direct: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true);
    if direct {
        options.custom_flags(libc::O_DIRECT | libc::O_DSYNC);
    }
    options.open(path)
}

impl DiskLink {
    /// Open the shared `path` for `network`, writing slot `local_node` and reading the slots
    /// of `peers`; peer slots are read `READS_PER_INTERVAL` times per heartbeat `interval`.
    pub fn open(
        path: &Path,
        network: u32,
        local_node: u32,
        peers: &[u32],
        interval: Duration,
    ) -> io::Result<Self> {
        assert!(
            !peers.contains(&local_node),
            "the local node is not its own peer"
        );
        let (file, direct) = match open_device(path, true) {
            Ok(file) => (file, true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (open_device(path, false)?, false),
            Err(e) => return Err(e),
        };
        let metadata = file.metadata()?;
        let mut device_bytes = None;
        if metadata.file_type().is_block_device() {
            if !direct {
                tracing::warn!(
                    "disk heartbeat device {} does not accept O_DIRECT: reads may come from this node's page cache and miss other nodes' heartbeats",
                    path.display()
                );
            }
            let mut end = &file;
            let size_bytes = io::Seek::seek(&mut end, io::SeekFrom::End(0))?;
            device_bytes = Some(size_bytes);
            check_room(size_bytes, local_node, peers)?;
        } else {
            extend_for(&file, local_node, peers)?;
        }

        let (writes, write_queue) = mpsc::sync_channel(WRITE_QUEUE_MAX);
        let (peer_changes, peer_queue) = mpsc::sync_channel(PEER_QUEUE_MAX);
        let (read_queue, reads) = mpsc::sync_channel(READ_QUEUE_MAX);
        let read_period_micros = Arc::new(AtomicU64::new(micros(read_period(interval))));
        let worker = Worker {
            file,
            block_device: device_bytes.is_some(),
            direct,
            local_node,
            peers: peers.to_vec(),
            delivered: BTreeMap::new(),
            pending: VecDeque::new(),
            slot: AlignedSlot::new(),
            read_period_micros: Arc::clone(&read_period_micros),
            write_queue,
            peer_queue,
            read_queue,
        };
        Ok(DiskLink {
            network,
            direct,
            local_node,
            device_bytes,
            writes: Some(writes),
            peer_changes,
            read_period_micros,
            reads,
            unstarted: Some(worker),
            worker: None,
        })
    }

    fn ensure_started(&mut self) -> io::Result<()> {
        if let Some(mut worker) = self.unstarted.take() {
            let thread = std::thread::Builder::new()
                .name(format!("halcyon-disk-hb-{}", self.network))
                .spawn(move || worker.run())?;
            self.worker = Some(thread);
        }
        Ok(())
    }

    /// True when the device was opened with `O_DIRECT`.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// How often the worker reads the peers' slots now.
    pub fn read_period(&self) -> Duration {
        Duration::from_micros(self.read_period_micros.load(Ordering::Relaxed))
    }
}

fn micros(period: Duration) -> u64 {
    u64::try_from(period.as_micros()).expect("a read period is at most READ_PERIOD_MAX")
}

impl HeartbeatLink for DiskLink {
    fn network(&self) -> u32 {
        self.network
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.ensure_started()?;
        let writes = self.writes.as_ref().expect("present until drop");
        match writes.try_send(Job::Write(bytes.to_vec())) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "disk heartbeat writes are not keeping up (device slow or stalled)",
            )),
            Err(TrySendError::Disconnected(_)) => {
                Err(io::Error::other("disk heartbeat worker has stopped"))
            }
        }
    }

    /// The slots of `peers` (by number) from the worker's next read period on; refused
    /// (the peers kept) when a peer is this node or a block device is too small for its slot.
    fn set_peers(&mut self, peers: Vec<LinkPeer>) -> io::Result<()> {
        let numbers: Vec<u32> = peers.iter().map(|p| p.node).collect();
        if numbers.contains(&self.local_node) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("node {} is this node, not its peer", self.local_node),
            ));
        }
        if let Some(size_bytes) = self.device_bytes {
            check_room(size_bytes, self.local_node, &numbers)?;
        }
        match self.peer_changes.try_send(numbers) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the disk heartbeat worker has not taken the last peer changes yet",
            )),
            Err(TrySendError::Disconnected(_)) => {
                Err(io::Error::other("disk heartbeat worker has stopped"))
            }
        }
    }

    /// Reads the peers' slots `READS_PER_INTERVAL` times per `interval` from now on (within
    /// the read period's bounds): the worker is woken, and reads at most one new period
    /// after its last read.
    fn set_interval(&mut self, interval: Duration) {
        let period = micros(read_period(interval));
        if self.read_period_micros.swap(period, Ordering::Relaxed) == period {
            return;
        }
        let writes = self.writes.as_ref().expect("present until drop");
        // Full: the worker has jobs queued, and looks at the period after each of them.
        // Disconnected: it has stopped, which `recv` reports.
        let _ = writes.try_send(Job::ReadPeriodChanged);
    }

    fn recv(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        self.ensure_started()?;
        let received = if timeout.is_zero() {
            self.reads.try_recv().ok()
        } else {
            match self.reads.recv_timeout(timeout) {
                Ok(r) => Some(r),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::other("disk heartbeat worker has stopped"));
                }
            }
        };
        Ok(received.transpose()?.map(|(bytes, _)| bytes))
    }

    fn try_recv(&mut self) -> io::Result<Option<Arrived>> {
        self.ensure_started()?;
        Ok(self
            .reads
            .try_recv()
            .ok()
            .transpose()?
            .map(|(bytes, read)| Arrived {
                bytes,
                at: ArrivedAt::Read(read),
            }))
    }
}

impl Drop for DiskLink {
    /// Stops the worker: it sees the write queue closed within one read period (or after the
    /// I/O it is blocked in).
    fn drop(&mut self) {
        drop(self.writes.take());
        if let Some(worker) = self.worker.take()
            && worker.join().is_err()
        {
            tracing::error!(network = self.network, "disk heartbeat worker panicked");
        }
    }
}

struct Worker {
    file: File,
    /// A block device (never extended), not a regular file.
    block_device: bool,
    direct: bool,
    local_node: u32,
    peers: Vec<u32>,
    /// The payload last delivered from each peer's slot.
    delivered: BTreeMap<u32, Vec<u8>>,
    /// Changed slots not yet delivered because the read queue was full.
    pending: VecDeque<io::Result<(Vec<u8>, Instant)>>,
    slot: AlignedSlot,
    /// The read period, in microseconds (the link changes it).
    read_period_micros: Arc<AtomicU64>,
    write_queue: Receiver<Job>,
    peer_queue: Receiver<Vec<u32>>,
    read_queue: SyncSender<io::Result<(Vec<u8>, Instant)>>,
}

impl Worker {
    fn run(&mut self) {
        let mut next_read = Instant::now();
        let mut last_read: Option<Instant> = None;
        loop {
            let wait = next_read.saturating_duration_since(Instant::now());
            match self.write_queue.recv_timeout(wait) {
                Ok(Job::Write(bytes)) => {
                    let result = self.write(&bytes);
                    if let Err(e) = result {
                        self.pending.push_back(Err(e));
                    }
                }
                Ok(Job::ReadPeriodChanged) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while let Ok(peers) = self.peer_queue.try_recv() {
                self.set_peers(peers);
            }
            let period = Duration::from_micros(self.read_period_micros.load(Ordering::Relaxed));
            if let Some(last) = last_read {
                next_read = next_read.min(last + period); // A shorter period: sooner.
            }
            if Instant::now() >= next_read {
                self.read_peers();
                let now = Instant::now();
                last_read = Some(now);
                next_read = now + period;
            }
            while let Some(item) = self.pending.pop_front() {
                match self.read_queue.try_send(item) {
                    Ok(()) => {}
                    Err(TrySendError::Full(item)) => {
                        self.pending.push_front(item);
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
        }
    }

    /// Reads `peers`' slots from now on (a regular file extended for them first: a failure
    /// is reported like a read's, and their slots are read anyway).
    fn set_peers(&mut self, peers: Vec<u32>) {
        if !self.block_device
            && let Err(e) = extend_for(&self.file, self.local_node, &peers)
        {
            self.pending.push_back(Err(e));
        }
        self.delivered.retain(|peer, _| peers.contains(peer));
        self.peers = peers;
    }

    fn write(&mut self, payload: &[u8]) -> io::Result<()> {
        encode_slot(self.slot.bytes(), payload);
        self.file
            .write_all_at(self.slot.bytes(), slot_offset(self.local_node))?;
        if !self.direct {
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn read_peers(&mut self) {
        if self.pending.len() >= READ_QUEUE_MAX {
            return; // The heartbeat thread is behind; newer content will be read next period.
        }
        for i in 0..self.peers.len() {
            let peer = self.peers[i];
            if let Err(e) = self
                .file
                .read_exact_at(self.slot.bytes(), slot_offset(peer))
            {
                self.pending.push_back(Err(e));
                return;
            }
            let Some(payload) = decode_slot(self.slot.bytes()) else {
                continue; // Never written, or torn: read again next period.
            };
            if self
                .delivered
                .get(&peer)
                .is_some_and(|last| last.as_slice() == payload)
            {
                continue; // Stale.
            }
            let payload = payload.to_vec();
            self.delivered.insert(peer, payload.clone());
            self.pending.push_back(Ok((payload, Instant::now())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_round_trip_and_torn_slot() {
        let mut slot = AlignedSlot::new();
        assert_eq!(slot.bytes().as_ptr() as usize % SLOT_SIZE_BYTES, 0);
        assert_eq!(
            decode_slot(slot.bytes()),
            None,
            "a zero slot was never written"
        );
        encode_slot(slot.bytes(), b"heartbeat");
        assert_eq!(decode_slot(slot.bytes()), Some(&b"heartbeat"[..]));
        slot.bytes()[SLOT_HEADER_BYTES] ^= 1;
        assert_eq!(decode_slot(slot.bytes()), None, "a torn slot is skipped");
    }
}
