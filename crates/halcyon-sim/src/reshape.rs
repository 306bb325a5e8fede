//! `--grow` and `--shrink`: the cluster's nodes change under faults through `halcyon apply`
//! (issue 16), as an administrator changes them.
//!
//! - `--grow`: node `nodes + 1` joins. At a time drawn from the seed its daemon starts from
//!   files that add it (to every package's node list too: a change of where they may run,
//!   which leaves them running), and the files are applied through a running daemon, again every
//!   [`RETRY`] until the running configuration has it. At the end the leader must count it a
//!   voter and a member.
//! - `--shrink`: node `nodes` dies for good at a time drawn from the seed (powered off), and
//!   the files without it are applied, again every [`RETRY`] until the running configuration
//!   no longer has it (`apply` refuses while it is still a member). [`BACK_AFTER`] later it
//!   is powered on again with its old files, which still name it: outside the configuration
//!   it must disturb nothing. Faults drawn for it after it died are skipped. At the end it
//!   must be no Raft member.
//!
//! Invariant: the harness's own `--apply` changes write the nodes the cluster is meant to
//! have at that moment ([`Reshape::config_nodes`]), so they never undo a change.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use halcyon_consensus::NodeId;
use halcyon_daemon::Settings;

use crate::faults::{self, Fault, Kind};
use crate::invariants::Transitions;
use crate::run::{Options, apply_request, boot, node_ip, settings_of, write_run_config};
use crate::world::World;

/// How often the files are sent again while the running configuration is not what they
/// say.
pub const RETRY: Duration = Duration::from_secs(3);
/// How long `--shrink`'s removed node stays powered off after its removal was applied.
pub const BACK_AFTER: Duration = Duration::from_secs(5);

/// Where a `--shrink` removal stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shrink {
    /// The node runs; it dies at this time.
    Alive(Duration),
    /// Dead; the files without it were last sent at this time (`None`: not yet).
    Removing(Option<Duration>),
    /// The running configuration no longer has it; powered on again at this time.
    Removed(Duration),
    /// Powered on again, outside the configuration.
    Back,
}

pub struct Reshape {
    grow: Option<Grow>,
    shrink: Option<Shrink>,
    /// The nodes of the files the harness's applies write.
    config_nodes: u32,
    /// The hosts partitions cut apart from a fault's group.
    hosts_now: u32,
    last: u32,
}

struct Grow {
    at: Option<Duration>,
    dir: PathBuf,
    sent: Option<Duration>,
}

impl Reshape {
    /// Writes `--grow`'s files under `directory`; refuses `--grow` with `--shrink`.
    pub fn new(options: &Options, directory: &Path) -> anyhow::Result<Reshape> {
        anyhow::ensure!(
            !(options.grow && options.shrink),
            "--grow and --shrink change the nodes one way each: give one"
        );
        let grow = if options.grow {
            let dir = directory.join("config-grown");
            std::fs::create_dir_all(&dir)?;
            write_run_config(&dir, options, options.nodes + 1)?;
            Some(Grow {
                at: Some(faults::draw_grow(options.seed, options.fault_span)),
                dir,
                sent: None,
            })
        } else {
            None
        };
        let shrink = options.shrink.then(|| {
            Shrink::Alive(faults::draw_grow(
                options.seed ^ 0x7368_7269_6e6b,
                options.fault_span,
            ))
        });
        Ok(Reshape {
            grow,
            shrink,
            config_nodes: options.nodes,
            hosts_now: options.nodes,
            last: options.nodes,
        })
    }

    /// Hosts the run may have: one more with `--grow`.
    pub fn hosts(options: &Options) -> u32 {
        options.nodes + u32::from(options.grow)
    }

    /// The nodes the files of the harness's applies have now.
    pub fn config_nodes(&self) -> u32 {
        self.config_nodes
    }

    /// The hosts a partition cuts a fault's group from now.
    pub fn hosts_now(&self) -> u32 {
        self.hosts_now
    }

    /// Whether `fault` is skipped: it targets the node `--shrink` removed.
    pub fn skips(&self, fault: &Fault) -> bool {
        !matches!(self.shrink, None | Some(Shrink::Alive(_))) && fault.nodes.contains(&self.last)
    }

    /// Whether `fault`'s heal is skipped: it would start the node `--shrink` keeps powered
    /// off (a crash or a daemon kill drawn for it before it died for good).
    pub fn skips_heal(&self, fault: &Fault) -> bool {
        matches!(self.shrink, Some(Shrink::Removing(_) | Shrink::Removed(_)))
            && fault.nodes.contains(&self.last)
            && matches!(
                fault.kind,
                Kind::Crash | Kind::DaemonKill | Kind::Hang | Kind::DiskError
            )
    }

