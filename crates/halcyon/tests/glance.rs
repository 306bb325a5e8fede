//! Issue 19, items 5 and 6 on loopback: `status -v` (resources, dependencies, failures with
//! their expiry), the no-quorum line naming every unreachable voter, `events` and a refused
//! operation showing the times written in plans and reasons in the reader's time zone,
//! `explain --json`
//! against the running cluster, and logs people can read (no colour codes in a file,
//! openraft's repeated errors about a dead peer summarised, a clean restart without WARN).

mod common;

use std::time::{Duration, Instant};

use common::*;
use halcyon_testkit::config::Dependency;
use halcyon_testkit::{Package, Resource};
use serde_json::Value;

/// `web` crashes on n1 (and is excluded there for ten minutes); `app` needs `web` up on
/// any node.
fn failed_web_and_a_dependent_app() -> Cluster {
    let mut spec = web_failing_on_n1();
    spec.package(|dir| {
        let mut app = Package::failover("app", &["n3", "n2", "n1"]).resource(Resource::service(
            "appd",
            activity_command(&dir.join("app.log")),
        ));
        app.dependencies.push(Dependency {
            package: "web".into(),
            location: Some("any_node".into()),
            condition: None,
        });
        app
    });
    let c = Cluster::start_with(spec);
    c.wait_all_members(1, FORM_TIMEOUT);
    c.wait_web_on(1, "n2", FAILOVER_TIMEOUT);
    c.wait_for(1, "app up and nothing running", FAILOVER_TIMEOUT, |v| {
        package_of(v, "app")["status"] == "up" && v["execution"].is_null()
    });
    c
}

#[test]
fn status_verbose_shows_resources_dependencies_and_failures_with_their_expiry() {
    let c = failed_web_and_a_dependent_app();
    let (code, text) = cli(&c, 1, &["status", "-v"]);
    assert_eq!(code, 0, "{text}");
    // Each package's resources in start order, with the restart limit and count.
    assert!(text.contains("resources (start order):"), "{text}");
    let srv = text
        .lines()
        .find(|l| l.trim_start().starts_with("service srv"))
        .unwrap_or_else(|| panic!("no resource line for srv: {text}"));
    assert!(
        srv.contains("restarts ") && srv.ends_with(" of 0"),
        "{text}"
    );
    // app's dependency, and whether it holds.
    let dependency = text
        .lines()
        .find(|l| l.trim_start().starts_with("web ") && l.contains("any_node"))
        .unwrap_or_else(|| panic!("no dependency line: {text}"));
    assert!(dependency.contains("satisfied (web up on n2)"), "{text}");
    // The nodes in order; n1 excluded by its failure until it expires.
    assert!(text.contains("nodes (in order):"), "{text}");
    let n1 = text
        .lines()
        .find(|l| l.trim_start().starts_with("n1 ") && l.contains("failed on n1 at"))
        .unwrap_or_else(|| panic!("no failure line for n1: {text}"));
    assert!(
        n1.contains("primary")
            && n1.contains("excluded there until")
            && n1.contains("(in 9 min)")
            && n1.contains("`halcyon package clear web -n n1`"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("n2 ") && l.contains("current")),
        "{text}"
    );
    // Without -v: no detail, the failure line only.
    let plain = status_text(&c, 1);
    assert!(!plain.contains("resources (start order):"), "{plain}");
    assert!(plain.contains("failed on n1 at"), "{plain}");
    // Times are local HH:MM:SS with how long ago, not RFC 3339.
    let at = plain.find("failed on n1 at ").unwrap() + "failed on n1 at ".len();
    let time: Vec<char> = plain[at..].chars().take(10).collect();
    assert!(
        time.iter().enumerate().all(|(i, c)| match i {
            2 | 5 => *c == ':',
            8 => *c == ' ',
            9 => *c == '(',
            _ => c.is_ascii_digit(),
        }),
        "{plain}"
    );
    // -v is for people; --json already has every field: refused as invalid.
    let (code, out) = cli(&c, 1, &["status", "-v", "--json"]);
    assert_eq!(code, 2, "{out}");
}

