//! Route: pure decisions over incident state. Given an incident, an event
//! (an alert arrives, a timer is due, a person acts) and `now`, it updates
//! the incident and says which actions are owed (page, notify, update due,
//! escalate, resolve) and what the timeline records. No clock, no I/O: the
//! pipeline persists the result and the deliver stage carries it out.
//!
//! The incident practice it encodes (design.md §3): severity re-evaluated
//! on every change; an escalation pages at once, a de-escalation notifies;
//! a human override is recorded and pins the severity; a status update is
//! due every `cadence`; an unacknowledged page escalates after `ack timeout`.

mod alert_set;
mod incident;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::OffsetDateTime;

pub use alert_set::{AlertSet, AlertWrite, Changed, Iter as AlertSetIter, Slot};
pub use incident::{BudgetMark, Incident, IncidentStatus, Timers, TrackedAlert};

use crate::classify::Classification;
use crate::model::{Alert, AlertStatus, Explanation, Severity, SharedStr, push_quoted};
use crate::rules::{Grouping, RuleSet, SeverityPolicy};

/// What an action asks a destination to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Page a responder.
    Page,
    /// Tell, without paging.
    Notify,
    /// A status update is due (the cadence passed).
    UpdateDue,
    /// A page went unacknowledged: page the escalation target.
    Escalate,
    /// The incident is over: close what was paged.
    Resolve,
    /// A person acknowledged the incident: tell what was paged, so the
    /// vendor stops notifying (PagerDuty `acknowledge`, Opsgenie acknowledge).
    Acknowledge,
}

impl ActionKind {
    /// The name used in webhook bodies, the store and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Page => "page",
            ActionKind::Notify => "notify",
            ActionKind::UpdateDue => "update_due",
            ActionKind::Escalate => "escalate",
            ActionKind::Resolve => "resolve",
            ActionKind::Acknowledge => "acknowledge",
        }
    }
}

/// One delivery owed to one destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    /// What to do.
    pub kind: ActionKind,
    /// The destination's name in the rule set.
    pub destination: String,
    /// The incident's action number: with the incident id it names the
    /// delivery, stably across retries and restarts.
    pub seq: u64,
    /// Why, in plain words.
    pub reason: String,
}

/// What the timeline records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimelineKind {
    /// The incident was declared (gathering alerts).
    Declared,
    /// The first page went out.
    Opened,
    /// An alert joined (or fired again).
    AlertJoined,
    /// An alert resolved.
    AlertResolved,
    /// Joining alerts were announced.
    Announced,
    /// Severity rose.
    Escalated,
    /// Severity fell.
    Deescalated,
    /// A person set the severity.
    SeverityOverride,
    /// A status update fell due.
    UpdateDue,
    /// A person posted a status update.
    StatusUpdate,
    /// A person acknowledged the page.
    Acknowledged,
    /// The page went unacknowledged too long and escalated.
    AckTimeout,
    /// The severity's policy requires a postmortem.
    PostmortemRequired,
    /// The incident ended.
    Resolved,
    /// A delivery gave up on its destination and went to the severity's
    /// fallback destination instead.
    FailedOver,
}

/// One timeline entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What happened.
    pub kind: TimelineKind,
    /// Who did it, for human actions.
    pub actor: Option<String>,
    /// What happened, in plain words. Empty in a line that names its
    /// `alert` instead, until it is rendered ([`TimelineEntry::text_in`]).
    pub text: String,
    /// For the line of an alert joining, its fingerprint: the text ("X
    /// joined") is rendered from the alert's labels (which its
    /// fingerprint fixes) when the line is read, not built and stored
    /// with every new alert of a storm. `None` once rendered, and in
    /// every other line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
}

impl TimelineEntry {
    /// The line's text, rendered from `incident`'s alert when it names one.
    pub fn text_in(&self, incident: &Incident) -> std::borrow::Cow<'_, str> {
        match &self.alert {
            None => std::borrow::Cow::Borrowed(&self.text),
            Some(fingerprint) => std::borrow::Cow::Owned(match incident.alerts.get(fingerprint) {
                Some(alert) => format!("{} joined", describe_tracked(alert)),
                // An incident keeps every alert it was given; this is a
                // line read without its incident's alerts.
                None => format!("alert {fingerprint} joined"),
            }),
        }
    }

    /// Renders every line of `timeline` that names an alert of
    /// `incident`, as [`TimelineEntry::text_in`] does, so that the lines
    /// read as plain text.
    pub fn render_all(timeline: &mut [TimelineEntry], incident: &Incident) {
        for entry in timeline.iter_mut().filter(|e| e.alert.is_some()) {
            entry.text = entry.text_in(incident).into_owned();
            entry.alert = None;
        }
    }
}

