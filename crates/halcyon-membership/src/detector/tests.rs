//! Detector behaviour an administrator relies on: when paths and nodes are declared down or up,
//! and what kind of failure is reported.

use super::*;
use halcyon_config::{
    Cluster, EventDefaults, Interface, Limits, Network, NetworkName, Node, NodeName, Quorum,
};

const LAN: u32 = 1;
const BACKUP_LAN: u32 = 2;
const DISK: u32 = 3;

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Local node 1. Ip networks 1 and 2: 100 ms x 4; disk network 3: 200 ms x 3 (600 ms).
/// `paths`: (peer, network, peer has a standby there).
fn config(paths: &[(u32, u32, bool)]) -> DetectorConfig {
    let ip = Heartbeat {
        interval: ms(100),
        sensitivity: 4,
    };
    let disk = Heartbeat {
        interval: ms(200),
        sensitivity: 3,
    };
    let mut peers: Vec<u32> = paths.iter().map(|p| p.0).collect();
    peers.sort();
    peers.dedup();
    DetectorConfig {
        local_node: 1,
        networks: vec![
            NetworkSpec {
                number: LAN,
                kind: NetworkKind::Ip,
                heartbeat: ip,
            },
            NetworkSpec {
                number: BACKUP_LAN,
                kind: NetworkKind::Ip,
                heartbeat: ip,
            },
            NetworkSpec {
                number: DISK,
                kind: NetworkKind::Disk,
                heartbeat: disk,
            },
        ],
        peers,
        paths: paths
            .iter()
            .map(|&(node, network, peer_has_standby)| PathSpec {
                node,
                network,
                peer_has_standby,
            })
            .collect(),
    }
}

/// The configured interval of `network` in [`config`]: what its senders announce unless a
/// test says otherwise.
fn configured(network: u32) -> Duration {
    if network == DISK { ms(200) } else { ms(100) }
}

fn detector(paths: &[(u32, u32, bool)]) -> Detector {
    Detector::new(&config(paths), Duration::ZERO).unwrap()
}

/// Feeds heartbeats from `node` on `networks` every `every_ms` in `[from_ms, to_ms]`, ticking
/// after each; returns every change seen.
fn beat(
    d: &mut Detector,
    node: u32,
    networks: &[u32],
    from_ms: u64,
    to_ms: u64,
    every_ms: u64,
) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut t = from_ms;
    while t <= to_ms {
        for &network in networks {
            assert_eq!(
                d.heard(ms(t), node, network, 1, t + 1, configured(network)),
                Heard::Accepted,
                "t={t} network={network}"
            );
        }
        changes.extend(d.tick(ms(t)));
        t += every_ms;
    }
    changes
}

fn up(node: u32, network: u32) -> Change {
    Change::PathUp { node, network }
}

fn down(node: u32, network: u32) -> Change {
    Change::PathDown {
        node,
        network,
        cause: DownCause::MissedHeartbeats,
    }
}

#[test]
fn path_goes_down_after_exactly_sensitivity_missed_intervals_and_not_before() {
    let mut d = detector(&[(2, LAN, false)]);
    let changes = beat(&mut d, 2, &[LAN], 0, 1000, 100);
    assert_eq!(
        changes,
        vec![
            up(2, LAN),
            Change::NodeReachable {
                node: 2,
                incarnation: 1
            }
        ]
    );
    // Last heard at 1000 ms; 4 intervals of 100 ms end at 1400 ms.
    assert_eq!(d.tick(ms(1399)), vec![]);
    assert_eq!(d.path_state(2, LAN), Some(PathState::Up));
    assert_eq!(
        d.tick(ms(1400)),
        vec![down(2, LAN), Change::NodeUnreachable { node: 2 }]
    );
}

fn heartbeat(interval_ms: u64, sensitivity: u32) -> Heartbeat {
    Heartbeat {
        interval: ms(interval_ms),
        sensitivity,
    }
}

