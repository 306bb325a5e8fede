//! End-to-end tests of the guard process: real process groups, a real pipe, SIGSTOP of the
//! process playing the daemon, EOF, and (as root) address removal in a network namespace of
//! the test's own.
//!
//! The SIGSTOP and EOF tests need a separate "daemon" process that owns the pipe: this test
//! binary re-runs itself with `--ignored --exact helper_daemon` and an environment variable.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use halcyon_guard::{Address, BootTime, GuardConfig, GuardError, GuardHandle, Health, Request};

const LEASE: Duration = Duration::from_millis(300);
const RENEW: Duration = Duration::from_millis(100);
const REPLY: Duration = Duration::from_secs(2);
/// The bound the brief sets: a registered group is dead by the deadline plus this.
const BOUND: Duration = Duration::from_millis(50);
/// Extra time allowed to *observe* the death from this (not real-time, loaded) test process.
const OBSERVE_SLACK: Duration = Duration::from_millis(250);

fn guard_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_halcyon-guard"));
    command
        .args(GuardConfig::default().to_args())
        .stderr(Stdio::inherit());
    command
}

fn spawn_guard() -> GuardHandle {
    GuardHandle::spawn(guard_command()).expect("guard starts")
}

/// A guard built from other sources (here: a shell that answers `event ready` with another
/// build, as a stale `halcyon-guard` beside a newer daemon would) is refused at start,
/// before a request is sent; the genuine one says this build.
#[test]
fn a_guard_of_another_build_is_refused_before_any_request() {
    let mut stale = Command::new("sh");
    stale.args([
        "-c",
        "echo 'event ready pid=1 pgid=1 realtime=0 mlock=off netlink=off lead_ns=1 tick_ns=1 build=0123456789abcdef'; cat >/dev/null",
    ]);
    match GuardHandle::spawn(stale) {
        Err(GuardError::Build { found, expected }) => {
            assert_eq!(found, "0123456789abcdef");
            assert_eq!(expected, halcyon_guard::BUILD);
        }
        other => panic!(
            "a stale guard was not refused: {:?}",
            other.map(|h| h.pid())
        ),
    }
    let mut older = Command::new("sh");
    older.args(["-c", "echo 'event ready pid=1 pgid=1'; cat >/dev/null"]);
    assert!(matches!(
        GuardHandle::spawn(older),
        Err(GuardError::Build { .. })
    ));
    let guard = spawn_guard();
    assert_eq!(guard.ready().build.as_deref(), Some(halcyon_guard::BUILD));
}

fn deadline_from_now(lease: Duration) -> BootTime {
    BootTime::lease_deadline(BootTime::now(), lease)
}

fn ok(guard: &mut GuardHandle, request: Request) -> String {
    guard
        .call(request, REPLY)
        .unwrap_or_else(|error| panic!("{request}: {error}"))
}

/// Live (not zombie) members of process group `pgid`, from /proc: (pid, command name).
fn live_members(pgid: i32) -> Vec<(i32, String)> {
    let mut members = Vec::new();
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // state, ppid, pgrp
        if fields.len() > 2 && fields[2] == pgid.to_string() && !matches!(fields[0], "Z" | "X") {
            members.push((pid, name));
        }
    }
    members
}

fn process_state(pid: i32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    Some(stat[close + 2..].split(' ').next()?.to_string())
}

/// `sh -c 'sleep 60 & sleep 60'` in a process group of its own: a stand-in for a package's
/// service (two processes, one of them not a child of the test).
struct Victim {
    child: Child,
    pgid: i32,
    /// Every process of the group once both sleeps run (the shell may or may not exec the
    /// last one).
    members: Vec<i32>,
}

impl Victim {
    fn start() -> Victim {
        let child = Command::new("sh")
            .args(["-c", "sleep 60 & sleep 60"])
            .process_group(0)
            .spawn()
            .expect("sh");
        let pgid = child.id() as i32;
        let mut victim = Victim {
            child,
            pgid,
            members: Vec::new(),
        };
        assert!(
            wait_until(Duration::from_secs(5), || {
                let members = live_members(pgid);
                members.iter().filter(|(_, name)| name == "sleep").count() == 2
            }),
            "victim group {pgid} did not start two sleeps"
        );
        victim.members = live_members(pgid).into_iter().map(|(pid, _)| pid).collect();
        victim
    }

