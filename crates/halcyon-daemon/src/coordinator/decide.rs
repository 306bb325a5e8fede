//! The coordinator's decisions as a pure function: [`decide`] takes everything one round of
//! the coordinator reads ([`Input`]: the replicated view, membership, lease facts, the
//! coordinator's own memory, the time) and returns what the round does ([`Decision`]: the
//! commands to commit in order, log lines, the memory to keep, and when to look again).
//!
//! Invariants:
//! - no I/O, no clock, no randomness, no async: the same input gives the same decision;
//! - one round decides from one view: a command of the round is never assumed to be
//!   applied by a later decision of the same round (a plan may so be made for an event
//!   queued before a more urgent one the round enqueues: the state machine refuses it and
//!   the next round plans again);
//! - the runtime commits the commands in order, as the leader of the round's term only,
//!   and stops at the first that fails: log lines and memory updates are positioned
//!   between commands ([`Log::after`], [`Decision::memory_after`]) so that a cut-short
//!   round logs and remembers exactly what it did;
//! - every instant (`now`, the memory, the lease facts, `wake_at`) is on one clock, the
//!   node's lease clock (`platform::Clock::now`).
//!
//! The scenario tests (`tests/coordinator_scenarios.rs`) call it on files.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use halcyon_config::{Config, NodeName};
use halcyon_events::{EventState, Rules};
use halcyon_membership::NodeState;
use halcyon_membership::detector::is_on_network;
use halcyon_policy::{ActionKind, ClusterState, Engine, Event};
use halcyon_state::{Command, Execution, State};
use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;
use tracing::Level;

use crate::lease;

/// How long a coordinator of a cluster without members waits for every node before it
/// forms the cluster with the nodes that joined (Serviceguard's AUTO_START_TIMEOUT).
pub const FORMATION_GRACE: Duration = Duration::from_secs(5);
/// How often an event waiting in ERROR is logged again.
pub const ERROR_REMINDER: Duration = Duration::from_secs(30);
/// The smallest step of the clocks: a moment strictly after a deadline.
const CLOCK_RESOLUTION: Duration = Duration::from_nanos(1);
/// The fixed part of [`work_margin`]: the node's replica catching up and its lease being
/// renewed before it starts, the report's commit through the leader (retried every 0.5 s),
/// and the scheduling of a loaded machine.
pub const WORK_MARGIN: Duration = Duration::from_secs(10);

/// Added to what a node's work may legitimately take (its resources' own timeouts) before
/// the coordinator gives up on the node: [`WORK_MARGIN`], and two leases, each at least a
/// coordinator election (`halcyon_config::timing`), so that a report that crosses two
/// elections still arrives in time whatever heartbeat interval the cluster runs (an election
/// takes under 0.4 s at the defaults, 37 s at the slowest interval accepted). Pacemaker's
/// `cluster-delay` plays this part.
pub fn work_margin(lease: Duration) -> Duration {
    WORK_MARGIN.saturating_add(lease.saturating_mul(2))
}

/// Everything one round of the coordinator reads.
pub struct Input<'a> {
    /// The replicated state as the loops see it (its event log may be left out).
    pub view: &'a State,
    /// The configuration read at start, committed with `Bootstrap` when the view has none.
    pub boot_config: &'a Config,
    /// The event rules read at start with it.
    pub boot_rules: &'a Rules,
    /// The files they were read from (kept for `halcyon snapshot save`).
    pub boot_sources: &'a [halcyon_state::SourceFile],
    /// Reachability of every configured node by number (this node reachable).
    pub reachability: &'a BTreeMap<u32, NodeState>,
    pub lease: LeaseFacts<'a>,
    /// Nodes this coordinator is fencing right now (their agents run).
    pub fencing: &'a BTreeSet<NodeName>,
    /// The Raft voters now, by name.
    pub voters: &'a BTreeSet<NodeName>,
    /// A voter change this coordinator started has not ended yet.
    pub changing_voters: bool,
    /// Raft members (voters and learners, by number) the running configuration has neither
    /// as a node nor as its witness: nodes a `config_change` removed.
    pub members_outside: &'a BTreeSet<u32>,
    /// Raft members whose consensus addresses in the membership are not the running
    /// configuration's: nodes whose interfaces a `config_change` changed.
    pub members_readdressed: &'a BTreeSet<u32>,
    pub memory: Memory,
    /// Now on the node's lease clock.
    pub now: Instant,
    /// Now on the wall clock (the time inside commands).
    pub timestamp: Timestamp,
}

/// What the coordinator knows of leases.
pub struct LeaseFacts<'a> {
    /// The lease every node is granted.
    pub duration: Duration,
    /// openraft's `election_timeout_max`: every voter of a new term waited this long after
    /// it last heard the old leader (the shortest any voter's Raft timings may run,
    /// `State::raft_intervals`).
    pub election_max: Duration,
    /// The term this node leads; its decisions are committed in this term only.
    pub term: u64,
    /// When this node saw itself become leader of `term`.
    pub leader_since: Instant,
    /// When every lease an older leader granted has certainly ended, from what the voters
    /// that elected this node said with their votes (`lease::release_deadline_from_votes`);
    /// `None` when they did not say enough.
    pub older_leases_end: Option<Instant>,
    /// When this node, as leader of `term`, last granted each node a lease.
    pub grants: &'a BTreeMap<NodeName, Instant>,
}

/// What the coordinator remembers from one round to the next (not replicated: a new
/// coordinator starts afresh).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// Since when a cluster without members has had nodes waiting to join.
    pub forming_since: Option<Instant>,
    /// The execution driven and since when it has been seen.
    pub execution_seen: Option<(u64, Instant)>,
    /// The execution in ERROR last logged, and when.
    pub error_logged: Option<(u64, Instant)>,
    /// The work of the execution that its nodes owe, and since when this coordinator has
    /// seen each owed (a new coordinator counts again from its own first round: later,
    /// never sooner).
    pub owed_since: BTreeMap<(u64, Work), Instant>,
    /// The shortening of the lease that left longer ones unsettled (its count,
    /// `State::unsettled_lease`), and since when this coordinator has seen it
    /// (`settle_leases`).
    pub unsettled_seen: Option<(u64, Instant)>,
    /// The added witness this coordinator said it asks to join (`join_added_witness`
    /// logs it once, not at every retry).
    pub witness_asked: Option<NodeName>,
}