#[test]
fn a_new_sensitivity_judges_the_paths_of_its_network_from_then_on() {
    let mut d = detector(&[(2, LAN, false), (2, BACKUP_LAN, false), (3, LAN, false)]);
    beat(&mut d, 3, &[LAN], 0, 300, 100);
    // Node 3 last heard at 300 ms: down at 700 ms, while node 2 beats.
    let changes = beat(&mut d, 2, &[LAN, BACKUP_LAN], 400, 1000, 100);
    assert!(changes.contains(&down(3, LAN)), "{changes:?}");
    // 6 missed heartbeats on LAN from 1000 ms: node 2's last beat at 1000 ms keeps LAN up
    // until 1600 ms; BACKUP_LAN keeps 4 (1400 ms). Node 3, already down, stays down.
    let old = d.set_heartbeat(ms(1000), LAN, heartbeat(100, 6)).unwrap();
    assert_eq!(old, heartbeat(100, 4));
    assert_eq!(d.tick(ms(1399)), vec![]);
    assert_eq!(d.tick(ms(1400)), vec![down(2, BACKUP_LAN)]);
    assert_eq!(d.tick(ms(1599)), vec![]);
    assert_eq!(
        d.tick(ms(1600)),
        vec![down(2, LAN), Change::NodeUnreachable { node: 2 }]
    );
    assert_eq!(d.path_state(3, LAN), Some(PathState::Down));
    let networks = d.snapshot(ms(1600)).networks;
    assert_eq!(networks[0].heartbeat.sensitivity, 6);
    assert_eq!(networks[1].heartbeat.sensitivity, 4);

    // Lower: a path silent longer than the new detection goes down at the next tick.
    let mut d = detector(&[(2, LAN, false)]);
    beat(&mut d, 2, &[LAN], 0, 1000, 100);
    assert_eq!(d.tick(ms(1250)), vec![]);
    d.set_heartbeat(ms(1250), LAN, heartbeat(100, 2)).unwrap();
    assert_eq!(
        d.tick(ms(1250)),
        vec![down(2, LAN), Change::NodeUnreachable { node: 2 }]
    );
    assert_eq!(
        d.set_heartbeat(ms(1300), 9, heartbeat(100, 2)),
        Err(DetectorError::UnknownNetwork(9))
    );
}

/// The interval each path of `d` is judged by, by (node, network).
fn intervals(d: &Detector, now: u64) -> Vec<(u32, u32, Duration)> {
    let snapshot = d.snapshot(ms(now));
    snapshot
        .paths
        .iter()
        .map(|p| (p.node, p.network, p.interval))
        .collect()
}

/// Node 2 switched to 300 ms before this node did: its first heartbeat announcing it
/// extends its detection time to 4 x 300 ms at once.
#[test]
fn a_sender_announcing_a_longer_interval_is_not_down_at_the_old_detection_time() {
    let mut d = detector(&[(2, LAN, false)]);
    beat(&mut d, 2, &[LAN], 0, 900, 100);
    assert_eq!(d.heard(ms(1000), 2, LAN, 1, 1000, ms(300)), Heard::Accepted);
    assert_eq!(intervals(&d, 1000), [(2, LAN, ms(300))]);
    assert_eq!(
        d.snapshot(ms(1000)).networks[0].heartbeat,
        heartbeat(100, 4),
        "this node's configuration is unchanged"
    );
    // The old detection time (400 ms) passes: still up.
    for t in (1000..2200).step_by(10) {
        assert_eq!(d.tick(ms(t)), vec![], "t={t}");
    }
    assert_eq!(d.tick(ms(2199)), vec![]);
    assert_eq!(
        d.tick(ms(2200)),
        vec![down(2, LAN), Change::NodeUnreachable { node: 2 }]
    );
}

/// Node 2 switched to 30 ms: its first heartbeat announcing it is judged by the 100 ms it
/// replaces (this node may take it up to one of its own, slower, sleeps late), the poll
/// follows 30 ms at once, and from the second on the path is judged by 30 ms.
#[test]
fn a_sender_announcing_a_shorter_interval_is_judged_by_it_from_its_second_heartbeat() {
    let mut d = detector(&[(2, LAN, false), (2, BACKUP_LAN, false)]);
    beat(&mut d, 2, &[LAN, BACKUP_LAN], 0, 1000, 100);
    assert_eq!(d.heard(ms(1000), 2, LAN, 1, 2000, ms(30)), Heard::Accepted);
    assert_eq!(d.interval_min(LAN), Some(ms(30)));
    assert_eq!(d.interval_min(BACKUP_LAN), Some(ms(100)));
    assert_eq!(intervals(&d, 1000)[0], (2, LAN, ms(100)));
    // Judged 200 ms later (the receiver's sleep at its slower pace): not down at 4 x 30 ms.
    assert_eq!(d.tick(ms(1200)), vec![]);
    assert_eq!(d.heard(ms(1210), 2, LAN, 1, 2001, ms(30)), Heard::Accepted);
    assert_eq!(intervals(&d, 1210)[0], (2, LAN, ms(30)));
    // 4 x 30 ms after the second, not 4 x 100 ms.
    assert_eq!(d.tick(ms(1329)), vec![]);
    assert_eq!(d.tick(ms(1330)), vec![down(2, LAN)]);
    assert_eq!(
        d.interval_min(LAN),
        Some(ms(100)),
        "a down path is not polled for"
    );
    assert_eq!(d.interval_min(9), None);
}

