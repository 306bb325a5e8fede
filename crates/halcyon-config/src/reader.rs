//! Reading typed fields out of a spanned TOML table while collecting every mistake.
//!
//! serde stops at the first error; an administrator wants all of them at once. So the
//! files are parsed into toml's spanned tree (`DeTable`) and read field by field
//! here: each accessor records what is wrong (with the value's position) and
//! returns `None`, and the caller carries on. Keys are matched without regard to
//! case, so Serviceguard's upper-case spellings (`AUTO_RUN`) work, and each field may
//! have legacy aliases (`PKG_SWITCHING_ENABLED`). `finish` reports the keys nobody
//! asked for, with a "did you mean" hint.

use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostic::{Diagnostic, SourceFile, did_you_mean};
use crate::model::Subnet;

pub(crate) type Span = Range<usize>;

/// Where diagnostics go while one file is read.
pub(crate) struct Sink<'s> {
    pub source: &'s SourceFile,
    pub diagnostics: Vec<Diagnostic>,
    /// Checks of values in other crates' languages, if the caller gave them.
    pub checks: Option<&'s dyn crate::checks::ValueChecks>,
}

impl<'s> Sink<'s> {
    pub fn new(source: &'s SourceFile) -> Self {
        Sink {
            source,
            diagnostics: Vec::new(),
            checks: None,
        }
    }

    /// Reports a mistake found inside a string value by a [`crate::checks::ValueChecks`].
    pub fn value_error(&mut self, span: Span, field: &str, error: crate::checks::ValueError) {
        let start = span.start.min(self.source.text.len());
        let offset = error.column.map_or(0, |c| {
            crate::checks::raw_offset(&self.source.text[start..], c)
        });
        let at = start + offset;
        let d = self.error(at..at, field, error.problem);
        d.expected = error.expected;
        d.hint = error.hint;
    }

    pub fn error(
        &mut self,
        span: Span,
        field: &str,
        problem: impl Into<String>,
    ) -> &mut Diagnostic {
        self.diagnostics
            .push(self.source.diagnostic(span, field, problem));
        self.diagnostics.last_mut().expect("just pushed")
    }
}

/// One field the reader knows: its canonical name and legacy aliases.
pub(crate) struct FieldSpec {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
}

pub(crate) const fn field(name: &'static str) -> FieldSpec {
    FieldSpec { name, aliases: &[] }
}

pub(crate) const fn field_aliased(
    name: &'static str,
    aliases: &'static [&'static str],
) -> FieldSpec {
    FieldSpec { name, aliases }
}

/// A table being read. `path` is the field path used in diagnostics (`node[2]`).
pub(crate) struct TableReader<'t, 'i> {
    pub path: String,
    pub span: Span,
    table: &'t DeTable<'i>,
    fields: &'static [FieldSpec],
    used: Vec<bool>,
}

impl<'t, 'i> TableReader<'t, 'i> {
    pub fn new(
        path: impl Into<String>,
        span: Span,
        table: &'t DeTable<'i>,
        fields: &'static [FieldSpec],
    ) -> Self {
        let used = vec![false; table.len()];
        TableReader {
            path: path.into(),
            span,
            table,
            fields,
            used,
        }
    }

