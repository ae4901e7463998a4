//! Metrics in the Prometheus text format (OpenMetrics), named
//! `sevroute_<thing>_<unit>`. Counters are bumped where things happen;
//! figures that live in the store (open incidents, outbox depth) are read
//! at scrape time so they are never stale.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels: ingest source and outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceOutcome {
    /// `prometheus`, `alertmanager`, `grafana`, `generic`.
    pub source: String,
    /// `accepted`, `rejected`.
    pub outcome: String,
}

/// Labels: a severity.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabel {
    /// `SEV1`..`SEV3`, or `none`.
    pub severity: String,
}

/// Labels: a destination and an outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationOutcome {
    /// The destination's name in the rule set.
    pub destination: String,
    /// `delivered`, `retry`, `dead`, `skipped`.
    pub outcome: String,
}

/// Labels: a destination.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabel {
    /// The destination's name in the rule set.
    pub destination: String,
}

/// Labels: a destination, its kind, and why an attempt failed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryFailure {
    /// The destination's name in the rule set.
    pub destination: String,
    /// Its kind (`webhook`, `slack`, ...).
    pub kind: String,
    /// `http_503`, `timeout`, `connect`, `gone`, `circuit_open`, ...
    pub reason: String,
}

/// Labels: a destination and its kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationKindLabel {
    /// The destination's name in the rule set.
    pub destination: String,
    /// Its kind.
    pub kind: String,
}

/// Every metric sevroute exports.
pub struct Metrics {
    registry: Registry,
    /// Alerts received, by source and outcome.
    pub alerts_received: Family<SourceOutcome, Counter>,
    /// Alerts classified, by severity.
    pub classifications: Family<SeverityLabel, Counter>,
    /// Open incidents, by severity (set at scrape).
    pub incidents_open: Family<SeverityLabel, Gauge>,
    /// Delivery attempts, by destination and outcome.
    pub deliveries: Family<DestinationOutcome, Counter>,
    /// Delivery attempt latency in seconds, by destination.
    pub delivery_latency: Family<DestinationLabel, Histogram>,
    /// Failed delivery attempts, by destination, kind and reason.
    pub delivery_failures: Family<DeliveryFailure, Counter>,
    /// Deliveries that became dead letters, by destination and kind.
    pub dead_letters: Family<DestinationKindLabel, Counter>,
    /// Circuit breaker state by destination: 0 closed, 1 open, 2 half-open.
    pub circuit_state: Family<DestinationLabel, Gauge>,
    /// 1 while a destination is disabled by its receiver, else 0.
    pub destination_disabled: Family<DestinationLabel, Gauge>,
    /// Deliveries waiting (set at scrape).
    pub outbox_depth: Gauge,
    /// Age of the oldest waiting delivery in seconds (set at scrape).
    pub outbox_oldest_age: Gauge,
    /// Rule reloads, by outcome.
    pub rule_reloads: Family<ReloadOutcome, Counter>,
    /// Unix time of the last successful rule load.
    pub rules_loaded_timestamp: Gauge,
    /// Message templates that failed at send time (the built-in words
    /// went instead), by destination.
    pub template_failures: Family<DestinationLabel, Counter>,
}

/// Labels: a reload outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadOutcome {
    /// `success` or `refused`.
    pub outcome: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sevroute");
        let alerts_received = Family::<SourceOutcome, Counter>::default();
        registry.register(
            "alerts_received",
            "Alerts received, by source and outcome",
            alerts_received.clone(),
        );
        let classifications = Family::<SeverityLabel, Counter>::default();
        registry.register(
            "classifications",
            "Alerts classified, by severity",
            classifications.clone(),
        );
        let incidents_open = Family::<SeverityLabel, Gauge>::default();
        registry.register(
            "incidents_open",
            "Open incidents, by severity",
            incidents_open.clone(),
        );
        let deliveries = Family::<DestinationOutcome, Counter>::default();
        registry.register(
            "deliveries",
            "Delivery attempts, by destination and outcome",
            deliveries.clone(),
        );
        let delivery_latency = Family::<DestinationLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        registry.register_with_unit(
            "delivery_latency",
            "Delivery attempt latency, by destination",
            prometheus_client::registry::Unit::Seconds,
            delivery_latency.clone(),
        );
        let delivery_failures = Family::<DeliveryFailure, Counter>::default();
        registry.register(
            "delivery_failures",
            "Failed delivery attempts, by destination, kind and reason",
            delivery_failures.clone(),
        );
        let dead_letters = Family::<DestinationKindLabel, Counter>::default();
        registry.register(
            "dead_letters",
            "Deliveries that became dead letters, by destination and kind",
            dead_letters.clone(),
        );
        let circuit_state = Family::<DestinationLabel, Gauge>::default();
        registry.register(
            "circuit_state",
            "Circuit breaker state by destination: 0 closed, 1 open, 2 half-open",
            circuit_state.clone(),
        );
        let destination_disabled = Family::<DestinationLabel, Gauge>::default();
        registry.register(
            "destination_disabled",
            "1 while a destination is disabled by its receiver (410), else 0",
            destination_disabled.clone(),
        );
        let outbox_depth = Gauge::default();
        registry.register("outbox_depth", "Deliveries waiting", outbox_depth.clone());
        let outbox_oldest_age = Gauge::default();
        registry.register_with_unit(
            "outbox_oldest_age",
            "Age of the oldest waiting delivery",
            prometheus_client::registry::Unit::Seconds,
            outbox_oldest_age.clone(),
        );
        let rule_reloads = Family::<ReloadOutcome, Counter>::default();
        registry.register(
            "rule_reloads",
            "Rule set loads and reloads, by outcome",
            rule_reloads.clone(),
        );
        let rules_loaded_timestamp = Gauge::default();
        registry.register_with_unit(
            "rules_loaded_timestamp",
            "Unix time of the last successful rule set load",
            prometheus_client::registry::Unit::Seconds,
            rules_loaded_timestamp.clone(),
        );
        let template_failures = Family::<DestinationLabel, Counter>::default();
        registry.register(
            "template_failures",
            "Message templates that failed at send time and were replaced by the built-in words, by destination",
            template_failures.clone(),
        );
        Metrics {
            registry,
            alerts_received,
            classifications,
            incidents_open,
            deliveries,
            delivery_latency,
            delivery_failures,
            dead_letters,
            circuit_state,
            destination_disabled,
            outbox_depth,
            outbox_oldest_age,
            rule_reloads,
            rules_loaded_timestamp,
            template_failures,
        }
    }

    /// Counts alerts from a source.
    pub fn count_alerts(&self, source: &str, outcome: &str, n: usize) {
        self.alerts_received
            .get_or_create(&SourceOutcome {
                source: source.to_string(),
                outcome: outcome.to_string(),
            })
            .inc_by(n as u64);
    }

    /// Renders the text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_the_sevroute_prefix_and_units() {
        let m = Metrics::new();
        m.count_alerts("prometheus", "accepted", 3);
        m.outbox_depth.set(2);
        m.delivery_latency
            .get_or_create(&DestinationLabel {
                destination: "pd".into(),
            })
            .observe(0.02);
        let text = m.render();
        assert!(
            text.contains(
                r#"sevroute_alerts_received_total{source="prometheus",outcome="accepted"} 3"#
            ),
            "{text}"
        );
        assert!(text.contains("sevroute_outbox_depth 2"), "{text}");
        assert!(
            text.contains("sevroute_delivery_latency_seconds_count{destination=\"pd\"} 1"),
            "{text}"
        );
        assert!(text.contains("# EOF"));
    }
}
