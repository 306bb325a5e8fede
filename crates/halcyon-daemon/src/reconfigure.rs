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
//! Besides packages, `[events]` and the rules, `apply` changes the cluster settings that
//! only the replicated configuration feeds, so that every node acts on the new value from
//! the same entry on: a node's fence devices (the coordinator reads them each time it
//! fences), `[limits] max_event_duration` (each event takes its maximum when it starts:
//! an event already running keeps its own), `[quorum] auto_shrink`, `shrink_after` and
//! `min_voters` (the coordinator's auto-shrink, `node remove` and `node forget`;
//! `shrink_after` counts from each `node_down`'s commit, so a voter already down longer
//! than a new, shorter value leaves the voters right after the switch). A `min_voters`
//! above the cluster's voters now is refused (no path leaves fewer voters than it).
//!
//! The heartbeat interval and sensitivity (`[heartbeat]`'s and each network's) change too:
//! each node's heartbeats and failure detector take them from the entry on
//! (`node::settings`); every heartbeat names its sender's interval, so receivers judge each
//! sender by its own while nodes switch one after the other. Each node renews its lease at
//! the new interval; its Raft timings (openraft's, fixed when it starts) follow when the
//! daemon restarts (it takes the replicated configuration's), and until every node has, the
//! lease covers the slowest elections nodes may still run (`State::raft_intervals`). So does the lease
//! (`[quorum] lease`, or the one derived from failure detection), checked against the
//! timing rule as `check` does: each node holds the new lease from its first renewal after
//! the entry; a shorter lease leaves the longer ones granted before it unsettled, and every
//! coordinator waits those out until they have certainly ended (`State::longest_lease`,
//! the coordinator's `settle_leases`). So does `[quorum] watchdog`: each node disarms the
//! device it has open and opens the new one (`node::settings`).
//!
//! Nodes are added and removed, and the interfaces of a node that is not a member change
//! (`node_removals`, `node_interface_changes`, checked against the live cluster). So do
//! the quorum witness (`witness_change`) and networks: added or removed with the nodes'
//! interfaces on them, a disk network moved to another device (`network_changes`), each
//! node opening or closing its link as it switches (`node::settings::peers_change`).
//!
//! What `apply` cannot change yet is refused with each setting named: the cluster's name,
//! id, port, the numbers of the nodes and networks, a network's kind, a member's
//! interfaces on a network that stays, and a witness changed but for its number.
//! `cluster_changes` decides (pure).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use halcyon_api::{
    ApplyPreview, ApplyRequest, ConfigResponse, SCHEMA_VERSION, SettingChange, StagedConfig,
};
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

/// Whether a node the running configuration has is in `new` with another number (its Raft
/// id and its disk heartbeat slot).
fn renumbered_nodes(new: &[halcyon_config::Node], running: &[halcyon_config::Node]) -> bool {
    new.iter().any(|n| {
        running
            .iter()
            .any(|r| r.name == n.name && r.number != n.number)
    })
}

/// The names of the networks `new` adds or removes (pure).
fn networks_added_or_removed(
    new: &halcyon_config::Cluster,
    running: &halcyon_config::Cluster,
) -> BTreeSet<halcyon_config::NetworkName> {
    let names = |c: &halcyon_config::Cluster| -> BTreeSet<halcyon_config::NetworkName> {
        c.networks.iter().map(|n| n.name.clone()).collect()
    };
    let (new, running) = (names(new), names(running));
    new.symmetric_difference(&running).cloned().collect()
}

/// The nodes the running configuration has whose interfaces `new` changes (pure; their
/// fence devices may change freely), then each change with what happens. An interface
/// added or removed with its network (an ip network `new` adds or removes) may change on
/// any node: each node heartbeats on it from the switch, and Raft and the API reach a
/// node there once its daemon restarts with a certificate naming the address. Any other
/// change is to a node that must not be a member (`members`: halted by an administrator,
/// or down) nor the coordinator, because its daemon listens and heartbeats on the
/// interfaces it started with.
pub(crate) fn node_interface_changes(
    new: &halcyon_config::Cluster,
    running: &halcyon_config::Cluster,
    members: &BTreeSet<halcyon_config::NodeName>,
    coordinator: Option<&str>,
) -> Result<Vec<SettingChange>, String> {
    let new_nodes = without_fencing(&new.nodes);
    let changed: Vec<(halcyon_config::Node, &halcyon_config::Node)> =
        without_fencing(&running.nodes)
            .into_iter()
            .filter_map(|r| {
                let n = new_nodes
                    .iter()
                    .find(|n| n.name == r.name && n.number == r.number)?;
                (n.interfaces != r.interfaces).then_some((r, n))
            })
            .collect();
    // Interfaces on networks that stay: those a member must keep.
    let with_network = networks_added_or_removed(new, running);
    let kept = |n: &halcyon_config::Node| -> Vec<halcyon_config::Interface> {
        n.interfaces
            .iter()
            .filter(|i| !with_network.contains(&i.network))
            .cloned()
            .collect()
    };
    let with_its_network =
        |was: &halcyon_config::Node, now: &halcyon_config::Node| kept(was) == kept(now);
    let mut why = Vec::new();
    for (was, now) in &changed {
        let name = was.name.as_str();
        if with_its_network(was, now) {
            continue;
        }
        if members.contains(&was.name) {
            why.push(format!(
                "{name} is a member and its interfaces change: halt it first (`halcyon node \
                 halt {name}`: its packages move to other nodes), then apply, then restart its \
                 daemon with the new files"
            ));
        } else if coordinator == Some(name) {
            why.push(format!(
                "{name} is the coordinator and its interfaces change: stop its daemon (another \
                 node takes over), then apply"
            ));
        }
    }
    if !why.is_empty() {
        return Err(format!("refused: {}; nothing was changed", why.join("; ")));
    }
    Ok(changed
        .iter()
        .map(|(was, now)| SettingChange {
            setting: format!("[[node]] {}", was.name),
            old: node_text(was),
            new: node_text(now),
            note: Some(if with_its_network(was, now) {
                format!(
                    "interfaces added or removed with their network: {0} heartbeats, \
                     listens and is reached there (Raft, the API) from the config_change \
                     entry on (an added address must be up on it; the others, and the CLI \
                     with --config, check its certificate for its name; `halcyon status --api` \
                     at an added address needs a certificate naming it: `halcyon init node {0} \
                     --force`)",
                    was.name
                )
            } else {
                format!(
                    "interfaces changed (not a member): every node heartbeats it and reaches \
                     it at its new addresses from the config_change entry on (Raft's \
                     membership too); issue it a certificate for them (`halcyon init node {0} \
                     --force`: a node's certificate names its addresses), restart its daemon \
                     with these files and that certificate, then, halted, it joins with \
                     `halcyon node start {0}`",
                    was.name
                )
            }),
        })
        .collect())
}

/// What the live cluster says of the nodes `new` removes from `running` (pure): each one
/// must not be a member (`members`: halted by an administrator, or down) nor the
/// coordinator, and the voters left (`voters`, by name, less the removed) at least `new`'s
/// `min_voters`; then each removal with what happens to it. Serviceguard's `cmapplyconf`
/// likewise deletes only halted nodes.
pub(crate) fn node_removals(
    new: &halcyon_config::Cluster,
    running: &halcyon_config::Cluster,
    members: &BTreeSet<halcyon_config::NodeName>,
    coordinator: Option<&str>,
    voters: &[String],
) -> Result<Vec<SettingChange>, String> {
    let removed: Vec<&halcyon_config::Node> = running
        .nodes
        .iter()
        .filter(|r| new.node(r.name.as_str()).is_none())
        .collect();
    if removed.is_empty() {
        return Ok(Vec::new());
    }
    let mut why = Vec::new();
    for node in &removed {
        let name = node.name.as_str();
        if members.contains(&node.name) {
            why.push(format!(
                "{name} is a member: halt it first (`halcyon node halt {name}`: its packages \
                 move to other nodes), then apply"
            ));
        } else if coordinator == Some(name) {
            why.push(format!(
                "{name} is the coordinator: stop its daemon (another node takes over), then \
                 apply"
            ));
        }
    }
    let left = voters
        .iter()
        .filter(|v| !removed.iter().any(|r| r.name.as_str() == v.as_str()))
        .count();
    if left < new.min_voters() {
        why.push(format!(
            "removing {} leaves {left} voter(s); [quorum] min_voters of the new configuration \
             is {}",
            removed
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            new.min_voters()
        ));
    }
    if !why.is_empty() {
        return Err(format!("refused: {}; nothing was changed", why.join("; ")));
    }
    Ok(removed
        .iter()
        .map(|n| SettingChange {
            setting: format!("[[node]] {}", n.name),
            old: node_text(n),
            new: "-".to_owned(),
            note: Some(
                "removed (not a member): every node stops heartbeating it from the \
                 config_change entry on, and it leaves the Raft membership after; stop its \
                 daemon"
                    .to_owned(),
            ),
        })
        .collect())
}

/// Why nodes (or the witness) `new` adds cannot be added yet (pure): a number that is still
/// a Raft member (`raft_members`, voters and learners) — a node or witness removed earlier
/// that has not left the membership yet; the new one would be taken for it.
pub(crate) fn numbers_still_in_raft(
    new: &halcyon_config::Cluster,
    running: &halcyon_config::Cluster,
    raft_members: &BTreeSet<u32>,
) -> Option<String> {
    let added_witness = new
        .quorum
        .witness
        .as_ref()
        .filter(|w| running.quorum.witness.as_ref() != Some(*w));
    let taken: Vec<String> = new
        .nodes
        .iter()
        .filter(|n| running.node(n.name.as_str()).is_none() && raft_members.contains(&n.number))
        .map(|n| format!("{} (number {})", n.name, n.number))
        .chain(
            added_witness
                .filter(|w| raft_members.contains(&w.number))
                .map(|w| format!("witness {} (number {})", w.name, w.number)),
        )
        .collect();
    (!taken.is_empty()).then(|| {
        format!(
            "refused: {}: the number is still a Raft member, a node removed earlier that has \
             not left the membership yet; apply again once it has (`halcyon status` lists the \
             voters), or choose another number; nothing was changed",
            taken.join(", ")
        )
    })
}

