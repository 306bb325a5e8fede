//! Arming and rearming over sequences of samples: the seeds' examples, X@P, no rearm predicate,
//! evaluation errors, and the configured monitor.

use std::time::Duration;

use halcyon_config::{Monitor, MonitorAction};
use halcyon_monitor::{Arming, MonitorError, MonitorState, Outcome, Predicate, Sample};

/// Feeds `samples` (each a record) to a monitor and returns one letter per sample:
/// `F` fired, `R` rearmed, `.` nothing, `E` evaluation error.
fn run(predicate: &str, rearm: Option<&str>, samples: &[&[f64]]) -> String {
    let predicate = Predicate::parse(predicate).unwrap();
    let rearm = rearm.map(|r| Predicate::parse(r).unwrap());
    let mut arming = Arming::new(predicate, rearm);
    samples
        .iter()
        .map(|fields| match arming.on_sample(Sample::record(fields)) {
            Ok(Outcome::Fired) => 'F',
            Ok(Outcome::Rearmed) => 'R',
            Ok(Outcome::Nothing) => '.',
            Err(_) => 'E',
        })
        .collect()
}

fn numbers(values: &[f64]) -> Vec<Vec<f64>> {
    values.iter().map(|v| vec![*v]).collect()
}

fn run_numbers(predicate: &str, rearm: Option<&str>, values: &[f64]) -> String {
    let records = numbers(values);
    let samples: Vec<&[f64]> = records.iter().map(Vec::as_slice).collect();
    run(predicate, rearm, &samples)
}

#[test]
fn tmp_filling_up_fires_once_until_below_the_rearm_threshold() {
    // The seed's /tmp example: X>90, rearm X<80.
    //                     50   91   95   85   79   92   92   70
    let outcomes = run_numbers(
        "X>90",
        Some("X<80"),
        &[50.0, 91.0, 95.0, 85.0, 79.0, 92.0, 92.0, 70.0],
    );
    assert_eq!(outcomes, ".F..RF.R");
    // With rearm X<90 (the seed's "every time it exceeds 90"), 85 rearms.
    let outcomes = run_numbers("X>90", Some("X<90"), &[50.0, 91.0, 95.0, 85.0, 92.0]);
    assert_eq!(outcomes, ".F.RF");
    // Exactly at the thresholds: neither fires nor rearms.
    let outcomes = run_numbers("X>90", Some("X<80"), &[90.0, 91.0, 80.0, 90.0, 79.0]);
    assert_eq!(outcomes, ".F..R");
}

#[test]
fn process_count_dropping_to_zero() {
    // The seed's record: X@0 the current number of processes, X@1 the previous number.
    let samples: &[&[f64]] = &[
        &[0.0, 0.0], // never started: X@1 == 0, nothing
        &[1.0, 0.0], // started (armed already: nothing to rearm)
        &[1.0, 1.0],
        &[0.0, 1.0], // died: fires
        &[0.0, 0.0], // still dead: disarmed, nothing
        &[2.0, 0.0], // back: rearms
        &[2.0, 2.0],
        &[0.0, 2.0], // died again: fires
    ];
    assert_eq!(run("X@0==0&&X@1!=0", Some("X@0>0"), samples), "...F.R.F");
    // The same with a plain count and X@P, as builtin:process_count gives it.
    let counts = [0.0, 1.0, 1.0, 0.0, 0.0, 2.0, 2.0, 0.0];
    assert_eq!(
        run_numbers("X==0&&X@P!=0", Some("X>0"), &counts),
        "...F.R.F"
    );
    // The seed's simpler form X@0==0 fires on the very first sample if nothing runs.
    assert_eq!(run_numbers("X@0==0", Some("X@0>0"), &counts), "FR.F.R.F");
}

#[test]
fn a_jump_between_two_samples() {
    // X@P is the previous sample: the first one has none, so the predicate is false.
    let values = [100.0, 105.0, 120.0, 125.0, 140.0, 141.0, 100.0, 112.0];
    // Differences:                                  -   5  15   5  15   1 -41  12
    assert_eq!(run_numbers("X - X@P > 10", None, &values), "..FRFR.F");
    // A jump with an explicit rearm: fire on a jump, rearm once the value falls back below 110.
    assert_eq!(
        run_numbers("X - X@P > 10", Some("X < 110"), &values),
        "..F...RF"
    );
    // A first sample that would be a jump from 0 does not fire: there is no previous sample.
    assert_eq!(run_numbers("X - X@P > 10", None, &[1000.0, 1000.0]), "..");
}

#[test]
fn without_a_rearm_predicate_it_rearms_when_the_predicate_is_false() {
    let values = [50.0, 91.0, 95.0, 89.0, 95.0, 95.0];
    assert_eq!(run_numbers("X>90", None, &values), ".F.RF.");
}

