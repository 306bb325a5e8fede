//! The lease and Raft timing rule (SPEC 6), written once: every timing the cluster
//! runs with is derived here from the configured heartbeat, and the inequalities
//! between them are checked here. `halcyon check` (through `validate`) refuses a
//! configured lease that breaks them; the daemon takes its Raft timings, its fencing
//! lead and its lease from these functions (directly or through the methods of
//! [`Cluster`] and [`Heartbeat`] at the end of this file, which only feed them the
//! configured values), and its `lease.rs` builds the holder's and the grantor's
//! arithmetic on them. The rule is pure functions of durations: no I/O, no clock.
//!
//! The argument, with `i` the cluster's heartbeat interval:
//!
//! 1. **Failure detection** ([`detection_time`]): a path is down after `sensitivity`
//!    missed heartbeats, `interval x sensitivity` (400 ms with the defaults, 100 ms and
//!    4). The cluster's detection time is the longest over its IP networks.
//! 2. **Raft** ([`raft_timing`]): heartbeat `i/3`, election timeout `4i/5`..`8i/5`
//!    (33 ms, 80–160 ms at the defaults; openraft's own 50 ms and 150–300 ms made an
//!    election take 511–607 ms on loopback, longer than a lease). The heartbeat is
//!    shorter than the shortest election timeout, so a live leader is never voted
//!    out by followers that merely missed one heartbeat.
//! 3. **The longest election** ([`election_time_max`]): after the coordinator dies a
//!    follower waits out its leader lease (`election_max`), then a random election
//!    timeout (at most `election_max`), checked on openraft's tick (1.5 x its
//!    heartbeat): `2 x election_max + 1.5 x raft heartbeat`, 369 ms at the defaults.
//! 4. **Renewal** ([`renew_interval`]): a holder asks the coordinator for a renewal
//!    every heartbeat interval.
//! 5. **Fencing lead** ([`fence_lead`]): a holder starts halting its failover
//!    packages `min(lease / 4, renewal interval - confirmation wait)` before its lease
//!    ends, where the confirmation wait ([`confirmation_wait_max`]) is the coordinator's
//!    Raft heartbeat: a renewal that reached the coordinator is granted once a quorum
//!    answered the next heartbeats it sends. 67 ms at the defaults, 20 ms with the fast
//!    profile; never more than one renewal interval ([`fence_lead_max`]) and always less
//!    than the lease.
//! 6. **Minimum lease** ([`lease_min_for_elections`]): when the coordinator dies, the
//!    holders must keep their leases until a new coordinator renews them. A holder's last
//!    granted renewal may have gone out one renewal interval before its next one, which
//!    the coordinator had received and was confirming when it died: the heartbeats it
//!    sent for that, up to a confirmation wait after the renewal came, were the
//!    followers' last contact, from which the election is counted. So the lease covers
//!    the election, a renewal interval, the confirmation wait, the fencing lead and
//!    [`LEASE_MARGIN`] (the new coordinator's first grant, scheduling delays):
//!    369 + 100 + 33 + 67 + 50 = 619 ms at the defaults. The wait and the lead make one
//!    renewal interval together: the lead gave the wait up, and the lease is the one
//!    versions before this rule derived, so the nodes of a cluster being upgraded agree
//!    on it. A shorter lease makes every node give up its packages whenever the
//!    coordinator dies.
//! 7. **The lease** ([`lease`]): as configured, else the longer of failure detection
//!    and the minimum lease ([`default_lease`]). A configured lease shorter than
//!    failure detection (a node would give up its packages before the others could
//!    notice a problem) or than the minimum lease is refused ([`check_lease`]).
//! 8. **The network's budget** ([`renewal_round_trip_max`]): a renewal is two network
//!    round trips (the holder to the coordinator, the coordinator's confirmation by a
//!    quorum: its next Raft heartbeats, a third of the interval apart) and an attempt is abandoned after [`renew_attempt`] (two renewal
//!    intervals). A holder whose renewals each take `r` sends the next one
//!    `max(renewal interval, r)` after the last and must have its answer before the
//!    fencing moment: `max(renew, r) + r <= lease - fencing lead`. The longest `r` that
//!    keeps the lease is the smaller of the attempt's bound and `(lease - lead) / 2`:
//!    200 ms at the defaults (about 50 ms a message), 60 ms with the fast profile (about
//!    15 ms a message). A network slower than that costs leases whatever else holds; the
//!    daemon warns when renewals take more than [`RENEWAL_WARNING_PERCENT`] % of it.

