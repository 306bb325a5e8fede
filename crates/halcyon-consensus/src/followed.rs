//! The leader's side of its followers' acknowledgements: for each follower, the latest
//! append-entries this node sent as leader that the follower answered with a match, by the
//! moment it was sent and the vote it was sent under (issue 21, the coordinator's idle CPU).
//!
//! A lease grant needs a quorum to have acknowledged this node's leadership in a round begun
//! after the renewal arrived. openraft's `ensure_linearizable` sends a round of its own (one
//! append-entries to every voter); at 16 nodes those rounds were 15 messages each, up to 40 a
//! second, on top of openraft's heartbeats, which go to every follower three times per
//! heartbeat interval anyway. A heartbeat is an append-entries like those of a round, so a
//! quorum of voters that answered with a match heartbeats sent after the renewal arrived,
//! under the vote this node leads with, confirms the leadership as a round begun then would
//! (openraft keeps the same record, the "quorum-acked time", but publishes it only in whole
//! milliseconds since an unknown moment). [`confirmed_since`] is that test, for the voter
//! sets in force (two during a joint change: a quorum of each).
//!
//! Counted is only a match (success or partial success): the follower's log agrees with the
//! leader's at the request's previous entry, and it took the leader's vote. A refusal for a
//! higher vote, a conflict, an error or a timeout counts nothing. The moment kept is the
//! request's send, taken before it leaves, so an acknowledgement is never dated later than
//! the round it belongs to. Times are tokio's monotonic clock (simulated time in a simulator).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use openraft::Vote;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::NodeId;

/// For each follower: the vote and send moment of the latest append-entries it matched.
pub type Acked = BTreeMap<NodeId, (Vote<NodeId>, Instant)>;

/// The followers' matches, shared by the network's replication streams and the leader's
/// confirmations; a change wakes those waiting ([`Followed::changes`]).
#[derive(Debug)]
pub struct Followed {
    acked: Mutex<Acked>,
    changes: watch::Sender<u64>,
}

impl Default for Followed {
    fn default() -> Followed {
        Followed {
            acked: Mutex::new(Acked::new()),
            changes: watch::Sender::new(0),
        }
    }
}

