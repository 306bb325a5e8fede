//! The placement engine: `(configuration, state, event, now) -> plan`.
//!
//! Stages (as Pacemaker's scheduler): *apply* the event to a copy of the state;
//! *place* every package in placement order (dependees before dependents, then by
//! priority, then by name), deciding for each whether it stays, moves, starts or
//! stops, with the reason; *diff* the old and new placements into halt and run
//! actions; *order* them into steps (halts of dependents before their dependees,
//! runs of dependees before their dependents, independent packages in parallel).
//!
//! Invariants: no I/O, no clock (time is `now`), no randomness; the same inputs
//! give the same plan. A failover package is placed on at most one node (asserted
//! where the placement is produced and again on the finished plan).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use halcyon_config::{
    Config, DependencyLocation, FailbackPolicy, FailoverPolicy, NodeName, Package, PackageName,
    PackageType,
};
use jiff::Timestamp;

use crate::event::{Departure, Event};
use crate::plan::{Action, ActionKind, Explanation, Ineligible, NodeVerdict, Note, Plan, Step};
use crate::state::{ClusterState, PackageState};
use crate::timer;

/// At most this many other nodes are named in a `min_package_node` reason.
const REASON_NODES_MAX: usize = 4;

/// A request the engine refuses: nothing changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("package \"{0}\" is not in the configuration")]
    UnknownPackage(String),
    #[error("node \"{0}\" is not in the configuration")]
    UnknownNode(String),
    #[error("{0} is recorded in the event log, never planned")]
    NotPlanned(String),
    #[error("network \"{0}\" is not in the configuration")]
    UnknownNetwork(String),
    #[error("package {package} cannot run on {node}: {reasons}")]
    NotEligible {
        package: String,
        node: String,
        reasons: String,
    },
    #[error("package {package} already runs on {node}")]
    AlreadyRunning { package: String, node: String },
    #[error("package {0} is not running; use `halcyon package run` to start it")]
    NotRunning(String),
    #[error("package {0} is a multi-node package; it cannot be moved")]
    NotFailover(String),
    #[error("package {package} does not run on {node}")]
    NotRunningOn { package: String, node: String },
    #[error("package {package} has no eligible node: {reasons}")]
    NoTarget { package: String, reasons: String },
    #[error("node {0} is not a member of the cluster")]
    NotMember(String),
    #[error(
        "moving {package} to {node} would stop {dependent}, which runs on the same node as \
         {package} and cannot run on {node}: {reasons}; halt it first (`halcyon package halt {dependent}`)"
    )]
    StrandsDependent {
        package: String,
        node: String,
        dependent: String,
        reasons: String,
    },
}

/// The engine for one configuration. Building it precomputes indices and the
/// placement order; `plan` can then be called for any state and event.
pub struct Engine<'c> {
    config: &'c Config,
    node_names: Vec<&'c NodeName>,
    node_index: HashMap<&'c str, usize>,
    /// Packages in placement order.
    packages: Vec<&'c Package>,
    package_index: HashMap<&'c str, usize>,
    /// Node indices of each package's node list, in priority order.
    node_lists: Vec<Vec<usize>>,
    /// `ranks[p][n]`: 1-based position of node n in package p's list, 0 if absent.
    ranks: Vec<Vec<u16>>,
    /// Dependencies as (dependee index, location).
    dependencies: Vec<Vec<(usize, DependencyLocation)>>,
    /// Packages that depend on each package.
    dependents: Vec<Vec<usize>>,
}

impl<'c> Engine<'c> {
    pub fn new(config: &'c Config) -> Self {
        let node_names: Vec<&NodeName> = config.cluster.nodes.iter().map(|n| &n.name).collect();
        let node_index: HashMap<&str, usize> = node_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();

        // Placement order: Kahn's algorithm, picking among ready packages by
        // (priority, name). Configurations are validated to be acyclic; should a
        // cycle slip through, the remaining packages follow in name order.
        let all: Vec<&Package> = config.packages.values().collect();
        let by_name: HashMap<&str, usize> = all
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.as_str(), i))
            .collect();
        let mut waiting: Vec<usize> = all
            .iter()
            .map(|p| {
                p.dependencies
                    .iter()
                    .filter(|d| by_name.contains_key(d.package.as_str()))
                    .count()
            })
            .collect();
        let mut reverse: Vec<Vec<usize>> = vec![Vec::new(); all.len()];
        for (i, p) in all.iter().enumerate() {
            for d in &p.dependencies {
                if let Some(&j) = by_name.get(d.package.as_str()) {
                    reverse[j].push(i);
                }
            }
        }
        let key = |i: usize| (all[i].priority.unwrap_or(u32::MAX), i);
        let mut ready: BinaryHeap<Reverse<(u32, usize)>> = (0..all.len())
            .filter(|&i| waiting[i] == 0)
            .map(|i| Reverse(key(i)))
            .collect();
        let mut order: Vec<usize> = Vec::with_capacity(all.len());
        let mut placed = vec![false; all.len()];
        while let Some(Reverse((_, i))) = ready.pop() {
            order.push(i);
            placed[i] = true;
            for &j in &reverse[i] {
                waiting[j] -= 1;
                if waiting[j] == 0 {
                    ready.push(Reverse(key(j)));
                }
            }
        }
        order.extend((0..all.len()).filter(|&i| !placed[i]));

        let packages: Vec<&Package> = order.iter().map(|&i| all[i]).collect();
        let package_index: HashMap<&str, usize> = packages
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.as_str(), i))
            .collect();
        let node_lists: Vec<Vec<usize>> = packages
            .iter()
            .map(|p| {
                p.nodes
                    .iter()
                    .filter_map(|n| node_index.get(n.as_str()).copied())
                    .collect()
            })
            .collect();
        let ranks = node_lists
            .iter()
            .map(|list| {
                let mut r = vec![0u16; node_names.len()];
                for (pos, &n) in list.iter().enumerate() {
                    r[n] = (pos + 1) as u16;
                }
                r
            })
            .collect();
        let dependencies: Vec<Vec<(usize, DependencyLocation)>> = packages
            .iter()
            .map(|p| {
                p.dependencies
                    .iter()
                    .filter_map(|d| {
                        package_index
                            .get(d.package.as_str())
                            .map(|&j| (j, d.location))
                    })
                    .collect()
            })
            .collect();
        let mut dependents = vec![Vec::new(); packages.len()];
        for (i, deps) in dependencies.iter().enumerate() {
            for &(j, _) in deps {
                dependents[j].push(i);
            }
        }
        Engine {
            config,
            node_names,
            node_index,
            packages,
            package_index,
            node_lists,
            ranks,
            dependencies,
            dependents,
        }
    }

    pub fn config(&self) -> &'c Config {
        self.config
    }

    fn node(&self, name: &str) -> Result<usize, PlanError> {
        self.node_index
            .get(name)
            .copied()
            .ok_or_else(|| PlanError::UnknownNode(name.to_owned()))
    }

    fn package(&self, name: &str) -> Result<usize, PlanError> {
        self.package_index
            .get(name)
            .copied()
            .ok_or_else(|| PlanError::UnknownPackage(name.to_owned()))
    }

    /// Plans the response to `event` in `state` at `now`.
    pub fn plan(
        &self,
        state: &ClusterState,
        event: &Event,
        now: Timestamp,
    ) -> Result<Plan, PlanError> {
        let mut work = Work::new(self, state, now);
        work.apply(event)?;
        work.place(event)?;
        Ok(work.finish(event))
    }

    /// Node-by-node reasons why `package` runs where it runs, or does not run.
    pub fn explain(
        &self,
        state: &ClusterState,
        package: &str,
        now: Timestamp,
    ) -> Result<Explanation, PlanError> {
        let p = self.package(package)?;
        let work = Work::new(self, state, now);
        Ok(work.explain(p))
    }
}

