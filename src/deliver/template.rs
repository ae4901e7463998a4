//! Rendering message templates: a destination's `title`/`text` templates
//! (compiled with the rule set, `crate::rules::template`) over one
//! [`WebhookMessage`], giving the [`MessageText`] that a vendor format then
//! places and escapes. Pure: no I/O, no clock.
//!
//! A template that fails while rendering, or renders only whitespace,
//! gives way to the built-in words for that part, so the message is still
//! sent; the failure is returned beside the text for the caller to log (a
//! warning) and count. The variables are documented in `docs/templates.md`.

use std::collections::BTreeMap;

use serde::Serialize;
use time::UtcOffset;
use time::format_description::well_known::Rfc3339;

use crate::deliver::message::{MessageAlert, MessageIncident, MessageType, WebhookMessage};
use crate::deliver::text::{self, MessageText};
use crate::model::StrMap;
use crate::rules::template::{MessageTemplates, TextPart};

/// Longest rendered title kept, in bytes; vendor formats cut further to
/// their own limits.
pub const MAX_TITLE_BYTES: usize = 1024;

/// Longest rendered body text kept, in bytes.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;

/// Marks text cut at its bound.
pub const TRUNCATION_MARKER: &str = "…";

/// A message's words, and the templates that failed on the way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// The words to send: each part from its template, or built in.
    pub text: MessageText,
    /// Templates that failed and were replaced by the built-in words.
    pub failures: Vec<TemplateFailure>,
}

/// One template that could not be used for one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateFailure {
    /// The destination whose template failed.
    pub destination: String,
    /// The setting holding the template (`title`, `text_sev1`, ...).
    pub setting: &'static str,
    /// What went wrong, safe to log (templates see no secrets).
    pub error: String,
}

/// The variables a template sees (documented in `docs/templates.md`).
#[derive(Serialize)]
struct Context<'m> {
    id: &'m str,
    #[serde(rename = "type")]
    kind: MessageType,
    occurred_at: String,
    destination: &'m str,
    incident: &'m MessageIncident,
    alerts: &'m [MessageAlert],
    common_labels: BTreeMap<&'m str, &'m str>,
    common_annotations: BTreeMap<&'m str, &'m str>,
    explanation: &'m [String],
    reason: Option<&'m str>,
    builtin: Builtin<'m>,
}

/// The built-in words, so a template can add to them rather than restate.
#[derive(Serialize)]
struct Builtin<'m> {
    title: &'m str,
    text: &'m str,
}

/// The words of `message` for `destination`: each part from the
/// destination's template for the incident's severity when it has one
/// that renders, else built in.
pub fn render(
    templates: &MessageTemplates,
    destination: &str,
    message: &WebhookMessage,
) -> Rendered {
    let builtin = text::builtin(message);
    let mut rendered = Rendered {
        text: builtin.clone(),
        failures: Vec::new(),
    };
    if templates.is_empty() {
        return rendered;
    }
    let context = minijinja::Value::from(minijinja::value::Serde(Context {
        id: &message.id,
        kind: message.kind,
        occurred_at: rfc3339(message.occurred_at),
        destination,
        incident: &message.incident,
        alerts: &message.alerts,
        common_labels: common(message.alerts.iter().map(|a| &a.labels)),
        common_annotations: common(message.alerts.iter().map(|a| &a.annotations)),
        explanation: &message.explanation,
        reason: message.reason.as_deref(),
        builtin: Builtin {
            title: &builtin.title,
            text: &builtin.body,
        },
    }));
    for part in TextPart::ALL {
        let Some((setting, template)) =
            templates.select(destination, part, message.incident.severity)
        else {
            continue;
        };
        let result = template.render(&context).map_err(|e| e.to_string());
        let words = match result {
            Ok(words) if !words.trim().is_empty() => words,
            Ok(_) => {
                rendered.failures.push(TemplateFailure {
                    destination: destination.to_string(),
                    setting,
                    error: "rendered empty".to_string(),
                });
                continue;
            }
            Err(error) => {
                rendered.failures.push(TemplateFailure {
                    destination: destination.to_string(),
                    setting,
                    error,
                });
                continue;
            }
        };
        match part {
            TextPart::Title => {
                // A title is one line: vendors show only the first anyway.
                let line = words.trim().lines().next().unwrap_or_default();
                rendered.text.title = bounded(line, MAX_TITLE_BYTES);
            }
            TextPart::Text => rendered.text.body = bounded(words.trim_end(), MAX_TEXT_BYTES),
        }
    }
    rendered
}

