//! `halcyon init`: a cluster's credentials from its configuration (the work is in
//! `halcyon_pki`; this is the command line and the report).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use halcyon_pki::{ClusterSpec, InitError, Layout, NodeSpec, Step};

use crate::Failure;
use crate::cli::{InitArgs, InitWhat, RolloverStep};

/// Where the configuration is when `--config` is not given.
const DEFAULT_CONFIG_DIR: &str = "/etc/halcyon";

pub fn run(args: &InitArgs) -> Result<(), Failure> {
    let command = match &args.what {
        None => "halcyon init",
        Some(InitWhat::Node { .. }) => "halcyon init node",
        Some(InitWhat::Rollover { .. }) => "halcyon init rollover",
    };
    let cluster = load_cluster(&args.config, command)?;
    let failure = |e: InitError| {
        let line = format!("{command}: {e}");
        if e.is_invalid_input() {
            Failure::Invalid(line)
        } else {
            Failure::Failed(line)
        }
    };
    let layout = Layout::new(&args.dir);
    match &args.what {
        None => {
            let made = halcyon_pki::init(&args.dir, &cluster, args.force, SystemTime::now())
                .map_err(failure)?;
            println!(
                "credentials for cluster \"{}\" (id {}) written to {}:",
                cluster.name,
                cluster.id,
                args.dir.display()
            );
            for path in &made.written {
                println!("  {}", relative(path, &args.dir));
            }
            println!("API tokens (shown only now; the nodes keep their SHA-256 in tokens.toml):");
            for token in &made.tokens {
                println!(
                    "  {:<10} {:<10} {}",
                    token.name,
                    token.role.as_str(),
                    token.secret
                );
            }
            println!(
                "Copy to each node NAME: ca.crt, heartbeat.key, tokens.toml and nodes/NAME/ \
                 (keep modes; owner-only). Keep {} off the nodes: it issues certificates. \
                 {} is the admin token the CLI reads on this machine (copy it, owner-only, \
                 only where administrators run halcyon).",
                relative(&layout.ca_key(), &args.dir),
                relative(&layout.admin_token(), &args.dir)
            );
        }
        Some(InitWhat::Node { name }) => {
            let written =
                halcyon_pki::issue_node(&args.dir, &cluster, name, args.force, SystemTime::now())
                    .map_err(failure)?;
            println!(
                "credentials for node \"{name}\" of cluster \"{}\" (id {}) written to {}:",
                cluster.name,
                cluster.id,
                args.dir.display()
            );
            for path in &written {
                println!("  {}", relative(path, &args.dir));
            }
            println!("Copy to node {name}: ca.crt, heartbeat.key, tokens.toml and nodes/{name}/.");
        }
        Some(InitWhat::Rollover { step }) => {
            let step = match step {
                RolloverStep::Start => Step::Start,
                RolloverStep::Switch => Step::Switch,
                RolloverStep::Finish => Step::Finish,
            };
            let rolled = halcyon_pki::rollover(&args.dir, &cluster, step, SystemTime::now())
                .map_err(failure)?;
            println!(
                "rollover step {} of cluster \"{}\" (id {}) written to {}:",
                step.as_str(),
                cluster.name,
                cluster.id,
                args.dir.display()
            );
            for path in &rolled.written {
                println!("  {}", relative(path, &args.dir));
            }
            println!(
                "Now copy to every node (NAME: the node's own directory) {}, then reload every \
                 daemon (`systemctl reload halcyon`, or SIGHUP; `halcyon status` shows when each \
                 loaded its credentials){}",
                rolled.to_copy.join(", "),
                match step {
                    Step::Start => ", then run `halcyon init rollover switch`.",
                    Step::Switch => ", then run `halcyon init rollover finish`.",
                    Step::Finish => ". The rollover is done.",
                }
            );
        }
    }
    Ok(())
}

/// Credentials for every node of the configuration in `config_dir`, written to
/// `config_dir/pki`, where the daemons find them by default (the demo's cluster).
pub fn credentials_beside(config_dir: &Path) -> anyhow::Result<()> {
    let (config, _) =
        halcyon_config::load(&[config_dir.to_owned()]).map_err(|d| anyhow::anyhow!("{d}"))?;
    halcyon_pki::init(
        &config_dir.join("pki"),
        &cluster_spec(&config.cluster),
        false,
        SystemTime::now(),
    )?;
    Ok(())
}

/// The cluster part of the configuration, as the credentials need it.
fn load_cluster(config: &[PathBuf], command: &str) -> Result<ClusterSpec, Failure> {
    let paths = if config.is_empty() {
        vec![PathBuf::from(DEFAULT_CONFIG_DIR)]
    } else {
        config.to_vec()
    };
    let (config, _) = halcyon_config::load(&paths).map_err(|diagnostics| {
        eprint!("{diagnostics}");
        Failure::Invalid(format!(
            "{command}: the cluster configuration is invalid; fix it first (`halcyon check`)"
        ))
    })?;
    Ok(cluster_spec(&config.cluster))
}

/// Every node, and the quorum witness (a Raft voter: it needs a certificate too).
fn cluster_spec(cluster: &halcyon_config::Cluster) -> ClusterSpec {
    let mut nodes: Vec<NodeSpec> = cluster
        .nodes
        .iter()
        .map(|node| {
            let mut addresses: Vec<_> = node.interfaces.iter().filter_map(|i| i.address).collect();
            addresses.dedup();
            NodeSpec {
                name: node.name.as_str().to_owned(),
                addresses,
            }
        })
        .collect();
    if let Some(witness) = &cluster.quorum.witness {
        nodes.push(NodeSpec {
            name: witness.name.as_str().to_owned(),
            addresses: vec![witness.address],
        });
    }
    ClusterSpec {
        name: cluster.name.clone(),
        id: cluster.id,
        nodes,
    }
}

fn relative(path: &Path, dir: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_directory_is_the_one_the_daemon_reads() {
        assert_eq!(crate::cli::DEFAULT_PKI_DIR, halcyon_pki::DEFAULT_DIR);
    }

    #[test]
    fn the_default_api_socket_is_the_one_the_cli_asks() {
        assert_eq!(
            crate::cli::DEFAULT_API_SOCKET,
            halcyon_daemon::local_socket::DEFAULT_PATH
        );
    }
}
