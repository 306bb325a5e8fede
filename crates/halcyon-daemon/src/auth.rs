//! Who may call the API (SPEC 11, issue 17): API tokens and roles on the public API, signed
//! requests between nodes on the internal API, and who asked, for the event log.
//!
//! - **Public API** (`port + 2`): every request carries `Authorization: Bearer TOKEN`, checked
//!   against the SHA-256 hashes in the node's `tokens.toml` (constant-time compare, every
//!   hash compared). Reads (`GET`, and `POST /v1/emulate`, which changes nothing) need role
//!   `read-only` or `admin`; everything else needs `admin` ([`required_role`]: a new `POST`
//!   route is admin-only unless listed). No token, or a token that is not the cluster's:
//!   401; a token whose role is not enough: 403. Both an [`ErrorBody`], and nothing is done.
//! - **Node-to-node requests** on the internal API (`port + 3`, mutual TLS): the node's
//!   whose certificate made the connection. Each names its node ([`NODE_HEADER`]);
//!   accepted when that node is configured and the connection's certificate is of a CA
//!   trusted now, carries the cluster id, is valid now and names it
//!   ([`Auth::verify_node_connection`]), checked at each request. The quorum witness, the
//!   same way, only for the two requests of a member with a new store ([`witness_may_ask`]).
//! - **Node-to-node requests elsewhere** (writes a node forwards to the leader's public API,
//!   where client certificates are optional; the nodes' requests to the witness's API):
//!   signed by the sending node with its own key (ECDSA P-256,
//!   `halcyon_pki::NodeSigner`, [`SIGNATURE_CONTEXT`]) over the method, the path with its
//!   query, the body, the node's name, a timestamp and a random nonce (and, for a forwarded
//!   write, who asked it and from where), with its certificate. Accepted when the
//!   certificate is signed by the cluster CA, carries the cluster id, is valid, and names
//!   the node the request claims (`halcyon_pki::PeerVerifier`), the node is configured, and
//!   the signature was not accepted before, within [`REPLAY_WINDOW`] of the receiving node's
//!   clock; anything else is refused with 401 before the body is parsed. Nodes sign their
//!   internal API requests too: daemons of the previous version require it there.
//! - **Refusals** are counted ([`Refusals`], shown by `halcyon status`) and logged at most
//!   once per [`REFUSAL_LOG_INTERVAL`] (with how many were not logged), so that a flood of
//!   bad requests cannot flood the log.
//! - **The local socket** (`local_socket`): the same router for clients on the node's own
//!   machine, no token; the kernel's credentials of the client (`SO_PEERCRED`) must be root's
//!   or the daemon's user's, else 403, counted as forbidden. Its requests are the admin's,
//!   recorded as `uid 0 (local socket) from pid 4242`.
//! - **Insecure** (`halcyon daemon --insecure`, a node without credentials): every request is
//!   accepted, as `anonymous`; the daemon says so at start and in `halcyon status`.
//!
//! Every accepted public request carries a [`Caller`] (request extension) that handlers put
//! in the commands they commit (`by`), so that the event log says who asked and from where.
//!
//! Invariants: a request refused here reaches no handler; a signature is accepted at most
//! once (the replay set is bounded by [`SEEN_MAX`]: when it is full of signatures still
//! inside the window, new ones are refused rather than remembered less).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use halcyon_api::{ErrorBody, SCHEMA_VERSION};
use halcyon_pki::{Credentials, NodeSigner, PeerRefusal, PeerVerifier, Role, Tokens};
use sha2::{Digest, Sha256};

use crate::POISONED;
use crate::local_socket::{self, LocalPeer};
use crate::platform::PeerAddr;

/// What a signature covers first: the protocol and its version.
pub const SIGNATURE_CONTEXT: &str = "halcyon-node-request/2";
/// How far a signed request's time may be from the receiver's clock (either way). The nodes'
/// wall clocks must agree within this (NTP).
pub const REPLAY_WINDOW: Duration = Duration::from_secs(30);
/// Most signatures remembered (those inside [`REPLAY_WINDOW`]).
pub const SEEN_MAX: usize = 65_536;
/// At most one refusal is logged per this interval.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);
/// Largest request body a node-signed request may have (it is read whole to be checked).
pub const SIGNED_BODY_MAX_BYTES: usize = 4 * 1024 * 1024;

/// The headers of a signed node request.
pub const NODE_HEADER: &str = "x-halcyon-node";
pub const TIME_HEADER: &str = "x-halcyon-time";
pub const NONCE_HEADER: &str = "x-halcyon-nonce";
pub const SIGNATURE_HEADER: &str = "x-halcyon-signature";
/// The signing node's certificate (DER, hex).
pub const CERTIFICATE_HEADER: &str = "x-halcyon-certificate";
/// Largest signature (hex of an ASN.1 ECDSA P-256 signature: at most 72 bytes).
const SIGNATURE_HEX_MAX: usize = 2 * 80;
/// Largest certificate (hex of its DER).
const CERTIFICATE_HEX_MAX: usize = 2 * 4096;
/// Who asked a forwarded write, and from where (signed with it).
pub const CALLER_HEADER: &str = "x-halcyon-caller";
pub const CALLER_ADDRESS_HEADER: &str = "x-halcyon-caller-address";

/// The role of the token a public request was accepted with (`admin`, `read-only`; `admin`
/// on an insecure node), on its answer: the status page offers the buttons that change
/// things only to an admin.
pub const ROLE_HEADER: &str = "x-halcyon-role";

/// Who asked: put into the commands a request commits (the event log's `by`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// `token admin`, `node n2`, or `anonymous` (insecure daemon).
    pub who: String,
    /// The client's address as the first node saw it.
    pub from: String,
    /// The node that forwarded the request to this one, if any.
    pub via: Option<String>,
}

impl Caller {
    /// What the event log records: `token admin from 127.0.0.1:4242` (`via n2` when
    /// forwarded).
    pub fn audit(&self) -> String {
        match &self.via {
            Some(node) => format!("{} from {} via {node}", self.who, self.from),
            None => format!("{} from {}", self.who, self.from),
        }
    }
}

