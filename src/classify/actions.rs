//! What a severity obliges, with destinations looked up: the bridge from a
//! classification to the route stage.

use serde::Serialize;

use crate::model::Severity;
use crate::rules::{Destination, Role, RuleSet};

/// The concrete actions a severity owes.
#[derive(Clone, Debug, PartialEq)]
pub struct Actions<'r> {
    /// The severity these actions belong to.
    pub severity: Severity,
    /// Destinations paged.
    pub page: Vec<&'r Destination>,
    /// Destinations notified.
    pub notify: Vec<&'r Destination>,
    /// Status-update cadence in seconds.
    pub cadence_secs: Option<u64>,
    /// Escalation when a page stays unacknowledged.
    pub ack_timeout: Option<Escalation<'r>>,
    /// Roles the incident needs (the commander always among them).
    pub roles: Vec<Role>,
    /// Whether the roles must be held by different people.
    pub split_roles: bool,
    /// Whether a postmortem is required.
    pub postmortem_required: bool,
}

/// `ack timeout D escalate ...` with destinations looked up.
#[derive(Clone, Debug, PartialEq)]
pub struct Escalation<'r> {
    /// Seconds a page may stay unacknowledged.
    pub after_secs: u64,
    /// Destinations paged when it does.
    pub escalate: Vec<&'r Destination>,
}

/// The actions of `severity`, or `None` when the rule set defines no block
/// for it (the checker refuses rule sets whose rules reach such a severity).
pub fn actions_for(ruleset: &RuleSet, severity: Severity) -> Option<Actions<'_>> {
    let policy = ruleset.policy(severity)?;
    let look_up = |ids: &[usize]| ids.iter().map(|&i| &ruleset.destinations[i]).collect();
    Some(Actions {
        severity,
        page: look_up(&policy.page),
        notify: look_up(&policy.notify),
        cadence_secs: policy.cadence_secs,
        ack_timeout: policy.ack_timeout.as_ref().map(|a| Escalation {
            after_secs: a.after_secs,
            escalate: look_up(&a.escalate),
        }),
        roles: policy.roles.clone(),
        split_roles: policy.split_roles,
        postmortem_required: policy.postmortem_required,
    })
}

/// A plain summary of [`Actions`] by destination name, for JSON output and
/// for comparing with expectations in rule tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ActionSummary {
    /// Names of destinations paged.
    pub page: Vec<String>,
    /// Names of destinations notified.
    pub notify: Vec<String>,
    /// Cadence in seconds.
    pub cadence_secs: Option<u64>,
    /// Ack timeout in seconds.
    pub ack_timeout_secs: Option<u64>,
    /// Names of destinations paged when the ack timeout passes.
    pub escalate: Vec<String>,
    /// Role names.
    pub roles: Vec<String>,
    /// Whether roles are split.
    pub split_roles: bool,
    /// Whether a postmortem is required.
    pub postmortem_required: bool,
}

impl Actions<'_> {
    /// The summary by name.
    pub fn summary(&self) -> ActionSummary {
        let names = |d: &[&Destination]| d.iter().map(|d| d.name.clone()).collect();
        ActionSummary {
            page: names(&self.page),
            notify: names(&self.notify),
            cadence_secs: self.cadence_secs,
            ack_timeout_secs: self.ack_timeout.as_ref().map(|a| a.after_secs),
            escalate: self
                .ack_timeout
                .as_ref()
                .map(|a| names(&a.escalate))
                .unwrap_or_default(),
            roles: self.roles.iter().map(|r| r.as_str().to_string()).collect(),
            split_roles: self.split_roles,
            postmortem_required: self.postmortem_required,
        }
    }
}
