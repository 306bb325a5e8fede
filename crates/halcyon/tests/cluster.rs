//! Multi-process clusters on loopback (127.0.0.1-3), no root: the `halcyon` binary runs each
//! node. Every test is bounded in time and kills its processes (daemons by PID, services by
//! process group) when it ends, passing or failing (see `common`).

use std::time::{Duration, Instant};

mod common;

use common::*;
use serde_json::Value;

/// Waits until node `i` reports every node a member with incarnation `incarnation`.
fn wait_members(c: &Cluster, i: usize, incarnation: u64, limit: Duration) {
    c.wait_for(
        i,
        &format!("every node a member (incarnation {incarnation})"),
        limit,
        |v| {
            v["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|n| n["member"] == true && n["incarnation"] == incarnation)
                && v["execution"].is_null()
                && v["pending"].as_array().is_some_and(|p| p.is_empty())
        },
    );
}

/// Checks the activity log never shows two nodes alternating: every node's activity period
/// ends before the next one's begins. Returns the gap between periods (ns).
fn assert_periods_apart(activity: &[(String, u128)]) -> Vec<(String, String, i128)> {
    let mut periods: Vec<(String, u128, u128)> = Vec::new();
    for (node, t) in activity {
        match periods.iter_mut().find(|p| &p.0 == node) {
            Some(p) => {
                p.1 = p.1.min(*t);
                p.2 = p.2.max(*t);
            }
            None => periods.push((node.clone(), *t, *t)),
        }
    }
    periods.sort_by_key(|p| p.1);
    let mut gaps = Vec::new();
    for w in periods.windows(2) {
        let gap = w[1].1 as i128 - w[0].2 as i128;
        assert!(
            gap > 0,
            "package active on {} and {} at once: {}'s last activity is {} ns after {}'s first",
            w[0].0,
            w[1].0,
            w[0].0,
            -gap,
            w[1].0
        );
        gaps.push((w[0].0.clone(), w[1].0.clone(), gap));
    }
    gaps
}

#[test]
fn a_cluster_forms_and_fails_over_when_the_running_node_dies() {
    let mut c = Cluster::start_with(Spec::new());
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    wait_members(&c, 2, 1, FORM_TIMEOUT);
    assert!(c.status(2).unwrap()["coordinator"].is_string());

    let killed = Instant::now();
    c.kill(1);
    let took = c.wait_web_on(2, "n2", FAILOVER_TIMEOUT);
    eprintln!(
        "failover after SIGKILL of n1 observed in {:?}",
        killed.elapsed().min(took)
    );
    // The service really runs on n2.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !c.activity().iter().any(|(n, _)| n == "n2") {
        assert!(Instant::now() < deadline, "no activity from n2's service");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_periods_apart(&c.activity());
    let v = c.status(3).unwrap();
    let n1 = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "n1")
        .unwrap()
        .clone();
    assert_eq!(n1["member"], false);
    let events: Vec<String> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        events.iter().any(|e| e == "node_down n1 (failure)"),
        "{events:?}"
    );
}

