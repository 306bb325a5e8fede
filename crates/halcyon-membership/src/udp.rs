//! UDP heartbeats for an ip network.
//!
//! Invariants: one non-blocking socket bound to this node's address on the network; datagrams
//! go to every configured peer address; datagrams from an address that is not a configured
//! peer, or longer than [`SEALED_SIZE_MAX_BYTES`], are dropped before decoding; waiting uses
//! `poll(2)` with the caller's timeout, so no loop spins.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::heartbeat::LinkPeer;
use crate::link::{HeartbeatLink, addresses_of};
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
}
