//! Shared vocabulary of every stage: [`Alert`], [`Severity`] and the
//! Alertmanager-compatible [`Fingerprint`]. Plain data, no I/O.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Incident severity. SEV1 is the most severe; `Ord` sorts the most severe
/// first, so `min()` over a set of severities picks the worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    /// Critical: customer-facing outage or data loss; page now.
    #[serde(rename = "SEV1")]
    Sev1,
    /// Major: significant degradation; page.
    #[serde(rename = "SEV2")]
    Sev2,
    /// Minor: notify, handle in working hours.
    #[serde(rename = "SEV3")]
    Sev3,
}

impl Severity {
    /// All severities, most severe first.
    pub const ALL: [Severity; 3] = [Severity::Sev1, Severity::Sev2, Severity::Sev3];

    /// The name as written in rule files (`SEV1`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Sev1 => "SEV1",
            Severity::Sev2 => "SEV2",
            Severity::Sev3 => "SEV3",
        }
    }

    /// Position in [`Severity::ALL`] (0 for SEV1).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Parses `SEV1`..`SEV3` (case-sensitive, as written in rule files).
    pub fn parse(text: &str) -> Option<Severity> {
        match text {
            "SEV1" => Some(Severity::Sev1),
            "SEV2" => Some(Severity::Sev2),
            "SEV3" => Some(Severity::Sev3),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an alert is firing or resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// The condition holds.
    #[default]
    Firing,
    /// The condition no longer holds.
    Resolved,
}

/// Alertmanager's label-set fingerprint: FNV-1a 64 over the label names and
/// values in name order, each followed by the byte 0xff. Using the same
/// function means sevroute's alert ids match Alertmanager's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u64);

impl Fingerprint {
    /// The fingerprint of a label set.
    pub fn of_labels(labels: &BTreeMap<String, String>) -> Fingerprint {
        const OFFSET: u64 = 14_695_981_039_346_656_037;
        const PRIME: u64 = 1_099_511_628_211;
        const SEPARATOR: u8 = 0xff;
        let mut hash = OFFSET;
        let mut add = |bytes: &[u8]| {
            for &b in bytes {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(PRIME);
            }
        };
        // BTreeMap iterates in byte order of names, as Go's sort.Strings does.
        for (name, value) in labels {
            add(name.as_bytes());
            add(&[SEPARATOR]);
            add(value.as_bytes());
            add(&[SEPARATOR]);
        }
        Fingerprint(hash)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Which kind of system sent an alert (the ingest endpoint it came in on).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Prometheus (or anything) posting to the Alertmanager API v2.
    Prometheus,
    /// Alertmanager's webhook receiver (version 4).
    Alertmanager,
    /// Grafana unified alerting's webhook contact point.
    Grafana,
    /// The documented generic JSON alert.
    #[default]
    Generic,
    /// sevroute itself: the alert an SLO rule raises while its condition
    /// holds (see [`Alert::for_slo`]). No ingest endpoint produces it.
    Slo,
}

impl Source {
    /// The name used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Prometheus => "prometheus",
            Source::Alertmanager => "alertmanager",
            Source::Grafana => "grafana",
            Source::Generic => "generic",
            Source::Slo => "slo",
        }
    }
}

/// One alert, whatever system sent it.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Alert {
    /// Identifying labels; a missing label reads as `""`.
    pub labels: BTreeMap<String, String>,
    /// Descriptive annotations; a missing one reads as `""`.
    pub annotations: BTreeMap<String, String>,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// When the alert started firing, if the sender said.
    #[serde(with = "time::serde::rfc3339::option")]
    pub starts_at: Option<OffsetDateTime>,
    /// When it ended or will end unless refreshed, if the sender said.
    #[serde(with = "time::serde::rfc3339::option")]
    pub ends_at: Option<OffsetDateTime>,
    /// The system that sent it.
    pub source: Source,
    /// Where the alert can be seen at its source (Prometheus graph, Grafana
    /// panel), when the sender gave one.
    #[serde(default)]
    pub generator_url: Option<String>,
}

/// The `alertname` of the alert an SLO rule raises.
pub const SLO_ALERTNAME: &str = "SLOErrorBudgetBurn";

impl Alert {
    /// The alert an SLO rule raises for `slo` while its condition holds:
    /// labelled `alertname` and `slo`, so its fingerprint is the same every
    /// time and an incident grouped on it is named after the SLO.
    pub fn for_slo(slo: &str, status: AlertStatus, starts_at: OffsetDateTime) -> Alert {
        Alert {
            labels: [
                ("alertname".to_string(), SLO_ALERTNAME.to_string()),
                ("slo".to_string(), slo.to_string()),
            ]
            .into_iter()
            .collect(),
            annotations: [(
                "summary".to_string(),
                format!("SLO {slo} is spending its error budget"),
            )]
            .into_iter()
            .collect(),
            status,
            starts_at: Some(starts_at),
            ends_at: None,
            source: Source::Slo,
            generator_url: None,
        }
    }

    /// The SLO whose rule raised this alert, when sevroute raised it.
    pub fn slo_rule_alert_of(&self) -> Option<&str> {
        (self.source == Source::Slo).then(|| self.label("slo"))
    }

    /// The value of a label, `""` when missing (as in Prometheus).
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map(String::as_str).unwrap_or("")
    }

    /// The value of an annotation, `""` when missing.
    pub fn annotation(&self, name: &str) -> &str {
        self.annotations.get(name).map(String::as_str).unwrap_or("")
    }

    /// The Alertmanager-compatible fingerprint of the labels.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_labels(&self.labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fingerprint_matches_alertmanager_fixture() {
        let text = include_str!("../../shared/fixtures/alertmanager-0.25-webhook-firing.json");
        let body: serde_json::Value = serde_json::from_str(text).unwrap();
        let alerts = body["alerts"].as_array().unwrap();
        assert!(!alerts.is_empty());
        for alert in alerts {
            let labels: BTreeMap<String, String> =
                serde_json::from_value(alert["labels"].clone()).unwrap();
            let expected = alert["fingerprint"].as_str().unwrap();
            assert_eq!(Fingerprint::of_labels(&labels).to_string(), expected);
        }
    }

    #[test]
    fn fingerprint_of_empty_label_set_is_the_fnv_offset() {
        assert_eq!(
            Fingerprint::of_labels(&BTreeMap::new()).0,
            14_695_981_039_346_656_037
        );
    }

    #[test]
    fn missing_label_reads_as_empty() {
        let alert = Alert {
            labels: labels(&[("service", "checkout")]),
            ..Alert::default()
        };
        assert_eq!(alert.label("service"), "checkout");
        assert_eq!(alert.label("team"), "");
        assert_eq!(alert.annotation("summary"), "");
    }

    #[test]
    fn severities_sort_most_severe_first() {
        let worst = [Severity::Sev3, Severity::Sev1, Severity::Sev2]
            .into_iter()
            .min()
            .unwrap();
        assert_eq!(worst, Severity::Sev1);
    }
}
