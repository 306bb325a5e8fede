//! RTM_DELADDR over a raw NETLINK_ROUTE socket, with fixed buffers (no allocation on a fence).
//!
//! The socket is opened once when the guard starts, so it belongs to the network namespace the
//! guard was started in (the daemon's), and a fence needs no socket(2) call. Replies must arrive
//! within 200 ms (`RECEIVE_TIMEOUT`), so a fence can never hang on the kernel.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::protocol::Address;

const RECEIVE_TIMEOUT: Duration = Duration::from_millis(200);
const NLMSG_HEADER_BYTES: usize = 16;
const IFADDRMSG_BYTES: usize = 8;
/// Header, ifaddrmsg and two attributes of 4 + 16 bytes.
const REQUEST_BYTES_MAX: usize = NLMSG_HEADER_BYTES + IFADDRMSG_BYTES + 2 * 20;
/// Datagrams read while looking for the acknowledgement of one request.
const DATAGRAMS_PER_REQUEST_MAX: usize = 16;

/// What deleting one address did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    /// Already gone (EADDRNOTAVAIL), or its interface is (ENODEV).
    Absent,
    /// The errno of the failure.
    Failed(i32),
}

/// A NETLINK_ROUTE socket in the namespace it was opened in.
#[derive(Debug)]
pub struct RouteSocket {
    fd: OwnedFd,
    sequence: u32,
    buffer: [u8; 8192],
}

impl RouteSocket {
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
            tv_sec: 0,
            tv_usec: RECEIVE_TIMEOUT.as_micros() as libc::suseconds_t,
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
        // SAFETY: a zeroed sockaddr_nl asks the kernel to assign the port id.
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
            buffer: [0; 8192],
        })
    }

    /// Removes `address` from its interface (like `ip addr del ADDR/PREFIX dev IF`).
    pub fn delete_address(&mut self, address: &Address) -> DeleteOutcome {
        self.sequence = self.sequence.wrapping_add(1);
        let mut request = [0u8; REQUEST_BYTES_MAX];
        let length = encode_delete(&mut request, self.sequence, address);
        // SAFETY: a zeroed sockaddr_nl with nl_pid 0 addresses the kernel.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: valid descriptor; pointers and lengths describe live buffers.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                request.as_ptr().cast(),
                length,
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return DeleteOutcome::Failed(errno());
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
                let code = errno();
                if code == libc::EINTR {
                    continue;
                }
                return DeleteOutcome::Failed(code);
            }
            if let Some(code) = find_ack(&self.buffer[..received as usize], self.sequence) {
                return match code {
                    0 => DeleteOutcome::Deleted,
                    libc::EADDRNOTAVAIL | libc::ENODEV => DeleteOutcome::Absent,
                    code => DeleteOutcome::Failed(code),
                };
            }
        }
        DeleteOutcome::Failed(libc::ETIMEDOUT)
    }
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Writes an RTM_DELADDR request with an acknowledgement into `out`; returns its length.
fn encode_delete(out: &mut [u8; REQUEST_BYTES_MAX], sequence: u32, address: &Address) -> usize {
    let (family, octets, octet_count): (u8, [u8; 16], usize) = match address.address {
        IpAddr::V4(v4) => {
            let mut octets = [0; 16];
            octets[..4].copy_from_slice(&v4.octets());
            (libc::AF_INET as u8, octets, 4)
        }
        IpAddr::V6(v6) => (libc::AF_INET6 as u8, v6.octets(), 16),
    };
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    out[4..6].copy_from_slice(&libc::RTM_DELADDR.to_ne_bytes());
    out[6..8].copy_from_slice(&flags.to_ne_bytes());
    out[8..12].copy_from_slice(&sequence.to_ne_bytes());
    out[12..16].copy_from_slice(&0u32.to_ne_bytes());
    // struct ifaddrmsg: family, prefixlen, flags, scope, index.
    out[16] = family;
    out[17] = address.prefix_length;
    out[18] = 0;
    out[19] = 0;
    out[20..24].copy_from_slice(&address.interface_index.to_ne_bytes());
    let mut at = NLMSG_HEADER_BYTES + IFADDRMSG_BYTES;
    // IFA_LOCAL and IFA_ADDRESS both name the address (no peer): the kernel matches the
    // configured address, its prefix length and its interface.
    for kind in [libc::IFA_LOCAL, libc::IFA_ADDRESS] {
        let attribute_length = (4 + octet_count) as u16;
        out[at..at + 2].copy_from_slice(&attribute_length.to_ne_bytes());
        out[at + 2..at + 4].copy_from_slice(&kind.to_ne_bytes());
        out[at + 4..at + 4 + octet_count].copy_from_slice(&octets[..octet_count]);
        at += 4 + octet_count; // 8 or 20: already 4-aligned
    }
    out[0..4].copy_from_slice(&(at as u32).to_ne_bytes());
    at
}