/// Convenience: build an engine and plan one event.
pub fn plan(
    config: &Config,
    state: &ClusterState,
    event: &Event,
    now: Timestamp,
) -> Result<Plan, PlanError> {
    Engine::new(config).plan(state, event, now)
}

/// Convenience: build an engine and explain one package.
pub fn explain(
    config: &Config,
    state: &ClusterState,
    package: &str,
    now: Timestamp,
) -> Result<Explanation, PlanError> {
    Engine::new(config).explain(state, package, now)
}

/// Nodes passed over for a package, each with its reasons.
type Rejected = Vec<(usize, Vec<Ineligible>)>;

/// What the event asks of one package beyond normal placement.
#[derive(Clone, Debug)]
enum Request {
    /// Run on this node (run or move with a node).
    RunOn(usize),
    /// Move away from the current node (move without a node).
    MoveAway,
}

/// What automatic failback asks of a package now (see `Work::failback`).
enum Failback {
    No,
    /// To `primary`, now, for this reason.
    Now {
        primary: usize,
        why: String,
    },
    /// To `primary`, at the delayed fallback timer's next time.
    Deferred {
        primary: usize,
        at: Timestamp,
    },
}

/// The working copy of one planning pass, by index.
struct Work<'e, 'c> {
    e: &'e Engine<'c>,
    now: Timestamp,
    /// The state being built (names), copied from the input.
    next: ClusterState,
    members: Vec<bool>,
    /// Current placement (input state), per package in placement order.
    current: Vec<Vec<usize>>,
    /// Decided placement, filled in placement order.
    desired: Vec<Vec<usize>>,
    decided: Vec<bool>,
    /// Failover packages per node (desired so far + current for the undecided, except that
    /// an undecided `same_node` dependent counts where its dependee was placed).
    counts: Vec<u32>,
    /// Where each failover package is counted in `counts`.
    counted_at: Vec<Option<usize>>,
    /// A node whose packages must leave it, with the reason (per package).
    must_leave: HashMap<usize, (usize, String)>,
    /// A node that left without an orderly stop (failure, forced): no halt runs
    /// there, the takeover waits for its release instead.
    failed_node: Option<(usize, Departure)>,
    requests: HashMap<usize, Request>,
    /// Reason for each decided change (package -> text).
    reasons: HashMap<usize, String>,
    swaps: Vec<Action>,
    notes: Vec<Note>,
    wake_at: Option<Timestamp>,
    /// Packages removed from the configuration that still run (config_change).
    orphans: Vec<(PackageName, BTreeSet<NodeName>)>,
    /// Package states by index (moved out of `next.packages` while planning, put
    /// back by `finish`): the hot paths look them up thousands of times.
    states: Vec<PackageState>,
}

impl<'e, 'c> Work<'e, 'c> {
    fn new(e: &'e Engine<'c>, state: &ClusterState, now: Timestamp) -> Self {
        let mut next = state.clone();
        let mut orphans = Vec::new();
        next.packages.retain(|name, p| {
            let known = e.package_index.contains_key(name.as_str());
            if !known && !p.nodes.is_empty() {
                orphans.push((name.clone(), p.nodes.clone()));
            }
            known
        });
        for p in &e.packages {
            next.packages.entry(p.name.clone()).or_default();
        }
        let members = e
            .node_names
            .iter()
            .map(|n| next.members.contains(*n))
            .collect();
        let current: Vec<Vec<usize>> = e
            .packages
            .iter()
            .map(|p| {
                next.packages[&p.name]
                    .nodes
                    .iter()
                    .filter_map(|n| e.node_index.get(n.as_str()).copied())
                    .collect()
            })
            .collect();
        let states: Vec<PackageState> = e
            .packages
            .iter()
            .map(|p| next.packages.remove(&p.name).unwrap_or_default())
            .collect();
        let mut counts = vec![0u32; e.node_names.len()];
        let mut counted_at = vec![None; current.len()];
        for (p, nodes) in current.iter().enumerate() {
            if e.packages[p].is_failover() {
                assert!(
                    nodes.len() <= 1,
                    "a failover package runs on one node at most"
                );
                for &n in nodes {
                    counts[n] += 1;
                    counted_at[p] = Some(n);
                }
            }
        }
        Work {
            e,
            now,
            next,
            members,
            desired: vec![Vec::new(); current.len()],
            decided: vec![false; current.len()],
            current,
            counts,
            counted_at,
            must_leave: HashMap::new(),
            failed_node: None,
            requests: HashMap::new(),
            reasons: HashMap::new(),
            swaps: Vec::new(),
            notes: Vec::new(),
            wake_at: None,
            orphans,
            states,
        }
    }

    fn pstate(&self, p: usize) -> &PackageState {
        &self.states[p]
    }

    fn pstate_mut(&mut self, p: usize) -> &mut PackageState {
        &mut self.states[p]
    }

    fn note(&mut self, package: Option<usize>, text: impl Into<String>) {
        let package = package.map(|p| self.e.packages[p].name.clone());
        self.notes.push(Note {
            package,
            text: text.into(),
        });
    }

