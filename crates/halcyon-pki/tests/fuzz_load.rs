//! Property test of `load` on damaged credential files: one file of a valid set (CA
//! certificate, node certificate, node key, heartbeat key, tokens) with bytes flipped,
//! removed or added. No input panics; unless the damage is harmless (a comment, trailing
//! text after the PEM block), the refusal names the damaged file.
//!
//! Cases: `HALCYON_FUZZ_CASES` (the long run), else a CI-sized default.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::SystemTime;

use halcyon_pki::{ClusterSpec, Layout, NodeSpec, init, load};
use proptest::prelude::*;
use proptest::test_runner::Config;

fn config(default_cases: u32) -> Config {
    let cases = std::env::var("HALCYON_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

#[derive(Clone, Debug)]
enum Edit {
    Flip { at: usize, mask: u8 },
    Delete { at: usize, len: usize },
    Insert { at: usize, bytes: Vec<u8> },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1..=u8::MAX).prop_map(|(at, mask)| Edit::Flip { at, mask }),
        (any::<usize>(), 1..16usize).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
    ]
}

fn apply(bytes: &mut Vec<u8>, edits: &[Edit]) {
    for e in edits {
        match e {
            Edit::Flip { at, mask } => {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] ^= mask;
                }
            }
            Edit::Delete { at, len } => {
                let start = at % (bytes.len() + 1);
                let end = (start + len).min(bytes.len());
                bytes.drain(start..end);
            }
            Edit::Insert { at, bytes: more } => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, more.iter().copied());
            }
        }
    }
}

/// A valid set of credentials: its directory (kept alive) and each file's path relative to
/// it and contents.
type Pristine = (tempfile::TempDir, Vec<(PathBuf, Vec<u8>)>);

/// The valid set, made once.
fn pristine() -> &'static Pristine {
    static PRISTINE: OnceLock<Pristine> = OnceLock::new();
    PRISTINE.get_or_init(|| {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("pki");
        let spec = ClusterSpec {
            name: "fuzz".into(),
            id: 3,
            nodes: vec![NodeSpec {
                name: "n1".into(),
                addresses: vec![],
            }],
        };
        init(&dir, &spec, false, SystemTime::now()).unwrap();
        let layout = Layout::new(&dir);
        let files = [
            layout.ca_certificate(),
            layout.node_certificate("n1"),
            layout.node_key("n1"),
            layout.heartbeat_key(),
            layout.tokens(),
        ]
        .into_iter()
        .map(|p| {
            (
                p.strip_prefix(&dir).unwrap().to_path_buf(),
                fs::read(&p).unwrap(),
            )
        })
        .collect();
        (temp, files)
    })
}

proptest! {
    #![proptest_config(config(200))]

    #[test]
    fn a_damaged_file_is_refused_naming_it_never_a_panic(
        which in 0..5usize,
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let (_, files) = pristine();
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("pki");
        for (i, (relative, contents)) in files.iter().enumerate() {
            let path = dir.join(relative);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            let mut contents = contents.clone();
            if i == which {
                apply(&mut contents, &edits);
            }
            fs::write(&path, &contents).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        }
        let damaged = dir.join(&files[which].0);
        if let Err(e) = load(&dir, "n1") {
            prop_assert_eq!(&e.path, &damaged, "{}", e);
            prop_assert!(!e.to_string().is_empty());
        }
    }
}

#[test]
fn the_pristine_copy_loads() {
    let (temp, _) = pristine();
    load(&temp.path().join("pki"), "n1").unwrap();
}
