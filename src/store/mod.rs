//! The store: the only place with SQL. It keeps incidents (with their
//! timers), their timelines, the alerts seen, the outbox of deliveries,
//! and the SLI samples pushed to SLOs.
//! An alert is acknowledged to its sender only once it and the actions it
//! causes are committed in one [`CommitBatch`].
//!
//! [`Store`] is the seam for backends: SQLite ([`sqlite::SqliteStore`]) is
//! the embedded default; a PostgreSQL backend for several nodes comes
//! later behind the same trait. Calls are blocking; async callers run them
//! on a blocking thread.

mod alert_codec;
pub mod sqlite;

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use thiserror::Error;
use time::OffsetDateTime;

use crate::model::Severity;
use crate::route::{ActionKind, Incident, IncidentStatus, TimelineEntry, TrackedAlert};

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// A stored row could not be read back (corrupt or from a newer version).
    #[error("stored {what} {id} cannot be read: {message}")]
    Corrupt {
        /// What kind of row.
        what: &'static str,
        /// Its id.
        id: i64,
        /// What is wrong.
        message: String,
    },
    /// The database file or its folder cannot be opened.
    #[error("cannot open the store at {path}: {message}")]
    Open {
        /// The path.
        path: String,
        /// Why.
        message: String,
    },
    /// The batch is not answered as stored: its commit, or one before it
    /// that it was routed on, failed, or the store can no longer make
    /// writes durable (what it wrote may be in the file, not on disk).
    #[error("the store did not take the batch: {message}")]
    Refused {
        /// The failure, in plain words.
        message: String,
    },
    /// A commit went in but could not be made durable (the file's sync
    /// failed): it may be lost in a power loss.
    #[error("the commit could not be made durable ({path}): {message}")]
    Flush {
        /// The file that would not sync.
        path: String,
        /// Why.
        message: String,
    },
}

/// Everything one group commit writes, atomically.
#[derive(Debug, Default)]
pub struct CommitBatch {
    /// Incidents to insert or replace (whole state, timers included). The
    /// alerts an incident carries are written too; the router sends
    /// incidents without alerts ([`Incident::header`]) and only the alerts
    /// that changed in `incident_alerts`.
    pub incidents: Vec<Incident>,
    /// Alerts of incidents to insert or replace, each by incident id and
    /// fingerprint.
    pub incident_alerts: Vec<IncidentAlert>,
    /// Refreshes of incident alerts that changed nothing but when the
    /// alert was last seen and when it ends: written as those two values,
    /// not as the whole alert. Applied after `incident_alerts`.
    pub alert_seen: Vec<AlertSeen>,
    /// When each incident's next timer is due, by incident id, for
    /// incidents sent without their alerts (whose expiry
    /// [`Incident::next_due`] then cannot see). Incidents not listed are
    /// asked.
    pub next_due: HashMap<i64, Option<OffsetDateTime>>,
    /// Timeline entries to append, by incident id.
    pub timeline: Vec<(i64, TimelineEntry)>,
    /// Deliveries to enqueue.
    pub deliveries: Vec<NewDelivery>,
    /// Alerts seen, by fingerprint.
    pub alerts: Vec<AlertRecord>,
    /// SLI samples pushed to SLOs, accepted by the SLO engine.
    pub slo_samples: Vec<SloSampleRecord>,
    /// Pushed samples no longer needed: per SLO, those filed before the
    /// given unix second are deleted.
    pub slo_prune: Vec<(String, i64)>,
}

