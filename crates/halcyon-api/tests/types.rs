//! Every response type round-trips through JSON and carries `schema_version`; the field
//! names clients read are the ones the API has always had.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::PathBuf;

use halcyon_api::*;
use halcyon_config::{Config, NodeName, PackageName};
use halcyon_policy::{ActionKind, ClusterState, Event};
use halcyon_state::{ActionRecord, LaunchRecord, NoteRecord, Outcome, RestartCounter};
use jiff::Timestamp;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Serialises `value`, checks its schema version, reads it back and compares; returns the
/// JSON for further checks.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) -> Value {
    let json = serde_json::to_value(value).unwrap();
    assert_eq!(
        json["schema_version"],
        Value::from(SCHEMA_VERSION),
        "{json}"
    );
    let text = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, value, "{text}");
    json
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_780_000_000 + seconds).unwrap()
}

fn example() -> Config {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/cluster");
    halcyon_config::load(&[dir]).unwrap().0
}

fn record() -> EventRecord {
    EventRecord {
        id: 7,
        event: "package_move db node2".into(),
        by: "api".into(),
        outcome: Outcome::DoneWithFailures,
        queued_at: at(0),
        started_at: Some(at(1)),
        finished_at: None,
        error: Some("halt of db failed".into()),
        plan: Some("step 1: halt db on node1\n".into()),
        program: Some("segment 1: all: halcyon:release\n".into()),
        actions: vec![ActionRecord {
            step: 0,
            index: 0,
            kind: ActionKind::Halt,
            package: Some(PackageName::from("db")),
            node: NodeName::from("node1"),
            ok: false,
            detail: "exit 1".into(),
            at: at(2),
        }],
        launches: vec![LaunchRecord {
            launch: 1,
            node: None,
            command: "logger before".into(),
            kind: halcyon_events::LaunchKind::Notify {
                phase: halcyon_events::NotifyPhase::Before,
                result: None,
            },
            assigned_at: at(1),
            started_at: Some(at(1)),
            finished_at: Some(at(2)),
            status: Some(0),
            output: "ok\n".into(),
            abandoned: None,
        }],
        notes: vec![NoteRecord {
            at: at(3),
            text: "answered retry".into(),
        }],
    }
}

/// [`record`] as `GET /v1/status` lists it.
fn summary() -> EventSummary {
    let r = record();
    EventSummary {
        id: r.id,
        event: r.event,
        by: r.by,
        outcome: r.outcome,
        queued_at: r.queued_at,
        started_at: r.started_at,
        finished_at: r.finished_at,
        error: r.error,
        actions: r.actions.len(),
        launches: r.launches.len(),
    }
}

