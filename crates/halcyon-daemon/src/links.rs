//! The kernel's word on this node's own interfaces (SPEC 5: "do not wait for missed
//! heartbeats when the kernel already knows"). One thread reads the kernel's link
//! announcements (netlink `RTNLGRP_LINK`) and tells the heartbeat thread the moment the
//! primary interface of one of the node's IP networks loses or regains its carrier. The
//! detector then takes every path on that network down at once (`local_link`), this node's
//! adapter report names its own adapter, and the coordinator plans `swap_adapter` or
//! `network_down` without waiting for the peers to miss `sensitivity` heartbeats.
//!
//! [`Carriers`] is the pure part (which interface is whose, what changed); [`LinkWatch`]
//! is the thread. Without netlink (no permission, another platform) the node runs as
//! before, on missed heartbeats alone, and says so in its log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use halcyon_config::{Cluster, Interface, NetworkKind};
use halcyon_membership::LinkControl;
use halcyon_netlink::{Client, Error, Link, LinkChange, LinkEvents};

/// Longest wait for one announcement: how often the thread looks at its stop flag and
/// tries again to find an interface it could not find yet.
const RECEIVE_TIMEOUT: Duration = Duration::from_millis(500);
/// Pause after an unexpected netlink error before reading again (bounded retries, no spin).
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// An interface carries traffic when it is administratively up with a carrier.
pub fn usable(link: &Link) -> bool {
    link.is_up() && link.has_carrier()
}

/// The primary interface of one of the node's IP networks.
#[derive(Clone, Debug)]
struct Primary {
    network: u32,
    network_name: String,
    interface: Interface,
    /// The kernel's index, once found.
    index: Option<u32>,
    /// Whether the heartbeat thread was last told that it has its carrier.
    up: bool,
}

/// Which interfaces the node watches and what the heartbeat thread was last told of each.
#[derive(Clone, Debug)]
pub struct Carriers {
    primaries: Vec<Primary>,
}

impl Carriers {
    /// The first non-standby interface of each IP network of node `node` (disk networks
    /// have no carrier to watch). All start as up, as the detector does.
    pub fn of(cluster: &Cluster, node: u32) -> Carriers {
        let mut primaries: Vec<Primary> = Vec::new();
        let Some(me) = cluster.nodes.iter().find(|n| n.number == node) else {
            return Carriers { primaries };
        };
        for network in cluster
            .networks
            .iter()
            .filter(|n| n.kind == NetworkKind::Ip)
        {
            let primary = me
                .interfaces
                .iter()
                .find(|i| i.network == network.name && !i.standby);
            if let Some(interface) = primary {
                primaries.push(Primary {
                    network: network.number,
                    network_name: network.name.to_string(),
                    interface: interface.clone(),
                    index: None,
                    up: true,
                });
            }
        }
        Carriers { primaries }
    }

    pub fn is_empty(&self) -> bool {
        self.primaries.is_empty()
    }

    /// From now on watch `wanted`'s primaries (a running cluster's `halcyon apply` added or
    /// removed an ip network): one that stays (the same network and interface) keeps its
    /// index and what the heartbeat thread was last told of it; a new one starts as at
    /// start (up, its index to be found); one left out is no longer watched.
    pub fn follow(&mut self, wanted: Carriers) {
        let mut old = std::mem::take(&mut self.primaries);
        self.primaries = wanted
            .primaries
            .into_iter()
            .map(|new| {
                match old
                    .iter()
                    .position(|p| p.network == new.network && p.interface == new.interface)
                {
                    Some(i) => old.swap_remove(i),
                    None => new,
                }
            })
            .collect();
    }

    /// Interfaces whose index is not known yet.
    fn unresolved(&mut self) -> impl Iterator<Item = &mut Primary> {
        self.primaries.iter_mut().filter(|p| p.index.is_none())
    }

    /// Records that the interface with this index is now usable (`usable`) or not, and
    /// returns the `(network, up)` the heartbeat thread must be told, if it changed.
    pub fn observe(&mut self, index: u32, usable: bool) -> Option<(u32, bool)> {
        let primary = self
            .primaries
            .iter_mut()
            .find(|p| p.index == Some(index) && p.up != usable)?;
        primary.up = usable;
        Some((primary.network, usable))
    }

    /// The kernel's announcement `change`, as [`Carriers::observe`]: a removed interface
    /// has no carrier, and its index is forgotten (a new one of the same name gets
    /// another).
    pub fn announce(&mut self, change: &LinkChange) -> Option<(u32, bool)> {
        let told = self.observe(change.link.index, !change.removed && usable(&change.link));
        if change.removed {
            for p in self
                .primaries
                .iter_mut()
                .filter(|p| p.index == Some(change.link.index))
            {
                p.index = None;
            }
        }
        told
    }

    /// A telling that could not be delivered (the heartbeat thread's queue was full): the
    /// next look must tell it again.
    fn undo(&mut self, network: u32, up: bool) {
        if let Some(p) = self.primaries.iter_mut().find(|p| p.network == network) {
            p.up = !up;
        }
    }

