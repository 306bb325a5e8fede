//! Relocatable addresses (SPEC 9.1): added to the node's interface on the resource's network
//! through netlink, announced with gratuitous ARP (IPv4) or unsolicited neighbour
//! advertisements (IPv6), removed on release, and moved to a standby interface of the same
//! network by [`IpAddress::swap`] (local LAN failover, HACMP's swap_adapter).
//!
//! Before adding an IPv4 address the driver probes for it with ARP (sender 0.0.0.0, RFC 5227)
//! and refuses when another host answers: two hosts with one address is the split brain the
//! cluster exists to prevent, and the kernel would not notice it. For IPv6 the kernel's
//! duplicate address detection is that check: the address is added with DAD, the driver waits
//! until it is no longer tentative, and refuses (removing it) when DAD failed.
//!
//! Announcements: the first at once (it is on the failover's critical path), then
//! [`ANNOUNCE_REPEATS`] more [`ANNOUNCE_INTERVAL`] apart, and the same burst again
//! [`ANNOUNCE_SECOND_BURST_AFTER`] after the takeover (Linux ignores a second update of a
//! neighbour entry within about a second; keepalived's second burst fixes caches that missed
//! the first). The repeats are sent while the caller awaits [`Resource::exited`], which never
//! resolves for an address: this crate spawns no tasks.

use std::net::IpAddr;
use std::time::Duration;

use halcyon_config::{Interface, IpResource, Node, Subnet};
use tokio::time::Instant;

use crate::announce::{ArpSocket, NeighbourAdvertiser};
use halcyon_netlink::wire::{IFA_F_DADFAILED, IFA_F_TENTATIVE};
use halcyon_netlink::{AddressFamily, Client, InterfaceAddress, Link, ReportedAddress};

use crate::{BoxFuture, Health, PackageEnv, Resource, ResourceError, StopMode, StopReport};

/// How long an ARP probe waits for another host to answer before the address is added. A
/// live kernel answers an ARP request on its LAN within a millisecond (from its softirq,
/// whatever its load), so this covers a lost probe (the second goes out a quarter of the way
/// in) with room to spare. It is paid on every start, takeovers included: at 150 ms it was
/// most of what a lab takeover took beyond the lease arithmetic (issue 21). The probe is
/// defence in depth (a foreign host on the address, or a node whose guard failed to remove
/// it); the lease and the guard are the protection against two holders.
pub const PROBE_WAIT: Duration = Duration::from_millis(30);
/// Announcements after the first one, in each burst.
pub const ANNOUNCE_REPEATS: u32 = 5;
/// Time between announcements of a burst.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_millis(200);
/// When the second burst starts, after the takeover.
pub const ANNOUNCE_SECOND_BURST_AFTER: Duration = Duration::from_secs(5);
/// Longest wait for IPv6 duplicate address detection.
pub const DAD_WAIT: Duration = Duration::from_secs(5);
const DAD_POLL: Duration = Duration::from_millis(50);

/// Chooses the address a node uses among a resource's addresses (one per subnet in a
/// cross-subnet cluster): the only one, or the one whose subnet contains the node's own
/// stationary address on the network.
pub fn choose_address(addresses: &[Subnet], own: Option<IpAddr>) -> Result<Subnet, String> {
    match (addresses, own) {
        ([], _) => Err("no address configured".to_owned()),
        ([only], _) => Ok(*only),
        (_, Some(own)) => addresses
            .iter()
            .find(|a| a.contains(own))
            .copied()
            .ok_or_else(|| {
                format!(
                    "none of its addresses ({}) is in the subnet of this node's address {own}",
                    list(addresses)
                )
            }),
        (_, None) => Err(format!(
            "this node has no stationary address on the network to choose among {}",
            list(addresses)
        )),
    }
}

