//! Exponential backoff with full jitter (the AWS architecture blog's "full jitter"): the wait before
//! retry `n` is uniform in `[0, min(max, base * 2^(n-1))]`, so a crowd of retrying clients spreads
//! out instead of stampeding in lock-step.

use std::time::Duration;

/// The wait before the retry that follows attempt `attempt` (1-based).
pub fn delay(attempt: u32, base_ms: u64, max_ms: u64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(32);
    let ceiling_ms = base_ms.saturating_mul(1u64 << exponent).min(max_ms);
    Duration::from_millis(fastrand::u64(0..=ceiling_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_stays_under_the_exponential_ceiling_and_the_cap() {
        for attempt in 1..=40 {
            for _ in 0..50 {
                let ceiling = (10u64 << (attempt - 1).min(32)).min(500);
                assert!(delay(attempt, 10, 500) <= Duration::from_millis(ceiling));
            }
        }
        assert_eq!(delay(1, 0, 100), Duration::ZERO);
    }
}
