//! The Alertmanager API v2 alert list (`POST /api/v2/alerts`), which
//! Prometheus sends to each of its `alerting.alertmanagers`. The rules for
//! times and status follow Alertmanager's own `postAlertsHandler`
//! (api/v2/api.go) and `Alert.Validate`, so sevroute can stand in for an
//! Alertmanager without Prometheus noticing.

use std::borrow::Cow;
use std::marker::PhantomData;

use serde::Deserialize;
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use super::NormalizeError;
use super::walk::{self, AlertObject};
use crate::model::{Alert, AlertStatus, SharedStr, Source, StrMap};

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
    match read_well_formed(body, now, resolve_timeout) {
        Some(alerts) => Ok(alerts),
        None => read_walked(body, now, resolve_timeout),
    }
}

/// Reads the body through the walk, whose errors name the alert and field.
fn read_walked(
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

/// One alert of a body as the common case writes it, read straight from
/// the bytes: no `Value` tree is built, and the times and URL are
/// borrowed from the body unless they hold escapes. Unknown fields are
/// ignored, as by the walk.
#[derive(Deserialize)]
struct WellFormed<'a> {
    #[serde(borrow)]
    labels: Option<Pairs<'a>>,
    #[serde(borrow, default)]
    annotations: Option<Pairs<'a>>,
    #[serde(rename = "startsAt", borrow, default)]
    starts_at: Option<Cow<'a, str>>,
    #[serde(rename = "endsAt", borrow, default)]
    ends_at: Option<Cow<'a, str>>,
    #[serde(rename = "generatorURL", borrow, default)]
    generator_url: Option<Cow<'a, str>>,
}

/// A JSON object of string values, in body order (duplicates included),
/// borrowed from the body where a string holds no escape: the label set
/// packs them into one buffer, so an owned `String` per name and value
/// would only be copied again and freed.
struct Pairs<'a>(Vec<(Text<'a>, Text<'a>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Pairs<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Pairs<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Pairs<'a>, M::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(pair) = map.next_entry::<Text<'a>, Text<'a>>()? {
                    pairs.push(pair);
                }
                Ok(Pairs(pairs))
            }
        }
        d.deserialize_map(Visit(PhantomData))
    }
}

/// A JSON string, borrowed from the body unless it had to be unescaped.
struct Text<'a>(Cow<'a, str>);

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(text.to_string())))
            }
            fn visit_string<E>(self, text: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        d.deserialize_str(Visit(PhantomData))
    }
}

/// The fast path: the body read straight into alerts when every alert in
/// it is acceptable. `None` on anything else (bad JSON, a wrong type, a
/// bad name or time...), and the caller reads the body again through the
/// walk, whose error names the alert and field: the outcome is the same
/// either way, this only skips building a `Value` tree for good bodies.
fn read_well_formed(
    body: &[u8],
    now: OffsetDateTime,
    resolve_timeout: Duration,
) -> Option<Vec<Alert>> {
    let posted: Vec<WellFormed<'_>> = serde_json::from_slice(body).ok()?;
    posted
        .into_iter()
        .map(|alert| {
            let labels = string_map(alert.labels?, true)?;
            let annotations = match alert.annotations {
                Some(pairs) => string_map(pairs, false)?,
                None => StrMap::new(),
            };
            let time = |text: Option<Cow<'_, str>>| match text {
                None => Some(None),
                Some(text) => walk::rfc3339(&text).ok(),
            };
            let parts = Parts {
                sent_start: time(alert.starts_at)?,
                sent_end: time(alert.ends_at)?,
                generator_url: alert
                    .generator_url
                    .filter(|u| !u.is_empty())
                    .map(|u| SharedStr::from(u.as_ref())),
                labels,
                annotations,
            };
            assemble(parts, now, resolve_timeout).ok()
        })
        .collect()
}

