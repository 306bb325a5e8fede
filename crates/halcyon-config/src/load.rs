//! Loading a configuration: the pipeline run in order. The files are read into
//! their raw parts (`read`), the cluster file is checked, the parts are joined into
//! one model (`assemble`), and the model is checked across packages (`validate`).
//!
//! Invariant: `load` returns either a fully validated [`Config`] or every mistake
//! it found; it never returns a half-checked configuration.

use std::path::PathBuf;

use crate::assemble;
use crate::diagnostic::{Diagnostics, SourceFile};
use crate::model::*;
use crate::read::{self, Read};
use crate::validate;

/// Summary counts for `halcyon check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub files: usize,
    pub nodes: usize,
    pub networks: usize,
    pub packages: usize,
}

impl Config {
    pub fn summary(&self, files: usize) -> Summary {
        Summary {
            files,
            nodes: self.cluster.nodes.len(),
            networks: self.cluster.networks.len(),
            packages: self.packages.len(),
        }
    }
}
/// Loads and validates the configuration in `paths` (files or directories).
pub fn load(paths: &[PathBuf]) -> Result<(Config, usize), Diagnostics> {
    load_with(paths, None)
}

/// Like [`load`], also checking monitor predicates and samplers with `checks`.
pub fn load_with(
    paths: &[PathBuf],
    checks: Option<&dyn crate::checks::ValueChecks>,
) -> Result<(Config, usize), Diagnostics> {
    let sources = read::source_files(paths)?;
    let count = sources.len();
    load_sources(sources, checks).map(|c| (c, count))
}

/// Loads and validates a configuration from in-memory files `(path, text)`.
pub fn load_texts(files: &[(&str, &str)]) -> Result<Config, Diagnostics> {
    load_texts_with(files, None)
}

/// Like [`load_texts`], also checking monitor predicates and samplers with `checks`.
pub fn load_texts_with(
    files: &[(&str, &str)],
    checks: Option<&dyn crate::checks::ValueChecks>,
) -> Result<Config, Diagnostics> {
    load_sources(
        files
            .iter()
            .map(|(p, t)| SourceFile::new(PathBuf::from(p), (*t).to_owned()))
            .collect(),
        checks,
    )
}
fn load_sources(
    sources: Vec<SourceFile>,
    checks: Option<&dyn crate::checks::ValueChecks>,
) -> Result<Config, Diagnostics> {
    let Read {
        files,
        cluster,
        packages,
        origins,
        mut diagnostics,
    } = read::read_sources(sources, checks);
    if let Some(c) = &cluster {
        validate::check_cluster(
            &files.sources[c.file],
            &c.cluster,
            &c.spans,
            &mut diagnostics,
        );
    }
    let config = match cluster {
        // An unreadable cluster file was reported; checking the packages against
        // no cluster would only add knock-on errors.
        _ if origins.unreadable_cluster => None,
        Some(c) => {
            let assembled = assemble::assemble(&files, c.cluster, packages, &mut diagnostics);
            validate::check_packages(&files, &assembled, &origins, &mut diagnostics);
            Some(Config {
                cluster: assembled.cluster,
                packages: assembled.packages,
            })
        }
        None => None,
    };
    let mut diagnostics = Diagnostics(diagnostics);
    diagnostics.sort();
    match config {
        Some(config) if diagnostics.is_empty() => Ok(config),
        _ => Err(diagnostics),
    }
}
