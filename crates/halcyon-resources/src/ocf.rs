//! OCF resource agents (SPEC 9.4): `/usr/lib/ocf/resource.d/PROVIDER/TYPE`, called with
//! `start`, `stop`, `monitor` and `meta-data`, parameters as `OCF_RESKEY_<name>`, and the
//! exit codes of the OCF standard as [`OcfStatus`].
//!
//! - `start` is followed by one `monitor`, which must say "running" (as Pacemaker does): an
//!   agent that exits 0 without starting anything is caught at once;
//! - `stop` of a resource that is not running ("not running", 7) is a success;
//! - `monitor` runs at the resource's `monitor_interval`, driven by the caller through
//!   [`Resource::monitor`]; "not running" while the resource should run is a failure;
//!   [`Resource::check`] does not run the agent (it must not block) and reports the last
//!   monitor's result;
//! - every action is bounded by the resource's `timeout`; on timeout the agent's process group
//!   is killed. A stop that times out is an error: the resource's state is unknown.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use halcyon_config::OcfResource;
use tokio::process::Command;

use crate::{
    BoxFuture, Health, OUTPUT_MAX, PackageEnv, Resource, ResourceError, StopMode, StopReport,
    run_captured,
};

/// Where the agents live (`OCF_ROOT`).
pub const OCF_ROOT: &str = "/usr/lib/ocf";
/// Longest time `meta-data` may take.
pub const META_DATA_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes of `meta-data` output read.
const META_DATA_MAX: u64 = 1 << 20;
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// An agent's exit code, as the OCF standard names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OcfStatus {
    /// 0
    Success,
    /// 1
    GenericError,
    /// 2
    InvalidArgument,
    /// 3
    Unimplemented,
    /// 4
    InsufficientPrivileges,
    /// 5
    NotInstalled,
    /// 6
    NotConfigured,
    /// 7
    NotRunning,
    /// 8: running as master (promoted)
    RunningMaster,
    /// 9: failed as master (promoted)
    FailedMaster,
    /// Anything else (or killed by a signal: `None`).
    Other(Option<i32>),
}

impl OcfStatus {
    pub fn from_code(code: Option<i32>) -> Self {
        match code {
            Some(0) => OcfStatus::Success,
            Some(1) => OcfStatus::GenericError,
            Some(2) => OcfStatus::InvalidArgument,
            Some(3) => OcfStatus::Unimplemented,
            Some(4) => OcfStatus::InsufficientPrivileges,
            Some(5) => OcfStatus::NotInstalled,
            Some(6) => OcfStatus::NotConfigured,
            Some(7) => OcfStatus::NotRunning,
            Some(8) => OcfStatus::RunningMaster,
            Some(9) => OcfStatus::FailedMaster,
            other => OcfStatus::Other(other),
        }
    }

    /// E.g. `7 (not running)`.
    pub fn describe(&self) -> String {
        let (code, name) = match self {
            OcfStatus::Success => (0, "success"),
            OcfStatus::GenericError => (1, "generic error"),
            OcfStatus::InvalidArgument => (2, "invalid argument"),
            OcfStatus::Unimplemented => (3, "unimplemented"),
            OcfStatus::InsufficientPrivileges => (4, "insufficient privileges"),
            OcfStatus::NotInstalled => (5, "not installed"),
            OcfStatus::NotConfigured => (6, "not configured"),
            OcfStatus::NotRunning => (7, "not running"),
            OcfStatus::RunningMaster => (8, "running (master)"),
            OcfStatus::FailedMaster => (9, "failed (master)"),
            OcfStatus::Other(Some(c)) => return format!("{c} (not an OCF exit code)"),
            OcfStatus::Other(None) => return "killed by a signal".to_owned(),
        };
        format!("{code} ({name})")
    }
}

/// What one action did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OcfOutcome {
    pub status: OcfStatus,
    /// The end of stdout and stderr together.
    pub output: String,
}

/// `provider:type` (or `ocf:provider:type`) split up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentName {
    pub provider: String,
    pub kind: String,
}

