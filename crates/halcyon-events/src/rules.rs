//! The native rules file: events -> recovery programs and their customisation.
//!
//! ```toml
//! [[event]]
//! name = "node_up"                 # a built-in event: its default program runs
//! before = 'all "/usr/local/bin/log-join" X'   # ... after these lines and a barrier
//! notify = "/usr/local/sbin/page-oncall"
//!
//! [[event]]
//! name = "node_down"
//! state = "graceful"               # only for graceful departures
//! program_file = "node_down_graceful.rp"       # replaces the default program
//! recovery = "/usr/local/sbin/fix-disks"
//! retry = 2
//! max_duration = "10m"
//!
//! [[event]]
//! name = "UE_PGMRWHO_DOWN"         # a user-defined event
//! program_file = "rwho.rp"
//! resource_variable = "IBM.PSSP.Prog.xpcount"
//! instance_vector = "NodeNum=*;ProgName=rwhod;UserName=root"
//! predicate = "X@0==0&&X@1!=0"
//! rearm_predicate = "X@0>0"
//! ```
//!
//! Fields of an `[[event]]`: `name` (required), `state`, `program` (inline program
//! text) or `program_file` (a `.rp` file, relative to the rules file) to replace the
//! default program, `before` / `after` (program text run before / after the default
//! program of a built-in event, with a barrier in between), `notify`, `pre_event`,
//! `post_event`, `recovery`, `retry`, `max_duration`; for user-defined events also
//! `resource_variable`, `instance_vector`, `predicate`, `rearm_predicate` (the resource
//! variable and instance vector must name something a node can sample, see
//! [`crate::resource`]). Every mistake is reported with file:line:column.

use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use halcyon_config::diagnostic::{SourceFile, did_you_mean};
use halcyon_config::{Diagnostic, Diagnostics, EventDefaults, Limits};
use serde::{Deserialize, Serialize};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::builtin::{
    BUILTIN_EVENTS, builtin_states, check_keeps_builtins, default_program, is_builtin,
    required_builtins,
};
use crate::program::{self, CommandLine, Expected, Line, NodeSet, Origin, Program};
use crate::run::{Options, RETRY_MAX, Recovery};

/// Most `[[event]]` entries in a rules file.
pub const RULES_MAX: usize = 1_000;

/// A parsed, validated rules file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    pub rules: Vec<Rule>,
}

/// One `[[event]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    /// The state qualifier (`graceful` for `node_down`); `None` matches any state.
    pub state: Option<String>,
    pub program: RuleProgram,
    pub customisation: Customisation,
    /// User-defined events only.
    pub monitor: Option<MonitorDefinition>,
}

/// Which program an event runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuleProgram {
    /// The built-in event's default program.
    Default,
    /// `program` or `program_file` (`file` as written, for rendering).
    Replace {
        program: Program,
        file: Option<String>,
    },
    /// The default program with lines before and after it (barriers between).
    Wrap { before: Program, after: Program },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customisation {
    pub notify: Option<String>,
    pub pre_event: Option<String>,
    pub post_event: Option<String>,
    pub recovery: Option<Recovery>,
    pub max_duration: Option<Duration>,
}

/// What a monitor samples and when it fires (HACMP's Event Management fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorDefinition {
    pub resource_variable: String,
    pub instance_vector: Option<String>,
    pub predicate: String,
    pub rearm_predicate: Option<String>,
}

/// Everything the event runtime needs for one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// With the pre-event and post-event commands (on `all`, status 0, barriers
    /// between) around the rule's program.
    pub program: Program,
    pub options: Options,
    pub max_duration: Duration,
}

impl Rules {
    /// The rule for an event: the one with this state, else the one without state.
    pub fn rule(&self, name: &str, state: Option<&str>) -> Option<&Rule> {
        let exact = state.and_then(|s| {
            self.rules
                .iter()
                .find(|r| r.name == name && r.state.as_deref() == Some(s))
        });
        exact.or_else(|| {
            self.rules
                .iter()
                .find(|r| r.name == name && r.state.is_none())
        })
    }

