//! The checked, compiled rule set: what the checker produces from the AST
//! and what classification reads. Names are resolved to indices, regexes
//! are compiled (fully anchored), secrets are read from the environment,
//! and the equality index over labels is built once here.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use regex::Regex;

use crate::model::Severity;
use crate::rules::source::Span;

/// A rule set that passed its check. Immutable once built; a reload builds
/// a new one and swaps it in whole.
#[derive(Debug)]
pub struct RuleSet {
    /// SLOs in declaration order.
    pub slos: Vec<Slo>,
    /// Destinations in declaration order.
    pub destinations: Vec<Destination>,
    /// The actions of each severity, indexed by [`Severity::index`].
    /// `None` where the rule set defines no block for that severity.
    pub severities: [Option<SeverityPolicy>; 3],
    /// Rules in file order (files sorted by name, then position).
    pub rules: Vec<Rule>,
    /// Severity when no rule matches, if the rule set says one.
    pub otherwise: Option<Severity>,
    /// How alerts group into incidents.
    pub grouping: Grouping,
    /// Label equality index: which rules can only match given a label value.
    pub index: LabelIndex,
    /// Message templates of the destinations, compiled at check time
    /// (rendered by `crate::deliver::template::render`).
    pub templates: crate::rules::template::MessageTemplates,
}

impl RuleSet {
    /// The destination with this name.
    pub fn destination(&self, name: &str) -> Option<&Destination> {
        self.destinations.iter().find(|d| d.name == name)
    }

    /// The policy for a severity, if the rule set defines one.
    pub fn policy(&self, severity: Severity) -> Option<&SeverityPolicy> {
        self.severities[severity.index()].as_ref()
    }
}

/// A service-level objective.
#[derive(Clone, Debug, PartialEq)]
pub struct Slo {
    /// Its name.
    pub name: String,
    /// Target fraction of good events, in (0, 1): 0.999 for `99.9%`.
    pub objective: f64,
    /// The period the objective and its error budget cover, in seconds.
    pub period_secs: u64,
    /// Where its events come from.
    pub source: SloSource,
}

impl Slo {
    /// The error budget as a fraction of events: `1 - objective`.
    pub fn error_budget(&self) -> f64 {
        1.0 - self.objective
    }

    /// The highest burn rate this SLO can show: every event bad.
    pub fn max_burn(&self) -> f64 {
        1.0 / self.error_budget()
    }
}

/// Where an SLO's events come from.
#[derive(Clone, Debug, PartialEq)]
pub enum SloSource {
    /// Posted to the SLO events endpoint.
    Push,
    /// Read from Sloth/Pyrra-style alerts.
    Alerts,
    /// Queried from Prometheus.
    Prometheus {
        /// PromQL giving bad events.
        errors: String,
        /// PromQL giving all events.
        total: String,
    },
}

/// Kinds of destination sevroute can deliver to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DestinationKind {
    /// PagerDuty Events API v2.
    PagerDuty,
    /// Opsgenie Alert API.
    Opsgenie,
    /// Slack incoming webhook.
    Slack,
    /// Microsoft Teams Workflows webhook.
    Teams,
    /// Discord webhook.
    Discord,
    /// Signed generic webhook.
    Webhook,
}

impl DestinationKind {
    /// Every kind, as written in rule files.
    pub const ALL: [DestinationKind; 6] = [
        DestinationKind::PagerDuty,
        DestinationKind::Opsgenie,
        DestinationKind::Slack,
        DestinationKind::Teams,
        DestinationKind::Discord,
        DestinationKind::Webhook,
    ];

    /// The kind as written in rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationKind::PagerDuty => "pagerduty",
            DestinationKind::Opsgenie => "opsgenie",
            DestinationKind::Slack => "slack",
            DestinationKind::Teams => "teams",
            DestinationKind::Discord => "discord",
            DestinationKind::Webhook => "webhook",
        }
    }

    /// Parses a kind as written in rule files.
    pub fn parse(text: &str) -> Option<DestinationKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// A value read from the environment. Its `Debug` and `Display` print
/// `<redacted>`, so it cannot leak through a log line or an error.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A destination setting after `env(...)` was resolved.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A literal string.
    Text(String),
    /// From `env("VAR")`; `None` when the variable was unset and the
    /// loader was told to only warn about it (`check`, `test`, `explain`).
    Secret {
        /// The variable's name (safe to show).
        var: String,
        /// Its value, if it was set.
        value: Option<Secret>,
    },
    /// A duration in seconds.
    Duration(u64),
    /// A plain number (`rate 2.5`, `concurrency 4`).
    Number(f64),
}

/// A place actions are delivered to.
#[derive(Clone, Debug, PartialEq)]
pub struct Destination {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: DestinationKind,
    /// Settings by key, in declaration order.
    pub settings: Vec<(String, Value)>,
}

impl Destination {
    /// The value of a setting.
    pub fn setting(&self, key: &str) -> Option<&Value> {
        self.settings.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// An incident role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Coordinates; does not debug.
    Commander,
    /// Keeps stakeholders informed.
    Communications,
    /// Leads the hands-on work.
    Operations,
}

impl Role {
    /// Every role, as written in rule files.
    pub const ALL: [Role; 3] = [Role::Commander, Role::Communications, Role::Operations];

