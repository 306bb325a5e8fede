//! The live commands' output for people: `halcyon status`, `halcyon events`, and the
//! answers of operations. Pure functions of `halcyon-api` types and a [`Clock`] (no I/O):
//! times are local `HH:MM:SS` with how long ago, tables size their columns to what they
//! hold. `--json` prints the records themselves (RFC 3339 times).

use std::fmt::Write as _;

use halcyon_api::{
    EventRecord, ExcludedView, ExecutionState, ExecutionStatus, NodeStatus, OperationResponse,
    PackageStatus, StatusResponse,
};
use halcyon_config::{Config, DependencyLocation, Package, Resource};
use halcyon_state::ActionRecord;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

/// How serde names a value (`done_with_failures`, `run`); `-` when it is not a string.
fn name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "-".to_owned(),
    }
}

/// A value as compact JSON (`null` for none).
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// The time output is read at, and the reader's time zone: times print as local `HH:MM:SS`
/// (with the date when not today) and as "3 min ago".
#[derive(Clone, Debug)]
pub struct Clock {
    pub now: Timestamp,
    pub zone: TimeZone,
}

impl Clock {
    /// Now, in the system's time zone (`TZ`, `/etc/localtime`).
    pub fn system() -> Clock {
        Clock {
            now: Timestamp::now(),
            zone: TimeZone::system(),
        }
    }

    /// `16:02:11`, or `2026-12-03 16:02:11` when `at` is not on today's local date.
    pub fn time(&self, at: Timestamp) -> String {
        let local = at.to_zoned_datetime(self.zone.clone());
        let today = self.now.to_zoned_datetime(self.zone.clone()).date();
        if local.date() == today {
            local.strftime("%H:%M:%S").to_string()
        } else {
            local.strftime("%Y-%m-%d %H:%M:%S").to_string()
        }
    }

    /// A text the cluster wrote with RFC 3339 times (a plan with its reasons, a refusal, a
    /// note), each of them as [`Clock::time`] writes it.
    pub fn times_in(&self, text: &str) -> String {
        halcyon_policy::times_as(text, &|t| self.time(t))
    }

    /// `16:02:11 (3 min ago)`.
    pub fn when(&self, at: Timestamp) -> String {
        format!("{} ({})", self.time(at), ago(at, self.now))
    }
}

/// What status says of a node's credentials: nothing while they are plain (one CA, one
/// heartbeat key, no reload refused, the certificate valid for more than
/// [`CERTIFICATE_WARNING_DAYS`]).
fn credentials_lines(
    out: &mut String,
    node: &str,
    c: &halcyon_api::CredentialsState,
    clock: &Clock,
) {
    let loaded = format!(
        "loaded {}{}",
        clock.when(c.loaded_at),
        match c.reloads {
            0 => " at start".to_owned(),
            n => format!(", reload {n}"),
        }
    );
    if c.trusted_cas > 1 || c.heartbeat_keys > 1 {
        let _ = writeln!(
            out,
            "  credentials of {node}: rollover under way ({} CAs trusted, {} heartbeat keys; {loaded})",
            c.trusted_cas, c.heartbeat_keys
        );
    } else if c.reloads > 0 {
        let _ = writeln!(out, "  credentials of {node}: {loaded}");
    }
    if let Some(r) = &c.refused_reload {
        let _ = writeln!(
            out,
            "  WARNING on {node}: a reload of its credentials was refused at {}: {} (the \
             credentials {loaded} stay in use)",
            clock.time(r.at),
            r.why
        );
    }
    let left_days = (c.certificate_expires.as_second() - clock.now.as_second()) / 86_400;
    if left_days < CERTIFICATE_WARNING_DAYS {
        let _ = writeln!(
            out,
            "  WARNING on {node}: its certificate expires {} (`halcyon init node {node} --force`, \
             copy nodes/{node}/ to it, `systemctl reload halcyon`)",
            clock.time(c.certificate_expires)
        );
    }
}

/// A node certificate expiring sooner than this is named by status.
const CERTIFICATE_WARNING_DAYS: i64 = 30;