/// A node's work of an execution that the coordinator waits for the node to report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Work {
    /// A plan action the node may carry out now (its dependencies are done and the
    /// program lets it): `ActionDone`.
    Action { step: usize, index: usize },
    /// A command of the program (not a built-in one) handed out to the node: `LaunchDone`.
    Command { launch: u64 },
}

/// A line for the runtime's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log {
    /// Emitted once this many of the round's commands are committed (before the next).
    pub after: usize,
    pub level: Level,
    pub message: String,
}

/// What one round does.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The commands to commit, in order; the round ends at the first that fails.
    pub commands: Vec<Command>,
    /// Log lines, in order.
    pub logs: Vec<Log>,
    /// The memory once `n` commands are committed: (n, memory), `n` nondecreasing; the
    /// first entry is the input's memory at 0.
    pub memory: Vec<(usize, Memory)>,
    /// The earliest moment at which, with no new input, the decision could differ.
    pub wake_at: Option<Instant>,
    /// Nodes to fence now, with the incarnation each is known as (the runtime runs their
    /// fencing levels and commits a `FenceReport`).
    pub fences: Vec<(NodeName, u64)>,
    /// `quorum.auto_shrink`, or a node a `config_change` added: a voter change to make once
    /// the commands are committed (the node, and whether it becomes a voter).
    pub voter_change: Option<(NodeName, bool)>,
    /// A Raft member the configuration no longer has, to take out of the membership once
    /// the commands are committed (by number: the configuration has no name for it).
    pub leave: Option<u32>,
    /// A Raft member whose consensus addresses to set to the running configuration's once
    /// the commands are committed (by number).
    pub readdress: Option<u32>,
}

impl Decision {
    /// The memory to keep when `committed` of the commands were committed.
    pub fn memory_after(&self, committed: usize) -> Memory {
        self.memory
            .iter()
            .take_while(|(after, _)| *after <= committed)
            .last()
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// The log lines to emit once `committed` commands are committed (before the next).
    pub fn logs_at(&self, committed: usize) -> impl Iterator<Item = &Log> {
        self.logs.iter().filter(move |l| l.after == committed)
    }
}

/// One round of the coordinator, as leader of `input.lease.term`.
pub fn decide(input: &Input) -> Decision {
    let mut round = Round::new(input);
    let Some(config) = input.view.config().map(|c| c.as_ref()) else {
        round.commit(Command::Bootstrap {
            config: Box::new(input.boot_config.clone()),
            rules: input.boot_rules.clone(),
            sources: input.boot_sources.to_vec(),
            at: input.timestamp,
        });
        return round.decision;
    };
    membership(&mut round, config);
    join_added_nodes(&mut round, config);
    remove_unconfigured_members(&mut round, config);
    readdress_members(&mut round, config);
    auto_shrink(&mut round, config);
    join_added_witness(&mut round, config);
    settle_leases(&mut round, config);
    let view = input.view;
    let reported = adapter_events(config, view, input.reachability)
        .into_iter()
        .chain(standby_events(config, view));
    for event in reported {
        if !view.is_pending_or_running(&event) {
            round.enqueue(event, "membership");
        }
    }
    match &view.execution() {
        None => {
            round.remember(|m| m.owed_since.clear());
            next_event(&mut round, config);
        }
        Some(execution) => {
            complete_actions(&mut round, config, execution);
            watch_program(&mut round, config, execution);
        }
    }
    round.decision
}

/// A decision being built.
struct Round<'a> {
    input: &'a Input<'a>,
    decision: Decision,
}

impl<'a> Round<'a> {
    fn new(input: &'a Input<'a>) -> Self {
        Round {
            input,
            decision: Decision {
                commands: Vec::new(),
                logs: Vec::new(),
                memory: vec![(0, input.memory.clone())],
                wake_at: None,
                fences: Vec::new(),
                voter_change: None,
                leave: None,
                readdress: None,
            },
        }
    }

    fn commit(&mut self, command: Command) {
        self.decision.commands.push(command);
    }

    fn log(&mut self, level: Level, message: String) {
        let after = self.decision.commands.len();
        self.decision.logs.push(Log {
            after,
            level,
            message,
        });
    }

