//! `init`, `issue_node` and `load` on temporary directories: what is written, with which
//! modes, and every refusal with its exact message.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use halcyon_pki::{
    ClusterSpec, InitError, Layout, LoadError, NODE_VALIDITY_DAYS, NodeSpec, Problem, Role, init,
    issue_node, load, load_at, read_admin_token,
};

const DAY: Duration = Duration::from_secs(86_400);

fn spec(id: u64, nodes: &[&str]) -> ClusterSpec {
    ClusterSpec {
        name: "test".into(),
        id,
        nodes: nodes
            .iter()
            .enumerate()
            .map(|(i, name)| NodeSpec {
                name: (*name).into(),
                addresses: vec![format!("198.18.1.{}", i + 1).parse().unwrap()],
            })
            .collect(),
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn load_error(dir: &Path, node: &str) -> LoadError {
    load(dir, node).expect_err("load must refuse")
}

/// A directory with credentials for node1 and node2 of cluster 7.
fn initialised() -> tempfile::TempDir {
    let temp = tempfile::tempdir().unwrap();
    init(
        &temp.path().join("pki"),
        &spec(7, &["node1", "node2"]),
        false,
        SystemTime::now(),
    )
    .unwrap();
    temp
}

#[test]
fn init_writes_owner_only_credentials_that_load_for_every_node() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("pki");
    let made = init(
        &dir,
        &spec(7, &["node1", "node2"]),
        false,
        SystemTime::now(),
    )
    .unwrap();
    let layout = Layout::new(&dir);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&layout.nodes_dir()), 0o700);
    assert_eq!(mode(&layout.node_dir("node1")), 0o700);
    for secret in [
        layout.ca_key(),
        layout.heartbeat_key(),
        layout.tokens(),
        layout.admin_token(),
        layout.node_key("node1"),
        layout.node_key("node2"),
    ] {
        assert_eq!(mode(&secret), 0o600, "{}", secret.display());
    }
    assert_eq!(mode(&layout.ca_certificate()), 0o644);
    assert_eq!(mode(&layout.node_certificate("node2")), 0o644);
    assert_eq!(made.written.len(), 9);

    // The token secrets are returned once and stored only hashed.
    let names: Vec<(&str, Role)> = made
        .tokens
        .iter()
        .map(|t| (t.name.as_str(), t.role))
        .collect();
    assert_eq!(
        names,
        [("admin", Role::Admin), ("read-only", Role::ReadOnly)]
    );
    let tokens_file = fs::read_to_string(layout.tokens()).unwrap();
    for token in &made.tokens {
        assert!(token.secret.starts_with("hct_") && token.secret.len() == 68);
        assert!(!tokens_file.contains(&token.secret[4..]));
    }
    assert_ne!(made.tokens[0].secret, made.tokens[1].secret);
    // Debug output never shows a secret.
    assert!(!format!("{made:?}").contains(&made.tokens[0].secret));

    for node in ["node1", "node2"] {
        let credentials = load(&dir, node).unwrap();
        assert_eq!(credentials.cluster_id, 7);
        assert_eq!(credentials.node, node);
        assert_eq!(credentials.heartbeat_keys.len(), 1);
        assert!(!credentials.key_der.is_empty());
        let admin = credentials.tokens.verify(&made.tokens[0].secret).unwrap();
        assert_eq!((admin.name.as_str(), admin.role), ("admin", Role::Admin));
        let reader = credentials.tokens.verify(&made.tokens[1].secret).unwrap();
        assert_eq!(reader.role, Role::ReadOnly);
        assert!(credentials.tokens.verify("hct_00").is_none());
        assert!(!format!("{credentials:?}").contains("key_der"));
    }
    // Both nodes share the heartbeat key and the CA, not their certificates.
    let (one, two) = (load(&dir, "node1").unwrap(), load(&dir, "node2").unwrap());
    assert_eq!(one.heartbeat_keys, two.heartbeat_keys);
    assert_eq!(one.ca_certificate_der, two.ca_certificate_der);
    assert_ne!(one.certificate_der, two.certificate_der);
    assert_ne!(one.key_der, two.key_der);
}

