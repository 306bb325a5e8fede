//! Shared storage (SPEC 9.6): a [`Volume`] (activate and deactivate commands, e.g. `vgchange
//! -ay vg01`) and a [`Filesystem`] (a consistency check, then mount(2); umount2(2) on release).
//!
//! One file system mounted on two hosts at once is prevented by the package lease (the daemon
//! starts a failover package on one node at a time, and a node halts its packages before its
//! lease expires): this driver cannot see other hosts. What it does check, on this node:
//! a device already mounted elsewhere is not mounted again at a second mount point, and a mount
//! point that already has something else mounted is refused. Across hosts, ext4's multiple
//! mount protection (`mkfs.ext4 -O mmp`, or `tune2fs -O mmp`) is a second line behind the
//! lease: the kernel refuses to mount a file system another host has mounted (after
//! `2 * mmp_check_interval + 1` seconds), and the driver reports that refusal.
//!
//! Unmounting a busy file system fails with the processes holding it (found by scanning
//! `/proc/*/cwd`, `root` and `fd`); the driver never unmounts lazily, because a lazily
//! unmounted file system is still written to while another node mounts it.
//!
//! mount(2) and umount2(2) are system calls without a timeout of their own (the resource's
//! `timeout` bounds the commands: activation, deactivation and the check).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use halcyon_config::{FilesystemResource, VolumeResource};

use crate::{
    BoxFuture, Health, OUTPUT_MAX, PackageEnv, Resource, ResourceError, StopMode, StopReport,
    run_command,
};

/// Most processes named when a file system is busy.
const HOLDERS_SHOWN_MAX: usize = 10;
/// Most `/proc` entries looked at when searching for holders.
const PROC_ENTRIES_MAX: usize = 1_000_000;

/// A volume activated and deactivated by commands (SPEC 9.6).
pub struct Volume {
    config: VolumeResource,
    active: bool,
}

impl Volume {
    pub fn new(config: VolumeResource) -> Self {
        Volume {
            config,
            active: false,
        }
    }
}

impl Resource for Volume {
    fn describe(&self) -> String {
        format!("volume {}", self.config.name)
    }

    fn start<'a>(&'a mut self, env: &'a PackageEnv) -> BoxFuture<'a, Result<(), ResourceError>> {
        Box::pin(async move {
            let what = format!("{} activate", self.describe());
            run_command(&what, &self.config.activate, env, self.config.timeout).await?;
            self.active = true;
            Ok(())
        })
    }

    /// A deactivation that fails or times out is an error (the volume's state is unknown).
    fn stop<'a>(
        &'a mut self,
        env: &'a PackageEnv,
        _mode: StopMode,
    ) -> BoxFuture<'a, Result<StopReport, ResourceError>> {
        Box::pin(async move {
            let what = format!("{} deactivate", self.describe());
            run_command(&what, &self.config.deactivate, env, self.config.timeout).await?;
            self.active = false;
            Ok(StopReport::default())
        })
    }

    fn check(&mut self) -> Health {
        if self.active {
            Health::Running
        } else {
            Health::Stopped
        }
    }

    fn exited(&mut self) -> BoxFuture<'_, String> {
        Box::pin(std::future::pending())
    }
}

/// One line of `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// The mounted device's major and minor numbers.
    pub device: (u32, u32),
    pub mount_point: PathBuf,
    pub fstype: String,
    /// The mount source (`/dev/sdb1`, `server:/export`, `tmpfs`).
    pub source: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && bytes.len() >= i + 4
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
            out.push(value as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text (see proc(5)); malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let separator = fields.iter().position(|f| *f == "-")?;
            let (major, minor) = fields.get(2)?.split_once(':')?;
            Some(MountEntry {
                device: (major.parse().ok()?, minor.parse().ok()?),
                mount_point: PathBuf::from(unescape(fields.get(4)?)),
                fstype: fields.get(separator + 1)?.to_string(),
                source: unescape(fields.get(separator + 2)?),
            })
        })
        .collect()
}

/// This process's mounts.
pub fn mounts() -> std::io::Result<Vec<MountEntry>> {
    Ok(parse_mountinfo(&std::fs::read_to_string(
        "/proc/self/mountinfo",
    )?))
}