    /// Every process of the group is still alive.
    fn alive(&self) -> bool {
        let live: Vec<i32> = live_members(self.pgid)
            .into_iter()
            .map(|(pid, _)| pid)
            .collect();
        self.members.iter().all(|pid| live.contains(pid))
    }

    /// Polls until no live process is left in the group; the time it saw that.
    fn wait_dead(&self, timeout: Duration) -> Option<BootTime> {
        let give_up = Instant::now() + timeout;
        while Instant::now() < give_up {
            if live_members(self.pgid).is_empty() {
                return Some(BootTime::now());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        None
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        // SAFETY: kill(2) of the process group this test created.
        unsafe { libc::kill(-self.pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let give_up = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= give_up {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Asserts the group died no earlier than the guard's fire time and by `deadline + BOUND` (the
/// guard's own record) and `deadline + BOUND + OBSERVE_SLACK` (seen from here).
fn assert_died_at_deadline(victim: &Victim, deadline: BootTime, fence_started: BootTime) {
    let lead = GuardConfig::default().lead;
    let died = victim
        .wait_dead(Duration::from_secs(3))
        .expect("the registered group was never killed");
    eprintln!(
        "deadline {deadline}: fence started {:+.1} ms, death seen {:+.1} ms",
        fence_started.as_nanos() as f64 / 1e6 - deadline.as_nanos() as f64 / 1e6,
        died.as_nanos() as f64 / 1e6 - deadline.as_nanos() as f64 / 1e6,
    );
    assert!(
        fence_started >= deadline.saturating_sub(lead),
        "fenced {:.1} ms before deadline - lead",
        ms(deadline.saturating_sub(lead).duration_since(fence_started))
    );
    assert!(
        fence_started <= deadline.saturating_add(BOUND),
        "fence started {:.1} ms after the deadline",
        ms(fence_started.duration_since(deadline))
    );
    assert!(
        died <= deadline.saturating_add(BOUND + OBSERVE_SLACK),
        "group seen dead {:.1} ms after the deadline",
        ms(died.duration_since(deadline))
    );
}

fn wait_fence(guard: &mut GuardHandle) -> halcyon_guard::FenceSummary {
    let give_up = Instant::now() + Duration::from_secs(3);
    loop {
        if let Health::Fenced(fence) = guard.health(Duration::from_secs(10)) {
            return fence;
        }
        assert!(Instant::now() < give_up, "no fence event");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn registered_group_lives_while_extended_and_dies_at_the_deadline() {
    let mut guard = spawn_guard();
    eprintln!("guard: {}", guard.ready().line);
    let victim = Victim::start();
    ok(&mut guard, Request::Extend(deadline_from_now(LEASE)));
    assert_eq!(
        ok(&mut guard, Request::RegisterGroup(victim.pgid)),
        format!("register_group {}", victim.pgid)
    );
    // About a second of extensions every 100 ms: the group must survive all of it.
    let mut deadline = BootTime::now();
    for _ in 0..10 {
        std::thread::sleep(RENEW);
        assert!(victim.alive(), "killed while the lease was being extended");
        deadline = deadline_from_now(LEASE);
        ok(&mut guard, Request::Extend(deadline));
    }
    assert!(victim.alive());
    assert_eq!(guard.health(Duration::from_secs(1)), Health::Ok);
    // Extensions stop.
    let fence = wait_fence(&mut guard);
    assert_eq!(fence.reason, "expired");
    assert_eq!(fence.deadline, deadline);
    assert_eq!((fence.groups_killed, fence.groups_failed), (1, 0));
    assert_died_at_deadline(&victim, deadline, fence.started);
    // Fenced: registrations are refused until a new extension.
    let other = Victim::start();
    match guard.call(Request::RegisterGroup(other.pgid), REPLY) {
        Err(GuardError::Refused { code, .. }) => assert_eq!(code, "fenced"),
        other => panic!("registration after a fence: {other:?}"),
    }
    assert_eq!(guard.take_fences().len(), 1);
    ok(
        &mut guard,
        Request::Extend(deadline_from_now(Duration::from_secs(30))),
    );
    ok(&mut guard, Request::RegisterGroup(other.pgid));
    ok(&mut guard, Request::Release);
    let status = guard.shutdown(REPLY).expect("clean shutdown");
    assert!(status.success());
    assert!(other.alive(), "released group killed on shutdown");
}

#[test]
fn unregistered_groups_are_untouched_and_release_makes_expiry_a_no_op() {
    let mut guard = spawn_guard();
    let kept = Victim::start();
    let killed = Victim::start();
    let deadline = deadline_from_now(LEASE);
    ok(&mut guard, Request::Extend(deadline));
    ok(&mut guard, Request::RegisterGroup(kept.pgid));
    ok(&mut guard, Request::RegisterGroup(killed.pgid));
    assert_eq!(
        ok(&mut guard, Request::UnregisterGroup(kept.pgid)),
        format!("unregister_group {} removed", kept.pgid)
    );
    let fence = wait_fence(&mut guard);
    assert_eq!(fence.groups_killed, 1);
    assert_died_at_deadline(&killed, deadline, fence.started);
    std::thread::sleep(Duration::from_millis(100));
    assert!(kept.alive(), "an unregistered group was killed");
    guard.take_fences();

    // release: the daemon halted everything itself; the lease then runs out with no effect.
    let released = Victim::start();
    let deadline = deadline_from_now(LEASE);
    ok(&mut guard, Request::Extend(deadline));
    ok(&mut guard, Request::RegisterGroup(released.pgid));
    assert_eq!(
        ok(&mut guard, Request::Release),
        "release groups=1 addresses=0"
    );
    std::thread::sleep(LEASE + Duration::from_millis(200));
    assert!(released.alive(), "killed after release");
    let status = ok(&mut guard, Request::Status);
    assert!(
        status.contains("state=idle") && status.contains("fences=1"),
        "{status}"
    );
    assert_eq!(guard.health(Duration::from_secs(1)), Health::Ok);
}

#[test]
fn a_guard_paused_itself_fences_on_resume_before_reading_queued_extensions() {
    let mut guard = spawn_guard();
    let victim = Victim::start();
    ok(&mut guard, Request::Extend(deadline_from_now(LEASE)));
    ok(&mut guard, Request::RegisterGroup(victim.pgid));
    let pid = guard.pid() as i32;
    // SAFETY: kill(2) of the guard process this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    // The "daemon" keeps extending (long leases, so a guard that applied them before looking
    // at the clock would keep the group alive for seconds); the guard cannot read them.
    let mut tickets = Vec::new();
    for _ in 0..6 {
        std::thread::sleep(RENEW);
        let deadline = deadline_from_now(Duration::from_secs(3));
        tickets.push(guard.extend(deadline).expect("pipe has room"));
    }
    assert!(
        victim.alive(),
        "nothing can kill while the guard is stopped"
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let resumed = BootTime::now();
    let died = victim
        .wait_dead(Duration::from_secs(1))
        .expect("queued extensions hid the deadline that passed during the pause");
    eprintln!(
        "group seen dead {:.1} ms after the guard resumed",
        ms(died.duration_since(resumed))
    );
    assert!(died.duration_since(resumed) <= BOUND + OBSERVE_SLACK);
    let fence = wait_fence(&mut guard);
    assert_eq!(fence.reason, "expired");
    let mut rearmed = false;
    for ticket in tickets {
        // Queued extensions are read after the fence: they arm the guard again, with nothing
        // registered (the daemon learns of the fence from the event before their replies).
        match guard.wait(ticket, REPLY) {
            Ok(_) => rearmed = true,
            Err(GuardError::Refused { code, .. }) if code == "expired" => {}
            Err(error) => panic!("queued extension: {error}"),
        }
    }
    assert!(rearmed, "the last queued extension was still ahead");
    let status = ok(&mut guard, Request::Status);
    assert!(
        status.contains("state=armed") && status.contains("groups=0"),
        "{status}"
    );
    ok(&mut guard, Request::Release);
}

// --- The pause and EOF cases: a helper process plays the daemon. -----------------------

const HELPER_ENV: &str = "HALCYON_GUARD_TEST_HELPER_PGID";
const HELPER_LEASE_ENV: &str = "HALCYON_GUARD_TEST_HELPER_LEASE_MS";

/// Not a test: the body of the helper "daemon" (runs only with the environment variable set).
#[test]
#[ignore = "helper process of the pause and EOF tests"]
fn helper_daemon() {
    let Ok(pgid) = std::env::var(HELPER_ENV) else {
        return;
    };
    let pgid: i32 = pgid.parse().expect("pgid");
    let lease = Duration::from_millis(
        std::env::var(HELPER_LEASE_ENV)
            .expect("lease")
            .parse()
            .expect("lease ms"),
    );
    let mut guard = spawn_guard();
    let say = |line: String| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "HELPER {line}");
        let _ = out.flush();
    };
    say(format!("guard_pid={}", guard.pid()));
    let deadline = deadline_from_now(lease);
    ok(&mut guard, Request::Extend(deadline));
    ok(&mut guard, Request::RegisterGroup(pgid));
    say(format!("registered {deadline}"));
    for _ in 0..300 {
        std::thread::sleep(RENEW);
        let deadline = deadline_from_now(lease);
        match guard.call(Request::Extend(deadline), REPLY) {
            Ok(_) => say(format!("extended {deadline}")),
            Err(error) => say(format!("extend_failed {error}")),
        }
        // After an acknowledgement, health() has seen every fence that happened before the
        // guard applied that request.
        match guard.health(Duration::from_secs(1)) {
            Health::Ok => {}
            Health::Fenced(fence) => {
                say(format!(
                    "fenced reason={} groups_killed={}",
                    fence.reason, fence.groups_killed
                ));
                return;
            }
            other => {
                say(format!("unhealthy {other:?}"));
                return;
            }
        }
    }
}

/// The helper daemon process, in a process group of its own; killed and reaped on drop.
struct Helper {
    child: Child,
    lines: mpsc::Receiver<String>,
    guard_pid: i32,
}

impl Helper {
    fn start(pgid: i32, lease: Duration) -> Helper {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--ignored",
                "--exact",
                "helper_daemon",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_ENV, pgid.to_string())
            .env(HELPER_LEASE_ENV, lease.as_millis().to_string())
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("helper");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // The harness may print "test helper_daemon ... " before the first line.
                if let Some(at) = line.find("HELPER ")
                    && sender.send(line[at + 7..].to_string()).is_err()
                {
                    break;
                }
            }
        });
        let mut helper = Helper {
            child,
            lines,
            guard_pid: 0,
        };
        let first = helper.next_line(Duration::from_secs(10));
        helper.guard_pid = first
            .strip_prefix("guard_pid=")
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("helper said {first:?}"));
        let registered = helper.next_line(Duration::from_secs(5));
        assert!(registered.starts_with("registered "), "{registered}");
        helper
    }

    fn next_line(&self, timeout: Duration) -> String {
        self.lines
            .recv_timeout(timeout)
            .expect("a line from the helper daemon")
    }

    fn pgid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Signals the helper's whole process group (the guard has a group of its own).
    fn signal_group(&self, signal: libc::c_int) {
        // SAFETY: kill(2) of the process group of the helper this test started.
        assert_eq!(unsafe { libc::kill(-self.pgid(), signal) }, 0);
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // SAFETY: the helper this test started (SIGCONT first in case it is stopped).
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGKILL);
            libc::kill(self.child.id() as i32, libc::SIGCONT);
        }
        let _ = self.child.wait();
    }
}

fn deadline_of(line: &str) -> Option<BootTime> {
    let value = line
        .strip_prefix("extended ")
        .or_else(|| line.strip_prefix("registered "))?;
    value.parse().ok().map(BootTime::from_nanos)
}

#[test]
fn sigstop_of_the_daemon_does_not_stop_the_fence() {
    let victim = Victim::start();
    let helper = Helper::start(victim.pgid, LEASE);
    // Let it extend a few times, then pause the whole "daemon" (its process group).
    let mut deadline = None;
    for _ in 0..3 {
        let line = helper.next_line(Duration::from_secs(2));
        assert!(line.starts_with("extended "), "{line}");
        deadline = deadline_of(&line);
    }
    helper.signal_group(libc::SIGSTOP);
    let stopped_at = BootTime::now();
    // Every extension the helper made before it stopped; the last one is the deadline.
    while let Ok(line) = helper.lines.recv_timeout(Duration::from_millis(100)) {
        deadline = deadline_of(&line).or(deadline);
    }
    let deadline = deadline.expect("an extension before the stop");
    assert!(victim.alive(), "killed before the deadline");
    let died = victim
        .wait_dead(Duration::from_secs(3))
        .expect("the paused daemon's group was never killed");
    assert_eq!(
        process_state(helper.child.id() as i32).as_deref(),
        Some("T"),
        "the daemon must still be stopped when the guard fences"
    );
    eprintln!(
        "stopped at {:+.1} ms, death seen {:+.1} ms relative to the last deadline",
        stopped_at.as_nanos() as f64 / 1e6 - deadline.as_nanos() as f64 / 1e6,
        died.as_nanos() as f64 / 1e6 - deadline.as_nanos() as f64 / 1e6
    );
    let lead = GuardConfig::default().lead;
    assert!(
        died >= deadline.saturating_sub(lead),
        "killed before deadline - lead"
    );
    assert!(
        died <= deadline.saturating_add(BOUND + OBSERVE_SLACK),
        "group seen dead {:.1} ms after the deadline",
        ms(died.duration_since(deadline))
    );
    // The daemon resumes and learns that its packages were fenced.
    helper.signal_group(libc::SIGCONT);
    let mut report = String::new();
    let give_up = Instant::now() + Duration::from_secs(5);
    while Instant::now() < give_up {
        if let Ok(line) = helper.lines.recv_timeout(Duration::from_millis(100))
            && (line.starts_with("fenced") || line.starts_with("unhealthy"))
        {
            report = line;
            break;
        }
    }
    assert_eq!(report, "fenced reason=expired groups_killed=1");
}

#[test]
fn eof_on_the_pipe_kills_registered_groups_at_once() {
    let victim = Victim::start();
    // A long lease: only the EOF can explain a quick kill.
    let helper = Helper::start(victim.pgid, Duration::from_secs(30));
    let line = helper.next_line(Duration::from_secs(2));
    assert!(line.starts_with("extended "), "{line}");
    let guard_pid = helper.guard_pid;
    let killed_at = BootTime::now();
    helper.signal_group(libc::SIGKILL);
    let died = victim
        .wait_dead(Duration::from_secs(3))
        .expect("group not killed after the daemon died");
    let after = died.duration_since(killed_at);
    eprintln!(
        "group seen dead {:.1} ms after the daemon was killed",
        ms(after)
    );
    assert!(after <= BOUND + OBSERVE_SLACK, "{:.1} ms", ms(after));
    // The guard exits once it has fenced (nobody can talk to it any more).
    assert!(
        wait_until(Duration::from_secs(3), || {
            matches!(process_state(guard_pid).as_deref(), None | Some("Z" | "X"))
        }),
        "the guard outlived its daemon"
    );
}

// --- Protocol errors over the real pipe. -----------------------------------------------

#[test]
fn protocol_errors_are_precise_and_do_not_crash_the_guard() {
    let mut child = guard_command()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("guard");
    let mut input = child.stdin.take().unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    output.read_line(&mut line).unwrap();
    assert!(line.starts_with("event ready pid="), "{line}");

    let mut requests: Vec<u8> = Vec::new();
    requests.extend_from_slice(b"\n");
    requests.extend_from_slice(b"fence\n");
    requests.extend_from_slice(b"extend\n");
    requests.extend_from_slice(b"extend 12ms\n");
    requests.extend_from_slice(b"register_group 1\n");
    requests.extend_from_slice(b"register_group 42\n");
    requests.extend_from_slice(b"register_address 2 198.18.5.10\n");
    requests.extend_from_slice(b"register_address 2 198.18.5.10/24 extra\n");
    requests.extend_from_slice(b"status \xc3\xa9\n");
    requests.extend_from_slice(&[b'x'; 1000]);
    requests.extend_from_slice(b"\n");
    requests.extend_from_slice(b"status\n");
    let expected = [
        "err parse empty line",
        "err parse unknown command \"fence\" (expected extend, register_group, unregister_group, register_address, unregister_address, release or status)",
        "err parse extend: missing argument DEADLINE",
        "err parse extend: DEADLINE \"12ms\" is not a decimal number",
        "err parse register_group: PGID 1 is out of range (expected a process group id from 2 to 2147483647)",
        "err not_armed register_group 42",
        "err parse register_address: missing argument /PREFIX after the address",
        "err parse register_address: unexpected extra argument \"extra\"",
        "err parse line is not printable ASCII text",
        "err parse line longer than 255 bytes",
    ];
    // Split the bytes across writes at awkward places: lines are reassembled.
    for chunk in requests.chunks(7) {
        input.write_all(chunk).unwrap();
        input.flush().unwrap();
    }
    for want in expected {
        line.clear();
        output.read_line(&mut line).unwrap();
        assert_eq!(line.trim_end(), want);
    }
    line.clear();
    output.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("ok status state=idle deadline=0 now="),
        "{line}"
    );
    // Still alive and serving.
    assert!(child.try_wait().unwrap().is_none());
    drop(input);
    let mut rest = String::new();
    output.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "");
    assert!(child.wait().unwrap().success());
}