    /// The program and options of an event, rule over cluster defaults. `None` for
    /// a user-defined event without a rule.
    pub fn resolve(
        &self,
        name: &str,
        state: Option<&str>,
        defaults: &EventDefaults,
        limits: &Limits,
    ) -> Option<Resolved> {
        let rule = self.rule(name, state);
        let program = match rule.map(|r| &r.program) {
            None | Some(RuleProgram::Default) => default_program(name)?,
            Some(RuleProgram::Replace { program, .. }) => program.clone(),
            Some(RuleProgram::Wrap { before, after }) => {
                before.clone().then(&default_program(name)?).then(after)
            }
        };
        let custom = rule.map(|r| r.customisation.clone()).unwrap_or_default();
        let pre = custom.pre_event.or_else(|| defaults.pre_event.clone());
        let post = custom.post_event.or_else(|| defaults.post_event.clone());
        let single = |command: String| Program {
            lines: vec![Line::Command(CommandLine {
                node_set: NodeSet::All,
                command,
                expected: Expected::Status(0),
            })],
        };
        let mut full = pre.map(single).unwrap_or_default().then(&program);
        if let Some(post) = post {
            full = full.then(&single(post));
        }
        Some(Resolved {
            program: full,
            options: Options {
                recovery: custom.recovery,
                notify: custom.notify.or_else(|| defaults.notify.clone()),
            },
            max_duration: custom.max_duration.unwrap_or(limits.max_event_duration),
        })
    }

    /// The rules file in native TOML (`program_file` entries keep their file name;
    /// the caller writes those files).
    pub fn to_toml(&self) -> String {
        let mut out = String::from("# Halcyon rules file: events -> recovery programs.\n");
        for rule in &self.rules {
            out.push_str("\n[[event]]\n");
            let mut field = |key: &str, value: &str| {
                let _ = writeln!(out, "{key} = {}", toml_string(value));
            };
            field("name", &rule.name);
            if let Some(s) = &rule.state {
                field("state", s);
            }
            match &rule.program {
                RuleProgram::Default => {}
                RuleProgram::Replace {
                    file: Some(file), ..
                } => field("program_file", file),
                RuleProgram::Replace {
                    program,
                    file: None,
                } => field("program", &program.render()),
                RuleProgram::Wrap { before, after } => {
                    if !before.lines.is_empty() {
                        field("before", &before.render());
                    }
                    if !after.lines.is_empty() {
                        field("after", &after.render());
                    }
                }
            }
            let c = &rule.customisation;
            for (key, value) in [
                ("notify", &c.notify),
                ("pre_event", &c.pre_event),
                ("post_event", &c.post_event),
            ] {
                if let Some(v) = value {
                    field(key, v);
                }
            }
            if let Some(r) = &c.recovery {
                field("recovery", &r.command);
                let _ = writeln!(out, "retry = {}", r.retry);
            }
            if let Some(d) = c.max_duration {
                let _ = writeln!(
                    out,
                    "max_duration = {}",
                    toml_string(&humantime::format_duration(d).to_string())
                );
            }
            if let Some(m) = &rule.monitor {
                let _ = writeln!(
                    out,
                    "resource_variable = {}",
                    toml_string(&m.resource_variable)
                );
                if let Some(v) = &m.instance_vector {
                    let _ = writeln!(out, "instance_vector = {}", toml_string(v));
                }
                let _ = writeln!(out, "predicate = {}", toml_string(&m.predicate));
                if let Some(v) = &m.rearm_predicate {
                    let _ = writeln!(out, "rearm_predicate = {}", toml_string(v));
                }
            }
        }
        out
    }
}

/// A TOML string: a multi-line literal string for program text when possible.
fn toml_string(value: &str) -> String {
    if value.contains('\n') && !value.contains("'''") {
        return format!("'''\n{value}'''");
    }
    toml::Value::String(value.to_owned()).to_string()
}

