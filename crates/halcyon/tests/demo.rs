//! `halcyon demo` cannot be left behind: stopped with SIGTERM or killed with SIGKILL, nothing
//! of it remains (no process it reported or that runs in its daemons' process groups or
//! mentions its directory, no address it added on `lo`, no working directory, no pointer
//! file); a second demo on the same or overlapping ports is refused with the first's PID; a
//! killed daemon is announced with the command that restarts it, and that command works.
//!
//! Each test runs its demo on a port block from the machine-wide allocator, with
//! `XDG_RUNTIME_DIR`, `XDG_STATE_HOME` and `TMPDIR` in a directory of its own; dropping the
//! [`RunningDemo`] kills whatever is left, passing or failing.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use halcyon_testkit::{PortBlock, http, ports};

const BIN: &str = env!("CARGO_BIN_EXE_halcyon");
/// Ports a demo uses from its base port (heartbeats .. HTTP service at +80), plus one for the
/// overlap check.
const DEMO_PORTS: u16 = 82;
/// How long the demo may take to print what to try (it waits up to 30 s for the package).
const READY_TIMEOUT: Duration = Duration::from_secs(45);
/// How long the demo and its keeper may take to clean up (daemons get 10 s to halt).
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(25);
/// How long a restarted node may take to rejoin.
const REJOIN_TIMEOUT: Duration = Duration::from_secs(20);

/// What the demo publishes in its pointer file (the fields the tests read).
#[derive(Debug, Clone, serde::Deserialize)]
struct Pointer {
    pid: u32,
    keeper: u32,
    port: u16,
    directory: PathBuf,
    logs: PathBuf,
    address: Option<Ipv4Addr>,
    added: Vec<Ipv4Addr>,
    daemons: BTreeMap<String, u32>,
}

struct RunningDemo {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    home: tempfile::TempDir,
    ports: PortBlock,
    /// Every PID the demo reported, for the final check and the cleanup on failure.
    pids: Vec<u32>,
    pointer: Option<Pointer>,
}

fn demo_command(home: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .env("XDG_RUNTIME_DIR", home)
        .env("XDG_STATE_HOME", home.join("state"))
        .env("TMPDIR", home)
        .env("HOME", home);
    command
}

fn loopback_addresses() -> Vec<IpAddr> {
    (1..=3)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
        .collect()
}

