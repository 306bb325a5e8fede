//! The live commands' output for people: `halcyon status`, `halcyon events`, and the
//! answers of operations. Pure functions of `halcyon-api` types (no I/O); the layout is
//! the one the CLI printed when it read untyped JSON.

use std::fmt::Write as _;

use halcyon_api::{
    EventRecord, ExecutionState, ExecutionStatus, NodeStatus, OperationResponse, PackageStatus,
    StatusResponse,
};
use halcyon_state::ActionRecord;
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

/// `halcyon status` for people.
pub fn status(v: &StatusResponse) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "CLUSTER {}   configuration generation {}   coordinator {}   quorum {}   (answered by {})",
        v.cluster,
        v.generation,
        or_dash(v.coordinator.as_ref()),
        if v.quorum.has_quorum { "yes" } else { "NO" },
        v.answered_by,
    );
    if let Some(r) = &v.reconfiguration {
        let _ = writeln!(
            out,
            "  reconfiguration in progress: generation {} applied by {} at {} (event sequence {})",
            r.generation, r.by, r.since, r.sequence
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
    } else if api.unauthenticated + api.forbidden + api.nodes + api.raft_refused > 0 {
        let _ = writeln!(
            out,
            "  the API of {} requires tokens; refused: {} without a valid token, {} for their \
             role, {} node requests without a valid node signature, {} Raft connections \
             without a node certificate",
            v.answered_by, api.unauthenticated, api.forbidden, api.nodes, api.raft_refused
        );
    }
    if v.watchdog != "not configured" {
        let _ = writeln!(out, "  watchdog on {}: {}", v.answered_by, v.watchdog);
    }
    if let Some(warning) = &v.lease.warning {
        let _ = writeln!(out, "  WARNING on {}: {warning}", v.answered_by);
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
            if w.voter { ", voter" } else { ", not a voter" },
        );
    }
    let _ = writeln!(
        out,
        "\nNODE        MEMBER  REACHABLE    INCARNATION  NETWORKS (path from {})",
        v.answered_by
    );
    for n in &v.nodes {
        out.push_str(&node_line(n));
    }
    let _ = writeln!(out, "\nPACKAGE     STATUS  NODE        SWITCHING  RESTARTS");
    if !v.quorum.has_quorum {
        // Without a quorum this node cannot know where packages run now.
        let _ = writeln!(
            out,
            "  (no quorum: the last known placements as {} applied them, not confirmed)",
            v.answered_by
        );
    }
    for p in &v.packages {
        out.push_str(&package_line(p, v.quorum.has_quorum));
    }
    if let Some(e) = &v.execution {
        out.push_str(&execution(e));
    }
    let _ = writeln!(out, "\nLAST EVENTS");
    for e in &v.events {
        let _ = writeln!(
            out,
            "  #{} {:<32} {:<18} {}{}",
            e.id,
            e.event,
            name(&e.outcome),
            or_dash(e.finished_at),
            e.error
                .as_ref()
                .map(|x| format!("  {x}"))
                .unwrap_or_default(),
        );
    }
    out
}

fn node_line(n: &NodeStatus) -> String {
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
    let member = if n.member {
        "yes"
    } else if n.halted_by_admin {
        "halted"
    } else {
        "no"
    };
    format!(
        "{:<11} {:<7} {:<12} {:<12} {}\n",
        n.name.as_str(),
        member,
        name(&n.reachable),
        json(&n.incarnation),
        networks.join(" ")
    )
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

fn package_line(p: &PackageStatus, confirmed: bool) -> String {
    let nodes: Vec<&str> = p.nodes.iter().map(|n| n.as_str()).collect();
    let placed = if nodes.is_empty() {
        "-".into()
    } else {
        nodes.join(",")
    };
    let mut line = format!(
        "{:<11} {:<7} {:<11} {:<10} {}\n",
        p.name.as_str(),
        if confirmed {
            p.status.clone()
        } else {
            format!("{} (last known)", p.status)
        },
        placed,
        if p.switching { "enabled" } else { "disabled" },
        restarts(p),
    );
    for (node, at) in &p.failures {
        let _ = writeln!(
            line,
            "            failed on {node} at {at}: excluded there (`halcyon package clear {} -n {node}`)",
            p.name.as_str()
        );
    }
    line
}

fn execution(e: &ExecutionStatus) -> String {
    let mut out = String::new();
    let error = e.state == ExecutionState::Error;
    let _ = writeln!(
        out,
        "\n{}: #{} {} (segment {} of {}, last barrier passed: {})",
        if error { "EVENT IN ERROR" } else { "RUNNING" },
        e.id,
        e.event,
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
pub fn event(r: &EventRecord, verbose: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "#{} {}  [{}]  by {}  queued {}  started {}  finished {}",
        r.id,
        r.event,
        name(&r.outcome).to_uppercase(),
        r.by,
        r.queued_at,
        or_dash(r.started_at),
        or_dash(r.finished_at),
    );
    if let Some(e) = &r.error {
        let _ = writeln!(out, "  error: {e}");
    }
    if let Some(plan) = &r.plan {
        for line in plan.lines() {
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
    for l in r.launches.iter().filter(|l| verbose || !idle(l)) {
        let segment = match &l.kind {
            halcyon_events::LaunchKind::Notify { phase, .. } => format!("notify {}", name(phase)),
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
        let _ = writeln!(
            out,
            "    {:<10} {:<16} {}  start {}  end {}  {}",
            l.node.as_ref().map_or("coordinator", |n| n.as_str()),
            segment,
            l.command,
            or_dash(l.started_at),
            or_dash(l.finished_at),
            status,
        );
        for line in l.output.lines() {
            let _ = writeln!(out, "        > {line}");
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
        let _ = writeln!(out, "  note {}: {}", n.at, n.text);
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
pub fn operation(response: &OperationResponse) -> String {
    let mut out = String::new();
    match response {
        OperationResponse::Done(done) => {
            if let Some(plan) = &done.record.plan {
                out.push_str(plan);
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

/// `halcyon availability` for people.
pub fn availability(a: &halcyon_api::AvailabilityResponse) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {:.3} % available from {} to {} (up {:.1} s, down {:.1} s)",
        a.package, a.percent, a.since, a.until, a.up_seconds, a.down_seconds
    );
    if a.outages.is_empty() {
        let _ = writeln!(out, "no outage");
        return out;
    }
    let _ = writeln!(out, "outages:");
    for o in &a.outages {
        let end = o
            .end
            .map_or_else(|| "(still down)".to_owned(), |e| e.to_string());
        let _ = writeln!(
            out,
            "  {} .. {}  {:.3} s  {}  (event #{})",
            o.start, end, o.seconds, o.cause, o.event
        );
    }
    out
}
