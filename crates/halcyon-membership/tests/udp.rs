//! Three runners heartbeating over UDP on loopback addresses (127.0.0.1-3 only).

mod common;

use std::time::Duration;

use common::*;
use halcyon_config::{Heartbeat, NetworkKind};
use halcyon_membership::detector::DetectorConfig;
use halcyon_membership::detector::{DownCause, NodeState, PathState};
use halcyon_membership::{Change, RunnerSettings, link_peers};

const LAN: u32 = 1;
/// Generous bound for CI machines; detection itself is 4 x 50 ms.
const DETECTION_LIMIT: Duration = Duration::from_secs(2);

fn three_node_cluster() -> halcyon_config::Cluster {
    cluster(
        free_port(),
        (1..=3)
            .map(|n| node(n, vec![lan_interface(&format!("127.0.0.{n}"))]))
            .collect(),
        vec![network("lan", LAN, NetworkKind::Ip, None)],
    )
}

/// Waits until `started` judges node `peer` reachable.
fn wait_reachable(started: &Started, peer: u32, limit: Duration) {
    wait_for(limit, &format!("node {peer} reachable"), || {
        started
            .runner
            .status()
            .detector
            .nodes
            .iter()
            .any(|n| n.node == peer && n.state == NodeState::Reachable)
    });
}

/// Waits until `started` judges a path to node `peer` down; how long it took.
fn wait_path_down(started: &Started, peer: u32, limit: Duration) -> Duration {
    wait_for(limit, &format!("a path to node {peer} down"), || {
        started
            .runner
            .status()
            .detector
            .paths
            .iter()
            .any(|p| p.node == peer && p.state == PathState::Down)
    })
}

fn all_peers_reachable(started: &Started) -> bool {
    let status = started.runner.status().detector;
    status.nodes.len() == 2 && status.nodes.iter().all(|n| n.state == NodeState::Reachable)
}

#[test]
fn three_nodes_see_each_other_and_a_stopped_node_becomes_unreachable() {
    let c = three_node_cluster();
    // Node 1 runs with the daemon's settings (real-time priority, locked memory; a warning
    // when not permitted), the others plainly.
    let mut nodes: Vec<Started> = vec![
        start(&c, 1, RunnerSettings::new(c.id, 100)),
        start(&c, 2, plain_settings(&c, 200)),
        start(&c, 3, plain_settings(&c, 300)),
    ];
    wait_for(DETECTION_LIMIT, "all paths up", || {
        nodes.iter().all(all_peers_reachable)
    });
    for s in &nodes {
        let status = s.runner.status();
        assert!(
            status
                .detector
                .paths
                .iter()
                .all(|p| p.state == PathState::Up)
        );
        assert!(status.counters.sent > 0 && status.counters.received > 0);
        assert_eq!(status.counters.decode_errors, 0);
        let changes = drain(&s.changes);
        for peer in (1..=3).filter(|&p| p != s.node) {
            let incarnation = u64::from(peer) * 100;
            assert!(
                changes.contains(&Change::NodeReachable {
                    node: peer,
                    incarnation
                }),
                "node {} did not report {peer} reachable: {changes:?}",
                s.node
            );
        }
    }

    // Node 3 stops heartbeating.
    nodes.pop().unwrap().runner.stop();
    let mut seen = [Vec::new(), Vec::new()];
    let took = wait_for(
        DETECTION_LIMIT,
        "node 3 unreachable on nodes 1 and 2",
        || {
            for (s, seen) in nodes.iter().zip(seen.iter_mut()) {
                seen.extend(drain(&s.changes));
            }
            seen.iter()
                .all(|c| c.contains(&Change::NodeUnreachable { node: 3 }))
        },
    );
    assert!(took < DETECTION_LIMIT);
    for (s, seen) in nodes.iter().zip(&seen) {
        assert!(seen.contains(&Change::PathDown {
            node: 3,
            network: LAN,
            cause: DownCause::MissedHeartbeats
        }));
        assert!(
            !seen
                .iter()
                .any(|c| matches!(c, Change::NodeUnreachable { node } if *node != 3)),
            "false failure on node {}: {seen:?}",
            s.node
        );
    }
    // The survivors still see each other.
    for s in &nodes {
        let peer = 3 - s.node;
        assert_eq!(
            s.runner
                .status()
                .detector
                .nodes
                .iter()
                .find(|n| n.node == peer)
                .unwrap()
                .state,
            NodeState::Reachable
        );
    }
}

