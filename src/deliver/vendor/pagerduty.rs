//! `pagerduty` destinations: PagerDuty Events API v2. Pages, escalations
//! and notices `trigger` an alert whose `dedup_key` is the incident's key,
//! so every message about one incident lands on one PagerDuty alert; an
//! acknowledgement sends `acknowledge`, a resolve sends `resolve`.

use serde_json::{Map, Value as J, json};

use super::{Outgoing, PrepareError, burn_lines, cut, dedup_key, required, text_setting, to_json};
use crate::deliver::backoff::{Outcome, classify_status};
use crate::deliver::message::MessageType;
use crate::deliver::sender::{Method, PreparedRequest, Reply};
use crate::model::Severity;
use crate::rules::Destination;

/// The Events API v2 endpoint.
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// Longest `payload.summary`.
pub const SUMMARY_MAX: usize = 1024;
/// Longest `dedup_key`.
pub const DEDUP_KEY_MAX: usize = 255;
/// Longest `payload.source` (PagerDuty truncates longer values; we cut).
pub const SOURCE_MAX: usize = 255;

/// The event severity for a sevroute severity, unless the destination's
/// `sev1`/`sev2`/`sev3` setting says otherwise.
pub fn default_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Sev1 => "critical",
        Severity::Sev2 => "error",
        Severity::Sev3 => "warning",
    }
}

/// Builds the event.
pub fn prepare(
    destination: &Destination,
    out: &Outgoing<'_>,
) -> Result<PreparedRequest, PrepareError> {
    let routing_key = required(destination, "routing_key")?;
    let url = text_setting(destination, "url")?.unwrap_or_else(|| DEFAULT_URL.to_string());
    let message = out.message;
    let dedup = dedup_key(message, DEDUP_KEY_MAX);
    let action = match message.kind {
        MessageType::Resolve => "resolve",
        MessageType::Acknowledge => "acknowledge",
        MessageType::Page
        | MessageType::Escalate
        | MessageType::Notify
        | MessageType::UpdateDue => "trigger",
    };
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup,
    });
    if action == "trigger" {
        let severity_key = match message.incident.severity {
            Severity::Sev1 => "sev1",
            Severity::Sev2 => "sev2",
            Severity::Sev3 => "sev3",
        };
        let severity = text_setting(destination, severity_key)?
            .unwrap_or_else(|| default_severity(message.incident.severity).to_string());
        let source = text_setting(destination, "source")?.unwrap_or_else(|| "sevroute".to_string());
        let mut details = Map::new();
        details.insert("incident_id".into(), json!(message.incident.id));
        details.insert("incident_key".into(), json!(message.incident.key));
        details.insert(
            "severity".into(),
            json!(message.incident.severity.to_string()),
        );
        details.insert("type".into(), json!(message.kind.as_str()));
        details.insert("reason".into(), json!(message.reason));
        details.insert("explanation".into(), json!(message.explanation));
        details.insert("burn".into(), json!(message.burn));
        details.insert("burn_summary".into(), json!(burn_lines(message)));
        details.insert("text".into(), json!(out.text.body));
        let mut payload = json!({
            "summary": cut(&out.text.title, SUMMARY_MAX),
            "source": cut(&source, SOURCE_MAX),
            "severity": severity,
            "timestamp": time_text(message.occurred_at),
            "custom_details": J::Object(details),
        });
        let first_alert = message.alerts.first();
        if let Some(service) = first_alert.and_then(|a| a.labels.get("service")) {
            payload["component"] = json!(service);
        }
        if let Some(name) = first_alert.and_then(|a| a.labels.get("alertname")) {
            payload["class"] = json!(name);
        }
        event["payload"] = payload;
        let mut links = Vec::new();
        if let Some(url) = &message.incident.url {
            links.push(
                json!({"href": url, "text": format!("sevroute incident {}", message.incident.id)}),
            );
            event["client"] = json!("sevroute");
            event["client_url"] = json!(url);
        }
        for alert in &message.alerts {
            if let Some(url) = &alert.generator_url {
                let name = alert.labels.get("alertname").unwrap_or("alert");
                let link = json!({"href": url, "text": format!("{name} at its source")});
                if !links.contains(&link) {
                    links.push(link);
                }
            }
        }
        event["links"] = J::Array(links);
    }
    Ok(PreparedRequest {
        method: Method::Post,
        url,
        headers: Vec::new(),
        body: to_json(&event),
        secrets: vec![routing_key],
    })
}

