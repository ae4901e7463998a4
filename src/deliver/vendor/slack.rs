//! `slack` destinations: a Slack incoming webhook, posted a Block Kit
//! message (a header with the title, severity and status, the explanation,
//! the burn rates, links) with a plain `text` fallback for notifications.
//! Slack answers `ok`, or an error string that says what is wrong; the
//! strings meaning the channel or the hook is gone disable the destination.

use serde_json::{Value as J, json};

use super::{Outgoing, PrepareError, burn_lines, fit, links, plain, required, to_json};
use crate::deliver::backoff::{Outcome, RetryReason, TerminalReason, classify_status};
use crate::deliver::sender::{Method, PreparedRequest, Reply};
use crate::rules::Destination;

/// Longest text of a section block.
pub const SECTION_TEXT_MAX: usize = 3000;
/// Longest text of a header block.
pub const HEADER_TEXT_MAX: usize = 150;
/// Longest text of a section field.
pub const FIELD_TEXT_MAX: usize = 2000;
/// Most blocks in one message.
pub const BLOCKS_MAX: usize = 50;
/// Longest top-level `text` kept (Slack truncates beyond 40,000 and advises
/// about 4,000 for readability).
pub const TEXT_MAX: usize = 4000;

/// Answers meaning the channel, the workspace or the hook is gone: sending
/// again cannot help, so the destination is disabled.
pub const GONE_ERRORS: &[&str] = &[
    "channel_not_found",
    "channel_is_archived",
    "no_service",
    "no_service_id",
    "no_active_hooks",
    "invalid_token",
    "team_disabled",
    "no_team",
    "token_revoked",
];

/// Answers meaning this request (or a workspace policy) is refused: a dead
/// letter at once, the destination stays enabled.
pub const REFUSED_ERRORS: &[&str] = &[
    "invalid_payload",
    "invalid_blocks",
    "invalid_blocks_format",
    "too_many_attachments",
    "action_prohibited",
    "posting_to_general_channel_denied",
    "user_not_found",
    "missing_text_or_fallback_or_attachments",
];

/// Escapes Slack's mrkdwn control characters `&`, `<` and `>`.
pub fn escape(c: char, out: &mut String) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        c => out.push(c),
    }
}

/// Builds the message.
pub fn prepare(
    destination: &Destination,
    out: &Outgoing<'_>,
) -> Result<PreparedRequest, PrepareError> {
    let url = required(destination, "url")?;
    let message = out.message;
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": fit(&out.text.title, HEADER_TEXT_MAX, plain), "emoji": false}}),
        json!({"type": "section", "fields": [
            {"type": "mrkdwn", "text": fit(&format!("*Severity*\n{}", message.incident.severity), FIELD_TEXT_MAX, plain)},
            {"type": "mrkdwn", "text": fit(&format!("*Status*\n{}", status_word(message)), FIELD_TEXT_MAX, plain)},
        ]}),
    ];
    if !out.text.body.is_empty() {
        blocks.push(section(&out.text.body));
    }
    let burn = burn_lines(message);
    if !burn.is_empty() {
        let lines: Vec<String> = burn.iter().map(|l| format!("• {l}")).collect();
        blocks.push(section_raw(&format!(
            "*Burn rates*\n{}",
            escaped(&lines.join("\n"))
        )));
    }
    let links = links(message);
    if !links.is_empty() {
        let elements: Vec<J> = links
            .iter()
            .map(|(label, url)| json!({"type": "mrkdwn", "text": format!("<{}|{}>", escaped(url), escaped(label).replace('|', "¦"))}))
            .take(10) // a context block holds at most 10 elements
            .collect();
        blocks.push(json!({"type": "context", "elements": elements}));
    }
    blocks.truncate(BLOCKS_MAX);
    let fallback = if out.text.body.is_empty() {
        out.text.title.clone()
    } else {
        format!("{}\n{}", out.text.title, out.text.body)
    };
    let body = json!({
        "text": fit(&fallback, TEXT_MAX, escape),
        "blocks": blocks,
    });
    Ok(PreparedRequest {
        method: Method::Post,
        url,
        headers: Vec::new(),
        body: to_json(&body),
        secrets: Vec::new(),
    })
}

