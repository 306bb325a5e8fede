//! Property tests of the Raft frame decoder (issue 17): random bytes, random lengths in the
//! header, and mutated genuine frames of every RPC, decoded as the RPC types and as any JSON.
//! No input panics; a refusal is an error value; an accepted frame re-encodes; and memory
//! follows the bytes received, not the length a peer claims (the regression of the fix in
//! `read_frame`: a 4-byte header claiming `MAX_FRAME_BYTES` allocated all of it).
//!
//! Cases per property: `HALCYON_FUZZ_CASES` (the long run), else a CI-sized default.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use halcyon_consensus::net::{MAX_FRAME_BYTES, encode_frame, read_frame};
use halcyon_consensus::{NodeId, TypeConfig};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{CommittedLeaderId, LogId, SnapshotMeta, StoredMembership, Vote};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::Value;

/// Counts the bytes allocated and the peak, so a test can bound a decoder's memory.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout contract is passed on unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// Decode `bytes` as each RPC request type and as any JSON; an accepted frame must re-encode
/// to a frame that decodes to the same JSON.
fn check(rt: &tokio::runtime::Runtime, bytes: &[u8]) -> Result<(), TestCaseError> {
    rt.block_on(async {
        let _ = read_frame::<_, VoteRequest<NodeId>>(&mut &bytes[..]).await;
        let _ = read_frame::<_, AppendEntriesRequest<TypeConfig>>(&mut &bytes[..]).await;
        let _ = read_frame::<_, InstallSnapshotRequest<TypeConfig>>(&mut &bytes[..]).await;
        if let Ok(value) = read_frame::<_, Value>(&mut &bytes[..]).await {
            let frame = encode_frame(&value).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let again: Value = read_frame(&mut &frame[..])
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(again, value);
        }
        Ok(())
    })
}

fn frame_with_length(len: u32, body: &[u8]) -> Vec<u8> {
    let mut bytes = len.to_be_bytes().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

/// Genuine frames of each RPC.
fn genuine() -> Vec<Vec<u8>> {
    let log_id = LogId::new(CommittedLeaderId::new(3, 1), 7);
    let vote = VoteRequest::new(Vote::new(3, 1), Some(log_id));
    let append: AppendEntriesRequest<TypeConfig> = AppendEntriesRequest {
        vote: Vote::new_committed(3, 1),
        prev_log_id: Some(log_id),
        entries: vec![],
        leader_commit: Some(log_id),
    };
    let snapshot: InstallSnapshotRequest<TypeConfig> = InstallSnapshotRequest {
        vote: Vote::new_committed(3, 1),
        meta: SnapshotMeta {
            last_log_id: Some(log_id),
            last_membership: StoredMembership::default(),
            snapshot_id: "3-1-7".into(),
        },
        offset: 0,
        data: vec![1, 2, 3],
        done: true,
    };
    vec![
        encode_frame(&vote).unwrap(),
        encode_frame(&append).unwrap(),
        encode_frame(&snapshot).unwrap(),
    ]
}

proptest! {
    #![proptest_config(config(1_000))]

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check(&runtime(), &bytes)?;
    }

    #[test]
    fn random_lengths_with_random_bodies(
        len in prop_oneof![0..300u32, any::<u32>(), Just(MAX_FRAME_BYTES as u32)],
        body in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        check(&runtime(), &frame_with_length(len, &body))?;
    }

    #[test]
    fn mutated_genuine_frames(
        which in 0..3usize,
        flips in prop::collection::vec((any::<usize>(), 1..=u8::MAX), 1..4),
        cut in prop::option::of(any::<usize>()),
    ) {
        let mut bytes = genuine()[which].clone();
        for (at, mask) in flips {
            let at = at % bytes.len();
            bytes[at] ^= mask;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut % (bytes.len() + 1));
        }
        check(&runtime(), &bytes)?;
    }
}

#[test]
fn genuine_frames_decode() {
    let rt = runtime();
    let frames = genuine();
    rt.block_on(async {
        read_frame::<_, VoteRequest<NodeId>>(&mut &frames[0][..])
            .await
            .unwrap();
        read_frame::<_, AppendEntriesRequest<TypeConfig>>(&mut &frames[1][..])
            .await
            .unwrap();
        read_frame::<_, InstallSnapshotRequest<TypeConfig>>(&mut &frames[2][..])
            .await
            .unwrap();
    });
}

/// Regression: a header claiming the largest frame, then a few bytes, then the end.
#[test]
fn memory_follows_the_bytes_received_not_the_length_claimed() {
    const BOUND_BYTES: usize = 4 * 1024 * 1024;
    let rt = runtime();
    let bytes = frame_with_length(MAX_FRAME_BYTES as u32, b"{\"vote\":");
    let before = ALLOCATED.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let result = rt.block_on(read_frame::<_, Value>(&mut &bytes[..]));
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let e = result.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    assert_eq!(
        e.to_string(),
        format!("frame truncated: 8 of {MAX_FRAME_BYTES} bytes")
    );
    assert!(
        peak < BOUND_BYTES,
        "decoding a truncated frame took {peak} bytes at its peak"
    );
}
