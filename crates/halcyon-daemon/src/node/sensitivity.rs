//! The failure detector judges each network by the heartbeat sensitivity of the running
//! configuration (issue 16): `halcyon apply` changes it on a live cluster, and each node's
//! detector follows from the entry its replica applies. Level-triggered: whenever the view
//! or the detector's status changes, the sensitivity the configuration says is compared
//! with the one the detector runs, so a node that started from files with another value
//! (or missed the entry while down) takes the cluster's as soon as its replica holds it.
//!
//! Only the sensitivity moves: a network whose interval differs from the detector's (the
//! files of a node that drifted; `apply` refuses an interval change) is left as it runs,
//! and the drift report says so. The lease does not depend on it here: `apply` refuses a
//! sensitivity whose detection time would change the lease (`reconfigure`).

use std::collections::BTreeMap;
use std::sync::Arc;

use halcyon_config::Cluster;
use halcyon_membership::detector::NetworkStatus;

use super::{LeaseCommand, Node};

/// The (network, sensitivity) pairs to ask of the detector: the configuration's
/// sensitivity on each network the detector runs with the same interval, where the
/// detector runs another and it was not asked already (`asked`: the last one asked per
/// network).
pub(crate) fn sensitivity_changes(
    cluster: &Cluster,
    running: &[NetworkStatus],
    asked: &BTreeMap<u32, u32>,
) -> Vec<(u32, u32)> {
    running
        .iter()
        .filter_map(|status| {
            let configured = cluster
                .networks
                .iter()
                .find(|n| n.number == status.network)?
                .heartbeat;
            let differs = configured.interval == status.heartbeat.interval
                && configured.sensitivity != status.heartbeat.sensitivity
                && asked.get(&status.network) != Some(&configured.sensitivity);
            differs.then_some((status.network, configured.sensitivity))
        })
        .collect()
}

impl Node {
    /// Keeps the detector's sensitivities those of the running configuration (see the
    /// module documentation); ends when the heartbeats or the view end.
    pub(crate) async fn sensitivity_loop(self: Arc<Self>) {
        let mut view = self.view.clone();
        let mut membership = self.membership.clone();
        let mut asked: BTreeMap<u32, u32> = BTreeMap::new();
        loop {
            // Both marked seen before they are compared, so that each wait below ends only
            // at a change (also while the replica holds no configuration yet).
            view.borrow_and_update();
            let running = membership.borrow_and_update().detector.networks.clone();
            let state = self.snapshot();
            // A change the heartbeats could not take (their command queue full, or not
            // started yet in the simulator) is asked again a renewal interval later.
            let mut again = false;
            if let Some(config) = state.config() {
                for (network, sensitivity) in sensitivity_changes(&config.cluster, &running, &asked)
                {
                    let (done, answer) = tokio::sync::oneshot::channel();
                    let command = LeaseCommand::Sensitivity {
                        network,
                        sensitivity,
                        done,
                    };
                    if self.lease_commands.send(command).await.is_err() {
                        return;
                    }
                    match answer.await {
                        Ok(Ok(())) => {
                            tracing::info!(
                                node = %self.name,
                                network,
                                sensitivity,
                                generation = state.generation(),
                                "heartbeat sensitivity of the running configuration"
                            );
                            asked.insert(network, sensitivity);
                        }
                        Ok(Err(why)) => {
                            tracing::warn!(node = %self.name, network, sensitivity, "heartbeat sensitivity not changed yet: {why}");
                            again = true;
                        }
                        Err(_) => return,
                    }
                }
            }
            tokio::select! {
                r = view.changed() => if r.is_err() { return },
                r = membership.changed() => if r.is_err() { return },
                () = tokio::time::sleep(self.renew_interval), if again => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use halcyon_config::Heartbeat;

    use super::*;

    fn cluster(sensitivities: &[(u32, u64, u32)]) -> Cluster {
        let dir =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/cluster");
        let mut config = halcyon_config::load(&[dir]).expect("the example loads").0;
        for network in &mut config.cluster.networks {
            if let Some(&(_, interval, sensitivity)) =
                sensitivities.iter().find(|(n, _, _)| *n == network.number)
            {
                network.heartbeat = Heartbeat {
                    interval: Duration::from_millis(interval),
                    sensitivity,
                };
            }
        }
        config.cluster
    }

    fn running(network: u32, interval: u64, sensitivity: u32) -> NetworkStatus {
        NetworkStatus {
            network,
            local_link_up: true,
            heartbeat: Heartbeat {
                interval: Duration::from_millis(interval),
                sensitivity,
            },
        }
    }

    #[test]
    fn the_configured_sensitivity_is_asked_once_where_the_interval_is_the_same() {
        let config = cluster(&[(1, 100, 6), (2, 100, 4)]);
        let detector = [running(1, 100, 4), running(2, 100, 4)];
        let mut asked = BTreeMap::new();
        assert_eq!(
            sensitivity_changes(&config, &detector, &asked),
            vec![(1, 6)]
        );
        // Asked, not yet published by the detector: not asked again.
        asked.insert(1, 6);
        assert_eq!(sensitivity_changes(&config, &detector, &asked), vec![]);
        // Published: nothing to do.
        let detector = [running(1, 100, 6), running(2, 100, 4)];
        assert_eq!(sensitivity_changes(&config, &detector, &asked), vec![]);
        // And back (a later apply): asked again.
        let back = cluster(&[(1, 100, 4), (2, 100, 4)]);
        assert_eq!(sensitivity_changes(&back, &detector, &asked), vec![(1, 4)]);
    }

    #[test]
    fn a_network_whose_interval_differs_or_that_the_configuration_lacks_is_left_alone() {
        let config = cluster(&[(1, 200, 6)]);
        let detector = [running(1, 100, 4), running(9, 100, 4)];
        assert_eq!(
            sensitivity_changes(&config, &detector, &BTreeMap::new()),
            vec![]
        );
    }
}
