//! Route-netlink messages, encoded into and decoded out of caller-provided buffers.
//!
//! Nothing in this module allocates, reads a clock or does I/O. Every decoder checks each
//! length before it reads and returns a precise [`DecodeError`] for truncated or malformed
//! input; every encoder checks the room left and returns an [`EncodeError`]. No input makes
//! them panic, and every loop advances by at least one 4-byte step through a finite slice.
//!
//! Layout (all integers in the host's byte order, every message and attribute padded to 4
//! bytes): a datagram holds messages; a message is a 16-byte header (`struct nlmsghdr`) and a
//! payload; an address payload is `struct ifaddrmsg` (8 bytes) and route attributes, a link
//! payload `struct ifinfomsg` (16 bytes) and route attributes; an attribute is a 4-byte header
//! (length, type) and its value.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `struct nlmsghdr`.
pub const HEADER_BYTES: usize = 16;
/// `struct ifaddrmsg`.
pub const IFADDRMSG_BYTES: usize = 8;
/// `struct ifinfomsg`.
pub const IFINFOMSG_BYTES: usize = 16;
/// `struct rtattr`.
pub const ATTRIBUTE_HEADER_BYTES: usize = 4;
/// The error code at the start of an `NLMSG_ERROR` payload.
pub const ERROR_CODE_BYTES: usize = 4;
/// Longest interface name without its terminating NUL (`IFNAMSIZ` - 1).
pub const INTERFACE_NAME_BYTES_MAX: usize = 15;
/// Largest request this module's encoders write (an address message copied from a dump with
/// all its attributes fits easily; the kernel's own are about 100 bytes).
pub const REQUEST_BYTES_MAX: usize = 512;

// Message types (`NLMSG_*`, `RTM_*`).
pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_GETLINK: u16 = 18;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_DELADDR: u16 = 21;
pub const RTM_GETADDR: u16 = 22;

// Header flags (`NLM_F_*`).
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_DUMP: u16 = 0x300;

// Address attributes (`IFA_*`) and flags (`IFA_F_*`).
pub const IFA_ADDRESS: u16 = 1;
pub const IFA_LOCAL: u16 = 2;
pub const IFA_CACHEINFO: u16 = 6;
pub const IFA_FLAGS: u16 = 8;
pub const IFA_F_DADFAILED: u32 = 0x08;
pub const IFA_F_TENTATIVE: u32 = 0x40;

// Multicast groups (`RTNLGRP_*`).
pub const RTNLGRP_LINK: u32 = 1;

// Link attributes (`IFLA_*`) and flags (`IFF_*`).
pub const IFLA_ADDRESS: u16 = 1;
pub const IFLA_IFNAME: u16 = 3;
pub const IFF_UP: u32 = 0x1;
pub const IFF_LOWER_UP: u32 = 0x1_0000;

/// The type bits of an attribute's type field (the top two bits are `NLA_F_NESTED` and
/// `NLA_F_NET_BYTEORDER`).
const ATTRIBUTE_TYPE_MASK: u16 = 0x3fff;

/// Address families as the kernel numbers them.
pub const AF_UNSPEC: u8 = 0;
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// Which addresses a dump asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressFamily {
    All,
    Ipv4,
    Ipv6,
}

impl AddressFamily {
    /// The kernel's number (`AF_UNSPEC`, `AF_INET`, `AF_INET6`).
    pub fn number(self) -> u8 {
        match self {
            AddressFamily::All => AF_UNSPEC,
            AddressFamily::Ipv4 => AF_INET,
            AddressFamily::Ipv6 => AF_INET6,
        }
    }
}

/// Why bytes are not a well-formed route-netlink message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("netlink message header truncated: {available} of {HEADER_BYTES} bytes")]
    HeaderTruncated { available: usize },
    #[error("netlink message length {length} is shorter than its {HEADER_BYTES}-byte header")]
    LengthBelowHeader { length: u32 },
    #[error("netlink message length {length} exceeds the {available} bytes left")]
    LengthBeyondData { length: u32, available: usize },
    #[error("{what} truncated: {available} of {needed} bytes")]
    PayloadTruncated {
        what: &'static str,
        available: usize,
        needed: usize,
    },
    #[error("netlink error code {code} is not 0 or a negative errno")]
    ErrorCodeInvalid { code: i32 },
    #[error("route attribute header truncated: {available} of {ATTRIBUTE_HEADER_BYTES} bytes")]
    AttributeHeaderTruncated { available: usize },
    #[error("route attribute {kind}: length {length} is shorter than its header")]
    AttributeLengthBelowHeader { kind: u16, length: u16 },
    #[error("route attribute {kind}: length {length} exceeds the {available} bytes left")]
    AttributeLengthBeyondData {
        kind: u16,
        length: u16,
        available: usize,
    },
}

