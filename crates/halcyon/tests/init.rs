//! `halcyon init` and `halcyon init node` as an administrator runs them on the example
//! cluster: what is printed and written, exit codes (2 invalid input, 1 refused), and that the
//! daemon's loader accepts the result.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn halcyon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_halcyon"))
        .args(args)
        .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .output()
        .expect("the halcyon binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn init(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "init",
        "--dir",
        dir.to_str().unwrap(),
        "-c",
        "examples/cluster",
    ];
    args.extend_from_slice(extra);
    halcyon(&args)
}

const NODES: [&str; 4] = ["node1", "node2", "node3", "node4"];

#[test]
fn init_creates_credentials_for_every_node_and_prints_the_tokens_once() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("pki");
    let o = init(&dir, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with(&format!(
            "credentials for cluster \"example\" (id 7) written to {}:\n  ca.key\n  ca.crt\n  nodes/node1/node.key\n",
            dir.display()
        )),
        "{out}"
    );
    let tokens: Vec<(&str, &str, &str)> = out
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some(name), Some(role), Some(secret)) if secret.starts_with("hct_") => {
                    Some((name, role, secret))
                }
                _ => None,
            }
        })
        .collect();
    assert_eq!(tokens.len(), 2, "{out}");
    assert_eq!((tokens[0].0, tokens[0].1), ("admin", "admin"));
    assert_eq!((tokens[1].0, tokens[1].1), ("read-only", "read-only"));
    assert!(out.contains("Keep ca.key off the nodes"), "{out}");

    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for node in NODES {
        let credentials = halcyon_pki::load(&dir, node).unwrap();
        assert_eq!(credentials.cluster_id, 7);
        let admin = credentials.tokens.verify(tokens[0].2).unwrap();
        assert_eq!(admin.role, halcyon_pki::Role::Admin);
        let reader = credentials.tokens.verify(tokens[1].2).unwrap();
        assert_eq!(reader.role, halcyon_pki::Role::ReadOnly);
    }
    // The tokens are nowhere on disk.
    let tokens_file = fs::read_to_string(dir.join("tokens.toml")).unwrap();
    assert!(!tokens_file.contains(&tokens[0].2[4..]));
}

#[test]
fn init_refuses_existing_credentials_with_exit_1_unless_forced() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("pki");
    assert_eq!(init(&dir, &[]).status.code(), Some(0));
    let ca = fs::read(dir.join("ca.crt")).unwrap();
    let o = init(&dir, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "halcyon init: {}: already exists; credentials are not overwritten (--force replaces them)\n",
            dir.join("ca.crt").display()
        )
    );
    assert_eq!(stdout(&o), "");
    assert_eq!(fs::read(dir.join("ca.crt")).unwrap(), ca);
    let o = init(&dir, &["--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_ne!(fs::read(dir.join("ca.crt")).unwrap(), ca);
}

#[test]
fn init_node_issues_credentials_with_the_existing_ca() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("pki");
    assert_eq!(init(&dir, &[]).status.code(), Some(0));
    // node4 joins later: its credentials are lost and issued again.
    fs::remove_dir_all(dir.join("nodes/node4")).unwrap();
    let o = init(&dir, &["node", "node4"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "credentials for node \"node4\" of cluster \"example\" (id 7) written to {}:\n  \
             nodes/node4/node.key\n  nodes/node4/node.crt\n\
             Copy to node node4: ca.crt, heartbeat.key, tokens.toml and nodes/node4/.\n",
            dir.display()
        )
    );
    let four = halcyon_pki::load(&dir, "node4").unwrap();
    let one = halcyon_pki::load(&dir, "node1").unwrap();
    assert_eq!(four.ca_certificate_der, one.ca_certificate_der);

    // Flags may also come after the node name.
    let o = halcyon(&[
        "init",
        "node",
        "node4",
        "--dir",
        dir.to_str().unwrap(),
        "-c",
        "examples/cluster",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "halcyon init node: {}: already exists; credentials are not overwritten (--force replaces them)\n",
            dir.join("nodes/node4/node.crt").display()
        )
    );
}

#[test]
fn init_invalid_input_exits_2() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("pki");
    assert_eq!(init(&dir, &[]).status.code(), Some(0));
    let o = init(&dir, &["node", "node9"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "halcyon init node: node \"node9\" is not in the cluster configuration (did you mean \"node1\"?)\n"
    );

    let bad_config = temp.path().join("bad");
    fs::create_dir(&bad_config).unwrap();
    fs::write(bad_config.join("cluster.toml"), "[cluster]\nname = 1\n").unwrap();
    let o = halcyon(&[
        "init",
        "--dir",
        temp.path().join("other").to_str().unwrap(),
        "-c",
        bad_config.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).ends_with(
            "halcyon init: the cluster configuration is invalid; fix it first (`halcyon check`)\n"
        ),
        "{}",
        stderr(&o)
    );
    assert!(!temp.path().join("other").exists());
}

#[test]
fn init_node_without_a_ca_is_refused_with_exit_1() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("pki");
    let o = init(&dir, &["node", "node1"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "halcyon init node: {}: does not exist (run `halcyon init` first)\n",
            dir.join("ca.key").display()
        )
    );
}

#[test]
fn the_quorum_witness_gets_credentials_too() {
    let temp = tempfile::tempdir().unwrap();
    let config = temp.path().join("config");
    fs::create_dir(&config).unwrap();
    let cluster = fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/cluster/cluster.toml"),
    )
    .unwrap();
    fs::write(
        config.join("cluster.toml"),
        format!("{cluster}\n[quorum.witness]\nname = \"quorum1\"\nnumber = 9\naddress = \"198.18.1.9\"\n"),
    )
    .unwrap();
    let dir = temp.path().join("pki");
    let o = halcyon(&[
        "init",
        "--dir",
        dir.to_str().unwrap(),
        "-c",
        config.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("  nodes/quorum1/node.crt\n"),
        "{}",
        stdout(&o)
    );
    let witness = halcyon_pki::load(&dir, "quorum1").unwrap();
    assert_eq!(witness.cluster_id, 7);
}
