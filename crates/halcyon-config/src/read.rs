//! Reading: the files of a configuration, each parsed into toml's spanned tree and
//! read into its raw parts (the cluster and the packages as the files write them),
//! with where each part came from (`Origins`, `PackageOrigin`, `ClusterSpans`) so
//! that the later stages can point into the files. Mistakes within one field or
//! table are reported here; nothing is compared across files yet.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use crate::diagnostic::{Diagnostic, Diagnostics, SourceFile, did_you_mean};
use crate::model::*;
use crate::reader::*;

/// Where each object came from, for cross-file diagnostics.
#[derive(Debug, Default)]
pub(crate) struct Origins {
    /// (file index, span) of each node's table, by node name.
    pub nodes: BTreeMap<String, (usize, Span)>,
    pub cluster_file: Option<usize>,
    /// The cluster file is not valid TOML (already reported).
    pub unreadable_cluster: bool,
    /// Packages whose file has mistakes that kept them out of the configuration
    /// (already reported): a dependency on one of them is not "undefined".
    pub unreadable_packages: BTreeSet<String>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct PackageOrigin {
    pub file: usize,
    pub name: Span,
    /// Span of each node-list entry.
    pub nodes: Vec<Span>,
    pub nodes_field: Span,
    /// Each dependency of the model, in order.
    pub dependencies: Vec<DependencyOrigin>,
    /// Each resource of the model, in order.
    pub resources: Vec<ResourceOrigin>,
    pub networks: Vec<Span>,
    pub run_timeout: Option<Span>,
    pub halt_timeout: Option<Span>,
    pub fallback_timer: Option<Span>,
    pub requires: Option<Span>,
    /// The node list has a mistake (already reported): checks that compare node
    /// lists would only add knock-on errors.
    pub nodes_invalid: bool,
    /// The node list was `["*"]`; `nodes` then holds the span of the `"*"` for
    /// every node.
    pub nodes_from_star: bool,
}

/// Where a dependency came from. A dependency table with a mistake is left out of
/// the model, so the model's index and the file's can differ.
#[derive(Debug, Default, Clone)]
pub(crate) struct DependencyOrigin {
    /// 1-based position among the file's `[[dependency]]` tables.
    pub number: usize,
    /// The `package = "..."` value.
    pub package: Span,
}

/// Where a resource came from (see [`DependencyOrigin`] on numbering).
#[derive(Debug, Default, Clone)]
pub(crate) struct ResourceOrigin {
    /// 1-based position among the file's `[[resource]]` tables.
    pub number: usize,
    pub table: Span,
    /// An ip resource's fields.
    pub ip: Option<IpOrigin>,
    /// The timeouts written in this table (field name, value), as opposed to
    /// defaults or values inherited from the package.
    pub timeouts: Vec<(&'static str, Span)>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct IpOrigin {
    /// The `network` value.
    pub network: Span,
    /// For each address of the model: its field (`address`, `addresses[2]`) and value.
    pub addresses: Vec<(String, Span)>,
    /// Some address given could not be used (already reported): checks that need
    /// every address would only add knock-on errors.
    pub addresses_invalid: bool,
}

impl ResourceOrigin {
    /// The field path of one of this resource's fields, e.g. `resource[2].network`.
    pub fn path(&self, field: &str) -> String {
        format!("resource[{}].{field}", self.number)
    }
}

/// A loaded set of files, kept so validation can point into them.
pub(crate) struct Files {
    pub sources: Vec<SourceFile>,
}

/// Where the parts of the cluster file are (for the checks on the cluster file).
#[derive(Debug, Default)]
pub(crate) struct ClusterSpans {
    pub root: Span,
    /// The `[cluster]` table.
    pub cluster: Span,
    /// `[[node]]` tables left out because they have no valid name (already
    /// reported); they still count as voters.
    pub unnamed_nodes: usize,
    pub nodes: Vec<NodeSpans>,
    /// (table, name) of each network.
    pub networks: Vec<(Span, Span)>,
    pub quorum: QuorumSpans,
}

#[derive(Debug, Default)]
pub(crate) struct QuorumSpans {
    pub table: Option<Span>,
    pub witness: Option<Span>,
    pub witness_name: Option<Span>,
    pub witness_number: Option<Span>,
    pub min_voters: Option<Span>,
    pub auto_shrink: Option<Span>,
    pub lease: Option<Span>,
}

#[derive(Debug, Default)]
pub(crate) struct NodeSpans {
    pub table: Span,
    pub name: Span,
    pub number: Span,
    pub interfaces: Vec<InterfaceSpans>,
}

#[derive(Debug, Default)]
pub(crate) struct InterfaceSpans {
    pub network: Span,
    pub address: Option<Span>,
}

/// A configuration's files, read into their raw parts.
pub(crate) struct Read {
    pub files: Files,
    /// The cluster, if a cluster file was read.
    pub cluster: Option<ReadCluster>,
    /// The packages, in the order of their files, duplicates included.
    pub packages: Vec<(Package, PackageOrigin)>,
    pub origins: Origins,
    /// The mistakes found while reading.
    pub diagnostics: Vec<Diagnostic>,
}

/// The cluster as its file writes it, with the positions of its parts.
pub(crate) struct ReadCluster {
    pub cluster: Cluster,
    pub spans: ClusterSpans,
    /// The cluster file's index in [`Files::sources`].
    pub file: usize,
}

/// Reads each file: the cluster file into a [`Cluster`], each package file into a
/// [`Package`], rules files (`[[event]]` tables, the event engine's) skipped; any
/// other file, and a missing or second cluster file, is a mistake.
pub(crate) fn read_sources(
    sources: Vec<SourceFile>,
    checks: Option<&dyn crate::checks::ValueChecks>,
) -> Read {
    let mut diagnostics: Vec<Diagnostic> = Vec::new();
    let mut cluster: Option<ReadCluster> = None;
    let mut packages: Vec<(Package, PackageOrigin)> = Vec::new();
    let mut origins = Origins::default();

    for (file_index, source) in sources.iter().enumerate() {
        let (root, parse_errors) = DeTable::parse_recoverable(&source.text);
        let table = root.get_ref();
        let key_of = |name: &str| {
            table
                .keys()
                .find(|k| k.get_ref().eq_ignore_ascii_case(name))
        };
        if !parse_errors.is_empty() {
            diagnostics.push(syntax_error(source, &parse_errors));
            // What the recovered tree still tells: whether this was the cluster file
            // (then "no cluster file" would be a knock-on) or which package it
            // defines (then dependencies on it are not "unknown").
            if key_of("cluster").is_some() {
                origins.cluster_file.get_or_insert(file_index);
                origins.unreadable_cluster = true;
            } else if let Some(name) = package_name_of(table) {
                origins.unreadable_packages.insert(name);
            }
            continue;
        }
        // A rules file (`[[event]]` tables) belongs to the event engine, which
        // checks it; it is not part of the cluster and package configuration.
        if key_of("event").is_some() && key_of("cluster").is_none() && key_of("package").is_none() {
            continue;
        }
        let mut sink = Sink::new(source);
        sink.checks = checks;
        if let Some(key) = key_of("cluster") {
            if let Some(first) = origins.cluster_file {
                sink.error(key.span(), "cluster", "a second cluster file")
                    .hint = Some(format!(
                    "the cluster is already defined in {}",
                    sources[first].path.display()
                ));
            } else {
                origins.cluster_file = Some(file_index);
                cluster = read_cluster(&mut sink, table, root.span(), file_index, &mut origins)
                    .map(|(cluster, spans)| ReadCluster {
                        cluster,
                        spans,
                        file: file_index,
                    });
            }
        } else if key_of("package").is_some() {
            match read_package(&mut sink, table, root.span(), file_index) {
                Some(p) => packages.push(p),
                None => {
                    if let Some(name) = package_name_of(table) {
                        origins.unreadable_packages.insert(name);
                    }
                }
            }
        } else {
            // Point at the first key: it is usually the misspelt table name.
            let first = table.keys().next();
            let span = first.map_or(0..0, |k| k.span());
            let hint = first.and_then(|k| did_you_mean(k.get_ref(), ["cluster", "package"]));
            sink.error(span, "file", "is neither a cluster file nor a package file")
                .expected = Some(
                "a [cluster] table (cluster file) or a [package] table (package file)".to_owned(),
            );
            sink.diagnostics.last_mut().expect("pushed").hint = hint;
        }
        diagnostics.extend(sink.diagnostics);
    }

    if origins.cluster_file.is_none() {
        let file = sources.first().map(|s| s.path.clone()).unwrap_or_default();
        diagnostics.push(Diagnostic {
            file,
            line: 0,
            column: 0,
            field: "cluster".to_owned(),
            problem: "no cluster file among the files given".to_owned(),
            expected: Some("one file with a [cluster] table".to_owned()),
            hint: Some(
                "pass the configuration directory, or the cluster file with the package files"
                    .to_owned(),
            ),
        });
    }

    Read {
        files: Files { sources },
        cluster,
        packages,
        origins,
        diagnostics,
    }
}

/// The text of every file of the configuration in `paths` (see [`collect_files`]).
pub(crate) fn source_files(paths: &[PathBuf]) -> Result<Vec<SourceFile>, Diagnostics> {
    let files = collect_files(paths)?;
    let mut sources = Vec::new();
    let mut diagnostics = Vec::new();
    for path in &files {
        match fs::read_to_string(path) {
            Ok(text) => sources.push(SourceFile::new(path.clone(), text)),
            Err(e) => diagnostics.push(io_diagnostic(path, &e)),
        }
    }
    if diagnostics.is_empty() {
        Ok(sources)
    } else {
        Err(Diagnostics(diagnostics))
    }
}

/// The configuration files of `paths` as text, each named as its directory holds it: relative
/// to the directory (`packages/web.toml`), a file given by itself by its file name. What
/// `halcyon apply` sends and what the cluster keeps for `halcyon snapshot save`.
pub fn named_sources(paths: &[PathBuf]) -> Result<Vec<(String, String)>, Diagnostics> {
    let mut sources = Vec::new();
    let mut diagnostics = Vec::new();
    for path in paths {
        for file in collect_files(std::slice::from_ref(path))? {
            let name = if path.is_dir() {
                file.strip_prefix(path).unwrap_or(&file)
            } else {
                Path::new(file.file_name().unwrap_or(file.as_os_str()))
            };
            match fs::read_to_string(&file) {
                Ok(text) => sources.push((name.to_string_lossy().into_owned(), text)),
                Err(e) => diagnostics.push(io_diagnostic(&file, &e)),
            }
        }
    }
    if diagnostics.is_empty() {
        Ok(sources)
    } else {
        Err(Diagnostics(diagnostics))
    }
}

/// The directory of a configuration directory that holds the node credentials
/// (`halcyon init`'s default is `/etc/halcyon/pki`): not configuration, never read here.
pub const CREDENTIALS_DIR: &str = "pki";

/// The files a configuration is made of: each path is a `.toml` file, or a
/// directory searched recursively for `.toml` files (sorted by path), except its
/// credentials directory ([`CREDENTIALS_DIR`]).
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Diagnostics> {
    let mut files = Vec::new();
    let mut diagnostics = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found = Vec::new();
            if let Err(e) = walk(path, &mut found, true) {
                diagnostics.push(io_diagnostic(path, &e));
            }
            found.sort();
            if found.is_empty() {
                diagnostics.push(no_position(
                    path,
                    "directory",
                    "contains no .toml file",
                    Some("a cluster file and package files ending in .toml"),
                ));
            }
            files.extend(found);
        } else if path.exists() {
            files.push(path.clone());
        } else {
            diagnostics.push(no_position(
                path,
                "path",
                "does not exist",
                Some("a configuration directory or .toml files"),
            ));
        }
    }
    if diagnostics.is_empty() {
        Ok(files)
    } else {
        Err(Diagnostics(diagnostics))
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, top: bool) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if top && path.file_name().is_some_and(|n| n == CREDENTIALS_DIR) {
                continue;
            }
            walk(&path, out, false)?;
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
    Ok(())
}

