//! A Halcyon cluster on a lab: one `halcyon daemon` per host, a configuration written for the
//! lab's addresses, and the helpers the lab tests and the fault campaign share.
//!
//! The configuration: every host is a node (`h1`, `h2`, ... numbered like the hosts) with its
//! lab address on each IP network (`net1`, `net2`); the lab's shared file is a `disk` network
//! (optional); every package is a failover package made of
//!
//! 1. an `ip` resource, the package's relocatable address on network 1 (the daemon's driver adds
//!    it through netlink, registers it with the lease guard and announces it with gratuitous
//!    ARP), and
//! 2. a `service` resource, `halcyon demo-http --bind ADDRESS:PORT --name $HALCYON_NODE`, which
//!    answers every request with `hello from NODE`.
//!
//! The driver's gratuitous ARP updates the client's neighbour entry. An optional *move
//! announcer* thread (off by default, `announce_moves`) can still stand in for it: when a
//! package's address appears on a host where it was not, it flushes the client namespace's
//! neighbour entry for that address, so the client's next packet is resolved to the new holder.
//! It polls every 5 ms, like the checker.
//!
//! Optionally every node has a fence device (`ClusterSpec::fencing`): `[node.fencing]` with the
//! lab's agent [`FENCE_AGENT`] (`agents/fence_lab`) and `plug` = the host's network namespace,
//! so the coordinator powers a failed host off by setting its links down, killing every process
//! in its namespace and deleting its relocatable addresses; a package may then require fencing
//! (`PackageSpec::requires_fencing`, `requires = "fencing"`).
//!
//! Optionally one host is the quorum witness (`ClusterSpec::witness`): it runs `halcyon witness`
//! (configured as `[quorum.witness]` with the host's network-1 address) instead of a node, and
//! no package lists it. Where the lab gives hosts standby interfaces (`LabSpec::standby_networks`),
//! every node's configuration lists them with `standby = true` (local LAN failover).
//!
//! Each daemon runs with its own state directory `<lab>/hN/state`; its output is in the host's
//! log `<lab>/hN.log`. The API (port + 2 on the node's network-1 address) is asked from inside
//! the node's own namespace, so a cut link or a partition never hides a node's own view.
//!
//! Invariants: every wait is bounded (`ClusterSpec::start_timeout`, [`API_TIMEOUT`]); only
//! processes this cluster spawned are signalled, by PID; dropping the cluster stops the
//! announcer, and dropping the lab removes everything else.

use std::fs;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use halcyon_config::HeartbeatProfile;
use halcyon_testkit::config::{FenceDevice, Witness};
use halcyon_testkit::{ClusterConfig, Node, Package, Resource, http};
use serde_json::Value;

use crate::checker::{PackageWatch, ServiceMatch};
use crate::command;
use crate::command::Invocation;
use crate::lab::{HostProcess, Lab, LabSpec, io_error};
use crate::names::{self, CLIENT, LabId};
use crate::netlink::RouteSocket;
use crate::{LabError, fault};

/// Longest time one API request may take.
pub const API_TIMEOUT: Duration = Duration::from_secs(2);
/// Default base port (heartbeats; consensus on +1, API on +2). Namespaces keep labs apart.
pub const DEFAULT_PORT: u16 = 7400;
/// Period of the polls in waits and of the move announcer.
const POLL_PERIOD: Duration = Duration::from_millis(20);
const ANNOUNCER_PERIOD: Duration = Duration::from_millis(5);
/// The announcer stops by itself after this long.
const ANNOUNCER_RUN_TIME_MAX: Duration = Duration::from_secs(6 * 3600);
/// How long a daemon is given to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The lab's fence agent (fence-agents convention), in this crate's source tree.
pub const FENCE_AGENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/agents/fence_lab");
/// `timeout` of every node's fence device: one call of the agent. `off` gives up after about
/// 3 s of kill -9 rounds, so this leaves room for a loaded machine.
pub const FENCE_TIMEOUT: Duration = Duration::from_secs(10);

/// One failover package: a relocatable address on network 1 and a demo HTTP service on it.
#[derive(Debug, Clone)]
pub struct PackageSpec {
    pub name: String,
    /// Relocatable address on network 1, 198.18.1.200 ..= 198.18.1.249.
    pub address: Ipv4Addr,
    pub port: u16,
    /// The nodes (host numbers) in order of preference; empty: every host in order.
    pub nodes: Vec<usize>,
    /// `requires = "fencing"`: a takeover from a failed node waits for its confirmed fence and
    /// its lease. False: the default (`lease`), nothing written. Needs `ClusterSpec::fencing`.
    pub requires_fencing: bool,
}

impl PackageSpec {
    /// Package number `index` (0-based): `web` at 198.18.1.200 for 0, `pkg1` at .201, ...
    pub fn numbered(index: u8) -> PackageSpec {
        PackageSpec {
            name: if index == 0 {
                "web".to_string()
            } else {
                format!("pkg{index}")
            },
            address: names::relocatable_address(1, index),
            port: 8080,
            nodes: Vec::new(),
            requires_fencing: false,
        }
    }

    /// Text that appears in the command line of the package's service and nowhere else.
    pub fn marker(&self) -> String {
        format!("--bind {}:{}", self.address, self.port)
    }

    pub fn target(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.address, self.port)
    }

    /// What the external checker watches for this package.
    pub fn watch(&self) -> PackageWatch {
        PackageWatch {
            name: self.name.clone(),
            address: self.address,
            service: Some(ServiceMatch::CommandLineContains(self.marker())),
            probe_port: Some(self.port),
        }
    }
}

