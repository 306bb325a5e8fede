//! One simulated run: a cluster of real daemons (`halcyon_daemon::node::Node`) on turmoil
//! hosts, a fault schedule drawn from the seed, the invariants checked as the run goes, and
//! at the end the liveness check.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use halcyon_consensus::{FaultHook, NodeId};
use halcyon_daemon::node::{Node, Settings};

use crate::faults::{self, Fault, Kind, WITNESS, WITNESS_REPLACEMENT};
use crate::invariants::Transitions;
use crate::platform::platform;
use crate::reshape::Reshape;
use crate::world::{World, digest};

/// The heartbeat port; Raft listens on the next one, the API on the one after.
const PORT: u16 = 7400;
/// turmoil's step.
const TICK: Duration = Duration::from_millis(1);
/// Message latency on a healthy link (turmoil draws each message's between these).
const LATENCY_MIN: Duration = Duration::from_micros(200);
const LATENCY_MAX: Duration = Duration::from_millis(3);
/// The simulator's clocks differ by at most this (the daemon's `lease::DRIFT`).
pub const DRIFT: f64 = halcyon_daemon::lease::DRIFT;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    pub nodes: u32,
    pub packages: usize,
    /// How long faults are drawn for.
    pub fault_span: Duration,
    /// After the last fault is healed: how long the cluster has to make every `auto_run`
    /// package active (the liveness invariant is checked at the end of it).
    pub settle: Duration,
    /// Only these faults of the drawn schedule (by index), for minimizing and replaying.
    pub only: Option<Vec<usize>>,
    /// These faults instead of a drawn schedule (the scale run).
    pub script: Option<Vec<Fault>>,
    /// The last node reads files whose heartbeat is three times slower than the others'
    /// (a rolling change of the timings caught half way): the lease its own files give is
    /// longer than the running configuration's, which the lease rule must not let it hold.
    pub drift: bool,
    /// `halcyon apply` during the faults: [`APPLIES`] reconfigurations at times drawn from
    /// the seed (apart from the fault schedule, which stays as without), each changing one
    /// package's definition so that it halts and runs again where it runs, and some (drawn)
    /// the heartbeat interval, sensitivity and lease too, the interval half as long again,
    /// the sensitivity one above the run's and the lease about three times as long, and back
    /// (nodes switching the interval one after the other must not judge each other down; a
    /// shorter lease: the longer ones stay unsettled until they have ended, whatever the
    /// faults do meanwhile; a shorter interval: the lease covers the slower Raft timings of
    /// the nodes not restarted since).
    pub apply: bool,
    /// Node `nodes + 1` joins during the faults: `halcyon apply` of files that add it
    /// (`crate::reshape`). It must become a voter and a member with every invariant kept.
    /// Not with `shrink`.
    pub grow: bool,
    /// The last node dies for good during the faults and an administrator removes it
    /// (`halcyon apply` of the files without it; `crate::reshape`); it is powered on again
    /// later with its old files and must disturb nothing. Not with `grow`.
    pub shrink: bool,
    /// The cluster runs the fast heartbeat profile (`[heartbeat] profile = "fast"`: 30 ms x
    /// 3, lease 221 ms) instead of the defaults (100 ms x 4).
    pub fast: bool,
    /// Every node has a (simulated) fence device and the even-numbered packages require
    /// fencing: a failed node is switched off by the coordinator (its host crashed, booted
    /// again [`FENCED_OFF`] later) before its packages start elsewhere, or at once for the
    /// packages that need only the lease.
    pub fencing: bool,
    /// `[quorum] auto_shrink = true` with `shrink_after = "2s"`: a node committed down for
    /// 2 s leaves the voters (never below 3 of 5), and becomes a voter again when it rejoins.
    pub auto_shrink: bool,
    /// A quorum witness (`[quorum.witness]`, number [`WITNESS`]) votes beside the nodes, and
    /// about one in four of the faults drawn for one node strike it instead
    /// ([`faults::strike_witness`]). With `apply`, the second reconfiguration takes it out
    /// (its daemon runs on, from files that name it) and the third puts it back; with two
    /// nodes, which must have one, the second replaces it by another of another number
    /// ([`WITNESS_REPLACEMENT`], running from the start with files that name it) and the
    /// third puts the first back. At the end the leader must count a witness a voter
    /// exactly when the running configuration has it.
    pub witness: bool,
    /// A crashed node (or witness, with [`Options::witness`]) boots with its state
    /// directory emptied (rebuilt): it must be taken out of the membership and added again
    /// (`node::admission`, `witness::admission`) with every invariant kept.
    pub wipe: bool,
    /// One node's executor holds every plan action it is handed for [`faults::HANG_FOR`]
    /// from the start of the run ([`faults::draw_hang`]), then its daemon restarts; packages
    /// have a 2 s run timeout. The coordinator must give up on it within its bound (issue 15:
    /// `NodeStuck`), with every invariant kept, and the node must join again.
    pub hang: bool,
    /// Full disks ([`Kind::DiskError`]) among the drawn faults: the node's replica stops, its
    /// daemon halts its packages and exits, and it is started again when space is back.
    pub disk_errors: bool,
}

/// What a run's files configure besides the heartbeat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Features {
    fencing: bool,
    auto_shrink: bool,
    /// Packages start within 2 s (`--hang`: a short bound on a run).
    short_runs: bool,
    /// The run's files name this quorum witness (a number) at first.
    witness: Option<u32>,
}

impl Features {
    fn of(options: &Options) -> Features {
        Features {
            fencing: options.fencing,
            auto_shrink: options.auto_shrink,
            short_runs: options.hang,
            witness: options.witness.then_some(WITNESS),
        }
    }
}

