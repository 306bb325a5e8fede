//! A minimal HTTP/1.1 client for the daemon's own API (node to node, and the CLI), bounded in
//! time and size. Enough for JSON over loopback or a LAN. Over TLS: nodes through their
//! network (`platform::TlsNetwork`), which keeps its connections open between requests
//! ([`KeptConnections`]: no handshake per lease renewal), the CLI with [`request_tls`] and a
//! [`Tls`] that checks the nodes' certificates with the cluster CA, one request per
//! connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

use crate::POISONED;
use crate::platform::{Network, Stream, TcpNetwork};

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
    check_headers(headers).map_err(|e| format!("{addr}: {e}"))?;
    if let Some((kept, generation)) = network.kept() {
        let request = request_bytes(&addr.to_string(), method, path, headers, body, true);
        return request_kept(network, &kept, generation, addr, request, limit).await;
    }
    timeout(limit, async {
        let stream = network
            .connect(addr)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        exchange(stream, &addr.to_string(), method, path, headers, body)
            .await
            .map_err(|e| format!("{addr}: {e}"))
    })
    .await
    .map_err(|_| format!("{addr}: no answer within {limit:?}"))?
}

/// Idle connections kept per peer address (and runtime): as many as requests to one peer
/// usually overlap (a renewal, a forwarded commit, a report).
pub const KEPT_PER_PEER: usize = 4;
/// A connection idle for longer is closed, whether or not another request comes
/// ([`close_when_idle`]).
pub const KEPT_IDLE_MAX: Duration = Duration::from_secs(30);

/// Connections to other nodes' APIs kept open between requests (HTTP/1.1 keep-alive), so a
/// lease renewal or a forwarded commit does not pay a TCP and a TLS handshake each time.
///
/// A connection goes back here only after an answer read whole (its length known) that did
/// not close it. One is taken only if it was made with the TLS configurations in force (a
/// `generation`: after a credentials reload, requests go out on new connections), made on
/// the runtime asking (the daemon's API runtime and its node runtime keep theirs apart, so a
/// flood of API requests cannot delay a renewal's I/O), idle for less than
/// [`KEPT_IDLE_MAX`], and not closed by the peer meanwhile (a peer that restarted closed
/// them: checked before reuse, so it costs nothing). A request that fails on a kept
/// connection is not sent again: it fails as one on a new connection would, and the callers
/// go on as they do then (the next renewal, the leader's next address). A connection idle
/// for [`KEPT_IDLE_MAX`] is closed then, by a task that runs while any is kept: a peer's
/// server keeps a connection's buffers and task for as long as it is open.
#[derive(Default)]
pub struct KeptConnections {
    idle: Mutex<HashMap<(tokio::runtime::Id, SocketAddr), Vec<Kept>>>,
    opened: AtomicU64,
    reused: AtomicU64,
    /// The task of [`close_when_idle`] runs (at most one at a time).
    closing: AtomicBool,
}

struct Kept {
    stream: Pin<Box<dyn Stream>>,
    generation: u64,
    since: tokio::time::Instant,
}

impl Kept {
    /// Idle for less than [`KEPT_IDLE_MAX`] at `now`.
    fn fresh(&self, now: tokio::time::Instant) -> bool {
        now.duration_since(self.since) < KEPT_IDLE_MAX
    }
}

/// Connections opened and requests sent on a kept one, since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeptCounts {
    pub opened: u64,
    pub reused: u64,
}

impl KeptConnections {
    pub fn counts(&self) -> KeptCounts {
        KeptCounts {
            opened: self.opened.load(Ordering::Relaxed),
            reused: self.reused.load(Ordering::Relaxed),
        }
    }

    /// A usable kept connection to `addr` for this runtime; the unusable ones met on the way
    /// are closed.
    fn take(&self, addr: SocketAddr, generation: u64) -> Option<Pin<Box<dyn Stream>>> {
        let key = (tokio::runtime::Handle::current().id(), addr);
        let now = tokio::time::Instant::now();
        let mut idle = self.idle.lock().expect(POISONED);
        let kept = idle.get_mut(&key)?;
        while let Some(mut k) = kept.pop() {
            if k.generation == generation && k.fresh(now) && still_open(&mut k.stream) {
                self.reused.fetch_add(1, Ordering::Relaxed);
                return Some(k.stream);
            }
        }
        None
    }

