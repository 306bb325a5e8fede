//! `GET /metrics`: the node's metrics in the Prometheus / OpenMetrics text format
//! (`prometheus-client`), every name prefixed `halcyon_`, units as suffixes.
//!
//! Everything is read at scrape time: gauges from the node's current view, membership,
//! lease and openraft's metrics; counters from the heartbeat sealer and the detector (which
//! count as they go), from what the observer counted of the event log
//! (`node/observer.rs`), and the process's own from `/proc/self`. Nothing is kept between
//! scrapes and nothing here takes a lock the node's tasks use: one [`Collector`] is built per
//! scrape from copies.

use halcyon_membership::{NodeState, PathState};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::node::Node;
use crate::node::observer::Durations;

/// The content type of the answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone)]
enum Value {
    Gauge(f64),
    Counter(u64),
    CounterSeconds(f64),
    Histogram(Durations),
}

/// One metric family and its samples.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    kind: MetricType,
    samples: Vec<(Labels, Value)>,
}

/// Every family of one scrape.
#[derive(Debug, Default)]
struct Scrape {
    families: Vec<Family>,
}

impl Scrape {
    fn add(
        &mut self,
        name: &'static str,
        help: &'static str,
        unit: Option<Unit>,
        kind: MetricType,
        samples: Vec<(Labels, Value)>,
    ) {
        self.families.push(Family {
            name,
            help,
            unit,
            kind,
            samples,
        });
    }

    fn gauge(&mut self, name: &'static str, help: &'static str, samples: Vec<(Labels, f64)>) {
        let samples = samples
            .into_iter()
            .map(|(l, v)| (l, Value::Gauge(v)))
            .collect();
        self.add(name, help, None, MetricType::Gauge, samples);
    }

    fn counter(&mut self, name: &'static str, help: &'static str, samples: Vec<(Labels, u64)>) {
        let samples = samples
            .into_iter()
            .map(|(l, v)| (l, Value::Counter(v)))
            .collect();
        self.add(name, help, None, MetricType::Counter, samples);
    }
}

fn encode_value(
    encoder: &mut prometheus_client::encoding::MetricEncoder<'_>,
    value: &Value,
) -> Result<(), std::fmt::Error> {
    match value {
        Value::Gauge(v) => encoder.encode_gauge(v),
        Value::Counter(v) => {
            encoder.encode_counter::<prometheus_client::encoding::NoLabelSet, u64, f64>(v, None)
        }
        Value::CounterSeconds(v) => {
            encoder.encode_counter::<prometheus_client::encoding::NoLabelSet, f64, f64>(v, None)
        }
        Value::Histogram(h) => encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            h.sum_seconds,
            h.count,
            &h.pairs(),
            None,
        ),
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.families {
            let mut metric = encoder.encode_descriptor(
                family.name,
                family.help,
                family.unit.as_ref(),
                family.kind,
            )?;
            for (labels, value) in &family.samples {
                if labels.is_empty() {
                    encode_value(&mut metric, value)?;
                } else {
                    encode_value(&mut metric.encode_family(labels)?, value)?;
                }
            }
        }
        Ok(())
    }
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

/// The process's resident memory (bytes) and CPU time (seconds, user + system), from
/// `/proc/self`; `None` where it cannot be read.
fn process_figures() -> (Option<f64>, Option<f64>) {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    // SAFETY: as above.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .filter(|_| page > 0)
        .map(|pages| pages * page as f64);
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // The command name is in parentheses and may hold spaces: fields count after it.
            let rest = &s[s.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            (ticks > 0).then(|| (utime + stime) / ticks as f64)
        });
    (rss, cpu)
}

