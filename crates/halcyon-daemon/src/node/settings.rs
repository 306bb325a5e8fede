//! The node-local settings each node follows from the running configuration, so that
//! `halcyon apply` changes them on a live cluster (issue 16): each node switches at the
//! entry its replica applies. Level-triggered: whenever the view (or the detector's
//! status) changes, what the configuration says is compared with what runs, so a node
//! that started from files with another value (or missed the entry while down) takes the
//! cluster's as soon as its replica holds it.
//!
//! Each network's heartbeat (interval and sensitivity): the node heartbeats at that interval
//! and its failure detector judges paths by it (`halcyon_membership`: every heartbeat names
//! its sender's interval, so a receiver judges each sender by its own while the nodes switch
//! one after the other). The watchdog (`quorum.watchdog`): the device open is disarmed with
//! the magic character and the configured one opened (`LeaseCommand::SwitchWatchdog`);
//! `status` says which. The lease and the renewal interval are read from the view where
//! they are used (`Node::holding_lease`, `Node::renewal_interval`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use halcyon_config::{Cluster, Heartbeat};
use halcyon_membership::LinkPeers;
use halcyon_membership::detector::{DetectorConfig, NetworkStatus};
use halcyon_state::Command;

use super::{LeaseCommand, Node};

/// The (network, heartbeat) pairs to ask of the heartbeats: the configuration's heartbeat
/// on each network the detector runs with another, where it was not asked already
/// (`asked`: the last one asked per network). A network the configuration lacks is left
/// alone (`apply` refuses to change the networks).
pub(crate) fn heartbeat_changes(
    cluster: &Cluster,
    running: &[NetworkStatus],
    asked: &BTreeMap<u32, Heartbeat>,
) -> Vec<(u32, Heartbeat)> {
    running
        .iter()
        .filter_map(|status| {
            let configured = cluster
                .networks
                .iter()
                .find(|n| n.number == status.network)?
                .heartbeat;
            let differs =
                configured != status.heartbeat && asked.get(&status.network) != Some(&configured);
            differs.then_some((status.network, configured))
        })
        .collect()
}

impl Node {
    /// Keeps each network's heartbeat that of the running configuration (see the module
    /// documentation); ends when the heartbeats or the view end.
    pub(crate) async fn heartbeat_loop(self: Arc<Self>) {
        let mut view = self.view.clone();
        let mut membership = self.membership.clone();
        let mut asked: BTreeMap<u32, Heartbeat> = BTreeMap::new();
        loop {
            // Both marked seen before they are compared, so that each wait below ends only
            // at a change (also while the replica holds no configuration yet).
            view.borrow_and_update();
            let running = membership.borrow_and_update().detector.networks.clone();
            let state = self.snapshot();
            // A change the heartbeats could not take (their command queue full, or not
            // started yet in the simulator) is asked again a renewal interval later.
            let mut again = false;
            if let Some(config) = state.config() {
                for (network, heartbeat) in heartbeat_changes(&config.cluster, &running, &asked) {
                    let answer = self
                        .ask_lease_task(|done| LeaseCommand::Heartbeat {
                            network,
                            heartbeat,
                            done,
                        })
                        .await;
                    match answer {
                        Some(Ok(())) => {
                            tracing::info!(
                                node = %self.name,
                                network,
                                interval = ?heartbeat.interval,
                                sensitivity = heartbeat.sensitivity,
                                generation = state.generation(),
                                "heartbeat of the running configuration"
                            );
                            asked.insert(network, heartbeat);
                        }
                        Some(Err(why)) => {
                            tracing::warn!(node = %self.name, network, ?heartbeat, "heartbeat not changed yet: {why}");
                            again = true;
                        }
                        None => return,
                    }
                }
            }
            tokio::select! {
                r = view.changed() => if r.is_err() { return },
                r = membership.changed() => if r.is_err() { return },
                () = tokio::time::sleep(self.renew_interval), if again => {}
            }
        }
    }
}

