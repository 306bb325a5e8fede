//! The heartbeat message on the wire (UDP datagram or disk slot).
//!
//! Invariants:
//! - The plain message is exactly [`MESSAGE_SIZE_BYTES`] bytes, little endian:
//!
//!   | offset | size | field |
//!   | --- | --- | --- |
//!   | 0 | 4 | magic `HLHB` |
//!   | 4 | 2 | version (2) |
//!   | 6 | 8 | cluster id |
//!   | 14 | 4 | sender node number |
//!   | 18 | 8 | sender incarnation |
//!   | 26 | 4 | network number |
//!   | 30 | 8 | sequence number (increases with every message a sender sends) |
//!   | 38 | 8 | sender's monotonic send time, ms (meaningful to the sender only) |
//!   | 46 | 4 | sender's heartbeat interval on this network, ms |
//!
//! - The interval is the sender's promise: its next heartbeat on this network follows within
//!   that interval. Receivers judge the path by it (the detector's rule), so a network's
//!   interval can change while heartbeats run without a receiver judging a slow sender by a
//!   short interval. Version 1 had no interval and is refused.
//! - Bytes only cross the wire through a [`Sealer`]: [`encode`] seals, [`decode`] opens first
//!   and then checks magic, version, length, cluster id and that the interval is within
//!   [`INTERVAL_MIN_MS`]`..=`[`INTERVAL_MAX_MS`] (the configuration's limits), in that order:
//!   nothing refused reaches the detector. An authenticating
//!   sealer (HMAC) replaces [`Plain`] without changing this layout; the sequence number is what
//!   its replay window will use (the detector already ignores sequence numbers that do not
//!   increase).
//! - A sealed message is at most [`SEALED_SIZE_MAX_BYTES`] bytes (asserted).

use halcyon_config::limits;

/// Magic at the start of every heartbeat.
pub const MAGIC: [u8; 4] = *b"HLHB";
/// The only version this code speaks (2: the sender's interval was added).
pub const VERSION: u16 = 2;
/// Size of the plain (unsealed) message.
pub const MESSAGE_SIZE_BYTES: usize = 50;
/// Most bytes a sealed message may take (receive buffers and disk slots are sized from it).
pub const SEALED_SIZE_MAX_BYTES: usize = 512;
/// Shortest interval a heartbeat may announce (the configuration's limit).
pub const INTERVAL_MIN_MS: u32 = limits::HEARTBEAT_INTERVAL_MIN_MS as u32;
/// Longest interval a heartbeat may announce (the configuration's limit).
pub const INTERVAL_MAX_MS: u32 = limits::HEARTBEAT_INTERVAL_MAX_MS as u32;

const _: () = assert!(MESSAGE_SIZE_BYTES <= SEALED_SIZE_MAX_BYTES);
// The limits fit the 4-byte field (the casts above lose nothing).
const _: () = assert!(
    INTERVAL_MIN_MS as u64 == limits::HEARTBEAT_INTERVAL_MIN_MS
        && INTERVAL_MAX_MS as u64 == limits::HEARTBEAT_INTERVAL_MAX_MS
        && INTERVAL_MIN_MS >= 1
);

