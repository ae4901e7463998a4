//! The documented, versioned JSON body that the deliver stage sends to
//! `webhook` destinations ([`WebhookMessage`], described for receivers in
//! `docs/webhook.md`), and the stable message ids that make redelivery
//! idempotent. Pure data: built by the route/outbox side, serialized once,
//! and the exact bytes are signed and sent.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use thiserror::Error;
use time::OffsetDateTime;

use crate::model::{Alert, AlertStatus, Fingerprint, Severity, StrMap};

/// The one body version this build writes and reads.
pub const MESSAGE_VERSION: u32 = 1;

/// The prefix of every message id, as in the spec's examples.
pub const MESSAGE_ID_PREFIX: &str = "msg_";

/// Why a message could not be encoded or decoded.
#[derive(Debug, Error)]
pub enum MessageError {
    /// serde_json refused the message (encoding), or the bytes are not a
    /// version-1 message (decoding).
    #[error("webhook message JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The `version` field: always `1` on the wire. A zero-sized marker, so a
/// message cannot be built with another version, and reading a body of
/// another version fails instead of misreading it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageVersion;

impl Serialize for MessageVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(MESSAGE_VERSION)
    }
}

impl<'de> Deserialize<'de> for MessageVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let version = u32::deserialize(deserializer)?;
        if version == MESSAGE_VERSION {
            Ok(MessageVersion)
        } else {
            Err(serde::de::Error::custom(format_args!(
                "unsupported webhook message version {version} (this build reads {MESSAGE_VERSION})"
            )))
        }
    }
}

/// Which action of the incident's severity the message carries out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    /// Page the responders: the incident opened at a severity that pages.
    Page,
    /// Inform (chat, status page): opened, joined by alerts, de-escalated.
    Notify,
    /// The severity's status-update cadence has passed without an update.
    UpdateDue,
    /// The severity rose, or a page went unacknowledged past its timeout.
    Escalate,
    /// The incident is resolved.
    Resolve,
    /// A person acknowledged the incident (sent to the destinations that
    /// were paged).
    Acknowledge,
}

impl MessageType {
    /// The wire name (`page`, `update_due`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Page => "page",
            MessageType::Notify => "notify",
            MessageType::UpdateDue => "update_due",
            MessageType::Escalate => "escalate",
            MessageType::Resolve => "resolve",
            MessageType::Acknowledge => "acknowledge",
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an incident is still open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    /// At least one alert still fires, and nobody resolved it.
    Open,
    /// All alerts resolved, or resolved by hand.
    Resolved,
}

/// The incident a message is about, as it stands when the message is built.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageIncident {
    /// sevroute's incident id (the API's `/api/v1/incidents/{id}`).
    pub id: i64,
    /// The grouping key (the `group by` label values), stable for the
    /// incident's life; a receiver can dedupe its own tickets on it.
    pub key: String,
    /// A one-line human title.
    pub title: String,
    /// The severity now (`SEV1`..`SEV3`).
    pub severity: Severity,
    /// `open` or `resolved`.
    pub status: IncidentStatus,
    /// When the incident opened (RFC 3339, UTC).
    #[serde(with = "rfc3339_utc")]
    pub opened_at: OffsetDateTime,
    /// Link to the incident, when sevroute knows its public address;
    /// `null` otherwise.
    pub url: Option<String>,
}

/// One alert of the incident, as normalized from its source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageAlert {
    /// Alertmanager-compatible label-set fingerprint, 16 lower-case hex
    /// digits.
    #[serde(with = "fingerprint_hex")]
    pub fingerprint: Fingerprint,
    /// `firing` or `resolved`.
    pub status: AlertStatus,
    /// Identifying labels.
    pub labels: StrMap,
    /// Descriptive annotations.
    pub annotations: StrMap,
    /// When the alert started, if its source said (RFC 3339, UTC).
    #[serde(with = "rfc3339_utc::option")]
    pub starts_at: Option<OffsetDateTime>,
    /// When it ended, or will end unless refreshed, if its source said.
    #[serde(with = "rfc3339_utc::option")]
    pub ends_at: Option<OffsetDateTime>,
    /// Link to the alert at its source (Prometheus graph, Grafana panel).
    pub generator_url: Option<String>,
}

impl From<&Alert> for MessageAlert {
    fn from(alert: &Alert) -> Self {
        MessageAlert {
            fingerprint: alert.fingerprint(),
            status: alert.status,
            labels: alert.labels.clone(),
            annotations: alert.annotations.clone(),
            starts_at: alert.starts_at,
            ends_at: alert.ends_at,
            generator_url: alert.generator_url.as_deref().map(str::to_string),
        }
    }
}

