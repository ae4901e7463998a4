//! `teams` destinations: a Microsoft Teams Workflows webhook ("Post to a
//! channel when a webhook request is received"), posted a message whose one
//! attachment is an Adaptive Card 1.4: the title, a fact set (severity,
//! status, incident, burn rates), the explanation, and buttons linking to
//! the incident and the alert's source. Teams refuses messages over about
//! 28 KB, so the explanation is cut until the whole body fits.

use serde_json::{Value as J, json};

use super::{Outgoing, PrepareError, burn_lines, fit, links, required, to_json};
use crate::deliver::backoff::{Outcome, classify_status};
use crate::deliver::message::{IncidentStatus, MessageType};
use crate::deliver::sender::{Method, PreparedRequest, Reply};
use crate::model::Severity;
use crate::rules::Destination;

/// Largest body sent, in bytes (Teams' message limit is 28 KB).
pub const BODY_MAX_BYTES: usize = 28 * 1024;
/// Longest title kept.
pub const TITLE_MAX: usize = 256;
/// The Adaptive Card version: 1.4 renders in Teams on every client.
pub const CARD_VERSION: &str = "1.4";

/// Backslash-escapes the inline Markdown that Adaptive Card text blocks
/// render (emphasis, links, code), and doubles line breaks: a text block's
/// Markdown joins single-newline lines into one paragraph. Line-start list
/// markers are left alone, since plain lines rarely start with them.
pub fn escape(c: char, out: &mut String) {
    match c {
        '\\' | '*' | '_' | '[' | ']' | '`' | '~' => {
            out.push('\\');
            out.push(c);
        }
        '\n' => out.push_str("\n\n"),
        c => out.push(c),
    }
}

/// Builds the card.
pub fn prepare(
    destination: &Destination,
    out: &Outgoing<'_>,
) -> Result<PreparedRequest, PrepareError> {
    let url = required(destination, "url")?;
    // The card without the explanation is small (the title is cut to
    // TITLE_MAX), so shrinking the explanation always reaches the limit.
    // Shrinking in proportion to the excess (JSON escaping makes a
    // character cost one to six bytes) converges in a few rounds without
    // cutting much more than needed.
    let mut budget = out.text.body.chars().count() + 1;
    let body = loop {
        let bytes = to_json(&card(out, budget));
        if bytes.len() <= BODY_MAX_BYTES || budget == 0 {
            break bytes;
        }
        let scaled = budget.saturating_mul(BODY_MAX_BYTES) / bytes.len();
        budget = scaled.min(budget - 1);
    };
    Ok(PreparedRequest {
        method: Method::Post,
        url,
        headers: Vec::new(),
        body,
        secrets: Vec::new(),
    })
}

fn card(out: &Outgoing<'_>, body_chars: usize) -> J {
    let message = out.message;
    let status = match (message.kind, message.incident.status) {
        (MessageType::Acknowledge, _) => "acknowledged",
        (_, IncidentStatus::Resolved) => "resolved",
        _ => "open",
    };
    let color = match (status, message.incident.severity) {
        ("resolved", _) => "Good",
        ("acknowledged", _) => "Accent",
        (_, Severity::Sev1) => "Attention",
        (_, Severity::Sev2) => "Warning",
        (_, Severity::Sev3) => "Default",
    };
    let mut facts = vec![
        json!({"title": "Severity", "value": message.incident.severity.to_string()}),
        json!({"title": "Status", "value": status}),
        json!({"title": "Incident", "value": message.incident.id.to_string()}),
    ];
    for line in burn_lines(message) {
        facts.push(json!({"title": "Burn", "value": fit(&line, 200, escape)}));
    }
    let mut body = vec![
        json!({"type": "TextBlock", "text": fit(&out.text.title, TITLE_MAX, escape), "weight": "Bolder", "size": "Medium", "color": color, "wrap": true}),
        json!({"type": "FactSet", "facts": facts}),
    ];
    if !out.text.body.is_empty() {
        body.push(json!({"type": "TextBlock", "text": fit(&out.text.body, body_chars, escape), "wrap": true}));
    }
    let actions: Vec<J> = links(message)
        .into_iter()
        .map(|(label, url)| json!({"type": "Action.OpenUrl", "title": label, "url": url}))
        .collect();
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": CARD_VERSION,
                "msteams": {"width": "Full"},
                "body": body,
                "actions": actions,
            },
        }],
    })
}

