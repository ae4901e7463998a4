//! `discord` destinations: a Discord webhook ("Execute Webhook"), posted
//! `content` (the title) and one embed (the explanation, severity, status
//! and burn rates as fields, a link to the incident), with
//! `allowed_mentions: {"parse": []}` so no text from an alert can ping
//! `@everyone`, a role or a user. Sent with `?wait=true`: Discord then
//! answers only once the message is saved, and reports a failure to save
//! instead of accepting the request and dropping it.

use std::time::Duration;

use serde_json::{Value as J, json};

use super::{Outgoing, PrepareError, burn_lines, fit, links, required, to_json};
use crate::deliver::backoff::{Outcome, RetryReason, TerminalReason, classify_status};
use crate::deliver::message::{IncidentStatus, MessageType};
use crate::deliver::sender::{Method, PreparedRequest, Reply};
use crate::model::Severity;
use crate::rules::Destination;

/// Longest `content`.
pub const CONTENT_MAX: usize = 2000;
/// Longest embed title.
pub const TITLE_MAX: usize = 256;
/// Longest embed description.
pub const DESCRIPTION_MAX: usize = 4096;
/// Most fields in one embed.
pub const FIELDS_MAX: usize = 25;
/// Longest field name.
pub const FIELD_NAME_MAX: usize = 256;
/// Longest field value.
pub const FIELD_VALUE_MAX: usize = 1024;
/// Most characters across every embed's title, description, fields and
/// footer together.
pub const EMBED_TOTAL_MAX: usize = 6000;

/// Discord's JSON error codes meaning the webhook no longer exists.
pub const GONE_CODES: &[u64] = &[10015, 50027];

/// Backslash-escapes Discord Markdown.
pub fn escape(c: char, out: &mut String) {
    if matches!(
        c,
        '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '#' | '[' | ']' | '(' | ')' | '-'
    ) {
        out.push('\\');
    }
    out.push(c);
}

/// Builds the message.
pub fn prepare(
    destination: &Destination,
    out: &Outgoing<'_>,
) -> Result<PreparedRequest, PrepareError> {
    let base = required(destination, "url")?;
    let mut url = reqwest::Url::parse(&base).map_err(|_| PrepareError::Invalid {
        key: "url",
        problem: "not an absolute URL".into(),
    })?;
    if !url.query_pairs().any(|(k, _)| k == "wait") {
        url.query_pairs_mut().append_pair("wait", "true");
    }
    let message = out.message;
    let status = match (message.kind, message.incident.status) {
        (MessageType::Acknowledge, _) => "acknowledged",
        (_, IncidentStatus::Resolved) => "resolved",
        _ => "open",
    };
    let color = match (status, message.incident.severity) {
        ("resolved", _) => 0x2E7D32,
        ("acknowledged", _) => 0x1976D2,
        (_, Severity::Sev1) => 0xD32F2F,
        (_, Severity::Sev2) => 0xF57C00,
        (_, Severity::Sev3) => 0xFBC02D,
    };
    let mut fields = vec![
        field("Severity", &message.incident.severity.to_string(), true),
        field("Status", status, true),
        field("Incident", &message.incident.id.to_string(), true),
    ];
    for line in burn_lines(message) {
        fields.push(field("Burn rate", &line, false));
    }
    for (label, link) in links(message).into_iter().skip(1) {
        fields.push(json!({"name": fit(&label, FIELD_NAME_MAX, escape), "value": fit(&link, FIELD_VALUE_MAX, super::plain), "inline": false}));
    }
    fields.truncate(FIELDS_MAX);
    let title = fit(&out.text.title, TITLE_MAX, escape);
    let footer = "sevroute";
    let fixed: usize = title.chars().count()
        + footer.len()
        + fields
            .iter()
            .map(|f| chars(&f["name"]) + chars(&f["value"]))
            .sum::<usize>();
    let room = EMBED_TOTAL_MAX.saturating_sub(fixed).min(DESCRIPTION_MAX);
    let mut embed = json!({
        "title": title,
        "description": fit(&out.text.body, room, escape),
        "color": color,
        "fields": fields,
        "footer": {"text": footer},
        "timestamp": message
            .occurred_at
            .to_offset(time::UtcOffset::UTC)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    });
    if let Some(link) = &message.incident.url {
        embed["url"] = json!(link);
    }
    let body = json!({
        "content": fit(&out.text.title, CONTENT_MAX, escape),
        "embeds": [embed],
        "allowed_mentions": {"parse": []},
    });
    Ok(PreparedRequest {
        method: Method::Post,
        url: url.to_string(),
        headers: Vec::new(),
        body: to_json(&body),
        secrets: Vec::new(),
    })
}

fn field(name: &str, value: &str, inline: bool) -> J {
    json!({"name": fit(name, FIELD_NAME_MAX, escape), "value": fit(value, FIELD_VALUE_MAX, escape), "inline": inline})
}

fn chars(value: &J) -> usize {
    value.as_str().map_or(0, |s| s.chars().count())
}

