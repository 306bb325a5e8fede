//! Samplers: where a monitor's value comes from (SPEC 9.5).
//!
//! A sampler is given in the configuration as a string ([`Sampler::parse`]):
//!
//! - `builtin:process_count NAME` — the number of processes whose `comm` (`/proc/PID/comm`) or
//!   `argv[0]` basename (`/proc/PID/cmdline`) equals NAME; zombies are not counted. `comm` is
//!   cut to 15 characters by the kernel, so a longer NAME matches through `argv[0]` only.
//! - `builtin:fs_use PATH` — percent of the file system holding PATH in use, as `df` computes
//!   it: used / (used + available to unprivileged users) × 100, from `statvfs(3)`.
//! - `builtin:memory` — percent of memory in use: (MemTotal − MemAvailable) / MemTotal × 100,
//!   from `/proc/meminfo`.
//! - `builtin:load` — the 1-minute load average, from `/proc/loadavg`.
//! - anything else is a command, run as `sh -c COMMAND` ([`run_command`]), whose standard
//!   output is one line: a number (`42`) or a record of numbers separated by blanks or by commas
//!   (`0 3`, `0,3`), parsed by [`parse_output`]. Field 0 is `X` (also `X@0`), field 1 is `X@1`...
//!
//! Invariants: built-ins read `/proc` and call `statvfs` directly, never a shell; every command
//! runs in a process group of its own, is bounded by a timeout after which the whole group is
//! killed, and leaves nothing behind (the group is killed when the command is done too); its
//! captured output is bounded ([`OUTPUT_MAX`]). No async: the runner waits with short sleeps,
//! and reads pipes on two helper threads.

use std::ffi::CString;
use std::fmt;
use std::io::{ErrorKind, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Most fields in a record (`X@0` to `X@63`).
pub const FIELDS_MAX: usize = 64;
/// Most bytes of a command's standard output read; more is an error.
pub const OUTPUT_MAX: usize = 4096;
/// Most bytes of a command's standard error kept for its error message.
pub const STDERR_MAX: usize = 512;
/// Longest a sampler may take, whatever the monitor's interval.
pub const SAMPLE_TIMEOUT_MAX: Duration = Duration::from_secs(30);
/// Most `statvfs` calls left blocked (e.g. on a hung NFS mount) before `fs_use` refuses to
/// start another one.
pub const FS_USE_BLOCKED_MAX: usize = 4;

/// First and longest pause between two checks of a running command.
const POLL_FIRST: Duration = Duration::from_millis(1);
const POLL_MAX: Duration = Duration::from_millis(20);

/// One observation of a resource variable: a number is a record of one field.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub fields: Vec<f64>,
}

impl Sample {
    pub fn number(value: f64) -> Sample {
        Sample {
            fields: vec![value],
        }
    }

    pub fn record(fields: &[f64]) -> Sample {
        Sample {
            fields: fields.to_vec(),
        }
    }
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

/// A sampler's output that is not a number or a record of numbers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    #[error("the output is empty; expected a number such as 42, or a record such as \"0 3\"")]
    Empty,
    #[error(
        "the output has {lines} lines; expected one line: a number such as 42, or a record such as \"0 3\""
    )]
    Lines { lines: usize },
    #[error("{line:?}: field {} (X@{index}) is empty; expected a number between the commas", index + 1)]
    EmptyField { line: String, index: usize },
    #[error("{line:?}: {} is not a number; expected {}", describe_field(*.index, *.fields, text), expected_number(*.fields))]
    NotANumber {
        line: String,
        index: usize,
        fields: usize,
        text: String,
    },
    #[error("{line:?}: the record has {fields} fields; expected at most {FIELDS_MAX}")]
    TooManyFields { line: String, fields: usize },
}

fn describe_field(index: usize, fields: usize, text: &str) -> String {
    if fields == 1 {
        format!("{text:?}")
    } else {
        format!("field {} (X@{index}) {text:?}", index + 1)
    }
}

fn expected_number(fields: usize) -> &'static str {
    if fields == 1 {
        "a number such as 42 or 0.5, or a record of numbers such as \"0 3\""
    } else {
        "a number such as 42 or 0.5"
    }
}