/// Workflows answers 202 (any 2xx is delivered); the generic rules apply
/// otherwise: 429 and 5xx retried, 410 disables, other 4xx dead letters.
pub fn classify(reply: &Reply) -> Outcome {
    classify_status(reply.status, reply.retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::backoff::TerminalReason;
    use crate::deliver::message::tests::sample;
    use crate::deliver::text::builtin;
    use crate::deliver::vendor::tests::{assert_same_shape, destination, fixture, reply};
    use crate::rules::DestinationKind;

    fn render(message: &crate::deliver::WebhookMessage) -> (usize, J) {
        let text = builtin(message);
        let dest = destination(
            DestinationKind::Teams,
            &[("url", "https://example.webhook.office.com/workflows/abc")],
        );
        let out = Outgoing {
            message,
            text: &text,
            body: b"",
            webhook_id: "m",
            timestamp: 0,
        };
        let request = prepare(&dest, &out).unwrap();
        (
            request.body.len(),
            serde_json::from_slice(&request.body).unwrap(),
        )
    }

    #[test]
    fn card_matches_the_documented_envelope_field_by_field() {
        let mut message = sample();
        message.incident.url = Some("https://sevroute.example.com/api/v1/incidents/42".into());
        let (_, body) = render(&message);
        assert_same_shape(&fixture("teams.json"), &body, "message", &[]);
        assert_eq!(body["type"], "message");
        let attachment = &body["attachments"][0];
        assert_eq!(
            attachment["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        let card = &attachment["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["version"], "1.4");
        assert_eq!(
            card["body"][0]["text"],
            "\\[SEV1\\] Escalated: checkout burning fast"
        );
        assert_eq!(card["body"][0]["color"], "Attention");
        assert_eq!(card["body"][1]["facts"][0]["value"], "SEV1");
        assert_eq!(
            card["body"][1]["facts"][3]["value"],
            "checkout-availability 1h: 22.1x"
        );
        let explanation = card["body"][2]["text"].as_str().unwrap();
        assert!(explanation.contains("22.1 > 14.4"), "{explanation}");
        // Each line is its own paragraph, as text-block Markdown needs.
        assert!(
            explanation.starts_with("escalated from SEV3 to SEV1: checkout burning fast\n\nrule "),
            "{explanation}"
        );
        assert_eq!(
            card["actions"][0]["url"],
            "https://sevroute.example.com/api/v1/incidents/42"
        );
        assert_eq!(card["actions"][0]["type"], "Action.OpenUrl");
    }

    #[test]
    fn a_huge_explanation_is_cut_to_fit_the_body_limit() {
        let mut message = sample();
        message.explanation = vec!["\"quoted\" é ".repeat(20_000)];
        let (len, body) = render(&message);
        assert!(len <= BODY_MAX_BYTES, "{len}");
        assert!(len > BODY_MAX_BYTES - 2048, "cut far too much: {len}");
        let text = body["attachments"][0]["content"]["body"][2]["text"]
            .as_str()
            .unwrap();
        assert!(text.ends_with(super::super::TRUNCATION_MARKER));
    }

    #[test]
    fn outcomes_are_the_generic_ones() {
        assert_eq!(classify(&reply(202, "")), Outcome::Delivered);
        assert_eq!(
            classify(&reply(400, "bad card")),
            Outcome::Terminal {
                reason: TerminalReason::Status(400)
            }
        );
        assert!(matches!(classify(&reply(429, "")), Outcome::Retry { .. }));
        assert!(matches!(classify(&reply(502, "")), Outcome::Retry { .. }));
        assert!(classify(&reply(410, "")).disables_destination());
    }
}
