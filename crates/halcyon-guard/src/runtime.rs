//! The guard process: setup (own process group, real-time priority, locked memory) and the
//! main loop (ppoll on the daemon's pipe and a CLOCK_BOOTTIME timerfd).
//!
//! The loop allocates nothing: input, output and log lines use fixed buffers, registrations
//! live in the fixed arrays of [`Guard`], and the netlink socket, the timerfd and the log are
//! set up before the first request is read.

use std::fmt::{self, Write};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::clock::BootTime;
use crate::config::GuardConfig;
use halcyon_netlink::{AddressChange, InterfaceAddress, Socket, SocketOptions};

use crate::guard::{Actuator, DeleteOutcome, FenceReport, Guard, KillOutcome};
use crate::protocol::{Address, LINE_MAX};

/// Room kept free in the output buffer before a request is read: one reply (at most about 700
/// bytes for an echoed unknown command) and one `event fenced` line.
const OUTPUT_RESERVE: usize = 2048;
const OUTPUT_BYTES: usize = 16 * 1024;
const INPUT_BYTES: usize = 4096;
/// How long the guard tries to hand its last lines to the daemon after the pipe closed.
const FINAL_FLUSH: Duration = Duration::from_millis(100);
/// The netlink socket's limits: an answer within 200 ms, at most 16 datagrams read for one
/// (late answers to an earlier deletion that timed out are skipped), so a fence can never
/// hang on the kernel.
const NETLINK_OPTIONS: SocketOptions = SocketOptions {
    receive_timeout: Duration::from_millis(200),
    datagrams_per_answer_max: 16,
};
/// The netlink receive buffer (an acknowledgement is a few dozen bytes).
const NETLINK_RECEIVE_BYTES: usize = 8192;

/// Runs the guard on `input` (requests from the daemon) and `output` (replies and events);
/// exits the process when the daemon's end of `input` closes (after fencing if armed).
pub fn guard_main(config: GuardConfig, input: OwnedFd, output: OwnedFd) -> ! {
    let log = Log::new();
    let code = match run(config, input, output, &log) {
        Ok(()) => 0,
        Err(error) => {
            log.line(format_args!("stopping on an error: {error}"));
            1
        }
    };
    std::process::exit(code)
}

/// [`guard_main`] on the process's stdin and stdout.
pub fn guard_main_stdio(config: GuardConfig) -> ! {
    // SAFETY: descriptors 0 and 1 belong to this process; nothing else in the guard uses them.
    let (input, output) = unsafe { (OwnedFd::from_raw_fd(0), OwnedFd::from_raw_fd(1)) };
    guard_main(config, input, output)
}