    fn memory(&self) -> Memory {
        self.decision
            .memory
            .last()
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// Changes the memory from this point of the round on.
    fn remember(&mut self, change: impl FnOnce(&mut Memory)) {
        let mut memory = self.memory();
        change(&mut memory);
        if memory != self.memory() {
            let after = self.decision.commands.len();
            self.decision.memory.push((after, memory));
        }
    }

    /// The decision may differ at `at` (ignored unless it is still to come).
    fn wake(&mut self, at: Instant) {
        if at > self.input.now {
            self.decision.wake_at = Some(self.decision.wake_at.map_or(at, |w| w.min(at)));
        }
    }

    fn enqueue(&mut self, event: Event, by: &str) {
        let term = self.input.lease.term;
        self.log(
            Level::INFO,
            format!("enqueue event={event} by={by:?} term={term}"),
        );
        self.commit(Command::Enqueue {
            event,
            by: by.to_owned(),
            at: self.input.timestamp,
            sample: None,
            request: None,
        });
    }

    /// When every lease an older leader granted has certainly ended: bounded from this
    /// leadership's start (see `lease::release_deadline_after_election`), or from the
    /// voters' last acknowledgements when they said them
    /// (`lease::release_deadline_from_votes`): both bounds hold, the earlier is taken.
    fn older_leases_end(&self) -> Instant {
        let facts = &self.input.lease;
        let after_election = lease::release_deadline_after_election(
            facts.leader_since,
            facts.duration,
            facts.election_max,
        );
        facts
            .older_leases_end
            .map_or(after_election, |from_votes| from_votes.min(after_election))
    }

    /// When `node`'s lease has certainly expired: after this coordinator's last grant to
    /// it, and after any older leader's grant ([`Round::older_leases_end`]).
    fn release_deadline(&self, node: &str) -> Instant {
        let facts = &self.input.lease;
        let older = self.older_leases_end();
        match facts.grants.get(node) {
            Some(grant) => older.max(lease::release_deadline(*grant, facts.duration)),
            None => older,
        }
    }

    fn reach(&self, config: &Config, node: &str) -> Option<NodeState> {
        let number = config.node(node).map_or(0, |n| n.number);
        self.input.reachability.get(&number).copied()
    }
}

/// Nodes a `config_change` added (`State::joining`, `halcyon apply`) become Raft voters, one
/// voter change at a time: once the node's heartbeats are heard (its daemon runs with the
/// cluster's credentials), it is added as a learner, catches up, and votes; a voter is no
/// longer joining ([`Command::NodeJoined`]). One not heard yet waits (no wake-up is needed:
/// its heartbeats change the reachability, which runs a round). A witness: [`join_added_witness`].
fn join_added_nodes(round: &mut Round, config: &Config) {
    let input = round.input;
    let view = input.view;
    if input.changing_voters {
        return;
    }
    for node in view.joining() {
        if input.voters.contains(node) {
            round.commit(Command::NodeJoined {
                node: node.clone(),
                at: input.timestamp,
            });
            continue;
        }
        // The witness has no heartbeats to be heard by: `join_added_witness`.
        if config.node(node.as_str()).is_none()
            || round.reach(config, node.as_str()) != Some(NodeState::Reachable)
            || round.decision.voter_change.is_some()
        {
            continue;
        }
        round.log(
            Level::INFO,
            format!(
                "{node}, added by configuration generation {}, is heard: it joins the voters",
                view.generation()
            ),
        );
        round.decision.voter_change = Some((node.clone(), true));
    }
}

/// The witness a `config_change` added (`State::joining`), or that the cluster forgot when
/// it came back with a new store (`State::shrunk`, `node::admission`), becomes a voter like
/// an added node, but it runs no heartbeats to be heard by: when no other membership change
/// is due this round, the change is asked for, and the change asks the witness first
/// (`Node::auto_voter_change`: one that does not answer is asked again a second later,
/// so it never holds the other membership changes back longer than that). A voter is no
/// longer joining ([`Command::NodeJoined`], from `join_added_nodes`) nor shrunk (from
/// `auto_shrink`).
fn join_added_witness(round: &mut Round, config: &Config) {
    let input = round.input;
    let Some(witness) = &config.cluster.quorum.witness else {
        return;
    };
    if input.voters.contains(&witness.name) && round.memory().witness_asked.is_some() {
        // It votes: the next time it has to join (forgotten later) is said again.
        round.remember(|m| m.witness_asked = None);
    }
    let decided = &round.decision;
    if input.changing_voters
        || decided.voter_change.is_some()
        || decided.leave.is_some()
        || decided.readdress.is_some()
        || !(input.view.joining().contains(&witness.name)
            || input.view.shrunk().contains(&witness.name))
        || input.voters.contains(&witness.name)
    {
        return;
    }
    if round.memory().witness_asked.as_ref() != Some(&witness.name) {
        let why = if input.view.joining().contains(&witness.name) {
            format!(
                "added by configuration generation {}",
                input.view.generation()
            )
        } else {
            "taken out when it came back with a new store".to_owned()
        };
        round.log(
            Level::INFO,
            format!(
                "witness {}, {why}, joins the voters once it answers at {} (asked every second)",
                witness.name,
                crate::peers::witness_api(&config.cluster, witness)
            ),
        );
        round.remember(|m| m.witness_asked = Some(witness.name.clone()));
    }
    round.decision.voter_change = Some((witness.name.clone(), true));
}

/// A `config_change` (or a node's `RaftReport`) that shortened the lease left the longer
/// leases granted before it unsettled (`State::unsettled_lease`: every coordinator waits
/// them out meanwhile). They are
/// settled ([`Command::LeaseSettled`]) once they have certainly ended: an older leader's by
/// this leadership's bound, this coordinator's own from when it first saw the shorter lease.
/// It has granted no longer one since: a holder takes its lease from its replica after it
/// applied the grant's read index, so from this state or a newer one; a grant whose read
/// index was older was asked for before the change was committed.
fn settle_leases(round: &mut Round, config: &Config) {
    let input = round.input;
    let Some((change, longer)) = input.view.unsettled_lease() else {
        return;
    };
    let seen = match round.memory().unsettled_seen {
        Some((c, since)) if c == change => since,
        _ => {
            round.remember(|m| m.unsettled_seen = Some((change, input.now)));
            input.now
        }
    };
    let waited = input.lease.duration.max(longer);
    let deadline = round
        .older_leases_end()
        .max(lease::release_deadline(seen, waited));
    if input.now < deadline {
        round.wake(deadline);
        return;
    }
    let running = input.view.lease().unwrap_or_else(|| config.cluster.lease());
    round.log(
        Level::INFO,
        format!(
            "every lease granted before the lease was shortened (generation {}) has ended ({} leases): a lease is {} from now on",
            input.view.generation(),
            humantime::format_duration(longer),
            humantime::format_duration(running),
        ),
    );
    round.commit(Command::LeaseSettled {
        change,
        at: input.timestamp,
    });
}

/// Raft members the running configuration no longer has (a `config_change` removed them:
/// `halcyon apply` removes only nodes that are not members) leave the Raft membership, one
/// membership change at a time, the lowest number first.
fn remove_unconfigured_members(round: &mut Round, config: &Config) {
    let input = round.input;
    if input.changing_voters || round.decision.voter_change.is_some() {
        return;
    }
    let Some(&number) = input.members_outside.first() else {
        return;
    };
    debug_assert!(
        config.cluster.nodes.iter().all(|n| n.number != number),
        "a member outside the configuration is not one of its nodes"
    );
    round.log(
        Level::WARN,
        format!(
            "node {number} is not in configuration generation {}: it leaves the Raft membership",
            input.view.generation()
        ),
    );
    round.decision.leave = Some(number);
}

/// Raft members whose interfaces a `config_change` changed (`halcyon apply` changes only a
/// node that is not a member) get the running configuration's consensus addresses, one
/// membership change at a time, the lowest number first: the leader reaches them there.
fn readdress_members(round: &mut Round, config: &Config) {
    let input = round.input;
    if input.changing_voters
        || round.decision.voter_change.is_some()
        || round.decision.leave.is_some()
    {
        return;
    }
    let Some(&number) = input.members_readdressed.first() else {
        return;
    };
    let Some(node) = config.cluster.nodes.iter().find(|n| n.number == number) else {
        return;
    };
    round.log(
        Level::INFO,
        format!(
            "{}'s interfaces changed in configuration generation {}: Raft reaches it at its new addresses",
            node.name,
            input.view.generation()
        ),
    );
    round.decision.readdress = Some(number);
}

/// `quorum.auto_shrink` (SPEC 6, Corosync's `last_man_standing`), one voter change at a time:
/// a voter committed down for `shrink_after` leaves the voters (never below
/// `Cluster::shrink_floor`), recorded as shrunk before the change; a shrunk node that is a
/// member again becomes a voter again, and is no longer recorded as shrunk once it is one.
/// Raft's joint consensus makes each change safe against partitions; the voters an
/// administrator removed (`node remove`) are never added back by this.
fn auto_shrink(round: &mut Round, config: &Config) {
    let input = round.input;
    let view = input.view;
    if input.changing_voters || round.decision.voter_change.is_some() {
        return;
    }
    // A node the cluster took out (by auto-shrink, or forgotten when it came back with a new
    // store: `node::admission`) becomes a voter again once it is a member or its heartbeats
    // are heard, whatever `auto_shrink` says now. A forgotten node receives no log, so it
    // knows no leader to register with until it is a learner again: being heard must do.
    for node in view.shrunk() {
        // The witness, forgotten when it came back with a new store, has no heartbeats and
        // never registers: it is asked to join again by `join_added_witness`, and is no
        // longer shrunk once it votes.
        let witness = config.cluster.witness_named(node.as_str()).is_some();
        let member = view.cluster().members.contains(node) && !view.departed().contains(node);
        let heard = round.reach(config, node.as_str()) == Some(NodeState::Reachable);
        if witness && input.voters.contains(node) {
            round.commit(Command::AutoShrink {
                node: node.clone(),
                voter: true,
                at: input.timestamp,
            });
            continue;
        }
        if witness || (!member && !heard) {
            continue;
        }
        if input.voters.contains(node) {
            round.commit(Command::AutoShrink {
                node: node.clone(),
                voter: true,
                at: input.timestamp,
            });
        } else {
            round.log(
                Level::INFO,
                format!("auto-shrink: {node} is a member again: it becomes a voter again"),
            );
            round.decision.voter_change = Some((node.clone(), true));
            return;
        }
    }
    if !config.cluster.quorum.auto_shrink || input.voters.len() <= config.cluster.shrink_floor() {
        return;
    }
    let after =
        SignedDuration::try_from(config.cluster.quorum.shrink_after).unwrap_or(SignedDuration::MAX);
    let mut departed: Vec<(&NodeName, &Timestamp)> = view
        .departed_at()
        .iter()
        .filter(|(node, _)| input.voters.contains(*node))
        .collect();
    departed.sort_by_key(|(node, at)| (**at, (*node).clone()));
    for (node, at) in departed {
        let down_for = input.timestamp.duration_since(*at);
        if down_for < after {
            let wait = Duration::try_from(after - down_for).unwrap_or(Duration::ZERO);
            round.wake(input.now + wait);
            continue;
        }
        if !view.shrunk().contains(node) {
            round.commit(Command::AutoShrink {
                node: node.clone(),
                voter: false,
                at: input.timestamp,
            });
        }
        round.log(
            Level::WARN,
            format!(
                "auto-shrink: {node} has been down for {:.1} s: it leaves the voters ({} now, at least {})",
                down_for.as_secs_f64(),
                input.voters.len(),
                config.cluster.shrink_floor()
            ),
        );
        round.decision.voter_change = Some((node.clone(), false));
        return;
    }
}

/// Membership, level-triggered: the coordinator's view against the committed members.
/// `node_up` for a reachable non-member that registered (unless halted, or excluded as
/// stuck: see [`bound_work`]), `node_down` for an unreachable member (once).
fn membership(round: &mut Round, config: &Config) {
    let view = round.input.view;
    for n in &config.cluster.nodes {
        let member = view.cluster().members.contains(&n.name);
        let up = Event::NodeUp {
            node: n.name.clone(),
        };
        match round.input.reachability.get(&n.number) {
            Some(NodeState::Reachable)
                if !member
                    && !view.cluster_halted()
                    && !view.halted_by_admin().contains(&n.name)
                    && !view.stuck().contains_key(&n.name)
                    && !view.is_pending_or_running(&up)
                    && view.incarnations().contains_key(&n.name) =>
            {
                round.enqueue(up, "membership");
            }
            Some(NodeState::Unreachable) if member && !node_down_known(view, &n.name) => {
                let down = Event::NodeDown {
                    node: n.name.clone(),
                    how: halcyon_policy::Departure::Failure,
                };
                round.enqueue(down, "membership");
            }
            _ => {}
        }
    }
}

/// A `node_down` of `node` (of any kind) is pending or running.
fn node_down_known(view: &State, node: &NodeName) -> bool {
    let is_down = |e: &Event| matches!(e, Event::NodeDown { node: n, .. } if n == node);
    view.pending().iter().any(|p| is_down(&p.event))
        || view
            .execution()
            .as_ref()
            .is_some_and(|e| is_down(&e.plan.event))
}

/// `fail_standby` / `join_standby` from the committed standby reports, and `network_down`
/// when the standby that failed carried the addresses after a swap.
fn standby_events(config: &Config, view: &State) -> Vec<Event> {
    let mut events = Vec::new();
    for node in &config.cluster.nodes {
        if !view.cluster().members.contains(&node.name) {
            continue;
        }
        let reported = view.standby_reports().get(&node.name);
        for network in &config.cluster.networks {
            if node
                .standby_interfaces_on(network.name.as_str())
                .next()
                .is_none()
            {
                continue;
            }
            let key = (node.name.clone(), network.name.clone());
            let down = reported.is_some_and(|r| r.contains(&network.name));
            let committed = view.standbys_down().contains(&key);
            if down && !committed {
                // After a swap the standby carries the service addresses. Its failure leaves
                // the node without the network while the primary is still down, so the
                // packages move (HACMP 5.4); once the primary has returned, the addresses
                // swap back to it.
                let network_down = view
                    .cluster()
                    .networks_down
                    .get(&key.0)
                    .is_some_and(|n| n.contains(&key.1));
                let carrying = view.swapped().contains(&key) && !network_down;
                let primary_down = view.adapters_down().contains(&key);
                events.push(Event::FailStandby {
                    node: key.0.clone(),
                    network: key.1.clone(),
                });
                match (carrying, primary_down) {
                    (true, true) => events.push(Event::NetworkDown {
                        node: key.0,
                        network: key.1,
                    }),
                    (true, false) => events.push(Event::SwapAdapter {
                        node: key.0,
                        network: key.1,
                    }),
                    (false, _) => {}
                }
            } else if committed && !down {
                events.push(Event::JoinStandby {
                    node: key.0,
                    network: key.1,
                });
            }
        }
    }
    events
}

/// Adapter events from the committed reports. An adapter (node X, network N) is down when
/// every other member on N reports its path to X on N down while X is heard elsewhere, or
/// when X itself reports it (its kernel says the interface lost its carrier: known at once):
/// `swap_adapter` when X has a standby interface on N, else `network_down`; `network_up`
/// once no member (X included) reports it down any more. A node with no path up at all is a
/// node failure instead (membership), never an adapter event.
fn adapter_events(
    config: &Config,
    view: &State,
    reachability: &BTreeMap<u32, NodeState>,
) -> Vec<Event> {
    let mut events = Vec::new();
    for x in &config.cluster.nodes {
        if !view.cluster().members.contains(&x.name)
            || !matches!(reachability.get(&x.number), Some(NodeState::Reachable))
        {
            continue;
        }
        for network in &config.cluster.networks {
            let key = (x.name.clone(), network.name.clone());
            if !is_on_network(&config.cluster, x, network) {
                continue;
            }
            let peers: Vec<&halcyon_config::Node> = config
                .cluster
                .nodes
                .iter()
                .filter(|p| {
                    p.number != x.number
                        && view.cluster().members.contains(&p.name)
                        && is_on_network(&config.cluster, p, network)
                })
                .collect();
            let reported = |p: &&halcyon_config::Node| {
                view.adapter_reports()
                    .get(&p.name)
                    .is_some_and(|r| r.contains(&key))
            };
            let own = reported(&x);
            let down = own || (!peers.is_empty() && peers.iter().all(reported));
            let committed = view.adapters_down().contains(&key);
            if down && !committed {
                // A failed standby (committed fail_standby) cannot take the addresses.
                let standby = x
                    .standby_interfaces_on(network.name.as_str())
                    .next()
                    .is_some()
                    && !view.standbys_down().contains(&key);
                let (node, network) = key;
                events.push(if standby {
                    Event::SwapAdapter { node, network }
                } else {
                    Event::NetworkDown { node, network }
                });
            } else if committed && !own && !peers.iter().any(reported) {
                let (node, network) = key;
                events.push(Event::NetworkUp { node, network });
            }
        }
    }
    events
}

/// No execution: the cluster's formation, else the plan of the most urgent pending event.
fn next_event(round: &mut Round, config: &Config) {
    let view = round.input.view;
    if view.cluster().members.is_empty() {
        let joining: Vec<NodeName> = config
            .cluster
            .nodes
            .iter()
            .filter(|n| {
                view.pending()
                    .iter()
                    .any(|p| matches!(&p.event, Event::NodeUp { node } if *node == n.name))
            })
            .map(|n| n.name.clone())
            .collect();
        if !joining.is_empty() {
            form(round, config, &joining);
            return;
        }
    }
    round.remember(|m| m.forming_since = None);
    let pending = view.pending_events();
    if let Some(i) = halcyon_policy::next_event(config, &pending) {
        let (sequence, event) = pending[i].clone();
        if let Some(why) = start_cut_short_by_its_node(round, config, sequence, &event) {
            round.log(Level::WARN, format!("event refused: {why} event={event}"));
            round.commit(Command::EventRefused {
                sequence,
                error: why,
                at: round.input.timestamp,
            });
            return;
        }
        // A `config_change` is planned with the configuration `halcyon apply` staged.
        let planned_with = view.config_for(sequence).map_or(config, |c| c.as_ref());
        plan_or_refuse(round, planned_with, view.cluster(), sequence, &event, None);
        return;
    }
    timer(round);
}

/// Why the pending event `sequence` is refused, when it is a `package_failed` the end of
/// an execution queued for a run that failed ([`halcyon_state::FAILED_TO_START`]) on a
/// node unreachable now: the node failed during the start (the coordinator completes the
/// run of a node that is gone as failed, `complete_actions`), and its `node_down` takes the
/// package over. Counted as the package's failure there, it would keep the package off
/// that node (its `failure_expiry`, or until `halcyon package clear`) after the node came
/// back, for a fault of the node, not of the package (session 29: simulator seed 91). A
/// node that reported the failed start itself and is reachable keeps it counted.
fn start_cut_short_by_its_node(
    round: &Round,
    config: &Config,
    sequence: u64,
    event: &Event,
) -> Option<String> {
    let Event::PackageFailed { package, node } = event else {
        return None;
    };
    let pending = round
        .input
        .view
        .pending()
        .iter()
        .find(|p| p.sequence == sequence)?;
    let unreachable = round.reach(config, node.as_str()) == Some(NodeState::Unreachable);
    (pending.by == halcyon_state::FAILED_TO_START && unreachable).then(|| {
        format!(
            "{node} is unreachable: its start of {package} failed with the node, not as a failure of {package} there (its node_down takes {package} over)"
        )
    })
}

/// With nothing to do: the engine's wake-up (the delayed fallback timer, a failure's
/// expiry) raises `timer` when it comes, whichever coordinator is in office then; until
/// then the coordinator wakes for it.
fn timer(round: &mut Round) {
    let Some(wake_at) = round.input.view.wake_at() else {
        return;
    };
    let timestamp = round.input.timestamp;
    if timestamp >= wake_at {
        round.enqueue(Event::Timer, "timer");
    } else {
        let left = wake_at.duration_since(timestamp).unsigned_abs();
        round.wake(round.input.now + left);
    }
}

/// Cluster formation: with no member yet, wait (bounded) for every node to join, then
/// form the cluster with all of them at once (one `cluster_start` planned with every
/// joining node a member), so that packages start on their first node in node-list
/// order, not on whichever node happened to answer first. The `node_up` events stay
/// queued and find their node already a member.
fn form(round: &mut Round, config: &Config, joining: &[NodeName]) {
    let now = round.input.now;
    round.remember(|m| {
        m.forming_since.get_or_insert(now);
    });
    let since = round.memory().forming_since.unwrap_or(now);
    let everyone = joining.len() == config.cluster.nodes.len();
    if !everyone && now.saturating_duration_since(since) < FORMATION_GRACE {
        round.wake(since + FORMATION_GRACE);
        return;
    }
    let view = round.input.view;
    let start = view
        .pending()
        .iter()
        .find(|p| p.event == Event::ClusterStart)
        .map(|p| p.sequence);
    let Some(sequence) = start else {
        // After a halt, the start is the administrator's who asked `cluster start`.
        let by = view.cluster_start_by().unwrap_or("formation").to_owned();
        round.enqueue(Event::ClusterStart, &by);
        return;
    };
    let timestamp = round.input.timestamp;
    let mut forming = view.cluster().clone();
    for n in joining {
        forming.members.insert(n.clone());
        forming.available_since.insert(n.clone(), timestamp);
        forming.networks_down.remove(n);
    }
    plan_or_refuse(
        round,
        config,
        &forming,
        sequence,
        &Event::ClusterStart,
        Some(joining),
    );
}

/// The policy engine's plan for the pending event `sequence` committed, or the event
/// refused with the engine's error. `members`: the joining nodes of a formation.
fn plan_or_refuse(
    round: &mut Round,
    config: &Config,
    cluster: &ClusterState,
    sequence: u64,
    event: &Event,
    members: Option<&[NodeName]>,
) {
    let at = round.input.timestamp;
    let command = match Engine::new(config).plan(cluster, event, at) {
        Ok(plan) => {
            let text = halcyon_policy::render(&plan);
            round.log(
                Level::INFO,
                match members {
                    Some(members) => {
                        format!("forming the cluster; plan:\n{text} members={members:?}")
                    }
                    None => format!("plan:\n{text} event={event}"),
                },
            );
            Command::PlanCommitted {
                sequence,
                plan: Box::new(plan),
                at,
            }
        }
        Err(e) => Command::EventRefused {
            sequence,
            error: e.to_string(),
            at,
        },
    };
    round.commit(command);
}

/// Release waits, and the actions of nodes that lost their lease: `AwaitRelease` once the
/// node's lease has certainly expired; a halt on a node whose lease expired, when the node
/// is unreachable or the package is a failover package (a node cut off from the quorum
/// halts its failover packages itself); a run on an unreachable node without a lease
/// fails; every action of a node excluded as stuck ([`bound_work`]) is given up once its
/// lease has certainly expired (a halt of a failover package done, the node halted it
/// itself; anything else failed).
fn complete_actions(round: &mut Round, config: &Config, execution: &Execution) {
    let facts = &round.input.lease;
    let (duration, drift, margin) = (facts.duration, lease::DRIFT * 100.0, lease::MARGIN);
    for (step, index, action) in execution.open_actions() {
        let deadline = round.release_deadline(action.node.as_str());
        let expired = round.input.now >= deadline;
        if action.kind == ActionKind::AwaitRelease {
            await_release(
                round,
                config,
                execution,
                (step, index),
                action.node.as_str(),
            );
            continue;
        }
        let unreachable = round.reach(config, action.node.as_str()) == Some(NodeState::Unreachable);
        let stuck = round.input.view.stuck().get(&action.node);
        let failover = action
            .package
            .as_ref()
            .and_then(|p| config.package(p.as_str()))
            .is_some_and(|p| p.is_failover());
        let is_halt = matches!(action.kind, ActionKind::Halt | ActionKind::HaltForced);
        let waits = stuck.is_some()
            || match action.kind {
                ActionKind::Run => unreachable,
                _ => is_halt && (unreachable || failover),
            };
        if !waits {
            continue;
        }
        if !expired {
            round.wake(deadline);
            continue;
        }
        let node = &action.node;
        let package = action
            .package
            .as_ref()
            .map_or("its packages", |p| p.as_str());
        let no_lease = format!("none granted for {duration:?} x (1 + {drift} %) + {margin:?}");
        let (ok, detail) = match (action.kind.clone(), stuck) {
            (ActionKind::Run, Some(stuck)) => (
                false,
                format!(
                    "{node} was excluded ({}) and holds no lease ({no_lease}): {package} was not started there",
                    stuck.why
                ),
            ),
            (ActionKind::Run, None) => (false, format!("{node} is unreachable and holds no lease")),
            _ if unreachable => (
                true,
                format!("{node} is unreachable and its lease has expired: its packages are halted"),
            ),
            // Excluded, and not a halt the lease makes certain: not carried out.
            (kind, Some(stuck)) if !(is_halt && failover) => (
                false,
                format!(
                    "{node} was excluded ({}): {kind} {package} was not carried out{}",
                    stuck.why,
                    if is_halt {
                        " and it may still run there (not a failover package: no lease stops it)"
                    } else {
                        ""
                    }
                ),
            ),
            // Heard (e.g. on the disk network) but cut off from the quorum, or excluded as
            // stuck: it cannot report the halt, but without a lease since the release
            // deadline it has halted its failover packages itself (its supervisors fence
            // them, or the guard if it is paused), the same rule as `AwaitRelease`.
            (_, stuck) => {
                let why = match stuck {
                    Some(stuck) => format!("excluded ({})", stuck.why),
                    None => "cut off from the quorum".to_owned(),
                };
                (
                    true,
                    format!(
                        "{node} holds no lease ({no_lease}): {why}, it has halted {package} itself"
                    ),
                )
            }
        };
        if stuck.is_some() {
            round.log(
                Level::WARN,
                format!(
                    "coordinator gives up {} {package} on {node} ({}): {detail} execution={}",
                    action.kind,
                    if ok { "done" } else { "FAILED" },
                    execution.id
                ),
            );
        } else if ok && !unreachable {
            round.log(
                Level::WARN,
                format!(
                    "coordinator completes a halt: {detail} execution={}",
                    execution.id
                ),
            );
        }
        round.commit(Command::ActionDone {
            execution: execution.id,
            step,
            index,
            ok,
            detail,
            at: round.input.timestamp,
        });
    }
}

/// `AwaitRelease` of `node` (SPEC 6): done once the node's lease has certainly expired or a
/// fencing level confirmed it is off — both when a package the plan starts requires fencing
/// (`Execution::needs_fence_of`). A node with fencing configured is fenced as soon as its
/// release is awaited, again every `FENCE_RETRY_INTERVAL` (or at once on `event retry`)
/// while no fence is confirmed.
fn await_release(
    round: &mut Round,
    config: &Config,
    execution: &Execution,
    (step, index): (usize, usize),
    node: &str,
) {
    let view = round.input.view;
    let deadline = round.release_deadline(node);
    let expired = round.input.now >= deadline;
    let fenced = view.fence_confirmed(node);
    let required = execution.needs_fence_of(config, node);
    let fenceable = config.node(node).is_some_and(|n| n.fencing.is_some());
    assert!(
        fenceable || !required,
        "a package requiring fencing of {node}, which has none (refused by check)"
    );
    if fenceable && !fenced && !round.input.fencing.contains(node) {
        // First at once; after a failed fence, again after the retry interval (on the wall
        // clock of the report) or at once when an administrator asked.
        let due = match view.current_fence(node) {
            None => round.input.now,
            Some(f) if f.retry_requested => round.input.now,
            Some(f) => {
                let since = round.input.timestamp.duration_since(f.at);
                let wait = SignedDuration::try_from(halcyon_state::FENCE_RETRY_INTERVAL)
                    .unwrap_or(SignedDuration::MAX)
                    .checked_sub(since)
                    .unwrap_or(SignedDuration::ZERO);
                round.input.now + Duration::try_from(wait).unwrap_or(Duration::ZERO)
            }
        };
        if due <= round.input.now {
            let incarnation = view.incarnations().get(node).copied().unwrap_or(0);
            round.log(
                Level::WARN,
                format!(
                    "fencing {node} (incarnation {incarnation}) before its packages start elsewhere execution={}",
                    execution.id
                ),
            );
            round
                .decision
                .fences
                .push((NodeName::from(node), incarnation));
        } else {
            round.wake(due);
        }
    }
    let (done, detail) = match (required, expired, fenced) {
        (true, true, true) => (
            true,
            format!("{node} is fenced and its lease has certainly expired"),
        ),
        (false, _, true) => (
            true,
            format!("{node} is fenced: {}", fence_summary(view, node)),
        ),
        (false, true, false) => (
            true,
            format!(
                "the lease of {node} has certainly expired (lease {:?}, drift {} %, margin {:?})",
                round.input.lease.duration,
                lease::DRIFT * 100.0,
                lease::MARGIN
            ),
        ),
        _ => (false, String::new()),
    };
    if !done {
        if !expired {
            round.wake(deadline);
        }
        return;
    }
    round.commit(Command::ActionDone {
        execution: execution.id,
        step,
        index,
        ok: true,
        detail,
        at: round.input.timestamp,
    });
}

fn fence_summary(view: &State, node: &str) -> String {
    view.current_fence(node)
        .map_or_else(String::new, |f| f.report.summary.clone())
}

/// The program: excludes a node that does not complete its work within its bound,
/// abandons the commands of nodes whose lease has certainly expired, warns when the event
/// runs longer than its maximum duration (and again every further maximum duration while it
/// runs), and reminds the log of an event waiting in ERROR.
fn watch_program(round: &mut Round, config: &Config, execution: &Execution) {
    let now = round.input.now;
    round.remember(|m| {
        if m.execution_seen.is_none_or(|(id, _)| id != execution.id) {
            m.execution_seen = Some((execution.id, now));
        }
    });
    let seen = round.memory().execution_seen.map_or(now, |(_, at)| at);
    bound_work(round, config, execution);
    abandon_lost_nodes(round, config, execution, seen);
    too_long(round, execution);
    remind_error(round, execution);
}

/// One piece of work a node owes: what it is, as a person reads it, and the longest it may
/// legitimately take on the node.
struct Owed<'a> {
    work: Work,
    node: &'a NodeName,
    what: String,
    takes: Duration,
}