    fn wake(&mut self, at: Timestamp) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }

    /// Applies the event to the working state (membership, networks, flags,
    /// requests). Refuses requests that cannot be honoured.
    fn apply(&mut self, event: &Event) -> Result<(), PlanError> {
        let e = self.e;
        match event {
            Event::ClusterStart | Event::Timer | Event::ConfigChange { .. } => {}
            Event::NodeRestart { .. } | Event::NodeFence { .. } | Event::VoterChange { .. } => {
                return Err(PlanError::NotPlanned(event.name().to_owned()));
            }
            Event::ClusterHalt => {
                for p in 0..e.packages.len() {
                    for &n in &self.current[p].clone() {
                        self.must_leave.insert(p, (n, "cluster halt".to_owned()));
                    }
                }
                for m in &mut self.members {
                    *m = false;
                }
                self.next.members.clear();
            }
            Event::NodeUp { node } => {
                let n = e.node(node.as_str())?;
                if self.members[n] {
                    self.note(None, format!("{node} is already a member"));
                } else {
                    self.members[n] = true;
                    self.next.members.insert(node.clone());
                    self.next.available_since.insert(node.clone(), self.now);
                    // The node starts with all its networks up.
                    self.next.networks_down.remove(node);
                }
            }
            Event::NodeDown { node, how } => {
                let n = e.node(node.as_str())?;
                if !self.members[n] {
                    self.note(None, format!("{node} is not a member"));
                }
                self.members[n] = false;
                self.next.members.remove(node);
                self.next.available_since.remove(node);
                let why = match how {
                    Departure::Failure => format!("{node} failed"),
                    Departure::Graceful => format!("{node} halted"),
                    Departure::GracefulTakeover => format!("{node} halted with takeover"),
                    Departure::Forced => format!("{node} halted by force"),
                };
                for p in 0..e.packages.len() {
                    if self.current[p].contains(&n) {
                        self.must_leave.insert(p, (n, why.clone()));
                        if *how == Departure::Graceful && e.packages[p].is_failover() {
                            self.pstate_mut(p).held_for = Some(node.clone());
                        }
                    }
                }
                if matches!(how, Departure::Failure | Departure::Forced) {
                    self.failed_node = Some((n, *how));
                }
            }
            Event::NetworkUp { node, network } => {
                e.node(node.as_str())?;
                self.known_network(network.as_str())?;
                if let Some(down) = self.next.networks_down.get_mut(node) {
                    down.remove(network);
                    if down.is_empty() {
                        self.next.networks_down.remove(node);
                    }
                }
                if self.next.members.contains(node) {
                    self.next.available_since.insert(node.clone(), self.now);
                }
            }
            Event::NetworkDown { node, network } => {
                e.node(node.as_str())?;
                self.known_network(network.as_str())?;
                self.next
                    .networks_down
                    .entry(node.clone())
                    .or_default()
                    .insert(network.clone());
            }
            Event::SwapAdapter { node, network } => {
                let n = e.node(node.as_str())?;
                self.known_network(network.as_str())?;
                for p in 0..e.packages.len() {
                    let package = e.packages[p];
                    if !self.current[p].contains(&n) || !package.networks.contains(network) {
                        continue;
                    }
                    if package.local_lan_failover_allowed {
                        self.swaps.push(Action {
                            kind: ActionKind::SwapAdapter { network: network.clone() },
                            package: Some(package.name.clone()),
                            node: node.clone(),
                            reason: format!("the interface carrying {network}'s addresses on {node} failed; another interface of {network} takes them (a standby, or the primary once it has returned)"),
                        });
                    } else {
                        self.must_leave.insert(
                            p,
                            (n, format!("the interface carrying {network} on {node} failed and local LAN failover is not allowed")),
                        );
                    }
                }
            }
            Event::FailStandby { node, network } => {
                e.node(node.as_str())?;
                self.known_network(network.as_str())?;
                self.note(None, format!("standby interface on {network} failed on {node}: local LAN failover unavailable there"));
            }
            Event::JoinStandby { node, network } => {
                e.node(node.as_str())?;
                self.known_network(network.as_str())?;
                self.note(
                    None,
                    format!("standby interface on {network} is back on {node}"),
                );
            }
            Event::PackageFailed { package, node } => {
                let p = e.package(package.as_str())?;
                let n = e.node(node.as_str())?;
                let now = self.now;
                self.pstate_mut(p).failures.insert(node.clone(), now);
                if self.current[p].contains(&n) {
                    self.must_leave
                        .insert(p, (n, format!("{package} failed on {node}")));
                }
            }
            Event::PackageRun { package, node } => {
                let p = e.package(package.as_str())?;
                if let Some(&on) = self.current[p].first()
                    && e.packages[p].is_failover()
                {
                    return Err(PlanError::AlreadyRunning {
                        package: package.to_string(),
                        node: e.node_names[on].to_string(),
                    });
                }
                let ps = self.pstate_mut(p);
                ps.switching = Some(true);
                ps.held_for = None;
                ps.error = None;
                if let Some(node) = node {
                    let n = e.node(node.as_str())?;
                    if !e.packages[p].is_failover() {
                        // The inverse of `package halt PKG --node NODE`.
                        self.pstate_mut(p).node_switching_disabled.remove(node);
                    }
                    self.require_eligible(p, n)?;
                    self.requests.insert(p, Request::RunOn(n));
                }
            }
            Event::PackageHalt {
                package,
                node: Some(node),
            } if !e.packages[e.package(package.as_str())?].is_failover() => {
                // One instance of a multi-node package: halted there, and kept halted
                // there (its node switching disabled) while it runs elsewhere.
                let p = e.package(package.as_str())?;
                let n = e.node(node.as_str())?;
                self.pstate_mut(p)
                    .node_switching_disabled
                    .insert(node.clone());
                if self.current[p].contains(&n) {
                    self.must_leave
                        .insert(p, (n, format!("halted on {node} by the administrator")));
                } else {
                    self.note(
                        Some(p),
                        format!("{package} does not run on {node}; it stays halted there"),
                    );
                }
            }
            Event::PackageHalt { package, node } => {
                let p = e.package(package.as_str())?;
                if let Some(node) = node {
                    let n = e.node(node.as_str())?;
                    if !self.current[p].contains(&n) {
                        return Err(PlanError::NotRunningOn {
                            package: package.to_string(),
                            node: node.to_string(),
                        });
                    }
                }
                let ps = self.pstate_mut(p);
                ps.switching = Some(false);
                ps.held_for = None;
                ps.error = None;
                for &n in &self.current[p].clone() {
                    self.must_leave
                        .insert(p, (n, "halted by the administrator".to_owned()));
                }
            }
            Event::PackageMove { package, node } => {
                let p = e.package(package.as_str())?;
                if !e.packages[p].is_failover() {
                    return Err(PlanError::NotFailover(package.to_string()));
                }
                let Some(&from) = self.current[p].first() else {
                    return Err(PlanError::NotRunning(package.to_string()));
                };
                match node {
                    Some(node) => {
                        let n = e.node(node.as_str())?;
                        if n == from {
                            return Err(PlanError::AlreadyRunning {
                                package: package.to_string(),
                                node: node.to_string(),
                            });
                        }
                        self.require_eligible(p, n)?;
                        self.require_followers_eligible(p, p, n)?;
                        self.requests.insert(p, Request::RunOn(n));
                    }
                    None => {
                        self.requests.insert(p, Request::MoveAway);
                    }
                }
                self.pstate_mut(p).switching = Some(true);
            }
            Event::PackageEnable { package, node } => {
                let p = e.package(package.as_str())?;
                match node {
                    Some(node) => {
                        e.node(node.as_str())?;
                        self.pstate_mut(p).node_switching_disabled.remove(node);
                    }
                    None => self.pstate_mut(p).switching = Some(true),
                }
            }
            Event::PackageDisable { package, node } => {
                let p = e.package(package.as_str())?;
                match node {
                    Some(node) => {
                        e.node(node.as_str())?;
                        self.pstate_mut(p)
                            .node_switching_disabled
                            .insert(node.clone());
                    }
                    None => self.pstate_mut(p).switching = Some(false),
                }
            }
            Event::PackageClear { package, node } => {
                let p = e.package(package.as_str())?;
                let ps = self.pstate_mut(p);
                match node {
                    Some(node) => {
                        e.node(node.as_str())?;
                        ps.failures.remove(node);
                    }
                    None => ps.failures.clear(),
                }
                ps.error = None;
            }
            Event::UserDefined { node, .. } => {
                e.node(node.as_str())?;
            }
        }
        Ok(())
    }

    fn known_network(&self, name: &str) -> Result<(), PlanError> {
        self.e
            .config
            .network(name)
            .map(|_| ())
            .ok_or_else(|| PlanError::UnknownNetwork(name.to_owned()))
    }

    /// A move of `moved` to `n`: every running `same_node` dependent of `p` (and theirs)
    /// must be able to follow it there, apart from the dependency itself.
    fn require_followers_eligible(
        &self,
        moved: usize,
        p: usize,
        n: usize,
    ) -> Result<(), PlanError> {
        let e = self.e;
        for &q in &e.dependents[p] {
            let follows = e.dependencies[q]
                .iter()
                .any(|&(d, location)| d == p && location == DependencyLocation::SameNode);
            if !follows || self.current[q].is_empty() {
                continue;
            }
            let reasons: Vec<Ineligible> = self
                .ineligible(q, n, false, true)
                .into_iter()
                .filter(|r| {
                    !matches!(
                        r,
                        Ineligible::DependencyDown { .. }
                            | Ineligible::DependencyElsewhere { .. }
                            | Ineligible::DependencyHere { .. }
                    )
                })
                .collect();
            if !reasons.is_empty() {
                return Err(PlanError::StrandsDependent {
                    package: e.packages[moved].name.to_string(),
                    node: e.node_names[n].to_string(),
                    dependent: e.packages[q].name.to_string(),
                    reasons: join(&reasons),
                });
            }
            self.require_followers_eligible(moved, q, n)?;
        }
        Ok(())
    }

    fn require_eligible(&self, p: usize, n: usize) -> Result<(), PlanError> {
        let reasons = self.ineligible(p, n, false, true);
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(PlanError::NotEligible {
                package: self.e.packages[p].name.to_string(),
                node: self.e.node_names[n].to_string(),
                reasons: join(&reasons),
            })
        }
    }

    /// Why node `n` may not run package `p`. `staying`: p already runs on n (a
    /// failure exclusion or switching flag does not evict it). `requested`: an
    /// administrator named the node (a graceful hold does not apply).
    /// Dependencies are judged against the placement decided so far.
    fn ineligible(&self, p: usize, n: usize, staying: bool, requested: bool) -> Vec<Ineligible> {
        let e = self.e;
        let package = e.packages[p];
        let ps = self.pstate(p);
        let name = e.node_names[n];
        let mut out = Vec::new();
        if e.ranks[p][n] == 0 {
            out.push(Ineligible::NotInNodeList);
        }
        if !self.members[n] {
            out.push(Ineligible::NotMember);
        }
        if let Some((leave_node, why)) = self.must_leave.get(&p)
            && *leave_node == n
            && self.members[n]
        {
            out.push(Ineligible::MustLeave { why: why.clone() });
        }
        if !staying && ps.node_switching_disabled.contains(name) {
            out.push(Ineligible::SwitchingDisabledOnNode);
        }
        for network in &package.networks {
            if !self.next.is_network_up(name.as_str(), network.as_str()) {
                out.push(Ineligible::NetworkDown {
                    network: network.clone(),
                });
            }
        }
        if !staying && let Some(&at) = ps.failures.get(name) {
            let until = package.failure_expiry.and_then(|d| {
                at.checked_add(
                    jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX),
                )
                .ok()
            });
            if until.is_none_or(|u| self.now < u) {
                out.push(Ineligible::FailedHere { at, until });
            }
        }
        if !requested
            && let Some(held) = &ps.held_for
            && held != name
        {
            out.push(Ineligible::HeldForNode { node: held.clone() });
        }
        for &(d, location) in &e.dependencies[p] {
            let placed = if self.decided[d] {
                &self.desired[d]
            } else {
                &self.current[d]
            };
            let dname = &e.packages[d].name;
            match location {
                DependencyLocation::AnyNode if placed.is_empty() => {
                    out.push(Ineligible::DependencyDown {
                        package: dname.clone(),
                    })
                }
                DependencyLocation::SameNode if !placed.contains(&n) => {
                    if placed.is_empty() {
                        out.push(Ineligible::DependencyDown {
                            package: dname.clone(),
                        });
                    } else {
                        out.push(Ineligible::DependencyElsewhere {
                            package: dname.clone(),
                        });
                    }
                }
                DependencyLocation::DifferentNode => {
                    if placed.is_empty() {
                        out.push(Ineligible::DependencyDown {
                            package: dname.clone(),
                        });
                    } else if placed.contains(&n) {
                        out.push(Ineligible::DependencyHere {
                            package: dname.clone(),
                        });
                    }
                }
                _ => {}
            }
        }
        out
    }

    fn wanted(&self, p: usize) -> bool {
        self.pstate(p)
            .switching_enabled(self.e.packages[p].auto_run)
    }

    /// The node a package with automatic failback belongs on.
    fn primary(&self, p: usize) -> usize {
        let e = self.e;
        self.pstate(p)
            .acting_primary
            .as_ref()
            .and_then(|n| e.node_index.get(n.as_str()).copied())
            .unwrap_or(e.node_lists[p][0])
    }

    /// Node order for choosing where a failover package goes: the acting primary
    /// (after a manual move) first, then the node list.
    fn preference(&self, p: usize) -> Vec<usize> {
        let e = self.e;
        let mut order = e.node_lists[p].clone();
        if let Some(acting) = &self.pstate(p).acting_primary
            && let Some(&a) = e.node_index.get(acting.as_str())
            && let Some(pos) = order.iter().position(|&n| n == a)
        {
            order.remove(pos);
            order.insert(0, a);
        }
        order
    }

    /// The best eligible node for a failover package, with the reason, or every
    /// node's reasons when there is none.
    fn choose(&self, p: usize, exclude: Option<usize>) -> Result<(usize, String), Rejected> {
        let e = self.e;
        let package = e.packages[p];
        let mut rejected = Vec::new();
        let mut best: Option<(u32, usize, usize)> = None; // (count, position, node)
        let mut eligible: Vec<usize> = Vec::new();
        for (position, n) in self.preference(p).into_iter().enumerate() {
            let mut reasons = self.ineligible(p, n, false, false);
            if Some(n) == exclude && reasons.is_empty() {
                reasons.push(Ineligible::MustLeave {
                    why: "the package is leaving it".to_owned(),
                });
            }
            if !reasons.is_empty() {
                rejected.push((n, reasons));
                continue;
            }
            eligible.push(n);
            let count = match package.failover_policy {
                FailoverPolicy::ConfiguredNode => 0,
                FailoverPolicy::MinPackageNode => self.counts[n],
            };
            if best.is_none_or(|(c, pos, _)| (count, position) < (c, pos)) {
                best = Some((count, position, n));
            }
            if package.failover_policy == FailoverPolicy::ConfiguredNode {
                break;
            }
        }
        let Some((count, _, n)) = best else {
            return Err(rejected);
        };
        let name = e.node_names[n];
        let reason = match package.failover_policy {
            FailoverPolicy::ConfiguredNode => {
                if self.pstate(p).acting_primary.as_ref() == Some(name) {
                    format!("configured_node: {name} is the acting primary (after a manual move)")
                } else if rejected.is_empty() {
                    format!("configured_node: {name} is the highest-priority node in the node list")
                } else {
                    let skipped: Vec<String> = rejected
                        .iter()
                        .map(|(m, r)| self.node_reasons(*m, r))
                        .collect();
                    format!(
                        "configured_node: {name} is the highest-priority eligible node ({})",
                        skipped.join(", ")
                    )
                }
            }
            FailoverPolicy::MinPackageNode => {
                // The other eligible nodes' counts, a few of them (a reason is read
                // by a person; 255 counts are not).
                let mut others: Vec<String> = eligible
                    .iter()
                    .filter(|&&m| m != n)
                    .take(REASON_NODES_MAX)
                    .map(|&m| format!("{}: {}", e.node_names[m], self.counts[m]))
                    .collect();
                let more = eligible.len().saturating_sub(1 + REASON_NODES_MAX);
                if more > 0 {
                    others.push(format!("and {more} more"));
                }
                if others.is_empty() {
                    format!(
                        "min_package_node: {name} runs {count} package{} and is the only eligible node",
                        plural(count)
                    )
                } else {
                    format!(
                        "min_package_node: {name} runs {count} package{} ({})",
                        plural(count),
                        others.join(", ")
                    )
                }
            }
        };
        Ok((n, reason))
    }

    fn set_placement(&mut self, p: usize, nodes: Vec<usize>) {
        if self.e.packages[p].is_failover() {
            assert!(
                nodes.len() <= 1,
                "a failover package placed on {} nodes",
                nodes.len()
            );
            let to = nodes.first().copied();
            self.count_at(p, to);
            if let Some(n) = to {
                self.count_followers_at(p, n);
            }
        }
        self.desired[p] = nodes;
        self.decided[p] = true;
    }

    /// Counts failover package `p` on `to` (nowhere: `None`) instead of where it was.
    fn count_at(&mut self, p: usize, to: Option<usize>) {
        if let Some(from) = self.counted_at[p] {
            self.counts[from] -= 1;
        }
        if let Some(n) = to {
            self.counts[n] += 1;
        }
        self.counted_at[p] = to;
    }

    /// `p` was placed on `n`: its undecided `same_node` dependents that are counted
    /// somewhere will run there too, so they count there from now on (min_package_node
    /// must not stack other packages beside them on the strength of a count that no longer
    /// holds), and theirs after them.
    fn count_followers_at(&mut self, p: usize, n: usize) {
        let e = self.e;
        for &q in &e.dependents[p] {
            let follows = e.dependencies[q]
                .iter()
                .any(|&(d, location)| d == p && location == DependencyLocation::SameNode);
            if follows
                && !self.decided[q]
                && e.packages[q].is_failover()
                && self.counted_at[q].is_some_and(|at| at != n)
            {
                self.count_at(q, Some(n));
                self.count_followers_at(q, n);
            }
        }
    }

    /// Decides every package's placement, in placement order.
    fn place(&mut self, event: &Event) -> Result<(), PlanError> {
        for p in 0..self.e.packages.len() {
            match self.e.packages[p].package_type {
                PackageType::Failover => self.place_failover(p, event)?,
                PackageType::MultiNode | PackageType::SystemMultiNode => self.place_multi(p),
            }
        }
        Ok(())
    }

    fn place_failover(&mut self, p: usize, event: &Event) -> Result<(), PlanError> {
        let e = self.e;
        let package = e.packages[p];
        let current = self.current[p].first().copied();
        let wanted = self.wanted(p);
        let request = self.requests.get(&p).cloned();

        if let Some(Request::RunOn(n)) = request {
            let why = match event {
                Event::PackageMove { .. } => {
                    if package.failback_policy == FailbackPolicy::Automatic {
                        self.pstate_mut(p).acting_primary = Some(e.node_names[n].clone());
                    }
                    format!("moved by the administrator to {}", e.node_names[n])
                }
                _ => format!("started by the administrator on {}", e.node_names[n]),
            };
            self.reasons.insert(p, why);
            self.pstate_mut(p).error = None;
            self.set_placement(p, vec![n]);
            return Ok(());
        }

        if let Some(n) = current {
            let reasons = self.ineligible(p, n, true, true);
            let moving_away = matches!(request, Some(Request::MoveAway));
            if reasons.is_empty() && !moving_away {
                self.set_placement(p, vec![n]);
                if wanted {
                    self.consider_failback(p, n);
                }
                return Ok(());
            }
            let why = if moving_away {
                "moved by the administrator".to_owned()
            } else {
                self.leave_reason(p, n, &reasons)
            };
            if !wanted {
                let switching_note = if self
                    .must_leave
                    .get(&p)
                    .is_some_and(|(_, w)| w.starts_with("halted by the administrator"))
                {
                    why.clone()
                } else {
                    format!("{why}; package switching is disabled, so it is not started elsewhere")
                };
                self.reasons.insert(p, switching_note);
                self.set_placement(p, Vec::new());
                return Ok(());
            }
            if !self.members.iter().any(|&m| m) {
                // The cluster halts (or its last member left): there is nowhere
                // to go and nothing is wrong with the package; it starts again
                // with the cluster.
                self.reasons.insert(p, why);
                self.set_placement(p, Vec::new());
                return Ok(());
            }
            match self.choose(p, Some(n)) {
                Ok((target, how)) => {
                    if moving_away && package.failback_policy == FailbackPolicy::Automatic {
                        self.pstate_mut(p).acting_primary = Some(e.node_names[target].clone());
                    }
                    self.reasons.insert(p, format!("{why}; {how}"));
                    self.pstate_mut(p).error = None;
                    self.pstate_mut(p).held_for = None;
                    self.set_placement(p, vec![target]);
                }
                Err(rejected) => {
                    if moving_away {
                        return Err(PlanError::NoTarget {
                            package: package.name.to_string(),
                            reasons: self.rejected_text(&rejected),
                        });
                    }
                    // Waiting for a gracefully halted node, or for a dependency
                    // that is not up, is not an error: the package starts again
                    // by itself when the node returns or the dependency runs.
                    let text = match (self.pstate(p).held_for.clone(), self.dependency_down(p)) {
                        (Some(h), _) => format!(
                            "{why}; it waits for {h} to return (halted gracefully: not taken over)"
                        ),
                        (None, Some(d)) => format!("{why}; it starts again when {d} is up"),
                        (None, None) => {
                            self.pstate_mut(p).error =
                                Some(format!("no eligible node after {why}"));
                            format!("{why}; no eligible node: {}", self.rejected_text(&rejected))
                        }
                    };
                    self.reasons.insert(p, text);
                    self.set_placement(p, Vec::new());
                    self.wake_for_failures(p);
                }
            }
            return Ok(());
        }

        // Not running.
        if !wanted {
            self.set_placement(p, Vec::new());
            return Ok(());
        }
        match self.choose(p, None) {
            Ok((target, how)) => {
                let why = if self.pstate(p).error.is_some() {
                    format!("recovering from ERROR; {how}")
                } else if self.pstate(p).held_for.is_some() {
                    format!("{} is back; {how}", e.node_names[target])
                } else {
                    how
                };
                let ps = self.pstate_mut(p);
                ps.error = None;
                ps.held_for = None;
                self.reasons.insert(p, why);
                self.set_placement(p, vec![target]);
            }
            Err(rejected) => {
                if matches!(event, Event::PackageRun { package: named, .. } if *named == package.name)
                {
                    // `package run` that cannot be honoured is refused: nothing
                    // changes (an ERROR package stays in ERROR).
                    return Err(PlanError::NoTarget {
                        package: package.name.to_string(),
                        reasons: self.rejected_text(&rejected),
                    });
                }
                self.set_placement(p, Vec::new());
                if !self.members.iter().any(|&m| m) {
                    return Ok(());
                }
                let text = self.rejected_text(&rejected);
                let previously_error = self.pstate(p).error.is_some();
                let held = self.pstate(p).held_for.clone();
                match (previously_error, held, self.dependency_down(p)) {
                    (true, _, _) => {
                        self.note(Some(p), format!("still in ERROR: no eligible node: {text}"))
                    }
                    (false, Some(h), _) => self.note(Some(p), format!("waiting for {h} to return")),
                    (false, None, Some(d)) => self.note(
                        Some(p),
                        format!("not started: waiting for {d}, which is not up"),
                    ),
                    (false, None, None) => {
                        self.note(Some(p), format!("not started: no eligible node: {text}"))
                    }
                }
                self.wake_for_failures(p);
            }
        }
        Ok(())
    }

    /// The first package that `p` depends on and that is not up (in the
    /// placement decided so far).
    fn dependency_down(&self, p: usize) -> Option<PackageName> {
        self.e.dependencies[p]
            .iter()
            .find(|&&(d, _)| {
                if self.decided[d] {
                    self.desired[d].is_empty()
                } else {
                    self.current[d].is_empty()
                }
            })
            .map(|&(d, _)| self.e.packages[d].name.clone())
    }

    /// Why the package must leave its node, in words tied to the event.
    fn leave_reason(&self, p: usize, n: usize, reasons: &[Ineligible]) -> String {
        if let Some((leave_node, why)) = self.must_leave.get(&p)
            && *leave_node == n
        {
            return why.clone();
        }
        let name = self.e.node_names[n];
        let first = reasons
            .first()
            .map_or_else(String::new, ToString::to_string);
        match reasons.first() {
            Some(Ineligible::NotMember) => format!("{name} left the cluster"),
            Some(Ineligible::DependencyDown { .. }) => first,
            Some(Ineligible::DependencyHere { package }) => {
                format!("{package} comes to {name}, and the two must run on different nodes")
            }
            Some(Ineligible::DependencyElsewhere { package }) => {
                let placed = &self.desired[self.e.package_index[package.as_str()]];
                match placed.first() {
                    Some(&m) => format!(
                        "it follows {package}, which moves to {}",
                        self.e.node_names[m]
                    ),
                    None => format!("{package}, which it needs on the same node, stops"),
                }
            }
            _ => format!("{first} on {name}"),
        }
    }

    fn rejected_text(&self, rejected: &[(usize, Vec<Ineligible>)]) -> String {
        if rejected.is_empty() {
            return "the node list has no other node".to_owned();
        }
        rejected
            .iter()
            .map(|(n, r)| self.node_reasons(*n, r))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// A node and why it was passed over. The node the package leaves is named
    /// as such: why it leaves is already the first part of the reason.
    fn node_reasons(&self, n: usize, reasons: &[Ineligible]) -> String {
        let name = self.e.node_names[n];
        let shown: Vec<Ineligible> = reasons
            .iter()
            .filter(|r| !matches!(r, Ineligible::MustLeave { .. }))
            .cloned()
            .collect();
        if shown.is_empty() {
            format!("{name} is the node it leaves")
        } else {
            format!("{name} {}", join(&shown))
        }
    }

    /// Automatic failback: move to the (acting) primary node when it is eligible,
    /// at once or at the delayed fallback timer's next time.
    fn consider_failback(&mut self, p: usize, n: usize) {
        match self.failback(p, n) {
            Failback::No => {}
            Failback::Deferred { primary, at } => {
                let primary_name = self.e.node_names[primary];
                self.note(
                    Some(p),
                    format!(
                        "failback to {primary_name} deferred until {at} (delayed fallback timer)"
                    ),
                );
                self.wake(at);
            }
            Failback::Now { primary, why } => {
                self.reasons.insert(p, why);
                self.set_placement(p, vec![primary]);
            }
        }
    }

    /// Whether package `p`, on node `n`, fails back to its (acting) primary now, later
    /// (the delayed fallback timer), or not. Changes nothing: `explain` asks it too.
    fn failback(&self, p: usize, n: usize) -> Failback {
        let e = self.e;
        let package = e.packages[p];
        if package.failback_policy != FailbackPolicy::Automatic {
            return Failback::No;
        }
        let primary = self.primary(p);
        if primary == n || !self.ineligible(p, primary, false, false).is_empty() {
            return Failback::No;
        }
        // Failback is the answer to the primary becoming available again: a
        // package that was placed elsewhere while its primary was already
        // available (min_package_node at start, say) stays where it is.
        // When it is not known since when the primary is available (no node_up
        // recorded it), there is no return to answer.
        let Some(&available) = self.next.available_since.get(e.node_names[primary]) else {
            return Failback::No;
        };
        if self
            .pstate(p)
            .since
            .is_some_and(|placed| available <= placed)
        {
            return Failback::No;
        }
        let primary_name = e.node_names[primary];
        let mut why = format!(
            "automatic failback: {primary_name}, the {}primary node, is available",
            if self.pstate(p).acting_primary.is_some() {
                "acting "
            } else {
                ""
            }
        );
        if let Some(timer) = &package.fallback_timer {
            match timer::next_occurrence(timer, available) {
                Some(at) if at <= self.now => {
                    why.push_str(&format!(" and the fallback timer time {at} has come"));
                }
                Some(at) => return Failback::Deferred { primary, at },
                None => return Failback::No,
            }
        }
        Failback::Now { primary, why }
    }

    /// A package that could not be placed may become placeable when a failure
    /// expires: ask to be woken then.
    fn wake_for_failures(&mut self, p: usize) {
        let Some(expiry) = self.e.packages[p].failure_expiry else {
            return;
        };
        let Ok(expiry) = jiff::SignedDuration::try_from(expiry) else {
            return;
        };
        let now = self.now;
        let next = self
            .pstate(p)
            .failures
            .values()
            .filter_map(|at| at.checked_add(expiry).ok())
            .filter(|&until| until > now)
            .min();
        if let Some(at) = next {
            self.wake(at);
        }
    }

    fn place_multi(&mut self, p: usize) {
        let e = self.e;
        let wanted = self.wanted(p);
        let mut nodes = Vec::new();
        if wanted {
            for &n in &e.node_lists[p] {
                let staying = self.current[p].contains(&n);
                if self.ineligible(p, n, staying, false).is_empty() {
                    nodes.push(n);
                }
            }
            // An instance excluded by a failure returns when the failure expires.
            self.wake_for_failures(p);
        }
        self.set_placement(p, nodes);
    }

    /// Turns the decided placement into ordered steps and the new state.
    fn finish(mut self, event: &Event) -> Plan {
        let e = self.e;
        let mut halts: Vec<(usize, usize, ActionKind, String)> = Vec::new();
        let mut runs: Vec<(usize, usize, String)> = Vec::new();
        let mut released: BTreeSet<usize> = BTreeSet::new();
        // Packages that stopped with a failed node: no action carries their
        // reason, so a note must when they do not start elsewhere.
        let mut lost: Vec<(usize, usize, String)> = Vec::new();
        for p in 0..e.packages.len() {
            let package = e.packages[p];
            let before = &self.current[p];
            let after = &self.desired[p];
            if package.is_failover() {
                assert!(
                    after.len() <= 1,
                    "package {} placed on {} nodes",
                    package.name,
                    after.len()
                );
            }
            let reason = self.reasons.get(&p).cloned();
            for &n in before.iter().filter(|n| !after.contains(n)) {
                let why = self
                    .multi_halt_reason(p, n)
                    .or_else(|| reason.clone())
                    .unwrap_or_default();
                match self.failed_node {
                    Some((f, Departure::Failure)) if f == n => {
                        released.insert(n);
                        lost.push((p, n, why));
                    }
                    Some((f, Departure::Forced)) if f == n => {
                        halts.push((p, n, ActionKind::HaltForced, why));
                    }
                    _ => halts.push((p, n, ActionKind::Halt, why)),
                }
            }
            for &n in after.iter().filter(|n| !before.contains(n)) {
                let why = if package.is_failover() {
                    reason.clone().unwrap_or_default()
                } else {
                    format!("multi-node package: {} is eligible", e.node_names[n])
                };
                runs.push((p, n, why));
            }
            // `halcyon apply` changed its definition: where it stays, it halts with the old
            // definition and runs with the new one (a package that moves does both anyway).
            if let Event::ConfigChange { restart, .. } = event
                && restart.contains(&package.name)
            {
                for &n in after.iter().filter(|n| before.contains(n)) {
                    let why =
                        "its definition changed (halcyon apply): it runs again with the new one";
                    halts.push((p, n, ActionKind::Halt, why.to_owned()));
                    runs.push((p, n, why.to_owned()));
                }
            }
        }

        for (p, n, why) in lost {
            if runs.iter().any(|(q, ..)| *q == p) {
                continue;
            }
            let text = if e.packages[p].is_failover() {
                format!("stopped with {}: {why}", e.node_names[n])
            } else {
                format!("its instance on {} stopped: {why}", e.node_names[n])
            };
            self.note(Some(p), text);
        }

        // A failed node's failover packages may start elsewhere only once it has
        // certainly released them (lease expiry or fencing).
        let mut steps: Vec<Step> = Vec::new();
        let await_release: Vec<Action> = released
            .iter()
            .filter(|&&n| runs.iter().any(|(p, _, _)| e.packages[*p].is_failover() && self.current[*p].contains(&n)))
            .map(|&n| Action {
                kind: ActionKind::AwaitRelease,
                package: None,
                node: e.node_names[n].clone(),
                reason: format!(
                    "{} failed: its packages start elsewhere only after its lease has expired or it has been fenced",
                    e.node_names[n]
                ),
            })
            .collect();
        if !await_release.is_empty() {
            steps.push(Step {
                actions: await_release,
            });
        }
        if !self.swaps.is_empty() {
            steps.push(Step {
                actions: std::mem::take(&mut self.swaps),
            });
        }

        // Halts: a package halts after the packages that depend on it. Its
        // level is the length of the chain of halting dependents above it, so
        // the dependents (level 0) halt first and the bottom dependee last.
        let halting: BTreeSet<usize> = halts.iter().map(|(p, ..)| *p).collect();
        let halt_level = levels(&halting, |p| e.dependents[p].clone());
        let depth = halt_level.values().copied().max().unwrap_or(0);
        let mut halt_steps: Vec<Vec<Action>> =
            vec![Vec::new(); depth + usize::from(!halts.is_empty())];
        for (p, n, kind, why) in halts {
            halt_steps[halt_level[&p]].push(Action {
                kind,
                package: Some(e.packages[p].name.clone()),
                node: e.node_names[n].clone(),
                reason: why,
            });
        }
        // Runs: a package runs after the packages it depends on.
        let running: BTreeSet<usize> = runs.iter().map(|(p, ..)| *p).collect();
        let run_level = levels(&running, |p| {
            e.dependencies[p].iter().map(|(d, _)| *d).collect()
        });
        let run_depth = run_level.values().copied().max().unwrap_or(0);
        let mut run_steps: Vec<Vec<Action>> =
            vec![Vec::new(); run_depth + usize::from(!runs.is_empty())];
        for (p, n, why) in runs {
            run_steps[run_level[&p]].push(Action {
                kind: ActionKind::Run,
                package: Some(e.packages[p].name.clone()),
                node: e.node_names[n].clone(),
                reason: why,
            });
        }
        for mut actions in halt_steps.into_iter().chain(run_steps) {
            if actions.is_empty() {
                continue;
            }
            actions.sort_by(|a, b| (&a.package, &a.node).cmp(&(&b.package, &b.node)));
            steps.push(Step { actions });
        }
        // Packages removed from the configuration stop first of all.
        if !self.orphans.is_empty() {
            let actions = self
                .orphans
                .iter()
                .flat_map(|(name, nodes)| {
                    nodes.iter().map(move |n| Action {
                        kind: ActionKind::Halt,
                        package: Some(name.clone()),
                        node: n.clone(),
                        reason: "removed from the configuration".to_owned(),
                    })
                })
                .collect();
            steps.insert(0, Step { actions });
        }

        // The new state.
        let now = self.now;
        for p in 0..e.packages.len() {
            let nodes: BTreeSet<NodeName> = self.desired[p]
                .iter()
                .map(|&n| e.node_names[n].clone())
                .collect();
            let package = e.packages[p];
            let moved = self.desired[p] != self.current[p];
            let ps = self.pstate_mut(p);
            if moved {
                ps.since = (!nodes.is_empty()).then_some(now);
            }
            ps.nodes = nodes;
            if !ps.nodes.is_empty() {
                ps.error = None;
            }
            // Forget failures that have expired.
            if let Some(expiry) = package
                .failure_expiry
                .and_then(|d| jiff::SignedDuration::try_from(d).ok())
            {
                ps.failures
                    .retain(|_, at| at.checked_add(expiry).is_ok_and(|until| until > now));
            }
        }
        for (p, ps) in std::mem::take(&mut self.states).into_iter().enumerate() {
            self.next.packages.insert(e.packages[p].name.clone(), ps);
        }
        let plan = Plan {
            event: event.clone(),
            now,
            steps,
            state: self.next,
            notes: self.notes,
            wake_at: self.wake_at,
        };
        debug_assert!(
            plan.state.validate(e.config).is_ok(),
            "the engine produced an invalid state"
        );
        plan
    }

    fn multi_halt_reason(&self, p: usize, n: usize) -> Option<String> {
        if self.e.packages[p].is_failover() {
            return None;
        }
        if !self.wanted(p) {
            return Some("halted by the administrator".to_owned());
        }
        let reasons = self.ineligible(p, n, true, false);
        Some(self.leave_reason(p, n, &reasons))
    }

    fn explain(&self, p: usize) -> Explanation {
        let e = self.e;
        let package = e.packages[p];
        let ps = self.pstate(p);
        let current = &self.current[p];
        let mut summary = Vec::new();
        if !self.wanted(p) {
            summary.push(
                "package switching is disabled: it is not started or moved automatically"
                    .to_owned(),
            );
        }
        if let Some(err) = &ps.error {
            summary.push(format!(
                "in ERROR: {err}; it is retried when a node joins or a failure is cleared"
            ));
        }
        if let Some(h) = &ps.held_for {
            summary.push(format!("waiting for {h}, which was halted gracefully"));
        }
        if let Some(a) = &ps.acting_primary {
            summary.push(format!(
                "{a} is the acting primary node after a manual move"
            ));
        }
        if let [n] = current[..]
            && let Failback::Deferred { primary, at } = self.failback(p, n)
        {
            summary.push(format!(
                "failback to {} deferred until {at} (delayed fallback timer)",
                e.node_names[primary]
            ));
        }
        summary.push(format!(
            "type {}; failover policy {}; failback policy {}{}",
            package.package_type,
            match package.failover_policy {
                FailoverPolicy::ConfiguredNode => "configured_node",
                FailoverPolicy::MinPackageNode => "min_package_node",
            },
            match package.failback_policy {
                FailbackPolicy::Manual => "manual",
                FailbackPolicy::Automatic => "automatic",
            },
            if package.fallback_timer.is_some() {
                " (with delayed fallback timer)"
            } else {
                ""
            }
        ));
        let primary = if package.is_failover() {
            Some(self.primary(p))
        } else {
            None
        };
        let verdicts = (0..e.node_names.len())
            .map(|n| {
                let staying = current.contains(&n);
                let reasons = self.ineligible(p, n, staying, false);
                let mut notes = Vec::new();
                if staying {
                    notes.push("runs here now".to_owned());
                }
                if primary == Some(n) {
                    notes.push(if ps.acting_primary.is_some() {
                        "acting primary".to_owned()
                    } else {
                        "primary".to_owned()
                    });
                }
                if package.failover_policy == FailoverPolicy::MinPackageNode
                    && package.is_failover()
                    && self.members[n]
                {
                    notes.push(format!(
                        "runs {} package{}",
                        self.counts[n],
                        if self.counts[n] == 1 { "" } else { "s" }
                    ));
                }
                NodeVerdict {
                    node: e.node_names[n].clone(),
                    rank: (e.ranks[p][n] > 0).then_some(usize::from(e.ranks[p][n])),
                    eligible: reasons.is_empty(),
                    reasons,
                    notes,
                }
            })
            .collect();
        Explanation {
            package: package.name.clone(),
            status: ps.status(),
            nodes: ps.nodes.iter().cloned().collect(),
            summary,
            verdicts,
        }
    }
}

fn plural(count: u32) -> &'static str {
    if count == 1 { "" } else { "s" }
}

fn join(reasons: &[Ineligible]) -> String {
    reasons
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Longest chain length (0-based) within `set` along `edges` (which point at
/// packages that must act first).
fn levels(set: &BTreeSet<usize>, edges: impl Fn(usize) -> Vec<usize>) -> BTreeMap<usize, usize> {
    fn visit(
        p: usize,
        set: &BTreeSet<usize>,
        edges: &dyn Fn(usize) -> Vec<usize>,
        memo: &mut BTreeMap<usize, usize>,
        depth: usize,
    ) -> usize {
        if let Some(&l) = memo.get(&p) {
            return l;
        }
        // Bounded by the number of packages: configurations are acyclic.
        let level = if depth > set.len() {
            0
        } else {
            edges(p)
                .into_iter()
                .filter(|q| set.contains(q))
                .map(|q| visit(q, set, edges, memo, depth + 1) + 1)
                .max()
                .unwrap_or(0)
        };
        memo.insert(p, level);
        level
    }
    let mut memo = BTreeMap::new();
    for &p in set {
        visit(p, set, &edges, &mut memo, 0);
    }
    memo
}