impl CommitBatch {
    /// Appends a batch routed after this one, so that writing the two as
    /// one leaves what writing them one after the other would.
    ///
    /// A commit writes whole incidents (with their alerts), then whole
    /// alerts, then logs refreshes, whatever part they came from. So an
    /// alert that `later` writes whole, alone or in its incident, drops
    /// what this batch wrote of it (a whole alert written here would land
    /// after `later`'s incident, a refresh logged here after either); and
    /// a timer listed here for an incident `later` writes is dropped, as
    /// `later` has the current one, listed or asked. Everything else keeps
    /// its order: parts are appended. (Prunes of SLO samples run after all
    /// samples; a cut lies a whole period before the oldest sample the engine
    /// accepts, so it deletes the same rows either way.)
    pub fn append(&mut self, later: CommitBatch) {
        let mut written_whole: std::collections::HashSet<(i64, &str)> = later
            .incident_alerts
            .iter()
            .map(|a| (a.incident_id, a.fingerprint.as_str()))
            .collect();
        for incident in &later.incidents {
            written_whole.extend(incident.alerts.keys().map(|f| (incident.id, f.as_str())));
            self.next_due.remove(&incident.id);
        }
        if !written_whole.is_empty() {
            let superseded = |incident_id: i64, fingerprint: &str| {
                written_whole.contains(&(incident_id, fingerprint))
            };
            self.incident_alerts
                .retain(|a| !superseded(a.incident_id, &a.fingerprint));
            self.alert_seen
                .retain(|s| !superseded(s.incident_id, &s.fingerprint));
        }
        self.incidents.extend(later.incidents);
        self.incident_alerts.extend(later.incident_alerts);
        self.alert_seen.extend(later.alert_seen);
        self.next_due.extend(later.next_due);
        self.timeline.extend(later.timeline);
        self.deliveries.extend(later.deliveries);
        self.alerts.extend(later.alerts);
        self.slo_samples.extend(later.slo_samples);
        self.slo_prune.extend(later.slo_prune);
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.incidents.is_empty()
            && self.incident_alerts.is_empty()
            && self.alert_seen.is_empty()
            && self.timeline.is_empty()
            && self.deliveries.is_empty()
            && self.alerts.is_empty()
            && self.slo_samples.is_empty()
            && self.slo_prune.is_empty()
    }
}

/// One SLI sample pushed to an SLO, as the engine accepted it: replayed in
/// order at start (with its own `received_at` as the engine's `now`), it
/// rebuilds exactly the counts it made.
#[derive(Clone, Debug, PartialEq)]
pub struct SloSampleRecord {
    /// The SLO's name.
    pub slo: String,
    /// Unix second the sample was accepted (the engine's `now` then).
    pub received_at: i64,
    /// Unix second the sample is for.
    pub at: i64,
    /// Cumulative counters rather than interval counts.
    pub cumulative: bool,
    /// Good events (or the good counter).
    pub good: f64,
    /// All events (or the total counter).
    pub total: f64,
}

/// One alert of one incident, as the incident tracks it, to be written
/// whole. The writer turns it into JSON, in one buffer it reuses: the
/// router task is the serial part of routing new alerts, and since whole
/// writes are appended to the recent tables the writer has room (the
/// router's JSON was a quarter of its time).
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentAlert {
    /// The incident.
    pub incident_id: i64,
    /// The alert's fingerprint (the key of [`Incident::alerts`]).
    pub fingerprint: String,
    /// The alert as tracked when the batch was routed: shared with the
    /// incident's set, which copies it if it changes before the commit.
    pub alert: Arc<TrackedAlert>,
}

impl IncidentAlert {
    /// `alert` of incident `incident_id`, as it is now.
    pub fn new(incident_id: i64, fingerprint: String, alert: impl Into<Arc<TrackedAlert>>) -> Self {
        IncidentAlert {
            incident_id,
            fingerprint,
            alert: alert.into(),
        }
    }
}

/// A refresh of an incident alert already in the store that changed only
/// [`TrackedAlert::last_seen`] and the alert's `ends_at`.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertSeen {
    /// The incident.
    pub incident_id: i64,
    /// The alert's fingerprint.
    pub fingerprint: String,
    /// When it was last received.
    pub last_seen: OffsetDateTime,
    /// When it ends unless refreshed, if the sender said.
    pub ends_at: Option<OffsetDateTime>,
}