    fn describe(&self, network: u32) -> String {
        self.primaries
            .iter()
            .find(|p| p.network == network)
            .map(|p| {
                let device = p.interface.device.clone().unwrap_or_else(|| {
                    p.interface
                        .address
                        .map_or_else(String::new, |a| format!("the interface with {a}"))
                });
                format!("{device} ({})", p.network_name)
            })
            .unwrap_or_default()
    }
}

/// The thread that feeds the detector from the kernel's link announcements.
pub struct LinkWatch {
    stop: Arc<AtomicBool>,
    /// The primaries to watch from the thread's next look ([`LinkWatch::follow`]).
    wanted: Arc<std::sync::Mutex<Option<Carriers>>>,
    thread: Option<JoinHandle<()>>,
}

impl LinkWatch {
    /// Starts watching node `node`'s primary interfaces, or returns `None` (logged) when
    /// there is nothing to watch or the kernel cannot be asked.
    pub fn start(cluster: &Cluster, node: u32, control: LinkControl) -> Option<LinkWatch> {
        let carriers = Carriers::of(cluster, node);
        if carriers.is_empty() {
            return None;
        }
        let opened =
            LinkEvents::open(RECEIVE_TIMEOUT).and_then(|events| Ok((events, Client::open()?)));
        let (events, client) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                tracing::warn!(
                    "cannot read the kernel's link announcements ({e}): a lost carrier is seen \
                     only from missed heartbeats"
                );
                return None;
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let wanted = Arc::new(std::sync::Mutex::new(None));
        let thread_wanted = Arc::clone(&wanted);
        let thread = std::thread::Builder::new()
            .name("halcyon-links".to_owned())
            .spawn(move || {
                Watcher {
                    carriers,
                    wanted: thread_wanted,
                    events,
                    client,
                    control,
                }
                .run(&thread_stop)
            });
        match thread {
            Ok(thread) => Some(LinkWatch {
                stop,
                wanted,
                thread: Some(thread),
            }),
            Err(e) => {
                tracing::warn!(
                    "cannot start the link thread ({e}): a lost carrier is seen only from missed heartbeats"
                );
                None
            }
        }
    }

    /// From the thread's next look on (within one receive timeout), watch the primaries of
    /// node `node` in `cluster` (a running cluster's `halcyon apply` added or removed an ip
    /// network), as [`Carriers::follow`] says.
    pub fn follow(&self, cluster: &Cluster, node: u32) {
        *self.wanted.lock().expect("not poisoned") = Some(Carriers::of(cluster, node));
    }

    /// Stops the thread (within one receive timeout) and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Watcher {
    carriers: Carriers,
    wanted: Arc<std::sync::Mutex<Option<Carriers>>>,
    events: LinkEvents,
    client: Client,
    control: LinkControl,
}

impl Watcher {
    fn run(mut self, stop: &AtomicBool) {
        self.resolve();
        while !stop.load(Ordering::Relaxed) {
            let wanted = self.wanted.lock().expect("not poisoned").take();
            if let Some(wanted) = wanted {
                self.carriers.follow(wanted);
                self.resolve();
            }
            match self.events.receive() {
                Ok(changes) => {
                    for change in &changes {
                        if let Some((network, up)) = self.carriers.announce(change) {
                            self.tell(network, up);
                        }
                    }
                }
                Err(Error::TimedOut { .. }) => self.resolve(),
                // Announcements were lost: read every watched interface again.
                Err(Error::System { code, .. }) if code == libc::ENOBUFS => self.read_all(),
                Err(e) => {
                    tracing::warn!("reading the kernel's link announcements: {e}");
                    std::thread::sleep(ERROR_PAUSE);
                    self.read_all();
                }
            }
        }
    }

    /// Finds the interfaces not found yet and reads their state.
    fn resolve(&mut self) {
        let mut found = Vec::new();
        for p in self.carriers.unresolved() {
            if let Ok(index) =
                halcyon_resources::ip::interface_index_of(&p.interface, &mut self.client)
            {
                p.index = Some(index);
                found.push(index);
            }
        }
        for index in found {
            self.read(index);
        }
    }

    fn read_all(&mut self) {
        let indexes: Vec<u32> = self
            .carriers
            .primaries
            .iter()
            .filter_map(|p| p.index)
            .collect();
        for index in indexes {
            self.read(index);
        }
    }

    fn read(&mut self, index: u32) {
        let usable = self.client.link(index).is_ok_and(|link| usable(&link));
        if let Some((network, up)) = self.carriers.observe(index, usable) {
            self.tell(network, up);
        }
    }

