//! The redb storage of one node: the Raft log, its metadata and the state machine's snapshot.
//!
//! One database file holds two tables:
//! - `log`: entry index -> JSON of the entry;
//! - `meta`: `vote`, `committed`, `last_purged` (JSON log ids or vote), `snapshot_meta` (JSON of
//!   the snapshot's metadata: last applied log id, membership, id) and `snapshot_data` (the
//!   application's snapshot bytes).
//!
//! Invariants:
//! - [`LogStore`] reports an append flushed only after its write transaction committed with
//!   `Durability::Immediate`; the vote and purges are written durably too. The committed log id
//!   is written with `Durability::None` (made durable by the next durable commit): losing it only
//!   means less is re-applied at start, which openraft allows.
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

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
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

type Meta = SnapshotMeta<NodeId, NodeAddrs>;
type Membership = StoredMembership<NodeId, NodeAddrs>;
type Error = StorageError<NodeId>;

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
    #[error("the application refused the snapshot: {0}")]
    Restore(String),
    #[cfg(test)]
    #[error("injected commit failure")]
    Injected,
}

fn io_error(subject: ErrorSubject<NodeId>, verb: ErrorVerb, e: StoreError) -> Error {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

/// Opens (or creates) node `node_id`'s database at `path` and returns its log store and state
/// machine. When the database holds a snapshot, `app` is restored from it. The log store takes
/// its disk delay for `node_id` from `fault_hook`.
pub fn open(
    path: &Path,
    app: Box<dyn Application>,
    node_id: NodeId,
    fault_hook: FaultHook,
) -> Result<(LogStore, StateMachineStore), StoreError> {
    let db = Arc::new(Database::create(path)?);
    let txn = db.begin_write()?;
    txn.open_table(LOG_TABLE)?;
    txn.open_table(META_TABLE)?;
    txn.commit()?;
    let log_store = LogStore {
        db: db.clone(),
        node_id,
        fault_hook,
        #[cfg(test)]
        fail_next_commit: Default::default(),
    };
    let state_machine = StateMachineStore::open(db, app)?;
    Ok((log_store, state_machine))
}

fn read_meta<T: DeserializeOwned>(db: &Database, key: &str) -> Result<Option<T>, StoreError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(META_TABLE)?;
    match table.get(key)? {
        Some(value) => Ok(Some(serde_json::from_slice(value.value())?)),
        None => Ok(None),
    }
}

fn write_meta<T: Serialize>(
    db: &Database,
    key: &str,
    value: &T,
    durability: Durability,
) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(value)?;
    let mut txn = db.begin_write()?;
    txn.set_durability(durability)?;
    {
        let mut table = txn.open_table(META_TABLE)?;
        table.insert(key, bytes.as_slice())?;
    }
    txn.commit()?;
    Ok(())
}

/// The Raft log, vote and committed log id. Cloning shares the database (a clone is also the
/// log reader openraft asks for).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    node_id: NodeId,
    /// Says how slow this node's disk is (a fault injected by tests and the simulator).
    fault_hook: FaultHook,
    #[cfg(test)]
    fail_next_commit: Arc<std::sync::atomic::AtomicBool>,
}

impl LogStore {
    /// A handle that tells whether any store object still holds the database open.
    pub(crate) fn database_handle(&self) -> std::sync::Weak<Database> {
        Arc::downgrade(&self.db)
    }