/// How long before `now` `at` was: `just now`, `12 s ago`, `3 min ago`, `5 h ago`,
/// `2 d ago`; a time after `now` is `in 3 min`. Rounded down to the unit.
pub fn ago(at: Timestamp, now: Timestamp) -> String {
    let milliseconds = now.as_millisecond() - at.as_millisecond();
    let seconds = milliseconds.abs() / 1000;
    if seconds == 0 {
        return "just now".to_owned();
    }
    let span = if seconds < 60 {
        format!("{seconds} s")
    } else if seconds < 3600 {
        format!("{} min", seconds / 60)
    } else if seconds < 86_400 {
        format!("{} h", seconds / 3600)
    } else {
        format!("{} d", seconds / 86_400)
    };
    if milliseconds > 0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

/// How long from `start` to `end`: `0.352 s` below ten seconds, then `12 s`, `3 min 5 s`.
pub fn took(start: Timestamp, end: Timestamp) -> String {
    let milliseconds = (end.as_millisecond() - start.as_millisecond()).max(0);
    if milliseconds < 10_000 {
        format!("{:.3} s", milliseconds as f64 / 1000.0)
    } else if milliseconds < 60_000 {
        format!("{} s", milliseconds / 1000)
    } else {
        format!(
            "{} min {} s",
            milliseconds / 60_000,
            milliseconds / 1000 % 60
        )
    }
}

/// Rows as columns two spaces apart, each as wide as its widest cell (the last one not
/// padded), every line starting with `indent`: columns stay aligned whatever the cells hold
/// (event ids past 9, 99, 999; long node names).
pub fn table(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = indent.to_owned();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn cells(row: &[&str]) -> Vec<String> {
    row.iter().map(|c| (*c).to_owned()).collect()
}

/// `halcyon status` for people; `detail`: the running configuration, for `status -v`
/// (each package's resources, dependencies and nodes, the failures with their expiry).
pub fn status(v: &StatusResponse, clock: &Clock, detail: Option<&Config>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "CLUSTER {}   configuration generation {}   coordinator {}   quorum {}   (answered by {} at {})",
        v.cluster,
        v.generation,
        or_dash(v.coordinator.as_ref()),
        if v.quorum.has_quorum { "yes" } else { "NO" },
        v.answered_by,
        clock.time(clock.now),
    );
    if let Some(r) = &v.reconfiguration {
        let _ = writeln!(
            out,
            "  reconfiguration in progress: generation {} applied by {} at {} (event sequence {})",
            r.generation,
            r.by,
            clock.when(r.since),
            r.sequence
        );
    }
    if v.halted {
        let _ = writeln!(
            out,
            "  the cluster is HALTED: daemons run idle (`halcyon cluster start` starts it)"
        );
    }
    if let Some(d) = &v.quorum.detail {
        let _ = writeln!(out, "  {d}");
    }
    let _ = writeln!(out, "  voters: {}", v.quorum.voters.join(", "));
    if !v.detection.is_empty() {
        let networks: Vec<String> = v
            .detection
            .iter()
            .map(|d| {
                format!(
                    "{} {}ms ({}ms x {})",
                    d.network, d.detection_ms, d.interval_ms, d.sensitivity
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "  failure detection on {}: {}",
            v.answered_by,
            networks.join(", ")
        );
    }
    if v.quorum.foreign_requests > 0 {
        let _ = writeln!(
            out,
            "  {} dropped {} Raft requests of another cluster: a node elsewhere names its \
             address (its log says from where)",
            v.answered_by, v.quorum.foreign_requests
        );
    }
    if !v.config_drift.is_empty() {
        let _ = writeln!(
            out,
            "  configuration files on {} differ from the running generation {} (`halcyon apply DIR` \
             changes the cluster; until then it runs its own):",
            v.answered_by, v.generation
        );
        for line in &v.config_drift {
            let _ = writeln!(out, "    {line}");
        }
    }
    let auth = &v.heartbeat_auth;
    if !auth.authenticated {
        let _ = writeln!(
            out,
            "  heartbeats of {} are NOT authenticated (no credentials: `halcyon init`)",
            v.answered_by
        );
    } else if auth.forged + auth.replayed + auth.other_cluster + auth.malformed > 0 {
        let _ = writeln!(
            out,
            "  heartbeats of {} are authenticated; refused: {} forged, {} replayed, {} of another cluster, {} malformed",
            v.answered_by, auth.forged, auth.replayed, auth.other_cluster, auth.malformed
        );
    }
    let api = &v.api_auth;
    if !api.enforced {
        let _ = writeln!(
            out,
            "  the API and node requests of {} are NOT authenticated (--insecure): anyone who \
             reaches its ports can operate the cluster",
            v.answered_by
        );
    } else if api.unauthenticated
        + api.forbidden
        + api.nodes
        + api.raft_refused
        + api.api_tls_refused
        > 0
    {
        let _ = writeln!(
            out,
            "  the API of {} requires tokens; refused: {} without a valid token, {} for their \
             role, {} node requests without a valid node signature, {} Raft connections \
             without a node certificate, {} API connections at TLS",
            v.answered_by,
            api.unauthenticated,
            api.forbidden,
            api.nodes,
            api.raft_refused,
            api.api_tls_refused
        );
    }
    if let Some(c) = &api.credentials {
        credentials_lines(&mut out, &v.answered_by, c, clock);
    }
    if v.watchdog != "not configured" {
        let _ = writeln!(out, "  watchdog on {}: {}", v.answered_by, v.watchdog);
    }
    if let Some(warning) = &v.lease.warning {
        let _ = writeln!(out, "  WARNING on {}: {warning}", v.answered_by);
    }
    if let Some(longer) = v.lease.unsettled_ms {
        let _ = writeln!(
            out,
            "  lease {} ms since configuration generation {}; {longer} ms leases granted before \
             may still run: a coordinator waits them out until they have certainly ended",
            v.lease.duration_ms, v.generation
        );
    }
    if let Some(slow) = &v.lease.slow_elections {
        let _ = writeln!(
            out,
            "  Raft timings: {} may still run those of a {} ms heartbeat, not the running \
             {} ms (fixed when a daemon starts): the lease ({} ms) covers their slower \
             elections until their daemons restart",
            slow.nodes.join(", "),
            slow.interval_ms,
            slow.running_interval_ms,
            v.lease.duration_ms
        );
    }
    if let Some(w) = &v.witness {
        let _ = writeln!(
            out,
            "  witness {} at {}: {}{}",
            w.name,
            w.address,
            if w.reachable {
                "reachable"
            } else {
                "UNREACHABLE"
            },
            match (w.voter, w.joining) {
                (true, _) => ", voter",
                (false, true) =>
                    ", not a voter yet: joining (added by halcyon apply; it becomes one once it answers)",
                (false, false) => ", not a voter",
            },
        );
        if let Some(why) = &w.held {
            let _ = writeln!(
                out,
                "    HOLDS ITS VOTE (counts for no quorum until the cluster forgot its old \
                 store and it copied the log): {why}"
            );
        }
    }
    out.push('\n');
    let mut rows = vec![cells(&[
        "NODE",
        "MEMBER",
        "REACHABLE",
        "INCARNATION",
        &format!("NETWORKS (path from {})", v.answered_by),
    ])];
    rows.extend(v.nodes.iter().map(node_row));
    out.push_str(&table(&rows, ""));
    for n in &v.nodes {
        if let Some(f) = n.fence.as_ref().filter(|f| f.current) {
            let how = if f.confirmed {
                "fenced"
            } else {
                "FENCE FAILED"
            };
            let _ = writeln!(
                out,
                "  {}: {how} ({}) {} by {}: {}",
                n.name,
                f.action,
                clock.when(f.at),
                f.by,
                f.summary
            );
        }
        if let Some(x) = &n.excluded {
            let _ = writeln!(out, "  {}", excluded_line(n.name.as_str(), x, clock));
        }
        if n.joining {
            let _ = writeln!(
                out,
                "  {}: joining (added by halcyon apply): it becomes a voter once its daemon's \
                 heartbeats are heard",
                n.name
            );
        }
    }
    out.push('\n');
    if !v.quorum.has_quorum {
        // Without a quorum this node cannot know where packages run now.
        let _ = writeln!(
            out,
            "(no quorum: the last known placements as {} applied them, not confirmed)",
            v.answered_by
        );
    }
    out.push_str(&packages(v, clock, detail));
    if let Some(e) = &v.execution {
        out.push_str(&execution(e, clock));
    }
    let _ = writeln!(out, "\nLAST EVENTS");
    let rows: Vec<Vec<String>> = v
        .events
        .iter()
        .map(|e| {
            let mut row = vec![
                format!("#{}", e.id),
                e.event.clone(),
                name(&e.outcome),
                e.finished_at.map_or_else(
                    || {
                        format!(
                            "started {}",
                            e.started_at.map_or("-".into(), |t| clock.when(t))
                        )
                    },
                    |t| clock.when(t),
                ),
            ];
            if let Some(error) = &e.error {
                row.push(clock.times_in(error));
            }
            row
        })
        .collect();
    out.push_str(&table(&rows, "  "));
    out
}

/// Why a node is excluded, since when, and what brings it back: its daemon's restart (a new
/// incarnation; `halcyon node start` is refused for it, the old process may still be stuck).
fn excluded_line(node: &str, x: &ExcludedView, clock: &Clock) -> String {
    format!(
        "{node}: EXCLUDED since {} (event #{}, incarnation {}): {}; it joins again when its \
         daemon restarts (`systemctl restart halcyon` on {node})",
        clock.when(x.since),
        x.event,
        x.incarnation,
        clock.times_in(&x.why),
    )
}

fn node_row(n: &NodeStatus) -> Vec<String> {
    let networks: Vec<String> = n
        .networks
        .iter()
        .map(|net| {
            let mut text = format!("{}:{}", net.network, name(&net.path));
            if net.down {
                text.push_str("(DOWN)");
            } else if net.adapter_down {
                text.push_str("(adapter?)");
            }
            text
        })
        .collect();
    let member = if n.excluded.is_some() {
        "EXCLUDED"
    } else if n.member {
        "yes"
    } else if n.halted_by_admin {
        "halted"
    } else {
        "no"
    };
    vec![
        n.name.to_string(),
        member.to_owned(),
        name(&n.reachable),
        json(&n.incarnation),
        networks.join(" "),
    ]
}

/// Restart counters as `NODE:SERVICE=COUNT ...` (`-` when none).
fn restarts(p: &PackageStatus) -> String {
    let mut parts = Vec::new();
    for (node, services) in p.restarts.iter().flatten() {
        for (service, counter) in services {
            parts.push(format!("{node}:{service}={}", counter.count));
        }
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

/// The package table: one row per package, and under it its failures; with `detail` (the
/// running configuration) its resources, dependencies and nodes as well.
fn packages(v: &StatusResponse, clock: &Clock, detail: Option<&Config>) -> String {
    let confirmed = v.quorum.has_quorum;
    let row = |p: &PackageStatus| {
        let nodes: Vec<&str> = p.nodes.iter().map(|n| n.as_str()).collect();
        vec![
            p.name.to_string(),
            if confirmed {
                p.status.clone()
            } else {
                format!("{} (last known)", p.status)
            },
            if nodes.is_empty() {
                "-".into()
            } else {
                nodes.join(",")
            },
            if p.switching { "enabled" } else { "disabled" }.to_owned(),
            restarts(p),
        ]
    };
    let mut rows = vec![cells(&[
        "PACKAGE",
        "STATUS",
        "NODE",
        "SWITCHING",
        "RESTARTS",
    ])];
    rows.extend(v.packages.iter().map(row));
    // Each package's row, then what belongs under it: the table is laid out once, with
    // every row, so the columns line up across packages.
    let laid_out = table(&rows, "");
    let mut lines = laid_out.lines();
    let mut out = String::new();
    if let Some(header) = lines.next() {
        let _ = writeln!(out, "{header}");
    }
    for (p, line) in v.packages.iter().zip(lines) {
        let _ = writeln!(out, "{line}");
        let package = detail.and_then(|c| c.packages.get(p.name.as_str()));
        match package {
            Some(package) => out.push_str(&package_detail(p, package, v, clock)),
            None => {
                for (node, at) in &p.failures {
                    let _ = writeln!(
                        out,
                        "  failed on {node} at {}: excluded there (`halcyon package clear {} -n {node}`)",
                        clock.when(*at),
                        p.name
                    );
                }
            }
        }
        if let Some(error) = &p.error {
            let _ = writeln!(out, "  error: {}", clock.times_in(error));
        }
    }
    out
}

/// `status -v` under a package (as Serviceguard's `cmviewcl -v`): its resources in start
/// order with their restart limits and counts, its dependencies and whether they hold now,
/// and its nodes in order with where it runs and where it failed, until when.
fn package_detail(
    p: &PackageStatus,
    package: &Package,
    v: &StatusResponse,
    clock: &Clock,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "  resources (start order):");
    let mut rows = Vec::new();
    for resource in &package.resources {
        let mut row = vec![resource.describe(), resource_detail(resource)];
        if let Some((allowed, _)) = resource.restarts() {
            let key = resource.restart_key();
            let counts: Vec<String> = p
                .restarts
                .iter()
                .flatten()
                .filter_map(|(node, services)| {
                    services.get(&key).map(|c| format!("{node}:{}", c.count))
                })
                .collect();
            row.push(format!(
                "restarts {} of {allowed}",
                if counts.is_empty() {
                    "0".to_owned()
                } else {
                    counts.join(" ")
                }
            ));
        }
        rows.push(row);
    }
    if rows.is_empty() {
        rows.push(cells(&["(none)"]));
    }
    out.push_str(&table(&rows, "    "));
    if !package.dependencies.is_empty() {
        let _ = writeln!(out, "  dependencies:");
        let rows: Vec<Vec<String>> = package
            .dependencies
            .iter()
            .map(|d| {
                let dependee = v.packages.iter().find(|q| q.name == d.package);
                vec![
                    d.package.to_string(),
                    d.location.to_string(),
                    dependency_state(p, d.location, dependee),
                ]
            })
            .collect();
        out.push_str(&table(&rows, "    "));
    }
    let _ = writeln!(out, "  nodes (in order):");
    let rows: Vec<Vec<String>> = package
        .nodes
        .iter()
        .enumerate()
        .map(|(rank, node)| {
            let mut row = vec![
                node.to_string(),
                if rank == 0 { "primary" } else { "alternate" }.to_owned(),
                if p.nodes.contains(node) {
                    "current".to_owned()
                } else {
                    "-".to_owned()
                },
            ];
            if let Some(&at) = p.failures.get(node) {
                row.push(failure(p, node.as_str(), at, package, clock));
            }
            row
        })
        .collect();
    out.push_str(&table(&rows, "    "));
    out
}

/// A failure on a node and how long it excludes the node: until cleared, until its expiry,
/// or no longer (expired).
fn failure(
    p: &PackageStatus,
    node: &str,
    at: Timestamp,
    package: &Package,
    clock: &Clock,
) -> String {
    let failed = format!("failed on {node} at {}", clock.when(at));
    let clear = format!("`halcyon package clear {} -n {node}`", p.name);
    let expiry = package.failure_expiry.and_then(|d| {
        jiff::SignedDuration::try_from(d)
            .ok()
            .and_then(|d| at.checked_add(d).ok())
    });
    match expiry {
        None => format!("{failed}: excluded there until cleared ({clear})"),
        Some(until) if until > clock.now => {
            format!(
                "{failed}: excluded there until {} (or {clear})",
                clock.when(until)
            )
        }
        Some(until) => format!(
            "{failed}: expired at {}, no longer excluded",
            clock.time(until)
        ),
    }
}

/// What a resource is beyond its short name: the network of an address, a service's
/// command, an OCF agent's parameters, a file system's device.
fn resource_detail(resource: &Resource) -> String {
    match resource {
        Resource::Ip(ip) => format!("on {}", ip.network),
        Resource::Service(s) => s.command.clone(),
        Resource::Script(s) => format!("run {}; halt {}", s.run, s.halt),
        Resource::Ocf(o) => o
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        Resource::Volume(v) => format!("activate {}", v.activate),
        Resource::Filesystem(f) => format!("{} ({})", f.device, f.fstype),
    }
}

/// Whether a dependency holds now: the dependee is up where `location` requires.
fn dependency_state(
    p: &PackageStatus,
    location: DependencyLocation,
    dependee: Option<&PackageStatus>,
) -> String {
    let Some(dependee) = dependee else {
        return "unknown package".to_owned();
    };
    let up = dependee.status == "up";
    let on: Vec<&str> = dependee.nodes.iter().map(|n| n.as_str()).collect();
    let holds = up
        && match location {
            DependencyLocation::SameNode => p.nodes.iter().all(|n| dependee.nodes.contains(n)),
            DependencyLocation::AnyNode => !dependee.nodes.is_empty(),
            DependencyLocation::DifferentNode => {
                !dependee.nodes.is_empty() && p.nodes.iter().all(|n| !dependee.nodes.contains(n))
            }
        };
    let where_ = if on.is_empty() {
        String::new()
    } else {
        format!(" on {}", on.join(","))
    };
    format!(
        "{} ({} {}{where_})",
        if holds { "satisfied" } else { "NOT satisfied" },
        dependee.name,
        dependee.status
    )
}

fn execution(e: &ExecutionStatus, clock: &Clock) -> String {
    let mut out = String::new();
    let error = e.state == ExecutionState::Error;
    let _ = writeln!(
        out,
        "\n{}: #{} {} (started {}, segment {} of {}, last barrier passed: {})",
        if error { "EVENT IN ERROR" } else { "RUNNING" },
        e.id,
        e.event,
        clock.when(e.started_at),
        json(&e.segment),
        e.segments,
        e.last_completed_barrier
            .map_or("none".to_owned(), |b| b.to_string()),
    );
    for f in &e.failures {
        let _ = writeln!(
            out,
            "  FAILED on {}: \"{}\" exited {} (expected {}), attempts {}",
            f.node,
            f.command,
            f.status,
            json(&f.expected),
            f.attempts,
        );
        for line in f.output_tail.lines() {
            let _ = writeln!(out, "    > {line}");
        }
    }
    if error {
        let _ = writeln!(
            out,
            "  answer with `halcyon event resume|retry|skip {}`",
            e.id
        );
    }
    for l in &e.running {
        let _ = writeln!(
            out,
            "  running on {}: {}",
            l.node.as_ref().map_or("coordinator", |n| n.as_str()),
            l.command,
        );
    }
    out
}

/// What a built-in command that had nothing to do on its node answers.
const NOTHING_TO_DO: &str = "nothing to do on this node";

/// One event-log record for people (`halcyon events`); `verbose`: also the built-in commands
/// that had nothing to do on their node (otherwise counted in one line).
pub fn event(r: &EventRecord, verbose: bool, clock: &Clock) -> String {
    let mut out = String::new();
    let mut times = format!("queued {}", clock.when(r.queued_at));
    if let Some(started) = r.started_at {
        let _ = write!(times, "  started {}", clock.time(started));
        if let Some(finished) = r.finished_at {
            let _ = write!(
                times,
                "  finished {} (took {})",
                clock.time(finished),
                took(started, finished)
            );
        }
    } else if let Some(finished) = r.finished_at {
        let _ = write!(times, "  finished {}", clock.time(finished));
    }
    let _ = writeln!(
        out,
        "#{} {}  [{}]  by {}  {times}",
        r.id,
        r.event,
        name(&r.outcome).to_uppercase(),
        r.by,
    );
    if let Some(e) = &r.error {
        let _ = writeln!(out, "  error: {}", clock.times_in(e));
    }
    if let Some(plan) = &r.plan {
        for line in clock.times_in(plan).lines() {
            let _ = writeln!(out, "  | {line}");
        }
    }
    if !r.launches.is_empty() {
        let _ = writeln!(out, "  commands:");
    }
    let idle = |l: &&halcyon_state::LaunchRecord| {
        l.status == Some(0) && l.abandoned.is_none() && l.output.trim() == NOTHING_TO_DO
    };
    let hidden = if verbose {
        0
    } else {
        r.launches.iter().filter(idle).count()
    };
    // One table for the record's commands (so they line up), each command's output under
    // its own row.
    let shown: Vec<&halcyon_state::LaunchRecord> =
        r.launches.iter().filter(|l| verbose || !idle(l)).collect();
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|l| {
            let segment = match &l.kind {
                halcyon_events::LaunchKind::Notify { phase, .. } => {
                    format!("notify {}", name(phase))
                }
                halcyon_events::LaunchKind::Recovery { segment, .. } => {
                    format!("segment {} recovery", segment + 1)
                }
                halcyon_events::LaunchKind::Command { segment, .. } => {
                    format!("segment {}", segment + 1)
                }
            };
            let status = match (&l.abandoned, l.status) {
                (Some(why), _) => format!("ABANDONED ({why})"),
                (None, Some(n)) => format!("status {n}"),
                (None, None) => "running".into(),
            };
            let ran = match (l.started_at, l.finished_at) {
                (Some(s), Some(f)) => format!("{} {}", clock.time(s), took(s, f)),
                (Some(s), None) => format!("{} -", clock.time(s)),
                (None, _) => "not started".to_owned(),
            };
            vec![
                l.node
                    .as_ref()
                    .map_or("coordinator", |n| n.as_str())
                    .to_owned(),
                segment,
                status,
                ran,
                l.command.clone(),
            ]
        })
        .collect();
    let laid_out = table(&rows, "    ");
    for (l, line) in shown.iter().zip(laid_out.lines()) {
        let _ = writeln!(out, "{line}");
        for output in l.output.lines() {
            let _ = writeln!(out, "        > {output}");
        }
    }
    if hidden > 0 {
        let _ = writeln!(
            out,
            "    ({hidden} built-in command{} with nothing to do on {} node; -v lists them)",
            if hidden == 1 { "" } else { "s" },
            if hidden == 1 { "its" } else { "their" }
        );
    }
    for a in &r.actions {
        let detail = Some(a.detail.as_str()).filter(|d| !d.is_empty());
        let _ = writeln!(out, "  action: {}", action(a, detail));
    }
    for n in &r.notes {
        let _ = writeln!(
            out,
            "  note {}: {}",
            clock.time(n.at),
            clock.times_in(&n.text)
        );
    }
    out
}

/// `KIND PACKAGE on NODE: ok|FAILED (DETAIL)`.
fn action(a: &ActionRecord, detail: Option<&str>) -> String {
    format!(
        "{} {} on {}: {}{}",
        name(&a.kind),
        a.package.as_ref().map_or("", |p| p.as_str()),
        a.node,
        if a.ok { "ok" } else { "FAILED" },
        detail.map(|d| format!(" ({d})")).unwrap_or_default(),
    )
}

/// The answer of an operation (`halcyon package|node|cluster|event ...`): the plan, each
/// action's outcome, and the note.
pub fn operation(response: &OperationResponse, clock: &Clock) -> String {
    let mut out = String::new();
    match response {
        OperationResponse::Done(done) => {
            if let Some(plan) = &done.record.plan {
                out.push_str(&clock.times_in(plan));
            }
            for a in &done.record.actions {
                let _ = writeln!(out, "  {}", action(a, Some(&a.detail)));
            }
        }
        OperationResponse::Voters(v) => {
            let _ = writeln!(out, "{}", v.note);
        }
        OperationResponse::Queued(q) => {
            let _ = writeln!(out, "{}", q.note);
        }
        OperationResponse::Note(n) => {
            let _ = writeln!(out, "{}", n.note);
        }
    }
    out
}

/// `halcyon availability` for people: times as local `HH:MM:SS` (with the date when not
/// today; `--json` keeps RFC 3339), outages in aligned columns.
pub fn availability(a: &halcyon_api::AvailabilityResponse, clock: &Clock) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {:.3} % available from {} to {} (up {:.1} s, down {:.1} s)",
        a.package,
        a.percent,
        clock.time(a.since),
        clock.time(a.until),
        a.up_seconds,
        a.down_seconds
    );
    if a.outages.is_empty() {
        let _ = writeln!(out, "no outage");
        return out;
    }
    let _ = writeln!(out, "outages:");
    let rows: Vec<Vec<String>> = a
        .outages
        .iter()
        .map(|o| {
            vec![
                clock.time(o.start),
                "..".to_owned(),
                o.end
                    .map_or_else(|| "(still down)".to_owned(), |e| clock.time(e)),
                format!("{:.3} s", o.seconds),
                o.cause.clone(),
                format!("(event #{})", o.event),
            ]
        })
        .collect();
    out.push_str(&table(&rows, "  "));
    out
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::PathBuf;
    use std::time::Duration;

    use halcyon_api::{EventSummary, LeaseStatus, Quorum, Reachability};
    use halcyon_config::{NodeName, PackageName};
    use halcyon_state::Outcome;

    use super::*;

    /// 2026-06-01 12:00:00 UTC, read in UTC.
    fn clock() -> Clock {
        Clock {
            now: "2026-06-01T12:00:00Z".parse().unwrap(),
            zone: TimeZone::UTC,
        }
    }

    fn before(seconds: i64) -> Timestamp {
        clock().now - jiff::SignedDuration::from_secs(seconds)
    }

    #[test]
    fn ages_read_as_a_person_says_them() {
        let now = clock().now;
        assert_eq!(ago(now, now), "just now");
        assert_eq!(ago(before(12), now), "12 s ago");
        assert_eq!(ago(before(59), now), "59 s ago");
        assert_eq!(ago(before(60), now), "1 min ago");
        assert_eq!(ago(before(3 * 60 + 59), now), "3 min ago");
        assert_eq!(ago(before(5 * 3600), now), "5 h ago");
        assert_eq!(ago(before(2 * 86_400 + 7), now), "2 d ago");
        assert_eq!(ago(before(-7 * 60), now), "in 7 min");
    }

    #[test]
    fn times_are_local_with_the_date_only_when_not_today() {
        let c = clock();
        assert_eq!(c.time(before(3 * 60)), "11:57:00");
        assert_eq!(c.when(before(3 * 60)), "11:57:00 (3 min ago)");
        assert_eq!(c.time(before(13 * 3600)), "2026-05-31 23:00:00");
        // Another zone: the same instant in local time.
        let paris = Clock {
            zone: TimeZone::get("Europe/Paris").unwrap_or(TimeZone::fixed(jiff::tz::offset(2))),
            ..c
        };
        assert_eq!(paris.time(before(3 * 60)), "13:57:00");
    }

    #[test]
    fn availability_reads_local_times_and_durations() {
        let c = clock();
        let a = halcyon_api::AvailabilityResponse {
            schema_version: 2,
            package: "web".to_owned(),
            since: before(2 * 86_400),
            until: c.now,
            up_seconds: 172_798.5,
            down_seconds: 1.5,
            percent: 99.999,
            outages: vec![
                halcyon_api::Outage {
                    start: before(2 * 86_400 - 60),
                    end: Some(before(2 * 86_400 - 61)),
                    seconds: 0.352,
                    cause: "node failure (n1)".to_owned(),
                    event: 7,
                },
                halcyon_api::Outage {
                    start: before(30),
                    end: None,
                    seconds: 30.0,
                    cause: "halted by the administrator".to_owned(),
                    event: 112,
                },
            ],
        };
        assert_eq!(
            availability(&a, &c),
            "web: 99.999 % available from 2026-05-30 12:00:00 to 12:00:00 (up 172798.5 s, down 1.5 s)\n\
             outages:\n\
             \x20 2026-05-30 12:01:00  ..  2026-05-30 12:01:01  0.352 s   node failure (n1)            (event #7)\n\
             \x20 11:59:30             ..  (still down)         30.000 s  halted by the administrator  (event #112)\n"
        );
    }

    #[test]
    fn durations_keep_milliseconds_only_when_short() {
        let start = clock().now;
        let after = |ms: i64| start + jiff::SignedDuration::from_millis(ms);
        assert_eq!(took(start, after(352)), "0.352 s");
        assert_eq!(took(start, after(12_400)), "12 s");
        assert_eq!(took(start, after(185_000)), "3 min 5 s");
    }

    #[test]
    fn table_columns_stay_aligned_as_cells_grow() {
        let rows: Vec<Vec<String>> = [9, 10, 100, 1000]
            .iter()
            .map(|id| cells(&[&format!("#{id}"), "node_down n3", "done"]))
            .collect();
        let text = table(&rows, "  ");
        let second: Vec<usize> = text.lines().map(|l| l.find("node_down").unwrap()).collect();
        assert_eq!(second, vec![2 + 5 + 2; 4], "{text}");
        let third: Vec<usize> = text.lines().map(|l| l.find("done").unwrap()).collect();
        assert!(third.iter().all(|&c| c == third[0]), "{text}");
        assert!(text.lines().all(|l| !l.ends_with(' ')), "{text}");
    }

    fn summary(id: u64, event: &str, finished: i64) -> EventSummary {
        EventSummary {
            id,
            event: event.into(),
            by: "api".into(),
            outcome: Outcome::Done,
            queued_at: before(finished + 1),
            started_at: Some(before(finished + 1)),
            finished_at: Some(before(finished)),
            error: None,
            actions: 1,
            launches: 3,
        }
    }

    fn package(name: &str, on: &[&str]) -> PackageStatus {
        PackageStatus {
            name: PackageName::from(name),
            status: if on.is_empty() { "down" } else { "up" }.into(),
            nodes: on
                .iter()
                .map(|n| NodeName::from(*n))
                .collect::<BTreeSet<_>>(),
            switching: true,
            failures: BTreeMap::new(),
            failures_expire_at: BTreeMap::new(),
            error: None,
            restarts: None,
        }
    }

    fn status_of(packages: Vec<PackageStatus>, events: Vec<EventSummary>) -> StatusResponse {
        StatusResponse {
            schema_version: halcyon_api::SCHEMA_VERSION,
            cluster: "example".into(),
            answered_by: "node1".into(),
            halted: false,
            coordinator: Some("node1".into()),
            quorum: Quorum {
                has_quorum: true,
                term: 2,
                voters: vec!["node1".into(), "node2".into()],
                last_applied: 40,
                detail: None,
                foreign_requests: 0,
            },
            watchdog: "not configured".into(),
            lease: LeaseStatus {
                remaining_ms: 500,
                duration_ms: 619,
                renewal_slowest_ms: 0,
                warning: None,
                unsettled_ms: None,
                slow_elections: None,
            },
            nodes: vec![NodeStatus {
                name: NodeName::from("node1"),
                number: 1,
                member: true,
                reachable: Reachability::Reachable,
                departed: false,
                halted_by_admin: false,
                incarnation: Some(1),
                networks: Vec::new(),
                fence: None,
                excluded: None,
                joining: false,
            }],
            packages,
            execution: None,
            pending: Vec::new(),
            events,
            witness: None,
            heartbeat_auth: halcyon_api::HeartbeatAuth {
                authenticated: true,
                ..Default::default()
            },
            api_auth: halcyon_api::ApiAuth {
                enforced: true,
                ..Default::default()
            },
            config_drift: Vec::new(),
            generation: 1,
            reconfiguration: None,
            detection: Vec::new(),
        }
    }

    #[test]
    fn last_events_line_up_past_ids_9_99_and_999_with_local_times() {
        let events = vec![
            summary(1000, "package_move db node2", 5),
            summary(100, "node_up node2", 65),
            summary(10, "node_down node2 (failure)", 200),
            summary(9, "cluster_start", 3 * 3600),
        ];
        let text = status(&status_of(Vec::new(), events), &clock(), None);
        let tail = &text[text.find("LAST EVENTS").unwrap()..];
        let lines: Vec<&str> = tail.lines().skip(1).collect();
        assert_eq!(lines.len(), 4, "{text}");
        let event_column: Vec<usize> = lines
            .iter()
            .map(|l| l.find(|c: char| c.is_ascii_lowercase()).unwrap())
            .collect();
        assert!(event_column.iter().all(|&c| c == event_column[0]), "{tail}");
        let outcome: Vec<usize> = lines.iter().map(|l| l.find("done").unwrap()).collect();
        assert!(outcome.iter().all(|&c| c == outcome[0]), "{tail}");
        assert!(lines[0].ends_with("11:59:55 (5 s ago)"), "{tail}");
        assert!(lines[1].ends_with("11:58:55 (1 min ago)"), "{tail}");
        assert!(lines[3].ends_with("09:00:00 (3 h ago)"), "{tail}");
        assert!(!text.contains("2026-06-01T"), "{text}");
    }

    #[test]
    fn each_networks_failure_detection_is_shown_for_the_answering_node() {
        let mut v = status_of(Vec::new(), Vec::new());
        let text = status(&v, &clock(), None);
        assert!(!text.contains("failure detection"), "{text}");
        let detection = |network: &str, interval_ms, sensitivity| halcyon_api::DetectionStatus {
            network: network.into(),
            interval_ms,
            sensitivity,
            detection_ms: interval_ms * u64::from(sensitivity),
        };
        v.detection = vec![detection("lan1", 100, 6), detection("disk", 200, 3)];
        let text = status(&v, &clock(), None);
        assert!(
            text.contains(
                "failure detection on node1: lan1 600ms (100ms x 6), disk 600ms (200ms x 3)"
            ),
            "{text}"
        );
    }

    #[test]
    fn longer_leases_a_shorter_lease_left_running_are_shown_until_settled() {
        let mut v = status_of(Vec::new(), Vec::new());
        let text = status(&v, &clock(), None);
        assert!(!text.contains("leases granted before"), "{text}");
        v.generation = 3;
        v.lease.unsettled_ms = Some(800);
        let text = status(&v, &clock(), None);
        assert!(
            text.contains(
                "lease 619 ms since configuration generation 3; 800 ms leases granted before \
                 may still run: a coordinator waits them out until they have certainly ended"
            ),
            "{text}"
        );
    }

    #[test]
    fn nodes_still_running_slower_raft_timings_are_named_until_they_restart() {
        let mut v = status_of(Vec::new(), Vec::new());
        assert!(!status(&v, &clock(), None).contains("Raft timings"));
        v.lease.duration_ms = 519;
        v.lease.slow_elections = Some(halcyon_api::SlowElections {
            interval_ms: 100,
            running_interval_ms: 50,
            nodes: vec!["n2".into(), "n3".into()],
        });
        let text = status(&v, &clock(), None);
        assert!(
            text.contains(
                "Raft timings: n2, n3 may still run those of a 100 ms heartbeat, not the \
                 running 50 ms (fixed when a daemon starts): the lease (519 ms) covers their \
                 slower elections until their daemons restart"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_witness_that_holds_its_vote_says_why() {
        let mut v = status_of(Vec::new(), Vec::new());
        let mut w = halcyon_api::WitnessStatus {
            name: NodeName::from("w"),
            address: "198.18.0.9:7002".into(),
            voter: true,
            reachable: true,
            last_applied: Some(0),
            joining: false,
            held: None,
        };
        v.witness = Some(w.clone());
        let text = status(&v, &clock(), None);
        assert!(
            text.contains("witness w at 198.18.0.9:7002: reachable, voter"),
            "{text}"
        );
        assert!(!text.contains("HOLDS ITS VOTE"), "{text}");
        w.held = Some("new store: no other node answers".into());
        v.witness = Some(w);
        let text = status(&v, &clock(), None);
        assert!(
            text.contains(
                "witness w at 198.18.0.9:7002: reachable, voter\n    HOLDS ITS VOTE (counts \
                 for no quorum until the cluster forgot its old store and it copied the log): \
                 new store: no other node answers"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_refusal_in_the_last_events_shows_its_times_as_local_time() {
        let mut refused = summary(100, "package_run db", 65);
        refused.outcome = Outcome::Refused;
        refused.error = Some(
            "package db has no eligible node: node1 failed here at 2026-06-01T11:58:00Z; excluded until `halcyon package clear`"
                .into(),
        );
        let text = status(&status_of(Vec::new(), vec![refused]), &clock(), None);
        assert!(
            text.contains("node1 failed here at 11:58:00; excluded until `halcyon package clear`"),
            "{text}"
        );
        assert!(!text.contains("2026-06-01T"), "{text}");
    }

    #[test]
    fn credentials_show_a_rollover_a_refused_reload_and_a_certificate_near_its_end() {
        let credentials = |trusted_cas, refused: bool, expires_in_days: i64| {
            let mut v = status_of(Vec::new(), Vec::new());
            v.api_auth.credentials = Some(halcyon_api::CredentialsState {
                loaded_at: before(90),
                reloads: 2,
                trusted_cas,
                heartbeat_keys: trusted_cas,
                tokens: 2,
                certificate_expires: clock().now
                    + jiff::SignedDuration::from_hours(24 * expires_in_days),
                refused_reload: refused.then(|| halcyon_api::RefusedReload {
                    at: before(30),
                    why: "/etc/halcyon/pki/tokens.toml: is accessible by group or others".into(),
                }),
            });
            status(&v, &clock(), None)
        };
        let plain = credentials(1, false, 400);
        assert!(
            plain.contains("  credentials of node1: loaded 11:58:30 (1 min ago), reload 2\n"),
            "{plain}"
        );
        assert!(!plain.contains("WARNING"), "{plain}");
        let rolling = credentials(2, true, 400);
        assert!(
            rolling.contains(
                "  credentials of node1: rollover under way (2 CAs trusted, 2 heartbeat keys; \
                 loaded 11:58:30 (1 min ago), reload 2)"
            ),
            "{rolling}"
        );
        assert!(
            rolling.contains(
                "  WARNING on node1: a reload of its credentials was refused at 11:59:30: \
                 /etc/halcyon/pki/tokens.toml: is accessible by group or others (the credentials \
                 loaded 11:58:30 (1 min ago), reload 2 stay in use)"
            ),
            "{rolling}"
        );
        let expiring = credentials(1, false, 20);
        assert!(
            expiring.contains(
                "  WARNING on node1: its certificate expires 2026-06-21 12:00:00 (`halcyon init \
                 node node1 --force`, copy nodes/node1/ to it, `systemctl reload halcyon`)"
            ),
            "{expiring}"
        );
    }

    fn example() -> Config {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/cluster");
        halcyon_config::load(&[dir]).unwrap().0
    }

    #[test]
    fn verbose_status_shows_resources_dependencies_nodes_and_failure_expiry() {
        let mut config = example();
        for (name, p) in config.packages.iter_mut() {
            if name.as_str() == "db" {
                p.failure_expiry = Some(Duration::from_secs(600));
            }
        }
        let mut db = package("db", &["node2"]);
        db.failures.insert(NodeName::from("node1"), before(120));
        let mut web = package("web", &["node3"]);
        web.restarts = Some(BTreeMap::from([(
            NodeName::from("node3"),
            BTreeMap::from([(
                "nginx".to_owned(),
                halcyon_state::RestartCounter {
                    count: 2,
                    last: Some(before(30)),
                    last_exit: Some("exit 1".into()),
                },
            )]),
        )]));
        let v = status_of(vec![db, web], Vec::new());
        let text = status(&v, &clock(), Some(&config));
        // db: its resources in start order, its nodes, and node1 excluded for 8 more minutes.
        let db_block = &text[text.find("\ndb ").unwrap()..text.find("\nweb ").unwrap()];
        assert!(db_block.contains("resources (start order):"), "{text}");
        let filesystem = db_block.find("    filesystem ").unwrap();
        let service = db_block.find("    service postgres").unwrap();
        assert!(filesystem < service, "{db_block}");
        assert!(
            db_block.contains(
                "failed on node1 at 11:58:00 (2 min ago): excluded there until 12:08:00 (in 8 min) (or `halcyon package clear db -n node1`)"
            ),
            "{db_block}"
        );
        let node1 = db_block
            .lines()
            .find(|l| l.trim_start().starts_with("node1"))
            .unwrap();
        assert!(node1.contains("primary"), "{db_block}");
        let node2 = db_block
            .lines()
            .find(|l| l.trim_start().starts_with("node2"))
            .unwrap();
        assert!(
            node2.contains("alternate") && node2.contains("current"),
            "{db_block}"
        );
        // web: its dependency on db holds (db up on node2); nginx's restarts counted.
        let web_block = &text[text.find("\nweb ").unwrap()..];
        assert!(web_block.contains("dependencies:"), "{web_block}");
        assert!(
            web_block.contains("any_node  satisfied (db up on node2)"),
            "{web_block}"
        );
        assert!(web_block.contains("restarts node3:2 of 3"), "{web_block}");
        // A failure with no expiry excludes until cleared; an expired one no longer does.
        let mut config = example();
        for (name, p) in config.packages.iter_mut() {
            if name.as_str() == "db" {
                p.failure_expiry = Some(Duration::from_secs(60));
            }
        }
        let text = status(&v, &clock(), Some(&config));
        assert!(
            text.contains(
                "failed on node1 at 11:58:00 (2 min ago): expired at 11:59:00, no longer excluded"
            ),
            "{text}"
        );
        // Without -v: the package rows and the failure line, no detail.
        let plain = status(&v, &clock(), None);
        assert!(!plain.contains("resources (start order)"), "{plain}");
        assert!(
            plain.contains("failed on node1 at 11:58:00 (2 min ago): excluded there"),
            "{plain}"
        );
    }

    #[test]
    fn without_quorum_placements_are_last_known() {
        let mut v = status_of(vec![package("db", &["node1"])], Vec::new());
        v.quorum.has_quorum = false;
        v.quorum.detail = Some(
            "no quorum: 1 of 3 voters reachable from node1 (node2, witness w unreachable)".into(),
        );
        let text = status(&v, &clock(), None);
        assert!(text.contains("up (last known)"), "{text}");
        assert!(text.contains("(node2, witness w unreachable)"), "{text}");
    }

    #[test]
    fn an_excluded_node_says_why_since_when_and_how_it_joins_again() {
        let mut v = status_of(Vec::new(), Vec::new());
        v.nodes[0].member = false;
        v.nodes[0].excluded = Some(ExcludedView {
            why: "node1 did not complete run web within its bound of 18s 238ms (7s it may take + 11s 238ms margin)".into(),
            since: before(120),
            incarnation: 1,
            event: 12,
        });
        let text = status(&v, &clock(), None);
        let row = text.lines().find(|l| l.starts_with("node1 ")).unwrap();
        assert_eq!(row.split_whitespace().nth(1), Some("EXCLUDED"), "{text}");
        assert!(
            text.contains(
                "\n  node1: EXCLUDED since 11:58:00 (2 min ago) (event #12, incarnation 1): node1 \
                 did not complete run web within its bound of 18s 238ms (7s it may take + 11s \
                 238ms margin); it joins again when its daemon restarts (`systemctl restart \
                 halcyon` on node1)\n"
            ),
            "{text}"
        );
        // The command names the unit the package installs.
        let unit = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../packaging/systemd/halcyon.service");
        assert!(unit.is_file(), "{} is missing", unit.display());
        // A new incarnation (the field absent): a member like any other.
        v.nodes[0].member = true;
        v.nodes[0].excluded = None;
        let text = status(&v, &clock(), None);
        assert!(!text.contains("EXCLUDED"), "{text}");
        let row = text.lines().find(|l| l.starts_with("node1 ")).unwrap();
        assert_eq!(row.split_whitespace().nth(1), Some("yes"), "{text}");
    }

    /// A failover's record as the event log keeps it: the plan rendered when it was made,
    /// its reasons and notes with RFC 3339 times.
    fn failover_record() -> EventRecord {
        EventRecord {
            id: 12,
            event: "package_failed web on n1".into(),
            by: "n1".into(),
            outcome: Outcome::Done,
            queued_at: before(62),
            started_at: Some(before(61)),
            finished_at: Some(before(60)),
            error: Some(
                "package web has no eligible node: n3 failed here at 2026-05-31T08:00:00Z; excluded until `halcyon package clear`"
                    .into(),
            ),
            plan: Some(
                "event: package_failed web on n1 at 2026-06-01T11:58:59Z\n\
                 step 1:\n\
                 \x20 run web on n2: configured_node: n2 is the highest-priority eligible node (n1 failed here at 2026-06-01T11:58:58.5Z; excluded until 2026-06-01T12:08:58.5Z (or `halcyon package clear`))\n\
                 result:\n\
                 \x20 web  up on n2\n"
                    .into(),
            ),
            program: None,
            actions: Vec::new(),
            launches: Vec::new(),
            notes: vec![halcyon_state::NoteRecord {
                at: before(60),
                text: "web: failback to n1 deferred until 2026-06-01T16:00:00Z".into(),
            }],
        }
    }

    #[test]
    fn an_event_shows_the_times_in_its_plan_error_and_notes_as_local_time() {
        // Read in Paris (UTC+2 in June): 10:58:59 UTC is 12:58:59 there; a time on another
        // day keeps its date.
        let paris = Clock {
            zone: TimeZone::get("Europe/Paris").unwrap_or(TimeZone::fixed(jiff::tz::offset(2))),
            ..clock()
        };
        let text = event(&failover_record(), false, &paris);
        assert_eq!(
            text,
            "#12 package_failed web on n1  [DONE]  by n1  queued 13:58:58 (1 min ago)  started 13:58:59  finished 13:59:00 (took 1.000 s)\n\
             \x20 error: package web has no eligible node: n3 failed here at 2026-05-31 10:00:00; excluded until `halcyon package clear`\n\
             \x20 | event: package_failed web on n1 at 13:58:59\n\
             \x20 | step 1:\n\
             \x20 |   run web on n2: configured_node: n2 is the highest-priority eligible node (n1 failed here at 13:58:58; excluded until 14:08:58 (or `halcyon package clear`))\n\
             \x20 | result:\n\
             \x20 |   web  up on n2\n\
             \x20 note 13:59:00: web: failback to n1 deferred until 18:00:00\n"
        );
        // An operation's answer shows its plan so too.
        let done = OperationResponse::Done(Box::new(halcyon_api::EventDoneResponse {
            schema_version: halcyon_api::SCHEMA_VERSION,
            record: failover_record(),
        }));
        let answer = operation(&done, &paris);
        assert!(
            answer.starts_with("event: package_failed web on n1 at 13:58:59\n"),
            "{answer}"
        );
        assert!(!answer.contains("2026-06-01T"), "{answer}");
    }
}