use std::time::Duration;

use crate::model::{Cluster, Heartbeat, NetworkKind};

/// openraft's timings for a cluster (see [`raft_timing`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaftTiming {
    pub heartbeat: Duration,
    pub election_min: Duration,
    pub election_max: Duration,
}

/// Added to the election time when the lease is derived (scheduling delays).
pub const LEASE_MARGIN: Duration = Duration::from_millis(50);

/// How long it takes to declare a path down: `interval x sensitivity` missed
/// heartbeats (rule 1).
pub fn detection_time(interval: Duration, sensitivity: u32) -> Duration {
    interval * sensitivity
}

/// openraft's timings, derived from the heartbeat interval `i` (rule 2): heartbeat
/// `i/3`, election timeout between `4i/5` and `8i/5`, rounded down to whole
/// milliseconds and never zero.
pub fn raft_timing(heartbeat_interval: Duration) -> RaftTiming {
    let i = heartbeat_interval.as_millis() as u64;
    let ms = Duration::from_millis;
    RaftTiming {
        heartbeat: ms((i / 3).max(1)),
        election_min: ms((i * 4 / 5).max(2)),
        election_max: ms((i * 8 / 5).max(3)),
    }
}

/// The longest a new coordinator takes to be elected after the coordinator died
/// (rule 3): `2 x election_max` plus openraft's tick (1.5 x its heartbeat).
pub fn election_time_max(heartbeat_interval: Duration) -> Duration {
    let t = raft_timing(heartbeat_interval);
    let tick_ms = t.heartbeat.as_millis() as u64 * 3 / 2;
    t.election_max * 2 + Duration::from_millis(tick_ms)
}

/// How often a holder asks for a renewal of its lease (rule 4).
pub fn renew_interval(heartbeat_interval: Duration) -> Duration {
    heartbeat_interval
}

/// How long one renewal attempt may take before it is abandoned (and another sent):
/// two renewal intervals, far below the lease, so that an attempt stuck on a paused
/// leader leaves room for more before the fencing moment (rule 8).
pub fn renew_attempt(renew_interval: Duration) -> Duration {
    renew_interval * 2
}

/// The longest a renewal round trip (the holder's send to the grant) may take with the
/// holder still keeping its lease (rule 8): the smaller of [`renew_attempt`] and
/// `(lease - fencing lead) / 2`.
pub fn renewal_round_trip_max(heartbeat_interval: Duration, lease: Duration) -> Duration {
    let renew = renew_interval(heartbeat_interval);
    let lead = fence_lead(lease, heartbeat_interval, heartbeat_interval);
    renew_attempt(renew).min(lease.saturating_sub(lead) / 2)
}

/// Renewals slower than this share (in percent) of [`renewal_round_trip_max`] are
/// reported as a network too slow for the configured timings (rule 8): half the budget,
/// so the warning comes while there is still room.
pub const RENEWAL_WARNING_PERCENT: u32 = 50;

/// The renewal round trip above which the daemon warns (rule 8).
pub fn renewal_warning_threshold(heartbeat_interval: Duration, lease: Duration) -> Duration {
    renewal_round_trip_max(heartbeat_interval, lease) * RENEWAL_WARNING_PERCENT / 100
}

/// The longest a coordinator whose Raft timings are derived from `raft_interval` takes from
/// a renewal's arrival to sending the heartbeats that confirm it (rule 5): a Raft heartbeat.
pub fn confirmation_wait_max(raft_interval: Duration) -> Duration {
    raft_timing(raft_interval).heartbeat
}

