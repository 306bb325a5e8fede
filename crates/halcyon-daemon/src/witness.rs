//! `halcyon witness`: a Raft voter that runs no packages (SPEC 6; Serviceguard's quorum server).
//!
//! The witness is configured in `[quorum.witness]` (name, number, address). It opens the
//! replicated log like a node (same state machine, so snapshots from the leader restore on it)
//! and votes, but runs no heartbeats, no coordinator, no executor and no packages. It serves a
//! small API at `address:port + 2` (over TLS with its certificate when it has credentials, as
//! a node's): `GET /v1/status` (its view: term, leader, voters, last
//! applied) and refusals for the node-to-node endpoints, so that a node never mistakes it for
//! a coordinator. Every request passes `auth::public` like a node's: a token (the read-only
//! one reads the status) or a node's signature (the nodes' status requests are signed).
//! Whose certificates its Raft accepts follows the replicated configuration once it holds
//! one (nodes `halcyon apply` adds or removes), like a node's. Added to a running cluster by
//! `halcyon apply`, it becomes a voter once the coordinator finds it answering here.
//!
//! Invariants:
//! - a new store (a first start, or the witness rebuilt under its number) answers no Raft
//!   request until the cluster said it does not count the witness as a voter holding its
//!   log, or took it out of the membership ([`admission`], as a node's);
//! - the witness never campaigns while a leader is known: elections are disabled on it, so
//!   the coordinator is always a node that can grant leases and run plans;
//! - rescue: when no leader has been known for [`RESCUE_AFTER`] (a surviving node cannot win
//!   because the witness holds log entries it lacks, which Raft's voting rule then requires),
//!   the witness campaigns once, and as soon as it leads and a node has caught up to its log
//!   it restarts its Raft instance with elections disabled again, so that the caught-up node
//!   wins the next election. While it leads nothing is granted: nodes' leases run out and
//!   their failover packages stop (safe, and bounded by the rescue).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::State as AxumState;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use halcyon_api::{ErrorBody, SCHEMA_VERSION, WitnessOwnStatus};
use halcyon_config::Config;
use halcyon_consensus::{Consensus, NodeId};
use halcyon_state::Replicated;
use tokio::sync::watch;
use tokio::time::{Instant, sleep};

use crate::node::admission::{Admission, Asker, ask_membership, ask_to_forget, decide_witness};
use crate::peers::raft_members;

/// How long without a known leader before the witness campaigns (several election timeouts).
pub const RESCUE_AFTER: Duration = Duration::from_secs(3);
/// How long the witness leads at most during a rescue before it restarts its Raft instance.
const RESCUE_LEAD_MAX: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(50);
/// How often a witness with a new store asks the nodes again, and how often at most it says
/// it still waits.
const ADMISSION_ASK_EVERY: Duration = Duration::from_millis(500);
const ADMISSION_LOG_EVERY: Duration = Duration::from_secs(10);

/// Settings of the witness process.
#[derive(Clone, Debug)]
pub struct WitnessSettings {
    pub config_paths: Vec<std::path::PathBuf>,
    pub state_dir: std::path::PathBuf,
    /// The witness's credentials (its certificate from `halcyon init`), as a node's
    /// (`Settings::pki_dir`): Raft runs over mutual TLS with them.
    pub pki_dir: Option<std::path::PathBuf>,
    /// Run without credentials (`Settings::insecure`).
    pub insecure: bool,
}

struct Witness {
    name: String,
    id: NodeId,
    config: Config,
    /// The last log index the witness's replica applied (published by the replica).
    applied: watch::Receiver<u64>,
    applied_tx: watch::Sender<u64>,
    /// The consensus in use (replaced when the rescue loop reopens it), for the API.
    consensus: watch::Sender<Option<Arc<Consensus>>>,
    /// While a new store is held by its [`admission`]: why it does not answer Raft
    /// requests yet (its status says so; `None` once admitted, or for a store that ran).
    held: watch::Sender<Option<String>>,
    /// Mutual TLS on the Raft port (with credentials).
    raft_tls: Option<Arc<crate::raft_tls::RaftTls>>,
    /// Who may call its API: a token (`read-only` reads its status) or a node's signature,
    /// as on a node (`auth::public`); insecure without credentials.
    auth: crate::auth::Auth,
    /// Its connections: the host's TCP (over TLS with credentials), or the simulator's.
    network: Arc<dyn crate::platform::Network>,
    /// Told of every entry its replica applies (the simulator checks them).
    observer: Option<crate::platform::ApplyObserver>,
    settings: WitnessSettings,
}

