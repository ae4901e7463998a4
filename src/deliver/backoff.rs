//! Retry policy of the deliver stage, pure: how long to wait before the
//! next attempt (capped exponential backoff with full jitter, or the
//! receiver's `Retry-After`), when to give up, and how an HTTP status or a
//! transport failure is classified. Randomness and the clock are arguments,
//! so every schedule is reproducible in tests.

use std::fmt;
use std::time::{Duration, SystemTime};

use thiserror::Error;

/// A problem with a [`RetryPolicy`]'s settings.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// `initial` is zero: every delay would be zero and retries would hammer
    /// a struggling receiver.
    #[error("initial backoff must be greater than zero")]
    ZeroInitial,
    /// `initial` exceeds `max`, so the cap would be reached at once.
    #[error("initial backoff ({initial:?}) exceeds the maximum ({max:?})")]
    InitialAboveMax {
        /// The configured initial delay.
        initial: Duration,
        /// The configured cap.
        max: Duration,
    },
    /// `max_attempts` is zero: nothing would ever be sent.
    #[error("max_attempts must be at least 1")]
    ZeroAttempts,
}

/// When and how often a delivery is retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Cap of the first retry's delay; each later retry doubles it.
    pub initial: Duration,
    /// Upper bound of any backoff delay, however many attempts failed.
    pub max: Duration,
    /// Attempts in total (the first send included) before giving up.
    pub max_attempts: u32,
    /// Longest `Retry-After` honoured; a receiver asking for more is retried
    /// after this instead, so a wrong header cannot park a page for days.
    pub retry_after_max: Duration,
}

impl Default for RetryPolicy {
    /// 1 s doubling to 5 min, 10 attempts (about 20 minutes of retrying in
    /// the worst case), `Retry-After` honoured up to 15 min.
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(5 * 60),
            max_attempts: 10,
            retry_after_max: Duration::from_secs(15 * 60),
        }
    }
}

impl RetryPolicy {
    /// Every problem with the settings at once (empty when valid).
    pub fn validate(&self) -> Vec<PolicyError> {
        let mut problems = Vec::new();
        if self.initial.is_zero() {
            problems.push(PolicyError::ZeroInitial);
        }
        if self.initial > self.max {
            problems.push(PolicyError::InitialAboveMax {
                initial: self.initial,
                max: self.max,
            });
        }
        if self.max_attempts == 0 {
            problems.push(PolicyError::ZeroAttempts);
        }
        problems
    }

    /// The backoff cap before retry number `attempt` (0 for the first
    /// retry): `min(max, initial * 2^attempt)`, saturating instead of
    /// overflowing for any `attempt`.
    pub fn cap(&self, attempt: u32) -> Duration {
        // 2^31 still fits the u32 that Duration::checked_mul takes; beyond
        // that, or on overflow, the cap is simply `max`.
        let factor = 1u32.checked_shl(attempt).filter(|_| attempt < 32);
        factor
            .and_then(|f| self.initial.checked_mul(f))
            .map_or(self.max, |d| d.min(self.max))
    }

    /// Delay before retry number `attempt` (0 for the first retry), with
    /// full jitter: `cap(attempt) * jitter`. `jitter` is a uniform sample in
    /// `[0, 1)` supplied by the caller; values outside `[0, 1]` (and NaN)
    /// are clamped, so the result always lies in `[0, cap(attempt)]`.
    ///
    /// Full jitter (AWS's "Exponential Backoff and Jitter") rather than
    /// equal or decorrelated jitter: it spreads a burst of failed deliveries
    /// the most, which is what a receiver that just recovered needs.
    pub fn next_delay(&self, attempt: u32, jitter: f64) -> Duration {
        let cap = self.cap(attempt);
        if jitter.is_nan() || jitter <= 0.0 {
            return Duration::ZERO;
        }
        if jitter >= 1.0 {
            return cap;
        }
        // try_from: near Duration::MAX the float product can round past
        // the largest Duration; min: rounding must not step over the cap.
        Duration::try_from_secs_f64(cap.as_secs_f64() * jitter).map_or(cap, |d| d.min(cap))
    }

    /// Delay before retry number `attempt`, honouring the receiver: its
    /// `Retry-After` (already parsed) when it gave one, clamped to
    /// `retry_after_max`; otherwise [`RetryPolicy::next_delay`].
    pub fn retry_delay(
        &self,
        attempt: u32,
        jitter: f64,
        retry_after: Option<Duration>,
    ) -> Duration {
        match retry_after {
            Some(after) => after.min(self.retry_after_max),
            None => self.next_delay(attempt, jitter),
        }
    }

