//! Normalization, the stage after ingest: alert payloads of every source
//! become one [`Alert`] model. Pure: bytes and a clock reading in, alerts or
//! a precise error out; no HTTP, no I/O.
//!
//! One function per ingest format, each all-or-nothing (any bad alert
//! refuses the batch) and each naming the alert index and field path of the
//! first problem:
//! - [`prometheus_v2`]: the Alertmanager API v2 list Prometheus sends;
//! - [`alertmanager_webhook`]: Alertmanager's webhook (version 4);
//! - [`grafana`]: Grafana unified alerting's webhook contact point;
//! - [`generic`]: the documented generic JSON alert.
//!
//! [`alerts_from_json`] is the lenient any-shape reader behind `explain`.

mod alertmanager;
mod generic;
mod grafana;
mod prometheus;
mod walk;

use thiserror::Error;
use time::OffsetDateTime;

use crate::model::{Alert, AlertStatus, SharedStr, Source, StrMap};

pub use alertmanager::alertmanager_webhook;
pub use generic::generic;
pub use grafana::grafana;
pub use prometheus::prometheus_v2;

/// Why a payload could not be read as alerts.
#[derive(Debug, Error)]
pub enum NormalizeError {
    /// The body is not JSON; serde's message carries the line and column.
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The payload's outer shape is wrong: not the expected array or object
    /// (`field` is `None`), or a payload-level field such as `version` or
    /// `alerts` is missing or wrong.
    #[error("{}", match field {
        Some(field) => format!("{field}: {message}"),
        None => message.clone(),
    })]
    Body {
        /// The payload-level field, when the problem is one field.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// An item of the alert list is not an alert object at all.
    #[error("alert {index}: {message}")]
    Alert {
        /// Position of the alert in the payload (0-based).
        index: usize,
        /// What was found instead.
        message: String,
    },
    /// One field of one alert has a problem.
    #[error("alert {index}: {field}: {message}")]
    Field {
        /// Position of the alert in the payload (0-based).
        index: usize,
        /// Path of the offending field in the format's own spelling
        /// (`startsAt`, `labels.0bad`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The payload holds no alert (only from [`alerts_from_json`], where a
    /// command needs something to explain; ingest accepts an empty batch).
    #[error("the payload holds no alert")]
    Empty,
}

impl NormalizeError {
    /// Where the problem is, for an HTTP error body: the alert's index and
    /// the field path, each when known.
    pub fn location(&self) -> (Option<usize>, Option<String>) {
        match self {
            NormalizeError::Json(_) | NormalizeError::Empty => (None, None),
            NormalizeError::Body { field, .. } => (None, field.clone()),
            NormalizeError::Alert { index, .. } => (Some(*index), None),
            NormalizeError::Field { index, field, .. } => (Some(*index), Some(field.clone())),
        }
    }
}

/// One alert as Prometheus (API v2) and Alertmanager (webhook) write it.
#[derive(Debug, Default)]
struct WireAlert {
    labels: StrMap,
    annotations: StrMap,
    status: Option<String>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    generator_url: Option<String>,
}

/// Reads alerts from JSON text in any of the accepted shapes, chosen by
/// what the text is (not by which shape happens to deserialize, which
/// read a misspelt `{"alrts": [...]}` as one alert with no labels):
/// - an array: an alert list (Prometheus -> Alertmanager API v2);
/// - an object with `alerts`: an Alertmanager webhook body
///   (`{"version":"4","alerts":[...]}`);
/// - an object with `labels`: a single alert;
/// - anything else: an error saying which shapes were expected.
///
/// Each alert's known fields must have their types (an error names the
/// alert and the field); other fields are ignored.
pub fn alerts_from_json(text: &str) -> Result<Vec<Alert>, NormalizeError> {
    use serde_json::Value;
    const SHAPES: &str = "expected an array of alerts, an Alertmanager webhook body \
                          (an object with `alerts`) or one alert (an object with `labels`)";
    let items = match serde_json::from_str::<Value>(text)? {
        Value::Array(items) => items,
        Value::Object(mut body) if body.contains_key("alerts") => match body.remove("alerts") {
            Some(Value::Array(items)) => items,
            other => {
                return Err(NormalizeError::Body {
                    field: Some("alerts".to_string()),
                    message: format!(
                        "expected an array of alerts, found {}",
                        walk::kind(other.as_ref().unwrap_or(&Value::Null))
                    ),
                });
            }
        },
        Value::Object(alert) if alert.contains_key("labels") => vec![Value::Object(alert)],
        Value::Object(other) => {
            let keys: Vec<String> = other.keys().map(|k| format!("`{k}`")).collect();
            return Err(NormalizeError::Body {
                field: None,
                message: if keys.is_empty() {
                    format!("{SHAPES}, found an empty object")
                } else {
                    format!("{SHAPES}, found an object with {}", keys.join(", "))
                },
            });
        }
        other => {
            return Err(NormalizeError::Body {
                field: None,
                message: format!("{SHAPES}, found {}", walk::kind(&other)),
            });
        }
    };
    if items.is_empty() {
        return Err(NormalizeError::Empty);
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| to_alert(index, wire_alert(index, item)?))
        .collect()
}

/// The known fields of the `index`-th alert, each with its type checked.
fn wire_alert(index: usize, item: serde_json::Value) -> Result<WireAlert, NormalizeError> {
    let serde_json::Value::Object(mut map) = item else {
        return Err(NormalizeError::Alert {
            index,
            message: format!("expected an alert object, found {}", walk::kind(&item)),
        });
    };
    let mut field = |name: &str| map.remove(name).filter(|v| !v.is_null());
    fn typed<T: serde::de::DeserializeOwned + Default>(
        index: usize,
        name: &str,
        value: Option<serde_json::Value>,
    ) -> Result<T, NormalizeError> {
        value.map_or_else(
            || Ok(T::default()),
            |v| {
                serde_json::from_value(v).map_err(|e| NormalizeError::Field {
                    index,
                    field: name.to_string(),
                    message: e.to_string(),
                })
            },
        )
    }
    Ok(WireAlert {
        labels: typed(index, "labels", field("labels"))?,
        annotations: typed(index, "annotations", field("annotations"))?,
        status: typed(index, "status", field("status"))?,
        starts_at: typed(index, "startsAt", field("startsAt"))?,
        ends_at: typed(index, "endsAt", field("endsAt"))?,
        generator_url: typed(index, "generatorURL", field("generatorURL"))?,
    })
}

fn to_alert(index: usize, wire: WireAlert) -> Result<Alert, NormalizeError> {
    let status = match wire.status.as_deref() {
        None | Some("firing") => AlertStatus::Firing,
        Some("resolved") => AlertStatus::Resolved,
        Some(other) => {
            return Err(NormalizeError::Field {
                index,
                field: "status".to_string(),
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
        generator_url: wire
            .generator_url
            .filter(|u| !u.is_empty())
            .map(SharedStr::from),
    })
}

/// Parses an RFC 3339 timestamp for alert `index`'s `field`. Empty text
/// and Go's zero time (`0001-01-01T00:00:00Z`), which Alertmanager writes
/// for "not set", read as absent.
pub fn timestamp(
    index: usize,
    field: &'static str,
    text: Option<String>,
) -> Result<Option<OffsetDateTime>, NormalizeError> {
    let Some(text) = text else {
        return Ok(None);
    };
    walk::rfc3339(&text).map_err(|message| NormalizeError::Field {
        index,
        field: field.to_string(),
        message,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Captured from Alertmanager 0.25: a firing webhook body.
    pub(crate) const WEBHOOK_FIRING: &str =
        include_str!("../../../shared/fixtures/alertmanager-0.25-webhook-firing.json");
    /// Captured from Alertmanager 0.25: a resolved webhook body.
    pub(crate) const WEBHOOK_RESOLVED: &str =
        include_str!("../../../shared/fixtures/alertmanager-0.25-webhook-resolved.json");
    /// Captured from Prometheus 2.42: its API v2 alert list.
    pub(crate) const API_V2_FIXTURE: &str =
        include_str!("../../../shared/fixtures/prometheus-2.42-api-v2-alerts.json");
    const API_V2: &str = API_V2_FIXTURE;

    /// The index and field of a `Field` error (panics on any other).
    pub(crate) fn field_error(err: &NormalizeError) -> (usize, &str) {
        match err {
            NormalizeError::Field { index, field, .. } => (*index, field.as_str()),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

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

    #[test]
    fn the_shape_is_chosen_by_what_the_payload_is() {
        // A misspelt webhook body is not one alert without labels.
        let err = alerts_from_json(r#"{"version":"4","alrts":[{"labels":{"a":"b"}}]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("an object with `alerts`")
                && err.contains("an object with `labels`")
                && err.ends_with("found an object with `alrts`, `version`"),
            "{err}"
        );
        let err = alerts_from_json(r#"{"alerts":{"labels":{}}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "alerts: expected an array of alerts, found an object"
        );
        let err = alerts_from_json(r#""labels""#).unwrap_err().to_string();
        assert!(err.ends_with("found a string"), "{err}");
        let err = alerts_from_json(r#"{}"#).unwrap_err().to_string();
        assert!(err.ends_with("found an empty object"), "{err}");
        let alerts = alerts_from_json(r#"{"labels":{"a":"b"},"extra":1}"#).unwrap();
        assert_eq!(alerts[0].label("a"), "b");
        let alerts = alerts_from_json(r#"{"alerts":[{"labels":{"a":"b"}}]}"#).unwrap();
        assert_eq!(alerts.len(), 1);
    }

    #[test]
    fn a_mistyped_field_is_named_with_its_alert() {
        let err = alerts_from_json(r#"[{"labels":{}},{"labels":{"a":1}}]"#).unwrap_err();
        assert_eq!(field_error(&err), (1, "labels"));
        let err = alerts_from_json(r#"{"labels":{},"startsAt":5}"#).unwrap_err();
        assert_eq!(field_error(&err), (0, "startsAt"));
        let err = alerts_from_json(r#"[{"labels":{}}, 3]"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "alert 1: expected an alert object, found a number"
        );
    }
}

#[cfg(test)]
mod never_panics;
