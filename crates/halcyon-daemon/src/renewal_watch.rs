//! Is the network fast enough for the configured timings? The lease task reports every
//! granted renewal's round trip (its `t_send` to the grant) here; a renewal slower than the
//! warning threshold (`halcyon_config::timing::renewal_warning_threshold`, half of the
//! longest round trip with which a holder keeps its lease) is a network, or a machine, too
//! slow for the heartbeat interval: leases will be lost. The daemon says so in its log, at
//! most once per [`WARN_EVERY`], and in `halcyon status` (the slowest renewal of the last
//! [`WINDOW`], and the warning while one was slow within it).
//!
//! Pure: time is an input (tokio's `Instant`), no I/O; the caller logs what
//! [`RenewalWatch::observe`] returns.

use std::time::Duration;

use tokio::time::Instant;

/// The window over which the slowest renewal is kept for `status`.
pub const WINDOW: Duration = Duration::from_secs(60);
/// The log is told about slow renewals at most this often.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

/// The renewals' round trips of one node.
#[derive(Debug, Clone)]
pub struct RenewalWatch {
    /// Above this a renewal is slow.
    threshold: Duration,
    /// The longest round trip that keeps the lease (for the message).
    budget: Duration,
    /// The slowest round trip of the current window and of the one before, with when the
    /// current window began: `status` shows the larger, so a slow renewal stays visible
    /// for between one and two windows.
    current: (Instant, Duration),
    previous: Duration,
    /// The latest renewal above the threshold, and when (forgotten after a window).
    slow: Option<(Instant, Duration)>,
    /// When the log was last told.
    warned_at: Option<Instant>,
    /// Slow renewals since the log was last told (the message counts them).
    slow_since_warned: u64,
}

/// What `status` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalReport {
    /// The slowest granted renewal within the last one to two windows.
    pub slowest: Duration,
    /// Set while a renewal slower than the threshold was seen within the last window.
    pub warning: Option<String>,
}

impl RenewalWatch {
    pub fn new(now: Instant, threshold: Duration, budget: Duration) -> RenewalWatch {
        RenewalWatch {
            threshold,
            budget,
            current: (now, Duration::ZERO),
            previous: Duration::ZERO,
            slow: None,
            warned_at: None,
            slow_since_warned: 0,
        }
    }

    /// The limits of a lease changed by `halcyon apply` (the next renewals are judged by
    /// them).
    pub fn set_limits(&mut self, threshold: Duration, budget: Duration) {
        self.threshold = threshold;
        self.budget = budget;
    }

    /// One granted renewal that took `round_trip`, seen at `now`. Returns the line to log
    /// when it was slow and the log was not told within [`WARN_EVERY`].
    pub fn observe(&mut self, now: Instant, round_trip: Duration) -> Option<String> {
        self.roll(now);
        self.current.1 = self.current.1.max(round_trip);
        if round_trip <= self.threshold {
            return None;
        }
        self.slow_since_warned += 1;
        self.slow = Some((now, round_trip));
        if self
            .warned_at
            .is_some_and(|at| now.duration_since(at) < WARN_EVERY)
        {
            return None;
        }
        let line = format!(
            "{}; {} slow renewals since the last warning",
            self.describe(round_trip),
            self.slow_since_warned
        );
        self.warned_at = Some(now);
        self.slow_since_warned = 0;
        Some(line)
    }

    /// What `status` shows at `now`.
    pub fn report(&mut self, now: Instant) -> RenewalReport {
        self.roll(now);
        RenewalReport {
            slowest: self.current.1.max(self.previous),
            warning: self.slow.map(|(_, round_trip)| self.describe(round_trip)),
        }
    }

    fn describe(&self, round_trip: Duration) -> String {
        format!(
            "a lease renewal took {} ms: the network (or this machine) is too slow for the heartbeat interval; a renewal must come back within {} ms to keep the lease (warning above {} ms); lengthen [heartbeat] interval (or use profile = \"default\")",
            round_trip.as_millis(),
            self.budget.as_millis(),
            self.threshold.as_millis()
        )
    }

    /// Starts a new window when the current one is over; forgets a slow renewal older than
    /// a window.
    fn roll(&mut self, now: Instant) {
        let (began, slowest) = self.current;
        if now.duration_since(began) >= WINDOW {
            // A whole window with nothing in it leaves nothing to carry over.
            self.previous = if now.duration_since(began) >= WINDOW * 2 {
                Duration::ZERO
            } else {
                slowest
            };
            self.current = (now, Duration::ZERO);
        }
        if self
            .slow
            .is_some_and(|(at, _)| now.duration_since(at) >= WINDOW)
        {
            self.slow = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The fast profile's figures: warning above 30 ms, budget 60 ms.
    fn watch(t0: Instant) -> RenewalWatch {
        RenewalWatch::new(t0, ms(30), ms(60))
    }

    #[test]
    fn renewals_within_the_threshold_say_nothing() {
        let t0 = Instant::now();
        let mut w = watch(t0);
        for n in 0..100 {
            assert_eq!(w.observe(t0 + ms(30) * n, ms(30)), None);
        }
        let report = w.report(t0 + ms(3_000));
        assert_eq!(report.slowest, ms(30));
        assert_eq!(report.warning, None);
    }

    #[test]
    fn a_changed_lease_judges_the_next_renewals_by_its_limits() {
        let t0 = Instant::now();
        let mut w = watch(t0);
        assert_eq!(w.observe(t0 + ms(10), ms(25)), None);
        w.set_limits(ms(20), ms(40));
        let line = w
            .observe(t0 + ms(20), ms(25))
            .expect("slow for the new limits");
        assert!(line.contains("within 40 ms"), "{line}");
    }

    #[test]
    fn a_slow_renewal_is_logged_at_most_once_a_minute_and_shown_for_a_window() {
        let t0 = Instant::now();
        let mut w = watch(t0);
        let first = w
            .observe(t0 + ms(100), ms(45))
            .expect("the first slow renewal is logged");
        assert!(first.starts_with("a lease renewal took 45 ms:"), "{first}");
        assert!(first.contains("within 60 ms"), "{first}");
        assert!(
            first.ends_with("1 slow renewals since the last warning"),
            "{first}"
        );
        // More slow renewals within the minute: counted, not logged.
        for n in 1..=10 {
            assert_eq!(w.observe(t0 + ms(100) + ms(1_000) * n, ms(50)), None);
        }
        let report = w.report(t0 + ms(20_000));
        assert_eq!(report.slowest, ms(50));
        assert!(
            report
                .warning
                .as_deref()
                .is_some_and(|w| w.starts_with("a lease renewal took 50 ms"))
        );
        // A minute after the first line, the next slow renewal is logged with the count.
        let next = w
            .observe(t0 + ms(100) + WARN_EVERY, ms(40))
            .expect("logged again");
        assert!(
            next.ends_with("11 slow renewals since the last warning"),
            "{next}"
        );
        // A window without slow renewals: the warning goes, the slowest is kept one more
        // window, then forgotten.
        let later = t0 + ms(100) + WARN_EVERY + WINDOW;
        assert_eq!(w.observe(later, ms(5)), None);
        let report = w.report(later);
        assert_eq!(report.warning, None);
        assert_eq!(report.slowest, ms(40));
        let report = w.report(later + WINDOW * 2);
        assert_eq!(report.slowest, Duration::ZERO);
    }
}
