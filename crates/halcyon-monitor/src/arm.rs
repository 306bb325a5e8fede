//! Arming: when a monitor fires (SPEC 9.5), as a pure state machine.
//!
//! ```text
//!            predicate true: Fired
//!   armed ─────────────────────────▶ disarmed
//!     ▲                                 │
//!     └─────────────────────────────────┘
//!       rearm predicate true: Rearmed
//!       (no rearm predicate: the predicate false)
//! ```
//!
//! A monitor starts armed. While armed, each sample is tested against the predicate; the first
//! one that satisfies it fires, once, and disarms the monitor. While disarmed, only the rearm
//! predicate is tested (without one, the predicate itself: the monitor rearms when the
//! predicate no longer holds). One sample yields at most one [`Outcome`]: the sample that
//! rearms is not also tested against the predicate, so with overlapping predicates the next
//! sample fires at the earliest. This is the seeds' "after an event happens, the next event
//! will not be notified until the utilization matches the rearm predicate": `X>90` with rearm
//! `X<80` fires once above 90 and again only after dropping below 80.
//!
//! `X@P` is the previous sample (the one given to the previous [`Arming::on_sample`] call,
//! whatever its outcome). Before there is one, a predicate that uses `X@P` does not hold — it
//! neither fires nor rearms.
//!
//! An evaluation error (a field missing from the sample, a division by zero) leaves the state
//! as it was and is returned for the caller to report; the sample still becomes the previous one.
//!
//! No I/O, no clock: the caller takes the samples.

use crate::predicate::{EvalError, Predicate};
use crate::sample::Sample;

/// What one sample did to a monitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The predicate became true while armed: the monitor's action runs; it is now disarmed.
    Fired,
    /// The rearm condition held while disarmed: the monitor is armed again.
    Rearmed,
    /// No change.
    Nothing,
}

/// The arming state of one monitor.
#[derive(Clone, Debug)]
pub struct Arming {
    predicate: Predicate,
    rearm: Option<Predicate>,
    armed: bool,
    previous: Option<Sample>,
}

impl Arming {
    /// A monitor, armed, that has seen no sample.
    pub fn new(predicate: Predicate, rearm: Option<Predicate>) -> Arming {
        Arming {
            predicate,
            rearm,
            armed: true,
            previous: None,
        }
    }

    pub fn is_armed(&self) -> bool {
        self.armed
    }

    pub fn predicate(&self) -> &Predicate {
        &self.predicate
    }

    pub fn rearm(&self) -> Option<&Predicate> {
        self.rearm.as_ref()
    }

    /// The last sample seen: `X@P` for the next one.
    pub fn previous(&self) -> Option<&Sample> {
        self.previous.as_ref()
    }

    /// Feeds one sample.
    pub fn on_sample(&mut self, sample: Sample) -> Result<Outcome, EvalError> {
        let outcome = self.step(&sample);
        self.previous = Some(sample);
        outcome
    }

    fn step(&mut self, sample: &Sample) -> Result<Outcome, EvalError> {
        let previous = self.previous.as_ref();
        if self.armed {
            if self.predicate.holds(sample, previous)? {
                self.armed = false;
                return Ok(Outcome::Fired);
            }
            return Ok(Outcome::Nothing);
        }
        let rearm = match &self.rearm {
            Some(rearm) => rearm.holds(sample, previous)?,
            None => !self.predicate.holds(sample, previous)?,
        };
        if rearm {
            self.armed = true;
            return Ok(Outcome::Rearmed);
        }
        Ok(Outcome::Nothing)
    }
}
