//! The install guide (`docs/install.md`) is tested: its marked blocks run, in order, on three
//! lab hosts (network namespaces, root only; elsewhere the test prints "skipped: needs root"
//! and passes), and what it says the reader sees is asserted.
//!
//! - The package: `$HALCYON_DEB`, else the newest `target/debian/halcyon_*.deb`, extracted
//!   with `dpkg-deb -x` into a root directory per host; when no package was built (CI builds
//!   none), the same layout from the debug binary and `packaging/` (the assets of
//!   `[package.metadata.deb]`). `/var/lib/halcyon` is made as the postinst makes it.
//! - The lab hosts share this machine's file system, so the guide's `/etc/halcyon`,
//!   `/etc/default/halcyon`, `/var/lib/halcyon` and `/usr/bin/halcyon` are rewritten to the
//!   host's root directory, and the extracted `/usr/bin` comes first in `PATH`. The ports are
//!   the guide's own (7400..7402, 8080): each host has its own network namespace.
//! - Markers (HTML comments, invisible when rendered): `<!-- guide: install HOSTS -->` (the
//!   `dpkg -i` block: extraction), `<!-- guide: run HOSTS -->` (the next fenced block, run with
//!   `sh -e` on each host), `<!-- guide: expect -->` (each line of the next block must appear,
//!   whitespace collapsed, in a line of the previous command's output; the command is run again
//!   until it does or [`EXPECT_TIMEOUT`] passes), `<!-- guide: boot HOST -->` (the host is
//!   powered on again: its enabled unit starts), `<!-- guide: mounted HOST -->` (the guide's
//!   file system, [`MOUNT_POINT`], is mounted on HOST and on no other host, within
//!   [`EXPECT_TIMEOUT`]).
//! - The shared disk is a loop device over a sparse file in the lab directory, the same device
//!   on every host (as a SAN LUN is); the guide's disk names ([`DISK_NAMES`]) are rewritten to
//!   it. [`MOUNT_POINT`] is rewritten to one directory of the lab, the same on every host (the
//!   package file must be the same on every node), and each host has its own mount namespace
//!   while it is powered on (made when the lab is built and at each boot, gone at power loss,
//!   which is how a server loses its mounts): the daemon is started in it (`nsenter`, which
//!   then executes the unit's `ExecStart` in the same process) and so is every command of the
//!   guide on that host. After `systemctl stop` the namespace stays, so what the daemon left
//!   mounted stays visible. The loop device is detached when the test ends, also when it fails.
//! - `scp -rp PATH nodeN:DIR` is a copy into node N's root directory (`cp -rp`).
//! - `systemctl` is emulated from the unit file of the package: `enable --now halcyon` starts
//!   its `ExecStart` with its `Environment=` and `EnvironmentFile=` and a `NOTIFY_SOCKET`, and
//!   waits for `READY=1` (`Type=notify`) within its `TimeoutStartSec=`; `stop halcyon` sends
//!   SIGTERM to the daemon only (`KillMode=mixed`) and waits; `poweroff --force --force` is the
//!   lab's power loss (links down, every process killed, addresses and mounts gone).

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use halcyon_lab::{HostProcess, Lab, LabSpec, fault, running_as_root_or_skip};

const BIN: &str = env!("CARGO_BIN_EXE_halcyon");
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
/// How long an expectation may take to come true (the guide says "within a few seconds").
const EXPECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one command of the guide may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `systemctl stop` waits (below the unit's TimeoutStopSec, enough for one package).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const HOSTS: usize = 3;
/// The service address of the guide's package (removed at power loss, as by a reboot).
const SERVICE_ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 18, 1, 200);
const SERVICE_PREFIX: u8 = 24;
/// The guide's names for its shared disk: by label, and `node1`'s name for it (for `mkfs`).
const DISK_NAMES: [&str; 2] = ["/dev/disk/by-label/webdata", "/dev/sdb"];
/// The mount point of the guide's file system.
const MOUNT_POINT: &str = "/srv/web";
/// The size of the lab's shared disk (a sparse file).
const DISK_BYTES: u64 = 64 << 20;
/// How long a mount namespace may take to be made.
const NAMESPACE_TIMEOUT: Duration = Duration::from_secs(5);
/// The daemon's runtime directory (its API socket, `halcyon daemon --api-socket`'s default):
/// each host's mount namespace has a tmpfs of its own there, as each server has its own
/// `/run`, so the three daemons' sockets do not meet.
const RUN_DIRECTORY: &str = "/run/halcyon";

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Install(Vec<usize>),
    Run { hosts: Vec<usize>, script: String },
    Expect(Vec<String>),
    Boot(usize),
    Mounted(usize),
}