/// What the process-level setup achieved (reported in `event ready`).
#[derive(Debug, Clone, Copy)]
struct Setup {
    pgid: i32,
    realtime: Result<i32, i32>,
    locked: Result<(), i32>,
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// What a deletion's result means for the fence: already gone (EADDRNOTAVAIL) or its
/// interface gone (ENODEV) is not a failure.
fn delete_outcome(result: Result<(), halcyon_netlink::Error>) -> DeleteOutcome {
    match result {
        Ok(()) => DeleteOutcome::Deleted,
        Err(halcyon_netlink::Error::Refused {
            code: libc::EADDRNOTAVAIL | libc::ENODEV,
        }) => DeleteOutcome::Absent,
        Err(error) => DeleteOutcome::Failed(error.errno()),
    }
}

fn describe(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

fn setup(config: &GuardConfig, log: &Log) -> Setup {
    // SAFETY: signal(2) with SIG_IGN and prctl(2) with a NUL-terminated name; no handlers run.
    unsafe {
        // A daemon that closed its reading end must not kill the guard with SIGPIPE; a hangup or
        // a Ctrl-C meant for the daemon's terminal must not stop it either.
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
        libc::prctl(
            libc::PR_SET_NAME,
            c"halcyon-guard".as_ptr() as libc::c_ulong,
            0,
            0,
            0,
        );
    }
    // Own process group: a signal to the daemon's group (kill -STOP -PGID, a terminal's ^Z)
    // does not reach the guard. The daemon's spawn already does this; repeat it when run alone.
    // SAFETY: getpid/getpgrp/setpgid have no memory effects.
    let pgid = unsafe {
        if libc::getpgrp() != libc::getpid() && libc::setpgid(0, 0) != 0 {
            log.line(format_args!(
                "cannot get a process group of its own: {}",
                describe(errno())
            ));
        }
        libc::getpgrp()
    };
    let realtime = match config.realtime_priority {
        None => Err(0),
        Some(priority) => {
            let parameters = libc::sched_param {
                sched_priority: priority,
            };
            // SAFETY: sched_setscheduler(2) on this process with a valid parameter block.
            if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &parameters) } == 0 {
                Ok(priority)
            } else {
                Err(errno())
            }
        }
    };
    match realtime {
        Ok(priority) => log.line(format_args!("real-time priority SCHED_FIFO {priority}")),
        Err(0) => log.line(format_args!(
            "NOT real-time (disabled by configuration): a loaded machine can delay fences"
        )),
        Err(code) => log.line(format_args!(
            "NOT real-time: sched_setscheduler(SCHED_FIFO) failed: {}; a loaded machine can delay fences",
            describe(code)
        )),
    }
    let locked = if !config.lock_memory {
        log.line(format_args!(
            "memory NOT locked (disabled by configuration): a fence can wait for a page-in"
        ));
        Err(0)
        // SAFETY: mlockall(2) takes flags only.
    } else if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } == 0 {
        log.line(format_args!("memory locked"));
        Ok(())
    } else {
        let code = errno();
        log.line(format_args!(
            "memory NOT locked: mlockall failed: {}; a fence can wait for a page-in",
            describe(code)
        ));
        Err(code)
    };
    // The kernel's OOM killer must not pick the guard (which holds almost no memory anyway).
    if let Err(error) = std::fs::write("/proc/self/oom_score_adj", "-1000") {
        log.line(format_args!("oom_score_adj not lowered: {error}"));
    }
    Setup {
        pgid,
        realtime,
        locked,
    }
}

/// The real actuator: kill(2) and RTM_DELADDR.
struct System {
    /// Opened when the guard starts, so it belongs to the network namespace the guard was
    /// started in (the daemon's), and a fence needs no socket(2) call.
    netlink: Option<Socket>,
    receive: [u8; NETLINK_RECEIVE_BYTES],
}

impl Actuator for System {
    fn kill_group(&mut self, pgid: i32) -> KillOutcome {
        // SAFETY: kill(2) with a negative pid signals the process group `pgid` (> 1, checked by
        // the parser and against the guard's own group by the state machine).
        if unsafe { libc::kill(-pgid, libc::SIGKILL) } == 0 {
            KillOutcome::Killed
        } else {
            match errno() {
                libc::ESRCH => KillOutcome::Gone,
                code => KillOutcome::Failed(code),
            }
        }
    }

    fn delete_address(&mut self, address: &Address) -> DeleteOutcome {
        match self.netlink.as_mut() {
            Some(socket) => delete_outcome(socket.change_address(
                AddressChange::Delete,
                &InterfaceAddress {
                    interface_index: address.interface_index,
                    address: address.address,
                    prefix_length: address.prefix_length,
                },
                &mut self.receive,
            )),
            None => DeleteOutcome::Failed(libc::ENOTSOCK),
        }
    }

    fn addresses_supported(&self) -> bool {
        self.netlink.is_some()
    }
}