/// The node's metrics as the text format, or why they are not served.
pub fn render(node: &Node) -> Result<String, String> {
    let mut scrape = Scrape::default();
    let state = node.snapshot();
    let config = state
        .config()
        .cloned()
        .unwrap_or_else(|| std::sync::Arc::clone(&node.boot_config));
    let status = crate::views::status(node);
    let membership = node.membership();
    let me = node.name.as_str();

    nodes_and_paths(&mut scrape, node, &config, &status, &membership);
    quorum_and_raft(&mut scrape, node, &status, me);
    packages(&mut scrape, &state, &config, &status);
    events(&mut scrape, node);
    webhooks(&mut scrape, node);
    process(&mut scrape);
    let mut registry = Registry::with_prefix("halcyon");
    registry.register_collector(Box::new(scrape));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .map_err(|e| format!("encoding the metrics: {e}"))?;
    Ok(text)
}

/// Metrics of nodes and paths.
fn nodes_and_paths(
    scrape: &mut Scrape,
    node: &Node,
    config: &halcyon_config::Config,
    status: &halcyon_api::StatusResponse,
    membership: &halcyon_membership::Status,
) {
    let reach = node.reachability();
    scrape.gauge(
        "node_member",
        "1 when the node is a committed member of the cluster",
        status
            .nodes
            .iter()
            .map(|n| (labels([("node", n.name.as_str())]), flag(n.member)))
            .collect(),
    );
    scrape.gauge(
        "node_reachable",
        "1 when this node's failure detector hears the node on some network (itself included)",
        config
            .cluster
            .nodes
            .iter()
            .map(|n| {
                let up = matches!(reach.get(&n.number), Some(NodeState::Reachable));
                (labels([("node", n.name.as_str())]), flag(up))
            })
            .collect(),
    );
    paths(scrape, config, membership);
    heartbeats_and_refusals(scrape, membership, status);
}

/// The failure detector's heartbeat paths, per node and network.
fn paths(
    scrape: &mut Scrape,
    config: &halcyon_config::Config,
    membership: &halcyon_membership::Status,
) {
    let network_name = |number: u32| {
        config
            .cluster
            .network_numbered(number)
            .map_or_else(|| number.to_string(), |n| n.name.to_string())
    };
    let node_name = |number: u32| {
        config
            .cluster
            .node_numbered(number)
            .map_or_else(|| number.to_string(), |n| n.name.to_string())
    };
    let paths = &membership.detector.paths;
    let path_labels = |p: &halcyon_membership::detector::PathStatus| -> Labels {
        vec![
            ("node", node_name(p.node)),
            ("network", network_name(p.network)),
        ]
    };
    scrape.gauge(
        "path_up",
        "1 when heartbeats from the node arrive on the network (0: down or not heard yet)",
        paths
            .iter()
            .map(|p| (path_labels(p), flag(p.state == PathState::Up)))
            .collect(),
    );
    scrape.gauge(
        "path_adapter_down",
        "1 when this node's detector judges the node's adapter on the network failed",
        paths
            .iter()
            .map(|p| (path_labels(p), flag(p.adapter_down)))
            .collect(),
    );
    scrape.counter(
        "heartbeats_late",
        "heartbeats accepted more than 1.5 intervals after the previous one on the path",
        paths.iter().map(|p| (path_labels(p), p.late)).collect(),
    );
    scrape.counter(
        "heartbeat_intervals_missed",
        "heartbeat intervals that passed with nothing accepted on the path between two heartbeats that were (lost heartbeats)",
        paths.iter().map(|p| (path_labels(p), p.missed)).collect(),
    );
}

