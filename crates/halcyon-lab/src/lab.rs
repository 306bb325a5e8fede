//! Building a lab (namespaces, bridges, veths, guards), running commands on its hosts, and
//! tearing everything down again on every exit path.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::command::{self, Invocation};
use crate::names::{self, CLIENT, HOSTS_MAX, LabId, NETWORKS_MAX};
use crate::netlink::RouteSocket;
use crate::{LabError, cleanup, netns};

/// nftables table in every namespace that drops and counts traffic leaving the lab range.
pub const GUARD_TABLE: &str = "halcyon_lab_guard";
/// nftables table in every namespace whose set `blocked` holds the peers cut off by partitions.
pub const PARTITION_TABLE: &str = "halcyon_lab_partition";
/// Longest wait for killed processes to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Rounds of "find every process in the namespace and SIGKILL it".
const KILL_ROUNDS_MAX: usize = 500;
/// Longest time `Lab::http_get` and `Lab::ping` may take.
pub const PROBE_TIMEOUT_MAX: Duration = Duration::from_secs(10);

/// Routing tables of the source routes of hosts with standby interfaces: primary + network,
/// standby + network.
const PRIMARY_ROUTE_TABLE: u32 = 100;
const STANDBY_ROUTE_TABLE: u32 = 200;

static NEXT_SLOT: AtomicU8 = AtomicU8::new(0);

/// What to build.
#[derive(Debug, Clone)]
pub struct LabSpec {
    /// Number of hosts, 1..=HOSTS_MAX; hosts are numbered from 1.
    pub hosts: usize,
    /// Number of IP networks (bridges), 1..=NETWORKS_MAX; networks are numbered from 1.
    pub networks: usize,
    /// Keep the lab directory (logs, host directories) after the lab is dropped.
    pub keep_directory: bool,
    /// Networks on which every host also has a standby interface (`eth<n>s`, address
    /// `198.18.<n>.<100 + host>`) into the same bridge: a second adapter on the same LAN, for
    /// local LAN failover. Hosts of such a lab set `ignore_routes_with_linkdown`, `arp_ignore`
    /// and `arp_announce` (see `create`). Empty by default.
    pub standby_networks: Vec<usize>,
}

impl Default for LabSpec {
    fn default() -> Self {
        LabSpec {
            hosts: 3,
            networks: 2,
            keep_directory: false,
            standby_networks: Vec::new(),
        }
    }
}

/// A command started on a host by [`Lab::spawn`]. A plain handle: the lab owns the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HostProcess {
    /// Position in the lab's process list (unique within the lab).
    pub id: usize,
    /// Host number (CLIENT for the client namespace).
    pub host: usize,
    /// PID, which is also its process group and session id.
    pub pid: u32,
}

/// The parts of a lab the checker needs, detached from the lab's lifetime.
#[derive(Debug, Clone)]
pub struct Topology {
    pub id: LabId,
    pub hosts: usize,
    pub networks: usize,
    /// `/run/netns/NAME` for index 0 (the client) and each host 1..=hosts.
    pub namespace_paths: Vec<PathBuf>,
    /// Namespace inodes, indexed like `namespace_paths`.
    pub namespace_inodes: Vec<u64>,
}

impl Topology {
    /// The host (or CLIENT) whose namespace has inode `inode`.
    pub fn host_of_namespace(&self, inode: u64) -> Option<usize> {
        self.namespace_inodes
            .iter()
            .position(|&candidate| candidate == inode)
    }
}

struct ProcessRecord {
    handle: HostProcess,
    child: Child,
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    exit: Option<ExitStatus>,
}

/// Objects created so far, in creation order; Drop removes exactly these.
#[derive(Default)]
struct Created {
    namespaces: Vec<String>,
    bridges: Vec<String>,
    ports: Vec<String>,
    directory: Option<PathBuf>,
    owner_record: Option<PathBuf>,
}

/// A running lab. Dropping it kills every process it started (and everything else in its
/// namespaces) and removes its namespaces, bridges, veths and directory.
pub struct Lab {
    id: LabId,
    spec: LabSpec,
    directory: PathBuf,
    created: Created,
    topology: Topology,
    /// Index of `eth<n>` in each namespace: `[namespace][network - 1]` (client: network 1 only).
    interface_indexes: Vec<Vec<u32>>,
    /// Index of each bridge port in the lab owner's namespace: `[namespace][network - 1]`.
    port_indexes: Vec<Vec<u32>>,
    /// Index of the bridge port of each standby interface: `(host, network)`.
    standby_port_indexes: HashMap<(usize, usize), u32>,
    /// Index of each standby interface inside its namespace: `(host, network)`.
    standby_interface_indexes: HashMap<(usize, usize), u32>,
    root_netlink: Mutex<RouteSocket>,
    namespace_netlink: Vec<Mutex<RouteSocket>>,
    processes: Mutex<Vec<ProcessRecord>>,
}

