//! `halcyon apply` in the state machine: the staged configuration, the lock, the switch.

use super::tests::{CLUSTER, PACKAGE, booted, config, done_all, enqueue, plan_next, t};
use super::*;

/// The running configuration with `web`'s command changed and a package `db` added.
fn next_config() -> Config {
    let web = PACKAGE.replace("sleep 100", "sleep 200");
    let db = PACKAGE.replace("\"web\"", "\"db\"");
    halcyon_config::load_texts(&[
        ("cluster.toml", CLUSTER),
        ("web.toml", &web),
        ("db.toml", &db),
    ])
    .unwrap_or_else(|e| panic!("{e}"))
}

fn config_apply(s: &mut State, index: u64, by: &str, at: Timestamp) -> Reply {
    s.apply(
        index,
        Command::ConfigApply {
            config: Box::new(next_config()),
            rules: Rules::default(),
            sources: Vec::new(),
            by: by.into(),
            at,
            request: None,
        },
    )
}

/// A booted state whose `web` runs on n1.
fn running() -> (State, u64) {
    let mut s = booted();
    enqueue(&mut s, 2, Event::NodeUp { node: "n1".into() }, "m", t(1));
    plan_next(&mut s, 3, t(2));
    let index = done_all(&mut s, 3, true);
    assert!(s.cluster.packages["web"].nodes.contains("n1"));
    (s, index)
}

#[test]
fn an_apply_stages_its_configuration_and_switches_when_its_plan_is_committed() {
    let (mut s, index) = running();
    assert_eq!(s.generation(), 1);
    let reply = config_apply(&mut s, index + 1, "admin", t(10));
    let Reply::Queued { sequence, .. } = reply else {
        panic!("{reply:?}")
    };
    // Staged, not switched: the running configuration is still generation 1.
    assert_eq!(s.generation(), 1);
    assert!(!s.config().unwrap().packages.contains_key("db"));
    let staged = s.staged().expect("staged");
    assert_eq!((staged.generation, staged.sequence), (2, sequence));
    assert_eq!(
        s.pending()[0].event,
        Event::ConfigChange {
            generation: 2,
            restart: ["web".into()].into()
        }
    );
    // A second apply is refused while the first holds the lock, naming it.
    let second = config_apply(&mut s, index + 2, "someone else", t(11));
    assert!(
        matches!(&second, Reply::Ignored { why } if why.contains("generation 2 applied by admin")),
        "{second:?}"
    );
    assert_eq!(s.pending().len(), 1);

    plan_next(&mut s, index + 3, t(12));
    assert_eq!(s.generation(), 2);
    assert!(s.config().unwrap().packages.contains_key("db"));
    assert!(s.staged().is_some(), "the lock stays while the event runs");
    let plan = &s.execution().unwrap().plan;
    let web: Vec<_> = plan
        .steps
        .iter()
        .flat_map(|s| &s.actions)
        .filter(|a| a.package.as_ref().is_some_and(|p| p.as_str() == "web"))
        .map(|a| (a.kind.clone(), a.node.to_string()))
        .collect();
    assert_eq!(
        web,
        [
            (halcyon_policy::ActionKind::Halt, "n1".to_owned()),
            (halcyon_policy::ActionKind::Run, "n1".to_owned())
        ],
        "the changed package halts and runs again where it runs"
    );
    done_all(&mut s, index + 3, true);
    assert!(s.staged().is_none(), "the lock goes with the event");
    assert_eq!(s.generation(), 2);
    assert!(s.cluster.packages["db"].nodes.contains("n1"));
}

#[test]
fn a_refused_config_change_applies_nothing_and_releases_the_lock() {
    let (mut s, index) = running();
    let Reply::Queued { sequence, .. } = config_apply(&mut s, index + 1, "admin", t(10)) else {
        panic!()
    };
    s.apply(
        index + 2,
        Command::EventRefused {
            sequence,
            error: "no".into(),
            at: t(11),
        },
    );
    assert!(s.staged().is_none());
    assert_eq!(s.generation(), 1);
    assert!(!s.config().unwrap().packages.contains_key("db"));
    // The next apply may go.
    assert!(matches!(
        config_apply(&mut s, index + 3, "admin", t(12)),
        Reply::Queued {
            duplicate: false,
            ..
        }
    ));
}

#[test]
fn a_state_from_before_generations_reads_as_generation_one() {
    let (s, _) = running();
    let mut value = serde_json::to_value(&s).unwrap();
    let object = value.as_object_mut().unwrap();
    object.remove("generation");
    object.remove("staged");
    let old: State = serde_json::from_value(value).unwrap();
    assert_eq!(old.generation(), 1);
    assert!(old.staged().is_none());
    assert_eq!(State::new().generation(), 0);
}