/// This node applies 300 ms x 5: node 3, never heard, is judged by the new interval; node 2,
/// heard announcing 100 ms, by what it announced, with the new sensitivity.
#[test]
fn a_new_heartbeat_gives_its_interval_to_the_paths_never_heard() {
    let mut d = detector(&[(2, LAN, false), (3, LAN, false), (3, DISK, false)]);
    assert_eq!(d.heard(ms(0), 2, LAN, 1, 1, ms(100)), Heard::Accepted);
    assert_eq!(d.heard(ms(0), 3, DISK, 1, 1, ms(200)), Heard::Accepted);
    d.tick(ms(0));
    let old = d.set_heartbeat(ms(100), LAN, heartbeat(300, 5)).unwrap();
    assert_eq!(old, heartbeat(100, 4));
    assert_eq!(
        intervals(&d, 100),
        [(2, LAN, ms(100)), (3, LAN, ms(300)), (3, DISK, ms(200))]
    );
    assert_eq!(d.snapshot(ms(100)).networks[0].heartbeat, heartbeat(300, 5));
    assert_eq!(d.interval_min(LAN), Some(ms(100)));
    // Node 3's disk path keeps node 3 reachable: its LAN path is judged alone.
    beat(&mut d, 3, &[DISK], 200, 400, 200);
    assert_eq!(d.tick(ms(499)), vec![]);
    assert_eq!(
        d.tick(ms(500)),
        vec![down(2, LAN), Change::NodeUnreachable { node: 2 }]
    );
    beat(&mut d, 3, &[DISK], 600, 1400, 200);
    assert_eq!(
        d.path_state(3, LAN),
        Some(PathState::Unknown),
        "not down at 400 ms"
    );
    assert_eq!(d.tick(ms(1499)), vec![]);
    assert_eq!(d.tick(ms(1500)), vec![down(3, LAN)]);
}

/// The sender keeps its promises across the switch, so nothing is counted late: a
/// heartbeat is judged by the interval the previous one announced.
#[test]
fn a_switch_of_interval_the_sender_announced_is_not_counted_late() {
    fn beat_at(d: &mut Detector, t: u64, interval_ms: u64) {
        assert_eq!(
            d.heard(ms(t), 2, LAN, 1, t + 1, ms(interval_ms)),
            Heard::Accepted,
            "t={t}"
        );
        d.tick(ms(t));
    }
    let mut d = detector(&[(2, LAN, false)]);
    // 100 ms; then 300 ms announced, sent at the old period 4 times, then at 300 ms.
    for t in (0..=1000).step_by(100) {
        beat_at(&mut d, t, 100);
    }
    for t in [1100, 1200, 1300, 1400, 1700, 2000] {
        beat_at(&mut d, t, 300);
    }
    // 30 ms announced 300 ms after the previous one (the switch came just before it was
    // due), then kept.
    for t in [2300, 2330, 2360, 2390] {
        beat_at(&mut d, t, 30);
    }
    let counts = |d: &Detector, now| {
        let s = d.snapshot(ms(now));
        (s.paths[0].late, s.paths[0].missed)
    };
    assert_eq!(counts(&d, 2390), (0, 0));
    // Then 90 ms of silence, 3 of the 30 ms promised: late, 2 missed.
    beat_at(&mut d, 2480, 30);
    assert_eq!(counts(&d, 2480), (1, 2));
    // A sender that announced 30 ms and then sent after 300 ms broke its promise.
    beat_at(&mut d, 2780, 300);
    assert_eq!(counts(&d, 2780), (2, 11));
}

#[test]
fn late_but_within_sensitivity_heartbeats_keep_the_path_up() {
    let mut d = detector(&[(2, LAN, false)]);
    // A beat every 399 ms (3.99 intervals): never 4 full intervals of silence.
    let changes = beat(&mut d, 2, &[LAN], 0, 4000, 399);
    assert!(
        !changes.iter().any(|c| matches!(c, Change::PathDown { .. })),
        "{changes:?}"
    );
}

#[test]
fn late_heartbeats_and_the_intervals_missed_between_them_are_counted_per_path() {
    let mut d = detector(&[(2, LAN, false), (2, BACKUP_LAN, false)]);
    // On time (100 ms apart, or 140: within 1.5 intervals): nothing counted.
    beat(&mut d, 2, &[LAN, BACKUP_LAN], 0, 500, 100);
    beat(&mut d, 2, &[LAN], 640, 640, 100);
    // 160 ms after the previous one (about two intervals): late, the one between missed;
    // then 300 ms: late, 2 missed.
    beat(&mut d, 2, &[LAN], 800, 800, 100);
    beat(&mut d, 2, &[LAN], 1100, 1100, 100);
    fn counts(d: &Detector, network: u32, now: u64) -> (u64, u64) {
        let s = d.snapshot(ms(now));
        let p = s.paths.iter().find(|p| p.network == network).unwrap();
        (p.late, p.missed)
    }
    assert_eq!(counts(&d, LAN, 1100), (2, 3));
    assert_eq!(counts(&d, BACKUP_LAN, 1100), (0, 0));
    // A path that went down and comes back: the silence is not counted as late heartbeats.
    d.tick(ms(2000));
    assert_eq!(d.path_state(2, BACKUP_LAN), Some(PathState::Down));
    beat(&mut d, 2, &[BACKUP_LAN], 2100, 2100, 100);
    assert_eq!(counts(&d, BACKUP_LAN, 2100), (0, 0));
}

