//! Relocatable addresses in network namespaces (root): a client namespace with a bridge, and
//! hosts whose interfaces are veth pairs plugged into it.

use std::time::Duration;

use halcyon_config::{Interface, IpResource, Node, Subnet};

use crate::ip::IpAddress;
use crate::testing::{Netns, skip_unless_root};
use crate::{Health, PackageEnv, PackageResources, Resource, ResourceError, StopMode};

const CLIENT: &str = "198.18.0.100";
const SERVICE: &str = "198.18.0.50";

fn env() -> PackageEnv {
    PackageEnv {
        cluster: "c".into(),
        package: "p".into(),
        node: "n".into(),
    }
}

/// A client namespace with bridge `br0` (198.18.0.100/24), and hosts plugged into it.
struct Lab {
    client: Netns,
    hosts: Vec<Netns>,
}

impl Lab {
    fn new() -> Self {
        let client = Netns::new("c");
        client.ip("link add br0 type bridge");
        client.ip("link set br0 up");
        client.ip(&format!("addr add {CLIENT}/24 dev br0"));
        Lab {
            client,
            hosts: Vec::new(),
        }
    }

    /// Adds a host with interfaces `(device, stationary address)`, each a veth pair whose
    /// other end is a port of the client's bridge.
    fn host(&mut self, tag: &str, interfaces: &[(&str, &str)]) -> usize {
        let host = Netns::new(tag);
        // Each interface answers ARP for its own addresses only, and a route over an interface
        // without carrier is not used (what a node with a standby interface on the same subnet
        // needs).
        for setting in [
            "net.ipv4.conf.all.arp_ignore=1",
            "net.ipv4.conf.all.arp_announce=2",
            "net.ipv4.conf.all.ignore_routes_with_linkdown=1",
        ] {
            let out = host.exec(&["sysctl", "-q", "-w", setting]);
            assert!(out.status.success(), "{setting}: {out:?}");
        }
        for (device, address) in interfaces {
            let port = format!("{tag}{device}");
            host.ip(&format!(
                "link add {device} type veth peer name {port} netns {}",
                self.client.name
            ));
            self.client.ip(&format!("link set {port} master br0 up"));
            host.ip(&format!("link set {device} up"));
            host.ip(&format!("addr add {address}/24 dev {device}"));
        }
        self.hosts.push(host);
        self.hosts.len() - 1
    }
}

fn node(name: &str, interfaces: &[(Option<&str>, &str, bool)]) -> Node {
    Node {
        name: name.into(),
        number: 1,
        interfaces: interfaces
            .iter()
            .map(|(device, address, standby)| Interface {
                network: "lan".into(),
                address: Some(address.parse().unwrap()),
                device: device.map(str::to_owned),
                standby: *standby,
            })
            .collect(),
        fencing: None,
    }
}

fn resource(addresses: &[&str]) -> IpResource {
    IpResource {
        network: "lan".into(),
        addresses: addresses
            .iter()
            .map(|a| {
                let (address, prefix) = a.split_once('/').unwrap();
                Subnet {
                    address: address.parse().unwrap(),
                    prefix: prefix.parse().unwrap(),
                }
            })
            .collect(),
    }
}

/// Lets the address send its repeated announcements for `time`.
async fn announce_for(r: &mut dyn Resource, time: Duration) {
    let _ = tokio::time::timeout(time, r.exited()).await;
}

/// Waits (bounded) until the client's neighbour entry for the service address is `mac`.
fn wait_neighbour(client: &Netns, mac: &str) -> bool {
    wait_neighbour_of(client, SERVICE, mac)
}