#[test]
fn local_carrier_loss_is_reported_at_once_and_a_restart_as_a_new_incarnation() {
    let c = three_node_cluster();
    let first = start(&c, 1, plain_settings(&c, 1));
    let mut second = start(&c, 2, plain_settings(&c, 1));
    wait_reachable(&first, 2, DETECTION_LIMIT);
    drain(&first.changes);

    // Carrier lost on node 1's lan: down well before 4 missed beats (200 ms).
    first.runner.local_link(LAN, false).unwrap();
    let took = wait_path_down(&first, 2, DETECTION_LIMIT);
    assert!(took < Duration::from_millis(150), "took {took:?}");
    let changes = drain(&first.changes);
    assert!(changes.contains(&Change::PathDown {
        node: 2,
        network: LAN,
        cause: DownCause::LocalLinkDown
    }));
    first.runner.local_link(LAN, true).unwrap();
    wait_for(DETECTION_LIMIT, "path up after carrier back", || {
        first
            .runner
            .status()
            .detector
            .paths
            .iter()
            .any(|p| p.node == 2 && p.state == PathState::Up)
    });

    // Node 2's daemon restarts with a higher incarnation.
    second.runner.stop();
    second = start(&c, 2, plain_settings(&c, 2));
    let mut seen = Vec::new();
    wait_for(DETECTION_LIMIT, "restart reported", || {
        seen.extend(drain(&first.changes));
        seen.contains(&Change::PeerRestarted {
            node: 2,
            old: 1,
            new: 2,
        })
    });
    assert!(second.runner.is_running());
}

fn reachable_peers(started: &Started) -> Vec<u32> {
    let status = started.runner.status().detector;
    status
        .nodes
        .iter()
        .filter(|n| n.state == NodeState::Reachable)
        .map(|n| n.node)
        .collect()
}

fn set_peers(started: &Started, cluster: &halcyon_config::Cluster) {
    let node = started.node;
    started
        .runner
        .set_peers(
            DetectorConfig::from_cluster(cluster, node).unwrap(),
            link_peers(cluster, node).unwrap(),
            Vec::new(),
        )
        .unwrap();
}

#[test]
fn a_node_added_to_running_runners_is_heartbeated_and_one_removed_is_forgotten() {
    let three = three_node_cluster();
    let mut two = three.clone();
    two.nodes.truncate(2);
    let nodes = [
        start(&two, 1, plain_settings(&two, 1)),
        start(&two, 2, plain_settings(&two, 1)),
        start(&three, 3, plain_settings(&three, 1)),
    ];
    wait_for(DETECTION_LIMIT, "nodes 1 and 2 see each other", || {
        reachable_peers(&nodes[0]) == [2] && reachable_peers(&nodes[1]) == [1]
    });
    // Node 3 heartbeats them, but they do not know it: its datagrams are dropped, and it
    // hears nothing from them.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(reachable_peers(&nodes[0]), [2]);
    assert_eq!(nodes[0].runner.status().detector.nodes.len(), 1);
    assert!(reachable_peers(&nodes[2]).is_empty());

    // Nodes 1 and 2 take the three-node cluster: everyone sees everyone.
    set_peers(&nodes[0], &three);
    set_peers(&nodes[1], &three);
    wait_for(DETECTION_LIMIT, "every node sees the two others", || {
        nodes.iter().all(|s| reachable_peers(s).len() == 2)
    });
    let changes = drain(&nodes[0].changes);
    assert!(
        !changes
            .iter()
            .any(|c| matches!(c, Change::NodeUnreachable { .. })),
        "no node was lost on the way: {changes:?}"
    );

    // Node 1 leaves node 2 out: it forgets it and stops heartbeating it, so node 2 loses
    // node 1 while node 3 keeps it.
    let mut without_two = three.clone();
    without_two.nodes.remove(1);
    set_peers(&nodes[0], &without_two);
    wait_for(DETECTION_LIMIT, "node 2 loses node 1", || {
        reachable_peers(&nodes[1]) == [3]
    });
    assert_eq!(reachable_peers(&nodes[0]), [3]);
    assert_eq!(nodes[0].runner.status().detector.nodes.len(), 1);
    assert_eq!(reachable_peers(&nodes[2]), [1, 2]);
}