/// Heartbeat counters, and what authentication refused (heartbeats, API requests, node
/// requests, Raft connections) and other clusters' Raft requests.
fn heartbeats_and_refusals(
    scrape: &mut Scrape,
    membership: &halcyon_membership::Status,
    status: &halcyon_api::StatusResponse,
) {
    let c = membership.counters;
    scrape.counter(
        "heartbeats_sent",
        "heartbeats this node sent, all networks",
        vec![(Vec::new(), c.sent)],
    );
    scrape.counter(
        "heartbeats_received",
        "heartbeats this node received, all networks",
        vec![(Vec::new(), c.received)],
    );
    scrape.counter(
        "heartbeat_errors",
        "heartbeat send, receive and decode errors, and heartbeats the detector ignored",
        vec![
            (labels([("kind", "send")]), c.send_errors),
            (labels([("kind", "receive")]), c.recv_errors),
            (labels([("kind", "decode")]), c.decode_errors),
            (labels([("kind", "ignored")]), c.ignored),
        ],
    );
    let auth = &status.heartbeat_auth;
    scrape.gauge(
        "heartbeat_authenticated",
        "1 when this node's heartbeats are authenticated (HMAC with the cluster's key)",
        vec![(Vec::new(), flag(auth.authenticated))],
    );
    scrape.counter(
        "heartbeats_rejected",
        "heartbeats refused by authentication, by reason",
        vec![
            (labels([("reason", "forged")]), auth.forged),
            (labels([("reason", "replayed")]), auth.replayed),
            (labels([("reason", "other_cluster")]), auth.other_cluster),
            (labels([("reason", "malformed")]), auth.malformed),
        ],
    );
    scrape.counter(
        "raft_foreign_requests",
        "Raft requests of another cluster id this node dropped",
        vec![(Vec::new(), status.quorum.foreign_requests)],
    );
    let api = &status.api_auth;
    scrape.gauge(
        "api_authenticated",
        "1 when this node's API needs tokens and node signatures (0: started --insecure)",
        vec![(Vec::new(), flag(api.enforced))],
    );
    scrape.counter(
        "requests_refused",
        "requests and connections refused by authentication since the daemon started, by reason",
        vec![
            (labels([("reason", "no_token")]), api.unauthenticated),
            (labels([("reason", "role")]), api.forbidden),
            (labels([("reason", "node_signature")]), api.nodes),
            (labels([("reason", "raft_tls")]), api.raft_refused),
            (labels([("reason", "api_tls")]), api.api_tls_refused),
        ],
    );
    scrape.counter(
        "peer_api_requests",
        "requests sent to other nodes' APIs since the daemon started, by connection: one \
         opened for the request, or one kept open from an earlier request",
        vec![
            (labels([("connection", "new")]), api.peer_requests_new),
            (labels([("connection", "kept")]), api.peer_requests_kept),
        ],
    );
}

/// Metrics of quorum, coordinator, lease, Raft.
fn quorum_and_raft(
    scrape: &mut Scrape,
    node: &Node,
    status: &halcyon_api::StatusResponse,
    me: &str,
) {
    scrape.gauge(
        "quorum",
        "1 when this node is in a partition with a quorum (it knows a leader a quorum follows)",
        vec![(Vec::new(), flag(status.quorum.has_quorum))],
    );
    scrape.gauge(
        "is_coordinator",
        "1 when this node is the coordinator (the Raft leader)",
        vec![(Vec::new(), flag(status.coordinator.as_deref() == Some(me)))],
    );
    scrape.gauge(
        "voters",
        "Raft voters (nodes and the witness)",
        vec![(Vec::new(), status.quorum.voters.len() as f64)],
    );
    scrape.add(
        "lease_remaining",
        "how long this node's lease still holds",
        Some(Unit::Seconds),
        MetricType::Gauge,
        vec![(
            Vec::new(),
            Value::Gauge(node.lease_remaining().as_secs_f64()),
        )],
    );
    scrape.add(
        "lease_duration",
        "the lease this node holds when granted",
        Some(Unit::Seconds),
        MetricType::Gauge,
        vec![(Vec::new(), Value::Gauge(node.holding_lease().as_secs_f64()))],
    );
    let answered = &node.renewals_answered;
    scrape.counter(
        "lease_renewals_answered",
        "lease renewals this node answered as coordinator, by the transport they came on (raft: the Raft connections; http: the internal API, from nodes of an earlier version or when the Raft connections gave no answer in half an attempt)",
        vec![
            (
                labels([("transport", "raft")]),
                answered.raft.load(std::sync::atomic::Ordering::Relaxed),
            ),
            (
                labels([("transport", "http")]),
                answered.http.load(std::sync::atomic::Ordering::Relaxed),
            ),
        ],
    );
    let raft = node.consensus.metrics().borrow().clone();
    scrape.gauge(
        "raft_term",
        "the current Raft term",
        vec![(Vec::new(), raft.current_term as f64)],
    );
    scrape.gauge(
        "raft_last_log_index",
        "the index of the last entry of this node's Raft log",
        vec![(Vec::new(), raft.last_log_index.unwrap_or(0) as f64)],
    );
    scrape.gauge(
        "raft_commit_index",
        "the index of the last Raft entry this node knows to be committed (as saved in its store; a follower's can trail the leader's by a heartbeat)",
        vec![(
            Vec::new(),
            node.consensus.committed_index().map_or(0, |i| i) as f64,
        )],
    );
    scrape.gauge(
        "raft_applied_index",
        "the index of the last Raft entry this node applied (applied <= committed)",
        vec![(Vec::new(), raft.last_applied.map_or(0, |l| l.index) as f64)],
    );
}