#[test]
fn a_path_never_heard_is_down_after_the_first_detection_time() {
    let mut d = detector(&[(2, LAN, false)]);
    assert_eq!(d.tick(ms(399)), vec![]);
    assert_eq!(d.node_state(2), Some(NodeState::Unknown));
    assert_eq!(
        d.tick(ms(400)),
        vec![down(2, LAN), Change::NodeUnreachable { node: 2 }]
    );
}

#[test]
fn a_peer_added_later_is_judged_from_its_addition_and_one_removed_is_forgotten() {
    let mut d = detector(&[(2, LAN, false), (3, LAN, false)]);
    assert_eq!(
        d.heard(ms(0), 3, LAN, 1, 1, configured(LAN)),
        Heard::Accepted
    );
    beat(&mut d, 2, &[LAN], 0, 1000, 100);
    assert_eq!(d.node_state(3), Some(NodeState::Unreachable));
    // Node 4 added at 1000 ms, node 3 removed.
    d.set_peers(
        ms(1000),
        &config(&[(2, LAN, false), (4, LAN, false), (4, BACKUP_LAN, true)]),
    )
    .unwrap();
    assert_eq!(d.node_state(3), None, "removed: forgotten");
    assert_eq!(d.path_state(3, LAN), None);
    assert_eq!(d.node_state(4), Some(NodeState::Unknown));
    // Node 2 keeps its state and its heartbeats.
    assert_eq!(d.node_state(2), Some(NodeState::Reachable));
    beat(&mut d, 2, &[LAN], 1100, 1300, 100);
    // Node 4 never heard: down one detection time after its addition (400 ms), not before.
    assert_eq!(
        d.tick(ms(1399)),
        vec![],
        "not one detection time after the addition"
    );
    assert_eq!(
        d.tick(ms(1400)),
        vec![
            down(4, LAN),
            down(4, BACKUP_LAN),
            Change::NodeUnreachable { node: 4 }
        ]
    );
    // Heard later: up, reachable; a heartbeat of the removed node 3 is not accepted.
    assert_eq!(
        d.heard(ms(1500), 4, LAN, 7, 1, configured(LAN)),
        Heard::Accepted
    );
    assert_eq!(
        d.heard(ms(1500), 3, LAN, 1, 2000, configured(LAN)),
        Heard::UnknownPath
    );
    assert_eq!(
        d.tick(ms(1500)),
        vec![
            up(4, LAN),
            Change::AdapterDown {
                node: 4,
                network: BACKUP_LAN,
                action: AdapterAction::SwapAdapter
            },
            Change::NodeReachable {
                node: 4,
                incarnation: 7
            }
        ]
    );
    assert_eq!(d.snapshot(ms(1500)).nodes.len(), 2);
}

#[test]
fn a_path_on_a_network_the_new_peers_lack_is_refused_and_nothing_changes() {
    let mut d = detector(&[(2, LAN, false)]);
    let mut other = config(&[(2, LAN, false), (4, 9, false)]);
    other.networks.retain(|n| n.number != DISK);
    assert_eq!(
        d.set_peers(ms(10), &other),
        Err(DetectorError::UnknownNetwork(9))
    );
    assert_eq!(d.node_state(4), None);
    assert_eq!(d.snapshot(ms(10)).paths.len(), 1);
    assert_eq!(d.snapshot(ms(10)).networks.len(), 3, "no network forgotten");
}

/// `config` without the disk network: what a cluster without one watches.
fn without_disk(paths: &[(u32, u32, bool)]) -> DetectorConfig {
    let mut config = config(paths);
    config.networks.retain(|n| n.number != DISK);
    config
}

