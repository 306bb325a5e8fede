//! Replacing the cluster CA and the heartbeat key while the cluster runs: three steps, each
//! one command (`halcyon init rollover start|switch|finish`), each followed by copying the
//! files it names to every node and reloading every daemon (SIGHUP, `systemctl reload
//! halcyon`) before the next step.
//!
//! | step | `ca.crt` | `ca.key` | `heartbeat.key` | node certificates |
//! | --- | --- | --- | --- | --- |
//! | before | old | old | old | signed by old |
//! | `start` | old, new | new | old (signs), new | signed by old |
//! | `switch` | old, new | new | new (signs), old | signed by new |
//! | `finish` | new | new | new | signed by new |
//!
//! Invariant: after each step, a node that has reloaded it and a node still on the step
//! before accept each other's certificates and heartbeats. The step reached is kept in
//! [`ROLLOVER_FILE`] (gone when no rollover is under way), so a step run out of order is
//! refused and changes nothing.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rcgen::{DnType, KeyPair};

use crate::issue::{InitError, bad_ca, ca_params, read_ca_file, signing_ca, write, write_node};
use crate::load::{ca_certificates, heartbeat_keys, key_matches};
use crate::{
    CERTIFICATE_FILE_MODE, ClusterSpec, HEARTBEAT_KEY_BYTES, Layout, SECRET_FILE_MODE, hex,
};

/// The file (in the credentials directory) naming the rollover step reached.
pub const ROLLOVER_FILE: &str = "rollover";

/// A step of the rollover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// A new CA and heartbeat key, trusted beside the old ones.
    Start,
    /// Node certificates of the new CA; the new heartbeat key signs.
    Switch,
    /// The old CA and heartbeat key no longer trusted.
    Finish,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Start => "start",
            Step::Switch => "switch",
            Step::Finish => "finish",
        }
    }

    /// The step that must have been done before this one (`None`: no rollover under way).
    fn after(self) -> Option<Step> {
        match self {
            Step::Start => None,
            Step::Switch => Some(Step::Start),
            Step::Finish => Some(Step::Switch),
        }
    }
}

/// What a step wrote, and what goes to the nodes.
#[derive(Debug)]
pub struct Rolled {
    pub written: Vec<PathBuf>,
    /// The files (relative to the credentials directory) every node needs now: `NAME` in a
    /// path stands for each node.
    pub to_copy: Vec<&'static str>,
}

