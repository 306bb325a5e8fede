//! Halcyon membership: heartbeats over every network and failure detection (SPEC 5).
//!
//! Layers, from pure to I/O:
//! - [`detector`]: the failure detector. Pure: no I/O, no clock reads, no threads; time is an
//!   input, so the deterministic simulator drives the same code as the daemon.
//! - [`wire`]: the fixed-size heartbeat message, encoded through a [`wire::Sealer`]:
//!   [`wire::Plain`], or [`hmac_sealer::HmacSealer`] (HMAC-SHA256 with the cluster key and a
//!   replay window per path; forged, replayed and other-cluster heartbeats counted).
//! - [`link`]: the [`link::HeartbeatLink`] transport trait, with [`udp`] (ip networks) and
//!   [`disk`] (disk networks) implementations; a simulator supplies its own.
//! - `heartbeat` (private): what every driver does with a heartbeat (build, seal, open, route,
//!   judge, count, publish changes and the status), time an input: one implementation for both
//!   drivers below.
//! - [`runner`]: the heartbeat thread (std thread, real-time priority when permitted) that sends,
//!   receives, feeds the detector and publishes changes and a status snapshot: the daemon's
//!   driver.
//! - [`task`]: the same driver as a future on tokio's clock, over [`task::AsyncHeartbeatLink`]s:
//!   the deterministic simulator's driver (a current-thread runtime with paused time).
//!
//! Invariants: only [`runner`] and [`disk`] spawn threads; only [`task`] uses async, and it
//! spawns nothing and reads no clock but tokio's; the detector reads no clock; every queue,
//! buffer and loop is bounded (limits are named constants).

/// The message of a lock's `expect`: a poisoned lock means a thread panicked holding it.
pub(crate) const POISONED: &str = "a lock was poisoned: a thread panicked while holding it";

pub mod detector;
pub mod disk;
mod heartbeat;
pub mod hmac_sealer;
pub mod link;
pub mod runner;
pub mod task;
pub mod udp;
pub mod wire;

pub use detector::{
    AdapterAction, Change, Detector, DetectorConfig, DetectorError, DownCause, Heard, NetworkSpec,
    NodeState, PathSpec, PathState, Snapshot,
};
pub use heartbeat::{LinkPeer, LinkPeers};
pub use hmac_sealer::{HmacSealer, SealCounts, SealerHandle};
pub use link::{
    Arrived, ArrivedAt, HeartbeatLink, LinkEndpoint, SetupError, addresses_of, link_endpoints,
    link_of, link_peers, links_from_cluster,
};
pub use runner::{ChangeBatch, Counters, LinkControl, Runner, RunnerSettings, StartError, Status};
pub use task::{AsyncHeartbeatLink, HeartbeatControl, HeartbeatTask};
pub use wire::{HeartbeatMessage, Plain, SealError, Sealer, WireError};
