//! `halcyon apply` (Serviceguard `cmapplyconf`, HACMP DARE): the running configuration, and a
//! new one staged against it.

use halcyon_config::Config;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// `GET /v1/config`: the configuration the cluster runs, and a reconfiguration in progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigResponse {
    pub schema_version: u32,
    /// 1 from the bootstrap, one more at each applied `config_change`.
    pub generation: u64,
    pub config: Config,
    /// The reconfiguration lock: a configuration staged by `apply` whose `config_change`
    /// has not ended.
    #[serde(default)]
    pub staged: Option<StagedConfig>,
    /// The files the running configuration was read from (empty for a cluster formed by
    /// a version that did not keep them, until its next `apply`).
    #[serde(default)]
    pub sources: Vec<ConfigFile>,
}

/// A configuration staged by `apply`, until its `config_change` event ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StagedConfig {
    pub generation: u64,
    /// Who applied it (the API's caller).
    pub by: String,
    #[schemars(with = "String")]
    pub since: Timestamp,
    /// The `config_change` event's sequence number.
    pub sequence: u64,
}

/// One file of a configuration directory, sent as text: the daemon loads and checks the
/// files exactly as `halcyon check` does before it stages anything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFile {
    /// The file's path relative to the configuration directory (`cluster.toml`,
    /// `packages/web.toml`).
    pub name: String,
    pub text: String,
}

/// `POST /v1/config/preview` and `POST /v1/config/apply`: a new configuration directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyRequest {
    pub files: Vec<ConfigFile>,
}

/// `POST /v1/config/preview`: what applying the files would do now, changing nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyPreview {
    pub schema_version: u32,
    /// The running generation, and the one the files would become.
    pub generation: u64,
    pub next_generation: u64,
    /// The packages that halt and run again with their new definition where they run.
    pub restart: Vec<String>,
    /// Whether the event rules (recovery programs) differ from the running ones.
    pub rules_changed: bool,
    /// The cluster settings the files change that `apply` changes live (`[limits]`,
    /// `[quorum]`'s auto-shrink settings), each with its running and new value.
    #[serde(default)]
    pub settings: Vec<SettingChange>,
    /// The `config_change` plan (as `emulate` prints it), empty when nothing changes.
    pub plan_text: String,
}

/// One cluster setting `apply` changes, as the configuration files write it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingChange {
    /// The table and key: `[limits] max_event_duration`.
    pub setting: String,
    /// The running value and the new one (`6m`, `5s`; `true`; `default (2)`).
    pub old: String,
    pub new: String,
    /// What the change does to a running cluster, when a person should know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}
