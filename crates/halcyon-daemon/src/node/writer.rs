//! Writes to the replicated log, and requests to the leader's API: every retry in the
//! daemon follows one policy ([`Retry`]), with the pause and the bound named per use.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use halcyon_consensus::WriteError;
use halcyon_policy::Event;
use halcyon_state::{Command, Reply};
use tokio::time::{Instant, sleep};

use super::Node;
use crate::client;

/// Timeout of one node-to-node API call.
const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(2);

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

impl Node {
    /// Commits a command through the leader (locally when this node leads).
    pub async fn submit(&self, command: &Command) -> Result<Reply, String> {
        let bytes = &command.encode();
        let body = &String::from_utf8_lossy(bytes).into_owned();
        SUBMIT
            .run(move || async move {
                if self.is_isolated() {
                    return Attempt::Stop("no quorum: this node is isolated".into());
                }
                if self.consensus.is_leader() {
                    match self.consensus.write(bytes.clone()).await {
                        Ok(reply) => Attempt::Done(Reply::decode(&reply.0)),
                        Err(WriteError::NotLeader { .. }) => {
                            Attempt::Retry("leadership moved".into())
                        }
                        // This replica's core has stopped (a full disk): no retry can
                        // succeed, and the node is leaving; a retry loop here held its
                        // executor, and so its halt, for seconds.
                        Err(e @ WriteError::Stopped(_)) => Attempt::Stop(e.to_string()),
                        Err(e) => Attempt::Retry(e.to_string()),
                    }
                } else if self.consensus.leader().is_some() {
                    let path = "/v1/internal/write";
                    match self
                        .leader_internal_request("POST", path, Some(body), PEER_CALL_TIMEOUT)
                        .await
                    {
                        Ok((_, r)) if r.status == 200 => {
                            Attempt::Done(Reply::decode(r.body.as_bytes()))
                        }
                        Ok((leader, r)) => Attempt::Retry(format!("leader {leader}: {}", r.body)),
                        Err(e) => Attempt::Retry(e),
                    }
                } else {
                    Attempt::Retry("no leader known".into())
                }
            })
            .await
            .map_err(|e| SUBMIT.write_failed(e))?
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

    /// Commits an action's end, until it is accepted, refused, or no longer awaited.
    pub(super) async fn report_action(&self, key: (u64, usize, usize), ok: bool, detail: String) {
        let command = Command::ActionDone {
            execution: key.0,
            step: key.1,
            index: key.2,
            ok,
            detail,
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
                        self.peers.answered(id, addr);
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
            self.peers.answered(id, addr);
        }
        Some(response)
    }
}
