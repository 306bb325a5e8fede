//! The commands against a running cluster (`status`, `events`, `event`, `package`, `node`,
//! `cluster`, `explain`, `emulate --live`), the daemon and witness themselves, and the
//! demo. Each returns `Ok(())` or a [`Failure`]; `main.rs` decides the exit code.

mod apply;
mod client;
mod demo;
pub mod logging;
pub mod render;

use std::path::PathBuf;
use std::time::Duration;

use halcyon_api::{
    EmulateRequest, EmulateResponse, ExplainResponse, NodeRequest, PackageRequest, RaiseRequest,
};
use halcyon_daemon::Settings;

use super::Failure;
pub use crate::cli::{LiveCommand, SnapshotOp, Target};
use client::{get, post};

/// Runs a live command.
pub fn run(cmd: LiveCommand) -> Result<(), Failure> {
    // The guard runs without an async runtime (its loop allocates nothing and never returns).
    // Neither needs a runtime; the keeper must not start threads it would leave behind.
    match &cmd {
        LiveCommand::Demo {
            port,
            restart: Some(node),
            keep,
        } => {
            if *keep {
                return Err(Failure::Invalid(
                    "error: --keep is for starting a demo, not with --restart".into(),
                ));
            }
            return demo::request_restart(*port, node);
        }
        LiveCommand::DemoKeeper {
            port,
            directory,
            keep,
        } => return demo::keeper(*port, directory.clone(), *keep),
        _ => {}
    }
    if let LiveCommand::Guard { options } = &cmd {
        match halcyon_guard::GuardConfig::from_args(options.iter().cloned()) {
            Ok(config) => halcyon_guard::guard_main_stdio(config),
            Err(e) => return Err(Failure::Invalid(format!("error: halcyon guard: {e}"))),
        }
    }
    if matches!(
        cmd,
        LiveCommand::Daemon { .. } | LiveCommand::Witness { .. }
    ) {
        // Before the runtime starts, so a refused priority is reported.
        logging::init();
        return block_on_raised(run_async(cmd));
    }
    block_on(run_async(cmd))
}

/// Runs `future` on a new multi-threaded runtime.
fn block_on(future: impl Future<Output = Result<(), Failure>>) -> Result<(), Failure> {
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Failure::Failed(format!("error: cannot start the runtime: {e}")))?;
    runtime.block_on(future)
}

/// Runs a daemon's `future` on a runtime whose threads, this one included, run above the
/// machine's ordinary work (`halcyon_daemon::priority`).
fn block_on_raised(future: impl Future<Output = Result<(), Failure>>) -> Result<(), Failure> {
    halcyon_daemon::priority::raise_this_thread();
    let runtime = halcyon_daemon::priority::runtime()
        .map_err(|e| Failure::Failed(format!("error: cannot start the runtime: {e}")))?;
    runtime.block_on(future)
}

/// Names the Raft peers in the log's summaries after the nodes of the configuration at
/// `path` (the daemon reports a configuration it cannot read itself).
fn name_peers(path: &std::path::Path) {
    if let Ok((config, _)) = halcyon_config::load(&[path.to_path_buf()]) {
        let mut names: std::collections::BTreeMap<u64, String> = config
            .cluster
            .nodes
            .iter()
            .map(|n| (u64::from(n.number), n.name.to_string()))
            .collect();
        if let Some(w) = &config.cluster.quorum.witness {
            names.insert(u64::from(w.number), format!("witness {}", w.name));
        }
        logging::name_peers(names);
    }
}

