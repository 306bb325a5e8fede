//! A package on this node: its start under the lease guard ([`Node::run_package`]) and its
//! supervisor ([`Supervisor`]), the task that owns its resources while it runs. The
//! supervisor restarts what fails within the restart counts, fails the package beyond
//! them, moves its addresses on `swap_adapter`, stops it on request, and — for a failover
//! package — halts it at once when the lease is about to expire (fencing), whatever else
//! it is doing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use halcyon_config::{Config, NetworkName, PackageName};
use halcyon_guard::Address;
use halcyon_policy::Event;
use halcyon_resources::{Health, PackageEnv, PackageResources, StopMode};
use halcyon_state::{Command, Reply};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::{Inbox, LocalPackage, Node};
use crate::guard::Gate;
use crate::lease::Lease;
use crate::platform::LeaseGuard;

/// What the daemon asks of a package's supervisor.
pub(crate) enum Control {
    Stop(StopMode),
    /// Local LAN failover: move the package's addresses on this network to a standby interface.
    SwapAdapter(NetworkName),
    /// A `fail_package` monitor with restarts left fired: stop and start the package's
    /// services here (its addresses and storage stay).
    RestartServices,
}

pub(crate) type ControlMessage = (Control, oneshot::Sender<Result<String, String>>);

/// How many control requests may wait for a supervisor.
const CONTROL_QUEUED_MAX: usize = 4;

/// What a failover package has under the lease guard: its services' start gates, their
/// registered process groups (by resource index) and its registered addresses.
#[derive(Default)]
struct Guarded {
    gates: BTreeMap<usize, Gate>,
    groups: BTreeMap<usize, i32>,
    addresses: Vec<Address>,
}

impl Guarded {
    /// Registers resource `index`'s process group with the guard, then opens its start gate.
    fn admit(
        &mut self,
        guard: &dyn LeaseGuard,
        resources: &mut PackageResources,
        index: usize,
    ) -> Result<(), String> {
        let Some(gate) = self.gates.get_mut(&index) else {
            return Ok(());
        };
        let Some(pgid) = resources.resources[index].process_group() else {
            return Ok(());
        };
        guard.register_group(pgid)?;
        self.groups.insert(index, pgid);
        gate.open()
            .map_err(|e| format!("opening the start gate of resource {index}: {e}"))
    }

    fn forget_group(&mut self, guard: &dyn LeaseGuard, index: usize) {
        if let Some(pgid) = self.groups.remove(&index) {
            guard.unregister_group(pgid);
        }
        if let Some(gate) = self.gates.get_mut(&index) {
            gate.drain();
        }
    }

    fn register_address(&mut self, guard: &dyn LeaseGuard, address: Address) -> Result<(), String> {
        if !self.addresses.contains(&address) {
            guard.register_address(address)?;
            self.addresses.push(address);
        }
        Ok(())
    }

    /// After a start: every gated service admitted, and the addresses registered where they
    /// really are (an interface found by address, not by name, is known only now).
    fn admit_all(
        &mut self,
        guard: &dyn LeaseGuard,
        resources: &mut PackageResources,
    ) -> Result<(), String> {
        let indices: Vec<usize> = self.gates.keys().copied().collect();
        for index in indices {
            self.admit(guard, resources, index)?;
        }
        if self.gates.is_empty() && self.addresses.is_empty() {
            return Ok(());
        }
        for index in 0..resources.resources.len() {
            let device = resources.resources[index]
                .as_ip_address()
                .and_then(|ip| ip.device().map(str::to_owned));
            if let Some(device) = device
                && let Some(address) = guard_address(resources, index, &device)
            {
                self.register_address(guard, address)?;
            }
        }
        Ok(())
    }

    /// The package stopped: nothing of it is left for the guard.
    fn unregister_all(&mut self, guard: &dyn LeaseGuard) {
        for (_, pgid) in std::mem::take(&mut self.groups) {
            guard.unregister_group(pgid);
        }
        for address in std::mem::take(&mut self.addresses) {
            guard.unregister_address(address);
        }
    }
}

