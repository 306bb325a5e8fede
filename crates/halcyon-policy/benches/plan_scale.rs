//! The policy engine at scale (SPEC 12: 256 nodes x 10,000 packages, one plan in
//! <= 50 ms). Prints the median and worst time per plan for a node failure and a
//! node join, and for placing every package at cluster start.
//!
//! Run: `cargo bench -p halcyon-policy --bench plan_scale`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use halcyon_config::*;
use halcyon_policy::{ClusterState, Departure, Engine, Event};

const NODES: usize = 256;
const PACKAGES: usize = 10_000;
const RUNS: usize = 21;

fn config() -> Config {
    let nodes: Vec<Node> = (0..NODES)
        .map(|i| Node {
            name: NodeName(format!("node{}", i + 1)),
            number: i as u32 + 1,
            interfaces: vec![Interface {
                network: NetworkName::from("lan1"),
                address: Some(
                    format!("198.18.{}.{}", i / 250, i % 250 + 1)
                        .parse()
                        .unwrap(),
                ),
                device: None,
                standby: false,
            }],
            fencing: None,
        })
        .collect();
    let mut packages = BTreeMap::new();
    for p in 0..PACKAGES {
        // Most packages have an 8-node list starting at a rotating node; one in
        // ten may run anywhere and goes to the least busy node; one in twenty
        // depends on the package before it on the same node.
        let everywhere = p % 10 == 0;
        let list: Vec<NodeName> = if everywhere {
            nodes.iter().map(|n| n.name.clone()).collect()
        } else {
            (0..8)
                .map(|k| nodes[(p + k * 31) % NODES].name.clone())
                .collect()
        };
        let dependencies = if p % 20 == 1 {
            vec![Dependency {
                package: PackageName(format!("pkg{:05}", p - 1)),
                location: DependencyLocation::AnyNode,
            }]
        } else {
            Vec::new()
        };
        let name = PackageName(format!("pkg{p:05}"));
        packages.insert(
            name.clone(),
            Package {
                name,
                package_type: PackageType::Failover,
                nodes: list,
                auto_run: true,
                failover_policy: if everywhere {
                    FailoverPolicy::MinPackageNode
                } else {
                    FailoverPolicy::ConfiguredNode
                },
                failback_policy: if p % 3 == 0 {
                    FailbackPolicy::Automatic
                } else {
                    FailbackPolicy::Manual
                },
                fallback_timer: None,
                priority: Some((p % 7) as u32 + 1),
                dependencies,
                networks: vec![NetworkName::from("lan1")],
                local_lan_failover_allowed: true,
                requires: Default::default(),
                failure_expiry: Some(DEFAULT_FAILURE_EXPIRY),
                run_timeout: DEFAULT_SCRIPT_TIMEOUT,
                halt_timeout: DEFAULT_SCRIPT_TIMEOUT,
                resources: Vec::new(),
                monitors: Vec::new(),
            },
        );
    }
    Config {
        cluster: Cluster {
            name: "scale".into(),
            id: 1,
            port: DEFAULT_PORT,
            nodes,
            networks: vec![Network {
                name: NetworkName::from("lan1"),
                number: 1,
                kind: NetworkKind::Ip,
                subnets: vec![Subnet {
                    address: "198.18.0.0".parse().unwrap(),
                    prefix: 15,
                }],
                device: None,
                heartbeat: Heartbeat::default(),
            }],
            heartbeat: Heartbeat::default(),
            quorum: Quorum {
                witness: None,
                auto_shrink: false,
                shrink_after: halcyon_config::DEFAULT_SHRINK_AFTER,
                min_voters: 0,
                lease: None,
                watchdog: None,
            },
            events: EventDefaults::default(),
            limits: Limits::default(),
        },
        packages,
    }
}

fn measure(label: &str, mut f: impl FnMut() -> usize) {
    let mut times: Vec<Duration> = Vec::with_capacity(RUNS);
    let mut actions = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        actions = f();
        times.push(start.elapsed());
    }
    times.sort();
    println!(
        "{label:<44} median {:>8.2} ms   worst {:>8.2} ms   ({actions} actions per plan, {RUNS} runs)",
        times[RUNS / 2].as_secs_f64() * 1e3,
        times[RUNS - 1].as_secs_f64() * 1e3
    );
}

fn main() {
    let config = config();
    let now: jiff::Timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
    println!("policy engine: {NODES} nodes x {PACKAGES} packages (target: one plan <= 50 ms)");
    let build = Instant::now();
    let engine = Engine::new(&config);
    println!(
        "{:<44} {:>8.2} ms (once per configuration)",
        "engine set-up",
        build.elapsed().as_secs_f64() * 1e3
    );

    // The nodes joined a minute before the cluster started its packages; one
    // fails a minute later and rejoins a minute after that.
    let joined = now - jiff::SignedDuration::from_secs(60);
    let failed_at = now + jiff::SignedDuration::from_secs(60);
    let rejoined_at = now + jiff::SignedDuration::from_secs(120);
    let all_members = ClusterState {
        members: config
            .cluster
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect(),
        available_since: config
            .cluster
            .nodes
            .iter()
            .map(|n| (n.name.clone(), joined))
            .collect(),
        ..ClusterState::default()
    };
    measure("cluster start (place every package)", || {
        engine
            .plan(&all_members, &Event::ClusterStart, now)
            .unwrap()
            .actions()
            .count()
    });
    let running = engine
        .plan(&all_members, &Event::ClusterStart, now)
        .unwrap()
        .state;

    // The node running the most packages fails.
    let mut per_node: BTreeMap<&NodeName, usize> = BTreeMap::new();
    for p in running.packages.values() {
        for n in &p.nodes {
            *per_node.entry(n).or_default() += 1;
        }
    }
    let (busiest, count) = per_node
        .iter()
        .max_by_key(|(_, c)| **c)
        .map(|(n, c)| ((*n).clone(), *c))
        .unwrap();
    let failure = Event::NodeDown {
        node: busiest.clone(),
        how: Departure::Failure,
    };
    measure(
        &format!("node failure ({busiest}, {count} packages)"),
        || {
            engine
                .plan(&running, &failure, failed_at)
                .unwrap()
                .actions()
                .count()
        },
    );

    // It rejoins: automatic-failback packages return.
    let after_failure = engine.plan(&running, &failure, failed_at).unwrap().state;
    let join = Event::NodeUp {
        node: busiest.clone(),
    };
    measure(&format!("node join ({busiest} rejoins)"), || {
        engine
            .plan(&after_failure, &join, rejoined_at)
            .unwrap()
            .actions()
            .count()
    });
}
