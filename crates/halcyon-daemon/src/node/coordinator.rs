//! The coordinator's runtime. On every node, idle unless the node leads: it wakes when the
//! view, the membership or the Raft leadership changes, or at the moment the last decision
//! asked for (`Decision::wake_at`), decides (`coordinator::decide`, pure) and commits the
//! decision's commands in order as leader of its term. It owns its memory and the grant
//! table (when each node was last granted a lease by this node as leader).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use halcyon_config::NodeName;
use halcyon_resources::fence::FenceAction;
use halcyon_state::{Command, FenceReport};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Grant, Node};
use crate::coordinator::decide::{Input, LeaseFacts, Memory, decide};
use crate::coordinator::emit;

/// After a round cut short (no quorum, or leadership lost), the next try comes this long
/// after (unless something changes first).
const RETRY_AFTER: Duration = Duration::from_millis(100);
/// How soon a leader no quorum has acknowledged yet looks again.
const UNCONFIRMED_RETRY: Duration = Duration::from_millis(10);

/// What the coordinator owns.
#[derive(Default)]
struct Coordinator {
    memory: Memory,
    /// The term this node leads, as it began.
    leadership: Option<Leadership>,
    /// Leader side: when this node last granted each node a lease, whatever the term. Never
    /// cleared: a grant answered after this node became leader but before this task saw the
    /// leadership (`Node::leadership_begins`) is a lease of this term that no bound on older
    /// leaders' grants covers (the simulator's seed 45 with `--drift` found a package on two
    /// nodes when the table was cleared there); a grant whose lease has certainly ended
    /// changes no release deadline.
    grants: BTreeMap<NodeName, Instant>,
    wake_at: Option<Instant>,
    /// Nodes whose fencing levels run now (one fence per node at a time).
    fencing: BTreeSet<NodeName>,
    /// A membership change the coordinator decided runs (one at a time).
    changing_voters: bool,
    /// The membership change the last round decided, to start once its commands are
    /// committed.
    start_membership: Option<MembershipChange>,
}

impl Coordinator {
    /// Records a grant to `node` as of `at` (the renewal's arrival), unless a later one is
    /// recorded: renewals of one node may be confirmed out of order (an attempt the holder
    /// gave up on, confirmed after the next), and the table must keep the last lease given.
    fn granted(&mut self, node: NodeName, at: Instant) {
        let last = self.grants.entry(node).or_insert(at);
        *last = (*last).max(at);
    }
}

/// A membership change the coordinator decided (`Decision`), one at a time.
#[derive(Clone, Debug)]
enum MembershipChange {
    /// A node becomes a voter (`true`) or stops voting.
    Voter(NodeName, bool),
    /// A member outside the configuration leaves the membership.
    Leave(u32),
    /// A member gets the running configuration's consensus addresses.
    Readdress(u32),
}

impl MembershipChange {
    /// What `decision` asks for, if anything (the decision asks for one at most).
    fn of(decision: &crate::coordinator::decide::Decision) -> Option<MembershipChange> {
        let voter = decision
            .voter_change
            .clone()
            .map(|(node, add)| MembershipChange::Voter(node, add));
        voter
            .or(decision.leave.map(MembershipChange::Leave))
            .or(decision.readdress.map(MembershipChange::Readdress))
    }

    async fn run(self, node: &Node) {
        match self {
            MembershipChange::Voter(target, add) => node.auto_voter_change(&target, add).await,
            MembershipChange::Leave(number) => node.remove_unconfigured(number).await,
            MembershipChange::Readdress(number) => node.readdress(number).await,
        }
    }
}

/// This node's leadership of a term, as it began.
#[derive(Clone, Copy, Debug)]
struct Leadership {
    term: u64,
    /// When this node saw itself become leader.
    since: Instant,
    /// When every lease an older leader granted has certainly ended, by the votes.
    older_leases_end: Option<Instant>,
}

/// A fence that ended: the node, the incarnation it was fenced as, the term of the
/// leadership that started it, and how it went.
type Fenced = (NodeName, u64, u64, FenceReport);

/// How long the coordinator waits for an added witness's status before it asks again
/// ([`WITNESS_ASKED_AGAIN`] later).
const WITNESS_ASKED_TIMEOUT: Duration = Duration::from_millis(500);
const WITNESS_ASKED_AGAIN: Duration = Duration::from_secs(1);

/// Fences that ended and wait to be committed: one per node at most.
const FENCES_QUEUED_MAX: usize = 64;

