//! Every cluster directory the builder writes passes `halcyon_config::load`, and the loaded
//! configuration says what the builder was told.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use halcyon_testkit::config::{
    Dependency, Monitor, MonitorAction, Package, Quorum, Resource, Witness, loopback_address,
};
use halcyon_testkit::{ClusterConfig, Node};

fn load(config: &ClusterConfig) -> halcyon_config::Config {
    let dir = tempfile::tempdir().unwrap();
    config.write(dir.path()).unwrap();
    match halcyon_config::load(&[dir.path().to_owned()]) {
        Ok((loaded, _)) => loaded,
        Err(diagnostics) => panic!(
            "{diagnostics:?}\n--- cluster.toml\n{}\n--- packages\n{}",
            config.cluster_toml(),
            config
                .packages
                .iter()
                .map(Package::to_toml)
                .collect::<Vec<_>>()
                .join("\n---\n")
        ),
    }
}

#[test]
fn a_loopback_cluster_with_two_networks_a_disk_a_witness_and_every_package_setting_loads() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ClusterConfig::loopback("t", 21_000, 3, "n", "lan1", "127.0.0.0/24")
        .heartbeat(Duration::from_millis(100), 4)
        .ip_network("lan2", &["127.0.1.0/24"])
        .disk_network("disk", &dir.path().join("heartbeat.disk"));
    for (i, node) in config.nodes.iter_mut().enumerate() {
        let i = u8::try_from(i + 1).unwrap();
        node.interfaces.push(halcyon_testkit::config::Interface {
            network: "lan2".into(),
            address: Ipv4Addr::new(127, 0, 1, i),
            device: None,
            standby: false,
        });
    }
    config.quorum = Quorum {
        lease: Some(Duration::from_millis(700)),
        min_voters: Some(2),
        auto_shrink: None,
        watchdog: Some(PathBuf::from("/tmp/watchdog \"quoted\"")),
        witness: Some(Witness {
            name: "w".into(),
            number: 9,
            address: loopback_address(9),
        }),
    };
    let mut web = Package::failover("web", &["n1", "n2", "n3"]).resource(Resource::Service {
        name: "srv".into(),
        command: r#"while :; do echo "alive $HALCYON_NODE" >> '/tmp/a b'; sleep 0.01; done"#.into(),
        restart: Some(2),
        halt_timeout: Some(Duration::from_secs(1)),
        node_fail_fast: true,
    });
    web.failback_policy = Some("automatic".into());
    web.failover_policy = Some("configured_node".into());
    web.priority = Some(10);
    web.networks = vec!["lan2".into()];
    web.monitors = vec![
        Monitor {
            name: "load".into(),
            sample: "cat /tmp/value.$HALCYON_NODE".into(),
            interval: Duration::from_millis(200),
            predicate: "X>90".into(),
            rearm: Some("X<80".into()),
            action: MonitorAction::Event("UE_WEB_LOAD".into()),
            stabilization: Duration::ZERO,
            restart: 0,
            restart_window: None,
        },
        Monitor {
            name: "full".into(),
            sample: "echo 1".into(),
            interval: Duration::from_secs(1),
            predicate: "X>0".into(),
            rearm: None,
            action: MonitorAction::FailPackage,
            stabilization: Duration::ZERO,
            restart: 0,
            restart_window: None,
        },
    ];
    let mut mark = Package::failover("mark", &["n2", "n1"]).resource(Resource::Script {
        name: "marker".into(),
        run: "touch /tmp/m".into(),
        halt: "rm -f /tmp/m".into(),
    });
    mark.dependencies = vec![Dependency {
        package: "web".into(),
        location: Some("same_node".into()),
        condition: Some("up".into()),
    }];
    let agent = Package::multi_node("agent").resource(Resource::service("a", "sleep 1000"));
    config = config.package(web).package(mark).package(agent).file(
        "rules.toml",
        "[[event]]\nname = \"UE_WEB_LOAD\"\nprogram = 'event \"true\" 0'\n",
    );
    let loaded = load(&config);
    assert_eq!(loaded.cluster.nodes.len(), 3);
    assert_eq!(loaded.cluster.networks.len(), 3);
    assert_eq!(loaded.packages.len(), 3);
    let text = config.cluster_toml();
    assert!(text.contains("[quorum.witness]"), "{text}");
    assert!(
        text.contains("watchdog = '/tmp/watchdog \"quoted\"'"),
        "{text}"
    );
}

#[test]
fn a_lab_like_cluster_with_devices_standby_interfaces_and_relocatable_addresses_loads() {
    let mut config = ClusterConfig::new("lab", 1, 7400)
        .heartbeat(Duration::from_millis(100), 4)
        .ip_network("net1", &["198.18.1.0/24"])
        .ip_network("net2", &["198.18.2.0/24"]);
    for host in 1..=3u8 {
        config = config.node(
            Node::new(format!("h{host}"), u32::from(host))
                .interface_on("net1", Ipv4Addr::new(198, 18, 1, host), "eth1")
                .interface_on("net2", Ipv4Addr::new(198, 18, 2, host), "eth2")
                .standby_interface("net1", Ipv4Addr::new(198, 18, 1, 100 + host), "eth1s"),
        );
    }
    let mut web = Package::failover("web", &["h1", "h2", "h3"])
        .resource(Resource::Ip {
            network: "net1".into(),
            address: Ipv4Addr::new(198, 18, 1, 200),
            prefix: 24,
        })
        .resource(Resource::Service {
            name: "http".into(),
            command:
                "exec '/opt/halcyon' demo-http --bind 198.18.1.200:8080 --name \"$HALCYON_NODE\""
                    .into(),
            restart: Some(3),
            halt_timeout: Some(Duration::from_secs(2)),
            node_fail_fast: false,
        });
    web.failback_policy = Some("manual".into());
    config = config.package(web);
    let loaded = load(&config);
    assert_eq!(loaded.cluster.nodes[2].interfaces.len(), 3);
    assert!(loaded.cluster.nodes[0].interfaces[2].standby);
}

#[test]
fn a_cluster_without_heartbeat_or_quorum_sections_loads_with_the_defaults() {
    let config = ClusterConfig::loopback("bench", 21_000, 16, "node", "lo", "127.0.0.0/8").package(
        Package::failover("hello", &["node1", "node2"]).resource(Resource::service(
            "http",
            "exec halcyon demo-http --bind 127.0.0.${HALCYON_NODE#node}:21003",
        )),
    );
    let text = config.cluster_toml();
    assert!(
        !text.contains("[heartbeat]") && !text.contains("[quorum]"),
        "{text}"
    );
    let loaded = load(&config);
    assert_eq!(loaded.cluster.nodes.len(), 16);
    assert_eq!(loaded.cluster.nodes[15].name.to_string(), "node16");
}

#[test]
fn a_heartbeat_profile_is_written_and_loads_with_its_settings_and_the_overrides() {
    let fast = ClusterConfig::loopback("t", 21_000, 3, "n", "lan1", "127.0.0.0/24")
        .heartbeat_profile("fast");
    let text = fast.cluster_toml();
    assert!(text.contains("[heartbeat]\nprofile = \"fast\"\n"), "{text}");
    let loaded = load(&fast);
    assert_eq!(
        loaded.cluster.heartbeat,
        halcyon_config::HeartbeatProfile::Fast.heartbeat()
    );
    let overridden = fast.heartbeat(Duration::from_millis(50), 5);
    let loaded = load(&overridden);
    assert_eq!(loaded.cluster.heartbeat.interval, Duration::from_millis(50));
    assert_eq!(loaded.cluster.heartbeat.sensitivity, 5);
}