/// The address of `ip` (resource `index`) as the guard knows it, on interface `device`.
fn guard_address(resources: &mut PackageResources, index: usize, device: &str) -> Option<Address> {
    let ip = resources.resources[index].as_ip_address()?;
    let subnet = ip.address();
    Some(Address {
        interface_index: halcyon_netlink::interface_index(device).ok()?,
        address: subnet.address,
        prefix_length: subnet.prefix,
    })
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Node {
    fn pid_file(&self, package: &str, index: usize) -> PathBuf {
        self.run_dir.join(format!("{package}.{index}.pgid"))
    }

    fn write_pid_files(&self, package: &str, resources: &PackageResources) {
        for (i, pgid) in resources.process_groups().iter().enumerate() {
            let _ = std::fs::write(self.pid_file(package, i), pgid.to_string());
        }
    }

    /// Removes the package's process-group files (`PACKAGE.INDEX.pgid`).
    fn remove_pid_files(&self, package: &str) {
        let Ok(entries) = std::fs::read_dir(&self.run_dir) else {
            return;
        };
        let prefix = format!("{package}.");
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let index = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(".pgid"));
            if index.is_some_and(|i| i.parse::<usize>().is_ok()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Starts a package here (start `instance`) and spawns its supervisor; the handle goes
    /// to the executor, which owns what runs here. A failover package is put under the lease
    /// guard before it can act: its addresses are registered before they are added, and each
    /// service waits at its start gate until its process group is registered.
    pub(super) async fn run_package(
        self: &Arc<Self>,
        config: &Config,
        package: &PackageName,
        instance: u64,
    ) -> Result<(String, LocalPackage), String> {
        let Some(p) = config.package(package.as_str()).cloned() else {
            return Err(format!("package {package} is not in the configuration"));
        };
        let Some(me) = config.node(self.name.as_str()).cloned() else {
            return Err(format!("node {} is not in the configuration", self.name));
        };
        let env = PackageEnv {
            cluster: config.cluster.name.clone(),
            package: package.to_string(),
            node: self.name.to_string(),
        };
        let mut guarded = Guarded::default();
        let gated = self.gate_services(&p, &mut guarded)?;
        let mut resources = self.platform.resources.build(env, &gated, &me)?;
        if p.is_failover() {
            for (index, resource) in p.resources.iter().enumerate() {
                if let halcyon_config::Resource::Ip(ip) = resource
                    && let Some(device) = me
                        .interface_on(ip.network.as_str())
                        .and_then(|i| i.device.clone())
                    && let Some(address) = guard_address(&mut resources, index, &device)
                {
                    guarded.register_address(self.guard.as_ref(), address)?;
                }
            }
        }
        let started = tokio::time::timeout(p.run_timeout, resources.start()).await;
        let admitted = match started {
            Ok(Ok(())) => guarded.admit_all(self.guard.as_ref(), &mut resources),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "{package} did not start within {:?}",
                p.run_timeout
            )),
        };
        if let Err(e) = admitted {
            let _ = resources.stop(StopMode::Immediate).await;
            guarded.unregister_all(self.guard.as_ref());
            return Err(e);
        }
        self.write_pid_files(package.as_str(), &resources);
        let (control, requests) = mpsc::channel(CONTROL_QUEUED_MAX);
        let handle = LocalPackage {
            failover: p.is_failover(),
            instance,
            control,
        };
        let supervisor = Supervisor {
            node: Arc::clone(self),
            instance,
            lease: self.lease.clone(),
            package: p,
            resources,
            guarded,
        };
        tokio::spawn(supervisor.run(requests));
        tracing::info!(node = %self.name, package = %package, "package started");
        Ok((format!("{package} started on {}", self.name), handle))
    }

    /// The package with each service of a failover package behind a start gate.
    fn gate_services(
        &self,
        package: &halcyon_config::Package,
        guarded: &mut Guarded,
    ) -> Result<halcyon_config::Package, String> {
        let mut gated = package.clone();
        if !package.is_failover() {
            return Ok(gated);
        }
        for (index, resource) in gated.resources.iter_mut().enumerate() {
            if let halcyon_config::Resource::Service(service) = resource {
                let path = self
                    .gates_dir
                    .join(format!("{}.{index}.gate", package.name));
                let gate = Gate::create(&path)
                    .map_err(|e| format!("creating the start gate {}: {e}", path.display()))?;
                service.command = gate.wrap(&service.command);
                guarded.gates.insert(index, gate);
            }
        }
        Ok(gated)
    }

    /// Resolves when the published lease is no longer valid (its fencing moment passed, or
    /// the lease task lost it). Reads the new expiry after each renewal it sleeps through.
    async fn lease_lost(&self, lease: &mut watch::Receiver<Lease>) {
        let lead = self.fence_lead();
        loop {
            let current = *lease.borrow_and_update();
            if !current.valid(self.platform.clock.now(), lead) {
                return;
            }
            let at = current
                .holder
                .fence_at(lead)
                .expect("a valid lease has an expiry");
            tokio::select! {
                biased;
                () = self.sleep_until(at) => {}
                changed = lease.changed() => if changed.is_err() { return },
            }
        }
    }
}

