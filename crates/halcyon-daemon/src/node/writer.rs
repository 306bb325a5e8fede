//! Writes to the replicated log, and requests to the leader's API: every retry in the
//! daemon follows one policy ([`Retry`]), with the pause and the bound named per use.
//!
//! The writer task batches: every attempt of [`Node::submit`] waits in the writer's queue,
//! and the writer sends what waits together as one [`Command::Batch`] (one Raft entry, one
//! request to the leader when this node does not lead), at most
//! [`halcyon_state::BATCH_COMMANDS_MAX`] commands and [`halcyon_state::BATCH_BYTES_MAX`]
//! bytes; a command alone goes as itself. It writes one batch at a time, so whatever comes
//! while one is being committed goes in the next: 1,000 actions finished together are a few
//! entries, not 1,000 (issue 21: 9,780 `fdatasync` in 25 s for one entry each). Each command
//! gets its own reply and its caller's retries stay its own: a failed attempt fails every
//! command of its batch, and each caller tries again after its pause, in a later batch.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use halcyon_consensus::WriteError;
use halcyon_policy::Event;
use halcyon_state::{BATCH_BYTES_MAX, BATCH_COMMANDS_MAX, Command, Reply};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep};

use super::Node;
use crate::client;

/// Timeout of one node-to-node API call.
const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Most attempts waiting in the writer's queue; a caller beyond it waits for room. Twice the
/// most plan actions one node can finish together (every package of the largest
/// configuration), so that those never wait for room behind the node's other writes.
pub(crate) const WRITES_QUEUED_MAX: usize = 2 * halcyon_config::limits::PACKAGES_MAX;

/// What a [`Command::Batch`] adds to its commands' encoded bytes (the envelope
/// `{"command":"batch","commands":[...]}` is 33 bytes) besides a comma between two.
const BATCH_ENVELOPE_BYTES: usize = 64;

/// How a write is retried: an attempt every `pause` until `within` has passed. An
/// attempt answers [`Attempt::Retry`] to go on, anything else ends the retries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Retry {
    pub pause: Duration,
    pub within: Duration,
}

/// One command committed through the leader.
pub(crate) const SUBMIT: Retry = Retry {
    pause: Duration::from_millis(50),
    within: Duration::from_secs(5),
};
/// A node's report on the current execution, while the execution still waits for it.
pub(crate) const REPORT: Retry = Retry {
    pause: Duration::from_millis(500),
    within: Duration::from_secs(300),
};
/// A node's registration at start: until it is committed (a day is forever here).
pub(crate) const REGISTER: Retry = Retry {
    pause: Duration::from_millis(200),
    within: Duration::from_secs(24 * 3600),
};

/// What one attempt says.
#[derive(Debug, PartialEq)]
pub(crate) enum Attempt<T> {
    Done(T),
    /// Failed for good: no more attempts.
    Stop(String),
    /// Failed: try again after the pause (the error is kept for the final message).
    Retry(String),
}

/// Why retries ended without a result.
pub(crate) enum GaveUp {
    /// An attempt stopped them, saying why.
    Stopped(String),
    /// The bound passed; the last attempt's error.
    OutOfTime(String),
}

impl Retry {
    /// Runs `attempt` until it is done or stops, or `within` has passed.
    pub(crate) async fn run<T, F: Future<Output = Attempt<T>>>(
        self,
        mut attempt: impl FnMut() -> F,
    ) -> Result<T, GaveUp> {
        let deadline = Instant::now() + self.within;
        let mut last = String::from("not tried");
        while Instant::now() < deadline {
            match attempt().await {
                Attempt::Done(value) => return Ok(value),
                Attempt::Stop(error) => return Err(GaveUp::Stopped(error)),
                Attempt::Retry(error) => last = error,
            }
            sleep(self.pause).await;
        }
        Err(GaveUp::OutOfTime(last))
    }

    /// The message for a write that could not be committed.
    fn write_failed(self, gave_up: GaveUp) -> String {
        match gave_up {
            GaveUp::Stopped(why) => why,
            GaveUp::OutOfTime(last) => format!(
                "no quorum: could not commit within {:?} ({last})",
                self.within
            ),
        }
    }
}

/// What one attempt at a write ends with: the state machine's reply (or why it could not be
/// read).
type WriteOutcome = Attempt<Result<Reply, String>>;

/// One attempt of [`Node::submit`] waiting for the writer.
pub(crate) struct QueuedWrite {
    command: Command,
    /// `command` encoded (sent as is when it goes alone).
    encoded: Vec<u8>,
    outcome: oneshot::Sender<WriteOutcome>,
}