impl Node {
    pub(crate) async fn coordinator_loop(self: Arc<Self>, mut granted: mpsc::Receiver<Grant>) {
        let mut view = self.view.clone();
        let mut membership = self.membership.clone();
        let mut server = self.consensus.server_metrics();
        let mut c = Coordinator::default();
        let (fenced_tx, mut fenced) = mpsc::channel::<Fenced>(FENCES_QUEUED_MAX);
        let (voters_changed_tx, mut voters_changed) = mpsc::channel::<()>(1);
        loop {
            tokio::select! {
                biased;
                Some((node, at)) = granted.recv() => {
                    // Recorded now; a grant alone changes no decision before `wake_at`.
                    c.granted(node, at);
                    continue;
                }
                Some(done) = fenced.recv() => self.fence_ended(&mut c, done).await,
                Some(()) = voters_changed.recv() => c.changing_voters = false,
                Ok(()) = view.changed() => {}
                Ok(()) = membership.changed() => {}
                Ok(()) = server.changed() => {}
                () = self.sleep_until_opt(c.wake_at) => {}
            }
            // Every grant answered so far is in the table before the decision.
            while let Ok((node, at)) = granted.try_recv() {
                c.granted(node, at);
            }
            if self.is_isolated() || !self.consensus.is_leader() {
                c.leadership = None;
                c.wake_at = None;
                continue;
            }
            // openraft restores a restarted former leader as leader of its old term until it
            // hears the higher one: nothing is done before a quorum acknowledged this
            // leadership (issue 15, finding 8). Acknowledgements change no server metric, so
            // look again shortly.
            let Some(term) = self.consensus.confirmed_term() else {
                c.leadership = None;
                c.wake_at = Some(self.platform.clock.now() + UNCONFIRMED_RETRY);
                continue;
            };
            let leadership = match c.leadership {
                Some(l) if l.term == term => l,
                _ => {
                    let l = self.leadership_begins(term);
                    c.leadership = Some(l);
                    l
                }
            };
            c.wake_at = match self.coordinate(leadership, &mut c, &fenced_tx).await {
                Ok(wake_at) => wake_at,
                Err(e) => {
                    tracing::debug!("coordinator: {e}");
                    Some(self.platform.clock.now() + RETRY_AFTER)
                }
            };
            if let Some(change) = c.start_membership.take() {
                c.changing_voters = true;
                let node = Arc::clone(&self);
                let done = voters_changed_tx.clone();
                tokio::spawn(async move {
                    change.run(&node).await;
                    // The coordinator owns the receiver for as long as the node runs.
                    let _ = done.send(()).await;
                });
            }
        }
    }

    /// This node's leadership of `term`, seen now: since when, and when every lease an older
    /// leader granted has certainly ended by what the voters that elected it said
    /// (`lease::release_deadline_from_votes`; read once, at the start: the ages only grow).
    fn leadership_begins(&self, term: u64) -> Leadership {
        let since = self.platform.clock.now();
        let ages = self.consensus.election_ack_ages(term);
        let older_leases_end = crate::lease::release_deadline_from_votes(
            since,
            &ages,
            &self.consensus.voter_configs(),
            self.waiting_lease(),
        );
        let after_election = crate::lease::release_deadline_after_election(
            since,
            self.waiting_lease(),
            self.shortest_election_max(),
        );
        let ms = |at: Option<Instant>| {
            at.map_or_else(
                || "not known".to_owned(),
                |at| format!("{} ms", at.saturating_duration_since(since).as_millis()),
            )
        };
        tracing::info!(
            node = %self.name,
            term,
            voters_answered = ages.len(),
            "coordinator: this node leads; older leases end in {} by the votes, {} by the \
             election",
            ms(older_leases_end),
            ms(Some(after_election)),
        );
        Leadership {
            term,
            since,
            older_leases_end,
        }
    }