impl Node {
    /// Keeps the Raft timings of this node's next start those of the running
    /// configuration, and the replicated state told which this daemon runs
    /// (`State::raft_intervals`: the lease covers their elections, a new coordinator counts
    /// on their election timeout). Level-triggered on the view: the running configuration's
    /// heartbeat interval is written durably to `raft_interval_file` first, then, while a
    /// member, `Command::RaftReport` commits this daemon's whenever the state's range for this
    /// node is not what the report gives (`State::raft_range_reported`: a configuration
    /// switch widened it, or the daemon restarted), so that ranges narrow again to what runs.
    /// The order matters: the state narrows a node's range to what it reports and the
    /// running configuration's only when the node judged on the running configuration,
    /// whose interval is then the one in its file. A failed write or commit is tried again
    /// a renewal interval later. Ends when the view ends.
    pub(crate) async fn raft_timings_loop(self: Arc<Self>) {
        let mut view = self.view.clone();
        let mut stored = std::fs::read_to_string(&self.raft_interval_file)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .map(Duration::from_millis);
        let mut again = false;
        loop {
            tokio::select! {
                r = view.changed() => if r.is_err() { return },
                () = tokio::time::sleep(self.renew_interval), if again => {}
            }
            again = false;
            let state = self.snapshot();
            let Some(config) = state.config() else {
                continue;
            };
            let running = config.cluster.heartbeat.interval;
            if stored != Some(running) {
                let text = running.as_millis().to_string();
                if let Err(e) = super::write_durably(&self.raft_interval_file, &text) {
                    tracing::warn!(node = %self.name, file = %self.raft_interval_file.display(), "the running heartbeat interval not kept for the next start: {e}");
                    again = true;
                    continue;
                }
                stored = Some(running);
            }
            let member = state.cluster().members.contains(&self.name);
            if !member
                || self.is_isolated()
                || state.raft_range(self.name.as_str())
                    == state.raft_range_reported(self.raft_interval)
            {
                continue;
            }
            let command = Command::RaftReport {
                reporter: self.name.clone(),
                interval: self.raft_interval,
                generation: state.generation(),
                at: self.timestamp(),
            };
            tracing::info!(node = %self.name, interval = ?self.raft_interval, generation = state.generation(), "Raft timings report");
            if self.submit(&command).await.is_err() {
                again = true;
            }
        }
    }
}

/// The watchdog device to switch to: the running configuration's, when it is not the one
/// the node runs with (`running`: the device it opened last, `None` for none).
pub(crate) fn watchdog_change(cluster: &Cluster, running: Option<&str>) -> Option<Option<String>> {
    let wanted = cluster.quorum.watchdog.as_deref();
    (wanted != running).then(|| wanted.map(str::to_owned))
}

impl Node {
    /// Keeps the watchdog device the running configuration's (see the module
    /// documentation); ends when the view or the lease task ends.
    pub(crate) async fn watchdog_loop(self: Arc<Self>) {
        let mut view = self.view.clone();
        let mut running = self.boot_config.cluster.quorum.watchdog.clone();
        loop {
            view.borrow_and_update();
            let state = self.snapshot();
            if let Some(path) = state
                .config()
                .and_then(|config| watchdog_change(&config.cluster, running.as_deref()))
            {
                let switch = |done| LeaseCommand::SwitchWatchdog {
                    path: path.clone(),
                    done,
                };
                let Some(said) = self.ask_lease_task(switch).await else {
                    return;
                };
                tracing::info!(
                    node = %self.name,
                    generation = state.generation(),
                    "watchdog of the running configuration: {said}"
                );
                *self
                    .watchdog_state
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = said;
                running = path;
            }
            if view.changed().await.is_err() {
                return;
            }
        }
    }
}

/// What the heartbeats watch and link: the detector's configuration, each link's peers
/// (ip addresses, disk slots) and where each link is (a disk's device, an ip address).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Watched {
    pub(crate) detector: DetectorConfig,
    pub(crate) links: LinkPeers,
    pub(crate) endpoints: BTreeMap<u32, halcyon_membership::LinkEndpoint>,
}

impl Watched {
    /// What node `me` watches and links in `cluster` (`None`: `me` is not in it).
    pub(crate) fn of(cluster: &Cluster, me: u32) -> Option<Watched> {
        Some(Watched {
            detector: DetectorConfig::from_cluster(cluster, me).ok()?,
            links: halcyon_membership::link_peers(cluster, me).ok()?,
            endpoints: halcyon_membership::link_endpoints(cluster, me),
        })
    }

