//! Checks that need more than one field: duplicates, cross-references between the
//! cluster file and the package files, dependency cycles and unsatisfiable
//! dependencies, address plans, and timing combinations that cannot work.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::load::{ALL_NODES, Files, Origins, PackageOrigin};
use crate::model::*;
use crate::reader::{Sink, Span};

/// openraft's timings for a cluster (see [`Cluster::raft_timings`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaftTiming {
    pub heartbeat: std::time::Duration,
    pub election_min: std::time::Duration,
    pub election_max: std::time::Duration,
}

/// Added to the election time when the lease is derived.
pub const LEASE_MARGIN: std::time::Duration = std::time::Duration::from_millis(50);

#[derive(Debug, Default)]
pub(crate) struct ClusterSpans {
    pub root: Span,
    /// The `[cluster]` table.
    pub cluster: Span,
    /// `[[node]]` tables left out because they have no valid name (already
    /// reported); they still count as voters.
    pub unnamed_nodes: usize,
    pub nodes: Vec<NodeSpans>,
    /// (table, name) of each network.
    pub networks: Vec<(Span, Span)>,
    pub quorum: QuorumSpans,
}

#[derive(Debug, Default)]
pub(crate) struct QuorumSpans {
    pub table: Option<Span>,
    pub witness: Option<Span>,
    pub witness_name: Option<Span>,
    pub witness_number: Option<Span>,
    pub min_voters: Option<Span>,
    pub lease: Option<Span>,
}

#[derive(Debug, Default)]
pub(crate) struct NodeSpans {
    pub table: Span,
    pub name: Span,
    pub number: Span,
    pub interfaces: Vec<InterfaceSpans>,
}

#[derive(Debug, Default)]
pub(crate) struct InterfaceSpans {
    pub network: Span,
    pub address: Option<Span>,
}

impl Cluster {
    /// The longest failure detection time over the IP networks
    /// (`interval * sensitivity`).
    pub fn detection_time(&self) -> std::time::Duration {
        self.networks
            .iter()
            .filter(|n| n.kind == NetworkKind::Ip)
            .map(|n| n.heartbeat.detection_time())
            .max()
            .unwrap_or_else(|| self.heartbeat.detection_time())
    }

    /// openraft's timings, derived from the heartbeat interval `i`: heartbeat `i/3`,
    /// election timeout between `4i/5` and `8i/5` (150 ms / 300 ms would be openraft's
    /// defaults at `i` = 100 ms; these are shorter so that an election fits in the
    /// lease).
    pub fn raft_timings(&self) -> RaftTiming {
        let i = self.heartbeat.interval.as_millis() as u64;
        let ms = std::time::Duration::from_millis;
        RaftTiming {
            heartbeat: ms((i / 3).max(1)),
            election_min: ms((i * 4 / 5).max(2)),
            election_max: ms((i * 8 / 5).max(3)),
        }
    }

    /// The longest a new coordinator takes to be elected after the coordinator died:
    /// a follower waits out its leader lease (`election_max`) and then a random
    /// election timeout (at most `election_max`), checked on openraft's tick
    /// (1.5 x its heartbeat).
    pub fn election_time_max(&self) -> std::time::Duration {
        let t = self.raft_timings();
        let tick_ms = t.heartbeat.as_millis() as u64 * 3 / 2;
        t.election_max * 2 + std::time::Duration::from_millis(tick_ms)
    }

    /// The shortest lease with which the holders keep their leases while a new
    /// coordinator is elected: an election, plus one renewal interval (the last
    /// renewal may have gone out that long before the coordinator died), plus the
    /// holder's fencing lead (one interval), plus a margin.
    pub fn lease_min_for_elections(&self) -> std::time::Duration {
        self.election_time_max() + self.heartbeat.interval * 2 + LEASE_MARGIN
    }

    /// The lease (SPEC 6): as configured, or the longer of failure detection and
    /// [`Cluster::lease_min_for_elections`].
    pub fn lease(&self) -> std::time::Duration {
        self.quorum
            .lease
            .unwrap_or_else(|| self.detection_time().max(self.lease_min_for_elections()))
    }

    /// How many Raft voters the cluster has (nodes plus the witness).
    pub fn voter_count(&self) -> usize {
        self.nodes.len() + usize::from(self.quorum.witness.is_some())
    }
}

