//! The async driver on simulated time: three nodes on in-memory networks, with traffic cut
//! where a test says. Every time asserted is exact simulated time, so the bounds are the
//! detector's own (detection time, one interval, one step), not allowances for a slow machine.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use halcyon_config::Cluster;

use super::*;
use crate::detector::{AdapterAction, Change, DownCause, NodeState, PathState};
use crate::wire::Plain;

const LAN: u32 = 1;
const BACKUP_LAN: u32 = 2;
const NODES: [u32; 3] = [1, 2, 3];
/// Room in each node's inbox, per network (a full inbox drops, as a socket buffer would).
const INBOX_MAX: usize = 64;
const CHANGES_MAX: usize = 256;

/// Three nodes on one or two ip networks (`lan`, `backup`), 100 ms x 4 on each.
fn cluster(backup: bool) -> Cluster {
    let mut text = String::from(
        r#"
[cluster]
name = "t"
id = 7
port = 7400
[heartbeat]
interval = "100ms"
sensitivity = 4
[[network]]
name = "lan"
kind = "ip"
subnets = ["10.0.1.0/24"]
"#,
    );
    if backup {
        text.push_str(
            "[[network]]\nname = \"backup\"\nkind = \"ip\"\nsubnets = [\"10.0.2.0/24\"]\n",
        );
    }
    for n in NODES {
        text.push_str(&format!(
            "[[node]]\nname = \"n{n}\"\nnumber = {n}\n[[node.interface]]\nnetwork = \"lan\"\naddress = \"10.0.1.{n}\"\n"
        ));
        if backup {
            text.push_str(&format!(
                "[[node.interface]]\nnetwork = \"backup\"\naddress = \"10.0.2.{n}\"\n"
            ));
        }
    }
    halcyon_config::load_texts(&[("cluster.toml", &text)])
        .unwrap_or_else(|e| panic!("{e}"))
        .cluster
}

/// One node's end of an in-memory network: a send goes to every peer's bounded inbox.
struct MemoryLink {
    network: u32,
    peers: Vec<mpsc::Sender<Vec<u8>>>,
    inbox: mpsc::Receiver<Vec<u8>>,
    /// While set, everything this link sends or receives is lost.
    cut: Arc<AtomicBool>,
}

impl AsyncHeartbeatLink for MemoryLink {
    fn network(&self) -> u32 {
        self.network
    }

    fn send<'a>(&'a mut self, bytes: &'a [u8]) -> SendFuture<'a> {
        Box::pin(async move {
            if !self.cut.load(Ordering::Relaxed) {
                for peer in &self.peers {
                    let _ = peer.try_send(bytes.to_vec()); // Full: lost, as a datagram.
                }
            }
            Ok(())
        })
    }

    fn recv(&mut self) -> RecvFuture<'_> {
        // Cancel-safe: tokio's `recv` is, and a datagram is only dropped here on purpose.
        Box::pin(async move {
            loop {
                let bytes = self.inbox.recv().await.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::BrokenPipe, "the network is gone")
                })?;
                if !self.cut.load(Ordering::Relaxed) {
                    return Ok(bytes);
                }
            }
        })
    }
}

/// Links of `network` for every node, by node number.
fn memory_network(network: u32) -> BTreeMap<u32, MemoryLink> {
    let (senders, inboxes): (BTreeMap<u32, _>, Vec<_>) = NODES
        .iter()
        .map(|&n| {
            let (sender, inbox) = mpsc::channel(INBOX_MAX);
            ((n, sender), (n, inbox))
        })
        .unzip();
    inboxes
        .into_iter()
        .map(|(n, inbox)| {
            let peers = senders
                .iter()
                .filter(|&(&peer, _)| peer != n)
                .map(|(_, sender)| sender.clone())
                .collect();
            let link = MemoryLink {
                network,
                peers,
                inbox,
                cut: Arc::new(AtomicBool::new(false)),
            };
            (n, link)
        })
        .collect()
}

