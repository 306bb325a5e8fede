//! Pre-vote: a voter stands for election only when a quorum of the voters, itself included,
//! has not heard a leader for `election_timeout_min` (issue 15, finding 8).
//!
//! openraft 0.9 has no pre-vote. A follower whose election timer ran out while it could not
//! hear the leader (a paused process, a cut cable, a restart) elects at once when it comes
//! back, with a term above the leader's; the leader's next append-entries to it is answered
//! with that higher vote and the leader steps down, although the rest of the cluster still
//! follows it. Each such needless election is a window in which leases wait for a coordinator
//! (collateral restarts). The gate below keeps openraft's elections switched off
//! (`Config::enable_elect = false`, then `RuntimeConfigHandle::elect`) and switches them on
//! only while a quorum answers a pre-vote with "I hear no leader either".
//!
//! Invariants:
//! - the gate only ever withholds elections: Raft's safety (one leader per term, committed
//!   entries kept) is openraft's and does not depend on it; openraft's own timers, votes and
//!   leader lease still decide every real election;
//! - a voter grants a pre-vote only if it accepted no append-entries or snapshot from a
//!   leader for [`RaftTimings::election_timeout_min`](crate::RaftTimings), is not a leader
//!   a quorum acknowledged within that time, and the candidate's last log id is not smaller
//!   than its own ([`log_allows`], the comparison of a real vote). openraft refuses real
//!   votes for longer (`election_timeout_max`, its leader lease) and for the same logs, so a
//!   quorum that would vote for a candidate has always granted its pre-vote first: the gate
//!   delays no election that could succeed, and keeps the candidates whose election would
//!   fail on their log from standing (each such failure costs a round);
//! - a node that finds a better candidate among the voters that granted it (the same log,
//!   a higher id: [`outranked`]) keeps its elections off until `2 x election_timeout_max`
//!   after it first found one ([`stands`]): one candidate per term where the answers show
//!   it, and never a node that waits for ever on one that failed;
//! - the gate asks again every openraft heartbeat while no leader is heard, each pre-vote
//!   bounded by `election_timeout_min` (the bound openraft gives its own vote requests, so
//!   a network too slow for pre-votes was already too slow for votes); a round ends once a
//!   quorum granted and either a better candidate is known or every voter with a higher id
//!   answered, at most one openraft heartbeat after the quorum ([`listens_on`]); while a
//!   leader is heard (or this node leads) it asks nobody, so a healthy cluster pays nothing
//!   for it;
//! - times are tokio's monotonic time (simulated time in a simulator).

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::{LogId, Raft, ServerState};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::net::{NetworkFactory, Transport};
use crate::store::LogStore;
use crate::{NodeId, TypeConfig};

/// Whether a voter grants a pre-vote at `now`: it heard no leader within `quiet` (its last
/// contact was at `last_contact`), and it is not itself a leader whose last quorum
/// acknowledgement (`leading_acked` ago) is within `quiet`.
pub fn grants(
    now: Instant,
    last_contact: Option<Instant>,
    leading_acked: Option<Duration>,
    quiet: Duration,
) -> bool {
    let hears_a_leader = last_contact.is_some_and(|at| now.saturating_duration_since(at) < quiet);
    let leads = leading_acked.is_some_and(|age| age < quiet);
    !hears_a_leader && !leads
}

/// Whether a voter whose log ends at `own` lets a candidate whose log ends at `candidate`
/// through: the comparison openraft's vote makes (the candidate's last log id not smaller),
/// so the gate withholds no election a vote would allow, and lets through none a vote would
/// refuse. Without it, after a leader died in the middle of a commit the voter with the
/// shorter log could stand first: refused by the one with the longer log, it costs a whole
/// extra election round (openraft also makes the refused candidate wait
/// `2 * election_timeout_max` before it stands again), while the leases wait (issue 15,
/// finding 1).
pub fn log_allows(candidate: Option<&LogId<NodeId>>, own: Option<&LogId<NodeId>>) -> bool {
    candidate >= own
}