    /// How many connections are kept now.
    fn kept(&self) -> usize {
        self.idle
            .lock()
            .expect(POISONED)
            .values()
            .map(Vec::len)
            .sum()
    }

    /// Closes the connections idle for [`KEPT_IDLE_MAX`] or more at `now`; when the next of
    /// the others will be (`None`: none is kept).
    fn close_idle(&self, now: tokio::time::Instant) -> Option<tokio::time::Instant> {
        let mut idle = self.idle.lock().expect(POISONED);
        idle.retain(|_, kept| {
            kept.retain(|k| k.fresh(now));
            !kept.is_empty()
        });
        idle.values()
            .flatten()
            .map(|k| k.since + KEPT_IDLE_MAX)
            .min()
    }

    /// Keeps `stream` to `addr` (its answer was read whole) for a later request.
    fn put(&self, addr: SocketAddr, generation: u64, stream: Pin<Box<dyn Stream>>) {
        let key = (tokio::runtime::Handle::current().id(), addr);
        let since = tokio::time::Instant::now();
        let mut idle = self.idle.lock().expect(POISONED);
        let kept = idle.entry(key).or_default();
        kept.retain(|k| k.generation == generation && k.fresh(since));
        if kept.len() < KEPT_PER_PEER {
            kept.push(Kept {
                stream,
                generation,
                since,
            });
        }
    }
}

/// Closes `kept`'s connections as they reach [`KEPT_IDLE_MAX`] idle, in a task that runs
/// until none is kept (started here unless one runs; it holds the connections weakly, so it
/// ends with them).
fn close_when_idle(kept: &Arc<KeptConnections>) {
    if kept.closing.swap(true, Ordering::AcqRel) {
        return;
    }
    let kept = Arc::downgrade(kept);
    tokio::spawn(async move {
        loop {
            let Some(connections) = kept.upgrade() else {
                return;
            };
            match connections.close_idle(tokio::time::Instant::now()) {
                Some(next) => {
                    drop(connections);
                    tokio::time::sleep_until(next).await;
                }
                None => {
                    connections.closing.store(false, Ordering::Release);
                    // One kept meanwhile found the task still running: carry on for it.
                    if connections.kept() == 0 || connections.closing.swap(true, Ordering::AcqRel) {
                        return;
                    }
                }
            }
        }
    });
}

/// Whether an idle connection can take a request: nothing to read on it, so the peer has not
/// closed it (end of stream, a reset) nor sent anything unasked. A TLS session ticket the
/// server sent after the handshake is consumed here without application data.
fn still_open(stream: &mut Pin<Box<dyn Stream>>) -> bool {
    use futures_util::FutureExt;
    let mut byte = [0u8; 1];
    stream.read(&mut byte).now_or_never().is_none()
}

/// Sends `request` (its bytes: [`request_bytes`]) on a connection kept by `kept` (or a new
/// one, then kept): the exchange runs in a task of its own, bounded by `limit`, so a caller
/// that stops waiting (the losing address of a race) does not close a connection in the
/// middle of an answer.
async fn request_kept(
    network: &dyn Network,
    kept: &Arc<KeptConnections>,
    generation: u64,
    addr: SocketAddr,
    request: Vec<u8>,
    limit: Duration,
) -> Result<Response, String> {
    let deadline = tokio::time::Instant::now() + limit;
    let stream = match kept.take(addr, generation) {
        Some(stream) => stream,
        None => {
            let stream = tokio::time::timeout_at(deadline, network.connect(addr))
                .await
                .map_err(|_| format!("{addr}: no answer within {limit:?}"))?
                .map_err(|e| format!("{addr}: {e}"))?;
            kept.opened.fetch_add(1, Ordering::Relaxed);
            stream
        }
    };
    let kept = Arc::clone(kept);
    let exchange = tokio::spawn(async move {
        let answered = tokio::time::timeout_at(deadline, exchange_keeping(stream, request)).await;
        match answered {
            Err(_) => Err(format!("{addr}: no answer within {limit:?}")),
            Ok(Err(e)) => Err(format!("{addr}: {e}")),
            Ok(Ok((response, stream))) => {
                if let Some(stream) = stream {
                    kept.put(addr, generation, stream);
                    close_when_idle(&kept);
                }
                Ok(response)
            }
        }
    });
    exchange
        .await
        .map_err(|e| format!("{addr}: the request's task ended: {e}"))?
}

