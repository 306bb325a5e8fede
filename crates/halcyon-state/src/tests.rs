use super::*;
use halcyon_consensus::Application;
use halcyon_policy::Engine;
use std::sync::Mutex;

pub(super) const CLUSTER: &str = r#"
[cluster]
name = "t"
id = 1
port = 7400
[[network]]
name = "lan"
kind = "ip"
subnets = ["127.0.0.0/8"]
[[node]]
name = "n1"
number = 1
[[node.interface]]
network = "lan"
address = "127.0.0.1"
[[node]]
name = "n2"
number = 2
[[node.interface]]
network = "lan"
address = "127.0.0.2"
[[node]]
name = "n3"
number = 3
[[node.interface]]
network = "lan"
address = "127.0.0.3"
"#;

pub(super) const PACKAGE: &str = r#"
[package]
name = "web"
type = "failover"
nodes = ["n1", "n2"]
auto_run = true
[[resource]]
kind = "service"
name = "srv"
command = "sleep 100"
restart = 2
restart_window = "10s"
"#;

pub(super) fn config() -> Config {
    halcyon_config::load_texts(&[("cluster.toml", CLUSTER), ("web.toml", PACKAGE)])
        .unwrap_or_else(|e| panic!("{e}"))
}

pub(super) fn t(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).unwrap()
}

pub(super) fn booted() -> State {
    let mut s = State::new();
    let reply = s.apply(
        1,
        Command::Bootstrap {
            config: Box::new(config()),
            rules: Rules::default(),
            sources: Vec::new(),
            at: t(0),
        },
    );
    assert_eq!(reply, Reply::Bootstrapped { fresh: true });
    s
}

/// Plans the next pending event the way the coordinator does and commits the plan.
pub(super) fn plan_next(s: &mut State, index: u64, at: Timestamp) -> u64 {
    let config = s.config.clone().unwrap();
    let pending = s.pending_events();
    let i = halcyon_policy::next_event(&config, &pending).expect("an event is pending");
    let (sequence, event) = pending[i].clone();
    // A config_change is planned with the staged configuration, as the coordinator does.
    let config = s.config_for(sequence).cloned().unwrap();
    let plan = Engine::new(&config).plan(&s.cluster, &event, at).unwrap();
    match s.apply(
        index,
        Command::PlanCommitted {
            sequence,
            plan: Box::new(plan),
            at,
        },
    ) {
        Reply::Executing { execution } => execution,
        other => panic!("{other:?}"),
    }
}

/// Applies `event` as queued by `by` at `at`.
pub(super) fn enqueue(s: &mut State, index: u64, event: Event, by: &str, at: Timestamp) -> Reply {
    s.apply(
        index,
        Command::Enqueue {
            event,
            by: by.into(),
            at,
            sample: None,
            request: None,
        },
    )
}

pub(super) fn done_all(s: &mut State, mut index: u64, ok: bool) -> u64 {
    while let Some(e) = s.execution.clone() {
        let ready = e.ready_actions();
        assert!(!ready.is_empty(), "the execution is stuck: {e:#?}");
        for (step, i, _) in ready {
            index += 1;
            assert_eq!(
                s.apply(
                    index,
                    Command::ActionDone {
                        execution: e.id,
                        step,
                        index: i,
                        ok,
                        detail: String::new(),
                        at: t(index as i64),
                    }
                ),
                Reply::Done
            );
        }
    }
    index
}

#[test]
fn bootstrap_is_applied_once() {
    let mut s = booted();
    let reply = s.apply(
        2,
        Command::Bootstrap {
            config: Box::new(config()),
            rules: Rules::default(),
            sources: Vec::new(),
            at: t(1),
        },
    );
    assert_eq!(reply, Reply::Bootstrapped { fresh: false });
    assert_eq!(s.applied_index, 2);
}