/// What to run on the lab.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// The `halcyon` binary.
    pub halcyon: PathBuf,
    pub packages: Vec<PackageSpec>,
    pub heartbeat_interval: Duration,
    pub sensitivity: u32,
    /// `[heartbeat] profile`: written instead of `interval` and `sensitivity` when those
    /// are the profile's own (see [`ClusterSpec::with_profile`]), else beside them.
    pub heartbeat_profile: Option<HeartbeatProfile>,
    /// `quorum.lease`; None: the daemon's default (the detection time).
    pub lease: Option<Duration>,
    /// Configure the lab's shared file as a `disk` network.
    pub disk_heartbeat: bool,
    pub port: u16,
    /// Longest wait for the cluster to form and start every package.
    pub start_timeout: Duration,
    /// Run the move announcer (see the module documentation); off by default, the `ip`
    /// driver sends gratuitous ARP itself.
    pub announce_moves: bool,
    /// `RUST_LOG` of the daemons: `HALCYON_LAB_RUST_LOG` if it is set (to look into a run
    /// of `compare` or `campaign`, e.g. `info,halcyon_consensus=debug,openraft=info`), else
    /// `info,openraft=warn`.
    pub log_filter: String,
    /// The host that runs the quorum witness (`halcyon witness`) instead of a node, if any.
    pub witness: Option<usize>,
    /// Give every node a fence device: `[node.fencing]` with [`FENCE_AGENT`], `plug` = the
    /// host's namespace and [`FENCE_TIMEOUT`]. Off by default.
    pub fencing: bool,
    /// Put every node's state directory on a tmpfs of this many bytes of its own, so that a
    /// disk-full fault fills that node's disk only ([`LabCluster::fill_state`]). None: the
    /// state directories are plain directories of the lab's.
    pub state_size: Option<u64>,
    /// No credentials: every daemon runs `--insecure` (nothing authenticated; the
    /// security-off side of `compare`'s `halcyon-insecure`). Off by default.
    pub insecure: bool,
    /// Configure only the lab's first this many IP networks (the hosts' interfaces on the
    /// others are up, in no configuration and no certificate: for a network `halcyon apply`
    /// adds later). None: every one.
    pub ip_networks: Option<usize>,
}

impl ClusterSpec {
    /// One package (`web`), default timing (100 ms x 4), the disk network, no announcer.
    pub fn new(halcyon: impl Into<PathBuf>) -> ClusterSpec {
        ClusterSpec {
            halcyon: halcyon.into(),
            packages: vec![PackageSpec::numbered(0)],
            heartbeat_interval: Duration::from_millis(100),
            sensitivity: 4,
            heartbeat_profile: None,
            lease: None,
            disk_heartbeat: true,
            port: DEFAULT_PORT,
            start_timeout: Duration::from_secs(90),
            announce_moves: false,
            log_filter: std::env::var("HALCYON_LAB_RUST_LOG")
                .unwrap_or_else(|_| "info,openraft=warn".to_string()),
            witness: None,
            fencing: false,
            state_size: None,
            insecure: false,
            ip_networks: None,
        }
    }

    /// The heartbeat profile `profile` (its interval and sensitivity).
    pub fn with_profile(mut self, profile: HeartbeatProfile) -> ClusterSpec {
        let heartbeat = profile.heartbeat();
        self.heartbeat_profile = Some(profile);
        self.heartbeat_interval = heartbeat.interval;
        self.sensitivity = heartbeat.sensitivity;
        self
    }

    /// About how long a path takes to be declared down: interval x sensitivity.
    pub fn detection(&self) -> Duration {
        self.heartbeat_interval * self.sensitivity
    }

    /// The lease in force: as configured, else the daemon's default, the longer of detection
    /// and the shortest lease that outlasts an election (`halcyon_config::timing::lease`:
    /// 619 ms at 100 ms x 4).
    pub fn lease(&self) -> Duration {
        halcyon_config::timing::lease(self.lease, self.heartbeat_interval, self.detection())
    }

    /// The daemon's own arithmetic for a node failure: detection, then the lease waited out
    /// with 1 % drift and 50 ms margin (halcyon-daemon `lease::release_deadline`).
    pub fn nominal_takeover(&self) -> Duration {
        self.detection() + self.lease().mul_f64(1.01) + Duration::from_millis(50)
    }

    /// The outage bound the lab tests assert: three times the nominal takeover (an election,
    /// a re-sent renewal and the package's start fit in that) plus 4 s for a loaded 2-core
    /// machine running debug builds. Generous on purpose: the benchmark measures, the tests
    /// catch what is clearly wrong.
    pub fn outage_bound(&self) -> Duration {
        self.nominal_takeover() * 3 + Duration::from_secs(4)
    }

    fn host_numbers(&self, package: &PackageSpec, hosts: usize) -> Vec<usize> {
        if package.nodes.is_empty() {
            self.node_hosts(hosts).collect()
        } else {
            package.nodes.clone()
        }
    }

    /// The hosts that run a node (every host but the witness's), out of `hosts` hosts.
    pub fn node_hosts(&self, hosts: usize) -> impl Iterator<Item = usize> + use<> {
        let witness = self.witness;
        (1..=hosts).filter(move |&host| Some(host) != witness)
    }
}

/// `h1`, `h2`, ...: node names are the hosts' labels.
pub fn node_name(host: usize) -> String {
    format!("h{host}")
}

/// The host of a node name `hN`.
pub fn host_of_node(name: &str) -> Option<usize> {
    name.strip_prefix('h')?.parse().ok()
}

/// The body the demo service answers with on `host`.
pub fn answer_of(host: usize) -> String {
    format!("hello from {}", node_name(host))
}

/// The host named in a demo service answer.
pub fn host_of_answer(answer: &str) -> Option<usize> {
    host_of_node(answer.strip_prefix("hello from ")?)
}

