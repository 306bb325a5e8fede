//! A small synchronous `NETLINK_ROUTE` client over a raw socket: list, add (idempotently, with
//! `NLM_F_REPLACE`) and delete interface addresses, and read an interface's name, flags and
//! hardware address.
//!
//! The socket belongs to the network namespace of the thread that opens it. Every wait is
//! bounded: each receive by [`RECEIVE_TIMEOUT`], a whole answer by [`MESSAGES_MAX`] messages.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Longest wait for one answer datagram from the kernel.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Most messages one answer may have (a dump of a host's addresses is far smaller).
const MESSAGES_MAX: usize = 100_000;
const BUFFER_BYTES: usize = 64 * 1024;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const HEADER_BYTES: usize = 16;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_CACHEINFO: u16 = 6;
const IFA_FLAGS: u16 = 8;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;

/// Address flags (`IFA_F_*`).
pub(crate) const IFA_F_DADFAILED: u32 = 0x08;
pub(crate) const IFA_F_TENTATIVE: u32 = 0x40;

/// An address as the kernel reports it: the whole message, so it can be deleted exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AddressMessage {
    pub family: u8,
    pub prefix: u8,
    pub flags: u8,
    pub scope: u8,
    pub index: u32,
    pub attributes: Vec<(u16, Vec<u8>)>,
}

impl AddressMessage {
    fn attribute(&self, kind: u16) -> Option<&[u8]> {
        self.attributes
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.as_slice())
    }

    /// The interface's own address (`IFA_LOCAL` for IPv4, `IFA_ADDRESS` for IPv6).
    pub fn address(&self) -> Option<IpAddr> {
        let bytes = self
            .attribute(IFA_LOCAL)
            .or_else(|| self.attribute(IFA_ADDRESS))?;
        decode_ip(bytes)
    }

    /// All flags: `IFA_FLAGS` when present (it has the bits beyond 8), else the header's.
    pub fn all_flags(&self) -> u32 {
        match self.attribute(IFA_FLAGS) {
            Some(b) if b.len() == 4 => u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            _ => u32::from(self.flags),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.family, self.prefix, self.flags, self.scope]);
        out.extend_from_slice(&self.index.to_ne_bytes());
        for (kind, value) in &self.attributes {
            // Cache information is the kernel's output, not part of the address.
            if *kind != IFA_CACHEINFO {
                put_attribute(out, *kind, value);
            }
        }
    }

    fn decode(payload: &[u8]) -> Option<Self> {
        if payload.len() < 8 {
            return None;
        }
        Some(AddressMessage {
            family: payload[0],
            prefix: payload[1],
            flags: payload[2],
            scope: payload[3],
            index: u32::from_ne_bytes(payload[4..8].try_into().ok()?),
            attributes: parse_attributes(&payload[8..]),
        })
    }
}

/// An interface as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    pub index: u32,
    pub name: String,
    /// `IFF_*` flags.
    pub flags: u32,
    pub hardware_address: Vec<u8>,
}

impl Link {
    pub fn is_up(&self) -> bool {
        self.flags & libc::IFF_UP as u32 != 0
    }

    pub fn has_carrier(&self) -> bool {
        self.flags & libc::IFF_LOWER_UP as u32 != 0
    }

    /// The six-byte Ethernet address, if the interface has one.
    pub fn mac(&self) -> Option<[u8; 6]> {
        self.hardware_address.as_slice().try_into().ok()
    }
}

fn decode_ip(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes).ok()?,
        ))),
        _ => None,
    }
}

fn ip_bytes(address: IpAddr) -> Vec<u8> {
    match address {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn put_attribute(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + align4(len) - len, 0);
}

fn parse_attributes(mut bytes: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut attributes = Vec::new();
    while bytes.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([bytes[0], bytes[1]]));
        let kind = u16::from_ne_bytes([bytes[2], bytes[3]]) & 0x3fff;
        if len < 4 || len > bytes.len() {
            break;
        }
        attributes.push((kind, bytes[4..len].to_vec()));
        bytes = &bytes[align4(len).min(bytes.len())..];
    }
    attributes
}

