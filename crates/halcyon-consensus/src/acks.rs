//! When each voter of a new term last acknowledged a leader, as it told the candidate with its
//! vote (issue 21: the coordinator's death).
//!
//! A lease granted by a leader needs a quorum to have acknowledged that leader in a round
//! begun after the holder sent its renewal. The voters that elected the next leader are a
//! quorum too, so one of them acknowledged that round: every lease an older leader granted
//! was asked for before the last acknowledgement of some voter of the new term. Each voter
//! says how long ago that was when it answers a vote ([`Acknowledged::age`]); the candidate
//! keeps the answers of the voters that granted ([`VoteAges`]), with its own, and the new
//! coordinator waits a lease from the most recent of them rather than from its election (the
//! daemon's `lease::release_deadline_from_votes`, which applies the clocks' drift bound).
//!
//! What a voter counts as an acknowledgement, so that the age it reports is never too long:
//! - an append-entries or a snapshot it accepted, counted when its handling ended (before the
//!   answer goes out); while one is being handled, the age is zero (its end may come after the
//!   vote is answered, and its answer could still confirm the old leader's round);
//! - a confirmation it began itself as leader ([`Acknowledged::lead`], called before the
//!   rounds that confirm it are counted: openraft's own round, or the heartbeats sent after a
//!   renewal arrived, `Consensus::confirm_since_now`): a leader acknowledges its own rounds,
//!   and a deposed leader may vote for its successor;
//! - nothing since the process started: age zero (what it acknowledged before is unknown).
//!
//! After answering a vote of term `t` a voter acknowledges no leader of an older term (Raft:
//! its term is `t`), so what it reported stays true. The candidate takes its own age when it
//! asks its first vote of the term. Times are tokio's monotonic clock (simulated time in a
//! simulator).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::NodeId;

/// Terms whose vote answers are kept (the current one and the one before).
pub const TERMS_KEPT: usize = 2;

/// What this node has acknowledged of leaders (see the module documentation).
#[derive(Debug, Default)]
pub struct Acknowledged {
    /// The last append-entries or snapshot accepted from a leader.
    accepted: Mutex<Option<Instant>>,
    /// The last confirmation round this node began as leader.
    led: Mutex<Option<Instant>>,
    /// Append-entries and snapshots being handled.
    handling: AtomicUsize,
    /// A leader's append-entries matched this replica's log, or its snapshot was installed,
    /// at least once since the process started.
    matched: AtomicBool,
}

/// An append-entries or snapshot being handled (see [`Acknowledged::handling`]); counted until
/// dropped.
pub struct Handling<'a>(&'a Acknowledged);

impl Drop for Handling<'_> {
    fn drop(&mut self) {
        self.0.handling.fetch_sub(1, Ordering::SeqCst);
    }
}

fn later(slot: &Mutex<Option<Instant>>, now: Instant) {
    let mut at = slot.lock().expect(crate::POISONED);
    if at.is_none_or(|last| last < now) {
        *at = Some(now);
    }
}

impl Acknowledged {
    /// An append-entries or snapshot is about to be handled: until the returned value is
    /// dropped (after [`Acknowledged::accepted`] when it was accepted), ages are zero.
    pub fn handling(&self) -> Handling<'_> {
        self.handling.fetch_add(1, Ordering::SeqCst);
        Handling(self)
    }

    /// An append-entries or snapshot was accepted from a leader at `now`.
    pub fn accepted(&self, now: Instant) {
        later(&self.accepted, now);
    }

    /// A leader's append-entries matched this replica's log (it answered success), or its
    /// snapshot was installed: this replica then knows that leader's commit index.
    pub fn matched(&self) {
        self.matched.store(true, Ordering::SeqCst);
    }

    /// Whether [`Acknowledged::matched`] happened since the process started.
    pub fn has_matched(&self) -> bool {
        self.matched.load(Ordering::SeqCst)
    }

    /// The last one accepted (the pre-vote's "a leader is heard").
    pub fn last_accepted(&self) -> Option<Instant> {
        *self.accepted.lock().expect(crate::POISONED)
    }

    /// This node, as leader, begins a confirmation at `now` (counting itself in its quorum).
    pub fn lead(&self, now: Instant) {
        later(&self.led, now);
    }

    /// How long before `now` this node last acknowledged a leader, itself included: zero
    /// while an append-entries or snapshot is being handled or when it acknowledged none
    /// since it started.
    pub fn age(&self, now: Instant) -> Duration {
        if self.handling.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        let accepted = *self.accepted.lock().expect(crate::POISONED);
        let led = *self.led.lock().expect(crate::POISONED);
        match accepted.max(led) {
            Some(at) => now.saturating_duration_since(at),
            None => Duration::ZERO,
        }
    }
}

