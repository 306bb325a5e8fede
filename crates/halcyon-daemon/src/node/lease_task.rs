//! The lease task: renews this node's lease every renewal interval, publishes it
//! ([`Lease`] on a `watch`), keeps the guard armed, feeds the watchdog, and owns the
//! heartbeat runner's handle. The leader's side of a renewal ([`Node::grant_lease`]) is
//! here too. The rule (expiry, fencing lead, release deadlines) is `crate::lease`'s.
//!
//! Fencing is the supervisors' (`package`): each failover package's supervisor waits for
//! its lease's fencing moment on the published lease and halts the package at once; the
//! lease task resets the published lease when the guard fenced or was replaced, which wakes
//! them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use halcyon_api::{LeaseRequest, LeaseResponse};
use halcyon_consensus::NodeId;
use halcyon_consensus::net::AskFailed;
use halcyon_guard::BootTime;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::{LeaseAnswer, Node};
use crate::lease::Lease;
use crate::peers::join_addrs;
use crate::platform::HeartbeatHandle;
use crate::watchdog::Watchdog;

/// What other tasks ask of the lease task.
#[derive(Debug)]
pub(crate) enum LeaseCommand {
    /// A test fault isolates the node: its heartbeats stop.
    Isolate,
    /// Clean shutdown: disarm the watchdog (magic close), then answer. No watchdog is
    /// opened after it.
    CloseWatchdog(oneshot::Sender<()>),
    /// The running configuration's watchdog device (`halcyon apply`): the one open is
    /// disarmed (magic close) and this one opened; answers what `status` says of it.
    SwitchWatchdog {
        path: Option<String>,
        done: oneshot::Sender<String>,
    },
    /// Heartbeat as this (higher) incarnation from now on, then answer.
    Reincarnate(u64, oneshot::Sender<Result<(), String>>),
    /// The running configuration's heartbeat (interval and sensitivity) on a network,
    /// then answer whether the heartbeats took it.
    Heartbeat {
        network: u32,
        heartbeat: halcyon_config::Heartbeat,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// The running configuration's nodes and networks (`halcyon apply` added or removed
    /// some): the detector's peers, networks and paths, and each network's link peers
    /// (the links of new networks made from `config`); then answer whether the heartbeats
    /// took them.
    Peers {
        config: std::sync::Arc<halcyon_config::Config>,
        detector: Box<halcyon_membership::detector::DetectorConfig>,
        links: halcyon_membership::LinkPeers,
        done: oneshot::Sender<Result<(), String>>,
    },
}

/// How long renewals go to a leader on its internal API only, after it left them on the
/// Raft transport unanswered and answered them there (a coordinator of an earlier version,
/// during a rolling upgrade): the Raft transport is tried again after this.
pub(crate) const RAFT_RENEWALS_RETRY_AFTER: Duration = Duration::from_secs(30);

/// How many renewals in a row a leader leaves unanswered on the Raft transport (and
/// answers on its internal API) before the next ones go to its internal API only. One is
/// no proof: a connection cut while the renewal was on it, or a leader's Raft server that
/// closed it while stopping, leaves one unanswered as well; an earlier version leaves
/// every one so. (A leader this node's replica has no address for yet, as a node that just
/// joined knows its leader before the membership, is not asked at all:
/// `AskFailed::NotMember`, not counted.)
pub(crate) const RAFT_RENEWALS_UNANSWERED_MAX: u32 = 3;

/// Which transport a holder's renewals take. A renewal goes to the leader on the Raft
/// transport (its kept mutual-TLS connections, one small frame each way: a fifth of what
/// the internal API's HTTP costs the coordinator); when the leader leaves
/// [`RAFT_RENEWALS_UNANSWERED_MAX`] in a row unanswered and answers them on the internal
/// API, renewals to that leader use the internal API for [`RAFT_RENEWALS_RETRY_AFTER`].
#[derive(Debug, Default)]
pub(crate) struct RaftRenewals {
    /// The leader whose last renewals were left unanswered on the Raft transport and
    /// answered on the internal API, and how many in a row.
    unanswered: Option<(NodeId, u32)>,
    /// The leader whose renewals go to its internal API only, and since when.
    http_only: Option<(NodeId, Instant)>,
}

impl RaftRenewals {
    /// Whether a renewal to `leader` at `now` goes on the Raft transport first.
    pub(crate) fn raft_first(&self, leader: NodeId, now: Instant) -> bool {
        match self.http_only {
            Some((node, since)) => {
                node != leader || now.saturating_duration_since(since) >= RAFT_RENEWALS_RETRY_AFTER
            }
            None => true,
        }
    }

