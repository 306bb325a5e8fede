//! Fence agents (issue 18): power a failed node off (or reboot it, or power it on) through
//! the agents of the fence-agents project (`fence_ipmilan`, `fence_apc`...), following their
//! convention exactly:
//!
//! - the agent runs with no arguments, in a process group of its own; its stdin is a series of
//!   `key=value` lines: `action=...`, `nodename=TARGET`, then every configured option in the
//!   order of the map, then `plug=TARGET` (or `port=`, for agents that only know that name)
//!   when the options name neither `plug` nor `port` and the agent's metadata declares it;
//! - exit 0 is success; for `status`, 0 means on, 2 off, anything else an error;
//! - `action=metadata` prints the agent's parameters and actions as XML ([`agent_metadata`],
//!   cached for the life of the process, per resolved path).
//!
//! [`fence`] tries the configured levels in order; a level succeeds when each of its devices
//! does, in order; the first level that succeeds ends it. A device's call is tried at most
//! [`DEVICE_ATTEMPTS`] times. An `off` that exits 0 is confirmed by a `status` call when the
//! agent has the `status` action (exit 2: confirmed off).
//!
//! Invariants:
//! - every call is bounded by the device's `timeout`; on timeout the agent's whole process
//!   group is killed (by [`crate::run_captured`]); reading metadata is bounded by
//!   [`crate::ocf::META_DATA_TIMEOUT`];
//! - nothing here panics on a bad agent (missing, not executable, garbage or huge output,
//!   hanging, killed by a signal): each is an attempt with `ok = false` and a detail saying so;
//! - the values of secret options (a name containing `passw` or `secret`, or ending in
//!   `_script`) never appear in an attempt's detail, nor in logs: they are masked in the
//!   agent's output, and the stdin text is never shown;
//! - an attempt's detail is at most [`DETAIL_MAX`] characters.
//!
//! The metadata is read synchronously (it is for `halcyon check` too): the first [`fence`] of
//! an agent whose metadata is not cached yet blocks its thread for as long as the agent takes
//! to print it (at most [`crate::ocf::META_DATA_TIMEOUT`]). Calling [`check_device`] for every
//! device when the configuration is loaded fills the cache beforehand.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use halcyon_config::{FenceDevice, Fencing, ValueError};
use serde::{Deserialize, Serialize};
use tokio::process::Command;
use tokio::time::Instant;

use crate::ocf::{XmlItem, read_xml, run_metadata};
use crate::{ResourceError, run_captured};

/// How many times one device's call (for `off`: the `off` and the `status` confirming it) is
/// tried before the device counts as failed: a power switch or BMC that drops one request
/// under load answers the next, and a second level (often a different path to the same
/// power) is slower to reach than a retry.
pub const DEVICE_ATTEMPTS: usize = 2;
/// Most characters of an attempt's `detail`.
pub const DETAIL_MAX: usize = 512;
/// Where a bare agent name is looked for after the directories of `$PATH`.
pub const AGENT_DIRECTORIES: [&str; 2] = ["/usr/sbin", "/sbin"];
/// Most agents whose metadata is kept (one per agent program in the configuration).
const METADATA_CACHE_MAX: usize = 256;
/// Options Halcyon sends itself on every call; a configured option of the same name would
/// override them (agents keep the last value).
const SENT_BY_HALCYON: [&str; 2] = ["action", "nodename"];
/// The parameters that name the target; Halcyon fills them in.
const TARGET_PARAMETERS: [&str; 2] = ["plug", "port"];
/// Most parameter names listed in a check's `expected`.
const EXPECTED_NAMES_MAX: usize = 8;
/// What a secret's value is replaced by in an agent's output.
const MASK: &str = "****";
/// `status` exit codes of the convention.
const STATUS_ON: i32 = 0;
const STATUS_OFF: i32 = 2;

/// What fencing does to the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FenceAction {
    Off,
    Reboot,
    On,
}

impl FenceAction {
    /// The agent's name for it (`action=...`).
    pub fn as_str(self) -> &'static str {
        match self {
            FenceAction::Off => "off",
            FenceAction::Reboot => "reboot",
            FenceAction::On => "on",
        }
    }
}

impl fmt::Display for FenceAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FenceAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(FenceAction::Off),
            "reboot" => Ok(FenceAction::Reboot),
            "on" => Ok(FenceAction::On),
            _ => Err(format!(
                "unknown fence action \"{s}\": expected off, reboot or on"
            )),
        }
    }
}

