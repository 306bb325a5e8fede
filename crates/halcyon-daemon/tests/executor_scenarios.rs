//! Scenario tests for the executor's decisions (`halcyon_daemon::executor::decide`), after
//! the policy engine's: each `tests/executor/NAME.toml` names a configuration (a directory
//! under `tests/executor/fixtures/`), builds the replicated view by driving the real state
//! machine through a history of steps, says what this node knows of itself (lease, Raft's
//! applied index, what runs here, the executor's memory), and the rendered decision must
//! equal `NAME.expected`. Scenarios named `bug-*` pin a bug that happened.
//!
//! Run one: `cargo nextest run -p halcyon-daemon --test executor_scenarios NAME`.
//! Bless new expectations: `HALCYON_BLESS=1 cargo test -p halcyon-daemon --test
//! executor_scenarios` (then read the diff before committing it).
//!
//! History steps (`[[step]]`, one key each):
//! - `form = ["n1", ...]`: the nodes register and the cluster forms with them (the
//!   coordinator's `cluster_start` plan), every action done;
//! - `register = ["n1", ...]`: the nodes' daemons register;
//! - `enqueue = { kind = "node_down", node = "n1", how = "failure" }`: an event is queued;
//! - `plan = true`: the most urgent pending event is planned and committed;
//! - `done = "n1"` / `failed = "n1"`: the ready actions of that node report success / failure;
//! - `finish = true`: every ready action and command reports success until the event ends.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use halcyon_config::{Config, NodeName, PackageName};
use halcyon_daemon::executor::decide::{self, Input, Memory};
use halcyon_policy::{Engine, Event};
use halcyon_state::{Command, LaunchReport, Reply, State};
use jiff::Timestamp;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    /// What the scenario tests, in a sentence.
    description: String,
    /// A directory under tests/executor/fixtures.
    config: String,
    /// The node that decides.
    node: String,
    #[serde(default)]
    step: Vec<Step>,
    /// Raft's applied index relative to the view's (a new leader's blank entry: +1).
    #[serde(default)]
    raft_applied_ahead: u64,
    /// The read index the last lease grant confirmed, relative to the view's applied index
    /// (a replica that is behind: positive).
    #[serde(default)]
    confirmed_ahead: u64,
    #[serde(default = "yes")]
    lease_valid: bool,
    #[serde(default)]
    leader: bool,
    /// Packages running here.
    #[serde(default)]
    running: Vec<String>,
    #[serde(default)]
    failed_here: Vec<String>,
    /// Actions in flight: "execution/step/index".
    #[serde(default)]
    in_flight: Vec<String>,
    /// Launches in flight: "execution/launch".
    #[serde(default)]
    launches_in_flight: Vec<String>,
    /// Packages a plan action is starting here.
    #[serde(default)]
    starting: Vec<String>,
    /// Decide again with the memory the first decision left (nothing must be handed out
    /// twice).
    #[serde(default)]
    decide_twice: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum Step {
    Form(Vec<String>),
    Register(Vec<String>),
    Enqueue(Event),
    Plan(bool),
    Done(String),
    Failed(String),
    Finish(bool),
}

/// Drives a real state machine through a history.
struct History {
    state: State,
    config: Config,
    index: u64,
}

impl History {
    fn at(&self) -> Timestamp {
        Timestamp::from_second(1_767_614_400 + self.index as i64).expect("valid time")
    }

    fn apply(&mut self, command: Command) -> Result<Reply, String> {
        self.index += 1;
        match self.state.apply(self.index, command) {
            Reply::Ignored { why } => Err(format!("refused by the state machine: {why}")),
            reply => Ok(reply),
        }
    }

    fn register(&mut self, nodes: &[String]) -> Result<(), String> {
        for node in nodes {
            let at = self.at();
            self.apply(Command::Register {
                node: NodeName::from(node.as_str()),
                incarnation: 1,
                at,
                clean_stop: None,
            })?;
        }
        Ok(())
    }

