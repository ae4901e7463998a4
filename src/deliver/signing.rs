//! Standard Webhooks signatures (spec 1.0.0, symmetric scheme `v1`): the
//! deliver stage signs every `webhook` body with [`sign`]; receivers, and
//! our own tests' receiver, check it with [`verify`]. Pure: no I/O, no clock
//! (the current time is an argument).
//!
//! The signed content is `{webhook-id}.{webhook-timestamp}.{body}` and the
//! signature is `v1,` followed by the standard (padded) base64 of its
//! HMAC-SHA256 under the secret's key bytes.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_PAD_INDIFFERENT};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

/// The prefix that marks a serialized symmetric secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// The signature identifier of the symmetric (HMAC-SHA256) scheme.
pub const SIGNATURE_VERSION: &str = "v1";

/// The key length the spec asks a generated secret to have at least
/// (24 bytes, 192 bits). Shorter keys still work (the reference libraries
/// accept them), so this is advice for checks and docs, not a parse error.
pub const RECOMMENDED_MIN_KEY_BYTES: usize = 24;

/// How far a `webhook-timestamp` may be from the receiver's clock, either
/// way, before [`verify`] refuses it: the spec's reference libraries use
/// five minutes.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Header carrying the message id (the idempotency key).
pub const HEADER_ID: &str = "webhook-id";
/// Header carrying the attempt's Unix time in seconds.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying the space-separated signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// Why a secret could not be read, or a signature did not verify.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SigningError {
    /// The secret (after an optional `whsec_`) is not base64. The message
    /// never quotes the secret.
    #[error("the webhook secret is not valid base64 (expected whsec_<base64>)")]
    InvalidSecret,
    /// The secret decodes to no bytes; an empty HMAC key signs nothing.
    #[error("the webhook secret is empty")]
    EmptySecret,
}

/// Why [`verify`] refused a request.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// A required header is absent or empty.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// `webhook-timestamp` is not an integer number of seconds.
    #[error("webhook-timestamp is not an integer")]
    InvalidTimestamp,
    /// The timestamp is older than the tolerance allows (a replay, or a
    /// clock far behind).
    #[error("webhook-timestamp is too old")]
    TimestampTooOld,
    /// The timestamp is further in the future than the tolerance allows.
    #[error("webhook-timestamp is too far in the future")]
    TimestampTooNew,
    /// No `v1` signature in the header matches the body.
    #[error("no matching signature")]
    NoMatchingSignature,
}

/// A Standard Webhooks signing secret (the HMAC key bytes).
///
/// `Debug` and `Display` print `whsec_[redacted]`, so a secret that ends up
/// in a log line, an error or a `{:?}` of a config struct stays secret.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl WebhookSecret {
    /// Reads the string form: `whsec_` followed by base64 of the key.
    ///
    /// As in the spec's reference libraries, the prefix is optional and the
    /// rest is always base64-decoded (padding may be omitted, as the Python
    /// library allows); raw key bytes go through
    /// [`WebhookSecret::from_bytes`] instead, so that a typo never turns a
    /// base64 secret silently into a different raw key.
    pub fn parse(text: &str) -> Result<WebhookSecret, SigningError> {
        let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        let key = STANDARD_PAD_INDIFFERENT
            .decode(encoded)
            .map_err(|_| SigningError::InvalidSecret)?;
        WebhookSecret::from_bytes(key)
    }

    /// Uses `key` as the HMAC key as it is (for receivers that hand out raw
    /// secrets rather than `whsec_` ones).
    pub fn from_bytes(key: Vec<u8>) -> Result<WebhookSecret, SigningError> {
        if key.is_empty() {
            return Err(SigningError::EmptySecret);
        }
        Ok(WebhookSecret { key })
    }

    /// Length of the key in bytes (compare with
    /// [`RECOMMENDED_MIN_KEY_BYTES`] to warn about weak secrets).
    pub fn key_len(&self) -> usize {
        self.key.len()
    }

    /// Text forms of the secret that could show up in a receiver's echo
    /// (padded and unpadded base64, with and without the prefix), so the
    /// sender can scrub them from response excerpts.
    pub(crate) fn redaction_needles(&self) -> Vec<String> {
        let padded = STANDARD.encode(&self.key);
        let unpadded = padded.trim_end_matches('=').to_string();
        vec![
            format!("{SECRET_PREFIX}{padded}"),
            padded,
            format!("{SECRET_PREFIX}{unpadded}"),
            unpadded,
        ]
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length; an error here would be a bug in
        // the hmac crate, and the key is never empty by construction.
        HmacSha256::new_from_slice(&self.key).expect("HMAC accepts keys of any length")
    }
}

