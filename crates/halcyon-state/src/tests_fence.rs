//! Fences as the replicated state keeps them: the `node_fence` record, the node's current
//! fence, the event that waits for the node's release, and the administrator's answers to a
//! fence that failed.

use super::tests::{CLUSTER, PACKAGE, enqueue, plan_next, t};
use super::*;

/// The test cluster with a fence device on n1 and n2, and web requiring fencing when asked.
fn state(requires: halcyon_config::Requires) -> State {
    let mut config =
        halcyon_config::load_texts(&[("cluster.toml", CLUSTER), ("web.toml", PACKAGE)])
            .unwrap_or_else(|e| panic!("{e}"));
    let device = halcyon_config::FenceDevice {
        agent: "fence_test".into(),
        options: BTreeMap::new(),
        timeout: std::time::Duration::from_secs(5),
    };
    for node in config.cluster.nodes.iter_mut().take(2) {
        node.fencing = Some(halcyon_config::Fencing {
            levels: vec![halcyon_config::FenceLevel {
                devices: vec![device.clone()],
            }],
        });
    }
    config
        .packages
        .values_mut()
        .for_each(|p| p.requires = requires);
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
    for (i, node) in ["n1", "n2"].into_iter().enumerate() {
        s.apply(
            2 + i as u64,
            Command::Register {
                node: node.into(),
                incarnation: 1,
                at: t(0),
                clean_stop: None,
            },
        );
    }
    s
}

fn report(confirmed: bool) -> FenceReport {
    FenceReport {
        action: "off".into(),
        confirmed,
        summary: if confirmed {
            "n1 fenced (off) by level 1".into()
        } else {
            "n1 NOT fenced: every level failed".into()
        },
        attempts: vec![
            "level 1 device 1 fence_test off: exit 0, 12 ms".into(),
            "level 1 device 1 fence_test status: exit 2, 8 ms".into(),
        ],
    }
}

fn fence(s: &mut State, index: u64, incarnation: u64, confirmed: bool, at: Timestamp) -> Reply {
    s.apply(
        index,
        Command::FenceReport {
            node: "n1".into(),
            incarnation,
            report: report(confirmed),
            by: "coordinator n2".into(),
            at,
        },
    )
}

/// n1 and n2 members with web on n1, then n1 fails: the execution awaits n1's release.
fn awaiting_n1(s: &mut State) -> u64 {
    let mut index = 10;
    for node in ["n1", "n2"] {
        enqueue(s, index, Event::NodeUp { node: node.into() }, "m", t(1));
        plan_next(s, index + 1, t(1));
        index = super::tests::done_all(s, index + 1, true);
        index += 1;
    }
    assert_eq!(
        s.cluster()
            .package("web")
            .nodes
            .iter()
            .next()
            .map(|n| n.as_str()),
        Some("n1")
    );
    enqueue(
        s,
        index,
        Event::NodeDown {
            node: "n1".into(),
            how: Default::default(),
        },
        "m",
        t(3),
    );
    let id = plan_next(s, index + 1, t(3));
    assert!(s.execution().unwrap().awaits_release_of("n1"));
    id
}

#[test]
fn a_fence_is_a_finished_record_with_every_agent_call_and_stands_for_its_incarnation() {
    let mut s = state(halcyon_config::Requires::Lease);
    assert_eq!(fence(&mut s, 5, 1, true, t(2)), Reply::Done);
    let r = s.log().back().unwrap();
    assert_eq!(r.event.to_string(), "node_fence n1 (off): confirmed");
    assert_eq!(r.outcome, Outcome::Done);
    assert_eq!(r.by, "coordinator n2");
    let notes: Vec<&str> = r.notes.iter().map(|n| n.text.as_str()).collect();
    assert_eq!(
        notes,
        [
            "level 1 device 1 fence_test off: exit 0, 12 ms",
            "level 1 device 1 fence_test status: exit 2, 8 ms",
            "n1 fenced (off) by level 1"
        ]
    );
    assert!(s.fence_confirmed("n1"));
    assert!(s.pending_events().is_empty(), "a fence is never queued");
    // The node comes back as a new incarnation: the fence no longer stands for it.
    s.apply(
        6,
        Command::Register {
            node: "n1".into(),
            incarnation: 2,
            at: t(5),
            clean_stop: None,
        },
    );
    assert!(!s.fence_confirmed("n1"));
    assert!(s.current_fence("n1").is_none());
    assert_eq!(s.fences()["n1"].incarnation, 1, "kept for status");
    // A late report for the old incarnation changes nothing.
    let records = s.log().len();
    assert!(matches!(
        fence(&mut s, 7, 1, true, t(6)),
        Reply::Ignored { .. }
    ));
    assert_eq!(s.log().len(), records);
    assert!(!s.fence_confirmed("n1"));
}