/// Pairs as a label set (names checked, empty values dropped, at least one
/// left) or as annotations (names checked, empties kept); `None` when the
/// rules refuse them. A name given twice keeps its last value, as the walk
/// (and Go's decoder) does.
fn string_map(pairs: Pairs<'_>, labels: bool) -> Option<StrMap> {
    let mut pairs = pairs.0;
    if !pairs
        .iter()
        .all(|(name, _)| walk::is_label_name(name.as_ref()))
    {
        return None;
    }
    // Of pairs with the same name the last one decides (a later empty
    // label value removes the label, as a map's remove would): sort
    // (stable) and keep each name's last pair, then drop empty labels.
    if !pairs.windows(2).all(|w| w[0].0.as_ref() < w[1].0.as_ref()) {
        pairs.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
        pairs.reverse();
        pairs.dedup_by(|later, kept| later.0.as_ref() == kept.0.as_ref());
        pairs.reverse();
    }
    if labels {
        pairs.retain(|(_, value)| !value.as_ref().is_empty());
        if pairs.is_empty() {
            return None;
        }
    }
    Some(StrMap::from_pairs(pairs))
}

/// What one alert said, read and checked field by field.
struct Parts {
    labels: StrMap,
    annotations: StrMap,
    sent_start: Option<OffsetDateTime>,
    sent_end: Option<OffsetDateTime>,
    generator_url: Option<SharedStr>,
}

/// Why an alert's times were refused: the field and the message.
type TimesRefused = (&'static str, &'static str);

fn read_alert(
    alert: &AlertObject<'_>,
    now: OffsetDateTime,
    resolve_timeout: Duration,
) -> Result<Alert, NormalizeError> {
    let parts = Parts {
        labels: alert.labels("labels")?,
        annotations: alert.annotations("annotations", true)?,
        sent_start: alert.time("startsAt")?,
        sent_end: alert.time("endsAt")?,
        generator_url: alert.url("generatorURL")?,
    };
    assemble(parts, now, resolve_timeout).map_err(|(field, message)| alert.error(field, message))
}