/// One heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatMessage {
    /// The cluster's id: heartbeats of another cluster on the same network are refused.
    pub cluster_id: u64,
    /// The sender's node number.
    pub node: u32,
    /// The sender daemon's incarnation (increases every time it starts).
    pub incarnation: u64,
    /// The network number this heartbeat was sent on.
    pub network: u32,
    /// Increases with every heartbeat the sender builds.
    pub seq: u64,
    /// The sender's monotonic send time (meaningful to the sender only).
    pub send_time_ms: u64,
    /// The sender's heartbeat interval on this network: its next heartbeat here follows
    /// within it. Within [`INTERVAL_MIN_MS`]`..=`[`INTERVAL_MAX_MS`] (checked by [`decode`]).
    pub interval_ms: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("message failed authentication")]
    Authentication,
    #[error("sealed message is malformed: {0}")]
    Malformed(&'static str),
    #[error("heartbeat of another cluster (id {found})")]
    OtherCluster { found: u64 },
    #[error(
        "replayed heartbeat: node {node} incarnation {incarnation} sequence {seq} was already accepted or is too old"
    )]
    Replayed {
        node: u32,
        incarnation: u64,
        seq: u64,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("truncated heartbeat: {len} bytes, expected {expected}")]
    Truncated { len: usize, expected: usize },
    #[error("heartbeat too long: {len} bytes, expected {expected}")]
    TooLong { len: usize, expected: usize },
    #[error("not a heartbeat: bad magic {found:02x?}")]
    BadMagic { found: [u8; 4] },
    #[error("heartbeat version {found} is not supported (this node speaks {supported})")]
    UnsupportedVersion { found: u16, supported: u16 },
    #[error("heartbeat from cluster id {found}, this cluster is {expected}")]
    WrongCluster { expected: u64, found: u64 },
    /// The interval is outside the configuration's limits: no node of this version sends
    /// it, and judging a path by it would be wrong (0 declares it down at once).
    #[error(
        "heartbeat announces an interval of {interval_ms} ms, outside {}..={} ms",
        INTERVAL_MIN_MS,
        INTERVAL_MAX_MS
    )]
    IntervalOutOfLimits { interval_ms: u32 },
    #[error(transparent)]
    Seal(#[from] SealError),
}

/// Seals outgoing bytes and opens incoming ones ([`Plain`], or the authenticating
/// [`crate::hmac_sealer::HmacSealer`]).
pub trait Sealer: Send + Sync {
    fn seal(&self, plain: &[u8]) -> Vec<u8>;
    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError>;
}

/// No protection: sealed bytes are the plain bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl Sealer for Plain {
    fn seal(&self, plain: &[u8]) -> Vec<u8> {
        plain.to_vec()
    }

    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        Ok(sealed.to_vec())
    }
}

/// Encode and seal a heartbeat.
pub fn encode(message: &HeartbeatMessage, sealer: &dyn Sealer) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(MESSAGE_SIZE_BYTES);
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&message.cluster_id.to_le_bytes());
    bytes.extend_from_slice(&message.node.to_le_bytes());
    bytes.extend_from_slice(&message.incarnation.to_le_bytes());
    bytes.extend_from_slice(&message.network.to_le_bytes());
    bytes.extend_from_slice(&message.seq.to_le_bytes());
    bytes.extend_from_slice(&message.send_time_ms.to_le_bytes());
    bytes.extend_from_slice(&message.interval_ms.to_le_bytes());
    assert_eq!(bytes.len(), MESSAGE_SIZE_BYTES);
    let sealed = sealer.seal(&bytes);
    assert!(
        sealed.len() <= SEALED_SIZE_MAX_BYTES,
        "sealer output too long: {}",
        sealed.len()
    );
    sealed
}

/// Open and decode a heartbeat of cluster `cluster_id`.
pub fn decode(
    sealed: &[u8],
    cluster_id: u64,
    sealer: &dyn Sealer,
) -> Result<HeartbeatMessage, WireError> {
    let bytes = sealer.open(sealed)?;
    let truncated = |expected| WireError::Truncated {
        len: bytes.len(),
        expected,
    };
    let magic: [u8; 4] = bytes
        .get(0..4)
        .ok_or_else(|| truncated(MESSAGE_SIZE_BYTES))?
        .try_into()
        .unwrap();
    if magic != MAGIC {
        return Err(WireError::BadMagic { found: magic });
    }
    let version = u16::from_le_bytes(
        bytes
            .get(4..6)
            .ok_or_else(|| truncated(MESSAGE_SIZE_BYTES))?
            .try_into()
            .unwrap(),
    );
    if version != VERSION {
        return Err(WireError::UnsupportedVersion {
            found: version,
            supported: VERSION,
        });
    }
    if bytes.len() < MESSAGE_SIZE_BYTES {
        return Err(truncated(MESSAGE_SIZE_BYTES));
    }
    if bytes.len() > MESSAGE_SIZE_BYTES {
        return Err(WireError::TooLong {
            len: bytes.len(),
            expected: MESSAGE_SIZE_BYTES,
        });
    }
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let found = u64_at(6);
    if found != cluster_id {
        return Err(WireError::WrongCluster {
            expected: cluster_id,
            found,
        });
    }
    let interval_ms = u32_at(46);
    if !(INTERVAL_MIN_MS..=INTERVAL_MAX_MS).contains(&interval_ms) {
        return Err(WireError::IntervalOutOfLimits { interval_ms });
    }
    Ok(HeartbeatMessage {
        cluster_id: found,
        node: u32_at(14),
        incarnation: u64_at(18),
        network: u32_at(26),
        seq: u64_at(30),
        send_time_ms: u64_at(38),
        interval_ms,
    })
}