/// Why an incident's alerts changed, for the line a severity change
/// writes. A joining alert (most of a storm) is described only if the
/// severity changes.
enum Why {
    /// Already described.
    Text(String),
    /// The alert with this fingerprint joined.
    Joined(String),
}

impl Why {
    fn describe(&self, incident: &Incident) -> String {
        match self {
            Why::Text(text) => text.clone(),
            Why::Joined(fingerprint) => incident
                .alerts
                .get(fingerprint)
                .map(describe_tracked)
                .unwrap_or_else(|| format!("alert {fingerprint}")),
        }
    }
}

/// The outcome of routing one event: actions owed and timeline entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Deliveries owed, in order.
    pub actions: Vec<Action>,
    /// Timeline entries, in order.
    pub timeline: Vec<TimelineEntry>,
}

impl Decision {
    /// True when the decision reaches past the alerts it tracked: an
    /// action, or a timeline entry other than an alert joining or
    /// resolving. For an alert event, only such a decision changes the
    /// incident's own state (status, severity, timers, what was paged);
    /// otherwise only its alerts changed.
    pub fn reaches_beyond_its_alerts(&self) -> bool {
        !self.actions.is_empty()
            || self.timeline.iter().any(|e| {
                !matches!(
                    e.kind,
                    TimelineKind::AlertJoined | TimelineKind::AlertResolved
                )
            })
    }
}

/// An alert with its classification, ready for routing.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassifiedAlert {
    /// The alert.
    pub alert: Alert,
    /// The fingerprint (hex) of the alert's labels as it was classified,
    /// computed once rather than at each lookup while routing.
    pub fingerprint: String,

    /// Its severity, if any rule or `otherwise` gave one.
    pub severity: Option<Severity>,
    /// The deciding rule's name.
    pub rule: Option<SharedStr>,
    /// The explanation lines.
    pub explanation: Explanation,
}

impl ClassifiedAlert {
    /// Pairs an alert with its classification.
    pub fn new(alert: Alert, classification: &Classification) -> Self {
        let rule = match &classification.decided_by {
            crate::classify::Decision::Rule { name, .. } => Some(SharedStr::from(name.as_str())),
            _ => None,
        };
        ClassifiedAlert {
            fingerprint: alert.fingerprint().to_string(),
            alert,
            severity: classification.severity,
            rule,
            explanation: Explanation::from_text(&classification.explain()),
        }
    }
}

/// Something that happens to an incident.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// An alert for this incident's group arrived (new, refreshed or
    /// resolved).
    Alert(ClassifiedAlert),
    /// Time passed: act on every timer due by `now`.
    Tick,
    /// SLO burn changed: the incident's alerts, classified again against
    /// the new burn. Alerts the incident does not track are ignored.
    Reclassify(Vec<ClassifiedAlert>),
    /// A person acknowledged the page.
    Ack {
        /// Who.
        by: String,
    },
    /// A person resolved the incident.
    Resolve {
        /// Who.
        by: String,
        /// Why, if they said.
        reason: Option<String>,
    },
    /// A person posted a status update; the cadence clock restarts.
    StatusUpdate {
        /// Who.
        by: String,
        /// The update.
        text: String,
    },
    /// The error budget now left of SLOs the incident's rules read
    /// (name, fraction of the period's budget left, period in seconds):
    /// an incident that consumes more than
    /// [`POSTMORTEM_BUDGET_FRACTION`] of one requires a postmortem.
    Budgets(Vec<(String, f64, u64)>),
    /// A person set the severity; it stays pinned.
    SetSeverity {
        /// Who.
        by: String,
        /// The new severity.
        severity: Severity,
        /// Why.
        reason: String,
    },
}

/// A human action that does not apply to the incident in its state.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RouteError {
    /// The incident is already resolved.
    #[error("incident {0} is resolved")]
    Resolved(i64),
    /// The incident's current pages are already acknowledged.
    #[error("incident {0} is already acknowledged")]
    AlreadyAcked(i64),
    /// The incident has not paged anyone yet (it is gathering alerts).
    #[error("incident {0} has not paged anyone yet")]
    NotPaged(i64),
}

