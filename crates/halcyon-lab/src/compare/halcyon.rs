//! Halcyon in the comparison: [`LabCluster`] with its default settings (the `web` package at
//! 198.18.1.200:8080, `halcyon demo-http` as the service), one IP network plus the lab's disk
//! heartbeat file. The daemon has no separate fast profile, so only the defaults are measured.

use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::{CompareOptions, Row, System, build_lab, measure_system};
use crate::cluster::{has_quorum, holder_in};
use crate::{ClusterSpec, Lab, LabCluster};

pub const SYSTEM: &str = "Halcyon";

struct HalcyonSystem {
    cluster: LabCluster,
    /// The coordinator (Raft leader) when the cluster was last seen stable.
    coordinator: Option<usize>,
}

impl System for HalcyonSystem {
    fn lab(&self) -> &Lab {
        self.cluster.lab()
    }

    fn role(&self, host: usize) -> Option<&'static str> {
        (self.coordinator == Some(host)).then_some("coordinator")
    }

    fn power_off(&mut self, host: usize) -> Result<Instant> {
        Ok(self.cluster.power_off(host)?)
    }

    fn power_on(&mut self, host: usize) -> Result<()> {
        self.cluster.power_on(host)?;
        Ok(())
    }

    fn wait_stable(&mut self, deadline: Instant) -> Result<usize> {
        let mut gap = String::from("nothing checked");
        let cluster = &self.cluster;
        let result = cluster.wait_for(
            "a stable Halcyon cluster",
            deadline,
            || match stability_gap(cluster) {
                Ok(holder) => Some(holder),
                Err(missing) => {
                    gap = missing;
                    None
                }
            },
        );
        let (holder, coordinator) = result.map_err(|error| anyhow::anyhow!("{error}: {gap}"))?;
        self.coordinator = coordinator;
        Ok(holder)
    }
}

/// Every node answers with a quorum and counts every node as a member; the package is served
/// by the node the API names. Ok((holder, coordinator)) or what is missing.
fn stability_gap(cluster: &LabCluster) -> Result<(usize, Option<usize>), String> {
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
            .filter(|node| node["member"] != true)
            .count();
        if outsiders > 0 {
            return Err(format!("h{} sees {outsiders} non-members", index + 1));
        }
    }
    let named = statuses.iter().find_map(|status| holder_in(status, "web"));
    let serving = cluster.serving_host("web");
    match (named, serving) {
        (Some(named), Some(serving)) if named == serving => {
            let coordinator = statuses[0]["coordinator"]
                .as_str()
                .and_then(|name| name.strip_prefix('h')?.parse().ok());
            Ok((serving, coordinator))
        }
        _ => Err(format!("web placed on {named:?}, served by {serving:?}")),
    }
}

fn settings(spec: &ClusterSpec) -> String {
    format!(
        "defaults: heartbeat {} ms x {} (detection {} ms), lease {} ms; 1 IP network + disk heartbeat",
        spec.heartbeat_interval.as_millis(),
        spec.sensitivity,
        spec.detection().as_millis(),
        spec.lease().as_millis()
    )
}

pub(super) fn measure(
    options: &CompareOptions,
    progress: &mut dyn Write,
    stop: &AtomicBool,
) -> Row {
    let spec = ClusterSpec::new(&options.halcyon);
    let mut row = Row::new(SYSTEM, settings(&spec), options.runs);
    let _ = writeln!(progress, "{SYSTEM}: starting 3 daemons ({})", row.settings);
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
    super::finish_row(&mut row, Some(system.lab()), result);
    system.cluster.stop_all();
    row
}
