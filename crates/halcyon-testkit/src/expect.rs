//! Expectation files of scenario tests (the policy engine's, the coordinator's, the
//! executor's): the rendered output of a scenario must equal `NAME.expected` beside it;
//! `HALCYON_BLESS=1` writes it instead (read the diff before committing).

use std::fmt::Write as _;
use std::path::Path;

/// Compares `actual` with the expectation of scenario `path` (its `.expected` sibling),
/// or writes it when `HALCYON_BLESS` is set. The error names both files and shows a line
/// diff (`-` expected, `+` actual).
pub fn check(path: &Path, actual: &str) -> Result<(), String> {
    let expected_path = path.with_extension("expected");
    if std::env::var_os("HALCYON_BLESS").is_some() {
        return std::fs::write(&expected_path, actual)
            .map_err(|e| format!("{}: {e}", expected_path.display()));
    }
    let expected = std::fs::read_to_string(&expected_path).map_err(|e| {
        format!(
            "{}: {e} (bless with HALCYON_BLESS=1)",
            expected_path.display()
        )
    })?;
    if expected == actual {
        return Ok(());
    }
    let mut text = format!(
        "{}: the output differs from {}\n",
        path.display(),
        expected_path.display()
    );
    for change in similar::TextDiff::from_lines(expected.as_str(), actual).iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Delete => "-",
            similar::ChangeTag::Insert => "+",
            similar::ChangeTag::Equal => " ",
        };
        let _ = write!(text, "{sign}{change}");
    }
    Err(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_output_passes_and_a_difference_is_shown_as_a_diff() {
        let dir = tempfile::tempdir().unwrap();
        let scenario = dir.path().join("s.toml");
        std::fs::write(dir.path().join("s.expected"), "a\nb\n").unwrap();
        assert_eq!(check(&scenario, "a\nb\n"), Ok(()));
        let error = check(&scenario, "a\nc\n").unwrap_err();
        assert!(error.contains("-b\n+c\n"), "{error}");
        assert!(error.contains("s.expected"), "{error}");
        let missing = check(&dir.path().join("t.toml"), "x").unwrap_err();
        assert!(missing.contains("HALCYON_BLESS=1"), "{missing}");
    }
}
