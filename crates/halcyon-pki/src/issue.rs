//! Creating credentials: the whole set for a cluster ([`init`]) and one node's for a node
//! added later ([`issue_node`]).

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;

use crate::files::{self, DirError, ReadError};
use crate::tokens::{Role, Token, Tokens, token_hash, token_text};
use crate::{
    CA_VALIDITY_DAYS, CERTIFICATE_FILE_MODE, ClusterSpec, HEARTBEAT_KEY_BYTES, Layout,
    NODE_VALIDITY_DAYS, NodeSpec, SECRET_FILE_MODE, TOKEN_SECRET_BYTES, cluster_uri, hex,
    is_certificate_name,
};

/// Random bytes in a certificate serial number.
const SERIAL_BYTES: usize = 16;
/// How far back a new certificate's validity starts (clocks of the nodes may differ a little).
const BACKDATE_SECONDS: i64 = 3600;
const SECONDS_PER_DAY: i64 = 86_400;

/// The tokens [`init`] creates.
const INITIAL_TOKENS: [(&str, Role); 2] = [("admin", Role::Admin), ("read-only", Role::ReadOnly)];

/// Why credentials were not created.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(
        "{}: already exists; credentials are not overwritten (--force replaces them)",
        path.display()
    )]
    Exists { path: PathBuf },
    #[error(
        "node \"{name}\" cannot be named in a certificate: a node name must be a DNS name \
         (letters, digits and '-', dot-separated labels of 1 to 63 characters)"
    )]
    BadNodeName { name: String },
    #[error("node \"{name}\" is not in the cluster configuration{hint}")]
    UnknownNode { name: String, hint: String },
    #[error("the cluster configuration has no nodes")]
    NoNodes,
    #[error(
        "{}: this CA is for cluster id {found}, the configuration is cluster id {expected}",
        path.display()
    )]
    WrongCluster {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("{}: {reason} (run `halcyon init` first)", path.display())]
    NoCa { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    BadCa { path: PathBuf, reason: String },
    #[error(
        "`halcyon init rollover {step}` is not the next step: {}",
        match reached {
            Some(reached) => format!(
                "this directory is at step {reached} (`halcyon init rollover {}` is next)",
                next_step(reached)
            ),
            None => "no rollover is under way here (`halcyon init rollover start` begins one)".to_owned(),
        }
    )]
    RolloverOrder {
        step: &'static str,
        reached: Option<&'static str>,
    },
    #[error("{}: cannot be written: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error(
        "{}: is accessible by group or others (mode {mode:04o}); credentials go only in an \
         owner-only directory (chmod 700 it, or choose another --dir)",
        path.display()
    )]
    OpenDirectory { path: PathBuf, mode: u32 },
    #[error("{}: exists and is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("cannot make a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("the system's random number generator failed: {0}")]
    Random(String),
}

impl InitError {
    /// True when the input (configuration, node name) was wrong, rather than the request
    /// refused or the system failing: the CLI exits 2 for these, 1 for the others.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            InitError::BadNodeName { .. }
                | InitError::UnknownNode { .. }
                | InitError::NoNodes
                | InitError::WrongCluster { .. }
        )
    }
}

/// A token made by [`init`]: its secret exists only here.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub name: String,
    pub role: Role,
    pub secret: String,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// What [`init`] made.
#[derive(Debug)]
pub struct Initialised {
    pub tokens: Vec<IssuedToken>,
    /// Every file written, in order.
    pub written: Vec<PathBuf>,
}

