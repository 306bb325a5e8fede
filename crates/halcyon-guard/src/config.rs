//! The guard's settings and their command-line form (what the daemon passes to
//! `halcyon guard`, or to the `halcyon-guard` binary).

use std::time::Duration;

/// Settings of one guard process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardConfig {
    /// The guard fences this long before the deadline (`guard_lead`); covers its own wake-up
    /// latency and the time the kills and deletions take, so they are done by the deadline.
    pub lead: Duration,
    /// Longest sleep between two looks at the clock while armed (a backstop to the
    /// CLOCK_BOOTTIME timer, which wakes the guard at the exact time). The default, 40 ms,
    /// keeps even a guard whose timer never fired within the coordinator's 50 ms margin:
    /// it would start fencing at most `tick - lead` = 20 ms after the deadline. It was 5 ms:
    /// 200 wake-ups a second of an idle guard for a case the timer already covers.
    pub tick: Duration,
    /// SCHED_FIFO priority, or None to stay a normal process.
    pub realtime_priority: Option<i32>,
    /// mlockall(MCL_CURRENT | MCL_FUTURE), so that a fence never waits for a page-in.
    pub lock_memory: bool,
}

impl Default for GuardConfig {
    fn default() -> GuardConfig {
        GuardConfig {
            lead: Duration::from_millis(20),
            tick: Duration::from_millis(40),
            realtime_priority: Some(20),
            lock_memory: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{option}: missing value")]
    MissingValue { option: String },
    #[error("{option}: {found:?} is not {expected}")]
    BadValue {
        option: String,
        found: String,
        expected: &'static str,
    },
    #[error(
        "unknown option {0:?} (expected --lead-ms, --tick-ms, --rt-priority, --mlock or --no-mlock)"
    )]
    UnknownOption(String),
}

impl GuardConfig {
    /// The arguments that [`GuardConfig::from_args`] reads back.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--lead-ms".into(),
            self.lead.as_millis().to_string(),
            "--tick-ms".into(),
            self.tick.as_millis().max(1).to_string(),
            "--rt-priority".into(),
            self.realtime_priority
                .map_or("off".into(), |priority| priority.to_string()),
            if self.lock_memory {
                "--mlock".into()
            } else {
                "--no-mlock".into()
            },
        ]
    }

    /// Reads `--lead-ms N --tick-ms N --rt-priority N|off --mlock|--no-mlock` over the
    /// defaults.
    pub fn from_args<I, S>(args: I) -> Result<GuardConfig, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut config = GuardConfig::default();
        let mut args = args.into_iter().map(Into::into);
        while let Some(option) = args.next() {
            match option.as_str() {
                "--lead-ms" | "--tick-ms" | "--rt-priority" => {
                    let value = args.next().ok_or_else(|| ConfigError::MissingValue {
                        option: option.clone(),
                    })?;
                    let bad = |expected| ConfigError::BadValue {
                        option: option.clone(),
                        found: value.clone(),
                        expected,
                    };
                    match option.as_str() {
                        "--lead-ms" => {
                            let ms: u64 =
                                value.parse().map_err(|_| bad("a number of milliseconds"))?;
                            config.lead = Duration::from_millis(ms);
                        }
                        "--tick-ms" => {
                            let ms: u64 = value
                                .parse()
                                .ok()
                                .filter(|ms| (1..=1000).contains(ms))
                                .ok_or_else(|| {
                                bad("a number of milliseconds from 1 to 1000")
                            })?;
                            config.tick = Duration::from_millis(ms);
                        }
                        _ => {
                            config.realtime_priority = if value == "off" {
                                None
                            } else {
                                Some(
                                    value
                                        .parse()
                                        .ok()
                                        .filter(|p| (1..=99).contains(p))
                                        .ok_or_else(|| bad("a priority from 1 to 99, or off"))?,
                                )
                            };
                        }
                    }
                }
                "--mlock" => config.lock_memory = true,
                "--no-mlock" => config.lock_memory = false,
                _ => return Err(ConfigError::UnknownOption(option)),
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_round_trip_and_errors_are_precise() {
        let config = GuardConfig {
            lead: Duration::from_millis(7),
            tick: Duration::from_millis(3),
            realtime_priority: None,
            lock_memory: false,
        };
        assert_eq!(GuardConfig::from_args(config.to_args()), Ok(config));
        assert_eq!(
            GuardConfig::from_args(GuardConfig::default().to_args()),
            Ok(GuardConfig::default())
        );
        assert_eq!(
            GuardConfig::from_args(["--tick-ms", "0"])
                .unwrap_err()
                .to_string(),
            "--tick-ms: \"0\" is not a number of milliseconds from 1 to 1000"
        );
        assert_eq!(
            GuardConfig::from_args(["--rt-priority"])
                .unwrap_err()
                .to_string(),
            "--rt-priority: missing value"
        );
        assert!(matches!(
            GuardConfig::from_args(["--fast"]),
            Err(ConfigError::UnknownOption(_))
        ));
    }
}