/// Mount flags and file-system data from a mount option string (`ro,noatime,data=ordered`).
pub fn mount_flags(options: Option<&str>) -> (libc::c_ulong, String) {
    let mut flags: libc::c_ulong = 0;
    let mut data = Vec::new();
    for option in options.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
        match option {
            "defaults" | "rw" | "async" | "suid" | "dev" | "exec" | "atime" => {}
            "ro" => flags |= libc::MS_RDONLY,
            "nosuid" => flags |= libc::MS_NOSUID,
            "nodev" => flags |= libc::MS_NODEV,
            "noexec" => flags |= libc::MS_NOEXEC,
            "sync" => flags |= libc::MS_SYNCHRONOUS,
            "dirsync" => flags |= libc::MS_DIRSYNC,
            "noatime" => flags |= libc::MS_NOATIME,
            "nodiratime" => flags |= libc::MS_NODIRATIME,
            "relatime" => flags |= libc::MS_RELATIME,
            "strictatime" => flags |= libc::MS_STRICTATIME,
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

/// A process holding a file system busy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub command: String,
    /// `cwd`, `root` or `fd N (PATH)`.
    pub what: String,
}

fn is_under(path: &Path, mount_point: &Path) -> bool {
    path.starts_with(mount_point)
}

/// The processes with their working directory, root or an open file under `mount_point`.
pub fn holders(mount_point: &Path) -> Vec<Holder> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.take(PROC_ENTRIES_MAX).flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        let command = std::fs::read_to_string(dir.join("comm"))
            .map(|c| c.trim().to_owned())
            .unwrap_or_default();
        let mut uses = Vec::new();
        for link in ["cwd", "root"] {
            if let Ok(target) = std::fs::read_link(dir.join(link))
                && is_under(&target, mount_point)
                && !(link == "root" && mount_point == Path::new("/"))
            {
                uses.push(link.to_owned());
            }
        }
        if let Ok(fds) = std::fs::read_dir(dir.join("fd")) {
            for fd in fds.take(PROC_ENTRIES_MAX).flatten() {
                if let Ok(target) = std::fs::read_link(fd.path())
                    && is_under(&target, mount_point)
                {
                    uses.push(format!(
                        "fd {} ({})",
                        fd.file_name().to_string_lossy(),
                        target.display()
                    ));
                }
            }
        }
        if !uses.is_empty() {
            found.push(Holder {
                pid,
                command,
                what: uses.join(", "),
            });
        }
    }
    found
}

/// A file system mounted by mount(2) after a consistency check (SPEC 9.6).
pub struct Filesystem {
    config: FilesystemResource,
    mounted: bool,
}

/// The identity of a mount source: a block device's numbers, or the source text.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    Block(u32, u32),
    Named(String),
}

impl Source {
    fn of(device: &str) -> Self {
        match std::fs::metadata(device) {
            Ok(m) if m.file_type().is_block_device() => {
                let rdev = m.rdev();
                Source::Block(libc::major(rdev), libc::minor(rdev))
            }
            _ => Source::Named(device.to_owned()),
        }
    }

    fn matches(&self, entry: &MountEntry) -> bool {
        match self {
            Source::Block(major, minor) => entry.device == (*major, *minor),
            Source::Named(name) => &entry.source == name,
        }
    }
}

impl Filesystem {
    pub fn new(config: FilesystemResource) -> Self {
        Filesystem {
            config,
            mounted: false,
        }
    }

    fn what(&self) -> String {
        format!("filesystem {}", self.config.mount_point)
    }

    /// The mount point as the kernel shows it (symbolic links resolved).
    fn mount_point(&self) -> PathBuf {
        std::fs::canonicalize(&self.config.mount_point)
            .unwrap_or_else(|_| PathBuf::from(&self.config.mount_point))
    }

    fn read_mounts(&self) -> Result<Vec<MountEntry>, ResourceError> {
        mounts().map_err(|e| ResourceError::Io {
            what: self.what(),
            error: format!("reading /proc/self/mountinfo: {e}"),
        })
    }

    fn refused(&self, reason: String) -> ResourceError {
        ResourceError::Refused {
            what: self.what(),
            reason,
        }
    }

