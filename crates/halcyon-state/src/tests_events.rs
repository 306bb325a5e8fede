//! The event's program as the replicated state runs it: barriers, built-in commands
//! carrying out the plan, ERROR and the administrator's answers, lost nodes.

use std::path::Path;

use super::tests::{CLUSTER, t};
use super::*;
use halcyon_policy::Engine;

const PACKAGE: &str = r#"
[package]
name = "web"
type = "failover"
nodes = ["n1", "n2"]
auto_run = true
[[resource]]
kind = "service"
name = "srv"
command = "sleep 100"
"#;

const RULES: &str = r#"
[[event]]
name = "node_up"
before = 'all "/bin/log-join" 0'
after = 'event "/bin/welcome" 0'

[[event]]
name = "package_move"
before = 'other "/bin/prepare" 0'

[[event]]
name = "UE_RWHO"
program = '''
other "/bin/note" X
event "/bin/restart-rwho" 0
barrier
all "/bin/done" 0
'''
"#;

struct Cluster {
    s: State,
    index: u64,
}

impl Cluster {
    fn new() -> Cluster {
        let config =
            halcyon_config::load_texts(&[("cluster.toml", CLUSTER), ("web.toml", PACKAGE)])
                .unwrap_or_else(|e| panic!("{e}"));
        let rules = halcyon_events::parse_rules(Path::new("rules.toml"), RULES, &mut |_| {
            Err(std::io::Error::other("no files"))
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let mut c = Cluster {
            s: State::new(),
            index: 0,
        };
        c.apply(Command::Bootstrap {
            config: Box::new(config),
            rules,
            sources: Vec::new(),
            at: t(0),
        });
        c
    }

    fn apply(&mut self, command: Command) -> Reply {
        self.index += 1;
        self.s.apply(self.index, command)
    }

    fn enqueue(&mut self, event: Event) {
        let reply = self.apply(Command::Enqueue {
            event,
            by: "test".into(),
            at: t(1),
            sample: None,
            request: None,
        });
        assert!(matches!(reply, Reply::Queued { .. }), "{reply:?}");
    }

    /// Plans and commits the next pending event, as the coordinator does.
    fn plan_next(&mut self) -> u64 {
        let config = self.s.config.clone().unwrap();
        let pending = self.s.pending_events();
        let i = halcyon_policy::next_event(&config, &pending).expect("an event is pending");
        let (sequence, event) = pending[i].clone();
        let plan = Engine::new(&config)
            .plan(&self.s.cluster, &event, t(2))
            .unwrap();
        match self.apply(Command::PlanCommitted {
            sequence,
            plan: Box::new(plan),
            at: t(2),
        }) {
            Reply::Executing { execution } => execution,
            other => panic!("{other:?}"),
        }
    }

    fn execution(&self) -> &Execution {
        self.s.execution.as_ref().expect("an execution runs")
    }

    /// `node: command` of every launch handed out and not finished.
    fn launched(&self) -> Vec<String> {
        self.execution()
            .launches
            .values()
            .map(|l| {
                format!(
                    "{}: {}",
                    l.node.as_ref().map_or("coordinator", |n| n.as_str()),
                    l.command
                )
            })
            .collect()
    }

    /// Reports every running non-built-in launch with `status`.
    fn finish_commands(&mut self, status: impl Fn(&str, &str) -> i32) {
        let e = self.execution().clone();
        for (launch, l) in &e.launches {
            if halcyon_events::Builtin::parse(&l.command).is_some() {
                continue;
            }
            let node = l.node.clone();
            let code = status(node.as_ref().map_or("", |n| n.as_str()), &l.command);
            let reply = self.apply(Command::LaunchDone {
                execution: e.id,
                launch: *launch,
                node,
                report: LaunchReport {
                    status: code,
                    output: format!("output of {}", l.command),
                    started_at: t(3),
                    finished_at: t(4),
                },
                at: t(4),
            });
            assert_eq!(reply, Reply::Done);
        }
    }

    /// Carries out every ready action with `ok(action)`.
    fn do_ready_actions(&mut self, ok: impl Fn(&halcyon_policy::Action) -> bool) -> usize {
        let e = self.execution().clone();
        let ready: Vec<(usize, usize, halcyon_policy::Action)> = e
            .ready_actions()
            .into_iter()
            .map(|(s, i, a)| (s, i, a.clone()))
            .collect();
        for (step, index, action) in &ready {
            let reply = self.apply(Command::ActionDone {
                execution: e.id,
                step: *step,
                index: *index,
                ok: ok(action),
                detail: format!("{} {:?} on {}", action.kind, action.package, action.node),
                at: t(5),
            });
            assert_eq!(reply, Reply::Done);
        }
        ready.len()
    }

    fn bring_up(&mut self, node: &str) {
        self.enqueue(Event::NodeUp { node: node.into() });
        self.plan_next();
        for _ in 0..20 {
            if self.s.execution.is_none() {
                return;
            }
            self.finish_commands(|_, _| 0);
            if self.s.execution.is_some() {
                self.do_ready_actions(|_| true);
            }
        }
        panic!("{node} did not come up: {:#?}", self.s.execution);
    }
}

#[test]
fn node_up_runs_the_wrapped_program_and_the_plan_between_its_barriers() {
    let mut c = Cluster::new();
    c.bring_up("n1");
    c.bring_up("n3");
    c.enqueue(Event::NodeUp { node: "n2".into() });
    let id = c.plan_next();
    // Segment 1: the `before` line on every participant (n2 joins n1 and n3).
    assert_eq!(
        c.launched(),
        [
            "n1: /bin/log-join",
            "n2: /bin/log-join",
            "n3: /bin/log-join"
        ]
    );
    assert!(c.execution().ready_actions().is_empty());
    c.finish_commands(|_, _| 0);
    // Segments 2 and 3 (release, acquire) have no action here (web stays on n1):
    // they complete at once; segment 4 is `after` on the event node.
    assert_eq!(c.launched(), ["n2: /bin/welcome"]);
    c.finish_commands(|_, _| 0);
    assert!(c.s.execution.is_none());
    let record = c.s.record(id).unwrap();
    assert_eq!(record.outcome, Outcome::Done);
    let order: Vec<String> = record
        .launches
        .iter()
        .map(|l| format!("{}: {}", l.node.as_ref().unwrap(), l.command))
        .collect();
    assert_eq!(
        order,
        [
            "n1: /bin/log-join",
            "n2: /bin/log-join",
            "n3: /bin/log-join",
            "n1: halcyon:release",
            "n2: halcyon:release",
            "n3: halcyon:release",
            "n1: halcyon:acquire",
            "n2: halcyon:acquire",
            "n3: halcyon:acquire",
            "n2: /bin/welcome",
        ]
    );
    assert!(record.launches.iter().all(|l| l.status == Some(0)));
    assert!(
        record.program_text.as_ref().unwrap().contains("barrier 1"),
        "{:?}",
        record.program_text
    );
}

#[test]
fn a_move_halts_before_it_runs_and_a_failed_halt_stops_the_event_in_error() {
    let mut c = Cluster::new();
    c.bring_up("n1");
    c.bring_up("n2");
    assert!(c.s.cluster.package("web").nodes.contains("n1"));
    c.enqueue(Event::PackageMove {
        package: "web".into(),
        node: Some("n2".into()),
    });
    let id = c.plan_next();
    // `before` runs on the nodes other than the event node first; nothing of the plan
    // may start before its barrier.
    assert!(c.execution().ready_actions().is_empty());
    c.finish_commands(|_, _| 0);
    // The halt on n1 is ready; the run on n2 waits for it.
    let ready: Vec<String> = c
        .execution()
        .ready_actions()
        .iter()
        .map(|(_, _, a)| format!("{} on {}", a.kind, a.node))
        .collect();
    assert_eq!(ready, ["halt on n1"]);
    // The halt fails: ERROR at the barrier, the run never becomes ready.
    c.do_ready_actions(|_| false);
    let e = c.execution().clone();
    assert!(
        matches!(e.progress.state(), EventState::Error { .. }),
        "{:?}",
        e.progress.state()
    );
    assert!(e.ready_actions().is_empty());
    let notes = &c.s.record(id).unwrap().notes;
    assert!(
        notes.iter().any(|n| n.text.contains("ERROR at barrier 2")
            && n.text.contains("halcyon:release")
            && n.text.contains("FAILED")),
        "{notes:?}"
    );
    // resume/skip on another execution, or an answer out of ERROR, change nothing.
    assert!(matches!(
        c.apply(Command::EventControl {
            execution: id + 1,
            answer: Answer::Resume,
            by: "admin".into(),
            at: t(6),
        }),
        Reply::Ignored { .. }
    ));
    // retry: the release runs again and the failed halt is carried out again.
    assert_eq!(
        c.apply(Command::EventControl {
            execution: id,
            answer: Answer::Retry,
            by: "admin".into(),
            at: t(6),
        }),
        Reply::Done
    );
    assert!(matches!(
        c.apply(Command::EventControl {
            execution: id,
            answer: Answer::Retry,
            by: "admin".into(),
            at: t(6),
        }),
        Reply::Ignored { .. }
    ));
    assert_eq!(c.do_ready_actions(|_| true), 1, "the halt runs again");
    assert_eq!(c.do_ready_actions(|_| true), 1, "then the run on n2");
    assert!(c.s.execution.is_none());
    assert!(c.s.cluster.package("web").nodes.contains("n2"));
    let record = c.s.record(id).unwrap();
    assert_eq!(record.outcome, Outcome::Done);
    assert!(record.notes.iter().any(|n| n.text == "retry by admin"));
}

#[test]
fn skip_abandons_the_program_but_the_plan_is_still_carried_out() {
    let mut c = Cluster::new();
    c.bring_up("n1");
    c.bring_up("n2");
    c.enqueue(Event::PackageMove {
        package: "web".into(),
        node: Some("n2".into()),
    });
    let id = c.plan_next();
    // The `before` command fails on n1: ERROR before anything of the plan ran.
    c.finish_commands(|_, _| 3);
    assert!(c.execution().ready_actions().is_empty());
    c.apply(Command::EventControl {
        execution: id,
        answer: Answer::Skip,
        by: "admin".into(),
        at: t(6),
    });
    // The halt, then the run, are carried out so that the cluster state stays true.
    assert_eq!(c.do_ready_actions(|_| true), 1);
    assert_eq!(c.do_ready_actions(|_| true), 1);
    assert!(c.s.execution.is_none());
    assert!(c.s.cluster.package("web").nodes.contains("n2"));
    assert_eq!(c.s.record(id).unwrap().outcome, Outcome::Skipped);
}

#[test]
fn resume_continues_after_the_barrier_as_if_the_command_had_succeeded() {
    let mut c = Cluster::new();
    c.bring_up("n1");
    c.bring_up("n2");
    c.enqueue(Event::PackageMove {
        package: "web".into(),
        node: Some("n2".into()),
    });
    let id = c.plan_next();
    c.finish_commands(|_, _| 3);
    c.apply(Command::EventControl {
        execution: id,
        answer: Answer::Resume,
        by: "admin".into(),
        at: t(6),
    });
    assert_eq!(c.do_ready_actions(|_| true), 1);
    assert_eq!(c.do_ready_actions(|_| true), 1);
    assert!(c.s.execution.is_none());
    assert_eq!(c.s.record(id).unwrap().outcome, Outcome::DoneWithFailures);
}

#[test]
fn a_user_defined_event_runs_its_program_and_a_lost_node_is_abandoned() {
    let mut c = Cluster::new();
    c.bring_up("n1");
    c.bring_up("n2");
    c.bring_up("n3");
    c.enqueue(Event::UserDefined {
        name: "UE_RWHO".into(),
        node: "n2".into(),
    });
    let id = c.plan_next();
    assert_eq!(
        c.launched(),
        ["n1: /bin/note", "n2: /bin/restart-rwho", "n3: /bin/note"]
    );
    assert_eq!(
        c.execution()
            .context
            .event_node
            .as_ref()
            .map(|n| n.as_str()),
        Some("n2")
    );
    // A report from the wrong node is refused.
    let launch = *c.execution().launches.keys().next().unwrap();
    assert!(matches!(
        c.apply(Command::LaunchDone {
            execution: id,
            launch,
            node: Some("n3".into()),
            report: LaunchReport {
                status: 0,
                output: String::new(),
                started_at: t(3),
                finished_at: t(3),
            },
            at: t(3),
        }),
        Reply::Ignored { .. }
    ));
    // n3 is lost while its command runs: the barrier completes without it, and it
    // runs nothing later.
    c.finish_commands(|node, _| if node == "n3" { -1 } else { 0 });
    assert!(c.s.execution.is_some());
    let e = c.execution().clone();
    // (n3 reported too in finish_commands: undo by building the case again is
    // heavy; instead check the later segment with a fresh event.)
    assert!(e.launches.values().all(|l| l.command == "/bin/done"));
    c.finish_commands(|_, _| 0);
    assert!(c.s.execution.is_none());

    c.enqueue(Event::UserDefined {
        name: "UE_RWHO".into(),
        node: "n2".into(),
    });
    let id = c.plan_next();
    let n3_launch = *c
        .execution()
        .launches
        .iter()
        .find(|(_, l)| l.node.as_ref().is_some_and(|n| n.as_str() == "n3"))
        .unwrap()
        .0;
    assert_eq!(
        c.apply(Command::NodeLost {
            execution: id,
            node: "n3".into(),
            why: "n3 failed during the event".into(),
            at: t(5),
        }),
        Reply::Done
    );
    assert!(!c.execution().launches.contains_key(&n3_launch));
    c.finish_commands(|_, _| 0);
    assert_eq!(c.launched(), ["n1: /bin/done", "n2: /bin/done"]);
    c.finish_commands(|_, _| 0);
    assert!(c.s.execution.is_none());
    let record = c.s.record(id).unwrap();
    let n3 = record
        .launches
        .iter()
        .find(|l| l.launch == n3_launch)
        .unwrap();
    assert_eq!(n3.abandoned.as_deref(), Some("n3 failed during the event"));
    assert_eq!(record.outcome, Outcome::Done);
}

#[test]
fn a_user_defined_event_without_a_rule_is_refused_with_the_reason() {
    let mut c = Cluster::new();
    c.bring_up("n1");
    c.enqueue(Event::UserDefined {
        name: "UE_UNKNOWN".into(),
        node: "n1".into(),
    });
    let config = c.s.config.clone().unwrap();
    let (sequence, event) = c.s.pending_events()[0].clone();
    let plan = Engine::new(&config)
        .plan(&c.s.cluster, &event, t(2))
        .unwrap();
    assert_eq!(
        c.apply(Command::PlanCommitted {
            sequence,
            plan: Box::new(plan),
            at: t(2),
        }),
        Reply::Done
    );
    assert!(c.s.execution.is_none());
    let record = c.s.log.back().unwrap();
    assert_eq!(record.outcome, Outcome::Refused);
    assert!(
        record
            .error
            .as_ref()
            .unwrap()
            .contains("no rule for the user-defined event \"UE_UNKNOWN\""),
        "{:?}",
        record.error
    );
}

#[test]
fn a_failed_node_is_awaited_before_its_package_runs_elsewhere() {
    let mut c = Cluster::new();
    c.bring_up("n1");
    c.bring_up("n2");
    c.enqueue(Event::NodeDown {
        node: "n1".into(),
        how: halcyon_policy::Departure::Failure,
    });
    c.plan_next();
    // n1 is no participant; the await release (coordinator) is ready, the run on n2
    // is not until it is done.
    let ready: Vec<String> = c
        .execution()
        .ready_actions()
        .iter()
        .map(|(_, _, a)| format!("{} on {}", a.kind, a.node))
        .collect();
    assert_eq!(ready, ["await release on n1"]);
    assert!(
        !c.execution()
            .context
            .members
            .iter()
            .any(|m| m.as_str() == "n1")
    );
    c.do_ready_actions(|_| true);
    let ready: Vec<String> = c
        .execution()
        .ready_actions()
        .iter()
        .map(|(_, _, a)| format!("{} on {}", a.kind, a.node))
        .collect();
    assert_eq!(ready, ["run on n2"]);
    c.do_ready_actions(|_| true);
    assert!(c.s.execution.is_none());
}

#[test]
fn an_event_running_too_long_is_warned_once_per_maximum_duration() {
    let mut c = Cluster::new();
    c.bring_up("n1");
    c.enqueue(Event::UserDefined {
        name: "UE_RWHO".into(),
        node: "n1".into(),
    });
    // Started at t(2); the maximum duration is the default, 360 s.
    let id = c.plan_next();
    let too_long = |at| Command::EventTooLong { execution: id, at };
    assert_eq!(c.apply(too_long(t(400))), Reply::Done);
    assert!(matches!(c.apply(too_long(t(500))), Reply::Ignored { .. }));
    // Past twice the maximum (722 s): warned again, and not again within that period.
    assert!(matches!(c.apply(too_long(t(722))), Reply::Ignored { .. }));
    assert_eq!(c.apply(too_long(t(723))), Reply::Done);
    assert!(matches!(c.apply(too_long(t(900))), Reply::Ignored { .. }));
    assert_eq!(c.execution().progress.too_long_warnings(), 2);
    let notes = &c.s.record(id).unwrap().notes;
    assert_eq!(notes.len(), 2);
    assert!(
        notes[0]
            .text
            .contains("longer than its maximum duration (6m)")
    );
    assert!(
        notes[1]
            .text
            .contains("still runs after 2 times its maximum duration (6m)"),
        "{}",
        notes[1].text
    );
}

#[test]
fn a_node_stuck_in_an_event_is_excluded_until_it_registers_again() {
    let mut c = Cluster::new();
    for node in ["n1", "n2", "n3"] {
        let reply = c.apply(Command::Register {
            node: node.into(),
            incarnation: 1,
            at: t(0),
            clean_stop: None,
        });
        assert_eq!(reply, Reply::Done);
    }
    c.bring_up("n1");
    c.bring_up("n2");
    c.bring_up("n3");
    c.enqueue(Event::UserDefined {
        name: "UE_RWHO".into(),
        node: "n2".into(),
    });
    let id = c.plan_next();
    let stuck = |why: &str| Command::NodeStuck {
        execution: id,
        node: "n2".into(),
        why: why.into(),
        at: t(9),
    };
    let why = "n2 did not complete its command within 1d 10s";
    // Only for the execution that runs.
    assert!(matches!(
        c.apply(Command::NodeStuck {
            execution: id + 1,
            node: "n2".into(),
            why: why.into(),
            at: t(9),
        }),
        Reply::Ignored { .. }
    ));
    assert_eq!(c.apply(stuck(why)), Reply::Done);
    assert_eq!(
        c.s.stuck().get("n2"),
        Some(&Stuck {
            incarnation: 1,
            execution: id,
            why: why.into(),
            at: t(9),
        })
    );
    // Excluded like a failed node: its node_down is queued (once), the event says why.
    let down = Event::NodeDown {
        node: "n2".into(),
        how: halcyon_policy::Departure::Failure,
    };
    let queued: Vec<&Pending> = c.s.pending().iter().filter(|p| p.event == down).collect();
    assert_eq!(queued.len(), 1, "{:?}", c.s.pending());
    assert_eq!(queued[0].by, "stuck");
    let notes = &c.s.record(id).unwrap().notes;
    assert!(
        notes.iter().any(|n| n
            .text
            .starts_with(&format!("ERROR: {why}: n2 is excluded like a failed node"))),
        "{notes:#?}"
    );
    assert!(matches!(c.apply(stuck(why)), Reply::Ignored { .. }));
    // The state the replicas keep and the loops copy keep it too.
    assert_eq!(c.s.clone_without_log().stuck(), c.s.stuck());
    // A new incarnation (its daemon restarted) may join again.
    c.apply(Command::Register {
        node: "n2".into(),
        incarnation: 2,
        at: t(10),
        clean_stop: None,
    });
    assert!(c.s.stuck().is_empty());
    // Not the same one, even if an administrator starts it: the old process may still be
    // stuck in a start.
    assert_eq!(c.apply(stuck(why)), Reply::Done);
    assert_eq!(c.s.stuck()["n2"].incarnation, 2);
    c.apply(Command::NodeStartAllowed {
        node: "n2".into(),
        at: t(11),
    });
    assert_eq!(c.s.stuck()["n2"].incarnation, 2);
}
