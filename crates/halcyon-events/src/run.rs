//! Running a recovery program, as a pure state machine.
//!
//! [`expand`] turns a program, the event node and the members (ordered by node
//! number) into *segments*: the commands between two barriers, each on one node.
//! [`Progress`] follows an event through them: the runtime asks [`Progress::next_commands`]
//! what to launch, reports each end with [`Progress::completed`], and the state
//! machine completes a barrier when every command of its segment has finished. An
//! unexpected status puts the event in [`EventState::Error`] at that barrier (the rest
//! of the segment still completes; nothing after the barrier starts) until the
//! administrator calls [`Progress::resume`], [`Progress::retry`] or [`Progress::skip`].
//!
//! `Progress` is serializable so that a new coordinator continues an unfinished
//! event: [`Progress::take_over`] launches again what was running (and not finished)
//! in the current segment; commands before [`Progress::last_completed_barrier`] never
//! run again. Commands after it may run twice, which is why commands must be written
//! to be re-runnable.
//!
//! No clock: the runtime calls [`Progress::duration_exceeded`] when the event has run
//! longer than its maximum duration.

use std::fmt::{self, Write as _};
use std::time::Duration;

use halcyon_config::NodeName;
use serde::{Deserialize, Serialize};

use crate::program::{Expected, Line, NodeSet, Program};

/// Most bytes of a command's output kept (its end).
pub const OUTPUT_TAIL_MAX: usize = 4_096;
/// Most retries a recovery command may grant one command.
pub const RETRY_MAX: u32 = 100;

/// One command on one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    pub node: NodeName,
    pub command: String,
    pub expected: Expected,
}

/// The commands between two barriers (they run in parallel).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub invocations: Vec<Invocation>,
}

/// The segments of `program` for an event on `event_node` with `members` (in node
/// number order). Segment `i` ends at barrier `i`; the last one at the implicit
/// barrier that ends the program (an explicit barrier as the program's last line is
/// that same barrier). Within a segment the commands are grouped by node, in member
/// order, then in program order. An `event` line runs nowhere when the event node is
/// not a member (a failed node).
pub fn expand(
    program: &Program,
    event_node: Option<&NodeName>,
    members: &[NodeName],
) -> Vec<Segment> {
    let mut segments = vec![Vec::new()];
    for line in &program.lines {
        match line {
            Line::Barrier => segments.push(Vec::new()),
            Line::Command(c) => segments.last_mut().expect("never empty").push(c),
        }
    }
    if program.lines.last() == Some(&Line::Barrier) || program.lines.is_empty() {
        segments.pop();
    }
    segments
        .into_iter()
        .map(|lines| {
            let mut invocations = Vec::new();
            for node in members {
                let is_event_node = Some(node) == event_node;
                for c in &lines {
                    let runs_here = match c.node_set {
                        NodeSet::All => true,
                        NodeSet::Event => is_event_node,
                        NodeSet::Other => !is_event_node,
                    };
                    if runs_here {
                        invocations.push(Invocation {
                            node: node.clone(),
                            command: c.command.clone(),
                            expected: c.expected,
                        });
                    }
                }
            }
            Segment { invocations }
        })
        .collect()
}

/// Segments as an administrator reads them (`halcyon emulate`, tests):
///
/// ```text
/// segment 1:
///   n1: "node_up" 0
/// barrier 1
/// ```
pub fn render_segments(segments: &[Segment]) -> String {
    let mut out = String::new();
    for (i, segment) in segments.iter().enumerate() {
        let _ = writeln!(out, "segment {}:", i + 1);
        for inv in &segment.invocations {
            let _ = writeln!(out, "  {}: \"{}\" {}", inv.node, inv.command, inv.expected);
        }
        if i + 1 == segments.len() {
            let _ = writeln!(out, "end barrier");
        } else {
            let _ = writeln!(out, "barrier {}", i + 1);
        }
    }
    out
}

/// The recovery command of an event's customisation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    pub command: String,
    /// How many times a failed command may run again after the recovery command
    /// succeeded (status 0).
    pub retry: u32,
}

