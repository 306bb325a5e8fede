//! Shared helpers for the runner tests: a small cluster, started runners, bounded waits.
#![allow(dead_code)]

use std::net::UdpSocket;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use halcyon_config::{
    Cluster, EventDefaults, Heartbeat, Interface, Limits, Network, NetworkKind, NetworkName, Node,
    NodeName, Quorum,
};
use halcyon_membership::{
    Change, ChangeBatch, DetectorConfig, Plain, Runner, RunnerSettings, links_from_cluster,
};

pub const HEARTBEAT: Heartbeat = Heartbeat {
    interval: Duration::from_millis(50),
    sensitivity: 4,
};

/// A free UDP port on 127.0.0.1 (the other loopback addresses are free on it too, in practice).
pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn node(number: u32, interfaces: Vec<Interface>) -> Node {
    Node {
        name: NodeName(format!("node{number}")),
        number,
        interfaces,
        fencing: None,
    }
}

pub fn lan_interface(address: &str) -> Interface {
    Interface {
        network: NetworkName::from("lan"),
        address: Some(address.parse().unwrap()),
        device: None,
        standby: false,
    }
}

pub fn network(name: &str, number: u32, kind: NetworkKind, device: Option<String>) -> Network {
    Network {
        name: NetworkName::from(name),
        number,
        kind,
        subnets: vec![],
        device,
        heartbeat: HEARTBEAT,
    }
}

pub fn cluster(port: u16, nodes: Vec<Node>, networks: Vec<Network>) -> Cluster {
    Cluster {
        name: "test".to_owned(),
        id: 0xC0FFEE,
        port,
        nodes,
        networks,
        heartbeat: HEARTBEAT,
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

/// A runner for one node, and what it publishes. Dropping it stops the runner (also when a
/// test fails half-way).
pub struct Started {
    pub node: u32,
    pub runner: Runner,
    pub changes: Receiver<ChangeBatch>,
}

pub fn start(cluster: &Cluster, node: u32, settings: RunnerSettings) -> Started {
    let config = DetectorConfig::from_cluster(cluster, node).unwrap();
    let links = links_from_cluster(cluster, node).unwrap();
    let (sender, changes) = mpsc::sync_channel(256);
    let runner = Runner::start(settings, config, links, Box::new(Plain), sender).unwrap();
    Started {
        node,
        runner,
        changes,
    }
}

/// Test settings: normal priority, no memory locking.
pub fn plain_settings(cluster: &Cluster, incarnation: u64) -> RunnerSettings {
    RunnerSettings {
        realtime_priority: None,
        lock_memory: false,
        ..RunnerSettings::new(cluster.id, incarnation)
    }
}

/// Polls `condition` every 5 ms until it holds or `limit` passes; returns the time it took.
pub fn wait_for(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

/// Every change published so far (non-blocking).
pub fn drain(changes: &Receiver<ChangeBatch>) -> Vec<Change> {
    changes.try_iter().flat_map(|b| b.changes).collect()
}

/// Applies `heartbeat` to `network` on each runner in turn, `stagger` apart (nodes applying
/// the same `halcyon apply` entry at different times), then waits `hold`; returns every
/// change each runner published meanwhile (in the runners' order).
pub fn apply_one_after_another(
    runners: &[Started],
    network: u32,
    heartbeat: Heartbeat,
    stagger: Duration,
    hold: Duration,
) -> Vec<Vec<Change>> {
    let mut seen = vec![Vec::new(); runners.len()];
    let collect_for = |how_long: Duration, seen: &mut Vec<Vec<Change>>| {
        let until = Instant::now() + how_long;
        while Instant::now() < until {
            for (s, seen) in runners.iter().zip(seen.iter_mut()) {
                seen.extend(drain(&s.changes));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    for (i, s) in runners.iter().enumerate() {
        if i > 0 {
            collect_for(stagger, &mut seen);
        }
        s.runner.set_heartbeat(network, heartbeat).unwrap();
    }
    collect_for(hold, &mut seen);
    for (s, seen) in runners.iter().zip(seen.iter_mut()) {
        seen.extend(drain(&s.changes));
    }
    seen
}

/// Asserts that no runner judged a path, an adapter or a node down in `seen` (what
/// [`apply_one_after_another`] returned).
pub fn assert_no_failure(runners: &[Started], seen: &[Vec<Change>], what: &str) {
    for (s, changes) in runners.iter().zip(seen) {
        let failures: Vec<&Change> = changes
            .iter()
            .filter(|c| {
                matches!(
                    c,
                    Change::PathDown { .. }
                        | Change::AdapterDown { .. }
                        | Change::NodeUnreachable { .. }
                )
            })
            .collect();
        assert!(
            failures.is_empty(),
            "{what}: false failure on node {}: {failures:?}",
            s.node
        );
    }
}

/// Waits until every runner judges every path of `network` up by `heartbeat`'s interval, and
/// the network by `heartbeat`.
pub fn wait_judged_by(runners: &[Started], network: u32, heartbeat: Heartbeat, limit: Duration) {
    wait_for(
        limit,
        &format!("every path judged by {heartbeat:?}"),
        || {
            runners.iter().all(|s| {
                let status = s.runner.status().detector;
                let on_network = status.paths.iter().filter(|p| p.network == network);
                status
                    .networks
                    .iter()
                    .any(|n| n.network == network && n.heartbeat == heartbeat)
                    && on_network.clone().count() == runners.len() - 1
                    && on_network.clone().all(|p| {
                        p.state == halcyon_membership::detector::PathState::Up
                            && p.interval == heartbeat.interval
                    })
            })
        },
    );
}

/// The heartbeats each runner sent during `how_long` from now, and the changes it published
/// meanwhile.
pub fn sent_during(runners: &[Started], how_long: Duration) -> (Vec<u64>, Vec<Vec<Change>>) {
    let before: Vec<u64> = runners
        .iter()
        .map(|s| s.runner.status().counters.sent)
        .collect();
    std::thread::sleep(how_long);
    let sent = runners
        .iter()
        .zip(before)
        .map(|(s, before)| s.runner.status().counters.sent - before)
        .collect();
    (sent, runners.iter().map(|s| drain(&s.changes)).collect())
}