    /// Whether another attempt is allowed after `attempts_made` attempts
    /// (the first send included).
    pub fn may_retry(&self, attempts_made: u32) -> bool {
        attempts_made < self.max_attempts
    }

    /// Reads a `Retry-After` value (RFC 9110 §10.2.3): delay-seconds, or an
    /// HTTP-date (IMF-fixdate, and the obsolete RFC 850 and asctime forms a
    /// recipient must also accept). A date in the past means "now" (zero).
    /// The result is clamped to `retry_after_max`; `None` when the value is
    /// neither form.
    pub fn parse_retry_after(&self, header: &str, now: SystemTime) -> Option<Duration> {
        let value = header.trim();
        let delay = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            // Digits too many for u64 are still a valid (huge) delay.
            value
                .parse::<u64>()
                .map_or(Duration::MAX, Duration::from_secs)
        } else {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(now).unwrap_or(Duration::ZERO)
        };
        Some(delay.min(self.retry_after_max))
    }
}

/// The wait before a retry, raised to `min_penalty` after a 429 (the
/// receiver is rate limiting) or a timeout (it is struggling): retrying
/// those at once, as full jitter may, only adds to the load.
pub fn with_min_penalty(delay: Duration, reason: RetryReason, min_penalty: Duration) -> Duration {
    match reason {
        RetryReason::Status(429) | RetryReason::Timeout => delay.max(min_penalty),
        _ => delay,
    }
}

/// Why an attempt should be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryReason {
    /// The receiver answered with a retryable status (408, 425, 429, 5xx,
    /// or an unexpected 1xx / 6xx+).
    Status(u16),
    /// No complete answer within the request timeout.
    Timeout,
    /// The connection could not be made (refused, DNS, TLS handshake).
    Connect,
    /// The connection broke in another way (reset, malformed response).
    Transport,
}

/// Why an attempt must not be retried (the delivery goes to dead letters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerminalReason {
    /// A 4xx (other than 408, 425, 429, 410) or a 3xx: the same request
    /// will never succeed. Redirects are not followed, as the spec advises:
    /// the destination's URL should be updated instead.
    Status(u16),
    /// 410 Gone: the receiver asks not to be sent anything again; the
    /// caller should disable the destination.
    Gone,
    /// The request could not even be built (an invalid URL or header
    /// value), so no attempt will ever reach the receiver.
    InvalidRequest,
}

/// What one attempt means for the delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered,
    /// Try again later.
    Retry {
        /// The receiver's `Retry-After`, already clamped, when it gave one.
        after: Option<Duration>,
        /// Why.
        reason: RetryReason,
    },
    /// Give up now.
    Terminal {
        /// Why.
        reason: TerminalReason,
    },
}

impl Outcome {
    /// True when the receiver said the destination itself is gone (410, or
    /// a vendor's "no such channel" answer): the destination should be
    /// disabled and its work sent to the severity's fallback.
    pub fn disables_destination(&self) -> bool {
        matches!(
            self,
            Outcome::Terminal {
                reason: TerminalReason::Gone
            }
        )
    }
}

/// A failure before any HTTP status was received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportFailure {
    /// The request timed out.
    Timeout,
    /// The connection could not be made.
    Connect,
    /// The request could not be built (invalid URL or header).
    InvalidRequest,
    /// Anything else on the wire.
    Other,
}

/// Classifies a received status. 2xx is delivered; 408, 425, 429 and 5xx
/// are retried (with the receiver's `Retry-After` when given: 429 and 503
/// usually carry one); 410 is terminal as [`TerminalReason::Gone`]; other
/// 3xx and 4xx are terminal. Codes outside 200..=599 are retried: they say
/// the receiver is confused, not that the request is wrong.
pub fn classify_status(status: u16, retry_after: Option<Duration>) -> Outcome {
    let retry = Outcome::Retry {
        after: retry_after,
        reason: RetryReason::Status(status),
    };
    match status {
        200..=299 => Outcome::Delivered,
        408 | 425 | 429 | 500..=599 => retry,
        410 => Outcome::Terminal {
            reason: TerminalReason::Gone,
        },
        300..=499 => Outcome::Terminal {
            reason: TerminalReason::Status(status),
        },
        _ => retry,
    }
}

/// Classifies a failure that produced no status: timeouts and connection
/// failures are retried, an unbuildable request is terminal.
pub fn classify_transport(failure: TransportFailure) -> Outcome {
    let retry = |reason| Outcome::Retry {
        after: None,
        reason,
    };
    match failure {
        TransportFailure::Timeout => retry(RetryReason::Timeout),
        TransportFailure::Connect => retry(RetryReason::Connect),
        TransportFailure::Other => retry(RetryReason::Transport),
        TransportFailure::InvalidRequest => Outcome::Terminal {
            reason: TerminalReason::InvalidRequest,
        },
    }
}

