//! Link-layer address announcements and probes: gratuitous ARP and the ARP probe over a raw
//! `AF_PACKET` socket (IPv4), unsolicited neighbour advertisements over a raw ICMPv6 socket.
//! Both need `CAP_NET_RAW`. A socket belongs to the network namespace of the thread that opens
//! it, so an announcer opened at takeover keeps announcing on the right interface whichever
//! thread polls it later.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

const ETH_P_ARP: u16 = 0x0806;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
const ARP_PACKET_BYTES: usize = 28;
const BROADCAST: [u8; 6] = [0xff; 6];
/// Most packets looked at while waiting for an answer to a probe (the wait is also bounded in
/// time; this bounds a flood).
const PROBE_PACKETS_MAX: usize = 10_000;
/// Probes sent for one check (spread over the first half of the wait), in case one is lost.
const PROBES: u32 = 2;

fn owned_socket(domain: i32, kind: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked and owned at once.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn link_address(index: u32, destination: [u8; 6]) -> libc::sockaddr_ll {
    // SAFETY: an all-zero sockaddr_ll is valid; the fields that matter are set below.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = ETH_P_ARP.to_be();
    address.sll_ifindex = index as i32;
    address.sll_halen = 6;
    address.sll_addr[..6].copy_from_slice(&destination);
    address
}

/// An ARP packet (Ethernet, IPv4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ArpPacket {
    pub operation: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_mac: [u8; 6],
    pub target_ip: Ipv4Addr,
}

