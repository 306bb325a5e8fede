//! Halcyon configuration.
pub mod model;
pub use model::*;