/// The cluster's configuration for the hosts and IP networks of `lab` (standby interfaces
/// included) and every package of `spec`; the fence devices (`spec.fencing`) name the
/// namespaces of lab `id`.
pub fn config(spec: &ClusterSpec, lab: &LabSpec, id: LabId, disk: &Path) -> ClusterConfig {
    let hosts = lab.hosts;
    let networks = spec
        .ip_networks
        .map_or(lab.networks, |n| n.min(lab.networks));
    let mut config = ClusterConfig::new("lab", 1, spec.port);
    let own = spec.heartbeat_profile.map(HeartbeatProfile::heartbeat);
    if let Some(profile) = spec.heartbeat_profile {
        config = config.heartbeat_profile(profile.name());
    }
    if own
        .is_none_or(|h| (h.interval, h.sensitivity) != (spec.heartbeat_interval, spec.sensitivity))
    {
        config = config.heartbeat(spec.heartbeat_interval, spec.sensitivity);
    }
    config.quorum.lease = spec.lease;
    config.quorum.witness = spec.witness.map(|witness| Witness {
        name: node_name(witness),
        number: u32::try_from(witness).expect("a host number fits u32"),
        address: names::host_address(witness, 1),
    });
    for network in 1..=networks {
        config = config.ip_network(
            &format!("net{network}"),
            &[&format!("198.18.{network}.0/24")],
        );
    }
    if spec.disk_heartbeat {
        config = config.disk_network("disk", disk);
    }
    for host in spec.node_hosts(hosts) {
        let mut node = Node::new(
            node_name(host),
            u32::try_from(host).expect("a host number fits u32"),
        );
        for network in 1..=networks {
            node = node.interface_on(
                &format!("net{network}"),
                names::host_address(host, network),
                &names::interface(network),
            );
        }
        for &network in &lab.standby_networks {
            node = node.standby_interface(
                &format!("net{network}"),
                names::standby_address(host, network),
                &names::standby_interface(network),
            );
        }
        if spec.fencing {
            node.fencing = Some(FenceDevice {
                agent: FENCE_AGENT.to_string(),
                options: vec![("plug".to_string(), id.host_namespace(host))],
                timeout: Some(FENCE_TIMEOUT),
            });
        }
        config = config.node(node);
    }
    for package in &spec.packages {
        config = config.package(package_config(spec, package, hosts));
    }
    config
}

/// The package `package`: its relocatable address on network 1, then its demo service.
fn package_config(spec: &ClusterSpec, package: &PackageSpec, hosts: usize) -> Package {
    let nodes: Vec<String> = spec
        .host_numbers(package, hosts)
        .into_iter()
        .map(node_name)
        .collect();
    let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let service = format!(
        "exec '{}' demo-http --bind {}:{} --name \"$HALCYON_NODE\"",
        spec.halcyon.display(),
        package.address,
        package.port
    );
    let mut config = Package::failover(&package.name, &nodes)
        .resource(Resource::Ip {
            network: "net1".into(),
            address: package.address,
            prefix: names::NETWORK_PREFIX_LENGTH,
        })
        .resource(Resource::Service {
            name: "http".into(),
            command: service,
            restart: Some(3),
            halt_timeout: Some(Duration::from_secs(2)),
            node_fail_fast: false,
        });
    config.failover_policy = Some("configured_node".into());
    config.failback_policy = Some("manual".into());
    if package.requires_fencing {
        config.requires = Some("fencing".into());
    }
    config
}

/// A Halcyon cluster running on a lab. Owns the lab: dropping the cluster stops the announcer
/// and then tears the lab down (every process killed by the lab's own cleanup).
pub struct LabCluster {
    spec: ClusterSpec,
    config_directory: PathBuf,
    /// The admin token of the credentials made in `config/pki` (the API needs it; empty
    /// when the cluster runs insecure).
    admin_token: String,
    /// HTTPS to the nodes' API with the cluster's CA (`config/pki/ca.crt`).
    /// HTTPS to the nodes' API with the cluster's CA (`config/pki/ca.crt`); `None` when the
    /// cluster runs insecure (plain HTTP). Read again by [`LabCluster::refresh_tls`].
    tls: Mutex<Option<http::Tls>>,
    daemons: Mutex<Vec<Option<HostProcess>>>,
    announcer: Option<Announcer>,
    // Declared last: dropped after the announcer.
    lab: Lab,
}

impl LabCluster {
    /// Writes the configuration, starts a daemon on every host (from the calling thread, which
    /// must outlive the cluster: see [`Lab::spawn`]), and waits until every node's API answers
    /// and every package is served (its demo service answers the client).
    pub fn start(lab: Lab, spec: ClusterSpec) -> Result<LabCluster, LabError> {
        if spec.packages.is_empty() || spec.packages.len() > names::RELOCATABLE_COUNT as usize {
            return Err(LabError::Spec(format!(
                "1..={} packages",
                names::RELOCATABLE_COUNT
            )));
        }
        for package in &spec.packages {
            if !names::is_lab_address(package.address) {
                return Err(LabError::Spec(format!(
                    "{} is outside 198.18.0.0/15",
                    package.address
                )));
            }
            if package.requires_fencing && !spec.fencing {
                return Err(LabError::Spec(format!(
                    "package {} requires fencing: set ClusterSpec::fencing",
                    package.name
                )));
            }
        }
        if !spec.halcyon.is_file() {
            return Err(LabError::Spec(format!(
                "no halcyon binary at {} (build it with `cargo build -p halcyon`)",
                spec.halcyon.display()
            )));
        }
        let hosts = lab.spec().hosts;
        if let Some(witness) = spec.witness
            && (witness == CLIENT || witness > hosts || spec.node_hosts(hosts).count() < 2)
        {
            return Err(LabError::Spec(format!(
                "the witness must be one of hosts 1..={hosts} and leave two or more nodes, not {witness}"
            )));
        }
        let config_directory = lab.directory().join("config");
        let cluster_config = config(&spec, lab.spec(), lab.id(), &lab.disk_heartbeat_path());
        cluster_config
            .write(&config_directory)
            .map_err(io_error("writing the configuration"))?;
        let admin_token = if spec.insecure {
            // The daemons take any request; the token sent is never looked at.
            String::new()
        } else {
            // The credentials `halcyon init` makes, where every daemon finds them (`config/pki`).
            let made = halcyon_pki::init(
                &config_directory.join("pki"),
                &cluster_config.credentials_spec(),
                false,
                std::time::SystemTime::now(),
            )
            .map_err(|e| LabError::Spec(format!("creating the cluster's credentials: {e}")))?;
            made.tokens
                .iter()
                .find(|t| t.role == halcyon_pki::Role::Admin)
                .map(|t| t.secret.clone())
                .expect("init makes an admin token")
        };
        let tls = Mutex::new(client_tls(&config_directory, spec.insecure)?);
        let announcer = if spec.announce_moves {
            Some(Announcer::start(&lab, &spec.packages)?)
        } else {
            None
        };
        if let Some(size) = spec.state_size {
            for host in spec.node_hosts(hosts) {
                // Unmounted by the lab's teardown (and by `halcyon-lab cleanup`).
                mount_tmpfs(&lab.host_directory(host).join(STATE), size)?;
            }
        }
        let cluster = LabCluster {
            spec,
            config_directory,
            admin_token,
            tls,
            daemons: Mutex::new(vec![None; hosts + 1]),
            announcer,
            lab,
        };
        for host in cluster.lab.hosts() {
            cluster.start_daemon(host)?;
        }
        let deadline = Instant::now() + cluster.spec.start_timeout;
        for host in cluster.lab.hosts() {
            cluster.wait_for("the API of every node", deadline, || {
                cluster.status(host).is_ok().then_some(())
            })?;
        }
        cluster.wait_until_served(deadline)?;
        Ok(cluster)
    }

    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// The admin token of the cluster's credentials.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// HTTPS to the nodes' API: their certificates checked with the cluster's CA (`None`:
    /// the cluster runs insecure, plain HTTP).
    pub fn tls(&self) -> Option<http::Tls> {
        self.tls
            .lock()
            .expect("the TLS settings are replaced whole")
            .clone()
    }

