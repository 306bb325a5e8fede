//! A cluster directory from typed settings: `cluster.toml`, one file per package and any extra
//! files (a rules file). The text is produced by the `toml` crate from tables, so quoting is
//! never written by hand; durations are written the way the configuration reads them
//! (`"100ms"`, `"2s"`).
//!
//! Only what the tests, the benchmark and the lab configure is typed here; the configuration's
//! own reference is `halcyon-config`. Every directory this module writes must pass
//! `halcyon_config::load` (its tests check one of every kind of setting).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

/// `[heartbeat]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub interval: Duration,
    pub sensitivity: u32,
}

/// `[quorum.witness]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    pub name: String,
    pub number: u32,
    pub address: Ipv4Addr,
}

/// `[quorum]`; written only when something in it is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quorum {
    pub lease: Option<Duration>,
    pub min_voters: Option<u32>,
    /// `auto_shrink = true` with this `shrink_after`; None: no auto-shrink.
    pub auto_shrink: Option<Duration>,
    pub watchdog: Option<PathBuf>,
    pub witness: Option<Witness>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkKind {
    Ip {
        subnets: Vec<String>,
    },
    /// A heartbeat over a shared file or block device.
    Disk {
        device: PathBuf,
    },
}

/// `[[network]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    pub kind: NetworkKind,
}

/// `[[node.interface]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub network: String,
    pub address: Ipv4Addr,
    pub device: Option<String>,
    pub standby: bool,
}

/// `[[node]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub number: u32,
    pub interfaces: Vec<Interface>,
    /// `[node.fencing]`: one fence device (agent and options).
    pub fencing: Option<FenceDevice>,
}

/// One fence device: its agent program and options (`[node.fencing]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceDevice {
    pub agent: String,
    pub options: Vec<(String, String)>,
    pub timeout: Option<Duration>,
}

impl Node {
    pub fn new(name: impl Into<String>, number: u32) -> Node {
        Node {
            name: name.into(),
            number,
            interfaces: Vec::new(),
            fencing: None,
        }
    }

    /// An active interface on `network`.
    pub fn interface(mut self, network: &str, address: Ipv4Addr) -> Node {
        self.interfaces.push(Interface {
            network: network.to_owned(),
            address,
            device: None,
            standby: false,
        });
        self
    }

    /// An active interface on `network` bound to a named device.
    pub fn interface_on(mut self, network: &str, address: Ipv4Addr, device: &str) -> Node {
        self.interfaces.push(Interface {
            network: network.to_owned(),
            address,
            device: Some(device.to_owned()),
            standby: false,
        });
        self
    }

    /// A standby interface (local LAN failover) on `network`.
    pub fn standby_interface(mut self, network: &str, address: Ipv4Addr, device: &str) -> Node {
        self.interfaces.push(Interface {
            network: network.to_owned(),
            address,
            device: Some(device.to_owned()),
            standby: true,
        });
        self
    }