#[test]
fn init_refuses_to_overwrite_without_force_and_writes_nothing() {
    let temp = initialised();
    let dir = temp.path().join("pki");
    let layout = Layout::new(&dir);
    let before = fs::read(layout.ca_certificate()).unwrap();
    let e = init(
        &dir,
        &spec(7, &["node1", "node2"]),
        false,
        SystemTime::now(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: already exists; credentials are not overwritten (--force replaces them)",
            layout.ca_certificate().display()
        )
    );
    assert!(!e.is_invalid_input());
    assert_eq!(fs::read(layout.ca_certificate()).unwrap(), before);

    // Only a node's files left over are enough to refuse.
    let other = temp.path().join("other");
    init(&other, &spec(7, &["node1"]), false, SystemTime::now()).unwrap();
    for file in [
        "ca.crt",
        "ca.key",
        "heartbeat.key",
        "tokens.toml",
        "admin.token",
    ] {
        fs::remove_file(other.join(file)).unwrap();
    }
    let e = init(&other, &spec(7, &["node1"]), false, SystemTime::now()).unwrap_err();
    assert!(
        matches!(&e, InitError::Exists { path } if *path == Layout::new(&other).node_certificate("node1")),
        "{e}"
    );

    init(&dir, &spec(7, &["node1", "node2"]), true, SystemTime::now()).unwrap();
    assert_ne!(fs::read(layout.ca_certificate()).unwrap(), before);
    load(&dir, "node1").unwrap();
}

#[test]
fn init_refuses_node_names_a_certificate_cannot_carry_and_empty_clusters() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("pki");
    let e = init(&dir, &spec(7, &["node 1"]), false, SystemTime::now()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "node \"node 1\" cannot be named in a certificate: a node name must be a DNS name \
         (letters, digits and '-', dot-separated labels of 1 to 63 characters)"
    );
    assert!(e.is_invalid_input());
    let e = init(&dir, &spec(7, &[]), false, SystemTime::now()).unwrap_err();
    assert_eq!(e.to_string(), "the cluster configuration has no nodes");
    assert!(!dir.exists(), "nothing is written for invalid input");
}

#[test]
fn a_group_or_world_readable_key_file_is_refused_naming_it() {
    let temp = initialised();
    let dir = temp.path().join("pki");
    let layout = Layout::new(&dir);
    for (file, bad) in [
        (layout.node_key("node1"), 0o640),
        (layout.heartbeat_key(), 0o604),
        (layout.tokens(), 0o660),
        (layout.node_key("node1"), 0o620),
    ] {
        chmod(&file, bad);
        let e = load_error(&dir, "node1");
        assert_eq!(
            e.to_string(),
            format!(
                "{}: is accessible by group or others (mode {bad:04o}); secret files must be owner-only (chmod 600)",
                file.display()
            )
        );
        chmod(&file, 0o600);
    }
    load(&dir, "node1").unwrap();
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let temp = initialised();
    let dir = temp.path().join("pki");
    let foreign = temp.path().join("foreign");
    // Same cluster id and node name, another CA.
    init(&foreign, &spec(7, &["node1"]), false, SystemTime::now()).unwrap();
    let (ours, theirs) = (Layout::new(&dir), Layout::new(&foreign));
    fs::copy(
        theirs.node_certificate("node1"),
        ours.node_certificate("node1"),
    )
    .unwrap();
    fs::copy(theirs.node_key("node1"), ours.node_key("node1")).unwrap();
    let e = load_error(&dir, "node1");
    assert_eq!(
        e.to_string(),
        format!(
            "{}: is not signed by a cluster CA in {}",
            ours.node_certificate("node1").display(),
            ours.ca_certificate().display()
        )
    );
}

