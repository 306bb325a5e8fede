//! The event's recovery program on a live node (see `halcyon_state::execution` for
//! what is replicated): every node runs the commands handed out to it, and the coordinator
//! runs the notify commands. The coordinator's decisions about the program (abandoning
//! the commands of nodes that are gone, events running too long or waiting in ERROR) are
//! in `coordinator::decide`.

use std::sync::Arc;
use std::time::Duration;

use crate::executor::decide::LaunchKey;
use crate::platform::Clock;
use halcyon_config::Config;
use halcyon_events::Launch;
use halcyon_state::{Command, LaunchReport};

use super::Node;

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
    let mut command = tokio::process::Command::new(halcyon_resources::SHELL);
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
