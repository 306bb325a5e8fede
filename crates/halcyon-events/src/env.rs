//! The environment given to every command of an event (recovery program lines,
//! pre/post-event, recovery and notify commands).
//!
//! | variable                    | value                                                        |
//! | --------------------------- | ------------------------------------------------------------ |
//! | `HALCYON_EVENT`, `EVNAME`   | the event name (`node_up`, `UE_PGMRWHO_DOWN`)                 |
//! | `HALCYON_EVENT_STATE`       | the state qualifier, if any (`graceful` for a node_down)      |
//! | `HALCYON_EVENT_NODE`        | the event node's name (empty if none)                        |
//! | `HALCYON_EVENT_NODE_NUMBER`, `EVLOCATION` | the event node's number (the seeds print "SP-Node $EVLOCATION"); empty if none |
//! | `HALCYON_NETWORK`           | the network (empty if none)                                   |
//! | `HALCYON_TIMESTAMP`, `TIMESTAMP` | when the event happened, RFC 3339 UTC (`2024-05-01T10:00:00Z`) |
//! | `HALCYON_CLUSTER`           | the cluster name                                              |
//! | `HALCYON_PACKAGE`           | the package, for package events (empty otherwise)             |
//! | `HALCYON_MEMBERS`           | the members' names, in node number order, space-separated     |
//! | `HALCYON_RESOURCE_VARIABLE`, `HALCYON_INSTANCE_VECTOR` | user-defined events: what was sampled |
//! | `HALCYON_VALUE`             | user-defined events: the sampled value (its field 0)          |
//! | `HALCYON_VALUE_0` ... `HALCYON_VALUE_n` | user-defined events: the fields of a structured value (`X@0`, `X@1` in predicates) |
//! | `HALCYON_VALUE_COUNT`       | user-defined events: how many fields                          |
//!
//! The seeds show no variable names for sampled values (their predicates' `X@0` are
//! not variables), so only `EVNAME`, `EVLOCATION` and `TIMESTAMP` have seed names.
//! Each launch adds its own (`HALCYON_SEGMENT`, `HALCYON_ATTEMPT`, the notify phase
//! and result, the failed command for a recovery command), see `run.rs`.

use halcyon_config::{Config, NetworkName, NodeName, PackageName};
use halcyon_policy::Event;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Most fields of a sampled value passed as variables.
pub const VALUES_MAX: usize = 32;
/// Longest variable value, in bytes (longer values are cut).
pub const VALUE_LENGTH_MAX: usize = 4_096;

/// A monitor's sample that fired a user-defined event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub resource_variable: String,
    pub instance_vector: String,
    /// The value's fields (one for a plain number).
    pub values: Vec<String>,
}

/// What the environment is made from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventContext {
    pub event: String,
    pub state: Option<String>,
    pub event_node: Option<NodeName>,
    pub event_node_number: Option<u32>,
    pub network: Option<NetworkName>,
    pub timestamp: Timestamp,
    pub cluster: String,
    pub package: Option<PackageName>,
    /// In node number order.
    pub members: Vec<NodeName>,
    pub sample: Option<Sample>,
}

impl EventContext {
    /// The context of a policy engine event, numbers and cluster name from `config`.
    /// `members` must be in node number order.
    pub fn for_event(
        config: &Config,
        event: &Event,
        members: Vec<NodeName>,
        timestamp: Timestamp,
    ) -> EventContext {
        let event_node = event.node().cloned();
        let event_node_number = event_node
            .as_ref()
            .and_then(|n| config.node(n.as_str()))
            .map(|n| n.number);
        let package = match event {
            Event::PackageFailed { package, .. }
            | Event::PackageRun { package, .. }
            | Event::PackageHalt { package, .. }
            | Event::PackageMove { package, .. }
            | Event::PackageEnable { package, .. }
            | Event::PackageDisable { package, .. }
            | Event::PackageClear { package, .. } => Some(package.clone()),
            _ => None,
        };
        let state = match event {
            Event::NodeDown { how, .. } => Some(how.to_string()),
            _ => None,
        };
        EventContext {
            event: event.name().to_owned(),
            state,
            event_node,
            event_node_number,
            network: event.network().cloned(),
            timestamp,
            cluster: config.cluster.name.clone(),
            package,
            members,
            sample: None,
        }
    }
}

/// The variables for every command of the event, in a fixed order.
pub fn environment(context: &EventContext) -> Vec<(String, String)> {
    let mut vars: Vec<(&str, String)> = Vec::new();
    let node = context
        .event_node
        .as_ref()
        .map_or(String::new(), |n| n.as_str().to_owned());
    let number = context
        .event_node_number
        .map_or(String::new(), |n| n.to_string());
    let timestamp = context.timestamp.to_string();
    vars.push(("HALCYON_EVENT", context.event.clone()));
    vars.push((
        "HALCYON_EVENT_STATE",
        context.state.clone().unwrap_or_default(),
    ));
    vars.push(("HALCYON_EVENT_NODE", node));
    vars.push(("HALCYON_EVENT_NODE_NUMBER", number.clone()));
    vars.push((
        "HALCYON_NETWORK",
        context
            .network
            .as_ref()
            .map_or(String::new(), |n| n.as_str().to_owned()),
    ));
    vars.push(("HALCYON_TIMESTAMP", timestamp.clone()));
    vars.push(("HALCYON_CLUSTER", context.cluster.clone()));
    vars.push((
        "HALCYON_PACKAGE",
        context
            .package
            .as_ref()
            .map_or(String::new(), |p| p.as_str().to_owned()),
    ));
    let members: Vec<&str> = context.members.iter().map(NodeName::as_str).collect();
    vars.push(("HALCYON_MEMBERS", members.join(" ")));
    vars.push(("EVNAME", context.event.clone()));
    vars.push(("EVLOCATION", number));
    vars.push(("TIMESTAMP", timestamp));
    let mut out: Vec<(String, String)> = vars
        .into_iter()
        .map(|(k, v)| (k.to_owned(), clean(&v)))
        .collect();
    if let Some(sample) = &context.sample {
        out.push((
            "HALCYON_RESOURCE_VARIABLE".to_owned(),
            clean(&sample.resource_variable),
        ));
        out.push((
            "HALCYON_INSTANCE_VECTOR".to_owned(),
            clean(&sample.instance_vector),
        ));
        let values = &sample.values[..sample.values.len().min(VALUES_MAX)];
        out.push((
            "HALCYON_VALUE".to_owned(),
            clean(values.first().map_or("", String::as_str)),
        ));
        out.push(("HALCYON_VALUE_COUNT".to_owned(), values.len().to_string()));
        for (i, v) in values.iter().enumerate() {
            out.push((format!("HALCYON_VALUE_{i}"), clean(v)));
        }
    }
    out
}

/// A value fit for the environment: no NUL bytes, at most [`VALUE_LENGTH_MAX`] bytes.
fn clean(value: &str) -> String {
    let mut v = value.replace('\0', "");
    if v.len() > VALUE_LENGTH_MAX {
        let mut end = VALUE_LENGTH_MAX;
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        v.truncate(end);
    }
    v
}