/// The group key of an alert under the rule set's grouping: the `group by`
/// labels and their values (missing ones read `""`), as text and as a map.
///
/// The alert an SLO rule raises groups by its `slo` label alone, whatever
/// the `group by`: the SLO's incident is its own (alerts grouped `by slo`
/// join it).
pub fn group_key(grouping: &Grouping, alert: &Alert) -> (String, BTreeMap<String, String>) {
    let labels: BTreeMap<String, String> = match alert.slo_rule_alert_of() {
        Some(slo) => [("slo".to_string(), slo.to_string())].into_iter().collect(),
        None => grouping
            .by
            .iter()
            .map(|name| (name.clone(), alert.label(name).to_string()))
            .collect(),
    };
    (group_key_text(grouping, alert), labels)
}

/// The text of [`group_key`] alone, `{alertname="X",service="y"}`: what
/// every ingested alert needs (to find its incident), built in one string
/// without the map of labels.
pub fn group_key_text(grouping: &Grouping, alert: &Alert) -> String {
    let mut key = String::with_capacity(64);
    key.push('{');
    let mut add = |name: &str, value: &str| {
        if key.len() > 1 {
            key.push(',');
        }
        key.push_str(name);
        key.push('=');
        push_quoted(&mut key, value);
    };
    match alert.slo_rule_alert_of() {
        Some(slo) => add("slo", slo),
        // In name order, each name once, as the map orders them; a rule
        // set's `group by` is usually written so already.
        None if grouping.by.windows(2).all(|w| w[0] < w[1]) => {
            for name in &grouping.by {
                add(name, alert.label(name));
            }
        }
        None => {
            let mut names: Vec<&str> = grouping.by.iter().map(String::as_str).collect();
            names.sort_unstable();
            names.dedup();
            for name in names {
                add(name, alert.label(name));
            }
        }
    }
    key.push('}');
    key
}

/// True when the alert would declare an incident of its own (it fires
/// and has a severity).
pub fn opens_an_incident(alert: &ClassifiedAlert) -> bool {
    alert.alert.status == AlertStatus::Firing && alert.severity.is_some()
}

/// Declares a new incident for a firing, classified alert, or returns
/// `None` when the alert should not open one (resolved, or no severity:
/// see [`opens_an_incident`]).
/// The first page goes out on the first [`Event::Tick`] at or after the
/// group's `wait` (with a zero wait, the tick of the same moment).
pub fn declare(
    id: i64,
    first: ClassifiedAlert,
    ruleset: &RuleSet,
    now: OffsetDateTime,
) -> Option<(Incident, Decision)> {
    if !opens_an_incident(&first) {
        return None;
    }
    let (key, group_labels) = group_key(&ruleset.grouping, &first.alert);
    let title = title_for(&first.alert, &group_labels);
    let mut incident = Incident {
        id,
        key,
        group_labels,
        title,
        status: IncidentStatus::Gathering,
        severity: None,
        pinned: None,
        declared_at: now,
        opened_at: None,
        acked_at: None,
        resolved_at: None,
        alerts: AlertSet::default(),
        paged: Default::default(),
        postmortem_required: false,
        slo_budgets: BTreeMap::new(),
        timers: Timers::default(),
        action_seq: 0,
    };
    let mut d = Decision::default();
    note(
        &mut d,
        now,
        TimelineKind::Declared,
        None,
        format!(
            "declared by {}; gathering related alerts for {}s",
            describe_alert(&first),
            ruleset.grouping.wait_secs
        ),
    );
    track(&mut incident, first, now, &mut d);
    // Even a zero wait opens on the next tick rather than here, so alerts
    // that arrive in the same batch make it into the first page.
    // A wait past the end of the calendar pages at once rather than never.
    incident.timers.group_wait_until = Some(after(now, ruleset.grouping.wait_secs).unwrap_or(now));
    Some((incident, d))
}