fn list(addresses: &[Subnet]) -> String {
    addresses
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where an interface is: its configured name, or the interface carrying its address.
#[derive(Clone, Debug, PartialEq, Eq)]
struct InterfaceSpec {
    device: Option<String>,
    address: Option<IpAddr>,
}

impl InterfaceSpec {
    fn of(interface: &Interface) -> Self {
        InterfaceSpec {
            device: interface.device.clone(),
            address: interface.address,
        }
    }

    fn describe(&self) -> String {
        match (&self.device, self.address) {
            (Some(d), _) => d.clone(),
            (None, Some(a)) => format!("the interface with {a}"),
            (None, None) => "an interface without name or address".to_owned(),
        }
    }

    /// The interface index, found by name or by the stationary address.
    fn resolve(&self, netlink: &mut Client) -> Result<u32, String> {
        if let Some(device) = &self.device {
            return netlink
                .interface_index(device)
                .map_err(|e| format!("interface {device}: {e}"));
        }
        let Some(address) = self.address else {
            return Err("the interface has neither a device name nor an address".to_owned());
        };
        let addresses = netlink
            .addresses(AddressFamily::All)
            .map_err(|e| format!("listing addresses: {e}"))?;
        addresses
            .iter()
            .find(|m| m.address() == Some(address))
            .map(|m| m.interface_index())
            .ok_or_else(|| format!("no interface has this node's address {address}"))
    }
}

/// The link with this index, if it is up with a carrier.
fn usable_link(netlink: &mut Client, index: u32) -> Option<Link> {
    netlink
        .link(index)
        .ok()
        .filter(|link| link.is_up() && link.has_carrier())
}

/// Whether a configured interface (found by name, else by its stationary address) is up
/// with a carrier, in this process's network namespace: what a standby must be to take
/// addresses over, and what the daemon reports for `fail_standby` / `join_standby`.
/// The kernel's index of a configured interface (by its device name, else by its stationary
/// address), with the reason when it cannot be found.
pub fn interface_index_of(interface: &Interface, netlink: &mut Client) -> Result<u32, String> {
    InterfaceSpec::of(interface).resolve(netlink)
}

pub fn interface_usable(interface: &Interface) -> bool {
    let Ok(mut netlink) = Client::open() else {
        return false;
    };
    InterfaceSpec::of(interface)
        .resolve(&mut netlink)
        .ok()
        .and_then(|index| usable_link(&mut netlink, index))
        .is_some()
}

/// The announcements still to send for an address that was just added.
struct Announcer {
    sender: Sender,
    address: IpAddr,
    started: Instant,
    /// Announcements sent so far (the first one included).
    sent: u32,
}

enum Sender {
    Arp(ArpSocket),
    NeighbourAdvertisement(NeighbourAdvertiser),
}

impl Announcer {
    const TOTAL: u32 = 2 * (1 + ANNOUNCE_REPEATS);

    /// When announcement number `n` (0-based) is due, after the takeover.
    fn offset(n: u32) -> Duration {
        let burst = 1 + ANNOUNCE_REPEATS;
        let within = ANNOUNCE_INTERVAL * (n % burst);
        if n < burst {
            within
        } else {
            ANNOUNCE_SECOND_BURST_AFTER + within
        }
    }

    fn next_due(&self) -> Option<Instant> {
        (self.sent < Self::TOTAL).then(|| self.started + Self::offset(self.sent))
    }

    fn send(&mut self) {
        let result = match (&self.sender, self.address) {
            (Sender::Arp(s), IpAddr::V4(a)) => s.announce(a),
            (Sender::NeighbourAdvertisement(s), IpAddr::V6(a)) => s.announce(a),
            _ => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(address = %self.address, "announcement failed: {e}");
        }
        self.sent += 1;
    }
}

/// A relocatable address on this node (SPEC 9.1).
pub struct IpAddress {
    config: IpResource,
    /// The address (with its prefix) this node uses.
    address: Subnet,
    primary: InterfaceSpec,
    standby: Vec<InterfaceSpec>,
    /// The interface the address is on, while started: (index, name).
    current: Option<(u32, String)>,
    announcer: Option<Announcer>,
    probe_wait: Duration,
}

impl IpAddress {
    /// The driver for `config` on `node`: the address for the node's subnet and the node's
    /// interfaces on the network.
    pub fn new(config: IpResource, node: &Node) -> Result<Self, ResourceError> {
        let what = format!(
            "ip {} on node {}",
            list(&config.addresses),
            node.name.as_str()
        );
        let network = config.network.as_str();
        let Some(primary) = node.interface_on(network) else {
            return Err(ResourceError::Config {
                what,
                reason: format!("the node has no interface on network {network}"),
            });
        };
        let address = choose_address(&config.addresses, primary.address)
            .map_err(|reason| ResourceError::Config { what, reason })?;
        Ok(IpAddress {
            primary: InterfaceSpec::of(primary),
            standby: node
                .standby_interfaces_on(network)
                .map(InterfaceSpec::of)
                .collect(),
            config,
            address,
            current: None,
            announcer: None,
            probe_wait: PROBE_WAIT,
        })
    }

    /// The address (and prefix) this node uses.
    pub fn address(&self) -> Subnet {
        self.address
    }

    pub fn network(&self) -> &str {
        self.config.network.as_str()
    }

    /// The interface carrying the address, while started.
    pub fn device(&self) -> Option<&str> {
        self.current.as_ref().map(|(_, name)| name.as_str())
    }

    /// Announcements sent since the last takeover or swap (for tests and logs).
    pub fn announcements_sent(&self) -> u32 {
        self.announcer.as_ref().map_or(0, |a| a.sent)
    }

    fn what(&self) -> String {
        format!("ip {}/{}", self.address.address, self.address.prefix)
    }

    fn io_error(&self, context: &str, e: impl std::fmt::Display) -> ResourceError {
        ResourceError::Io {
            what: self.what(),
            error: format!("{context}: {e}"),
        }
    }

    fn open(&self) -> Result<Client, ResourceError> {
        Client::open().map_err(|e| self.io_error("netlink socket", e))
    }

    /// The address's messages on this node (on any interface).
    fn find(&self, netlink: &mut Client) -> Result<Vec<ReportedAddress>, ResourceError> {
        let addresses = netlink
            .addresses(AddressFamily::All)
            .map_err(|e| self.io_error("listing addresses", e))?;
        Ok(addresses
            .into_iter()
            .filter(|m| m.address() == Some(self.address.address))
            .collect())
    }

    fn resolve(&self, netlink: &mut Client, spec: &InterfaceSpec) -> Result<u32, ResourceError> {
        spec.resolve(netlink)
            .map_err(|reason| ResourceError::Config {
                what: self.what(),
                reason: format!("network {}: {reason}", self.network()),
            })
    }

    /// Fails when another host answers for the address (IPv4: ARP probe). The wait for an
    /// answer blocks a thread: it runs on tokio's blocking pool, not on the runtime that
    /// starts the packages.
    async fn probe(
        &self,
        index: u32,
        mac: Option<[u8; 6]>,
        device: &str,
    ) -> Result<(), ResourceError> {
        let (IpAddr::V4(address), Some(mac)) = (self.address.address, mac) else {
            // IPv6: duplicate address detection after adding. No hardware address (a tunnel):
            // no ARP on this link.
            return Ok(());
        };
        let socket = ArpSocket::listener(index, mac).map_err(|e| self.io_error("ARP socket", e))?;
        let wait = self.probe_wait;
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The answer is handed over before the socket is closed: the close waits for the
        // kernel (see `ArpSocket`), and the start does not wait for it.
        tokio::task::spawn_blocking(move || {
            let _ = tx.send(socket.probe(address, wait));
            drop(socket);
        });
        let answer = rx
            .await
            .map_err(|e| self.io_error("ARP probe", e))?
            .map_err(|e| self.io_error("ARP probe", e))?;
        match answer {
            None => Ok(()),
            Some(other) => Err(ResourceError::Refused {
                what: self.what(),
                reason: format!(
                    "{address} already answers on {device} from {}: another host holds it; \
                     refusing to add it here",
                    format_mac(&other)
                ),
            }),
        }
    }

    /// Adds the address on interface `index` (idempotent), waits for IPv6 duplicate address
    /// detection, sends the first announcement and schedules the others.
    async fn add_and_announce(
        &mut self,
        netlink: &mut Client,
        index: u32,
        mac: Option<[u8; 6]>,
        device: &str,
    ) -> Result<(), ResourceError> {
        netlink
            .replace_address(&InterfaceAddress {
                interface_index: index,
                address: self.address.address,
                prefix_length: self.address.prefix,
            })
            .map_err(|e| self.io_error(&format!("adding it on {device}"), e))?;
        if self.address.address.is_ipv6() {
            self.wait_dad(netlink, device).await?;
        }
        self.current = Some((index, device.to_owned()));
        close_later(self.announcer.take());
        if let Some(mac) = mac {
            let sender = match self.address.address {
                IpAddr::V4(_) => ArpSocket::sender(index, mac).map(Sender::Arp),
                IpAddr::V6(_) => {
                    NeighbourAdvertiser::open(index, mac).map(Sender::NeighbourAdvertisement)
                }
            };
            match sender {
                Ok(sender) => {
                    let mut announcer = Announcer {
                        sender,
                        address: self.address.address,
                        started: Instant::now(),
                        sent: 0,
                    };
                    announcer.send();
                    self.announcer = Some(announcer);
                }
                Err(e) => tracing::warn!(address = %self.what(), "cannot announce: {e}"),
            }
        }
        tracing::info!(address = %self.what(), device, "address added");
        Ok(())
    }

    /// Waits (asynchronously, at most [`DAD_WAIT`]) until the kernel's duplicate address
    /// detection is done with the address.
    async fn wait_dad(&self, netlink: &mut Client, device: &str) -> Result<(), ResourceError> {
        let deadline = Instant::now() + DAD_WAIT;
        loop {
            let found = self.find(netlink)?;
            let flags = found.first().map_or(0, |m| m.all_flags());
            if flags & IFA_F_DADFAILED != 0 {
                for m in &found {
                    let _ = netlink.delete_reported(m);
                }
                return Err(ResourceError::Refused {
                    what: self.what(),
                    reason: format!(
                        "duplicate address detection failed on {device}: another host holds \
                         it; removed it here"
                    ),
                });
            }
            if flags & IFA_F_TENTATIVE == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ResourceError::Refused {
                    what: self.what(),
                    reason: format!("still tentative on {device} after {DAD_WAIT:?}"),
                });
            }
            tokio::time::sleep(DAD_POLL).await;
        }
    }

    fn link(&self, netlink: &mut Client, index: u32) -> Result<Link, ResourceError> {
        netlink
            .link(index)
            .map_err(|e| self.io_error(&format!("interface {index}"), e))
    }

    /// Whether the address is free for a package `halcyon apply` adds: on none of this
    /// node's interfaces, and (IPv4) no other host answers the ARP probe on the primary
    /// interface. Changes nothing.
    pub async fn check_free(&self) -> Result<(), ResourceError> {
        let mut netlink = self.open()?;
        let index = self.resolve(&mut netlink, &self.primary.clone())?;
        let link = self.link(&mut netlink, index)?;
        if let Some(here) = self.find(&mut netlink)?.first() {
            let device = self.link(&mut netlink, here.interface_index()).map_or_else(
                |_| format!("interface {}", here.interface_index()),
                |l| l.name,
            );
            return Err(ResourceError::Refused {
                what: self.what(),
                reason: format!(
                    "{} is already on {device} of this node",
                    self.address.address
                ),
            });
        }
        self.probe(index, link.mac(), &link.name).await
    }

    /// Acquires the address on the primary interface.
    async fn acquire(&mut self) -> Result<(), ResourceError> {
        let mut netlink = self.open()?;
        let index = self.resolve(&mut netlink, &self.primary.clone())?;
        let link = self.link(&mut netlink, index)?;
        let present = self.find(&mut netlink)?;
        if !present.iter().any(|m| m.interface_index() == index) {
            // On another of our interfaces (left by an earlier swap): ours, move it.
            for m in &present {
                netlink
                    .delete_reported(m)
                    .map_err(|e| self.io_error("removing it from another interface", e))?;
            }
            if present.is_empty() {
                self.probe(index, link.mac(), &link.name).await?;
            }
        }
        self.add_and_announce(&mut netlink, index, link.mac(), &link.name)
            .await
    }

    /// Removes the address from every interface of this node.
    fn release(&mut self) -> Result<(), ResourceError> {
        close_later(self.announcer.take());
        self.current = None;
        let mut netlink = self.open()?;
        for m in self.find(&mut netlink)? {
            match netlink.delete_reported(&m) {
                Ok(()) => {}
                // Gone meanwhile (the interface vanished with it): released.
                Err(halcyon_netlink::Error::Refused {
                    code: libc::EADDRNOTAVAIL,
                }) => {}
                Err(e) => return Err(self.io_error("removing it", e)),
            }
        }
        tracing::info!(address = %self.what(), "address removed");
        Ok(())
    }

    /// Local LAN failover: moves the address to interface `to_device` (remove from the old
    /// interface, add on the new one, announce). Returns what moved, e.g.
    /// `198.18.0.50/24: eth0 -> eth1`.
    pub async fn swap(&mut self, to_device: &str) -> Result<String, ResourceError> {
        let Some((_, from)) = self.current.clone() else {
            return Err(ResourceError::Refused {
                what: self.what(),
                reason: "not started here: nothing to swap".to_owned(),
            });
        };
        let mut netlink = self.open()?;
        let index = netlink
            .interface_index(to_device)
            .map_err(|e| self.io_error(&format!("interface {to_device}"), e))?;
        let link = self.link(&mut netlink, index)?;
        for m in self.find(&mut netlink)? {
            if m.interface_index() != index {
                netlink
                    .delete_reported(&m)
                    .map_err(|e| self.io_error(&format!("removing it from {from}"), e))?;
            }
        }
        self.add_and_announce(&mut netlink, index, link.mac(), &link.name)
            .await?;
        let moved = format!("{}: {from} -> {}", self.what(), link.name);
        tracing::info!("swap_adapter: {moved}");
        Ok(moved)
    }

    /// Where a swap ([`IpAddress::swap`]) moves the address: back to the primary interface
    /// when the address is on another one and the primary is up with a carrier (it has
    /// returned and the standby carrying the address failed), else the first standby
    /// interface of the network that is up with a carrier and is not the current one.
    pub fn swap_target(&self) -> Result<Option<String>, ResourceError> {
        let mut netlink = self.open()?;
        let current = self.current.as_ref().map(|(i, _)| *i);
        if let Ok(index) = self.primary.resolve(&mut netlink)
            && current.is_some_and(|c| c != index)
            && let Some(link) = usable_link(&mut netlink, index)
        {
            return Ok(Some(link.name));
        }
        for spec in &self.standby {
            let Ok(index) = spec.resolve(&mut netlink) else {
                tracing::warn!(standby = %spec.describe(), "standby interface not found");
                continue;
            };
            if Some(index) == current {
                continue;
            }
            if let Some(link) = usable_link(&mut netlink, index) {
                return Ok(Some(link.name));
            }
        }
        Ok(None)
    }

    /// Whether the address is configured on its interface.
    fn configured(&self) -> Result<bool, ResourceError> {
        let Some((index, _)) = self.current else {
            return Ok(false);
        };
        let mut netlink = self.open()?;
        Ok(self
            .find(&mut netlink)?
            .iter()
            .any(|m| m.interface_index() == index))
    }
}