// --- Addresses (root only): a network namespace of this test's own. ---------------------

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn ip(args: &[&str]) -> Result<String, String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// A named network namespace, deleted on drop (also when the test fails).
struct Netns {
    name: String,
}

impl Netns {
    fn create(name: String) -> Netns {
        let _ = ip(&["netns", "del", &name]); // a leftover of a killed earlier run
        ip(&["netns", "add", &name]).expect("create namespace");
        Netns { name }
    }

    fn ip(&self, args: &[&str]) -> Result<String, String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// The index of `interface` in the namespace (`halcyon_netlink::interface_index` on a
    /// thread that entered it: setns(2) changes only the calling thread).
    fn interface_index(&self, interface: &str) -> u32 {
        let path = format!("/run/netns/{}", self.name);
        let interface = interface.to_owned();
        std::thread::spawn(move || {
            let namespace = fs::File::open(&path).expect("netns file");
            // SAFETY: setns(2) on a descriptor kept open by `namespace`; this thread only.
            let entered = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
            halcyon_netlink::interface_index(&interface).expect("interface index")
        })
        .join()
        .expect("thread in the namespace")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(error) = ip(&["netns", "del", &self.name]) {
            eprintln!("cleanup: {error}");
        }
    }
}

#[test]
fn expiry_deletes_registered_addresses_in_the_guards_namespace() {
    if !is_root() || ip(&["-V"]).is_err() {
        eprintln!("SKIPPED expiry_deletes_registered_addresses: needs root and iproute2");
        return;
    }
    let netns = Netns::create(format!("hg{}", std::process::id()));
    let interface = match netns
        .ip(&["link", "add", "hgd0", "type", "dummy"])
        .and_then(|_| netns.ip(&["link", "set", "hgd0", "up"]))
    {
        Ok(_) => "hgd0",
        Err(error) => {
            eprintln!("no dummy interface ({error}); using lo");
            netns.ip(&["link", "set", "lo", "up"]).expect("lo up");
            "lo"
        }
    };
    // The node's own address first (the primary of the subnet), the relocatable one second:
    // deleting a primary IPv4 address also deletes the secondaries of its subnet (unless
    // promote_secondaries is set), so relocatable addresses must not be primaries.
    netns
        .ip(&["addr", "add", "198.18.5.11/24", "dev", interface])
        .expect("add the node's fixed address");
    netns
        .ip(&["addr", "add", "198.18.5.10/24", "dev", interface])
        .expect("add the relocatable address");
    let index = netns.interface_index(interface);

    // The guard runs inside the namespace (as the daemon's guard runs in the daemon's).
    let namespace = fs::File::open(format!("/run/netns/{}", netns.name)).expect("netns file");
    let namespace_fd = namespace.as_raw_fd();
    let mut command = guard_command();
    // SAFETY: setns(2) only, between fork and exec, on a descriptor kept open by `namespace`.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(namespace_fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut guard = GuardHandle::spawn(command).expect("guard in the namespace");
    drop(namespace);
    assert!(guard.ready().netlink, "{}", guard.ready().line);
    let address = Address {
        interface_index: index,
        address: "198.18.5.10".parse().unwrap(),
        prefix_length: 24,
    };
    let deadline = deadline_from_now(LEASE);
    ok(&mut guard, Request::Extend(deadline));
    ok(&mut guard, Request::RegisterAddress(address));
    let shown = netns.ip(&["-o", "addr", "show", "dev", interface]).unwrap();
    assert!(shown.contains("198.18.5.10/24"), "{shown}");
    let fence = wait_fence(&mut guard);
    assert_eq!(
        (fence.addresses_deleted, fence.addresses_failed),
        (1, 0),
        "{}",
        fence.line
    );
    assert!(
        fence.finished <= deadline.saturating_add(BOUND),
        "{}",
        fence.line
    );
    let shown = netns.ip(&["-o", "addr", "show", "dev", interface]).unwrap();
    assert!(
        !shown.contains("198.18.5.10/"),
        "address still there: {shown}"
    );
    assert!(
        shown.contains("198.18.5.11/24"),
        "unregistered address removed: {shown}"
    );
    drop(guard);
}