/// The label (or annotation) pairs every alert shares, as Alertmanager's
/// `commonLabels`; empty without alerts.
fn common<'m>(mut maps: impl Iterator<Item = &'m StrMap>) -> BTreeMap<&'m str, &'m str> {
    let Some(first) = maps.next() else {
        return BTreeMap::new();
    };
    let mut shared: BTreeMap<&str, &str> = first.iter().collect();
    for map in maps {
        shared.retain(|k, v| map.get(k).is_some_and(|other| other == *v));
    }
    shared
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// `text` cut to at most `max` bytes at a character boundary, ending in
/// the marker when cut.
fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max - TRUNCATION_MARKER.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{TRUNCATION_MARKER}", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::message::tests::sample;
    use crate::model::Severity;

    fn templates(settings: &[(&str, &str)]) -> MessageTemplates {
        let mut templates = MessageTemplates::new();
        for (setting, source) in settings {
            templates.add("chat", setting, source).expect("compiles");
        }
        templates
    }

    #[test]
    fn without_templates_the_text_is_built_in() {
        let message = sample();
        let rendered = render(&MessageTemplates::new(), "chat", &message);
        assert_eq!(rendered.text, text::builtin(&message));
        assert!(rendered.failures.is_empty());
    }

    #[test]
    fn every_documented_variable_renders() {
        let mut message = sample();
        message.incident.url = Some("https://sevroute.example.com/incidents/42".to_string());
        let text = [
            "id={{ id }}",
            "type={{ type }}",
            "occurred_at={{ occurred_at }}",
            "destination={{ destination }}",
            "incident={{ incident.id }}|{{ incident.key }}|{{ incident.title }}|{{ incident.severity }}|{{ incident.status }}|{{ incident.url }}|{{ incident.opened_at }}",
            "{% for a in alerts %}alert={{ a.fingerprint }}|{{ a.status }}|{{ a.labels.alertname }}|{{ a.annotations.summary }}|{{ a.starts_at }}|{{ a.ends_at }}|{{ a.generator_url }}{% endfor %}",
            "common_labels={{ common_labels | pairs }}",
            "common_annotations={{ common_annotations.summary }}",
            "explanation={{ explanation | join('; ') }}",
            "reason={{ reason }}",
            "builtin={{ builtin.title }}",
            "builtin_text={{ builtin.text | truncate(20) }}",
        ]
        .join("\n");
        let templates = templates(&[
            (
                "title",
                "{{ incident.severity }} {{ incident.title | upper }}",
            ),
            ("text", &text),
        ]);
        let rendered = render(&templates, "chat", &message);
        assert!(rendered.failures.is_empty(), "{:?}", rendered.failures);
        assert_eq!(rendered.text.title, "SEV1 CHECKOUT BURNING FAST");

        let alert = &message.alerts[0];
        let builtin = text::builtin(&message);
        let expected = [
            format!("id={}", message.id),
            "type=escalate".to_string(),
            // Given at +01:00, shown in UTC.
            "occurred_at=2026-11-03T20:26:10Z".to_string(),
            "destination=chat".to_string(),
            format!(
                "incident=42|{}|checkout burning fast|SEV1|open|https://sevroute.example.com/incidents/42|2026-11-03T20:21:40Z",
                message.incident.key
            ),
            format!(
                "alert={}|firing|CheckoutErrorBudgetBurn|Checkout is burning its error budget 22x|2026-11-03T20:21:10.5Z||{}",
                alert.fingerprint,
                alert.generator_url.as_deref().unwrap()
            ),
            "common_labels=alertname=CheckoutErrorBudgetBurn, service=checkout, severity=critical"
                .to_string(),
            "common_annotations=Checkout is burning its error budget 22x".to_string(),
            format!("explanation={}", message.explanation.join("; ")),
            format!("reason={}", message.reason.as_deref().unwrap()),
            format!("builtin={}", builtin.title),
            format!(
                "builtin_text={}…",
                builtin.body.chars().take(19).collect::<String>()
            ),
        ];
        let lines: Vec<&str> = rendered.text.body.lines().collect();
        assert_eq!(lines, expected);
    }

    #[test]
    fn the_example_in_the_docs_renders_its_line_breaks() {
        // docs/templates.md: `text "{{ reason }}\n{{ explanation | join('\n') }}"`,
        // as the rule-file string decodes it.
        let templates = templates(&[("text", "{{ reason }}\n{{ explanation | join('\n') }}")]);
        let mut message = sample();
        message.explanation.push("second line".to_string());
        let rendered = render(&templates, "chat", &message);
        assert!(rendered.failures.is_empty(), "{:?}", rendered.failures);
        let expected = [
            message.reason.clone().unwrap(),
            message.explanation.join("\n"),
        ]
        .join("\n");
        assert_eq!(rendered.text.body, expected);
    }

    #[test]
    fn the_type_example_in_the_docs_words_each_action() {
        let templates = templates(&[(
            "title",
            "{% if type == 'resolve' %}Resolved{% else %}{{ incident.severity }}{% endif %}: {{ incident.title | truncate(120) }}",
        )]);
        let mut message = sample();
        assert_eq!(
            render(&templates, "chat", &message).text.title,
            "SEV1: checkout burning fast"
        );
        message.kind = MessageType::Resolve;
        assert_eq!(
            render(&templates, "chat", &message).text.title,
            "Resolved: checkout burning fast"
        );
    }

    #[test]
    fn the_severity_template_is_chosen_by_the_incident_severity() {
        let templates = templates(&[
            ("title", "any: {{ incident.title }}"),
            ("title_sev2", "two: {{ incident.title }}"),
        ]);
        let mut message = sample();
        assert_eq!(
            render(&templates, "chat", &message).text.title,
            "any: checkout burning fast"
        );
        message.incident.severity = Severity::Sev2;
        assert_eq!(
            render(&templates, "chat", &message).text.title,
            "two: checkout burning fast"
        );
        // Another destination's templates do not apply.
        assert_eq!(
            render(&templates, "pager", &message).text,
            text::builtin(&message)
        );
    }

    #[test]
    fn a_template_that_fails_falls_back_to_the_builtin_part_and_says_why() {
        // `incident.title.nope.deeper`: attribute of an undefined value fails
        // at render time; the text template still applies.
        let templates = templates(&[
            ("title", "{{ incident.title.nope.deeper }}"),
            ("text", "see {{ incident.key }}"),
        ]);
        let message = sample();
        let rendered = render(&templates, "chat", &message);
        assert_eq!(rendered.text.title, text::builtin(&message).title);
        assert_eq!(rendered.text.body, format!("see {}", message.incident.key));
        assert_eq!(rendered.failures.len(), 1);
        let failure = &rendered.failures[0];
        assert_eq!(
            (failure.destination.as_str(), failure.setting),
            ("chat", "title")
        );
        assert!(failure.error.contains("undefined"), "{}", failure.error);
    }

    #[test]
    fn a_template_that_renders_blank_falls_back_too() {
        let templates = templates(&[("text", "{% if false %}x{% endif %}  ")]);
        let message = sample();
        let rendered = render(&templates, "chat", &message);
        assert_eq!(rendered.text.body, text::builtin(&message).body);
        assert_eq!(rendered.failures[0].error, "rendered empty");
    }

    #[test]
    fn a_runaway_template_runs_out_of_fuel_and_falls_back() {
        let templates = templates(&[(
            "text",
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        )]);
        let message = sample();
        let rendered = render(&templates, "chat", &message);
        assert_eq!(rendered.text.body, text::builtin(&message).body);
        assert!(
            rendered.failures[0].error.contains("fuel"),
            "{}",
            rendered.failures[0].error
        );
    }

    #[test]
    fn output_is_bounded_with_a_marker_and_a_title_is_one_line() {
        let templates = templates(&[
            ("title", "first line\nsecond line"),
            ("text", "{% for i in range(3000) %}é{{ i }} {% endfor %}"),
        ]);
        let rendered = render(&templates, "chat", &sample());
        assert_eq!(rendered.text.title, "first line");
        let body = &rendered.text.body;
        assert!(body.len() <= MAX_TEXT_BYTES, "{}", body.len());
        assert!(body.len() > MAX_TEXT_BYTES - 8, "{}", body.len());
        assert!(body.ends_with(TRUNCATION_MARKER));
        assert!(body.starts_with("é0 é1 "));
    }

    #[test]
    fn common_labels_keep_only_pairs_every_alert_shares() {
        let mut message = sample();
        let mut second = message.alerts[0].clone();
        second.labels.insert("service", "payments");
        message.alerts.push(second);
        let templates = templates(&[("text", "{{ common_labels | pairs }}")]);
        assert_eq!(
            render(&templates, "chat", &message).text.body,
            "alertname=CheckoutErrorBudgetBurn, severity=critical"
        );
    }
}