/// How long a node switched off by its simulated fence device stays off.
pub const FENCED_OFF: Duration = Duration::from_secs(3);

/// How many reconfigurations `--apply` makes in a run.
const APPLIES: usize = 3;

impl Options {
    pub fn new(seed: u64, nodes: u32) -> Options {
        Options {
            seed,
            nodes,
            packages: 3,
            fault_span: Duration::from_secs(20),
            settle: Duration::from_secs(15),
            only: None,
            script: None,
            drift: false,
            apply: false,
            grow: false,
            shrink: false,
            fast: false,
            fencing: false,
            auto_shrink: false,
            wipe: false,
            hang: false,
            disk_errors: false,
            witness: false,
        }
    }

    /// The schedule this run injects, with each fault's index in the drawn schedule.
    pub fn schedule(&self) -> Vec<(usize, Fault)> {
        let mut faults = match &self.script {
            Some(script) => script.clone(),
            None => faults::draw(
                self.seed,
                self.nodes,
                self.packages,
                self.fault_span,
                self.disk_errors,
            ),
        };
        if self.witness && self.script.is_none() {
            faults::strike_witness(self.seed, &mut faults);
        }
        if self.hang {
            faults.push(faults::draw_hang(self.seed, self.nodes, self.packages));
            faults.sort_by_key(|f| f.at);
        }
        faults
            .into_iter()
            .enumerate()
            .filter(|(i, _)| self.only.as_ref().is_none_or(|only| only.contains(i)))
            .collect()
    }
}

/// What a run found.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub seed: u64,
    pub faults: Vec<(usize, Fault)>,
    pub violations: Vec<String>,
    /// The run's history (faults, activities, fences, events, violations), oldest first.
    pub history: String,
    /// Digest of the history: equal for equal runs.
    pub digest: u64,
    pub simulated: Duration,
    pub real: Duration,
    /// For each crash (power loss) of a node running packages: how long until every one of
    /// them ran again (on any node).
    pub takeovers: Vec<Duration>,
    /// When every package first ran.
    pub all_running_at: Option<Duration>,
    /// The Raft voters at the end of the run, as the leader then knew them (none: no leader).
    pub voters_at_end: Option<BTreeSet<u64>>,
    /// The highest Raft term among the running nodes at the end: one more than the
    /// elections the run needed (needless elections, e.g. a returning node deposing a
    /// healthy leader, raise it).
    pub term_at_end: u64,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The history up to and including the first violation.
    pub fn history_to_violation(&self) -> String {
        let mut out = String::new();
        for line in self.history.lines() {
            out.push_str(line);
            out.push('\n');
            if line.contains("VIOLATION") {
                break;
            }
        }
        out
    }
}

pub(crate) fn node_ip(node: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        198,
        18,
        (node / 250) as u8,
        (node % 250) as u8,
    ))
}

/// Writes the cluster's configuration: one IP network, `packages` failover packages with
/// one service each, spread over the nodes (package i prefers node i mod n).
pub fn write_config(dir: &Path, nodes: u32, packages: usize) -> std::io::Result<()> {
    write_config_with(
        dir,
        nodes,
        packages,
        Heartbeat::Default,
        Features::default(),
    )
}

/// The `[heartbeat]` table a run's files carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Heartbeat {
    /// 100 ms x 4, written out.
    Default,
    /// `profile = "fast"`.
    Fast,
    /// The run's heartbeat three times slower (`--drift`'s last node): 300 ms x 4, or the
    /// fast profile with `interval = "90ms"` over it.
    Slower { fast: bool },
}

impl Heartbeat {
    fn of(options: &Options) -> Heartbeat {
        if options.fast {
            Heartbeat::Fast
        } else {
            Heartbeat::Default
        }
    }

    /// The `[quorum] lease` that goes with `sensitivity_up` (what `--apply` changes with
    /// it): about three times the derived one, so that a switch back to the derived lease
    /// leaves long leases unsettled for a while under the seed's faults.
    fn lease(self, sensitivity_up: bool) -> Option<&'static str> {
        match self {
            Heartbeat::Default if sensitivity_up => Some("2s"),
            Heartbeat::Fast if sensitivity_up => Some("700ms"),
            _ => None,
        }
    }

    /// The table's lines; `sensitivity_up`: an interval half as long again and one more
    /// missed heartbeat before a path is down (what `--apply` changes, with
    /// [`Heartbeat::lease`]).
    fn toml(self, sensitivity_up: bool) -> String {
        match self {
            Heartbeat::Default if sensitivity_up => {
                "interval = \"150ms\"\nsensitivity = 5\n".to_owned()
            }
            Heartbeat::Default => "interval = \"100ms\"\nsensitivity = 4\n".to_owned(),
            Heartbeat::Fast if sensitivity_up => {
                "profile = \"fast\"\ninterval = \"45ms\"\nsensitivity = 4\n".to_owned()
            }
            Heartbeat::Fast => "profile = \"fast\"\n".to_owned(),
            Heartbeat::Slower { fast: false } => {
                "interval = \"300ms\"\nsensitivity = 4\n".to_owned()
            }
            Heartbeat::Slower { fast: true } => {
                "profile = \"fast\"\ninterval = \"90ms\"\n".to_owned()
            }
        }
    }
}

/// The run's files with `nodes` nodes (each package on all of them).
pub(crate) fn write_run_config(dir: &Path, options: &Options, nodes: u32) -> std::io::Result<()> {
    write_config_with(
        dir,
        nodes,
        options.packages,
        Heartbeat::of(options),
        Features::of(options),
    )
}

