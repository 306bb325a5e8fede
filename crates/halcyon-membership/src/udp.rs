//! UDP heartbeats for an ip network.
//!
//! Invariants: one non-blocking socket bound to this node's address on the network; datagrams
//! go to every configured peer address; datagrams from an address that is not a configured
//! peer, or longer than [`SEALED_SIZE_MAX_BYTES`], are dropped before decoding; waiting uses
//! `poll(2)` with the caller's timeout, so no loop spins. The kernel stamps each datagram
//! with its receive time (`SO_TIMESTAMPNS`), so a heartbeat taken later
//! ([`HeartbeatLink::try_recv`]) is judged by when it arrived. (The kernel turns stamping on
//! a moment after the first socket of the machine asks; a datagram received before that is
//! stamped when it is read: later, never earlier, than it came.)

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime};

use crate::heartbeat::LinkPeer;
use crate::link::{Arrived, ArrivedAt, HeartbeatLink, addresses_of};
use crate::wire::SEALED_SIZE_MAX_BYTES;

/// Most datagrams dropped (unknown sender, oversized) in one `recv` call before it returns.
const DROPPED_PER_RECV_MAX: usize = 64;

pub struct UdpLink {
    socket: UdpSocket,
    network: u32,
    peers: Vec<(u32, SocketAddr)>,
    buffer: Vec<u8>,
    dropped_count: u64,
}

impl UdpLink {
    /// Bind `local` for `network`; heartbeats go to `peers` (node number, address).
    pub fn bind(
        network: u32,
        local: SocketAddr,
        peers: Vec<(u32, SocketAddr)>,
    ) -> io::Result<Self> {
        let socket = UdpSocket::bind(local)?;
        socket.set_nonblocking(true)?;
        stamp_arrivals(&socket)?;
        Ok(UdpLink {
            socket,
            network,
            peers,
            buffer: vec![0; SEALED_SIZE_MAX_BYTES + 1],
            dropped_count: 0,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Datagrams dropped so far (unknown sender or oversized).
    pub fn dropped_count(&self) -> u64 {
        self.dropped_count
    }

    fn is_peer(&self, ip: IpAddr) -> bool {
        self.peers.iter().any(|(_, a)| a.ip() == ip)
    }
}

/// Asks the kernel to stamp every datagram with its receive time (`SO_TIMESTAMPNS`).
fn stamp_arrivals(socket: &UdpSocket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt(2) on our socket with a valid int option value.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One datagram read without waiting: its length, sender and kernel receive time.
fn receive_stamped(
    socket: &UdpSocket,
    buffer: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<SystemTime>)> {
    // SAFETY: zeroed sockaddr_storage and msghdr are valid initial values.
    let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    // Room for one SCM_TIMESTAMPNS message (a timespec), 8-byte aligned.
    let mut control = [0u64; 8];
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_name = (&mut from as *mut libc::sockaddr_storage).cast();
    message.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: every pointer in `message` points at live buffers of the lengths given.
    let length = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut message, libc::MSG_DONTWAIT) };
    if length < 0 {
        return Err(io::Error::last_os_error());
    }
    let sender = socket_address(&from).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, "a datagram from no IP address")
    })?;
    let mut stamp = None;
    // SAFETY: the CMSG_* walk stays within `message`'s control buffer as the kernel filled it.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&message);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET
                && (*header).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let time: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(header).cast());
                stamp = Some(
                    SystemTime::UNIX_EPOCH + Duration::new(time.tv_sec as u64, time.tv_nsec as u32),
                );
            }
            header = libc::CMSG_NXTHDR(&message, header);
        }
    }
    Ok((length as usize, sender, stamp))
}

fn socket_address(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a: &libc::sockaddr_in = unsafe { &*(storage as *const _ as *const _) };
            Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))),
                u16::from_be(a.sin_port),
            ))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*(storage as *const _ as *const _) };
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)),
                u16::from_be(a.sin6_port),
            ))
        }
        _ => None,
    }
}

/// Wait until `socket` is readable or `timeout` passes; true when readable.
fn wait_readable(socket: &UdpSocket, timeout: Duration) -> io::Result<bool> {
    // Round up so that a sub-millisecond wait does not become a zero-timeout spin.
    let timeout_ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    let mut fd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `fd` is a valid pollfd for the duration of the call and nfds is 1.
    let ready = unsafe { libc::poll(&mut fd, 1, timeout_ms) };
    match ready {
        -1 => {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(error)
            }
        }
        0 => Ok(false),
        _ => Ok(true),
    }
}

impl HeartbeatLink for UdpLink {
    fn network(&self) -> u32 {
        self.network
    }

    /// Sends to every peer; a failure towards one peer does not stop the others (the first
    /// error is returned after all were tried).
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut first_error = None;
        for (_, address) in &self.peers {
            match self.socket.send_to(bytes, address) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {} // Full socket buffer: a lost beat.
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn set_peers(&mut self, peers: Vec<LinkPeer>) -> io::Result<()> {
        self.peers = addresses_of(&peers)?;
        Ok(())
    }

    fn recv(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        for _ in 0..DROPPED_PER_RECV_MAX {
            match self.socket.recv_from(&mut self.buffer) {
                Ok((len, from)) => {
                    if len > SEALED_SIZE_MAX_BYTES || !self.is_peer(from.ip()) {
                        self.dropped_count += 1;
                        continue;
                    }
                    return Ok(Some(self.buffer[..len].to_vec()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    if remaining.is_zero() || !wait_readable(&self.socket, remaining)? {
                        return Ok(None);
                    }
                }
                // ICMP errors from earlier sends surface here on some kernels: not ours to report.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    fn try_recv(&mut self) -> io::Result<Option<Arrived>> {
        for _ in 0..DROPPED_PER_RECV_MAX {
            match receive_stamped(&self.socket, &mut self.buffer) {
                Ok((len, from, stamp)) => {
                    if len > SEALED_SIZE_MAX_BYTES || !self.is_peer(from.ip()) {
                        self.dropped_count += 1;
                        continue;
                    }
                    return Ok(Some(Arrived {
                        bytes: self.buffer[..len].to_vec(),
                        at: stamp.map_or(ArrivedAt::Taken, ArrivedAt::Kernel),
                    }));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                // As in `recv`: ICMP errors of earlier sends, and interruptions.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}
