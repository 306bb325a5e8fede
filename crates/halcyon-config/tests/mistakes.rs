//! Configuration mistakes, one small edit each to a valid base configuration
//! (`cluster.toml`: three nodes on two ip networks; `packages/db.toml`,
//! `packages/web.toml` (`["*"]`, depends on db), `packages/mon.toml`
//! (system_multi_node), at the end of this file). Every case asserts each
//! diagnostic's full rendered line (`file:line:column: field: problem; expected
//! ...; hint ...`) and their exact number, so a wrong position, a changed wording
//! or a knock-on error fails it. `check` is the only caller of the loader.
//!
//! Cases in `CASES` (an empty expectation means "must load"):
//!
//! *Names and node lists:*
//! - unknown node in a node list
//! - duplicate node names
//! - duplicate node numbers
//! - duplicate package names across two files
//! - empty node list
//! - star mixed with names
//! - system_multi_node without star
//! - node listed twice
//!
//! *Dependencies:*
//! - dependency cycle of two
//! - dependency cycle of three
//! - different_node dependency that can never be satisfied
//! - same_node dependency with disjoint node lists
//! - same package required same_node and different_node
//! - dependency on an unknown package
//! - self-dependency
//! - invalid dependency location
//!
//! *Networks and addresses:*
//! - unknown network in an interface
//! - unknown network in an ip resource
//! - unknown network in package.networks
//! - invalid node address
//! - invalid prefix
//! - relocatable address without prefix
//! - same relocatable address in two packages
//! - relocatable address equal to a stationary address
//! - relocatable address outside every subnet
//! - node address outside its network's subnets
//! - node in the node list without an interface on a network the package needs
//! - ip resource with both address and addresses
//!
//! *Heartbeat, quorum, timing:*
//! - heartbeat interval out of range
//! - sensitivity out of range
//! - unknown heartbeat profile
//! - heartbeat profile in a network's table (the cluster's only)
//! - two-node cluster without a witness
//! - witness named like a node
//! - witness numbered like a node
//! - min_voters above the voter count
//! - quorum lease shorter than detection
//! - quorum lease shorter than a coordinator election
//! - script timeout longer than the event's maximum duration
//! - package run_timeout longer than the event's maximum duration
//!
//! *Policies and legacy names:*
//! - fallback timer with manual failback
//! - invalid fallback timer text
//! - invalid policy value
//! - auto_run and PKG_SWITCHING_ENABLED both given
//! - same key in two cases
//! - unknown field with did you mean
//! - unknown field with no close match
//! - string where an integer is expected
//! - duration without a unit
//! - webhook: https URL, unknown event kind, timeout too long
//!
//! *Files:*
//! - TOML syntax error
//! - TOML syntax error in the cluster file
//! - a file that is neither cluster nor package
//! - no cluster file
//! - two cluster files
//!
//! *Resources and monitors:*
//! - resource field that does not apply to its kind
//! - OCF resource restart count out of range
//! - monitor with no action
//! - unknown resource kind
//! - mistake in an earlier resource keeps later resources' positions
//! - a broken package is still known to its dependents
//!
//! *One mistake, one diagnostic (no knock-on errors); cross-subnet addresses:*
//! - misspelt required field is reported once
//! - misspelt resource kind is reported once
//! - node without a name is still a voter
//! - node in a subnet where the package has no address
//! - cross-subnet addresses cover every node
//! - one unusable address of several
//! - maximum event duration of zero
//! - maximum event duration longer than a day
//! - default timeout longer than a lowered maximum event duration
//! - a cycle among packages that others depend on is reported once
//! - misspelt interface network is not also a missing interface
//! - duplicate key
//!
//! *Several at once:*
//! - several independent mistakes in several files
//!
//! Separate tests: the base configuration loads; legacy names and values
//! (`PKG_SWITCHING_ENABLED = "YES"`, `NET_SWITCHING_ENABLED`, `AUTO_RUN`,
//! `CONFIGURED_NODE`, `MIN_PACKAGE_NODE`, `AUTOMATIC`, `MANUAL`, ...) load to the
//! right model values; defaults are those `model.rs` documents; a cycle in a
//! large, densely dependent configuration is found quickly and reported once.

use std::time::Duration;

use halcyon_config::*;

