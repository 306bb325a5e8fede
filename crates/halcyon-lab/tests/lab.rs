//! The lab and the checker on real namespaces (root only; elsewhere each test prints
//! "skipped: needs root" and passes). None of these needs the Halcyon daemon.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use halcyon_lab::{
    CLIENT, Checker, CheckerOptions, Lab, LabSpec, PackageWatch, ServiceMatch, fault, names, netns,
    running_as_root_or_skip,
};

const SERVE_BINARY: &str = env!("CARGO_BIN_EXE_halcyon-lab");
const PACKAGE_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 200);
const PREFIX_LENGTH: u8 = 24;

fn three_hosts_two_networks() -> Lab {
    Lab::build(LabSpec {
        hosts: 3,
        networks: 2,
        keep_directory: false,
        standby_networks: Vec::new(),
    })
    .expect("lab builds")
}

/// Pings until answered or `attempts` are used (each waits at most a second).
fn ping_eventually(lab: &Lab, from: usize, to: Ipv4Addr, attempts: usize) -> bool {
    (0..attempts).any(|_| lab.ping(from, to).expect("ping runs"))
}

fn assert_no_guard_violations(lab: &Lab) {
    assert_eq!(
        lab.guard_violations_by_namespace().expect("counters"),
        vec![0; 4]
    );
}

#[test]
fn hosts_reach_each_other_on_both_networks_and_the_client_reaches_them() {
    if !running_as_root_or_skip("hosts_reach_each_other") {
        return;
    }
    let lab = three_hosts_two_networks();
    for from in lab.hosts() {
        for to in lab.hosts().filter(|&to| to != from) {
            for network in 1..=2 {
                assert!(
                    ping_eventually(&lab, from, lab.address(to, network), 3),
                    "h{from} -> h{to} on network {network}"
                );
            }
        }
        assert!(
            ping_eventually(&lab, CLIENT, lab.address(from, 1), 3),
            "client -> h{from}"
        );
    }
    assert_no_guard_violations(&lab);
    assert!(lab.disk_heartbeat_path().is_file());
}

#[test]
fn partition_blocks_the_chosen_hosts_and_heal_restores_them() {
    if !running_as_root_or_skip("partition") {
        return;
    }
    let lab = three_hosts_two_networks();
    assert!(ping_eventually(&lab, 1, lab.address(2, 1), 3));
    fault::partition(&lab, &[vec![1], vec![2, 3]], &[]).expect("partition");
    for network in 1..=2 {
        assert!(
            !lab.ping(1, lab.address(2, network)).unwrap(),
            "h1 -> h2 net {network} cut"
        );
        assert!(
            !lab.ping(3, lab.address(1, network)).unwrap(),
            "h3 -> h1 net {network} cut"
        );
        assert!(
            lab.ping(2, lab.address(3, network)).unwrap(),
            "h2 -> h3 net {network} same side"
        );
    }
    assert!(
        lab.ping(CLIENT, lab.address(1, 1)).unwrap(),
        "the client is not in the partition"
    );
    fault::heal(&lab).expect("heal");
    for network in 1..=2 {
        assert!(
            ping_eventually(&lab, 1, lab.address(2, network), 3),
            "healed net {network}"
        );
    }

    // A partition of one network only leaves the other one working.
    fault::partition(&lab, &[vec![1], vec![2]], &[1]).expect("partition network 1");
    assert!(!lab.ping(1, lab.address(2, 1)).unwrap());
    assert!(lab.ping(1, lab.address(2, 2)).unwrap());
    fault::heal(&lab).expect("heal");
    assert_no_guard_violations(&lab);
}