impl crate::auth::Gate for Witness {
    fn auth(&self) -> &crate::auth::Auth {
        &self.auth
    }

    fn now_ms(&self) -> i64 {
        jiff::Timestamp::now().as_millisecond()
    }

    fn is_node(&self, name: &str) -> bool {
        self.config.node(name).is_some()
    }
}

impl Witness {
    fn consensus(&self) -> Option<Arc<Consensus>> {
        self.consensus.borrow().clone()
    }

    fn node_name_of(&self, id: NodeId) -> String {
        crate::peers::name_of(&self.config, id)
    }

    fn status(&self) -> WitnessOwnStatus {
        let last_applied = *self.applied.borrow();
        let (term, leader, voters) = match self.consensus() {
            Some(c) => {
                let m = c.metrics().borrow().clone();
                (
                    m.current_term,
                    m.current_leader.map(|id| self.node_name_of(id)),
                    c.voters()
                        .iter()
                        .map(|id| self.node_name_of(*id))
                        .collect::<Vec<_>>(),
                )
            }
            None => (0, None, Vec::new()),
        };
        WitnessOwnStatus {
            schema_version: SCHEMA_VERSION,
            witness: self.name.to_string(),
            number: self.id,
            cluster: self.config.cluster.name.clone(),
            term,
            coordinator: leader,
            voters,
            last_applied,
            held: self.held.borrow().clone(),
        }
    }
}

/// Opens the witness's consensus; `held`: its RPC server answers nothing until the
/// admission lets it ([`admission`]).
async fn open(witness: &Witness, held: bool) -> anyhow::Result<Arc<Consensus>> {
    let members = raft_members(&witness.config);
    let addrs = members.get(&witness.id).cloned().unwrap_or_default();
    let applied = witness.applied_tx.clone();
    let tls = witness.raft_tls.clone();
    let observer = witness.observer.clone();
    let mut generation = None;
    let app = Replicated::new(Box::new(move |index, command, state| {
        applied.send_replace(index);
        if let (Some(observer), Some(command)) = (&observer, command) {
            observer(index, command, state);
        }
        // Whose certificates Raft accepts follows the running configuration (a node
        // `halcyon apply` added), as on the nodes, not the witness's files.
        if let (Some(tls), Some(config)) = (&tls, state.config())
            && generation != Some(state.generation())
        {
            generation = Some(state.generation());
            tls.set_nodes(crate::node::raft_member_names(config));
        }
    }));
    let db_path = witness.settings.state_dir.join("raft.redb");
    // The witness switches its elections itself (the rescue below): no pre-vote gate.
    let timings = halcyon_consensus::RaftTimings {
        pre_vote: false,
        held,
        ..crate::node::raft_timings(&witness.config.cluster)
    };
    let consensus = witness
        .network
        .open_consensus(
            witness.config.cluster.id,
            witness.id,
            addrs,
            &db_path,
            crate::platform::NodeApplication::from(app),
            timings,
            witness.raft_tls.clone(),
        )
        .await
        .context("opening consensus")?;
    consensus.raft().runtime_config().elect(false);
    Ok(Arc::new(consensus))
}

/// Runs the witness until SIGTERM or SIGINT.
pub async fn run(settings: WitnessSettings) -> anyhow::Result<()> {
    let running = start_on(settings, Arc::new(crate::platform::TcpNetwork), None).await?;
    let mut signals = crate::Signals::new()?;
    while let crate::Received::Reload = signals.next().await {
        reload(&running.witness, running.credentials_dir.as_deref());
    }
    running.stop().await;
    Ok(())
}

/// A witness started by [`start_on`].
pub struct Running {
    witness: Arc<Witness>,
    credentials_dir: Option<std::path::PathBuf>,
    stop: watch::Sender<bool>,
    rescue: tokio::task::JoinHandle<()>,
    /// Where its API listens.
    _api: crate::platform::Listening,
}

impl Running {
    /// Stops its rescue task and shuts its consensus down.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.rescue.await;
        shutdown(&self.witness).await;
        tracing::info!(witness = %self.witness.name, "witness stopped");
    }
}