async fn run_async(cmd: LiveCommand) -> Result<(), Failure> {
    match cmd {
        LiveCommand::Daemon {
            config,
            node,
            state_dir,
            pki,
            insecure,
            api_socket,
            test_faults,
        } => {
            logging::init();
            name_peers(&config);
            let state_dir =
                state_dir.unwrap_or_else(|| PathBuf::from("/var/lib/halcyon").join(&node));
            let notify = std::env::var_os("NOTIFY_SOCKET").is_some();
            let settings = Settings {
                config_paths: vec![config],
                node,
                state_dir,
                test_faults,
                pki_dir: pki,
                insecure,
                api_socket: Some(api_socket),
            };
            halcyon_daemon::run_then(settings, |node| {
                if notify {
                    tokio::spawn(notify_when_joined(node));
                }
            })
            .await
            .map_err(|e| Failure::Failed(format!("error: {e:#}")))
        }
        LiveCommand::Witness {
            config,
            state_dir,
            pki,
            insecure,
        } => {
            logging::init();
            name_peers(&config);
            let settings = halcyon_daemon::witness::WitnessSettings {
                config_paths: vec![config],
                state_dir: state_dir.unwrap_or_else(|| PathBuf::from("/var/lib/halcyon/witness")),
                pki_dir: pki,
                insecure,
            };
            halcyon_daemon::witness::run(settings)
                .await
                .map_err(|e| Failure::Failed(format!("error: {e:#}")))
        }
        LiveCommand::Apply {
            dir,
            yes,
            dry_run,
            target,
        } => {
            let target = apply_target(&dir, target);
            apply::apply(&apply::ApplyOptions { dir, yes, dry_run }, &target).await
        }
        LiveCommand::Availability {
            package,
            since,
            until,
            json,
            target,
        } => {
            let mut query = Vec::new();
            if let Some(s) = since {
                query.push(format!("since={}", url_escape(&s)));
            }
            if let Some(u) = until {
                query.push(format!("until={}", url_escape(&u)));
            }
            let path = format!(
                "/v1/availability/{}?{}",
                url_escape(&package),
                query.join("&")
            );
            let answer: halcyon_api::AvailabilityResponse = get(&target, &path).await?;
            if json {
                println!("{}", client::pretty(&answer));
            } else {
                print!(
                    "{}",
                    render::availability(&answer, &render::Clock::system())
                );
            }
            Ok(())
        }
        LiveCommand::Snapshot { op } => match op {
            SnapshotOp::Save { dir, force, target } => {
                apply::snapshot_save(&dir, force, &target).await
            }
            SnapshotOp::Diff { dir, target } => {
                apply::snapshot_diff(&dir, &apply_target(&dir, target)).await
            }
            SnapshotOp::Restore {
                dir,
                yes,
                dry_run,
                target,
            } => {
                let target = apply_target(&dir, target);
                apply::apply(&apply::ApplyOptions { dir, yes, dry_run }, &target).await
            }
        },
        LiveCommand::Status {
            target,
            json,
            verbose,
        } => {
            let status: halcyon_api::StatusResponse = get(&target, "/v1/status").await?;
            if json {
                println!("{}", client::pretty(&status));
                return Ok(());
            }
            // -v: the packages' definitions come from the configuration the cluster runs.
            let config = if verbose {
                let running: halcyon_api::ConfigResponse = get(&target, "/v1/config").await?;
                Some(running.config)
            } else {
                None
            };
            print!(
                "{}",
                render::status(&status, &render::Clock::system(), config.as_ref())
            );
            Ok(())
        }
        LiveCommand::Package {
            op,
            package,
            node,
            target,
        } => {
            let body = node.map(|node| client::body(&PackageRequest { node: Some(node) }));
            operation(&target, &format!("/v1/packages/{package}/{op}"), body).await
        }
        LiveCommand::Node {
            op,
            node,
            takeover,
            force,
            action,
            target,
        } => {
            if action.is_some() && op != "fence" {
                return Err(Failure::Invalid(format!(
                    "error: --action is for node fence, not node {op}"
                )));
            }
            if op == "fence" {
                if takeover || force {
                    return Err(Failure::Invalid(
                        "error: --takeover and --force are for node halt, not node fence".into(),
                    ));
                }
                let body = client::body(&NodeRequest { how: None, action });
                return operation(&target, &format!("/v1/nodes/{node}/fence"), Some(body)).await;
            }
            let how = match (takeover, force) {
                (true, true) => {
                    return Err(Failure::Invalid(
                        "error: --takeover and --force exclude each other".into(),
                    ));
                }
                (true, false) => Some("takeover"),
                (false, true) => Some("force"),
                _ => None,
            };
            let body = how.map(|h| {
                client::body(&NodeRequest {
                    how: Some(h.to_owned()),
                    action: None,
                })
            });
            operation(&target, &format!("/v1/nodes/{node}/{op}"), body).await
        }
        LiveCommand::Cluster { op, target } => {
            if !["start", "halt"].contains(&op.as_str()) {
                return Err(Failure::Invalid(format!(
                    "error: unknown cluster operation \"{op}\"; expected start or halt"
                )));
            }
            operation(&target, &format!("/v1/cluster/{op}"), None).await
        }
        LiveCommand::Events {
            since,
            package,
            node,
            follow,
            json,
            verbose,
            target,
        } => {
            let mut query = Vec::new();
            for (key, value) in [("since", &since), ("package", &package), ("node", &node)] {
                if let Some(v) = value {
                    query.push(format!("{key}={}", url_escape(v)));
                }
            }
            let output = Output { json, verbose };
            show_events(&target, query, follow, output).await
        }
        LiveCommand::Event {
            op,
            arg,
            node,
            values,
            target,
        } => event(&target, &op, arg, node, values).await,
        LiveCommand::Guard { .. } => unreachable!("handled in run"),
        LiveCommand::Demo { port, keep, .. } => {
            demo::run_demo(demo::DemoOptions { port, keep }).await
        }
        LiveCommand::DemoKeeper { .. } => unreachable!("handled in run"),
        LiveCommand::DemoHttp { bind, name } => demo::serve_http(bind, name).await,
    }
}

