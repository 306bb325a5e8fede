//! Recovery programs in the seeds' line format (HACMP ES `.rp` files):
//!
//! ```text
//! # comment
//! other "/usr/local/bin/release-disk" 0
//! barrier
//! event "halcyon:acquire" 0 NULL
//! all   "/usr/local/bin/tell \"done\"" X
//! ```
//!
//! A line is `node_set "command" expected_status`, `barrier`, a comment or blank.
//! `node_set` is `all`, `event` or `other` (any case); the command is quoted, with
//! `\"` and `\\` as escapes (every other backslash is kept as written, so `\$` stays
//! `\$`); the expected status is an exit status from 0 to 255 or `X` (ignored).
//! Legacy forms are accepted: the word `NULL` at the end of a command line (the seeds
//! require it there), and a line holding only `NULL`, which ends the program (only
//! comments and blank lines may follow it). Commands between two barriers run in
//! parallel, on each node and across nodes; an implicit barrier ends the program.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use halcyon_config::diagnostic::did_you_mean;
use halcyon_config::{Diagnostic, Diagnostics};
use serde::{Deserialize, Serialize};

/// Most lines a recovery program may have (commands and barriers).
pub const PROGRAM_LINES_MAX: usize = 1_000;
/// Longest command text, in bytes.
pub const COMMAND_LENGTH_MAX: usize = 4_096;

/// Where a command runs, relative to the event node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeSet {
    /// Every member of the cluster (for `node_up`, including the joining node).
    All,
    /// The event node only (nowhere, if it is not a member: a failed node).
    Event,
    /// Every member except the event node.
    Other,
}

impl NodeSet {
    pub const NAMES: [&'static str; 3] = ["all", "event", "other"];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeSet::All => "all",
            NodeSet::Event => "event",
            NodeSet::Other => "other",
        }
    }

    fn parse(word: &str) -> Option<NodeSet> {
        match word.to_ascii_lowercase().as_str() {
            "all" => Some(NodeSet::All),
            "event" => Some(NodeSet::Event),
            "other" => Some(NodeSet::Other),
            _ => None,
        }
    }
}

impl fmt::Display for NodeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The exit status a command must return, or `X` (any).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expected {
    Status(u8),
    Any,
}

impl Expected {
    /// Whether `status` is what was expected.
    pub fn accepts(self, status: i32) -> bool {
        match self {
            Expected::Any => true,
            Expected::Status(s) => i32::from(s) == status,
        }
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::Status(s) => write!(f, "{s}"),
            Expected::Any => f.write_str("X"),
        }
    }
}

/// One `node_set "command" status` line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandLine {
    pub node_set: NodeSet,
    /// The command as run (escapes resolved).
    pub command: String,
    pub expected: Expected,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Line {
    Command(CommandLine),
    Barrier,
}

/// A parsed recovery program: its commands and barriers in order (comments dropped).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    pub lines: Vec<Line>,
}

impl Program {
    /// Parses a program read from `path` (used only in diagnostics).
    pub fn parse(path: &Path, text: &str) -> Result<Program, Diagnostics> {
        let (program, diagnostics) = parse_at(path, text, Origin::START);
        if diagnostics.is_empty() {
            Ok(program)
        } else {
            Err(Diagnostics(diagnostics))
        }
    }

    /// The program in the native line format (no `NULL`s), parseable again.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Barrier => out.push_str("barrier\n"),
                Line::Command(c) => {
                    let _ = writeln!(
                        out,
                        "{} \"{}\" {}",
                        c.node_set,
                        escape(&c.command),
                        c.expected
                    );
                }
            }
        }
        out
    }

    /// Every command line, in order.
    pub fn commands(&self) -> impl Iterator<Item = &CommandLine> {
        self.lines.iter().filter_map(|l| match l {
            Line::Command(c) => Some(c),
            Line::Barrier => None,
        })
    }

    /// `self`, a barrier, then `other` (the barrier is left out when either is empty).
    pub fn then(mut self, other: &Program) -> Program {
        if !self.lines.is_empty() && !other.lines.is_empty() {
            if self.lines.last() != Some(&Line::Barrier) {
                self.lines.push(Line::Barrier);
            }
            self.lines.extend(other.lines.iter().cloned());
        } else if self.lines.is_empty() {
            self.lines = other.lines.clone();
        }
        self
    }
}

fn escape(command: &str) -> String {
    command.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Where a program's text starts in its file (for programs inside a rules file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    /// 1-based line of the text's first character.
    pub line: usize,
    /// 1-based column of the text's first character (applies to its first line).
    pub column: usize,
}

impl Origin {
    pub const START: Origin = Origin { line: 1, column: 1 };
}

