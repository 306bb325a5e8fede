//! Authenticated heartbeats with the thread runner: forged, replayed and other-cluster
//! heartbeats do not change membership (asserted on the detector's state and the changes
//! published), and are counted; the same forgery does change membership with the `Plain`
//! sealer (so the test can fail); a key rollover while heartbeats run loses no path.
//!
//! The runners talk over in-memory links (no sockets): each node has an inbox; the test holds
//! a sender into node 1's inbox to play the attacker, and a recording of what node 3 sent.

mod common;

use std::io;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use halcyon_config::NetworkKind;
use halcyon_membership::detector::{NodeState, PathState, PathStatus};
use halcyon_membership::hmac_sealer::KEY_BYTES;
use halcyon_membership::wire::{self, HeartbeatMessage};
use halcyon_membership::{
    Change, ChangeBatch, DetectorConfig, HeartbeatLink, HmacSealer, Plain, Runner, SealCounts,
    Sealer, SealerHandle,
};

const LAN: u32 = 1;
const KEY: [u8; KEY_BYTES] = [0x11; KEY_BYTES];
const NEW_KEY: [u8; KEY_BYTES] = [0x22; KEY_BYTES];
const ATTACKER_KEY: [u8; KEY_BYTES] = [0x66; KEY_BYTES];
/// Generous bound for CI machines; detection itself is 4 x 50 ms.
const DETECTION_LIMIT: Duration = Duration::from_secs(3);
/// How long the attacker keeps sending: several detection times.
const ATTACK: Duration = Duration::from_millis(600);
const ATTACK_INTERVAL: Duration = Duration::from_millis(10);

/// One node's link: an inbox, the other nodes' inboxes, and optionally a recording of what
/// it sends.
struct MemoryLink {
    inbox: Receiver<Vec<u8>>,
    peers: Vec<Sender<Vec<u8>>>,
    recording: Option<Arc<Mutex<Vec<Vec<u8>>>>>,
}

impl HeartbeatLink for MemoryLink {
    fn network(&self) -> u32 {
        LAN
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        for peer in &self.peers {
            let _ = peer.send(bytes.to_vec()); // A stopped peer is like a dead host.
        }
        if let Some(recording) = &self.recording {
            recording.lock().unwrap().push(bytes.to_vec());
        }
        Ok(())
    }

    fn recv(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        match self.inbox.recv_timeout(timeout) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => Ok(None),
        }
    }
}

struct Node {
    runner: Runner,
    changes: Receiver<ChangeBatch>,
}

/// Nodes 1..=`count` of one cluster on one in-memory network, each with its own sealer.
struct Net {
    cluster: halcyon_config::Cluster,
    inboxes: Vec<Sender<Vec<u8>>>,
    receivers: Vec<Option<Receiver<Vec<u8>>>>,
}

impl Net {
    fn new(count: u32) -> Net {
        let cluster = cluster(
            0,
            (1..=count)
                .map(|n| node(n, vec![lan_interface(&format!("127.0.0.{n}"))]))
                .collect(),
            vec![network("lan", LAN, NetworkKind::Ip, None)],
        );
        let (inboxes, receivers) = (1..=count)
            .map(|_| {
                let (s, r) = mpsc::channel();
                (s, Some(r))
            })
            .unzip();
        Net {
            cluster,
            inboxes,
            receivers,
        }
    }

    fn start(
        &mut self,
        node: u32,
        sealer: Box<dyn Sealer>,
        recording: Option<Arc<Mutex<Vec<Vec<u8>>>>>,
    ) -> Node {
        let index = node as usize - 1;
        let link = MemoryLink {
            inbox: self.receivers[index].take().expect("each node starts once"),
            peers: (0..self.inboxes.len())
                .filter(|&i| i != index)
                .map(|i| self.inboxes[i].clone())
                .collect(),
            recording,
        };
        let config = DetectorConfig::from_cluster(&self.cluster, node).unwrap();
        let (sender, changes) = mpsc::sync_channel(1024);
        let settings = plain_settings(&self.cluster, u64::from(node) * 100);
        let runner = Runner::start(settings, config, vec![Box::new(link)], sealer, sender).unwrap();
        Node { runner, changes }
    }

    /// The attacker's way into node `node`'s inbox.
    fn inject(&self, node: u32) -> Sender<Vec<u8>> {
        self.inboxes[node as usize - 1].clone()
    }
}

fn hmac(cluster_id: u64, keys: &[[u8; KEY_BYTES]]) -> (Box<dyn Sealer>, SealerHandle) {
    let sealer = HmacSealer::new(cluster_id, keys).unwrap();
    let handle = sealer.handle();
    (Box::new(sealer), handle)
}

fn node_state(node: &Node, peer: u32) -> NodeState {
    let status = node.runner.status().detector;
    status.nodes.iter().find(|n| n.node == peer).unwrap().state
}

/// What a node knows about a peer: its state, its incarnation, and each path's state and last
/// sequence number (ages left out: they grow).
type View = (NodeState, Option<u64>, Vec<(PathState, Option<u64>)>);

