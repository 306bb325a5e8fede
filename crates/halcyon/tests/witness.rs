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
    // Its new store holds Raft requests until the cluster answered it (`witness::admission`):
    // it votes once it has applied some of the log.
    c.wait_for(2, "the witness is a reachable voter", FORM_TIMEOUT, |v| {
        v["witness"]["voter"] == true
            && v["witness"]["reachable"] == true
            && v["witness"]["last_applied"].as_u64() > Some(0)
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

/// How many times `name`'s log holds `line`.
fn log_count(c: &Cluster, name: &str, line: &str) -> usize {
    std::fs::read_to_string(c.log_path(name)).map_or(0, |log| log.matches(line).count())
}

/// Waits until `name`'s log holds `line` more than `before` times; panics with its tail after
/// `limit`.
fn wait_log(c: &Cluster, name: &str, line: &str, before: usize, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    while log_count(c, name, line) <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "{name} never logged {line:?}:\n{}",
            c.log_tail(name, 30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A witness rebuilt under the number the cluster knows (its state directory emptied, as
/// after a disk failure) forgot the log it acknowledged and its vote. It answers no Raft
/// request until the coordinator has taken it out of the membership, then it copies the
/// log as a learner and votes again; a node's death is then taken over with its vote. Its
/// certificate opens only the two questions of a new store on a node's internal API.
#[test]
fn a_witness_whose_state_directory_was_emptied_is_forgotten_and_votes_again() {
    let mut c = two_nodes_and_a_witness();
    let (code, body) = c.request(1, "POST", "/v1/packages/web/disable", None);
    assert_eq!(code, 200, "{body}");
    let (code, body) = c.request(1, "POST", "/v1/packages/web/enable", None);
    assert_eq!(code, 200, "{body}");
    c.wait_web_on(1, "n1", FAILOVER_TIMEOUT);
    // Started after the nodes formed, it may have gone out of the voters and back in once.
    let taken_out = "the coordinator took it out of the membership";
    let before = log_count(&c, "w", taken_out);
    let added = "voter_change w: added to the voters";
    let added_before = c.events(1).iter().filter(|e| *e == added).count();
    c.kill_witness();
    let dir = c.witness_state_dir().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    c.start_witness();
    wait_log(&c, "w", taken_out, before, FORM_TIMEOUT);
    c.wait_for(1, "the rebuilt witness a voter again", FORM_TIMEOUT, |v| {
        v["witness"]["voter"] == true
            && v["witness"]["reachable"] == true
            && v["quorum"]["voters"] == serde_json::json!(["n1", "n2", "w"])
    });
    let v = c.status(1).unwrap();
    let events = c.events(1);
    assert_eq!(
        events.iter().filter(|e| *e == added).count(),
        added_before + 1,
        "{events:#?}"
    );
    for i in 1..=2 {
        assert!(
            c.is_running(i),
            "n{i} exited:\n{}",
            c.log_tail(&format!("n{i}"), 30)
        );
    }
    // The witness's replica holds the log again (what it applied, at least the nodes').
    let applied = v["witness"]["last_applied"].as_u64().unwrap_or(0);
    assert!(applied > 0, "{v:#}");

    // Its certificate asks a node what membership counts it, and nothing else.
    let pki = c.config_dir().join("pki");
    let w = node_tls(&halcyon_pki::load(&pki, "w").unwrap());
    let w_auth =
        halcyon_daemon::auth::Auth::from_credentials(&halcyon_pki::load(&pki, "w").unwrap())
            .unwrap();
    let internal = std::net::SocketAddr::new(c.api(2).ip(), c.port() + 3);
    let ask = |method: &str, path: &str, body: &str| {
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {internal}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in w_auth.sign(method, path, body.as_bytes(), None, now_ms) {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        tls_request(&w, internal, &request).unwrap()
    };
    let answer = ask("GET", "/v1/internal/membership", "");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = ask("POST", "/v1/internal/lease", r#"{"node":"w"}"#);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("node request refused"), "{answer}");

    // n1 (package and coordinator) dies: n2 is elected with the witness's vote.
    c.kill(1);
    let took = c.wait_web_on(2, "n2", FAILOVER_TIMEOUT);
    eprintln!("rebuilt witness: n1 killed, web on n2 after {took:?}");
    c.wait_activity_from("n2", Duration::from_secs(5));
    assert_no_overlap(&c.activity(), 1);
}

/// A witness rebuilt while a node is down waits (only a leader, which needs both nodes now,
/// can take it out of the membership): the node left says so in its status, the API's and
/// `halcyon status`'s, and counts the witness for no quorum. Once the other node is back
/// the witness is taken out, added back and votes again, and says nothing of a hold.
#[test]
fn a_witness_rebuilt_while_a_node_is_down_says_it_holds_its_vote() {
    let mut c = two_nodes_and_a_witness();
    let v = c.status(1).unwrap();
    assert!(v["witness"].get("held").is_none(), "{v:#}");
    c.stop(2);
    c.kill_witness();
    let dir = c.witness_state_dir().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    c.start_witness();
    c.wait_for(1, "the rebuilt witness holds its vote", FORM_TIMEOUT, |v| {
        v["witness"]["reachable"] == true
            && v["witness"]["held"]
                .as_str()
                .is_some_and(|why| why.contains("no leader answered"))
            && v["quorum"]["has_quorum"] == false
    });
    let v = c.status(1).unwrap();
    let detail = v["quorum"]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("no quorum: 1 of 3 voters reachable from n1 (n2 unreachable); witness w answers but holds its vote"),
        "{v:#}"
    );
    let text = status_text(&c, 1);
    assert!(
        text.contains("HOLDS ITS VOTE (counts for no quorum until the cluster forgot its old store and it copied the log): new store: the cluster has formed and no leader answered"),
        "{text}"
    );

    c.start(2);
    c.wait_for(1, "the rebuilt witness a voter again", FORM_TIMEOUT, |v| {
        v["witness"]["voter"] == true
            && v["witness"]["reachable"] == true
            && v["witness"].get("held").is_none()
            && v["witness"]["last_applied"].as_u64() > Some(0)
            && v["quorum"]["has_quorum"] == true
    });
    assert!(!status_text(&c, 1).contains("HOLDS ITS VOTE"));
    c.wait_web_on(1, "n1", FAILOVER_TIMEOUT);
    assert_no_overlap(&c.activity(), 0);
}