impl Lab {
    /// Builds the lab: bridges, namespaces, veths, addresses, guards. On any error everything
    /// created so far is removed again. Also removes leftovers of labs whose owner has died.
    pub fn build(spec: LabSpec) -> Result<Lab, LabError> {
        if spec.hosts == 0 || spec.hosts > HOSTS_MAX {
            return Err(LabError::Spec(format!(
                "hosts must be 1..={HOSTS_MAX}, not {}",
                spec.hosts
            )));
        }
        if spec.networks == 0 || spec.networks > NETWORKS_MAX {
            return Err(LabError::Spec(format!(
                "networks must be 1..={NETWORKS_MAX}, not {}",
                spec.networks
            )));
        }
        for (position, &network) in spec.standby_networks.iter().enumerate() {
            if network == 0 || network > spec.networks {
                return Err(LabError::Spec(format!(
                    "standby interface on network {network}, but the networks are 1..={}",
                    spec.networks
                )));
            }
            if spec.standby_networks[..position].contains(&network) {
                return Err(LabError::Spec(format!(
                    "network {network} is listed twice among the standby networks"
                )));
            }
        }
        check_tools()?;
        if let Err(error) = cleanup::remove_stale(false) {
            eprintln!("halcyon-lab: removing leftovers of earlier labs: {error}");
        }
        let id = allocate_id()?;
        let directory = id.directory();
        let root_netlink = RouteSocket::open().map_err(io_error("opening a netlink socket"))?;
        let mut lab = Lab {
            id,
            spec: spec.clone(),
            directory: directory.clone(),
            created: Created::default(),
            topology: Topology {
                id,
                hosts: spec.hosts,
                networks: spec.networks,
                namespace_paths: Vec::new(),
                namespace_inodes: Vec::new(),
            },
            interface_indexes: Vec::new(),
            port_indexes: Vec::new(),
            standby_port_indexes: HashMap::new(),
            standby_interface_indexes: HashMap::new(),
            root_netlink: Mutex::new(root_netlink),
            namespace_netlink: Vec::new(),
            processes: Mutex::new(Vec::new()),
        };
        lab.create()?;
        Ok(lab)
    }

    fn create(&mut self) -> Result<(), LabError> {
        let id = self.id;
        // The owner record first: from now on a crash of this process leaves objects that
        // `cleanup` can attribute to a dead owner.
        fs::create_dir_all(names::OWNER_DIRECTORY)
            .map_err(io_error("creating /run/halcyon-lab"))?;
        let record = id.owner_record();
        let start_time = netns::process_start_time(std::process::id()).unwrap_or(0);
        fs::write(&record, format!("{} {}\n", std::process::id(), start_time))
            .map_err(io_error("writing the owner record"))?;
        self.created.owner_record = Some(record);
        fs::create_dir(&self.directory).map_err(io_error("creating the lab directory"))?;
        self.created.directory = Some(self.directory.clone());
        for host in self.namespaces() {
            fs::create_dir(self.host_directory(host))
                .map_err(io_error("creating a host directory"))?;
        }
        fs::write(self.disk_heartbeat_path(), b"")
            .map_err(io_error("creating the disk heartbeat file"))?;

        for network in 1..=self.spec.networks {
            let bridge = id.bridge(network);
            command::run(
                "ip",
                &["link", "add", &bridge, "type", "bridge", "stp_state", "0"],
            )?;
            self.created.bridges.push(bridge.clone());
            disable_ipv6_on_root_interface(&bridge);
            command::run("ip", &["link", "set", &bridge, "up"])?;
        }

        let guard_script = guard_script();
        for host in self.namespaces() {
            let namespace = id.host_namespace(host);
            command::run("ip", &["netns", "add", &namespace])?;
            self.created.namespaces.push(namespace.clone());
            let path = netns_path(&namespace);
            let standby = host != CLIENT && !self.spec.standby_networks.is_empty();
            netns::in_namespace(&path, move || -> std::io::Result<()> {
                for name in ["all", "default"] {
                    match fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1") {
                        // A kernel without IPv6 has nothing to disable.
                        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                            return Err(error);
                        }
                        _ => {}
                    }
                    if standby {
                        // A host set up for local LAN failover (with the source routes of
                        // `source_route`). Primary and standby share a subnet, so there are two
                        // connected routes to it; a primary that lost its carrier keeps its
                        // route (flagged linkdown), first in the table, and it would carry every
                        // reply: skip such routes. And each interface answers ARP only for its
                        // own addresses (no "ARP flux": otherwise the standby answers for the
                        // primary's addresses and the client may reach a package through it
                        // before any swap).
                        for (setting, value) in [
                            ("ignore_routes_with_linkdown", "1"),
                            ("arp_ignore", "1"),
                            ("arp_announce", "2"),
                        ] {
                            fs::write(format!("/proc/sys/net/ipv4/conf/{name}/{setting}"), value)?;
                        }
                    }
                }
                Ok(())
            })
            .and_then(|result| result)
            .map_err(io_error("setting sysctls in a namespace"))?;
            Invocation::new("ip", &["link", "set", "lo", "up"])
                .in_netns(&path)
                .run()?;
            // Anything addressed outside the lab's networks is routed to loopback, where the guard
            // counts and drops it; without the guard it would still go nowhere (a martian).
            Invocation::new("ip", &["route", "add", "default", "dev", "lo"])
                .in_netns(&path)
                .run()?;
            Invocation::new("nft", &["-f", "-"])
                .in_netns(&path)
                .stdin(guard_script.as_bytes())
                .run()?;
            let inode =
                netns::namespace_inode(&path).map_err(io_error("reading a namespace inode"))?;
            self.topology.namespace_paths.push(path.clone());
            self.topology.namespace_inodes.push(inode);

