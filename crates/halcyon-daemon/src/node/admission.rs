//! A node with a new Raft store (issue 15, finding 4): before its Raft server answers, it
//! finds out whether the cluster already counts it as a member.
//!
//! A node started with an emptied state directory (rebuilt after a disk failure, or after its
//! log failed its checksums) has no log and no vote. If the cluster still has it as a voter,
//! the leader would replicate to it as to a follower that already holds the log: openraft
//! finds the follower's log reverted and its core stops, and a voter that forgot its log and
//! its vote could lose committed entries or vote twice in a term. So a new store starts
//! held (`RaftTimings::held`: the server closes every connection unanswered), and this task:
//! - asks the other nodes (node-signed `GET /v1/internal/membership`) what they know;
//! - when the leader counts this node as a member that has run before (it has a committed
//!   incarnation, or acknowledged some of the leader's log): asks it to forget the node
//!   (`POST /v1/internal/forget`: the voter leaves the membership entirely, so the leader
//!   drops what it knew of its log, and is recorded in `State::shrunk`); once that change is
//!   committed it answers, and the coordinator adds it again as a learner that catches up
//!   from nothing and then votes (the auto-shrink path);
//! - when the cluster has formed without this node, or counts it but it never ran (a first
//!   start after the others formed the cluster: no incarnation, and its held server
//!   acknowledged nothing, so the leader has no match index for it): answers. What this lets
//!   through: a node emptied after it voted or acknowledged entries and before its first
//!   registration committed (within its first second), under a leader it never acknowledged;
//! - when every node that answers has a new store too: the cluster is forming, admits, and
//!   the lowest-numbered node initialises the membership; when those that answer hold only
//!   that initial membership (no leader has replicated anything to them), it is still
//!   forming: admits;
//! - otherwise (nobody answers, or the cluster has no leader) waits and asks again.
//!
//! The quorum witness, a voter with a store too, asks the same questions through
//! [`Asker`] and decides with [`decide_witness`] (`witness::admission`); it never
//! initialises.
//!
//! Invariant: the server of a new store answers only after a leader said it has no match
//! index for the node and no record of it running, or took it out of the membership
//! (committed), or after a node with a new store answered (a cluster that has not formed); a
//! formed cluster's nodes never answer "new store" while they run.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use halcyon_consensus::NodeId;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Node;
use crate::peers;

/// What a node answers about the Raft membership (`GET /v1/internal/membership`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipAnswer {
    /// Its store has a membership (its own initialisation or a leader's log).
    pub initialized: bool,
    /// It leads, acknowledged by a quorum within the election timeout
    /// (`Consensus::leads_now`): a leader cut off from its quorum, which the others may have
    /// replaced, does not say it leads (what it knows of the members may be stale).
    pub leader: bool,
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// On a leader: the members that have acknowledged some of its log (openraft keeps a
    /// match index for them, which a node with a new store would contradict).
    pub replicated: BTreeSet<NodeId>,
    /// The nodes with a committed incarnation: they have run as members before.
    pub registered: BTreeSet<NodeId>,
    /// The index of the last entry in its log: 0 while it holds only the membership the
    /// lowest-numbered node initialised (no leader has replicated anything to it).
    pub last_log_index: u64,
    /// The highest incarnation it knows of each node: committed, or heard in the node's
    /// heartbeats (whose replay windows refuse a lower one). Absent from older versions.
    #[serde(default)]
    pub incarnations: BTreeMap<NodeId, u64>,
}

impl MembershipAnswer {
    /// Whether node `id` may hold (or have held) part of the log or a vote the cluster
    /// counts on: it acknowledged this leader's log, or it has run as a member before.
    fn knows_of(&self, id: NodeId) -> bool {
        self.replicated.contains(&id) || self.registered.contains(&id)
    }
}

/// What a node with a new store does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Nobody has formed a cluster yet: answer, and initialise if the lowest-numbered.
    Form,
    /// The cluster has formed and does not count this node: answer.
    Join,
    /// Leader `0` counts this node as a voter: ask it to forget the node.
    Forget(NodeId),
    /// Not yet decidable: why.
    Wait(String),
}

/// The decision of node `me` from the answers of the other nodes (`None`: no answer).
pub fn decide(me: NodeId, answers: &[(NodeId, Option<MembershipAnswer>)]) -> Admission {
    decide_with(me, answers, |a| a.knows_of(me))
}