fn io_diagnostic(path: &Path, error: &std::io::Error) -> Diagnostic {
    no_position(path, "file", &format!("cannot be read: {error}"), None)
}

fn no_position(path: &Path, field: &str, problem: &str, expected: Option<&str>) -> Diagnostic {
    Diagnostic {
        file: path.to_owned(),
        line: 0,
        column: 0,
        field: field.to_owned(),
        problem: problem.to_owned(),
        expected: expected.map(str::to_owned),
        hint: None,
    }
}
/// One diagnostic for a file that is not valid TOML. The parser recovers and
/// reports on, but after the first mistake most later ones are its echoes (an
/// unclosed `[` turns every following line into "missing comma"), so only the
/// first is shown, with a word on an unclosed bracket or string if there is one.
fn syntax_error(source: &SourceFile, errors: &[toml::de::Error]) -> Diagnostic {
    let start = |e: &toml::de::Error| e.span().map_or(0, |s| s.start);
    let first = errors.iter().min_by_key(|e| start(e)).expect("not empty");
    let mut diagnostic = source
        .diagnostic(
            first.span().unwrap_or(0..0),
            "toml",
            format!("syntax error: {}", first.message().trim()),
        )
        .expected("valid TOML");
    let unclosed = errors
        .iter()
        .find(|e| !std::ptr::eq(*e, first) && e.message().starts_with("unclosed"));
    if let Some(unclosed) = unclosed {
        let what = unclosed.message().trim();
        let what = what.split(',').next().unwrap_or(what);
        diagnostic.hint = Some(format!(
            "the file ends with an {what}: a bracket or quote opened on or before line {} is never closed",
            diagnostic.line
        ));
    }
    diagnostic
}

/// The `name` of the `[package]` table, if it is there and a string.
fn package_name_of(root: &DeTable<'_>) -> Option<String> {
    let (_, package) = root
        .iter()
        .find(|(k, _)| k.get_ref().eq_ignore_ascii_case("package"))?;
    let DeValue::Table(package) = package.get_ref() else {
        return None;
    };
    package.iter().find_map(|(k, v)| match v.get_ref() {
        DeValue::String(name)
            if k.get_ref().eq_ignore_ascii_case("name")
                || k.get_ref().eq_ignore_ascii_case("package_name") =>
        {
            Some(name.to_string())
        }
        _ => None,
    })
}

// ---------------------------------------------------------------------------
// The cluster file

/// `[[events.webhook]]`: each checked where it is written.
fn read_webhooks(sink: &mut Sink<'_>, events: &mut TableReader<'_, '_>) -> Vec<Webhook> {
    let tables = events.tables(sink, "webhook");
    if tables.len() > WEBHOOKS_MAX {
        let span = tables[WEBHOOKS_MAX].2.clone();
        sink.error(span, "events.webhook", format!("{} webhooks", tables.len()))
            .expected = Some(format!("at most {WEBHOOKS_MAX}"));
    }
    let mut out = Vec::new();
    for (index, table, span) in tables.into_iter().take(WEBHOOKS_MAX) {
        let path = format!("events.webhook[{index}]");
        let mut w = TableReader::new(path.clone(), span, table, WEBHOOK_FIELDS);
        let url = w.require_string(sink, "url", "an http:// URL");
        if let Some((url, span)) = &url
            && let Err(problem) = parse_http_url(url)
        {
            let d = sink.error(
                span.clone(),
                &format!("{path}.url"),
                format!("\"{url}\": {problem}"),
            );
            d.expected = Some("http://HOST[:PORT]/PATH".to_owned());
            if url.starts_with("https://") {
                d.hint = Some("point it at a local relay that forwards over TLS".to_owned());
            }
        }
        let mut kinds = Vec::new();
        for (kind, span) in w
            .strings(sink, "events")
            .map(|(k, _)| k)
            .unwrap_or_default()
        {
            if WEBHOOK_EVENTS.contains(&kind.as_str()) {
                kinds.push(kind);
            } else {
                let d = sink.error(
                    span,
                    &format!("{path}.events"),
                    format!("unknown event kind \"{kind}\""),
                );
                d.expected = Some(format!(
                    "one of {} (`user`: every user-defined event; `error`: an event stopped in ERROR; `node_restart`: a node's new incarnation; `node_fence`: a fence of a node; `voter_change`: a voter added or removed; `event_too_long`: an event running longer than its maximum duration; `quorum_lost`, `quorum_regained`: sent by each node itself)",
                    crate::diagnostic::list(WEBHOOK_EVENTS)
                ));
                d.hint = did_you_mean(&kind, WEBHOOK_EVENTS.iter().copied());
            }
        }
        let timeout = match w.duration(sink, "timeout") {
            Some((t, span)) if t.is_zero() || t > WEBHOOK_TIMEOUT_MAX => {
                sink.error(span, &format!("{path}.timeout"), format!("{t:?}"))
                    .expected = Some(format!("more than 0 and at most {WEBHOOK_TIMEOUT_MAX:?}"));
                WEBHOOK_TIMEOUT_DEFAULT
            }
            Some((t, _)) => t,
            None => WEBHOOK_TIMEOUT_DEFAULT,
        };
        let retries = w
            .integer(sink, "retries", 0, i64::from(WEBHOOK_RETRIES_MAX))
            .map_or(WEBHOOK_RETRIES_DEFAULT, |(r, _)| r as u32);
        w.finish(sink);
        if let Some((url, _)) = url {
            out.push(Webhook {
                url,
                events: kinds,
                timeout,
                retries,
            });
        }
    }
    out
}

