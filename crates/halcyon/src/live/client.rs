//! The CLI's side of the API: finding a running cluster, sending a request to its nodes
//! in turn, and reading the typed answer. The HTTP itself is the daemon's
//! (`halcyon_daemon::client`): over the local socket, else HTTPS checked with the cluster CA
//! ([`transport`]), plain HTTP only with `--insecure`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use halcyon_api::{ErrorBody, OperationResponse, SCHEMA_VERSION};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Failure, Target, demo};

/// How long the CLI waits for one node's answer (an operation waits up to 30 s for its
/// event, plus forwarding).
const CLI_TIMEOUT: Duration = Duration::from_secs(40);

/// How long an operation is asked again, with the same request id, while no node can give
/// its outcome (a leader that died mid-request, an election): the answer is then the real
/// outcome of the event already enqueued, never a second event.
const RETRY_FOR: Duration = Duration::from_secs(20);
/// Pause between two tries of an operation.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// A request body as JSON.
pub fn body(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

pub fn compact(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

pub fn pretty(value: &impl Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// The API addresses to try for a target.
pub fn candidates(target: &Target) -> Result<Vec<SocketAddr>, Failure> {
    if let Some(a) = target.api {
        return Ok(vec![a]);
    }
    if let Some(dir) = &target.config {
        let (config, _) = halcyon_config::load(std::slice::from_ref(dir))
            .map_err(|d| Failure::Invalid(format!("error: {d}")))?;
        let mut addrs: Vec<SocketAddr> = halcyon_daemon::peers::api_addrs(&config)
            .into_values()
            .flatten()
            .collect();
        // This machine's own node first: it answers for the whole cluster, and a dead peer
        // earlier in the list would cost a connect timeout (its link may be gone, so nothing
        // refuses the connection).
        addrs.sort_by_key(|a| !is_local(a.ip()));
        return Ok(addrs);
    }
    demo::find_demo_api()
}

/// True when `ip` is an address of this machine (a socket can be bound to it).
fn is_local(ip: std::net::IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// The API token the CLI sends, and where it looked when it found none.
struct FoundToken {
    token: Option<String>,
    looked: Vec<String>,
}

/// The token: `--token-file`, else `$HALCYON_TOKEN`, else `admin.token` in the credentials
/// directory (`pki` in `--config`, then `/etc/halcyon/pki`: `halcyon apply NEWDIR` on a node
/// finds the node's own; without `--config`, the running demo's, then `/etc/halcyon/pki`)
/// when this user may read it. A `--token-file` that cannot be read is
/// invalid input.
/// The API token the CLI sends for `target`, if it found one.
pub fn token(target: &Target) -> Result<Option<String>, Failure> {
    find_token(target).map(|found| found.token)
}

fn find_token(target: &Target) -> Result<FoundToken, Failure> {
    if let Some(file) = &target.token_file {
        let text = std::fs::read_to_string(file).map_err(|e| {
            Failure::Invalid(format!(
                "error: --token-file {}: cannot be read: {e}",
                file.display()
            ))
        })?;
        let token = text.trim();
        if token.is_empty() || token.contains(char::is_whitespace) {
            return Err(Failure::Invalid(format!(
                "error: --token-file {}: must hold one token (hct_...)",
                file.display()
            )));
        }
        return Ok(FoundToken {
            token: Some(token.to_owned()),
            looked: Vec::new(),
        });
    }
    if let Ok(token) = std::env::var("HALCYON_TOKEN")
        && !token.trim().is_empty()
    {
        return Ok(FoundToken {
            token: Some(token.trim().to_owned()),
            looked: Vec::new(),
        });
    }
    let mut looked = vec![
        "no --token-file".to_owned(),
        "$HALCYON_TOKEN not set".to_owned(),
    ];
    for dir in credential_dirs(target) {
        match halcyon_pki::read_admin_token(&dir) {
            Ok(Some(token)) => {
                return Ok(FoundToken {
                    token: Some(token),
                    looked: Vec::new(),
                });
            }
            Ok(None) => looked.push(format!("{}/admin.token does not exist", dir.display())),
            Err(e) => looked.push(e.to_string()),
        }
    }
    Ok(FoundToken {
        token: None,
        looked,
    })
}

/// The credentials directories the CLI looks in, in order, for the admin token and the
/// cluster CA: `pki` in `--config`, else the running demo's; then `/etc/halcyon/pki`.
fn credential_dirs(target: &Target) -> Vec<PathBuf> {
    match &target.config {
        Some(config) => vec![config.join("pki"), PathBuf::from(halcyon_pki::DEFAULT_DIR)],
        None => demo::running_demo_config()
            .map(|c| c.join("pki"))
            .into_iter()
            .chain([PathBuf::from(halcyon_pki::DEFAULT_DIR)])
            .collect(),
    }
}

/// How the CLI speaks to a node's TCP API.
pub enum Transport {
    /// HTTPS: a node's certificate must be of the cluster CA in `ca` and name the node whose
    /// address was dialled in the target's configuration (`nodes`: so an address a network
    /// `halcyon apply` added is proved by the certificate the node already has), else the
    /// address itself (`--api`, the demo).
    Https {
        tls: halcyon_daemon::client::Tls,
        ca: PathBuf,
        nodes: std::collections::HashMap<std::net::IpAddr, String>,
    },
    /// Plain HTTP (`--insecure`: a cluster whose daemons run `--insecure`).
    Plain,
}

/// The TCP API's transport for `target`: plain HTTP only with `--insecure`; otherwise HTTPS
/// with `--ca FILE`, else `ca.crt` in the first credentials directory that has one (see
/// `credential_dirs`). Without any CA the CLI does not guess: invalid input, saying where
/// it looked and what to pass. A CA file that cannot be read or is not a CA is invalid input
/// too.
pub fn transport(target: &Target) -> Result<Transport, Failure> {
    if target.insecure {
        return Ok(Transport::Plain);
    }
    let files: Vec<PathBuf> = match &target.ca {
        Some(file) => vec![file.clone()],
        None => credential_dirs(target)
            .iter()
            .map(|d| halcyon_pki::Layout::new(d).ca_certificate())
            .collect(),
    };
    let mut looked = Vec::new();
    for file in files {
        match halcyon_pki::read_ca_certificates(&file) {
            Ok(der) => {
                let tls = halcyon_daemon::client::tls_with_ca(der)
                    .map_err(|e| Failure::Invalid(format!("error: {}: {e}", file.display())))?;
                return Ok(Transport::Https {
                    tls,
                    ca: file,
                    nodes: node_names(target),
                });
            }
            Err(e) if e.problem == halcyon_pki::Problem::Missing && target.ca.is_none() => {
                looked.push(format!("{} does not exist", file.display()));
            }
            Err(e) if target.ca.is_some() => {
                return Err(Failure::Invalid(format!("error: --ca {e}")));
            }
            Err(e) => return Err(Failure::Invalid(format!("error: {e}"))),
        }
    }
    Err(Failure::Invalid(format!(
        "error: no cluster CA to check the nodes' certificates with ({}): pass --ca FILE (the \
         cluster's ca.crt), or --insecure for a cluster whose daemons run --insecure",
        looked.join("; ")
    )))
}

/// Whose each node address of the target's configuration is (none with `--api`, or without
/// a configuration that loads: then certificates are checked for the address dialled).
fn node_names(target: &Target) -> std::collections::HashMap<std::net::IpAddr, String> {
    match (&target.api, &target.config) {
        (None, Some(dir)) => halcyon_config::load(std::slice::from_ref(dir))
            .map(|(config, _)| halcyon_daemon::peers::node_of_address(&config))
            .unwrap_or_default(),
        _ => Default::default(),
    }
}

impl Transport {
    /// What a server dialled at `addr` must prove over HTTPS (see [`Transport::Https`]).
    pub fn server_name(&self, addr: SocketAddr) -> halcyon_daemon::raft_tls::ServerName<'static> {
        match self {
            Transport::Https { nodes, .. } => {
                halcyon_daemon::raft_tls::node_or_address_name(nodes, addr)
            }
            Transport::Plain => halcyon_daemon::raft_tls::address_name(addr),
        }
    }
}

/// One request to a node's TCP API over `transport`.
pub async fn request_over(
    transport: &Transport,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<&str>,
    limit: Duration,
) -> Result<halcyon_daemon::client::Response, String> {
    match transport {
        Transport::Https { tls, ca, .. } => {
            let name = transport.server_name(addr);
            halcyon_daemon::client::request_tls(tls, addr, name, method, path, headers, body, limit)
                .await
                .map_err(|e| tls_hint(e, ca))
        }
        Transport::Plain => halcyon_daemon::client::request_with(
            &halcyon_daemon::platform::TcpNetwork,
            addr,
            method,
            path,
            headers,
            body,
            limit,
        )
        .await
        .map_err(plain_hint),
    }
}

/// A TLS refusal names the CA the certificate was checked with.
pub fn tls_hint(e: String, ca: &std::path::Path) -> String {
    if e.contains("TLS refused") {
        format!("{e} (checked with {})", ca.display())
    } else {
        e
    }
}

/// A failure in plain HTTP that looks like a server speaking TLS (no HTTP answer, the
/// connection reset) says that `--insecure` was asked for.
pub fn plain_hint(e: String) -> String {
    if ["HTTP response", "bad status line", "reset", "closed before"]
        .iter()
        .any(|s| e.contains(s))
    {
        format!(
            "{e} (plain HTTP, as --insecure asks: a node with credentials answers only \
             HTTPS; drop --insecure)"
        )
    } else {
        e
    }
}

/// The local daemon's API sockets to try first, in order (see `Target::socket`): `--socket`;
/// else, given neither `--api` nor another `--config` than the default, the running demo's
/// nodes' sockets, else [`halcyon_daemon::local_socket::DEFAULT_PATH`]. The default socket
/// goes with the default configuration: a cluster named by another `--config` is not the one
/// that socket serves.
pub fn local_sockets(target: &Target) -> Vec<PathBuf> {
    if let Some(socket) = &target.socket {
        return vec![socket.clone()];
    }
    if target.api.is_some() {
        return Vec::new();
    }
    let default = PathBuf::from(halcyon_daemon::local_socket::DEFAULT_PATH);
    match &target.config {
        Some(config) if config.as_path() == std::path::Path::new(DEFAULT_CONFIG_DIR) => {
            vec![default]
        }
        Some(_) => Vec::new(),
        None => demo::running_demo_sockets().unwrap_or_else(|| vec![default]),
    }
}

/// Where the CLI asks: the local daemon's socket, or a node's TCP API.
pub enum Endpoint {
    Local(PathBuf),
    Network(SocketAddr),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Local(path) => write!(f, "{}", path.display()),
            Endpoint::Network(addr) => write!(f, "{addr}"),
        }
    }
}

/// The local sockets this process may use, then the target's nodes (see [`call`]).
pub fn endpoints(target: &Target) -> Result<Vec<Endpoint>, Failure> {
    let mut endpoints: Vec<Endpoint> = local_sockets(target)
        .into_iter()
        .filter(|s| usable(s).is_ok())
        .map(Endpoint::Local)
        .collect();
    match candidates(target) {
        Ok(addrs) => endpoints.extend(addrs.into_iter().map(Endpoint::Network)),
        Err(_) if !endpoints.is_empty() => {}
        Err(e) => return Err(e),
    }
    Ok(endpoints)
}

/// The default configuration directory (`halcyon daemon --config`).
const DEFAULT_CONFIG_DIR: &str = "/etc/halcyon";

/// Whether this process may use the socket at `path` (`Ok`), else why not: it must be a
/// socket, and this user root or the socket's owner (the daemon refuses everyone else).
fn usable(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let metadata = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !metadata.file_type().is_socket() {
        return Err(format!("{}: not a socket", path.display()));
    }
    let me = halcyon_daemon::local_socket::own_uid();
    if !halcyon_daemon::local_socket::allowed(me, metadata.uid()) {
        return Err(format!(
            "{}: served for uid {} (this is uid {me})",
            path.display(),
            metadata.uid()
        ));
    }
    Ok(())
}

/// Sends a request to the local daemon's socket (no token), else to the target's nodes in
/// turn with the token; the first that answers gives the status and the body.
async fn call(
    target: &Target,
    method: &str,
    path: &str,
    body: Option<String>,
) -> Result<(u16, String), Failure> {
    let found = find_token(target)?;
    let mut errors = Vec::new();
    let sockets = local_sockets(target);
    for socket in &sockets {
        let answer = match usable(socket) {
            Ok(()) => {
                halcyon_daemon::client::request_local(
                    socket,
                    method,
                    path,
                    body.as_deref(),
                    CLI_TIMEOUT,
                )
                .await
            }
            Err(e) => Err(e),
        };
        match answer {
            Ok(r) => return Ok((r.status, r.body)),
            Err(e) => {
                tracing::debug!("the local socket is not used: {e}");
                errors.push(e);
            }
        }
    }
    let headers: Vec<(&str, String)> = found
        .token
        .iter()
        .map(|t| ("Authorization", format!("Bearer {t}")))
        .collect();
    let addrs = match candidates(target) {
        Ok(addrs) => addrs,
        // No cluster named and no demo: say what the socket said too.
        Err(Failure::Invalid(line)) if !sockets.is_empty() => {
            return Err(Failure::Invalid(format!(
                "{line}; and no local daemon's socket to use: {}",
                errors.join("; ")
            )));
        }
        Err(e) => return Err(e),
    };
    let transport = transport(target)?;
    for addr in addrs {
        match request_over(
            &transport,
            addr,
            method,
            path,
            &headers,
            body.as_deref(),
            CLI_TIMEOUT,
        )
        .await
        {
            Ok(r) if r.status == 401 && found.token.is_none() => {
                let (Failure::Failed(line) | Failure::Invalid(line)) = refusal(r.status, &r.body);
                let mut looked = found.looked.clone();
                looked.extend(errors.iter().map(|e| format!("local socket {e}")));
                return Err(Failure::Failed(format!(
                    "{line}\n(no token found: {})",
                    looked.join("; ")
                )));
            }
            Ok(r) => return Ok((r.status, r.body)),
            Err(e) => errors.push(e),
        }
    }
    Err(Failure::Failed(format!(
        "error: no node answered: {}",
        errors.join("; ")
    )))
}

/// Reads a successful answer: it must be of this build's schema version.
fn parse<T: DeserializeOwned>(body: &str) -> Result<T, Failure> {
    let value: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| Failure::Failed(format!("error: bad JSON from the API: {e}")))?;
    let version = value.get("schema_version").and_then(|v| v.as_u64());
    if version != Some(u64::from(SCHEMA_VERSION)) {
        return Err(Failure::Failed(format!(
            "error: the API answered schema version {}; this halcyon reads version {SCHEMA_VERSION}",
            version.map_or("(none)".to_owned(), |v| v.to_string())
        )));
    }
    serde_json::from_value(value)
        .map_err(|e| Failure::Failed(format!("error: unexpected answer from the API: {e}")))
}

