//! User-defined monitors on a live node (SPEC 9.5): each monitor samples at its interval,
//! its predicate fires it, its rearm predicate arms it again (`halcyon_monitor::Arming`),
//! and a firing either queues a user-defined event on this node or fails a package here.
//!
//! Two kinds, both run by [`Node::monitor_loop`], which compares what should run with what
//! runs every few ticks and starts, stops or restarts (on a change) one task per monitor:
//!
//! - **Package monitors** (`[[monitor]]` in a package file) run on the node where their
//!   package runs, from when it has started until it stops. `event = "NAME"` queues the
//!   user-defined event NAME on this node; `fail_package = true` fails the package here:
//!   marked failed here, halted through its supervision task like any halt, and
//!   `package_failed` queued, so the policy moves it (the same steps as a service whose
//!   restarts are exhausted). A sampler command gets the package's variables
//!   (`HALCYON_CLUSTER`, `HALCYON_PACKAGE`, `HALCYON_NODE`). The event's sample names the
//!   sampler as its resource variable and `Package=P;Monitor=M` as its instance vector.
//!   `notify = "COMMAND"` only runs the command (with those variables, `HALCYON_MONITOR`
//!   and `HALCYON_SAMPLE`) and changes nothing. `stabilization` delays the first sample
//!   after the package has started (HACMP's stabilization interval). A `fail_package`
//!   monitor with `restart = N` first restarts the package's services here, up to N times
//!   within `restart_window` (counted in the replicated state as `monitor:NAME`, shown with
//!   the services' restarts), then watches afresh after the stabilization interval; beyond
//!   N the package fails here as above.
//! - **Rule monitors** (a rules file's user-defined event with `resource_variable`): run on
//!   every member node, or only on node N for `NodeNum=N`; what they sample is decoded by
//!   `halcyon_events::resource` (`IBM.PSSP.Prog.pcount`/`xpcount` count the processes named
//!   `ProgName` — of `UserName` when given —, `xpcount` as the record `[count, previous
//!   count]`; `cmd:COMMAND` runs a command, with `HALCYON_CLUSTER`, `HALCYON_NODE` and
//!   `HALCYON_EVENT`). They sample every [`RULE_INTERVAL`]. A firing
//!   queues the rule's event on this node with the rule's resource variable and instance
//!   vector and the sample's fields, which reach the recovery program's commands as
//!   `HALCYON_VALUE_0..n`.
//!
//! A sample is taken on a blocking thread (`spawn_blocking`) bounded by the interval (at most
//! `halcyon_monitor::sample::SAMPLE_TIMEOUT_MAX`); a sample that cannot be taken, or a
//! predicate that cannot be evaluated on it, fires nothing and is logged, the first time and
//! then at most every [`ERROR_REMINDER`] (with the count of failures in between), and once
//! when the monitor works again. A definition that cannot work (a predicate that does not
//! parse: rules files' predicates are not checked by `halcyon check` yet; a user unknown on
//! this node) is logged once and the monitor stays idle until its definition changes.
//!
//! What a firing does runs in a task of its own, so that stopping the monitor (the package
//! it watches stops, possibly because of that very firing) never cuts it in half.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use halcyon_config::{MonitorAction, PackageName};
use halcyon_events::resource::Source;
use halcyon_monitor::sample::{SAMPLE_TIMEOUT_MAX, process_count_of, user_id};
use halcyon_monitor::{Arming, Outcome, Predicate, Sample, Sampler};
use halcyon_policy::Event;
use halcyon_state::{Command, Reply};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, sleep};

use super::{Inbox, Node};

/// Sampling interval of rule monitors (a rules file has no interval field). The seeds give
/// none; PSSP's Event Management observed program counts as they changed. One second
/// bounds the detection delay of a dead program at one second, for the price of one scan of
/// `/proc` per second (about a millisecond with a few hundred processes); the recovery
/// program that follows takes longer than that anyway.
const RULE_INTERVAL: Duration = Duration::from_secs(1);
/// Shortest interval a monitor samples at, whatever its configuration says.
const INTERVAL_MIN: Duration = Duration::from_millis(100);
/// How often a monitor that keeps failing is logged again.
const ERROR_REMINDER: Duration = Duration::from_secs(60);
/// How long a firing keeps trying to queue its event (each attempt is a `Node::submit`).
const QUEUE_ATTEMPTS: u32 = 12;