/// One small change to the base configuration.
#[derive(Clone, Copy, Debug)]
enum Edit {
    /// Replace the only occurrence of `from` in `file` by `to`.
    Replace(&'static str, &'static str, &'static str),
    /// Add text at the end of a file.
    Append(&'static str, &'static str),
    /// Add a file.
    Add(&'static str, &'static str),
    /// Leave a file out.
    Remove(&'static str),
}
use Edit::*;

struct Case {
    name: &'static str,
    edits: &'static [Edit],
    /// Every diagnostic, rendered, in the order the loader sorts them. Empty: the
    /// configuration must load.
    expect: &'static [&'static str],
}

const BASE: [(&str, &str); 4] = [
    ("cluster.toml", CLUSTER),
    ("packages/db.toml", DB),
    ("packages/web.toml", WEB),
    ("packages/mon.toml", MON),
];

fn apply(edits: &[Edit]) -> Result<Vec<(String, String)>, String> {
    let mut files: Vec<(String, String)> = BASE
        .iter()
        .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
        .collect();
    for edit in edits {
        let find = |files: &mut Vec<(String, String)>, name: &str| {
            files
                .iter()
                .position(|(p, _)| p == name)
                .ok_or_else(|| format!("edit {edit:?}: no file {name}"))
        };
        match *edit {
            Replace(file, from, to) => {
                let i = find(&mut files, file)?;
                let text = &mut files[i].1;
                let count = text.matches(from).count();
                if count != 1 {
                    return Err(format!("edit {edit:?}: {count} matches, expected 1"));
                }
                *text = text.replacen(from, to, 1);
            }
            Append(file, more) => {
                let i = find(&mut files, file)?;
                files[i].1.push_str(more);
            }
            Add(file, text) => files.push((file.to_owned(), text.to_owned())),
            Remove(file) => {
                let i = find(&mut files, file)?;
                files.remove(i);
            }
        }
    }
    Ok(files)
}

/// The only caller of the loader: applies the case's edits to the base
/// configuration, loads it, and compares every rendered diagnostic.
fn check(case: &Case) -> Result<Option<Config>, String> {
    let files = apply(case.edits).map_err(|e| format!("{}: {e}", case.name))?;
    let texts: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let result = load_texts(&texts);
    let actual: Vec<String> = match &result {
        Ok(_) => Vec::new(),
        Err(diagnostics) => diagnostics.iter().map(|d| d.to_string()).collect(),
    };
    if actual != case.expect {
        let mut message = format!(
            "case {}: expected {} diagnostic(s), got {}:\n",
            case.name,
            case.expect.len(),
            actual.len()
        );
        for line in &actual {
            message.push_str(&format!("    {line:?},\n"));
        }
        return Err(message);
    }
    Ok(result.ok())
}
const CASES: &[Case] = &[
    // --- names and node lists
    Case {
        name: "unknown node in a node list",
        edits: &[Replace(
            "packages/db.toml",
            r#"["alpha", "bravo"]"#,
            r#"["alpha", "brvo"]"#,
        )],
        expect: &[
            "packages/db.toml:4:19: package.nodes[2]: node \"brvo\" is not defined in the cluster; expected one of \"alpha\", \"bravo\", \"charlie\"; hint: did you mean \"bravo\"?",
        ],
    },
    Case {
        name: "duplicate node names",
        edits: &[Replace(
            "cluster.toml",
            r#"name = "charlie""#,
            r#"name = "bravo""#,
        )],
        expect: &[
            "cluster.toml:41:8: node[3].name: node \"bravo\" is defined twice; hint: the first definition is on line 31; node names must be unique",
        ],
    },
    Case {
        name: "duplicate node numbers",
        edits: &[Replace("cluster.toml", "number = 3", "number = 2")],
        expect: &[
            "cluster.toml:42:10: node[3].number: node number 2 is used by \"bravo\" too; hint: node numbers must be unique (the other is on line 32)",
        ],
    },
    Case {
        name: "duplicate package names across two files",
        edits: &[Add(
            "packages/db2.toml",
            "# a copy\n[package]\nname = \"db\"\nnodes = [\"charlie\"]\n",
        )],
        expect: &[
            "packages/db2.toml:3:8: package.name: package \"db\" is defined twice; hint: the first definition is in packages/db.toml:2",
        ],
    },
    Case {
        name: "empty node list",
        edits: &[Replace("packages/db.toml", r#"["alpha", "bravo"]"#, "[]")],
        expect: &[
            "packages/db.toml:4:9: package.nodes: the node list is empty; expected at least one node name, or [\"*\"] for every node",
        ],
    },
    Case {
        name: "star mixed with names",
        edits: &[Replace(
            "packages/web.toml",
            r#"["*"]"#,
            r#"["*", "alpha"]"#,
        )],
        expect: &[
            "packages/web.toml:3:9: package.nodes: \"*\" is mixed with node names; expected either [\"*\"] (every node in configured order) or a list of node names",
        ],
    },
    Case {
        name: "system_multi_node without star",
        edits: &[Replace(
            "packages/mon.toml",
            r#"["*"]"#,
            r#"["alpha", "bravo", "charlie"]"#,
        )],
        expect: &[
            "packages/mon.toml:4:9: package.nodes: a system multi-node package runs on every node; expected nodes = [\"*\"]",
        ],
    },
    Case {
        name: "node listed twice",
        edits: &[Replace(
            "packages/db.toml",
            r#"["alpha", "bravo"]"#,
            r#"["alpha", "bravo", "alpha"]"#,
        )],
        expect: &[
            "packages/db.toml:4:28: package.nodes[3]: node \"alpha\" is listed twice; hint: each node appears once; its position is its priority",
        ],
    },
    // --- dependencies
    Case {
        name: "dependency cycle of two",
        edits: &[Append(
            "packages/db.toml",
            "\n[[dependency]]\npackage = \"web\"\nlocation = \"any_node\"\n",
        )],
        expect: &[
            "packages/db.toml:22:11: dependency[1].package: dependency cycle: db -> web -> db; hint: packages depending on each other could never start; remove one dependency",
        ],
    },
    Case {
        name: "dependency cycle of three",
        edits: &[
            Append(
                "packages/db.toml",
                "\n[[dependency]]\npackage = \"mon\"\nlocation = \"any_node\"\n",
            ),
            Append(
                "packages/mon.toml",
                "\n[[dependency]]\npackage = \"web\"\nlocation = \"any_node\"\n",
            ),
        ],
        expect: &[
            "packages/db.toml:22:11: dependency[1].package: dependency cycle: db -> mon -> web -> db; hint: packages depending on each other could never start; remove one dependency",
        ],
    },
    Case {
        name: "different_node dependency that can never be satisfied",
        edits: &[Append(
            "packages/db.toml",
            "\n[[dependency]]\npackage = \"mon\"\nlocation = \"different_node\"\n",
        )],
        expect: &[
            "packages/db.toml:22:11: dependency[1].package: different_node on \"mon\" can never be satisfied; hint: \"mon\" is a system_multi_node package, up on every node of its list (\"alpha\", \"bravo\", \"charlie\"), which covers every node \"db\" can run on (\"alpha\", \"bravo\")",
        ],
    },
    Case {
        name: "same_node dependency with disjoint node lists",
        edits: &[
            Replace(
                "packages/web.toml",
                r#"nodes = ["*"]"#,
                r#"nodes = ["charlie"]"#,
            ),
            Replace("packages/web.toml", r#""any_node""#, r#""same_node""#),
        ],
        expect: &[
            "packages/web.toml:7:11: dependency[1].package: same_node on \"db\" can never be satisfied: the node lists share no node; hint: \"web\" can run on \"charlie\" and \"db\" on \"alpha\", \"bravo\"; the two packages need a node in common",
        ],
    },
    Case {
        name: "same package required same_node and different_node",
        edits: &[
            Replace("packages/web.toml", r#""any_node""#, r#""same_node""#),
            Replace(
                "packages/web.toml",
                "\n[[resource]]\nkind = \"ip\"",
                "\n[[dependency]]\npackage = \"db\"\nlocation = \"different_node\"\n\n[[resource]]\nkind = \"ip\"",
            ),
        ],
        expect: &[
            "packages/web.toml:11:11: dependency[2].package: \"db\" is required both same_node and different_node, which contradict each other; hint: keep one dependency per package",
        ],
    },
    Case {
        name: "dependency on an unknown package",
        edits: &[Replace(
            "packages/web.toml",
            r#"package = "db""#,
            r#"package = "dbx""#,
        )],
        expect: &[
            "packages/web.toml:7:11: dependency[1].package: package \"dbx\" is not defined; expected the name of a package in this configuration; hint: did you mean \"db\"?",
        ],
    },
    Case {
        name: "self-dependency",
        edits: &[Replace(
            "packages/web.toml",
            r#"package = "db""#,
            r#"package = "web""#,
        )],
        expect: &[
            "packages/web.toml:7:11: dependency[1].package: the package depends on itself; hint: remove this dependency",
        ],
    },
    Case {
        name: "invalid dependency location",
        edits: &[Replace(
            "packages/web.toml",
            r#""any_node""#,
            r#""anynode""#,
        )],
        expect: &[
            "packages/web.toml:8:12: dependency[1].location: \"anynode\" is not a valid value; expected one of same_node, any_node, different_node; hint: did you mean \"any_node\"?",
        ],
    },
    // --- networks and addresses
    Case {
        name: "unknown network in an interface",
        edits: &[Replace(
            "cluster.toml",
            "network = \"lan2\"\naddress = \"10.0.2.1\"",
            "network = \"lan-2\"\naddress = \"10.0.2.1\"",
        )],
        expect: &[
            "cluster.toml:27:11: node[1].interface[2].network: network \"lan-2\" is not defined; expected one of \"lan1\", \"lan2\"; hint: did you mean \"lan2\"?",
        ],
    },
    Case {
        name: "unknown network in an ip resource",
        edits: &[Replace(
            "packages/db.toml",
            r#"network = "lan1""#,
            r#"network = "lna1""#,
        )],
        expect: &[
            "packages/db.toml:12:11: resource[1].network: network \"lna1\" is not defined; expected one of \"lan1\", \"lan2\"; hint: did you mean \"lan1\"?",
        ],
    },
    Case {
        name: "unknown network in package.networks",
        edits: &[Replace(
            "packages/db.toml",
            "priority = 10\n",
            "priority = 10\nnetworks = [\"lan2\", \"storage\"]\n",
        )],
        expect: &[
            "packages/db.toml:9:21: package.networks[2]: network \"storage\" is not defined; expected one of \"lan1\", \"lan2\"",
        ],
    },
    Case {
        name: "invalid node address",
        edits: &[Replace("cluster.toml", r#""10.0.1.2""#, r#""10.0.1.300""#)],
        expect: &[
            "cluster.toml:35:11: node[2].interface[1].address: \"10.0.1.300\" is not an IP address; expected an IPv4 or IPv6 address such as \"198.18.1.10\"",
        ],
    },
    Case {
        name: "invalid prefix",
        edits: &[Replace("packages/db.toml", "10.0.1.50/24", "10.0.1.50/33")],
        expect: &[
            "packages/db.toml:13:11: resource[1].address: prefix length \"33\" is invalid; expected a prefix length from 0 to 32",
        ],
    },
    Case {
        name: "relocatable address without prefix",
        edits: &[Replace("packages/db.toml", "10.0.1.50/24", "10.0.1.50")],
        expect: &[
            "packages/db.toml:13:11: resource[1].address: \"10.0.1.50\" has no prefix length; expected an address with a prefix length, such as \"198.18.1.50/24\"",
        ],
    },
    Case {
        name: "same relocatable address in two packages",
        edits: &[Replace("packages/web.toml", "10.0.1.51/24", "10.0.1.50/24")],
        expect: &[
            "packages/web.toml:13:11: resource[1].address: 10.0.1.50 is also a relocatable address of package \"db\"; hint: the other is at packages/db.toml:13:11; two packages with one address would answer for each other",
        ],
    },
    Case {
        name: "relocatable address equal to a stationary address",
        edits: &[Replace("packages/db.toml", "10.0.1.50/24", "10.0.1.2/24")],
        expect: &[
            "packages/db.toml:13:11: resource[1].address: 10.0.1.2 is node \"bravo\"'s stationary address; hint: a relocatable address must not belong to any node",
        ],
    },
    Case {
        name: "relocatable address outside every subnet",
        edits: &[Replace("packages/db.toml", "10.0.1.50/24", "10.9.1.50/24")],
        expect: &[
            "packages/db.toml:13:11: resource[1].address: 10.9.1.50/24 is outside every subnet of network \"lan1\"; expected an address in \"10.0.1.0/24\"",
        ],
    },
    Case {
        name: "node address outside its network's subnets",
        edits: &[Replace("cluster.toml", r#""10.0.1.2""#, r#""10.0.7.2""#)],
        expect: &[
            "cluster.toml:35:11: node[2].interface[1].address: 10.0.7.2 is outside every subnet of network \"lan1\"; expected an address in \"10.0.1.0/24\"",
        ],
    },
    Case {
        name: "node in the node list without an interface on a network the package needs",
        edits: &[Replace(
            "cluster.toml",
            "[[node.interface]]\nnetwork = \"lan1\"\naddress = \"10.0.1.3\"\n",
            "",
        )],
        expect: &[
            "packages/web.toml:3:10: package.nodes: node \"charlie\" (included by \"*\") has no interface on network \"lan1\", which the package needs; hint: the package could never run there: list the nodes instead of \"*\" or add the interface",
        ],
    },
    Case {
        name: "ip resource with both address and addresses",
        edits: &[Replace(
            "packages/db.toml",
            "address = \"10.0.1.50/24\"\n",
            "address = \"10.0.1.50/24\"\naddresses = [\"10.0.1.52/24\"]\n",
        )],
        expect: &[
            "packages/db.toml:13:11: resource[1].address: both address and addresses are given; hint: use addresses = [...] for one address per subnet, or address for one",
        ],
    },
    // --- heartbeat, quorum, timing
    Case {
        name: "heartbeat interval out of range",
        edits: &[Replace("cluster.toml", r#""100ms""#, r#""5ms""#)],
        expect: &[
            "cluster.toml:7:12: heartbeat.interval: 5ms is out of range; expected from 10ms to 10s",
        ],
    },
    Case {
        name: "sensitivity out of range",
        edits: &[Replace(
            "cluster.toml",
            "sensitivity = 4",
            "sensitivity = 1",
        )],
        expect: &[
            "cluster.toml:8:15: heartbeat.sensitivity: 1 is out of range; expected an integer from 2 to 100",
        ],
    },
    Case {
        name: "unknown heartbeat profile",
        edits: &[Replace(
            "cluster.toml",
            "sensitivity = 4",
            "sensitivity = 4\nprofile = \"fats\"",
        )],
        expect: &[
            "cluster.toml:9:11: heartbeat.profile: \"fats\" is not a valid value; expected one of default, fast; hint: did you mean \"fast\"?",
        ],
    },
    Case {
        name: "heartbeat profile in a network's table",
        edits: &[Replace(
            "cluster.toml",
            "subnets = [\"10.0.2.0/24\"]",
            "subnets = [\"10.0.2.0/24\"]\nprofile = \"fast\"",
        )],
        expect: &[
            "cluster.toml:19:1: network[2].profile: unknown field; hint: known fields here: name, kind, subnets, device, interval, sensitivity",
        ],
    },
    Case {
        name: "two-node cluster without a witness",
        edits: &[Replace(
            "cluster.toml",
            "\n[[node]]\nname = \"charlie\"\nnumber = 3\n[[node.interface]]\nnetwork = \"lan1\"\naddress = \"10.0.1.3\"\n[[node.interface]]\nnetwork = \"lan2\"\naddress = \"10.0.2.3\"\n",
            "",
        )],
        expect: &[
            "cluster.toml:2:1: quorum.witness: a two-node cluster without a witness loses its quorum when either node fails; hint: add [quorum.witness] with name, number and address (run `halcyon witness` there)",
        ],
    },
    Case {
        name: "witness named like a node",
        edits: &[Append(
            "cluster.toml",
            "\n[quorum.witness]\nname = \"alpha\"\nnumber = 9\naddress = \"10.0.1.9\"\n",
        )],
        expect: &[
            "cluster.toml:51:8: quorum.witness.name: \"alpha\" is also a node; hint: the witness runs no packages; give it a name of its own",
        ],
    },
    Case {
        name: "witness numbered like a node",
        edits: &[Append(
            "cluster.toml",
            "\n[quorum.witness]\nname = \"tiebreaker\"\nnumber = 3\naddress = \"10.0.1.9\"\n",
        )],
        expect: &[
            "cluster.toml:52:10: quorum.witness.number: number 3 is also node \"charlie\"'s; hint: witness and node numbers share one space (they are Raft ids)",
        ],
    },
    Case {
        name: "min_voters above the voter count",
        edits: &[Append("cluster.toml", "\n[quorum]\nmin_voters = 4\n")],
        expect: &[
            "cluster.toml:51:14: quorum.min_voters: 4 is more than the cluster's 3 voters; expected from 1 to 3",
        ],
    },
    Case {
        name: "quorum auto_shrink on three voters without a witness cannot shrink",
        edits: &[Append("cluster.toml", "\n[quorum]\nauto_shrink = true\n")],
        expect: &[
            "cluster.toml:51:15: quorum.auto_shrink: cannot shrink 3 voters: auto-shrink never goes below 3 (min_voters 2, and never to two voters without a witness); hint: lower quorum.min_voters, or remove auto_shrink",
        ],
    },
    Case {
        name: "shrink_after without auto_shrink, and out of range",
        edits: &[Append(
            "cluster.toml",
            "\n[quorum]\nshrink_after = \"0s\"\n",
        )],
        expect: &[
            "cluster.toml:51:16: quorum.shrink_after: has no effect without auto_shrink = true; hint: set auto_shrink = true or remove shrink_after",
        ],
    },
    Case {
        name: "auto_shrink = false is accepted",
        edits: &[Append("cluster.toml", "\n[quorum]\nauto_shrink = false\n")],
        expect: &[],
    },
    Case {
        name: "a fence device is one level of one device",
        edits: &[Append(
            "cluster.toml",
            "\n[node.fencing]\nagent = \"fence_ipmilan\"\noptions = { ip = \"192.0.2.3\", username = \"admin\" }\ntimeout = \"20s\"\n",
        )],
        expect: &[],
    },
    Case {
        name: "fencing levels of devices",
        edits: &[Append(
            "cluster.toml",
            "\n[[node.fencing.level]]\n[[node.fencing.level.device]]\nagent = \"fence_ipmilan\"\n[[node.fencing.level]]\n[[node.fencing.level.device]]\nagent = \"fence_apc\"\noptions = { plug = \"3\" }\n[[node.fencing.level.device]]\nagent = \"fence_apc\"\noptions = { plug = \"4\" }\n",
        )],
        expect: &[],
    },
    Case {
        name: "fencing with both a device and levels",
        edits: &[Append(
            "cluster.toml",
            "\n[node.fencing]\nagent = \"fence_ipmilan\"\n[[node.fencing.level]]\n[[node.fencing.level.device]]\nagent = \"fence_apc\"\n",
        )],
        expect: &[
            "cluster.toml:50:1: node[3].fencing: both a device (agent) and fencing levels are given; hint: write one device as agent, options and timeout, or every device under [[node.fencing.level.device]]",
        ],
    },
    Case {
        name: "a fencing level without devices, a device without agent, a zero timeout",
        edits: &[Append(
            "cluster.toml",
            "\n[[node.fencing.level]]\n[[node.fencing.level]]\n[[node.fencing.level.device]]\ntimeout = \"0s\"\n",
        )],
        expect: &[
            "cluster.toml:50:1: node[3].fencing.level[1]: a fencing level without devices; hint: add a [[node.fencing.level.device]] with its agent",
            "cluster.toml:52:1: node[3].fencing.level[2].device[1].agent: missing in [[node.fencing.level.device]]; expected a fence agent program, e.g. \"fence_ipmilan\"",
            "cluster.toml:53:11: node[3].fencing.level[2].device[1].timeout: out of range; expected more than 0 s and at most 600 s",
        ],
    },
    Case {
        name: "a package that requires fencing on nodes without it",
        edits: &[Replace(
            "packages/db.toml",
            "priority = 10\n",
            "priority = 10\nrequires = \"fencing\"\n",
        )],
        expect: &[
            "packages/db.toml:9:12: requires: \"fencing\", but alpha, bravo of the node list have no [node.fencing]: a takeover from them would wait for a fence that cannot come; hint: configure a fence agent for every node of the node list, or require the lease only",
        ],
    },
    Case {
        name: "a package that requires fencing on nodes that have it",
        edits: &[
            Replace(
                "cluster.toml",
                "name = \"alpha\"\nnumber = 1\n",
                "name = \"alpha\"\nnumber = 1\n[node.fencing]\nagent = \"fence_ipmilan\"\n",
            ),
            Replace(
                "cluster.toml",
                "name = \"bravo\"\nnumber = 2\n",
                "name = \"bravo\"\nnumber = 2\n[node.fencing]\nagent = \"fence_ipmilan\"\n",
            ),
            Replace(
                "packages/db.toml",
                "priority = 10\n",
                "priority = 10\nrequires = \"fencing\"\n",
            ),
        ],
        expect: &[],
    },
    Case {
        name: "requires fencing on a multi-node package, and an unknown requirement",
        edits: &[
            Replace(
                "packages/mon.toml",
                "nodes = [\"*\"]\n",
                "nodes = [\"*\"]\nrequires = \"fencing\"\n",
            ),
            Replace(
                "packages/db.toml",
                "priority = 10\n",
                "priority = 10\nrequires = \"stonith\"\n",
            ),
        ],
        expect: &[
            "packages/db.toml:9:12: package.requires: \"stonith\" is not a valid value; expected one of lease, fencing",
            "packages/mon.toml:5:12: requires: has no effect on a system_multi_node package: only a failover package is taken over from a failed node; hint: remove requires",
        ],
    },
    Case {
        name: "quorum lease shorter than detection",
        edits: &[Append("cluster.toml", "\n[quorum]\nlease = \"300ms\"\n")],
        expect: &[
            "cluster.toml:51:9: quorum.lease: a lease of 300ms is shorter than failure detection (400ms = interval x sensitivity); expected at least 400ms; hint: a node would give up its packages before the others could even notice a problem; leave lease unset to derive it",
        ],
    },
    Case {
        name: "quorum lease shorter than a coordinator election",
        edits: &[Append("cluster.toml", "\n[quorum]\nlease = \"450ms\"\n")],
        expect: &[
            "cluster.toml:51:9: quorum.lease: a lease of 450ms is shorter than electing a new coordinator takes (369ms with this heartbeat interval, plus two renewal intervals: the last renewal's, then the next one's confirmation and the fencing lead; and 50ms margin); expected at least 619ms; hint: when the coordinator fails, every node would give up its packages before a new coordinator could renew the leases; leave lease unset to derive it",
        ],
    },
    Case {
        name: "script timeout longer than the event's maximum duration",
        edits: &[Replace(
            "packages/web.toml",
            "halt = \"cache-warm stop\"\n",
            "halt = \"cache-warm stop\"\nrun_timeout = \"10m\"\n",
        )],
        expect: &[
            "packages/web.toml:20:15: resource[2].run_timeout: a timeout of 10m is longer than the event's maximum duration (6m); hint: the event would be reported as hung while the command is still allowed to run; raise [limits] max_event_duration or shorten the timeout",
        ],
    },
    Case {
        name: "package run_timeout longer than the event's maximum duration",
        edits: &[Replace(
            "packages/web.toml",
            "failover_policy",
            "run_timeout = \"7m\"\nfailover_policy",
        )],
        expect: &[
            "packages/web.toml:4:15: package.run_timeout: 7m is longer than the event's maximum duration (6m); hint: raise [limits] max_event_duration in the cluster file or shorten the timeout",
        ],
    },
    Case {
        name: "durable event log size of zero",
        edits: &[Replace(
            "cluster.toml",
            "\n[[network]]\nname = \"lan1\"",
            "\n[events]\nkeep_events_mib = 0\n\n[[network]]\nname = \"lan1\"",
        )],
        expect: &[
            "cluster.toml:11:19: events.keep_events_mib: 0 is out of range; expected an integer from 1 to 1048576",
        ],
    },
    // --- policies and legacy names
    Case {
        name: "fallback timer with manual failback",
        edits: &[Append(
            "packages/db.toml",
            "\n[fallback_timer]\ndaily = \"02:00\"\n",
        )],
        expect: &[
            "packages/db.toml:21:1: fallback_timer: has no effect with failback_policy = \"manual\"; hint: set failback_policy = \"automatic\" or remove [fallback_timer]",
        ],
    },
    Case {
        name: "invalid fallback timer text",
        edits: &[
            Replace("packages/db.toml", r#""manual""#, r#""automatic""#),
            Append(
                "packages/db.toml",
                "\n[fallback_timer]\nweekly = \"funday 02:00\"\n",
            ),
        ],
        expect: &[
            "packages/db.toml:22:10: fallback_timer.weekly: \"funday 02:00\" has no valid day of the week; expected exactly one of daily = \"HH:MM\", weekly = \"sunday HH:MM\", monthly = \"DD HH:MM\", yearly = \"MM-DD HH:MM\", date = \"2026-12-24T02:00:00Z\"",
        ],
    },
    Case {
        name: "invalid policy value",
        edits: &[Replace(
            "packages/db.toml",
            r#""configured_node""#,
            r#""CONFIGURED_NOD""#,
        )],
        expect: &[
            "packages/db.toml:6:19: package.failover_policy: \"CONFIGURED_NOD\" is not a valid value; expected one of configured_node, min_package_node; hint: did you mean \"configured_node\"?",
        ],
    },
    Case {
        name: "auto_run and PKG_SWITCHING_ENABLED both given",
        edits: &[Replace(
            "packages/db.toml",
            "auto_run = true\n",
            "auto_run = true\nPKG_SWITCHING_ENABLED = \"NO\"\n",
        )],
        expect: &[
            "packages/db.toml:6:1: package.auto_run: given twice, as \"auto_run\" and as \"PKG_SWITCHING_ENABLED\"; hint: \"PKG_SWITCHING_ENABLED\" is the legacy name of \"auto_run\"; keep one",
        ],
    },
    Case {
        name: "same key in two cases",
        edits: &[Replace(
            "packages/db.toml",
            "priority = 10\n",
            "priority = 10\nPRIORITY = 20\n",
        )],
        expect: &[
            "packages/db.toml:9:1: package.priority: given twice, as \"priority\" and as \"PRIORITY\"; hint: keys are matched without regard to case; keep one",
        ],
    },
    Case {
        name: "unknown field with did you mean",
        edits: &[Replace(
            "packages/db.toml",
            "failover_policy",
            "failover_polcy",
        )],
        expect: &[
            "packages/db.toml:6:1: package.failover_polcy: unknown field; hint: did you mean \"failover_policy\"?",
        ],
    },
    Case {
        name: "unknown field with no close match",
        edits: &[Replace(
            "packages/db.toml",
            "priority = 10\n",
            "priority = 10\ncolour = \"blue\"\n",
        )],
        expect: &[
            "packages/db.toml:9:1: package.colour: unknown field; hint: known fields here: name, type, nodes, auto_run, failover_policy, failback_policy, priority, networks, local_lan_failover_allowed, requires, failure_expiry, run_timeout, halt_timeout",
        ],
    },
    Case {
        name: "string where an integer is expected",
        edits: &[Replace("cluster.toml", "number = 2", "number = \"2\"")],
        expect: &[
            "cluster.toml:32:10: node[2].number: wrong type: a string; expected an integer from 1 to 65535",
        ],
    },
    Case {
        name: "duration without a unit",
        edits: &[Replace(
            "cluster.toml",
            r#"interval = "100ms""#,
            "interval = 100",
        )],
        expect: &[
            "cluster.toml:7:12: heartbeat.interval: 100 has no unit; expected a duration such as \"500ms\", \"2s\" or \"10m\"; hint: write \"100s\" for seconds",
        ],
    },
    Case {
        name: "webhook: https URL, unknown event kind, timeout too long",
        edits: &[Append(
            "cluster.toml",
            "\n[[events.webhook]]\nurl = \"https://pager.example/halcyon\"\nevents = [\"node_dwn\", \"error\"]\ntimeout = \"1m\"\n",
        )],
        expect: &[
            "cluster.toml:51:7: events.webhook[1].url: \"https://pager.example/halcyon\": https is not supported (the daemon's client speaks plain HTTP); expected http://HOST[:PORT]/PATH; hint: point it at a local relay that forwards over TLS",
            "cluster.toml:52:11: events.webhook[1].events: unknown event kind \"node_dwn\"; expected one of \"cluster_start\", \"cluster_halt\", \"node_up\", \"node_down\", \"network_up\", \"network_down\", \"swap_adapter\", \"fail_standby\", \"join_standby\", \"package_failed\", \"package_run\", \"package_halt\", \"package_move\", \"package_enable\", \"package_disable\", \"package_clear\", \"config_change\", \"timer\", \"user\", \"error\", \"node_restart\", \"node_fence\", \"voter_change\", \"event_too_long\", \"quorum_lost\", \"quorum_regained\" (`user`: every user-defined event; `error`: an event stopped in ERROR; `node_restart`: a node's new incarnation; `node_fence`: a fence of a node; `voter_change`: a voter added or removed; `event_too_long`: an event running longer than its maximum duration; `quorum_lost`, `quorum_regained`: sent by each node itself); hint: did you mean \"node_down\"?",
            "cluster.toml:53:11: events.webhook[1].timeout: 60s; expected more than 0 and at most 30s",
        ],
    },
    // --- files
    Case {
        name: "TOML syntax error",
        edits: &[Replace(
            "packages/db.toml",
            r#"["alpha", "bravo"]"#,
            r#"["alpha", "bravo""#,
        )],
        expect: &[
            "packages/db.toml:5:1: toml: syntax error: missing comma between array elements, expected `,`; expected valid TOML; hint: the file ends with an unclosed array: a bracket or quote opened on or before line 5 is never closed",
        ],
    },
    Case {
        name: "TOML syntax error in the cluster file",
        edits: &[Replace("cluster.toml", "id = 1", "id = = 1")],
        expect: &[
            "cluster.toml:4:6: toml: syntax error: extra `=`, expected nothing; expected valid TOML",
        ],
    },
    Case {
        name: "a file that is neither cluster nor package",
        edits: &[Add("packages/notes.toml", "[pakage]\nname = \"x\"\n")],
        expect: &[
            "packages/notes.toml:1:2: file: is neither a cluster file nor a package file; expected a [cluster] table (cluster file) or a [package] table (package file); hint: did you mean \"package\"?",
        ],
    },
    Case {
        name: "no cluster file",
        edits: &[Remove("cluster.toml")],
        expect: &[
            "packages/db.toml: cluster: no cluster file among the files given; expected one file with a [cluster] table; hint: pass the configuration directory, or the cluster file with the package files",
        ],
    },
    Case {
        name: "two cluster files",
        edits: &[Add("cluster2.toml", CLUSTER)],
        expect: &[
            "cluster2.toml:2:2: cluster: a second cluster file; hint: the cluster is already defined in cluster.toml",
        ],
    },
    // --- resources and monitors
    Case {
        name: "resource field that does not apply to its kind",
        edits: &[Replace(
            "packages/db.toml",
            "restart = 2\n",
            "restart = 2\nmount_point = \"/srv\"\n",
        )],
        expect: &[
            "packages/db.toml:20:15: resource[2].mount_point: does not apply to a service resource; hint: fields of a service resource: kind, name, command, restart, restart_window, node_fail_fast, halt_timeout",
        ],
    },
    Case {
        name: "OCF resource restart count out of range",
        edits: &[Replace(
            "packages/web.toml",
            "[[monitor]]\n",
            "[[resource]]\nkind = \"ocf\"\nagent = \"heartbeat:Dummy\"\nrestart = 5000\n\n[[monitor]]\n",
        )],
        expect: &[
            "packages/web.toml:24:11: resource[3].restart: 5000 is out of range; expected an integer from 0 to 1000",
        ],
    },
    Case {
        name: "monitor with no action",
        edits: &[Replace("packages/web.toml", "fail_package = true\n", "")],
        expect: &[
            "packages/web.toml:21:1: monitor[1].event: the monitor does nothing when it fires; expected event = \"NAME\", fail_package = true or notify = \"COMMAND\"",
        ],
    },
    Case {
        name: "monitor that fails its package and only notifies",
        edits: &[Replace(
            "packages/web.toml",
            "fail_package = true\n",
            "fail_package = true\nnotify = \"logger web\"\n",
        )],
        expect: &[
            "packages/web.toml:26:10: monitor[1].notify: fail_package and notify are given together; hint: a monitor fires an event, fails its package, or only notifies: one of them",
        ],
    },
    Case {
        name: "monitor with an empty notify command",
        edits: &[Replace(
            "packages/web.toml",
            "fail_package = true\n",
            "notify = \" \"\n",
        )],
        expect: &[
            "packages/web.toml:25:10: monitor[1].notify: the notify command is empty; expected a shell command",
        ],
    },
    Case {
        name: "monitor restarts on a monitor that only notifies",
        edits: &[Replace(
            "packages/web.toml",
            "fail_package = true\n",
            "notify = \"logger web\"\nrestart = 2\n",
        )],
        expect: &[
            "packages/web.toml:26:11: monitor[1].restart: restarts apply to a monitor that fails its package; hint: add fail_package = true, or remove the field: an event or a notification restarts nothing",
        ],
    },
    Case {
        name: "monitor stabilization that is no duration",
        edits: &[Replace(
            "packages/web.toml",
            "fail_package = true\n",
            "fail_package = true\nstabilization = 30\n",
        )],
        expect: &[
            "packages/web.toml:26:17: monitor[1].stabilization: 30 has no unit; expected a duration such as \"500ms\", \"2s\" or \"10m\"; hint: write \"30s\" for seconds",
        ],
    },
    Case {
        name: "unknown resource kind",
        edits: &[Replace(
            "packages/db.toml",
            r#"kind = "service""#,
            r#"kind = "servise""#,
        )],
        expect: &[
            "packages/db.toml:16:8: resource[2].kind: \"servise\" is not a valid value; expected one of ip, service, script, ocf, volume, filesystem; hint: did you mean \"service\"?",
        ],
    },
    Case {
        name: "mistake in an earlier resource keeps later resources' positions",
        edits: &[
            Replace(
                "packages/web.toml",
                "[[resource]]\nkind = \"ip\"",
                "[[resource]]\nkind = \"script\"\nhalt = \"true\"\n\n[[resource]]\nkind = \"ip\"",
            ),
            Replace(
                "packages/web.toml",
                r#"network = "lan1""#,
                r#"network = "lan3""#,
            ),
        ],
        expect: &[
            "packages/web.toml:10:1: resource[1].run: missing in [[resource]]; expected the command that starts the package's part (customer_defined_run_cmds)",
            "packages/web.toml:16:11: resource[2].network: network \"lan3\" is not defined; expected one of \"lan1\", \"lan2\"; hint: did you mean \"lan1\"?",
        ],
    },
    Case {
        name: "a broken package is still known to its dependents",
        edits: &[Replace(
            "packages/db.toml",
            r#""configured_node""#,
            r#""nearest""#,
        )],
        expect: &[
            "packages/db.toml:6:19: package.failover_policy: \"nearest\" is not a valid value; expected one of configured_node, min_package_node",
        ],
    },
    // --- one mistake, one diagnostic (no knock-on errors); cross-subnet addresses
    Case {
        name: "misspelt required field is reported once",
        edits: &[Replace(
            "packages/db.toml",
            r#"command = "postgres"#,
            r#"comand = "postgres"#,
        )],
        expect: &[
            "packages/db.toml:18:1: resource[2].comand: unknown field; hint: did you mean \"command\"?",
        ],
    },
    Case {
        name: "misspelt resource kind is reported once",
        edits: &[Replace(
            "packages/db.toml",
            r#"kind = "service""#,
            r#"knd = "service""#,
        )],
        expect: &[
            "packages/db.toml:16:1: resource[2].knd: unknown field; hint: did you mean \"kind\"?",
        ],
    },
    Case {
        name: "node without a name is still a voter",
        edits: &[Replace(
            "cluster.toml",
            r#"name = "charlie""#,
            r#"nmae = "charlie""#,
        )],
        expect: &["cluster.toml:41:1: node[3].nmae: unknown field; hint: did you mean \"name\"?"],
    },
    Case {
        name: "node in a subnet where the package has no address",
        edits: &[
            Replace(
                "packages/web.toml",
                r#"nodes = ["*"]"#,
                r#"nodes = ["alpha", "bravo"]"#,
            ),
            Replace(
                "cluster.toml",
                r#"subnets = ["10.0.1.0/24"]"#,
                r#"subnets = ["10.0.1.0/24", "10.0.3.0/24"]"#,
            ),
            Replace("cluster.toml", r#""10.0.1.3""#, r#""10.0.3.3""#),
            Replace(
                "packages/db.toml",
                r#"["alpha", "bravo"]"#,
                r#"["alpha", "charlie"]"#,
            ),
        ],
        expect: &[
            "packages/db.toml:4:19: package.nodes[2]: node \"charlie\" is in subnet 10.0.3.0/24, where the package has no address; hint: add an address in 10.0.3.0/24 to resource[1].addresses",
        ],
    },
    Case {
        name: "cross-subnet addresses cover every node",
        edits: &[
            Replace(
                "packages/web.toml",
                r#"nodes = ["*"]"#,
                r#"nodes = ["alpha", "bravo"]"#,
            ),
            Replace(
                "cluster.toml",
                r#"subnets = ["10.0.1.0/24"]"#,
                r#"subnets = ["10.0.1.0/24", "10.0.3.0/24"]"#,
            ),
            Replace("cluster.toml", r#""10.0.1.3""#, r#""10.0.3.3""#),
            Replace(
                "packages/db.toml",
                r#"["alpha", "bravo"]"#,
                r#"["alpha", "charlie"]"#,
            ),
            Replace(
                "packages/db.toml",
                r#"address = "10.0.1.50/24""#,
                r#"addresses = ["10.0.1.50/24", "10.0.3.50/24"]"#,
            ),
        ],
        expect: &[],
    },
    Case {
        name: "one unusable address of several",
        edits: &[
            Replace(
                "packages/web.toml",
                r#"nodes = ["*"]"#,
                r#"nodes = ["alpha", "bravo"]"#,
            ),
            Replace(
                "cluster.toml",
                r#"subnets = ["10.0.1.0/24"]"#,
                r#"subnets = ["10.0.1.0/24", "10.0.3.0/24"]"#,
            ),
            Replace("cluster.toml", r#""10.0.1.3""#, r#""10.0.3.3""#),
            Replace(
                "packages/db.toml",
                r#"["alpha", "bravo"]"#,
                r#"["alpha", "charlie"]"#,
            ),
            Replace(
                "packages/db.toml",
                r#"address = "10.0.1.50/24""#,
                r#"addresses = ["10.0.1.50/24", "10.0.3.50/99"]"#,
            ),
        ],
        expect: &[
            "packages/db.toml:13:30: resource[1].addresses[2]: prefix length \"99\" is invalid; expected a prefix length from 0 to 32",
        ],
    },
    Case {
        name: "maximum event duration of zero",
        edits: &[Replace(
            "cluster.toml",
            "\n[[network]]\nname = \"lan1\"",
            "\n[limits]\nmax_event_duration = \"0s\"\n\n[[network]]\nname = \"lan1\"",
        )],
        expect: &[
            "cluster.toml:11:22: limits.max_event_duration: \"0s\"; expected more than 0 and at most 24h (a running event is warned about after this long, and again after every further period)",
        ],
    },
    Case {
        name: "maximum event duration longer than a day",
        edits: &[Replace(
            "cluster.toml",
            "\n[[network]]\nname = \"lan1\"",
            "\n[limits]\nmax_event_duration = \"30d\"\n\n[[network]]\nname = \"lan1\"",
        )],
        expect: &[
            "cluster.toml:11:22: limits.max_event_duration: \"30days\"; expected more than 0 and at most 24h (a running event is warned about after this long, and again after every further period)",
        ],
    },
    Case {
        name: "default timeout longer than a lowered maximum event duration",
        edits: &[
            Replace(
                "cluster.toml",
                "\n[[network]]\nname = \"lan1\"",
                "\n[limits]\nmax_event_duration = \"15s\"\n\n[[network]]\nname = \"lan1\"",
            ),
            Replace(
                "packages/web.toml",
                "failover_policy",
                "run_timeout = \"10s\"\nhalt_timeout = \"10s\"\nfailover_policy",
            ),
            Append(
                "packages/db.toml",
                "\n[[resource]]\nkind = \"volume\"\nactivate = \"vg on\"\ndeactivate = \"vg off\"\n",
            ),
        ],
        expect: &[
            "packages/db.toml:21:1: resource[3].timeout: the default timeout of 1m is longer than the event's maximum duration (15s); hint: the event would be reported as hung while the command is still allowed to run; set timeout in this resource or raise [limits] max_event_duration",
        ],
    },
    Case {
        name: "a cycle among packages that others depend on is reported once",
        edits: &[
            Append(
                "packages/db.toml",
                "\n[[dependency]]\npackage = \"mon\"\nlocation = \"any_node\"\n",
            ),
            Append(
                "packages/mon.toml",
                "\n[[dependency]]\npackage = \"db\"\nlocation = \"any_node\"\n",
            ),
        ],
        expect: &[
            "packages/db.toml:22:11: dependency[1].package: dependency cycle: db -> mon -> db; hint: packages depending on each other could never start; remove one dependency",
        ],
    },
    Case {
        name: "misspelt interface network is not also a missing interface",
        edits: &[Replace(
            "cluster.toml",
            "network = \"lan1\"\naddress = \"10.0.1.3\"",
            "network = \"lan\"\naddress = \"10.0.1.3\"",
        )],
        expect: &[
            "cluster.toml:44:11: node[3].interface[1].network: network \"lan\" is not defined; expected one of \"lan1\", \"lan2\"; hint: did you mean \"lan1\"?",
        ],
    },
    Case {
        name: "duplicate key",
        edits: &[Replace(
            "cluster.toml",
            "name = \"lan1\"",
            "name = \"lan1\"\nkind = \"ip\"",
        )],
        expect: &["cluster.toml:13:1: toml: syntax error: duplicate key; expected valid TOML"],
    },
    // --- several at once
    Case {
        name: "several independent mistakes in several files",
        edits: &[
            Replace("packages/web.toml", "failover_policy", "failover_polcy"),
            Replace("cluster.toml", "sensitivity = 4", "sensitivity = 0"),
            Replace(
                "packages/db.toml",
                r#"["alpha", "bravo"]"#,
                r#"["alpha", "delta"]"#,
            ),
            Replace(
                "packages/mon.toml",
                r#"command = "node-exporter""#,
                "command = 7",
            ),
            Replace("packages/db.toml", "10.0.1.50/24", "10.0.1.51/24"),
        ],
        expect: &[
            "cluster.toml:8:15: heartbeat.sensitivity: 0 is out of range; expected an integer from 2 to 100",
            "packages/db.toml:4:19: package.nodes[2]: node \"delta\" is not defined in the cluster; expected one of \"alpha\", \"bravo\", \"charlie\"",
            "packages/mon.toml:9:11: resource[1].command: wrong type: an integer; expected a string",
            "packages/web.toml:4:1: package.failover_polcy: unknown field; hint: did you mean \"failover_policy\"?",
            "packages/web.toml:13:11: resource[1].address: 10.0.1.51 is also a relocatable address of package \"db\"; hint: the other is at packages/db.toml:13:11; two packages with one address would answer for each other",
        ],
    },
];

#[test]
fn every_mistake_is_reported_exactly() {
    let failures: Vec<String> = CASES.iter().filter_map(|c| check(c).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn the_base_configuration_loads() {
    let config = check(&Case {
        name: "base",
        edits: &[],
        expect: &[],
    })
    .unwrap_or_else(|e| panic!("{e}"))
    .expect("loads");
    assert_eq!(config.cluster.nodes.len(), 3);
    assert_eq!(config.packages.len(), 3);
}

#[test]
fn legacy_names_and_values_load_to_the_model() {
    let config = check(&Case {
        name: "legacy names and values",
        edits: &[
            Replace("packages/db.toml", "name = \"db\"", "PACKAGE_NAME = \"db\""),
            Replace("packages/db.toml", "type = \"failover\"", "PACKAGE_TYPE = \"FAILOVER\""),
            Replace("packages/db.toml", "auto_run = true", "PKG_SWITCHING_ENABLED = \"NO\"\nNET_SWITCHING_ENABLED = \"NO\""),
            Replace("packages/db.toml", "\"configured_node\"", "\"CONFIGURED_NODE\""),
            Replace("packages/db.toml", "\"manual\"", "\"AUTOMATIC\""),
            Replace("packages/db.toml", "restart = 2", "SERVICE_RESTART = 5\nSERVICE_FAIL_FAST_ENABLED = \"YES\""),
            Replace("packages/web.toml", "nodes = [\"*\"]", "NODE_NAME = [\"charlie\", \"alpha\"]\nAUTO_RUN = \"YES\"\nFAILBACK_POLICY = \"MANUAL\""),
            Replace("packages/web.toml", "\"min_package_node\"", "\"MIN_PACKAGE_NODE\""),
            Replace("cluster.toml", "interval = \"100ms\"", "HEARTBEAT_INTERVAL = \"200ms\""),
            Replace("cluster.toml", "sensitivity = 4", "FIBRILLATE_COUNT = 5"),
            Replace("cluster.toml", "name = \"test\"", "CLUSTER_NAME = \"legacy\""),
        ],
        expect: &[],
    })
    .unwrap_or_else(|e| panic!("{e}"))
    .expect("loads");

    let db = config.package("db").expect("db");
    assert_eq!(db.package_type, PackageType::Failover);
    assert!(!db.auto_run, "PKG_SWITCHING_ENABLED = NO");
    assert!(!db.local_lan_failover_allowed, "NET_SWITCHING_ENABLED = NO");
    assert_eq!(db.failover_policy, FailoverPolicy::ConfiguredNode);
    assert_eq!(db.failback_policy, FailbackPolicy::Automatic);
    let Resource::Service(postgres) = &db.resources[1] else {
        panic!("resource 2 of db is the service: {:?}", db.resources[1]);
    };
    assert_eq!(postgres.restart, 5);
    assert!(postgres.node_fail_fast);

    let web = config.package("web").expect("web");
    assert!(web.auto_run, "AUTO_RUN = YES");
    assert_eq!(
        web.nodes,
        [NodeName::from("charlie"), NodeName::from("alpha")]
    );
    assert_eq!(web.failover_policy, FailoverPolicy::MinPackageNode);
    assert_eq!(web.failback_policy, FailbackPolicy::Manual);

    assert_eq!(config.cluster.name, "legacy");
    assert_eq!(
        config.cluster.heartbeat.interval,
        Duration::from_millis(200)
    );
    assert_eq!(config.cluster.heartbeat.sensitivity, 5);
    // Networks inherit the cluster's heartbeat.
    assert_eq!(
        config.cluster.networks[0].heartbeat,
        config.cluster.heartbeat
    );
}

#[test]
fn ocf_restart_settings_load_with_their_defaults() {
    let config = check(&Case {
        name: "ocf restarts",
        edits: &[Replace(
            "packages/web.toml",
            "[[monitor]]\n",
            "[[resource]]\nkind = \"ocf\"\nagent = \"heartbeat:Dummy\"\nrestart = 3\n\
             restart_window = \"10m\"\n\n[[resource]]\nkind = \"ocf\"\nagent = \"heartbeat:Dummy\"\n\n\
             [[monitor]]\n",
        )],
        expect: &[],
    })
    .unwrap()
    .unwrap();
    let web = config.package("web").unwrap();
    let restarts: Vec<_> = web.resources.iter().map(|r| r.restarts()).collect();
    assert_eq!(
        restarts,
        [
            None,
            None,
            Some((3, Some(std::time::Duration::from_secs(600)))),
            Some((halcyon_config::DEFAULT_OCF_RESTART, None)),
        ]
    );
    let db = config.package("db").unwrap();
    assert_eq!(db.resources[1].restarts(), Some((2, None)), "a service's");
}

/// `[heartbeat]` with `extra` instead of the base's interval and sensitivity, loaded.
fn heartbeat_with(name: &'static str, edits: &'static [Edit]) -> Config {
    check(&Case {
        name,
        edits,
        expect: &[],
    })
    .unwrap_or_else(|e| panic!("{e}"))
    .expect("loads")
}

#[test]
fn the_fast_profile_sets_the_heartbeat_and_the_lease_follows() {
    let config = heartbeat_with(
        "fast profile",
        &[Replace(
            "cluster.toml",
            "interval = \"100ms\"\nsensitivity = 4\n",
            "profile = \"fast\"\n",
        )],
    );
    let cluster = &config.cluster;
    assert_eq!(cluster.heartbeat, HeartbeatProfile::Fast.heartbeat());
    assert_eq!(cluster.heartbeat.interval, Duration::from_millis(30));
    assert_eq!(cluster.heartbeat.sensitivity, 3);
    // Every network without its own settings runs the profile too.
    assert!(
        cluster
            .networks
            .iter()
            .all(|n| n.heartbeat == cluster.heartbeat)
    );
    assert_eq!(cluster.detection_time(), Duration::from_millis(90));
    assert_eq!(cluster.lease(), Duration::from_millis(221));
    assert_eq!(
        cluster.raft_timings().election_max,
        Duration::from_millis(48)
    );

    // "default" (any case) is the defaults.
    let config = heartbeat_with(
        "default profile",
        &[Replace(
            "cluster.toml",
            "interval = \"100ms\"\nsensitivity = 4\n",
            "profile = \"Default\"\n",
        )],
    );
    assert_eq!(config.cluster.heartbeat, Heartbeat::default());
    assert_eq!(config.cluster.lease(), Duration::from_millis(619));
}

#[test]
fn an_explicit_interval_or_sensitivity_overrides_the_profile() {
    let config = heartbeat_with(
        "fast profile, sensitivity 5",
        &[Replace(
            "cluster.toml",
            "interval = \"100ms\"\nsensitivity = 4\n",
            "profile = \"fast\"\nsensitivity = 5\n",
        )],
    );
    let h = config.cluster.heartbeat;
    assert_eq!((h.interval, h.sensitivity), (Duration::from_millis(30), 5));
    assert_eq!(config.cluster.detection_time(), Duration::from_millis(150));
    assert_eq!(config.cluster.lease(), Duration::from_millis(221));

    // The order in the table does not matter: the profile is the base either way.
    let config = heartbeat_with(
        "interval 50ms, then the fast profile",
        &[Replace(
            "cluster.toml",
            "interval = \"100ms\"\nsensitivity = 4\n",
            "interval = \"50ms\"\nprofile = \"fast\"\n",
        )],
    );
    let h = config.cluster.heartbeat;
    assert_eq!((h.interval, h.sensitivity), (Duration::from_millis(50), 3));
    // 2 x election_max (80 ms) + the tick (24 ms) + a renewal + the fencing lead + 50 ms.
    assert_eq!(config.cluster.lease(), Duration::from_millis(334));

    // A network's own interval overrides the profile on that network only.
    let config = heartbeat_with(
        "fast profile, lan2 at 60ms",
        &[
            Replace(
                "cluster.toml",
                "interval = \"100ms\"\nsensitivity = 4\n",
                "profile = \"fast\"\n",
            ),
            Replace(
                "cluster.toml",
                "subnets = [\"10.0.2.0/24\"]",
                "subnets = [\"10.0.2.0/24\"]\ninterval = \"60ms\"",
            ),
        ],
    );
    let networks = &config.cluster.networks;
    assert_eq!(networks[0].heartbeat, HeartbeatProfile::Fast.heartbeat());
    assert_eq!(
        (
            networks[1].heartbeat.interval,
            networks[1].heartbeat.sensitivity
        ),
        (Duration::from_millis(60), 3)
    );
    assert_eq!(config.cluster.detection_time(), Duration::from_millis(180));
}

#[test]
fn defaults_are_what_the_model_documents() {
    let config = check(&Case {
        name: "defaults",
        edits: &[
            Replace(
                "cluster.toml",
                "[heartbeat]\ninterval = \"100ms\"\nsensitivity = 4\n",
                "",
            ),
            Replace("packages/web.toml", "location = \"any_node\"\n", ""),
        ],
        expect: &[],
    })
    .unwrap_or_else(|e| panic!("{e}"))
    .expect("loads");

    let cluster = &config.cluster;
    assert_eq!(cluster.port, DEFAULT_PORT);
    assert_eq!(cluster.heartbeat, Heartbeat::default());
    assert_eq!(cluster.heartbeat.interval, DEFAULT_HEARTBEAT_INTERVAL);
    assert_eq!(cluster.heartbeat.sensitivity, DEFAULT_SENSITIVITY);
    assert!(
        cluster
            .networks
            .iter()
            .all(|n| n.heartbeat == Heartbeat::default())
    );
    assert_eq!(
        cluster.networks[1].number, 2,
        "a network's number is its position + 1"
    );
    assert_eq!(
        cluster.limits.max_event_duration,
        DEFAULT_MAX_EVENT_DURATION
    );
    assert_eq!(cluster.events, EventDefaults::default());
    assert_eq!(cluster.quorum.witness, None);
    assert!(!cluster.quorum.auto_shrink);
    assert_eq!(
        cluster.quorum.lease, None,
        "derived from the heartbeat settings"
    );
    assert_eq!(cluster.quorum.watchdog, None);

    // web leaves out type, auto_run, failback_policy, priority and timeouts.
    let web = config.package("web").expect("web");
    assert_eq!(web.package_type, PackageType::Failover);
    assert!(web.auto_run);
    assert_eq!(web.failback_policy, FailbackPolicy::Manual);
    assert_eq!(web.fallback_timer, None);
    assert_eq!(web.priority, None);
    assert!(web.local_lan_failover_allowed);
    assert_eq!(web.failure_expiry, Some(DEFAULT_FAILURE_EXPIRY));
    assert_eq!(web.run_timeout, DEFAULT_SCRIPT_TIMEOUT);
    assert_eq!(web.halt_timeout, DEFAULT_SCRIPT_TIMEOUT);
    let all: Vec<NodeName> = ["alpha", "bravo", "charlie"].map(NodeName::from).into();
    assert_eq!(web.nodes, all, "[\"*\"] is every node in configured order");
    assert_eq!(
        web.networks,
        [NetworkName::from("lan1")],
        "the ip resources' networks"
    );
    assert_eq!(
        web.dependencies,
        [Dependency {
            package: PackageName::from("db"),
            location: DependencyLocation::SameNode,
        }]
    );
    let Resource::Script(cache) = &web.resources[1] else {
        panic!("resource 2 of web is the script: {:?}", web.resources[1]);
    };
    assert_eq!(cache.run_timeout, DEFAULT_SCRIPT_TIMEOUT);
    assert_eq!(cache.halt_timeout, DEFAULT_SCRIPT_TIMEOUT);
    assert_eq!(web.monitors[0].interval, Duration::from_secs(10));
    assert_eq!(web.monitors[0].action, MonitorAction::FailPackage);
    assert_eq!(web.monitors[0].rearm, None);

    let mon = config.package("mon").expect("mon");
    assert_eq!(mon.nodes, all);
    let Resource::Service(exporter) = &mon.resources[0] else {
        panic!("resource 1 of mon is the service: {:?}", mon.resources[0]);
    };
    assert_eq!(exporter.restart, 0);
    assert_eq!(exporter.restart_window, None);
    assert!(!exporter.node_fail_fast);
    assert_eq!(exporter.halt_timeout, DEFAULT_SERVICE_HALT_TIMEOUT);
}

/// A long chain where each package depends on the two before it has
/// exponentially many dependency paths; the cycle search must not walk them.
#[test]
fn a_cycle_in_a_large_dense_dependency_graph_is_found_quickly() {
    const COUNT: usize = 60;
    let mut edits = Vec::new();
    for i in 0..COUNT {
        let mut text = format!("[package]\nname = \"p{i:02}\"\nnodes = [\"*\"]\n");
        for back in [1, 2] {
            if i >= back {
                text.push_str(&format!(
                    "\n[[dependency]]\npackage = \"p{:02}\"\nlocation = \"any_node\"\n",
                    i - back
                ));
            }
        }
        if i == 2 {
            // Closes cycles p02 -> p59 -> ... -> p02.
            text.push_str("\n[[dependency]]\npackage = \"p59\"\nlocation = \"any_node\"\n");
        }
        let file: &'static str = Box::leak(format!("packages/p{i:02}.toml").into_boxed_str());
        edits.push(Add(file, Box::leak(text.into_boxed_str())));
    }
    let case = Case {
        name: "dense dependencies",
        edits: Box::leak(edits.into_boxed_slice()),
        expect: &[],
    };
    let started = std::time::Instant::now();
    let error = check(&case).expect_err("a cycle");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // One diagnostic, for a shortest cycle through the first package (by name),
    // at that package's dependency that begins it.
    let chain: Vec<String> = (2..=58)
        .rev()
        .step_by(2)
        .map(|i| format!("p{i:02}"))
        .collect();
    let expected = format!(
        "packages/p02.toml:14:11: dependency[3].package: dependency cycle: p02 -> p59 -> {} -> p02; \
         hint: packages depending on each other could never start; remove one dependency",
        chain[..chain.len() - 1].join(" -> ")
    );
    assert_eq!(
        error,
        format!("case dense dependencies: expected 0 diagnostic(s), got 1:\n    {expected:?},\n")
    );
}
const CLUSTER: &str = r#"# A small cluster for the mistakes tests: three nodes on two ip networks.
[cluster]
name = "test"
id = 1

[heartbeat]
interval = "100ms"
sensitivity = 4

[[network]]
name = "lan1"
kind = "ip"
subnets = ["10.0.1.0/24"]

[[network]]
name = "lan2"
kind = "ip"
subnets = ["10.0.2.0/24"]

[[node]]
name = "alpha"
number = 1
[[node.interface]]
network = "lan1"
address = "10.0.1.1"
[[node.interface]]
network = "lan2"
address = "10.0.2.1"

[[node]]
name = "bravo"
number = 2
[[node.interface]]
network = "lan1"
address = "10.0.1.2"
[[node.interface]]
network = "lan2"
address = "10.0.2.2"

[[node]]
name = "charlie"
number = 3
[[node.interface]]
network = "lan1"
address = "10.0.1.3"
[[node.interface]]
network = "lan2"
address = "10.0.2.3"
"#;

const DB: &str = r#"[package]
name = "db"
type = "failover"
nodes = ["alpha", "bravo"]
auto_run = true
failover_policy = "configured_node"
failback_policy = "manual"
priority = 10

[[resource]]
kind = "ip"
network = "lan1"
address = "10.0.1.50/24"

[[resource]]
kind = "service"
name = "postgres"
command = "postgres -D /srv/pg"
restart = 2
"#;

const WEB: &str = r#"[package]
name = "web"
nodes = ["*"]
failover_policy = "min_package_node"

[[dependency]]
package = "db"
location = "any_node"

[[resource]]
kind = "ip"
network = "lan1"
address = "10.0.1.51/24"

[[resource]]
kind = "script"
name = "cache"
run = "cache-warm start"
halt = "cache-warm stop"

[[monitor]]
name = "http"
sample = "curl -s http://10.0.1.51/health"
predicate = "X != 200"
fail_package = true
"#;

const MON: &str = r#"[package]
name = "mon"
type = "system_multi_node"
nodes = ["*"]

[[resource]]
kind = "service"
name = "exporter"
command = "node-exporter"
"#;
