//! The async runtime openraft runs on: tokio, with a random number generator that a simulator
//! can seed.
//!
//! openraft draws every election timeout from [`AsyncRuntime::thread_rng`]. With
//! `openraft::TokioRuntime` that is `rand::thread_rng()`, seeded from the OS, so two simulator
//! runs with the same seed would elect differently. [`HalcyonRuntime`] is `TokioRuntime` in every
//! respect except that its generator is a thread-local `StdRng` which [`seed_thread_rng`]
//! replaces with a seeded one.
//!
//! Invariants:
//! - every item but `thread_rng` is `TokioRuntime`'s own (the associated types are its types,
//!   the functions call it), so production behaviour is unchanged;
//! - without [`seed_thread_rng`] a thread's generator is seeded from OS entropy on first use, as
//!   `rand::thread_rng()` is;
//! - a seeded generator yields the same sequence for the same seed with the same `rand` version
//!   (pinned by `Cargo.lock`): a failing seed plus the commit replays a run.

use std::cell::RefCell;
use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use openraft::{AsyncRuntime, OptionalSend, TokioRuntime};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

thread_local! {
    static THREAD_RNG: RefCell<StdRng> = RefCell::new(StdRng::from_entropy());
}

/// Replaces the calling thread's [`HalcyonRuntime`] generator with one seeded by `seed`. A
/// simulator calls it once per run, on the thread that runs every simulated host, before any
/// node starts.
pub fn seed_thread_rng(seed: u64) {
    THREAD_RNG.set(StdRng::seed_from_u64(seed));
}

/// A handle to the calling thread's generator (what [`HalcyonRuntime::thread_rng`] returns).
/// Like `rand::rngs::ThreadRng` it is neither `Send` nor `Sync`: it draws from the generator of
/// the thread that uses it.
#[derive(Debug, Clone, Default)]
pub struct HalcyonRng {
    not_send: PhantomData<*const ()>,
}

impl HalcyonRng {
    fn with<T>(&self, draw: impl FnOnce(&mut StdRng) -> T) -> T {
        THREAD_RNG.with(|rng| draw(&mut rng.borrow_mut()))
    }
}

impl RngCore for HalcyonRng {
    fn next_u32(&mut self) -> u32 {
        self.with(RngCore::next_u32)
    }

    fn next_u64(&mut self) -> u64 {
        self.with(RngCore::next_u64)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.with(|rng| rng.fill_bytes(dest));
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.with(|rng| rng.try_fill_bytes(dest))
    }
}

/// openraft's tokio runtime with a seedable [`AsyncRuntime::thread_rng`] (see the module
/// documentation).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HalcyonRuntime;

type Tokio = TokioRuntime;

impl AsyncRuntime for HalcyonRuntime {
    type JoinError = <Tokio as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <Tokio as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <Tokio as AsyncRuntime>::Sleep;
    type Instant = <Tokio as AsyncRuntime>::Instant;
    type TimeoutError = <Tokio as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = <Tokio as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = HalcyonRng;
    type OneshotSender<T: OptionalSend> = <Tokio as AsyncRuntime>::OneshotSender<T>;
    type OneshotReceiverError = <Tokio as AsyncRuntime>::OneshotReceiverError;
    type OneshotReceiver<T: OptionalSend> = <Tokio as AsyncRuntime>::OneshotReceiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        Tokio::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Tokio::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Tokio::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        Tokio::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        Tokio::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        Tokio::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        HalcyonRng::default()
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        Tokio::oneshot()
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    /// What a run draws: a few raw numbers and election timeouts, as openraft draws them.
    fn draws() -> (Vec<u64>, Vec<u64>) {
        let raw = (0..8)
            .map(|_| HalcyonRuntime::thread_rng().r#gen::<u64>())
            .collect();
        let config = openraft::Config::default();
        let timeouts = (0..8)
            .map(|_| config.new_rand_election_timeout::<HalcyonRuntime>())
            .collect();
        (raw, timeouts)
    }

    fn seeded_draws(seed: u64) -> (Vec<u64>, Vec<u64>) {
        seed_thread_rng(seed);
        draws()
    }

    #[test]
    fn the_same_seed_draws_the_same_numbers() {
        let first = seeded_draws(7);
        assert_eq!(seeded_draws(7), first);
        assert_ne!(seeded_draws(8), first);
        let timeouts = &first.1;
        assert!(
            timeouts.iter().any(|t| *t != timeouts[0]),
            "election timeouts vary within a run: {timeouts:?}"
        );
    }

    #[test]
    fn a_seed_governs_only_the_thread_that_set_it() {
        seed_thread_rng(7);
        let here = draws();
        seed_thread_rng(7);
        let elsewhere = std::thread::spawn(draws).join().expect("thread");
        assert_ne!(
            elsewhere, here,
            "another thread keeps its entropy-seeded generator"
        );
        assert_eq!(draws(), here);
    }
}
