//! Halcyon cluster credentials (SPEC 11): what `halcyon init` creates and what a node's
//! daemon loads at start.
//!
//! One directory (default [`DEFAULT_DIR`]) holds, for one cluster:
//!
//! | file | mode | what |
//! | --- | --- | --- |
//! | `ca.crt` | 0644 | the cluster CA certificate (self-signed, ECDSA P-256); during a rollover ([`rollover`]) two, both trusted |
//! | `ca.key` | 0600 | the CA's private key: needed only by `halcyon init node`; keep it off the nodes |
//! | `heartbeat.key` | 0600 | the cluster key for heartbeat HMACs: 1 or 2 hex lines, the first one signs |
//! | `tokens.toml` | 0600 | the API tokens' names, roles and SHA-256 hashes (never the tokens) |
//! | `admin.token` | 0600 | the `admin` token itself, for the CLI on the machine where `halcyon init` ran (and where an administrator copies it); the daemon never reads it |
//! | `nodes/NAME/node.crt` | 0644 | node NAME's certificate, signed by the CA |
//! | `nodes/NAME/node.key` | 0600 | node NAME's private key |
//!
//! Directories are 0700. A node's certificate names the node (subject common name and a DNS
//! subject alternative name), its configured addresses (IP SANs) and the cluster id (a URI SAN
//! `halcyon://cluster/ID`, also in the CA certificate), and is valid for both ends of a mutual
//! TLS connection (server and client authentication).
//!
//! Invariants:
//! - Nothing is overwritten without `force` ([`init`], [`issue_node`] check every file they
//!   would write before writing any); files are written to a temporary name with their final
//!   mode and renamed, so a file never exists with wider permissions than its final ones.
//! - [`load`] returns credentials only when every key file it reads is owned by this process's
//!   user and not readable by group or others, the node certificate is signed by the CA, names
//!   the node, carries the CA's cluster id, is within its validity period, and matches the node
//!   key; otherwise an error naming the file.
//! - Token secrets exist only in the value [`init`] returns (the CLI prints them once) and,
//!   for the `admin` token only, in the owner-only `admin.token` the CLI reads
//!   ([`read_admin_token`]); `tokens.toml`, the file the nodes need, holds their SHA-256.
//! - Every file read is bounded ([`FILE_SIZE_MAX_BYTES`]); no panics on file contents.

mod files;
mod issue;
mod load;
mod peer;
mod rollover;
mod tokens;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use issue::{InitError, Initialised, IssuedToken, init, issue_node};
pub use load::{
    Credentials, LoadError, Problem, heartbeat_keys, load, load_at, public_key_pin,
    read_admin_token, read_ca_certificates,
};
pub use peer::{NodeSigner, PeerRefusal, PeerVerifier, certificate_names};
pub use rollover::{ROLLOVER_FILE, Rolled, Step, rollover};
pub use tokens::{Role, TOKEN_PREFIX, Token, Tokens, TokensError, token_hash};

/// Where `halcyon init` writes and the daemon reads, unless told otherwise.
pub const DEFAULT_DIR: &str = "/etc/halcyon/pki";
/// Bytes of the heartbeat (HMAC) key.
pub const HEARTBEAT_KEY_BYTES: usize = 32;
/// Heartbeat keys accepted at once: the current one and, during a rollover, the previous one.
pub const HEARTBEAT_KEYS_MAX: usize = 2;
/// CA certificates trusted at once (`ca.crt`): the cluster CA and, during a rollover, the
/// next one.
pub const CAS_MAX: usize = 2;
/// Random bytes in an API token.
pub const TOKEN_SECRET_BYTES: usize = 32;
/// Most tokens a tokens file may hold.
pub const TOKENS_MAX: usize = 64;
/// How long the CA certificate is valid.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// How long a node certificate is valid.
pub const NODE_VALIDITY_DAYS: i64 = 1825;
/// Largest credential file read.
pub const FILE_SIZE_MAX_BYTES: u64 = 64 * 1024;
/// Mode of private keys, the heartbeat key and the tokens file.
pub const SECRET_FILE_MODE: u32 = 0o600;
/// Mode of certificates.
pub const CERTIFICATE_FILE_MODE: u32 = 0o644;
/// Mode of the credentials directory and its subdirectories.
pub const DIR_MODE: u32 = 0o700;
/// The URI subject alternative name carrying the cluster id: `halcyon://cluster/ID`.
pub const CLUSTER_URI_PREFIX: &str = "halcyon://cluster/";

/// The cluster whose credentials are made: from the cluster file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSpec {
    pub name: String,
    pub id: u64,
    pub nodes: Vec<NodeSpec>,
}

/// One node: its name and every stationary address it has (standby interfaces included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    pub name: String,
    pub addresses: Vec<IpAddr>,
}

/// The file names inside a credentials directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ca_certificate(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    pub fn heartbeat_key(&self) -> PathBuf {
        self.dir.join("heartbeat.key")
    }

    pub fn tokens(&self) -> PathBuf {
        self.dir.join("tokens.toml")
    }

    /// The `admin` token itself (for the CLI; see the table above).
    pub fn admin_token(&self) -> PathBuf {
        self.dir.join("admin.token")
    }

    pub fn nodes_dir(&self) -> PathBuf {
        self.dir.join("nodes")
    }

    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.nodes_dir().join(node)
    }

    pub fn node_certificate(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("node.crt")
    }

    pub fn node_key(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("node.key")
    }
}

/// The URI SAN naming cluster `id`.
pub fn cluster_uri(id: u64) -> String {
    format!("{CLUSTER_URI_PREFIX}{id}")
}

/// True when `name` can be a node's certificate name (a DNS name, so TLS can check it):
/// 1 to 63 characters per dot-separated label, letters, digits and `-`, no label starting
/// or ending with `-`, 253 characters at most.
pub fn is_certificate_name(name: &str) -> bool {
    const NAME_LENGTH_MAX: usize = 253;
    const LABEL_LENGTH_MAX: usize = 63;
    !name.is_empty()
        && name.len() <= NAME_LENGTH_MAX
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= LABEL_LENGTH_MAX
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Bytes of lower- or upper-case hex `text`, or `None`.
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_names() {
        for good in ["node1", "n-1", "a.b.c", "N1", &"a".repeat(63)] {
            assert!(is_certificate_name(good), "{good}");
        }
        for bad in [
            "",
            "node 1",
            "-n",
            "n-",
            "a..b",
            "nöde",
            "n_1",
            &"a".repeat(64),
        ] {
            assert!(!is_certificate_name(bad), "{bad}");
        }
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(unhex("00AB10"), Some(vec![0, 0xab, 0x10]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("é0"), None);
    }
}
