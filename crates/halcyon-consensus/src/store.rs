//! The redb storage of one node: the Raft log, its metadata and the state machine's snapshot.
//!
//! One database file holds two tables:
//! - `log`: entry index -> JSON of the entry;
//! - `meta`: `vote`, `committed`, `last_purged` (JSON log ids or vote), `snapshot_meta` (JSON of
//!   the snapshot's metadata: last applied log id, membership, id), `snapshot_data` (the
//!   application's snapshot bytes) and `format` (the layout below).
//!
//! Every value is stored sealed (`Sealed`): a 4-byte mark, the CRC-32 of the payload, the
//! payload. redb checks its pages' checksums only when it repairs a file, and a changed digit
//! in an entry used to be applied without a word (issue 15). Every value is checked where it
//! is read, and the whole database once at open: a mismatch is a [`StoreError::Corrupt`]
//! naming the file, the table and the log index or key, and the node refuses to start. A
//! database of the earlier layout (values unsealed, no `format` key) is sealed in place, in
//! one transaction, at open.
//!
//! At open redb also checks every page of the last commit ([`open_whole`]), and is never let
//! fall back to the commit before it: after a kill, a damaged last commit made redb roll back
//! silently, and the node forgot entries it had acknowledged (a [`StoreError::Damaged`] or
//! [`StoreError::Corrupt`] now). Durable commits are made in two phases, so a power loss
//! during one cannot leave a last commit that fails its checksums.
//!
//! Invariants:
//! - [`LogStore`] reports an append flushed only after its write transaction committed with
//!   `Durability::Immediate`, in two phases; the vote and purges are written durably too. The committed log id
//!   is written with `Durability::None` (made durable by the next durable commit, or on demand by
//!   [`Durable::persist`]): losing it only means less is re-applied at start, which openraft
//!   allows.
//! - the entries kept are exactly those after `last_purged`: purge writes the new `last_purged`
//!   and deletes up to it in one transaction;
//! - the application's state is persisted only as a snapshot, together with the last applied
//!   log id and membership it contains. A stored snapshot is only replaced by one that is not
//!   older (by last log id). At open the application is restored from it; openraft then
//!   re-applies the committed entries after it.
//! - a slow disk is simulated only by waiting: when the [`FaultHook`] sets a disk delay for this
//!   node, [`LogStore`] sleeps that long (tokio time, so simulated time in a simulator) before
//!   the durable write of an append or a vote, never while holding a transaction. Without a
//!   delay it does not wait at all.
//! - a full or failing disk is simulated only by refusing: when the [`FaultHook`] sets a disk
//!   error for this node, every write of the store (append, truncate, purge, vote, committed
//!   log id, snapshot) returns the error redb gives when the disk is full (`ENOSPC` from the
//!   commit) before it begins a transaction, so nothing is written; reads still work.

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, LogState, OptionalSend,
    RaftLogReader, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership, Vote,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Application, FaultHook, NodeAddrs, NodeId, Reply, TypeConfig};

const LOG_TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";
const KEY_SNAPSHOT_META: &str = "snapshot_meta";
const KEY_SNAPSHOT_DATA: &str = "snapshot_data";
const KEY_FORMAT: &str = "format";
/// The layout written by this version: every value sealed.
const FORMAT_SEALED: &[u8] = b"sealed-crc32-v1";
/// What a sealed value starts with.
const SEAL_MARK: &[u8; 4] = b"hcs\x01";
const SEAL_HEADER: usize = 8;

type Meta = SnapshotMeta<NodeId, NodeAddrs>;
type Membership = StoredMembership<NodeId, NodeAddrs>;
type Error = StorageError<NodeId>;

/// What an operator does with a node whose store cannot be trusted.
const REBUILD_ADVICE: &str = "Rebuild the node: move its state directory aside (keep it for \
     analysis) and start it again; with a new store it answers no Raft request until the \
     coordinator has taken it out of the membership, then it copies the log from the other \
     nodes and votes again";

/// A failure of the database or of its contents.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening: {0}")]
    Database(#[from] redb::DatabaseError),
    #[error("transaction: {0}")]
    Transaction(#[from] redb::TransactionError),
    #[error("table: {0}")]
    Table(#[from] redb::TableError),
    #[error("storage: {0}")]
    Storage(#[from] redb::StorageError),
    #[error("commit: {0}")]
    Commit(#[from] redb::CommitError),
    #[error("durability: {0}")]
    Durability(#[from] redb::SetDurabilityError),
    #[error("encoding: {0}")]
    Encoding(#[from] serde_json::Error),
    /// A stored value that fails its checksum or does not decode.
    #[error(
        "{file}: table `{table}`, {key}: {what}. This node's copy of the replicated log cannot \
         be trusted and it will not start with it. {advice}",
        file = file.display(),
        advice = REBUILD_ADVICE
    )]
    Corrupt {
        file: PathBuf,
        table: &'static str,
        key: String,
        what: String,
    },
    /// A database whose pages fail redb's checksums (no single value to name).
    #[error(
        "{file}: {what}. This node's copy of the replicated log cannot be trusted and it will \
         not start with it. {advice}",
        file = file.display(),
        advice = REBUILD_ADVICE
    )]
    Damaged { file: PathBuf, what: String },
    #[error("{file}: unknown store format {format:?} (written by a newer Halcyon?)", file = file.display())]
    UnknownFormat { file: PathBuf, format: String },
    #[error("the application refused the snapshot: {0}")]
    Restore(String),
    #[cfg(test)]
    #[error("injected commit failure")]
    Injected,
}

/// Linux's `ENOSPC` ("No space left on device"): what a write to a full disk fails with.
const ENOSPC: i32 = 28;

/// The error a write of this store returns when the disk under it is full: redb's commit
/// failed on an I/O error.
fn disk_full() -> StoreError {
    StoreError::Commit(redb::CommitError::Storage(redb::StorageError::Io(
        std::io::Error::from_raw_os_error(ENOSPC),
    )))
}

/// The node's disk as the fault hook makes it (tests and the simulator; the daemon's hook is
/// empty): slow, full, or neither.
#[derive(Clone, Debug)]
struct Disk {
    node_id: NodeId,
    fault_hook: FaultHook,
}

impl Disk {
    /// Waits as long as a write to a slow disk would take: the disk delay the fault hook sets
    /// for this node. Returns at once (without yielding) when there is none.
    async fn wait_if_slow(&self) {
        let delay = self.fault_hook.disk_delay(self.node_id);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    /// Fails as a write to a full disk does when the fault hook sets a disk error for this
    /// node. Called before a write transaction begins.
    fn writable(&self) -> Result<(), StoreError> {
        if self.fault_hook.disk_error(self.node_id) {
            Err(disk_full())
        } else {
            Ok(())
        }
    }
}

fn io_error(subject: ErrorSubject<NodeId>, verb: ErrorVerb, e: StoreError) -> Error {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

/// `payload` with its seal: the mark, the CRC-32 of the payload (little endian), the payload.
fn seal(payload: &[u8]) -> Vec<u8> {
    let mut sealed = Vec::with_capacity(SEAL_HEADER + payload.len());
    sealed.extend_from_slice(SEAL_MARK);
    sealed.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    sealed.extend_from_slice(payload);
    sealed
}

/// The payload of a sealed value, or what is wrong with it.
fn unseal(sealed: &[u8]) -> Result<&[u8], String> {
    if sealed.len() < SEAL_HEADER || &sealed[..4] != SEAL_MARK {
        return Err("the value is not sealed (its checksum header is damaged)".to_owned());
    }
    let stored = u32::from_le_bytes(sealed[4..8].try_into().expect("4 bytes"));
    let payload = &sealed[SEAL_HEADER..];
    let actual = crc32fast::hash(payload);
    if stored != actual {
        return Err(format!(
            "checksum mismatch (stored {stored:08x}, computed {actual:08x}): the bytes changed on disk"
        ));
    }
    Ok(payload)
}

/// Where a value lives, to name it when it is corrupt.
#[derive(Clone, Debug)]
struct Place {
    file: Arc<Path>,
}

impl Place {
    fn corrupt(
        &self,
        table: &'static str,
        key: &dyn std::fmt::Display,
        what: String,
    ) -> StoreError {
        StoreError::Corrupt {
            file: self.file.to_path_buf(),
            table,
            key: key.to_string(),
            what,
        }
    }

    /// The checked payload of a value read from `table` under `key`.
    fn payload<'a>(
        &self,
        table: &'static str,
        key: &dyn std::fmt::Display,
        sealed: &'a [u8],
    ) -> Result<&'a [u8], StoreError> {
        unseal(sealed).map_err(|what| self.corrupt(table, key, what))
    }

    /// The checked and decoded JSON value read from `table` under `key`.
    fn decode<T: DeserializeOwned>(
        &self,
        table: &'static str,
        key: &dyn std::fmt::Display,
        sealed: &[u8],
    ) -> Result<T, StoreError> {
        let payload = self.payload(table, key, sealed)?;
        serde_json::from_slice(payload)
            .map_err(|e| self.corrupt(table, key, format!("the value does not decode: {e}")))
    }
}

/// A log table key, as an error names it.
struct LogIndex(u64);

impl std::fmt::Display for LogIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "log index {}", self.0)
    }
}