#[test]
fn link_down_stops_traffic_to_that_host_and_link_up_restores_it() {
    if !running_as_root_or_skip("link_down") {
        return;
    }
    let lab = three_hosts_two_networks();
    assert!(ping_eventually(&lab, 1, lab.address(2, 1), 3));
    fault::link_down(&lab, 2, 1).expect("link down");
    assert!(
        !lab.ping(1, lab.address(2, 1)).unwrap(),
        "network 1 to h2 is down"
    );
    assert!(
        !lab.ping(CLIENT, lab.address(2, 1)).unwrap(),
        "client to h2 is down"
    );
    assert!(
        lab.ping(1, lab.address(2, 2)).unwrap(),
        "network 2 to h2 still works"
    );
    assert!(
        lab.ping(1, lab.address(3, 1)).unwrap(),
        "network 1 to h3 still works"
    );
    fault::link_up(&lab, 2, 1).expect("link up");
    assert!(ping_eventually(&lab, 1, lab.address(2, 1), 5), "restored");
    assert_no_guard_violations(&lab);
}

#[test]
fn a_standby_interface_keeps_the_host_on_the_network_when_the_primary_link_fails() {
    if !running_as_root_or_skip("standby_interface") {
        return;
    }
    let lab = Lab::build(LabSpec {
        hosts: 2,
        networks: 2,
        standby_networks: vec![1],
        ..LabSpec::default()
    })
    .expect("lab builds");
    assert_eq!(lab.standby_interface(1).as_deref(), Some("eth1s"));
    assert_eq!(lab.standby_interface(2), None);
    let standby = lab
        .standby_address(2, 1)
        .expect("h2 has a standby on network 1");
    assert_eq!(standby, Ipv4Addr::new(198, 18, 1, 102));
    assert!(lab.addresses(2).unwrap().contains(&standby));
    assert!(
        ping_eventually(&lab, CLIENT, standby, 3),
        "client -> standby"
    );
    assert_eq!(
        lab.interface_of_address(2, standby).unwrap().as_deref(),
        Some("eth1s")
    );
    assert_eq!(
        lab.interface_of_address(2, lab.address(2, 1))
            .unwrap()
            .as_deref(),
        Some("eth1")
    );
    fault::link_down(&lab, 2, 1).expect("primary link down");
    // Each interface answers ARP for its own addresses only: the primary's address is cut,
    // the standby's still answers (its replies skip the primary's linkdown route).
    assert!(
        !lab.ping(CLIENT, lab.address(2, 1)).unwrap(),
        "h2's primary address is cut"
    );
    assert!(
        ping_eventually(&lab, CLIENT, standby, 3),
        "the standby still answers the client"
    );
    // What h2 sends from its primary address stays on the primary (source routes): nothing
    // leaks through the standby, so its peers notice the failed adapter.
    let ping_from = |source: Ipv4Addr| {
        let (source, target) = (source.to_string(), lab.address(1, 1).to_string());
        lab.run(
            2,
            "ping",
            &["-n", "-q", "-c", "1", "-W", "1", "-I", &source, &target],
            Duration::from_secs(3),
        )
        .expect("ping runs")
        .status
        .success()
    };
    assert!(!ping_from(lab.address(2, 1)), "sent from eth1's address");
    assert!(ping_from(standby), "sent from eth1s's address");
    fault::standby_link_down(&lab, 2, 1).expect("standby link down");
    assert!(!lab.ping(CLIENT, standby).unwrap(), "both links are down");
    fault::power_on(&lab, 2).expect("every link up");
    assert!(ping_eventually(&lab, CLIENT, lab.address(2, 1), 5));
    assert!(ping_eventually(&lab, CLIENT, standby, 5));
    assert_eq!(lab.guard_violations().unwrap(), 0);
}

#[test]
fn guard_counts_a_packet_to_an_address_outside_the_lab_and_nothing_else() {
    if !running_as_root_or_skip("guard") {
        return;
    }
    let lab = three_hosts_two_networks();
    assert!(ping_eventually(&lab, 1, lab.address(3, 2), 3));
    assert_eq!(
        lab.guard_violations().unwrap(),
        0,
        "lab traffic is not counted"
    );
    // One UDP datagram from h1 to 198.20.0.1: the namespace routes it to loopback and the guard
    // drops it in the output hook, so it is counted and never leaves.
    let outside = SocketAddrV4::new(Ipv4Addr::new(198, 20, 0, 1), 9);
    assert!(!names::is_lab_address(*outside.ip()));
    netns::in_namespace(lab.namespace_path(1), move || -> std::io::Result<()> {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        let result = socket.send_to(b"guard", outside);
        // The drop may surface as EPERM; either way the counter must say 1.
        if let Err(error) = result {
            assert_eq!(error.raw_os_error(), Some(libc::EPERM), "{error}");
        }
        Ok(())
    })
    .unwrap()
    .unwrap();
    assert_eq!(
        lab.guard_violations_by_namespace().unwrap(),
        vec![0, 1, 0, 0]
    );
}

