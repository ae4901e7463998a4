//! Normalization: alert payloads of every source become one [`Alert`]
//! model. This first part reads the JSON shapes that Prometheus and
//! Alertmanager produce (and a bare alert object), for `explain` and rule
//! tests; the HTTP ingest reuses it.

use std::collections::BTreeMap;

use serde::Deserialize;
use thiserror::Error;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::model::{Alert, AlertStatus, Source};

/// Why a payload could not be read as alerts.
#[derive(Debug, Error)]
pub enum NormalizeError {
    /// The text is not JSON, or not an alert shape.
    #[error("invalid alert JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// One alert has a problem; `index` is its position in the payload.
    #[error("alert {index}: {field}: {message}")]
    Field {
        /// Position of the alert in the payload (0-based).
        index: usize,
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The payload holds no alert.
    #[error("the payload holds no alert")]
    Empty,
}

/// One alert as Prometheus (API v2) and Alertmanager (webhook) write it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAlert {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    starts_at: Option<String>,
    #[serde(default)]
    ends_at: Option<String>,
    #[serde(default)]
    generator_url: Option<String>,
}

/// The payload shapes accepted.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Payload {
    /// Alertmanager webhook body (`{"version":"4","alerts":[...]}`).
    Webhook { alerts: Vec<WireAlert> },
    /// Prometheus -> Alertmanager API v2 list.
    List(Vec<WireAlert>),
    /// A single alert object.
    Single(WireAlert),
}

/// Reads alerts from JSON text in any of the accepted shapes.
pub fn alerts_from_json(text: &str) -> Result<Vec<Alert>, NormalizeError> {
    let payload: Payload = serde_json::from_str(text)?;
    let wire = match payload {
        Payload::Webhook { alerts } | Payload::List(alerts) => alerts,
        Payload::Single(alert) => vec![alert],
    };
    if wire.is_empty() {
        return Err(NormalizeError::Empty);
    }
    wire.into_iter()
        .enumerate()
        .map(|(index, w)| to_alert(index, w))
        .collect()
}

fn to_alert(index: usize, wire: WireAlert) -> Result<Alert, NormalizeError> {
    let status = match wire.status.as_deref() {
        None | Some("firing") => AlertStatus::Firing,
        Some("resolved") => AlertStatus::Resolved,
        Some(other) => {
            return Err(NormalizeError::Field {
                index,
                field: "status",
                message: format!("expected \"firing\" or \"resolved\", found {other:?}"),
            });
        }
    };
    Ok(Alert {
        labels: wire.labels,
        annotations: wire.annotations,
        status,
        starts_at: timestamp(index, "startsAt", wire.starts_at)?,
        ends_at: timestamp(index, "endsAt", wire.ends_at)?,
        source: Source::Generic,
        generator_url: wire.generator_url.filter(|u| !u.is_empty()),
    })
}

/// Parses an RFC 3339 timestamp. Go's zero time (`0001-01-01T00:00:00Z`),
/// which Alertmanager writes for "not set", reads as absent.
pub fn timestamp(
    index: usize,
    field: &'static str,
    text: Option<String>,
) -> Result<Option<OffsetDateTime>, NormalizeError> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let parsed = OffsetDateTime::parse(&text, &Rfc3339).map_err(|e| NormalizeError::Field {
        index,
        field,
        message: format!("{text:?} is not an RFC 3339 time: {e}"),
    })?;
    Ok((parsed.year() > 1).then_some(parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEBHOOK_FIRING: &str =
        include_str!("../../../shared/fixtures/alertmanager-0.25-webhook-firing.json");
    const WEBHOOK_RESOLVED: &str =
        include_str!("../../../shared/fixtures/alertmanager-0.25-webhook-resolved.json");
    const API_V2: &str =
        include_str!("../../../shared/fixtures/prometheus-2.42-api-v2-alerts.json");

    #[test]
    fn reads_the_alertmanager_webhook_fixture() {
        let alerts = alerts_from_json(WEBHOOK_FIRING).unwrap();
        assert_eq!(alerts.len(), 3);
        assert_eq!(alerts[0].label("service"), "checkout");
        assert_eq!(alerts[0].annotation("summary"), "14.4x burn over 1h");
        assert_eq!(alerts[0].status, AlertStatus::Firing);
        assert!(alerts[0].starts_at.is_some());
        // Go's zero time means "no end".
        assert_eq!(alerts[0].ends_at, None);
        assert_eq!(alerts[0].fingerprint().to_string(), "6ceeaba439dca386");
    }

    #[test]
    fn reads_resolved_alerts() {
        let alerts = alerts_from_json(WEBHOOK_RESOLVED).unwrap();
        assert!(!alerts.is_empty());
        assert!(alerts.iter().all(|a| a.status == AlertStatus::Resolved));
        assert!(alerts.iter().all(|a| a.ends_at.is_some()));
    }

    #[test]
    fn reads_the_prometheus_api_v2_fixture() {
        let alerts = alerts_from_json(API_V2).unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].label("alertname"), "ErrorBudgetBurnAlwaysFiring");
        assert!(alerts[0].ends_at.is_some());
    }

    #[test]
    fn names_the_bad_field_and_alert_index() {
        let err = alerts_from_json(r#"[{"labels":{}},{"labels":{},"startsAt":"yesterday"}]"#)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("alert 1: startsAt:"), "{err}");
        let err = alerts_from_json(r#"{"labels":{},"status":"burning"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("status") && err.contains("burning"), "{err}");
        assert!(matches!(alerts_from_json("[]"), Err(NormalizeError::Empty)));
    }
}