/// The (positive) errno of the NLMSG_ERROR acknowledging `sequence` in a datagram, 0 for
/// success, or None when the datagram does not hold it.
fn find_ack(mut rest: &[u8], sequence: u32) -> Option<i32> {
    while rest.len() >= NLMSG_HEADER_BYTES {
        let length = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if length < NLMSG_HEADER_BYTES || length > rest.len() {
            return None;
        }
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let message_sequence = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
        if i32::from(kind) == libc::NLMSG_ERROR
            && message_sequence == sequence
            && length >= NLMSG_HEADER_BYTES + 4
        {
            let code = i32::from_ne_bytes([rest[16], rest[17], rest[18], rest[19]]);
            return Some(-code);
        }
        rest = &rest[((length + 3) & !3).min(rest.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn delete_request_layout() {
        let mut out = [0u8; REQUEST_BYTES_MAX];
        let address = Address {
            interface_index: 5,
            address: IpAddr::V4(Ipv4Addr::new(198, 18, 5, 10)),
            prefix_length: 24,
        };
        let length = encode_delete(&mut out, 9, &address);
        assert_eq!(length, 16 + 8 + 8 + 8);
        assert_eq!(u32::from_ne_bytes(out[0..4].try_into().unwrap()), 40);
        assert_eq!(u16::from_ne_bytes([out[4], out[5]]), libc::RTM_DELADDR);
        assert_eq!(u32::from_ne_bytes(out[8..12].try_into().unwrap()), 9);
        assert_eq!(&out[16..20], &[libc::AF_INET as u8, 24, 0, 0]);
        assert_eq!(u32::from_ne_bytes(out[20..24].try_into().unwrap()), 5);
        assert_eq!(u16::from_ne_bytes([out[26], out[27]]), libc::IFA_LOCAL);
        assert_eq!(&out[28..32], &[198, 18, 5, 10]);
        assert_eq!(u16::from_ne_bytes([out[34], out[35]]), libc::IFA_ADDRESS);
        assert_eq!(&out[36..40], &[198, 18, 5, 10]);

        let v6 = Address {
            interface_index: 2,
            address: IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1)),
            prefix_length: 64,
        };
        let length = encode_delete(&mut out, 10, &v6);
        assert_eq!(length, 16 + 8 + 20 + 20);
        assert_eq!(out[16], libc::AF_INET6 as u8);
        assert_eq!(u16::from_ne_bytes([out[24], out[25]]), 20);
    }

    #[test]
    fn acknowledgements_are_matched_by_sequence() {
        let mut datagram = Vec::new();
        for (sequence, code) in [(3u32, -99i32), (4, 0)] {
            datagram.extend_from_slice(&36u32.to_ne_bytes());
            datagram.extend_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
            datagram.extend_from_slice(&0u16.to_ne_bytes());
            datagram.extend_from_slice(&sequence.to_ne_bytes());
            datagram.extend_from_slice(&0u32.to_ne_bytes());
            datagram.extend_from_slice(&code.to_ne_bytes());
            datagram.extend_from_slice(&[0; 16]);
        }
        assert_eq!(find_ack(&datagram, 3), Some(99));
        assert_eq!(find_ack(&datagram, 4), Some(0));
        assert_eq!(find_ack(&datagram, 5), None);
        assert_eq!(find_ack(&datagram[..20], 3), None);
    }

    #[test]
    fn deleting_an_absent_address_is_not_a_failure_or_needs_privilege() {
        let mut socket = RouteSocket::open().expect("netlink socket");
        let address = Address {
            interface_index: 1,
            address: IpAddr::V4(Ipv4Addr::new(198, 18, 250, 251)),
            prefix_length: 32,
        };
        let outcome = socket.delete_address(&address);
        assert!(
            matches!(
                outcome,
                DeleteOutcome::Absent | DeleteOutcome::Failed(libc::EPERM)
            ),
            "{outcome:?}"
        );
    }
}
