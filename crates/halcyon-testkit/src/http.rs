//! A small blocking HTTP/1.1 client: one request per connection (`Connection: close`), every
//! step bounded by one deadline, the response bounded in size. Enough for the daemon's JSON API
//! (over HTTPS with a cluster's CA: [`Tls`], [`request_tls`]) and the demo service (`halcyon
//! demo-http`, plain); not a general client (no chunked bodies, no redirects).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A client's TLS settings: servers' certificates checked against one cluster CA and the
/// address dialled; no client certificate. One value per cluster, so that its session cache
/// serves every request.
pub type Tls = Arc<rustls::ClientConfig>;

/// [`Tls`] with the CA certificate in `ca_file` (a cluster's `pki/ca.crt`).
pub fn tls_with_ca_file(ca_file: &Path) -> Result<Tls, String> {
    let cas = halcyon_pki::read_ca_certificates(ca_file).map_err(|e| e.to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    for der in cas {
        roots
            .add(rustls::pki_types::CertificateDer::from(der))
            .map_err(|e| format!("{}: {e}", ca_file.display()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Largest response accepted (head and body).
pub const RESPONSE_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Shortest time left for one step, so that a deadline just reached still gives a timeout
/// rather than "no timeout" (a zero timeout means none to the socket calls).
const STEP_MIN: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{address}: {source}")]
    Io {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("{address}: no complete answer within {limit:?}")]
    Timeout {
        address: SocketAddr,
        limit: Duration,
    },
    #[error("{address}: answer larger than {RESPONSE_MAX_BYTES} bytes")]
    TooLarge { address: SocketAddr },
    #[error("{address}: {problem}")]
    Malformed {
        address: SocketAddr,
        problem: String,
    },
}

/// `GET path`.
pub fn get(address: SocketAddr, path: &str, limit: Duration) -> Result<Response, Error> {
    request(address, "GET", path, None, limit)
}

/// `POST path` with a JSON body.
pub fn post(
    address: SocketAddr,
    path: &str,
    body: &str,
    limit: Duration,
) -> Result<Response, Error> {
    request(address, "POST", path, Some(body), limit)
}

/// Sends one request (a JSON body, if any) and reads the answer, all within `limit`.
pub fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    limit: Duration,
) -> Result<Response, Error> {
    request_as(address, method, path, None, body, limit)
}

/// [`request`] with an API token (`Authorization: Bearer TOKEN`), when given, in plain HTTP.
pub fn request_as(
    address: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    limit: Duration,
) -> Result<Response, Error> {
    request_tls(None, address, method, path, token, body, limit)
}

/// A connection, in the clear or over TLS.
enum Connection {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Connection {
    fn tcp(&self) -> &TcpStream {
        match self {
            Connection::Plain(tcp) => tcp,
            Connection::Tls(tls) => &tls.sock,
        }
    }
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Connection::Plain(tcp) => tcp.read(buf),
            Connection::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Connection::Plain(tcp) => tcp.write(buf),
            Connection::Tls(tls) => tls.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Connection::Plain(tcp) => tcp.flush(),
            Connection::Tls(tls) => tls.flush(),
        }
    }
}

/// [`request_as`] over HTTPS with `tls` when given (the server's certificate checked against
/// its CA and `address`), in plain HTTP without.
pub fn request_tls(
    tls: Option<&Tls>,
    address: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    limit: Duration,
) -> Result<Response, Error> {
    let deadline = Instant::now() + limit;
    let remaining = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(STEP_MIN)
    };
    let io = |source| Error::Io { address, source };
    let tcp = TcpStream::connect_timeout(&address, limit.max(STEP_MIN)).map_err(io)?;
    let _ = tcp.set_nodelay(true);
    let mut stream = match tls {
        Some(tls) => {
            let name = rustls::pki_types::ServerName::IpAddress(address.ip().into());
            let connection = rustls::ClientConnection::new(Arc::clone(tls), name)
                .map_err(|e| io(std::io::Error::other(e)))?;
            Connection::Tls(Box::new(rustls::StreamOwned::new(connection, tcp)))
        }
        None => Connection::Plain(tcp),
    };
    let body = body.unwrap_or("");
    let authorization =
        token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/json\r\n{authorization}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // The TLS handshake reads and writes within the first write.
    stream
        .tcp()
        .set_read_timeout(Some(remaining()))
        .and_then(|()| stream.tcp().set_write_timeout(Some(remaining())))
        .and_then(|()| stream.write_all(head.as_bytes()))
        .and_then(|()| stream.flush())
        .map_err(io)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let malformed = |problem: String| Error::Malformed { address, problem };
    loop {
        if let Some(response) = complete_response(&raw) {
            return response.map_err(malformed);
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout { address, limit });
        }
        if raw.len() > RESPONSE_MAX_BYTES {
            return Err(Error::TooLarge { address });
        }
        stream
            .tcp()
            .set_read_timeout(Some(remaining()))
            .map_err(io)?;
        match stream.read(&mut buf) {
            Ok(0) => return parse_response(&raw).map_err(malformed),
            // A TLS server that closed without its close_notify: the end, as in the clear.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {
                return parse_response(&raw).map_err(malformed);
            }
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Error::Timeout { address, limit });
            }
            Err(e) => return Err(io(e)),
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
    (raw.len() >= split + 4 + length).then(|| parse_response(&raw[..split + 4 + length]))
}

