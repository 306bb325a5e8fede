//! Where the other nodes are: the port layout (the only place that knows that Raft listens
//! at `port + 1`, the API at `port + 2` and the nodes' internal API at `port + 3`), the
//! nodes' names by Raft id, and which of a peer's addresses answered last.
//!
//! A request to a peer tries its addresses in turn: those on a network whose path to the
//! peer the heartbeats say is down go last, then the one that answered last first. A
//! request on a connection kept open over a network that lost its carrier is not refused
//! at once, as a new connection is: it waits in the socket until the link returns, and a
//! report committed that late is stale (the lab caught a swap back made from one).
//!
//! The internal API (lease renewals, forwarded writes) has a listener of its own, served on
//! the node's runtime, so that a flood of administrators' and programs' requests on the
//! API's listener (served on a runtime of its own) cannot delay a renewal in its accept
//! queue (issue 15, finding 5).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use halcyon_config::Config;
use halcyon_consensus::{NodeAddrs, NodeId};

/// Raft listens at the cluster port plus this.
const RAFT_PORT_OFFSET: u16 = 1;
/// The API listens at the cluster port plus this.
const API_PORT_OFFSET: u16 = 2;
/// The internal API (node to node) listens at the cluster port plus this.
const INTERNAL_PORT_OFFSET: u16 = 3;
/// How many ports above the cluster port a node uses (`halcyon check` keeps the cluster
/// port low enough for all of them).
pub const PORTS_USED: u16 = INTERNAL_PORT_OFFSET + 1;

/// The addresses of one node's IP interfaces, standby interfaces aside, in configuration
/// order, at `port`.
fn interface_addrs(node: &halcyon_config::Node, port: u16) -> Vec<SocketAddr> {
    node.interfaces
        .iter()
        .filter(|i| !i.standby)
        .filter_map(|i| i.address)
        .map(|a| SocketAddr::new(a, port))
        .collect()
}

/// Consensus addresses of every node (and the witness): each IP interface at `port + 1`.
/// Whose each node interface address of `config` is: a node's certificate is checked for
/// its name at any of them (`RaftTls::set_addresses`, the CLI's `Transport`).
pub fn node_of_address(config: &Config) -> std::collections::HashMap<std::net::IpAddr, String> {
    config
        .cluster
        .nodes
        .iter()
        .flat_map(|n| {
            n.interfaces
                .iter()
                .filter_map(|i| i.address)
                .map(|a| (a, n.name.to_string()))
        })
        .collect()
}

pub fn raft_members(config: &Config) -> BTreeMap<NodeId, NodeAddrs> {
    let port = config.cluster.port + RAFT_PORT_OFFSET;
    let mut members: BTreeMap<NodeId, NodeAddrs> = config
        .cluster
        .nodes
        .iter()
        .map(|n| {
            let addrs = NodeAddrs::new(interface_addrs(n, port));
            (NodeId::from(n.number), addrs)
        })
        .collect();
    if let Some(w) = &config.cluster.quorum.witness {
        members.insert(
            NodeId::from(w.number),
            NodeAddrs::new([SocketAddr::new(w.address, port)]),
        );
    }
    members
}

/// The witness's API address: its address at `port + 2`, as a node's API.
pub fn witness_api(cluster: &halcyon_config::Cluster, w: &halcyon_config::Witness) -> SocketAddr {
    SocketAddr::new(w.address, cluster.port + API_PORT_OFFSET)
}

/// The API addresses of every node: each of its IP interfaces (standby interfaces aside)
/// at `port + 2`, in configuration order. A node listens on all of them and its peers try
/// all of them, so that losing one network does not cut a node off from the leader's API
/// (lease renewals, forwarded writes) while Raft still reaches it on another.
pub fn api_addrs(config: &Config) -> BTreeMap<NodeId, Vec<SocketAddr>> {
    addrs_at(config, config.cluster.port + API_PORT_OFFSET)
}

/// The internal API addresses of every node: as [`api_addrs`], at `port + 3`.
pub fn internal_addrs(config: &Config) -> BTreeMap<NodeId, Vec<SocketAddr>> {
    addrs_at(config, config.cluster.port + INTERNAL_PORT_OFFSET)
}

