//! Validating: checks on the assembled configuration that change nothing in it:
//! duplicates and interfaces in the cluster file, the lease against the timing
//! rule (`timing`), timeouts against the event's maximum duration, fallback timers,
//! relocatable addresses across packages, and dependencies (undefined, contradictory,
//! unsatisfiable, cyclic).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::assemble::Assembled;
use crate::diagnostic::{Diagnostic, SourceFile, did_you_mean, list};
use crate::model::*;
use crate::read::{ClusterSpans, Files, Origins, PackageOrigin};
use crate::reader::Sink;
use crate::timing::{self, LeaseTooShort};

/// Checks within the cluster file (`source`).
pub(crate) fn check_cluster(
    source: &SourceFile,
    cluster: &Cluster,
    spans: &ClusterSpans,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let mut sink = Sink::new(source);
    check_cluster_in(&mut sink, cluster, spans);
    diagnostics.extend(sink.diagnostics);
}

fn check_cluster_in(sink: &mut Sink<'_>, cluster: &Cluster, spans: &ClusterSpans) {
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
    if cluster.quorum.auto_shrink && voters <= cluster.shrink_floor() {
        sink.error(
            spans
                .quorum
                .auto_shrink
                .clone()
                .unwrap_or_else(|| spans.root.clone()),
            "quorum.auto_shrink",
            format!(
                "cannot shrink {voters} voters: auto-shrink never goes below {} (min_voters {}{})",
                cluster.shrink_floor(),
                cluster.min_voters(),
                if cluster.quorum.witness.is_some() {
                    ""
                } else {
                    ", and never to two voters without a witness"
                }
            ),
        )
        .hint = Some("lower quorum.min_voters, or remove auto_shrink".to_owned());
    }
    if let Some(lease) = cluster.quorum.lease {
        let span = spans
            .quorum
            .lease
            .clone()
            .unwrap_or_else(|| spans.root.clone());
        let show = humantime::format_duration;
        match timing::check_lease(lease, cluster.heartbeat.interval, cluster.detection_time()) {
            Ok(()) => {}
            Err(LeaseTooShort::Detection { detection }) => {
                sink.error(
                    span,
                    "quorum.lease",
                    format!(
                        "a lease of {} is shorter than failure detection ({} = interval x sensitivity)",
                        show(lease),
                        show(detection)
                    ),
                )
                .expected = Some(format!("at least {}", show(detection)));
                sink.diagnostics.last_mut().expect("pushed").hint = Some("a node would give up its packages before the others could even notice a problem; leave lease unset to derive it".to_owned());
            }
            Err(LeaseTooShort::Election { election, minimum }) => {
                sink.error(
                    span,
                    "quorum.lease",
                    format!(
                        "a lease of {} is shorter than electing a new coordinator takes ({} with this heartbeat interval, plus two renewal intervals: the last renewal's, then the next one's confirmation and the fencing lead; and {} margin)",
                        show(lease),
                        show(election),
                        show(timing::LEASE_MARGIN)
                    ),
                )
                .expected = Some(format!("at least {}", show(minimum)));
                sink.diagnostics.last_mut().expect("pushed").hint = Some("when the coordinator fails, every node would give up its packages before a new coordinator could renew the leases; leave lease unset to derive it".to_owned());
            }
        }
    }
}

/// Checks across the packages of an assembled configuration (the cluster file is
/// checked by [`check_cluster`]). `origins` tells which packages were defined in
/// files with mistakes, so that a dependency on one is not reported as undefined.
pub(crate) fn check_packages(
    files: &Files,
    assembled: &Assembled,
    origins: &Origins,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let Assembled {
        cluster,
        packages,
        origins: origin_of,
    } = assembled;
    for (name, package) in packages {
        let origin = &origin_of[name];
        let mut sink = Sink::new(&files.sources[origin.file]);
        check_timing(&mut sink, cluster, package, origin);
        check_requires(&mut sink, cluster, package, origin);
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
    }
    check_addresses(files, cluster, packages, origin_of, diagnostics);
    check_dependencies(files, packages, origin_of, origins, diagnostics);
    if packages.len() > limits::PACKAGES_MAX {
        diagnostics.push(Diagnostic {
            file: files.sources[0].path.clone(),
            line: 0,
            column: 0,
            field: "package".to_owned(),
            problem: format!("{} packages", packages.len()),
            expected: Some(format!("at most {}", limits::PACKAGES_MAX)),
            hint: None,
        });
    }
}

/// A package that requires fencing can only be taken over from nodes that can be fenced,
/// and only a failover package is taken over.
fn check_requires(
    sink: &mut Sink<'_>,
    cluster: &Cluster,
    package: &Package,
    origin: &PackageOrigin,
) {
    if package.requires != Requires::Fencing {
        return;
    }
    let span = origin.requires.clone().unwrap_or_default();
    if !package.is_failover() {
        sink.error(
            span.clone(),
            "requires",
            format!(
                "has no effect on a {} package: only a failover package is taken over from a failed node",
                package.package_type
            ),
        )
        .hint = Some("remove requires".to_owned());
        return;
    }
    let unfenced: Vec<&str> = package
        .nodes
        .iter()
        .filter(|n| {
            cluster
                .node(n.as_str())
                .is_some_and(|n| n.fencing.is_none())
        })
        .map(|n| n.as_str())
        .collect();
    if !unfenced.is_empty() {
        sink.error(
            span,
            "requires",
            format!(
                "\"fencing\", but {} of the node list {} no [node.fencing]: a takeover from {} would wait for a fence that cannot come",
                unfenced.join(", "),
                if unfenced.len() == 1 { "has" } else { "have" },
                if unfenced.len() == 1 { "it" } else { "them" },
            ),
        )
        .hint = Some(
            "configure a fence agent for every node of the node list, or require the lease only"
                .to_owned(),
        );
    }
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