#[test]
fn a_network_added_later_is_judged_from_its_addition_and_one_removed_is_forgotten() {
    let mut d = Detector::new(&without_disk(&[(2, LAN, false)]), Duration::ZERO).unwrap();
    beat(&mut d, 2, &[LAN], 0, 1000, 100);
    assert_eq!(
        d.heard(ms(1000), 2, DISK, 1, 1000, configured(DISK)),
        Heard::UnknownPath,
        "not watched before it is added"
    );
    // The disk network added at 1000 ms: watched with its own heartbeat, its local link up.
    d.set_peers(ms(1000), &config(&[(2, LAN, false), (2, DISK, false)]))
        .unwrap();
    let snapshot = d.snapshot(ms(1000));
    assert_eq!(
        snapshot
            .networks
            .iter()
            .map(|n| n.network)
            .collect::<Vec<_>>(),
        vec![LAN, BACKUP_LAN, DISK]
    );
    assert!(snapshot.networks.iter().all(|n| n.local_link_up));
    assert_eq!(d.path_state(2, DISK), Some(PathState::Unknown));
    assert_eq!(d.node_state(2), Some(NodeState::Reachable), "kept");
    // Heard on the disk: up, no node change.
    assert_eq!(
        d.heard(ms(1100), 2, DISK, 1, 1001, configured(DISK)),
        Heard::Accepted
    );
    beat(&mut d, 2, &[LAN], 1100, 1300, 100);
    assert_eq!(d.path_state(2, DISK), Some(PathState::Up));
    // The LAN goes silent: the node stays reachable on the disk (an adapter change).
    assert_eq!(
        d.heard(ms(1700), 2, DISK, 1, 1002, configured(DISK)),
        Heard::Accepted
    );
    let changes = d.tick(ms(1750));
    assert!(changes.contains(&down(2, LAN)), "{changes:?}");
    assert!(
        !changes.contains(&Change::NodeUnreachable { node: 2 }),
        "{changes:?}"
    );
    assert_eq!(d.node_state(2), Some(NodeState::Reachable));
    // The disk network removed while it alone hears the node: forgotten with its path, and
    // the node judged again at once: nothing is left to hear it on.
    d.set_peers(ms(1800), &without_disk(&[(2, LAN, false)]))
        .unwrap();
    assert_eq!(d.path_state(2, DISK), None);
    assert_eq!(
        d.snapshot(ms(1800))
            .networks
            .iter()
            .map(|n| n.network)
            .collect::<Vec<_>>(),
        vec![LAN, BACKUP_LAN]
    );
    assert_eq!(d.tick(ms(1800)), vec![Change::NodeUnreachable { node: 2 }]);
    assert_eq!(
        d.heard(ms(1900), 2, DISK, 1, 1003, configured(DISK)),
        Heard::UnknownPath,
        "a removed network's heartbeats are not accepted"
    );
}

#[test]
fn a_network_added_and_never_heard_goes_down_one_detection_time_after_its_addition() {
    let mut d = Detector::new(&without_disk(&[(2, LAN, false)]), Duration::ZERO).unwrap();
    beat(&mut d, 2, &[LAN], 0, 1000, 100);
    d.set_peers(ms(1000), &config(&[(2, LAN, false), (2, DISK, false)]))
        .unwrap();
    beat(&mut d, 2, &[LAN], 1100, 1500, 100);
    // The disk's detection time is 200 ms x 3, counted from the addition.
    assert_eq!(d.tick(ms(1599)), vec![]);
    assert_eq!(d.path_state(2, DISK), Some(PathState::Unknown));
    let changes = d.tick(ms(1600));
    assert!(
        changes.iter().any(|c| matches!(
            c,
            Change::PathDown {
                node: 2,
                network: DISK,
                ..
            }
        )),
        "{changes:?}"
    );
    assert_eq!(
        d.node_state(2),
        Some(NodeState::Reachable),
        "heard on the LAN"
    );
}

#[test]
fn path_is_up_again_on_the_first_heartbeat() {
    let mut d = detector(&[(2, LAN, false)]);
    assert_eq!(d.tick(ms(400)).len(), 2);
    assert_eq!(
        d.heard(ms(5000), 2, LAN, 1, 1, configured(LAN)),
        Heard::Accepted
    );
    assert_eq!(
        d.tick(ms(5000)),
        vec![
            up(2, LAN),
            Change::NodeReachable {
                node: 2,
                incarnation: 1
            }
        ]
    );
}

#[test]
fn node_is_unreachable_only_when_every_path_is_down() {
    let mut d = detector(&[(2, LAN, false), (2, BACKUP_LAN, false), (2, DISK, false)]);
    beat(&mut d, 2, &[LAN, BACKUP_LAN, DISK], 0, 1000, 100);
    // The LAN goes quiet; the backup LAN and the disk go on.
    let changes = beat(&mut d, 2, &[BACKUP_LAN, DISK], 1100, 2000, 100);
    assert!(changes.contains(&down(2, LAN)));
    assert!(
        !changes
            .iter()
            .any(|c| matches!(c, Change::NodeUnreachable { .. }))
    );
    // Then the backup LAN.
    let changes = beat(&mut d, 2, &[DISK], 2100, 3000, 100);
    assert!(changes.contains(&down(2, BACKUP_LAN)));
    assert_eq!(d.node_state(2), Some(NodeState::Reachable));
    // Then the disk: last heard at 3000 ms, 600 ms detection.
    assert!(
        !d.tick(ms(3599))
            .contains(&Change::NodeUnreachable { node: 2 })
    );
    assert_eq!(
        d.tick(ms(3600)),
        vec![down(2, DISK), Change::NodeUnreachable { node: 2 }]
    );
}