/// Create a cluster's credentials in `dir`: the CA, a certificate and key for every node of
/// `cluster`, the heartbeat key, the `admin` and `read-only` tokens (hashed) and the admin
/// token itself in `admin.token`, for the CLI on this machine. Refuses, writing
/// nothing, when any of these files exists, unless `force`.
pub fn init(
    dir: &Path,
    cluster: &ClusterSpec,
    force: bool,
    now: SystemTime,
) -> Result<Initialised, InitError> {
    if cluster.nodes.is_empty() {
        return Err(InitError::NoNodes);
    }
    for node in &cluster.nodes {
        check_node_name(&node.name)?;
    }
    let layout = Layout::new(dir);
    let mut targets = vec![
        layout.ca_certificate(),
        layout.ca_key(),
        layout.heartbeat_key(),
        layout.tokens(),
        layout.admin_token(),
    ];
    for node in &cluster.nodes {
        targets.push(layout.node_certificate(&node.name));
        targets.push(layout.node_key(&node.name));
    }
    refuse_existing(&targets, force)?;
    // Every directory is made (or found owner-only) before any file is written.
    ensure_dir(dir)?;
    ensure_dir(&layout.nodes_dir())?;
    for node in &cluster.nodes {
        ensure_dir(&layout.node_dir(&node.name))?;
    }

    let ca_key = KeyPair::generate()?;
    let ca_params = ca_params(cluster, now)?;
    let ca_certificate = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let mut written = Vec::new();
    write(
        &layout.ca_key(),
        ca_key.serialize_pem().as_bytes(),
        SECRET_FILE_MODE,
        &mut written,
    )?;
    write(
        &layout.ca_certificate(),
        ca_certificate.pem().as_bytes(),
        CERTIFICATE_FILE_MODE,
        &mut written,
    )?;
    for node in &cluster.nodes {
        write_node(&layout, cluster.id, node, &issuer, now, &mut written)?;
    }
    let heartbeat_key = random_bytes(HEARTBEAT_KEY_BYTES)?;
    let heartbeat_text = format!(
        "# The heartbeat HMAC key of cluster \"{}\" (id {}). One key a line, hex; the first signs,\n\
         # a second one (the previous key) is also accepted during a key rollover.\n{}\n",
        cluster.name,
        cluster.id,
        hex(&heartbeat_key)
    );
    write(
        &layout.heartbeat_key(),
        heartbeat_text.as_bytes(),
        SECRET_FILE_MODE,
        &mut written,
    )?;
    let mut issued = Vec::new();
    let mut tokens = Tokens::default();
    for (name, role) in INITIAL_TOKENS {
        let secret = token_text(&random_bytes(TOKEN_SECRET_BYTES)?);
        tokens.tokens.push(Token {
            name: name.to_owned(),
            role,
            sha256: token_hash(&secret),
        });
        issued.push(IssuedToken {
            name: name.to_owned(),
            role,
            secret,
        });
    }
    let header = format!(
        "API tokens of cluster \"{}\" (id {}): name, role and the SHA-256 of the token.\n\
         The tokens themselves were shown once, by `halcyon init`.",
        cluster.name, cluster.id
    );
    write(
        &layout.tokens(),
        tokens.render(&header).as_bytes(),
        SECRET_FILE_MODE,
        &mut written,
    )?;
    let admin = issued
        .iter()
        .find(|t| t.role == Role::Admin)
        .expect("INITIAL_TOKENS has an admin token");
    write(
        &layout.admin_token(),
        format!("{}\n", admin.secret).as_bytes(),
        SECRET_FILE_MODE,
        &mut written,
    )?;
    Ok(Initialised {
        tokens: issued,
        written,
    })
}