/// [`write_config`] with the heartbeat `heartbeat`.
fn write_config_with(
    dir: &Path,
    nodes: u32,
    packages: usize,
    heartbeat: Heartbeat,
    features: Features,
) -> std::io::Result<()> {
    let witness = features.witness;
    write_config_variant(
        dir,
        nodes,
        packages,
        heartbeat,
        features,
        &[],
        false,
        witness,
    )
}

/// [`write_config_with`] where package `p`'s service allows `restarts[p]` restarts (1 when
/// not given) and the heartbeat interval longer, the sensitivity one higher and the lease
/// longer with `sensitivity_up` ([`Heartbeat::toml`], [`Heartbeat::lease`]), and a disk
/// heartbeat network on a simulated shared disk with it: what `--apply` changes.
/// `features`: see [`Options::fencing`] and [`Options::auto_shrink`]; `witness`: the quorum
/// witness the files name, by number ([`Options::witness`]).
// Each argument is one thing a run's files vary by; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
fn write_config_variant(
    dir: &Path,
    nodes: u32,
    packages: usize,
    heartbeat: Heartbeat,
    features: Features,
    restarts: &[u32],
    sensitivity_up: bool,
    witness: Option<u32>,
) -> std::io::Result<()> {
    let Features {
        fencing,
        auto_shrink,
        short_runs,
        witness: _,
    } = features;
    let mut cluster = format!(
        "[cluster]\nname = \"sim\"\nid = 7\nport = {PORT}\n[heartbeat]\n{}\
         [[network]]\nname = \"lan\"\nkind = \"ip\"\nsubnets = [\"198.18.0.0/15\"]\n",
        heartbeat.toml(sensitivity_up)
    );
    if sensitivity_up {
        // `--apply` adds a disk heartbeat network with this variant and removes it with the
        // other (a simulated shared disk: partitions do not cut it).
        cluster.push_str("[[network]]\nname = \"hb\"\nkind = \"disk\"\ndevice = \"sim-disk\"\n");
    }
    let lease = heartbeat.lease(sensitivity_up);
    if auto_shrink || lease.is_some() {
        cluster.push_str("[quorum]\n");
    }
    if auto_shrink {
        cluster.push_str("auto_shrink = true\nshrink_after = \"2s\"\n");
    }
    if let Some(lease) = lease {
        let _ = writeln!(cluster, "lease = \"{lease}\"");
    }
    if let Some(witness) = witness {
        let _ = write!(
            cluster,
            "[quorum.witness]\nname = \"w{witness}\"\nnumber = {witness}\naddress = \"{}\"\n",
            node_ip(witness)
        );
    }
    for n in 1..=nodes {
        let _ = write!(
            cluster,
            "[[node]]\nname = \"n{n}\"\nnumber = {n}\n[[node.interface]]\nnetwork = \"lan\"\naddress = \"{}\"\n",
            node_ip(n)
        );
        if fencing {
            let _ = write!(
                cluster,
                "[node.fencing]\nagent = \"simulated\"\noptions = {{ plug = \"n{n}\" }}\n"
            );
        }
    }
    std::fs::write(dir.join("cluster.toml"), cluster)?;
    for p in 0..packages {
        let first = p as u32 % nodes;
        let list: Vec<String> = (0..nodes)
            .map(|i| format!("\"n{}\"", (first + i) % nodes + 1))
            .collect();
        let text = format!(
            "[package]\nname = \"p{p}\"\ntype = \"failover\"\nnodes = [{}]\nauto_run = true\n{}{}\
             [[resource]]\nkind = \"service\"\nname = \"srv\"\nrestart = {}\nhalt_timeout = \"1s\"\n\
             command = \"simulated\"\n",
            list.join(", "),
            if fencing && p % 2 == 0 {
                "requires = \"fencing\"\n"
            } else {
                ""
            },
            if short_runs {
                "run_timeout = \"2s\"\n"
            } else {
                ""
            },
            restarts.get(p).copied().unwrap_or(1)
        );
        std::fs::write(dir.join(format!("p{p}.toml")), text)?;
    }
    Ok(())
}

/// The configuration directory `--apply` sends: the cluster's, each package with its
/// number of restarts.
pub(crate) fn apply_request(
    directory: &Path,
    options: &Options,
    nodes: u32,
    restarts: &[u32],
    sensitivity_up: bool,
    witness: Option<u32>,
) -> anyhow::Result<halcyon_api::ApplyRequest> {
    let dir = directory.join("apply");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    write_config_variant(
        &dir,
        nodes,
        options.packages,
        Heartbeat::of(options),
        Features::of(options),
        restarts,
        sensitivity_up,
        witness,
    )?;
    let files = halcyon_config::named_sources(std::slice::from_ref(&dir))
        .map_err(|d| anyhow::anyhow!("{d}"))?
        .into_iter()
        .map(|(name, text)| halcyon_api::ConfigFile { name, text })
        .collect();
    Ok(halcyon_api::ApplyRequest { files })
}

/// Node `n`'s daemon settings, reading `directory/config`.
pub(crate) fn settings_of(directory: &Path, n: u32) -> Settings {
    Settings {
        config_paths: vec![directory.join("config")],
        node: format!("n{n}"),
        state_dir: directory.join(format!("state/n{n}")),
        test_faults: false,
        pki_dir: None,
        // The simulator checks placement, leases and consensus under faults, not
        // authentication: its nodes run without credentials, explicitly.
        insecure: true,
        api_socket: None,
    }
}