/// The decision of the quorum witness `me`. A node that has run is known by its committed
/// incarnation whoever leads; the witness registers nothing, and a leader elected after the
/// witness lost its store keeps no match index for it, yet the witness's forgotten
/// acknowledgements may be all that made some entries committed. So a witness a leader
/// counts as a member is forgotten whatever the leader knows of it (a late first start
/// goes out of the voters and back in, as a node's may). Otherwise as [`decide`].
pub fn decide_witness(me: NodeId, answers: &[(NodeId, Option<MembershipAnswer>)]) -> Admission {
    decide_with(me, answers, |_| true)
}

/// [`decide`], where `ran_before` says whether the leader's answer shows that `me`, a
/// member, may hold part of the log or a vote the cluster counts on.
fn decide_with(
    me: NodeId,
    answers: &[(NodeId, Option<MembershipAnswer>)],
    ran_before: impl Fn(&MembershipAnswer) -> bool,
) -> Admission {
    let answered: Vec<(NodeId, &MembershipAnswer)> = answers
        .iter()
        .filter_map(|(id, a)| a.as_ref().map(|a| (*id, a)))
        .collect();
    if let Some((leader, a)) = answered.iter().find(|(_, a)| a.leader && a.initialized) {
        let member = a.voters.contains(&me) || a.learners.contains(&me);
        return if member && ran_before(a) {
            Admission::Forget(*leader)
        } else {
            // Not a member, or a member that never ran: a first start in a cluster that
            // formed before it came up. The leader keeps no match index for it.
            Admission::Join
        };
    }
    if !answered.is_empty() && answered.iter().all(|(_, a)| !a.initialized) {
        return Admission::Form;
    }
    // A cluster still forming: initialised by the lowest-numbered node, and no leader has
    // replicated anything to anyone who answers, so none could have reached this node.
    if !answered.is_empty()
        && answered
            .iter()
            .all(|(_, a)| !a.initialized || a.last_log_index == 0)
    {
        return Admission::Join;
    }
    if answered.iter().any(|(_, a)| a.initialized) {
        return Admission::Wait(
            "the cluster has formed and no leader answered: only a leader can say whether \
             it still counts this node"
                .to_owned(),
        );
    }
    if answered.is_empty() {
        return Admission::Wait("no other node answers".to_owned());
    }
    Admission::Form
}

/// The incarnation node `me` (now `own`) must become so that the others accept its
/// heartbeats and its registration: a node whose state directory was emptied restarts at 1,
/// and the others' heartbeat replay windows drop everything below the incarnation and
/// sequence they last heard (issue 15, finding 4). `ran_before`: the leader counts it as a
/// member that ran (the `Forget` decision); then what the others know is an earlier run's,
/// even an incarnation equal to `own` (this run's registration cannot have committed below
/// it), and the node rises above it. Otherwise what they heard may be this run's own
/// heartbeats: it rises only above a higher one. `None`: nothing to rise above.
pub fn incarnation_above_known(
    me: NodeId,
    own: u64,
    ran_before: bool,
    answers: &[(NodeId, Option<MembershipAnswer>)],
) -> Option<u64> {
    let known = answers
        .iter()
        .filter_map(|(_, a)| a.as_ref()?.incarnations.get(&me).copied())
        .max()?;
    let above = if ran_before {
        known >= own
    } else {
        known > own
    };
    above.then_some(known + 1)
}

/// How often the question is asked again.
const ASK_EVERY: Duration = Duration::from_millis(500);
/// How long one node may take to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// Least time between two log lines about waiting.
const LOG_EVERY: Duration = Duration::from_secs(10);