/// Closes an announcer's socket on tokio's blocking pool when there is a runtime (closing an
/// ARP socket waits for the kernel, see `ArpSocket`: not on a thread that runs tasks), else
/// here.
fn close_later(announcer: Option<Announcer>) {
    let Some(announcer) = announcer else {
        return;
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(move || drop(announcer));
        }
        Err(_) => drop(announcer),
    }
}

fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Resource for IpAddress {
    fn describe(&self) -> String {
        self.what()
    }

    fn start<'a>(&'a mut self, _env: &'a PackageEnv) -> BoxFuture<'a, Result<(), ResourceError>> {
        Box::pin(self.acquire())
    }

    fn stop<'a>(
        &'a mut self,
        _env: &'a PackageEnv,
        _mode: StopMode,
    ) -> BoxFuture<'a, Result<StopReport, ResourceError>> {
        Box::pin(async move { self.release().map(|()| StopReport::default()) })
    }

    fn check(&mut self) -> Health {
        let Some((_, device)) = self.current.clone() else {
            return Health::Stopped;
        };
        match self.configured() {
            Ok(true) => Health::Running,
            Ok(false) => Health::Failed(format!("{} is no longer on {device}", self.what())),
            Err(e) => Health::Failed(e.to_string()),
        }
    }

    /// Sends the pending announcements at their times, then pends forever: an address never
    /// exits. Cancel-safe: progress is kept in `self` after every announcement.
    fn exited(&mut self) -> BoxFuture<'_, String> {
        Box::pin(async move {
            while let Some(due) = self.announcer.as_ref().and_then(|a| a.next_due()) {
                tokio::time::sleep_until(due).await;
                if let Some(a) = self.announcer.as_mut() {
                    a.send();
                }
            }
            std::future::pending().await
        })
    }

    fn as_ip_address(&mut self) -> Option<&mut IpAddress> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(s: &str) -> Subnet {
        let (a, p) = s.split_once('/').unwrap();
        Subnet {
            address: a.parse().unwrap(),
            prefix: p.parse().unwrap(),
        }
    }

    #[test]
    fn a_cross_subnet_resource_uses_the_address_of_the_nodes_subnet() {
        let addresses = [subnet("198.18.1.50/24"), subnet("198.18.2.50/24")];
        assert_eq!(
            choose_address(&addresses, Some("198.18.2.7".parse().unwrap())),
            Ok(subnet("198.18.2.50/24"))
        );
        assert_eq!(
            choose_address(&addresses, Some("198.18.1.7".parse().unwrap())),
            Ok(subnet("198.18.1.50/24"))
        );
        let e = choose_address(&addresses, Some("198.18.3.7".parse().unwrap())).unwrap_err();
        assert_eq!(
            e,
            "none of its addresses (198.18.1.50/24, 198.18.2.50/24) is in the subnet of this \
             node's address 198.18.3.7"
        );
        assert!(choose_address(&addresses, None).is_err());
        // One address: used whatever the node's subnet (IPAT via aliases often puts service
        // addresses in a subnet of their own).
        assert_eq!(
            choose_address(&addresses[..1], Some("198.18.9.9".parse().unwrap())),
            Ok(subnet("198.18.1.50/24"))
        );
    }

    #[test]
    fn announcements_come_in_two_bursts() {
        let offsets: Vec<u64> = (0..Announcer::TOTAL)
            .map(|n| Announcer::offset(n).as_millis() as u64)
            .collect();
        assert_eq!(
            offsets,
            [
                0, 200, 400, 600, 800, 1000, 5000, 5200, 5400, 5600, 5800, 6000
            ]
        );
    }
}
