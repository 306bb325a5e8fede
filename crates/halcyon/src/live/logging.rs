//! The daemon's and the witness's log on standard error: colours only on a terminal, and
//! openraft's repeated errors about a peer that is down summarised.
//!
//! While a peer is down openraft logs each failed replication and vote request (about 25
//! WARN and ERROR lines a second on the coordinator of a three-node cluster with one node
//! down). [`RaftFailures`], a per-layer filter of the formatting layer, lets the first
//! failure of an outage through at once, then drops the repeats and writes one line per
//! peer every [`SUMMARY_INTERVAL`]: `n3 unreachable for 30 s, 1,412 Raft RPC failures`.
//! An openraft WARN or ERROR that names no peer (a heartbeat error) is limited the same way
//! per line of openraft's source; other lines pass untouched.
//!
//! When the failures stop for [`OUTAGE_GAP`] the outage is over, and one line says so with
//! its totals: `n3 reachable again after 42 s, 1,412 Raft RPC failures`. That line also
//! carries what a summary still owed (the repeats since the last one). Ends are found by a
//! thread of their own ([`SWEEP_INTERVAL`]), not on the next log line: a peer's return makes
//! openraft quiet, so the next line may be hours away.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// How often the repeated failures of one peer are summarised while they go on.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);
/// A failure after this long without one starts a new outage (logged at once); an outage
/// this long without a failure is over.
pub const OUTAGE_GAP: Duration = Duration::from_secs(2);
/// How often the ended outages are looked for (so the "reachable again" line comes at most
/// `OUTAGE_GAP + SWEEP_INTERVAL` after the last failure).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// An openraft line without a peer of its own that follows a peer's failure on the same
/// thread within this long belongs to that failure (openraft logs a failed replication as a
/// WARN naming the target, then the error as an ERROR without it).
const COMPANION_WINDOW: Duration = Duration::from_millis(50);
/// At most this many peers are tracked (a cluster has far fewer; a bound all the same).
const PEERS_MAX: usize = 256;

/// The node names by Raft id, for the summaries (`n3` rather than `3`).
static NAMES: OnceLock<BTreeMap<u64, String>> = OnceLock::new();

/// Names the peers in the summaries; the first call wins.
pub fn name_peers(names: BTreeMap<u64, String>) {
    let _ = NAMES.set(names);
}

fn peer_name(peer: u64) -> String {
    NAMES
        .get()
        .and_then(|n| n.get(&peer).cloned())
        .unwrap_or_else(|| format!("Raft peer {peer}"))
}

/// Whether standard error gets colours: a terminal, and `NO_COLOR` not set.
fn colours() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Installs the log: `RUST_LOG` (default `info,openraft=warn`), to standard error, with
/// colours only on a terminal, openraft's peer failures summarised.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let format = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colours());
    let failures = RaftFailures::default();
    let summaries = Arc::clone(&failures.summaries);
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::Layer::with_filter(format, failures))
        .try_init();
    if installed.is_ok() {
        // Ends the outages nobody's line ends (see the module's doc).
        let _ = std::thread::Builder::new()
            .name("halcyon-log-sweep".to_owned())
            .spawn(move || {
                loop {
                    std::thread::sleep(SWEEP_INTERVAL);
                    let ended = match summaries.lock() {
                        Ok(mut s) => s.ended(Instant::now()),
                        Err(_) => return,
                    };
                    for (key, lasted, count) in ended {
                        let line = format!(
                            "{:.6}  INFO halcyon::raft: {}\n",
                            jiff::Timestamp::now(),
                            back(&key, lasted, count)
                        );
                        let _ = std::io::stderr().lock().write_all(line.as_bytes());
                    }
                }
            });
    }
}

/// What to do with one repeat-prone line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The first of an outage: log it.
    Log,
    /// A repeat: drop it.
    Drop,
    /// A repeat, and time for the summary: drop it and summarise the outage so far (its
    /// length and how many lines it had, this one included).
    Summary { lasted: Duration, count: u64 },
}

/// One key's current outage.
#[derive(Clone, Copy, Debug)]
struct Outage {
    since: Instant,
    last: Instant,
    last_summary: Instant,
    count: u64,
}

/// The repeats per key (a peer, or an openraft line that names none): the pure part of
/// [`RaftFailures`] (time is an argument).
#[derive(Debug)]
pub struct Summaries<K> {
    outages: BTreeMap<K, Outage>,
}

