//! The event log as the replicated state keeps it: the last [`LOG_MAX`] records, shared
//! between copies of the state. Copying a state (the view each daemon task reads, published
//! after every applied entry) copies one pointer to the log; the log is copied only when an
//! entry changes it while a copy still holds it, and then records are shared too (a record
//! is copied when it changes while a copy still holds it).

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{EventRecord, LOG_MAX};

/// The last [`LOG_MAX`] event records, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventLog {
    records: Arc<VecDeque<Arc<EventRecord>>>,
}

impl EventLog {
    /// The records, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &EventRecord> + ExactSizeIterator {
        self.records.iter().map(|r| &**r)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The newest record.
    pub fn back(&self) -> Option<&EventRecord> {
        self.records.back().map(|r| &**r)
    }

    /// Appends a record, forgetting the oldest beyond [`LOG_MAX`].
    pub(crate) fn push(&mut self, record: EventRecord) {
        let records = Arc::make_mut(&mut self.records);
        assert!(
            records.back().is_none_or(|last| last.id < record.id),
            "event-log records are appended in id order"
        );
        records.push_back(Arc::new(record));
        while records.len() > LOG_MAX {
            records.pop_front();
        }
    }

    /// The record with this id, to change (copied first if a copy of the state holds it).
    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut EventRecord> {
        if !self.records.iter().any(|r| r.id == id) {
            return None;
        }
        Arc::make_mut(&mut self.records)
            .iter_mut()
            .rev()
            .find(|r| r.id == id)
            .map(Arc::make_mut)
    }

    /// Forgets every record (tests).
    #[cfg(test)]
    pub(crate) fn clear(&mut self) {
        self.records = Arc::default();
    }

    /// Whether `other` shares this log's records without a copy (tests).
    pub fn shares_with(&self, other: &EventLog) -> bool {
        Arc::ptr_eq(&self.records, &other.records)
    }
}