/// A node as the diff shows it: its number and addresses.
fn node_text(n: &halcyon_config::Node) -> String {
    let addresses: Vec<String> = n
        .interfaces
        .iter()
        .filter_map(|i| i.address.map(|a| format!("{a} on {}", i.network)))
        .collect();
    format!("node {}, {}", n.number, addresses.join(", "))
}

/// The nodes `new` adds, each with what happens to it.
fn added_nodes(
    new: &halcyon_config::Cluster,
    running: &halcyon_config::Cluster,
) -> Vec<SettingChange> {
    new.nodes
        .iter()
        .filter(|n| running.node(n.name.as_str()).is_none())
        .map(|n| SettingChange {
            setting: format!("[[node]] {}", n.name),
            old: "-".to_owned(),
            new: node_text(n),
            note: Some(format!(
                "added: every node heartbeats it from the config_change entry on; it joins \
                     the voters once its daemon, started with these files and its credentials \
                     (`halcyon init node {name}` with the cluster's CA), is heard; it takes \
                     packages once it is a member",
                name = n.name
            )),
        })
        .collect()
}

/// The networks `new` adds or removes and the disk networks it moves to another device
/// (pure), each with what happens, or why `apply` refuses the change of the networks.
/// Each node opens its heartbeat link on a network added (a disk network's device, an ip
/// network's address) and closes the one of a network removed when it switches to the new
/// configuration, its detector watching the network's paths from then on, and its carrier
/// watch an ip network's primary interface (`node::settings::peers_change`); Raft's
/// membership follows the nodes' addresses (the coordinator's readdressing), and each
/// daemon listens at an added address once it restarts (a node's certificate names its
/// addresses). Refused: a network whose kind changes, and one whose number changes (a
/// network's number is its place in the cluster file, and every heartbeat carries it:
/// nodes switching one after the other would take each other's heartbeats for another
/// network's). A heartbeat interval or sensitivity and an `ip` network's subnets change
/// apart (`interval_settings`, `sensitivity_settings`, `subnet_settings`), the nodes'
/// interfaces in `node_interface_changes`.
fn network_changes(
    new: &halcyon_config::Cluster,
    r: &halcyon_config::Cluster,
) -> Result<Vec<SettingChange>, Vec<String>> {
    use halcyon_config::NetworkKind;
    let named = |networks: &'_ [halcyon_config::Network], name: &halcyon_config::NetworkName| {
        networks.iter().find(|n| n.name == *name).cloned()
    };
    let (mut changes, mut why) = (Vec::new(), Vec::new());
    for was in &r.networks {
        match named(&new.networks, &was.name) {
            Some(n) if n.kind != was.kind => why.push(format!(
                "apply cannot change network {}'s kind (remove it in one apply, add it back \
                 in another)",
                n.name
            )),
            Some(n) if n.number != was.number => why.push(format!(
                "apply cannot renumber network {} ({} -> {}): a network's number is its \
                 place in the cluster file, and every heartbeat carries it; keep the \
                 networks that stay in their order, add new ones after them, and remove \
                 only the last ones",
                n.name, was.number, n.number
            )),
            Some(n) if n.kind == NetworkKind::Disk && n.device != was.device => {
                changes.push(SettingChange {
                    setting: format!("[[network]] {} device", n.name),
                    old: device_of(was),
                    new: device_of(&n),
                    note: Some(
                        "each node closes its heartbeat link on the old device and opens the \
                         new one as it switches; until every node has, the paths on this \
                         network may go down (a network_down on it, no node_down)"
                            .to_owned(),
                    ),
                });
            }
            Some(_) => {}
            None => changes.push(network_removed(was)),
        }
    }
    changes.extend(
        new.networks
            .iter()
            .filter(|n| named(&r.networks, &n.name).is_none())
            .map(network_added),
    );
    if why.is_empty() {
        Ok(changes)
    } else {
        Err(why)
    }
}

/// A disk network's device as `apply` shows it.
fn device_of(n: &halcyon_config::Network) -> String {
    n.device.clone().unwrap_or_default()
}

/// What happens to network `was`, which `apply` removes.
fn network_removed(was: &halcyon_config::Network) -> SettingChange {
    let (old, note) = match was.kind {
        halcyon_config::NetworkKind::Ip => (
            "ip".to_owned(),
            "each node closes its heartbeat link and stops watching its interface's carrier \
             as it switches; Raft and the API no longer reach the nodes at their addresses on \
             it (each daemon listens there until it restarts)",
        ),
        halcyon_config::NetworkKind::Disk => (
            format!("disk on {}", device_of(was)),
            "each node closes its heartbeat link on the device as it switches; a node heard \
             only there is no longer heard at all",
        ),
    };
    SettingChange {
        setting: format!("[[network]] {}", was.name),
        old,
        new: "(removed)".to_owned(),
        note: Some(note.to_owned()),
    }
}

/// What happens to network `n`, which `apply` adds.
fn network_added(n: &halcyon_config::Network) -> SettingChange {
    let heartbeat = format!(
        "heartbeat every {} x {}",
        humantime::format_duration(n.heartbeat.interval),
        n.heartbeat.sensitivity
    );
    let (new, note) = match n.kind {
        halcyon_config::NetworkKind::Ip => (
            format!("ip, {heartbeat}"),
            format!(
                "each node heartbeats on {} and watches its interface's carrier from the \
                 switch (its address there must be up: one that is not says so in its log and \
                 asks again, and the others see its path down); Raft and the API use the new \
                 addresses once each daemon restarts with a certificate naming them (the \
                 nodes below)",
                n.name
            ),
        ),
        halcyon_config::NetworkKind::Disk => (
            format!("disk on {}, {heartbeat}", device_of(n)),
            format!(
                "each node opens its heartbeat link on {} as it switches (every node must \
                 reach it there; one that cannot says so in its log, asks again, and the \
                 others see its path on {} down)",
                device_of(n),
                n.name
            ),
        ),
    };
    SettingChange {
        setting: format!("[[network]] {}", n.name),
        old: "(none)".to_owned(),
        new,
        note: Some(note),
    }
}

/// The `ip` networks whose subnets `new` changes (pure), each with both lists (networks
/// matched by name).
fn subnet_settings(
    new: &halcyon_config::Cluster,
    r: &halcyon_config::Cluster,
) -> Vec<SettingChange> {
    let list = |n: &halcyon_config::Network| {
        n.subnets
            .iter()
            .map(|s| format!("{}/{}", s.address, s.prefix))
            .collect::<Vec<_>>()
            .join(", ")
    };
    new.networks
        .iter()
        .filter_map(|n| Some((n, r.networks.iter().find(|was| was.name == n.name)?)))
        .filter(|(n, was)| n.subnets != was.subnets)
        .map(|(n, was)| SettingChange {
            setting: format!("[[network]] {} subnets", n.name),
            old: list(was),
            new: list(n),
            note: Some(
                "where node and package addresses on it may lie (these files were \
                     checked against them); nothing running reads them"
                    .to_owned(),
            ),
        })
        .collect()
}

/// What `apply` changes besides packages, `[events]`, the event rules and fence devices;
/// the refusal names these as what it can change.
const LIVE_SETTINGS: &str = "nodes, the [quorum] witness and networks added and removed, a \
                             disk network's device, [limits] max_event_duration, [quorum] \
                             auto_shrink, shrink_after, min_voters, lease and watchdog, the \
                             heartbeat interval and sensitivity, and an ip network's subnets";