impl ArpPacket {
    pub fn encode(&self) -> [u8; ARP_PACKET_BYTES] {
        let mut p = [0u8; ARP_PACKET_BYTES];
        p[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
        p[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
        p[4] = 6;
        p[5] = 4;
        p[6..8].copy_from_slice(&self.operation.to_be_bytes());
        p[8..14].copy_from_slice(&self.sender_mac);
        p[14..18].copy_from_slice(&self.sender_ip.octets());
        p[18..24].copy_from_slice(&self.target_mac);
        p[24..28].copy_from_slice(&self.target_ip.octets());
        p
    }

    pub fn decode(p: &[u8]) -> Option<Self> {
        if p.len() < ARP_PACKET_BYTES || p[0..6] != [0, 1, 8, 0, 6, 4] {
            return None;
        }
        let mac = |r: std::ops::Range<usize>| <[u8; 6]>::try_from(&p[r]).ok();
        let ip = |r: std::ops::Range<usize>| <[u8; 4]>::try_from(&p[r]).ok().map(Ipv4Addr::from);
        Some(ArpPacket {
            operation: u16::from_be_bytes([p[6], p[7]]),
            sender_mac: mac(8..14)?,
            sender_ip: ip(14..18)?,
            target_mac: mac(18..24)?,
            target_ip: ip(24..28)?,
        })
    }
}

/// A raw ARP socket that sends on one interface and, unless bound ([`ArpListener`]),
/// receives nothing: the announcer's.
///
/// Linux hooks a packet socket to the packets of its protocol when it is created with one, or
/// bound with one; unhooking it (a bind to another protocol or interface, and every close)
/// waits for an RCU grace period (`synchronize_net`), 8-16 ms on the project's machines. A
/// socket created with protocol 0 and bound later is hooked once, at the bind, without that
/// wait; one never bound is never hooked. Closes still wait: the callers close these sockets
/// off the failover's path (the probe's after its answer is delivered, the announcer's on a
/// blocking thread), where the wait stalls nothing.
pub(crate) struct ArpSocket {
    fd: OwnedFd,
    index: u32,
    mac: [u8; 6],
}

/// An ARP socket bound to the ARP packets of one interface: the probe's.
pub(crate) struct ArpListener(ArpSocket);

impl ArpSocket {
    /// Opens a socket sending ARP on interface `index`, whose hardware address is `mac`;
    /// it is never bound, so it queues no packet.
    pub fn sender(index: u32, mac: [u8; 6]) -> io::Result<Self> {
        let fd = owned_socket(libc::AF_PACKET, libc::SOCK_DGRAM, 0)?;
        Ok(ArpSocket { fd, index, mac })
    }

    /// Opens a socket that sends and receives ARP on interface `index`: created without a
    /// protocol, then bound to ARP on the interface (hooked once, without waiting).
    pub fn listener(index: u32, mac: [u8; 6]) -> io::Result<ArpListener> {
        let socket = Self::sender(index, mac)?;
        let local = link_address(index, [0; 6]);
        // SAFETY: bind with a pointer to a live sockaddr_ll of the stated size.
        let rc = unsafe {
            libc::bind(
                socket.fd.as_raw_fd(),
                (&local as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ArpListener(socket))
    }

    fn send(&self, packet: &ArpPacket) -> io::Result<()> {
        let bytes = packet.encode();
        let destination = link_address(self.index, BROADCAST);
        // SAFETY: sendto(2) of a live buffer to a live sockaddr_ll of the stated size.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&destination as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// A gratuitous ARP request for `address` (sender and target are the address): receivers
    /// that know the address update their neighbour entry to this interface's hardware address.
    pub fn announce(&self, address: Ipv4Addr) -> io::Result<()> {
        self.send(&ArpPacket {
            operation: ARP_REQUEST,
            sender_mac: self.mac,
            sender_ip: address,
            target_mac: [0; 6],
            target_ip: address,
        })
    }
}

impl ArpListener {
    /// Asks whether some other host answers for `address` (an RFC 5227 probe: sender address
    /// 0.0.0.0, so no one's neighbour table learns anything). Waits `wait` for an answer; the
    /// hardware address of the first host answering, or claiming the address itself.
    pub fn probe(&self, address: Ipv4Addr, wait: Duration) -> io::Result<Option<[u8; 6]>> {
        let probe = ArpPacket {
            operation: ARP_REQUEST,
            sender_mac: self.0.mac,
            sender_ip: Ipv4Addr::UNSPECIFIED,
            target_mac: [0; 6],
            target_ip: address,
        };
        let started = Instant::now();
        let deadline = started + wait;
        let mut probes_sent = 0;
        let mut buffer = [0u8; 256];
        for _ in 0..PROBE_PACKETS_MAX {
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            // Spread the probes over the first half of the wait.
            if probes_sent < PROBES && now >= started + wait / 2 / PROBES * probes_sent {
                self.0.send(&probe)?;
                probes_sent += 1;
            }
            let next_probe = if probes_sent < PROBES {
                started + wait / 2 / PROBES * probes_sent
            } else {
                deadline
            };
            let until = next_probe.min(deadline);
            let millis = until.saturating_duration_since(now).as_millis().max(1);
            let mut poll = libc::pollfd {
                fd: self.0.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll(2) on one live pollfd.
            let ready = unsafe { libc::poll(&mut poll, 1, millis.min(1000) as i32) };
            if ready < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if ready == 0 {
                continue;
            }
            // SAFETY: an all-zero sockaddr_ll is valid for recvfrom to fill.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: recvfrom(2) into live buffers of the stated sizes.
            let received = unsafe {
                libc::recvfrom(
                    self.0.fd.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    libc::MSG_DONTWAIT,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut from_len,
                )
            };
            if received < 0 {
                continue;
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            if let Some(answer) = ArpPacket::decode(&buffer[..received as usize])
                && answers_for(&answer, address, self.0.mac)
            {
                return Ok(Some(answer.sender_mac));
            }
        }
        Ok(None)
    }
}

/// True when `packet` shows another host using `address`: a reply from it, or a request or
/// announcement with it as sender address.
fn answers_for(packet: &ArpPacket, address: Ipv4Addr, own_mac: [u8; 6]) -> bool {
    packet.sender_ip == address
        && packet.sender_mac != own_mac
        && (packet.operation == ARP_REPLY || packet.operation == ARP_REQUEST)
}

/// An ICMPv6 socket sending unsolicited neighbour advertisements on one interface.
pub(crate) struct NeighbourAdvertiser {
    fd: OwnedFd,
    index: u32,
    mac: [u8; 6],
}

/// The all-nodes multicast address.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

impl NeighbourAdvertiser {
    pub fn open(index: u32, mac: [u8; 6]) -> io::Result<Self> {
        let fd = owned_socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6)?;
        // Neighbour discovery messages must have a hop limit of 255 (RFC 4861 7.1.2).
        for option in [libc::IPV6_MULTICAST_HOPS, libc::IPV6_UNICAST_HOPS] {
            set_int_option(&fd, libc::IPPROTO_IPV6, option, 255)?;
        }
        set_int_option(
            &fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_MULTICAST_IF,
            index as i32,
        )?;
        Ok(NeighbourAdvertiser { fd, index, mac })
    }

    /// An unsolicited neighbour advertisement for `address` with the override flag and this
    /// interface's hardware address, to all nodes. The kernel fills in the checksum.
    pub fn announce(&self, address: Ipv6Addr) -> io::Result<()> {
        let packet = neighbour_advertisement(address, self.mac);
        // SAFETY: an all-zero sockaddr_in6 is valid; the fields that matter are set below.
        let mut to: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        to.sin6_family = libc::AF_INET6 as u16;
        to.sin6_addr.s6_addr = ALL_NODES.octets();
        to.sin6_scope_id = self.index;
        // SAFETY: sendto(2) of a live buffer to a live sockaddr_in6 of the stated size.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&to as *const libc::sockaddr_in6).cast(),
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// ICMPv6 type 136 with the override flag, the target and a target link-layer address option.
pub(crate) fn neighbour_advertisement(address: Ipv6Addr, mac: [u8; 6]) -> [u8; 32] {
    let mut p = [0u8; 32];
    p[0] = 136;
    p[4] = 0x20; // override
    p[8..24].copy_from_slice(&address.octets());
    p[24] = 2; // target link-layer address
    p[25] = 1; // in units of 8 bytes
    p[26..32].copy_from_slice(&mac);
    p
}

fn set_int_option(fd: &OwnedFd, level: i32, option: i32, value: i32) -> io::Result<()> {
    // SAFETY: setsockopt with a pointer to a live int of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            option,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_packets_round_trip() {
        let p = ArpPacket {
            operation: ARP_REQUEST,
            sender_mac: [2, 0, 0, 0, 0, 1],
            sender_ip: Ipv4Addr::new(198, 18, 0, 50),
            target_mac: [0; 6],
            target_ip: Ipv4Addr::new(198, 18, 0, 50),
        };
        let bytes = p.encode();
        assert_eq!(&bytes[..8], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(ArpPacket::decode(&bytes), Some(p));
        assert_eq!(ArpPacket::decode(&bytes[..20]), None);
    }

    #[test]
    fn only_another_host_using_the_address_counts_as_an_answer() {
        let own = [2, 0, 0, 0, 0, 1];
        let other = [2, 0, 0, 0, 0, 2];
        let vip = Ipv4Addr::new(198, 18, 0, 50);
        let reply = ArpPacket {
            operation: ARP_REPLY,
            sender_mac: other,
            sender_ip: vip,
            target_mac: own,
            target_ip: Ipv4Addr::UNSPECIFIED,
        };
        assert!(answers_for(&reply, vip, own));
        assert!(!answers_for(
            &ArpPacket {
                sender_mac: own,
                ..reply
            },
            vip,
            own
        ));
        let unrelated = ArpPacket {
            sender_ip: Ipv4Addr::new(198, 18, 0, 9),
            ..reply
        };
        assert!(!answers_for(&unrelated, vip, own));
    }

    /// `/proc/net/packet`'s row for the socket `fd` of this namespace: (protocol, running).
    fn packet_hook(fd: &OwnedFd) -> Option<(String, bool)> {
        use std::os::unix::fs::MetadataExt;
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .ok()?
            .ino();
        let table = std::fs::read_to_string("/proc/net/packet").ok()?;
        table.lines().skip(1).find_map(|row| {
            // sk RefCnt Type Proto Iface R Rmem User Inode
            let cells: Vec<&str> = row.split_whitespace().collect();
            (cells.get(8)?.parse::<u64>().ok()? == inode)
                .then(|| (cells[3].to_owned(), cells[5] == "1"))
        })
    }

    /// The announcer's socket is never hooked to a packet type (it queues nothing, and no
    /// unhooking makes anything wait); the probe's is hooked to ARP once, by its bind. A
    /// socket created with ARP as its protocol would be hooked at creation and unhooked by its
    /// bind, which waits for an RCU grace period on the failover's path.
    #[test]
    fn the_announcers_socket_is_never_hooked_and_the_probes_is_hooked_to_arp() {
        if crate::testing::skip_unless_root(
            "the_announcers_socket_is_never_hooked_and_the_probes_is_hooked_to_arp",
        ) {
            return;
        }
        let lo = 1;
        let sender = ArpSocket::sender(lo, [0; 6]).unwrap();
        assert_eq!(packet_hook(&sender.fd), Some(("0000".to_owned(), false)));
        let listener = ArpSocket::listener(lo, [0; 6]).unwrap();
        assert_eq!(packet_hook(&listener.0.fd), Some(("0806".to_owned(), true)));
    }

    #[test]
    fn a_neighbour_advertisement_overrides_and_names_the_hardware_address() {
        let p = neighbour_advertisement("fd00::50".parse().unwrap(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(p[0], 136);
        assert_eq!(p[4] & 0x20, 0x20);
        assert_eq!(&p[24..], &[2, 1, 2, 0, 0, 0, 0, 1]);
    }
}
