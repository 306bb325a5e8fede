//! Halcyon's policy engine: a pure function from (configuration, cluster state,
//! event, now) to a plan, plus the node-by-node explanation of a package's
//! placement and the ordering of pending events.
//!
//! Invariants: no I/O, no clock reads (time is an input), no randomness, no
//! async; the same inputs always give the same plan. A failover package is never
//! placed on two nodes (asserted where placements are made and again on the plan).

mod engine;
pub mod event;
pub mod plan;
pub mod state;
pub mod timer;

pub use engine::{Engine, PlanError, explain, plan};
pub use event::{Departure, Event, EventClass, next_event, processing_order};
pub use plan::{
    Action, ActionKind, Explanation, Ineligible, NodeVerdict, Note, Plan, Step, TimeText, render,
    render_with, rfc3339, times_as,
};
pub use state::{ClusterState, PackageState, PackageStatus, StateError};