/// A running cluster's `halcyon apply` changes the LAN's interval while heartbeats run; the
/// nodes apply it half a second apart, so for a while each hears senders at the old interval
/// and at the new one. 100 ms -> 1 s (longer than the old 400 ms detection time), then ->
/// 30 ms (a 120 ms detection time while a node not yet switched sends every second): no
/// path, adapter or node is ever judged down, and the paths end judged by the new interval.
#[test]
fn nodes_switching_the_interval_one_after_another_see_no_false_failure() {
    let mut c = three_node_cluster();
    let start_heartbeat = Heartbeat {
        interval: Duration::from_millis(100),
        sensitivity: 4,
    };
    c.heartbeat = start_heartbeat;
    c.networks[0].heartbeat = start_heartbeat;
    let nodes: Vec<Started> = (1..=3)
        .map(|n| start(&c, n, plain_settings(&c, u64::from(n))))
        .collect();
    wait_judged_by(&nodes, LAN, start_heartbeat, DETECTION_LIMIT);
    let mut seen = vec![Vec::new(); nodes.len()];
    for (s, seen) in nodes.iter().zip(seen.iter_mut()) {
        seen.extend(drain(&s.changes));
    }
    assert_no_failure(&nodes, &seen, "start");

    let stagger = Duration::from_millis(500);
    let longer = Heartbeat {
        interval: Duration::from_secs(1),
        sensitivity: 4,
    };
    let seen = apply_one_after_another(&nodes, LAN, longer, stagger, Duration::from_millis(500));
    assert_no_failure(&nodes, &seen, "100 ms -> 1 s");
    wait_judged_by(&nodes, LAN, longer, DETECTION_LIMIT);
    // Every node sends every second now (22 heartbeats in 2.2 s at 100 ms), and is not
    // judged down for it.
    let (sent, seen) = sent_during(&nodes, Duration::from_millis(2200));
    assert!(sent.iter().all(|&n| n <= 3), "sent {sent:?}");
    assert_no_failure(&nodes, &seen, "at 1 s");

    // Sensitivity 8: 240 ms of detection, room for a loaded test machine's scheduling at
    // normal priority (the daemon's heartbeat thread runs at real-time priority).
    let shorter = Heartbeat {
        interval: Duration::from_millis(30),
        sensitivity: 8,
    };
    let seen = apply_one_after_another(&nodes, LAN, shorter, stagger, Duration::from_millis(500));
    assert_no_failure(&nodes, &seen, "1 s -> 30 ms");
    wait_judged_by(&nodes, LAN, shorter, DETECTION_LIMIT);
    // 20 heartbeats in 600 ms at 30 ms (none at 1 s); fewer only when a loaded machine
    // delays some.
    let (sent, seen) = sent_during(&nodes, Duration::from_millis(600));
    assert!(sent.iter().all(|&n| n >= 8), "sent {sent:?}");
    assert_no_failure(&nodes, &seen, "at 30 ms");
    for s in &nodes {
        assert!(s.runner.is_running());
        assert_eq!(s.runner.status().counters.decode_errors, 0);
    }
}

