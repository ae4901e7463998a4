//! `webhook` destinations: the generic versioned body (docs/webhook.md),
//! sent exactly as stored, signed per Standard Webhooks (the default,
//! `signature "standard"`, with a `whsec_` secret) or GitHub-style
//! (`signature "github"`: `X-Hub-Signature-256: sha256=<hex HMAC>` of the
//! body under the secret's text, for receivers that only speak that).

use super::{Outgoing, PrepareError, required, text_setting};
use crate::deliver::backoff::{Outcome, classify_status};
use crate::deliver::sender::{Method, PreparedRequest, Reply};
use crate::deliver::signing::{
    HEADER_GITHUB_SIGNATURE, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, WebhookSecret, sign,
    sign_github,
};
use crate::rules::Destination;

/// Builds the signed request.
pub fn prepare(
    destination: &Destination,
    out: &Outgoing<'_>,
) -> Result<PreparedRequest, PrepareError> {
    let url = required(destination, "url")?;
    // A secret named in the rules but missing from the environment must
    // not turn into an unsigned request: `text_setting` fails on it.
    let secret = text_setting(destination, "secret")?;
    let github = text_setting(destination, "signature")?.as_deref() == Some("github");
    let mut headers = vec![
        (HEADER_ID.to_string(), out.webhook_id.to_string()),
        (HEADER_TIMESTAMP.to_string(), out.timestamp.to_string()),
    ];
    let mut secrets = Vec::new();
    match (secret, github) {
        (None, true) => return Err(PrepareError::Missing("secret")),
        (None, false) => {}
        (Some(raw), true) => {
            // GitHub secrets are plain text; the HMAC key is its bytes.
            let key = WebhookSecret::from_bytes(raw.as_bytes().to_vec()).map_err(|_| {
                PrepareError::Invalid {
                    key: "secret",
                    problem: "it is empty".into(),
                }
            })?;
            headers.push((
                HEADER_GITHUB_SIGNATURE.to_string(),
                sign_github(&key, out.body),
            ));
            secrets.push(raw);
        }
        (Some(raw), false) => {
            let key = WebhookSecret::parse(&raw).map_err(|_| PrepareError::Invalid {
                key: "secret",
                problem: "not a valid whsec_ key".into(),
            })?;
            headers.push((
                HEADER_SIGNATURE.to_string(),
                sign(&key, out.webhook_id, out.timestamp, out.body),
            ));
            secrets.extend(key.redaction_needles());
        }
    }
    Ok(PreparedRequest {
        method: Method::Post,
        url,
        headers,
        body: out.body.to_vec(),
        secrets,
    })
}

/// The generic rules: 2xx delivered; 408, 425, 429, 5xx retried; 410
/// disables; other 3xx and 4xx are dead letters.
pub fn classify(reply: &Reply) -> Outcome {
    classify_status(reply.status, reply.retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::message::tests::sample;
    use crate::deliver::signing::{DEFAULT_TOLERANCE, SignedHeaders, verify};
    use crate::deliver::text::builtin;
    use crate::deliver::vendor::tests::destination;
    use crate::rules::DestinationKind;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    fn prepared(settings: &[(&str, &str)]) -> Result<PreparedRequest, PrepareError> {
        let message = sample();
        let text = builtin(&message);
        let body = message.to_body().unwrap();
        let mut all = vec![("url", "http://127.0.0.1:9/hook")];
        all.extend_from_slice(settings);
        let dest = destination(DestinationKind::Webhook, &all);
        let out = Outgoing {
            message: &message,
            text: &text,
            body: &body,
            webhook_id: &message.id,
            timestamp: 1_793_737_570,
        };
        prepare(&dest, &out)
    }

    fn header<'a>(request: &'a PreparedRequest, name: &str) -> Option<&'a str> {
        request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn standard_mode_signs_the_stored_body_verifiably() {
        let request = prepared(&[("secret", SECRET)]).unwrap();
        assert_eq!(request.body, sample().to_body().unwrap());
        let key = WebhookSecret::parse(SECRET).unwrap();
        let headers = SignedHeaders::from_lookup(|n| header(&request, n));
        assert_eq!(
            verify(
                &key,
                &headers,
                &request.body,
                1_793_737_570,
                DEFAULT_TOLERANCE
            ),
            Ok(())
        );
        assert!(header(&request, HEADER_GITHUB_SIGNATURE).is_none());
    }

    #[test]
    fn github_mode_signs_the_body_with_the_secret_text() {
        let request = prepared(&[
            ("secret", "It's a Secret to Everybody"),
            ("signature", "github"),
        ])
        .unwrap();
        let key = WebhookSecret::from_bytes(b"It's a Secret to Everybody".to_vec()).unwrap();
        assert_eq!(
            header(&request, HEADER_GITHUB_SIGNATURE),
            Some(sign_github(&key, &request.body).as_str())
        );
        assert!(
            header(&request, HEADER_GITHUB_SIGNATURE)
                .unwrap()
                .starts_with("sha256=")
        );
        assert!(header(&request, HEADER_SIGNATURE).is_none());
        assert_eq!(header(&request, HEADER_ID), Some(sample().id.as_str()));
        assert_eq!(
            request.secrets,
            vec!["It's a Secret to Everybody".to_string()]
        );
    }

    #[test]
    fn github_mode_without_a_secret_or_a_bad_whsec_is_refused() {
        assert_eq!(
            prepared(&[("signature", "github")]).unwrap_err(),
            PrepareError::Missing("secret")
        );
        let err = prepared(&[("secret", "whsec_!!notbase64")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "setting `secret` is invalid: not a valid whsec_ key"
        );
        // Unsigned without a secret in standard mode.
        let plain = prepared(&[]).unwrap();
        assert!(header(&plain, HEADER_SIGNATURE).is_none());
        assert!(header(&plain, HEADER_ID).is_some());
    }

    #[test]
    fn outcomes_are_the_generic_ones() {
        use crate::deliver::backoff::{RetryReason, TerminalReason};
        use crate::deliver::vendor::tests::reply;
        assert_eq!(classify(&reply(204, "")), Outcome::Delivered);
        for status in [408, 425, 429, 500, 503] {
            assert!(
                matches!(classify(&reply(status, "")), Outcome::Retry { reason: RetryReason::Status(s), .. } if s == status),
                "{status}"
            );
        }
        for status in [301, 400, 401, 403, 404, 413, 422] {
            assert_eq!(
                classify(&reply(status, "")),
                Outcome::Terminal {
                    reason: TerminalReason::Status(status)
                }
            );
        }
        assert!(classify(&reply(410, "")).disables_destination());
        let mut limited = reply(503, "");
        limited.retry_after = Some(std::time::Duration::from_secs(7));
        assert_eq!(
            classify(&limited),
            Outcome::Retry {
                after: Some(std::time::Duration::from_secs(7)),
                reason: RetryReason::Status(503)
            }
        );
    }
}
