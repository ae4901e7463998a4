//! Vendor formats of the deliver stage: each destination kind turns the
//! stored generic message (the `webhook` body, [`WebhookMessage`]) into the
//! request its vendor documents, at send time, and reads the vendor's answer
//! into an [`Outcome`]. One file per kind; all of them pure (no I/O, no
//! clock): [`prepare`] builds a [`PreparedRequest`], [`classify`] reads a
//! [`Reply`]. The worker sends the request with
//! [`super::sender::WebhookSender::send_prepared`].
//!
//! Words come from [`MessageText`] (built in, or a template's); each format
//! escapes them for its markup and fits them into its limits, cutting with
//! [`TRUNCATION_MARKER`].

pub mod discord;
pub mod opsgenie;
pub mod pagerduty;
pub mod slack;
pub mod teams;
pub mod webhook;

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::deliver::backoff::Outcome;
use crate::deliver::message::WebhookMessage;
use crate::deliver::sender::{PreparedRequest, Reply};
use crate::deliver::template::{self, Rendered, TemplateFailure};
use crate::deliver::text::MessageText;
use crate::rules::template::MessageTemplates;
use crate::rules::{Destination, DestinationKind, Value};

/// What ends a cut text: one character, so short fields keep their room.
pub const TRUNCATION_MARKER: &str = "…";

/// Why a request could not be prepared. The delivery cannot succeed as
/// configured, so it becomes a dead letter with this text; no variant ever
/// holds a secret's value.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PrepareError {
    /// A required setting is missing.
    #[error("the destination has no `{0}`")]
    Missing(&'static str),
    /// `env("VAR")` whose variable was unset when the rules were loaded.
    #[error("environment variable {0} was not set when the rules were loaded")]
    Unset(String),
    /// A setting's value is unusable.
    #[error("setting `{key}` is invalid: {problem}")]
    Invalid {
        /// The setting.
        key: &'static str,
        /// What is wrong (never the value itself).
        problem: String,
    },
    /// The stored body is not a version 1 message.
    #[error("the stored message cannot be read: {0}")]
    Message(String),
}

/// What one delivery is, for a format: the message, its words, and the
/// moment of this attempt.
pub struct Outgoing<'a> {
    /// The generic message.
    pub message: &'a WebhookMessage,
    /// The words to place.
    pub text: &'a MessageText,
    /// The exact stored body (the `webhook` kind sends it as is).
    pub body: &'a [u8],
    /// The `webhook-id` of the delivery.
    pub webhook_id: &'a str,
    /// This attempt's Unix time, in seconds.
    pub timestamp: i64,
}

/// Builds the request for `destination` from a stored delivery body, with
/// the words its templates give (see [`crate::deliver::template`]); a
/// template that failed is returned beside the request, which then carries
/// the built-in words for that part.
pub fn prepare(
    destination: &Destination,
    templates: &MessageTemplates,
    body: &[u8],
    webhook_id: &str,
    timestamp: i64,
) -> Result<(PreparedRequest, Vec<TemplateFailure>), PrepareError> {
    let message =
        WebhookMessage::from_body(body).map_err(|e| PrepareError::Message(e.to_string()))?;
    let Rendered { text, failures } = template::render(templates, &destination.name, &message);
    let out = Outgoing {
        message: &message,
        text: &text,
        body,
        webhook_id,
        timestamp,
    };
    let request = match destination.kind {
        DestinationKind::PagerDuty => pagerduty::prepare(destination, &out),
        DestinationKind::Opsgenie => opsgenie::prepare(destination, &out),
        DestinationKind::Slack => slack::prepare(destination, &out),
        DestinationKind::Teams => teams::prepare(destination, &out),
        DestinationKind::Discord => discord::prepare(destination, &out),
        DestinationKind::Webhook => webhook::prepare(destination, &out),
    }?;
    Ok((request, failures))
}

/// Reads a vendor's answer into an outcome.
pub fn classify(kind: DestinationKind, reply: &Reply) -> Outcome {
    match kind {
        DestinationKind::PagerDuty => pagerduty::classify(reply),
        DestinationKind::Opsgenie => opsgenie::classify(reply),
        DestinationKind::Slack => slack::classify(reply),
        DestinationKind::Teams => teams::classify(reply),
        DestinationKind::Discord => discord::classify(reply),
        DestinationKind::Webhook => webhook::classify(reply),
    }
}

/// A text setting: `Ok(None)` when absent, the value when set, an error
/// naming the variable when `env("VAR")` was unset.
pub(crate) fn text_setting(
    destination: &Destination,
    key: &'static str,
) -> Result<Option<String>, PrepareError> {
    match destination.setting(key) {
        None | Some(Value::Duration(_) | Value::Number(_)) => Ok(None),
        Some(Value::Text(t)) => Ok(Some(t.clone())),
        Some(Value::Secret { value: Some(s), .. }) => Ok(Some(s.expose().to_string())),
        Some(Value::Secret { var, value: None }) => Err(PrepareError::Unset(var.clone())),
    }
}

