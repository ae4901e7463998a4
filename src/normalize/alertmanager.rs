//! Alertmanager's webhook body (version 4), as an existing Alertmanager's
//! `webhook_configs` receiver posts it. Alertmanager has already decided
//! each alert's status, so it is taken as sent.

use serde_json::Value;

use super::NormalizeError;
use super::walk::{self, AlertObject};
use crate::model::{Alert, Source};

/// Reads a webhook body: an object with `version` `"4"` and `alerts[]`,
/// each with `status` (required), `labels` (required, non-empty),
/// `annotations`, `startsAt`, `endsAt` (Go's zero time reads as none) and
/// `generatorURL`. The group fields (`receiver`, `groupLabels`,
/// `commonLabels`, ...) and each alert's `fingerprint` are not needed:
/// sevroute computes the same fingerprint from the labels, and a payload
/// whose `fingerprint` disagrees is still accepted. Any bad alert refuses
/// the batch.
pub fn alertmanager_webhook(body: &[u8]) -> Result<Vec<Alert>, NormalizeError> {
    let value = walk::parse(body)?;
    let Value::Object(map) = &value else {
        return Err(walk::body_error(
            None,
            format!(
                "expected an Alertmanager webhook object, found {}",
                walk::kind(&value)
            ),
        ));
    };
    walk::require_version(map, "4", true)?;
    walk::alerts_array(map, "alerts")?
        .iter()
        .enumerate()
        .map(|(index, item)| read_alert(&AlertObject::new(index, item)?))
        .collect()
}

fn read_alert(alert: &AlertObject<'_>) -> Result<Alert, NormalizeError> {
    Ok(Alert {
        status: alert.required_status("status")?,
        labels: alert.labels("labels")?,
        annotations: alert.annotations("annotations", false)?,
        starts_at: alert.time("startsAt")?,
        ends_at: alert.time("endsAt")?,
        source: Source::Alertmanager,
        generator_url: alert.url("generatorURL")?,
    })
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::model::AlertStatus;
    use crate::normalize::tests::{WEBHOOK_FIRING, WEBHOOK_RESOLVED, field_error};

    /// The fingerprints Alertmanager wrote into a fixture.
    fn sent_fingerprints(text: &str) -> Vec<String> {
        let body: Value = serde_json::from_str(text).unwrap();
        body["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["fingerprint"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn reads_the_firing_fixture() {
        let alerts = alertmanager_webhook(WEBHOOK_FIRING.as_bytes()).unwrap();
        assert_eq!(alerts.len(), 3);
        let first = &alerts[0];
        assert_eq!(first.label("service"), "checkout");
        assert_eq!(first.label("instance"), "a");
        assert_eq!(first.labels.len(), 5);
        assert_eq!(first.annotation("summary"), "14.4x burn over 1h");
        assert_eq!(
            first.annotation("runbook_url"),
            "https://runbooks.example/slo"
        );
        assert_eq!(first.status, AlertStatus::Firing);
        assert_eq!(
            first.starts_at,
            Some(datetime!(2026-11-27 11:41:33.338552353 UTC))
        );
        assert_eq!(first.ends_at, None, "Go's zero time means no end");
        assert_eq!(first.source, Source::Alertmanager);
        assert_eq!(
            first.generator_url.as_deref(),
            Some("http://127.0.0.1/graph?g0.expr=slo_burn")
        );
        assert_eq!(alerts[1].generator_url, None, "an empty URL is none");
        let ours: Vec<String> = alerts.iter().map(|a| a.fingerprint().to_string()).collect();
        assert_eq!(ours, sent_fingerprints(WEBHOOK_FIRING));
        assert_eq!(ours[0], "6ceeaba439dca386");
    }

    #[test]
    fn reads_the_resolved_fixture() {
        let alerts = alertmanager_webhook(WEBHOOK_RESOLVED.as_bytes()).unwrap();
        assert_eq!(alerts.len(), 1);
        let alert = &alerts[0];
        assert_eq!(alert.status, AlertStatus::Resolved);
        assert_eq!(alert.label("alertname"), "SLOBurn");
        assert!(alert.annotations.is_empty());
        assert_eq!(alert.starts_at, Some(datetime!(2026-11-27 11:34:04 UTC)));
        assert_eq!(alert.ends_at, Some(datetime!(2026-11-27 11:44:07.401 UTC)));
        assert_eq!(alert.fingerprint().to_string(), "a8124de0c55b02b4");
        assert_eq!(
            vec![alert.fingerprint().to_string()],
            sent_fingerprints(WEBHOOK_RESOLVED)
        );
    }

    #[test]
    fn a_disagreeing_fingerprint_is_not_an_error() {
        let body = WEBHOOK_RESOLVED.replace("a8124de0c55b02b4", "0000000000000000");
        let alerts = alertmanager_webhook(body.as_bytes()).unwrap();
        assert_eq!(alerts[0].fingerprint().to_string(), "a8124de0c55b02b4");
    }

    #[test]
    fn the_version_must_be_4() {
        for (body, message) in [
            (r#"{"alerts":[]}"#, "missing"),
            (
                r#"{"version":"1","alerts":[]}"#,
                "expected \"4\", found \"1\"",
            ),
            (
                r#"{"version":4,"alerts":[]}"#,
                "expected the string \"4\", found a number",
            ),
        ] {
            let err = alertmanager_webhook(body.as_bytes()).unwrap_err();
            assert!(
                matches!(&err, NormalizeError::Body { field: Some(f), message: m }
                    if f == "version" && m == message),
                "{body}: {err:?}"
            );
            assert_eq!(err.location(), (None, Some("version".to_string())));
        }
    }

    #[test]
    fn bad_inputs_name_index_and_field() {
        let ok = r#"{"status":"firing","labels":{"a":"b"}}"#;
        let cases: Vec<(String, usize, &str)> = vec![
            (format!(r#"[{ok},{{"labels":{{"a":"b"}}}}]"#), 1, "status"),
            (
                format!(r#"[{ok},{{"status":"burning","labels":{{"a":"b"}}}}]"#),
                1,
                "status",
            ),
            (r#"[{"status":"firing"}]"#.to_string(), 0, "labels"),
            (
                r#"[{"status":"firing","labels":{"a-b":"c"}}]"#.to_string(),
                0,
                "labels.a-b",
            ),
            (
                r#"[{"status":"firing","labels":{"a":"b"},"startsAt":"2026-11-27 11:00"}]"#
                    .to_string(),
                0,
                "startsAt",
            ),
            (
                format!(
                    r#"[{ok},{ok},{{"status":"resolved","labels":{{"a":"b"}},"endsAt":"never"}}]"#
                ),
                2,
                "endsAt",
            ),
        ];
        for (alerts, index, field) in cases {
            let body = format!(r#"{{"version":"4","alerts":{alerts}}}"#);
            let err = alertmanager_webhook(body.as_bytes()).unwrap_err();
            assert_eq!(field_error(&err), (index, field), "{body}: {err}");
        }
    }

    #[test]
    fn the_body_must_be_an_object_with_alerts() {
        for (body, field) in [
            (r#"[]"#, None),
            (r#"{"version":"4"}"#, Some("alerts")),
            (r#"{"version":"4","alerts":{}}"#, Some("alerts")),
        ] {
            let err = alertmanager_webhook(body.as_bytes()).unwrap_err();
            assert_eq!(err.location(), (None, field.map(str::to_string)), "{body}");
        }
    }
}
