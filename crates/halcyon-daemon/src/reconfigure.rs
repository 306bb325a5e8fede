//! `halcyon apply` on the daemon (Serviceguard `cmapplyconf`, HACMP DARE; issue 16): the
//! running configuration (`GET /v1/config`), what a new one would do (`POST
//! /v1/config/preview`) and staging it (`POST /v1/config/apply`).
//!
//! The files are loaded and checked here exactly as `halcyon check` and a starting daemon
//! load them (the CLI checks them first, but the daemon trusts no client). Staging commits
//! `Command::ConfigApply`: the replicated state keeps the new configuration as *staged*
//! (the cluster-wide reconfiguration lock: a second apply is refused, naming the first)
//! and enqueues one `config_change` event. The coordinator plans it with the staged
//! configuration; every node switches to it as it applies that plan's entry; the plan
//! halts removed packages, halts and runs again the changed ones where they run, places
//! the added ones, and leaves the others alone (same processes, same addresses). The lock
//! goes when the event ends, whichever coordinator ends it.
//!
//! What `apply` cannot change yet is refused with the setting named: the cluster's name,
//! id, port, nodes, networks, heartbeat, quorum and limits (each node's runtime reads them
//! at start: the heartbeat runner, Raft, the leases, the API's ports); a node's fence
//! devices may change (the coordinator reads them from the running configuration).

use std::collections::BTreeSet;
use std::path::PathBuf;

use halcyon_api::{ApplyPreview, ApplyRequest, ConfigResponse, SCHEMA_VERSION, StagedConfig};
use halcyon_config::{Config, PackageName};
use halcyon_events::Rules;
use halcyon_policy::{Engine, Event};
use halcyon_state::{Command, Reply};

use crate::node::Node;
use crate::operations::{Answer, ApiError, await_outcome};
use crate::views::applied_config;

/// Most files in one configuration directory sent to `apply`.
const FILES_MAX: usize = 1024;
/// Longest file name (a path relative to the directory) accepted.
const FILE_NAME_MAX: usize = 1024;

/// `GET /v1/config`.
pub fn running(node: &Node) -> Result<ConfigResponse, ApiError> {
    let state = node.snapshot();
    let config = applied_config(&state)?;
    Ok(ConfigResponse {
        schema_version: SCHEMA_VERSION,
        generation: state.generation(),
        config: Config::clone(config),
        staged: state.staged().map(|s| StagedConfig {
            generation: s.generation,
            by: s.by.clone(),
            since: s.since,
            sequence: s.sequence,
        }),
        sources: state
            .sources()
            .iter()
            .map(|f| halcyon_api::ConfigFile {
                name: f.name.clone(),
                text: f.text.clone(),
            })
            .collect(),
    })
}

/// The new configuration and rules from the request's files, checked as `halcyon check`
/// checks a directory; a mistake is invalid input with every diagnostic.
fn load_files(request: &ApplyRequest) -> Result<(Config, Rules), ApiError> {
    if request.files.is_empty() || request.files.len() > FILES_MAX {
        return Err(ApiError::bad_request(format!(
            "expected 1 to {FILES_MAX} configuration files, got {}",
            request.files.len()
        )));
    }
    let directory = tempfile::Builder::new()
        .prefix("halcyon-apply-")
        .tempdir()
        .map_err(|e| ApiError::unavailable(format!("cannot stage the files: {e}")))?;
    let mut names = BTreeSet::new();
    for file in &request.files {
        let name = file.name.as_str();
        let relative = std::path::Path::new(name);
        let plain = !name.is_empty()
            && name.len() <= FILE_NAME_MAX
            && !name.contains('\0')
            && relative
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain {
            return Err(ApiError::bad_request(format!(
                "bad file name {name:?}: expected a path relative to the configuration \
                 directory, without `..`"
            )));
        }
        if !names.insert(name) {
            return Err(ApiError::bad_request(format!("file {name:?} sent twice")));
        }
        let path = directory.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| ApiError::unavailable(format!("cannot stage {name}: {e}")))?;
        }
        std::fs::write(&path, &file.text)
            .map_err(|e| ApiError::unavailable(format!("cannot stage {name}: {e}")))?;
    }
    let paths = [PathBuf::from(directory.path())];
    let (config, _) = halcyon_config::load(&paths)
        .map_err(|d| ApiError::bad_request(format!("the configuration is not valid:\n{d}")))?;
    let rules = halcyon_events::load_cluster_rules(&paths, config.cluster.events.rules.as_deref())
        .map_err(|d| ApiError::bad_request(format!("the event rules are not valid:\n{d}")))?;
    Ok((config, rules))
}

/// The nodes without their fence devices: only the coordinator reads those, from the
/// running configuration, each time it fences, so `apply` may change them.
fn without_fencing(nodes: &[halcyon_config::Node]) -> Vec<halcyon_config::Node> {
    nodes
        .iter()
        .map(|n| halcyon_config::Node {
            fencing: None,
            ..n.clone()
        })
        .collect()
}

