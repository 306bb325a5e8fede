//! Checks of values written in languages other crates own (monitor predicates and
//! samplers), so that `load` reports their mistakes with positions like every
//! other mistake. The configuration crate cannot depend on those crates (they
//! depend on it), so the caller passes an implementation in (`halcyon check`
//! combines `halcyon_monitor::Checks` with the OCF meta-data check of
//! `halcyon_resources::ocf`).

/// A mistake inside a value. `column` is 1-based, in characters of the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueError {
    pub column: Option<usize>,
    pub problem: String,
    pub expected: Option<String>,
    pub hint: Option<String>,
}

pub trait ValueChecks {
    /// A monitor's predicate or rearm predicate.
    fn predicate(&self, text: &str) -> Result<(), ValueError>;
    /// A monitor's sampler (`builtin:...` or a command).
    fn sampler(&self, text: &str) -> Result<(), ValueError>;
    /// An OCF resource's parameters against its agent's meta-data (reported at the
    /// `agent` value). By default nothing is checked.
    fn ocf_params(
        &self,
        _agent: &str,
        _params: &std::collections::BTreeMap<String, String>,
    ) -> Vec<ValueError> {
        Vec::new()
    }
    /// A fence device's agent and options against the agent's metadata (reported at the
    /// `agent` value). By default nothing is checked.
    fn fence_device(
        &self,
        _agent: &str,
        _options: &std::collections::BTreeMap<String, String>,
    ) -> Vec<ValueError> {
        Vec::new()
    }
}

/// The byte offset in `raw` (the source text of a TOML string value, starting at its
/// opening quote) of the character at 1-based `column` of the decoded value. For
/// multi-line strings the value's own position is used.
pub(crate) fn raw_offset(raw: &str, column: usize) -> usize {
    let literal = raw.starts_with('\'');
    if raw.starts_with("\"\"\"") || raw.starts_with("'''") || !(raw.starts_with('"') || literal) {
        return 0;
    }
    let mut offset = 1; // the opening quote
    let mut rest = &raw[1..];
    for _ in 1..column {
        let Some(c) = rest.chars().next() else { break };
        let len = if !literal && c == '\\' {
            match rest.chars().nth(1) {
                Some('u') => 6,
                Some('U') => 10,
                Some(_) => 2,
                None => 1,
            }
        } else {
            c.len_utf8()
        };
        let len = len.min(rest.len());
        offset += len;
        rest = &rest[len..];
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::raw_offset;

    #[test]
    fn columns_map_through_quotes_and_escapes() {
        assert_eq!(raw_offset("\"X > 9\"", 1), 1);
        assert_eq!(raw_offset("\"X > 9\"", 5), 5);
        assert_eq!(raw_offset("\"a\\\"b\"", 3), 4);
        assert_eq!(raw_offset("'a\\b'", 3), 3);
        assert_eq!(raw_offset("\"\"\"X\"\"\"", 1), 0);
    }
}