const CLUSTER_FILE_FIELDS: &[FieldSpec] = &[
    field("cluster"),
    field("heartbeat"),
    field("quorum"),
    field("events"),
    field("limits"),
    field("network"),
    field("node"),
];
const CLUSTER_FIELDS: &[FieldSpec] = &[
    field_aliased("name", &["cluster_name"]),
    field("id"),
    field("port"),
];
const HEARTBEAT_FIELDS: &[FieldSpec] = &[
    field("profile"),
    field_aliased("interval", &["heartbeat_interval"]),
    field_aliased("sensitivity", &["fibrillate_count"]),
];
const QUORUM_FIELDS: &[FieldSpec] = &[
    field("witness"),
    field("auto_shrink"),
    field("shrink_after"),
    field("min_voters"),
    field("lease"),
    field("watchdog"),
];
const WITNESS_FIELDS: &[FieldSpec] = &[field("name"), field("number"), field("address")];
const EVENTS_FIELDS: &[FieldSpec] = &[
    field("notify"),
    field("pre_event"),
    field("post_event"),
    field("rules"),
    field("keep_events_for"),
    field("keep_events_mib"),
    field("webhook"),
];
const WEBHOOK_FIELDS: &[FieldSpec] = &[
    field("url"),
    field("events"),
    field("timeout"),
    field("retries"),
];
const LIMITS_FIELDS: &[FieldSpec] = &[field("max_event_duration")];
const NETWORK_FIELDS: &[FieldSpec] = &[
    field("name"),
    field("kind"),
    field("subnets"),
    field("device"),
    field_aliased("interval", &["heartbeat_interval"]),
    field_aliased("sensitivity", &["fibrillate_count"]),
];
const NODE_FIELDS: &[FieldSpec] = &[
    field_aliased("name", &["node_name"]),
    field("number"),
    field("interface"),
    field("fencing"),
];
const INTERFACE_FIELDS: &[FieldSpec] = &[
    field("network"),
    field("address"),
    field("device"),
    field("standby"),
];
const FENCING_FIELDS: &[FieldSpec] = &[
    field("agent"),
    field("options"),
    field("timeout"),
    field("level"),
];
const FENCE_LEVEL_FIELDS: &[FieldSpec] = &[field("device")];
const FENCE_DEVICE_FIELDS: &[FieldSpec] = &[field("agent"), field("options"), field("timeout")];

fn read_cluster(
    sink: &mut Sink<'_>,
    root: &DeTable<'_>,
    root_span: Span,
    file: usize,
    origins: &mut Origins,
) -> Option<(Cluster, ClusterSpans)> {
    let mut top = TableReader::new("", root_span.clone(), root, CLUSTER_FILE_FIELDS);

    let (cluster_table, cluster_span) = top.table(sink, "cluster")?;
    let mut spans = ClusterSpans {
        root: root_span.clone(),
        cluster: cluster_span.clone(),
        ..ClusterSpans::default()
    };
    let mut c = TableReader::new("cluster", cluster_span, cluster_table, CLUSTER_FIELDS);
    let name = c
        .require_string(sink, "name", "the cluster's name, e.g. \"prod\"")
        .map(|(s, _)| s);
    let id = c
        .require_integer(sink, "id", 1, i64::from(u32::MAX))
        .map(|(n, _)| n as u64);
    let port = c
        .integer(sink, "port", 1024, 65_000)
        .map_or(DEFAULT_PORT, |(n, _)| n as u16);
    c.finish(sink);

    let heartbeat = match top.table(sink, "heartbeat") {
        Some((t, span)) => read_cluster_heartbeat(sink, t, span),
        None => Heartbeat::default(),
    };

    let mut quorum_spans = QuorumSpans::default();
    let quorum = match top.table(sink, "quorum") {
        Some((t, span)) => {
            quorum_spans.table = Some(span.clone());
            read_quorum(sink, t, span, &mut quorum_spans)
        }
        None => Quorum {
            witness: None,
            auto_shrink: false,
            shrink_after: DEFAULT_SHRINK_AFTER,
            min_voters: 0,
            lease: None,
            watchdog: None,
        },
    };

    let events = match top.table(sink, "events") {
        Some((t, span)) => {
            let mut e = TableReader::new("events", span, t, EVENTS_FIELDS);
            let out = EventDefaults {
                notify: e.string(sink, "notify").map(|(s, _)| s),
                pre_event: e.string(sink, "pre_event").map(|(s, _)| s),
                post_event: e.string(sink, "post_event").map(|(s, _)| s),
                rules: e.string(sink, "rules").map(|(s, _)| s),
                keep_events_for: e
                    .duration(sink, "keep_events_for")
                    .map_or(crate::model::DEFAULT_KEEP_EVENTS_FOR, |(d, _)| d),
                keep_events_mib: e
                    .integer(
                        sink,
                        "keep_events_mib",
                        1,
                        crate::model::KEEP_EVENTS_MIB_MAX as i64,
                    )
                    .map_or(crate::model::DEFAULT_KEEP_EVENTS_MIB, |(n, _)| n as u64),
                webhooks: read_webhooks(sink, &mut e),
            };
            e.finish(sink);
            out
        }
        None => EventDefaults::default(),
    };

    let limits = match top.table(sink, "limits") {
        Some((t, span)) => {
            let mut l = TableReader::new("limits", span, t, LIMITS_FIELDS);
            let out = Limits {
                max_event_duration: match l.duration(sink, "max_event_duration") {
                    Some((d, span)) if d.is_zero() || d > MAX_EVENT_DURATION_MAX => {
                        sink.error(
                            span,
                            "limits.max_event_duration",
                            format!("{:?}", humantime::format_duration(d).to_string()),
                        )
                        .expected = Some(format!(
                            "more than 0 and at most {}h (a running event is warned about \
                             after this long, and again after every further period)",
                            MAX_EVENT_DURATION_MAX.as_secs() / 3600
                        ));
                        DEFAULT_MAX_EVENT_DURATION
                    }
                    Some((d, _)) => d,
                    None => DEFAULT_MAX_EVENT_DURATION,
                },
            };
            l.finish(sink);
            out
        }
        None => Limits::default(),
    };

    let mut networks = Vec::new();
    let network_tables = top.tables(sink, "network");
    if network_tables.is_empty() {
        sink.error(root_span.clone(), "network", "no network is defined")
            .expected = Some("at least one [[network]] of kind \"ip\"".to_owned());
    }
    for (index, table, span) in network_tables {
        if let Some((n, name_span)) = read_network(sink, index, table, span.clone(), heartbeat) {
            networks.push(n);
            spans.networks.push((span, name_span));
        }
    }

    let mut nodes = Vec::new();
    let node_tables = top.tables(sink, "node");
    if node_tables.is_empty() {
        sink.error(root_span, "node", "no node is defined").expected =
            Some("at least one [[node]] with a name, a number and interfaces".to_owned());
    }
    for (index, table, span) in node_tables {
        if let Some((n, node_spans)) = read_node(sink, index, table, span.clone()) {
            origins
                .nodes
                .entry(n.name.0.clone())
                .or_insert((file, span));
            nodes.push(n);
            spans.nodes.push(node_spans);
        } else {
            spans.unnamed_nodes += 1;
        }
    }
    top.finish(sink);

    // A missing name or id is reported; the packages are still checked against
    // the rest (the mistake makes the load fail).
    let cluster = Cluster {
        name: name.unwrap_or_default(),
        id: id.unwrap_or(0),
        port,
        nodes,
        networks,
        heartbeat,
        quorum,
        events,
        limits,
    };
    spans.quorum = quorum_spans;
    Some((cluster, spans))
}