/// An alert as last seen, for lookups by fingerprint.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertRecord {
    /// Alertmanager-compatible fingerprint (hex).
    pub fingerprint: String,
    /// The alert as JSON.
    pub alert_json: String,
    /// The incident it belongs to, if any.
    pub incident_id: Option<i64>,
    /// When it was received.
    pub received_at: OffsetDateTime,
}

/// A delivery to enqueue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDelivery {
    /// The incident it is about.
    pub incident_id: i64,
    /// The destination's name in the rule set.
    pub destination: String,
    /// What it asks.
    pub kind: ActionKind,
    /// The idempotency id receivers see (`webhook-id`), stable across
    /// retries and restarts.
    pub webhook_id: String,
    /// The rendered body.
    pub body: String,
    /// When it was enqueued; first attempt is due then.
    pub created_at: OffsetDateTime,
}

/// Where a delivery is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// The receiver accepted it.
    Delivered,
    /// It failed for good (a 4xx that will never succeed, or out of attempts).
    Dead,
    /// Not sent: its destination kind has no sender yet, or a newer
    /// reminder of the same kind replaced it (coalesced).
    Skipped,
    /// Its destination failed past the retry horizon or was disabled; a
    /// copy went to the severity's fallback destination. Replayable, as a
    /// dead letter is.
    FailedOver,
}

impl DeliveryStatus {
    /// The name stored and reported.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
            DeliveryStatus::Skipped => "skipped",
            DeliveryStatus::FailedOver => "failed_over",
        }
    }

    /// Every status, in the order above.
    pub const ALL: [DeliveryStatus; 5] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Delivered,
        DeliveryStatus::Dead,
        DeliveryStatus::Skipped,
        DeliveryStatus::FailedOver,
    ];

    /// Reads a stored or requested status name.
    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A delivery from the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Row id.
    pub id: i64,
    /// The incident it is about.
    pub incident_id: i64,
    /// The destination's name.
    pub destination: String,
    /// What it asks.
    pub kind: ActionKind,
    /// The idempotency id.
    pub webhook_id: String,
    /// The rendered body.
    pub body: String,
    /// Where it is.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due.
    pub next_attempt_at: OffsetDateTime,
    /// When it was enqueued.
    pub created_at: OffsetDateTime,
    /// The HTTP status of the last attempt, when it got one.
    pub last_http_status: Option<u16>,
    /// What went wrong last, bounded and free of secrets.
    pub last_error: Option<String>,
    /// When it stopped being pending (delivered, dead, failed over).
    pub finished_at: Option<OffsetDateTime>,
    /// The delivery this one replaces, when it is a failover.
    pub failover_of: Option<i64>,
}

impl Delivery {
    /// A page or an escalation: work with a short retry horizon that fails
    /// over rather than retrying quietly for hours.
    pub fn is_urgent(&self) -> bool {
        matches!(self.kind, ActionKind::Page | ActionKind::Escalate)
    }
}

/// What one attempt looked like on the wire, kept with the delivery's
/// history (and so with a dead letter). Free of secrets: no request
/// headers, no URL; response parts are scrubbed by the sender.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttemptDetail {
    /// A short outcome label: `delivered`, `http_503`, `timeout`, ...
    pub outcome: String,
    /// How long the attempt took, in milliseconds.
    pub elapsed_ms: u64,
    /// A bounded excerpt of the response headers (`name: value` lines).
    pub response_headers: String,
    /// A bounded excerpt of the response body (or of the transport error).
    pub response_excerpt: String,
}

/// One past attempt, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttemptLog {
    /// When it ended.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The delivery's status after it.
    pub status: DeliveryStatus,
    /// The HTTP status, when there was a response.
    pub http_status: Option<u16>,
    /// What went wrong.
    pub error: Option<String>,
    /// Outcome label (empty when the attempt never reached the wire).
    pub outcome: String,
    /// Duration in milliseconds.
    pub elapsed_ms: u64,
    /// Response headers excerpt.
    pub response_headers: String,
    /// Response body excerpt.
    pub response_excerpt: String,
}

