//! The simulation in CI: a few hundred seeds of a five-node cluster under random faults, each
//! checked for every invariant (see `halcyon_sim` docs), and determinism. The seeds are split
//! into batches so the test runner spreads them over the cores.
//!
//! The long run: `cargo run --release -p halcyon-sim -- --seeds 10000 --nodes 5`.

use halcyon_sim::{Options, minimize, run};

/// Seeds per batch; CI runs `BATCHES` batches.
const BATCH: u64 = 25;

fn run_batch(batch: u64) {
    let mut failures = Vec::new();
    for seed in batch * BATCH + 1..=(batch + 1) * BATCH {
        let options = Options::new(seed, 5);
        let outcome = run(&options).expect("the simulation runs");
        if !outcome.passed() {
            let (shortest, history) = minimize(&options, &outcome).expect("minimizing runs");
            let faults: Vec<String> = shortest.faults.iter().map(|(i, _)| i.to_string()).collect();
            failures.push(format!(
                "seed {seed}: {}\n{history}replay: cargo run --release -p halcyon-sim -- --seed {seed} --faults {} --history",
                outcome.violations.join("; "),
                if faults.is_empty() { "none".into() } else { faults.join(",") }
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

macro_rules! batches {
    ($($name:ident = $batch:expr),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_batch($batch);
            }
        )*
    };
}

batches! {
    seeds_1_to_25 = 0,
    seeds_26_to_50 = 1,
    seeds_51_to_75 = 2,
    seeds_76_to_100 = 3,
    seeds_101_to_125 = 4,
    seeds_126_to_150 = 5,
    seeds_151_to_175 = 6,
    seeds_176_to_200 = 7,
}

#[test]
fn the_same_seed_gives_the_same_history_and_another_seed_another() {
    let first = run(&Options::new(4242, 5)).unwrap();
    let again = run(&Options::new(4242, 5)).unwrap();
    let other = run(&Options::new(4243, 5)).unwrap();
    assert_eq!(first.history, again.history);
    assert_eq!(first.digest, again.digest);
    assert_ne!(first.digest, other.digest);
    // The history shows the cluster at work, not an idle run.
    assert!(
        first.history.contains("all 3 packages run"),
        "{}",
        first.history
    );
    assert!(first.history.contains("fault 0:"), "{}", first.history);
}
