//! The event being processed: the policy engine's plan carried out through the event's
//! recovery program.
//!
//! An event's [`Execution`] holds two things that advance together, both only through
//! committed commands:
//!
//! - the recovery program's [`Progress`] (segments, barriers, ERROR, recovery and
//!   notify commands): every [`Launch`] it hands out is recorded in
//!   [`Execution::launches`] until its node reports it done (`LaunchDone`);
//! - the plan's actions: each is done once (`ActionDone`, from its node, or from the
//!   coordinator for `AwaitRelease` and for the actions of a node whose lease has
//!   certainly expired).
//!
//! A built-in command (`halcyon:release`, `halcyon:acquire`, `halcyon:swap_adapter`,
//! see `halcyon_events::builtin`) is not run as a process: launching it on a node lets
//! that node carry out its share of the plan, and it completes when every action of
//! that share is done. It fails (status 1) when a halt or an adapter swap failed: the
//! event stops in ERROR at that barrier and nothing after it starts (a package whose
//! halt failed may still run, so it must not start elsewhere) until the administrator
//! answers. A failed run does not fail the command: the package fails on that node
//! (`package_failed`) and the policy engine places it again.
//!
//! An action may be carried out when the actions it depends on are done — a halt after
//! the halts of earlier steps (dependents first), a run after every action of earlier
//! steps (the failed node's release, the halts, the package's dependencies) — and when
//! the program lets it: its node's built-in command for it is running, or no built-in
//! command for it is left to run (the node was abandoned, or the program was skipped).
//! So the plan's order holds whatever the program adds around it, and a skipped program
//! still leaves the cluster state true.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use halcyon_config::{Config, NodeName, PackageName};
use halcyon_events::{
    Builtin, CommandState, EventContext, Launch, LaunchKind, Progress, Rules, expand,
    render_segments,
};
use halcyon_policy::{Action, ActionKind, Departure, Event, Plan};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The plan being carried out through the event's recovery program.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    /// The id of its event-log record.
    pub id: u64,
    pub plan: Plan,
    /// Plan actions done: (step, index).
    pub done: BTreeSet<(usize, usize)>,
    /// Plan actions done that failed: (step, index).
    pub failed: BTreeSet<(usize, usize)>,
    /// `Run` actions that failed: (package, node), failed once the plan completes.
    pub run_failures: Vec<(PackageName, NodeName)>,
    pub progress: Progress,
    /// What every command's environment is made from.
    pub context: EventContext,
    /// Launches handed out and not finished yet, by launch number.
    pub launches: BTreeMap<u64, Launch>,
    /// After this long a warning is logged and notified (once).
    pub max_duration: Duration,
    pub started_at: Timestamp,
    /// Nodes whose release an administrator let go without a fence after fencing them
    /// failed (`event skip`): their `AwaitRelease` waits for the lease only.
    #[serde(default)]
    pub fence_waived: BTreeSet<NodeName>,
}

/// How a launch ended, as its node reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchReport {
    pub status: i32,
    pub output: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
}

