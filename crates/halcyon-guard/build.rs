//! `HALCYON_GUARD_BUILD`: a digest of this crate's sources, compiled into the guard (its
//! `event ready` line) and into the daemon that spawns it (`halcyon_guard::BUILD`), so that a
//! `halcyon-guard` binary built from other sources than the daemon's is refused rather than
//! spoken to with a protocol it may not share.

use std::hash::{Hash, Hasher};
use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("the crate's sources are readable")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("Cargo.toml")];
    sources(&root.join("src"), &mut files);
    // SipHash with fixed keys: the same sources give the same digest on every build.
    let mut digest = std::hash::DefaultHasher::new();
    for file in &files {
        file.strip_prefix(root)
            .expect("under the crate")
            .hash(&mut digest);
        std::fs::read(file)
            .expect("a source file is readable")
            .hash(&mut digest);
    }
    println!(
        "cargo:rustc-env=HALCYON_GUARD_BUILD={:016x}",
        digest.finish()
    );
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.toml");
}