impl Followed {
    /// `follower` matched an append-entries sent at `sent` under `vote`. A late answer to an
    /// earlier request changes nothing: one sent before the kept one under the same vote, or
    /// one under an older vote.
    pub fn matched(&self, follower: NodeId, vote: Vote<NodeId>, sent: Instant) {
        {
            let mut acked = self.acked.lock().expect(crate::POISONED);
            match acked.get_mut(&follower) {
                Some((v, at)) => match vote.partial_cmp(v) {
                    Some(std::cmp::Ordering::Equal) => *at = (*at).max(sent),
                    Some(std::cmp::Ordering::Less) => return,
                    _ => (*v, *at) = (vote, sent),
                },
                None => {
                    acked.insert(follower, (vote, sent));
                }
            }
        }
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees every later [`Followed::matched`].
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Whether a quorum of each voter set confirmed `leader` leading with `vote` in rounds
    /// sent at or after `since` ([`confirmed_since`]).
    pub fn confirmed_since(
        &self,
        voter_sets: &[BTreeSet<NodeId>],
        leader: NodeId,
        vote: &Vote<NodeId>,
        since: Instant,
    ) -> bool {
        let acked = self.acked.lock().expect(crate::POISONED);
        confirmed_since(voter_sets, leader, &acked, vote, since)
    }
}

/// Whether every voter set has a majority of voters that acknowledged `leader` leading with
/// `vote` at or after `since`: the leader itself (it acknowledges its own leadership now), and
/// each follower whose latest match was of a request sent under `vote` at or after `since`.
/// No voter set at all confirms nothing.
pub fn confirmed_since(
    voter_sets: &[BTreeSet<NodeId>],
    leader: NodeId,
    acked: &Acked,
    vote: &Vote<NodeId>,
    since: Instant,
) -> bool {
    let confirms = |voter: &NodeId| {
        *voter == leader
            || acked
                .get(voter)
                .is_some_and(|(v, sent)| v == vote && *sent >= since)
    };
    !voter_sets.is_empty()
        && voter_sets
            .iter()
            .all(|set| set.iter().filter(|v| confirms(v)).count() * 2 > set.len())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn vote(term: u64, node: NodeId) -> Vote<NodeId> {
        Vote::new_committed(term, node)
    }

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    /// Scenarios on five voters led by 1 in term 3: who matched what, and whether a renewal
    /// that arrived at `t0` is confirmed.
    #[test]
    fn a_quorum_of_matches_sent_after_the_arrival_confirms() {
        let t0 = Instant::now();
        let before = t0 - Duration::from_millis(1);
        let after = t0 + Duration::from_millis(1);
        let voters = [set(&[1, 2, 3, 4, 5])];
        let led = vote(3, 1);
        let acked = |entries: &[(NodeId, Vote<NodeId>, Instant)]| -> Acked {
            entries.iter().map(|&(n, v, at)| (n, (v, at))).collect()
        };
        let cases: [(&str, Acked, bool); 7] = [
            ("nobody answered: the leader alone", acked(&[]), false),
            (
                "two followers after the arrival, with the leader: 3 of 5",
                acked(&[(2, led, after), (3, led, t0)]),
                true,
            ),
            (
                "one follower only after the arrival",
                acked(&[(2, led, after), (3, led, before), (4, led, before)]),
                false,
            ),
            (
                "matches under an older vote of this node do not count",
                acked(&[(2, vote(2, 1), after), (3, vote(2, 1), after)]),
                false,
            ),
            (
                "matches under another leader's vote do not count",
                acked(&[(2, vote(3, 2), after), (3, vote(3, 2), after)]),
                false,
            ),
            (
                "an uncommitted vote (a candidate's) is not the leader's",
                acked(&[(2, Vote::new(3, 1), after), (3, Vote::new(3, 1), after)]),
                false,
            ),
            (
                "all four followers",
                acked(&[
                    (2, led, after),
                    (3, led, after),
                    (4, led, after),
                    (5, led, after),
                ]),
                true,
            ),
        ];
        for (what, acked, confirmed) in cases {
            assert_eq!(
                confirmed_since(&voters, 1, &acked, &led, t0),
                confirmed,
                "{what}"
            );
        }
        assert!(
            !confirmed_since(&[], 1, &Acked::new(), &led, t0),
            "no voters: nothing is confirmed"
        );
    }

    /// During a joint change each voter set needs its own majority; a leader outside a set
    /// (being removed from it) does not count for that set.
    #[test]
    fn a_joint_change_needs_a_majority_of_each_voter_set() {
        let t0 = Instant::now();
        let led = vote(4, 1);
        let old = set(&[1, 2, 3]);
        let new = set(&[2, 3, 4, 5, 6]);
        let joint = [old.clone(), new];
        let acked: Acked = [(2, (led, t0)), (3, (led, t0))].into_iter().collect();
        assert!(confirmed_since(
            std::slice::from_ref(&old),
            1,
            &acked,
            &led,
            t0
        ));
        assert!(
            !confirmed_since(&joint, 1, &acked, &led, t0),
            "2 of the 5 new voters"
        );
        let mut more = acked.clone();
        more.insert(4, (led, t0));
        assert!(confirmed_since(&joint, 1, &more, &led, t0));
        assert!(
            !confirmed_since(&[set(&[2, 3, 4, 5])], 1, &acked, &led, t0),
            "the leader is not one of these voters: 2 of 4 is no majority"
        );
    }

    /// A late answer to an earlier request does not move a follower's match back, nor does
    /// one under an older vote; a match under a newer vote replaces the kept one; a change
    /// wakes a receiver.
    #[tokio::test]
    async fn the_latest_match_per_follower_is_kept_and_announced() {
        let followed = Followed::default();
        let mut changes = followed.changes();
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(5);
        let (old, led) = (vote(2, 1), vote(3, 1));
        let voters = [set(&[1, 2, 3])];
        followed.matched(2, led, later);
        assert!(changes.has_changed().expect("open"));
        changes.borrow_and_update();
        followed.matched(2, led, t0);
        assert!(followed.confirmed_since(&voters, 1, &led, later));
        followed.matched(2, old, later + Duration::from_millis(5));
        assert!(
            followed.confirmed_since(&voters, 1, &led, later),
            "a late answer under an older vote changes nothing"
        );
        let newer = vote(4, 1);
        followed.matched(2, newer, t0);
        assert!(!followed.confirmed_since(&voters, 1, &led, t0));
        assert!(followed.confirmed_since(&voters, 1, &newer, t0));
        assert!(!followed.confirmed_since(&voters, 1, &newer, later));
        assert!(changes.has_changed().expect("open"));
    }
}
