//! The HACMP ES `rules.hacmprd` importer.
//!
//! A `rules.hacmprd` file is a list of records of exactly nine lines (lines starting
//! with `#` are comments and are not counted; a blank line is an empty field):
//!
//! 1. event name (`TE_JOIN_NODE`, or a user-defined name such as `UE_PGMRWHO_DOWN`)
//! 2. state qualifier (`0`: none)
//! 3. recovery program path (the `.rp` file)
//! 4. recovery type (reserved; an integer)
//! 5. recovery level (reserved; an integer)
//! 6. resource variable name (user-defined events)
//! 7. instance vector (user-defined events)
//! 8. predicate (user-defined events)
//! 9. rearm predicate (user-defined events)
//!
//! The old product hung on a record with a wrong line count; the importer refuses it,
//! naming the record and its lines. A record starts at a line holding one word that
//! is followed two lines later by a `.rp` path, or at a `TE_`/`UE_` name.
//!
//! Each record's `.rp` file is looked for at the path the record names (relative
//! paths against the rules file's directory), then by file name in the `--rp-dir`
//! directory, then beside the rules file. HACMP's built-in events (`TE_*`) become
//! Halcyon's built-in events; in their programs, bare command names (`"node_up"`,
//! `"node_up_complete"`) are HACMP's own event scripts, replaced by Halcyon's default
//! program: the administrator's own lines before and after them are kept (`before`
//! and `after`), lines between them are refused.

use std::path::{Path, PathBuf};

use halcyon_config::diagnostic::did_you_mean;
use halcyon_config::{Diagnostic, Diagnostics};

use crate::builtin::check_keeps_builtins;
use crate::program::{Line, Program};
use crate::rules::{Customisation, MonitorDefinition, Rule, RuleProgram, Rules};

/// Lines in a record.
pub const RECORD_LINES: usize = 9;

/// HACMP's built-in event names and Halcyon's.
pub const LEGACY_EVENTS: &[(&str, &str)] = &[
    ("TE_JOIN_NODE", "node_up"),
    ("TE_FAIL_NODE", "node_down"),
    ("TE_JOIN_NETWORK", "network_up"),
    ("TE_FAIL_NETWORK", "network_down"),
    ("TE_SWAP_ADAPTER", "swap_adapter"),
    ("TE_JOIN_STANDBY", "join_standby"),
    ("TE_FAIL_STANDBY", "fail_standby"),
    ("TE_DARE_TOPOLOGY", "config_change"),
    ("TE_DARE_RESOURCE", "config_change"),
];

const FIELD_NAMES: [&str; RECORD_LINES] = [
    "event name",
    "state qualifier",
    "recovery program path",
    "recovery type",
    "recovery level",
    "resource variable",
    "instance vector",
    "predicate",
    "rearm predicate",
];

/// The native files made from a `rules.hacmprd` and its `.rp` files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    pub rules: Rules,
    /// The native rules file (`rules.toml`).
    pub rules_toml: String,
    /// The recovery programs in native form: (file name, text), named by
    /// `program_file` in `rules_toml`.
    pub programs: Vec<(String, String)>,
    /// What the importer decided that the administrator should know.
    pub notes: Vec<String>,
}

impl Imported {
    /// Every file to write into the output directory: (relative path, text).
    pub fn files(&self) -> Vec<(PathBuf, String)> {
        let mut files = vec![(PathBuf::from("rules.toml"), self.rules_toml.clone())];
        files.extend(
            self.programs
                .iter()
                .map(|(name, text)| (PathBuf::from(name), text.clone())),
        );
        files
    }
}

/// Imports `rules_path` and the `.rp` files it names (see the module documentation).
pub fn import_hacmp(rules_path: &Path, rp_dir: Option<&Path>) -> Result<Imported, Diagnostics> {
    let text = std::fs::read_to_string(rules_path).map_err(|e| {
        Diagnostics(vec![Diagnostic {
            file: rules_path.to_path_buf(),
            line: 0,
            column: 0,
            field: "file".to_owned(),
            problem: format!("cannot be read: {e}"),
            expected: None,
            hint: None,
        }])
    })?;
    import_hacmp_text(rules_path, &text, rp_dir, &mut |p| {
        std::fs::read_to_string(p)
    })
}