/// Parses a sampler's output: one line (blank lines around it are ignored) holding a number or
/// a record of numbers separated by commas (then blanks around them are ignored) or by blanks.
pub fn parse_output(output: &str) -> Result<Sample, OutputError> {
    let lines: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = match lines.as_slice() {
        [] => return Err(OutputError::Empty),
        [line] => *line,
        _ => return Err(OutputError::Lines { lines: lines.len() }),
    };
    let words: Vec<&str> = if line.contains(',') {
        line.split(',').map(str::trim).collect()
    } else {
        line.split_whitespace().collect()
    };
    if words.len() > FIELDS_MAX {
        return Err(OutputError::TooManyFields {
            line: line.to_owned(),
            fields: words.len(),
        });
    }
    let mut fields = Vec::with_capacity(words.len());
    for (index, word) in words.iter().enumerate() {
        if word.is_empty() {
            return Err(OutputError::EmptyField {
                line: line.to_owned(),
                index,
            });
        }
        match word.parse::<f64>() {
            Ok(v) if v.is_finite() => fields.push(v),
            _ => {
                return Err(OutputError::NotANumber {
                    line: line.to_owned(),
                    index,
                    fields: words.len(),
                    text: (*word).to_owned(),
                });
            }
        }
    }
    Ok(Sample { fields })
}

/// A sampler specification that cannot work; found before any sample is taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SamplerSpecError {
    #[error(
        "the sampler is empty; expected a command, or builtin:process_count NAME, builtin:fs_use PATH, builtin:memory or builtin:load"
    )]
    Empty,
    #[error("unknown built-in sampler \"builtin:{name}\"; expected process_count, fs_use, memory or load{}", hint.as_ref().map(|h| format!("; hint: did you mean builtin:{h}?")).unwrap_or_default())]
    UnknownBuiltin { name: String, hint: Option<String> },
    #[error("builtin:{builtin} needs an argument; expected {expected}")]
    MissingArgument {
        builtin: &'static str,
        expected: &'static str,
    },
    #[error("builtin:{builtin} takes no argument, but was given {argument:?}")]
    UnexpectedArgument {
        builtin: &'static str,
        argument: String,
    },
    #[error(
        "builtin:fs_use {path:?}: the path is relative; expected an absolute path such as /tmp"
    )]
    RelativePath { path: String },
}

/// A sample that could not be taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SampleError {
    #[error("command {command:?}: {error}")]
    Output { command: String, error: OutputError },
    #[error("command {command:?}: cannot start: {error}")]
    Spawn { command: String, error: String },
    #[error("command {command:?}: timed out after {timeout:?}{}; its process group was killed", if *.exited { " (it exited, but a process it started kept its output open)" } else { "" })]
    TimedOut {
        command: String,
        timeout: Duration,
        exited: bool,
    },
    #[error("command {command:?}: ended with {status}{}", if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error(
        "command {command:?}: printed more than {OUTPUT_MAX} bytes; expected one number or record"
    )]
    OutputTooLarge { command: String },
    #[error("{path}: {error}")]
    Read { path: String, error: String },
    #[error("{path}: {problem}")]
    Malformed { path: String, problem: String },
    #[error("builtin:fs_use {path:?}: {error}")]
    FsUse { path: String, error: String },
}

/// Where a monitor's samples come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sampler {
    ProcessCount(String),
    FsUse(PathBuf),
    Memory,
    Load,
    Command(String),
}

const BUILTINS: [&str; 4] = ["process_count", "fs_use", "memory", "load"];

