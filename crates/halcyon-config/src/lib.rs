//! Halcyon configuration: the validated model ([`model`]), loading from TOML files
//! with every mistake reported at once ([`load`]), and the diagnostics format
//! (`file:line:column: field: what is wrong; expected ...; hint ...`).
//!
//! Invariants: a [`Config`] returned by [`load`] is fully validated (every name it
//! refers to exists, no dependency cycles, addresses inside their subnets, timings
//! that can work); this crate reads files but never writes, and reads no clock.

pub mod checks;
pub mod diagnostic;
pub mod import_sg;
mod load;
pub mod model;
mod reader;
mod validate;

pub use checks::{ValueChecks, ValueError};
pub use diagnostic::{Diagnostic, Diagnostics};
pub use import_sg::{ServiceguardImport, import_serviceguard};
pub use load::{ALL_NODES, Summary, collect_files, load, load_texts, load_texts_with, load_with};
pub use model::*;
pub use validate::{LEASE_MARGIN, RaftTiming};