fn status() -> StatusResponse {
    let restarts = BTreeMap::from([(
        NodeName::from("node1"),
        BTreeMap::from([(
            "postgres".to_owned(),
            RestartCounter {
                count: 2,
                last: Some(at(5)),
                last_exit: Some("exit 1".into()),
            },
        )]),
    )]);
    StatusResponse {
        heartbeat_auth: Default::default(),
        api_auth: Default::default(),
        config_drift: Vec::new(),
        generation: 2,
        reconfiguration: None,
        detection: vec![halcyon_api::DetectionStatus {
            network: "lan1".into(),
            interval_ms: 100,
            sensitivity: 4,
            detection_ms: 400,
        }],
        schema_version: SCHEMA_VERSION,
        cluster: "example".into(),
        answered_by: "node1".into(),
        halted: false,
        coordinator: Some("node2".into()),
        quorum: Quorum {
            has_quorum: true,
            term: 3,
            voters: vec!["node1".into(), "node2".into()],
            last_applied: 42,
            detail: None,
            foreign_requests: 0,
        },
        watchdog: "not configured".into(),
        lease: LeaseStatus {
            remaining_ms: 500,
            duration_ms: 619,
            renewal_slowest_ms: 12,
            warning: None,
            unsettled_ms: Some(800),
            slow_elections: Some(halcyon_api::SlowElections {
                interval_ms: 100,
                running_interval_ms: 50,
                nodes: vec!["node2".into()],
            }),
        },
        nodes: vec![NodeStatus {
            name: NodeName::from("node1"),
            number: 1,
            member: true,
            reachable: Reachability::Reachable,
            departed: false,
            halted_by_admin: false,
            incarnation: Some(4),
            networks: vec![NetworkView {
                network: "lan1".into(),
                path: PathView::Local,
                adapter_down: false,
                down: false,
            }],
            fence: None,
            excluded: None,
            joining: false,
        }],
        packages: vec![PackageStatus {
            name: PackageName::from("db"),
            status: "up".into(),
            nodes: BTreeSet::from([NodeName::from("node1")]),
            switching: true,
            failures: BTreeMap::from([(NodeName::from("node2"), at(4))]),
            failures_expire_at: BTreeMap::from([(NodeName::from("node2"), at(604))]),
            error: None,
            restarts: Some(restarts),
        }],
        execution: Some(ExecutionStatus {
            id: 8,
            event: "node_down node3 failure".into(),
            state: ExecutionState::Error,
            segment: Some(2),
            segments: 3,
            last_completed_barrier: Some(1),
            failures: vec![halcyon_events::Failure {
                segment: 1,
                index: 0,
                node: NodeName::from("node1"),
                command: "/bin/false".into(),
                expected: halcyon_events::Expected::Status(0),
                status: 1,
                output_tail: "no\n".into(),
                attempts: 1,
            }],
            running: vec![RunningCommand {
                launch: 3,
                node: Some(NodeName::from("node2")),
                command: "sleep 1".into(),
            }],
            open_actions: 1,
            started_at: at(6),
            max_duration_ms: 60_000,
        }),
        pending: vec!["node_up node3".into()],
        events: vec![summary()],
        witness: Some(WitnessStatus {
            name: NodeName::from("w"),
            address: "127.0.0.9:7002".into(),
            voter: true,
            reachable: false,
            last_applied: None,
            joining: false,
            held: Some("new store: no other node answers".into()),
        }),
    }
}

#[test]
fn status_round_trips_with_the_fields_clients_read() {
    let json = round_trip(&status());
    assert_eq!(json["quorum"]["has_quorum"], true);
    assert_eq!(json["quorum"]["voters"][1], "node2");
    assert_eq!(json["lease"]["duration_ms"], 619);
    assert_eq!(json["nodes"][0]["reachable"], "reachable");
    assert_eq!(json["nodes"][0]["networks"][0]["path"], "local");
    assert_eq!(
        json["packages"][0]["restarts"]["node1"]["postgres"]["count"],
        2
    );
    assert_eq!(
        json["packages"][0]["failures_expire_at"]["node2"],
        at(604).to_string()
    );
    assert_eq!(json["execution"]["state"], "error");
    assert_eq!(
        json["execution"]["failures"][0]["expected"],
        serde_json::json!({"status": 0})
    );
    assert_eq!(json["events"][0]["outcome"], "done_with_failures");
    // The status lists events without their plans and command launches (counted only).
    assert_eq!(json["events"][0]["launches"], 1);
    assert!(json["events"][0].get("plan").is_none(), "{json}");
    assert_eq!(json["witness"]["reachable"], false);
    // Without a witness the field is absent, as before the API had types.
    let mut without = status();
    without.witness = None;
    let json = round_trip(&without);
    assert!(json.get("witness").is_none(), "{json}");
}

