//! A minimal NETLINK_ROUTE client: dump IPv4 addresses, add and delete an address, set a link
//! up or down, find a link's index by name.
//!
//! A netlink socket belongs to the network namespace it was created in, whatever thread uses it
//! later; [`RouteSocket::open_in`] creates one inside a namespace (on a short-lived thread that
//! enters it), after which the checker can sample every host from one thread with no `ip`
//! process per sample.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use crate::netns;

/// Largest reply buffer; a dump arrives in several datagrams of at most this size.
const RECEIVE_BUFFER_BYTES: usize = 64 * 1024;
/// A reply must arrive within this time, so no call can block forever.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Upper bound on datagrams read for one request (a dump of a lab namespace needs one or two).
const DATAGRAMS_PER_REQUEST_MAX: usize = 1024;

const NLMSG_HEADER_BYTES: usize = 16;
const IFADDRMSG_BYTES: usize = 8;
const IFINFOMSG_BYTES: usize = 16;

/// One IPv4 address configured on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub interface_index: u32,
    pub address: Ipv4Addr,
    pub prefix_length: u8,
}

/// A NETLINK_ROUTE socket bound to the network namespace it was opened in.
#[derive(Debug)]
pub struct RouteSocket {
    fd: OwnedFd,
    sequence: u32,
    buffer: Vec<u8>,
}

impl RouteSocket {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> io::Result<RouteSocket> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let timeout = libc::timeval {
            tv_sec: RECEIVE_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: valid descriptor, pointer and length of a timeval.
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
            return Err(io::Error::last_os_error());
        }
        // SAFETY: zeroed sockaddr_nl is a valid "kernel assigns the port id" address.
        let mut local: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        local.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: valid descriptor, pointer and length of a sockaddr_nl.
        let result = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&local as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(RouteSocket {
            fd,
            sequence: 1,
            buffer: vec![0; RECEIVE_BUFFER_BYTES],
        })
    }

    /// A socket in the network namespace named by `netns_path` (e.g. `/run/netns/NAME`).
    pub fn open_in(netns_path: &Path) -> io::Result<RouteSocket> {
        netns::in_namespace(netns_path, RouteSocket::open)?
    }

    /// Every IPv4 address configured in the namespace (RTM_GETADDR dump).
    pub fn ipv4_addresses(&mut self) -> io::Result<Vec<InterfaceAddress>> {
        let mut request = Vec::with_capacity(NLMSG_HEADER_BYTES + IFADDRMSG_BYTES);
        let sequence = self.begin(
            &mut request,
            libc::RTM_GETADDR,
            libc::NLM_F_REQUEST | libc::NLM_F_DUMP,
        );
        request.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0, 0, 0, 0, 0]);
        let mut found = Vec::new();
        self.exchange(request, sequence, true, |message_type, payload| {
            if message_type != libc::RTM_NEWADDR || payload.len() < IFADDRMSG_BYTES {
                return;
            }
            if payload[0] != libc::AF_INET as u8 {
                return;
            }
            let prefix_length = payload[1];
            let interface_index =
                u32::from_ne_bytes([payload[4], payload[5], payload[6], payload[7]]);
            let mut local = None;
            let mut address = None;
            for (kind, value) in attributes(&payload[IFADDRMSG_BYTES..]) {
                if value.len() != 4 {
                    continue;
                }
                let ip = Ipv4Addr::new(value[0], value[1], value[2], value[3]);
                if kind == libc::IFA_LOCAL {
                    local = Some(ip);
                } else if kind == libc::IFA_ADDRESS {
                    address = Some(ip);
                }
            }
            if let Some(address) = local.or(address) {
                found.push(InterfaceAddress {
                    interface_index,
                    address,
                    prefix_length,
                });
            }
        })?;
        Ok(found)
    }

    /// Adds `address/prefix_length` to the interface (like `ip addr add`).
    pub fn add_address(
        &mut self,
        interface_index: u32,
        address: Ipv4Addr,
        prefix_length: u8,
    ) -> io::Result<()> {
        self.change_address(libc::RTM_NEWADDR, interface_index, address, prefix_length)
    }

    /// Removes `address/prefix_length` from the interface (like `ip addr del`).
    pub fn delete_address(
        &mut self,
        interface_index: u32,
        address: Ipv4Addr,
        prefix_length: u8,
    ) -> io::Result<()> {
        self.change_address(libc::RTM_DELADDR, interface_index, address, prefix_length)
    }

    fn change_address(
        &mut self,
        message_type: u16,
        interface_index: u32,
        address: Ipv4Addr,
        prefix_length: u8,
    ) -> io::Result<()> {
        let mut flags = libc::NLM_F_REQUEST | libc::NLM_F_ACK;
        if message_type == libc::RTM_NEWADDR {
            flags |= libc::NLM_F_CREATE | libc::NLM_F_EXCL;
        }
        let mut request = Vec::with_capacity(64);
        let sequence = self.begin(&mut request, message_type, flags);
        request.extend_from_slice(&[libc::AF_INET as u8, prefix_length, 0, 0]);
        request.extend_from_slice(&interface_index.to_ne_bytes());
        push_attribute(&mut request, libc::IFA_LOCAL, &address.octets());
        push_attribute(&mut request, libc::IFA_ADDRESS, &address.octets());
        self.exchange(request, sequence, false, |_, _| {})
    }

    /// Sets the interface administratively up or down (like `ip link set dev X up|down`).
    pub fn set_link_up(&mut self, interface_index: u32, up: bool) -> io::Result<()> {
        let mut request = Vec::with_capacity(NLMSG_HEADER_BYTES + IFINFOMSG_BYTES);
        let sequence = self.begin(
            &mut request,
            libc::RTM_NEWLINK,
            libc::NLM_F_REQUEST | libc::NLM_F_ACK,
        );
        let index = i32::try_from(interface_index).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "interface index out of range")
        })?;
        let flags: u32 = if up { libc::IFF_UP as u32 } else { 0 };
        request.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        request.extend_from_slice(&index.to_ne_bytes());
        request.extend_from_slice(&flags.to_ne_bytes());
        request.extend_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
        self.exchange(request, sequence, false, |_, _| {})
    }

    /// The index of the interface called `name` in this socket's namespace (RTM_GETLINK dump).
    pub fn link_index(&mut self, name: &str) -> io::Result<u32> {
        let mut request = Vec::with_capacity(NLMSG_HEADER_BYTES + IFINFOMSG_BYTES);
        let sequence = self.begin(
            &mut request,
            libc::RTM_GETLINK,
            libc::NLM_F_REQUEST | libc::NLM_F_DUMP,
        );
        request.extend_from_slice(&[0; IFINFOMSG_BYTES]);
        let mut index = None;
        self.exchange(request, sequence, true, |message_type, payload| {
            if message_type != libc::RTM_NEWLINK || payload.len() < IFINFOMSG_BYTES {
                return;
            }
            let this_index = i32::from_ne_bytes([payload[4], payload[5], payload[6], payload[7]]);
            for (kind, value) in attributes(&payload[IFINFOMSG_BYTES..]) {
                if kind == libc::IFLA_IFNAME {
                    let value = value.strip_suffix(&[0]).unwrap_or(value);
                    if value == name.as_bytes() {
                        index = u32::try_from(this_index).ok();
                    }
                }
            }
        })?;
        index.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface named {name:?}"),
            )
        })
    }

    /// Starts a request: the netlink header with a placeholder length; returns its sequence.
    fn begin(&mut self, request: &mut Vec<u8>, message_type: u16, flags: libc::c_int) -> u32 {
        self.sequence = self.sequence.wrapping_add(1);
        request.extend_from_slice(&0u32.to_ne_bytes());
        request.extend_from_slice(&message_type.to_ne_bytes());
        request.extend_from_slice(&(flags as u16).to_ne_bytes());
        request.extend_from_slice(&self.sequence.to_ne_bytes());
        request.extend_from_slice(&0u32.to_ne_bytes());
        self.sequence
    }

    /// Sends `request`, then reads replies until the dump's NLMSG_DONE or the request's
    /// acknowledgement, passing each (type, payload) with our sequence number to `on_message`.
    fn exchange(
        &mut self,
        mut request: Vec<u8>,
        sequence: u32,
        dump: bool,
        mut on_message: impl FnMut(u16, &[u8]),
    ) -> io::Result<()> {
        let length = request.len() as u32;
        request[0..4].copy_from_slice(&length.to_ne_bytes());
        // SAFETY: zeroed sockaddr_nl with nl_pid 0 addresses the kernel.
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
            return Err(io::Error::last_os_error());
        }
        for _ in 0..DATAGRAMS_PER_REQUEST_MAX {
            // SAFETY: valid descriptor; the buffer is live and its length is passed.
            let received = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buffer.as_mut_ptr().cast(),
                    self.buffer.len(),
                    0,
                )
            };
            if received < 0 {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            let mut rest = &self.buffer[..received as usize];
            while rest.len() >= NLMSG_HEADER_BYTES {
                let message_length =
                    u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                if message_length < NLMSG_HEADER_BYTES || message_length > rest.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "truncated netlink message",
                    ));
                }
                let message_type = u16::from_ne_bytes([rest[4], rest[5]]);
                let message_sequence = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
                let payload = &rest[NLMSG_HEADER_BYTES..message_length];
                rest = &rest[align(message_length).min(rest.len())..];
                if message_sequence != sequence {
                    continue; // a late reply to an earlier, timed-out request
                }
                match i32::from(message_type) {
                    libc::NLMSG_DONE if dump => return Ok(()),
                    libc::NLMSG_ERROR => {
                        if payload.len() < 4 {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "short netlink error",
                            ));
                        }
                        let code =
                            i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]);
                        if code == 0 && !dump {
                            return Ok(());
                        }
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                    _ => on_message(message_type, payload),
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "netlink reply did not end",
        ))
    }
}

