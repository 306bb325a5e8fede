//! Resolving an event's program and options from the rules file and the cluster
//! defaults; the default rules; the environment.

use std::path::Path;
use std::time::Duration;

use halcyon_config::{EventDefaults, Limits, NodeName};
use halcyon_events::{
    EventContext, Rules, Sample, default_program_text, default_rules, default_rules_text,
    environment, parse_rules,
};

fn parse(text: &str) -> Rules {
    let mut no_files = |_: &Path| Err(std::io::Error::from(std::io::ErrorKind::NotFound));
    parse_rules(Path::new("rules.toml"), text, &mut no_files).unwrap_or_else(|d| panic!("{d}"))
}

#[test]
fn wrap_pre_post_and_defaults_compose_one_program() {
    let rules = parse(
        "\
[[event]]
name = \"node_down\"
state = \"graceful\"
before = 'all \"/bin/announce\" X'
pre_event = \"/bin/pre\"
recovery = \"/bin/fix\"
retry = 3
max_duration = \"10m\"
",
    );
    let defaults = EventDefaults {
        notify: Some("/bin/page".to_owned()),
        post_event: Some("/bin/post".to_owned()),
        ..EventDefaults::default()
    };
    let limits = Limits::default();
    let graceful = rules
        .resolve("node_down", Some("graceful"), &defaults, &limits)
        .expect("built-in");
    assert_eq!(
        graceful.program.render(),
        "\
all \"/bin/pre\" 0
barrier
all \"/bin/announce\" X
barrier
all \"halcyon:release\" 0
barrier
other \"halcyon:acquire\" 0
barrier
all \"/bin/post\" 0
"
    );
    assert_eq!(graceful.options.notify.as_deref(), Some("/bin/page"));
    assert_eq!(graceful.options.recovery.as_ref().map(|r| r.retry), Some(3));
    assert_eq!(graceful.max_duration, Duration::from_secs(600));

    // A failure has no rule of its own: the default program, cluster defaults.
    let failure = rules
        .resolve("node_down", Some("failure"), &defaults, &limits)
        .expect("built-in");
    assert_eq!(
        failure.program.render(),
        format!(
            "{}barrier\nall \"/bin/post\" 0\n",
            default_program_text("node_down")
                .expect("default")
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        )
    );
    assert_eq!(failure.options.recovery, None);
    assert_eq!(failure.max_duration, limits.max_event_duration);
    // A user-defined event without a rule has nothing to run.
    assert!(rules.resolve("UE_X", None, &defaults, &limits).is_none());
}

#[test]
fn the_default_rules_file_loads_back() {
    let text = default_rules_text();
    assert!(text.contains("name = \"node_up\"\nprogram = '''\nall \"halcyon:release\" 0\n"));
    assert_eq!(parse(&text), default_rules());
}

#[test]
fn environment_has_halcyon_and_seed_names() {
    let context = EventContext {
        event: "UE_PGMRWHO_DOWN".to_owned(),
        state: None,
        event_node: Some(NodeName::from("node5")),
        event_node_number: Some(5),
        network: None,
        timestamp: "2024-05-01T10:00:00Z".parse().expect("a timestamp"),
        cluster: "sp".to_owned(),
        package: None,
        members: ["node1", "node5"].map(NodeName::from).to_vec(),
        sample: Some(Sample {
            resource_variable: "IBM.PSSP.Prog.xpcount".to_owned(),
            instance_vector: "NodeNum=5;ProgName=rwhod;UserName=root".to_owned(),
            values: vec!["0".to_owned(), "1".to_owned()],
        }),
    };
    let env: Vec<String> = environment(&context)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert_eq!(
        env,
        [
            "HALCYON_EVENT=UE_PGMRWHO_DOWN",
            "HALCYON_EVENT_STATE=",
            "HALCYON_EVENT_NODE=node5",
            "HALCYON_EVENT_NODE_NUMBER=5",
            "HALCYON_NETWORK=",
            "HALCYON_TIMESTAMP=2024-05-01T10:00:00Z",
            "HALCYON_CLUSTER=sp",
            "HALCYON_PACKAGE=",
            "HALCYON_MEMBERS=node1 node5",
            "EVNAME=UE_PGMRWHO_DOWN",
            "EVLOCATION=5",
            "TIMESTAMP=2024-05-01T10:00:00Z",
            "HALCYON_RESOURCE_VARIABLE=IBM.PSSP.Prog.xpcount",
            "HALCYON_INSTANCE_VECTOR=NodeNum=5;ProgName=rwhod;UserName=root",
            "HALCYON_VALUE=0",
            "HALCYON_VALUE_COUNT=2",
            "HALCYON_VALUE_0=0",
            "HALCYON_VALUE_1=1",
        ]
    );
}