/// Applies an event to an incident at `now`. Human actions on a resolved
/// incident are refused; alerts and ticks on one change nothing.
pub fn apply(
    incident: &mut Incident,
    event: Event,
    ruleset: &RuleSet,
    now: OffsetDateTime,
) -> Result<Decision, RouteError> {
    let mut d = Decision::default();
    let resolved = incident.status == IncidentStatus::Resolved;
    match event {
        Event::Alert(_) | Event::Tick | Event::Reclassify(_) | Event::Budgets(_) if resolved => {}
        Event::Budgets(budgets) => {
            for (slo, remaining, period_secs) in budgets {
                check_budget(incident, &slo, remaining, period_secs, now, &mut d);
            }
        }
        Event::Reclassify(alerts) => {
            for input in alerts {
                // An alert the incident does not track is ignored.
                let _ = incident.alerts.update(input.fingerprint, |tracked| {
                    tracked.severity = input.severity;
                    tracked.rule = input.rule;
                    tracked.explanation = input.explanation;
                    AlertWrite::Whole
                });
            }
            if incident.status == IncidentStatus::Open {
                let why = match incident.deciding_alert() {
                    Some(a) => format!("SLO burn changed; now {}", summary_of(a)),
                    None => "SLO burn changed".to_string(),
                };
                reevaluate(incident, ruleset, now, &why, &mut d);
            }
        }
        Event::Alert(alert) => {
            // A refresh (still firing, same classification) cannot move
            // the severity: skip re-evaluating it.
            let why = track(incident, alert, now, &mut d);
            after_change(incident, ruleset, now, why.as_ref(), &mut d);
        }
        Event::Tick => tick(incident, ruleset, now, &mut d),
        _ if resolved => return Err(RouteError::Resolved(incident.id)),
        Event::Ack { by } => {
            if incident.status == IncidentStatus::Gathering {
                return Err(RouteError::NotPaged(incident.id));
            }
            if incident.acked_at.is_some() {
                return Err(RouteError::AlreadyAcked(incident.id));
            }
            incident.acked_at = Some(now);
            incident.timers.ack_due = None;
            let text = format!("acknowledged by {by}");
            note(
                &mut d,
                now,
                TimelineKind::Acknowledged,
                Some(&by),
                text.clone(),
            );
            // Every destination that was paged stops paging its people.
            let paged: Vec<String> = incident.paged.iter().cloned().collect();
            for dest in paged {
                act(
                    incident,
                    &mut d,
                    ActionKind::Acknowledge,
                    dest,
                    text.clone(),
                );
            }
        }
        Event::Resolve { by, reason } => {
            incident.alerts.update_all(|a| {
                let firing = a.is_firing();
                a.alert.status = AlertStatus::Resolved;
                firing
            });
            let text = match reason {
                Some(r) => format!("resolved by {by}: {r}"),
                None => format!("resolved by {by}"),
            };
            resolve(incident, ruleset, now, Some(&by), text, &mut d);
        }
        Event::StatusUpdate { by, text } => {
            note(
                &mut d,
                now,
                TimelineKind::StatusUpdate,
                Some(&by),
                format!("status update from {by}: {text}"),
            );
            if let Some(policy) = current_policy(incident, ruleset) {
                let reason = format!("status update from {by}: {text}");
                for dest in notify_or_page(policy, ruleset) {
                    act(incident, &mut d, ActionKind::Notify, dest, reason.clone());
                }
                incident.timers.cadence_due = policy.cadence_secs.and_then(|c| after(now, c));
            }
        }
        Event::SetSeverity {
            by,
            severity,
            reason,
        } => {
            let old = incident.pinned.or(incident.severity);
            incident.pinned = Some(severity);
            note(
                &mut d,
                now,
                TimelineKind::SeverityOverride,
                Some(&by),
                format!(
                    "severity set to {severity} by {by} (was {}): {reason}; pinned until changed by a person",
                    old.map(|s| s.to_string()).unwrap_or_else(|| "none".into())
                ),
            );
            if incident.status == IncidentStatus::Open {
                let why = format!("set by {by}: {reason}");
                reevaluate(incident, ruleset, now, &why, &mut d);
            }
        }
    }
    Ok(d)
}

/// The share of an SLO's period budget an incident may consume before it
/// requires a postmortem: Google's error-budget policy ("a single incident
/// consuming more than 20% of the error budget over four weeks").
pub const POSTMORTEM_BUDGET_FRACTION: f64 = 0.2;