/// The cluster's `[heartbeat]`: the profile's settings (the default profile when none is
/// named), then `interval` and `sensitivity` over them where given.
fn read_cluster_heartbeat(sink: &mut Sink<'_>, table: &DeTable<'_>, span: Span) -> Heartbeat {
    let mut h = TableReader::new("heartbeat", span, table, HEARTBEAT_FIELDS);
    let profile = h
        .string(sink, "profile")
        .and_then(|(text, span)| {
            keyword(
                sink,
                "heartbeat.profile",
                &text,
                span,
                &HeartbeatProfile::ALL,
            )
        })
        .unwrap_or(HeartbeatProfile::Default);
    let heartbeat = read_heartbeat_fields(sink, &mut h, profile.heartbeat());
    h.finish(sink);
    heartbeat
}

fn read_heartbeat_fields(
    sink: &mut Sink<'_>,
    h: &mut TableReader<'_, '_>,
    defaults: Heartbeat,
) -> Heartbeat {
    let mut out = defaults;
    if let Some((interval, span)) = h.duration(sink, "interval") {
        let ms = interval.as_millis() as u64;
        if (limits::HEARTBEAT_INTERVAL_MIN_MS..=limits::HEARTBEAT_INTERVAL_MAX_MS).contains(&ms) {
            out.interval = interval;
        } else {
            sink.error(
                span,
                &h.field_path("interval"),
                format!("{} is out of range", humantime::format_duration(interval)),
            )
            .expected = Some(format!(
                "from {}ms to {}s",
                limits::HEARTBEAT_INTERVAL_MIN_MS,
                limits::HEARTBEAT_INTERVAL_MAX_MS / 1000
            ));
        }
    }
    if let Some((n, _)) = h.integer(
        sink,
        "sensitivity",
        i64::from(limits::SENSITIVITY_MIN),
        i64::from(limits::SENSITIVITY_MAX),
    ) {
        out.sensitivity = n as u32;
    }
    out
}

fn read_quorum(
    sink: &mut Sink<'_>,
    table: &DeTable<'_>,
    span: Span,
    spans: &mut QuorumSpans,
) -> Quorum {
    let mut q = TableReader::new("quorum", span, table, QUORUM_FIELDS);
    let witness = q.table(sink, "witness").and_then(|(t, span)| {
        spans.witness = Some(span.clone());
        let mut w = TableReader::new("quorum.witness", span, t, WITNESS_FIELDS);
        let name = w.require_string(sink, "name", "the witness's name");
        let number = w.require_integer(sink, "number", 1, i64::from(limits::NODE_NUMBER_MAX));
        spans.witness_name = name.as_ref().map(|(_, s)| s.clone());
        spans.witness_number = number.as_ref().map(|(_, s)| s.clone());
        let address = w
            .require_string(sink, "address", "the witness's IP address")
            .and_then(|(s, span)| parse_ip(sink, "quorum.witness.address", &s, span));
        w.finish(sink);
        Some(Witness {
            name: NodeName(name?.0),
            number: number?.0 as u32,
            address: address?,
        })
    });
    let min_voters = q.integer(sink, "min_voters", 1, limits::NODES_MAX as i64);
    spans.min_voters = min_voters.as_ref().map(|(_, s)| s.clone());
    let lease = q.duration(sink, "lease");
    spans.lease = lease.as_ref().map(|(_, s)| s.clone());
    spans.auto_shrink = q.get(sink, "auto_shrink").map(|v| v.span());
    let auto_shrink = q.bool(sink, "auto_shrink").unwrap_or(false);
    let shrink_after = match q.duration(sink, "shrink_after") {
        Some((_, span)) if !auto_shrink => {
            sink.error(
                span,
                &q.field_path("shrink_after"),
                "has no effect without auto_shrink = true",
            )
            .hint = Some("set auto_shrink = true or remove shrink_after".to_owned());
            DEFAULT_SHRINK_AFTER
        }
        Some((d, span)) if d < Duration::from_secs(1) || d > Duration::from_secs(3600) => {
            sink.error(span, &q.field_path("shrink_after"), "out of range")
                .expected = Some("from 1 s to 1 h".to_owned());
            DEFAULT_SHRINK_AFTER
        }
        Some((d, _)) => d,
        None => DEFAULT_SHRINK_AFTER,
    };
    let out = Quorum {
        witness,
        auto_shrink,
        shrink_after,
        min_voters: min_voters.map_or(0, |(n, _)| n as u32),
        lease: lease.map(|(d, _)| d),
        watchdog: q.string(sink, "watchdog").map(|(s, _)| s),
    };
    q.finish(sink);
    out
}

fn read_network(
    sink: &mut Sink<'_>,
    index: usize,
    table: &DeTable<'_>,
    span: Span,
    cluster_heartbeat: Heartbeat,
) -> Option<(Network, Span)> {
    let path = format!("network[{index}]");
    let mut n = TableReader::new(path.clone(), span, table, NETWORK_FIELDS);
    let name = n.require_string(sink, "name", "the network's name, e.g. \"lan1\"");
    let kind = n
        .require_string(sink, "kind", "\"ip\" or \"disk\"")
        .and_then(|(s, span)| {
            keyword(
                sink,
                &format!("{path}.kind"),
                &s,
                span,
                &[("ip", NetworkKind::Ip), ("disk", NetworkKind::Disk)],
            )
        });
    let mut subnets = Vec::new();
    let subnets_field = n.strings(sink, "subnets");
    if let Some((items, _)) = &subnets_field {
        for (i, (text, span)) in items.iter().enumerate() {
            if let Some(s) = parse_cidr(
                sink,
                &format!("{path}.subnets[{}]", i + 1),
                text,
                span.clone(),
                true,
            ) {
                subnets.push(s);
            }
        }
    }
    let device = n.string(sink, "device");
    let heartbeat = read_heartbeat_fields(sink, &mut n, cluster_heartbeat);
    match kind {
        Some(NetworkKind::Ip) => {
            if subnets_field.is_none() {
                sink.error(
                    n.span.clone(),
                    &format!("{path}.subnets"),
                    "missing for an ip network",
                )
                .expected =
                    Some("the network's subnets, e.g. subnets = [\"198.18.1.0/24\"]".to_owned());
            }
            if let Some((_, span)) = &device {
                sink.error(
                    span.clone(),
                    &format!("{path}.device"),
                    "an ip network has no device",
                )
                .hint = Some("device is for kind = \"disk\"".to_owned());
            }
        }
        Some(NetworkKind::Disk) => {
            if device.is_none() {
                sink.error(
                    n.span.clone(),
                    &format!("{path}.device"),
                    "missing for a disk network",
                )
                .expected = Some(
                    "the shared file or block device, e.g. device = \"/dev/disk/by-id/hb\""
                        .to_owned(),
                );
            }
            if let Some((_, span)) = &subnets_field {
                sink.error(
                    span.clone(),
                    &format!("{path}.subnets"),
                    "a disk network has no subnets",
                )
                .hint = Some("subnets are for kind = \"ip\"".to_owned());
            }
        }
        None => {}
    }
    n.finish(sink);
    let (name, name_span) = name?;
    let network = Network {
        name: NetworkName(name),
        number: index as u32,
        kind: kind?,
        subnets,
        device: device.map(|(d, _)| d),
        heartbeat,
    };
    Some((network, name_span))
}

fn read_node(
    sink: &mut Sink<'_>,
    index: usize,
    table: &DeTable<'_>,
    span: Span,
) -> Option<(Node, NodeSpans)> {
    let path = format!("node[{index}]");
    let mut spans = NodeSpans {
        table: span.clone(),
        ..NodeSpans::default()
    };
    let mut n = TableReader::new(path.clone(), span, table, NODE_FIELDS);
    let name = n.require_string(sink, "name", "the node's name, e.g. \"node1\"");
    let number = n.require_integer(sink, "number", 1, i64::from(limits::NODE_NUMBER_MAX));
    let mut interfaces = Vec::new();
    for (i, t, span) in n.tables(sink, "interface") {
        let ipath = format!("{path}.interface[{i}]");
        let mut r = TableReader::new(ipath.clone(), span, t, INTERFACE_FIELDS);
        let network = r.require_string(sink, "network", "the name of a [[network]]");
        let address_field = r.string(sink, "address");
        let address_span = address_field.as_ref().map(|(_, s)| s.clone());
        let address = address_field
            .and_then(|(s, span)| parse_ip(sink, &format!("{ipath}.address"), &s, span));
        let device = r.string(sink, "device").map(|(s, _)| s);
        let standby = r.bool(sink, "standby").unwrap_or(false);
        r.finish(sink);
        if let Some((network, network_span)) = network {
            spans.interfaces.push(InterfaceSpans {
                network: network_span,
                address: address_span,
            });
            interfaces.push(Interface {
                network: NetworkName(network),
                address,
                device,
                standby,
            });
        }
    }
    let fencing = n
        .table(sink, "fencing")
        .and_then(|(t, span)| read_fencing(sink, &format!("{path}.fencing"), t, span));
    n.finish(sink);
    let (name, name_span) = name?;
    // A node with a bad number is kept (as number 0, which no node has) so that
    // the package files can still refer to it; the mistake is reported.
    let (number, number_span) = number.unwrap_or((0, name_span.clone()));
    spans.name = name_span;
    spans.number = number_span;
    let node = Node {
        name: NodeName(name),
        number: number as u32,
        interfaces,
        fencing,
    };
    Some((node, spans))
}