/// The alert, with status and times decided as Alertmanager does.
fn assemble(
    parts: Parts,
    now: OffsetDateTime,
    resolve_timeout: Duration,
) -> Result<Alert, TimesRefused> {
    let Parts {
        labels,
        annotations,
        sent_start,
        sent_end,
        generator_url,
    } = parts;
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
            ("endsAt", "is before startsAt")
        } else {
            (
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

    /// `string_map` as it was, through a map of owned strings: the
    /// reference the packed path must equal.
    fn string_map_through_a_map(pairs: &[(String, String)], labels: bool) -> Option<StrMap> {
        let mut out = std::collections::BTreeMap::new();
        for (name, value) in pairs {
            if !walk::is_label_name(name) {
                return None;
            }
            if labels && value.is_empty() {
                out.remove(name);
            } else {
                out.insert(name.clone(), value.clone());
            }
        }
        (!labels || !out.is_empty()).then(|| StrMap::from(out))
    }

    proptest::proptest! {
        #[test]
        fn label_sets_read_from_pairs_equal_those_read_through_a_map(
            pairs in proptest::collection::vec(
                (
                    proptest::sample::select(vec!["a", "b", "job", "alertname", "z_9", "1bad", "", "a-b"]),
                    proptest::sample::select(vec!["", "x", "y", "ünï", "a\"b"]),
                ),
                0..10,
            ),
            labels in proptest::prelude::any::<bool>(),
        ) {
            let owned: Vec<(String, String)> =
                pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let borrowed = Pairs(
                pairs
                    .iter()
                    .map(|(k, v)| (Text(Cow::Borrowed(*k)), Text(Cow::Borrowed(*v))))
                    .collect(),
            );
            proptest::prop_assert_eq!(
                string_map(borrowed, labels),
                string_map_through_a_map(&owned, labels)
            );
        }
    }

    #[test]
    fn escaped_and_plain_label_text_read_the_same_on_the_fast_path() {
        let body = br#"[{"labels": {"alertname": "A\u0042", "svc": "x\"y", "job": "plain"},
                         "annotations": {"summary": "line\nbreak", "empty": ""}}]"#;
        let now = datetime!(2026-11-27 10:00 UTC);
        let alerts = read_well_formed(body, now, Duration::minutes(5)).expect("the fast path");
        assert_eq!(alerts[0].label("alertname"), "AB");
        assert_eq!(alerts[0].label("svc"), "x\"y");
        assert_eq!(alerts[0].label("job"), "plain");
        assert_eq!(alerts[0].annotation("summary"), "line\nbreak");
        assert_eq!(alerts[0].annotations.get("empty"), Some(""));
        assert_eq!(
            alerts,
            read_walked(body, now, Duration::minutes(5)).unwrap(),
            "the walk reads the same"
        );
    }

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
    fn the_fast_path_reads_what_the_walk_reads_and_leaves_every_refused_body_to_it() {
        let now = datetime!(2026-11-27 12:00 UTC);
        let bodies = [
            API_V2_FIXTURE,
            "[]",
            r#"[{"labels":{"a":"b"}}]"#,
            // Duplicate names: the last value counts, even an empty one.
            r#"[{"labels":{"a":"b","a":"c"}}]"#,
            r#"[{"labels":{"a":"b","x":"1","a":""}}]"#,
            r#"[{"labels":{"a":"b","empty":""},"annotations":{"s":""}}]"#,
            // Nulls read as absent; unknown fields are ignored.
            r#"[{"labels":{"a":"b"},"annotations":null,"startsAt":null,"endsAt":null,"generatorURL":null,"extra":[1,{"x":null}]}]"#,
            // Escapes in names, values, times and URLs.
            r#"[{"labels":{"a":"b\"c\u00e9\n"},"annotations":{"s":"\\x"},"startsAt":"2026-11-27T11:00:00\u005A","generatorURL":"http:\/\/p\/g"}]"#,
            r#"[{"labels":{"a":"b"},"startsAt":"2026-11-27T11:00:00Z","endsAt":"2026-11-27T12:03:00Z","generatorURL":""}]"#,
            r#"[{"labels":{"a":"b"},"endsAt":"0001-01-01T00:00:00Z"},{"labels":{"c":"d"},"endsAt":"2026-11-27T11:59:00Z"}]"#,
            // Refused, each for its own reason.
            "{}",
            "[1]",
            "not json",
            r#"[{"labels":{}}]"#,
            r#"[{"labels":{"a":""}}]"#,
            r#"[{"annotations":{"s":"x"}}]"#,
            r#"[{"labels":null}]"#,
            r#"[{"labels":{"a":1}}]"#,
            r#"[{"labels":{"1a":"b"}}]"#,
            r#"[{"labels":{"a":"b"},"annotations":{"bad name":"x"}}]"#,
            r#"[{"labels":{"a":"b"},"annotations":"x"}]"#,
            r#"[{"labels":{"a":"b"},"startsAt":"yesterday"}]"#,
            r#"[{"labels":{"a":"b"},"startsAt":5}]"#,
            r#"[{"labels":{"a":"b"},"startsAt":"2026-11-27T11:00:00Z","endsAt":"2026-11-27T10:00:00Z"}]"#,
            r#"[{"labels":{"a":"b"},"startsAt":"2026-11-27T13:00:00Z"}]"#,
            r#"[{"labels":{"a":"b"},"generatorURL":7}]"#,
            r#"[{"labels":{"a":"b"}},{"labels":{}}]"#,
            r#"[{"labels":{"a":"b"},"labels":{"c":"d"}}]"#,
        ];
        let mut refused = 0;
        for (i, body) in bodies.iter().enumerate() {
            let walked = read_walked(body.as_bytes(), now, FIVE_MINUTES);
            let fast = read_well_formed(body.as_bytes(), now, FIVE_MINUTES);
            match walked {
                // The fast path reads the well-formed ones itself.
                Ok(alerts) if i < 10 => assert_eq!(fast, Some(alerts), "{body}"),
                // A field given twice it leaves to the walk (last wins).
                Ok(alerts) => {
                    assert_eq!(fast, None, "{body}");
                    assert_eq!(
                        prometheus_v2(body.as_bytes(), now, FIVE_MINUTES).unwrap(),
                        alerts
                    );
                }
                Err(error) => {
                    refused += 1;
                    assert_eq!(fast, None, "{body}");
                    // The entry point gives the walk's error.
                    assert_eq!(
                        prometheus_v2(body.as_bytes(), now, FIVE_MINUTES)
                            .unwrap_err()
                            .to_string(),
                        error.to_string()
                    );
                }
            }
        }
        // Every case after the first ten but the last is refused.
        assert_eq!(refused, bodies.len() - 11);
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