/// The role a public request needs: reads (`GET`, `HEAD`, and `POST /v1/emulate` and
/// `POST /v1/config/preview`, which change nothing) need `read-only`; everything else
/// needs `admin`.
pub fn required_role(method: &Method, path: &str) -> Role {
    let read = *method == Method::GET
        || *method == Method::HEAD
        || (*method == Method::POST && matches!(path, "/v1/emulate" | "/v1/config/preview"));
    if read { Role::ReadOnly } else { Role::Admin }
}

fn allows(held: Role, needed: Role) -> bool {
    held == Role::Admin || needed == Role::ReadOnly
}

/// Requests refused since the daemon started.
#[derive(Debug, Default)]
pub struct Refusals {
    /// Public requests without a valid token (401).
    pub unauthenticated: AtomicU64,
    /// Public requests whose token's role is not enough, and local-socket clients of
    /// another user than root and the daemon's (403).
    pub forbidden: AtomicU64,
    /// Node requests (internal API, forwarded writes) without a valid signature (401).
    pub nodes: AtomicU64,
}

/// Logs at most one line per [`REFUSAL_LOG_INTERVAL`], saying how many were not logged.
#[derive(Debug, Default)]
struct RateLimitedLog {
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl RateLimitedLog {
    fn warn(&self, line: &str) {
        let now = Instant::now();
        let mut last = self.last.lock().expect(POISONED);
        if last.is_some_and(|l| now.duration_since(l) < REFUSAL_LOG_INTERVAL) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(now);
        drop(last);
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        if suppressed > 0 {
            tracing::warn!(
                "{line} ({suppressed} more refusals since the last one logged: see `halcyon status`)"
            );
        } else {
            tracing::warn!("{line}");
        }
    }
}

/// This node's key for signing node requests, and the CA for checking others'.
struct NodeKeys {
    cluster_id: u64,
    node: String,
    signer: NodeSigner,
    /// The signer's certificate in hex, as each signed request carries it (made once).
    certificate_hex: String,
    verifier: PeerVerifier,
}

impl Secrets {
    fn new(credentials: &Credentials) -> Result<Secrets, String> {
        let signer = NodeSigner::new(credentials)?;
        Ok(Secrets {
            tokens: credentials.tokens.clone(),
            keys: NodeKeys {
                cluster_id: credentials.cluster_id,
                node: credentials.node.clone(),
                certificate_hex: hex(signer.certificate_der()),
                signer,
                verifier: PeerVerifier::new(credentials),
            },
        })
    }
}

/// Signatures accepted recently: each is accepted once.
#[derive(Default)]
struct Seen {
    by_signature: BTreeMap<[u8; 32], i64>,
    /// In arrival order, for pruning.
    order: VecDeque<([u8; 32], i64)>,
}

/// Credentials checked and built by [`Auth::prepare`], not yet in use.
pub struct Prepared(Arc<Secrets>);

/// What a node's credentials give the API: its tokens and keys. Replaced whole at a reload
/// ([`Auth::reload`]); a request uses one version from start to end.
struct Secrets {
    tokens: Tokens,
    keys: NodeKeys,
}

/// The daemon's authentication: tokens and node keys from its credentials, or insecure.
pub struct Auth {
    /// `None`: insecure (never changes while the daemon runs).
    secrets: Option<std::sync::RwLock<Arc<Secrets>>>,
    seen: Mutex<Seen>,
    pub refusals: Refusals,
    log: RateLimitedLog,
    /// The daemon's user: it and root may use the local socket.
    daemon_uid: u32,
}

/// Why a node request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeRefusal {
    #[error("no node signature (this endpoint is for the cluster's nodes)")]
    Unsigned,
    #[error("no {NODE_HEADER} header (a node names itself in each request)")]
    Unnamed,
    #[error("malformed {0} header")]
    Malformed(&'static str),
    #[error("\"{0}\" is not a node of this cluster")]
    UnknownNode(String),
    #[error("{0}")]
    Peer(PeerRefusal),
    #[error(
        "signed at {signed_ms} ms, {skew_ms} ms from this node's clock (window {window_ms} ms)"
    )]
    OutOfWindow {
        signed_ms: i64,
        skew_ms: i64,
        window_ms: u128,
    },
    #[error("a replay: this signature was accepted already")]
    Replay,
    #[error("too many signed requests within the replay window ({SEEN_MAX})")]
    Saturated,
}

/// What a checked node request says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBy {
    pub node: String,
    /// Who asked, when the node forwards a client's request.
    pub caller: Option<(String, String)>,
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn unhex(text: &str, max: usize) -> Option<Vec<u8>> {
    if text.is_empty() || text.len() > max || !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// The fields a signature covers, in order.
struct Signed<'a> {
    node: &'a str,
    time_ms: i64,
    nonce: &'a str,
    method: &'a str,
    path: &'a str,
    caller: Option<(&'a str, &'a str)>,
    body: &'a [u8],
}

impl Signed<'_> {
    /// What is signed: the fields, one a line, then the body.
    fn message(&self, cluster_id: u64) -> Vec<u8> {
        let (who, from) = self.caller.unwrap_or(("", ""));
        // Header values and paths hold no newline: the fields cannot run into each other.
        let head = format!(
            "{SIGNATURE_CONTEXT}\n{cluster_id}\n{}\n{}\n{}\n{}\n{}\n{who}\n{from}\n",
            self.node, self.time_ms, self.nonce, self.method, self.path
        );
        let mut message = head.into_bytes();
        message.extend_from_slice(self.body);
        message
    }
}

impl Auth {
    /// No authentication: every request accepted (`--insecure`).
    pub fn insecure() -> Auth {
        Auth {
            secrets: None,
            seen: Mutex::default(),
            refusals: Refusals::default(),
            log: RateLimitedLog::default(),
            daemon_uid: local_socket::own_uid(),
        }
    }