/// The writer task's state ([`Node::writer_loop`]): its queue, and what it took from the
/// queue that did not fit in the last batch.
pub struct Writer {
    queue: mpsc::Receiver<QueuedWrite>,
    waiting: VecDeque<QueuedWrite>,
}

impl Writer {
    pub(crate) fn new() -> (Writer, mpsc::Sender<QueuedWrite>) {
        let (writes, queue) = mpsc::channel(WRITES_QUEUED_MAX);
        let writer = Writer {
            queue,
            waiting: VecDeque::new(),
        };
        (writer, writes)
    }

    /// The next writes to send together, in the order they came; `None` once every sender
    /// is gone. Waits only when nothing waits. A write whose caller has gone is dropped.
    async fn next_batch(&mut self) -> Option<Vec<QueuedWrite>> {
        self.waiting.retain(|w| !w.outcome.is_closed());
        if self.waiting.is_empty() {
            let first = self.queue.recv().await?;
            self.waiting.push_back(first);
        }
        while self.waiting.len() < BATCH_COMMANDS_MAX {
            match self.queue.try_recv() {
                Ok(write) if write.outcome.is_closed() => {}
                Ok(write) => self.waiting.push_back(write),
                Err(_) => break,
            }
        }
        let take = batch_len(self.waiting.iter().map(|w| w.encoded.len()));
        Some(self.waiting.drain(..take).collect())
    }
}

/// How many of the waiting commands (their encoded sizes, in order) go in the next entry:
/// the first always (alone when it is too large to share one), then as many as fit
/// [`BATCH_COMMANDS_MAX`] and [`BATCH_BYTES_MAX`].
fn batch_len(sizes: impl Iterator<Item = usize>) -> usize {
    let mut bytes = BATCH_ENVELOPE_BYTES;
    let mut count = 0;
    for size in sizes.take(BATCH_COMMANDS_MAX) {
        // A comma before every command but the first.
        let added = size + usize::from(count > 0);
        if count > 0 && bytes + added > BATCH_BYTES_MAX {
            break;
        }
        bytes += added;
        count += 1;
    }
    count
}

/// The outcome of one attempt at a batch of `count` commands, as each command's own: each
/// its reply, or the attempt's failure for all.
fn split(outcome: WriteOutcome, count: usize) -> Vec<WriteOutcome> {
    let every = |make: &dyn Fn() -> WriteOutcome| -> Vec<WriteOutcome> {
        (0..count).map(|_| make()).collect()
    };
    match outcome {
        Attempt::Done(Ok(Reply::Batch { replies })) if replies.len() == count => replies
            .into_iter()
            .map(|reply| Attempt::Done(Ok(reply)))
            .collect(),
        Attempt::Done(Ok(Reply::Ignored { why })) => every(&|| {
            Attempt::Done(Err(format!(
                "the batch of {count} commands this one went in was refused: {why}"
            )))
        }),
        Attempt::Done(Ok(other)) => every(&|| {
            Attempt::Done(Err(format!(
                "a batch of {count} commands was answered {other:?}"
            )))
        }),
        Attempt::Done(Err(e)) => every(&|| Attempt::Done(Err(e.clone()))),
        Attempt::Stop(e) => every(&|| Attempt::Stop(e.clone())),
        Attempt::Retry(e) => every(&|| Attempt::Retry(e.clone())),
    }
}

impl Node {
    /// Commits a command through the leader (locally when this node leads), in a batch
    /// with whatever else waits for the writer (see the module's doc).
    pub async fn submit(&self, command: &Command) -> Result<Reply, String> {
        let encoded = &command.encode();
        SUBMIT
            .run(move || async move {
                let (outcome, answer) = oneshot::channel();
                let write = QueuedWrite {
                    command: command.clone(),
                    encoded: encoded.clone(),
                    outcome,
                };
                if self.writes.send(write).await.is_err() {
                    return Attempt::Stop("the writer has stopped".into());
                }
                answer
                    .await
                    .unwrap_or_else(|_| Attempt::Stop("the writer has stopped".into()))
            })
            .await
            .map_err(|e| SUBMIT.write_failed(e))?
    }

