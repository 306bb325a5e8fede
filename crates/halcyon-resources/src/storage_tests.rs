//! Volumes (commands) and file systems: a file-backed ext4 image on a loop device (root).

use std::path::Path;
use std::time::Duration;

use halcyon_config::{FilesystemResource, VolumeResource};

use crate::storage::{Filesystem, Volume, mounts};
use crate::testing::{LoopDevice, UnmountOnDrop, ext4_image, run, skip_unless_root};
use crate::{Health, PackageEnv, Resource, ResourceError, StopMode};

fn env() -> PackageEnv {
    PackageEnv {
        cluster: "c".into(),
        package: "p".into(),
        node: "n".into(),
    }
}

fn filesystem(device: &str, mount_point: &Path, check: Option<&str>) -> Filesystem {
    Filesystem::new(FilesystemResource {
        device: device.to_owned(),
        mount_point: mount_point.to_str().unwrap().to_owned(),
        fstype: "ext4".to_owned(),
        options: Some("noatime".to_owned()),
        check: check.map(str::to_owned),
        timeout: Duration::from_secs(30),
    })
}

fn mounted_at(mount_point: &Path) -> bool {
    let mount_point = std::fs::canonicalize(mount_point).unwrap();
    mounts()
        .unwrap()
        .iter()
        .any(|m| m.mount_point == mount_point)
}

/// A temporary directory with an ext4 image on a loop device and two mount points. Fields
/// drop in order: mounts first, then the loop device, then the directory.
struct Disk {
    _unmount: [UnmountOnDrop; 2],
    device: LoopDevice,
    dir: tempfile::TempDir,
}

impl Disk {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let image = ext4_image(dir.path(), "disk.img");
        let device = LoopDevice::attach(&image);
        let m1 = dir.path().join("m1");
        let m2 = dir.path().join("m2");
        std::fs::create_dir(&m1).unwrap();
        std::fs::create_dir(&m2).unwrap();
        Disk {
            _unmount: [UnmountOnDrop(m1), UnmountOnDrop(m2)],
            device,
            dir,
        }
    }

    fn mount_point(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

#[tokio::test]
async fn a_filesystem_is_checked_mounted_and_unmounted() {
    if skip_unless_root("a_filesystem_is_checked_mounted_and_unmounted") {
        return;
    }
    let disk = Disk::new();
    let m1 = disk.mount_point("m1");
    let check = format!("e2fsck -p {}", disk.device.device);
    let mut fs = filesystem(&disk.device.device, &m1, Some(&check));
    assert_eq!(fs.check(), Health::Stopped);
    fs.start(&env()).await.unwrap();
    assert!(mounted_at(&m1));
    assert_eq!(fs.check(), Health::Running);
    std::fs::write(m1.join("data"), "kept").unwrap();
    // Starting again is idempotent.
    fs.start(&env()).await.unwrap();
    fs.stop(&env(), StopMode::Graceful).await.unwrap();
    assert!(!mounted_at(&m1));
    assert_eq!(fs.check(), Health::Stopped);
    // Stopping what is not mounted is fine; the data survived.
    fs.stop(&env(), StopMode::Graceful).await.unwrap();
    fs.start(&env()).await.unwrap();
    assert_eq!(std::fs::read_to_string(m1.join("data")).unwrap(), "kept");
    // Unmounted behind the driver's back: check says so.
    let c = std::ffi::CString::new(m1.to_str().unwrap()).unwrap();
    // SAFETY: umount2(2) with a NUL-terminated string.
    assert_eq!(unsafe { libc::umount2(c.as_ptr(), 0) }, 0);
    assert!(matches!(fs.check(), Health::Failed(why) if why.contains("no longer mounted")));
}

#[tokio::test]
async fn a_failing_consistency_check_refuses_the_mount() {
    if skip_unless_root("a_failing_consistency_check_refuses_the_mount") {
        return;
    }
    let disk = Disk::new();
    let m1 = disk.mount_point("m1");
    let check = "echo 'bad superblock'; exit 4";
    let mut fs = filesystem(&disk.device.device, &m1, Some(check));
    let e = fs.start(&env()).await.unwrap_err();
    assert!(matches!(e, ResourceError::Refused { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "filesystem {}: consistency check `{check}` exited with exit status 4: mount of {} \
             refused; output: bad superblock",
            m1.display(),
            disk.device.device
        )
    );
    assert!(!mounted_at(&m1));
}

#[tokio::test]
async fn a_device_mounted_once_is_not_mounted_at_a_second_mount_point() {
    if skip_unless_root("a_device_mounted_once_is_not_mounted_at_a_second_mount_point") {
        return;
    }
    let disk = Disk::new();
    let (m1, m2) = (disk.mount_point("m1"), disk.mount_point("m2"));
    let mut first = filesystem(&disk.device.device, &m1, None);
    let mut second = filesystem(&disk.device.device, &m2, None);
    first.start(&env()).await.unwrap();
    let e = second.start(&env()).await.unwrap_err();
    let m1_real = std::fs::canonicalize(&m1).unwrap();
    assert!(
        e.to_string().contains(&format!(
            "{} is already mounted at {} on this node; refusing to mount it a second time",
            disk.device.device,
            m1_real.display()
        )),
        "{e}"
    );
    assert!(!mounted_at(&m2));
    first.stop(&env(), StopMode::Graceful).await.unwrap();
}

#[tokio::test]
async fn a_busy_filesystem_names_its_holders_and_stays_mounted() {
    if skip_unless_root("a_busy_filesystem_names_its_holders_and_stays_mounted") {
        return;
    }
    let disk = Disk::new();
    let m1 = disk.mount_point("m1");
    let mut fs = filesystem(&disk.device.device, &m1, None);
    fs.start(&env()).await.unwrap();
    // Killed on drop, also when an assertion fails.
    struct Holder(std::process::Child);
    impl Drop for Holder {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut holder = Holder(
        std::process::Command::new("sleep")
            .arg("30")
            .current_dir(&m1)
            .spawn()
            .unwrap(),
    );
    // The child is named after the test thread until it has exec'd `sleep`.
    let comm = format!("/proc/{}/comm", holder.0.id());
    for _ in 0..200 {
        if std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() == "sleep") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let e = fs.stop(&env(), StopMode::Graceful).await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("busy, held by"), "{text}");
    assert!(
        text.contains(&format!("pid {} (sleep: cwd)", holder.0.id())),
        "{text}"
    );
    assert!(text.ends_with("not unmounted lazily"), "{text}");
    assert!(mounted_at(&m1));
    holder.0.kill().unwrap();
    holder.0.wait().unwrap();
    fs.stop(&env(), StopMode::Graceful).await.unwrap();
    assert!(!mounted_at(&m1));
}

#[tokio::test]
async fn a_volume_runs_its_commands_and_reports_failures() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let l = log.display();
    let mut v = Volume::new(VolumeResource {
        name: "vg01".into(),
        activate: format!("echo on >> {l}"),
        deactivate: format!("echo off >> {l}"),
        timeout: Duration::from_secs(5),
    });
    v.start(&env()).await.unwrap();
    assert_eq!(v.check(), Health::Running);
    v.stop(&env(), StopMode::Graceful).await.unwrap();
    assert_eq!(v.check(), Health::Stopped);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "on\noff\n");

    let mut stuck = Volume::new(VolumeResource {
        name: "vg02".into(),
        activate: "true".into(),
        deactivate: "sleep 30".into(),
        timeout: Duration::from_millis(200),
    });
    stuck.start(&env()).await.unwrap();
    let e = stuck.stop(&env(), StopMode::Graceful).await.unwrap_err();
    assert!(
        e.to_string()
            .starts_with("volume vg02 deactivate: `sleep 30` timed out after 200ms"),
        "{e}"
    );
}

