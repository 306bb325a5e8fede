//! Property tests of the heartbeat wire decoder (issue 17): random bytes and mutated genuine
//! heartbeats, through the `Plain` and the HMAC sealer. No input panics; every refusal is an
//! error value; with the HMAC sealer only the untouched heartbeat is accepted, once.
//!
//! Cases per property: `HALCYON_FUZZ_CASES` (the long run), else a CI-sized default.

use halcyon_membership::hmac_sealer::{KEY_BYTES, SEALED_SIZE_BYTES};
use halcyon_membership::wire::{
    self, HeartbeatMessage, MESSAGE_SIZE_BYTES, SEALED_SIZE_MAX_BYTES, SealError, WireError,
};
use halcyon_membership::{HmacSealer, Plain};
use proptest::prelude::*;
use proptest::test_runner::Config;

const CLUSTER_ID: u64 = 0xC0FFEE;
const KEY: [u8; KEY_BYTES] = [3; KEY_BYTES];

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

fn message() -> impl Strategy<Value = HeartbeatMessage> {
    (
        prop_oneof![Just(CLUSTER_ID), any::<u64>()],
        any::<u32>(),
        any::<u64>(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        prop_oneof![wire::INTERVAL_MIN_MS..=wire::INTERVAL_MAX_MS, any::<u32>()],
    )
        .prop_map(
            |(cluster_id, node, incarnation, network, seq, send_time_ms, interval_ms)| {
                HeartbeatMessage {
                    cluster_id,
                    node,
                    incarnation,
                    network,
                    seq,
                    send_time_ms,
                    interval_ms,
                }
            },
        )
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Truncate { len: usize },
    Append { bytes: Vec<u8> },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=u8::MAX).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        prop::collection::vec(any::<u8>(), 1..64).prop_map(|bytes| Mutation::Append { bytes }),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    match mutation {
        Mutation::Flip { at, mask } => {
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] ^= mask;
            }
        }
        Mutation::Truncate { len } => {
            let len = len % (bytes.len() + 1);
            bytes.truncate(len);
        }
        Mutation::Append { bytes: more } => bytes.extend_from_slice(more),
    }
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn random_bytes_are_refused_or_decoded_never_a_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..=SEALED_SIZE_MAX_BYTES),
    ) {
        if let Ok(m) = wire::decode(&bytes, CLUSTER_ID, &Plain) {
            // Plain accepts only an exact, well-formed message: it must round-trip.
            prop_assert_eq!(wire::encode(&m, &Plain), bytes.clone());
        }
        let sealer = HmacSealer::new(CLUSTER_ID, &[KEY]).unwrap();
        prop_assert!(wire::decode(&bytes, CLUSTER_ID, &sealer).is_err());
    }

    #[test]
    fn plain_round_trips_every_message(m in message()) {
        let bytes = wire::encode(&m, &Plain);
        prop_assert_eq!(bytes.len(), MESSAGE_SIZE_BYTES);
        let decoded = wire::decode(&bytes, CLUSTER_ID, &Plain);
        let interval_ok = (wire::INTERVAL_MIN_MS..=wire::INTERVAL_MAX_MS).contains(&m.interval_ms);
        if m.cluster_id != CLUSTER_ID {
            prop_assert_eq!(
                decoded,
                Err(WireError::WrongCluster { expected: CLUSTER_ID, found: m.cluster_id })
            );
        } else if !interval_ok {
            prop_assert_eq!(
                decoded,
                Err(WireError::IntervalOutOfLimits { interval_ms: m.interval_ms })
            );
        } else {
            prop_assert_eq!(decoded, Ok(m));
        }
    }

    #[test]
    fn a_mutated_sealed_heartbeat_is_refused_and_the_genuine_one_still_accepted(
        m in message(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        // A heartbeat a node of this cluster sends: its id, an interval within the limits.
        let interval_ms = m.interval_ms.clamp(wire::INTERVAL_MIN_MS, wire::INTERVAL_MAX_MS);
        let m = HeartbeatMessage { cluster_id: CLUSTER_ID, interval_ms, ..m };
        let sender = HmacSealer::new(CLUSTER_ID, &[KEY]).unwrap();
        let receiver = HmacSealer::new(CLUSTER_ID, &[KEY]).unwrap();
        let genuine = wire::encode(&m, &sender);
        prop_assert_eq!(genuine.len(), SEALED_SIZE_BYTES);
        let mut mutated = genuine.clone();
        for mutation in &mutations {
            apply(&mut mutated, mutation);
        }
        let result = wire::decode(&mutated, CLUSTER_ID, &receiver);
        if mutated == genuine {
            prop_assert_eq!(result, Ok(m));
            // The second time it is a replay.
            let replayed = matches!(
                wire::decode(&genuine, CLUSTER_ID, &receiver),
                Err(WireError::Seal(SealError::Replayed { .. }))
            );
            prop_assert!(replayed);
        } else {
            prop_assert!(result.is_err(), "accepted a changed heartbeat: {:?}", result);
            // Nothing refused moved the replay window.
            prop_assert_eq!(wire::decode(&genuine, CLUSTER_ID, &receiver), Ok(m));
        }
    }
}
