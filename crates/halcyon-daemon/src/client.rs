//! A minimal HTTP/1.1 client for the daemon's own API (node to node, and the CLI): one request
//! per connection, bounded in time and size. Enough for JSON over loopback or a LAN; TLS comes
//! with the security issue.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use crate::platform::{Network, TcpNetwork};

/// Largest response body accepted.
pub const RESPONSE_MAX_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_str(&self.body).map_err(|e| format!("bad JSON from the API: {e}"))
    }
}

/// Sends one request over TCP; `body` is sent as JSON when given.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    limit: Duration,
) -> Result<Response, String> {
    request_via(&TcpNetwork, addr, method, path, body, limit).await
}

/// [`request`] over a given network (the simulator's, for node-to-node calls).
pub async fn request_via(
    network: &dyn Network,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    limit: Duration,
) -> Result<Response, String> {
    request_with(network, addr, method, path, &[], body, limit).await
}

/// [`request_via`] with more headers (a token, a node's signature). A header whose name or
/// value holds a line break is refused, not sent.
pub async fn request_with(
    network: &dyn Network,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<&str>,
    limit: Duration,
) -> Result<Response, String> {
    if let Some((name, _)) = headers
        .iter()
        .find(|(n, v)| n.contains(['\r', '\n', ':']) || v.contains(['\r', '\n']))
    {
        return Err(format!("{addr}: header {name:?} holds a line break"));
    }
    timeout(
        limit,
        request_inner(network, addr, method, path, headers, body),
    )
    .await
    .map_err(|_| format!("{addr}: no answer within {limit:?}"))?
}

async fn request_inner(
    network: &dyn Network,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<&str>,
) -> Result<Response, String> {
    let mut stream = network
        .connect(addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let body = body.unwrap_or("");
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    stream
        .write_all(body.as_bytes())
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut raw = Vec::new();
    let mut limited = (&mut stream).take(RESPONSE_MAX_BYTES as u64);
    limited
        .read_to_end(&mut raw)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    parse_response(&raw).map_err(|e| format!("{addr}: {e}"))
}

fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("incomplete HTTP response")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.lines();
    let status_line = lines.next().ok_or("empty HTTP response")?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let mut body = raw[split + 4..].to_vec();
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunked body")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_parsed_plain_and_chunked() {
        let r = parse_response(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_str()), (404, "{}"));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, "abcde");
        assert!(parse_response(b"garbage").is_err());
    }
}
