//! `Command::Batch`: the commands a node's writer had waiting together, applied in order as
//! one entry, each answered on its own; the batch's bounds.

use super::tests::{CLUSTER, PACKAGE, enqueue, plan_next, t};
use super::*;
use halcyon_consensus::Application;

/// Three packages on n1 and n2: a node_up of n1 runs three actions.
fn three_packages() -> State {
    let db = PACKAGE.replace("\"web\"", "\"db\"");
    let mq = PACKAGE.replace("\"web\"", "\"mq\"");
    let config = halcyon_config::load_texts(&[
        ("cluster.toml", CLUSTER),
        ("web.toml", PACKAGE),
        ("db.toml", &db),
        ("mq.toml", &mq),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let mut s = State::new();
    s.apply(
        1,
        Command::Bootstrap {
            config: Box::new(config),
            rules: Rules::default(),
            sources: Vec::new(),
            at: t(0),
        },
    );
    s
}

fn done(execution: u64, (step, index): (usize, usize), ok: bool, second: i64) -> Command {
    Command::ActionDone {
        execution,
        step,
        index,
        ok,
        detail: format!("reported at {second}"),
        at: t(second),
    }
}

fn restart(second: i64) -> Command {
    Command::RestartCounted {
        package: "web".into(),
        node: "n1".into(),
        service: "srv".into(),
        detail: None,
        at: t(second),
    }
}

#[test]
fn a_batch_applies_its_commands_in_order_as_entries_of_their_own_would() {
    let mut s = three_packages();
    enqueue(&mut s, 2, Event::NodeUp { node: "n1".into() }, "m", t(1));
    let id = plan_next(&mut s, 3, t(2));
    let ready: Vec<(usize, usize)> = s
        .execution()
        .unwrap()
        .ready_actions()
        .into_iter()
        .map(|(step, index, _)| (step, index))
        .collect();
    assert_eq!(ready.len(), 3, "one run per package");
    let (first, second, third) = (ready[0], ready[1], ready[2]);
    let commands = vec![
        done(id, first, true, 3),
        restart(4),
        // The same report twice (a retry after a lost answer): the second is refused.
        done(id, first, true, 5),
        done(id, (first.0, 99), true, 6),
        done(id, second, false, 7),
        // The last report ends the execution...
        done(id, third, true, 8),
        // ...so a report on it after that, in the same batch, is stale.
        done(id, third, true, 9),
        restart(10),
        Command::Enqueue {
            event: Event::NodeUp { node: "n2".into() },
            by: "m".into(),
            at: t(11),
            sample: None,
            request: None,
        },
    ];
    let mut one_by_one = s.clone();
    let replies: Vec<Reply> = commands
        .iter()
        .zip(4..)
        .map(|(command, index)| one_by_one.apply(index, command.clone()))
        .collect();

    let reply = s.apply(4, Command::Batch { commands });

    assert_eq!(
        reply,
        Reply::Batch {
            replies: replies.clone()
        }
    );
    let ignored = |reply: &Reply, text: &str| {
        assert!(
            matches!(reply, Reply::Ignored { why } if why.contains(text)),
            "{reply:?} should be refused with {text:?}"
        )
    };
    assert_eq!(replies[0], Reply::Done);
    assert_eq!(replies[1], Reply::Restarts { count: 1 });
    ignored(&replies[2], "already done");
    ignored(&replies[3], "has no action 99");
    assert_eq!(replies[4], Reply::Done);
    assert_eq!(replies[5], Reply::Done);
    ignored(&replies[6], "no execution is running");
    assert_eq!(replies[7], Reply::Restarts { count: 2 });
    assert!(
        matches!(
            replies[8],
            Reply::Queued {
                duplicate: false,
                ..
            }
        ),
        "{:?}",
        replies[8]
    );
    // The same state as the commands applied one entry each, but for the applied index.
    assert_eq!(s.applied_index(), 4);
    assert_eq!(one_by_one.applied_index(), 12);
    one_by_one.applied_index = 4;
    assert_eq!(s, one_by_one);
    let record = s.log().iter().find(|r| r.id == id).unwrap();
    assert_eq!(record.outcome, Outcome::DoneWithFailures);
    let reported: Vec<(usize, usize, bool)> = record
        .actions
        .iter()
        .map(|a| (a.step, a.index, a.ok))
        .collect();
    assert_eq!(
        reported,
        [
            (first.0, first.1, true),
            (second.0, second.1, false),
            (third.0, third.1, true)
        ],
        "recorded in the batch's order, each once"
    );
}

#[test]
fn a_batch_beyond_its_bounds_is_refused_whole_and_changes_nothing() {
    let mut s = three_packages();
    let before = s.clone();
    let refused = |s: &mut State, index: u64, commands: Vec<Command>, text: &str| {
        let reply = s.apply(index, Command::Batch { commands });
        assert!(
            matches!(&reply, Reply::Ignored { why } if why == text),
            "{reply:?} should be refused with {text:?}"
        );
    };
    refused(&mut s, 2, Vec::new(), "an empty batch");
    refused(
        &mut s,
        3,
        (0..=BATCH_COMMANDS_MAX as i64).map(restart).collect(),
        "a batch of 257 commands (at most 256)",
    );
    refused(
        &mut s,
        4,
        vec![
            restart(1),
            Command::Batch {
                commands: vec![restart(2)],
            },
        ],
        "command 2 of the batch is a batch itself",
    );
    assert_eq!(s.restart_count("web", "n1", "srv"), 0);
    assert_eq!(s.applied_index(), 4);
    s.applied_index = before.applied_index;
    assert_eq!(s, before, "a refused batch applies none of its commands");

    // At the bound: applied.
    let reply = s.apply(
        5,
        Command::Batch {
            commands: (0..BATCH_COMMANDS_MAX as i64).map(restart).collect(),
        },
    );
    let Reply::Batch { replies } = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(replies.len(), BATCH_COMMANDS_MAX);
    assert_eq!(
        replies.last(),
        Some(&Reply::Restarts {
            count: BATCH_COMMANDS_MAX as u32
        })
    );
}

#[test]
fn a_batch_entry_beyond_its_byte_bound_is_refused_by_the_replica() {
    let mut app = Replicated::new(Box::new(|_, _, _| {}));
    let large = |second: i64| Command::RestartCounted {
        package: "web".into(),
        node: "n1".into(),
        service: "srv".into(),
        detail: Some("x".repeat(BATCH_BYTES_MAX / 2)),
        at: t(second),
    };
    let entry = Command::Batch {
        commands: vec![large(1), large(2)],
    }
    .encode();
    assert!(entry.len() > BATCH_BYTES_MAX);
    let reply = Reply::decode(&app.apply(1, &entry)).unwrap();
    assert_eq!(
        reply,
        Reply::Ignored {
            why: format!(
                "a batch of {} bytes (at most {BATCH_BYTES_MAX})",
                entry.len()
            )
        }
    );
    assert_eq!(app.state().restart_count("web", "n1", "srv"), 0);
    assert_eq!(app.state().applied_index(), 1);
    // The same commands in entries of their own: the bound is the batch's.
    for (index, second) in [(2, 1), (3, 2)] {
        app.apply(index, &large(second).encode());
    }
    assert_eq!(app.state().restart_count("web", "n1", "srv"), 2);
    let small = Command::Batch {
        commands: vec![restart(3), restart(4)],
    };
    assert_eq!(
        Reply::decode(&app.apply(4, &small.encode())).unwrap(),
        Reply::Batch {
            replies: vec![Reply::Restarts { count: 3 }, Reply::Restarts { count: 4 }]
        }
    );
}

/// The log's format: a batch is its commands as each is written alone, in an envelope; the
/// commands written before batches existed read as they did.
#[test]
fn a_batch_is_written_as_its_commands_and_old_entries_still_read() {
    let one = Command::NodeStartAllowed {
        node: "n1".into(),
        at: t(0),
    };
    let alone = String::from_utf8(one.encode()).unwrap();
    let batch = Command::Batch {
        commands: vec![one.clone(), one.clone()],
    };
    let text = String::from_utf8(batch.encode()).unwrap();
    assert_eq!(
        text,
        format!(r#"{{"command":"batch","commands":[{alone},{alone}]}}"#)
    );
    assert_eq!(Command::decode(text.as_bytes()).unwrap(), batch);
    let reply = Reply::Batch {
        replies: vec![Reply::Done, Reply::Restarts { count: 2 }],
    };
    assert_eq!(
        String::from_utf8(reply.encode()).unwrap(),
        r#"{"reply":"batch","replies":[{"reply":"done"},{"reply":"restarts","count":2}]}"#
    );
    // An action's report as every earlier build wrote it.
    let old = r#"{"command":"action_done","execution":7,"step":1,"index":2,"ok":true,"detail":"web started on n1","at":"2023-11-14T22:13:20Z"}"#;
    assert_eq!(
        Command::decode(old.as_bytes()).unwrap(),
        Command::ActionDone {
            execution: 7,
            step: 1,
            index: 2,
            ok: true,
            detail: "web started on n1".into(),
            at: t(0),
        }
    );
}
