//! The generic cell rate algorithm: one stored number per key, the theoretical arrival time
//! (TAT) of the next request. A request at `now` is allowed when `TAT - now <= tau`, where the
//! emission interval `T = 1 / rate` and the tolerance `tau = T * (burst - 1)`; it then moves the
//! TAT to `max(TAT, now) + T`. A full burst is allowed at once, and then one request per `T`.

/// Limits, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Gcra {
    /// Emission interval.
    interval_us: f64,
    /// Tolerance.
    tau_us: f64,
    burst: u64,
    per_second: f64,
}

/// What one request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Allowed; store `tat_us`. `remaining` requests would still pass right now.
    Allow { tat_us: u64, remaining: u64 },
    /// Limited; retry in `retry_after_us`.
    Limit { retry_after_us: u64 },
}

impl Gcra {
    /// Limits for `per_second` (> 0) with bursts of `burst` (>= 1).
    pub(crate) fn new(per_second: f64, burst: u64) -> Result<Self, String> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(format!(
                "per_second must be a positive number, not {per_second}"
            ));
        }
        if burst == 0 {
            return Err("burst must be at least 1".into());
        }
        let interval_us = 1e6 / per_second;
        Ok(Self {
            interval_us,
            tau_us: interval_us * (burst - 1) as f64,
            burst,
            per_second,
        })
    }

    /// Decides one request at `now_us`, given the stored TAT (if any).
    pub(crate) fn check(&self, stored_tat_us: Option<u64>, now_us: u64) -> Verdict {
        let tat = stored_tat_us.unwrap_or(now_us).max(now_us) as f64;
        let now = now_us as f64;
        if tat - now > self.tau_us {
            let retry_after_us = (tat - self.tau_us - now).ceil() as u64;
            return Verdict::Limit { retry_after_us };
        }
        let next = tat + self.interval_us;
        let spare = now + self.tau_us - next;
        let remaining = if spare < 0.0 {
            0
        } else {
            (spare / self.interval_us).floor() as u64 + 1
        };
        Verdict::Allow {
            tat_us: next.ceil() as u64,
            remaining,
        }
    }

    /// The burst.
    pub(crate) fn burst(&self) -> u64 {
        self.burst
    }

    /// Seconds for a full burst to drain (the policy's window), at least 1.
    pub(crate) fn window_secs(&self) -> u64 {
        ((self.burst as f64 / self.per_second).ceil() as u64).max(1)
    }

    /// How long a key must be kept: until its TAT has passed.
    pub(crate) fn ttl_ms(&self, tat_us: u64, now_us: u64) -> u64 {
        tat_us.saturating_sub(now_us) / 1000 + 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(gcra: &Gcra, tat: &mut Option<u64>, now_us: u64) -> Verdict {
        let verdict = gcra.check(*tat, now_us);
        if let Verdict::Allow { tat_us, .. } = verdict {
            *tat = Some(tat_us);
        }
        verdict
    }

    #[test]
    fn a_full_burst_passes_at_once_then_one_per_interval() {
        let gcra = Gcra::new(10.0, 5).unwrap();
        let mut tat = None;
        for expected_remaining in (0..5).rev() {
            match run(&gcra, &mut tat, 0) {
                Verdict::Allow { remaining, .. } => assert_eq!(remaining, expected_remaining),
                Verdict::Limit { .. } => panic!("the burst must pass"),
            }
        }
        assert_eq!(
            run(&gcra, &mut tat, 0),
            Verdict::Limit {
                retry_after_us: 100_000
            }
        );
        assert!(matches!(
            run(&gcra, &mut tat, 99_999),
            Verdict::Limit { .. }
        ));
        assert!(matches!(
            run(&gcra, &mut tat, 100_000),
            Verdict::Allow { .. }
        ));
        assert!(matches!(
            run(&gcra, &mut tat, 100_000),
            Verdict::Limit { .. }
        ));
    }

    #[test]
    fn the_steady_rate_is_the_configured_rate() {
        let gcra = Gcra::new(4.0, 1).unwrap();
        let mut tat = None;
        let allowed = (0..1000u64)
            .filter(|ms| matches!(run(&gcra, &mut tat, ms * 10_000), Verdict::Allow { .. }))
            .count();
        assert_eq!(allowed, 40, "4 per second over 10 seconds");
    }

    #[test]
    fn retry_after_shrinks_as_time_passes() {
        let gcra = Gcra::new(1.0, 1).unwrap();
        let mut tat = None;
        run(&gcra, &mut tat, 0);
        assert_eq!(
            run(&gcra, &mut tat, 250_000),
            Verdict::Limit {
                retry_after_us: 750_000
            }
        );
        assert_eq!(
            run(&gcra, &mut tat, 900_000),
            Verdict::Limit {
                retry_after_us: 100_000
            }
        );
    }

    #[test]
    fn an_idle_key_regains_its_full_burst() {
        let gcra = Gcra::new(100.0, 3).unwrap();
        let mut tat = None;
        for _ in 0..3 {
            run(&gcra, &mut tat, 0);
        }
        assert!(matches!(run(&gcra, &mut tat, 0), Verdict::Limit { .. }));
        assert!(matches!(
            run(&gcra, &mut tat, 60_000_000),
            Verdict::Allow { remaining: 2, .. }
        ));
    }

    #[test]
    fn nonsense_limits_are_refused() {
        assert!(Gcra::new(0.0, 1).is_err());
        assert!(Gcra::new(f64::NAN, 1).is_err());
        assert!(Gcra::new(1.0, 0).is_err());
        assert_eq!(Gcra::new(0.5, 3).unwrap().window_secs(), 6);
    }
}