/// One monitor that should run here.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    /// (package, monitor name)
    Package(PackageName, String),
    /// The user-defined event's name.
    Rule(String),
}

/// Everything a monitor task runs on; a change restarts the task (armed, no history).
#[derive(Clone, Debug, PartialEq)]
struct Spec {
    /// For logs and the event's `by`: `PACKAGE:MONITOR`, or the event's name.
    name: String,
    probe: Probe,
    /// Variables of a sampler command: the package's (`HALCYON_CLUSTER`,
    /// `HALCYON_PACKAGE`, `HALCYON_NODE`, as its scripts get them), or for a rule's
    /// `cmd:` the cluster, the node and the event's name (`HALCYON_EVENT`).
    env: Vec<(String, String)>,
    interval: Duration,
    predicate: String,
    rearm: Option<String>,
    action: Action,
    /// Waited before the first sample (a package monitor's `stabilization`).
    stabilization: Duration,
}

/// What is sampled.
#[derive(Clone, Debug, PartialEq)]
enum Probe {
    /// A sampler specification (`builtin:...` or a command).
    Sampler(String),
    /// Processes named `program`, of `user` if given; with `previous`, the record
    /// `[count, previous count]`.
    Programs {
        program: String,
        user: Option<String>,
        previous: bool,
    },
    /// A definition that cannot be sampled (logged once).
    Invalid(String),
}

#[derive(Clone, Debug, PartialEq)]
enum Action {
    Event {
        name: String,
        resource_variable: String,
        instance_vector: String,
    },
    /// Fails the package here, after restarting its services here up to `restart` times
    /// (counted in the replicated state under `key`, within the monitor's window).
    FailPackage {
        package: PackageName,
        restart: u32,
        key: String,
    },
    /// Runs the command (the sampler's variables, `HALCYON_MONITOR`, `HALCYON_SAMPLE`).
    Notify(String),
}

/// A probe ready to sample (parsed, user resolved).
#[derive(Clone)]
enum Ready {
    Sampler(Sampler, Vec<(String, String)>),
    Programs {
        program: String,
        uid: Option<u32>,
        previous: bool,
    },
}

impl Ready {
    /// One observation (blocking): a number or a record, and for `xpcount` the bare count.
    fn take(&self, timeout: Duration) -> Result<Sample, String> {
        match self {
            Ready::Sampler(sampler, env) => {
                let env: Vec<(&str, &str)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                sampler
                    .sample_with_env(timeout, &env)
                    .map_err(|e| e.to_string())
            }
            Ready::Programs { program, uid, .. } => process_count_of(program, *uid)
                .map(|n| Sample::number(n as f64))
                .map_err(|e| e.to_string()),
        }
    }
}

/// Rate-limited reports of a monitor's failures.
#[derive(Default)]
struct Trouble {
    logged: Option<Instant>,
    since: u64,
}

impl Trouble {
    fn report(&mut self, monitor: &str, what: &str, error: impl Display) {
        let now = Instant::now();
        if self
            .logged
            .is_some_and(|at| now.duration_since(at) < ERROR_REMINDER)
        {
            self.since += 1;
            return;
        }
        let more = if self.since > 0 {
            format!(" ({} more failures since the last report)", self.since)
        } else {
            String::new()
        };
        tracing::warn!(monitor, "monitor: {what}: {error}{more}; nothing fires");
        self.logged = Some(now);
        self.since = 0;
    }

    fn recovered(&mut self, monitor: &str) {
        if self.logged.take().is_some() {
            tracing::info!(monitor, "monitor: samples and evaluates again");
        }
        self.since = 0;
    }
}