    /// The node's first active address: where its API listens first.
    pub fn address(&self) -> Option<Ipv4Addr> {
        self.interfaces
            .iter()
            .find(|i| !i.standby)
            .map(|i| i.address)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageKind {
    Failover,
    MultiNode,
}

/// A `[[resource]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// A supervised command.
    Service {
        name: String,
        command: String,
        restart: Option<u32>,
        halt_timeout: Option<Duration>,
        node_fail_fast: bool,
    },
    /// Run and halt commands.
    Script {
        name: String,
        run: String,
        halt: String,
    },
    /// A relocatable address, `address/prefix`.
    Ip {
        network: String,
        address: Ipv4Addr,
        prefix: u8,
    },
}

impl Resource {
    /// A service with the daemon's defaults for everything but its command.
    pub fn service(name: &str, command: impl Into<String>) -> Resource {
        Resource::Service {
            name: name.to_owned(),
            command: command.into(),
            restart: None,
            halt_timeout: None,
            node_fail_fast: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorAction {
    /// Fire the user-defined event of this name.
    Event(String),
    /// Fail the package on the node.
    FailPackage,
    /// `notify = "COMMAND"`.
    Notify(String),
}

/// A package's `[[monitor]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitor {
    pub name: String,
    pub sample: String,
    pub interval: Duration,
    pub predicate: String,
    pub rearm: Option<String>,
    pub action: MonitorAction,
    /// `stabilization` (written when not zero).
    pub stabilization: Duration,
    /// `restart` (written when not zero) and `restart_window`.
    pub restart: u32,
    pub restart_window: Option<Duration>,
}

/// A package's `[[dependency]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub package: String,
    /// `same_node`, `any_node`, `different_node`; None: the configuration's default.
    pub location: Option<String>,
    /// `up` or `down`; None: the configuration's default.
    pub condition: Option<String>,
}

/// A package file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub kind: PackageKind,
    /// Node names in order of preference; `"*"` is every node.
    pub nodes: Vec<String>,
    pub auto_run: bool,
    pub failover_policy: Option<String>,
    pub failback_policy: Option<String>,
    /// How long a failure excludes a node (`"2s"`, `"never"`).
    pub failure_expiry: Option<String>,
    pub priority: Option<u32>,
    /// The IP networks the package needs.
    pub networks: Vec<String>,
    pub resources: Vec<Resource>,
    pub monitors: Vec<Monitor>,
    pub dependencies: Vec<Dependency>,
    /// `requires` (`"lease"`, `"fencing"`); `None`: the default.
    pub requires: Option<String>,
    /// `run_timeout`; `None`: the default.
    pub run_timeout: Option<Duration>,
}

impl Package {
    /// A failover package on `nodes`, started automatically.
    pub fn failover(name: &str, nodes: &[&str]) -> Package {
        Package {
            name: name.to_owned(),
            kind: PackageKind::Failover,
            nodes: nodes.iter().map(|&n| n.to_owned()).collect(),
            auto_run: true,
            failover_policy: None,
            failback_policy: None,
            failure_expiry: None,
            priority: None,
            networks: Vec::new(),
            resources: Vec::new(),
            monitors: Vec::new(),
            dependencies: Vec::new(),
            requires: None,
            run_timeout: None,
        }
    }

    /// A multi-node package on every node, started automatically.
    pub fn multi_node(name: &str) -> Package {
        Package {
            kind: PackageKind::MultiNode,
            ..Package::failover(name, &["*"])
        }
    }

    pub fn resource(mut self, resource: Resource) -> Package {
        self.resources.push(resource);
        self
    }

    /// The package file's text.
    pub fn to_toml(&self) -> String {
        let mut package = Table::new();
        package.insert("name".into(), self.name.clone().into());
        let kind = match self.kind {
            PackageKind::Failover => "failover",
            PackageKind::MultiNode => "multi_node",
        };
        package.insert("type".into(), kind.into());
        package.insert("nodes".into(), strings(&self.nodes));
        package.insert("auto_run".into(), self.auto_run.into());
        insert_some(
            &mut package,
            "failover_policy",
            self.failover_policy.clone(),
        );
        insert_some(
            &mut package,
            "failback_policy",
            self.failback_policy.clone(),
        );
        insert_some(&mut package, "failure_expiry", self.failure_expiry.clone());
        insert_some(&mut package, "priority", self.priority.map(i64::from));
        insert_some(&mut package, "requires", self.requires.clone());
        insert_some(&mut package, "run_timeout", self.run_timeout.map(duration));
        if !self.networks.is_empty() {
            package.insert("networks".into(), strings(&self.networks));
        }
        let mut file = Table::new();
        file.insert("package".into(), package.into());
        let resources: Vec<Value> = self.resources.iter().map(resource_table).collect();
        if !resources.is_empty() {
            file.insert("resource".into(), resources.into());
        }
        let monitors: Vec<Value> = self.monitors.iter().map(monitor_table).collect();
        if !monitors.is_empty() {
            file.insert("monitor".into(), monitors.into());
        }
        let dependencies: Vec<Value> = self.dependencies.iter().map(dependency_table).collect();
        if !dependencies.is_empty() {
            file.insert("dependency".into(), dependencies.into());
        }
        to_text(&file)
    }
}

/// A whole cluster directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub name: String,
    pub id: u32,
    /// The base port: heartbeats; consensus on `port + 1`, the API on `port + 2`, the internal
    /// API on `port + 3`.
    pub port: u16,
    /// None: no `[heartbeat]` section (the daemon's defaults).
    pub heartbeat: Option<Heartbeat>,
    /// `[heartbeat] profile`, written before `interval` and `sensitivity` (which override
    /// it when `heartbeat` is set too).
    pub heartbeat_profile: Option<String>,
    pub quorum: Quorum,
    /// `[limits] max_event_duration`; None: the daemon's default.
    pub max_event_duration: Option<Duration>,
    pub networks: Vec<Network>,
    pub nodes: Vec<Node>,
    pub packages: Vec<Package>,
    /// Other files of the directory (a rules file): name and text.
    pub files: Vec<(String, String)>,
    /// `[[events.webhook]]`.
    pub webhooks: Vec<Webhook>,
}