fn address_family(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

/// An open `NETLINK_ROUTE` socket.
pub(crate) struct Netlink {
    fd: OwnedFd,
    sequence: u32,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the result is checked and owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let timeout = libc::timeval {
            tv_sec: RECEIVE_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: RECEIVE_TIMEOUT.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: setsockopt with a pointer to a live timeval of the stated size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: an all-zero sockaddr_nl is valid; the kernel assigns the port id.
        let mut local: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        local.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: bind with a pointer to a live sockaddr_nl of the stated size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&local as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Netlink { fd, sequence: 0 })
    }

    /// Sends one request and collects the answer's messages (type, payload) until the
    /// acknowledgement or the end of a dump. A negative acknowledgement is the error.
    fn transact(&mut self, kind: u16, flags: u16, body: &[u8]) -> io::Result<Vec<(u16, Vec<u8>)>> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        let mut request = Vec::with_capacity(HEADER_BYTES + body.len());
        request.extend_from_slice(&((HEADER_BYTES + body.len()) as u32).to_ne_bytes());
        request.extend_from_slice(&kind.to_ne_bytes());
        request.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        request.extend_from_slice(&sequence.to_ne_bytes());
        request.extend_from_slice(&0u32.to_ne_bytes());
        request.extend_from_slice(body);
        // SAFETY: send(2) of a live buffer of the stated length.
        let sent = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                request.as_ptr().cast(),
                request.len(),
                0,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut answer = Vec::new();
        let mut buffer = vec![0u8; BUFFER_BYTES];
        while answer.len() < MESSAGES_MAX {
            // SAFETY: recv(2) into a live buffer of the stated length.
            let received = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    0,
                )
            };
            if received < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut rest = &buffer[..received as usize];
            while rest.len() >= HEADER_BYTES {
                let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
                let message_kind = u16::from_ne_bytes([rest[4], rest[5]]);
                let message_sequence = u32::from_ne_bytes(rest[8..12].try_into().expect("4 bytes"));
                if len < HEADER_BYTES || len > rest.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "malformed netlink message",
                    ));
                }
                let payload = &rest[HEADER_BYTES..len];
                rest = &rest[align4(len).min(rest.len())..];
                if message_sequence != sequence {
                    continue;
                }
                match message_kind {
                    NLMSG_ERROR => {
                        let code = payload
                            .get(0..4)
                            .map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes")))
                            .unwrap_or(-libc::EPROTO);
                        if code != 0 {
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                        return Ok(answer);
                    }
                    NLMSG_DONE if dump => return Ok(answer),
                    _ => answer.push((message_kind, payload.to_vec())),
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "netlink answer too long",
        ))
    }

    /// Every address of every interface.
    pub fn addresses(&mut self) -> io::Result<Vec<AddressMessage>> {
        let body = [libc::AF_UNSPEC as u8, 0, 0, 0, 0, 0, 0, 0];
        let answer = self.transact(RTM_GETADDR, NLM_F_DUMP, &body)?;
        Ok(answer
            .iter()
            .filter(|(kind, _)| *kind == RTM_NEWADDR)
            .filter_map(|(_, payload)| AddressMessage::decode(payload))
            .collect())
    }

    /// Adds `address/prefix` on interface `index`; already present is fine (replace).
    pub fn replace_address(&mut self, index: u32, address: IpAddr, prefix: u8) -> io::Result<()> {
        let message = AddressMessage {
            family: address_family(address),
            prefix,
            flags: 0,
            scope: 0,
            index,
            attributes: vec![
                (IFA_LOCAL, ip_bytes(address)),
                (IFA_ADDRESS, ip_bytes(address)),
            ],
        };
        let mut body = Vec::new();
        message.encode(&mut body);
        self.transact(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, &body)
            .map(|_| ())
    }

    /// Deletes an address given as the kernel reported it.
    pub fn delete_address(&mut self, message: &AddressMessage) -> io::Result<()> {
        let mut body = Vec::new();
        message.encode(&mut body);
        self.transact(RTM_DELADDR, NLM_F_ACK, &body).map(|_| ())
    }

    /// The interface with this index.
    pub fn link(&mut self, index: u32) -> io::Result<Link> {
        let mut body = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
        body.extend_from_slice(&(index as i32).to_ne_bytes());
        body.extend_from_slice(&0u32.to_ne_bytes());
        body.extend_from_slice(&0u32.to_ne_bytes());
        let answer = self.transact(RTM_GETLINK, NLM_F_ACK, &body)?;
        answer
            .iter()
            .filter(|(kind, _)| *kind == RTM_NEWLINK)
            .find_map(|(_, payload)| decode_link(payload))
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such interface"))
    }

    /// The index of the interface called `name`.
    pub fn index_of(&mut self, name: &str) -> io::Result<u32> {
        let mut body = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
        body.extend_from_slice(&0i32.to_ne_bytes());
        body.extend_from_slice(&0u32.to_ne_bytes());
        body.extend_from_slice(&0u32.to_ne_bytes());
        let mut value = name.as_bytes().to_vec();
        value.push(0);
        put_attribute(&mut body, IFLA_IFNAME, &value);
        match self.transact(RTM_GETLINK, NLM_F_ACK, &body) {
            Ok(answer) => answer
                .iter()
                .filter(|(kind, _)| *kind == RTM_NEWLINK)
                .find_map(|(_, payload)| decode_link(payload))
                .map(|l| l.index)
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such interface")),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface called {name}"),
            )),
            Err(e) => Err(e),
        }
    }
}

