//! Scenario tests for the coordinator's decisions (`coordinator::decide`), after the policy
//! engine's: each `tests/coordinator/NAME.toml` gives one round's input, and the rendered
//! decision must equal `NAME.expected`.
//!
//! A scenario holds:
//! - `description`: what it tests, in a sentence (mandatory, the expected file's first line);
//! - the configuration: `config = "DIR"` (a directory under `tests/coordinator/fixtures`,
//!   with its rules file if any), or `[files]` with the texts of the files
//!   (`"cluster.toml" = '''...'''`);
//! - `view`: the replicated state, built by applying these commands to `State::new()` in
//!   order (`halcyon_state::Command` in TOML, `command = "enqueue"` ...; every reply must
//!   change something). Times in commands (`at`, `started_at`, `finished_at`) may be
//!   integers, milliseconds from the base time, and `at` defaults to the base time. Four
//!   steps of the runner help: `{ command = "bootstrap" }` commits the scenario's
//!   configuration and rules; `{ command = "form", members = [...] }` forms the cluster
//!   with these nodes as the coordinator does (registered, `node_up`s, `cluster_start`
//!   planned with all of them) and carries out every event until none is left;
//!   `{ command = "plan_next" }` commits the plan of the next pending event the way the
//!   coordinator does; `{ command = "complete" }` reports every ready action done until
//!   none is ready;
//! - the round: `now` (ms from the base), `unreachable` and `unknown` (node names; every
//!   other node is reachable), `[leadership]` (`term`, `since`), `[grants]` (node = ms),
//!   `[memory]` (`forming_since = ms`, `execution_seen = [execution, ms]`,
//!   `error_logged = [execution, ms]`, `owed_since = [{ execution, step, index, since }]` or
//!   `{ execution, launch, since }` for a command, `unsettled_seen = [shortening, ms]`, `witness_asked = NAME`), `[lease]` (`duration_ms`, `election_max_ms`;
//!   by default the configuration's lease and Raft election timeout; `older_leases_end`, ms:
//!   when the votes say every older leader's lease ended, by default not known), `fencing` (nodes
//!   whose fence runs now), `voters` (the Raft voters, default every configured one),
//!   `changing_voters` (a voter change runs), `members_outside` and `members_readdressed`
//!   (Raft members by number the configuration does not have, or gives other addresses).
//!
//! The expected file: the commands in order (each with the state machine's reply when
//! applied in order to the view), the memory changes (and after how many commands), the
//! wake-up moment and the log lines. All instants are written as offsets from the base.
//!
//! Run one: `cargo nextest run -p halcyon-daemon --test coordinator_scenarios NAME`.
//! Bless new expectations: `HALCYON_BLESS=1 cargo test -p halcyon-daemon --test
//! coordinator_scenarios` (then read every changed `.expected` before committing it).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use halcyon_config::{Config, NodeName};
use halcyon_daemon::coordinator::decide::{Decision, Input, LeaseFacts, Memory, Work, decide};
use halcyon_events::Rules;
use halcyon_membership::NodeState;
use halcyon_policy::{Engine, Event};
use halcyon_state::{Command, Reply, State};
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use tokio::time::Instant;

type Error = Box<dyn std::error::Error>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    /// What the scenario tests, in a sentence.
    description: String,
    #[serde(default)]
    config: Option<String>,
    #[serde(default)]
    files: BTreeMap<String, String>,
    #[serde(default)]
    view: Vec<toml::Table>,
    #[serde(default)]
    now: i64,
    #[serde(default)]
    unreachable: Vec<String>,
    #[serde(default)]
    unknown: Vec<String>,
    #[serde(default)]
    leadership: Leadership,
    #[serde(default)]
    grants: BTreeMap<String, i64>,
    #[serde(default)]
    memory: MemoryInput,
    #[serde(default)]
    lease: LeaseInput,
    /// Nodes whose fence runs now.
    #[serde(default)]
    fencing: Vec<String>,
    /// The Raft voters (default: every configured node and the witness).
    #[serde(default)]
    voters: Option<Vec<String>>,
    /// A voter change of this coordinator runs.
    #[serde(default)]
    changing_voters: bool,
    /// Raft members (by number) the running configuration does not have.
    #[serde(default)]
    members_outside: Vec<u32>,
    /// Raft members (by number) whose consensus addresses are not the running
    /// configuration's.
    #[serde(default)]
    members_readdressed: Vec<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Leadership {
    term: u64,
    since: i64,
}