/// Parses a whole response (the connection was closed, or its length is known).
fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let split = find(raw, b"\r\n\r\n").ok_or("incomplete HTTP response")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status_line = head.lines().next().ok_or("empty HTTP response")?;
    let status: u16 = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    if head.lines().any(|l| {
        l.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    }) {
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
    use std::io::BufRead;
    use std::net::TcpListener;

    #[test]
    fn a_response_is_complete_by_its_length_or_when_closed() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhel";
        assert!(complete_response(raw).is_none());
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        let r = complete_response(raw).unwrap().unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "hello"));
        let r = parse_response(b"HTTP/1.0 404 Not Found\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_str()), (404, "{}"));
        assert_eq!(
            parse_response(b"garbage").unwrap_err(),
            "incomplete HTTP response"
        );
        assert_eq!(
            parse_response(b"SPDY 200\r\n\r\n").unwrap_err(),
            "bad status line \"SPDY 200\""
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello")
                .unwrap_err(),
            "chunked responses are not supported"
        );
    }

    /// A one-shot server on an ephemeral loopback port: answers `answer` after reading the
    /// request head and body, and hands the request back.
    fn serve_once(answer: &'static str) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let thread = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                request.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            request.push_str(&String::from_utf8(body).unwrap());
            stream.write_all(answer.as_bytes()).unwrap();
            request
        });
        (address, thread)
    }

    #[test]
    fn post_sends_its_body_and_reads_status_and_body() {
        let (address, server) =
            serve_once("HTTP/1.1 409 Conflict\r\nContent-Length: 17\r\n\r\n{\"error\":\"busy\"}\n");
        let r = post(address, "/v1/x", r#"{"node":"n2"}"#, Duration::from_secs(5)).unwrap();
        assert_eq!(r.status, 409);
        assert_eq!(r.json().unwrap()["error"], "busy");
        assert!(!r.is_success());
        let request = server.join().unwrap();
        assert!(request.starts_with("POST /v1/x HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("Content-Length: 13\r\n"), "{request}");
        assert!(request.ends_with("\r\n\r\n{\"node\":\"n2\"}"), "{request}");
    }

    #[test]
    fn an_answer_that_never_comes_is_a_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let started = Instant::now();
        let error = get(address, "/", Duration::from_millis(200)).unwrap_err();
        assert!(matches!(error, Error::Timeout { .. }), "{error}");
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(listener);
    }
}