fn decode_link(payload: &[u8]) -> Option<Link> {
    if payload.len() < 16 {
        return None;
    }
    let index = i32::from_ne_bytes(payload[4..8].try_into().ok()?) as u32;
    let flags = u32::from_ne_bytes(payload[8..12].try_into().ok()?);
    let attributes = parse_attributes(&payload[16..]);
    let name = attributes
        .iter()
        .find(|(k, _)| *k == IFLA_IFNAME)
        .map(|(_, v)| {
            let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
            String::from_utf8_lossy(&v[..end]).into_owned()
        })
        .unwrap_or_default();
    let hardware_address = attributes
        .iter()
        .find(|(k, _)| *k == IFLA_ADDRESS)
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    Some(Link {
        index,
        name,
        flags,
        hardware_address,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_with_padding() {
        let mut out = Vec::new();
        put_attribute(&mut out, IFA_LOCAL, &[198, 18, 0, 1]);
        put_attribute(&mut out, 3, b"eth0\0");
        assert_eq!(out.len(), 8 + 12);
        let parsed = parse_attributes(&out);
        assert_eq!(parsed[0], (IFA_LOCAL, vec![198, 18, 0, 1]));
        assert_eq!(parsed[1], (3, b"eth0\0".to_vec()));
    }

    #[test]
    fn an_address_message_keeps_everything_but_cache_information() {
        let message = AddressMessage {
            family: libc::AF_INET as u8,
            prefix: 24,
            flags: 0x80,
            scope: 0,
            index: 7,
            attributes: vec![
                (IFA_ADDRESS, vec![198, 18, 0, 50]),
                (IFA_LOCAL, vec![198, 18, 0, 50]),
                (IFA_CACHEINFO, vec![0; 16]),
                (IFA_FLAGS, 0x80u32.to_ne_bytes().to_vec()),
            ],
        };
        let mut out = Vec::new();
        message.encode(&mut out);
        let decoded = AddressMessage::decode(&out).unwrap();
        assert_eq!(decoded.address(), Some("198.18.0.50".parse().unwrap()));
        assert_eq!(decoded.all_flags(), 0x80);
        assert_eq!(decoded.index, 7);
        assert_eq!(decoded.attributes.len(), 3);
    }
}
