//! The event's recovery program on a live node (see `halcyon_state::execution` for
//! what is replicated): every node runs the commands handed out to it, the coordinator
//! runs the notify commands, abandons the commands of nodes that are gone, and warns
//! about events running too long or waiting in ERROR.

use std::sync::Arc;
use std::time::Duration;

use crate::executor::decide::LaunchKey;
use crate::platform::Clock;
use halcyon_config::Config;
use halcyon_events::{EventState, Launch};
use halcyon_membership::NodeState;
use halcyon_state::{Command, Execution, LaunchReport};
use tokio::time::Instant;

use super::{Node, lock};

/// How often an event waiting in ERROR is logged again.
const ERROR_REMINDER: Duration = Duration::from_secs(30);
/// Exit status reported for a command killed at its time limit (as timeout(1)).
const STATUS_TIMED_OUT: i32 = 124;
/// Exit status reported for a command that could not be started.
const STATUS_NOT_STARTED: i32 = 127;

impl Node {
    /// Executor side: runs one event command handed out to this node (or, on the
    /// coordinator, a notify command) in a task of its own, and reports its end.
    pub(crate) fn spawn_launch(
        self: &Arc<Self>,
        config: &Config,
        key: LaunchKey,
        launch: Launch,
        env: Vec<(String, String)>,
        limit: Duration,
    ) {
        let node = Arc::clone(self);
        let cluster = config.cluster.name.clone();
        // The command's process group is recorded like a service's: a restarted daemon
        // kills what its previous incarnation left running.
        let pgid_file = self.run_dir.join(format!("event-{}-{}.pgid", key.0, key.1));
        tokio::spawn(async move {
            let report = run_command(
                &launch,
                &env,
                limit,
                &pgid_file,
                node.platform.clock.as_ref(),
            )
            .await;
            let _ = std::fs::remove_file(&pgid_file);
            tracing::info!(
                execution = key.0,
                launch = key.1,
                command = %launch.command,
                status = report.status,
                %cluster,
                "event command finished"
            );
            // The key stays in the executor's memory until this node's replica no longer
            // lists the launch: the commit of the report may reach this replica after the
            // leader answered, and the command must not run again meanwhile.
            node.report_launch(key.0, &launch, report).await;
        });
    }

    /// Commits a launch's end, until it is accepted, refused, or no longer awaited.
    async fn report_launch(&self, execution: u64, launch: &Launch, report: LaunchReport) {
        let command = Command::LaunchDone {
            execution,
            launch: launch.launch,
            node: launch.node.clone(),
            report,
            at: self.timestamp(),
        };
        let what = format!("event command {execution}/{}", launch.launch);
        self.report(&command, &what, |x| {
            x.id == execution && x.launches.contains_key(&launch.launch)
        })
        .await;
    }

    /// Coordinator side, each round: abandons the commands of nodes whose lease has
    /// certainly expired, warns once when the event runs longer than its maximum
    /// duration, and reminds the log of an event waiting in ERROR.
    pub(super) async fn watch_program(
        &self,
        term: u64,
        config: &Config,
        execution: &Execution,
    ) -> Result<(), String> {
        let seen = {
            let mut seen = lock(&self.execution_seen);
            match *seen {
                Some((id, at)) if id == execution.id => at,
                _ => {
                    let now = Instant::now();
                    *seen = Some((execution.id, now));
                    now
                }
            }
        };
        let reach = self.reachability();
        for node in execution.nodes_with_unfinished_commands() {
            // Not before a full lease from when this coordinator saw the execution: a
            // node joining with this event has had no grant yet.
            let deadline = self
                .release_deadline(node.as_str())
                .max(crate::lease::release_deadline(seen, self.lease_duration));
            if Instant::now() < deadline {
                continue;
            }
            let unreachable = matches!(
                reach.get(&config.node(node.as_str()).map_or(0, |n| n.number)),
                Some(NodeState::Unreachable)
            );
            let why = format!(
                "{node} {} and holds no lease (none granted for {:?} x (1 + {} %) + {:?})",
                if unreachable {
                    "failed during the event"
                } else {
                    "is cut off from the quorum"
                },
                self.lease_duration,
                crate::lease::DRIFT * 100.0,
                crate::lease::MARGIN,
            );
            tracing::warn!(
                execution = execution.id,
                "abandoning the commands of {node}: {why}"
            );
            self.submit_as_leader(
                term,
                &Command::NodeLost {
                    execution: execution.id,
                    node: node.clone(),
                    why,
                    at: self.timestamp(),
                },
            )
            .await?;
        }
        let elapsed: Option<Duration> = self
            .timestamp()
            .duration_since(execution.started_at)
            .try_into()
            .ok();
        if elapsed.is_some_and(|e| e > execution.max_duration)
            && !execution.progress.too_long_notified()
            && !execution.progress.is_finished()
        {
            tracing::warn!(
                execution = execution.id,
                event = %execution.plan.event,
                "the event has run longer than its maximum duration ({:?})",
                execution.max_duration
            );
            self.submit_as_leader(
                term,
                &Command::EventTooLong {
                    execution: execution.id,
                    at: self.timestamp(),
                },
            )
            .await?;
        }
        if let EventState::Error { failures } = execution.progress.state() {
            let mut last = lock(&self.error_logged);
            if last.is_none_or(|(id, at)| id != execution.id || at.elapsed() >= ERROR_REMINDER) {
                *last = Some((execution.id, Instant::now()));
                for failure in failures {
                    tracing::error!(
                        execution = execution.id,
                        event = %execution.plan.event,
                        "event in ERROR: {failure}; answer with `halcyon event resume|retry|skip {}`",
                        execution.id
                    );
                }
            }
        }
        Ok(())
    }
}

/// Runs one command of an event with `sh -c`, in its own process group, output captured.
/// The shell writes its PID (its process group's id) to `pgid_file` first.
async fn run_command(
    launch: &Launch,
    env: &[(String, String)],
    limit: Duration,
    pgid_file: &std::path::Path,
    clock: &dyn Clock,
) -> LaunchReport {
    let started_at = clock.timestamp();
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(format!(
            "printf %s $$ > '{}'; {}",
            pgid_file.display(),
            launch.command
        ))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(false);
    let result =
        halcyon_resources::run_captured("event command", &launch.command, command, limit).await;
    let (status, output) = match result {
        Ok((status, output)) => (exit_code(status), output),
        Err(halcyon_resources::ResourceError::TimedOut { output, .. }) => (
            STATUS_TIMED_OUT,
            format!("{output}\n[halcyon: killed after {limit:?}]"),
        ),
        Err(e) => (STATUS_NOT_STARTED, e.to_string()),
    };
    LaunchReport {
        status,
        output,
        started_at,
        finished_at: clock.timestamp(),
    }
}

/// The shell's convention: the exit code, or 128 + the signal that ended the process.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}
