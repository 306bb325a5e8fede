//! What the simulation knows outside the daemons: the activity ledger of the simulated
//! resources, the lease guards (which outlive a killed daemon, like the real guard process),
//! the log entries every replica applied, and the history of a run.
//!
//! Everything runs on the simulation's one thread; the mutex only satisfies the daemon's
//! `Send + Sync` bounds.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use halcyon_guard::{BootTime, FenceSummary};

/// A resource started by a node's daemon (through the simulated resource factory).
#[derive(Clone, Debug)]
pub struct Activity {
    /// The simulated process group (unique in a run).
    pub group: i32,
    pub node: u32,
    pub package: String,
    pub resource: usize,
    pub started: Duration,
    /// When and why it stopped (halted, fenced, power loss, failure injected).
    pub stopped: Option<(Duration, String)>,
    /// Woken when it stops: the supervisor waits on this instead of polling.
    pub ended: Arc<tokio::sync::Notify>,
}

/// One node's lease guard: armed with a deadline on the node's (drifting) clock.
#[derive(Clone, Debug, Default)]
pub struct GuardState {
    pub deadline: Option<BootTime>,
    pub groups: BTreeSet<i32>,
    /// Fences not yet taken by the daemon.
    pub fences: Vec<FenceSummary>,
}

#[derive(Default)]
pub struct Inner {
    pub now: Duration,
    /// Every activity, by group (in start order).
    pub activities: BTreeMap<i32, Activity>,
    /// Running activities: package -> (node, group).
    running: BTreeMap<String, BTreeSet<(u32, i32)>>,
    next_group: i32,
    pub guards: BTreeMap<u32, GuardState>,
    /// Clock rate of each node (1.0 = exact), within the lease's drift bound.
    pub rates: BTreeMap<u32, f64>,
    /// Every applied log entry: index -> (digest of the command, first node that applied it).
    applied: BTreeMap<u64, (u64, u32)>,
    /// Every node's highest applied index and whether it jumped back.
    pub violations: Vec<String>,
    pub history: Vec<(Duration, String)>,
    /// The running daemons (for the end-of-run report).
    pub nodes: BTreeMap<u32, std::sync::Weak<halcyon_daemon::node::Node>>,
    /// Nodes whose daemon holds every plan action it is handed (`--hang`): a daemon that
    /// boots while its node is in here holds them from its start.
    pub hung: BTreeSet<u32>,
    /// Each running daemon's inbox for `halcyon apply` requests (`--apply`).
    pub appliers: BTreeMap<u32, tokio::sync::mpsc::UnboundedSender<halcyon_api::ApplyRequest>>,
    /// The simulated shared disks of disk heartbeat networks: device -> each node's slot
    /// (how many times it was written, its last heartbeat). Outside the simulated network:
    /// partitions do not cut them, and a crashed node's slot keeps its last heartbeat.
    pub disks: BTreeMap<String, BTreeMap<u32, (u64, Vec<u8>)>>,
    /// Nodes a simulated fence device switched off, until the harness powers them on again:
    /// nothing starts on them (their host keeps running until the harness crashes it at its
    /// next step, as a power switch outruns the software).
    powered_off: BTreeSet<u32>,
    /// Fences the harness has yet to carry out on the simulated hosts (crash, later bounce).
    fence_requests: Vec<u32>,
    /// Daemons that exited by themselves (their replica stopped on a storage error), whose
    /// hosts the harness has yet to crash: the process is gone, as after a daemon kill.
    exits: Vec<u32>,
}

/// Shared by the harness and every simulated host.
#[derive(Clone, Default)]
pub struct World {
    inner: Arc<Mutex<Inner>>,
}

