//! The last hour of this gateway's finished sagas, minute by minute: how many ended each way,
//! and their latency's p50 and p99, for the console's chart (SPEC §6). Sixty fixed buckets, each
//! a count per outcome and a latency histogram, so memory and the cost of a saga's end are
//! constant however busy the gateway is.

use std::sync::Mutex;

/// Minutes kept.
pub const MINUTES: usize = 60;
/// The outcomes counted, in the chart's order.
pub const OUTCOMES: [&str; 2] = ["completed", "compensated"];
/// Latency buckets: bucket `i` holds latencies under `2^(i/2)` ms (about 41% apart), the last
/// everything longer (about 12 days and up).
const BUCKETS: usize = 60;

#[derive(Debug, Clone, Copy)]
struct Minute {
    /// Minutes since the epoch this bucket holds; another value means it is stale.
    index: u64,
    counts: [u32; OUTCOMES.len()],
    latency: [u32; BUCKETS],
}

impl Minute {
    const EMPTY: Minute = Minute {
        index: u64::MAX,
        counts: [0; OUTCOMES.len()],
        latency: [0; BUCKETS],
    };
}

/// One minute of the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct MinuteView {
    /// Its start, ms since the epoch.
    pub start_ms: u64,
    /// Sagas finished, per outcome, in [`OUTCOMES`] order.
    pub counts: [u32; OUTCOMES.len()],
    /// Median latency, ms (an upper bound: the bucket's top); `None` with no saga.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency, ms, likewise.
    pub p99_ms: Option<f64>,
}

/// The ring of minutes.
#[derive(Debug)]
pub struct LastHour {
    minutes: Mutex<[Minute; MINUTES]>,
}

impl Default for LastHour {
    fn default() -> Self {
        Self {
            minutes: Mutex::new([Minute::EMPTY; MINUTES]),
        }
    }
}

fn bucket(latency_ms: u64) -> usize {
    // 2 * log2(latency): the number of half-octaves.
    let half_octaves = (latency_ms.max(1) as f64).log2() * 2.0;
    (half_octaves.floor() as usize + 1).min(BUCKETS - 1)
}

fn bucket_top_ms(bucket: usize) -> f64 {
    2f64.powf(bucket as f64 / 2.0)
}

impl LastHour {
    /// Counts a saga that ended as `outcome` at `now_ms`, `latency_ms` after it began. Other
    /// outcomes than [`OUTCOMES`] are not charted.
    pub fn record(&self, outcome: &str, latency_ms: u64, now_ms: u64) {
        let Some(which) = OUTCOMES.iter().position(|o| *o == outcome) else {
            return;
        };
        let index = now_ms / 60_000;
        let mut minutes = self.minutes.lock().expect("last hour");
        let minute = &mut minutes[(index % MINUTES as u64) as usize];
        if minute.index != index {
            *minute = Minute {
                index,
                ..Minute::EMPTY
            };
        }
        minute.counts[which] = minute.counts[which].saturating_add(1);
        let slot = &mut minute.latency[bucket(latency_ms)];
        *slot = slot.saturating_add(1);
    }

    /// The hour up to `now_ms`, oldest minute first.
    pub fn view(&self, now_ms: u64) -> Vec<MinuteView> {
        let now = now_ms / 60_000;
        let minutes = *self.minutes.lock().expect("last hour");
        (0..MINUTES as u64)
            .rev()
            .map(|ago| {
                let index = now.saturating_sub(ago);
                let minute = minutes[(index % MINUTES as u64) as usize];
                let minute = if minute.index == index {
                    minute
                } else {
                    Minute::EMPTY
                };
                MinuteView {
                    start_ms: index * 60_000,
                    counts: minute.counts,
                    p50_ms: quantile(&minute.latency, 0.50),
                    p99_ms: quantile(&minute.latency, 0.99),
                }
            })
            .collect()
    }
}

/// The top of the bucket holding the `q` quantile.
fn quantile(latency: &[u32; BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = latency.iter().map(|&n| u64::from(n)).sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    latency.iter().enumerate().find_map(|(i, &n)| {
        seen += u64::from(n);
        (seen >= rank).then(|| bucket_top_ms(i))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_796_279_400_000;

    #[test]
    fn minutes_count_outcomes_and_their_latency_quantiles() {
        let hour = LastHour::default();
        for n in 0..99 {
            hour.record("completed", 10 + n % 3, NOW);
        }
        hour.record("compensated", 5_000, NOW);
        hour.record("stuck", 1, NOW);
        hour.record("completed", 7, NOW - 120_000);
        let view = hour.view(NOW);
        assert_eq!(view.len(), MINUTES);
        let last = view.last().unwrap();
        assert_eq!(last.counts, [99, 1]);
        let p50 = last.p50_ms.unwrap();
        assert!((10.0..=16.0).contains(&p50), "{p50}");
        let p99 = last.p99_ms.unwrap();
        assert!((10.0..=16.0).contains(&p99), "99 of 100 are fast: {p99}");
        assert_eq!(view[MINUTES - 3].counts, [1, 0]);
        assert_eq!(view[MINUTES - 2].counts, [0, 0]);
        assert_eq!(view[MINUTES - 2].p50_ms, None);
    }

    #[test]
    fn a_minute_an_hour_old_is_forgotten_not_added_to() {
        let hour = LastHour::default();
        hour.record("completed", 10, NOW - 3_600_000);
        hour.record("completed", 10, NOW);
        assert_eq!(hour.view(NOW).last().unwrap().counts, [1, 0]);
        assert!(
            hour.view(NOW + 3_600_000)
                .iter()
                .all(|m| m.counts == [0, 0])
        );
    }
}
