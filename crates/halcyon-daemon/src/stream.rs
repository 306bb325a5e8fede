//! `GET /v1/events/stream`: server-sent events of every event record and state change (the
//! messages are described in `halcyon_api`'s `stream` module).
//!
//! The node's observer (`node/observer.rs`) turns each new view into [`Item`]s once, whatever
//! the number of subscribers, and sends them on a `broadcast` ring of [`STREAM_BUFFER`]
//! items. Each subscriber reads the ring at its own pace: sending never waits for a reader,
//! and a reader that falls a whole ring behind is dropped with a `dropped` message (it then
//! reconnects with `Last-Event-ID` and resumes from the event log). At most
//! [`STREAM_SUBSCRIBERS_MAX`] subscribers at once; the stream is served outside the public
//! API's concurrency limit, which it would otherwise hold for as long as it is open.
//!
//! A subscriber starts from a snapshot of the view taken after it joined the ring: the
//! records the client asks for (after its `Last-Event-ID`, or all the node keeps, filtered)
//! and the status. Ring items from views the snapshot already covers are skipped, so a
//! record never goes back to an older state.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use halcyon_api::{
    EventRecord, EventsQuery, SCHEMA_VERSION, STREAM_DROPPED, STREAM_LOST, STREAM_RECORD,
    STREAM_STATUS, StreamNotice,
};
use tokio::sync::broadcast;

use crate::node::Node;
use crate::operations::ApiError;
use crate::views;

/// Items the ring holds: a reader this far behind is dropped.
pub const STREAM_BUFFER: usize = 256;
/// Subscribers at once on a node; more are refused (503).
pub const STREAM_SUBSCRIBERS_MAX: usize = 64;
/// A comment is sent after this long without a message.
pub const STREAM_HEARTBEAT: Duration = Duration::from_secs(5);
/// How long a browser waits before it reconnects (the SSE `retry:` field).
pub const STREAM_RETRY: Duration = Duration::from_secs(1);

/// What the observer sends to every subscriber.
#[derive(Clone, Debug)]
pub enum Item {
    /// The status as JSON (a `StatusResponse`).
    Status(Arc<str>),
    /// A record that changed in the view applied up to `applied`; `mark`: every record up to
    /// it is finished in that view.
    Record {
        applied: u64,
        mark: u64,
        record: Arc<halcyon_state::EventRecord>,
        json: Arc<str>,
    },
    /// Records `first..=last` left the log before the observer saw them.
    Lost { applied: u64, first: u64, last: u64 },
}

/// The mark of a log: the highest id up to which every record is finished (0: none).
pub fn mark(log: &halcyon_state::EventLog) -> u64 {
    let mut mark = 0;
    for r in log.iter() {
        if r.outcome == halcyon_state::Outcome::Running {
            break;
        }
        mark = r.id;
    }
    mark
}

/// The status as the stream sends it: without the last events, which come as `record`
/// messages of their own (and without the witness, which `GET /v1/status` asks over the
/// network).
pub fn streamed_status(node: &Node) -> halcyon_api::StatusResponse {
    let mut status = views::status(node);
    status.events.clear();
    status
}

/// A record as the stream sends it.
pub fn record_json(r: &halcyon_state::EventRecord) -> String {
    serde_json::to_string(&EventRecord::from(r)).unwrap_or_default()
}

fn notice(kind: &str, message: String, lost: Option<(u64, u64)>) -> SseEvent {
    let notice = StreamNotice {
        schema_version: SCHEMA_VERSION,
        message,
        lost,
    };
    SseEvent::default()
        .event(kind)
        .data(serde_json::to_string(&notice).unwrap_or_default())
}

fn lost(first: u64, last: u64) -> SseEvent {
    notice(
        STREAM_LOST,
        format!("event records {first} to {last} are no longer kept by this node"),
        Some((first, last)),
    )
}

fn record_event(mark: u64, json: &str) -> SseEvent {
    SseEvent::default()
        .id(mark.to_string())
        .event(STREAM_RECORD)
        .data(json)
}

/// The records one subscriber asked for.
#[derive(Clone, Debug)]
pub struct Filter {
    package: Option<String>,
    node: Option<String>,
}

impl Filter {
    fn admits(&self, r: &halcyon_state::EventRecord) -> bool {
        self.package
            .as_deref()
            .is_none_or(|p| views::record_has_package(r, p))
            && self
                .node
                .as_deref()
                .is_none_or(|n| views::record_has_node(r, n))
    }
}