impl Default for Leadership {
    fn default() -> Self {
        Leadership { term: 2, since: 0 }
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemoryInput {
    forming_since: Option<i64>,
    execution_seen: Option<(u64, i64)>,
    error_logged: Option<(u64, i64)>,
    #[serde(default)]
    owed_since: Vec<OwedInput>,
    unsettled_seen: Option<(u64, i64)>,
    witness_asked: Option<String>,
}

/// A piece of work the coordinator remembers a node owes: a plan action (`step`, `index`,
/// counted from 1 as the expected files write them) or a command (`launch`), since `since`
/// (ms).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OwedInput {
    execution: u64,
    step: Option<usize>,
    index: Option<usize>,
    launch: Option<u64>,
    since: i64,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseInput {
    duration_ms: Option<u64>,
    election_max_ms: Option<u64>,
    older_leases_end: Option<i64>,
}

/// The moment all offsets count from, on both clocks.
struct Base {
    instant: Instant,
    timestamp: Timestamp,
}

impl Base {
    fn new() -> Self {
        Base {
            instant: Instant::now(),
            timestamp: "2026-01-05T12:00:00Z".parse().expect("a valid timestamp"),
        }
    }

    fn instant(&self, ms: i64) -> Result<Instant, Error> {
        let offset = Duration::from_millis(ms.unsigned_abs());
        let at = if ms >= 0 {
            self.instant.checked_add(offset)
        } else {
            self.instant.checked_sub(offset)
        };
        at.ok_or_else(|| format!("{ms} ms is out of the clock's range").into())
    }

    fn timestamp(&self, ms: i64) -> Result<Timestamp, Error> {
        Ok(self
            .timestamp
            .checked_add(SignedDuration::from_millis(ms))?)
    }

    /// `+1500ms`, `-20ms`.
    fn offset(&self, at: Instant) -> String {
        if at >= self.instant {
            format!("+{}", ms(at - self.instant))
        } else {
            format!("-{}", ms(self.instant - at))
        }
    }

    fn timestamp_offset(&self, at: Timestamp) -> String {
        let d = at.duration_since(self.timestamp);
        let sign = if d.is_negative() { "-" } else { "+" };
        format!("{sign}{}", ms(d.unsigned_abs()))
    }
}

/// Milliseconds, with the fraction when there is one.
fn ms(d: Duration) -> String {
    let nanos = d.as_nanos();
    let (whole, fraction) = (nanos / 1_000_000, nanos % 1_000_000);
    if fraction == 0 {
        format!("{whole}ms")
    } else {
        let digits = format!("{fraction:06}");
        format!("{whole}.{}ms", digits.trim_end_matches('0'))
    }
}

fn run(path: &Path, text: String) -> datatest_stable::Result<()> {
    let scenario: Scenario =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let out = render_scenario(&scenario).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(halcyon_testkit::expect::check(path, &out)?)
}

/// The configuration and rules of fixture `name` (`tests/coordinator/fixtures/NAME`).
fn load_fixture(name: &str) -> Result<(Config, Rules), Error> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/coordinator/fixtures")
        .join(name);
    let paths = [dir];
    let (config, _) = halcyon_config::load(&paths).map_err(|d| format!("fixture {name}:\n{d}"))?;
    let rules = halcyon_events::load_cluster_rules(&paths, config.cluster.events.rules.as_deref())
        .map_err(|d| format!("fixture {name}: rules:\n{d}"))?;
    Ok((config, rules))
}

fn load(scenario: &Scenario) -> Result<(Config, Rules), Error> {
    match (&scenario.config, scenario.files.is_empty()) {
        (Some(name), true) => load_fixture(name),
        (None, false) => {
            let files: Vec<(&str, &str)> = scenario
                .files
                .iter()
                .map(|(name, text)| (name.as_str(), text.as_str()))
                .collect();
            let config = halcyon_config::load_texts(&files).map_err(|d| format!("files:\n{d}"))?;
            Ok((config, Rules::default()))
        }
        _ => Err("give either `config` (a fixture) or `[files]`".into()),
    }
}

fn render_scenario(scenario: &Scenario) -> Result<String, Error> {
    let (config, rules) = load(scenario)?;
    let base = Base::new();
    let view = build_view(&scenario.view, &config, &rules, &base)?;
    // Nodes by the running configuration (a view step may apply another one).
    let running = view
        .config()
        .map_or_else(|| config.clone(), |c| (**c).clone());
    let number = |name: &str| {
        running
            .node(name)
            .map(|n| n.number)
            .ok_or_else(|| format!("node \"{name}\" is not in the configuration"))
    };
    let mut reachability: BTreeMap<u32, NodeState> = running
        .cluster
        .nodes
        .iter()
        .map(|n| (n.number, NodeState::Reachable))
        .collect();
    for name in &scenario.unreachable {
        reachability.insert(number(name)?, NodeState::Unreachable);
    }
    for name in &scenario.unknown {
        reachability.insert(number(name)?, NodeState::Unknown);
    }
    let mut grants = BTreeMap::new();
    for (name, at) in &scenario.grants {
        number(name)?;
        grants.insert(NodeName::from(name.as_str()), base.instant(*at)?);
    }
    let remembered = &scenario.memory;
    let memory = Memory {
        forming_since: remembered
            .forming_since
            .map(|at| base.instant(at))
            .transpose()?,
        execution_seen: remembered
            .execution_seen
            .map(|(id, at)| base.instant(at).map(|at| (id, at)))
            .transpose()?,
        error_logged: remembered
            .error_logged
            .map(|(id, at)| base.instant(at).map(|at| (id, at)))
            .transpose()?,
        owed_since: remembered
            .owed_since
            .iter()
            .map(|o| {
                let work = match (o.step, o.index, o.launch) {
                    (Some(step), Some(index), None) if step > 0 && index > 0 => Work::Action {
                        step: step - 1,
                        index: index - 1,
                    },
                    (None, None, Some(launch)) => Work::Command { launch },
                    _ => return Err("owed_since: give `step` and `index`, or `launch`".into()),
                };
                Ok(((o.execution, work), base.instant(o.since)?))
            })
            .collect::<Result<_, Error>>()?,
        unsettled_seen: remembered
            .unsettled_seen
            .map(|(generation, at)| base.instant(at).map(|at| (generation, at)))
            .transpose()?,
        witness_asked: remembered.witness_asked.as_deref().map(NodeName::from),
    };
    let lease = LeaseFacts {
        duration: scenario
            .lease
            .duration_ms
            .map_or_else(|| config.cluster.lease(), Duration::from_millis),
        election_max: scenario.lease.election_max_ms.map_or_else(
            || config.cluster.raft_timings().election_max,
            Duration::from_millis,
        ),
        term: scenario.leadership.term,
        leader_since: base.instant(scenario.leadership.since)?,
        older_leases_end: scenario
            .lease
            .older_leases_end
            .map(|at| base.instant(at))
            .transpose()?,
        grants: &grants,
    };
    let fencing: std::collections::BTreeSet<NodeName> = scenario
        .fencing
        .iter()
        .map(|n| NodeName::from(n.as_str()))
        .collect();
    let voters: std::collections::BTreeSet<NodeName> = match &scenario.voters {
        Some(names) => names.iter().map(|n| NodeName::from(n.as_str())).collect(),
        None => config
            .cluster
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .chain(config.cluster.quorum.witness.iter().map(|w| w.name.clone()))
            .collect(),
    };
    let input = Input {
        view: &view,
        boot_config: &config,
        boot_rules: &rules,
        boot_sources: &[],
        reachability: &reachability,
        lease,
        fencing: &fencing,
        voters: &voters,
        changing_voters: scenario.changing_voters,
        members_outside: &scenario.members_outside.iter().copied().collect(),
        members_readdressed: &scenario.members_readdressed.iter().copied().collect(),
        memory,
        now: base.instant(scenario.now)?,
        timestamp: base.timestamp(scenario.now)?,
    };
    let decision = decide(&input);
    if decide(&input) != decision {
        return Err("the same input gave another decision".into());
    }
    let mut out = String::new();
    writeln!(out, "# {}", scenario.description)?;
    render_decision(&mut out, &decision, &input, &base)?;
    Ok(out)
}

/// The state the view's commands give.
fn build_view(
    steps: &[toml::Table],
    config: &Config,
    rules: &Rules,
    base: &Base,
) -> Result<State, Error> {
    let mut view = View {
        state: State::new(),
        index: 0,
    };
    for (i, step) in steps.iter().enumerate() {
        let kind = step.get("command").and_then(|c| c.as_str()).unwrap_or("");
        let at = match step.get("at") {
            Some(toml::Value::Integer(ms)) => base.timestamp(*ms)?,
            Some(_) => return Err(format!("view step {}: `at` is a number of ms", i + 1).into()),
            None => base.timestamp,
        };
        let done = match kind {
            "bootstrap" => view.apply(Command::Bootstrap {
                config: Box::new(config.clone()),
                rules: rules.clone(),
                sources: Vec::new(),
                at,
            }),
            "form" => {
                let members: Vec<NodeName> = step
                    .get("members")
                    .cloned()
                    .ok_or("`form` needs `members`")?
                    .try_into()?;
                view.form(&members, at)
            }
            "plan_next" => view.plan_next(at).map(|_| ()),
            "complete" => view.complete(at),
            // `halcyon apply` of another fixture: staged, its config_change planned and
            // carried out.
            "apply" => {
                let fixture = step
                    .get("fixture")
                    .and_then(|f| f.as_str())
                    .ok_or("`apply` needs `fixture`")?;
                let (next, next_rules) = load_fixture(fixture)?;
                view.apply(Command::ConfigApply {
                    config: Box::new(next),
                    rules: next_rules,
                    sources: Vec::new(),
                    by: "admin".to_owned(),
                    at,
                    request: None,
                })
                .and_then(|()| view.plan_next(at))
                .and_then(|_| view.complete(at))
            }
            _ => {
                let mut table = step.clone();
                with_timestamps(&mut table, base)?;
                table
                    .entry("at")
                    .or_insert_with(|| toml::Value::String(at.to_string()));
                let command: Command = toml::Value::Table(table).try_into()?;
                view.apply(command)
            }
        };
        done.map_err(|e| format!("view step {} ({kind}): {e}", i + 1))?;
    }
    Ok(view.state.clone_without_log())
}

/// Integer times in a command (ms from the base) as timestamps.
fn with_timestamps(table: &mut toml::Table, base: &Base) -> Result<(), Error> {
    for (key, value) in table.iter_mut() {
        match value {
            toml::Value::Integer(ms)
                if ["at", "started_at", "finished_at"].contains(&key.as_str()) =>
            {
                *value = toml::Value::String(base.timestamp(*ms)?.to_string());
            }
            toml::Value::Table(inner) => with_timestamps(inner, base)?,
            _ => {}
        }
    }
    Ok(())
}

struct View {
    state: State,
    index: u64,
}

impl View {
    /// Applies a command that must change something.
    fn apply(&mut self, command: Command) -> Result<(), Error> {
        self.index += 1;
        match self.state.apply(self.index, command) {
            Reply::Ignored { why } => Err(format!("ignored: {why}").into()),
            Reply::Queued {
                duplicate: true,
                sequence,
            } => Err(format!("already pending as #{sequence}").into()),
            _ => Ok(()),
        }
    }

