//! Authenticated heartbeats (SPEC 11): an HMAC-SHA256 [`Sealer`] with the cluster key, and a
//! replay window per path.
//!
//! A sealed heartbeat is the plain message ([`MESSAGE_SIZE_BYTES`], layout in [`crate::wire`])
//! followed by [`TAG_BYTES`] of HMAC-SHA256 over [`TAG_CONTEXT`] and the plain message.
//! Heartbeats are authenticated, not encrypted: they carry no secret (node numbers, sequence
//! numbers, a send time), and what an attacker must not do is make a dead node look alive or
//! a live one dead by injecting; hiding that a node is alive from someone who can see its
//! traffic anyway would gain nothing.
//!
//! [`Sealer::open`] checks, in order, and counts every refusal in [`SealCounts`]:
//! 1. the length, magic and version (else [`SealError::Malformed`], counted `malformed`);
//! 2. the cluster id in the (not yet authenticated) header: a heartbeat of another cluster on
//!    the same network is [`SealError::OtherCluster`], counted `other_cluster`, never verified
//!    and never recorded;
//! 3. the tag, against every key held (the first one signs; a second one is accepted during a
//!    key rollover): else [`SealError::Authentication`], counted `forged`;
//! 4. the replay window of the path (sender node, network): a heartbeat from an older
//!    incarnation of the sender, one whose sequence number was already accepted, and one more
//!    than [`REPLAY_WINDOW`] sequence numbers behind the newest accepted are
//!    [`SealError::Replayed`], counted `replayed`.
//!
//! Invariants:
//! - The window is updated only by heartbeats whose tag verified: nothing unauthenticated
//!   changes any state but the counters.
//! - A refused heartbeat never reaches the detector (decode returns the error), so forged,
//!   replayed and other-cluster heartbeats never change membership. The detector's own rule
//!   (ignore sequence numbers not above the last on a path, and older incarnations) stays as
//!   the second check of the same property.
//! - Bounded: at most [`PATHS_MAX`] windows; a new path beyond that is refused (counted
//!   `malformed`), which only an attacker holding the key could cause.
//! - Keys can be replaced while heartbeats run ([`SealerHandle::set_keys`]), for a rollover
//!   without restarting: add the new key second everywhere, then first everywhere, then drop
//!   the old one.
//!
//! What the window cannot do (documented in ARCHITECTURE.md): a receiver that restarts has
//! no window, so a recording of a sender's heartbeats, newer than any it then hears, is
//! accepted once each; the lease guard, not heartbeats, decides when packages may move.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::detector::PATHS_MAX;
use crate::wire::{MAGIC, MESSAGE_SIZE_BYTES, SEALED_SIZE_MAX_BYTES, SealError, Sealer, VERSION};

/// Bytes of an HMAC key (the cluster's heartbeat key).
pub const KEY_BYTES: usize = 32;
/// Keys held at once: the current one, and the previous one during a rollover.
pub const KEYS_MAX: usize = 2;
/// Bytes of the tag appended to the plain message.
pub const TAG_BYTES: usize = 32;
/// Size of a sealed heartbeat.
pub const SEALED_SIZE_BYTES: usize = MESSAGE_SIZE_BYTES + TAG_BYTES;
const _: () = assert!(SEALED_SIZE_BYTES <= SEALED_SIZE_MAX_BYTES);
/// Sequence numbers behind the newest accepted one on a path that may still arrive once
/// (datagrams reordered on the network).
pub const REPLAY_WINDOW: u64 = 64;
/// What the tag covers before the message, so the key's MACs cannot be mistaken for another
/// use of the same key.
pub const TAG_CONTEXT: &[u8] = b"halcyon heartbeat v1\0";

type HmacSha256 = hmac::Hmac<Sha256>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("{0} heartbeat keys; 1 (or 2 during a key rollover) expected")]
    Count(usize),
}

/// Heartbeats refused and accepted by an [`HmacSealer`], since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SealCounts {
    pub accepted: u64,
    /// Right format, wrong tag (no key of this cluster made it, or it was changed).
    pub forged: u64,
    /// Authentic, but already seen, too old, or from an older incarnation.
    pub replayed: u64,
    /// The header names another cluster id.
    pub other_cluster: u64,
    /// Wrong size, magic or version; or a path beyond the bound.
    pub malformed: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    forged: AtomicU64,
    replayed: AtomicU64,
    other_cluster: AtomicU64,
    malformed: AtomicU64,
}

/// The newest accepted sequence number of a path, and which of the [`REPLAY_WINDOW`] before
/// it were accepted (bit `i`: `newest - 1 - i`).
#[derive(Clone, Copy, Debug)]
struct Window {
    incarnation: u64,
    newest: u64,
    seen: u64,
}