    /// The networks watched (numbers and kinds; their heartbeats change apart:
    /// `heartbeat_changes`).
    fn networks(&self) -> Vec<(u32, halcyon_config::NetworkKind)> {
        self.detector
            .networks
            .iter()
            .map(|n| (n.number, n.kind))
            .collect()
    }
}

/// What the heartbeats must watch from now on: the running configuration's peers,
/// networks, paths and links for node `me`, when they are not those `watching` (nodes or
/// networks added or removed, a node's interfaces or a disk's device changed); `None`
/// while they are the same, or when the running configuration does not have `me` (a node
/// started from files that add it, before the cluster applies them: it keeps the peers of
/// its files).
pub(crate) fn peers_change(cluster: &Cluster, me: u32, watching: &Watched) -> Option<Watched> {
    let wanted = Watched::of(cluster, me)?;
    let (new, old) = (&wanted.detector, &watching.detector);
    let same = new.peers == old.peers
        && new.paths == old.paths
        && wanted.networks() == watching.networks()
        && wanted.links == watching.links
        && wanted.endpoints == watching.endpoints;
    (!same).then_some(wanted)
}

impl Node {
    /// Keeps what this node knows of the other nodes the running configuration's (the
    /// heartbeats' peers and addresses, the API addresses, the names a certificate may
    /// carry): a running cluster's `halcyon apply` added or removed nodes. Ends when the view
    /// or the lease task ends.
    pub(crate) async fn peers_loop(self: Arc<Self>, listening: super::Listenings) {
        let mut view = self.view.clone();
        let Some(mut watching) = Watched::of(&self.boot_config.cluster, self.number) else {
            return;
        };
        // The last refusal logged, so that one asked again every renewal interval (a disk
        // device this node cannot open) is logged once.
        let mut refused: Option<String> = None;
        // The same for the addresses this node could not listen on.
        let mut unlistened: Option<String> = None;
        // Whether the running configuration has had this node, and whether its removal
        // was said.
        let (mut was_in, mut removal_said) = (false, false);
        // The running configuration last acted on: the view changes with every entry, the
        // configuration only at a switch. `again`: the heartbeats refused the last change.
        let mut seen: Option<Arc<halcyon_config::Config>> = None;
        let mut again = false;
        // Whether this node still serves its files' addresses beside the running
        // configuration's: from the start (it listens there first) until its replica has
        // caught up with a leader. A node restarted with new addresses in its files whose
        // replica had not learned that the change was committed would otherwise go back
        // to its old addresses, which the other nodes no longer call.
        let mut serving_files = true;
        loop {
            view.borrow_and_update();
            let state = self.snapshot();
            let config = state.config().cloned();
            let switched = match (&seen, &config) {
                (Some(seen), Some(now)) => !Arc::ptr_eq(seen, now),
                (None, None) => false,
                _ => true,
            };
            // Once it left its files' addresses, it never serves them again.
            let caught_up = !serving_files || self.consensus.caught_up();
            let leave_files = serving_files && caught_up;
            if let Some(config) = config.filter(|_| switched || again || leave_files) {
                seen = Some(Arc::clone(&config));
                again = false;
                if switched {
                    self.persist_switch();
                }
                let files = (!caught_up).then_some(&*self.boot_config);
                if self
                    .listen_where_configured(&config, files, &listening, &mut unlistened)
                    .await
                {
                    serving_files = !caught_up;
                } else {
                    again = true;
                }
                let is_in = config.node(self.name.as_str()).is_some();
                was_in |= is_in;
                if was_in && !is_in && !removal_said {
                    removal_said = true;
                    tracing::warn!(
                        node = %self.name,
                        generation = state.generation(),
                        "this node is not in the running configuration any more (halcyon \
                         apply removed it): the other nodes no longer heartbeat it nor take \
                         its requests; stop its daemon"
                    );
                }
                match self
                    .follow_peers(&config, state.generation(), &mut watching, &mut refused)
                    .await
                {
                    Some(true) => {}
                    Some(false) => again = true,
                    None => return,
                }
            }
            tokio::select! {
                r = view.changed() => if r.is_err() { return },
                () = tokio::time::sleep(self.renew_interval), if again || serving_files => {}
            }
        }
    }
}

/// What a server listening on `served` must close and open to listen on `wanted`: the
/// addresses it serves that are not wanted, and the wanted ones it does not serve.
pub(crate) fn listen_changes(
    wanted: &BTreeSet<SocketAddr>,
    served: &[SocketAddr],
) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
    let served: BTreeSet<SocketAddr> = served.iter().copied().collect();
    (
        served.difference(wanted).copied().collect(),
        wanted.difference(&served).copied().collect(),
    )
}

