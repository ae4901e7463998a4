//! The store: the only place with SQL. It keeps incidents (with their
//! timers), their timelines, the alerts seen, and the outbox of deliveries.
//! An alert is acknowledged to its sender only once it and the actions it
//! causes are committed in one [`CommitBatch`].
//!
//! [`Store`] is the seam for backends: SQLite ([`sqlite::SqliteStore`]) is
//! the embedded default; a PostgreSQL backend for several nodes comes
//! later behind the same trait. Calls are blocking; async callers run them
//! on a blocking thread.

pub mod sqlite;

use std::collections::HashMap;

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
}

impl CommitBatch {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.incidents.is_empty()
            && self.incident_alerts.is_empty()
            && self.timeline.is_empty()
            && self.deliveries.is_empty()
            && self.alerts.is_empty()
    }
}

/// One alert of one incident, as the incident tracks it.
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentAlert {
    /// The incident.
    pub incident_id: i64,
    /// The alert's fingerprint (the key of [`Incident::alerts`]).
    pub fingerprint: String,
    /// The alert and what routing knows of it.
    pub alert: TrackedAlert,
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
    /// Not sent: its destination kind has no sender yet.
    Skipped,
}

impl DeliveryStatus {
    /// The name stored and reported.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
            DeliveryStatus::Skipped => "skipped",
        }
    }

    fn parse(text: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Dead,
            DeliveryStatus::Skipped,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
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

/// A store backend.
pub trait Store: Send + Sync + 'static {
    /// Writes a batch atomically (one transaction, durable on return).
    fn commit(&self, batch: &CommitBatch) -> Result<(), StoreError>;
    /// Every incident not yet resolved, to rebuild routing state at start.
    fn active_incidents(&self) -> Result<Vec<Incident>, StoreError>;
    /// The highest incident id ever assigned (0 when none).
    fn max_incident_id(&self) -> Result<i64, StoreError>;
    /// One incident and its timeline, oldest entry first.
    fn incident(&self, id: i64) -> Result<Option<(Incident, Vec<TimelineEntry>)>, StoreError>;
    /// Incidents matching a filter, newest first.
    fn incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>, StoreError>;
    /// Pending deliveries due by `now`, oldest first.
    fn due_deliveries(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// The earliest moment a pending delivery is due.
    fn next_delivery_due(&self) -> Result<Option<OffsetDateTime>, StoreError>;
    /// Records one attempt's result.
    fn record_attempt(&self, id: i64, attempt: &AttemptRecord) -> Result<(), StoreError>;
    /// Deliveries of one incident, oldest first.
    fn deliveries_for(&self, incident_id: i64) -> Result<Vec<Delivery>, StoreError>;
    /// Outbox figures at `now`.
    fn outbox_stats(&self, now: OffsetDateTime) -> Result<OutboxStats, StoreError>;
    /// A random id made when the store was created. It goes into every
    /// webhook-id, so two stores (a wiped one and its successor) never send
    /// the same id for different messages.
    fn instance_id(&self) -> Result<String, StoreError>;
}
