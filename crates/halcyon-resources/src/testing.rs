//! Test helpers: root detection, network namespaces, loop devices, mounts — each cleaned up by
//! a guard's Drop, also when a test fails. Names carry this process's id and a counter
//! (`hr<pid>x<n><tag>`), so nothing of another run, of a test running in parallel, or of the
//! host is touched.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Numbers the namespaces of this process: tests run in parallel threads, and two labs asking
/// for the same tag must not delete each other's namespace.
static NAMESPACES: AtomicUsize = AtomicUsize::new(0);

pub fn is_root() -> bool {
    // SAFETY: geteuid(2) has no failure mode and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// Whether process `pid` exists and is not a zombie (a killed orphan waits for init to reap
/// it, which some inits do only every few seconds).
pub fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| crate::state_and_group(&stat))
        .is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// True (after printing a visible skip line) when the test cannot run: not root.
pub fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!("skipped: needs root ({test})");
    true
}

/// Runs a setup command; panics with its output if it fails.
pub fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A network namespace of ours, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let n = NAMESPACES.fetch_add(1, Ordering::Relaxed);
        let name = format!("hr{}x{n}{tag}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip("link set lo up");
        ns
    }

    /// `ip -n NAME ARGS...` (ARGS split at blanks).
    pub fn ip(&self, args: &str) -> Output {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend(args.split_whitespace());
        run("ip", &all)
    }

    /// Runs a command inside the namespace; its output, whatever its exit status.
    pub fn exec(&self, command: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(command)
            .output()
            .expect("ip netns exec")
    }

    /// True when `ping` from this namespace reaches `address` (one packet, 1 s).
    pub fn pings(&self, address: &str) -> bool {
        self.exec(&["ping", "-c", "1", "-W", "1", address])
            .status
            .success()
    }

    /// The hardware address this namespace's neighbour table has for `address`, if any.
    pub fn neighbour(&self, address: &str) -> Option<String> {
        let out = self.exec(&["ip", "neigh", "show", address]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut words = text.split_whitespace();
        words.find(|w| *w == "lladdr")?;
        words.next().map(str::to_owned)
    }

    /// The hardware address of interface `device` in this namespace.
    pub fn mac(&self, device: &str) -> String {
        let out = self.exec(&["cat", &format!("/sys/class/net/{device}/address")]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Whether `device` in this namespace carries `address`.
    pub fn has_address(&self, device: &str, address: &str) -> bool {
        let out = self.ip(&format!("-br addr show dev {device}"));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .any(|w| w.split('/').next() == Some(address))
    }

    /// Runs `f` on a thread that has entered this namespace (sockets it opens and processes
    /// it starts live in the namespace), inside a current-thread tokio runtime.
    pub fn block_on<F, Fut>(&self, f: F) -> Fut::Output
    where
        F: FnOnce() -> Fut + Send,
        Fut: std::future::Future,
        Fut::Output: Send,
    {
        let path = PathBuf::from("/run/netns").join(&self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let file = std::fs::File::open(&path).expect("namespace file");
                    // SAFETY: setns(2) on a live descriptor; affects this thread only.
                    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime")
                        .block_on(f())
                })
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A loop device over a file, detached on drop.
pub struct LoopDevice {
    pub device: String,
}

impl LoopDevice {
    pub fn attach(image: &Path) -> Self {
        let out = run(
            "losetup",
            &["--find", "--show", image.to_str().expect("utf-8 path")],
        );
        LoopDevice {
            device: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.device]).output();
    }
}

/// Unmounts a path on drop if it is still mounted (a test that failed half-way).
pub struct UnmountOnDrop(pub PathBuf);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        let Ok(c) = std::ffi::CString::new(self.0.to_string_lossy().as_bytes()) else {
            return;
        };
        // Bounded: a path is mounted over only a few times in a test.
        for _ in 0..4 {
            // SAFETY: umount2(2) with a NUL-terminated string that lives across the call.
            if unsafe { libc::umount2(c.as_ptr(), 0) } != 0 {
                break;
            }
        }
    }
}

/// A sparse file with an ext4 file system, in `dir`.
pub fn ext4_image(dir: &Path, name: &str) -> PathBuf {
    let image = dir.join(name);
    let file = std::fs::File::create(&image).expect("image");
    file.set_len(32 << 20).expect("sparse image");
    run(
        "mkfs.ext4",
        &["-q", "-F", image.to_str().expect("utf-8 path")],
    );
    image
}