    /// The coordinator's formation: `cluster_start` planned with every node a member.
    fn form(&mut self, nodes: &[String]) -> Result<(), String> {
        self.register(nodes)?;
        self.enqueue(Event::ClusterStart)?;
        let sequence = self
            .state
            .pending()
            .iter()
            .find(|p| p.event == Event::ClusterStart)
            .map(|p| p.sequence)
            .ok_or("cluster_start is not pending")?;
        let now = self.at();
        let mut forming = self.state.cluster().clone();
        for node in nodes {
            let node = NodeName::from(node.as_str());
            forming.members.insert(node.clone());
            forming.available_since.insert(node.clone(), now);
            forming.networks_down.remove(&node);
        }
        let plan = Engine::new(&self.config)
            .plan(&forming, &Event::ClusterStart, now)
            .map_err(|e| e.to_string())?;
        self.apply(Command::PlanCommitted {
            sequence,
            plan: Box::new(plan),
            at: now,
        })?;
        self.finish()
    }

    fn enqueue(&mut self, event: Event) -> Result<(), String> {
        let at = self.at();
        self.apply(Command::Enqueue {
            event,
            by: "scenario".into(),
            at,
            sample: None,
            request: None,
        })
        .map(drop)
    }

    fn plan(&mut self) -> Result<(), String> {
        let pending = self.state.pending_events();
        let i = halcyon_policy::next_event(&self.config, &pending).ok_or("nothing pending")?;
        let (sequence, event) = pending[i].clone();
        let now = self.at();
        let command = match Engine::new(&self.config).plan(self.state.cluster(), &event, now) {
            Ok(plan) => Command::PlanCommitted {
                sequence,
                plan: Box::new(plan),
                at: now,
            },
            Err(e) => Command::EventRefused {
                sequence,
                error: e.to_string(),
                at: now,
            },
        };
        self.apply(command).map(drop)
    }

    /// The ready actions of `node` (every node: `None`) report `ok`; returns how many.
    fn report(&mut self, node: Option<&str>, ok: bool) -> Result<usize, String> {
        let Some(execution) = self.state.execution().cloned() else {
            return Err("no event is running".into());
        };
        let ready: Vec<(usize, usize)> = execution
            .ready_actions()
            .into_iter()
            .filter(|(_, _, a)| node.is_none_or(|n| a.node.as_str() == n))
            .map(|(step, index, _)| (step, index))
            .collect();
        for (step, index) in &ready {
            let at = self.at();
            self.apply(Command::ActionDone {
                execution: execution.id,
                step: *step,
                index: *index,
                ok,
                detail: String::new(),
                at,
            })?;
        }
        Ok(ready.len())
    }

    fn finish(&mut self) -> Result<(), String> {
        for _ in 0..100 {
            let Some(execution) = self.state.execution().cloned() else {
                return Ok(());
            };
            let mut progress = self.report(None, true)?;
            for launch in execution.launches.values() {
                if halcyon_events::Builtin::parse(&launch.command).is_some() {
                    continue;
                }
                let at = self.at();
                self.apply(Command::LaunchDone {
                    execution: execution.id,
                    launch: launch.launch,
                    node: launch.node.clone(),
                    report: LaunchReport {
                        status: 0,
                        output: String::new(),
                        started_at: at,
                        finished_at: at,
                    },
                    at,
                })?;
                progress += 1;
            }
            if progress == 0 {
                return Err(format!("the event is stuck: {execution:#?}"));
            }
        }
        Err("the event did not end within 100 rounds".into())
    }
}

fn parse_keys<const N: usize>(texts: &[String]) -> Result<Vec<[u64; N]>, String> {
    texts
        .iter()
        .map(|text| {
            let parts: Vec<u64> = text
                .split('/')
                .map(|p| p.parse::<u64>().map_err(|e| format!("{text:?}: {e}")))
                .collect::<Result<_, _>>()?;
            parts
                .try_into()
                .map_err(|_| format!("{text:?}: expected {N} numbers separated by /"))
        })
        .collect()
}

