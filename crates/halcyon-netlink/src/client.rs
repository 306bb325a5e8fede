//! Allocating conveniences over [`Socket`] for the resources and the lab: a socket with its
//! own receive buffer, dumps returned as `Vec`s of owned messages. Everything here is the
//! allocation-free socket underneath; only the buffer and the results are on the heap.

use std::fmt;
use std::net::IpAddr;

use crate::socket::{Error, Socket, SocketOptions};
use crate::wire::{
    AddressChange, AddressFamily, AddressHeader, AddressMessage, InterfaceAddress, LinkMessage,
};

/// The receive buffer of a [`Client`]: a dump datagram from the kernel is at most 32 KiB.
pub const RECEIVE_BUFFER_BYTES: usize = 64 * 1024;
/// Most addresses one dump may return (a host has far fewer).
pub const DUMP_ADDRESSES_MAX: usize = 100_000;

/// An address as the kernel reported it: the whole message, so it can be deleted exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportedAddress {
    header: AddressHeader,
    /// Well-formed attributes (checked when the message was decoded).
    attributes: Vec<u8>,
}

impl ReportedAddress {
    pub fn from_message(message: &AddressMessage<'_>) -> Self {
        ReportedAddress {
            header: message.header,
            attributes: message.attribute_bytes().to_vec(),
        }
    }

    /// The message again, borrowed.
    pub fn message(&self) -> AddressMessage<'_> {
        AddressMessage {
            header: self.header,
            attributes: &self.attributes,
        }
    }

    pub fn header(&self) -> AddressHeader {
        self.header
    }

    pub fn interface_index(&self) -> u32 {
        self.header.interface_index
    }

    /// See [`AddressMessage::address`].
    pub fn address(&self) -> Option<IpAddr> {
        self.message().address()
    }

    /// See [`AddressMessage::all_flags`].
    pub fn all_flags(&self) -> u32 {
        self.message().all_flags()
    }
}

/// An interface as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `IFF_*` flags.
    pub flags: u32,
    pub hardware_address: Vec<u8>,
}

impl Link {
    pub fn from_message(link: &LinkMessage<'_>) -> Link {
        Link {
            index: link.index,
            name: String::from_utf8_lossy(link.name().unwrap_or_default()).into_owned(),
            flags: link.flags,
            hardware_address: link.hardware_address().unwrap_or_default().to_vec(),
        }
    }

    pub fn is_up(&self) -> bool {
        self.flags & crate::wire::IFF_UP != 0
    }

    pub fn has_carrier(&self) -> bool {
        self.flags & crate::wire::IFF_LOWER_UP != 0
    }

    /// The six-byte Ethernet address, if the interface has one.
    pub fn mac(&self) -> Option<[u8; 6]> {
        self.hardware_address.as_slice().try_into().ok()
    }
}

/// A [`Socket`] with its own receive buffer of [`RECEIVE_BUFFER_BYTES`].
pub struct Client {
    socket: Socket,
    buffer: Vec<u8>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client in the calling thread's network namespace, with [`SocketOptions::DEFAULT`].
    pub fn open() -> Result<Client, Error> {
        Client::open_with(SocketOptions::DEFAULT)
    }

    pub fn open_with(options: SocketOptions) -> Result<Client, Error> {
        Ok(Client {
            socket: Socket::open(options)?,
            buffer: vec![0; RECEIVE_BUFFER_BYTES],
        })
    }

    /// Every address of `family`, as the kernel reported it.
    pub fn addresses(&mut self, family: AddressFamily) -> Result<Vec<ReportedAddress>, Error> {
        let mut found = Vec::new();
        self.socket
            .dump_addresses(family, &mut self.buffer, |message| {
                if found.len() == DUMP_ADDRESSES_MAX {
                    return Err(Error::AnswerTooLong {
                        messages: DUMP_ADDRESSES_MAX,
                    });
                }
                found.push(ReportedAddress::from_message(&message));
                Ok(())
            })?;
        Ok(found)
    }

    /// The interface with this index.
    pub fn link(&mut self, index: u32) -> Result<Link, Error> {
        self.socket
            .link(index, &mut self.buffer, Link::from_message)
    }

    /// The index of the interface called `name` ([`Socket::interface_index`]).
    pub fn interface_index(&mut self, name: &str) -> Result<u32, Error> {
        self.socket.interface_index(name, &mut self.buffer)
    }

    /// Adds an address; fails with `Refused { code: EEXIST }` when it is there already.
    pub fn add_address(&mut self, address: &InterfaceAddress) -> Result<(), Error> {
        self.socket
            .change_address(AddressChange::Add, address, &mut self.buffer)
    }

    /// Adds an address; already present is fine.
    pub fn replace_address(&mut self, address: &InterfaceAddress) -> Result<(), Error> {
        self.socket
            .change_address(AddressChange::Replace, address, &mut self.buffer)
    }

    pub fn delete_address(&mut self, address: &InterfaceAddress) -> Result<(), Error> {
        self.socket
            .change_address(AddressChange::Delete, address, &mut self.buffer)
    }

    /// Deletes an address given as the kernel reported it.
    pub fn delete_reported(&mut self, address: &ReportedAddress) -> Result<(), Error> {
        self.socket
            .delete_reported(&address.message(), &mut self.buffer)
    }

    /// Sets the interface administratively up or down.
    pub fn set_link_up(&mut self, index: u32, up: bool) -> Result<(), Error> {
        self.socket.set_link_up(index, up, &mut self.buffer)
    }
}

/// One interface change the kernel announced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkChange {
    pub link: Link,
    /// `RTM_DELLINK`: the interface is gone.
    pub removed: bool,
}

/// The kernel's announcements of interface changes (`RTNLGRP_LINK`): carrier lost or
/// regained, set up or down, added or removed, as they happen. A burst the socket could not
/// hold is [`Error::System`] with `ENOBUFS`: the reader must then read the interfaces it
/// cares about again, since announcements were lost.
pub struct LinkEvents {
    socket: Socket,
    buffer: Vec<u8>,
}

impl fmt::Debug for LinkEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkEvents")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl LinkEvents {
    /// Subscribes in the calling thread's network namespace; each [`LinkEvents::receive`]
    /// waits at most `receive_timeout`.
    pub fn open(receive_timeout: std::time::Duration) -> Result<LinkEvents, Error> {
        let socket = Socket::open(SocketOptions {
            receive_timeout,
            ..SocketOptions::DEFAULT
        })?;
        socket.join_group(crate::wire::RTNLGRP_LINK)?;
        Ok(LinkEvents {
            socket,
            buffer: vec![0; RECEIVE_BUFFER_BYTES],
        })
    }

    /// The changes of the next announcement, in the kernel's order; [`Error::TimedOut`]
    /// when none came within the receive timeout.
    pub fn receive(&mut self) -> Result<Vec<LinkChange>, Error> {
        let datagram = self.socket.receive(&mut self.buffer)?;
        let mut changes = Vec::new();
        for message in crate::wire::messages(datagram) {
            let message = message?;
            if let crate::wire::Body::Link(link) = message.body()? {
                changes.push(LinkChange {
                    link: Link::from_message(&link),
                    removed: message.header.kind == crate::wire::RTM_DELLINK,
                });
            }
        }
        Ok(changes)
    }
}