/// Filters for listing deliveries.
#[derive(Clone, Debug, Default)]
pub struct DeliveryFilter {
    /// Only deliveries in this status.
    pub status: Option<DeliveryStatus>,
    /// Only deliveries that finished (or, when pending, were enqueued) at
    /// or after this moment.
    pub since: Option<OffsetDateTime>,
    /// At most this many, newest first (0 means 100).
    pub limit: usize,
}

/// A destination turned off by its receiver (410 Gone, or a vendor's "no
/// such channel"), until the rules are reloaded or it is re-enabled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DisabledDestination {
    /// The destination's name.
    pub name: String,
    /// Why, free of secrets.
    pub reason: String,
    /// Since when.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// The result of one delivery attempt, to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptRecord {
    /// The status after this attempt.
    pub status: DeliveryStatus,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<OffsetDateTime>,
    /// The HTTP status, when there was a response.
    pub http_status: Option<u16>,
    /// What went wrong, bounded and free of secrets.
    pub error: Option<String>,
    /// When the attempt ended.
    pub at: OffsetDateTime,
    /// The wire detail, when a request was sent.
    pub detail: Option<AttemptDetail>,
}

/// Filters for listing incidents.
#[derive(Clone, Debug, Default)]
pub struct IncidentFilter {
    /// Only incidents in this status.
    pub status: Option<IncidentStatus>,
    /// Only incidents at this severity.
    pub severity: Option<Severity>,
    /// At most this many, newest first.
    pub limit: usize,
}

/// Outbox figures for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Deliveries waiting.
    pub pending: u64,
    /// Age in seconds of the oldest waiting delivery.
    pub oldest_pending_age_secs: u64,
}

/// What makes a batch committed by [`Store::commit_to_flush`] durable. A
/// flush makes durable every batch committed before it was made, so of
/// several waiting to run, the last one made is enough.
#[must_use = "a batch is durable only once its flush ran"]
pub struct Flush(Option<Box<dyn FnOnce() -> Result<(), StoreError> + Send>>);

impl Flush {
    /// A flush that runs `flush`.
    pub fn new(flush: impl FnOnce() -> Result<(), StoreError> + Send + 'static) -> Flush {
        Flush(Some(Box::new(flush)))
    }

    /// A flush with nothing to do: the commit was durable as it returned.
    pub fn done() -> Flush {
        Flush(None)
    }

    /// Makes the batch (and every one committed before it) durable.
    pub fn run(self) -> Result<(), StoreError> {
        self.0.map_or(Ok(()), |flush| flush())
    }
}

impl std::fmt::Debug for Flush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Flush"
        } else {
            "Flush(done)"
        })
    }
}

