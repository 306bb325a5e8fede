//! Running short external commands (`ip`, `nft`, `ping`) with a timeout, optionally inside a
//! network namespace. Setup and faults use these; nothing on the checker's sampling path does.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::LabError;

/// Default limit for one setup command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest stdin passed to a command (nft scripts are a few hundred bytes).
const STDIN_BYTES_MAX: usize = 64 * 1024;

/// What to run.
pub struct Invocation<'a> {
    pub program: &'a str,
    pub args: Vec<String>,
    /// Run inside this network namespace (`/run/netns/NAME`), else in the caller's.
    pub netns: Option<&'a Path>,
    pub stdin: Option<&'a [u8]>,
    pub timeout: Duration,
}

impl<'a> Invocation<'a> {
    pub fn new(program: &'a str, args: &[&str]) -> Invocation<'a> {
        Invocation {
            program,
            args: args.iter().map(|arg| arg.to_string()).collect(),
            netns: None,
            stdin: None,
            timeout: COMMAND_TIMEOUT,
        }
    }

    pub fn in_netns(mut self, netns: &'a Path) -> Self {
        self.netns = Some(netns);
        self
    }

    pub fn stdin(mut self, stdin: &'a [u8]) -> Self {
        self.stdin = Some(stdin);
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn describe(&self) -> String {
        let mut text = self.program.to_string();
        for arg in &self.args {
            text.push(' ');
            text.push_str(arg);
        }
        text
    }

    /// Runs the command to completion (or until the timeout, then SIGKILL) and returns its
    /// output whatever the exit status.
    pub fn output(&self) -> Result<Output, LabError> {
        let command_text = self.describe();
        let mut command = Command::new(self.program);
        command
            .args(&self.args)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let namespace = match self.netns {
            Some(path) => Some(File::open(path).map_err(|source| LabError::Io {
                context: format!("opening namespace {}", path.display()),
                source,
            })?),
            None => None,
        };
        if let Some(namespace) = &namespace {
            prepare_child(&mut command, Some(namespace.as_raw_fd()), false);
        }
        let mut child = command.spawn().map_err(|source| LabError::Io {
            context: format!("starting `{command_text}`"),
            source,
        })?;
        drop(namespace);
        if let (Some(input), Some(mut pipe)) = (self.stdin, child.stdin.take()) {
            let input = &input[..input.len().min(STDIN_BYTES_MAX)];
            pipe.write_all(input).map_err(|source| LabError::Io {
                context: format!("writing to `{command_text}`"),
                source,
            })?;
        }
        let pid = child.id() as libc::pid_t;
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send(child.wait_with_output());
        });
        match receiver.recv_timeout(self.timeout) {
            Ok(result) => result.map_err(|source| LabError::Io {
                context: format!("waiting for `{command_text}`"),
                source,
            }),
            Err(_) => {
                // SAFETY: kill(2) of our own unreaped child; its PID cannot have been reused.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let _ = receiver.recv_timeout(Duration::from_secs(2));
                Err(LabError::Timeout {
                    what: format!("`{command_text}`"),
                    after: self.timeout,
                })
            }
        }
    }

    /// Runs the command and fails unless it exits with status 0.
    pub fn run(&self) -> Result<Output, LabError> {
        let output = self.output()?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(LabError::Command {
                command: self.describe(),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            })
        }
    }
}

/// Sets up a child before exec: enter the namespace `netns_fd` if given, unblock every signal,
/// and with `own_session` start a new session (so the child leads its own process group and a
/// terminal's Ctrl-C reaches only the lab, which then cleans up in order) and die with the lab
/// (PR_SET_PDEATHSIG, SIGKILL).
pub(crate) fn prepare_child(command: &mut Command, netns_fd: Option<i32>, own_session: bool) {
    // SAFETY: only async-signal-safe calls (setns, sigprocmask, setsid, prctl) run between fork
    // and exec; the descriptor stays open in the parent until spawn returns.
    unsafe {
        command.pre_exec(move || {
            if let Some(fd) = netns_fd
                && libc::setns(fd, libc::CLONE_NEWNET) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            if own_session {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            }
            Ok(())
        });
    }
}

/// Runs `program args` in the caller's namespace; fails unless it succeeds.
pub fn run(program: &str, args: &[&str]) -> Result<Output, LabError> {
    Invocation::new(program, args).run()
}