    /// The tokens, this node's key and the CA from a node's credentials.
    pub fn from_credentials(credentials: &Credentials) -> Result<Auth, String> {
        Ok(Auth {
            secrets: Some(std::sync::RwLock::new(Arc::new(Secrets::new(credentials)?))),
            seen: Mutex::default(),
            refusals: Refusals::default(),
            log: RateLimitedLog::default(),
            daemon_uid: local_socket::own_uid(),
        })
    }

    /// The tokens, this node's key and the trusted CAs of `credentials`, ready for
    /// [`Auth::install`] (a reload); refused on an insecure node or when the node key is
    /// unusable.
    pub fn prepare(&self, credentials: &Credentials) -> Result<Prepared, String> {
        if self.secrets.is_none() {
            return Err("this node runs --insecure: it has no credentials to reload".into());
        }
        Ok(Prepared(Arc::new(Secrets::new(credentials)?)))
    }

    /// Puts prepared credentials in use; requests under way finish with the ones they
    /// started with.
    pub fn install(&self, prepared: Prepared) {
        let secrets = self
            .secrets
            .as_ref()
            .expect("prepare refuses an insecure node");
        *secrets.write().expect(POISONED) = prepared.0;
    }

    /// The credentials' part in use now (`None`: insecure).
    fn secrets(&self) -> Option<Arc<Secrets>> {
        self.secrets
            .as_ref()
            .map(|s| Arc::clone(&s.read().expect(POISONED)))
    }

    /// True when requests are checked (the node has credentials).
    pub fn enforced(&self) -> bool {
        self.secrets.is_some()
    }

    /// The headers that sign a request from this node (none when insecure). `caller`: who
    /// asked, when this node forwards a client's request.
    pub fn sign(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        caller: Option<&Caller>,
        now_ms: i64,
    ) -> Vec<(&'static str, String)> {
        let Some(secrets) = self.secrets() else {
            return Vec::new();
        };
        let keys = &secrets.keys;
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).expect("the system's random number generator works");
        let nonce = hex(&nonce);
        let caller_fields = caller.map(|c| (c.who.clone(), c.from.clone()));
        let signed = Signed {
            node: &keys.node,
            time_ms: now_ms,
            nonce: &nonce,
            method,
            path,
            caller: caller_fields
                .as_ref()
                .map(|(w, f)| (w.as_str(), f.as_str())),
            body,
        };
        let signature = hex(&keys.signer.sign(&signed.message(keys.cluster_id)));
        let mut headers = vec![
            (NODE_HEADER, keys.node.clone()),
            (TIME_HEADER, now_ms.to_string()),
            (NONCE_HEADER, nonce),
            (SIGNATURE_HEADER, signature),
            (CERTIFICATE_HEADER, keys.certificate_hex.clone()),
        ];
        if let Some((who, from)) = caller_fields {
            headers.push((CALLER_HEADER, who));
            headers.push((CALLER_ADDRESS_HEADER, from));
        }
        headers
    }

    /// Checks a node's signature on a request; `is_node` says whether a name is a node of
    /// this cluster. Accepts each signature once.
    pub fn verify_node(
        &self,
        headers: &HeaderMap,
        method: &str,
        path: &str,
        body: &[u8],
        now_ms: i64,
        is_node: impl Fn(&str) -> bool,
    ) -> Result<SignedBy, NodeRefusal> {
        let secrets = self.secrets();
        let Some(keys) = secrets.as_ref().map(|s| &s.keys) else {
            return taken_at_its_word(headers);
        };
        let node = text(headers, NODE_HEADER)?.ok_or(NodeRefusal::Unsigned)?;
        let signature = text(headers, SIGNATURE_HEADER)?.ok_or(NodeRefusal::Unsigned)?;
        let signature =
            unhex(signature, SIGNATURE_HEX_MAX).ok_or(NodeRefusal::Malformed(SIGNATURE_HEADER))?;
        let certificate = text(headers, CERTIFICATE_HEADER)?.ok_or(NodeRefusal::Unsigned)?;
        let certificate = unhex(certificate, CERTIFICATE_HEX_MAX)
            .ok_or(NodeRefusal::Malformed(CERTIFICATE_HEADER))?;
        let time_ms: i64 = text(headers, TIME_HEADER)?
            .and_then(|t| t.parse().ok())
            .ok_or(NodeRefusal::Malformed(TIME_HEADER))?;
        let nonce = text(headers, NONCE_HEADER)?
            .filter(|n| n.len() == 32 && n.chars().all(|c| c.is_ascii_hexdigit()))
            .ok_or(NodeRefusal::Malformed(NONCE_HEADER))?;
        let caller = caller_of(headers)?;
        if !is_node(node) {
            return Err(NodeRefusal::UnknownNode(node.to_owned()));
        }
        let signed = Signed {
            node,
            time_ms,
            nonce,
            method,
            path,
            caller: caller.as_ref().map(|(w, f)| (w.as_str(), f.as_str())),
            body,
        };
        keys.verifier
            .verify(
                &certificate,
                node,
                &signed.message(keys.cluster_id),
                &signature,
                now_ms.div_euclid(1000),
            )
            .map_err(NodeRefusal::Peer)?;
        let skew_ms = now_ms.saturating_sub(time_ms);
        let window_ms = REPLAY_WINDOW.as_millis();
        if skew_ms.unsigned_abs() as u128 > window_ms {
            return Err(NodeRefusal::OutOfWindow {
                signed_ms: time_ms,
                skew_ms,
                window_ms,
            });
        }
        self.remember(Sha256::digest(&signature).into(), time_ms, now_ms)?;
        Ok(SignedBy {
            node: node.to_owned(),
            caller,
        })
    }

    /// Checks a request that came on a mutual TLS connection whose client authenticated
    /// with `certificate` (DER; the internal API): the node it names ([`NODE_HEADER`]) must
    /// be a node of this cluster (`is_node`) and named by the certificate, which must be of
    /// one of the CAs trusted now, carry the cluster id and be valid now. Checked at each
    /// request, so that a rollover's new CAs and a certificate's expiry refuse requests on
    /// connections made before them. The handshake proved the client holds the
    /// certificate's key, and TLS keeps each request whole and unreplayable on its
    /// connection: no signature is checked and nothing is remembered.
    pub fn verify_node_connection(
        &self,
        headers: &HeaderMap,
        certificate: &[u8],
        now_ms: i64,
        is_node: impl Fn(&str) -> bool,
    ) -> Result<SignedBy, NodeRefusal> {
        let secrets = self.secrets();
        let Some(keys) = secrets.as_ref().map(|s| &s.keys) else {
            // Insecure: no TLS, so no certificate either.
            return taken_at_its_word(headers);
        };
        let node = text(headers, NODE_HEADER)?.ok_or(NodeRefusal::Unnamed)?;
        let caller = caller_of(headers)?;
        if !is_node(node) {
            return Err(NodeRefusal::UnknownNode(node.to_owned()));
        }
        keys.verifier
            .vouch(certificate, node, now_ms.div_euclid(1000))
            .map_err(NodeRefusal::Peer)?;
        Ok(SignedBy {
            node: node.to_owned(),
            caller,
        })
    }

    /// Accepts `signature` once: forgets those out of the window, refuses one already seen.
    fn remember(&self, signature: [u8; 32], time_ms: i64, now_ms: i64) -> Result<(), NodeRefusal> {
        let oldest = now_ms.saturating_sub(REPLAY_WINDOW.as_millis() as i64);
        let mut seen = self.seen.lock().expect(POISONED);
        while let Some(&(old, at)) = seen.order.front() {
            if at >= oldest {
                break;
            }
            seen.order.pop_front();
            seen.by_signature.remove(&old);
        }
        // Out-of-order arrivals may leave old entries behind the front: prune them too when
        // full.
        if seen.by_signature.len() >= SEEN_MAX {
            seen.by_signature.retain(|_, at| *at >= oldest);
            seen.order.retain(|(_, at)| *at >= oldest);
        }
        if seen.by_signature.contains_key(&signature) {
            return Err(NodeRefusal::Replay);
        }
        if seen.by_signature.len() >= SEEN_MAX {
            return Err(NodeRefusal::Saturated);
        }
        seen.by_signature.insert(signature, time_ms);
        seen.order.push_back((signature, time_ms));
        Ok(())
    }

    /// Checks a public request's token for `needed`: the caller's name, or why not
    /// (status and message).
    pub fn verify_token(
        &self,
        headers: &HeaderMap,
        needed: Role,
        method: &Method,
        path: &str,
    ) -> Result<(String, Role), (StatusCode, String)> {
        let secrets = self.secrets();
        let Some(tokens) = secrets.as_ref().map(|s| &s.tokens) else {
            return Ok(("anonymous".to_owned(), Role::Admin));
        };
        let presented = match headers.get(header::AUTHORIZATION) {
            None => {
                return Err((
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated: this API needs a token (`Authorization: Bearer hct_...`); \
                     the CLI reads --token-file, $HALCYON_TOKEN or admin.token in the \
                     credentials directory"
                        .to_owned(),
                ));
            }
            Some(value) => value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(|| {
                    (
                        StatusCode::UNAUTHORIZED,
                        "unauthenticated: the Authorization header must be `Bearer TOKEN`"
                            .to_owned(),
                    )
                })?,
        };
        let Some(token) = tokens.verify(presented) else {
            return Err((
                StatusCode::UNAUTHORIZED,
                "unauthenticated: the token is not one of this cluster's (tokens.toml)".to_owned(),
            ));
        };
        if !allows(token.role, needed) {
            return Err((
                StatusCode::FORBIDDEN,
                format!(
                    "forbidden: token \"{}\" has role {}; {method} {path} needs role {}",
                    token.name,
                    token.role.as_str(),
                    needed.as_str()
                ),
            ));
        }
        Ok((format!("token {}", token.name), token.role))
    }

    fn refused(&self, counter: &AtomicU64, line: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.log.warn(&line);
    }
}