/// `open`, `resolved` or `acknowledged`, as the message reads.
fn status_word(message: &crate::deliver::WebhookMessage) -> &'static str {
    match (message.kind, message.incident.status) {
        (crate::deliver::message::MessageType::Acknowledge, _) => "acknowledged",
        (_, crate::deliver::message::IncidentStatus::Resolved) => "resolved",
        _ => "open",
    }
}

fn escaped(text: &str) -> String {
    fit(text, usize::MAX, escape)
}

/// A section of plain words, escaped and cut to the limit.
fn section(text: &str) -> J {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": fit(text, SECTION_TEXT_MAX, escape)}})
}

/// A section of mrkdwn already escaped.
fn section_raw(mrkdwn: &str) -> J {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": fit(mrkdwn, SECTION_TEXT_MAX, plain)}})
}

/// `ok` (any 2xx) is delivered; `rate_limited` or 429 is retried after its
/// `Retry-After`; the "gone" family disables; the "refused" family and
/// other 4xx are dead letters; 5xx is retried.
pub fn classify(reply: &Reply) -> Outcome {
    let answer = reply.text();
    if GONE_ERRORS.contains(&answer.as_str()) {
        return Outcome::Terminal {
            reason: TerminalReason::Gone,
        };
    }
    if answer == "rate_limited" || reply.status == 429 {
        return Outcome::Retry {
            after: reply.retry_after,
            reason: RetryReason::Status(reply.status),
        };
    }
    if REFUSED_ERRORS.contains(&answer.as_str()) {
        let status = if (400..500).contains(&reply.status) {
            reply.status
        } else {
            400
        };
        return Outcome::Terminal {
            reason: TerminalReason::Status(status),
        };
    }
    classify_status(reply.status, reply.retry_after)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::deliver::message::MessageType;
    use crate::deliver::message::tests::sample;
    use crate::deliver::text::builtin;
    use crate::deliver::vendor::tests::{assert_same_shape, destination, fixture, reply};
    use crate::rules::DestinationKind;

    const URL: &str = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX";

    fn render(message: &crate::deliver::WebhookMessage) -> J {
        let text = builtin(message);
        let dest = destination(DestinationKind::Slack, &[("url", URL)]);
        let out = Outgoing {
            message,
            text: &text,
            body: b"",
            webhook_id: "m",
            timestamp: 0,
        };
        let request = prepare(&dest, &out).unwrap();
        assert_eq!(request.url, URL);
        serde_json::from_slice(&request.body).unwrap()
    }

    #[test]
    fn message_matches_the_documented_blocks_field_by_field() {
        let mut message = sample();
        message.incident.url = Some("https://sevroute.example.com/api/v1/incidents/42".into());
        let body = render(&message);
        assert_same_shape(&fixture("slack.json"), &body, "message", &[]);
        assert_eq!(body["blocks"][0]["type"], "header");
        assert_eq!(
            body["blocks"][0]["text"]["text"],
            "[SEV1] Escalated: checkout burning fast"
        );
        assert_eq!(body["blocks"][1]["fields"][0]["text"], "*Severity*\nSEV1");
        assert_eq!(body["blocks"][1]["fields"][1]["text"], "*Status*\nopen");
        let explanation = body["blocks"][2]["text"]["text"].as_str().unwrap();
        assert!(
            explanation.starts_with("escalated from SEV3 to SEV1"),
            "{explanation}"
        );
        // The explanation's `>` is escaped for mrkdwn.
        assert!(explanation.contains("22.1 &gt; 14.4"), "{explanation}");
        assert_eq!(
            body["blocks"][3]["text"]["text"],
            "*Burn rates*\n• checkout-availability 1h: 22.1x\n• checkout-availability 5m: 31x"
        );
        assert_eq!(
            body["blocks"][4]["elements"][0]["text"],
            "<https://sevroute.example.com/api/v1/incidents/42|Incident 42>"
        );
        assert_eq!(
            body["blocks"][4]["elements"][1]["text"],
            "<http://prometheus:9090/graph?g0.expr=up|Source: CheckoutErrorBudgetBurn>"
        );
        assert!(
            body["text"]
                .as_str()
                .unwrap()
                .starts_with("[SEV1] Escalated")
        );
    }

    #[test]
    fn acknowledge_shows_who_acknowledged() {
        let mut message = sample();
        message.kind = MessageType::Acknowledge;
        message.reason = Some("acknowledged by alice".into());
        let body = render(&message);
        assert_eq!(
            body["blocks"][0]["text"]["text"],
            "[SEV1] Acknowledged: checkout burning fast"
        );
        assert_eq!(
            body["blocks"][1]["fields"][1]["text"],
            "*Status*\nacknowledged"
        );
        assert!(
            body["blocks"][2]["text"]["text"]
                .as_str()
                .unwrap()
                .starts_with("acknowledged by alice")
        );
    }

    #[test]
    fn markup_is_escaped_and_long_text_is_cut_with_a_marker() {
        let mut message = sample();
        message.incident.title = "a <b> & c ".repeat(40);
        message.reason = Some("<!channel> & ".repeat(500));
        let body = render(&message);
        let header = body["blocks"][0]["text"]["text"].as_str().unwrap();
        // Header text is plain_text: not escaped, but cut.
        assert_eq!(header.chars().count(), HEADER_TEXT_MAX);
        assert!(header.ends_with(super::super::TRUNCATION_MARKER));
        let section = body["blocks"][2]["text"]["text"].as_str().unwrap();
        assert!(section.chars().count() <= SECTION_TEXT_MAX);
        assert!(section.ends_with(super::super::TRUNCATION_MARKER));
        assert!(section.starts_with("&lt;!channel&gt; &amp; "), "{section}");
        assert!(!section.contains("<!channel>"));
        let text = body["text"].as_str().unwrap();
        assert!(text.chars().count() <= TEXT_MAX);
        assert!(!text.contains('<'));
        assert!(body["blocks"].as_array().unwrap().len() <= BLOCKS_MAX);
    }

    #[test]
    fn ok_is_delivered() {
        assert_eq!(classify(&reply(200, "ok")), Outcome::Delivered);
    }

    #[test]
    fn the_gone_family_disables_the_destination() {
        for (status, answer) in [
            (404, "channel_not_found"),
            (410, "channel_is_archived"),
            (404, "no_service"),
            (410, "no_active_hooks"),
            (403, "invalid_token"),
            (400, "no_service_id"),
            (403, "team_disabled"),
        ] {
            let outcome = classify(&reply(status, answer));
            assert!(outcome.disables_destination(), "{answer}: {outcome:?}");
        }
    }

    #[test]
    fn refused_requests_are_dead_letters_without_disabling() {
        for (status, answer) in [
            (400, "invalid_payload"),
            (400, "too_many_attachments"),
            (403, "action_prohibited"),
            (403, "posting_to_general_channel_denied"),
            (200, "invalid_blocks"),
        ] {
            let outcome = classify(&reply(status, answer));
            assert!(
                matches!(
                    outcome,
                    Outcome::Terminal {
                        reason: TerminalReason::Status(_)
                    }
                ),
                "{answer}: {outcome:?}"
            );
            assert!(!outcome.disables_destination());
        }
    }

    #[test]
    fn rate_limits_and_server_errors_are_retried() {
        let mut limited = reply(429, "rate_limited");
        limited.retry_after = Some(Duration::from_secs(30));
        assert_eq!(
            classify(&limited),
            Outcome::Retry {
                after: Some(Duration::from_secs(30)),
                reason: RetryReason::Status(429)
            }
        );
        assert!(matches!(classify(&reply(500, "")), Outcome::Retry { .. }));
        assert!(matches!(
            classify(&reply(503, "service unavailable")),
            Outcome::Retry { .. }
        ));
    }
}