/// One rule per built-in event with its default program written out, as a starting
/// point (`default_rules_text` is the same as a file).
pub fn default_rules() -> Rules {
    Rules {
        rules: BUILTIN_EVENTS
            .iter()
            .map(|name| Rule {
                name: (*name).to_owned(),
                state: None,
                program: RuleProgram::Replace {
                    program: default_program(name).expect("built-in"),
                    file: None,
                },
                customisation: Customisation::default(),
                monitor: None,
            })
            .collect(),
    }
}

/// [`default_rules`] as a rules file.
pub fn default_rules_text() -> String {
    default_rules().to_toml()
}

/// Reads and validates a rules file and the `.rp` files it names.
pub fn load_rules(path: &Path) -> Result<Rules, Diagnostics> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            field: "file".to_owned(),
            problem: format!("cannot be read: {e}"),
            expected: None,
            hint: None,
        }])
    })?;
    parse_rules(path, &text, &mut |p| std::fs::read_to_string(p))
}

/// Parses a rules file's `text`; `read_file` reads the `.rp` files (paths resolved
/// against the rules file's directory).
pub fn parse_rules(
    path: &Path,
    text: &str,
    read_file: &mut dyn FnMut(&Path) -> std::io::Result<String>,
) -> Result<Rules, Diagnostics> {
    let source = SourceFile::new(path, text.to_owned());
    let mut sink = Sink {
        source: &source,
        diagnostics: Vec::new(),
    };
    let (root, parse_errors) = DeTable::parse_recoverable(text);
    if let Some(first) = parse_errors
        .iter()
        .min_by_key(|e| e.span().map_or(0, |s| s.start))
    {
        sink.error(
            first.span().unwrap_or(0..0),
            "toml",
            format!("syntax error: {}", first.message().trim()),
            Some("valid TOML".to_owned()),
            None,
        );
        return Err(finish(sink.diagnostics));
    }
    let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let mut rules = Rules::default();
    let mut seen: Vec<(String, Option<String>, usize)> = Vec::new();
    for (key, value) in root.get_ref().iter() {
        let key_str: &str = key.get_ref();
        if key_str != "event" {
            let hint = did_you_mean(key_str, ["event"]);
            sink.error(
                key.span(),
                key_str,
                "unknown table",
                Some("[[event]] tables".to_owned()),
                hint,
            );
            continue;
        }
        let DeValue::Array(items) = value.get_ref() else {
            sink.error(
                value.span(),
                "event",
                format!("wrong type: {}", type_name(value.get_ref())),
                Some("[[event]] tables (an array of tables)".to_owned()),
                None,
            );
            continue;
        };
        for (index, item) in items.iter().enumerate() {
            let path = format!("event[{}]", index + 1);
            if index == RULES_MAX {
                sink.error(
                    item.span(),
                    &path,
                    format!("more than {RULES_MAX} events"),
                    None,
                    None,
                );
                break;
            }
            let DeValue::Table(table) = item.get_ref() else {
                sink.error(
                    item.span(),
                    &path,
                    format!("wrong type: {}", type_name(item.get_ref())),
                    Some("a table".to_owned()),
                    None,
                );
                continue;
            };
            let mut reader = RuleReader {
                sink: &mut sink,
                path,
                span: item.span(),
                table,
                base: &base,
                read_file: &mut *read_file,
            };
            if let Some((rule, name_span)) = reader.read() {
                let (line, _) = source.position(name_span.start);
                if let Some((_, _, first)) = seen
                    .iter()
                    .find(|(n, s, _)| *n == rule.name && *s == rule.state)
                {
                    let what = match &rule.state {
                        Some(s) => format!("event \"{}\" with state \"{s}\"", rule.name),
                        None => format!("event \"{}\"", rule.name),
                    };
                    sink.error(
                        name_span,
                        &format!("event[{}].name", index + 1),
                        format!("{what} is defined twice (first at line {first})"),
                        Some("one [[event]] per event name and state".to_owned()),
                        None,
                    );
                    continue;
                }
                seen.push((rule.name.clone(), rule.state.clone(), line));
                rules.rules.push(rule);
            }
        }
    }
    if sink.diagnostics.is_empty() {
        Ok(rules)
    } else {
        Err(finish(sink.diagnostics))
    }
}

