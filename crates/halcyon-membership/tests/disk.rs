//! Two runners heartbeating through a shared file only (the non-IP path).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use halcyon_config::NetworkKind;
use halcyon_membership::Change;
use halcyon_membership::detector::{DownCause, NodeState, PathState};
use halcyon_membership::disk::{DiskLink, SLOT_SIZE_BYTES};

const DISK: u32 = 1;
const DETECTION_LIMIT: Duration = Duration::from_secs(2);

fn two_runners_share_the_disk(dir: &Path) {
    let device = dir.join("heartbeat.img");
    let c = cluster(
        free_port(),
        vec![node(1, vec![]), node(2, vec![])],
        vec![network(
            "hb",
            DISK,
            NetworkKind::Disk,
            Some(device.display().to_string()),
        )],
    );
    let first = start(&c, 1, plain_settings(&c, 10));
    let second = start(&c, 2, plain_settings(&c, 20));
    assert!(
        std::fs::metadata(&device).unwrap().len() >= 3 * SLOT_SIZE_BYTES as u64,
        "file extended to hold slot 2"
    );
    wait_for(DETECTION_LIMIT, "disk paths up on both nodes", || {
        [&first, &second].iter().all(|s| {
            let status = s.runner.status().detector;
            status.paths.len() == 1 && status.paths[0].state == PathState::Up
        })
    });
    assert!(drain(&first.changes).contains(&Change::NodeReachable {
        node: 2,
        incarnation: 20
    }));

    second.runner.stop();
    let mut seen = Vec::new();
    wait_for(DETECTION_LIMIT, "disk path to node 2 down", || {
        seen.extend(drain(&first.changes));
        seen.contains(&Change::NodeUnreachable { node: 2 })
    });
    assert!(seen.contains(&Change::PathDown {
        node: 2,
        network: DISK,
        cause: DownCause::MissedHeartbeats
    }));
    assert_eq!(
        first.runner.status().detector.nodes[0].state,
        NodeState::Unreachable
    );
}

#[test]
fn disk_heartbeats_on_a_file_system_with_direct_io() {
    let dir = tempfile::tempdir().unwrap();
    two_runners_share_the_disk(dir.path());
}

#[test]
fn disk_heartbeats_on_tmpfs_without_direct_io() {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        eprintln!("skipped: no /dev/shm");
        return;
    }
    let dir = tempfile::tempdir_in(shm).unwrap();
    two_runners_share_the_disk(dir.path());
}

#[test]
fn stale_slots_produce_nothing_and_new_writes_are_delivered_once() {
    use halcyon_membership::HeartbeatLink;
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("hb");
    let interval = Duration::from_millis(20);
    let mut a = DiskLink::open(&device, DISK, 1, &[2], interval).unwrap();
    let mut b = DiskLink::open(&device, DISK, 2, &[1], interval).unwrap();
    assert_eq!(
        b.recv(Duration::from_millis(100)).unwrap(),
        None,
        "never-written slot"
    );
    a.send(b"beat-1").unwrap();
    assert_eq!(
        b.recv(Duration::from_secs(1)).unwrap().as_deref(),
        Some(&b"beat-1"[..])
    );
    assert_eq!(
        b.recv(Duration::from_millis(100)).unwrap(),
        None,
        "same slot content is stale"
    );
    a.send(b"beat-2").unwrap();
    assert_eq!(
        b.recv(Duration::from_secs(1)).unwrap().as_deref(),
        Some(&b"beat-2"[..])
    );
    assert_eq!(
        a.recv(Duration::from_millis(50)).unwrap(),
        None,
        "a node does not hear itself"
    );
}

#[test]
fn a_disk_link_reads_the_slots_of_peers_added_later_and_not_of_peers_removed() {
    use halcyon_membership::{HeartbeatLink, LinkPeer};
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("hb");
    let interval = Duration::from_millis(20);
    let peer = |node| LinkPeer {
        node,
        address: None,
    };
    let mut a = DiskLink::open(&device, DISK, 1, &[2], interval).unwrap();
    // Node 5 opens the device later: it extends the file for its slot.
    let mut e = DiskLink::open(&device, DISK, 5, &[1], interval).unwrap();
    assert!(std::fs::metadata(&device).unwrap().len() >= 6 * SLOT_SIZE_BYTES as u64);
    e.send(b"five-1").unwrap();
    assert_eq!(
        a.recv(Duration::from_millis(150)).unwrap(),
        None,
        "node 5 is not a peer of node 1 yet"
    );
    a.set_peers(vec![peer(2), peer(5)]).unwrap();
    assert_eq!(
        a.recv(Duration::from_secs(1)).unwrap().as_deref(),
        Some(&b"five-1"[..]),
        "its slot is read once it is a peer"
    );
    // Left out again: its next heartbeat is not read.
    a.set_peers(vec![peer(2)]).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    e.send(b"five-2").unwrap();
    assert_eq!(a.recv(Duration::from_millis(150)).unwrap(), None);
    // The node itself is refused as its own peer, and its peers are kept.
    let refused = a.set_peers(vec![peer(1), peer(5)]).unwrap_err();
    assert_eq!(refused.to_string(), "node 1 is this node, not its peer");
    assert_eq!(a.recv(Duration::from_millis(150)).unwrap(), None);
}