    /// The writer task: sends what waits in its queue, a batch at a time, and answers each
    /// command's caller with its own outcome.
    pub(crate) async fn writer_loop(self: Arc<Self>, mut writer: Writer) {
        while let Some(batch) = writer.next_batch().await {
            if let [_] = batch.as_slice() {
                let write = batch.into_iter().next().expect("one write");
                let outcome = self.write_once(&write.encoded).await;
                let _ = write.outcome.send(outcome);
                continue;
            }
            let count = batch.len();
            let (commands, outcomes): (Vec<Command>, Vec<_>) =
                batch.into_iter().map(|w| (w.command, w.outcome)).unzip();
            if let Some(why) = Command::batch_error(&commands) {
                panic!("the writer formed a batch the state machine refuses: {why}");
            }
            let entry = Command::Batch { commands }.encode();
            assert!(
                entry.len() <= BATCH_BYTES_MAX,
                "a batch of {count} commands is {} bytes (at most {BATCH_BYTES_MAX})",
                entry.len()
            );
            let outcome = self.write_once(&entry).await;
            for (outcome, caller) in split(outcome, count).into_iter().zip(outcomes) {
                let _ = caller.send(outcome);
            }
        }
    }

    /// One attempt at committing an encoded command through the leader.
    async fn write_once(&self, bytes: &[u8]) -> WriteOutcome {
        if self.is_isolated() {
            return Attempt::Stop("no quorum: this node is isolated".into());
        }
        if self.consensus.is_leader() {
            match self.consensus.write(bytes.to_vec()).await {
                Ok(reply) => Attempt::Done(Reply::decode(&reply.0)),
                Err(WriteError::NotLeader { .. }) => Attempt::Retry("leadership moved".into()),
                // This replica's core has stopped (a full disk): no retry can succeed,
                // and the node is leaving; a retry loop here held its executor, and so
                // its halt, for seconds.
                Err(e @ WriteError::Stopped(_)) => Attempt::Stop(e.to_string()),
                Err(e) => Attempt::Retry(e.to_string()),
            }
        } else if self.consensus.leader().is_some() {
            let body = String::from_utf8_lossy(bytes);
            let path = "/v1/internal/write";
            match self
                .leader_internal_request("POST", path, Some(&body), PEER_CALL_TIMEOUT)
                .await
            {
                Ok((_, r)) if r.status == 200 => Attempt::Done(Reply::decode(r.body.as_bytes())),
                Ok((leader, r)) => Attempt::Retry(format!("leader {leader}: {}", r.body)),
                Err(e) => Attempt::Retry(e),
            }
        } else {
            Attempt::Retry("no leader known".into())
        }
    }

    /// Commits a coordinator decision only as the leader of `term`. A leader cut off from the
    /// majority keeps believing it leads (openraft 0.9) and judges the majority's nodes
    /// unreachable; were its commands forwarded to the new leader once the partition heals (as
    /// [`Node::submit`] does), its stale `node_down` of the majority's nodes would be committed
    /// (false failovers after a heal). A write in `term` either commits in that term or not at
    /// all.
    pub(super) async fn submit_as_leader(
        &self,
        term: u64,
        command: &Command,
    ) -> Result<Reply, String> {
        let bytes = &command.encode();
        let dropped = |why: String| {
            Attempt::Stop(format!(
                "no longer the coordinator of term {term}{why}: the decision is dropped"
            ))
        };
        SUBMIT
            .run(move || async move {
                if self.is_isolated() {
                    return Attempt::Stop("no quorum: this node is isolated".into());
                }
                match self.consensus.leading_term() {
                    Some(current) if current == term => {}
                    Some(current) => return dropped(format!(" (term {current})")),
                    None => return dropped(" (not leading)".into()),
                }
                match self.consensus.write(bytes.clone()).await {
                    Ok(reply) => Attempt::Done(Reply::decode(&reply.0)),
                    Err(WriteError::NotLeader { .. }) => dropped(String::new()),
                    Err(e @ WriteError::Stopped(_)) => Attempt::Stop(e.to_string()),
                    Err(e) => Attempt::Retry(e.to_string()),
                }
            })
            .await
            .map_err(|e| SUBMIT.write_failed(e))?
    }

    pub async fn enqueue(&self, event: Event, by: &str) -> Result<Reply, String> {
        self.enqueue_request(event, by, None).await
    }

    /// [`Node::enqueue`] on behalf of a client's request `request` (enqueued once per id).
    pub async fn enqueue_request(
        &self,
        event: Event,
        by: &str,
        request: Option<&str>,
    ) -> Result<Reply, String> {
        tracing::info!(event = %event, by, request, "enqueue");
        self.submit(&Command::Enqueue {
            event,
            by: by.to_owned(),
            at: self.timestamp(),
            sample: None,
            request: request.map(str::to_owned),
        })
        .await
    }