/// The body of every request to a `webhook` destination (version 1).
///
/// Every field is always present (`null` when empty), so receivers can rely
/// on the shape; fields may be added within version 1, never removed or
/// changed in meaning without a new version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookMessage {
    /// Body version, always `1`.
    pub version: MessageVersion,
    /// The message id, equal to the `webhook-id` header: the same for every
    /// retry, restart and replay of this message.
    pub id: String,
    /// The action: `page`, `notify`, `update_due`, `escalate`, `resolve`,
    /// `acknowledge`.
    #[serde(rename = "type")]
    pub kind: MessageType,
    /// When the event happened (RFC 3339, UTC); unlike `webhook-timestamp`,
    /// it does not change between attempts.
    #[serde(with = "rfc3339_utc")]
    pub occurred_at: OffsetDateTime,
    /// The incident.
    pub incident: MessageIncident,
    /// The incident's alerts.
    pub alerts: Vec<MessageAlert>,
    /// Why the incident has its severity, in plain words, one line each
    /// (the classification's explanation).
    pub explanation: Vec<String>,
    /// Why this message was sent, when more than its type says
    /// (`escalated from SEV3 to SEV1: ...`); `null` otherwise.
    pub reason: Option<String>,
    /// The error-budget burn rates the deciding rule reads, as they stood
    /// when the message was built (empty when it reads none, or they have
    /// no data). Added within version 1: bodies written before it read as
    /// empty.
    #[serde(default)]
    pub burn: Vec<BurnReading>,
}

/// One burn rate: how fast an SLO spends its error budget over a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BurnReading {
    /// The SLO's name.
    pub slo: String,
    /// The window as the rules spell it (`1h`, `5m`).
    pub window: String,
    /// The window in seconds.
    pub window_secs: u64,
    /// The burn rate (1 spends the budget exactly over the period).
    pub rate: f64,
}

/// The burn rates rule `rule` reads, from `burn`, in the order the rule
/// reads them, without repeats; rates without data are left out.
pub fn burn_readings(
    ruleset: &crate::rules::RuleSet,
    rule: Option<&str>,
    burn: &crate::classify::BurnSnapshot,
) -> Vec<BurnReading> {
    let Some(rule) = rule.and_then(|name| ruleset.rules.iter().find(|r| r.name == name)) else {
        return Vec::new();
    };
    let mut readings: Vec<BurnReading> = Vec::new();
    rule.when.each_num_operand(&mut |operand| {
        let crate::rules::NumOperand::Burn { slo, window_secs } = operand else {
            return;
        };
        let Some(slo) = ruleset.slos.get(*slo) else {
            return;
        };
        let seen = readings
            .iter()
            .any(|r| r.slo == slo.name && r.window_secs == *window_secs);
        if let (false, Some(rate)) = (seen, burn.burn(&slo.name, *window_secs))
            && rate.is_finite()
        {
            readings.push(BurnReading {
                slo: slo.name.clone(),
                window: crate::rules::printer::print_duration(*window_secs),
                window_secs: *window_secs,
                rate,
            });
        }
    });
    readings
}

impl WebhookMessage {
    /// The body to sign and send: compact JSON, serialized once. Sign these
    /// exact bytes; re-serializing may reorder or reformat.
    pub fn to_body(&self) -> Result<Vec<u8>, MessageError> {
        Ok(serde_json::to_vec(self)?)
    }

    /// Reads a body (tests, replay, receivers written in Rust).
    pub fn from_body(body: &[u8]) -> Result<WebhookMessage, MessageError> {
        Ok(serde_json::from_slice(body)?)
    }
}

