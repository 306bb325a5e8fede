//! Loading one node's credentials, checked (what the daemon calls at start).

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{KeyPair, PublicKeyData};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::files::{self, ReadError};
use crate::tokens::{Tokens, TokensError};
use crate::{CAS_MAX, CLUSTER_URI_PREFIX, HEARTBEAT_KEY_BYTES, HEARTBEAT_KEYS_MAX, Layout, unhex};

/// A node's credentials, every check of [`load`] passed.
#[derive(Clone)]
pub struct Credentials {
    /// The cluster id the CA and the node certificate carry: the daemon checks it against
    /// its configuration.
    pub cluster_id: u64,
    pub node: String,
    /// DER of the CA certificate that signed this node's certificate.
    pub ca_certificate_der: Vec<u8>,
    /// DER of every CA certificate in `ca.crt` (1, or 2 during a CA rollover): the trust
    /// anchors for peers, who are accepted when any of them signed their certificate. Holds
    /// `ca_certificate_der`.
    pub trusted_cas_der: Vec<Vec<u8>>,
    /// DER of this node's certificate.
    pub certificate_der: Vec<u8>,
    /// This node's private key, PKCS#8 DER.
    pub key_der: Vec<u8>,
    /// Heartbeat HMAC keys: the first signs, every one is accepted (1 or 2).
    pub heartbeat_keys: Vec<[u8; HEARTBEAT_KEY_BYTES]>,
    pub tokens: Tokens,
    /// When this node's certificate expires (seconds since the epoch).
    pub not_after_unix_seconds: i64,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("cluster_id", &self.cluster_id)
            .field("node", &self.node)
            .field("trusted_cas", &self.trusted_cas_der.len())
            .field("heartbeat_keys", &self.heartbeat_keys.len())
            .field("tokens", &self.tokens.tokens.len())
            .field("not_after_unix_seconds", &self.not_after_unix_seconds)
            .finish_non_exhaustive()
    }
}

/// Why credentials were not loaded: the file, and what is wrong with it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{}: {problem}", path.display())]
pub struct LoadError {
    pub path: PathBuf,
    pub problem: Problem,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Problem {
    #[error("does not exist")]
    Missing,
    #[error("cannot be read: {0}")]
    Unreadable(String),
    #[error(
        "is accessible by group or others (mode {mode:04o}); secret files must be owner-only (chmod 600)"
    )]
    Permissions { mode: u32 },
    #[error("is owned by uid {owner}, not by this process's user (uid {user})")]
    Owner { owner: u32, user: u32 },
    #[error("is too large ({size} bytes) for a credential file")]
    TooLarge { size: u64 },
    #[error("is not a PEM certificate: {0}")]
    NotCertificate(String),
    #[error("is not a CA certificate")]
    NotCa,
    #[error("holds {count} CA certificates; 1 (or 2 during a CA rollover) expected")]
    CaCount { count: usize },
    #[error("certificate {index}: {problem}")]
    InBundle { index: usize, problem: Box<Problem> },
    #[error("its CA certificates are for different clusters (ids {first} and {second})")]
    CasDisagree { first: u64, second: u64 },
    #[error("is not signed by a cluster CA in {}", ca.display())]
    NotSignedByCa { ca: PathBuf },
    #[error("is not valid before {not_before} (check the clock)")]
    NotYetValid { not_before: String },
    #[error("expired on {not_after}")]
    Expired { not_after: String },
    #[error("{0}")]
    ClusterId(String),
    #[error("is for cluster id {found}, the CA for cluster id {expected}")]
    WrongCluster { expected: u64, found: u64 },
    #[error("names node {found:?}, not \"{expected}\"")]
    WrongNode {
        expected: String,
        found: Vec<String>,
    },
    #[error("is not a private key: {0}")]
    NotPrivateKey(String),
    #[error("is not the key of {}", certificate.display())]
    KeyMismatch { certificate: PathBuf },
    #[error("line {line}: a heartbeat key is {HEARTBEAT_KEY_BYTES} bytes as 64 hex digits")]
    BadHeartbeatKey { line: usize },
    #[error("holds {count} heartbeat keys; 1 (or 2 during a key rollover) expected")]
    HeartbeatKeyCount { count: usize },
    #[error("{0}")]
    Tokens(TokensError),
    #[error("does not hold one API token ({}...)", crate::TOKEN_PREFIX)]
    NotToken,
}

/// Load node `node`'s credentials from `dir`, checked now (see [`load_at`]).
pub fn load(dir: &Path, node: &str) -> Result<Credentials, LoadError> {
    load_at(dir, node, SystemTime::now())
}