    /// Registers this incarnation of the node (its rejoin), until it is committed. A
    /// registration refused because the cluster has a higher incarnation of this node
    /// committed (its state directory was wiped, or restored from an old copy) makes the
    /// node that incarnation plus one, heartbeated and kept, and registers again: without it
    /// the node's heartbeats would be dropped as stale forever (issue 15, finding 4).
    pub(crate) async fn register(self: std::sync::Arc<Self>) {
        let this = &self;
        let registered = REGISTER
            .run(move || async move {
                let command = Command::Register {
                    node: this.name.clone(),
                    incarnation: this.incarnation(),
                    at: this.timestamp(),
                    clean_stop: this.previous_clean_stop(),
                };
                match this.submit(&command).await {
                    Ok(Reply::Ignored { why }) => this.registration_refused(&why).await,
                    Ok(_) => Attempt::Done(()),
                    Err(e) => Attempt::Retry(e),
                }
            })
            .await;
        match registered {
            Ok(()) => {
                tracing::info!(node = %self.name, incarnation = self.incarnation(), "registered")
            }
            Err(e) => {
                tracing::error!(node = %self.name, "registration: {}", REGISTER.write_failed(e))
            }
        }
    }

    /// The cluster refused this incarnation: once this replica shows the committed one, the
    /// node becomes the next.
    async fn registration_refused(&self, why: &str) -> Attempt<()> {
        let ours = self.incarnation();
        let committed = self
            .snapshot()
            .incarnations()
            .get(&self.name)
            .copied()
            .unwrap_or(0);
        if committed < ours {
            // This replica has not applied the refusing state yet.
            return Attempt::Retry(format!(
                "registration refused ({why}); waiting for the replica"
            ));
        }
        let next = committed + 1;
        tracing::warn!(
            node = %self.name,
            ours,
            committed,
            "the cluster knows a later incarnation of this node (was its state directory wiped?): rejoining as incarnation {next}"
        );
        match self.reincarnate(next).await {
            Ok(()) => Attempt::Retry(format!("rejoining as incarnation {next}")),
            Err(e) => Attempt::Stop(format!("cannot become incarnation {next}: {e}")),
        }
    }

    /// Commits an action's end, until it is accepted, refused, or no longer awaited. The
    /// detail is cut as the state machine keeps it, so that a report's entry stays small.
    pub(super) async fn report_action(&self, key: (u64, usize, usize), ok: bool, detail: String) {
        let command = Command::ActionDone {
            execution: key.0,
            step: key.1,
            index: key.2,
            ok,
            detail: halcyon_events::output_tail(&detail, halcyon_state::DETAIL_MAX),
            at: self.timestamp(),
        };
        let what = format!("action {}/{}/{}", key.0, key.1, key.2);
        self.report(&command, &what, |x| {
            x.id == key.0 && !x.done.contains(&(key.1, key.2))
        })
        .await;
    }

    /// Commits a node's report on the current execution, retrying ([`REPORT`]) while
    /// `awaited` says the execution still waits for it. A refusal is logged and ends it.
    pub(crate) async fn report(
        &self,
        command: &Command,
        what: &str,
        awaited: impl Fn(&halcyon_state::Execution) -> bool,
    ) {
        let awaited = &awaited;
        let reported = REPORT
            .run(move || async move {
                match self.submit(command).await {
                    Ok(Reply::Ignored { why }) => {
                        tracing::warn!("{what}: report refused: {why}");
                        Attempt::Done(())
                    }
                    Ok(_) => Attempt::Done(()),
                    Err(e) if self.snapshot().execution().is_some_and(awaited) => {
                        tracing::warn!("{what}: cannot report yet: {e}");
                        Attempt::Retry(e)
                    }
                    Err(_) => Attempt::Done(()), // no longer awaited
                }
            })
            .await;
        if let Err(e) = reported {
            tracing::error!("{what}: report given up: {}", REPORT.write_failed(e));
        }
    }

