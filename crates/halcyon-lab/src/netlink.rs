//! The lab's view of `halcyon-netlink`: a [`RouteSocket`] that can be opened inside a network
//! namespace and speaks in the lab's IPv4 terms, with `io::Error`s for [`LabError`]'s
//! context. Every request is `halcyon-netlink`'s [`Client`] (bounded waits, precise errors).
//!
//! A netlink socket belongs to the network namespace it was created in, whatever thread uses it
//! later; [`RouteSocket::open_in`] creates one inside a namespace (on a short-lived thread that
//! enters it), after which the checker can sample every host from one thread with no `ip`
//! process per sample.
//!
//! [`LabError`]: crate::LabError

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use halcyon_netlink::{AddressFamily, Client};

use crate::netns;

/// One IPv4 address configured on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub interface_index: u32,
    pub address: Ipv4Addr,
    pub prefix_length: u8,
}

impl InterfaceAddress {
    fn to_netlink(self) -> halcyon_netlink::InterfaceAddress {
        halcyon_netlink::InterfaceAddress {
            interface_index: self.interface_index,
            address: IpAddr::V4(self.address),
            prefix_length: self.prefix_length,
        }
    }
}

/// A NETLINK_ROUTE socket bound to the network namespace it was opened in.
#[derive(Debug)]
pub struct RouteSocket {
    client: Client,
}

impl RouteSocket {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> io::Result<RouteSocket> {
        Ok(RouteSocket {
            client: Client::open()?,
        })
    }

    /// A socket in the network namespace named by `netns_path` (e.g. `/run/netns/NAME`).
    pub fn open_in(netns_path: &Path) -> io::Result<RouteSocket> {
        netns::in_namespace(netns_path, RouteSocket::open)?
    }

    /// Every IPv4 address configured in the namespace (RTM_GETADDR dump).
    pub fn ipv4_addresses(&mut self) -> io::Result<Vec<InterfaceAddress>> {
        Ok(self
            .client
            .addresses(AddressFamily::Ipv4)?
            .iter()
            .filter_map(|entry| match entry.address()? {
                IpAddr::V4(address) => Some(InterfaceAddress {
                    interface_index: entry.interface_index(),
                    address,
                    prefix_length: entry.header().prefix_length,
                }),
                IpAddr::V6(_) => None,
            })
            .collect())
    }

    /// Adds `address/prefix_length` to the interface (like `ip addr add`: EEXIST when present).
    pub fn add_address(
        &mut self,
        interface_index: u32,
        address: Ipv4Addr,
        prefix_length: u8,
    ) -> io::Result<()> {
        let address = InterfaceAddress {
            interface_index,
            address,
            prefix_length,
        };
        Ok(self.client.add_address(&address.to_netlink())?)
    }

    /// Removes `address/prefix_length` from the interface (like `ip addr del`).
    pub fn delete_address(
        &mut self,
        interface_index: u32,
        address: Ipv4Addr,
        prefix_length: u8,
    ) -> io::Result<()> {
        let address = InterfaceAddress {
            interface_index,
            address,
            prefix_length,
        };
        Ok(self.client.delete_address(&address.to_netlink())?)
    }

    /// Sets the interface administratively up or down (like `ip link set dev X up|down`).
    pub fn set_link_up(&mut self, interface_index: u32, up: bool) -> io::Result<()> {
        Ok(self.client.set_link_up(interface_index, up)?)
    }

    /// The index of the interface called `name` in this socket's namespace.
    pub fn link_index(&mut self, name: &str) -> io::Result<u32> {
        Ok(self.client.interface_index(name)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_address_is_dumped() {
        // Works unprivileged: every namespace has 127.0.0.1 on lo once lo is up; in a fresh
        // namespace without lo up the dump is simply empty, so only the call is asserted.
        let mut socket = RouteSocket::open().expect("netlink socket");
        let addresses = socket.ipv4_addresses().expect("dump");
        assert!(addresses.iter().all(|entry| entry.prefix_length <= 32));
    }

    #[test]
    fn an_unknown_link_is_not_found() {
        let mut socket = RouteSocket::open().expect("netlink socket");
        let error = socket.link_index("hcnone0").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        let index = socket.link_index("lo").expect("lo");
        assert_eq!(Ok(index), halcyon_netlink::interface_index("lo"));
    }
}