/// Metrics of packages.
fn packages(
    scrape: &mut Scrape,
    state: &halcyon_state::State,
    config: &halcyon_config::Config,
    status: &halcyon_api::StatusResponse,
) {
    let mut state_samples = Vec::new();
    let mut status_samples = Vec::new();
    let mut failed_samples = Vec::new();
    let mut switching_samples = Vec::new();
    let mut restart_samples = Vec::new();
    for p in &status.packages {
        let configured = config.package(p.name.as_str());
        for n in &config.cluster.nodes {
            let eligible = configured.is_some_and(|c| c.node_rank(n.name.as_str()).is_some());
            if !eligible {
                continue;
            }
            let pair = labels([("package", p.name.as_str()), ("node", n.name.as_str())]);
            state_samples.push((pair.clone(), flag(p.nodes.contains(&n.name))));
            failed_samples.push((pair, flag(p.failures.contains_key(&n.name))));
        }
        for s in ["up", "down", "ERROR"] {
            status_samples.push((
                labels([("package", p.name.as_str()), ("status", s)]),
                flag(p.status == s),
            ));
        }
        switching_samples.push((labels([("package", p.name.as_str())]), flag(p.switching)));
        restart_samples.extend(restarts(p));
    }
    scrape.gauge(
        "package_running",
        "1 when the package runs on the node, 0 on its other nodes",
        state_samples,
    );
    scrape.gauge(
        "package_status",
        "1 for the package's status (up, down, ERROR)",
        status_samples,
    );
    scrape.gauge(
        "package_failed",
        "1 when the package failed on the node and the node is excluded until it expires or is cleared",
        failed_samples,
    );
    scrape.gauge(
        "package_switching_enabled",
        "1 when the package may be started and moved automatically",
        switching_samples,
    );
    scrape.gauge(
        "service_restarts",
        "restarts the service used on the node (counted again from 0 when its package halts)",
        restart_samples,
    );
    queue(scrape, state, status);
}

/// The event queue: pending events and the event processed.
fn queue(scrape: &mut Scrape, state: &halcyon_state::State, status: &halcyon_api::StatusResponse) {
    scrape.gauge(
        "events_pending",
        "events queued and not yet started",
        vec![(Vec::new(), state.pending().len() as f64)],
    );
    scrape.gauge(
        "event_running",
        "1 while an event is processed; 2 while it is stopped in ERROR",
        vec![(
            Vec::new(),
            match &status.execution {
                None => 0.0,
                Some(e) if e.state == halcyon_api::ExecutionState::Error => 2.0,
                Some(_) => 1.0,
            },
        )],
    );
}

/// A package's restart counters, per node and service.
fn restarts(p: &halcyon_api::PackageStatus) -> Vec<(Labels, f64)> {
    let mut samples = Vec::new();
    for (node, services) in p.restarts.iter().flatten() {
        for (service, counter) in services {
            samples.push((
                labels([
                    ("package", p.name.as_str()),
                    ("node", node.as_str()),
                    ("service", service.as_str()),
                ]),
                f64::from(counter.count),
            ));
        }
    }
    samples
}