    /// Reads the cluster's CA file again (after a step of a credentials rollover changed it).
    pub fn refresh_tls(&self) -> Result<(), LabError> {
        let tls = client_tls(&self.config_directory, self.spec.insecure)?;
        *self
            .tls
            .lock()
            .expect("the TLS settings are replaced whole") = tls;
        Ok(())
    }

    pub fn config_directory(&self) -> &Path {
        &self.config_directory
    }

    /// Every host of the lab (the witness's too).
    pub fn hosts(&self) -> std::ops::RangeInclusive<usize> {
        self.lab.hosts()
    }

    /// The hosts that run a node: every host but the witness's.
    pub fn nodes(&self) -> impl Iterator<Item = usize> + use<> {
        self.spec.node_hosts(self.lab.spec().hosts)
    }

    /// The host running the quorum witness, if any.
    pub fn witness(&self) -> Option<usize> {
        self.spec.witness
    }

    pub fn package(&self, name: &str) -> Option<&PackageSpec> {
        self.spec
            .packages
            .iter()
            .find(|package| package.name == name)
    }

    /// The checker's watches, one per package.
    pub fn watches(&self) -> Vec<PackageWatch> {
        self.spec.packages.iter().map(PackageSpec::watch).collect()
    }

    /// Moves the announcer has made so far.
    pub fn announced_moves(&self) -> u64 {
        self.announcer
            .as_ref()
            .map_or(0, |announcer| announcer.flushes.load(Ordering::Relaxed))
    }