fn render_memory(out: &mut String, memory: &Memory) -> std::fmt::Result {
    let failed: Vec<&str> = memory.failed_here.iter().map(|p| p.as_str()).collect();
    let actions: Vec<String> = memory
        .in_flight
        .iter()
        .map(|(e, s, i)| format!("{e}/{s}/{i}"))
        .collect();
    let launches: Vec<String> = memory
        .launches_in_flight
        .iter()
        .map(|(e, l)| format!("{e}/{l}"))
        .collect();
    writeln!(out, "memory:")?;
    writeln!(out, "  failed here: [{}]", failed.join(", "))?;
    writeln!(out, "  actions in flight: [{}]", actions.join(", "))?;
    writeln!(out, "  launches in flight: [{}]", launches.join(", "))?;
    let starting: Vec<&str> = memory.starting.iter().map(|p| p.as_str()).collect();
    writeln!(out, "  starting: [{}]", starting.join(", "))
}

fn run(path: &Path, text: String) -> datatest_stable::Result<()> {
    let scenario: Scenario =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/executor/fixtures");
    let dir = [fixtures.join(&scenario.config)];
    let (config, _) = halcyon_config::load(&dir).map_err(|d| format!("config:\n{d}"))?;
    let rules = halcyon_events::load_cluster_rules(&dir, config.cluster.events.rules.as_deref())
        .map_err(|d| format!("rules:\n{d}"))?;
    let mut history = History {
        state: State::new(),
        config: config.clone(),
        index: 0,
    };
    let at = history.at();
    history.apply(Command::Bootstrap {
        config: Box::new(config.clone()),
        rules,
        sources: Vec::new(),
        at,
    })?;
    for step in &scenario.step {
        match step {
            Step::Form(nodes) => history.form(nodes)?,
            Step::Register(nodes) => history.register(nodes)?,
            Step::Enqueue(event) => history.enqueue(event.clone())?,
            Step::Plan(true) => history.plan()?,
            Step::Done(node) => drop(history.report(Some(node), true)?),
            Step::Failed(node) => drop(history.report(Some(node), false)?),
            Step::Finish(true) => history.finish()?,
            Step::Plan(false) | Step::Finish(false) => {
                return Err(format!(
                    "{}: a step `= false` does nothing: remove it",
                    path.display()
                )
                .into());
            }
        }
    }
    let state = history.state.clone_without_log();
    let node = NodeName::from(scenario.node.as_str());
    let running: BTreeMap<PackageName, bool> = scenario
        .running
        .iter()
        .map(|p| {
            let failover = config.package(p).is_some_and(|p| p.is_failover());
            (PackageName::from(p.as_str()), failover)
        })
        .collect();
    let mut memory = Memory {
        failed_here: scenario
            .failed_here
            .iter()
            .map(|p| PackageName::from(p.as_str()))
            .collect(),
        in_flight: parse_keys::<3>(&scenario.in_flight)?
            .into_iter()
            .map(|[e, s, i]| (e, s as usize, i as usize))
            .collect(),
        launches_in_flight: parse_keys::<2>(&scenario.launches_in_flight)?
            .into_iter()
            .map(|[e, l]| (e, l))
            .collect::<BTreeSet<_>>(),
        starting: scenario
            .starting
            .iter()
            .map(|p| PackageName::from(p.as_str()))
            .collect(),
    };
    let input = Input {
        node: &node,
        state: &state,
        config: &config,
        raft_applied: state.applied_index() + scenario.raft_applied_ahead,
        confirmed: state.applied_index() + scenario.confirmed_ahead,
        lease_valid: scenario.lease_valid,
        leader: scenario.leader,
        running: &running,
    };

    let mut out = String::new();
    writeln!(out, "# {}", scenario.description)?;
    let rounds = if scenario.decide_twice { 2 } else { 1 };
    for round in 1..=rounds {
        let actions = decide::decide(&input, &mut memory);
        if rounds > 1 {
            writeln!(out, "decision {round}:")?;
        }
        writeln!(out, "actions:")?;
        if actions.is_empty() {
            writeln!(out, "  (none)")?;
        }
        for action in &actions {
            writeln!(out, "  {}", decide::render(action))?;
        }
    }
    render_memory(&mut out, &memory)?;

    Ok(halcyon_testkit::expect::check(path, &out)?)
}

datatest_stable::harness! {
    { test = run, root = "tests/executor", pattern = r"^[^/]*\.toml$" },
}