#[test]
fn a_node_added_to_running_runners_is_heartbeated_on_the_disk() {
    use halcyon_membership::detector::DetectorConfig;
    use halcyon_membership::link_peers;
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("heartbeat.img");
    let disk = || {
        vec![network(
            "hb",
            DISK,
            NetworkKind::Disk,
            Some(device.display().to_string()),
        )]
    };
    let three = cluster(
        free_port(),
        vec![node(1, vec![]), node(2, vec![]), node(3, vec![])],
        disk(),
    );
    let mut two = three.clone();
    two.nodes.truncate(2);
    let nodes = [
        start(&two, 1, plain_settings(&two, 1)),
        start(&two, 2, plain_settings(&two, 1)),
        start(&three, 3, plain_settings(&three, 1)),
    ];
    let up_paths = |i: usize| -> Vec<u32> {
        nodes[i]
            .runner
            .status()
            .detector
            .paths
            .iter()
            .filter(|p| p.state == PathState::Up)
            .map(|p| p.node)
            .collect()
    };
    wait_for(DETECTION_LIMIT, "nodes 1 and 2 hear each other", || {
        up_paths(0) == [2] && up_paths(1) == [1]
    });
    for started in &nodes[..2] {
        started
            .runner
            .set_peers(
                DetectorConfig::from_cluster(&three, started.node).unwrap(),
                link_peers(&three, started.node).unwrap(),
                Vec::new(),
            )
            .unwrap();
    }
    wait_for(
        DETECTION_LIMIT,
        "every node hears the two others on the disk",
        || (0..3).all(|i| up_paths(i).len() == 2),
    );
    let changes = drain(&nodes[0].changes);
    assert!(
        !changes
            .iter()
            .any(|c| matches!(c, Change::NodeUnreachable { .. })),
        "no node was lost on the way: {changes:?}"
    );
}

/// A disk network added to two runners that heartbeat on a LAN (a running cluster's
/// `halcyon apply`), then removed again: each runner opens its link when told, the two hear
/// each other on the disk, and with the network removed its paths are forgotten and the
/// link closed; neither loses the other on the way.
#[test]
fn a_disk_network_added_to_running_runners_is_heard_and_one_removed_is_forgotten() {
    use halcyon_membership::detector::DetectorConfig;
    use halcyon_membership::{link_of, link_peers};
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("heartbeat.img");
    const LAN: u32 = 1;
    const ADDED: u32 = 2;
    let with_disk = cluster(
        free_port(),
        vec![
            node(1, vec![lan_interface("127.0.0.1")]),
            node(2, vec![lan_interface("127.0.0.2")]),
        ],
        vec![
            network("lan", LAN, NetworkKind::Ip, None),
            network(
                "hb",
                ADDED,
                NetworkKind::Disk,
                Some(device.display().to_string()),
            ),
        ],
    );
    let mut lan_only = with_disk.clone();
    lan_only.networks.truncate(1);
    let nodes = [
        start(&lan_only, 1, plain_settings(&lan_only, 1)),
        start(&lan_only, 2, plain_settings(&lan_only, 1)),
    ];
    let up_paths = |i: usize| -> Vec<(u32, u32)> {
        nodes[i]
            .runner
            .status()
            .detector
            .paths
            .iter()
            .filter(|p| p.state == PathState::Up)
            .map(|p| (p.node, p.network))
            .collect()
    };
    wait_for(
        DETECTION_LIMIT,
        "the two hear each other on the LAN",
        || up_paths(0) == [(2, LAN)] && up_paths(1) == [(1, LAN)],
    );
    assert!(!device.exists(), "no disk link before the network is added");
    let tell = |cluster: &halcyon_config::Cluster, added: bool| {
        for started in &nodes {
            let links = if added {
                vec![link_of(cluster, started.node, ADDED).unwrap().unwrap()]
            } else {
                Vec::new()
            };
            started
                .runner
                .set_peers(
                    DetectorConfig::from_cluster(cluster, started.node).unwrap(),
                    link_peers(cluster, started.node).unwrap(),
                    links,
                )
                .unwrap();
        }
    };
    tell(&with_disk, true);
    let heard = wait_for(DETECTION_LIMIT, "each hears the other on the disk", || {
        up_paths(0) == [(2, LAN), (2, ADDED)] && up_paths(1) == [(1, LAN), (1, ADDED)]
    });
    println!("heard on the added disk network {heard:?} after it was added");
    let networks = |i: usize| -> Vec<u32> {
        let status = nodes[i].runner.status();
        status.detector.networks.iter().map(|n| n.network).collect()
    };
    assert_eq!(networks(0), [LAN, ADDED]);
    tell(&lan_only, false);
    wait_for(DETECTION_LIMIT, "the disk network forgotten", || {
        (0..2).all(|i| networks(i) == [LAN] && nodes[i].runner.status().detector.paths.len() == 1)
    });
    // Still heard on the LAN, and the disk no longer written: its slots stop changing.
    let before = std::fs::read(&device).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        std::fs::read(&device).unwrap(),
        before,
        "a closed link writes nothing"
    );
    assert_eq!(up_paths(0), [(2, LAN)]);
    for started in &nodes {
        let changes = drain(&started.changes);
        assert!(
            !changes
                .iter()
                .any(|c| matches!(c, Change::NodeUnreachable { .. })),
            "no node was lost on the way: {changes:?}"
        );
    }
}