/// Runs one seed.
pub fn run(options: &Options) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let directory = tempfile::tempdir()?;
    let config_dir = directory.path().join("config");
    std::fs::create_dir_all(&config_dir)?;
    write_config_with(
        &config_dir,
        options.nodes,
        options.packages,
        Heartbeat::of(options),
        Features::of(options),
    )?;
    let drift_dir = directory.path().join("config-drift");
    if options.drift {
        std::fs::create_dir_all(&drift_dir)?;
        write_config_with(
            &drift_dir,
            options.nodes,
            options.packages,
            Heartbeat::Slower { fast: options.fast },
            Features::of(options),
        )?;
    }
    halcyon_consensus::seed_thread_rng(options.seed);

    let mut reshape = Reshape::new(options, directory.path())?;
    let rates: BTreeMap<u32, f64> =
        faults::clock_rates(options.seed, Reshape::hosts(options), DRIFT)
            .into_iter()
            .enumerate()
            .map(|(i, r)| (i as u32 + 1, r))
            .collect();
    let world = World::new(rates);
    let transitions = Arc::new(Mutex::new(Transitions::default()));
    let hook = FaultHook::default();
    let schedule = options.schedule();
    let end_of_faults = schedule
        .iter()
        .map(|(_, f)| f.at + f.lasts)
        .max()
        .unwrap_or(Duration::ZERO);
    let end = end_of_faults.max(options.fault_span) + options.settle;

    let mut sim = turmoil::Builder::new()
        .simulation_duration(end + Duration::from_secs(1))
        .tick_duration(TICK)
        .min_message_latency(LATENCY_MIN)
        .max_message_latency(LATENCY_MAX)
        .tcp_capacity(1 << 16)
        .udp_capacity(1 << 16)
        .enable_random_order()
        .rng_seed(options.seed)
        .build();
    for n in 1..=options.nodes {
        let world = world.clone();
        let transitions = Arc::clone(&transitions);
        let hook = hook.clone();
        let settings = Settings {
            config_paths: vec![if options.drift && n == options.nodes {
                drift_dir.clone()
            } else {
                config_dir.clone()
            }],
            ..settings_of(directory.path(), n)
        };
        sim.host(node_ip(n), move || {
            boot(
                world.clone(),
                Arc::clone(&transitions),
                hook.clone(),
                settings.clone(),
                n,
            )
        });
    }

    host_witnesses(
        &mut sim,
        &world,
        &hook,
        options,
        directory.path(),
        &config_dir,
    )?;
    // The witness the files the harness applies name (`--witness --apply`: see
    // `Options::witness`).
    let mut witness_in = Features::of(options).witness;
    let mut applied_count = 0;
    let mut applies = if options.apply {
        faults::draw_applies(
            options.seed,
            options.nodes,
            options.packages,
            options.fault_span,
            APPLIES,
        )
    } else {
        Vec::new()
    };
    applies.reverse();
    let mut restarts = vec![1u32; options.packages];
    let mut sensitivity_up = false;
    let mut pending: Vec<&(usize, Fault)> = schedule.iter().collect();
    pending.reverse();
    // When each fault heals, and how many nodes the cluster had when it was injected.
    let mut heals: Vec<(Duration, usize, Fault, u32)> = Vec::new();
    let mut takeovers = Vec::new();
    let mut awaiting: Vec<(Duration, Vec<String>)> = Vec::new();
    let mut all_running_at = None;
    // Nodes switched off by their fence device, and when they get power again.
    let mut fenced: Vec<(Duration, u32)> = Vec::new();
    // Nodes whose daemon exited by itself while their disk was full: started again when the
    // fault ends.
    let mut exited: BTreeSet<u32> = BTreeSet::new();
    // The faults as injected (a scripted strike of the coordinator names its node).
    let mut injected: Vec<Fault> = Vec::new();
    let mut steps: u64 = 0;
    loop {
        steps += 1;
        let now = sim.elapsed();
        if now >= end {
            break;
        }
        while pending.last().is_some_and(|(_, f)| f.at <= now) {
            let (index, fault) = pending.pop().expect("checked");
            let fault = &strike_coordinator(fault, &world);
            if fault.nodes.is_empty() && !matches!(fault.kind, Kind::ServiceExit { .. }) {
                world.note(format!("fault {index} skipped: no node coordinates"));
                continue;
            }
            if reshape.skips(fault) {
                world.note(format!(
                    "fault {index} skipped (its node was removed): {fault}"
                ));
                continue;
            }
            world.note(format!("fault {index}: {fault}"));
            if fault.kind == Kind::Crash {
                let packages = packages_on(&world, fault.nodes[0], options.packages);
                if !packages.is_empty() {
                    awaiting.push((now, packages));
                }
            }
            inject(
                &mut sim,
                &world,
                &hook,
                fault,
                options,
                reshape.hosts_now(),
                directory.path(),
            );
            heals.push((
                now + fault.lasts,
                *index,
                fault.clone(),
                reshape.hosts_now(),
            ));
            injected.push(fault.clone());
        }
        while applies.last().is_some_and(|a| a.at <= now) {
            let apply = applies.pop().expect("checked");
            restarts[apply.package] = 3 - restarts[apply.package];
            sensitivity_up ^= apply.sensitivity;
            applied_count += 1;
            if options.witness && (applied_count == 2 || applied_count == 3) {
                witness_in = next_witness(options.nodes, witness_in);
                world.note(match witness_in {
                    Some(WITNESS) => "the next apply puts back the witness",
                    Some(_) => "the next apply replaces the witness",
                    None => "the next apply takes out the witness",
                });
            }
            let request = apply_request(
                directory.path(),
                options,
                reshape.config_nodes(),
                &restarts,
                sensitivity_up,
                witness_in,
            )?;
            let inbox = world.lock().appliers.get(&apply.node).cloned();
            let sent = inbox.is_some_and(|inbox| inbox.send(request).is_ok());
            world.note(format!(
                "apply to n{}: p{} with restart = {}{} ({})",
                apply.node,
                apply.package,
                restarts[apply.package],
                if apply.sensitivity {
                    format!(
                        ", heartbeat interval, sensitivity and lease {}",
                        if sensitivity_up { "up" } else { "back" }
                    )
                } else {
                    String::new()
                },
                if sent { "sent" } else { "its daemon is down" }
            ));
        }
        reshape.step(
            now,
            &mut sim,
            &world,
            &transitions,
            &hook,
            options,
            directory.path(),
            &restarts,
            sensitivity_up,
            witness_in,
        )?;
        heals.sort_by_key(|(at, _, _, _)| *at);
        while heals.first().is_some_and(|(at, _, _, _)| *at <= now) {
            let (_, index, fault, nodes) = heals.remove(0);
            if reshape.skips_heal(&fault) {
                world.note(format!(
                    "fault {index} ends; its node stays off (it was removed)"
                ));
                continue;
            }
            world.note(format!("fault {index} healed"));
            heal(
                &mut sim,
                &world,
                &hook,
                &fault,
                &transitions,
                nodes,
                &witnesses(options),
            );
            if fault.kind == Kind::DiskError {
                for node in &fault.nodes {
                    if exited.remove(node) {
                        restart_exited(&mut sim, &world, &transitions, *node);
                    }
                }
            }
        }
        if let Err(e) = sim.step() {
            world.violation(format!("a simulated host failed: {e}"));
            break;
        }
        world.lock().now = sim.elapsed();
        for node in world.take_exits() {
            let ip = node_ip(node);
            if sim.is_host_running(ip) {
                sim.crash(ip);
            }
            if hook.disk_error(NodeId::from(node)) {
                exited.insert(node);
            } else {
                // The disk recovered while the daemon was leaving: started again at once.
                restart_exited(&mut sim, &world, &transitions, node);
            }
        }
        power_fenced(&mut sim, &world, &transitions, &mut fenced);
        world.fire_guards();
        if all_running_at.is_none()
            && steps.is_multiple_of(50)
            && world.packages_running() == options.packages
        {
            all_running_at = Some(sim.elapsed());
            world.note(format!("all {} packages run", options.packages));
        }
        awaiting.retain(|(since, packages)| {
            let back = packages.iter().all(|p| !world.active_nodes(p).is_empty());
            if back {
                takeovers.push(sim.elapsed() - *since);
            }
            !back
        });
        if !world.violations().is_empty() {
            break;
        }
    }
    if world.violations().is_empty() {
        reshape.check_end(&world, options);
        liveness(&world, options);
        collateral(&world, options, &injected);
        for witness in witnesses(options) {
            witness_at_end(&world, witness, witness_in);
        }
    }
    if !world.violations().is_empty() {
        describe_nodes(&world);
    }
    let history = world.history_text(usize::MAX);
    let voters_at_end = world.leader().map(|node| node.consensus.voters());
    let term_at_end = world
        .running_nodes()
        .iter()
        .map(|node| node.consensus.metrics().borrow().current_term)
        .max()
        .unwrap_or(0);
    Ok(Outcome {
        seed: options.seed,
        faults: schedule,
        violations: world.violations(),
        digest: digest(history.as_bytes()),
        history,
        simulated: sim.elapsed(),
        real: started.elapsed(),
        takeovers,
        all_running_at,
        voters_at_end,
        term_at_end,
    })
}

