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
