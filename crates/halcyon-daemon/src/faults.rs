//! Test-only heartbeat faults (enabled by the hidden `--test-faults` flag): a wrapper around a
//! network's heartbeat link that drops what chosen peers send on it, so loopback tests can cut
//! one network of one node without root (the lab does it for real with nftables).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::time::Duration;

use halcyon_membership::{HeartbeatLink, wire};
use tokio::sync::watch;

/// Most heartbeats dropped in one `recv` before it gives the runner its turn back.
const DROPS_PER_RECV_MAX: usize = 512;

/// Per network number, the peers (node numbers) whose heartbeats are dropped on arrival:
/// a current value that the debug API replaces and the links read.
#[derive(Clone, Debug)]
pub struct HeartbeatFaults {
    blocked: watch::Sender<BTreeMap<u32, BTreeSet<u32>>>,
}

impl Default for HeartbeatFaults {
    fn default() -> Self {
        HeartbeatFaults {
            blocked: watch::Sender::new(BTreeMap::new()),
        }
    }
}

impl HeartbeatFaults {
    /// Replaces the set of peers dropped on `network` (empty: heal it).
    pub fn set(&self, network: u32, peers: BTreeSet<u32>) {
        self.blocked.send_modify(|blocked| {
            if peers.is_empty() {
                blocked.remove(&network);
            } else {
                blocked.insert(network, peers);
            }
        });
    }

    fn drops(&self, network: u32, node: u32) -> bool {
        self.blocked
            .borrow()
            .get(&network)
            .is_some_and(|peers| peers.contains(&node))
    }
}

/// A heartbeat link whose incoming heartbeats from blocked peers vanish.
pub struct FaultyLink {
    inner: Box<dyn HeartbeatLink>,
    faults: HeartbeatFaults,
    cluster_id: u64,
}

impl FaultyLink {
    pub fn wrap(
        inner: Box<dyn HeartbeatLink>,
        faults: HeartbeatFaults,
        cluster_id: u64,
    ) -> Box<dyn HeartbeatLink> {
        Box::new(FaultyLink {
            inner,
            faults,
            cluster_id,
        })
    }
}

impl HeartbeatLink for FaultyLink {
    fn network(&self) -> u32 {
        self.inner.network()
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.send(bytes)
    }

    fn set_peers(&mut self, peers: Vec<halcyon_membership::LinkPeer>) -> io::Result<()> {
        self.inner.set_peers(peers)
    }

    fn set_interval(&mut self, interval: Duration) {
        self.inner.set_interval(interval);
    }

    fn recv(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        let network = self.inner.network();
        let mut timeout = timeout;
        for _ in 0..DROPS_PER_RECV_MAX {
            let Some(bytes) = self.inner.recv(timeout)? else {
                return Ok(None);
            };
            // Read before authentication (the sealer, plain or HMAC, comes later): only to
            // choose what to drop, as a lossy network would.
            match wire::peek_unauthenticated(&bytes, self.cluster_id) {
                Ok(m) if self.faults.drops(network, m.node) => timeout = Duration::ZERO,
                _ => return Ok(Some(bytes)),
            }
        }
        Ok(None)
    }

    fn try_recv(&mut self) -> io::Result<Option<halcyon_membership::Arrived>> {
        let network = self.inner.network();
        for _ in 0..DROPS_PER_RECV_MAX {
            let Some(arrived) = self.inner.try_recv()? else {
                return Ok(None);
            };
            // As `recv`: read before authentication, only to choose what to drop.
            match wire::peek_unauthenticated(&arrived.bytes, self.cluster_id) {
                Ok(m) if self.faults.drops(network, m.node) => {}
                _ => return Ok(Some(arrived)),
            }
        }
        Ok(None)
    }
}