/// Starts the witness on `network` (the host's TCP, over TLS when it has credentials; or the
/// simulator's): its consensus, its API and its rescue task; `observer` is told of every
/// entry its replica applies. Returns once its API listens.
pub async fn start_on(
    settings: WitnessSettings,
    network: Arc<dyn crate::platform::Network>,
    observer: Option<crate::platform::ApplyObserver>,
) -> anyhow::Result<Running> {
    let (config, _) = halcyon_config::load(&settings.config_paths)
        .map_err(|d| anyhow::anyhow!("configuration is not valid:\n{d}"))?;
    let Some(w) = config.cluster.quorum.witness.clone() else {
        bail!(
            "the configuration has no witness: add a [quorum.witness] table with name, number and address"
        );
    };
    std::fs::create_dir_all(&settings.state_dir)
        .with_context(|| format!("creating {}", settings.state_dir.display()))?;
    let api_addr = crate::peers::witness_api(&config.cluster, &w);
    let (applied_tx, applied) = watch::channel(0);
    let credentials = crate::node::credentials(
        &settings.config_paths,
        settings.pki_dir.as_deref(),
        settings.insecure,
        w.name.as_str(),
        &config,
    )?;
    let raft_tls = credentials
        .as_ref()
        .map(|(_, c)| {
            crate::raft_tls::RaftTls::new(c, crate::node::raft_member_names(&config)).map(Arc::new)
        })
        .transpose()
        .map_err(|e| anyhow::anyhow!("the witness's credentials for Raft's TLS: {e}"))?;
    let auth = match &credentials {
        Some((_, c)) => crate::auth::Auth::from_credentials(c)
            .map_err(|e| anyhow::anyhow!("the witness's credentials for its API: {e}"))?,
        None => crate::auth::Auth::insecure(),
    };
    let credentials_dir = credentials.map(|(dir, _)| dir);
    // With credentials its API is served over TLS (`platform::TlsNetwork`), as a node's.
    let network = match &raft_tls {
        Some(tls) => network
            .with_tls(Arc::clone(tls))
            .context("this platform's network has no TLS for the API")?,
        None => network,
    };
    let witness = Arc::new(Witness {
        auth,
        name: w.name.to_string(),
        id: NodeId::from(w.number),
        config,
        applied,
        applied_tx,
        consensus: watch::Sender::new(None),
        held: watch::Sender::new(None),
        raft_tls,
        network,
        observer,
        settings,
    });
    // A new store answers no Raft request before the witness knows whether the cluster
    // still counts it as a voter that holds part of the log ([`admission`]).
    let held = !witness.settings.state_dir.join("raft.redb").exists();
    if held {
        witness.held.send_replace(Some(
            "new store: asking the nodes whether the cluster counts this witness as a voter \
             holding part of its log"
                .to_owned(),
        ));
    }
    let consensus = open(&witness, held).await?;
    witness.consensus.send_replace(Some(consensus));
    let api = serve(Arc::clone(&witness), api_addr).await?;
    tracing::info!(witness = %witness.name, %api_addr, "witness started: votes, runs no packages");
    let (stop, stop_rx) = watch::channel(false);
    if held {
        tokio::spawn(admission(Arc::clone(&witness), stop_rx.clone()));
    }
    let rescue = tokio::spawn(rescue_loop(Arc::clone(&witness), stop_rx));
    Ok(Running {
        witness,
        credentials_dir,
        stop,
        rescue,
        _api: api,
    })
}

/// Loads the witness's credentials from `dir` again and puts them in use, all or nothing
/// (SIGHUP: a step of a CA rollover); a refusal is logged and changes nothing.
fn reload(witness: &Witness, dir: Option<&std::path::Path>) {
    let Some(dir) = dir else {
        tracing::warn!("SIGHUP: the witness runs --insecure, it has no credentials to reload");
        return;
    };
    let installed = halcyon_pki::load(dir, &witness.name)
        .map_err(|e| e.to_string())
        .and_then(|credentials| {
            if credentials.cluster_id != witness.config.cluster.id {
                return Err(format!(
                    "they are for cluster id {}, this cluster is id {}",
                    credentials.cluster_id, witness.config.cluster.id
                ));
            }
            let auth = witness.auth.prepare(&credentials)?;
            let tls = match &witness.raft_tls {
                Some(tls) => Some((tls, tls.prepare(&credentials)?)),
                None => None,
            };
            witness.auth.install(auth);
            if let Some((tls, configs)) = tls {
                tls.install(configs);
            }
            Ok(credentials.trusted_cas_der.len())
        });
    match installed {
        Ok(cas) => tracing::info!(
            witness = %witness.name,
            pki = %dir.display(),
            trusted_cas = cas,
            "credentials reloaded"
        ),
        Err(why) => tracing::error!(
            witness = %witness.name,
            pki = %dir.display(),
            "credentials reload refused, the previous credentials stay in use: {why}"
        ),
    }
}