/// Marks where the incident found an SLO's budget, and flags a postmortem
/// once it has consumed more than [`POSTMORTEM_BUDGET_FRACTION`] of it.
fn check_budget(
    incident: &mut Incident,
    slo: &str,
    remaining: f64,
    period_secs: u64,
    now: OffsetDateTime,
    d: &mut Decision,
) {
    let mark = incident
        .slo_budgets
        .entry(slo.to_string())
        .or_insert(BudgetMark {
            remaining_at_start: remaining,
            over_threshold: false,
        });
    let consumed = mark.remaining_at_start - remaining;
    if mark.over_threshold || consumed <= POSTMORTEM_BUDGET_FRACTION {
        return;
    }
    mark.over_threshold = true;
    incident.postmortem_required = true;
    note(
        d,
        now,
        TimelineKind::PostmortemRequired,
        None,
        format!(
            "consumed {}% of SLO {slo}'s {} error budget since the incident began \
             (more than {}%): a postmortem is required by the error-budget policy",
            crate::rules::printer::format_number((consumed * 1000.0).round() / 10.0),
            crate::rules::printer::print_duration(period_secs),
            POSTMORTEM_BUDGET_FRACTION * 100.0,
        ),
    );
}

/// Records an alert in the incident (new, refreshed, re-fired or resolved).
/// Returns the alert's description, the reason to re-evaluate the
/// incident's severity; `None` for a plain refresh (firing before and
/// after, with the same severity), which cannot move it (and is most of
/// the traffic: describing it would be most of the cost of routing it).
fn track(
    incident: &mut Incident,
    mut input: ClassifiedAlert,
    now: OffsetDateTime,
    d: &mut Decision,
) -> Option<Why> {
    let firing = input.alert.status == AlertStatus::Firing;
    let fingerprint = std::mem::take(&mut input.fingerprint);
    // One search, for a known alert (most of the traffic) or a new one.
    let known = match incident.alerts.slot(fingerprint) {
        Slot::Known(known) => known,
        Slot::Vacant(vacant) => {
            // A resolve for an alert this incident never saw changes nothing.
            if !firing {
                return Some(Why::Text(describe_alert(&input)));
            }
            // Its line names the alert; the text is rendered when read.
            let fingerprint = vacant.fingerprint().to_string();
            d.timeline.push(TimelineEntry {
                at: now,
                kind: TimelineKind::AlertJoined,
                actor: None,
                text: String::new(),
                alert: Some(fingerprint.clone()),
            });
            vacant.insert(TrackedAlert {
                alert: input.alert,
                severity: input.severity,
                rule: input.rule,
                explanation: input.explanation,
                first_seen: now,
                last_seen: now,
                announced: false,
            });
            return Some(Why::Joined(fingerprint));
        }
    };
    let mut why = None;
    known.change(|existing| {
        let was_firing = existing.is_firing();
        let refresh = was_firing && firing && existing.severity == input.severity;
        if refresh {
            // Nothing to say, and nothing to re-evaluate.
        } else if was_firing && !firing {
            let description = describe_alert(&input);
            note(
                d,
                now,
                TimelineKind::AlertResolved,
                None,
                format!("{description} resolved"),
            );
            why = Some(Why::Text(description));
        } else if !was_firing && firing {
            existing.announced = false;
            let description = describe_alert(&input);
            note(
                d,
                now,
                TimelineKind::AlertJoined,
                None,
                format!("{description} fired again"),
            );
            why = Some(Why::Text(description));
        } else {
            why = Some(Why::Text(describe_alert(&input)));
        }
        let write = if only_seen_changes(existing, &input) {
            AlertWrite::Seen
        } else {
            AlertWrite::Whole
        };
        // Swapped rather than assigned: what the alert held is dropped
        // with `input`, and nothing is allocated to fill `input` back.
        std::mem::swap(&mut existing.alert, &mut input.alert);
        existing.severity = input.severity;
        std::mem::swap(&mut existing.rule, &mut input.rule);
        std::mem::swap(&mut existing.explanation, &mut input.explanation);
        existing.last_seen = now;
        write
    });
    why
}

/// True when `new` differs from what `old` holds at most in when it ends
/// (and, once tracked, when it was last seen): a plain refresh, which the
/// store writes as those two values.
fn only_seen_changes(old: &TrackedAlert, new: &ClassifiedAlert) -> bool {
    // Every field named, so a new one cannot be forgotten here.
    let Alert {
        labels,
        annotations,
        status,
        starts_at,
        ends_at: _,
        source,
        generator_url,
    } = &new.alert;
    old.alert.status == *status
        && old.alert.starts_at == *starts_at
        && old.alert.source == *source
        && old.alert.generator_url == *generator_url
        && old.severity == new.severity
        && old.rule == new.rule
        && old.alert.labels == *labels
        && old.alert.annotations == *annotations
        && old.explanation == new.explanation
}

