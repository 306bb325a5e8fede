//! Lease arithmetic (SPEC 6): the holder's expiry and the grantor's release deadlines, kept
//! free of I/O. The timings they work with (the lease, the renewal interval, the fencing lead,
//! openraft's `election_max`) and the inequalities between them are the configuration's
//! (`halcyon_config::timing`, which `halcyon check` enforces); this module takes them as inputs
//! and derives none of them again.
//!
//! Clock: tokio's `Instant` (CLOCK_MONOTONIC on Linux) on each machine, never compared across
//! machines. Assumption: the rates of any two nodes' monotonic clocks differ by at most
//! [`DRIFT`] (1 %); a suspended machine (whose CLOCK_MONOTONIC stops) violates it, which is why
//! a watchdog or fencing is still wanted for paused hosts.
//!
//! The holder: takes `t_send` BEFORE it sends a renewal; on a grant its lease runs until
//! `t_send + lease` on its own clock. It starts halting its failover packages [`fence_lead`]
//! before that, and starts none without a lease.
//!
//! The grantor (the Raft leader): grants only after a quorum matched append-entries it sent
//! after the renewal arrived (openraft's heartbeats, `Consensus::confirm_since_now`; openraft's
//! own `ensure_linearizable()` round while it has applied nothing of its term), confirming
//! that it still leads, and only to a node not committed as departed (nor excluded as
//! stuck, `State::stuck`); it records the grant time `t_grant` as the request's arrival
//! (later than `t_send` in real time; the confirmation comes after it), keeping the latest
//! of a node's grants.
//!
//! The coordinator: runs `AwaitRelease` of node X only at
//! `max(last grant to X, leadership start) + lease * (1 + DRIFT) + MARGIN` on its own clock.
//! Real time elapsed from the holder's `t_send` to that moment is at least
//! `lease * (1 + DRIFT) / (1 + DRIFT) + MARGIN > lease` measured by the holder's clock
//! (to first order), so the holder's lease has expired, and it began halting `fence_lead`
//! earlier.
//!
//! A new coordinator: any grant by an older leader needed a quorum acknowledgement of a
//! heartbeat sent after the holder's `t_send`; the new leader needed a quorum of votes; the two
//! quorums share a voter V. openraft 0.9 followers reject vote requests while inside their
//! leader lease (`election_timeout_max` since they last heard a leader; a candidate waits it
//! out too), so V voted at least `election_max` (V's clock) after it acknowledged that
//! heartbeat, which came after `t_send`. Hence every older grant's lease expires, in real time,
//! by `lease x (1 + DRIFT) - election_max x (1 - DRIFT)` after the new leadership began, and
//! the new coordinator waits [`release_deadline_after_election`] from when it saw itself lead
//! (later than it began). Its own grants it times with [`release_deadline`].
//!
//! A sharper bound for the same grants, when the voters said enough: each voter tells the
//! candidate, with its vote, how long ago it last acknowledged a leader (itself included when
//! it led; `halcyon_consensus::acks`). The voters that granted are a quorum, so one of them
//! acknowledged the round that confirmed any older grant, which began after the holder's
//! `t_send`: every such lease ends by the most recent of those acknowledgements plus a lease
//! ([`release_deadline_from_votes`]). The coordinator waits for the earlier of the two bounds
//! (both hold). With the defaults an election takes 240-370 ms after the old leader's last
//! message, of which the first bound credits only `election_max` (160 ms).

use std::time::Duration;

use tokio::time::Instant;

/// Bound on the relative rate difference of two nodes' monotonic clocks.
pub const DRIFT: f64 = 0.01;
/// Added to every release wait (scheduling delays, the holder's fencing time).
pub const MARGIN: Duration = Duration::from_millis(50);

/// How long before its lease expires a holder starts halting its failover packages: the
/// configuration's timing rule (`min(lease / 4, renewal interval)`).
pub use halcyon_config::timing::fence_lead;