impl Node {
    /// What this node answers about the membership.
    pub(crate) fn membership_answer(&self) -> MembershipAnswer {
        let replicated = self
            .consensus
            .metrics()
            .borrow()
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .filter(|(_, matched)| matched.is_some())
                    .map(|(id, _)| *id)
                    .collect()
            })
            .unwrap_or_default();
        let config = self.config();
        let registered = self
            .snapshot()
            .incarnations()
            .keys()
            .filter_map(|name| config.node(name.as_str()).map(|n| NodeId::from(n.number)))
            .collect();
        let mut incarnations: BTreeMap<NodeId, u64> = BTreeMap::new();
        for (name, incarnation) in self.snapshot().incarnations() {
            if let Some(n) = config.node(name.as_str()) {
                incarnations.insert(NodeId::from(n.number), *incarnation);
            }
        }
        for heard in &self.membership().detector.nodes {
            if let Some(incarnation) = heard.incarnation {
                let known = incarnations.entry(NodeId::from(heard.node)).or_default();
                *known = (*known).max(incarnation);
            }
        }
        MembershipAnswer {
            incarnations,
            initialized: self.consensus.is_initialized(),
            leader: self.consensus.leads_now(),
            voters: self.consensus.voters(),
            learners: self.consensus.learners(),
            replicated,
            registered,
            last_log_index: self
                .consensus
                .metrics()
                .borrow()
                .last_log_index
                .unwrap_or(0),
        }
    }

    /// Runs until this node's held Raft server may answer (see the module documentation).
    pub(crate) async fn admission(self: Arc<Self>) {
        let me = NodeId::from(self.number);
        let config = Arc::clone(&self.boot_config);
        let lowest = config.cluster.nodes.iter().map(|n| n.number).min();
        let mut logged: Option<Instant> = None;
        let mut rarely = |line: String| {
            if logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
                logged = Some(Instant::now());
                tracing::warn!(node = %self.name, "new store: Raft requests held: {line}");
            }
        };
        loop {
            let answers = self.ask_membership(me).await;
            let decision = decide(me, &answers);
            if !matches!(decision, Admission::Wait(_)) {
                let ran_before = matches!(decision, Admission::Forget(_));
                self.rise_above_known_incarnation(me, ran_before, &answers)
                    .await;
            }
            match decision {
                Admission::Form | Admission::Join => {
                    if decision == Admission::Join {
                        tracing::info!(node = %self.name, "new store: the cluster does not count this node; answering Raft requests");
                    }
                    self.consensus.admit();
                    if decision == Admission::Form && lowest == Some(self.number) {
                        let members = peers::raft_members(&config);
                        if let Err(e) = self.consensus.initialize(members).await {
                            tracing::error!(node = %self.name, "initializing the Raft membership: {e}");
                        }
                    }
                    return;
                }
                Admission::Forget(leader_id) => {
                    let leader = self.node_name_of(leader_id);
                    match self.ask_to_forget(leader_id).await {
                        Ok(()) => {
                            tracing::warn!(
                                node = %self.name,
                                %leader,
                                "new store, and the cluster counted this node as a voter (its \
                                 state directory was emptied): the coordinator took it out of the \
                                 membership; it is added again once it has copied the log"
                            );
                            // The change is committed: no leader keeps what it knew of this
                            // node's log, and the coordinator adds it again as a learner
                            // replicated from nothing. Asking again would take it out again.
                            self.consensus.admit();
                            return;
                        }
                        Err(e) => rarely(format!(
                            "the cluster counts this node as a member with a log it no longer \
                             has, and {leader} did not take it out: {e}"
                        )),
                    }
                }
                Admission::Wait(why) => rarely(why),
            }
            tokio::time::sleep(ASK_EVERY).await;
        }
    }

    /// Becomes an incarnation above any the others know of this node (see
    /// [`incarnation_above_known`]); a failure is logged, and the registration's own
    /// refusal path remains.
    async fn rise_above_known_incarnation(
        &self,
        me: NodeId,
        ran_before: bool,
        answers: &[(NodeId, Option<MembershipAnswer>)],
    ) {
        let own = self.incarnation();
        let Some(next) = incarnation_above_known(me, own, ran_before, answers) else {
            return;
        };
        match self.reincarnate(next).await {
            Ok(()) => tracing::warn!(
                node = %self.name,
                own,
                "new store: the cluster knows incarnation {} of this node (its state directory \
                 was emptied): starting as incarnation {next}",
                next - 1
            ),
            Err(e) => {
                tracing::error!(node = %self.name, "new store: cannot become incarnation {next}: {e}")
            }
        }
    }

    /// Every other configured node's answer about the membership (its internal API).
    async fn ask_membership(
        self: &Arc<Self>,
        me: NodeId,
    ) -> Vec<(NodeId, Option<MembershipAnswer>)> {
        let nodes = self
            .boot_config
            .cluster
            .nodes
            .iter()
            .map(|n| NodeId::from(n.number))
            .filter(|id| *id != me)
            .filter_map(|id| Some((id, self.peers().internal(id)?.to_vec())))
            .collect();
        ask_membership(self, nodes).await
    }

    /// Asks leader `leader` to take this node out of the membership.
    async fn ask_to_forget(&self, leader: NodeId) -> Result<(), String> {
        let addrs = self
            .peers()
            .internal(leader)
            .map(<[_]>::to_vec)
            .ok_or_else(|| format!("no internal address of node {leader}"))?;
        ask_to_forget(self, self.name.as_str(), &addrs).await
    }
}

/// A member with a new store asking the nodes' internal API, signed as itself: a node
/// ([`Node::request`]) or the witness (`witness.rs`).
pub(crate) trait Asker: Send + Sync + 'static {
    fn ask(
        &self,
        addr: SocketAddr,
        method: &'static str,
        path: &'static str,
        body: Option<String>,
        limit: Duration,
    ) -> impl Future<Output = Result<crate::client::Response, String>> + Send;
}

