//! The durable event log (issue 16 item 7): every finished event record, kept on each node in
//! `events.redb` in its state directory beyond the replicated log's window of
//! [`halcyon_state::LOG_MAX`] records, for `[events] keep_events_for` (default 90 days) and
//! at most `keep_events_mib` (default 256 MiB; the oldest go first).
//!
//! The replicated log stays the source of truth: the archive copies each record once it has
//! finished (ids are the cluster's, so every node's archive agrees on them), and `GET
//! /v1/events` reads the archive for records older than the window. A node that was down
//! while records passed through the whole window does not have them (the others do).
//!
//! Each value is sealed like the Raft store's (CRC-32 of the JSON before it): a corrupted
//! record is reported with its id and the file, never read as something else. Every commit
//! is durable (one per batch of records that finished since the last: a few per event at
//! most); redb's non-durable commits are lost with the process, which would lose the
//! records that left the window meanwhile.

use std::path::{Path, PathBuf};
use std::time::Duration;

use halcyon_state::{EventRecord, Outcome};
use jiff::Timestamp;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The sum of the stored values' sizes.
const BYTES: &str = "bytes";

/// How much the archive keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub age: Duration,
    pub bytes: u64,
}

impl Retention {
    pub fn of(events: &halcyon_config::EventDefaults) -> Retention {
        Retention {
            age: events.keep_events_for,
            bytes: events.keep_events_mib.saturating_mul(1 << 20),
        }
    }
}

/// The node's durable event log.
pub struct Archive {
    db: Database,
    path: PathBuf,
}

fn failed(path: &Path, e: impl std::fmt::Display) -> String {
    format!("the durable event log {}: {e}", path.display())
}

impl Archive {
    /// Opens (or creates) `events.redb` in `state_dir`.
    pub fn open(state_dir: &Path) -> anyhow::Result<Archive> {
        let path = state_dir.join("events.redb");
        let db = Database::create(&path).map_err(|e| anyhow::anyhow!(failed(&path, e)))?;
        let archive = Archive { db, path };
        archive
            .write(Durability::Immediate, |_, _| Ok(()))
            .map_err(|e| anyhow::anyhow!(e))?;
        Ok(archive)
    }