/// A running node, seen from outside.
struct Node {
    number: u32,
    status: watch::Receiver<Status>,
    changes: mpsc::Receiver<ChangeBatch>,
    control: HeartbeatControl,
    /// Network number -> the cut switch of this node's link.
    cuts: BTreeMap<u32, Arc<AtomicBool>>,
    /// Every batch taken from `changes` so far.
    seen: Vec<ChangeBatch>,
}

impl Node {
    fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Take what the task has published; every change seen so far.
    fn changes(&mut self) -> Vec<Change> {
        while let Ok(batch) = self.changes.try_recv() {
            self.seen.push(batch);
        }
        self.seen.iter().flat_map(|b| b.changes.clone()).collect()
    }

    /// Simulated time (since the start) of the first batch with `change`.
    fn when(&mut self, change: &Change) -> Option<Duration> {
        self.changes();
        self.seen
            .iter()
            .find(|b| b.changes.contains(change))
            .map(|b| b.at)
    }

    fn cut(&self, network: u32) {
        self.cuts[&network].store(true, Ordering::Relaxed);
    }
}

/// The three nodes heartbeating (incarnation of node n: 100 n), spawned on the current
/// runtime at the current instant, which is their epoch; also the step of each.
fn start(cluster: &Cluster) -> (Vec<Node>, Duration) {
    let mut links: BTreeMap<u32, Vec<MemoryLink>> = BTreeMap::new();
    for network in &cluster.networks {
        for (n, link) in memory_network(network.number) {
            links.entry(n).or_default().push(link);
        }
    }
    let mut step = Duration::ZERO;
    let nodes = NODES
        .iter()
        .map(|&n| {
            let links = links.remove(&n).unwrap();
            let cuts = links
                .iter()
                .map(|l| (l.network, Arc::clone(&l.cut)))
                .collect();
            let links: Vec<Box<dyn AsyncHeartbeatLink>> = links
                .into_iter()
                .map(|l| Box::new(l) as Box<dyn AsyncHeartbeatLink>)
                .collect();
            let (status_tx, status) = watch::channel(Status::default());
            let (sender, changes) = mpsc::channel(CHANGES_MAX);
            let task = HeartbeatTask::new(
                RunnerSettings::new(cluster.id, u64::from(n) * 100),
                DetectorConfig::from_cluster(cluster, n).unwrap(),
                links,
                Box::new(Plain),
                status_tx,
                Some(sender),
            )
            .unwrap();
            step = task.step();
            let control = task.control();
            tokio::spawn(task.run());
            Node {
                number: n,
                status,
                changes,
                control,
                cuts,
                seen: Vec::new(),
            }
        })
        .collect();
    (nodes, step)
}

fn heartbeat(cluster: &Cluster, network: u32) -> halcyon_config::Heartbeat {
    cluster.networks[network as usize - 1].heartbeat
}

async fn sleep_until(start: Instant, at: Duration) {
    tokio::time::sleep_until(start + at).await;
}