/// The work of `execution` that nodes owe now, in plan then launch order: the ready plan
/// actions on nodes (not `AwaitRelease`, the coordinator's own) and the program's commands
/// handed out to nodes (not the built-in ones, which end with their node's actions, nor
/// the notify commands, which the coordinator runs). A node already excluded owes nothing.
fn owed_work<'a>(config: &Config, view: &State, execution: &'a Execution) -> Vec<Owed<'a>> {
    let mut owed = Vec::new();
    for (step, index, action) in execution.ready_actions() {
        let package = action
            .package
            .as_ref()
            .and_then(|p| config.package(p.as_str()));
        // A package no longer in the running configuration (a `config_change` removes it
        // while it halts): its timeouts are unknown here; any one of them is at most the
        // event's maximum duration (`halcyon check`).
        let unknown = config.cluster.limits.max_event_duration;
        let takes = match action.kind {
            ActionKind::AwaitRelease => continue,
            ActionKind::Run => package.map_or(unknown, |p| p.run_bound()),
            ActionKind::Halt | ActionKind::HaltForced => {
                package.map_or(unknown, |p| p.halt_bound())
            }
            // Addresses moved with netlink: no command, no timeout of its own.
            ActionKind::SwapAdapter { .. } => Duration::ZERO,
        };
        let what = match &action.package {
            Some(p) => format!("{} {p}", action.kind),
            None => action.kind.to_string(),
        };
        owed.push(Owed {
            work: Work::Action { step, index },
            node: &action.node,
            what,
            takes,
        });
    }
    for (launch, l) in &execution.launches {
        let Some(node) = &l.node else { continue };
        if halcyon_events::Builtin::parse(&l.command).is_some() {
            continue;
        }
        owed.push(Owed {
            work: Work::Command { launch: *launch },
            node,
            what: format!("the command \"{}\" (launch {launch})", l.command),
            takes: crate::executor::decide::COMMAND_LIMIT,
        });
    }
    owed.retain(|o| !view.stuck().contains_key(o.node));
    owed
}

