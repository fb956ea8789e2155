//! A circuit breaker per upstream: after `breaker_failures` consecutive failures it opens and
//! refuses calls for `breaker_cooldown_ms`; then it lets exactly one trial through (half-open). The
//! trial's success closes it, its failure opens it again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// The breaker. Cheap to consult: one uncontended lock.
#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    failures_max: u32,
    cooldown: Duration,
}

/// Leave to make one call. It must be settled with [`Permit::record`]; a permit dropped unsettled
/// (the caller gave up mid-call) counts as a failure, so a lost half-open trial cannot wedge the
/// breaker shut.
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    trial: bool,
    settled: bool,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(failures_max: u32, cooldown: Duration) -> Self {
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            failures_max: failures_max.max(1),
            cooldown,
        }
    }

    /// Asks for leave to call. `None` while open, or while a half-open trial is under way.
    pub fn try_acquire(&self) -> Option<Permit<'_>> {
        let mut state = self.state.lock().expect("breaker lock");
        let trial = match *state {
            State::Closed { .. } => false,
            State::Open { until } if Instant::now() >= until => {
                *state = State::HalfOpen;
                true
            }
            State::Open { .. } | State::HalfOpen => return None,
        };
        Some(Permit {
            breaker: self,
            trial,
            settled: false,
        })
    }

    /// Whether calls are currently refused.
    pub fn is_open(&self) -> bool {
        !matches!(
            *self.state.lock().expect("breaker lock"),
            State::Closed { .. }
        )
    }

    fn settle(&self, trial: bool, success: bool) {
        let mut state = self.state.lock().expect("breaker lock");
        *state = match (*state, success) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.failures_max => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            // A non-trial call that started before the breaker opened must not re-arm the timer.
            (State::Open { until }, false) if !trial => State::Open { until },
            (State::HalfOpen, false) if !trial => State::HalfOpen,
            (_, false) => State::Open {
                until: Instant::now() + self.cooldown,
            },
        };
    }
}

impl Permit<'_> {
    /// Settles the call: a success closes the breaker, a failure counts towards opening it.
    pub fn record(mut self, success: bool) {
        self.settled = true;
        self.breaker.settle(self.trial, success);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.settle(self.trial, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_half_opens_with_one_trial() {
        let breaker = Breaker::new(2, Duration::from_millis(30));
        breaker.try_acquire().unwrap().record(false);
        assert!(!breaker.is_open());
        breaker.try_acquire().unwrap().record(false);
        assert!(breaker.try_acquire().is_none(), "open after 2 failures");
        std::thread::sleep(Duration::from_millis(40));
        let trial = breaker.try_acquire().expect("one trial after cooldown");
        assert!(breaker.try_acquire().is_none(), "only one trial at a time");
        trial.record(true);
        assert!(!breaker.is_open());
    }

    #[test]
    fn failed_or_abandoned_trial_reopens() {
        let breaker = Breaker::new(1, Duration::from_millis(10));
        breaker.try_acquire().unwrap().record(false);
        std::thread::sleep(Duration::from_millis(15));
        drop(breaker.try_acquire().unwrap());
        assert!(breaker.try_acquire().is_none());
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let breaker = Breaker::new(2, Duration::from_secs(60));
        breaker.try_acquire().unwrap().record(false);
        breaker.try_acquire().unwrap().record(true);
        breaker.try_acquire().unwrap().record(false);
        assert!(!breaker.is_open());
    }
}