/// This node's last log id for a pre-vote: `None` when the store cannot be read (then it is
/// neither sent nor compared: the gate only withholds elections, it must not stop one
/// because of a read error; compared as an empty log, the most lenient answer).
pub(crate) fn own_last_log_id(id: NodeId, log: &LogStore) -> Option<Option<LogId<NodeId>>> {
    log.last_log_id()
        .map_err(|e| tracing::warn!(node_id = id, "pre-vote without the log comparison: {e}"))
        .ok()
}

/// The voter among `granted` (voters that granted this node's pre-vote, each with the last
/// log id it sent, if it sent one) that would make a better candidate than this node
/// (`id`, whose log ends at `own`): one with the same log and a higher id.
///
/// A voter that granted hears no leader either, so it stands too, and two candidates in one
/// term cost rounds: with openraft 0.9's leader ids (term, node id) a candidate of a higher
/// id deposes the leader of a lower id elected in the same term, and the election starts
/// again (issue 15, finding 1: the campaign's coordinator pauses, terms 11 to 13 and 65 to
/// 67). A granting voter's log is never longer than this node's (it would have refused), so
/// only an equal log with a higher id outranks. A voter that sent no log (an older version)
/// never does.
pub fn outranked(
    id: NodeId,
    own: Option<&LogId<NodeId>>,
    granted: &[(NodeId, Option<Option<LogId<NodeId>>>)],
) -> Option<NodeId> {
    granted
        .iter()
        .filter(|(voter, log)| *voter > id && log.as_ref().is_some_and(|log| log.as_ref() == own))
        .map(|(voter, _)| *voter)
        .max()
}

/// Whether the gate lets this node stand after a round: a quorum granted, and no better
/// candidate was among them, or the first round that found one (`outranked_since`) is
/// `defer` ago (the better one did not get elected in that time: it may have failed since).
pub fn stands(
    quorum: bool,
    outranked_since: Option<Instant>,
    now: Instant,
    defer: Duration,
) -> bool {
    quorum && outranked_since.is_none_or(|since| now.saturating_duration_since(since) >= defer)
}

/// Whether `granted` holds a majority of every configuration of a (possibly joint)
/// membership.
pub fn is_quorum(configs: &[BTreeSet<NodeId>], granted: &BTreeSet<NodeId>) -> bool {
    !configs.is_empty()
        && configs
            .iter()
            .all(|c| c.intersection(granted).count() * 2 > c.len())
}

/// What the gate asks for in one step, decided from this node's own view alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Elections stay off: this node leads, is not a voter, or hears a leader.
    Hold,
    /// No leader heard: ask the other voters (the members of `configs` but this node).
    Ask,
}

/// The gate's first decision: whether a pre-vote round is needed at all.
pub fn step(
    now: Instant,
    state: ServerState,
    is_voter: bool,
    last_contact: Option<Instant>,
    quiet: Duration,
) -> Step {
    if state == ServerState::Leader || !is_voter || !grants(now, last_contact, None, quiet) {
        Step::Hold
    } else {
        Step::Ask
    }
}

/// How long the gate sleeps after a step at `now`: a leader needs no election and looks
/// again after `quiet`; a follower that hears a leader (last at `last_contact`) cannot need
/// one before `quiet` has passed since; otherwise one openraft heartbeat (`period`).
pub fn next_look(
    now: Instant,
    state: ServerState,
    last_contact: Option<Instant>,
    period: Duration,
    quiet: Duration,
) -> Duration {
    if state == ServerState::Leader {
        return quiet.max(period);
    }
    let until_quiet = last_contact.map_or(Duration::ZERO, |at| {
        (at + quiet).saturating_duration_since(now)
    });
    until_quiet.max(period)
}

/// The gate's timings, from the node's [`RaftTimings`](crate::RaftTimings).
#[derive(Clone, Copy, Debug)]
pub(crate) struct GateTimes {
    /// How often it looks while no leader is heard: openraft's heartbeat.
    pub period: Duration,
    /// How long without a leader grants a pre-vote: `election_timeout_min`.
    pub quiet: Duration,
    /// How long it stays off for a better candidate ([`stands`]): `2 x election_timeout_max`,
    /// by when the better one's openraft timer (its leader lease, then at most
    /// `election_timeout_max`) has fired and its vote is done.
    pub defer: Duration,
}

