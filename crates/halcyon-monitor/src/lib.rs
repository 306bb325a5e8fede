//! Halcyon's user-defined monitors (SPEC 9.5): a sampler takes a value at an interval, a
//! predicate decides when the monitor fires, and a rearm predicate when it may fire again.
//!
//! - [`predicate`]: the C-like predicate language (`X`, `X@0`, `X@1`, `X@P`, comparisons,
//!   `&&`, `||`, `!`, arithmetic, parentheses), parsed with precise errors and evaluated.
//! - [`arm`]: the arming state machine, pure: a sample in, [`Outcome`] out.
//! - [`sample`]: samplers — commands printing a number or a record, and built-ins for process
//!   count, file-system use, memory and load — and the parsing of their output.
//!
//! [`MonitorState`] ties them to a configured [`halcyon_config::Monitor`]; [`check_predicate`]
//! and [`check_sampler`] are for the configuration validator (`halcyon check`).
//!
//! Invariants: no async, no tasks, no clock on the arming path (the caller decides when to
//! sample); only [`sample`] does I/O, bounded by timeouts and output limits; errors in a
//! monitor's configuration, output or evaluation are values, never panics.

pub mod arm;
pub mod predicate;
pub mod sample;

use std::time::Duration;

use halcyon_config::{Monitor, MonitorAction};

pub use arm::{Arming, Outcome};
pub use predicate::{EvalError, Predicate, PredicateError};
pub use sample::{Sample, SampleError, Sampler, SamplerSpecError};

/// A monitor's configuration that cannot work, naming the field at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MonitorError {
    #[error("monitor {monitor:?}: sample: {error}")]
    Sampler {
        monitor: String,
        error: SamplerSpecError,
    },
    #[error("monitor {monitor:?}: predicate: {error}")]
    Predicate {
        monitor: String,
        error: PredicateError,
    },
    #[error("monitor {monitor:?}: rearm: {error}")]
    Rearm {
        monitor: String,
        error: PredicateError,
    },
}

/// Checks a predicate's syntax (for `halcyon check`).
pub fn check_predicate(text: &str) -> Result<(), PredicateError> {
    Predicate::parse(text).map(|_| ())
}

/// The monitor languages' checks for the configuration loader
/// (`halcyon_config::load_with(paths, Some(&Checks))`), so `halcyon check` and the
/// daemon report predicate and sampler mistakes at their file positions.
pub struct Checks;

impl halcyon_config::ValueChecks for Checks {
    fn predicate(&self, text: &str) -> Result<(), halcyon_config::ValueError> {
        check_predicate(text).map_err(|e| halcyon_config::ValueError {
            column: Some(e.column),
            problem: e.problem,
            expected: e.expected,
            hint: e.hint,
        })
    }

    fn sampler(&self, text: &str) -> Result<(), halcyon_config::ValueError> {
        check_sampler(text).map_err(|e| halcyon_config::ValueError {
            column: None,
            problem: e.to_string(),
            expected: None,
            hint: None,
        })
    }
}

/// Checks a sampler specification (for `halcyon check`).
pub fn check_sampler(spec: &str) -> Result<(), SamplerSpecError> {
    Sampler::parse(spec).map(|_| ())
}

/// One configured monitor at run time: its sampler, and its arming state.
#[derive(Clone, Debug)]
pub struct MonitorState {
    name: String,
    sampler: Sampler,
    interval: Duration,
    action: MonitorAction,
    arming: Arming,
}

impl MonitorState {
    /// Parses the sampler and both predicates up front; starts armed.
    pub fn new(config: &Monitor) -> Result<MonitorState, MonitorError> {
        let monitor = config.name.clone();
        let sampler = Sampler::parse(&config.sample).map_err(|error| MonitorError::Sampler {
            monitor: monitor.clone(),
            error,
        })?;
        let predicate =
            Predicate::parse(&config.predicate).map_err(|error| MonitorError::Predicate {
                monitor: monitor.clone(),
                error,
            })?;
        let rearm = config
            .rearm
            .as_deref()
            .map(Predicate::parse)
            .transpose()
            .map_err(|error| MonitorError::Rearm {
                monitor: monitor.clone(),
                error,
            })?;
        Ok(MonitorState {
            name: monitor,
            sampler,
            interval: config.interval,
            action: config.action.clone(),
            arming: Arming::new(predicate, rearm),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// What to do when [`Outcome::Fired`].
    pub fn action(&self) -> &MonitorAction {
        &self.action
    }

    pub fn is_armed(&self) -> bool {
        self.arming.is_armed()
    }

    /// The last sample seen, if any (its values go into the event's environment).
    pub fn last_sample(&self) -> Option<&Sample> {
        self.arming.previous()
    }

    /// How long a sample may take: the interval, at most [`sample::SAMPLE_TIMEOUT_MAX`].
    pub fn sample_timeout(&self) -> Duration {
        self.interval.min(sample::SAMPLE_TIMEOUT_MAX)
    }

    /// Takes one sample with the sampler (blocking, bounded by [`Self::sample_timeout`]).
    pub fn take_sample(&self) -> Result<Sample, SampleError> {
        self.sampler.sample(self.sample_timeout())
    }

    /// Feeds one sample to the arming state machine.
    pub fn on_sample(&mut self, sample: Sample) -> Result<Outcome, EvalError> {
        self.arming.on_sample(sample)
    }
}