/// Checks within the cluster file.
pub(crate) fn check_cluster(sink: &mut Sink<'_>, cluster: &Cluster, spans: &ClusterSpans) {
    // Duplicate names and numbers.
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut numbers: BTreeMap<u32, usize> = BTreeMap::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let s = &spans.nodes[i];
        if let Some(&first) = names.get(node.name.as_str()) {
            let line = sink.source.position(spans.nodes[first].name.start).0;
            sink.error(
                s.name.clone(),
                &format!("node[{}].name", i + 1),
                format!("node \"{}\" is defined twice", node.name),
            )
            .hint = Some(format!(
                "the first definition is on line {line}; node names must be unique"
            ));
        } else {
            names.insert(node.name.as_str(), i);
        }
        if node.number == 0 {
            // Its number has a mistake, already reported.
        } else if let Some(&first) = numbers.get(&node.number) {
            let line = sink.source.position(spans.nodes[first].number.start).0;
            sink.error(
                s.number.clone(),
                &format!("node[{}].number", i + 1),
                format!(
                    "node number {} is used by \"{}\" too",
                    node.number, cluster.nodes[first].name
                ),
            )
            .hint = Some(format!(
                "node numbers must be unique (the other is on line {line})"
            ));
        } else {
            numbers.insert(node.number, i);
        }
    }
    let mut network_names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, network) in cluster.networks.iter().enumerate() {
        if let Some(&first) = network_names.get(network.name.as_str()) {
            let line = sink.source.position(spans.networks[first].1.start).0;
            sink.error(
                spans.networks[i].1.clone(),
                &format!("network[{}].name", i + 1),
                format!("network \"{}\" is defined twice", network.name),
            )
            .hint = Some(format!("the first definition is on line {line}"));
        } else {
            network_names.insert(network.name.as_str(), i);
        }
    }
    if cluster.nodes.len() > limits::NODES_MAX {
        sink.error(
            spans.root.clone(),
            "node",
            format!("{} nodes", cluster.nodes.len()),
        )
        .expected = Some(format!("at most {}", limits::NODES_MAX));
    }
    if cluster.networks.len() > limits::NETWORKS_MAX {
        sink.error(
            spans.root.clone(),
            "network",
            format!("{} networks", cluster.networks.len()),
        )
        .expected = Some(format!("at most {}", limits::NETWORKS_MAX));
    }

    // Interfaces.
    let mut stationary: BTreeMap<IpAddr, &str> = BTreeMap::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let node_path = format!("node[{}]", i + 1);
        let mut primaries: BTreeSet<&str> = BTreeSet::new();
        let mut has_ip = false;
        for (j, interface) in node.interfaces.iter().enumerate() {
            let s = &spans.nodes[i].interfaces[j];
            let path = format!("{node_path}.interface[{}]", j + 1);
            let Some(network) = cluster
                .networks
                .iter()
                .find(|n| n.name == interface.network)
            else {
                let hint = did_you_mean(
                    interface.network.as_str(),
                    cluster.networks.iter().map(|n| n.name.as_str()),
                );
                sink.error(
                    s.network.clone(),
                    &format!("{path}.network"),
                    format!("network \"{}\" is not defined", interface.network),
                )
                .expected = Some(format!(
                    "one of {}",
                    list(cluster.networks.iter().map(|n| n.name.as_str()))
                ));
                sink.diagnostics.last_mut().expect("pushed").hint = hint;
                continue;
            };
            if network.kind == NetworkKind::Disk {
                sink.error(s.network.clone(), &format!("{path}.network"), format!("\"{}\" is a disk network", network.name))
                    .hint = Some("every node takes part in a disk network through its node number; list only ip interfaces".to_owned());
                continue;
            }
            has_ip = true;
            if !interface.standby && !primaries.insert(network.name.as_str()) {
                sink.error(
                    s.network.clone(),
                    &format!("{path}.network"),
                    format!("a second primary interface on network \"{}\"", network.name),
                )
                .hint = Some(
                    "mark extra interfaces on the same network with standby = true".to_owned(),
                );
            }
            let Some(address) = interface.address else {
                if s.address.is_none() {
                    sink.error(s.network.clone(), &format!("{path}.address"), "missing for an interface on an ip network")
                        .expected = Some("the node's stationary address on that network, e.g. address = \"198.18.1.1\"".to_owned());
                }
                continue;
            };
            let address_span = s.address.clone().unwrap_or_else(|| s.network.clone());
            if !network.subnets.is_empty()
                && !network.subnets.iter().any(|sub| sub.contains(address))
            {
                sink.error(
                    address_span.clone(),
                    &format!("{path}.address"),
                    format!(
                        "{address} is outside every subnet of network \"{}\"",
                        network.name
                    ),
                )
                .expected = Some(format!(
                    "an address in {}",
                    list(network.subnets.iter().map(|s| s.to_string()))
                ));
            }
            if let Some(other) = stationary.insert(address, node.name.as_str()) {
                sink.error(
                    address_span,
                    &format!("{path}.address"),
                    format!("{address} is already the address of node \"{other}\""),
                )
                .hint = Some("each interface needs its own stationary address".to_owned());
            }
        }
        for interface in node.interfaces.iter().filter(|i| i.standby) {
            if !primaries.contains(interface.network.as_str())
                && cluster
                    .network(interface.network.as_str())
                    .is_some_and(|n| n.kind == NetworkKind::Ip)
            {
                sink.error(
                    spans.nodes[i].table.clone(),
                    &format!("{node_path}.interface"),
                    format!(
                        "a standby interface on \"{}\" but no primary one",
                        interface.network
                    ),
                )
                .hint = Some(
                    "a standby interface takes over from a primary interface on the same network"
                        .to_owned(),
                );
            }
        }
        if !has_ip && !node.interfaces.is_empty() || node.interfaces.is_empty() {
            sink.error(
                spans.nodes[i].table.clone(),
                &format!("{node_path}.interface"),
                format!("node \"{}\" has no interface on an ip network", node.name),
            )
            .expected = Some("at least one [[node.interface]] with network and address".to_owned());
        }
    }

    // Quorum.
    let witness_span = spans
        .quorum
        .witness
        .clone()
        .unwrap_or_else(|| spans.root.clone());
    if let Some(witness) = &cluster.quorum.witness {
        if cluster.node(witness.name.as_str()).is_some() {
            sink.error(
                spans
                    .quorum
                    .witness_name
                    .clone()
                    .unwrap_or_else(|| witness_span.clone()),
                "quorum.witness.name",
                format!("\"{}\" is also a node", witness.name),
            )
            .hint = Some("the witness runs no packages; give it a name of its own".to_owned());
        }
        if let Some(node) = cluster.nodes.iter().find(|n| n.number == witness.number) {
            sink.error(
                spans
                    .quorum
                    .witness_number
                    .clone()
                    .unwrap_or_else(|| witness_span.clone()),
                "quorum.witness.number",
                format!("number {} is also node \"{}\"'s", witness.number, node.name),
            )
            .hint = Some("witness and node numbers share one space (they are Raft ids)".to_owned());
        }
    }
    let voters = cluster.voter_count() + spans.unnamed_nodes;
    if cluster.nodes.len() + spans.unnamed_nodes == 2 && cluster.quorum.witness.is_none() {
        sink.error(
            spans
                .quorum
                .table
                .clone()
                .unwrap_or_else(|| spans.cluster.clone()),
            "quorum.witness",
            "a two-node cluster without a witness loses its quorum when either node fails",
        )
        .hint = Some(
            "add [quorum.witness] with name, number and address (run `halcyon witness` there)"
                .to_owned(),
        );
    }
    if cluster.quorum.min_voters as usize > voters {
        sink.error(
            spans
                .quorum
                .min_voters
                .clone()
                .unwrap_or_else(|| spans.root.clone()),
            "quorum.min_voters",
            format!(
                "{} is more than the cluster's {voters} voters",
                cluster.quorum.min_voters
            ),
        )
        .expected = Some(format!("from 1 to {voters}"));
    }
    if let Some(lease) = cluster.quorum.lease {
        let detection = cluster.detection_time();
        if lease < detection {
            sink.error(
                spans
                    .quorum
                    .lease
                    .clone()
                    .unwrap_or_else(|| spans.root.clone()),
                "quorum.lease",
                format!(
                    "a lease of {} is shorter than failure detection ({} = interval x sensitivity)",
                    humantime::format_duration(lease),
                    humantime::format_duration(detection)
                ),
            )
            .expected = Some(format!(
                "at least {}",
                humantime::format_duration(detection)
            ));
            sink.diagnostics.last_mut().expect("pushed").hint = Some("a node would give up its packages before the others could even notice a problem; leave lease unset to derive it".to_owned());
        } else if lease < cluster.lease_min_for_elections() {
            let minimum = cluster.lease_min_for_elections();
            sink.error(
                spans
                    .quorum
                    .lease
                    .clone()
                    .unwrap_or_else(|| spans.root.clone()),
                "quorum.lease",
                format!(
                    "a lease of {} is shorter than electing a new coordinator takes ({} with this heartbeat interval, plus a renewal interval, the fencing lead and {} margin)",
                    humantime::format_duration(lease),
                    humantime::format_duration(cluster.election_time_max()),
                    humantime::format_duration(LEASE_MARGIN)
                ),
            )
            .expected = Some(format!("at least {}", humantime::format_duration(minimum)));
            sink.diagnostics.last_mut().expect("pushed").hint = Some("when the coordinator fails, every node would give up its packages before a new coordinator could renew the leases; leave lease unset to derive it".to_owned());
        }
    }
}