/// `[node.fencing]`: one device (`agent`, `options`, `timeout`), or levels
/// (`[[node.fencing.level]]`, each with `[[node.fencing.level.device]]`), not both.
fn read_fencing(
    sink: &mut Sink<'_>,
    path: &str,
    table: &DeTable<'_>,
    span: Span,
) -> Option<Fencing> {
    let mut f = TableReader::new(path.to_owned(), span.clone(), table, FENCING_FIELDS);
    if table.get("level").is_none() {
        let device = read_fence_device(sink, &mut f);
        f.finish(sink);
        return Some(Fencing {
            levels: vec![FenceLevel {
                devices: vec![device?],
            }],
        });
    }
    if table.get("agent").is_some() {
        sink.error(
            span,
            path,
            "both a device (agent) and fencing levels are given",
        )
        .hint = Some(
            "write one device as agent, options and timeout, or every device under \
             [[node.fencing.level.device]]"
                .to_owned(),
        );
        f.finish_unknown_only(sink);
        return None;
    }
    let mut levels = Vec::new();
    let mut complete = true;
    for (l, t, level_span) in f.tables(sink, "level") {
        let level_path = format!("{path}.level[{l}]");
        let mut r = TableReader::new(
            level_path.clone(),
            level_span.clone(),
            t,
            FENCE_LEVEL_FIELDS,
        );
        let mut devices = Vec::new();
        for (d, t, device_span) in r.tables(sink, "device") {
            let mut dr = TableReader::new(
                format!("{level_path}.device[{d}]"),
                device_span,
                t,
                FENCE_DEVICE_FIELDS,
            );
            match read_fence_device(sink, &mut dr) {
                Some(device) => devices.push(device),
                None => complete = false,
            }
            dr.finish(sink);
        }
        r.finish(sink);
        if devices.is_empty() && complete {
            sink.error(level_span, &level_path, "a fencing level without devices")
                .hint = Some("add a [[node.fencing.level.device]] with its agent".to_owned());
            complete = false;
        }
        levels.push(FenceLevel { devices });
    }
    f.finish(sink);
    (complete && !levels.is_empty()).then_some(Fencing { levels })
}

/// A fence device's `agent`, `options` and `timeout`.
fn read_fence_device(sink: &mut Sink<'_>, r: &mut TableReader<'_, '_>) -> Option<FenceDevice> {
    let agent = r.require_string(
        sink,
        "agent",
        "a fence agent program, e.g. \"fence_ipmilan\"",
    );
    let options: BTreeMap<String, String> = r.string_map(sink, "options").into_iter().collect();
    if let (Some(checks), Some((text, span))) = (sink.checks, &agent) {
        for e in checks.fence_device(text, &options) {
            sink.value_error(span.clone(), &r.field_path("agent"), e);
        }
    }
    let timeout = match r.duration(sink, "timeout") {
        Some((d, span)) if d.is_zero() || d > FENCE_TIMEOUT_MAX => {
            sink.error(span, &r.field_path("timeout"), "out of range")
                .expected = Some(format!(
                "more than 0 s and at most {} s",
                FENCE_TIMEOUT_MAX.as_secs()
            ));
            FENCE_TIMEOUT_DEFAULT
        }
        Some((d, _)) => d,
        None => FENCE_TIMEOUT_DEFAULT,
    };
    Some(FenceDevice {
        agent: agent?.0,
        options,
        timeout,
    })
}

// ---------------------------------------------------------------------------
// Package files

const PACKAGE_FILE_FIELDS: &[FieldSpec] = &[
    field("package"),
    field("resource"),
    field_aliased("dependency", &["depends"]),
    field("monitor"),
    field("fallback_timer"),
];
const PACKAGE_FIELDS: &[FieldSpec] = &[
    field_aliased("name", &["package_name"]),
    field_aliased("type", &["package_type"]),
    field_aliased("nodes", &["node_name"]),
    field_aliased("auto_run", &["pkg_switching_enabled"]),
    field("failover_policy"),
    field("failback_policy"),
    field("priority"),
    field("networks"),
    field_aliased("local_lan_failover_allowed", &["net_switching_enabled"]),
    field("requires"),
    field("failure_expiry"),
    field("run_timeout"),
    field("halt_timeout"),
];
const DEPENDENCY_FIELDS: &[FieldSpec] = &[field("package"), field("location"), field("condition")];
const FALLBACK_TIMER_FIELDS: &[FieldSpec] = &[
    field("daily"),
    field("weekly"),
    field("monthly"),
    field("yearly"),
    field("date"),
];
const RESOURCE_FIELDS: &[FieldSpec] = &[
    field("kind"),
    field("name"),
    field("network"),
    field("address"),
    field("addresses"),
    field("command"),
    field_aliased("restart", &["service_restart"]),
    field("restart_window"),
    field_aliased("node_fail_fast", &["service_fail_fast_enabled"]),
    field("halt_timeout"),
    field("run_timeout"),
    field("run"),
    field("halt"),
    field("agent"),
    field("params"),
    field("monitor_interval"),
    field("timeout"),
    field("activate"),
    field("deactivate"),
    field("device"),
    field("mount_point"),
    field("fstype"),
    field("options"),
    field("check"),
];
const MONITOR_FIELDS: &[FieldSpec] = &[
    field("name"),
    field("sample"),
    field("interval"),
    field("predicate"),
    field("rearm"),
    field("event"),
    field("fail_package"),
    field("notify"),
    field("stabilization"),
    field("restart"),
    field("restart_window"),
];

/// The placeholder node list entry meaning every node, in configured order.
pub const ALL_NODES: &str = "*";