/// The header of a sealed heartbeat, NOT authenticated: every sealer keeps the plain message
/// as the first [`MESSAGE_SIZE_BYTES`] of its output, so this reads them without opening.
/// Only for what may trust a forgery: routing to test faults, diagnostics. Never feed the
/// result to the detector.
pub fn peek_unauthenticated(sealed: &[u8], cluster_id: u64) -> Result<HeartbeatMessage, WireError> {
    let header = sealed.get(..MESSAGE_SIZE_BYTES).unwrap_or(sealed);
    decode(header, cluster_id, &Plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: HeartbeatMessage = HeartbeatMessage {
        cluster_id: 0x1122_3344_5566_7788,
        node: 7,
        incarnation: 42,
        network: 2,
        seq: u64::MAX - 1,
        send_time_ms: 123_456,
        interval_ms: 300,
    };

    #[test]
    fn round_trip() {
        let bytes = encode(&MESSAGE, &Plain);
        assert_eq!(bytes.len(), MESSAGE_SIZE_BYTES);
        assert_eq!(&bytes[0..4], b"HLHB");
        assert_eq!(decode(&bytes, MESSAGE.cluster_id, &Plain), Ok(MESSAGE));
        // The interval travels, at both of its limits.
        for interval_ms in [INTERVAL_MIN_MS, 30, INTERVAL_MAX_MS] {
            let message = HeartbeatMessage {
                interval_ms,
                ..MESSAGE
            };
            let bytes = encode(&message, &Plain);
            assert_eq!(decode(&bytes, MESSAGE.cluster_id, &Plain), Ok(message));
        }
    }

    #[test]
    fn layout_is_little_endian_at_documented_offsets() {
        let bytes = encode(&MESSAGE, &Plain);
        assert_eq!(bytes[4..6], [2, 0]);
        assert_eq!(bytes[14..18], [7, 0, 0, 0]);
        assert_eq!(bytes[18], 42);
        assert_eq!(bytes[26], 2);
        assert_eq!(bytes[30], 0xfe);
        assert_eq!(bytes[46..50], 300u32.to_le_bytes());
    }

    #[test]
    fn truncated() {
        let bytes = encode(&MESSAGE, &Plain);
        for len in [0, 3, 5, 45, 46, 49] {
            assert_eq!(
                decode(&bytes[..len], MESSAGE.cluster_id, &Plain),
                Err(WireError::Truncated { len, expected: 50 }),
                "len {len}"
            );
        }
    }

    #[test]
    fn too_long() {
        let mut bytes = encode(&MESSAGE, &Plain);
        bytes.push(0);
        assert_eq!(
            decode(&bytes, MESSAGE.cluster_id, &Plain),
            Err(WireError::TooLong {
                len: 51,
                expected: 50
            })
        );
    }

    /// A version-1 heartbeat (46 bytes, no interval) of a node not yet upgraded is refused
    /// by its version, not judged by a missing interval.
    #[test]
    fn a_version_1_heartbeat_is_refused() {
        let mut bytes = encode(&MESSAGE, &Plain);
        bytes[4..6].copy_from_slice(&1u16.to_le_bytes());
        bytes.truncate(46);
        assert_eq!(
            decode(&bytes, MESSAGE.cluster_id, &Plain),
            Err(WireError::UnsupportedVersion {
                found: 1,
                supported: 2
            })
        );
    }

    #[test]
    fn an_interval_outside_the_limits_is_refused() {
        for interval_ms in [0, INTERVAL_MIN_MS - 1, INTERVAL_MAX_MS + 1, u32::MAX] {
            let bytes = encode(
                &HeartbeatMessage {
                    interval_ms,
                    ..MESSAGE
                },
                &Plain,
            );
            assert_eq!(
                decode(&bytes, MESSAGE.cluster_id, &Plain),
                Err(WireError::IntervalOutOfLimits { interval_ms }),
                "{interval_ms} ms"
            );
        }
        assert_eq!(
            WireError::IntervalOutOfLimits { interval_ms: 0 }.to_string(),
            "heartbeat announces an interval of 0 ms, outside 10..=10000 ms"
        );
    }

    #[test]
    fn bad_magic() {
        let mut bytes = encode(&MESSAGE, &Plain);
        bytes[0] = b'X';
        assert_eq!(
            decode(&bytes, MESSAGE.cluster_id, &Plain),
            Err(WireError::BadMagic { found: *b"XLHB" })
        );
    }

    #[test]
    fn wrong_version_is_reported_before_length() {
        let mut bytes = encode(&MESSAGE, &Plain);
        bytes[4] = 3;
        bytes.truncate(20);
        assert_eq!(
            decode(&bytes, MESSAGE.cluster_id, &Plain),
            Err(WireError::UnsupportedVersion {
                found: 3,
                supported: 2
            })
        );
    }

    #[test]
    fn wrong_cluster() {
        let bytes = encode(&MESSAGE, &Plain);
        assert_eq!(
            decode(&bytes, 99, &Plain),
            Err(WireError::WrongCluster {
                expected: 99,
                found: MESSAGE.cluster_id
            })
        );
    }

    /// A sealer that appends a one-byte tag: proves encode/decode go through the sealer and
    /// that its errors come out of decode.
    struct Tagged;

    impl Sealer for Tagged {
        fn seal(&self, plain: &[u8]) -> Vec<u8> {
            let mut v = plain.to_vec();
            v.push(plain.iter().fold(0u8, |a, b| a.wrapping_add(*b)));
            v
        }

        fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
            let (tag, plain) = sealed.split_last().ok_or(SealError::Malformed("empty"))?;
            if plain.iter().fold(0u8, |a, b| a.wrapping_add(*b)) != *tag {
                return Err(SealError::Authentication);
            }
            Ok(plain.to_vec())
        }
    }

    #[test]
    fn peek_reads_the_header_of_plain_and_sealed_heartbeats() {
        assert_eq!(
            peek_unauthenticated(&encode(&MESSAGE, &Plain), MESSAGE.cluster_id),
            Ok(MESSAGE)
        );
        let mut sealed = encode(&MESSAGE, &Tagged);
        *sealed.last_mut().unwrap() ^= 0xff; // A bad tag: peek does not check it.
        assert_eq!(
            peek_unauthenticated(&sealed, MESSAGE.cluster_id),
            Ok(MESSAGE)
        );
        assert_eq!(
            peek_unauthenticated(&sealed[..10], MESSAGE.cluster_id),
            Err(WireError::Truncated {
                len: 10,
                expected: MESSAGE_SIZE_BYTES
            })
        );
    }

    #[test]
    fn sealer_is_used_both_ways() {
        let mut bytes = encode(&MESSAGE, &Tagged);
        assert_eq!(bytes.len(), MESSAGE_SIZE_BYTES + 1);
        assert_eq!(decode(&bytes, MESSAGE.cluster_id, &Tagged), Ok(MESSAGE));
        bytes[31] ^= 1;
        assert_eq!(
            decode(&bytes, MESSAGE.cluster_id, &Tagged),
            Err(WireError::Seal(SealError::Authentication))
        );
    }
}
