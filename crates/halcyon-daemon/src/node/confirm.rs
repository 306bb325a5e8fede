//! The leader's confirmation of its leadership for lease grants, shared by the renewals that
//! wait at the same time.
//!
//! A grant needs a quorum to have acknowledged this node's leadership in a round started
//! after the renewal reached it (openraft's `ensure_linearizable`: one append-entries to every
//! voter, answered by a quorum, then the state machine caught up with the read index). Every
//! renewal used to start a round of its own: at 16 nodes, 16 rounds of 15 messages per
//! renewal interval on the coordinator. Now a renewal that arrives while a round runs waits
//! for it to end, then joins the first round started after its arrival (or starts it): every
//! renewal that arrived while one round ran shares the next. The rule for each renewal is
//! unchanged: its confirmation comes from a round that began after it arrived, and the read
//! index it gets was taken by that round.
//!
//! Rounds also start at most once per `spacing` (a quarter of the renewal interval,
//! [`ROUNDS_PER_RENEWAL_INTERVAL`]): a renewal that finds a round started less than that ago
//! waits for the moment, with the renewals that arrive meanwhile, and they share the round
//! then. On an idle cluster renewals rarely overlap (each takes a round trip, they come spread
//! over the interval), so without the spacing the coordinator of 16 nodes ran about 80 rounds
//! a second, 15 messages each, and every follower answered them (issue 21, idle CPU). A grant
//! comes at most `spacing` later; the lease still runs from the holder's send, so what it
//! costs is that much of the round-trip budget (a quarter of the renewal interval, against a
//! warning at a whole one, `timing::renewal_warning_threshold`).
//!
//! The shared state sits in one `watch` (a lookup under its lock, never held across an
//! await), like the other state concurrent request handlers share. A round's runner that is
//! dropped (its renewal timed out) ends its round without a result: the renewals waiting
//! for it start the next.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// Confirmation rounds a coordinator starts at most per renewal interval.
pub(crate) const ROUNDS_PER_RENEWAL_INTERVAL: u32 = 4;

/// A round's outcome: the read index, or why leadership was not confirmed.
pub(crate) type Outcome = Result<u64, String>;

#[derive(Debug, Default)]
pub(crate) struct Rounds {
    /// Rounds started so far (the latest's number).
    started: u64,
    /// A round runs now.
    running: bool,
    /// The latest round that ended with an outcome: its number and outcome.
    last: Option<(u64, Outcome)>,
    /// When the latest round started.
    last_start: Option<Instant>,
}

/// The rounds of one node (see the module's documentation).
#[derive(Debug)]
pub(crate) struct Confirmations {
    rounds: watch::Sender<Rounds>,
}

impl Default for Confirmations {
    fn default() -> Confirmations {
        Confirmations {
            rounds: watch::Sender::new(Rounds::default()),
        }
    }
}

/// What one look at the rounds decided for a waiting renewal.
enum Next {
    /// A round started after the renewal arrived has ended: its outcome.
    Done(Outcome),
    /// No round runs: the renewal runs round `n`.
    Run(u64),
    /// A round runs: wait for it to end.
    Wait,
    /// The last round started less than the spacing ago: the next may start then.
    WaitUntil(Instant),
}

/// Ends round `n` when dropped: with its outcome once [`RoundGuard::finish`] set one, without
/// one otherwise (the runner was dropped), and wakes the renewals waiting.
struct RoundGuard<'a> {
    rounds: &'a watch::Sender<Rounds>,
    n: u64,
    outcome: Option<Outcome>,
}

impl Drop for RoundGuard<'_> {
    fn drop(&mut self) {
        let outcome = self.outcome.take();
        let n = self.n;
        self.rounds.send_modify(|r| {
            r.running = false;
            if let Some(outcome) = outcome {
                r.last = Some((n, outcome));
            }
        });
    }
}

