//! A `NETLINK_ROUTE` socket with bounded waits, allocation-free: every call takes the
//! caller's receive buffer, requests are encoded on the stack.
//!
//! A socket belongs to the network namespace of the thread that opened it, whichever thread
//! uses it later. Every wait is bounded: each receive by [`SocketOptions::receive_timeout`],
//! a whole answer by [`SocketOptions::datagrams_per_answer_max`] datagrams (an interrupted
//! receive counts as one), so a request returns within `timeout x datagrams` at the very
//! worst, and in one round trip normally.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::wire::{
    self, AddressChange, AddressFamily, AddressMessage, Body, DecodeError, EncodeError, Header,
    InterfaceAddress, LinkMessage, Message, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, REQUEST_BYTES_MAX,
};

/// Limits of one socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketOptions {
    /// Longest wait for one datagram (at least 1 µs: a zero would mean "forever" to the
    /// kernel, so it is raised).
    pub receive_timeout: Duration,
    /// Most datagrams read while waiting for the end of one answer.
    pub datagrams_per_answer_max: usize,
}

impl SocketOptions {
    /// For tools and resources: a dump of a host's addresses takes one or two datagrams.
    pub const DEFAULT: SocketOptions = SocketOptions {
        receive_timeout: Duration::from_secs(2),
        datagrams_per_answer_max: 1024,
    };
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions::DEFAULT
    }
}

/// What went wrong with a request. `Copy` and allocation-free (only `Display` allocates, for
/// the text of an errno); [`Error::errno`] gives one errno for every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A system call failed.
    #[error("{call}(2): {}", os_text(.code))]
    System { call: &'static str, code: i32 },
    /// The kernel answered the request with this (positive) errno.
    #[error("the kernel refused the request: {}", os_text(.code))]
    Refused { code: i32 },
    /// No datagram arrived within the receive timeout.
    #[error("no answer from the kernel within {timeout:?}")]
    TimedOut { timeout: Duration },
    /// A datagram of ours was longer than the caller's buffer.
    #[error("a datagram of {length} bytes does not fit the {capacity}-byte buffer")]
    DatagramTruncated { length: usize, capacity: usize },
    /// Neither the acknowledgement nor the end of the dump came within the datagram limit.
    #[error("the answer did not end within {datagrams} datagrams")]
    AnswerUnfinished { datagrams: usize },
    /// A dump had more messages than the caller accepts.
    #[error("the answer has more than {messages} messages")]
    AnswerTooLong { messages: usize },
    #[error("malformed answer: {0}")]
    Decode(#[from] DecodeError),
    #[error("cannot encode the request: {0}")]
    Encode(#[from] EncodeError),
    /// The kernel knows no interface of that name or index (ENODEV) or sent none.
    #[error("no such interface")]
    NoSuchInterface,
}

fn os_text(code: &i32) -> io::Error {
    io::Error::from_raw_os_error(*code)
}

impl Error {
    /// One errno for every case (for logs that must not allocate): the system call's or the
    /// kernel's own, else the closest: EAGAIN (timed out), EMSGSIZE (truncated), ETIMEDOUT
    /// (unfinished answer), EOVERFLOW (too long), EBADMSG (malformed), EINVAL (cannot encode),
    /// ENODEV (no such interface).
    pub fn errno(&self) -> i32 {
        match *self {
            Error::System { code, .. } | Error::Refused { code } => code,
            Error::TimedOut { .. } => libc::EAGAIN,
            Error::DatagramTruncated { .. } => libc::EMSGSIZE,
            Error::AnswerUnfinished { .. } => libc::ETIMEDOUT,
            Error::AnswerTooLong { .. } => libc::EOVERFLOW,
            Error::Decode(_) => libc::EBADMSG,
            Error::Encode(_) => libc::EINVAL,
            Error::NoSuchInterface => libc::ENODEV,
        }
    }
}

impl From<Error> for io::Error {
    fn from(error: Error) -> io::Error {
        match error {
            Error::System { code, .. } | Error::Refused { code } => {
                io::Error::from_raw_os_error(code)
            }
            Error::TimedOut { .. } => io::Error::new(io::ErrorKind::TimedOut, error),
            Error::NoSuchInterface => io::Error::new(io::ErrorKind::NotFound, error),
            Error::Encode(_) => io::Error::new(io::ErrorKind::InvalidInput, error),
            Error::DatagramTruncated { .. }
            | Error::AnswerUnfinished { .. }
            | Error::AnswerTooLong { .. }
            | Error::Decode(_) => io::Error::new(io::ErrorKind::InvalidData, error),
        }
    }
}

fn last_errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn system(call: &'static str) -> Error {
    Error::System {
        call,
        code: last_errno(),
    }
}

fn timeval(timeout: Duration) -> libc::timeval {
    let timeout = timeout.max(Duration::from_micros(1));
    libc::timeval {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros() as i32),
    }
}

/// A `NETLINK_ROUTE` socket in the network namespace it was opened in.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
    sequence: u32,
    options: SocketOptions,
}