    /// One round of the coordinator as leader (`leadership`): the decision taken from this
    /// node's view ([`decide`]), its commands committed in order through
    /// [`Node::submit_as_leader`] (decisions taken from this node's view are never forwarded
    /// to another leader) until one fails, which ends the round. Returns when to decide
    /// again if nothing changes before.
    async fn coordinate(
        &self,
        leadership: Leadership,
        c: &mut Coordinator,
        fenced: &mpsc::Sender<Fenced>,
    ) -> Result<Option<Instant>, String> {
        let Leadership {
            term,
            since: leader_since,
            older_leases_end,
        } = leadership;
        let view = self.snapshot();
        let reachability = self.reachability();
        let voters: BTreeSet<NodeName> = self
            .consensus
            .voters()
            .into_iter()
            .map(|id| NodeName::from(self.node_name_of(id).as_str()))
            .collect();
        let members_outside = self.members_outside(&view);
        let members_readdressed = self.members_readdressed(&view);
        let input = Input {
            view: &view,
            boot_config: &self.boot_config,
            boot_rules: &self.boot_rules,
            boot_sources: &self.boot_sources,
            reachability: &reachability,
            lease: LeaseFacts {
                duration: self.waiting_lease(),
                election_max: self.shortest_election_max(),
                term,
                leader_since,
                older_leases_end,
                grants: &c.grants,
            },
            fencing: &c.fencing,
            voters: &voters,
            changing_voters: c.changing_voters,
            members_outside: &members_outside,
            members_readdressed: &members_readdressed,
            memory: c.memory.clone(),
            now: self.platform.clock.now(),
            timestamp: self.timestamp(),
        };
        let decision = decide(&input);
        for (target, incarnation) in &decision.fences {
            self.start_fence(c, &view, target, *incarnation, term, fenced);
        }
        let mut committed = 0;
        let outcome = loop {
            for line in decision.logs_at(committed) {
                emit(line);
            }
            let Some(command) = decision.commands.get(committed) else {
                break Ok(decision.wake_at);
            };
            if let Err(e) = self.submit_as_leader(term, command).await {
                break Err(e);
            }
            committed += 1;
        };
        c.memory = decision.memory_after(committed);
        if committed == decision.commands.len() {
            c.start_membership = MembershipChange::of(&decision);
        }
        outcome
    }

    /// Runs `target`'s fencing levels in a task of its own (agents take seconds; the
    /// coordinator goes on deciding meanwhile); the outcome comes back on `fenced`.
    fn start_fence(
        &self,
        c: &mut Coordinator,
        view: &halcyon_state::State,
        target: &NodeName,
        incarnation: u64,
        term: u64,
        fenced: &mpsc::Sender<Fenced>,
    ) {
        let Some(fencing) = view
            .config()
            .and_then(|config| config.node(target.as_str()))
            .and_then(|n| n.fencing.clone())
        else {
            return;
        };
        c.fencing.insert(target.clone());
        let resources = Arc::clone(&self.platform.resources);
        let fenced = fenced.clone();
        let target = target.clone();
        tokio::spawn(async move {
            let report = resources
                .fence(target.as_str(), &fencing, FenceAction::Off)
                .await;
            // The coordinator owns the receiver for as long as the node runs.
            let _ = fenced.send((target, incarnation, term, report)).await;
        });
    }

    /// A fence ended: committed as this term's leader (a fence reported by a leader of an
    /// older term is dropped: the new coordinator fences again).
    async fn fence_ended(&self, c: &mut Coordinator, (node, incarnation, term, report): Fenced) {
        c.fencing.remove(&node);
        if report.confirmed {
            tracing::warn!(node = %self.name, target = %node, "{}", report.summary);
        } else {
            tracing::error!(node = %self.name, target = %node, "{}", report.summary);
        }
        let command = Command::FenceReport {
            node,
            incarnation,
            report,
            by: format!("coordinator {}", self.name),
            at: self.timestamp(),
        };
        if let Err(e) = self.submit_as_leader(term, &command).await {
            tracing::warn!(node = %self.name, "the fence's outcome is not committed: {e}");
        }
    }

    /// The Raft members (voters and learners) the running configuration has neither as a
    /// node nor as its witness, by number.
    fn members_outside(&self, view: &halcyon_state::State) -> BTreeSet<u32> {
        let Some(config) = view.config() else {
            return BTreeSet::new();
        };
        let configured: BTreeSet<u32> = config
            .cluster
            .nodes
            .iter()
            .map(|n| n.number)
            .chain(config.cluster.quorum.witness.iter().map(|w| w.number))
            .collect();
        self.raft_member_numbers()
            .into_iter()
            .filter(|n| !configured.contains(n))
            .collect()
    }

    /// The Raft members whose consensus addresses in the membership are not those the
    /// running configuration gives them, by number.
    fn members_readdressed(&self, view: &halcyon_state::State) -> BTreeSet<u32> {
        let Some(config) = view.config() else {
            return BTreeSet::new();
        };
        let wanted = crate::peers::raft_members(config);
        self.consensus
            .member_addrs()
            .into_iter()
            .filter(|(id, addrs)| wanted.get(id).is_some_and(|w| w != addrs))
            .filter_map(|(id, _)| u32::try_from(id).ok())
            .collect()
    }

