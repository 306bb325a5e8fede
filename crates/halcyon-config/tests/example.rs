//! The shipped example configuration must always be valid.
use std::path::PathBuf;

#[test]
fn the_example_cluster_is_valid() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/cluster");
    let (config, files) = match halcyon_config::load(&[dir]) {
        Ok(ok) => ok,
        Err(diagnostics) => panic!("the example is invalid:\n{diagnostics}"),
    };
    assert_eq!(files, 6);
    assert_eq!(config.cluster.nodes.len(), 4);
    assert_eq!(config.packages.len(), 5);
    let batch = config.package("batch").unwrap();
    assert_eq!(
        batch.failover_policy,
        halcyon_config::FailoverPolicy::MinPackageNode
    );
    assert!(batch.auto_run);
    let web = config.package("web").unwrap();
    assert_eq!(web.nodes.len(), 4, "[\"*\"] expands to every node");
    assert_eq!(
        web.networks,
        vec![halcyon_config::NetworkName::from("lan1")]
    );
}
