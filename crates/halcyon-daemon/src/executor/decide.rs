//! The executor's decisions, without I/O: what this node must do now, given the replicated
//! view, what runs here and what is already under way.
//!
//! The runtime (`Node::executor_loop`) calls [`decide`] whenever the view changes and
//! carries out the [`LocalAction`]s it returns: plan actions and event commands in tasks of
//! their own, reconciliation in order. Everything [`decide`] reads is in [`Input`]; it
//! reads no clock, does no I/O and draws no random numbers, so the scenario files in
//! `tests/executor/` pin every decision down.
//!
//! Invariants (asserted):
//! - a failover package is started (plan `Run` or reconciliation) only while this node
//!   holds a lease and its replica has applied what the last grant confirmed (`fresh`):
//!   a replica still catching up may show a step or a placement the cluster has moved
//!   past (seed 547 of the simulation);
//! - a failover package is started by reconciliation only when the view places it on
//!   this node and on no other (the executor's half of the policy engine's assertion);
//! - an action or a launch is handed out at most once while it is in flight.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use halcyon_config::{Config, NetworkName, NodeName, PackageName};
use halcyon_events::{Builtin, Launch};
use halcyon_policy::ActionKind;
use halcyon_resources::StopMode;
use halcyon_state::{Execution, State};

/// A plan action: (execution, step, index).
pub type ActionKey = (u64, usize, usize);
/// An event command: (execution, launch).
pub type LaunchKey = (u64, u64);

/// Longest a program command may run before its process group is killed (status 124);
/// the event's maximum duration warns long before.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(24 * 3600);

/// What the executor remembers between decisions (owned by the executor).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// Packages that failed here (restarts exhausted, or start failed): not restarted by
    /// reconciliation until the view no longer places them here.
    pub failed_here: BTreeSet<PackageName>,
    /// Plan actions being carried out here. An action stays in flight until this
    /// replica has applied its report: the leader may answer before this replica applies
    /// it, and the action must not run twice meanwhile.
    pub in_flight: BTreeSet<ActionKey>,
    /// Event commands running here, kept until this replica no longer lists the launch.
    pub launches_in_flight: BTreeSet<LaunchKey>,
    /// Packages a plan action is starting here (its task runs; kept until the start ended,
    /// started or failed). Neither reconciliation nor another plan's `run` starts them
    /// meanwhile: the action's execution may end (or another begin) while its start is still
    /// under way, and a second start of the same package here is a second instance of it
    /// (the simulator's `--apply` seed 6 found one, session 12).
    pub starting: BTreeSet<PackageName>,
}

/// Everything a decision reads.
pub struct Input<'a> {
    /// This node.
    pub node: &'a NodeName,
    /// The replicated view (its configuration applied).
    pub state: &'a State,
    pub config: &'a Config,
    /// Raft's applied index, read before the view was taken (blank and membership entries
    /// count: a new leader's blank entry never reaches the state machine, seed 5).
    pub raft_applied: u64,
    /// The highest log index a lease grant said was committed when it was granted.
    pub confirmed: u64,
    /// A lease is held and the guard protects it.
    pub lease_valid: bool,
    /// This node leads (and is not isolated): it runs the coordinator's commands (notify).
    pub leader: bool,
    /// Packages running (or stopping) here, with whether each is a failover package.
    pub running: &'a BTreeMap<PackageName, bool>,
}

/// What a plan action asks of this node's package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum What {
    Run,
    Stop(StopMode),
    /// Local LAN failover: the package's addresses on this network move to a standby.
    SwapAdapter(NetworkName),
}

/// One thing the executor must do.
#[derive(Clone, Debug, PartialEq)]
pub enum LocalAction {
    /// Carry out a plan action of the current execution and report it.
    Act {
        key: ActionKey,
        package: PackageName,
        what: What,
    },
    /// Run an event command handed out to this node (or, `node = None`, to the coordinator).
    Launch {
        key: LaunchKey,
        launch: Launch,
        env: Vec<(String, String)>,
        limit: Duration,
    },
    /// Reconciliation: runs here but the view places it elsewhere.
    Halt { package: PackageName },
    /// Reconciliation: the view places it here and it does not run.
    Start { package: PackageName },
}

/// The decision for this view; `memory` learns what was handed out and forgets what the
/// view shows finished.
pub fn decide(input: &Input<'_>, memory: &mut Memory) -> Vec<LocalAction> {
    let fresh = input.raft_applied >= input.confirmed;
    match &input.state.execution() {
        Some(execution) => {
            let mut actions = launches(input, execution, memory);
            actions.extend(plan_actions(input, execution, fresh, memory));
            actions
        }
        None => reconcile(input, fresh, memory),
    }
}

