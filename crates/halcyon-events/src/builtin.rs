//! Built-in events and their default recovery programs.
//!
//! The policy engine's plan is carried out by *built-in commands*, written in a
//! recovery program like any other command so that administrators can add their own
//! lines before, between and after them:
//!
//! | command                | runs, on the node where the line runs                                 |
//! | ---------------------- | --------------------------------------------------------------------- |
//! | `halcyon:release`      | the plan's `halt` and forced `halt` actions for that node             |
//! | `halcyon:acquire`      | the plan's `run` actions for that node, each only once the plan's `await release` for the old owner is satisfied (lease expired or fenced) |
//! | `halcyon:swap_adapter` | the plan's `swap adapter` actions for that node                       |
//!
//! A node with no such action in the plan completes the command at once with status 0.
//! The programs of built-in events must keep their built-in lines (same node sets, in
//! the same order, separated by barriers): a rules entry may replace the program or
//! wrap it (`before`, `after`), but not drop the policy engine's actions.

use halcyon_config::NodeName;
use halcyon_policy::{Action, ActionKind, Plan};

use crate::program::{Line, Program};

/// The prefix of built-in commands.
pub const BUILTIN_PREFIX: &str = "halcyon:";

/// A built-in command: a share of the policy engine's plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    Release,
    Acquire,
    SwapAdapter,
}

impl Builtin {
    pub const ALL: [Builtin; 3] = [Builtin::Release, Builtin::Acquire, Builtin::SwapAdapter];

    /// The command as written in a program.
    pub fn command(self) -> &'static str {
        match self {
            Builtin::Release => "halcyon:release",
            Builtin::Acquire => "halcyon:acquire",
            Builtin::SwapAdapter => "halcyon:swap_adapter",
        }
    }

    /// The built-in named by a command, if it is one.
    pub fn parse(command: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.command() == command)
    }

    /// Whether a plan action belongs to this built-in.
    pub fn covers(self, kind: &ActionKind) -> bool {
        match self {
            Builtin::Release => matches!(kind, ActionKind::Halt | ActionKind::HaltForced),
            Builtin::Acquire => matches!(kind, ActionKind::Run),
            Builtin::SwapAdapter => matches!(kind, ActionKind::SwapAdapter { .. }),
        }
    }

    /// The plan's actions this built-in carries out on `node`, with their step
    /// numbers (0-based), in plan order.
    pub fn actions<'p>(self, plan: &'p Plan, node: &NodeName) -> Vec<(usize, &'p Action)> {
        plan.steps
            .iter()
            .enumerate()
            .flat_map(|(step, s)| s.actions.iter().map(move |a| (step, a)))
            .filter(|(_, a)| &a.node == node && self.covers(&a.kind))
            .collect()
    }
}

/// The built-in events (every name `halcyon_policy::Event::name` gives, except
/// user-defined events).
pub const BUILTIN_EVENTS: &[&str] = &[
    "cluster_start",
    "cluster_halt",
    "node_up",
    "node_down",
    "network_up",
    "network_down",
    "swap_adapter",
    "fail_standby",
    "join_standby",
    "package_failed",
    "package_run",
    "package_halt",
    "package_move",
    "package_enable",
    "package_disable",
    "package_clear",
    "config_change",
    "timer",
];

/// State qualifiers a built-in event may have in the rules file.
pub fn builtin_states(event: &str) -> &'static [&'static str] {
    match event {
        "node_down" => &["failure", "graceful", "graceful_takeover", "forced"],
        _ => &[],
    }
}

pub fn is_builtin(event: &str) -> bool {
    BUILTIN_EVENTS.contains(&event)
}

const RELEASE_THEN_ACQUIRE: &str = "\
# Members release what the plan takes off them, then the plan's packages start.
all \"halcyon:release\" 0
barrier
all \"halcyon:acquire\" 0
";

const NODE_UP: &str = "\
# node_up: the members release what the joining node takes over (for example a
# package falling back to it); then the packages start where the plan places them,
# the joining node included.
all \"halcyon:release\" 0
barrier
all \"halcyon:acquire\" 0
";

const NODE_DOWN: &str = "\
# node_down: a node leaving gracefully releases its packages (a failed node is no
# member: it runs nothing); then the other members take over.
all \"halcyon:release\" 0
barrier
other \"halcyon:acquire\" 0
";

const SWAP_ADAPTER: &str = "\
# swap_adapter: the event node moves its addresses to the standby interface; then
# the packages the plan moves are released and started.
event \"halcyon:swap_adapter\" 0
barrier
all \"halcyon:release\" 0
barrier
all \"halcyon:acquire\" 0
";

const CLUSTER_HALT: &str = "\
# cluster_halt: every member halts its packages.
all \"halcyon:release\" 0
";

/// The default program's text for a built-in event (`None` for other names).
pub fn default_program_text(event: &str) -> Option<&'static str> {
    if !is_builtin(event) {
        return None;
    }
    Some(match event {
        "node_up" => NODE_UP,
        "node_down" => NODE_DOWN,
        "swap_adapter" => SWAP_ADAPTER,
        "cluster_halt" => CLUSTER_HALT,
        _ => RELEASE_THEN_ACQUIRE,
    })
}

