//! Watching a live loopback cluster: the event stream (`GET /v1/events/stream`) and its
//! resume after a reconnect, and the Prometheus metrics (`GET /metrics`), during a failover.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use halcyon_daemon::client::{SseMessage, event_stream};
use serde_json::Value;

/// Asserts that `value` is a `definition` of the published schema
/// (`docs/api/halcyon-api.schema.json`): the schema describes what the daemon answers.
fn assert_schema(definition: &str, value: &Value) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/api/halcyon-api.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let reference = serde_json::json!({ "$ref": format!("#/$defs/{definition}") });
    let problems = halcyon_testkit::schema::check(&schema, &reference, value, "$");
    assert!(
        problems.is_empty(),
        "not a {definition} of the schema: {problems:#?}\n{value:#}"
    );
}

/// How long the stream may stay silent before the test gives it up.
const IDLE: Duration = Duration::from_secs(15);

/// Reads the event stream at `addr` (resuming after `last`) on a thread of its own; its
/// messages come on the channel until the stream ends or the receiver is dropped.
fn follow(
    addr: SocketAddr,
    tls: Option<&halcyon_daemon::client::Tls>,
    path: &str,
    token: Option<&str>,
    last: Option<u64>,
) -> mpsc::Receiver<SseMessage> {
    let (tx, rx) = mpsc::channel();
    let path = path.to_owned();
    let token = token.map(str::to_owned);
    let tls = tls.cloned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let mut stream = event_stream(
                addr,
                tls.as_ref()
                    .map(|t| (t, halcyon_daemon::raft_tls::address_name(addr))),
                &path,
                token.as_deref(),
                last,
                IDLE,
            )
            .await
            .unwrap();
            while let Ok(Some(message)) = stream.next().await {
                if tx.send(message).is_err() {
                    return;
                }
            }
        });
    });
    rx
}

/// The next message, within `limit`.
fn next(rx: &mpsc::Receiver<SseMessage>, limit: Duration) -> SseMessage {
    let m = rx
        .recv_timeout(limit)
        .unwrap_or_else(|e| panic!("no stream message within {limit:?}: {e}"));
    conforms(&m);
    m
}

/// Asserts that a stream message's data is what the schema says.
fn conforms(m: &SseMessage) {
    if m.event.is_empty() && m.data.is_empty() {
        return; // only the mark (an `id:` with a comment)
    }
    let definition = match m.event.as_str() {
        "status" => "StatusResponse",
        "record" => "EventRecord",
        "lost" | "dropped" => "StreamNotice",
        other => panic!("unexpected stream message {other:?}: {m:?}"),
    };
    assert_schema(definition, &serde_json::from_str(&m.data).unwrap());
}

/// Takes messages until `check` holds for one; returns it and everything before it.
fn until(
    rx: &mpsc::Receiver<SseMessage>,
    limit: Duration,
    what: &str,
    check: impl Fn(&SseMessage, &Value) -> bool,
) -> (SseMessage, Vec<SseMessage>) {
    let deadline = Instant::now() + limit;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = rx.recv_timeout(left).unwrap_or_else(|e| {
            panic!("{what}: not on the stream within {limit:?} ({e}); got {before:#?}")
        });
        conforms(&m);
        let data: Value = serde_json::from_str(&m.data).unwrap_or(Value::Null);
        if check(&m, &data) {
            return (m, before);
        }
        before.push(m);
    }
}

