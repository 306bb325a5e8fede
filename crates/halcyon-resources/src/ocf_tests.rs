//! OCF agents: fake agents in a temporary OCF root (exit codes, environment, timeouts), and
//! the real `Dummy` and `IPaddr2` of Debian's `resource-agents` package.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use halcyon_config::OcfResource;

use crate::ocf::{
    AgentMetadata, AgentName, OCF_ROOT, OcfAgent, OcfStatus, ParameterMetadata, check_params,
    parse_metadata, validate_params,
};
use crate::testing::{Netns, process_alive, skip_unless_root};
use crate::{Health, PackageEnv, PackageResources, Resource, ResourceError, StopMode};

fn env() -> PackageEnv {
    PackageEnv {
        cluster: "c".into(),
        package: "web".into(),
        node: "n".into(),
    }
}

fn config(agent: &str, params: &[(&str, &str)], timeout: Duration) -> OcfResource {
    OcfResource {
        agent: agent.into(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        monitor_interval: Duration::from_secs(10),
        timeout,
        restart: 1,
        restart_window: None,
    }
}

/// True (after a visible skip line) when Debian's resource-agents is not installed.
fn skip_without_agents(test: &str) -> bool {
    if Path::new(OCF_ROOT)
        .join("resource.d/heartbeat/Dummy")
        .is_file()
    {
        return false;
    }
    eprintln!("skipped: needs the resource-agents package ({test})");
    true
}

/// A temporary OCF root with agent `test:Fake`, a shell script.
fn fake_agent(script: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("resource.d/test");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("Fake");
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    root
}

#[test]
fn exit_codes_have_their_ocf_names() {
    let names: Vec<String> = (0..=10)
        .map(|c| OcfStatus::from_code(Some(c)).describe())
        .collect();
    assert_eq!(
        names,
        [
            "0 (success)",
            "1 (generic error)",
            "2 (invalid argument)",
            "3 (unimplemented)",
            "4 (insufficient privileges)",
            "5 (not installed)",
            "6 (not configured)",
            "7 (not running)",
            "8 (running (master))",
            "9 (failed (master))",
            "10 (not an OCF exit code)",
        ]
    );
    assert_eq!(OcfStatus::from_code(None).describe(), "killed by a signal");
}

#[test]
fn agent_names_are_provider_and_type() {
    let name = AgentName::parse("ocf:heartbeat:IPaddr2").unwrap();
    assert_eq!(
        (name.provider.as_str(), name.kind.as_str()),
        ("heartbeat", "IPaddr2")
    );
    assert_eq!(
        name.path(Path::new("/usr/lib/ocf")),
        Path::new("/usr/lib/ocf/resource.d/heartbeat/IPaddr2")
    );
    assert!(AgentName::parse("heartbeat:Dummy").is_ok());
    assert!(AgentName::parse("Dummy").is_err());
    assert!(AgentName::parse("../..:x").is_err());
}

#[test]
fn meta_data_parameters_are_read_and_checked() {
    let xml = r#"<?xml version="1.0"?>
<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">
<resource-agent name="IPaddr2" version="1.0">
<parameters>
<parameter name="ip" unique="1" required="1">
<longdesc lang="en">The address &amp; more</longdesc>
<content type="string" default="" />
</parameter>
<parameter name="cidr_netmask">
<content type="string" default="24"/>
</parameter>
<parameter name="nic" required="0"/>
</parameters>
<actions><action name="start" timeout="20s" /></actions>
</resource-agent>"#;
    let metadata = parse_metadata(xml).unwrap();
    assert_eq!(
        metadata.parameters[0],
        ParameterMetadata {
            name: "ip".into(),
            required: true,
            unique: true,
            content_type: Some("string".into()),
            default: Some(String::new()),
        }
    );
    assert_eq!(metadata.parameters[1].default.as_deref(), Some("24"));
    assert!(!metadata.parameters[2].required);
    assert_eq!(metadata.parameters.len(), 3);

    let params: BTreeMap<String, String> = [("cidr_netmsk", "24"), ("colour", "blue")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        check_params("heartbeat:IPaddr2", &metadata, &params),
        [
            "ocf heartbeat:IPaddr2: unknown parameter \"cidr_netmsk\" (did you mean \"cidr_netmask\"?)",
            "ocf heartbeat:IPaddr2: unknown parameter \"colour\" (its parameters: ip, cidr_netmask, nic)",
            "ocf heartbeat:IPaddr2: missing required parameter \"ip\"",
        ]
    );
    assert!(check_params("x:y", &AgentMetadata::default(), &BTreeMap::new()).is_empty());
    assert!(parse_metadata("<parameters><parameter></parameters>").is_err());
}

#[tokio::test]
async fn a_fake_agent_gets_the_ocf_environment_and_its_codes_are_typed() {
    // In a directory of its own: the `.up` file next to the log goes with it.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let root = fake_agent(&format!(
        r#"echo "$1 $OCF_ROOT $OCF_RESOURCE_INSTANCE $OCF_RESOURCE_PROVIDER:$OCF_RESOURCE_TYPE $OCF_RESKEY_colour $HALCYON_PACKAGE" >> {log}
case $1 in start) exit 0;; monitor) [ -e {log}.up ] && exit 0; exit 7;; stop) exit 7;; esac
exit 3"#,
        log = log.display()
    ));
    let mut agent = OcfAgent::new(
        config("test:Fake", &[("colour", "blue")], Duration::from_secs(5)),
        "web.Fake",
    )
    .unwrap()
    .with_root(root.path());
    // start exits 0 but the monitor after it says "not running": a failed start.
    let e = agent.start(&env()).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("start succeeded but the monitor after it failed"),
        "{e}"
    );
    std::fs::write(format!("{}.up", log.display()), "").unwrap();
    agent.start(&env()).await.unwrap();
    assert_eq!(agent.monitor(&env()).await, Health::Running);
    // stop of a resource that is not running (7) is a success.
    agent.stop(&env(), StopMode::Graceful).await.unwrap();
    let outcome = agent.run("migrate_to", &env()).await.unwrap();
    assert_eq!(outcome.status, OcfStatus::Unimplemented);
    let lines = std::fs::read_to_string(&log).unwrap();
    let first = lines.lines().next().unwrap();
    assert_eq!(
        first,
        format!(
            "start {} web.Fake test:Fake blue web",
            root.path().display()
        )
    );
}

