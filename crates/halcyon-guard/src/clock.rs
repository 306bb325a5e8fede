//! CLOCK_BOOTTIME, the one clock of the guard protocol.
//!
//! CLOCK_BOOTTIME is CLOCK_MONOTONIC plus the time the machine spent suspended: it runs at the
//! same (NTP-slewed) rate as the `Instant` that `lease.rs` uses, never jumps backwards, and a
//! machine that was suspended or frozen while holding a lease sees, on waking, that the lease's
//! deadline has passed. A deadline computed as `BootTime::now()` taken *before* the daemon's own
//! `Instant` `t_send`, plus the lease, is therefore reached no later (in real time) than the
//! daemon's `t_send + lease`.

use std::fmt;
use std::time::Duration;

/// A point on CLOCK_BOOTTIME, in nanoseconds since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BootTime(u64);

impl BootTime {
    /// The current time on CLOCK_BOOTTIME.
    pub fn now() -> BootTime {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime(2) writes one timespec through a valid pointer.
        let result = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) };
        // CLOCK_BOOTTIME exists since Linux 2.6.39; failure would be a broken kernel.
        assert_eq!(result, 0, "clock_gettime(CLOCK_BOOTTIME) failed");
        BootTime(now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64)
    }

    pub const fn from_nanos(nanos: u64) -> BootTime {
        BootTime(nanos)
    }

    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// The lease deadline for a renewal sent at `t_send` (taken with [`BootTime::now`] just
    /// before the daemon's own `Instant` send time): `t_send + lease`.
    pub fn lease_deadline(t_send: BootTime, lease: Duration) -> BootTime {
        t_send.saturating_add(lease)
    }

    pub fn saturating_add(self, duration: Duration) -> BootTime {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        BootTime(self.0.saturating_add(nanos))
    }

    pub fn saturating_sub(self, duration: Duration) -> BootTime {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        BootTime(self.0.saturating_sub(nanos))
    }

    /// `self - earlier`, or zero when `earlier` is later.
    pub fn duration_since(self, earlier: BootTime) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// The timespec for `timerfd_settime` / `clock_nanosleep` with an absolute time.
    pub(crate) fn timespec(self) -> libc::timespec {
        libc::timespec {
            tv_sec: (self.0 / 1_000_000_000) as libc::time_t,
            tv_nsec: (self.0 % 1_000_000_000) as libc::c_long,
        }
    }
}

impl fmt::Display for BootTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boottime_advances_and_does_arithmetic() {
        let a = BootTime::now();
        let b = BootTime::now();
        assert!(b >= a);
        assert!(a.as_nanos() > 0);
        let d = BootTime::lease_deadline(a, Duration::from_millis(300));
        assert_eq!(d.duration_since(a), Duration::from_millis(300));
        assert_eq!(a.duration_since(d), Duration::ZERO);
        assert_eq!(d.saturating_sub(Duration::from_millis(300)), a);
        assert_eq!(
            BootTime::from_nanos(5).saturating_sub(Duration::from_secs(1)),
            BootTime(0)
        );
        let ts = BootTime::from_nanos(3_000_000_007).timespec();
        assert_eq!((ts.tv_sec, ts.tv_nsec), (3, 7));
    }

    #[test]
    fn boottime_is_not_behind_monotonic() {
        let mut mono = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut mono) };
        let boot = BootTime::now();
        let mono = mono.tv_sec as u64 * 1_000_000_000 + mono.tv_nsec as u64;
        assert!(boot.as_nanos() >= mono);
    }
}