            let mut interface_indexes = Vec::new();
            let mut port_indexes = Vec::new();
            for network in self.networks_of(host) {
                let (port_index, interface_index) = self.add_interface(
                    host,
                    network,
                    &id.bridge_port(host, network),
                    &names::interface(network),
                    names::host_address(host, network),
                )?;
                port_indexes.push(port_index);
                interface_indexes.push(interface_index);
            }
            if host != CLIENT {
                for network in self.spec.standby_networks.clone() {
                    let (port_index, interface_index) = self.add_interface(
                        host,
                        network,
                        &id.standby_port(host, network),
                        &names::standby_interface(network),
                        names::standby_address(host, network),
                    )?;
                    self.standby_port_indexes
                        .insert((host, network), port_index);
                    self.standby_interface_indexes
                        .insert((host, network), interface_index);
                    for (interface, address, table) in [
                        (
                            names::interface(network),
                            names::host_address(host, network),
                            PRIMARY_ROUTE_TABLE + network as u32,
                        ),
                        (
                            names::standby_interface(network),
                            names::standby_address(host, network),
                            STANDBY_ROUTE_TABLE + network as u32,
                        ),
                    ] {
                        source_route(&path, network, &interface, address, table)?;
                    }
                }
            }
            self.interface_indexes.push(interface_indexes);
            self.port_indexes.push(port_indexes);
            let socket =
                RouteSocket::open_in(&path).map_err(io_error("opening netlink in a namespace"))?;
            self.namespace_netlink.push(Mutex::new(socket));
        }
        Ok(())
    }

    /// One veth from `host`'s namespace (inside: `inner`, with `address`) into `network`'s
    /// bridge (outside: `port`), both ends up. Returns the indexes of the bridge port (in the
    /// owner's namespace) and of the inner interface.
    fn add_interface(
        &mut self,
        host: usize,
        network: usize,
        port: &str,
        inner: &str,
        address: Ipv4Addr,
    ) -> Result<(u32, u32), LabError> {
        let namespace = self.id.host_namespace(host);
        let path = netns_path(&namespace);
        command::run(
            "ip",
            &[
                "link", "add", port, "type", "veth", "peer", "name", inner, "netns", &namespace,
            ],
        )?;
        self.created.ports.push(port.to_string());
        disable_ipv6_on_root_interface(port);
        command::run(
            "ip",
            &[
                "link",
                "set",
                port,
                "master",
                &self.id.bridge(network),
                "up",
            ],
        )?;
        let address = format!("{address}/{}", names::NETWORK_PREFIX_LENGTH);
        Invocation::new("ip", &["addr", "add", &address, "dev", inner])
            .in_netns(&path)
            .run()?;
        Invocation::new("ip", &["link", "set", inner, "up"])
            .in_netns(&path)
            .run()?;
        let port_index = self
            .root_netlink
            .get_mut()
            .expect("a lock was poisoned: a thread panicked while holding it")
            .link_index(port)
            .map_err(io_error("finding a bridge port"))?;
        let mut socket =
            RouteSocket::open_in(&path).map_err(io_error("opening netlink in a namespace"))?;
        let interface_index = socket
            .link_index(inner)
            .map_err(io_error("finding an interface in a namespace"))?;
        Ok((port_index, interface_index))
    }

    /// CLIENT, then every host.
    fn namespaces(&self) -> std::ops::RangeInclusive<usize> {
        0..=self.spec.hosts
    }

    /// The networks a namespace is attached to: all for hosts, network 1 for the client.
    fn networks_of(&self, host: usize) -> std::ops::RangeInclusive<usize> {
        if host == CLIENT {
            1..=1
        } else {
            1..=self.spec.networks
        }
    }

    pub fn id(&self) -> LabId {
        self.id
    }

    pub fn spec(&self) -> &LabSpec {
        &self.spec
    }

    pub fn hosts(&self) -> std::ops::RangeInclusive<usize> {
        1..=self.spec.hosts
    }

    pub fn topology(&self) -> Topology {
        self.topology.clone()
    }

    /// The lab's directory (logs, host directories, disk heartbeat file).
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// A directory per host that survives crashes and restarts (the host's "disk").
    pub fn host_directory(&self, host: usize) -> PathBuf {
        self.directory.join(host_label(host))
    }

    /// Where the stdout and stderr of every process spawned on `host` go.
    pub fn log_path(&self, host: usize) -> PathBuf {
        self.directory.join(format!("{}.log", host_label(host)))
    }

    /// The shared disk-heartbeat file, the same path for every host.
    pub fn disk_heartbeat_path(&self) -> PathBuf {
        self.directory.join("disk-heartbeat")
    }

    pub fn namespace_name(&self, host: usize) -> String {
        self.check_namespace(host);
        self.id.host_namespace(host)
    }

    pub fn namespace_path(&self, host: usize) -> &Path {
        self.check_namespace(host);
        &self.topology.namespace_paths[host]
    }

    /// Address of `host` (CLIENT for the client) on `network`.
    pub fn address(&self, host: usize, network: usize) -> Ipv4Addr {
        self.check_namespace(host);
        assert!(
            self.networks_of(host).contains(&network),
            "no network {network} on {host}"
        );
        names::host_address(host, network)
    }

    /// Name of the interface on `network` inside each namespace (`eth<n>`).
    pub fn interface(&self, network: usize) -> String {
        assert!(
            (1..=self.spec.networks).contains(&network),
            "no network {network}"
        );
        names::interface(network)
    }

    /// Name of the bridge-side veth end of `host` on `network`.
    pub fn bridge_port(&self, host: usize, network: usize) -> String {
        self.check_namespace(host);
        self.id.bridge_port(host, network)
    }

    pub(crate) fn port_index(&self, host: usize, network: usize) -> u32 {
        self.check_namespace(host);
        self.port_indexes[host][network - 1]
    }

    /// Name of the standby interface on `network` inside each host namespace, if the lab has
    /// standby interfaces on that network.
    pub fn standby_interface(&self, network: usize) -> Option<String> {
        self.spec
            .standby_networks
            .contains(&network)
            .then(|| names::standby_interface(network))
    }

    /// Address of `host`'s standby interface on `network`, if it has one.
    pub fn standby_address(&self, host: usize, network: usize) -> Option<Ipv4Addr> {
        self.check_namespace(host);
        (host != CLIENT && self.spec.standby_networks.contains(&network))
            .then(|| names::standby_address(host, network))
    }

    /// The networks with standby interfaces, in the order of the spec.
    pub fn standby_networks(&self) -> &[usize] {
        &self.spec.standby_networks
    }

    pub(crate) fn standby_port_index(&self, host: usize, network: usize) -> Option<u32> {
        self.standby_port_indexes.get(&(host, network)).copied()
    }

    pub(crate) fn root_netlink(&self) -> MutexGuard<'_, RouteSocket> {
        self.root_netlink
            .lock()
            .expect("a lock was poisoned: a thread panicked while holding it")
    }

    fn check_namespace(&self, host: usize) {
        assert!(
            host <= self.spec.hosts,
            "no host {host} in a lab of {} hosts",
            self.spec.hosts
        );
    }

    /// A printable description: namespaces, interfaces and addresses, the directory.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "lab {} ({} hosts, {} networks)",
            self.id, self.spec.hosts, self.spec.networks
        );
        for network in 1..=self.spec.networks {
            let _ = writeln!(
                text,
                "  network {network}: 198.18.{network}.0/24 on bridge {}, relocatable addresses 198.18.{network}.{}-{}",
                self.id.bridge(network),
                names::RELOCATABLE_FIRST_OCTET,
                names::RELOCATABLE_FIRST_OCTET + names::RELOCATABLE_COUNT - 1
            );
        }
        for host in self.hosts().chain(std::iter::once(CLIENT)) {
            let addresses: Vec<String> = self
                .networks_of(host)
                .map(|network| {
                    format!(
                        "{} {}",
                        names::interface(network),
                        names::host_address(host, network)
                    )
                })
                .collect();
            let standby = self
                .spec
                .standby_networks
                .iter()
                .filter(|_| host != CLIENT)
                .map(|&network| {
                    format!(
                        "{} {} (standby)",
                        names::standby_interface(network),
                        names::standby_address(host, network)
                    )
                });
            let addresses: Vec<String> = addresses.into_iter().chain(standby).collect();
            let _ = writeln!(
                text,
                "  {:<6} namespace {:<12} {}",
                host_label(host),
                self.id.host_namespace(host),
                addresses.join(", ")
            );
        }
        let _ = writeln!(text, "  directory {}", self.directory.display());
        let _ = writeln!(
            text,
            "  disk heartbeat {}",
            self.disk_heartbeat_path().display()
        );
        let _ = write!(
            text,
            "  run a command on a host: ip netns exec {} COMMAND",
            self.id.host_namespace(1)
        );
        text
    }

    /// Starts `program args` inside `host`'s network namespace, in its own session and process
    /// group, with stdout and stderr appended to the host's log file and the host directory as
    /// working directory. Besides `env`, the process gets `HALCYON_LAB_HOST` (`h1`, ...),
    /// `HALCYON_LAB_HOST_DIRECTORY` and `HALCYON_LAB_DISK_HEARTBEAT`. The process is killed if
    /// the thread that spawned it ends (PR_SET_PDEATHSIG), so spawn from a thread that lives as
    /// long as the lab.
    pub fn spawn(
        &self,
        host: usize,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<HostProcess, LabError> {
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        self.spawn_owned(host, program.to_string(), args, env)
    }

    fn spawn_owned(
        &self,
        host: usize,
        program: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Result<HostProcess, LabError> {
        self.check_namespace(host);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(host))
            .map_err(io_error("opening the host log"))?;
        let log_for_stderr = log
            .try_clone()
            .map_err(io_error("duplicating the host log"))?;
        let namespace =
            fs::File::open(self.namespace_path(host)).map_err(io_error("opening the namespace"))?;
        let mut command = Command::new(&program);
        command
            .args(&args)
            .envs(env.iter().map(|(key, value)| (key, value)))
            .env("HALCYON_LAB_HOST", host_label(host))
            .env("HALCYON_LAB_HOST_DIRECTORY", self.host_directory(host))
            .env("HALCYON_LAB_DISK_HEARTBEAT", self.disk_heartbeat_path())
            .current_dir(self.host_directory(host))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_for_stderr);
        command::prepare_child(&mut command, Some(namespace.as_raw_fd()), true);
        let child = command.spawn().map_err(|source| LabError::Io {
            context: format!("starting {program} on {}", host_label(host)),
            source,
        })?;
        drop(namespace);
        let mut processes = self.lock_processes();
        let handle = HostProcess {
            id: processes.len(),
            host,
            pid: child.id(),
        };
        processes.push(ProcessRecord {
            handle,
            child,
            program,
            args,
            env,
            exit: None,
        });
        Ok(handle)
    }

    /// Starts again the command of `process` (which must have exited) on the same host.
    pub fn respawn(&self, process: &HostProcess) -> Result<HostProcess, LabError> {
        let (program, args, env) = {
            let mut processes = self.lock_processes();
            let record = &mut processes[process.id];
            if reap(record).is_none() {
                return Err(LabError::StillRunning { pid: process.pid });
            }
            (
                record.program.clone(),
                record.args.clone(),
                record.env.clone(),
            )
        };
        self.spawn_owned(process.host, program, args, env)
    }

    /// True while the process has not exited (a stopped process is running).
    pub fn is_running(&self, process: &HostProcess) -> bool {
        reap(&mut self.lock_processes()[process.id]).is_none()
    }

    /// Waits up to `timeout` for the process to exit; its exit status if it did.
    pub fn wait_exit(&self, process: &HostProcess, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = reap(&mut self.lock_processes()[process.id]) {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Every process spawned on `host` that has not exited.
    pub fn running_processes(&self, host: usize) -> Vec<HostProcess> {
        let mut processes = self.lock_processes();
        processes
            .iter_mut()
            .filter(|record| record.handle.host == host)
            .filter_map(|record| reap(record).is_none().then_some(record.handle))
            .collect()
    }

    /// SIGKILLs the process groups of every process spawned on `host`, then every other process
    /// in its namespace (services that made their own groups), until none is left. Returns the
    /// instant the first signals were sent.
    pub(crate) fn kill_host(&self, host: usize) -> Instant {
        let mut processes = self.lock_processes();
        for record in processes
            .iter_mut()
            .filter(|record| record.handle.host == host)
        {
            if reap(record).is_none() {
                // SAFETY: the group was made by setsid in our child, which we have not reaped.
                unsafe { libc::kill(-(record.handle.pid as libc::pid_t), libc::SIGKILL) };
            }
        }
        let killed_at = Instant::now();
        kill_namespace_processes(self.topology.namespace_inodes[host]);
        let deadline = Instant::now() + KILL_WAIT;
        for record in processes
            .iter_mut()
            .filter(|record| record.handle.host == host)
        {
            while reap(record).is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        killed_at
    }

    /// Sends `signal` to one process (not its group).
    pub(crate) fn signal(
        &self,
        process: &HostProcess,
        signal: libc::c_int,
    ) -> Result<(), LabError> {
        let mut processes = self.lock_processes();
        if reap(&mut processes[process.id]).is_some() {
            return Err(LabError::NotRunning { pid: process.pid });
        }
        // SAFETY: our unreaped child, so the PID is still its own.
        if unsafe { libc::kill(process.pid as libc::pid_t, signal) } != 0 {
            return Err(io_error("sending a signal")(std::io::Error::last_os_error()));
        }
        Ok(())
    }

    fn lock_processes(&self) -> MutexGuard<'_, Vec<ProcessRecord>> {
        self.processes
            .lock()
            .expect("a lock was poisoned: a thread panicked while holding it")
    }

    /// Runs a short command in `host`'s namespace and returns its output whatever its status,
    /// killing it after `timeout`.
    pub fn run(
        &self,
        host: usize,
        program: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<Output, LabError> {
        Invocation::new(program, args)
            .in_netns(self.namespace_path(host))
            .timeout(timeout.min(PROBE_TIMEOUT_MAX))
            .output()
    }

    /// One ICMP echo from `from` to `address`, waiting at most a second: true if answered.
    pub fn ping(&self, from: usize, address: Ipv4Addr) -> Result<bool, LabError> {
        let address = address.to_string();
        let output = self.run(
            from,
            "ping",
            &["-n", "-q", "-c", "1", "-W", "1", &address],
            Duration::from_secs(3),
        )?;
        Ok(output.status.success())
    }

    /// An HTTP GET of `/` from `from`'s namespace; the response body, trimmed.
    pub fn http_get(
        &self,
        from: usize,
        address: SocketAddrV4,
        timeout: Duration,
    ) -> Result<String, LabError> {
        let timeout = timeout.min(PROBE_TIMEOUT_MAX);
        netns::in_namespace(self.namespace_path(from), move || {
            http_get(address, timeout)
        })
        .and_then(|result| result)
        .map_err(io_error("HTTP GET"))
    }

    /// Adds a (relocatable) address to `host`'s interface on `network`, through netlink.
    pub fn add_address(
        &self,
        host: usize,
        network: usize,
        address: Ipv4Addr,
        prefix_length: u8,
    ) -> Result<Instant, LabError> {
        assert!(
            names::is_lab_address(address),
            "{address} is outside 198.18.0.0/15"
        );
        let index = self.interface_indexes[host][network - 1];
        self.namespace_netlink(host)
            .add_address(index, address, prefix_length)
            .map_err(io_error("adding an address"))?;
        Ok(Instant::now())
    }

    /// Removes an address from `host`'s interface on `network`, through netlink.
    pub fn delete_address(
        &self,
        host: usize,
        network: usize,
        address: Ipv4Addr,
        prefix_length: u8,
    ) -> Result<Instant, LabError> {
        let index = self.interface_indexes[host][network - 1];
        self.namespace_netlink(host)
            .delete_address(index, address, prefix_length)
            .map_err(io_error("deleting an address"))?;
        Ok(Instant::now())
    }

    /// The name of the interface (`eth<n>` or `eth<n>s`) that carries `address` in `host`'s
    /// namespace; None when the address is not configured there.
    pub fn interface_of_address(
        &self,
        host: usize,
        address: Ipv4Addr,
    ) -> Result<Option<String>, LabError> {
        let entries = self
            .namespace_netlink(host)
            .ipv4_addresses()
            .map_err(io_error("listing addresses"))?;
        let Some(entry) = entries.iter().find(|entry| entry.address == address) else {
            return Ok(None);
        };
        let index = entry.interface_index;
        let primary = self.networks_of(host).find_map(|network| {
            (self.interface_indexes[host][network - 1] == index).then(|| names::interface(network))
        });
        let standby = || {
            self.standby_interface_indexes
                .iter()
                .find(|&(&(owner, _), &candidate)| owner == host && candidate == index)
                .map(|(&(_, network), _)| names::standby_interface(network))
        };
        Ok(Some(
            primary
                .or_else(standby)
                .unwrap_or_else(|| format!("interface {index}")),
        ))
    }

    /// Every IPv4 address configured in `host`'s namespace.
    pub fn addresses(&self, host: usize) -> Result<Vec<Ipv4Addr>, LabError> {
        Ok(self
            .namespace_netlink(host)
            .ipv4_addresses()
            .map_err(io_error("listing addresses"))?
            .into_iter()
            .map(|entry| entry.address)
            .collect())
    }

    fn namespace_netlink(&self, host: usize) -> MutexGuard<'_, RouteSocket> {
        self.check_namespace(host);
        self.namespace_netlink[host]
            .lock()
            .expect("a lock was poisoned: a thread panicked while holding it")
    }

    /// Packets dropped by the guard in each namespace (index 0 the client, then each host):
    /// anything sent to an address outside 198.18.0.0/15 and 127.0.0.0/8. Must stay 0.
    pub fn guard_violations_by_namespace(&self) -> Result<Vec<u64>, LabError> {
        self.namespaces()
            .map(|host| {
                let output = Invocation::new(
                    "nft",
                    &["-j", "list", "counter", "inet", GUARD_TABLE, "violations"],
                )
                .in_netns(self.namespace_path(host))
                .run()?;
                parse_counter_packets(&output.stdout)
            })
            .collect()
    }

    /// Total packets dropped by the guards of all namespaces. Must stay 0.
    pub fn guard_violations(&self) -> Result<u64, LabError> {
        Ok(self.guard_violations_by_namespace()?.iter().sum())
    }

    /// Runs an nft script in each of the given namespaces, in parallel, so a partition takes
    /// effect on all of them within a few milliseconds.
    pub(crate) fn nft_in_parallel(&self, scripts: &HashMap<usize, String>) -> Result<(), LabError> {
        std::thread::scope(|scope| {
            let workers: Vec<_> = scripts
                .iter()
                .map(|(&host, script)| {
                    let path = self.namespace_path(host);
                    scope.spawn(move || {
                        Invocation::new("nft", &["-f", "-"])
                            .in_netns(path)
                            .stdin(script.as_bytes())
                            .run()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|worker| {
                    worker
                        .join()
                        .unwrap_or_else(|_| Err(LabError::Spec("nft worker panicked".into())))
                })
                .collect::<Result<Vec<_>, _>>()
        })?;
        Ok(())
    }

    /// Namespaces attached to the lab (CLIENT and each host).
    pub(crate) fn all_namespaces(&self) -> Vec<usize> {
        self.namespaces().collect()
    }

    fn teardown(&mut self) {
        // Processes first: a namespace with a live process in it outlives `ip netns del`.
        for host in (0..self.topology.namespace_inodes.len()).rev() {
            self.kill_host(host);
        }
        for port in self.created.ports.drain(..).rev() {
            report_cleanup(command::run("ip", &["link", "del", &port]));
        }
        for namespace in self.created.namespaces.drain(..).rev() {
            report_cleanup(command::run("ip", &["netns", "del", &namespace]));
        }
        for bridge in self.created.bridges.drain(..).rev() {
            report_cleanup(command::run("ip", &["link", "del", &bridge]));
        }
        if let Some(directory) = self.created.directory.take() {
            // A state directory on its own tmpfs (disk faults) goes with the processes.
            unmount_under(&directory);
            if self.spec.keep_directory {
                let kept = kept_path(&directory);
                match fs::rename(&directory, &kept) {
                    Ok(()) => eprintln!("halcyon-lab: kept {}", kept.display()),
                    Err(error) => eprintln!(
                        "halcyon-lab: kept {} (not renamed to {}: {error}; the next lab's \
                         cleanup of stale labs removes it)",
                        directory.display(),
                        kept.display()
                    ),
                }
            } else if let Err(error) = fs::remove_dir_all(&directory) {
                eprintln!(
                    "halcyon-lab: cleanup: removing {}: {error}",
                    directory.display()
                );
            }
        }
        if let Some(record) = self.created.owner_record.take() {
            let _ = fs::remove_file(record);
        }
    }
}

/// Where a kept lab directory goes at teardown: `halcyon-lab-kept-ID` beside it, a name
/// [`crate::cleanup::remove_stale`] does not take for a lab's (it removes the directories of
/// labs whose owner is gone, and a kept one's owner is gone by definition). Before, the next
/// lab run removed the logs a campaign had just kept.
pub(crate) fn kept_path(directory: &Path) -> PathBuf {
    let name = directory
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id = name.strip_prefix("halcyon-lab-").unwrap_or(&name);
    directory.with_file_name(format!("halcyon-lab-kept-{id}"))
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// `h1`, `h2`, ... or `client`.
pub fn host_label(host: usize) -> String {
    if host == CLIENT {
        "client".to_string()
    } else {
        format!("h{host}")
    }
}

pub(crate) fn netns_path(namespace: &str) -> PathBuf {
    Path::new("/run/netns").join(namespace)
}

/// The exit status if the process has exited (reaping it), else None.
fn reap(record: &mut ProcessRecord) -> Option<ExitStatus> {
    if record.exit.is_none() {
        record.exit = record.child.try_wait().ok().flatten();
    }
    record.exit
}

/// Source routing for a host with two interfaces on one subnet: what `address` sends leaves
/// through `interface` only (a rule `from address` and a table with the subnet on that
/// interface), and nowhere while the interface has no carrier (the table's blackhole catches
/// what the skipped linkdown route no longer does). Without it a host that lost its primary
/// link would keep sending its heartbeats, from the primary's address, through the standby:
/// its peers would hear it and never see the adapter fail.
fn source_route(
    namespace: &Path,
    network: usize,
    interface: &str,
    address: Ipv4Addr,
    table: u32,
) -> Result<(), LabError> {
    let subnet = format!("198.18.{network}.0/{}", names::NETWORK_PREFIX_LENGTH);
    let table = table.to_string();
    let source = address.to_string();
    let commands: [&[&str]; 3] = [
        &[
            "route", "add", &subnet, "dev", interface, "src", &source, "table", &table,
        ],
        &[
            "route",
            "add",
            "blackhole",
            &subnet,
            "metric",
            "4096",
            "table",
            &table,
        ],
        &["rule", "add", "from", &source, "lookup", &table],
    ];
    for args in commands {
        Invocation::new("ip", args).in_netns(namespace).run()?;
    }
    Ok(())
}

/// SIGKILLs every process in the namespace with inode `inode` until none is left (bounded).
pub(crate) fn kill_namespace_processes(inode: u64) {
    let own_pid = std::process::id();
    for _ in 0..KILL_ROUNDS_MAX {
        let pids: Vec<u32> = netns::processes_in_namespace(inode)
            .into_iter()
            .filter(|&pid| pid != own_pid && pid > 1)
            .collect();
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            // SAFETY: kill(2); the process is in a namespace this lab created.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("halcyon-lab: processes in namespace {inode} survived SIGKILL");
}

fn allocate_id() -> Result<LabId, LabError> {
    let pid = std::process::id();
    for _ in 0..26 {
        let slot = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % 26;
        let id = LabId { pid, slot };
        let taken = id.owner_record().exists()
            || id.directory().exists()
            || netns_path(&id.host_namespace(CLIENT)).exists()
            || netns_path(&id.host_namespace(1)).exists();
        if !taken {
            return Ok(id);
        }
    }
    Err(LabError::Spec(
        "all 26 lab ids of this process are in use".into(),
    ))
}

fn check_tools() -> Result<(), LabError> {
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables")] {
        let found = std::env::var_os("PATH")
            .map(|path| {
                std::env::split_paths(&path).any(|directory| directory.join(tool).is_file())
            })
            .unwrap_or(false);
        if !found {
            return Err(LabError::MissingTool { tool, package });
        }
    }
    Ok(())
}

/// The guard (counted drop of anything leaving the lab range) and the empty partition table.
fn guard_script() -> String {
    format!(
        "table inet {GUARD_TABLE} {{
  counter violations {{ }}
  chain output {{
    type filter hook output priority -400; policy accept;
    ip daddr {{ 198.18.0.0/15, 127.0.0.0/8 }} accept
    ip6 daddr ::1 accept
    counter name violations drop
  }}
  chain forward {{
    type filter hook forward priority -400; policy accept;
    ip daddr {{ 198.18.0.0/15, 127.0.0.0/8 }} accept
    counter name violations drop
  }}
}}
table inet {PARTITION_TABLE} {{
  set blocked {{ type ipv4_addr; }}
  chain input {{
    type filter hook input priority -350; policy accept;
    ip saddr @blocked drop
  }}
  chain output {{
    type filter hook output priority -350; policy accept;
    ip daddr @blocked drop
  }}
}}
"
    )
}

fn parse_counter_packets(json: &[u8]) -> Result<u64, LabError> {
    let value: serde_json::Value = serde_json::from_slice(json)
        .map_err(|error| LabError::Spec(format!("unreadable nft output: {error}")))?;
    value["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|entry| entry["counter"]["packets"].as_u64())
        .ok_or_else(|| LabError::Spec("nft output has no counter".into()))
}

fn disable_ipv6_on_root_interface(name: &str) {
    // Keeps the bridge and its ports from sending router solicitations into the lab; absent
    // when the kernel has no IPv6, which is fine.
    let _ = fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
}

fn report_cleanup(result: Result<Output, LabError>) {
    if let Err(error) = result {
        eprintln!("halcyon-lab: cleanup: {error}");
    }
}

pub(crate) fn io_error(context: &'static str) -> impl Fn(std::io::Error) -> LabError {
    move |source| LabError::Io {
        context: context.to_string(),
        source,
    }
}

/// GET of `/`; the body, trimmed, if the status is 200.
pub(crate) fn http_get(address: SocketAddrV4, timeout: Duration) -> std::io::Result<String> {
    let response =
        halcyon_testkit::http::get(address.into(), "/", timeout).map_err(std::io::Error::other)?;
    if response.status != 200 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("HTTP status {}, not 200", response.status),
        ));
    }
    Ok(response.body.trim().to_string())
}

/// Mount points strictly under `directory` (from `/proc/self/mounts`), deepest first.
pub(crate) fn mounts_under(directory: &Path) -> Vec<PathBuf> {
    let table = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut found: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| line.split(' ').nth(1))
        .map(PathBuf::from)
        .filter(|mount| mount.starts_with(directory) && mount != directory)
        .collect();
    found.sort_by_key(|mount| std::cmp::Reverse(mount.components().count()));
    found
}