fn finish(mut diagnostics: Vec<Diagnostic>) -> Diagnostics {
    diagnostics.sort_by(|a, b| {
        (&a.file, a.line, a.column, &a.field, &a.problem)
            .cmp(&(&b.file, b.line, b.column, &b.field, &b.problem))
    });
    diagnostics.dedup();
    Diagnostics(diagnostics)
}

type Span = Range<usize>;

struct Sink<'s> {
    source: &'s SourceFile,
    diagnostics: Vec<Diagnostic>,
}

impl Sink<'_> {
    fn error(
        &mut self,
        span: Span,
        field: &str,
        problem: impl Into<String>,
        expected: Option<String>,
        hint: Option<String>,
    ) {
        let mut d = self.source.diagnostic(span, field, problem);
        d.expected = expected;
        d.hint = hint;
        self.diagnostics.push(d);
    }
}

/// The offset in the file of byte `at` of a string value's text (`span`: the value, from
/// its opening quote). The value's own position when escapes or a multi-line string make
/// the mapping uncertain.
fn offset_in_string(text: &str, span: &Span, at: usize) -> usize {
    let raw = &text[span.clone()];
    let simple = (raw.starts_with('"') && !raw.starts_with("\"\"\"") && !raw.contains('\\'))
        || (raw.starts_with('\'') && !raw.starts_with("'''"));
    if simple && 1 + at < raw.len() {
        span.start + 1 + at
    } else {
        span.start
    }
}

fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

const FIELDS: &[&str] = &[
    "name",
    "state",
    "program",
    "program_file",
    "before",
    "after",
    "notify",
    "pre_event",
    "post_event",
    "recovery",
    "retry",
    "max_duration",
    "resource_variable",
    "instance_vector",
    "predicate",
    "rearm_predicate",
];

const MONITOR_FIELDS: [&str; 4] = [
    "resource_variable",
    "instance_vector",
    "predicate",
    "rearm_predicate",
];

struct RuleReader<'a, 's, 't, 'i> {
    sink: &'a mut Sink<'s>,
    path: String,
    span: Span,
    table: &'t DeTable<'i>,
    base: &'a Path,
    read_file: &'a mut dyn FnMut(&Path) -> std::io::Result<String>,
}

impl<'t, 'i> RuleReader<'_, '_, 't, 'i> {
    fn field_path(&self, name: &str) -> String {
        format!("{}.{name}", self.path)
    }

    fn get(&self, name: &str) -> Option<&'t Spanned<DeValue<'i>>> {
        debug_assert!(FIELDS.contains(&name));
        let table: &'t DeTable<'i> = self.table;
        for (key, value) in table.iter() {
            if key.get_ref() == name {
                return Some(value);
            }
        }
        None
    }

    /// A string field: (value, span of the value).
    fn string(&mut self, name: &str) -> Option<(String, Span)> {
        let value = self.get(name)?;
        match value.get_ref() {
            DeValue::String(s) if s.trim().is_empty() => {
                let path = self.field_path(name);
                self.sink.error(
                    value.span(),
                    &path,
                    "is empty",
                    Some("a non-empty string (or leave the field out)".to_owned()),
                    None,
                );
                None
            }
            DeValue::String(s) => Some((s.to_string(), value.span())),
            other => {
                let path = self.field_path(name);
                self.sink.error(
                    value.span(),
                    &path,
                    format!("wrong type: {}", type_name(other)),
                    Some("a string".to_owned()),
                    None,
                );
                None
            }
        }
    }