/// Load node `node`'s credentials from `dir` (the layout of [`crate::Layout`]): refuses key
/// files (node key, heartbeat key, tokens) that are not owner-only or not owned by this
/// process's user, a CA certificate that is not a CA, a node certificate not signed by the CA,
/// not naming `node`, for another cluster id than the CA's, or outside its validity period at
/// `now`, and a node key that does not match the certificate. `ca.key` is not read.
pub fn load_at(dir: &Path, node: &str, now: SystemTime) -> Result<Credentials, LoadError> {
    let layout = Layout::new(dir);
    let now_seconds = unix_seconds(now);

    let ca_path = layout.ca_certificate();
    let ca_pem = read(&ca_path, false)?;
    let trusted_cas_der = pem_certificates(&ca_pem).map_err(|p| at(&ca_path, p))?;
    let cluster_id = check_cas(&trusted_cas_der, Some(now_seconds)).map_err(|p| at(&ca_path, p))?;

    let certificate_path = layout.node_certificate(node);
    let certificate_pem = read(&certificate_path, false)?;
    let certificate_der =
        pem_certificate(&certificate_pem).map_err(|p| at(&certificate_path, p))?;
    let certificate = parse_certificate(&certificate_der).map_err(|p| at(&certificate_path, p))?;
    let Some(ca_certificate_der) = trusted_cas_der
        .iter()
        .find(|ca| signed_by(&certificate, ca))
        .cloned()
    else {
        return Err(at(
            &certificate_path,
            Problem::NotSignedByCa {
                ca: ca_path.clone(),
            },
        ));
    };
    check_validity(&certificate, now_seconds).map_err(|p| at(&certificate_path, p))?;
    let found = self::cluster_id(&certificate).map_err(|p| at(&certificate_path, p))?;
    if found != cluster_id {
        return Err(at(
            &certificate_path,
            Problem::WrongCluster {
                expected: cluster_id,
                found,
            },
        ));
    }
    let names = dns_names(&certificate);
    if !names.iter().any(|n| n == node) {
        return Err(at(
            &certificate_path,
            Problem::WrongNode {
                expected: node.to_owned(),
                found: names,
            },
        ));
    }

    let key_path = layout.node_key(node);
    let key_pem = read(&key_path, true)?;
    let key_text = std::str::from_utf8(&key_pem)
        .map_err(|_| at(&key_path, Problem::NotPrivateKey("not PEM text".into())))?;
    let key = KeyPair::from_pem(key_text)
        .map_err(|e| at(&key_path, Problem::NotPrivateKey(e.to_string())))?;
    if key.subject_public_key_info() != certificate.public_key().raw {
        return Err(at(
            &key_path,
            Problem::KeyMismatch {
                certificate: certificate_path.clone(),
            },
        ));
    }

    let heartbeat_path = layout.heartbeat_key();
    let heartbeat_keys =
        heartbeat_keys(&read(&heartbeat_path, true)?).map_err(|p| at(&heartbeat_path, p))?;

    let tokens_path = layout.tokens();
    let tokens_bytes = read(&tokens_path, true)?;
    let tokens = std::str::from_utf8(&tokens_bytes)
        .map_err(|_| TokensError::Syntax("not UTF-8".into()))
        .and_then(Tokens::parse)
        .map_err(|e| at(&tokens_path, Problem::Tokens(e)))?;

    let not_after_unix_seconds = certificate.validity().not_after.timestamp();
    Ok(Credentials {
        cluster_id,
        node: node.to_owned(),
        ca_certificate_der,
        trusted_cas_der,
        certificate_der: certificate_der.clone(),
        key_der: key.serialize_der(),
        heartbeat_keys,
        tokens,
        not_after_unix_seconds,
    })
}