    fn write(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut redb::Table<u64, &[u8]>, &mut redb::Table<&str, u64>) -> Result<(), String>,
    ) -> Result<(), String> {
        let e = |e: &dyn std::fmt::Display| failed(&self.path, e);
        let mut txn = self.db.begin_write().map_err(|x| e(&x))?;
        txn.set_durability(durability).map_err(|x| e(&x))?;
        {
            let mut records = txn.open_table(RECORDS).map_err(|x| e(&x))?;
            let mut meta = txn.open_table(META).map_err(|x| e(&x))?;
            f(&mut records, &mut meta)?;
        }
        txn.commit().map_err(|x| e(&x))
    }

    /// The largest id kept.
    pub fn last_id(&self) -> Result<Option<u64>, String> {
        let e = |x: &dyn std::fmt::Display| failed(&self.path, x);
        let txn = self.db.begin_read().map_err(|x| e(&x))?;
        let records = txn.open_table(RECORDS).map_err(|x| e(&x))?;
        let last = records.last().map_err(|x| e(&x))?;
        Ok(last.map(|(id, _)| id.value()))
    }

    /// Keeps the finished ones of `records` whose id is above every id kept, then drops
    /// what `retention` no longer allows (older than its age at `now`, then the oldest
    /// beyond its size). Returns how many it kept.
    pub fn keep<'r>(
        &self,
        records: impl Iterator<Item = &'r EventRecord>,
        now: Timestamp,
        retention: Retention,
    ) -> Result<usize, String> {
        let last = self.last_id()?;
        let new: Vec<(u64, Vec<u8>)> = records
            .filter(|r| r.outcome != Outcome::Running && last.is_none_or(|l| r.id > l))
            .map(|r| (r.id, seal(r)))
            .collect();
        let kept = new.len();
        let oldest = now
            .checked_sub(
                jiff::SignedDuration::try_from(retention.age).unwrap_or(jiff::SignedDuration::MAX),
            )
            .unwrap_or(Timestamp::MIN);
        self.write(Durability::Immediate, |table, meta| {
            let e = |x: &dyn std::fmt::Display| failed(&self.path, x);
            let mut bytes = meta.get(BYTES).map_err(|x| e(&x))?.map_or(0, |v| v.value());
            for (id, value) in &new {
                table.insert(id, value.as_slice()).map_err(|x| e(&x))?;
                bytes += value.len() as u64;
            }
            // Oldest first: drop while too old or too much.
            loop {
                let Some((id, len, finished)) = (match table.first().map_err(|x| e(&x))? {
                    Some((id, value)) => {
                        let value = value.value();
                        let finished = open(value)
                            .ok()
                            .and_then(|r| r.finished_at.or(Some(r.queued_at)));
                        Some((id.value(), value.len() as u64, finished))
                    }
                    None => None,
                }) else {
                    break;
                };
                let too_old = finished.is_some_and(|f| f < oldest);
                if !too_old && bytes <= retention.bytes {
                    break;
                }
                table.remove(id).map_err(|x| e(&x))?;
                bytes = bytes.saturating_sub(len);
            }
            meta.insert(BYTES, bytes).map_err(|x| e(&x))?;
            Ok(())
        })?;
        Ok(kept)
    }

    /// Every record kept with an id below `below`, oldest first (`None`: all).
    pub fn records(&self, below: Option<u64>) -> Result<Vec<EventRecord>, String> {
        let e = |x: &dyn std::fmt::Display| failed(&self.path, x);
        let txn = self.db.begin_read().map_err(|x| e(&x))?;
        let table = txn.open_table(RECORDS).map_err(|x| e(&x))?;
        let mut out = Vec::new();
        let range = table
            .range(0..below.unwrap_or(u64::MAX))
            .map_err(|x| e(&x))?;
        for item in range {
            let (id, value) = item.map_err(|x| e(&x))?;
            let record = open(value.value()).map_err(|why| {
                failed(
                    &self.path,
                    format!(
                        "record {} is corrupt ({why}); move the file away to start a new one \
                         (the other nodes keep theirs)",
                        id.value()
                    ),
                )
            })?;
            assert_eq!(record.id, id.value(), "a record is stored under its own id");
            out.push(record);
        }
        Ok(out)
    }
}

/// The node's task that copies finished records from the replicated log into the archive as
/// the replica applies them.
pub async fn keep_events(node: std::sync::Arc<crate::node::Node>) {
    let mut view = node.view.clone();
    let mut kept_up_to = node.archive.last_id().unwrap_or_else(|e| {
        tracing::error!("{e}");
        None
    });
    let mut failing = false;
    loop {
        let state = std::sync::Arc::clone(&view.borrow_and_update());
        let fresh = state
            .log()
            .iter()
            .any(|r| r.outcome != Outcome::Running && kept_up_to.is_none_or(|k| r.id > k));
        if fresh {
            let retention = Retention::of(&node.config().cluster.events);
            let now = node.timestamp();
            let archive = &node.archive;
            match crate::blocking(|| archive.keep(state.log().iter(), now, retention)) {
                Ok(_) => {
                    kept_up_to = state
                        .log()
                        .iter()
                        .filter(|r| r.outcome != Outcome::Running)
                        .map(|r| r.id)
                        .max()
                        .max(kept_up_to);
                    if failing {
                        tracing::info!("the durable event log is written again");
                    }
                    failing = false;
                }
                Err(e) if !failing => {
                    tracing::error!("{e}; the replicated log still holds the last records");
                    failing = true;
                }
                Err(_) => {}
            }
        }
        drop(state);
        if view.changed().await.is_err() {
            return;
        }
    }
}

/// CRC-32 (little endian) of the JSON, then the JSON.
fn seal(record: &EventRecord) -> Vec<u8> {
    let json = serde_json::to_vec(record).expect("an event record encodes as JSON");
    let mut value = crc32fast::hash(&json).to_le_bytes().to_vec();
    value.extend_from_slice(&json);
    value
}