impl Node {
    /// Gives the names a certificate may carry the Raft members of `config` (its nodes and
    /// its witness: one `halcyon apply` added is let in as soon as its configuration is in
    /// force), and the heartbeats (through the lease task) and the peers' API addresses its
    /// nodes when they differ from those `watching`, saying once what the lease task refused
    /// (`refused`: the last refusal said). Whether they follow `config` now; None once the
    /// lease task has ended.
    async fn follow_peers(
        &self,
        config: &Arc<halcyon_config::Config>,
        generation: u64,
        watching: &mut Watched,
        refused: &mut Option<String>,
    ) -> Option<bool> {
        if let Some(tls) = &self.raft_tls {
            tls.set_nodes(super::raft_member_names(config));
        }
        let Some(wanted) = peers_change(&config.cluster, self.number, watching) else {
            return Some(true);
        };
        let detector = wanted.detector.clone();
        let links = wanted.links.clone();
        self.set_peers(config);
        let ask = |done| LeaseCommand::Peers {
            config: Arc::clone(config),
            detector: Box::new(detector.clone()),
            links: links.clone(),
            done,
        };
        match self.ask_lease_task(ask).await? {
            Ok(()) => {
                tracing::info!(
                    node = %self.name,
                    peers = ?detector.peers,
                    generation,
                    "the nodes of the running configuration"
                );
                *watching = wanted;
                *refused = None;
                Some(true)
            }
            Err(why) => {
                if refused.as_ref() != Some(&why) {
                    tracing::warn!(
                        node = %self.name,
                        "heartbeat peers or networks not all changed yet (asked again every \
                         renewal interval): {why}"
                    );
                }
                *refused = Some(why);
                Some(false)
            }
        }
    }

    /// Makes the commit of the running configuration this node just switched to durable: a
    /// restart (even after a kill) begins from it, not from an older one whose addresses the
    /// other nodes no longer reach.
    fn persist_switch(&self) {
        if let Err(e) = self.consensus.persist_committed() {
            tracing::warn!(
                node = %self.name,
                "the running configuration's commit is not made durable: {e}"
            );
        }
    }

    /// [`Node::follow_own_addresses`], saying once what it could not listen on (`unlistened`:
    /// the last failure said). Whether it listens everywhere it should.
    async fn listen_where_configured(
        &self,
        config: &halcyon_config::Config,
        files: Option<&halcyon_config::Config>,
        listening: &super::Listenings,
        unlistened: &mut Option<String>,
    ) -> bool {
        match self.follow_own_addresses(config, files, listening).await {
            Ok(()) => {
                *unlistened = None;
                true
            }
            Err(why) => {
                if unlistened.as_ref() != Some(&why) {
                    tracing::warn!(
                        node = %self.name,
                        "not listening on every address of this node yet (asked again every \
                         renewal interval): {why}"
                    );
                }
                *unlistened = Some(why);
                false
            }
        }
    }