    /// Whether our device is mounted at our mount point (the last mount there counts).
    fn is_mounted(&self, mounts: &[MountEntry]) -> bool {
        let mount_point = self.mount_point();
        let source = Source::of(&self.config.device);
        mounts
            .iter()
            .rfind(|m| m.mount_point == mount_point)
            .is_some_and(|m| source.matches(m))
    }

    /// Refuses a mount that would mount the device twice or hide another mount.
    fn check_exclusive(&self, mounts: &[MountEntry]) -> Result<(), ResourceError> {
        let mount_point = self.mount_point();
        let source = Source::of(&self.config.device);
        if let Some(other) = mounts.iter().find(|m| source.matches(m)) {
            return Err(self.refused(format!(
                "{} is already mounted at {} on this node; refusing to mount it a second time \
                 at {} (across nodes, the package lease keeps a file system on one node)",
                self.config.device,
                other.mount_point.display(),
                mount_point.display()
            )));
        }
        if let Some(other) = mounts.iter().rfind(|m| m.mount_point == mount_point) {
            return Err(self.refused(format!(
                "{} already has {} ({}) mounted on it; refusing to mount {} over it",
                mount_point.display(),
                other.source,
                other.fstype,
                self.config.device
            )));
        }
        Ok(())
    }

    async fn consistency_check(&self, env: &PackageEnv) -> Result<(), ResourceError> {
        let Some(command) = &self.config.check else {
            return Ok(());
        };
        let what = format!("{} consistency check", self.what());
        match run_command(&what, command, env, self.config.timeout).await {
            Ok(_) => Ok(()),
            Err(ResourceError::Failed { status, output, .. }) => Err(self.refused(format!(
                "consistency check `{command}` exited with {status}: mount of {} refused{}",
                self.config.device,
                crate::output_suffix(tail(&output))
            ))),
            Err(ResourceError::TimedOut {
                timeout, output, ..
            }) => Err(self.refused(format!(
                "consistency check `{command}` timed out after {timeout:?} (its process group \
                 was killed): mount of {} refused{}",
                self.config.device,
                crate::output_suffix(tail(&output))
            ))),
            Err(e) => Err(e),
        }
    }

    fn mount(&self) -> Result<(), ResourceError> {
        let (flags, data) = mount_flags(self.config.options.as_deref());
        let c = |s: &[u8]| {
            CString::new(s).map_err(|_| ResourceError::Config {
                what: self.what(),
                reason: "a NUL byte in the device, mount point, type or options".to_owned(),
            })
        };
        let source = c(self.config.device.as_bytes())?;
        let target = c(self.mount_point().as_os_str().as_bytes())?;
        let fstype = c(self.config.fstype.as_bytes())?;
        let data_c = c(data.as_bytes())?;
        // SAFETY: mount(2) with NUL-terminated strings that live across the call.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                flags,
                if data.is_empty() {
                    std::ptr::null()
                } else {
                    data_c.as_ptr().cast()
                },
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EBUSY) {
                // Not mounted here (checked before): the kernel or the device refuses.
                return Err(self.refused(format!(
                    "the kernel refused to mount {}: {e}; the file system may be active on \
                     another node (ext4 multiple mount protection, see the kernel log) or the \
                     device held by another user; not mounted",
                    self.config.device
                )));
            }
            return Err(ResourceError::Io {
                what: self.what(),
                error: format!(
                    "mount of {} ({}, options \"{}\") failed: {e}",
                    self.config.device,
                    self.config.fstype,
                    self.config.options.as_deref().unwrap_or("")
                ),
            });
        }
        Ok(())
    }

    fn unmount(&self) -> Result<(), ResourceError> {
        let mount_point = self.mount_point();
        let target = CString::new(mount_point.as_os_str().as_bytes()).map_err(|_| {
            ResourceError::Config {
                what: self.what(),
                reason: "a NUL byte in the mount point".to_owned(),
            }
        })?;
        // SAFETY: umount2(2) with a NUL-terminated string that lives across the call.
        let rc = unsafe { libc::umount2(target.as_ptr(), 0) };
        if rc == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EBUSY) => {
                let holders = holders(&mount_point);
                let mut named: Vec<String> = holders
                    .iter()
                    .take(HOLDERS_SHOWN_MAX)
                    .map(|h| format!("pid {} ({}: {})", h.pid, h.command, h.what))
                    .collect();
                if holders.len() > HOLDERS_SHOWN_MAX {
                    named.push(format!("{} more", holders.len() - HOLDERS_SHOWN_MAX));
                }
                let by = if named.is_empty() {
                    "no process found holding it (a mount below it, a swap file or a kernel user?)"
                        .to_owned()
                } else {
                    format!("held by {}", named.join(", "))
                };
                Err(self.refused(format!(
                    "cannot unmount {}: busy, {by}; not unmounted lazily",
                    mount_point.display()
                )))
            }
            _ => Err(ResourceError::Io {
                what: self.what(),
                error: format!("unmount of {} failed: {e}", mount_point.display()),
            }),
        }
    }
}