/// Refuses a change to a cluster setting that the nodes read only at start.
fn refuse_cluster_changes(new: &Config, running: &Config) -> Result<(), ApiError> {
    let (n, r) = (&new.cluster, &running.cluster);
    let settings = [
        ("[cluster] name", n.name != r.name),
        ("[cluster] id", n.id != r.id),
        ("[cluster] port", n.port != r.port),
        (
            "[[node]] (nodes and their interfaces)",
            without_fencing(&n.nodes) != without_fencing(&r.nodes),
        ),
        ("[[network]]", n.networks != r.networks),
        ("[heartbeat]", n.heartbeat != r.heartbeat),
        ("[quorum]", n.quorum != r.quorum),
        ("[limits]", n.limits != r.limits),
    ];
    let changed: Vec<&str> = settings
        .iter()
        .filter(|(_, differs)| *differs)
        .map(|(name, _)| *name)
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    Err(ApiError::conflict(format!(
        "refused: apply cannot change {} of a running cluster yet (each node reads them at \
         start); nothing was changed. apply changes packages (add, remove, change), the \
         [events] settings and the event rules",
        changed.join(", ")
    )))
}

/// The packages whose definition changed, and whether anything changed at all.
fn changes(
    new: &Config,
    new_rules: &Rules,
    running: &Config,
    rules: &Rules,
) -> (BTreeSet<PackageName>, bool) {
    let restart: BTreeSet<PackageName> = new
        .packages
        .iter()
        .filter(|(name, p)| running.packages.get(*name).is_some_and(|r| r != *p))
        .map(|(name, _)| name.clone())
        .collect();
    let any = new.packages != running.packages
        || new.cluster.events != running.cluster.events
        || new.cluster.nodes != running.cluster.nodes
        || new_rules != rules;
    (restart, any)
}

/// What the staged files would be, checked against the running cluster.
struct Staging {
    config: Config,
    rules: Rules,
    restart: BTreeSet<PackageName>,
    changed: bool,
    rules_changed: bool,
    generation: u64,
}

fn stage(node: &Node, request: &ApplyRequest) -> Result<Staging, ApiError> {
    let (config, rules) = load_files(request)?;
    let state = node.snapshot();
    let running = applied_config(&state)?;
    refuse_cluster_changes(&config, running)?;
    let (restart, changed) = changes(&config, &rules, running, state.rules());
    let rules_changed = &rules != state.rules();
    Ok(Staging {
        config,
        rules,
        restart,
        changed,
        rules_changed,
        generation: state.generation(),
    })
}

/// `POST /v1/config/preview`: the `config_change` plan the files would get now.
pub fn preview(node: &Node, request: &ApplyRequest) -> Result<ApplyPreview, ApiError> {
    let staging = stage(node, request)?;
    let next_generation = staging.generation + u64::from(staging.changed);
    let plan_text = if staging.changed {
        let event = Event::ConfigChange {
            generation: next_generation,
            restart: staging.restart.clone(),
        };
        let state = node.snapshot();
        let plan = Engine::new(&staging.config)
            .plan(state.cluster(), &event, node.timestamp())
            .map_err(|e| ApiError::conflict(format!("refused: {e}")))?;
        halcyon_policy::render(&plan)
    } else {
        String::new()
    };
    Ok(ApplyPreview {
        schema_version: SCHEMA_VERSION,
        generation: staging.generation,
        next_generation,
        restart: staging.restart.iter().map(|p| p.to_string()).collect(),
        rules_changed: staging.rules_changed,
        plan_text,
    })
}

/// `POST /v1/config/apply` on the leader: stages the files and waits for their
/// `config_change` to end.
pub async fn apply(
    node: &Node,
    request: &ApplyRequest,
    by: &str,
    request_id: Option<&str>,
) -> Result<Answer, ApiError> {
    let staging = stage(node, request)?;
    if !staging.changed {
        return Ok(Answer::note(format!(
            "nothing to apply: the files are the running configuration (generation {})",
            staging.generation
        )));
    }
    // The engine's refusal is known before anything is committed.
    let event = Event::ConfigChange {
        generation: staging.generation + 1,
        restart: staging.restart,
    };
    if let Err(e) =
        Engine::new(&staging.config).plan(node.snapshot().cluster(), &event, node.timestamp())
    {
        return Err(ApiError::conflict(format!("refused: {e}")));
    }
    let command = Command::ConfigApply {
        config: Box::new(staging.config),
        rules: staging.rules,
        sources: request
            .files
            .iter()
            .map(|f| halcyon_state::SourceFile {
                name: f.name.clone(),
                text: f.text.clone(),
            })
            .collect(),
        by: by.to_owned(),
        at: node.timestamp(),
        request: request_id.map(str::to_owned),
    };
    match node.submit(&command).await {
        Ok(Reply::Queued { sequence, .. }) => {
            await_outcome(node, sequence, Some(event.to_string())).await
        }
        Ok(Reply::Ignored { why }) => Err(ApiError::conflict(format!("refused: {why}"))),
        Ok(other) => Err(ApiError::conflict(format!("refused: {other:?}"))),
        Err(e) => Err(ApiError::unavailable(e)),
    }
}