/// What the state machine was given besides the segments.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    pub recovery: Option<Recovery>,
    /// Run (on the coordinator) before the event, when it enters ERROR, when it runs
    /// too long, and after it.
    pub notify: Option<String>,
}

/// Where one command is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CommandState {
    /// Not launched yet. `attempt` counts runs in this round (1 + recoveries).
    Pending {
        attempt: u32,
    },
    Running {
        launch: u64,
        attempt: u32,
    },
    /// Failed; its recovery command is to be launched.
    RecoveryPending {
        attempt: u32,
        failure: Outcome,
    },
    RecoveryRunning {
        launch: u64,
        attempt: u32,
        failure: Outcome,
    },
    Succeeded {
        outcome: Outcome,
    },
    Failed {
        outcome: Outcome,
    },
    /// Will not run or finish: its node failed or was cut off from the quorum during
    /// the event (the event of that node's departure deals with it). Finished, not
    /// failed: the barrier does not wait for a node that is gone.
    Abandoned {
        why: String,
    },
}

impl CommandState {
    fn is_finished(&self) -> bool {
        matches!(
            self,
            CommandState::Succeeded { .. }
                | CommandState::Failed { .. }
                | CommandState::Abandoned { .. }
        )
    }
}

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub status: i32,
    pub output_tail: String,
    /// Runs of the command in this round.
    pub attempts: u32,
}

/// A command that returned an unexpected status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// 0-based segment and index of the command in it.
    pub segment: usize,
    pub index: usize,
    pub node: NodeName,
    pub command: String,
    pub expected: Expected,
    pub status: i32,
    pub output_tail: String,
    pub attempts: u32,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "on {}: \"{}\" returned {} (expected {})",
            self.node, self.command, self.status, self.expected
        )?;
        if self.attempts > 1 {
            write!(f, " after {} attempts", self.attempts)?;
        }
        if !self.output_tail.is_empty() {
            write!(f, "; output ends: {}", self.output_tail.trim_end())?;
        }
        Ok(())
    }
}

/// The event as a whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum EventState {
    Running,
    /// Stopped at a barrier: waits for `resume`, `retry` or `skip`.
    Error {
        failures: Vec<Failure>,
    },
    Completed,
    /// The administrator abandoned the rest of the program.
    Skipped,
}

/// How many `too_long` warnings an event that has run `elapsed` is due, with `max` its
/// maximum duration: one for every whole `max` it has run *longer* than (at exactly `max`,
/// none; just past it, one; just past twice `max`, two), so a long event is warned again
/// every further `max` while it runs. A zero `max` (refused by the loaders) warns never.
pub fn too_long_warnings_due(elapsed: Duration, max: Duration) -> u32 {
    if max.is_zero() || elapsed <= max {
        return 0;
    }
    let times = (elapsed.as_nanos() - 1) / max.as_nanos();
    u32::try_from(times).unwrap_or(u32::MAX)
}

/// When the next `too_long` warning is due after `given` were: strictly after `given + 1`
/// maximum durations from the start (`None`: beyond what a `Duration` holds).
pub fn next_too_long_after(given: u32, max: Duration) -> Option<Duration> {
    max.checked_mul(given.checked_add(1)?)
}

/// Why the notify command runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyPhase {
    Before,
    Error,
    TooLong,
    After,
}

impl NotifyPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyPhase::Before => "before",
            NotifyPhase::Error => "error",
            NotifyPhase::TooLong => "too_long",
            NotifyPhase::After => "after",
        }
    }
}

/// What a launch is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LaunchKind {
    /// A command of the program: segment and index (0-based).
    Command {
        segment: usize,
        index: usize,
        attempt: u32,
    },
    /// The recovery command for a failed command.
    Recovery {
        segment: usize,
        index: usize,
        attempt: u32,
    },
    /// The notify command; its status is not checked. `result` is `success`,
    /// `failure` or `skipped` for `after` and `error`.
    Notify {
        phase: NotifyPhase,
        result: Option<String>,
    },
}

