//! `halcyon init rollover start|switch|finish`: every step keeps a node that has it and a node
//! still on the step before trusting each other (certificates and heartbeat keys); steps out
//! of order, and a finish while a node certificate is of the old CA, are refused and change
//! nothing. And `load`'s checks of a CA bundle.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use halcyon_pki::{
    ClusterSpec, Credentials, InitError, Layout, NodeSigner, NodeSpec, PeerRefusal, PeerVerifier,
    Problem, Step, init, load, rollover,
};

fn spec(id: u64) -> ClusterSpec {
    ClusterSpec {
        name: "test".into(),
        id,
        nodes: ["node1", "node2"]
            .iter()
            .enumerate()
            .map(|(i, name)| NodeSpec {
                name: (*name).into(),
                addresses: vec![format!("198.18.1.{}", i + 1).parse().unwrap()],
            })
            .collect(),
    }
}

/// Every file under `dir` with its contents.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                files.insert(path.clone(), fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// Copies `from` to `to` with the files' modes (a node's copy of the credentials).
fn copy(from: &Path, to: &Path) {
    for (path, bytes) in contents(from) {
        let target = to.join(path.strip_prefix(from).unwrap());
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::set_permissions(target.parent().unwrap(), fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(&target, bytes).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        fs::set_permissions(&target, fs::Permissions::from_mode(mode)).unwrap();
    }
    fs::set_permissions(to, fs::Permissions::from_mode(0o700)).unwrap();
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Whether `receiver` accepts a node request signed by `sender` (node2).
fn accepts(receiver: &Credentials, sender: &Credentials) -> Result<(), PeerRefusal> {
    let signer = NodeSigner::new(sender).unwrap();
    let signature = signer.sign(b"renew");
    PeerVerifier::new(receiver).verify(
        signer.certificate_der(),
        &sender.node,
        b"renew",
        &signature,
        now(),
    )
}

/// Whether `receiver` accepts the heartbeats `sender` signs (with its first key).
fn hears(receiver: &Credentials, sender: &Credentials) -> bool {
    receiver.heartbeat_keys.contains(&sender.heartbeat_keys[0])
}

#[test]
fn each_step_and_the_one_before_trust_each_other() {
    let temp = tempfile::tempdir().unwrap();
    let admin = temp.path().join("admin");
    init(&admin, &spec(7), false, SystemTime::now()).unwrap();
    // A node's credentials after each step: node1 takes the step, node2 is one behind.
    let before = temp.path().join("before");
    copy(&admin, &before);
    let mut stages = vec![before];
    let mut copied = Vec::new();
    for step in [Step::Start, Step::Switch, Step::Finish] {
        let rolled = rollover(&admin, &spec(7), step, SystemTime::now()).unwrap();
        assert!(!rolled.written.is_empty());
        copied.push(rolled.to_copy);
        let stage = temp.path().join(format!("after-{}", step.as_str()));
        copy(&admin, &stage);
        stages.push(stage);
    }
    assert_eq!(copied[0], vec!["ca.crt", "heartbeat.key"]);
    assert_eq!(
        copied[1],
        vec![
            "heartbeat.key",
            "nodes/NAME/node.crt",
            "nodes/NAME/node.key"
        ]
    );
    assert_eq!(copied[2], vec!["ca.crt", "heartbeat.key"]);
    let loaded: Vec<(Credentials, Credentials)> = stages
        .iter()
        .map(|d| (load(d, "node1").unwrap(), load(d, "node2").unwrap()))
        .collect();
    assert_eq!(
        loaded
            .iter()
            .map(|(c, _)| c.trusted_cas_der.len())
            .collect::<Vec<_>>(),
        vec![1, 2, 2, 1]
    );
    for (i, pair) in loaded.windows(2).enumerate() {
        let (ahead, behind) = (&pair[1].0, &pair[0].1);
        assert_eq!(accepts(ahead, behind), Ok(()), "step {i}");
        assert_eq!(accepts(behind, ahead), Ok(()), "step {i}");
        assert!(hears(ahead, behind) && hears(behind, ahead), "step {i}");
    }
    // Two steps apart they do not: the order of the steps matters.
    let (before, switched) = (&loaded[0].1, &loaded[2].0);
    assert_eq!(accepts(before, switched), Err(PeerRefusal::NotOurCa));
    assert!(!hears(before, switched));
    let (started, finished) = (&loaded[1].1, &loaded[3].0);
    assert_eq!(accepts(finished, started), Err(PeerRefusal::NotOurCa));
    assert!(!hears(finished, started));
    // The cluster is the same, its CA another one.
    assert_eq!(loaded[3].0.cluster_id, 7);
    assert_ne!(
        loaded[3].0.ca_certificate_der,
        loaded[0].0.ca_certificate_der
    );
    assert!(!admin.join(halcyon_pki::ROLLOVER_FILE).exists());
}

#[test]
fn steps_out_of_order_are_refused_and_change_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("pki");
    init(&dir, &spec(7), false, SystemTime::now()).unwrap();
    let refused = |step: Step| {
        let before = contents(&dir);
        let e = rollover(&dir, &spec(7), step, SystemTime::now()).unwrap_err();
        assert_eq!(contents(&dir), before, "{step:?} changed files");
        e.to_string()
    };
    assert_eq!(
        refused(Step::Switch),
        "`halcyon init rollover switch` is not the next step: no rollover is under way here \
         (`halcyon init rollover start` begins one)"
    );
    assert!(refused(Step::Finish).contains("no rollover is under way"));
    rollover(&dir, &spec(7), Step::Start, SystemTime::now()).unwrap();
    assert_eq!(
        refused(Step::Start),
        "`halcyon init rollover start` is not the next step: this directory is at step start \
         (`halcyon init rollover switch` is next)"
    );
    assert!(refused(Step::Finish).contains("`halcyon init rollover switch` is next"));
    // Another cluster's configuration.
    let e = rollover(&dir, &spec(8), Step::Switch, SystemTime::now()).unwrap_err();
    assert!(
        matches!(
            e,
            InitError::WrongCluster {
                expected: 8,
                found: 7,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn finish_is_refused_while_a_node_certificate_is_of_the_old_ca() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("pki");
    init(&dir, &spec(7), false, SystemTime::now()).unwrap();
    let layout = Layout::new(&dir);
    let old_certificate = fs::read(layout.node_certificate("node2")).unwrap();
    rollover(&dir, &spec(7), Step::Start, SystemTime::now()).unwrap();
    rollover(&dir, &spec(7), Step::Switch, SystemTime::now()).unwrap();
    fs::write(layout.node_certificate("node2"), old_certificate).unwrap();
    let before = contents(&dir);
    let e = rollover(&dir, &spec(7), Step::Finish, SystemTime::now()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: is not signed by the new CA: `halcyon init node node2 --force`, copy it to the \
             node and reload it before finishing",
            layout.node_certificate("node2").display()
        )
    );
    assert_eq!(contents(&dir), before);
}

#[test]
fn a_ca_bundle_is_checked_certificate_by_certificate() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("pki");
    init(&dir, &spec(7), false, SystemTime::now()).unwrap();
    let other = temp.path().join("other");
    init(&other, &spec(9), false, SystemTime::now()).unwrap();
    let layout = Layout::new(&dir);
    let ours = fs::read_to_string(layout.ca_certificate()).unwrap();
    let theirs = fs::read_to_string(Layout::new(&other).ca_certificate()).unwrap();
    let node = fs::read_to_string(layout.node_certificate("node1")).unwrap();
    let problem = |bundle: String| {
        fs::write(layout.ca_certificate(), bundle).unwrap();
        load(&dir, "node1").unwrap_err().problem
    };
    assert_eq!(
        problem(format!("{ours}{ours}{ours}")),
        Problem::CaCount { count: 3 }
    );
    assert_eq!(
        problem(format!("{ours}{theirs}")),
        Problem::CasDisagree {
            first: 7,
            second: 9
        }
    );
    assert_eq!(
        problem(format!("{ours}{node}")),
        Problem::InBundle {
            index: 2,
            problem: Box::new(Problem::NotCa)
        }
    );
    assert!(matches!(
        problem("no certificate here\n".into()),
        Problem::NotCertificate(_)
    ));
    // Both ours (the same CA twice) loads.
    fs::write(layout.ca_certificate(), format!("{ours}{ours}")).unwrap();
    assert_eq!(load(&dir, "node1").unwrap().trusted_cas_der.len(), 2);
}