fn list<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    items
        .into_iter()
        .map(|s| format!("\"{}\"", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Joins the cluster and the packages into a configuration, checking everything
/// that crosses files. Returns `None` if any mistake was found (in `diagnostics`).
pub(crate) fn assemble(
    files: &Files,
    cluster: Cluster,
    packages: Vec<(Package, PackageOrigin)>,
    origins: &Origins,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Config> {
    let errors_before = diagnostics.len();
    let mut out: BTreeMap<PackageName, Package> = BTreeMap::new();
    let mut origin_of: BTreeMap<PackageName, PackageOrigin> = BTreeMap::new();
    let node_names: Vec<&str> = cluster.nodes.iter().map(|n| n.name.as_str()).collect();

    for (mut package, mut origin) in packages {
        let source = &files.sources[origin.file];
        let mut sink = Sink::new(source);
        if let Some(first) = origin_of.get(&package.name) {
            let first_file = &files.sources[first.file];
            let (line, _) = first_file.position(first.name.start);
            sink.error(
                origin.name.clone(),
                "package.name",
                format!("package \"{}\" is defined twice", package.name),
            )
            .hint = Some(format!(
                "the first definition is in {}:{line}",
                first_file.path.display()
            ));
            diagnostics.extend(sink.diagnostics);
            continue;
        }

        expand_node_list(&mut sink, &cluster, &mut package, &mut origin, &node_names);
        check_networks(&mut sink, &cluster, &mut package, &origin);
        check_timing(&mut sink, &cluster, &package, &origin);
        if package.fallback_timer.is_some() {
            let span = origin.fallback_timer.clone().unwrap_or_default();
            if package.failback_policy == FailbackPolicy::Manual {
                sink.error(
                    span.clone(),
                    "fallback_timer",
                    "has no effect with failback_policy = \"manual\"",
                )
                .hint = Some(
                    "set failback_policy = \"automatic\" or remove [fallback_timer]".to_owned(),
                );
            }
            if !package.is_failover() {
                sink.error(
                    span,
                    "fallback_timer",
                    format!("has no effect on a {} package", package.package_type),
                )
                .hint = Some("only failover packages fail back".to_owned());
            }
        }
        diagnostics.extend(sink.diagnostics);
        origin_of.insert(package.name.clone(), origin);
        out.insert(package.name.clone(), package);
    }

    check_addresses(files, &cluster, &out, &origin_of, diagnostics);
    check_dependencies(files, &out, &origin_of, origins, diagnostics);
    if out.len() > limits::PACKAGES_MAX {
        diagnostics.push(Diagnostic {
            file: files.sources[0].path.clone(),
            line: 0,
            column: 0,
            field: "package".to_owned(),
            problem: format!("{} packages", out.len()),
            expected: Some(format!("at most {}", limits::PACKAGES_MAX)),
            hint: None,
        });
    }

    (diagnostics.len() == errors_before).then_some(Config {
        cluster,
        packages: out,
    })
}

fn expand_node_list(
    sink: &mut Sink<'_>,
    cluster: &Cluster,
    package: &mut Package,
    origin: &mut PackageOrigin,
    node_names: &[&str],
) {
    let errors_before = sink.diagnostics.len();
    expand_node_list_checked(sink, cluster, package, origin, node_names);
    origin.nodes_invalid |= sink.diagnostics.len() > errors_before;
}

fn expand_node_list_checked(
    sink: &mut Sink<'_>,
    cluster: &Cluster,
    package: &mut Package,
    origin: &mut PackageOrigin,
    node_names: &[&str],
) {
    let star = package.nodes.iter().position(|n| n.as_str() == ALL_NODES);
    if let Some(star) = star {
        // Every node comes from the "*": point there when one of them is wrong.
        let star_span = origin
            .nodes
            .get(star)
            .cloned()
            .unwrap_or_else(|| origin.nodes_field.clone());
        origin.nodes = vec![star_span; cluster.nodes.len()];
        origin.nodes_from_star = true;
        if package.nodes.len() > 1 {
            sink.error(
                origin.nodes_field.clone(),
                "package.nodes",
                "\"*\" is mixed with node names",
            )
            .expected = Some(
                "either [\"*\"] (every node in configured order) or a list of node names"
                    .to_owned(),
            );
        }
        package.nodes = cluster.nodes.iter().map(|n| n.name.clone()).collect();
        return;
    }
    if package.package_type == PackageType::SystemMultiNode && !package.nodes.is_empty() {
        sink.error(
            origin.nodes_field.clone(),
            "package.nodes",
            "a system multi-node package runs on every node",
        )
        .expected = Some("nodes = [\"*\"]".to_owned());
    }
    let mut seen = BTreeSet::new();
    for (i, node) in package.nodes.iter().enumerate() {
        let span = origin
            .nodes
            .get(i)
            .cloned()
            .unwrap_or_else(|| origin.nodes_field.clone());
        let path = format!("package.nodes[{}]", i + 1);
        if cluster.node(node.as_str()).is_none() {
            let hint = did_you_mean(node.as_str(), node_names.iter().copied());
            sink.error(
                span,
                &path,
                format!("node \"{node}\" is not defined in the cluster"),
            )
            .expected = Some(format!("one of {}", list(node_names)));
            sink.diagnostics.last_mut().expect("pushed").hint = hint;
        } else if !seen.insert(node.as_str()) {
            sink.error(span, &path, format!("node \"{node}\" is listed twice"))
                .hint = Some("each node appears once; its position is its priority".to_owned());
        }
    }
}

fn check_networks(
    sink: &mut Sink<'_>,
    cluster: &Cluster,
    package: &mut Package,
    origin: &PackageOrigin,
) {
    let network_names: Vec<&str> = cluster.networks.iter().map(|n| n.name.as_str()).collect();
    let mut required: Vec<NetworkName> = Vec::new();
    for (i, name) in package.networks.iter().enumerate() {
        let span = origin.networks.get(i).cloned().unwrap_or_default();
        match cluster.network(name.as_str()) {
            None => {
                let hint = did_you_mean(name.as_str(), network_names.iter().copied());
                sink.error(
                    span,
                    &format!("package.networks[{}]", i + 1),
                    format!("network \"{name}\" is not defined"),
                )
                .expected = Some(format!("one of {}", list(&network_names)));
                sink.diagnostics.last_mut().expect("pushed").hint = hint;
            }
            Some(n) if n.kind == NetworkKind::Disk => {
                sink.error(
                    span,
                    &format!("package.networks[{}]", i + 1),
                    format!("\"{name}\" is a disk network"),
                )
                .hint = Some("a package can only require ip networks".to_owned());
            }
            Some(_) => {
                if !required.contains(name) {
                    required.push(name.clone());
                }
            }
        }
    }
    // Ip resources whose addresses all made sense: only for those is it worth
    // asking whether every node finds an address in its own subnet.
    let mut sound: Vec<usize> = Vec::new();
    for (i, resource) in package.resources.iter().enumerate() {
        let Resource::Ip(ip) = resource else { continue };
        let resource_origin = origin.resources.get(i).cloned().unwrap_or_default();
        let ip_origin = resource_origin.ip.clone().unwrap_or_default();
        let Some(network) = cluster.network(ip.network.as_str()) else {
            let hint = did_you_mean(ip.network.as_str(), network_names.iter().copied());
            sink.error(
                ip_origin.network,
                &resource_origin.path("network"),
                format!("network \"{}\" is not defined", ip.network),
            )
            .expected = Some(format!("one of {}", list(&network_names)));
            sink.diagnostics.last_mut().expect("pushed").hint = hint;
            continue;
        };
        if network.kind == NetworkKind::Disk {
            sink.error(
                ip_origin.network,
                &resource_origin.path("network"),
                format!("\"{}\" is a disk network", network.name),
            )
            .hint = Some("relocatable addresses live on ip networks".to_owned());
            continue;
        }
        let errors_before = sink.diagnostics.len();
        let mut used_subnets: BTreeSet<usize> = BTreeSet::new();
        for (j, address) in ip.addresses.iter().enumerate() {
            let (field, span) = ip_origin
                .addresses
                .get(j)
                .cloned()
                .unwrap_or_else(|| ("address".to_owned(), resource_origin.table.clone()));
            let field = resource_origin.path(&field);
            match network
                .subnets
                .iter()
                .position(|s| s.contains(address.address))
            {
                None => {
                    sink.error(
                        span,
                        &field,
                        format!(
                            "{}/{} is outside every subnet of network \"{}\"",
                            address.address, address.prefix, network.name
                        ),
                    )
                    .expected = Some(format!(
                        "an address in {}",
                        list(network.subnets.iter().map(|s| s.to_string()))
                    ));
                }
                Some(k) => {
                    if address.prefix != network.subnets[k].prefix {
                        sink.error(
                            span.clone(),
                            &field,
                            format!(
                                "prefix /{} differs from the subnet's /{}",
                                address.prefix, network.subnets[k].prefix
                            ),
                        )
                        .expected =
                            Some(format!("{}/{}", address.address, network.subnets[k].prefix));
                    }
                    if !used_subnets.insert(k) {
                        sink.error(span, &field, format!("a second address in subnet {}", network.subnets[k]))
                            .hint = Some("list at most one address per subnet; the adoptive node uses the one of its own subnet".to_owned());
                    }
                }
            }
        }
        if sink.diagnostics.len() == errors_before && !ip_origin.addresses_invalid {
            sound.push(i);
        }
        if !required.contains(&ip.network) {
            required.push(ip.network.clone());
        }
    }
    // Every node of the node list must be able to carry the package's networks,
    // and for cross-subnet addresses, find an address in its own subnet.
    for (i, node_name) in package.nodes.iter().enumerate() {
        let Some(node) = cluster.node(node_name.as_str()) else {
            continue;
        };
        let span = origin
            .nodes
            .get(i)
            .cloned()
            .unwrap_or_else(|| origin.nodes_field.clone());
        let (field, node_text, fix) = if origin.nodes_from_star {
            (
                "package.nodes".to_owned(),
                format!("node \"{node_name}\" (included by \"*\")"),
                "list the nodes instead of \"*\"",
            )
        } else {
            (
                format!("package.nodes[{}]", i + 1),
                format!("node \"{node_name}\""),
                "remove the node from the list",
            )
        };
        // An interface on an undefined network is reported in the cluster file;
        // it was probably meant for one of the networks the package needs.
        let misnamed_interface = node
            .interfaces
            .iter()
            .any(|i| cluster.network(i.network.as_str()).is_none());
        for network in &required {
            let Some(interface) = node.interface_on(network.as_str()) else {
                if misnamed_interface {
                    continue;
                }
                sink.error(span.clone(), &field, format!("{node_text} has no interface on network \"{network}\", which the package needs"))
                    .hint = Some(format!("the package could never run there: {fix} or add the interface"));
                continue;
            };
            let (Some(address), Some(net)) = (interface.address, cluster.network(network.as_str()))
            else {
                continue;
            };
            let node_subnet = net.subnets.iter().find(|s| s.contains(address));
            for &r in &sound {
                let Resource::Ip(ip) = &package.resources[r] else {
                    continue;
                };
                if ip.network != *network || ip.addresses.is_empty() {
                    continue;
                }
                if let Some(subnet) = node_subnet
                    && !ip.addresses.iter().any(|a| subnet.contains(a.address))
                {
                    sink.error(
                        span.clone(),
                        &field,
                        format!(
                            "{node_text} is in subnet {subnet}, where the package has no address"
                        ),
                    )
                    .hint = Some(format!(
                        "add an address in {subnet} to {}",
                        origin.resources[r].path("addresses")
                    ));
                }
            }
        }
    }
    package.networks = required;
}

fn check_timing(sink: &mut Sink<'_>, cluster: &Cluster, package: &Package, origin: &PackageOrigin) {
    let max = cluster.limits.max_event_duration;
    let show = |d: std::time::Duration| humantime::format_duration(d).to_string();
    for (field, value, span) in [
        ("run_timeout", package.run_timeout, &origin.run_timeout),
        ("halt_timeout", package.halt_timeout, &origin.halt_timeout),
    ] {
        // The package's timeouts are the defaults of its scripts. A value
        // written here is reported here; a built-in default only matters for the
        // scripts that inherit it, and is reported at each of them.
        if let Some(span) = span
            && value > max
        {
            sink.error(
                span.clone(),
                &format!("package.{field}"),
                format!(
                    "{} is longer than the event's maximum duration ({})",
                    show(value),
                    show(max)
                ),
            )
            .hint = Some(
                "raise [limits] max_event_duration in the cluster file or shorten the timeout"
                    .to_owned(),
            );
        }
    }
    for (i, resource) in package.resources.iter().enumerate() {
        let resource_origin = &origin.resources[i];
        let timeouts: Vec<(&str, std::time::Duration)> = match resource {
            Resource::Script(s) => vec![
                ("run_timeout", s.run_timeout),
                ("halt_timeout", s.halt_timeout),
            ],
            Resource::Service(s) => vec![("halt_timeout", s.halt_timeout)],
            Resource::Ocf(o) => vec![("timeout", o.timeout)],
            Resource::Volume(v) => vec![("timeout", v.timeout)],
            Resource::Filesystem(f) => vec![("timeout", f.timeout)],
            Resource::Ip(_) => continue,
        };
        for (field, value) in timeouts {
            if value <= max {
                continue;
            }
            // Where the value came from: this field, the resource's `timeout`
            // (scripts), the package (reported there), or a built-in default.
            let written = resource_origin
                .timeouts
                .iter()
                .find(|(f, _)| *f == field)
                .or_else(|| {
                    resource_origin
                        .timeouts
                        .iter()
                        .find(|(f, _)| *f == "timeout")
                });
            let from_package = match field {
                "run_timeout" => origin.run_timeout.is_some(),
                _ => origin.halt_timeout.is_some(),
            };
            let hung =
                "the event would be reported as hung while the command is still allowed to run";
            let (span, path, problem, hint) = match written {
                Some((f, span)) => (
                    span.clone(),
                    resource_origin.path(f),
                    format!("a timeout of {}", show(value)),
                    format!("{hung}; raise [limits] max_event_duration or shorten the timeout"),
                ),
                None if matches!(resource, Resource::Script(_)) && from_package => continue,
                None => (
                    resource_origin.table.clone(),
                    resource_origin.path(field),
                    format!("the default {field} of {}", show(value)),
                    format!(
                        "{hung}; set {field} in this resource or raise [limits] max_event_duration"
                    ),
                ),
            };
            sink.error(
                span,
                &path,
                format!(
                    "{problem} is longer than the event's maximum duration ({})",
                    show(max)
                ),
            )
            .hint = Some(hint);
        }
    }
}

fn check_addresses(
    files: &Files,
    cluster: &Cluster,
    packages: &BTreeMap<PackageName, Package>,
    origins: &BTreeMap<PackageName, PackageOrigin>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    // Where each relocatable address was first seen: package, file, position.
    let mut seen: BTreeMap<IpAddr, (&PackageName, String)> = BTreeMap::new();
    let stationary: BTreeMap<IpAddr, &NodeName> = cluster
        .nodes
        .iter()
        .flat_map(|n| {
            n.interfaces
                .iter()
                .filter_map(move |i| i.address.map(|a| (a, &n.name)))
        })
        .collect();
    for (name, package) in packages {
        let origin = &origins[name];
        let source = &files.sources[origin.file];
        let mut sink = Sink::new(source);
        for (i, resource) in package.resources.iter().enumerate() {
            let Resource::Ip(ip) = resource else { continue };
            let resource_origin = &origin.resources[i];
            let ip_origin = resource_origin.ip.clone().unwrap_or_default();
            for (j, address) in ip.addresses.iter().enumerate() {
                let (field, span) = ip_origin
                    .addresses
                    .get(j)
                    .cloned()
                    .unwrap_or_else(|| ("address".to_owned(), resource_origin.table.clone()));
                let field = resource_origin.path(&field);
                if let Some(node) = stationary.get(&address.address) {
                    sink.error(
                        span.clone(),
                        &field,
                        format!(
                            "{} is node \"{node}\"'s stationary address",
                            address.address
                        ),
                    )
                    .hint = Some("a relocatable address must not belong to any node".to_owned());
                }
                let (line, column) = source.position(span.start);
                let here = format!("{}:{line}:{column}", source.path.display());
                match seen.get(&address.address) {
                    None => {
                        seen.insert(address.address, (name, here));
                    }
                    Some((other, there)) => {
                        let problem = if *other == name {
                            format!("{} is listed twice in this package", address.address)
                        } else {
                            format!(
                                "{} is also a relocatable address of package \"{other}\"",
                                address.address
                            )
                        };
                        sink.error(span, &field, problem).hint = Some(format!(
                            "the other is at {there}; two packages with one address would answer for each other"
                        ));
                    }
                }
            }
        }
        diagnostics.extend(sink.diagnostics);
    }
}

fn check_dependencies(
    files: &Files,
    packages: &BTreeMap<PackageName, Package>,
    origins: &BTreeMap<PackageName, PackageOrigin>,
    load_origins: &Origins,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let names: Vec<&str> = packages.keys().map(|k| k.as_str()).collect();
    // The dependencies that make sense one by one: the cycle search uses only these.
    let mut edges: BTreeMap<&PackageName, Vec<(usize, &PackageName)>> = BTreeMap::new();
    for (name, package) in packages {
        let origin = &origins[name];
        let mut sink = Sink::new(&files.sources[origin.file]);
        let mut locations: BTreeMap<&PackageName, DependencyLocation> = BTreeMap::new();
        let out = edges.entry(name).or_default();
        for (i, dependency) in package.dependencies.iter().enumerate() {
            let dependency_origin = origin.dependencies.get(i).cloned().unwrap_or_default();
            let span = dependency_origin.package;
            let path = format!("dependency[{}].package", dependency_origin.number);
            if dependency.package == *name {
                sink.error(span, &path, "the package depends on itself")
                    .hint = Some("remove this dependency".to_owned());
                continue;
            }
            let Some(dependee) = packages.get(&dependency.package) else {
                if load_origins
                    .unreadable_packages
                    .contains(dependency.package.as_str())
                {
                    // Defined in a file with mistakes, which are reported there.
                    continue;
                }
                let hint = did_you_mean(dependency.package.as_str(), names.iter().copied());
                sink.error(
                    span,
                    &path,
                    format!("package \"{}\" is not defined", dependency.package),
                )
                .expected = Some("the name of a package in this configuration".to_owned());
                sink.diagnostics.last_mut().expect("pushed").hint = hint;
                continue;
            };
            if let Some(previous) = locations.insert(&dependency.package, dependency.location) {
                let problem = if previous == dependency.location {
                    format!("a second dependency on \"{}\"", dependency.package)
                } else {
                    format!(
                        "\"{}\" is required both {previous} and {}, which contradict each other",
                        dependency.package, dependency.location
                    )
                };
                sink.error(span.clone(), &path, problem).hint =
                    Some("keep one dependency per package".to_owned());
                continue;
            }
            out.push((i, &dependency.package));
            if origin.nodes_invalid || origins[&dependency.package].nodes_invalid {
                // A node list with a mistake (reported) says nothing reliable.
                continue;
            }
            let ours: BTreeSet<&str> = package.nodes.iter().map(|n| n.as_str()).collect();
            let theirs: BTreeSet<&str> = dependee.nodes.iter().map(|n| n.as_str()).collect();
            match dependency.location {
                DependencyLocation::SameNode if ours.is_disjoint(&theirs) => {
                    sink.error(span, &path, format!("same_node on \"{}\" can never be satisfied: the node lists share no node", dependency.package))
                        .hint = Some(format!(
                            "\"{name}\" can run on {} and \"{}\" on {}; the two packages need a node in common",
                            list(&ours),
                            dependency.package,
                            list(&theirs)
                        ));
                }
                DependencyLocation::DifferentNode => {
                    let hint = if dependee.is_failover() {
                        let possible = ours.iter().any(|a| theirs.iter().any(|b| a != b));
                        (!possible).then(|| format!(
                            "\"{name}\" can run on {} and \"{}\" on {}: there is no pair of distinct nodes",
                            list(&ours),
                            dependency.package,
                            list(&theirs)
                        ))
                    } else {
                        // A multi-node dependee runs on every node of its list.
                        let possible = ours.iter().any(|a| !theirs.contains(a));
                        (!possible).then(|| format!(
                            "\"{}\" is a {} package, up on every node of its list ({}), which covers every node \"{name}\" can run on ({})",
                            dependency.package,
                            dependee.package_type,
                            list(&theirs),
                            list(&ours)
                        ))
                    };
                    if let Some(hint) = hint {
                        sink.error(
                            span,
                            &path,
                            format!(
                                "different_node on \"{}\" can never be satisfied",
                                dependency.package
                            ),
                        )
                        .hint = Some(hint);
                    }
                }
                _ => {}
            }
        }
        diagnostics.extend(sink.diagnostics);
    }
    report_cycles(files, &edges, origins, diagnostics);
}

/// Reports each dependency cycle once. Tarjan's algorithm finds the strongly
/// connected components in linear time (a search of every path would be
/// exponential on a large, densely dependent configuration); each component
/// of more than one package holds at least one cycle, and one of them is shown,
/// starting at the component's first package (by name) and reported at that
/// package's dependency that begins it.
fn report_cycles(
    files: &Files,
    edges: &BTreeMap<&PackageName, Vec<(usize, &PackageName)>>,
    origins: &BTreeMap<PackageName, PackageOrigin>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    for component in strongly_connected(edges) {
        if component.len() < 2 {
            continue;
        }
        let members: BTreeSet<&PackageName> = component.iter().copied().collect();
        let start = *members.first().expect("not empty");
        // A shortest path back to `start` inside the component (breadth first).
        let mut previous: BTreeMap<&PackageName, (&PackageName, usize)> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut closing = None;
        'search: while let Some(current) = queue.pop_front() {
            for &(index, next) in &edges[current] {
                if !members.contains(next) {
                    continue;
                }
                if next == start {
                    closing = Some((current, index));
                    break 'search;
                }
                if !previous.contains_key(next) {
                    previous.insert(next, (current, index));
                    queue.push_back(next);
                }
            }
        }
        let Some((last, _)) = closing else { continue };
        let mut cycle = vec![last];
        let mut first_index = None;
        let mut at = last;
        while at != start {
            let (before, index) = previous[at];
            if before == start {
                first_index = Some(index);
            }
            cycle.push(before);
            at = before;
        }
        cycle.reverse();
        let first_index = first_index.or(closing.map(|(_, i)| i)).expect("a cycle");
        let origin = &origins[start];
        let dependency_origin = origin
            .dependencies
            .get(first_index)
            .cloned()
            .unwrap_or_default();
        let mut names: Vec<&str> = cycle.iter().map(|p| p.as_str()).collect();
        names.push(start.as_str());
        diagnostics.push(
            files.sources[origin.file]
                .diagnostic(
                    dependency_origin.package,
                    format!("dependency[{}].package", dependency_origin.number),
                    format!("dependency cycle: {}", names.join(" -> ")),
                )
                .hint("packages depending on each other could never start; remove one dependency"),
        );
    }
}

/// Tarjan's strongly connected components, iteratively (no recursion depth
/// limit on long dependency chains).
fn strongly_connected<'a>(
    edges: &BTreeMap<&'a PackageName, Vec<(usize, &'a PackageName)>>,
) -> Vec<Vec<&'a PackageName>> {
    #[derive(Clone, Copy)]
    struct Mark {
        index: usize,
        low: usize,
        on_stack: bool,
    }
    let mut marks: BTreeMap<&PackageName, Mark> = BTreeMap::new();
    let mut stack: Vec<&PackageName> = Vec::new();
    let mut components = Vec::new();
    let mut counter = 0;
    for &root in edges.keys() {
        if marks.contains_key(root) {
            continue;
        }
        // (node, next edge to look at)
        let mut work: Vec<(&PackageName, usize)> = vec![(root, 0)];
        marks.insert(
            root,
            Mark {
                index: counter,
                low: counter,
                on_stack: true,
            },
        );
        counter += 1;
        stack.push(root);
        while let Some(&mut (node, ref mut next)) = work.last_mut() {
            let out = edges.get(node).map_or(&[][..], |v| &v[..]);
            if let Some(&(_, target)) = out.get(*next) {
                *next += 1;
                if !edges.contains_key(target) {
                    continue;
                }
                match marks.get(target).copied() {
                    None => {
                        marks.insert(
                            target,
                            Mark {
                                index: counter,
                                low: counter,
                                on_stack: true,
                            },
                        );
                        counter += 1;
                        stack.push(target);
                        work.push((target, 0));
                    }
                    Some(t) if t.on_stack => {
                        let m = marks.get_mut(node).expect("marked");
                        m.low = m.low.min(t.index);
                    }
                    Some(_) => {}
                }
                continue;
            }
            work.pop();
            let mark = marks[node];
            if let Some(&(parent, _)) = work.last() {
                let p = marks.get_mut(parent).expect("marked");
                p.low = p.low.min(mark.low);
            }
            if mark.low == mark.index {
                let mut component = Vec::new();
                loop {
                    let member = stack.pop().expect("on the stack");
                    marks.get_mut(member).expect("marked").on_stack = false;
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                components.push(component);
            }
        }
    }
    components
}