/// A command to start now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Launch {
    /// Unique in the event; given back to [`Progress::completed`].
    pub launch: u64,
    pub kind: LaunchKind,
    /// `None`: on the coordinator (notify).
    pub node: Option<NodeName>,
    pub command: String,
    /// Variables for this launch, on top of the event's environment (`env.rs`).
    pub env: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProgressError {
    #[error("launch {launch} is not running (finished already, or from before a retry)")]
    UnknownLaunch { launch: u64 },
    #[error("launch {launch} runs on {expected}, not on {node}")]
    WrongNode {
        launch: u64,
        expected: NodeName,
        node: NodeName,
    },
    #[error("the event is not in ERROR (it is {state})")]
    NotInError { state: &'static str },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct QueuedNotify {
    phase: NotifyPhase,
    result: Option<String>,
}

/// An event's execution. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    segments: Vec<Segment>,
    states: Vec<Vec<CommandState>>,
    options: Options,
    /// The segment running (or stopped in ERROR); `segments.len()` when done.
    current: usize,
    /// The last barrier every participating node has passed (0-based, = segment
    /// index); `None` before the first.
    last_completed_barrier: Option<usize>,
    state: EventState,
    next_launch: u64,
    queued_notifications: Vec<QueuedNotify>,
    notifications_running: Vec<u64>,
    /// How many `too_long` warnings were given: one per whole maximum duration the event
    /// has run past (HACMP repeats config_too_long the same way).
    #[serde(default)]
    too_long_warnings: u32,
}

impl Progress {
    pub fn new(segments: Vec<Segment>, options: Options) -> Progress {
        if let Some(r) = &options.recovery {
            assert!(
                r.retry <= RETRY_MAX,
                "retry is validated by the rules loader"
            );
        }
        let states = segments
            .iter()
            .map(|s| vec![CommandState::Pending { attempt: 1 }; s.invocations.len()])
            .collect();
        let mut progress = Progress {
            segments,
            states,
            options,
            current: 0,
            last_completed_barrier: None,
            state: EventState::Running,
            next_launch: 1,
            queued_notifications: Vec::new(),
            notifications_running: Vec::new(),
            too_long_warnings: 0,
        };
        progress.notify(NotifyPhase::Before, None);
        progress.advance();
        progress.assert_valid();
        progress
    }

    pub fn state(&self) -> &EventState {
        &self.state
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The state of every command, per segment.
    pub fn command_states(&self) -> &[Vec<CommandState>] {
        &self.states
    }

    /// The segment running or stopped in ERROR (0-based); `None` when finished.
    pub fn current_segment(&self) -> Option<usize> {
        (self.current < self.segments.len()).then_some(self.current)
    }

    /// The last barrier every participating node passed (0-based).
    pub fn last_completed_barrier(&self) -> Option<usize> {
        self.last_completed_barrier
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.state, EventState::Completed | EventState::Skipped)
    }

