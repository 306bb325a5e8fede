use super::*;
use crate::testing::process_alive;
use std::time::Duration;

fn env() -> PackageEnv {
    PackageEnv {
        cluster: "c".into(),
        package: "p".into(),
        node: "n1".into(),
    }
}

fn service(command: &str, halt_timeout_ms: u64) -> Service {
    Service::new(ServiceResource {
        name: "s".into(),
        command: command.into(),
        restart: 0,
        restart_window: None,
        node_fail_fast: false,
        halt_timeout: Duration::from_millis(halt_timeout_ms),
    })
}

fn script(run: &str, halt: &str, timeout_ms: u64) -> Script {
    Script::new(ScriptResource {
        name: "x".into(),
        run: run.into(),
        halt: halt.into(),
        run_timeout: Duration::from_millis(timeout_ms),
        halt_timeout: Duration::from_millis(timeout_ms),
    })
}

#[tokio::test]
async fn a_service_exit_is_seen_at_once() {
    let mut s = service("sleep 0.1; exit 3", 1000);
    s.start(&env()).await.unwrap();
    assert_eq!(s.check(), Health::Running);
    let started = Instant::now();
    let exit = tokio::time::timeout(Duration::from_secs(5), s.exited())
        .await
        .unwrap();
    assert_eq!(exit, "exit status 3");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(s.check(), Health::Exited("exit status 3".into()));
}

#[tokio::test]
async fn stop_terminates_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("child.pid");
    // A background grandchild in the same group.
    let command = format!("sleep 30 & echo $! > {}; wait", marker.display());
    let mut s = service(&command, 2000);
    s.start(&env()).await.unwrap();
    let pgid = s.process_group().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(group_alive(pgid));
    let report = s.stop(&env(), StopMode::Graceful).await.unwrap();
    assert!(!report.killed, "{report:?}");
    assert!(!group_alive(pgid));
    assert_eq!(s.check(), Health::Stopped);
}

#[tokio::test]
async fn a_service_ignoring_sigterm_is_killed_after_its_halt_timeout() {
    let mut s = service("trap '' TERM; while :; do sleep 0.05; done", 300);
    s.start(&env()).await.unwrap();
    let pgid = s.process_group().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let report = s.stop(&env(), StopMode::Graceful).await.unwrap();
    assert!(report.killed);
    assert!(
        report.detail.contains("ignored SIGTERM"),
        "{}",
        report.detail
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(!group_alive(pgid));
}

#[tokio::test]
async fn an_immediate_stop_kills_without_waiting() {
    let mut s = service("trap '' TERM; while :; do sleep 0.05; done", 10_000);
    s.start(&env()).await.unwrap();
    let pgid = s.process_group().unwrap();
    let started = Instant::now();
    s.stop(&env(), StopMode::Immediate).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!group_alive(pgid));
}