/// An excluded node's `excluded` round-trips; without it the field is absent, and a status
/// written before the field existed reads as not excluded.
#[test]
fn a_node_excluded_for_its_work_round_trips_and_older_answers_read() {
    let mut excluded = status();
    excluded.nodes[0].excluded = Some(ExcludedView {
        why: "node1 did not complete run db within its bound of 18s".into(),
        since: at(9),
        incarnation: 4,
        event: 8,
    });
    let json = round_trip(&excluded);
    let x = &json["nodes"][0]["excluded"];
    assert_eq!(x["since"], at(9).to_string());
    assert_eq!(x["incarnation"], 4);
    assert_eq!(x["event"], 8);
    assert_eq!(
        x["why"],
        "node1 did not complete run db within its bound of 18s"
    );
    let json = round_trip(&status());
    assert!(json["nodes"][0].get("excluded").is_none(), "{json}");
    let old: StatusResponse = serde_json::from_value(json).unwrap();
    assert_eq!(old.nodes[0].excluded, None);
}

#[test]
fn an_event_record_has_one_shape() {
    let json = serde_json::to_value(record()).unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "actions",
            "by",
            "error",
            "event",
            "finished_at",
            "id",
            "launches",
            "notes",
            "outcome",
            "plan",
            "program",
            "queued_at",
            "started_at"
        ]
    );
    assert_eq!(json["actions"][0]["kind"], "halt");
    assert_eq!(json["launches"][0]["kind"]["kind"], "notify");
    assert_eq!(json["launches"][0]["node"], Value::Null);
}

#[test]
fn events_round_trip() {
    let json = round_trip(&EventsResponse {
        schema_version: SCHEMA_VERSION,
        answered_by: "node3".into(),
        last_applied: 9,
        running: Some(7),
        events: vec![record()],
    });
    assert_eq!(json["events"][0]["id"], 7);
    assert_eq!(json["running"], 7);
}

/// Each operation answer comes back as the variant it was sent as.
#[test]
fn operation_answers_round_trip_as_their_variant() {
    let answers = [
        OperationResponse::Done(Box::new(EventDoneResponse {
            schema_version: SCHEMA_VERSION,
            record: record(),
        })),
        OperationResponse::Voters(VoterChangeResponse {
            schema_version: SCHEMA_VERSION,
            note: "n2 is a voter; voters: n1, n2".into(),
            voters: vec!["n1".into(), "n2".into()],
        }),
        OperationResponse::Queued(QueuedResponse {
            schema_version: SCHEMA_VERSION,
            queued: 12,
            event: Some("package_run db".into()),
            note: "still running; see `halcyon status`".into(),
        }),
        OperationResponse::Queued(QueuedResponse {
            schema_version: SCHEMA_VERSION,
            queued: 13,
            event: None,
            note: "UE on n2 queued (#13)".into(),
        }),
        OperationResponse::Note(NoteResponse {
            schema_version: SCHEMA_VERSION,
            note: "n1 is already a member".into(),
        }),
    ];
    for answer in &answers {
        round_trip(answer);
    }
    // A finished event's record is at the top level of the answer.
    let json = round_trip(&answers[0]);
    assert_eq!(json["plan"], "step 1: halt db on node1\n");
    assert_eq!(json["actions"][0]["ok"], false);
}

#[test]
fn error_bodies_round_trip_with_and_without_the_refused_event() {
    let json = round_trip(&ErrorBody {
        schema_version: SCHEMA_VERSION,
        error: "unknown package \"nope\" (packages: db)".into(),
        event: None,
    });
    assert!(json.get("event").is_none(), "{json}");
    let json = round_trip(&ErrorBody {
        schema_version: SCHEMA_VERSION,
        error: "refused: no eligible node".into(),
        event: Some(Box::new(record())),
    });
    assert_eq!(json["event"]["id"], 7);
}