#[test]
fn a_node_up_runs_the_package_through_the_barrier() {
    let mut s = booted();
    let up = Event::NodeUp { node: "n1".into() };
    assert_eq!(
        s.apply(
            2,
            Command::Enqueue {
                event: up.clone(),
                by: "membership".into(),
                at: t(1),
                sample: None,
                request: None,
            }
        ),
        Reply::Queued {
            sequence: 0,
            duplicate: false
        }
    );
    assert_eq!(
        s.apply(
            3,
            Command::Enqueue {
                event: up.clone(),
                by: "membership".into(),
                at: t(1),
                sample: None,
                request: None,
            }
        ),
        Reply::Queued {
            sequence: 0,
            duplicate: true
        }
    );
    let id = plan_next(&mut s, 4, t(2));
    assert!(s.pending.is_empty());
    let e = s.execution.clone().unwrap();
    assert_eq!(e.open_actions().len(), 1);
    assert_eq!(e.ready_actions().len(), 1);
    // A second plan is refused while one runs.
    s.apply(
        5,
        Command::Enqueue {
            event: Event::NodeUp { node: "n2".into() },
            by: "m".into(),
            at: t(3),
            sample: None,
            request: None,
        },
    );
    let plan = e.plan.clone();
    assert!(matches!(
        s.apply(
            6,
            Command::PlanCommitted {
                sequence: 1,
                plan: Box::new(plan),
                at: t(3)
            }
        ),
        Reply::Ignored { .. }
    ));
    // A stale ActionDone is ignored.
    assert!(matches!(
        s.apply(
            7,
            Command::ActionDone {
                execution: id,
                step: 5,
                index: 0,
                ok: true,
                detail: String::new(),
                at: t(4)
            }
        ),
        Reply::Ignored { .. }
    ));
    done_all(&mut s, 7, true);
    assert!(s.execution.is_none());
    assert!(s.cluster.members.contains("n1"));
    assert!(s.cluster.package("web").nodes.contains("n1"));
    let record = s.record(id).unwrap();
    assert_eq!(record.outcome, Outcome::Done);
    assert!(record.plan_text.as_ref().unwrap().contains("run web on n1"));
}

#[test]
fn a_failed_run_enqueues_package_failed() {
    let mut s = booted();
    s.apply(
        2,
        Command::Enqueue {
            event: Event::NodeUp { node: "n1".into() },
            by: "m".into(),
            at: t(1),
            sample: None,
            request: None,
        },
    );
    plan_next(&mut s, 3, t(2));
    done_all(&mut s, 3, false);
    assert_eq!(
        s.pending_events(),
        vec![(
            1,
            Event::PackageFailed {
                package: "web".into(),
                node: "n1".into()
            }
        )]
    );
    assert_eq!(s.log.back().unwrap().outcome, Outcome::DoneWithFailures);
}

#[test]
fn node_down_marks_departed_and_node_up_clears_it() {
    let mut s = booted();
    s.apply(
        2,
        Command::Enqueue {
            event: Event::NodeUp { node: "n1".into() },
            by: "m".into(),
            at: t(1),
            sample: None,
            request: None,
        },
    );
    plan_next(&mut s, 3, t(1));
    let i = done_all(&mut s, 3, true);
    s.apply(
        i + 1,
        Command::Enqueue {
            event: Event::NodeUp { node: "n2".into() },
            by: "m".into(),
            at: t(1),
            sample: None,
            request: None,
        },
    );
    plan_next(&mut s, i + 2, t(2));
    let i = done_all(&mut s, i + 2, true);
    s.apply(
        i + 1,
        Command::Enqueue {
            event: Event::NodeDown {
                node: "n1".into(),
                how: Default::default(),
            },
            by: "m".into(),
            at: t(3),
            sample: None,
            request: None,
        },
    );
    plan_next(&mut s, i + 2, t(3));
    assert!(s.departed.contains("n1"));
    let e = s.execution.clone().unwrap();
    assert_eq!(e.plan.steps[0].actions[0].kind, ActionKind::AwaitRelease);
    done_all(&mut s, i + 2, true);
    assert_eq!(
        s.cluster
            .package("web")
            .nodes
            .iter()
            .next()
            .unwrap()
            .as_str(),
        "n2"
    );
    s.apply(
        100,
        Command::Enqueue {
            event: Event::NodeUp { node: "n1".into() },
            by: "m".into(),
            at: t(4),
            sample: None,
            request: None,
        },
    );
    plan_next(&mut s, 101, t(4));
    assert!(!s.departed.contains("n1"));
}