#[tokio::test]
async fn the_package_environment_is_given_to_commands() {
    let out = run_command(
        "t",
        "echo $HALCYON_CLUSTER/$HALCYON_PACKAGE/$HALCYON_NODE",
        &env(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(out.trim(), "c/p/n1");
}

#[tokio::test]
async fn script_results_and_timeouts_are_reported() {
    let mut ok = script("true", "true", 2000);
    ok.start(&env()).await.unwrap();
    assert_eq!(
        ok.stop(&env(), StopMode::Graceful).await.unwrap(),
        StopReport::default()
    );

    let mut failing = script("echo broken; false", "true", 2000);
    let e = failing.start(&env()).await.unwrap_err();
    assert!(
        matches!(&e, ResourceError::Failed { status, output, .. } if status == "exit status 1" && output.contains("broken")),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "script x run: `echo broken; false` exited with exit status 1; output: broken"
    );

    let mut slow = script("sleep 30", "sleep 30", 200);
    let started = Instant::now();
    let e = slow.start(&env()).await.unwrap_err();
    assert!(matches!(e, ResourceError::TimedOut { .. }), "{e}");
    assert!(e.to_string().contains("process group was killed"));
    assert!(started.elapsed() < Duration::from_secs(3));
    let report = slow.stop(&env(), StopMode::Graceful).await.unwrap();
    assert!(
        report.killed && report.detail.contains("timed out"),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_package_stops_what_it_started_when_a_resource_fails() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let l = log.display();
    let resources: Vec<Box<dyn Resource>> = vec![
        Box::new(script(
            &format!("echo run1 >> {l}"),
            &format!("echo halt1 >> {l}"),
            2000,
        )),
        Box::new(service("sleep 30", 1000)),
        Box::new(script("false", &format!("echo halt3 >> {l}"), 2000)),
    ];
    let mut p = PackageResources::new(env(), resources);
    assert!(p.start().await.is_err());
    assert!(!p.is_started());
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "run1\nhalt1\n");
}

#[tokio::test]
async fn a_package_reports_its_service_exit_and_restarts_it() {
    let resources: Vec<Box<dyn Resource>> = vec![
        Box::new(script("true", "true", 2000)),
        Box::new(service("echo run $HALCYON_PACKAGE; sleep 0.1", 1000)),
    ];
    let mut p = PackageResources::new(env(), resources);
    p.start().await.unwrap();
    let (i, why) = tokio::time::timeout(Duration::from_secs(5), p.exited())
        .await
        .unwrap();
    assert_eq!((i, why.as_str()), (1, "exit status 0"));
    assert_eq!(p.output_tail(1).as_deref(), Some("run p\n"));
    assert_eq!(
        p.output_tail(0),
        None,
        "a script's run output is not a service's"
    );
    p.restart(1).await.unwrap();
    // A restart starts a new tail.
    let (i, _) = tokio::time::timeout(Duration::from_secs(5), p.exited())
        .await
        .unwrap();
    assert_eq!((i, p.output_tail(1).as_deref()), (1, Some("run p\n")));
    p.restart(1).await.unwrap();
    assert_eq!(p.process_groups().len(), 1);
    p.stop(StopMode::Graceful).await.unwrap();
    assert!(p.process_groups().is_empty());
}

fn package_with_every_kind() -> halcyon_config::Package {
    use halcyon_config::{
        FailbackPolicy, FailoverPolicy, FilesystemResource, IpResource, OcfResource, Package,
        PackageType, Resource as R, Subnet, VolumeResource,
    };
    let ocf = OcfResource {
        agent: "heartbeat:Dummy".into(),
        params: Default::default(),
        monitor_interval: Duration::from_secs(7),
        timeout: Duration::from_secs(20),
        restart: 1,
        restart_window: None,
    };
    Package {
        name: "web".into(),
        package_type: PackageType::Failover,
        nodes: vec!["n1".into()],
        auto_run: true,
        failover_policy: FailoverPolicy::ConfiguredNode,
        failback_policy: FailbackPolicy::Manual,
        fallback_timer: None,
        priority: None,
        dependencies: vec![],
        networks: vec!["lan".into()],
        local_lan_failover_allowed: true,
        requires: Default::default(),
        failure_expiry: None,
        run_timeout: Duration::from_secs(60),
        halt_timeout: Duration::from_secs(60),
        resources: vec![
            R::Volume(VolumeResource {
                name: "vg01".into(),
                activate: "true".into(),
                deactivate: "true".into(),
                timeout: Duration::from_secs(5),
            }),
            R::Filesystem(FilesystemResource {
                device: "/dev/vg01/data".into(),
                mount_point: "/srv/data".into(),
                fstype: "ext4".into(),
                options: None,
                check: None,
                timeout: Duration::from_secs(5),
            }),
            R::Ip(IpResource {
                network: "lan".into(),
                addresses: vec![
                    Subnet {
                        address: "198.18.1.50".parse().unwrap(),
                        prefix: 24,
                    },
                    Subnet {
                        address: "198.18.2.50".parse().unwrap(),
                        prefix: 24,
                    },
                ],
            }),
            R::Ocf(ocf.clone()),
            R::Ocf(ocf),
        ],
        monitors: vec![],
    }
}

#[test]
fn every_resource_kind_builds_on_a_node() {
    let package = package_with_every_kind();
    let node = halcyon_config::Node {
        name: "n1".into(),
        number: 1,
        interfaces: vec![halcyon_config::Interface {
            network: "lan".into(),
            address: Some("198.18.2.1".parse().unwrap()),
            device: None,
            standby: false,
        }],
        fencing: None,
    };
    let p = PackageResources::from_config_on_node(env(), &package, &node).unwrap();
    let described: Vec<String> = p.resources.iter().map(|r| r.describe()).collect();
    assert_eq!(
        described,
        [
            "volume vg01",
            "filesystem /srv/data",
            "ip 198.18.2.50/24",
            "ocf heartbeat:Dummy (web.Dummy)",
            "ocf heartbeat:Dummy (web.Dummy.2)",
        ]
    );
    assert!(p.monitor_intervals().is_empty(), "nothing started yet");

    // Without the node, everything but the address builds, and the error says what to call.
    let e = PackageResources::from_config(env(), &package)
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "ip 198.18.1.50/24,198.18.2.50/24: needs the local node's interfaces (build the \
         package with PackageResources::from_config_on_node)"
    );
    let mut without_ip = package.clone();
    without_ip
        .resources
        .retain(|r| !matches!(r, halcyon_config::Resource::Ip(_)));
    assert_eq!(
        PackageResources::from_config(env(), &without_ip)
            .unwrap()
            .resources
            .len(),
        4
    );
}

#[test]
fn proc_stat_lines_give_state_and_group_even_with_odd_command_names() {
    assert_eq!(
        state_and_group("42 (sleep) S 1 40 40 0 -1 4194560 97 0"),
        Some(('S', 40))
    );
    assert_eq!(state_and_group("43 (a b) c)) Z 1 41 41 0"), Some(('Z', 41)));
    assert_eq!(state_and_group("garbage"), None);
}

#[tokio::test]
async fn a_killed_group_whose_orphans_await_reaping_by_init_counts_as_gone() {
    // The grandchild is reparented to init when its shell dies; some inits reap orphans only
    // every few seconds, and a zombie holds nothing.
    let mut s = service("sleep 30 & wait", 10_000);
    s.start(&env()).await.unwrap();
    let pgid = s.process_group().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(group_alive(pgid));
    let started = Instant::now();
    s.stop(&env(), StopMode::Immediate).await.unwrap();
    assert!(!group_alive(pgid));
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_services_output_is_kept_as_a_bounded_tail_for_the_event_log() {
    // 20,000 numbered lines on stdout (far beyond the kept tail), then the reason on stderr.
    let mut s = service(
        "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); echo \"line $i\"; done; \
         echo 'fatal: /etc/web.conf missing' >&2; exit 3",
        1000,
    );
    assert_eq!(s.output_tail(), None, "not started");
    s.start(&env()).await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(20), s.exited())
        .await
        .unwrap();
    assert_eq!(exit, "exit status 3");
    let tail = s.output_tail().unwrap();
    assert!(tail.len() <= SERVICE_OUTPUT_MAX, "{}", tail.len());
    assert!(tail.len() > SERVICE_OUTPUT_MAX - 20, "{}", tail.len());
    assert!(
        tail.ends_with("line 19999\nline 20000\nfatal: /etc/web.conf missing\n"),
        "{tail}"
    );
    assert!(!tail.contains("line 1\n"), "the start is dropped");
}

#[tokio::test]
async fn a_service_printing_more_than_its_pipe_holds_is_read_to_its_exit() {
    // 3 MB, three times the pipe's capacity: a service that nobody read would block forever.
    let mut s = service(
        "head -c 3000000 /dev/zero | tr '\\0' a; echo; echo done; exit 0",
        1000,
    );
    s.start(&env()).await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(20), s.exited())
        .await
        .expect("the service blocked in a write");
    assert_eq!(exit, "exit status 0");
    let tail = s.output_tail().unwrap();
    assert!(
        tail.ends_with("aaa\ndone\n"),
        "{}",
        &tail[tail.len() - 20..]
    );
    assert_eq!(tail.len(), SERVICE_OUTPUT_MAX);
}

