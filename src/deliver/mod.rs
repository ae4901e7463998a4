//! The deliver stage, last in the flow (ingest -> normalize -> classify ->
//! route -> deliver): outbox rows become signed HTTP requests to
//! destinations, retried with backoff until delivered or dead-lettered.
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
pub mod text;
pub mod worker;

pub use backoff::{Outcome, RetryPolicy};
pub use message::WebhookMessage;
pub use sender::{Attempt, WebhookSender, install_crypto_provider};
pub use signing::WebhookSecret;