    /// Waits as long as a write to a slow disk would take: the disk delay the fault hook sets
    /// for this node. Returns at once (without yielding) when there is none.
    async fn wait_for_slow_disk(&self) {
        let delay = self.fault_hook.disk_delay(self.node_id);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    fn entries(
        &self,
        range: (Bound<u64>, Bound<u64>),
    ) -> Result<Vec<Entry<TypeConfig>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOG_TABLE)?;
        let mut entries = Vec::new();
        for item in table.range::<u64>(range)? {
            let (_, value) = item?;
            entries.push(serde_json::from_slice(value.value())?);
        }
        Ok(entries)
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, StoreError> {
        let last_purged_log_id: Option<LogId<NodeId>> = read_meta(&self.db, KEY_LAST_PURGED)?;
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOG_TABLE)?;
        let last_log_id = match table.last()? {
            Some((_, value)) => {
                let entry: Entry<TypeConfig> = serde_json::from_slice(value.value())?;
                Some(entry.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
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
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut table = txn.open_table(LOG_TABLE)?;
            for entry in entries {
                let bytes = serde_json::to_vec(&entry)?;
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
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut table = txn.open_table(LOG_TABLE)?;
            table.retain_in::<u64, _>(index.., |_, _| false)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Records `log_id` as purged and deletes every entry up to it, atomically.
    fn purge_upto(&self, log_id: &LogId<NodeId>) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(log_id)?;
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
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
        self.wait_for_slow_disk().await;
        write_meta(&self.db, KEY_VOTE, vote, Durability::Immediate)
            .map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, Error> {
        read_meta(&self.db, KEY_VOTE).map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Read, e))
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), Error> {
        write_meta(&self.db, KEY_COMMITTED, &committed, Durability::None)
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, Error> {
        let committed: Option<Option<LogId<NodeId>>> = read_meta(&self.db, KEY_COMMITTED)
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Read, e))?;
        Ok(committed.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), Error>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.wait_for_slow_disk().await;
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
fn save_snapshot(db: &Database, meta: &Meta, data: &[u8]) -> Result<(), StoreError> {
    let meta_bytes = serde_json::to_vec(meta)?;
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    {
        let mut table = txn.open_table(META_TABLE)?;
        let stored: Option<Meta> = match table.get(KEY_SNAPSHOT_META)? {
            Some(value) => Some(serde_json::from_slice(value.value())?),
            None => None,
        };
        if let Some(stored) = stored.filter(|stored| stored.last_log_id > meta.last_log_id) {
            tracing::debug!(stored = %stored, offered = %meta, "keeping the newer stored snapshot");
            return Ok(());
        }
        table.insert(KEY_SNAPSHOT_META, meta_bytes.as_slice())?;
        table.insert(KEY_SNAPSHOT_DATA, data)?;
    }
    txn.commit()?;
    Ok(())
}

fn load_snapshot(db: &Database) -> Result<Option<(Meta, Vec<u8>)>, StoreError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(META_TABLE)?;
    let meta: Meta = match table.get(KEY_SNAPSHOT_META)? {
        Some(value) => serde_json::from_slice(value.value())?,
        None => return Ok(None),
    };
    let data = match table.get(KEY_SNAPSHOT_DATA)? {
        Some(value) => value.value().to_vec(),
        None => Vec::new(),
    };
    Ok(Some((meta, data)))
}

/// The state machine: the application plus the last applied log id and membership.
pub struct StateMachineStore {
    db: Arc<Database>,
    app: Box<dyn Application>,
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
    snapshots_built: u64,
}

impl StateMachineStore {
    fn open(db: Arc<Database>, mut app: Box<dyn Application>) -> Result<Self, StoreError> {
        let mut last_applied = None;
        let mut membership = Membership::default();
        if let Some((meta, data)) = load_snapshot(&db)? {
            app.restore(&data).map_err(StoreError::Restore)?;
            tracing::info!(snapshot = %meta, "state machine restored from snapshot");
            last_applied = meta.last_log_id;
            membership = meta.last_membership;
        }
        Ok(Self {
            db,
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
        save_snapshot(&self.db, meta, &data)
            .map_err(|e| io_error(ErrorSubject::Snapshot(signature), ErrorVerb::Write, e))?;
        tracing::info!(snapshot = %meta, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, Error> {
        let loaded = load_snapshot(&self.db)
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
    meta: Meta,
    data: Vec<u8>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, Error> {
        save_snapshot(&self.db, &self.meta, &self.data).map_err(|e| {
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
                let vote: Option<Vote<NodeId>> = read_meta(&reader.db, KEY_VOTE).expect("read");
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
        save_snapshot(&sm.db, &older, b"[]").expect("save");
        let current = sm
            .get_current_snapshot()
            .await
            .expect("snapshot")
            .expect("present");
        assert_eq!(current.meta.last_log_id, Some(log_id(1, 1, 4)));
    }
}