impl AgentName {
    pub fn parse(agent: &str) -> Result<Self, String> {
        let parts: Vec<&str> = agent.split(':').collect();
        let (provider, kind) = match parts.as_slice() {
            ["ocf", p, t] | [p, t] => (*p, *t),
            _ => {
                return Err(format!(
                    "agent \"{agent}\" is not PROVIDER:TYPE (e.g. heartbeat:Dummy)"
                ));
            }
        };
        let valid = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
        };
        if !valid(provider) || !valid(kind) {
            return Err(format!(
                "agent \"{agent}\": provider and type may only have letters, digits, '-', '_', '.', '+'"
            ));
        }
        Ok(AgentName {
            provider: provider.to_owned(),
            kind: kind.to_owned(),
        })
    }

    pub fn path(&self, root: &Path) -> PathBuf {
        root.join("resource.d")
            .join(&self.provider)
            .join(&self.kind)
    }
}

/// The instance name (`OCF_RESOURCE_INSTANCE`) of agent `agent` in package `package`:
/// `PACKAGE.TYPE`.
pub fn instance_name(package: &str, agent: &str) -> String {
    let kind = agent.rsplit(':').next().unwrap_or(agent);
    format!("{package}.{kind}")
}

/// An OCF resource agent instance on this node.
pub struct OcfAgent {
    config: OcfResource,
    name: AgentName,
    root: PathBuf,
    instance: String,
    started: bool,
    /// The last monitor's verdict, for [`Resource::check`].
    last_health: Option<Health>,
    /// The last monitor's exit code (`None`: none ran, or the agent could not be run).
    last_status: Option<OcfStatus>,
}

impl OcfAgent {
    pub fn new(config: OcfResource, instance: &str) -> Result<Self, ResourceError> {
        let name = AgentName::parse(&config.agent).map_err(|reason| ResourceError::Config {
            what: format!("ocf {}", config.agent),
            reason,
        })?;
        Ok(OcfAgent {
            config,
            name,
            root: PathBuf::from(OCF_ROOT),
            instance: instance.to_owned(),
            started: false,
            last_health: None,
            last_status: None,
        })
    }