/// One call of a fence agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceAttempt {
    /// The level and the device within it, both 1-based.
    pub level: usize,
    pub device: usize,
    /// The agent as configured.
    pub agent: String,
    /// `off`, `reboot`, `on` or `status`.
    pub action: String,
    /// `None`: killed after its timeout, could not start, or ended by a signal.
    pub exit: Option<i32>,
    /// This call did what was needed (for `status`: 2, off, after an `off`).
    pub ok: bool,
    /// What happened, in words, then the end of the agent's output (secrets masked); at most
    /// [`DETAIL_MAX`] characters.
    pub detail: String,
    pub took_ms: u64,
}

/// What [`fence`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceOutcome {
    pub target: String,
    pub action: FenceAction,
    /// A level succeeded (for `off`: confirmed off by `status` where the agent has it).
    pub confirmed: bool,
    /// The level that succeeded (1-based).
    pub level: Option<usize>,
    /// Every call, in order.
    pub attempts: Vec<FenceAttempt>,
}

impl FenceOutcome {
    /// One line for an administrator, e.g. `n2 fenced (off) by level 1: fence_ipmilan off
    /// exit 0, status exit 2 (off), 1.2 s` or `n2 NOT fenced (off): every level failed: level
    /// 1 fence_ipmilan off: exit 1; output: ...; level 2 ...`.
    pub fn summary(&self) -> String {
        let took: u64 = self.attempts.iter().map(|a| a.took_ms).sum();
        let took = seconds(Duration::from_millis(took));
        if let (true, Some(level)) = (self.confirmed, self.level) {
            let mut calls = Vec::new();
            let mut previous = None;
            for a in self.attempts.iter().filter(|a| a.level == level) {
                let short = short_result(a);
                calls.push(if previous == Some(a.device) {
                    format!("{} {short}", a.action)
                } else {
                    format!("{} {} {short}", a.agent, a.action)
                });
                previous = Some(a.device);
            }
            return format!(
                "{} fenced ({}) by level {level}: {}, {took}",
                self.target,
                self.action,
                calls.join(", ")
            );
        }
        // The last failure of each level (attempts come level by level): what ended it.
        let mut failures: Vec<&FenceAttempt> = Vec::new();
        for a in self.attempts.iter().filter(|a| !a.ok) {
            match failures.last_mut() {
                Some(last) if last.level == a.level => *last = a,
                _ => failures.push(a),
            }
        }
        let levels: Vec<String> = failures
            .iter()
            .map(|a| format!("level {} {} {}: {}", a.level, a.agent, a.action, a.detail))
            .collect();
        if levels.is_empty() {
            return format!(
                "{} NOT fenced ({}): no fence level was tried",
                self.target, self.action
            );
        }
        format!(
            "{} NOT fenced ({}): every level failed: {}",
            self.target,
            self.action,
            levels.join("; ")
        )
    }
}

/// `exit 0`, `exit 2 (off)`, or the first words of the detail (`timed out after 5 s`).
fn short_result(attempt: &FenceAttempt) -> String {
    match attempt.exit {
        Some(code) if attempt.action == "status" => format!("exit {code} ({})", status_word(code)),
        Some(code) => format!("exit {code}"),
        None => attempt
            .detail
            .split(';')
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

fn status_word(code: i32) -> &'static str {
    match code {
        STATUS_ON => "on",
        STATUS_OFF => "off",
        _ => "error",
    }
}

/// `5 s`, `1.2 s`, `45 ms`.
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else if d >= Duration::from_millis(100) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Fences `target` with the configured levels (see the module documentation). Never fails:
/// every problem is an attempt of the outcome.
pub async fn fence(target: &str, fencing: &Fencing, action: FenceAction) -> FenceOutcome {
    let mut attempts = Vec::new();
    let mut succeeded = None;
    for (level_index, level) in fencing.levels.iter().enumerate() {
        let level_number = level_index + 1;
        let mut all_ok = true;
        for (device_index, device) in level.devices.iter().enumerate() {
            let call = DeviceCall {
                target,
                level: level_number,
                device: device_index + 1,
                config: device,
            };
            if !call.run(action, &mut attempts).await {
                all_ok = false;
                break;
            }
        }
        if all_ok {
            succeeded = Some(level_number);
            break;
        }
    }
    let outcome = FenceOutcome {
        target: target.to_owned(),
        action,
        confirmed: succeeded.is_some(),
        level: succeeded,
        attempts,
    };
    if outcome.confirmed {
        tracing::info!(summary = %outcome.summary(), "fencing done");
    } else {
        tracing::warn!(summary = %outcome.summary(), "fencing failed");
    }
    outcome
}

/// One device of one level, called for one target.
struct DeviceCall<'a> {
    target: &'a str,
    level: usize,
    device: usize,
    config: &'a FenceDevice,
}