#[test]
fn status_json_lists_events_without_their_launches() {
    let c = failed_web_and_a_dependent_app();
    let (code, out) = cli(&c, 1, &["status", "--json"]);
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let events = v["events"].as_array().unwrap();
    assert!(!events.is_empty(), "{v:#}");
    for e in events {
        assert!(e["launches"].is_u64(), "a count, not the launches: {e:#}");
        assert!(e.get("plan").is_none(), "{e:#}");
        assert!(e["queued_at"].as_str().unwrap().ends_with('Z'), "{e:#}");
    }
    // The whole records are in the event log.
    let (code, log) = c.request(1, "GET", "/v1/events", None);
    assert_eq!(code, 200, "{log}");
    assert!(
        log["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["launches"].as_array().is_some_and(|l| !l.is_empty())),
        "{log:#}"
    );
}

#[test]
fn events_show_the_times_written_in_plans_in_the_readers_zone_and_json_as_stored() {
    let c = failed_web_and_a_dependent_app();
    // --json: the record as the event log keeps it, its plan with RFC 3339 times.
    let (code, out) = cli(&c, 1, &["events", "--package", "web", "--json"]);
    assert_eq!(code, 0, "{out}");
    let record: Value = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["event"] == "package_failed web on n1")
        .unwrap_or_else(|| panic!("no record of web failing on n1: {out}"));
    let plan = record["plan"].as_str().unwrap();
    let stored = plan
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("event: package_failed web on n1 at "))
        .unwrap_or_else(|| panic!("{plan}"));
    assert!(stored.ends_with('Z'), "{plan}");
    let planned: jiff::Timestamp = stored.parse().unwrap();
    // The same records for a person 5 h 30 min east of UTC.
    let output = cli_in_ist(&c, &["events", "--package", "web"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let local = in_ist;
    assert!(
        text.contains(&format!(
            "  | event: package_failed web on n1 at {}\n",
            local(planned)
        )),
        "the plan's time as local time, {}: {text}",
        local(planned)
    );
    // Every plan line is there, no time as stored.
    for line in plan.lines() {
        let shape = line.split(|c: char| c.is_ascii_digit()).next().unwrap();
        assert!(text.contains(&format!("  | {shape}")), "{line:?} in {text}");
    }
    assert!(!has_rfc3339_time(&text), "an RFC 3339 time: {text}");
    // The reason of web's move names n1's failure and its expiry, in the reader's zone too.
    let failed = time_after(plan, "n1 failed here at ");
    let n1 = &plan[plan.find("n1 failed here at ").unwrap()..];
    let until = time_after(n1, "excluded until ");
    assert!(
        text.contains(&format!(
            "n1 failed here at {}; excluded until {} (or `halcyon package clear`)",
            local(failed),
            local(until)
        )),
        "{plan}\n{text}"
    );
}

/// The zone of [`cli_in_ist`]: 5 h 30 min east of UTC.
fn ist() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::fixed(jiff::tz::Offset::from_seconds(5 * 3600 + 1800).unwrap())
}

/// `at` as the CLI prints it in [`ist`]: `HH:MM:SS`, with the date when not today.
fn in_ist(at: jiff::Timestamp) -> String {
    let zoned = at.to_zoned_datetime(ist());
    if zoned.date() == jiff::Timestamp::now().to_zoned_datetime(ist()).date() {
        zoned.strftime("%H:%M:%S").to_string()
    } else {
        zoned.strftime("%Y-%m-%d %H:%M:%S").to_string()
    }
}

/// `halcyon ARGS --api NODE1` run by a person 5 h 30 min east of UTC (a POSIX TZ: no zone
/// database needed).
fn cli_in_ist(c: &Cluster, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(BIN);
    command
        .args(args)
        .args(c.cli_api_args(1))
        .env("TZ", "IST-5:30");
    if let Some(token) = c.admin_token() {
        command.env("HALCYON_TOKEN", token);
    }
    command.output().unwrap()
}

/// The `T` that follows `before` in `text`, up to the next `;` or blank.
fn time_after(text: &str, before: &str) -> jiff::Timestamp {
    let at = text
        .split(before)
        .nth(1)
        .unwrap_or_else(|| panic!("no {before:?} in {text}"));
    let end = at.find([';', ' ', ')']).unwrap_or(at.len());
    at[..end]
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {before:?} in {text}"))
}

