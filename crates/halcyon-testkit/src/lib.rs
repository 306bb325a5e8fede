//! One test kit for live Halcyon clusters, shared by the daemon's multi-process tests, the
//! benchmark and the lab:
//!
//! - [`ports`]: blocks of consecutive ports that no other test process on this machine can be
//!   handed at the same time (a lock file per port under one fixed directory, held by a guard,
//!   plus a bind check of every port);
//! - [`config`]: a cluster directory (`cluster.toml`, package files, extra files) written from
//!   typed settings;
//! - [`cluster`]: one loopback cluster of daemon processes, which signals only the processes it
//!   started (by PID), also when dropped during a panic;
//! - [`http`]: a small blocking HTTP/1.1 client with one deadline per request.
//! - [`events`]: a takeover's steps read out of the event log's JSON.
//! - [`schema`]: checks a JSON value against the JSON Schema subset `schemars` writes.
//!
//! Invariants: every wait is bounded; nothing here signals a process it did not start or that
//! was not started by one of its daemons (service process groups recorded in a daemon's run
//! directory, processes whose command line names the cluster's own directory).

pub mod cluster;
pub mod config;
pub mod events;
pub mod expect;
pub mod http;
pub mod ports;
pub mod schema;

pub use cluster::{Cluster, Launch, WaitError};
pub use config::{ClusterConfig, Node, Package, Resource, Webhook};
pub use ports::{PortAllocator, PortBlock, PortError};