/// How an agent call ended, before it is judged.
enum Ended {
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
    TimedOut,
    NotStarted(String),
}

impl DeviceCall<'_> {
    /// Runs the device's part of `action`, tried up to [`DEVICE_ATTEMPTS`] times; records
    /// every call in `attempts`. True when the device did it.
    async fn run(&self, action: FenceAction, attempts: &mut Vec<FenceAttempt>) -> bool {
        let path = match resolve_agent(&self.config.agent) {
            Ok(path) => path,
            Err(e) => {
                // Nothing to retry: the program is not there.
                attempts.push(self.attempt(
                    action.as_str(),
                    None,
                    false,
                    format!("cannot start: {e}"),
                    0,
                ));
                return false;
            }
        };
        let metadata = agent_metadata(&self.config.agent);
        let stdin = match self.stdin_lines(metadata.as_deref().ok()) {
            Ok(lines) => lines,
            Err(e) => {
                attempts.push(self.attempt(
                    action.as_str(),
                    None,
                    false,
                    format!("not started: {e}"),
                    0,
                ));
                return false;
            }
        };
        // For `off`: None when a `status` call confirms it, else why exit 0 has to do.
        let unconfirmed_note = match &metadata {
            Ok(m) if m.actions.contains("status") => None,
            Ok(_) => Some("not confirmed by status: the agent has no status action".to_owned()),
            Err(e) => Some(format!(
                "not confirmed by status: the agent's metadata cannot be read ({e})"
            )),
        };
        for _ in 0..DEVICE_ATTEMPTS {
            let mut attempt = self.call(&path, action.as_str(), &stdin).await;
            let ok = attempt.ok;
            if ok && action == FenceAction::Off {
                if let Some(note) = &unconfirmed_note {
                    attempt.detail = with_note(&attempt.detail, note);
                    attempts.push(attempt);
                    return true;
                }
                attempts.push(attempt);
                let status = self.call(&path, "status", &stdin).await;
                let confirmed = status.ok;
                attempts.push(status);
                if confirmed {
                    return true;
                }
            } else {
                attempts.push(attempt);
                if ok {
                    return true;
                }
            }
        }
        false
    }

    /// The stdin of a call without its `action=` line: `nodename=`, the options, and the
    /// target parameter when the agent declares one and the options do not set it.
    fn stdin_lines(&self, metadata: Option<&FenceMetadata>) -> Result<String, String> {
        let options = &self.config.options;
        if let Some(name) = SENT_BY_HALCYON.iter().find(|n| options.contains_key(**n)) {
            return Err(format!(
                "option \"{name}\" is set by Halcyon itself and may not be configured"
            ));
        }
        let mut text = format!("nodename={}\n", self.target);
        for (key, value) in options {
            if key.contains(['\n', '=']) || value.contains('\n') {
                return Err(format!(
                    "option \"{}\" has a line break or '=' in its name or a line break in its value",
                    key.escape_debug()
                ));
            }
            text.push_str(&format!("{key}={value}\n"));
        }
        let named = TARGET_PARAMETERS.iter().any(|p| options.contains_key(*p));
        if let (false, Some(m)) = (named, metadata)
            && let Some(parameter) = TARGET_PARAMETERS
                .iter()
                .find(|p| m.parameters.contains(**p))
        {
            text.push_str(&format!("{parameter}={}\n", self.target));
        }
        Ok(text)
    }

    /// One call of the agent, judged: exit 0 is success, and for `status` exit 2 (off).
    async fn call(&self, path: &Path, action: &str, stdin_lines: &str) -> FenceAttempt {
        let started = Instant::now();
        let (ended, output) = run_agent(
            path,
            &format!("action={action}\n{stdin_lines}"),
            self.config.timeout,
        )
        .await;
        let took_ms = started.elapsed().as_millis() as u64;
        let (exit, ok, words) = match ended {
            Ended::Exited {
                code: Some(code), ..
            } if action == "status" => {
                let word = status_word(code);
                let words = match code {
                    STATUS_ON => format!("exit {code} ({word}): still on after off"),
                    _ => format!("exit {code} ({word})"),
                };
                (Some(code), code == STATUS_OFF, words)
            }
            Ended::Exited {
                code: Some(code), ..
            } => (Some(code), code == 0, format!("exit {code}")),
            Ended::Exited { signal, .. } => (
                None,
                false,
                match signal {
                    Some(s) => format!("killed by signal {s}"),
                    None => "ended without an exit status".to_owned(),
                },
            ),
            Ended::TimedOut => (
                None,
                false,
                format!(
                    "timed out after {}; its process group was killed",
                    seconds(self.config.timeout)
                ),
            ),
            Ended::NotStarted(e) => (None, false, format!("cannot start: {e}")),
        };
        let detail = detail(&words, &mask(&output, &self.config.options));
        self.attempt(action, exit, ok, detail, took_ms)
    }

    /// The record of one call (or of one that could not start), logged. The detail holds
    /// no secret (see [`mask`]), so the log does not either.
    fn attempt(
        &self,
        action: &str,
        exit: Option<i32>,
        ok: bool,
        detail: String,
        took_ms: u64,
    ) -> FenceAttempt {
        tracing::info!(
            target_node = %self.target,
            agent = %self.config.agent,
            level = self.level,
            device = self.device,
            action,
            exit,
            ok,
            took_ms,
            "fence agent call"
        );
        FenceAttempt {
            level: self.level,
            device: self.device,
            agent: self.config.agent.clone(),
            action: action.to_owned(),
            exit,
            ok,
            detail: truncate_chars(&detail, DETAIL_MAX),
            took_ms,
        }
    }
}