#[test]
fn peer_heard_only_on_disk_is_network_down_not_node_down() {
    let mut d = detector(&[(2, LAN, false), (2, DISK, false)]);
    beat(&mut d, 2, &[LAN, DISK], 0, 1000, 100);
    let changes = beat(&mut d, 2, &[DISK], 1100, 3000, 100);
    assert_eq!(
        changes,
        vec![
            down(2, LAN),
            Change::AdapterDown {
                node: 2,
                network: LAN,
                action: AdapterAction::NetworkDown
            },
        ]
    );
    assert_eq!(d.node_state(2), Some(NodeState::Reachable));
    // The LAN comes back.
    let changes = beat(&mut d, 2, &[LAN, DISK], 3100, 3200, 100);
    assert_eq!(
        changes,
        vec![
            up(2, LAN),
            Change::AdapterUp {
                node: 2,
                network: LAN
            }
        ]
    );
}

#[test]
fn adapter_with_a_standby_suggests_swap_adapter() {
    let mut d = detector(&[(2, LAN, true), (2, DISK, false)]);
    beat(&mut d, 2, &[LAN, DISK], 0, 1000, 100);
    let changes = beat(&mut d, 2, &[DISK], 1100, 2000, 100);
    assert!(changes.contains(&Change::AdapterDown {
        node: 2,
        network: LAN,
        action: AdapterAction::SwapAdapter
    }));
}

#[test]
fn dead_node_gives_node_unreachable_and_no_adapter_change() {
    // The disk's detection (600 ms) is longer than the LAN's (400 ms): the LAN path is down
    // for 200 ms while the disk path is still up, but nothing is heard after it went down.
    let mut d = detector(&[(2, LAN, false), (2, DISK, false)]);
    beat(&mut d, 2, &[LAN, DISK], 0, 1000, 100);
    let mut changes = Vec::new();
    for t in (1001..=2000).step_by(10) {
        changes.extend(d.tick(ms(t)));
    }
    assert_eq!(
        changes,
        vec![
            down(2, LAN),
            down(2, DISK),
            Change::NodeUnreachable { node: 2 }
        ]
    );
}

#[test]
fn local_link_down_takes_paths_down_at_once() {
    let mut d = detector(&[
        (2, LAN, false),
        (2, DISK, false),
        (3, LAN, false),
        (3, DISK, false),
    ]);
    for t in [0, 100] {
        for node in [2, 3] {
            d.heard(ms(t), node, LAN, 1, t + 1, configured(LAN));
            d.heard(ms(t), node, DISK, 1, t + 1, configured(DISK));
        }
    }
    d.tick(ms(100));
    d.local_link(ms(110), LAN, false).unwrap();
    let local = |node| Change::PathDown {
        node,
        network: LAN,
        cause: DownCause::LocalLinkDown,
    };
    assert_eq!(d.tick(ms(110)), vec![local(2), local(3)]);
    // A beat still buffered for the dead interface does not bring the path back.
    assert_eq!(
        d.heard(ms(120), 2, LAN, 1, 500, configured(LAN)),
        Heard::LocalLinkDown
    );
    assert_eq!(d.path_state(2, LAN), Some(PathState::Down));
    // Carrier back: up again with the next heartbeat.
    d.local_link(ms(130), LAN, true).unwrap();
    assert_eq!(d.tick(ms(130)), vec![]);
    d.heard(ms(140), 2, LAN, 1, 501, configured(LAN));
    assert_eq!(d.tick(ms(140)), vec![up(2, LAN)]);
    assert_eq!(
        d.local_link(ms(150), 9, false),
        Err(DetectorError::UnknownNetwork(9))
    );
}

#[test]
fn new_incarnation_is_reported_and_old_one_ignored() {
    let mut d = detector(&[(2, LAN, false), (2, DISK, false)]);
    assert_eq!(
        d.heard(ms(0), 2, LAN, 5, 1000, configured(LAN)),
        Heard::Accepted
    );
    assert_eq!(
        d.heard(ms(0), 2, DISK, 5, 1001, configured(DISK)),
        Heard::Accepted
    );
    d.tick(ms(0));
    // Restarted daemon: sequence numbers start again from 1.
    assert_eq!(
        d.heard(ms(100), 2, LAN, 6, 1, configured(LAN)),
        Heard::Accepted
    );
    assert_eq!(
        d.tick(ms(100)),
        vec![Change::PeerRestarted {
            node: 2,
            old: 5,
            new: 6
        }]
    );
    assert_eq!(
        d.heard(ms(110), 2, DISK, 5, 1002, configured(DISK)),
        Heard::StaleIncarnation
    );
    assert_eq!(
        d.heard(ms(120), 2, DISK, 6, 2, configured(DISK)),
        Heard::Accepted
    );
    assert_eq!(d.tick(ms(120)), vec![]);
    assert_eq!(d.snapshot(ms(120)).nodes[0].incarnation, Some(6));
}

