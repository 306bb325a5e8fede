//! Webhooks (`[[events.webhook]]`): the observer picks the records to send (on the
//! coordinator) and hands them to the webhook task on a bounded queue with `try_send`, so
//! event processing never waits for a receiver: a full queue drops the delivery, counted and
//! logged. The task delivers each in a task of its own (at most [`IN_FLIGHT_MAX`] at once):
//! `POST` with the configured timeout per attempt, then `retries` more attempts, backing off
//! from [`BACKOFF_FIRST`] (doubling, at most [`BACKOFF_MAX`]); a delivery that fails every
//! attempt is logged and counted. The counts are published on a `watch` for `/metrics`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use halcyon_api::WebhookReason;
use halcyon_config::Webhook;
use halcyon_state::{EventRecord, Outcome, State};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Deliveries waiting for the webhook task; more are dropped.
pub const QUEUE_MAX: usize = 64;
/// Deliveries under way at once.
pub const IN_FLIGHT_MAX: usize = 16;
pub const BACKOFF_FIRST: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// A node that becomes coordinator sends the records that finished this long before (the old
/// coordinator may not have): delivery is at least once.
pub const CATCH_UP: Duration = Duration::from_secs(10);

/// One record to one webhook.
#[derive(Debug)]
pub struct Delivery {
    pub url: String,
    pub timeout: Duration,
    pub retries: u32,
    pub body: Arc<str>,
}

/// What the webhook task and the observer counted, per URL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookCounts {
    /// url -> (delivered, failed after every attempt, dropped with the queue full).
    pub by_url: std::collections::BTreeMap<String, (u64, u64, u64)>,
}

/// The webhook task's state.
pub(crate) struct WebhookTask {
    pub(crate) queue: mpsc::Receiver<Delivery>,
    pub(crate) counts: watch::Sender<WebhookCounts>,
}

/// Whether `webhook` wants a body sent for `reason`, about a record of `kind` (`user`: a
/// user-defined event). Finished records go to the webhooks that name their kind (or `user`)
/// or name none; the other reasons only to those that name them (`error`, `event_too_long`,
/// `quorum_lost`, `quorum_regained`).
pub fn wanted(webhook: &Webhook, kind: &str, user: bool, reason: WebhookReason) -> bool {
    let named = |k: &str| webhook.events.iter().any(|e| e == k);
    match reason {
        WebhookReason::Finished => {
            webhook.events.is_empty() || named(kind) || (user && named("user"))
        }
        WebhookReason::Error => named("error"),
        WebhookReason::TooLong => named("event_too_long"),
        WebhookReason::QuorumLost => named("quorum_lost"),
        WebhookReason::QuorumRegained => named("quorum_regained"),
    }
}

/// A loss of the quorum shorter than this is no news (a loaded coordinator's
/// acknowledgements come late now and then; `status` says "no quorum" after 1 s without).
pub const QUORUM_LOST_AFTER: Duration = Duration::from_secs(2);

/// A node's quorum, as news for the webhooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuorumNews {
    Lost,
    /// Back after `lost_for` (from when it was lost, not when that was sent).
    Regained {
        lost_for: Duration,
    },
}

/// What the node's quorum was, for [`QuorumWatch::step`]: the pure decision of when a quorum
/// change is a notification (time is an argument).
#[derive(Debug, Default)]
pub struct QuorumWatch {
    /// The node had the quorum since it started: a node that starts without one (no
    /// coordinator elected yet) has lost nothing.
    had: bool,
    /// Without the quorum since then.
    lost_since: Option<Instant>,
    /// `quorum_lost` was sent for the current loss.
    lost_sent: bool,
}

impl QuorumWatch {
    /// The node's quorum at `now`: `Lost` once it has been without for [`QUORUM_LOST_AFTER`]
    /// (after having had it), `Regained` when it is back after a `Lost`, once each.
    pub fn step(&mut self, has_quorum: bool, now: Instant) -> Option<QuorumNews> {
        if has_quorum {
            self.had = true;
            let since = self.lost_since.take();
            if std::mem::take(&mut self.lost_sent) {
                let lost_for = since.map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
                return Some(QuorumNews::Regained { lost_for });
            }
            return None;
        }
        if !self.had {
            return None;
        }
        let since = *self.lost_since.get_or_insert(now);
        if !self.lost_sent && now.saturating_duration_since(since) >= QUORUM_LOST_AFTER {
            self.lost_sent = true;
            return Some(QuorumNews::Lost);
        }
        None
    }
}