/// Why a message could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("buffer too small: {needed} bytes needed, {available} available")]
    BufferTooSmall { needed: usize, available: usize },
    #[error("route attribute {kind}: a value of {length} bytes does not fit its 16-bit length")]
    AttributeTooLong { kind: u16, length: usize },
    #[error(
        "interface name of {length} bytes: expected 1 to {INTERFACE_NAME_BYTES_MAX} bytes without NUL"
    )]
    InterfaceNameInvalid { length: usize },
    #[error("interface index {index}: expected 1 to 2147483647")]
    InterfaceIndexInvalid { index: u32 },
    #[error("prefix length {prefix_length}: at most {max} for this address family")]
    PrefixLengthInvalid { prefix_length: u8, max: u8 },
    #[error("a message of {length} bytes does not fit its 32-bit length")]
    MessageTooLong { length: usize },
}

fn align4(length: usize) -> usize {
    length.saturating_add(3) & !3
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The bytes after a message or attribute of `length` (padded to 4), or nothing.
fn after(rest: &[u8], length: usize) -> &[u8] {
    rest.get(align4(length)..).unwrap_or(&[])
}

fn check_length(what: &'static str, payload: &[u8], needed: usize) -> Result<(), DecodeError> {
    if payload.len() < needed {
        return Err(DecodeError::PayloadTruncated {
            what,
            available: payload.len(),
            needed,
        });
    }
    Ok(())
}

/// `struct nlmsghdr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The whole message's length, header included, before padding.
    pub length: u32,
    pub kind: u16,
    pub flags: u16,
    pub sequence: u32,
    pub port: u32,
}

impl Header {
    /// Reads the header at the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Header, DecodeError> {
        if bytes.len() < HEADER_BYTES {
            return Err(DecodeError::HeaderTruncated {
                available: bytes.len(),
            });
        }
        Ok(Header {
            length: u32_at(bytes, 0),
            kind: u16_at(bytes, 4),
            flags: u16_at(bytes, 6),
            sequence: u32_at(bytes, 8),
            port: u32_at(bytes, 12),
        })
    }

    fn write(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.length.to_ne_bytes());
        out[4..6].copy_from_slice(&self.kind.to_ne_bytes());
        out[6..8].copy_from_slice(&self.flags.to_ne_bytes());
        out[8..12].copy_from_slice(&self.sequence.to_ne_bytes());
        out[12..16].copy_from_slice(&self.port.to_ne_bytes());
    }

    /// Whether the request asks for a dump (answered by `NLMSG_DONE`).
    pub fn is_dump(&self) -> bool {
        self.flags & NLM_F_DUMP == NLM_F_DUMP
    }
}

/// One message of a datagram: its header and its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub header: Header,
    pub payload: &'a [u8],
}

/// What a message carries, for the types this crate knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// `NLMSG_DONE`: the end of a dump.
    Done,
    /// `NLMSG_ERROR`: 0 acknowledges a request, anything else is the (positive) errno of its
    /// failure.
    Error { code: i32 },
    /// `RTM_NEWADDR` / `RTM_DELADDR`.
    Address(AddressMessage<'a>),
    /// `RTM_NEWLINK` / `RTM_DELLINK`.
    Link(LinkMessage<'a>),
    /// `NLMSG_NOOP` or a type this crate does not decode.
    Other,
}

impl<'a> Message<'a> {
    /// Decodes the payload according to the message type.
    pub fn body(&self) -> Result<Body<'a>, DecodeError> {
        match self.header.kind {
            NLMSG_DONE => Ok(Body::Done),
            NLMSG_ERROR => error_code(self.payload).map(|code| Body::Error { code }),
            RTM_NEWADDR | RTM_DELADDR => AddressMessage::decode(self.payload).map(Body::Address),
            RTM_NEWLINK | RTM_DELLINK => LinkMessage::decode(self.payload).map(Body::Link),
            _ => Ok(Body::Other),
        }
    }
}

/// The code of an `NLMSG_ERROR` payload: 0 for an acknowledgement, else the positive errno.
pub fn error_code(payload: &[u8]) -> Result<i32, DecodeError> {
    check_length("netlink error", payload, ERROR_CODE_BYTES)?;
    let raw = u32_at(payload, 0) as i32;
    match raw.checked_neg() {
        Some(code) if code >= 0 => Ok(code),
        _ => Err(DecodeError::ErrorCodeInvalid { code: raw }),
    }
}