    /// The commands to launch now (and marks them running): every command of the
    /// current segment not launched yet, recovery commands due, and notifications.
    pub fn next_commands(&mut self) -> Vec<Launch> {
        let mut out = Vec::new();
        for queued in std::mem::take(&mut self.queued_notifications) {
            let Some(command) = self.options.notify.clone() else {
                continue;
            };
            let launch = self.take_launch_number();
            self.notifications_running.push(launch);
            let mut env = vec![(
                "HALCYON_NOTIFY_PHASE".to_owned(),
                queued.phase.as_str().to_owned(),
            )];
            if let Some(result) = &queued.result {
                env.push(("HALCYON_EVENT_RESULT".to_owned(), result.clone()));
            }
            out.push(Launch {
                launch,
                kind: LaunchKind::Notify {
                    phase: queued.phase,
                    result: queued.result,
                },
                node: None,
                command,
                env,
            });
        }
        if self.state != EventState::Running || self.current >= self.segments.len() {
            return out;
        }
        let segment = self.current;
        for index in 0..self.states[segment].len() {
            let invocation = self.segments[segment].invocations[index].clone();
            match self.states[segment][index].clone() {
                CommandState::Pending { attempt } => {
                    let launch = self.take_launch_number();
                    out.push(Launch {
                        launch,
                        kind: LaunchKind::Command {
                            segment,
                            index,
                            attempt,
                        },
                        node: Some(invocation.node.clone()),
                        command: invocation.command,
                        env: vec![
                            ("HALCYON_SEGMENT".to_owned(), (segment + 1).to_string()),
                            ("HALCYON_ATTEMPT".to_owned(), attempt.to_string()),
                        ],
                    });
                    self.states[segment][index] = CommandState::Running { launch, attempt };
                }
                CommandState::RecoveryPending { attempt, failure } => {
                    let recovery = self
                        .options
                        .recovery
                        .clone()
                        .expect("recovery pending only with a recovery command");
                    let launch = self.take_launch_number();
                    out.push(Launch {
                        launch,
                        kind: LaunchKind::Recovery {
                            segment,
                            index,
                            attempt,
                        },
                        node: Some(invocation.node.clone()),
                        command: recovery.command,
                        env: vec![
                            ("HALCYON_SEGMENT".to_owned(), (segment + 1).to_string()),
                            ("HALCYON_ATTEMPT".to_owned(), attempt.to_string()),
                            (
                                "HALCYON_FAILED_COMMAND".to_owned(),
                                invocation.command.clone(),
                            ),
                            (
                                "HALCYON_FAILED_STATUS".to_owned(),
                                failure.status.to_string(),
                            ),
                        ],
                    });
                    self.states[segment][index] = CommandState::RecoveryRunning {
                        launch,
                        attempt,
                        failure,
                    };
                }
                _ => {}
            }
        }
        self.assert_valid();
        out
    }

    /// A launch ended on `node` with `status`; `output_tail` is kept (its last
    /// [`OUTPUT_TAIL_MAX`] bytes).
    pub fn completed(
        &mut self,
        node: &NodeName,
        launch: u64,
        status: i32,
        output_tail: &str,
    ) -> Result<(), ProgressError> {
        if let Some(i) = self.notifications_running.iter().position(|l| *l == launch) {
            self.notifications_running.remove(i);
            return Ok(());
        }
        let Some((segment, index)) = self.running_launch(launch) else {
            return Err(ProgressError::UnknownLaunch { launch });
        };
        let invocation = &self.segments[segment].invocations[index];
        if &invocation.node != node {
            return Err(ProgressError::WrongNode {
                launch,
                expected: invocation.node.clone(),
                node: node.clone(),
            });
        }
        let output_tail = self::output_tail(output_tail, OUTPUT_TAIL_MAX);
        let retry = self.options.recovery.as_ref().map_or(0, |r| r.retry);
        self.states[segment][index] = match self.states[segment][index].clone() {
            CommandState::Running { attempt, .. } => {
                let outcome = Outcome {
                    status,
                    output_tail,
                    attempts: attempt,
                };
                if invocation.expected.accepts(status) {
                    CommandState::Succeeded { outcome }
                } else if attempt <= retry {
                    CommandState::RecoveryPending {
                        attempt,
                        failure: outcome,
                    }
                } else {
                    CommandState::Failed { outcome }
                }
            }
            CommandState::RecoveryRunning {
                attempt, failure, ..
            } => {
                if status == 0 {
                    CommandState::Pending {
                        attempt: attempt + 1,
                    }
                } else {
                    CommandState::Failed { outcome: failure }
                }
            }
            _ => unreachable!("found as running"),
        };
        self.finish_segment_if_done();
        self.assert_valid();
        Ok(())
    }

    /// ERROR -> continue after the barrier as if it had succeeded.
    pub fn resume(&mut self) -> Result<(), ProgressError> {
        self.require_error()?;
        self.pass_barrier();
        self.advance();
        self.assert_valid();
        Ok(())
    }

    /// ERROR -> run the failed commands of the failed segment again.
    pub fn retry(&mut self) -> Result<(), ProgressError> {
        self.require_error()?;
        for state in &mut self.states[self.current] {
            if matches!(state, CommandState::Failed { .. }) {
                *state = CommandState::Pending { attempt: 1 };
            }
        }
        self.state = EventState::Running;
        self.assert_valid();
        Ok(())
    }

