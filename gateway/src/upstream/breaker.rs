//! A circuit breaker per upstream: after `breaker_failures` consecutive failures it opens and
//! refuses calls for `breaker_cooldown_ms`; then it lets exactly one trial through (half-open). The
//! trial's success closes it, its failure opens it again.
//!
//! It counts only what the backend did (SPEC §4). A call cut short by its own client (who hung
//! up, so hyper dropped the request's future) says nothing about the backend: it counts neither
//! way, and a trial cut short lets the next call be the trial. Otherwise any client could switch
//! a backend off by hanging up on slow calls, and a load test that ends would do it by accident.

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

/// Leave to make one call, settled with [`Permit::record`]. A permit dropped unsettled (the
/// caller gave up mid-call) counts for nothing; if it was the half-open trial, the next call is
/// the trial, so a lost trial never wedges the breaker shut.
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

    /// The trial ended without a verdict: the next call may try again at once.
    fn abandon_trial(&self) {
        let mut state = self.state.lock().expect("breaker lock");
        if *state == State::HalfOpen {
            *state = State::Open {
                until: Instant::now(),
            };
        }
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
        if !self.settled && self.trial {
            self.breaker.abandon_trial();
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
    fn a_failed_trial_reopens() {
        let breaker = Breaker::new(1, Duration::from_millis(10));
        breaker.try_acquire().unwrap().record(false);
        std::thread::sleep(Duration::from_millis(15));
        breaker.try_acquire().unwrap().record(false);
        assert!(breaker.try_acquire().is_none());
    }

    #[test]
    fn calls_cut_short_by_their_clients_count_for_nothing() {
        let breaker = Breaker::new(2, Duration::from_secs(60));
        for _ in 0..10 {
            drop(breaker.try_acquire().unwrap());
        }
        assert!(!breaker.is_open(), "hang-ups never open it");
        breaker.try_acquire().unwrap().record(false);
        drop(breaker.try_acquire().unwrap());
        breaker.try_acquire().unwrap().record(false);
        assert!(breaker.is_open(), "two real failures still do");
    }

    #[test]
    fn an_abandoned_trial_lets_the_next_call_be_the_trial() {
        let breaker = Breaker::new(1, Duration::from_millis(10));
        breaker.try_acquire().unwrap().record(false);
        std::thread::sleep(Duration::from_millis(15));
        drop(breaker.try_acquire().expect("the trial"));
        let next = breaker.try_acquire().expect("a new trial at once");
        next.record(true);
        assert!(!breaker.is_open());
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
