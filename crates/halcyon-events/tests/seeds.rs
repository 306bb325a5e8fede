//! The seeds' examples: the node_up walk-through (4.4.3) and the rwho user-defined
//! event (appendix A.2).

use std::path::{Path, PathBuf};

use halcyon_config::NodeName;
use halcyon_events::{
    LaunchKind, NodeSet, Program, RuleProgram, expand, import_hacmp, render_segments,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hacmp")
}

fn nodes(names: &[&str]) -> Vec<NodeName> {
    names.iter().map(|n| NodeName::from(*n)).collect()
}

/// Node 3 joins nodes 1, 2 and 4: "other" (1, 2, 4) run node_up, barrier, node 3
/// runs node_up, barrier, every node runs node_up_complete.
#[test]
fn node_up_walkthrough_node_3_joins_1_2_4() {
    let text = std::fs::read_to_string(fixtures().join("rp/node_up.rp")).expect("fixture");
    let program = Program::parse(Path::new("node_up.rp"), &text).expect("parses");
    let members = nodes(&["node1", "node2", "node3", "node4"]);
    let segments = expand(&program, Some(&NodeName::from("node3")), &members);
    assert_eq!(
        render_segments(&segments),
        "\
segment 1:
  node1: \"node_up\" 0
  node2: \"node_up\" 0
  node4: \"node_up\" 0
barrier 1
segment 2:
  node3: \"node_up\" 0
barrier 2
segment 3:
  node1: \"node_up_complete\" X
  node2: \"node_up_complete\" X
  node3: \"node_up_complete\" X
  node4: \"node_up_complete\" X
end barrier
"
    );
}

/// The first node of the cluster joining alone: its first segment is empty (no
/// other node), it runs node_up after the first barrier (5.2.1, step 3).
#[test]
fn node_up_first_node() {
    let text = std::fs::read_to_string(fixtures().join("rp/node_up.rp")).expect("fixture");
    let program = Program::parse(Path::new("node_up.rp"), &text).expect("parses");
    let segments = expand(&program, Some(&NodeName::from("node1")), &nodes(&["node1"]));
    assert_eq!(
        render_segments(&segments),
        "\
segment 1:
barrier 1
segment 2:
  node1: \"node_up\" 0
barrier 2
segment 3:
  node1: \"node_up_complete\" X
end barrier
"
    );
}

/// The rwho example imported from its rules.hacmprd record and .rp, then expanded
/// for a failure of rwhod on node 5 of a 3-node cluster (nodes 1, 5, 7).
#[test]
fn rwho_user_defined_event() {
    let imported = import_hacmp(
        &fixtures().join("rules.hacmprd"),
        Some(&fixtures().join("rp")),
    )
    .unwrap_or_else(|d| panic!("imports:\n{d}"));
    let rule = imported
        .rules
        .rule("UE_PGMRWHO_DOWN", None)
        .expect("the rwho rule");
    let monitor = rule.monitor.as_ref().expect("a monitor");
    assert_eq!(monitor.resource_variable, "IBM.PSSP.Prog.xpcount");
    assert_eq!(
        monitor.instance_vector.as_deref(),
        Some("NodeNum=*;ProgName=rwhod;UserName=root")
    );
    assert_eq!(monitor.predicate, "X@0==0&&X@1!=0");
    assert_eq!(monitor.rearm_predicate.as_deref(), Some("X@0>0"));
    let RuleProgram::Replace { program, file } = &rule.program else {
        panic!("a replacing program: {:?}", rule.program);
    };
    assert_eq!(file.as_deref(), Some("rwho.rp"));
    let sets: Vec<NodeSet> = program.commands().map(|c| c.node_set).collect();
    assert_eq!(
        sets,
        [NodeSet::Other, NodeSet::Event, NodeSet::Event, NodeSet::All]
    );

    let members = nodes(&["node1", "node5", "node7"]);
    let segments = expand(program, Some(&NodeName::from("node5")), &members);
    assert_eq!(
        render_segments(&segments),
        "\
segment 1:
  node1: \"/usr/sbin/cluster/local/rwho_msg_remote\" 0
  node5: \"/usr/sbin/cluster/local/rwho_msg_local\" 0
  node7: \"/usr/sbin/cluster/local/rwho_msg_remote\" 0
barrier 1
segment 2:
  node5: \"/usr/sbin/cluster/local/rwho_restart\" 0
barrier 2
segment 3:
  node1: \"/usr/sbin/cluster/local/rwho_msg_complete\" X
  node5: \"/usr/sbin/cluster/local/rwho_msg_complete\" X
  node7: \"/usr/sbin/cluster/local/rwho_msg_complete\" X
end barrier
"
    );

    // Run it: the restart starts only after both messages, the completion message
    // only after the restart.
    let mut progress = halcyon_events::Progress::new(segments, Default::default());
    let first = progress.next_commands();
    assert_eq!(first.len(), 3);
    assert!(
        progress.next_commands().is_empty(),
        "nothing new before the barrier"
    );
    for launch in &first {
        let node = launch.node.clone().expect("on a node");
        progress
            .completed(&node, launch.launch, 0, "")
            .expect("completes");
    }
    let second = progress.next_commands();
    assert_eq!(second.len(), 1);
    assert!(matches!(
        second[0].kind,
        LaunchKind::Command { segment: 1, .. }
    ));
    assert_eq!(second[0].command, "/usr/sbin/cluster/local/rwho_restart");
}