/// Sends `request` on `stream` and reads its answer to the end of its body (by its
/// `Content-Length`, or its last chunk); gives the stream back when it may take another
/// request (HTTP/1.1, the server did not ask to close it).
async fn exchange_keeping(
    mut stream: Pin<Box<dyn Stream>>,
    request: Vec<u8>,
) -> Result<(Response, Option<Pin<Box<dyn Stream>>>), String> {
    stream
        .write_all(&request)
        .await
        .map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let end = loop {
        match answer_length(&raw)? {
            Some(Framed::Length(end)) if raw.len() >= end => break end,
            Some(Framed::Chunked(split)) => {
                if let Some((_, taken)) = dechunk(&raw[split..])? {
                    break split + taken;
                }
            }
            Some(Framed::UntilClose) => {
                // Read to the end, as without keep-alive; the connection is not kept.
                let response = read_to_end(stream, raw).await?;
                return Ok((response, None));
            }
            _ => {}
        }
        if raw.len() >= RESPONSE_MAX_BYTES {
            return Err(format!("an answer larger than {RESPONSE_MAX_BYTES} bytes"));
        }
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the connection closed before the whole answer".into());
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let response = parse_response(&raw[..end])?;
    // Bytes after the answer (none was asked for) leave the connection in doubt.
    let reusable = raw.len() == end && keeps_open(&raw);
    Ok((response, reusable.then_some(stream)))
}

/// How an answer's end is known, once its head is in.
enum Framed {
    /// The whole answer (head and body) ends at this offset.
    Length(usize),
    /// Chunked: the body begins at this offset.
    Chunked(usize),
    /// Neither: the body ends when the connection closes.
    UntilClose,
}

/// How the answer in `raw` ends; `None` while its head is incomplete.
fn answer_length(raw: &[u8]) -> Result<Option<Framed>, String> {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = split + 4;
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad HTTP answer {head:?}"))?;
    if status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(Some(Framed::Length(body)));
    }
    if header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return Ok(Some(Framed::Chunked(body)));
    }
    match header(&head, "content-length") {
        Some(v) => {
            let length: usize = v.parse().map_err(|_| format!("bad Content-Length {v:?}"))?;
            if length > RESPONSE_MAX_BYTES {
                return Err(format!("an answer larger than {RESPONSE_MAX_BYTES} bytes"));
            }
            Ok(Some(Framed::Length(body + length)))
        }
        None => Ok(Some(Framed::UntilClose)),
    }
}

/// Whether the connection of the (whole) answer `raw` may take another request.
fn keeps_open(raw: &[u8]) -> bool {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]);
    head.starts_with("HTTP/1.1 ")
        && !header(&head, "connection").is_some_and(|v| v.contains("close"))
}

/// A header's value in `head` (lower case), the first of that name.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_ascii_lowercase())
    })
}

async fn read_to_end(
    mut stream: Pin<Box<dyn Stream>>,
    mut raw: Vec<u8>,
) -> Result<Response, String> {
    let mut buf = [0u8; 16 * 1024];
    while raw.len() < RESPONSE_MAX_BYTES {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n.min(RESPONSE_MAX_BYTES - raw.len())]),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    parse_response(&raw)
}

/// A client's TLS settings for the API (the CLI's, and the test harnesses'): the nodes'
/// certificates are checked against the cluster CA and the name given per request ([`request_tls`]); no client
/// certificate (the client has a token). One value per process, so its session cache serves
/// every connection.
pub type Tls = Arc<rustls::ClientConfig>;