#[test]
fn failed_fences_are_counted_until_one_is_confirmed() {
    let mut s = state(halcyon_config::Requires::Lease);
    fence(&mut s, 5, 1, false, t(2));
    fence(&mut s, 6, 1, false, t(12));
    let f = s.current_fence("n1").unwrap();
    assert_eq!((f.failures, f.report.confirmed), (2, false));
    let r = s.log().back().unwrap();
    assert_eq!(r.outcome, Outcome::DoneWithFailures);
    assert_eq!(
        r.error.as_deref(),
        Some("n1 NOT fenced: every level failed")
    );
    fence(&mut s, 7, 1, true, t(22));
    assert_eq!(s.current_fence("n1").unwrap().failures, 0);
    // A node that is not configured cannot be fenced.
    let reply = s.apply(
        8,
        Command::FenceReport {
            node: "n9".into(),
            incarnation: 1,
            report: report(true),
            by: "admin".into(),
            at: t(23),
        },
    );
    assert!(matches!(reply, Reply::Ignored { .. }), "{reply:?}");
}

#[test]
fn the_event_awaiting_a_failed_fence_says_error_and_retry_and_skip_answer_it() {
    let mut s = state(halcyon_config::Requires::Fencing);
    let id = awaiting_n1(&mut s);
    let config = s.config().unwrap().clone();
    assert!(s.execution().unwrap().needs_fence_of(&config, "n1"));
    fence(&mut s, 50, 1, false, t(4));
    let notes = &s.record(id).unwrap().notes;
    assert!(
        notes
            .last()
            .unwrap()
            .text
            .starts_with("ERROR: fencing n1 failed (1 in a row): n1 NOT fenced"),
        "{notes:#?}"
    );
    let control = |s: &mut State, index, answer| {
        s.apply(
            index,
            Command::EventControl {
                execution: id,
                answer,
                by: "admin".into(),
                at: t(5),
            },
        )
    };
    assert!(
        matches!(control(&mut s, 51, Answer::Resume), Reply::Ignored { why } if why.contains("take n1 as fenced"))
    );
    assert_eq!(control(&mut s, 52, Answer::Retry), Reply::Done);
    assert!(s.current_fence("n1").unwrap().retry_requested);
    // A new attempt's report clears the request.
    fence(&mut s, 53, 1, false, t(6));
    assert!(!s.current_fence("n1").unwrap().retry_requested);
    assert_eq!(control(&mut s, 54, Answer::Skip), Reply::Done);
    assert!(!s.execution().unwrap().needs_fence_of(&config, "n1"));
    assert!(
        s.record(id)
            .unwrap()
            .notes
            .last()
            .unwrap()
            .text
            .contains("the takeover waits for the lease only")
    );
    // Nothing is left to answer.
    assert!(matches!(
        control(&mut s, 55, Answer::Skip),
        Reply::Ignored { .. }
    ));
}

#[test]
fn a_package_that_requires_only_the_lease_needs_no_fence() {
    let mut s = state(halcyon_config::Requires::Lease);
    awaiting_n1(&mut s);
    let config = s.config().unwrap().clone();
    assert!(!s.execution().unwrap().needs_fence_of(&config, "n1"));
}
