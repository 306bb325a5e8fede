//! The execution state machine: barriers, ERROR and the administrator's answers,
//! recovery with retries, notifications, and a coordinator taking over mid-event.

use std::path::Path;
use std::time::Duration;

use halcyon_config::NodeName;
use halcyon_events::{
    EventState, Launch, LaunchKind, NotifyPhase, Options, Program, Progress, ProgressError,
    Recovery, expand,
};

const PROGRAM: &str = "\
other \"/bin/release\" 0
barrier
event \"/bin/acquire\" 0
event \"/bin/check\" X
barrier
all \"/bin/complete\" 0
";

fn progress(options: Options) -> Progress {
    let program = Program::parse(Path::new("t.rp"), PROGRAM).expect("parses");
    let members: Vec<NodeName> = ["n1", "n2", "n3"].map(NodeName::from).to_vec();
    Progress::new(
        expand(&program, Some(&NodeName::from("n2")), &members),
        options,
    )
}

/// `node: command` of each launch, for readable assertions.
fn names(launches: &[Launch]) -> Vec<String> {
    launches
        .iter()
        .map(|l| match (&l.node, &l.kind) {
            (Some(n), LaunchKind::Recovery { .. }) => format!("{n}: recovery {}", l.command),
            (Some(n), _) => format!("{n}: {}", l.command),
            (None, LaunchKind::Notify { phase, result }) => {
                format!(
                    "notify {} {}",
                    phase.as_str(),
                    result.as_deref().unwrap_or("-")
                )
            }
            (None, _) => unreachable!(),
        })
        .collect()
}

/// Completes every launch with `status_of(node, command)`.
fn complete_all(p: &mut Progress, launches: &[Launch], status_of: impl Fn(&str, &str) -> i32) {
    for l in launches {
        let node = l
            .node
            .clone()
            .unwrap_or_else(|| NodeName::from("coordinator"));
        let status = status_of(node.as_str(), &l.command);
        p.completed(&node, l.launch, status, &format!("output of {}", l.command))
            .expect("a running launch");
    }
}

#[test]
fn a_normal_run_passes_each_barrier_in_turn() {
    let mut p = progress(Options::default());
    let first = p.next_commands();
    assert_eq!(names(&first), ["n1: /bin/release", "n3: /bin/release"]);
    assert_eq!(p.last_completed_barrier(), None);
    // One of two done: the barrier waits.
    p.completed(&NodeName::from("n1"), first[0].launch, 0, "")
        .unwrap();
    assert!(p.next_commands().is_empty());
    assert_eq!(p.current_segment(), Some(0));
    p.completed(&NodeName::from("n3"), first[1].launch, 0, "")
        .unwrap();
    assert_eq!(p.last_completed_barrier(), Some(0));
    let second = p.next_commands();
    // Commands on one node between two barriers run in parallel.
    assert_eq!(names(&second), ["n2: /bin/acquire", "n2: /bin/check"]);
    complete_all(
        &mut p,
        &second,
        |_, c| if c == "/bin/check" { 7 } else { 0 },
    );
    let third = p.next_commands();
    assert_eq!(
        names(&third),
        [
            "n1: /bin/complete",
            "n2: /bin/complete",
            "n3: /bin/complete"
        ]
    );
    complete_all(&mut p, &third, |_, _| 0);
    assert_eq!(p.state(), &EventState::Completed);
    assert_eq!(p.last_completed_barrier(), Some(2));
    assert!(p.next_commands().is_empty());
    assert!(p.is_finished());
}

/// A failure on n3 in the first segment: n1's command still completes, then the
/// event is in ERROR at the barrier and nothing after it starts.
fn run_into_error(options: Options) -> Progress {
    let mut p = progress(options);
    let first: Vec<Launch> = p
        .next_commands()
        .into_iter()
        .filter(|l| l.node.is_some())
        .collect();
    p.completed(&NodeName::from("n3"), first[1].launch, 3, "disk busy\n")
        .unwrap();
    assert_eq!(
        p.state(),
        &EventState::Running,
        "the rest of the segment runs"
    );
    assert!(p.next_commands().iter().all(|l| l.node.is_none()));
    p.completed(&NodeName::from("n1"), first[0].launch, 0, "")
        .unwrap();
    p
}