/// The decision on the cluster settings (pure): the setting changes `apply` makes live,
/// or why it refuses the files. `voters`: the cluster's voters now (Raft's membership, by
/// name), which a new `min_voters` is checked against.
///
/// Refused, each by name: what each node's runtime reads only at start (the cluster's
/// name, id and port, the nodes' numbers), a network renumbered or of another kind
/// ([`network_changes`]), a witness
/// changed in place ([`witness_change`]), and a configured lease that does not outlast the
/// elections of the Raft timings nodes may still run (`raft_longest`: the longest interval
/// they may be derived from now, `State::raft_intervals`). Accepted: what only the
/// replicated configuration feeds, so every node switches to it at the `config_change`
/// entry: a witness added or removed (the coordinator changes the Raft membership after
/// the switch, as for nodes), `[limits] max_event_duration` (each event
/// takes it when it starts), `[quorum] auto_shrink`, `shrink_after` and `min_voters` (the
/// coordinator's auto-shrink and the refusals of `node remove` and `node forget`), `[quorum]
/// watchdog` (each node switches its device), the heartbeat interval and sensitivity (each
/// node's heartbeats and detector follow the running configuration) and the lease (see
/// the module). A larger `min_voters` than the cluster's voters now
/// is refused: auto-shrink, `node remove` and `node forget` never leave fewer voters than
/// `min_voters`, and apply keeps that true as well.
pub(crate) fn cluster_changes(
    new: &Config,
    running: &Config,
    raft_longest: Duration,
    voters: &[String],
) -> Result<Vec<SettingChange>, String> {
    // Every field named, so that a new setting cannot be forgotten here.
    let halcyon_config::Cluster {
        name,
        id,
        port,
        nodes,
        // `network_changes`, `subnet_settings`.
        networks: _,
        // `interval_settings`, `sensitivity_settings`.
        heartbeat: _,
        quorum,
        events: _,
        // `limit_and_quorum_settings`.
        limits: _,
    } = &new.cluster;
    let halcyon_config::Quorum {
        witness,
        // `limit_and_quorum_settings` and `min_voters_refusal`.
        auto_shrink: _,
        shrink_after: _,
        min_voters: _,
        // `lease_setting`.
        lease: _,
        watchdog,
    } = quorum;
    let r = &running.cluster;
    let rq = &r.quorum;
    let refused = [
        ("[cluster] name", *name != r.name),
        ("[cluster] id", *id != r.id),
        ("[cluster] port", *port != r.port),
    ];
    let refused: Vec<&str> = refused
        .iter()
        .filter(|(_, differs)| *differs)
        .map(|(setting, _)| *setting)
        .collect();
    let mut why = Vec::new();
    if !refused.is_empty() {
        why.push(format!(
            "apply cannot change {} of a running cluster (they are the cluster's identity: \
             every node's certificate names the id, every heartbeat and message carries it, \
             and each daemon listens at the port from its start; as with Serviceguard's \
             cmdeleteconf and cmapplyconf, build a new cluster from files that have them, \
             after `halcyon snapshot save DIR` of this one's configuration)",
            refused.join(", ")
        ));
    }
    if renumbered_nodes(nodes, &r.nodes) {
        why.push(
            "apply cannot change [[node]] number of a node the cluster has (its Raft id and \
             its disk heartbeat slot; a Raft voter keeps its number only with its store): to \
             renumber one, halt it (`halcyon node halt NAME`), remove it in one apply, and add \
             it back under the new number in another, its daemon started with an empty state \
             directory"
                .to_owned(),
        );
    }
    let networks = network_changes(&new.cluster, r).unwrap_or_else(|refused| {
        why.extend(refused);
        Vec::new()
    });
    why.extend(min_voters_refusal(&new.cluster, r, voters));
    why.extend(lease_refusal(&new.cluster, raft_longest));
    let witness = witness_change(witness.as_ref(), rq.witness.as_ref(), &new.cluster, voters);
    let witness = match witness {
        Ok(change) => change,
        Err(refusal) => {
            why.push(refusal);
            None
        }
    };
    if !why.is_empty() {
        return Err(format!(
            "refused: {}; nothing was changed. apply changes packages (add, remove, change), \
             the [events] settings, the event rules, fence devices, {LIVE_SETTINGS}",
            why.join("; ")
        ));
    }
    let mut changes = added_nodes(&new.cluster, r);
    changes.extend(networks);
    changes.extend(witness);
    changes.extend(interval_settings(&new.cluster, r, raft_longest));
    changes.extend(sensitivity_settings(&new.cluster, r));
    changes.extend(subnet_settings(&new.cluster, r));
    changes.extend(lease_setting(&new.cluster, r, raft_longest));
    changes.extend(watchdog_setting(watchdog.as_ref(), rq.watchdog.as_ref()));
    changes.extend(limit_and_quorum_settings(&new.cluster, r, voters.len()));
    Ok(changes)
}