fn record_ids(messages: &[SseMessage]) -> Vec<u64> {
    messages
        .iter()
        .filter(|m| m.event == "record")
        .map(|m| {
            serde_json::from_str::<Value>(&m.data).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn the_event_stream_shows_a_failover_live_and_resumes_after_a_reconnect() {
    let mut c = Cluster::start_with(Spec::new());
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    c.wait_all_members(3, FORM_TIMEOUT);
    let rx = follow(
        c.api(3),
        c.tls(),
        "/v1/events/stream",
        c.admin_token(),
        None,
    );
    // It opens with the status, then every record the node keeps, each with the mark.
    let first = next(&rx, Duration::from_secs(5));
    assert_eq!(first.event, "status", "{first:?}");
    let status: Value = serde_json::from_str(&first.data).unwrap();
    assert_eq!(status["schema_version"], halcyon_api::SCHEMA_VERSION);
    assert_eq!(status["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(package_of(&status, "web")["nodes"][0], "n1");
    let (cluster_start, _) = until(&rx, Duration::from_secs(5), "cluster_start", |m, d| {
        m.event == "record" && d["event"] == "cluster_start"
    });
    assert!(cluster_start.id.is_some(), "{cluster_start:?}");

    let killed = Instant::now();
    c.kill(1);
    // The failover, live: the record of n1's failure finished, and web up on another node
    // (in either order: the package may be up before its event is finished).
    let mut down: Option<Value> = None;
    let mut moved: Option<Value> = None;
    while down.is_none() || moved.is_none() {
        let m = next(&rx, FAILOVER_TIMEOUT);
        let d: Value = serde_json::from_str(&m.data).unwrap_or(Value::Null);
        if m.event == "record"
            && d["event"] == "node_down n1 (failure)"
            && d["outcome"] != "running"
        {
            down = Some(d);
        } else if m.event == "status"
            && package_of(&d, "web")["status"] == "up"
            && package_of(&d, "web")["nodes"][0] != "n1"
        {
            moved = Some(d);
        }
    }
    eprintln!(
        "failover seen on the stream {:?} after the kill",
        killed.elapsed()
    );
    let (down, moved) = (down.unwrap(), moved.unwrap());
    let down_id = down["id"].as_u64().unwrap();
    assert!(
        down["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "run"),
        "{down:#}"
    );
    assert_eq!(
        node_of(&moved, "n1")["reachable"],
        "unreachable",
        "{moved:#}"
    );
    drop(rx);

    // Resume: after a mark, only the records after it come again.
    let rx = follow(
        c.api(3),
        c.tls(),
        "/v1/events/stream",
        c.admin_token(),
        Some(down_id - 1),
    );
    let (last, before) = until(
        &rx,
        Duration::from_secs(5),
        "the node_down record again",
        |m, d| m.event == "record" && d["id"] == down_id,
    );
    assert_eq!(before[0].event, "status");
    assert!(record_ids(&before).is_empty(), "{before:#?}");
    let mark: u64 = last.id.as_deref().unwrap().parse().unwrap();
    assert!(
        mark >= down_id,
        "the finished record is under the mark: {last:?}"
    );
    drop(rx);
    // A client that has everything gets no record, and the mark in a comment message.
    let rx = follow(
        c.api(3),
        c.tls(),
        "/v1/events/stream",
        c.admin_token(),
        Some(mark),
    );
    assert_eq!(next(&rx, Duration::from_secs(5)).event, "status");
    assert!(
        !matches!(rx.recv_timeout(Duration::from_millis(500)), Ok(m) if m.event == "record"),
        "a record after the mark"
    );
    drop(rx);

    // Filters: an unknown package is refused before any stream.
    let (code, body) = c.request(3, "GET", "/v1/events/stream?package=nope", None);
    assert_eq!(code, 404, "{body}");

    // A quiet stream sends a heartbeat comment (every 5 s).
    let tcp = TcpStream::connect(c.api(2)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let tls = rustls::ClientConnection::new(
        c.tls().expect("the test cluster has credentials").clone(),
        rustls::pki_types::ServerName::IpAddress(c.api(2).ip().into()),
    )
    .unwrap();
    let mut raw = rustls::StreamOwned::new(tls, tcp);
    write!(
        raw,
        "GET /v1/events/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nLast-Event-ID: {mark}\r\n\r\n",
        c.admin_token().expect("the test cluster has credentials")
    )
    .unwrap();
    let started = Instant::now();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains(":heartbeat") && !seen.contains(": heartbeat") {
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "no heartbeat within 8 s: {seen}"
        );
        let n = raw.read(&mut buf).expect("the stream stays open");
        assert!(n > 0, "the stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("content-type: text/event-stream"), "{seen}");
}

/// `GET /metrics` of node `i`: every sample as `name{labels}` -> value.
fn scrape(c: &Cluster, i: usize) -> std::collections::BTreeMap<String, f64> {
    let body = metrics_text(c, i);
    assert!(body.ends_with("# EOF\n"), "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').unwrap();
            (key.to_owned(), value.parse().unwrap())
        })
        .collect()
}

fn sample(m: &std::collections::BTreeMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("{key} not scraped: {:#?}", m.keys().collect::<Vec<_>>()))
}

#[test]
fn metrics_follow_a_failover() {
    let mut c = Cluster::start_with(Spec::new());
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    c.wait_all_members(2, FORM_TIMEOUT);
    let before = scrape(&c, 2);
    for (key, value) in [
        ("halcyon_quorum", 1.0),
        ("halcyon_node_member{node=\"n1\"}", 1.0),
        ("halcyon_node_reachable{node=\"n1\"}", 1.0),
        ("halcyon_path_up{node=\"n1\",network=\"lan1\"}", 1.0),
        ("halcyon_package_running{package=\"web\",node=\"n1\"}", 1.0),
        ("halcyon_package_running{package=\"web\",node=\"n2\"}", 0.0),
        ("halcyon_package_status{package=\"web\",status=\"up\"}", 1.0),
        ("halcyon_failover_duration_seconds_count", 0.0),
        ("halcyon_heartbeat_authenticated", 1.0),
    ] {
        assert_eq!(sample(&before, key), value, "{key}");
    }
    assert!(sample(&before, "halcyon_raft_term") >= 1.0);
    assert!(sample(&before, "halcyon_process_resident_memory_bytes") > 1e6);
    assert!(sample(&before, "halcyon_process_cpu_seconds_total") > 0.0);
    assert!(sample(&before, "halcyon_lease_remaining_seconds") > 0.0);
    assert!(sample(&before, "halcyon_heartbeats_received_total") > 0.0);
    let coordinators: f64 = (1..=3)
        .map(|i| sample(&scrape(&c, i), "halcyon_is_coordinator"))
        .sum();
    assert_eq!(coordinators, 1.0);
    // The followers' renewals come on the Raft transport; the internal API answers only
    // those that found no answer there in time (the first few after formation may, while
    // the new coordinator's Raft server has no answerer yet): soon the Raft ones outnumber
    // them, and they alone grow.
    let renewals = |transport: &str| -> f64 {
        (1..=3)
            .map(|i| {
                sample(
                    &scrape(&c, i),
                    &format!("halcyon_lease_renewals_answered_total{{transport=\"{transport}\"}}"),
                )
            })
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (raft, http) = (renewals("raft"), renewals("http"));
        if raft > 0.0 && http < raft {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "renewals answered: raft {raft}, http {http}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let node_down = "halcyon_events_total{kind=\"node_down\",outcome=\"done\"}";
    assert!(!before.contains_key(node_down), "{before:#?}");

    c.kill(1);
    // Scraped during the failover: n1 unreachable first, then the package on another node.
    let started = Instant::now();
    let mut saw_unreachable_before_moved = false;
    let after = loop {
        let m = scrape(&c, 2);
        let moved = ["n2", "n3"].iter().any(|n| {
            m.get(&format!(
                "halcyon_package_running{{package=\"web\",node=\"{n}\"}}"
            )) == Some(&1.0)
        });
        if !moved && m.get("halcyon_node_reachable{node=\"n1\"}") == Some(&0.0) {
            saw_unreachable_before_moved = true;
        }
        if moved && m.get("halcyon_failover_duration_seconds_count") == Some(&1.0) {
            break m;
        }
        assert!(
            started.elapsed() < FAILOVER_TIMEOUT,
            "no failover in the metrics: {m:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        saw_unreachable_before_moved,
        "n1 unreachable was never scraped before the move"
    );
    for (key, value) in [
        ("halcyon_node_reachable{node=\"n1\"}", 0.0),
        ("halcyon_node_member{node=\"n1\"}", 0.0),
        ("halcyon_path_up{node=\"n1\",network=\"lan1\"}", 0.0),
        ("halcyon_package_running{package=\"web\",node=\"n1\"}", 0.0),
        ("halcyon_quorum", 1.0),
        (node_down, 1.0),
        (
            "halcyon_event_duration_seconds_count{kind=\"node_down\"}",
            1.0,
        ),
    ] {
        assert_eq!(sample(&after, key), value, "{key}");
    }
    let failover = sample(&after, "halcyon_failover_duration_seconds_sum");
    assert!(
        failover > 0.0 && failover < FAILOVER_TIMEOUT.as_secs_f64(),
        "{failover}"
    );
    assert!(sample(&after, "halcyon_raft_term") >= sample(&before, "halcyon_raft_term"));
    // The failover's commands were committed: the commit index moved on, and no node has
    // applied what it does not know to be committed.
    let (committed, applied) = (
        sample(&after, "halcyon_raft_commit_index"),
        sample(&after, "halcyon_raft_applied_index"),
    );
    assert!(
        committed > sample(&before, "halcyon_raft_commit_index"),
        "commit index {committed}"
    );
    assert!(
        applied <= committed,
        "applied {applied} > committed {committed}"
    );
    let coordinators: f64 = (2..=3)
        .map(|i| sample(&scrape(&c, i), "halcyon_is_coordinator"))
        .sum();
    assert_eq!(coordinators, 1.0);
    eprintln!(
        "failover in the metrics: {failover:.3} s (from the failure committed to the package started)"
    );
}

#[test]
fn the_grafana_dashboard_uses_only_metrics_the_daemon_exports() {
    let c = Cluster::start_with(Spec::new());
    c.wait_all_members(1, FORM_TIMEOUT);
    let body = metrics_text(&c, 1);
    let families: std::collections::BTreeSet<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let dashboard = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana/halcyon.json"),
    )
    .unwrap();
    let parsed: Value = serde_json::from_str(&dashboard).unwrap();
    assert!(parsed["panels"].as_array().unwrap().len() > 10);
    let mut used = std::collections::BTreeSet::new();
    let mut rest = dashboard.as_str();
    while let Some(at) = rest.find("halcyon_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        used.insert(name);
    }
    for name in &used {
        let family = ["_total", "_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        assert!(
            families.contains(name.as_str()) || families.contains(family),
            "the dashboard uses {name}, which /metrics does not export: {families:?}"
        );
    }
}

#[test]
fn webhooks_receive_the_failover_record_and_failures_are_counted() {
    // A receiver that answers 200 and hands over every body, and an address nobody listens
    // on (bound, then closed: connections are refused).
    let (live, bodies) = webhook_receiver();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut spec = Spec::new();
    spec.edits_cluster(move |config| {
        config.webhooks = vec![
            halcyon_testkit::Webhook {
                url: format!("http://{live}/halcyon"),
                events: vec!["node_down".into(), "error".into()],
                timeout: None,
                retries: None,
            },
            halcyon_testkit::Webhook {
                url: format!("http://{dead}/nobody"),
                events: vec!["node_down".into()],
                timeout: Some(Duration::from_millis(500)),
                retries: Some(1),
            },
        ];
    });
    let mut c = Cluster::start_with(spec);
    c.wait_web_on(2, "n1", FORM_TIMEOUT);
    c.wait_all_members(2, FORM_TIMEOUT);
    // Only node_down is chosen: the joins were not sent.
    assert!(bodies.recv_timeout(Duration::from_millis(300)).is_err());
    c.kill(1);
    let body = bodies
        .recv_timeout(FAILOVER_TIMEOUT)
        .expect("the webhook receives the node_down record");
    assert_schema("WebhookPayload", &body);
    assert_eq!(body["reason"], "finished");
    assert_eq!(body["record"]["event"], "node_down n1 (failure)");
    assert_eq!(body["record"]["outcome"], "done");
    let sender = body["sent_by"].as_str().unwrap().to_owned();
    assert_ne!(sender, "n1");
    let coordinator: usize = sender[1..].parse().unwrap();
    // The dead one: two attempts (0.5 s apart), then counted as failed on the sender.
    let started = Instant::now();
    let dead_failed = format!(
        "halcyon_webhook_deliveries_total{{url=\"http://{dead}/nobody\",result=\"failed\"}}"
    );
    let live_delivered = format!(
        "halcyon_webhook_deliveries_total{{url=\"http://{live}/halcyon\",result=\"delivered\"}}"
    );
    loop {
        let m = scrape(&c, coordinator);
        if m.get(&dead_failed) == Some(&1.0) {
            assert_eq!(m.get(&live_delivered), Some(&1.0), "{m:#?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no failed delivery counted: {m:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Exactly once here (no coordinator change).
    assert!(bodies.recv_timeout(Duration::from_millis(500)).is_err());
}

/// Kills the child on drop (a `halcyon events --follow` of the test).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn events_follow_moves_to_another_node_when_its_node_dies_and_prints_each_event_once() {
    let mut c = Cluster::start_with(Spec::new());
    c.wait_web_on(2, "n1", FORM_TIMEOUT);
    c.wait_all_members(2, FORM_TIMEOUT);
    // With the configuration, the CLI tries the nodes in order: n1 first, the one killed.
    let mut follower = KillOnDrop(
        std::process::Command::new(BIN)
            .args(["events", "--follow", "--json", "--config"])
            .arg(c.config_dir())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stdout = follower.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen: Vec<Value> = Vec::new();
    let mut take_until = |event: &str, limit: Duration| {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("{event} not followed within {limit:?}; got {seen:#?}"));
            let record: Value = serde_json::from_str(&line).unwrap();
            seen.push(record.clone());
            if record["event"] == event {
                return;
            }
        }
    };
    take_until("node_up n3", Duration::from_secs(10));
    c.kill(1);
    take_until("node_down n1 (failure)", FAILOVER_TIMEOUT);
    // Everything once, in order, finished.
    let ids: Vec<u64> = seen.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(ids, sorted, "each record once, in order: {seen:#?}");
    assert!(seen.iter().all(|r| r["outcome"] != "running"), "{seen:#?}");
    assert_eq!(ids.first(), Some(&0), "from the first record kept");
    drop(follower);
}

/// The next webhook body within `limit` whose `reason` is `reason` (others are skipped).
fn next_body(bodies: &mpsc::Receiver<Value>, reason: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match bodies.recv_timeout(left) {
            Ok(body) if body["reason"] == reason => return body,
            Ok(_) => {}
            Err(_) => panic!("no {reason} webhook within {limit:?}"),
        }
    }
}

#[test]
fn an_event_running_too_long_is_sent_to_webhooks_again_every_maximum_duration() {
    let (live, bodies) = webhook_receiver();
    let mut spec = Spec::new();
    spec.edits_cluster(move |config| {
        config.webhooks = vec![halcyon_testkit::Webhook {
            url: format!("http://{live}/halcyon"),
            events: vec!["event_too_long".into()],
            timeout: None,
            retries: None,
        }];
    });
    spec.rules(|dir| {
        let journal = dir.join("journal");
        format!(
            "[[event]]\nname = \"UE_SLOW\"\n\
             program = 'event \"sleep 4.5\" 0'\n\
             max_duration = \"1s\"\n\
             notify = \"echo \\\"notify $HALCYON_NOTIFY_PHASE\\\" >> {}\"\n",
            journal.display()
        )
    });
    let c = Cluster::start_with(spec);
    c.wait_all_members(1, FORM_TIMEOUT);
    let (code, out) = cli(&c, 1, &["event", "raise", "UE_SLOW", "--node", "n2"]);
    assert_eq!(code, 0, "{out}");
    // Past 1 s: the first; past 2 s: the second, saying so.
    let first = next_body(&bodies, "too_long", FAILOVER_TIMEOUT);
    assert_schema("WebhookPayload", &first);
    assert_eq!(first["record"]["event"], "UE_SLOW on n2", "{first:#}");
    assert_eq!(first["record"]["outcome"], "running", "{first:#}");
    let notes = |body: &Value| -> Vec<String> {
        body["record"]["notes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["text"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        notes(&first)
            .iter()
            .any(|n| n.contains("longer than its maximum duration (1s)")),
        "{first:#}"
    );
    let second = next_body(&bodies, "too_long", Duration::from_secs(3));
    assert_eq!(second["record"]["id"], first["record"]["id"]);
    assert!(
        notes(&second)
            .iter()
            .any(|n| n.contains("still runs after 2 times its maximum duration (1s)")),
        "{second:#}"
    );
    // The notify command ran for each warning, with the phase in its environment.
    let journal = c.path().join("journal");
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&journal).unwrap_or_default();
        if text.lines().filter(|l| *l == "notify too_long").count() >= 2 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Only too_long was chosen: the finished record is not sent.
    let end = Instant::now() + Duration::from_secs(8);
    while let Ok(body) = bodies.recv_timeout(end.saturating_duration_since(Instant::now())) {
        assert_eq!(body["reason"], "too_long", "{body:#}");
    }
}

#[test]
fn an_isolated_node_sends_quorum_lost_itself() {
    let (live, bodies) = webhook_receiver();
    let mut spec = Spec::new();
    spec.edits_cluster(move |config| {
        config.webhooks = vec![halcyon_testkit::Webhook {
            url: format!("http://{live}/halcyon"),
            events: vec!["quorum_lost".into(), "quorum_regained".into()],
            timeout: None,
            retries: None,
        }];
    });
    let c = Cluster::start_with(spec);
    c.wait_all_members(1, FORM_TIMEOUT);
    // Every node has had the quorum (its observer looks every second).
    std::thread::sleep(Duration::from_millis(1500));
    assert!(bodies.try_recv().is_err(), "no quorum change yet");
    let (code, body) = c.request(1, "POST", "/v1/debug/isolate", None);
    assert_eq!(code, 200, "{body}");
    let body = next_body(&bodies, "quorum_lost", FAILOVER_TIMEOUT);
    assert_schema("WebhookPayload", &body);
    assert_eq!(body["sent_by"], "n1", "{body:#}");
    assert!(body["record"].is_null(), "{body:#}");
    let quorum = &body["quorum"];
    assert_eq!(quorum["node"], "n1");
    assert_eq!(quorum["has_quorum"], false);
    assert_eq!(
        quorum["unreachable"],
        serde_json::json!(["n2", "n3"]),
        "{body:#}"
    );
    assert!(
        quorum["detail"]
            .as_str()
            .unwrap()
            .starts_with("no quorum: 1 of 3 voters reachable from n1"),
        "{body:#}"
    );
    // Once; the other two keep their quorum and send nothing.
    assert!(bodies.recv_timeout(Duration::from_secs(3)).is_err());
}

#[test]
fn a_coordinator_without_its_followers_sends_quorum_lost_then_regained() {
    let (live, bodies) = webhook_receiver();
    let mut spec = Spec::new();
    spec.edits_cluster(move |config| {
        config.webhooks = vec![halcyon_testkit::Webhook {
            url: format!("http://{live}/halcyon"),
            events: vec!["quorum_lost".into(), "quorum_regained".into()],
            timeout: None,
            retries: None,
        }];
    });
    let mut c = Cluster::start_with(spec);
    c.wait_all_members(1, FORM_TIMEOUT);
    std::thread::sleep(Duration::from_millis(1500));
    let (coordinator, k) = c.coordinator(1);
    let others: Vec<usize> = (1..=3).filter(|i| *i != k).collect();
    for &i in &others {
        c.kill(i);
    }
    let lost = next_body(&bodies, "quorum_lost", FAILOVER_TIMEOUT);
    assert_eq!(lost["sent_by"], coordinator.as_str(), "{lost:#}");
    let mut unreachable: Vec<String> = others.iter().map(|i| format!("n{i}")).collect();
    unreachable.sort();
    assert_eq!(
        lost["quorum"]["unreachable"],
        serde_json::json!(unreachable)
    );
    for &i in &others {
        c.start(i);
    }
    let back = next_body(&bodies, "quorum_regained", FORM_TIMEOUT);
    assert_schema("WebhookPayload", &back);
    assert_eq!(back["sent_by"], coordinator.as_str(), "{back:#}");
    assert_eq!(back["quorum"]["has_quorum"], true);
    assert!(
        back["quorum"]["detail"]
            .as_str()
            .unwrap()
            .starts_with(&format!("quorum regained by {coordinator} after ")),
        "{back:#}"
    );
}

/// A coordinator that leaves the renewals that come on the Raft transport unanswered (as one
/// of an earlier version does, in a rolling upgrade) is asked on its internal API: every
/// lease holds, and what it answers comes there.
#[test]
fn renewals_go_to_the_internal_api_of_a_coordinator_that_leaves_them_unanswered_on_raft() {
    let c = Cluster::start_with(Spec::new());
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    c.wait_all_members(1, FORM_TIMEOUT);
    let (_, k) = c.coordinator(1);
    let renewals = |transport: &str| {
        sample(
            &scrape(&c, k),
            &format!("halcyon_lease_renewals_answered_total{{transport=\"{transport}\"}}"),
        )
    };
    let (code, v) = c.request(k, "POST", "/v1/debug/raft-renewals-unanswered", None);
    assert_eq!(code, 200, "{v}");
    let (raft, http) = (renewals("raft"), renewals("http"));
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        for i in (1..=3).filter(|i| *i != k) {
            let lease = sample(&scrape(&c, i), "halcyon_lease_remaining_seconds");
            assert!(lease > 0.0, "n{i}'s lease lapsed");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(renewals("raft"), raft, "answered on the Raft transport");
    let on_http = renewals("http") - http;
    assert!(
        on_http >= 10.0,
        "{on_http} renewals answered on the internal API in 2 s"
    );
    let v = c.status(k).unwrap();
    assert_eq!(package_of(&v, "web")["nodes"][0], "n1", "{v:#}");
    for n in ["n1", "n2", "n3"] {
        assert_eq!(node_of(&v, n)["member"], true, "{v:#}");
    }
}
