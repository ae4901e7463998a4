//! `opsgenie` destinations: the Opsgenie Alert API. Pages, escalations and
//! notices create an alert whose `alias` is the incident's key (Opsgenie
//! dedupes open alerts on it); an acknowledgement acknowledges it and a
//! resolve closes it, both by alias. Authorization is `GenieKey <api_key>`.

use std::collections::BTreeMap;

use serde_json::{Value as J, json};

use super::{Outgoing, PrepareError, burn_lines, cut, dedup_key, required, text_setting, to_json};
use crate::deliver::backoff::{Outcome, classify_status};
use crate::deliver::message::MessageType;
use crate::deliver::sender::{Method, PreparedRequest, Reply};
use crate::model::Severity;
use crate::rules::Destination;

/// The API's base URL (EU accounts use `https://api.eu.opsgenie.com`).
pub const DEFAULT_URL: &str = "https://api.opsgenie.com";
/// Longest `message`.
pub const MESSAGE_MAX: usize = 130;
/// Longest `alias`.
pub const ALIAS_MAX: usize = 512;
/// Longest `description`.
pub const DESCRIPTION_MAX: usize = 15_000;
/// Longest `source`.
pub const SOURCE_MAX: usize = 100;
/// Longest `note`.
pub const NOTE_MAX: usize = 25_000;
/// Most tags, and longest tag.
pub const TAGS_MAX: usize = 20;
/// Longest tag.
pub const TAG_MAX: usize = 50;
/// Longest `details` value, and the most characters all details may hold
/// (keys and values together).
pub const DETAILS_MAX: usize = 8_000;

/// The priority for a sevroute severity, unless the destination's
/// `sev1`/`sev2`/`sev3` setting says otherwise.
pub fn default_priority(severity: Severity) -> &'static str {
    match severity {
        Severity::Sev1 => "P1",
        Severity::Sev2 => "P2",
        Severity::Sev3 => "P3",
    }
}

/// Builds the create, acknowledge or close request.
pub fn prepare(
    destination: &Destination,
    out: &Outgoing<'_>,
) -> Result<PreparedRequest, PrepareError> {
    let api_key = required(destination, "api_key")?;
    let base = text_setting(destination, "url")?.unwrap_or_else(|| DEFAULT_URL.to_string());
    let source = cut(
        &text_setting(destination, "source")?.unwrap_or_else(|| "sevroute".to_string()),
        SOURCE_MAX,
    );
    let message = out.message;
    let alias = dedup_key(message, ALIAS_MAX);
    let mut url = reqwest::Url::parse(&base).map_err(|_| PrepareError::Invalid {
        key: "url",
        problem: "not an absolute URL".into(),
    })?;
    let body = match message.kind {
        MessageType::Resolve | MessageType::Acknowledge => {
            let verb = if message.kind == MessageType::Resolve {
                "close"
            } else {
                "acknowledge"
            };
            url.path_segments_mut()
                .map_err(|()| PrepareError::Invalid {
                    key: "url",
                    problem: "cannot take a path".into(),
                })?
                .pop_if_empty()
                .extend(["v2", "alerts", alias.as_str(), verb]);
            url.query_pairs_mut().append_pair("identifierType", "alias");
            let note = match &message.reason {
                Some(reason) => format!("{}: {reason}", out.text.title),
                None => out.text.title.clone(),
            };
            json!({"source": source, "user": "sevroute", "note": cut(&note, NOTE_MAX)})
        }
        MessageType::Page
        | MessageType::Escalate
        | MessageType::Notify
        | MessageType::UpdateDue => {
            url.path_segments_mut()
                .map_err(|()| PrepareError::Invalid {
                    key: "url",
                    problem: "cannot take a path".into(),
                })?
                .pop_if_empty()
                .extend(["v2", "alerts"]);
            let severity_key = match message.incident.severity {
                Severity::Sev1 => "sev1",
                Severity::Sev2 => "sev2",
                Severity::Sev3 => "sev3",
            };
            let priority = text_setting(destination, severity_key)?
                .unwrap_or_else(|| default_priority(message.incident.severity).to_string());
            let mut description = out.text.body.clone();
            let burn = burn_lines(message);
            if !burn.is_empty() {
                description.push_str("\n\nBurn rates:\n");
                description.push_str(&burn.join("\n"));
            }
            let mut tags = vec![
                "sevroute".to_string(),
                message.incident.severity.to_string(),
            ];
            if let Some(service) = message.alerts.first().and_then(|a| a.labels.get("service")) {
                tags.push(format!("service:{service}"));
            }
            tags.truncate(TAGS_MAX);
            let tags: Vec<String> = tags.iter().map(|t| cut(t, TAG_MAX)).collect();
            let mut details = BTreeMap::new();
            details.insert("incident_id", message.incident.id.to_string());
            details.insert("incident_key", message.incident.key.clone());
            details.insert("type", message.kind.as_str().to_string());
            if let Some(url) = &message.incident.url {
                details.insert("incident_url", url.clone());
            }
            if !burn.is_empty() {
                details.insert("burn", burn.join("; "));
            }
            json!({
                "message": cut(&out.text.title, MESSAGE_MAX),
                "alias": alias,
                "description": cut(&description, DESCRIPTION_MAX),
                "priority": priority,
                "source": source,
                "tags": tags,
                "details": fit_details(details),
                "entity": cut(&message.incident.key, ALIAS_MAX),
                "note": cut(message.reason.as_deref().unwrap_or(""), NOTE_MAX),
            })
        }
    };
    Ok(PreparedRequest {
        method: Method::Post,
        url: url.to_string(),
        headers: vec![("Authorization".to_string(), format!("GenieKey {api_key}"))],
        body: to_json(&body),
        secrets: vec![api_key],
    })
}