/// How long before its lease expires a holder starts halting its failover packages
/// (rule 5): `min(lease / 4, renewal interval - confirmation wait)`, with the wait of the
/// slowest Raft timings any voter may run (`raft_interval`: the heartbeat interval when
/// every voter runs the configuration's); zero when the wait is a renewal interval or more.
pub fn fence_lead(
    lease: Duration,
    heartbeat_interval: Duration,
    raft_interval: Duration,
) -> Duration {
    let renew = renew_interval(heartbeat_interval);
    (lease / 4).min(renew.saturating_sub(confirmation_wait_max(raft_interval)))
}

/// The longest the confirmation wait and the fencing lead take together, so the longest
/// [`fence_lead`] can be, whatever the lease (rules 5 and 6): one renewal interval.
pub fn fence_lead_max(renew_interval: Duration) -> Duration {
    renew_interval
}

/// The shortest lease with which the holders keep their leases while a new
/// coordinator is elected (rule 6).
pub fn lease_min_for_elections(heartbeat_interval: Duration) -> Duration {
    lease_min_with_raft(heartbeat_interval, heartbeat_interval)
}

/// [`lease_min_for_elections`] when the voters' Raft timings may be derived from another
/// interval than the holders' renewals (rule 6): a running cluster's `halcyon apply`
/// changed the heartbeat interval, and each node's Raft keeps the timings it started with
/// until it restarts. `raft_interval` is the longest interval any voter's timings may be
/// derived from: its elections are the slowest. The confirmation wait and the fencing lead
/// take one renewal interval together ([`fence_lead_max`]); when the wait alone is longer
/// (voters' timings of more than three times the interval), the lead is zero and what the
/// wait takes beyond the interval comes out of [`LEASE_MARGIN`] until they restart: the
/// lease stays the one every version derives.
pub fn lease_min_with_raft(heartbeat_interval: Duration, raft_interval: Duration) -> Duration {
    let renew = renew_interval(heartbeat_interval);
    election_time_max(raft_interval) + renew + fence_lead_max(renew) + LEASE_MARGIN
}

/// The lease when none is configured (rule 7): the longer of failure detection and
/// [`lease_min_for_elections`].
pub fn default_lease(heartbeat_interval: Duration, detection: Duration) -> Duration {
    detection.max(lease_min_for_elections(heartbeat_interval))
}

/// The lease (rule 7): `configured`, or [`default_lease`].
pub fn lease(
    configured: Option<Duration>,
    heartbeat_interval: Duration,
    detection: Duration,
) -> Duration {
    configured.unwrap_or_else(|| default_lease(heartbeat_interval, detection))
}

/// Why a configured lease cannot work (rule 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseTooShort {
    /// Shorter than failure detection.
    Detection { detection: Duration },
    /// Shorter than [`lease_min_for_elections`]; `election` is [`election_time_max`].
    Election {
        election: Duration,
        minimum: Duration,
    },
}

/// Checks a configured lease against failure detection and the minimum lease
/// (rule 7); detection is checked first.
pub fn check_lease(
    lease: Duration,
    heartbeat_interval: Duration,
    detection: Duration,
) -> Result<(), LeaseTooShort> {
    check_lease_with_raft(lease, heartbeat_interval, heartbeat_interval, detection)
}

/// [`check_lease`] when the voters' Raft timings may be derived from intervals up to
/// `raft_interval` ([`lease_min_with_raft`]).
pub fn check_lease_with_raft(
    lease: Duration,
    heartbeat_interval: Duration,
    raft_interval: Duration,
    detection: Duration,
) -> Result<(), LeaseTooShort> {
    let minimum = lease_min_with_raft(heartbeat_interval, raft_interval);
    if lease < detection {
        Err(LeaseTooShort::Detection { detection })
    } else if lease < minimum {
        Err(LeaseTooShort::Election {
            election: election_time_max(raft_interval),
            minimum,
        })
    } else {
        Ok(())
    }
}

impl Heartbeat {
    /// About how long it takes to declare a path down ([`detection_time`]).
    pub fn detection_time(&self) -> Duration {
        detection_time(self.interval, self.sensitivity)
    }
}

