//! The CLI as an administrator uses it: exit codes, error lines, readable plans.

use std::path::PathBuf;
use std::process::{Command, Output};

fn halcyon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_halcyon"))
        .args(args)
        // Texts print local times: read them in UTC.
        .env("TZ", "UTC")
        .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .output()
        .expect("the halcyon binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_accepts_the_example_with_a_one_line_summary() {
    let o = halcyon(&["check", "examples/cluster"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "ok: cluster \"example\": 4 nodes, 3 networks, 5 packages in 6 files\n\
         timings: heartbeat 100 ms x 4 (detection 400 ms), Raft heartbeat 33 ms, election timeout 80-160 ms (a new coordinator within 369 ms), lease 619 ms (fencing lead 67 ms); a lease renewal must come back within 200 ms (two network round trips)\n"
    );
}

#[test]
fn check_shows_the_fast_profiles_timings_and_refuses_an_unknown_profile_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string("../../examples/cluster/cluster.toml").unwrap();
    let with_profile = |profile: &str| {
        let text = example.replacen(
            "[heartbeat]",
            &format!("[heartbeat]\nprofile = \"{profile}\""),
            1,
        );
        // The example's own interval and sensitivity would override the profile.
        let text: String = text
            .lines()
            .filter(|l| !l.starts_with("interval") && !l.starts_with("sensitivity"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(dir.path().join("cluster.toml"), text).unwrap();
    };
    with_profile("fast");
    let o = halcyon(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        stdout(&o).lines().nth(1),
        Some(
            "timings: heartbeat 30 ms x 3 (detection 90 ms), Raft heartbeat 10 ms, election timeout 24-48 ms (a new coordinator within 111 ms), lease 221 ms (fencing lead 20 ms); a lease renewal must come back within 60 ms (two network round trips)"
        ),
        "{}",
        stdout(&o)
    );
    with_profile("quick");
    let o = halcyon(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("cluster.toml:10:11: heartbeat.profile: \"quick\" is not a valid value; expected one of default, fast"),
        "{out}"
    );
    assert_eq!(stderr(&o), "1 error found\n");
}

#[test]
fn check_lists_every_mistake_with_its_position_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cluster.toml"),
        std::fs::read_to_string("../../examples/cluster/cluster.toml")
            .unwrap()
            .replace("sensitivity = 4 ", "sensitivity = 1 "),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("db.toml"),
        "[package]\nname = \"db\"\nnodes = [\"node1\", \"nod2\"]\nauto_runn = true\n",
    )
    .unwrap();
    let o = halcyon(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].ends_with("cluster.toml:11:15: heartbeat.sensitivity: 1 is out of range; expected an integer from 2 to 100"), "{out}");
    assert!(lines[1].ends_with("db.toml:3:19: package.nodes[2]: node \"nod2\" is not defined in the cluster; expected one of \"node1\", \"node2\", \"node3\", \"node4\"; hint: did you mean \"node2\"?"), "{out}");
    assert!(
        lines[2].ends_with(
            "db.toml:4:1: package.auto_runn: unknown field; hint: did you mean \"auto_run\"?"
        ),
        "{out}"
    );
    assert_eq!(stderr(&o), "3 errors found\n");
}