const _: () = assert!(REPLAY_WINDOW <= u64::BITS as u64);

impl Window {
    /// Accept `(incarnation, seq)` once: true when it is new.
    fn accept(&mut self, incarnation: u64, seq: u64) -> bool {
        if incarnation < self.incarnation {
            return false;
        }
        if incarnation > self.incarnation {
            *self = Window {
                incarnation,
                newest: seq,
                seen: 0,
            };
            return true;
        }
        if seq > self.newest {
            let shift = seq - self.newest;
            // The old newest becomes bit `shift - 1`; everything older moves up with it.
            self.seen = if shift > REPLAY_WINDOW {
                0
            } else {
                ((self.seen << 1) | 1) << (shift - 1)
            };
            self.newest = seq;
            return true;
        }
        let behind = self.newest - seq;
        if behind == 0 || behind > REPLAY_WINDOW {
            return false;
        }
        let bit = 1u64 << (behind - 1);
        if self.seen & bit != 0 {
            return false;
        }
        self.seen |= bit;
        true
    }
}

struct State {
    keys: Vec<HmacSha256>,
    windows: BTreeMap<(u32, u32), Window>,
}

struct Shared {
    cluster_id: u64,
    state: Mutex<State>,
    counters: Counters,
}

/// The HMAC-SHA256 sealer of cluster `cluster_id`. Give it to [`crate::Runner::start`] (or a
/// [`crate::HeartbeatTask`]) boxed; keep a [`SealerHandle`] (from [`HmacSealer::handle`]) to
/// read its counts and to change keys.
pub struct HmacSealer {
    shared: Arc<Shared>,
}

/// Reads an [`HmacSealer`]'s counts and replaces its keys, from another thread.
#[derive(Clone)]
pub struct SealerHandle {
    shared: Arc<Shared>,
}