/// 202 (any 2xx) is accepted; 400 is an invalid event, never retried;
/// 429 and 5xx are retried (PagerDuty asks for backoff on both).
pub fn classify(reply: &Reply) -> Outcome {
    classify_status(reply.status, reply.retry_after)
}

fn time_text(at: time::OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::backoff::{RetryReason, TerminalReason};
    use crate::deliver::message::tests::sample;
    use crate::deliver::text::builtin;
    use crate::deliver::vendor::tests::{assert_same_shape, destination, fixture, reply};
    use crate::rules::DestinationKind;

    const KEY: &str = "R0UT1NGKEYR0UT1NGKEYR0UT1NGKEY12";

    fn render(kind: MessageType, settings: &[(&str, &str)]) -> (PreparedRequest, J) {
        let mut message = sample();
        message.kind = kind;
        message.incident.url = Some("https://sevroute.example.com/api/v1/incidents/42".into());
        let text = builtin(&message);
        let body = message.to_body().unwrap();
        let mut all = vec![("routing_key", KEY)];
        all.extend_from_slice(settings);
        let dest = destination(DestinationKind::PagerDuty, &all);
        let out = Outgoing {
            message: &message,
            text: &text,
            body: &body,
            webhook_id: &message.id,
            timestamp: 0,
        };
        let request = prepare(&dest, &out).unwrap();
        let value = serde_json::from_slice(&request.body).unwrap();
        (request, value)
    }

    #[test]
    fn trigger_matches_the_documented_event_field_by_field() {
        let (request, event) = render(MessageType::Page, &[]);
        assert_eq!(request.url, DEFAULT_URL);
        assert_same_shape(
            &fixture("pagerduty-trigger.json"),
            &event,
            "event",
            &["event.payload.custom_details"],
        );
        assert_eq!(event["routing_key"], KEY);
        assert_eq!(event["event_action"], "trigger");
        assert_eq!(event["dedup_key"], sample().incident.key);
        assert_eq!(event["payload"]["summary"], builtin(&sample_page()).title);
        assert_eq!(event["payload"]["severity"], "critical");
        assert_eq!(event["payload"]["source"], "sevroute");
        assert_eq!(event["payload"]["timestamp"], "2026-11-03T20:26:10Z");
        assert_eq!(event["payload"]["component"], "checkout");
        assert_eq!(event["payload"]["class"], "CheckoutErrorBudgetBurn");
        let details = &event["payload"]["custom_details"];
        assert_eq!(details["explanation"][0], sample().explanation[0]);
        assert_eq!(details["burn"][0]["rate"], 22.1);
        assert_eq!(details["burn_summary"][1], "checkout-availability 5m: 31x");
        assert_eq!(
            event["links"][0]["href"],
            "https://sevroute.example.com/api/v1/incidents/42"
        );
        assert_eq!(
            event["links"][1]["href"],
            "http://prometheus:9090/graph?g0.expr=up"
        );
        assert_eq!(event["client_url"], event["links"][0]["href"]);
        // The key is scrubbed from anything the attempt reports.
        assert_eq!(request.secrets, vec![KEY.to_string()]);
        assert!(!format!("{request:?}").contains(KEY));
    }

    fn sample_page() -> crate::deliver::WebhookMessage {
        let mut m = sample();
        m.kind = MessageType::Page;
        m
    }

    #[test]
    fn severity_maps_by_default_and_settings_override_it() {
        assert_eq!(default_severity(Severity::Sev2), "error");
        assert_eq!(default_severity(Severity::Sev3), "warning");
        let (_, event) = render(
            MessageType::Page,
            &[("sev1", "error"), ("source", "prod-eu")],
        );
        assert_eq!(event["payload"]["severity"], "error");
        assert_eq!(event["payload"]["source"], "prod-eu");
    }

    #[test]
    fn acknowledge_and_resolve_carry_only_the_key() {
        for (kind, action, file) in [
            (
                MessageType::Acknowledge,
                "acknowledge",
                "pagerduty-acknowledge.json",
            ),
            (MessageType::Resolve, "resolve", "pagerduty-resolve.json"),
        ] {
            let (_, event) = render(kind, &[]);
            let doc = fixture(file);
            assert_same_shape(&doc, &event, "event", &["event.payload.custom_details"]);
            assert_eq!(event["event_action"], action);
            assert_eq!(event["dedup_key"], sample().incident.key);
            assert_eq!(event.as_object().unwrap().len(), 3, "{event}");
        }
    }

    #[test]
    fn a_long_title_is_cut_to_the_summary_limit() {
        let mut message = sample();
        message.incident.title = "x".repeat(5000);
        let text = builtin(&message);
        let body = message.to_body().unwrap();
        let dest = destination(
            DestinationKind::PagerDuty,
            &[("routing_key", KEY), ("url", "http://127.0.0.1:9/e")],
        );
        let out = Outgoing {
            message: &message,
            text: &text,
            body: &body,
            webhook_id: "m",
            timestamp: 0,
        };
        let request = prepare(&dest, &out).unwrap();
        assert_eq!(request.url, "http://127.0.0.1:9/e");
        let event: J = serde_json::from_slice(&request.body).unwrap();
        let summary = event["payload"]["summary"].as_str().unwrap();
        assert_eq!(summary.chars().count(), SUMMARY_MAX);
        assert!(summary.ends_with(super::super::TRUNCATION_MARKER));
    }

    #[test]
    fn outcomes_follow_the_events_api() {
        assert_eq!(
            classify(&reply(202, r#"{"status":"success"}"#)),
            Outcome::Delivered
        );
        assert_eq!(
            classify(&reply(400, r#"{"status":"invalid event"}"#)),
            Outcome::Terminal {
                reason: TerminalReason::Status(400)
            }
        );
        for status in [429, 500, 502, 503] {
            assert!(
                matches!(classify(&reply(status, "")), Outcome::Retry { reason: RetryReason::Status(s), .. } if s == status),
                "{status}"
            );
        }
        // PagerDuty's Retry-After, when it sends one, is the delay; 410
        // (the integration was removed) disables.
        let mut limited = reply(429, r#"{"status":"throttle event"}"#);
        limited.retry_after = Some(std::time::Duration::from_secs(20));
        assert_eq!(
            classify(&limited),
            Outcome::Retry {
                after: Some(std::time::Duration::from_secs(20)),
                reason: RetryReason::Status(429)
            }
        );
        assert!(classify(&reply(410, "")).disables_destination());
        assert!(!classify(&reply(400, "")).disables_destination());
    }

    #[test]
    fn an_unset_routing_key_names_the_variable_only() {
        let dest = Destination {
            name: "pd".into(),
            kind: DestinationKind::PagerDuty,
            settings: vec![(
                "routing_key".into(),
                crate::rules::Value::Secret {
                    var: "PD_KEY".into(),
                    value: None,
                },
            )],
        };
        let message = sample();
        let text = builtin(&message);
        let out = Outgoing {
            message: &message,
            text: &text,
            body: b"",
            webhook_id: "m",
            timestamp: 0,
        };
        assert_eq!(
            prepare(&dest, &out).unwrap_err().to_string(),
            "environment variable PD_KEY was not set when the rules were loaded"
        );
    }
}