/// When the coordinator may consider a node's lease certainly expired.
pub fn release_deadline(last_grant: Instant, lease: Duration) -> Instant {
    last_grant + lease.mul_f64(1.0 + DRIFT) + MARGIN
}

/// When a new coordinator (leading since `leader_since`) may consider every lease granted
/// by an older leader certainly expired (see the module documentation): a lease, less the
/// `election_max` every voter of the new term waited after last hearing the old leader, with
/// the drift bound applied against us on both sides, then measured on our clock.
pub fn release_deadline_after_election(
    leader_since: Instant,
    lease: Duration,
    election_max: Duration,
) -> Instant {
    let longest_lease = lease.mul_f64(1.0 + DRIFT);
    let shortest_wait = election_max.mul_f64(1.0 - DRIFT);
    let left = longest_lease.saturating_sub(shortest_wait);
    leader_since + left.mul_f64(1.0 + DRIFT) + MARGIN
}

/// When a new coordinator may consider every lease granted by an older leader certainly
/// expired, from what the voters that elected it said with their votes
/// (`halcyon_consensus::acks`): `ages` holds, for each voter that granted (itself included),
/// how long before `now` it last acknowledged a leader at most; `quorums` the voter sets of
/// the membership (one, or two during a voter change). `None` unless the voters in `ages`
/// make a majority of every set: only then do they include one of the quorum that
/// acknowledged any older grant's confirmation round.
///
/// Every such grant was asked for (the holder's `t_send`) before that round began, so before
/// the acknowledgement of some voter in `ages`, so before `now - min(ages)` (an age is
/// measured partly on the voter's clock: shortened by the drift bound twice). The lease it
/// gave runs at most `lease x (1 + DRIFT)` on this clock from there, and [`MARGIN`] is added
/// as for every release wait. It is earlier than [`release_deadline_after_election`] when
/// the election took longer than the voters' wait that bound assumes: a dead coordinator's
/// leases end about a lease after it last spoke, however long its successor's election
/// took.
pub fn release_deadline_from_votes<N: Ord>(
    now: Instant,
    ages: &std::collections::BTreeMap<N, Duration>,
    quorums: &[std::collections::BTreeSet<N>],
    lease: Duration,
) -> Option<Instant> {
    let majority_of_each = !quorums.is_empty()
        && quorums.iter().all(|voters| {
            let answered = voters.iter().filter(|v| ages.contains_key(v)).count();
            answered > voters.len() / 2
        });
    if !majority_of_each {
        return None;
    }
    let youngest = quorums
        .iter()
        .flatten()
        .filter_map(|v| ages.get(v))
        .min()
        .copied()?;
    let since = youngest.mul_f64(1.0 - 2.0 * DRIFT);
    let acknowledged = now.checked_sub(since).unwrap_or(now);
    Some(acknowledged + lease.mul_f64(1.0 + DRIFT) + MARGIN)
}

/// The holder's side of a lease.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    expiry: Option<Instant>,
}

impl Holder {
    /// A grant answering a renewal sent at `t_send`.
    pub fn granted(&mut self, t_send: Instant, lease: Duration) {
        let expiry = t_send + lease;
        self.expiry = Some(self.expiry.map_or(expiry, |e| e.max(expiry)));
    }

    /// True while failover packages may run or start at `now`.
    pub fn valid(&self, now: Instant, fence_lead: Duration) -> bool {
        self.expiry.is_some_and(|e| now + fence_lead < e)
    }

    pub fn remaining(&self, now: Instant) -> Duration {
        self.expiry
            .map_or(Duration::ZERO, |e| e.saturating_duration_since(now))
    }

    /// When failover packages must start halting: `fence_lead` before the expiry.
    pub fn fence_at(&self, fence_lead: Duration) -> Option<Instant> {
        self.expiry.map(|e| e - fence_lead)
    }
}