/// [`Tls`] with `cas_der` (the cluster CA certificates, DER: `halcyon_pki::read_ca_certificates`;
/// two during a CA rollover) as the only roots.
pub fn tls_with_ca(cas_der: Vec<Vec<u8>>) -> Result<Tls, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca_der in cas_der {
        roots
            .add(rustls::pki_types::CertificateDer::from(ca_der))
            .map_err(|e| format!("the CA certificate: {e}"))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// [`request_with`] over TLS with `tls` (the CLI's: see [`Tls`]). A server whose certificate
/// is not of the cluster CA, or not for `name` (the node's name when the caller knows whose
/// address it is, else the address dialled: `raft_tls::address_name`), is refused before
/// anything is sent; so is a server that does not speak TLS.
// Each argument is a part of the request; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub async fn request_tls(
    tls: &Tls,
    addr: SocketAddr,
    name: rustls::pki_types::ServerName<'static>,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<&str>,
    limit: Duration,
) -> Result<Response, String> {
    check_headers(headers).map_err(|e| format!("{addr}: {e}"))?;
    timeout(limit, async {
        let stream = crate::raft_tls::connect_api(tls, addr, name)
            .await
            .map_err(|e| format!("{addr}: {}", tls_failure(&e)))?;
        exchange(stream, &addr.to_string(), method, path, headers, body)
            .await
            .map_err(|e| format!("{addr}: {e}"))
    })
    .await
    .map_err(|_| format!("{addr}: no answer within {limit:?}"))?
}

/// Why a TLS connection failed, for a person: a certificate not of the cluster CA, a server
/// in the clear, or the error as it is.
pub fn tls_failure(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(why)) => format!(
            "TLS refused: the server's certificate is not one of the cluster CA for the node \
             or address dialled ({why:?})"
        ),
        Some(rustls::Error::InvalidMessage(why)) => format!(
            "TLS refused: the server does not speak TLS ({why:?}); a node started --insecure \
             is reached with --insecure"
        ),
        _ => e.to_string(),
    }
}

/// One request to the daemon's local socket at `socket` (`local_socket`: no token, the
/// daemon checks who the client is).
pub async fn request_local(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
    limit: Duration,
) -> Result<Response, String> {
    let name = socket.display();
    timeout(limit, async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        exchange(stream, "localhost", method, path, &[], body)
            .await
            .map_err(|e| format!("{name}: {e}"))
    })
    .await
    .map_err(|_| format!("{name}: no answer within {limit:?}"))?
}

fn check_headers(headers: &[(&str, String)]) -> Result<(), String> {
    match headers
        .iter()
        .find(|(n, v)| n.contains(['\r', '\n', ':']) || v.contains(['\r', '\n']))
    {
        Some((name, _)) => Err(format!("header {name:?} holds a line break")),
        None => Ok(()),
    }
}

/// Writes one request on `stream` (`host` in its `Host` header) and reads the whole answer
/// (at most [`RESPONSE_MAX_BYTES`]) up to the end of the connection.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    mut stream: S,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<&str>,
) -> Result<Response, String> {
    let request = request_bytes(host, method, path, headers, body, false);
    stream
        .write_all(&request)
        .await
        .map_err(|e| e.to_string())?;
    read_to_end(Box::pin(stream), Vec::new()).await
}