#[test]
fn a_certificate_naming_another_node_is_refused() {
    let temp = initialised();
    let dir = temp.path().join("pki");
    let layout = Layout::new(&dir);
    fs::copy(
        layout.node_certificate("node2"),
        layout.node_certificate("node1"),
    )
    .unwrap();
    let e = load_error(&dir, "node1");
    assert_eq!(
        e.to_string(),
        format!(
            "{}: names node [\"node2\"], not \"node1\"",
            layout.node_certificate("node1").display()
        )
    );
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused() {
    let temp = initialised();
    let dir = temp.path().join("pki");
    let layout = Layout::new(&dir);
    fs::copy(layout.node_key("node2"), layout.node_key("node1")).unwrap();
    let e = load_error(&dir, "node1");
    assert_eq!(
        e.to_string(),
        format!(
            "{}: is not the key of {}",
            layout.node_key("node1").display(),
            layout.node_certificate("node1").display()
        )
    );
}

#[test]
fn certificates_outside_their_validity_are_refused() {
    let temp = initialised();
    let dir = temp.path().join("pki");
    let layout = Layout::new(&dir);
    let later = SystemTime::now() + DAY * (NODE_VALIDITY_DAYS as u32 + 1);
    let e = load_at(&dir, "node1", later).unwrap_err();
    assert_eq!(e.path, layout.node_certificate("node1"));
    assert!(matches!(e.problem, Problem::Expired { .. }), "{e}");
    assert!(e.to_string().contains(": expired on "), "{e}");
    let earlier = SystemTime::now() - DAY * 2;
    let e = load_at(&dir, "node1", earlier).unwrap_err();
    assert_eq!(e.path, layout.ca_certificate());
    assert!(matches!(e.problem, Problem::NotYetValid { .. }), "{e}");
}

#[test]
fn missing_and_malformed_files_are_named() {
    let temp = initialised();
    let dir = temp.path().join("pki");
    let layout = Layout::new(&dir);
    let e = load_error(&dir, "node9");
    assert_eq!(
        e.to_string(),
        format!(
            "{}: does not exist",
            layout.node_certificate("node9").display()
        )
    );

    fs::write(layout.node_certificate("node1"), "not a certificate").unwrap();
    let e = load_error(&dir, "node1");
    assert_eq!(e.path, layout.node_certificate("node1"));
    assert!(matches!(e.problem, Problem::NotCertificate(_)), "{e}");

    // A private key where the CA certificate belongs.
    fs::copy(layout.ca_key(), layout.ca_certificate()).unwrap();
    let e = load_error(&dir, "node2");
    assert_eq!(
        e.to_string(),
        format!(
            "{}: is not a PEM certificate: it holds a \"PRIVATE KEY\", not a CERTIFICATE",
            layout.ca_certificate().display()
        )
    );
}

#[test]
fn heartbeat_keys_one_or_two_during_a_rollover() {
    let temp = initialised();
    let dir = temp.path().join("pki");
    let layout = Layout::new(&dir);
    let old = load(&dir, "node1").unwrap().heartbeat_keys[0];
    let text = fs::read_to_string(layout.heartbeat_key()).unwrap();
    let new = "ab".repeat(32);
    fs::write(layout.heartbeat_key(), format!("{new}\n{text}")).unwrap();
    let keys = load(&dir, "node1").unwrap().heartbeat_keys;
    assert_eq!(keys, vec![[0xab; 32], old]);

    fs::write(layout.heartbeat_key(), format!("{new}\n{new}\n{new}\n")).unwrap();
    assert_eq!(
        load_error(&dir, "node1").to_string(),
        format!(
            "{}: holds 3 heartbeat keys; 1 (or 2 during a key rollover) expected",
            layout.heartbeat_key().display()
        )
    );
    fs::write(layout.heartbeat_key(), "# comment\n\nabcd\n").unwrap();
    assert_eq!(
        load_error(&dir, "node1").to_string(),
        format!(
            "{}: line 3: a heartbeat key is 32 bytes as 64 hex digits",
            layout.heartbeat_key().display()
        )
    );
    fs::write(layout.heartbeat_key(), "# only a comment\n").unwrap();
    assert_eq!(
        load_error(&dir, "node1").problem,
        Problem::HeartbeatKeyCount { count: 0 }
    );
}

#[test]
fn issue_node_adds_a_node_with_the_existing_ca() {
    let temp = initialised();
    let dir = temp.path().join("pki");
    let layout = Layout::new(&dir);
    let grown = spec(7, &["node1", "node2", "node3"]);
    let written = issue_node(&dir, &grown, "node3", false, SystemTime::now()).unwrap();
    assert_eq!(
        written,
        [layout.node_key("node3"), layout.node_certificate("node3")]
    );
    assert_eq!(mode(&layout.node_key("node3")), 0o600);
    let three = load(&dir, "node3").unwrap();
    assert_eq!(
        three.ca_certificate_der,
        load(&dir, "node1").unwrap().ca_certificate_der
    );

    let e = issue_node(&dir, &grown, "node3", false, SystemTime::now()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: already exists; credentials are not overwritten (--force replaces them)",
            layout.node_certificate("node3").display()
        )
    );
    let before = fs::read(layout.node_certificate("node3")).unwrap();
    issue_node(&dir, &grown, "node3", true, SystemTime::now()).unwrap();
    assert_ne!(fs::read(layout.node_certificate("node3")).unwrap(), before);
    load(&dir, "node3").unwrap();
}