    /// A renewal sent on the Raft transport was answered (on it, or on the internal API
    /// after the Raft one was late): the run of unanswered ones ends.
    pub(crate) fn answered(&mut self) {
        self.unanswered = None;
    }

    /// `leader` left a renewal on the Raft transport unanswered and answered it on the
    /// internal API at `now`; true when that makes [`RAFT_RENEWALS_UNANSWERED_MAX`] in a
    /// row, and renewals to it go to the internal API only from now on.
    pub(crate) fn answered_on_http_only(&mut self, leader: NodeId, now: Instant) -> bool {
        let run = match self.unanswered {
            Some((node, run)) if node == leader => run + 1,
            _ => 1,
        };
        debug_assert!(run <= RAFT_RENEWALS_UNANSWERED_MAX);
        if run < RAFT_RENEWALS_UNANSWERED_MAX {
            self.unanswered = Some((leader, run));
            return false;
        }
        self.unanswered = None;
        self.http_only = Some((leader, now));
        true
    }
}

/// The renewals a coordinator answered, by the transport they came on (`metrics`).
#[derive(Debug, Default)]
pub struct RenewalsAnswered {
    pub raft: AtomicU64,
    pub http: AtomicU64,
}

/// The transport a renewal came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewalTransport {
    Raft,
    Http,
}

/// How many commands may wait: one isolation, one close and one reincarnation, and the
/// changes of one configuration (a sensitivity per network, a watchdog; the senders wait
/// for room).
const COMMANDS_QUEUED_MAX: usize = 8;

/// How one renewal attempt ended.
enum Renewal {
    Granted(LeaseAnswer),
    NotGranted(String),
    /// The leader changed while it was asked: ask the new one at once.
    LeaderChanged,
}

/// What the lease task owns.
pub struct LeaseTask {
    publish: watch::Sender<Lease>,
    commands: mpsc::Receiver<LeaseCommand>,
    /// The heartbeat runner (stopped on isolation): the watchdog is fed only while it runs.
    heartbeats: Option<Box<dyn HeartbeatHandle>>,
    /// The watchdog device, when configured and present.
    watchdog: Option<Watchdog>,
    /// Disarmed for a clean shutdown: none is opened again.
    watchdog_closed: bool,
    /// The leader's refusal that excludes this node (`State::stuck`), as last logged: logged
    /// once, not at every renewal.
    exclusion_logged: Option<String>,
}

/// Marks the leader's refusal of a node excluded for not completing its work.
const EXCLUDED: &str = " is excluded: ";

impl LeaseTask {
    pub(crate) fn new(
        heartbeats: Box<dyn HeartbeatHandle>,
        watchdog: Option<Watchdog>,
    ) -> (
        watch::Receiver<Lease>,
        mpsc::Sender<LeaseCommand>,
        LeaseTask,
    ) {
        // No lease yet, and the guard (just started) protects none.
        let (publish, lease) = watch::channel(Lease {
            guarded: true,
            ..Lease::default()
        });
        let (commands_tx, commands) = mpsc::channel(COMMANDS_QUEUED_MAX);
        let task = LeaseTask {
            publish,
            commands,
            heartbeats: Some(heartbeats),
            watchdog,
            watchdog_closed: false,
            exclusion_logged: None,
        };
        (lease, commands_tx, task)
    }