impl Node {
    /// Runs the monitors that should run on this node, for as long as the daemon runs:
    /// compared with those that should whenever the packages running here or the view
    /// change.
    pub(crate) async fn monitor_loop(self: Arc<Self>) {
        let mut running: BTreeMap<Key, (Spec, JoinHandle<()>)> = BTreeMap::new();
        let mut packages = self.running.clone();
        let mut view = self.view.clone();
        loop {
            let wanted = self.wanted_monitors();
            running.retain(|key, (spec, task)| {
                let keep = wanted.get(key) == Some(spec);
                if !keep {
                    task.abort();
                    tracing::info!(monitor = %spec.name, "monitor stopped");
                }
                keep
            });
            for (key, spec) in wanted {
                if running.contains_key(&key) {
                    continue;
                }
                tracing::info!(monitor = %spec.name, interval = ?spec.interval, predicate = %spec.predicate, rearm = ?spec.rearm, "monitor started");
                let task = tokio::spawn(Arc::clone(&self).run_monitor(spec.clone()));
                running.insert(key, (spec, task));
            }
            tokio::select! {
                biased;
                Ok(()) = packages.changed() => {}
                Ok(()) = view.changed() => {}
                else => return,
            }
        }
    }

    /// The monitors of the packages running here, and of the rules whose monitors run on
    /// this node while it is a member.
    fn wanted_monitors(&self) -> BTreeMap<Key, Spec> {
        let mut wanted = BTreeMap::new();
        if self.is_isolated() {
            return wanted;
        }
        let local: Vec<PackageName> = self.running.borrow().keys().cloned().collect();
        let state = self.snapshot();
        let Some(config) = state.config() else {
            return wanted;
        };
        for package in &local {
            if let Some(p) = config.package(package.as_str()) {
                self.package_monitors(config, p, &mut wanted);
            }
        }
        if state.cluster().members.contains(&self.name) {
            self.rule_monitors(config, state.rules(), &mut wanted);
        }
        wanted
    }

    /// The monitors of `package`, which runs here.
    fn package_monitors(
        &self,
        config: &halcyon_config::Config,
        package: &halcyon_config::Package,
        wanted: &mut BTreeMap<Key, Spec>,
    ) {
        let name = &package.name;
        for m in &package.monitors {
            let action = match &m.action {
                MonitorAction::Event(event) => Action::Event {
                    name: event.clone(),
                    resource_variable: m.sample.clone(),
                    instance_vector: format!("Package={name};Monitor={}", m.name),
                },
                MonitorAction::FailPackage => Action::FailPackage {
                    package: name.clone(),
                    restart: m.restart,
                    key: m.restart_key(),
                },
                MonitorAction::Notify(command) => Action::Notify(command.clone()),
            };
            let spec = Spec {
                name: format!("{name}:{}", m.name),
                probe: Probe::Sampler(m.sample.clone()),
                env: vec![
                    ("HALCYON_CLUSTER".to_owned(), config.cluster.name.clone()),
                    ("HALCYON_PACKAGE".to_owned(), name.to_string()),
                    ("HALCYON_NODE".to_owned(), self.name.to_string()),
                ],
                interval: m.interval.max(INTERVAL_MIN),
                predicate: m.predicate.clone(),
                rearm: m.rearm.clone(),
                action,
                stabilization: m.stabilization,
            };
            wanted.insert(Key::Package(name.clone(), m.name.clone()), spec);
        }
    }