/// An error answer: invalid input when the request named something that does not exist or
/// was malformed (404, 400), otherwise refused or failed.
fn refusal(status: u16, body: &str) -> Failure {
    let message = serde_json::from_str::<ErrorBody>(body)
        .map(|e| e.error)
        .unwrap_or_else(|_| body.to_owned());
    let line = format!("error: {message}");
    match status {
        400 | 404 => Failure::Invalid(line),
        _ => Failure::Failed(line),
    }
}

/// `GET path`, answered with 200.
pub async fn get<T: DeserializeOwned>(target: &Target, path: &str) -> Result<T, Failure> {
    match call(target, "GET", path, None).await? {
        (200, body) => parse(&body),
        (status, body) => Err(refusal(status, &body)),
    }
}

/// `POST path`, answered with 2xx.
pub async fn post_as<T: DeserializeOwned>(
    target: &Target,
    path: &str,
    body: Option<String>,
) -> Result<T, Failure> {
    match call(target, "POST", path, body).await? {
        (status, body) if status < 300 => parse(&body),
        (status, body) => Err(refusal(status, &body)),
    }
}

/// An operation (`POST` of packages, nodes, cluster, events). Package, node and cluster
/// operations carry a request id (`?request=`) and are asked again with it while no node
/// can answer (see [`RETRY_FOR`]).
pub async fn post(
    target: &Target,
    path: &str,
    body: Option<String>,
) -> Result<OperationResponse, Failure> {
    if path.starts_with("/v1/events/") {
        return post_as(target, path, body).await;
    }
    let path = format!("{path}?request={}", request_id());
    let deadline = tokio::time::Instant::now() + RETRY_FOR;
    let mut told = false;
    loop {
        let answer = call(target, "POST", &path, body.clone()).await;
        let unanswered = match &answer {
            Err(Failure::Failed(why)) => Some(why.clone()),
            Ok((503, body)) => match refusal(503, body) {
                Failure::Failed(line) | Failure::Invalid(line) => Some(line),
            },
            _ => None,
        };
        match unanswered {
            Some(why) if tokio::time::Instant::now() < deadline => {
                if !told {
                    eprintln!("{why}; asking again (the same request: it is carried out once)");
                    told = true;
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            _ => {
                return match answer? {
                    (status, body) if status < 300 => parse(&body),
                    (status, body) => Err(refusal(status, &body)),
                };
            }
        }
    }
}

/// A new request id: 128 random bits in hex.
fn request_id() -> String {
    let mut bytes = [0u8; 16];
    if let Err(e) = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
    {
        // Unique enough without the kernel's randomness: this process, now.
        tracing::debug!("no /dev/urandom ({e}): request id from the pid and the clock");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = (now ^ (u128::from(std::process::id()) << 96)).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