impl Cluster {
    /// The longest failure detection time over the IP networks (rule 1).
    pub fn detection_time(&self) -> Duration {
        self.networks
            .iter()
            .filter(|n| n.kind == NetworkKind::Ip)
            .map(|n| n.heartbeat.detection_time())
            .max()
            .unwrap_or_else(|| self.heartbeat.detection_time())
    }

    /// openraft's timings ([`raft_timing`] of the cluster's heartbeat interval).
    pub fn raft_timings(&self) -> RaftTiming {
        raft_timing(self.heartbeat.interval)
    }

    /// The longest a new coordinator takes to be elected ([`election_time_max`]).
    pub fn election_time_max(&self) -> Duration {
        election_time_max(self.heartbeat.interval)
    }

    /// The shortest lease that outlasts an election ([`lease_min_for_elections`]).
    pub fn lease_min_for_elections(&self) -> Duration {
        lease_min_for_elections(self.heartbeat.interval)
    }

    /// The lease (SPEC 6, [`lease`]): as configured, or the longer of failure
    /// detection and [`Cluster::lease_min_for_elections`].
    pub fn lease(&self) -> Duration {
        lease(
            self.quorum.lease,
            self.heartbeat.interval,
            self.detection_time(),
        )
    }

    /// The lease when the voters' Raft timings may be derived from intervals up to
    /// `raft_interval` ([`lease_min_with_raft`]): as configured, or the longer of failure
    /// detection and the minimum lease for those elections. [`Cluster::lease`] when
    /// `raft_interval` is the cluster's heartbeat interval.
    pub fn lease_with_raft(&self, raft_interval: Duration) -> Duration {
        self.quorum.lease.unwrap_or_else(|| {
            self.detection_time()
                .max(lease_min_with_raft(self.heartbeat.interval, raft_interval))
        })
    }