/// After alerts changed: resolve when none fire, else re-evaluate the
/// severity (unless `why` is `None`: nothing that sets it changed) and
/// announce joiners when the interval allows.
fn after_change(
    incident: &mut Incident,
    ruleset: &RuleSet,
    now: OffsetDateTime,
    why: Option<&Why>,
    d: &mut Decision,
) {
    let any_firing = incident.alerts.firing() > 0;
    match incident.status {
        IncidentStatus::Resolved => {}
        IncidentStatus::Gathering if !any_firing => {
            // Nobody was paged yet; close quietly.
            resolve(
                incident,
                ruleset,
                now,
                None,
                "every alert resolved before the first page".into(),
                d,
            );
        }
        IncidentStatus::Gathering => {}
        IncidentStatus::Open if !any_firing => {
            resolve(
                incident,
                ruleset,
                now,
                None,
                "every alert resolved".into(),
                d,
            );
        }
        IncidentStatus::Open => {
            // Described only when the severity moves (most joining
            // alerts leave it).
            if let Some(why) = why
                && matches!(
                    (incident.severity, incident.effective_severity()),
                    (Some(old), Some(new)) if old != new
                )
            {
                let why = why.describe(incident);
                reevaluate(incident, ruleset, now, &why, d);
            }
            let due = incident.timers.announce_after.is_none_or(|t| t <= now);
            if due && incident.has_unannounced() {
                announce(incident, ruleset, now, d);
            }
        }
    }
}

/// Acts on every timer due by `now`.
fn tick(incident: &mut Incident, ruleset: &RuleSet, now: OffsetDateTime, d: &mut Decision) {
    if incident.status == IncidentStatus::Gathering
        && incident.timers.group_wait_until.is_some_and(|t| t <= now)
    {
        incident.timers.group_wait_until = None;
        open(incident, ruleset, now, d);
    }
    // Alertmanager semantics: an alert whose endsAt passes without a
    // refresh has resolved.
    let mut expired = Vec::new();
    if incident.alerts.earliest_expiry().is_some_and(|t| t <= now) {
        incident.alerts.update_all(|a| {
            let ends = a.is_firing() && a.alert.ends_at.is_some_and(|t| t <= now);
            if ends {
                a.alert.status = AlertStatus::Resolved;
                expired.push(describe_tracked(a));
            }
            ends
        });
    }
    for name in &expired {
        note(
            d,
            now,
            TimelineKind::AlertResolved,
            None,
            format!("{name} resolved: its endsAt passed without a refresh"),
        );
    }
    if !expired.is_empty() {
        after_change(
            incident,
            ruleset,
            now,
            Some(&Why::Text("alerts expired".into())),
            d,
        );
    }
    if incident.status != IncidentStatus::Open {
        return;
    }
    if incident.has_unannounced() && incident.timers.announce_after.is_none_or(|t| t <= now) {
        announce(incident, ruleset, now, d);
    }
    let policy = current_policy(incident, ruleset);
    if incident.timers.cadence_due.is_some_and(|t| t <= now) {
        incident.timers.cadence_due = policy
            .and_then(|p| p.cadence_secs)
            .and_then(|c| after(now, c));
        if let Some(policy) = policy {
            let reason = "a status update is due".to_string();
            note(d, now, TimelineKind::UpdateDue, None, reason.clone());
            for dest in notify_or_page(policy, ruleset) {
                act(incident, d, ActionKind::UpdateDue, dest, reason.clone());
            }
        }
    }
    if incident.timers.ack_due.is_some_and(|t| t <= now) {
        incident.timers.ack_due = None;
        if incident.acked_at.is_none()
            && let Some(ack) = policy.and_then(|p| p.ack_timeout.as_ref())
        {
            let reason = format!(
                "the page was not acknowledged within {}",
                crate::rules::printer::print_duration(ack.after_secs)
            );
            note(
                d,
                now,
                TimelineKind::AckTimeout,
                None,
                format!("{reason}; escalating"),
            );
            for &i in &ack.escalate {
                let dest = ruleset.destinations[i].name.clone();
                incident.paged.insert(dest.clone());
                act(incident, d, ActionKind::Escalate, dest, reason.clone());
            }
        }
    }
}