impl Asker for Node {
    async fn ask(
        &self,
        addr: SocketAddr,
        method: &'static str,
        path: &'static str,
        body: Option<String>,
        limit: Duration,
    ) -> Result<crate::client::Response, String> {
        self.request(addr, method, path, body.as_deref(), limit, None)
            .await
    }
}

/// The answers of `nodes` (each with its internal API's addresses, asked at once: the first
/// answer counts, so that an address that does not answer, a network this member is not on,
/// costs no [`ANSWER_WITHIN`] before the next) about the membership; `None` for a node that
/// gave none.
pub(crate) async fn ask_membership<A: Asker>(
    asker: &Arc<A>,
    nodes: Vec<(NodeId, Vec<SocketAddr>)>,
) -> Vec<(NodeId, Option<MembershipAnswer>)> {
    let mut asks = JoinSet::new();
    for (id, addrs) in nodes {
        let asker = Arc::clone(asker);
        asks.spawn(async move {
            let mut tries = JoinSet::new();
            for addr in addrs {
                let asker = Arc::clone(&asker);
                tries.spawn(async move {
                    asker
                        .ask(addr, "GET", MEMBERSHIP_PATH, None, ANSWER_WITHIN)
                        .await
                        .ok()
                        .filter(|r| r.status == 200)
                        .and_then(|r| serde_json::from_str::<MembershipAnswer>(&r.body).ok())
                });
            }
            while let Some(answer) = tries.join_next().await {
                if let Ok(Some(answer)) = answer {
                    return (id, Some(answer));
                }
            }
            (id, None)
        });
    }
    let mut answers = Vec::new();
    while let Some(answer) = asks.join_next().await {
        if let Ok(answer) = answer {
            answers.push(answer);
        }
    }
    answers.sort_by_key(|(id, _)| *id);
    answers
}

/// Asks the leader at `addrs` (tried in turn) to take member `name` out of the membership.
pub(crate) async fn ask_to_forget<A: Asker>(
    asker: &A,
    name: &str,
    addrs: &[SocketAddr],
) -> Result<(), String> {
    let body = serde_json::json!({ "node": name }).to_string();
    let mut errors = Vec::new();
    for addr in addrs {
        match asker
            .ask(
                *addr,
                "POST",
                FORGET_PATH,
                Some(body.clone()),
                FORGET_WITHIN,
            )
            .await
        {
            Ok(r) if r.status == 200 => return Ok(()),
            Ok(r) => errors.push(format!("{addr}: {} {}", r.status, r.body)),
            Err(e) => errors.push(format!("{addr}: {e}")),
        }
    }
    Err(errors.join("; "))
}