fn view(node: &Node, peer: u32) -> View {
    let status = node.runner.status().detector;
    let n = status.nodes.iter().find(|n| n.node == peer).unwrap();
    let paths = status
        .paths
        .iter()
        .filter(|p| p.node == peer)
        .map(|p: &PathStatus| (p.state, p.seq_last))
        .collect();
    (n.state, n.incarnation, paths)
}

fn mentions(change: &Change, peer: u32) -> bool {
    match change {
        Change::PathUp { node, .. } | Change::NodeReachable { node, .. } => *node == peer,
        Change::PeerRestarted { node, .. } => *node == peer,
        _ => false,
    }
}

/// Node 1 and 2 up, node 3 heard by node 1, then stopped and declared unreachable. Returns the
/// nodes 1 and 2, node 1's sealer handle (when HMAC), and node 3's recorded heartbeats.
fn node_3_has_died(
    net: &mut Net,
    sealers: [(Box<dyn Sealer>, Option<SealerHandle>); 3],
) -> (Node, Node, Option<SealerHandle>, Vec<Vec<u8>>) {
    let [(s1, h1), (s2, _), (s3, _)] = sealers;
    let recording = Arc::new(Mutex::new(Vec::new()));
    let one = net.start(1, s1, None);
    let two = net.start(2, s2, None);
    let three = net.start(3, s3, Some(Arc::clone(&recording)));
    wait_for(DETECTION_LIMIT, "node 1 hears nodes 2 and 3", || {
        node_state(&one, 2) == NodeState::Reachable && node_state(&one, 3) == NodeState::Reachable
    });
    three.runner.stop();
    wait_for(
        DETECTION_LIMIT,
        "node 1 declares node 3 unreachable",
        || node_state(&one, 3) == NodeState::Unreachable,
    );
    drain(&one.changes);
    let recorded = recording.lock().unwrap().clone();
    assert!(!recorded.is_empty());
    (one, two, h1, recorded)
}

/// Heartbeats claiming to be node 3 (a later incarnation too), sealed with `sealer`.
fn forgeries(cluster_id: u64, sealer: &dyn Sealer) -> Vec<Vec<u8>> {
    let count = (ATTACK.as_millis() / ATTACK_INTERVAL.as_millis()) as u64;
    (0..count)
        .map(|i| {
            let message = HeartbeatMessage {
                cluster_id,
                node: 3,
                incarnation: 300 + i / 20,
                network: LAN,
                seq: 1_000_000 + i,
                send_time_ms: i,
                interval_ms: HEARTBEAT.interval.as_millis() as u32,
            };
            wire::encode(&message, sealer)
        })
        .collect()
}

fn send_paced(into: &Sender<Vec<u8>>, messages: &[Vec<u8>]) {
    for message in messages {
        into.send(message.clone()).unwrap();
        std::thread::sleep(ATTACK_INTERVAL);
    }
}

fn hmac_sealers(id: u64) -> [(Box<dyn Sealer>, Option<SealerHandle>); 3] {
    [1, 2, 3].map(|_| {
        let (s, h) = hmac(id, &[KEY]);
        (s, Some(h))
    })
}

#[test]
fn forged_heartbeats_do_not_change_membership_and_are_counted() {
    let mut net = Net::new(3);
    let id = net.cluster.id;
    let (one, two, handle, _) = node_3_has_died(&mut net, hmac_sealers(id));
    let handle = handle.unwrap();
    let before = view(&one, 3);
    let counts_before = handle.counts();
    let decode_errors_before = one.runner.status().counters.decode_errors;

    let attacker = HmacSealer::new(id, &[ATTACKER_KEY]).unwrap();
    let forged = forgeries(id, &attacker);
    send_paced(&net.inject(1), &forged);
    wait_for(DETECTION_LIMIT, "node 1 to take every forgery", || {
        handle.counts().forged - counts_before.forged == forged.len() as u64
    });

    assert_eq!(view(&one, 3), before, "node 1's view of node 3 changed");
    let changes = drain(&one.changes);
    assert!(
        !changes.iter().any(|c| mentions(c, 3)),
        "node 3 came back: {changes:?}"
    );
    let counts = handle.counts();
    assert_eq!(counts.forged - counts_before.forged, forged.len() as u64);
    assert_eq!(counts.replayed, counts_before.replayed);
    assert!(
        one.runner.status().counters.decode_errors - decode_errors_before >= forged.len() as u64
    );
    // Node 2 is still heard: the sealer refuses only what is not authentic.
    assert_eq!(node_state(&one, 2), NodeState::Reachable);
    assert!(counts.accepted > counts_before.accepted);
    drop(two);
}

