//! The transport trait heartbeats travel over, and building the real links from the cluster.
//!
//! Invariants: a link carries opaque sealed bytes for exactly one network; `send` never blocks
//! for longer than a local socket write or a queue push (disk I/O happens on the disk link's
//! own thread); `recv` returns within its timeout (plus one system call).

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use halcyon_config::{Cluster, NetworkKind};

use crate::detector::is_on_network;
use crate::disk::DiskLink;
use crate::heartbeat::{LinkPeer, LinkPeers};
use crate::udp::UdpLink;

/// A heartbeat taken from a link, and when it arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arrived {
    pub bytes: Vec<u8>,
    pub at: ArrivedAt,
}

/// When a heartbeat arrived, as far as its link knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArrivedAt {
    /// When it was taken (the link keeps no time of its own).
    Taken,
    /// Read by the link's own thread at this moment (the disk link).
    Read(Instant),
    /// The kernel's receive time (`SO_TIMESTAMPNS`: the wall clock, `CLOCK_REALTIME`).
    Kernel(SystemTime),
}

/// One network's heartbeat transport, replaceable by a simulator.
pub trait HeartbeatLink: Send {
    /// The network this link carries.
    fn network(&self) -> u32;
    /// Send one sealed heartbeat to every peer on this network.
    fn send(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// The next sealed heartbeat from a peer, waiting at most `timeout` (zero: do not wait).
    /// `Ok(None)` when nothing arrived in time.
    fn recv(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>>;
    /// The next sealed heartbeat already received, without waiting, with when it arrived
    /// (the heartbeat thread sleeps between its steps and takes what came meanwhile).
    fn try_recv(&mut self) -> io::Result<Option<Arrived>> {
        Ok(self.recv(Duration::ZERO)?.map(|bytes| Arrived {
            bytes,
            at: ArrivedAt::Taken,
        }))
    }
    /// From now on heartbeat `peers` instead of those it was made with (a running
    /// cluster's `halcyon apply` added or removed nodes). A link that cannot says so and
    /// keeps its peers.
    fn set_peers(&mut self, peers: Vec<LinkPeer>) -> io::Result<()> {
        let _ = peers;
        Err(peers_fixed(self.network()))
    }
    /// The shortest heartbeat interval in play on this network changed to `interval` (this
    /// node's, or one a peer announced): a link that polls for heartbeats (the disk link
    /// reads its peers' slots) polls often enough for it from now on. A link that is handed
    /// heartbeats as they arrive (UDP) has nothing to do.
    fn set_interval(&mut self, interval: Duration) {
        let _ = interval;
    }
}

/// What a link that keeps the peers it was made with answers to `set_peers`.
pub(crate) fn peers_fixed(network: u32) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("the link of network {network} keeps the peers it was made with"),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("node {0} is not in the cluster")]
    UnknownNode(u32),
    #[error("network {0} is not in the cluster")]
    UnknownNetwork(u32),
    #[error("node {node} has no address on ip network {network}")]
    NoAddress { node: String, network: String },
    #[error("disk network {0} has no device")]
    NoDevice(String),
    #[error("disk network {network}: {path}: {source}")]
    Disk {
        network: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("ip network {network}: cannot bind {address}: {source}")]
    Bind {
        network: String,
        address: SocketAddr,
        source: io::Error,
    },
}

/// One link per network `local_node` is on: UDP on `cluster.port` for ip networks, the shared
/// device for disk networks.
pub fn links_from_cluster(
    cluster: &Cluster,
    local_node: u32,
) -> Result<Vec<Box<dyn HeartbeatLink>>, SetupError> {
    let mut links = Vec::new();
    for network in &cluster.networks {
        links.extend(link_of(cluster, local_node, network.number)?);
    }
    Ok(links)
}