/// An insecure node's reading of a node request: the node it claims (`anonymous` when it
/// claims none) and the caller it forwards, taken at their word.
fn taken_at_its_word(headers: &HeaderMap) -> Result<SignedBy, NodeRefusal> {
    Ok(SignedBy {
        node: text(headers, NODE_HEADER)?
            .unwrap_or("anonymous")
            .to_owned(),
        caller: caller_of(headers)?,
    })
}

/// A header's text, if present; malformed (not visible ASCII) is an error.
fn text<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, NodeRefusal> {
    headers
        .get(name)
        .map(|v: &HeaderValue| v.to_str().map_err(|_| NodeRefusal::Malformed(name)))
        .transpose()
}

fn caller_of(headers: &HeaderMap) -> Result<Option<(String, String)>, NodeRefusal> {
    match (
        text(headers, CALLER_HEADER)?,
        text(headers, CALLER_ADDRESS_HEADER)?,
    ) {
        (None, None) => Ok(None),
        (Some(who), Some(from)) => Ok(Some((who.to_owned(), from.to_owned()))),
        (None, Some(_)) => Err(NodeRefusal::Malformed(CALLER_HEADER)),
        (Some(_), None) => Err(NodeRefusal::Malformed(CALLER_ADDRESS_HEADER)),
    }
}

fn refusal(status: StatusCode, message: String) -> Response {
    let mut response = (
        status,
        axum::Json(ErrorBody {
            schema_version: SCHEMA_VERSION,
            error: message,
            event: None,
        }),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

fn path_of(request: &Request<Body>) -> String {
    request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    )
}

/// What the middleware needs of the node: its authentication, its clock and its
/// configuration's node names.
pub trait Gate: Send + Sync + 'static {
    fn auth(&self) -> &Auth;
    fn now_ms(&self) -> i64;
    fn is_node(&self, name: &str) -> bool;
    /// Whether `name` is the cluster's quorum witness (it may ask the two questions of a
    /// member with a new store on the internal API: [`witness_may_ask`]).
    fn is_witness(&self, _name: &str) -> bool {
        false
    }
}