/// How long a daemon started by systemd (`Type=notify`) waits to join before it reports
/// ready anyway ("gave up joining": it keeps trying, e.g. the first node of a new cluster
/// waiting for a quorum). Below the unit's `TimeoutStartSec=` (120 s), so systemd does not
/// kill a node that simply waits for its peers.
const JOIN_WAIT: Duration = Duration::from_secs(90);
/// How often the daemon looks whether it has joined.
const JOIN_POLL: Duration = Duration::from_millis(250);

/// systemd's readiness (`READY=1`, sd_notify) for `halcyon.service`: sent once this node is
/// a member of the cluster, as its own status says, or after [`JOIN_WAIT`] with a status
/// line saying it has not joined. Only when systemd asked for it (`NOTIFY_SOCKET`).
async fn notify_when_joined(node: std::sync::Arc<halcyon_daemon::Node>) {
    use sd_notify::NotifyState;
    let started = tokio::time::Instant::now();
    let name = node.name.to_string();
    let status = loop {
        let joined = halcyon_daemon::views::status(&node)
            .nodes
            .iter()
            .any(|n| n.name.as_str() == name && n.member);
        if joined {
            break format!("{name} joined the cluster");
        }
        if started.elapsed() >= JOIN_WAIT {
            break format!(
                "{name} has not joined within {} s (no quorum yet?); still trying",
                JOIN_WAIT.as_secs()
            );
        }
        tokio::time::sleep(JOIN_POLL).await;
    };
    if let Err(e) = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(&status)]) {
        tracing::warn!("cannot tell systemd the daemon is ready: {e}");
    } else {
        tracing::info!("told systemd: ready ({status})");
    }
}

/// `halcyon event resume|retry|skip [ID]` and `halcyon event raise NAME --node NODE`.
async fn event(
    target: &Target,
    op: &str,
    arg: Option<String>,
    node: Option<String>,
    values: Vec<String>,
) -> Result<(), Failure> {
    match op {
        "resume" | "retry" | "skip" => {
            if node.is_some() || !values.is_empty() {
                return Err(Failure::Invalid(
                    "error: --node and --value are for `halcyon event raise`".into(),
                ));
            }
            let id = arg.unwrap_or_else(|| "current".to_owned());
            operation(target, &format!("/v1/events/{id}/{op}"), None).await
        }
        "raise" => {
            let (Some(name), Some(node)) = (arg, node) else {
                return Err(Failure::Invalid(
                    "error: expected `halcyon event raise NAME --node NODE [--value V ...]`".into(),
                ));
            };
            let body = client::body(&RaiseRequest { name, node, values });
            operation(target, "/v1/events/raise", Some(body)).await
        }
        other => Err(Failure::Invalid(format!(
            "error: unknown event operation \"{other}\"; expected resume, retry, skip or raise"
        ))),
    }
}