    /// The path of a field of this table, for diagnostics.
    pub fn field_path(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{}", self.path, name)
        }
    }

    /// The value of a field (under its name or an alias), marking it used. When it
    /// is given twice (e.g. `auto_run` and `PKG_SWITCHING_ENABLED`) that is an error.
    pub fn get(&mut self, sink: &mut Sink<'_>, name: &str) -> Option<&'t Spanned<DeValue<'i>>> {
        let spec = self.fields.iter().find(|f| f.name == name);
        debug_assert!(
            spec.is_some(),
            "field {name} is not declared for {}",
            self.path
        );
        let aliases: &[&str] = spec.map(|s| s.aliases).unwrap_or(&[]);
        let mut found: Option<(&'t Spanned<DeValue<'i>>, &str)> = None;
        for (index, (key, value)) in self.table.iter().enumerate() {
            let key_str: &str = key.get_ref();
            let matches = key_str.eq_ignore_ascii_case(name)
                || aliases.iter().any(|a| key_str.eq_ignore_ascii_case(a));
            if !matches {
                continue;
            }
            self.used[index] = true;
            if let Some((_, first)) = found {
                let legacy = [first, key_str]
                    .into_iter()
                    .find(|k| aliases.iter().any(|a| k.eq_ignore_ascii_case(a)));
                let hint = match legacy {
                    Some(legacy) => {
                        format!("\"{legacy}\" is the legacy name of \"{name}\"; keep one")
                    }
                    None => "keys are matched without regard to case; keep one".to_owned(),
                };
                sink.error(
                    key.span(),
                    &self.field_path(name),
                    format!("given twice, as \"{first}\" and as \"{key_str}\""),
                )
                .hint = Some(hint);
            } else {
                found = Some((value, key_str));
            }
        }
        found.map(|(v, _)| v)
    }

    /// Like `get`, but a missing field is an error.
    pub fn require(
        &mut self,
        sink: &mut Sink<'_>,
        name: &str,
        expected: &str,
    ) -> Option<&'t Spanned<DeValue<'i>>> {
        let value = self.get(sink, name);
        // A misspelt key (`nmae`) is reported by `finish` as an unknown field with
        // "did you mean"; saying the field is missing too would be one mistake twice.
        if value.is_none() && !self.has_misspelling_of(name) {
            let path = self.field_path(name);
            sink.error(
                self.span.clone(),
                &path,
                format!("missing in {}", self.describe_table()),
            )
            .expected = Some(expected.to_owned());
        }
        value
    }

    /// How to name this table in a message: `the file`, `[package]`, `[[resource]]`.
    fn describe_table(&self) -> String {
        if self.path.is_empty() {
            return "the file".to_owned();
        }
        let is_array_element = self.path.ends_with(']');
        let mut plain = String::new();
        let mut depth = 0;
        for c in self.path.chars() {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ if depth == 0 => plain.push(c),
                _ => {}
            }
        }
        if is_array_element {
            format!("[[{plain}]]")
        } else {
            format!("[{plain}]")
        }
    }

    /// True when a key of this table is no known field but a near miss of `name`.
    fn has_misspelling_of(&self, name: &str) -> bool {
        let aliases = self
            .fields
            .iter()
            .find(|f| f.name == name)
            .map_or(&[][..], |f| f.aliases);
        self.table.keys().any(|key| {
            let key: &str = key.get_ref();
            !self.is_known(key)
                && did_you_mean(key, std::iter::once(name).chain(aliases.iter().copied())).is_some()
        })
    }

    /// True when `key` is a field (or alias) of this table.
    fn is_known(&self, key: &str) -> bool {
        self.fields.iter().any(|f| {
            f.name.eq_ignore_ascii_case(key)
                || f.aliases.iter().any(|a| a.eq_ignore_ascii_case(key))
        })
    }

    pub fn string(&mut self, sink: &mut Sink<'_>, name: &str) -> Option<(String, Span)> {
        let value = self.get(sink, name)?;
        as_string(sink, &self.field_path(name), value)
    }

    pub fn require_string(
        &mut self,
        sink: &mut Sink<'_>,
        name: &str,
        expected: &str,
    ) -> Option<(String, Span)> {
        let value = self.require(sink, name, expected)?;
        let (s, span) = as_string(sink, &self.field_path(name), value)?;
        if s.trim().is_empty() {
            sink.error(span, &self.field_path(name), "is empty")
                .expected = Some(expected.to_owned());
            return None;
        }
        Some((s, span))
    }

    pub fn bool(&mut self, sink: &mut Sink<'_>, name: &str) -> Option<bool> {
        let value = self.get(sink, name)?;
        as_bool(sink, &self.field_path(name), value)
    }

    pub fn integer(
        &mut self,
        sink: &mut Sink<'_>,
        name: &str,
        min: i64,
        max: i64,
    ) -> Option<(i64, Span)> {
        let value = self.get(sink, name)?;
        as_integer(sink, &self.field_path(name), value, min, max)
    }

    pub fn require_integer(
        &mut self,
        sink: &mut Sink<'_>,
        name: &str,
        min: i64,
        max: i64,
    ) -> Option<(i64, Span)> {
        let value = self.require(sink, name, &format!("an integer from {min} to {max}"))?;
        as_integer(sink, &self.field_path(name), value, min, max)
    }

    pub fn duration(&mut self, sink: &mut Sink<'_>, name: &str) -> Option<(Duration, Span)> {
        let value = self.get(sink, name)?;
        as_duration(sink, &self.field_path(name), value)
    }

    /// A table-valued field.
    pub fn table(&mut self, sink: &mut Sink<'_>, name: &str) -> Option<(&'t DeTable<'i>, Span)> {
        let value = self.get(sink, name)?;
        match value.get_ref() {
            DeValue::Table(t) => Some((t, value.span())),
            other => {
                wrong_type(sink, &self.field_path(name), value.span(), other, "a table");
                None
            }
        }
    }

    /// An array-valued field; each element with its span.
    pub fn array(
        &mut self,
        sink: &mut Sink<'_>,
        name: &str,
    ) -> Option<(&'t [Spanned<DeValue<'i>>], Span)> {
        let value = self.get(sink, name)?;
        match value.get_ref() {
            DeValue::Array(a) => Some((&a[..], value.span())),
            other => {
                wrong_type(
                    sink,
                    &self.field_path(name),
                    value.span(),
                    other,
                    "an array",
                );
                None
            }
        }
    }

    /// An array of tables (`[[node]]`), each element as (index, table, span).
    pub fn tables(
        &mut self,
        sink: &mut Sink<'_>,
        name: &str,
    ) -> Vec<(usize, &'t DeTable<'i>, Span)> {
        let Some((items, _)) = self.array(sink, name) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (index, item) in items.iter().enumerate() {
            match item.get_ref() {
                DeValue::Table(t) => out.push((index + 1, t, item.span())),
                other => wrong_type(
                    sink,
                    &format!("{}[{}]", self.field_path(name), index + 1),
                    item.span(),
                    other,
                    "a table",
                ),
            }
        }
        out
    }

    /// A list of strings.
    pub fn strings(
        &mut self,
        sink: &mut Sink<'_>,
        name: &str,
    ) -> Option<(Vec<(String, Span)>, Span)> {
        let (items, span) = self.array(sink, name)?;
        let path = self.field_path(name);
        let mut out = Vec::new();
        for (index, item) in items.iter().enumerate() {
            if let Some(s) = as_string(sink, &format!("{path}[{}]", index + 1), item) {
                out.push(s);
            }
        }
        Some((out, span))
    }

    /// A table of string values (e.g. OCF parameters), keys as written.
    pub fn string_map(&mut self, sink: &mut Sink<'_>, name: &str) -> Vec<(String, String)> {
        let Some((table, _)) = self.table(sink, name) else {
            return Vec::new();
        };
        let path = self.field_path(name);
        let mut out = Vec::new();
        for (key, value) in table.iter() {
            let key_path = format!("{path}.{}", key.get_ref());
            let text = match value.get_ref() {
                DeValue::String(s) => s.to_string(),
                DeValue::Integer(i) => i.as_str().to_owned(),
                DeValue::Boolean(b) => b.to_string(),
                other => {
                    wrong_type(sink, &key_path, value.span(), other, "a string");
                    continue;
                }
            };
            out.push((key.get_ref().to_string(), text));
        }
        out
    }

    /// Reports every key nobody read, with a "did you mean" among the known fields.
    pub fn finish(self, sink: &mut Sink<'_>) {
        self.report_unread(sink, false);
    }

    /// Like `finish`, but only for keys that are no field of this table at all: for
    /// a table whose other fields were not read because it is broken (e.g. a
    /// resource without a valid kind).
    pub fn finish_unknown_only(self, sink: &mut Sink<'_>) {
        self.report_unread(sink, true);
    }

    fn report_unread(self, sink: &mut Sink<'_>, unknown_only: bool) {
        for (index, (key, _)) in self.table.iter().enumerate() {
            if self.used[index] || unknown_only && self.is_known(key.get_ref()) {
                continue;
            }
            let key_str: &str = key.get_ref();
            let known: Vec<&str> = self.fields.iter().map(|f| f.name).collect();
            let hint = did_you_mean(key_str, known.iter().copied())
                .unwrap_or_else(|| format!("known fields here: {}", known.join(", ")));
            sink.error(key.span(), &self.field_path(key_str), "unknown field")
                .hint = Some(hint);
        }
    }
}