#[test]
fn an_isolated_node_halts_its_package_before_the_majority_starts_it() {
    let mut c = Cluster::start_with(Spec::new());
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    std::thread::sleep(Duration::from_millis(300));
    let (code, body) = c.request(1, "POST", "/v1/debug/isolate", None);
    assert_eq!(code, 200, "{body}");
    c.wait_web_on(2, "n2", FAILOVER_TIMEOUT);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !c.activity().iter().any(|(n, _)| n == "n2") {
        assert!(Instant::now() < deadline, "no activity from n2's service");
        std::thread::sleep(Duration::from_millis(20));
    }
    // n1's daemon is alive (it fenced itself; it did not die), and answers that it has no quorum.
    assert!(c.is_running(1));
    let v = c.status(1).unwrap();
    assert_eq!(v["quorum"]["has_quorum"], false, "{v:#}");
    // Its `status` does not state its stale placement as fact.
    let text = status_text(&c, 1);
    assert!(
        text.contains("no quorum: the last known placements as n1 applied them")
            && text.contains("up (last known)"),
        "{text}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let gaps = assert_periods_apart(&c.activity());
    eprintln!(
        "n1 stopped, then n2 started, {} ms apart",
        gaps[0].2 / 1_000_000
    );
    // A write through the isolated node is refused with the cause.
    let (code, body) = c.request(1, "POST", "/v1/packages/web/move", Some(r#"{"node":"n3"}"#));
    assert_eq!(code, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with("no quorum:"),
        "{body}"
    );
}

#[test]
fn state_survives_a_restart_of_every_node() {
    let mut c = Cluster::start_with(Spec::new());
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    wait_members(&c, 1, 1, FORM_TIMEOUT);
    let (code, body) = c.request(3, "POST", "/v1/packages/web/move", Some(r#"{"node":"n2"}"#));
    assert_eq!(code, 200, "{body}");
    c.wait_web_on(1, "n2", FAILOVER_TIMEOUT);
    let before = c.status(2).unwrap();
    for i in 1..=3 {
        c.stop(i);
    }
    for i in 1..=3 {
        c.start(i);
    }
    wait_members(&c, 1, 2, FORM_TIMEOUT);
    c.wait_web_on(1, "n2", FORM_TIMEOUT);
    let after = c.status(1).unwrap();
    let ids = |v: &Value| -> Vec<u64> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_u64().unwrap())
            .collect()
    };
    for id in ids(&before) {
        assert!(ids(&after).contains(&id), "event {id} lost: {after:#}");
    }
    assert!(
        after["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "package_move web n2")
    );
    for n in after["nodes"].as_array().unwrap() {
        assert_eq!(n["incarnation"], 2, "{n}");
    }
    // The service runs again on n2 (restarted by the node from the committed state).
    let restarted = Instant::now();
    let count = |c: &Cluster| c.activity().iter().filter(|(n, _)| n == "n2").count();
    let seen = count(&c);
    while count(&c) <= seen + 2 {
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "n2's service did not restart"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_requests_get_precise_errors_and_change_nothing() {
    let c = Cluster::start_with(Spec::new());
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    wait_members(&c, 2, 1, FORM_TIMEOUT);
    let cases: &[(&str, Option<&str>, u16, &str)] = &[
        (
            "/v1/packages/nope/run",
            None,
            404,
            "unknown package \"nope\" (packages: web)",
        ),
        (
            "/v1/packages/web/explode",
            None,
            404,
            "unknown package operation \"explode\"; expected run, halt, move, enable, disable or clear",
        ),
        (
            "/v1/packages/web/move",
            Some(r#"{"node":"n9"}"#),
            404,
            "unknown node \"n9\" (nodes: n1, n2, n3)",
        ),
        (
            "/v1/packages/web/move",
            Some(r#"{"nod":"n2"}"#),
            400,
            "bad request body: unknown field `nod`",
        ),
        ("/v1/packages/web/move", Some("{"), 400, "bad request body:"),
        (
            "/v1/packages/web/run",
            None,
            409,
            "refused: package web already runs on n1",
        ),
        (
            "/v1/packages/web/move",
            Some(r#"{"node":"n1"}"#),
            409,
            "refused:",
        ),
        ("/v1/nodes/n7/halt", None, 404, "unknown node \"n7\""),
        (
            "/v1/nodes/n2/halt",
            Some(r#"{"how":"gently"}"#),
            400,
            "bad request body: how \"gently\"",
        ),
        (
            "/v1/nodes/n2/reboot",
            None,
            404,
            "unknown node operation \"reboot\"",
        ),
        ("/v1/nothing", None, 404, "no such API endpoint"),
    ];
    // The bad requests commit nothing. The nodes' own reports may still commit an entry
    // after formation (none an event or a placement), so a round whose window saw the log
    // move is asked again: a request that commits would move it in every round.
    for round in 1..=3 {
        let before = quiet_status(&c, 2);
        for (path, body, status, error) in cases {
            // Ask a follower and the leader alike.
            for i in [2, 1] {
                let (code, answer) = c.request(i, "POST", path, *body);
                let text = answer["error"].as_str().unwrap_or_default();
                assert_eq!(code, *status, "{path} {body:?} on n{i}: {answer}");
                assert!(
                    text.starts_with(error),
                    "{path} {body:?} on n{i}: {text:?} does not start with {error:?}"
                );
            }
        }
        let after = c.status(2).unwrap();
        assert_eq!(before["events"], after["events"]);
        assert_eq!(before["packages"], after["packages"]);
        if before["quorum"]["last_applied"] == after["quorum"]["last_applied"] {
            return;
        }
        eprintln!(
            "round {round}: the log moved from {} to {} while the bad requests were asked",
            before["quorum"]["last_applied"], after["quorum"]["last_applied"]
        );
    }
    panic!("the log moved in each of three rounds of bad requests");
}

/// Node `i`'s status once its last applied index has not moved for a second (bounded).
fn quiet_status(c: &Cluster, i: usize) -> Value {
    let deadline = Instant::now() + FORM_TIMEOUT;
    let mut last = c.status(i).unwrap();
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = c.status(i).unwrap();
        if now["quorum"]["last_applied"] != last["quorum"]["last_applied"] {
            since = Instant::now();
        } else if since.elapsed() >= Duration::from_secs(1) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "n{i}'s log never stood still: {now:#}"
        );
        last = now;
    }
}