/// The shortest fault list (found by removing faults one at a time while the run still
/// fails, at most [`MINIMIZE_RUNS`] reruns) and its history up to the first violation.
pub fn minimize(options: &Options, failed: &Outcome) -> anyhow::Result<(Outcome, String)> {
    let mut best = failed.clone();
    let mut current: Vec<usize> = failed.faults.iter().map(|(i, _)| *i).collect();
    let mut runs = 0;
    let mut changed = true;
    while changed && runs < MINIMIZE_RUNS {
        changed = false;
        let mut position = current.len();
        while position > 0 && runs < MINIMIZE_RUNS {
            position -= 1;
            let mut trial = current.clone();
            trial.remove(position);
            let outcome = run(&Options {
                only: Some(trial.clone()),
                ..options.clone()
            })?;
            runs += 1;
            if !outcome.passed() {
                current = trial;
                best = outcome;
                changed = true;
            }
        }
    }
    let history = best.history_to_violation();
    Ok((best, history))
}

/// Most reruns [`minimize`] makes.
pub const MINIMIZE_RUNS: usize = 40;

/// One boot of node `n`'s daemon; returns only if the host is crashed (dropped).
pub(crate) async fn boot(
    world: World,
    transitions: Arc<Mutex<Transitions>>,
    hook: FaultHook,
    settings: Settings,
    n: u32,
) -> turmoil::Result {
    transitions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .forget(n);
    let mut platform = platform(&world, n, &hook);
    let observed = world.clone();
    platform.applied = Some(Arc::new(move |index, command: &[u8], state| {
        observed.applied(n, index, command);
        transitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .applied(&observed, n, index, state);
    }));
    loop {
        match halcyon_daemon::start_on(settings.clone(), platform.clone()).await {
            Ok(node) => {
                world.note(format!(
                    "n{n}: daemon started (incarnation {})",
                    node.incarnation()
                ));
                world.lock().nodes.insert(n, Arc::downgrade(&node));
                if world.lock().hung.contains(&n) {
                    node.hold_actions.store(true, Ordering::Relaxed);
                }
                // `--apply`: the harness hands this daemon `halcyon apply` requests, which it
                // carries out as its API would (any node may: writes go to the leader).
                let (applier, mut requests) = tokio::sync::mpsc::unbounded_channel();
                world.lock().appliers.insert(n, applier);
                let serve_applies = async {
                    while let Some(request) = requests.recv().await {
                        let (node, world) = (Arc::clone(&node), world.clone());
                        tokio::spawn(async move {
                            let answer =
                                halcyon_daemon::reconfigure::apply(&node, &request, "sim", None)
                                    .await;
                            let told = match answer {
                                Ok(a) if a.pending => "still running after the wait".to_owned(),
                                Ok(_) => "done".to_owned(),
                                Err(e) => format!("not applied: {}", e.message),
                            };
                            world.note(format!("n{n}: apply: {told}"));
                        });
                    }
                    std::future::pending::<()>().await
                };
                // As `halcyon_daemon::run` does: a replica stopped on a storage error (a full
                // disk) makes the daemon halt its packages, leave and exit.
                tokio::select! {
                    biased;
                    why = node.consensus.failed() => {
                        world.note(format!("n{n}: the replicated log stopped: {why}"));
                        // The error names the state directory (a temporary path): not noted,
                        // so that histories stay equal from run to run.
                        let _ = node.leave_on_storage_failure(&why).await;
                        world.note(format!("n{n}: daemon halted its packages and exited"));
                        world.lock().appliers.remove(&n);
                        world.daemon_exited(n);
                    }
                    () = serve_applies => {}
                }
                std::future::pending::<()>().await;
            }
            Err(e) => {
                world.note(format!("n{n}: daemon failed to start: {e:#}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The quorum witness's daemon (`halcyon witness`) on the simulator's network; every entry
/// its replica applies is checked as a node's are (a committed entry never changes).
async fn boot_witness(
    world: World,
    hook: FaultHook,
    settings: halcyon_daemon::witness::WitnessSettings,
    witness: u32,
) -> turmoil::Result {
    let observed = world.clone();
    let observer: halcyon_daemon::platform::ApplyObserver =
        Arc::new(move |index, command: &[u8], _| observed.applied(witness, index, command));
    loop {
        let network = Arc::new(crate::platform::SimNetwork::new(hook.clone()));
        match halcyon_daemon::witness::start_on(
            settings.clone(),
            network,
            Some(Arc::clone(&observer)),
        )
        .await
        {
            Ok(_running) => {
                world.note(format!("w{witness}: witness daemon started"));
                std::future::pending::<()>().await;
            }
            Err(e) => {
                world.note(format!("w{witness}: witness daemon failed to start: {e:#}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Starts a host for each witness of the run ([`witnesses`]): [`WITNESS`] from the run's
/// files, the replacement from files of its own that name it (as an administrator writes
/// them first).
fn host_witnesses(
    sim: &mut turmoil::Sim<'_>,
    world: &World,
    hook: &FaultHook,
    options: &Options,
    directory: &Path,
    config_dir: &Path,
) -> anyhow::Result<()> {
    for witness in witnesses(options) {
        let config_paths = if witness == WITNESS {
            vec![config_dir.to_owned()]
        } else {
            let dir = directory.join("config-replacement");
            std::fs::create_dir_all(&dir)?;
            write_config_variant(
                &dir,
                options.nodes,
                options.packages,
                Heartbeat::of(options),
                Features::of(options),
                &[],
                false,
                Some(witness),
            )?;
            vec![dir]
        };
        let (world, hook) = (world.clone(), hook.clone());
        let settings = halcyon_daemon::witness::WitnessSettings {
            config_paths,
            state_dir: directory.join(format!("state/n{witness}")),
            pki_dir: None,
            insecure: true,
        };
        sim.host(node_ip(witness), move || {
            boot_witness(world.clone(), hook.clone(), settings.clone(), witness)
        });
    }
    Ok(())
}

/// The witness the harness's next files name after `now` (`--witness --apply`, at the
/// second and third reconfiguration): out and back, or, for two nodes, which must keep one
/// (`check` refuses them without), the replacement and back.
fn next_witness(nodes: u32, now: Option<u32>) -> Option<u32> {
    match now {
        Some(WITNESS) if nodes == 2 => Some(WITNESS_REPLACEMENT),
        Some(_) if nodes == 2 => Some(WITNESS),
        Some(_) => None,
        None => Some(WITNESS),
    }
}

/// The witnesses a run has hosts for: [`WITNESS`], and [`WITNESS_REPLACEMENT`] in a
/// two-node run with `--apply`.
fn witnesses(options: &Options) -> Vec<u32> {
    match (options.witness, options.nodes == 2 && options.apply) {
        (false, _) => Vec::new(),
        (true, false) => vec![WITNESS],
        (true, true) => vec![WITNESS, WITNESS_REPLACEMENT],
    }
}

/// `--witness`: at the end the leader counts witness `witness` a voter when the running
/// configuration has it, and not when it does not (`in_files`: the witness of the
/// harness's last files).
fn witness_at_end(world: &World, witness: u32, in_files: Option<u32>) {
    let Some(leader) = world.leader() else {
        world.violation("no leader at the end".to_owned());
        return;
    };
    let voter = leader.consensus.voters().contains(&NodeId::from(witness));
    let configured = leader.snapshot().config().is_some_and(|c| {
        c.cluster
            .quorum
            .witness
            .as_ref()
            .is_some_and(|w| w.number == witness)
    });
    if configured != (in_files == Some(witness)) {
        world.note(format!(
            "at the end the running configuration {} w{witness} (the harness's last apply \
             may not have been committed)",
            if configured { "has" } else { "does not have" }
        ));
    }
    if voter != configured {
        world.violation(format!(
            "at the end w{witness} is {}a voter, and the running configuration {} it",
            if voter { "" } else { "not " },
            if configured { "has" } else { "does not have" }
        ));
    }
}

/// Starts node `node`'s daemon again after it exited by itself, on its kept storage, as a
/// killed daemon is restarted; a node its fence device switched off boots when it gets
/// power again, and one already booted again (by that) is left as it is.
fn restart_exited(
    sim: &mut turmoil::Sim<'_>,
    world: &World,
    transitions: &Arc<Mutex<Transitions>>,
    node: u32,
) {
    let ip = node_ip(node);
    if world.is_powered_off(node) || sim.is_host_running(ip) {
        return;
    }
    world.note(format!("n{node}: daemon started again after its exit"));
    transitions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .forget(node);
    sim.bounce(ip);
}

/// Notes what each live daemon thinks at the end of a failed run.
fn describe_nodes(world: &World) {
    let nodes: Vec<(u32, Arc<Node>)> = world
        .lock()
        .nodes
        .iter()
        .filter_map(|(n, node)| node.upgrade().map(|node| (*n, node)))
        .collect();
    for (n, node) in nodes {
        let state = node.snapshot();
        let execution = state.execution().map_or("none".to_string(), |x| {
            format!(
                "#{} {:?}, actions done {:?} failed {:?}",
                x.id, x.plan.event, x.done, x.failed
            )
        });
        world.note(format!(
            "at the end, n{n}: leader {:?}, applied {}, lease {:?} left, members {:?}, pending {}, execution {execution}",
            node.consensus.leader(),
            state.applied_index(),
            node.lease_remaining(),
            state.cluster().members,
            state.pending().len(),
        ));
    }
}

/// Packages with a resource running on `node` now.
fn packages_on(world: &World, node: u32, packages: usize) -> Vec<String> {
    (0..packages)
        .map(|p| format!("p{p}"))
        .filter(|p| world.active_nodes(p).contains(&node))
        .collect()
}

/// The hosts not in `node_set`: of the `nodes` nodes, and the run's witnesses.
fn others(node_set: &[u32], nodes: u32, witnesses: &[u32]) -> Vec<IpAddr> {
    (1..=nodes)
        .chain(witnesses.iter().copied())
        .filter(|n| !node_set.contains(n))
        .map(node_ip)
        .collect()
}

fn ips(nodes: &[u32]) -> Vec<IpAddr> {
    nodes.iter().copied().map(node_ip).collect()
}

/// `nodes`: how many nodes the cluster has now (`--grow` adds one).
fn inject(
    sim: &mut turmoil::Sim<'_>,
    world: &World,
    hook: &FaultHook,
    fault: &Fault,
    o: &Options,
    nodes: u32,
    directory: &Path,
) {
    let group = ips(&fault.nodes);
    let rest = others(&fault.nodes, nodes, &witnesses(o));
    match &fault.kind {
        Kind::Crash => {
            world.power_off(fault.nodes[0]);
            sim.crash(group[0]);
            if o.wipe {
                let state = directory.join(format!("state/n{}", fault.nodes[0]));
                let emptied =
                    std::fs::remove_dir_all(&state).and_then(|()| std::fs::create_dir_all(&state));
                match emptied {
                    Ok(()) => world.note(format!("n{}'s state directory emptied", fault.nodes[0])),
                    Err(e) => world.note(format!("emptying {}: {e}", state.display())),
                }
            }
        }
        Kind::DaemonKill => sim.crash(group[0]),
        Kind::Pause => each_pair(&group, &rest, |a, b| sim.hold(a, b)),
        Kind::Partition => each_pair(&group, &rest, |a, b| sim.partition(a, b)),
        Kind::OneWay => each_pair(&group, &rest, |a, b| sim.partition_oneway(a, b)),
        Kind::Loss(rate) => each_pair(&group, &rest, |a, b| sim.set_link_fail_rate(a, b, *rate)),
        Kind::Delay(max) => each_pair(&group, &rest, |a, b| {
            sim.set_link_max_message_latency(a, b, *max)
        }),
        Kind::SlowDisk(delay) => {
            for node in &fault.nodes {
                hook.set_disk_delay(NodeId::from(*node), *delay);
            }
        }
        Kind::DiskError => {
            for node in &fault.nodes {
                hook.set_disk_error(NodeId::from(*node));
            }
            // A full disk shows only when the store writes, and a quiet cluster writes
            // nothing: a service exits (on the node if it runs one), so that the cluster
            // has a failure to commit while the disk is full.
            let running: Vec<(u32, i32)> = (0..o.packages)
                .flat_map(|p| world.running_of(&format!("p{p}")))
                .collect();
            let exiting = running
                .iter()
                .find(|(node, _)| fault.nodes.contains(node))
                .or(running.first());
            if let Some((_, group)) = exiting {
                world.stop_activity(*group, crate::collateral::INJECTED);
            }
        }
        Kind::ServiceExit { package } => {
            let name = format!("p{package}");
            for (_, group) in world.running_of(&name) {
                world.stop_activity(group, crate::collateral::INJECTED);
            }
        }
        Kind::Hang => {
            world.lock().hung.insert(fault.nodes[0]);
            let node = world
                .lock()
                .nodes
                .get(&fault.nodes[0])
                .and_then(Weak::upgrade);
            if let Some(node) = node {
                node.hold_actions.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Carries out the fences the simulated devices confirmed during the last step (the host
/// crashed, unless a fault already has it down) and gives power back to the nodes whose
/// [`FENCED_OFF`] is over (booted unless a fault still keeps them down).
fn power_fenced(
    sim: &mut turmoil::Sim<'_>,
    world: &World,
    transitions: &Arc<Mutex<Transitions>>,
    fenced: &mut Vec<(Duration, u32)>,
) {
    let now = sim.elapsed();
    for node in world.take_fence_requests() {
        let ip = node_ip(node);
        if sim.is_host_running(ip) {
            sim.crash(ip);
        }
        fenced.retain(|(_, n)| *n != node);
        fenced.push((now + FENCED_OFF, node));
    }
    fenced.retain(|&(on_at, node)| {
        if on_at > now {
            return true;
        }
        world.power_on(node);
        world.note(format!("n{node}: power on after its fence"));
        let ip = node_ip(node);
        if !sim.is_host_running(ip) {
            transitions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .forget(node);
            sim.bounce(ip);
        }
        false
    });
}

fn heal(
    sim: &mut turmoil::Sim<'_>,
    world: &World,
    hook: &FaultHook,
    fault: &Fault,
    transitions: &Arc<Mutex<Transitions>>,
    nodes: u32,
    witnesses: &[u32],
) {
    let group = ips(&fault.nodes);
    let rest = others(&fault.nodes, nodes, witnesses);
    match &fault.kind {
        // A node its fence device switched off boots when it gets power again.
        Kind::Crash | Kind::DaemonKill if world.is_powered_off(fault.nodes[0]) => {}
        Kind::Crash | Kind::DaemonKill => {
            transitions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .forget(fault.nodes[0]);
            sim.bounce(group[0]);
        }
        Kind::Pause => each_pair(&group, &rest, |a, b| sim.release(a, b)),
        Kind::Partition => each_pair(&group, &rest, |a, b| sim.repair(a, b)),
        Kind::OneWay => each_pair(&group, &rest, |a, b| sim.repair_oneway(a, b)),
        Kind::Loss(_) => each_pair(&group, &rest, |a, b| sim.set_link_fail_rate(a, b, 0.0)),
        Kind::Delay(_) => each_pair(&group, &rest, |a, b| {
            sim.set_link_max_message_latency(a, b, LATENCY_MAX)
        }),
        Kind::SlowDisk(_) => {
            for node in &fault.nodes {
                hook.set_disk_delay(NodeId::from(*node), Duration::ZERO);
            }
        }
        // The daemon, if it exited, is started again by the caller.
        Kind::DiskError => {
            for node in &fault.nodes {
                hook.clear_disk_error(NodeId::from(*node));
            }
        }
        Kind::ServiceExit { .. } => {}
        // The daemon is restarted (its services and guard keep running): a new incarnation,
        // which halts its failover packages at start and joins again.
        Kind::Hang if world.is_powered_off(fault.nodes[0]) => {
            world.lock().hung.remove(&fault.nodes[0]);
        }
        Kind::Hang => {
            world.lock().hung.remove(&fault.nodes[0]);
            // A daemon another fault keeps down boots when that one heals.
            if sim.is_host_running(group[0]) {
                sim.crash(group[0]);
                transitions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .forget(fault.nodes[0]);
                sim.bounce(group[0]);
            }
        }
    }
}

fn each_pair(a: &[IpAddr], b: &[IpAddr], mut f: impl FnMut(IpAddr, IpAddr)) {
    for x in a {
        for y in b {
            f(*x, *y);
        }
    }
}

/// Every fault healed long enough ago, every node up and connected: every `auto_run` package
/// must be active, on exactly one node.
/// No package stopped where no fault reached (`crate::collateral`). Not checked in runs
/// that reconfigure the cluster or its voters (`--apply`, `--grow`, `--shrink`,
/// `--auto-shrink`: a changed package halts and runs again by design, the voters change)
/// or hold a node's executor (`--hang`: the cluster gives up on it over tens of seconds).
fn collateral(world: &World, o: &Options, faults: &[Fault]) {
    if o.apply || o.grow || o.shrink || o.auto_shrink || o.hang {
        return;
    }
    let stops: Vec<crate::collateral::Stop> = world
        .lock()
        .activities
        .values()
        .filter_map(|a| {
            a.stopped.as_ref().map(|(at, why)| crate::collateral::Stop {
                node: a.node,
                package: a.package.clone(),
                at: *at,
                why: why.clone(),
            })
        })
        .collect();
    let voters = o.nodes as usize + usize::from(o.witness);
    for line in crate::collateral::unjustified(&stops, faults, voters) {
        world.violation(line);
    }
}

/// `fault` with [`faults::COORDINATOR`] among its nodes replaced by the node that leads
/// now (a scripted fault of whichever node coordinates; left out when none leads).
fn strike_coordinator(fault: &Fault, world: &World) -> Fault {
    let mut fault = fault.clone();
    if fault.nodes.contains(&faults::COORDINATOR) {
        let leader = world.leader().map(|node| node.number);
        fault.nodes = fault
            .nodes
            .iter()
            .filter_map(|&n| {
                if n == faults::COORDINATOR {
                    leader
                } else {
                    Some(n)
                }
            })
            .collect();
    }
    fault
}

fn liveness(world: &World, o: &Options) {
    for p in 0..o.packages {
        let name = format!("p{p}");
        let active = world.active_nodes(&name);
        if active.len() != 1 {
            world.violation(format!(
                "{name} is active on {} node(s) {:?} {} s after the last fault was healed, with every node up",
                active.len(),
                active,
                o.settle.as_secs()
            ));
        }
    }
}
