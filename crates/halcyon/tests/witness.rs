//! Two nodes and a witness on loopback.

mod common;

use std::time::Duration;

use common::*;

fn two_nodes_and_a_witness() -> Cluster {
    let mut spec = Spec::new();
    spec.nodes = 2;
    spec.witness = true;
    let c = Cluster::start_with(spec);
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    c.wait_all_members(2, FORM_TIMEOUT);
    c.wait_for(2, "the witness is a reachable voter", FORM_TIMEOUT, |v| {
        v["witness"]["voter"] == true && v["witness"]["reachable"] == true
    });
    c
}

#[test]
fn the_witness_dying_changes_nothing_then_a_dead_node_is_taken_over() {
    let mut c = two_nodes_and_a_witness();
    let voters = c.status(1).unwrap()["quorum"]["voters"].clone();
    assert_eq!(voters, serde_json::json!(["n1", "n2", "w"]));
    let text = status_text(&c, 1);
    assert!(text.contains("witness w at 127.0.0.9:"), "{text}");
    let events_before = c.events(1);
    c.kill_witness();
    // Several detection times and election timeouts: nothing may change.
    std::thread::sleep(Duration::from_secs(2));
    for i in 1..=2 {
        let v = c.status(i).unwrap();
        assert_eq!(v["quorum"]["has_quorum"], true, "{v:#}");
        assert_eq!(package_of(&v, "web")["nodes"][0], "n1", "{v:#}");
        assert_eq!(v["witness"]["reachable"], false, "{v:#}");
    }
    assert_eq!(c.events(2), events_before);
    c.wait_activity_from("n1", Duration::from_secs(5));
    // A write still commits (two of three voters).
    let (code, body) = c.request(2, "POST", "/v1/packages/web/disable", None);
    assert_eq!(code, 200, "{body}");
    let (code, body) = c.request(2, "POST", "/v1/packages/web/enable", None);
    assert_eq!(code, 200, "{body}");
    assert_no_overlap(&c.activity(), 0);

    // The witness comes back; then n1 (package and coordinator) dies: n2 takes over.
    c.start_witness();
    c.wait_for(2, "the witness is back", FORM_TIMEOUT, |v| {
        v["witness"]["reachable"] == true
    });
    std::thread::sleep(Duration::from_millis(500));
    c.kill(1);
    let took = c.wait_web_on(2, "n2", FAILOVER_TIMEOUT);
    eprintln!("two nodes + witness: n1 killed, web on n2 after {took:?}");
    c.wait_activity_from("n2", Duration::from_secs(5));
    assert_no_overlap(&c.activity(), 1);
}

#[test]
fn with_a_witness_either_node_may_die() {
    let mut c = two_nodes_and_a_witness();
    // web on n2, then n2 dies: n1 takes over (n1 may or may not be the coordinator).
    let (code, body) = c.request(1, "POST", "/v1/packages/web/move", Some(r#"{"node":"n2"}"#));
    assert_eq!(code, 200, "{body}");
    c.wait_web_on(1, "n2", FAILOVER_TIMEOUT);
    c.wait_activity_from("n2", Duration::from_secs(5));
    c.kill(2);
    let took = c.wait_web_on(1, "n1", FAILOVER_TIMEOUT);
    eprintln!("two nodes + witness: n2 killed, web on n1 after {took:?}");
    c.wait_activity_from("n1", Duration::from_secs(5));
    assert_no_overlap(&c.activity(), 2);
    let v = c.status(1).unwrap();
    assert_eq!(node_of(&v, "n2")["member"], false, "{v:#}");
    assert_eq!(v["coordinator"], "n1", "{v:#}");
}

#[test]
fn the_witness_status_needs_a_token_and_the_nodes_still_read_it() {
    let c = two_nodes_and_a_witness();
    let witness = std::net::SocketAddr::from(([127, 0, 0, 9], c.port() + 2));
    let tokens = c.tokens().unwrap().clone();
    let ask = |token: Option<&str>, method: &str, path: &str| {
        let r = halcyon_testkit::http::request_tls(
            c.tls(),
            witness,
            method,
            path,
            token,
            None,
            REQUEST_TIMEOUT,
        )
        .unwrap();
        (r.status, r.body)
    };
    let (code, body) = ask(None, "GET", "/v1/status");
    assert_eq!(code, 401, "{body}");
    assert!(
        body.contains("unauthenticated: this API needs a token"),
        "{body}"
    );
    let (code, body) = ask(
        Some(&format!("hct_{}", "0".repeat(64))),
        "GET",
        "/v1/status",
    );
    assert_eq!(code, 401, "{body}");
    let (code, body) = ask(Some(&tokens.read_only), "GET", "/v1/status");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["witness"], "w", "{v:#}");
    // Unknown paths and the refusing internal routes need credentials too.
    let (code, body) = ask(None, "GET", "/v1/anything");
    assert_eq!(code, 401, "{body}");
    let (code, body) = ask(Some(&tokens.read_only), "POST", "/v1/internal/write");
    assert_eq!(code, 403, "{body}");
    // The nodes sign their requests: they still read it (the witness reachable).
    let v = c.status(1).unwrap();
    assert_eq!(v["witness"]["reachable"], true, "{v:#}");
    assert!(v["witness"]["last_applied"].as_u64().is_some(), "{v:#}");
}