fn addrs_at(config: &Config, port: u16) -> BTreeMap<NodeId, Vec<SocketAddr>> {
    config
        .cluster
        .nodes
        .iter()
        .map(|n| (NodeId::from(n.number), interface_addrs(n, port)))
        .filter(|(_, addrs)| !addrs.is_empty())
        .collect()
}

/// The name of Raft member `id` (a node or the witness) in `config`, else `node ID`.
pub fn name_of(config: &Config, id: NodeId) -> String {
    let node = config
        .cluster
        .nodes
        .iter()
        .find(|n| NodeId::from(n.number) == id)
        .map(|n| n.name.to_string());
    let witness = || {
        config
            .cluster
            .quorum
            .witness
            .as_ref()
            .filter(|w| NodeId::from(w.number) == id)
            .map(|w| w.name.to_string())
    };
    node.or_else(witness)
        .unwrap_or_else(|| format!("node {id}"))
}

/// `a, b, c` for messages.
pub fn join_addrs(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The network (its number) of each address [`interface_addrs`] gives, in the same order.
fn interface_networks(config: &Config, node: &halcyon_config::Node) -> Vec<u32> {
    node.interfaces
        .iter()
        .filter(|i| !i.standby && i.address.is_some())
        .map(|i| {
            config
                .cluster
                .network(i.network.as_str())
                .map_or(0, |n| n.number)
        })
        .collect()
}

/// Every node's API and internal API addresses, and for each node which of its interfaces
/// answered last (tried first).
pub struct Peers {
    addrs: BTreeMap<NodeId, Vec<SocketAddr>>,
    internal: BTreeMap<NodeId, Vec<SocketAddr>>,
    /// The network of each of `addrs[id]` (and `internal[id]`), in the same order.
    networks: BTreeMap<NodeId, Vec<u32>>,
    /// Index (into `addrs[id]` and `internal[id]`, both in interface order) of the interface
    /// that answered last. An atomic per peer, not a lock: it is a hint, and a stale one
    /// costs one failed attempt.
    preferred: BTreeMap<NodeId, AtomicUsize>,
}

impl Peers {
    pub fn new(config: &Config) -> Peers {
        let addrs = api_addrs(config);
        let internal = internal_addrs(config);
        let preferred = addrs.keys().map(|id| (*id, AtomicUsize::new(0))).collect();
        let networks = config
            .cluster
            .nodes
            .iter()
            .map(|n| (NodeId::from(n.number), interface_networks(config, n)))
            .collect();
        Peers {
            addrs,
            internal,
            networks,
            preferred,
        }
    }

    /// Node `id`'s internal API addresses in configuration order.
    pub fn internal(&self, id: NodeId) -> Option<&[SocketAddr]> {
        self.internal.get(&id).map(Vec::as_slice)
    }

    /// Node `id`'s API addresses in configuration order.
    pub fn api(&self, id: NodeId) -> Option<&[SocketAddr]> {
        self.addrs.get(&id).map(Vec::as_slice)
    }

    /// Node `id`'s API addresses (`internal`: its internal API's) in the order to try them:
    /// those on a network `down` says the path to `id` is down on last, and the interface
    /// that answered last first among the others.
    pub fn preferred_first(
        &self,
        id: NodeId,
        internal: bool,
        down: impl Fn(u32) -> bool,
    ) -> Option<Vec<SocketAddr>> {
        let table = if internal {
            &self.internal
        } else {
            &self.addrs
        };
        let addrs = table.get(&id)?;
        let networks = self.networks.get(&id)?;
        debug_assert_eq!(addrs.len(), networks.len(), "one network per address");
        let mut order: Vec<usize> = (0..addrs.len()).collect();
        let i = self.preferred.get(&id)?.load(Ordering::Relaxed);
        if i < order.len() {
            order[..=i].rotate_right(1);
        }
        // Stable: the answered-last order holds within the paths up and within those down.
        order.sort_by_key(|&k| networks.get(k).is_some_and(|n| down(*n)));
        Some(order.into_iter().map(|k| addrs[k]).collect())
    }

    /// `addr` of node `id` (API or internal API) answered: try its interface first next
    /// time.
    pub fn answered(&self, id: NodeId, addr: SocketAddr) {
        let position = |table: &BTreeMap<NodeId, Vec<SocketAddr>>| {
            table.get(&id)?.iter().position(|a| *a == addr)
        };
        if let Some(preferred) = self.preferred.get(&id)
            && let Some(i) = position(&self.addrs).or_else(|| position(&self.internal))
        {
            preferred.store(i, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let dir = tempfile::tempdir().unwrap();
        halcyon_testkit::config::demo("peers", 7000, 3, "sleep 1")
            .write(dir.path())
            .unwrap();
        halcyon_config::load(&[dir.path().to_owned()]).unwrap().0
    }

    #[test]
    fn the_port_layout_puts_raft_and_the_api_above_the_cluster_port() {
        let c = config();
        let port = c.cluster.port;
        let raft = raft_members(&c);
        let api = api_addrs(&c);
        assert_eq!(raft.len(), 3);
        for addrs in api.values() {
            assert!(addrs.iter().all(|a| a.port() == port + 2));
        }
        for addrs in internal_addrs(&c).values() {
            assert!(addrs.iter().all(|a| a.port() == port + 3));
        }
        assert_eq!(PORTS_USED, 4);
        assert_eq!(
            name_of(&c, NodeId::from(2u32)),
            c.cluster.nodes[1].name.to_string()
        );
        assert_eq!(name_of(&c, NodeId::from(99u32)), "node 99");
    }

    #[test]
    fn the_address_that_answered_last_is_tried_first() {
        let c = config();
        let peers = Peers::new(&c);
        let id = NodeId::from(1u32);
        let addrs = peers.api(id).unwrap().to_vec();
        let up = |_| false;
        assert_eq!(peers.preferred_first(id, false, up).unwrap(), addrs);
        let last = *addrs.last().unwrap();
        peers.answered(id, last);
        assert_eq!(peers.preferred_first(id, false, up).unwrap()[0], last);
        // An unknown address changes nothing.
        peers.answered(id, "127.9.9.9:1".parse().unwrap());
        assert_eq!(peers.preferred_first(id, false, up).unwrap()[0], last);
        // The internal API's address on the same interface comes first too.
        let internal = peers.preferred_first(id, true, up).unwrap();
        assert_eq!(internal[0].ip(), last.ip());
    }

    #[test]
    fn an_address_on_a_network_whose_path_is_down_is_tried_last() {
        use halcyon_testkit::config::{ClusterConfig, Node};
        use std::net::Ipv4Addr;
        let mut cluster = ClusterConfig::new("peers", 1, 7000)
            .ip_network("a", &["127.0.0.0/16"])
            .ip_network("b", &["127.1.0.0/16"]);
        for i in 1..=3u8 {
            cluster = cluster.node(
                Node::new(format!("n{i}"), u32::from(i))
                    .interface("a", Ipv4Addr::new(127, 0, 0, i))
                    .interface("b", Ipv4Addr::new(127, 1, 0, i)),
            );
        }
        let dir = tempfile::tempdir().unwrap();
        cluster.write(dir.path()).unwrap();
        let c = halcyon_config::load(&[dir.path().to_owned()]).unwrap().0;
        let peers = Peers::new(&c);
        let id = NodeId::from(1u32);
        let addrs = peers.api(id).unwrap().to_vec();
        assert!(addrs.len() >= 2, "the demo has two networks: {addrs:?}");
        let first_network = c.cluster.networks[0].number;
        // The first address answered last, but its network's path is down: it goes last.
        peers.answered(id, addrs[0]);
        let order = peers
            .preferred_first(id, false, |n| n == first_network)
            .unwrap();
        assert_eq!(order.last(), Some(&addrs[0]), "{order:?}");
        assert_eq!(order.len(), addrs.len());
        // Every path down: the answered-last order stands.
        let order = peers.preferred_first(id, true, |_| true).unwrap();
        assert_eq!(order[0].ip(), addrs[0].ip());
    }
}