/// Metrics of events, from the observer's counts.
fn events(scrape: &mut Scrape, node: &Node) {
    let counts = node.event_counts.borrow().clone();
    scrape.counter(
        "events",
        "event records finished, by event kind and outcome (the log is replicated: every node counts the same)",
        counts
            .finished
            .iter()
            .map(|((kind, outcome), n)| {
                (
                    labels([("kind", kind.as_str()), ("outcome", outcome.as_str())]),
                    *n,
                )
            })
            .collect(),
    );
    scrape.add(
        "event_duration",
        "how long events took from start to finish, by kind",
        Some(Unit::Seconds),
        MetricType::Histogram,
        counts
            .durations
            .iter()
            .map(|(kind, d)| {
                (
                    labels([("kind", kind.as_str())]),
                    Value::Histogram(d.clone()),
                )
            })
            .collect(),
    );
    scrape.add(
        "failover_duration",
        "failovers (node_down failure, package_failed, network_down events that started a package) from the failure committed to the package started",
        Some(Unit::Seconds),
        MetricType::Histogram,
        vec![(Vec::new(), Value::Histogram(counts.failovers.clone()))],
    );
}

/// Metrics of webhooks.
fn webhooks(scrape: &mut Scrape, node: &Node) {
    let counts = node.event_counts.borrow().clone();
    let mut deliveries = Vec::new();
    let webhooks = node.webhook_counts.borrow().clone();
    let mut urls: std::collections::BTreeSet<&String> = webhooks.by_url.keys().collect();
    urls.extend(counts.webhooks_dropped.keys());
    for url in urls {
        let (delivered, failed, _) = webhooks.by_url.get(url).copied().unwrap_or_default();
        let dropped = counts.webhooks_dropped.get(url).copied().unwrap_or(0);
        for (result, n) in [
            ("delivered", delivered),
            ("failed", failed),
            ("dropped", dropped),
        ] {
            deliveries.push((labels([("url", url.as_str()), ("result", result)]), n));
        }
    }
    scrape.counter(
        "webhook_deliveries",
        "webhook deliveries by URL and result: delivered, failed (every attempt), dropped (queue full)",
        deliveries,
    );
}

/// Metrics of the process.
fn process(scrape: &mut Scrape) {
    let (rss, cpu) = process_figures();
    if let Some(rss) = rss {
        scrape.add(
            "process_resident_memory",
            "resident memory of this daemon",
            Some(Unit::Bytes),
            MetricType::Gauge,
            vec![(Vec::new(), Value::Gauge(rss))],
        );
    }
    if let Some(cpu) = cpu {
        scrape.add(
            "process_cpu",
            "CPU time this daemon used, user and system",
            Some(Unit::Seconds),
            MetricType::Counter,
            vec![(Vec::new(), Value::CounterSeconds(cpu))],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_figures_are_read_from_proc() {
        let (rss, cpu) = process_figures();
        assert!(rss.is_some_and(|r| r > 1e5), "{rss:?}");
        assert!(cpu.is_some_and(|c| c >= 0.0), "{cpu:?}");
    }

    #[test]
    fn a_scrape_encodes_gauges_counters_and_histograms_with_the_prefix_and_units() {
        let mut scrape = Scrape::default();
        scrape.gauge("quorum", "q", vec![(Vec::new(), 1.0)]);
        scrape.counter(
            "events",
            "e",
            vec![(labels([("kind", "node_down"), ("outcome", "done")]), 3)],
        );
        let mut d = Durations::default();
        d.observe(0.7);
        scrape.add(
            "failover_duration",
            "f",
            Some(Unit::Seconds),
            MetricType::Histogram,
            vec![(Vec::new(), Value::Histogram(d))],
        );
        let mut registry = Registry::with_prefix("halcyon");
        registry.register_collector(Box::new(scrape));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "# TYPE halcyon_quorum gauge",
            "halcyon_quorum 1.0",
            "halcyon_events_total{kind=\"node_down\",outcome=\"done\"} 3",
            "# TYPE halcyon_failover_duration_seconds histogram",
            "halcyon_failover_duration_seconds_bucket{le=\"1.0\"} 1",
            "halcyon_failover_duration_seconds_bucket{le=\"0.5\"} 0",
            "halcyon_failover_duration_seconds_bucket{le=\"+Inf\"} 1",
            "halcyon_failover_duration_seconds_count 1",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
        }
    }
}
