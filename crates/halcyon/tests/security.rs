//! Security in the daemon (issue 17): with the credentials `halcyon init` writes beside the
//! configuration (the harness makes them per cluster), heartbeats are authenticated with the
//! cluster's key, forged ones are refused, counted and change nothing; the API needs a token
//! with the right role and the event log names who asked; the nodes' internal API refuses
//! whoever is not a node; the debug endpoints exist only with `--test-faults`; a node without
//! credentials starts only `--insecure`, and credentials that fail a check refuse the start.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use halcyon_membership::HmacSealer;
use halcyon_membership::wire::{self, HeartbeatMessage};
use serde_json::Value;

#[test]
fn with_credentials_heartbeats_are_authenticated_and_forged_ones_change_nothing() {
    let c = Cluster::start_with(Spec::new());
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    c.wait_all_members(1, FORM_TIMEOUT);
    let v = c.status(1).unwrap();
    assert_eq!(v["heartbeat_auth"]["authenticated"], true, "{v:#}");
    assert!(
        v["heartbeat_auth"]["accepted"].as_u64().unwrap() > 0,
        "{v:#}"
    );
    let incarnation = node_of(&v, "n3")["incarnation"].clone();

    // n3's heartbeats, from n3's address, with a key that is not the cluster's, claiming a
    // new incarnation: unauthenticated, they must not reach the detector.
    let cluster_id = u64::from(c.config().id);
    let forger = HmacSealer::new(cluster_id, &[[7u8; 32]]).unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.3:0").unwrap();
    const FORGED: u64 = 40;
    for seq in 0..FORGED {
        let message = HeartbeatMessage {
            cluster_id,
            node: 3,
            incarnation: 99,
            network: 0,
            seq: 1_000_000 + seq,
            send_time_ms: 0,
            interval_ms: 100,
        };
        socket
            .send_to(&wire::encode(&message, &forger), ("127.0.0.1", c.port()))
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let v = loop {
        let v = c.status(1).unwrap();
        if v["heartbeat_auth"]["forged"].as_u64().unwrap() >= FORGED {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "forged heartbeats not counted: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(node_of(&v, "n3")["incarnation"], incarnation, "{v:#}");
    assert_eq!(node_of(&v, "n3")["member"], true, "{v:#}");
    assert_eq!(package_of(&v, "web")["nodes"][0], "n1", "{v:#}");
    let text = status_text(&c, 1);
    assert!(
        text.contains(&format!("refused: {FORGED} forged")),
        "{text}"
    );
    assert!(!text.contains("NOT authenticated"), "{text}");
}

#[test]
fn an_insecure_node_says_in_status_that_nothing_is_authenticated() {
    let mut spec = Spec::new();
    spec.insecure = true;
    let c = Cluster::start_with(spec);
    c.wait_all_members(1, FORM_TIMEOUT);
    let v = c.status(1).unwrap();
    assert_eq!(v["heartbeat_auth"]["authenticated"], false, "{v:#}");
    assert_eq!(v["api_auth"]["enforced"], false, "{v:#}");
    let text = status_text(&c, 1);
    assert!(
        text.contains("heartbeats of n1 are NOT authenticated"),
        "{text}"
    );
    assert!(
        text.contains("the API and node requests of n1 are NOT authenticated (--insecure)"),
        "{text}"
    );
    let log = c.log_tail("n1", 200);
    assert!(log.contains("INSECURE (--insecure)"), "{log}");
}

#[test]
fn a_heartbeat_key_others_may_read_refuses_the_start_naming_the_file() {
    let mut c = Cluster::configure(Spec::new());
    let key = c.config_dir().join("pki/heartbeat.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    c.start(1);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = c.exited(1) {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "n1 started with a group-readable key:\n{}",
            c.log_tail("n1", 20)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1), "{}", c.log_tail("n1", 20));
    let log = c.log_tail("n1", 20);
    assert!(log.contains(&key.display().to_string()), "{log}");
}

/// Waits until node `i`'s daemon has exited; its exit code.
fn exit_code_of(c: &mut Cluster, i: usize) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = c.exited(i) {
            return status.code();
        }
        assert!(
            Instant::now() < deadline,
            "n{i} did not exit:\n{}",
            c.log_tail(&format!("n{i}"), 20)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_node_without_credentials_refuses_to_start_unless_insecure() {
    let mut c = Cluster::configure(Spec::new());
    let pki = c.config_dir().join("pki");
    std::fs::remove_dir_all(&pki).unwrap();
    c.start(1);
    assert_eq!(exit_code_of(&mut c, 1), Some(1));
    let log = c.log_tail("n1", 20);
    assert!(
        log.contains(&format!(
            "no credentials ({} does not exist)",
            pki.display()
        )),
        "{log}"
    );
    assert!(
        log.contains("`--insecure` runs without any authentication"),
        "{log}"
    );
}

#[test]
fn insecure_is_refused_on_a_node_that_has_credentials() {
    let mut c = Cluster::configure(Spec::new());
    let pki = c.config_dir().join("pki");
    let out = Command::new(BIN)
        .args(["daemon", "--node", "n1", "--insecure", "--config"])
        .arg(c.config_dir())
        .arg("--state-dir")
        .arg(c.state_dir(1))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "--insecure is for a node without credentials, and {} holds this node's",
            pki.display()
        )),
        "{stderr}"
    );
    // Nothing was started.
    assert!(c.exited(1).is_none());
}

/// An HTTPS request (with `c`'s CA) with an optional token: the status and the JSON answer.
fn call(
    c: &Cluster,
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let r = halcyon_testkit::http::request_tls(
        c.tls(),
        addr,
        method,
        path,
        token,
        body,
        REQUEST_TIMEOUT,
    )
    .unwrap();
    (r.status, r.json().unwrap_or(Value::String(r.body)))
}

/// The event log's records, oldest first (admin token).
fn records(c: &Cluster, i: usize) -> Vec<Value> {
    let (code, v) = c.request(i, "GET", "/v1/events", None);
    assert_eq!(code, 200, "{v}");
    v["events"].as_array().unwrap().clone()
}

#[test]
fn the_api_needs_a_token_with_the_right_role_and_the_event_log_names_who_asked() {
    let c = Cluster::start_with(Spec::new());
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    c.wait_all_members(1, FORM_TIMEOUT);
    let tokens = c.tokens().unwrap().clone();
    let (coordinator, k) = c.coordinator(1);
    let before = records(&c, k).len();
    let api = c.api(k);
    let move_to_n2 = Some(r#"{"node":"n2"}"#);
    let path = "/v1/packages/web/move";

    // No token: 401 on reads and writes, with the reason; nothing changes.
    let (code, v) = call(&c, api, "GET", "/v1/status", None, None);
    assert_eq!(code, 401, "{v}");
    assert!(
        v["error"].as_str().unwrap().starts_with(
            "unauthenticated: this API needs a token (`Authorization: Bearer hct_...`)"
        ),
        "{v}"
    );
    let (code, v) = call(&c, api, "POST", path, None, move_to_n2);
    assert_eq!(code, 401, "{v}");
    // A token that is not the cluster's: 401.
    let forged = format!("hct_{}", "0".repeat(64));
    let (code, v) = call(&c, api, "POST", path, Some(&forged), move_to_n2);
    assert_eq!(code, 401, "{v}");
    assert_eq!(
        v["error"],
        "unauthenticated: the token is not one of this cluster's (tokens.toml)"
    );
    // The read-only token reads, emulates, but may not move: 403.
    let (code, v) = call(&c, api, "GET", "/v1/status", Some(&tokens.read_only), None);
    assert_eq!(code, 200, "{v}");
    let (code, v) = call(
        &c,
        api,
        "POST",
        "/v1/emulate",
        Some(&tokens.read_only),
        Some(r#"{"event":{"kind":"package_move","package":"web","node":"n2"}}"#),
    );
    assert_eq!(code, 200, "{v}");
    let (code, v) = call(&c, api, "POST", path, Some(&tokens.read_only), move_to_n2);
    assert_eq!(code, 403, "{v}");
    assert_eq!(
        v["error"],
        "forbidden: token \"read-only\" has role read-only; POST /v1/packages/web/move needs role admin"
    );
    // Nothing changed: web still on n1, no new event.
    std::thread::sleep(Duration::from_millis(500));
    let v = c.status(k).unwrap();
    assert_eq!(package_of(&v, "web")["nodes"][0], "n1", "{v:#}");
    assert_eq!(records(&c, k).len(), before);
    assert!(v["api_auth"]["enforced"].as_bool().unwrap(), "{v:#}");
    assert!(
        v["api_auth"]["unauthenticated"].as_u64().unwrap() >= 3,
        "{v:#}"
    );
    assert!(v["api_auth"]["forbidden"].as_u64().unwrap() >= 1, "{v:#}");

    // The CLI with the read-only token: refused, exit 1, the reason on stderr.
    let out = Command::new(BIN)
        .args(["package", "move", "web", "-n", "n2", "--api"])
        .arg(api.to_string())
        .arg("--ca")
        .arg(c.config_dir().join("pki/ca.crt"))
        .env("HALCYON_TOKEN", &tokens.read_only)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("forbidden: token \"read-only\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without any token it can find: 401, and where it looked.
    let out = Command::new(BIN)
        .args(["status", "--api"])
        .arg(api.to_string())
        .arg("--ca")
        .arg(c.config_dir().join("pki/ca.crt"))
        .env_remove("HALCYON_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: unauthenticated: this API needs a token"),
        "{stderr}"
    );
    assert!(
        stderr.contains("(no token found: no --token-file; $HALCYON_TOKEN not set;"),
        "{stderr}"
    );

    // The admin token, through a node that is not the coordinator (forwarded): the move
    // runs, and the event log names the token, the client's address and the forwarding node.
    let other = if k == 1 { 2 } else { 1 };
    let (code, v) = call(
        &c,
        c.api(other),
        "POST",
        path,
        Some(&tokens.admin),
        Some(r#"{"node":"n3"}"#),
    );
    assert_eq!(code, 200, "{v}");
    c.wait_web_on(k, "n3", FAILOVER_TIMEOUT);
    let record = records(&c, k)
        .into_iter()
        .rev()
        .find(|r| r["event"].as_str().unwrap().starts_with("package_move web"))
        .unwrap();
    let by = record["by"].as_str().unwrap();
    assert!(by.starts_with("token admin from 127.0.0.1:"), "{record:#}");
    assert!(
        by.ends_with(&format!(" via n{other}")),
        "{record:#} (coordinator {coordinator})"
    );

    // The CLI finds the admin token in `pki` beside the configuration (as README's commands
    // and the demo do): no token given, the move runs directly on the coordinator.
    let out = Command::new(BIN)
        .args(["package", "move", "web", "-n", "n2", "--config"])
        .arg(c.config_dir())
        .env_remove("HALCYON_TOKEN")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.wait_web_on(k, "n2", FAILOVER_TIMEOUT);
    // `halcyon events` shows who asked.
    let (code, text) = cli(&c, k, &["events", "--package", "web"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("token admin from 127.0.0.1:"), "{text}");
}

#[test]
fn internal_endpoints_refuse_non_nodes_and_debug_endpoints_need_the_test_flag() {
    let mut spec = Spec::new();
    spec.test_faults = false;
    let c = Cluster::start_with(spec);
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    c.wait_all_members(1, FORM_TIMEOUT);
    let (_, k) = c.coordinator(1);
    let internal = std::net::SocketAddr::new(c.api(k).ip(), c.port() + 3);
    let before = records(&c, k).len();
    // A command that would halt web, committed by whoever asks: refused when the request
    // names no node, and when it names another node than its connection's.
    let command = halcyon_state::Command::Enqueue {
        event: halcyon_policy::Event::PackageHalt {
            package: "web".into(),
            node: None,
        },
        by: "intruder".into(),
        at: jiff::Timestamp::now(),
        sample: None,
        request: None,
    };
    let body = String::from_utf8(command.encode()).unwrap();
    // The internal port takes only TLS with a node certificate of the cluster CA
    // (tests/https.rs); behind it a request is the node's whose certificate the connection
    // was made with, and says which node it is: sent here over n2's genuine TLS, a request
    // naming no node, and one naming n3, with n3's signature made by n3's own key, are
    // refused (the connection is n2's, whatever the headers say).
    let n2 = node_tls(&halcyon_pki::load(&c.config_dir().join("pki"), "n2").unwrap());
    let unsigned = format!(
        "POST /v1/internal/write HTTP/1.1\r\nHost: {internal}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = tls_request(&n2, internal, &unsigned).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        answer.contains(
            "unauthenticated: node request refused: no x-halcyon-node header (a node names itself in each request)"
        ),
        "{answer}"
    );
    let n3 = halcyon_daemon::auth::Auth::from_credentials(
        &halcyon_pki::load(&c.config_dir().join("pki"), "n3").unwrap(),
    )
    .unwrap();
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let mut request = format!(
        "POST /v1/internal/write HTTP/1.1\r\nHost: {internal}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in n3.sign("POST", "/v1/internal/write", body.as_bytes(), None, now_ms) {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    let answer = tls_request(&n2, internal, &request).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        answer.contains(r#"node request refused: its certificate names [\"n2\"], not \"n3\""#),
        "{answer}"
    );
    // A node renews only its own lease: n2, signing as n2, for n3's is refused; for its own
    // it is answered.
    let n2_auth = halcyon_daemon::auth::Auth::from_credentials(
        &halcyon_pki::load(&c.config_dir().join("pki"), "n2").unwrap(),
    )
    .unwrap();
    let renewal = |node: &str| {
        let body = format!(r#"{{"node":"{node}"}}"#);
        let mut request = format!(
            "POST /v1/internal/lease HTTP/1.1\r\nHost: {internal}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        let now_ms = jiff::Timestamp::now().as_millisecond();
        for (name, value) in
            n2_auth.sign("POST", "/v1/internal/lease", body.as_bytes(), None, now_ms)
        {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(&body);
        tls_request(&n2, internal, &request).unwrap()
    };
    let answer = renewal("n3");
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        answer.contains("n2 may not renew the lease of n3: a node renews only its own"),
        "{answer}"
    );
    let answer = renewal("n2");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""granted":true"#), "{answer}");
    // Nothing was committed: web still runs on n1, no event by the intruder.
    std::thread::sleep(Duration::from_millis(500));
    let v = c.status(k).unwrap();
    assert_eq!(package_of(&v, "web")["nodes"][0], "n1", "{v:#}");
    let after = records(&c, k);
    assert_eq!(after.len(), before);
    assert!(after.iter().all(|r| r["by"] != "intruder"));
    assert!(v["api_auth"]["nodes"].as_u64().unwrap() >= 2, "{v:#}");
    // The leases of the nodes (signed internal requests) keep working.
    assert_eq!(node_of(&v, "n2")["member"], true, "{v:#}");

    // Without --test-faults the debug endpoints do not exist, even for the admin token.
    for path in [
        "/v1/debug/isolate",
        "/v1/debug/hold-actions",
        "/v1/debug/raft-renewals-unanswered",
    ] {
        let (code, v) = c.request(k, "POST", path, None);
        assert_eq!(code, 404, "{v}");
        assert_eq!(v["error"], format!("no such API endpoint: {path}"));
    }
}

#[test]
fn the_raft_port_refuses_peers_without_a_certificate_of_the_cluster_ca() {
    let c = Cluster::start_with(Spec::new());
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    c.wait_all_members(1, FORM_TIMEOUT);
    let v = c.status(1).unwrap();
    assert_eq!(v["api_auth"]["raft_tls"], true, "{v:#}");
    assert_eq!(v["api_auth"]["raft_refused"], 0, "{v:#}");
    let raft = std::net::SocketAddr::new(c.api(1).ip(), c.port() + 1);

    // A client without TLS (a Raft frame in the clear): closed, never answered with a frame.
    {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(raft).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(b"\0\0\0\x02{}").unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        // At most a TLS alert (content type 21), never a length-prefixed JSON reply.
        assert!(answer.is_empty() || answer[0] == 21, "{answer:?}");
    }

    // A node of another cluster (another `halcyon init`: same names, another CA): the
    // handshake fails both ways and nothing reaches Raft.
    let elsewhere = tempfile::tempdir().unwrap();
    let pki = elsewhere.path().join("pki");
    halcyon_pki::init(
        &pki,
        &c.config().credentials_spec(),
        false,
        std::time::SystemTime::now(),
    )
    .unwrap();
    let stranger = halcyon_pki::load(&pki, "n2").unwrap();
    let names = ["n1", "n2", "n3"].iter().map(|n| n.to_string()).collect();
    let tls = halcyon_daemon::raft_tls::RaftTls::new(&stranger, names).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let connected = runtime.block_on(async {
        use halcyon_consensus::Transport;
        tls.transport().connect(raft).await
    });
    let Err(error) = connected else {
        panic!("the stranger's handshake succeeded");
    };
    assert!(
        error.to_string().contains("invalid peer certificate"),
        "{error}"
    );

    // The node counted the refusals and the cluster is as it was.
    let deadline = Instant::now() + Duration::from_secs(10);
    let v = loop {
        let v = c.status(1).unwrap();
        if v["api_auth"]["raft_refused"].as_u64().unwrap() >= 2 {
            break v;
        }
        assert!(Instant::now() < deadline, "refusals not counted: {v:#}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(package_of(&v, "web")["nodes"][0], "n1", "{v:#}");
    let log = c.log_tail("n1", 400);
    assert!(log.contains("Raft connection refused"), "{log}");
}

/// One HTTP request on a Unix socket, no token: the status and the JSON answer.
fn socket_request(
    socket: &std::path::Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, Value)> {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    let body = body.unwrap_or("");
    // One write: a server that answers from the head alone (a refusal) may close before
    // a second one.
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP answer: {raw:?}")))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head:?}")))?;
    Ok((
        code,
        serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
    ))
}

fn own_uid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

#[test]
fn the_local_socket_needs_no_token_and_the_event_log_names_the_local_uid() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let c = Cluster::start_with(Spec::new());
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    c.wait_all_members(1, FORM_TIMEOUT);
    let (coordinator, k) = c.coordinator(1);
    // Through a node that is not the coordinator: the write is forwarded.
    let other = if k == 1 { 2 } else { 1 };
    let socket = c.api_socket(other);
    let metadata = std::fs::symlink_metadata(&socket).unwrap();
    assert!(metadata.file_type().is_socket());
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    assert_eq!(metadata.uid(), own_uid());

    let (code, v) = socket_request(&socket, "GET", "/v1/status", None).unwrap();
    assert_eq!(code, 200, "{v}");
    assert_eq!(package_of(&v, "web")["nodes"][0], "n1", "{v:#}");
    let (code, v) = socket_request(
        &socket,
        "POST",
        "/v1/packages/web/move",
        Some(r#"{"node":"n3"}"#),
    )
    .unwrap();
    assert_eq!(code, 200, "{v}");
    c.wait_web_on(k, "n3", FAILOVER_TIMEOUT);
    let record = records(&c, k)
        .into_iter()
        .rev()
        .find(|r| r["event"].as_str().unwrap().starts_with("package_move web"))
        .unwrap();
    assert_eq!(
        record["by"],
        format!(
            "uid {} (local socket) from pid {} via n{other}",
            own_uid(),
            std::process::id()
        ),
        "{record:#} (coordinator {coordinator})"
    );
    // On the coordinator's own socket: not forwarded.
    let (code, v) = socket_request(
        &c.api_socket(k),
        "POST",
        "/v1/packages/web/move",
        Some(r#"{"node":"n2"}"#),
    )
    .unwrap();
    assert_eq!(code, 200, "{v}");
    c.wait_web_on(k, "n2", FAILOVER_TIMEOUT);
    let (code, text) = cli(&c, k, &["events", "--package", "web"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "uid {} (local socket) from pid {}",
            own_uid(),
            std::process::id()
        )),
        "{text}"
    );
}

#[test]
fn an_api_socket_path_held_by_something_else_refuses_the_start_naming_it() {
    let mut c = Cluster::configure(Spec::new());
    let socket = c.api_socket(1);
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    std::fs::write(&socket, "not a socket").unwrap();
    c.start(1);
    assert_eq!(exit_code_of(&mut c, 1), Some(1));
    let log = c.log_tail("n1", 20);
    assert!(
        log.contains(&format!(
            "API socket {}: the path exists and is a regular file, not a socket; it is left as \
             it is",
            socket.display()
        )),
        "{log}"
    );
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "not a socket");
}

/// Not a test: the body of the client the next test runs as another user (only with the
/// environment variable set). Prints `ANSWER CODE JSON` or `ERROR KIND`.
#[test]
fn local_socket_client_helper() {
    let Some(socket) = std::env::var_os("HALCYON_TEST_SOCKET_CLIENT") else {
        return;
    };
    let body = std::env::var("HALCYON_TEST_SOCKET_BODY").ok();
    let method = if body.is_some() { "POST" } else { "GET" };
    let path = std::env::var("HALCYON_TEST_SOCKET_PATH").unwrap();
    match socket_request(
        std::path::Path::new(&socket),
        method,
        &path,
        body.as_deref(),
    ) {
        Ok((code, v)) => println!("ANSWER {code} {v}"),
        Err(e) => println!("ERROR {:?}", e.kind()),
    }
}

/// Runs [`local_socket_client_helper`] as user `nobody` (65534): its output line.
fn as_nobody(socket: &std::path::Path, path: &str, body: Option<&str>) -> String {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["local_socket_client_helper", "--exact", "--nocapture"])
        .arg("--test-threads=1")
        .env("HALCYON_TEST_SOCKET_CLIENT", socket)
        .env("HALCYON_TEST_SOCKET_PATH", path)
        .uid(65534)
        .gid(65534);
    if let Some(body) = body {
        command.env("HALCYON_TEST_SOCKET_BODY", body);
    }
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // libtest prints the test's name on the same line.
    stdout
        .lines()
        .find_map(|l| {
            l.find("ANSWER ")
                .or_else(|| l.find("ERROR "))
                .map(|at| l[at..].to_owned())
        })
        .unwrap_or_else(|| {
            panic!(
                "the helper said nothing: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

#[test]
fn the_local_socket_refuses_another_user_even_when_its_mode_lets_it_connect() {
    if own_uid() != 0 {
        eprintln!("SKIPPED: needs root (to run a client as another user, nobody)");
        return;
    }
    let c = Cluster::start_with(Spec::new());
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    let socket = c.api_socket(1);
    // Let nobody reach the socket's directory; the socket itself stays 0600.
    let mut dir = socket.parent().unwrap();
    while dir.starts_with(c.path()) {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir = dir.parent().unwrap();
    }
    assert_eq!(
        as_nobody(&socket, "/v1/status", None),
        "ERROR PermissionDenied"
    );
    // A mode opened by hand: nobody connects, and the daemon still refuses it (SO_PEERCRED).
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let forbidden = format!(
        "forbidden: the local socket serves root and the daemon's user (uid {}); uid 65534 may \
         use the TCP API with a token",
        own_uid()
    );
    let line = as_nobody(&socket, "/v1/status", None);
    assert!(line.starts_with("ANSWER 403 "), "{line}");
    assert!(line.contains(&forbidden), "{line}");
    let line = as_nobody(&socket, "/v1/packages/web/move", Some(r#"{"node":"n2"}"#));
    assert!(line.starts_with("ANSWER 403 "), "{line}");
    // Nothing changed, and both refusals are counted.
    std::thread::sleep(Duration::from_millis(500));
    let v = c.status(1).unwrap();
    assert_eq!(package_of(&v, "web")["nodes"][0], "n1", "{v:#}");
    assert!(v["api_auth"]["forbidden"].as_u64().unwrap() >= 2, "{v:#}");
    assert!(
        c.log_tail("n1", 50)
            .contains("refused a local-socket request GET /v1/status from uid 65534"),
        "{}",
        c.log_tail("n1", 50)
    );
}

#[test]
fn the_cli_uses_the_local_socket_without_a_token_and_falls_back_to_tcp() {
    let c = Cluster::start_with(Spec::new());
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    c.wait_all_members(1, FORM_TIMEOUT);
    // No token anywhere the CLI looks (the daemons never read admin.token).
    std::fs::remove_file(c.config_dir().join("pki/admin.token")).unwrap();
    let socket = c.api_socket(2);
    let halcyon = |args: &[&str]| {
        code_and_text(
            Command::new(BIN)
                .args(args)
                .env_remove("HALCYON_TOKEN")
                .output()
                .unwrap(),
        )
    };
    let config = c.config_dir().display().to_string();
    let socket_arg = socket.display().to_string();
    let (code, text) = halcyon(&["status", "--socket", &socket_arg, "--config", &config]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("web"), "{text}");
    let (code, text) = halcyon(&[
        "package",
        "move",
        "web",
        "-n",
        "n2",
        "--socket",
        &socket_arg,
        "--config",
        &config,
    ]);
    assert_eq!(code, 0, "{text}");
    c.wait_web_on(1, "n2", FAILOVER_TIMEOUT);
    let (code, text) = halcyon(&["events", "--package", "web", "--socket", &socket_arg]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("uid {} (local socket) from pid", own_uid())),
        "{text}"
    );
    // `events --follow` reads the stream through the socket too: the move is printed.
    let mut follow = Command::new(BIN)
        .args([
            "events",
            "--follow",
            "--package",
            "web",
            "--socket",
            &socket_arg,
        ])
        .env_remove("HALCYON_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("package_move web")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    follow.kill().unwrap();
    follow.wait().unwrap();
    assert!(
        seen.iter().any(|l| l.contains("package_move web")),
        "{seen:#?}"
    );
    // Another cluster's --config does not use the default socket: TCP, which needs a token.
    let (code, text) = halcyon(&["status", "--config", &config]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("(no token found: no --token-file;"), "{text}");
    // A socket that cannot be used: TCP with the token given.
    let token_file = c.path().join("admin-token");
    std::fs::write(&token_file, &c.tokens().unwrap().admin).unwrap();
    let token_arg = token_file.display().to_string();
    let gone = c.path().join("no-such.sock").display().to_string();
    let (code, text) = halcyon(&[
        "status",
        "--socket",
        &gone,
        "--config",
        &config,
        "--token-file",
        &token_arg,
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("web"), "{text}");
}