#[test]
fn issue_node_refusals() {
    let temp = initialised();
    let dir = temp.path().join("pki");
    let layout = Layout::new(&dir);
    let e = issue_node(
        &dir,
        &spec(7, &["node1", "node2"]),
        "node9",
        false,
        SystemTime::now(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "node \"node9\" is not in the cluster configuration (did you mean \"node1\"?)"
    );
    assert!(e.is_invalid_input());

    let e = issue_node(
        &dir,
        &spec(8, &["node3"]),
        "node3",
        false,
        SystemTime::now(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: this CA is for cluster id 7, the configuration is cluster id 8",
            layout.ca_certificate().display()
        )
    );
    assert!(e.is_invalid_input());

    let empty = temp.path().join("empty");
    let e = issue_node(
        &empty,
        &spec(7, &["node1"]),
        "node1",
        false,
        SystemTime::now(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: does not exist (run `halcyon init` first)",
            empty.join("ca.key").display()
        )
    );
    assert!(!e.is_invalid_input());

    chmod(&layout.ca_key(), 0o644);
    let e = issue_node(
        &dir,
        &spec(7, &["node3"]),
        "node3",
        false,
        SystemTime::now(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: is accessible by group or others (mode 0644); secret files must be owner-only (chmod 600)",
            layout.ca_key().display()
        )
    );
    assert!(!layout.node_dir("node3").exists());
}

#[test]
fn an_existing_directory_open_to_others_is_refused_and_left_alone() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("shared");
    fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o755);
    let e = init(&dir, &spec(7, &["node1"]), false, SystemTime::now()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: is accessible by group or others (mode 0755); credentials go only in an \
             owner-only directory (chmod 700 it, or choose another --dir)",
            dir.display()
        )
    );
    assert!(!e.is_invalid_input());
    assert_eq!(mode(&dir), 0o755, "the directory's mode is not changed");
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "nothing written");

    // An owner-only directory that exists is used as it is.
    chmod(&dir, 0o700);
    init(&dir, &spec(7, &["node1"]), false, SystemTime::now()).unwrap();
    load(&dir, "node1").unwrap();

    // A nodes directory opened later stops `init node` before it writes.
    chmod(&Layout::new(&dir).nodes_dir(), 0o750);
    let e = issue_node(
        &dir,
        &spec(7, &["node1", "node2"]),
        "node2",
        false,
        SystemTime::now(),
    )
    .unwrap_err();
    assert!(
        matches!(e, InitError::OpenDirectory { mode: 0o750, .. }),
        "{e}"
    );
    assert!(!Layout::new(&dir).node_dir("node2").exists());

    let file = temp.path().join("file");
    fs::write(&file, "").unwrap();
    let e = init(&file, &spec(7, &["node1"]), false, SystemTime::now()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}: exists and is not a directory", file.display())
    );
}

#[test]
fn the_admin_token_is_kept_owner_only_for_the_cli_and_refused_when_others_may_read_it() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("pki");
    let made = init(&dir, &spec(7, &["node1"]), false, SystemTime::now()).unwrap();
    let layout = Layout::new(&dir);
    let admin = &made.tokens[0];
    assert_eq!(admin.role, Role::Admin);
    assert_eq!(
        read_admin_token(&dir).unwrap().as_deref(),
        Some(admin.secret.as_str())
    );
    // The read-only token is not on disk.
    let text = fs::read_to_string(layout.admin_token()).unwrap();
    assert!(!text.contains(&made.tokens[1].secret));

    chmod(&layout.admin_token(), 0o640);
    assert_eq!(
        read_admin_token(&dir).unwrap_err().to_string(),
        format!(
            "{}: is accessible by group or others (mode 0640); secret files must be owner-only (chmod 600)",
            layout.admin_token().display()
        )
    );
    chmod(&layout.admin_token(), 0o600);
    fs::write(layout.admin_token(), "not a token\n").unwrap();
    assert_eq!(
        read_admin_token(&dir).unwrap_err().problem,
        Problem::NotToken
    );
    fs::remove_file(layout.admin_token()).unwrap();
    assert_eq!(read_admin_token(&dir).unwrap(), None);
}
