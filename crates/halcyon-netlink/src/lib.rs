//! # Halcyon's one `NETLINK_ROUTE` client
//!
//! The lease guard deletes addresses on a fence, the ip resource adds, replaces, lists and
//! deletes them and reads interfaces, the lab adds and deletes addresses, samples them and
//! sets links up and down: all through this crate, in three layers.
//!
//! - [`wire`]: the messages, encoded into and decoded out of the caller's buffers. It
//!   allocates nothing, does no I/O, and gives a precise [`DecodeError`] or [`EncodeError`]
//!   for truncated or malformed input: no input makes it panic or loop without end.
//! - [`Socket`]: open, send, receive and request/answer exchanges with bounded waits (a
//!   receive timeout and a datagram limit per answer, [`SocketOptions`]), allocation-free:
//!   the caller passes the receive buffer; requests are encoded on the stack. This is what the
//!   guard's main loop uses.
//! - [`Client`]: a socket with its own buffer, and conveniences that allocate (dumps as
//!   `Vec`s of [`ReportedAddress`], [`Link`] with its name), for the resources and the lab.
//!
//! [`interface_index`] is the one way Halcyon finds an interface index by name
//! ([`Socket::interface_index`] on a socket of the calling thread's network namespace).
//!
//! ## Invariants
//! - Nothing in [`wire`] or [`Socket`] allocates; only [`Client`], [`interface_index`] and
//!   the `Display` of an [`Error`] (the text of an errno) do.
//! - Every wait is bounded: each receive by the socket's receive timeout, each answer by its
//!   datagram limit.
//! - A socket belongs to the network namespace of the thread that opened it.

pub mod client;
pub mod socket;
pub mod wire;

pub use client::{
    Client, DUMP_ADDRESSES_MAX, Link, LinkChange, LinkEvents, RECEIVE_BUFFER_BYTES, ReportedAddress,
};
pub use socket::{Error, Socket, SocketOptions};
pub use wire::{
    AddressChange, AddressFamily, AddressHeader, AddressMessage, DecodeError, EncodeError,
    InterfaceAddress, LinkMessage,
};

/// The index of the interface called `name` in the calling thread's network namespace.
/// [`Error::NoSuchInterface`] when there is none; [`Error::Encode`] for a name the kernel
/// cannot have (empty, longer than 15 bytes, with a NUL).
pub fn interface_index(name: &str) -> Result<u32, Error> {
    Client::open()?.interface_index(name)
}

#[cfg(test)]
mod tests;