/// `node2` -> host 2.
fn host_of(word: &str) -> usize {
    word.strip_prefix("node")
        .and_then(|n| n.parse().ok())
        .filter(|n| (1..=HOSTS).contains(n))
        .unwrap_or_else(|| panic!("the guide names {word:?}; the lab has node1..node{HOSTS}"))
}

/// The guide's marked steps, in order.
fn steps(guide: &str) -> Vec<Step> {
    let lines: Vec<&str> = guide.lines().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        i += 1;
        let Some(marker) = line
            .strip_prefix("<!-- guide:")
            .and_then(|m| m.strip_suffix("-->"))
        else {
            continue;
        };
        let mut words = marker.split_whitespace();
        let kind = words.next().expect("a marker names its kind");
        let hosts: Vec<usize> = words.map(host_of).collect();
        if kind == "boot" || kind == "mounted" {
            assert_eq!(hosts.len(), 1, "{kind} names one host");
            steps.push(if kind == "boot" {
                Step::Boot(hosts[0])
            } else {
                Step::Mounted(hosts[0])
            });
            continue;
        }
        // The next fenced block is the step's body.
        while !lines[i].trim_start().starts_with("```") {
            i += 1;
        }
        i += 1;
        let mut body = Vec::new();
        while !lines[i].trim_start().starts_with("```") {
            body.push(lines[i]);
            i += 1;
        }
        i += 1;
        steps.push(match kind {
            "install" => Step::Install(hosts),
            "run" => Step::Run {
                hosts,
                script: body.join("\n") + "\n",
            },
            "expect" => Step::Expect(body.iter().map(|l| collapse(l)).collect()),
            other => panic!("unknown guide marker {other:?}"),
        });
    }
    steps
}

fn collapse(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// True when every expected line is part of some line of `output`.
fn shows(output: &str, expected: &[String]) -> bool {
    let lines: Vec<String> = output.lines().map(collapse).collect();
    expected
        .iter()
        .all(|e| lines.iter().any(|l| l.contains(e.as_str())))
}

/// The package to install, if one was built.
fn built_package() -> Option<PathBuf> {
    if let Some(deb) = std::env::var_os("HALCYON_DEB") {
        return Some(PathBuf::from(deb));
    }
    let dir = Path::new(WORKSPACE).join("target/debian");
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("halcyon_"))
                && p.extension().is_some_and(|e| e == "deb")
        })
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
}

/// Installs the package's files under `root`.
fn install(root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    if let Some(deb) = built_package() {
        let status = Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(root)
            .status()
            .expect("dpkg-deb runs");
        assert!(status.success(), "dpkg-deb -x {}", deb.display());
    } else {
        // The assets of [package.metadata.deb], from the debug build.
        let packaging = Path::new(WORKSPACE).join("packaging");
        let files: [(PathBuf, &str); 6] = [
            (PathBuf::from(BIN), "usr/bin/halcyon"),
            (
                packaging.join("systemd/halcyon.service"),
                "lib/systemd/system/halcyon.service",
            ),
            (
                packaging.join("systemd/halcyon-witness.service"),
                "lib/systemd/system/halcyon-witness.service",
            ),
            (packaging.join("default/halcyon"), "etc/default/halcyon"),
            (
                packaging.join("etc/halcyon/cluster.toml.example"),
                "etc/halcyon/cluster.toml.example",
            ),
            (
                packaging.join("etc/halcyon/packages/web.toml.example"),
                "etc/halcyon/packages/web.toml.example",
            ),
        ];
        for (from, to) in files {
            let to = root.join(to);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            if from == Path::new(BIN) {
                std::os::unix::fs::symlink(&from, &to).unwrap();
            } else {
                std::fs::copy(&from, &to)
                    .unwrap_or_else(|e| panic!("{} -> {}: {e}", from.display(), to.display()));
            }
        }
    }
    // What the postinst does.
    let state = root.join("var/lib/halcyon");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
}