#[test]
fn replayed_genuine_heartbeats_do_not_change_membership_and_are_counted() {
    let mut net = Net::new(3);
    let id = net.cluster.id;
    let (one, _two, handle, recorded) = node_3_has_died(&mut net, hmac_sealers(id));
    let handle = handle.unwrap();
    let before = view(&one, 3);
    let counts_before = handle.counts();

    // The last heartbeats node 3 sent, replayed at the attack pace, then all of them.
    let last: Vec<Vec<u8>> = recorded.iter().rev().take(30).rev().cloned().collect();
    send_paced(&net.inject(1), &last);
    send_paced(&net.inject(1), &recorded[..recorded.len().min(30)]);
    let sent = (last.len() + recorded.len().min(30)) as u64;
    wait_for(DETECTION_LIMIT, "node 1 to take every replay", || {
        handle.counts().replayed - counts_before.replayed >= sent
    });

    assert_eq!(view(&one, 3), before, "node 1's view of node 3 changed");
    let changes = drain(&one.changes);
    assert!(!changes.iter().any(|c| mentions(c, 3)), "{changes:?}");
    let counts = handle.counts();
    assert_eq!(
        counts.replayed - counts_before.replayed,
        (last.len() + recorded.len().min(30)) as u64
    );
    assert_eq!(counts.forged, counts_before.forged);
}

#[test]
fn heartbeats_of_another_cluster_are_counted_apart_and_change_nothing() {
    let mut net = Net::new(3);
    let id = net.cluster.id;
    let (one, _two, handle, _) = node_3_has_died(&mut net, hmac_sealers(id));
    let handle = handle.unwrap();
    let before = view(&one, 3);
    let counts_before = handle.counts();
    // Even made with this cluster's key: the id decides.
    let other = HmacSealer::new(id + 1, &[KEY]).unwrap();
    let theirs = forgeries(id + 1, &other);
    send_paced(&net.inject(1), &theirs);
    wait_for(
        DETECTION_LIMIT,
        "node 1 to take every foreign heartbeat",
        || handle.counts().other_cluster - counts_before.other_cluster >= theirs.len() as u64,
    );
    assert_eq!(view(&one, 3), before);
    assert!(!drain(&one.changes).iter().any(|c| mentions(c, 3)));
    let counts = handle.counts();
    assert_eq!(
        counts.other_cluster - counts_before.other_cluster,
        theirs.len() as u64
    );
    assert_eq!(
        SealCounts {
            accepted: 0,
            other_cluster: 0,
            ..counts
        },
        SealCounts {
            accepted: 0,
            other_cluster: 0,
            ..counts_before
        }
    );
}

/// The control: without authentication the same forgery brings a dead node back.
#[test]
fn with_the_plain_sealer_the_forgery_would_bring_the_dead_node_back() {
    let mut net = Net::new(3);
    let id = net.cluster.id;
    let plain = [1, 2, 3].map(|_| (Box::new(Plain) as Box<dyn Sealer>, None));
    let (one, _two, _, _) = node_3_has_died(&mut net, plain);
    let into = net.inject(1);
    let forged = forgeries(id, &Plain);
    let attacker = std::thread::spawn(move || send_paced(&into, &forged));
    wait_for(DETECTION_LIMIT, "the forgery to bring node 3 back", || {
        node_state(&one, 3) == NodeState::Reachable
    });
    attacker.join().unwrap();
    assert!(drain(&one.changes).iter().any(|c| mentions(c, 3)));
}

#[test]
fn a_key_rollover_while_heartbeats_run_loses_no_path() {
    let mut net = Net::new(2);
    let id = net.cluster.id;
    let (s1, h1) = hmac(id, &[KEY]);
    let (s2, h2) = hmac(id, &[KEY]);
    let one = net.start(1, s1, None);
    let two = net.start(2, s2, None);
    wait_for(DETECTION_LIMIT, "nodes 1 and 2 hear each other", || {
        node_state(&one, 2) == NodeState::Reachable && node_state(&two, 1) == NodeState::Reachable
    });
    drain(&one.changes);
    drain(&two.changes);
    // 1. Everyone accepts the new key; 2. everyone signs with it; 3. the old one goes.
    // Between steps, one node changes before the other, as an operator's rollout would.
    let detection = HEARTBEAT.interval * HEARTBEAT.sensitivity;
    for keys in [vec![KEY, NEW_KEY], vec![NEW_KEY, KEY], vec![NEW_KEY]] {
        h1.set_keys(&keys).unwrap();
        std::thread::sleep(detection / 2);
        h2.set_keys(&keys).unwrap();
        std::thread::sleep(detection * 2);
    }
    for (node, peer) in [(&one, 2), (&two, 1)] {
        let changes = drain(&node.changes);
        assert!(
            changes.is_empty(),
            "a path changed during the rollover: {changes:?}"
        );
        assert_eq!(node_state(node, peer), NodeState::Reachable);
    }
    assert_eq!(h1.counts().forged, 0);
    assert_eq!(h2.counts().forged, 0);

    // The control: a node that drops the key its peer still signs with stops hearing it.
    h2.set_keys(&[ATTACKER_KEY]).unwrap();
    wait_for(DETECTION_LIMIT, "node 2 stops hearing node 1", || {
        node_state(&two, 1) == NodeState::Unreachable
    });
    assert!(h2.counts().forged > 0);
}