/// The bound on a node's work (issue 15): a node that has owed a piece of work for longer
/// than it may legitimately take (its resources' own timeouts: `Package::run_bound`,
/// `Package::halt_bound`, a command's time limit) plus [`work_margin`] is excluded like a
/// failed node (`NodeStuck`, once per node): no lease is granted to it any more, so once
/// its lease has certainly expired its work is given up (`abandon_lost_nodes`,
/// `complete_actions`) and its `node_down` moves its packages. Counted from when this
/// coordinator first saw the work owed.
fn bound_work(round: &mut Round, config: &Config, execution: &Execution) {
    let now = round.input.now;
    let owed = owed_work(config, round.input.view, execution);
    round.remember(|m| {
        m.owed_since
            .retain(|(id, work), _| *id == execution.id && owed.iter().any(|o| o.work == *work));
        for o in &owed {
            m.owed_since.entry((execution.id, o.work)).or_insert(now);
        }
    });
    let memory = round.memory();
    let margin = work_margin(round.input.lease.duration);
    let mut excluded: BTreeSet<&NodeName> = BTreeSet::new();
    for o in &owed {
        if excluded.contains(o.node) {
            continue;
        }
        let since = memory
            .owed_since
            .get(&(execution.id, o.work))
            .copied()
            .unwrap_or(now);
        let bound = o.takes.saturating_add(margin);
        let Some(deadline) = since.checked_add(bound) else {
            continue;
        };
        if now < deadline {
            round.wake(deadline);
            continue;
        }
        excluded.insert(o.node);
        let node = o.node;
        let why = format!(
            "{node} did not complete {} within its bound of {} ({} it may take + {} margin)",
            o.what,
            humantime::format_duration(bound),
            humantime::format_duration(o.takes),
            humantime::format_duration(margin),
        );
        round.log(
            Level::ERROR,
            format!(
                "excluding {node} like a failed node: {why}; no lease is granted to it, its work is given up once its lease has certainly expired execution={}",
                execution.id
            ),
        );
        round.commit(Command::NodeStuck {
            execution: execution.id,
            node: node.clone(),
            why,
            at: round.input.timestamp,
        });
    }
}