/// The messages of a datagram, in order. After the first error it yields nothing more.
#[derive(Clone, Debug)]
pub struct Messages<'a> {
    rest: &'a [u8],
}

/// Iterates the messages of `datagram`.
pub fn messages(datagram: &[u8]) -> Messages<'_> {
    Messages { rest: datagram }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = std::mem::take(&mut self.rest);
        let header = match Header::decode(rest) {
            Ok(header) => header,
            Err(error) => return Some(Err(error)),
        };
        let length = header.length as usize;
        if length < HEADER_BYTES {
            return Some(Err(DecodeError::LengthBelowHeader {
                length: header.length,
            }));
        }
        if length > rest.len() {
            return Some(Err(DecodeError::LengthBeyondData {
                length: header.length,
                available: rest.len(),
            }));
        }
        self.rest = after(rest, length);
        Some(Ok(Message {
            header,
            payload: &rest[HEADER_BYTES..length],
        }))
    }
}

/// One route attribute: its type (without the nested and byte-order bits) and value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attribute<'a> {
    pub kind: u16,
    pub value: &'a [u8],
}

/// The route attributes of a payload's tail, in order. After the first error it yields
/// nothing more.
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    rest: &'a [u8],
}

/// Iterates the attributes in `bytes`.
pub fn attributes(bytes: &[u8]) -> Attributes<'_> {
    Attributes { rest: bytes }
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Result<Attribute<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = std::mem::take(&mut self.rest);
        if rest.len() < ATTRIBUTE_HEADER_BYTES {
            return Some(Err(DecodeError::AttributeHeaderTruncated {
                available: rest.len(),
            }));
        }
        let length = u16_at(rest, 0);
        let kind = u16_at(rest, 2) & ATTRIBUTE_TYPE_MASK;
        if usize::from(length) < ATTRIBUTE_HEADER_BYTES {
            return Some(Err(DecodeError::AttributeLengthBelowHeader {
                kind,
                length,
            }));
        }
        if usize::from(length) > rest.len() {
            return Some(Err(DecodeError::AttributeLengthBeyondData {
                kind,
                length,
                available: rest.len(),
            }));
        }
        self.rest = after(rest, usize::from(length));
        Some(Ok(Attribute {
            kind,
            value: &rest[ATTRIBUTE_HEADER_BYTES..usize::from(length)],
        }))
    }
}

/// Checks that `bytes` is a well-formed sequence of attributes.
fn validate_attributes(bytes: &[u8]) -> Result<(), DecodeError> {
    attributes(bytes).try_for_each(|attribute| attribute.map(|_| ()))
}

/// The first attribute of type `kind` among well-formed attributes.
fn find_attribute(bytes: &[u8], kind: u16) -> Option<&[u8]> {
    attributes(bytes)
        .map_while(Result::ok)
        .find(|attribute| attribute.kind == kind)
        .map(|attribute| attribute.value)
}

/// An IPv4 (4 bytes) or IPv6 (16 bytes) address, else None.
pub fn decode_ip(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(octets) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    <[u8; 16]>::try_from(bytes)
        .ok()
        .map(|octets| IpAddr::V6(Ipv6Addr::from(octets)))
}

/// `struct ifaddrmsg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressHeader {
    pub family: u8,
    pub prefix_length: u8,
    /// The low 8 bits of the address flags (`IFA_FLAGS` has all of them).
    pub flags: u8,
    pub scope: u8,
    pub interface_index: u32,
}

impl AddressHeader {
    fn write(&self, out: &mut [u8; IFADDRMSG_BYTES]) {
        out[0] = self.family;
        out[1] = self.prefix_length;
        out[2] = self.flags;
        out[3] = self.scope;
        out[4..8].copy_from_slice(&self.interface_index.to_ne_bytes());
    }
}

/// An address message (`RTM_NEWADDR`, `RTM_DELADDR`) whose attributes were checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressMessage<'a> {
    pub header: AddressHeader,
    pub(crate) attributes: &'a [u8],
}

