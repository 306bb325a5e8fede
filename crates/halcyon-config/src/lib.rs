//! Halcyon configuration: the validated model ([`model`]), the lease and Raft timing
//! rule ([`timing`]), loading from TOML files with every mistake reported at once
//! ([`load`]), and the diagnostics format
//! (`file:line:column: field: what is wrong; expected ...; hint ...`).
//!
//! Invariants: a [`Config`] returned by [`load`] is fully validated (every name it
//! refers to exists, no dependency cycles, addresses inside their subnets, timings
//! that can work); this crate reads files but never writes, and reads no clock.
//!
//! Loading is a one-way pipeline, read -> assemble -> validate. The modules, in
//! order; each module only uses the ones above it (`tests/pipeline.rs` checks it
//! against this list):
//!
//! 1. `diagnostic`: the diagnostics format, source positions, "did you mean".
//! 2. `checks`: the hook through which callers check values in other crates' languages.
//! 3. `model`: the validated types, limits and defaults.
//! 4. `timing`: the lease and Raft timing rule, derived from the heartbeat.
//! 5. `reader`: typed fields out of toml's spanned tree, collecting every mistake.
//! 6. `read`: files -> raw parts (cluster, packages) and where each came from.
//! 7. `assemble`: raw parts -> one model; names across files resolved.
//! 8. `validate`: checks across fields and files on the assembled model.
//! 9. `load`: runs the pipeline; the public entry points.
//! 10. `import_sg`: the Serviceguard importer (writes TOML; uses only the model).
//! 11. `drift`: how two models differ, said for an administrator (a node's files against
//!     the running configuration).

// In pipeline order; the blank lines keep rustfmt from sorting them.
pub mod diagnostic;

pub mod checks;

pub mod model;

pub mod timing;

mod reader;

mod read;

mod assemble;

mod validate;

mod load;

pub mod import_sg;

pub mod drift;

pub use checks::{ValueChecks, ValueError};
pub use diagnostic::{Diagnostic, Diagnostics};
pub use import_sg::{ServiceguardImport, import_serviceguard};
pub use load::{Summary, load, load_texts, load_texts_with, load_with};
pub use model::*;
pub use read::{ALL_NODES, collect_files, named_sources};
pub use timing::{LEASE_MARGIN, RaftTiming};
