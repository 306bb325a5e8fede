//! The coordinator (on the Raft leader). Its decisions are the pure function
//! [`decide::decide`]; the runtime that feeds it and commits what it decides is
//! `Node::coordinator_loop` for now.

pub mod decide;

use tracing::Level;

/// Emits a log line of a decision.
pub(crate) fn emit(line: &decide::Log) {
    let message = &line.message;
    match line.level {
        Level::ERROR => tracing::error!("{message}"),
        Level::WARN => tracing::warn!("{message}"),
        Level::INFO => tracing::info!("{message}"),
        Level::DEBUG => tracing::debug!("{message}"),
        _ => tracing::trace!("{message}"),
    }
}
