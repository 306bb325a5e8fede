//! The durable event log (issue 16 item 7): records that left the replicated log's window of
//! 256 are still answered with `--since`, also after the node's daemon restarted.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The ids of the records node `i` answers for `query`.
fn ids(c: &Cluster, i: usize, query: &str) -> Vec<u64> {
    let (code, v) = c.request(i, "GET", &format!("/v1/events{query}"), None);
    assert_eq!(code, 200, "{v}");
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect()
}

#[test]
fn records_beyond_the_replicated_window_are_kept_and_survive_a_restart() {
    let mut spec = Spec::new();
    spec.rules(|_| "[[event]]\nname = \"UE_TICK\"\nprogram = '''\nevent \"true\" 0\n'''\n".into());
    let mut c = Cluster::start_with(spec);
    c.wait_all_members(1, FORM_TIMEOUT);
    c.wait_web_on(1, "n1", FORM_TIMEOUT);

    // More than the window's 256 records: user-defined events on the three nodes in turn
    // (an identical pending one is merged, so count what the log says).
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut raised = 0;
    while ids(&c, 1, "?since=1h").len() < 320 {
        assert!(Instant::now() < deadline, "only {raised} raised in time");
        let body = format!("{{\"name\":\"UE_TICK\",\"node\":\"n{}\"}}", raised % 3 + 1);
        let (code, v) = c.request(1, "POST", "/v1/events/raise", Some(&body));
        assert!(code < 300, "{v}");
        raised += 1;
    }
    // Wait for the last ones to finish and be copied.
    c.wait_for(1, "no event running", REQUEST_TIMEOUT, |v| {
        v["execution"].is_null() && v["pending"].as_array().is_some_and(|p| p.is_empty())
    });
    std::thread::sleep(Duration::from_millis(300));
    let window = ids(&c, 1, "");
    assert!(window.len() <= 256, "the window holds {}", window.len());
    let all = ids(&c, 1, "?since=1h");
    assert!(all.len() >= 320, "{}", all.len());
    assert!(all.windows(2).all(|w| w[0] < w[1]), "out of order: {all:?}");
    assert!(all[0] < window[0], "nothing older than the window");
    assert_eq!(&all[all.len() - window.len()..], &window[..]);

    // Node 2 restarts: its durable log still has the old records.
    assert_eq!(ids(&c, 2, "?since=1h"), all, "n2 before its restart");
    c.kill_daemon_only(2);
    c.start(2);
    c.wait_for(2, "n2 back", FAILOVER_TIMEOUT, |v: &Value| {
        node_of(v, "n2")["member"] == true && v["execution"].is_null()
    });
    let after = ids(&c, 2, "?since=1h");
    assert!(
        after.len() >= all.len() && after[..all.len()] == all[..],
        "n2 lost records: {} then {}",
        all.len(),
        after.len()
    );
    c.kill_all();
}

#[test]
fn availability_shows_a_node_failure_as_an_outage_with_its_cause() {
    let mut c = Cluster::start_with(Spec::new());
    c.wait_all_members(1, FORM_TIMEOUT);
    c.wait_web_on(2, "n1", FORM_TIMEOUT);
    c.kill(1);
    c.wait_web_on(2, "n2", FAILOVER_TIMEOUT);
    let (code, out) = cli(&c, 2, &["availability", "web", "--json"]);
    assert_eq!(code, 0, "{out}");
    let a: Value = serde_json::from_str(&out).unwrap();
    let outages = a["outages"].as_array().unwrap();
    let failure = outages
        .iter()
        .find(|o| o["cause"] == "node failure (n1)")
        .unwrap_or_else(|| panic!("no node failure outage: {a:#}"));
    let seconds = failure["seconds"].as_f64().unwrap();
    assert!(seconds > 0.0 && seconds < 5.0, "{a:#}");
    assert!(!failure["end"].is_null(), "{a:#}");
    assert!(a["percent"].as_f64().unwrap() < 100.0);
    eprintln!("availability after a failover: {out}");
    let (code, out) = cli(&c, 2, &["availability", "web"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("node failure (n1)"), "{out}");
    let (code, out) = cli(&c, 2, &["availability", "nope"]);
    assert_eq!(code, 2, "{out}");
    c.kill_all();
}
