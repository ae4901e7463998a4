//! Property tests: no input, however broken, panics a normalizer. Bodies
//! come from the HTTP edge unfiltered, so a panic would be a remote crash.

use proptest::prelude::*;
use serde_json::{Map, Value};
use time::{Duration, OffsetDateTime};

use super::{alertmanager_webhook, alerts_from_json, generic, grafana, prometheus_v2};

/// Field names the formats read, so random objects reach deep paths.
const KEYS: &[&str] = &[
    "alerts",
    "version",
    "labels",
    "annotations",
    "status",
    "startsAt",
    "endsAt",
    "starts_at",
    "ends_at",
    "generatorURL",
    "panelURL",
    "dashboardURL",
    "url",
    "fingerprint",
    "alertname",
    "0bad",
    "",
    "a b",
    "__name__",
];

/// Strings that mean something to a format: times (edge years, offsets,
/// Go's zero), statuses and versions.
const STRINGS: &[&str] = &[
    "0001-01-01T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999999Z",
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+23:59",
    "2026-11-27T11:45:16.709Z",
    "2026-02-30T00:00:00Z",
    "2026-11-27T23:59:60Z",
    "firing",
    "resolved",
    "4",
    "1",
    "",
    "x",
];

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(STRINGS).prop_map(str::to_string),
        proptest::sample::select(KEYS).prop_map(str::to_string),
        any::<String>(),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        arb_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((arb_string(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn arb_now() -> impl Strategy<Value = OffsetDateTime> {
    prop_oneof![
        Just(OffsetDateTime::UNIX_EPOCH),
        // The whole range `time` can hold by default, ends included.
        (-377_705_116_800i64..=253_402_300_799i64)
            .prop_map(|secs| OffsetDateTime::from_unix_timestamp(secs).unwrap()),
    ]
}

fn arb_timeout() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::minutes(5)),
        Just(Duration::MAX),
        Just(Duration::MIN),
        any::<i64>().prop_map(Duration::seconds),
    ]
}

fn run_all(body: &[u8], now: OffsetDateTime, timeout: Duration) {
    let _ = prometheus_v2(body, now, timeout);
    let _ = alertmanager_webhook(body);
    let _ = grafana(body);
    let _ = generic(body, now);
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = alerts_from_json(text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..256),
        now in arb_now(),
        timeout in arb_timeout(),
    ) {
        run_all(&body, now, timeout);
    }

    #[test]
    fn random_json_never_panics(value in arb_json(), now in arb_now(), timeout in arb_timeout()) {
        let body = serde_json::to_vec(&value).unwrap();
        run_all(&body, now, timeout);
        // Also wrapped the way each format expects, to get past the outer
        // shape checks into the per-alert ones.
        for wrapped in [
            Value::Array(vec![value.clone()]),
            serde_json::json!({ "version": "4", "alerts": [value.clone()] }),
            serde_json::json!({ "version": "1", "alerts": [value.clone()] }),
        ] {
            run_all(&serde_json::to_vec(&wrapped).unwrap(), now, timeout);
        }
    }

    #[test]
    fn random_alerts_never_panic(
        labels in proptest::collection::btree_map(arb_string(), arb_string(), 0..4),
        times in proptest::collection::vec(proptest::sample::select(STRINGS), 2),
        status in proptest::sample::select(STRINGS),
        now in arb_now(),
        timeout in arb_timeout(),
    ) {
        let alert = serde_json::json!({
            "labels": labels, "status": status,
            "startsAt": times[0], "endsAt": times[1],
            "starts_at": times[0], "ends_at": times[1],
        });
        for body in [
            serde_json::json!([alert.clone()]),
            serde_json::json!({ "version": "4", "alerts": [alert.clone()] }),
            serde_json::json!({ "version": "1", "alerts": [alert.clone()] }),
        ] {
            run_all(&serde_json::to_vec(&body).unwrap(), now, timeout);
        }
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    run_all(
        body.as_bytes(),
        OffsetDateTime::UNIX_EPOCH,
        Duration::minutes(5),
    );
    assert!(prometheus_v2(body.as_bytes(), OffsetDateTime::UNIX_EPOCH, Duration::ZERO).is_err());
}