/// Parses a program, collecting every mistake.
pub(crate) fn parse_at(path: &Path, text: &str, origin: Origin) -> (Program, Vec<Diagnostic>) {
    let mut parser = LineParser {
        path: path.to_path_buf(),
        diagnostics: Vec::new(),
        line: 0,
        column_offset: 0,
        text: "",
    };
    let mut program = Program::default();
    let mut ended_by_null: Option<usize> = None;
    for (index, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        parser.line = origin.line + index;
        parser.column_offset = if index == 0 { origin.column - 1 } else { 0 };
        parser.text = raw;
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(null_line) = ended_by_null {
            let start = raw.len() - trimmed.len();
            parser.error(
                start,
                "program",
                format!("content after the NULL line {null_line} that ends the program"),
                "only comments or blank lines after NULL",
                Some("remove the NULL line or this one".to_owned()),
            );
            continue;
        }
        match parser.parse_line() {
            Some(Parsed::Line(line)) => {
                if program.lines.len() == PROGRAM_LINES_MAX {
                    parser.error(
                        raw.len() - trimmed.len(),
                        "program",
                        format!("more than {PROGRAM_LINES_MAX} commands and barriers"),
                        format!("at most {PROGRAM_LINES_MAX}"),
                        None,
                    );
                    break;
                }
                program.lines.push(line);
            }
            Some(Parsed::EndOfProgram) => ended_by_null = Some(parser.line),
            None => {}
        }
    }
    (program, parser.diagnostics)
}

enum Parsed {
    Line(Line),
    EndOfProgram,
}

struct LineParser<'a> {
    path: PathBuf,
    diagnostics: Vec<Diagnostic>,
    line: usize,
    column_offset: usize,
    text: &'a str,
}

const EXPECTED_STATUS: &str = "an exit status from 0 to 255, or X to ignore it";