impl Socket {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open(options: SocketOptions) -> Result<Socket, Error> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(system("socket"));
        }
        // SAFETY: `raw` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let timeout = timeval(options.receive_timeout);
        // SAFETY: valid descriptor, pointer and length of a live timeval.
        let result = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if result != 0 {
            return Err(system("setsockopt"));
        }
        // SAFETY: a zeroed sockaddr_nl asks the kernel to assign the port id.
        let mut local: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        local.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: valid descriptor, pointer and length of a live sockaddr_nl.
        let result = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&local as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if result != 0 {
            return Err(system("bind"));
        }
        Ok(Socket {
            fd,
            sequence: 0,
            options,
        })
    }

    pub fn options(&self) -> SocketOptions {
        self.options
    }

    /// Joins the multicast group `group` (`RTNLGRP_*`, e.g. [`crate::wire::RTNLGRP_LINK`]):
    /// the kernel then sends this socket a notification for every change of that kind,
    /// read with [`Socket::receive`].
    pub fn join_group(&self, group: u32) -> Result<(), Error> {
        // SAFETY: valid descriptor, pointer and length of a live u32.
        let result = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_NETLINK,
                libc::NETLINK_ADD_MEMBERSHIP,
                (&group as *const u32).cast(),
                std::mem::size_of::<u32>() as libc::socklen_t,
            )
        };
        if result != 0 {
            return Err(system("setsockopt(NETLINK_ADD_MEMBERSHIP)"));
        }
        Ok(())
    }

    /// The sequence number for the next request (never 0, which the kernel uses for
    /// notifications).
    pub fn next_sequence(&mut self) -> u32 {
        self.sequence = self.sequence.wrapping_add(1).max(1);
        self.sequence
    }

    /// Sends one encoded request to the kernel.
    pub fn send(&self, request: &[u8]) -> Result<(), Error> {
        // SAFETY: a zeroed sockaddr_nl with nl_pid 0 addresses the kernel.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: valid descriptor; pointers and lengths describe live buffers.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                request.as_ptr().cast(),
                request.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(system("sendto"));
        }
        Ok(())
    }

    /// Receives one datagram into `buffer`, waiting at most the receive timeout; returns its
    /// full length, which is larger than `buffer` when the datagram was truncated.
    fn receive_length(&self, buffer: &mut [u8]) -> Result<usize, Error> {
        // SAFETY: valid descriptor; the buffer is live and its length is passed. MSG_TRUNC
        // makes recv(2) return the datagram's real length.
        let received = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                libc::MSG_TRUNC,
            )
        };
        if received < 0 {
            let code = last_errno();
            if code == libc::EAGAIN || code == libc::EWOULDBLOCK {
                return Err(Error::TimedOut {
                    timeout: self.options.receive_timeout,
                });
            }
            return Err(Error::System { call: "recv", code });
        }
        Ok(received as usize)
    }

    /// Receives one datagram into `buffer`, waiting at most the receive timeout.
    pub fn receive<'b>(&self, buffer: &'b mut [u8]) -> Result<&'b [u8], Error> {
        let length = self.receive_length(buffer)?;
        if length > buffer.len() {
            return Err(Error::DatagramTruncated {
                length,
                capacity: buffer.len(),
            });
        }
        Ok(&buffer[..length])
    }

    /// Sends `request` (encoded with a sequence from [`Socket::next_sequence`]) and reads the
    /// answer into `buffer` until its acknowledgement or the end of its dump, passing every
    /// other message of the request's sequence to `on_message`. Messages of other sequences
    /// (late answers to an earlier request that timed out) are skipped. An `NLMSG_ERROR`
    /// with a non-zero code is [`Error::Refused`]; the first error of `on_message` ends the
    /// exchange with it.
    pub fn exchange(
        &mut self,
        request: &[u8],
        buffer: &mut [u8],
        mut on_message: impl FnMut(Message<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let sequence = Header::decode(request)?.sequence;
        self.send(request)?;
        for _ in 0..self.options.datagrams_per_answer_max {
            let length = match self.receive_length(buffer) {
                Ok(length) => length,
                Err(Error::System {
                    code: libc::EINTR, ..
                }) => continue,
                Err(error) => return Err(error),
            };
            if length > buffer.len() {
                // Only a stale datagram may be dropped unread.
                match Header::decode(buffer) {
                    Ok(header) if header.sequence != sequence => continue,
                    _ => {
                        return Err(Error::DatagramTruncated {
                            length,
                            capacity: buffer.len(),
                        });
                    }
                }
            }
            for message in wire::messages(&buffer[..length]) {
                let message = message?;
                if message.header.sequence != sequence {
                    continue;
                }
                match message.header.kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        return match wire::error_code(message.payload)? {
                            0 => Ok(()),
                            code => Err(Error::Refused { code }),
                        };
                    }
                    NLMSG_NOOP => {}
                    _ => on_message(message)?,
                }
            }
        }
        Err(Error::AnswerUnfinished {
            datagrams: self.options.datagrams_per_answer_max,
        })
    }

    /// Adds, replaces or deletes an address (like `ip addr add|replace|del`).
    pub fn change_address(
        &mut self,
        change: AddressChange,
        address: &InterfaceAddress,
        buffer: &mut [u8],
    ) -> Result<(), Error> {
        let mut request = [0u8; REQUEST_BYTES_MAX];
        let sequence = self.next_sequence();
        let length = wire::encode_address_change(&mut request, sequence, change, address)?;
        self.exchange(&request[..length], buffer, |_| Ok(()))
    }

    /// Deletes an address exactly as the kernel reported it (see
    /// [`wire::encode_delete_reported`]).
    pub fn delete_reported(
        &mut self,
        message: &AddressMessage<'_>,
        buffer: &mut [u8],
    ) -> Result<(), Error> {
        let mut request = [0u8; REQUEST_BYTES_MAX];
        let sequence = self.next_sequence();
        let length = wire::encode_delete_reported(&mut request, sequence, message)?;
        self.exchange(&request[..length], buffer, |_| Ok(()))
    }

    /// Passes every address of `family` to `on_address` (an `RTM_GETADDR` dump).
    pub fn dump_addresses(
        &mut self,
        family: AddressFamily,
        buffer: &mut [u8],
        mut on_address: impl FnMut(AddressMessage<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut request = [0u8; REQUEST_BYTES_MAX];
        let sequence = self.next_sequence();
        let length = wire::encode_address_dump(&mut request, sequence, family)?;
        self.exchange(&request[..length], buffer, |message| {
            match message.body()? {
                Body::Address(address) => on_address(address),
                _ => Ok(()),
            }
        })
    }

    /// Sets the interface administratively up or down (like `ip link set dev X up|down`).
    pub fn set_link_up(&mut self, index: u32, up: bool, buffer: &mut [u8]) -> Result<(), Error> {
        let mut request = [0u8; REQUEST_BYTES_MAX];
        let sequence = self.next_sequence();
        let length = wire::encode_set_link_up(&mut request, sequence, index, up)?;
        self.exchange(&request[..length], buffer, |_| Ok(()))
    }

    /// Reads the interface with this index through `read`.
    pub fn link<T>(
        &mut self,
        index: u32,
        buffer: &mut [u8],
        read: impl FnOnce(&LinkMessage<'_>) -> T,
    ) -> Result<T, Error> {
        let mut request = [0u8; REQUEST_BYTES_MAX];
        let sequence = self.next_sequence();
        let length = wire::encode_link_by_index(&mut request, sequence, index)?;
        self.find_link(&request[..length], buffer, read)
    }

    /// The index of the interface called `name` in this socket's namespace. This is the one
    /// implementation of an interface index lookup in Halcyon ([`crate::interface_index`] runs
    /// it on a fresh socket).
    pub fn interface_index(&mut self, name: &str, buffer: &mut [u8]) -> Result<u32, Error> {
        let mut request = [0u8; REQUEST_BYTES_MAX];
        let sequence = self.next_sequence();
        let length = wire::encode_link_by_name(&mut request, sequence, name)?;
        self.find_link(&request[..length], buffer, |link| link.index)
    }

    /// Runs an `RTM_GETLINK` request and reads the first link of its answer.
    fn find_link<T>(
        &mut self,
        request: &[u8],
        buffer: &mut [u8],
        read: impl FnOnce(&LinkMessage<'_>) -> T,
    ) -> Result<T, Error> {
        let mut read = Some(read);
        let mut found = None;
        let result = self.exchange(request, buffer, |message| {
            if let Body::Link(link) = message.body()?
                && let Some(read) = read.take()
            {
                found = Some(read(&link));
            }
            Ok(())
        });
        match result {
            Err(Error::Refused { code: libc::ENODEV }) => Err(Error::NoSuchInterface),
            Err(error) => Err(error),
            Ok(()) => found.ok_or(Error::NoSuchInterface),
        }
    }
}