pub(crate) const MEMBERSHIP_PATH: &str = "/v1/internal/membership";
pub(crate) const FORGET_PATH: &str = "/v1/internal/forget";
/// How long the leader may take to commit the membership change.
const FORGET_WITHIN: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer in which every voter has run before.
    fn answer(initialized: bool, leader: bool, voters: &[NodeId]) -> Option<MembershipAnswer> {
        Some(MembershipAnswer {
            initialized,
            leader,
            voters: voters.iter().copied().collect(),
            learners: BTreeSet::new(),
            replicated: BTreeSet::new(),
            registered: voters.iter().copied().collect(),
            last_log_index: if initialized { 7 } else { 0 },
            incarnations: BTreeMap::new(),
        })
    }

    #[test]
    fn a_rebuilt_node_rises_above_every_incarnation_the_others_know() {
        let knows = |incarnation: Option<u64>| {
            let mut a = answer(true, false, &[1, 2, 3]).unwrap();
            if let Some(i) = incarnation {
                a.incarnations.insert(3, i);
            }
            a.incarnations.insert(1, 40);
            Some(a)
        };
        // n1 heard incarnation 5, n2 committed 4: the rebuilt n3 (1 again) becomes 6.
        let answers = [(1, knows(Some(5))), (2, knows(Some(4)))];
        for ran_before in [true, false] {
            assert_eq!(incarnation_above_known(3, 1, ran_before, &answers), Some(6));
            assert_eq!(incarnation_above_known(3, 6, ran_before, &answers), None);
        }
        // Equal: an earlier run's when the leader says it ran before, else maybe this
        // run's own heartbeats (a first start heard before it was admitted).
        assert_eq!(incarnation_above_known(3, 5, true, &answers), Some(6));
        assert_eq!(incarnation_above_known(3, 5, false, &answers), None);
        let first_start = [(1, knows(Some(1))), (2, knows(Some(1)))];
        assert_eq!(incarnation_above_known(3, 1, false, &first_start), None);
        assert_eq!(incarnation_above_known(3, 1, true, &first_start), Some(2));
        // Nobody knows it (a first start), or no answer, or an older version's answer.
        let unknown = [(1, knows(None)), (2, None)];
        assert_eq!(incarnation_above_known(3, 1, true, &unknown), None);
        let older: MembershipAnswer =
            serde_json::from_str(r#"{"initialized":true,"leader":true,"voters":[1],"learners":[],"replicated":[],"registered":[],"last_log_index":3}"#)
                .unwrap();
        assert_eq!(
            incarnation_above_known(3, 1, true, &[(1, Some(older))]),
            None
        );
    }

    #[test]
    fn a_cluster_still_forming_without_a_leader_is_joined() {
        let mut forming = answer(true, false, &[1, 2, 3]).unwrap();
        forming.last_log_index = 0;
        let fresh = answer(false, false, &[]);
        assert_eq!(
            decide(3, &[(1, Some(forming.clone())), (2, fresh)]),
            Admission::Join
        );
        let mut formed = forming;
        formed.last_log_index = 4;
        assert!(matches!(
            decide(3, &[(1, Some(formed))]),
            Admission::Wait(_)
        ));
    }

    #[test]
    fn a_member_that_never_ran_joins_without_being_forgotten() {
        let mut a = answer(true, true, &[1, 2, 3]).unwrap();
        a.registered.remove(&3);
        assert_eq!(decide(3, &[(1, Some(a.clone()))]), Admission::Join);
        a.replicated.insert(3);
        assert_eq!(
            decide(3, &[(1, Some(a))]),
            Admission::Forget(1),
            "it acknowledged the leader's log"
        );
    }

    #[test]
    fn a_witness_a_leader_counts_is_forgotten_whatever_the_leader_knows_of_it() {
        // A leader elected after the witness lost its store: no match index, no registration.
        let mut a = answer(true, true, &[1, 2, 200]).unwrap();
        a.registered.remove(&200);
        assert_eq!(decide(200, &[(1, Some(a.clone()))]), Admission::Join);
        assert_eq!(
            decide_witness(200, &[(1, Some(a.clone())), (2, None)]),
            Admission::Forget(1)
        );
        // Not a member (forgotten, or never added): it answers.
        let out = answer(true, true, &[1, 2]);
        assert_eq!(decide_witness(200, &[(1, out)]), Admission::Join);
        // A cluster still forming (only the initial membership, no leader): it answers.
        let mut forming = answer(true, false, &[1, 2, 200]).unwrap();
        forming.last_log_index = 0;
        assert_eq!(
            decide_witness(200, &[(1, Some(forming.clone())), (2, Some(forming))]),
            Admission::Join
        );
        // No leader of a formed cluster answers: it waits, as a node does.
        let follower = answer(true, false, &[1, 2, 200]);
        assert!(matches!(
            decide_witness(200, &[(2, follower)]),
            Admission::Wait(_)
        ));
    }

    #[test]
    fn a_wiped_voter_asks_the_leader_to_forget_it() {
        let answers = [
            (1, answer(true, true, &[1, 2, 3])),
            (2, answer(true, false, &[1, 2, 3])),
        ];
        assert_eq!(decide(3, &answers), Admission::Forget(1));
    }

    #[test]
    fn once_the_leader_no_longer_counts_it_the_node_answers() {
        let answers = [(1, answer(true, true, &[1, 2])), (2, None)];
        assert_eq!(decide(3, &answers), Admission::Join);
    }

    #[test]
    fn a_formed_cluster_without_a_leader_is_waited_for_whatever_the_others_say() {
        let answers = [
            (1, answer(true, false, &[1, 2, 3])),
            (2, answer(false, false, &[])),
        ];
        assert!(matches!(decide(3, &answers), Admission::Wait(_)));
        assert!(matches!(
            decide(3, &[(1, None), (2, None)]),
            Admission::Wait(_)
        ));
        assert!(matches!(decide(3, &[]), Admission::Wait(_)));
    }

    #[test]
    fn new_stores_everywhere_form_the_cluster() {
        let answers = [(1, answer(false, false, &[])), (2, None)];
        assert_eq!(decide(3, &answers), Admission::Form);
    }

    #[test]
    fn a_learner_counts_as_a_member_too() {
        let mut a = answer(true, true, &[1, 2]).unwrap();
        a.learners.insert(3);
        a.registered.insert(3);
        assert_eq!(decide(3, &[(1, Some(a))]), Admission::Forget(1));
    }
}