impl<'a> AddressMessage<'a> {
    /// Decodes an address payload and checks all its attributes.
    pub fn decode(payload: &'a [u8]) -> Result<Self, DecodeError> {
        check_length("ifaddrmsg", payload, IFADDRMSG_BYTES)?;
        let attributes = &payload[IFADDRMSG_BYTES..];
        validate_attributes(attributes)?;
        Ok(AddressMessage {
            header: AddressHeader {
                family: payload[0],
                prefix_length: payload[1],
                flags: payload[2],
                scope: payload[3],
                interface_index: u32_at(payload, 4),
            },
            attributes,
        })
    }

    /// The attribute bytes (well-formed).
    pub fn attribute_bytes(&self) -> &'a [u8] {
        self.attributes
    }

    pub fn attributes(&self) -> impl Iterator<Item = Attribute<'a>> + use<'a> {
        attributes(self.attributes).map_while(Result::ok)
    }

    /// The value of the first attribute of type `kind`.
    pub fn attribute(&self, kind: u16) -> Option<&'a [u8]> {
        find_attribute(self.attributes, kind)
    }

    /// The interface's own address: `IFA_LOCAL` when present (IPv4), else `IFA_ADDRESS`.
    pub fn address(&self) -> Option<IpAddr> {
        decode_ip(
            self.attribute(IFA_LOCAL)
                .or_else(|| self.attribute(IFA_ADDRESS))?,
        )
    }

    /// All flags: `IFA_FLAGS` when present (it has the bits beyond 8), else the header's.
    pub fn all_flags(&self) -> u32 {
        match self.attribute(IFA_FLAGS) {
            Some(&[a, b, c, d]) => u32::from_ne_bytes([a, b, c, d]),
            _ => u32::from(self.header.flags),
        }
    }
}

/// A link message (`RTM_NEWLINK`, `RTM_DELLINK`) whose attributes were checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkMessage<'a> {
    pub family: u8,
    /// The device type (`ARPHRD_*`).
    pub device_type: u16,
    pub index: u32,
    /// `IFF_*` flags.
    pub flags: u32,
    pub change: u32,
    attributes: &'a [u8],
}

impl<'a> LinkMessage<'a> {
    /// Decodes a link payload and checks all its attributes.
    pub fn decode(payload: &'a [u8]) -> Result<Self, DecodeError> {
        check_length("ifinfomsg", payload, IFINFOMSG_BYTES)?;
        let attributes = &payload[IFINFOMSG_BYTES..];
        validate_attributes(attributes)?;
        Ok(LinkMessage {
            family: payload[0],
            device_type: u16_at(payload, 2),
            index: u32_at(payload, 4),
            flags: u32_at(payload, 8),
            change: u32_at(payload, 12),
            attributes,
        })
    }

    pub fn attributes(&self) -> impl Iterator<Item = Attribute<'a>> + use<'a> {
        attributes(self.attributes).map_while(Result::ok)
    }

    /// The value of the first attribute of type `kind`.
    pub fn attribute(&self, kind: u16) -> Option<&'a [u8]> {
        find_attribute(self.attributes, kind)
    }

    /// The interface name (`IFLA_IFNAME`) up to its first NUL.
    pub fn name(&self) -> Option<&'a [u8]> {
        let value = self.attribute(IFLA_IFNAME)?;
        let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
        Some(&value[..end])
    }

    /// The hardware address (`IFLA_ADDRESS`).
    pub fn hardware_address(&self) -> Option<&'a [u8]> {
        self.attribute(IFLA_ADDRESS)
    }

    pub fn is_up(&self) -> bool {
        self.flags & IFF_UP != 0
    }

    pub fn has_carrier(&self) -> bool {
        self.flags & IFF_LOWER_UP != 0
    }
}

/// Writes one message into a caller's buffer: the header first, then payload bytes and
/// attributes; [`Writer::finish`] sets the length.
#[derive(Debug)]
pub struct Writer<'b> {
    buffer: &'b mut [u8],
    length: usize,
}

impl<'b> Writer<'b> {
    /// Starts a request message of type `kind` (`NLM_F_REQUEST` is added to `flags`).
    pub fn new(
        buffer: &'b mut [u8],
        kind: u16,
        flags: u16,
        sequence: u32,
    ) -> Result<Self, EncodeError> {
        if buffer.len() < HEADER_BYTES {
            return Err(EncodeError::BufferTooSmall {
                needed: HEADER_BYTES,
                available: buffer.len(),
            });
        }
        Header {
            length: HEADER_BYTES as u32,
            kind,
            flags: flags | NLM_F_REQUEST,
            sequence,
            port: 0,
        }
        .write(&mut buffer[..HEADER_BYTES]);
        Ok(Writer {
            buffer,
            length: HEADER_BYTES,
        })
    }