    /// The role as written in rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Commander => "commander",
            Role::Communications => "communications",
            Role::Operations => "operations",
        }
    }

    /// Parses a role as written in rule files.
    pub fn parse(text: &str) -> Option<Role> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// What a severity obliges: the concrete actions.
#[derive(Clone, Debug, PartialEq)]
pub struct SeverityPolicy {
    /// Destinations paged (indices into [`RuleSet::destinations`]).
    pub page: Vec<usize>,
    /// Destinations notified.
    pub notify: Vec<usize>,
    /// Status-update cadence in seconds, if any.
    pub cadence_secs: Option<u64>,
    /// Escalation when a page is not acknowledged in time.
    pub ack_timeout: Option<AckTimeout>,
    /// Roles the incident needs.
    pub roles: Vec<Role>,
    /// Whether the roles must be held by different people.
    pub split_roles: bool,
    /// Whether a postmortem is required.
    pub postmortem_required: bool,
    /// Where a page or escalation goes when its destination fails past
    /// the retry horizon or is disabled (index into
    /// [`RuleSet::destinations`]).
    pub fallback: Option<usize>,
}

/// `ack timeout D escalate ...`
#[derive(Clone, Debug, PartialEq)]
pub struct AckTimeout {
    /// Seconds a page may stay unacknowledged.
    pub after_secs: u64,
    /// Destinations paged when it does.
    pub escalate: Vec<usize>,
}

/// How alerts group into incidents.
#[derive(Clone, Debug, PartialEq)]
pub struct Grouping {
    /// Labels whose values name an incident.
    pub by: Vec<String>,
    /// Seconds a new incident gathers alerts before its first page.
    pub wait_secs: u64,
    /// Minimum seconds between announcements of alerts that join later.
    pub interval_secs: u64,
}

impl Default for Grouping {
    /// Alertmanager's defaults for group_wait and group_interval, grouping
    /// by alert name.
    fn default() -> Self {
        Grouping {
            by: vec!["alertname".to_string()],
            wait_secs: 30,
            interval_secs: 300,
        }
    }
}

/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// Its name.
    pub name: String,
    /// Its condition.
    pub when: Cond,
    /// The severity it assigns.
    pub severity: Severity,
    /// Where it was declared.
    pub span: Span,
}

/// A compiled, type-checked condition.
#[derive(Debug)]
pub enum Cond {
    /// All must hold.
    And(Vec<Cond>),
    /// Any must hold.
    Or(Vec<Cond>),
    /// Must not hold.
    Not(Box<Cond>),
    /// String equality or inequality.
    StrCmp {
        /// `!=` rather than `==`.
        negated: bool,
        /// The left operand.
        lhs: StrOperand,
        /// The right operand.
        rhs: StrOperand,
    },
    /// Fully anchored regex (`=~`, or `!~` when negated).
    Regex {
        /// `!~` rather than `=~`.
        negated: bool,
        /// The string matched.
        value: StrOperand,
        /// The pattern, compiled fully anchored at load; shared by every
        /// rule with the same pattern (a clone of a `Regex` would carry
        /// its own match cache).
        regex: Arc<Regex>,
        /// The pattern as written, for explanations.
        pattern: String,
    },
    /// String membership.
    StrIn {
        /// `not in` rather than `in`.
        negated: bool,
        /// The string tested.
        value: StrOperand,
        /// The strings listed.
        list: Vec<String>,
    },
    /// Numeric comparison (numbers, percentages, durations in seconds).
    NumCmp {
        /// The operator.
        op: NumOp,
        /// The left operand.
        lhs: NumOperand,
        /// The right operand.
        rhs: NumOperand,
    },
    /// Numeric membership.
    NumIn {
        /// `not in` rather than `in`.
        negated: bool,
        /// The number tested.
        value: NumOperand,
        /// The numbers listed (percentages as fractions, durations in
        /// seconds).
        list: Vec<f64>,
    },
}

impl Cond {
    /// Calls `f` on every numeric operand of the condition.
    pub fn each_num_operand(&self, f: &mut impl FnMut(&NumOperand)) {
        match self {
            Cond::And(parts) | Cond::Or(parts) => parts.iter().for_each(|p| p.each_num_operand(f)),
            Cond::Not(inner) => inner.each_num_operand(f),
            Cond::NumCmp { lhs, rhs, .. } => {
                f(lhs);
                f(rhs);
            }
            Cond::NumIn { value, .. } => f(value),
            Cond::StrCmp { .. } | Cond::Regex { .. } | Cond::StrIn { .. } => {}
        }
    }
}

