//! A tiny HTTP responder whose answer names its host: the "service" of probe tests and of the
//! failover benchmark. It binds with IP_FREEBIND, so it can start before its (relocatable)
//! address is configured, and it answers as soon as the address arrives.

use std::io::{self, Read, Write};
use std::net::{SocketAddrV4, TcpListener};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Longest request read.
const REQUEST_BYTES_MAX: usize = 4096;
/// A client gets this long to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// Answers `GET` requests on `bind` with `name` until `lifetime` has passed.
pub fn serve_name(bind: SocketAddrV4, name: &str, lifetime: Duration) -> io::Result<()> {
    let listener = listen_freebind(bind)?;
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + lifetime;
    let response = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}\n",
        name.len() + 1
    );
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false)?;
                stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
                stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
                let mut request = Vec::with_capacity(512);
                let mut chunk = [0u8; 512];
                while request.len() < REQUEST_BYTES_MAX
                    && !request.windows(4).any(|window| window == b"\r\n\r\n")
                {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(read) => request.extend_from_slice(&chunk[..read]),
                    }
                }
                let _ = stream.write_all(response.as_bytes());
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                // Poll: keeps the loop bounded by the deadline without a second thread.
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

fn listen_freebind(bind: SocketAddrV4) -> io::Result<TcpListener> {
    // SAFETY: socket(2); checked before use.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor, owned here only.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let one: libc::c_int = 1;
    set_option(&fd, libc::IPPROTO_IP, libc::IP_FREEBIND, one)?;
    set_option(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, one)?;
    let address = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: bind.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*bind.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    use std::os::fd::AsRawFd;
    // SAFETY: valid descriptor; pointer and length of a sockaddr_in.
    if unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&address as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: valid, bound descriptor.
    if unsafe { libc::listen(fd.as_raw_fd(), 64) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpListener::from(fd))
}

fn set_option(
    fd: &OwnedFd,
    level: libc::c_int,
    option: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: valid descriptor; pointer and length of a c_int.
    let result = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