    /// Gives member `number` the running configuration's consensus addresses.
    async fn readdress(&self, number: u32) {
        let id = halcyon_consensus::NodeId::from(number);
        let Some(addrs) = self
            .snapshot()
            .config()
            .and_then(|c| crate::peers::raft_members(c).remove(&id))
        else {
            return;
        };
        match self.consensus.set_member_addrs(id, addrs.clone()).await {
            Ok(()) => {
                tracing::warn!(node = %self.name, number, %addrs, "Raft reaches node {number} at its new addresses")
            }
            Err(e) => {
                tracing::warn!(node = %self.name, number, "node {number}'s addresses not changed yet: {e}")
            }
        }
    }

    /// Takes node `number`, which the running configuration no longer has, out of the Raft
    /// membership, and records it in the event log.
    async fn remove_unconfigured(&self, number: u32) {
        let id = halcyon_consensus::NodeId::from(number);
        let by = format!("configuration (coordinator {})", self.name);
        if let Err(e) = self.consensus.remove_member(id).await {
            tracing::warn!(node = %self.name, number, "node {number} not taken out of the membership yet: {e}");
            return;
        }
        let voters = self.voter_names();
        tracing::warn!(node = %self.name, number, voters = %voters.join(", "), "node {number} left the Raft membership: the configuration no longer has it");
        let recorded = self
            .submit(&Command::VoterChanged {
                // The running configuration has no name for it; this node's files may.
                node: NodeName::from(crate::peers::name_of(&self.boot_config, id).as_str()),
                added: false,
                voters,
                by,
                at: self.timestamp(),
            })
            .await;
        if let Err(e) = recorded {
            tracing::warn!(node = %self.name, number, "the membership change is not in the event log: {e}");
        }
    }

    /// Whether witness `w` answers at its API as a witness of this cluster: a witness that
    /// runs with these files and its credentials (a refused request does not count).
    async fn witness_answers(
        &self,
        config: &halcyon_config::Config,
        w: &halcyon_config::Witness,
    ) -> bool {
        let addr = crate::peers::witness_api(&config.cluster, w);
        let answer = self
            .request(addr, "GET", "/v1/status", None, WITNESS_ASKED_TIMEOUT, None)
            .await
            .ok()
            .and_then(|r| serde_json::from_str::<halcyon_api::WitnessOwnStatus>(&r.body).ok());
        match answer {
            Some(a) if a.witness == w.name.as_str() && a.cluster == config.cluster.name => true,
            Some(a) => {
                tracing::warn!(node = %self.name, witness = %w.name, %addr, "the witness at {addr} is {} of cluster {:?}: not added to the voters", a.witness, a.cluster);
                false
            }
            None => {
                tracing::debug!(node = %self.name, witness = %w.name, %addr, "the witness does not answer yet: it joins the voters once it does");
                false
            }
        }
    }

    /// A voter change the coordinator decided (the checks and the change of `node
    /// add|remove`): auto-shrink's, or a node a `config_change` added joining the voters.
    async fn auto_voter_change(&self, target: &NodeName, add: bool) {
        let state = self.snapshot();
        let Some(config) = state.config().cloned() else {
            return;
        };
        let why = if add && state.joining().contains(target) {
            "configuration"
        } else {
            "auto-shrink"
        };
        if let Some(w) = config.cluster.quorum.witness.as_ref()
            && add
            && w.name == *target
            && !self.witness_answers(&config, w).await
        {
            // Asked again by the next round, not before a while.
            tokio::time::sleep(WITNESS_ASKED_AGAIN).await;
            return;
        }
        let by = format!("{why} (coordinator {})", self.name);
        match crate::operations::voter_change(self, &config, target.as_str(), add, &by).await {
            Ok(_) => tracing::warn!(node = %self.name, %target, add, "{why}: voters changed"),
            Err(e) => tracing::warn!(node = %self.name, %target, add, "{why}: {}", e.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A renewal confirmed after a later one of the same node (the holder gave the first
    /// attempt up and sent another) must not move the node's last grant back: its release
    /// would come before the later lease ends.
    #[test]
    fn a_grant_confirmed_late_does_not_move_the_last_grant_back() {
        let mut c = Coordinator::default();
        let t0 = Instant::now();
        let n1 = NodeName::from("n1");
        c.granted(n1.clone(), t0 + Duration::from_millis(30));
        c.granted(n1.clone(), t0);
        assert_eq!(c.grants[&n1], t0 + Duration::from_millis(30));
        c.granted(n1.clone(), t0 + Duration::from_millis(60));
        assert_eq!(c.grants[&n1], t0 + Duration::from_millis(60));
        c.granted(NodeName::from("n2"), t0);
        assert_eq!(c.grants.len(), 2);
    }
}