fn open(value: &[u8]) -> Result<EventRecord, String> {
    let (crc, json) = value
        .split_first_chunk::<4>()
        .ok_or_else(|| format!("{} bytes, shorter than its checksum", value.len()))?;
    if u32::from_le_bytes(*crc) != crc32fast::hash(json) {
        return Err("its checksum does not match".to_owned());
    }
    serde_json::from_slice(json).map_err(|e| format!("it does not decode: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64, at: i64, outcome: Outcome) -> EventRecord {
        let at = Timestamp::from_second(1_700_000_000 + at).unwrap();
        EventRecord {
            id,
            sequence: id,
            event: halcyon_policy::Event::Timer,
            by: "test".into(),
            queued_at: at,
            started_at: Some(at),
            finished_at: (outcome != Outcome::Running).then_some(at),
            outcome,
            plan_text: None,
            plan: None,
            error: None,
            actions: Vec::new(),
            program_text: None,
            launches: Vec::new(),
            notes: Vec::new(),
        }
    }

    const FOREVER: Retention = Retention {
        age: Duration::from_secs(1 << 40),
        bytes: u64::MAX,
    };

    #[test]
    fn finished_records_are_kept_once_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(dir.path()).unwrap();
        let now = Timestamp::from_second(1_700_000_100).unwrap();
        let records = [
            record(1, 0, Outcome::Done),
            record(2, 1, Outcome::Refused),
            record(3, 2, Outcome::Running),
        ];
        assert_eq!(archive.keep(records.iter(), now, FOREVER).unwrap(), 2);
        // Again: nothing new; the running one is not kept until it ends... and then only if
        // its id is above the last kept, which it is.
        assert_eq!(archive.keep(records.iter(), now, FOREVER).unwrap(), 0);
        let done = record(3, 2, Outcome::Done);
        assert_eq!(archive.keep([&done].into_iter(), now, FOREVER).unwrap(), 1);
        drop(archive);
        let archive = Archive::open(dir.path()).unwrap();
        let ids: Vec<u64> = archive
            .records(None)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, [1, 2, 3]);
        let ids: Vec<u64> = archive
            .records(Some(3))
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, [1, 2]);
    }

    #[test]
    fn retention_drops_the_too_old_and_the_oldest_beyond_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(dir.path()).unwrap();
        let now = Timestamp::from_second(1_700_000_100).unwrap();
        let records: Vec<EventRecord> = (1..=10)
            .map(|i| record(i, i as i64 * 10, Outcome::Done))
            .collect();
        let age = Retention {
            age: Duration::from_secs(45),
            bytes: u64::MAX,
        };
        archive.keep(records.iter(), now, age).unwrap();
        // now = +100 s: records finished before +55 s are gone.
        let ids: Vec<u64> = archive
            .records(None)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, [6, 7, 8, 9, 10]);
        let last_two = (seal(&records[8]).len() + seal(&records[9]).len()) as u64;
        let size = Retention {
            age: FOREVER.age,
            bytes: last_two,
        };
        archive.keep(std::iter::empty(), now, size).unwrap();
        let ids: Vec<u64> = archive
            .records(None)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, [9, 10]);
    }

    #[test]
    fn a_corrupted_record_is_reported_with_its_id_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(dir.path()).unwrap();
        let now = Timestamp::from_second(1_700_000_100).unwrap();
        archive
            .keep([&record(7, 0, Outcome::Done)].into_iter(), now, FOREVER)
            .unwrap();
        let mut value = seal(&record(7, 0, Outcome::Done));
        let last = value.len() - 2;
        value[last] ^= 0x01;
        archive
            .write(Durability::Immediate, |t, _| {
                t.insert(7, value.as_slice())
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .unwrap();
        let error = archive.records(None).unwrap_err();
        assert!(error.contains("record 7 is corrupt"), "{error}");
        assert!(error.contains("events.redb"), "{error}");
    }
}