/// The guide's absolute paths, inside `root`; its shared disk and mount point, the lab's.
fn rewrite(text: &str, root: &Path, disk: &SharedDisk) -> String {
    let root = root.display();
    let mut text = text
        .replace(
            "/etc/default/halcyon",
            &format!("{root}/etc/default/halcyon"),
        )
        .replace("/etc/halcyon", &format!("{root}/etc/halcyon"))
        .replace("/var/lib/halcyon", &format!("{root}/var/lib/halcyon"))
        .replace("/usr/bin/halcyon", &format!("{root}/usr/bin/halcyon"))
        .replace(MOUNT_POINT, &disk.mount_point.display().to_string());
    for name in DISK_NAMES {
        text = text.replace(name, &disk.device);
    }
    text
}

/// The lab's shared disk: a loop device over a sparse file, detached on drop (also when the
/// test fails; a device still mounted is detached by the kernel once unmounted).
struct SharedDisk {
    device: String,
    /// Where [`MOUNT_POINT`] is in the lab (canonical, as the kernel shows mount points).
    mount_point: PathBuf,
}

impl SharedDisk {
    fn attach(directory: &Path) -> SharedDisk {
        let image = directory.join("shared-disk.img");
        std::fs::File::create(&image)
            .and_then(|file| file.set_len(DISK_BYTES))
            .expect("the shared disk's image");
        let output = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image)
            .output()
            .expect("losetup runs");
        assert!(
            output.status.success(),
            "losetup --find --show {}: {}",
            image.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let device = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let directory = std::fs::canonicalize(directory).unwrap();
        let relative = MOUNT_POINT.trim_start_matches('/');
        SharedDisk {
            device,
            mount_point: directory.join(relative),
        }
    }
}

impl Drop for SharedDisk {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.device]).output();
    }
}

/// [`RUN_DIRECTORY`] on the machine running the test: made when missing (the mount point of
/// each host's own tmpfs), removed at the end when it was made here and is still empty.
struct RunDirectory {
    made: bool,
}

impl RunDirectory {
    fn make() -> RunDirectory {
        let made = !Path::new(RUN_DIRECTORY).exists();
        std::fs::create_dir_all(RUN_DIRECTORY).expect("the runtime directory");
        RunDirectory { made }
    }
}

impl Drop for RunDirectory {
    fn drop(&mut self) {
        if self.made {
            let _ = std::fs::remove_dir(RUN_DIRECTORY);
        }
    }
}

/// A mount namespace of its own (private propagation, a tmpfs of its own on
/// [`RUN_DIRECTORY`]), held open by the returned file: a helper process makes it with
/// `unshare`, mounts the tmpfs, becomes `sleep`; then the namespace is opened and the helper
/// is killed.
fn new_mount_namespace() -> std::fs::File {
    let own = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let mut helper = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount -t tmpfs -o mode=0755 halcyon-run \"$0\" && exec sleep 60")
        .arg(RUN_DIRECTORY)
        .spawn()
        .expect("unshare runs");
    let path = format!("/proc/{}/ns/mnt", helper.id());
    let comm = format!("/proc/{}/comm", helper.id());
    let deadline = Instant::now() + NAMESPACE_TIMEOUT;
    let namespace = loop {
        // `sleep` runs once the tmpfs is mounted.
        let mounted = std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() == "sleep");
        if mounted && std::fs::read_link(&path).is_ok_and(|ns| ns != own) {
            break std::fs::File::open(&path).expect("the new mount namespace");
        }
        assert!(
            Instant::now() < deadline,
            "unshare made no mount namespace within {NAMESPACE_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = helper.kill();
    let _ = helper.wait();
    namespace
}

