//! The command-line definition, and only that: clap types with no code, so that `build.rs`
//! includes this file to generate the man pages and shell completions from the very
//! definition the binary parses with. What each command does is in `main.rs`, `live` and
//! `offline`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Halcyon: a high-availability cluster manager for Linux.
///
/// Packages (an application, its addresses and storage) are kept running on
/// exactly one suitable node, failed over in under a second, and never run on
/// two nodes at once.
#[derive(Parser, Debug)]
#[command(name = "halcyon", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate a configuration without a running cluster
    /// (Serviceguard: cmcheckconf; HACMP: clverify).
    ///
    /// Prints every mistake as `file:line:column: field: what is wrong; expected
    /// ...; hint ...`. Exit 0 and a one-line summary when valid, 2 otherwise.
    Check {
        /// The configuration directory, or the cluster file and package files.
        #[arg(required = true, value_name = "DIR_OR_FILES")]
        paths: Vec<PathBuf>,
    },
    /// Say why a package runs where it runs, or why it does not run, node by node
    /// (Serviceguard: cmviewcl -v -p PKG; HACMP: clRGinfo -v).
    ///
    /// Asks the running cluster (found like `halcyon status` finds it, or at
    /// `--api`); with `--offline` or `--state`, works on a configuration and a
    /// cluster state file instead.
    Explain {
        /// The package.
        package: String,
        /// Explain from files, without a running cluster.
        #[arg(long)]
        offline: bool,
        /// API address (host:port) of any node of the running cluster.
        #[arg(long, value_name = "ADDR")]
        api: Option<SocketAddr>,
        /// The API token's file (live; see `halcyon status --help`).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// The cluster CA certificate to check the nodes' with (live; see `halcyon status
        /// --help`).
        #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
        ca: Option<PathBuf>,
        /// Plain HTTP, for a cluster started --insecure (live; see `halcyon status --help`).
        #[arg(long)]
        insecure: bool,
        #[command(flatten)]
        input: Input,
        /// Print the explanation as JSON (offline and live: the same shape).
        #[arg(long)]
        json: bool,
    },
    /// Show what an event would do, without changing anything
    /// (HACMP: cluster event emulation; Pacemaker: crm_simulate).
    ///
    /// Offline (default): plays EVENT against a configuration and a cluster state
    /// file. Live (`--live`, or `--api ADDR`): against the running cluster's state.
    /// Either way it prints the plan (what halts and runs where, in which steps, and
    /// why) and the recovery program per node with its barriers, each built-in
    /// command with its share of the plan.
    /// Events: cluster_start, cluster_halt, timer, config_change;
    /// node_up NODE; node_down NODE [failure|graceful|graceful_takeover|forced];
    /// network_up|network_down|swap_adapter|fail_standby|join_standby NODE NETWORK;
    /// package_failed PACKAGE NODE;
    /// package_run|package_halt|package_move|package_enable|package_disable|package_clear
    /// PACKAGE [NODE];
    /// user EVENT_NAME NODE.
    Emulate {
        /// The event's name, then its arguments.
        #[arg(required = true, num_args = 1.., value_name = "EVENT [ARGS]")]
        event: Vec<String>,
        #[command(flatten)]
        input: Input,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Against the running cluster (its API found with `--api`, `--config` or the
        /// demo cluster).
        #[arg(long)]
        live: bool,
        /// API address (host:port) of any node of the running cluster (implies --live).
        #[arg(long, value_name = "ADDR")]
        api: Option<SocketAddr>,
        /// The API token's file (live; see `halcyon status --help`).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// The cluster CA certificate to check the nodes' with (live; see `halcyon status
        /// --help`).
        #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
        ca: Option<PathBuf>,
        /// Plain HTTP, for a cluster started --insecure (live; see `halcyon status --help`).
        #[arg(long)]
        insecure: bool,
    },
    /// Translate legacy configuration files into native ones.
    Import {
        #[command(subcommand)]
        what: Import,
    },
    /// Create the cluster's credentials: a cluster CA, a certificate and key per node
    /// (its name, addresses and the cluster id in it), the heartbeat key and the API
    /// tokens `admin` and `read-only` (printed once, stored hashed).
    ///
    /// Files are owner-only; existing credentials are never overwritten without
    /// `--force`. Exit 2 for an invalid configuration or node, 1 when refused.
    Init(InitArgs),
    #[command(flatten)]
    Live(LiveCommand),
}

