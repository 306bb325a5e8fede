//! A minimal blocking HTTP/1.1 client: one request per connection, every step bounded by one
//! deadline, the response bounded in size. Enough for the daemon's JSON API and the demo
//! service on loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Largest response accepted (head and body).
pub const RESPONSE_MAX_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// Sends one request and reads the answer, all within `limit`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    limit: Duration,
) -> Result<Response, String> {
    let deadline = Instant::now() + limit;
    let remaining = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut stream =
        TcpStream::connect_timeout(&addr, limit).map_err(|e| format!("{addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let body = body.unwrap_or("");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .set_write_timeout(Some(remaining()))
        .and_then(|()| stream.write_all(head.as_bytes()))
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(response) = complete_response(&raw) {
            return response.map_err(|e| format!("{addr}: {e}"));
        }
        if Instant::now() >= deadline {
            return Err(format!("{addr}: no complete answer within {limit:?}"));
        }
        if raw.len() > RESPONSE_MAX_BYTES {
            return Err(format!(
                "{addr}: answer larger than {RESPONSE_MAX_BYTES} bytes"
            ));
        }
        stream
            .set_read_timeout(Some(remaining()))
            .map_err(|e| format!("{addr}: {e}"))?;
        match stream.read(&mut buf) {
            Ok(0) => {
                return parse_response(&raw, true).map_err(|e| format!("{addr}: {e}"));
            }
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{addr}: {e}")),
        }
    }
}

/// The response once `raw` holds all of it according to its `Content-Length`.
fn complete_response(raw: &[u8]) -> Option<Result<Response, String>> {
    let split = find(raw, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let length: usize = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })?;
    (raw.len() >= split + 4 + length).then(|| parse_response(&raw[..split + 4 + length], true))
}

/// Parses a whole response (the connection was closed, or its length is known).
fn parse_response(raw: &[u8], complete: bool) -> Result<Response, String> {
    let split = find(raw, b"\r\n\r\n").ok_or(if complete {
        "incomplete HTTP response"
    } else {
        "no HTTP head yet"
    })?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status_line = head.lines().next().ok_or("empty HTTP response")?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Err("chunked responses are not supported".into());
    }
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&raw[split + 4..]).into_owned(),
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_complete_by_its_length_or_when_closed() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhel";
        assert!(complete_response(raw).is_none());
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        let r = complete_response(raw).unwrap().unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "hello"));
        let r = parse_response(b"HTTP/1.1 404 Not Found\r\n\r\n{}", true).unwrap();
        assert_eq!((r.status, r.body.as_str()), (404, "{}"));
        assert!(parse_response(b"garbage", true).is_err());
    }
}