impl World {
    pub fn new(rates: BTreeMap<u32, f64>) -> World {
        let world = World::default();
        world.lock().rates = rates;
        world.lock().next_group = 1000;
        world
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Simulated time as seen by the current host, or the harness's last step.
    pub fn now(&self) -> Duration {
        turmoil::sim_elapsed().unwrap_or_else(|| self.lock().now)
    }

    pub fn note(&self, line: impl Into<String>) {
        let now = self.now();
        self.lock().history.push((now, line.into()));
    }

    /// A node's clock reading (its rate applied to simulated time), as the guard's boot time.
    pub fn node_clock(&self, node: u32) -> BootTime {
        let now = self.now();
        let rate = self.lock().rates.get(&node).copied().unwrap_or(1.0);
        BootTime::from_nanos(now.mul_f64(rate).as_nanos() as u64)
    }

    // ------------------------------------------------------------------ activities

    pub fn start_activity(&self, node: u32, package: &str, resource: usize) -> i32 {
        let now = self.now();
        let mut inner = self.lock();
        inner.next_group += 1;
        let group = inner.next_group;
        inner.activities.insert(
            group,
            Activity {
                group,
                node,
                package: package.to_owned(),
                resource,
                started: now,
                stopped: None,
                ended: Arc::new(tokio::sync::Notify::new()),
            },
        );
        inner.history.push((
            now,
            format!("n{node}: {package} resource {resource} started"),
        ));
        let running = inner.running.entry(package.to_owned()).or_default();
        let elsewhere: BTreeSet<u32> = running
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| *n != node)
            .collect();
        running.insert((node, group));
        drop(inner);
        if !elsewhere.is_empty() {
            self.violation(format!(
                "failover package {package} started on n{node} while active on {}",
                elsewhere
                    .iter()
                    .map(|n| format!("n{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        group
    }

    /// Stops an activity; false when it was not running.
    pub fn stop_activity(&self, group: i32, why: &str) -> bool {
        let now = self.now();
        let mut inner = self.lock();
        let Some(activity) = inner
            .activities
            .get_mut(&group)
            .filter(|a| a.stopped.is_none())
        else {
            return false;
        };
        activity.stopped = Some((now, why.to_owned()));
        activity.ended.notify_waiters();
        let (node, package) = (activity.node, activity.package.clone());
        let line = format!(
            "n{node}: {package} resource {} stopped ({why})",
            activity.resource
        );
        if let Some(running) = inner.running.get_mut(&package) {
            running.remove(&(node, group));
        }
        inner.history.push((now, line));
        true
    }

    pub fn running(&self, group: i32) -> bool {
        self.lock()
            .activities
            .get(&group)
            .is_some_and(|a| a.stopped.is_none())
    }

    /// Resolves once `group` is not running (at once if it never ran).
    pub async fn ended(&self, group: i32) {
        let Some(ended) = self
            .lock()
            .activities
            .get(&group)
            .map(|a| Arc::clone(&a.ended))
        else {
            return;
        };
        loop {
            let notified = ended.notified();
            if !self.running(group) {
                return;
            }
            notified.await;
        }
    }

    /// Power loss of `node`: everything it ran stops, its guard dies with it.
    pub fn power_off(&self, node: u32) {
        let groups: Vec<i32> = self
            .lock()
            .running
            .values()
            .flatten()
            .filter(|(n, _)| *n == node)
            .map(|(_, group)| *group)
            .collect();
        for group in groups {
            self.stop_activity(group, "power loss");
        }
        self.lock().guards.remove(&node);
    }

    /// A simulated fence device switches `node` off: everything it runs stops at once, its
    /// guard with it, nothing starts on it until [`World::power_on`], and the harness crashes
    /// its host at its next step ([`World::take_fence_requests`]).
    pub fn fence(&self, node: u32) {
        self.power_off(node);
        let mut inner = self.lock();
        inner.powered_off.insert(node);
        inner.fence_requests.push(node);
        drop(inner);
        self.note(format!("n{node}: switched off by its fence device"));
    }

    /// The nodes fenced since the last call.
    pub fn take_fence_requests(&self) -> Vec<u32> {
        std::mem::take(&mut self.lock().fence_requests)
    }

    /// Node `node`'s daemon has exited by itself: the harness crashes its host at its next
    /// step (its services and guard stay, as for a killed daemon).
    pub fn daemon_exited(&self, node: u32) {
        self.lock().exits.push(node);
    }

    /// The daemons that exited since the last call.
    pub fn take_exits(&self) -> Vec<u32> {
        std::mem::take(&mut self.lock().exits)
    }

    /// The node has power again (its host is bounced).
    pub fn power_on(&self, node: u32) {
        self.lock().powered_off.remove(&node);
    }

    pub fn is_powered_off(&self, node: u32) -> bool {
        self.lock().powered_off.contains(&node)
    }

    /// Nodes on which `package` has a resource running now.
    pub fn active_nodes(&self, package: &str) -> BTreeSet<u32> {
        self.lock()
            .running
            .get(package)
            .map(|r| r.iter().map(|(node, _)| *node).collect())
            .unwrap_or_default()
    }

    /// The running activities of `package` (node, group).
    pub fn running_of(&self, package: &str) -> Vec<(u32, i32)> {
        self.lock()
            .running
            .get(package)
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default()
    }

    /// How many packages have something running.
    pub fn packages_running(&self) -> usize {
        self.lock()
            .running
            .values()
            .filter(|r| !r.is_empty())
            .count()
    }

    // ---------------------------------------------------------------------- guards

    pub fn guard(&self, node: u32) -> GuardState {
        self.lock().guards.get(&node).cloned().unwrap_or_default()
    }

    /// Reads `node`'s guard without copying it (`None` after a power loss).
    pub fn read_guard<T>(&self, node: u32, f: impl FnOnce(Option<&GuardState>) -> T) -> T {
        f(self.lock().guards.get(&node))
    }

    pub fn with_guard<T>(&self, node: u32, f: impl FnOnce(&mut GuardState) -> T) -> T {
        f(self.lock().guards.entry(node).or_default())
    }

    /// Fires every armed guard whose deadline passed on its node's clock: the registered
    /// groups are killed, as `halcyon guard` does.
    pub fn fire_guards(&self) {
        let nodes: Vec<u32> = self.lock().guards.keys().copied().collect();
        for node in nodes {
            let clock = self.node_clock(node);
            let due = self.read_guard(node, |g| {
                g.and_then(|g| g.deadline)
                    .is_some_and(|deadline| clock >= deadline)
            });
            if !due {
                continue;
            }
            let (deadline, groups) = self.with_guard(node, |g| {
                (
                    g.deadline.take().expect("due"),
                    std::mem::take(&mut g.groups),
                )
            });
            let mut killed = 0;
            for group in &groups {
                if self.stop_activity(*group, "fenced by the lease guard") {
                    killed += 1;
                }
            }
            let line = format!(
                "reason=expired deadline={} groups_killed={killed}",
                deadline.as_nanos()
            );
            self.note(format!("n{node}: lease guard fenced ({killed} killed)"));
            self.with_guard(node, |g| {
                g.fences.push(FenceSummary {
                    reason: "expired".into(),
                    deadline,
                    fire_at: clock,
                    started: clock,
                    finished: clock,
                    groups_killed: killed,
                    groups_failed: 0,
                    addresses_deleted: 0,
                    addresses_failed: 0,
                    line,
                })
            });
        }
    }

    // --------------------------------------------------------------------- applied

    /// A replica applied `command` at `index`: the same index must hold the same command on
    /// every node, forever (a committed change is never lost or changed).
    pub fn applied(&self, node: u32, index: u64, command: &[u8]) {
        let digest = digest(command);
        let now = self.now();
        let mut inner = self.lock();
        match inner.applied.get(&index).copied() {
            None => {
                inner.applied.insert(index, (digest, node));
            }
            Some((d, _)) if d == digest => {}
            Some((_, first)) => {
                let line = format!(
                    "committed entry {index} differs: n{first} applied one command, n{node} another"
                );
                inner.violations.push(line.clone());
                inner.history.push((now, format!("VIOLATION {line}")));
            }
        }
    }

    /// The daemons running now (the lock is not held while the caller uses them).
    pub fn running_nodes(&self) -> Vec<Arc<halcyon_daemon::node::Node>> {
        self.lock()
            .nodes
            .values()
            .filter_map(std::sync::Weak::upgrade)
            .collect()
    }

    /// A running daemon that leads, if any.
    pub fn leader(&self) -> Option<Arc<halcyon_daemon::node::Node>> {
        self.running_nodes()
            .into_iter()
            .find(|node| node.consensus.is_leader())
    }

    /// Whether a running daemon's replica has node `n` in its running configuration.
    pub fn running_config_has(&self, n: u32) -> bool {
        self.running_nodes().iter().any(|node| {
            node.snapshot()
                .config()
                .is_some_and(|config| config.cluster.nodes.iter().any(|c| c.number == n))
        })
    }

    /// The node whose replica applied log entry `index` first.
    pub fn first_to_apply(&self, index: u64) -> Option<u32> {
        self.lock().applied.get(&index).map(|(_, node)| *node)
    }

    pub fn violation(&self, line: String) {
        let now = self.now();
        let mut inner = self.lock();
        inner.history.push((now, format!("VIOLATION {line}")));
        inner.violations.push(line);
    }

    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    pub fn history_text(&self, last: usize) -> String {
        let inner = self.lock();
        let skip = inner.history.len().saturating_sub(last);
        let mut out = String::new();
        for (at, line) in inner.history.iter().skip(skip) {
            let _ = writeln!(out, "  {:>9.3} s  {line}", at.as_secs_f64());
        }
        out
    }
}

/// FNV-1a: a stable digest (the same in every run, unlike the standard hasher).
pub fn digest(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(world: &World, millis: u64) {
        world.lock().now = Duration::from_millis(millis);
    }

    #[test]
    fn a_failover_package_started_where_it_already_runs_elsewhere_is_a_violation() {
        let world = World::new(BTreeMap::new());
        let first = world.start_activity(1, "p0", 0);
        assert!(world.violations().is_empty());
        world.start_activity(2, "p0", 0);
        assert_eq!(world.violations().len(), 1, "{:?}", world.violations());
        assert!(world.violations()[0].contains("p0 started on n2 while active on n1"));
        // Stopped first, then started elsewhere: fine.
        let world = World::new(BTreeMap::new());
        let first_again = world.start_activity(1, "p0", 0);
        assert!(world.stop_activity(first_again, "halted"));
        assert!(!world.stop_activity(first_again, "halted"), "stops once");
        world.start_activity(2, "p0", 0);
        assert!(world.violations().is_empty());
        assert_eq!(world.active_nodes("p0"), BTreeSet::from([2]));
        let _ = first;
    }

    #[test]
    fn a_log_index_applied_with_another_command_is_a_violation() {
        let world = World::new(BTreeMap::new());
        world.applied(1, 5, b"register n1");
        world.applied(2, 5, b"register n1");
        assert!(world.violations().is_empty());
        world.applied(3, 5, b"register n3");
        assert_eq!(world.violations().len(), 1);
        assert_eq!(world.first_to_apply(5), Some(1));
    }

    #[test]
    fn a_guard_fences_its_groups_when_its_deadline_passes_on_its_node_clock() {
        // Node 1's clock runs 0.5 % fast.
        let world = World::new(BTreeMap::from([(1, 1.005)]));
        at(&world, 0);
        let group = world.start_activity(1, "p0", 0);
        world.with_guard(1, |g| {
            g.groups.insert(group);
            g.deadline = Some(BootTime::from_nanos(1_000_000_000));
        });
        at(&world, 990);
        world.fire_guards();
        assert!(world.running(group));
        // 995 ms of simulated time is 1000 ms on node 1's clock.
        at(&world, 996);
        world.fire_guards();
        assert!(!world.running(group));
        let fences = world.guard(1).fences;
        assert_eq!(fences.len(), 1);
        assert_eq!(fences[0].groups_killed, 1);
        assert!(
            world.guard(1).deadline.is_none(),
            "a fired guard is disarmed"
        );
    }

    #[test]
    fn power_loss_stops_everything_of_the_node_and_its_guard() {
        let world = World::new(BTreeMap::new());
        let a = world.start_activity(1, "p0", 0);
        let b = world.start_activity(2, "p1", 0);
        world.with_guard(1, |g| g.deadline = Some(BootTime::from_nanos(1)));
        world.power_off(1);
        assert!(!world.running(a));
        assert!(world.running(b));
        assert!(world.guard(1).deadline.is_none());
    }
}