    fn lock_daemons(&self) -> MutexGuard<'_, Vec<Option<HostProcess>>> {
        self.daemons
            .lock()
            .expect("a lock was poisoned: a thread panicked while holding it")
    }

    /// The daemon process of `host` (also when it has exited or is stopped).
    pub fn daemon(&self, host: usize) -> Option<HostProcess> {
        self.lock_daemons()[host]
    }

    pub fn daemon_running(&self, host: usize) -> bool {
        self.daemon(host)
            .is_some_and(|process| self.lab.is_running(&process))
    }

    /// Starts `host`'s daemon (again, if it ran before and has exited). No-op while it runs.
    /// On the witness's host the "daemon" is `halcyon witness`.
    pub fn start_daemon(&self, host: usize) -> Result<HostProcess, LabError> {
        if let Some(process) = self.daemon(host)
            && self.lab.is_running(&process)
        {
            return Ok(process);
        }
        let state_directory = self.state_directory(host);
        let config = self.config_directory.display().to_string();
        let state = state_directory.display().to_string();
        // Every host shares this machine's file system: each daemon its own API socket.
        let socket = state_directory.join("api.sock").display().to_string();
        let node = node_name(host);
        let halcyon = self.spec.halcyon.display().to_string();
        let mut args: Vec<&str> = if self.spec.witness == Some(host) {
            vec!["witness", "--config", &config, "--state-dir", &state]
        } else {
            vec![
                "daemon",
                "--config",
                &config,
                "--node",
                &node,
                "--state-dir",
                &state,
                "--api-socket",
                &socket,
            ]
        };
        if self.spec.insecure {
            args.push("--insecure");
        }
        let process = self.lab.spawn(
            host,
            &halcyon,
            &args,
            &[("RUST_LOG", &self.spec.log_filter), ("NO_COLOR", "1")],
        )?;
        self.lock_daemons()[host] = Some(process);
        Ok(process)
    }

    /// `host`'s state directory (`--state-dir` of its daemon).
    pub fn state_directory(&self, host: usize) -> PathBuf {
        self.lab.host_directory(host).join(STATE)
    }

    /// Fills `host`'s state directory until its file system refuses more (`ENOSPC`); it must
    /// be a tmpfs of its own ([`ClusterSpec::state_size`]). Returns the bytes written.
    pub fn fill_state(&self, host: usize) -> Result<u64, LabError> {
        let Some(size) = self.spec.state_size else {
            return Err(LabError::Spec(
                "a disk-full fault needs ClusterSpec::state_size".into(),
            ));
        };
        let path = self.state_directory(host).join(FILLER);
        let mut file = fs::File::create(&path).map_err(io_error("creating the filler"))?;
        let block = vec![0u8; 64 * 1024];
        let mut written = 0u64;
        // Bounded: a tmpfs of `size` bytes is full before `size` more are written.
        while written <= size {
            match file.write(&block) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return Ok(written),
                Err(source) => {
                    return Err(LabError::Io {
                        context: format!("filling {}", path.display()),
                        source,
                    });
                }
            }
        }
        Err(LabError::Spec(format!(
            "{} took {written} bytes without filling up: is it a tmpfs of its own?",
            path.display()
        )))
    }

    /// Removes what [`LabCluster::fill_state`] wrote.
    pub fn free_state(&self, host: usize) -> Result<(), LabError> {
        match fs::remove_file(self.state_directory(host).join(FILLER)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LabError::Io {
                context: "removing the filler".into(),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Writes `bytes` (position in millionths of the file's length, value) into `host`'s
    /// Raft database while its daemon is stopped: silent corruption of the disk.
    pub fn corrupt_state(&self, host: usize, bytes: &[(u32, u8)]) -> Result<(), LabError> {
        if self.daemon_running(host) {
            return Err(LabError::Spec(format!(
                "corrupting h{host}'s state while its daemon runs"
            )));
        }
        let path = self.state_directory(host).join(RAFT_DATABASE);
        let mut data = fs::read(&path).map_err(io_error("reading the Raft database"))?;
        if data.is_empty() {
            return Err(LabError::Spec(format!("{} is empty", path.display())));
        }
        for &(at, value) in bytes {
            let index = (data.len() as u64 * u64::from(at.min(999_999)) / 1_000_000) as usize;
            // A value equal to what is there would change nothing: flip it instead.
            data[index] = if data[index] == value { !value } else { value };
        }
        fs::write(&path, data).map_err(io_error("writing the Raft database"))
    }

    /// Empties `host`'s state directory (the documented way to rebuild a node whose disk
    /// was lost or corrupted); its daemon must be stopped.
    pub fn wipe_state(&self, host: usize) -> Result<(), LabError> {
        if self.daemon_running(host) {
            return Err(LabError::Spec(format!(
                "wiping h{host}'s state while its daemon runs"
            )));
        }
        let directory = self.state_directory(host);
        for entry in fs::read_dir(&directory).map_err(io_error("listing the state directory"))? {
            let path = entry
                .map_err(io_error("listing the state directory"))?
                .path();
            let removed = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.map_err(io_error("emptying the state directory"))?;
        }
        Ok(())
    }

    /// SIGKILL of `host`'s daemon only (its services keep running); waits until it has exited.
    /// Returns the instant of the signal.
    pub fn kill_daemon(&self, host: usize) -> Result<Instant, LabError> {
        let process = self
            .daemon(host)
            .ok_or_else(|| LabError::Spec(format!("no daemon was started on h{host}")))?;
        // A stopped process dies of SIGKILL too.
        self.lab.signal(&process, libc::SIGKILL)?;
        let at = Instant::now();
        if self.lab.wait_exit(&process, STOP_TIMEOUT).is_none() {
            return Err(LabError::StillRunning { pid: process.pid });
        }
        Ok(at)
    }

    /// Daemon restart: SIGKILL of the daemon only, then started again at once. Returns the
    /// instant of the kill.
    pub fn restart_daemon(&self, host: usize) -> Result<Instant, LabError> {
        let at = self.kill_daemon(host)?;
        self.start_daemon(host)?;
        Ok(at)
    }

    /// SIGHUP to `host`'s daemon: it loads its credentials again (a rollover step).
    pub fn reload_daemon(&self, host: usize) -> Result<(), LabError> {
        let process = self
            .daemon(host)
            .ok_or_else(|| LabError::Spec(format!("no daemon on h{host}")))?;
        self.lab.signal(&process, libc::SIGHUP)
    }

    /// SIGSTOP of `host`'s daemon (its services keep running).
    pub fn pause_daemon(&self, host: usize) -> Result<Instant, LabError> {
        let process = self
            .daemon(host)
            .ok_or_else(|| LabError::Spec(format!("no daemon on h{host}")))?;
        fault::pause(&self.lab, &process)
    }

    pub fn resume_daemon(&self, host: usize) -> Result<Instant, LabError> {
        let process = self
            .daemon(host)
            .ok_or_else(|| LabError::Spec(format!("no daemon on h{host}")))?;
        fault::resume(&self.lab, &process)
    }

    /// Power loss of `host`: links down, every process killed, and the relocatable addresses
    /// gone with the machine's memory. Returns the instant the links went down.
    pub fn power_off(&self, host: usize) -> Result<Instant, LabError> {
        let at = fault::power_off(&self.lab, host)?;
        self.forget_relocatable_addresses(host)?;
        Ok(at)
    }

    /// Power back on: links up, the daemon started (a boot).
    pub fn power_on(&self, host: usize) -> Result<Instant, LabError> {
        let at = fault::power_on(&self.lab, host)?;
        self.start_daemon(host)?;
        Ok(at)
    }

    /// Removes every package address from `host` (what a reboot does to interface addresses).
    pub fn forget_relocatable_addresses(&self, host: usize) -> Result<(), LabError> {
        let present = self.lab.addresses(host)?;
        for package in &self.spec.packages {
            if present.contains(&package.address) {
                self.lab
                    .delete_address(host, 1, package.address, names::NETWORK_PREFIX_LENGTH)?;
            }
        }
        Ok(())
    }

    /// `GET path` of `host`'s API, asked from inside `host`'s namespace.
    pub fn api_get(&self, host: usize, path: &str) -> Result<Value, LabError> {
        let address = SocketAddrV4::new(names::host_address(host, 1), self.spec.port + 2);
        let path = path.to_string();
        let token = self.admin_token.clone();
        let tls = self.tls();
        crate::netns::in_namespace(self.lab.namespace_path(host), move || {
            get_json(tls.as_ref(), address, &path, &token, API_TIMEOUT)
        })
        .and_then(|result| result)
        .map_err(io_error("asking a node's API"))
    }

    /// `POST path` with a JSON `body` to `host`'s API, asked from inside `host`'s namespace:
    /// the status code and the answer.
    pub fn api_post(&self, host: usize, path: &str, body: &str) -> Result<(u16, Value), LabError> {
        let address = SocketAddrV4::new(names::host_address(host, 1), self.spec.port + 2);
        let (path, body) = (path.to_string(), body.to_string());
        let token = self.admin_token.clone();
        let tls = self.tls();
        crate::netns::in_namespace(self.lab.namespace_path(host), move || {
            request_json(
                tls.as_ref(),
                address,
                "POST",
                &path,
                &token,
                Some(&body),
                API_TIMEOUT,
            )
        })
        .and_then(|result| result)
        .map_err(io_error("asking a node's API"))
    }

    /// An API flood: `requests` concurrent `GET /v1/status` of `to`'s API from inside
    /// `from`'s namespace, each within `timeout` (so the flood ends within about `timeout`).
    /// Returns how many were answered with 200.
    pub fn api_flood(
        &self,
        from: usize,
        to: usize,
        requests: usize,
        timeout: Duration,
    ) -> Result<usize, LabError> {
        let address = SocketAddrV4::new(names::host_address(to, 1), self.spec.port + 2);
        let token = self.admin_token.clone();
        let tls = self.tls();
        crate::netns::in_namespace(self.lab.namespace_path(from), move || {
            // Threads started here are in the namespace too (they inherit this thread's).
            std::thread::scope(|scope| {
                let requests: Vec<_> = (0..requests)
                    .map(|_| {
                        let (token, tls) = (&token, &tls);
                        scope.spawn(move || {
                            matches!(
                                request_json(
                                    tls.as_ref(),
                                    address,
                                    "GET",
                                    "/v1/status",
                                    token,
                                    None,
                                    timeout
                                ),
                                Ok((200, _))
                            )
                        })
                    })
                    .collect();
                requests
                    .into_iter()
                    .map(|r| r.join().unwrap_or(false))
                    .filter(|&ok| ok)
                    .count()
            })
        })
        .map_err(io_error("flooding a node's API"))
    }

    /// Asks `host`'s API to move `package` to `to` (what `halcyon package move` sends); Ok
    /// when accepted. The move itself takes place afterwards: wait with [`Self::holder`].
    pub fn move_package(&self, host: usize, package: &str, to: usize) -> Result<(), LabError> {
        let body = serde_json::json!({ "node": node_name(to) }).to_string();
        let (status, answer) =
            self.api_post(host, &format!("/v1/packages/{package}/move"), &body)?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(LabError::Spec(format!(
                "moving {package} to {} refused ({status}): {answer}",
                node_name(to)
            )))
        }
    }

    /// The coordinator (Raft leader) as `host` names it.
    pub fn coordinator(&self, host: usize) -> Option<usize> {
        host_of_node(self.status(host).ok()?["coordinator"].as_str()?)
    }

    /// `GET /v1/status` of `host`.
    pub fn status(&self, host: usize) -> Result<Value, LabError> {
        self.api_get(host, "/v1/status")
    }

    /// The status of every node whose daemon runs and answers (not the witness's).
    pub fn statuses(&self) -> Vec<(usize, Value)> {
        self.nodes()
            .filter(|&host| self.daemon_running(host))
            .filter_map(|host| Some((host, self.status(host).ok()?)))
            .collect()
    }

    /// The node running `package` according to the API: asked of every answering node, the
    /// first answer from a node that has a quorum and shows the package up.
    pub fn holder(&self, package: &str) -> Option<usize> {
        self.statuses()
            .into_iter()
            .filter(|(_, status)| has_quorum(status))
            .find_map(|(_, status)| holder_in(&status, package))
    }

    /// Which host serves `package` to the client right now (one HTTP GET).
    pub fn serving_host(&self, package: &str) -> Option<usize> {
        let target = self.package(package)?.target();
        let answer = self
            .lab
            .http_get(CLIENT, target, Duration::from_millis(300))
            .ok()?;
        host_of_answer(&answer)
    }

    /// Waits until every package is served to the client and the API names the same holder.
    pub fn wait_until_served(&self, deadline: Instant) -> Result<Vec<usize>, LabError> {
        let mut holders = Vec::new();
        for package in &self.spec.packages {
            let host = self.wait_for(
                &format!("package {} to be served", package.name),
                deadline,
                || {
                    let serving = self.serving_host(&package.name)?;
                    (self.holder(&package.name) == Some(serving)).then_some(serving)
                },
            )?;
            holders.push(host);
        }
        Ok(holders)
    }

    /// Polls `probe` every 20 ms until it gives a value or `deadline` passes.
    pub fn wait_for<T>(
        &self,
        what: &str,
        deadline: Instant,
        mut probe: impl FnMut() -> Option<T>,
    ) -> Result<T, LabError> {
        let started = Instant::now();
        loop {
            if let Some(value) = probe() {
                return Ok(value);
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: what.to_string(),
                    after: started.elapsed(),
                });
            }
            std::thread::sleep(POLL_PERIOD);
        }
    }

    /// The event log as `host` shows it (the last events, newest first).
    pub fn events(&self, host: usize) -> Result<Vec<Value>, LabError> {
        Ok(self.status(host)?["events"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The last lines of `host`'s log (daemon and services), for failure messages.
    pub fn log_tail(&self, host: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(self.lab.log_path(host)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Log lines of `host` containing `needle`.
    pub fn log_lines_containing(&self, host: usize, needle: &str) -> Vec<String> {
        std::fs::read_to_string(self.lab.log_path(host))
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(needle))
            .map(str::to_string)
            .collect()
    }

    /// SIGTERM to every running daemon (each halts its packages), waiting at most 10 s in
    /// total, then SIGKILL of what is left. Services are left to the lab's cleanup.
    pub fn stop_all(&self) {
        let running: Vec<HostProcess> = self
            .hosts()
            .filter_map(|host| self.daemon(host))
            .filter(|process| self.lab.is_running(process))
            .collect();
        for process in &running {
            let _ = self.lab.signal(process, libc::SIGCONT);
            let _ = self.lab.signal(process, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for process in &running {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if self.lab.wait_exit(process, remaining).is_none() {
                let _ = self.lab.signal(process, libc::SIGKILL);
                let _ = self.lab.wait_exit(process, Duration::from_secs(2));
            }
        }
    }
}

impl Drop for LabCluster {
    fn drop(&mut self) {
        if let Some(announcer) = self.announcer.take() {
            announcer.stop();
        }
    }
}

/// True when `status` comes from a node that sees a quorum.
pub fn has_quorum(status: &Value) -> bool {
    status["quorum"]["has_quorum"].as_bool() == Some(true)
}

/// The host running `package` in a status answer, if it is up.
pub fn holder_in(status: &Value, package: &str) -> Option<usize> {
    let entry = status["packages"]
        .as_array()?
        .iter()
        .find(|entry| entry["name"] == package)?;
    if entry["status"] != "up" {
        return None;
    }
    host_of_node(entry["nodes"].as_array()?.first()?.as_str()?)
}

/// The API's TLS for a cluster configured in `config_directory` (none when insecure).
fn client_tls(config_directory: &Path, insecure: bool) -> Result<Option<http::Tls>, LabError> {
    if insecure {
        return Ok(None);
    }
    http::tls_with_ca_file(&config_directory.join("pki").join("ca.crt"))
        .map(Some)
        .map_err(|e| LabError::Spec(format!("the cluster's CA: {e}")))
}

/// GET of `path`, the body parsed as JSON (any status: errors are JSON too).
fn get_json(
    tls: Option<&http::Tls>,
    address: SocketAddrV4,
    path: &str,
    token: &str,
    timeout: Duration,
) -> std::io::Result<Value> {
    request_json(tls, address, "GET", path, token, None, timeout).map(|(_, value)| value)
}

/// A request with an optional JSON body; the status code and the body parsed as JSON.
fn request_json(
    tls: Option<&http::Tls>,
    address: SocketAddrV4,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&str>,
    timeout: Duration,
) -> std::io::Result<(u16, Value)> {
    let response = http::request_tls(
        tls,
        address.into(),
        method,
        path,
        Some(token),
        body,
        timeout,
    )
    .map_err(std::io::Error::other)?;
    let value = serde_json::from_str(&response.body)
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error))?;
    Ok((response.status, value))
}

/// The move announcer (see the module documentation).
struct Announcer {
    stop: Arc<AtomicBool>,
    flushes: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Announcer {
    fn start(lab: &Lab, packages: &[PackageSpec]) -> Result<Announcer, LabError> {
        let mut sockets = Vec::new();
        for host in lab.hosts() {
            sockets.push(
                RouteSocket::open_in(lab.namespace_path(host))
                    .map_err(io_error("opening netlink in a host"))?,
            );
        }
        let client = lab.namespace_path(CLIENT).to_path_buf();
        let addresses: Vec<Ipv4Addr> = packages.iter().map(|package| package.address).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let flushes = Arc::new(AtomicU64::new(0));
        let thread = {
            let stop = stop.clone();
            let flushes = flushes.clone();
            std::thread::Builder::new()
                .name("lab-announcer".into())
                .spawn(move || announce(sockets, client, addresses, stop, flushes))
                .map_err(io_error("starting the move announcer"))?
        };
        Ok(Announcer {
            stop,
            flushes,
            thread: Some(thread),
        })
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn announce(
    mut sockets: Vec<RouteSocket>,
    client: PathBuf,
    addresses: Vec<Ipv4Addr>,
    stop: Arc<AtomicBool>,
    flushes: Arc<AtomicU64>,
) {
    let started = Instant::now();
    let mut holders: Vec<Vec<bool>> = vec![vec![false; sockets.len()]; addresses.len()];
    let device = names::interface(1);
    while !stop.load(Ordering::Relaxed) && started.elapsed() < ANNOUNCER_RUN_TIME_MAX {
        for (host_index, socket) in sockets.iter_mut().enumerate() {
            let Ok(present) = socket.ipv4_addresses() else {
                continue;
            };
            for (package, address) in addresses.iter().enumerate() {
                let now = present.iter().any(|entry| entry.address == *address);
                if now && !holders[package][host_index] {
                    let address = address.to_string();
                    let flushed =
                        Invocation::new("ip", &["neigh", "flush", "to", &address, "dev", &device])
                            .in_netns(&client)
                            .timeout(Duration::from_secs(2))
                            .output();
                    if flushed.is_ok() {
                        flushes.fetch_add(1, Ordering::Relaxed);
                    }
                }
                holders[package][host_index] = now;
            }
        }
        std::thread::sleep(ANNOUNCER_PERIOD);
    }
}

/// A node's state directory in its host's directory.
const STATE: &str = "state";
/// The file a disk-full fault fills its state directory with.
const FILLER: &str = "filler";
/// The daemon's Raft database in its state directory.
const RAFT_DATABASE: &str = "raft.redb";

/// Mounts a tmpfs of `size` bytes, owner-only, on `directory` (created if missing).
fn mount_tmpfs(directory: &Path, size: u64) -> Result<(), LabError> {
    fs::create_dir_all(directory).map_err(io_error("creating a state directory"))?;
    let options = format!("size={size},mode=0700");
    let target = directory.display().to_string();
    command::run("mount", &["-t", "tmpfs", "-o", &options, "tmpfs", &target]).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB: LabId = LabId { pid: 1234, slot: 0 };

    #[test]
    fn the_lease_is_the_daemons_the_configured_one_or_the_profiles() {
        let ms = Duration::from_millis;
        let spec = ClusterSpec::new("/opt/halcyon");
        assert_eq!((spec.detection(), spec.lease()), (ms(400), ms(619)));
        let configured = ClusterSpec {
            lease: Some(ms(700)),
            ..ClusterSpec::new("/opt/halcyon")
        };
        assert_eq!(configured.lease(), ms(700));
        let fast = ClusterSpec::new("/opt/halcyon").with_profile(HeartbeatProfile::Fast);
        assert_eq!((fast.detection(), fast.lease()), (ms(90), ms(221)));
    }

    #[test]
    fn configuration_names_nodes_networks_disk_and_the_package_resources() {
        let mut spec = ClusterSpec::new("/opt/halcyon");
        spec.lease = Some(Duration::from_millis(600));
        let lab = LabSpec {
            hosts: 3,
            networks: 2,
            ..LabSpec::default()
        };
        let config = config(&spec, &lab, LAB, Path::new("/tmp/lab/disk-heartbeat"));
        let cluster = config.cluster_toml();
        assert!(
            cluster.contains("interval = \"100ms\"\nsensitivity = 4"),
            "{cluster}"
        );
        assert!(cluster.contains("[quorum]\nlease = \"600ms\""), "{cluster}");
        assert!(
            cluster.contains("subnets = [\"198.18.2.0/24\"]"),
            "{cluster}"
        );
        assert!(
            cluster.contains("kind = \"disk\"\ndevice = \"/tmp/lab/disk-heartbeat\""),
            "{cluster}"
        );
        assert!(cluster.contains("name = \"h3\"\nnumber = 3"), "{cluster}");
        assert!(
            cluster.contains("address = \"198.18.2.3\"\ndevice = \"eth2\""),
            "{cluster}"
        );
        let package = config.packages[0].to_toml();
        assert!(
            package.contains("nodes = [\"h1\", \"h2\", \"h3\"]"),
            "{package}"
        );
        assert!(
            package.contains("kind = \"ip\"\nnetwork = \"net1\"\naddress = \"198.18.1.200/24\""),
            "{package}"
        );
        match &config.packages[0].resources[1] {
            Resource::Service { command, .. } => assert_eq!(
                command,
                "exec '/opt/halcyon' demo-http --bind 198.18.1.200:8080 --name \"$HALCYON_NODE\""
            ),
            other => panic!("the second resource is the service, not {other:?}"),
        }
        assert!(spec.outage_bound() > spec.nominal_takeover());
        assert!(!cluster.contains("standby") && !cluster.contains("witness"));
        assert!(!cluster.contains("fencing"), "{cluster}");
        assert!(!package.contains("requires"), "{package}");
    }

    #[test]
    fn fencing_gives_every_node_the_lab_agent_on_its_namespace_and_a_package_may_require_it() {
        let mut spec = ClusterSpec::new("/opt/halcyon");
        spec.fencing = true;
        spec.witness = Some(3);
        spec.packages[0].requires_fencing = true;
        let mut other = PackageSpec::numbered(1);
        other.nodes = vec![2, 1];
        spec.packages.push(other);
        let lab = LabSpec {
            hosts: 3,
            networks: 1,
            ..LabSpec::default()
        };
        let config = config(&spec, &lab, LAB, Path::new("/tmp/lab/disk-heartbeat"));
        let cluster = config.cluster_toml();
        for host in [1, 2] {
            let fencing = format!(
                "[node.fencing]\nagent = \"{FENCE_AGENT}\"\ntimeout = \"10s\"\n\n[node.fencing.options]\nplug = \"hl1234ah{host}\"\n"
            );
            assert!(cluster.contains(&fencing), "{cluster}");
        }
        assert_eq!(cluster.matches("[node.fencing]").count(), 2, "{cluster}");
        assert!(Path::new(FENCE_AGENT).is_file(), "{FENCE_AGENT}");
        let web = config.packages[0].to_toml();
        assert!(web.contains("requires = \"fencing\""), "{web}");
        let pkg1 = config.packages[1].to_toml();
        assert!(!pkg1.contains("requires"), "{pkg1}");
    }

    #[test]
    fn a_witness_host_is_no_node_and_standby_interfaces_are_listed() {
        let mut spec = ClusterSpec::new("/opt/halcyon");
        spec.witness = Some(3);
        let lab = LabSpec {
            hosts: 3,
            networks: 2,
            standby_networks: vec![1],
            ..LabSpec::default()
        };
        let config = config(&spec, &lab, LAB, Path::new("/tmp/lab/disk-heartbeat"));
        let cluster = config.cluster_toml();
        assert!(
            cluster
                .contains("[quorum.witness]\nname = \"h3\"\nnumber = 3\naddress = \"198.18.1.3\""),
            "{cluster}"
        );
        assert!(!cluster.contains("[[node]]\nname = \"h3\""), "{cluster}");
        assert!(
            cluster.contains(
                "network = \"net1\"\naddress = \"198.18.1.102\"\ndevice = \"eth1s\"\nstandby = true"
            ),
            "{cluster}"
        );
        let package = config.packages[0].to_toml();
        assert!(package.contains("nodes = [\"h1\", \"h2\"]"), "{package}");
    }

    #[test]
    fn a_heartbeat_profile_is_written_alone_unless_the_interval_was_changed_after() {
        let lab = LabSpec {
            hosts: 3,
            networks: 1,
            ..LabSpec::default()
        };
        let fast = ClusterSpec::new("/opt/halcyon").with_profile(HeartbeatProfile::Fast);
        assert_eq!(fast.detection(), Duration::from_millis(90));
        let cluster = config(&fast, &lab, LAB, Path::new("/tmp/lab/disk-heartbeat")).cluster_toml();
        assert!(
            cluster.contains("[heartbeat]\nprofile = \"fast\"\n\n"),
            "{cluster}"
        );
        assert!(!cluster.contains("interval"), "{cluster}");
        let mut tuned = fast;
        tuned.sensitivity = 5;
        let cluster =
            config(&tuned, &lab, LAB, Path::new("/tmp/lab/disk-heartbeat")).cluster_toml();
        assert!(
            cluster.contains("profile = \"fast\"\ninterval = \"30ms\"\nsensitivity = 5"),
            "{cluster}"
        );
    }

    #[test]
    fn answers_and_node_names_map_to_hosts() {
        assert_eq!(host_of_answer(&answer_of(4)), Some(4));
        assert_eq!(host_of_node("h12"), Some(12));
        assert_eq!(host_of_answer("hello from x"), None);
        let status = serde_json::json!({
            "quorum": {"has_quorum": true},
            "packages": [{"name": "web", "status": "up", "nodes": ["h2"]}],
        });
        assert!(has_quorum(&status));
        assert_eq!(holder_in(&status, "web"), Some(2));
        assert_eq!(holder_in(&status, "db"), None);
    }
}