/// One attempt: `POST` to the URL, answered 2xx within `timeout`.
async fn attempt(url: &str, body: &str, timeout: Duration) -> Result<(), String> {
    let (host, port, path) = halcyon_config::parse_http_url(url)?;
    let addr = tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port)))
        .await
        .map_err(|_| format!("{host}: not resolved within {timeout:?}"))?
        .map_err(|e| format!("{host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}: no address"))?;
    let r = crate::client::request(addr, "POST", &path, Some(body), timeout).await?;
    if (200..300).contains(&r.status) {
        Ok(())
    } else {
        Err(format!("answered HTTP {}", r.status))
    }
}

/// Every attempt of one delivery; the last error if none succeeded.
async fn deliver(d: &Delivery) -> Result<(), String> {
    let mut backoff = BACKOFF_FIRST;
    let mut last = String::new();
    for n in 0..=d.retries {
        if n > 0 {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        match attempt(&d.url, &d.body, d.timeout).await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl WebhookTask {
    /// Runs the deliveries until the queue closes.
    pub(crate) async fn run(mut self, node: String) {
        let mut in_flight: JoinSet<(String, Result<(), String>, u32)> = JoinSet::new();
        let mut counts = WebhookCounts::default();
        loop {
            tokio::select! {
                biased;
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    let Ok((url, result, retries)) = done else { continue };
                    let entry = counts.by_url.entry(url.clone()).or_default();
                    match result {
                        Ok(()) => entry.0 += 1,
                        Err(e) => {
                            entry.1 += 1;
                            tracing::warn!(%node, %url, "webhook: not delivered after {} attempts: {e}", retries + 1);
                        }
                    }
                    self.counts.send_replace(counts.clone());
                }
                delivery = self.queue.recv(), if in_flight.len() < IN_FLIGHT_MAX => {
                    let Some(d) = delivery else { return };
                    in_flight.spawn(async move {
                        let result = deliver(&d).await;
                        (d.url, result, d.retries)
                    });
                }
            }
        }
    }
}

/// The observer's side: what it sent and what may still need sending.
#[derive(Default)]
pub(crate) struct Picker {
    /// Records seen finished while this node was not the coordinator, with when.
    unsent: VecDeque<(u64, Instant)>,
    /// The last execution whose ERROR was sent.
    error_sent: Option<u64>,
    /// The last execution whose `too_long` warnings were sent, and how many.
    too_long_sent: Option<(u64, u32)>,
    /// Dropped with the queue full, per URL (the task counts the rest).
    pub(crate) dropped: std::collections::BTreeMap<String, u64>,
}

fn payload(cluster: &str, node: &str, reason: WebhookReason, r: &EventRecord) -> Arc<str> {
    let payload = halcyon_api::WebhookPayload {
        schema_version: halcyon_api::SCHEMA_VERSION,
        cluster: cluster.to_owned(),
        sent_by: node.to_owned(),
        reason,
        record: Some(halcyon_api::EventRecord::from(r)),
        quorum: None,
    };
    Arc::from(serde_json::to_string(&payload).unwrap_or_default())
}

impl Picker {
    /// Queues the deliveries of one change: the records in `finished` (newly finished in
    /// `current`) and an execution newly stopped in ERROR, when this node `leads`; while it
    /// does not, remembers the finished ones for [`CATCH_UP`].
    pub(crate) fn pick(
        &mut self,
        queue: &mpsc::Sender<Delivery>,
        node: &str,
        leads: bool,
        current: &State,
        finished: &[u64],
        now: Instant,
    ) -> bool {
        let Some(config) = current.config() else {
            return false;
        };
        let webhooks = &config.cluster.events.webhooks;
        if webhooks.is_empty() {
            return false;
        }
        let cluster = config.cluster.name.as_str();
        while self
            .unsent
            .front()
            .is_some_and(|(_, at)| now.duration_since(*at) > CATCH_UP)
        {
            self.unsent.pop_front();
        }
        let mut send: Vec<(WebhookReason, &EventRecord)> = Vec::new();
        if leads {
            for (id, _) in std::mem::take(&mut self.unsent) {
                if let Some(r) = current.record(id) {
                    send.push((WebhookReason::Finished, r));
                }
            }
            for id in finished {
                if let Some(r) = current.record(*id) {
                    send.push((WebhookReason::Finished, r));
                }
            }
            if let Some(e) = &current.execution()
                && matches!(e.progress.state(), halcyon_events::EventState::Error { .. })
                && self.error_sent != Some(e.id)
                && let Some(r) = current.record(e.id)
            {
                self.error_sent = Some(e.id);
                send.push((WebhookReason::Error, r));
            }
            if let Some(e) = &current.execution()
                && let warnings = e.progress.too_long_warnings()
                && warnings > 0
                && self
                    .too_long_sent
                    .is_none_or(|(id, sent)| id != e.id || sent < warnings)
                && let Some(r) = current.record(e.id)
            {
                self.too_long_sent = Some((e.id, warnings));
                send.push((WebhookReason::TooLong, r));
            }
        } else {
            self.unsent.extend(finished.iter().map(|id| (*id, now)));
        }
        let mut dropped = false;
        for (reason, r) in send {
            debug_assert!(reason != WebhookReason::Finished || r.outcome != Outcome::Running);
            let user = matches!(r.event, halcyon_policy::Event::UserDefined { .. });
            let body = payload(cluster, node, reason, r);
            for w in webhooks
                .iter()
                .filter(|w| wanted(w, r.event.name(), user, reason))
            {
                let what = format!("record {}", r.id);
                dropped |= !self.queue_one(queue, node, w, &body, &what);
            }
        }
        dropped
    }

    /// Queues the notification of this node's quorum change (`news`), sent by every node for
    /// itself: without the quorum it cannot reach the coordinator. `unreachable`: the voters it
    /// cannot reach; `detail`: the line for people. True when a delivery was dropped.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn quorum(
        &mut self,
        queue: &mpsc::Sender<Delivery>,
        node: &str,
        current: &State,
        news: QuorumNews,
        unreachable: Vec<String>,
        detail: String,
        at: jiff::Timestamp,
    ) -> bool {
        let Some(config) = current.config() else {
            return false;
        };
        let reason = match news {
            QuorumNews::Lost => WebhookReason::QuorumLost,
            QuorumNews::Regained { .. } => WebhookReason::QuorumRegained,
        };
        let webhooks: Vec<&Webhook> = config
            .cluster
            .events
            .webhooks
            .iter()
            .filter(|w| wanted(w, "", false, reason))
            .collect();
        if webhooks.is_empty() {
            return false;
        }
        let payload = halcyon_api::WebhookPayload {
            schema_version: halcyon_api::SCHEMA_VERSION,
            cluster: config.cluster.name.clone(),
            sent_by: node.to_owned(),
            reason,
            record: None,
            quorum: Some(halcyon_api::QuorumChange {
                node: node.to_owned(),
                at,
                has_quorum: matches!(news, QuorumNews::Regained { .. }),
                unreachable,
                detail,
            }),
        };
        let body: Arc<str> = Arc::from(serde_json::to_string(&payload).unwrap_or_default());
        let mut dropped = false;
        for w in webhooks {
            dropped |= !self.queue_one(queue, node, w, &body, "the quorum change");
        }
        dropped
    }

    /// Hands one body to the webhook task without waiting; false (counted, logged) when its
    /// queue is full.
    fn queue_one(
        &mut self,
        queue: &mpsc::Sender<Delivery>,
        node: &str,
        w: &Webhook,
        body: &Arc<str>,
        what: &str,
    ) -> bool {
        let delivery = Delivery {
            url: w.url.clone(),
            timeout: w.timeout,
            retries: w.retries,
            body: Arc::clone(body),
        };
        if queue.try_send(delivery).is_err() {
            *self.dropped.entry(w.url.clone()).or_default() += 1;
            tracing::warn!(%node, url = %w.url, "webhook: {QUEUE_MAX} deliveries wait already; {what} is dropped");
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(events: &[&str]) -> Webhook {
        Webhook {
            url: "http://127.0.0.1:9/".into(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            timeout: Duration::from_secs(1),
            retries: 0,
        }
    }

    #[test]
    fn a_webhook_gets_the_kinds_it_names_and_errors_only_when_named() {
        use WebhookReason::{Error, Finished};
        assert!(wanted(&hook(&[]), "node_down", false, Finished));
        assert!(!wanted(&hook(&[]), "node_down", false, Error));
        assert!(wanted(&hook(&["node_down"]), "node_down", false, Finished));
        assert!(!wanted(&hook(&["node_down"]), "node_up", false, Finished));
        assert!(wanted(&hook(&["user"]), "UE_X", true, Finished));
        assert!(wanted(&hook(&["error"]), "node_down", false, Error));
        assert!(!wanted(&hook(&["error"]), "node_down", false, Finished));
    }

    #[test]
    fn too_long_and_quorum_changes_go_only_where_named() {
        use WebhookReason::{QuorumLost, QuorumRegained, TooLong};
        for reason in [TooLong, QuorumLost, QuorumRegained] {
            assert!(
                !wanted(&hook(&[]), "node_down", false, reason),
                "{reason:?}"
            );
            assert!(!wanted(
                &hook(&["node_down", "error"]),
                "node_down",
                false,
                reason
            ));
        }
        assert!(wanted(&hook(&["event_too_long"]), "UE_X", true, TooLong));
        assert!(!wanted(
            &hook(&["event_too_long"]),
            "UE_X",
            true,
            WebhookReason::Finished
        ));
        assert!(wanted(&hook(&["quorum_lost"]), "", false, QuorumLost));
        assert!(!wanted(&hook(&["quorum_lost"]), "", false, QuorumRegained));
        assert!(wanted(
            &hook(&["quorum_regained"]),
            "",
            false,
            QuorumRegained
        ));
    }

    #[test]
    fn a_quorum_change_is_news_once_it_lasts_and_only_after_the_quorum_was_had() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut w = QuorumWatch::default();
        // Starting without a coordinator loses nothing.
        assert_eq!(w.step(false, at(0)), None);
        assert_eq!(w.step(false, at(5_000)), None);
        assert_eq!(
            w.step(true, at(6_000)),
            None,
            "the first quorum is no regain"
        );
        // A blip shorter than QUORUM_LOST_AFTER is no news, neither is its end.
        assert_eq!(w.step(false, at(7_000)), None);
        assert_eq!(w.step(false, at(8_999)), None);
        assert_eq!(w.step(true, at(9_000)), None);
        // A loss that lasts: lost once, then regained once with how long it lasted.
        assert_eq!(w.step(false, at(10_000)), None);
        assert_eq!(w.step(false, at(12_000)), Some(QuorumNews::Lost));
        assert_eq!(w.step(false, at(13_000)), None, "once");
        assert_eq!(w.step(false, at(60_000)), None, "once");
        assert_eq!(
            w.step(true, at(70_000)),
            Some(QuorumNews::Regained {
                lost_for: Duration::from_secs(60)
            })
        );
        assert_eq!(w.step(true, at(71_000)), None, "once");
        // A second loss is news again.
        assert_eq!(w.step(false, at(80_000)), None);
        assert_eq!(w.step(false, at(82_500)), Some(QuorumNews::Lost));
    }

    /// A webhook task that does not keep up never holds up the caller (the observer, and
    /// through it nothing of event processing): past [`QUEUE_MAX`] waiting deliveries each
    /// new one is dropped at once and counted for its URL.
    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let (queue, _stalled) = mpsc::channel::<Delivery>(QUEUE_MAX);
        let mut picker = Picker::default();
        let w = hook(&["node_down"]);
        let body: Arc<str> = Arc::from("{}");
        let started = std::time::Instant::now();
        let queued = (0..QUEUE_MAX + 5)
            .filter(|i| picker.queue_one(&queue, "n1", &w, &body, &format!("record {i}")))
            .count();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "queueing waited {:?}",
            started.elapsed()
        );
        assert_eq!(queued, QUEUE_MAX);
        assert_eq!(picker.dropped.get(&w.url), Some(&5));
    }

    #[tokio::test]
    async fn a_failing_receiver_is_tried_retries_plus_one_times_with_backoff() {
        // A listener that answers 500 to every request, counting them.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let seen_tx = seen_tx.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let _ = seen_tx.send(tokio::time::Instant::now());
                    let _ = s
                        .write_all(b"HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n")
                        .await;
                });
            }
        });
        let d = Delivery {
            url: format!("http://{addr}/hook"),
            timeout: Duration::from_secs(2),
            retries: 2,
            body: Arc::from("{}"),
        };
        let started = tokio::time::Instant::now();
        let result = deliver(&d).await;
        assert_eq!(result, Err("answered HTTP 500".to_owned()));
        let mut times = Vec::new();
        while let Ok(t) = seen.try_recv() {
            times.push(t.duration_since(started));
        }
        assert_eq!(times.len(), 3, "{times:?}");
        // 0.5 s, then 1 s between attempts.
        assert!(
            times[1] - times[0] >= Duration::from_millis(450),
            "{times:?}"
        );
        assert!(
            times[2] - times[1] >= Duration::from_millis(950),
            "{times:?}"
        );
    }
}