#[test]
fn a_failing_command_puts_the_event_in_error_at_the_barrier() {
    let mut p = run_into_error(Options::default());
    let EventState::Error { failures } = p.state() else {
        panic!("ERROR expected: {:?}", p.state());
    };
    assert_eq!(failures.len(), 1);
    let f = &failures[0];
    assert_eq!(
        (
            f.node.as_str(),
            f.command.as_str(),
            f.status,
            f.output_tail.as_str()
        ),
        ("n3", "/bin/release", 3, "disk busy\n")
    );
    assert_eq!(
        f.to_string(),
        "on n3: \"/bin/release\" returned 3 (expected 0); output ends: disk busy"
    );
    assert_eq!(p.last_completed_barrier(), None);
    assert!(
        p.next_commands().is_empty(),
        "nothing after the barrier starts"
    );
}

#[test]
fn resume_continues_after_the_barrier() {
    let mut p = run_into_error(Options::default());
    p.resume().unwrap();
    assert_eq!(p.last_completed_barrier(), Some(0));
    assert_eq!(
        names(&p.next_commands()),
        ["n2: /bin/acquire", "n2: /bin/check"]
    );
}

#[test]
fn retry_runs_the_failed_commands_again() {
    let mut p = run_into_error(Options::default());
    p.retry().unwrap();
    let again = p.next_commands();
    assert_eq!(
        names(&again),
        ["n3: /bin/release"],
        "only the failed command"
    );
    complete_all(&mut p, &again, |_, _| 0);
    assert_eq!(p.last_completed_barrier(), Some(0));
    assert_eq!(
        names(&p.next_commands()),
        ["n2: /bin/acquire", "n2: /bin/check"]
    );
}

#[test]
fn skip_abandons_the_rest() {
    let mut p = run_into_error(Options::default());
    p.skip().unwrap();
    assert_eq!(p.state(), &EventState::Skipped);
    assert!(p.next_commands().is_empty());
    assert!(p.is_finished());
}

#[test]
fn resume_retry_skip_need_an_error() {
    let mut p = progress(Options::default());
    let running = Err(ProgressError::NotInError { state: "running" });
    assert_eq!(p.resume(), running);
    assert_eq!(p.retry(), running);
    assert_eq!(p.skip(), running);
}

#[test]
fn stale_and_misrouted_completions_are_refused() {
    let mut p = progress(Options::default());
    let first = p.next_commands();
    assert_eq!(
        p.completed(&NodeName::from("n2"), first[0].launch, 0, ""),
        Err(ProgressError::WrongNode {
            launch: first[0].launch,
            expected: NodeName::from("n1"),
            node: NodeName::from("n2"),
        })
    );
    p.completed(&NodeName::from("n1"), first[0].launch, 0, "")
        .unwrap();
    assert_eq!(
        p.completed(&NodeName::from("n1"), first[0].launch, 0, ""),
        Err(ProgressError::UnknownLaunch {
            launch: first[0].launch
        })
    );
}

fn with_recovery(retry: u32) -> Options {
    Options {
        recovery: Some(Recovery {
            command: "/bin/fix".to_owned(),
            retry,
        }),
        notify: None,
    }
}

#[test]
fn recovery_command_then_the_command_again_up_to_retry_times() {
    let mut p = progress(with_recovery(2));
    let first = p.next_commands();
    // n1 succeeds; n3 fails.
    p.completed(&NodeName::from("n1"), first[0].launch, 0, "")
        .unwrap();
    p.completed(&NodeName::from("n3"), first[1].launch, 1, "")
        .unwrap();
    let recovery = p.next_commands();
    assert_eq!(names(&recovery), ["n3: recovery /bin/fix"]);
    assert!(recovery[0].env.contains(&(
        "HALCYON_FAILED_COMMAND".to_owned(),
        "/bin/release".to_owned()
    )));
    complete_all(&mut p, &recovery, |_, _| 0);
    // Second run (retry 1 of 2) fails again, recovery, third run (retry 2) fails.
    let second = p.next_commands();
    assert_eq!(names(&second), ["n3: /bin/release"]);
    complete_all(&mut p, &second, |_, _| 1);
    let recovery = p.next_commands();
    assert_eq!(names(&recovery), ["n3: recovery /bin/fix"]);
    complete_all(&mut p, &recovery, |_, _| 0);
    let third = p.next_commands();
    assert_eq!(names(&third), ["n3: /bin/release"]);
    complete_all(&mut p, &third, |_, _| 1);
    // No retry left: ERROR, after three runs.
    let EventState::Error { failures } = p.state() else {
        panic!("ERROR expected: {:?}", p.state());
    };
    assert_eq!(failures[0].attempts, 3);
    assert!(p.next_commands().is_empty());
}