pub(crate) fn type_name(value: &DeValue<'_>) -> &'static str {
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

pub(crate) fn wrong_type(
    sink: &mut Sink<'_>,
    path: &str,
    span: Span,
    value: &DeValue<'_>,
    expected: &str,
) {
    sink.error(span, path, format!("wrong type: {}", type_name(value)))
        .expected = Some(expected.to_owned());
}

pub(crate) fn as_string(
    sink: &mut Sink<'_>,
    path: &str,
    value: &Spanned<DeValue<'_>>,
) -> Option<(String, Span)> {
    match value.get_ref() {
        DeValue::String(s) => Some((s.to_string(), value.span())),
        other => {
            wrong_type(sink, path, value.span(), other, "a string");
            None
        }
    }
}

pub(crate) fn as_bool(
    sink: &mut Sink<'_>,
    path: &str,
    value: &Spanned<DeValue<'_>>,
) -> Option<bool> {
    match value.get_ref() {
        DeValue::Boolean(b) => Some(*b),
        // Serviceguard files say YES/NO (and ENABLED/DISABLED).
        DeValue::String(s) => match s.to_ascii_lowercase().as_str() {
            "yes" | "enabled" | "true" => Some(true),
            "no" | "disabled" | "false" => Some(false),
            _ => {
                sink.error(value.span(), path, format!("\"{s}\" is not a yes/no value"))
                    .expected = Some("true or false (or YES / NO)".to_owned());
                None
            }
        },
        other => {
            wrong_type(sink, path, value.span(), other, "true or false");
            None
        }
    }
}

pub(crate) fn as_integer(
    sink: &mut Sink<'_>,
    path: &str,
    value: &Spanned<DeValue<'_>>,
    min: i64,
    max: i64,
) -> Option<(i64, Span)> {
    let expected = format!("an integer from {min} to {max}");
    match value.get_ref() {
        DeValue::Integer(i) => {
            let parsed = i64::from_str_radix(i.as_str(), i.radix());
            match parsed {
                Ok(n) if (min..=max).contains(&n) => Some((n, value.span())),
                Ok(n) => {
                    sink.error(value.span(), path, format!("{n} is out of range"))
                        .expected = Some(expected);
                    None
                }
                Err(_) => {
                    sink.error(value.span(), path, format!("{} is too large", i.as_str()))
                        .expected = Some(expected);
                    None
                }
            }
        }
        other => {
            wrong_type(sink, path, value.span(), other, &expected);
            None
        }
    }
}

/// A duration written as text: `"500ms"`, `"2s"`, `"1h 30m"`.
pub(crate) fn as_duration(
    sink: &mut Sink<'_>,
    path: &str,
    value: &Spanned<DeValue<'_>>,
) -> Option<(Duration, Span)> {
    const EXPECTED: &str = "a duration such as \"500ms\", \"2s\" or \"10m\"";
    match value.get_ref() {
        DeValue::String(s) => match humantime::parse_duration(s) {
            Ok(d) => Some((d, value.span())),
            Err(e) => {
                sink.error(
                    value.span(),
                    path,
                    format!("\"{s}\" is not a duration ({e})"),
                )
                .expected = Some(EXPECTED.to_owned());
                None
            }
        },
        DeValue::Integer(i) => {
            sink.error(value.span(), path, format!("{} has no unit", i.as_str()))
                .expected = Some(EXPECTED.to_owned());
            sink.diagnostics.last_mut().expect("pushed").hint =
                Some(format!("write \"{}s\" for seconds", i.as_str()));
            None
        }
        other => {
            wrong_type(sink, path, value.span(), other, EXPECTED);
            None
        }
    }
}

/// An IP address (`198.18.1.1`, `fd00::1`).
pub(crate) fn parse_ip(sink: &mut Sink<'_>, path: &str, text: &str, span: Span) -> Option<IpAddr> {
    match text.trim().parse::<IpAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            sink.error(span, path, format!("\"{text}\" is not an IP address"))
                .expected = Some("an IPv4 or IPv6 address such as \"198.18.1.10\"".to_owned());
            None
        }
    }
}

