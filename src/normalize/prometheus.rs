//! The Alertmanager API v2 alert list (`POST /api/v2/alerts`), which
//! Prometheus sends to each of its `alerting.alertmanagers`. The rules for
//! times and status follow Alertmanager's own `postAlertsHandler`
//! (api/v2/api.go) and `Alert.Validate`, so sevroute can stand in for an
//! Alertmanager without Prometheus noticing.

use serde_json::Value;
use time::{Duration, OffsetDateTime};

use super::NormalizeError;
use super::walk::{self, AlertObject};
use crate::model::{Alert, AlertStatus, Source};

/// Reads a `postableAlerts` body: a JSON array of objects with `labels`
/// (required, non-empty), `annotations`, `startsAt`, `endsAt` and
/// `generatorURL`; other fields are ignored.
///
/// Status and times, as Alertmanager decides them at receipt (`now`):
/// - `endsAt` after `now`: firing until then, unless refreshed;
/// - `endsAt` missing (or Go's zero time): firing, ending at
///   `now + resolve_timeout` unless re-sent;
/// - `endsAt` at or before `now`: resolved.
///
/// A missing `startsAt` becomes `endsAt` when that was given, else `now`.
/// Labels with empty values are dropped before the label set is checked,
/// annotation names must be valid label names, and an end before the start
/// is refused: all as Alertmanager does. Any bad alert refuses the batch.
pub fn prometheus_v2(
    body: &[u8],
    now: OffsetDateTime,
    resolve_timeout: Duration,
) -> Result<Vec<Alert>, NormalizeError> {
    let value = walk::parse(body)?;
    let Value::Array(items) = &value else {
        return Err(walk::body_error(
            None,
            format!(
                "expected a JSON array of alerts (Alertmanager API v2), found {}",
                walk::kind(&value)
            ),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| read_alert(&AlertObject::new(index, item)?, now, resolve_timeout))
        .collect()
}

fn read_alert(
    alert: &AlertObject<'_>,
    now: OffsetDateTime,
    resolve_timeout: Duration,
) -> Result<Alert, NormalizeError> {
    let labels = alert.labels("labels")?;
    let annotations = alert.annotations("annotations", true)?;
    let sent_start = alert.time("startsAt")?;
    let sent_end = alert.time("endsAt")?;
    let generator_url = alert.url("generatorURL")?;

    let starts_at = sent_start.or(sent_end).unwrap_or(now);
    let (status, ends_at) = match sent_end {
        Some(end) if end > now => (AlertStatus::Firing, Some(end)),
        Some(end) => (AlertStatus::Resolved, Some(end)),
        // Saturating rather than panicking: an absurd resolve timeout only
        // loses the implied end, never the alert.
        None => (AlertStatus::Firing, now.checked_add(resolve_timeout)),
    };
    if let Some(end) = ends_at
        && end < starts_at
    {
        return Err(if sent_end.is_some() {
            alert.error("endsAt", "is before startsAt")
        } else {
            alert.error(
                "startsAt",
                "is after the implied end (now + resolve timeout), as endsAt is missing",
            )
        });
    }
    Ok(Alert {
        labels,
        annotations,
        status,
        starts_at: Some(starts_at),
        ends_at,
        source: Source::Prometheus,
        generator_url,
    })
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::normalize::tests::{API_V2_FIXTURE, field_error};

    const FIVE_MINUTES: Duration = Duration::minutes(5);

    fn one(body: &str, now: OffsetDateTime) -> Alert {
        let mut alerts = prometheus_v2(body.as_bytes(), now, FIVE_MINUTES).unwrap();
        assert_eq!(alerts.len(), 1);
        alerts.remove(0)
    }

    #[test]
    fn reads_the_prometheus_fixture() {
        // Prometheus sent this while the rule was firing: endsAt is
        // lastEval + 4 * resend delay, in the future at receipt.
        let now = datetime!(2026-11-27 11:46:17 UTC);
        let alerts = prometheus_v2(API_V2_FIXTURE.as_bytes(), now, FIVE_MINUTES).unwrap();
        assert_eq!(alerts.len(), 1);
        let alert = &alerts[0];
        assert_eq!(alert.label("alertname"), "ErrorBudgetBurnAlwaysFiring");
        assert_eq!(alert.label("replica"), "r1");
        assert_eq!(alert.labels.len(), 5);
        assert_eq!(alert.annotation("summary"), "burn rate 14.4x over 1h");
        assert_eq!(alert.status, AlertStatus::Firing);
        assert_eq!(
            alert.starts_at,
            Some(datetime!(2026-11-27 11:45:16.709 UTC))
        );
        assert_eq!(alert.ends_at, Some(datetime!(2026-11-27 11:50:17.709 UTC)));
        assert_eq!(alert.source, Source::Prometheus);
        assert_eq!(
            alert.generator_url.as_deref(),
            Some("http://vm:19090/graph?g0.expr=vector%2814.4%29&g0.tab=1")
        );
        // No fingerprint travels in this format; this one was computed
        // independently (Python FNV-1a, checked against the Alertmanager
        // fixtures' fingerprints).
        assert_eq!(alert.fingerprint().to_string(), "c86f466493b75e2d");
    }

    #[test]
    fn the_fixture_read_after_its_end_is_resolved() {
        let now = datetime!(2026-11-27 11:50:17.709 UTC);
        let alerts = prometheus_v2(API_V2_FIXTURE.as_bytes(), now, FIVE_MINUTES).unwrap();
        assert_eq!(alerts[0].status, AlertStatus::Resolved);
    }

    #[test]
    fn ends_at_in_the_future_fires_until_then() {
        let now = datetime!(2026-11-27 12:00 UTC);
        let alert = one(
            r#"[{"labels":{"a":"b"},"startsAt":"2026-11-27T11:00:00Z","endsAt":"2026-11-27T12:03:00Z"}]"#,
            now,
        );
        assert_eq!(alert.status, AlertStatus::Firing);
        assert_eq!(alert.ends_at, Some(datetime!(2026-11-27 12:03 UTC)));
    }

    #[test]
    fn missing_or_zero_ends_at_fires_for_the_resolve_timeout() {
        let now = datetime!(2026-11-27 12:00 UTC);
        for body in [
            r#"[{"labels":{"a":"b"},"startsAt":"2026-11-27T11:00:00Z"}]"#,
            r#"[{"labels":{"a":"b"},"startsAt":"2026-11-27T11:00:00Z","endsAt":null}]"#,
            r#"[{"labels":{"a":"b"},"startsAt":"2026-11-27T11:00:00Z","endsAt":"0001-01-01T00:00:00Z"}]"#,
        ] {
            let alert = one(body, now);
            assert_eq!(alert.status, AlertStatus::Firing, "{body}");
            assert_eq!(
                alert.ends_at,
                Some(datetime!(2026-11-27 12:05 UTC)),
                "{body}"
            );
        }
    }

    #[test]
    fn ends_at_in_the_past_or_now_is_resolved() {
        let now = datetime!(2026-11-27 12:00 UTC);
        for end in ["2026-11-27T11:59:59Z", "2026-11-27T12:00:00Z"] {
            let body = format!(
                r#"[{{"labels":{{"a":"b"}},"startsAt":"2026-11-27T11:00:00Z","endsAt":"{end}"}}]"#
            );
            let alert = one(&body, now);
            assert_eq!(alert.status, AlertStatus::Resolved, "{end}");
        }
    }

    #[test]
    fn missing_starts_at_is_ends_at_or_now() {
        let now = datetime!(2026-11-27 12:00 UTC);
        let alert = one(r#"[{"labels":{"a":"b"}}]"#, now);
        assert_eq!(alert.starts_at, Some(now));
        let alert = one(
            r#"[{"labels":{"a":"b"},"endsAt":"2026-11-27T11:30:00Z"}]"#,
            now,
        );
        assert_eq!(alert.starts_at, Some(datetime!(2026-11-27 11:30 UTC)));
        assert_eq!(alert.status, AlertStatus::Resolved);
    }

    #[test]
    fn empty_label_values_are_dropped_as_alertmanager_does() {
        let alert = one(
            r#"[{"labels":{"a":"b","empty":""}}]"#,
            datetime!(2026-11-27 12:00 UTC),
        );
        assert_eq!(alert.labels.len(), 1);
        let err = prometheus_v2(
            br#"[{"labels":{"empty":""}}]"#,
            OffsetDateTime::UNIX_EPOCH,
            FIVE_MINUTES,
        )
        .unwrap_err();
        assert_eq!(field_error(&err), (0, "labels"));
    }

    #[test]
    fn bad_inputs_name_index_and_field() {
        let now = datetime!(2026-11-27 12:00 UTC);
        let cases: &[(&str, usize, &str)] = &[
            (r#"[{"labels":{"a":"b"}},{"annotations":{}}]"#, 1, "labels"),
            (r#"[{"labels":{}}]"#, 0, "labels"),
            (r#"[{"labels":[]}]"#, 0, "labels"),
            (
                r#"[{"labels":{"a":"b"}},{"labels":{"a":"b"}},{"labels":{"0bad":"x"}}]"#,
                2,
                "labels.0bad",
            ),
            (r#"[{"labels":{"a":1}}]"#, 0, "labels.a"),
            (
                r#"[{"labels":{"a":"b"},"annotations":{"bad-name":"x"}}]"#,
                0,
                "annotations.bad-name",
            ),
            (
                r#"[{"labels":{"a":"b"},"annotations":{"x":true}}]"#,
                0,
                "annotations.x",
            ),
            (
                r#"[{"labels":{"a":"b"},"annotations":"x"}]"#,
                0,
                "annotations",
            ),
            (
                r#"[{"labels":{"a":"b"},"startsAt":"yesterday"}]"#,
                0,
                "startsAt",
            ),
            (r#"[{"labels":{"a":"b"},"startsAt":17}]"#, 0, "startsAt"),
            (
                r#"[{"labels":{"a":"b"},"endsAt":"2026-13-01T00:00:00Z"}]"#,
                0,
                "endsAt",
            ),
            (
                r#"[{"labels":{"a":"b"},"generatorURL":5}]"#,
                0,
                "generatorURL",
            ),
            (
                r#"[{"labels":{"a":"b"},"startsAt":"2026-11-27T12:00:00Z","endsAt":"2026-11-27T11:00:00Z"}]"#,
                0,
                "endsAt",
            ),
            (
                r#"[{"labels":{"a":"b"},"startsAt":"2026-11-28T00:00:00Z"}]"#,
                0,
                "startsAt",
            ),
        ];
        for (body, index, field) in cases {
            let err = prometheus_v2(body.as_bytes(), now, FIVE_MINUTES).unwrap_err();
            assert_eq!(field_error(&err), (*index, *field), "{body}: {err}");
        }
    }

    #[test]
    fn messages_are_the_documented_ones() {
        let now = datetime!(2026-11-27 12:00 UTC);
        let err = prometheus_v2(
            br#"[{"labels":{"a":"b"},"startsAt":"yesterday"}]"#,
            now,
            FIVE_MINUTES,
        )
        .unwrap_err();
        assert!(matches!(
            &err,
            NormalizeError::Field { index: 0, field, message }
                if field == "startsAt" && message == "\"yesterday\" is not an RFC 3339 time"
        ));
        let err = prometheus_v2(br#"[{"labels":{"0bad":"x"}}]"#, now, FIVE_MINUTES).unwrap_err();
        assert_eq!(
            err.to_string(),
            "alert 0: labels.0bad: label name must match [a-zA-Z_][a-zA-Z0-9_]*"
        );
        let err = prometheus_v2(br#"[{},{}]"#, now, FIVE_MINUTES).unwrap_err();
        assert_eq!(err.to_string(), "alert 0: labels: missing");
    }

    #[test]
    fn the_body_must_be_an_array_of_objects() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let err = prometheus_v2(br#"{"labels":{"a":"b"}}"#, now, FIVE_MINUTES).unwrap_err();
        assert_eq!(err.location(), (None, None));
        assert!(matches!(err, NormalizeError::Body { .. }));
        let err = prometheus_v2(br#"[{"labels":{"a":"b"}}, 3]"#, now, FIVE_MINUTES).unwrap_err();
        assert_eq!(err.location(), (Some(1), None));
        let err = prometheus_v2(b"[{\"labels\":\n{\"a\" \"b\"}}]", now, FIVE_MINUTES).unwrap_err();
        let NormalizeError::Json(json) = &err else {
            panic!("{err:?}")
        };
        assert_eq!((json.line(), json.column()), (2, 6));
    }

    #[test]
    fn an_empty_list_is_an_empty_batch() {
        let alerts = prometheus_v2(b"[]", OffsetDateTime::UNIX_EPOCH, FIVE_MINUTES).unwrap();
        assert!(alerts.is_empty());
    }

    #[test]
    fn unknown_fields_are_accepted() {
        let alert = one(
            r#"[{"labels":{"a":"b"},"status":{"state":"active"},"fingerprint":"x","extra":[1,2]}]"#,
            datetime!(2026-11-27 12:00 UTC),
        );
        assert_eq!(alert.label("a"), "b");
    }

    #[test]
    fn an_overflowing_resolve_timeout_does_not_panic() {
        let alerts = prometheus_v2(
            br#"[{"labels":{"a":"b"}}]"#,
            OffsetDateTime::UNIX_EPOCH,
            Duration::MAX,
        )
        .unwrap();
        assert_eq!(alerts[0].status, AlertStatus::Firing);
        assert_eq!(alerts[0].ends_at, None);
    }
}
