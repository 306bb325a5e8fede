//! Credentials replaced while the cluster runs (issue 17): the three steps of `halcyon init
//! rollover` (a new CA and heartbeat key), each reloaded by SIGHUP one node at a time, so
//! that nodes one step apart work together; a token added and another revoked in
//! `tokens.toml`; a reload of credentials others may read refused with its reason and
//! nothing changed. Throughout: the package keeps its node and its process, no heartbeat is
//! refused, no node leaves; at the end a node restarted with the new credentials only joins
//! again (and its clean stop removed its local API socket).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// How long a reload may take to show in status.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Time given to the cluster after each reload: heartbeats, renewals and Raft go on.
const SETTLE: Duration = Duration::from_millis(1500);

/// `halcyon init rollover STEP` on the cluster's credentials, then the test's own client
/// trusts what `ca.crt` holds now; the step's output.
fn rollover(c: &mut Cluster, step: &str) -> String {
    let out = Command::new(BIN)
        .args(["init", "rollover", step, "-c"])
        .arg(c.config_dir())
        .arg("--dir")
        .arg(c.config_dir().join("pki"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "rollover {step}: {text}");
    c.refresh_tls().unwrap();
    text
}

/// SIGHUP to node `i`; waits until its status shows `reloads` reloads taken.
fn reload(c: &Cluster, i: usize, reloads: u64) -> Value {
    assert!(c.signal(i, libc::SIGHUP), "n{i} runs");
    c.wait_for(i, &format!("reload {reloads}"), RELOAD_TIMEOUT, |v| {
        v["api_auth"]["credentials"]["reloads"] == reloads
    });
    c.status(i).unwrap()
}

/// What must hold after every step: web on n1 with the same service process group, every
/// node a member with its first incarnation, no heartbeat refused anywhere.
fn assert_untouched(c: &Cluster, groups: &[i32]) {
    for i in 1..=3 {
        let v = c.status(i).unwrap();
        assert_eq!(package_of(&v, "web")["nodes"][0], "n1", "n{i}: {v:#}");
        assert_eq!(package_of(&v, "web")["status"], "up", "n{i}: {v:#}");
        for n in ["n1", "n2", "n3"] {
            assert_eq!(node_of(&v, n)["member"], true, "n{i} on {n}: {v:#}");
            assert_eq!(node_of(&v, n)["incarnation"], 1, "n{i} on {n}: {v:#}");
        }
        let auth = &v["heartbeat_auth"];
        for refused in ["forged", "replayed", "other_cluster", "malformed"] {
            assert_eq!(auth[refused], 0, "n{i} refused heartbeats: {v:#}");
        }
        assert_eq!(
            v["api_auth"]["nodes"], 0,
            "n{i} refused node requests: {v:#}"
        );
        assert_eq!(v["api_auth"]["raft_refused"], 0, "n{i} refused Raft: {v:#}");
    }
    assert_eq!(c.service_groups(1), groups, "web's service was restarted");
}

fn write_owner_only(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn a_ca_and_key_rollover_and_new_tokens_are_taken_without_a_restart_or_a_failover() {
    let mut spec = Spec::new();
    spec.witness = true;
    let mut c = Cluster::start_with(spec);
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    c.wait_all_members(1, FORM_TIMEOUT);
    c.wait_activity_from("n1", FAILOVER_TIMEOUT);
    let groups = c.service_groups(1);
    assert!(!groups.is_empty());
    let started = Instant::now();
    let events_before = c.events(1).len();

    // Step 1: a new CA and key beside the old ones. n1 takes it; n2 and n3 are a step
    // behind for a while.
    let text = rollover(&mut c, "start");
    assert!(text.contains("ca.crt, heartbeat.key"), "{text}");
    let v = reload(&c, 1, 1);
    let credentials = &v["api_auth"]["credentials"];
    assert_eq!(credentials["trusted_cas"], 2, "{v:#}");
    assert_eq!(credentials["heartbeat_keys"], 2, "{v:#}");
    std::thread::sleep(SETTLE);
    assert_untouched(&c, &groups);
    let status = status_text(&c, 1);
    assert!(
        status.contains("credentials of n1: rollover under way (2 CAs trusted, 2 heartbeat keys;"),
        "{status}"
    );
    reload(&c, 2, 1);
    reload(&c, 3, 1);
    assert!(c.signal_witness(libc::SIGHUP));

    // Step 2: node certificates of the new CA, the new key signs. n3 first this time.
    rollover(&mut c, "switch");
    reload(&c, 3, 2);
    std::thread::sleep(SETTLE);
    assert_untouched(&c, &groups);
    reload(&c, 1, 2);
    reload(&c, 2, 2);
    assert!(c.signal_witness(libc::SIGHUP));
    std::thread::sleep(SETTLE);
    assert_untouched(&c, &groups);

    // Step 3: the old CA and key are dropped.
    rollover(&mut c, "finish");
    for (i, reloads) in [(2, 3), (1, 3), (3, 3)] {
        let v = reload(&c, i, reloads);
        assert_eq!(v["api_auth"]["credentials"]["trusted_cas"], 1, "{v:#}");
        assert_eq!(v["api_auth"]["credentials"]["heartbeat_keys"], 1, "{v:#}");
    }
    assert!(c.signal_witness(libc::SIGHUP));
    std::thread::sleep(SETTLE);
    assert_untouched(&c, &groups);
    let witness_log = c.log_tail("w", 400);
    assert_eq!(
        witness_log.matches("credentials reloaded").count(),
        3,
        "the witness took each step: {witness_log}"
    );

    // Tokens: `ops` added, `read-only` revoked, on n2 only.
    let tokens_path = c.config_dir().join("pki").join("tokens.toml");
    let old_read_only = c.tokens().unwrap().read_only.clone();
    let mut tokens =
        halcyon_pki::Tokens::parse(&std::fs::read_to_string(&tokens_path).unwrap()).unwrap();
    let ops = format!("hct_{}", "5a".repeat(32));
    tokens.tokens.retain(|t| t.name != "read-only");
    tokens.tokens.push(halcyon_pki::Token {
        name: "ops".into(),
        role: halcyon_pki::Role::ReadOnly,
        sha256: halcyon_pki::token_hash(&ops),
    });
    write_owner_only(&tokens_path, &tokens.render("test tokens"));
    let get = |i: usize, token: &str| {
        halcyon_testkit::http::request_tls(
            c.tls(),
            c.api(i),
            "GET",
            "/v1/status",
            Some(token),
            None,
            REQUEST_TIMEOUT,
        )
        .unwrap()
        .status
    };
    assert_eq!(get(2, &ops), 401, "not loaded yet");
    reload(&c, 2, 4);
    assert_eq!(get(2, &ops), 200);
    assert_eq!(get(2, &old_read_only), 401, "revoked");
    assert_eq!(get(1, &old_read_only), 200, "n1 has not reloaded");

    // A reload of a tokens file others may read is refused and changes nothing.
    std::fs::set_permissions(&tokens_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(c.signal(3, libc::SIGHUP));
    c.wait_for(3, "a refused reload", RELOAD_TIMEOUT, |v| {
        !v["api_auth"]["credentials"]["refused_reload"].is_null()
    });
    let v = c.status(3).unwrap();
    let credentials = &v["api_auth"]["credentials"];
    assert_eq!(credentials["reloads"], 3, "{v:#}");
    let why = credentials["refused_reload"]["why"].as_str().unwrap();
    assert_eq!(
        why,
        format!(
            "{}: is accessible by group or others (mode 0644); secret files must be owner-only (chmod 600)",
            tokens_path.display()
        )
    );
    assert_eq!(get(3, &old_read_only), 200, "n3 keeps the tokens it had");
    assert_eq!(get(3, &ops), 401);
    let status = status_text(&c, 3);
    assert!(
        status.contains("WARNING on n3: a reload of its credentials was refused at"),
        "{status}"
    );
    std::fs::set_permissions(&tokens_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_untouched(&c, &groups);

    // n3 restarted: with the new CA's certificate and the new key only (every peer's old
    // connections gone for it), it joins again.
    assert!(c.api_socket(3).exists());
    c.stop(3);
    // A clean stop removes the daemon's local API socket.
    assert!(!c.api_socket(3).exists(), "the socket outlived the daemon");
    c.start(3);
    c.wait_member(1, "n3", 2, FORM_TIMEOUT);
    // n3's own replica follows the cluster (Raft over TLS with the new certificates).
    c.wait_all_members(3, FORM_TIMEOUT);
    for i in 1..=3 {
        let v = c.status(i).unwrap();
        assert_eq!(v["api_auth"]["raft_refused"], 0, "n{i} refused Raft: {v:#}");
        assert_eq!(
            v["heartbeat_auth"]["forged"], 0,
            "n{i} refused heartbeats: {v:#}"
        );
    }
    let v = c.status(1).unwrap();
    assert_eq!(package_of(&v, "web")["nodes"][0], "n1", "{v:#}");
    assert_eq!(c.service_groups(1), groups, "web's service was restarted");
    let events = c.events(1);
    assert!(
        !events[events_before..]
            .iter()
            .any(|e| e.starts_with("package_")),
        "no package event during the rollover: {events:?}"
    );
    assert_no_overlap(&c.activity(), 0);
    eprintln!(
        "rollover of the CA and heartbeat key, 3 nodes and a witness: {:.1} s, web untouched",
        started.elapsed().as_secs_f64()
    );
}