impl RunningDemo {
    fn start() -> RunningDemo {
        let ports = ports::allocate(DEMO_PORTS, loopback_addresses()).expect("a port block");
        let home = tempfile::tempdir().expect("temporary directory");
        let mut child = demo_command(home.path())
            .args(["demo", "--port", &ports.base().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("halcyon demo starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                eprintln!("demo> {line}");
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut demo = RunningDemo {
            pids: vec![child.id()],
            child,
            lines,
            seen: Vec::new(),
            home,
            ports,
            pointer: None,
        };
        demo.wait_line(|l| l.starts_with("Ctrl-C stops everything"), READY_TIMEOUT);
        let pointer = demo.pointer();
        assert_eq!(pointer.pid, demo.child.id());
        demo.pids.push(pointer.keeper);
        demo.pids.extend(pointer.daemons.values().copied());
        for (node, pid) in &pointer.daemons {
            assert!(
                demo.seen
                    .iter()
                    .any(|l| l == &format!("started {node} (pid {pid})")),
                "the demo reported {node}'s pid {pid}"
            );
        }
        // The status page, on a line of its own, answers.
        let page = format!("status page: https://127.0.0.1:{}/", demo.port() + 2);
        assert!(
            demo.seen
                .iter()
                .any(|l| l.starts_with(&format!("{page}#token=hct_"))),
            "{page:?} with its token in {:#?}",
            demo.seen
        );
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", demo.port() + 2).parse().unwrap();
        // Over HTTPS with the demo's own CA.
        let tls =
            halcyon_testkit::http::tls_with_ca_file(&pointer.directory.join("config/pki/ca.crt"))
                .expect("the demo's CA");
        let r = halcyon_testkit::http::request_tls(
            Some(&tls),
            addr,
            "GET",
            "/",
            None,
            None,
            Duration::from_secs(10),
        )
        .expect("the status page answers");
        assert!(
            r.status == 200 && r.body.contains("v1/events/stream"),
            "{r:?}"
        );
        demo.pointer = Some(pointer);
        demo
    }

    fn port(&self) -> u16 {
        self.ports.base()
    }

    fn pointer_path(&self) -> PathBuf {
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        self.home
            .path()
            .join(format!("halcyon-demo-{uid}-{}.json", self.port()))
    }

    fn pointer(&self) -> Pointer {
        let text = std::fs::read_to_string(self.pointer_path()).expect("the pointer file");
        serde_json::from_str(&text).expect("the pointer file is JSON")
    }

    /// Waits for a line of the demo's output matching `predicate`; returns it.
    fn wait_line(&mut self, predicate: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if predicate(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no matching line from the demo within {timeout:?}; it printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// Asserts that nothing of the demo remains once it and its keeper are done.
    fn assert_nothing_left(&mut self) {
        let pointer = self
            .pointer
            .clone()
            .expect("the demo published its pointer");
        let deadline = Instant::now() + CLEANUP_TIMEOUT;
        while Instant::now() < deadline && self.pids.iter().any(|&p| alive(p)) {
            let _ = self.child.try_wait();
            std::thread::sleep(Duration::from_millis(100));
        }
        for &pid in &self.pids {
            assert!(!alive(pid), "process {pid} of the demo still runs");
        }
        for &pid in pointer.daemons.values() {
            assert!(
                group_members(pid).is_empty(),
                "the process group of daemon {pid} still has {:?}",
                group_members(pid)
            );
        }
        let directory = pointer.directory.to_string_lossy().into_owned();
        let service = format!(":{} --name", self.port() + 80);
        let strays = processes_mentioning(&[&directory, &service]);
        assert!(
            strays.is_empty(),
            "processes of the demo remain: {strays:?}"
        );
        assert!(
            !pointer.directory.exists(),
            "{} remains",
            pointer.directory.display()
        );
        assert!(!self.pointer_path().exists(), "the pointer file remains");
        let on_lo = lo_addresses();
        for address in pointer.address.iter().chain(&pointer.added) {
            assert!(
                !on_lo.contains(address),
                "{address} remains on lo: {on_lo:?}"
            );
        }
        assert!(
            pointer.logs.join("node1.log").is_file(),
            "the logs are kept in {}",
            pointer.logs.display()
        );
        let http = SocketAddr::from((
            pointer.address.unwrap_or(Ipv4Addr::LOCALHOST),
            pointer.port + 80,
        ));
        assert!(
            std::net::TcpStream::connect_timeout(&http, Duration::from_millis(500)).is_err(),
            "the demo's service still answers on {http}"
        );
    }
}

impl Drop for RunningDemo {
    fn drop(&mut self) {
        // Passing or failing: nothing may outlive the test.
        for &pid in &self.pids {
            if alive(pid) {
                // SAFETY: kill(2); the PIDs are this test's demo's (checked alive).
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
            }
        }
        if let Some(pointer) = &self.pointer {
            for &pid in pointer.daemons.values() {
                if pid > 1 && !group_members(pid).is_empty() {
                    // SAFETY: kill(2) of the daemon's own process group.
                    unsafe {
                        libc::kill(-(pid as i32), libc::SIGKILL);
                    }
                }
            }
            let _ = std::fs::remove_dir_all(&pointer.directory);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// The live processes of process group `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit_once(')').is_some_and(|(_, rest)| {
                    let fields: Vec<&str> = rest.split_whitespace().collect();
                    // state ppid pgrp ...
                    fields.len() > 2
                        && !fields[0].starts_with(['Z', 'X'])
                        && fields[2] == pgid.to_string()
                })
            })
        })
        .collect()
}

/// Processes whose command line contains any of `needles`.
fn processes_mentioning(needles: &[&str]) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| alive(pid))
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
            needles
                .iter()
                .any(|n| line.contains(n))
                .then_some((pid, line))
        })
        .collect()
}