fn abandon_lost_nodes(round: &mut Round, config: &Config, execution: &Execution, seen: Instant) {
    let duration = round.input.lease.duration;
    for node in execution.nodes_with_unfinished_commands() {
        // Not before a full lease from when this coordinator saw the execution: a node
        // joining with this event has had no grant yet.
        let deadline = round
            .release_deadline(node.as_str())
            .max(lease::release_deadline(seen, duration));
        if round.input.now < deadline {
            round.wake(deadline);
            continue;
        }
        let unreachable = round.reach(config, node.as_str()) == Some(NodeState::Unreachable);
        let stuck = round.input.view.stuck().get(&node);
        let why = format!(
            "{node} {} and holds no lease (none granted for {duration:?} x (1 + {} %) + {:?})",
            match stuck {
                Some(stuck) => format!("was excluded ({})", stuck.why),
                None if unreachable => "failed during the event".to_owned(),
                None => "is cut off from the quorum".to_owned(),
            },
            lease::DRIFT * 100.0,
            lease::MARGIN,
        );
        round.log(
            Level::WARN,
            format!(
                "abandoning the commands of {node}: {why} execution={}",
                execution.id
            ),
        );
        round.commit(Command::NodeLost {
            execution: execution.id,
            node,
            why,
            at: round.input.timestamp,
        });
    }
}

