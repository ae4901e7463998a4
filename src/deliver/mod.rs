//! The deliver stage, last in the flow (ingest -> normalize -> classify ->
//! route -> deliver): outbox rows become each destination kind's HTTP
//! request (a vendor's API, or a signed webhook), retried with backoff
//! until delivered or dead-lettered.
//!
//! - [`signing`]: Standard Webhooks signatures ([`signing::sign`],
//!   [`signing::verify`]) and the redacting [`signing::WebhookSecret`].
//! - [`message`]: the versioned JSON body sent to `webhook` destinations
//!   (documented in `docs/webhook.md`) and stable message ids.
//! - [`backoff`]: the pure retry policy: jittered backoff, `Retry-After`,
//!   and classification of statuses and transport failures.
//! - [`isolation`]: per-destination token buckets, circuit breakers and
//!   the retry horizon (when a page fails over), with an explicit clock.
//! - [`sender`]: one HTTP attempt over reqwest, turned into an
//!   [`sender::Attempt`] that is safe to log.
//! - [`vendor`]: each destination kind's request (PagerDuty, Opsgenie,
//!   Slack, Teams, Discord, signed webhooks) and its outcome rules.
//! - [`text`]: the built-in words of a message; [`template`]: a
//!   destination's templates rendered over it, falling back to them.
//! - [`worker`]: the outbox loop: isolation, retries, failover to a
//!   severity's `fallback`, disabled destinations, dead letters.
//!
//! All but `sender` and `worker` are pure (no I/O, no clock, no
//! randomness) and tested with plain `#[test]`.

pub mod backoff;
pub mod isolation;
pub mod message;
pub mod sender;
pub mod signing;
pub mod template;
pub mod text;
pub mod vendor;
pub mod worker;

pub use backoff::{Outcome, RetryPolicy};
pub use message::WebhookMessage;
pub use sender::{Attempt, WebhookSender, install_crypto_provider};
pub use signing::WebhookSecret;
