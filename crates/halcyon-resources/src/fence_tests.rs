//! Fence agents: the test agent `tests/agents/fence_test` (called through symbolic links of
//! their own in a temporary directory, so each test has its own metadata cache entry and its
//! own variant), the lab's `fence_lab` (metadata only), and Debian's `fence_ipmilan`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use halcyon_config::{FenceDevice, FenceLevel, Fencing};

use crate::fence::{
    DETAIL_MAX, DEVICE_ATTEMPTS, FenceAction, FenceAttempt, FenceOutcome, agent_metadata,
    check_device, fence, parse_metadata, resolve_agent,
};
use crate::testing::process_alive;

const TARGET: &str = "n2";

/// A temporary directory holding links to the test agent and the log of its calls.
struct Bench {
    dir: tempfile::TempDir,
}

/// One call as the test agent logged it.
#[derive(Debug, PartialEq, Eq)]
struct Call {
    agent: String,
    action: String,
    /// The stdin lines, each after a space.
    stdin: String,
}

impl Bench {
    fn new() -> Self {
        Bench {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("calls.log")
    }

    /// A link named `name` to `tests/agents/fence_test` (its name picks the metadata
    /// variant), whose every call is also counted in `NAME.calls`.
    fn agent(&self, name: &str) -> PathBuf {
        let link = self.dir.path().join(name);
        if !link.exists() {
            let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agents/fence_test");
            std::os::unix::fs::symlink(target, &link).unwrap();
            std::fs::write(self.dir.path().join(format!("{name}.calls")), "").unwrap();
        }
        link
    }

    /// A device of agent link `name`, logging to [`Bench::log`], with `options`.
    fn device(&self, name: &str, options: &[(&str, &str)], timeout: Duration) -> FenceDevice {
        let mut all: BTreeMap<String, String> = options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        all.insert("log".into(), self.log().display().to_string());
        FenceDevice {
            agent: self.agent(name).display().to_string(),
            options: all,
            timeout,
        }
    }

    fn calls(&self) -> Vec<Call> {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        text.lines()
            .map(|line| {
                let (head, stdin) = line.split_once(':').unwrap();
                let (agent, action) = head.split_once(' ').unwrap();
                Call {
                    agent: agent.into(),
                    action: action.into(),
                    stdin: stdin.into(),
                }
            })
            .collect()
    }

    /// The actions agent link `name` was called with, metadata included.
    fn actions_of(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.calls")))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

const SECOND: Duration = Duration::from_secs(5);

fn fencing(levels: Vec<Vec<FenceDevice>>) -> Fencing {
    Fencing {
        levels: levels
            .into_iter()
            .map(|devices| FenceLevel { devices })
            .collect(),
    }
}

/// (level, device, action, exit, ok) of each attempt.
fn steps(outcome: &FenceOutcome) -> Vec<(usize, usize, &str, Option<i32>, bool)> {
    outcome
        .attempts
        .iter()
        .map(|a| (a.level, a.device, a.action.as_str(), a.exit, a.ok))
        .collect()
}

/// A device of agent `agent` without options.
fn bare_device(agent: &str) -> FenceDevice {
    FenceDevice {
        agent: agent.into(),
        options: BTreeMap::new(),
        timeout: SECOND,
    }
}

/// One level of one device.
fn one_device(device: FenceDevice) -> Fencing {
    fencing(vec![vec![device]])
}

#[tokio::test]
async fn one_level_off_is_confirmed_by_status() {
    let bench = Bench::new();
    let device = bench.device("fence_test", &[], SECOND);
    let outcome = fence(TARGET, &one_device(device), FenceAction::Off).await;
    assert!(outcome.confirmed, "{outcome:#?}");
    assert_eq!(outcome.level, Some(1));
    assert_eq!(outcome.target, TARGET);
    assert_eq!(
        steps(&outcome),
        [
            (1, 1, "off", Some(0), true),
            (1, 1, "status", Some(2), true)
        ]
    );
    assert_eq!(
        outcome.attempts[1].detail,
        "exit 2 (off); output: Status: OFF"
    );
    // The convention's stdin: action, nodename, the options in order, then the plug.
    let log = bench.log().display().to_string();
    let calls = bench.calls();
    assert_eq!(
        calls,
        [
            Call {
                agent: "fence_test".into(),
                action: "off".into(),
                stdin: format!(" action=off nodename=n2 log={log} plug=n2"),
            },
            Call {
                agent: "fence_test".into(),
                action: "status".into(),
                stdin: format!(" action=status nodename=n2 log={log} plug=n2"),
            },
        ]
    );
    let summary = outcome.summary();
    let agent = &outcome.attempts[0].agent;
    let took = summary
        .strip_prefix(&format!(
            "n2 fenced (off) by level 1: {agent} off exit 0, status exit 2 (off), "
        ))
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(took.ends_with(" ms") || took.ends_with(" s"), "{summary}");
}

#[tokio::test]
async fn a_failing_first_level_hands_over_to_the_second() {
    let bench = Bench::new();
    let first = bench.device("fence_test_first", &[("fail", "off")], SECOND);
    let second = bench.device("fence_test_second", &[], SECOND);
    let outcome = fence(
        TARGET,
        &fencing(vec![vec![first], vec![second]]),
        FenceAction::Off,
    )
    .await;
    assert!(outcome.confirmed, "{outcome:#?}");
    assert_eq!(outcome.level, Some(2));
    assert_eq!(
        steps(&outcome),
        [
            (1, 1, "off", Some(1), false),
            (1, 1, "off", Some(1), false),
            (2, 1, "off", Some(0), true),
            (2, 1, "status", Some(2), true),
        ]
    );
    assert_eq!(
        outcome.attempts[0].detail,
        "exit 1; output: fence_test: off failed as asked"
    );
    // Each device call is tried DEVICE_ATTEMPTS times, no more.
    let first_calls = bench
        .calls()
        .iter()
        .filter(|c| c.agent == "fence_test_first")
        .count();
    assert_eq!(first_calls, DEVICE_ATTEMPTS);
    assert!(
        outcome
            .summary()
            .starts_with("n2 fenced (off) by level 2: "),
        "{}",
        outcome.summary()
    );
}

#[tokio::test]
async fn a_retry_that_succeeds_keeps_the_level() {
    let bench = Bench::new();
    let device = bench.device("fence_test", &[("fail_first", "off")], SECOND);
    let outcome = fence(TARGET, &one_device(device), FenceAction::Off).await;
    assert_eq!(outcome.level, Some(1), "{outcome:#?}");
    assert_eq!(
        steps(&outcome),
        [
            (1, 1, "off", Some(1), false),
            (1, 1, "off", Some(0), true),
            (1, 1, "status", Some(2), true),
        ]
    );
    let summary = outcome.summary();
    assert!(summary.contains("level 1: "), "{summary}");
    assert!(
        summary.contains("off exit 1, off exit 0, status exit 2 (off)"),
        "{summary}"
    );
}

#[tokio::test]
async fn a_failing_second_device_skips_the_rest_of_its_level() {
    let bench = Bench::new();
    let a = bench.device("fence_test_a", &[], SECOND);
    let b = bench.device("fence_test_b", &[("fail", "off")], SECOND);
    let c = bench.device("fence_test_c", &[], SECOND);
    let d = bench.device("fence_test_d", &[], SECOND);
    let outcome = fence(
        TARGET,
        &fencing(vec![vec![a, b, c], vec![d]]),
        FenceAction::Off,
    )
    .await;
    assert!(outcome.confirmed, "{outcome:#?}");
    assert_eq!(outcome.level, Some(2));
    assert_eq!(
        steps(&outcome),
        [
            (1, 1, "off", Some(0), true),
            (1, 1, "status", Some(2), true),
            (1, 2, "off", Some(1), false),
            (1, 2, "off", Some(1), false),
            (2, 1, "off", Some(0), true),
            (2, 1, "status", Some(2), true),
        ]
    );
    let agents: Vec<String> = bench.calls().into_iter().map(|c| c.agent).collect();
    assert!(!agents.contains(&"fence_test_c".to_owned()), "{agents:?}");
}

#[tokio::test]
async fn every_level_failing_is_not_confirmed_and_the_summary_says_why() {
    let bench = Bench::new();
    let first = bench.device("fence_test_first", &[("fail", "off")], SECOND);
    let second = bench.device(
        "fence_test_second",
        &[("status_after_off", "error")],
        SECOND,
    );
    let outcome = fence(
        TARGET,
        &fencing(vec![vec![first], vec![second]]),
        FenceAction::Off,
    )
    .await;
    assert!(!outcome.confirmed);
    assert_eq!(outcome.level, None);
    let a1 = &outcome.attempts[0].agent;
    let a2 = &outcome.attempts.last().unwrap().agent;
    assert_eq!(
        outcome.summary(),
        format!(
            "n2 NOT fenced (off): every level failed: level 1 {a1} off: exit 1; output: \
             fence_test: off failed as asked; level 2 {a2} status: exit 1 (error); output: \
             fence_test: cannot read the power state"
        )
    );
}

#[tokio::test]
async fn a_timeout_kills_the_agents_process_group() {
    let bench = Bench::new();
    let device = bench.device("fence_test", &[("hang", "off")], Duration::from_millis(500));
    let outcome = fence(TARGET, &one_device(device), FenceAction::Off).await;
    assert!(!outcome.confirmed);
    assert_eq!(
        steps(&outcome),
        [(1, 1, "off", None, false), (1, 1, "off", None, false)]
    );
    for attempt in &outcome.attempts {
        assert_eq!(
            attempt.detail,
            "timed out after 0.5 s; its process group was killed"
        );
        assert!(attempt.took_ms >= 500, "{attempt:?}");
    }
    // The agent's child (a `sleep 1000` in its process group) died with it.
    let children = std::fs::read_to_string(format!("{}.child", bench.log().display())).unwrap();
    let pids: Vec<i32> = children.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(pids.len(), DEVICE_ATTEMPTS);
    for pid in pids {
        assert!(!process_alive(pid), "the agent's child {pid} still runs");
    }
}

#[tokio::test]
async fn still_on_after_off_fails_the_device() {
    let bench = Bench::new();
    let device = bench.device("fence_test", &[("status_after_off", "on")], SECOND);
    let outcome = fence(TARGET, &one_device(device), FenceAction::Off).await;
    assert!(!outcome.confirmed);
    // The whole call (off, then status) is retried.
    assert_eq!(
        steps(&outcome),
        [
            (1, 1, "off", Some(0), true),
            (1, 1, "status", Some(0), false),
            (1, 1, "off", Some(0), true),
            (1, 1, "status", Some(0), false),
        ]
    );
    assert_eq!(
        outcome.attempts[1].detail,
        "exit 0 (on): still on after off; output: Status: ON"
    );
}

#[tokio::test]
async fn without_a_status_action_off_exit_0_confirms_with_a_note() {
    let bench = Bench::new();
    let device = bench.device("fence_test_nostatus", &[], SECOND);
    let outcome = fence(TARGET, &one_device(device), FenceAction::Off).await;
    assert!(outcome.confirmed, "{outcome:#?}");
    assert_eq!(steps(&outcome), [(1, 1, "off", Some(0), true)]);
    assert_eq!(
        outcome.attempts[0].detail,
        "exit 0; not confirmed by status: the agent has no status action; output: \
         fence_test: off done for n2"
    );
}

#[tokio::test]
async fn unreadable_metadata_means_no_status_call_and_no_plug() {
    let bench = Bench::new();
    let device = bench.device("fence_test_garbage", &[], SECOND);
    let error = agent_metadata(&device.agent).unwrap_err();
    assert!(
        error.ends_with("bad metadata: no <resource-agent> element"),
        "{error}"
    );
    let outcome = fence(TARGET, &one_device(device), FenceAction::Off).await;
    assert!(outcome.confirmed, "{outcome:#?}");
    assert_eq!(steps(&outcome), [(1, 1, "off", Some(0), true)]);
    assert!(
        outcome.attempts[0]
            .detail
            .starts_with("exit 0; not confirmed by status: the agent's metadata cannot be read ("),
        "{}",
        outcome.attempts[0].detail
    );
    assert!(!bench.calls()[0].stdin.contains("plug="));
}

#[tokio::test]
async fn reboot_and_on_need_no_status() {
    let bench = Bench::new();
    let device = bench.device("fence_test", &[], SECOND);
    for action in [FenceAction::Reboot, FenceAction::On] {
        let outcome = fence(TARGET, &one_device(device.clone()), action).await;
        assert!(outcome.confirmed, "{outcome:#?}");
        assert_eq!(steps(&outcome), [(1, 1, action.as_str(), Some(0), true)]);
        assert!(
            outcome
                .summary()
                .starts_with(&format!("n2 fenced ({action}) by level 1: ")),
            "{}",
            outcome.summary()
        );
    }
    let actions: Vec<String> = bench.calls().into_iter().map(|c| c.action).collect();
    assert_eq!(actions, ["reboot", "on"]);
}

#[tokio::test]
async fn secrets_are_masked_in_details() {
    let bench = Bench::new();
    let secret = "hunter2-Secret";
    let device = bench.device(
        "fence_test",
        &[("password", secret), ("fail", "off")],
        SECOND,
    );
    let outcome = fence(TARGET, &one_device(device), FenceAction::Off).await;
    assert_eq!(
        outcome.attempts[0].detail,
        "exit 1; output: fence_test: logging in with password **** | fence_test: off failed as asked"
    );
    // The agent did get it.
    assert!(
        bench.calls()[0]
            .stdin
            .contains(&format!("password={secret}"))
    );
    assert!(!format!("{outcome:?}").contains(secret));
    assert!(!outcome.summary().contains(secret));

    // Any option named like a secret, and scripts printing one.
    let device = bench.device(
        "fence_test",
        &[
            ("password_script", "/usr/local/bin/bmc-pw"),
            ("api_secret", "k3y"),
            ("say", "ran /usr/local/bin/bmc-pw with k3y"),
        ],
        SECOND,
    );
    let outcome = fence(TARGET, &one_device(device), FenceAction::On).await;
    assert_eq!(
        outcome.attempts[0].detail,
        "exit 0; output: ran **** with **** | fence_test: on done for n2"
    );
}

#[tokio::test]
async fn the_plug_is_added_only_when_declared_and_not_given() {
    let bench = Bench::new();
    let declared = bench.device("fence_test", &[], SECOND);
    let given = bench.device("fence_test", &[("port", "7")], SECOND);
    let undeclared = bench.device("fence_test_noplug", &[], SECOND);
    for device in [declared, given, undeclared] {
        let outcome = fence(TARGET, &one_device(device), FenceAction::On).await;
        assert!(outcome.confirmed, "{outcome:#?}");
    }
    let log = bench.log().display().to_string();
    let stdin: Vec<String> = bench.calls().into_iter().map(|c| c.stdin).collect();
    assert_eq!(
        stdin,
        [
            format!(" action=on nodename=n2 log={log} plug=n2"),
            format!(" action=on nodename=n2 log={log} port=7"),
            format!(" action=on nodename=n2 log={log}"),
        ]
    );
}

#[tokio::test]
async fn metadata_is_read_once_per_agent() {
    let bench = Bench::new();
    let device = bench.device("fence_test_cached", &[], SECOND);
    let first = agent_metadata(&device.agent).unwrap();
    let second = agent_metadata(&device.agent).unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    let outcome = fence(TARGET, &one_device(device), FenceAction::Off).await;
    assert!(outcome.confirmed);
    assert_eq!(
        bench.actions_of("fence_test_cached"),
        ["metadata", "off", "status"]
    );
    assert!(first.parameters.contains("plug"));
    // `obsoletes` names count as parameters.
    assert!(first.parameters.contains("port") && first.parameters.contains("passwd"));
    assert_eq!(first.required.iter().collect::<Vec<_>>(), ["action", "log"]);
    assert_eq!(
        first.actions.iter().collect::<Vec<_>>(),
        ["metadata", "off", "on", "reboot", "status"]
    );
}

#[tokio::test]
async fn bad_agents_are_failed_attempts() {
    let bench = Bench::new();
    let killed = bench.device("fence_test", &[("signal", "off")], SECOND);
    let outcome = fence(TARGET, &one_device(killed), FenceAction::Off).await;
    assert_eq!(outcome.attempts.len(), DEVICE_ATTEMPTS);
    assert_eq!(outcome.attempts[0].exit, None);
    assert!(
        outcome.attempts[0].detail.starts_with("killed by signal 9"),
        "{}",
        outcome.attempts[0].detail
    );

    let huge = bench.device("fence_test", &[("huge", "off")], SECOND);
    let outcome = fence(TARGET, &one_device(huge), FenceAction::Off).await;
    let detail = &outcome.attempts[0].detail;
    assert_eq!(detail.chars().count(), DETAIL_MAX, "{detail}");
    assert!(detail.starts_with("exit 1; output: …"), "{detail}");
    assert!(
        detail.ends_with(" | fence_test: the last line before failing"),
        "{detail}"
    );

    let missing = bare_device("fence_halcyon_no_such_agent");
    let outcome = fence(TARGET, &one_device(missing), FenceAction::Off).await;
    // Not retried: the program is not there.
    assert_eq!(steps(&outcome), [(1, 1, "off", None, false)]);
    assert!(
        outcome.attempts[0]
            .detail
            .starts_with("cannot start: fence agent \"fence_halcyon_no_such_agent\" not found"),
        "{}",
        outcome.attempts[0].detail
    );

    let mut overriding = bench.device("fence_test", &[], SECOND);
    overriding.options.insert("action".into(), "on".into());
    let outcome = fence(TARGET, &one_device(overriding), FenceAction::Off).await;
    assert_eq!(steps(&outcome), [(1, 1, "off", None, false)]);
    assert_eq!(
        outcome.attempts[0].detail,
        "not started: option \"action\" is set by Halcyon itself and may not be configured"
    );
}

#[test]
fn agents_resolve_by_path_or_by_name() {
    let found = resolve_agent("sh").unwrap();
    assert!(found.ends_with("sh") && found.is_absolute(), "{found:?}");
    let error = resolve_agent("fence_halcyon_no_such_agent").unwrap_err();
    assert!(
        error.starts_with("fence agent \"fence_halcyon_no_such_agent\" not found: no executable file of that name in $PATH (")
            && error.ends_with("), /usr/sbin or /sbin"),
        "{error}"
    );
    let dir = tempfile::tempdir().unwrap();
    let error = resolve_agent(&dir.path().display().to_string()).unwrap_err();
    assert_eq!(
        error,
        format!("fence agent {} is not a file", dir.path().display())
    );
    assert_eq!(
        resolve_agent("").unwrap_err(),
        "the fence agent's name is empty"
    );
}

#[test]
fn check_device_finds_each_mistake() {
    let bench = Bench::new();
    let good = bench.device("fence_test", &[("password", "x")], SECOND);
    assert_eq!(check_device(&good), []);

    let missing = bare_device("fence_halcyon_no_such_agent");
    let problems = check_device(&missing);
    assert_eq!(problems.len(), 1);
    assert!(problems[0].problem.contains("not found"), "{problems:?}");

    let plain = bench.dir.path().join("fence_plain");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    let not_executable = bare_device(&plain.display().to_string());
    let problems = check_device(&not_executable);
    assert_eq!(problems.len(), 1);
    assert_eq!(
        problems[0].problem,
        format!(
            "fence agent {} is not executable (mode 644)",
            plain.display()
        )
    );

    let mut typo = bench.device("fence_test", &[("pasword", "x")], SECOND);
    typo.options.remove("log");
    let agent = typo.agent.clone();
    let problems = check_device(&typo);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_eq!(
        problems[0].problem,
        format!("fence agent {agent}: unknown option \"pasword\"")
    );
    assert_eq!(
        problems[0].hint.as_deref(),
        Some("did you mean \"password\"?")
    );
    assert_eq!(
        problems[0].expected.as_deref(),
        Some(
            "one of its parameters: action, fail, fail_first, hang, huge, log, passwd, password, ..."
        )
    );
    // `action` is required by the metadata too, but Halcyon sends it.
    assert_eq!(
        problems[1].problem,
        format!("fence agent {agent}: required option \"log\" is missing")
    );

    let mut nodename = bench.device("fence_test", &[], SECOND);
    nodename.options.insert("nodename".into(), "n9".into());
    let problems = check_device(&nodename);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0]
            .problem
            .ends_with("option \"nodename\" is set by Halcyon on every call"),
        "{problems:?}"
    );
}

#[test]
fn fence_actions_read_and_print_as_the_cli_writes_them() {
    for action in [FenceAction::Off, FenceAction::Reboot, FenceAction::On] {
        assert_eq!(action.to_string().parse::<FenceAction>(), Ok(action));
    }
    assert_eq!(FenceAction::Reboot.to_string(), "reboot");
    assert_eq!(
        "Off".parse::<FenceAction>(),
        Err("unknown fence action \"Off\": expected off, reboot or on".to_owned())
    );
}

#[test]
fn metadata_without_its_root_or_names_is_refused() {
    assert!(
        parse_metadata("<resource-agent><parameters><parameter/></parameters></resource-agent>")
            .unwrap_err()
            .contains("a <parameter> without a name")
    );
    assert_eq!(
        parse_metadata("<other/>").unwrap_err(),
        "no <resource-agent> element"
    );
    assert!(parse_metadata("<resource-agent><actions></resource-agent>").is_err());
}

/// The lab's agent: syntax, and its metadata read by the same code as every agent's.
#[test]
fn the_lab_fence_agent_is_valid_shell_with_readable_metadata() {
    let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("../halcyon-lab/agents/fence_lab");
    let test = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agents/fence_test");
    for script in [&lab, &test] {
        let checked = std::process::Command::new("sh")
            .arg("-n")
            .arg(script)
            .output()
            .unwrap();
        assert!(
            checked.status.success(),
            "{}: {}",
            script.display(),
            String::from_utf8_lossy(&checked.stderr)
        );
    }
    let metadata = agent_metadata(&lab.display().to_string()).unwrap();
    assert_eq!(
        metadata.parameters.iter().collect::<Vec<_>>(),
        ["action", "plug", "port"]
    );
    assert_eq!(
        metadata.required.iter().collect::<Vec<_>>(),
        ["action", "plug"]
    );
    for action in ["off", "on", "reboot", "status", "metadata"] {
        assert!(metadata.actions.contains(action), "{action}");
    }
    // Halcyon fills plug in: a device with no options is complete.
    let device = bare_device(&lab.display().to_string());
    assert_eq!(check_device(&device), []);
}

/// True (after a visible skip line) when Debian's fence-agents is not installed.
fn skip_without_fence_ipmilan() -> bool {
    if resolve_agent("fence_ipmilan").is_ok() {
        return false;
    }
    eprintln!("skipped: fence_ipmilan not installed");
    true
}

#[test]
fn real_fence_ipmilan_metadata_checks_a_realistic_device() {
    if skip_without_fence_ipmilan() {
        return;
    }
    let metadata = agent_metadata("fence_ipmilan").unwrap();
    for name in [
        "ip", "ipaddr", "username", "login", "password", "passwd", "lanplus", "plug", "port",
    ] {
        assert!(metadata.parameters.contains(name), "{name}");
    }
    assert!(metadata.actions.contains("status"));
    let options = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let device = FenceDevice {
        agent: "fence_ipmilan".into(),
        options: options(&[
            ("ip", "192.0.2.10"),
            ("username", "admin"),
            ("password", "secret"),
            ("lanplus", "1"),
        ]),
        timeout: SECOND,
    };
    assert_eq!(check_device(&device), []);
    let typo = FenceDevice {
        options: options(&[("ip", "192.0.2.10"), ("usename", "admin")]),
        ..device
    };
    let problems = check_device(&typo);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(
        problems[0].hint.as_deref(),
        Some("did you mean \"username\"?")
    );
}

#[test]
fn a_required_parameter_is_given_under_its_new_or_its_old_name() {
    // As fence_apc_snmp declares its address: `ip` replaces `ipaddr`, both marked required,
    // the old one deprecated.
    let metadata = parse_metadata(
        r#"<resource-agent name="fence_x"><parameters>
        <parameter name="ip" unique="0" required="1" obsoletes="ipaddr"><content type="string"/></parameter>
        <parameter name="ipaddr" unique="0" required="1" deprecated="1"><content type="string"/></parameter>
        </parameters><actions><action name="off"/></actions></resource-agent>"#,
    )
    .unwrap();
    assert_eq!(
        metadata.required.iter().collect::<Vec<_>>(),
        ["ip"],
        "a deprecated name is not required itself"
    );
    assert_eq!(
        metadata.obsoleted.get("ipaddr").map(String::as_str),
        Some("ip")
    );
    if skip_without_fence_ipmilan() {
        return;
    }
    // The real agent, with the address under either name.
    for address in ["ip", "ipaddr"] {
        let device = FenceDevice {
            agent: "fence_apc_snmp".into(),
            options: [(address.to_owned(), "192.0.2.250".to_owned())]
                .into_iter()
                .collect(),
            timeout: SECOND,
        };
        assert_eq!(check_device(&device), [], "{address}");
    }
    let missing = FenceDevice {
        agent: "fence_apc_snmp".into(),
        options: BTreeMap::new(),
        timeout: SECOND,
    };
    let problems = check_device(&missing);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(
        problems[0].problem,
        "fence agent fence_apc_snmp: required option \"ip\" is missing"
    );
}

#[test]
fn attempts_serialize_for_the_api() {
    // The types cross the API: their serde form is part of the contract (snake_case action).
    let attempt = FenceAttempt {
        level: 1,
        device: 2,
        agent: "fence_ipmilan".into(),
        action: "off".into(),
        exit: Some(0),
        ok: true,
        detail: "exit 0".into(),
        took_ms: 12,
    };
    let outcome = FenceOutcome {
        target: TARGET.into(),
        action: FenceAction::Reboot,
        confirmed: true,
        level: Some(1),
        attempts: vec![attempt],
    };
    let text = serde_json::to_string(&outcome).unwrap();
    assert!(text.contains("\"action\":\"reboot\""), "{text}");
    assert_eq!(
        serde_json::from_str::<FenceOutcome>(&text).unwrap(),
        outcome
    );
}

/// An `ipmi_sim` BMC on 127.0.0.1 whose chassis power is a file (see
/// `tests/agents/ipmi_sim_chassis`); killed on drop.
struct SimulatedBmc {
    child: std::process::Child,
    port: u16,
    power: PathBuf,
    _ports: halcyon_testkit::ports::PortBlock,
    _dir: tempfile::TempDir,
}

/// The BMC's administrator.
const BMC_USER: &str = "admin";
const BMC_PASSWORD: &str = "bmc-Pass-4711";
/// How long the simulator gets to answer its first request.
const BMC_START_LIMIT: Duration = Duration::from_secs(10);

impl SimulatedBmc {
    fn start() -> Self {
        let ports = halcyon_testkit::ports::allocate(
            1,
            [std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)],
        )
        .unwrap();
        let port = ports.port(0);
        let dir = tempfile::tempdir().unwrap();
        let power = dir.path().join("power");
        let chassis = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agents/ipmi_sim_chassis");
        let lan = format!(
            "name \"halcyon\"\n\
             set_working_mc 0x20\n\
             startlan 1\n\
             \x20 addr 127.0.0.1 {port}\n\
             \x20 priv_limit admin\n\
             \x20 allowed_auths_admin none md5 straight\n\
             \x20 guid a123456789abcdefa123456789abcdef\n\
             endlan\n\
             chassis_control \"{} {}\"\n\
             user 2 true \"{BMC_USER}\" \"{BMC_PASSWORD}\" admin 10 none md5 straight\n",
            chassis.display(),
            power.display()
        );
        std::fs::write(dir.path().join("lan.conf"), lan).unwrap();
        std::fs::write(
            dir.path().join("bmc.emu"),
            "mc_setbmc 0x20\n\
             mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n\
             mc_enable 0x20\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("state")).unwrap();
        let child = std::process::Command::new("ipmi_sim")
            .current_dir(dir.path())
            .args(["-c", "lan.conf", "-f", "bmc.emu", "-s", "state", "-n"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let bmc = SimulatedBmc {
            child,
            port,
            power,
            _ports: ports,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + BMC_START_LIMIT;
        while !bmc.answers() {
            assert!(
                std::time::Instant::now() < deadline,
                "ipmi_sim did not answer on 127.0.0.1:{port} within {BMC_START_LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        bmc
    }

    /// Whether `ipmitool chassis power status` gets an answer.
    fn answers(&self) -> bool {
        std::process::Command::new("ipmitool")
            .args(["-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args([
                "-U",
                BMC_USER,
                "-P",
                BMC_PASSWORD,
                "chassis",
                "power",
                "status",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// The simulated machine's power: "1" or "0".
    fn power(&self) -> String {
        std::fs::read_to_string(&self.power)
            .unwrap()
            .trim()
            .to_owned()
    }
}

impl Drop for SimulatedBmc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn real_fence_ipmilan_powers_a_simulated_bmc_off_and_on() {
    if skip_without_fence_ipmilan() {
        return;
    }
    if resolve_agent("ipmi_sim").is_err() || resolve_agent("ipmitool").is_err() {
        eprintln!("skipped: needs ipmi_sim (openipmi) and ipmitool");
        return;
    }
    let bmc = SimulatedBmc::start();
    let device = FenceDevice {
        agent: "fence_ipmilan".into(),
        options: [
            ("ip", "127.0.0.1".to_owned()),
            ("ipport", bmc.port.to_string()),
            ("username", BMC_USER.to_owned()),
            ("password", BMC_PASSWORD.to_owned()),
            ("lanplus", "1".to_owned()),
            // Without it ipmitool first asks for the cipher suites, which ipmi_sim does not
            // answer: 10 s per call.
            ("cipher", "3".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        timeout: Duration::from_secs(60),
    };
    assert_eq!(check_device(&device), []);
    assert_eq!(bmc.power(), "1");

    let outcome = fence(TARGET, &one_device(device.clone()), FenceAction::Off).await;
    assert!(outcome.confirmed, "{}", outcome.summary());
    assert_eq!(
        steps(&outcome),
        [
            (1, 1, "off", Some(0), true),
            (1, 1, "status", Some(2), true)
        ]
    );
    assert_eq!(bmc.power(), "0");
    assert!(!format!("{outcome:?}").contains(BMC_PASSWORD));

    let outcome = fence(TARGET, &one_device(device), FenceAction::On).await;
    assert!(outcome.confirmed, "{}", outcome.summary());
    assert_eq!(bmc.power(), "1");
}