    fn handle(&mut self, command: LeaseCommand) {
        match command {
            LeaseCommand::Isolate => {
                if let Some(heartbeats) = self.heartbeats.take() {
                    heartbeats.stop();
                }
            }
            LeaseCommand::Reincarnate(incarnation, done) => {
                let result = match &self.heartbeats {
                    Some(heartbeats) => heartbeats.reincarnate(incarnation),
                    None => Err("heartbeats are stopped (isolated)".into()),
                };
                let _ = done.send(result);
            }
            LeaseCommand::Heartbeat {
                network,
                heartbeat,
                done,
            } => {
                let result = match &self.heartbeats {
                    Some(heartbeats) => heartbeats.set_heartbeat(network, heartbeat),
                    None => Err("heartbeats are stopped (isolated)".into()),
                };
                let _ = done.send(result);
            }
            LeaseCommand::Peers {
                config,
                detector,
                links,
                done,
            } => {
                let result = match &self.heartbeats {
                    Some(heartbeats) => heartbeats.set_peers(&config.cluster, *detector, links),
                    None => Err("heartbeats are stopped (isolated)".into()),
                };
                let _ = done.send(result);
            }
            LeaseCommand::CloseWatchdog(done) => {
                if let Some(w) = self.watchdog.take() {
                    w.close();
                }
                self.watchdog_closed = true;
                let _ = done.send(());
            }
            LeaseCommand::SwitchWatchdog { path, done } => {
                if self.watchdog_closed {
                    let _ = done.send("disarmed: the daemon is stopping".to_owned());
                    return;
                }
                if let Some(w) = self.watchdog.take() {
                    w.close();
                }
                let (watchdog, state) = crate::watchdog::open_path(path.as_deref());
                self.watchdog = watchdog;
                let _ = done.send(state);
            }
        }
    }
}