#[tokio::test]
async fn what_a_service_prints_while_stopping_is_kept() {
    let mut s = service(
        "echo ready; trap 'echo terminating on SIGTERM; exit 0' TERM; \
         while :; do sleep 0.05; done",
        5000,
    );
    s.start(&env()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let report = s.stop(&env(), StopMode::Graceful).await.unwrap();
    assert!(!report.killed, "{report:?}");
    // (The shell may also say that its `sleep` was terminated: SIGTERM goes to the group.)
    let tail = s.output_tail().unwrap();
    assert!(tail.starts_with("ready\n"), "{tail}");
    assert!(tail.ends_with("terminating on SIGTERM\n"), "{tail}");
}

#[test]
fn an_output_tail_is_cut_at_a_character_boundary() {
    let mut tail = OutputTail::default();
    // 4,097 bytes: the kept 4,096 start with the second byte of the first 'é'.
    tail.push("é".repeat(2048).as_bytes());
    tail.push(b"x");
    let text = tail.text().unwrap();
    assert_eq!(text, format!("{}x", "é".repeat(2047)));
    // Pushed in pieces that split characters, the end is kept whole.
    let mut tail = OutputTail::default();
    let data = "日本語のログ".repeat(400);
    for piece in data.as_bytes().chunks(7) {
        tail.push(piece);
    }
    let text = tail.text().unwrap();
    assert!(data.ends_with(&text));
    assert!(text.len() > SERVICE_OUTPUT_MAX - 3);
    assert_eq!(OutputTail::default().text(), None);
}

fn read_pid(path: &std::path::Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_halt_command_that_times_out_has_its_group_killed_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("halt-child.pid");
    // The halt command hangs, with a child in the background of its group.
    let mut s = script(
        "true",
        &format!("sleep 30 & echo $! > {}; wait", pid_file.display()),
        300,
    );
    s.start(&env()).await.unwrap();
    let started = Instant::now();
    let report = s.stop(&env(), StopMode::Graceful).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(report.killed, "{report:?}");
    assert!(
        report.detail.starts_with("script x halt: `sleep 30 & echo")
            && report
                .detail
                .contains("timed out after 300ms; its process group was killed"),
        "{}",
        report.detail
    );
    assert!(
        !process_alive(read_pid(&pid_file)),
        "the halt's child survived"
    );
}

#[tokio::test]
async fn what_a_run_command_starts_in_the_background_is_its_process_group_until_halted() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("app.pid");
    let p = pid_file.display();
    let mut s = script(
        &format!("sleep 30 & echo $! > {p}"),
        &format!("kill $(cat {p})"),
        2000,
    );
    s.start(&env()).await.unwrap();
    let app = read_pid(&pid_file);
    assert!(process_alive(app));
    let pgid = s.process_group().expect("the run command's group");
    // SAFETY: getpgid(2) reads another process's group; no memory is involved.
    assert_eq!(unsafe { libc::getpgid(app) }, pgid);
    // The halt command ends it: nothing else to do, nothing to report.
    let report = s.stop(&env(), StopMode::Graceful).await.unwrap();
    assert_eq!(report, StopReport::default());
    assert!(!process_alive(app));
    assert_eq!(s.process_group(), None);

    // A run command that leaves nothing behind has no group.
    let mut plain = script("true", "true", 2000);
    plain.start(&env()).await.unwrap();
    assert_eq!(plain.process_group(), None);
}