/// Runs agent `path` with `stdin` within `limit`: how it ended and its output (stdout and
/// stderr together, the last [`crate::OUTPUT_MAX`] bytes).
async fn run_agent(path: &Path, stdin: &str, limit: Duration) -> (Ended, String) {
    let stdin = match stdin_file(stdin) {
        Ok(file) => file,
        Err(e) => {
            return (
                Ended::NotStarted(format!("cannot write its input: {e}")),
                String::new(),
            );
        }
    };
    let mut command = Command::new(path);
    command
        .stdin(Stdio::from(stdin))
        .process_group(0)
        .kill_on_drop(false);
    let shown = path.display().to_string();
    match run_captured("fence agent", &shown, command, limit).await {
        Ok((status, output)) => {
            use std::os::unix::process::ExitStatusExt;
            (
                Ended::Exited {
                    code: status.code(),
                    signal: status.signal(),
                },
                output,
            )
        }
        Err(ResourceError::TimedOut { output, .. }) => (Ended::TimedOut, output),
        Err(ResourceError::Spawn { error, .. }) => (
            Ended::NotStarted(format!("{shown}: {error}")),
            String::new(),
        ),
        Err(other) => (Ended::NotStarted(other.to_string()), String::new()),
    }
}

/// A temporary file holding `text`, read from its start: an agent's stdin (a file, not a
/// pipe: nothing to feed while the agent runs, nothing lost if it exits without reading).
fn stdin_file(text: &str) -> std::io::Result<std::fs::File> {
    let mut file = tempfile::tempfile()?;
    file.write_all(text.as_bytes())?;
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

/// Whether option `name` holds a secret (a password, a script printing one...).
fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.contains("passw") || name.contains("secret") || name.ends_with("_script")
}

/// `output` with every secret option's value replaced by [`MASK`] (longest first, so a secret
/// containing another is masked whole).
fn mask(output: &str, options: &BTreeMap<String, String>) -> String {
    let mut secrets: Vec<&str> = options
        .iter()
        .filter(|(k, v)| is_secret(k) && !v.is_empty())
        .map(|(_, v)| v.as_str())
        .collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
        .into_iter()
        .fold(output.to_owned(), |text, secret| text.replace(secret, MASK))
}

/// `words`, then the end of `output` on one line (`; output: ...`), at most [`DETAIL_MAX`]
/// characters in all.
fn detail(words: &str, output: &str) -> String {
    let lines: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return truncate_chars(words, DETAIL_MAX);
    }
    let words = truncate_chars(words, DETAIL_MAX / 2);
    let prefix = format!("{words}; output: ");
    let room = DETAIL_MAX - prefix.chars().count();
    let text = lines.join(" | ");
    let count = text.chars().count();
    if count <= room {
        return format!("{prefix}{text}");
    }
    // The end matters most (the error comes last); "…" marks the cut.
    let tail: String = text.chars().skip(count - (room - 1)).collect();
    format!("{prefix}…{tail}")
}