/// The witness `new` adds, removes or replaces (pure), with what happens to it; `voters`:
/// the cluster's voters now, by name. A witness that leaves the configuration leaves the
/// Raft membership after the switch, and one that enters it joins the voters once it
/// answers (the coordinator). Refused: a witness changed but for its number (a Raft voter
/// keeps its number only with its store: a witness on another host with the same number
/// could vote twice in one term), and one leaving that would leave fewer voters than the
/// new configuration's `min_voters`.
fn witness_change(
    new: Option<&halcyon_config::Witness>,
    old: Option<&halcyon_config::Witness>,
    cluster: &halcyon_config::Cluster,
    voters: &[String],
) -> Result<Option<SettingChange>, String> {
    let text =
        |w: &halcyon_config::Witness| format!("{}, number {}, {}", w.name, w.number, w.address);
    if old == new {
        return Ok(None);
    }
    if let (Some(o), Some(n)) = (old, new)
        && o.number == n.number
    {
        return Err(format!(
            "[quorum] witness changes but keeps number {} ({} -> {}): a Raft voter keeps its \
             number only with its store, so a new witness takes a new number (the old one \
             leaves the voters, the new one joins them)",
            n.number,
            text(o),
            text(n)
        ));
    }
    // The voters once the old witness has left (all of them when there is none).
    let left: Vec<&String> = voters
        .iter()
        .filter(|v| old.is_none_or(|o| **v != o.name.as_str()))
        .collect();
    let mut notes = Vec::new();
    if let Some(o) = old {
        let voting = left.len() < voters.len();
        let minimum = cluster.min_voters();
        if voting && left.len() < minimum {
            return Err(format!(
                "removing witness {} would leave {} voter(s) ({}); the minimum is {minimum} \
                 ([quorum] min_voters)",
                o.name,
                left.len(),
                left.iter()
                    .map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        notes.push(format!(
            "{} leaves the Raft membership after the switch ({} voter(s) left until another \
             joins); stop its daemon then",
            o.name,
            left.len()
        ));
    }
    if let Some(n) = new {
        let until = match old {
            // The nodes refuse the old witness's certificate from the switch on.
            Some(_) => format!(
                "until then the quorum rests on the {} voter(s) left: start it before \
                 applying, or right after",
                left.len()
            ),
            None => "until then the voters stay as they are".to_owned(),
        };
        notes.push(format!(
            "{} joins the voters once its daemon answers at {} (`halcyon witness` started \
             with these files and its credentials: `halcyon init node {}` with the cluster's \
             CA); {until}",
            n.name,
            crate::peers::witness_api(cluster, n),
            n.name
        ));
    }
    Ok(Some(SettingChange {
        setting: "[quorum] witness".to_owned(),
        old: old.map_or_else(|| "-".to_owned(), text),
        new: new.map_or_else(|| "-".to_owned(), text),
        note: Some(notes.join("; ")),
    }))
}

/// Why `new`'s `min_voters` is refused against the `voters` the cluster has now (by name):
/// a changed value above them (auto-shrink, `node remove` and `node forget` never leave
/// fewer voters than `min_voters`, and apply does not either).
fn min_voters_refusal(
    new: &halcyon_config::Cluster,
    r: &halcyon_config::Cluster,
    voters: &[String],
) -> Option<String> {
    let minimum = new.min_voters();
    (new.quorum.min_voters != r.quorum.min_voters && minimum > voters.len()).then(|| {
        format!(
            "[quorum] min_voters {minimum} is more than the {} voter(s) the cluster has now \
             ({}): auto-shrink, `node remove` and `node forget` never leave fewer voters than \
             min_voters, and apply does not either; add the missing voters first (a node \
             auto-shrink took out becomes a voter again when it is back; `halcyon node add \
             NAME` for one an administrator removed), or apply at most {}",
            voters.len(),
            voters.join(", "),
            voters.len()
        )
    })
}

/// The `[limits]` and `[quorum]` settings `new` changes from `r` (pure), each with both
/// values and what the change does; `voters`: how many the cluster has now.
fn limit_and_quorum_settings(
    new: &halcyon_config::Cluster,
    r: &halcyon_config::Cluster,
    voters: usize,
) -> Vec<SettingChange> {
    let halcyon_config::Quorum {
        auto_shrink,
        shrink_after,
        min_voters,
        ..
    } = &new.quorum;
    let max_event_duration = &new.limits.max_event_duration;
    let (rq, rl) = (&r.quorum, &r.limits);
    let minimum = new.min_voters();
    let show = |d: &std::time::Duration| humantime::format_duration(*d).to_string();
    let mut changes = Vec::new();
    if *max_event_duration != rl.max_event_duration {
        changes.push(SettingChange {
            setting: "[limits] max_event_duration".to_owned(),
            old: show(&rl.max_event_duration),
            new: show(max_event_duration),
            note: Some(
                "for every event that starts from the config_change on (the config_change \
                 included); an event already running keeps the maximum it started with"
                    .to_owned(),
            ),
        });
    }
    if *auto_shrink != rq.auto_shrink {
        let note = if *auto_shrink {
            format!(
                "a voter committed down for shrink_after ({}) leaves the voters from the \
                 switch on, counted from its node_down: one already down that long leaves at once",
                show(shrink_after)
            )
        } else {
            "no voter leaves by itself any more; a node auto-shrink took out still becomes a \
             voter again when it is back"
                .to_owned()
        };
        changes.push(SettingChange {
            setting: "[quorum] auto_shrink".to_owned(),
            old: rq.auto_shrink.to_string(),
            new: auto_shrink.to_string(),
            note: Some(note),
        });
    }
    if *shrink_after != rq.shrink_after {
        changes.push(SettingChange {
            setting: "[quorum] shrink_after".to_owned(),
            old: show(&rq.shrink_after),
            new: show(shrink_after),
            note: auto_shrink.then(|| {
                "from the switch on, counted from each node_down: a voter already down longer \
                 than the new value leaves the voters at once"
                    .to_owned()
            }),
        });
    }
    if *min_voters != rq.min_voters {
        let text = |c: &halcyon_config::Cluster| match c.quorum.min_voters {
            0 => format!("default ({})", c.min_voters()),
            n => n.to_string(),
        };
        changes.push(SettingChange {
            setting: "[quorum] min_voters".to_owned(),
            old: text(r),
            new: text(new),
            note: Some(format!(
                "auto-shrink, `node remove` and `node forget` leave at least {minimum} voters \
                 ({} now)",
                voters
            )),
        });
    }
    changes
}

/// The packages whose definition changed so that they halt and run again where they run
/// (`Package::restarts_from`, as the replicated state computes them), and whether anything
/// changed at all.
fn changes(
    new: &Config,
    new_rules: &Rules,
    running: &Config,
    rules: &Rules,
) -> (BTreeSet<PackageName>, bool) {
    let restart: BTreeSet<PackageName> = new
        .packages
        .iter()
        .filter(|(name, p)| {
            running
                .packages
                .get(*name)
                .is_some_and(|r| p.restarts_from(r))
        })
        .map(|(name, _)| name.clone())
        .collect();
    // Every other cluster setting that differs was refused before (`cluster_changes`).
    let any =
        new.packages != running.packages || new.cluster != running.cluster || new_rules != rules;
    (restart, any)
}

/// What the staged files would be, checked against the running cluster.
struct Staging {
    config: Config,
    rules: Rules,
    restart: BTreeSet<PackageName>,
    changed: bool,
    rules_changed: bool,
    settings: Vec<SettingChange>,
    generation: u64,
}

fn stage(node: &Node, request: &ApplyRequest) -> Result<Staging, ApiError> {
    let (config, rules) = load_files(request)?;
    let state = node.snapshot();
    let running = applied_config(&state)?;
    let voters = node.voter_names();
    let (_, raft_longest) = state
        .raft_intervals()
        .expect("a running configuration has Raft intervals");
    let mut settings =
        cluster_changes(&config, running, raft_longest, &voters).map_err(ApiError::conflict)?;
    let raft_members = node.raft_member_numbers();
    if let Some(why) = numbers_still_in_raft(&config.cluster, &running.cluster, &raft_members) {
        return Err(ApiError::conflict(why));
    }
    let coordinator = node.leader_api().map(|(name, _)| name);
    settings.extend(
        node_interface_changes(
            &config.cluster,
            &running.cluster,
            &state.cluster().members,
            coordinator.as_deref(),
        )
        .map_err(ApiError::conflict)?,
    );
    settings.extend(
        node_removals(
            &config.cluster,
            &running.cluster,
            &state.cluster().members,
            coordinator.as_deref(),
            &voters,
        )
        .map_err(ApiError::conflict)?,
    );
    let (restart, changed) = changes(&config, &rules, running, state.rules());
    let rules_changed = &rules != state.rules();
    Ok(Staging {
        config,
        rules,
        restart,
        changed,
        rules_changed,
        settings,
        generation: state.generation(),
    })
}

/// `POST /v1/config/preview`: the `config_change` plan the files would get now, or why
/// `apply` would refuse them (the addresses they bring in are checked from this node).
pub async fn preview(node: &Node, request: &ApplyRequest) -> Result<ApplyPreview, ApiError> {
    let staging = stage(node, request)?;
    if staging.changed {
        check_new_addresses(node, &staging.config).await?;
    }
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
        settings: staging.settings,
        plan_text,
    })
}

/// The ip resources of `new`'s packages with an address the running configuration's
/// packages do not have (pure): the addresses `apply` brings into the cluster.
pub(crate) fn new_addresses(
    new: &Config,
    running: &Config,
) -> Vec<(PackageName, halcyon_config::IpResource)> {
    let ip = |config: &Config| -> Vec<(PackageName, halcyon_config::IpResource)> {
        config
            .packages
            .iter()
            .flat_map(|(name, p)| {
                p.resources.iter().filter_map(move |r| match r {
                    halcyon_config::Resource::Ip(ip) => Some((name.clone(), ip.clone())),
                    _ => None,
                })
            })
            .collect()
    };
    let known: BTreeSet<std::net::IpAddr> = ip(running)
        .iter()
        .flat_map(|(_, ip)| ip.addresses.iter().map(|a| a.address))
        .collect();
    ip(new)
        .into_iter()
        .filter(|(_, ip)| ip.addresses.iter().any(|a| !known.contains(&a.address)))
        .collect()
}

/// Refuses the files when an address they bring into the cluster is already taken, seen
/// from this node (the leader for `apply`, the node asked for a preview) on each network it
/// is on: on one of its interfaces, or
/// answered by another host (ARP probe). Addresses on networks this node is not on are left
/// to the start, which probes again.
async fn check_new_addresses(node: &Node, new: &Config) -> Result<(), ApiError> {
    let state = node.snapshot();
    let running = applied_config(&state)?;
    let Some(me) = new.node(node.name.as_str()) else {
        return Ok(());
    };
    for (package, ip) in new_addresses(new, running) {
        if me.interface_on(ip.network.as_str()).is_none() {
            continue;
        }
        if let Err(why) = node.platform.resources.check_address_free(&ip, me).await {
            return Err(ApiError::conflict(format!(
                "refused: package {package}: {why}; nothing was changed"
            )));
        }
    }
    Ok(())
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
    check_new_addresses(node, &staging.config).await?;
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

/// The heartbeat sensitivities `apply` changes (`[heartbeat]`'s and each network's).
fn sensitivity_settings(
    new: &halcyon_config::Cluster,
    r: &halcyon_config::Cluster,
) -> Vec<SettingChange> {
    let show = |d: &std::time::Duration| humantime::format_duration(*d).to_string();
    let mut changes = Vec::new();
    if new.heartbeat.sensitivity != r.heartbeat.sensitivity {
        changes.push(SettingChange {
            setting: "[heartbeat] sensitivity".to_owned(),
            old: r.heartbeat.sensitivity.to_string(),
            new: new.heartbeat.sensitivity.to_string(),
            note: Some("the networks without a heartbeat of their own take it (below)".to_owned()),
        });
    }
    for (network, was) in changed_networks(new, r, |h| h.sensitivity) {
        changes.push(SettingChange {
            setting: format!("[[network]] {} heartbeat sensitivity", network.name),
            old: was.heartbeat.sensitivity.to_string(),
            new: network.heartbeat.sensitivity.to_string(),
            note: Some(format!(
                "a path on {} is down after {} instead of {} without heartbeats, on each node \
                 from the config_change entry on",
                network.name,
                show(&network.heartbeat.detection_time()),
                show(&was.heartbeat.detection_time()),
            )),
        });
    }
    changes
}

/// The longest heartbeat interval any node's Raft timings may be derived from after `new`
/// is switched to (`State::raft_intervals`: the running ones, `raft_longest` the longest,
/// and `new`'s, which a node takes when it restarts).
fn raft_longest_after(new: &halcyon_config::Cluster, raft_longest: Duration) -> Duration {
    raft_longest.max(new.heartbeat.interval)
}

/// Why `new`'s configured lease is refused although `check` accepted it: it does not
/// outlast the elections of the Raft timings nodes may still run (a shorter heartbeat
/// interval leaves each node's Raft on its old timings until it restarts).
fn lease_refusal(new: &halcyon_config::Cluster, raft_longest: Duration) -> Option<String> {
    let raft = raft_longest_after(new, raft_longest);
    let show = |d: Duration| humantime::format_duration(d).to_string();
    match new.check_lease_with_raft(raft) {
        Ok(()) => None,
        Err(halcyon_config::timing::LeaseTooShort::Election { election, minimum }) => {
            Some(format!(
                "[quorum] lease = \"{}\" is shorter than {} (an election of up to {} with the \
                 Raft timings of a {} heartbeat, which nodes run until they restart, plus two \
                 renewal intervals, for the last renewal, then the next one's confirmation and \
                 the fencing lead, and the margin): configure at least that, or no lease to \
                 have it derived",
                show(
                    new.quorum
                        .lease
                        .expect("only a configured lease is refused")
                ),
                show(minimum),
                show(election),
                show(raft)
            ))
        }
        Err(halcyon_config::timing::LeaseTooShort::Detection { detection }) => Some(format!(
            "[quorum] lease is shorter than failure detection ({})",
            show(detection)
        )),
    }
}

/// The networks of `new` that `r` has too, with `r`'s, whose heartbeat differs in `field`.
fn changed_networks<'a, T: PartialEq>(
    new: &'a halcyon_config::Cluster,
    r: &'a halcyon_config::Cluster,
    field: impl Fn(&halcyon_config::Heartbeat) -> T + 'a,
) -> impl Iterator<Item = (&'a halcyon_config::Network, &'a halcyon_config::Network)> + 'a {
    new.networks.iter().filter_map(move |network| {
        let was = r.networks.iter().find(|n| n.name == network.name)?;
        (field(&network.heartbeat) != field(&was.heartbeat)).then_some((network, was))
    })
}

/// The heartbeat intervals `apply` changes (`[heartbeat]`'s and each network's), with what
/// each node does (pure).
fn interval_settings(
    new: &halcyon_config::Cluster,
    r: &halcyon_config::Cluster,
    raft_longest: Duration,
) -> Vec<SettingChange> {
    let show = |d: &Duration| humantime::format_duration(*d).to_string();
    let mut changes = Vec::new();
    if new.heartbeat.interval != r.heartbeat.interval {
        let raft = raft_longest_after(new, raft_longest);
        let elections = if raft > new.heartbeat.interval {
            format!(
                "until every node has restarted, elections may take as long as with a {} \
                 heartbeat and the lease covers them (`status` names the nodes)",
                show(&raft)
            )
        } else {
            "every node's elections are at least that fast already".to_owned()
        };
        changes.push(SettingChange {
            setting: "[heartbeat] interval".to_owned(),
            old: show(&r.heartbeat.interval),
            new: show(&new.heartbeat.interval),
            note: Some(format!(
                "each node renews its lease every {} from the config_change entry on, and the \
                 networks without a heartbeat of their own take it (below); Raft's timings \
                 (openraft's elections) are fixed when a daemon starts: each node takes those \
                 of {} when it restarts; {elections}",
                show(&new.heartbeat.interval),
                show(&new.heartbeat.interval),
            )),
        });
    }
    for (network, was) in changed_networks(new, r, |h| h.interval) {
        changes.push(SettingChange {
            setting: format!("[[network]] {} heartbeat interval", network.name),
            old: show(&was.heartbeat.interval),
            new: show(&network.heartbeat.interval),
            note: Some(format!(
                "each node heartbeats on {} every {} from the config_change entry on, and \
                 says so in every heartbeat: a receiver judges each sender by the interval \
                 it announces, and a node moving to a longer interval first sends {} more at \
                 the old one, so nodes switching at different moments raise no false \
                 failure; a path is down after {} instead of {} without heartbeats",
                network.name,
                show(&network.heartbeat.interval),
                network.heartbeat.sensitivity,
                show(&network.heartbeat.detection_time()),
                show(&was.heartbeat.detection_time()),
            )),
        });
    }
    changes
}

