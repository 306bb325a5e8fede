//! Property tests of the API's JSON request bodies (issue 17): every request type the daemon
//! deserialises from a client or a peer, fed random bytes, random JSON values and mutated
//! valid bodies. No input panics; a refusal is an error value; an accepted body serialises
//! and parses back to the same value; nesting far beyond any body is refused, not a stack
//! overflow.
//!
//! Cases per property: `HALCYON_FUZZ_CASES` (the long run), else a CI-sized default.

use halcyon_api::{
    EmulateRequest, EventsQuery, HeartbeatFaultRequest, LeaseRequest, NodeRequest, PackageRequest,
    RaiseRequest,
};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn config(default_cases: u32) -> Config {
    let cases = std::env::var("HALCYON_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Valid bodies of every request type.
const VALID: &[&str] = &[
    r#"{"node":"node1"}"#,
    r#"{}"#,
    r#"{"how":"takeover"}"#,
    r#"{"name":"fs_full","node":"node2","values":["91","3"]}"#,
    r#"{"event":{"kind":"node_down","node":"node1","how":"graceful_takeover"}}"#,
    r#"{"event":{"kind":"package_move","package":"db","node":"node2"}}"#,
    r#"{"event":{"kind":"cluster_start"}}"#,
    r#"{"since":"10m","package":"db","node":"node1","after":12}"#,
    r#"{"network":"lan1","drop_from":["node2","node3"]}"#,
];

/// Parse `bytes` as `T`; when accepted, it must round-trip.
fn check_as<T>(bytes: &[u8]) -> Result<bool, TestCaseError>
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    match serde_json::from_slice::<T>(bytes) {
        Ok(value) => {
            let text =
                serde_json::to_vec(&value).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let again: T =
                serde_json::from_slice(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(again, value);
            Ok(true)
        }
        Err(e) => {
            prop_assert!(!e.to_string().is_empty());
            Ok(false)
        }
    }
}

/// Every request type; how many accepted `bytes`.
fn check_all(bytes: &[u8]) -> Result<usize, TestCaseError> {
    Ok([
        check_as::<PackageRequest>(bytes)?,
        check_as::<NodeRequest>(bytes)?,
        check_as::<RaiseRequest>(bytes)?,
        check_as::<EmulateRequest>(bytes)?,
        check_as::<EventsQuery>(bytes)?,
        check_as::<LeaseRequest>(bytes)?,
        check_as::<HeartbeatFaultRequest>(bytes)?,
    ]
    .into_iter()
    .filter(|accepted| *accepted)
    .count())
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            Just("node1".to_owned()),
            Just("node_down".to_owned()),
            Just("kind".to_owned()),
            Just("graceful".to_owned()),
            "\\PC{0,12}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        let key = prop_oneof![
            Just("node".to_owned()),
            Just("how".to_owned()),
            Just("name".to_owned()),
            Just("values".to_owned()),
            Just("event".to_owned()),
            Just("kind".to_owned()),
            Just("package".to_owned()),
            Just("since".to_owned()),
            Just("after".to_owned()),
            Just("network".to_owned()),
            Just("drop_from".to_owned()),
            "\\PC{0,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[derive(Clone, Debug)]
enum Edit {
    Delete { at: usize, len: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Flip { at: usize, mask: u8 },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1..8usize).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
        (any::<usize>(), 1..=u8::MAX).prop_map(|(at, mask)| Edit::Flip { at, mask }),
    ]
}

fn apply(bytes: &mut Vec<u8>, edits: &[Edit]) {
    for e in edits {
        let position = |at: usize, len: usize| at % (len + 1);
        match e {
            Edit::Delete { at, len } => {
                let start = position(*at, bytes.len());
                let end = (start + len).min(bytes.len());
                bytes.drain(start..end);
            }
            Edit::Insert { at, bytes: more } => {
                let at = position(*at, bytes.len());
                bytes.splice(at..at, more.iter().copied());
            }
            Edit::Flip { at, mask } => {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] ^= mask;
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(config(1_000))]

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_all(&bytes)?;
    }

    #[test]
    fn random_json_values(value in json()) {
        check_all(&serde_json::to_vec(&value).unwrap())?;
    }

    #[test]
    fn mutated_valid_bodies(which in 0..VALID.len(), edits in prop::collection::vec(edit(), 1..5)) {
        let mut bytes = VALID[which].as_bytes().to_vec();
        apply(&mut bytes, &edits);
        check_all(&bytes)?;
    }
}

#[test]
fn every_valid_body_is_accepted_by_some_type() {
    for body in VALID {
        let accepted = check_all(body.as_bytes()).unwrap();
        assert!(accepted > 0, "{body}");
    }
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    const DEPTH: usize = 100_000;
    for (open, close) in [("[", "]"), ("{\"event\":", "}")] {
        let body = format!("{}null{}", open.repeat(DEPTH), close.repeat(DEPTH));
        assert_eq!(check_all(body.as_bytes()).unwrap(), 0);
    }
}