#[test]
fn crash_kills_every_process_of_the_host_pause_stops_and_restart_starts_again() {
    if !running_as_root_or_skip("crash") {
        return;
    }
    let lab = three_hosts_two_networks();
    // A "daemon" whose "service" makes its own session, like Halcyon's service driver does.
    let daemon = lab
        .spawn(1, "sh", &["-c", "setsid sleep 60 & exec sleep 60"], &[])
        .unwrap();
    let bystander = lab.spawn(2, "sleep", &["60"], &[]).unwrap();
    let inode = lab.topology().namespace_inodes[1];
    let deadline = Instant::now() + Duration::from_secs(5);
    while netns::processes_in_namespace(inode).len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        netns::processes_in_namespace(inode).len(),
        2,
        "daemon and its service"
    );

    let paused_at = fault::pause(&lab, &daemon).unwrap();
    assert!(paused_at <= Instant::now());
    assert!(wait_for_state(daemon.pid, 'T'), "stopped");
    fault::resume(&lab, &daemon).unwrap();
    assert!(wait_for_state(daemon.pid, 'S'), "running again");

    let crashed_at = fault::crash(&lab, 1).unwrap();
    assert!(crashed_at.elapsed() < Duration::from_secs(5));
    assert!(!lab.is_running(&daemon));
    assert!(
        netns::processes_in_namespace(inode).is_empty(),
        "nothing left on h1"
    );
    assert!(lab.is_running(&bystander), "h2 untouched");

    let (restarted, _) = fault::restart(&lab, &daemon).unwrap();
    assert_ne!(restarted.pid, daemon.pid);
    assert!(lab.is_running(&restarted));
    assert_eq!(
        netns::process_namespace_inode(restarted.pid),
        Some(inode),
        "runs in h1"
    );
    assert!(
        fault::restart(&lab, &bystander).is_err(),
        "a running process is not restarted"
    );
}

fn wait_for_state(pid: u32, state: char) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if netns::process_state_of(pid) == Some(state) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

fn watch_address_only() -> Vec<PackageWatch> {
    vec![PackageWatch {
        name: "web".into(),
        address: PACKAGE_ADDRESS,
        service: None,
        probe_port: None,
    }]
}

/// Each edge of an interval is seen at the first sample after it, so a measured length is off by
/// at most the largest gap between samples (plus a little for the netlink round trip).
fn assert_about(length: Duration, expected: Duration, largest_gap: Duration, what: &str) {
    let tolerance = largest_gap + Duration::from_millis(10);
    assert!(
        length + tolerance >= expected && length <= expected + tolerance,
        "{what}: {length:?}, expected {expected:?} +- {tolerance:?}"
    );
}