#[test]
fn emulate_and_explain_round_trip() {
    let config = example();
    let state = ClusterState {
        members: config
            .cluster
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect(),
        ..ClusterState::default()
    };
    let event = Event::ClusterStart;
    let emulation = halcyon_state::emulate(
        &config,
        &halcyon_events::Rules::default(),
        &state,
        &event,
        at(0),
    )
    .unwrap();
    let json = round_trip(&EmulateResponse {
        schema_version: SCHEMA_VERSION,
        text: emulation.render(),
        emulation,
    });
    assert!(
        json["text"].as_str().unwrap().contains("cluster_start"),
        "{json}"
    );
    let explanation = halcyon_policy::Engine::new(&config)
        .explain(&state, "db", at(0))
        .unwrap();
    let json = round_trip(&ExplainResponse {
        schema_version: SCHEMA_VERSION,
        text: explanation.to_string(),
        explanation,
    });
    assert_eq!(json["explanation"]["package"], "db");
}

#[test]
fn internal_and_test_answers_round_trip() {
    round_trip(&LeaseResponse {
        schema_version: SCHEMA_VERSION,
        granted: true,
        error: None,
        read_index: 17,
    });
    round_trip(&WitnessOwnStatus {
        schema_version: SCHEMA_VERSION,
        witness: "w".into(),
        number: 9,
        cluster: "example".into(),
        term: 2,
        coordinator: Some("node1".into()),
        voters: vec!["node1".into(), "w".into()],
        last_applied: 30,
        held: Some("new store: no other node answers".into()),
    });
    // A witness of an older version says nothing of a hold: read as none.
    let older: WitnessOwnStatus = serde_json::from_str(
        r#"{"schema_version":1,"witness":"w","number":9,"cluster":"example","term":2,
            "coordinator":null,"voters":["node1","w"],"last_applied":30}"#,
    )
    .unwrap();
    assert_eq!(older.held, None);
    round_trip(&IsolateResponse {
        schema_version: SCHEMA_VERSION,
        isolated: "node2".into(),
    });
    round_trip(&HeartbeatFaultResponse {
        schema_version: SCHEMA_VERSION,
        node: "node1".into(),
        network: "lan1".into(),
        drop_from: vec!["node2".into()],
    });
}

/// The lease answer is read by daemons with `halcyon_daemon::node::LeaseAnswer`, which has
/// no `schema_version`: the extra field must not matter to a reader that ignores it.
#[test]
fn a_lease_answer_reads_without_its_schema_version() {
    #[derive(serde::Deserialize)]
    struct Old {
        granted: bool,
        read_index: u64,
    }
    let text = serde_json::to_string(&LeaseResponse {
        schema_version: SCHEMA_VERSION,
        granted: true,
        error: None,
        read_index: 5,
    })
    .unwrap();
    let old: Old = serde_json::from_str(&text).unwrap();
    assert!(old.granted);
    assert_eq!(old.read_index, 5);
}

#[test]
fn requests_refuse_unknown_fields_and_accept_empty_optional_ones() {
    assert_eq!(
        serde_json::from_str::<PackageRequest>("{}").unwrap(),
        PackageRequest::default()
    );
    assert!(serde_json::from_str::<PackageRequest>(r#"{"nod": "n1"}"#).is_err());
    assert!(serde_json::from_str::<NodeRequest>(r#"{"how": "force", "x": 1}"#).is_err());
    let raise: RaiseRequest = serde_json::from_str(r#"{"name": "UE", "node": "n2"}"#).unwrap();
    assert!(raise.values.is_empty());
    let emulate = EmulateRequest {
        event: Event::PackageMove {
            package: PackageName::from("db"),
            node: Some(NodeName::from("node2")),
        },
    };
    let text = serde_json::to_string(&emulate).unwrap();
    assert_eq!(
        serde_json::from_str::<EmulateRequest>(&text).unwrap(),
        emulate
    );
    assert!(serde_json::from_str::<LeaseRequest>(r#"{"node": "n1", "at": 3}"#).is_err());
    assert!(serde_json::from_str::<HeartbeatFaultRequest>(r#"{"network": "lan1"}"#).is_err());
    let query: EventsQuery = serde_json::from_str(r#"{"after": 4}"#).unwrap();
    assert_eq!(query.after, Some(4));
}