fn read_package(
    sink: &mut Sink<'_>,
    root: &DeTable<'_>,
    root_span: Span,
    file: usize,
) -> Option<(Package, PackageOrigin)> {
    let mut top = TableReader::new("", root_span, root, PACKAGE_FILE_FIELDS);
    let (ptable, pspan) = top.table(sink, "package")?;
    let mut p = TableReader::new("package", pspan.clone(), ptable, PACKAGE_FIELDS);
    let mut origin = PackageOrigin {
        file,
        nodes_field: pspan.clone(),
        ..PackageOrigin::default()
    };

    let name = p.require_string(sink, "name", "the package's name, e.g. \"db\"");
    if let Some((_, span)) = &name {
        origin.name = span.clone();
    }
    let package_type = p
        .string(sink, "type")
        .map(|(s, span)| {
            keyword(
                sink,
                "package.type",
                &s,
                span,
                &[
                    ("failover", PackageType::Failover),
                    ("multi_node", PackageType::MultiNode),
                    ("system_multi_node", PackageType::SystemMultiNode),
                ],
            )
        })
        .unwrap_or(Some(PackageType::Failover));
    let errors_before_nodes = sink.diagnostics.len();
    let nodes: Vec<NodeName> = match p.strings(sink, "nodes") {
        Some((items, span)) => {
            origin.nodes_field = span.clone();
            if items.is_empty() {
                sink.error(span, "package.nodes", "the node list is empty")
                    .expected =
                    Some("at least one node name, or [\"*\"] for every node".to_owned());
            }
            origin.nodes = items.iter().map(|(_, s)| s.clone()).collect();
            origin.nodes_invalid = sink.diagnostics.len() > errors_before_nodes;
            items.into_iter().map(|(s, _)| NodeName(s)).collect()
        }
        None => {
            origin.nodes_invalid = true;
            sink.error(pspan.clone(), "package.nodes", "missing in [package]")
                .expected = Some(
                "the ordered node list, e.g. nodes = [\"node1\", \"node2\"], or [\"*\"]".to_owned(),
            );
            Vec::new()
        }
    };
    let auto_run = p.bool(sink, "auto_run").unwrap_or(true);
    let failover_policy = p
        .string(sink, "failover_policy")
        .map(|(s, span)| {
            keyword(
                sink,
                "package.failover_policy",
                &s,
                span,
                &[
                    ("configured_node", FailoverPolicy::ConfiguredNode),
                    ("min_package_node", FailoverPolicy::MinPackageNode),
                ],
            )
        })
        .unwrap_or(Some(FailoverPolicy::ConfiguredNode));
    let failback_policy = p
        .string(sink, "failback_policy")
        .map(|(s, span)| {
            keyword(
                sink,
                "package.failback_policy",
                &s,
                span,
                &[
                    ("manual", FailbackPolicy::Manual),
                    ("automatic", FailbackPolicy::Automatic),
                ],
            )
        })
        .unwrap_or(Some(FailbackPolicy::Manual));
    let priority = p.integer(sink, "priority", 1, 3000).map(|(n, _)| n as u32);
    let networks: Vec<NetworkName> = p
        .strings(sink, "networks")
        .map(|(items, _)| {
            origin.networks = items.iter().map(|(_, s)| s.clone()).collect();
            items.into_iter().map(|(s, _)| NetworkName(s)).collect()
        })
        .unwrap_or_default();
    let local_lan_failover_allowed = p.bool(sink, "local_lan_failover_allowed").unwrap_or(true);
    let requires = p
        .string(sink, "requires")
        .map(|(s, span)| {
            origin.requires = Some(span.clone());
            keyword(
                sink,
                "package.requires",
                &s,
                span,
                &[("lease", Requires::Lease), ("fencing", Requires::Fencing)],
            )
        })
        .unwrap_or(Some(Requires::Lease));
    let failure_expiry = match p.get(sink, "failure_expiry") {
        Some(v) if matches!(v.get_ref(), DeValue::String(s) if s.eq_ignore_ascii_case("never")) => {
            None
        }
        Some(v) => as_duration(sink, "package.failure_expiry", v).map(|(d, _)| d),
        None => Some(DEFAULT_FAILURE_EXPIRY),
    };
    let run_timeout = p.duration(sink, "run_timeout");
    origin.run_timeout = run_timeout.as_ref().map(|(_, s)| s.clone());
    let run_timeout = run_timeout.map_or(DEFAULT_SCRIPT_TIMEOUT, |(d, _)| d);
    let halt_timeout = p.duration(sink, "halt_timeout");
    origin.halt_timeout = halt_timeout.as_ref().map(|(_, s)| s.clone());
    let halt_timeout = halt_timeout.map_or(DEFAULT_SCRIPT_TIMEOUT, |(d, _)| d);
    p.finish(sink);

    let mut dependencies = Vec::new();
    for (i, t, span) in top.tables(sink, "dependency") {
        let dpath = format!("dependency[{i}]");
        let mut d = TableReader::new(dpath.clone(), span, t, DEPENDENCY_FIELDS);
        let package = d.require_string(
            sink,
            "package",
            "the name of the package this one depends on",
        );
        let location = d
            .string(sink, "location")
            .map(|(s, span)| {
                keyword(
                    sink,
                    &format!("{dpath}.location"),
                    &s,
                    span,
                    &[
                        ("same_node", DependencyLocation::SameNode),
                        ("any_node", DependencyLocation::AnyNode),
                        ("different_node", DependencyLocation::DifferentNode),
                    ],
                )
            })
            .unwrap_or(Some(DependencyLocation::SameNode));
        if let Some((condition, span)) = d.string(sink, "condition") {
            keyword(
                sink,
                &format!("{dpath}.condition"),
                &condition,
                span,
                &[("up", ())],
            );
        }
        d.finish(sink);
        if let (Some((package, package_span)), Some(location)) = (package, location) {
            origin.dependencies.push(DependencyOrigin {
                number: i,
                package: package_span,
            });
            dependencies.push(Dependency {
                package: PackageName(package),
                location,
            });
        }
    }

    let fallback_timer = top.table(sink, "fallback_timer").and_then(|(t, span)| {
        origin.fallback_timer = Some(span.clone());
        read_fallback_timer(sink, t, span)
    });

    let mut resources = Vec::new();
    for (i, t, span) in top.tables(sink, "resource") {
        if let Some((r, resource_origin)) =
            read_resource(sink, i, t, span.clone(), run_timeout, halt_timeout)
        {
            origin.resources.push(resource_origin);
            resources.push(r);
        }
    }

    let mut monitors = Vec::new();
    for (i, t, span) in top.tables(sink, "monitor") {
        if let Some(m) = read_monitor(sink, i, t, span) {
            monitors.push(m);
        }
    }
    top.finish(sink);

    // A package with a mistake in a field is still returned (with the field's
    // default) so that cross-file checks know it: otherwise every dependency on it
    // would be reported as undefined. The mistake itself makes the load fail.
    let package = Package {
        name: PackageName(name?.0),
        package_type: package_type.unwrap_or(PackageType::Failover),
        nodes,
        auto_run,
        failover_policy: failover_policy.unwrap_or(FailoverPolicy::ConfiguredNode),
        failback_policy: failback_policy.unwrap_or(FailbackPolicy::Manual),
        fallback_timer,
        priority,
        dependencies,
        networks,
        local_lan_failover_allowed,
        requires: requires.unwrap_or_default(),
        failure_expiry,
        run_timeout,
        halt_timeout,
        resources,
        monitors,
    };
    Some((package, origin))
}

fn read_fallback_timer(
    sink: &mut Sink<'_>,
    table: &DeTable<'_>,
    span: Span,
) -> Option<FallbackTimer> {
    let mut f = TableReader::new("fallback_timer", span.clone(), table, FALLBACK_TIMER_FIELDS);
    let mut found = Vec::new();
    for key in ["daily", "weekly", "monthly", "yearly", "date"] {
        if let Some(value) = f.get(sink, key) {
            found.push((key, value));
        }
    }
    f.finish(sink);
    let expected = "exactly one of daily = \"HH:MM\", weekly = \"sunday HH:MM\", monthly = \"DD HH:MM\", yearly = \"MM-DD HH:MM\", date = \"2026-12-24T02:00:00Z\"";
    if found.len() != 1 {
        sink.error(
            span,
            "fallback_timer",
            format!("{} recurrences given", found.len()),
        )
        .expected = Some(expected.to_owned());
        return None;
    }
    let (key, value) = found[0];
    let path = format!("fallback_timer.{key}");
    let (text, vspan) = match value.get_ref() {
        DeValue::String(s) => (s.to_string(), value.span()),
        DeValue::Datetime(d) => (d.to_string(), value.span()),
        other => {
            wrong_type(sink, &path, value.span(), other, "a string");
            return None;
        }
    };
    match parse_fallback_timer(key, &text) {
        Ok(t) => Some(t),
        Err(problem) => {
            sink.error(vspan, &path, format!("\"{text}\" {problem}"))
                .expected = Some(expected.to_owned());
            None
        }
    }
}

fn parse_hour_minute(text: &str) -> Result<(i8, i8), String> {
    let (h, m) = text.split_once(':').ok_or("has no HH:MM time")?;
    let hour: i8 = h.trim().parse().map_err(|_| "has an invalid hour")?;
    let minute: i8 = m.trim().parse().map_err(|_| "has an invalid minute")?;
    if !(0..24).contains(&hour) {
        return Err("has an hour outside 0..23".into());
    }
    if !(0..60).contains(&minute) {
        return Err("has a minute outside 0..59".into());
    }
    Ok((hour, minute))
}

