//! Node identity on requests between nodes: a node signs with its own key
//! ([`NodeSigner`]) and sends its certificate; the receiver ([`PeerVerifier`]) accepts the
//! signature only when the certificate is signed by the cluster CA, carries the cluster id,
//! is within its validity period and names the node the request claims to come from.
//! ECDSA P-256 with SHA-256 (the keys `halcyon init` makes), through `ring`.
//!
//! Unlike an HMAC with the cluster key, a signature names its node: a stolen node key
//! lets the thief speak as that node only, and the heartbeat key alone does not let anyone
//! speak as a node.

use std::collections::BTreeMap;
use std::sync::Mutex;

use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, UnparsedPublicKey,
};
use sha2::{Digest, Sha256};

use crate::Credentials;
use crate::load::{cluster_id, dns_names, parse_certificate, signed_by};

/// Certificates already checked against the CA, remembered (by their SHA-256) so that each
/// request costs one signature check; at most this many (the cluster's nodes, a few times
/// over for renewed certificates).
const CHECKED_MAX: usize = 256;

/// The DNS names (node names) a certificate (DER) carries; empty when it does not parse.
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    parse_certificate(der)
        .map(|c| dns_names(&c))
        .unwrap_or_default()
}

/// Signs with this node's key.
pub struct NodeSigner {
    key: EcdsaKeyPair,
    certificate_der: Vec<u8>,
    random: SystemRandom,
}

impl std::fmt::Debug for NodeSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSigner").finish_non_exhaustive()
    }
}

impl NodeSigner {
    /// The signer of the node whose credentials these are.
    pub fn new(credentials: &Credentials) -> Result<NodeSigner, String> {
        let random = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            &credentials.key_der,
            &random,
        )
        .map_err(|e| format!("the node key is not an ECDSA P-256 key: {e}"))?;
        Ok(NodeSigner {
            key,
            certificate_der: credentials.certificate_der.clone(),
            random,
        })
    }

    /// The DER of this node's certificate (sent with every signature).
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    /// An ECDSA signature (ASN.1 DER) of `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key
            .sign(&self.random, message)
            .expect("ECDSA signing fails only without randomness")
            .as_ref()
            .to_vec()
    }
}

/// Why a peer's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerRefusal {
    #[error("its certificate is not a certificate: {0}")]
    NotCertificate(String),
    #[error("its certificate is not signed by this cluster's CA")]
    NotOurCa,
    #[error("its certificate {0}")]
    Validity(String),
    #[error("its certificate is for another cluster: {0}")]
    OtherCluster(String),
    #[error("its certificate names {names:?}, not \"{node}\"")]
    WrongNode { node: String, names: Vec<String> },
    #[error("the signature is not its certificate key's")]
    BadSignature,
}

/// A certificate checked against the CA: what it says.
#[derive(Clone)]
struct Checked {
    names: Vec<String>,
    not_before: i64,
    not_after: i64,
    public_key: Vec<u8>,
}

/// Checks peers' certificates and signatures against the cluster CA (any of the trusted
/// ones during a CA rollover).
pub struct PeerVerifier {
    cas_der: Vec<Vec<u8>>,
    cluster_id: u64,
    checked: Mutex<BTreeMap<[u8; 32], Checked>>,
}

impl std::fmt::Debug for PeerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerVerifier")
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

impl PeerVerifier {
    /// A verifier with the trusted CAs and cluster id of these credentials.
    pub fn new(credentials: &Credentials) -> PeerVerifier {
        PeerVerifier {
            cas_der: credentials.trusted_cas_der.clone(),
            cluster_id: credentials.cluster_id,
            checked: Mutex::default(),
        }
    }