/// The candidate's side: for each term it stood in, when each voter that granted its vote
/// (and itself) last acknowledged a leader, on this node's clock.
#[derive(Debug, Default)]
pub struct VoteAges {
    terms: Mutex<BTreeMap<u64, BTreeMap<NodeId, Instant>>>,
}

impl VoteAges {
    /// Voter `voter` granted a vote of `term`, answered at `received` and saying it last
    /// acknowledged a leader `age` before it answered. Kept is the earliest moment its
    /// acknowledgement may have happened after, `received - age`: the answer's travel only
    /// makes the acknowledgement earlier. A voter that answers twice keeps the later.
    pub fn granted(&self, term: u64, voter: NodeId, received: Instant, age: Duration) {
        let at = received.checked_sub(age).unwrap_or(received);
        let mut terms = self.terms.lock().expect(crate::POISONED);
        let voters = terms.entry(term).or_default();
        voters
            .entry(voter)
            .and_modify(|known| *known = (*known).max(at))
            .or_insert(at);
        while terms.len() > TERMS_KEPT {
            terms.pop_first();
        }
    }

    /// This node stands in `term`: its own last acknowledgement, taken once per term (when
    /// it asks its first vote).
    pub fn standing(&self, term: u64, own: NodeId, now: Instant, age: Duration) {
        let known = self
            .terms
            .lock()
            .expect(crate::POISONED)
            .get(&term)
            .is_some_and(|voters| voters.contains_key(&own));
        if !known {
            self.granted(term, own, now, age);
        }
    }

    /// For `term`: how long before `now` each voter that granted (this node included) last
    /// acknowledged a leader, at most.
    pub fn ages(&self, term: u64, now: Instant) -> BTreeMap<NodeId, Duration> {
        self.terms
            .lock()
            .expect(crate::POISONED)
            .get(&term)
            .map(|voters| {
                voters
                    .iter()
                    .map(|(id, at)| (*id, now.saturating_duration_since(*at)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_voter_reports_its_last_acknowledgement_and_zero_while_one_is_handled() {
        let acked = Acknowledged::default();
        let t0 = Instant::now();
        assert_eq!(acked.age(t0), Duration::ZERO, "none since start: zero");
        acked.accepted(t0);
        let later = t0 + Duration::from_millis(300);
        assert_eq!(acked.age(later), Duration::from_millis(300));
        {
            let _handling = acked.handling();
            assert_eq!(acked.age(later), Duration::ZERO, "an append being handled");
        }
        assert_eq!(acked.age(later), Duration::from_millis(300));
        acked.lead(t0 + Duration::from_millis(200));
        assert_eq!(
            acked.age(later),
            Duration::from_millis(100),
            "its own round as leader counts"
        );
        acked.accepted(t0 + Duration::from_millis(100));
        assert_eq!(
            acked.age(later),
            Duration::from_millis(100),
            "the later of the two"
        );
        acked.accepted(t0 + Duration::from_millis(50));
        assert_eq!(
            acked.last_accepted(),
            Some(t0 + Duration::from_millis(100)),
            "never moves back"
        );
    }

    #[test]
    fn the_candidate_keeps_the_granted_ages_of_its_two_latest_terms() {
        let ages = VoteAges::default();
        let t0 = Instant::now() + Duration::from_secs(10);
        ages.standing(5, 1, t0, Duration::from_millis(250));
        ages.granted(
            5,
            2,
            t0 + Duration::from_millis(10),
            Duration::from_millis(200),
        );
        // Its own age is taken once per term.
        ages.standing(5, 1, t0 + Duration::from_millis(20), Duration::ZERO);
        let now = t0 + Duration::from_millis(100);
        assert_eq!(
            ages.ages(5, now),
            BTreeMap::from([
                (1, Duration::from_millis(350)),
                (2, Duration::from_millis(290))
            ])
        );
        ages.granted(6, 3, now, Duration::ZERO);
        ages.granted(7, 3, now, Duration::ZERO);
        assert!(ages.ages(5, now).is_empty(), "older terms are forgotten");
        assert_eq!(ages.ages(7, now).len(), 1);
    }
}