/// Waits (bounded, 2 s) until the client's neighbour entry for `address` is `mac`.
fn wait_neighbour_of(client: &Netns, address: &str, mac: &str) -> bool {
    for _ in 0..40 {
        if client.neighbour(address).as_deref() == Some(mac) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn an_address_moves_between_hosts_and_the_client_follows() {
    if skip_unless_root("an_address_moves_between_hosts_and_the_client_follows") {
        return;
    }
    let mut lab = Lab::new();
    let a = lab.host("a", &[("eth0", "198.18.0.1")]);
    let b = lab.host("b", &[("eth0", "198.18.0.2")]);
    let (a, b) = (&lab.hosts[a], &lab.hosts[b]);
    let config = resource(&[&format!("{SERVICE}/24")]);
    // Host a finds its interface from its stationary address, host b by name.
    let mut on_a =
        IpAddress::new(config.clone(), &node("a", &[(None, "198.18.0.1", false)])).unwrap();
    let mut on_b =
        IpAddress::new(config, &node("b", &[(Some("eth0"), "198.18.0.2", false)])).unwrap();

    let mut on_a = a.block_on(|| async move {
        on_a.start(&env()).await.unwrap();
        assert_eq!(on_a.check(), Health::Running);
        assert_eq!(on_a.device(), Some("eth0"));
        assert_eq!(
            on_a.announcements_sent(),
            1,
            "the first announcement at once"
        );
        // Starting again is idempotent (no probe: the address is ours).
        on_a.start(&env()).await.unwrap();
        on_a
    });
    assert!(a.has_address("eth0", SERVICE));
    assert!(lab.client.pings(SERVICE));
    assert_eq!(lab.client.neighbour(SERVICE), Some(a.mac("eth0")));

    // While a holds the address, b refuses to add it, naming who answered.
    let a_mac = a.mac("eth0");
    let on_b = b.block_on(|| async move {
        let e = on_b.start(&env()).await.unwrap_err();
        assert!(
            matches!(&e, ResourceError::Refused { reason, .. } if reason.contains("already answers on eth0")),
            "{e}"
        );
        assert!(e.to_string().contains(&format!("from {a_mac}")), "{e}");
        on_b
    });
    assert!(!b.has_address("eth0", SERVICE));

    // a releases it; b takes it over and announces; the client follows.
    let mut on_a = a.block_on(|| async move {
        on_a.stop(&env(), StopMode::Graceful).await.unwrap();
        assert_eq!(on_a.check(), Health::Stopped);
        on_a
    });
    assert!(!a.has_address("eth0", SERVICE));
    let b_mac = b.mac("eth0");
    let mut on_b = b.block_on(|| async move {
        let mut on_b = on_b;
        on_b.start(&env()).await.unwrap();
        announce_for(&mut on_b, Duration::from_millis(1300)).await;
        assert_eq!(on_b.announcements_sent(), 6, "first burst complete");
        on_b
    });
    assert!(
        wait_neighbour(&lab.client, &b_mac),
        "client's entry: {:?}",
        lab.client.neighbour(SERVICE)
    );
    assert!(lab.client.pings(SERVICE));

    // A removal behind the driver's back is seen by check.
    b.ip(&format!("addr del {SERVICE}/24 dev eth0"));
    let health = b.block_on(|| async { on_b.check() });
    assert!(
        matches!(&health, Health::Failed(why) if why.contains("no longer on eth0")),
        "{health:?}"
    );
    b.block_on(|| async {
        on_b.stop(&env(), StopMode::Graceful).await.unwrap();
        on_a.stop(&env(), StopMode::Graceful).await.unwrap();
    });
}

#[test]
fn swap_adapter_moves_the_address_to_the_standby_interface_and_back_to_the_primary() {
    if skip_unless_root(
        "swap_adapter_moves_the_address_to_the_standby_interface_and_back_to_the_primary",
    ) {
        return;
    }
    let mut lab = Lab::new();
    let a = lab.host("a", &[("eth0", "198.18.0.1"), ("eth1", "198.18.0.11")]);
    let a = &lab.hosts[a];
    let n = node(
        "a",
        &[
            (None, "198.18.0.1", false),
            (Some("eth1"), "198.18.0.11", true),
        ],
    );
    let ip = IpAddress::new(resource(&[&format!("{SERVICE}/24")]), &n).unwrap();
    let mut package = PackageResources::new(env(), vec![Box::new(ip)]);
    let mut package = a.block_on(|| async move {
        package.start().await.unwrap();
        package
    });
    assert!(a.has_address("eth0", SERVICE));
    assert!(lab.client.pings(SERVICE));
    assert_eq!(lab.client.neighbour(SERVICE), Some(a.mac("eth0")));

    // Pull eth0's cable (its bridge port goes down: no carrier).
    lab.client.ip("link set aeth0 down");
    let eth1_mac = a.mac("eth1");
    let package = a.block_on(|| async move {
        let standby = package.resources[0]
            .as_ip_address()
            .unwrap()
            .swap_target()
            .unwrap();
        assert_eq!(standby.as_deref(), Some("eth1"));
        let moved = package.swap_adapter("lan", "eth1").await.unwrap();
        assert_eq!(moved, [format!("ip {SERVICE}/24: eth0 -> eth1")]);
        assert_eq!(package.resources[0].check(), Health::Running);
        // The package's exited() drives the repeated announcements.
        let _ = tokio::time::timeout(Duration::from_millis(1300), package.exited()).await;
        package
    });
    assert!(a.has_address("eth1", SERVICE));
    assert!(!a.has_address("eth0", SERVICE));
    assert!(
        wait_neighbour(&lab.client, &eth1_mac),
        "client's entry: {:?}",
        lab.client.neighbour(SERVICE)
    );
    assert!(
        lab.client.pings(SERVICE),
        "reached on the standby interface"
    );
    // The primary's cable is back: while the address is on the standby, a swap moves it
    // back to the primary (the standby carrying it has failed).
    lab.client.ip("link set aeth0 up");
    let package = a.block_on(|| async move {
        let mut package = package;
        let mut target = None;
        for _ in 0..100 {
            target = package.resources[0]
                .as_ip_address()
                .unwrap()
                .swap_target()
                .unwrap();
            if target.as_deref() == Some("eth0") {
                break;
            }
            // The carrier comes back a moment after the link is set up.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            target.as_deref(),
            Some("eth0"),
            "the primary, once it has returned"
        );
        let moved = package.swap_adapter("lan", "eth0").await.unwrap();
        assert_eq!(moved, [format!("ip {SERVICE}/24: eth1 -> eth0")]);
        package
    });
    assert!(a.has_address("eth0", SERVICE));
    assert!(!a.has_address("eth1", SERVICE));
    assert!(lab.client.pings(SERVICE), "reached on the primary again");
    let mut package = package;
    a.block_on(|| async move {
        package.stop(StopMode::Graceful).await.unwrap();
    });
    assert!(!a.has_address("eth0", SERVICE));
}

#[test]
fn a_cross_subnet_address_is_chosen_by_the_nodes_subnet() {
    if skip_unless_root("a_cross_subnet_address_is_chosen_by_the_nodes_subnet") {
        return;
    }
    let mut lab = Lab::new();
    let a = lab.host("a", &[("eth0", "198.18.0.1")]);
    let a = &lab.hosts[a];
    let config = resource(&["198.18.2.50/24", "198.18.0.60/24", "198.18.4.50/24"]);
    let mut ip = IpAddress::new(config, &node("a", &[(None, "198.18.0.1", false)])).unwrap();
    assert_eq!(ip.address().to_string(), "198.18.0.60/24");
    a.block_on(|| async {
        ip.start(&env()).await.unwrap();
    });
    assert!(a.has_address("eth0", "198.18.0.60"));
    assert!(!a.has_address("eth0", "198.18.2.50"));
    assert!(lab.client.pings("198.18.0.60"));
    a.block_on(|| async {
        ip.stop(&env(), StopMode::Graceful).await.unwrap();
    });
    assert!(!a.has_address("eth0", "198.18.0.60"));
}

#[test]
fn a_node_without_an_interface_on_the_network_is_a_configuration_error() {
    let n = Node {
        name: "a".into(),
        number: 1,
        interfaces: vec![],
        fencing: None,
    };
    let e = IpAddress::new(resource(&["198.18.0.50/24"]), &n)
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "ip 198.18.0.50/24 on node a: the node has no interface on network lan"
    );
}

/// IPv6 addresses of the benchmarking range (RFC 5180), only inside our namespaces.
const CLIENT6: &str = "2001:2:0:1::100";
const SERVICE6: &str = "2001:2:0:1::50";

#[test]
fn an_ipv6_address_is_checked_by_dad_announced_and_moved_between_hosts() {
    if skip_unless_root("an_ipv6_address_is_checked_by_dad_announced_and_moved_between_hosts") {
        return;
    }
    let mut lab = Lab::new();
    // Stationary addresses without duplicate address detection (setup, not under test).
    lab.client
        .ip(&format!("addr add {CLIENT6}/64 dev br0 nodad"));
    let a = lab.host("a", &[("eth0", "198.18.0.1")]);
    let b = lab.host("b", &[("eth0", "198.18.0.2")]);
    let (a, b) = (&lab.hosts[a], &lab.hosts[b]);
    a.ip("addr add 2001:2:0:1::1/64 dev eth0 nodad");
    b.ip("addr add 2001:2:0:1::2/64 dev eth0 nodad");
    // The kernel itself sends no neighbour advertisement when an address is added
    // (ndisc_notify is off): a client that follows the address follows the driver's.
    for host in [a, b] {
        let out = host.exec(&["sysctl", "-n", "net.ipv6.conf.eth0.ndisc_notify"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    }
    let config = resource(&[&format!("{SERVICE6}/64")]);
    let v6_node = |name: &str, own: &str| Node {
        name: name.into(),
        number: 1,
        interfaces: vec![Interface {
            network: "lan".into(),
            address: Some(own.parse().unwrap()),
            device: Some("eth0".into()),
            standby: false,
        }],
        fencing: None,
    };
    let on_a = IpAddress::new(config.clone(), &v6_node("a", "2001:2:0:1::1")).unwrap();
    let on_b = IpAddress::new(config, &v6_node("b", "2001:2:0:1::2")).unwrap();
    assert_eq!(on_a.address().to_string(), format!("{SERVICE6}/64"));

    // a adds it: duplicate address detection passes (nobody has it), then it is announced.
    let mut on_a = a.block_on(|| async move {
        let mut on_a = on_a;
        on_a.start(&env()).await.unwrap();
        assert_eq!(on_a.check(), Health::Running);
        assert_eq!(
            on_a.announcements_sent(),
            1,
            "the first advertisement at once"
        );
        on_a
    });
    assert!(a.has_address("eth0", SERVICE6));
    let flags = String::from_utf8_lossy(&a.ip("-6 addr show dev eth0").stdout).into_owned();
    let line = flags.lines().find(|l| l.contains(SERVICE6)).unwrap();
    assert!(
        !line.contains("tentative") && !line.contains("dadfailed"),
        "{line}"
    );
    assert!(lab.client.pings(SERVICE6));
    assert_eq!(lab.client.neighbour(SERVICE6), Some(a.mac("eth0")));

    // While a answers for it, b's duplicate address detection fails: refused, not kept.
    let on_b = b.block_on(|| async move {
        let mut on_b = on_b;
        let e = on_b.start(&env()).await.unwrap_err();
        assert!(
            matches!(&e, ResourceError::Refused { reason, .. }
                if reason.contains("duplicate address detection failed on eth0")),
            "{e}"
        );
        assert_eq!(on_b.check(), Health::Stopped);
        on_b
    });
    assert!(
        !b.has_address("eth0", SERVICE6),
        "a refused address is removed"
    );
    assert!(lab.client.pings(SERVICE6), "a still serves it");
    assert_eq!(lab.client.neighbour(SERVICE6), Some(a.mac("eth0")));

    // a releases it; b takes it over and advertises it: the client's entry follows at once
    // (without the advertisement it would keep a's hardware address until its entry expires).
    a.block_on(|| async {
        on_a.stop(&env(), StopMode::Graceful).await.unwrap();
        assert_eq!(on_a.check(), Health::Stopped);
    });
    assert!(!a.has_address("eth0", SERVICE6));
    let b_mac = b.mac("eth0");
    let client = &lab.client;
    let mut on_b = b.block_on(|| async move {
        let mut on_b = on_b;
        on_b.start(&env()).await.unwrap();
        // The repeated advertisements are sent while exited() is awaited.
        announce_for(&mut on_b, Duration::from_millis(300)).await;
        assert!(
            on_b.announcements_sent() >= 2,
            "{}",
            on_b.announcements_sent()
        );
        on_b
    });
    assert!(
        wait_neighbour_of(client, SERVICE6, &b_mac),
        "client's entry: {:?}, b is {b_mac}",
        client.neighbour(SERVICE6)
    );
    assert!(lab.client.pings(SERVICE6), "reached on b");
    b.block_on(|| async {
        on_b.stop(&env(), StopMode::Graceful).await.unwrap();
    });
    assert!(!b.has_address("eth0", SERVICE6));
    assert!(!lab.client.pings(SERVICE6), "released everywhere");
}

#[test]
fn an_interface_is_usable_when_up_with_a_carrier_found_by_name_or_address() {
    let interface = |device: Option<&str>, address: Option<&str>| Interface {
        network: "lan".into(),
        address: address.map(|a| a.parse().unwrap()),
        device: device.map(str::to_owned),
        standby: true,
    };
    assert!(crate::ip::interface_usable(&interface(Some("lo"), None)));
    assert!(crate::ip::interface_usable(&interface(
        None,
        Some("127.0.0.1")
    )));
    assert!(!crate::ip::interface_usable(&interface(
        Some("halcyon-none0"),
        None
    )));
    assert!(!crate::ip::interface_usable(&interface(
        None,
        Some("198.18.255.254")
    )));
    assert!(!crate::ip::interface_usable(&interface(None, None)));
}