impl FromStr for WebhookSecret {
    type Err = SigningError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        WebhookSecret::parse(text)
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(whsec_[redacted])")
    }
}

impl fmt::Display for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("whsec_[redacted]")
    }
}

/// The MAC over `{msg_id}.{timestamp}.{body}`, not yet finalized.
fn mac_over(secret: &WebhookSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = secret.mac();
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `webhook-signature` value for one message: `v1,<base64 HMAC>`.
///
/// `msg_id` must not contain `.` (the spec's rule: the separator would let
/// id and timestamp trade characters); ids from
/// [`super::message::derive_message_id`] never do. `body` is signed as the
/// exact bytes sent: sign the serialized body, never a re-serialization.
pub fn sign(secret: &WebhookSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = mac_over(secret, msg_id, timestamp, body)
        .finalize()
        .into_bytes();
    format!("{SIGNATURE_VERSION},{}", STANDARD.encode(tag))
}

/// The header of GitHub-style signatures.
pub const HEADER_GITHUB_SIGNATURE: &str = "X-Hub-Signature-256";

/// The GitHub-style `X-Hub-Signature-256` value: `sha256=` and the lower-case
/// hex HMAC-SHA256 of exactly `body` under `secret`'s key bytes (GitHub signs
/// the body alone: no id, no timestamp, so no replay window either).
pub fn sign_github(secret: &WebhookSecret, body: &[u8]) -> String {
    let mut mac = secret.mac();
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for byte in tag.iter() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// The three Standard Webhooks headers of a received request, as found
/// (`None` when absent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignedHeaders<'a> {
    /// `webhook-id`.
    pub id: Option<&'a str>,
    /// `webhook-timestamp`.
    pub timestamp: Option<&'a str>,
    /// `webhook-signature`.
    pub signature: Option<&'a str>,
}

impl<'a> SignedHeaders<'a> {
    /// Collects the headers through a lookup by lower-case name, so callers
    /// can pass any header map (`|name| map.get(name)?.to_str().ok()`)
    /// without this module depending on an HTTP crate.
    pub fn from_lookup(mut get: impl FnMut(&str) -> Option<&'a str>) -> SignedHeaders<'a> {
        SignedHeaders {
            id: get(HEADER_ID),
            timestamp: get(HEADER_TIMESTAMP),
            signature: get(HEADER_SIGNATURE),
        }
    }
}

/// Checks a received webhook: the timestamp lies within `tolerance` of
/// `now` (Unix seconds) and at least one `v1` signature in the
/// space-separated header matches `body` (the raw bytes received).
///
/// Signatures of other schemes (`v1a`, ...) and malformed entries are
/// skipped, as the spec's rotation rules ask. The comparison is constant
/// time (the hmac crate's `verify_slice`), so a receiver does not become a
/// signing oracle.
pub fn verify(
    secret: &WebhookSecret,
    headers: &SignedHeaders<'_>,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let present = |value: Option<&str>, name| match value {
        Some(v) if !v.is_empty() => Ok(v.to_owned()),
        _ => Err(VerifyError::MissingHeader(name)),
    };
    let msg_id = present(headers.id, HEADER_ID)?;
    let timestamp_text = present(headers.timestamp, HEADER_TIMESTAMP)?;
    let signatures = present(headers.signature, HEADER_SIGNATURE)?;

    let timestamp: i64 = timestamp_text
        .parse()
        .map_err(|_| VerifyError::InvalidTimestamp)?;
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    // Saturating: an absurd timestamp must be refused, not overflow.
    if now.saturating_sub(timestamp) > tolerance {
        return Err(VerifyError::TimestampTooOld);
    }
    if timestamp.saturating_sub(now) > tolerance {
        return Err(VerifyError::TimestampTooNew);
    }

    let expected = mac_over(secret, &msg_id, timestamp, body);
    let matched = signatures
        .split(' ')
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == SIGNATURE_VERSION)
        .filter_map(|(_, encoded)| STANDARD.decode(encoded).ok())
        .any(|candidate| expected.clone().verify_slice(&candidate).is_ok());
    if matched {
        Ok(())
    } else {
        Err(VerifyError::NoMatchingSignature)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn github_signature_matches_githubs_documented_example() {
        // GitHub's "Validating webhook deliveries" test values.
        let secret = WebhookSecret::from_bytes(b"It's a Secret to Everybody".to_vec()).unwrap();
        assert_eq!(
            sign_github(&secret, b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    use super::*;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const MSG_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TIMESTAMP: i64 = 1_649_367_553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const EXPECTED: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn secret() -> WebhookSecret {
        WebhookSecret::parse(SECRET).unwrap()
    }

    fn headers<'a>(id: &'a str, ts: &'a str, sig: &'a str) -> SignedHeaders<'a> {
        SignedHeaders {
            id: Some(id),
            timestamp: Some(ts),
            signature: Some(sig),
        }
    }

    fn check(id: &str, ts: i64, sig: &str, body: &[u8], now: i64) -> Result<(), VerifyError> {
        let ts = ts.to_string();
        verify(
            &secret(),
            &headers(id, &ts, sig),
            body,
            now,
            DEFAULT_TOLERANCE,
        )
    }

    #[test]
    fn spec_vector_signs_as_published() {
        assert_eq!(sign(&secret(), MSG_ID, TIMESTAMP, BODY), EXPECTED);
    }

    #[test]
    fn spec_vector_verifies() {
        assert_eq!(check(MSG_ID, TIMESTAMP, EXPECTED, BODY, TIMESTAMP), Ok(()));
    }

    #[test]
    fn prefix_is_optional_and_padding_may_be_omitted() {
        let bare = WebhookSecret::parse(&SECRET[SECRET_PREFIX.len()..]).unwrap();
        assert_eq!(sign(&bare, MSG_ID, TIMESTAMP, BODY), EXPECTED);
        // A 25-byte key has padding; dropping it reads the same key.
        let padded = WebhookSecret::parse("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==").unwrap();
        let unpadded = WebhookSecret::parse("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        assert_eq!(padded, unpadded);
        assert_eq!(padded.key_len(), 25);
    }

    #[test]
    fn raw_bytes_are_used_as_they_are() {
        let raw = WebhookSecret::from_bytes(secret().key.clone()).unwrap();
        assert_eq!(sign(&raw, MSG_ID, TIMESTAMP, BODY), EXPECTED);
    }

    #[test]
    fn tampering_with_body_timestamp_or_id_fails() {
        let tampered_body = br#"{"email":"test@example.com","username":"test_user2"}"#;
        assert_eq!(
            check(MSG_ID, TIMESTAMP, EXPECTED, tampered_body, TIMESTAMP),
            Err(VerifyError::NoMatchingSignature)
        );
        assert_eq!(
            check(MSG_ID, TIMESTAMP + 1, EXPECTED, BODY, TIMESTAMP),
            Err(VerifyError::NoMatchingSignature)
        );
        assert_eq!(
            check(
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpK",
                TIMESTAMP,
                EXPECTED,
                BODY,
                TIMESTAMP
            ),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn another_secret_fails() {
        let other = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(&other, MSG_ID, TIMESTAMP, BODY);
        assert_eq!(
            check(MSG_ID, TIMESTAMP, &sig, BODY, TIMESTAMP),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn timestamps_outside_the_tolerance_fail_either_way() {
        let tol = DEFAULT_TOLERANCE.as_secs() as i64;
        let at = |now| check(MSG_ID, TIMESTAMP, EXPECTED, BODY, now);
        assert_eq!(at(TIMESTAMP + tol), Ok(()));
        assert_eq!(at(TIMESTAMP - tol), Ok(()));
        assert_eq!(at(TIMESTAMP + tol + 1), Err(VerifyError::TimestampTooOld));
        assert_eq!(at(TIMESTAMP - tol - 1), Err(VerifyError::TimestampTooNew));
        // Extreme values are refused without overflow.
        assert_eq!(
            check(MSG_ID, i64::MIN, EXPECTED, BODY, i64::MAX),
            Err(VerifyError::TimestampTooOld)
        );
        assert_eq!(
            check(MSG_ID, i64::MAX, EXPECTED, BODY, i64::MIN),
            Err(VerifyError::TimestampTooNew)
        );
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let multi = format!(
            "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ= v1a,bm90IGFuIGVkMjU1MTkgc2ln \
             garbage v1,!!notbase64!! {EXPECTED} v1,Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q="
        );
        assert_eq!(check(MSG_ID, TIMESTAMP, &multi, BODY, TIMESTAMP), Ok(()));
        let none = "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ= v1,Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q=";
        assert_eq!(
            check(MSG_ID, TIMESTAMP, none, BODY, TIMESTAMP),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn the_right_mac_under_another_scheme_name_fails() {
        let v1a = EXPECTED.replacen("v1,", "v1a,", 1);
        assert_eq!(
            check(MSG_ID, TIMESTAMP, &v1a, BODY, TIMESTAMP),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn missing_or_malformed_headers_are_reported() {
        let ts = TIMESTAMP.to_string();
        let full = headers(MSG_ID, &ts, EXPECTED);
        let run = |h: SignedHeaders<'_>| verify(&secret(), &h, BODY, TIMESTAMP, DEFAULT_TOLERANCE);
        assert_eq!(
            run(SignedHeaders { id: None, ..full }),
            Err(VerifyError::MissingHeader(HEADER_ID))
        );
        assert_eq!(
            run(SignedHeaders {
                timestamp: Some(""),
                ..full
            }),
            Err(VerifyError::MissingHeader(HEADER_TIMESTAMP))
        );
        assert_eq!(
            run(SignedHeaders {
                signature: None,
                ..full
            }),
            Err(VerifyError::MissingHeader(HEADER_SIGNATURE))
        );
        assert_eq!(
            run(SignedHeaders {
                timestamp: Some("1649367553.5"),
                ..full
            }),
            Err(VerifyError::InvalidTimestamp)
        );
    }

    #[test]
    fn from_lookup_reads_lower_case_names() {
        let pairs = [
            ("webhook-id", MSG_ID),
            ("webhook-timestamp", "1649367553"),
            ("webhook-signature", EXPECTED),
        ];
        let h = SignedHeaders::from_lookup(|name| {
            pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        });
        assert_eq!(
            verify(&secret(), &h, BODY, TIMESTAMP, DEFAULT_TOLERANCE),
            Ok(())
        );
    }

    #[test]
    fn invalid_secrets_are_errors_not_panics() {
        for bad in ["whsec_not base64!", "whsec_@@@@", "whsec_A", "***"] {
            assert_eq!(WebhookSecret::parse(bad), Err(SigningError::InvalidSecret));
        }
        assert_eq!(
            WebhookSecret::parse("whsec_"),
            Err(SigningError::EmptySecret)
        );
        assert_eq!(WebhookSecret::parse(""), Err(SigningError::EmptySecret));
        assert_eq!(
            WebhookSecret::from_bytes(Vec::new()),
            Err(SigningError::EmptySecret)
        );
        assert!(
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
                .parse::<WebhookSecret>()
                .is_ok()
        );
    }

    #[test]
    fn debug_and_display_redact() {
        let s = secret();
        for shown in [format!("{s:?}"), format!("{s}")] {
            assert!(shown.contains("[redacted]"), "{shown}");
            assert!(!shown.contains("C2FVsBQ"), "{shown}");
        }
        let err = WebhookSecret::parse("whsec_s3cr3t!!")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn redaction_needles_cover_the_string_forms() {
        let needles = secret().redaction_needles();
        assert!(needles.contains(&SECRET.to_string()));
        assert!(needles.contains(&"C2FVsBQIhrscChlQIMV+b5sSYspob7oD".to_string()));
    }
}