#[test]
fn a_heartbeat_the_wire_cannot_announce_is_refused_by_the_runner() {
    let c = three_node_cluster();
    let node = start(&c, 1, plain_settings(&c, 1));
    for heartbeat in [
        Heartbeat {
            interval: Duration::from_millis(100),
            sensitivity: 0,
        },
        Heartbeat {
            interval: Duration::from_millis(5),
            sensitivity: 4,
        },
    ] {
        let refused = node.runner.set_heartbeat(LAN, heartbeat).unwrap_err();
        assert_eq!(
            refused.kind(),
            std::io::ErrorKind::InvalidInput,
            "{heartbeat:?}"
        );
    }
}

/// A heartbeat taken after it waited in the socket carries the kernel's receive time, not
/// the time it was taken: the heartbeat thread sleeps between its steps and judges each
/// heartbeat by when it came. Datagrams from an address that is no peer are still dropped.
#[test]
fn a_datagram_taken_later_carries_the_time_it_arrived() {
    use halcyon_membership::udp::UdpLink;
    use halcyon_membership::{ArrivedAt, HeartbeatLink};
    use std::net::{SocketAddr, UdpSocket};
    use std::time::SystemTime;

    let port = free_port();
    let local: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let peer = UdpSocket::bind("127.0.0.2:0").unwrap();
    let stranger = UdpSocket::bind("127.0.0.3:0").unwrap();
    let mut link = UdpLink::bind(LAN, local, vec![(2, peer.local_addr().unwrap())]).unwrap();
    assert_eq!(link.try_recv().unwrap(), None, "nothing sent yet");
    stranger.send_to(b"not a peer", local).unwrap();
    // The kernel turns its receive stamps on for the whole machine a moment after the first
    // socket asks (a deferred static key); until then it stamps a datagram when it is read.
    // So: a few tries, each a datagram left waiting 60 ms.
    let mut waits = Vec::new();
    for _ in 0..5 {
        peer.send_to(b"heartbeat", local).unwrap();
        let sent = SystemTime::now();
        std::thread::sleep(Duration::from_millis(60));
        let arrived = link.try_recv().unwrap().expect("the peer's datagram");
        assert_eq!(arrived.bytes, b"heartbeat");
        let ArrivedAt::Kernel(stamp) = arrived.at else {
            panic!("no kernel time: {:?}", arrived.at);
        };
        let waited = SystemTime::now().duration_since(stamp).unwrap();
        waits.push(waited);
        if waited >= Duration::from_millis(55) && stamp <= sent + Duration::from_millis(5) {
            break;
        }
    }
    assert!(
        waits.last().unwrap() >= &Duration::from_millis(55),
        "stamped only {waits:?} before it was taken"
    );
    assert_eq!(link.try_recv().unwrap(), None);
    assert_eq!(link.dropped_count(), 1, "the stranger's datagram");
}

/// The heartbeat thread sleeps until its next send or expiry (here up to a whole second),
/// yet a carrier loss wakes it: the path is down at once, not at the next send.
#[test]
fn a_carrier_loss_wakes_a_thread_asleep_for_a_long_interval() {
    let mut c = three_node_cluster();
    let slow = Heartbeat {
        interval: Duration::from_secs(1),
        sensitivity: 4,
    };
    c.heartbeat = slow;
    for n in &mut c.networks {
        n.heartbeat = slow;
    }
    let first = start(&c, 1, plain_settings(&c, 1));
    let _second = start(&c, 2, plain_settings(&c, 1));
    wait_reachable(&first, 2, Duration::from_secs(5));
    // Just after a send (published at the same wake-up): the thread's next look would be
    // about a second away.
    let sent = first.runner.status().counters.sent;
    wait_for(Duration::from_secs(3), "node 1's next send", || {
        first.runner.status().counters.sent > sent
    });
    first.runner.local_link(LAN, false).unwrap();
    let took = wait_path_down(&first, 2, Duration::from_secs(5));
    assert!(took < Duration::from_millis(100), "took {took:?}");
}
