//! The executor: carries out this node's share of the current plan, runs the event commands
//! handed to it, and reconciles what runs here with what the view places here.
//!
//! `decide` holds the decisions (pure, with scenario files in `tests/executor/`); the
//! runtime (`node/executor.rs`) owns the executor's [`decide::Memory`] and the packages
//! running here, and learns of what other tasks saw through its inbox.

pub mod decide;

/// How many messages may wait in the executor's inbox. A package has at most three
/// outstanding at once (its supervisor's `Ended`; a monitor's `Fail`; a plan action's
/// `Started` or `StartFailed`), and the daemon's shutdown one `HaltAll`, so with this
/// capacity no sender ever waits: a supervisor blocked on a full inbox while the executor
/// awaits that supervisor's halt would be a deadlock. tokio allocates the queue in small
/// blocks as it fills, not up front.
pub(crate) const INBOX_CAPACITY: usize = 3 * halcyon_config::limits::PACKAGES_MAX + 1;