/// 200 or 204 is delivered; 429 is retried after the body's `retry_after`
/// (seconds, fractional), else the `Retry-After` header; an "Unknown
/// Webhook" (10015) or "Invalid Webhook Token" (50027) answer, or 410,
/// disables; other 4xx are dead letters; 5xx is retried.
pub fn classify(reply: &Reply) -> Outcome {
    let json: Option<J> = serde_json::from_slice(&reply.body).ok();
    let code = json.as_ref().and_then(|j| j["code"].as_u64());
    if reply.status == 429 {
        let after = json
            .as_ref()
            .and_then(|j| j["retry_after"].as_f64())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .map(|d| d.max(Duration::from_millis(1)))
            .or(reply.retry_after);
        return Outcome::Retry {
            after,
            reason: RetryReason::Status(429),
        };
    }
    if (400..500).contains(&reply.status) && code.is_some_and(|c| GONE_CODES.contains(&c)) {
        return Outcome::Terminal {
            reason: TerminalReason::Gone,
        };
    }
    classify_status(reply.status, reply.retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::message::tests::sample;
    use crate::deliver::text::builtin;
    use crate::deliver::vendor::tests::{assert_same_shape, destination, fixture, reply};
    use crate::rules::DestinationKind;

    const URL: &str = "https://discord.com/api/webhooks/1234567890/T0KENtokenT0KEN";

    fn render(message: &crate::deliver::WebhookMessage) -> (String, J) {
        let text = builtin(message);
        let dest = destination(DestinationKind::Discord, &[("url", URL)]);
        let out = Outgoing {
            message,
            text: &text,
            body: b"",
            webhook_id: "m",
            timestamp: 0,
        };
        let request = prepare(&dest, &out).unwrap();
        (request.url, serde_json::from_slice(&request.body).unwrap())
    }

    #[test]
    fn message_matches_the_documented_shape_field_by_field() {
        let mut message = sample();
        message.incident.url = Some("https://sevroute.example.com/api/v1/incidents/42".into());
        let (url, body) = render(&message);
        assert_eq!(url, format!("{URL}?wait=true"));
        assert_same_shape(&fixture("discord.json"), &body, "message", &[]);
        assert_eq!(
            body["content"],
            "\\[SEV1\\] Escalated: checkout burning fast"
        );
        assert_eq!(body["allowed_mentions"]["parse"], json!([]));
        let embed = &body["embeds"][0];
        assert_eq!(embed["title"], body["content"]);
        assert_eq!(
            embed["url"],
            "https://sevroute.example.com/api/v1/incidents/42"
        );
        assert_eq!(embed["color"], 0xD32F2F);
        assert_eq!(embed["fields"][0]["value"], "SEV1");
        assert_eq!(
            embed["fields"][3]["value"],
            "checkout\\-availability 1h: 22.1x"
        );
        assert_eq!(
            embed["fields"][5]["value"],
            "http://prometheus:9090/graph?g0.expr=up"
        );
        assert_eq!(embed["timestamp"], "2026-11-03T20:26:10Z");
        assert!(
            embed["description"]
                .as_str()
                .unwrap()
                .contains("22.1 \\> 14.4")
        );
    }

    #[test]
    fn mentions_cannot_ping_and_markdown_is_escaped() {
        let mut message = sample();
        message.incident.title = "@everyone **bold** `code`".into();
        let (_, body) = render(&message);
        assert_eq!(body["allowed_mentions"], json!({"parse": []}));
        assert_eq!(
            body["content"],
            "\\[SEV1\\] Escalated: @everyone \\*\\*bold\\*\\* \\`code\\`"
        );
    }

    #[test]
    fn limits_hold_for_huge_text() {
        let mut message = sample();
        message.incident.title = "t".repeat(3000);
        message.explanation = vec!["d".repeat(10_000)];
        let (_, body) = render(&message);
        assert_eq!(chars(&body["content"]), CONTENT_MAX);
        let embed = &body["embeds"][0];
        assert_eq!(chars(&embed["title"]), TITLE_MAX);
        assert!(chars(&embed["description"]) <= DESCRIPTION_MAX);
        let total = chars(&embed["title"])
            + chars(&embed["description"])
            + chars(&embed["footer"]["text"])
            + embed["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| chars(&f["name"]) + chars(&f["value"]))
                .sum::<usize>();
        assert!(total <= EMBED_TOTAL_MAX, "{total}");
        assert!(
            embed["description"]
                .as_str()
                .unwrap()
                .ends_with(super::super::TRUNCATION_MARKER)
        );
    }

    #[test]
    fn retry_after_in_the_body_is_the_retry_delay() {
        let limited = reply(
            429,
            r#"{"message":"You are being rate limited.","retry_after":1.5,"global":false}"#,
        );
        assert_eq!(
            classify(&limited),
            Outcome::Retry {
                after: Some(Duration::from_millis(1500)),
                reason: RetryReason::Status(429)
            }
        );
        let mut header_only = reply(429, "");
        header_only.retry_after = Some(Duration::from_secs(2));
        assert_eq!(
            classify(&header_only),
            Outcome::Retry {
                after: Some(Duration::from_secs(2)),
                reason: RetryReason::Status(429)
            }
        );
    }

    #[test]
    fn outcomes_follow_discord() {
        assert_eq!(classify(&reply(200, r#"{"id":"1"}"#)), Outcome::Delivered);
        assert_eq!(classify(&reply(204, "")), Outcome::Delivered);
        assert!(
            classify(&reply(
                404,
                r#"{"message": "Unknown Webhook", "code": 10015}"#
            ))
            .disables_destination()
        );
        assert!(
            classify(&reply(
                401,
                r#"{"message": "Invalid Webhook Token", "code": 50027}"#
            ))
            .disables_destination()
        );
        let bad = classify(&reply(
            400,
            r#"{"message": "Cannot send an empty message", "code": 50006}"#,
        ));
        assert_eq!(
            bad,
            Outcome::Terminal {
                reason: TerminalReason::Status(400)
            }
        );
        assert!(matches!(classify(&reply(502, "")), Outcome::Retry { .. }));
    }
}