/// The last [`OUTPUT_MAX`] / 4 bytes of a command's output (an error message's tail).
fn tail(output: &str) -> &str {
    let trimmed = output.trim_end();
    let mut start = trimmed.len().saturating_sub(OUTPUT_MAX / 4);
    while !trimmed.is_char_boundary(start) {
        start += 1;
    }
    &trimmed[start..]
}

impl Resource for Filesystem {
    fn describe(&self) -> String {
        self.what()
    }

    fn start<'a>(&'a mut self, env: &'a PackageEnv) -> BoxFuture<'a, Result<(), ResourceError>> {
        Box::pin(async move {
            if !Path::new(&self.config.mount_point).is_dir() {
                return Err(self.refused("the mount point is not a directory".to_owned()));
            }
            let mounts = self.read_mounts()?;
            if self.is_mounted(&mounts) {
                tracing::info!(filesystem = %self.config.mount_point, "already mounted");
                self.mounted = true;
                return Ok(());
            }
            self.check_exclusive(&mounts)?;
            self.consistency_check(env).await?;
            self.mount()?;
            self.mounted = true;
            tracing::info!(filesystem = %self.config.mount_point, device = %self.config.device, "mounted");
            Ok(())
        })
    }

    fn stop<'a>(
        &'a mut self,
        _env: &'a PackageEnv,
        _mode: StopMode,
    ) -> BoxFuture<'a, Result<StopReport, ResourceError>> {
        Box::pin(async move {
            let mounts = self.read_mounts()?;
            if self.is_mounted(&mounts) {
                self.unmount()?;
                tracing::info!(filesystem = %self.config.mount_point, "unmounted");
            }
            self.mounted = false;
            Ok(StopReport::default())
        })
    }

    fn check(&mut self) -> Health {
        let mounts = match self.read_mounts() {
            Ok(m) => m,
            Err(e) => return Health::Failed(e.to_string()),
        };
        match (self.mounted, self.is_mounted(&mounts)) {
            (_, true) => Health::Running,
            (true, false) => Health::Failed(format!(
                "{} is no longer mounted at {}",
                self.config.device, self.config.mount_point
            )),
            (false, false) => Health::Stopped,
        }
    }

    fn exited(&mut self) -> BoxFuture<'_, String> {
        Box::pin(std::future::pending())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_are_read_with_escapes() {
        let text = "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
                    37 35 0:22 / /run rw,nosuid shared:5 - tmpfs tmpfs rw\n\
                    garbage\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].device, (98, 0));
        assert_eq!(m[0].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(m[0].fstype, "ext3");
        assert_eq!(m[0].source, "/dev/root");
        assert_eq!(m[1].mount_point, PathBuf::from("/run"));
        // Optional fields may be absent.
        let m = parse_mountinfo("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n");
        assert_eq!(m[0].source, "/dev/sda1");
    }

    #[test]
    fn mount_options_become_flags_and_data() {
        let (flags, data) = mount_flags(Some("ro,noatime,data=ordered,defaults,errors=remount-ro"));
        assert_eq!(flags, libc::MS_RDONLY | libc::MS_NOATIME);
        assert_eq!(data, "data=ordered,errors=remount-ro");
        assert_eq!(mount_flags(None), (0, String::new()));
    }

    #[test]
    fn an_error_keeps_the_end_of_the_output() {
        let long = format!("{}END", "x".repeat(2000));
        assert!(tail(&long).ends_with("END"));
        assert_eq!(tail(&long).len(), OUTPUT_MAX / 4);
    }
}