/// The first page: the gathering wait is over (or was zero).
fn open(incident: &mut Incident, ruleset: &RuleSet, now: OffsetDateTime, d: &mut Decision) {
    let Some(severity) = incident.effective_severity() else {
        resolve(
            incident,
            ruleset,
            now,
            None,
            "no firing alert has a severity; nobody paged".into(),
            d,
        );
        return;
    };
    incident.status = IncidentStatus::Open;
    incident.opened_at = Some(now);
    incident.severity = Some(severity);
    announce_all(incident);
    let reason = match incident.deciding_alert() {
        Some(a) => format!("{severity}: {}", summary_of(a)),
        None => format!("{severity}"),
    };
    note(
        d,
        now,
        TimelineKind::Opened,
        None,
        format!("opened at {reason}"),
    );
    owe_severity_actions(incident, ruleset, severity, now, &reason, true, d);
    incident.timers.announce_after = after(now, ruleset.grouping.interval_secs);
}

/// Moves the announced severity to the effective one: an escalation pages
/// at once, a de-escalation notifies.
fn reevaluate(
    incident: &mut Incident,
    ruleset: &RuleSet,
    now: OffsetDateTime,
    why: &str,
    d: &mut Decision,
) {
    let (Some(old), Some(new)) = (incident.severity, incident.effective_severity()) else {
        return;
    };
    if new == old {
        return;
    }
    incident.severity = Some(new);
    if new < old {
        let reason = format!("escalated from {old} to {new}: {why}");
        note(d, now, TimelineKind::Escalated, None, reason.clone());
        announce_all(incident);
        owe_severity_actions(incident, ruleset, new, now, &reason, true, d);
    } else {
        let reason = format!("de-escalated from {old} to {new}: {why}");
        note(d, now, TimelineKind::Deescalated, None, reason.clone());
        owe_severity_actions(incident, ruleset, new, now, &reason, false, d);
    }
}

/// The actions a severity owes on opening or escalating (`page` true: its
/// pages and notifications) or on de-escalating (`page` false: its
/// notifications, or its page targets told without a page), and its timers.
fn owe_severity_actions(
    incident: &mut Incident,
    ruleset: &RuleSet,
    severity: Severity,
    now: OffsetDateTime,
    reason: &str,
    page: bool,
    d: &mut Decision,
) {
    let Some(policy) = ruleset.policy(severity) else {
        return;
    };
    if page {
        // New pages need their own acknowledgement.
        incident.acked_at = None;
        for &i in &policy.page {
            let dest = ruleset.destinations[i].name.clone();
            incident.paged.insert(dest.clone());
            act(incident, d, ActionKind::Page, dest, reason.to_string());
        }
        for &i in &policy.notify {
            act(
                incident,
                d,
                ActionKind::Notify,
                ruleset.destinations[i].name.clone(),
                reason.to_string(),
            );
        }
        incident.timers.ack_due = match (
            &policy.ack_timeout,
            policy.page.is_empty(),
            incident.acked_at,
        ) {
            (Some(ack), false, None) => after(now, ack.after_secs),
            _ => None,
        };
    } else {
        for dest in notify_or_page(policy, ruleset) {
            act(incident, d, ActionKind::Notify, dest, reason.to_string());
        }
        if policy.page.is_empty() {
            incident.timers.ack_due = None;
        }
    }
    incident.timers.cadence_due = policy.cadence_secs.and_then(|c| after(now, c));
    if policy.postmortem_required && !incident.postmortem_required {
        incident.postmortem_required = true;
        note(
            d,
            now,
            TimelineKind::PostmortemRequired,
            None,
            format!("{severity} requires a postmortem"),
        );
    }
}

/// Marks every alert announced: a page names them all.
fn announce_all(incident: &mut Incident) {
    incident
        .alerts
        .update_all(|a| !std::mem::replace(&mut a.announced, true));
}

/// Announces firing alerts that joined since the last announcement.
fn announce(incident: &mut Incident, ruleset: &RuleSet, now: OffsetDateTime, d: &mut Decision) {
    let mut joined = Vec::new();
    incident.alerts.update_all(|a| {
        let joins = a.is_firing() && !a.announced;
        if joins {
            a.announced = true;
            joined.push(describe_tracked(a));
        }
        joins
    });
    if joined.is_empty() {
        return;
    }
    let reason = format!("{} alert(s) joined: {}", joined.len(), joined.join(", "));
    note(d, now, TimelineKind::Announced, None, reason.clone());
    if let Some(policy) = current_policy(incident, ruleset) {
        for dest in notify_or_page(policy, ruleset) {
            act(incident, d, ActionKind::Notify, dest, reason.clone());
        }
    }
    incident.timers.announce_after = after(now, ruleset.grouping.interval_secs);
}