pub(crate) fn parse_fallback_timer(key: &str, text: &str) -> Result<FallbackTimer, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    match key {
        "daily" => {
            let (hour, minute) = parse_hour_minute(text)?;
            Ok(FallbackTimer::Daily { hour, minute })
        }
        "weekly" => {
            let [day, time] = words[..] else {
                return Err("is not \"DAY HH:MM\"".into());
            };
            const DAYS: [&str; 7] = [
                "monday",
                "tuesday",
                "wednesday",
                "thursday",
                "friday",
                "saturday",
                "sunday",
            ];
            let day_lower = day.to_ascii_lowercase();
            let weekday = DAYS
                .iter()
                .position(|d| d.starts_with(&day_lower) && day_lower.len() >= 3)
                .ok_or("has no valid day of the week")? as i8
                + 1;
            let (hour, minute) = parse_hour_minute(time)?;
            Ok(FallbackTimer::Weekly {
                weekday,
                hour,
                minute,
            })
        }
        "monthly" => {
            let [day, time] = words[..] else {
                return Err("is not \"DD HH:MM\"".into());
            };
            let day: i8 = day.parse().map_err(|_| "has an invalid day of the month")?;
            if !(1..=31).contains(&day) {
                return Err("has a day outside 1..31".into());
            }
            let (hour, minute) = parse_hour_minute(time)?;
            Ok(FallbackTimer::Monthly { day, hour, minute })
        }
        "yearly" => {
            let [date, time] = words[..] else {
                return Err("is not \"MM-DD HH:MM\"".into());
            };
            let (m, d) = date.split_once('-').ok_or("has no MM-DD date")?;
            let month: i8 = m.parse().map_err(|_| "has an invalid month")?;
            let day: i8 = d.parse().map_err(|_| "has an invalid day")?;
            if !(1..=12).contains(&month) {
                return Err("has a month outside 1..12".into());
            }
            jiff::civil::Date::new(2024, month, day).map_err(|_| "is not a day of the year")?;
            let (hour, minute) = parse_hour_minute(time)?;
            Ok(FallbackTimer::Yearly {
                month,
                day,
                hour,
                minute,
            })
        }
        "date" => {
            let at: jiff::Timestamp = text
                .parse()
                .map_err(|e| format!("is not a UTC date-time ({e})"))?;
            Ok(FallbackTimer::Date { at })
        }
        _ => Err("is not a recurrence".into()),
    }
}

fn read_resource(
    sink: &mut Sink<'_>,
    index: usize,
    table: &DeTable<'_>,
    span: Span,
    run_timeout: Duration,
    halt_timeout: Duration,
) -> Option<(Resource, ResourceOrigin)> {
    let path = format!("resource[{index}]");
    let mut r = TableReader::new(path.clone(), span.clone(), table, RESOURCE_FIELDS);
    let mut origin = ResourceOrigin {
        number: index,
        table: span.clone(),
        ..ResourceOrigin::default()
    };
    let Some(kind) = r.require_string(
        sink,
        "kind",
        "one of ip, service, script, ocf, volume, filesystem",
    ) else {
        // The other fields depend on the kind; only report keys that are no
        // resource field at all (e.g. a misspelt `kind`).
        r.finish_unknown_only(sink);
        return None;
    };
    const KINDS: &[(&str, u8)] = &[
        ("ip", 0),
        ("service", 1),
        ("script", 2),
        ("ocf", 3),
        ("volume", 4),
        ("filesystem", 5),
    ];
    let Some(kind) = keyword(sink, &format!("{path}.kind"), &kind.0, kind.1, KINDS) else {
        // The kind is wrong, not the other fields.
        r.finish_unknown_only(sink);
        return None;
    };
    let default_name = format!("{}{index}", KINDS[kind as usize].0);
    // The fields each kind accepts; others are reported as not belonging here.
    let allowed: &[&str] = match kind {
        0 => &["kind", "network", "address", "addresses"],
        1 => &[
            "kind",
            "name",
            "command",
            "restart",
            "restart_window",
            "node_fail_fast",
            "halt_timeout",
        ],
        2 => &[
            "kind",
            "name",
            "run",
            "halt",
            "run_timeout",
            "halt_timeout",
            "timeout",
        ],
        3 => &[
            "kind",
            "agent",
            "params",
            "monitor_interval",
            "timeout",
            "restart",
            "restart_window",
        ],
        4 => &["kind", "name", "activate", "deactivate", "timeout"],
        _ => &[
            "kind",
            "device",
            "mount_point",
            "fstype",
            "options",
            "check",
            "timeout",
        ],
    };
    for f in RESOURCE_FIELDS
        .iter()
        .filter(|f| !allowed.contains(&f.name))
    {
        if let Some(v) = r.get(sink, f.name) {
            sink.error(
                v.span(),
                &r.field_path(f.name),
                format!("does not apply to a {} resource", KINDS[kind as usize].0),
            )
            .hint = Some(format!(
                "fields of a {} resource: {}",
                KINDS[kind as usize].0,
                allowed.join(", ")
            ));
        }
    }
    // The timeouts written in this table (not those that do not apply to its kind).
    let mut explicit = |field: &'static str| {
        if !allowed.contains(&field) {
            return None;
        }
        r.duration(sink, field).map(|(d, span)| {
            origin.timeouts.push((field, span));
            d
        })
    };
    let timeout = explicit("timeout");
    let run_timeout_field = explicit("run_timeout");
    let halt_timeout_field = explicit("halt_timeout");
    // The fields of each kind; `?` on a missing one leaves this closure, not the
    // function, so that `finish` below still reports unknown (e.g. misspelt) keys.
    let read_kind = || -> Option<Resource> {
        Some(match kind {
            0 => {
                let network = r.require_string(
                    sink,
                    "network",
                    "the name of the [[network]] the address lives on",
                );
                let mut addresses = Vec::new();
                let mut ip = IpOrigin::default();
                let errors_before = sink.diagnostics.len();
                let single = r.string(sink, "address");
                let many = r.strings(sink, "addresses");
                match (&single, &many) {
                    (Some((text, span)), None) => {
                        if let Some(a) =
                            parse_cidr(sink, &format!("{path}.address"), text, span.clone(), false)
                        {
                            addresses.push(a);
                            ip.addresses.push(("address".to_owned(), span.clone()));
                        }
                    }
                    (None, Some((items, list_span))) => {
                        if items.is_empty() {
                            sink.error(
                                list_span.clone(),
                                &format!("{path}.addresses"),
                                "the address list is empty",
                            )
                            .expected = Some(
                                "one address with prefix per subnet, e.g. [\"198.18.1.50/24\"]"
                                    .to_owned(),
                            );
                        }
                        for (i, (text, span)) in items.iter().enumerate() {
                            let field = format!("addresses[{}]", i + 1);
                            if let Some(a) = parse_cidr(
                                sink,
                                &format!("{path}.{field}"),
                                text,
                                span.clone(),
                                false,
                            ) {
                                addresses.push(a);
                                ip.addresses.push((field, span.clone()));
                            }
                        }
                    }
                    (Some((_, span)), Some(_)) => {
                        sink.error(
                            span.clone(),
                            &format!("{path}.address"),
                            "both address and addresses are given",
                        )
                        .hint = Some(
                            "use addresses = [...] for one address per subnet, or address for one"
                                .to_owned(),
                        );
                    }
                    (None, None) => {
                        sink.error(
                            span,
                            &format!("{path}.address"),
                            "missing in an ip resource",
                        )
                        .expected = Some(
                            "an address with prefix, e.g. address = \"198.18.1.50/24\"".to_owned(),
                        );
                    }
                }
                let (network, network_span) = network?;
                ip.network = network_span;
                ip.addresses_invalid = sink.diagnostics.len() > errors_before;
                origin.ip = Some(ip);
                Resource::Ip(IpResource {
                    network: NetworkName(network),
                    addresses,
                })
            }
            1 => {
                let name = r.string(sink, "name").map_or(default_name, |(s, _)| s);
                let command = r.require_string(
                    sink,
                    "command",
                    "the command line that runs the service in the foreground",
                );
                let restart = r
                    .integer(sink, "restart", 0, i64::from(limits::SERVICE_RESTART_MAX))
                    .map_or(0, |(n, _)| n as u32);
                let restart_window = r.duration(sink, "restart_window").map(|(d, _)| d);
                let node_fail_fast = r.bool(sink, "node_fail_fast").unwrap_or(false);
                Resource::Service(ServiceResource {
                    name,
                    command: command?.0,
                    restart,
                    restart_window,
                    node_fail_fast,
                    halt_timeout: halt_timeout_field.unwrap_or(DEFAULT_SERVICE_HALT_TIMEOUT),
                })
            }
            2 => {
                let name = r.string(sink, "name").map_or(default_name, |(s, _)| s);
                let run = r.require_string(
                    sink,
                    "run",
                    "the command that starts the package's part (customer_defined_run_cmds)",
                );
                let halt = r.require_string(
                    sink,
                    "halt",
                    "the command that stops it (customer_defined_halt_cmds)",
                );
                let run_timeout = run_timeout_field.or(timeout).unwrap_or(run_timeout);
                let halt_timeout = halt_timeout_field.or(timeout).unwrap_or(halt_timeout);
                Resource::Script(ScriptResource {
                    name,
                    run: run?.0,
                    halt: halt?.0,
                    run_timeout,
                    halt_timeout,
                })
            }
            3 => {
                let agent =
                    r.require_string(sink, "agent", "provider:type, e.g. \"heartbeat:Dummy\"");
                if let Some((text, span)) = &agent {
                    let parts: Vec<&str> = text.trim_start_matches("ocf:").split(':').collect();
                    if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
                        sink.error(
                            span.clone(),
                            &format!("{path}.agent"),
                            format!("\"{text}\" is not provider:type"),
                        )
                        .expected = Some("e.g. \"heartbeat:IPaddr2\"".to_owned());
                    }
                }
                let params: BTreeMap<String, String> =
                    r.string_map(sink, "params").into_iter().collect();
                if let (Some(checks), Some((text, span))) = (sink.checks, &agent) {
                    let agent = text.trim_start_matches("ocf:");
                    for e in checks.ocf_params(agent, &params) {
                        sink.value_error(span.clone(), &format!("{path}.params"), e);
                    }
                }
                let monitor_interval = r
                    .duration(sink, "monitor_interval")
                    .map_or(Duration::from_secs(10), |(d, _)| d);
                let restart = r
                    .integer(sink, "restart", 0, i64::from(limits::SERVICE_RESTART_MAX))
                    .map_or(DEFAULT_OCF_RESTART, |(n, _)| n as u32);
                let restart_window = r.duration(sink, "restart_window").map(|(d, _)| d);
                Resource::Ocf(OcfResource {
                    agent: agent?.0.trim_start_matches("ocf:").to_owned(),
                    params,
                    monitor_interval,
                    timeout: timeout.unwrap_or(Duration::from_secs(20)),
                    restart,
                    restart_window,
                })
            }
            4 => {
                let name = r.string(sink, "name").map_or(default_name, |(s, _)| s);
                let activate =
                    r.require_string(sink, "activate", "the command that activates the volume");
                let deactivate = r.require_string(
                    sink,
                    "deactivate",
                    "the command that deactivates the volume",
                );
                Resource::Volume(VolumeResource {
                    name,
                    activate: activate?.0,
                    deactivate: deactivate?.0,
                    timeout: timeout.unwrap_or(Duration::from_secs(60)),
                })
            }
            _ => {
                let device = r.require_string(sink, "device", "the block device or image to mount");
                let mount_point =
                    r.require_string(sink, "mount_point", "an absolute directory path");
                if let Some((mp, span)) = &mount_point
                    && !mp.starts_with('/')
                {
                    sink.error(
                        span.clone(),
                        &format!("{path}.mount_point"),
                        format!("\"{mp}\" is not an absolute path"),
                    )
                    .expected = Some("an absolute directory path such as \"/srv/data\"".to_owned());
                }
                let fstype =
                    r.require_string(sink, "fstype", "the file system type, e.g. \"ext4\"");
                let options = r.string(sink, "options").map(|(s, _)| s);
                let check = r.string(sink, "check").map(|(s, _)| s);
                Resource::Filesystem(FilesystemResource {
                    device: device?.0,
                    mount_point: mount_point?.0,
                    fstype: fstype?.0,
                    options,
                    check,
                    timeout: timeout.unwrap_or(Duration::from_secs(120)),
                })
            }
        })
    };
    let resource = read_kind();
    r.finish(sink);
    Some((resource?, origin))
}

