//! Reading a takeover out of the event log's JSON (`GET /v1/events`, `halcyon events --json`),
//! for the benchmark and the lab: the last finished `node_down` record of the failed node,
//! when it was queued and when its plan's `await_release` (the lease released) and `run`
//! (the package started) were done. Times stay the RFC 3339 strings the daemon wrote.

use serde_json::Value;

/// A takeover's steps as the event log dates them (RFC 3339, the coordinator's and the
/// executors' wall clocks).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Takeover {
    /// The `node_down` queued (detection).
    pub queued_at: Option<String>,
    /// The plan's `await_release` done: the failed node's lease certainly over.
    pub released_at: Option<String>,
    /// The plan's `run` done: the package started elsewhere.
    pub run_at: Option<String>,
}

/// The takeover of `node`'s packages in `events` (a list of records, or `{"events": [...]}`):
/// from its last finished `node_down` record; `None` while there is none.
pub fn takeover(events: &Value, node: &str) -> Option<Takeover> {
    let records = events.as_array().or_else(|| events["events"].as_array())?;
    let prefix = format!("node_down {node} ");
    let record = records.iter().rev().find(|r| {
        r["event"].as_str().is_some_and(|e| e.starts_with(&prefix)) && !r["finished_at"].is_null()
    })?;
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let action_at = |kind: &str| {
        record["actions"]
            .as_array()?
            .iter()
            .find(|a| a["kind"] == kind)
            .and_then(|a| text(&a["at"]))
    };
    Some(Takeover {
        queued_at: text(&record["queued_at"]),
        released_at: action_at("await_release"),
        run_at: action_at("run"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The node's last finished `node_down` is taken, wrapped or not; an unfinished one, or
    /// another node's, is not.
    #[test]
    fn the_takeover_is_the_nodes_last_finished_node_down() {
        let events = serde_json::json!([
            {"event": "node_down h1 (failure)", "queued_at": "a", "finished_at": "b",
             "actions": []},
            {"event": "node_down h10 (failure)", "queued_at": "c", "finished_at": "d",
             "actions": []},
            {"event": "node_down h1 (failure)", "queued_at": "e", "finished_at": "f",
             "actions": [{"kind": "await_release", "at": "g"}, {"kind": "run", "at": "h"}]},
            {"event": "node_down h1 (failure)", "queued_at": "i", "finished_at": null,
             "actions": []}
        ]);
        let expected = Takeover {
            queued_at: Some("e".into()),
            released_at: Some("g".into()),
            run_at: Some("h".into()),
        };
        assert_eq!(takeover(&events, "h1"), Some(expected.clone()));
        let wrapped = serde_json::json!({ "events": events });
        assert_eq!(takeover(&wrapped, "h1"), Some(expected));
        assert_eq!(takeover(&events, "h2"), None);
        assert_eq!(
            takeover(&events, "h10").map(|t| t.queued_at),
            Some(Some("c".into()))
        );
    }
}