/// The disk link reads its peers' slots often enough for the interval in play: a shorter
/// one takes effect at once (the worker is woken, not left waiting out the old period), a
/// longer one within the bounds.
#[test]
fn a_disk_link_reads_as_often_as_a_changed_interval_needs() {
    use halcyon_membership::HeartbeatLink;
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("hb");
    // 1 s: the slots are read every 250 ms (the most).
    let mut a = DiskLink::open(&device, DISK, 1, &[2], Duration::from_secs(1)).unwrap();
    let mut b = DiskLink::open(&device, DISK, 2, &[1], Duration::from_secs(1)).unwrap();
    assert_eq!(a.read_period(), Duration::from_millis(250));
    b.send(b"first").unwrap();
    assert_eq!(
        a.recv(Duration::from_secs(1)).unwrap().as_deref(),
        Some(&b"first"[..])
    );
    a.set_interval(Duration::from_millis(20));
    assert_eq!(a.read_period(), Duration::from_millis(5));
    // Every heartbeat is read within a few new periods, not up to 250 ms later (10 in a
    // row under 100 ms would be a 1 in 10,000 chance at the old period).
    for i in 0..10 {
        let beat = format!("beat-{i}");
        b.send(beat.as_bytes()).unwrap();
        let sent = std::time::Instant::now();
        assert_eq!(
            a.recv(Duration::from_secs(1)).unwrap().as_deref(),
            Some(beat.as_bytes())
        );
        let took = sent.elapsed();
        assert!(
            took < Duration::from_millis(100),
            "beat {i} read after {took:?}"
        );
    }
    a.set_interval(Duration::from_secs(10));
    assert_eq!(a.read_period(), Duration::from_millis(250), "bounded");
    a.set_interval(Duration::from_millis(2));
    assert_eq!(a.read_period(), Duration::from_millis(1), "bounded");
}

/// Two runners share the disk (tmpfs when there is one: its writes never stall the way a
/// loaded disk's synchronous ones can, which is not what this test is about) and switch its
/// interval half a second apart: 1 s -> 30 ms -> 1 s. While node 2 still heartbeats every
/// second (and reads the slots every 250 ms), node 1 announces 30 ms: node 2 must read node
/// 1's slot often enough for a 120 ms detection time at once. Back to 1 s, node 1 keeps
/// writing every 30 ms for 4 heartbeats announcing 1 s, so node 2, still judging by 30 ms,
/// reads the announcement. No path or node is judged down.
#[test]
fn runners_switching_the_disk_interval_one_after_another_see_no_false_failure() {
    use halcyon_config::Heartbeat;
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let long = Heartbeat {
        interval: Duration::from_secs(1),
        sensitivity: 4,
    };
    // Sensitivity 8: 240 ms of detection, room for a loaded test machine's scheduling at
    // normal priority, and still below the read period a link that kept its 1 s interval
    // would read at (250 ms, the most).
    let short = Heartbeat {
        interval: Duration::from_millis(30),
        sensitivity: 8,
    };
    let mut disk = network(
        "hb",
        DISK,
        NetworkKind::Disk,
        Some(dir.path().join("heartbeat.img").display().to_string()),
    );
    disk.heartbeat = long;
    let c = cluster(
        free_port(),
        vec![node(1, vec![]), node(2, vec![])],
        vec![disk],
    );
    let nodes = [
        start(&c, 1, plain_settings(&c, 1)),
        start(&c, 2, plain_settings(&c, 1)),
    ];
    wait_judged_by(&nodes, DISK, long, DETECTION_LIMIT);
    let stagger = Duration::from_millis(500);
    let seen = apply_one_after_another(&nodes, DISK, short, stagger, Duration::from_millis(500));
    assert_no_failure(&nodes, &seen, "1 s -> 30 ms");
    wait_judged_by(&nodes, DISK, short, DETECTION_LIMIT);
    let seen = apply_one_after_another(&nodes, DISK, long, stagger, Duration::from_millis(2500));
    assert_no_failure(&nodes, &seen, "30 ms -> 1 s");
    wait_judged_by(&nodes, DISK, long, DETECTION_LIMIT);
}