/// A meta table key, as an error names it.
struct MetaKey<'a>(&'a str);

impl std::fmt::Display for MetaKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "key `{}`", self.0)
    }
}

/// How far into its repair redb is when it has found that the last commit's pages fail their
/// checksums and is about to fall back to the commit before it (`RepairSession::progress`:
/// 0.0 when a repair starts, 0.3 only on that path, 0.6 and 0.9 for the allocator scans that
/// every repair makes). Checked by
/// `tests::a_damaged_last_commit_of_a_database_written_in_one_phase_refuses_the_start`.
const REDB_ROLLBACK_PROGRESS: std::ops::Range<f64> = 0.1..0.5;

/// Opens (or creates) the database at `place` checking every page of its committed trees
/// against redb's checksums, and never lets redb fall back to an earlier commit.
///
/// redb keeps the checksums of its pages but verifies them only in a repair, and a repair that
/// finds the last commit damaged rolls back to the one before it without a word. For a Raft
/// store that is amnesia: the node forgets entries (or a vote) it acknowledged, and a majority
/// that counted on it can lose a committed entry (issue 15: the lab campaign lost committed
/// events this way). So the check runs at every open, a rollback is refused, and every durable
/// commit is made in two phases ([`durable`]) so that a power loss during a commit can never
/// leave a last commit that fails its checksums: a damaged one is always damage.
///
/// When the check fails, the values are read through once more without it (their own
/// checksums name the table and the key), for the error to say what changed where it can.
fn open_whole(place: &Place) -> Result<Database, StoreError> {
    let checked = Database::builder()
        .set_check_integrity_on_open(true)
        .set_repair_callback(|session| {
            if REDB_ROLLBACK_PROGRESS.contains(&session.progress()) {
                session.abort();
            }
        })
        .create(&place.file);
    match checked {
        Ok(db) => Ok(db),
        Err(redb::DatabaseError::RepairAborted) => Err(diagnose(
            place,
            "the last commit fails its checksums (redb would have rolled back to the commit \
             before it, forgetting what this node acknowledged)",
        )),
        Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(what))) => Err(diagnose(
            place,
            &format!("the file fails its checksums ({what})"),
        )),
        Err(e) => Err(e.into()),
    }
}

/// The error for a database whose pages failed redb's check: the first value whose own
/// checksum fails, read through a plain open that may not repair anything, or else `what`.
fn diagnose(place: &Place, what: &str) -> StoreError {
    let plain = Database::builder()
        .set_repair_callback(|session| session.abort())
        .open(&place.file);
    if let Ok(db) = plain
        && let Err(e @ StoreError::Corrupt { .. }) = check_values(&db, place)
    {
        return e;
    }
    StoreError::Damaged {
        file: place.file.to_path_buf(),
        what: what.to_owned(),
    }
}

/// Makes `txn` commit durably, in two phases: redb writes the new commit and syncs, then makes
/// it the current one and syncs again, so a commit cut short by a power loss leaves the one
/// before it current and whole ([`open_whole`] relies on it).
fn durable(txn: &mut redb::WriteTransaction) -> Result<(), StoreError> {
    txn.set_durability(Durability::Immediate)?;
    txn.set_two_phase_commit(true);
    Ok(())
}

/// Brings the database to the sealed layout and checks every value in it: a new database is
/// marked sealed, one of the earlier layout is sealed in one transaction, a sealed one is read
/// through (every entry and meta value), so corruption stops the node at start.
fn check_or_seal(db: &Database, place: &Place) -> Result<(), StoreError> {
    let format = {
        let txn = db.begin_read()?;
        let meta = txn.open_table(META_TABLE)?;
        meta.get(KEY_FORMAT)?.map(|v| v.value().to_vec())
    };
    match format {
        Some(format) if place.payload("meta", &MetaKey(KEY_FORMAT), &format)? == FORMAT_SEALED => {
            check_values(db, place)
        }
        Some(format) => Err(StoreError::UnknownFormat {
            file: place.file.to_path_buf(),
            format: String::from_utf8_lossy(unseal(&format).unwrap_or(&format)).into_owned(),
        }),
        None => seal_in_place(db, place),
    }
}

/// Reads every value of a sealed database through its checksum: the first that fails is a
/// [`StoreError::Corrupt`] naming it.
fn check_values(db: &Database, place: &Place) -> Result<(), StoreError> {
    let txn = db.begin_read()?;
    let log = txn.open_table(LOG_TABLE)?;
    for item in log.iter()? {
        let (index, value) = item?;
        let index = index.value();
        let entry: Entry<TypeConfig> = place.decode("log", &LogIndex(index), value.value())?;
        if entry.log_id.index != index {
            return Err(place.corrupt(
                "log",
                &LogIndex(index),
                format!("it holds the entry of log index {}", entry.log_id.index),
            ));
        }
    }
    let meta = txn.open_table(META_TABLE)?;
    for item in meta.iter()? {
        let (key, value) = item?;
        place.payload("meta", &MetaKey(key.value()), value.value())?;
    }
    Ok(())
}