/// A change of where a package may run (its node list and priority) does not put it in the
/// `config_change`'s restart set; a change of what runs does.
#[test]
fn only_a_change_of_what_runs_is_in_the_restart_set() {
    let (mut s, index) = running();
    let placed = PACKAGE.replace(
        "nodes = [\"n1\", \"n2\"]",
        "nodes = [\"n2\", \"n1\"]\npriority = 3",
    );
    let config = halcyon_config::load_texts(&[("cluster.toml", CLUSTER), ("web.toml", &placed)])
        .unwrap_or_else(|e| panic!("{e}"));
    let reply = s.apply(
        index + 1,
        Command::ConfigApply {
            config: Box::new(config),
            rules: Rules::default(),
            sources: Vec::new(),
            by: "admin".into(),
            at: t(10),
            request: None,
        },
    );
    assert!(matches!(reply, Reply::Queued { .. }), "{reply:?}");
    assert_eq!(
        s.pending()[0].event,
        Event::ConfigChange {
            generation: 2,
            restart: BTreeSet::new()
        }
    );
}

/// The running configuration with the lease set to `lease`.
fn with_lease(lease: &str) -> Config {
    let cluster = CLUSTER.replacen(
        "[[network]]",
        &format!("[quorum]\nlease = \"{lease}\"\n[[network]]"),
        1,
    );
    halcyon_config::load_texts(&[("cluster.toml", &cluster), ("web.toml", PACKAGE)])
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Applies `config` and carries out its `config_change`; the next free index.
fn switch_to(s: &mut State, index: u64, config: Config, at: Timestamp) -> u64 {
    let reply = s.apply(
        index,
        Command::ConfigApply {
            config: Box::new(config),
            rules: Rules::default(),
            sources: Vec::new(),
            by: "admin".into(),
            at,
            request: None,
        },
    );
    assert!(matches!(reply, Reply::Queued { .. }), "{reply:?}");
    plan_next(s, index + 1, at);
    done_all(s, index + 2, true) + 1
}

#[test]
fn a_shorter_lease_keeps_the_longer_one_as_the_longest_until_it_is_settled() {
    let (mut s, index) = running();
    let derived = s.config().unwrap().cluster.lease();
    assert_eq!(s.longest_lease(), Some(derived));
    assert_eq!(s.unsettled_lease(), None);

    // Longer: the new lease is the longest at once, nothing is unsettled.
    let index = switch_to(&mut s, index + 1, with_lease("2s"), t(10));
    assert_eq!(s.generation(), 2);
    assert_eq!(s.longest_lease(), Some(Duration::from_secs(2)));
    assert_eq!(s.unsettled_lease(), None);

    // Shorter: nodes hold 1 s from now on, but 2 s leases may still run.
    let index = switch_to(&mut s, index, with_lease("1s"), t(20));
    assert_eq!(s.config().unwrap().cluster.lease(), Duration::from_secs(1));
    assert_eq!(s.longest_lease(), Some(Duration::from_secs(2)));
    assert_eq!(s.unsettled_lease(), Some((1, Duration::from_secs(2))));

    // Shorter again before they were settled: the longest stays 2 s.
    let index = switch_to(&mut s, index, with_lease("800ms"), t(30));
    assert_eq!(s.longest_lease(), Some(Duration::from_secs(2)));
    assert_eq!(s.unsettled_lease(), Some((2, Duration::from_secs(2))));

    // A settlement of an older shortening changes nothing: leases granted since may be
    // ones the coordinator did not wait out.
    let reply = s.apply(
        index,
        Command::LeaseSettled {
            change: 1,
            at: t(31),
        },
    );
    assert!(
        matches!(&reply, Reply::Ignored { why } if why == "the lease's shortening 1 is not unsettled (shortenings: 2)"),
        "{reply:?}"
    );
    assert_eq!(s.longest_lease(), Some(Duration::from_secs(2)));
    let reply = s.apply(
        index + 1,
        Command::LeaseSettled {
            change: 2,
            at: t(32),
        },
    );
    assert_eq!(reply, Reply::Done);
    assert_eq!(s.longest_lease(), Some(Duration::from_millis(800)));
    assert_eq!(s.unsettled_lease(), None);
    let reply = s.apply(
        index + 2,
        Command::LeaseSettled {
            change: 2,
            at: t(33),
        },
    );
    assert!(matches!(reply, Reply::Ignored { .. }), "{reply:?}");
}

#[test]
fn an_unsettled_lease_is_kept_in_snapshots() {
    let (mut s, index) = running();
    let index = switch_to(&mut s, index + 1, with_lease("2s"), t(10));
    switch_to(&mut s, index, with_lease("1s"), t(20));
    let bytes = serde_json::to_vec(&s).unwrap();
    let back: State = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(back.unsettled_lease(), Some((1, Duration::from_secs(2))));
    // A state written before leases could be unsettled has none.
    let mut old: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    old.as_object_mut().unwrap().remove("unsettled_lease");
    let back: State = serde_json::from_value(old).unwrap();
    assert_eq!(back.unsettled_lease(), None);
    // A settlement written before shortenings were counted names a generation.
    let command: Command = serde_json::from_str(
        r#"{"command":"lease_settled","generation":1,"at":"2026-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    assert!(matches!(command, Command::LeaseSettled { change: 1, .. }));
}

/// The running configuration with `[heartbeat] interval` set to `interval`.
fn with_interval(interval: &str) -> Config {
    let cluster = CLUSTER.replacen(
        "[[network]]",
        &format!("[heartbeat]\ninterval = \"{interval}\"\n[[network]]"),
        1,
    );
    halcyon_config::load_texts(&[("cluster.toml", &cluster), ("web.toml", PACKAGE)])
        .unwrap_or_else(|e| panic!("{e}"))
}

fn raft_report(s: &mut State, index: u64, node: &str, interval: u64, generation: u64) -> Reply {
    s.apply(
        index,
        Command::RaftReport {
            reporter: node.into(),
            interval: Duration::from_millis(interval),
            generation,
            at: t(index as i64),
        },
    )
}

#[test]
fn a_shorter_interval_keeps_the_lease_of_the_slower_elections_until_every_node_restarted() {
    let ms = Duration::from_millis;
    let (mut s, index) = running();
    assert_eq!(s.raft_intervals(), Some((ms(100), ms(100))));
    assert_eq!(s.lease(), Some(ms(619)));

    // 100 ms -> 50 ms: every node's Raft still elects with the timings of 100 ms (369 ms),
    // so the lease covers them with renewals every 50 ms: 369 + 50 + 50 + 50.
    let index = switch_to(&mut s, index + 1, with_interval("50ms"), t(10));
    assert_eq!(s.raft_intervals(), Some((ms(50), ms(100))));
    assert_eq!(s.lease(), Some(ms(519)));
    assert_eq!(s.longest_lease(), Some(ms(619)));
    assert_eq!(s.unsettled_lease(), Some((1, ms(619))));
    let reply = s.apply(
        index,
        Command::LeaseSettled {
            change: 1,
            at: t(11),
        },
    );
    assert_eq!(reply, Reply::Done);

    // Each node reports what it runs; the ones still on 100 ms keep the lease.
    for (i, node) in ["n1", "n2", "n3"].iter().enumerate() {
        let reply = raft_report(&mut s, index + 1 + i as u64, node, 100, 2);
        assert_eq!(reply, Reply::Done);
    }
    assert_eq!(s.raft_reported("n1"), Some(ms(100)));
    assert_eq!(s.lease(), Some(ms(519)));
    // Two restarted into the new timings: one is still slow.
    raft_report(&mut s, index + 4, "n1", 50, 2);
    raft_report(&mut s, index + 5, "n2", 50, 2);
    assert_eq!(s.raft_intervals(), Some((ms(50), ms(100))));
    assert_eq!(s.lease(), Some(ms(519)));
    assert_eq!(s.unsettled_lease(), None);
    // The last: elections now take 2 x 80 + 25 ms at most, and the lease shortens, leaving
    // the longer one unsettled until the coordinator settles it.
    raft_report(&mut s, index + 6, "n3", 50, 2);
    assert_eq!(s.raft_intervals(), Some((ms(50), ms(50))));
    let short = s.config().unwrap().cluster.lease();
    assert!(short < ms(519), "{short:?}");
    assert_eq!(s.lease(), Some(short));
    assert_eq!(s.unsettled_lease(), Some((2, ms(519))));
    assert_eq!(s.longest_lease(), Some(ms(519)));
}

#[test]
fn a_node_may_restart_into_any_configuration_applied_since_it_last_reported() {
    let ms = Duration::from_millis;
    let (mut s, index) = running();
    // 100 -> 300: the voters' election timeouts may be the short ones of 100 ms still, and
    // elections as slow as 300 ms's.
    let index = switch_to(&mut s, index + 1, with_interval("300ms"), t(10));
    assert_eq!(s.raft_intervals(), Some((ms(100), ms(300))));
    // A report judged before the switch (generation 1) only widens n1's range.
    raft_report(&mut s, index, "n1", 100, 1);
    let index = switch_to(&mut s, index + 1, with_interval("200ms"), t(20));
    assert_eq!(s.raft_intervals(), Some((ms(100), ms(300))));
    // Judged on the running configuration: n1 runs 200 ms's or takes them at a restart; the
    // others may still run any of the three.
    raft_report(&mut s, index, "n1", 200, 3);
    assert_eq!(s.raft_reported("n1"), Some(ms(200)));
    assert_eq!(s.raft_intervals(), Some((ms(100), ms(300))));
    raft_report(&mut s, index + 1, "n2", 200, 3);
    raft_report(&mut s, index + 2, "n3", 200, 3);
    assert_eq!(s.raft_intervals(), Some((ms(200), ms(200))));
    // A node that is not in the configuration, or a report before the bootstrap, is ignored.
    let reply = raft_report(&mut s, index + 3, "n9", 100, 3);
    assert!(matches!(reply, Reply::Ignored { .. }), "{reply:?}");
    assert_eq!(s.raft_intervals(), Some((ms(200), ms(200))));
    let mut fresh = State::new();
    let reply = raft_report(&mut fresh, 1, "n1", 100, 0);
    assert!(matches!(reply, Reply::Ignored { .. }), "{reply:?}");
    // Kept in snapshots.
    let back: State = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
    assert_eq!(back.raft_intervals(), Some((ms(200), ms(200))));
    assert_eq!(back.raft_reported("n2"), Some(ms(200)));
}

/// The running configuration with witness `name` (number `number`), or none.
fn with_witness(witness: Option<(&str, u32)>) -> Config {
    let table = witness.map_or_else(String::new, |(name, number)| {
        format!("[quorum.witness]\nname = \"{name}\"\nnumber = {number}\naddress = \"127.0.0.9\"\n")
    });
    let cluster = CLUSTER.replacen("[[network]]", &format!("{table}[[network]]"), 1);
    halcyon_config::load_texts(&[("cluster.toml", &cluster), ("web.toml", PACKAGE)])
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_witness_the_change_adds_is_joining_until_it_votes_and_one_it_removes_is_not() {
    let (mut s, index) = running();
    let joining = |s: &State| {
        s.joining()
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
    };
    assert!(s.joining().is_empty());
    // Added: joining, until the coordinator saw it vote.
    let index = switch_to(&mut s, index, with_witness(Some(("w", 9))), t(10));
    assert_eq!(joining(&s), ["w"]);
    let joined = s.apply(
        index,
        Command::NodeJoined {
            node: "w".into(),
            at: t(11),
        },
    );
    assert_eq!(joined, Reply::Done);
    assert!(s.joining().is_empty());
    // The same witness in the next configuration: not joining again.
    let index = switch_to(&mut s, index + 1, with_witness(Some(("w", 9))), t(12));
    assert!(s.joining().is_empty());
    // Replaced by another: the new one joins.
    let index = switch_to(&mut s, index, with_witness(Some(("w2", 10))), t(13));
    assert_eq!(joining(&s), ["w2"]);
    // Removed before it voted: no longer joining (nothing would ever clear it).
    switch_to(&mut s, index, with_witness(None), t(14));
    assert!(s.joining().is_empty(), "{:?}", s.joining());
}

#[test]
fn what_was_reported_of_a_network_the_change_removes_is_forgotten() {
    let (mut s, index) = running();
    let disk = "[[network]]\nname = \"hb\"\nkind = \"disk\"\ndevice = \"/dev/sdh\"\n[[node]]";
    let with_disk = halcyon_config::load_texts(&[
        ("cluster.toml", &CLUSTER.replacen("[[node]]", disk, 1)),
        ("web.toml", PACKAGE),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let index = switch_to(&mut s, index + 1, with_disk, t(10));
    let down = |network: &str| -> BTreeSet<(NodeName, NetworkName)> {
        [("n2".into(), network.into())].into_iter().collect()
    };
    let reply = s.apply(
        index,
        Command::AdapterReport {
            reporter: "n1".into(),
            down: down("hb").into_iter().chain(down("lan")).collect(),
            at: t(11),
        },
    );
    assert_eq!(reply, Reply::Done);
    let reply = s.apply(
        index + 1,
        Command::AdapterReport {
            reporter: "n3".into(),
            down: down("hb"),
            at: t(11),
        },
    );
    assert_eq!(reply, Reply::Done);
    // The disk network removed: its reports go, the LAN's stay.
    let index = switch_to(&mut s, index + 2, config(), t(12));
    let reports: Vec<(String, Vec<String>)> = s
        .adapter_reports()
        .iter()
        .map(|(reporter, down)| {
            let networks = down.iter().map(|(_, n)| n.to_string()).collect();
            (reporter.to_string(), networks)
        })
        .collect();
    assert_eq!(reports, [("n1".to_owned(), vec!["lan".to_owned()])]);
    // A node that has not switched yet reports it again: not kept.
    let reply = s.apply(
        index,
        Command::AdapterReport {
            reporter: "n3".into(),
            down: down("hb"),
            at: t(13),
        },
    );
    assert_eq!(reply, Reply::Done);
    assert!(!s.adapter_reports().contains_key("n3"));
}