/// The admin token in `dir/admin.token` (written by [`crate::init`]), for the CLI: `None`
/// when the file does not exist; an error naming the file when it cannot be read, is not
/// owner-only or not owned by this user, or does not hold one token.
pub fn read_admin_token(dir: &Path) -> Result<Option<String>, LoadError> {
    let path = Layout::new(dir).admin_token();
    let bytes = match read(&path, true) {
        Ok(bytes) => bytes,
        Err(LoadError {
            problem: Problem::Missing,
            ..
        }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let token = std::str::from_utf8(&bytes)
        .ok()
        .map(str::trim)
        .filter(|t| {
            t.starts_with(crate::TOKEN_PREFIX)
                && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .ok_or_else(|| at(&path, Problem::NotToken))?;
    Ok(Some(token.to_owned()))
}

/// The cluster id of the CA certificates in `pem` (1, or 2 during a CA rollover, of one
/// cluster), checked as [`load`] checks them but for their validity period (`halcyon init`'s
/// commands issue with the time they are given, which a test may set in the past).
pub(crate) fn ca_cluster_id(pem: &[u8]) -> Result<u64, String> {
    let cas = pem_certificates(pem).map_err(|p| p.to_string())?;
    check_cas(&cas, None).map_err(|p| p.to_string())
}

/// The cluster CA certificates at `path` (PEM, as `init` writes `ca.crt`: one, or two during
/// a rollover) as DER, for a client that checks the nodes' certificates with them (the CLI,
/// the test harnesses): an error naming the file when it is missing, cannot be read, holds
/// no certificate or more than [`CAS_MAX`], or one that is not a CA certificate.
pub fn read_ca_certificates(path: &Path) -> Result<Vec<Vec<u8>>, LoadError> {
    let pem = read(path, false)?;
    let cas = pem_certificates(&pem).map_err(|p| at(path, p))?;
    if cas.len() > CAS_MAX {
        return Err(at(path, Problem::CaCount { count: cas.len() }));
    }
    for der in &cas {
        if !parse_certificate(der).map_err(|p| at(path, p))?.is_ca() {
            return Err(at(path, Problem::NotCa));
        }
    }
    Ok(cas)
}

/// The pin of a certificate's public key: base64 of the SHA-256 of its SubjectPublicKeyInfo
/// (DER), as browsers take it (Chromium's `--ignore-certificate-errors-spki-list`, curl's
/// `--pinnedpubkey sha256//PIN`), so that one node certificate can be trusted without the CA.
pub fn public_key_pin(certificate_der: &[u8]) -> Result<String, Problem> {
    use sha2::Digest;
    let certificate = parse_certificate(certificate_der)?;
    let digest = sha2::Sha256::digest(certificate.public_key().raw);
    Ok(base64(&digest))
}

/// Standard base64 with padding (RFC 4648, section 4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The CA certificates (DER) in `pem`, in order.
pub(crate) fn ca_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    pem_certificates(pem).map_err(|p| p.to_string())
}

/// Whether `key` is the key of the certificate `der`.
pub(crate) fn key_matches(der: &[u8], key: &KeyPair) -> bool {
    parse_certificate(der)
        .is_ok_and(|certificate| key.subject_public_key_info() == certificate.public_key().raw)
}

/// Whether the CA certificate `ca_der` signed `certificate`.
pub(crate) fn signed_by(certificate: &X509Certificate<'_>, ca_der: &[u8]) -> bool {
    parse_certificate(ca_der).is_ok_and(|ca| {
        certificate.issuer() == ca.subject()
            && certificate.verify_signature(Some(ca.public_key())).is_ok()
    })
}

/// Checks CA certificates as [`load`] does: 1 or [`CAS_MAX`], each a CA with a valid
/// self-signature, within its validity at `now_seconds` (when given), naming one cluster,
/// the same for all; returns that cluster id.
fn check_cas(cas: &[Vec<u8>], now_seconds: Option<i64>) -> Result<u64, Problem> {
    if cas.is_empty() || cas.len() > CAS_MAX {
        return Err(Problem::CaCount { count: cas.len() });
    }
    let in_bundle = |index: usize, problem: Problem| {
        if cas.len() == 1 {
            problem
        } else {
            Problem::InBundle {
                index: index + 1,
                problem: Box::new(problem),
            }
        }
    };
    let mut ids = Vec::with_capacity(cas.len());
    for (index, der) in cas.iter().enumerate() {
        let ca = parse_certificate(der).map_err(|p| in_bundle(index, p))?;
        if !ca.is_ca() {
            return Err(in_bundle(index, Problem::NotCa));
        }
        if ca.verify_signature(None).is_err() {
            return Err(in_bundle(
                index,
                Problem::NotCertificate("its self-signature does not verify".into()),
            ));
        }
        if let Some(now_seconds) = now_seconds {
            check_validity(&ca, now_seconds).map_err(|p| in_bundle(index, p))?;
        }
        ids.push(cluster_id(&ca).map_err(|p| in_bundle(index, p))?);
    }
    match ids.as_slice() {
        [first, second] if first != second => Err(Problem::CasDisagree {
            first: *first,
            second: *second,
        }),
        _ => Ok(ids[0]),
    }
}

fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Parse the heartbeat key file: one key per line (64 hex digits), `#` comments, 1 or 2 keys.
pub fn heartbeat_keys(bytes: &[u8]) -> Result<Vec<[u8; HEARTBEAT_KEY_BYTES]>, Problem> {
    let text = std::str::from_utf8(bytes).map_err(|_| Problem::BadHeartbeatKey { line: 1 })?;
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key: [u8; HEARTBEAT_KEY_BYTES] = unhex(line)
            .and_then(|k| k.try_into().ok())
            .ok_or(Problem::BadHeartbeatKey { line: i + 1 })?;
        keys.push(key);
    }
    if keys.is_empty() || keys.len() > HEARTBEAT_KEYS_MAX {
        return Err(Problem::HeartbeatKeyCount { count: keys.len() });
    }
    Ok(keys)
}

fn at(path: &Path, problem: Problem) -> LoadError {
    LoadError {
        path: path.to_path_buf(),
        problem,
    }
}

fn read(path: &Path, secret: bool) -> Result<Vec<u8>, LoadError> {
    files::read_file(path, secret).map_err(|e| {
        let problem = match e {
            ReadError::Io(e) if e.kind() == io::ErrorKind::NotFound => Problem::Missing,
            ReadError::Io(e) => Problem::Unreadable(e.to_string()),
            ReadError::Permissions { mode } => Problem::Permissions { mode },
            ReadError::Owner { owner, user } => Problem::Owner { owner, user },
            ReadError::TooLarge { size } => Problem::TooLarge { size },
        };
        at(path, problem)
    })
}

/// The DER of the one certificate in PEM `bytes`.
fn pem_certificate(bytes: &[u8]) -> Result<Vec<u8>, Problem> {
    let mut certificates = pem_certificates(bytes)?;
    match certificates.len() {
        1 => Ok(certificates.remove(0)),
        count => Err(Problem::NotCertificate(format!(
            "it holds {count} certificates, one expected"
        ))),
    }
}

/// The DER of every certificate in PEM `bytes`, in order (at least one).
fn pem_certificates(bytes: &[u8]) -> Result<Vec<Vec<u8>>, Problem> {
    let mut certificates = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(bytes) {
        let pem = pem.map_err(|e| Problem::NotCertificate(e.to_string()))?;
        if pem.label != "CERTIFICATE" {
            return Err(Problem::NotCertificate(format!(
                "it holds a {:?}, not a CERTIFICATE",
                pem.label
            )));
        }
        certificates.push(pem.contents);
    }
    if certificates.is_empty() {
        return Err(Problem::NotCertificate("no PEM certificate in it".into()));
    }
    Ok(certificates)
}

pub(crate) fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, Problem> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], certificate)) => Ok(certificate),
        Ok(_) => Err(Problem::NotCertificate(
            "trailing bytes after the certificate".into(),
        )),
        Err(e) => Err(Problem::NotCertificate(e.to_string())),
    }
}