#[tokio::test]
async fn processes_a_halt_command_leaves_running_are_ended_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("app.pid");
    let p = pid_file.display();
    // The halt command forgets the application; one that ignores SIGTERM.
    let mut s = script(
        &format!("sh -c \"trap '' TERM; while :; do sleep 0.05; done\" & echo $! > {p}"),
        "true",
        300,
    );
    s.start(&env()).await.unwrap();
    let app = read_pid(&pid_file);
    let pgid = s.process_group().unwrap();
    let report = s.stop(&env(), StopMode::Graceful).await.unwrap();
    assert!(report.killed, "{report:?}");
    assert_eq!(
        report.detail,
        format!(
            "script x: processes the run command left in process group {pgid} ignored SIGTERM \
             for 300ms: killed"
        )
    );
    assert!(!process_alive(app));

    // An immediate stop kills them before the halt command runs.
    let log = dir.path().join("log");
    let mut s = script(
        &format!("sleep 30 & echo $! > {p}"),
        &format!(
            "pid=$(cat {p}); if [ -e /proc/$pid ] && ! grep -q '^State:[[:space:]]*Z' \
             /proc/$pid/status; then echo alive; else echo gone; fi >> {l}",
            l = log.display()
        ),
        2000,
    );
    s.start(&env()).await.unwrap();
    let report = s.stop(&env(), StopMode::Immediate).await.unwrap();
    assert!(
        report.killed && report.detail.ends_with("were killed"),
        "{report:?}"
    );
    assert!(!process_alive(read_pid(&pid_file)));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "gone\n");
}

#[tokio::test]
async fn a_failing_run_command_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("app.pid");
    let mut s = script(
        &format!("sleep 30 & echo $! > {}; exit 2", pid_file.display()),
        "true",
        2000,
    );
    let e = s.start(&env()).await.unwrap_err();
    assert!(
        matches!(&e, ResourceError::Failed { status, .. } if status == "exit status 2"),
        "{e}"
    );
    assert!(!process_alive(read_pid(&pid_file)));
    assert_eq!(s.process_group(), None);
}