#[test]
fn checker_reports_one_double_activation_and_one_outage_of_the_right_length() {
    if !running_as_root_or_skip("checker") {
        return;
    }
    let lab = three_hosts_two_networks();
    let checker = Checker::start(
        lab.topology(),
        watch_address_only(),
        CheckerOptions::default(),
    )
    .unwrap();
    let hold = Duration::from_millis(100);
    let settle = |checker: &Checker| assert!(checker.wait_for_samples(4, Duration::from_secs(2)));

    lab.add_address(1, 1, PACKAGE_ADDRESS, PREFIX_LENGTH)
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let double_from = lab
        .add_address(2, 1, PACKAGE_ADDRESS, PREFIX_LENGTH)
        .unwrap();
    std::thread::sleep(hold);
    let double_until = lab
        .delete_address(1, 1, PACKAGE_ADDRESS, PREFIX_LENGTH)
        .unwrap();
    settle(&checker);
    std::thread::sleep(Duration::from_millis(50));

    let outage_from = lab
        .delete_address(2, 1, PACKAGE_ADDRESS, PREFIX_LENGTH)
        .unwrap();
    std::thread::sleep(hold);
    let outage_until = lab
        .add_address(1, 1, PACKAGE_ADDRESS, PREFIX_LENGTH)
        .unwrap();
    settle(&checker);
    std::thread::sleep(Duration::from_millis(50));
    let report = checker.stop();
    println!("{report}");

    assert!(
        report.max_sample_gap <= Duration::from_millis(50),
        "sampled densely: {report}"
    );
    assert_eq!(report.sample_errors, 0);
    assert_eq!(report.double_activations.len(), 1, "{report}");
    let double = &report.double_activations[0];
    assert_eq!(double.hosts, vec![1, 2]);
    assert!(double.ended);
    assert_about(
        double.length,
        double_until - double_from,
        report.max_sample_gap,
        "double activation",
    );
    assert_eq!(report.outages.len(), 1, "{report}");
    let outage = &report.outages[0];
    assert_eq!(outage.hosts, vec![2], "h2 served before the outage");
    assert!(outage.ended);
    assert_about(
        outage.length,
        outage_until - outage_from,
        report.max_sample_gap,
        "outage",
    );
    assert_eq!(lab.guard_violations().unwrap(), 0);
}

#[test]
fn checker_probe_follows_a_failover_and_services_are_matched_by_marker() {
    if !running_as_root_or_skip("checker_probe") {
        return;
    }
    let lab = three_hosts_two_networks();
    let bind = format!("{PACKAGE_ADDRESS}:8080");
    let start_service = |host: usize| {
        let name = format!("h{host}");
        lab.spawn(
            host,
            SERVE_BINARY,
            &["serve-name", "--bind", &bind, "--name", &name],
            &[],
        )
        .unwrap()
    };
    let watch = vec![PackageWatch {
        name: "web".into(),
        address: PACKAGE_ADDRESS,
        service: Some(ServiceMatch::CommandLineContains(format!("--bind {bind}"))),
        probe_port: Some(8080),
    }];
    start_service(1);
    lab.add_address(1, 1, PACKAGE_ADDRESS, PREFIX_LENGTH)
        .unwrap();
    let target = SocketAddrV4::new(PACKAGE_ADDRESS, 8080);
    let deadline = Instant::now() + Duration::from_secs(5);
    while lab
        .http_get(CLIENT, target, Duration::from_millis(200))
        .ok()
        .as_deref()
        != Some("h1")
    {
        assert!(Instant::now() < deadline, "serve-name on h1 never answered");
        std::thread::sleep(Duration::from_millis(20));
    }
    let checker = Checker::start(lab.topology(), watch, CheckerOptions::default()).unwrap();
    std::thread::sleep(Duration::from_millis(100));

    // A failover by hand: h1 crashes (its address stays configured, as on a powered-off host
    // whose link is down), h2 takes the address and starts the service. The client forgets h1's
    // MAC, the job of a gratuitous ARP, which this test does not send.
    let crashed_at = fault::power_off(&lab, 1).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    lab.delete_address(1, 1, PACKAGE_ADDRESS, PREFIX_LENGTH)
        .unwrap();
    lab.add_address(2, 1, PACKAGE_ADDRESS, PREFIX_LENGTH)
        .unwrap();
    start_service(2);
    let flushed = lab
        .run(
            CLIENT,
            "ip",
            &["neigh", "flush", "all"],
            Duration::from_secs(2),
        )
        .unwrap();
    assert!(flushed.status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while checker
        .report()
        .first_answer_after("web", crashed_at, Some("h1"))
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "h2 never answered: {}",
            checker.report()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let report = checker.stop();
    println!("{report}");
    let answers: Vec<Option<&str>> = report
        .probe_answers
        .iter()
        .map(|answer| answer.answer.as_deref())
        .collect();
    assert_eq!(answers.first(), Some(&Some("h1")), "{report}");
    assert_eq!(answers.last(), Some(&Some("h2")), "{report}");
    let failover = report
        .first_answer_after("web", crashed_at, Some("h1"))
        .unwrap();
    assert!(
        failover >= Duration::from_millis(50) && failover < Duration::from_secs(2),
        "{failover:?}"
    );
    assert!(report.double_activations.is_empty(), "{report}");
    assert_eq!(report.outages.len(), 1, "{report}");
    assert_eq!(report.outages[0].hosts, vec![1]);
    assert_eq!(report.probe_outages.len(), 1, "{report}");
    assert_eq!(report.timeline.first().unwrap().service_hosts, vec![1]);
    assert_eq!(report.timeline.last().unwrap().service_hosts, vec![2]);
    assert_eq!(report.timeline.last().unwrap().address_hosts, vec![2]);
    fault::power_on(&lab, 1).unwrap();
    assert_eq!(lab.guard_violations().unwrap(), 0);
}

fn lab_objects(id: &str) -> Vec<String> {
    let mut found = Vec::new();
    for directory in ["/run/netns", "/sys/class/net"] {
        for entry in std::fs::read_dir(directory).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with(&format!("hl{id}")) {
                found.push(name);
            }
        }
    }
    found
}