/// A webhook (`[[events.webhook]]`); `None`: the daemon's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: String,
    pub events: Vec<String>,
    pub timeout: Option<Duration>,
    pub retries: Option<u32>,
}

impl ClusterConfig {
    /// What `halcyon init` makes credentials for: every node with its addresses, and the
    /// witness.
    pub fn credentials_spec(&self) -> halcyon_pki::ClusterSpec {
        let mut nodes: Vec<halcyon_pki::NodeSpec> = self
            .nodes
            .iter()
            .map(|n| halcyon_pki::NodeSpec {
                name: n.name.clone(),
                addresses: n.interfaces.iter().map(|i| i.address.into()).collect(),
            })
            .collect();
        if let Some(w) = &self.quorum.witness {
            nodes.push(halcyon_pki::NodeSpec {
                name: w.name.clone(),
                addresses: vec![w.address.into()],
            });
        }
        halcyon_pki::ClusterSpec {
            name: self.name.clone(),
            id: u64::from(self.id),
            nodes,
        }
    }

    pub fn new(name: &str, id: u32, port: u16) -> ClusterConfig {
        ClusterConfig {
            name: name.to_owned(),
            id,
            port,
            heartbeat: None,
            heartbeat_profile: None,
            quorum: Quorum::default(),
            max_event_duration: None,
            networks: Vec::new(),
            nodes: Vec::new(),
            packages: Vec::new(),
            files: Vec::new(),
            webhooks: Vec::new(),
        }
    }

    /// `nodes` nodes named `prefix1`, `prefix2`, ... with the address `127.0.0.i` on one IP
    /// network `network` of subnet `subnet`.
    pub fn loopback(
        name: &str,
        port: u16,
        nodes: usize,
        prefix: &str,
        network: &str,
        subnet: &str,
    ) -> ClusterConfig {
        let mut config = ClusterConfig::new(name, 1, port).ip_network(network, &[subnet]);
        for i in 1..=nodes {
            let number = u32::try_from(i).expect("a node number fits u32");
            config.nodes.push(
                Node::new(format!("{prefix}{i}"), number).interface(network, loopback_address(i)),
            );
        }
        config
    }

    pub fn heartbeat(mut self, interval: Duration, sensitivity: u32) -> ClusterConfig {
        self.heartbeat = Some(Heartbeat {
            interval,
            sensitivity,
        });
        self
    }

    /// `[heartbeat] profile = "<profile>"` (e.g. "fast").
    pub fn heartbeat_profile(mut self, profile: &str) -> ClusterConfig {
        self.heartbeat_profile = Some(profile.to_owned());
        self
    }

    pub fn ip_network(mut self, name: &str, subnets: &[&str]) -> ClusterConfig {
        self.networks.push(Network {
            name: name.to_owned(),
            kind: NetworkKind::Ip {
                subnets: subnets.iter().map(|&s| s.to_owned()).collect(),
            },
        });
        self
    }

    pub fn disk_network(mut self, name: &str, device: &Path) -> ClusterConfig {
        self.networks.push(Network {
            name: name.to_owned(),
            kind: NetworkKind::Disk {
                device: device.to_owned(),
            },
        });
        self
    }

    pub fn node(mut self, node: Node) -> ClusterConfig {
        self.nodes.push(node);
        self
    }

    pub fn package(mut self, package: Package) -> ClusterConfig {
        self.packages.push(package);
        self
    }

    pub fn file(mut self, name: &str, text: impl Into<String>) -> ClusterConfig {
        self.files.push((name.to_owned(), text.into()));
        self
    }

    pub fn package_mut(&mut self, name: &str) -> Option<&mut Package> {
        self.packages.iter_mut().find(|p| p.name == name)
    }