/// The launches of `execution` handed out to this node and not yet running here.
fn launches(input: &Input<'_>, execution: &Execution, memory: &mut Memory) -> Vec<LocalAction> {
    memory
        .launches_in_flight
        .retain(|(e, l)| *e == execution.id && execution.launches.contains_key(l));
    let mut actions = Vec::new();
    for launch in execution.launches.values() {
        // Built-in commands are not processes: they let this node carry out its share of
        // the plan (the actions below).
        if Builtin::parse(&launch.command).is_some() {
            continue;
        }
        let mine = match &launch.node {
            Some(node) => node == input.node,
            None => input.leader,
        };
        let key = (execution.id, launch.launch);
        if !mine || !memory.launches_in_flight.insert(key) {
            continue;
        }
        let limit = if launch.node.is_none() {
            execution.max_duration
        } else {
            COMMAND_LIMIT
        };
        let mut env = halcyon_events::environment(&execution.context);
        env.extend(launch.env.iter().cloned());
        env.push(("HALCYON_NODE".to_owned(), input.node.to_string()));
        actions.push(LocalAction::Launch {
            key,
            launch: launch.clone(),
            env,
            limit,
        });
    }
    actions
}

/// The ready plan actions on this node that are not in flight; those that start something
/// of a failover package wait for a lease and a fresh replica.
fn plan_actions(
    input: &Input<'_>,
    execution: &Execution,
    fresh: bool,
    memory: &mut Memory,
) -> Vec<LocalAction> {
    memory.in_flight.retain(|(e, step, index)| {
        *e == execution.id && !execution.done.contains(&(*step, *index))
    });
    let mut actions = Vec::new();
    for (step, index, action) in execution.ready_actions() {
        if action.node != *input.node {
            continue;
        }
        let Some(package) = action.package.clone() else {
            continue;
        };
        let what = match &action.kind {
            ActionKind::Run => What::Run,
            ActionKind::Halt => What::Stop(StopMode::Graceful),
            ActionKind::HaltForced => What::Stop(StopMode::Immediate),
            ActionKind::SwapAdapter { network } => What::SwapAdapter(network.clone()),
            ActionKind::AwaitRelease => continue,
        };
        let failover = input
            .config
            .package(package.as_str())
            .is_some_and(|p| p.is_failover());
        let needs_lease = !matches!(what, What::Stop(_));
        if needs_lease && failover && !(fresh && input.lease_valid) {
            continue; // no lease, or not caught up: wait
        }
        if what == What::Run && memory.starting.contains(&package) {
            continue; // an earlier start of it is under way here: once it ended, it runs
        }
        let key = (execution.id, step, index);
        if !memory.in_flight.insert(key) {
            continue;
        }
        actions.push(LocalAction::Act { key, package, what });
    }
    actions
}

/// With no plan running: halt what runs here and is placed elsewhere, start what is placed
/// here and does not run (a failover package only with a lease and a fresh replica, and
/// never one that failed here).
fn reconcile(input: &Input<'_>, fresh: bool, memory: &mut Memory) -> Vec<LocalAction> {
    let placed: BTreeSet<&PackageName> = input
        .state
        .cluster()
        .packages
        .iter()
        .filter(|(_, p)| p.nodes.contains(input.node))
        .map(|(n, _)| n)
        .collect();
    memory.failed_here.retain(|p| placed.contains(p));
    let mut actions: Vec<LocalAction> = input
        .running
        .keys()
        .filter(|p| !placed.contains(p))
        .map(|p| LocalAction::Halt { package: p.clone() })
        .collect();
    let lease = input.lease_valid && fresh;
    for package in placed {
        if input.running.contains_key(package)
            || memory.failed_here.contains(package)
            || memory.starting.contains(package)
        {
            continue;
        }
        let failover = input
            .config
            .package(package.as_str())
            .is_some_and(|p| p.is_failover());
        if failover {
            if !lease {
                continue;
            }
            let nodes = &input.state.cluster().packages[package].nodes;
            assert!(
                nodes.len() == 1,
                "failover package {package} placed on {nodes:?}: never on two nodes"
            );
        }
        actions.push(LocalAction::Start {
            package: package.clone(),
        });
    }
    actions
}

/// One line per action, for logs and scenario files.
pub fn render(action: &LocalAction) -> String {
    match action {
        LocalAction::Act { key, package, what } => {
            let what = match what {
                What::Run => "run".to_owned(),
                What::Stop(StopMode::Graceful) => "halt".to_owned(),
                What::Stop(StopMode::Immediate) => "halt (immediate)".to_owned(),
                What::SwapAdapter(network) => {
                    format!("move the addresses on {network} to a standby interface:")
                }
            };
            format!("act {}/{}/{}: {what} {package}", key.0, key.1, key.2)
        }
        LocalAction::Launch {
            key, launch, limit, ..
        } => format!(
            "launch {}/{}: {} (limit {})",
            key.0,
            key.1,
            launch.command,
            humantime::format_duration(*limit)
        ),
        LocalAction::Halt { package } => format!("halt {package} (placed elsewhere)"),
        LocalAction::Start { package } => format!("start {package} (placed here)"),
    }
}
