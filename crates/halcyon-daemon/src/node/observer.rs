//! The observer: follows the view, the membership judgements and leadership, and
//!
//! - counts every event record once it finishes ([`EventCounts`], published on a `watch`
//!   channel for `GET /metrics`): by kind and outcome, durations, failovers;
//! - on the coordinator, picks the records webhooks get (`webhooks.rs`): finished, in ERROR,
//!   running too long;
//! - on every node, notifies the webhooks when this node loses or regains the quorum;
//! - while anyone follows the event stream, turns each change into stream items
//!   (`stream::Item`) once, for every subscriber: the records that changed, and the status
//!   when it changed.
//!
//! It owns what it counts and the last view it saw; nothing it does waits for a reader (the
//! stream's ring overwrites, the counts are a current value). It runs in the daemon, not in
//! the simulator: another task waking on every view would change the simulator's histories.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use halcyon_policy::{ActionKind, Event};
use halcyon_state::{EventRecord, Outcome, State};
use tokio::sync::{broadcast, watch};

use super::Node;
use crate::stream::{self, Item};

/// Changes closer together than this are taken together (at most this late on the stream).
const COALESCE: Duration = Duration::from_millis(50);
/// The status is computed again this often while anyone follows the stream, for what changes
/// without waking the observer (a leader's quorum acknowledgements).
const STATUS_REFRESH: Duration = Duration::from_secs(1);

/// Upper bounds of the duration histograms, in seconds (the last is `+Inf`).
pub const DURATION_BUCKETS_SECONDS: [f64; 12] = [
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    f64::MAX,
];

/// A histogram of durations: counts per bucket of [`DURATION_BUCKETS_SECONDS`] (not
/// cumulative), their sum and count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Durations {
    pub buckets: [u64; DURATION_BUCKETS_SECONDS.len()],
    pub sum_seconds: f64,
    pub count: u64,
}

impl Durations {
    pub fn observe(&mut self, seconds: f64) {
        let seconds = seconds.max(0.0);
        let i = DURATION_BUCKETS_SECONDS
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(DURATION_BUCKETS_SECONDS.len() - 1);
        self.buckets[i] += 1;
        self.sum_seconds += seconds;
        self.count += 1;
    }

    /// `(upper bound, count)` pairs as the encoder takes them.
    pub fn pairs(&self) -> Vec<(f64, u64)> {
        DURATION_BUCKETS_SECONDS
            .iter()
            .copied()
            .zip(self.buckets.iter().copied())
            .collect()
    }
}

/// What the observer counted: every finished record of the event log this node applied, since
/// the daemon started (the records its log held at start included). The log is replicated, so
/// every node counts the same events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventCounts {
    /// (event kind, outcome) -> records.
    pub finished: BTreeMap<(String, String), u64>,
    /// Event kind -> from start to finish.
    pub durations: BTreeMap<String, Durations>,
    /// Failovers: `node_down` (failure), `package_failed` and `network_down` events that
    /// started a package somewhere, from queued (the failure committed) to finished.
    pub failovers: Durations,
    /// Webhook deliveries dropped with the queue full, per URL.
    pub webhooks_dropped: BTreeMap<String, u64>,
}

fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Running => "running",
        Outcome::Done => "done",
        Outcome::DoneWithFailures => "done_with_failures",
        Outcome::Skipped => "skipped",
        Outcome::Refused => "refused",
    }
}

fn seconds_between(from: jiff::Timestamp, to: jiff::Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64()
}

impl EventCounts {
    fn count(&mut self, r: &EventRecord) {
        let kind = r.event.name().to_owned();
        *self
            .finished
            .entry((kind.clone(), outcome_name(&r.outcome).to_owned()))
            .or_default() += 1;
        if let (Some(start), Some(end)) = (r.started_at, r.finished_at) {
            self.durations
                .entry(kind)
                .or_default()
                .observe(seconds_between(start, end));
        }
        let failure = match &r.event {
            Event::NodeDown { how, .. } => *how == halcyon_policy::Departure::Failure,
            Event::PackageFailed { .. } | Event::NetworkDown { .. } => true,
            _ => false,
        };
        let started = r.actions.iter().any(|a| a.kind == ActionKind::Run && a.ok);
        if failure
            && started
            && let Some(end) = r.finished_at
        {
            self.failovers.observe(seconds_between(r.queued_at, end));
        }
    }
}