/// The path through which another process enters the namespace held by `file`.
fn namespace_path(file: &std::fs::File) -> String {
    format!("/proc/{}/fd/{}", std::process::id(), file.as_raw_fd())
}

/// One `KEY=VALUE` setting of a unit, `Section.Key` -> values in order.
fn unit_settings(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut section = String::new();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_owned();
        } else if let Some((key, value)) = line.split_once('=') {
            out.entry(format!("{section}.{key}"))
                .or_default()
                .push(value.to_owned());
        }
    }
    out
}

fn seconds(value: &str) -> Duration {
    if let Some(m) = value.strip_suffix("min") {
        Duration::from_secs(m.parse::<u64>().unwrap() * 60)
    } else {
        Duration::from_secs(value.trim_end_matches('s').parse().unwrap())
    }
}

struct Host {
    root: PathBuf,
    /// The host's mount namespace while it is powered on.
    mounts: Option<std::fs::File>,
    daemon: Option<HostProcess>,
    starts: usize,
    /// The running daemon's notify socket, its start, and the unit's TimeoutStartSec.
    notify: Option<(UnixDatagram, Instant, Duration)>,
    /// The daemon's sd_notify message once it sent READY=1.
    ready: Option<String>,
}

/// Dropped in field order: the hosts' mount namespaces are let go, then the lab kills every
/// process (the namespaces and their mounts go with the last), then the disk is detached.
struct Guide {
    hosts: BTreeMap<usize, Host>,
    /// The last single-host command and its output, for `expect`.
    last: Option<(usize, String, String)>,
    lab: Lab,
    disk: SharedDisk,
}

impl Guide {
    fn root(&self, host: usize) -> &Path {
        &self.hosts[&host].root
    }

    fn rewrite(&self, text: &str, host: usize) -> String {
        rewrite(text, self.root(host), &self.disk)
    }

    /// `nsenter --mount=NAMESPACE --`: what runs on `host` runs in its mount namespace.
    fn in_mount_namespace(&self, host: usize) -> [String; 2] {
        let namespace = self.hosts[&host]
            .mounts
            .as_ref()
            .unwrap_or_else(|| panic!("node{host} is powered off"));
        [
            format!("--mount={}", namespace_path(namespace)),
            "--".into(),
        ]
    }

    /// Whether the guide's file system is mounted on `host` (in its mount namespace).
    fn mounted(&self, host: usize) -> bool {
        let Some(namespace) = &self.hosts[&host].mounts else {
            return false;
        };
        let output = Command::new("nsenter")
            .arg(format!("--mount={}", namespace_path(namespace)))
            .args(["--", "cat", "/proc/self/mountinfo"])
            .output()
            .expect("nsenter runs");
        assert!(output.status.success(), "nsenter: {output:?}");
        let mount_point = self.disk.mount_point.to_string_lossy();
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .any(|line| line.split(' ').nth(4) == Some(&*mount_point))
    }