    /// Uses agents under `root` instead of [`OCF_ROOT`].
    pub fn with_root(mut self, root: &Path) -> Self {
        self.root = root.to_owned();
        self
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The exit code of the last `monitor`: [`OcfStatus::NotRunning`] (the agent says the
    /// resource is cleanly stopped: its state is gone) and [`OcfStatus::GenericError`] (it
    /// runs but is broken) are both failures while the resource should run, and the caller
    /// may treat them differently (e.g. in the event log).
    pub fn last_status(&self) -> Option<OcfStatus> {
        self.last_status
    }

    fn what(&self) -> String {
        format!("ocf {} ({})", self.config.agent, self.instance)
    }

    fn command(&self, action: &str, env: &PackageEnv) -> Command {
        let mut c = Command::new(self.name.path(&self.root));
        c.arg(action)
            .env("OCF_ROOT", &self.root)
            .env("OCF_RESOURCE_INSTANCE", &self.instance)
            .env("OCF_RESOURCE_TYPE", &self.name.kind)
            .env("OCF_RESOURCE_PROVIDER", &self.name.provider)
            .env(
                "OCF_RESKEY_CRM_meta_timeout",
                self.config.timeout.as_millis().to_string(),
            )
            .envs(env.vars())
            .envs(
                self.config
                    .params
                    .iter()
                    .map(|(k, v)| (format!("OCF_RESKEY_{k}"), v)),
            )
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(false);
        c
    }

    /// Runs one action (`start`, `stop`, `monitor`...) within the resource's timeout.
    pub async fn run(&self, action: &str, env: &PackageEnv) -> Result<OcfOutcome, ResourceError> {
        let what = format!("{} {action}", self.what());
        let path = self.name.path(&self.root);
        if !path.is_file() {
            return Err(ResourceError::Refused {
                what,
                reason: format!(
                    "agent {} is not installed (no {})",
                    self.config.agent,
                    path.display()
                ),
            });
        }
        let shown = format!("{} {action}", path.display());
        let (status, output) = run_captured(
            &what,
            &shown,
            self.command(action, env),
            self.config.timeout,
        )
        .await?;
        Ok(OcfOutcome {
            status: OcfStatus::from_code(status.code()),
            output,
        })
    }

    fn failed(&self, action: &str, outcome: OcfOutcome) -> ResourceError {
        let path = self.name.path(&self.root);
        ResourceError::Failed {
            what: format!("{} {action}", self.what()),
            command: format!("{} {action}", path.display()),
            status: format!("OCF status {}", outcome.status.describe()),
            output: outcome.output,
        }
    }

    /// One monitor: the verdict as a [`Health`] (never an error; failures are described).
    async fn monitor_once(&mut self, env: &PackageEnv) -> Health {
        let outcome = self.run("monitor", env).await;
        self.last_status = outcome.as_ref().ok().map(|o| o.status);
        let health = match outcome {
            Ok(o) => match o.status {
                OcfStatus::Success | OcfStatus::RunningMaster => Health::Running,
                OcfStatus::NotRunning if !self.started => Health::Stopped,
                status => Health::Failed(format!(
                    "{} monitor: {}{}",
                    self.what(),
                    status.describe(),
                    crate::output_suffix(&o.output)
                )),
            },
            Err(e) => Health::Failed(e.to_string()),
        };
        self.last_health = Some(health.clone());
        health
    }
}

impl Resource for OcfAgent {
    fn describe(&self) -> String {
        self.what()
    }

    /// Starts the agent; when it was started before (a restart after a failed monitor), it is
    /// stopped first, as OCF recovery is (an agent may refuse to start over a failed instance).
    fn start<'a>(&'a mut self, env: &'a PackageEnv) -> BoxFuture<'a, Result<(), ResourceError>> {
        Box::pin(async move {
            if self.started {
                self.stop(env, StopMode::Graceful).await?;
            }
            let outcome = self.run("start", env).await?;
            if outcome.status != OcfStatus::Success {
                return Err(self.failed("start", outcome));
            }
            self.started = true;
            self.last_health = None;
            match self.monitor_once(env).await {
                Health::Running => Ok(()),
                other => {
                    let reason = match other {
                        Health::Failed(why) | Health::Exited(why) => why,
                        _ => "not running".to_owned(),
                    };
                    Err(ResourceError::Refused {
                        what: format!("{} start", self.what()),
                        reason: format!(
                            "start succeeded but the monitor after it failed: {reason}"
                        ),
                    })
                }
            }
        })
    }

    fn stop<'a>(
        &'a mut self,
        env: &'a PackageEnv,
        _mode: StopMode,
    ) -> BoxFuture<'a, Result<StopReport, ResourceError>> {
        Box::pin(async move {
            let outcome = self.run("stop", env).await?;
            match outcome.status {
                OcfStatus::Success | OcfStatus::NotRunning => {
                    self.started = false;
                    self.last_health = Some(Health::Stopped);
                    Ok(StopReport::default())
                }
                _ => Err(self.failed("stop", outcome)),
            }
        })
    }

    fn check(&mut self) -> Health {
        match (&self.last_health, self.started) {
            (Some(h), _) => h.clone(),
            (None, true) => Health::Running,
            (None, false) => Health::Stopped,
        }
    }

    fn exited(&mut self) -> BoxFuture<'_, String> {
        Box::pin(std::future::pending())
    }

    fn monitor<'a>(&'a mut self, env: &'a PackageEnv) -> BoxFuture<'a, Health> {
        Box::pin(self.monitor_once(env))
    }

    fn monitor_interval(&self) -> Option<Duration> {
        Some(self.config.monitor_interval)
    }
}

/// One parameter of an agent's meta-data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParameterMetadata {
    pub name: String,
    pub required: bool,
    pub unique: bool,
    pub content_type: Option<String>,
    pub default: Option<String>,
}