/// A required text setting.
pub(crate) fn required(
    destination: &Destination,
    key: &'static str,
) -> Result<String, PrepareError> {
    text_setting(destination, key)?.ok_or(PrepareError::Missing(key))
}

/// Fits `text` into `max_chars` characters after escaping each character
/// with `escape`; when it does not fit, whole escaped characters are kept
/// (an escape sequence is never cut) and [`TRUNCATION_MARKER`] ends it.
pub(crate) fn fit(text: &str, max_chars: usize, escape: impl Fn(char, &mut String)) -> String {
    let mut full = String::with_capacity(text.len());
    for c in text.chars() {
        escape(c, &mut full);
    }
    if full.chars().count() <= max_chars {
        return full;
    }
    let budget = max_chars.saturating_sub(TRUNCATION_MARKER.chars().count());
    let mut out = String::new();
    let mut used = 0;
    let mut piece = String::new();
    for c in text.chars() {
        piece.clear();
        escape(c, &mut piece);
        let n = piece.chars().count();
        if used + n > budget {
            break;
        }
        out.push_str(&piece);
        used += n;
    }
    out.push_str(TRUNCATION_MARKER);
    out
}

/// No escaping (plain-text fields, JSON takes care of quoting).
pub(crate) fn plain(c: char, out: &mut String) {
    out.push(c);
}

/// Cuts `text` to `max_chars` characters with the marker, unescaped.
pub(crate) fn cut(text: &str, max_chars: usize) -> String {
    fit(text, max_chars, plain)
}