    /// `<!-- guide: mounted HOST -->`: mounted there and nowhere else, within the timeout.
    fn expect_mounted_only_on(&self, host: usize) {
        let deadline = Instant::now() + EXPECT_TIMEOUT;
        loop {
            let on: Vec<usize> = (1..=HOSTS).filter(|&h| self.mounted(h)).collect();
            if on == [host] {
                eprintln!("{MOUNT_POINT} is mounted on node{host} only");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{MOUNT_POINT} is mounted on {on:?}, not on node{host} only, after \
                 {EXPECT_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn path_variable(&self, host: usize) -> String {
        format!(
            "PATH={}/usr/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            self.root(host).display()
        )
    }

    fn shell(&self, host: usize, script: &str) -> String {
        let script = self.rewrite(script, host);
        let [mount, separator] = self.in_mount_namespace(host);
        let output = self
            .lab
            .run(
                host,
                "nsenter",
                &[
                    &mount,
                    &separator,
                    "env",
                    &self.path_variable(host),
                    "sh",
                    "-ec",
                    &script,
                ],
                COMMAND_TIMEOUT,
            )
            .expect("the command runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "node{host}: `{}` failed ({}):\n{stdout}{}",
            script.trim(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        eprintln!("node{host}$ {}\n{stdout}", script.trim());
        stdout
    }

    /// `systemctl enable --now halcyon` (or a boot with the unit enabled): the unit's
    /// `ExecStart` with its environment, ready when `READY=1` arrives.
    fn start_unit(&mut self, host: usize) {
        let root = self.root(host).to_owned();
        let unit_text =
            std::fs::read_to_string(root.join("lib/systemd/system/halcyon.service")).unwrap();
        let unit = unit_settings(&unit_text);
        assert_eq!(unit["Service.Type"], ["notify"]);
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let mut environment: BTreeMap<String, String> = BTreeMap::new();
        for setting in unit.get("Service.Environment").into_iter().flatten() {
            let (key, value) = setting.split_once('=').unwrap();
            environment.insert(key.to_owned(), value.replace("%H", hostname.trim()));
        }
        for file in unit.get("Service.EnvironmentFile").into_iter().flatten() {
            let (optional, path) = match file.strip_prefix('-') {
                Some(p) => (true, p),
                None => (false, file.as_str()),
            };
            let path = self.rewrite(path, host);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    for line in text.lines().map(str::trim) {
                        if let Some((k, v)) = line.split_once('=')
                            && !line.starts_with('#')
                        {
                            environment.insert(k.to_owned(), v.to_owned());
                        }
                    }
                }
                Err(e) => assert!(optional, "EnvironmentFile {path}: {e}"),
            }
        }
        let mut exec = unit["Service.ExecStart"][0].clone();
        for (key, value) in &environment {
            exec = exec.replace(&format!("${{{key}}}"), value);
        }
        let exec = self.rewrite(&exec, host);
        let words: Vec<&str> = exec.split_whitespace().collect();
        let [mount, separator] = self.in_mount_namespace(host);
        let host_state = self.hosts.get_mut(&host).unwrap();
        host_state.starts += 1;
        let socket_path = self
            .lab
            .host_directory(host)
            .join(format!("notify-{}.sock", host_state.starts));
        let socket = UnixDatagram::bind(&socket_path).expect("the notify socket");
        socket.set_nonblocking(true).unwrap();
        let timeout = seconds(&unit["Service.TimeoutStartSec"][0]);
        let path_variable = self.path_variable(host);
        let path = path_variable.strip_prefix("PATH=").unwrap();
        let notify = socket_path.to_string_lossy().into_owned();
        let process = self
            .lab
            .spawn(
                host,
                "nsenter",
                &[&[mount.as_str(), separator.as_str()], &words[..]].concat(),
                &[("NOTIFY_SOCKET", &notify), ("PATH", path)],
            )
            .expect("the daemon starts");
        let state = self.hosts.get_mut(&host).unwrap();
        state.daemon = Some(process);
        state.ready = None;
        state.notify = Some((socket, Instant::now(), timeout));
    }

    /// `systemctl is-active halcyon`: `active` once READY=1 arrived, `activating` before;
    /// fails the test past TimeoutStartSec (systemd would fail the unit then).
    fn is_active(&mut self, host: usize) -> String {
        let log = self.lab.log_path(host);
        let state = self.hosts.get_mut(&host).unwrap();
        if state.ready.is_some() {
            return "active\n".into();
        }
        let Some((socket, started, timeout)) = &state.notify else {
            return "inactive\n".into();
        };
        let mut buffer = [0u8; 4096];
        if let Ok(n) = socket.recv(&mut buffer) {
            let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
            eprintln!(
                "node{host}: sd_notify after {:?}: {message:?}",
                started.elapsed()
            );
            assert!(message.lines().any(|l| l == "READY=1"), "{message}");
            assert!(
                message.contains("joined the cluster"),
                "a node of a cluster with a quorum reports ready once it joined: {message}"
            );
            state.ready = Some(message);
            return "active\n".into();
        }
        assert!(
            started.elapsed() < *timeout,
            "node{host}: no READY=1 within TimeoutStartSec ({timeout:?}); log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        "activating\n".into()
    }

    /// Waits until the daemon of `host` is active (ready).
    fn wait_active(&mut self, host: usize) {
        while self.is_active(host) != "active\n" {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs one line of the guide on `host`: `systemctl` and `scp` emulated, anything else in
    /// `sh`.
    fn execute(&mut self, host: usize, script: &str) -> String {
        if script.trim_start().starts_with("systemctl ") {
            self.systemctl(host, script.trim())
        } else if script.trim_start().starts_with("scp ") {
            self.scp(host, script)
        } else {
            self.shell(host, script)
        }
    }

    /// `scp -rp PATH nodeN:DIR`, one a line: `PATH` of this host copied into `DIR` of node N
    /// with its modes and owner (`cp -rp`: the lab hosts share this machine's file system).
    fn scp(&self, host: usize, script: &str) -> String {
        for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
            eprintln!("node{host}$ {line}");
            let words: Vec<&str> = line.split_whitespace().collect();
            let ["scp", "-rp", from, to] = words.as_slice() else {
                panic!("the test emulates `scp -rp PATH nodeN:DIR`, not `{line}`; teach it");
            };
            let (target, dir) = to
                .split_once(':')
                .unwrap_or_else(|| panic!("`{line}`: the target is nodeN:DIR"));
            let target = host_of(target);
            let from = self.rewrite(from, host);
            let dir = self.rewrite(dir, target);
            let status = Command::new("cp")
                .args(["-rp", &from, &dir])
                .status()
                .expect("cp runs");
            assert!(status.success(), "node{host}: `{line}` failed ({status})");
        }
        String::new()
    }

    fn systemctl(&mut self, host: usize, command: &str) -> String {
        eprintln!("node{host}$ {command}");
        match command {
            "systemctl enable --now --no-block halcyon" => self.start_unit(host),
            "systemctl enable --now halcyon" => {
                self.start_unit(host);
                self.wait_active(host);
            }
            "systemctl is-active halcyon" => return self.is_active(host),
            "systemctl stop halcyon" => {
                let daemon = self.hosts.get_mut(&host).unwrap().daemon.take();
                let daemon = daemon.expect("the daemon runs");
                // KillMode=mixed: SIGTERM to the daemon only.
                // SAFETY: kill(2) of the lab's unreaped child.
                unsafe {
                    libc::kill(daemon.pid as i32, libc::SIGTERM);
                }
                let status = self.lab.wait_exit(&daemon, STOP_TIMEOUT);
                assert!(
                    status.is_some_and(|s| s.success()),
                    "node{host}: the daemon stops cleanly on SIGTERM: {status:?}"
                );
            }
            "systemctl poweroff --force --force" => {
                fault::power_off(&self.lab, host).expect("power off");
                let state = self.hosts.get_mut(&host).unwrap();
                state.daemon = None;
                // Its mounts go with its power: nothing is left in its namespace.
                state.mounts = None;
                // A reboot loses the interface addresses.
                if self.lab.addresses(host).unwrap().contains(&SERVICE_ADDRESS) {
                    self.lab
                        .delete_address(host, 1, SERVICE_ADDRESS, SERVICE_PREFIX)
                        .expect("address removed");
                }
            }
            other => panic!("the test cannot emulate `{other}`; teach it"),
        }
        String::new()
    }
}

#[test]
fn the_install_guide_works_as_written_on_three_hosts() {
    if !running_as_root_or_skip("the_install_guide_works_as_written_on_three_hosts") {
        return;
    }
    let guide_text = std::fs::read_to_string(Path::new(WORKSPACE).join("docs/install.md")).unwrap();
    let steps = steps(&guide_text);
    assert!(
        steps.len() > 10,
        "the guide has its marked steps: {steps:?}"
    );
    eprintln!(
        "installing {}",
        built_package().map_or("the debug build's layout (no .deb built)".into(), |p| p
            .display()
            .to_string())
    );
    let lab = Lab::build(LabSpec {
        hosts: HOSTS,
        networks: 2,
        keep_directory: false,
        standby_networks: Vec::new(),
    })
    .expect("lab builds");
    let disk = SharedDisk::attach(lab.directory());
    let _run_directory = RunDirectory::make();
    eprintln!(
        "the shared disk is {}, {MOUNT_POINT} is {}",
        disk.device,
        disk.mount_point.display()
    );
    let hosts = (1..=HOSTS)
        .map(|h| {
            let host = Host {
                root: lab.host_directory(h).join("root"),
                mounts: Some(new_mount_namespace()),
                daemon: None,
                starts: 0,
                notify: None,
                ready: None,
            };
            (h, host)
        })
        .collect();
    let mut guide = Guide {
        hosts,
        last: None,
        lab,
        disk,
    };
    for step in steps {
        match step {
            Step::Install(hosts) => {
                for h in hosts {
                    install(guide.root(h).to_owned().as_path());
                }
            }
            Step::Run { hosts, script } => {
                for &h in &hosts {
                    let output = guide.execute(h, &script);
                    guide.last = Some((h, script.clone(), output));
                }
                if hosts.len() > 1 {
                    guide.last = None;
                }
            }
            Step::Expect(expected) => {
                let (host, script, mut output) = guide
                    .last
                    .clone()
                    .expect("an expect block follows a command run on one node");
                let expected: Vec<String> =
                    expected.iter().map(|e| guide.rewrite(e, host)).collect();
                let deadline = Instant::now() + EXPECT_TIMEOUT;
                while !shows(&output, &expected) {
                    assert!(
                        Instant::now() < deadline,
                        "node{host}: `{}` did not show {expected:?} within {EXPECT_TIMEOUT:?}; \
                         last output:\n{output}",
                        script.trim()
                    );
                    std::thread::sleep(Duration::from_millis(500));
                    output = guide.execute(host, &script);
                }
            }
            Step::Boot(h) => {
                fault::power_on(&guide.lab, h).expect("power on");
                guide.hosts.get_mut(&h).unwrap().mounts = Some(new_mount_namespace());
                guide.start_unit(h);
                guide.wait_active(h);
            }
            Step::Mounted(h) => guide.expect_mounted_only_on(h),
        }
    }
    // Every daemon that runs has reported ready, once it had joined.
    for h in 1..=HOSTS {
        if guide.hosts[&h].daemon.is_some() {
            guide.wait_active(h);
        }
    }
}

#[test]
fn the_guide_parser_reads_markers_blocks_and_expectations() {
    let text = "intro\n<!-- guide: run node1 node3 -->\n```sh\necho a\necho b\n```\n\
                <!-- guide: expect -->\n```text\n web   up  node1\n```\n<!-- guide: boot node2 -->\n\
                ```sh\nnot marked\n```\n<!-- guide: mounted node3 -->\n";
    assert_eq!(
        steps(text),
        [
            Step::Run {
                hosts: vec![1, 3],
                script: "echo a\necho b\n".into()
            },
            Step::Expect(vec!["web up node1".into()]),
            Step::Boot(2),
            Step::Mounted(3),
        ]
    );
    assert!(shows(
        "PACKAGE STATUS\nweb         up      node1       enabled\n",
        &["web up node1".into()]
    ));
    assert!(!shows("web up node2\n", &["web up node1".into()]));
}