/// Keeps details within the total limit: values are cut, and a detail that
/// no longer fits is left out.
fn fit_details(details: BTreeMap<&str, String>) -> J {
    let mut out = serde_json::Map::new();
    let mut used = 0;
    for (key, value) in details {
        let room = DETAILS_MAX.saturating_sub(used + key.len());
        if room < 2 {
            break;
        }
        let value = cut(&value, room);
        used += key.len() + value.chars().count();
        out.insert(key.to_string(), J::String(value));
    }
    J::Object(out)
}

/// 202 (any 2xx) is accepted (Opsgenie processes requests asynchronously);
/// 400, 401, 403, 404 and 422 are never retried; 429 and 5xx are.
pub fn classify(reply: &Reply) -> Outcome {
    classify_status(reply.status, reply.retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::backoff::{RetryReason, TerminalReason};
    use crate::deliver::message::tests::sample;
    use crate::deliver::text::builtin;
    use crate::deliver::vendor::tests::{assert_same_shape, destination, fixture, reply};
    use crate::rules::DestinationKind;

    const KEY: &str = "eb243592-faa2-4ba2-a551q-1afdf565c889";

    fn render(
        kind: MessageType,
        settings: &[(&str, &str)],
        title: Option<String>,
    ) -> (PreparedRequest, J) {
        let mut message = sample();
        message.kind = kind;
        message.incident.url = Some("https://sevroute.example.com/api/v1/incidents/42".into());
        if let Some(title) = title {
            message.incident.title = title;
        }
        let text = builtin(&message);
        let mut all = vec![("api_key", KEY)];
        all.extend_from_slice(settings);
        let dest = destination(DestinationKind::Opsgenie, &all);
        let out = Outgoing {
            message: &message,
            text: &text,
            body: b"",
            webhook_id: "m",
            timestamp: 0,
        };
        let request = prepare(&dest, &out).unwrap();
        let value = serde_json::from_slice(&request.body).unwrap();
        (request, value)
    }

    #[test]
    fn create_matches_the_documented_request_field_by_field() {
        let (request, body) = render(MessageType::Page, &[], None);
        assert_eq!(request.url, "https://api.opsgenie.com/v2/alerts");
        assert_same_shape(
            &fixture("opsgenie-create.json"),
            &body,
            "alert",
            &["alert.details"],
        );
        assert_eq!(body["message"], "[SEV1] Page: checkout burning fast");
        assert_eq!(body["alias"], sample().incident.key);
        assert_eq!(body["priority"], "P1");
        assert_eq!(body["source"], "sevroute");
        assert_eq!(body["tags"][1], "SEV1");
        assert_eq!(body["tags"][2], "service:checkout");
        assert_eq!(body["details"]["incident_id"], "42");
        assert_eq!(
            body["details"]["burn"],
            "checkout-availability 1h: 22.1x; checkout-availability 5m: 31x"
        );
        let description = body["description"].as_str().unwrap();
        assert!(
            description.contains(&sample().explanation[0]),
            "{description}"
        );
        assert!(
            description.contains("Burn rates:\ncheckout-availability 1h: 22.1x"),
            "{description}"
        );
        assert_eq!(
            request.headers,
            vec![("Authorization".to_string(), format!("GenieKey {KEY}"))]
        );
        assert_eq!(request.secrets, vec![KEY.to_string()]);
    }

    #[test]
    fn acknowledge_and_close_address_the_alert_by_alias() {
        for (kind, verb, file) in [
            (
                MessageType::Acknowledge,
                "acknowledge",
                "opsgenie-acknowledge.json",
            ),
            (MessageType::Resolve, "close", "opsgenie-close.json"),
        ] {
            let (request, body) = render(kind, &[("url", "http://127.0.0.1:9")], None);
            assert_eq!(
                request.url,
                format!(
                    "http://127.0.0.1:9/v2/alerts/service=checkout,slo=checkout-availability/{verb}?identifierType=alias"
                )
            );
            assert_same_shape(&fixture(file), &body, "body", &["alert.details"]);
            assert_eq!(body["source"], "sevroute");
            assert!(
                body["note"]
                    .as_str()
                    .unwrap()
                    .contains("escalated from SEV3"),
                "{body}"
            );
        }
    }

    #[test]
    fn an_alias_with_slashes_is_one_path_segment() {
        let mut message = sample();
        message.kind = MessageType::Resolve;
        message.incident.key = "a/b?c".into();
        let text = builtin(&message);
        let dest = destination(DestinationKind::Opsgenie, &[("api_key", KEY)]);
        let out = Outgoing {
            message: &message,
            text: &text,
            body: b"",
            webhook_id: "m",
            timestamp: 0,
        };
        let request = prepare(&dest, &out).unwrap();
        assert_eq!(
            request.url,
            "https://api.opsgenie.com/v2/alerts/a%2Fb%3Fc/close?identifierType=alias"
        );
    }

    #[test]
    fn priority_maps_by_default_and_settings_override_it() {
        assert_eq!(default_priority(Severity::Sev2), "P2");
        assert_eq!(default_priority(Severity::Sev3), "P3");
        let (_, body) = render(MessageType::Page, &[("sev1", "P2")], None);
        assert_eq!(body["priority"], "P2");
    }

    #[test]
    fn fields_are_cut_to_their_limits() {
        let (_, body) = render(MessageType::Page, &[], Some("t".repeat(400)));
        let msg = body["message"].as_str().unwrap();
        assert_eq!(msg.chars().count(), MESSAGE_MAX);
        assert!(msg.ends_with(super::super::TRUNCATION_MARKER));
        let mut details = BTreeMap::new();
        details.insert("a", "v".repeat(9_000));
        details.insert("b", "w".repeat(10));
        let fitted = fit_details(details);
        let total: usize = fitted
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| k.len() + v.as_str().unwrap().chars().count())
            .sum();
        assert!(total <= DETAILS_MAX, "{total}");
    }

    #[test]
    fn outcomes_follow_the_alert_api() {
        assert_eq!(
            classify(&reply(202, r#"{"result":"Request will be processed"}"#)),
            Outcome::Delivered
        );
        for status in [400, 401, 403, 404, 422] {
            assert_eq!(
                classify(&reply(status, "")),
                Outcome::Terminal {
                    reason: TerminalReason::Status(status)
                }
            );
        }
        assert!(matches!(
            classify(&reply(429, "")),
            Outcome::Retry {
                reason: RetryReason::Status(429),
                ..
            }
        ));
        assert!(matches!(classify(&reply(503, "")), Outcome::Retry { .. }));
        assert!(classify(&reply(410, "")).disables_destination());
        let mut limited = reply(429, "");
        limited.retry_after = Some(std::time::Duration::from_secs(60));
        assert_eq!(
            classify(&limited),
            Outcome::Retry {
                after: Some(std::time::Duration::from_secs(60)),
                reason: RetryReason::Status(429)
            }
        );
    }
}