#[derive(Subcommand, Debug)]
pub enum Import {
    /// A Serviceguard package ASCII file (`cmmakepkg` format) and its package
    /// control script (`IP[]`, `SERVICE_NAME[]`/`SERVICE_CMD[]`/`SERVICE_RESTART[]`,
    /// `VG[]`, `LV[]`/`FS[]`, `customer_defined_run_cmds` and `_halt_cmds`) -> a
    /// native package file and the customer commands as scripts
    /// (Serviceguard: cmgetconf + the control script).
    ///
    /// Addresses are matched to the networks of the cluster configuration, and the
    /// result is validated with it before anything is written.
    Serviceguard {
        /// The package ASCII file.
        package: PathBuf,
        /// The package control script (default: the file's RUN_SCRIPT, if it exists).
        #[arg(long, value_name = "FILE")]
        control_script: Option<PathBuf>,
        /// The cluster configuration the package joins (default /etc/halcyon).
        #[arg(long, short = 'c', value_name = "DIR")]
        config: Vec<PathBuf>,
        /// Where to write the package file and scripts.
        #[arg(long, short = 'o', value_name = "DIR", default_value = ".")]
        out: PathBuf,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// An HACMP rules file (`rules.hacmprd`, 9-line records) and its `.rp` recovery
    /// programs -> a native rules file and programs (HACMP ES: the event
    /// management rules of `/usr/sbin/cluster/events`).
    ///
    /// Each record's `.rp` file is found at the path the record names, else by file
    /// name in `--rp-dir`, else beside the rules file. Malformed records are refused
    /// with the record number and line; nothing is written then.
    Hacmp {
        /// The legacy rules file.
        rules: PathBuf,
        /// Where to look for `.rp` files not found at their recorded path.
        #[arg(long, value_name = "DIR")]
        rp_dir: Option<PathBuf>,
        /// Where to write `rules.toml` and the programs.
        #[arg(long, short = 'o', value_name = "DIR", default_value = ".")]
        out: PathBuf,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
}

/// `halcyon snapshot ...`.
#[derive(Debug, Subcommand)]
pub enum SnapshotOp {
    /// Write the running configuration's files into DIR (with a SNAPSHOT file naming the
    /// cluster, the generation and the time); `halcyon check DIR` accepts them and
    /// `snapshot restore DIR` applies them again (cmgetconf).
    Save {
        dir: PathBuf,
        /// Write into a directory that is not empty (files of the same names are replaced).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Show what differs between DIR and the running configuration, field by field.
    Diff {
        dir: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Apply a saved snapshot: `halcyon apply DIR`.
    Restore {
        dir: PathBuf,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Show the differences and the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        target: Target,
    },
}

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
        /// This node's credentials from `halcyon init` (default: `pki` in the configuration
        /// directory). Heartbeats are authenticated with its cluster key, node-to-node
        /// requests signed with its node key, Raft runs over mutual TLS with its certificate
        /// and the API requires its tokens; credentials that fail a check refuse the start,
        /// naming the file, and so does a node without credentials unless `--insecure`.
        #[arg(long, value_name = "DIR")]
        pki: Option<PathBuf>,
        /// Run without credentials: heartbeats, the API and node-to-node requests are NOT
        /// authenticated (anyone reaching the node's ports can operate the cluster). Logged
        /// and shown by `halcyon status`; refused when the node has credentials.
        #[arg(long)]
        insecure: bool,
        /// Also serve the API on this Unix socket for the CLI on this machine: no token,
        /// only root and the daemon's user may connect (mode 0600, peer credentials
        /// checked). A socket left by a daemon that is gone is replaced; anything else at
        /// the path refuses the start.
        #[arg(long, value_name = "PATH", default_value = DEFAULT_API_SOCKET)]
        api_socket: PathBuf,
        /// Enable test-only fault injection endpoints (`/v1/debug/*`).
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
        /// The witness's credentials from `halcyon init` (default: `pki` in the
        /// configuration directory): Raft runs over mutual TLS with its certificate. Without
        /// credentials it refuses to start unless `--insecure`.
        #[arg(long, value_name = "DIR")]
        pki: Option<PathBuf>,
        /// Run without credentials: Raft with the witness is NOT authenticated. Logged;
        /// refused when the witness has credentials.
        #[arg(long)]
        insecure: bool,
    },
    /// Change the running cluster's configuration (Serviceguard: cmapplyconf; HACMP: DARE).
    ///
    /// Checks DIR as `halcyon check` does (every mistake, exit 2, nothing changed), shows
    /// what differs from the running configuration field by field and the plan of the
    /// `config_change` event, asks (unless --yes), then takes the cluster-wide
    /// reconfiguration lock and commits the change: removed packages halt, changed ones
    /// halt and run again where they run, added ones are placed, the others keep running
    /// untouched. Packages, `[events]` and the event rules can change; a change of nodes,
    /// networks, heartbeat, quorum or limits is refused with the setting named.
    Apply {
        /// The new configuration directory.
        dir: PathBuf,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Show the differences and the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        target: Target,
    },
    /// A package's availability over a period: up and down time, and each outage with its
    /// start, end, duration and cause, from the durable event log (HACMP: Application
    /// Availability Analysis).
    Availability {
        package: String,
        /// From this time (RFC 3339) or this long ago (`30d`); default: the oldest record kept.
        #[arg(long)]
        since: Option<String>,
        /// Until this time or this long ago; default: now.
        #[arg(long)]
        until: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Cluster snapshots (HACMP: cluster snapshots; Serviceguard: cmgetconf): the running
    /// configuration as the files it was applied from.
    Snapshot {
        #[command(subcommand)]
        op: SnapshotOp,
    },
    /// Show the cluster: coordinator, quorum, nodes, packages, last events (cmviewcl, clstat).
    ///
    /// Times are local `HH:MM:SS` (with the date when not today) and how long ago; `--json`
    /// has RFC 3339 times. Without a quorum, every unreachable voter is named (the witness
    /// too) and placements are marked "last known". A node excluded for not completing its
    /// work says why, since when, and that it joins again when its daemon restarts
    /// (`systemctl restart halcyon` on it).
    Status {
        #[command(flatten)]
        target: Target,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Also each package's resources, dependencies (and whether they hold) and nodes in
        /// order, with the failures that exclude a node and until when (cmviewcl -v).
        #[arg(long, short = 'v', conflicts_with = "json")]
        verbose: bool,
    },
    /// Operate a package: run (cmrunpkg), halt (cmhaltpkg), move (cmhaltpkg + cmrunpkg -n;
    /// clRGmove), enable/disable switching (cmmodpkg -e / -d), clear its failures.
    Package {
        /// run, halt, move, enable, disable or clear (forget the package's failures: on
        /// NODE, or on every node; cmmodpkg -e after a failure).
        op: String,
        package: String,
        /// Target node (run, move, enable, disable, clear); for halt, the one node to halt
        /// it on (a multi-node package then stays halted there until `run -n NODE`).
        #[arg(long, short = 'n')]
        node: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Start or halt a node in the cluster (cmrunnode / cmhaltnode [-f]; HACMP clstart / clstop),
    /// add or remove it as a voter, or fence it with its fence agents (pcs stonith fence).
    Node {
        /// start, halt, add, remove or fence.
        op: String,
        node: String,
        /// For halt: packages move to other nodes (cmhaltnode -f with takeover).
        #[arg(long)]
        takeover: bool,
        /// For halt: treat as a failure, halt at once.
        #[arg(long)]
        force: bool,
        /// For fence: off (the default) or reboot.
        #[arg(long)]
        action: Option<String>,
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
        /// Also list the built-in commands that had nothing to do on their node (hidden and
        /// counted otherwise).
        #[arg(long, short = 'v')]
        verbose: bool,
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
    ///
    /// Everything it starts stops with it, however it ends (Ctrl-C, SIGTERM, a closed
    /// terminal, even SIGKILL: a keeper process cleans up then). As root, the package also
    /// gets the address 127.0.0.100 on `lo`. The daemons' logs are kept in
    /// `$XDG_STATE_HOME/halcyon/demo-PORT` (else `~/.local/state/...`).
    Demo {
        /// Base port of the demo cluster (it uses this port and the next 80).
        #[arg(long, default_value_t = 17400)]
        port: u16,
        /// Keep the working directory (configuration and node state) on exit.
        #[arg(long)]
        keep: bool,
        /// Ask the running demo on `--port` to restart this node's daemon (after it died).
        #[arg(long, value_name = "NODE")]
        restart: Option<String>,
    },
    /// The demo's keeper: cleans up after a demo that was killed (see `halcyon demo`).
    #[command(hide = true)]
    DemoKeeper {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        directory: PathBuf,
        #[arg(long)]
        keep: bool,
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

/// How the CLI finds a running cluster's API, and its token.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// API address of any node (host:port).
    #[arg(long)]
    pub api: Option<SocketAddr>,
    /// Configuration directory: the API addresses of its nodes are tried in turn.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A file holding the API token (else $HALCYON_TOKEN, else `admin.token` in the
    /// credentials directory: `pki` in --config, the demo's, or /etc/halcyon/pki).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The local daemon's API socket: asked first, with no token (only root and the
    /// daemon's user may). Without it: the demo's nodes' sockets, else /run/halcyon/api.sock
    /// when neither --api nor another --config than /etc/halcyon is given. A socket that
    /// cannot be used (absent, not this user's) is passed over for the TCP API and a token.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The cluster CA certificate the nodes' certificates are checked with over HTTPS (else
    /// `ca.crt` in the credentials directory: `pki` in --config, the demo's, or
    /// /etc/halcyon/pki). A node whose certificate is not of that CA is refused.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub ca: Option<PathBuf>,
    /// Speak plain HTTP to the nodes' API: only for a cluster whose daemons run --insecure
    /// (without it the CLI speaks HTTPS, and refuses to go on without a cluster CA).
    #[arg(long)]
    pub insecure: bool,
}

#[derive(clap::Args, Debug)]
pub struct Input {
    /// The configuration directory (or files); default /etc/halcyon.
    #[arg(long, short = 'c', value_name = "DIR")]
    pub(crate) config: Vec<PathBuf>,
    /// A cluster state file (TOML: members, networks_down, packages). Without it,
    /// every node is a member and every auto_run package runs where the cluster
    /// would start it.
    #[arg(long, short = 's', value_name = "FILE")]
    pub(crate) state: Option<PathBuf>,
    /// The time of the event (RFC 3339, UTC); default: now.
    #[arg(long, value_name = "TIME")]
    pub(crate) at: Option<jiff::Timestamp>,
}

/// Where `halcyon init` writes, and whom for.
#[derive(Args, Debug)]
pub struct InitArgs {
    #[command(subcommand)]
    pub what: Option<InitWhat>,
    /// Where the credentials are written.
    #[arg(long, value_name = "DIR", global = true, default_value = DEFAULT_PKI_DIR)]
    pub dir: PathBuf,
    /// The cluster configuration (directory or files; default /etc/halcyon): its nodes,
    /// their addresses and the cluster id go into the certificates.
    #[arg(long, short = 'c', value_name = "DIR", global = true)]
    pub config: Vec<PathBuf>,
    /// Replace existing credentials (every peer must then get the new ones).
    #[arg(long, global = true)]
    pub force: bool,
}

/// The default of `halcyon daemon --api-socket`: `halcyon_daemon::local_socket::DEFAULT_PATH`
/// (written out for `build.rs`, like [`DEFAULT_PKI_DIR`]; a test checks they agree).
pub const DEFAULT_API_SOCKET: &str = "/run/halcyon/api.sock";

/// The default of `halcyon init --dir`: `halcyon_pki::DEFAULT_DIR`, written out because
/// `build.rs` compiles this file without the workspace's crates (a test checks they agree).
pub const DEFAULT_PKI_DIR: &str = "/etc/halcyon/pki";

#[derive(Subcommand, Debug)]
pub enum InitWhat {
    /// Issue a certificate and key for a node added to the configuration after `init`,
    /// with the existing cluster CA (`ca.key` must be in `--dir`).
    Node {
        /// The node's name in the configuration.
        name: String,
    },
    /// Replace the cluster CA and the heartbeat key while the cluster runs, in three steps:
    /// `start` (a new CA and key, trusted beside the old ones), `switch` (every node's
    /// certificate issued again by the new CA; the new heartbeat key signs), `finish` (the
    /// old CA and key dropped). After each step copy the files it names to every node and
    /// reload every daemon (`systemctl reload halcyon`, or SIGHUP) before the next step.
    Rollover {
        /// The step to run.
        #[arg(value_enum)]
        step: RolloverStep,
    },
}

/// A step of `halcyon init rollover`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RolloverStep {
    Start,
    Switch,
    Finish,
}