impl Confirmations {
    /// The outcome of a round started after this call began: joined when one starts later
    /// than the call, else run here with `round`, at least `spacing` after the round before.
    pub(crate) async fn confirm<F, Fut>(&self, spacing: Duration, round: F) -> Outcome
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Outcome>,
    {
        let mut changes = self.rounds.subscribe();
        // Rounds numbered up to `arrived` started before this renewal arrived.
        let arrived = changes.borrow_and_update().started;
        let mut round = Some(round);
        loop {
            let mut next = Next::Wait;
            let now = Instant::now();
            self.rounds.send_if_modified(|r| {
                next = match (&r.last, r.last_start) {
                    (Some((n, outcome)), _) if *n > arrived => Next::Done(outcome.clone()),
                    _ if r.running => Next::Wait,
                    (_, Some(start)) if now < start + spacing => Next::WaitUntil(start + spacing),
                    _ => {
                        r.started += 1;
                        r.running = true;
                        r.last_start = Some(now);
                        Next::Run(r.started)
                    }
                };
                // Nobody needs waking for a round that just started.
                false
            });
            match next {
                Next::Done(outcome) => return outcome,
                Next::Run(n) => {
                    let mut guard = RoundGuard {
                        rounds: &self.rounds,
                        n,
                        outcome: None,
                    };
                    let run = round.take().expect("a renewal runs at most one round");
                    let outcome = run().await;
                    guard.outcome = Some(outcome.clone());
                    drop(guard);
                    return outcome;
                }
                Next::Wait => {
                    if changes.changed().await.is_err() {
                        return Err("the node is shutting down".into());
                    }
                }
                Next::WaitUntil(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        changed = changes.changed() => if changed.is_err() {
                            return Err("the node is shutting down".into());
                        },
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use tokio::sync::oneshot;

    use super::*;

    /// Lets every spawned task run until it waits (the test runtime has one thread).
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    /// A renewal that arrives while a round runs does not share that round: it waits for it,
    /// then renewals that waited together share one new round.
    #[tokio::test]
    async fn renewals_share_the_first_round_started_after_they_arrived() {
        let c = Arc::new(Confirmations::default());
        let rounds = Arc::new(AtomicU64::new(0));
        let (release, released) = oneshot::channel::<()>();
        // The first renewal runs round 1, which ends when released.
        let first = tokio::spawn({
            let (c, rounds) = (Arc::clone(&c), Arc::clone(&rounds));
            async move {
                c.confirm(Duration::ZERO, || async move {
                    rounds.fetch_add(1, Ordering::SeqCst);
                    let _ = released.await;
                    Ok(100)
                })
                .await
            }
        });
        settle().await;
        // Three renewals arrive during round 1.
        let later: Vec<_> = (0..3)
            .map(|_| {
                let (c, rounds) = (Arc::clone(&c), Arc::clone(&rounds));
                tokio::spawn(async move {
                    c.confirm(Duration::ZERO, || async move {
                        let n = rounds.fetch_add(1, Ordering::SeqCst) + 1;
                        Ok(n * 100)
                    })
                    .await
                })
            })
            .collect();
        settle().await;
        assert_eq!(rounds.load(Ordering::SeqCst), 1, "they wait for round 1");
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(100));
        for l in later {
            assert_eq!(
                l.await.unwrap(),
                Ok(200),
                "round 2, not the running round 1"
            );
        }
        assert_eq!(rounds.load(Ordering::SeqCst), 2);
        // Alone, with nothing running: a round of its own.
        let third = c
            .confirm(Duration::ZERO, || async {
                Ok(rounds.fetch_add(1, Ordering::SeqCst) * 100 + 100)
            })
            .await;
        assert_eq!(third, Ok(300));
    }

    /// A runner dropped mid-round (its renewal timed out) leaves no round running: the
    /// renewal waiting for it runs the next one itself.
    #[tokio::test]
    async fn a_dropped_runner_hands_the_next_round_to_a_waiting_renewal() {
        let c = Arc::new(Confirmations::default());
        let (_never_sent, never) = oneshot::channel::<()>();
        let stuck = tokio::spawn({
            let c = Arc::clone(&c);
            async move {
                c.confirm(Duration::ZERO, || async move {
                    let _ = never.await;
                    Ok(1)
                })
                .await
            }
        });
        settle().await;
        let waiting = tokio::spawn({
            let c = Arc::clone(&c);
            async move {
                c.confirm(Duration::ZERO, || async { Err("no quorum".to_owned()) })
                    .await
            }
        });
        settle().await;
        assert!(!waiting.is_finished(), "it waits for the stuck round");
        stuck.abort();
        assert!(stuck.await.unwrap_err().is_cancelled());
        assert_eq!(waiting.await.unwrap(), Err("no quorum".to_owned()));
    }

    /// Rounds start at least `spacing` apart: a renewal that arrives just after a round
    /// started waits for the moment, and those that arrive meanwhile share its round; none
    /// is confirmed by a round begun before it arrived.
    #[tokio::test(start_paused = true)]
    async fn rounds_start_a_spacing_apart_and_renewals_arriving_meanwhile_share_one() {
        const SPACING: Duration = Duration::from_millis(25);
        let c = Arc::new(Confirmations::default());
        let starts = Arc::new(std::sync::Mutex::new(Vec::new()));
        let begin = Instant::now();
        let renewal = |at_ms: u64| {
            let (c, starts) = (Arc::clone(&c), Arc::clone(&starts));
            tokio::spawn(async move {
                tokio::time::sleep_until(begin + Duration::from_millis(at_ms)).await;
                c.confirm(SPACING, || async move {
                    let mut starts = starts.lock().unwrap();
                    starts.push(begin.elapsed());
                    Ok(starts.len() as u64)
                })
                .await
            })
        };
        // Round 1 at 0 ms; renewals at 5, 12 and 20 ms share round 2 at 25 ms; one at 60 ms
        // (long after) runs round 3 at once.
        let all: Vec<_> = [0, 5, 12, 20, 60].into_iter().map(renewal).collect();
        let mut outcomes = Vec::new();
        for r in all {
            outcomes.push(r.await.unwrap());
        }
        assert_eq!(outcomes, vec![Ok(1), Ok(2), Ok(2), Ok(2), Ok(3)]);
        let ms = |n: u64| Duration::from_millis(n);
        assert_eq!(*starts.lock().unwrap(), vec![ms(0), ms(25), ms(60)]);
    }
}