/// Issue a certificate and key for node `name` of `cluster` (a node added after `init`) with
/// the CA in `dir`. Refuses when the node's files exist, unless `force`. Returns the files
/// written.
pub fn issue_node(
    dir: &Path,
    cluster: &ClusterSpec,
    name: &str,
    force: bool,
    now: SystemTime,
) -> Result<Vec<PathBuf>, InitError> {
    let Some(node) = cluster.nodes.iter().find(|n| n.name == name) else {
        return Err(InitError::UnknownNode {
            name: name.to_owned(),
            hint: did_you_mean(name, cluster.nodes.iter().map(|n| n.name.as_str())),
        });
    };
    check_node_name(name)?;
    let layout = Layout::new(dir);
    let ca_key_path = layout.ca_key();
    let ca_certificate_path = layout.ca_certificate();
    let ca_key_pem = read_ca_file(&ca_key_path, true)?;
    let ca_certificate_pem = read_ca_file(&ca_certificate_path, false)?;
    let ca_key = KeyPair::from_pem(&ca_key_pem)
        .map_err(|e| bad_ca(&ca_key_path, format!("not a private key: {e}")))?;
    let found = crate::load::ca_cluster_id(ca_certificate_pem.as_bytes())
        .map_err(|reason| bad_ca(&ca_certificate_path, reason))?;
    if found != cluster.id {
        return Err(InitError::WrongCluster {
            path: ca_certificate_path,
            expected: cluster.id,
            found,
        });
    }
    let issuer = signing_ca(&ca_certificate_pem, &ca_key)
        .ok_or_else(|| {
            bad_ca(
                &ca_key_path,
                "is not the key of a CA certificate in ca.crt".into(),
            )
        })?
        .map_err(|e| bad_ca(&ca_certificate_path, format!("not a CA certificate: {e}")))?;
    refuse_existing(
        &[layout.node_certificate(name), layout.node_key(name)],
        force,
    )?;
    let mut written = Vec::new();
    write_node(&layout, cluster.id, node, &issuer, now, &mut written)?;
    Ok(written)
}

fn next_step(reached: &str) -> &'static str {
    match reached {
        "start" => "switch",
        _ => "finish",
    }
}

/// An [`InitError::BadCa`] naming `path`.
pub(crate) fn bad_ca(path: &Path, reason: String) -> InitError {
    InitError::BadCa {
        path: path.to_path_buf(),
        reason,
    }
}

/// The issuer made of the CA certificate in `ca_pem` (1 or 2) whose key `key` is: `None`
/// when `key` is none of theirs.
pub(crate) fn signing_ca<'k>(
    ca_pem: &str,
    key: &'k KeyPair,
) -> Option<Result<Issuer<'static, &'k KeyPair>, rcgen::Error>> {
    let cas = crate::load::ca_certificates(ca_pem.as_bytes()).ok()?;
    let der = cas
        .into_iter()
        .find(|der| crate::load::key_matches(der, key))?;
    Some(Issuer::from_ca_cert_der(
        &rustls_pki_types::CertificateDer::from(der),
        key,
    ))
}

