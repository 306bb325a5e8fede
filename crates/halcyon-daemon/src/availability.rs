//! `halcyon availability PKG` (HACMP: Application Availability Analysis): a package's up and
//! down time over a period, each outage with its cause, replayed from event records alone
//! (a pure function: `views.rs` hands it the durable event log and the window).
//!
//! The replay: a package is up from the moment a `run` action of it completed on a node, and
//! down from the moment an event took it away: a `node_down` of the node it ran on (failure,
//! or an administrator's halt), a `package_failed` there (from when each was queued, the
//! closest the log has to the failure itself), or a `halt` action of it (from the start of
//! that event: `package halt`, `package move`, `cluster halt`, `apply`...). A period that
//! begins before the package ever ran counts as down (`not started`). What the log cannot
//! show is not guessed: a package stopped by its lease guard while its node was cut off
//! shows from its node's `node_down`.

use halcyon_api::{AvailabilityResponse, Outage, SCHEMA_VERSION};
use halcyon_policy::{ActionKind, Departure, Event};
use halcyon_state::{EventRecord, Outcome};
use jiff::Timestamp;

/// Where the package stands while the records are replayed.
#[derive(Debug)]
enum Standing {
    Up {
        node: String,
    },
    Down {
        since: Timestamp,
        cause: String,
        event: u64,
    },
}

/// What took the package down in `record`, if it was up on `node`.
fn taken_down(record: &EventRecord, package: &str, node: &str) -> Option<(Timestamp, String)> {
    let queued = record.queued_at;
    match &record.event {
        Event::NodeDown { node: n, how } if n.as_str() == node => Some((
            queued,
            match how {
                Departure::Failure => format!("node failure ({n})"),
                Departure::Forced => format!("node halted by force ({n})"),
                Departure::Graceful | Departure::GracefulTakeover => {
                    format!("node halted by an administrator ({n})")
                }
            },
        )),
        Event::PackageFailed {
            package: p,
            node: n,
        } if p.as_str() == package && n.as_str() == node => {
            Some((queued, format!("package failure on {n}")))
        }
        _ => {
            let halted = record.actions.iter().any(|a| {
                matches!(a.kind, ActionKind::Halt | ActionKind::HaltForced)
                    && a.package.as_ref().is_some_and(|p| p.as_str() == package)
                    && a.node.as_str() == node
            });
            halted.then(|| {
                let cause = match &record.event {
                    Event::PackageHalt { .. } | Event::ClusterHalt => {
                        "administrator halt".to_owned()
                    }
                    Event::PackageMove { .. } => "administrator move".to_owned(),
                    Event::ConfigChange { .. } => "reconfiguration (halcyon apply)".to_owned(),
                    other => format!("event {}", other.name()),
                };
                (record.started_at.unwrap_or(queued), cause)
            })
        }
    }
}

/// The outages found so far, clipped to the period.
struct Timeline {
    since: Timestamp,
    until: Timestamp,
    standing: Standing,
    outages: Vec<Outage>,
}

impl Timeline {
    /// An outage from `start` to `end` (`None`: still down at the end of the period).
    fn outage(&mut self, start: Timestamp, end: Option<Timestamp>, cause: String, event: u64) {
        let start = start.max(self.since);
        let until = end.map_or(self.until, |e| e.min(self.until));
        if start < until {
            self.outages.push(Outage {
                start,
                end: end.map(|_| until),
                seconds: (until - start).as_secs_f64(),
                cause,
                event,
            });
        }
    }

    /// The package ran on `node` at `at`.
    fn up(&mut self, node: &str, at: Timestamp) {
        let previous = std::mem::replace(
            &mut self.standing,
            Standing::Up {
                node: node.to_owned(),
            },
        );
        if let Standing::Down {
            since,
            cause,
            event,
        } = previous
        {
            self.outage(since, Some(at), cause, event);
        }
    }

    /// What `record` did to the package.
    fn replay(&mut self, record: &EventRecord, package: &str) {
        if let Standing::Up { node } = &self.standing
            && let Some((since, cause)) = taken_down(record, package, node)
        {
            self.standing = Standing::Down {
                since,
                cause,
                event: record.id,
            };
        }
        let first_run = record
            .actions
            .iter()
            .filter(|a| {
                a.kind == ActionKind::Run
                    && a.ok
                    && a.package.as_ref().is_some_and(|p| p.as_str() == package)
            })
            .min_by_key(|a| a.at);
        if let Some(run) = first_run {
            self.up(run.node.as_str(), run.at);
        }
    }
}