/// Sleep until just after `at`, so that whatever the tasks do at `at` is done.
async fn sleep_past(start: Instant, at: Duration) {
    sleep_until(start, at + ms(1)).await;
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[tokio::test(start_paused = true)]
async fn three_nodes_see_each_other_up_within_a_few_intervals() {
    let c = cluster(false);
    let interval = heartbeat(&c, LAN).interval;
    let start_at = Instant::now();
    let (mut nodes, step) = start(&c);
    sleep_until(start_at, 3 * interval).await;
    for node in &mut nodes {
        let status = node.status();
        assert!(
            status.detector.at >= 3 * interval - step,
            "published every step"
        );
        assert!(
            status
                .detector
                .nodes
                .iter()
                .all(|n| n.state == NodeState::Reachable),
            "node {}: {:?}",
            node.number,
            status.detector.nodes
        );
        assert_eq!(status.detector.paths.len(), 2);
        let paths = &status.detector.paths;
        assert!(paths.iter().all(|p| p.state == PathState::Up), "{paths:?}");
        assert!(status.counters.sent >= 3 && status.counters.received >= 6);
        assert_eq!(
            (status.counters.decode_errors, status.counters.ignored),
            (0, 0)
        );
        let number = node.number;
        for peer in NODES.iter().filter(|&&p| p != number) {
            let reachable = Change::NodeReachable {
                node: *peer,
                incarnation: u64::from(*peer) * 100,
            };
            let at = node.when(&reachable);
            assert!(
                at.is_some_and(|at| at <= step),
                "node {} saw {peer} reachable at {at:?}",
                node.number
            );
        }
    }
}

/// The status channel wakes a reader when a judgement changes, and not on the steps in
/// between (which still update the counters a reader sees).
#[tokio::test(start_paused = true)]
async fn the_status_channel_wakes_readers_only_when_a_judgement_changes() {
    let c = cluster(false);
    let interval = heartbeat(&c, LAN).interval;
    let start_at = Instant::now();
    let (nodes, _) = start(&c);
    sleep_until(start_at, 3 * interval).await;
    let mut status = nodes[0].status.clone();
    status.mark_unchanged();
    let sent = status.borrow().counters.sent;
    sleep_until(start_at, 10 * interval).await;
    assert!(!status.has_changed().unwrap(), "woken without a change");
    assert!(
        status.borrow().counters.sent > sent,
        "counters still published"
    );
    nodes[2].cut(LAN);
    tokio::time::timeout(20 * interval, status.changed())
        .await
        .expect("node 3's silence wakes the reader")
        .unwrap();
    assert_eq!(
        status.borrow().detector.nodes[1].state,
        NodeState::Unreachable
    );
}

/// A node told to heartbeat as a higher incarnation (its wiped state directory made it
/// start too low) is seen by its peers as restarted, with the new incarnation; a lower one
/// is ignored.
#[tokio::test(start_paused = true)]
async fn a_reincarnated_node_is_seen_restarted_with_its_new_incarnation() {
    let c = cluster(false);
    let interval = heartbeat(&c, LAN).interval;
    let start_at = Instant::now();
    let (mut nodes, _) = start(&c);
    sleep_until(start_at, 3 * interval).await;
    nodes[2].control.reincarnate(250).unwrap();
    sleep_until(start_at, 6 * interval).await;
    assert_eq!(
        nodes[0].status().detector.nodes[1].incarnation,
        Some(300),
        "lower: ignored"
    );
    nodes[2].control.reincarnate(301).unwrap();
    sleep_until(start_at, 9 * interval).await;
    let restarted = Change::PeerRestarted {
        node: 3,
        old: 300,
        new: 301,
    };
    assert!(nodes[0].when(&restarted).is_some());
    assert_eq!(nodes[0].status().detector.nodes[1].incarnation, Some(301));
    assert_eq!(
        nodes[0].status().detector.nodes[1].state,
        NodeState::Reachable
    );
}

/// Every batch nodes 1 and 2 published while node 3 went silent at 1030 ms, and the bounds
/// checked on the way.
async fn node_3_goes_silent() -> Vec<Vec<ChangeBatch>> {
    let c = cluster(false);
    let heartbeat = heartbeat(&c, LAN);
    let start_at = Instant::now();
    let (mut nodes, step) = start(&c);
    let cut_at = ms(1030); // Between two beats.
    sleep_until(start_at, cut_at).await;
    nodes[2].cut(LAN);

    // Node 3's last beat was heard at most one interval before the cut, and at the latest
    // at the cut; it is judged at the first tick one detection time after that.
    let earliest = cut_at - heartbeat.interval + heartbeat.detection_time();
    let latest = cut_at + heartbeat.detection_time() + step;
    sleep_until(start_at, earliest - ms(1)).await;
    for node in &mut nodes[..2] {
        assert_eq!(
            node.status().detector.nodes[1].state,
            NodeState::Reachable,
            "node {} judged node 3 before {earliest:?}",
            node.number
        );
    }
    sleep_past(start_at, latest).await;
    for node in &mut nodes[..2] {
        let down = node.when(&Change::NodeUnreachable { node: 3 });
        assert!(
            down.is_some_and(|at| (earliest..=latest).contains(&at)),
            "node {}: node 3 unreachable at {down:?}, expected in {earliest:?}..={latest:?}",
            node.number
        );
        let path_down = Change::PathDown {
            node: 3,
            network: LAN,
            cause: DownCause::MissedHeartbeats,
        };
        assert_eq!(node.when(&path_down), down);
        let changes = node.changes();
        assert!(
            !changes
                .iter()
                .any(|c| matches!(c, Change::AdapterDown { .. })),
            "a silent node is a node failure: {changes:?}"
        );
        let other = if node.number == 1 { 2 } else { 1 };
        assert_eq!(
            node.status().detector.nodes[0].node,
            other,
            "the other live node is listed first"
        );
        assert_eq!(node.status().detector.nodes[0].state, NodeState::Reachable);
    }
    nodes
        .iter_mut()
        .take(2)
        .map(|n| {
            n.changes();
            std::mem::take(&mut n.seen)
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_silent_node_is_judged_down_within_the_detection_time_and_not_before() {
    node_3_goes_silent().await;
}

#[test]
fn the_same_run_publishes_the_same_changes_at_the_same_times() {
    let run = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(node_3_goes_silent())
    };
    let first = run();
    assert!(!first[0].is_empty());
    assert_eq!(first, run());
}

#[tokio::test(start_paused = true)]
async fn one_network_lost_to_a_node_is_an_adapter_failure_not_a_node_failure() {
    let c = cluster(true);
    let backup = heartbeat(&c, BACKUP_LAN);
    let start_at = Instant::now();
    let (mut nodes, step) = start(&c);
    let cut_at = ms(1030);
    sleep_until(start_at, cut_at).await;
    nodes[1].cut(BACKUP_LAN);

    // The path goes down one detection time after the last beat; node 2, heard on the LAN
    // within the next interval, makes it an adapter judgement.
    let latest = cut_at + backup.detection_time() + backup.interval + step;
    sleep_past(start_at, latest).await;
    for node in nodes.iter_mut().filter(|n| n.number != 2) {
        let adapter = node.when(&Change::AdapterDown {
            node: 2,
            network: BACKUP_LAN,
            action: AdapterAction::NetworkDown,
        });
        assert!(
            adapter.is_some_and(|at| at <= latest),
            "node {}: adapter judgement at {adapter:?}",
            node.number
        );
        let changes = node.changes();
        assert!(changes.contains(&Change::PathDown {
            node: 2,
            network: BACKUP_LAN,
            cause: DownCause::MissedHeartbeats,
        }));
        assert!(!changes.contains(&Change::NodeUnreachable { node: 2 }));
        let status = node.status().detector;
        assert!(status.nodes.iter().all(|n| n.state == NodeState::Reachable));
        let states: Vec<(u32, u32, PathState)> = status
            .paths
            .iter()
            .filter(|p| p.node == 2)
            .map(|p| (p.node, p.network, p.state))
            .collect();
        assert_eq!(
            states,
            [(2, LAN, PathState::Up), (2, BACKUP_LAN, PathState::Down)]
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_local_carrier_loss_takes_its_paths_down_at_the_next_step() {
    let c = cluster(false);
    let start_at = Instant::now();
    let (mut nodes, step) = start(&c);
    sleep_until(start_at, ms(500)).await;
    nodes[0].control.local_link(LAN, false).unwrap();
    sleep_past(start_at, ms(500) + step).await;
    for peer in [2, 3] {
        let down = nodes[0].when(&Change::PathDown {
            node: peer,
            network: LAN,
            cause: DownCause::LocalLinkDown,
        });
        assert!(
            down.is_some_and(|at| at <= ms(500) + step),
            "path to {peer} down at {down:?}"
        );
    }
    assert_eq!(
        nodes[0].control.local_link(9, false).ok(),
        Some(()),
        "an unknown network is logged by the task, not refused by the handle"
    );
}

#[tokio::test(start_paused = true)]
async fn a_link_on_a_network_the_detector_does_not_know_is_refused() {
    let c = cluster(false);
    let mut links = memory_network(BACKUP_LAN);
    let link: Box<dyn AsyncHeartbeatLink> = Box::new(links.remove(&1).unwrap());
    let refused = HeartbeatTask::new(
        RunnerSettings::new(c.id, 1),
        DetectorConfig::from_cluster(&c, 1).unwrap(),
        vec![link],
        Box::new(Plain),
        watch::channel(Status::default()).0,
        None,
    );
    assert!(matches!(
        refused,
        Err(StartError::UnknownLinkNetwork(BACKUP_LAN))
    ));
}

/// A link whose every receive fails at once.
struct BrokenLink;

impl AsyncHeartbeatLink for BrokenLink {
    fn network(&self) -> u32 {
        LAN
    }

    fn send<'a>(&'a mut self, _bytes: &'a [u8]) -> SendFuture<'a> {
        Box::pin(async { Ok(()) })
    }

    fn recv(&mut self) -> RecvFuture<'_> {
        Box::pin(async { Err(io::Error::other("broken")) })
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_link_is_retried_once_a_step_and_heartbeats_go_on() {
    let c = cluster(false);
    let interval = heartbeat(&c, LAN).interval;
    let (status_tx, status) = watch::channel(Status::default());
    let task = HeartbeatTask::new(
        RunnerSettings::new(c.id, 1),
        DetectorConfig::from_cluster(&c, 1).unwrap(),
        vec![Box::new(BrokenLink)],
        Box::new(Plain),
        status_tx,
        None,
    )
    .unwrap();
    let step = task.step();
    tokio::spawn(task.run());
    // A spinning task would never let paused time reach this point.
    tokio::time::sleep(10 * interval + step / 2).await;
    let counters = status.borrow().counters;
    let steps = (10 * interval).as_millis() / step.as_millis();
    // One failure per step, each published with the next tick.
    assert_eq!(counters.recv_errors, steps as u64, "{counters:?}");
    assert_eq!(counters.sent, 11, "{counters:?}");
}

/// A running cluster's `halcyon apply` changes the LAN's interval; each node applies it half
/// a second after the previous one, so for a while each hears senders at the old interval
/// and at the new one: 100 ms -> 600 ms (longer than the old 400 ms detection time), then ->
/// 30 ms (a 120 ms detection time, while a node not yet switched still sends every 600 ms).
/// No path or node is ever judged down, and every path ends judged by the new interval.
#[tokio::test(start_paused = true)]
async fn nodes_switching_the_interval_one_after_another_judge_no_path_down() {
    let c = cluster(false);
    let start_at = Instant::now();
    let (mut nodes, _) = start(&c);
    let longer = halcyon_config::Heartbeat {
        interval: ms(600),
        sensitivity: 4,
    };
    let shorter = halcyon_config::Heartbeat {
        interval: ms(30),
        sensitivity: 4,
    };
    let stagger = ms(500);
    for (heartbeat, from) in [(longer, ms(1000)), (shorter, ms(5000))] {
        for (i, node) in nodes.iter().enumerate() {
            sleep_until(start_at, from + stagger * i as u32).await;
            node.control.set_heartbeat(LAN, heartbeat).unwrap();
        }
        // Every node switched; its peers judge it by what it announced.
        sleep_until(start_at, from + 3 * stagger + longer.interval * 2).await;
        for node in &nodes {
            let status = node.status().detector;
            assert!(
                status
                    .paths
                    .iter()
                    .all(|p| p.state == PathState::Up && p.interval == heartbeat.interval),
                "node {}: {:?}",
                node.number,
                status.paths
            );
            assert_eq!(status.networks[0].heartbeat, heartbeat);
        }
    }
    for node in &mut nodes {
        let changes = node.changes();
        assert!(
            !changes.iter().any(|c| matches!(
                c,
                Change::PathDown { .. }
                    | Change::NodeUnreachable { .. }
                    | Change::AdapterDown { .. }
            )),
            "node {}: {changes:?}",
            node.number
        );
        // Every sender kept the promise of its previous heartbeat: none came late.
        let status = node.status();
        assert!(
            status.detector.paths.iter().all(|p| p.late == 0),
            "{:?}",
            status.detector.paths
        );
        assert_eq!(
            (status.counters.decode_errors, status.counters.ignored),
            (0, 0)
        );
    }
}