    /// ERROR -> abandon the rest of the program.
    pub fn skip(&mut self) -> Result<(), ProgressError> {
        self.require_error()?;
        self.state = EventState::Skipped;
        self.notify(NotifyPhase::After, Some("skipped"));
        self.assert_valid();
        Ok(())
    }

    /// How many `too_long` warnings were given already.
    pub fn too_long_warnings(&self) -> u32 {
        self.too_long_warnings
    }

    /// The event has run longer than `times` maximum durations ([`too_long_warnings_due`]):
    /// queues the `too_long` notification when that is more than were given. True then.
    pub fn duration_exceeded(&mut self, times: u32) -> bool {
        if times <= self.too_long_warnings || self.is_finished() {
            return false;
        }
        self.too_long_warnings = times;
        self.notify(NotifyPhase::TooLong, None);
        true
    }

    /// `node` failed or was cut off from the quorum: its commands not finished, in
    /// the current segment and the later ones, are abandoned (they finish without
    /// running). Returns the launches that were running on it. The barrier of the
    /// current segment completes if nothing else is left.
    pub fn abandon_node(&mut self, node: &NodeName, why: &str) -> Vec<u64> {
        let mut running = Vec::new();
        for segment in self.current..self.segments.len() {
            for index in 0..self.states[segment].len() {
                if &self.segments[segment].invocations[index].node != node {
                    continue;
                }
                match &self.states[segment][index] {
                    CommandState::Running { launch, .. }
                    | CommandState::RecoveryRunning { launch, .. } => running.push(*launch),
                    CommandState::Pending { .. } | CommandState::RecoveryPending { .. } => {}
                    _ => continue,
                }
                self.states[segment][index] = CommandState::Abandoned {
                    why: why.to_owned(),
                };
            }
        }
        if self.state == EventState::Running && self.current < self.segments.len() {
            self.finish_segment_if_done();
        }
        self.assert_valid();
        running
    }

    /// Whether `node` has commands not finished in the current or a later segment.
    pub fn has_unfinished(&self, node: &NodeName) -> bool {
        (self.current..self.segments.len()).any(|segment| {
            self.states[segment]
                .iter()
                .zip(&self.segments[segment].invocations)
                .any(|(state, inv)| &inv.node == node && !state.is_finished())
        })
    }

    /// The launch running as `launch`, if any: (segment, index).
    pub fn running_launch(&self, launch: u64) -> Option<(usize, usize)> {
        let segment = self.current;
        let index = self.states.get(segment)?.iter().position(|s| match s {
            CommandState::Running { launch: l, .. }
            | CommandState::RecoveryRunning { launch: l, .. } => *l == launch,
            _ => false,
        })?;
        Some((segment, index))
    }

    /// For a new coordinator, after deserializing: what was launched and not
    /// finished in the current segment is launched again by the next
    /// [`Progress::next_commands`]; notifications in flight are not repeated.
    /// Nothing before the last completed barrier runs again.
    pub fn take_over(&mut self) {
        self.notifications_running.clear();
        if let Some(states) = self.states.get_mut(self.current) {
            for state in states {
                *state = match state.clone() {
                    CommandState::Running { attempt, .. } => CommandState::Pending { attempt },
                    CommandState::RecoveryRunning {
                        attempt, failure, ..
                    } => CommandState::RecoveryPending { attempt, failure },
                    other => other,
                };
            }
        }
        self.assert_valid();
    }

