//! Prometheus metrics (SPEC §6), served by the admin listener at `/metrics`.
//!
//! Label values are `Arc<String>` so the hot path clones a pointer, not a string.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::last_hour::LastHour;

/// A label value shared by every series that carries it.
pub type Name = Arc<String>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: Name,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamResult {
    upstream: Name,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginHook {
    plugin: Name,
    hook: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginKind {
    plugin: Name,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginEvent {
    plugin: String,
    event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Distinct (plugin, event) series kept; events past it are counted under `_other`, so a plugin
/// inventing names cannot grow the metrics without bound.
const AUDIT_SERIES_MAX: usize = 1000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorKindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteOutcome {
    route: Name,
    outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs to ~26 s: covers a plugin hook call and a saga stuck in retries alike.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatus, Counter>,
    request_duration: HistogramFamily<RouteLabel>,
    upstream_attempts: Family<UpstreamResult, Counter>,
    plugin_calls: Family<PluginHook, Counter>,
    plugin_errors: Family<PluginKind, Counter>,
    plugin_duration: HistogramFamily<PluginHook>,
    plugin_decisions_reused: Family<PluginHook, Counter>,
    audit_events: Family<PluginEvent, Counter>,
    audit_series: std::sync::atomic::AtomicUsize,
    audit_dropped: Family<ReasonLabel, Counter>,
    sagas: Family<RouteOutcome, Counter>,
    messages: Family<RouteOutcome, Counter>,
    message_checks: Family<RouteOutcome, Counter>,
    message_deliveries: Family<RouteOutcome, Counter>,
    sagas_in_flight: Gauge,
    store_commit_duration: Histogram,
    store_errors: Family<ErrorKindLabel, Counter>,
    store_writable: Gauge,
    store_writer_busy: Gauge<f64, AtomicU64>,
    store_wal_bytes: Gauge,
    fleet_takeovers: Counter,
    lease_renewal: Histogram,
    last_hour: LastHour,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every family registered and empty.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::default();
        let request_duration = HistogramFamily::new_with_constructor(latency_histogram as _);
        let upstream_attempts = Family::default();
        let plugin_calls = Family::default();
        let plugin_errors = Family::default();
        let plugin_duration = HistogramFamily::new_with_constructor(latency_histogram as _);
        let plugin_decisions_reused = Family::default();
        let audit_events = Family::default();
        let audit_dropped = Family::default();
        let sagas = Family::default();
        let messages = Family::default();
        let message_checks = Family::default();
        let message_deliveries = Family::default();
        let sagas_in_flight = Gauge::default();
        let store_commit_duration = latency_histogram();
        let store_errors = Family::default();
        let store_writable = Gauge::default();
        store_writable.set(1);
        let store_writer_busy = Gauge::<f64, AtomicU64>::default();
        let store_wal_bytes = Gauge::default();
        let fleet_takeovers = Counter::default();
        let lease_renewal = latency_histogram();
        let prefix = |name: &str| format!("txgate_{name}");
        registry.register(
            prefix("requests"),
            "Client requests answered",
            requests.clone(),
        );
        registry.register(
            prefix("request_duration_seconds"),
            "Time from request head to response",
            request_duration.clone(),
        );
        registry.register(
            prefix("upstream_attempts"),
            "Calls to upstreams, by result",
            upstream_attempts.clone(),
        );
        registry.register(
            prefix("plugin_calls"),
            "Plugin hook calls",
            plugin_calls.clone(),
        );
        registry.register(
            prefix("plugin_errors"),
            "Plugin traps, timeouts and limit breaches",
            plugin_errors.clone(),
        );
        registry.register(
            prefix("plugin_duration_seconds"),
            "Time spent in plugin hook calls",
            plugin_duration.clone(),
        );
        registry.register(
            prefix("plugin_decisions_reused"),
            "Decisions given again without calling the plugin (decisions.reuse, reuse-response)",
            plugin_decisions_reused.clone(),
        );
        registry.register(prefix("sagas"), "Sagas finished, by outcome", sagas.clone());
        registry.register(
            prefix("messages"),
            "Messages finished, by outcome (delivered, aborted, resolved)",
            messages.clone(),
        );
        registry.register(
            prefix("message_checks"),
            "Back-checks of prepared messages, by answer (committed, rolled_back, running, other)",
            message_checks.clone(),
        );
        registry.register(
            prefix("message_deliveries"),
            "Attempts to deliver a message to a step, by outcome (taken, retried, refused)",
            message_deliveries.clone(),
        );
        registry.register(
            prefix("audit_events"),
            "Audit events written, by plugin and event name",
            audit_events.clone(),
        );
        registry.register(
            prefix("audit_events_dropped"),
            "Audit events not written to the audit file, by reason",
            audit_dropped.clone(),
        );
        registry.register(
            prefix("sagas_in_flight"),
            "Sagas started and not yet finished",
            sagas_in_flight.clone(),
        );
        registry.register(
            prefix("store_commit_duration_seconds"),
            "Time for one durable group commit",
            store_commit_duration.clone(),
        );
        registry.register(
            prefix("store_errors"),
            "Commits the store could not make (full disk, I/O error), by kind",
            store_errors.clone(),
        );
        registry.register(
            prefix("store_writable"),
            "1 while the store can write, 0 while it is failing and probing",
            store_writable.clone(),
        );
        registry.register(
            prefix("store_writer_busy_seconds"),
            "How long the store's writer has been in the commit under way (0 while it waits for \
             work); with the commit count, what a watchdog reads",
            store_writer_busy.clone(),
        );
        registry.register(
            prefix("store_wal_bytes"),
            "Size of the embedded store's write-ahead log",
            store_wal_bytes.clone(),
        );
        registry.register(
            prefix("fleet_takeovers"),
            "Sagas this gateway took over from gateways whose lease ran out",
            fleet_takeovers.clone(),
        );
        registry.register(
            prefix("fleet_lease_renewal_seconds"),
            "Time one renewal of this gateway's lease took",
            lease_renewal.clone(),
        );
        Self {
            registry,
            requests,
            request_duration,
            upstream_attempts,
            plugin_calls,
            plugin_errors,
            audit_events,
            audit_series: std::sync::atomic::AtomicUsize::new(0),
            audit_dropped,
            plugin_duration,
            plugin_decisions_reused,
            sagas,
            messages,
            message_checks,
            message_deliveries,
            sagas_in_flight,
            store_commit_duration,
            store_errors,
            store_writable,
            store_writer_busy,
            store_wal_bytes,
            fleet_takeovers,
            lease_renewal,
            last_hour: LastHour::default(),
        }
    }

    /// This gateway's finished sagas, minute by minute, over the last hour.
    pub fn last_hour(&self) -> &LastHour {
        &self.last_hour
    }

    /// Counts one answered request and its latency.
    pub fn request(&self, route: &Name, status: u16, elapsed: Duration) {
        let route = route.clone();
        self.request_duration
            .get_or_create(&RouteLabel {
                route: route.clone(),
            })
            .observe(elapsed.as_secs_f64());
        self.requests
            .get_or_create(&RouteStatus { route, status })
            .inc();
    }

    /// Counts one upstream attempt.
    pub fn upstream_attempt(&self, upstream: &Name, result: &'static str) {
        let labels = UpstreamResult {
            upstream: upstream.clone(),
            result,
        };
        self.upstream_attempts.get_or_create(&labels).inc();
    }

    /// The call counter and duration histogram of one plugin hook, resolved once so that a
    /// call records without a label lookup.
    pub fn plugin_hook(&self, plugin: &Name, hook: &'static str) -> (Counter, Histogram) {
        let labels = PluginHook {
            plugin: plugin.clone(),
            hook,
        };
        let calls = self.plugin_calls.get_or_create(&labels).clone();
        let duration = self.plugin_duration.get_or_create(&labels).clone();
        (calls, duration)
    }

    /// The counter of one plugin hook's reused decisions, resolved once.
    pub fn plugin_decisions_reused(&self, plugin: &Name, hook: &'static str) -> Counter {
        let labels = PluginHook {
            plugin: plugin.clone(),
            hook,
        };
        self.plugin_decisions_reused.get_or_create(&labels).clone()
    }

    /// Counts one plugin failure (`trap`, `timeout`, `memory`, `output`, ...).
    pub fn plugin_error(&self, plugin: &Name, kind: &'static str) {
        let labels = PluginKind {
            plugin: plugin.clone(),
            kind,
        };
        self.plugin_errors.get_or_create(&labels).inc();
    }

    /// Counts one audit event a plugin emitted.
    pub fn audit_event(&self, plugin: &str, event: &str) {
        use std::sync::atomic::Ordering;
        let mut labels = PluginEvent {
            plugin: plugin.to_string(),
            event: event.to_string(),
        };
        if self.audit_events.get(&labels).is_none()
            && self.audit_series.fetch_add(1, Ordering::Relaxed) >= AUDIT_SERIES_MAX
        {
            labels.event = "_other".to_string();
        }
        self.audit_events.get_or_create(&labels).inc();
    }

    /// Counts one audit line that could not be queued for the audit file.
    pub fn audit_dropped(&self, reason: &'static str) {
        self.audit_dropped
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Counts one finished saga, started at `started_ms` and ended at `ended_ms`.
    pub fn saga_finished(
        &self,
        route: &Name,
        outcome: &'static str,
        started_ms: u64,
        ended_ms: u64,
    ) {
        let labels = RouteOutcome {
            route: route.clone(),
            outcome,
        };
        self.sagas.get_or_create(&labels).inc();
        let latency_ms = ended_ms.saturating_sub(started_ms);
        self.last_hour.record(outcome, latency_ms, ended_ms);
    }

    /// Counts one finished message (`txgate_messages_total`).
    pub fn message_finished(&self, route: &Name, outcome: &'static str) {
        let labels = RouteOutcome {
            route: route.clone(),
            outcome,
        };
        self.messages.get_or_create(&labels).inc();
    }

    /// Counts one back-check answer; `other` is any answer but 200, 409 and 425, retried.
    pub fn message_check(&self, route: &Name, answer: &'static str) {
        let labels = RouteOutcome {
            route: route.clone(),
            outcome: answer,
        };
        self.message_checks.get_or_create(&labels).inc();
    }

    /// Counts one attempt to deliver a message to a step: `taken`, `retried` or `refused`.
    pub fn message_delivery(&self, route: &Name, outcome: &'static str) {
        let labels = RouteOutcome {
            route: route.clone(),
            outcome,
        };
        self.message_deliveries.get_or_create(&labels).inc();
    }

    /// The in-flight saga gauge.
    pub fn sagas_in_flight(&self) -> &Gauge {
        &self.sagas_in_flight
    }

    /// Records one group commit.
    pub fn store_commit(&self, elapsed: Duration) {
        self.store_commit_duration.observe(elapsed.as_secs_f64());
    }

    /// Counts one failed commit.
    pub fn store_error(&self, kind: &'static str) {
        self.store_errors
            .get_or_create(&ErrorKindLabel { kind })
            .inc();
    }

    /// Whether the store can write.
    pub fn store_writable(&self, writable: bool) {
        self.store_writable.set(i64::from(writable));
    }

    /// What the store's writer is doing now (set when the metrics are read).
    pub fn store_progress(&self, busy: Option<Duration>, wal_bytes: Option<u64>) {
        self.store_writer_busy
            .set(busy.map_or(0.0, |b| b.as_secs_f64()));
        if let Some(bytes) = wal_bytes {
            self.store_wal_bytes
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    /// Counts sagas taken over from a dead gateway.
    pub fn fleet_takeovers(&self, sagas: u64) {
        self.fleet_takeovers.inc_by(sagas);
    }

    /// Records one lease renewal.
    pub fn lease_renewal(&self, took: Duration) {
        self.lease_renewal.observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_the_contract_metrics() {
        let metrics = Metrics::new();
        let route = Arc::new("transfers".to_string());
        metrics.request(&route, 200, Duration::from_millis(3));
        metrics.upstream_attempt(&Arc::new("bank_a".into()), "success");
        let text = metrics.encode();
        assert!(text.contains("txgate_requests_total{route=\"transfers\",status=\"200\"} 1"));
        assert!(text.contains("txgate_request_duration_seconds_bucket{"));
        assert!(
            text.contains(
                "txgate_upstream_attempts_total{upstream=\"bank_a\",result=\"success\"} 1"
            )
        );
        assert!(text.contains("txgate_sagas_in_flight"));
    }
}