/// The observer's state: its ends of the channels, what it counted, the last view it saw.
pub(crate) struct Observer {
    pub(crate) stream: broadcast::Sender<Item>,
    pub(crate) counts: watch::Sender<Arc<EventCounts>>,
    /// The webhook task's queue (`webhooks.rs`).
    pub(crate) webhooks: tokio::sync::mpsc::Sender<super::webhooks::Delivery>,
}

/// The records of `current` that differ from `previous` (new, or changed: a changed record is
/// a new copy, and `previous` holds the old one, so its address cannot be reused).
fn changed<'a>(previous: &State, current: &'a State) -> Vec<&'a EventRecord> {
    if current.log().shares_with(previous.log()) {
        return Vec::new();
    }
    let before: BTreeMap<u64, *const EventRecord> = previous
        .log()
        .iter()
        .map(|r| (r.id, r as *const EventRecord))
        .collect();
    current
        .log()
        .iter()
        .filter(|r| before.get(&r.id) != Some(&(*r as *const EventRecord)))
        .collect()
}

/// The status that matters for the stream: the lease's remaining time changes with every
/// renewal, the slowest recent renewal with the machine's load, the count of accepted
/// heartbeats with every heartbeat, and the counts of requests to other nodes with every
/// renewal; they are left out of the comparison (refusals and
/// the lease's warning are not: they are news). A measurement in the comparison would send a
/// status message every few seconds on a loaded machine and starve the stream's heartbeat.
fn comparable(status: &halcyon_api::StatusResponse) -> halcyon_api::StatusResponse {
    let mut s = status.clone();
    s.lease.remaining_ms = 0;
    s.lease.renewal_slowest_ms = 0;
    s.heartbeat_auth.accepted = 0;
    s.api_auth.peer_requests_new = 0;
    s.api_auth.peer_requests_kept = 0;
    s
}