/// `detail` with `note` inserted after its first part (the exit words), before the output.
fn with_note(detail: &str, note: &str) -> String {
    match detail.split_once("; output: ") {
        Some((words, output)) => format!("{words}; {note}; output: {output}"),
        None => format!("{detail}; {note}"),
    }
}

/// The first `max` characters of `text`.
fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => text[..cut].to_owned(),
        None => text.to_owned(),
    }
}

/// The program of a fence agent: `agent` itself when it has a `/` (it must be an executable
/// file), otherwise the first executable file of that name in the directories of `$PATH`,
/// then [`AGENT_DIRECTORIES`].
pub fn resolve_agent(agent: &str) -> Result<PathBuf, String> {
    if agent.is_empty() {
        return Err("the fence agent's name is empty".to_owned());
    }
    if agent.contains('/') {
        let path = PathBuf::from(agent);
        return executable(&path).map(|()| path);
    }
    let path_variable = std::env::var("PATH").unwrap_or_default();
    let directories: Vec<&str> = path_variable
        .split(':')
        .filter(|d| !d.is_empty())
        .chain(AGENT_DIRECTORIES)
        .collect();
    let mut not_executable = Vec::new();
    for directory in &directories {
        let candidate = Path::new(directory).join(agent);
        match executable(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) if candidate.exists() => not_executable.push(e),
            Err(_) => {}
        }
    }
    let found = if not_executable.is_empty() {
        String::new()
    } else {
        format!(" ({})", not_executable.join("; "))
    };
    Err(format!(
        "fence agent \"{agent}\" not found: no executable file of that name in $PATH ({path_variable}), {}{found}",
        AGENT_DIRECTORIES.join(" or ")
    ))
}

/// Ok when `path` is a file someone may execute; otherwise why not.
fn executable(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let metadata = std::fs::metadata(path).map_err(|e| format!("fence agent {shown}: {e}"))?;
    if !metadata.is_file() {
        return Err(format!("fence agent {shown} is not a file"));
    }
    let mode = metadata.permissions().mode();
    if mode & 0o111 == 0 {
        return Err(format!(
            "fence agent {shown} is not executable (mode {:o})",
            mode & 0o7777
        ));
    }
    Ok(())
}

/// What an agent's metadata declares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FenceMetadata {
    /// Every parameter name, with the older names they replace (`obsoletes="..."`: `plug`
    /// obsoletes `port`, `password` obsoletes `passwd`).
    pub parameters: BTreeSet<String>,
    /// The parameters marked `required="1"` (fence-agents marks `action`, which Halcyon sends),
    /// except those marked `deprecated="1"`: the parameter that obsoletes one is required in
    /// its place, and either name satisfies it ([`FenceMetadata::obsoleted`]).
    pub required: BTreeSet<String>,
    /// Older names, each with the parameter that replaces it (`ipaddr` -> `ip`).
    pub obsoleted: BTreeMap<String, String>,
    /// The action names (`on`, `off`, `reboot`, `status`, `metadata`...).
    pub actions: BTreeSet<String>,
}

/// Reads fence-agents metadata XML: `<resource-agent>`'s `<parameter name=... required=...
/// obsoletes=...>` elements and `<actions>`' `<action name=...>` elements.
pub fn parse_metadata(xml: &str) -> Result<FenceMetadata, String> {
    let mut metadata = FenceMetadata::default();
    let mut root_seen = false;
    let mut in_actions = false;
    read_xml(xml, |item| {
        let name_of = |element: &str| {
            item.attribute("name")
                .map(str::to_owned)
                .ok_or_else(|| format!("a <{element}> without a name"))
        };
        match item {
            XmlItem::Open {
                name: "resource-agent",
                ..
            } => root_seen = true,
            XmlItem::Open {
                name: "parameter", ..
            } => {
                let name = name_of("parameter")?;
                let truthy = |a| matches!(item.attribute(a), Some("1" | "true" | "yes"));
                if truthy("required") && !truthy("deprecated") {
                    metadata.required.insert(name.clone());
                }
                if let Some(old) = item.attribute("obsoletes").filter(|o| !o.is_empty()) {
                    metadata.parameters.insert(old.to_owned());
                    metadata.obsoleted.insert(old.to_owned(), name.clone());
                }
                metadata.parameters.insert(name);
            }
            XmlItem::Open {
                name: "actions",
                empty,
                ..
            } => in_actions = !empty,
            XmlItem::Close { name: "actions" } => in_actions = false,
            XmlItem::Open { name: "action", .. } if in_actions => {
                metadata.actions.insert(name_of("action")?);
            }
            _ => {}
        }
        Ok(())
    })?;
    if !root_seen {
        return Err("no <resource-agent> element".to_owned());
    }
    Ok(metadata)
}