/// Seals every value of a database of the earlier layout (or marks a new one), in one
/// durable transaction: a crash leaves either layout whole.
fn seal_in_place(db: &Database, place: &Place) -> Result<(), StoreError> {
    let mut txn = db.begin_write()?;
    durable(&mut txn)?;
    let mut sealed = 0usize;
    {
        let mut log = txn.open_table(LOG_TABLE)?;
        let values: Vec<(u64, Vec<u8>)> = log
            .iter()?
            .map(|item| item.map(|(k, v)| (k.value(), v.value().to_vec())))
            .collect::<Result<_, _>>()?;
        for (index, value) in values {
            let _: Entry<TypeConfig> = serde_json::from_slice(&value).map_err(|e| {
                place.corrupt(
                    "log",
                    &LogIndex(index),
                    format!("the value does not decode: {e}"),
                )
            })?;
            log.insert(index, seal(&value).as_slice())?;
            sealed += 1;
        }
        let mut meta = txn.open_table(META_TABLE)?;
        let values: Vec<(String, Vec<u8>)> = meta
            .iter()?
            .map(|item| item.map(|(k, v)| (k.value().to_owned(), v.value().to_vec())))
            .collect::<Result<_, _>>()?;
        for (key, value) in values {
            meta.insert(key.as_str(), seal(&value).as_slice())?;
            sealed += 1;
        }
        meta.insert(KEY_FORMAT, seal(FORMAT_SEALED).as_slice())?;
    }
    txn.commit()?;
    if sealed > 0 {
        tracing::info!(file = %place.file.display(), values = sealed, "store upgraded: every value now carries a checksum");
    }
    Ok(())
}

/// Opens (or creates) node `node_id`'s database at `path` and returns its log store and state
/// machine. When the database holds a snapshot, `app` is restored from it. The log store takes
/// its disk delay and both take their disk error for `node_id` from `fault_hook`.
pub fn open(
    path: &Path,
    app: Box<dyn Application>,
    node_id: NodeId,
    fault_hook: FaultHook,
) -> Result<(LogStore, StateMachineStore), StoreError> {
    let place = Place {
        file: Arc::from(path),
    };
    let db = Arc::new(open_whole(&place)?);
    let mut txn = db.begin_write()?;
    durable(&mut txn)?;
    txn.open_table(LOG_TABLE)?;
    txn.open_table(META_TABLE)?;
    txn.commit()?;
    check_or_seal(&db, &place)?;
    let disk = Disk {
        node_id,
        fault_hook,
    };
    let log_store = LogStore {
        db: db.clone(),
        place: place.clone(),
        disk: disk.clone(),
        committed: Arc::default(),
        #[cfg(test)]
        fail_next_commit: Default::default(),
    };
    let state_machine = StateMachineStore::open(db, place, disk, app)?;
    Ok((log_store, state_machine))
}

fn read_meta<T: DeserializeOwned>(
    db: &Database,
    place: &Place,
    key: &str,
) -> Result<Option<T>, StoreError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(META_TABLE)?;
    match table.get(key)? {
        Some(value) => Ok(Some(place.decode("meta", &MetaKey(key), value.value())?)),
        None => Ok(None),
    }
}

fn write_meta<T: Serialize>(
    db: &Database,
    key: &str,
    value: &T,
    durability: Durability,
) -> Result<(), StoreError> {
    let bytes = seal(&serde_json::to_vec(value)?);
    let mut txn = db.begin_write()?;
    match durability {
        Durability::Immediate => durable(&mut txn)?,
        other => txn.set_durability(other)?,
    }
    {
        let mut table = txn.open_table(META_TABLE)?;
        table.insert(key, bytes.as_slice())?;
    }
    txn.commit()?;
    Ok(())
}

/// Makes the store's non-durable writes (the committed log id) durable on demand.
///
/// The committed log id is written without waiting for the disk, and a killed process or a
/// daemon that exits without closing the database loses the last one. openraft allows that
/// (a restart re-applies less and learns the rest from the leader), but what a node does at
/// its start follows its applied configuration: a node whose addresses `halcyon apply`
/// changed, restarted with the commit of that change lost, listened on its old addresses
/// while the leader reached for the new ones, and never caught up. The daemon persists when
/// its running configuration changes and when it stops.
#[derive(Clone, Debug)]
pub(crate) struct Durable {
    db: std::sync::Weak<Database>,
    disk: Disk,
}

impl Durable {
    /// One durable (two-phase) commit, which makes every commit before it durable. Fails as
    /// any write does on a full disk; does nothing once the database is closed (closing
    /// commits durably itself).
    pub(crate) fn persist(&self) -> Result<(), StoreError> {
        let Some(db) = self.db.upgrade() else {
            return Ok(());
        };
        self.disk.writable()?;
        let mut txn = db.begin_write()?;
        durable(&mut txn)?;
        txn.commit()?;
        Ok(())
    }
}

/// The Raft log, vote and committed log id. Cloning shares the database (a clone is also the
/// log reader openraft asks for).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    place: Place,
    /// How slow or full this node's disk is (a fault injected by tests and the simulator).
    disk: Disk,
    /// The committed index openraft last saved (or read at the start), plus one (0: none).
    committed: Arc<std::sync::atomic::AtomicU64>,
    #[cfg(test)]
    fail_next_commit: Arc<std::sync::atomic::AtomicBool>,
}

impl LogStore {
    /// The committed index as openraft last saved it, shared with the store (openraft 0.9
    /// publishes no commit index in its metrics); read with [`committed_index`].
    pub(crate) fn committed_handle(&self) -> Arc<std::sync::atomic::AtomicU64> {
        Arc::clone(&self.committed)
    }

    /// A handle that makes what was written so far durable ([`Durable::persist`]), without
    /// holding the database open.
    pub(crate) fn durable_handle(&self) -> Durable {
        Durable {
            db: Arc::downgrade(&self.db),
            disk: self.disk.clone(),
        }
    }

    fn note_committed(&self, committed: Option<&LogId<NodeId>>) {
        let value = committed.map_or(0, |log_id| log_id.index + 1);
        self.committed
            .fetch_max(value, std::sync::atomic::Ordering::Relaxed);
    }

    /// A handle that tells whether any store object still holds the database open.
    pub(crate) fn database_handle(&self) -> std::sync::Weak<Database> {
        Arc::downgrade(&self.db)
    }