/// A message id derived from a stable key: `msg_` and 32 hex digits of the
/// key's SHA-256.
///
/// Feed it what identifies the message for good, such as the outbox row's
/// natural key (`{incident id}:{destination}:{action}:{sequence}`), never a
/// clock or a random number: then every retry, restart, replay and node
/// computes the same `webhook-id` and receivers can dedupe on it. The
/// output never contains `.` (the signature scheme's separator). Hashing
/// rather than using the key itself keeps incident keys and destination
/// names out of headers.
pub fn derive_message_id(stable_key: &str) -> String {
    let digest = Sha256::digest(stable_key.as_bytes());
    let mut id = String::with_capacity(MESSAGE_ID_PREFIX.len() + 32);
    id.push_str(MESSAGE_ID_PREFIX);
    for byte in &digest[..16] {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

/// The fingerprint as the 16 hex digits Alertmanager shows.
mod fingerprint_hex {
    use super::*;

    pub fn serialize<S: Serializer>(fp: &Fingerprint, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(fp)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Fingerprint, D::Error> {
        let text = String::deserialize(deserializer)?;
        u64::from_str_radix(&text, 16)
            .map(Fingerprint)
            .map_err(|_| serde::de::Error::custom("fingerprint must be 16 hex digits"))
    }
}

/// RFC 3339 in UTC: time's `rfc3339` keeps the value's offset, and the
/// documented body promises `Z` times whatever offset the caller used.
mod rfc3339_utc {
    use serde::{Deserializer, Serializer};
    use time::{OffsetDateTime, UtcOffset};

    pub fn serialize<S: Serializer>(at: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
        time::serde::rfc3339::serialize(&at.to_offset(UtcOffset::UTC), serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<OffsetDateTime, D::Error> {
        time::serde::rfc3339::deserialize(deserializer)
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            at: &Option<OffsetDateTime>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            time::serde::rfc3339::option::serialize(
                &at.map(|t| t.to_offset(UtcOffset::UTC)),
                serializer,
            )
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<OffsetDateTime>, D::Error> {
            time::serde::rfc3339::option::deserialize(deserializer)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::Source;
    use time::macros::datetime;

    /// A realistic message for tests of this module and of the formats
    /// built on it.
    pub(crate) fn sample() -> WebhookMessage {
        let alert = Alert {
            labels: [
                ("alertname", "CheckoutErrorBudgetBurn"),
                ("service", "checkout"),
                ("severity", "critical"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            annotations: [("summary", "Checkout is burning its error budget 22x")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            status: AlertStatus::Firing,
            starts_at: Some(datetime!(2026-11-03 20:21:10.5 UTC)),
            ends_at: None,
            source: Source::Prometheus,
            generator_url: Some("http://prometheus:9090/graph?g0.expr=up".into()),
        };
        WebhookMessage {
            version: MessageVersion,
            id: derive_message_id("42:status:escalate:3"),
            kind: MessageType::Escalate,
            occurred_at: datetime!(2026-11-03 21:26:10 +01:00),
            incident: MessageIncident {
                id: 42,
                key: "service=checkout,slo=checkout-availability".to_string(),
                title: "checkout burning fast".to_string(),
                severity: Severity::Sev1,
                status: IncidentStatus::Open,
                opened_at: datetime!(2026-11-03 20:21:40 UTC),
                url: None,
            },
            alerts: vec![MessageAlert::from(&alert)],
            explanation: vec![
                "rule \"checkout burning fast\" matched: burn(checkout-availability, 1h) = 22.1 > 14.4"
                    .to_string(),
            ],
            reason: Some("escalated from SEV3 to SEV1: checkout burning fast".to_string()),
            burn: vec![
                BurnReading {
                    slo: "checkout-availability".to_string(),
                    window: "1h".to_string(),
                    window_secs: 3600,
                    rate: 22.1,
                },
                BurnReading {
                    slo: "checkout-availability".to_string(),
                    window: "5m".to_string(),
                    window_secs: 300,
                    rate: 31.0,
                },
            ],
        }
    }

    #[test]
    fn burn_readings_are_the_rates_the_deciding_rule_reads() {
        use crate::classify::BurnSnapshot;
        use crate::rules::{EnvPolicy, Sources, load_sources_with_env};
        let mut sources = Sources::new();
        sources.add(
            "t.sev",
            r#"slo "api" { objective 99.9%; period 30d }
               slo "db" { objective 99%; period 30d }
               destination "d" webhook { url "http://127.0.0.1:1/" }
               severity SEV1 { page "d" }
               rule "fast" { when burn("api", 1h) > 14.4 and burn("api", 5m) > 14.4 and burn("api", 1h) < 1000 then SEV1 }
               rule "other" { when burn("db", 6h) > 6 then SEV1 }
               rule "plain" { when labels.a == "b" then SEV1 }"#,
        );
        let loaded = load_sources_with_env(sources, EnvPolicy::Warn, &|_| None);
        let report = loaded.render();
        let ruleset = loaded.ruleset.unwrap_or_else(|| panic!("{report}"));
        let mut burn = BurnSnapshot::new();
        burn.set_burn("api", 3600, 22.1);
        burn.set_burn("api", 300, 31.0);
        burn.set_burn("db", 21600, 7.0);

        let readings = burn_readings(&ruleset, Some("fast"), &burn);
        // In the order the rule reads them, the repeated 1h read once, and
        // nothing of the SLO this rule does not read.
        assert_eq!(
            readings,
            vec![
                BurnReading {
                    slo: "api".into(),
                    window: "1h".into(),
                    window_secs: 3600,
                    rate: 22.1
                },
                BurnReading {
                    slo: "api".into(),
                    window: "5m".into(),
                    window_secs: 300,
                    rate: 31.0
                },
            ]
        );
        assert!(burn_readings(&ruleset, Some("plain"), &burn).is_empty());
        assert!(burn_readings(&ruleset, None, &burn).is_empty());
        assert!(burn_readings(&ruleset, Some("gone"), &burn).is_empty());
        // No data yet: left out rather than reported as zero.
        assert!(burn_readings(&ruleset, Some("other"), &BurnSnapshot::new()).is_empty());
    }

    #[test]
    fn a_body_stored_before_burn_existed_reads_as_no_burn() {
        let mut value: serde_json::Value =
            serde_json::from_slice(&sample().to_body().unwrap()).unwrap();
        value.as_object_mut().unwrap().remove("burn");
        let message = WebhookMessage::from_body(value.to_string().as_bytes()).unwrap();
        assert!(message.burn.is_empty());
    }

    #[test]
    fn round_trips_through_json() {
        let message = sample();
        let body = message.to_body().unwrap();
        assert_eq!(WebhookMessage::from_body(&body).unwrap(), message);
    }

    #[test]
    fn top_level_keys_are_exactly_the_documented_ones() {
        let value: serde_json::Value =
            serde_json::from_slice(&sample().to_body().unwrap()).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut documented = vec![
            "version",
            "id",
            "type",
            "occurred_at",
            "incident",
            "alerts",
            "explanation",
            "reason",
            "burn",
        ];
        documented.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, documented);

        let incident: Vec<&str> = value["incident"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = vec![
            "id",
            "key",
            "title",
            "severity",
            "status",
            "opened_at",
            "url",
        ];
        expected.sort_unstable();
        let mut incident = incident;
        incident.sort_unstable();
        assert_eq!(incident, expected);

        let alert: Vec<&str> = value["alerts"][0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = vec![
            "fingerprint",
            "status",
            "labels",
            "annotations",
            "starts_at",
            "ends_at",
            "generator_url",
        ];
        expected.sort_unstable();
        let mut alert = alert;
        alert.sort_unstable();
        assert_eq!(alert, expected);
    }

    #[test]
    fn wire_values_are_as_documented() {
        let value: serde_json::Value =
            serde_json::from_slice(&sample().to_body().unwrap()).unwrap();
        assert_eq!(value["version"], 1);
        assert_eq!(value["type"], "escalate");
        // A +01:00 time is sent in UTC.
        assert_eq!(value["occurred_at"], "2026-11-03T20:26:10Z");
        assert_eq!(value["incident"]["severity"], "SEV1");
        assert_eq!(value["incident"]["status"], "open");
        assert_eq!(value["incident"]["url"], serde_json::Value::Null);
        assert_eq!(value["alerts"][0]["status"], "firing");
        assert_eq!(value["alerts"][0]["starts_at"], "2026-11-03T20:21:10.5Z");
        assert_eq!(value["alerts"][0]["ends_at"], serde_json::Value::Null);
        let fp = value["alerts"][0]["fingerprint"].as_str().unwrap();
        assert_eq!(fp.len(), 16);
        assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()));
        for (kind, name) in [
            (MessageType::Page, "page"),
            (MessageType::Notify, "notify"),
            (MessageType::UpdateDue, "update_due"),
            (MessageType::Escalate, "escalate"),
            (MessageType::Resolve, "resolve"),
            (MessageType::Acknowledge, "acknowledge"),
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), name);
            assert_eq!(kind.as_str(), name);
        }
        assert_eq!(
            serde_json::to_value(IncidentStatus::Resolved).unwrap(),
            "resolved"
        );
    }

    #[test]
    fn another_version_is_refused() {
        let mut value: serde_json::Value =
            serde_json::from_slice(&sample().to_body().unwrap()).unwrap();
        value["version"] = 2.into();
        let err = WebhookMessage::from_body(value.to_string().as_bytes()).unwrap_err();
        assert!(
            err.to_string()
                .contains("unsupported webhook message version 2"),
            "{err}"
        );
    }

    #[test]
    fn message_ids_are_stable_prefixed_and_dot_free() {
        let a = derive_message_id("42:status:page:1");
        assert_eq!(a, derive_message_id("42:status:page:1"));
        assert_ne!(a, derive_message_id("42:status:page:2"));
        assert!(a.starts_with("msg_"));
        assert_eq!(a.len(), 4 + 32);
        assert!(a[4..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!a.contains('.'));
    }

    #[test]
    fn the_docs_example_is_a_valid_message() {
        let doc = include_str!("../../docs/webhook.md");
        let start = doc
            .find("```json\n")
            .expect("docs/webhook.md has a JSON example")
            + 8;
        let end = start + doc[start..].find("```").unwrap();
        let example = &doc[start..end];
        let message = WebhookMessage::from_body(example.as_bytes()).unwrap();
        // Re-encoding reproduces every field the example shows.
        let shown: serde_json::Value = serde_json::from_str(example).unwrap();
        assert_eq!(serde_json::to_value(&message).unwrap(), shown);
    }
}