#[test]
fn replayed_or_duplicate_sequence_numbers_do_not_keep_a_path_up() {
    let mut d = detector(&[(2, LAN, false)]);
    assert_eq!(
        d.heard(ms(0), 2, LAN, 1, 10, configured(LAN)),
        Heard::Accepted
    );
    assert_eq!(
        d.heard(ms(300), 2, LAN, 1, 10, configured(LAN)),
        Heard::StaleSequence
    );
    assert_eq!(
        d.heard(ms(350), 2, LAN, 1, 9, configured(LAN)),
        Heard::StaleSequence
    );
    assert!(d.tick(ms(400)).contains(&down(2, LAN)));
}

#[test]
fn each_transition_is_reported_once() {
    let mut d = detector(&[(2, LAN, false)]);
    assert_eq!(beat(&mut d, 2, &[LAN], 0, 1000, 100).len(), 2);
    assert_eq!(d.tick(ms(1400)).len(), 2);
    for t in (1400..3000).step_by(50) {
        assert_eq!(d.tick(ms(t)), vec![]);
    }
    assert_eq!(beat(&mut d, 2, &[LAN], 3000, 4000, 100).len(), 2);
}

#[test]
fn changes_are_sorted_by_node_then_network_whatever_the_arrival_order() {
    let paths = [
        (2, LAN, false),
        (2, DISK, false),
        (3, LAN, false),
        (3, DISK, false),
        (4, BACKUP_LAN, false),
    ];
    let run = |order: &[(u32, u32)]| {
        let mut d = detector(&paths);
        for (i, &(node, network)) in order.iter().enumerate() {
            d.heard(ms(i as u64), node, network, 7, 1, configured(network));
        }
        d.tick(ms(10))
    };
    let forward = run(&[(2, LAN), (2, DISK), (3, LAN), (3, DISK), (4, BACKUP_LAN)]);
    let backward = run(&[(4, BACKUP_LAN), (3, DISK), (3, LAN), (2, DISK), (2, LAN)]);
    let reachable = |node| Change::NodeReachable {
        node,
        incarnation: 7,
    };
    let expected = vec![
        up(2, LAN),
        up(2, DISK),
        reachable(2),
        up(3, LAN),
        up(3, DISK),
        reachable(3),
        up(4, BACKUP_LAN),
        reachable(4),
    ];
    assert_eq!(forward, expected);
    assert_eq!(backward, expected);
}

#[test]
fn heartbeats_from_unknown_nodes_networks_or_ourselves_are_ignored() {
    let mut d = detector(&[(2, LAN, false)]);
    assert_eq!(
        d.heard(ms(0), 9, LAN, 1, 1, configured(LAN)),
        Heard::UnknownPath
    );
    assert_eq!(
        d.heard(ms(0), 2, DISK, 1, 1, configured(DISK)),
        Heard::UnknownPath
    );
    assert_eq!(
        d.heard(ms(0), 1, LAN, 1, 1, configured(LAN)),
        Heard::UnknownPath
    );
    assert_eq!(d.tick(ms(0)), vec![]);
}

#[test]
fn peer_sharing_no_network_is_unreachable() {
    let mut cfg = config(&[(2, LAN, false)]);
    cfg.peers.push(5);
    let mut d = Detector::new(&cfg, Duration::ZERO).unwrap();
    assert_eq!(d.tick(ms(0)), vec![Change::NodeUnreachable { node: 5 }]);
}

#[test]
fn snapshot_shows_states_and_last_heard_ages() {
    let mut d = detector(&[(2, LAN, false), (2, DISK, false)]);
    d.heard(ms(100), 2, LAN, 3, 1, configured(LAN));
    d.tick(ms(100));
    let s = d.snapshot(ms(250));
    assert_eq!(s.local_node, 1);
    assert_eq!(
        s.nodes,
        vec![NodeStatus {
            node: 2,
            state: NodeState::Reachable,
            incarnation: Some(3)
        }]
    );
    assert_eq!(s.paths[0].network, LAN);
    assert_eq!(s.paths[0].state, PathState::Up);
    assert_eq!(s.paths[0].last_heard_age, Some(ms(150)));
    assert_eq!(s.paths[1].state, PathState::Unknown);
    assert_eq!(s.paths[1].last_heard_age, None);
    assert!(s.networks.iter().all(|n| n.local_link_up));
}

#[test]
#[should_panic(expected = "time went backwards")]
fn time_going_backwards_is_a_programmer_error() {
    let mut d = detector(&[(2, LAN, false)]);
    d.tick(ms(10));
    d.tick(ms(5));
}

fn node(name: &str, number: u32, interfaces: Vec<Interface>) -> Node {
    Node {
        name: NodeName::from(name),
        number,
        interfaces,
        fencing: None,
    }
}