#[test]
fn a_successful_retry_passes_the_barrier() {
    let mut p = progress(with_recovery(1));
    let first = p.next_commands();
    complete_all(&mut p, &first, |n, _| if n == "n3" { 1 } else { 0 });
    let recovery = p.next_commands();
    complete_all(&mut p, &recovery, |_, _| 0);
    let again = p.next_commands();
    complete_all(&mut p, &again, |_, _| 0);
    assert_eq!(p.last_completed_barrier(), Some(0));
    assert_eq!(p.state(), &EventState::Running);
}

#[test]
fn a_failed_recovery_command_is_an_error() {
    let mut p = progress(with_recovery(5));
    let first = p.next_commands();
    complete_all(&mut p, &first, |n, _| if n == "n3" { 4 } else { 0 });
    let recovery = p.next_commands();
    complete_all(&mut p, &recovery, |_, _| 1);
    let EventState::Error { failures } = p.state() else {
        panic!("ERROR expected: {:?}", p.state());
    };
    assert_eq!((failures[0].status, failures[0].attempts), (4, 1));
}

#[test]
fn notify_before_on_error_too_long_and_after() {
    let options = Options {
        recovery: None,
        notify: Some("/bin/page".to_owned()),
    };
    let mut p = run_into_error(options);
    // run_into_error dropped the "before" notification launch; it completes late.
    let launches = p.next_commands();
    assert_eq!(names(&launches), ["notify error failure"]);
    assert!(
        launches[0]
            .env
            .contains(&("HALCYON_NOTIFY_PHASE".to_owned(), "error".to_owned()))
    );
    assert!(p.duration_exceeded(1));
    assert!(!p.duration_exceeded(1), "once per maximum duration");
    assert_eq!(p.too_long_warnings(), 1);
    p.resume().unwrap();
    let next = p.next_commands();
    assert_eq!(
        names(&next),
        ["notify too_long -", "n2: /bin/acquire", "n2: /bin/check"]
    );
    complete_all(&mut p, &next, |_, _| 0);
    // Still running past a second maximum duration: warned again (HACMP's config_too_long
    // repeats), and skipping to a later count warns once for the lot.
    assert!(p.duration_exceeded(2));
    assert!(p.duration_exceeded(5));
    assert!(!p.duration_exceeded(4), "a lower count is no news");
    assert_eq!(p.too_long_warnings(), 5);
    let last = p.next_commands();
    assert_eq!(
        names(&last[..2]),
        ["notify too_long -", "notify too_long -"],
        "{last:?}"
    );
    complete_all(&mut p, &last, |_, _| 0);
    assert_eq!(names(&p.next_commands()), ["notify after success"]);
    assert!(
        !p.duration_exceeded(6),
        "a finished event is never too long"
    );
    let fresh = progress(Options {
        recovery: None,
        notify: Some("/bin/page".to_owned()),
    })
    .next_commands();
    assert!(matches!(
        fresh[0].kind,
        LaunchKind::Notify {
            phase: NotifyPhase::Before,
            ..
        }
    ));
}

/// The coordinator dies between the two barriers: the new one reads the progress
/// back, re-launches only what had not finished in the current segment, and never
/// what came before the last completed barrier.
#[test]
fn a_new_coordinator_continues_from_the_last_completed_barrier() {
    let mut p = progress(Options::default());
    let first = p.next_commands();
    complete_all(&mut p, &first, |_, _| 0);
    let second = p.next_commands();
    // /bin/acquire finished, /bin/check still running when the coordinator dies.
    p.completed(&NodeName::from("n2"), second[0].launch, 0, "")
        .unwrap();
    let stored = serde_json::to_string(&p).expect("serializes");

    let mut taken: Progress = serde_json::from_str(&stored).expect("deserializes");
    taken.validate().expect("valid");
    assert_eq!(taken, p, "round trip");
    assert_eq!(taken.last_completed_barrier(), Some(0));
    taken.take_over();
    let relaunched = taken.next_commands();
    assert_eq!(names(&relaunched), ["n2: /bin/check"]);
    complete_all(&mut taken, &relaunched, |_, _| 0);
    let mut all_launched = names(&relaunched);
    loop {
        let next = taken.next_commands();
        if next.is_empty() {
            break;
        }
        all_launched.extend(names(&next));
        complete_all(&mut taken, &next, |_, _| 0);
    }
    assert_eq!(taken.state(), &EventState::Completed);
    assert!(
        !all_launched.iter().any(|l| l.ends_with("/bin/release")),
        "nothing before the last completed barrier ran again: {all_launched:?}"
    );
    assert_eq!(
        all_launched,
        [
            "n2: /bin/check",
            "n1: /bin/complete",
            "n2: /bin/complete",
            "n3: /bin/complete"
        ]
    );
}