/// Unmounts (lazily: a process may still hold a file there) what is mounted under
/// `directory`, so it can be removed; reports a failure and goes on.
pub(crate) fn unmount_under(directory: &Path) {
    for mount in mounts_under(directory) {
        let target = mount.display().to_string();
        report_cleanup(command::run("umount", &["-l", &target]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_packets_are_read_from_nft_json() {
        let json = br#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"counter": {"family": "inet", "name": "violations", "table": "halcyon_lab_guard", "handle": 2, "packets": 3, "bytes": 84}}]}"#;
        assert_eq!(parse_counter_packets(json).unwrap(), 3);
    }

    /// The cleanup of stale labs takes a directory for a lab's when its name parses as one;
    /// a kept directory's must not (the kept logs of a campaign were removed by the next
    /// lab test).
    #[test]
    fn a_kept_directory_is_not_taken_for_a_stale_lab() {
        let directory = std::env::temp_dir().join("halcyon-lab-26029a");
        let lab_id = |path: &Path| {
            let name = path.file_name()?.to_str()?;
            crate::names::LabId::parse(name.strip_prefix("halcyon-lab-")?)
        };
        assert!(lab_id(&directory).is_some(), "a lab's directory");
        let kept = kept_path(&directory);
        assert_eq!(kept, std::env::temp_dir().join("halcyon-lab-kept-26029a"));
        assert!(
            lab_id(&kept).is_none(),
            "{} taken for a lab's",
            kept.display()
        );
    }
}