/// Ends the incident: every paged destination gets a resolve, the
/// severity's notify destinations are told.
fn resolve(
    incident: &mut Incident,
    ruleset: &RuleSet,
    now: OffsetDateTime,
    actor: Option<&str>,
    text: String,
    d: &mut Decision,
) {
    let was_open = incident.status == IncidentStatus::Open;
    incident.status = IncidentStatus::Resolved;
    incident.resolved_at = Some(now);
    incident.timers = Timers::default();
    note(d, now, TimelineKind::Resolved, actor, text.clone());
    if !was_open {
        return;
    }
    let paged: Vec<String> = incident.paged.iter().cloned().collect();
    for dest in &paged {
        act(incident, d, ActionKind::Resolve, dest.clone(), text.clone());
    }
    if let Some(policy) = current_policy(incident, ruleset) {
        for dest in notify_or_page(policy, ruleset) {
            if !paged.contains(&dest) {
                act(incident, d, ActionKind::Notify, dest, text.clone());
            }
        }
    }
}

fn current_policy<'r>(incident: &Incident, ruleset: &'r RuleSet) -> Option<&'r SeverityPolicy> {
    incident.severity.and_then(|s| ruleset.policy(s))
}

/// Where informational messages go: the notify destinations, or the page
/// destinations when a severity only pages.
fn notify_or_page(policy: &SeverityPolicy, ruleset: &RuleSet) -> Vec<String> {
    let ids = if policy.notify.is_empty() {
        &policy.page
    } else {
        &policy.notify
    };
    ids.iter()
        .map(|&i| ruleset.destinations[i].name.clone())
        .collect()
}

fn act(
    incident: &mut Incident,
    d: &mut Decision,
    kind: ActionKind,
    destination: String,
    reason: String,
) {
    incident.action_seq += 1;
    d.actions.push(Action {
        kind,
        destination,
        seq: incident.action_seq,
        reason,
    });
}

fn note(
    d: &mut Decision,
    at: OffsetDateTime,
    kind: TimelineKind,
    actor: Option<&str>,
    text: String,
) {
    d.timeline.push(TimelineEntry {
        at,
        kind,
        actor: actor.map(str::to_string),
        text,
        alert: None,
    });
}

/// `now` plus `s` seconds; `None` ("never") past the end of the calendar,
/// which a duration such as `600000w` reaches.
fn after(now: OffsetDateTime, s: u64) -> Option<OffsetDateTime> {
    now.checked_add(time::Duration::seconds(i64::try_from(s).ok()?))
}

fn title_for(alert: &Alert, group_labels: &BTreeMap<String, String>) -> String {
    if let Some(slo) = alert.slo_rule_alert_of() {
        return format!("SLO {slo} burning its error budget");
    }
    let name = alert.label("alertname");
    let groups: Vec<String> = group_labels
        .iter()
        .filter(|(k, v)| k.as_str() != "alertname" && !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    match (name.is_empty(), groups.is_empty()) {
        (false, true) => name.to_string(),
        (false, false) => format!("{name} ({})", groups.join(", ")),
        (true, false) => groups.join(", "),
        (true, true) => "alert".to_string(),
    }
}

fn describe_alert(a: &ClassifiedAlert) -> String {
    describe_labels(&a.alert)
}

fn describe_tracked(a: &TrackedAlert) -> String {
    describe_labels(&a.alert)
}

/// `HighErrorRate{instance="a"}`: the alert name and its other labels.
fn describe_labels(alert: &Alert) -> String {
    let name = alert.label("alertname");
    let mut out = String::with_capacity(128);
    out.push_str(name);
    out.push('{');
    let mut first = true;
    for (k, v) in alert.labels.iter().filter(|(k, _)| *k != "alertname") {
        if !first {
            out.push_str(", ");
        }
        first = false;
        out.push_str(k);
        out.push('=');
        push_quoted(&mut out, v);
    }
    out.push('}');
    out
}

/// The classification summary of a tracked alert: the deciding rule.
fn summary_of(a: &TrackedAlert) -> String {
    match &a.rule {
        Some(rule) => format!("rule \"{rule}\" matched {}", describe_tracked(a)),
        None => format!("`otherwise` for {}", describe_tracked(a)),
    }
}

#[cfg(test)]
mod tests;
