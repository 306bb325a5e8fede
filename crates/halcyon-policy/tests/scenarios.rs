//! Scenario tests for the policy engine, after Pacemaker's scheduler regression
//! tests: each `tests/scenarios/NAME.toml` holds a configuration (by name, from
//! `tests/configs/NAME/`), a cluster state and one or more events; the rendered
//! plans must equal `NAME.expected`. A `config_change` scenario names the old
//! configuration in `state_config` (the state is checked against it). A scenario may instead list pending events
//! (`[ordering]`) and expect their processing order.
//!
//! Run one: `cargo nextest run -p halcyon-policy --test scenarios NAME`.
//! Bless new expectations: `HALCYON_BLESS=1 cargo test -p halcyon-policy --test scenarios`
//! (then read the diff before committing it).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use halcyon_policy::{ClusterState, Engine, Event, processing_order, render};
use jiff::Timestamp;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    /// What the scenario tests, in a sentence.
    description: String,
    /// A directory under tests/configs.
    config: String,
    /// The configuration the state was recorded under, when it is not `config`
    /// (a `config_change` scenario: the state still names removed packages).
    #[serde(default)]
    state_config: Option<String>,
    /// The time of the first event (each event may set its own).
    #[serde(default = "default_now")]
    now: Timestamp,
    #[serde(default)]
    state: ClusterState,
    #[serde(default)]
    events: Vec<TimedEvent>,
    #[serde(default)]
    ordering: Option<Ordering>,
    /// Explain these packages after the last event.
    #[serde(default)]
    explain: Vec<String>,
}

#[derive(Deserialize)]
struct TimedEvent {
    #[serde(default)]
    at: Option<Timestamp>,
    #[serde(flatten)]
    event: Event,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Ordering {
    pending: Vec<Event>,
}

fn default_now() -> Timestamp {
    "2026-01-05T12:00:00Z".parse().expect("valid timestamp")
}

fn run(path: &Path, text: String) -> datatest_stable::Result<()> {
    let scenario: Scenario =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests");
    let load = |name: &str| {
        halcyon_config::load(&[root.join("configs").join(name)])
            .map(|(config, _)| config)
            .map_err(|d| format!("config {name}:\n{d}"))
    };
    let config = load(&scenario.config)?;
    let state_config = match &scenario.state_config {
        Some(name) => load(name)?,
        None => config.clone(),
    };
    if let Err(errors) = scenario.state.validate(&state_config) {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(format!("{}: invalid state: {}", path.display(), list.join("; ")).into());
    }
    let engine = Engine::new(&config);
    let mut out = String::new();
    writeln!(out, "# {}", scenario.description)?;

    if let Some(ordering) = &scenario.ordering {
        let pending: Vec<(u64, Event)> = ordering
            .pending
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, e)| (i as u64, e))
            .collect();
        writeln!(out, "processing order:")?;
        for (i, (_, event)) in processing_order(&config, &pending).iter().enumerate() {
            writeln!(out, "  {}. {event}", i + 1)?;
        }
    }

    let mut state = scenario.state.clone();
    let mut now = scenario.now;
    for timed in &scenario.events {
        if let Some(at) = timed.at {
            now = at;
        }
        writeln!(out)?;
        match engine.plan(&state, &timed.event, now) {
            Ok(plan) => {
                // Safety, checked independently of the engine's own assertions.
                for (name, p) in &plan.state.packages {
                    let package = config.package(name.as_str()).expect("configured");
                    assert!(
                        !package.is_failover() || p.nodes.len() <= 1,
                        "{name} on two nodes"
                    );
                }
                out.push_str(&render(&plan));
                state = plan.state;
            }
            Err(e) => writeln!(out, "event: {} at {now}\nrefused: {e}", timed.event)?,
        }
    }
    for package in &scenario.explain {
        writeln!(out)?;
        match engine.explain(&state, package, now) {
            Ok(explanation) => write!(out, "{explanation}")?,
            Err(e) => writeln!(out, "explain {package}: {e}")?,
        }
    }

    Ok(halcyon_testkit::expect::check(path, &out)?)
}

datatest_stable::harness! {
    { test = run, root = "tests/scenarios", pattern = r"\.toml$" },
}