    /// Why the configured lease cannot work when the voters' Raft timings may be derived
    /// from intervals up to `raft_interval` ([`check_lease`] with
    /// [`lease_min_with_raft`]); `Ok` when none is configured (the derived one works).
    pub fn check_lease_with_raft(&self, raft_interval: Duration) -> Result<(), LeaseTooShort> {
        let Some(lease) = self.quorum.lease else {
            return Ok(());
        };
        check_lease_with_raft(
            lease,
            self.heartbeat.interval,
            raft_interval,
            self.detection_time(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_SENSITIVITY, HeartbeatProfile, limits};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Every heartbeat interval the configuration accepts, in whole milliseconds.
    fn intervals() -> impl Iterator<Item = Duration> {
        (limits::HEARTBEAT_INTERVAL_MIN_MS..=limits::HEARTBEAT_INTERVAL_MAX_MS).map(ms)
    }

    #[test]
    fn the_defaults_give_the_documented_figures() {
        let i = DEFAULT_HEARTBEAT_INTERVAL;
        assert_eq!(detection_time(i, DEFAULT_SENSITIVITY), ms(400));
        assert_eq!(
            raft_timing(i),
            RaftTiming {
                heartbeat: ms(33),
                election_min: ms(80),
                election_max: ms(160),
            }
        );
        assert_eq!(election_time_max(i), ms(369));
        assert_eq!(lease_min_for_elections(i), ms(619));
        assert_eq!(default_lease(i, ms(400)), ms(619));
        assert_eq!(confirmation_wait_max(i), ms(33));
        assert_eq!(fence_lead(ms(619), i, i), ms(67));
    }

    #[test]
    fn the_fast_profile_gives_the_documented_figures_and_keeps_every_inequality() {
        let heartbeat = HeartbeatProfile::Fast.heartbeat();
        let (i, sensitivity) = (heartbeat.interval, heartbeat.sensitivity);
        let detection = detection_time(i, sensitivity);
        assert_eq!(detection, ms(90));
        let t = raft_timing(i);
        assert_eq!(
            t,
            RaftTiming {
                heartbeat: ms(10),
                election_min: ms(24),
                election_max: ms(48),
            }
        );
        assert!(t.heartbeat < t.election_min && t.election_min < t.election_max);
        assert_eq!(election_time_max(i), ms(111));
        assert_eq!(lease_min_for_elections(i), ms(221));
        let lease = default_lease(i, detection);
        assert_eq!(lease, ms(221));
        assert_eq!(check_lease(lease, i, detection), Ok(()));
        let renew = renew_interval(i);
        let lead = fence_lead(lease, i, i);
        assert_eq!(lead, ms(20));
        assert!(lead <= fence_lead_max(renew) && lead < lease);
        assert!(lease >= detection);
        let wait = confirmation_wait_max(i);
        assert!(lease >= election_time_max(i) + renew + wait + lead + LEASE_MARGIN);
        // One millisecond less is refused, as for every other heartbeat.
        assert!(check_lease(lease - ms(1), i, detection).is_err());
        // The default profile is the defaults.
        assert_eq!(HeartbeatProfile::Default.heartbeat(), Heartbeat::default());
    }

    #[test]
    fn the_raft_heartbeat_is_shorter_than_the_shortest_election_timeout() {
        for i in intervals() {
            let t = raft_timing(i);
            assert!(t.heartbeat > Duration::ZERO, "{i:?}");
            assert!(t.heartbeat < t.election_min, "{i:?}: {t:?}");
            assert!(t.election_min < t.election_max, "{i:?}: {t:?}");
            assert!(election_time_max(i) >= t.election_max * 2, "{i:?}");
        }
    }

    #[test]
    fn the_fencing_lead_is_at_most_one_renewal_and_shorter_than_the_lease() {
        for i in intervals().step_by(7) {
            let renew = renew_interval(i);
            for raft in [i / 2, i, i * 2, i * 3, i * 4] {
                for lease in [ms(1), ms(4), i / 2, i, i * 4, i * 40, ms(60_000)] {
                    let lead = fence_lead(lease, i, raft);
                    assert!(lead <= fence_lead_max(renew), "{i:?} {raft:?} {lease:?}");
                    assert!(lead < lease, "{i:?} {raft:?} {lease:?}");
                    // The lead leaves the confirmation wait room in a renewal interval.
                    assert!(
                        lead + confirmation_wait_max(raft) <= renew || lead == Duration::ZERO,
                        "{i:?} {raft:?} {lease:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_default_lease_outlasts_detection_and_an_election_with_a_renewal_and_the_fencing_lead() {
        for i in intervals() {
            let renew = renew_interval(i);
            for sensitivity in limits::SENSITIVITY_MIN..=limits::SENSITIVITY_MAX {
                let detection = detection_time(i, sensitivity);
                let lease = default_lease(i, detection);
                assert_eq!(
                    check_lease(lease, i, detection),
                    Ok(()),
                    "{i:?} x {sensitivity}"
                );
                assert!(lease >= detection);
                // With the fencing lead this lease actually gets, not only its bound.
                let (wait, lead) = (confirmation_wait_max(i), fence_lead(lease, i, i));
                assert!(
                    lease >= election_time_max(i) + renew + wait + lead + LEASE_MARGIN,
                    "{i:?} x {sensitivity}"
                );
            }
        }
    }

    #[test]
    fn a_configured_lease_is_refused_one_millisecond_below_either_bound() {
        let i = DEFAULT_HEARTBEAT_INTERVAL;
        // Detection longer than the minimum lease: detection is the bound.
        let long_detection = ms(2_000);
        assert_eq!(check_lease(long_detection, i, long_detection), Ok(()));
        assert_eq!(
            check_lease(long_detection - ms(1), i, long_detection),
            Err(LeaseTooShort::Detection {
                detection: long_detection
            })
        );
        // Detection shorter than the minimum lease: the election is the bound.
        let minimum = lease_min_for_elections(i);
        assert_eq!(check_lease(minimum, i, ms(400)), Ok(()));
        assert_eq!(
            check_lease(minimum - ms(1), i, ms(400)),
            Err(LeaseTooShort::Election {
                election: ms(369),
                minimum
            })
        );
        // Below both: detection is reported first.
        assert_eq!(
            check_lease(ms(300), i, ms(400)),
            Err(LeaseTooShort::Detection { detection: ms(400) })
        );
    }

    #[test]
    fn renewals_within_the_network_budget_keep_the_lease() {
        assert_eq!(
            renewal_round_trip_max(DEFAULT_HEARTBEAT_INTERVAL, ms(619)),
            ms(200)
        );
        assert_eq!(
            renewal_warning_threshold(DEFAULT_HEARTBEAT_INTERVAL, ms(619)),
            ms(100)
        );
        let fast = HeartbeatProfile::Fast.heartbeat().interval;
        assert_eq!(renewal_round_trip_max(fast, ms(221)), ms(60));
        assert_eq!(renewal_warning_threshold(fast, ms(221)), ms(30));
        for i in intervals() {
            let renew = renew_interval(i);
            for sensitivity in [limits::SENSITIVITY_MIN, 3, 4, 10, limits::SENSITIVITY_MAX] {
                let lease = default_lease(i, detection_time(i, sensitivity));
                let lead = fence_lead(lease, i, i);
                let r = renewal_round_trip_max(i, lease);
                // The next renewal is answered before the fencing moment of the last one.
                assert!(r.max(renew) + r <= lease - lead, "{i:?} x {sensitivity}");
                // An attempt is never abandoned before the budget runs out.
                assert!(r <= renew_attempt(renew), "{i:?}");
                assert!(renewal_warning_threshold(i, lease) < r, "{i:?}");
            }
        }
    }

    #[test]
    fn a_configured_lease_is_used_as_written() {
        let i = DEFAULT_HEARTBEAT_INTERVAL;
        assert_eq!(lease(Some(ms(5_000)), i, ms(400)), ms(5_000));
        assert_eq!(lease(None, i, ms(400)), ms(619));
        assert_eq!(lease(None, i, ms(1_000)), ms(1_000));
    }

    #[test]
    fn the_minimum_lease_covers_the_elections_of_the_slowest_raft_timings_still_running() {
        // Heartbeats and renewals every 50 ms, voters still elected with the timings of
        // 100 ms: an election of 369 ms, a renewal and a lead of 50 ms, the margin.
        assert_eq!(lease_min_with_raft(ms(50), ms(100)), ms(369 + 50 + 50 + 50));
        // One interval for both is the ordinary rule, for every interval accepted.
        for i in intervals().step_by(7) {
            assert_eq!(lease_min_with_raft(i, i), lease_min_for_elections(i));
        }
        // Slower elections need a longer lease; faster ones a shorter.
        assert!(lease_min_with_raft(ms(100), ms(300)) > lease_min_for_elections(ms(100)));
        assert!(lease_min_with_raft(ms(300), ms(100)) < lease_min_for_elections(ms(300)));
    }

    /// Rule 6's worst case on one timeline, in time from the `t_send` of a holder's last
    /// granted renewal: its next renewal goes out a renewal interval later and reaches the
    /// coordinator, which sends the heartbeats that would confirm it up to a confirmation
    /// wait later and stops before their answers come, so those heartbeats are the
    /// followers' last contact. A new coordinator, the holder itself or another, is elected
    /// within the longest election after that and must grant the holder's next renewal
    /// before its fencing moment, with [`LEASE_MARGIN`] to do it in. (Before the wait was
    /// counted the lead was a whole renewal interval and the margin at the defaults was
    /// 50 - 33 = 17 ms: a holder elected coordinator after a pause could halt its packages.)
    #[test]
    fn a_holder_keeps_its_lease_through_an_election_after_the_coordinator_stopped_confirming_its_renewal()
     {
        for i in intervals() {
            let renew = renew_interval(i);
            for raft in [i, i * 2, i * 3] {
                for sensitivity in [limits::SENSITIVITY_MIN, 3, 4, 10, limits::SENSITIVITY_MAX] {
                    let detection = detection_time(i, sensitivity);
                    let lease = detection.max(lease_min_with_raft(i, raft));
                    let last_contact = renew + confirmation_wait_max(raft);
                    let elected = last_contact + election_time_max(raft);
                    let fencing = lease - fence_lead(lease, i, raft);
                    assert!(
                        elected + LEASE_MARGIN <= fencing,
                        "{i:?} x {sensitivity}, Raft of {raft:?}: elected at {elected:?}, fencing at {fencing:?}"
                    );
                }
            }
        }
    }
}