/// What `meta-data` says about an agent (the parameters; the rest is not used).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentMetadata {
    pub parameters: Vec<ParameterMetadata>,
}

/// One element of an XML document as [`read_xml`] hands it out.
pub(crate) enum XmlItem<'a> {
    /// `<name ...>` (`empty: false`) or `<name .../>` (`empty: true`), with its attributes
    /// (values unescaped and normalised), in document order.
    Open {
        name: &'a str,
        attributes: Vec<(String, String)>,
        empty: bool,
    },
    /// `</name>`.
    Close { name: &'a str },
}

impl XmlItem<'_> {
    /// The value of attribute `key` of an [`XmlItem::Open`].
    pub(crate) fn attribute(&self, key: &str) -> Option<&str> {
        match self {
            XmlItem::Open { attributes, .. } => attributes
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str()),
            XmlItem::Close { .. } => None,
        }
    }
}

/// Walks the elements of `xml` in order, handing each opening and closing tag to `visit`
/// (text, comments and declarations are skipped). The first error (bad XML, or one `visit`
/// returns) ends the walk.
pub(crate) fn read_xml(
    xml: &str,
    mut visit: impl FnMut(XmlItem<'_>) -> Result<(), String>,
) -> Result<(), String> {
    use quick_xml::events::{BytesStart, Event};

    fn open<'a>(e: &'a BytesStart<'_>, empty: bool) -> Result<XmlItem<'a>, String> {
        let name = e.name().into_inner();
        let mut attributes = Vec::new();
        for a in e.attributes() {
            let a = a.map_err(|e| e.to_string())?;
            let key = a.key.as_ref().to_owned();
            let value = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| e.to_string())?;
            attributes.push((key, value.into_owned()));
        }
        Ok(XmlItem::Open {
            name,
            attributes,
            empty,
        })
    }

    let mut reader = quick_xml::Reader::from_str(xml);
    // Bounded by the document's length: every event consumes input.
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::Start(ref e) => visit(open(e, false)?)?,
            Event::Empty(ref e) => visit(open(e, true)?)?,
            Event::End(ref e) => visit(XmlItem::Close {
                name: e.name().into_inner(),
            })?,
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}

/// Reads the `<parameter name=... required=... unique=...>` elements (and their `<content
/// type=... default=...>`) of an agent's meta-data XML.
pub fn parse_metadata(xml: &str) -> Result<AgentMetadata, String> {
    let truthy = |v: Option<&str>| matches!(v, Some("1" | "true" | "yes"));
    let mut metadata = AgentMetadata::default();
    let mut in_parameter = false;
    read_xml(xml, |item| {
        match item {
            XmlItem::Open {
                name: "parameter",
                empty,
                ..
            } => {
                let name = item
                    .attribute("name")
                    .ok_or_else(|| "a <parameter> without a name".to_owned())?;
                metadata.parameters.push(ParameterMetadata {
                    name: name.to_owned(),
                    required: truthy(item.attribute("required")),
                    unique: truthy(item.attribute("unique")),
                    content_type: None,
                    default: None,
                });
                // An empty `<parameter .../>` has no `<content>` inside.
                in_parameter = !empty;
            }
            XmlItem::Open {
                name: "content", ..
            } if in_parameter => {
                if let Some(p) = metadata.parameters.last_mut() {
                    p.content_type = item.attribute("type").map(str::to_owned);
                    p.default = item.attribute("default").map(str::to_owned);
                }
            }
            XmlItem::Close { name: "parameter" } => in_parameter = false,
            _ => {}
        }
        Ok(())
    })?;
    Ok(metadata)
}