impl Execution {
    /// The execution of `plan` for `event` through `rules`; `None` when the event has no
    /// program (a user-defined event without a rule), with the reason.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: u64,
        config: &Config,
        rules: &Rules,
        plan: Plan,
        members_before: &BTreeSet<NodeName>,
        sample: Option<halcyon_events::Sample>,
        at: Timestamp,
    ) -> Result<Execution, String> {
        let event = &plan.event;
        let state = match event {
            Event::NodeDown { how, .. } => Some(how.to_string()),
            _ => None,
        };
        let resolved = rules
            .resolve(
                event.name(),
                state.as_deref(),
                &config.cluster.events,
                &config.cluster.limits,
            )
            .ok_or_else(|| {
                format!(
                    "no rule for the user-defined event \"{}\": add an [[event]] with a program to the rules file",
                    event.name()
                )
            })?;
        let members = participants(config, event, members_before, &plan);
        let event_node = event.node().cloned();
        let segments = expand(&resolved.program, event_node.as_ref(), &members);
        let mut context = EventContext::for_event(config, event, members, at);
        context.sample = sample;
        Ok(Execution {
            id,
            plan,
            done: BTreeSet::new(),
            failed: BTreeSet::new(),
            run_failures: Vec::new(),
            progress: Progress::new(segments, resolved.options),
            context,
            launches: BTreeMap::new(),
            max_duration: resolved.max_duration,
            started_at: at,
            fence_waived: BTreeSet::new(),
        })
    }

    /// True while an `AwaitRelease` of `node` is still open.
    pub fn awaits_release_of(&self, node: &str) -> bool {
        self.open_actions()
            .iter()
            .any(|(_, _, a)| a.kind == ActionKind::AwaitRelease && a.node.as_str() == node)
    }

    /// True when the plan starts a package that requires a fence of a node it is taken
    /// from (`requires = "fencing"`) and `node` is in its node list: its `AwaitRelease`
    /// then waits for a confirmed fence as well as the lease.
    pub fn needs_fence_of(&self, config: &Config, node: &str) -> bool {
        !self.fence_waived.contains(node)
            && self.plan.steps.iter().flat_map(|s| &s.actions).any(|a| {
                a.kind == ActionKind::Run
                    && a.package
                        .as_ref()
                        .and_then(|p| config.package(p.as_str()))
                        .is_some_and(|p| {
                            p.requires == halcyon_config::Requires::Fencing
                                && p.node_rank(node).is_some()
                        })
            })
    }

    /// The program's segments as an administrator reads them.
    pub fn program_text(&self) -> String {
        render_segments(self.progress.segments())
    }

    pub fn action(&self, step: usize, index: usize) -> Option<&Action> {
        self.plan.steps.get(step)?.actions.get(index)
    }

    /// Every action not done yet: (step, index, action).
    pub fn open_actions(&self) -> Vec<(usize, usize, &Action)> {
        self.plan
            .steps
            .iter()
            .enumerate()
            .flat_map(|(step, s)| {
                s.actions
                    .iter()
                    .enumerate()
                    .map(move |(index, a)| (step, index, a))
            })
            .filter(|(step, index, _)| !self.done.contains(&(*step, *index)))
            .collect()
    }

    /// Whether the actions `(step, index)` depends on are done (see the module
    /// documentation).
    pub fn dependencies_done(&self, step: usize, index: usize) -> bool {
        let Some(action) = self.action(step, index) else {
            return false;
        };
        let is_halt = |k: &ActionKind| matches!(k, ActionKind::Halt | ActionKind::HaltForced);
        self.plan.steps[..step]
            .iter()
            .enumerate()
            .all(|(s, earlier)| {
                earlier.actions.iter().enumerate().all(|(i, a)| {
                    let needed = match &action.kind {
                        ActionKind::Run => true,
                        k if is_halt(k) => is_halt(&a.kind),
                        _ => false,
                    };
                    !needed || self.done.contains(&(s, i))
                })
            })
    }

    /// Whether the program lets `(step, index)` be carried out: its node's built-in
    /// command for it is running, or none is left to run.
    pub fn released_by_program(&self, step: usize, index: usize) -> bool {
        let Some(action) = self.action(step, index) else {
            return false;
        };
        let running = self.launches.values().any(|l| {
            l.node.as_ref() == Some(&action.node)
                && matches!(l.kind, LaunchKind::Command { .. })
                && Builtin::parse(&l.command).is_some_and(|b| b.covers(&action.kind))
        });
        if running {
            return true;
        }
        let states = self.progress.command_states();
        let waiting = self
            .progress
            .segments()
            .iter()
            .zip(states)
            .any(|(segment, states)| {
                segment.invocations.iter().zip(states).any(|(inv, state)| {
                    inv.node == action.node
                        && Builtin::parse(&inv.command).is_some_and(|b| b.covers(&action.kind))
                        && !matches!(
                            state,
                            CommandState::Succeeded { .. }
                                | CommandState::Failed { .. }
                                | CommandState::Abandoned { .. }
                        )
                })
            });
        !waiting || self.progress.is_finished()
    }

    /// The actions a node may carry out now (the coordinator's `AwaitRelease`
    /// included): not done, dependencies done, released by the program.
    pub fn ready_actions(&self) -> Vec<(usize, usize, &Action)> {
        self.open_actions()
            .into_iter()
            .filter(|(step, index, _)| {
                self.dependencies_done(*step, *index) && self.released_by_program(*step, *index)
            })
            .collect()
    }

    /// The actions of `builtin` on `node`: (step, index).
    fn share(&self, builtin: Builtin, node: &NodeName) -> Vec<(usize, usize)> {
        self.plan
            .steps
            .iter()
            .enumerate()
            .flat_map(|(step, s)| {
                s.actions
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| &a.node == node && builtin.covers(&a.kind))
                    .map(move |(index, _)| (step, index))
            })
            .collect()
    }

    /// Launches of built-in commands whose share of the plan is done: (launch, node,
    /// status, output). Status 1 when a halt or an adapter swap failed.
    pub(crate) fn finished_builtins(
        &self,
        details: &BTreeMap<(usize, usize), String>,
    ) -> Vec<(u64, NodeName, i32, String)> {
        let mut out = Vec::new();
        for (launch, l) in &self.launches {
            let (Some(node), Some(builtin)) = (&l.node, Builtin::parse(&l.command)) else {
                continue;
            };
            if !matches!(l.kind, LaunchKind::Command { .. }) {
                continue;
            }
            let share = self.share(builtin, node);
            if !share.iter().all(|k| self.done.contains(k)) {
                continue;
            }
            let mut status = 0;
            let mut lines = Vec::new();
            for key in &share {
                let action = self.action(key.0, key.1).expect("in the plan");
                let failed = self.failed.contains(key);
                if failed && action.kind != ActionKind::Run {
                    status = 1;
                }
                let what = match &action.package {
                    Some(p) => format!("{} {p}", action.kind),
                    None => action.kind.to_string(),
                };
                let detail = details.get(key).map_or("", String::as_str);
                lines.push(format!(
                    "{what}: {}{}",
                    if failed { "FAILED" } else { "ok" },
                    if detail.is_empty() {
                        String::new()
                    } else {
                        format!(": {detail}")
                    }
                ));
            }
            if lines.is_empty() {
                lines.push("nothing to do on this node".to_owned());
            }
            out.push((*launch, node.clone(), status, lines.join("\n")));
        }
        out
    }

    /// A built-in command launched (again, after a recovery or a retry): its failed
    /// halts and swaps are to be carried out again.
    pub(crate) fn reopen_share(&mut self, launch: &Launch) {
        let (Some(node), Some(builtin)) = (&launch.node, Builtin::parse(&launch.command)) else {
            return;
        };
        for key in self.share(builtin, node) {
            let is_run = self
                .action(key.0, key.1)
                .is_some_and(|a| a.kind == ActionKind::Run);
            if !is_run && self.failed.remove(&key) {
                self.done.remove(&key);
            }
        }
    }

    /// Every node with a command still to run or finish.
    pub fn nodes_with_unfinished_commands(&self) -> Vec<NodeName> {
        self.context
            .members
            .iter()
            .filter(|n| self.progress.has_unfinished(n))
            .cloned()
            .collect()
    }

    /// The program is over and every action and launch is done.
    pub fn is_complete(&self) -> bool {
        self.progress.is_finished() && self.launches.is_empty() && self.open_actions().is_empty()
    }
}