#[tokio::test]
async fn an_agent_that_times_out_has_its_process_group_killed() {
    let pid_file = tempfile::NamedTempFile::new().unwrap();
    let root = fake_agent(&format!(
        "sleep 30 & echo $! > {}; wait",
        pid_file.path().display()
    ));
    let mut agent = OcfAgent::new(config("test:Fake", &[], Duration::from_millis(300)), "x")
        .unwrap()
        .with_root(root.path());
    let e = agent.start(&env()).await.unwrap_err();
    assert!(matches!(e, ResourceError::TimedOut { .. }), "{e}");
    assert!(e.to_string().contains("process group was killed"), "{e}");
    let pid: i32 = std::fs::read_to_string(pid_file.path())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!process_alive(pid), "the agent's child survived");
    // A missing agent is a clear error.
    let mut missing = OcfAgent::new(config("test:Nope", &[], Duration::from_secs(1)), "x")
        .unwrap()
        .with_root(root.path());
    let e = missing.start(&env()).await.unwrap_err();
    assert!(
        e.to_string().contains("agent test:Nope is not installed"),
        "{e}"
    );
}

#[tokio::test]
async fn dummy_starts_monitors_and_stops_and_a_lost_state_file_is_a_failure() {
    if skip_without_agents("dummy_starts_monitors_and_stops_and_a_lost_state_file_is_a_failure") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("dummy.state");
    let mut dummy = OcfAgent::new(
        config(
            "ocf:heartbeat:Dummy",
            &[("state", state.to_str().unwrap())],
            Duration::from_secs(20),
        ),
        "web.Dummy",
    )
    .unwrap();
    assert_eq!(dummy.monitor(&env()).await, Health::Stopped);
    dummy.start(&env()).await.unwrap();
    assert!(state.exists());
    assert_eq!(dummy.monitor(&env()).await, Health::Running);
    assert_eq!(dummy.check(), Health::Running);

    // The state file vanishes: monitor says 7 while the resource should run, a failure.
    std::fs::remove_file(&state).unwrap();
    let health = dummy.monitor(&env()).await;
    assert!(
        matches!(&health, Health::Failed(why) if why.contains("monitor: 7 (not running)")),
        "{health:?}"
    );
    assert_eq!(dummy.check(), health, "check reports the last monitor");

    // Stop of a resource that is not running succeeds; afterwards monitor says stopped (7).
    dummy.stop(&env(), StopMode::Graceful).await.unwrap();
    assert_eq!(dummy.monitor(&env()).await, Health::Stopped);

    // A normal cycle: start, monitor 0, stop, monitor 7.
    dummy.start(&env()).await.unwrap();
    assert_eq!(dummy.monitor(&env()).await, Health::Running);
    dummy.stop(&env(), StopMode::Graceful).await.unwrap();
    assert!(!state.exists());
    let outcome = dummy.run("monitor", &env()).await.unwrap();
    assert_eq!(outcome.status, OcfStatus::NotRunning);
}