impl Node {
    /// The observer task (see the module's doc).
    pub(crate) async fn observer_loop(self: Arc<Self>, observer: Observer) {
        let mut view = self.view.clone();
        let mut membership = self.membership.clone();
        let mut server = self.consensus.server_metrics();
        let mut previous = view.borrow_and_update().clone();
        let mut counts = EventCounts::default();
        let mut counted: BTreeSet<u64> = BTreeSet::new();
        for r in previous.log().iter() {
            if r.outcome != Outcome::Running {
                counts.count(r);
                counted.insert(r.id);
            }
        }
        observer.counts.send_replace(Arc::new(counts.clone()));
        let mut last_status: Option<halcyon_api::StatusResponse> = None;
        let mut picker = super::webhooks::Picker::default();
        let mut quorum = super::webhooks::QuorumWatch::default();
        let mut refresh = tokio::time::interval(STATUS_REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The heartbeat runner stops (its sender drops) when the node is isolated; the
        // observer goes on without it, as the node does: that is when its quorum is lost.
        let mut heartbeats = true;
        loop {
            tokio::select! {
                biased;
                r = view.changed() => if r.is_err() { return },
                r = membership.changed(), if heartbeats => heartbeats = r.is_ok(),
                r = server.changed() => if r.is_err() { return },
                _ = refresh.tick() => {}
            }
            tokio::time::sleep(COALESCE).await;
            let current = view.borrow_and_update().clone();
            membership.borrow_and_update();
            server.borrow_and_update();
            let records = changed(&previous, &current);
            let mut finished = Vec::new();
            for r in &records {
                if r.outcome != Outcome::Running && counted.insert(r.id) {
                    counts.count(r);
                    finished.push(r.id);
                }
            }
            let mut counted_more = !finished.is_empty();
            if picker.pick(
                &observer.webhooks,
                self.name.as_str(),
                self.consensus.is_leader(),
                &current,
                &finished,
                tokio::time::Instant::now(),
            ) {
                counts.webhooks_dropped = picker.dropped.clone();
                counted_more = true;
            }
            if let Some(news) =
                quorum.step(crate::views::has_quorum(&self), tokio::time::Instant::now())
                && self.notify_quorum(&observer, &mut picker, &current, news)
            {
                counts.webhooks_dropped = picker.dropped.clone();
                counted_more = true;
            }
            if let Some(oldest) = current.log().iter().next() {
                counted = counted.split_off(&oldest.id);
            }
            if counted_more {
                observer.counts.send_replace(Arc::new(counts.clone()));
            }
            if observer.stream.receiver_count() > 0 {
                self.publish(&observer, &previous, &current, &records, &mut last_status);
            } else {
                last_status = None;
            }
            previous = current;
        }
    }

    /// Logs this node's quorum change and queues its webhooks (`quorum_lost`,
    /// `quorum_regained`); true when a delivery was dropped.
    fn notify_quorum(
        &self,
        observer: &Observer,
        picker: &mut super::webhooks::Picker,
        current: &State,
        news: super::webhooks::QuorumNews,
    ) -> bool {
        let (_, unreachable) =
            crate::views::voters_reachable(self, crate::views::WitnessSeen::NotAsked);
        let detail = match news {
            super::webhooks::QuorumNews::Lost => {
                let line = crate::views::no_quorum(self);
                tracing::warn!(node = %self.name, "quorum lost: {line}");
                line
            }
            super::webhooks::QuorumNews::Regained { lost_for } => {
                let line = format!(
                    "quorum regained by {} after {} s without",
                    self.name,
                    lost_for.as_secs()
                );
                tracing::info!(node = %self.name, "{line}");
                line
            }
        };
        picker.quorum(
            &observer.webhooks,
            self.name.as_str(),
            current,
            news,
            unreachable,
            detail,
            self.timestamp(),
        )
    }

    /// Sends the stream items of one change (nothing waits: the ring overwrites).
    fn publish(
        &self,
        observer: &Observer,
        previous: &State,
        current: &State,
        records: &[&EventRecord],
        last_status: &mut Option<halcyon_api::StatusResponse>,
    ) {
        let applied = current.applied_index();
        if let (Some(newest), Some(oldest)) = (previous.log().back(), current.log().iter().next())
            && oldest.id > newest.id + 1
        {
            let _ = observer.stream.send(Item::Lost {
                applied,
                first: newest.id + 1,
                last: oldest.id - 1,
            });
        }
        let status = stream::streamed_status(self);
        let status_changed = last_status
            .as_ref()
            .is_none_or(|last| comparable(last) != comparable(&status));
        if status_changed {
            let json = serde_json::to_string(&status).unwrap_or_default();
            let _ = observer.stream.send(Item::Status(Arc::from(json)));
            *last_status = Some(status);
        }
        let mark = stream::mark(current.log());
        for r in records {
            let _ = observer.stream.send(Item::Record {
                applied,
                mark,
                record: Arc::new((*r).clone()),
                json: Arc::from(stream::record_json(r)),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A status as a node streams it (taken from a loaded test run).
    const STATUS: &str = r#"{"schema_version":2,"cluster":"t","answered_by":"n2","halted":false,"coordinator":"n3","quorum":{"has_quorum":true,"term":2,"voters":["n1","n2","n3"],"last_applied":19,"detail":null,"foreign_requests":0},"watchdog":"not configured","lease":{"remaining_ms":537,"duration_ms":619,"renewal_slowest_ms":4,"warning":null},"nodes":[{"name":"n2","number":2,"member":true,"reachable":"reachable","departed":false,"halted_by_admin":false,"incarnation":1,"networks":[{"network":"lan1","path":"local","adapter_down":false,"down":false}]}],"packages":[{"name":"web","status":"up","nodes":["n2"],"switching":true,"failures":{},"error":null,"restarts":null}],"execution":null,"pending":[],"events":[],"heartbeat_auth":{"authenticated":true,"accepted":13,"forged":0,"replayed":0,"other_cluster":0,"malformed":0},"api_auth":{"enforced":true,"unauthenticated":0,"forbidden":0,"nodes":0,"raft_tls":true,"raft_refused":0},"generation":1}"#;

    #[test]
    fn measurements_are_no_news_for_the_stream_but_a_warning_is() {
        let before: halcyon_api::StatusResponse = serde_json::from_str(STATUS).unwrap();
        let mut later = before.clone();
        later.lease.remaining_ms = 571;
        later.lease.renewal_slowest_ms = 9;
        later.heartbeat_auth.accepted = 14;
        assert_eq!(comparable(&before), comparable(&later));
        later.lease.warning = Some("renewals take 120 ms".into());
        assert_ne!(comparable(&before), comparable(&later));
        let mut refused = before.clone();
        refused.heartbeat_auth.forged = 1;
        assert_ne!(comparable(&before), comparable(&refused));
    }

    #[test]
    fn durations_fall_in_their_bucket_and_the_last_is_unbounded() {
        let mut d = Durations::default();
        d.observe(0.05);
        d.observe(0.3);
        d.observe(1e9);
        assert_eq!(d.buckets[0], 1);
        assert_eq!(d.buckets[3], 1);
        assert_eq!(d.buckets[DURATION_BUCKETS_SECONDS.len() - 1], 1);
        assert_eq!(d.count, 3);
        assert!((d.sum_seconds - (1e9 + 0.35)).abs() < 1e-3);
    }
}