/// The default program for a built-in event (`None` for other names).
pub fn default_program(event: &str) -> Option<Program> {
    let text = default_program_text(event)?;
    let program = Program::parse(std::path::Path::new("<default>"), text);
    Some(program.expect("default programs parse (tested)"))
}

/// The built-in lines of a program with the segment each is in.
fn builtin_lines(program: &Program) -> Vec<(usize, String)> {
    let mut segment = 0;
    let mut out = Vec::new();
    for line in &program.lines {
        match line {
            Line::Barrier => segment += 1,
            Line::Command(c) if c.command.starts_with(BUILTIN_PREFIX) => out.push((
                segment,
                format!("{} \"{}\" {}", c.node_set, c.command, c.expected),
            )),
            Line::Command(_) => {}
        }
    }
    out
}

/// Checks that a program for built-in event `event` keeps the default program's
/// built-in lines, in order and separated by barriers. The error says what is
/// wrong.
pub(crate) fn check_keeps_builtins(event: &str, program: &Program) -> Result<(), String> {
    let Some(default) = default_program(event) else {
        return Ok(());
    };
    let want: Vec<String> = builtin_lines(&default).into_iter().map(|l| l.1).collect();
    let have = builtin_lines(program);
    let have_lines: Vec<&str> = have.iter().map(|l| l.1.as_str()).collect();
    if want != have_lines {
        let found = if have_lines.is_empty() {
            "none".to_owned()
        } else {
            have_lines.join(", ")
        };
        return Err(format!(
            "does not keep the built-in lines of {event} (found: {found})"
        ));
    }
    if have.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(format!(
            "runs built-in lines of {event} without a barrier between them"
        ));
    }
    Ok(())
}

/// The built-in lines a program of `event` must keep, as written.
pub(crate) fn required_builtins(event: &str) -> String {
    let Some(default) = default_program(event) else {
        return String::new();
    };
    builtin_lines(&default)
        .into_iter()
        .map(|l| l.1)
        .collect::<Vec<_>>()
        .join(", barrier, ")
}

#[cfg(test)]
mod tests {

    /// `halcyon-config` cannot depend on this crate, so it keeps its own list of the event
    /// kinds a webhook may name: the built-in events, `user`, `error`, the recorded
    /// `node_restart`, `node_fence` and `voter_change` (no program runs for them, so they are no built-in
    /// events), and the notifications `event_too_long`, `quorum_lost` and
    /// `quorum_regained`, no more.
    #[test]
    fn the_webhook_event_kinds_are_the_built_in_events_and_user_error_and_the_records() {
        let mut expected: Vec<&str> = BUILTIN_EVENTS.to_vec();
        expected.extend([
            "user",
            "error",
            "node_restart",
            "node_fence",
            "voter_change",
            "event_too_long",
            "quorum_lost",
            "quorum_regained",
        ]);
        let mut named: Vec<&str> = halcyon_config::WEBHOOK_EVENTS.to_vec();
        expected.sort_unstable();
        named.sort_unstable();
        assert_eq!(named, expected);
    }
    use super::*;
    use halcyon_policy::{Departure, Event};

    #[test]
    fn every_builtin_event_has_a_default_program() {
        for name in BUILTIN_EVENTS {
            let program = default_program(name).expect("a default");
            assert!(check_keeps_builtins(name, &program).is_ok(), "{name}");
        }
        assert!(default_program("UE_PGMRWHO_DOWN").is_none());
    }

    #[test]
    fn builtin_events_match_the_policy_engines_names() {
        let node = NodeName::from("n1");
        let network = halcyon_config::NetworkName::from("net1");
        let package = halcyon_config::PackageName::from("p");
        let events = [
            Event::ClusterStart,
            Event::ClusterHalt,
            Event::NodeUp { node: node.clone() },
            Event::NodeDown {
                node: node.clone(),
                how: Departure::Failure,
            },
            Event::NetworkUp {
                node: node.clone(),
                network: network.clone(),
            },
            Event::NetworkDown {
                node: node.clone(),
                network: network.clone(),
            },
            Event::SwapAdapter {
                node: node.clone(),
                network: network.clone(),
            },
            Event::FailStandby {
                node: node.clone(),
                network: network.clone(),
            },
            Event::JoinStandby {
                node: node.clone(),
                network,
            },
            Event::PackageFailed {
                package: package.clone(),
                node,
            },
            Event::PackageRun {
                package: package.clone(),
                node: None,
            },
            Event::PackageHalt {
                package: package.clone(),
                node: None,
            },
            Event::PackageMove {
                package: package.clone(),
                node: None,
            },
            Event::PackageEnable {
                package: package.clone(),
                node: None,
            },
            Event::PackageDisable {
                package: package.clone(),
                node: None,
            },
            Event::PackageClear {
                package,
                node: None,
            },
            Event::ConfigChange {
                generation: 0,
                restart: Default::default(),
            },
            Event::Timer,
        ];
        let names: Vec<&str> = events.iter().map(Event::name).collect();
        assert_eq!(names, BUILTIN_EVENTS);
    }
}