/// The lease `new` gives instead of `r`'s (configured, or derived from failure detection
/// and the election bound, which `check` has checked it against), with what the switch does
/// (pure). `raft_longest`: the longest interval any node's Raft timings may be derived from
/// now (`State::raft_intervals`), which the derived lease covers.
fn lease_setting(
    new: &halcyon_config::Cluster,
    r: &halcyon_config::Cluster,
    raft_longest: Duration,
) -> Option<SettingChange> {
    let show = |d: std::time::Duration| humantime::format_duration(d).to_string();
    let old_lease = r.lease_with_raft(raft_longest);
    let new_lease = new.lease_with_raft(raft_longest_after(new, raft_longest));
    if old_lease == new_lease && new.quorum.lease == r.quorum.lease {
        return None;
    }
    let show_setting = |c: &halcyon_config::Cluster, lease: Duration| match c.quorum.lease {
        Some(l) => show(l),
        None => format!("{} (derived)", show(lease)),
    };
    let note = if new_lease < old_lease {
        format!(
            "each node holds {} leases from its first renewal after the config_change entry; \
             until every {} lease granted before has certainly ended (about {} after the \
             entry; `status` shows it), a coordinator still waits {} for a node's lease to end",
            show(new_lease),
            show(old_lease),
            show(old_lease),
            show(old_lease)
        )
    } else if new_lease > old_lease {
        format!(
            "each node holds {} leases from its first renewal after the config_change entry; \
             a coordinator waits {} for a node's lease to end from the entry on",
            show(new_lease),
            show(new_lease)
        )
    } else {
        format!("the lease stays {}", show(new_lease))
    };
    Some(SettingChange {
        setting: "[quorum] lease".to_owned(),
        old: show_setting(r, old_lease),
        new: show_setting(new, new_lease),
        note: Some(note),
    })
}

