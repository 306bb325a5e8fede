//! The rules.hacmprd importer: a well-formed file from the seed, and malformed ones
//! with the exact messages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use halcyon_events::{Program, RuleProgram, import_hacmp, import_hacmp_text, parse_rules};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hacmp")
}

#[test]
fn the_seeds_rules_file_imports() {
    let rules_path = fixtures().join("rules.hacmprd");
    let imported = import_hacmp(&rules_path, Some(&fixtures().join("rp")))
        .unwrap_or_else(|d| panic!("imports:\n{d}"));
    let node_up = imported.rules.rule("node_up", None).expect("node_up");
    assert_eq!(node_up.program, RuleProgram::Default);
    let toml = imported
        .rules_toml
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        toml,
        "
[[event]]
name = \"node_up\"

[[event]]
name = \"UE_PGMRWHO_DOWN\"
program_file = \"rwho.rp\"
resource_variable = \"IBM.PSSP.Prog.xpcount\"
instance_vector = \"NodeNum=*;ProgName=rwhod;UserName=root\"
predicate = \"X@0==0&&X@1!=0\"
rearm_predicate = \"X@0>0\""
    );
    assert_eq!(imported.notes.len(), 1);
    assert!(
        imported.notes[0].starts_with("TE_JOIN_NODE: HACMP's event scripts in "),
        "{:?}",
        imported.notes
    );
    assert_eq!(imported.programs.len(), 1);
    let (name, text) = &imported.programs[0];
    assert_eq!(name, "rwho.rp");
    let body: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(
        body,
        [
            "other \"/usr/sbin/cluster/local/rwho_msg_remote\" 0",
            "event \"/usr/sbin/cluster/local/rwho_msg_local\" 0",
            "barrier",
            "event \"/usr/sbin/cluster/local/rwho_restart\" 0",
            "barrier",
            "all \"/usr/sbin/cluster/local/rwho_msg_complete\" X",
        ]
    );
    // The native files load back to the same rules.
    let files: BTreeMap<PathBuf, String> = imported
        .files()
        .into_iter()
        .map(|(p, t)| (Path::new("out").join(p), t))
        .collect();
    let mut read = |p: &Path| {
        files
            .get(p)
            .cloned()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    };
    let again = parse_rules(
        Path::new("out/rules.toml"),
        &files[Path::new("out/rules.toml")],
        &mut read,
    )
    .unwrap_or_else(|d| panic!("loads back:\n{d}"));
    assert_eq!(again, imported.rules);
}

/// A built-in event's program with the administrator's own lines around HACMP's
/// scripts: they are kept before and after Halcyon's default program.
#[test]
fn own_lines_around_hacmp_scripts_are_kept() {
    let rules = record(
        "TE_FAIL_NODE",
        "0",
        "/usr/sbin/cluster/events/node_down.rp",
        "",
        "",
    );
    let rp = "all \"/usr/local/bin/page\" X NULL\nbarrier\nevent \"node_down\" 0 NULL\nbarrier\nall \"node_down_complete\" X NULL\nbarrier\nall \"/usr/local/bin/log\" 0 NULL\n";
    let imported = run(&rules, &[("rp/node_down.rp", rp)]).expect("imports");
    let rule = imported.rules.rule("node_down", None).expect("node_down");
    let RuleProgram::Wrap { before, after } = &rule.program else {
        panic!("wrapped: {:?}", rule.program);
    };
    assert_eq!(before.render(), "all \"/usr/local/bin/page\" X\n");
    assert_eq!(after.render(), "all \"/usr/local/bin/log\" 0\n");
    let _ = Program::default();
}

/// A record with its nine lines; blank fields stay blank lines.
fn record(name: &str, state: &str, rp: &str, variable: &str, predicate: &str) -> String {
    format!("# a record\n{name}\n{state}\n{rp}\n2\n0\n{variable}\n\n{predicate}\n\n")
}

