//! Assembling: the cluster and the packages read from their files joined into one
//! model. Names that cross files are resolved here (node lists, networks), and what
//! cannot be resolved is reported where it is written.

use std::collections::{BTreeMap, BTreeSet};

use crate::diagnostic::{Diagnostic, did_you_mean, list};
use crate::model::*;
use crate::read::{ALL_NODES, Files, PackageOrigin};
use crate::reader::Sink;

/// The configuration's parts joined: the cluster and its packages, each package's
/// node list expanded and its networks resolved, with where each package came from.
pub(crate) struct Assembled {
    pub cluster: Cluster,
    pub packages: BTreeMap<PackageName, Package>,
    pub origins: BTreeMap<PackageName, PackageOrigin>,
}

/// Joins the cluster and the packages: a package defined twice is reported and
/// left out, `"*"` node lists are expanded, and each package's networks become the
/// ip networks it needs (those it lists and those its addresses live on). Every
/// name that cannot be resolved, and every node that could not carry the package's
/// networks, is reported in `diagnostics`.
pub(crate) fn assemble(
    files: &Files,
    cluster: Cluster,
    packages: Vec<(Package, PackageOrigin)>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Assembled {
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
        resolve_networks(&mut sink, &cluster, &mut package, &origin);
        diagnostics.extend(sink.diagnostics);
        origin_of.insert(package.name.clone(), origin);
        out.insert(package.name.clone(), package);
    }
    Assembled {
        cluster,
        packages: out,
        origins: origin_of,
    }
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

/// Sets the package's networks to the ip networks it needs: those it lists and
/// those its ip resources live on, each defined once. Reports a network that is not
/// defined or not an ip network, an address outside its network's subnets, and a
/// node of the list that has no interface on a needed network or, for addresses in
/// several subnets, no address in its own subnet.
fn resolve_networks(
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