    fn reserve(&mut self, count: usize) -> Result<&mut [u8], EncodeError> {
        let end = self.length.saturating_add(count);
        if u32::try_from(end).is_err() {
            return Err(EncodeError::MessageTooLong { length: end });
        }
        if end > self.buffer.len() {
            return Err(EncodeError::BufferTooSmall {
                needed: end,
                available: self.buffer.len(),
            });
        }
        let start = self.length;
        self.length = end;
        Ok(&mut self.buffer[start..end])
    }

    /// Appends raw payload bytes (a fixed header such as `ifaddrmsg`).
    pub fn put(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        self.reserve(bytes.len())?.copy_from_slice(bytes);
        Ok(())
    }

    /// Appends an attribute, padded with zeros to 4 bytes.
    pub fn put_attribute(&mut self, kind: u16, value: &[u8]) -> Result<(), EncodeError> {
        self.put_attribute_parts(kind, &[value])
    }

    /// Appends an attribute whose value is the concatenation of `parts`.
    fn put_attribute_parts(&mut self, kind: u16, parts: &[&[u8]]) -> Result<(), EncodeError> {
        let value_length: usize = parts.iter().map(|part| part.len()).sum();
        let length = ATTRIBUTE_HEADER_BYTES + value_length;
        let Ok(length_field) = u16::try_from(length) else {
            return Err(EncodeError::AttributeTooLong {
                kind,
                length: value_length,
            });
        };
        let out = self.reserve(align4(length))?;
        out[0..2].copy_from_slice(&length_field.to_ne_bytes());
        out[2..4].copy_from_slice(&kind.to_ne_bytes());
        let mut at = ATTRIBUTE_HEADER_BYTES;
        for part in parts {
            out[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        out[at..].fill(0);
        Ok(())
    }

    /// Sets the length in the header; returns it (the message is `buffer[..length]`).
    pub fn finish(self) -> usize {
        // `reserve` keeps the length within u32.
        let length = self.length as u32;
        self.buffer[0..4].copy_from_slice(&length.to_ne_bytes());
        self.length
    }
}

/// An address on an interface: what `ip addr add|del ADDRESS/PREFIX dev INDEX` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InterfaceAddress {
    pub interface_index: u32,
    pub address: IpAddr,
    pub prefix_length: u8,
}

/// What an address request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressChange {
    /// `RTM_NEWADDR` with `NLM_F_CREATE | NLM_F_EXCL`: fails with EEXIST when present.
    Add,
    /// `RTM_NEWADDR` with `NLM_F_CREATE | NLM_F_REPLACE`: already present is fine.
    Replace,
    /// `RTM_DELADDR`.
    Delete,
}

fn interface_index_field(index: u32) -> Result<[u8; 4], EncodeError> {
    match i32::try_from(index) {
        Ok(value) if value > 0 => Ok(value.to_ne_bytes()),
        _ => Err(EncodeError::InterfaceIndexInvalid { index }),
    }
}

/// `RT_SCOPE_HOST`: valid only inside this host.
pub const RT_SCOPE_HOST: u8 = 254;
/// `RT_SCOPE_UNIVERSE`: a global address.
pub const RT_SCOPE_UNIVERSE: u8 = 0;

/// The scope an address is added with, as `ip address add` chooses it: host for loopback
/// addresses (the kernel refuses any other scope for them with EINVAL, "ipv4: Invalid scope
/// value"), universe otherwise.
pub fn address_scope(address: IpAddr) -> u8 {
    if address.is_loopback() {
        RT_SCOPE_HOST
    } else {
        RT_SCOPE_UNIVERSE
    }
}