/// The internal API's requests the quorum witness may make: those of a member with a new
/// store (`node::admission`), the membership it is counted in and its own forgetting.
/// Everything else there is the nodes' alone.
pub fn witness_may_ask(method: &Method, path: &str) -> bool {
    use crate::node::admission::{FORGET_PATH, MEMBERSHIP_PATH};
    (method == Method::GET && path == MEMBERSHIP_PATH)
        || (method == Method::POST && path == FORGET_PATH)
}

/// Reads a request's body whole (bounded) and checks its node signature; the request
/// rebuilt with the body, or the refusal.
async fn check_signed<G: Gate>(
    gate: &G,
    peer: SocketAddr,
    request: Request<Body>,
    may: impl Fn(&str) -> bool,
) -> Result<(Request<Body>, SignedBy), Response> {
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, SIGNED_BODY_MAX_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            return Err(refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("bad request body: {e} (at most {SIGNED_BODY_MAX_BYTES} bytes)"),
            ));
        }
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let checked = gate.auth().verify_node(
        &parts.headers,
        parts.method.as_str(),
        &path,
        &bytes,
        gate.now_ms(),
        may,
    );
    let request = Request::from_parts(parts, Body::from(bytes));
    match checked {
        Ok(signed) => Ok((request, signed)),
        Err(why) => Err(refuse_node_request(gate, peer, &request, why)),
    }
}

/// Middleware of the internal API: only requests of the cluster's nodes pass, and the
/// witness's of [`witness_may_ask`]. On mutual TLS (a node with credentials) a request is
/// its connection's node's ([`Auth::verify_node_connection`]); in the clear (insecure) the
/// node it names.
pub async fn internal<G: Gate>(
    State(gate): State<std::sync::Arc<G>>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let witness_route = witness_may_ask(request.method(), request.uri().path());
    let may = |n: &str| gate.is_node(n) || (witness_route && gate.is_witness(n));
    let checked = match &peer.certificate {
        Some(certificate) => {
            let by = gate.auth().verify_node_connection(
                request.headers(),
                &certificate.0,
                gate.now_ms(),
                may,
            );
            match by {
                Ok(signed) => Ok((request, signed)),
                Err(why) => Err(refuse_node_request(&*gate, peer.addr, &request, why)),
            }
        }
        None => check_signed(&*gate, peer.addr, request, may).await,
    };
    match checked {
        Ok((mut request, signed)) => {
            // Handlers that act for the requesting node itself read who it is.
            request.extensions_mut().insert(signed);
            next.run(request).await
        }
        Err(refused) => refused,
    }
}

/// Counts and logs a refused node request; its answer (401).
fn refuse_node_request<G: Gate>(
    gate: &G,
    peer: SocketAddr,
    request: &Request<Body>,
    why: NodeRefusal,
) -> Response {
    let auth = gate.auth();
    auth.refused(
        &auth.refusals.nodes,
        format!(
            "refused a node request {} {} from {peer}: {why}",
            request.method(),
            path_of(request)
        ),
    );
    refusal(
        StatusCode::UNAUTHORIZED,
        format!("unauthenticated: node request refused: {why}"),
    )
}

/// Where a public request came from: a network client's address, or a local client's
/// credentials (the local socket, `local_socket`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    Network(SocketAddr),
    Local(LocalPeer),
}

impl Client {
    /// The connection's information axum put into the request (`ConnectInfo`).
    fn of(request: &Request<Body>) -> Option<Client> {
        let extensions = request.extensions();
        extensions
            .get::<ConnectInfo<PeerAddr>>()
            .map(|ConnectInfo(p)| Client::Network(p.addr))
            .or_else(|| {
                extensions
                    .get::<ConnectInfo<LocalPeer>>()
                    .map(|ConnectInfo(p)| Client::Local(*p))
            })
    }
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Client::Network(a) => write!(f, "{a}"),
            Client::Local(LocalPeer { pid: Some(pid), .. }) => write!(f, "pid {pid}"),
            Client::Local(LocalPeer { pid: None, .. }) => write!(f, "the local socket"),
        }
    }
}

/// Who asked on the local socket: `uid 0 (local socket)`, or why the client is refused
/// (403). Only root and the daemon's own user pass (`local_socket::allowed`).
pub fn local_caller(peer: LocalPeer, daemon_uid: u32) -> Result<String, (StatusCode, String)> {
    match peer.uid {
        Some(uid) if local_socket::allowed(uid, daemon_uid) => {
            Ok(format!("uid {uid} (local socket)"))
        }
        Some(uid) => Err((
            StatusCode::FORBIDDEN,
            format!(
                "forbidden: the local socket serves root and the daemon's user (uid \
                 {daemon_uid}); uid {uid} may use the TCP API with a token"
            ),
        )),
        None => Err((
            StatusCode::FORBIDDEN,
            "forbidden: the local socket could not tell who the client is (SO_PEERCRED)".to_owned(),
        )),
    }
}