    /// Accepts `signature` of `message` when `certificate_der` is a certificate of this
    /// cluster's CA, valid at `now_seconds`, naming `node` ([`PeerVerifier::vouch`]), and
    /// its key made the signature.
    pub fn verify(
        &self,
        certificate_der: &[u8],
        node: &str,
        message: &[u8],
        signature: &[u8],
        now_seconds: i64,
    ) -> Result<(), PeerRefusal> {
        let checked = self.vouched(certificate_der, node, now_seconds)?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &checked.public_key)
            .verify(message, signature)
            .map_err(|_| PeerRefusal::BadSignature)
    }

    /// Accepts `certificate_der` for `node` when it is a certificate of this cluster's CA
    /// (one of those trusted now), carries its id, is valid at `now_seconds` and names
    /// `node`. For a certificate whose key the peer has proved it holds otherwise (a mutual
    /// TLS handshake); no signature is checked.
    pub fn vouch(
        &self,
        certificate_der: &[u8],
        node: &str,
        now_seconds: i64,
    ) -> Result<(), PeerRefusal> {
        self.vouched(certificate_der, node, now_seconds).map(|_| ())
    }

    fn vouched(
        &self,
        certificate_der: &[u8],
        node: &str,
        now_seconds: i64,
    ) -> Result<Checked, PeerRefusal> {
        let checked = self.check_certificate(certificate_der)?;
        if now_seconds < checked.not_before {
            return Err(PeerRefusal::Validity("is not valid yet".into()));
        }
        if now_seconds > checked.not_after {
            return Err(PeerRefusal::Validity("has expired".into()));
        }
        if !checked.names.iter().any(|n| n == node) {
            return Err(PeerRefusal::WrongNode {
                node: node.to_owned(),
                names: checked.names,
            });
        }
        Ok(checked)
    }

    /// The certificate checked against the CA (once; remembered by its hash).
    fn check_certificate(&self, der: &[u8]) -> Result<Checked, PeerRefusal> {
        let hash: [u8; 32] = Sha256::digest(der).into();
        if let Some(checked) = self
            .checked
            .lock()
            .expect("the checked-certificate cache is never left half changed")
            .get(&hash)
        {
            return Ok(checked.clone());
        }
        let certificate =
            parse_certificate(der).map_err(|p| PeerRefusal::NotCertificate(p.to_string()))?;
        if !self.cas_der.iter().any(|ca| signed_by(&certificate, ca)) {
            return Err(PeerRefusal::NotOurCa);
        }
        let found =
            cluster_id(&certificate).map_err(|p| PeerRefusal::OtherCluster(p.to_string()))?;
        if found != self.cluster_id {
            return Err(PeerRefusal::OtherCluster(format!(
                "id {found}, this cluster is id {}",
                self.cluster_id
            )));
        }
        let checked = Checked {
            names: dns_names(&certificate),
            not_before: certificate.validity().not_before.timestamp(),
            not_after: certificate.validity().not_after.timestamp(),
            public_key: certificate.public_key().subject_public_key.data.to_vec(),
        };
        let mut cache = self
            .checked
            .lock()
            .expect("the checked-certificate cache is never left half changed");
        if cache.len() >= CHECKED_MAX {
            cache.clear();
        }
        cache.insert(hash, checked.clone());
        Ok(checked)
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::{ClusterSpec, NodeSpec, init, load};

    fn credentials(dir: &std::path::Path, id: u64) -> (Credentials, Credentials) {
        let spec = ClusterSpec {
            name: "t".into(),
            id,
            nodes: ["n1", "n2"]
                .iter()
                .map(|n| NodeSpec {
                    name: (*n).into(),
                    addresses: Vec::new(),
                })
                .collect(),
        };
        init(dir, &spec, false, SystemTime::now()).unwrap();
        (load(dir, "n1").unwrap(), load(dir, "n2").unwrap())
    }

    fn now() -> i64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[test]
    fn a_node_signature_is_accepted_for_its_own_name_only() {
        let temp = tempfile::tempdir().unwrap();
        let (n1, n2) = credentials(&temp.path().join("a"), 7);
        let signer = NodeSigner::new(&n2).unwrap();
        let verifier = PeerVerifier::new(&n1);
        let signature = signer.sign(b"hello");
        let cert = signer.certificate_der();
        assert_eq!(
            verifier.verify(cert, "n2", b"hello", &signature, now()),
            Ok(())
        );
        // Again, from the cache.
        assert_eq!(
            verifier.verify(cert, "n2", b"hello", &signature, now()),
            Ok(())
        );
        assert_eq!(
            verifier.verify(cert, "n2", b"hellO", &signature, now()),
            Err(PeerRefusal::BadSignature)
        );
        assert_eq!(
            verifier.verify(cert, "n1", b"hello", &signature, now()),
            Err(PeerRefusal::WrongNode {
                node: "n1".into(),
                names: vec!["n2".into()]
            })
        );
        assert_eq!(
            verifier.verify(cert, "n2", b"hello", &signature, now() + 10 * 365 * 86_400),
            Err(PeerRefusal::Validity("has expired".into()))
        );
        assert!(matches!(
            verifier.verify(b"junk", "n2", b"hello", &signature, now()),
            Err(PeerRefusal::NotCertificate(_))
        ));
    }

    #[test]
    fn a_node_of_another_ca_is_refused() {
        let temp = tempfile::tempdir().unwrap();
        let (ours, _) = credentials(&temp.path().join("a"), 7);
        // Same cluster id and node names, another CA (another `halcyon init`).
        let (_, theirs) = credentials(&temp.path().join("b"), 7);
        let signer = NodeSigner::new(&theirs).unwrap();
        let signature = signer.sign(b"x");
        assert_eq!(
            PeerVerifier::new(&ours).verify(
                signer.certificate_der(),
                "n2",
                b"x",
                &signature,
                now()
            ),
            Err(PeerRefusal::NotOurCa)
        );
    }

    #[test]
    fn a_vouched_certificate_is_checked_as_a_signed_one_is_without_a_signature() {
        let temp = tempfile::tempdir().unwrap();
        let (n1, n2) = credentials(&temp.path().join("a"), 7);
        let cert = NodeSigner::new(&n2).unwrap().certificate_der().to_vec();
        let verifier = PeerVerifier::new(&n1);
        assert_eq!(verifier.vouch(&cert, "n2", now()), Ok(()));
        assert_eq!(
            verifier.vouch(&cert, "n1", now()),
            Err(PeerRefusal::WrongNode {
                node: "n1".into(),
                names: vec!["n2".into()]
            })
        );
        assert_eq!(
            verifier.vouch(&cert, "n2", now() + 10 * 365 * 86_400),
            Err(PeerRefusal::Validity("has expired".into()))
        );
        assert_eq!(
            verifier.vouch(&cert, "n2", now() - 86_400),
            Err(PeerRefusal::Validity("is not valid yet".into()))
        );
        assert!(matches!(
            verifier.vouch(b"junk", "n2", now()),
            Err(PeerRefusal::NotCertificate(_))
        ));
        // Another CA (same cluster id and names).
        let (_, theirs) = credentials(&temp.path().join("b"), 7);
        let theirs = NodeSigner::new(&theirs).unwrap().certificate_der().to_vec();
        assert_eq!(
            verifier.vouch(&theirs, "n2", now()),
            Err(PeerRefusal::NotOurCa)
        );
    }
}
