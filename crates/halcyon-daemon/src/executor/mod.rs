//! The executor: carries out this node's share of the current plan, runs the event commands
//! handed to it, and reconciles what runs here with what the view places here.
//!
//! `decide` holds the decisions (pure, with scenario files in `tests/executor/`); the
//! runtime (`Node::executor_loop`) owns the executor's [`decide::Memory`] and learns of
//! what other tasks saw through its inbox ([`Inbox`]).

pub mod decide;

use halcyon_config::PackageName;

/// How many messages may wait in the executor's inbox. A package has at most three
/// outstanding at once (its supervisor's `Failed`, then it ends; a monitor's `Failed`; a
/// plan action's `Started` or `Failed`), so with this capacity no sender ever waits: a
/// supervisor blocked on a full inbox while the executor awaits that supervisor's halt
/// would be a deadlock. tokio allocates the queue in small blocks as it fills, not up
/// front.
pub(crate) const INBOX_CAPACITY: usize = 3 * halcyon_config::limits::PACKAGES_MAX;

/// What other tasks tell the executor.
#[derive(Debug)]
pub(crate) enum Inbox {
    /// The package failed here (restarts exhausted, a monitor failed it, its start failed):
    /// reconciliation must not start it here again while the view places it here. Sent
    /// before the package leaves the node's running packages, so that a decision that no
    /// longer sees it running has this message first.
    Failed(PackageName),
    /// The package started here: it has not failed here.
    Started(PackageName),
}

impl decide::Memory {
    /// Takes in one message of the inbox.
    pub(crate) fn note(&mut self, message: Inbox) {
        match message {
            Inbox::Failed(package) => {
                self.failed_here.insert(package);
            }
            Inbox::Started(package) => {
                self.failed_here.remove(&package);
            }
        }
    }
}