/// The cluster an `apply` of `dir` goes to: the one named, else the nodes of `dir` itself
/// (apply cannot change them).
fn apply_target(dir: &std::path::Path, target: Target) -> Target {
    match (&target.api, &target.config) {
        (None, None) => Target {
            config: Some(dir.to_path_buf()),
            ..target
        },
        _ => target,
    }
}

/// Posts an operation and prints its answer. A refusal's reason is the text the coordinator
/// wrote, with RFC 3339 times (`failed here at ...; excluded until ...`): it is printed with
/// them as local time, as `halcyon events` prints the same reason in the event's record.
async fn operation(target: &Target, path: &str, body: Option<String>) -> Result<(), Failure> {
    let clock = render::Clock::system();
    let response = post(target, path, body)
        .await
        .map_err(|failure| match failure {
            Failure::Failed(line) => Failure::Failed(clock.times_in(&line)),
            Failure::Invalid(line) => Failure::Invalid(clock.times_in(&line)),
        })?;
    print!("{}", render::operation(&response, &clock));
    Ok(())
}

/// `halcyon explain PKG [--json]` against the live cluster: prints the coordinator's
/// explanation, as text or as the same JSON `--offline --json` prints.
pub fn explain(target: &Target, package: &str, json: bool) -> Result<(), Failure> {
    block_on(async {
        let answer: ExplainResponse = get(target, &format!("/v1/explain/{package}")).await?;
        if json {
            println!("{}", client::pretty(&answer.explanation));
        } else {
            // Rendered here rather than the daemon's `text`: times in the reader's zone.
            let clock = render::Clock::system();
            print!("{}", answer.explanation.render(&|t| clock.time(t)));
        }
        Ok(())
    })
}

/// `halcyon emulate --live EVENT ...`: what the event would do now on the running cluster
/// (the plan and the recovery program per node with its barriers). Changes nothing.
pub fn emulate(target: &Target, event: &halcyon_policy::Event, json: bool) -> Result<(), Failure> {
    block_on(async {
        let body = client::body(&EmulateRequest {
            event: event.clone(),
        });
        let answer: EmulateResponse = client::post_as(target, "/v1/emulate", Some(body)).await?;
        if json {
            println!("{}", client::pretty(&answer.emulation));
        } else {
            let clock = render::Clock::system();
            print!("{}", answer.emulation.render_with(&|t| clock.time(t)));
        }
        Ok(())
    })
}

/// Percent-escapes a query value.
fn url_escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// How long `halcyon events --follow` waits for a message or a heartbeat comment (the
/// daemon sends one every 5 s) before it takes the connection for dead.
const FOLLOW_IDLE: Duration = Duration::from_secs(12);
/// Pause before `halcyon events --follow` connects again after losing its stream.
const FOLLOW_RECONNECT: Duration = Duration::from_millis(500);

/// `halcyon events`: prints the finished events (and, without `--follow`, the one running),
/// then with `--follow` each event as it finishes, from the event stream.
/// How `halcyon events` prints records.
#[derive(Clone, Copy, Debug)]
struct Output {
    json: bool,
    /// Also the built-in commands that had nothing to do on their node.
    verbose: bool,
}

async fn show_events(
    target: &Target,
    query: Vec<String>,
    follow: bool,
    output: Output,
) -> Result<(), Failure> {
    if follow {
        return follow_events(target, query, output).await;
    }
    let path = if query.is_empty() {
        "/v1/events".to_owned()
    } else {
        format!("/v1/events?{}", query.join("&"))
    };
    let answer: halcyon_api::EventsResponse = get(target, &path).await?;
    for record in &answer.events {
        print_record(record, output);
    }
    Ok(())
}

fn print_record(record: &halcyon_api::EventRecord, output: Output) {
    if output.json {
        println!("{}", client::compact(record));
    } else {
        print!(
            "{}",
            render::event(record, output.verbose, &render::Clock::system())
        );
    }
}