/// What the node's lease task publishes (a `watch`): the holder's lease, whether the guard
/// protects it, and how far a grant said the log was committed. Readers wake when the lease
/// becomes valid, is lost, or the confirmed index grows; a renewal that only extends a valid
/// lease does not wake them (they read the new expiry when their fence moment comes).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub holder: Holder,
    /// The guard is neither dead, stalled nor fenced (as of the lease task's last look;
    /// starts ask the guard again).
    pub guarded: bool,
    /// The highest log index a lease grant said was committed when it was granted. This
    /// node acts on placements (reconcile) only once its replica has applied at least that
    /// far: a node back from a power-off must not start a package its stale replica still
    /// places on it.
    pub confirmed: u64,
}

impl Lease {
    /// True while failover packages may run or start at `now`.
    pub fn valid(&self, now: Instant, fence_lead: Duration) -> bool {
        self.guarded && self.holder.valid(now, fence_lead)
    }

    /// A grant answering a renewal sent at `t_send`, confirming the log up to `read_index`.
    /// True when readers must wake: the lease became valid at `now`, or the confirmed index
    /// grew.
    pub fn granted(
        &mut self,
        t_send: Instant,
        lease: Duration,
        read_index: u64,
        now: Instant,
        fence_lead: Duration,
    ) -> bool {
        let was_valid = self.valid(now, fence_lead);
        self.holder.granted(t_send, lease);
        let grew = read_index > self.confirmed;
        self.confirmed = self.confirmed.max(read_index);
        grew || (!was_valid && self.valid(now, fence_lead))
    }

