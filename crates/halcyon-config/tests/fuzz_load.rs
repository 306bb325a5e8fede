//! Property tests of the configuration loader (issue 17): random text and mutated copies of
//! the example configuration. No input panics; a refusal is a `Diagnostics` value whose
//! rendering (file:line:column, quoted values, hints) does not panic either, and names a
//! position inside the file; an accepted configuration is accepted again (deterministic).
//!
//! Cases per property: `HALCYON_FUZZ_CASES` (the long run), else a CI-sized default.

use halcyon_config::load_texts;
use proptest::prelude::*;
use proptest::test_runner::Config;

const CLUSTER: &str = include_str!("../../../examples/cluster/cluster.toml");
const PACKAGES: [(&str, &str); 5] = [
    (
        "packages/batch.toml",
        include_str!("../../../examples/cluster/packages/batch.toml"),
    ),
    (
        "packages/db.toml",
        include_str!("../../../examples/cluster/packages/db.toml"),
    ),
    (
        "packages/monitoring.toml",
        include_str!("../../../examples/cluster/packages/monitoring.toml"),
    ),
    (
        "packages/nfs.toml",
        include_str!("../../../examples/cluster/packages/nfs.toml"),
    ),
    (
        "packages/web.toml",
        include_str!("../../../examples/cluster/packages/web.toml"),
    ),
];

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

/// Pieces of TOML and of the configuration's own values, to reach past the TOML parser.
const TOKENS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "=",
    "\"",
    "'",
    "'''",
    "\"\"\"",
    "#",
    "\n",
    ",",
    ".",
    "{",
    "}",
    "0",
    "-1",
    "1e999",
    "nan",
    "inf",
    "99999999999999999999",
    "4294967296",
    "true",
    "\"\"",
    "\\u0000",
    "\u{0}",
    "é",
    "\u{10FFFF}",
    "\r\n",
    "100ms",
    "0s",
    "1h",
    "\"*\"",
    "[\"*\"]",
    "node1",
    "lan1",
    "198.18.1.1",
    "::1",
    "198.18.1.0/33",
    "name",
    "nodes",
    "address",
    "kind",
    "\"disk\"",
    "interval",
    "sensitivity",
    "[[node]]",
    "[[network]]",
    "[[node.interface]]",
    "[package]",
    "[[resource]]",
    "[[monitor]]",
    "depends",
    "priority",
    "\t",
    " ",
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
        (any::<usize>(), 1..64usize).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<usize>(), "\\PC{0,12}").prop_map(|(at, text)| Edit::Insert { at, text }),
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

/// Load `files`; a refusal must render, and name lines that exist.
fn check(files: &[(&str, &str)]) -> Result<(), TestCaseError> {
    match load_texts(files) {
        Ok(_) => {
            prop_assert!(
                load_texts(files).is_ok(),
                "accepted once, refused the second time"
            );
        }
        Err(diagnostics) => {
            prop_assert!(!diagnostics.0.is_empty(), "a refusal without a diagnostic");
            let rendered = diagnostics.to_string();
            prop_assert!(!rendered.is_empty());
            for d in &diagnostics.0 {
                if let Some((_, text)) = files.iter().find(|(p, _)| d.file.as_os_str() == *p) {
                    let lines = text.split('\n').count();
                    prop_assert!(
                        d.line <= lines,
                        "{}:{} is past the end ({} lines)",
                        d.file.display(),
                        d.line,
                        lines
                    );
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1_000))]

    #[test]
    fn random_text_as_the_cluster_file(text in "\\PC{0,400}") {
        check(&[("cluster.toml", &text)])?;
    }

    #[test]
    fn random_bytes_as_the_cluster_file(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        check(&[("cluster.toml", &text)])?;
    }

    #[test]
    fn mutated_example_cluster_file(edits in prop::collection::vec(edit(), 1..6)) {
        let cluster = apply(CLUSTER, &edits);
        let mut files = vec![("cluster.toml", cluster.as_str())];
        files.extend(PACKAGES);
        check(&files)?;
    }

    #[test]
    fn mutated_example_package_file(
        which in 0..PACKAGES.len(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let package = apply(PACKAGES[which].1, &edits);
        let mut files = vec![("cluster.toml", CLUSTER)];
        for (i, (path, text)) in PACKAGES.iter().enumerate() {
            files.push((path, if i == which { package.as_str() } else { text }));
        }
        check(&files)?;
    }
}

#[test]
fn the_unmutated_example_loads() {
    let mut files = vec![("cluster.toml", CLUSTER)];
    files.extend(PACKAGES);
    assert!(load_texts(&files).is_ok());
}