/// The nodes that run the event's program, in node number order: the members before
/// the event and after it (a joining node takes part), except a node that failed (it
/// runs nothing; a node leaving gracefully releases its packages).
fn participants(
    config: &Config,
    event: &Event,
    members_before: &BTreeSet<NodeName>,
    plan: &Plan,
) -> Vec<NodeName> {
    let failed = match event {
        Event::NodeDown {
            node,
            how: Departure::Failure,
        } => Some(node),
        _ => None,
    };
    let mut nodes: Vec<(u32, NodeName)> = config
        .cluster
        .nodes
        .iter()
        .filter(|n| members_before.contains(&n.name) || plan.state.members.contains(&n.name))
        .filter(|n| Some(&n.name) != failed)
        .map(|n| (n.number, n.name.clone()))
        .collect();
    nodes.sort();
    nodes.into_iter().map(|(_, n)| n).collect()
}

/// What an event would do (`halcyon emulate`): the policy engine's plan and the
/// recovery program it would run, command by command, with each built-in command's
/// share of the plan. Changes nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Emulation {
    pub plan: Plan,
    /// The participants, in node number order.
    pub participants: Vec<NodeName>,
    /// The program as it would run (segments, barriers, built-in shares).
    pub program: String,
    /// The variables every command would get.
    pub environment: Vec<(String, String)>,
}

/// Emulates `event` on `cluster` at `now` with `rules` (see [`Emulation`]).
pub fn emulate(
    config: &Config,
    rules: &Rules,
    cluster: &halcyon_policy::ClusterState,
    event: &Event,
    now: Timestamp,
) -> Result<Emulation, String> {
    let plan = halcyon_policy::Engine::new(config)
        .plan(cluster, event, now)
        .map_err(|e| format!("{event}: refused: {e}"))?;
    let execution = Execution::new(0, config, rules, plan, &cluster.members, None, now)?;
    let mut program = String::new();
    let segments = execution.progress.segments();
    for (i, segment) in segments.iter().enumerate() {
        program.push_str(&format!("segment {}:\n", i + 1));
        if segment.invocations.is_empty() {
            program.push_str("  (no command)\n");
        }
        for inv in &segment.invocations {
            program.push_str(&format!(
                "  {}: \"{}\" {}",
                inv.node, inv.command, inv.expected
            ));
            if let Some(builtin) = Builtin::parse(&inv.command) {
                let share: Vec<String> = execution
                    .share(builtin, &inv.node)
                    .into_iter()
                    .filter_map(|(s, x)| execution.action(s, x))
                    .map(|a| match &a.package {
                        Some(p) => format!("{} {p}", a.kind),
                        None => a.kind.to_string(),
                    })
                    .collect();
                if share.is_empty() {
                    program.push_str("   -> nothing to do");
                } else {
                    program.push_str(&format!("   -> {}", share.join(", ")));
                }
            }
            program.push('\n');
        }
        if i + 1 == segments.len() {
            program.push_str("end barrier\n");
        } else {
            program.push_str(&format!("barrier {}\n", i + 1));
        }
    }
    let environment = halcyon_events::environment(&execution.context);
    Ok(Emulation {
        participants: execution.context.members.clone(),
        plan: execution.plan,
        program,
        environment,
    })
}

impl Emulation {
    /// The plan, then the program, as an administrator reads them.
    pub fn render(&self) -> String {
        self.render_with(&halcyon_policy::rfc3339)
    }

    /// [`Emulation::render`] with the times as `time` writes them (the CLI: local time).
    pub fn render_with(&self, time: halcyon_policy::TimeText<'_>) -> String {
        let mut out = halcyon_policy::render_with(&self.plan, time);
        let names: Vec<&str> = self.participants.iter().map(NodeName::as_str).collect();
        out.push_str(&format!(
            "\nRecovery program (participants: {}):\n{}",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            },
            self.program
        ));
        out
    }
}