impl Node {
    /// Renews the lease every renewal interval (the answer awaited while commands are
    /// still taken), publishes it, and feeds the watchdog while the lease is valid and the
    /// heartbeat thread runs.
    pub(crate) async fn lease_loop(self: Arc<Self>, mut task: LeaseTask) {
        let mut server = self.consensus.server_metrics();
        loop {
            let next = Instant::now() + self.renewal_interval();
            self.check_guard(&task.publish);
            // CLOCK_BOOTTIME before the Instant: the guard's deadline comes no later.
            let t_boot = self.guard.clock();
            let t_send = self.platform.clock.now();
            let asked = self.consensus.leader();
            server.mark_unchanged();
            let renewal = tokio::time::timeout(self.renew_attempt(), self.renew());
            tokio::pin!(renewal);
            let renewal = loop {
                tokio::select! {
                    biased;
                    answer = &mut renewal => break match answer {
                        Ok(Ok(answer)) => Renewal::Granted(answer),
                        Ok(Err(why)) => Renewal::NotGranted(why),
                        Err(_) => Renewal::NotGranted(format!("no answer within {:?}", self.renew_attempt())),
                    },
                    Some(command) = task.commands.recv() => task.handle(command),
                    // A new leader: the one asked may be paused or gone (its kernel still
                    // accepting connections); ask the new one now (issue 15, finding 1).
                    Ok(()) = server.changed(), if asked.is_some() => {
                        if self.consensus.leader() != asked {
                            break Renewal::LeaderChanged;
                        }
                    }
                }
            };
            match renewal {
                Renewal::Granted(answer) => {
                    self.granted(&task.publish, t_boot, t_send, answer.read_index);
                    self.renewal_took(t_send);
                    task.exclusion_logged = None;
                }
                Renewal::LeaderChanged => {
                    tracing::debug!(node = %self.name, "lease renewal: the leader changed; asking the new one");
                    continue;
                }
                // The cluster gave up on this node: its own log says why, once.
                Renewal::NotGranted(why)
                    if why.contains(EXCLUDED) && task.exclusion_logged.as_ref() != Some(&why) =>
                {
                    tracing::error!(node = %self.name, "lease not renewed: {why}");
                    task.exclusion_logged = Some(why);
                }
                Renewal::NotGranted(why) => {
                    tracing::debug!(node = %self.name, "lease not renewed: {why}")
                }
            }
            let healthy = task.heartbeats.as_ref().is_some_and(|h| h.is_running());
            if healthy
                && self.lease_valid()
                && let Some(w) = task.watchdog.as_mut()
            {
                w.keepalive();
            }
            // Until the next renewal, or until a leader other than the one asked is known.
            loop {
                tokio::select! {
                    biased;
                    Some(command) = task.commands.recv() => task.handle(command),
                    () = tokio::time::sleep_until(next) => break,
                    Ok(()) = server.changed() => {
                        let leader = self.consensus.leader();
                        if leader.is_some() && leader != asked {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// A grant: the guard's deadline moves first, then the published lease.
    fn granted(
        &self,
        publish: &watch::Sender<Lease>,
        t_boot: BootTime,
        t_send: Instant,
        read_index: u64,
    ) {
        // Read before the published lease is locked (the view has a lock of its own).
        let holding = self.holding_lease();
        self.guard.extend(BootTime::lease_deadline(t_boot, holding));
        let now = self.platform.clock.now();
        let lead = self.fence_lead();
        publish.send_if_modified(|lease| lease.granted(t_send, holding, read_index, now, lead));
    }

    /// A renewal sent at `t_send` was granted now: too slow for the timings is logged (at
    /// a bounded rate) and shown by `status` (`crate::renewal_watch`).
    fn renewal_took(&self, t_send: Instant) {
        let now = self.platform.clock.now();
        // Judged by the lease it renews (`halcyon apply` may have changed it).
        let (interval, lease) = (
            self.config().cluster.heartbeat.interval,
            self.holding_lease(),
        );
        let slow = {
            let mut watch = self
                .renewal_watch
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            watch.set_limits(
                halcyon_config::timing::renewal_warning_threshold(interval, lease),
                halcyon_config::timing::renewal_round_trip_max(interval, lease),
            );
            watch.observe(now, now.duration_since(t_send))
        };
        if let Some(line) = slow {
            tracing::warn!(node = %self.name, "{line}");
        }
    }

    /// The guard's health, published: a replaced guard is unarmed and a fenced guard has
    /// killed what it held, so either way the lease is gone until the next grant.
    fn check_guard(&self, publish: &watch::Sender<Lease>) {
        let respawned = self.guard.respawn_if_needed();
        let fenced = self.guard.fenced();
        if fenced {
            for fence in self.guard.take_fences() {
                if fence.groups_killed + fence.addresses_deleted > 0 {
                    tracing::error!(node = %self.name, "the lease guard fenced this node's failover packages: {}", fence.line);
                } else {
                    tracing::info!(node = %self.name, "the lease guard fenced (nothing registered): {}", fence.line);
                }
            }
        }
        let guarded = self.guard.lost().is_none();
        publish.send_if_modified(|lease| {
            let changed = respawned || fenced || lease.guarded != guarded;
            if respawned || fenced {
                lease.lost();
            }
            lease.guarded = guarded;
            changed
        });
    }

    /// How long one renewal attempt may take (`halcyon_config::timing::renew_attempt`: two
    /// renewal intervals, far below the lease, so that an attempt stuck on a paused leader
    /// leaves room for several more before the lease's fencing moment). The leader's own
    /// quorum check is bounded the same way.
    fn renew_attempt(&self) -> std::time::Duration {
        halcyon_config::timing::renew_attempt(self.renewal_interval())
    }

    /// One renewal: granted here when this node leads, else asked of the leader on all its
    /// addresses at once.
    async fn renew(&self) -> Result<LeaseAnswer, String> {
        let answer = if self.is_isolated() {
            return Err("isolated".into());
        } else if self.consensus.is_leader() {
            self.grant_lease(self.name.as_str()).await
        } else if let Some(leader) = self.consensus.leader() {
            let answer = self.ask_leader_for_lease(leader).await?;
            serde_json::from_str::<LeaseAnswer>(&answer)
                .map_err(|e| format!("the leader's answer cannot be read: {e}"))?
        } else {
            return Err("no leader known".into());
        };
        if answer.granted {
            // The lease is the configuration's as the quorum confirmed it, or newer: not an
            // older, longer one this replica has not replaced yet (`holding_lease`).
            self.consensus.applied_at_least(answer.read_index).await;
            Ok(answer)
        } else {
            Err(answer.error.unwrap_or_default())
        }
    }

    /// A renewal asked of `leader`: on the Raft transport, and when it has no answer there
    /// within half an attempt (a connection stuck on a failed network, a busy coordinator)
    /// or none at all (a coordinator still starting, or of an earlier version), on the
    /// internal API too (every network at once), keeping the first answer of either; the
    /// answer's text (a [`LeaseResponse`]).
    async fn ask_leader_for_lease(&self, leader: NodeId) -> Result<String, String> {
        let body = serde_json::to_string(&LeaseRequest {
            node: self.name.to_string(),
        })
        .expect("a lease request is encodable");
        let raft_first = self
            .raft_renewals
            .lock()
            .expect(crate::POISONED)
            .raft_first(leader, self.platform.clock.now());
        let http = self.leader_request_race(
            "POST",
            "/v1/internal/lease",
            Some(&body),
            self.holding_lease(),
        );
        if !raft_first {
            return http.await.map(|r| r.body).ok_or_else(|| "no answer".into());
        }
        let raft = self
            .consensus
            .ask(leader, body.clone(), self.renew_attempt());
        let head_start = tokio::time::sleep(self.renew_attempt() / 2);
        tokio::pin!(raft, http, head_start);
        let (mut raft_open, mut http_started, mut http_open) = (true, false, true);
        let mut unanswered = false;
        loop {
            tokio::select! {
                answer = &mut raft, if raft_open => match answer {
                    Ok(answer) => {
                        self.raft_renewals.lock().expect(crate::POISONED).answered();
                        return Ok(answer);
                    }
                    Err(failed) => {
                        raft_open = false;
                        unanswered = failed == AskFailed::Unanswered;
                        http_started = true;
                    }
                },
                () = &mut head_start, if !http_started => http_started = true,
                response = &mut http, if http_started && http_open => match response {
                    Some(response) => {
                        self.http_answered(leader, unanswered);
                        return Ok(response.body);
                    }
                    None => http_open = false,
                },
                else => return Err("no answer".into()),
            }
        }
    }

    /// `leader` answered a renewal on its internal API, the one sent on the Raft transport
    /// left `unanswered` (else late): [`RaftRenewals`] keeps count, and the switch to the
    /// internal API only is logged.
    fn http_answered(&self, leader: NodeId, unanswered: bool) {
        let mut renewals = self.raft_renewals.lock().expect(crate::POISONED);
        if !unanswered || self.consensus.leader() != Some(leader) {
            renewals.answered();
        } else if renewals.answered_on_http_only(leader, self.platform.clock.now()) {
            tracing::info!(
                node = %self.name,
                leader,
                "the coordinator left {RAFT_RENEWALS_UNANSWERED_MAX} lease renewals in a row unanswered on the Raft transport and answered them on its internal API: renewals go there only for {RAFT_RENEWALS_RETRY_AFTER:?}"
            );
        } else {
            tracing::debug!(node = %self.name, leader, "a lease renewal left unanswered on the Raft transport was answered on the internal API");
        }
    }

    /// From now on, answers lease renewals that come on the Raft transport
    /// ([`Node::ask_leader_for_lease`]) with [`Node::answer_renewal`].
    pub(super) fn answer_renewals_on_raft(self: &Arc<Self>) {
        let node = Arc::downgrade(self);
        let answerer: halcyon_consensus::net::Answerer = Arc::new(move |from, body| {
            let node = node.clone();
            Box::pin(async move {
                let refused = |error: String| {
                    lease_response(LeaseAnswer {
                        granted: false,
                        error: Some(error),
                        read_index: 0,
                    })
                };
                let answer = match (node.upgrade(), serde_json::from_str::<LeaseRequest>(&body)) {
                    (Some(node), _) if node.raft_renewals_unanswered.load(Ordering::Relaxed) => {
                        return None;
                    }
                    (None, _) => refused("the coordinator is stopping".into()),
                    (Some(_), Err(e)) => refused(format!("not a lease request: {e}")),
                    (Some(node), Ok(request)) => {
                        match node.renewal_sender_is(from, &request.node) {
                            Ok(()) => {
                                node.answer_renewal(&request.node, RenewalTransport::Raft)
                                    .await
                            }
                            Err(why) => refused(why),
                        }
                    }
                };
                Some(serde_json::to_string(&answer).expect("a lease response is encodable"))
            })
        });
        let set = self.consensus.answer_with(answerer);
        assert!(
            set,
            "the Raft transport's answerer is set once, by the node"
        );
    }

    /// [`renewal_sender_is`] in the running configuration (the boot one before there is one).
    fn renewal_sender_is(&self, from: NodeId, node: &str) -> Result<(), String> {
        let state = self.snapshot();
        let config = state.config().unwrap_or(&self.boot_config);
        renewal_sender_is(&config.cluster, from, node)
    }

    /// A renewal of `node`'s lease that came on `transport`: [`Node::grant_lease`], counted.
    pub async fn answer_renewal(&self, node: &str, transport: RenewalTransport) -> LeaseResponse {
        let counter = match transport {
            RenewalTransport::Raft => &self.renewals_answered.raft,
            RenewalTransport::Http => &self.renewals_answered.http,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        lease_response(self.grant_lease(node).await)
    }

    /// Leader side of a renewal: quorum check, departed and stuck checks, then the grant is
    /// handed to the coordinator (which keeps the grant table) before it is answered.
    ///
    /// The grant is recorded as of the renewal's arrival, not of its confirmation: the
    /// holder asked for it (`t_send`) before it arrived, so its lease ends by then plus a
    /// lease (`lease::release_deadline`), and the confirmation's wait for the next
    /// heartbeats' answers (up to a Raft heartbeat and a round trip) adds nothing to a
    /// failed holder's release.
    pub async fn grant_lease(&self, node: &str) -> LeaseAnswer {
        let arrived = self.platform.clock.now();
        let refuse = |error: String| LeaseAnswer {
            granted: false,
            error: Some(error),
            read_index: 0,
        };
        if self.is_isolated() {
            return refuse("no quorum: this node is isolated".into());
        }
        if !self.consensus.is_leader() {
            return refuse(match self.leader_api() {
                Some((name, addrs)) => {
                    format!("not leader: forward to {name} at {}", join_addrs(&addrs))
                }
                None => "not leader: no leader known".into(),
            });
        }
        // A quorum confirms the leadership in a round sent after this renewal arrived:
        // openraft's next heartbeats, answered by a quorum (`Consensus::confirm_since_now`).
        let confirm =
            tokio::time::timeout(self.renew_attempt(), self.consensus.confirm_since_now()).await;
        let read_index = match confirm {
            Ok(Ok(read_index)) => read_index,
            Ok(Err(why)) => return refuse(format!("no quorum: {why}")),
            Err(_) => {
                return refuse("no quorum: the quorum did not confirm the leader in time".into());
            }
        };
        let state = self.snapshot();
        let Some(config) = state.config() else {
            return refuse("the cluster is not bootstrapped yet".into());
        };
        if config.node(node).is_none() {
            return refuse(format!("node \"{node}\" is not in the configuration"));
        }
        if state.departed().contains(node) {
            return refuse(format!(
                "node {node} is committed as down; it must join again first"
            ));
        }
        if let Some(stuck) = state.stuck().get(node) {
            return refuse(format!(
                "node {node}{EXCLUDED}{}; it joins again when its daemon restarts",
                stuck.why
            ));
        }
        let grant = (node.into(), arrived);
        if self.grants.try_send(grant).is_err() {
            // Unrecorded, a grant could be outlived by a release wait: refuse it.
            return refuse("the coordinator is not taking grants: not granted".into());
        }
        LeaseAnswer {
            granted: true,
            error: None,
            read_index,
        }
    }
}

/// Whether a renewal of `node`'s lease that came on the Raft transport from Raft node `from`
/// is that node's own: a node renews only its own lease. (The Raft server checks that its
/// client is a node of the cluster, not which: `from` is what the frame says.)
fn renewal_sender_is(
    cluster: &halcyon_config::Cluster,
    from: NodeId,
    node: &str,
) -> Result<(), String> {
    let sender = u32::try_from(from)
        .ok()
        .and_then(|number| cluster.node_numbered(number));
    match sender {
        Some(sender) if sender.name.as_str() == node => Ok(()),
        Some(sender) => Err(format!(
            "{} may not renew the lease of {node}: a node renews only its own",
            sender.name
        )),
        None => Err(format!(
            "Raft node {from} is not a node of the configuration"
        )),
    }
}

/// A grant's (or refusal's) answer as the internal API and the Raft transport send it.
fn lease_response(answer: LeaseAnswer) -> LeaseResponse {
    LeaseResponse {
        schema_version: halcyon_api::SCHEMA_VERSION,
        granted: answer.granted,
        error: answer.error,
        read_index: answer.read_index,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renewals go on the Raft transport first, except to the leader that left
    /// [`RAFT_RENEWALS_UNANSWERED_MAX`] in a row unanswered there and answered them on its
    /// internal API, until the retry time has passed; another leader is asked on the Raft
    /// transport at once.
    #[test]
    fn renewals_to_a_leader_that_answers_only_on_http_go_there_until_the_retry_time() {
        let t0 = Instant::now();
        let mut renewals = RaftRenewals::default();
        assert!(renewals.raft_first(1, t0));
        for _ in 1..RAFT_RENEWALS_UNANSWERED_MAX {
            assert!(!renewals.answered_on_http_only(1, t0));
            assert!(renewals.raft_first(1, t0), "not yet");
        }
        assert!(renewals.answered_on_http_only(1, t0));
        assert!(!renewals.raft_first(1, t0));
        let almost = t0 + RAFT_RENEWALS_RETRY_AFTER - Duration::from_millis(1);
        assert!(!renewals.raft_first(1, almost));
        assert!(renewals.raft_first(2, almost), "another leader");
        assert!(renewals.raft_first(1, t0 + RAFT_RENEWALS_RETRY_AFTER));
        // A clock read before the mark (another task's) keeps the internal API.
        assert!(!renewals.raft_first(1, t0 - Duration::from_millis(1)));
    }

    /// A renewal answered in between, or a run that began with another leader, starts the
    /// count again: one left unanswered now and then (a connection cut) never moves
    /// renewals off the Raft transport.
    #[test]
    fn renewals_left_unanswered_now_and_then_stay_on_the_raft_transport() {
        let t0 = Instant::now();
        let mut renewals = RaftRenewals::default();
        for round in 0..10 {
            for _ in 1..RAFT_RENEWALS_UNANSWERED_MAX {
                assert!(!renewals.answered_on_http_only(1, t0), "round {round}");
            }
            renewals.answered();
            assert!(renewals.raft_first(1, t0));
        }
        for _ in 1..RAFT_RENEWALS_UNANSWERED_MAX {
            assert!(!renewals.answered_on_http_only(2, t0));
        }
        assert!(
            !renewals.answered_on_http_only(1, t0),
            "another leader's run"
        );
        assert!(renewals.raft_first(1, t0) && renewals.raft_first(2, t0));
    }

    /// A renewal on the Raft transport is granted only to the node the frame comes from.
    #[test]
    fn a_node_renews_only_its_own_lease() {
        use halcyon_testkit::config::{ClusterConfig, Node};
        let config = ClusterConfig::new("leases", 1, 7000)
            .ip_network("lan", &["127.0.0.0/8"])
            .node(Node::new("n1", 1).interface_on("lan", [127, 0, 0, 1].into(), "lo"))
            .node(Node::new("n2", 2).interface_on("lan", [127, 0, 0, 2].into(), "lo"))
            .node(Node::new("n3", 3).interface_on("lan", [127, 0, 0, 3].into(), "lo"));
        let text = config.cluster_toml();
        let config = halcyon_config::load_texts(&[("cluster.toml", text.as_str())]).unwrap();
        let cluster = &config.cluster;
        assert_eq!(renewal_sender_is(cluster, 2, "n2"), Ok(()));
        assert_eq!(
            renewal_sender_is(cluster, 1, "n2"),
            Err("n1 may not renew the lease of n2: a node renews only its own".into())
        );
        assert_eq!(
            renewal_sender_is(cluster, 7, "n2"),
            Err("Raft node 7 is not a node of the configuration".into())
        );
        assert!(renewal_sender_is(cluster, u64::MAX, "n2").is_err());
    }
}