#[tokio::test]
async fn a_filesystem_fails_over_and_is_not_mounted_on_two_hosts_at_once() {
    if skip_unless_root("a_filesystem_fails_over_and_is_not_mounted_on_two_hosts_at_once") {
        return;
    }
    // Shared storage seen by two hosts: one image, a loop device per host (the kernel treats
    // them as two disks, as two hosts would). Multiple mount protection is on.
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("shared.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-O",
            "mmp",
            "-E",
            "mmp_update_interval=1",
            image.to_str().unwrap(),
        ],
    );
    let (disk_a, disk_b) = (LoopDevice::attach(&image), LoopDevice::attach(&image));
    let (m_a, m_b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir(&m_a).unwrap();
    std::fs::create_dir(&m_b).unwrap();
    // Dropped first (declared last): unmount before the loop devices go.
    let _unmount = [UnmountOnDrop(m_a.clone()), UnmountOnDrop(m_b.clone())];
    let mut on_a = filesystem(&disk_a.device, &m_a, None);
    let mut on_b = filesystem(&disk_b.device, &m_b, None);

    on_a.start(&env()).await.unwrap();
    std::fs::write(m_a.join("orders"), "42").unwrap();
    // Host b tries while host a has it mounted: refused, with the reason.
    let e = on_b.start(&env()).await.unwrap_err();
    assert!(matches!(e, ResourceError::Refused { .. }), "{e}");
    assert!(
        e.to_string().contains(&format!(
            "the kernel refused to mount {}: Device or resource busy",
            disk_b.device
        )) && e.to_string().contains("may be active on another node"),
        "{e}"
    );
    assert!(!mounted_at(&m_b));
    assert_eq!(on_b.check(), Health::Stopped);

    // Failover: a releases it, b mounts it and finds a's data.
    on_a.stop(&env(), StopMode::Graceful).await.unwrap();
    on_b.start(&env()).await.unwrap();
    assert_eq!(std::fs::read_to_string(m_b.join("orders")).unwrap(), "42");
    on_b.stop(&env(), StopMode::Graceful).await.unwrap();
}
