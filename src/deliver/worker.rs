//! The outbox worker: takes due deliveries from the store, sends them, and
//! records each attempt. Retries follow the [`RetryPolicy`]; a 4xx that
//! will never succeed, or running out of attempts, makes a dead letter.
//! Stopping leaves every undelivered row in the store for the next start
//! (delivery is at least once; receivers dedupe on `webhook-id`).

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use std::collections::HashMap;
use time::OffsetDateTime;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::deliver::backoff::{Outcome, RetryPolicy};
use crate::deliver::sender::WebhookSender;
use crate::deliver::vendor;
use crate::metrics::{DestinationLabel, DestinationOutcome, Metrics};
use crate::pipeline::Clock;
use crate::rules::{RuleSet, Value};
use crate::store::{AttemptRecord, Delivery, DeliveryStatus, Store};

/// The worker's settings.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Timeout of one request.
    pub request_timeout: Duration,
    /// Longest sleep between looks at the outbox.
    pub poll: Duration,
}

/// The outbox worker.
pub struct Worker {
    /// Where deliveries wait.
    pub store: Arc<dyn Store>,
    /// The rule set in force (destinations are looked up at send time).
    pub ruleset: Arc<ArcSwap<RuleSet>>,
    /// Sends one request.
    pub sender: WebhookSender,
    /// Backoff and attempt limits.
    pub policy: RetryPolicy,
    /// Delivery metrics.
    pub metrics: Arc<Metrics>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Woken when the pipeline committed deliveries.
    pub ready: Arc<Notify>,
    /// Settings.
    pub settings: WorkerSettings,
}