/// [`import_hacmp`] on text, with `.rp` files read through `read_file`.
pub fn import_hacmp_text(
    rules_path: &Path,
    text: &str,
    rp_dir: Option<&Path>,
    read_file: &mut dyn FnMut(&Path) -> std::io::Result<String>,
) -> Result<Imported, Diagnostics> {
    let mut importer = Importer {
        path: rules_path.to_path_buf(),
        diagnostics: Vec::new(),
        notes: Vec::new(),
    };
    // (1-based line number, text) of every line that is not a comment.
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with('#'))
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
        .collect();
    let records = importer.split_records(&lines);
    let rules_dir = rules_path.parent().unwrap_or(Path::new("")).to_path_buf();
    let mut rules = Rules::default();
    let mut programs: Vec<(String, String)> = Vec::new();
    let mut origins: Vec<(String, Option<String>, usize, String)> = Vec::new();
    for (number, record) in records.iter().enumerate() {
        let number = number + 1;
        let Some(imported) = importer.record(number, record, &rules_dir, rp_dir, &mut *read_file)
        else {
            continue;
        };
        let ImportedRecord {
            rule,
            legacy_name,
            program_text,
            rp_name,
        } = imported;
        if let Some((_, _, first, first_name)) = origins
            .iter()
            .find(|(n, s, _, _)| *n == rule.name && *s == rule.state)
        {
            let existing = rules
                .rules
                .iter()
                .find(|r| r.name == rule.name && r.state == rule.state)
                .expect("recorded");
            if existing.program == rule.program && existing.customisation == rule.customisation {
                importer.notes.push(format!(
                    "record {number} ({legacy_name}) and record {first} ({first_name}) both become {}; imported once",
                    rule.name
                ));
                continue;
            }
            importer.error(
                record[0].0,
                &format!("record {number}: event name"),
                format!(
                    "{legacy_name} becomes {}, like record {first} ({first_name}), but with a different recovery program",
                    rule.name
                ),
                "one program per Halcyon event",
                Some("make the two .rp files the same, or drop one record".to_owned()),
            );
            continue;
        }
        origins.push((
            rule.name.clone(),
            rule.state.clone(),
            number,
            legacy_name.clone(),
        ));
        let mut rule = rule;
        if let (Some(text), Some(rp_name)) = (program_text, rp_name) {
            let mut name = rp_name;
            let mut n = 2;
            while programs.iter().any(|(p, _)| *p == name) {
                name = format!("{}-{n}.rp", name.trim_end_matches(".rp"));
                n += 1;
            }
            if let RuleProgram::Replace { file, .. } = &mut rule.program {
                *file = Some(name.clone());
            }
            programs.push((name, text));
        }
        rules.rules.push(rule);
    }
    if !importer.diagnostics.is_empty() {
        let mut d = importer.diagnostics;
        d.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        return Err(Diagnostics(d));
    }
    let mut rules_toml = format!(
        "# Imported from {} by `halcyon import hacmp`.\n",
        rules_path.display()
    );
    for note in &importer.notes {
        rules_toml.push_str(&format!("# note: {note}\n"));
    }
    rules_toml.push_str(&rules.to_toml());
    Ok(Imported {
        rules,
        rules_toml,
        programs,
        notes: importer.notes,
    })
}

struct ImportedRecord {
    rule: Rule,
    legacy_name: String,
    /// The native `.rp` text, when the rule names a program file.
    program_text: Option<String>,
    rp_name: Option<String>,
}

struct Importer {
    path: PathBuf,
    diagnostics: Vec<Diagnostic>,
    notes: Vec<String>,
}

fn is_legacy_name(line: &str) -> bool {
    let t = line.trim();
    (t.starts_with("TE_") || t.starts_with("UE_")) && !t.contains(char::is_whitespace)
}