fn check_validity(certificate: &X509Certificate<'_>, now_seconds: i64) -> Result<(), Problem> {
    let validity = certificate.validity();
    if now_seconds < validity.not_before.timestamp() {
        return Err(Problem::NotYetValid {
            not_before: validity.not_before.to_string(),
        });
    }
    if now_seconds > validity.not_after.timestamp() {
        return Err(Problem::Expired {
            not_after: validity.not_after.to_string(),
        });
    }
    Ok(())
}

fn general_names<'a>(certificate: &'a X509Certificate<'_>) -> Vec<&'a GeneralName<'a>> {
    match certificate.subject_alternative_name() {
        Ok(Some(extension)) => extension.value.general_names.iter().collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn dns_names(certificate: &X509Certificate<'_>) -> Vec<String> {
    general_names(certificate)
        .into_iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(name) => Some((*name).to_owned()),
            _ => None,
        })
        .collect()
}

/// The one `halcyon://cluster/ID` URI the certificate carries.
pub(crate) fn cluster_id(certificate: &X509Certificate<'_>) -> Result<u64, Problem> {
    let ids: Vec<&str> = general_names(certificate)
        .into_iter()
        .filter_map(|n| match n {
            GeneralName::URI(uri) => uri.strip_prefix(CLUSTER_URI_PREFIX),
            _ => None,
        })
        .collect();
    match ids.as_slice() {
        [id] => id.parse().map_err(|_| {
            Problem::ClusterId(format!(
                "has a malformed cluster id \"{CLUSTER_URI_PREFIX}{id}\""
            ))
        }),
        [] => Err(Problem::ClusterId(format!(
            "names no cluster (no {CLUSTER_URI_PREFIX}ID subject alternative name): not made by halcyon init"
        ))),
        _ => Err(Problem::ClusterId("names more than one cluster".into())),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_is_rfc_4648s() {
        // RFC 4648, section 10.
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(input.as_bytes()), expected, "{input:?}");
        }
    }
}