impl<K> Default for Summaries<K> {
    fn default() -> Self {
        Summaries {
            outages: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone> Summaries<K> {
    /// One more line for `key` at `now`.
    pub fn seen(&mut self, key: &K, now: Instant) -> Verdict {
        if let Some(o) = self.outages.get_mut(key)
            && now.saturating_duration_since(o.last) < OUTAGE_GAP
        {
            o.count += 1;
            o.last = now;
            if now.saturating_duration_since(o.last_summary) < SUMMARY_INTERVAL {
                return Verdict::Drop;
            }
            o.last_summary = now;
            return Verdict::Summary {
                lasted: now.saturating_duration_since(o.since),
                count: o.count,
            };
        }
        if self.outages.len() >= PEERS_MAX && !self.outages.contains_key(key) {
            // Forget the key quiet for longest.
            if let Some(quiet) = self
                .outages
                .iter()
                .min_by_key(|(_, o)| o.last)
                .map(|(k, _)| k.clone())
            {
                self.outages.remove(&quiet);
            }
        }
        self.outages.insert(
            key.clone(),
            Outage {
                since: now,
                last: now,
                last_summary: now,
                count: 1,
            },
        );
        Verdict::Log
    }

    /// The outages over at `now` (no line for [`OUTAGE_GAP`]), forgotten, with how long each
    /// lasted (first to last line) and its lines: those that had repeats, which a summary
    /// line owes; a single line was logged as it was.
    pub fn ended(&mut self, now: Instant) -> Vec<(K, Duration, u64)> {
        let over: Vec<K> = self
            .outages
            .iter()
            .filter(|(_, o)| now.saturating_duration_since(o.last) >= OUTAGE_GAP)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for key in over {
            if let Some(o) = self.outages.remove(&key)
                && o.count > 1
            {
                out.push((key, o.last.saturating_duration_since(o.since), o.count));
            }
        }
        out
    }
}

/// What repeats: a peer's failures, or one openraft line (by its place in the source)
/// that names no peer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    Peer(u64),
    Line(&'static str),
}

/// The summary line of `key`'s outage so far; `text`: the line that is summarised.
pub fn summary(key: &Key, lasted: Duration, count: u64, text: &str) -> String {
    match key {
        Key::Peer(peer) => format!(
            "{} unreachable for {} s, {} Raft RPC failures (repeats are summarised every {} s)",
            peer_name(*peer),
            lasted.as_secs(),
            thousands(count),
            SUMMARY_INTERVAL.as_secs()
        ),
        Key::Line(_) => format!(
            "openraft logged {} times in {} s (repeats are summarised every {} s):{text}",
            thousands(count),
            lasted.as_secs(),
            SUMMARY_INTERVAL.as_secs()
        ),
    }
}

/// The line of `key`'s outage that ended after `lasted`, with `count` lines in all.
pub fn back(key: &Key, lasted: Duration, count: u64) -> String {
    match key {
        Key::Peer(peer) => format!(
            "{} reachable again after {} s, {} Raft RPC failures",
            peer_name(*peer),
            lasted.as_secs(),
            thousands(count)
        ),
        Key::Line(line) => format!(
            "openraft's repeated line ({line}) stopped after {} s, {} times",
            lasted.as_secs(),
            thousands(count)
        ),
    }
}

/// `1412` as `1,412`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The peer an openraft line is about: a `target` field, or `target=N` in its text.
pub fn peer_of(text: &str, target_field: Option<u64>) -> Option<u64> {
    if target_field.is_some() {
        return target_field;
    }
    let at = text.find("target=")? + "target=".len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// An event's message and fields as text, and its `target` field when it is a number.
#[derive(Default)]
struct Fields {
    text: String,
    target: Option<u64>,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "target" {
            self.target = Some(value);
        }
        let _ = write!(self.text, " {}={value}", field.name());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let value = format!("{value:?}");
        if field.name() == "target"
            && let Ok(n) = value.parse()
        {
            self.target = Some(n);
        }
        let _ = write!(self.text, " {}={value}", field.name());
    }
}

thread_local! {
    /// The last peer failure seen on this thread, when, and whether it was logged.
    static LAST: Cell<Option<(u64, Instant, bool)>> = const { Cell::new(None) };
}

/// The formatting layer's filter that summarises openraft's repeated peer failures.
#[derive(Debug, Default)]
pub struct RaftFailures {
    /// Shared with the sweeping thread (`init`).
    summaries: Arc<Mutex<Summaries<Key>>>,
}

impl RaftFailures {
    /// Whether `event` is logged as it is; writes a summary line itself when one is due.
    fn admit(&self, event: &Event<'_>) -> bool {
        let meta = event.metadata();
        if !meta.target().starts_with("openraft")
            || !(*meta.level() == Level::WARN || *meta.level() == Level::ERROR)
        {
            return true;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let now = Instant::now();
        let peer = peer_of(&fields.text, fields.target);
        if peer.is_none()
            && let Some((_, at, logged)) = LAST.get()
            && now.saturating_duration_since(at) < COMPANION_WINDOW
        {
            // The error line that follows a peer's failure on the same thread shares its
            // fate.
            return logged;
        }
        let key = match peer {
            Some(peer) => Key::Peer(peer),
            None => Key::Line(meta.name()),
        };
        let verdict = match self.summaries.lock() {
            Ok(mut s) => s.seen(&key, now),
            Err(_) => Verdict::Log,
        };
        if let Key::Peer(peer) = key {
            LAST.set(Some((peer, now, verdict == Verdict::Log)));
        }
        match verdict {
            Verdict::Log => true,
            Verdict::Drop => false,
            Verdict::Summary { lasted, count } => {
                let line = format!(
                    "{:.6}  WARN halcyon::raft: {}\n",
                    jiff::Timestamp::now(),
                    summary(&key, lasted, count, &fields.text)
                );
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
                false
            }
        }
    }
}

impl<S> Filter<S> for RaftFailures {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        self.admit(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_is_logged_then_one_summary_per_interval() {
        let mut s = Summaries::default();
        let start = Instant::now();
        let n3 = Key::Peer(3);
        assert_eq!(s.seen(&n3, start), Verdict::Log);
        // 25 failures a second for 30 s: three summaries, every other line dropped.
        let mut summaries = Vec::new();
        for i in 1..=750u64 {
            let now = start + Duration::from_millis(40 * i);
            match s.seen(&n3, now) {
                Verdict::Log => panic!("a repeat at {i} was logged"),
                Verdict::Drop => {}
                Verdict::Summary { lasted, count } => {
                    summaries.push(summary(&n3, lasted, count, ""))
                }
            }
        }
        assert_eq!(summaries.len(), 3, "{summaries:?}");
        assert!(
            summaries[0].starts_with("Raft peer 3 unreachable for 10 s, 251 Raft RPC failures"),
            "{summaries:?}"
        );
        assert!(
            summaries[2].starts_with("Raft peer 3 unreachable for 30 s, 751 Raft RPC failures"),
            "{summaries:?}"
        );
    }

    #[test]
    fn keys_are_summarised_apart_and_a_new_outage_is_logged_at_once() {
        let mut s = Summaries::default();
        let start = Instant::now();
        let (n2, n3, line) = (Key::Peer(2), Key::Peer(3), Key::Line("event x.rs:1"));
        assert_eq!(s.seen(&n2, start), Verdict::Log);
        assert_eq!(s.seen(&n3, start), Verdict::Log);
        assert_eq!(s.seen(&line, start), Verdict::Log);
        assert_eq!(s.seen(&n2, start + Duration::from_secs(1)), Verdict::Drop);
        assert_eq!(s.seen(&line, start + Duration::from_secs(1)), Verdict::Drop);
        // Quiet for longer than the gap: the peer came back; the next failure is news.
        let later = start + Duration::from_secs(1) + OUTAGE_GAP;
        assert_eq!(s.seen(&n2, later), Verdict::Log);
        assert_eq!(
            summary(&line, Duration::from_secs(10), 1412, " heartbeat error"),
            "openraft logged 1,412 times in 10 s (repeats are summarised every 10 s): heartbeat error"
        );
    }

    #[test]
    fn an_outage_that_stops_ends_with_one_line_that_owes_nothing() {
        let mut s = Summaries::default();
        let start = Instant::now();
        let n3 = Key::Peer(3);
        let one = Key::Peer(2);
        assert_eq!(s.seen(&n3, start), Verdict::Log);
        assert_eq!(s.seen(&one, start), Verdict::Log);
        // 42 s of failures, 25 a second: four summaries, then 50 repeats no summary wrote.
        let mut summarised = 0;
        for i in 1..=1050u64 {
            if let Verdict::Summary { count, .. } =
                s.seen(&n3, start + Duration::from_millis(40 * i))
            {
                summarised = count;
            }
        }
        assert_eq!(summarised, 1001);
        let last = start + Duration::from_millis(40 * 1050);
        // Not over while quiet for less than the gap.
        assert_eq!(
            s.ended(last + OUTAGE_GAP - Duration::from_millis(1)),
            Vec::new()
        );
        let ended = s.ended(last + OUTAGE_GAP);
        assert_eq!(ended, vec![(n3.clone(), Duration::from_secs(42), 1051)]);
        let (key, lasted, count) = &ended[0];
        assert_eq!(
            back(key, *lasted, *count),
            "Raft peer 3 reachable again after 42 s, 1,051 Raft RPC failures"
        );
        // Forgotten: once only, and the single failure of n2 (logged as it came) needs no line.
        assert_eq!(s.ended(last + OUTAGE_GAP * 10), Vec::new());
        assert!(s.outages.is_empty());
        // The next failure is a new outage, logged at once.
        assert_eq!(s.seen(&n3, last + OUTAGE_GAP * 10), Verdict::Log);
        assert_eq!(
            back(&Key::Line("event x.rs:1"), Duration::from_secs(3), 12),
            "openraft's repeated line (event x.rs:1) stopped after 3 s, 12 times"
        );
    }

    #[test]
    fn at_most_a_bounded_number_of_keys_are_tracked() {
        let mut s = Summaries::default();
        let start = Instant::now();
        for peer in 0..(PEERS_MAX as u64 + 10) {
            assert_eq!(s.seen(&Key::Peer(peer), start), Verdict::Log);
        }
        assert_eq!(s.outages.len(), PEERS_MAX);
    }

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1412), "1,412");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn the_peer_is_found_in_a_field_or_the_text() {
        assert_eq!(
            peer_of("error replication to target=3 error=x", None),
            Some(3)
        );
        assert_eq!(peer_of("while requesting vote", Some(2)), Some(2));
        assert_eq!(
            peer_of("RPCError err=Unreachable node: refused", None),
            None
        );
    }
}