    fn entries(
        &self,
        range: (Bound<u64>, Bound<u64>),
    ) -> Result<Vec<Entry<TypeConfig>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOG_TABLE)?;
        let mut entries = Vec::new();
        for item in table.range::<u64>(range)? {
            let (index, value) = item?;
            let entry: Entry<TypeConfig> =
                self.place
                    .decode("log", &LogIndex(index.value()), value.value())?;
            assert_eq!(
                entry.log_id.index,
                index.value(),
                "an entry is stored under its index"
            );
            entries.push(entry);
        }
        Ok(entries)
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, StoreError> {
        let last_purged_log_id: Option<LogId<NodeId>> =
            read_meta(&self.db, &self.place, KEY_LAST_PURGED)?;
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOG_TABLE)?;
        let last_log_id = match table.last()? {
            Some((index, value)) => {
                let entry: Entry<TypeConfig> =
                    self.place
                        .decode("log", &LogIndex(index.value()), value.value())?;
                Some(entry.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    /// The id of the last entry this node holds (or of the last it purged): what its vote
    /// compares a candidate's log with, read for pre-votes (`prevote`).
    pub(crate) fn last_log_id(&self) -> Result<Option<LogId<NodeId>>, StoreError> {
        Ok(self.log_state()?.last_log_id)
    }

    /// Writes `entries` in one durable transaction, then calls `on_durable` with the outcome.
    /// `on_durable(Ok)` happens only after the commit returned.
    fn append_then<I, F>(&self, entries: I, on_durable: F) -> Result<(), StoreError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>>,
        F: FnOnce(Result<(), std::io::Error>),
    {
        let result = self.append_durably(entries);
        match &result {
            Ok(()) => on_durable(Ok(())),
            Err(e) => on_durable(Err(std::io::Error::other(e.to_string()))),
        }
        result
    }

    fn append_durably<I>(&self, entries: I) -> Result<(), StoreError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>>,
    {
        self.disk.writable()?;
        let mut txn = self.db.begin_write()?;
        durable(&mut txn)?;
        {
            let mut table = txn.open_table(LOG_TABLE)?;
            for entry in entries {
                let bytes = seal(&serde_json::to_vec(&entry)?);
                table.insert(entry.log_id.index, bytes.as_slice())?;
            }
        }
        #[cfg(test)]
        if self
            .fail_next_commit
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            txn.abort()?;
            return Err(StoreError::Injected);
        }
        txn.commit()?;
        Ok(())
    }

    /// Deletes every entry at or after `index`.
    fn truncate_from(&self, index: u64) -> Result<(), StoreError> {
        self.disk.writable()?;
        let mut txn = self.db.begin_write()?;
        durable(&mut txn)?;
        {
            let mut table = txn.open_table(LOG_TABLE)?;
            table.retain_in::<u64, _>(index.., |_, _| false)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Records `log_id` as purged and deletes every entry up to it, atomically.
    fn purge_upto(&self, log_id: &LogId<NodeId>) -> Result<(), StoreError> {
        self.disk.writable()?;
        let bytes = seal(&serde_json::to_vec(log_id)?);
        let mut txn = self.db.begin_write()?;
        durable(&mut txn)?;
        {
            let mut meta = txn.open_table(META_TABLE)?;
            meta.insert(KEY_LAST_PURGED, bytes.as_slice())?;
            let mut table = txn.open_table(LOG_TABLE)?;
            table.retain_in::<u64, _>(..=log_id.index, |_, _| false)?;
        }
        txn.commit()?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, Error> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        self.entries(bounds)
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, Error> {
        self.log_state()
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), Error> {
        self.disk.wait_if_slow().await;
        self.disk
            .writable()
            .and_then(|()| write_meta(&self.db, KEY_VOTE, vote, Durability::Immediate))
            .map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, Error> {
        read_meta(&self.db, &self.place, KEY_VOTE)
            .map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Read, e))
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), Error> {
        self.disk
            .writable()
            .and_then(|()| write_meta(&self.db, KEY_COMMITTED, &committed, Durability::None))
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
        self.note_committed(committed.as_ref());
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, Error> {
        let committed: Option<Option<LogId<NodeId>>> =
            read_meta(&self.db, &self.place, KEY_COMMITTED)
                .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Read, e))?;
        let committed = committed.flatten();
        self.note_committed(committed.as_ref());
        Ok(committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), Error>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.disk.wait_if_slow().await;
        self.append_then(entries, |result| callback.log_io_completed(result))
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, e))
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), Error> {
        tracing::debug!(%log_id, "truncate log");
        self.truncate_from(log_id.index)
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), Error> {
        tracing::debug!(%log_id, "purge log");
        self.purge_upto(&log_id)
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}

/// Stores `meta` + `data` as the current snapshot unless the stored one is newer.
fn save_snapshot(db: &Database, place: &Place, meta: &Meta, data: &[u8]) -> Result<(), StoreError> {
    let meta_bytes = seal(&serde_json::to_vec(meta)?);
    let mut txn = db.begin_write()?;
    durable(&mut txn)?;
    {
        let mut table = txn.open_table(META_TABLE)?;
        let stored: Option<Meta> = match table.get(KEY_SNAPSHOT_META)? {
            Some(value) => {
                Some(place.decode("meta", &MetaKey(KEY_SNAPSHOT_META), value.value())?)
            }
            None => None,
        };
        if let Some(stored) = stored.filter(|stored| stored.last_log_id > meta.last_log_id) {
            tracing::debug!(stored = %stored, offered = %meta, "keeping the newer stored snapshot");
            return Ok(());
        }
        table.insert(KEY_SNAPSHOT_META, meta_bytes.as_slice())?;
        table.insert(KEY_SNAPSHOT_DATA, seal(data).as_slice())?;
    }
    txn.commit()?;
    Ok(())
}

fn load_snapshot(db: &Database, place: &Place) -> Result<Option<(Meta, Vec<u8>)>, StoreError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(META_TABLE)?;
    let meta: Meta = match table.get(KEY_SNAPSHOT_META)? {
        Some(value) => place.decode("meta", &MetaKey(KEY_SNAPSHOT_META), value.value())?,
        None => return Ok(None),
    };
    let data = match table.get(KEY_SNAPSHOT_DATA)? {
        Some(value) => place
            .payload("meta", &MetaKey(KEY_SNAPSHOT_DATA), value.value())?
            .to_vec(),
        None => Vec::new(),
    };
    Ok(Some((meta, data)))
}

/// The state machine: the application plus the last applied log id and membership.
pub struct StateMachineStore {
    db: Arc<Database>,
    place: Place,
    disk: Disk,
    app: Box<dyn Application>,
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
    snapshots_built: u64,
}