#[test]
fn restart_counter_counts_within_its_window() {
    let mut s = booted();
    let count = |s: &mut State, i: u64, at| match s.apply(
        i,
        Command::RestartCounted {
            detail: None,
            package: "web".into(),
            node: "n1".into(),
            service: "srv".into(),
            at,
        },
    ) {
        Reply::Restarts { count } => count,
        other => panic!("{other:?}"),
    };
    assert_eq!(count(&mut s, 2, t(1)), 1);
    assert_eq!(count(&mut s, 3, t(2)), 2);
    assert_eq!(count(&mut s, 4, t(3)), 3);
    assert_eq!(s.restart_count("web", "n1", "srv"), 3);
    // 10 s window: a failure 20 s later starts a new count.
    assert_eq!(count(&mut s, 5, t(23)), 1);
    assert_eq!(s.restart_count("web", "n2", "srv"), 0);
}

#[test]
fn register_needs_a_higher_incarnation() {
    let mut s = booted();
    assert_eq!(
        s.apply(
            2,
            Command::Register {
                node: "n1".into(),
                incarnation: 5,
                at: t(1),
                clean_stop: None,
            }
        ),
        Reply::Done
    );
    assert!(matches!(
        s.apply(
            3,
            Command::Register {
                node: "n1".into(),
                incarnation: 5,
                at: t(1),
                clean_stop: None,
            }
        ),
        Reply::Ignored { .. }
    ));
}

fn register(
    s: &mut State,
    index: u64,
    incarnation: u64,
    at: Timestamp,
    clean_stop: Option<CleanStop>,
) -> Reply {
    s.apply(
        index,
        Command::Register {
            node: "n1".into(),
            incarnation,
            at,
            clean_stop,
        },
    )
}

/// The event-log records of node restarts, oldest first.
fn restarts(s: &State) -> Vec<EventRecord> {
    s.log()
        .iter()
        .filter(|r| matches!(r.event, Event::NodeRestart { .. }))
        .cloned()
        .collect()
}

#[test]
fn a_first_registration_records_no_restart() {
    let mut s = booted();
    let records = s.log().len();
    assert_eq!(register(&mut s, 2, 1, t(1), None), Reply::Done);
    assert_eq!(s.log().len(), records);
    assert!(s.pending_events().is_empty());
}

#[test]
fn a_restart_after_a_crash_is_recorded_finished_with_the_previous_incarnation() {
    let mut s = booted();
    register(&mut s, 2, 3, t(1), None);
    let pending = s.pending_events();
    assert_eq!(register(&mut s, 3, 4, t(9), None), Reply::Done);
    let r = restarts(&s);
    assert_eq!(r.len(), 1);
    assert_eq!(
        r[0].event,
        Event::NodeRestart {
            node: "n1".into(),
            incarnation: 4,
            previous: 3,
            clean_stop: false
        }
    );
    assert_eq!(r[0].outcome, Outcome::Done);
    assert_eq!(
        (r[0].started_at, r[0].finished_at),
        (Some(t(9)), Some(t(9)))
    );
    assert_eq!(
        r[0].event.to_string(),
        "node_restart n1: incarnation 4, previous incarnation 3 ended without a clean stop"
    );
    assert!(
        r[0].notes[0]
            .text
            .contains("incarnation 3 ended without a clean stop")
    );
    assert_eq!(
        s.pending_events(),
        pending,
        "nothing is queued: no failover waits for it"
    );
    assert!(s.execution().is_none());
}

#[test]
fn a_restart_after_a_clean_stop_of_the_known_incarnation_says_so_with_its_time() {
    let mut s = booted();
    register(&mut s, 2, 3, t(1), None);
    let stop = CleanStop {
        incarnation: 3,
        at: t(5),
    };
    register(&mut s, 3, 4, t(9), Some(stop));
    let r = restarts(&s);
    assert!(matches!(
        r[0].event,
        Event::NodeRestart {
            clean_stop: true,
            previous: 3,
            ..
        }
    ));
    assert!(
        r[0].notes[0]
            .text
            .contains(&format!("incarnation 3 ended by a clean stop at {}", t(5))),
        "{}",
        r[0].notes[0].text
    );
}