    /// The cluster formed with `members` as the coordinator forms it, then every event
    /// carried out.
    fn form(&mut self, members: &[NodeName], at: Timestamp) -> Result<(), Error> {
        let config = self.config()?;
        for node in members {
            if !self.state.incarnations().contains_key(node) {
                self.apply(Command::Register {
                    node: node.clone(),
                    incarnation: 1,
                    at,
                    clean_stop: None,
                })?;
            }
            self.enqueue(Event::NodeUp { node: node.clone() }, "membership", at)?;
        }
        self.enqueue(Event::ClusterStart, "formation", at)?;
        let sequence = self
            .state
            .pending()
            .iter()
            .find(|p| p.event == Event::ClusterStart)
            .map(|p| p.sequence)
            .ok_or("cluster_start is not pending")?;
        let mut forming = self.state.cluster().clone();
        for node in members {
            forming.members.insert(node.clone());
            forming.available_since.insert(node.clone(), at);
            forming.networks_down.remove(node);
        }
        let plan = Engine::new(&config).plan(&forming, &Event::ClusterStart, at)?;
        self.apply(Command::PlanCommitted {
            sequence,
            plan: Box::new(plan),
            at,
        })?;
        loop {
            self.complete(at)?;
            if let Some(e) = &self.state.execution() {
                return Err(format!("execution {} is stuck while forming", e.id).into());
            }
            if self.state.pending().is_empty() {
                return Ok(());
            }
            self.plan_next(at)?;
        }
    }

