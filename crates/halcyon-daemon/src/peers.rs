//! Where the other nodes are: the port layout (the only place that knows that Raft listens
//! at `port + 1` and the API at `port + 2`), the nodes' names by Raft id, and which of a
//! peer's API addresses answered last.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use halcyon_config::Config;
use halcyon_consensus::{NodeAddrs, NodeId};

/// Raft listens at the cluster port plus this.
const RAFT_PORT_OFFSET: u16 = 1;
/// The API listens at the cluster port plus this.
const API_PORT_OFFSET: u16 = 2;

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

/// The API addresses of every node: each of its IP interfaces (standby interfaces aside)
/// at `port + 2`, in configuration order. A node listens on all of them and its peers try
/// all of them, so that losing one network does not cut a node off from the leader's API
/// (lease renewals, forwarded writes) while Raft still reaches it on another.
pub fn api_addrs(config: &Config) -> BTreeMap<NodeId, Vec<SocketAddr>> {
    let port = config.cluster.port + API_PORT_OFFSET;
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

/// Every node's API addresses, and for each the one that answered last (tried first).
pub struct Peers {
    addrs: BTreeMap<NodeId, Vec<SocketAddr>>,
    /// Index into `addrs[id]` of the address that answered last. An atomic per peer, not a
    /// lock: it is a hint, and a stale one costs one failed attempt.
    preferred: BTreeMap<NodeId, AtomicUsize>,
}

impl Peers {
    pub fn new(config: &Config) -> Peers {
        let addrs = api_addrs(config);
        let preferred = addrs.keys().map(|id| (*id, AtomicUsize::new(0))).collect();
        Peers { addrs, preferred }
    }

    /// Node `id`'s API addresses in configuration order.
    pub fn api(&self, id: NodeId) -> Option<&[SocketAddr]> {
        self.addrs.get(&id).map(Vec::as_slice)
    }

    /// Node `id`'s API addresses, the one that answered last first.
    pub fn api_preferred_first(&self, id: NodeId) -> Option<Vec<SocketAddr>> {
        let mut addrs = self.addrs.get(&id)?.clone();
        let i = self.preferred.get(&id)?.load(Ordering::Relaxed);
        if i < addrs.len() {
            addrs[..=i].rotate_right(1);
        }
        Some(addrs)
    }

    /// `addr` of node `id` answered: try it first next time.
    pub fn answered(&self, id: NodeId, addr: SocketAddr) {
        if let (Some(addrs), Some(preferred)) = (self.addrs.get(&id), self.preferred.get(&id))
            && let Some(i) = addrs.iter().position(|a| *a == addr)
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
        assert_eq!(peers.api_preferred_first(id).unwrap(), addrs);
        let last = *addrs.last().unwrap();
        peers.answered(id, last);
        assert_eq!(peers.api_preferred_first(id).unwrap()[0], last);
        // An unknown address changes nothing.
        peers.answered(id, "127.9.9.9:1".parse().unwrap());
        assert_eq!(peers.api_preferred_first(id).unwrap()[0], last);
    }
}