/// One request's bytes: its head (`Connection: close` unless `keep_alive`) and JSON body.
fn request_bytes(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<&str>,
    keep_alive: bool,
) -> Vec<u8> {
    let body = body.unwrap_or("");
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let connection = if keep_alive {
        ""
    } else {
        "Connection: close\r\n"
    };
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{connection}Content-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body.as_bytes());
    request
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
        body = dechunk(&body)?.ok_or("truncated chunked body")?.0;
    }
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A chunked body decoded, and the bytes of `data` it took (up to the blank line after the
/// last chunk and its trailers); `None` while that is not all in `data` yet.
fn dechunk(all: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut data = all;
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        data = &data[line_end + 2..];
        if size == 0 {
            let end = if data.starts_with(b"\r\n") {
                2
            } else {
                match data.windows(4).position(|w| w == b"\r\n\r\n") {
                    Some(at) => at + 4,
                    None => return Ok(None),
                }
            };
            return Ok(Some((out, all.len() - data.len() + end)));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// One message of a server-sent event stream (`GET /v1/events/stream`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseMessage {
    /// The `event:` name (`message` when none was given).
    pub event: String,
    pub data: String,
    /// The `id:` field, when the message had one.
    pub id: Option<String>,
}

/// A server-sent event stream being read: one connection, its messages in order. Every
/// wait is bounded: a stream that sends nothing, not even a heartbeat comment, for `idle`
/// is given up.
pub struct EventStream {
    /// The server, in messages (its address, or the local socket's path).
    addr: String,
    stream: std::pin::Pin<Box<dyn crate::platform::Stream>>,
    chunked: bool,
    /// Bytes received and not yet decoded (chunk framing).
    raw: Vec<u8>,
    /// The decoded body not yet split into messages.
    body: Vec<u8>,
    idle: Duration,
    ended: bool,
}

/// Reads an answer's status line and headers (`idle` bounding each read): the status, the
/// head as text and the bytes read after it.
async fn read_head(
    stream: &mut std::pin::Pin<Box<dyn crate::platform::Stream>>,
    addr: &str,
    idle: Duration,
) -> Result<(u16, String, Vec<u8>), String> {
    let mut raw = Vec::new();
    let split = loop {
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break split;
        }
        if raw.len() > RESPONSE_MAX_BYTES {
            return Err(format!(
                "{addr}: an HTTP head larger than {RESPONSE_MAX_BYTES} bytes"
            ));
        }
        let mut buf = [0u8; 8192];
        let n = timeout(idle, stream.read(&mut buf))
            .await
            .map_err(|_| format!("{addr}: no answer within {idle:?}"))?
            .map_err(|e| format!("{addr}: {e}"))?;
        if n == 0 {
            return Err(format!("{addr}: the connection closed before an answer"));
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let rest = raw[split + 4..].to_vec();
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("{addr}: bad HTTP answer {head:?}"))?;
    Ok((status, head, rest))
}

/// Opens `GET path` as an event stream at `addr` with the API `token`, resuming after
/// `last_event_id`; `idle` bounds every wait (the connection, the answer's head, each read).
/// Over TLS with `tls`, the server's certificate checked for the name given (see
/// [`request_tls`]); in the clear without (a node started `--insecure`).
pub async fn event_stream(
    addr: SocketAddr,
    tls: Option<(&Tls, rustls::pki_types::ServerName<'static>)>,
    path: &str,
    token: Option<&str>,
    last_event_id: Option<u64>,
    idle: Duration,
) -> Result<EventStream, String> {
    let stream: std::pin::Pin<Box<dyn crate::platform::Stream>> = match tls {
        Some((tls, name)) => Box::pin(
            timeout(idle, crate::raft_tls::connect_api(tls, addr, name))
                .await
                .map_err(|_| format!("{addr}: no connection within {idle:?}"))?
                .map_err(|e| format!("{addr}: {}", tls_failure(&e)))?,
        ),
        None => Box::pin(
            timeout(idle, tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| format!("{addr}: no connection within {idle:?}"))?
                .map_err(|e| format!("{addr}: {e}"))?,
        ),
    };
    open_stream(stream, addr.to_string(), path, token, last_event_id, idle).await
}

/// [`event_stream`] on the daemon's local socket at `socket` (no token).
pub async fn event_stream_local(
    socket: &Path,
    path: &str,
    last_event_id: Option<u64>,
    idle: Duration,
) -> Result<EventStream, String> {
    let name = socket.display().to_string();
    let stream = timeout(idle, tokio::net::UnixStream::connect(socket))
        .await
        .map_err(|_| format!("{name}: no connection within {idle:?}"))?
        .map_err(|e| format!("{name}: {e}"))?;
    open_stream(Box::pin(stream), name, path, None, last_event_id, idle).await
}

async fn open_stream(
    mut stream: std::pin::Pin<Box<dyn crate::platform::Stream>>,
    addr: String,
    path: &str,
    token: Option<&str>,
    last_event_id: Option<u64>,
    idle: Duration,
) -> Result<EventStream, String> {
    // A socket's path is no host name.
    let host = if addr.starts_with('/') {
        "localhost"
    } else {
        addr.as_str()
    };
    let resume = last_event_id.map_or_else(String::new, |id| format!("Last-Event-ID: {id}\r\n"));
    let authorization =
        token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n{authorization}{resume}\r\n"
    );
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let (status, head, rest) = read_head(&mut stream, &addr, idle).await?;
    let header = |name: &str| header(&head, name);
    let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    if status != 200 {
        // An error body: read what is there (bounded) to say why.
        let mut response = EventStream {
            addr: addr.clone(),
            stream,
            chunked,
            raw: rest,
            body: Vec::new(),
            idle,
            ended: false,
        };
        let mut text = Vec::new();
        if !chunked {
            let length = header("content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0)
                .min(RESPONSE_MAX_BYTES);
            while response.raw.len() < length && response.fill().await.unwrap_or(false) {}
            text = response.raw;
        }
        let message = serde_json::from_slice::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&text).into_owned());
        return Err(format!("{addr}: HTTP {status}: {message}"));
    }
    if !header("content-type").is_some_and(|v| v.starts_with("text/event-stream")) {
        return Err(format!("{addr}: the answer is not an event stream"));
    }
    Ok(EventStream {
        addr,
        stream,
        chunked,
        raw: rest,
        body: Vec::new(),
        idle,
        ended: false,
    })
}

impl EventStream {
    /// Reads more bytes into `raw`; `false` at the end of the connection.
    async fn fill(&mut self) -> Result<bool, String> {
        let addr = &self.addr;
        let mut buf = [0u8; 16384];
        let n = match timeout(self.idle, self.stream.read(&mut buf))
            .await
            .map_err(|_| format!("{addr}: nothing received for {:?}", self.idle))?
        {
            Ok(n) => n,
            // A TLS server that closed without its close_notify: the end, as in the clear.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(format!("{addr}: {e}")),
        };
        self.raw.extend_from_slice(&buf[..n]);
        Ok(n > 0)
    }

    /// Moves whole chunks (or everything, unchunked) from `raw` to `body`.
    fn decode(&mut self) -> Result<(), String> {
        if !self.chunked {
            self.body.append(&mut self.raw);
            return Ok(());
        }
        loop {
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return Ok(());
            };
            let size_text = String::from_utf8_lossy(&self.raw[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("{}: bad chunk size {size_text:?}", self.addr))?;
            if size == 0 {
                self.ended = true;
                self.raw.clear();
                return Ok(());
            }
            let end = line_end + 2 + size;
            if self.raw.len() < end + 2 {
                return Ok(());
            }
            self.body.extend_from_slice(&self.raw[line_end + 2..end]);
            self.raw.drain(..end + 2);
        }
    }

    /// The next message; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<SseMessage>, String> {
        loop {
            self.decode()?;
            if let Some(message) = take_message(&mut self.body) {
                if message.event.is_empty() && message.data.is_empty() && message.id.is_none() {
                    continue; // comments only: a heartbeat
                }
                return Ok(Some(message));
            }
            if self.ended {
                return Ok(None);
            }
            if self.body.len() + self.raw.len() > RESPONSE_MAX_BYTES {
                return Err(format!(
                    "{}: a message larger than {RESPONSE_MAX_BYTES} bytes",
                    self.addr
                ));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }
}

/// Takes the first complete message (up to a blank line) out of `body`. A block of comments
/// only comes out as an empty message.
fn take_message(body: &mut Vec<u8>) -> Option<SseMessage> {
    let text = String::from_utf8_lossy(body);
    let normalized_end = text.find("\n\n").map(|i| (i, 2));
    let (end, skip) = normalized_end?;
    let block = text[..end].to_owned();
    body.drain(..end + skip);
    let mut message = SseMessage::default();
    let mut data: Vec<&str> = Vec::new();
    for line in block.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => message.event = value.to_owned(),
            "data" => data.push(value),
            "id" => message.id = Some(value.to_owned()),
            _ => {}
        }
    }
    message.data = data.join("\n");
    if message.event.is_empty() && (!message.data.is_empty()) {
        message.event = "message".to_owned();
    }
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kept connection is closed once idle for [`KEPT_IDLE_MAX`] even if no other request
    /// to its peer comes (it used to be closed only when the next one looked for it: an
    /// idle cluster kept its formation's connections to the coordinator open for good).
    #[tokio::test(start_paused = true)]
    async fn a_kept_connection_is_closed_once_idle_for_the_limit_without_another_request() {
        let kept = Arc::new(KeptConnections::default());
        let (first, second) = (
            SocketAddr::from(([127, 0, 0, 2], 7403)),
            SocketAddr::from(([127, 0, 0, 3], 7403)),
        );
        let (ours, mut theirs) = tokio::io::duplex(64);
        kept.put(first, 1, Box::pin(ours));
        close_when_idle(&kept);
        tokio::time::sleep(KEPT_IDLE_MAX / 2).await;
        let (later, mut later_peer) = tokio::io::duplex(64);
        kept.put(second, 1, Box::pin(later));
        close_when_idle(&kept);
        tokio::time::sleep(KEPT_IDLE_MAX / 2 - Duration::from_millis(1)).await;
        assert_eq!(kept.kept(), 2, "both idle for less than the limit");
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(kept.kept(), 1, "the first reached the limit");
        let mut byte = [0u8; 1];
        assert_eq!(
            theirs.read(&mut byte).await.unwrap(),
            0,
            "its peer sees it end"
        );
        tokio::time::sleep(KEPT_IDLE_MAX / 2).await;
        assert_eq!(kept.kept(), 0, "then the second");
        assert_eq!(later_peer.read(&mut byte).await.unwrap(), 0);
        // Nothing kept, the task is done; the next kept connection starts another.
        tokio::task::yield_now().await;
        assert!(!kept.closing.load(Ordering::Acquire));
        let (again, mut again_peer) = tokio::io::duplex(64);
        kept.put(first, 1, Box::pin(again));
        close_when_idle(&kept);
        tokio::time::sleep(KEPT_IDLE_MAX + Duration::from_millis(1)).await;
        assert_eq!(kept.kept(), 0);
        assert_eq!(again_peer.read(&mut byte).await.unwrap(), 0);
    }

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

    #[test]
    fn an_answer_kept_alive_ends_where_its_length_or_last_chunk_says() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n";
        assert!(
            answer_length(&head[..10]).unwrap().is_none(),
            "head incomplete"
        );
        let Some(Framed::Length(end)) = answer_length(head).unwrap() else {
            panic!("framed by length");
        };
        assert_eq!(end, head.len() + 2);
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n";
        let Some(Framed::Chunked(split)) = answer_length(chunked).unwrap() else {
            panic!("chunked");
        };
        assert_eq!(
            dechunk(&chunked[split..]).unwrap(),
            None,
            "the blank line is missing"
        );
        let mut whole = chunked.to_vec();
        whole.extend_from_slice(b"\r\n");
        assert_eq!(
            dechunk(&whole[split..]).unwrap(),
            Some((b"abc".to_vec(), whole.len() - split))
        );
        let trailer = [&chunked[split..], b"X-T: 1\r\n\r\n"].concat();
        assert_eq!(
            dechunk(&trailer).unwrap(),
            Some((b"abc".to_vec(), trailer.len()))
        );
        assert!(matches!(
            answer_length(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap(),
            Some(Framed::Length(_))
        ));
        assert!(matches!(
            answer_length(b"HTTP/1.0 200 OK\r\n\r\n").unwrap(),
            Some(Framed::UntilClose)
        ));
        assert!(answer_length(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n").is_err());
        assert!(keeps_open(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(!keeps_open(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"));
        assert!(!keeps_open(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"));
    }

    /// A server on loopback that answers every request on a connection with its
    /// connection's number and request number, then closes after `per_connection`.
    async fn counting_server(per_connection: usize) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for connection in 0.. {
                let (mut tcp, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    for request in 0..per_connection {
                        let mut byte = [0u8; 1024];
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            let n = tcp.read(&mut byte).await.unwrap();
                            if n == 0 {
                                return;
                            }
                            buf.extend_from_slice(&byte[..n]);
                        }
                        let at = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                        buf.drain(..at + 4);
                        let body = format!("{connection}.{request}");
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        tcp.write_all(answer.as_bytes()).await.unwrap();
                    }
                });
            }
        });
        addr
    }

    /// [`TcpNetwork`] with kept connections, as `platform::TlsNetwork` keeps them.
    struct Keeping(Arc<KeptConnections>, std::sync::atomic::AtomicU64);

    impl Network for Keeping {
        fn connect(
            &self,
            addr: SocketAddr,
        ) -> futures_util::future::BoxFuture<'_, std::io::Result<Pin<Box<dyn Stream>>>> {
            TcpNetwork.connect(addr)
        }
        fn serve_internal(
            &self,
            _: axum::Router,
            _: Vec<SocketAddr>,
        ) -> futures_util::future::BoxFuture<'_, anyhow::Result<crate::platform::Listening>>
        {
            unreachable!("a client")
        }
        fn serve_api(
            &self,
            _: axum::Router,
            _: Vec<SocketAddr>,
            _: Option<std::path::PathBuf>,
        ) -> futures_util::future::BoxFuture<'_, anyhow::Result<crate::platform::Listening>>
        {
            unreachable!("a client")
        }
        fn serve_raft_also<'a>(
            &'a self,
            _: &'a halcyon_consensus::Consensus,
            _: SocketAddr,
        ) -> futures_util::future::BoxFuture<'a, std::io::Result<()>> {
            unreachable!("a client")
        }
        fn open_consensus(
            &self,
            _: halcyon_consensus::ClusterId,
            _: halcyon_consensus::NodeId,
            _: halcyon_consensus::NodeAddrs,
            _: &Path,
            _: crate::platform::NodeApplication,
            _: halcyon_consensus::RaftTimings,
            _: Option<Arc<crate::raft_tls::RaftTls>>,
        ) -> futures_util::future::BoxFuture<
            'static,
            Result<halcyon_consensus::Consensus, halcyon_consensus::OpenError>,
        > {
            unreachable!("a client")
        }
        fn kept(&self) -> Option<(Arc<KeptConnections>, u64)> {
            Some((Arc::clone(&self.0), self.1.load(Ordering::Relaxed)))
        }
    }

    #[tokio::test]
    async fn requests_go_out_on_the_kept_connection_until_the_peer_closes_it_or_credentials_change()
    {
        let addr = counting_server(3).await;
        let network = Keeping(Arc::default(), AtomicU64::new(0));
        let mut bodies = Vec::new();
        for _ in 0..5 {
            let r = request_via(
                &network,
                addr,
                "POST",
                "/x",
                Some("{}"),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
            bodies.push(r.body);
            // Let the server's close (after 3 requests) reach this side.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            bodies,
            ["0.0", "0.1", "0.2", "1.0", "1.1"],
            "a closed connection is not reused"
        );
        assert_eq!(
            network.0.counts(),
            KeptCounts {
                opened: 2,
                reused: 3
            }
        );
        // New credentials (a reload): a new connection.
        network.1.store(1, Ordering::Relaxed);
        let r = request_via(&network, addr, "GET", "/x", None, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(r.body, "2.0");
    }

    #[test]
    fn event_stream_messages_are_split_at_blank_lines_and_comments_skipped() {
        let mut body =
            b": heartbeat\n\nid: 4\nevent: record\ndata: {\"id\":4}\n\nevent: st".to_vec();
        assert_eq!(take_message(&mut body), Some(SseMessage::default()));
        assert_eq!(
            take_message(&mut body),
            Some(SseMessage {
                event: "record".into(),
                data: "{\"id\":4}".into(),
                id: Some("4".into()),
            })
        );
        assert_eq!(take_message(&mut body), None);
        assert_eq!(body, b"event: st");
    }
}