    fn enqueue(&mut self, event: Event, by: &str, at: Timestamp) -> Result<(), Error> {
        self.apply(Command::Enqueue {
            event,
            by: by.to_owned(),
            at,
            sample: None,
            request: None,
        })
    }

    fn config(&self) -> Result<std::sync::Arc<Config>, Error> {
        Ok(self.state.config().cloned().ok_or("not bootstrapped")?)
    }

    /// Commits the plan of the next pending event as the coordinator does.
    fn plan_next(&mut self, at: Timestamp) -> Result<u64, Error> {
        let config = self.config()?;
        let pending = self.state.pending_events();
        let i = halcyon_policy::next_event(&config, &pending).ok_or("no event is pending")?;
        let (sequence, event) = pending[i].clone();
        // A config_change is planned with the configuration it switches to.
        let config = self.state.config_for(sequence).cloned().unwrap_or(config);
        let plan = Engine::new(&config).plan(self.state.cluster(), &event, at)?;
        self.apply(Command::PlanCommitted {
            sequence,
            plan: Box::new(plan),
            at,
        })?;
        Ok(sequence)
    }

    /// Every ready action reported done (ok), until none is ready.
    fn complete(&mut self, at: Timestamp) -> Result<(), Error> {
        while let Some(execution) = self.state.execution().cloned() {
            let ready = execution.ready_actions();
            if ready.is_empty() {
                return Ok(());
            }
            for (step, index, _) in ready {
                self.apply(Command::ActionDone {
                    execution: execution.id,
                    step,
                    index,
                    ok: true,
                    detail: String::new(),
                    at,
                })?;
            }
        }
        Ok(())
    }
}

fn render_decision(
    out: &mut String,
    decision: &Decision,
    input: &Input,
    base: &Base,
) -> Result<(), Error> {
    // The replies: the decision's commands applied in order to the view.
    let mut state = input.view.clone();
    let mut index = state.applied_index();
    writeln!(out, "\ncommands:")?;
    if decision.commands.is_empty() {
        writeln!(out, "  none")?;
    }
    for (i, command) in decision.commands.iter().enumerate() {
        let mut line = describe(command, input.view);
        if let Some(at) = command_time(command)
            && at != input.timestamp
        {
            write!(line, " at {}", base.timestamp_offset(at))?;
        }
        index += 1;
        let reply = state.apply(index, command.clone());
        writeln!(out, "  {}. {line} -> {}", i + 1, describe_reply(&reply))?;
    }
    writeln!(out, "\nmemory:")?;
    if decision.memory.len() <= 1 {
        writeln!(out, "  unchanged")?;
    }
    for (after, memory) in decision.memory.iter().skip(1) {
        writeln!(
            out,
            "  after {after} command{}: {}",
            if *after == 1 { "" } else { "s" },
            describe_memory(memory, base)
        )?;
    }
    writeln!(
        out,
        "\nwake at: {}",
        decision
            .wake_at
            .map_or_else(|| "never".to_owned(), |at| base.offset(at))
    )?;
    if let Some((node, add)) = &decision.voter_change {
        writeln!(
            out,
            "\nvoter change:\n  {node} {}",
            if *add {
                "becomes a voter"
            } else {
                "leaves the voters"
            }
        )?;
    }
    if let Some(number) = decision.readdress {
        writeln!(
            out,
            "\nmembership change:\n  node {number} gets the configuration's addresses"
        )?;
    }
    if let Some(number) = decision.leave {
        writeln!(out, "\nmembership change:\n  node {number} leaves")?;
    }
    if !decision.fences.is_empty() {
        writeln!(out, "\nfences:")?;
        for (node, incarnation) in &decision.fences {
            writeln!(out, "  {node} (incarnation {incarnation})")?;
        }
    }
    writeln!(out, "\nlogs:")?;
    if decision.logs.is_empty() {
        writeln!(out, "  none")?;
    }
    for log in &decision.logs {
        let mut lines = log.message.lines();
        writeln!(
            out,
            "  after {}: {} {}",
            log.after,
            log.level,
            lines.next().unwrap_or("")
        )?;
        for line in lines {
            writeln!(out, "    | {line}")?;
        }
    }
    Ok(())
}

fn command_time(command: &Command) -> Option<Timestamp> {
    match command {
        Command::Bootstrap { at, .. }
        | Command::Enqueue { at, .. }
        | Command::PlanCommitted { at, .. }
        | Command::EventRefused { at, .. }
        | Command::ActionDone { at, .. }
        | Command::NodeLost { at, .. }
        | Command::NodeStuck { at, .. }
        | Command::EventTooLong { at, .. } => Some(*at),
        _ => None,
    }
}

/// One readable line per command.
fn describe(command: &Command, view: &State) -> String {
    match command {
        Command::Bootstrap { config, .. } => format!(
            "bootstrap cluster {} ({} nodes, {} packages)",
            config.cluster.name,
            config.cluster.nodes.len(),
            config.packages.len()
        ),
        Command::Enqueue { event, by, .. } => format!("enqueue {event} by {by}"),
        Command::PlanCommitted { sequence, plan, .. } => {
            let steps: Vec<String> = plan
                .steps
                .iter()
                .enumerate()
                .map(|(i, step)| {
                    let actions: Vec<String> = step.actions.iter().map(describe_action).collect();
                    format!("step {}: {}", i + 1, actions.join(", "))
                })
                .collect();
            format!(
                "plan #{sequence} {}: {}",
                plan.event,
                if steps.is_empty() {
                    "no action".to_owned()
                } else {
                    steps.join("; ")
                }
            )
        }
        Command::EventRefused {
            sequence, error, ..
        } => format!("refuse #{sequence}: {error}"),
        Command::ActionDone {
            execution,
            step,
            index,
            ok,
            detail,
            ..
        } => {
            let action = view
                .execution()
                .as_ref()
                .and_then(|e| e.action(*step, *index))
                .map_or_else(|| "an unknown action".to_owned(), describe_action);
            format!(
                "action {}.{} of execution {execution} ({action}) {}: {detail}",
                step + 1,
                index + 1,
                if *ok { "done" } else { "FAILED" }
            )
        }
        Command::NodeLost {
            execution,
            node,
            why,
            ..
        } => format!("node lost {node} in execution {execution}: {why}"),
        Command::NodeStuck {
            execution,
            node,
            why,
            ..
        } => format!("node stuck {node} in execution {execution}: {why}"),
        Command::EventTooLong { execution, .. } => {
            format!("event too long: execution {execution}")
        }
        Command::AutoShrink { node, voter, .. } => format!(
            "auto-shrink: {node} {}",
            if *voter {
                "is a voter again"
            } else {
                "recorded as shrunk"
            }
        ),
        Command::NodeJoined { node, .. } => format!("{node} joined the voters: no longer joining"),
        Command::LeaseSettled { change, .. } => {
            format!("the leases granted before the lease's shortening {change} have ended")
        }
        other => format!("{other:?}"),
    }
}

fn describe_action(action: &halcyon_policy::Action) -> String {
    match &action.package {
        Some(package) => format!("{} {package} on {}", action.kind, action.node),
        None => format!("{} {}", action.kind, action.node),
    }
}

fn describe_reply(reply: &Reply) -> String {
    match reply {
        Reply::Done => "done".to_owned(),
        Reply::Bootstrapped { fresh } => {
            if *fresh {
                "bootstrapped".to_owned()
            } else {
                "already bootstrapped".to_owned()
            }
        }
        Reply::Queued {
            sequence,
            duplicate,
        } => {
            if *duplicate {
                format!("already pending as #{sequence}")
            } else {
                format!("queued as #{sequence}")
            }
        }
        Reply::Executing { execution } => format!("execution {execution}"),
        Reply::Restarts { count } => format!("{count} restarts"),
        Reply::Ignored { why } => format!("ignored: {why}"),
        Reply::Batch { replies } => {
            let replies: Vec<String> = replies.iter().map(describe_reply).collect();
            format!("batch: {}", replies.join("; "))
        }
    }
}

fn describe_memory(memory: &Memory, base: &Base) -> String {
    let instant = |at: Option<Instant>| at.map_or_else(|| "none".to_owned(), |at| base.offset(at));
    let of_execution = |m: Option<(u64, Instant)>| {
        m.map_or_else(
            || "none".to_owned(),
            |(id, at)| format!("execution {id} at {}", base.offset(at)),
        )
    };
    let mut text = format!(
        "forming since {}, execution seen {}, error logged {}",
        instant(memory.forming_since),
        of_execution(memory.execution_seen),
        of_execution(memory.error_logged)
    );
    if !memory.owed_since.is_empty() {
        let owed: Vec<String> = memory
            .owed_since
            .iter()
            .map(|((id, work), at)| {
                let work = match work {
                    Work::Action { step, index } => format!("action {}.{}", step + 1, index + 1),
                    Work::Command { launch } => format!("launch {launch}"),
                };
                format!("{work} of execution {id} since {}", base.offset(*at))
            })
            .collect();
        write!(text, ", owed: {}", owed.join(", ")).expect("writing to a string");
    }
    if let Some((change, at)) = memory.unsettled_seen {
        write!(
            text,
            ", the leases unsettled by shortening {change} seen at {}",
            base.offset(at)
        )
        .expect("writing to a string");
    }
    if let Some(witness) = &memory.witness_asked {
        write!(text, ", witness {witness} asked to join").expect("writing to a string");
    }
    text
}

datatest_stable::harness! {
    { test = run, root = "tests/coordinator", pattern = r"^[^/]*\.toml$" },
}