/// Metadata read so far, by resolved agent path.
fn metadata_cache() -> &'static Mutex<HashMap<PathBuf, Arc<FenceMetadata>>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Arc<FenceMetadata>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The metadata of `agent` (resolved by [`resolve_agent`]): the agent run with stdin
/// `action=metadata`, its stdout parsed, within [`crate::ocf::META_DATA_TIMEOUT`]. Kept for the
/// life of the process per resolved path (errors are not kept: a fixed agent is read again).
pub fn agent_metadata(agent: &str) -> Result<Arc<FenceMetadata>, String> {
    let path = resolve_agent(agent)?;
    let cached = metadata_cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&path)
        .cloned();
    if let Some(metadata) = cached {
        return Ok(metadata);
    }
    let shown = format!("{} action=metadata", path.display());
    let stdin = stdin_file("action=metadata\n").map_err(|e| format!("{shown}: {e}"))?;
    let mut command = std::process::Command::new(&path);
    command.stdin(Stdio::from(stdin));
    let text = run_metadata(&shown, command)?;
    let metadata =
        Arc::new(parse_metadata(&text).map_err(|e| format!("{shown}: bad metadata: {e}"))?);
    let mut cache = metadata_cache().lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() < METADATA_CACHE_MAX {
        cache.insert(path, metadata.clone());
    }
    Ok(metadata)
}

/// For `halcyon check`: the device's agent resolves and is executable, its metadata can be
/// read, every option is one of its parameters (and not one Halcyon sends itself), and every
/// required parameter is given (except those Halcyon sends: `action`, `nodename`, and the
/// target's `plug` or `port`). One [`ValueError`] per problem.
pub fn check_device(device: &FenceDevice) -> Vec<ValueError> {
    let problem = |problem: String, expected: Option<String>, hint: Option<String>| ValueError {
        column: None,
        problem,
        expected,
        hint,
    };
    let agent = &device.agent;
    if let Err(e) = resolve_agent(agent) {
        return vec![problem(e, None, None)];
    }
    let metadata = match agent_metadata(agent) {
        Ok(m) => m,
        Err(e) => {
            return vec![problem(
                format!("fence agent {agent}: cannot read its metadata: {e}"),
                None,
                None,
            )];
        }
    };
    let mut problems = Vec::new();
    let known: Vec<&str> = metadata.parameters.iter().map(String::as_str).collect();
    for (key, value) in &device.options {
        if SENT_BY_HALCYON.contains(&key.as_str()) {
            problems.push(problem(
                format!("fence agent {agent}: option \"{key}\" is set by Halcyon on every call"),
                None,
                Some("remove it".to_owned()),
            ));
        } else if !metadata.parameters.contains(key) {
            let mut listed: Vec<&str> = known.iter().copied().take(EXPECTED_NAMES_MAX).collect();
            if known.len() > listed.len() {
                listed.push("...");
            }
            problems.push(problem(
                format!("fence agent {agent}: unknown option \"{key}\""),
                Some(format!("one of its parameters: {}", listed.join(", "))),
                halcyon_config::diagnostic::did_you_mean(key, known.iter().copied()),
            ));
        }
        if key.contains(['\n', '=']) || value.contains('\n') {
            problems.push(problem(
                format!("fence agent {agent}: option \"{}\": a line break (or '=' in the name) would end the option early", key.escape_debug()),
                None,
                None,
            ));
        }
    }
    for required in &metadata.required {
        let sent = SENT_BY_HALCYON.contains(&required.as_str())
            || TARGET_PARAMETERS.contains(&required.as_str());
        // Given under an older name the parameter replaces (`ipaddr` for `ip`).
        let given = device.options.contains_key(required)
            || metadata
                .obsoleted
                .iter()
                .any(|(old, new)| new == required && device.options.contains_key(old));
        if !sent && !given {
            problems.push(problem(
                format!("fence agent {agent}: required option \"{required}\" is missing"),
                None,
                None,
            ));
        }
    }
    problems
}