#[test]
fn a_clean_stop_of_an_older_incarnation_does_not_cover_a_later_crash() {
    let mut s = booted();
    register(&mut s, 2, 3, t(1), None);
    // Incarnation 2 stopped cleanly; 3 crashed (the marker still names 2).
    let old = CleanStop {
        incarnation: 2,
        at: t(0),
    };
    register(&mut s, 3, 4, t(9), Some(old));
    assert!(matches!(
        restarts(&s)[0].event,
        Event::NodeRestart {
            clean_stop: false,
            ..
        }
    ));
}

#[test]
fn a_refused_registration_records_nothing_and_a_restart_cannot_be_queued() {
    let mut s = booted();
    register(&mut s, 2, 3, t(1), None);
    let records = s.log().len();
    assert!(matches!(
        register(&mut s, 3, 3, t(2), None),
        Reply::Ignored { .. }
    ));
    assert!(matches!(
        register(&mut s, 4, 1, t(2), None),
        Reply::Ignored { .. }
    ));
    assert_eq!(s.log().len(), records);
    let restart = Event::NodeRestart {
        node: "n1".into(),
        incarnation: 9,
        previous: 3,
        clean_stop: false,
    };
    let reply = s.apply(
        5,
        Command::Enqueue {
            event: restart,
            by: "m".into(),
            at: t(3),
            sample: None,
            request: None,
        },
    );
    assert!(matches!(reply, Reply::Ignored { .. }), "{reply:?}");
    assert!(s.pending_events().is_empty());
}

#[test]
fn restart_records_take_sequence_numbers_of_their_own() {
    let mut s = booted();
    register(&mut s, 2, 1, t(1), None);
    register(&mut s, 3, 2, t(2), None);
    register(&mut s, 4, 3, t(3), None);
    let r = restarts(&s);
    assert_eq!(r.len(), 2);
    assert_ne!(r[0].sequence, r[1].sequence);
    assert_eq!(
        s.record_of_sequence(r[1].sequence).map(|x| x.id),
        Some(r[1].id)
    );
    assert_eq!(s.next_sequence(), r[1].sequence + 1);
}

#[test]
fn a_register_without_clean_stop_written_before_it_existed_still_decodes() {
    let old = br#"{"command":"register","node":"n1","incarnation":2,"at":"2023-11-14T22:13:20Z"}"#;
    let command = Command::decode(old).unwrap();
    assert!(matches!(
        command,
        Command::Register {
            clean_stop: None,
            ..
        }
    ));
}

#[test]
fn snapshot_and_restore_round_trip_through_the_application() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = Arc::clone(&seen);
    let mut app = Replicated::new(Box::new(move |i, command, state| {
        assert_eq!(state.applied_index, i, "told after the state changed");
        seen2.lock().unwrap().push((i, command.is_some()));
    }));
    let reply = app.apply(
        1,
        &Command::Bootstrap {
            config: Box::new(config()),
            rules: Rules::default(),
            sources: Vec::new(),
            at: t(0),
        }
        .encode(),
    );
    assert_eq!(
        Reply::decode(&reply).unwrap(),
        Reply::Bootstrapped { fresh: true }
    );
    app.apply(
        2,
        &Command::Enqueue {
            event: Event::NodeUp { node: "n1".into() },
            by: "m".into(),
            at: t(1),
            sample: None,
            request: None,
        }
        .encode(),
    );
    let garbage = app.apply(3, b"not json");
    assert!(matches!(
        Reply::decode(&garbage).unwrap(),
        Reply::Ignored { .. }
    ));
    let snapshot = app.snapshot();

    let restored_seen = Arc::new(Mutex::new(Vec::new()));
    let restored_seen2 = Arc::clone(&restored_seen);
    let mut restored = Replicated::new(Box::new(move |i, command, _| {
        restored_seen2.lock().unwrap().push((i, command.is_some()));
    }));
    restored.restore(&snapshot).unwrap();
    assert_eq!(restored.state(), app.state());
    assert_eq!(restored.state().applied_index, 3);
    assert!(restored.restore(b"{").is_err());
    assert_eq!(
        restored.state(),
        app.state(),
        "a failed restore changes nothing"
    );
    assert_eq!(*seen.lock().unwrap(), vec![(1, true), (2, true), (3, true)]);
    assert_eq!(*restored_seen.lock().unwrap(), vec![(3, false)]);
}