    /// Where a string value's text starts in the file (for inline programs).
    fn text_origin(&self, span: &Span) -> Origin {
        let raw = &self.sink.source.text[span.start..];
        let mut offset = if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
            3
        } else {
            1
        };
        if raw[offset..].starts_with("\r\n") {
            offset += 2;
        } else if raw[offset..].starts_with('\n') {
            offset += 1;
        }
        let (line, column) = self.sink.source.position(span.start + offset);
        Origin { line, column }
    }

    fn inline_program(&mut self, name: &str) -> Option<(Program, Span)> {
        let (text, span) = self.string(name)?;
        let origin = self.text_origin(&span);
        let (program, diagnostics) = program::parse_at(&self.sink.source.path, &text, origin);
        let ok = diagnostics.is_empty();
        self.sink.diagnostics.extend(diagnostics);
        ok.then_some((program, span))
    }

    fn file_program(&mut self) -> Option<(Program, String, Span)> {
        let (file, span) = self.string("program_file")?;
        let full: PathBuf = self.base.join(&file);
        match (self.read_file)(&full) {
            Ok(text) => match Program::parse(&full, &text) {
                Ok(p) => Some((p, file, span)),
                Err(d) => {
                    self.sink.diagnostics.extend(d.0);
                    None
                }
            },
            Err(e) => {
                let path = self.field_path("program_file");
                self.sink.error(
                    span,
                    &path,
                    format!("cannot read {}: {e}", full.display()),
                    Some("a recovery program file, relative to the rules file".to_owned()),
                    None,
                );
                None
            }
        }
    }

    /// The rule and the span of its name; `None` when it has mistakes (reported).
    fn read(&mut self) -> Option<(Rule, Span)> {
        let before_errors = self.sink.diagnostics.len();
        let name = self.string("name");
        if name.is_none() && self.get("name").is_none() {
            let path = self.field_path("name");
            let span = self.span.clone();
            self.sink.error(
                span,
                &path,
                "missing in [[event]]",
                Some("the event's name, such as \"node_up\" or a user-defined name".to_owned()),
                None,
            );
        }
        let state = self.string("state");
        let program = if self.get("program").is_some() {
            self.inline_program("program")
        } else {
            None
        };
        let program_file = if self.get("program_file").is_some() {
            self.file_program()
        } else {
            None
        };
        let before = if self.get("before").is_some() {
            self.inline_program("before")
        } else {
            None
        };
        let after = if self.get("after").is_some() {
            self.inline_program("after")
        } else {
            None
        };
        let customisation = self.customisation();
        let monitor_given: Vec<(&str, Span)> = MONITOR_FIELDS
            .iter()
            .filter_map(|f| self.get(f).map(|v| (*f, v.span())))
            .collect();
        // For a built-in event the monitor fields are reported below, once each.
        let monitor = if name.as_ref().is_some_and(|(n, _)| is_builtin(n)) {
            Some(None)
        } else {
            self.monitor()
        };
        self.report_unknown();

        let (name, name_span) = name?;
        let mut rule_program = RuleProgram::Default;
        let builtin = is_builtin(&name);
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            let path = self.field_path("name");
            self.sink.error(
                name_span.clone(),
                &path,
                format!("\"{name}\" is not a valid event name"),
                Some("letters, digits, _ - and .".to_owned()),
                None,
            );
        }
        // Which program.
        let replace_span = self
            .get("program")
            .or_else(|| self.get("program_file"))
            .map(|v| v.span());
        if let (Some(_), Some(f)) = (self.get("program"), self.get("program_file")) {
            let path = self.field_path("program_file");
            self.sink.error(
                f.span(),
                &path,
                "given together with program",
                Some("either program (inline) or program_file".to_owned()),
                None,
            );
        }
        let wrap_span = self
            .get("before")
            .or_else(|| self.get("after"))
            .map(|v| v.span());
        if let (Some(_), Some(w)) = (&replace_span, &wrap_span) {
            let field = if self.get("before").is_some() {
                "before"
            } else {
                "after"
            };
            let path = self.field_path(field);
            self.sink.error(
                w.clone(),
                &path,
                "given together with a replacing program",
                Some("before/after to wrap the default program, or program/program_file to replace it".to_owned()),
                Some("write these lines into the program".to_owned()),
            );
        } else if let Some(w) = &wrap_span
            && !builtin
        {
            let field = if self.get("before").is_some() {
                "before"
            } else {
                "after"
            };
            let path = self.field_path(field);
            self.sink.error(
                w.clone(),
                &path,
                format!("\"{name}\" is not a built-in event: it has no default program to wrap"),
                Some("program or program_file".to_owned()),
                None,
            );
        }
        if let Some((p, _)) = program {
            rule_program = RuleProgram::Replace {
                program: p,
                file: None,
            };
        } else if let Some((p, file, _)) = program_file {
            rule_program = RuleProgram::Replace {
                program: p,
                file: Some(file),
            };
        } else if before.is_some() || after.is_some() {
            rule_program = RuleProgram::Wrap {
                before: before.map(|b| b.0).unwrap_or_default(),
                after: after.map(|a| a.0).unwrap_or_default(),
            };
        }
        if builtin {
            if let (RuleProgram::Replace { program, .. }, Some(span)) =
                (&rule_program, &replace_span)
                && let Err(problem) = check_keeps_builtins(&name, program)
            {
                let field = if self.get("program").is_some() {
                    "program"
                } else {
                    "program_file"
                };
                let path = self.field_path(field);
                self.sink.error(
                    span.clone(),
                    &path,
                    problem,
                    Some(format!("its built-in lines: {}", required_builtins(&name))),
                    Some("add your own lines around them, or use before/after".to_owned()),
                );
            }
            let allowed = builtin_states(&name);
            if let Some((s, span)) = &state
                && !allowed.contains(&s.as_str())
            {
                let path = self.field_path("state");
                if allowed.is_empty() {
                    self.sink.error(
                        span.clone(),
                        &path,
                        format!("{name} has no state qualifiers"),
                        None,
                        Some("leave state out".to_owned()),
                    );
                } else {
                    let hint = did_you_mean(s, allowed.iter().copied());
                    self.sink.error(
                        span.clone(),
                        &path,
                        format!("\"{s}\" is not a state of {name}"),
                        Some(format!("one of {}", allowed.join(", "))),
                        hint,
                    );
                }
            }
            for (field, span) in &monitor_given {
                let path = self.field_path(field);
                self.sink.error(
                    span.clone(),
                    &path,
                    format!("only for user-defined events; {name} is built in"),
                    None,
                    None,
                );
            }
        } else {
            let near = did_you_mean(&name, BUILTIN_EVENTS.iter().copied());
            if let (Some(hint), true) = (&near, monitor_given.is_empty()) {
                let path = self.field_path("name");
                self.sink.error(
                    name_span.clone(),
                    &path,
                    format!("\"{name}\" is not a built-in event"),
                    Some(
                        "a built-in event name, or a user-defined event with resource_variable and predicate"
                            .to_owned(),
                    ),
                    Some(hint.clone()),
                );
            } else if replace_span.is_none() && wrap_span.is_none() {
                let path = self.field_path("program");
                let span = name_span.clone();
                self.sink.error(
                    span,
                    &path,
                    format!("user-defined event \"{name}\" has no recovery program"),
                    Some("program or program_file".to_owned()),
                    None,
                );
            }
        }
        if self.sink.diagnostics.len() > before_errors {
            return None;
        }
        Some((
            Rule {
                name,
                state: state.map(|s| s.0),
                program: rule_program,
                customisation: customisation?,
                monitor: if builtin { None } else { monitor? },
            },
            name_span,
        ))
    }

    /// `None` when a field is wrong (reported).
    fn customisation(&mut self) -> Option<Customisation> {
        let errors = self.sink.diagnostics.len();
        let notify = self.string("notify").map(|s| s.0);
        let pre_event = self.string("pre_event").map(|s| s.0);
        let post_event = self.string("post_event").map(|s| s.0);
        let recovery = self.string("recovery");
        let retry = self.get("retry").and_then(|v| {
            let expected = format!("an integer from 0 to {RETRY_MAX}");
            let path = self.field_path("retry");
            match v.get_ref() {
                DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                    Ok(n) if (0..=i64::from(RETRY_MAX)).contains(&n) => {
                        Some((u32::try_from(n).expect("in range"), v.span()))
                    }
                    _ => {
                        self.sink.error(
                            v.span(),
                            &path,
                            format!("{} is out of range", i.as_str()),
                            Some(expected),
                            None,
                        );
                        None
                    }
                },
                other => {
                    self.sink.error(
                        v.span(),
                        &path,
                        format!("wrong type: {}", type_name(other)),
                        Some(expected),
                        None,
                    );
                    None
                }
            }
        });
        if let (Some((_, span)), None) = (&retry, &recovery)
            && self.get("recovery").is_none()
        {
            let path = self.field_path("retry");
            self.sink.error(
                span.clone(),
                &path,
                "given without a recovery command",
                Some("recovery = \"...\" next to retry".to_owned()),
                None,
            );
        }
        let max_duration = self.get("max_duration").and_then(|v| {
            let path = self.field_path("max_duration");
            let expected = Some("a duration such as \"90s\" or \"10m\"".to_owned());
            match v.get_ref() {
                DeValue::String(s) => match humantime::parse_duration(s) {
                    Ok(d) if d > halcyon_config::MAX_EVENT_DURATION_MAX => {
                        self.sink.error(
                            v.span(),
                            &path,
                            format!("\"{s}\" is longer than a day"),
                            Some(format!(
                                "at most {}h (a running event is warned about after this long, \
                                 and again after every further period)",
                                halcyon_config::MAX_EVENT_DURATION_MAX.as_secs() / 3600
                            )),
                            None,
                        );
                        None
                    }
                    Ok(d) if !d.is_zero() => Some(d),
                    Ok(_) => {
                        self.sink.error(v.span(), &path, "is zero", expected, None);
                        None
                    }
                    Err(e) => {
                        self.sink.error(
                            v.span(),
                            &path,
                            format!("\"{s}\" is not a duration ({e})"),
                            expected,
                            None,
                        );
                        None
                    }
                },
                other => {
                    self.sink.error(
                        v.span(),
                        &path,
                        format!("wrong type: {}", type_name(other)),
                        expected,
                        None,
                    );
                    None
                }
            }
        });
        if self.sink.diagnostics.len() > errors {
            return None;
        }
        Some(Customisation {
            notify,
            pre_event,
            post_event,
            recovery: recovery.map(|(command, _)| Recovery {
                command,
                retry: retry.map_or(1, |r| r.0),
            }),
            max_duration,
        })
    }

    /// `Some(None)` when no monitor field is given; `None` when one is wrong.
    fn monitor(&mut self) -> Option<Option<MonitorDefinition>> {
        let errors = self.sink.diagnostics.len();
        let resource_variable = self.string("resource_variable");
        let instance_vector = self.string("instance_vector");
        let predicate = self.string("predicate");
        let rearm = self.string("rearm_predicate");
        for (field, value) in [("predicate", &predicate), ("rearm_predicate", &rearm)] {
            let Some((text, span)) = value else {
                continue;
            };
            if let Err(e) = halcyon_monitor::check_predicate(text) {
                let byte = text
                    .char_indices()
                    .nth(e.column.saturating_sub(1))
                    .map_or(text.len(), |(b, _)| b);
                let at = offset_in_string(&self.sink.source.text, span, byte);
                let path = self.field_path(field);
                self.sink
                    .error(at..at, &path, e.problem, e.expected, e.hint);
            }
        }
        let rearm_predicate = rearm.map(|s| s.0);
        let any = MONITOR_FIELDS.iter().any(|f| self.get(f).is_some());
        if !any {
            return Some(None);
        }
        for (field, value) in [
            ("resource_variable", &resource_variable),
            ("predicate", &predicate),
        ] {
            if value.is_none() && self.get(field).is_none() {
                let path = self.field_path(field);
                let span = self.span.clone();
                self.sink.error(
                    span,
                    &path,
                    "missing in [[event]]",
                    Some(format!(
                        "{field} with the other fields of a user-defined event's monitor"
                    )),
                    None,
                );
            }
        }
        if let Some((variable, variable_span)) = &resource_variable
            && let Err(mistakes) =
                crate::resource::check(variable, instance_vector.as_ref().map(|(v, _)| v.as_str()))
        {
            for mistake in mistakes {
                let span = match (&instance_vector, mistake.field) {
                    (Some((_, span)), "instance_vector") => span.clone(),
                    _ => variable_span.clone(),
                };
                let at = offset_in_string(&self.sink.source.text, &span, mistake.at);
                let path = self.field_path(mistake.field);
                self.sink.error(
                    at..at,
                    &path,
                    mistake.problem,
                    mistake.expected,
                    mistake.hint,
                );
            }
        }
        if self.sink.diagnostics.len() > errors {
            return None;
        }
        Some(Some(MonitorDefinition {
            resource_variable: resource_variable?.0,
            instance_vector: instance_vector.map(|v| v.0),
            predicate: predicate?.0,
            rearm_predicate,
        }))
    }

    fn report_unknown(&mut self) {
        let table: &'t DeTable<'i> = self.table;
        for (key, _) in table.iter() {
            let key_str: &str = key.get_ref();
            if FIELDS.contains(&key_str) {
                continue;
            }
            let hint = did_you_mean(key_str, FIELDS.iter().copied())
                .unwrap_or_else(|| format!("known fields here: {}", FIELDS.join(", ")));
            let path = self.field_path(key_str);
            self.sink
                .error(key.span(), &path, "unknown field", None, Some(hint));
        }
    }
}