#[test]
fn a_refused_operation_says_why_with_the_times_in_the_readers_zone() {
    let c = failed_web_and_a_dependent_app();
    // n1 is excluded for web (it failed there): moving web there is refused, and the reason
    // names the failure and its expiry.
    let output = cli_in_ist(&c, &["package", "move", "web", "-n", "n1"]);
    let text = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{text}");
    // The refusal as the API answers it: the coordinator's text, with RFC 3339 times.
    let (code, refused) = c.request(1, "POST", "/v1/packages/web/move", Some(r#"{"node":"n1"}"#));
    assert_eq!(code, 409, "{refused}");
    let stored = refused["error"].as_str().unwrap();
    assert!(has_rfc3339_time(stored), "{stored}");
    let failed = time_after(stored, "failed here at ");
    let failure = &stored[stored.find("failed here at ").unwrap()..];
    let until = time_after(failure, "excluded until ");
    // What the person reads: the same reason, in their zone.
    assert!(
        text.contains(&format!(
            "failed here at {}; excluded until {}",
            in_ist(failed),
            in_ist(until)
        )),
        "{stored}\n{text}"
    );
    assert!(!has_rfc3339_time(&text), "an RFC 3339 time: {text}");
}

#[test]
fn live_explain_prints_json() {
    let c = Cluster::start_with(Spec::new());
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    let (code, out) = cli(&c, 2, &["explain", "web", "--json"]);
    assert_eq!(code, 0, "{out}");
    let live: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    // The same explanation the API carries next to its text.
    let (code, answer) = c.request(2, "GET", "/v1/explain/web", None);
    assert_eq!(code, 200, "{answer}");
    assert_eq!(live, answer["explanation"], "{out}");
    // And the text is still the default.
    let (code, text) = cli(&c, 2, &["explain", "web"]);
    assert_eq!(code, 0, "{text}");
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    // An unknown package is refused as before.
    let (code, out) = cli(&c, 2, &["explain", "nosuch", "--json"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("nosuch"), "{out}");
}

#[test]
fn without_quorum_every_unreachable_voter_is_named_the_witness_too() {
    let mut spec = Spec::new();
    spec.nodes = 2;
    spec.witness = true;
    let mut c = Cluster::start_with(spec);
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    c.wait_all_members(2, FORM_TIMEOUT);
    c.wait_for(1, "the witness is a reachable voter", FORM_TIMEOUT, |v| {
        v["witness"]["voter"] == true
            && v["witness"]["reachable"] == true
            && v["witness"]["last_applied"].as_u64() > Some(0)
    });
    c.kill_witness();
    c.kill(2);
    let expected = "no quorum: 1 of 3 voters reachable from n1 (n2, witness w unreachable)";
    c.wait_for(
        1,
        "no quorum, n2 and the witness unreachable",
        FAILOVER_TIMEOUT,
        |v| v["quorum"]["has_quorum"] == false && v["quorum"]["detail"] == expected,
    );
    let text = status_text(&c, 1);
    assert!(
        text.contains("no quorum: 1 of 3 voters reachable from n1 (n2, witness w unreachable)"),
        "{text}"
    );
    assert!(text.contains("up (last known)"), "{text}");
}

/// The daemon's log takes a peer's failure after this long without one for a new outage
/// (`live::logging::OUTAGE_GAP`), and logs it at once.
const OUTAGE_GAP_OF_THE_LOG: Duration = Duration::from_millis(2500);

/// Lines of `log` at `level` (as the log formats it, e.g. ` ERROR `) from openraft.
fn openraft_lines<'a>(log: &'a str, level: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|l| l.contains(level) && l.contains("openraft"))
        .collect()
}

#[test]
fn logs_have_no_colour_codes_and_a_dead_peer_is_summarised() {
    let mut c = Cluster::start_with(Spec::new());
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    c.wait_all_members(1, FORM_TIMEOUT);
    let (coordinator, k) = c.coordinator(1);
    // A node that is not the coordinator dies for about five seconds.
    let victim = if k == 3 { 2 } else { 3 };
    let victim_name = format!("n{victim}");
    // Failures while the cluster formed (a peer not yet listening) are an outage of their
    // own: let it end first.
    std::thread::sleep(OUTAGE_GAP_OF_THE_LOG);
    let before = std::fs::read_to_string(c.log_path(&coordinator)).unwrap_or_default();
    c.kill(victim);
    let killed = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let log = std::fs::read_to_string(c.log_path(&coordinator)).unwrap_or_default();
    let during = &log[before.len().min(log.len())..];
    let errors = openraft_lines(during, " ERROR ");
    let warnings = openraft_lines(during, " WARN ");
    eprintln!(
        "{coordinator} logged {} openraft ERROR and {} WARN lines in {:?} with {victim_name} down:\n{}\n{}",
        errors.len(),
        warnings.len(),
        killed.elapsed(),
        errors.join("\n"),
        warnings.join("\n"),
    );
    // The first failure is logged at once, the repeats are not (about 25 ERROR lines a
    // second without the summary).
    assert!(
        !errors.is_empty() || !warnings.is_empty(),
        "the first failure is logged: {during}"
    );
    assert!(errors.len() <= 8, "{} ERROR lines:\n{during}", errors.len());
    assert!(
        warnings.len() <= 8,
        "{} WARN lines:\n{during}",
        warnings.len()
    );

    // A clean restart of the dead node: its restart cleanup is INFO, not WARN.
    c.start(victim);
    c.wait_all_members(1, FORM_TIMEOUT);
    c.stop(victim);
    c.start(victim);
    c.wait_all_members(1, FORM_TIMEOUT);
    let restarted = std::fs::read_to_string(c.log_path(&victim_name)).unwrap_or_default();
    let cleanup: Vec<&str> = restarted
        .lines()
        .filter(|l| l.contains("restart cleanup"))
        .collect();
    assert!(!cleanup.is_empty(), "{restarted}");
    assert!(
        cleanup.iter().all(|l| l.contains(" INFO ")),
        "{}",
        cleanup.join("\n")
    );
    // Every log is a file here, not a terminal: no colour codes.
    for i in 1..=3 {
        let log = std::fs::read_to_string(c.log_path(&format!("n{i}"))).unwrap_or_default();
        assert!(!log.is_empty());
        assert!(!log.contains('\u{1b}'), "n{i}'s log has escape codes");
    }
}