/// Watches for a cluster without a leader (see the module's invariants).
async fn rescue_loop(witness: Arc<Witness>, mut stop: watch::Receiver<bool>) {
    let mut leaderless_since: Option<Instant> = None;
    let mut leading_since: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            _ = sleep(POLL) => {}
            _ = stop.changed() => return,
        }
        let Some(consensus) = witness.consensus() else {
            continue;
        };
        if !consensus.is_admitted() {
            // A new store, held until the admission decides: it knows no leader, and must
            // not campaign on a log it does not have.
            leaderless_since = None;
            continue;
        }
        let metrics = consensus.metrics().borrow().clone();
        let leader = metrics.current_leader;
        if leader == Some(witness.id) {
            let since = *leading_since.get_or_insert_with(Instant::now);
            let last = metrics.last_log_index.unwrap_or(0);
            let caught_up = metrics.replication.as_ref().is_some_and(|r| {
                r.iter().any(|(id, matched)| {
                    *id != witness.id && matched.is_some_and(|m| m.index >= last)
                })
            });
            if caught_up || since.elapsed() >= RESCUE_LEAD_MAX {
                tracing::warn!(
                    caught_up,
                    "witness leads after a rescue: restarting its Raft instance so a node can lead"
                );
                drop(consensus);
                shutdown(&witness).await;
                match open(&witness, false).await {
                    Ok(c) => {
                        witness.consensus.send_replace(Some(c));
                    }
                    Err(e) => {
                        tracing::error!("witness: reopening consensus failed: {e:#}");
                        return;
                    }
                }
                leading_since = None;
                leaderless_since = None;
            }
            continue;
        }
        leading_since = None;
        if leader.is_some() {
            if leaderless_since.take().is_some() {
                consensus.raft().runtime_config().elect(false);
            }
            continue;
        }
        let since = *leaderless_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= RESCUE_AFTER {
            tracing::warn!(
                "no coordinator for {:?}: the witness campaigns to hand its log over",
                since.elapsed()
            );
            consensus.raft().runtime_config().elect(true);
            leaderless_since = Some(Instant::now());
        }
    }
}

/// A witness with a new store (rebuilt after a disk failure, or its state directory
/// emptied) under the number the cluster knows: as a node's (`node::admission`), its Raft
/// server answers only once a leader (acknowledged by a quorum within the election timeout)
/// took it out of the membership (committed), or does not count it as a member
/// (`decide_witness`); then the coordinator adds it again as a learner that copies the log
/// from nothing before it votes (`join_added_witness`). A witness that forgot the log it
/// acknowledged and its vote, answering at once, could help elect a leader that lacks
/// committed entries, or vote twice in a term. First start: the nodes have formed nothing
/// (or only the initial membership, which no leader replicated to it): it answers; started
/// after they formed, it goes out of the voters and back in.
///
/// It holds no reference to the consensus while it asks (a stop shuts the consensus down
/// meanwhile, `shutdown`): it takes the one in use when it admits.
async fn admission(witness: Arc<Witness>, mut stop: watch::Receiver<bool>) {
    let nodes: Vec<(NodeId, Vec<std::net::SocketAddr>)> =
        crate::peers::internal_addrs(&witness.config)
            .into_iter()
            .collect();
    let mut logged: Option<Instant> = None;
    let mut rarely = |line: String| {
        if logged.is_none_or(|at| at.elapsed() >= ADMISSION_LOG_EVERY) {
            logged = Some(Instant::now());
            tracing::warn!(witness = %witness.name, "new store: Raft requests held: {line}");
        }
        witness
            .held
            .send_replace(Some(format!("new store: {line}")));
    };
    loop {
        let answers = ask_membership(&witness, nodes.clone()).await;
        match decide_witness(witness.id, &answers) {
            Admission::Form | Admission::Join => {
                tracing::info!(witness = %witness.name, "new store: the cluster does not count this witness as a voter holding its log; answering Raft requests");
                admit(&witness);
                return;
            }
            Admission::Forget(leader_id) => {
                let leader = witness.node_name_of(leader_id);
                let addrs = nodes
                    .iter()
                    .find(|(id, _)| *id == leader_id)
                    .map(|(_, addrs)| addrs.as_slice())
                    .unwrap_or_default();
                match ask_to_forget(witness.as_ref(), &witness.name, addrs).await {
                    Ok(()) => {
                        tracing::warn!(
                            witness = %witness.name,
                            %leader,
                            "new store, and the cluster counted this witness as a voter (its \
                             state directory was emptied, or it starts after the nodes formed \
                             the cluster): the coordinator took it out of the membership; it \
                             votes again once it has copied the log"
                        );
                        admit(&witness);
                        return;
                    }
                    Err(e) => rarely(format!(
                        "the cluster counts this witness as a voter with a log it no longer \
                         has, and {leader} did not take it out: {e}"
                    )),
                }
            }
            Admission::Wait(why) => rarely(why),
        }
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            () = sleep(ADMISSION_ASK_EVERY) => {}
        }
    }
}