/// Every rules file of a configuration, read and merged: the `.toml` files with
/// `[[event]]` tables among `paths` (files or directories, as the configuration
/// loader takes them), and `referenced` (the cluster file's `[events] rules`,
/// relative to the configuration directory). All mistakes of all files are
/// reported; the same event and state in two files is a mistake too.
pub fn load_cluster_rules(
    paths: &[std::path::PathBuf],
    referenced: Option<&str>,
) -> Result<Rules, Diagnostics> {
    let mut files: Vec<PathBuf> = halcyon_config::collect_files(paths)
        .unwrap_or_default()
        .into_iter()
        .filter(|f| is_rules_file(f))
        .collect();
    let mut diagnostics = Vec::new();
    if let Some(rel) = referenced {
        let base = paths.first().map(|p| {
            if p.is_dir() {
                p.clone()
            } else {
                p.parent().map(Path::to_path_buf).unwrap_or_default()
            }
        });
        let path = base.unwrap_or_default().join(rel);
        if !path.exists() {
            diagnostics.push(Diagnostic {
                file: path.clone(),
                line: 0,
                column: 0,
                field: "events.rules".to_owned(),
                problem: "the rules file named in the cluster file does not exist".to_owned(),
                expected: Some(
                    "a rules file (TOML with [[event]] tables) relative to the configuration directory"
                        .to_owned(),
                ),
                hint: None,
            });
        } else if !files.iter().any(|f| same_file(f, &path)) {
            files.push(path);
        }
    }
    let mut merged = Rules::default();
    let mut origin: Vec<PathBuf> = Vec::new();
    for file in files {
        match load_rules(&file) {
            Ok(rules) => {
                for rule in rules.rules {
                    if let Some(i) = merged
                        .rules
                        .iter()
                        .position(|r| r.name == rule.name && r.state == rule.state)
                    {
                        diagnostics.push(Diagnostic {
                            file: file.clone(),
                            line: 0,
                            column: 0,
                            field: "event.name".to_owned(),
                            problem: format!(
                                "event \"{}\"{} already has a rule in {}",
                                rule.name,
                                rule.state
                                    .as_deref()
                                    .map_or(String::new(), |s| format!(" (state {s})")),
                                origin[i].display()
                            ),
                            expected: Some("one rule per event and state".to_owned()),
                            hint: None,
                        });
                        continue;
                    }
                    merged.rules.push(rule);
                    origin.push(file.clone());
                }
            }
            Err(d) => diagnostics.extend(d.0),
        }
    }
    if diagnostics.is_empty() {
        Ok(merged)
    } else {
        Err(Diagnostics(diagnostics))
    }
}

/// A `.toml` file with `[[event]]` tables and neither `[cluster]` nor `[package]`.
pub fn is_rules_file(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .is_some_and(|t| {
            t.contains_key("event") && !t.contains_key("cluster") && !t.contains_key("package")
        })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