#[test]
fn halcyon_check_validates_parameters_against_real_meta_data() {
    if skip_without_agents("halcyon_check_validates_parameters_against_real_meta_data") {
        return;
    }
    let params = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        validate_params("heartbeat:Dummy", &params(&[("stat", "/tmp/x")])),
        ["ocf heartbeat:Dummy: unknown parameter \"stat\" (did you mean \"state\"?)"]
    );
    assert!(validate_params("heartbeat:Dummy", &params(&[("state", "/tmp/x")])).is_empty());
    assert_eq!(
        validate_params("ocf:heartbeat:IPaddr2", &params(&[("nic", "eth0")])),
        ["ocf ocf:heartbeat:IPaddr2: missing required parameter \"ip\""]
    );
    let missing = validate_params("heartbeat:NoSuchAgent", &params(&[]));
    assert_eq!(missing.len(), 1);
    assert!(missing[0].contains("is not installed"), "{missing:?}");
}

#[test]
fn ipaddr2_adds_monitors_and_removes_an_address_in_a_namespace() {
    if skip_unless_root("ipaddr2_adds_monitors_and_removes_an_address_in_a_namespace")
        || skip_without_agents("ipaddr2_adds_monitors_and_removes_an_address_in_a_namespace")
    {
        return;
    }
    // This kernel may lack dummy interfaces: a veth pair inside the namespace serves.
    let ns = Netns::new("o");
    ns.ip("link add eth0 type veth peer name eth0p");
    ns.ip("link set eth0p up");
    ns.ip("link set eth0 up");
    ns.ip("addr add 198.18.1.1/24 dev eth0");
    let mut agent = OcfAgent::new(
        config(
            "ocf:heartbeat:IPaddr2",
            &[
                ("ip", "198.18.1.77"),
                ("cidr_netmask", "24"),
                ("nic", "eth0"),
            ],
            Duration::from_secs(30),
        ),
        "web.IPaddr2",
    )
    .unwrap();
    let mut agent = ns.block_on(|| async move {
        assert_eq!(agent.monitor(&env()).await, Health::Stopped);
        agent.start(&env()).await.unwrap();
        assert_eq!(agent.monitor(&env()).await, Health::Running);
        agent
    });
    assert!(ns.has_address("eth0", "198.18.1.77"));
    ns.block_on(|| async {
        agent.stop(&env(), StopMode::Graceful).await.unwrap();
        assert_eq!(agent.monitor(&env()).await, Health::Stopped);
    });
    assert!(!ns.has_address("eth0", "198.18.1.77"));
}