/// Runs `agent meta-data` (synchronously, for `halcyon check`) and parses it.
pub fn meta_data(agent: &str, root: &Path) -> Result<AgentMetadata, String> {
    let name = AgentName::parse(agent)?;
    let path = name.path(root);
    if !path.is_file() {
        return Err(format!(
            "agent {agent} is not installed (no {})",
            path.display()
        ));
    }
    let mut command = std::process::Command::new(&path);
    command
        .arg("meta-data")
        .env("OCF_ROOT", root)
        .env("OCF_RESOURCE_TYPE", &name.kind)
        .env("OCF_RESOURCE_PROVIDER", &name.provider)
        .env("OCF_RESOURCE_INSTANCE", "meta-data")
        .stdin(Stdio::null());
    let shown = format!("{} meta-data", path.display());
    let text = run_metadata(&shown, command)?;
    parse_metadata(&text).map_err(|e| format!("{shown}: bad XML {e}"))
}

/// Runs an agent's meta-data command (prepared with its arguments, environment and stdin)
/// synchronously, in a process group of its own, within [`META_DATA_TIMEOUT`] (the group is
/// killed after it), and returns what it printed on stdout (at most [`META_DATA_MAX`] bytes;
/// stderr is dropped: agents print warnings there). A non-zero exit is an error. `shown`
/// names the command in errors.
pub(crate) fn run_metadata(
    shown: &str,
    mut command: std::process::Command,
) -> Result<String, String> {
    let mut output = tempfile::tempfile().map_err(|e| e.to_string())?;
    let stdout = output.try_clone().map_err(|e| e.to_string())?;
    let mut child = command
        .stdout(stdout)
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    let pgid = child.id() as i32;
    let deadline = std::time::Instant::now() + META_DATA_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(POLL_INTERVAL),
            Ok(None) => {
                crate::signal_group(pgid, libc::SIGKILL);
                let _ = child.wait();
                return Err(format!(
                    "{shown} timed out after {META_DATA_TIMEOUT:?}; its process group was killed"
                ));
            }
            Err(e) => return Err(format!("waiting for {shown}: {e}")),
        }
    };
    let mut bytes = Vec::new();
    output.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    output
        .take(META_DATA_MAX)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{shown}: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{shown}: output is not UTF-8"))?;
    if !status.success() {
        let mut start = text.len().saturating_sub(OUTPUT_MAX);
        // At most 3 steps: a UTF-8 character is at most 4 bytes.
        while !text.is_char_boundary(start) {
            start += 1;
        }
        let tail = &text[start..];
        return Err(format!(
            "{shown} exited with {status}{}",
            crate::output_suffix(tail)
        ));
    }
    Ok(text)
}

/// Checks a resource's parameters against its agent's meta-data: unknown parameters (with a
/// "did you mean") and missing required ones. One message per problem, in parameter order.
pub fn check_params(
    agent: &str,
    metadata: &AgentMetadata,
    params: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for name in params.keys() {
        if metadata.parameters.iter().any(|p| &p.name == name) {
            continue;
        }
        let suggestion = metadata
            .parameters
            .iter()
            .map(|p| (strsim::damerau_levenshtein(name, &p.name), &p.name))
            .filter(|(d, p)| *d <= 2.max(p.len() / 3))
            .min();
        let hint = match suggestion {
            Some((_, p)) => format!(" (did you mean \"{p}\"?)"),
            None => {
                let known: Vec<&str> = metadata
                    .parameters
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect();
                format!(" (its parameters: {})", known.join(", "))
            }
        };
        problems.push(format!("ocf {agent}: unknown parameter \"{name}\"{hint}"));
    }
    for p in metadata.parameters.iter().filter(|p| p.required) {
        if !params.contains_key(&p.name) {
            problems.push(format!(
                "ocf {agent}: missing required parameter \"{}\"",
                p.name
            ));
        }
    }
    problems
}

/// For `halcyon check`: runs the agent's `meta-data` (from [`OCF_ROOT`]) and checks
/// `params` against it. An agent that is not installed or gives no meta-data is one problem.
pub fn validate_params(agent: &str, params: &BTreeMap<String, String>) -> Vec<String> {
    match meta_data(agent, Path::new(OCF_ROOT)) {
        Ok(metadata) => check_params(agent, &metadata, params),
        Err(e) => vec![format!("ocf {agent}: {e}")],
    }
}