fn read_monitor(
    sink: &mut Sink<'_>,
    index: usize,
    table: &DeTable<'_>,
    span: Span,
) -> Option<Monitor> {
    let path = format!("monitor[{index}]");
    let mut m = TableReader::new(path.clone(), span.clone(), table, MONITOR_FIELDS);
    let name = m
        .string(sink, "name")
        .map_or(format!("monitor{index}"), |(s, _)| s);
    let sample = m.require_string(
        sink,
        "sample",
        "a command printing a number or record, or builtin:NAME",
    );
    let interval = m
        .duration(sink, "interval")
        .map_or(Duration::from_secs(10), |(d, _)| d);
    let predicate = m.require_string(sink, "predicate", "an expression such as \"X > 90\"");
    let rearm = m.string(sink, "rearm");
    if let Some(checks) = sink.checks {
        if let Some((text, span)) = &sample
            && let Err(e) = checks.sampler(text)
        {
            sink.value_error(span.clone(), &format!("{path}.sample"), e);
        }
        for (field, value) in [("predicate", &predicate), ("rearm", &rearm)] {
            if let Some((text, span)) = value
                && let Err(e) = checks.predicate(text)
            {
                sink.value_error(span.clone(), &format!("{path}.{field}"), e);
            }
        }
    }
    let rearm = rearm.map(|(s, _)| s);
    let stabilization = m
        .duration(sink, "stabilization")
        .map_or(Duration::ZERO, |(d, _)| d);
    let restart = m.integer(sink, "restart", 0, i64::from(limits::SERVICE_RESTART_MAX));
    let restart_window = m.duration(sink, "restart_window");
    let event = m.string(sink, "event");
    let fail_package = m
        .get(sink, "fail_package")
        .map(|v| v.span())
        .filter(|_| m.bool(sink, "fail_package").unwrap_or(false));
    let notify = m.string(sink, "notify");
    m.finish(sink);
    let action = monitor_action(sink, &path, span, event, fail_package, notify)?;
    if !restarts_allowed(sink, &path, &action, &restart, &restart_window) {
        return None;
    }
    Some(Monitor {
        name,
        sample: sample?.0,
        interval,
        predicate: predicate?.0,
        rearm,
        action,
        stabilization,
        restart: restart.map_or(0, |(n, _)| n as u32),
        restart_window: restart_window.map(|(d, _)| d),
    })
}

/// A monitor's one action among `event`, `fail_package` and `notify`; none, two, or an
/// empty command is a precise error.
fn monitor_action(
    sink: &mut Sink<'_>,
    path: &str,
    span: Span,
    event: Option<(String, Span)>,
    fail_package: Option<Span>,
    notify: Option<(String, Span)>,
) -> Option<MonitorAction> {
    let mut actions = Vec::new();
    if let Some((e, espan)) = event {
        actions.push(("event", espan, MonitorAction::Event(e)));
    }
    if let Some(fspan) = fail_package {
        actions.push(("fail_package", fspan, MonitorAction::FailPackage));
    }
    if let Some((command, nspan)) = notify {
        if command.trim().is_empty() {
            sink.error(
                nspan,
                &format!("{path}.notify"),
                "the notify command is empty",
            )
            .expected = Some("a shell command".to_owned());
            return None;
        }
        actions.push(("notify", nspan, MonitorAction::Notify(command)));
    }
    match actions.len() {
        0 => {
            sink.error(
                span,
                &format!("{path}.event"),
                "the monitor does nothing when it fires",
            )
            .expected =
                Some("event = \"NAME\", fail_package = true or notify = \"COMMAND\"".to_owned());
            None
        }
        1 => Some(actions.remove(0).2),
        _ => {
            let names: Vec<&str> = actions.iter().map(|(n, _, _)| *n).collect();
            let (field, second, _) = actions.remove(1);
            sink.error(
                second,
                &format!("{path}.{field}"),
                format!("{} are given together", names.join(" and ")),
            )
            .hint = Some(
                "a monitor fires an event, fails its package, or only notifies: one of them"
                    .to_owned(),
            );
            None
        }
    }
}

/// `restart` and `restart_window` apply to a monitor that fails its package only: false
/// (with the error) when one is given for another action.
fn restarts_allowed(
    sink: &mut Sink<'_>,
    path: &str,
    action: &MonitorAction,
    restart: &Option<(i64, Span)>,
    restart_window: &Option<(Duration, Span)>,
) -> bool {
    if *action != MonitorAction::FailPackage {
        for (field, span) in [
            ("restart", restart.as_ref().map(|(_, s)| s.clone())),
            (
                "restart_window",
                restart_window.as_ref().map(|(_, s)| s.clone()),
            ),
        ] {
            if let Some(span) = span {
                sink.error(
                    span,
                    &format!("{path}.{field}"),
                    "restarts apply to a monitor that fails its package",
                )
                .hint = Some(
                    "add fail_package = true, or remove the field: an event or a notification \
                     restarts nothing"
                        .to_owned(),
                );
                return false;
            }
        }
    }
    true
}