pub(crate) fn read_ca_file(path: &Path, secret: bool) -> Result<String, InitError> {
    let bytes = files::read_file(path, secret).map_err(|e| match e {
        ReadError::Io(e) if e.kind() == io::ErrorKind::NotFound => InitError::NoCa {
            path: path.to_path_buf(),
            reason: "does not exist".into(),
        },
        e => InitError::BadCa {
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
    })?;
    String::from_utf8(bytes).map_err(|_| InitError::BadCa {
        path: path.to_path_buf(),
        reason: "not PEM text".into(),
    })
}

fn check_node_name(name: &str) -> Result<(), InitError> {
    if is_certificate_name(name) {
        Ok(())
    } else {
        Err(InitError::BadNodeName {
            name: name.to_owned(),
        })
    }
}

fn refuse_existing(paths: &[PathBuf], force: bool) -> Result<(), InitError> {
    if force {
        return Ok(());
    }
    match paths.iter().find(|p| p.symlink_metadata().is_ok()) {
        Some(path) => Err(InitError::Exists { path: path.clone() }),
        None => Ok(()),
    }
}

pub(crate) fn ensure_dir(dir: &Path) -> Result<(), InitError> {
    let path = dir.to_path_buf();
    files::ensure_dir(dir).map_err(|e| match e {
        DirError::Io(source) => InitError::Write { path, source },
        DirError::Open { mode } => InitError::OpenDirectory { path, mode },
        DirError::NotADirectory => InitError::NotADirectory { path },
    })
}

pub(crate) fn write(
    path: &Path,
    contents: &[u8],
    mode: u32,
    written: &mut Vec<PathBuf>,
) -> Result<(), InitError> {
    files::write_file(path, contents, mode).map_err(|source| InitError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    written.push(path.to_path_buf());
    Ok(())
}

pub(crate) fn write_node(
    layout: &Layout,
    cluster_id: u64,
    node: &NodeSpec,
    issuer: &Issuer<'_, &KeyPair>,
    now: SystemTime,
    written: &mut Vec<PathBuf>,
) -> Result<(), InitError> {
    let key = KeyPair::generate()?;
    let certificate = node_params(cluster_id, node, now)?.signed_by(&key, issuer)?;
    ensure_dir(&layout.nodes_dir())?;
    ensure_dir(&layout.node_dir(&node.name))?;
    write(
        &layout.node_key(&node.name),
        key.serialize_pem().as_bytes(),
        SECRET_FILE_MODE,
        written,
    )?;
    write(
        &layout.node_certificate(&node.name),
        certificate.pem().as_bytes(),
        CERTIFICATE_FILE_MODE,
        written,
    )
}

pub(crate) fn ca_params(
    cluster: &ClusterSpec,
    now: SystemTime,
) -> Result<CertificateParams, InitError> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(
        DnType::CommonName,
        format!("halcyon cluster CA {} ({})", cluster.name, cluster.id),
    );
    name.push(DnType::OrganizationName, "halcyon");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.subject_alt_names = vec![SanType::URI(cluster_uri(cluster.id).try_into()?)];
    set_validity(&mut params, now, CA_VALIDITY_DAYS)?;
    Ok(params)
}

fn node_params(
    cluster_id: u64,
    node: &NodeSpec,
    now: SystemTime,
) -> Result<CertificateParams, InitError> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, node.name.as_str());
    name.push(DnType::OrganizationName, "halcyon");
    params.distinguished_name = name;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let mut names = vec![
        SanType::DnsName(node.name.as_str().try_into()?),
        SanType::URI(cluster_uri(cluster_id).try_into()?),
    ];
    names.extend(node.addresses.iter().copied().map(SanType::IpAddress));
    params.subject_alt_names = names;
    set_validity(&mut params, now, NODE_VALIDITY_DAYS)?;
    Ok(params)
}

fn set_validity(
    params: &mut CertificateParams,
    now: SystemTime,
    days: i64,
) -> Result<(), InitError> {
    let seconds = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| InitError::Random("the system clock is before 1970".into()))?
        .as_secs() as i64;
    let at = |s: i64| {
        OffsetDateTime::from_unix_timestamp(s)
            .map_err(|e| InitError::Random(format!("the system clock is out of range: {e}")))
    };
    params.not_before = at(seconds - BACKDATE_SECONDS)?;
    params.not_after = at(seconds + days * SECONDS_PER_DAY)?;
    let mut serial = random_bytes(SERIAL_BYTES)?;
    serial[0] &= 0x7f; // A positive INTEGER.
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    Ok(())
}

pub(crate) fn random_bytes(count: usize) -> Result<Vec<u8>, InitError> {
    let mut bytes = vec![0u8; count];
    getrandom::fill(&mut bytes).map_err(|e| InitError::Random(e.to_string()))?;
    Ok(bytes)
}

/// ` (did you mean "x"?)` when one of `names` is close to `name`, else empty.
fn did_you_mean<'a>(name: &str, names: impl Iterator<Item = &'a str>) -> String {
    const SIMILARITY_MIN: f64 = 0.7;
    let mut best: Option<(f64, &str)> = None;
    for candidate in names {
        let score = strsim::jaro_winkler(name, candidate);
        // The first of equally close names, in configured order.
        if score >= SIMILARITY_MIN && best.is_none_or(|(b, _)| score > b) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, n)| format!(" (did you mean \"{n}\"?)"))
        .unwrap_or_default()
}
