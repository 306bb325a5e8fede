//! The harness on a stand-in daemon (a shell script): it starts one process per node with the
//! expected arguments, kills a node power-loss style (the daemon, the process group recorded
//! in its run directory), and kills everything when dropped, also during a panic, including a
//! process that only names the cluster's directory.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use halcyon_testkit::cluster::{self, Launch};
use halcyon_testkit::{Cluster, ClusterConfig};

/// Starts a service in a process group of its own (recorded like the daemon records its
/// services: by the service itself once it leads its group, so that a kill of the recorded
/// group cannot come before the group exists), an orphan that names the state directory,
/// then sleeps. The orphan's own children live a second each: a child caught between its
/// fork and its `exec` still names the directory, and once it is `sleep` it no longer does,
/// so a long one escaped the drop's kill (and the CI's `sleep 1001` outlived the test).
const FAKE_DAEMON: &str = r#"#!/bin/sh
for a; do [ "$prev" = --state-dir ] && state="$a"; prev="$a"; done
mkdir -p "$state/run"
echo "$@" > "$state/args"
setsid sh -c 'echo $$ > "$0/svc.pgid"; mv "$0/svc.pgid" "$0/run/svc.0.pgid"; exec sleep 1000' "$state" &
(setsid sh -c 'while :; do sleep 1; done' "$state" &) 
echo started
exec sleep 1000
"#;

fn fake_daemon(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("fake-daemon");
    std::fs::write(&path, FAKE_DAEMON).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s.rsplit_once(") ")?.1.chars().next()? != 'Z'))
        .unwrap_or(false)
}

fn wait_dead(pid: i32) {
    let started = Instant::now();
    while alive(pid) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{pid} still runs"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the fake daemon of node `i` has recorded its service; its group.
fn service_group(c: &Cluster, i: usize) -> i32 {
    let started = Instant::now();
    loop {
        if let [group] = c.service_groups(i).as_slice() {
            return *group;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no service recorded"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// PIDs of processes whose command line names `needle`.
fn mentioning(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            alive(*pid) && String::from_utf8_lossy(&cmdline).contains(needle)
        })
        .collect()
}

fn two_nodes(scripts: &Path) -> Cluster {
    let addresses = [1, 2].map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)));
    let ports = cluster::allocate_ports(0, addresses).unwrap();
    let config = ClusterConfig::loopback("t", ports.base(), 2, "n", "lan1", "127.0.0.0/24");
    let mut launch = Launch::new(fake_daemon(scripts));
    launch.daemon_args = vec!["--test-faults".into()];
    let dir = cluster::temp_dir("halcyon-testkit-").unwrap();
    Cluster::create(dir, config, launch, Some(ports)).unwrap()
}

#[test]
fn a_killed_node_takes_its_service_group_and_drop_takes_the_rest() {
    let scripts = tempfile::tempdir().unwrap();
    let mut c = two_nodes(scripts.path());
    assert!(c.config_dir().join("cluster.toml").is_file());
    c.start_all().unwrap();
    let (group1, group2) = (service_group(&c, 1), service_group(&c, 2));
    let daemon1 = c.pid(1).unwrap() as i32;
    let args = std::fs::read_to_string(c.state_dir(1).join("args")).unwrap();
    // Each node's API socket is in its own state directory: clusters side by side never
    // meet at the default one.
    let socket = c.state_dir(1).join("api.sock");
    assert!(
        args.starts_with(&format!(
            "daemon --node n1 --api-socket {} --test-faults --config ",
            socket.display()
        )),
        "{args}"
    );
    assert_eq!(c.api(2).to_string(), format!("127.0.0.2:{}", c.port() + 2));

    assert!(c.kill(1).is_some());
    wait_dead(daemon1);
    wait_dead(group1);
    assert!(!c.is_running(1) && c.is_running(2));
    assert!(alive(group2));
    assert!(c.kill(1).is_none(), "a dead node is not killed again");
    // Restarted: a new process.
    c.start(1).unwrap();
    assert_ne!(c.pid(1).unwrap() as i32, daemon1);
    // Its service recorded before anything is killed: a service between its `setsid` and
    // its record is in no group the harness knows of, and once it has exec'd `sleep` its
    // command line no longer names the directory (the CI saw one survive the drop).
    let started = Instant::now();
    while c.service_groups(1).first().is_none_or(|g| *g == group1) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the restarted node recorded no service"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let dir = c.path().to_string_lossy().into_owned();
    let orphans = mentioning(&dir);
    assert!(!orphans.is_empty(), "the orphans name the directory");
    let daemon2 = c.pid(2).unwrap() as i32;
    drop(c);
    for pid in [daemon2, group2].into_iter().chain(orphans) {
        wait_dead(pid);
    }
    assert!(mentioning(&dir).is_empty());
    assert!(!Path::new(&dir).exists(), "the directory is removed");
}

#[test]
fn a_panicking_test_still_kills_its_cluster() {
    let scripts = tempfile::tempdir().unwrap();
    let path = scripts.path().to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let mut c = two_nodes(&path);
        c.start_all().unwrap();
        let pids = [c.pid(1).unwrap() as i32, service_group(&c, 2)];
        tx.send((pids, c.path().to_string_lossy().into_owned()))
            .unwrap();
        panic!("the test fails here");
    })
    .join();
    assert!(outcome.is_err());
    let (pids, dir) = rx.recv().unwrap();
    for pid in pids {
        wait_dead(pid);
    }
    // The other processes were signalled too; on a loaded machine they may take a moment
    // to be gone (the full suite on two busy cores caught one still there).
    let started = Instant::now();
    while !mentioning(&dir).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still running after the cluster was dropped: {:?}",
            mentioning(&dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_wait_that_runs_out_names_what_it_waited_for() {
    let scripts = tempfile::tempdir().unwrap();
    let c = two_nodes(scripts.path());
    // Nothing listens: no status, and the error says what was awaited where.
    let error = c
        .wait_formed(1, Duration::from_millis(100))
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("every node a member: not within 100ms; last status from n1: null"),
        "{error}"
    );
}
