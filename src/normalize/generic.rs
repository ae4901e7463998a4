//! The generic JSON alert, for anything that can post JSON (a cron job, a
//! CI pipeline, a script). Documented in `docs/ingest-generic.md`; field
//! names are snake_case like sevroute's own API.

use serde_json::Value;
use time::OffsetDateTime;

use super::NormalizeError;
use super::walk::{self, AlertObject};
use crate::model::{Alert, AlertStatus, Source};

/// Reads generic alerts: `{"alerts":[...]}`, a bare array of alerts, or a
/// single alert object. Each alert has `labels` (required, non-empty),
/// `status` (required: `"firing"` or `"resolved"`), and optionally
/// `annotations`, `starts_at`, `ends_at` (RFC 3339) and `url`. A missing
/// `starts_at` is `now`; a resolved alert without `ends_at` ended `now`; an
/// `ends_at` before `starts_at` is refused. Unknown fields are ignored. Any
/// bad alert refuses the batch.
pub fn generic(body: &[u8], now: OffsetDateTime) -> Result<Vec<Alert>, NormalizeError> {
    let value = walk::parse(body)?;
    let items: &[Value] = match &value {
        Value::Object(map) if map.contains_key("alerts") => walk::alerts_array(map, "alerts")?,
        Value::Object(_) => std::slice::from_ref(&value),
        Value::Array(items) => items,
        other => {
            return Err(walk::body_error(
                None,
                format!(
                    "expected an alert object, an array of alerts or {{\"alerts\":[...]}}, found {}",
                    walk::kind(other)
                ),
            ));
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| read_alert(&AlertObject::new(index, item)?, now))
        .collect()
}

fn read_alert(alert: &AlertObject<'_>, now: OffsetDateTime) -> Result<Alert, NormalizeError> {
    let labels = alert.labels("labels")?;
    let status = alert.required_status("status")?;
    let annotations = alert.annotations("annotations", false)?;
    let starts_at = alert.time("starts_at")?.unwrap_or(now);
    let mut ends_at = alert.time("ends_at")?;
    let generator_url = alert.url("url")?;
    if ends_at.is_some_and(|end| end < starts_at) {
        return Err(alert.error("ends_at", "is before starts_at"));
    }
    if status == AlertStatus::Resolved && ends_at.is_none() {
        // The sender says it is over; the moment it said so is the end.
        ends_at = Some(now.max(starts_at));
    }
    Ok(Alert {
        labels,
        annotations,
        status,
        starts_at: Some(starts_at),
        ends_at,
        source: Source::Generic,
        generator_url,
    })
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::normalize::tests::field_error;

    const NOW: OffsetDateTime = datetime!(2026-11-27 12:00 UTC);

    /// The example in docs/ingest-generic.md, kept in step by this test.
    const DOC_EXAMPLE: &str = r#"{
      "alerts": [
        {
          "labels": { "alertname": "BackupFailed", "service": "billing-db", "severity": "critical" },
          "annotations": { "summary": "Nightly backup of billing-db failed", "runbook_url": "https://runbooks.example/backup" },
          "status": "firing",
          "starts_at": "2026-11-27T02:15:00Z",
          "url": "https://ci.example/jobs/backup/4711"
        },
        {
          "labels": { "alertname": "CertificateExpiry", "service": "www" },
          "status": "resolved",
          "starts_at": "2026-11-26T08:00:00Z",
          "ends_at": "2026-11-27T09:30:00+01:00"
        }
      ]
    }"#;

    #[test]
    fn reads_the_documented_example() {
        let alerts = generic(DOC_EXAMPLE.as_bytes(), NOW).unwrap();
        assert_eq!(alerts.len(), 2);
        let backup = &alerts[0];
        assert_eq!(backup.label("alertname"), "BackupFailed");
        assert_eq!(
            backup.annotation("summary"),
            "Nightly backup of billing-db failed"
        );
        assert_eq!(backup.status, AlertStatus::Firing);
        assert_eq!(backup.starts_at, Some(datetime!(2026-11-27 02:15 UTC)));
        assert_eq!(backup.ends_at, None);
        assert_eq!(backup.source, Source::Generic);
        assert_eq!(
            backup.generator_url.as_deref(),
            Some("https://ci.example/jobs/backup/4711")
        );
        let cert = &alerts[1];
        assert_eq!(cert.status, AlertStatus::Resolved);
        assert_eq!(cert.ends_at, Some(datetime!(2026-11-27 08:30 UTC)));
        assert!(cert.annotations.is_empty());
    }

    #[test]
    fn the_example_in_the_docs_is_this_one() {
        let doc = include_str!("../../docs/ingest-generic.md");
        let squash = |s: &str| s.split_whitespace().collect::<String>();
        assert!(squash(doc).contains(&squash(DOC_EXAMPLE)));
    }

    #[test]
    fn a_single_object_or_a_bare_array_is_accepted() {
        let single = r#"{"labels":{"alertname":"X"},"status":"firing"}"#;
        let alerts = generic(single.as_bytes(), NOW).unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].starts_at, Some(NOW), "missing starts_at is now");
        let list = format!("[{single},{single}]");
        assert_eq!(generic(list.as_bytes(), NOW).unwrap().len(), 2);
    }

    #[test]
    fn a_resolved_alert_without_an_end_ended_now() {
        let alerts = generic(br#"{"labels":{"a":"b"},"status":"resolved"}"#, NOW).unwrap();
        assert_eq!(alerts[0].ends_at, Some(NOW));
    }

    #[test]
    fn bad_inputs_name_index_and_field() {
        let ok = r#"{"labels":{"a":"b"},"status":"firing"}"#;
        let cases: Vec<(String, usize, &str)> = vec![
            (r#"{"labels":{"a":"b"}}"#.to_string(), 0, "status"),
            (r#"{"status":"firing"}"#.to_string(), 0, "labels"),
            (format!(r#"{{"alerts":[{ok},{{"labels":{{"a b":"c"}},"status":"firing"}}]}}"#), 1, "labels.a b"),
            (format!(r#"[{ok},{ok},{{"labels":{{"a":"b"}},"status":"FIRING"}}]"#), 2, "status"),
            (r#"{"labels":{"a":"b"},"status":"firing","starts_at":"today"}"#.to_string(), 0, "starts_at"),
            (
                r#"{"labels":{"a":"b"},"status":"resolved","starts_at":"2026-11-27T12:00:00Z","ends_at":"2026-11-27T11:00:00Z"}"#.to_string(),
                0,
                "ends_at",
            ),
            (r#"{"labels":{"a":"b"},"status":"firing","url":["x"]}"#.to_string(), 0, "url"),
            (r#"{"labels":{"a":"b"},"status":"firing","annotations":{"n":null}}"#.to_string(), 0, "annotations.n"),
        ];
        for (body, index, field) in cases {
            let err = generic(body.as_bytes(), NOW).unwrap_err();
            assert_eq!(field_error(&err), (index, field), "{body}: {err}");
        }
    }

    #[test]
    fn the_body_shape_is_checked() {
        for body in [&b"\"alert\""[..], b"42", b"null"] {
            let err = generic(body, NOW).unwrap_err();
            assert!(
                matches!(err, NormalizeError::Body { field: None, .. }),
                "{err:?}"
            );
        }
        let err = generic(br#"{"alerts":"x"}"#, NOW).unwrap_err();
        assert_eq!(err.location(), (None, Some("alerts".to_string())));
        let err = generic(br#"[{"labels":{"a":"b"},"status":"firing"},"x"]"#, NOW).unwrap_err();
        assert_eq!(err.location(), (Some(1), None));
    }
}