fn macs(keys: &[[u8; KEY_BYTES]]) -> Result<Vec<HmacSha256>, KeyError> {
    if keys.is_empty() || keys.len() > KEYS_MAX {
        return Err(KeyError::Count(keys.len()));
    }
    Ok(keys
        .iter()
        .map(|key| HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length"))
        .collect())
}

impl HmacSealer {
    /// `keys`: the first signs, every one is accepted (1 or 2 keys).
    pub fn new(cluster_id: u64, keys: &[[u8; KEY_BYTES]]) -> Result<HmacSealer, KeyError> {
        Ok(HmacSealer {
            shared: Arc::new(Shared {
                cluster_id,
                state: Mutex::new(State {
                    keys: macs(keys)?,
                    windows: BTreeMap::new(),
                }),
                counters: Counters::default(),
            }),
        })
    }

    pub fn handle(&self) -> SealerHandle {
        SealerHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl SealerHandle {
    pub fn counts(&self) -> SealCounts {
        let c = &self.shared.counters;
        SealCounts {
            accepted: c.accepted.load(Ordering::Relaxed),
            forged: c.forged.load(Ordering::Relaxed),
            replayed: c.replayed.load(Ordering::Relaxed),
            other_cluster: c.other_cluster.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
        }
    }

    /// Replace the keys (a rollover step); the replay windows are kept.
    pub fn set_keys(&self, keys: &[[u8; KEY_BYTES]]) -> Result<(), KeyError> {
        let macs = macs(keys)?;
        self.shared.state.lock().expect(crate::POISONED).keys = macs;
        Ok(())
    }
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

impl Sealer for HmacSealer {
    fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let state = self.shared.state.lock().expect(crate::POISONED);
        let mut mac = state.keys[0].clone();
        mac.update(TAG_CONTEXT);
        mac.update(plain);
        let mut sealed = Vec::with_capacity(plain.len() + TAG_BYTES);
        sealed.extend_from_slice(plain);
        sealed.extend_from_slice(&mac.finalize().into_bytes());
        sealed
    }

    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let shared = &*self.shared;
        let counters = &shared.counters;
        if sealed.len() != SEALED_SIZE_BYTES {
            count(&counters.malformed);
            return Err(SealError::Malformed("not the size of a sealed heartbeat"));
        }
        let (plain, tag) = sealed.split_at(MESSAGE_SIZE_BYTES);
        if plain[0..4] != MAGIC || plain[4..6] != VERSION.to_le_bytes() {
            count(&counters.malformed);
            return Err(SealError::Malformed("not a heartbeat of this version"));
        }
        let cluster_id = u64_at(plain, 6);
        if cluster_id != shared.cluster_id {
            count(&counters.other_cluster);
            return Err(SealError::OtherCluster { found: cluster_id });
        }
        let mut state = shared.state.lock().expect(crate::POISONED);
        let authentic = state.keys.iter().any(|key| {
            let mut mac = key.clone();
            mac.update(TAG_CONTEXT);
            mac.update(plain);
            mac.verify_slice(tag).is_ok()
        });
        if !authentic {
            count(&counters.forged);
            return Err(SealError::Authentication);
        }
        let node = u32_at(plain, 14);
        let incarnation = u64_at(plain, 18);
        let network = u32_at(plain, 26);
        let seq = u64_at(plain, 30);
        let windows_full = state.windows.len() >= PATHS_MAX;
        let fresh = match state.windows.get_mut(&(node, network)) {
            Some(window) => window.accept(incarnation, seq),
            None if windows_full => {
                count(&counters.malformed);
                return Err(SealError::Malformed("more paths than a cluster can have"));
            }
            None => {
                state.windows.insert(
                    (node, network),
                    Window {
                        incarnation,
                        newest: seq,
                        seen: 0,
                    },
                );
                true
            }
        };
        if !fresh {
            count(&counters.replayed);
            return Err(SealError::Replayed {
                node,
                incarnation,
                seq,
            });
        }
        count(&counters.accepted);
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> Window {
        Window {
            incarnation: 5,
            newest: 100,
            seen: 0,
        }
    }

    #[test]
    fn window_accepts_each_sequence_number_once() {
        let mut w = window();
        assert!(!w.accept(5, 100), "the newest again");
        assert!(w.accept(5, 99), "reordered, inside the window");
        assert!(!w.accept(5, 99), "the same again");
        assert!(w.accept(5, 101));
        assert!(!w.accept(5, 99), "still remembered after the newest moved");
        assert!(w.accept(5, 101 - REPLAY_WINDOW), "the oldest in the window");
        assert!(!w.accept(5, 100 - REPLAY_WINDOW), "beyond the window");
        assert!(!w.accept(5, 0));
    }

    #[test]
    fn window_moves_far_ahead_and_forgets() {
        let mut w = window();
        assert!(w.accept(5, 99));
        assert!(w.accept(5, 100 + REPLAY_WINDOW + 1));
        assert_eq!(w.seen, 0, "everything seen is now out of the window");
        assert!(
            !w.accept(5, 100),
            "out of the window: refused, not re-accepted"
        );
        assert!(w.accept(5, 101 + REPLAY_WINDOW - 1));
        assert!(w.accept(5, u64::MAX));
        assert!(!w.accept(5, u64::MAX));
    }

    #[test]
    fn window_shift_by_exactly_the_window_keeps_the_old_newest() {
        let mut w = window();
        assert!(w.accept(5, 100 + REPLAY_WINDOW));
        assert!(!w.accept(5, 100), "the old newest is the oldest bit");
        assert!(w.accept(5, 101));
    }

    use crate::wire::{self, HeartbeatMessage, WireError};

    const ID: u64 = 0xC0FFEE;
    const KEY: [u8; KEY_BYTES] = [7; KEY_BYTES];

    fn message(node: u32, seq: u64) -> HeartbeatMessage {
        HeartbeatMessage {
            cluster_id: ID,
            node,
            incarnation: 1,
            network: 1,
            seq,
            send_time_ms: 0,
            interval_ms: 100,
        }
    }

    #[test]
    fn sealed_heartbeats_round_trip_once_each() {
        let sealer = HmacSealer::new(ID, &[KEY]).unwrap();
        let bytes = wire::encode(&message(2, 1), &sealer);
        assert_eq!(bytes.len(), SEALED_SIZE_BYTES);
        assert_eq!(wire::decode(&bytes, ID, &sealer), Ok(message(2, 1)));
        assert_eq!(
            wire::decode(&bytes, ID, &sealer),
            Err(WireError::Seal(SealError::Replayed {
                node: 2,
                incarnation: 1,
                seq: 1
            }))
        );
        // The same sequence number on another path is another heartbeat.
        let other_network = HeartbeatMessage {
            network: 2,
            ..message(2, 1)
        };
        let bytes = wire::encode(&other_network, &sealer);
        assert_eq!(wire::decode(&bytes, ID, &sealer), Ok(other_network));
        assert_eq!(
            sealer.handle().counts(),
            SealCounts {
                accepted: 2,
                replayed: 1,
                ..SealCounts::default()
            }
        );
    }

    #[test]
    fn every_changed_byte_fails_authentication_and_records_nothing() {
        let sealer = HmacSealer::new(ID, &[KEY]).unwrap();
        let bytes = wire::encode(&message(2, 5), &sealer);
        // Bytes 6..14 are the cluster id, refused before the tag is checked.
        for at in 14..SEALED_SIZE_BYTES {
            let mut changed = bytes.clone();
            changed[at] ^= 0x01;
            assert_eq!(
                sealer.open(&changed),
                Err(SealError::Authentication),
                "byte {at}"
            );
        }
        let counts = sealer.handle().counts();
        assert_eq!(counts.forged, (SEALED_SIZE_BYTES - 14) as u64);
        assert_eq!(counts.accepted, 0);
        // Nothing forged moved the window: the genuine one is still new.
        assert_eq!(sealer.open(&bytes).map(|p| p.len()), Ok(MESSAGE_SIZE_BYTES));
    }

    #[test]
    fn malformed_and_other_cluster_heartbeats_are_refused_before_the_tag() {
        let sealer = HmacSealer::new(ID, &[KEY]).unwrap();
        let bytes = wire::encode(&message(2, 5), &sealer);
        for len in [
            0,
            1,
            MESSAGE_SIZE_BYTES,
            SEALED_SIZE_BYTES - 1,
            SEALED_SIZE_BYTES + 1,
        ] {
            let mut b = bytes.clone();
            b.resize(len, 0);
            assert_eq!(
                sealer.open(&b),
                Err(SealError::Malformed("not the size of a sealed heartbeat")),
                "{len}"
            );
        }
        let mut b = bytes.clone();
        b[0] = b'X';
        assert_eq!(
            sealer.open(&b),
            Err(SealError::Malformed("not a heartbeat of this version"))
        );
        let theirs = HmacSealer::new(ID + 1, &[KEY]).unwrap();
        let other = HeartbeatMessage {
            cluster_id: ID + 1,
            ..message(2, 5)
        };
        assert_eq!(
            sealer.open(&wire::encode(&other, &theirs)),
            Err(SealError::OtherCluster { found: ID + 1 })
        );
        let counts = sealer.handle().counts();
        assert_eq!(
            (counts.malformed, counts.other_cluster, counts.forged),
            (6, 1, 0)
        );
    }

    #[test]
    fn two_keys_accept_either_and_sign_with_the_first() {
        const NEW: [u8; KEY_BYTES] = [9; KEY_BYTES];
        let old_only = HmacSealer::new(ID, &[KEY]).unwrap();
        let new_only = HmacSealer::new(ID, &[NEW]).unwrap();
        let both = HmacSealer::new(ID, &[NEW, KEY]).unwrap();
        assert!(both.open(&wire::encode(&message(2, 1), &old_only)).is_ok());
        assert!(both.open(&wire::encode(&message(3, 1), &new_only)).is_ok());
        let signed = wire::encode(&message(4, 1), &both);
        assert!(new_only.open(&signed).is_ok());
        assert_eq!(old_only.open(&signed), Err(SealError::Authentication));
        // Changing keys keeps the windows.
        let handle = both.handle();
        handle.set_keys(&[KEY]).unwrap();
        assert!(matches!(
            both.open(&wire::encode(&message(2, 1), &old_only)),
            Err(SealError::Replayed { .. })
        ));
    }

    #[test]
    fn key_counts_are_checked() {
        assert!(matches!(HmacSealer::new(ID, &[]), Err(KeyError::Count(0))));
        assert!(matches!(
            HmacSealer::new(ID, &[KEY; 3]),
            Err(KeyError::Count(3))
        ));
        let sealer = HmacSealer::new(ID, &[KEY]).unwrap();
        assert_eq!(sealer.handle().set_keys(&[]), Err(KeyError::Count(0)));
    }

    #[test]
    fn paths_are_bounded() {
        let sealer = HmacSealer::new(ID, &[KEY]).unwrap();
        for i in 0..PATHS_MAX as u32 {
            let m = HeartbeatMessage {
                network: i % 16,
                ..message(i / 16, 1)
            };
            assert!(sealer.open(&wire::encode(&m, &sealer)).is_ok());
        }
        assert_eq!(
            sealer.open(&wire::encode(&message(9_999, 1), &sealer)),
            Err(SealError::Malformed("more paths than a cluster can have"))
        );
        // Known paths go on.
        let m = HeartbeatMessage {
            network: 0,
            ..message(0, 2)
        };
        assert!(sealer.open(&wire::encode(&m, &sealer)).is_ok());
    }

    #[test]
    fn window_incarnations() {
        let mut w = window();
        assert!(!w.accept(4, 1_000), "an older incarnation");
        assert!(w.accept(6, 1), "a restarted sender starts again");
        assert!(!w.accept(6, 1));
        assert!(!w.accept(5, 200));
    }
}