    pub fn node_named(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Node names in configured order.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// The text of `cluster.toml`.
    pub fn cluster_toml(&self) -> String {
        let mut cluster = Table::new();
        cluster.insert("name".into(), self.name.clone().into());
        cluster.insert("id".into(), i64::from(self.id).into());
        cluster.insert("port".into(), i64::from(self.port).into());
        let mut file = Table::new();
        file.insert("cluster".into(), cluster.into());
        let mut heartbeat = Table::new();
        if let Some(profile) = &self.heartbeat_profile {
            heartbeat.insert("profile".into(), profile.clone().into());
        }
        if let Some(h) = self.heartbeat {
            heartbeat.insert("interval".into(), duration(h.interval));
            heartbeat.insert("sensitivity".into(), i64::from(h.sensitivity).into());
        }
        if !heartbeat.is_empty() {
            file.insert("heartbeat".into(), heartbeat.into());
        }
        if self.quorum != Quorum::default() {
            file.insert("quorum".into(), quorum_table(&self.quorum).into());
        }
        if let Some(max) = self.max_event_duration {
            let mut limits = Table::new();
            limits.insert("max_event_duration".into(), duration(max));
            file.insert("limits".into(), limits.into());
        }
        let networks: Vec<Value> = self.networks.iter().map(network_table).collect();
        file.insert("network".into(), networks.into());
        let nodes: Vec<Value> = self.nodes.iter().map(node_table).collect();
        file.insert("node".into(), nodes.into());
        if !self.webhooks.is_empty() {
            let hooks: Vec<Value> = self
                .webhooks
                .iter()
                .map(|w| {
                    let mut t = Table::new();
                    t.insert("url".into(), w.url.clone().into());
                    let events: Vec<Value> = w.events.iter().map(|e| e.clone().into()).collect();
                    t.insert("events".into(), events.into());
                    if let Some(timeout) = w.timeout {
                        t.insert("timeout".into(), duration(timeout));
                    }
                    if let Some(retries) = w.retries {
                        t.insert("retries".into(), i64::from(retries).into());
                    }
                    t.into()
                })
                .collect();
            let mut events = Table::new();
            events.insert("webhook".into(), hooks.into());
            file.insert("events".into(), events.into());
        }
        to_text(&file)
    }

    /// Writes `cluster.toml`, `<package>.toml` for every package and the extra files into
    /// `directory` (created if needed).
    pub fn write(&self, directory: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(directory)?;
        std::fs::write(directory.join("cluster.toml"), self.cluster_toml())?;
        for package in &self.packages {
            std::fs::write(
                directory.join(format!("{}.toml", package.name)),
                package.to_toml(),
            )?;
        }
        for (name, text) in &self.files {
            std::fs::write(directory.join(name), text)?;
        }
        Ok(())
    }
}

/// The package every demo cluster runs.
pub const DEMO_PACKAGE: &str = "hello";

/// The cluster of `halcyon demo`, which the benchmark measures too: `nodes` nodes `node1`,
/// `node2`, ... on 127.0.0.i (network `lo`, 127.0.0.0/8) and one failover package
/// [`DEMO_PACKAGE`] on every node in order, whose service `http` runs `command` (two restarts,
/// 2 s to halt), failing over in the configured order and never back by itself.
pub fn demo(name: &str, port: u16, nodes: usize, command: impl Into<String>) -> ClusterConfig {
    let config = ClusterConfig::loopback(name, port, nodes, "node", "lo", "127.0.0.0/8");
    let names = config.node_names();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut package = Package::failover(DEMO_PACKAGE, &names).resource(Resource::Service {
        name: "http".into(),
        command: command.into(),
        restart: Some(2),
        halt_timeout: Some(Duration::from_secs(2)),
        node_fail_fast: false,
    });
    package.failover_policy = Some("configured_node".into());
    package.failback_policy = Some("manual".into());
    config.package(package)
}

/// `127.0.0.i`: node `i`'s loopback address.
pub fn loopback_address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        127,
        0,
        0,
        u8::try_from(i).expect("a loopback node index fits an octet"),
    )
}

/// A duration as the configuration reads it: `"100ms"`, `"2s"`, `"1s 500ms"`.
fn duration(d: Duration) -> Value {
    humantime::format_duration(d).to_string().into()
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| Value::from(s.clone())).collect())
}

fn insert_some(table: &mut Table, key: &str, value: Option<impl Into<Value>>) {
    if let Some(value) = value {
        table.insert(key.into(), value.into());
    }
}

fn path_text(path: &Path) -> Value {
    path.to_string_lossy().into_owned().into()
}

fn quorum_table(q: &Quorum) -> Table {
    let mut t = Table::new();
    insert_some(&mut t, "lease", q.lease.map(duration));
    insert_some(&mut t, "min_voters", q.min_voters.map(i64::from));
    if let Some(after) = q.auto_shrink {
        t.insert("auto_shrink".into(), true.into());
        t.insert("shrink_after".into(), duration(after));
    }
    insert_some(&mut t, "watchdog", q.watchdog.as_deref().map(path_text));
    if let Some(w) = &q.witness {
        let mut witness = Table::new();
        witness.insert("name".into(), w.name.clone().into());
        witness.insert("number".into(), i64::from(w.number).into());
        witness.insert("address".into(), w.address.to_string().into());
        t.insert("witness".into(), witness.into());
    }
    t
}