impl Sampler {
    /// Parses a monitor's `sample` string (see the module documentation).
    pub fn parse(spec: &str) -> Result<Sampler, SamplerSpecError> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(SamplerSpecError::Empty);
        }
        let Some(builtin) = spec.strip_prefix("builtin:") else {
            return Ok(Sampler::Command(spec.to_owned()));
        };
        let (name, argument) = match builtin.split_once(char::is_whitespace) {
            Some((name, argument)) => (name, argument.trim()),
            None => (builtin, ""),
        };
        let none = |builtin: &'static str, sampler: Sampler| {
            if argument.is_empty() {
                Ok(sampler)
            } else {
                Err(SamplerSpecError::UnexpectedArgument {
                    builtin,
                    argument: argument.to_owned(),
                })
            }
        };
        match name {
            "process_count" if argument.is_empty() => Err(SamplerSpecError::MissingArgument {
                builtin: "process_count",
                expected: "a process name, e.g. builtin:process_count httpd",
            }),
            "process_count" => Ok(Sampler::ProcessCount(argument.to_owned())),
            "fs_use" if argument.is_empty() => Err(SamplerSpecError::MissingArgument {
                builtin: "fs_use",
                expected: "an absolute path, e.g. builtin:fs_use /tmp",
            }),
            "fs_use" if !argument.starts_with('/') => Err(SamplerSpecError::RelativePath {
                path: argument.to_owned(),
            }),
            "fs_use" => Ok(Sampler::FsUse(PathBuf::from(argument))),
            "memory" => none("memory", Sampler::Memory),
            "load" => none("load", Sampler::Load),
            _ => Err(SamplerSpecError::UnknownBuiltin {
                name: name.to_owned(),
                hint: BUILTINS
                    .iter()
                    .map(|b| (strsim::levenshtein(name, b), *b))
                    .filter(|(distance, b)| *distance <= 2 || b.starts_with(name))
                    .min()
                    .map(|(_, b)| b.to_owned()),
            }),
        }
    }

    /// Takes one sample. `timeout` bounds a command and `fs_use`; it is capped at
    /// [`SAMPLE_TIMEOUT_MAX`].
    pub fn sample(&self, timeout: Duration) -> Result<Sample, SampleError> {
        self.sample_with_env(timeout, &[])
    }

    /// [`Sampler::sample`], a command getting the variables `env` besides the caller's
    /// environment (the daemon gives a package monitor's command the package's
    /// `HALCYON_CLUSTER`, `HALCYON_PACKAGE` and `HALCYON_NODE`, as its scripts get them).
    pub fn sample_with_env(
        &self,
        timeout: Duration,
        env: &[(&str, &str)],
    ) -> Result<Sample, SampleError> {
        let timeout = timeout.min(SAMPLE_TIMEOUT_MAX);
        match self {
            Sampler::ProcessCount(name) => Ok(Sample::number(process_count(name)? as f64)),
            Sampler::FsUse(path) => Ok(Sample::number(fs_use(path, timeout)?)),
            Sampler::Memory => Ok(Sample::number(parse_meminfo(&read_proc("/proc/meminfo")?)?)),
            Sampler::Load => Ok(Sample::number(parse_loadavg(&read_proc("/proc/loadavg")?)?)),
            Sampler::Command(command) => {
                let output = run_command_with_env(command, timeout, env)?;
                parse_output(&output).map_err(|error| SampleError::Output {
                    command: command.clone(),
                    error,
                })
            }
        }
    }
}

impl fmt::Display for Sampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sampler::ProcessCount(name) => write!(f, "builtin:process_count {name}"),
            Sampler::FsUse(path) => write!(f, "builtin:fs_use {}", path.display()),
            Sampler::Memory => f.write_str("builtin:memory"),
            Sampler::Load => f.write_str("builtin:load"),
            Sampler::Command(command) => f.write_str(command),
        }
    }
}

fn read_proc(path: &str) -> Result<String, SampleError> {
    std::fs::read_to_string(path).map_err(|e| SampleError::Read {
        path: path.to_owned(),
        error: e.to_string(),
    })
}

/// Number of processes whose `comm` or `argv[0]` basename is `name`. Processes that exit while
/// `/proc` is read are skipped, and so are zombies (dead, not yet reaped by their parent).
pub fn process_count(name: &str) -> Result<usize, SampleError> {
    process_count_of(name, None)
}

/// [`process_count`], counting only the processes whose real user id is `uid` when given.
pub fn process_count_of(name: &str, uid: Option<u32>) -> Result<usize, SampleError> {
    let entries = std::fs::read_dir("/proc").map_err(|e| SampleError::Read {
        path: "/proc".to_owned(),
        error: e.to_string(),
    })?;
    let mut count = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        if !file_name.as_bytes().iter().all(u8::is_ascii_digit) {
            continue;
        }
        let directory = entry.path();
        let comm = std::fs::read(directory.join("comm")).unwrap_or_default();
        let comm = comm.strip_suffix(b"\n").unwrap_or(&comm);
        let matches = comm == name.as_bytes() || {
            let cmdline = std::fs::read(directory.join("cmdline")).unwrap_or_default();
            let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
            let basename = argv0.rsplit(|b| *b == b'/').next().unwrap_or_default();
            !basename.is_empty() && basename == name.as_bytes()
        };
        if matches && alive(&directory) && uid.is_none_or(|uid| real_uid(&directory) == Some(uid)) {
            count += 1;
        }
    }
    Ok(count)
}

/// False for a zombie (or a process gone meanwhile): the state after the command in
/// `/proc/PID/stat` is `Z` or `X`.
fn alive(directory: &Path) -> bool {
    let stat = std::fs::read(directory.join("stat")).unwrap_or_default();
    let Some(close) = stat.iter().rposition(|b| *b == b')') else {
        return false;
    };
    let state = stat[close + 1..].iter().find(|b| !b.is_ascii_whitespace());
    matches!(state, Some(s) if *s != b'Z' && *s != b'X')
}