    /// Checks the invariants (for a value read from storage); `Err` says which.
    pub fn validate(&self) -> Result<(), String> {
        if self.states.len() != self.segments.len() {
            return Err("one list of command states per segment".to_owned());
        }
        for (i, (states, segment)) in self.states.iter().zip(&self.segments).enumerate() {
            if states.len() != segment.invocations.len() {
                return Err(format!("segment {i}: one state per command"));
            }
            let launched = states.iter().any(|s| {
                !matches!(
                    s,
                    CommandState::Pending { attempt: 1 } | CommandState::Abandoned { .. }
                )
            });
            if i < self.current && !states.iter().all(CommandState::is_finished) {
                return Err(format!("segment {i} is passed but not finished"));
            }
            if i > self.current && launched {
                return Err(format!("segment {i} has started before its barrier"));
            }
        }
        if self.current > self.segments.len() {
            return Err("current segment beyond the program".to_owned());
        }
        if self.last_completed_barrier != self.current.checked_sub(1) {
            return Err(
                "the last completed barrier is not the one before the current segment".to_owned(),
            );
        }
        match &self.state {
            EventState::Completed if self.current != self.segments.len() => {
                Err("completed before the end".to_owned())
            }
            EventState::Running if self.current == self.segments.len() => {
                Err("running past the end".to_owned())
            }
            EventState::Error { failures } => {
                if failures.is_empty() {
                    return Err("ERROR without a failure".to_owned());
                }
                let finished = self
                    .states
                    .get(self.current)
                    .is_some_and(|s| s.iter().all(CommandState::is_finished));
                if finished {
                    Ok(())
                } else {
                    Err("ERROR before the segment finished".to_owned())
                }
            }
            _ => Ok(()),
        }
    }

    fn assert_valid(&self) {
        if let Err(e) = self.validate() {
            panic!("event progress invariant broken: {e}");
        }
    }

    fn take_launch_number(&mut self) -> u64 {
        let launch = self.next_launch;
        self.next_launch += 1;
        launch
    }

    fn notify(&mut self, phase: NotifyPhase, result: Option<&str>) {
        if self.options.notify.is_some() {
            self.queued_notifications.push(QueuedNotify {
                phase,
                result: result.map(str::to_owned),
            });
        }
    }

    fn require_error(&self) -> Result<(), ProgressError> {
        match self.state {
            EventState::Error { .. } => Ok(()),
            EventState::Running => Err(ProgressError::NotInError { state: "running" }),
            EventState::Completed => Err(ProgressError::NotInError { state: "completed" }),
            EventState::Skipped => Err(ProgressError::NotInError { state: "skipped" }),
        }
    }

    /// When every command of the current segment has finished: ERROR if one
    /// failed, else pass the barrier.
    fn finish_segment_if_done(&mut self) {
        let states = &self.states[self.current];
        if !states.iter().all(CommandState::is_finished) {
            return;
        }
        let failures: Vec<Failure> = states
            .iter()
            .enumerate()
            .filter_map(|(index, s)| match s {
                CommandState::Failed { outcome } => {
                    let inv = &self.segments[self.current].invocations[index];
                    Some(Failure {
                        segment: self.current,
                        index,
                        node: inv.node.clone(),
                        command: inv.command.clone(),
                        expected: inv.expected,
                        status: outcome.status,
                        output_tail: outcome.output_tail.clone(),
                        attempts: outcome.attempts,
                    })
                }
                _ => None,
            })
            .collect();
        if failures.is_empty() {
            self.pass_barrier();
            self.advance();
        } else {
            self.state = EventState::Error { failures };
            self.notify(NotifyPhase::Error, Some("failure"));
        }
    }

    fn pass_barrier(&mut self) {
        self.last_completed_barrier = Some(self.current);
        self.current += 1;
        self.state = EventState::Running;
    }

    /// Passes empty segments; completes the event at the end.
    fn advance(&mut self) {
        while self.current < self.segments.len()
            && self.segments[self.current].invocations.is_empty()
        {
            self.pass_barrier();
        }
        if self.current == self.segments.len() {
            self.state = EventState::Completed;
            self.notify(NotifyPhase::After, Some("success"));
        }
    }
}

/// The last `max` bytes of `output`, cut at a character boundary (the event log keeps
/// the end of a command's output).
pub fn output_tail(output: &str, max: usize) -> String {
    if output.len() <= max {
        return output.to_owned();
    }
    let mut start = output.len() - max;
    while !output.is_char_boundary(start) {
        start += 1;
    }
    output[start..].to_owned()
}