/// A failure the supervisor saw: which resource, its restart key, why, and its restart limit.
struct Failure {
    index: usize,
    resource: String,
    why: String,
    limit: u32,
}

/// What comes after a failure is handled.
enum Next {
    Supervise,
    Ended,
}

/// The task that owns a running package.
struct Supervisor {
    node: Arc<Node>,
    instance: u64,
    lease: watch::Receiver<Lease>,
    package: halcyon_config::Package,
    resources: PackageResources,
    guarded: Guarded,
}

impl Supervisor {
    async fn run(mut self, mut control: mpsc::Receiver<ControlMessage>) {
        let start = Instant::now();
        let mut next_monitor: BTreeMap<usize, Instant> = self
            .resources
            .monitor_intervals()
            .into_iter()
            .map(|(i, every)| (i, start + every))
            .collect();
        let failover = self.package.is_failover();
        let node = Arc::clone(&self.node);
        loop {
            let due = next_monitor
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(i, at)| (*i, *at));
            let mut lease = self.lease.clone();
            let failure = tokio::select! {
                biased;
                request = control.recv() => match request {
                    Some((Control::Stop(mode), reply)) => {
                        let _ = reply.send(self.end(mode).await);
                        return;
                    }
                    None => {
                        let _ = self.end(StopMode::Graceful).await;
                        return;
                    }
                    Some((Control::SwapAdapter(network), reply)) => {
                        let _ = reply.send(self.swap_addresses(network.as_str()).await);
                        continue;
                    }
                    Some((Control::RestartServices, reply)) => {
                        let _ = reply.send(self.restart_services().await);
                        continue;
                    }
                },
                () = node.lease_lost(&mut lease), if failover => {
                    self.fence().await;
                    return;
                }
                (index, why) = while_leased(&node, failover, self.resources.exited()) => {
                    match self.service_exited(index, why) {
                        Some(failure) => failure,
                        None => continue,
                    }
                }
                () = sleep_until_opt(due.map(|(_, at)| at)) => {
                    let Some((index, _)) = due else { continue };
                    let every = self.resources.resources[index].monitor_interval().unwrap_or(Duration::from_secs(10));
                    next_monitor.insert(index, Instant::now() + every);
                    match self.resources.monitor(index).await {
                        Health::Failed(why) => {
                            let resource = &self.package.resources[index];
                            let limit = resource.restarts().map_or(0, |(n, _)| n);
                            Failure { index, resource: resource.restart_key(), why: format!("monitor failed: {why}"), limit }
                        }
                        _ => continue,
                    }
                }
            };
            if let Next::Ended = self.failed(failure).await {
                return;
            }
        }
    }

    /// A service exited: the failure to handle (`None` when the resource is no service).
    fn service_exited(&mut self, index: usize, why: String) -> Option<Failure> {
        let Some(halcyon_config::Resource::Service(service)) = self.package.resources.get(index)
        else {
            return None;
        };
        let output = self
            .resources
            .output_tail(index)
            .filter(|o| !o.trim().is_empty());
        let why = match output {
            Some(o) => format!(
                "service exited: {why}; its output ended with:\n{}",
                o.trim_end()
            ),
            None => format!("service exited: {why}"),
        };
        Some(Failure {
            index,
            resource: service.name.clone(),
            why,
            limit: service.restart,
        })
    }

    /// The package stops here: resources stopped, nothing left with the guard, no process
    /// group files, and the executor told.
    async fn end(&mut self, mode: StopMode) -> Result<String, String> {
        let result = self.resources.stop(mode).await;
        let node = Arc::clone(&self.node);
        self.guarded.unregister_all(node.guard.as_ref());
        node.remove_pid_files(self.package.name.as_str());
        self.tell_ended(false).await;
        let name = &self.package.name;
        match result {
            Ok(r) if r.detail.is_empty() => Ok(format!("{name} halted on {}", node.name)),
            Ok(r) => Ok(format!("{name} halted on {}: {}", node.name, r.detail)),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn tell_ended(&mut self, failed: bool) {
        let ended = Inbox::Ended {
            package: self.package.name.clone(),
            instance: self.instance,
            failed,
        };
        let _ = self.node.executor_inbox.send(ended).await;
    }

    /// Fencing: the lease is about to expire, the failover package halts at once.
    async fn fence(&mut self) {
        let (node, name) = (&self.node.name, self.package.name.clone());
        tracing::warn!(node = %node, package = %name, "lease expiring: halting the package at once");
        let _ = self.end(StopMode::Immediate).await;
        tracing::warn!(node = %self.node.name, package = %name, "halted for lack of a lease");
    }

    /// A resource failed: restarted within its restart count while the lease allows,
    /// otherwise the package fails here.
    async fn failed(&mut self, failure: Failure) -> Next {
        let Failure {
            index,
            resource,
            why,
            limit,
        } = failure;
        let name = self.package.name.clone();
        let node = Arc::clone(&self.node);
        if self.package.is_failover() && !node.lease_valid() {
            // Fenced (by the guard, or about to be by this supervisor): not a failure.
            tracing::warn!(package = %name, resource, "{why} while this node holds no lease: stopped for lack of a lease");
            let _ = self.end(StopMode::Immediate).await;
            return Next::Ended;
        }
        tracing::warn!(package = %name, resource, "{why}");
        let counted = node
            .submit(&Command::RestartCounted {
                package: name.clone(),
                node: node.name.clone(),
                service: resource.clone(),
                detail: Some(why.clone()),
                at: node.timestamp(),
            })
            .await;
        let count = match counted {
            Ok(Reply::Restarts { count }) => count,
            _ => u32::MAX, // no quorum: do not restart blindly
        };
        if count <= limit && node.lease_valid_for(&self.package) {
            tracing::info!(package = %name, resource, count, limit, "restarting");
            match self.restart(index).await {
                Ok(()) => return Next::Supervise,
                Err(e) => tracing::warn!(package = %name, resource, "restart failed: {e}"),
            }
        }
        tracing::warn!(package = %name, resource, count, "restarts exhausted: the package fails here");
        self.fail_here(index, &resource, &why).await;
        Next::Ended
    }

    /// Stops and starts each of the package's services in turn, re-registered with the
    /// guard as a restart after an exit is.
    async fn restart_services(&mut self) -> Result<String, String> {
        let services: Vec<usize> = self
            .package
            .resources
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, halcyon_config::Resource::Service(_)))
            .map(|(i, _)| i)
            .collect();
        if services.is_empty() {
            return Err(format!("{} has no service to restart", self.package.name));
        }
        let guard = self.node.guard.as_ref();
        for &index in &services {
            self.guarded.forget_group(guard, index);
            self.resources
                .stop_and_restart(index)
                .await
                .map_err(|e| e.to_string())?;
            self.guarded.admit(guard, &mut self.resources, index)?;
        }
        self.node
            .write_pid_files(self.package.name.as_str(), &self.resources);
        let names: Vec<String> = services
            .iter()
            .map(|&i| self.package.resources[i].restart_key())
            .collect();
        Ok(format!("restarted {}", names.join(", ")))
    }

    async fn restart(&mut self, index: usize) -> Result<(), String> {
        let guard = self.node.guard.as_ref();
        self.guarded.forget_group(guard, index);
        self.resources
            .restart(index)
            .await
            .map_err(|e| e.to_string())?;
        self.guarded.admit(guard, &mut self.resources, index)?;
        self.node
            .write_pid_files(self.package.name.as_str(), &self.resources);
        Ok(())
    }

    /// Restarts exhausted: the package stops, the executor learns it failed here (before
    /// the event), `package_failed` is queued, and a `node_fail_fast` service takes the
    /// node down.
    async fn fail_here(&mut self, index: usize, resource: &str, why: &str) {
        let name = self.package.name.clone();
        let node = Arc::clone(&self.node);
        let fail_fast = matches!(
            self.package.resources.get(index),
            Some(halcyon_config::Resource::Service(s)) if s.node_fail_fast
        );
        let _ = self.resources.stop(StopMode::Graceful).await;
        self.guarded.unregister_all(node.guard.as_ref());
        node.remove_pid_files(name.as_str());
        self.tell_ended(true).await;
        let event = Event::PackageFailed {
            package: name.clone(),
            node: node.name.clone(),
        };
        let _ = node
            .enqueue(event, &format!("restarts exhausted: {resource}: {why}"))
            .await;
        if fail_fast {
            node.fail_fast(&format!(
                "{name}: {resource} failed ({why}) and has node_fail_fast"
            ))
            .await;
        }
    }

    /// Local LAN failover of the running package: every address on `network` moves to the
    /// first usable standby interface, or back to the primary when it has returned
    /// (`IpAddress::swap_target`); the guard learns the new interface before the move.
    async fn swap_addresses(&mut self, network: &str) -> Result<String, String> {
        let resources = &mut self.resources;
        let mut target = None;
        for r in resources.resources.iter_mut() {
            if let Some(ip) = r.as_ip_address()
                && ip.network() == network
            {
                target = ip.swap_target().map_err(|e| e.to_string())?;
                break;
            }
        }
        let Some(device) = target else {
            return Err(format!(
                "no usable interface on {network} on {} to move the addresses to (up, with a carrier)",
                self.node.name
            ));
        };
        if !self.guarded.addresses.is_empty() || !self.guarded.gates.is_empty() {
            for index in 0..resources.resources.len() {
                let on_network = resources.resources[index]
                    .as_ip_address()
                    .is_some_and(|ip| ip.network() == network);
                if on_network && let Some(address) = guard_address(resources, index, &device) {
                    self.guarded
                        .register_address(self.node.guard.as_ref(), address)?;
                }
            }
        }
        let moved = resources
            .swap_adapter(network, &device)
            .await
            .map_err(|e| e.to_string())?;
        Ok(if moved.is_empty() {
            format!("no address of the package is on {network}")
        } else {
            moved.join("; ")
        })
    }
}

/// Polls `future` only while this node holds a lease (for a failover package): the
/// address driver sends its repeated gratuitous ARPs while its `exited` future is polled,
/// and a daemon resumed after a pause must not announce an address the guard deleted (the
/// client would follow it away from the new holder) before its supervisor fences the package
/// (the fencing branch, polled before this one, wakes the supervisor).
fn while_leased<'a, T: 'a>(
    node: &'a Node,
    failover: bool,
    future: halcyon_resources::BoxFuture<'a, T>,
) -> impl std::future::Future<Output = T> + 'a {
    let mut future = future;
    std::future::poll_fn(move |cx| {
        if failover && !node.lease_valid() {
            return std::task::Poll::Pending;
        }
        future.as_mut().poll(cx)
    })
}