/// Runs rollover step `step` on the credentials in `dir` of `cluster`; refuses, writing
/// nothing, when the directory is not at the step before (or, for `start`, when a rollover is
/// under way), or when its CA does not agree with its key or the cluster.
pub fn rollover(
    dir: &Path,
    cluster: &ClusterSpec,
    step: Step,
    now: SystemTime,
) -> Result<Rolled, InitError> {
    let layout = Layout::new(dir);
    let reached = read_step(&layout)?;
    if reached != step.after() {
        return Err(InitError::RolloverOrder {
            step: step.as_str(),
            reached: reached.map(Step::as_str),
        });
    }
    let ca_path = layout.ca_certificate();
    let ca_key_path = layout.ca_key();
    let ca_pem = read_ca_file(&ca_path, false)?;
    let ca_key = KeyPair::from_pem(&read_ca_file(&ca_key_path, true)?)
        .map_err(|e| bad_ca(&ca_key_path, format!("not a private key: {e}")))?;
    let found =
        crate::load::ca_cluster_id(ca_pem.as_bytes()).map_err(|reason| bad_ca(&ca_path, reason))?;
    if found != cluster.id {
        return Err(InitError::WrongCluster {
            path: ca_path,
            expected: cluster.id,
            found,
        });
    }
    let cas = ca_certificates(ca_pem.as_bytes()).map_err(|reason| bad_ca(&ca_path, reason))?;
    let expected_cas = if step == Step::Start { 1 } else { 2 };
    if cas.len() != expected_cas {
        return Err(bad_ca(
            &ca_path,
            format!(
                "holds {} CA certificates; step {} expects {expected_cas}",
                cas.len(),
                step.as_str()
            ),
        ));
    }
    let Some(signing) = cas.iter().position(|der| key_matches(der, &ca_key)) else {
        return Err(bad_ca(
            &ca_key_path,
            "is not the key of a CA certificate in ca.crt".into(),
        ));
    };
    let heartbeat_path = layout.heartbeat_key();
    let heartbeat_text = read_ca_file(&heartbeat_path, true)?;
    let keys = heartbeat_keys(heartbeat_text.as_bytes())
        .map_err(|problem| bad_ca(&heartbeat_path, problem.to_string()))?;
    if keys.len() != expected_cas {
        return Err(bad_ca(
            &heartbeat_path,
            format!(
                "holds {} heartbeat keys; step {} expects {expected_cas}",
                keys.len(),
                step.as_str()
            ),
        ));
    }

    let mut written = Vec::new();
    let to_copy = match step {
        Step::Start => {
            let key = KeyPair::generate()?;
            let mut params = ca_params(cluster, now)?;
            // Another name than the old CA's: both are in ca.crt, and a reader of a
            // certificate can tell which one issued it.
            params.distinguished_name.push(
                DnType::CommonName,
                format!(
                    "halcyon cluster CA {} ({}) from {}",
                    cluster.name,
                    cluster.id,
                    unix_time(now)
                ),
            );
            let certificate = params.self_signed(&key)?;
            let mut bundle = ca_pem.trim_end().to_owned();
            bundle.push('\n');
            bundle.push_str(&certificate.pem());
            let new_key = crate::issue::random_bytes(HEARTBEAT_KEY_BYTES)?;
            // Everything is built before anything is written.
            write(
                &ca_path,
                bundle.as_bytes(),
                CERTIFICATE_FILE_MODE,
                &mut written,
            )?;
            write(
                &ca_key_path,
                key.serialize_pem().as_bytes(),
                SECRET_FILE_MODE,
                &mut written,
            )?;
            write_heartbeat_keys(
                &heartbeat_path,
                cluster,
                &[keys[0], to_key(&new_key)],
                &mut written,
            )?;
            vec!["ca.crt", "heartbeat.key"]
        }
        Step::Switch => {
            let issuer = signing_ca(&ca_pem, &ca_key)
                .expect("the signing CA was found above")
                .map_err(|e| bad_ca(&ca_path, format!("not a CA certificate: {e}")))?;
            for node in &cluster.nodes {
                write_node(&layout, cluster.id, node, &issuer, now, &mut written)?;
            }
            write_heartbeat_keys(&heartbeat_path, cluster, &[keys[1], keys[0]], &mut written)?;
            vec![
                "heartbeat.key",
                "nodes/NAME/node.crt",
                "nodes/NAME/node.key",
            ]
        }
        Step::Finish => {
            for node in &cluster.nodes {
                let path = layout.node_certificate(&node.name);
                let pem = read_ca_file(&path, false)?;
                let der =
                    ca_certificates(pem.as_bytes()).map_err(|reason| bad_ca(&path, reason))?;
                let signed = crate::load::parse_certificate(&der[0])
                    .is_ok_and(|c| crate::load::signed_by(&c, &cas[signing]));
                if !signed {
                    return Err(bad_ca(
                        &path,
                        format!(
                            "is not signed by the new CA: `halcyon init node {} --force`, copy it \
                             to the node and reload it before finishing",
                            node.name
                        ),
                    ));
                }
            }
            let blocks = pem_blocks(&ca_pem);
            assert_eq!(
                blocks.len(),
                cas.len(),
                "ca.crt's certificates were parsed from it"
            );
            let pem = format!("{}\n", blocks[signing]);
            write(
                &ca_path,
                pem.as_bytes(),
                CERTIFICATE_FILE_MODE,
                &mut written,
            )?;
            write_heartbeat_keys(&heartbeat_path, cluster, &[keys[0]], &mut written)?;
            vec!["ca.crt", "heartbeat.key"]
        }
    };
    let marker = layout.dir().join(ROLLOVER_FILE);
    if step == Step::Finish {
        std::fs::remove_file(&marker).map_err(|source| InitError::Write {
            path: marker.clone(),
            source,
        })?;
    } else {
        write(
            &marker,
            format!("{}\n", step.as_str()).as_bytes(),
            SECRET_FILE_MODE,
            &mut written,
        )?;
    }
    Ok(Rolled { written, to_copy })
}

/// The step a rollover in `layout` has reached (`None`: no rollover under way).
fn read_step(layout: &Layout) -> Result<Option<Step>, InitError> {
    let path = layout.dir().join(ROLLOVER_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad_ca(&path, format!("cannot be read: {e}"))),
    };
    match text.trim() {
        "start" => Ok(Some(Step::Start)),
        "switch" => Ok(Some(Step::Switch)),
        other => Err(bad_ca(
            &path,
            format!("names no rollover step ({other:?}; start or switch expected)"),
        )),
    }
}

fn to_key(bytes: &[u8]) -> [u8; HEARTBEAT_KEY_BYTES] {
    bytes
        .try_into()
        .expect("random_bytes gives the length asked")
}

fn write_heartbeat_keys(
    path: &Path,
    cluster: &ClusterSpec,
    keys: &[[u8; HEARTBEAT_KEY_BYTES]],
    written: &mut Vec<PathBuf>,
) -> Result<(), InitError> {
    let mut text = format!(
        "# The heartbeat HMAC keys of cluster \"{}\" (id {}). One key a line, hex; the first signs,\n\
         # a second one is also accepted during a key rollover (`halcyon init rollover`).\n",
        cluster.name, cluster.id
    );
    for key in keys {
        text.push_str(&hex(key));
        text.push('\n');
    }
    write(path, text.as_bytes(), SECRET_FILE_MODE, written)
}

/// The PEM blocks of certificates in `text` (checked by [`ca_certificates`] before), in
/// order.
fn pem_blocks(text: &str) -> Vec<&str> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(begin) = rest.find("-----BEGIN CERTIFICATE-----") {
        let Some(end) = rest[begin..].find(END) else {
            break;
        };
        let end = begin + end + END.len();
        blocks.push(&rest[begin..end]);
        rest = &rest[end..];
    }
    blocks
}

fn unix_time(now: SystemTime) -> String {
    let seconds = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_else(|_| seconds.to_string())
}