    /// The lease is gone (the guard fenced or was replaced): no lease until the next grant.
    pub fn lost(&mut self) {
        self.holder = Holder::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_coordinator_waits_a_lease_less_the_voters_election_wait() {
        let t0 = Instant::now();
        let lease = Duration::from_millis(619);
        let election_max = Duration::from_millis(160);
        let after = release_deadline_after_election(t0, lease, election_max) - t0;
        // 619 x 1.01 - 160 x 0.99 = 466.79 ms, x 1.01 = 471.46 ms, + 50 ms.
        assert!(
            after > Duration::from_micros(521_450) && after < Duration::from_micros(521_470),
            "{after:?}"
        );
        // Never shorter than the margin, whatever the election wait.
        assert_eq!(
            release_deadline_after_election(t0, lease, Duration::from_secs(5)) - t0,
            MARGIN
        );
        // Shorter than a full lease from the leadership start, longer than the lease less
        // the election wait with no drift.
        assert!(after < release_deadline(t0, lease) - t0);
        assert!(after > lease - election_max + MARGIN);
    }

    #[test]
    fn the_voters_last_acknowledgements_bound_older_leases_when_they_are_a_majority_of_each_set() {
        use std::collections::{BTreeMap, BTreeSet};
        let now = Instant::now() + Duration::from_secs(10);
        let lease = Duration::from_millis(619);
        let voters = BTreeSet::from([1, 2, 3]);
        let ms = Duration::from_millis;
        // Elected 300 ms after the old leader (1) last spoke: n2 and n3 acknowledged it
        // 300 and 310 ms ago.
        let ages = BTreeMap::from([(2, ms(300)), (3, ms(310))]);
        let at = release_deadline_from_votes(now, &ages, std::slice::from_ref(&voters), lease)
            .expect("a majority answered");
        // The most recent acknowledgement, 300 ms x 0.98 = 294 ms ago, then 619 x 1.01 +
        // 50 ms: 381.19 ms from now.
        let left = at - now;
        assert!(
            left > Duration::from_micros(381_180) && left < Duration::from_micros(381_200),
            "{left:?}"
        );
        // Earlier than the bound from the election (521.46 ms) by about the 140 ms the
        // election took beyond the voters' wait.
        assert!(at < release_deadline_after_election(now, lease, ms(160)));
        // The youngest acknowledgement of the majority counts, whoever reported it.
        let younger = BTreeMap::from([(2, ms(300)), (3, ms(10))]);
        assert!(
            release_deadline_from_votes(now, &younger, std::slice::from_ref(&voters), lease)
                .unwrap()
                > at
        );
        // Without a majority (a voter of an earlier version answered without its age): none.
        let one = BTreeMap::from([(2, ms(300))]);
        assert_eq!(
            release_deadline_from_votes(now, &one, std::slice::from_ref(&voters), lease),
            None
        );
        assert_eq!(release_deadline_from_votes(now, &ages, &[], lease), None);
        // During a voter change, a majority of each set: {2, 3} is one of {1, 2, 3} but not
        // of {3, 4, 5}.
        let joint = [voters.clone(), BTreeSet::from([3, 4, 5])];
        assert_eq!(release_deadline_from_votes(now, &ages, &joint, lease), None);
        let both = BTreeMap::from([(2, ms(300)), (3, ms(310)), (4, ms(305))]);
        assert!(release_deadline_from_votes(now, &both, &joint, lease).is_some());
        // An age from a node that is no voter counts for nothing.
        let stranger = BTreeMap::from([(2, ms(300)), (9, ms(0))]);
        assert_eq!(
            release_deadline_from_votes(now, &stranger, std::slice::from_ref(&voters), lease),
            None
        );
        // A voter that acknowledged just now (age zero): a full lease and the margin.
        let fresh = BTreeMap::from([(2, ms(0)), (3, ms(0))]);
        assert_eq!(
            release_deadline_from_votes(now, &fresh, std::slice::from_ref(&voters), lease),
            Some(release_deadline(now, lease))
        );
    }

    #[test]
    fn readers_wake_when_the_lease_becomes_valid_or_the_log_grows_not_on_every_renewal() {
        let t0 = Instant::now();
        let lease = Duration::from_millis(400);
        let lead = Duration::from_millis(100);
        let mut l = Lease {
            guarded: true,
            ..Lease::default()
        };
        assert!(!l.valid(t0, lead));
        assert!(l.granted(t0, lease, 5, t0, lead), "became valid");
        assert!(l.valid(t0, lead));
        assert_eq!(
            l.holder.fence_at(lead),
            Some(t0 + Duration::from_millis(300))
        );
        let t1 = t0 + Duration::from_millis(100);
        assert!(!l.granted(t1, lease, 5, t1, lead), "an extension alone");
        assert_eq!(
            l.holder.fence_at(lead),
            Some(t1 + Duration::from_millis(300))
        );
        assert!(
            l.granted(t1, lease, 6, t1, lead),
            "the confirmed index grew"
        );
        assert!(!l.granted(t1, lease, 4, t1, lead), "an older read index");
        assert_eq!(l.confirmed, 6);
        l.guarded = false;
        assert!(!l.valid(t1, lead), "an unguarded lease is no lease");
        l.guarded = true;
        l.lost();
        assert!(!l.valid(t1, lead));
        assert_eq!(l.confirmed, 6, "what was confirmed stays confirmed");
    }

    #[test]
    fn the_release_wait_outlasts_the_lease_with_the_drift_bound() {
        let t0 = Instant::now();
        let lease = Duration::from_millis(400);
        let mut h = Holder::default();
        assert!(!h.valid(t0, Duration::ZERO));
        h.granted(t0, lease);
        // An old answer never shortens the lease.
        h.granted(t0 - Duration::from_millis(100), lease);
        assert_eq!(h.remaining(t0), lease);
        let i = Duration::from_millis(100);
        let lead = fence_lead(lease, i, i);
        assert_eq!(lead, Duration::from_millis(67));
        assert!(h.valid(t0 + Duration::from_millis(332), lead));
        assert!(!h.valid(t0 + Duration::from_millis(333), lead));
        // The grantor's wait, seen on a holder clock running 1 % slow, still exceeds the lease.
        let deadline = release_deadline(t0, lease);
        let wait = deadline - t0;
        assert!(wait.mul_f64(1.0 / (1.0 + DRIFT)) > lease);
        assert_eq!(wait, Duration::from_millis(454));
    }
}
