//! Cluster-wide operations: `cluster halt` and `cluster start`.

mod common;

use std::time::Duration;

use common::*;
use halcyon_testkit::{Package, Resource};

/// The standard cluster with `agent`, a multi-node package (a sleeping service) on every node.
fn spec_with_an_agent_everywhere() -> Spec {
    let mut spec = Spec::new();
    spec.packages
        .push(Package::multi_node("agent").resource(Resource::Service {
            name: "a".into(),
            command: "sleep 1000".into(),
            restart: None,
            halt_timeout: Some(Duration::from_secs(1)),
            node_fail_fast: false,
        }));
    spec
}

#[test]
fn cluster_halt_stops_every_package_and_cluster_start_brings_them_back() {
    // A multi-node package too: it runs on every node and must stop everywhere.
    let spec = spec_with_an_agent_everywhere();
    let mut c = Cluster::start_with(spec);
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    c.wait_all_members(1, FORM_TIMEOUT);
    c.wait_for(1, "agent on every node", FORM_TIMEOUT, |v| {
        package_of(v, "agent")["nodes"].as_array().unwrap().len() == 3
    });

    let (code, out) = cli(&c, 2, &["cluster", "halt"]);
    assert_eq!(code, 0, "{out}");
    for i in 1..=3 {
        c.wait_for(i, "everything halted", FAILOVER_TIMEOUT, |v| {
            v["halted"] == true
                && v["execution"].is_null()
                && package_of(v, "web")["nodes"]
                    .as_array()
                    .is_none_or(|n| n.is_empty())
                && package_of(v, "agent")["nodes"]
                    .as_array()
                    .is_none_or(|n| n.is_empty())
        });
    }
    // The services are gone, the daemons still run and stay idle (no node joins by itself).
    std::thread::sleep(Duration::from_millis(1500));
    for i in 1..=3 {
        assert!(c.service_groups(i).is_empty(), "n{i} still runs a service");
        assert!(c.is_running(i));
        let v = c.status(i).unwrap();
        assert!(
            v["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|n| n["member"] == false),
            "{v:#}"
        );
        assert!(v["pending"].as_array().unwrap().is_empty(), "{v:#}");
    }
    let text = status_text(&c, 3);
    assert!(text.contains("HALTED"), "{text}");
    let lines = c.activity().len();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.activity().len(), lines, "web's service still writes");
    // A second halt is refused, with the way out named.
    let (code, out) = cli(&c, 2, &["cluster", "halt"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("refused: the cluster is already halted"),
        "{out}"
    );

    let (code, out) = cli(&c, 2, &["cluster", "start"]);
    assert_eq!(code, 0, "{out}");
    c.wait_web_on(3, "n1", FORM_TIMEOUT);
    c.wait_all_members(3, FORM_TIMEOUT);
    c.wait_for(3, "agent on every node again", FORM_TIMEOUT, |v| {
        package_of(v, "agent")["nodes"].as_array().unwrap().len() == 3 && v["halted"] == false
    });
    c.wait_activity_from("n1", Duration::from_secs(5));
    let events = c.events(1);
    let halt = events
        .iter()
        .position(|e| e == "cluster_halt")
        .expect("cluster_halt logged");
    let start = events
        .iter()
        .rposition(|e| e == "cluster_start")
        .expect("cluster_start logged");
    assert!(halt < start, "{events:?}");
    // Both are recorded as the administrator's: the start after the halt too (the
    // coordinator enqueues it once the nodes joined, as who asked).
    let (code, v) = c.request(1, "GET", "/v1/events", None);
    assert_eq!(code, 200, "{v}");
    for kind in ["cluster_halt", "cluster_start"] {
        let record = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|r| r["event"].as_str().unwrap().starts_with(kind))
            .unwrap();
        let by = record["by"].as_str().unwrap();
        assert!(by.starts_with("token admin from 127.0.0.1:"), "{record:#}");
    }
    // Started again while running: cluster_start changes nothing and is accepted.
    let (code, out) = cli(&c, 2, &["cluster", "start"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = cli(&c, 2, &["cluster", "restart"]);
    assert_eq!(code, 2, "{out}");
}

/// Issue 15, finding 9: an operation asked again with its request id (as the CLI does when
/// the answer was lost with a dying leader) is answered with the outcome of the event it
/// already enqueued, from any node, and the event runs once.
#[test]
fn an_operation_asked_again_with_its_request_id_gets_its_outcome_and_runs_once() {
    let c = Cluster::start_with(Spec::new());
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    c.wait_all_members(1, FORM_TIMEOUT);
    let (_, k) = c.coordinator(1);
    let other = if k == 3 { 2 } else { 3 };
    let path = "/v1/packages/web/move?request=move-web-1";
    let body = Some(r#"{"node":"n2"}"#);
    // Through a node that forwards it, then straight to the coordinator.
    let (code, first) = c.request(other, "POST", path, body);
    assert_eq!(code, 200, "{first}");
    c.wait_web_on(1, "n2", FAILOVER_TIMEOUT);
    let (code, again) = c.request(k, "POST", path, body);
    assert_eq!(code, 200, "{again}");
    assert_eq!(again, first, "asked again, the same event's outcome");
    let moves = c
        .events(1)
        .into_iter()
        .filter(|e| e == "package_move web n2")
        .count();
    assert_eq!(moves, 1, "{:?}", c.events(1));

    let (code, bad) = c.request(
        other,
        "POST",
        "/v1/packages/web/move?request=no%20spaces",
        body,
    );
    assert_eq!(code, 400, "{bad}");
    assert!(
        bad["error"].as_str().unwrap().contains("bad request id"),
        "{bad}"
    );
}

/// Issue 16, item 9: `node start` of a node whose daemon is not running was accepted and
/// recorded a node_up and then a node_down. It is refused, saying why and what to do.
#[test]
fn node_start_of_a_node_whose_daemon_is_down_is_refused_with_the_reason() {
    let mut c = Cluster::start_with(Spec::new());
    c.wait_all_members(1, FORM_TIMEOUT);
    c.stop(3);
    c.wait_for(1, "n3 down", FAILOVER_TIMEOUT, |v| {
        node_of(v, "n3")["member"] == false && v["execution"].is_null()
    });
    let before = c.events(1).len();
    let (code, out) = cli(&c, 1, &["node", "start", "n3"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("n3 is not reachable"), "{out}");
    assert_eq!(c.events(1).len(), before, "{:?}", c.events(1));
    // Its daemon started, it joins by itself.
    c.start(3);
    c.wait_for(1, "n3 back", FORM_TIMEOUT, |v| {
        node_of(v, "n3")["member"] == true
    });
}

/// Issue 16, item 2: edited files were silently ignored by a running cluster. A node
/// started after its files were edited says how they differ from the running
/// configuration, in its log and in status; a node started before says nothing.
#[test]
fn a_node_whose_files_differ_from_the_running_configuration_says_so() {
    let mut c = Cluster::start_with(Spec::new());
    c.wait_all_members(1, FORM_TIMEOUT);
    c.stop(2);
    let web = c.config_dir().join("web.toml");
    let text = std::fs::read_to_string(&web).unwrap();
    assert!(text.contains("auto_run = true"), "{text}");
    std::fs::write(&web, text.replace("auto_run = true", "auto_run = false")).unwrap();
    c.start(2);
    c.wait_for(2, "n2 back", FORM_TIMEOUT, |v| {
        node_of(v, "n2")["member"] == true && !v["config_drift"].is_null()
    });
    let v = c.status(2).unwrap();
    assert_eq!(v["config_drift"][0], "package web differs", "{v:#}");
    let text = status_text(&c, 2);
    assert!(
        text.contains("configuration files on n2 differ from the running generation 1"),
        "{text}"
    );
    assert!(c.log_tail("n2", 200).contains("package web differs"));
    assert!(c.status(1).unwrap()["config_drift"].is_null());
    // The cluster runs its own configuration: web still runs.
    assert_eq!(package_of(&v, "web")["status"], "up", "{v:#}");
}

/// A node restarted with an edited heartbeat (a rolling change of the timings, or a
/// mistake) computed a longer lease from its files than the coordinator waits out: a holder
/// outliving the wait is how a package runs on two nodes. The holder now holds the shorter
/// of its files' lease and the running configuration's (and a coordinator waits the
/// longer), and says that its files differ.
#[test]
fn a_node_restarted_with_a_slower_heartbeat_holds_no_longer_lease_than_the_cluster() {
    let mut c = Cluster::start_with(Spec::new());
    c.wait_all_members(1, FORM_TIMEOUT);
    let lease = c.status(1).unwrap()["lease"]["duration_ms"]
        .as_u64()
        .unwrap();
    c.stop(2);
    let cluster = c.config_dir().join("cluster.toml");
    let text = std::fs::read_to_string(&cluster).unwrap();
    assert!(text.contains("interval = \"100ms\""), "{text}");
    std::fs::write(
        &cluster,
        text.replace("interval = \"100ms\"", "interval = \"300ms\""),
    )
    .unwrap();
    c.start(2);
    c.wait_for(2, "n2 back", FORM_TIMEOUT, |v| {
        node_of(v, "n2")["member"] == true && !v["config_drift"].is_null()
    });
    let v = c.status(2).unwrap();
    // Each network's heartbeat defaults to the cluster's: both differ.
    assert_eq!(
        v["config_drift"][0], "cluster settings differ: networks, heartbeat",
        "{v:#}"
    );
    assert_eq!(v["lease"]["duration_ms"].as_u64().unwrap(), lease, "{v:#}");
}

/// Issue 18, item 5: `package halt PKG -n NODE` takes one instance of a multi-node package
/// offline on that node; it stays offline there (a node's return does not restart it) while
/// the others keep running untouched, until `package run PKG -n NODE`.
#[test]
fn one_instance_of_a_multi_node_package_halts_on_one_node_and_runs_there_again() {
    let c = Cluster::start_with(spec_with_an_agent_everywhere());
    c.wait_all_members(1, FORM_TIMEOUT);
    let nodes_of = |v: &serde_json::Value| -> Vec<String> {
        package_of(v, "agent")["nodes"]
            .as_array()
            .map(|a| a.iter().map(|n| n.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    c.wait_for(1, "agent on every node", FORM_TIMEOUT, |v| {
        nodes_of(v).len() == 3
    });
    let others_before: Vec<Vec<i32>> = [1, 3].map(|i| c.service_groups(i)).into();

    let (code, out) = cli(&c, 1, &["package", "halt", "agent", "-n", "n2"]);
    assert_eq!(code, 0, "{out}");
    c.wait_for(1, "agent halted on n2 only", FAILOVER_TIMEOUT, |v| {
        nodes_of(v) == ["n1", "n3"]
    });
    // The timer and a reconciliation leave it halted there; the others never moved.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(nodes_of(&c.status(1).unwrap()), ["n1", "n3"]);
    let others_after: Vec<Vec<i32>> = [1, 3].map(|i| c.service_groups(i)).into();
    assert_eq!(
        others_before, others_after,
        "instances on n1 and n3 were restarted"
    );
    // A failover package cannot be halted on a node it does not run on.
    let (code, out) = cli(&c, 1, &["package", "halt", "web", "-n", "n3"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("does not run on n3"), "{out}");

    let (code, out) = cli(&c, 1, &["package", "run", "agent", "-n", "n2"]);
    assert_eq!(code, 0, "{out}");
    c.wait_for(1, "agent on every node again", FAILOVER_TIMEOUT, |v| {
        nodes_of(v).len() == 3
    });
}