impl Worker {
    /// Runs until `stop` turns true; attempts in flight finish first.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let slots = this.settings.concurrency.max(1);
        // Deliveries in flight, by row id: each runs as its own task, and
        // the loop keeps looking at the outbox while they run, so a slow
        // destination holds one slot, never the whole worker.
        let mut in_flight: HashMap<tokio::task::Id, i64> = HashMap::new();
        let mut tasks: JoinSet<()> = JoinSet::new();
        loop {
            while let Some(done) = tasks.try_join_next_with_id() {
                reap(done, &mut in_flight);
            }
            if *stop.borrow() {
                break;
            }
            let free = slots.saturating_sub(in_flight.len());
            let fresh: Vec<Delivery> = if free == 0 {
                Vec::new()
            } else {
                let now = this.clock.now();
                let store = this.store.clone();
                // Ask for enough to skip the ones already in flight.
                let limit = free + in_flight.len();
                tokio::task::spawn_blocking(move || store.due_deliveries(now, limit))
                    .await
                    .ok()
                    .and_then(|r| {
                        r.map_err(
                            |e| tracing::error!(error = %e, "Reading the outbox failed; retrying."),
                        )
                        .ok()
                    })
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|d| !in_flight.values().any(|id| *id == d.id))
                    .take(free)
                    .collect()
            };
            if fresh.is_empty() {
                let mut wait = this.wait_for_next(this.clock.now()).await;
                if wait.is_zero() {
                    // What is due is in flight (or slots are full): a task
                    // finishing, or new work, wakes the loop.
                    wait = this.settings.poll;
                }
                tokio::select! {
                    () = this.ready.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                    Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => reap(done, &mut in_flight),
                    _ = stop.changed() => {}
                }
                continue;
            }
            for delivery in fresh {
                let id = delivery.id;
                let this = this.clone();
                let task = tasks.spawn(async move { this.deliver(delivery).await });
                in_flight.insert(task.id(), id);
            }
        }
        // Attempts in flight finish (the caller bounds how long).
        while let Some(done) = tasks.join_next_with_id().await {
            reap(done, &mut in_flight);
        }
        tracing::info!("The delivery worker stopped; undelivered work stays in the store.");
    }

    async fn wait_for_next(&self, now: OffsetDateTime) -> Duration {
        let store = self.store.clone();
        let next = tokio::task::spawn_blocking(move || store.next_delivery_due())
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        match next {
            Some(t) if t > now => Duration::try_from(t - now)
                .unwrap_or(self.settings.poll)
                .min(self.settings.poll),
            Some(_) => Duration::ZERO,
            None => self.settings.poll,
        }
    }

    async fn deliver(&self, delivery: Delivery) {
        let record = self.attempt(&delivery).await;
        let outcome = match record.status {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Pending => "retry",
            DeliveryStatus::Dead => "dead",
            DeliveryStatus::Skipped => "skipped",
        };
        self.metrics
            .deliveries
            .get_or_create(&DestinationOutcome {
                destination: delivery.destination.clone(),
                outcome: outcome.to_string(),
            })
            .inc();
        match record.status {
            DeliveryStatus::Dead => tracing::warn!(
                destination = %delivery.destination, webhook_id = %delivery.webhook_id,
                error = record.error.as_deref().unwrap_or(""),
                "A delivery failed for good and is kept as a dead letter."
            ),
            DeliveryStatus::Pending => tracing::info!(
                destination = %delivery.destination, webhook_id = %delivery.webhook_id,
                error = record.error.as_deref().unwrap_or(""),
                "A delivery attempt failed; it will be retried."
            ),
            _ => {}
        }
        let store = self.store.clone();
        let id = delivery.id;
        let saved = tokio::task::spawn_blocking(move || store.record_attempt(id, &record)).await;
        if !matches!(saved, Ok(Ok(()))) {
            // The row stays pending: the receiver may see it again, and
            // dedupes on webhook-id.
            tracing::error!(delivery = id, "Recording a delivery attempt failed.");
        }
    }

    async fn attempt(&self, delivery: &Delivery) -> AttemptRecord {
        let now = self.clock.now();
        let finished = |status, error: Option<String>| AttemptRecord {
            status,
            next_attempt_at: None,
            http_status: None,
            error,
            at: now,
        };
        let ruleset = self.ruleset.load();
        let Some(destination) = ruleset.destination(&delivery.destination) else {
            return finished(
                DeliveryStatus::Dead,
                Some("the destination is no longer in the rule set".into()),
            );
        };
        // Each kind renders its vendor's request from the stored message
        // at send time; a destination that cannot be sent to as configured
        // (a missing setting, an unset env var) is a dead letter at once.
        let request = match vendor::prepare(
            destination,
            &ruleset.templates,
            delivery.body.as_bytes(),
            &delivery.webhook_id,
            now.unix_timestamp(),
        ) {
            Ok((request, template_failures)) => {
                // A broken template must not stop a page: the built-in
                // words went instead; say so, and count it.
                for failure in template_failures {
                    tracing::warn!(
                        destination = %failure.destination, setting = failure.setting,
                        error = %failure.error,
                        "A message template failed; the built-in words were sent instead."
                    );
                    self.metrics
                        .template_failures
                        .get_or_create(&DestinationLabel {
                            destination: failure.destination,
                        })
                        .inc();
                }
                request
            }
            Err(problem) => return finished(DeliveryStatus::Dead, Some(problem.to_string())),
        };
        let kind = destination.kind;
        let attempt = self
            .sender
            .send_prepared(
                &request,
                timeout_of(destination).unwrap_or(self.settings.request_timeout),
                |reply| vendor::classify(kind, reply),
            )
            .await;
        self.metrics
            .delivery_latency
            .get_or_create(&DestinationLabel {
                destination: delivery.destination.clone(),
            })
            .observe(attempt.elapsed.as_secs_f64());
        let attempts_made = delivery.attempts + 1;
        let (status, next_attempt_at, error) = match attempt.outcome {
            Outcome::Delivered => (DeliveryStatus::Delivered, None, None),
            Outcome::Retry { after, reason } if self.policy.may_retry(attempts_made) => {
                let delay = self.policy.retry_delay(
                    delivery.attempts,
                    jitter(&delivery.webhook_id, attempts_made),
                    after,
                );
                // Saturate: a delay past the calendar (a huge Retry-After
                // under a huge clamp) waits a year rather than panicking.
                let year = time::Duration::days(365);
                let wait = time::Duration::try_from(delay).unwrap_or(year).min(year);
                let next = now.checked_add(wait).unwrap_or(now + time::Duration::DAY);
                (
                    DeliveryStatus::Pending,
                    Some(next),
                    Some(format!("{reason:?}: {}", attempt.response_excerpt)),
                )
            }
            Outcome::Retry { reason, .. } => (
                DeliveryStatus::Dead,
                None,
                Some(format!(
                    "out of attempts after {reason:?}: {}",
                    attempt.response_excerpt
                )),
            ),
            Outcome::Terminal { reason } => (
                DeliveryStatus::Dead,
                None,
                Some(format!("{reason:?}: {}", attempt.response_excerpt)),
            ),
        };
        AttemptRecord {
            status,
            next_attempt_at,
            http_status: attempt.status,
            error,
            at: self.clock.now(),
        }
    }
}

/// Forgets a finished delivery task; a panicked one is logged, and its
/// row stays pending to be tried again.
fn reap(
    done: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
    in_flight: &mut HashMap<tokio::task::Id, i64>,
) {
    let task = match done {
        Ok((task, ())) => task,
        Err(e) => {
            tracing::error!(error = %e, "A delivery task failed; its delivery stays pending.");
            e.id()
        }
    };
    in_flight.remove(&task);
}

/// The destination's own `timeout`, if it sets one.
fn timeout_of(destination: &crate::rules::Destination) -> Option<Duration> {
    match destination.setting("timeout") {
        Some(Value::Duration(secs)) => Some(Duration::from_secs(*secs)),
        _ => None,
    }
}

/// A jitter in [0, 1) that differs between deliveries and attempts, so
/// retries after an outage spread out; derived rather than random so a
/// schedule can be reproduced.
fn jitter(webhook_id: &str, attempt: u32) -> f64 {
    let mut h = std::hash::DefaultHasher::new();
    webhook_id.hash(&mut h);
    attempt.hash(&mut h);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}