fn run(config: GuardConfig, input: OwnedFd, output: OwnedFd, log: &Log) -> io::Result<()> {
    let setup = setup(&config, log);
    let netlink = match Socket::open(NETLINK_OPTIONS) {
        Ok(socket) => Some(socket),
        Err(error) => {
            log.line(format_args!(
                "no netlink socket ({error}): addresses cannot be registered"
            ));
            None
        }
    };
    let netlink_ready = netlink.is_some();
    let system = System {
        netlink,
        receive: [0; NETLINK_RECEIVE_BYTES],
    };
    let mut guard = Guard::new(system, config.lead, setup.pgid);
    let timer = timerfd()?;
    for fd in [input.as_raw_fd(), output.as_raw_fd()] {
        make_nonblocking_if_private(fd)?;
    }

    let mut out = FixedBuf::<OUTPUT_BYTES>::new();
    let _ = writeln!(
        out,
        "event ready pid={} pgid={} realtime={} mlock={} netlink={} lead_ns={} tick_ns={} build={}",
        std::process::id(),
        setup.pgid,
        setup.realtime.unwrap_or_default(),
        if setup.locked.is_ok() { "on" } else { "off" },
        if netlink_ready { "on" } else { "off" },
        config.lead.as_nanos(),
        config.tick.as_nanos(),
        crate::BUILD,
    );
    log.line(format_args!(
        "ready: lead {} ms, tick {} ms",
        config.lead.as_millis(),
        config.tick.as_millis()
    ));

    let mut input_buffer = [0u8; INPUT_BYTES];
    let mut input_length = 0usize;
    let mut discarding = false;
    let mut output_broken = false;
    let mut eof = false;
    let mut programmed: Option<BootTime> = None;
    let tick = timespec_of(config.tick);

    loop {
        if let Some(report) = guard.check(BootTime::now()) {
            emit(&guard, &report, &mut out, log);
        }

        // Apply every complete line, checking the deadline before each.
        while out.free() >= OUTPUT_RESERVE {
            let buffered = &input_buffer[..input_length];
            let Some(newline) = buffered.iter().position(|&b| b == b'\n') else {
                if input_length > LINE_MAX {
                    // An over-long line: drop what we have, answer once its end arrives.
                    discarding = true;
                    input_length = 0;
                }
                break;
            };
            let now = BootTime::now();
            if let Some(report) = guard.check(now) {
                emit(&guard, &report, &mut out, log);
            }
            if discarding {
                discarding = false;
                let _ = writeln!(out, "err parse line longer than {LINE_MAX} bytes");
            } else {
                let _ = guard.handle_line(&buffered[..newline], now, &mut out);
            }
            input_buffer.copy_within(newline + 1..input_length, 0);
            input_length -= newline + 1;
        }

        if eof {
            if let Some(report) = guard.on_eof(BootTime::now()) {
                emit(&guard, &report, &mut out, log);
            }
            if input_length > 0 || discarding {
                log.line(format_args!(
                    "ignored an unterminated last request of {input_length} bytes"
                ));
            }
            final_flush(&mut out, output.as_raw_fd(), output_broken);
            log.line(format_args!("the daemon's pipe closed; exiting"));
            return Ok(());
        }

        let fire_at = guard.fire_at();
        if fire_at != programmed {
            arm_timer(&timer, fire_at)?;
            programmed = fire_at;
        }
        if !output_broken {
            output_broken = flush(&mut out, output.as_raw_fd());
        }

        let read_input = input_length < INPUT_BYTES && out.free() >= OUTPUT_RESERVE;
        let mut fds = [
            libc::pollfd {
                fd: if read_input { input.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if out.len() > 0 && !output_broken {
                    output.as_raw_fd()
                } else {
                    -1
                },
                events: libc::POLLOUT,
                revents: 0,
            },
            libc::pollfd {
                fd: timer.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let timeout = if fire_at.is_some() {
            &tick as *const libc::timespec
        } else {
            std::ptr::null()
        };
        // SAFETY: three valid pollfd entries (negative fds are ignored), a valid or null
        // timeout, no signal mask change.
        let ready = unsafe { libc::ppoll(fds.as_mut_ptr(), 3, timeout, std::ptr::null()) };
        if ready < 0 {
            let code = errno();
            if code == libc::EINTR {
                continue;
            }
            return Err(describe(code));
        }
        if fds[2].revents & libc::POLLIN != 0 {
            let mut expirations = [0u8; 8];
            // SAFETY: reading 8 bytes from a non-blocking timerfd into a live buffer.
            unsafe { libc::read(timer.as_raw_fd(), expirations.as_mut_ptr().cast(), 8) };
        }
        if fds[0].revents != 0 {
            // SAFETY: reading into the free tail of the input buffer.
            let count = unsafe {
                libc::read(
                    input.as_raw_fd(),
                    input_buffer[input_length..].as_mut_ptr().cast(),
                    INPUT_BYTES - input_length,
                )
            };
            if count > 0 {
                input_length += count as usize;
            } else if count == 0 {
                eof = true;
            } else {
                let code = errno();
                if code != libc::EAGAIN && code != libc::EINTR {
                    // The pipe is unusable: as good as closed, and the daemon cannot extend.
                    log.line(format_args!(
                        "reading the daemon's pipe failed: {}",
                        describe(code)
                    ));
                    eof = true;
                }
            }
        }
        if fds[1].revents != 0 && !output_broken {
            output_broken = flush(&mut out, output.as_raw_fd());
        }
    }
}

/// Writes the `event fenced` line and logs what the fence did.
fn emit<A: Actuator>(guard: &Guard<A>, report: &FenceReport, out: &mut impl Write, log: &Log) {
    if writeln!(out, "event fenced {report}").is_err() {
        log.line(format_args!("no room for the event line of this fence"));
    }
    log.line(format_args!(
        "FENCED ({}): {} ms late on deadline-lead, took {} us; process groups: {} killed, {} already gone, {} failed; addresses: {} deleted, {} absent, {} failed",
        match report.reason {
            crate::guard::FenceReason::Expired => "lease deadline passed without an extension",
            crate::guard::FenceReason::Eof => "the daemon's pipe closed",
        },
        report.late().as_millis(),
        report.finished.duration_since(report.started).as_micros(),
        report.groups_killed,
        report.groups_gone,
        report.groups_failed,
        report.addresses_deleted,
        report.addresses_absent,
        report.addresses_failed,
    ));
    let (groups, addresses) = guard.last_fence();
    for (pgid, outcome) in groups {
        match outcome {
            KillOutcome::Killed => log.line(format_args!("fence: SIGKILL process group {pgid}")),
            KillOutcome::Gone => log.line(format_args!("fence: process group {pgid} already gone")),
            KillOutcome::Failed(code) => log.line(format_args!(
                "fence: FAILED to kill process group {pgid}: {}",
                describe(*code)
            )),
        }
    }
    for (address, outcome) in addresses {
        match outcome {
            DeleteOutcome::Deleted => log.line(format_args!("fence: deleted address {address}")),
            DeleteOutcome::Absent => {
                log.line(format_args!("fence: address {address} already absent"))
            }
            DeleteOutcome::Failed(code) => log.line(format_args!(
                "fence: FAILED to delete address {address}: {}",
                describe(*code)
            )),
        }
    }
    if guard.state() == crate::guard::State::Fenced {
        log.line(format_args!("registrations refused until the next extend"));
    }
}

/// Writes what it can; true when the reader is gone (EPIPE or another hard error).
fn flush<const N: usize>(out: &mut FixedBuf<N>, fd: RawFd) -> bool {
    while out.len() > 0 {
        // SAFETY: writing the buffered bytes from a live buffer.
        let written = unsafe { libc::write(fd, out.bytes().as_ptr().cast(), out.len()) };
        if written > 0 {
            out.consume(written as usize);
            continue;
        }
        let code = errno();
        match code {
            libc::EINTR => continue,
            libc::EAGAIN => return false,
            _ => {
                out.clear();
                return true;
            }
        }
    }
    false
}

fn final_flush<const N: usize>(out: &mut FixedBuf<N>, fd: RawFd, broken: bool) {
    if broken {
        return;
    }
    let give_up = BootTime::now().saturating_add(FINAL_FLUSH);
    while out.len() > 0 && BootTime::now() < give_up {
        if flush(out, fd) {
            return;
        }
        let mut pollfd = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pollfd, 1, 10) };
    }
}

fn timerfd() -> io::Result<OwnedFd> {
    // SAFETY: timerfd_create(2); the result is checked.
    let raw = unsafe {
        libc::timerfd_create(libc::CLOCK_BOOTTIME, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC)
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Arms the timer to fire at `at` (absolute CLOCK_BOOTTIME; it fires at once if `at` has
/// passed, also after a suspend), or disarms it.
fn arm_timer(timer: &OwnedFd, at: Option<BootTime>) -> io::Result<()> {
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let value = match at {
        // A zero value would disarm: the earliest real time is 1 ns.
        Some(at) => BootTime::from_nanos(at.as_nanos().max(1)).timespec(),
        None => zero,
    };
    let spec = libc::itimerspec {
        it_interval: zero,
        it_value: value,
    };
    // SAFETY: a valid timerfd and itimerspec; the old value is not wanted.
    let result = unsafe {
        libc::timerfd_settime(
            timer.as_raw_fd(),
            libc::TFD_TIMER_ABSTIME,
            &spec,
            std::ptr::null_mut(),
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn timespec_of(duration: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: duration.as_secs() as libc::time_t,
        tv_nsec: duration.subsec_nanos() as libc::c_long,
    }
}

/// O_NONBLOCK on a pipe or socket (the daemon's private pipe), never on a terminal or file that
/// others may share (the guard polls before reading and writing those).
fn make_nonblocking_if_private(fd: RawFd) -> io::Result<()> {
    // SAFETY: fstat(2) into a zeroed stat buffer.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let kind = stat.st_mode & libc::S_IFMT;
    if kind != libc::S_IFIFO && kind != libc::S_IFSOCK {
        return Ok(());
    }
    // SAFETY: fcntl(2) flag get/set on a valid descriptor.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A fixed-size byte buffer written with `write!`; a line that does not fit is not written at
/// all (no partial lines).
pub(crate) struct FixedBuf<const N: usize> {
    bytes: [u8; N],
    length: usize,
    /// Start of the line being written, to roll back a line that did not fit.
    line_start: usize,
}

impl<const N: usize> FixedBuf<N> {
    pub(crate) fn new() -> Self {
        FixedBuf {
            bytes: [0; N],
            length: 0,
            line_start: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.length
    }

    pub(crate) fn free(&self) -> usize {
        N - self.length
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes[..self.length]
    }

    pub(crate) fn consume(&mut self, count: usize) {
        self.bytes.copy_within(count..self.length, 0);
        self.length -= count;
        self.line_start = self.length;
    }

    pub(crate) fn clear(&mut self) {
        self.length = 0;
        self.line_start = 0;
    }
}

impl<const N: usize> Write for FixedBuf<N> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        if text.len() > self.free() {
            // Drop the whole line written so far; `write!` stops at the error.
            self.length = self.line_start;
            return Err(fmt::Error);
        }
        self.bytes[self.length..self.length + text.len()].copy_from_slice(text.as_bytes());
        self.length += text.len();
        if text.ends_with('\n') {
            self.line_start = self.length;
        }
        Ok(())
    }
}

/// Log lines on stderr, formatted into a fixed buffer; a line is dropped rather than block the
/// guard when stderr is not writable (a full pipe of a paused daemon, a stopped terminal).
struct Log {
    pid: u32,
}

impl Log {
    fn new() -> Log {
        Log {
            pid: std::process::id(),
        }
    }

    fn line(&self, args: fmt::Arguments<'_>) {
        let mut line = Truncating::<512>::new();
        let _ = write!(line, "halcyon-guard[{}]: ", self.pid);
        let _ = line.write_fmt(args);
        line.finish();
        let mut pollfd = libc::pollfd {
            fd: 2,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        if unsafe { libc::poll(&mut pollfd, 1, 0) } == 1 && pollfd.revents & libc::POLLOUT != 0 {
            // SAFETY: writing a live buffer to stderr; a short or failed write is ignored.
            unsafe { libc::write(2, line.bytes.as_ptr().cast(), line.length) };
        }
    }
}

/// A line buffer that keeps what fits and always ends in `\n`.
struct Truncating<const N: usize> {
    bytes: [u8; N],
    length: usize,
}

impl<const N: usize> Truncating<N> {
    fn new() -> Self {
        Truncating {
            bytes: [0; N],
            length: 0,
        }
    }

    fn finish(&mut self) {
        if self.length == N {
            self.length -= 1;
        }
        self.bytes[self.length] = b'\n';
        self.length += 1;
    }
}

impl<const N: usize> Write for Truncating<N> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let room = (N - 1).saturating_sub(self.length);
        let take = text.len().min(room);
        self.bytes[self.length..self.length + take].copy_from_slice(&text.as_bytes()[..take]);
        self.length += take;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletion_results_become_fence_outcomes() {
        use halcyon_netlink::Error;
        assert_eq!(delete_outcome(Ok(())), DeleteOutcome::Deleted);
        for code in [libc::EADDRNOTAVAIL, libc::ENODEV] {
            assert_eq!(
                delete_outcome(Err(Error::Refused { code })),
                DeleteOutcome::Absent
            );
        }
        assert_eq!(
            delete_outcome(Err(Error::Refused { code: libc::EPERM })),
            DeleteOutcome::Failed(libc::EPERM)
        );
        assert_eq!(
            delete_outcome(Err(Error::TimedOut {
                timeout: NETLINK_OPTIONS.receive_timeout
            })),
            DeleteOutcome::Failed(libc::EAGAIN)
        );
        assert_eq!(
            delete_outcome(Err(Error::AnswerUnfinished { datagrams: 16 })),
            DeleteOutcome::Failed(libc::ETIMEDOUT)
        );
    }

    #[test]
    fn deleting_an_absent_address_is_not_a_failure_or_needs_privilege() {
        let mut system = System {
            netlink: Some(Socket::open(NETLINK_OPTIONS).expect("netlink socket")),
            receive: [0; NETLINK_RECEIVE_BYTES],
        };
        let address = Address {
            interface_index: 1,
            address: "198.18.250.251".parse().unwrap(),
            prefix_length: 32,
        };
        let outcome = system.delete_address(&address);
        assert!(
            matches!(
                outcome,
                DeleteOutcome::Absent | DeleteOutcome::Failed(libc::EPERM)
            ),
            "{outcome:?}"
        );
    }

    #[test]
    fn fixed_buffer_drops_whole_lines_that_do_not_fit() {
        let mut buffer = FixedBuf::<16>::new();
        assert!(writeln!(buffer, "ok {}", 12345).is_ok());
        assert_eq!(buffer.bytes(), b"ok 12345\n");
        let text = "too long";
        assert!(writeln!(buffer, "err {text}").is_err());
        assert_eq!(buffer.bytes(), b"ok 12345\n");
        assert!(writeln!(buffer, "ok 1").is_ok());
        assert_eq!(buffer.bytes(), b"ok 12345\nok 1\n");
        buffer.consume(9);
        assert_eq!(buffer.bytes(), b"ok 1\n");
        assert_eq!(buffer.free(), 11);
    }

    #[test]
    fn truncated_log_lines_still_end_in_a_newline() {
        let mut line = Truncating::<8>::new();
        let text = "0123456789";
        let _ = write!(line, "{text}");
        line.finish();
        assert_eq!(&line.bytes[..line.length], b"0123456\n");
    }
}