/// An address with a prefix (`198.18.1.50/24`). `normalise` turns it into the
/// network address (for subnets); otherwise host bits are kept (for relocatable
/// addresses).
pub(crate) fn parse_cidr(
    sink: &mut Sink<'_>,
    path: &str,
    text: &str,
    span: Span,
    normalise: bool,
) -> Option<Subnet> {
    let expected = "an address with a prefix length, such as \"198.18.1.50/24\"";
    let Some((address_text, prefix_text)) = text.trim().split_once('/') else {
        sink.error(span, path, format!("\"{text}\" has no prefix length"))
            .expected = Some(expected.to_owned());
        return None;
    };
    let Ok(address) = address_text.parse::<IpAddr>() else {
        sink.error(
            span,
            path,
            format!("\"{address_text}\" is not an IP address"),
        )
        .expected = Some(expected.to_owned());
        return None;
    };
    let prefix_max: u8 = if address.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix_text.parse::<u8>() {
        Ok(p) if p <= prefix_max => p,
        _ => {
            sink.error(
                span,
                path,
                format!("prefix length \"{prefix_text}\" is invalid"),
            )
            .expected = Some(format!("a prefix length from 0 to {prefix_max}"));
            return None;
        }
    };
    let mut subnet = Subnet { address, prefix };
    if normalise {
        subnet.address = network_address(subnet);
    }
    Some(subnet)
}

fn network_address(subnet: Subnet) -> IpAddr {
    match subnet.address {
        IpAddr::V4(a) => {
            let mask = if subnet.prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(subnet.prefix))
            };
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = if subnet.prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(subnet.prefix))
            };
            IpAddr::V6((u128::from(a) & mask).into())
        }
    }
}

/// Parses a keyword value case-insensitively (`CONFIGURED_NODE` or `configured_node`).
pub(crate) fn keyword<T: Copy>(
    sink: &mut Sink<'_>,
    path: &str,
    text: &str,
    span: Span,
    choices: &[(&str, T)],
) -> Option<T> {
    let wanted = text.trim();
    if let Some((_, v)) = choices.iter().find(|(k, _)| k.eq_ignore_ascii_case(wanted)) {
        return Some(*v);
    }
    let names: Vec<&str> = choices.iter().map(|(k, _)| *k).collect();
    let hint = did_you_mean(wanted, names.iter().copied());
    sink.error(span, path, format!("\"{text}\" is not a valid value"))
        .expected = Some(format!("one of {}", names.join(", ")));
    sink.diagnostics.last_mut().expect("pushed").hint = hint;
    None
}