impl LineParser<'_> {
    fn error(
        &mut self,
        byte: usize,
        field: &str,
        problem: impl Into<String>,
        expected: impl Into<String>,
        hint: Option<String>,
    ) {
        let column = self.text[..byte.min(self.text.len())].chars().count() + 1;
        self.diagnostics.push(Diagnostic {
            file: self.path.clone(),
            line: self.line,
            column: column + self.column_offset,
            field: field.to_owned(),
            problem: problem.into(),
            expected: Some(expected.into()),
            hint,
        });
    }

    /// The next whitespace-separated word at or after `at`: (start, end).
    fn word(&self, at: usize) -> Option<(usize, usize)> {
        let rest = &self.text[at..];
        let start = at + (rest.len() - rest.trim_start().len());
        if start == self.text.len() {
            return None;
        }
        let len = self.text[start..]
            .find(char::is_whitespace)
            .unwrap_or(self.text.len() - start);
        Some((start, start + len))
    }

    /// True when nothing but blanks or a `#` comment follows `at`.
    fn rest_is_empty(&self, at: usize) -> bool {
        let rest = self.text[at..].trim_start();
        rest.is_empty() || rest.starts_with('#')
    }

    fn parse_line(&mut self) -> Option<Parsed> {
        let (start, end) = self.word(0).expect("the caller skips blank lines");
        let first = &self.text[start..end];
        if first.eq_ignore_ascii_case("barrier") {
            // `barrier NULL` is tolerated, though the seeds leave NULL off barriers.
            let mut at = end;
            if let Some((s, e)) = self.word(at)
                && self.text[s..e].eq_ignore_ascii_case("NULL")
            {
                at = e;
            }
            if !self.rest_is_empty(at) {
                let (s, e) = self.word(at).expect("not empty");
                let extra = self.text[s..e].to_owned();
                self.error(
                    s,
                    "barrier",
                    format!("unexpected \"{extra}\" after barrier"),
                    "the end of the line: a barrier takes no arguments",
                    None,
                );
                return None;
            }
            return Some(Parsed::Line(Line::Barrier));
        }
        if first.eq_ignore_ascii_case("NULL") {
            if !self.rest_is_empty(end) {
                let (s, e) = self.word(end).expect("not empty");
                let extra = self.text[s..e].to_owned();
                self.error(
                    s,
                    "program",
                    format!("unexpected \"{extra}\" after NULL"),
                    "NULL alone on its line (it ends the program)",
                    None,
                );
                return None;
            }
            return Some(Parsed::EndOfProgram);
        }
        // The node set ends at whitespace or at the opening quote (`all"cmd"`).
        let set_end = self.text[start..]
            .find(|c: char| c.is_whitespace() || c == '"')
            .map_or(self.text.len(), |i| start + i);
        let word = &self.text[start..set_end];
        let Some(node_set) = NodeSet::parse(word) else {
            let word = word.to_owned();
            let hint = did_you_mean(&word, NodeSet::NAMES.iter().copied().chain(["barrier"]));
            self.error(
                start,
                "node set",
                format!("\"{word}\" is not a node set"),
                "all, event, other, or barrier",
                hint,
            );
            return None;
        };
        let (command, at) = self.command(set_end)?;
        let (expected, at) = self.expected_status(at)?;
        if !self.finish(at) {
            return None;
        }
        Some(Parsed::Line(Line::Command(CommandLine {
            node_set,
            command,
            expected,
        })))
    }

    /// The quoted command starting after `at`: (text, byte after the closing quote).
    fn command(&mut self, at: usize) -> Option<(String, usize)> {
        let rest = &self.text[at..];
        let open = at + (rest.len() - rest.trim_start().len());
        if open == self.text.len() {
            self.error(
                open,
                "command",
                "missing",
                "a quoted command after the node set, such as \"/usr/local/bin/notify\"",
                None,
            );
            return None;
        }
        if !self.text[open..].starts_with('"') {
            let (s, e) = self.word(open).expect("not empty");
            let found = self.text[s..e].to_owned();
            self.error(
                open,
                "command",
                format!("{found} is not quoted"),
                "a command in double quotes, such as \"/usr/local/bin/notify\"",
                Some(format!("write \"{found}\"")),
            );
            return None;
        }
        let mut command = String::new();
        let mut chars = self.text[open + 1..].char_indices();
        let mut close = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    close = Some(open + 1 + i);
                    break;
                }
                '\\' => match chars.clone().next() {
                    Some((_, next @ ('"' | '\\'))) => {
                        command.push(next);
                        chars.next();
                    }
                    _ => command.push('\\'),
                },
                c => command.push(c),
            }
        }
        let Some(close) = close else {
            self.error(
                open,
                "command",
                "unterminated quote",
                "a closing \" before the end of the line",
                Some("write \\\" for a quote inside the command".to_owned()),
            );
            return None;
        };
        if command.trim().is_empty() {
            self.error(
                open,
                "command",
                "is empty",
                "a command to run, such as \"/usr/local/bin/notify\"",
                None,
            );
            return None;
        }
        if command.len() > COMMAND_LENGTH_MAX {
            self.error(
                open,
                "command",
                format!("is {} bytes long", command.len()),
                format!("at most {COMMAND_LENGTH_MAX} bytes"),
                Some("put long commands in a script".to_owned()),
            );
            return None;
        }
        Some((command, close + 1))
    }

    /// The expected status after `at`: (status, byte after it).
    fn expected_status(&mut self, at: usize) -> Option<(Expected, usize)> {
        if self.rest_is_empty(at) {
            let column_at = self.text[..at].trim_end().len();
            self.error(
                column_at,
                "expected status",
                "missing after the command",
                EXPECTED_STATUS,
                None,
            );
            return None;
        }
        let (s, e) = self.word(at).expect("not empty");
        if s == at {
            let found = self.text[s..e].to_owned();
            self.error(
                s,
                "command",
                format!("unexpected \"{found}\" right after the closing quote"),
                "a blank between the command and the expected status",
                None,
            );
            return None;
        }
        let word = &self.text[s..e];
        if word.eq_ignore_ascii_case("X") {
            return Some((Expected::Any, e));
        }
        match word.parse::<u8>() {
            Ok(status) => Some((Expected::Status(status), e)),
            Err(_) => {
                let problem = if word.parse::<i64>().is_ok() {
                    format!("{word} is out of range")
                } else {
                    format!("\"{word}\" is not an exit status")
                };
                self.error(s, "expected status", problem, EXPECTED_STATUS, None);
                None
            }
        }
    }

    /// After the status: an optional `NULL`, then the end of the line.
    fn finish(&mut self, at: usize) -> bool {
        let Some((s, e)) = self.word(at) else {
            return true;
        };
        if self.text[s..].starts_with('#') {
            return true;
        }
        if self.text[s..e].eq_ignore_ascii_case("NULL") {
            if self.rest_is_empty(e) {
                return true;
            }
            let (s2, e2) = self.word(e).expect("not empty");
            let extra = self.text[s2..e2].to_owned();
            self.error(
                s2,
                "program",
                format!("unexpected \"{extra}\" after NULL"),
                "the end of the line",
                None,
            );
            return false;
        }
        let extra = self.text[s..e].to_owned();
        self.error(
            s,
            "program",
            format!("unexpected \"{extra}\" after the expected status"),
            "the end of the line (or the legacy word NULL)",
            Some("quote the whole command, arguments included".to_owned()),
        );
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_parses_back() {
        let text = "all \"a \\\"b\\\" \\\\ \\$c\" 0\nbarrier\nevent \"x\" X\n";
        let program = Program::parse(Path::new("t.rp"), text).expect("parses");
        match &program.lines[0] {
            Line::Command(c) => assert_eq!(c.command, "a \"b\" \\ \\$c"),
            Line::Barrier => panic!("not a barrier"),
        }
        let again = Program::parse(Path::new("t.rp"), &program.render()).expect("parses");
        assert_eq!(program, again);
    }
}