impl Cond {
    /// True when the condition reads the alert: a label, an annotation or
    /// how long it has fired. A rule whose condition reads only SLOs is an
    /// SLO rule: it classifies the SLO's own incident, not alerts.
    pub fn reads_alert(&self) -> bool {
        let str_reads = |o: &StrOperand| !matches!(o, StrOperand::Literal(_));
        match self {
            Cond::And(parts) | Cond::Or(parts) => parts.iter().any(Cond::reads_alert),
            Cond::Not(inner) => inner.reads_alert(),
            Cond::StrCmp { lhs, rhs, .. } => str_reads(lhs) || str_reads(rhs),
            Cond::Regex { value, .. } | Cond::StrIn { value, .. } => str_reads(value),
            Cond::NumCmp { lhs, rhs, .. } => {
                matches!(lhs, NumOperand::FiringFor) || matches!(rhs, NumOperand::FiringFor)
            }
            Cond::NumIn { value, .. } => matches!(value, NumOperand::FiringFor),
        }
    }

    /// The SLOs the condition reads (indices into [`RuleSet::slos`]), in
    /// the order first read, without repeats.
    pub fn slos(&self) -> Vec<usize> {
        let mut slos = Vec::new();
        self.each_num_operand(&mut |operand| {
            if let NumOperand::Burn { slo, .. } | NumOperand::BudgetRemaining { slo } = operand
                && !slos.contains(slo)
            {
                slos.push(*slo);
            }
        });
        slos
    }
}

impl Rule {
    /// The SLO whose own incident this rule classifies, when the rule
    /// reads SLOs and nothing of the alert (the first SLO it names, when
    /// it names several).
    pub fn slo_rule_of(&self) -> Option<usize> {
        if self.when.reads_alert() {
            return None;
        }
        self.when.slos().first().copied()
    }
}

impl RuleSet {
    /// SLOs that SLO rules (see [`Rule::slo_rule_of`]) watch, each with its
    /// rules in file order: what the service evaluates to open an SLO's
    /// own incident.
    pub fn slo_rules(&self) -> impl Iterator<Item = (usize, &[usize])> {
        self.index
            .by_slo
            .iter()
            .map(|(slo, rules)| (*slo, rules.as_slice()))
    }

    /// Every burn window the rules read, in seconds, sorted, without
    /// repeats: what an SLO evaluation must compute.
    pub fn burn_windows(&self) -> Vec<u64> {
        let mut windows = Vec::new();
        for rule in &self.rules {
            rule.when.each_num_operand(&mut |operand| {
                if let NumOperand::Burn { window_secs, .. } = operand {
                    windows.push(*window_secs);
                }
            });
        }
        windows.sort_unstable();
        windows.dedup();
        windows
    }
}

/// The operator of a numeric comparison. The rules language's regex
/// operators compile to [`Cond::Regex`] instead, so they have no place here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl NumOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            NumOp::Eq => "==",
            NumOp::Ne => "!=",
            NumOp::Lt => "<",
            NumOp::Le => "<=",
            NumOp::Gt => ">",
            NumOp::Ge => ">=",
        }
    }

    /// The same comparison with its operands swapped: `a < b` is `b > a`.
    pub fn flipped(self) -> NumOp {
        match self {
            NumOp::Lt => NumOp::Gt,
            NumOp::Le => NumOp::Ge,
            NumOp::Gt => NumOp::Lt,
            NumOp::Ge => NumOp::Le,
            NumOp::Eq | NumOp::Ne => self,
        }
    }

    /// Whether `l OP r` holds.
    pub fn holds(self, l: f64, r: f64) -> bool {
        match self {
            NumOp::Eq => l == r,
            NumOp::Ne => l != r,
            NumOp::Lt => l < r,
            NumOp::Le => l <= r,
            NumOp::Gt => l > r,
            NumOp::Ge => l >= r,
        }
    }
}

/// Where a string value comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum StrOperand {
    /// A label's value (`""` when missing).
    Label(String),
    /// An annotation's value (`""` when missing).
    Annotation(String),
    /// A literal.
    Literal(String),
}

/// Where a number comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum NumOperand {
    /// A literal number.
    Literal(f64),
    /// A literal percentage, as a fraction (`25%` is 0.25).
    Percent(f64),
    /// A literal duration, in seconds.
    Duration(u64),
    /// `burn(SLO, WINDOW)`.
    Burn {
        /// The SLO, an index into [`RuleSet::slos`].
        slo: usize,
        /// The window, in seconds.
        window_secs: u64,
    },
    /// `budget_remaining(SLO)`, a fraction.
    BudgetRemaining {
        /// The SLO, an index into [`RuleSet::slos`].
        slo: usize,
    },
    /// Seconds since the alert started firing.
    FiringFor,
}

/// Rules that can only match when a label has one of a few values: those
/// whose condition is a conjunction holding `labels.X == "v"` (or
/// `labels.X in [...]`). Classification looks up the alert's own label
/// values here instead of evaluating every such rule.
#[derive(Debug, Default)]
pub struct LabelIndex {
    /// label name -> label value -> rule indices.
    pub by_label: HashMap<String, HashMap<String, Vec<usize>>>,
    /// Rules that no equality matcher narrows: always evaluated.
    pub unindexed: Vec<usize>,
    /// SLO rules (conditions that read only SLOs), by the SLO whose own
    /// incident they classify, sorted by SLO; never evaluated for alerts.
    pub by_slo: Vec<(usize, Vec<usize>)>,
}