impl fmt::Display for RetryReason {
    /// A short label fit for a metric (`http_503`, `timeout`, ...).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryReason::Status(code) => write!(f, "http_{code}"),
            RetryReason::Timeout => f.write_str("timeout"),
            RetryReason::Connect => f.write_str("connect"),
            RetryReason::Transport => f.write_str("transport"),
        }
    }
}

impl fmt::Display for TerminalReason {
    /// A short label fit for a metric (`http_400`, `gone`, ...).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TerminalReason::Status(code) => write!(f, "http_{code}"),
            TerminalReason::Gone => f.write_str("gone"),
            TerminalReason::InvalidRequest => f.write_str("invalid_request"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: MS(500),
            max: S(60),
            max_attempts: 5,
            retry_after_max: S(120),
        }
    }

    #[test]
    fn cap_doubles_then_stops_at_max() {
        let p = policy();
        let table = [
            (0, MS(500)),
            (1, S(1)),
            (2, S(2)),
            (3, S(4)),
            (6, S(32)),
            (7, S(60)),
            (8, S(60)),
            (31, S(60)),
            (32, S(60)),
            (63, S(60)),
            (64, S(60)),
            (u32::MAX, S(60)),
        ];
        for (attempt, expected) in table {
            assert_eq!(p.cap(attempt), expected, "attempt {attempt}");
        }
    }

    #[test]
    fn huge_initial_and_max_do_not_overflow() {
        let p = RetryPolicy {
            initial: Duration::MAX / 2,
            max: Duration::MAX,
            ..policy()
        };
        assert_eq!(p.cap(0), Duration::MAX / 2);
        assert!(p.cap(1) > Duration::MAX / 2);
        assert_eq!(p.cap(2), Duration::MAX);
        assert_eq!(p.cap(40), Duration::MAX);
        assert_eq!(p.next_delay(40, 1.0), Duration::MAX);
        assert!(p.next_delay(40, 0.999_999) < Duration::MAX);
        assert!(p.next_delay(40, 1.0 - f64::EPSILON) <= Duration::MAX);
    }

    #[test]
    fn full_jitter_spans_zero_to_cap() {
        let p = policy();
        let table = [
            (0, 0.0, Duration::ZERO),
            (0, 0.5, MS(250)),
            (0, 1.0, MS(500)),
            (3, 0.25, S(1)),
            (3, 0.999, MS(3996)),
            (10, 0.5, S(30)),
            (10, 1.0, S(60)),
            // Out-of-range samples are clamped into [0, 1].
            (3, -0.5, Duration::ZERO),
            (3, 1.5, S(4)),
            (3, f64::NAN, Duration::ZERO),
            (3, f64::INFINITY, S(4)),
        ];
        for (attempt, jitter, expected) in table {
            assert_eq!(
                p.next_delay(attempt, jitter),
                expected,
                "attempt {attempt}, jitter {jitter}"
            );
        }
    }

    #[test]
    fn jittered_delay_never_exceeds_the_cap() {
        let p = policy();
        for attempt in 0..70 {
            for i in 0..=100 {
                let jitter = f64::from(i) / 100.0;
                let d = p.next_delay(attempt, jitter);
                assert!(d <= p.cap(attempt), "attempt {attempt}, jitter {jitter}");
                assert!(d <= p.max);
            }
        }
    }

    #[test]
    fn retry_after_wins_over_backoff_within_its_clamp() {
        let p = policy();
        assert_eq!(p.retry_delay(0, 0.5, Some(S(7))), S(7));
        assert_eq!(p.retry_delay(9, 0.5, Some(S(1))), S(1));
        assert_eq!(p.retry_delay(0, 0.5, Some(S(3600))), S(120));
        assert_eq!(p.retry_delay(2, 0.5, None), S(1));
    }

    #[test]
    fn a_429_or_a_timeout_waits_at_least_the_penalty() {
        let table = [
            (RetryReason::Status(429), MS(100), S(5)),
            (RetryReason::Status(429), S(9), S(9)),
            (RetryReason::Timeout, Duration::ZERO, S(5)),
            (RetryReason::Status(503), MS(100), MS(100)),
            (RetryReason::Connect, MS(100), MS(100)),
        ];
        for (reason, delay, expected) in table {
            assert_eq!(with_min_penalty(delay, reason, S(5)), expected, "{reason}");
        }
    }

    #[test]
    fn attempts_are_bounded() {
        let p = policy();
        assert!(p.may_retry(1));
        assert!(p.may_retry(4));
        assert!(!p.may_retry(5));
        assert!(!p.may_retry(6));
    }

    #[test]
    fn parse_retry_after_reads_both_forms() {
        let p = policy();
        // Sun, 06 Nov 1994 08:49:37 GMT, the RFC's own example date.
        let now = SystemTime::UNIX_EPOCH + S(784_111_777);
        let table: [(&str, Option<Duration>); 14] = [
            ("7", Some(S(7))),
            (" 7 ", Some(S(7))),
            ("0", Some(Duration::ZERO)),
            ("120", Some(S(120))),
            ("121", Some(S(120))),
            ("99999999999999999999999", Some(S(120))),
            ("Sun, 06 Nov 1994 08:49:47 GMT", Some(S(10))),
            ("Sunday, 06-Nov-94 08:50:37 GMT", Some(S(60))),
            ("Sun Nov  6 08:49:40 1994", Some(S(3))),
            ("Sun, 06 Nov 1994 08:49:00 GMT", Some(Duration::ZERO)),
            ("Mon, 07 Nov 1994 08:49:37 GMT", Some(S(120))),
            ("-5", None),
            ("1.5", None),
            ("soon", None),
        ];
        for (header, expected) in table {
            assert_eq!(p.parse_retry_after(header, now), expected, "{header:?}");
        }
        assert_eq!(p.parse_retry_after("", now), None);
    }

    #[test]
    fn statuses_are_classified() {
        let after = Some(S(7));
        let retry = |code, after| Outcome::Retry {
            after,
            reason: RetryReason::Status(code),
        };
        let terminal = |code| Outcome::Terminal {
            reason: TerminalReason::Status(code),
        };
        let table = [
            (200, None, Outcome::Delivered),
            (202, None, Outcome::Delivered),
            (204, after, Outcome::Delivered),
            (299, None, Outcome::Delivered),
            (408, None, retry(408, None)),
            (425, None, retry(425, None)),
            (429, after, retry(429, after)),
            (429, None, retry(429, None)),
            (500, None, retry(500, None)),
            (502, None, retry(502, None)),
            (503, after, retry(503, after)),
            (504, None, retry(504, None)),
            (599, None, retry(599, None)),
            (400, after, terminal(400)),
            (401, None, terminal(401)),
            (403, None, terminal(403)),
            (404, None, terminal(404)),
            (413, None, terminal(413)),
            (422, None, terminal(422)),
            (301, None, terminal(301)),
            (308, None, terminal(308)),
            (
                410,
                None,
                Outcome::Terminal {
                    reason: TerminalReason::Gone,
                },
            ),
            (100, None, retry(100, None)),
            (600, None, retry(600, None)),
        ];
        for (status, retry_after, expected) in table {
            assert_eq!(
                classify_status(status, retry_after),
                expected,
                "status {status}"
            );
        }
    }

    #[test]
    fn transport_failures_are_classified() {
        let retry = |reason| Outcome::Retry {
            after: None,
            reason,
        };
        let table = [
            (TransportFailure::Timeout, retry(RetryReason::Timeout)),
            (TransportFailure::Connect, retry(RetryReason::Connect)),
            (TransportFailure::Other, retry(RetryReason::Transport)),
            (
                TransportFailure::InvalidRequest,
                Outcome::Terminal {
                    reason: TerminalReason::InvalidRequest,
                },
            ),
        ];
        for (failure, expected) in table {
            assert_eq!(classify_transport(failure), expected, "{failure:?}");
        }
    }

    #[test]
    fn reasons_have_metric_labels() {
        assert_eq!(RetryReason::Status(503).to_string(), "http_503");
        assert_eq!(RetryReason::Timeout.to_string(), "timeout");
        assert_eq!(TerminalReason::Gone.to_string(), "gone");
        assert_eq!(TerminalReason::Status(400).to_string(), "http_400");
    }

    #[test]
    fn validate_reports_every_problem() {
        assert!(RetryPolicy::default().validate().is_empty());
        let bad = RetryPolicy {
            initial: Duration::ZERO,
            max: Duration::ZERO,
            max_attempts: 0,
            retry_after_max: S(1),
        };
        assert_eq!(
            bad.validate(),
            vec![PolicyError::ZeroInitial, PolicyError::ZeroAttempts]
        );
        let inverted = RetryPolicy {
            initial: S(10),
            max: S(1),
            ..policy()
        };
        assert_eq!(
            inverted.validate(),
            vec![PolicyError::InitialAboveMax {
                initial: S(10),
                max: S(1)
            }]
        );
    }
}
