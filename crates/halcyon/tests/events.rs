//! The event engine on a live loopback cluster: recovery programs with barriers run on
//! the nodes and are asserted from the event log (`GET /v1/events`, `halcyon events`),
//! the administrator's answers to ERROR, a coordinator killed between two barriers,
//! recovery commands, duration warnings and notifications.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Starts the nodes in `start` of a cluster configured by `spec`, with `rules(dir)` as
/// its rules file (`dir`: the test directory, for journals and flags).
fn cluster_with_rules(
    mut spec: Spec,
    start: &[usize],
    rules: impl FnOnce(&Path) -> String + 'static,
) -> Cluster {
    spec.rules(rules);
    let mut c = Cluster::configure(spec);
    for &i in start {
        c.start(i);
    }
    c
}

/// The event log as node `i` holds it.
fn event_log(c: &Cluster, i: usize) -> Vec<Value> {
    let (code, v) = c.request(i, "GET", "/v1/events", None);
    assert_eq!(code, 200, "{v}");
    v["events"].as_array().cloned().unwrap_or_default()
}

/// Waits until node `i`'s log has a finished record of `event` (as displayed, e.g.
/// `node_up n3`) and returns it.
fn wait_record(c: &Cluster, i: usize, event: &str, limit: Duration) -> Value {
    let started = Instant::now();
    loop {
        if let Some(r) = event_log(c, i)
            .into_iter()
            .rev()
            .find(|r| r["event"] == event && r["outcome"] != "running")
        {
            return r;
        }
        assert!(
            started.elapsed() < limit,
            "{event}: no finished record within {limit:?}; log: {:#}\nlogs in {}",
            Value::Array(event_log(c, i)),
            c.path().display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `node: command` of every command of a record, in launch order.
fn commands(record: &Value) -> Vec<String> {
    record["launches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            format!(
                "{}: {}",
                l["node"].as_str().unwrap_or("coordinator"),
                l["command"].as_str().unwrap()
            )
        })
        .collect()
}

fn timestamp(v: &Value) -> jiff::Timestamp {
    v.as_str()
        .unwrap_or_else(|| panic!("no time: {v}"))
        .parse()
        .unwrap()
}

/// Asserts that every command of segment `k` finished before any command of segment
/// `k + 1` started (the barrier), from the times the nodes measured. Built-in commands
/// are not processes: their times are those of the commits that handed them out and
/// completed them, so they are left out.
fn assert_barriers(record: &Value) {
    let launches: Vec<&Value> = record["launches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| !l["command"].as_str().unwrap().starts_with("halcyon:"))
        .collect();
    let segment = |l: &&Value| l["kind"]["segment"].as_u64();
    let last = launches.iter().filter_map(segment).max().unwrap_or(0);
    for k in 0..last {
        let finished = launches
            .iter()
            .filter(|l| segment(l) == Some(k) && l["abandoned"].is_null())
            .map(|l| timestamp(&l["finished_at"]))
            .max();
        let started = launches
            .iter()
            .filter(|l| segment(l) == Some(k + 1) && l["abandoned"].is_null())
            .map(|l| timestamp(&l["started_at"]))
            .min();
        if let (Some(f), Some(s)) = (finished, started) {
            assert!(
                f <= s,
                "barrier {}: segment {} finished at {f}, segment {} started at {s}: {record:#}",
                k + 1,
                k + 1,
                k + 2
            );
        }
    }
}

fn journal(c: &Cluster) -> Vec<String> {
    std::fs::read_to_string(c.path().join("journal"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A command appending `WORDS` (with the node's name) to the journal, then sleeping so
/// that barriers are visible in the times.
fn note(dir: &Path, words: &str) -> String {
    format!(
        "echo \\\"$HALCYON_NODE {words}\\\" >> {}; sleep 0.2",
        dir.join("journal").display()
    )
}

#[test]
fn the_seeds_node_up_walk_through_on_four_nodes() {
    // Seed 001, 4.4.3: node 3 joins nodes 1, 2 and 4. `other` runs node_up on the
    // members, barrier, `event` runs node_up on node 3, barrier, `all` runs
    // node_up_complete (status ignored). The built-in release and acquire keep their
    // places around the same barriers.
    let mut spec = Spec::new();
    spec.nodes = 4;
    let mut c = cluster_with_rules(spec, &[1, 2, 4], |dir| {
        format!(
            "[[event]]\nname = \"node_up\"\nprogram = '''\n\
             other \"{}\" 0\nall \"halcyon:release\" 0\nbarrier\n\
             event \"{}\" 0\nall \"halcyon:acquire\" 0\nbarrier\n\
             all \"{}; exit 3\" X\n'''\n",
            note(dir, "node_up"),
            note(dir, "node_up"),
            note(dir, "node_up_complete"),
        )
    });
    c.wait_for(1, "nodes 1, 2, 4 members", FORM_TIMEOUT, |v| {
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["member"] == true)
            .count()
            == 3
            && v["execution"].is_null()
            && v["pending"].as_array().is_some_and(|p| p.is_empty())
    });
    let _ = std::fs::remove_file(c.path().join("journal"));
    c.start(3);
    let record = wait_record(&c, 1, "node_up n3", FORM_TIMEOUT);
    assert_eq!(record["outcome"], "done", "{record:#}");
    let script: Vec<String> = commands(&record)
        .into_iter()
        .filter(|c| !c.contains("halcyon:"))
        .map(|c| {
            let (node, command) = c.split_once(": ").unwrap();
            let what = if command.contains("node_up_complete") {
                "node_up_complete"
            } else {
                "node_up"
            };
            format!("{node}: {what}")
        })
        .collect();
    assert_eq!(
        script,
        [
            "n1: node_up",
            "n2: node_up",
            "n4: node_up",
            "n3: node_up",
            "n1: node_up_complete",
            "n2: node_up_complete",
            "n3: node_up_complete",
            "n4: node_up_complete",
        ]
    );
    assert_barriers(&record);
    // node_up_complete exits 3: accepted (X), recorded.
    let complete: Vec<&Value> = record["launches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["command"].as_str().unwrap().contains("node_up_complete"))
        .collect();
    assert!(complete.iter().all(|l| l["status"] == 3), "{record:#}");
    // The journal agrees: the members' node_up, then node 3's, then the four completes.
    let lines = journal(&c);
    assert_eq!(lines.len(), 8, "{lines:?}");
    let mut first: Vec<&str> = lines[..3].iter().map(String::as_str).collect();
    first.sort();
    assert_eq!(first, ["n1 node_up", "n2 node_up", "n4 node_up"]);
    assert_eq!(lines[3], "n3 node_up");
    assert!(lines[4..].iter().all(|l| l.ends_with("node_up_complete")));
    // `halcyon events --node n3` shows the same record for people.
    let (code, out) = cli(&c, 2, &["events", "--node", "n3"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("node_up n3  [DONE]"), "{out}");
    assert!(out.contains("segment 2"), "{out}");
    // Built-in commands that had nothing to do on their node are counted, and listed with -v.
    assert!(!out.contains("> nothing to do on this node"), "{out}");
    assert!(
        out.contains("with nothing to do on their node; -v lists them)"),
        "{out}"
    );
    let (code, all) = cli(&c, 2, &["events", "--node", "n3", "-v"]);
    assert_eq!(code, 0, "{all}");
    assert!(all.contains("> nothing to do on this node"), "{all}");
    assert!(!all.contains("-v lists them"), "{all}");
}

/// A child process killed (by its PID) when the test ends, also on a panic.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rwho_rules(dir: &Path) -> String {
    // Seed 001, A.2: the rwho.rp program and its scripts (messages with $TIMESTAMP,
    // $EVNAME and $EVLOCATION; a restart on the event node).
    let msg = |kind: &str| {
        format!(
            "echo \\\"$TIMESTAMP $EVNAME detected a failure of rwhod ({kind}) on SP-Node $EVLOCATION, seen on $HALCYON_NODE\\\" | tee -a {}",
            dir.join("journal").display()
        )
    };
    format!(
        "[[event]]\nname = \"UE_PGMRWHO_DOWN\"\n\
         resource_variable = \"IBM.PSSP.Prog.xpcount\"\n\
         instance_vector = \"NodeNum=*;ProgName=rwhod;UserName=root\"\n\
         predicate = \"X@0==0&&X@1!=0\"\nrearm_predicate = \"X@0>0\"\n\
         program = '''\n\
         other \"{}\" 0 NULL\n\
         event \"{}\" 0 NULL\n\
         barrier\n\
         event \"echo restarted rwhod on $HALCYON_NODE values $HALCYON_VALUE_0,$HALCYON_VALUE_1 >> {}\" 0 NULL\n\
         barrier\n\
         all \"{}\" X NULL\n'''\n",
        msg("remote"),
        msg("local"),
        dir.join("journal").display(),
        msg("complete"),
    )
}

#[test]
fn the_seeds_rwho_user_defined_event_runs_end_to_end() {
    let c = cluster_with_rules(Spec::new(), &[1, 2, 3], rwho_rules);
    c.wait_all_members(1, FORM_TIMEOUT);
    c.wait_for(1, "stable", FORM_TIMEOUT, |v| {
        v["execution"].is_null() && v["pending"].as_array().is_some_and(|p| p.is_empty())
    });
    // A cluster-aware client follows the log: `halcyon events --follow --json`.
    let mut follower = KillOnDrop(
        Command::new(BIN)
            .args(["events", "--follow", "--json", "--node", "n2"])
            .args(c.cli_api_args(3))
            .env("HALCYON_TOKEN", c.admin_token().unwrap())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    let stdout = follower.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let (code, out) = cli(
        &c,
        3,
        &[
            "event",
            "raise",
            "UE_PGMRWHO_DOWN",
            "--node",
            "n2",
            "--value",
            "0",
            "--value",
            "1",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let record = wait_record(&c, 1, "UE_PGMRWHO_DOWN on n2", FAILOVER_TIMEOUT);
    assert_eq!(record["outcome"], "done", "{record:#}");
    assert_barriers(&record);
    let order: Vec<String> = commands(&record)
        .into_iter()
        .map(|line| {
            let (node, command) = line.split_once(": ").unwrap();
            let what = ["remote", "local", "restarted", "complete"]
                .into_iter()
                .find(|w| command.contains(w))
                .unwrap();
            format!("{node}: {what}")
        })
        .collect();
    assert_eq!(
        order,
        [
            "n1: remote",
            "n2: local",
            "n3: remote",
            "n2: restarted",
            "n1: complete",
            "n2: complete",
            "n3: complete",
        ]
    );
    // The environment the seeds' scripts use: EVNAME, EVLOCATION (the event node's
    // number), TIMESTAMP; and the sampled values.
    let local = record["launches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["node"] == "n2" && l["kind"]["segment"] == 0)
        .unwrap();
    let output = local["output"].as_str().unwrap();
    assert!(
        output.contains(
            "UE_PGMRWHO_DOWN detected a failure of rwhod (local) on SP-Node 2, seen on n2"
        ),
        "{output}"
    );
    let stamp = output.split_whitespace().next().unwrap();
    assert!(stamp.parse::<jiff::Timestamp>().is_ok(), "{output}");
    assert!(
        journal(&c).contains(&"restarted rwhod on n2 values 0,1".to_owned()),
        "{:?}",
        journal(&c)
    );
    // The follower printed the record once it finished, after the node_up records.
    let deadline = Instant::now() + FAILOVER_TIMEOUT;
    let followed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines_rx
            .recv_timeout(left)
            .expect("the follower prints the user event's record");
        let record: Value = serde_json::from_str(&line).unwrap();
        if record["event"] == "UE_PGMRWHO_DOWN on n2" {
            break record;
        }
    };
    assert_eq!(followed["outcome"], "done");
    assert_eq!(followed["launches"].as_array().unwrap().len(), 7);
    drop(follower);
    // Unknown user events are refused precisely, and change nothing.
    let (code, out) = cli(&c, 1, &["event", "raise", "UE_NOPE", "--node", "n2"]);
    assert_eq!(code, 2, "an unknown event is invalid input: {out}");
    assert!(
        out.contains(
            "no rule for the user-defined event \"UE_NOPE\" (user-defined events: UE_PGMRWHO_DOWN)"
        ),
        "{out}"
    );
}

#[test]
fn node_3_failing_while_3_4_5_join_is_processed_after_the_joins() {
    // Seed 001, 4.6: node_up 3, 4 and 5 are queued when node 3 fails; the log shows
    // node_up 3, 4, 5, then node_down 3. The queue is held by a user event waiting for
    // a flag file while the joins and the failure are detected.
    // Seven nodes: the four others (1, 2, 6, 7) are a Raft majority without 3, 4, 5.
    let mut spec = Spec::new();
    spec.nodes = 7;
    let mut c = cluster_with_rules(spec, &[1, 2, 6, 7], |dir| {
        format!(
            "[[event]]\nname = \"UE_HOLD\"\nprogram = 'event \"while [ ! -f {} ]; do sleep 0.05; done\" 0'\n",
            dir.join("go").display()
        )
    });
    c.wait_for(1, "n1, n2, n6, n7 members", FORM_TIMEOUT, |v| {
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["member"] == true)
            .count()
            == 4
            && v["execution"].is_null()
            && v["pending"].as_array().is_some_and(|p| p.is_empty())
    });
    let (code, out) = cli(&c, 1, &["event", "raise", "UE_HOLD", "--node", "n1"]);
    assert_eq!(code, 0, "{out}");
    c.wait_for(1, "UE_HOLD running", FAILOVER_TIMEOUT, |v| {
        v["execution"]["event"] == "UE_HOLD on n1"
    });
    for i in 3..=5 {
        c.start(i);
    }
    c.wait_for(1, "the three joins queued", FORM_TIMEOUT, |v| {
        let pending: Vec<&str> = v["pending"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        ["node_up n3", "node_up n4", "node_up n5"]
            .iter()
            .all(|e| pending.contains(e))
    });
    c.kill(3);
    std::fs::write(c.path().join("go"), "").unwrap();
    let down = wait_record(&c, 1, "node_down n3 (failure)", FORM_TIMEOUT);
    assert_ne!(down["outcome"], "refused", "{down:#}");
    let order: Vec<String> = event_log(&c, 1)
        .iter()
        .map(|r| r["event"].as_str().unwrap().to_owned())
        .filter(|e| e.starts_with("node_"))
        .collect();
    let tail: Vec<&str> = order.iter().map(String::as_str).rev().take(4).collect();
    assert_eq!(
        tail.into_iter().rev().collect::<Vec<_>>(),
        [
            "node_up n3",
            "node_up n4",
            "node_up n5",
            "node_down n3 (failure)"
        ],
        "{order:?}"
    );
}

#[test]
fn a_failing_command_stops_the_event_in_error_until_resume_retry_or_skip() {
    let c = cluster_with_rules(Spec::new(), &[1, 2, 3], |dir| {
        format!(
            "[[event]]\nname = \"UE_CHECK\"\nprogram = '''\n\
             event \"echo checking; test -f {}\" 0\n\
             barrier\n\
             all \"echo \\\"$HALCYON_NODE after\\\" >> {}\" 0\n'''\n",
            dir.join("ok").display(),
            dir.join("journal").display()
        )
    });
    c.wait_all_members(1, FORM_TIMEOUT);
    c.wait_for(1, "stable", FORM_TIMEOUT, |v| {
        v["execution"].is_null() && v["pending"].as_array().is_some_and(|p| p.is_empty())
    });
    let raise = || {
        let (code, out) = cli(&c, 1, &["event", "raise", "UE_CHECK", "--node", "n2"]);
        assert_eq!(code, 0, "{out}");
        c.wait_for(1, "ERROR", FAILOVER_TIMEOUT, |v| {
            v["execution"]["state"] == "error"
        })
    };
    let in_error = |c: &Cluster| c.status(2).unwrap()["execution"].clone();

    // 1. ERROR: status names the node, command, status and output; nothing after the
    // barrier ran; the cluster stays in ERROR (it does not move on by itself).
    raise();
    std::thread::sleep(Duration::from_millis(500));
    let e = in_error(&c);
    assert_eq!(e["state"], "error", "{e:#}");
    let failure = &e["failures"][0];
    assert_eq!(failure["node"], "n2");
    assert_eq!(failure["status"], 1);
    assert!(
        failure["output_tail"]
            .as_str()
            .unwrap()
            .contains("checking")
    );
    let text = status_text(&c, 3);
    assert!(text.contains("EVENT IN ERROR"), "{text}");
    assert!(text.contains("FAILED on n2"), "{text}");
    assert!(text.contains("halcyon event resume|retry|skip"), "{text}");
    assert!(journal(&c).is_empty());

    // 2. retry while the cause is still there: ERROR again. Then fix it and retry: the
    // failed command runs again and the event completes.
    let (code, out) = cli(&c, 3, &["event", "retry"]);
    assert_eq!(code, 0, "{out}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(in_error(&c)["state"], "error");
    std::fs::write(c.path().join("ok"), "").unwrap();
    let (code, out) = cli(&c, 3, &["event", "retry"]);
    assert_eq!(code, 0, "{out}");
    let record = wait_record(&c, 1, "UE_CHECK on n2", FAILOVER_TIMEOUT);
    assert_eq!(record["outcome"], "done", "{record:#}");
    assert_eq!(journal(&c).len(), 3);
    let checks = commands(&record)
        .iter()
        .filter(|l| l.contains("test -f"))
        .count();
    assert_eq!(checks, 3, "ran, retried, retried: {record:#}");
    // An answer with no event in ERROR is refused.
    let (code, out) = cli(&c, 3, &["event", "resume"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no event is being processed"), "{out}");

    // 3. resume: continues after the barrier as if the command had succeeded.
    std::fs::remove_file(c.path().join("ok")).unwrap();
    raise();
    let (code, out) = cli(&c, 2, &["event", "resume"]);
    assert_eq!(code, 0, "{out}");
    c.wait_for(1, "finished", FAILOVER_TIMEOUT, |v| {
        v["execution"].is_null()
    });
    assert_eq!(journal(&c).len(), 6);
    let resumed = event_log(&c, 1).last().cloned().unwrap();
    assert_eq!(resumed["outcome"], "done_with_failures", "{resumed:#}");

    // 4. skip: abandons the rest of the program.
    raise();
    let id = in_error(&c)["id"].as_u64().unwrap();
    let (code, out) = cli(&c, 1, &["event", "skip", &id.to_string()]);
    assert_eq!(code, 0, "{out}");
    c.wait_for(1, "finished", FAILOVER_TIMEOUT, |v| {
        v["execution"].is_null()
    });
    assert_eq!(journal(&c).len(), 6, "nothing after the barrier ran");
    let skipped = event_log(&c, 1).last().cloned().unwrap();
    assert_eq!(skipped["outcome"], "skipped", "{skipped:#}");
    assert!(
        skipped["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("skip by token admin from 127.0.0."))),
        "{skipped:#}"
    );
}

#[test]
fn the_coordinator_killed_between_two_barriers_does_not_rerun_the_first_segment() {
    let c0 = cluster_with_rules(Spec::new(), &[1, 2, 3], |dir| {
        let j = dir.join("journal");
        let j = j.display();
        format!(
            "[[event]]\nname = \"UE_STEPS\"\nprogram = '''\n\
             all \"echo \\\"$HALCYON_NODE first\\\" >> {j}\" 0\n\
             barrier\n\
             all \"echo \\\"$HALCYON_NODE second-start\\\" >> {j}; sleep 3; echo \\\"$HALCYON_NODE second-end\\\" >> {j}\" 0\n\
             barrier\n\
             all \"echo \\\"$HALCYON_NODE third\\\" >> {j}\" 0\n'''\n"
        )
    });
    let mut c = c0;
    c.wait_all_members(1, FORM_TIMEOUT);
    c.wait_for(1, "stable", FORM_TIMEOUT, |v| {
        v["execution"].is_null() && v["pending"].as_array().is_some_and(|p| p.is_empty())
    });
    let leader = c.status(1).unwrap()["coordinator"]
        .as_str()
        .unwrap()
        .to_owned();
    let l: usize = leader.trim_start_matches('n').parse().unwrap();
    let other = if l == 1 { 2 } else { 1 };
    let (code, out) = cli(&c, other, &["event", "raise", "UE_STEPS", "--node", "n3"]);
    assert_eq!(code, 0, "{out}");
    // Wait until the second segment runs everywhere, then kill the coordinator.
    let started = Instant::now();
    while journal(&c)
        .iter()
        .filter(|l| l.ends_with("second-start"))
        .count()
        < 3
    {
        assert!(started.elapsed() < FAILOVER_TIMEOUT, "{:?}", journal(&c));
        std::thread::sleep(Duration::from_millis(20));
    }
    c.kill(l);
    let record = wait_record(&c, other, "UE_STEPS on n3", FORM_TIMEOUT);
    assert_eq!(record["outcome"], "done", "{record:#}");
    let lines = journal(&c);
    let count = |what: &str| lines.iter().filter(|l| l.ends_with(what)).count();
    assert_eq!(
        count(" first"),
        3,
        "no command before the barrier ran twice: {lines:?}"
    );
    assert_eq!(count("second-start"), 3, "{lines:?}");
    assert_eq!(
        count("second-end"),
        2,
        "the killed node's command died with it: {lines:?}"
    );
    assert_eq!(
        count(" third"),
        2,
        "the survivors finish the event: {lines:?}"
    );
    assert!(!lines.contains(&format!("{leader} third")), "{lines:?}");
    let abandoned: Vec<&Value> = record["launches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| !l["abandoned"].is_null())
        .collect();
    assert_eq!(abandoned.len(), 1, "{record:#}");
    assert_eq!(abandoned[0]["node"].as_str(), Some(leader.as_str()));
}

#[test]
fn recovery_with_retries_duration_warning_and_notify_before_and_after() {
    let c = cluster_with_rules(Spec::new(), &[1, 2, 3], |dir| {
        let j = dir.join("journal");
        let j = j.display();
        let count = dir.join("count");
        let count = count.display();
        format!(
            "[[event]]\nname = \"UE_FLAKY\"\n\
             program = 'event \"n=$(cat {count} 2>/dev/null || echo 0); echo $((n+1)) > {count}; sleep 1.5; [ $n -ge 2 ]\" 0'\n\
             recovery = \"echo \\\"recovery after status $HALCYON_FAILED_STATUS\\\" >> {j}\"\n\
             retry = 3\n\
             max_duration = \"2s\"\n\
             notify = \"echo \\\"notify $HALCYON_NOTIFY_PHASE $HALCYON_EVENT_RESULT\\\" >> {j}\"\n"
        )
    });
    c.wait_all_members(1, FORM_TIMEOUT);
    c.wait_for(1, "stable", FORM_TIMEOUT, |v| {
        v["execution"].is_null() && v["pending"].as_array().is_some_and(|p| p.is_empty())
    });
    let (code, out) = cli(&c, 1, &["event", "raise", "UE_FLAKY", "--node", "n2"]);
    assert_eq!(code, 0, "{out}");
    let record = wait_record(&c, 1, "UE_FLAKY on n2", FORM_TIMEOUT);
    assert_eq!(record["outcome"], "done", "{record:#}");
    let lines = journal(&c);
    assert_eq!(
        lines.first().map(String::as_str),
        Some("notify before "),
        "{lines:?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("recovery after status 1"))
            .count(),
        2,
        "two failures, two recoveries, the third run succeeds: {lines:?}"
    );
    assert!(lines.contains(&"notify too_long ".to_owned()), "{lines:?}");
    // The after notification may still be running when the record is finished.
    let started = Instant::now();
    while !journal(&c).contains(&"notify after success".to_owned()) {
        assert!(started.elapsed() < FAILOVER_TIMEOUT, "{:?}", journal(&c));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        record["notes"].as_array().unwrap().iter().any(|n| n["text"]
            .as_str()
            .unwrap()
            .contains("longer than its maximum duration (2s)")),
        "{record:#}"
    );
}