#[test]
fn dropping_the_lab_removes_every_namespace_bridge_and_directory() {
    if !running_as_root_or_skip("cleanup_on_drop") {
        return;
    }
    let lab = three_hosts_two_networks();
    let id = lab.id().to_string();
    let directory = lab.directory().to_path_buf();
    lab.spawn(3, "sleep", &["60"], &[]).unwrap();
    // 4 namespaces, 2 bridges, 7 bridge ports (3 hosts x 2 networks + the client).
    assert_eq!(lab_objects(&id).len(), 13, "{:?}", lab_objects(&id));
    drop(lab);
    assert_eq!(lab_objects(&id), Vec::<String>::new());
    assert!(!directory.exists());
    assert!(!Path::new(names::OWNER_DIRECTORY).join(&id).exists());
}

#[test]
fn halcyon_lab_up_tears_down_on_sigint_and_cleanup_removes_a_killed_lab() {
    if !running_as_root_or_skip("halcyon_lab_up") {
        return;
    }
    // Interrupted: SIGINT makes `up` tear everything down itself.
    let (mut child, id) = start_up();
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = wait_bounded(&mut child);
    assert!(status.success(), "{status}");
    assert_eq!(lab_objects(&id), Vec::<String>::new());

    // Killed: nothing of it runs its cleanup, so `halcyon-lab cleanup` must.
    let (mut child, id) = start_up();
    child.kill().unwrap();
    wait_bounded(&mut child);
    assert!(
        !lab_objects(&id).is_empty(),
        "a killed lab leaves its objects"
    );
    let output = Command::new(SERVE_BINARY).arg("cleanup").output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains(&format!("removed lab {id}")), "{printed}");
    assert_eq!(lab_objects(&id), Vec::<String>::new());
    assert!(!names::LabId::parse(&id).unwrap().directory().exists());
}

/// Starts `halcyon-lab up --hosts 2 --networks 1` and waits until it is ready; its lab id.
fn start_up() -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(SERVE_BINARY)
        .args(["up", "--hosts", "2", "--networks", "1", "--seconds", "60"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut id = None;
    for line in lines.by_ref().take(50) {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("lab ") {
            id = rest.split_whitespace().next().map(str::to_string);
        }
        if line.starts_with("ready") {
            break;
        }
    }
    // Keep reading, so that `up` can print its last line when it tears down.
    std::thread::spawn(move || lines.take(100).for_each(drop));
    let id = id.expect("up printed its lab id");
    assert!(!lab_objects(&id).is_empty());
    (child, id)
}

fn wait_bounded(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "halcyon-lab up did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}