/// A dedup key from the incident key: the key itself when it fits `max`
/// bytes (readable in the vendor's UI), else `sha256:` and its hex digest,
/// so a long key still dedupes stably. An empty key (no `group by`) uses
/// the incident id.
pub(crate) fn dedup_key(message: &WebhookMessage, max: usize) -> String {
    let key = &message.incident.key;
    if key.is_empty() {
        return format!("sevroute-incident-{}", message.incident.id);
    }
    if key.len() <= max {
        return key.clone();
    }
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::from("sha256:");
    for byte in digest.iter() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// The burn readings as short lines: `checkout-availability 1h: 22.1x`.
pub(crate) fn burn_lines(message: &WebhookMessage) -> Vec<String> {
    message
        .burn
        .iter()
        .map(|b| format!("{} {}: {}x", b.slo, b.window, round2(b.rate)))
        .collect()
}

/// Two decimals at most, trailing zeros dropped (`22.1`, `3`).
pub(crate) fn round2(rate: f64) -> String {
    let text = format!("{rate:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_string()
}

/// Links a chat message shows: the incident, then each alert's source
/// (deduplicated), as (label, url).
pub(crate) fn links(message: &WebhookMessage) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(url) = &message.incident.url {
        out.push((format!("Incident {}", message.incident.id), url.clone()));
    }
    for alert in &message.alerts {
        if let Some(url) = &alert.generator_url
            && !out.iter().any(|(_, u)| u == url)
        {
            let name = alert.labels.get("alertname").unwrap_or("alert");
            out.push((format!("Source: {name}"), url.clone()));
        }
    }
    out
}

/// Serializes a body; plain JSON values cannot fail to serialize.
pub(crate) fn to_json(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A destination of `kind` with `settings`, as the checker builds it.
    pub(crate) fn destination(kind: DestinationKind, settings: &[(&str, &str)]) -> Destination {
        Destination {
            name: "dest".to_string(),
            kind,
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), Value::Text(v.to_string())))
                .collect(),
        }
    }

    /// A reply with `status` and `body`.
    pub(crate) fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            retry_after: None,
            body: body.as_bytes().to_vec(),
            complete: true,
        }
    }

    /// A fixture file under tests/fixtures/vendors/, parsed.
    pub(crate) fn fixture(name: &str) -> serde_json::Value {
        let path = format!(
            "{}/tests/fixtures/vendors/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Asserts that every field of `actual` is documented: it exists in
    /// the vendor's example `doc` at the same place with the same JSON
    /// type, recursively. Array elements are matched with the documented
    /// element of the same `"type"` (Block Kit blocks, card elements), else
    /// the first. Objects at `free_form` paths (vendor "details" maps) are
    /// only checked to be objects. Values are compared by the callers.
    pub(crate) fn assert_same_shape(
        doc: &serde_json::Value,
        actual: &serde_json::Value,
        at: &str,
        free_form: &[&str],
    ) {
        use serde_json::Value as J;
        match (doc, actual) {
            (J::Object(_), J::Object(_)) if free_form.contains(&at) => {}
            (J::Object(d), J::Object(a)) => {
                for (key, value) in a {
                    let documented = d
                        .get(key)
                        .unwrap_or_else(|| panic!("{at}.{key} is not a documented field"));
                    assert_same_shape(documented, value, &format!("{at}.{key}"), free_form);
                }
            }
            (J::Array(d), J::Array(a)) => {
                for (i, value) in a.iter().enumerate() {
                    let documented = d
                        .iter()
                        .find(|e| e.get("type").is_some() && e.get("type") == value.get("type"))
                        .or(d.first())
                        .unwrap_or_else(|| panic!("{at}[{i}]: the documented list is empty"));
                    assert_same_shape(documented, value, &format!("{at}[]"), free_form);
                }
            }
            (J::String(_), J::String(_))
            | (J::Number(_), J::Number(_))
            | (J::Bool(_), J::Bool(_))
            | (J::Null, J::Null) => {}
            _ => panic!("{at}: documented as {doc}, rendered as {actual}"),
        }
    }

    #[test]
    fn the_shape_check_catches_an_undocumented_field_and_a_wrong_type() {
        let doc = serde_json::json!({"a": "x", "list": [{"type": "t", "n": 1}], "free": {}});
        let ok = serde_json::json!({"list": [{"type": "t", "n": 2}], "free": {"anything": [1]}});
        assert_same_shape(&doc, &ok, "m", &["m.free"]);
        let typo = serde_json::json!({"b": "x"});
        assert!(std::panic::catch_unwind(|| assert_same_shape(&doc, &typo, "m", &[])).is_err());
        let wrong = serde_json::json!({"a": 1});
        assert!(std::panic::catch_unwind(|| assert_same_shape(&doc, &wrong, "m", &[])).is_err());
    }

    #[test]
    fn every_rules_snippet_in_the_destinations_doc_checks() {
        use crate::rules::{Code, EnvPolicy, Sources, load_sources_with_env};
        let doc = include_str!("../../../docs/destinations.md");
        let mut blocks = 0;
        for (i, part) in doc.split("```sev\n").enumerate().skip(1) {
            let block = &part[..part.find("```").expect("a closed fence")];
            let mut sources = Sources::new();
            sources.add("doc.sev", block);
            let loaded = load_sources_with_env(sources, EnvPolicy::Warn, &|_| None);
            for d in &loaded.diagnostics {
                let code = d.code.to_string();
                assert!(
                    !code.starts_with("E10")
                        && d.code != Code::BadSetting
                        && d.code != Code::UnknownDestinationKind,
                    "sev block {i} of docs/destinations.md: {}",
                    loaded.render()
                );
            }
            blocks += 1;
        }
        assert!(blocks >= 7, "found {blocks} sev blocks");
    }

    #[test]
    fn fit_keeps_short_text_and_cuts_long_text_with_the_marker() {
        assert_eq!(cut("hello", 5), "hello");
        assert_eq!(cut("hello!", 5), "hell…");
        assert_eq!(cut("héllo wörld", 6).chars().count(), 6);
    }

    #[test]
    fn fit_never_cuts_an_escape_sequence() {
        let amp = |c: char, out: &mut String| {
            if c == '&' {
                out.push_str("&amp;")
            } else {
                out.push(c)
            }
        };
        // "a&amp;" is 6 chars: with a budget of 5 - 1 the entity does not fit.
        assert_eq!(fit("a&b", 5, amp), "a…");
        assert_eq!(fit("a&b", 7, amp), "a&amp;b");
    }

    #[test]
    fn long_or_empty_keys_make_stable_dedup_keys() {
        let mut message = crate::deliver::message::tests::sample();
        assert_eq!(dedup_key(&message, 255), message.incident.key);
        message.incident.key = "k".repeat(300);
        let long = dedup_key(&message, 255);
        assert!(
            long.starts_with("sha256:") && long.len() == 7 + 64,
            "{long}"
        );
        assert_eq!(long, dedup_key(&message, 255));
        message.incident.key = String::new();
        assert_eq!(dedup_key(&message, 255), "sevroute-incident-42");
    }

    #[test]
    fn rates_print_with_at_most_two_decimals() {
        assert_eq!(round2(22.1), "22.1");
        assert_eq!(round2(3.0), "3");
        assert_eq!(round2(14.456), "14.46");
    }

    #[test]
    fn a_body_that_is_not_a_message_is_a_clear_error() {
        let dest = destination(DestinationKind::Slack, &[("url", "http://x/y")]);
        let err = prepare(&dest, &MessageTemplates::new(), b"{}", "msg_1", 0).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the stored message cannot be read"),
            "{err}"
        );
    }
}