#[test]
fn one_outcome_per_sample_even_when_predicates_overlap() {
    // The rearm predicate holds as soon as the monitor fires: the sample that rearms is not
    // also tested against the predicate, so the monitor fires at most every other sample.
    let values = [95.0, 95.0, 95.0, 95.0, 10.0];
    assert_eq!(run_numbers("X>90", Some("X>0"), &values), "FRFR.");
}

#[test]
fn evaluation_errors_leave_the_state_unchanged() {
    // A record missing its second field: an error, neither fired nor rearmed.
    let samples: &[&[f64]] = &[&[1.0, 1.0], &[0.0], &[0.0, 1.0], &[0.0], &[3.0, 2.0]];
    // The third fires; the fourth errs while disarmed only if the rearm predicate needs X@1.
    assert_eq!(run("X@0==0&&X@1!=0", Some("X@0>0"), samples), ".EF.R");
    assert_eq!(run("X@0==0&&X@1!=0", Some("X@1>0"), samples), ".EFER");

    let mut arming = Arming::new(Predicate::parse("100 / X > 1").unwrap(), None);
    assert_eq!(
        arming
            .on_sample(Sample::number(0.0))
            .unwrap_err()
            .to_string(),
        "column 5: division by zero (\"/\")"
    );
    assert!(arming.is_armed());
    // The failed sample still becomes X@P.
    assert_eq!(arming.previous(), Some(&Sample::number(0.0)));
    assert_eq!(arming.on_sample(Sample::number(50.0)), Ok(Outcome::Fired));
    assert!(!arming.is_armed());
}

fn monitor(sample: &str, predicate: &str, rearm: Option<&str>) -> Monitor {
    Monitor {
        name: "tmp_full".to_owned(),
        sample: sample.to_owned(),
        interval: Duration::from_secs(10),
        predicate: predicate.to_owned(),
        rearm: rearm.map(str::to_owned),
        action: MonitorAction::Event("tmp_full".to_owned()),
        stabilization: Duration::ZERO,
        restart: 0,
        restart_window: None,
    }
}

#[test]
fn monitor_state_from_the_configuration() {
    let mut state =
        MonitorState::new(&monitor("builtin:fs_use /tmp", "X>90", Some("X<80"))).unwrap();
    assert_eq!(state.name(), "tmp_full");
    assert_eq!(state.sampler().to_string(), "builtin:fs_use /tmp");
    assert_eq!(state.action(), &MonitorAction::Event("tmp_full".to_owned()));
    assert_eq!(state.sample_timeout(), Duration::from_secs(10));
    let outcomes: Vec<Outcome> = [50.0, 91.0, 95.0, 85.0, 79.0, 92.0]
        .iter()
        .map(|v| state.on_sample(Sample::number(*v)).unwrap())
        .collect();
    use Outcome::{Fired, Nothing, Rearmed};
    assert_eq!(outcomes, [Nothing, Fired, Nothing, Nothing, Rearmed, Fired]);
    assert!(!state.is_armed());
    assert_eq!(state.last_sample(), Some(&Sample::number(92.0)));

    // A sampler taken for real through the state: a command printing a record.
    let state = MonitorState::new(&monitor("echo 0 3", "X@0==0&&X@1!=0", Some("X@0>0"))).unwrap();
    assert_eq!(state.take_sample(), Ok(Sample::record(&[0.0, 3.0])));
}

#[test]
fn monitor_state_reports_which_field_is_wrong() {
    let error = |m: Monitor| MonitorState::new(&m).unwrap_err().to_string();
    assert_eq!(
        error(monitor("builtin:fs_use /tmp", "X>>90", None)),
        "monitor \"tmp_full\": predicate: column 3: unexpected \">\"; expected a number, X, \"(\", \"!\" or \"-\""
    );
    assert_eq!(
        error(monitor("builtin:fs_use /tmp", "X>90", Some("X<"))),
        "monitor \"tmp_full\": rearm: column 3: unexpected end of expression; expected a number, X, \"(\", \"!\" or \"-\""
    );
    assert_eq!(
        error(monitor("builtin:fs_usage /tmp", "X>90", None)),
        "monitor \"tmp_full\": sample: unknown built-in sampler \"builtin:fs_usage\"; expected process_count, fs_use, memory or load; hint: did you mean builtin:fs_use?"
    );
    let Err(MonitorError::Rearm { error, .. }) =
        MonitorState::new(&monitor("echo 1", "X>90", Some("X <> 80")))
    else {
        panic!("expected a rearm error");
    };
    assert_eq!(error.column, 3);
    assert_eq!(error.hint.as_deref(), Some("did you mean \"!=\"?"));
    assert_eq!(halcyon_monitor::check_predicate("X@0==0&&X@1!=0"), Ok(()));
    assert_eq!(
        halcyon_monitor::check_predicate("X@0==0&&")
            .unwrap_err()
            .column,
        9
    );
}
