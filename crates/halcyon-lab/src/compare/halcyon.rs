//! Halcyon in the comparison: [`LabCluster`] with its default settings (the `web` package at
//! 198.18.1.200:8080, `halcyon demo-http` as the service), one IP network plus the lab's disk
//! heartbeat file; with the default heartbeat ([`SYSTEM`]) or with `[heartbeat] profile =
//! "fast"` ([`FAST_SYSTEM`]), each its own row.

use std::io::Write;
use std::net::SocketAddrV4;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use halcyon_config::HeartbeatProfile;
use halcyon_testkit::http;

use super::{CompareOptions, Row, System, TakeoverSteps, build_lab, measure_system};
use crate::cluster::{has_quorum, holder_in};
use crate::{ClusterSpec, Lab, LabCluster, names};

/// Longest time a move request may take.
const MOVE_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub const SYSTEM: &str = "Halcyon";
/// The row of Halcyon with the fast heartbeat profile.
pub const FAST_SYSTEM: &str = "Halcyon fast";
/// The row of Halcyon without credentials (`--insecure`).
pub const INSECURE_SYSTEM: &str = "Halcyon insecure";
/// How long the stable state must hold before a run (the same as for Pacemaker).
const SETTLE: Duration = Duration::from_secs(2);
/// How long the new holder's event log is asked for the takeover's finished record.
const STEPS_TIMEOUT: Duration = Duration::from_secs(5);

struct HalcyonSystem {
    cluster: LabCluster,
    /// The coordinator (Raft leader) when the cluster was last seen stable.
    coordinator: Option<usize>,
    /// The lease in force, as the daemon reports it.
    lease_ms: Option<u64>,
}

impl System for HalcyonSystem {
    fn lab(&self) -> &Lab {
        self.cluster.lab()
    }

