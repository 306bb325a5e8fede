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