    /// Makes this node's Raft server, API and internal API listen on its addresses of
    /// `config`, and its TLS clients check a node address's certificate for that node's
    /// name: a network `halcyon apply` added with this node's interface on it carries Raft
    /// and API traffic at once, and a removed one no longer does. Nothing changes for a node
    /// `config` does not have. With `files` (this node's files, while its replica catches
    /// up), their addresses are served too. Errors: the addresses it could not listen on (an
    /// address not up on this host yet; asked again every renewal interval).
    pub(crate) async fn follow_own_addresses(
        &self,
        config: &halcyon_config::Config,
        files: Option<&halcyon_config::Config>,
        listening: &super::Listenings,
    ) -> Result<(), String> {
        if let Some(tls) = &self.raft_tls {
            tls.set_addresses(crate::peers::node_of_address(config));
        }
        let me = halcyon_consensus::NodeId::from(self.number);
        let Some(raft) = crate::peers::raft_members(config).remove(&me) else {
            return Ok(());
        };
        // What the configurations whose addresses of this node are served say of it.
        let each_peers: Vec<crate::peers::Peers> = std::iter::once(config)
            .chain(files)
            .map(crate::peers::Peers::new)
            .collect();
        type Of = fn(&crate::peers::Peers, halcyon_consensus::NodeId) -> Option<&[SocketAddr]>;
        let own = |of: Of| -> BTreeSet<SocketAddr> {
            each_peers
                .iter()
                .flat_map(|p| of(p, me).unwrap_or_default().iter().copied())
                .collect()
        };
        let mut failed = Vec::new();
        let mut wanted: BTreeSet<SocketAddr> = raft.addrs.into_iter().collect();
        if let Some(files) = files.and_then(|f| crate::peers::raft_members(f).remove(&me)) {
            wanted.extend(files.addrs);
        }
        // A configured node has an address on an ip network; none would leave it deaf.
        assert!(!wanted.is_empty(), "node {} has no Raft address", self.name);
        let (close, open) = listen_changes(&wanted, &self.consensus.served_addrs());
        for addr in close {
            self.consensus.stop_serving(addr);
        }
        for addr in open {
            let served = self.platform.network.serve_raft_also(&self.consensus, addr);
            if let Err(e) = served.await {
                failed.push(format!("Raft: cannot listen on {addr}: {e}"));
            }
        }
        for (server, wanted) in [
            (&listening.public, own(crate::peers::Peers::api)),
            (&listening.internal, own(crate::peers::Peers::internal)),
        ] {
            let (close, open) = listen_changes(&wanted, &server.addrs());
            for addr in close {
                server.close(addr);
            }
            for addr in open {
                if let Err(e) = server.add(addr).await {
                    failed.push(e.to_string());
                }
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cluster(sensitivities: &[(u32, u64, u32)]) -> Cluster {
        let dir =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/cluster");
        let mut config = halcyon_config::load(&[dir]).expect("the example loads").0;
        for network in &mut config.cluster.networks {
            if let Some(&(_, interval, sensitivity)) =
                sensitivities.iter().find(|(n, _, _)| *n == network.number)
            {
                network.heartbeat = Heartbeat {
                    interval: Duration::from_millis(interval),
                    sensitivity,
                };
            }
        }
        config.cluster
    }

    fn running(network: u32, interval: u64, sensitivity: u32) -> NetworkStatus {
        NetworkStatus {
            network,
            local_link_up: true,
            heartbeat: Heartbeat {
                interval: Duration::from_millis(interval),
                sensitivity,
            },
        }
    }

    fn heartbeat(interval: u64, sensitivity: u32) -> Heartbeat {
        Heartbeat {
            interval: Duration::from_millis(interval),
            sensitivity,
        }
    }

    #[test]
    fn a_server_closes_the_addresses_no_longer_wanted_and_opens_the_new_ones() {
        let a = |s: &str| -> SocketAddr { s.parse().unwrap() };
        let wanted = BTreeSet::from([a("10.0.0.1:7100"), a("10.0.1.1:7100")]);
        assert_eq!(
            listen_changes(&wanted, &[a("10.0.0.1:7100"), a("10.0.2.1:7100")]),
            (vec![a("10.0.2.1:7100")], vec![a("10.0.1.1:7100")])
        );
        let served: Vec<SocketAddr> = wanted.iter().copied().collect();
        assert_eq!(listen_changes(&wanted, &served), (vec![], vec![]));
        assert_eq!(
            listen_changes(&BTreeSet::new(), &served),
            (served.clone(), vec![])
        );
    }

    #[test]
    fn the_configured_heartbeat_is_asked_once_where_the_detector_runs_another() {
        let config = cluster(&[(1, 100, 6), (2, 50, 4)]);
        let detector = [running(1, 100, 4), running(2, 100, 4)];
        let mut asked = BTreeMap::new();
        assert_eq!(
            heartbeat_changes(&config, &detector, &asked),
            vec![(1, heartbeat(100, 6)), (2, heartbeat(50, 4))]
        );
        // Asked, not yet published by the detector: not asked again.
        asked.insert(1, heartbeat(100, 6));
        asked.insert(2, heartbeat(50, 4));
        assert_eq!(heartbeat_changes(&config, &detector, &asked), vec![]);
        // Published: nothing to do.
        let detector = [running(1, 100, 6), running(2, 50, 4)];
        assert_eq!(heartbeat_changes(&config, &detector, &asked), vec![]);
        // And back (a later apply): asked again.
        let back = cluster(&[(1, 100, 4), (2, 100, 4)]);
        assert_eq!(
            heartbeat_changes(&back, &detector, &asked),
            vec![(1, heartbeat(100, 4)), (2, heartbeat(100, 4))]
        );
    }

    #[test]
    fn a_peer_whose_address_changed_alone_changes_the_links_peers() {
        let config = cluster(&[]);
        let watching = Watched::of(&config, 1).unwrap();
        assert_eq!(peers_change(&config, 1, &watching), None);
        let mut moved = config.clone();
        let node2 = moved.nodes.iter_mut().find(|n| n.number == 2).unwrap();
        let interface = node2
            .interfaces
            .iter_mut()
            .find(|i| i.address.is_some())
            .unwrap();
        interface.address = Some("192.0.2.222".parse().unwrap());
        let wanted = peers_change(&moved, 1, &watching).expect("the address changed");
        assert_eq!(wanted.detector.peers, watching.detector.peers);
        assert!(
            wanted.links.values().flatten().any(|p| p.node == 2
                && p.address
                    .is_some_and(|a| a.ip().to_string() == "192.0.2.222")),
            "{:?}",
            wanted.links
        );
        assert_eq!(wanted.endpoints, watching.endpoints, "node 1's links stay");
        assert_eq!(peers_change(&moved, 1, &wanted), None);
    }

    #[test]
    fn a_disk_network_removed_added_or_moved_changes_what_the_heartbeats_watch() {
        use halcyon_config::NetworkKind;
        let config = cluster(&[]);
        let disk = config
            .networks
            .iter()
            .find(|n| n.kind == NetworkKind::Disk)
            .expect("the example has a disk network")
            .clone();
        let watching = Watched::of(&config, 1).unwrap();
        // A heartbeat changed alone is `heartbeat_changes`' business.
        let slower = cluster(&[(disk.number, 500, 3)]);
        assert_eq!(peers_change(&slower, 1, &watching), None);
        // Removed: no longer watched, no path on it, no link.
        let mut without = config.clone();
        without.networks.retain(|n| n.number != disk.number);
        let wanted = peers_change(&without, 1, &watching).expect("removed");
        let detector = &wanted.detector;
        assert!(detector.networks.iter().all(|n| n.number != disk.number));
        assert!(detector.paths.iter().all(|p| p.network != disk.number));
        assert!(!wanted.links.contains_key(&disk.number));
        assert!(!wanted.endpoints.contains_key(&disk.number));
        // Added back: watched and linked again.
        let back = peers_change(&config, 1, &wanted).expect("added");
        assert_eq!(back, watching);
        // Its device moved: only the endpoint differs, and that is a change.
        let mut moved = config.clone();
        let network = moved
            .networks
            .iter_mut()
            .find(|n| n.number == disk.number)
            .unwrap();
        network.device = Some("/dev/disk/by-id/another".to_owned());
        let wanted = peers_change(&moved, 1, &watching).expect("the device moved");
        assert_eq!(wanted.detector, watching.detector);
        assert_eq!(wanted.links, watching.links);
        assert_eq!(
            wanted.endpoints[&disk.number].0.as_deref(),
            Some("/dev/disk/by-id/another")
        );
    }

    #[test]
    fn the_watchdog_switches_only_when_the_configuration_names_another() {
        let mut config = cluster(&[]);
        assert_eq!(config.quorum.watchdog, None);
        assert_eq!(watchdog_change(&config, None), None);
        assert_eq!(watchdog_change(&config, Some("/dev/watchdog")), Some(None));
        config.quorum.watchdog = Some("/dev/watchdog1".to_owned());
        assert_eq!(
            watchdog_change(&config, Some("/dev/watchdog")),
            Some(Some("/dev/watchdog1".to_owned()))
        );
        assert_eq!(
            watchdog_change(&config, None),
            Some(Some("/dev/watchdog1".to_owned()))
        );
        assert_eq!(watchdog_change(&config, Some("/dev/watchdog1")), None);
    }

    #[test]
    fn a_network_that_the_configuration_lacks_is_left_alone() {
        let config = cluster(&[(1, 100, 4)]);
        let detector = [running(1, 100, 4), running(9, 100, 6)];
        assert_eq!(
            heartbeat_changes(&config, &detector, &BTreeMap::new()),
            vec![]
        );
    }
}
