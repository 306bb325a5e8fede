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
mod demo;
pub mod faults;
pub mod guard;
pub mod lease;
pub mod node;
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
        return Ok(node::api_addrs(&config).into_values().collect());
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
        let _ = writeln!(
            out,
            "\nRUNNING: {} (step {} of {})",
            s(&e["event"]),
            e["step"],
            e["steps"]
        );
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