#[test]
fn the_event_log_is_bounded() {
    let mut s = booted();
    let mut i = 1;
    for n in 0..(LOG_MAX + 10) {
        i += 1;
        s.apply(
            i,
            Command::Enqueue {
                event: Event::PackageHalt {
                    package: "web".into(),
                    node: None,
                },
                by: "admin".into(),
                at: t(n as i64),
                sample: None,
                request: None,
            },
        );
        i += 1;
        s.apply(
            i,
            Command::EventRefused {
                sequence: n as u64,
                error: "not running".into(),
                at: t(n as i64),
            },
        );
    }
    assert_eq!(s.log.len(), LOG_MAX);
    assert_eq!(s.log.back().unwrap().outcome, Outcome::Refused);
}

#[test]
fn a_cluster_halt_holds_the_cluster_until_start_is_allowed() {
    let mut s = booted();
    let enqueue =
        |s: &mut State, index: u64, event: Event| enqueue(s, index, event, "test", t(index as i64));
    enqueue(&mut s, 2, Event::NodeUp { node: "n1".into() });
    plan_next(&mut s, 3, t(3));
    let index = done_all(&mut s, 3, true);
    assert_eq!(s.cluster.package("web").nodes.len(), 1);
    assert_eq!(
        s.apply(
            index + 1,
            Command::ClusterStartAllowed {
                by: Some("token admin from 10.0.0.5:4000".into()),
                at: t(9)
            }
        ),
        Reply::Ignored {
            why: "the cluster is not halted".into()
        }
    );
    enqueue(&mut s, index + 2, Event::ClusterHalt);
    plan_next(&mut s, index + 3, t(20));
    assert!(s.cluster_halted, "halted once the plan is committed");
    let index = done_all(&mut s, index + 3, true);
    assert!(s.cluster.members.is_empty());
    assert!(s.cluster.package("web").nodes.is_empty());
    assert_eq!(
        s.cluster_start_by(),
        None,
        "an ignored start records nobody"
    );
    assert_eq!(
        s.apply(
            index + 1,
            Command::ClusterStartAllowed {
                by: Some("token admin from 10.0.0.5:4000".into()),
                at: t(30)
            }
        ),
        Reply::Done
    );
    assert!(!s.cluster_halted);
    // Who asked is kept until the coordinator enqueues the cluster_start, as theirs.
    assert_eq!(s.cluster_start_by(), Some("token admin from 10.0.0.5:4000"));
    let by = s.cluster_start_by().unwrap().to_owned();
    self::enqueue(&mut s, index + 2, Event::ClusterStart, &by, t(31));
    assert_eq!(s.cluster_start_by(), None);
    assert_eq!(s.pending()[0].by, "token admin from 10.0.0.5:4000");
    s.pending.clear();
    // The halted flag survives a snapshot and restore.
    let mut copy = Replicated::new(Box::new(|_, _, _| {}));
    s.cluster_halted = true;
    let bytes = serde_json::to_vec(&s).unwrap();
    copy.restore(&bytes).unwrap();
    assert!(copy.state().cluster_halted);
}

#[test]
fn a_voter_change_is_a_finished_record_naming_who_asked_and_the_voters() {
    let mut s = booted();
    let before = s.log.len();
    assert_eq!(
        s.apply(
            2,
            Command::VoterChanged {
                node: "n3".into(),
                added: false,
                voters: vec!["n1".into(), "n2".into()],
                by: "token admin from 10.0.0.5:4000".into(),
                at: t(5),
            }
        ),
        Reply::Done
    );
    assert_eq!(s.log.len(), before + 1);
    let r = s.log.back().unwrap();
    assert_eq!(
        r.event.to_string(),
        "voter_change n3: removed from the voters"
    );
    assert_eq!(r.by, "token admin from 10.0.0.5:4000");
    assert_eq!(r.outcome, Outcome::Done);
    assert_eq!(r.finished_at, Some(t(5)));
    assert_eq!(r.notes[0].text, "voters: n1, n2");
    assert!(s.pending().is_empty(), "recorded, never queued");
    s.apply(
        3,
        Command::VoterChanged {
            node: "n3".into(),
            added: true,
            voters: vec!["n1".into(), "n2".into(), "n3".into()],
            by: "auto-shrink".into(),
            at: t(6),
        },
    );
    let r = s.log.back().unwrap();
    assert_eq!(r.event.to_string(), "voter_change n3: added to the voters");
    assert_eq!(r.by, "auto-shrink");
}