fn align(length: usize) -> usize {
    (length + 3) & !3
}

fn push_attribute(request: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let length = (4 + value.len()) as u16;
    request.extend_from_slice(&length.to_ne_bytes());
    request.extend_from_slice(&kind.to_ne_bytes());
    request.extend_from_slice(value);
    request.resize(align(request.len()), 0);
}

/// Iterates the route attributes (type, value) of a message's tail.
fn attributes(mut rest: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let length = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let kind = u16::from_ne_bytes([rest[2], rest[3]]);
        if length < 4 || length > rest.len() {
            return None;
        }
        let value = &rest[4..length];
        rest = &rest[align(length).min(rest.len())..];
        Some((kind, value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_parsed_with_alignment() {
        let mut buffer = Vec::new();
        push_attribute(&mut buffer, 3, b"eth1\0");
        push_attribute(&mut buffer, 2, &[198, 18, 1, 7]);
        let parsed: Vec<_> = attributes(&buffer).collect();
        assert_eq!(parsed, vec![(3, &b"eth1\0"[..]), (2, &[198, 18, 1, 7][..])]);
    }

    #[test]
    fn loopback_address_is_dumped() {
        // Works unprivileged: every namespace has 127.0.0.1 on lo once lo is up; in a fresh
        // namespace without lo up the dump is simply empty, so only the call is asserted.
        let mut socket = RouteSocket::open().expect("netlink socket");
        let addresses = socket.ipv4_addresses().expect("dump");
        assert!(addresses.iter().all(|entry| entry.prefix_length <= 32));
    }
}
