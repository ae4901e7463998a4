//! The human words of a message: a one-line title and a body of plain
//! lines. Vendor formats (PagerDuty's `summary`, Slack's blocks, a Teams
//! card) place these words; templates may replace them; the built-in text
//! is what is sent when no template is set or a template fails.

use crate::deliver::message::{MessageType, WebhookMessage};

/// The words of one message, before any vendor markup or escaping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageText {
    /// One line: what happened to which incident.
    pub title: String,
    /// Plain text, lines separated by `\n` (explanation, reason).
    pub body: String,
}

/// The built-in words: `[SEV1] Page: HighErrorRate (service=checkout)`
/// with the reason (when there is one) and the explanation below.
pub fn builtin(message: &WebhookMessage) -> MessageText {
    let action = match message.kind {
        MessageType::Page => "Page",
        MessageType::Notify => "Notice",
        MessageType::UpdateDue => "Status update due",
        MessageType::Escalate => "Escalated",
        MessageType::Resolve => "Resolved",
        MessageType::Acknowledge => "Acknowledged",
    };
    let title = format!(
        "[{}] {action}: {}",
        message.incident.severity, message.incident.title
    );
    let mut lines: Vec<&str> = Vec::new();
    if let Some(reason) = &message.reason {
        lines.push(reason);
    }
    lines.extend(message.explanation.iter().map(String::as_str));
    MessageText {
        title,
        body: lines.join("\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::message::tests::sample;

    #[test]
    fn builtin_text_names_severity_action_and_incident_then_reason_and_explanation() {
        let message = sample();
        let text = builtin(&message);
        assert_eq!(text.title, "[SEV1] Escalated: checkout burning fast");
        let lines: Vec<&str> = text.body.lines().collect();
        assert_eq!(
            lines[0],
            "escalated from SEV3 to SEV1: checkout burning fast"
        );
        assert_eq!(lines[1], message.explanation[0]);
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn builtin_text_without_reason_is_the_explanation() {
        let mut message = sample();
        message.reason = None;
        message.kind = MessageType::Resolve;
        let text = builtin(&message);
        assert!(
            text.title.starts_with("[SEV1] Resolved: "),
            "{}",
            text.title
        );
        assert_eq!(text.body, message.explanation.join("\n"));
    }
}
