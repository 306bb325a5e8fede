//! Reloading the node's credentials while it runs (SIGHUP, `systemctl reload halcyon`): the
//! steps of a CA and heartbeat key rollover (`halcyon init rollover`), a token added or
//! revoked in `tokens.toml`, a renewed node certificate.
//!
//! All or nothing: the files are loaded and checked as at start (`halcyon_pki::load`), every
//! new piece is built, and only then are they put in place together. A refused reload
//! (a file others may read, a certificate of another cluster or node, a CA bundle of two
//! clusters) is logged with its reason, shown by `halcyon status`, and changes nothing: the
//! node goes on with the credentials it has. Connections already made keep the certificates
//! they were made with; new ones use the reloaded.

use std::path::PathBuf;

use halcyon_api::{CredentialsState, RefusedReload};
use jiff::Timestamp;

use super::Node;
use crate::POISONED;

/// Where the node's credentials are and what `halcyon status` says of them.
#[derive(Debug)]
pub(crate) struct CredentialsSource {
    pub dir: PathBuf,
    pub state: std::sync::Mutex<CredentialsState>,
}

impl CredentialsSource {
    pub(crate) fn new(
        dir: PathBuf,
        credentials: &halcyon_pki::Credentials,
        now: Timestamp,
    ) -> Self {
        CredentialsSource {
            dir,
            state: std::sync::Mutex::new(described(credentials, now, 0)),
        }
    }
}

/// What status shows of `credentials`, loaded at `now`.
fn described(
    credentials: &halcyon_pki::Credentials,
    now: Timestamp,
    reloads: u64,
) -> CredentialsState {
    CredentialsState {
        loaded_at: now,
        reloads,
        trusted_cas: credentials.trusted_cas_der.len() as u32,
        heartbeat_keys: credentials.heartbeat_keys.len() as u32,
        tokens: credentials.tokens.tokens.len() as u32,
        certificate_expires: Timestamp::from_second(credentials.not_after_unix_seconds)
            .unwrap_or(Timestamp::MAX),
        refused_reload: None,
    }
}

impl Node {
    /// Loads the node's credentials again and puts them in use (see the module's notes).
    /// Returns what is in use after it, or why the reload was refused.
    pub fn reload_credentials(&self) -> Result<CredentialsState, String> {
        let Some(source) = &self.credentials_source else {
            return Err("this node runs --insecure: it has no credentials to reload".into());
        };
        let now = self.timestamp();
        match self.load_and_install(source) {
            Ok(credentials) => {
                let mut state = source.state.lock().expect(POISONED);
                *state = described(&credentials, now, state.reloads + 1);
                tracing::info!(
                    node = %self.name,
                    pki = %source.dir.display(),
                    trusted_cas = state.trusted_cas,
                    heartbeat_keys = state.heartbeat_keys,
                    tokens = state.tokens,
                    certificate_expires = %state.certificate_expires,
                    reloads = state.reloads,
                    "credentials reloaded"
                );
                Ok(state.clone())
            }
            Err(why) => {
                tracing::error!(
                    node = %self.name,
                    pki = %source.dir.display(),
                    "credentials reload refused, the previous credentials stay in use: {why}"
                );
                source.state.lock().expect(POISONED).refused_reload = Some(RefusedReload {
                    at: now,
                    why: why.clone(),
                });
                Err(why)
            }
        }
    }

    /// Loads and checks the credentials, builds every piece, then puts them in place.
    fn load_and_install(
        &self,
        source: &CredentialsSource,
    ) -> Result<halcyon_pki::Credentials, String> {
        let credentials =
            halcyon_pki::load(&source.dir, self.name.as_str()).map_err(|e| e.to_string())?;
        let cluster_id = self.boot_config.cluster.id;
        if credentials.cluster_id != cluster_id {
            return Err(format!(
                "the credentials in {} are for cluster id {}, this cluster is id {cluster_id}",
                source.dir.display(),
                credentials.cluster_id
            ));
        }
        let auth = self.auth.prepare(&credentials)?;
        let tls = match &self.raft_tls {
            Some(tls) => Some((tls, tls.prepare(&credentials)?)),
            None => None,
        };
        // Nothing below fails: everything was built and checked above.
        if let Some(sealer) = &self.heartbeat_sealer {
            sealer
                .set_keys(&credentials.heartbeat_keys)
                .expect("halcyon_pki::load checks the number of heartbeat keys");
        }
        self.auth.install(auth);
        if let Some((tls, configs)) = tls {
            tls.install(configs);
        }
        Ok(credentials)
    }

    /// What status shows of the credentials in use (none when insecure).
    pub(crate) fn credentials_state(&self) -> Option<CredentialsState> {
        self.credentials_source
            .as_ref()
            .map(|s| s.state.lock().expect(POISONED).clone())
    }
}