/// Imports `rules` (as `/etc/halcyon/rules.hacmprd`) with `--rp-dir /etc/halcyon/rp`
/// and the given files (relative to `/etc/halcyon`).
fn run(rules: &str, files: &[(&str, &str)]) -> Result<halcyon_events::Imported, String> {
    let files: BTreeMap<PathBuf, String> = files
        .iter()
        .map(|(p, t)| (Path::new("/etc/halcyon").join(p), (*t).to_owned()))
        .collect();
    let mut read = |p: &Path| {
        files
            .get(p)
            .cloned()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    };
    import_hacmp_text(
        Path::new("/etc/halcyon/rules.hacmprd"),
        rules,
        Some(Path::new("/etc/halcyon/rp")),
        &mut read,
    )
    .map_err(|d| d.to_string())
}

fn check(rules: &str, files: &[(&str, &str)], expected: &str) {
    let got = match run(rules, files) {
        Ok(_) => "ok\n".to_owned(),
        Err(e) => e,
    };
    assert_eq!(got, expected, "rules.hacmprd:\n{rules}");
}

const RWHO_RP: (&str, &str) = ("rp/rwho.rp", "all \"/bin/x\" 0 NULL\n");

#[test]
fn malformed_rules_files() {
    let good = record(
        "UE_RWHO",
        "0",
        "/usr/sbin/cluster/local/rwho.rp",
        "IBM.PSSP.Prog.xpcount",
        "X@0==0",
    );
    check(&good, &[RWHO_RP], "ok\n");
    // A record one line short (the blank instance vector line removed): the next
    // record is still found, the short one is named with its lines.
    let short = "UE_A\n0\n/x/rwho.rp\n2\n0\nvar\nX>1\n\n";
    check(
        &format!("{short}{good}"),
        &[RWHO_RP],
        "/etc/halcyon/rules.hacmprd:1:1: record 1: \"UE_A\" has 8 lines (lines 1 to 8, comments not counted); expected exactly 9: event name, state qualifier, recovery program path, recovery type, recovery level, resource variable, instance vector, predicate, rearm predicate (the old product hung on a wrong count); hint: a field left empty still needs its (blank) line\n",
    );
    // One line too many in the second record.
    check(
        &format!(
            "{good}{}",
            record("UE_B", "0", "rwho.rp", "v", "X>1").replace("\n2\n", "\n2\n2\n")
        ),
        &[RWHO_RP],
        "/etc/halcyon/rules.hacmprd:12:1: record 2: \"UE_B\" has 10 lines (lines 12 to 21, comments not counted); expected exactly 9: event name, state qualifier, recovery program path, recovery type, recovery level, resource variable, instance vector, predicate, rearm predicate (the old product hung on a wrong count); hint: blank lines at the end of the file count as fields (the old product hung on them): remove them, or the extra line in the record\n",
    );
    // One line too many in the first record: the second is still read.
    check(
        &format!(
            "{}{good}",
            record("UE_B", "0", "rwho.rp", "v", "X>1").replace("\n2\n", "\n2\n2\n")
        ),
        &[RWHO_RP],
        "/etc/halcyon/rules.hacmprd:2:1: record 1: \"UE_B\" has 10 lines (lines 2 to 11, comments not counted); expected exactly 9: event name, state qualifier, recovery program path, recovery type, recovery level, resource variable, instance vector, predicate, rearm predicate (the old product hung on a wrong count); hint: remove the extra lines, or comment them out with #\n",
    );
    // Blank lines after the last record.
    check(
        &format!("{good}\n\n"),
        &[RWHO_RP],
        "/etc/halcyon/rules.hacmprd:2:1: record 1: \"UE_RWHO\" has 11 lines (lines 2 to 12, comments not counted); expected exactly 9: event name, state qualifier, recovery program path, recovery type, recovery level, resource variable, instance vector, predicate, rearm predicate (the old product hung on a wrong count); hint: blank lines at the end of the file count as fields (the old product hung on them): remove them, or the extra line in the record\n",
    );
    // An unknown built-in event name, and a recovery type that is no integer.
    check(
        &record("TE_JOIN_NODES", "0", "node_up.rp", "", "").replace("\n2\n", "\ntwo\n"),
        &[("rp/node_up.rp", "all \"halcyon:release\" 0\n")],
        "/etc/halcyon/rules.hacmprd:2:1: record 1: event name: \"TE_JOIN_NODES\" is not an HACMP built-in event; expected one of TE_JOIN_NODE, TE_FAIL_NODE, TE_JOIN_NETWORK, TE_FAIL_NETWORK, TE_SWAP_ADAPTER, TE_JOIN_STANDBY, TE_FAIL_STANDBY, TE_DARE_TOPOLOGY, TE_DARE_RESOURCE, or a user-defined name (UE_...); hint: did you mean \"TE_JOIN_NODE\"?\n\
         /etc/halcyon/rules.hacmprd:5:1: record 1: recovery type: \"two\" is not an integer; expected an integer (reserved by HACMP; 2 and 0 in its files); hint: check that line 5 is really the recovery type (a missing or extra line shifts the fields)\n",
    );
    // A missing .rp file: every place looked at.
    check(
        &record(
            "UE_GONE",
            "0",
            "/usr/sbin/cluster/local/gone.rp",
            "v",
            "X>1",
        ),
        &[],
        "/etc/halcyon/rules.hacmprd:4:1: record 1: recovery program path: \"/usr/sbin/cluster/local/gone.rp\" not found (looked at /usr/sbin/cluster/local/gone.rp, /etc/halcyon/rp/gone.rp, /etc/halcyon/gone.rp); expected the recovery program file; hint: copy the .rp files beside the rules file or name their directory with --rp-dir\n",
    );
    // Monitor fields on a built-in event; a state qualifier on a built-in event; a
    // user-defined event without its predicate.
    check(
        &format!(
            "{}{}",
            record("TE_FAIL_NETWORK", "1", "network_down.rp", "IBM.x", ""),
            record("UE_C", "0", "rwho.rp", "v", "")
        ),
        &[
            ("rp/network_down.rp", "other \"network_down\" 0 NULL\n"),
            RWHO_RP,
        ],
        "/etc/halcyon/rules.hacmprd:3:1: record 1: state qualifier: \"1\" is not a state qualifier of TE_FAIL_NETWORK; expected 0 (the HACMP built-in events have no other)\n\
         /etc/halcyon/rules.hacmprd:7:1: record 1: resource variable: \"IBM.x\" given for a built-in event; expected a blank line (only user-defined events have monitors)\n\
         /etc/halcyon/rules.hacmprd:19:1: record 2: predicate: is empty; expected the predicate of the user-defined event\n",
    );
    // A mistake inside the .rp file is located in the .rp file.
    check(
        &good,
        &[("rp/rwho.rp", "all \"/bin/x\" 0 NULL\nbarier\n")],
        "/etc/halcyon/rp/rwho.rp:2:1: node set: \"barier\" is not a node set; expected all, event, other, or barrier; hint: did you mean \"barrier\"?\n",
    );
    // Two HACMP events that become the same Halcyon event with different programs.
    check(
        &format!(
            "{}{}",
            record("TE_DARE_TOPOLOGY", "0", "t.rp", "", ""),
            record("TE_DARE_RESOURCE", "0", "r.rp", "", "")
        ),
        &[
            ("rp/t.rp", "all \"reconfig_topology\" 0\n"),
            (
                "rp/r.rp",
                "all \"/bin/mine\" 0\nbarrier\nall \"reconfig_resource\" 0\n",
            ),
        ],
        "/etc/halcyon/rules.hacmprd:12:1: record 2: event name: TE_DARE_RESOURCE becomes config_change, like record 1 (TE_DARE_TOPOLOGY), but with a different recovery program; expected one program per Halcyon event; hint: make the two .rp files the same, or drop one record\n",
    );
}