/// Middleware of the public API: a token with the role the request needs, a node's signature
/// (a write forwarded to the leader), or a local client of root or the daemon's user (the
/// local socket, no token); puts the [`Caller`] into the request.
pub async fn public<G: Gate>(
    State(gate): State<std::sync::Arc<G>>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let auth = gate.auth();
    let Some(client) = Client::of(&request) else {
        // Every listener the daemon serves gives its connections' information.
        return refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the API server gave no client information".to_owned(),
        );
    };
    // The status page's document is static (HTML, CSS and script, no cluster data): a browser
    // loads it without a token, and the page sends the token it is given with every request
    // for data (`#token=` in its address, kept in the tab).
    if request.method() == Method::GET && request.uri().path() == "/" {
        let mut request = request;
        request.extensions_mut().insert(Caller {
            who: "anonymous (the status page's document)".to_owned(),
            from: client.to_string(),
            via: None,
        });
        return next.run(request).await;
    }
    let peer = match client {
        Client::Network(peer) => peer,
        Client::Local(local) => {
            let path = path_of(&request);
            return match local_caller(local, auth.daemon_uid) {
                Ok(who) => {
                    let mut request = request;
                    request.extensions_mut().insert(Caller {
                        who,
                        from: client.to_string(),
                        via: None,
                    });
                    let mut response = next.run(request).await;
                    response
                        .headers_mut()
                        .insert(ROLE_HEADER, HeaderValue::from_static(Role::Admin.as_str()));
                    response
                }
                Err((status, message)) => {
                    auth.refused(
                        &auth.refusals.forbidden,
                        format!(
                            "refused a local-socket request {} {path} from {}, {client}: {message}",
                            request.method(),
                            local.uid.map_or_else(
                                || "an unknown uid".to_owned(),
                                |u| format!("uid {u}")
                            )
                        ),
                    );
                    refusal(status, message)
                }
            };
        }
    };
    let (request, role) = if request.headers().contains_key(SIGNATURE_HEADER)
        || (!auth.enforced() && request.headers().contains_key(NODE_HEADER))
    {
        let (mut request, signed) =
            match check_signed(&*gate, peer, request, |n| gate.is_node(n)).await {
                Ok(checked) => checked,
                Err(refused) => return refused,
            };
        let caller = match signed.caller {
            Some((who, from)) => Caller {
                who,
                from,
                via: Some(signed.node),
            },
            None => Caller {
                who: format!("node {}", signed.node),
                from: peer.to_string(),
                via: None,
            },
        };
        request.extensions_mut().insert(caller);
        (request, None)
    } else {
        let path = path_of(&request);
        let needed = required_role(request.method(), request.uri().path());
        match auth.verify_token(request.headers(), needed, request.method(), &path) {
            Ok((who, role)) => {
                let mut request = request;
                request.extensions_mut().insert(Caller {
                    who,
                    from: peer.to_string(),
                    via: None,
                });
                (request, Some(role))
            }
            Err((status, message)) => {
                let counter = if status == StatusCode::FORBIDDEN {
                    &auth.refusals.forbidden
                } else {
                    &auth.refusals.unauthenticated
                };
                auth.refused(
                    counter,
                    format!(
                        "refused an API request {} {path} from {peer}: {message}",
                        request.method()
                    ),
                );
                return refusal(status, message);
            }
        }
    };
    let mut response = next.run(request).await;
    if let Some(role) = role {
        response
            .headers_mut()
            .insert(ROLE_HEADER, HeaderValue::from_static(role.as_str()));
    }
    response
}

impl Gate for crate::node::Node {
    fn auth(&self) -> &Auth {
        &self.auth
    }

    fn now_ms(&self) -> i64 {
        self.timestamp().as_millisecond()
    }

    fn is_node(&self, name: &str) -> bool {
        self.config().node(name).is_some()
    }