    fn role(&self, host: usize) -> Option<&'static str> {
        (self.coordinator == Some(host)).then_some("coordinator")
    }

    fn role_host(&self) -> Option<usize> {
        self.coordinator
    }

    /// `POST /v1/packages/web/move {"node": "hN"}` to the target's own API (the API forwards
    /// it to the coordinator): what `halcyon` sends for a move.
    fn move_package(&mut self, host: usize) -> Result<()> {
        // A node back from a power-off may be refused as a target for a moment (its networks
        // not yet seen up everywhere): retry for a while.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.request_move(host) {
                Ok(()) => return Ok(()),
                Err(error) if Instant::now() >= deadline => return Err(error),
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    fn power_off(&mut self, host: usize) -> Result<Instant> {
        Ok(self.cluster.power_off(host)?)
    }

    /// The daemon only: the guard is the part of Halcyon made to act when the daemon cannot
    /// (the campaign's pause fault stops the daemon alone as well).
    fn pause_targets(&self, host: usize) -> Option<(Vec<u32>, String)> {
        let daemon = self.cluster.daemon(host)?;
        Some((vec![daemon.pid], "the daemon".to_owned()))
    }

    fn power_on(&mut self, host: usize) -> Result<()> {
        self.cluster.power_on(host)?;
        Ok(())
    }

    /// From the new holder's event log (`GET /v1/events`): the last finished
    /// `node_down hK` record, its queueing and its `await_release` and `run` actions.
    fn takeover_steps(
        &self,
        killed: usize,
        new_holder: usize,
        t0: SystemTime,
    ) -> Option<TakeoverSteps> {
        let deadline = Instant::now() + STEPS_TIMEOUT;
        loop {
            let events = self.cluster.api_get(new_holder, "/v1/events").ok();
            if let Some(steps) = events.and_then(|events| takeover_steps_in(&events, killed, t0)) {
                return Some(steps);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn wait_stable(&mut self, deadline: Instant) -> Result<usize> {
        let mut gap = String::from("nothing checked");
        let cluster = &self.cluster;
        // The same state seen continuously for SETTLE (as for Pacemaker): a node just powered
        // on answers its API before its restart cleanup and rejoin are over.
        let mut since: Option<(Instant, usize)> = None;
        let result = cluster.wait_for(
            "a stable Halcyon cluster",
            deadline,
            || match stability_gap(cluster) {
                Ok(found) => match since {
                    Some((at, holder)) if holder == found.0 && at.elapsed() >= SETTLE => {
                        Some(found)
                    }
                    Some((_, holder)) if holder == found.0 => None,
                    _ => {
                        since = Some((Instant::now(), found.0));
                        None
                    }
                },
                Err(missing) => {
                    since = None;
                    gap = missing;
                    None
                }
            },
        );
        let (holder, coordinator, lease) =
            result.map_err(|error| anyhow::anyhow!("{error}: {gap}"))?;
        self.coordinator = coordinator;
        if lease.is_some() {
            self.lease_ms = lease;
        }
        Ok(holder)
    }
}

impl HalcyonSystem {
    fn request_move(&self, host: usize) -> Result<()> {
        let address = SocketAddrV4::new(names::host_address(host, 1), self.cluster.spec().port + 2);
        let body = format!("{{\"node\": \"h{host}\"}}");
        let token = self.cluster.admin_token().to_owned();
        let tls = self.cluster.tls();
        let response =
            crate::netns::in_namespace(self.cluster.lab().namespace_path(host), move || {
                http::request_tls(
                    tls.as_ref(),
                    address.into(),
                    "POST",
                    "/v1/packages/web/move",
                    Some(&token),
                    Some(&body),
                    MOVE_REQUEST_TIMEOUT,
                )
            })
            .context("entering the host's namespace")?
            .context("POST /v1/packages/web/move")?;
        if !response.is_success() {
            bail!(
                "move refused: {}",
                response.body.lines().last().unwrap_or("")
            );
        }
        Ok(())
    }
}

/// Every node answers with a quorum and counts every node as a member; the package is served
/// by the node the API names. Ok((holder, coordinator, lease in ms)) or what is missing.
fn stability_gap(cluster: &LabCluster) -> Result<(usize, Option<usize>, Option<u64>), String> {
    let mut statuses = Vec::new();
    for host in cluster.hosts() {
        match cluster.status(host) {
            Ok(status) => statuses.push(status),
            Err(error) => return Err(format!("h{host} does not answer: {error}")),
        }
    }
    for (index, status) in statuses.iter().enumerate() {
        if !has_quorum(status) {
            return Err(format!("h{} has no quorum", index + 1));
        }
        let outsiders = status["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|node| {
                node["member"] != true
                    || node["reachable"] != "reachable"
                    || node["networks"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|network| network["down"] == true)
            })
            .count();
        if outsiders > 0 {
            return Err(format!(
                "h{} sees {outsiders} nodes not (yet) members, reachable and with every network up",
                index + 1
            ));
        }
    }
    let named = statuses.iter().find_map(|status| holder_in(status, "web"));
    let serving = cluster.serving_host("web");
    match (named, serving) {
        (Some(named), Some(serving)) if named == serving => {
            let coordinator = statuses[0]["coordinator"]
                .as_str()
                .and_then(|name| name.strip_prefix('h')?.parse().ok());
            let lease = statuses[0]["lease"]["duration_ms"].as_u64();
            Ok((serving, coordinator, lease))
        }
        _ => Err(format!("web placed on {named:?}, served by {serving:?}")),
    }
}

/// The steps of the last finished `node_down h{killed}` record of an event log (a list, or
/// `{"events": [...]}`), after `t0`; `None` before that record is finished.
fn takeover_steps_in(
    events: &serde_json::Value,
    killed: usize,
    t0: SystemTime,
) -> Option<TakeoverSteps> {
    let takeover = halcyon_testkit::events::takeover(events, &format!("h{killed}"))?;
    let t0 = jiff::Timestamp::try_from(t0).ok()?;
    let after = |at: Option<String>| -> Option<Duration> {
        let at: jiff::Timestamp = at?.parse().ok()?;
        Duration::try_from(at.duration_since(t0)).ok()
    };
    Some(TakeoverSteps {
        queued: after(takeover.queued_at),
        released: after(takeover.released_at),
        started: after(takeover.run_at),
    })
}

fn settings(spec: &ClusterSpec, lease_ms: Option<u64>) -> String {
    format!(
        "{}: heartbeat {} ms x {} (detection {} ms), lease {} (daemon's status); 1 IP network{}",
        spec.heartbeat_profile
            .map_or("defaults".to_string(), |p| format!("profile {}", p.name())),
        spec.heartbeat_interval.as_millis(),
        spec.sensitivity,
        spec.detection().as_millis(),
        lease_ms.map_or("?".to_string(), |lease| format!("{lease} ms")),
        if spec.disk_heartbeat {
            " + disk heartbeat"
        } else {
            ", no disk heartbeat"
        }
    )
}

pub(super) fn measure(
    options: &CompareOptions,
    profile: Option<HeartbeatProfile>,
    insecure: bool,
    progress: &mut dyn Write,
    stop: &AtomicBool,
) -> Row {
    let mut spec = ClusterSpec::new(&options.halcyon);
    if let Some(profile) = profile {
        spec = spec.with_profile(profile);
    }
    spec.insecure = insecure;
    spec.disk_heartbeat = options.disk_heartbeat;
    let system = match (profile.is_some(), insecure) {
        (true, _) => FAST_SYSTEM,
        (false, true) => INSECURE_SYSTEM,
        (false, false) => SYSTEM,
    };
    let mut row = Row::new(system, settings(&spec, None), options.runs);
    let _ = writeln!(progress, "{system}: starting 3 daemons ({})", row.settings);
    let started = (|| -> Result<HalcyonSystem> {
        if !options.halcyon.is_file() {
            bail!(
                "no halcyon binary at {} (build it: cargo build -p halcyon; or pass --halcyon PATH)",
                options.halcyon.display()
            );
        }
        let lab = build_lab(options.keep_directory)?;
        let cluster = LabCluster::start(lab, spec).context("starting Halcyon on the lab")?;
        Ok(HalcyonSystem {
            cluster,
            coordinator: None,
            lease_ms: None,
        })
    })();
    let mut system = match started {
        Ok(system) => system,
        Err(error) => {
            row.error = Some(format!("{error:#}"));
            return row;
        }
    };
    let result = measure_system(&mut system, &mut row, options, progress, stop);
    row.settings = settings(system.cluster.spec(), system.lease_ms);
    super::finish_row(&mut row, Some(system.lab()), result);
    system.cluster.stop_all();
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wall(rfc3339: &str) -> SystemTime {
        let at: jiff::Timestamp = rfc3339.parse().unwrap();
        SystemTime::UNIX_EPOCH + Duration::from_nanos(at.as_nanosecond() as u64)
    }

    /// The record of the killed node's last finished `node_down`, its times after T0; an
    /// unfinished record, or another node's, is not taken.
    #[test]
    fn the_steps_come_from_the_killed_nodes_last_finished_node_down() {
        let t0 = wall("2026-12-07T19:00:00Z");
        let events = serde_json::json!([
            {"event": "node_down h1 (failure)", "queued_at": "2026-12-07T18:59:00Z",
             "finished_at": "2026-12-07T18:59:01Z", "actions": []},
            {"event": "node_down h2 (failure)", "queued_at": "2026-12-07T19:00:00.090Z",
             "finished_at": "2026-12-07T19:00:00.400Z", "actions": []},
            {"event": "node_down h1 (failure)", "queued_at": "2026-12-07T19:00:00.095Z",
             "finished_at": "2026-12-07T19:00:00.310Z", "actions": [
                {"kind": "await_release", "at": "2026-12-07T19:00:00.270Z"},
                {"kind": "run", "at": "2026-12-07T19:00:00.305Z"}]},
            {"event": "node_down h1 (failure)", "queued_at": "2026-12-07T19:00:01Z",
             "finished_at": null, "actions": []}
        ]);
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(
            takeover_steps_in(&events, 1, t0),
            Some(TakeoverSteps {
                queued: ms(95),
                released: ms(270),
                started: ms(305),
            })
        );
        let wrapped = serde_json::json!({ "events": events });
        assert_eq!(
            takeover_steps_in(&wrapped, 1, t0),
            takeover_steps_in(&events, 1, t0)
        );
        assert_eq!(takeover_steps_in(&events, 3, t0), None);
        // A step before T0 (a record of an earlier run) has no time after it.
        let earlier = wall("2026-12-07T19:00:00.300Z");
        let steps = takeover_steps_in(&events, 1, earlier).unwrap();
        assert_eq!((steps.queued, steps.released), (None, None));
        assert_eq!(steps.started, ms(5));
    }
}
