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

/// The credentials `halcyon init` writes beside the configuration (`/etc/halcyon/pki`, with
/// its `tokens.toml`) are not configuration; the example's other files are all read.
#[test]
fn the_credentials_directory_is_not_read_as_configuration() {
    fn copy(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            let target = to.join(path.file_name().unwrap());
            if path.is_dir() {
                copy(&path, &target);
            } else {
                std::fs::copy(&path, &target).unwrap();
            }
        }
    }
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/cluster");
    let dir = tempfile::tempdir().unwrap();
    copy(&example, dir.path());
    std::fs::create_dir_all(dir.path().join("pki")).unwrap();
    std::fs::write(
        dir.path().join("pki/tokens.toml"),
        "[[token]]\nname = \"admin\"\n",
    )
    .unwrap();
    let (config, files) = halcyon_config::load(&[dir.path().to_owned()])
        .unwrap_or_else(|d| panic!("the credentials were read as configuration:\n{d}"));
    assert_eq!(files, 6);
    assert_eq!(config.packages.len(), 5);
}