    /// A request to the leader's API: its addresses one after the other (the one that
    /// answered last first), each within `limit`. Not for requests that must not be sent
    /// twice unless a failed attempt cannot have reached the leader (the write path
    /// retries the same command, which the state machine's replies make visible).
    /// `caller`: who asked (the request is forwarded on their behalf).
    pub async fn leader_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        limit: Duration,
        caller: &crate::auth::Caller,
    ) -> Result<(String, client::Response), String> {
        self.leader_request_at(false, method, path, body, limit, Some(caller))
            .await
    }

    /// [`Node::leader_request`] to the leader's internal API.
    async fn leader_internal_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        limit: Duration,
    ) -> Result<(String, client::Response), String> {
        self.leader_request_at(true, method, path, body, limit, None)
            .await
    }

    async fn leader_request_at(
        &self,
        internal: bool,
        method: &str,
        path: &str,
        body: Option<&str>,
        limit: Duration,
        caller: Option<&crate::auth::Caller>,
    ) -> Result<(String, client::Response), String> {
        let Some((leader, addrs)) = self.leader_addrs(internal) else {
            return Err("no leader known".into());
        };
        let id = self.consensus.leader();
        let mut errors = Vec::new();
        for addr in addrs {
            match self.request(addr, method, path, body, limit, caller).await {
                Ok(r) => {
                    if let Some(id) = id {
                        self.peers().answered(id, addr);
                    }
                    return Ok((leader, r));
                }
                Err(e) => errors.push(e),
            }
        }
        Err(format!("leader {leader}: {}", errors.join("; ")))
    }

    /// A request to the leader's internal API on all its addresses at once; the first
    /// answer wins (for idempotent requests: lease renewals).
    pub(super) async fn leader_request_race(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        limit: Duration,
    ) -> Option<client::Response> {
        let (_, addrs) = self.leader_addrs(true).filter(|(_, a)| !a.is_empty())?;
        let id = self.consensus.leader();
        let attempts = addrs.into_iter().map(|addr: SocketAddr| {
            Box::pin(async move {
                self.request(addr, method, path, body, limit, None)
                    .await
                    .map(|r| (addr, r))
            })
        });
        let ((addr, response), _) = futures_util::future::select_ok(attempts).await.ok()?;
        if let Some(id) = id {
            self.peers().answered(id, addr);
        }
        Some(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_takes_what_waits_up_to_its_count_and_size() {
        assert_eq!(batch_len([200; 3].into_iter()), 3);
        assert_eq!(
            batch_len([200; 1000].into_iter()),
            BATCH_COMMANDS_MAX,
            "at most the count"
        );
        // Sizes that fill the bound exactly (a comma between two), then one byte more.
        let each = (BATCH_BYTES_MAX - BATCH_ENVELOPE_BYTES) / 4;
        let exact = BATCH_BYTES_MAX - BATCH_ENVELOPE_BYTES - 3 * each - 3;
        assert_eq!(batch_len([each, each, each, exact].into_iter()), 4);
        assert_eq!(batch_len([each, each, each, exact + 1, 1].into_iter()), 3);
        // A command too large to share an entry goes alone, and nothing joins it.
        assert_eq!(batch_len([BATCH_BYTES_MAX * 2, 10].into_iter()), 1);
        assert_eq!(batch_len([10, BATCH_BYTES_MAX * 2].into_iter()), 1);
    }

    /// The writer's size counts the envelope the encoded batch really has.
    #[test]
    fn the_envelope_covers_the_encoded_batch() {
        let command = |node: &str| Command::NodeStartAllowed {
            node: node.into(),
            at: jiff::Timestamp::UNIX_EPOCH,
        };
        let commands = vec![command("n1"), command("node-two"), command("n3")];
        let sizes: usize = commands.iter().map(|c| c.encode().len()).sum();
        let encoded = Command::Batch { commands }.encode().len();
        assert!(encoded <= sizes + 2 + BATCH_ENVELOPE_BYTES, "{encoded}");
        assert_eq!(encoded, sizes + 2 + 33);
    }

    #[test]
    fn each_command_of_a_batch_gets_its_own_reply_or_the_attempts_failure() {
        let replies = vec![
            Reply::Done,
            Reply::Ignored {
                why: "already done".into(),
            },
        ];
        assert_eq!(
            split(
                Attempt::Done(Ok(Reply::Batch {
                    replies: replies.clone()
                })),
                2
            ),
            replies
                .into_iter()
                .map(|r| Attempt::Done(Ok(r)))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            split(Attempt::Retry("leadership moved".into()), 2),
            vec![
                Attempt::Retry("leadership moved".into()),
                Attempt::Retry("leadership moved".into())
            ],
            "each caller retries on its own"
        );
        assert_eq!(
            split(Attempt::Stop("stopped".into()), 1),
            vec![Attempt::Stop("stopped".into())]
        );
        // A batch refused whole failed every command in it; a reply of the wrong shape is
        // an error for each, never a reply of someone else's command.
        let refused = split(
            Attempt::Done(Ok(Reply::Ignored {
                why: "an empty batch".into(),
            })),
            2,
        );
        assert!(
            refused.iter().all(
                |a| matches!(a, Attempt::Done(Err(e)) if e.contains("refused: an empty batch"))
            ),
            "{refused:?}"
        );
        let short = split(
            Attempt::Done(Ok(Reply::Batch {
                replies: vec![Reply::Done],
            })),
            2,
        );
        assert!(
            short
                .iter()
                .all(|a| matches!(a, Attempt::Done(Err(e)) if e.contains("was answered"))),
            "{short:?}"
        );
    }
}