/// A copy of the state (a daemon's view) shares the event log: an entry that does not
/// touch the log leaves it shared, one that does copies it and leaves the copy unchanged.
#[test]
fn copies_of_the_state_share_the_event_log_until_it_changes() {
    let mut s = booted();
    s.apply(
        2,
        Command::Enqueue {
            event: Event::NodeUp { node: "n1".into() },
            by: "m".into(),
            at: t(1),
            sample: None,
            request: None,
        },
    );
    let view = s.clone();
    assert!(view.log.shares_with(&s.log));
    let registered = Command::Register {
        node: "n2".into(),
        incarnation: 7,
        at: t(2),
        clean_stop: None,
    };
    assert_eq!(s.apply(3, registered), Reply::Done);
    assert!(
        view.log.shares_with(&s.log),
        "an entry without a record kept the log shared"
    );
    let records = view.log.len();
    plan_next(&mut s, 4, t(3));
    assert!(!view.log.shares_with(&s.log));
    assert_eq!(view.log.len(), records, "the view's log did not change");
    assert!(s.log.len() > records);
}

#[test]
fn a_copy_without_the_log_differs_only_by_the_log() {
    let mut s = booted();
    s.apply(
        2,
        Command::Enqueue {
            event: Event::NodeUp { node: "n1".into() },
            by: "m".into(),
            at: t(1),
            sample: None,
            request: None,
        },
    );
    plan_next(&mut s, 3, t(2));
    assert!(!s.log.is_empty() && s.execution.is_some());
    let lite = s.clone_without_log();
    assert!(lite.log.is_empty());
    let mut full = s.clone();
    full.log.clear();
    assert_eq!(lite, full);
}

/// Simulation seed 31: a plan made while only a node_down was pending must not be committed
/// once a node_up (which comes first) has arrived; the coordinator plans again.
#[test]
fn a_plan_overtaken_by_a_more_urgent_event_is_refused() {
    let mut s = booted();
    let enqueue =
        |s: &mut State, index: u64, event: Event| enqueue(s, index, event, "membership", t(1));
    enqueue(&mut s, 2, Event::NodeUp { node: "n1".into() });
    plan_next(&mut s, 3, t(1));
    let i = done_all(&mut s, 3, true);
    enqueue(&mut s, i + 1, Event::NodeUp { node: "n2".into() });
    plan_next(&mut s, i + 2, t(2));
    let i = done_all(&mut s, i + 2, true);
    let down = Event::NodeDown {
        node: "n1".into(),
        how: halcyon_policy::Departure::Failure,
    };
    let Reply::Queued { sequence: late, .. } = enqueue(&mut s, i + 1, down.clone()) else {
        panic!("not queued");
    };
    // The coordinator plans the node_down from its view...
    let config = s.config.clone().unwrap();
    let stale = Engine::new(&config).plan(&s.cluster, &down, t(3)).unwrap();
    // ...while a node_up arrives and is committed first.
    enqueue(&mut s, i + 2, Event::NodeUp { node: "n3".into() });
    let reply = s.apply(
        i + 3,
        Command::PlanCommitted {
            sequence: late,
            plan: Box::new(stale),
            at: t(3),
        },
    );
    let Reply::Ignored { why } = reply else {
        panic!("the stale plan was committed: {reply:?}");
    };
    assert!(why.contains("comes before"), "{why}");
    assert!(s.execution.is_none());
    assert_eq!(s.pending.len(), 2, "both events still wait");
    // Planned again in order: the node_up first.
    plan_next(&mut s, i + 4, t(4));
    let started: Vec<&Event> = s
        .log
        .iter()
        .filter(|r| r.started_at.is_some())
        .map(|r| &r.event)
        .collect();
    assert_eq!(started.last(), Some(&&Event::NodeUp { node: "n3".into() }));
    assert!(
        s.pending.iter().any(|p| p.sequence == late),
        "node_down waits"
    );
}