#[test]
fn emulate_prints_a_readable_failover_plan() {
    let o = halcyon(&[
        "emulate",
        "-c",
        "examples/cluster",
        "--at",
        "2026-03-01T10:00:00Z",
        "node_down",
        "node1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("event: node_down node1 (failure) at 2026-03-01 10:00:00\n"),
        "{out}"
    );
    assert!(out.contains("await release of node1"), "{out}");
    assert!(out.contains("run db on node2: node1 failed; configured_node: node2 is the highest-priority eligible node"), "{out}");
}

#[test]
fn emulate_json_is_machine_readable() {
    let o = halcyon(&[
        "emulate",
        "-c",
        "examples/cluster",
        "--json",
        "node_down",
        "node2",
        "graceful",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let emulation: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let plan = &emulation["plan"];
    assert_eq!(plan["event"]["kind"], "node_down");
    // node2 leaves gracefully: it releases its packages; the others take over.
    let program = emulation["program"].as_str().unwrap();
    assert!(
        program.lines().any(
            |l| l.starts_with("  node2: \"halcyon:release\" 0   -> ") && l.contains("halt nfs")
        ),
        "{program}"
    );
    assert!(!program.contains("node2: \"halcyon:acquire\""), "{program}");
    assert_eq!(plan["event"]["how"], "graceful");
    let halted: Vec<&str> = plan["steps"][0]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["package"].as_str().unwrap_or(""))
        .collect();
    assert!(halted.contains(&"nfs"), "{plan}");
}

#[test]
fn emulate_refuses_bad_events_and_requests_precisely() {
    let o = halcyon(&["emulate", "-c", "examples/cluster", "node_down"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("node_down: expected `halcyon emulate node_down NODE [failure|graceful|graceful_takeover|forced]`, got 0 argument(s)"), "{}", stderr(&o));

    let o = halcyon(&[
        "emulate",
        "-c",
        "examples/cluster",
        "package_move",
        "db",
        "node3",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("refused: package db cannot run on node3: not in the node list"),
        "{}",
        stderr(&o)
    );

    let o = halcyon(&["emulate", "-c", "examples/cluster", "node_up", "node9"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("node \"node9\" is not in the configuration"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn explain_says_node_by_node_why() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.toml");
    std::fs::write(
        &state,
        "members = [\"node2\", \"node3\", \"node4\"]\n[packages.db]\nnodes = [\"node2\"]\nfailures = { node1 = \"2026-03-01T09:00:00Z\" }\n",
    )
    .unwrap();
    let o = halcyon(&[
        "explain",
        "db",
        "-c",
        "examples/cluster",
        "-s",
        state.to_str().unwrap(),
        "--at",
        "2026-03-01T09:30:00Z",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("package db: up on node2\n"), "{out}");
    assert!(out.contains("node1   #1  not eligible: not a member of the cluster; failed here at 2026-03-01 09:00:00; excluded until 2026-03-01 10:00:00"), "{out}");
    assert!(
        out.contains("node3    -  not eligible: not in the node list"),
        "{out}"
    );
}

#[test]
fn a_state_file_naming_unknown_nodes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.toml");
    std::fs::write(&state, "members = [\"node1\", \"node7\"]\n").unwrap();
    let o = halcyon(&[
        "explain",
        "db",
        "-c",
        "examples/cluster",
        "-s",
        state.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("members: node \"node7\" is not in the configuration"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn check_reports_monitor_predicate_and_sampler_mistakes_at_their_position() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        "../../examples/cluster/cluster.toml",
        dir.path().join("cluster.toml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("web.toml"),
        "[package]\nname = \"web\"\nnodes = [\"node1\", \"node2\"]\n\n[[monitor]]\nsample = \"builtin:fs_usage /srv\"\npredicate = \"X > 90 &&\"\nrearm = \"X <> 80\"\nevent = \"web_full\"\n",
    )
    .unwrap();
    let o = halcyon(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].contains(
            "web.toml:6:10: monitor[1].sample: unknown built-in sampler \"builtin:fs_usage\""
        ),
        "{out}"
    );
    assert!(
        lines[1].contains("web.toml:7:23: monitor[1].predicate: unexpected end of expression"),
        "{out}"
    );
    assert!(
        lines[2].contains("web.toml:8:12: monitor[1].rearm: "),
        "{out}"
    );
}

#[test]
fn import_hacmp_writes_native_rules_that_check_accepts_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let fixtures = "crates/halcyon-events/tests/fixtures/hacmp";
    let args = [
        "import",
        "hacmp",
        &format!("{fixtures}/rules.hacmprd"),
        "--rp-dir",
        &format!("{fixtures}/rp"),
        "-o",
        out.to_str().unwrap(),
    ];
    let o = halcyon(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("imported 2 rules"), "{}", stdout(&o));
    assert!(out.join("rules.toml").exists() && out.join("rwho.rp").exists());

    // A second import refuses to overwrite what is there.
    let before = std::fs::read_to_string(out.join("rules.toml")).unwrap();
    std::fs::write(
        out.join("rules.toml"),
        format!("{before}\n# edited by the administrator\n"),
    )
    .unwrap();
    let o = halcyon(&args);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("exist already and were left untouched"),
        "{}",
        stderr(&o)
    );
    assert!(
        std::fs::read_to_string(out.join("rules.toml"))
            .unwrap()
            .ends_with("# edited by the administrator\n")
    );

    // The imported rules live beside the configuration and are checked with it.
    let cfg = dir.path().join("cfg");
    std::fs::create_dir(&cfg).unwrap();
    for f in ["cluster.toml", "packages/db.toml"] {
        std::fs::copy(
            format!("../../examples/cluster/{f}"),
            cfg.join(f.rsplit('/').next().unwrap()),
        )
        .unwrap();
    }
    for f in ["rules.toml", "rwho.rp"] {
        std::fs::copy(out.join(f), cfg.join(f)).unwrap();
    }
    let o = halcyon(&["check", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let summary = stdout(&o).lines().next().unwrap_or_default().to_owned();
    assert!(summary.ends_with(", 2 event rules"), "{}", stdout(&o));

    // A mistake in a recovery program is reported at its line.
    let rp = std::fs::read_to_string(cfg.join("rwho.rp")).unwrap();
    let lines = rp.lines().count();
    std::fs::write(cfg.join("rwho.rp"), format!("{rp}all \"echo x\" Q\n")).unwrap();
    let o = halcyon(&["check", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stdout(&o).contains(&format!("rwho.rp:{}:", lines + 1)),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("\"Q\" is not an exit status"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn import_hacmp_refuses_a_malformed_record_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.hacmprd");
    // A record one line short: name, state, program, type, level, variable, vector, predicate.
    std::fs::write(
        &rules,
        "TE_JOIN_NODE\n0\n/usr/sbin/cluster/events/node_up.rp\n2\n0\n\n\n\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = halcyon(&[
        "import",
        "hacmp",
        rules.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).contains("rules.hacmprd:1:1"), "{}", stdout(&o));
    assert!(
        stdout(&o).to_lowercase().contains("record 1"),
        "{}",
        stdout(&o)
    );
    assert!(!out.exists(), "nothing is written for a malformed file");
}

#[test]
fn check_validates_ocf_parameters_against_the_agents_meta_data() {
    if !std::path::Path::new("/usr/lib/ocf/resource.d/heartbeat/Dummy").exists() {
        println!("skipped: needs the resource-agents package (ocf:heartbeat:Dummy)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        "../../examples/cluster/cluster.toml",
        dir.path().join("cluster.toml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("dummy.toml"),
        "[package]\nname = \"dummy\"\nnodes = [\"node1\", \"node2\"]\n\n[[resource]]\nkind = \"ocf\"\nagent = \"heartbeat:Dummy\"\nparams = { stat = \"/run/dummy.state\" }\n",
    )
    .unwrap();
    let o = halcyon(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("dummy.toml:7:9: resource[1].params: "),
        "{out}"
    );
    assert!(
        out.contains("stat") && out.contains("did you mean \"state\""),
        "{out}"
    );

    std::fs::write(
        dir.path().join("dummy.toml"),
        "[package]\nname = \"dummy\"\nnodes = [\"node1\", \"node2\"]\n\n[[resource]]\nkind = \"ocf\"\nagent = \"heartbeat:Dummy\"\nparams = { state = \"/run/dummy.state\" }\n",
    )
    .unwrap();
    let o = halcyon(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn import_serviceguard_translates_a_package_and_its_control_script() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = "crates/halcyon/tests/fixtures/serviceguard";
    let out = dir.path().join("out");
    let o = halcyon(&[
        "import",
        "serviceguard",
        &format!("{fixtures}/sna.conf"),
        "--control-script",
        &format!("{fixtures}/sna.cntl"),
        "-c",
        "examples/cluster",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let notes = stdout(&o);
    assert!(
        notes.contains("sna.conf:21: STORAGE_GROUP is not imported"),
        "{notes}"
    );
    assert!(notes.contains("HALT_SCRIPT_TIMEOUT NO_TIMEOUT"), "{notes}");
    assert!(notes.contains("test_return"), "{notes}");

    let package = std::fs::read_to_string(out.join("sna.toml")).unwrap();
    for expected in [
        "name = \"sna\"",
        "nodes = [\"node1\", \"node2\"]",
        "failover_policy = \"configured_node\"",
        "run_timeout = \"300s\"",
        "kind = \"volume\"\nname = \"vg_sna\"\nactivate = \"vgchange -a e vg_sna\"",
        "kind = \"filesystem\"\ndevice = \"/dev/vg_sna/lvol1\"\nmount_point = \"/var/opt/sna\"\nfstype = \"ext4\"\noptions = \"rw\"",
        "kind = \"ip\"\nnetwork = \"lan1\"\naddress = \"198.18.1.60/24\"",
        "kind = \"service\"\nname = \"snad\"\ncommand = \"/opt/sna/bin/snad -f\"\nrestart = 2\nhalt_timeout = \"30s\"",
    ] {
        assert!(
            package.contains(expected),
            "missing {expected:?} in:\n{package}"
        );
    }
    // Resources keep Serviceguard's order: volume, file system, address, customer commands, service.
    let order: Vec<usize> = [
        "kind = \"volume\"",
        "kind = \"filesystem\"",
        "kind = \"ip\"",
        "kind = \"script\"",
        "kind = \"service\"",
    ]
    .iter()
    .map(|k| package.find(k).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{package}");
    let run = std::fs::read_to_string(out.join("sna-run.sh")).unwrap();
    assert!(
        run.contains("snap stop\nsnap start\nsnapadmin start_ls, ls_name=HALS"),
        "{run}"
    );

    // The result is a valid package of the example cluster.
    let cfg = dir.path().join("cfg");
    std::fs::create_dir(&cfg).unwrap();
    std::fs::copy(
        "../../examples/cluster/cluster.toml",
        cfg.join("cluster.toml"),
    )
    .unwrap();
    std::fs::copy(out.join("sna.toml"), cfg.join("sna.toml")).unwrap();
    let o = halcyon(&["check", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn import_serviceguard_refuses_what_it_cannot_translate_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("bad.conf");
    std::fs::write(
        &conf,
        "PACKAGE_NAME bad\nNODE_NAME node1\nNODE_NAME node2\nAUTO_RUN MAYBE\nSERVICE_NAME ghost\n",
    )
    .unwrap();
    let cntl = dir.path().join("bad.cntl");
    std::fs::write(&cntl, "IP[0]=\"10.1.2.3\"\n").unwrap();
    let out = dir.path().join("out");
    let o = halcyon(&[
        "import",
        "serviceguard",
        conf.to_str().unwrap(),
        "--control-script",
        cntl.to_str().unwrap(),
        "-c",
        "examples/cluster",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let text = stdout(&o);
    assert!(
        text.contains("bad.conf:4:1: AUTO_RUN: \"MAYBE\" is not YES or NO"),
        "{text}"
    );
    assert!(
        text.contains(
            "bad.conf:5:1: SERVICE_NAME: service \"ghost\" has no SERVICE_CMD in the control script"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "bad.cntl:1:1: IP[0]: 10.1.2.3 is in none of the cluster's networks' subnets"
        ),
        "{text}"
    );
    assert!(!out.exists(), "nothing is written");
}

/// A one-request API on loopback that answers `status` with `body`, and the request it got.
fn one_answer(
    status: u16,
    body: &'static str,
) -> (std::net::SocketAddr, std::thread::JoinHandle<String>) {
    let (addr, server) = answers_in_turn(vec![(status, body)]);
    let server = std::thread::spawn(move || server.join().unwrap().remove(0));
    (addr, server)
}

/// A loopback API that answers one request per connection with each of `answers` in turn
/// and returns the requests it read.
fn answers_in_turn(
    answers: Vec<(u16, &'static str)>,
) -> (std::net::SocketAddr, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || {
        let mut requests = Vec::new();
        for (status, body) in answers {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            let mut stream = loop {
                match listener.accept() {
                    Ok((stream, _)) => break stream,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        assert!(std::time::Instant::now() < deadline, "no request came");
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            };
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then the body its Content-Length announces.
            loop {
                let n = stream.read(&mut buf).unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).into_owned();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length || n == 0 {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let reason = if status < 300 { "OK" } else { "Error" };
            let response = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes()).unwrap();
            requests.push(String::from_utf8_lossy(&request).into_owned());
        }
        requests
    });
    (addr, server)
}

#[test]
fn an_unknown_package_is_invalid_input_and_exits_2() {
    let (addr, server) = one_answer(
        404,
        r#"{"schema_version":2,"error":"unknown package \"nope\" (packages: db, web)"}"#,
    );
    let o = halcyon(&[
        "package",
        "run",
        "nope",
        "--insecure",
        "--api",
        &addr.to_string(),
    ]);
    let request = server.join().unwrap();
    assert!(
        request.starts_with("POST /v1/packages/nope/run?request="),
        "{request}"
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "error: unknown package \"nope\" (packages: db, web)\n"
    );
}

#[test]
fn a_refused_operation_exits_1() {
    let (addr, server) = one_answer(
        409,
        r#"{"schema_version":2,"error":"refused: n2 is already a voter (voters: n1, n2, n3)"}"#,
    );
    let o = halcyon(&[
        "node",
        "add",
        "n2",
        "--insecure",
        "--api",
        &addr.to_string(),
    ]);
    let request = server.join().unwrap();
    assert!(
        request.starts_with("POST /v1/nodes/n2/add?request="),
        "{request}"
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "error: refused: n2 is already a voter (voters: n1, n2, n3)\n"
    );
}

#[test]
fn an_accepted_operation_prints_its_note_and_exits_0() {
    let (addr, server) = one_answer(
        200,
        r#"{"schema_version":2,"note":"n2 is no longer a voter; voters: n1, n3","voters":["n1","n3"]}"#,
    );
    let o = halcyon(&[
        "node",
        "remove",
        "n2",
        "--insecure",
        "--api",
        &addr.to_string(),
    ]);
    server.join().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "n2 is no longer a voter; voters: n1, n3\n");
}

#[test]
fn an_answer_of_another_schema_version_is_not_read() {
    let (addr, server) = one_answer(200, r#"{"schema_version":3,"cluster":"x"}"#);
    let o = halcyon(&["status", "--insecure", "--api", &addr.to_string()]);
    server.join().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the API answered schema version 3; this halcyon reads version 2"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn invalid_live_arguments_exit_2_before_any_request() {
    // Nothing listens there: a request would fail with 1, not 2.
    let nowhere = "127.0.0.1:9";
    for (args, message) in [
        (
            &["cluster", "restart", "--api", nowhere][..],
            "error: unknown cluster operation \"restart\"; expected start or halt\n",
        ),
        (
            &[
                "node",
                "halt",
                "n1",
                "--takeover",
                "--force",
                "--api",
                nowhere,
            ][..],
            "error: --takeover and --force exclude each other\n",
        ),
        (
            &["event", "again", "--api", nowhere][..],
            "error: unknown event operation \"again\"; expected resume, retry, skip or raise\n",
        ),
        (
            &["event", "raise", "UE_X", "--api", nowhere][..],
            "error: expected `halcyon event raise NAME --node NODE [--value V ...]`\n",
        ),
    ] {
        let o = halcyon(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o), message, "{args:?}");
    }
}

#[test]
fn no_node_answering_is_a_failure_and_exits_1() {
    // A port nothing listens on: bound, then closed.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let o = halcyon(&["status", "--insecure", "--api", &addr.to_string()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("error: no node answered: "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn no_cluster_given_is_invalid_input_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_halcyon"))
        .args(["status"])
        .env("XDG_RUNTIME_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("error: no cluster given: use --api ADDR or --config DIR"),
        "{}",
        stderr(&o)
    );
}

/// Issue 15, finding 9: an operation whose answer was lost (503: the leader did not answer
/// the forwarded request) is asked again with the same request id, and the CLI reports the
/// outcome the cluster then gives.
#[test]
fn an_unanswered_operation_is_asked_again_with_the_same_request_id() {
    let (addr, server) = answers_in_turn(vec![
        (
            503,
            r#"{"schema_version":2,"error":"not leader: forward to n1 at 127.0.0.1:1 (it did not answer: incomplete HTTP response)"}"#,
        ),
        (
            200,
            r#"{"schema_version":2,"note":"n2 is no longer a voter; voters: n1, n3","voters":["n1","n3"]}"#,
        ),
    ]);
    let o = halcyon(&[
        "node",
        "remove",
        "n2",
        "--insecure",
        "--api",
        &addr.to_string(),
    ]);
    let requests = server.join().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "n2 is no longer a voter; voters: n1, n3\n");
    assert!(stderr(&o).contains("asking again"), "{}", stderr(&o));
    let first_line = |r: &str| r.lines().next().unwrap().to_owned();
    assert_eq!(first_line(&requests[0]), first_line(&requests[1]));
    let id = first_line(&requests[0]);
    let id = id
        .strip_prefix("POST /v1/nodes/n2/remove?request=")
        .and_then(|rest| rest.strip_suffix(" HTTP/1.1"))
        .unwrap_or_else(|| panic!("{id}"));
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
}

#[test]
fn the_token_comes_from_token_file_then_halcyon_token_and_an_unreadable_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "hct_from_file\n").unwrap();
    let answer = r#"{"schema_version":2,"note":"n2 is no longer a voter; voters: n1, n3","voters":["n1","n3"]}"#;
    let (addr, server) = one_answer(200, answer);
    let o = Command::new(env!("CARGO_BIN_EXE_halcyon"))
        .args([
            "node",
            "remove",
            "n2",
            "--insecure",
            "--api",
            &addr.to_string(),
            "--token-file",
        ])
        .arg(&file)
        .env("HALCYON_TOKEN", "hct_from_env")
        .output()
        .unwrap();
    let request = server.join().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        request.contains("Authorization: Bearer hct_from_file\r\n"),
        "{request}"
    );
    let (addr, server) = one_answer(200, answer);
    let o = Command::new(env!("CARGO_BIN_EXE_halcyon"))
        .args([
            "node",
            "remove",
            "n2",
            "--insecure",
            "--api",
            &addr.to_string(),
        ])
        .env("HALCYON_TOKEN", "hct_from_env")
        .output()
        .unwrap();
    let request = server.join().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        request.contains("Authorization: Bearer hct_from_env\r\n"),
        "{request}"
    );
    let missing = dir.path().join("missing");
    let o = halcyon(&[
        "status",
        "--api",
        "127.0.0.1:9",
        "--token-file",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with(&format!(
            "error: --token-file {}: cannot be read: ",
            missing.display()
        )),
        "{}",
        stderr(&o)
    );
}

#[test]
fn status_help_says_how_times_quorum_loss_and_exclusions_read() {
    let out = halcyon(&["status", "--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for said in [
        "Times are local `HH:MM:SS`",
        "`--json` has RFC 3339 times",
        "every unreachable voter is named (the witness too)",
        "\"last known\"",
        "A node excluded for not completing its work says why, since when",
    ] {
        assert!(text.contains(said), "{said:?} in {text}");
    }
    // `-h` stays one line.
    let short = stdout(&halcyon(&["status", "-h"]));
    assert!(!short.contains("excluded"), "{short}");
}