/// Opens the held RPC server of the consensus in use.
fn admit(witness: &Witness) {
    if let Some(consensus) = witness.consensus() {
        consensus.admit();
    }
    witness.held.send_replace(None);
}

impl Asker for Witness {
    async fn ask(
        &self,
        addr: std::net::SocketAddr,
        method: &'static str,
        path: &'static str,
        body: Option<String>,
        limit: Duration,
    ) -> Result<crate::client::Response, String> {
        use crate::auth::Gate;
        let headers = self.auth.sign(
            method,
            path,
            body.as_deref().unwrap_or("").as_bytes(),
            None,
            self.now_ms(),
        );
        crate::client::request_with(
            self.network.as_ref(),
            addr,
            method,
            path,
            &headers,
            body.as_deref(),
            limit,
        )
        .await
    }
}

/// Takes the witness's consensus out and shuts it down, once no request holds it (bounded).
async fn shutdown(witness: &Witness) {
    let Some(mut c) = witness.consensus.send_replace(None) else {
        return;
    };
    for _ in 0..100 {
        match Arc::try_unwrap(c) {
            Ok(consensus) => {
                consensus.shutdown().await;
                return;
            }
            Err(shared) => c = shared,
        }
        sleep(Duration::from_millis(10)).await;
    }
    tracing::error!("witness: consensus still in use; not shut down cleanly");
}

fn error_body(error: String) -> ErrorBody {
    ErrorBody {
        schema_version: SCHEMA_VERSION,
        error,
        event: None,
    }
}

fn refuse(message: impl Into<String>) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(error_body(message.into())),
    )
        .into_response()
}

async fn serve(
    witness: Arc<Witness>,
    addr: std::net::SocketAddr,
) -> anyhow::Result<crate::platform::Listening> {
    let network = Arc::clone(&witness.network);
    let app = Router::new()
        .route(
            "/v1/status",
            get(|AxumState(w): AxumState<Arc<Witness>>| async move {
                axum::Json(w.status()).into_response()
            }),
        )
        .route(
            "/v1/internal/lease",
            post(|AxumState(w): AxumState<Arc<Witness>>| async move {
                refuse(format!(
                    "not leader: {} is the witness; it grants no leases",
                    w.name
                ))
            }),
        )
        .route(
            "/v1/internal/write",
            post(|AxumState(w): AxumState<Arc<Witness>>| async move {
                refuse(format!(
                    "not leader: {} is the witness; it coordinates nothing",
                    w.name
                ))
            }),
        )
        .fallback(|uri: Uri| async move {
            (
                StatusCode::NOT_FOUND,
                axum::Json(error_body(format!(
                    "no such API endpoint on the witness: {uri}"
                ))),
            )
                .into_response()
        })
        .with_state(Arc::clone(&witness))
        // Every request, unknown paths included, needs a token or a node's signature, as on
        // a node: its status (term, voters) is read with the read-only token.
        .layer(axum::middleware::from_fn_with_state(
            witness,
            crate::auth::public::<Witness>,
        ));
    // Over TLS with the witness's certificate when it has credentials, as a node's API.
    network
        .serve_api(app, vec![addr], None)
        .await
        .context("the witness's API")
}