/// The real user id of a process, from the `Uid:` line of `/proc/PID/status`.
fn real_uid(directory: &Path) -> Option<u32> {
    let status = std::fs::read_to_string(directory.join("status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The user id of user `name` (the system's user database, through `getpwnam_r(3)`);
/// `None` when there is no such user. A number is taken as a user id.
pub fn user_id(name: &str) -> Result<u32, String> {
    if let Ok(uid) = name.parse::<u32>() {
        return Ok(uid);
    }
    let c_name = CString::new(name).map_err(|_| format!("user {name:?}: holds a NUL byte"))?;
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value of this plain C struct.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buffer` outlives it and its length is given.
    let rc = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if rc != 0 {
        return Err(format!(
            "user {name:?}: cannot be looked up: {}",
            std::io::Error::from_raw_os_error(rc)
        ));
    }
    if found.is_null() {
        return Err(format!("user {name:?}: no such user on this node"));
    }
    Ok(entry.pw_uid)
}

/// Percent of memory in use from the text of `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Result<f64, SampleError> {
    let malformed = |problem: String| SampleError::Malformed {
        path: "/proc/meminfo".to_owned(),
        problem,
    };
    let value = |key: &str| -> Result<f64, SampleError> {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .ok_or_else(|| malformed(format!("no {key} line")))?;
        let number = line.split_whitespace().next().unwrap_or_default();
        number
            .parse::<u64>()
            .map(|kb| kb as f64)
            .map_err(|_| malformed(format!("{key}: {number:?} is not a number of kB")))
    };
    let total = value("MemTotal")?;
    let available = value("MemAvailable")?;
    if total <= 0.0 {
        return Err(malformed("MemTotal is 0".to_owned()));
    }
    Ok(((total - available) / total * 100.0).clamp(0.0, 100.0))
}

/// The 1-minute load average from the text of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Result<f64, SampleError> {
    let first = text.split_whitespace().next().unwrap_or_default();
    match first.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(SampleError::Malformed {
            path: "/proc/loadavg".to_owned(),
            problem: format!("{first:?} is not a load average"),
        }),
    }
}

/// `statvfs` calls started by `fs_use` that have not returned.
static FS_USE_BLOCKED: AtomicUsize = AtomicUsize::new(0);

/// Percent of the file system holding `path` in use, like `df`. `statvfs` runs on a helper
/// thread so that a hung mount costs at most `timeout` (and a blocked thread, bounded by
/// [`FS_USE_BLOCKED_MAX`]).
pub fn fs_use(path: &Path, timeout: Duration) -> Result<f64, SampleError> {
    let shown = path.display().to_string();
    let error = |error: String| SampleError::FsUse {
        path: shown.clone(),
        error,
    };
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| error("the path holds a NUL byte".to_owned()))?;
    let blocked = FS_USE_BLOCKED.fetch_add(1, Ordering::SeqCst);
    if blocked >= FS_USE_BLOCKED_MAX {
        FS_USE_BLOCKED.fetch_sub(1, Ordering::SeqCst);
        return Err(error(format!(
            "{blocked} earlier statvfs calls have not returned (a hung mount?); not starting another"
        )));
    }
    let (sender, receiver) = mpsc::channel();
    let spawned = thread::Builder::new()
        .name("fs_use".to_owned())
        .spawn(move || {
            let result = statvfs_use(&c_path);
            FS_USE_BLOCKED.fetch_sub(1, Ordering::SeqCst);
            let _ = sender.send(result);
        });
    if let Err(e) = spawned {
        FS_USE_BLOCKED.fetch_sub(1, Ordering::SeqCst);
        return Err(error(format!("cannot start a thread: {e}")));
    }
    match receiver.recv_timeout(timeout) {
        Ok(result) => result.map_err(error),
        Err(_) => Err(error(format!("statvfs did not return within {timeout:?}"))),
    }
}

fn statvfs_use(path: &CString) -> Result<f64, String> {
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `stats` is a valid, writable statvfs.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stats) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    let used = stats.f_blocks.saturating_sub(stats.f_bfree) as f64;
    let available = stats.f_bavail as f64;
    if used + available <= 0.0 {
        return Err("the file system reports no blocks (a pseudo file system?)".to_owned());
    }
    Ok(used / (used + available) * 100.0)
}

fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => status.to_string(),
    }
}

/// True once process `pid` has exited. The zombie is left for `Child::wait` to reap, so until
/// then neither its pid nor its process group id can be reused.
fn exited(pid: i32) -> std::io::Result<bool> {
    // SAFETY: an all-zero siginfo_t is a valid value of this plain C struct.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: `info` is a valid, writable siginfo_t; waitid only writes into it.
    let rc = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: waitid filled `info` (or left it zeroed with WNOHANG); si_pid reads a plain field.
    Ok(unsafe { info.si_pid() } != 0)
}

/// SIGKILLs process group `pgid` (the command's shell and whatever it started).
fn kill_group(pgid: i32) {
    assert!(pgid > 1, "refusing to signal process group {pgid}");
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// Reads `pipe` to its end on a helper thread, keeping at most `limit` bytes (the rest is
/// drained, so the writer never blocks), and sends what was kept and whether more came.
fn capture(
    mut pipe: impl Read + Send + 'static,
    stream: Stream,
    limit: usize,
    sender: mpsc::Sender<(Stream, Vec<u8>, bool)>,
) -> std::io::Result<()> {
    thread::Builder::new()
        .name("sampler-output".to_owned())
        .spawn(move || {
            let mut kept = Vec::new();
            let mut truncated = false;
            let mut chunk = [0u8; 4096];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        let room = limit - kept.len();
                        truncated |= n > room;
                        kept.extend_from_slice(&chunk[..n.min(room)]);
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = sender.send((stream, kept, truncated));
        })
        .map(|_| ())
}

/// Runs `sh -c command` in a process group of its own and returns its standard output. Past
/// `timeout` the group is killed and the error says so; a non-zero exit is an error carrying
/// the start of standard error; more than [`OUTPUT_MAX`] bytes of output is an error.
pub fn run_command(command: &str, timeout: Duration) -> Result<String, SampleError> {
    run_command_with_env(command, timeout, &[])
}

/// [`run_command`] with the variables `env` added to the command's environment.
pub fn run_command_with_env(
    command: &str,
    timeout: Duration,
    env: &[(&str, &str)],
) -> Result<String, SampleError> {
    let deadline = Instant::now() + timeout;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| SampleError::Spawn {
            command: command.to_owned(),
            error: e.to_string(),
        })?;
    let pgid = i32::try_from(child.id()).expect("a process id fits in pid_t");
    let timed_out = |exited: bool| SampleError::TimedOut {
        command: command.to_owned(),
        timeout,
        exited,
    };
    let (sender, receiver) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let started = capture(stdout, Stream::Stdout, OUTPUT_MAX, sender.clone())
        .and_then(|()| capture(stderr, Stream::Stderr, STDERR_MAX, sender));
    if let Err(e) = started {
        kill_group(pgid);
        let _ = child.wait();
        return Err(SampleError::Spawn {
            command: command.to_owned(),
            error: format!("cannot start a thread to read its output: {e}"),
        });
    }

    let mut pause = POLL_FIRST;
    loop {
        match exited(pgid) {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                kill_group(pgid);
                let _ = child.wait();
                return Err(SampleError::Spawn {
                    command: command.to_owned(),
                    error: format!("cannot wait for it: {e}"),
                });
            }
        }
        let now = Instant::now();
        if now >= deadline {
            kill_group(pgid);
            let _ = child.wait();
            return Err(timed_out(false));
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(POLL_MAX);
    }

    // The shell is gone; its output ends when every process holding the pipes is gone too.
    let mut stdout = None;
    let mut stderr = Vec::new();
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok((Stream::Stdout, kept, truncated)) => stdout = Some((kept, truncated)),
            Ok((Stream::Stderr, kept, _)) => stderr = kept,
            Err(_) => {
                kill_group(pgid);
                let _ = child.wait();
                return Err(timed_out(true));
            }
        }
    }
    // Leave nothing behind: background processes that closed their output die with the group.
    // The shell is still a zombie here, so the group id cannot have been reused.
    kill_group(pgid);
    let status = child.wait().map_err(|e| SampleError::Spawn {
        command: command.to_owned(),
        error: format!("cannot reap it: {e}"),
    })?;
    let (stdout, truncated) = stdout.expect("both streams were received");
    if !status.success() {
        return Err(SampleError::Failed {
            command: command.to_owned(),
            status: describe_status(status),
            stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
        });
    }
    if truncated {
        return Err(SampleError::OutputTooLarge {
            command: command.to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}
