//! Network and adapter events: one network of one node cut (heartbeats dropped by the
//! test-fault hook), the node still heard on another network and on the disk network.

mod common;

use std::time::Duration;

use common::*;
use halcyon_testkit::{Package, Resource};

fn cut_lan2_of_n2(c: &Cluster, cut: bool) {
    for i in 1..=3 {
        let drop_from: Vec<&str> = match (cut, i) {
            (false, _) => vec![],
            (true, 2) => vec!["n1", "n3"],
            (true, _) => vec!["n2"],
        };
        let body = serde_json::json!({ "network": "lan2", "drop_from": drop_from }).to_string();
        let (code, answer) = c.request(i, "POST", "/v1/debug/heartbeats", Some(&body));
        assert_eq!(code, 200, "n{i}: {answer}");
    }
}

fn pgid(c: &Cluster, i: usize, package: &str) -> i32 {
    std::fs::read_to_string(c.state_dir(i).join(format!("run/{package}.0.pgid")))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn losing_one_network_on_one_node_is_network_down_not_node_down() {
    let mut spec = Spec::new();
    spec.lan2 = true;
    spec.disk = true;
    let package = |name: &str, networks: &[&str]| {
        let mut p = Package::failover(name, &["n2", "n1", "n3"]).resource(Resource::Service {
            name: "s".into(),
            command: "sleep 1000".into(),
            restart: None,
            halt_timeout: Some(Duration::from_secs(1)),
            node_fail_fast: false,
        });
        p.networks = networks.iter().map(|&n| n.to_owned()).collect();
        p
    };
    spec.packages.push(package("needs2", &["lan2"]));
    spec.packages.push(package("plain", &[]));
    let c = Cluster::start_with(spec);
    c.wait_all_members(1, FORM_TIMEOUT);
    c.wait_package_on(1, "needs2", "n2", FORM_TIMEOUT);
    c.wait_package_on(1, "plain", "n2", FORM_TIMEOUT);
    c.wait_for(1, "every path up", FORM_TIMEOUT, |v| {
        v["nodes"].as_array().unwrap().iter().all(|n| {
            n["networks"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["path"] == "up" || p["path"] == "local")
        })
    });
    let plain_group = pgid(&c, 2, "plain");

    cut_lan2_of_n2(&c, true);
    let took = c.wait_package_on(3, "needs2", "n1", FAILOVER_TIMEOUT);
    eprintln!("lan2 of n2 cut: needs2 on n1 after {took:?}");
    let events = c.events(3);
    assert!(
        events.iter().any(|e| e == "network_down n2 lan2"),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| e.starts_with("node_down")),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| e.starts_with("network_down n1") || e.starts_with("network_down n3")),
        "{events:?}"
    );
    let v = c.status(1).unwrap();
    assert_eq!(package_of(&v, "plain")["nodes"][0], "n2", "{v:#}");
    assert_eq!(pgid(&c, 2, "plain"), plain_group, "plain was restarted");
    assert!(halcyon_resources::group_alive(plain_group));
    let n2 = node_of(&v, "n2");
    assert_eq!(n2["member"], true);
    let lan2 = n2["networks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["network"] == "lan2")
        .unwrap();
    assert_eq!(lan2["down"], true, "{n2:#}");
    let text = status_text(&c, 1);
    assert!(text.contains("lan2:down(DOWN)"), "{text}");

    // Healed: network_up, and nothing moves back by itself (needs2 fails back manually).
    cut_lan2_of_n2(&c, false);
    c.wait_for(3, "network_up n2 lan2", FAILOVER_TIMEOUT, |v| {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "network_up n2 lan2")
            && v["execution"].is_null()
    });
    std::thread::sleep(Duration::from_millis(500));
    let v = c.status(3).unwrap();
    assert_eq!(package_of(&v, "plain")["nodes"][0], "n2", "{v:#}");
    assert!(
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["member"] == true)
    );
    assert_eq!(pgid(&c, 2, "plain"), plain_group);
}
