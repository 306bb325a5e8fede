//! Voter set changes over the API and the CLI.

mod common;

use common::*;

#[test]
fn voters_are_removed_and_added_with_precise_refusals() {
    let mut spec = Spec::new();
    spec.quorum.min_voters = Some(2);
    let c = Cluster::start_with(spec);
    c.wait_all_members(1, FORM_TIMEOUT);
    let coordinator = c.status(1).unwrap()["coordinator"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = ["n1", "n2", "n3"]
        .into_iter()
        .find(|n| *n != coordinator)
        .unwrap();
    let third = ["n1", "n2", "n3"]
        .into_iter()
        .find(|n| *n != coordinator && *n != other)
        .unwrap();

    let (code, out) = cli(&c, 1, &["node", "add", "n7"]);
    assert_eq!(code, 2, "an unknown node is invalid input: {out}");
    assert!(
        out.contains(
            "unknown node \"n7\" (nodes: n1, n2, n3); a voter must be in the applied configuration"
        ),
        "{out}"
    );
    let (code, out) = cli(&c, 2, &["node", "add", other]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("refused: {other} is already a voter")),
        "{out}"
    );

    // Remove one voter (asked through a follower: forwarded to the coordinator).
    let (code, out) = cli(&c, 3, &["node", "remove", other]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("{other} is no longer a voter")),
        "{out}"
    );
    c.wait_for(1, "two voters", FORM_TIMEOUT, |v| {
        v["quorum"]["voters"].as_array().unwrap().len() == 2
    });
    // The minimum holds.
    let (code, out) = cli(&c, 1, &["node", "remove", third]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "refused: removing {third} would leave 1 voter(s); the minimum is 2"
        )),
        "{out}"
    );
    let (code, out) = cli(&c, 1, &["node", "remove", other]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("refused: {other} is not a voter")),
        "{out}"
    );
    // The cluster still commits: a package operation works.
    let (code, body) = c.request(1, "POST", "/v1/packages/web/disable", None);
    assert_eq!(code, 200, "{body}");

    // Added back.
    let (code, out) = cli(&c, 1, &["node", "add", other]);
    assert_eq!(code, 0, "{out}");
    c.wait_for(2, "three voters", FORM_TIMEOUT, |v| {
        v["quorum"]["voters"].as_array().unwrap().len() == 3
    });
    let text = status_text(&c, 3);
    assert!(text.contains("voters: n1, n2, n3"), "{text}");

    // Both changes are in the event log, with who asked and the voters after each; the
    // refused ones are not.
    let (code, v) = c.request(1, "GET", "/v1/events", None);
    assert_eq!(code, 200, "{v}");
    let changes: Vec<&serde_json::Value> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["event"].as_str().unwrap().starts_with("voter_change"))
        .collect();
    assert_eq!(changes.len(), 2, "{v:#}");
    assert_eq!(
        changes[0]["event"],
        format!("voter_change {other}: removed from the voters")
    );
    assert_eq!(
        changes[1]["event"],
        format!("voter_change {other}: added to the voters")
    );
    for (record, voters) in changes.iter().zip([2, 3]) {
        let by = record["by"].as_str().unwrap();
        assert!(by.starts_with("token admin from 127.0.0.1:"), "{record:#}");
        let note = record["notes"][0]["text"].as_str().unwrap();
        assert!(note.starts_with("voters: "), "{record:#}");
        assert_eq!(note.split(", ").count(), voters, "{record:#}");
    }
    assert_eq!(changes[0]["outcome"], "done", "{:#}", changes[0]);
}