#[test]
fn a_stored_progress_that_breaks_an_invariant_is_refused() {
    let mut p = progress(Options::default());
    let first = p.next_commands();
    complete_all(&mut p, &first, |_, _| 0);
    let mut value = serde_json::to_value(&p).expect("serializes");
    value["last_completed_barrier"] = serde_json::Value::Null;
    let broken: Progress = serde_json::from_value(value).expect("deserializes");
    assert_eq!(
        broken.validate(),
        Err("the last completed barrier is not the one before the current segment".to_owned())
    );
}

#[test]
fn an_empty_program_completes_at_once() {
    let p = Progress::new(Vec::new(), Options::default());
    assert_eq!(p.state(), &EventState::Completed);
}

#[test]
fn a_node_lost_mid_event_is_abandoned_and_the_barrier_completes_without_it() {
    let mut p = progress(Options::default());
    let first = p.next_commands();
    assert_eq!(names(&first), ["n1: /bin/release", "n3: /bin/release"]);
    let n1 = NodeName::from("n1");
    let n3 = NodeName::from("n3");
    // n1 finishes; n3 dies while its release runs.
    p.completed(&n1, first[0].launch, 0, "").expect("running");
    assert!(p.has_unfinished(&n3));
    let abandoned = p.abandon_node(&n3, "n3 failed during the event");
    assert_eq!(abandoned, [first[1].launch]);
    assert!(!p.has_unfinished(&n3));
    // The barrier passed; n3's later commands never launch; a late report of the
    // abandoned launch is refused.
    assert_eq!(p.last_completed_barrier(), Some(0));
    assert_eq!(
        p.completed(&n3, first[1].launch, 0, ""),
        Err(ProgressError::UnknownLaunch {
            launch: first[1].launch
        })
    );
    let second = p.next_commands();
    assert_eq!(names(&second), ["n2: /bin/acquire", "n2: /bin/check"]);
    complete_all(&mut p, &second, |_, _| 0);
    let third = p.next_commands();
    assert_eq!(names(&third), ["n1: /bin/complete", "n2: /bin/complete"]);
    complete_all(&mut p, &third, |_, _| 0);
    assert_eq!(p.state(), &EventState::Completed);
}

#[test]
fn an_event_is_too_long_once_per_whole_maximum_duration_it_ran_past() {
    use halcyon_events::{next_too_long_after, too_long_warnings_due};
    let max = Duration::from_secs(360);
    let ms = Duration::from_millis;
    assert_eq!(too_long_warnings_due(Duration::ZERO, max), 0);
    assert_eq!(
        too_long_warnings_due(max, max),
        0,
        "at exactly the maximum: not longer"
    );
    assert_eq!(too_long_warnings_due(max + ms(1), max), 1);
    assert_eq!(too_long_warnings_due(max * 2, max), 1);
    assert_eq!(
        too_long_warnings_due(max * 2 + Duration::from_nanos(1), max),
        2
    );
    assert_eq!(too_long_warnings_due(max * 7 + ms(5), max), 7);
    assert_eq!(
        too_long_warnings_due(Duration::MAX, Duration::from_nanos(1)),
        u32::MAX
    );
    assert_eq!(
        too_long_warnings_due(max * 9, Duration::ZERO),
        0,
        "zero: never"
    );
    assert_eq!(next_too_long_after(0, max), Some(max));
    assert_eq!(next_too_long_after(2, max), Some(max * 3));
    assert_eq!(next_too_long_after(u32::MAX, max), None);
    assert_eq!(next_too_long_after(1, Duration::MAX), None);
}