/// Runs the gate of node `id` until the Raft core ends (see the module's invariants).
pub(crate) async fn run<T: Transport>(
    id: NodeId,
    raft: Raft<TypeConfig>,
    log: LogStore,
    network: NetworkFactory<T>,
    contact: std::sync::Arc<crate::acks::Acknowledged>,
    times: GateTimes,
) {
    let GateTimes {
        period,
        quiet,
        defer,
    } = times;
    let mut allowed = false;
    let mut outranked_since: Option<Instant> = None;
    let mut metrics = raft.metrics();
    let mut sleep_for = period;
    loop {
        tokio::time::sleep(sleep_for).await;
        if metrics.has_changed().is_err() {
            return;
        }
        let now = Instant::now();
        let last_contact = contact.last_accepted();
        let (state, term, is_voter) = {
            let m = metrics.borrow_and_update();
            let is_voter = m
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == id);
            (m.state, m.current_term, is_voter)
        };
        sleep_for = next_look(now, state, last_contact, period, quiet);
        let want = match step(now, state, is_voter, last_contact, quiet) {
            Step::Hold => {
                outranked_since = None;
                false
            }
            Step::Ask => {
                let round = ask(id, &raft, &log, &network, term, times).await;
                match round.outranked_by {
                    Some(better) if outranked_since.is_none() => {
                        tracing::debug!(
                            node_id = id,
                            better,
                            "pre-vote gate: a better candidate stands"
                        );
                        outranked_since = Some(now);
                    }
                    Some(_) => {}
                    None => outranked_since = None,
                }
                stands(round.quorum, outranked_since, Instant::now(), defer)
            }
        };
        if want != allowed {
            allowed = want;
            raft.runtime_config().elect(want);
            tracing::debug!(node_id = id, elections = want, "pre-vote gate");
        }
    }
}

/// What one pre-vote round found.
struct Round {
    /// A quorum of every voter configuration, this node included, granted.
    quorum: bool,
    /// A voter that granted and would make a better candidate ([`outranked`]).
    outranked_by: Option<NodeId>,
}

/// Whether a round keeps reading answers, given what it has: until a quorum granted; then,
/// while no better candidate is known yet, as long as a voter that could be one (a higher
/// id than this node's) has not answered. The caller bounds the second part by one
/// openraft heartbeat: with five voters a quorum is in before every live voter answered,
/// and a lower node that stands on it while a better one's grant is on its way splits the
/// election (issue 15, finding 1: the campaign's coordinator pause with terms 35 to 38).
/// Without its own log id (a read error) this node cannot be outranked: nothing to wait for.
pub fn listens_on(
    id: NodeId,
    own: Option<Option<&LogId<NodeId>>>,
    quorum: bool,
    unanswered: &BTreeSet<NodeId>,
    granted: &[(NodeId, Option<Option<LogId<NodeId>>>)],
) -> bool {
    if !quorum {
        return true;
    }
    let Some(own) = own else {
        return false;
    };
    outranked(id, own, granted).is_none() && unanswered.iter().any(|peer| *peer > id)
}

