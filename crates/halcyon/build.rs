//! Generates the man pages (one per command and subcommand, `clap_mangen`) and the bash, zsh
//! and fish completions (`clap_complete`) from the binary's own command-line definition
//! (`src/cli.rs`, included here), so they cannot drift from what `halcyon` parses.
//!
//! Written under `OUT_DIR` as cargo expects, then copied whole to `target/PROFILE/assets/`
//! (`man/*.1.gz`, `completions/{halcyon.bash,_halcyon,halcyon.fish}`): the one stable place
//! the Debian package's assets (`[package.metadata.deb]`) can name, since `OUT_DIR` has a
//! hash in its path.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

#[allow(dead_code)]
#[path = "src/cli.rs"]
mod cli;

fn main() -> std::io::Result<()> {
    println!("cargo::rerun-if-changed=src/cli.rs");
    println!("cargo::rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let assets = out.join("assets");
    let _ = std::fs::remove_dir_all(&assets);
    let man = assets.join("man");
    let completions = assets.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;

    let mut command = cli::Cli::command();
    clap_mangen::generate_to(command.clone(), &man)?;
    // clap's generated `help` subcommand gets no page of its own (`halcyon help X` is `man
    // halcyon-X`).
    for entry in std::fs::read_dir(&man)? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| {
            n.starts_with("halcyon-help") || n.contains("-help-") || n.ends_with("-help.1")
        }) {
            std::fs::remove_file(path)?;
        }
    }
    // Compressed as Debian policy wants them (cargo-deb compresses only files it did not
    // find under target/); no timestamp in the header, so a build is reproducible.
    for entry in std::fs::read_dir(&man)? {
        let path = entry?.path();
        let page = std::fs::read(&path)?;
        let mut gz = path.clone().into_os_string();
        gz.push(".gz");
        let mut encoder = flate2::GzBuilder::new()
            .mtime(0)
            .write(std::fs::File::create(&gz)?, flate2::Compression::best());
        std::io::Write::write_all(&mut encoder, &page)?;
        encoder.finish()?;
        std::fs::remove_file(&path)?;
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command, "halcyon", &completions)?;
    }

    // OUT_DIR is target/PROFILE/build/halcyon-HASH/out: three levels up is target/PROFILE.
    if let Some(profile_dir) = out.ancestors().nth(3) {
        let stable = profile_dir.join("assets");
        let _ = std::fs::remove_dir_all(&stable);
        copy_tree(&assets, &stable)?;
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