/// Where a subscriber starts: after `Last-Event-ID` (or `?after=`), else every record the
/// node keeps (since `?since=`).
pub fn subscribe(
    node: &Node,
    query: &EventsQuery,
    last_event_id: Option<u64>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>> + use<>>, ApiError> {
    if node.stream.receiver_count() >= STREAM_SUBSCRIBERS_MAX {
        return Err(ApiError::unavailable(format!(
            "{} already follow the event stream on {} (at most {STREAM_SUBSCRIBERS_MAX})",
            node.stream.receiver_count(),
            node.name
        )));
    }
    if !node.observed() {
        return Err(ApiError::unavailable(format!(
            "the event stream is not served on {} (no observer runs)",
            node.name
        )));
    }
    // Joined first: what changes after the snapshots below is in the ring.
    let receiver = node.stream.subscribe();
    // The mark and what is lost from this copy; the records from the next, which is at least
    // as recent (a mark too low only makes a reconnecting client get more again).
    let state = node.snapshot();
    let after = last_event_id.or(query.after);
    let initial = views::events(
        node,
        &EventsQuery {
            after,
            ..query.clone()
        },
    )?;
    let filter = Filter {
        package: query.package.clone(),
        node: query.node.clone(),
    };
    let mut first = vec![SseEvent::default().retry(STREAM_RETRY)];
    let status = streamed_status(node);
    first.push(
        SseEvent::default()
            .event(STREAM_STATUS)
            .data(serde_json::to_string(&status).unwrap_or_default()),
    );
    if let (Some(after), Some(oldest)) = (after, state.log().iter().next())
        && oldest.id > after + 1
    {
        first.push(lost(after + 1, oldest.id - 1));
    }
    let mark = mark(state.log());
    for r in &initial.events {
        first.push(record_event(
            mark,
            &serde_json::to_string(r).unwrap_or_default(),
        ));
    }
    if initial.events.is_empty() {
        // No record sent: the mark still tells a reconnecting client where it stands.
        first.push(SseEvent::default().id(mark.to_string()).comment("mark"));
    }
    let stream = follow(first, receiver, initial.last_applied, filter);
    Ok(Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(STREAM_HEARTBEAT)
            .text("heartbeat"),
    ))
}

/// The subscriber's messages: `first`, then the ring's items after `applied`, until the ring
/// closes or the subscriber falls behind.
pub fn follow(
    first: Vec<SseEvent>,
    receiver: broadcast::Receiver<Item>,
    applied: u64,
    filter: Filter,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    enum Phase {
        First(std::vec::IntoIter<SseEvent>, broadcast::Receiver<Item>),
        Ring(broadcast::Receiver<Item>),
        Done,
    }
    futures_util::stream::unfold(Phase::First(first.into_iter(), receiver), move |phase| {
        let filter = filter.clone();
        async move {
            let mut receiver = match phase {
                Phase::First(mut first, receiver) => {
                    if let Some(event) = first.next() {
                        return Some((Ok(event), Phase::First(first, receiver)));
                    }
                    receiver
                }
                Phase::Ring(receiver) => receiver,
                Phase::Done => return None,
            };
            loop {
                match receiver.recv().await {
                    Ok(Item::Status(json)) => {
                        let event = SseEvent::default().event(STREAM_STATUS).data(&*json);
                        return Some((Ok(event), Phase::Ring(receiver)));
                    }
                    Ok(Item::Record {
                        applied: a,
                        mark,
                        record,
                        json,
                    }) => {
                        if a <= applied || !filter.admits(&record) {
                            continue;
                        }
                        return Some((Ok(record_event(mark, &json)), Phase::Ring(receiver)));
                    }
                    Ok(Item::Lost {
                        applied: a,
                        first,
                        last,
                    }) => {
                        if a <= applied {
                            continue;
                        }
                        return Some((Ok(lost(first, last)), Phase::Ring(receiver)));
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        let event = notice(
                            STREAM_DROPPED,
                            format!(
                                "this client fell {missed} messages behind (the stream keeps \
                                     {STREAM_BUFFER}) and is dropped; reconnect with \
                                     Last-Event-ID to resume"
                            ),
                            None,
                        );
                        return Some((Ok(event), Phase::Done));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn text(event: &SseEvent) -> String {
        // axum's Event renders itself as the wire text through Debug-free encoding: compare
        // through the response body instead.
        format!("{event:?}")
    }

    #[tokio::test]
    async fn a_reader_a_whole_ring_behind_is_dropped_with_a_message() {
        let (sender, receiver) = broadcast::channel(4);
        let filter = Filter {
            package: None,
            node: None,
        };
        for _ in 0..10 {
            sender.send(Item::Status(Arc::from("{}"))).unwrap();
        }
        let events: Vec<SseEvent> = follow(Vec::new(), receiver, 0, filter)
            .map(|e| e.unwrap())
            .collect()
            .await;
        assert_eq!(events.len(), 1, "{events:?}");
        let only = text(&events[0]);
        assert!(only.contains("dropped"), "{only}");
        assert!(only.contains("fell 6 messages behind"), "{only}");
        // Sending never waited: the sender is still fine for others.
        assert_eq!(sender.receiver_count(), 0);
    }

    #[tokio::test]
    async fn items_the_snapshot_covers_are_skipped() {
        let (sender, receiver) = broadcast::channel(8);
        let record = |id: u64, applied: u64| Item::Record {
            applied,
            mark: id,
            record: Arc::new(halcyon_state::EventRecord {
                id,
                sequence: id,
                event: halcyon_policy::Event::ClusterStart,
                by: "test".into(),
                queued_at: jiff::Timestamp::UNIX_EPOCH,
                started_at: None,
                finished_at: None,
                outcome: halcyon_state::Outcome::Done,
                plan_text: None,
                plan: None,
                error: None,
                actions: Vec::new(),
                program_text: None,
                launches: Vec::new(),
                notes: Vec::new(),
            }),
            json: Arc::from(format!("{{\"id\":{id}}}")),
        };
        sender.send(record(1, 5)).unwrap();
        sender.send(record(2, 9)).unwrap();
        drop(sender);
        let filter = Filter {
            package: None,
            node: None,
        };
        let events: Vec<String> = follow(Vec::new(), receiver, 5, filter)
            .map(|e| text(&e.unwrap()))
            .collect()
            .await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(events[0].contains("{\\\"id\\\":2}"), "{events:?}");
    }
}