    fn tell(&mut self, network: u32, up: bool) {
        let what = self.carriers.describe(network);
        if up {
            tracing::info!("{what} has its carrier again: its paths come up as they are heard");
        } else {
            tracing::warn!(
                "{what} lost its carrier: its paths are down now, without waiting for missed heartbeats"
            );
        }
        if let Err(e) = self.control.local_link(network, up) {
            tracing::warn!("the heartbeat thread was not told of {what}: {e}");
            self.carriers.undo(network, up);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use halcyon_netlink::wire::{IFF_LOWER_UP, IFF_UP};

    /// n1 with eth1 (and a standby eth1s) on net1 and eth2 on net2; n2 and n3 on both.
    fn cluster() -> Cluster {
        use halcyon_testkit::config::{ClusterConfig, Node};
        let a = |i| std::net::Ipv4Addr::new(198, 18, 1, i);
        let b = |i| std::net::Ipv4Addr::new(198, 18, 2, i);
        let config = ClusterConfig::new("links", 1, 7000)
            .ip_network("net1", &["198.18.1.0/24"])
            .ip_network("net2", &["198.18.2.0/24"])
            .node(
                Node::new("n1", 1)
                    .interface_on("net1", a(1), "eth1")
                    .standby_interface("net1", a(11), "eth1s")
                    .interface_on("net2", b(1), "eth2"),
            )
            .node(
                Node::new("n2", 2)
                    .interface_on("net1", a(2), "eth1")
                    .interface_on("net2", b(2), "eth2"),
            )
            .node(
                Node::new("n3", 3)
                    .interface_on("net1", a(3), "eth1")
                    .interface_on("net2", b(3), "eth2"),
            );
        let text = config.cluster_toml();
        halcyon_config::load_texts(&[("cluster.toml", text.as_str())])
            .unwrap()
            .cluster
    }

    fn link(index: u32, flags: u32) -> LinkChange {
        LinkChange {
            link: Link {
                index,
                name: format!("eth{index}"),
                flags,
                hardware_address: Vec::new(),
            },
            removed: false,
        }
    }

    #[test]
    fn a_primary_losing_its_carrier_is_told_once_and_its_return_once() {
        let mut carriers = Carriers::of(&cluster(), 1);
        // The primaries only (not the standby), one per network.
        let watched: Vec<_> = carriers
            .primaries
            .iter()
            .map(|p| p.interface.device.clone())
            .collect();
        assert_eq!(watched, [Some("eth1".to_owned()), Some("eth2".to_owned())]);
        let network = carriers.primaries[0].network;
        carriers.primaries[0].index = Some(7);
        // Up as assumed: nothing to tell.
        assert_eq!(carriers.announce(&link(7, IFF_UP | IFF_LOWER_UP)), None);
        // Carrier lost (still administratively up): down, once.
        assert_eq!(carriers.announce(&link(7, IFF_UP)), Some((network, false)));
        assert_eq!(carriers.announce(&link(7, IFF_UP)), None);
        // Another interface changes nothing here.
        assert_eq!(carriers.announce(&link(8, 0)), None);
        // Back: up, once.
        assert_eq!(
            carriers.announce(&link(7, IFF_UP | IFF_LOWER_UP)),
            Some((network, true))
        );
        // Set administratively down: no carrier for traffic either.
        assert_eq!(
            carriers.announce(&link(7, IFF_LOWER_UP)),
            Some((network, false))
        );
    }

    #[test]
    fn a_removed_primary_is_down_and_found_again_by_a_new_index() {
        let mut carriers = Carriers::of(&cluster(), 1);
        let network = carriers.primaries[0].network;
        carriers.primaries[0].index = Some(7);
        let mut gone = link(7, IFF_UP | IFF_LOWER_UP);
        gone.removed = true;
        assert_eq!(carriers.announce(&gone), Some((network, false)));
        assert_eq!(carriers.primaries[0].index, None, "found again by name");
        carriers.primaries[0].index = Some(9);
        assert_eq!(carriers.observe(9, true), Some((network, true)));
    }

    #[test]
    fn a_network_added_is_watched_from_then_on_and_one_removed_no_longer() {
        let both = cluster();
        let mut only_first = both.clone();
        let second = only_first.networks.remove(1).name;
        for node in &mut only_first.nodes {
            node.interfaces.retain(|i| i.network != second);
        }
        let mut carriers = Carriers::of(&only_first, 1);
        assert_eq!(carriers.primaries.len(), 1);
        carriers.primaries[0].index = Some(7);
        assert_eq!(carriers.observe(7, false), Some((1, false)));
        // The second network added: watched, up as assumed, its index to be found; the
        // first keeps its index and its state.
        carriers.follow(Carriers::of(&both, 1));
        let watched: Vec<_> = carriers
            .primaries
            .iter()
            .map(|p| (p.network, p.index, p.up))
            .collect();
        assert_eq!(watched, [(1, Some(7), false), (2, None, true)]);
        assert_eq!(carriers.unresolved().count(), 1);
        // Removed again: no longer watched, its announcements tell nothing.
        carriers.primaries[1].index = Some(8);
        carriers.follow(Carriers::of(&only_first, 1));
        assert_eq!(carriers.primaries.len(), 1);
        assert_eq!(carriers.observe(8, false), None);
        assert_eq!(carriers.observe(7, true), Some((1, true)));
    }

    #[test]
    fn an_undelivered_telling_is_told_again() {
        let mut carriers = Carriers::of(&cluster(), 1);
        let network = carriers.primaries[0].network;
        carriers.primaries[0].index = Some(7);
        assert_eq!(carriers.observe(7, false), Some((network, false)));
        carriers.undo(network, false);
        assert_eq!(carriers.observe(7, false), Some((network, false)));
    }
}