/// `halcyon events --follow`: reads `GET /v1/events/stream` and prints each record once it
/// is finished; when the stream ends (its node died, the client was too slow), connects again
/// to the target's nodes in turn with `Last-Event-ID`, so no event is missed or printed twice.
async fn follow_events(target: &Target, query: Vec<String>, output: Output) -> Result<(), Failure> {
    let path = if query.is_empty() {
        "/v1/events/stream".to_owned()
    } else {
        format!("/v1/events/stream?{}", query.join("&"))
    };
    let mut printed: Option<u64> = None;
    let mut said = false;
    let token = client::token(target)?;
    // Found when a node's TCP API is needed (the local socket needs no CA).
    let mut transport: Option<client::Transport> = None;
    loop {
        let mut errors = Vec::new();
        for endpoint in client::endpoints(target)? {
            let opened = match &endpoint {
                client::Endpoint::Local(socket) => {
                    halcyon_daemon::client::event_stream_local(socket, &path, printed, FOLLOW_IDLE)
                        .await
                }
                client::Endpoint::Network(addr) => {
                    if transport.is_none() {
                        transport = Some(client::transport(target)?);
                    }
                    let transport = transport.as_ref().expect("found above");
                    let tls = match transport {
                        client::Transport::Https { tls, .. } => {
                            Some((tls, transport.server_name(*addr)))
                        }
                        client::Transport::Plain => None,
                    };
                    let opened = halcyon_daemon::client::event_stream(
                        *addr,
                        tls,
                        &path,
                        token.as_deref(),
                        printed,
                        FOLLOW_IDLE,
                    )
                    .await;
                    match transport {
                        client::Transport::Https { ca, .. } => {
                            opened.map_err(|e| client::tls_hint(e, ca))
                        }
                        client::Transport::Plain => opened.map_err(client::plain_hint),
                    }
                }
            };
            let mut stream = match opened {
                Ok(s) => s,
                Err(e) => {
                    // A refusal of the request itself (unknown package, bad filter) is final.
                    if e.contains("HTTP 400") || e.contains("HTTP 404") {
                        return Err(Failure::Invalid(format!("error: {e}")));
                    }
                    errors.push(e);
                    continue;
                }
            };
            said = false;
            let why = loop {
                let message = match stream.next().await {
                    Ok(Some(m)) => m,
                    Ok(None) => break format!("{endpoint}: the stream ended"),
                    Err(e) => break e,
                };
                match message.event.as_str() {
                    halcyon_api::STREAM_RECORD => {
                        let record: halcyon_api::EventRecord = serde_json::from_str(&message.data)
                            .map_err(|e| {
                                Failure::Failed(format!(
                                    "error: unexpected record from the API: {e}"
                                ))
                            })?;
                        let finished = record.outcome != halcyon_state::Outcome::Running;
                        if finished && printed.is_none_or(|p| record.id > p) {
                            print_record(&record, output);
                            printed = Some(record.id);
                        }
                    }
                    halcyon_api::STREAM_STATUS => {
                        let version = serde_json::from_str::<serde_json::Value>(&message.data)
                            .ok()
                            .and_then(|v| v.get("schema_version")?.as_u64());
                        if version != Some(u64::from(halcyon_api::SCHEMA_VERSION)) {
                            return Err(Failure::Failed(format!(
                                "error: the API answered schema version {}; this halcyon reads version {}",
                                version.map_or("(none)".to_owned(), |v| v.to_string()),
                                halcyon_api::SCHEMA_VERSION
                            )));
                        }
                    }
                    halcyon_api::STREAM_LOST | halcyon_api::STREAM_DROPPED => {
                        let notice: Option<halcyon_api::StreamNotice> =
                            serde_json::from_str(&message.data).ok();
                        eprintln!("{}", notice.map_or(message.data.clone(), |n| n.message));
                    }
                    _ => {}
                }
            };
            eprintln!("{why}; connecting again");
        }
        if !errors.is_empty() && !said {
            eprintln!("no node answered: {}; trying again", errors.join("; "));
            said = true;
        }
        tokio::time::sleep(FOLLOW_RECONNECT).await;
    }
}
