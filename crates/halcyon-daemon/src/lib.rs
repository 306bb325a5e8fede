//! The Halcyon daemon and the live-cluster CLI.
//!
//! `halcyon daemon --config DIR --node NAME` runs one node: the heartbeat runner
//! (halcyon-membership), openraft (halcyon-consensus) carrying the replicated state
//! (halcyon-state), the coordinator (on the Raft leader: membership -> events -> plans by
//! halcyon-policy -> step barriers), the executor (on every node: runs its actions with
//! halcyon-resources), leases (see `lease`), and the HTTP API (`api`).
//!
//! Invariants:
//! - this is the only crate that spawns tasks;
//! - a failover package runs or starts on a node only while that node holds a lease; the
//!   coordinator starts a failed node's packages elsewhere only after `AwaitRelease` has waited
//!   out that node's lease (module `lease` has the timing argument);
//! - a node without a leader confirmed by a quorum commits nothing and starts nothing;
//! - every network call and external command is bounded in time.

pub mod api;
pub mod client;
pub mod coordinator;
mod demo;
pub mod executor;
pub mod faults;
pub mod guard;
pub mod lease;
pub mod node;
pub mod platform;
pub mod watchdog;
pub mod witness;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use serde_json::Value;

pub use node::{Node, Settings};

/// Live-cluster commands: the daemon, status and operations against a running cluster.
#[derive(Debug, Subcommand)]
pub enum LiveCommand {
    /// Run this node's daemon (Serviceguard: cmcld started by cmrunnode; HACMP: clstrmgr).
    Daemon {
        /// Configuration directory or files (used to bootstrap a new cluster).
        #[arg(long, default_value = "/etc/halcyon")]
        config: PathBuf,
        /// This node's name in the configuration.
        #[arg(long)]
        node: String,
        /// Where the node keeps its Raft database (default /var/lib/halcyon/NODE).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Enable test-only fault injection endpoints.
        #[arg(long, hide = true)]
        test_faults: bool,
    },
    /// Run the quorum witness: a Raft voter that runs no packages, for two-node clusters and
    /// even splits (Serviceguard: the quorum server, qs). Configured in `[quorum.witness]`.
    Witness {
        /// Configuration directory or files (the same as the nodes').
        #[arg(long, default_value = "/etc/halcyon")]
        config: PathBuf,
        /// Where the witness keeps its Raft database (default /var/lib/halcyon/witness).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Enable test-only fault injection endpoints.
        #[arg(long, hide = true)]
        test_faults: bool,
    },
    /// Show the cluster: coordinator, quorum, nodes, packages, last events (cmviewcl, clstat).
    Status {
        #[command(flatten)]
        target: Target,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Operate a package: run (cmrunpkg), halt (cmhaltpkg), move (cmhaltpkg + cmrunpkg -n;
    /// clRGmove), enable/disable switching (cmmodpkg -e / -d).
    Package {
        /// run, halt, move, enable or disable.
        op: String,
        package: String,
        /// Target node (run, move, enable, disable).
        #[arg(long, short = 'n')]
        node: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Start or halt a node in the cluster (cmrunnode / cmhaltnode [-f]; HACMP clstart / clstop).
    Node {
        /// start or halt.
        op: String,
        node: String,
        /// For halt: packages move to other nodes (cmhaltnode -f with takeover).
        #[arg(long)]
        takeover: bool,
        /// For halt: treat as a failure, halt at once.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Start or halt the whole cluster: `start` lets every node join and starts the `auto_run`
    /// packages (cmruncl; HACMP clstart on all nodes); `halt` halts every package and leaves the
    /// daemons running idle (cmhaltcl; HACMP clstop on all nodes).
    Cluster {
        /// start or halt.
        op: String,
        #[command(flatten)]
        target: Target,
    },
    /// The event log: every event with its plan, each command's node, start, end, status and
    /// output, and the ERROR entries and answers (HACMP: hacmp.out / cluster.log; Serviceguard:
    /// syslog's cmcld lines).
    Events {
        /// Only events since this time (RFC 3339) or this long ago (`10m`, `2h`).
        #[arg(long)]
        since: Option<String>,
        /// Only events concerning this package.
        #[arg(long)]
        package: Option<String>,
        /// Only events concerning this node (event node, actions or commands).
        #[arg(long)]
        node: Option<String>,
        /// Keep printing events as they finish (until interrupted).
        #[arg(long, short = 'f')]
        follow: bool,
        /// Machine-readable output (one JSON record per line).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Answer an event stopped in ERROR: `resume` (continue after the barrier), `retry` (run
    /// the failed commands again) or `skip` (abandon the rest of its program) [ID, default
    /// the current event]; or `raise NAME --node NODE [--value V ...]` a user-defined event
    /// (HACMP: clruncmd / "recover from script failure").
    Event {
        /// resume, retry, skip or raise.
        op: String,
        /// The event id (resume, retry, skip) or the user-defined event's name (raise).
        arg: Option<String>,
        /// raise: the event node.
        #[arg(long, short = 'n')]
        node: Option<String>,
        /// raise: the sampled values (X@0, X@1, ...) the commands get.
        #[arg(long = "value")]
        values: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Start a 3-node demo cluster on 127.0.0.1-3 with an example package; no root needed.
    Demo {
        /// Base port of the demo cluster.
        #[arg(long, default_value_t = 17400)]
        port: u16,
    },
    /// The lease guard process the daemon spawns (halcyon-guard): options `--lead-ms N
    /// --tick-ms N --rt-priority N|off --mlock|--no-mlock`; the protocol on stdin/stdout.
    #[command(hide = true)]
    Guard {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        options: Vec<String>,
    },
    /// The demo's tiny HTTP service: answers every request with its node's name.
    #[command(hide = true)]
    DemoHttp {
        #[arg(long)]
        bind: SocketAddr,
        #[arg(long)]
        name: String,
    },
}

/// How the CLI finds a running cluster's API.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// API address of any node (host:port).
    #[arg(long)]
    pub api: Option<SocketAddr>,
    /// Configuration directory: the API addresses of its nodes are tried in turn.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Runs a live command; the exit code is decided here: 0 success, 1 refused or failed,
/// 2 no cluster reachable or bad usage.
pub fn run_live(cmd: LiveCommand) -> ExitCode {
    // The guard runs without an async runtime (its loop allocates nothing and never returns).
    if let LiveCommand::Guard { options } = &cmd {
        match halcyon_guard::GuardConfig::from_args(options.iter().cloned()) {
            Ok(config) => halcyon_guard::guard_main_stdio(config),
            Err(e) => {
                eprintln!("error: halcyon guard: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(run_async(cmd))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run_async(cmd: LiveCommand) -> ExitCode {
    match cmd {
        LiveCommand::Daemon {
            config,
            node,
            state_dir,
            test_faults,
        } => {
            init_logging();
            let state_dir =
                state_dir.unwrap_or_else(|| PathBuf::from("/var/lib/halcyon").join(&node));
            let settings = Settings {
                config_paths: vec![config],
                node,
                state_dir,
                test_faults,
            };
            match run(settings).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        LiveCommand::Witness {
            config,
            state_dir,
            test_faults,
        } => {
            init_logging();
            let settings = witness::WitnessSettings {
                config_paths: vec![config],
                state_dir: state_dir.unwrap_or_else(|| PathBuf::from("/var/lib/halcyon/witness")),
                test_faults,
            };
            match witness::run(settings).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        LiveCommand::Status { target, json } => {
            let value = match get(&target, "/v1/status").await {
                Ok(v) => v,
                Err(code) => return code,
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                );
            } else {
                print!("{}", render_status(&value));
            }
            ExitCode::SUCCESS
        }
        LiveCommand::Package {
            op,
            package,
            node,
            target,
        } => {
            let body = node.map(|n| serde_json::json!({ "node": n }).to_string());
            post(&target, &format!("/v1/packages/{package}/{op}"), body).await
        }
        LiveCommand::Node {
            op,
            node,
            takeover,
            force,
            target,
        } => {
            let how = match (takeover, force) {
                (true, true) => {
                    eprintln!("error: --takeover and --force exclude each other");
                    return ExitCode::from(2);
                }
                (true, false) => Some("takeover"),
                (false, true) => Some("force"),
                _ => None,
            };
            let body = how.map(|h| serde_json::json!({ "how": h }).to_string());
            post(&target, &format!("/v1/nodes/{node}/{op}"), body).await
        }
        LiveCommand::Cluster { op, target } => {
            if !["start", "halt"].contains(&op.as_str()) {
                eprintln!("error: unknown cluster operation \"{op}\"; expected start or halt");
                return ExitCode::from(2);
            }
            post(&target, &format!("/v1/cluster/{op}"), None).await
        }
        LiveCommand::Events {
            since,
            package,
            node,
            follow,
            json,
            target,
        } => {
            let mut query = Vec::new();
            for (key, value) in [("since", &since), ("package", &package), ("node", &node)] {
                if let Some(v) = value {
                    query.push(format!("{key}={}", url_escape(v)));
                }
            }
            show_events(&target, query, follow, json).await
        }
        LiveCommand::Event {
            op,
            arg,
            node,
            values,
            target,
        } => match op.as_str() {
            "resume" | "retry" | "skip" => {
                if node.is_some() || !values.is_empty() {
                    eprintln!("error: --node and --value are for `halcyon event raise`");
                    return ExitCode::from(2);
                }
                let id = arg.unwrap_or_else(|| "current".to_owned());
                post(&target, &format!("/v1/events/{id}/{op}"), None).await
            }
            "raise" => {
                let (Some(name), Some(node)) = (arg, node) else {
                    eprintln!(
                        "error: expected `halcyon event raise NAME --node NODE [--value V ...]`"
                    );
                    return ExitCode::from(2);
                };
                let body = serde_json::json!({ "name": name, "node": node, "values": values });
                post(&target, "/v1/events/raise", Some(body.to_string())).await
            }
            other => {
                eprintln!(
                    "error: unknown event operation \"{other}\"; expected resume, retry, skip or raise"
                );
                ExitCode::from(2)
            }
        },
        LiveCommand::Guard { .. } => ExitCode::from(2), // handled in run_live
        LiveCommand::Demo { port } => demo::run_demo(port).await,
        LiveCommand::DemoHttp { bind, name } => demo::serve_http(bind, name).await,
    }
}

/// `halcyon explain PKG` against the live cluster (the binary's `explain` can call this when
/// given `--api`/`--config` of a running cluster): prints the coordinator's explanation.
pub fn explain_live(target: &Target, package: &str) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async {
        match get(target, &format!("/v1/explain/{package}")).await {
            Ok(v) => {
                print!("{}", v["text"].as_str().unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        }
    })
}

/// `halcyon emulate --live EVENT ...`: what the event would do now on the running cluster
/// (the plan and the recovery program per node with its barriers). Changes nothing.
pub fn emulate_live(target: &Target, event: &halcyon_policy::Event, json: bool) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async {
        let body = serde_json::json!({ "event": event }).to_string();
        match call(target, "POST", "/v1/emulate", Some(body)).await {
            Ok((200, v)) => {
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&v["emulation"]).unwrap_or_default()
                    );
                } else {
                    print!("{}", v["text"].as_str().unwrap_or_default());
                }
                ExitCode::SUCCESS
            }
            Ok((_, v)) => {
                eprintln!("error: {}", v["error"].as_str().unwrap_or(&v.to_string()));
                ExitCode::from(1)
            }
            Err(code) => code,
        }
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

/// How often `halcyon events --follow` asks again.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// `halcyon events`: prints the finished events (and, without `--follow`, the one running),
/// then with `--follow` each event as it finishes.
async fn show_events(target: &Target, query: Vec<String>, follow: bool, json: bool) -> ExitCode {
    let mut after: Option<u64> = None;
    loop {
        let mut q = query.clone();
        if let Some(a) = after {
            q.push(format!("after={a}"));
        }
        let path = if q.is_empty() {
            "/v1/events".to_owned()
        } else {
            format!("/v1/events?{}", q.join("&"))
        };
        let value = match get(target, &path).await {
            Ok(v) => v,
            Err(code) => return code,
        };
        for record in value["events"].as_array().into_iter().flatten() {
            let running = record["outcome"].as_str() == Some("running");
            if running && follow {
                break; // printed once it finishes
            }
            if json {
                println!("{record}");
            } else {
                print!("{}", render_event(record));
            }
            if !running {
                after = record["id"].as_u64().or(after);
            }
        }
        if !follow {
            return ExitCode::SUCCESS;
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

/// One event-log record for people.
pub fn render_event(r: &Value) -> String {
    use std::fmt::Write as _;
    let s = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_else(|| "-".into());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "#{} {}  [{}]  by {}  queued {}  started {}  finished {}",
        r["id"],
        s(&r["event"]),
        s(&r["outcome"]).to_uppercase(),
        s(&r["by"]),
        s(&r["queued_at"]),
        s(&r["started_at"]),
        s(&r["finished_at"]),
    );
    if let Some(e) = r["error"].as_str() {
        let _ = writeln!(out, "  error: {e}");
    }
    if let Some(plan) = r["plan"].as_str() {
        for line in plan.lines() {
            let _ = writeln!(out, "  | {line}");
        }
    }
    let launches = r["launches"].as_array().cloned().unwrap_or_default();
    if !launches.is_empty() {
        let _ = writeln!(out, "  commands:");
    }
    for l in &launches {
        let segment = match (l["kind"]["kind"].as_str(), l["kind"]["segment"].as_u64()) {
            (Some("notify"), _) => format!("notify {}", s(&l["kind"]["phase"])),
            (Some("recovery"), Some(seg)) => format!("segment {} recovery", seg + 1),
            (_, Some(seg)) => format!("segment {}", seg + 1),
            _ => "-".into(),
        };
        let status = match (&l["abandoned"], &l["status"]) {
            (Value::String(why), _) => format!("ABANDONED ({why})"),
            (_, Value::Number(n)) => format!("status {n}"),
            _ => "running".into(),
        };
        let _ = writeln!(
            out,
            "    {:<10} {:<16} {}  start {}  end {}  {}",
            l["node"].as_str().unwrap_or("coordinator"),
            segment,
            s(&l["command"]),
            s(&l["started_at"]),
            s(&l["finished_at"]),
            status,
        );
        for line in l["output"].as_str().unwrap_or_default().lines() {
            let _ = writeln!(out, "        > {line}");
        }
    }
    for a in r["actions"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  action: {} {} on {}: {}{}",
            s(&a["kind"]),
            a["package"].as_str().unwrap_or(""),
            s(&a["node"]),
            if a["ok"].as_bool() == Some(true) {
                "ok"
            } else {
                "FAILED"
            },
            a["detail"]
                .as_str()
                .filter(|d| !d.is_empty())
                .map(|d| format!(" ({d})"))
                .unwrap_or_default(),
        );
    }
    for n in r["notes"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "  note {}: {}", s(&n["at"]), s(&n["text"]));
    }
    out
}

/// Runs a daemon until SIGTERM or SIGINT, then halts its packages.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let node = Node::start(settings).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!(node = %node.name, "stopping: halting local packages");
    node.stop_all().await;
    node.guard.shutdown();
    node.close_watchdog();
    Ok(())
}

/// The API addresses to try for a target.
fn candidates(target: &Target) -> Result<Vec<SocketAddr>, String> {
    if let Some(a) = target.api {
        return Ok(vec![a]);
    }
    if let Some(dir) = &target.config {
        let (config, _) =
            halcyon_config::load(std::slice::from_ref(dir)).map_err(|d| d.to_string())?;
        return Ok(node::api_addrs(&config).into_values().flatten().collect());
    }
    let file = demo::demo_file();
    let text = std::fs::read_to_string(&file).map_err(|_| {
        format!(
            "no cluster given: use --api ADDR or --config DIR (no demo cluster found at {})",
            file.display()
        )
    })?;
    let addrs: Vec<SocketAddr> = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["api"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a.as_str()?.parse().ok())
        .collect();
    Ok(addrs)
}

const CLI_TIMEOUT: Duration = Duration::from_secs(40);

async fn call(
    target: &Target,
    method: &str,
    path: &str,
    body: Option<String>,
) -> Result<(u16, Value), ExitCode> {
    let addrs = candidates(target).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })?;
    let mut errors = Vec::new();
    for addr in addrs {
        match client::request(addr, method, path, body.as_deref(), CLI_TIMEOUT).await {
            Ok(r) => {
                let value = r.json().unwrap_or(Value::String(r.body.clone()));
                return Ok((r.status, value));
            }
            Err(e) => errors.push(e),
        }
    }
    eprintln!("error: no node answered: {}", errors.join("; "));
    Err(ExitCode::from(2))
}

async fn get(target: &Target, path: &str) -> Result<Value, ExitCode> {
    let (status, value) = call(target, "GET", path, None).await?;
    if status == 200 {
        Ok(value)
    } else {
        eprintln!(
            "error: {}",
            value["error"].as_str().unwrap_or(&value.to_string())
        );
        Err(ExitCode::from(1))
    }
}

async fn post(target: &Target, path: &str, body: Option<String>) -> ExitCode {
    match call(target, "POST", path, body).await {
        Ok((status, value)) if status < 300 => {
            if let Some(plan) = value["plan"].as_str() {
                print!("{plan}");
            }
            for a in value["actions"].as_array().into_iter().flatten() {
                println!(
                    "  {} {} on {}: {}{}",
                    a["kind"].as_str().unwrap_or("action"),
                    a["package"].as_str().unwrap_or(""),
                    a["node"].as_str().unwrap_or(""),
                    if a["ok"].as_bool() == Some(true) {
                        "ok"
                    } else {
                        "FAILED"
                    },
                    a["detail"]
                        .as_str()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                );
            }
            if let Some(note) = value["note"].as_str() {
                println!("{note}");
            }
            ExitCode::SUCCESS
        }
        Ok((_, value)) => {
            eprintln!(
                "error: {}",
                value["error"].as_str().unwrap_or(&value.to_string())
            );
            ExitCode::from(1)
        }
        Err(code) => code,
    }
}

/// Restart counters as `NODE:SERVICE=COUNT ...` (`-` when none).
fn render_restarts(restarts: &Value) -> String {
    let mut parts = Vec::new();
    for (node, services) in restarts.as_object().into_iter().flatten() {
        for (service, counter) in services.as_object().into_iter().flatten() {
            parts.push(format!("{node}:{service}={}", counter["count"]));
        }
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

/// `halcyon status` for people.
pub fn render_status(v: &Value) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let s = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_else(|| "-".into());
    let _ = writeln!(
        out,
        "CLUSTER {}   coordinator {}   quorum {}   (answered by {})",
        s(&v["cluster"]),
        s(&v["coordinator"]),
        if v["quorum"]["has_quorum"].as_bool() == Some(true) {
            "yes"
        } else {
            "NO"
        },
        s(&v["answered_by"]),
    );
    if v["halted"].as_bool() == Some(true) {
        let _ = writeln!(
            out,
            "  the cluster is HALTED: daemons run idle (`halcyon cluster start` starts it)"
        );
    }
    if let Some(d) = v["quorum"]["detail"].as_str() {
        let _ = writeln!(out, "  {d}");
    }
    if let Some(voters) = v["quorum"]["voters"].as_array() {
        let names: Vec<String> = voters.iter().map(s).collect();
        let _ = writeln!(out, "  voters: {}", names.join(", "));
    }
    if let Some(w) = v["watchdog"].as_str()
        && w != "not configured"
    {
        let _ = writeln!(out, "  watchdog on {}: {w}", s(&v["answered_by"]));
    }
    if v["witness"].is_object() {
        let w = &v["witness"];
        let _ = writeln!(
            out,
            "  witness {} at {}: {}{}",
            s(&w["name"]),
            s(&w["address"]),
            if w["reachable"].as_bool() == Some(true) {
                "reachable"
            } else {
                "UNREACHABLE"
            },
            if w["voter"].as_bool() == Some(true) {
                ", voter"
            } else {
                ", not a voter"
            },
        );
    }
    let _ = writeln!(
        out,
        "\nNODE        MEMBER  REACHABLE    INCARNATION  NETWORKS (path from {})",
        s(&v["answered_by"])
    );
    for n in v["nodes"].as_array().into_iter().flatten() {
        let networks: Vec<String> = n["networks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|net| {
                let mut text = format!("{}:{}", s(&net["network"]), s(&net["path"]));
                if net["down"].as_bool() == Some(true) {
                    text.push_str("(DOWN)");
                } else if net["adapter_down"].as_bool() == Some(true) {
                    text.push_str("(adapter?)");
                }
                text
            })
            .collect();
        let member = if n["member"].as_bool() == Some(true) {
            "yes"
        } else if n["halted_by_admin"].as_bool() == Some(true) {
            "halted"
        } else {
            "no"
        };
        let _ = writeln!(
            out,
            "{:<11} {:<7} {:<12} {:<12} {}",
            s(&n["name"]),
            member,
            s(&n["reachable"]),
            n["incarnation"].to_string(),
            networks.join(" ")
        );
    }
    let _ = writeln!(out, "\nPACKAGE     STATUS  NODE        SWITCHING  RESTARTS");
    for p in v["packages"].as_array().into_iter().flatten() {
        let nodes: Vec<String> = p["nodes"].as_array().into_iter().flatten().map(s).collect();
        let _ = writeln!(
            out,
            "{:<11} {:<7} {:<11} {:<10} {}",
            s(&p["name"]),
            s(&p["status"]),
            if nodes.is_empty() {
                "-".into()
            } else {
                nodes.join(",")
            },
            if p["switching"].as_bool() == Some(true) {
                "enabled"
            } else {
                "disabled"
            },
            render_restarts(&p["restarts"]),
        );
    }
    if let Some(e) = v["execution"].as_object() {
        let error = e["state"].as_str() == Some("error");
        let _ = writeln!(
            out,
            "\n{}: #{} {} (segment {} of {}, last barrier passed: {})",
            if error { "EVENT IN ERROR" } else { "RUNNING" },
            e["id"],
            s(&e["event"]),
            e["segment"],
            e["segments"],
            e["last_completed_barrier"]
                .as_u64()
                .map_or("none".to_owned(), |b| b.to_string()),
        );
        for f in e["failures"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  FAILED on {}: \"{}\" exited {} (expected {}), attempts {}",
                s(&f["node"]),
                s(&f["command"]),
                f["status"],
                f["expected"],
                f["attempts"],
            );
            for line in f["output_tail"].as_str().unwrap_or_default().lines() {
                let _ = writeln!(out, "    > {line}");
            }
        }
        if error {
            let _ = writeln!(
                out,
                "  answer with `halcyon event resume|retry|skip {}`",
                e["id"]
            );
        }
        for l in e["running"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  running on {}: {}",
                l["node"].as_str().unwrap_or("coordinator"),
                s(&l["command"]),
            );
        }
    }
    let _ = writeln!(out, "\nLAST EVENTS");
    for e in v["events"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  #{:<4} {:<32} {:<18} {}{}",
            e["id"],
            s(&e["event"]),
            s(&e["outcome"]),
            s(&e["finished_at"]),
            e["error"]
                .as_str()
                .map(|x| format!("  {x}"))
                .unwrap_or_default(),
        );
    }
    out
}