#[tokio::test]
async fn not_running_and_failed_monitors_are_told_apart_and_a_restart_stops_first() {
    let dir = tempfile::tempdir().unwrap();
    let (mode, log) = (dir.path().join("mode"), dir.path().join("log"));
    // monitor: 0 when the mode file says ok, 1 (generic error) when it says broken, 7 (not
    // running) without it; start writes "ok", stop removes it.
    let root = fake_agent(&format!(
        r#"echo $1 >> {log}
case $1 in
start) echo ok > {mode}; exit 0;;
stop) rm -f {mode}; exit 0;;
monitor) [ -e {mode} ] || exit 7; [ "$(cat {mode})" = ok ] && exit 0; echo "backend unreachable"; exit 1;;
esac
exit 3"#,
        log = log.display(),
        mode = mode.display()
    ));
    let agent = OcfAgent::new(config("test:Fake", &[], Duration::from_secs(5)), "web.Fake")
        .unwrap()
        .with_root(root.path());
    let mut package = PackageResources::new(env(), vec![Box::new(agent)]);
    package.start().await.unwrap();
    assert_eq!(package.monitor_intervals(), [(0, Duration::from_secs(10))]);
    assert_eq!(package.monitor(0).await, Health::Running);

    std::fs::write(&mode, "broken").unwrap();
    let failed = package.monitor(0).await;
    assert_eq!(
        failed,
        Health::Failed(
            "ocf test:Fake (web.Fake) monitor: 1 (generic error); output: backend unreachable"
                .into()
        )
    );
    std::fs::remove_file(&mode).unwrap();
    let gone = package.monitor(0).await;
    assert_eq!(
        gone,
        Health::Failed("ocf test:Fake (web.Fake) monitor: 7 (not running)".into())
    );

    // The daemon's recovery: restart, which stops the instance before starting it again.
    std::fs::write(&log, "").unwrap();
    package.restart(0).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "stop\nstart\nmonitor\n",
        "stop, start, and the monitor that confirms the start"
    );
    assert_eq!(package.monitor(0).await, Health::Running);
    package.stop(StopMode::Graceful).await.unwrap();
}

#[tokio::test]
async fn last_status_names_the_monitors_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let code = dir.path().join("code");
    let root = fake_agent(&format!(
        "case $1 in monitor) exit $(cat {});; esac; exit 0",
        code.display()
    ));
    let mut agent = OcfAgent::new(config("test:Fake", &[], Duration::from_secs(5)), "x")
        .unwrap()
        .with_root(root.path());
    assert_eq!(agent.last_status(), None);
    std::fs::write(&code, "0").unwrap();
    agent.start(&env()).await.unwrap();
    assert_eq!(agent.last_status(), Some(OcfStatus::Success));
    for (written, status) in [
        ("7", OcfStatus::NotRunning),
        ("1", OcfStatus::GenericError),
        ("5", OcfStatus::NotInstalled),
    ] {
        std::fs::write(&code, written).unwrap();
        assert!(matches!(agent.monitor(&env()).await, Health::Failed(_)));
        assert_eq!(agent.last_status(), Some(status));
    }
}

#[tokio::test]
async fn a_dummy_whose_state_file_is_removed_is_recovered_by_a_restart() {
    if skip_without_agents("a_dummy_whose_state_file_is_removed_is_recovered_by_a_restart") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("dummy.state");
    let dummy = OcfAgent::new(
        config(
            "heartbeat:Dummy",
            &[("state", state.to_str().unwrap())],
            Duration::from_secs(20),
        ),
        "web.Dummy",
    )
    .unwrap();
    let mut package = PackageResources::new(env(), vec![Box::new(dummy)]);
    package.start().await.unwrap();
    assert_eq!(package.monitor(0).await, Health::Running);
    std::fs::remove_file(&state).unwrap();
    assert!(
        matches!(package.monitor(0).await, Health::Failed(why) if why.contains("7 (not running)"))
    );
    package.restart(0).await.unwrap();
    assert!(state.exists(), "Dummy started again");
    assert_eq!(package.monitor(0).await, Health::Running);
    package.stop(StopMode::Graceful).await.unwrap();
    assert!(!state.exists());
}