/// The link of `local_node` on network number `network` (as [`links_from_cluster`] makes
/// it), or `None` when the node is not on it; an unknown network is
/// [`SetupError::UnknownNetwork`].
pub fn link_of(
    cluster: &Cluster,
    local_node: u32,
    network: u32,
) -> Result<Option<Box<dyn HeartbeatLink>>, SetupError> {
    let local = cluster
        .nodes
        .iter()
        .find(|n| n.number == local_node)
        .ok_or(SetupError::UnknownNode(local_node))?;
    let network = cluster
        .networks
        .iter()
        .find(|n| n.number == network)
        .ok_or(SetupError::UnknownNetwork(network))?;
    if !is_on_network(cluster, local, network) {
        return Ok(None);
    }
    let peers = cluster
        .nodes
        .iter()
        .filter(|n| n.number != local_node && is_on_network(cluster, n, network));
    match network.kind {
        NetworkKind::Ip => {
            let local_address = udp_address(cluster, local, network)?;
            let peer_addresses = peers
                .map(|p| udp_address(cluster, p, network).map(|a| (p.number, a)))
                .collect::<Result<_, _>>()?;
            let link =
                UdpLink::bind(network.number, local_address, peer_addresses).map_err(|source| {
                    SetupError::Bind {
                        network: network.name.to_string(),
                        address: local_address,
                        source,
                    }
                })?;
            Ok(Some(Box::new(link)))
        }
        NetworkKind::Disk => {
            let path = PathBuf::from(
                network
                    .device
                    .as_ref()
                    .ok_or_else(|| SetupError::NoDevice(network.name.to_string()))?,
            );
            let peer_numbers: Vec<u32> = peers.map(|p| p.number).collect();
            let link = DiskLink::open(
                &path,
                network.number,
                local_node,
                &peer_numbers,
                network.heartbeat.interval,
            )
            .map_err(|source| SetupError::Disk {
                network: network.name.to_string(),
                path: path.clone(),
                source,
            })?;
            Ok(Some(Box::new(link)))
        }
    }
}

/// Where `node` heartbeats on ip network `network`: its interface's address, `cluster.port`.
fn udp_address(
    cluster: &Cluster,
    node: &halcyon_config::Node,
    network: &halcyon_config::Network,
) -> Result<SocketAddr, SetupError> {
    node.interface_on(network.name.as_str())
        .and_then(|i| i.address)
        .map(|ip| SocketAddr::new(ip, cluster.port))
        .ok_or_else(|| SetupError::NoAddress {
            node: node.name.to_string(),
            network: network.name.to_string(),
        })
}

/// Where a node's link on a network is: a disk network's device, the node's address on an
/// ip network. A running node whose link's endpoint changed makes the link again.
pub type LinkEndpoint = (Option<String>, Option<std::net::IpAddr>);

/// The endpoint of each network `local_node` is on in `cluster`, as [`links_from_cluster`]
/// makes its links (none when the node is not in it).
pub fn link_endpoints(cluster: &Cluster, local_node: u32) -> BTreeMap<u32, LinkEndpoint> {
    let Some(local) = cluster.nodes.iter().find(|n| n.number == local_node) else {
        return BTreeMap::new();
    };
    cluster
        .networks
        .iter()
        .filter(|n| is_on_network(cluster, local, n))
        .map(|n| {
            let address = local.interface_on(n.name.as_str()).and_then(|i| i.address);
            (n.number, (n.device.clone(), address))
        })
        .collect()
}

/// The peers each network's link of `local_node` heartbeats (as [`links_from_cluster`]
/// makes them), for a running cluster whose nodes changed: on an ip network with their
/// addresses, on a disk network by number (their slots).
pub fn link_peers(cluster: &Cluster, local_node: u32) -> Result<LinkPeers, SetupError> {
    let local = cluster
        .nodes
        .iter()
        .find(|n| n.number == local_node)
        .ok_or(SetupError::UnknownNode(local_node))?;
    let mut peers = LinkPeers::new();
    for network in cluster
        .networks
        .iter()
        .filter(|n| is_on_network(cluster, local, n))
    {
        let on_it = cluster
            .nodes
            .iter()
            .filter(|n| n.number != local_node && is_on_network(cluster, n, network));
        let of_network = match network.kind {
            NetworkKind::Ip => on_it
                .map(|p| {
                    udp_address(cluster, p, network).map(|a| LinkPeer {
                        node: p.number,
                        address: Some(a),
                    })
                })
                .collect::<Result<_, _>>()?,
            NetworkKind::Disk => on_it
                .map(|p| LinkPeer {
                    node: p.number,
                    address: None,
                })
                .collect(),
        };
        peers.insert(network.number, of_network);
    }
    Ok(peers)
}

/// The addresses of `peers` (node number, address) for an ip link; refused when one has
/// none (a disk network's peer handed to an ip link).
pub fn addresses_of(peers: &[LinkPeer]) -> io::Result<Vec<(u32, SocketAddr)>> {
    peers
        .iter()
        .map(|p| {
            p.address.map(|a| (p.node, a)).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("node {} has no address on this ip network", p.node),
                )
            })
        })
        .collect()
}
