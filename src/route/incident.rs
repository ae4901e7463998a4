//! Incident state: what the route stage decides over, and what the store
//! keeps. Plain data with serde, so the store can persist an incident as
//! one row and load it back after a restart with every timer intact.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::AlertSet;
use crate::model::{Alert, AlertStatus, Explanation, Severity, SharedStr};

/// Where an incident is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    /// Declared, gathering related alerts for the group's `wait` before
    /// its first page.
    Gathering,
    /// Paged; open until every alert resolves or a person resolves it.
    Open,
    /// Over. A later alert with the same group key opens a new incident.
    Resolved,
}

impl IncidentStatus {
    /// The name used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Gathering => "gathering",
            IncidentStatus::Open => "open",
            IncidentStatus::Resolved => "resolved",
        }
    }
}

/// An alert as the incident tracks it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrackedAlert {
    /// The alert as last received.
    pub alert: Alert,
    /// Its classification, `None` when no rule and no `otherwise` applied.
    pub severity: Option<Severity>,
    /// The rule that decided it, if any.
    pub rule: Option<SharedStr>,
    /// The classification's explanation, one fact per line.
    pub explanation: Explanation,
    /// When sevroute first saw it in this incident.
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: OffsetDateTime,
    /// When it was last received (Prometheus re-sends every minute).
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    /// Whether it has been announced to the incident's destinations.
    pub announced: bool,
}

impl TrackedAlert {
    /// True while the alert fires.
    pub fn is_firing(&self) -> bool {
        self.alert.status == AlertStatus::Firing
    }
}

/// The incident's timers. Each is a moment at which something is owed;
/// `None` when nothing is. They live in the incident row, so they survive
/// restarts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timers {
    /// End of the gathering wait: the first page goes out then.
    #[serde(with = "time::serde::rfc3339::option")]
    pub group_wait_until: Option<OffsetDateTime>,
    /// Earliest moment the next batch of joining alerts may be announced.
    #[serde(with = "time::serde::rfc3339::option")]
    pub announce_after: Option<OffsetDateTime>,
    /// When the next status update is due.
    #[serde(with = "time::serde::rfc3339::option")]
    pub cadence_due: Option<OffsetDateTime>,
    /// When an unacknowledged page escalates.
    #[serde(with = "time::serde::rfc3339::option")]
    pub ack_due: Option<OffsetDateTime>,
}

/// An SLO's error budget as an incident first saw it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetMark {
    /// Fraction of the period's budget left at that moment.
    pub remaining_at_start: f64,
    /// Whether the incident has since consumed more than
    /// [`crate::route::POSTMORTEM_BUDGET_FRACTION`] of it.
    pub over_threshold: bool,
}

/// One incident and everything routing needs to know about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Stable id, assigned when the incident is declared.
    pub id: i64,
    /// The group key: the rule set's `group by` labels and their values.
    pub key: String,
    /// The `group by` labels and their values.
    pub group_labels: BTreeMap<String, String>,
    /// A short human title.
    pub title: String,
    /// Where it is in its life.
    pub status: IncidentStatus,
    /// The severity last announced (paged or notified); `None` while
    /// gathering.
    pub severity: Option<Severity>,
    /// A human override: when set, classification no longer moves the
    /// severity.
    pub pinned: Option<Severity>,
    /// When it was declared.
    #[serde(with = "time::serde::rfc3339")]
    pub declared_at: OffsetDateTime,
    /// When its first page went out.
    #[serde(with = "time::serde::rfc3339::option")]
    pub opened_at: Option<OffsetDateTime>,
    /// When it was acknowledged.
    #[serde(with = "time::serde::rfc3339::option")]
    pub acked_at: Option<OffsetDateTime>,
    /// When it was resolved.
    #[serde(with = "time::serde::rfc3339::option")]
    pub resolved_at: Option<OffsetDateTime>,
    /// Alerts by fingerprint (hex), with the counts routing reads on
    /// every event kept up to date as they change.
    pub alerts: AlertSet,
    /// Destinations paged so far: each gets a resolve event at the end.
    pub paged: BTreeSet<String>,
    /// Whether the severity's policy, or the error budget the incident
    /// consumed, requires a postmortem (sticky: once required, always
    /// required).
    pub postmortem_required: bool,
    /// Per SLO the incident's rules read: the budget left when the incident
    /// was first seen to touch it, and whether its consumption since
    /// crossed the postmortem threshold. (Absent in rows written before
    /// this field existed.)
    #[serde(default)]
    pub slo_budgets: BTreeMap<String, BudgetMark>,
    /// What is owed and when.
    pub timers: Timers,
    /// Number of actions issued so far; numbers each action, so delivery
    /// ids are stable across retries and restarts.
    pub action_seq: u64,
}

impl Incident {
    /// The incident without its alerts: what the store keeps in the
    /// incident's own row (each alert has a row of its own, so a change to
    /// one alert rewrites that alert, not every alert of the incident).
    pub fn header(&self) -> Incident {
        Incident {
            id: self.id,
            key: self.key.clone(),
            group_labels: self.group_labels.clone(),
            title: self.title.clone(),
            status: self.status,
            severity: self.severity,
            pinned: self.pinned,
            declared_at: self.declared_at,
            opened_at: self.opened_at,
            acked_at: self.acked_at,
            resolved_at: self.resolved_at,
            alerts: AlertSet::default(),
            paged: self.paged.clone(),
            postmortem_required: self.postmortem_required,
            slo_budgets: self.slo_budgets.clone(),
            timers: self.timers.clone(),
            action_seq: self.action_seq,
        }
    }

    /// The earliest moment a timer is due, for the store's timer index.
    pub fn next_due(&self) -> Option<OffsetDateTime> {
        let t = &self.timers;
        let expiry = self.alerts.earliest_expiry();
        [
            t.group_wait_until,
            t.announce_after.filter(|_| self.has_unannounced()),
            t.cadence_due,
            t.ack_due,
            expiry,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// True when some firing alert has not been announced yet.
    pub fn has_unannounced(&self) -> bool {
        self.alerts.unannounced() > 0
    }

    /// The severity classification gives now: the most severe among the
    /// firing alerts, unless a person pinned one.
    pub fn effective_severity(&self) -> Option<Severity> {
        self.pinned.or_else(|| self.alerts.most_severe_firing())
    }

    /// The firing alert that sets the severity (the first, by fingerprint,
    /// among the most severe), for explanations.
    pub fn deciding_alert(&self) -> Option<&TrackedAlert> {
        let severity = self.effective_severity()?;
        self.alerts
            .values()
            .find(|a| a.is_firing() && a.severity == Some(severity))
    }

    /// True while the incident is not resolved.
    pub fn is_active(&self) -> bool {
        self.status != IncidentStatus::Resolved
    }
}