impl StateMachineStore {
    fn open(
        db: Arc<Database>,
        place: Place,
        disk: Disk,
        mut app: Box<dyn Application>,
    ) -> Result<Self, StoreError> {
        let mut last_applied = None;
        let mut membership = Membership::default();
        if let Some((meta, data)) = load_snapshot(&db, &place)? {
            app.restore(&data).map_err(StoreError::Restore)?;
            tracing::info!(snapshot = %meta, "state machine restored from snapshot");
            last_applied = meta.last_log_id;
            membership = meta.last_membership;
        }
        Ok(Self {
            db,
            place,
            disk,
            app,
            last_applied,
            membership,
            snapshots_built: 0,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, Membership), Error> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, Error>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut replies = Vec::new();
        for entry in entries {
            assert!(
                Some(entry.log_id) > self.last_applied,
                "entries are applied in order and once: {} after {:?}",
                entry.log_id,
                self.last_applied
            );
            self.last_applied = Some(entry.log_id);
            let reply = match entry.payload {
                EntryPayload::Blank => Reply::default(),
                EntryPayload::Normal(command) => {
                    Reply(self.app.apply(entry.log_id.index, &command.0))
                }
                EntryPayload::Membership(membership) => {
                    self.membership = Membership::new(Some(entry.log_id), membership);
                    Reply::default()
                }
            };
            replies.push(reply);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // The state is captured here, at a consistent point between applies; the builder runs
        // concurrently with further applies and only persists it.
        self.snapshots_built += 1;
        let snapshot_id = match self.last_applied {
            Some(log_id) => format!(
                "{}-{}-{}",
                log_id.leader_id.term, log_id.index, self.snapshots_built
            ),
            None => format!("none-{}", self.snapshots_built),
        };
        SnapshotBuilder {
            db: self.db.clone(),
            place: self.place.clone(),
            disk: self.disk.clone(),
            meta: Meta {
                last_log_id: self.last_applied,
                last_membership: self.membership.clone(),
                snapshot_id,
            },
            data: self.app.snapshot(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, Error> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), Error> {
        let data = snapshot.into_inner();
        let signature = Some(meta.signature());
        self.app.restore(&data).map_err(|e| {
            io_error(
                ErrorSubject::Snapshot(signature.clone()),
                ErrorVerb::Write,
                StoreError::Restore(e),
            )
        })?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.disk
            .writable()
            .and_then(|()| save_snapshot(&self.db, &self.place, meta, &data))
            .map_err(|e| io_error(ErrorSubject::Snapshot(signature), ErrorVerb::Write, e))?;
        tracing::info!(snapshot = %meta, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, Error> {
        let loaded = load_snapshot(&self.db, &self.place)
            .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
        Ok(loaded.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// Persists a snapshot captured by [`StateMachineStore::get_snapshot_builder`].
pub struct SnapshotBuilder {
    db: Arc<Database>,
    place: Place,
    disk: Disk,
    meta: Meta,
    data: Vec<u8>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, Error> {
        let saved = self
            .disk
            .writable()
            .and_then(|()| save_snapshot(&self.db, &self.place, &self.meta, &self.data));
        saved.map_err(|e| {
            io_error(
                ErrorSubject::Snapshot(Some(self.meta.signature())),
                ErrorVerb::Write,
                e,
            )
        })?;
        tracing::info!(snapshot = %self.meta, "snapshot built");
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(self.data.clone())),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use openraft::storage::RaftLogStorageExt;
    use openraft::testing::log_id;

    use super::*;
    use crate::Command;

    /// Records every applied command; its snapshot is the JSON of that record.
    #[derive(Default)]
    struct Recorder {
        applied: Vec<(u64, Vec<u8>)>,
    }

    impl Application for Recorder {
        fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8> {
            self.applied.push((index, command.to_vec()));
            index.to_be_bytes().to_vec()
        }
        fn snapshot(&self) -> Vec<u8> {
            serde_json::to_vec(&self.applied).expect("encodable")
        }
        fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
            self.applied = serde_json::from_slice(snapshot).map_err(|e| e.to_string())?;
            Ok(())
        }
    }

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: log_id(term, 1, index),
            payload: EntryPayload::Normal(Command(format!("c{index}").into_bytes())),
        }
    }

    fn indexes(entries: &[Entry<TypeConfig>]) -> Vec<u64> {
        entries.iter().map(|e| e.log_id.index).collect()
    }

    fn open_log(path: &Path) -> LogStore {
        open(path, Box::new(Recorder::default()), 1, FaultHook::default())
            .expect("open")
            .0
    }

    /// The commit index the metrics export is the one openraft saved, kept across a restart
    /// (read back at the start) and never moved back.
    #[tokio::test]
    async fn the_saved_commit_index_is_published_and_read_back_at_the_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.redb");
        let index = |store: &LogStore| {
            store
                .committed_handle()
                .load(std::sync::atomic::Ordering::Relaxed)
                .checked_sub(1)
        };
        {
            let mut store = open_log(&path);
            assert_eq!(index(&store), None);
            store.save_committed(Some(log_id(1, 1, 5))).await.unwrap();
            assert_eq!(index(&store), Some(5));
            store.save_committed(Some(log_id(1, 1, 7))).await.unwrap();
            assert_eq!(index(&store), Some(7));
        }
        let mut store = open_log(&path);
        assert_eq!(index(&store), None, "nothing read yet");
        assert_eq!(store.read_committed().await.unwrap(), Some(log_id(1, 1, 7)));
        assert_eq!(index(&store), Some(7));
    }

    #[tokio::test]
    async fn log_and_vote_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.redb");
        {
            let mut store = open_log(&path);
            assert_eq!(store.read_vote().await.expect("vote"), None);
            store
                .blocking_append((1..=10).map(|i| entry(1, i)))
                .await
                .expect("append");
            store.save_vote(&Vote::new(3, 2)).await.expect("vote");
            store
                .save_committed(Some(log_id(1, 1, 7)))
                .await
                .expect("committed");
            // Conflicting suffix from index 8, replaced by a term-2 entry.
            store.truncate(log_id(1, 1, 8)).await.expect("truncate");
            store.blocking_append([entry(2, 8)]).await.expect("append");
            store.purge(log_id(1, 1, 3)).await.expect("purge");
            // The vote write is durable; the committed id rides on the next durable commit.
            store
                .save_vote(&Vote::new_committed(3, 2))
                .await
                .expect("vote");
        }
        let mut store = open_log(&path);
        assert_eq!(
            store.read_vote().await.expect("vote"),
            Some(Vote::new_committed(3, 2))
        );
        assert_eq!(
            store.read_committed().await.expect("committed"),
            Some(log_id(1, 1, 7))
        );
        let state = store.get_log_state().await.expect("state");
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 3)));
        assert_eq!(state.last_log_id, Some(log_id(2, 1, 8)));
        let entries = store.try_get_log_entries(0..100).await.expect("read");
        assert_eq!(indexes(&entries), vec![4, 5, 6, 7, 8]);
        assert_eq!(entries[4].log_id, log_id(2, 1, 8));
        let entries = store.try_get_log_entries(5..=6).await.expect("read");
        assert_eq!(indexes(&entries), vec![5, 6]);
    }

    /// Replaces every copy of `find` in the file at `path` with `replace` (same length): a
    /// disk that changed some bytes. Returns how many copies it changed.
    fn damage(path: &Path, find: &[u8], replace: &[u8]) -> usize {
        assert_eq!(find.len(), replace.len());
        let mut bytes = std::fs::read(path).expect("read the database");
        let mut changed = 0;
        let mut at = 0;
        while let Some(offset) = bytes[at..].windows(find.len()).position(|w| w == find) {
            let start = at + offset;
            bytes[start..start + find.len()].copy_from_slice(replace);
            changed += 1;
            at = start + find.len();
        }
        std::fs::write(path, bytes).expect("write the database");
        changed
    }

    fn open_error(path: &Path) -> String {
        match open(path, Box::new(Recorder::default()), 1, FaultHook::default()) {
            Ok(_) => panic!("{} opened although damaged", path.display()),
            Err(e) => e.to_string(),
        }
    }

    #[tokio::test]
    async fn a_changed_digit_in_a_log_entry_refuses_the_start_naming_file_table_and_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.redb");
        {
            let mut store = open_log(&path);
            let mut entries: Vec<_> = (1..=5).map(|i| entry(1, i)).collect();
            entries[2].payload = EntryPayload::Normal(Command(b"move web to n2".to_vec()));
            store.blocking_append(entries).await.expect("append");
        }
        // "move web to n2" is stored as its bytes' decimal numbers: "... 110,50]" ends it.
        let stored = serde_json::to_vec(&Command(b" n2".to_vec())).expect("json");
        assert_eq!(stored, b"[32,110,50]");
        assert!(
            damage(&path, b",32,110,50]", b",32,110,51]") > 0,
            "the entry is in the file"
        );
        let error = open_error(&path);
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("table `log`, log index 3"), "{error}");
        assert!(error.contains("checksum mismatch"), "{error}");
        assert!(error.contains("move its state directory"), "{error}");
        assert!(error.contains("taken it out of the membership"), "{error}");
    }

    #[tokio::test]
    async fn a_damaged_vote_or_snapshot_refuses_the_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vote_path = dir.path().join("vote.redb");
        {
            let mut store = open_log(&vote_path);
            store.save_vote(&Vote::new(777, 2)).await.expect("vote");
        }
        assert!(damage(&vote_path, b"777", b"778") > 0);
        let error = open_error(&vote_path);
        assert!(error.contains("table `meta`, key `vote`"), "{error}");

        let snapshot_path = dir.path().join("snapshot.redb");
        {
            let (_, mut machine) = open(
                &snapshot_path,
                Box::new(Recorder::default()),
                1,
                FaultHook::default(),
            )
            .expect("open");
            machine
                .apply([Entry {
                    log_id: log_id(1, 1, 1),
                    payload: EntryPayload::Normal(Command(b"zz".to_vec())),
                }])
                .await
                .expect("apply");
            machine
                .get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .expect("snapshot");
        }
        // The recorder's snapshot is [[1,[122,122]]]: "zz" becomes "zy".
        assert!(damage(&snapshot_path, b"[122,122]", b"[122,121]") > 0);
        let error = open_error(&snapshot_path);
        assert!(error.contains("key `snapshot_data`"), "{error}");
    }

    /// A database written before values were sealed (round one) is sealed in place at open and
    /// reads the same: nothing committed is lost by the upgrade.
    #[tokio::test]
    async fn a_database_of_the_earlier_layout_is_sealed_at_open_and_reads_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.redb");
        {
            let db = Database::create(&path).expect("create");
            let txn = db.begin_write().expect("txn");
            {
                let mut log = txn.open_table(LOG_TABLE).expect("log");
                for i in 1..=4 {
                    let json = serde_json::to_vec(&entry(1, i)).expect("json");
                    log.insert(i, json.as_slice()).expect("insert");
                }
                let mut meta = txn.open_table(META_TABLE).expect("meta");
                let vote = serde_json::to_vec(&Vote::new_committed(5, 1)).expect("json");
                meta.insert(KEY_VOTE, vote.as_slice()).expect("insert");
            }
            txn.commit().expect("commit");
        }
        for _ in 0..2 {
            let mut store = open_log(&path);
            assert_eq!(
                store.read_vote().await.expect("vote"),
                Some(Vote::new_committed(5, 1))
            );
            let entries = store.try_get_log_entries(0..100).await.expect("read");
            assert_eq!(entries, (1..=4).map(|i| entry(1, i)).collect::<Vec<_>>());
        }
        // Sealed now: a changed byte is caught.
        assert!(
            damage(&path, b"[99,52]", b"[99,53]") > 0,
            "c4 is stored as [99,52]"
        );
        assert!(open_error(&path).contains("log index 4"));
    }

    /// Copies the database at `path` while it is open, after its last commit returned: the
    /// file a killed daemon or a power loss leaves (a clean close would commit once more).
    fn crash_image(path: &Path) -> PathBuf {
        let image = path.with_extension("killed.redb");
        std::fs::copy(path, &image).expect("copy the database");
        image
    }

    /// A store at `path` that appended entries 1 to 3 in one commit, then `last` in another,
    /// as a killed daemon left it ([`crash_image`]).
    async fn killed_after(path: &Path, last: std::ops::RangeInclusive<u64>) -> PathBuf {
        let mut store = open_log(path);
        store
            .blocking_append((1..=3).map(|i| entry(1, i)))
            .await
            .expect("append");
        store
            .blocking_append(last.map(|i| entry(1, i)))
            .await
            .expect("append");
        crash_image(path)
    }

    /// The committed log id is written without waiting for the disk: a killed daemon loses
    /// the last one, unless [`Durable::persist`] made it durable (what the daemon does when its
    /// running configuration changes and when it stops). Once the database is closed, there
    /// is nothing left to persist.
    #[tokio::test]
    async fn a_persisted_committed_log_id_survives_a_kill() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.redb");
        let mut store = open_log(&path);
        store
            .blocking_append((1..=3).map(|i| entry(1, i)))
            .await
            .expect("append");
        store
            .save_committed(Some(log_id(1, 1, 2)))
            .await
            .expect("committed");
        let unpersisted = dir.path().join("unpersisted.redb");
        std::fs::rename(crash_image(&path), &unpersisted).expect("rename");
        let durable = store.durable_handle();
        durable.persist().expect("persist");
        let persisted = crash_image(&path);
        for (image, committed) in [(&unpersisted, None), (&persisted, Some(log_id(1, 1, 2)))] {
            let mut killed = open_log(image);
            assert_eq!(
                killed.read_committed().await.expect("committed"),
                committed,
                "{}",
                image.display()
            );
            let state = killed.get_log_state().await.expect("state");
            assert_eq!(
                state.last_log_id,
                Some(log_id(1, 1, 3)),
                "appends are durable"
            );
        }
        drop(store);
        durable
            .persist()
            .expect("a closed database has nothing to persist");
    }

    async fn last_log_index(path: &Path) -> Option<u64> {
        let mut store = open_log(path);
        let state = store.get_log_state().await.expect("state");
        state.last_log_id.map(|id| id.index)
    }

    /// A killed node whose last commit is whole starts with everything it acknowledged: the
    /// check at open repairs without refusing.
    #[tokio::test]
    async fn a_killed_node_with_a_whole_store_starts_with_everything_it_wrote() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = killed_after(&dir.path().join("raft.redb"), 4..=4).await;
        assert_eq!(last_log_index(&image).await, Some(4));
        assert_eq!(last_log_index(&image).await, Some(4));
    }

    /// Issue 15: a changed byte in the pages of the last commit of a killed node made redb fall
    /// back to the commit before it, and the node started without entries it had acknowledged
    /// (the lab campaign lost committed events this way). Now the start is refused.
    #[tokio::test]
    async fn a_damaged_last_commit_refuses_the_start_instead_of_rolling_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Only the last commit's pages hold entry 5 ("c5" is stored as [99,53]).
        let image = killed_after(&dir.path().join("raft.redb"), 4..=5).await;
        assert_eq!(damage(&image, b"[99,53]", b"[99,54]"), 1);
        let error = open_error(&image);
        assert!(error.contains(&image.display().to_string()), "{error}");
        assert!(error.contains("fails its checksums"), "{error}");
        assert!(error.contains("move its state directory"), "{error}");
        // Refusing changed nothing: it is refused again, for the same reason.
        assert_eq!(open_error(&image), error);
    }

    /// A database whose last commit was made in one phase (by Halcyon before commits were made
    /// in two): redb itself would roll back a damaged last commit, and only the repair
    /// callback (`REDB_ROLLBACK_PROGRESS`) stops it. This also checks that redb still reports
    /// that step at that progress.
    #[tokio::test]
    async fn a_damaged_last_commit_of_a_database_written_in_one_phase_refuses_the_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.redb");
        let db = Database::create(&path).expect("create");
        for batch in [1..=3, 4..=5] {
            let txn = db.begin_write().expect("txn");
            {
                let mut log = txn.open_table(LOG_TABLE).expect("log");
                for i in batch {
                    let json = serde_json::to_vec(&entry(1, i)).expect("json");
                    log.insert(i, seal(&json).as_slice()).expect("insert");
                }
                let mut meta = txn.open_table(META_TABLE).expect("meta");
                meta.insert(KEY_FORMAT, seal(FORMAT_SEALED).as_slice())
                    .expect("insert");
            }
            txn.commit().expect("commit");
        }
        let image = crash_image(&path);
        assert_eq!(damage(&image, b"[99,53]", b"[99,54]"), 1);
        let error = open_error(&image);
        assert!(
            error.contains("redb would have rolled back to the commit before it"),
            "{error}"
        );
        assert!(error.contains(&image.display().to_string()), "{error}");
    }

    #[tokio::test]
    async fn purging_everything_keeps_the_last_log_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.redb");
        {
            let mut store = open_log(&path);
            store
                .blocking_append((1..=5).map(|i| entry(1, i)))
                .await
                .expect("append");
            store.purge(log_id(1, 1, 5)).await.expect("purge");
        }
        let mut store = open_log(&path);
        let state = store.get_log_state().await.expect("state");
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 5)));
        assert_eq!(state.last_log_id, Some(log_id(1, 1, 5)));
        assert!(
            store
                .try_get_log_entries(..)
                .await
                .expect("read")
                .is_empty()
        );
    }

    #[test]
    fn flush_is_reported_only_after_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_log(&dir.path().join("node.redb"));
        let visible_when_flushed = |store: &LogStore| {
            let store_for_check = store.clone();
            move |result: Result<(), std::io::Error>| {
                // A read transaction sees only committed data.
                let seen = store_for_check
                    .entries((Bound::Unbounded, Bound::Unbounded))
                    .expect("read");
                (result.is_ok(), indexes(&seen))
            }
        };

        let mut outcome = None;
        let check = visible_when_flushed(&store);
        store
            .append_then((1..=3).map(|i| entry(1, i)), |r| outcome = Some(check(r)))
            .expect("append");
        assert_eq!(outcome, Some((true, vec![1, 2, 3])));

        store.fail_next_commit.store(true, Ordering::SeqCst);
        let mut outcome = None;
        let check = visible_when_flushed(&store);
        let result = store.append_then([entry(1, 4)], |r| outcome = Some(check(r)));
        assert!(result.is_err());
        assert_eq!(
            outcome,
            Some((false, vec![1, 2, 3])),
            "a failed commit is never reported flushed"
        );
    }

    #[tokio::test]
    async fn a_slow_disk_delays_appends_and_votes_before_writing_them() {
        const DELAY: Duration = Duration::from_millis(300);
        let dir = tempfile::tempdir().expect("tempdir");
        let hook = FaultHook::default();
        let (mut store, _) = open(
            &dir.path().join("node.redb"),
            Box::new(Recorder::default()),
            2,
            hook.clone(),
        )
        .expect("open");
        hook.set_disk_delay(1, DELAY * 10);
        hook.set_disk_delay(2, DELAY);

        let reader = store.clone();
        let started = tokio::time::Instant::now();
        // Looks at what is durable halfway through the append's delay, then halfway through
        // the vote's.
        let during_delays = async {
            let seen = || {
                let entries = reader.entries((Bound::Unbounded, Bound::Unbounded));
                let vote: Option<Vote<NodeId>> =
                    read_meta(&reader.db, &reader.place, KEY_VOTE).expect("read");
                (entries.expect("read").len(), vote)
            };
            tokio::time::sleep_until(started + DELAY / 2).await;
            let during_append = seen();
            tokio::time::sleep_until(started + DELAY * 3 / 2).await;
            (during_append, seen())
        };
        let appended = async {
            store
                .blocking_append((1..=3).map(|i| entry(1, i)))
                .await
                .expect("append");
            let appended_after = started.elapsed();
            store.save_vote(&Vote::new(1, 2)).await.expect("vote");
            (appended_after, started.elapsed())
        };
        let ((appended_after, voted_after), (during_append, during_vote)) =
            tokio::join!(appended, during_delays);
        assert_eq!(
            during_append,
            (0, None),
            "nothing is written during the delay"
        );
        assert_eq!(
            during_vote,
            (3, None),
            "the vote is not written during its delay"
        );
        assert!(appended_after >= DELAY, "append took {appended_after:?}");
        assert!(
            voted_after >= DELAY * 2,
            "append and vote took {voted_after:?}"
        );
        assert!(
            voted_after < DELAY * 10,
            "only this node's delay applies: {voted_after:?}"
        );

        hook.clear_disk_delay(2);
        assert_eq!(hook.disk_delay(2), Duration::ZERO);
        let started = tokio::time::Instant::now();
        store.blocking_append([entry(1, 4)]).await.expect("append");
        store.save_vote(&Vote::new(2, 2)).await.expect("vote");
        assert!(started.elapsed() < DELAY, "no delay once cleared");
        hook.set_disk_delay(2, DELAY);
        hook.set_disk_delay(2, Duration::ZERO);
        assert_eq!(hook.disk_delay(2), Duration::ZERO, "a zero delay clears");
    }

    /// Asserts that `result` is the error a full disk gives: `ENOSPC`, seen by openraft as a
    /// write of `subject`.
    fn assert_disk_full<T: Debug>(result: Result<T, Error>, subject: &str) {
        let error = result.expect_err("a write to a full disk fails");
        let text = error.to_string();
        assert!(
            text.contains("No space left on device"),
            "{subject}: {text}"
        );
        assert!(text.contains(subject), "{subject}: {text}");
    }

    #[tokio::test]
    async fn a_full_disk_fails_every_write_with_enospc_and_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.redb");
        let hook = FaultHook::default();
        let (mut store, mut machine) =
            open(&path, Box::new(Recorder::default()), 2, hook.clone()).expect("open");
        store
            .blocking_append((1..=4).map(|i| entry(1, i)))
            .await
            .expect("append");
        store.save_vote(&Vote::new(1, 2)).await.expect("vote");
        machine
            .apply((1..=2).map(|i| entry(1, i)))
            .await
            .expect("apply");
        let mut builder = machine.get_snapshot_builder().await;
        let snapshot = builder.build_snapshot().await.expect("snapshot");

        match disk_full() {
            StoreError::Commit(redb::CommitError::Storage(redb::StorageError::Io(e))) => {
                assert_eq!(e.kind(), std::io::ErrorKind::StorageFull)
            }
            other => panic!("not the I/O error of a commit: {other}"),
        }
        hook.set_disk_error(1);
        store
            .blocking_append([entry(1, 5)])
            .await
            .expect("only node 1's disk is full");
        hook.clear_disk_error(1);

        hook.set_disk_error(2);
        assert!(hook.disk_error(2));
        assert_disk_full(store.blocking_append([entry(1, 6)]).await, "Logs");
        assert_disk_full(store.save_vote(&Vote::new(2, 2)).await, "Vote");
        assert_disk_full(store.save_committed(Some(log_id(1, 1, 3))).await, "Store");
        assert!(matches!(
            store.durable_handle().persist(),
            Err(StoreError::Commit(_))
        ));
        assert_disk_full(store.truncate(log_id(1, 1, 3)).await, "Logs");
        assert_disk_full(store.purge(log_id(1, 1, 2)).await, "Logs");
        assert_disk_full(
            machine.get_snapshot_builder().await.build_snapshot().await,
            "Snapshot",
        );
        assert_disk_full(
            machine
                .install_snapshot(&snapshot.meta, snapshot.snapshot.clone())
                .await,
            "Snapshot",
        );
        // Reads still work, and show that nothing was written.
        assert_eq!(
            store.read_vote().await.expect("vote"),
            Some(Vote::new(1, 2))
        );
        assert_eq!(store.read_committed().await.expect("committed"), None);
        let state = store.get_log_state().await.expect("state");
        assert_eq!(state.last_purged_log_id, None);
        assert_eq!(state.last_log_id, Some(log_id(1, 1, 5)));

        hook.clear_disk_error(2);
        assert!(!hook.disk_error(2));
        store
            .blocking_append([entry(1, 6)])
            .await
            .expect("space is back");
        store
            .save_vote(&Vote::new(2, 2))
            .await
            .expect("space is back");
        hook.set_disk_error(2);
        hook.heal();
        assert!(!hook.disk_error(2), "healing clears disk errors");
    }

    /// A write that fails on a full disk stops openraft's core, and [`crate::Consensus::failed`]
    /// resolves with the reason: what the daemon waits on to halt its packages and leave.
    #[tokio::test]
    async fn a_full_disk_stops_the_replica_and_consensus_failed_resolves() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hook = FaultHook::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let consensus = crate::Consensus::open_with(
            7,
            1,
            &dir.path().join("raft.redb"),
            Recorder::default(),
            crate::RaftTimings {
                write_timeout: Duration::from_secs(2),
                ..crate::RaftTimings::default()
            },
            crate::TcpTransport,
            vec![listener],
            hook.clone(),
        )
        .await
        .expect("open");
        let me = consensus.node().clone();
        consensus
            .initialize(std::collections::BTreeMap::from([(1, me)]))
            .await
            .expect("initialize");
        let wrote = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match consensus.write(b"before".to_vec()).await {
                    Ok(_) => break,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
        .await;
        assert!(
            wrote.is_ok(),
            "a single node commits while its disk is fine"
        );
        let failed = tokio::time::timeout(Duration::from_millis(200), consensus.failed()).await;
        assert!(failed.is_err(), "a healthy replica has not failed");

        hook.set_disk_error(1);
        let write = consensus.write(b"after".to_vec()).await;
        assert!(write.is_err(), "a write to a full disk is not committed");
        let why = tokio::time::timeout(Duration::from_secs(5), consensus.failed())
            .await
            .expect("failed() resolves once the core stopped");
        assert!(why.contains("No space left on device"), "{why}");
        consensus.shutdown().await;
    }

    #[tokio::test]
    async fn state_machine_restores_from_its_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.redb");
        let snapshot_log_id = {
            let (_, mut sm) = open(
                &path,
                Box::new(Recorder::default()),
                1,
                FaultHook::default(),
            )
            .expect("open");
            assert!(sm.get_current_snapshot().await.expect("snapshot").is_none());
            let replies = sm.apply((1..=4).map(|i| entry(1, i))).await.expect("apply");
            assert_eq!(replies[3], Reply(4u64.to_be_bytes().to_vec()));
            let mut builder = sm.get_snapshot_builder().await;
            let snapshot = builder.build_snapshot().await.expect("build");
            assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 1, 4)));
            // Applied after the snapshot: not persisted, re-applied by openraft from the log.
            sm.apply([entry(1, 5)]).await.expect("apply");
            snapshot.meta.last_log_id
        };
        let (_, mut sm) = open(
            &path,
            Box::new(Recorder::default()),
            1,
            FaultHook::default(),
        )
        .expect("reopen");
        let (last_applied, _) = sm.applied_state().await.expect("applied");
        assert_eq!(last_applied, snapshot_log_id);
        let current = sm
            .get_current_snapshot()
            .await
            .expect("snapshot")
            .expect("present");
        let restored: Vec<(u64, Vec<u8>)> =
            serde_json::from_slice(current.snapshot.get_ref()).expect("decode");
        assert_eq!(
            restored.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );

        // An older snapshot never replaces a newer one.
        let older = Meta {
            last_log_id: Some(log_id(1, 1, 2)),
            last_membership: Membership::default(),
            snapshot_id: "older".into(),
        };
        save_snapshot(&sm.db, &sm.place, &older, b"[]").expect("save");
        let current = sm
            .get_current_snapshot()
            .await
            .expect("snapshot")
            .expect("present");
        assert_eq!(current.meta.last_log_id, Some(log_id(1, 1, 4)));
    }
}