fn interface(network: &str, address: Option<&str>, standby: bool) -> Interface {
    Interface {
        network: NetworkName::from(network),
        address: address.map(|a| a.parse().unwrap()),
        device: None,
        standby,
    }
}

pub(crate) fn cluster() -> Cluster {
    let network = |name: &str, number, kind| Network {
        name: NetworkName::from(name),
        number,
        kind,
        subnets: vec![],
        device: (kind == NetworkKind::Disk).then(|| "/dev/null".to_owned()),
        heartbeat: Heartbeat::default(),
    };
    Cluster {
        name: "test".to_owned(),
        id: 1,
        port: 7400,
        nodes: vec![
            node("a", 1, vec![interface("lan", Some("127.0.0.1"), false)]),
            node(
                "b",
                2,
                vec![
                    interface("lan", Some("127.0.0.2"), false),
                    interface("lan", Some("127.0.0.22"), true),
                ],
            ),
            node("c", 3, vec![]),
        ],
        networks: vec![
            network("lan", 1, NetworkKind::Ip),
            network("hb", 2, NetworkKind::Disk),
        ],
        heartbeat: Heartbeat::default(),
        quorum: Quorum {
            witness: None,
            auto_shrink: false,
            shrink_after: halcyon_config::DEFAULT_SHRINK_AFTER,
            min_voters: 1,
            lease: None,
            watchdog: None,
        },
        events: EventDefaults::default(),
        limits: Limits::default(),
    }
}

#[test]
fn config_from_cluster_has_a_path_per_shared_network() {
    let c = DetectorConfig::from_cluster(&cluster(), 1).unwrap();
    assert_eq!(c.peers, vec![2, 3]);
    // Node c has no lan interface; the disk network lists no interfaces, so all share it.
    assert_eq!(
        c.paths,
        vec![
            PathSpec {
                node: 2,
                network: 1,
                peer_has_standby: true
            },
            PathSpec {
                node: 2,
                network: 2,
                peer_has_standby: false
            },
            PathSpec {
                node: 3,
                network: 2,
                peer_has_standby: false
            },
        ]
    );
    assert_eq!(
        DetectorConfig::from_cluster(&cluster(), 9),
        Err(DetectorError::UnknownNode(9))
    );
}

#[test]
fn adapter_judgement_needs_a_heartbeat_heard_after_the_path_went_down() {
    let mut d = detector(&[(2, LAN, false), (2, DISK, false)]);
    d.heard(ms(0), 2, LAN, 1, 1, configured(LAN));
    d.heard(ms(0), 2, DISK, 1, 2, configured(DISK));
    d.tick(ms(0));
    d.local_link(ms(100), LAN, false).unwrap();
    // A disk beat processed at the same instant proves nothing about after the failure.
    d.heard(ms(100), 2, DISK, 1, 3, configured(DISK));
    assert_eq!(
        d.tick(ms(100)),
        vec![Change::PathDown {
            node: 2,
            network: LAN,
            cause: DownCause::LocalLinkDown
        }]
    );
    d.heard(ms(101), 2, DISK, 1, 4, configured(DISK));
    assert_eq!(
        d.tick(ms(101)),
        vec![Change::AdapterDown {
            node: 2,
            network: LAN,
            action: AdapterAction::NetworkDown
        }]
    );
}

/// A driver that sleeps between ticks wakes at `next_expiry`: the moment the path that
/// was heard least recently would be judged down (a path never heard: one detection time
/// after it was first watched); a tick there judges it down, a tick just before does not.
/// Paths already down expire no more.
#[test]
fn the_next_expiry_is_the_moment_the_next_path_is_judged_down() {
    let mut d = detector(&[(2, LAN, false), (2, DISK, false), (3, LAN, false)]);
    // Never heard: 400 ms on the LAN, 600 ms on the disk, after the start.
    assert_eq!(d.next_expiry(), Some(ms(400)));
    beat(&mut d, 3, &[LAN], 0, 200, 100);
    beat(&mut d, 2, &[LAN, DISK], 300, 300, 100);
    // Node 3 last heard at 200 ms: down at 600 ms; node 2's LAN at 700, its disk at 900.
    assert_eq!(d.next_expiry(), Some(ms(600)));
    assert_eq!(d.tick(ms(599)), vec![]);
    assert_eq!(
        d.tick(ms(600)),
        vec![down(3, LAN), Change::NodeUnreachable { node: 3 }]
    );
    assert_eq!(d.next_expiry(), Some(ms(700)));
    assert_eq!(d.tick(ms(700)), vec![down(2, LAN)]);
    assert_eq!(d.next_expiry(), Some(ms(900)));
    d.tick(ms(900));
    assert_eq!(d.next_expiry(), None, "every path is down");
}