    /// The monitors of the rules whose monitors run on this node.
    fn rule_monitors(
        &self,
        config: &halcyon_config::Config,
        rules: &halcyon_events::Rules,
        wanted: &mut BTreeMap<Key, Spec>,
    ) {
        for rule in &rules.rules {
            let Some(definition) = &rule.monitor else {
                continue;
            };
            let key = Key::Rule(rule.name.clone());
            if wanted.contains_key(&key) {
                continue; // the same event with another state qualifier: one monitor
            }
            let probe = match definition.decode() {
                Ok(decoded) if !decoded.nodes.includes(self.number) => continue,
                Ok(decoded) => match decoded.source {
                    Source::ProgramCount {
                        program,
                        user,
                        previous,
                    } => Probe::Programs {
                        program,
                        user,
                        previous,
                    },
                    Source::Command(command) => Probe::Sampler(command),
                },
                // Checked when the rules were loaded: logged by the idle monitor.
                Err(mistakes) => Probe::Invalid(
                    mistakes
                        .iter()
                        .map(|m| format!("{}: {}", m.field, m.problem))
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
            };
            let spec = Spec {
                name: rule.name.clone(),
                probe,
                env: vec![
                    ("HALCYON_CLUSTER".to_owned(), config.cluster.name.clone()),
                    ("HALCYON_NODE".to_owned(), self.name.to_string()),
                    ("HALCYON_EVENT".to_owned(), rule.name.clone()),
                ],
                interval: RULE_INTERVAL,
                predicate: definition.predicate.clone(),
                rearm: definition.rearm_predicate.clone(),
                action: Action::Event {
                    name: rule.name.clone(),
                    resource_variable: definition.resource_variable.clone(),
                    instance_vector: definition.instance_vector_text().to_owned(),
                },
                stabilization: Duration::ZERO,
            };
            wanted.insert(key, spec);
        }
    }

    /// One monitor: samples at its interval until aborted.
    async fn run_monitor(self: Arc<Self>, spec: Spec) {
        let name = spec.name.as_str();
        let prepared = self
            .prepare(&spec)
            .and_then(|ready| Ok((ready, parse_predicates(&spec)?)));
        let (ready, (predicate, rearm)) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => {
                tracing::error!(
                    monitor = name,
                    "monitor cannot run: {e}; it stays idle until its definition changes"
                );
                return std::future::pending().await;
            }
        };
        if let Action::Event { name: event, .. } = &spec.action
            && self.snapshot().rules().rule(event, None).is_none()
        {
            tracing::warn!(
                monitor = name,
                "monitor fires the user-defined event {event}, which has no rule: its firings are logged events without a recovery program"
            );
        }
        if !spec.stabilization.is_zero() {
            tracing::info!(monitor = name, stabilization = ?spec.stabilization, "monitor waits for its package to stabilize before its first sample");
            sleep(spec.stabilization).await;
        }
        let armed = Arming::new(predicate, rearm);
        let mut arming = armed.clone();
        let timeout = spec.interval.min(SAMPLE_TIMEOUT_MAX);
        let mut ticks = tokio::time::interval(spec.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut trouble = Trouble::default();
        let mut last_count: Option<f64> = None;
        loop {
            ticks.tick().await;
            let probe = ready.clone();
            let taken = tokio::task::spawn_blocking(move || probe.take(timeout)).await;
            let mut sample = match taken {
                Ok(Ok(sample)) => sample,
                Ok(Err(e)) => {
                    trouble.report(name, "sampling failed", e);
                    continue;
                }
                Err(e) => {
                    trouble.report(name, "the sampler died", e);
                    continue;
                }
            };
            if let Ready::Programs { previous: true, .. } = ready {
                let count = sample.fields[0];
                sample = Sample::record(&[count, last_count.unwrap_or(count)]);
                last_count = Some(count);
            }
            match arming.on_sample(sample.clone()) {
                Ok(outcome) => {
                    trouble.recovered(name);
                    match outcome {
                        Outcome::Fired => {
                            tracing::warn!(monitor = name, sample = %sample, predicate = %spec.predicate, "monitor fired");
                            if let Action::FailPackage {
                                package,
                                restart,
                                key,
                            } = &spec.action
                                && self
                                    .restarted_by_monitor(name, package, *restart, key, &sample)
                                    .await
                            {
                                // Restarted: watched afresh, after the stabilization interval.
                                arming = armed.clone();
                                sleep(spec.stabilization).await;
                                continue;
                            }
                            tokio::spawn(Arc::clone(&self).fire(spec.clone(), sample));
                        }
                        Outcome::Rearmed => {
                            tracing::info!(monitor = name, sample = %sample, "monitor rearmed")
                        }
                        Outcome::Nothing => {}
                    }
                }
                Err(e) => trouble.report(name, &format!("evaluating on {sample}"), e),
            }
        }
    }

    fn prepare(&self, spec: &Spec) -> Result<Ready, String> {
        match &spec.probe {
            Probe::Sampler(text) => Sampler::parse(text)
                .map(|sampler| Ready::Sampler(sampler, spec.env.clone()))
                .map_err(|e| format!("sample: {e}")),
            Probe::Programs {
                program,
                user,
                previous,
            } => Ok(Ready::Programs {
                program: program.clone(),
                uid: user.as_deref().map(user_id).transpose()?,
                previous: *previous,
            }),
            Probe::Invalid(why) => Err(why.clone()),
        }
    }

    /// What a firing does.
    async fn fire(self: Arc<Self>, spec: Spec, sample: Sample) {
        let by = format!("monitor {}", spec.name);
        match spec.action {
            Action::Event {
                name,
                resource_variable,
                instance_vector,
            } => {
                let command = Command::Enqueue {
                    event: Event::UserDefined {
                        name: name.clone(),
                        node: self.name.clone(),
                    },
                    by: by.clone(),
                    at: self.timestamp(),
                    sample: Some(halcyon_events::Sample {
                        resource_variable,
                        instance_vector,
                        values: sample.fields.iter().map(ToString::to_string).collect(),
                    }),
                    request: None,
                };
                for attempt in 1..=QUEUE_ATTEMPTS {
                    match self.submit(&command).await {
                        Ok(Reply::Queued {
                            sequence,
                            duplicate,
                        }) => {
                            tracing::info!(monitor = %spec.name, sequence, duplicate, "{name} on {} queued", self.name);
                            return;
                        }
                        Ok(other) => {
                            tracing::warn!(monitor = %spec.name, "{name} on {} not queued: {other:?}", self.name);
                            return;
                        }
                        Err(e) if attempt < QUEUE_ATTEMPTS => {
                            tracing::warn!(monitor = %spec.name, attempt, "{name} on {} cannot be queued yet: {e}", self.name);
                            sleep(Duration::from_millis(500)).await;
                        }
                        Err(e) => {
                            tracing::error!(monitor = %spec.name, "{name} on {} was not queued: {e}; the firing is lost", self.name)
                        }
                    }
                }
            }
            Action::FailPackage { package, .. } => self.fail_by_monitor(package, &by).await,
            Action::Notify(command) => notify(&spec.name, &command, &spec.env, &sample).await,
        }
    }

    /// A `fail_package` monitor with `restart` restarts fired: counted (replicated, within
    /// the monitor's window, under `key`); within the count and while this node may run the
    /// package, its services are stopped and started here and the answer is true. False:
    /// the package is to fail here (restarts exhausted, none configured, no quorum to count
    /// with, or the restart failed).
    async fn restarted_by_monitor(
        &self,
        monitor: &str,
        package: &PackageName,
        restart: u32,
        key: &str,
        sample: &Sample,
    ) -> bool {
        if restart == 0 {
            return false;
        }
        let counted = self
            .submit(&Command::RestartCounted {
                package: package.clone(),
                node: self.name.clone(),
                service: key.to_owned(),
                detail: Some(format!("monitor {monitor} fired on {sample}")),
                at: self.timestamp(),
            })
            .await;
        let count = match counted {
            Ok(Reply::Restarts { count }) => count,
            _ => return false, // no quorum: do not restart blindly
        };
        let failover = self
            .config()
            .package(package.as_str())
            .is_some_and(|p| p.is_failover());
        if count > restart || (failover && !self.lease_valid()) {
            tracing::warn!(monitor, package = %package, count, restart, "restarts exhausted: the package fails here");
            return false;
        }
        let (reply, control) = tokio::sync::oneshot::channel();
        let asked = self
            .executor_inbox
            .send(Inbox::ControlOf {
                package: package.clone(),
                reply,
            })
            .await;
        let Some(control) = asked.ok().and(control.await.ok().flatten()) else {
            return true; // stopped meanwhile: nothing of it to fail here
        };
        tracing::info!(monitor, package = %package, count, restart, "restarting the package's services here");
        let (reply, restarted) = tokio::sync::oneshot::channel();
        if control
            .send((super::package::Control::RestartServices, reply))
            .await
            .is_err()
        {
            return true; // stopped meanwhile
        }
        match restarted.await {
            Ok(Ok(detail)) => {
                tracing::info!(monitor, package = %package, count, "{detail}");
                true
            }
            Ok(Err(e)) => {
                tracing::warn!(monitor, package = %package, "restart failed: {e}");
                false
            }
            Err(_) => true, // stopped meanwhile
        }
    }

    /// A monitor declared `package` failed here: it is marked failed here (reconciliation
    /// does not start it again), halted through its supervision task, and `package_failed`
    /// is queued so that the policy moves it — as when a service's restarts are exhausted.
    async fn fail_by_monitor(&self, package: PackageName, by: &str) {
        if !self.running.borrow().contains_key(&package) {
            return; // stopped meanwhile: nothing of it to fail here
        }
        let failover = self
            .config()
            .package(package.as_str())
            .is_some_and(|p| p.is_failover());
        if failover && !self.lease_valid() {
            tracing::warn!(package = %package, by, "fired while this node holds no lease: the package stops for lack of a lease, not as a failure");
            return;
        }
        tracing::warn!(package = %package, by, "the package fails here");
        let (reply, halted) = tokio::sync::oneshot::channel();
        let fail = Inbox::Fail {
            package: package.clone(),
            reply,
        };
        if self.executor_inbox.send(fail).await.is_err() {
            return;
        }
        match halted.await {
            Ok(Some(Ok(detail))) => tracing::info!(package = %package, "{detail}"),
            Ok(Some(Err(e))) => {
                tracing::error!(package = %package, "halting the failed package: {e}")
            }
            Ok(None) | Err(_) => return, // stopped meanwhile
        }
        let _ = self
            .enqueue(
                Event::PackageFailed {
                    package: package.clone(),
                    node: self.name.clone(),
                },
                by,
            )
            .await;
    }
}

/// Longest a monitor's notify command may run before it is killed.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// A notify-only monitor fired: its command runs with the sampler's variables, the
/// monitor's name and the sample, bounded by [`NOTIFY_TIMEOUT`]; nothing else changes. Its
/// end (exit status, or the timeout) and the end of its output are logged.
async fn notify(monitor: &str, command: &str, env: &[(String, String)], sample: &Sample) {
    let mut child = tokio::process::Command::new("/bin/sh");
    child
        .arg("-c")
        .arg(command)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("HALCYON_MONITOR", monitor)
        .env("HALCYON_SAMPLE", sample.to_string())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let ran = tokio::time::timeout(NOTIFY_TIMEOUT, child.output()).await;
    match ran {
        Ok(Ok(output)) => {
            let text = String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr);
            let tail: String = text
                .trim_end()
                .chars()
                .rev()
                .take(400)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if output.status.success() {
                tracing::info!(monitor, output = %tail, "notify command done");
            } else {
                tracing::warn!(monitor, output = %tail, "notify command failed: {}", output.status);
            }
        }
        Ok(Err(e)) => tracing::warn!(monitor, "notify command could not run: {e}"),
        Err(_) => tracing::warn!(monitor, "notify command killed after {NOTIFY_TIMEOUT:?}"),
    }
}

fn parse_predicates(spec: &Spec) -> Result<(Predicate, Option<Predicate>), String> {
    let predicate = Predicate::parse(&spec.predicate)
        .map_err(|e| format!("predicate {:?}: {e}", spec.predicate))?;
    let rearm = spec
        .rearm
        .as_deref()
        .map(|text| Predicate::parse(text).map_err(|e| format!("rearm predicate {text:?}: {e}")))
        .transpose()?;
    Ok((predicate, rearm))
}