/// The IPv4 addresses on `lo` (`ip -4 -o address show dev lo`).
fn lo_addresses() -> Vec<Ipv4Addr> {
    let output = Command::new("ip")
        .args(["-4", "-o", "address", "show", "dev", "lo"])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|&w| w == "inet")?;
            words.next()?.split('/').next()?.parse().ok()
        })
        .collect()
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn sigterm_stops_everything_and_a_second_demo_on_its_ports_is_refused_with_its_pid() {
    let mut demo = RunningDemo::start();
    let pointer = demo.pointer.clone().unwrap();
    if is_root() && pointer.address.is_some() {
        assert!(lo_addresses().contains(&Ipv4Addr::new(127, 0, 0, 100)));
        let answer = http::get(
            SocketAddr::from(([127, 0, 0, 100], demo.port() + 80)),
            "/",
            Duration::from_secs(2),
        )
        .expect("the package's address answers");
        assert!(answer.body.starts_with("hello from node"), "{answer:?}");
    }

    for port in [demo.port(), demo.port() + 1] {
        let second = demo_command(demo.home.path())
            .args(["demo", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .output()
            .expect("a second demo runs");
        let stderr = String::from_utf8_lossy(&second.stderr);
        assert_eq!(
            second.status.code(),
            Some(1),
            "second demo on {port}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("(pid {})", pointer.pid)),
            "the refusal names the first demo's pid {}: {stderr}",
            pointer.pid
        );
    }
    // The refused demos changed nothing: the first still answers `halcyon status`.
    let status = demo_command(demo.home.path())
        .args(["status"])
        .output()
        .expect("halcyon status runs");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );

    demo.signal(libc::SIGTERM);
    demo.wait_line(|l| l.starts_with("logs kept in "), CLEANUP_TIMEOUT);
    let exit = demo.child.wait().expect("the demo exits");
    assert!(exit.success(), "the demo exits 0 after SIGTERM: {exit}");
    demo.assert_nothing_left();
}

#[test]
fn a_killed_daemon_is_announced_with_a_restart_command_that_works_and_sigkill_leaves_nothing() {
    let mut demo = RunningDemo::start();
    let pointer = demo.pointer.clone().unwrap();
    let victim = pointer.daemons["node2"];
    // SAFETY: kill(2) of the demo's daemon, which the demo reported.
    assert_eq!(unsafe { libc::kill(victim as i32, libc::SIGKILL) }, 0);
    demo.wait_line(
        |l| l.starts_with(&format!("node2 (pid {victim}) died")),
        Duration::from_secs(10),
    );
    let command = demo.wait_line(|l| l.trim_start().starts_with(BIN), Duration::from_secs(2));
    let words: Vec<&str> = command.split_whitespace().collect();
    let port = demo.port().to_string();
    assert_eq!(
        words[1..],
        ["demo", "--port", port.as_str(), "--restart", "node2"]
    );
    let restart = demo_command(demo.home.path())
        .args(&words[1..])
        .output()
        .expect("the printed command runs");
    let stdout = String::from_utf8_lossy(&restart.stdout);
    assert!(
        restart.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&restart.stderr)
    );
    let restarted = demo.pointer().daemons["node2"];
    assert_ne!(restarted, victim);
    assert!(alive(restarted));
    assert_eq!(
        stdout.trim(),
        format!("node2 restarted (pid {restarted}); it rejoins the cluster")
    );
    demo.pids.push(restarted);
    demo.pointer = Some(demo.pointer());

    // The restarted node rejoins: a new incarnation, a member again.
    let api = SocketAddr::from(([127, 0, 0, 1], demo.port() + 2));
    let deadline = Instant::now() + REJOIN_TIMEOUT;
    loop {
        // The demo's admin token, as the CLI finds it (`pki` in its configuration).
        let token = halcyon_pki::read_admin_token(&pointer.directory.join("config/pki"))
            .expect("the demo's admin token is readable")
            .expect("the demo writes its admin token");
        let tls = http::tls_with_ca_file(&pointer.directory.join("config/pki/ca.crt"))
            .expect("the demo's CA");
        let node2 = http::request_tls(
            Some(&tls),
            api,
            "GET",
            "/v1/status",
            Some(&token),
            None,
            Duration::from_secs(2),
        )
        .ok()
        .and_then(|r| r.json())
        .and_then(|v| {
            v["nodes"]
                .as_array()?
                .iter()
                .find(|n| n["name"] == "node2")
                .cloned()
        });
        if let Some(n) = &node2
            && n["member"] == true
            && n["incarnation"].as_u64() == Some(2)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node2 did not rejoin within {REJOIN_TIMEOUT:?}: {node2:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Asking again while it runs is refused.
    let again = demo_command(demo.home.path())
        .args(&words[1..])
        .output()
        .expect("runs");
    assert_eq!(again.status.code(), Some(1));

    demo.signal(libc::SIGKILL);
    let exit = demo.child.wait().expect("the demo is reaped");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&exit),
        Some(libc::SIGKILL)
    );
    demo.assert_nothing_left();
}