/// `[quorum] watchdog` changed from `old` to `new`, with what each node does.
fn watchdog_setting(new: Option<&String>, old: Option<&String>) -> Option<SettingChange> {
    if new == old {
        return None;
    }
    let text = |w: Option<&String>| w.cloned().unwrap_or_else(|| "none".to_owned());
    let note = match new {
        Some(device) => format!(
            "each node disarms the device it has open (magic close) and opens {device} \
             from the config_change entry on, fed only while it holds a lease; a node \
             that cannot open it runs without one and says so (status: ABSENT)"
        ),
        None => "each node disarms its watchdog (magic close) from the config_change \
                 entry on: a hung daemon no longer resets its machine"
            .to_owned(),
    };
    Some(SettingChange {
        setting: "[quorum] watchdog".to_owned(),
        old: text(old),
        new: text(new),
        note: Some(note),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The example cluster: four nodes, no `[quorum]` table (`min_voters` by default a
    /// majority, 3), `max_event_duration = "6m"`.
    fn example() -> Config {
        let dir =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/cluster");
        halcyon_config::load(&[dir]).unwrap().0
    }

    fn voters(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    const ALL: &[&str] = &["node1", "node2", "node3", "node4"];

    /// `cluster_changes` of `new` against `running`, its nodes all voters and each node's
    /// Raft on `running`'s heartbeat interval.
    fn changes_against_running(
        new: &Config,
        running: &Config,
    ) -> Result<Vec<SettingChange>, String> {
        cluster_changes(
            new,
            running,
            running.cluster.heartbeat.interval,
            &voters(ALL),
        )
    }

    /// The example without its disk network, and without node4 (`with_fourth: false`).
    fn ip_only(with_fourth: bool) -> Config {
        let mut config = example();
        config
            .cluster
            .networks
            .retain(|n| n.kind == halcyon_config::NetworkKind::Ip);
        if !with_fourth {
            config.cluster.nodes.retain(|n| n.name.as_str() != "node4");
        }
        config
    }

    #[test]
    fn a_node_added_is_applied_with_what_happens_to_it_a_renumbered_one_is_refused() {
        let (three, four) = (ip_only(false), ip_only(true));
        let three_voters = voters(&ALL[..3]);
        let changes = cluster_changes(
            &four,
            &three,
            three.cluster.heartbeat.interval,
            &three_voters,
        )
        .unwrap();
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].setting, "[[node]] node4");
        assert_eq!(changes[0].old, "-");
        assert!(
            changes[0].new == "node 4, 198.18.1.4 on lan1, 198.18.2.4 on lan2",
            "{}",
            changes[0].new
        );
        assert!(
            changes[0]
                .note
                .as_deref()
                .is_some_and(|n| n.contains("`halcyon init node node4`")),
            "{changes:?}"
        );
        // Removed: no cluster setting refuses it (the live checks are `node_removals`).
        assert_eq!(
            cluster_changes(&three, &four, four.cluster.heartbeat.interval, &voters(ALL)),
            Ok(Vec::new())
        );
        // One the cluster has, with another number: refused. Another address is checked
        // against the live cluster (`node_interface_changes`).
        let mut renumbered = four.clone();
        renumbered
            .cluster
            .nodes
            .iter_mut()
            .find(|n| n.name.as_str() == "node2")
            .unwrap()
            .number = 12;
        let refusal = cluster_changes(
            &renumbered,
            &three,
            three.cluster.heartbeat.interval,
            &three_voters,
        )
        .unwrap_err();
        assert!(
            refusal.starts_with(
                "refused: apply cannot change [[node]] number of a node the cluster has (its \
                 Raft id and its disk heartbeat slot"
            ),
            "{refusal}"
        );
        let mut moved = three.clone();
        moved
            .cluster
            .nodes
            .iter_mut()
            .find(|n| n.name.as_str() == "node2")
            .unwrap()
            .interfaces[0]
            .address = Some("10.9.9.9".parse().unwrap());
        assert_eq!(
            cluster_changes(
                &moved,
                &three,
                three.cluster.heartbeat.interval,
                &three_voters
            ),
            Ok(Vec::new())
        );
        // With a disk network: added too (every node's disk link reads its slot from the
        // entry on).
        let mut with_disk = example();
        with_disk
            .cluster
            .nodes
            .retain(|n| n.name.as_str() != "node4");
        let added = cluster_changes(
            &example(),
            &with_disk,
            with_disk.cluster.heartbeat.interval,
            &three_voters,
        )
        .unwrap();
        assert_eq!(added[0].setting, "[[node]] node4", "{added:?}");
    }

    #[test]
    fn an_ip_network_is_added_or_removed_with_the_members_interfaces_on_it() {
        let four = ip_only(true);
        let mut one_lan = four.clone();
        let lan2 = one_lan.cluster.networks.remove(1).name;
        for node in &mut one_lan.cluster.nodes {
            node.interfaces.retain(|i| i.network != lan2);
        }
        let members: BTreeSet<halcyon_config::NodeName> =
            four.cluster.nodes.iter().map(|n| n.name.clone()).collect();
        // lan2 added with every member's interface on it: accepted, the coordinator too.
        let changes =
            node_interface_changes(&four.cluster, &one_lan.cluster, &members, Some("node1"))
                .unwrap();
        assert_eq!(changes.len(), 4, "{changes:?}");
        assert!(
            changes.iter().all(|c| c
                .note
                .as_deref()
                .is_some_and(|n| n.contains("added or removed with their network"))),
            "{changes:?}"
        );
        let network = network_changes(&four.cluster, &one_lan.cluster).unwrap();
        assert_eq!(network.len(), 1, "{network:?}");
        assert_eq!(network[0].setting, format!("[[network]] {lan2}"));
        assert!(network[0].new.starts_with("ip, heartbeat every"));
        // Removed again: accepted the same way.
        let changes =
            node_interface_changes(&one_lan.cluster, &four.cluster, &members, Some("node1"))
                .unwrap();
        assert_eq!(changes.len(), 4, "{changes:?}");
        let network = network_changes(&one_lan.cluster, &four.cluster).unwrap();
        assert_eq!(
            (network[0].old.as_str(), network[0].new.as_str()),
            ("ip", "(removed)")
        );
        // Added, and a member's address on the network that stays moved too: refused.
        let mut moved = four.clone();
        moved.cluster.nodes[1].interfaces[0].address = Some("198.18.1.22".parse().unwrap());
        let refusal =
            node_interface_changes(&moved.cluster, &one_lan.cluster, &members, Some("node1"))
                .unwrap_err();
        assert!(
            refusal.starts_with("refused: node2 is a member and its interfaces change"),
            "{refusal}"
        );
    }

    #[test]
    fn only_the_interfaces_of_a_node_that_is_not_a_member_nor_the_coordinator_change() {
        let three = ip_only(false);
        let names = |names: &[&str]| -> BTreeSet<halcyon_config::NodeName> {
            names
                .iter()
                .map(|n| halcyon_config::NodeName::from(*n))
                .collect()
        };
        let mut moved = three.clone();
        moved
            .cluster
            .nodes
            .iter_mut()
            .find(|n| n.name.as_str() == "node3")
            .unwrap()
            .interfaces[0]
            .address = Some("198.18.1.33".parse().unwrap());
        // node3 halted: changed, said how.
        let changes = node_interface_changes(
            &moved.cluster,
            &three.cluster,
            &names(&["node1", "node2"]),
            Some("node1"),
        )
        .unwrap();
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].setting, "[[node]] node3");
        assert_eq!(
            (changes[0].old.as_str(), changes[0].new.as_str()),
            (
                "node 3, 198.18.1.3 on lan1, 198.18.2.3 on lan2",
                "node 3, 198.18.1.33 on lan1, 198.18.2.3 on lan2"
            )
        );
        assert!(
            changes[0]
                .note
                .as_deref()
                .is_some_and(|n| n.contains("`halcyon node start node3`")),
            "{changes:?}"
        );
        // A member: refused, naming how to halt it.
        let refusal = node_interface_changes(
            &moved.cluster,
            &three.cluster,
            &names(&["node1", "node2", "node3"]),
            Some("node1"),
        )
        .unwrap_err();
        assert!(
            refusal.starts_with(
                "refused: node3 is a member and its interfaces change: halt it first \
                 (`halcyon node halt node3`"
            ),
            "{refusal}"
        );
        // The coordinator: refused.
        let refusal = node_interface_changes(
            &moved.cluster,
            &three.cluster,
            &names(&["node1", "node2"]),
            Some("node3"),
        )
        .unwrap_err();
        assert!(
            refusal.starts_with("refused: node3 is the coordinator and its interfaces change"),
            "{refusal}"
        );
        // Its fence device alone is no interface change.
        assert_eq!(
            node_interface_changes(
                &three.cluster,
                &three.cluster,
                &names(&["node1", "node2", "node3"]),
                Some("node1"),
            ),
            Ok(Vec::new())
        );
    }

    #[test]
    fn only_a_node_that_is_not_a_member_nor_the_coordinator_is_removed() {
        let (three, four) = (ip_only(false), ip_only(true));
        let names = |names: &[&str]| -> BTreeSet<halcyon_config::NodeName> {
            names
                .iter()
                .map(|n| halcyon_config::NodeName::from(*n))
                .collect()
        };
        // node4 halted (not a member), node1 coordinates: removed, said how.
        let removed = node_removals(
            &three.cluster,
            &four.cluster,
            &names(&ALL[..3]),
            Some("node1"),
            &voters(ALL),
        )
        .unwrap();
        assert_eq!(removed.len(), 1);
        assert_eq!(
            (removed[0].setting.as_str(), removed[0].new.as_str()),
            ("[[node]] node4", "-")
        );
        assert_eq!(
            removed[0].old,
            "node 4, 198.18.1.4 on lan1, 198.18.2.4 on lan2"
        );
        // A member: refused, with the command that halts it.
        let refusal = node_removals(
            &three.cluster,
            &four.cluster,
            &names(ALL),
            Some("node1"),
            &voters(ALL),
        )
        .unwrap_err();
        assert_eq!(
            refusal,
            "refused: node4 is a member: halt it first (`halcyon node halt node4`: its packages \
             move to other nodes), then apply; nothing was changed"
        );
        // The coordinator: refused.
        let refusal = node_removals(
            &three.cluster,
            &four.cluster,
            &names(&ALL[..3]),
            Some("node4"),
            &voters(ALL),
        )
        .unwrap_err();
        assert!(
            refusal.contains("node4 is the coordinator: stop its daemon"),
            "{refusal}"
        );
        // Fewer voters than the new configuration's min_voters: refused.
        let mut strict = three.clone();
        strict.cluster.quorum.min_voters = 3;
        let refusal = node_removals(
            &strict.cluster,
            &four.cluster,
            &names(&ALL[..2]),
            Some("node1"),
            &voters(&["node1", "node2", "node4"]),
        )
        .unwrap_err();
        assert!(
            refusal.contains(
                "removing node4 leaves 2 voter(s); [quorum] min_voters of the new \
                              configuration is 3"
            ),
            "{refusal}"
        );
        // Nothing removed: nothing to say.
        assert_eq!(
            node_removals(
                &four.cluster,
                &four.cluster,
                &names(ALL),
                None,
                &voters(ALL)
            ),
            Ok(Vec::new())
        );
    }

    #[test]
    fn only_a_change_of_what_runs_restarts_a_package_not_one_of_where_it_may_run() {
        let config = example();
        let old = config.packages.values().next().expect("a package").clone();
        let mut placed = old.clone();
        placed.nodes.reverse();
        placed.priority = Some(7);
        placed.auto_run = !old.auto_run;
        placed.failure_expiry = Some(Duration::from_secs(60));
        placed.run_timeout += Duration::from_secs(1);
        assert!(!placed.restarts_from(&old), "placement only");
        let mut run = placed.clone();
        run.resources.pop();
        assert!(run.restarts_from(&old), "a resource less");
        let mut monitored = old.clone();
        monitored.monitors.clear();
        assert_eq!(
            monitored.restarts_from(&old),
            !old.monitors.is_empty(),
            "monitors"
        );
        assert!(!old.restarts_from(&old));
    }

    #[test]
    fn only_addresses_the_running_packages_do_not_have_are_checked() {
        let running = example();
        assert_eq!(new_addresses(&running, &running), Vec::new());
        // A copy of a package under another name with another address: that one only.
        let mut new = running.clone();
        let (name, package) = running
            .packages
            .iter()
            .find(|(_, p)| {
                p.resources
                    .iter()
                    .any(|r| matches!(r, halcyon_config::Resource::Ip(_)))
            })
            .expect("a package with an address");
        let mut copy = package.clone();
        copy.name = PackageName::from("copy");
        for r in &mut copy.resources {
            if let halcyon_config::Resource::Ip(ip) = r {
                ip.addresses[0].address = "198.18.9.9".parse().unwrap();
            }
        }
        new.packages.insert(copy.name.clone(), copy);
        let found = new_addresses(&new, &running);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0.as_str(), "copy");
        // The same address moved to another package is the cluster's already.
        let mut moved = running.clone();
        let mut same = package.clone();
        same.name = PackageName::from("same");
        moved.packages.remove(name);
        moved.packages.insert(same.name.clone(), same);
        assert_eq!(new_addresses(&moved, &running), Vec::new());
    }

    #[test]
    fn a_node_added_with_the_number_of_a_member_still_in_raft_is_refused() {
        let (three, four) = (ip_only(false), ip_only(true));
        let members = |numbers: &[u32]| numbers.iter().copied().collect::<BTreeSet<u32>>();
        assert_eq!(
            numbers_still_in_raft(&four.cluster, &three.cluster, &members(&[1, 2, 3])),
            None
        );
        let refusal = numbers_still_in_raft(&four.cluster, &three.cluster, &members(&[1, 2, 3, 4]))
            .expect("refused");
        assert!(
            refusal.starts_with("refused: node4 (number 4): the number is still a Raft member"),
            "{refusal}"
        );
        // A node the cluster has already is not added: nothing to say.
        assert_eq!(
            numbers_still_in_raft(&four.cluster, &four.cluster, &members(&[1, 2, 3, 4])),
            None
        );
    }

    #[test]
    fn the_running_settings_are_no_change() {
        let config = example();
        assert_eq!(
            cluster_changes(
                &config,
                &config,
                config.cluster.heartbeat.interval,
                &voters(ALL)
            ),
            Ok(Vec::new())
        );
    }

    #[test]
    fn limits_and_auto_shrink_settings_change_live_with_both_values() {
        let running = example();
        let mut new = running.clone();
        new.cluster.limits.max_event_duration = Duration::from_secs(5);
        new.cluster.quorum.auto_shrink = true;
        new.cluster.quorum.shrink_after = Duration::from_secs(30);
        new.cluster.quorum.min_voters = 4;
        let changes = changes_against_running(&new, &running).unwrap();
        let shown: Vec<(&str, &str, &str)> = changes
            .iter()
            .map(|c| (c.setting.as_str(), c.old.as_str(), c.new.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("[limits] max_event_duration", "6m", "5s"),
                ("[quorum] auto_shrink", "false", "true"),
                ("[quorum] shrink_after", "10s", "30s"),
                ("[quorum] min_voters", "default (3)", "4"),
            ]
        );
        assert_eq!(
            changes[1].note.as_deref(),
            Some(
                "a voter committed down for shrink_after (30s) leaves the voters from the switch \
                 on, counted from its node_down: one already down that long leaves at once"
            )
        );
        assert_eq!(
            changes[3].note.as_deref(),
            Some("auto-shrink, `node remove` and `node forget` leave at least 4 voters (4 now)")
        );
        // And back: auto-shrink off says what happens to the nodes it took out.
        let back =
            cluster_changes(&running, &new, new.cluster.heartbeat.interval, &voters(ALL)).unwrap();
        assert_eq!(back[1].setting, "[quorum] auto_shrink");
        assert_eq!(
            back[1].note.as_deref(),
            Some(
                "no voter leaves by itself any more; a node auto-shrink took out still becomes \
                 a voter again when it is back"
            )
        );
        assert_eq!(
            (back[3].old.as_str(), back[3].new.as_str()),
            ("4", "default (3)")
        );
    }

    /// `running` with the heartbeat interval `ms` on the cluster and the networks that
    /// inherit it, as loading the files gives them.
    fn with_interval(running: &Config, ms: u64) -> Config {
        let mut new = running.clone();
        let was = running.cluster.heartbeat;
        new.cluster.heartbeat.interval = Duration::from_millis(ms);
        for network in &mut new.cluster.networks {
            if network.heartbeat == was {
                network.heartbeat.interval = Duration::from_millis(ms);
            }
        }
        new
    }

    #[test]
    fn an_interval_is_applied_and_the_lease_covers_the_elections_nodes_still_run() {
        let ms = Duration::from_millis;
        let running = example();
        assert_eq!(running.cluster.heartbeat.interval, ms(100));
        let faster = with_interval(&running, 50);
        let changes = cluster_changes(&faster, &running, ms(100), &voters(ALL)).unwrap();
        let named: Vec<&str> = changes.iter().map(|c| c.setting.as_str()).collect();
        assert_eq!(
            named,
            [
                "[heartbeat] interval",
                "[[network]] lan1 heartbeat interval",
                "[[network]] lan2 heartbeat interval",
                "[[network]] hb_disk heartbeat interval",
                "[quorum] lease"
            ]
        );
        assert_eq!(
            (changes[0].old.as_str(), changes[0].new.as_str()),
            ("100ms", "50ms")
        );
        assert!(
            changes[0].note.as_deref().unwrap().ends_with(
                "each node takes those of 50ms when it restarts; until every node has \
                 restarted, elections may take as long as with a 100ms heartbeat and the \
                 lease covers them (`status` names the nodes)"
            ),
            "{:?}",
            changes[0].note
        );
        assert!(
            changes[1]
                .note
                .as_deref()
                .unwrap()
                .ends_with("a path is down after 200ms instead of 400ms without heartbeats"),
            "{:?}",
            changes[1].note
        );
        // Elections of the 100 ms timings (369 ms) + a renewal and a lead of 50 ms + 50 ms.
        assert_eq!(
            (changes[4].old.as_str(), changes[4].new.as_str()),
            ("619ms (derived)", "519ms (derived)")
        );
        // Once every node runs the 50 ms timings, the derived lease is theirs.
        let changes = cluster_changes(&faster, &running, ms(50), &voters(ALL)).unwrap();
        assert_eq!(changes[4].new, "334ms (derived)");
        assert!(
            changes[0]
                .note
                .as_deref()
                .unwrap()
                .ends_with("at least that fast already")
        );
        // A configured lease too short for the elections still running is refused, with
        // the lease that works.
        let mut short = faster.clone();
        short.cluster.quorum.lease = Some(ms(400));
        assert_eq!(
            cluster_changes(&short, &running, ms(100), &voters(ALL)),
            Err(
                "refused: [quorum] lease = \"400ms\" is shorter than 519ms (an election of up \
                 to 369ms with the Raft timings of a 100ms heartbeat, which nodes run until \
                 they restart, plus two renewal intervals, for the last renewal, then the next \
                 one's confirmation and the fencing lead, and the margin): configure at least \
                 that, or no lease to have it derived; nothing was changed. apply \
                 changes packages (add, remove, change), the [events] settings, the event \
                 rules, fence devices, nodes, the [quorum] witness and networks added and \
                 removed, a disk network's device, [limits] max_event_duration, [quorum] \
                 auto_shrink, shrink_after, min_voters, lease and watchdog, the heartbeat \
                 interval and sensitivity, and an ip network's subnets"
                    .to_owned()
            )
        );
        assert!(cluster_changes(&short, &running, ms(50), &voters(ALL)).is_ok());
        // Slower: the lease covers the new, slower elections from the entry on.
        let slower = with_interval(&running, 300);
        let changes = cluster_changes(&slower, &running, ms(100), &voters(ALL)).unwrap();
        let lease = changes
            .iter()
            .find(|c| c.setting == "[quorum] lease")
            .unwrap();
        assert_eq!(lease.new, "1s 760ms (derived)");
    }

    #[test]
    fn settings_each_node_reads_at_start_are_refused_each_by_name() {
        let running = example();
        let mut new = with_interval(&running, 250);
        new.cluster.quorum.lease = Some(Duration::from_secs(2));
        new.cluster.quorum.watchdog = Some("/dev/watchdog".to_owned());
        new.cluster.limits.max_event_duration = Duration::from_secs(5);
        // A network renumbered: named; accepted settings changed with it are not.
        new.cluster.networks[0].number = 2;
        new.cluster.networks[1].number = 1;
        let refusal = changes_against_running(&new, &running).unwrap_err();
        assert!(
            refusal.starts_with(
                "refused: apply cannot renumber network lan1 (1 -> 2): a network's number is \
                 its place in the cluster file, and every heartbeat carries it; keep the \
                 networks that stay in their order, add new ones after them, and remove only \
                 the last ones; apply cannot renumber network lan2 (2 -> 1)"
            ),
            "{refusal}"
        );
        let mut renamed = running.clone();
        renamed.cluster.name = "other".to_owned();
        renamed.cluster.quorum.witness = Some(halcyon_config::Witness {
            name: "w".into(),
            number: 9,
            address: "10.0.0.9".parse().unwrap(),
        });
        let refusal = changes_against_running(&renamed, &running).unwrap_err();
        assert!(
            refusal.starts_with(
                "refused: apply cannot change [cluster] name of a running cluster (they are \
                 the cluster's identity"
            ),
            "{refusal}"
        );
        assert!(!refusal.contains("[quorum] witness of"), "{refusal}");
    }

    #[test]
    fn an_ip_networks_subnets_change_live_with_both_lists() {
        let running = example();
        let mut new = running.clone();
        let lan = &mut new.cluster.networks[0];
        let name = lan.name.to_string();
        let before = lan.subnets.clone();
        lan.subnets.push(halcyon_config::Subnet {
            address: "198.19.7.0".parse().unwrap(),
            prefix: 24,
        });
        let changes = changes_against_running(&new, &running).unwrap();
        assert_eq!(changes.len(), 1, "{changes:?}");
        let old_list: Vec<String> = before
            .iter()
            .map(|s| format!("{}/{}", s.address, s.prefix))
            .collect();
        assert_eq!(changes[0].setting, format!("[[network]] {name} subnets"));
        assert_eq!(changes[0].old, old_list.join(", "));
        assert_eq!(
            changes[0].new,
            format!("{}, 198.19.7.0/24", old_list.join(", "))
        );
        // With the network made a disk one as well: refused, naming the network.
        new.cluster.networks[0].kind = halcyon_config::NetworkKind::Disk;
        let refusal = changes_against_running(&new, &running).unwrap_err();
        assert!(
            refusal.contains(&format!("apply cannot change network {name}'s kind")),
            "{refusal}"
        );
    }

    #[test]
    fn a_disk_network_is_added_removed_or_moved_and_a_renumbered_network_is_refused() {
        use halcyon_config::NetworkKind;
        let running = ip_only(true);
        assert!(
            running
                .cluster
                .networks
                .iter()
                .all(|n| n.kind == NetworkKind::Ip)
        );
        let full = example();
        let disk = full
            .cluster
            .networks
            .iter()
            .find(|n| n.kind == NetworkKind::Disk)
            .unwrap()
            .clone();
        assert_eq!(
            disk.number as usize,
            full.cluster.networks.len(),
            "the last"
        );
        let device = disk.device.clone().unwrap();
        // Added after the ip networks.
        let mut added = running.clone();
        added.cluster.networks.push(disk.clone());
        let changes = changes_against_running(&added, &running).unwrap();
        let change = changes
            .iter()
            .find(|c| c.setting == format!("[[network]] {}", disk.name))
            .unwrap_or_else(|| panic!("{changes:?}"));
        assert_eq!(change.old, "(none)");
        assert!(
            change
                .new
                .starts_with(&format!("disk on {device}, heartbeat every "))
        );
        assert!(
            change
                .note
                .as_ref()
                .unwrap()
                .contains("opens its heartbeat link")
        );
        // Removed again.
        let changes = changes_against_running(&running, &added).unwrap();
        let change = changes
            .iter()
            .find(|c| c.setting == format!("[[network]] {}", disk.name))
            .unwrap_or_else(|| panic!("{changes:?}"));
        assert_eq!(
            (change.old.as_str(), change.new.as_str()),
            (format!("disk on {device}").as_str(), "(removed)")
        );
        // Moved to another device.
        let mut moved = added.clone();
        moved.cluster.networks.last_mut().unwrap().device = Some("/dev/sdz".to_owned());
        let changes = changes_against_running(&moved, &added).unwrap();
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(
            changes[0].setting,
            format!("[[network]] {} device", disk.name)
        );
        assert_eq!(
            (changes[0].old.as_str(), changes[0].new.as_str()),
            (device.as_str(), "/dev/sdz")
        );
        // Added before an ip network, which it renumbers: refused, naming the network.
        let mut before = running.clone();
        let mut first = disk.clone();
        first.number = 1;
        for network in &mut before.cluster.networks {
            network.number += 1;
        }
        before.cluster.networks.insert(0, first);
        let lan = &running.cluster.networks[0];
        let refusal = changes_against_running(&before, &running).unwrap_err();
        assert!(
            refusal.contains(&format!(
                "apply cannot renumber network {} (1 -> 2): a network's number is its place",
                lan.name
            )),
            "{refusal}"
        );
        // A disk network made an ip one: refused.
        let mut kind = added.clone();
        let last = kind.cluster.networks.last_mut().unwrap();
        last.kind = NetworkKind::Ip;
        last.device = None;
        let refusal = changes_against_running(&kind, &added).unwrap_err();
        assert!(
            refusal.contains(&format!("apply cannot change network {}'s kind", disk.name)),
            "{refusal}"
        );
    }

    #[test]
    fn a_witness_is_added_removed_or_replaced_and_one_keeping_its_number_is_refused() {
        let running = example();
        assert!(running.cluster.quorum.witness.is_none());
        let interval = running.cluster.heartbeat.interval;
        let witness = |name: &str, number: u32, address: &str| halcyon_config::Witness {
            name: name.into(),
            number,
            address: address.parse().unwrap(),
        };
        let with = |w: Option<halcyon_config::Witness>| {
            let mut config = running.clone();
            config.cluster.quorum.witness = w;
            config
        };
        let only = |changes: Vec<SettingChange>| {
            assert_eq!(changes.len(), 1, "{changes:?}");
            changes.into_iter().next().unwrap()
        };
        // Added: it joins once it answers; how to start it is said.
        let w = witness("w", 9, "10.0.0.9");
        let added = only(
            cluster_changes(&with(Some(w.clone())), &running, interval, &voters(ALL)).unwrap(),
        );
        assert_eq!(
            (
                added.setting.as_str(),
                added.old.as_str(),
                added.new.as_str()
            ),
            ("[quorum] witness", "-", "w, number 9, 10.0.0.9")
        );
        let note = added.note.unwrap();
        assert!(
            note.contains("w joins the voters once its daemon answers at 10.0.0.9:")
                && note.contains("`halcyon init node w`"),
            "{note}"
        );
        // Removed while it votes: it leaves, and how many voters are left is said.
        let voting = with(Some(w.clone()));
        let five = voters(&["node1", "node2", "node3", "node4", "w"]);
        let removed = only(cluster_changes(&running, &voting, interval, &five).unwrap());
        assert_eq!(
            (removed.old.as_str(), removed.new.as_str()),
            ("w, number 9, 10.0.0.9", "-")
        );
        assert!(
            removed
                .note
                .unwrap()
                .starts_with("w leaves the Raft membership after the switch (4 voter(s) left"),
        );
        // Replaced by another number: the old leaves, the new joins.
        let other = with(Some(witness("w2", 10, "10.0.0.10")));
        let replaced = only(cluster_changes(&other, &voting, interval, &five).unwrap());
        let note = replaced.note.unwrap();
        assert!(
            note.starts_with("w leaves") && note.contains("w2 joins the voters"),
            "{note}"
        );
        assert!(
            note.ends_with(
                "until then the quorum rests on the 4 voter(s) left: start it before \
                 applying, or right after"
            ),
            "{note}"
        );
        // Moved or renamed with its number: refused, saying why.
        let moved = with(Some(witness("w", 9, "10.0.0.19")));
        let refusal = cluster_changes(&moved, &voting, interval, &five).unwrap_err();
        assert!(
            refusal.starts_with(
                "refused: [quorum] witness changes but keeps number 9 (w, number 9, 10.0.0.9 -> \
                 w, number 9, 10.0.0.19): a Raft voter keeps its number only with its store"
            ),
            "{refusal}"
        );
        // Removing it would leave fewer voters than min_voters: refused.
        let mut strict = running.clone();
        strict.cluster.quorum.min_voters = 4;
        let three_and_w = voters(&["node1", "node2", "node3", "w"]);
        let refusal = cluster_changes(&strict, &voting, interval, &three_and_w).unwrap_err();
        assert!(
            refusal.starts_with(
                "refused: removing witness w would leave 3 voter(s) (node1, node2, node3); the \
                 minimum is 4 ([quorum] min_voters)"
            ),
            "{refusal}"
        );
        // A witness that does not vote (yet) leaves whatever the minimum.
        assert!(cluster_changes(&strict, &voting, interval, &voters(ALL)).is_ok());
    }

    #[test]
    fn a_sensitivity_is_applied_and_one_that_moves_the_lease_moves_it_with_its_rule() {
        let running = example();
        assert_eq!(running.cluster.lease(), Duration::from_millis(619));
        // [heartbeat] sensitivity 4 -> 6: every network inheriting it takes it; 600 ms of
        // detection stays under the election bound, so the lease stays 619 ms.
        let mut new = running.clone();
        new.cluster.heartbeat.sensitivity = 6;
        for network in &mut new.cluster.networks {
            if network.heartbeat == running.cluster.heartbeat {
                network.heartbeat.sensitivity = 6;
            }
        }
        let changes = changes_against_running(&new, &running).unwrap();
        assert_eq!(changes[0].setting, "[heartbeat] sensitivity");
        assert_eq!(
            (changes[0].old.as_str(), changes[0].new.as_str()),
            ("4", "6")
        );
        assert_eq!(changes[1].setting, "[[network]] lan1 heartbeat sensitivity");
        assert_eq!(
            changes[1].note.as_deref(),
            Some(
                "a path on lan1 is down after 600ms instead of 400ms without heartbeats, on \
                 each node from the config_change entry on"
            )
        );
        // lan2 and the disk heartbeat inherit it too.
        let settings: Vec<&str> = changes.iter().map(|c| c.setting.as_str()).collect();
        assert_eq!(
            settings,
            [
                "[heartbeat] sensitivity",
                "[[network]] lan1 heartbeat sensitivity",
                "[[network]] lan2 heartbeat sensitivity",
                "[[network]] hb_disk heartbeat sensitivity"
            ]
        );

        // 7 x 100 ms = 700 ms of detection makes the lease 700 ms: a longer lease, waited
        // out from the entry on.
        let mut longer = running.clone();
        longer.cluster.heartbeat.sensitivity = 7;
        for network in &mut longer.cluster.networks {
            if network.heartbeat == running.cluster.heartbeat {
                network.heartbeat.sensitivity = 7;
            }
        }
        let changes = changes_against_running(&longer, &running).unwrap();
        let lease = changes.last().unwrap();
        assert_eq!(
            (
                lease.setting.as_str(),
                lease.old.as_str(),
                lease.new.as_str()
            ),
            ("[quorum] lease", "619ms (derived)", "700ms (derived)")
        );
        assert_eq!(
            lease.note.as_deref(),
            Some(
                "each node holds 700ms leases from its first renewal after the config_change \
                 entry; a coordinator waits 700ms for a node's lease to end from the entry on"
            )
        );
        // Back from there: a shorter lease, the longer ones waited out until settled.
        let changes = cluster_changes(
            &running,
            &longer,
            longer.cluster.heartbeat.interval,
            &voters(ALL),
        )
        .unwrap();
        let lease = changes.last().unwrap();
        assert_eq!(
            lease.note.as_deref(),
            Some(
                "each node holds 619ms leases from its first renewal after the config_change \
                 entry; until every 700ms lease granted before has certainly ended (about \
                 700ms after the entry; `status` shows it), a coordinator still waits 700ms \
                 for a node's lease to end"
            )
        );
        // The same lease configured instead of derived is named, with nothing to wait.
        let mut explicit = running.clone();
        explicit.cluster.quorum.lease = Some(Duration::from_millis(619));
        let changes = changes_against_running(&explicit, &running).unwrap();
        assert_eq!(
            (
                changes[0].old.as_str(),
                changes[0].new.as_str(),
                changes[0].note.as_deref()
            ),
            ("619ms (derived)", "619ms", Some("the lease stays 619ms"))
        );

        // One network's own sensitivity: only that network is named.
        let mut one = running.clone();
        one.cluster.networks[1].heartbeat.sensitivity = 3;
        let changes = changes_against_running(&one, &running).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].setting, "[[network]] lan2 heartbeat sensitivity");
        // Its interval too, named alone.
        one.cluster.networks[1].heartbeat.interval = Duration::from_millis(50);
        let changes = changes_against_running(&one, &running).unwrap();
        let named: Vec<&str> = changes.iter().map(|c| c.setting.as_str()).collect();
        assert_eq!(
            named,
            [
                "[[network]] lan2 heartbeat interval",
                "[[network]] lan2 heartbeat sensitivity"
            ]
        );
    }

    #[test]
    fn a_watchdog_set_or_removed_is_applied_with_what_each_node_does() {
        let running = example();
        let mut new = running.clone();
        new.cluster.quorum.watchdog = Some("/dev/watchdog".to_owned());
        let changes = changes_against_running(&new, &running).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].setting, "[quorum] watchdog");
        assert_eq!(
            (changes[0].old.as_str(), changes[0].new.as_str()),
            ("none", "/dev/watchdog")
        );
        assert!(
            changes[0]
                .note
                .as_deref()
                .unwrap()
                .contains("opens /dev/watchdog from the config_change entry on"),
            "{changes:?}"
        );
        let back =
            cluster_changes(&running, &new, new.cluster.heartbeat.interval, &voters(ALL)).unwrap();
        assert_eq!(
            back[0].note.as_deref(),
            Some(
                "each node disarms its watchdog (magic close) from the config_change entry \
                 on: a hung daemon no longer resets its machine"
            )
        );
    }

    #[test]
    fn a_min_voters_above_the_voters_the_cluster_has_now_is_refused() {
        let running = example();
        let mut new = running.clone();
        new.cluster.quorum.min_voters = 4;
        // node4 is out of the voters (taken out by auto-shrink, or `node remove`).
        let three = voters(&["node1", "node2", "node3"]);
        assert_eq!(
            cluster_changes(&new, &running, running.cluster.heartbeat.interval, &three),
            Err(
                "refused: [quorum] min_voters 4 is more than the 3 voter(s) the cluster has \
                 now (node1, node2, node3): auto-shrink, `node remove` and `node forget` never \
                 leave fewer voters than min_voters, and apply does not either; add the \
                 missing voters first (a node auto-shrink took out becomes a voter again when \
                 it is back; `halcyon node add NAME` for one an administrator removed), or \
                 apply at most 3; nothing was changed. apply changes packages (add, remove, \
                 change), the [events] settings, the event rules, fence devices, nodes, the \
                 [quorum] witness and networks added and removed, a disk network's device, \
                 [limits] max_event_duration, [quorum] auto_shrink, shrink_after, \
                 min_voters, lease and watchdog, the heartbeat interval and sensitivity, and \
                 an ip network's subnets"
                    .to_owned()
            )
        );
        // As many as the voters now: accepted.
        new.cluster.quorum.min_voters = 3;
        let changes =
            cluster_changes(&new, &running, running.cluster.heartbeat.interval, &three).unwrap();
        assert_eq!(
            (changes[0].old.as_str(), changes[0].new.as_str()),
            ("default (3)", "3")
        );
        // An unchanged min_voters is not checked again (nothing about it changes).
        let mut other = running.clone();
        other.cluster.limits.max_event_duration = Duration::from_secs(60);
        assert!(
            cluster_changes(
                &other,
                &running,
                running.cluster.heartbeat.interval,
                &voters(&["node1", "node2"])
            )
            .is_ok()
        );
    }
}