/// A store backend.
pub trait Store: Send + Sync + 'static {
    /// Writes a batch atomically (one transaction, durable on return).
    fn commit(&self, batch: &CommitBatch) -> Result<(), StoreError>;
    /// [`Store::commit`], except that the batch may be durable only once
    /// the returned [`Flush`] ran: the caller can commit the next batch
    /// while this one is flushed, and must not report it durable before.
    /// The batch is shared, so a store may work on parts of it on other
    /// threads meanwhile. A store whose commits are durable as they return
    /// gives a flush with nothing to do.
    fn commit_to_flush(&self, batch: Arc<CommitBatch>) -> Result<Flush, StoreError> {
        self.commit(&batch)?;
        Ok(Flush::done())
    }
    /// Every incident not yet resolved, to rebuild routing state at start.
    fn active_incidents(&self) -> Result<Vec<Incident>, StoreError>;
    /// The highest incident id ever assigned (0 when none).
    fn max_incident_id(&self) -> Result<i64, StoreError>;
    /// One incident and its timeline, oldest entry first.
    fn incident(&self, id: i64) -> Result<Option<(Incident, Vec<TimelineEntry>)>, StoreError>;
    /// Incidents matching a filter, newest first.
    fn incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>, StoreError>;
    /// Pending deliveries due by `now`, at most `limit`, a few of each
    /// destination's at a time, pages first. `in_flight`: how many rows
    /// the caller is already working on (still pending, and skipped by
    /// it), by which each destination's share grows, so they never crowd
    /// out its next rows.
    fn due_deliveries(
        &self,
        now: OffsetDateTime,
        limit: usize,
        in_flight: usize,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// The earliest moment a pending delivery is due.
    fn next_delivery_due(&self) -> Result<Option<OffsetDateTime>, StoreError>;
    /// Records attempts' results (by delivery id), each kept in its
    /// delivery's history, in one transaction: all or none.
    fn record_attempts(&self, attempts: &[(i64, AttemptRecord)]) -> Result<(), StoreError>;
    /// Moves a pending delivery's next attempt to `at` without counting an
    /// attempt (held by its destination's rate limit or open circuit).
    fn postpone(&self, id: i64, at: OffsetDateTime) -> Result<(), StoreError>;
    /// Gives up on delivery `id` at its destination, atomically: records
    /// `attempt` (its status is [`DeliveryStatus::FailedOver`]), enqueues
    /// `to` linked to `id`, and appends `note` to the incident's timeline.
    /// Returns the new delivery's id (the existing one when `to`'s webhook
    /// id was already enqueued).
    fn fail_over(
        &self,
        id: i64,
        attempt: &AttemptRecord,
        to: &NewDelivery,
        note: &TimelineEntry,
    ) -> Result<i64, StoreError>;
    /// Marks as skipped every pending reminder (`update_due`) that a newer
    /// pending reminder to the same incident and destination makes
    /// redundant. Returns how many.
    fn coalesce_repeats(&self, now: OffsetDateTime) -> Result<usize, StoreError>;
    /// Deliveries matching a filter, newest first.
    fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError>;
    /// One delivery and its attempts, oldest first.
    fn delivery(&self, id: i64) -> Result<Option<(Delivery, Vec<AttemptLog>)>, StoreError>;
    /// The row id of the delivery with this webhook id, once committed.
    fn delivery_id(&self, webhook_id: &str) -> Result<Option<i64>, StoreError>;
    /// Puts a dead or failed-over delivery back in the outbox, due at `now`
    /// with a fresh attempt count and its original webhook id. `Ok(None)`
    /// when there is no such delivery, `Ok(Some(false))` when it is not
    /// dead or failed over.
    fn requeue(&self, id: i64, now: OffsetDateTime) -> Result<Option<bool>, StoreError>;
    /// Requeues every dead or failed-over delivery that finished at or
    /// after `since`; returns their ids.
    fn requeue_since(
        &self,
        since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Vec<i64>, StoreError>;
    /// Marks a destination disabled (kept across restarts).
    fn disable_destination(
        &self,
        name: &str,
        reason: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// Re-enables one destination; false when it was not disabled.
    fn enable_destination(&self, name: &str) -> Result<bool, StoreError>;
    /// Re-enables every destination (the rules were reloaded).
    fn enable_all_destinations(&self) -> Result<(), StoreError>;
    /// The destinations disabled now.
    fn disabled_destinations(&self) -> Result<Vec<DisabledDestination>, StoreError>;
    /// Deliveries of one incident, oldest first.
    fn deliveries_for(&self, incident_id: i64) -> Result<Vec<Delivery>, StoreError>;
    /// Outbox figures at `now`.
    fn outbox_stats(&self, now: OffsetDateTime) -> Result<OutboxStats, StoreError>;
    /// A random id made when the store was created. It goes into every
    /// webhook-id, so two stores (a wiped one and its successor) never send
    /// the same id for different messages.
    fn instance_id(&self) -> Result<String, StoreError>;
    /// Every pushed SLI sample kept, in the order they were accepted.
    fn slo_samples(&self) -> Result<Vec<SloSampleRecord>, StoreError>;
}
