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
use std::sync::atomic::AtomicU64;

use crate::slo::{DataState, Exhaustion, Reading, SloStatus};

/// A gauge holding a float (burn rates, budget fractions).
type FloatGauge = Gauge<f64, AtomicU64>;

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

/// Labels: an SLO.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SloLabel {
    /// The SLO's name.
    pub slo: String,
}

/// Labels: an SLO and a window.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SloWindow {
    /// The SLO's name.
    pub slo: String,
    /// `5m`, `30m`, `1h`, `6h`, `1d`, `3d`.
    pub window: String,
}

/// Labels: an SLO and a data state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SloState {
    /// The SLO's name.
    pub slo: String,
    /// `ok`, `no_data`, `zero_traffic`, `low_volume`, `stale`.
    pub state: String,
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
    /// Burn rate per SLO and standard window (set at scrape; absent while
    /// the window has no value).
    pub slo_burn_rate: Family<SloWindow, FloatGauge>,
    /// Fraction of the period's error budget left (set at scrape).
    pub slo_budget_remaining: Family<SloLabel, FloatGauge>,
    /// 1 for each SLO's current data state, 0 for the others (set at
    /// scrape).
    pub slo_data_state: Family<SloState, Gauge>,
    /// Seconds until the budget runs out at the current burn (set at
    /// scrape; 0 when spent, +Inf when not being spent).
    pub slo_budget_exhaustion: Family<SloLabel, FloatGauge>,
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
        let slo_burn_rate = Family::<SloWindow, FloatGauge>::default();
        registry.register(
            "slo_burn_rate",
            "Error budget burn rate per SLO and window (1 spends the budget exactly over the period)",
            slo_burn_rate.clone(),
        );
        let slo_budget_remaining = Family::<SloLabel, FloatGauge>::default();
        registry.register(
            "slo_budget_remaining",
            "Fraction of the SLO period's error budget left; negative once overspent",
            slo_budget_remaining.clone(),
        );
        let slo_data_state = Family::<SloState, Gauge>::default();
        registry.register(
            "slo_data_state",
            "1 for the SLO's current data state (ok, no_data, zero_traffic, low_volume, stale), 0 for the others",
            slo_data_state.clone(),
        );
        let slo_budget_exhaustion = Family::<SloLabel, FloatGauge>::default();
        registry.register_with_unit(
            "slo_budget_exhaustion",
            "Time until the SLO's error budget runs out at the current burn; +Inf when it is not being spent",
            prometheus_client::registry::Unit::Seconds,
            slo_budget_exhaustion.clone(),
        );
        Metrics {
            registry,
            slo_burn_rate,
            slo_budget_remaining,
            slo_data_state,
            slo_budget_exhaustion,
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

    /// Sets the per-SLO gauges from the SLOs' status reports. SLOs no
    /// longer declared, and values no longer known, disappear: a gauge is
    /// never left showing an old burn.
    pub fn set_slos(&self, statuses: &[SloStatus]) {
        self.slo_burn_rate.clear();
        self.slo_budget_remaining.clear();
        self.slo_data_state.clear();
        self.slo_budget_exhaustion.clear();
        for s in statuses {
            let slo = || SloLabel {
                slo: s.name.clone(),
            };
            for b in &s.burns {
                if let Reading::Ok(burn) = b.burn {
                    self.slo_burn_rate
                        .get_or_create(&SloWindow {
                            slo: s.name.clone(),
                            window: window_label(b.window_secs),
                        })
                        .set(burn);
                }
            }
            if let Reading::Ok(left) = s.budget_remaining {
                self.slo_budget_remaining.get_or_create(&slo()).set(left);
            }
            for state in [
                DataState::Ok,
                DataState::NoData,
                DataState::ZeroTraffic,
                DataState::LowVolume,
                DataState::Stale,
            ] {
                self.slo_data_state
                    .get_or_create(&SloState {
                        slo: s.name.clone(),
                        state: state.as_str().to_string(),
                    })
                    .set(i64::from(s.state == state));
            }
            let exhaustion = match s.exhaustion {
                Exhaustion::Exhausted => Some(0.0),
                Exhaustion::Never => Some(f64::INFINITY),
                Exhaustion::In { secs, .. } => Some(secs as f64),
                Exhaustion::Unknown => None,
            };
            if let Some(secs) = exhaustion {
                self.slo_budget_exhaustion.get_or_create(&slo()).set(secs);
            }
        }
    }

    /// Renders the text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// A window's label: `5m`, `1h`, `3d`, in the largest unit that divides it.
fn window_label(secs: u64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Slo, SloSource};
    use crate::slo::{EngineConfig, SloEngine};

    #[test]
    fn slo_gauges_follow_the_status_and_drop_what_is_no_longer_known() {
        let mut engine = SloEngine::new(EngineConfig::default()).unwrap();
        let slo = |name: &str| Slo {
            name: name.into(),
            // 1 - 0.75 is exact in binary, so the numbers below are too.
            objective: 0.75,
            period_secs: 30 * 86_400,
            source: SloSource::Push,
        };
        engine.set_slos(&[slo("api"), slo("quiet")]);
        let now = 1_700_000_000;
        // 50 bad of 100: ratio 0.5, burn 0.5 / 0.25 = 2 on every window;
        // over the period too, so the budget left is 1 - 2 = -1: spent.
        engine.record("api", now, now, 50.0, 100.0).unwrap();
        let m = Metrics::new();
        m.set_slos(&engine.statuses(now));
        let text = m.render();
        for window in ["5m", "30m", "1h", "6h", "1d", "3d"] {
            let line = format!("sevroute_slo_burn_rate{{slo=\"api\",window=\"{window}\"}} 2");
            assert!(
                text.lines().any(|l| l.starts_with(&line)),
                "{line} in\n{text}"
            );
        }
        assert!(
            text.contains("sevroute_slo_budget_remaining{slo=\"api\"} -1"),
            "{text}"
        );
        assert!(
            text.contains("sevroute_slo_budget_exhaustion_seconds{slo=\"api\"} 0.0"),
            "{text}"
        );
        assert!(text.contains("sevroute_slo_data_state{slo=\"api\",state=\"ok\"} 1"));
        assert!(text.contains("sevroute_slo_data_state{slo=\"api\",state=\"stale\"} 0"));
        assert!(text.contains("sevroute_slo_data_state{slo=\"quiet\",state=\"no_data\"} 1"));
        assert!(
            !text.contains("sevroute_slo_burn_rate{slo=\"quiet\""),
            "{text}"
        );
        // Stale: the burn gauges go, the state says why there are none.
        engine.set_stale("api", now, "down".into()).unwrap();
        m.set_slos(&engine.statuses(now));
        let text = m.render();
        assert!(!text.contains("sevroute_slo_burn_rate{"), "{text}");
        assert!(!text.contains("sevroute_slo_budget_remaining{"), "{text}");
        assert!(text.contains("sevroute_slo_data_state{slo=\"api\",state=\"stale\"} 1"));
        assert_eq!(window_label(300), "5m");
        assert_eq!(window_label(259_200), "3d");
        assert_eq!(window_label(90), "90s");
    }

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
