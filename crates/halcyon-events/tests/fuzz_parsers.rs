//! Property tests of the rules file, recovery program and HACMP importer parsers (issue 17):
//! random text and mutated valid files. No input panics; a refusal is a `Diagnostics` value
//! that renders; an accepted input parses the same way again.
//!
//! Cases per property: `HALCYON_FUZZ_CASES` (the long run), else a CI-sized default.

use std::path::Path;

use halcyon_events::{
    BUILTIN_EVENTS, Program, default_program_text, default_rules_text, import_hacmp_text,
    parse_rules,
};
use proptest::prelude::*;
use proptest::test_runner::Config;

const HACMP_RULES: &str = include_str!("fixtures/hacmp/rules.hacmprd");
const NODE_UP_RP: &str = include_str!("fixtures/hacmp/rp/node_up.rp");
const RWHO_RP: &str = include_str!("fixtures/hacmp/rp/rwho.rp");

fn config(default_cases: u32) -> Config {
    let cases = std::env::var("HALCYON_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Pieces of the languages, to reach past the first line of each parser.
const TOKENS: &[&str] = &[
    "\n",
    " ",
    "\t",
    "\"",
    "'",
    "#",
    "[",
    "]",
    "[[event]]",
    "=",
    "name",
    "state",
    "recovery",
    "retry",
    "max_duration",
    "before",
    "after",
    "pre_event",
    "post_event",
    "notify",
    "barrier",
    "all",
    "event",
    "other",
    "X",
    "0",
    "-1",
    "NULL",
    "\"node_up\"",
    "\"/bin/x\"",
    "99999999999",
    "10m",
    "é",
    "\u{0}",
    "\r\n",
    "TE_JOIN_NODE",
    "/usr/sbin/cluster/events/node_up.rp",
    "rwho",
];

#[derive(Clone, Debug)]
enum Edit {
    Delete { at: usize, len: usize },
    Insert { at: usize, text: String },
    Token { at: usize, token: usize },
    DuplicateLine { at: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1..32usize).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<usize>(), "\\PC{0,8}").prop_map(|(at, text)| Edit::Insert { at, text }),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(at, token)| Edit::Token { at, token }),
        any::<usize>().prop_map(|at| Edit::DuplicateLine { at }),
    ]
}

/// `text` with `edits` applied (positions are taken modulo the length, on char boundaries).
fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let position = |at: usize| at % (chars.len() + 1);
        match e {
            Edit::Delete { at, len } => {
                let start = position(*at);
                let end = (start + len).min(chars.len());
                chars.drain(start..end);
            }
            Edit::Insert { at, text } => {
                let at = position(*at);
                chars.splice(at..at, text.chars());
            }
            Edit::Token { at, token } => {
                let at = position(*at);
                chars.splice(at..at, TOKENS[*token].chars());
            }
            Edit::DuplicateLine { at } => {
                let text: String = chars.iter().collect();
                let lines: Vec<&str> = text.lines().collect();
                if !lines.is_empty() {
                    let line = lines[at % lines.len()].to_owned();
                    let at = position(*at);
                    chars.splice(at..at, format!("\n{line}\n").chars());
                }
            }
        }
    }
    chars.into_iter().collect()
}

fn check_program(text: &str) -> Result<(), TestCaseError> {
    match Program::parse(Path::new("event.rp"), text) {
        Ok(program) => {
            prop_assert_eq!(
                Program::parse(Path::new("event.rp"), text).ok(),
                Some(program)
            );
        }
        Err(diagnostics) => {
            prop_assert!(!diagnostics.0.is_empty());
            prop_assert!(!diagnostics.to_string().is_empty());
        }
    }
    Ok(())
}

/// Parse a rules file whose `.rp` files all read as `program`.
fn check_rules(text: &str, program: &str) -> Result<(), TestCaseError> {
    let mut read = |_: &Path| Ok(program.to_owned());
    match parse_rules(Path::new("rules.toml"), text, &mut read) {
        Ok(rules) => {
            let again = parse_rules(Path::new("rules.toml"), text, &mut read);
            prop_assert_eq!(again.ok(), Some(rules));
        }
        Err(diagnostics) => {
            prop_assert!(!diagnostics.0.is_empty());
            prop_assert!(!diagnostics.to_string().is_empty());
        }
    }
    Ok(())
}

fn check_import(rules: &str, node_up: &str, rwho: &str) -> Result<(), TestCaseError> {
    let mut read = |p: &Path| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        match name {
            "node_up.rp" => Ok(node_up.to_owned()),
            "rwho.rp" => Ok(rwho.to_owned()),
            _ => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
        }
    };
    if let Err(diagnostics) = import_hacmp_text(
        Path::new("/etc/halcyon/rules.hacmprd"),
        rules,
        Some(Path::new("/etc/halcyon/rp")),
        &mut read,
    ) {
        prop_assert!(!diagnostics.0.is_empty());
        prop_assert!(!diagnostics.to_string().is_empty());
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1_000))]

    #[test]
    fn random_recovery_programs(text in "\\PC{0,300}") {
        check_program(&text)?;
    }

    #[test]
    fn mutated_default_recovery_programs(
        event in 0..BUILTIN_EVENTS.len(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let text = default_program_text(BUILTIN_EVENTS[event]).expect("a built-in event");
        check_program(&apply(text, &edits))?;
    }

    #[test]
    fn random_rules_files(text in "\\PC{0,300}", program in "\\PC{0,100}") {
        check_rules(&text, &program)?;
    }

    #[test]
    fn mutated_default_rules_file(
        edits in prop::collection::vec(edit(), 1..6),
        program_edits in prop::collection::vec(edit(), 0..3),
    ) {
        let program = apply(default_program_text("node_up").unwrap(), &program_edits);
        check_rules(&apply(&default_rules_text(), &edits), &program)?;
    }

    #[test]
    fn random_hacmp_rules(text in "\\PC{0,300}") {
        check_import(&text, NODE_UP_RP, RWHO_RP)?;
    }

    #[test]
    fn mutated_hacmp_rules_and_programs(
        edits in prop::collection::vec(edit(), 1..6),
        rp_edits in prop::collection::vec(edit(), 0..4),
    ) {
        check_import(
            &apply(HACMP_RULES, &edits),
            &apply(NODE_UP_RP, &rp_edits),
            &apply(RWHO_RP, &rp_edits),
        )?;
    }
}

#[test]
fn the_unmutated_inputs_are_accepted() {
    let mut read = |_: &Path| Ok(default_program_text("node_up").unwrap().to_owned());
    assert!(parse_rules(Path::new("rules.toml"), &default_rules_text(), &mut read).is_ok());
    for event in BUILTIN_EVENTS {
        let text = default_program_text(event).unwrap();
        assert!(
            Program::parse(Path::new("event.rp"), text).is_ok(),
            "{event}"
        );
    }
    let mut read = |p: &Path| match p.file_name().and_then(|n| n.to_str()) {
        Some("node_up.rp") => Ok(NODE_UP_RP.to_owned()),
        Some("rwho.rp") => Ok(RWHO_RP.to_owned()),
        _ => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
    };
    let imported = import_hacmp_text(
        Path::new("/etc/halcyon/rules.hacmprd"),
        HACMP_RULES,
        Some(Path::new("/etc/halcyon/rp")),
        &mut read,
    );
    assert!(
        imported.is_ok(),
        "{:?}",
        imported.err().map(|d| d.to_string())
    );
}