/// The package's availability over `[since, until]` from `records` (any order; replayed by
/// id). `since` before `until` is the caller's check.
pub fn compute(
    records: &[&EventRecord],
    package: &str,
    since: Timestamp,
    until: Timestamp,
) -> AvailabilityResponse {
    assert!(since <= until, "the period is checked by the caller");
    let mut ordered: Vec<&EventRecord> = records.to_vec();
    ordered.sort_by_key(|r| r.id);
    let mut timeline = Timeline {
        since,
        until,
        standing: Standing::Down {
            since: Timestamp::MIN,
            cause: "not started".to_owned(),
            event: 0,
        },
        outages: Vec::new(),
    };
    for record in ordered.iter().filter(|r| r.outcome != Outcome::Refused) {
        timeline.replay(record, package);
    }
    if let Standing::Down {
        since,
        cause,
        event,
    } = std::mem::replace(
        &mut timeline.standing,
        Standing::Up {
            node: String::new(),
        },
    ) {
        timeline.outage(since, None, cause, event);
    }
    let outages = timeline.outages;
    let period = (until - since).as_secs_f64();
    let down: f64 = outages.iter().map(|o| o.seconds).sum();
    assert!(down <= period + 1e-6, "outages lie within the period");
    AvailabilityResponse {
        schema_version: SCHEMA_VERSION,
        package: package.to_owned(),
        since,
        until,
        up_seconds: period - down,
        down_seconds: down,
        percent: if period > 0.0 {
            100.0 * (period - down) / period
        } else {
            100.0
        },
        outages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use halcyon_state::ActionRecord;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn record(id: u64, event: Event, at: i64, actions: &[(ActionKind, &str, i64)]) -> EventRecord {
        EventRecord {
            id,
            sequence: id,
            event,
            by: "test".into(),
            queued_at: t(at),
            started_at: Some(t(at)),
            finished_at: Some(t(at + 1)),
            outcome: Outcome::Done,
            plan_text: None,
            plan: None,
            error: None,
            actions: actions
                .iter()
                .enumerate()
                .map(|(i, (kind, node, done))| ActionRecord {
                    step: i,
                    index: 0,
                    kind: kind.clone(),
                    package: Some("web".into()),
                    node: (*node).into(),
                    ok: true,
                    detail: String::new(),
                    at: t(*done),
                })
                .collect(),
            program_text: None,
            launches: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Runs at 10 on n1; n1 fails at 100, web runs on n2 at 102; halted at 200 (done 201),
    /// run again at 300 on n2; fails there at 400 and is not back by 500.
    fn history() -> Vec<EventRecord> {
        vec![
            record(1, Event::ClusterStart, 9, &[(ActionKind::Run, "n1", 10)]),
            record(
                2,
                Event::NodeDown {
                    node: "n1".into(),
                    how: Departure::Failure,
                },
                100,
                &[
                    (ActionKind::AwaitRelease, "n1", 101),
                    (ActionKind::Run, "n2", 102),
                ],
            ),
            record(
                3,
                Event::PackageHalt {
                    package: "web".into(),
                    node: None,
                },
                200,
                &[(ActionKind::Halt, "n2", 201)],
            ),
            record(
                4,
                Event::PackageRun {
                    package: "web".into(),
                    node: None,
                },
                300,
                &[(ActionKind::Run, "n2", 300)],
            ),
            record(
                5,
                Event::PackageFailed {
                    package: "web".into(),
                    node: "n2".into(),
                },
                400,
                &[(ActionKind::Halt, "n2", 401)],
            ),
        ]
    }

    #[test]
    fn each_outage_has_its_cause_and_the_figures_add_up() {
        let records = history();
        let refs: Vec<&EventRecord> = records.iter().collect();
        let a = compute(&refs, "web", t(0), t(500));
        let got: Vec<(i64, Option<i64>, &str)> = a
            .outages
            .iter()
            .map(|o| {
                (
                    o.start.as_second() - 1_700_000_000,
                    o.end.map(|e| e.as_second() - 1_700_000_000),
                    o.cause.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (0, Some(10), "not started"),
                (100, Some(102), "node failure (n1)"),
                (200, Some(300), "administrator halt"),
                (400, None, "package failure on n2"),
            ]
        );
        assert_eq!(a.down_seconds, 10.0 + 2.0 + 100.0 + 100.0);
        assert_eq!(a.up_seconds, 500.0 - a.down_seconds);
        assert!((a.percent - 57.6).abs() < 1e-9, "{}", a.percent);
    }

    #[test]
    fn a_period_clips_its_outages_and_another_package_is_not_counted() {
        let records = history();
        let refs: Vec<&EventRecord> = records.iter().collect();
        let a = compute(&refs, "web", t(101), t(250));
        let got: Vec<(i64, f64)> = a
            .outages
            .iter()
            .map(|o| (o.start.as_second() - 1_700_000_000, o.seconds))
            .collect();
        assert_eq!(got, [(101, 1.0), (200, 50.0)]);
        let other = compute(&refs, "db", t(0), t(500));
        assert_eq!(other.outages.len(), 1);
        assert_eq!(other.outages[0].cause, "not started");
        assert_eq!(other.percent, 0.0);
    }
}