fn is_single_word(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.contains(char::is_whitespace)
}

impl Importer {
    fn error(
        &mut self,
        line: usize,
        field: &str,
        problem: impl Into<String>,
        expected: impl Into<String>,
        hint: Option<String>,
    ) {
        self.diagnostics.push(Diagnostic {
            file: self.path.clone(),
            line,
            column: 1,
            field: field.to_owned(),
            problem: problem.into(),
            expected: Some(expected.into()),
            hint,
        });
    }

    /// The records, each exactly nine lines; a wrong count is reported.
    fn split_records<'l>(&mut self, lines: &[(usize, &'l str)]) -> Vec<Vec<(usize, &'l str)>> {
        let is_start = |i: usize| {
            is_legacy_name(lines[i].1)
                || (is_single_word(lines[i].1)
                    && lines
                        .get(i + 2)
                        .is_some_and(|(_, l)| l.trim().ends_with(".rp")))
        };
        let starts: Vec<usize> = (0..lines.len()).filter(|i| is_start(*i)).collect();
        // Lines before the first record.
        let first = starts.first().copied().unwrap_or(lines.len());
        let stray: Vec<&(usize, &str)> = lines[..first]
            .iter()
            .filter(|(_, l)| !l.trim().is_empty())
            .collect();
        if let Some((line, text)) = stray.first() {
            self.error(
                *line,
                "rules file",
                format!("\"{}\" is not part of a record", text.trim()),
                "records of nine lines starting with an event name, or # comments",
                None,
            );
        } else if first > 0 {
            self.error(
                lines[0].0,
                "rules file",
                format!("{first} blank line(s) before the first record"),
                "the first record's event name (blank lines are fields in this format)",
                Some("remove them or comment them out with #".to_owned()),
            );
        }
        let mut records = Vec::new();
        for (n, &start) in starts.iter().enumerate() {
            let end = starts.get(n + 1).copied().unwrap_or(lines.len());
            let record: Vec<(usize, &str)> = lines[start..end].to_vec();
            let is_last = n + 1 == starts.len();
            if record.len() != RECORD_LINES {
                let last = record.last().expect("a start line").0;
                let name = record[0].1.trim();
                let trailing_blank = is_last
                    && record.len() > RECORD_LINES
                    && record.last().is_some_and(|(_, l)| l.trim().is_empty());
                let hint = if record.len() < RECORD_LINES {
                    "a field left empty still needs its (blank) line"
                } else if trailing_blank {
                    "blank lines at the end of the file count as fields (the old product hung on them): remove them, or the extra line in the record"
                } else {
                    "remove the extra lines, or comment them out with #"
                };
                self.error(
                    record[0].0,
                    &format!("record {}", n + 1),
                    format!(
                        "\"{name}\" has {} lines (lines {} to {last}, comments not counted)",
                        record.len(),
                        record[0].0
                    ),
                    format!(
                        "exactly {RECORD_LINES}: {} (the old product hung on a wrong count)",
                        FIELD_NAMES.join(", ")
                    ),
                    Some(hint.to_owned()),
                );
                continue;
            }
            records.push(record);
        }
        records
    }

    fn record(
        &mut self,
        number: usize,
        record: &[(usize, &str)],
        rules_dir: &Path,
        rp_dir: Option<&Path>,
        read_file: &mut dyn FnMut(&Path) -> std::io::Result<String>,
    ) -> Option<ImportedRecord> {
        let errors = self.diagnostics.len();
        let field = |i: usize| record[i].1.trim();
        let at = |i: usize| record[i].0;
        let label = |i: usize| format!("record {number}: {}", FIELD_NAMES[i]);
        let legacy_name = field(0).to_owned();
        // 1. Name.
        let (name, builtin) = if legacy_name.starts_with("TE_") {
            match LEGACY_EVENTS.iter().find(|(l, _)| *l == legacy_name) {
                Some((_, native)) => ((*native).to_owned(), true),
                None => {
                    let hint = did_you_mean(&legacy_name, LEGACY_EVENTS.iter().map(|(l, _)| *l));
                    self.error(
                        at(0),
                        &label(0),
                        format!("\"{legacy_name}\" is not an HACMP built-in event"),
                        format!(
                            "one of {}, or a user-defined name (UE_...)",
                            LEGACY_EVENTS
                                .iter()
                                .map(|(l, _)| *l)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        hint,
                    );
                    (legacy_name.clone(), true)
                }
            }
        } else {
            if !legacy_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                || legacy_name.is_empty()
            {
                self.error(
                    at(0),
                    &label(0),
                    format!("\"{legacy_name}\" is not a valid event name"),
                    "letters, digits, _ - and .",
                    None,
                );
            }
            (legacy_name.clone(), false)
        };
        // 2. State qualifier.
        let state = match field(1) {
            "" | "0" => None,
            s if builtin => {
                self.error(
                    at(1),
                    &label(1),
                    format!("\"{s}\" is not a state qualifier of {legacy_name}"),
                    "0 (the HACMP built-in events have no other)",
                    None,
                );
                None
            }
            s => Some(s.to_owned()),
        };
        // 4, 5. Reserved integers.
        for i in [3, 4] {
            if field(i).parse::<i64>().is_err() {
                let problem = if field(i).is_empty() {
                    "is empty".to_owned()
                } else {
                    format!("\"{}\" is not an integer", field(i))
                };
                self.error(
                    at(i),
                    &label(i),
                    problem,
                    "an integer (reserved by HACMP; 2 and 0 in its files)",
                    Some(format!(
                        "check that line {} is really the {} (a missing or extra line shifts the fields)",
                        at(i),
                        FIELD_NAMES[i]
                    )),
                );
            }
        }
        // 6-9. Monitor fields.
        let monitor = if builtin {
            for i in 5..RECORD_LINES {
                if !field(i).is_empty() {
                    self.error(
                        at(i),
                        &label(i),
                        format!("\"{}\" given for a built-in event", field(i)),
                        "a blank line (only user-defined events have monitors)",
                        None,
                    );
                }
            }
            None
        } else {
            let any = (5..RECORD_LINES).any(|i| !field(i).is_empty());
            if any {
                for i in [5, 7] {
                    if field(i).is_empty() {
                        self.error(
                            at(i),
                            &label(i),
                            "is empty",
                            format!("the {} of the user-defined event", FIELD_NAMES[i]),
                            None,
                        );
                    }
                }
            }
            let optional = |i: usize| (!field(i).is_empty()).then(|| field(i).to_owned());
            any.then(|| MonitorDefinition {
                resource_variable: field(5).to_owned(),
                instance_vector: optional(6),
                predicate: field(7).to_owned(),
                rearm_predicate: optional(8),
            })
        };
        // 3. The recovery program.
        let rp_path = field(2);
        let mut program = None;
        if rp_path.is_empty() {
            self.error(
                at(2),
                &label(2),
                "is empty",
                "the path of the event's .rp file",
                None,
            );
        } else {
            let named = Path::new(rp_path);
            let file_name = named.file_name().map(PathBuf::from);
            let mut candidates = vec![rules_dir.join(named)];
            if let Some(file_name) = &file_name {
                if let Some(dir) = rp_dir {
                    candidates.push(dir.join(file_name));
                }
                candidates.push(rules_dir.join(file_name));
            }
            candidates.dedup();
            let mut found = None;
            for candidate in &candidates {
                if let Ok(text) = read_file(candidate) {
                    found = Some((candidate.clone(), text));
                    break;
                }
            }
            match found {
                Some((path, text)) => match Program::parse(&path, &text) {
                    Ok(p) => program = Some((p, path)),
                    Err(d) => self.diagnostics.extend(d.0),
                },
                None => {
                    let searched: Vec<String> =
                        candidates.iter().map(|c| c.display().to_string()).collect();
                    self.error(
                        at(2),
                        &label(2),
                        format!("\"{rp_path}\" not found (looked at {})", searched.join(", ")),
                        "the recovery program file",
                        Some("copy the .rp files beside the rules file or name their directory with --rp-dir".to_owned()),
                    );
                }
            }
        }
        if self.diagnostics.len() > errors {
            return None;
        }
        let (program, found_at) = program.expect("found, or an error was reported");
        let rp_name = found_at.file_name().map_or_else(
            || "program.rp".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        );
        let (rule_program, program_text) = if builtin {
            (
                self.builtin_program(number, &name, &legacy_name, &program, &found_at)?,
                None,
            )
        } else {
            let text = format!(
                "# Imported from {} ({legacy_name}).\n{}",
                found_at.display(),
                program.render()
            );
            (
                RuleProgram::Replace {
                    program,
                    file: Some(rp_name.clone()),
                },
                Some(text),
            )
        };
        Some(ImportedRecord {
            rule: Rule {
                name,
                state,
                program: rule_program,
                customisation: Customisation::default(),
                monitor,
            },
            legacy_name,
            program_text,
            rp_name: Some(rp_name),
        })
    }

    /// A built-in event's program: HACMP's own scripts (bare names) become the
    /// default program; the administrator's lines around them are kept.
    fn builtin_program(
        &mut self,
        number: usize,
        name: &str,
        legacy_name: &str,
        program: &Program,
        found_at: &Path,
    ) -> Option<RuleProgram> {
        let is_stock = |line: &Line| match line {
            Line::Command(c) => {
                !c.command.contains('/') && !c.command.contains(char::is_whitespace)
            }
            Line::Barrier => false,
        };
        let stock: Vec<usize> = (0..program.lines.len())
            .filter(|i| is_stock(&program.lines[*i]))
            .collect();
        let (Some(&first), Some(&last)) = (stock.first(), stock.last()) else {
            // No HACMP script: the administrator's own program replaces the
            // default, which it must keep.
            if let Err(problem) = check_keeps_builtins(name, program) {
                self.diagnostics.push(Diagnostic {
                    file: found_at.to_path_buf(),
                    line: 0,
                    column: 0,
                    field: format!("record {number} ({legacy_name})"),
                    problem: format!("the program of {name} {problem}"),
                    expected: Some(
                        "HACMP's event scripts (then Halcyon's default program replaces them) or Halcyon's built-in commands"
                            .to_owned(),
                    ),
                    hint: None,
                });
                return None;
            }
            return Some(RuleProgram::Replace {
                program: program.clone(),
                file: None,
            });
        };
        let between = program.lines[first..=last]
            .iter()
            .any(|l| matches!(l, Line::Command(_)) && !is_stock(l));
        if between {
            self.diagnostics.push(Diagnostic {
                file: found_at.to_path_buf(),
                line: 0,
                column: 0,
                field: format!("record {number} ({legacy_name})"),
                problem: "own commands between HACMP's event scripts cannot be kept in place".to_owned(),
                expected: Some("own commands before or after HACMP's event scripts".to_owned()),
                hint: Some(format!(
                    "move them before or after, or write a Halcyon program for {name} around its built-in commands"
                )),
            });
            return None;
        }
        let trim_barriers = |lines: &[Line]| {
            let mut v = lines.to_vec();
            while v.last() == Some(&Line::Barrier) {
                v.pop();
            }
            while v.first() == Some(&Line::Barrier) {
                v.remove(0);
            }
            Program { lines: v }
        };
        let before = trim_barriers(&program.lines[..first]);
        let after = trim_barriers(&program.lines[last + 1..]);
        self.notes.push(format!(
            "{legacy_name}: HACMP's event scripts in {} replaced by Halcyon's default {name} program{}",
            found_at.display(),
            if before.lines.is_empty() && after.lines.is_empty() {
                String::new()
            } else {
                " (own lines kept before/after it)".to_owned()
            }
        ));
        if before.lines.is_empty() && after.lines.is_empty() {
            Some(RuleProgram::Default)
        } else {
            Some(RuleProgram::Wrap { before, after })
        }
    }
}