/// Issue 15, finding 9: a client that lost the answer asks again with the same request id.
/// The event is enqueued once, and the id still names it after it left the queue (when a
/// second enqueue of the same event would be a new event).
#[test]
fn a_request_id_enqueues_its_event_once_even_after_it_ran() {
    let mut s = booted();
    let up = Event::NodeUp { node: "n1".into() };
    let asked = |request: &str| Command::Enqueue {
        event: up.clone(),
        by: "api".into(),
        at: t(1),
        sample: None,
        request: Some(request.into()),
    };
    let first = s.apply(2, asked("r1"));
    assert_eq!(
        first,
        Reply::Queued {
            sequence: 0,
            duplicate: false
        }
    );
    let index = plan_next(&mut s, 3, t(2));
    assert!(s.pending.is_empty() && s.execution.is_some());
    let index = done_all(&mut s, index, true);
    assert!(s.execution.is_none());
    // Asked again after it ran: the same event, nothing new queued.
    assert_eq!(
        s.apply(index + 1, asked("r1")),
        Reply::Queued {
            sequence: 0,
            duplicate: true
        }
    );
    assert!(s.pending.is_empty());
    // Another id is another request.
    assert_eq!(
        s.apply(index + 2, asked("r2")),
        Reply::Queued {
            sequence: 1,
            duplicate: false
        }
    );
    // The ids kept are bounded: the oldest go first.
    for i in 0..crate::REQUESTS_MAX {
        s.requests.push_back((format!("x{i}"), 99));
        if s.requests.len() > crate::REQUESTS_MAX {
            s.requests.pop_front();
        }
    }
    assert!(!s.requests.iter().any(|(id, _)| id == "r1"));
    let before = s.pending.len();
    s.apply(
        index + 3,
        Command::Enqueue {
            event: Event::NodeUp { node: "n2".into() },
            by: "api".into(),
            at: t(3),
            sample: None,
            request: Some("fresh".into()),
        },
    );
    assert_eq!(s.pending.len(), before + 1);
    assert_eq!(s.requests.len(), crate::REQUESTS_MAX);
    assert_eq!(s.requests.back(), Some(&("fresh".to_owned(), 2)));
}

/// Issue 16, item 6: restart counters start again when the package is halted (seed 004's
/// Serviceguard rule); a move keeps them.
#[test]
fn restart_counters_start_again_when_the_package_is_halted() {
    let mut s = booted();
    let up = Event::NodeUp { node: "n1".into() };
    enqueue(&mut s, 2, up, "membership", t(1));
    let index = plan_next(&mut s, 3, t(1));
    let mut index = done_all(&mut s, index, true);
    index += 1;
    s.apply(
        index,
        Command::RestartCounted {
            detail: None,
            package: "web".into(),
            node: "n1".into(),
            service: "srv".into(),
            at: t(2),
        },
    );
    assert_eq!(s.restart_count("web", "n1", "srv"), 1);
    index += 1;
    enqueue(
        &mut s,
        index,
        Event::PackageHalt {
            package: "web".into(),
            node: None,
        },
        "api",
        t(3),
    );
    let index = plan_next(&mut s, index + 1, t(3));
    done_all(&mut s, index, true);
    assert_eq!(s.restart_count("web", "n1", "srv"), 0);
}

#[test]
fn a_swap_while_the_addresses_are_on_the_standby_moves_them_back() {
    let mut s = booted();
    let key = (NodeName::from("n1"), NetworkName::from("lan"));
    let mut index = 2;
    let mut carry_out = |s: &mut State, event: Event, at: i64| {
        enqueue(s, index, event, "m", t(at));
        plan_next(s, index + 1, t(at));
        index = done_all(s, index + 1, true) + 1;
    };
    carry_out(&mut s, Event::NodeUp { node: "n1".into() }, 1);
    let swap = Event::SwapAdapter {
        node: "n1".into(),
        network: "lan".into(),
    };
    // The primary fails: the addresses go to the standby.
    carry_out(&mut s, swap.clone(), 2);
    assert!(s.swapped().contains(&key) && s.adapters_down().contains(&key));
    // The primary returns: the addresses stay where they are.
    carry_out(
        &mut s,
        Event::NetworkUp {
            node: "n1".into(),
            network: "lan".into(),
        },
        3,
    );
    assert!(s.swapped().contains(&key) && !s.adapters_down().contains(&key));
    // The standby fails: the swap moves them back; the primary is not down.
    carry_out(&mut s, swap, 4);
    assert!(!s.swapped().contains(&key) && !s.adapters_down().contains(&key));
}