    /// What happens at `now`; `transitions`, `options`, `directory`, `restarts`,
    /// `sensitivity_up` and `witness` (in the files) as the run has them.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        now: Duration,
        sim: &mut turmoil::Sim<'_>,
        world: &World,
        transitions: &Arc<Mutex<Transitions>>,
        hook: &halcyon_consensus::FaultHook,
        options: &Options,
        directory: &Path,
        restarts: &[u32],
        sensitivity_up: bool,
        witness: Option<u32>,
    ) -> anyhow::Result<()> {
        let apply = |nodes: u32, what: String| -> anyhow::Result<()> {
            let request =
                apply_request(directory, options, nodes, restarts, sensitivity_up, witness)?;
            let inbox = world
                .lock()
                .appliers
                .iter()
                .find(|(n, _)| **n <= nodes)
                .map(|(_, inbox)| inbox.clone());
            let sent = inbox.is_some_and(|inbox| inbox.send(request).is_ok());
            world.note(format!(
                "{what}: {}",
                if sent { "sent" } else { "no daemon runs" }
            ));
            Ok(())
        };
        if let Some(grow) = &mut self.grow {
            let total = options.nodes + 1;
            if grow.at.is_some_and(|at| at <= now) {
                grow.at = None;
                self.config_nodes = total;
                self.hosts_now = total;
                world.note(format!(
                    "n{total}: its daemon starts from files that add it"
                ));
                let settings = Settings {
                    config_paths: vec![grow.dir.clone()],
                    ..settings_of(directory, total)
                };
                let (world, transitions, hook) =
                    (world.clone(), Arc::clone(transitions), hook.clone());
                sim.host(node_ip(total), move || {
                    boot(
                        world.clone(),
                        Arc::clone(&transitions),
                        hook.clone(),
                        settings.clone(),
                        total,
                    )
                });
            }
            if grow.at.is_none()
                && grow.sent.is_none_or(|at| now >= at + RETRY)
                && !world.running_config_has(total)
            {
                grow.sent = Some(now);
                apply(total, format!("apply adding n{total}"))?;
            }
        }
        let last = self.last;
        match self.shrink {
            Some(Shrink::Alive(at)) if at <= now => {
                world.note(format!(
                    "n{last}: powered off for good; an administrator removes it"
                ));
                world.power_off(last);
                let ip = node_ip(last);
                if sim.is_host_running(ip) {
                    sim.crash(ip);
                }
                self.config_nodes = last - 1;
                self.shrink = Some(Shrink::Removing(None));
            }
            Some(Shrink::Removing(sent)) => {
                if !world.running_config_has(last) {
                    world.note(format!(
                        "n{last}: the running configuration no longer has it"
                    ));
                    self.shrink = Some(Shrink::Removed(now + BACK_AFTER));
                } else if sent.is_none_or(|at| now >= at + RETRY) {
                    self.shrink = Some(Shrink::Removing(Some(now)));
                    apply(last - 1, format!("apply removing n{last}"))?;
                }
            }
            Some(Shrink::Removed(at)) if at <= now => {
                world.note(format!(
                    "n{last}: powered on again, with files that still name it"
                ));
                world.power_on(last);
                transitions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .forget(last);
                sim.bounce(node_ip(last));
                self.shrink = Some(Shrink::Back);
            }
            _ => {}
        }
        Ok(())
    }

    /// At the end: `--grow`'s node a voter and a member, `--shrink`'s no Raft member.
    pub fn check_end(&self, world: &World, options: &Options) {
        let Some(leader) = world.leader() else {
            if self.grow.is_some() || self.shrink.is_some() {
                world.violation("no leader at the end to check the nodes".to_owned());
            }
            return;
        };
        if self.grow.is_some() {
            let n = options.nodes + 1;
            let voter = leader.consensus.voters().contains(&NodeId::from(n));
            let member = leader
                .snapshot()
                .cluster()
                .members
                .iter()
                .any(|m| m.as_str() == format!("n{n}"));
            if !voter || !member {
                world.violation(format!(
                    "n{n}, added during the faults, is {} at the end",
                    match (voter, member) {
                        (false, false) => "neither a voter nor a member",
                        (false, true) => "a member but not a voter",
                        _ => "a voter but not a member",
                    }
                ));
            }
        }
        if let Some(shrink) = self.shrink {
            let id = NodeId::from(self.last);
            let in_raft = leader.consensus.voters().contains(&id)
                || leader.consensus.learners().contains(&id);
            if shrink == Shrink::Back && in_raft {
                world.violation(format!(
                    "n{}, removed during the faults, is still a Raft member at the end",
                    self.last
                ));
            }
            if !matches!(shrink, Shrink::Back) {
                world.violation(format!(
                    "n{}'s removal did not complete during the run ({shrink:?})",
                    self.last
                ));
            }
        }
    }
}