fn network_table(n: &Network) -> Value {
    let mut t = Table::new();
    t.insert("name".into(), n.name.clone().into());
    match &n.kind {
        NetworkKind::Ip { subnets } => {
            t.insert("kind".into(), "ip".into());
            t.insert("subnets".into(), strings(subnets));
        }
        NetworkKind::Disk { device } => {
            t.insert("kind".into(), "disk".into());
            t.insert("device".into(), path_text(device));
        }
    }
    t.into()
}

fn node_table(n: &Node) -> Value {
    let mut t = Table::new();
    t.insert("name".into(), n.name.clone().into());
    t.insert("number".into(), i64::from(n.number).into());
    let interfaces: Vec<Value> = n
        .interfaces
        .iter()
        .map(|i| {
            let mut t = Table::new();
            t.insert("network".into(), i.network.clone().into());
            t.insert("address".into(), i.address.to_string().into());
            insert_some(&mut t, "device", i.device.clone());
            if i.standby {
                t.insert("standby".into(), true.into());
            }
            t.into()
        })
        .collect();
    t.insert("interface".into(), interfaces.into());
    if let Some(f) = &n.fencing {
        let mut fencing = Table::new();
        fencing.insert("agent".into(), f.agent.clone().into());
        let mut options = Table::new();
        for (key, value) in &f.options {
            options.insert(key.clone(), value.clone().into());
        }
        fencing.insert("options".into(), options.into());
        if let Some(timeout) = f.timeout {
            fencing.insert("timeout".into(), duration(timeout));
        }
        t.insert("fencing".into(), fencing.into());
    }
    t.into()
}

fn resource_table(r: &Resource) -> Value {
    let mut t = Table::new();
    match r {
        Resource::Service {
            name,
            command,
            restart,
            halt_timeout,
            node_fail_fast,
        } => {
            t.insert("kind".into(), "service".into());
            t.insert("name".into(), name.clone().into());
            t.insert("command".into(), command.clone().into());
            insert_some(&mut t, "restart", restart.map(i64::from));
            insert_some(&mut t, "halt_timeout", halt_timeout.map(duration));
            if *node_fail_fast {
                t.insert("node_fail_fast".into(), true.into());
            }
        }
        Resource::Script { name, run, halt } => {
            t.insert("kind".into(), "script".into());
            t.insert("name".into(), name.clone().into());
            t.insert("run".into(), run.clone().into());
            t.insert("halt".into(), halt.clone().into());
        }
        Resource::Ip {
            network,
            address,
            prefix,
        } => {
            t.insert("kind".into(), "ip".into());
            t.insert("network".into(), network.clone().into());
            t.insert("address".into(), format!("{address}/{prefix}").into());
        }
    }
    t.into()
}

fn monitor_table(m: &Monitor) -> Value {
    let mut t = Table::new();
    t.insert("name".into(), m.name.clone().into());
    t.insert("sample".into(), m.sample.clone().into());
    t.insert("interval".into(), duration(m.interval));
    t.insert("predicate".into(), m.predicate.clone().into());
    insert_some(&mut t, "rearm", m.rearm.clone());
    match &m.action {
        MonitorAction::Event(event) => {
            t.insert("event".into(), event.clone().into());
        }
        MonitorAction::FailPackage => {
            t.insert("fail_package".into(), true.into());
        }
        MonitorAction::Notify(command) => {
            t.insert("notify".into(), command.clone().into());
        }
    }
    if !m.stabilization.is_zero() {
        t.insert("stabilization".into(), duration(m.stabilization));
    }
    if m.restart > 0 {
        t.insert("restart".into(), i64::from(m.restart).into());
    }
    if let Some(window) = m.restart_window {
        t.insert("restart_window".into(), duration(window));
    }
    t.into()
}

fn dependency_table(d: &Dependency) -> Value {
    let mut t = Table::new();
    t.insert("package".into(), d.package.clone().into());
    insert_some(&mut t, "location", d.location.clone());
    insert_some(&mut t, "condition", d.condition.clone());
    t.into()
}

fn to_text(table: &Table) -> String {
    toml::to_string(table).expect("a table of strings, integers, booleans and tables serialises")
}