/// Encodes an acknowledged address request into `buffer`; returns its length. The address is
/// given as both `IFA_LOCAL` and `IFA_ADDRESS` (no peer), so the kernel matches the
/// configured address, its prefix length and its interface.
pub fn encode_address_change(
    buffer: &mut [u8],
    sequence: u32,
    change: AddressChange,
    address: &InterfaceAddress,
) -> Result<usize, EncodeError> {
    let (family, max, octets, octet_count) = match address.address {
        IpAddr::V4(v4) => {
            let mut octets = [0; 16];
            octets[..4].copy_from_slice(&v4.octets());
            (AF_INET, 32, octets, 4)
        }
        IpAddr::V6(v6) => (AF_INET6, 128, v6.octets(), 16),
    };
    if address.prefix_length > max {
        return Err(EncodeError::PrefixLengthInvalid {
            prefix_length: address.prefix_length,
            max,
        });
    }
    interface_index_field(address.interface_index)?;
    let (kind, flags) = match change {
        AddressChange::Add => (RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL),
        AddressChange::Replace => (RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE),
        AddressChange::Delete => (RTM_DELADDR, NLM_F_ACK),
    };
    let mut writer = Writer::new(buffer, kind, flags, sequence)?;
    let mut header = [0; IFADDRMSG_BYTES];
    AddressHeader {
        family,
        prefix_length: address.prefix_length,
        flags: 0,
        scope: address_scope(address.address),
        interface_index: address.interface_index,
    }
    .write(&mut header);
    writer.put(&header)?;
    writer.put_attribute(IFA_LOCAL, &octets[..octet_count])?;
    writer.put_attribute(IFA_ADDRESS, &octets[..octet_count])?;
    Ok(writer.finish())
}

/// Encodes an acknowledged `RTM_DELADDR` for an address exactly as the kernel reported it:
/// its header and every attribute but `IFA_CACHEINFO` (the kernel's output, not part of the
/// address).
pub fn encode_delete_reported(
    buffer: &mut [u8],
    sequence: u32,
    message: &AddressMessage<'_>,
) -> Result<usize, EncodeError> {
    let mut writer = Writer::new(buffer, RTM_DELADDR, NLM_F_ACK, sequence)?;
    let mut header = [0; IFADDRMSG_BYTES];
    message.header.write(&mut header);
    writer.put(&header)?;
    for attribute in message.attributes() {
        if attribute.kind != IFA_CACHEINFO {
            writer.put_attribute(attribute.kind, attribute.value)?;
        }
    }
    Ok(writer.finish())
}

/// Encodes a dump of every address of `family`.
pub fn encode_address_dump(
    buffer: &mut [u8],
    sequence: u32,
    family: AddressFamily,
) -> Result<usize, EncodeError> {
    let mut writer = Writer::new(buffer, RTM_GETADDR, NLM_F_DUMP, sequence)?;
    writer.put(&[family.number(), 0, 0, 0, 0, 0, 0, 0])?;
    Ok(writer.finish())
}

/// `struct ifinfomsg` with family `AF_UNSPEC`.
fn ifinfomsg(index: [u8; 4], flags: u32, change: u32) -> [u8; IFINFOMSG_BYTES] {
    let mut out = [0; IFINFOMSG_BYTES];
    out[4..8].copy_from_slice(&index);
    out[8..12].copy_from_slice(&flags.to_ne_bytes());
    out[12..16].copy_from_slice(&change.to_ne_bytes());
    out
}

/// Encodes an acknowledged `RTM_GETLINK` of the interface with this index.
pub fn encode_link_by_index(
    buffer: &mut [u8],
    sequence: u32,
    index: u32,
) -> Result<usize, EncodeError> {
    let index = interface_index_field(index)?;
    let mut writer = Writer::new(buffer, RTM_GETLINK, NLM_F_ACK, sequence)?;
    writer.put(&ifinfomsg(index, 0, 0))?;
    Ok(writer.finish())
}

/// Encodes an acknowledged `RTM_GETLINK` of the interface called `name`.
pub fn encode_link_by_name(
    buffer: &mut [u8],
    sequence: u32,
    name: &str,
) -> Result<usize, EncodeError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > INTERFACE_NAME_BYTES_MAX || bytes.contains(&0) {
        return Err(EncodeError::InterfaceNameInvalid {
            length: bytes.len(),
        });
    }
    let mut writer = Writer::new(buffer, RTM_GETLINK, NLM_F_ACK, sequence)?;
    writer.put(&ifinfomsg([0; 4], 0, 0))?;
    writer.put_attribute_parts(IFLA_IFNAME, &[bytes, &[0]])?;
    Ok(writer.finish())
}

/// Encodes an acknowledged `RTM_NEWLINK` that sets the interface administratively up or down
/// (like `ip link set dev X up|down`): only `IFF_UP` changes.
pub fn encode_set_link_up(
    buffer: &mut [u8],
    sequence: u32,
    index: u32,
    up: bool,
) -> Result<usize, EncodeError> {
    let index = interface_index_field(index)?;
    let flags = if up { IFF_UP } else { 0 };
    let mut writer = Writer::new(buffer, RTM_NEWLINK, NLM_F_ACK, sequence)?;
    writer.put(&ifinfomsg(index, flags, IFF_UP))?;
    Ok(writer.finish())
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