/// One pre-vote round for a candidate at `term` with this node's log (see [`listens_on`]
/// for when it ends).
async fn ask<T: Transport>(
    id: NodeId,
    raft: &Raft<TypeConfig>,
    log: &LogStore,
    network: &NetworkFactory<T>,
    term: u64,
    times: GateTimes,
) -> Round {
    let (configs, peers) = {
        let m = raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let configs = membership.get_joint_config().clone();
        let peers: Vec<_> = membership
            .nodes()
            .filter(|(n, _)| **n != id && configs.iter().any(|c| c.contains(n)))
            .map(|(n, addrs)| (*n, addrs.clone()))
            .collect();
        (configs, peers)
    };
    let last_log_id = own_last_log_id(id, log);
    let mut unanswered: BTreeSet<NodeId> = peers.iter().map(|(peer, _)| *peer).collect();
    // The voters that granted, each with the last log id it sent.
    let mut granting = Vec::new();
    let mut asks = JoinSet::new();
    for (peer, addrs) in peers {
        let network = network.clone();
        let quiet = times.quiet;
        asks.spawn(async move {
            let answer = network
                .pre_vote(peer, addrs, term, last_log_id, quiet)
                .await;
            (peer, answer)
        });
    }
    let quorum = |granting: &[(NodeId, _)]| {
        let granted: BTreeSet<NodeId> = granting.iter().map(|(peer, _)| *peer).collect();
        is_quorum(&configs, &(&granted | &BTreeSet::from([id])))
    };
    // Each call is bounded by `quiet`; the listening after the quorum by one heartbeat. A dead
    // peer's pre-vote (a powered-off host black-holes the connect) is waited for only while
    // it could still change the decision. Dropping the set aborts the calls still out.
    let mut listen_until = None;
    loop {
        let has_quorum = quorum(&granting);
        let own = last_log_id.as_ref().map(Option::as_ref);
        if !listens_on(id, own, has_quorum, &unanswered, &granting) {
            break;
        }
        if has_quorum && listen_until.is_none() {
            listen_until = Some(Instant::now() + times.period);
        }
        let next = match listen_until {
            Some(until) => match tokio::time::timeout_at(until, asks.join_next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => asks.join_next().await,
        };
        match next {
            Some(Ok((peer, answer))) => {
                unanswered.remove(&peer);
                if let Some((true, log)) = answer {
                    granting.push((peer, log));
                }
            }
            // A call that panicked: its peer stays unanswered until the bound.
            Some(Err(_)) => {}
            None => break,
        }
    }
    Round {
        quorum: quorum(&granting),
        outranked_by: last_log_id.and_then(|own| outranked(id, own.as_ref(), &granting)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_voter_that_heard_a_leader_within_the_quiet_time_refuses() {
        let t0 = Instant::now();
        let quiet = ms(80);
        assert!(!grants(t0 + ms(79), Some(t0), None, quiet));
        assert!(grants(t0 + ms(80), Some(t0), None, quiet));
        assert!(grants(t0, None, None, quiet), "never heard a leader");
    }

    #[test]
    fn a_leader_refuses_while_a_quorum_acknowledges_it_and_grants_once_cut_off() {
        let t0 = Instant::now();
        let quiet = ms(80);
        assert!(!grants(t0, None, Some(ms(10)), quiet));
        assert!(grants(t0, None, Some(ms(500)), quiet), "a leader cut off");
        assert!(
            grants(t0, None, None, quiet),
            "a leader never acknowledged yet"
        );
    }

    #[test]
    fn a_candidate_whose_log_a_vote_would_refuse_is_refused() {
        let id = |term, index| openraft::testing::log_id(term, 1, index);
        let allows =
            |c: Option<LogId<NodeId>>, o: Option<LogId<NodeId>>| log_allows(c.as_ref(), o.as_ref());
        assert!(allows(Some(id(2, 7)), Some(id(2, 7))), "the same log");
        assert!(allows(Some(id(2, 8)), Some(id(2, 7))), "a longer log");
        assert!(!allows(Some(id(2, 6)), Some(id(2, 7))), "a shorter log");
        assert!(allows(Some(id(3, 5)), Some(id(2, 7))), "a later term wins");
        assert!(
            !allows(Some(id(2, 9)), Some(id(3, 5))),
            "an earlier term loses"
        );
        assert!(allows(None, None), "two empty logs");
        assert!(!allows(None, Some(id(1, 1))), "an empty log");
        assert!(allows(Some(id(1, 1)), None));
    }

    #[test]
    fn a_granting_voter_with_the_same_log_and_a_higher_id_is_the_better_candidate() {
        let id = |term, index| openraft::testing::log_id(term, 1, index);
        let own = Some(id(2, 7));
        let same = Some(own);
        assert_eq!(outranked(2, own.as_ref(), &[(3, same)]), Some(3));
        assert_eq!(outranked(2, own.as_ref(), &[(1, same)]), None, "a lower id");
        assert_eq!(
            outranked(2, own.as_ref(), &[(3, Some(Some(id(2, 6))))]),
            None,
            "a shorter log"
        );
        assert_eq!(
            outranked(2, own.as_ref(), &[(3, None)]),
            None,
            "sent no log"
        );
        assert_eq!(
            outranked(2, own.as_ref(), &[(1, same), (4, same), (3, same)]),
            Some(4)
        );
        assert_eq!(
            outranked(1, None, &[(2, Some(None))]),
            Some(2),
            "both empty"
        );
        assert_eq!(outranked(1, None, &[]), None);
    }

    #[test]
    fn a_round_listens_after_its_quorum_only_while_a_better_candidate_may_answer() {
        let log = Some(openraft::testing::log_id(3, 1, 9));
        let own = Some(log.as_ref());
        let set = |v: &[NodeId]| v.iter().copied().collect::<BTreeSet<_>>();
        let same = |peer| (peer, Some(log));
        let shorter = |peer| (peer, Some(Some(openraft::testing::log_id(3, 1, 8))));
        assert!(listens_on(2, own, false, &set(&[]), &[]), "no quorum yet");
        assert!(
            listens_on(2, own, true, &set(&[4]), &[same(1), shorter(3)]),
            "4 may be the better candidate"
        );
        assert!(
            !listens_on(2, own, true, &set(&[1]), &[same(3), same(4)]),
            "only a lower voter has not answered"
        );
        assert!(
            listens_on(1, own, true, &set(&[4, 5]), &[shorter(2), shorter(3)]),
            "higher voters have not answered"
        );
        assert!(
            !listens_on(2, own, true, &set(&[5]), &[same(3), same(4)]),
            "already outranked: nothing left to learn"
        );
        assert!(
            !listens_on(2, None, true, &set(&[5]), &[same(3)]),
            "without its own log this node is never outranked"
        );
    }

    #[test]
    fn an_outranked_node_stands_only_once_the_better_one_had_its_time() {
        let t0 = Instant::now();
        let defer = ms(600);
        assert!(stands(true, None, t0, defer));
        assert!(!stands(false, None, t0, defer), "no quorum");
        assert!(!stands(true, Some(t0), t0 + ms(599), defer));
        assert!(stands(true, Some(t0), t0 + ms(600), defer));
        assert!(!stands(false, Some(t0), t0 + ms(900), defer), "no quorum");
    }

    #[test]
    fn a_quorum_is_a_majority_of_every_configuration() {
        let set = |v: &[NodeId]| v.iter().copied().collect::<BTreeSet<_>>();
        let one = vec![set(&[1, 2, 3])];
        assert!(is_quorum(&one, &set(&[1, 2])));
        assert!(!is_quorum(&one, &set(&[1])));
        assert!(
            !is_quorum(&one, &set(&[1, 4, 5])),
            "non-voters do not count"
        );
        let joint = vec![set(&[1, 2, 3]), set(&[3, 4, 5, 6])];
        assert!(!is_quorum(&joint, &set(&[1, 2, 3])), "half of the new one");
        assert!(is_quorum(&joint, &set(&[1, 3, 4, 5])));
        assert!(!is_quorum(&[], &set(&[1])));
        assert!(is_quorum(&[set(&[7])], &set(&[7])), "a single voter");
    }

    #[test]
    fn the_gate_asks_only_a_voter_that_hears_no_leader() {
        let t0 = Instant::now();
        let quiet = ms(80);
        let at = t0 + ms(200);
        let follower = ServerState::Follower;
        assert_eq!(step(at, follower, true, Some(t0), quiet), Step::Ask);
        assert_eq!(step(at, follower, true, None, quiet), Step::Ask);
        assert_eq!(
            step(at, follower, true, Some(at - ms(5)), quiet),
            Step::Hold
        );
        assert_eq!(step(at, ServerState::Leader, true, None, quiet), Step::Hold);
        assert_eq!(
            step(at, ServerState::Learner, false, None, quiet),
            Step::Hold
        );
        assert_eq!(
            step(at, ServerState::Candidate, true, None, quiet),
            Step::Ask
        );
    }

    #[test]
    fn the_gate_sleeps_until_a_round_could_be_needed() {
        let t0 = Instant::now();
        let (period, quiet) = (ms(33), ms(80));
        let follower = ServerState::Follower;
        assert_eq!(
            next_look(t0 + ms(10), follower, Some(t0), period, quiet),
            ms(70)
        );
        assert_eq!(
            next_look(t0 + ms(60), follower, Some(t0), period, quiet),
            period,
            "never less than a heartbeat"
        );
        assert_eq!(
            next_look(t0 + ms(500), follower, Some(t0), period, quiet),
            period
        );
        assert_eq!(next_look(t0, follower, None, period, quiet), period);
        assert_eq!(
            next_look(t0, ServerState::Leader, None, period, quiet),
            quiet
        );
    }
}