fn too_long(round: &mut Round, execution: &Execution) {
    if execution.progress.is_finished() {
        return;
    }
    let given = execution.progress.too_long_warnings();
    let elapsed = Duration::try_from(round.input.timestamp.duration_since(execution.started_at))
        .unwrap_or_default();
    let due = halcyon_events::too_long_warnings_due(elapsed, execution.max_duration);
    if due > given {
        let times = if due == 1 {
            String::new()
        } else {
            format!("{due} times ")
        };
        round.log(
            Level::WARN,
            format!(
                "the event has run longer than {times}its maximum duration ({:?}) execution={} event={}",
                execution.max_duration, execution.id, execution.plan.event
            ),
        );
        round.commit(Command::EventTooLong {
            execution: execution.id,
            at: round.input.timestamp,
        });
    } else if let Some(next) = halcyon_events::next_too_long_after(given, execution.max_duration)
        && let Some(left) = next.checked_sub(elapsed)
        && let Some(at) = round.input.now.checked_add(left + CLOCK_RESOLUTION)
    {
        // Longer than the maximum: strictly after it.
        round.wake(at);
    }
}

fn remind_error(round: &mut Round, execution: &Execution) {
    let EventState::Error { failures } = execution.progress.state() else {
        return;
    };
    let now = round.input.now;
    let due = round.memory().error_logged.is_none_or(|(id, at)| {
        id != execution.id || now.saturating_duration_since(at) >= ERROR_REMINDER
    });
    if due {
        round.remember(|m| m.error_logged = Some((execution.id, now)));
        for failure in failures {
            round.log(
                Level::ERROR,
                format!(
                    "event in ERROR: {failure}; answer with `halcyon event resume|retry|skip {id}` execution={id} event={event}",
                    id = execution.id,
                    event = execution.plan.event
                ),
            );
        }
    }
    let last = round.memory().error_logged.map_or(now, |(_, at)| at);
    round.wake(last + ERROR_REMINDER);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A round cut short by a failed submit keeps the memory and emits the log lines of
    /// the commands before the failure only.
    #[test]
    fn a_round_cut_short_remembers_and_logs_what_came_before_the_failed_command() {
        let t0 = Instant::now();
        let seen = Memory {
            execution_seen: Some((7, t0)),
            ..Memory::default()
        };
        let logged = Memory {
            error_logged: Some((7, t0)),
            ..seen.clone()
        };
        let log = |after: usize| Log {
            after,
            level: Level::INFO,
            message: format!("line {after}"),
        };
        let decision = Decision {
            commands: vec![
                Command::EventTooLong {
                    execution: 7,
                    at: Timestamp::UNIX_EPOCH,
                };
                2
            ],
            logs: vec![log(0), log(1), log(2)],
            memory: vec![
                (0, Memory::default()),
                (1, seen.clone()),
                (2, logged.clone()),
            ],
            wake_at: None,
            fences: Vec::new(),
            voter_change: None,
            leave: None,
            readdress: None,
        };
        assert_eq!(decision.memory_after(0), Memory::default());
        assert_eq!(decision.memory_after(1), seen);
        assert_eq!(decision.memory_after(2), logged);
        let lines: Vec<&str> = decision.logs_at(1).map(|l| l.message.as_str()).collect();
        assert_eq!(lines, ["line 1"]);
    }

    /// The margin on a node's work covers two coordinator elections on top of its fixed
    /// part, for every heartbeat interval the configuration accepts (a lease is never shorter
    /// than an election: `halcyon check`).
    #[test]
    fn the_margin_on_a_nodes_work_outlasts_two_elections_at_every_interval() {
        use halcyon_config::limits::{HEARTBEAT_INTERVAL_MAX_MS, HEARTBEAT_INTERVAL_MIN_MS};
        use halcyon_config::timing;
        for ms in HEARTBEAT_INTERVAL_MIN_MS..=HEARTBEAT_INTERVAL_MAX_MS {
            let interval = Duration::from_millis(ms);
            let lease = timing::lease_min_for_elections(interval);
            let election = timing::election_time_max(interval);
            assert!(
                work_margin(lease) >= WORK_MARGIN + election * 2,
                "interval {interval:?}: margin {:?}, election {election:?}",
                work_margin(lease)
            );
        }
        // The defaults: 10 s and two leases of 619 ms.
        assert_eq!(
            work_margin(Duration::from_millis(619)),
            Duration::from_millis(11_238)
        );
    }
}