    fn is_witness(&self, name: &str) -> bool {
        self.config().cluster.witness_named(name).is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::SystemTime;

    use super::*;
    use halcyon_pki::{ClusterSpec, NodeSpec, Token, token_hash};

    const NOW: i64 = 1_800_000_000_000;

    fn tokens() -> Tokens {
        Tokens {
            tokens: vec![
                Token {
                    name: "admin".into(),
                    role: Role::Admin,
                    sha256: token_hash("hct_admin"),
                },
                Token {
                    name: "read-only".into(),
                    role: Role::ReadOnly,
                    sha256: token_hash("hct_reader"),
                },
            ],
        }
    }

    /// Credentials of cluster 7 (nodes n1, n2, n3, n9) made in `dir`.
    fn cluster(dir: &Path) -> Vec<Credentials> {
        let spec = ClusterSpec {
            name: "t".into(),
            id: 7,
            nodes: ["n1", "n2", "n3", "n9"]
                .iter()
                .map(|n| NodeSpec {
                    name: (*n).into(),
                    addresses: Vec::new(),
                })
                .collect(),
        };
        // Valid around NOW (the tests' clock).
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(NOW as u64);
        halcyon_pki::init(dir, &spec, false, at).unwrap();
        ["n1", "n2", "n3", "n9"]
            .iter()
            .map(|n| {
                let mut c = halcyon_pki::load_at(dir, n, at).unwrap();
                c.tokens = tokens();
                c
            })
            .collect()
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        nodes: Vec<Credentials>,
        /// n2 of another `halcyon init` (another CA, same cluster id and names).
        stranger: Credentials,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let nodes = cluster(&dir.path().join("ours"));
        let stranger = cluster(&dir.path().join("theirs")).swap_remove(1);
        Fixture {
            _dir: dir,
            nodes,
            stranger,
        }
    }

    fn auth(credentials: &Credentials) -> Auth {
        Auth::from_credentials(credentials).unwrap()
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    fn bearer(token: &str) -> HeaderMap {
        headers(&[("authorization", format!("Bearer {token}"))])
    }

    fn is_node(name: &str) -> bool {
        ["n1", "n2", "n3"].contains(&name)
    }

    #[test]
    fn hex_is_two_lowercase_digits_a_byte_and_reads_back() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(hex(&[]), "");
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&all), 512), Some(all));
    }

    #[test]
    fn reads_need_read_only_and_everything_else_admin() {
        assert_eq!(required_role(&Method::GET, "/v1/status"), Role::ReadOnly);
        assert_eq!(required_role(&Method::GET, "/metrics"), Role::ReadOnly);
        assert_eq!(required_role(&Method::POST, "/v1/emulate"), Role::ReadOnly);
        for path in [
            "/v1/packages/web/move",
            "/v1/nodes/n1/halt",
            "/v1/cluster/halt",
            "/v1/events/raise",
            "/v1/events/current/skip",
            "/v1/something-new",
        ] {
            assert_eq!(required_role(&Method::POST, path), Role::Admin, "{path}");
        }
        assert_eq!(required_role(&Method::DELETE, "/v1/status"), Role::Admin);
    }

    #[test]
    fn tokens_are_checked_for_the_role_with_exact_refusals() {
        let f = fixture();
        let a = auth(&f.nodes[0]);
        let post = Method::POST;
        let path = "/v1/packages/web/move";
        assert_eq!(
            a.verify_token(&bearer("hct_admin"), Role::Admin, &post, path),
            Ok(("token admin".to_owned(), Role::Admin))
        );
        assert_eq!(
            a.verify_token(
                &bearer("hct_reader"),
                Role::ReadOnly,
                &Method::GET,
                "/v1/status"
            ),
            Ok(("token read-only".to_owned(), Role::ReadOnly))
        );
        assert_eq!(
            a.verify_token(&bearer("hct_reader"), Role::Admin, &post, path),
            Err((
                StatusCode::FORBIDDEN,
                "forbidden: token \"read-only\" has role read-only; POST /v1/packages/web/move \
                 needs role admin"
                    .to_owned()
            ))
        );
        let (status, message) = a
            .verify_token(
                &HeaderMap::new(),
                Role::ReadOnly,
                &Method::GET,
                "/v1/status",
            )
            .unwrap_err();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            message.starts_with("unauthenticated: this API needs a token"),
            "{message}"
        );
        assert_eq!(
            a.verify_token(
                &bearer("hct_wrong"),
                Role::ReadOnly,
                &Method::GET,
                "/v1/status"
            ),
            Err((
                StatusCode::UNAUTHORIZED,
                "unauthenticated: the token is not one of this cluster's (tokens.toml)".to_owned()
            ))
        );
        let basic = headers(&[("authorization", "Basic YWRtaW4=".to_owned())]);
        assert_eq!(
            a.verify_token(&basic, Role::ReadOnly, &Method::GET, "/v1/status")
                .unwrap_err()
                .1,
            "unauthenticated: the Authorization header must be `Bearer TOKEN`"
        );
        // Insecure: anyone, as anonymous, with every right.
        assert_eq!(
            Auth::insecure().verify_token(&HeaderMap::new(), Role::Admin, &post, path),
            Ok(("anonymous".to_owned(), Role::Admin))
        );
    }

    #[test]
    fn a_local_client_is_named_by_its_uid_and_only_root_and_the_daemons_user_pass() {
        let peer = |uid| LocalPeer {
            uid,
            pid: Some(4242),
        };
        assert_eq!(
            local_caller(peer(Some(0)), 1000),
            Ok("uid 0 (local socket)".to_owned())
        );
        assert_eq!(
            local_caller(peer(Some(1000)), 1000),
            Ok("uid 1000 (local socket)".to_owned())
        );
        assert_eq!(
            local_caller(peer(Some(65534)), 0),
            Err((
                StatusCode::FORBIDDEN,
                "forbidden: the local socket serves root and the daemon's user (uid 0); uid \
                 65534 may use the TCP API with a token"
                    .to_owned()
            ))
        );
        assert_eq!(
            local_caller(peer(None), 0).unwrap_err().0,
            StatusCode::FORBIDDEN
        );
        let caller = Caller {
            who: "uid 0 (local socket)".into(),
            from: Client::Local(peer(Some(0))).to_string(),
            via: None,
        };
        assert_eq!(caller.audit(), "uid 0 (local socket) from pid 4242");
    }

    #[test]
    fn a_signed_request_is_accepted_once_and_any_change_is_refused() {
        let f = fixture();
        let sender = auth(&f.nodes[1]);
        let receiver = auth(&f.nodes[0]);
        let body = br#"{"node":"n2"}"#;
        let path = "/v1/internal/lease";
        let signed = headers(&sender.sign("POST", path, body, None, NOW));
        assert_eq!(
            receiver.verify_node(&signed, "POST", path, body, NOW + 5, is_node),
            Ok(SignedBy {
                node: "n2".into(),
                caller: None
            })
        );
        // The same request again: a replay.
        assert_eq!(
            receiver.verify_node(&signed, "POST", path, body, NOW + 6, is_node),
            Err(NodeRefusal::Replay)
        );
        // Another body, path or method under the same signature: refused.
        let fresh = headers(&sender.sign("POST", path, body, None, NOW));
        for (method, path, body) in [
            ("POST", path, &br#"{"node":"n3"}"#[..]),
            ("POST", "/v1/internal/write", &body[..]),
            ("GET", path, &body[..]),
        ] {
            assert_eq!(
                receiver.verify_node(&fresh, method, path, body, NOW, is_node),
                Err(NodeRefusal::Peer(PeerRefusal::BadSignature))
            );
        }
        // n2's genuine certificate and key, claiming to be n3: refused.
        let mut claimed = headers(&sender.sign("POST", path, body, None, NOW));
        claimed.insert(NODE_HEADER, "n3".parse().unwrap());
        assert_eq!(
            receiver.verify_node(&claimed, "POST", path, body, NOW, is_node),
            Err(NodeRefusal::Peer(PeerRefusal::WrongNode {
                node: "n3".into(),
                names: vec!["n2".into()]
            }))
        );
    }

    #[test]
    fn another_ca_old_times_unknown_nodes_and_missing_headers_are_refused() {
        let f = fixture();
        let receiver = auth(&f.nodes[0]);
        let body = b"x";
        let path = "/v1/internal/write";
        let forged = headers(&auth(&f.stranger).sign("POST", path, body, None, NOW));
        assert_eq!(
            receiver.verify_node(&forged, "POST", path, body, NOW, is_node),
            Err(NodeRefusal::Peer(PeerRefusal::NotOurCa))
        );
        let sender = auth(&f.nodes[1]);
        let window = REPLAY_WINDOW.as_millis() as i64;
        let old = headers(&sender.sign("POST", path, body, None, NOW - window - 1));
        assert_eq!(
            receiver.verify_node(&old, "POST", path, body, NOW, is_node),
            Err(NodeRefusal::OutOfWindow {
                signed_ms: NOW - window - 1,
                skew_ms: window + 1,
                window_ms: window as u128
            })
        );
        // n9 has a certificate of the cluster but is not a configured node.
        let unknown = headers(&auth(&f.nodes[3]).sign("POST", path, body, None, NOW));
        assert_eq!(
            receiver.verify_node(&unknown, "POST", path, body, NOW, is_node),
            Err(NodeRefusal::UnknownNode("n9".into()))
        );
        assert_eq!(
            receiver.verify_node(&HeaderMap::new(), "POST", path, body, NOW, is_node),
            Err(NodeRefusal::Unsigned)
        );
        let mut bad_time = headers(&sender.sign("POST", path, body, None, NOW));
        bad_time.insert(TIME_HEADER, "soon".parse().unwrap());
        assert_eq!(
            receiver.verify_node(&bad_time, "POST", path, body, NOW, is_node),
            Err(NodeRefusal::Malformed(TIME_HEADER))
        );
        let mut bad_certificate = headers(&sender.sign("POST", path, body, None, NOW));
        bad_certificate.insert(CERTIFICATE_HEADER, "zz".parse().unwrap());
        assert_eq!(
            receiver.verify_node(&bad_certificate, "POST", path, body, NOW, is_node),
            Err(NodeRefusal::Malformed(CERTIFICATE_HEADER))
        );
    }

    #[test]
    fn a_mutual_tls_request_is_its_certificates_node_checked_at_each_request() {
        let f = fixture();
        let receiver = auth(&f.nodes[0]);
        let n2 = f.nodes[1].certificate_der.clone();
        let named = |node: &str| headers(&[(NODE_HEADER, node.to_owned())]);
        // No signature needed: the connection's certificate names the node.
        assert_eq!(
            receiver.verify_node_connection(&named("n2"), &n2, NOW, is_node),
            Ok(SignedBy {
                node: "n2".into(),
                caller: None
            })
        );
        // Again (nothing is remembered: no replay set on this path).
        assert!(
            receiver
                .verify_node_connection(&named("n2"), &n2, NOW, is_node)
                .is_ok()
        );
        assert_eq!(receiver.seen.lock().unwrap().by_signature.len(), 0);
        // A forwarded caller is taken with it.
        let mut forwarded = named("n2");
        forwarded.insert(CALLER_HEADER, "token admin".parse().unwrap());
        forwarded.insert(CALLER_ADDRESS_HEADER, "192.0.2.1:4242".parse().unwrap());
        assert_eq!(
            receiver
                .verify_node_connection(&forwarded, &n2, NOW, is_node)
                .map(|s| s.caller),
            Ok(Some(("token admin".into(), "192.0.2.1:4242".into())))
        );
        // n2's connection cannot speak for n3, nor for nobody.
        assert_eq!(
            receiver.verify_node_connection(&named("n3"), &n2, NOW, is_node),
            Err(NodeRefusal::Peer(PeerRefusal::WrongNode {
                node: "n3".into(),
                names: vec!["n2".into()]
            }))
        );
        assert_eq!(
            receiver.verify_node_connection(&HeaderMap::new(), &n2, NOW, is_node),
            Err(NodeRefusal::Unnamed)
        );
        // A certificate of the cluster for a node the configuration does not have.
        let n9 = f.nodes[3].certificate_der.clone();
        assert_eq!(
            receiver.verify_node_connection(&named("n9"), &n9, NOW, is_node),
            Err(NodeRefusal::UnknownNode("n9".into()))
        );
        // Checked at each request: a certificate of a CA the node does not trust (now: after
        // a rollover that dropped it), and once it has expired, refuse the connection's
        // requests.
        assert_eq!(
            receiver.verify_node_connection(
                &named("n2"),
                &f.stranger.certificate_der,
                NOW,
                is_node
            ),
            Err(NodeRefusal::Peer(PeerRefusal::NotOurCa))
        );
        // An insecure node takes the claim at its word (it has no TLS: no certificate comes).
        let insecure = Auth::insecure();
        assert_eq!(
            insecure
                .verify_node_connection(&named("n3"), &n2, NOW, is_node)
                .map(|s| s.node),
            Ok("n3".into())
        );
        assert_eq!(
            insecure
                .verify_node_connection(&HeaderMap::new(), &n2, NOW, is_node)
                .map(|s| s.node),
            Ok("anonymous".into())
        );
        let years = 20 * 365 * 86_400_000;
        assert_eq!(
            receiver.verify_node_connection(&named("n2"), &n2, NOW + years, is_node),
            Err(NodeRefusal::Peer(PeerRefusal::Validity(
                "has expired".into()
            )))
        );
    }

    #[test]
    fn a_forwarded_caller_is_signed_with_the_request() {
        let f = fixture();
        let sender = auth(&f.nodes[1]);
        let receiver = auth(&f.nodes[0]);
        let caller = Caller {
            who: "token admin".into(),
            from: "127.0.0.1:5000".into(),
            via: None,
        };
        let path = "/v1/packages/web/move?request=ab";
        let signed = sender.sign("POST", path, b"", Some(&caller), NOW);
        let by = receiver
            .verify_node(&headers(&signed), "POST", path, b"", NOW, is_node)
            .unwrap();
        assert_eq!(
            by.caller,
            Some(("token admin".to_owned(), "127.0.0.1:5000".to_owned()))
        );
        // Claiming another caller under the same signature fails.
        let mut changed = headers(&sender.sign("POST", path, b"", Some(&caller), NOW));
        changed.insert(CALLER_HEADER, "token read-only".parse().unwrap());
        assert_eq!(
            receiver.verify_node(&changed, "POST", path, b"", NOW, is_node),
            Err(NodeRefusal::Peer(PeerRefusal::BadSignature))
        );
        assert_eq!(
            Caller {
                via: Some("n2".into()),
                ..caller
            }
            .audit(),
            "token admin from 127.0.0.1:5000 via n2"
        );
    }

    #[test]
    fn the_replay_set_forgets_what_left_the_window() {
        let f = fixture();
        let receiver = auth(&f.nodes[0]);
        let sender = auth(&f.nodes[1]);
        let window = REPLAY_WINDOW.as_millis() as i64;
        let first = headers(&sender.sign("POST", "/p", b"", None, NOW));
        receiver
            .verify_node(&first, "POST", "/p", b"", NOW, is_node)
            .unwrap();
        let later = headers(&sender.sign("POST", "/p", b"", None, NOW + window + 10));
        receiver
            .verify_node(&later, "POST", "/p", b"", NOW + window + 10, is_node)
            .unwrap();
        let seen = receiver.seen.lock().unwrap();
        assert_eq!(seen.by_signature.len(), 1);
        assert_eq!(seen.order.len(), 1);
    }
}
