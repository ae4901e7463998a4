//! The syntax tree of the rules language, as written: one [`File`] per
//! `*.sev` file. Every node carries the [`Span`] it was parsed from. The
//! parser builds it, the printer writes it back as text, and the checker
//! turns it into a [`crate::rules::RuleSet`]; nothing here is validated yet.

use crate::model::Severity;
use crate::rules::source::Span;

/// One parsed rule file.
#[derive(Clone, Debug, PartialEq)]
pub struct File {
    /// Top-level declarations in file order.
    pub items: Vec<Item>,
}

/// A top-level declaration.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// `slo "name" { ... }`
    Slo(SloDecl),
    /// `destination "name" kind { ... }`
    Destination(DestinationDecl),
    /// `severity SEVn { ... }`
    Severity(SeverityDecl),
    /// `rule "name" { when EXPR then SEVn }`
    Rule(RuleDecl),
    /// `otherwise SEVn`
    Otherwise(OtherwiseDecl),
    /// `group by a, b wait D interval D`
    Group(GroupDecl),
}

/// A quoted name (of an SLO, destination or rule) or a bare identifier
/// (a label, a destination kind, a role, a setting key).
#[derive(Clone, Debug, PartialEq)]
pub struct Name {
    /// The name with escapes already decoded.
    pub value: String,
    /// Where it was written.
    pub span: Span,
}

/// A duration literal such as `30s`, `5m`, `1h30m`, `3d`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DurationLit {
    /// Total length in whole seconds.
    pub secs: u64,
    /// Where it was written.
    pub span: Span,
}

/// A percentage literal such as `99.9%`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PercentLit {
    /// The number before `%` (99.9 for `99.9%`).
    pub percent: f64,
    /// Where it was written.
    pub span: Span,
}

/// A severity written in the source (`SEV1`, `SEV2`, `SEV3`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeverityLit {
    /// The severity named.
    pub severity: Severity,
    /// Where it was written.
    pub span: Span,
}

/// `slo "name" { objective P%; period D; source ... }`
#[derive(Clone, Debug, PartialEq)]
pub struct SloDecl {
    /// The SLO's name, used by `burn(...)` and `budget_remaining(...)`.
    pub name: Name,
    /// Statements in the block, in order (duplicates are a checker error).
    pub stmts: Vec<SloStmt>,
    /// The whole declaration.
    pub span: Span,
}

/// One statement inside an `slo` block.
#[derive(Clone, Debug, PartialEq)]
pub enum SloStmt {
    /// `objective 99.9%`
    Objective(PercentLit),
    /// `period 30d`
    Period(DurationLit),
    /// `source push | alerts | prometheus { errors "Q"; total "Q" }`
    Source(SloSourceSpec),
}

/// Where an SLO's good/total events come from.
#[derive(Clone, Debug, PartialEq)]
pub enum SloSourceSpec {
    /// SLI counts posted to the SLO events endpoint.
    Push {
        /// The `push` keyword.
        span: Span,
    },
    /// Burn read from Sloth/Pyrra-style alerts.
    Alerts {
        /// The `alerts` keyword.
        span: Span,
    },
    /// PromQL queries for the error and total counts.
    Prometheus {
        /// Statements in the block, in order.
        queries: Vec<PrometheusQuery>,
        /// The whole `prometheus { ... }` clause.
        span: Span,
    },
}

/// `errors "Q"` or `total "Q"` inside `source prometheus { ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct PrometheusQuery {
    /// Which count the query returns.
    pub kind: QueryKind,
    /// The PromQL text.
    pub query: Name,
    /// The whole statement.
    pub span: Span,
}

/// Which count a Prometheus query returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryKind {
    /// `errors`: bad events.
    Errors,
    /// `total`: all events.
    Total,
}

/// `destination "name" kind { key value ... }`
#[derive(Clone, Debug, PartialEq)]
pub struct DestinationDecl {
    /// The name severities refer to.
    pub name: Name,
    /// The kind (`pagerduty`, `slack`, `webhook`, ...), as an identifier.
    pub kind: Name,
    /// Settings in order.
    pub settings: Vec<Setting>,
    /// The whole declaration.
    pub span: Span,
}

/// `key value` inside a destination block.
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    /// The setting's key (an identifier).
    pub key: Name,
    /// Its value.
    pub value: SettingValue,
    /// The whole statement.
    pub span: Span,
}

/// The value of a destination setting.
#[derive(Clone, Debug, PartialEq)]
pub enum SettingValue {
    /// A literal string.
    Str(Name),
    /// `env("VAR")`: read from the environment at load; a secret.
    Env(Name),
    /// A plain number.
    Number {
        /// The number.
        value: f64,
        /// Where it was written.
        span: Span,
    },
    /// A percentage.
    Percent(PercentLit),
    /// A duration.
    Duration(DurationLit),
    /// `true` or `false`.
    Bool {
        /// The value.
        value: bool,
        /// Where it was written.
        span: Span,
    },
}

/// `severity SEVn { ... }`
#[derive(Clone, Debug, PartialEq)]
pub struct SeverityDecl {
    /// Which severity this block defines.
    pub severity: SeverityLit,
    /// Statements in order.
    pub stmts: Vec<SeverityStmt>,
    /// The whole declaration.
    pub span: Span,
}

/// One statement inside a `severity` block.
#[derive(Clone, Debug, PartialEq)]
pub enum SeverityStmt {
    /// `page "a", "b"`: destinations paged when the incident opens at
    /// (or escalates to) this severity.
    Page {
        /// The destinations named, in order.
        targets: Vec<Name>,
        /// The whole statement.
        span: Span,
    },
    /// `notify "a", "b"`: destinations told, not paged.
    Notify {
        /// The destinations named, in order.
        targets: Vec<Name>,
        /// The whole statement.
        span: Span,
    },
    /// `cadence 15m`: a status update is due this often until resolved.
    Cadence {
        /// The interval between status updates.
        every: DurationLit,
        /// The whole statement.
        span: Span,
    },
    /// `ack timeout 5m escalate "a", "b"`
    AckTimeout {
        /// How long a page may stay unacknowledged.
        timeout: DurationLit,
        /// Who is paged when it does.
        escalate: Vec<Name>,
        /// The whole statement.
        span: Span,
    },
    /// `roles [split] commander, communications, operations`
    Roles {
        /// `split`: the roles must be held by different people.
        split: bool,
        /// The roles named (identifiers).
        roles: Vec<Name>,
        /// The whole statement.
        span: Span,
    },
    /// `fallback "dest"`: where a page or escalation goes when its own
    /// destination fails past the retry horizon or is disabled.
    Fallback {
        /// The destination named.
        target: Name,
        /// The whole statement.
        span: Span,
    },
    /// `postmortem required | optional`
    Postmortem {
        /// `required`.
        required: bool,
        /// The whole statement.
        span: Span,
    },
}

/// `rule "name" { when EXPR then SEVn }`
#[derive(Clone, Debug, PartialEq)]
pub struct RuleDecl {
    /// The rule's name, shown in explanations.
    pub name: Name,
    /// The condition.
    pub when: Expr,
    /// The severity assigned when the condition holds.
    pub then: SeverityLit,
    /// The whole declaration.
    pub span: Span,
}

/// `otherwise SEVn`: the severity when no rule matches.
#[derive(Clone, Debug, PartialEq)]
pub struct OtherwiseDecl {
    /// The fallback severity.
    pub severity: SeverityLit,
    /// The whole declaration.
    pub span: Span,
}

/// `group by LABEL, ... [wait D] [interval D]`
#[derive(Clone, Debug, PartialEq)]
pub struct GroupDecl {
    /// Labels whose values together name an incident.
    pub by: Vec<Name>,
    /// How long a new incident gathers alerts before its first page.
    pub wait: Option<DurationLit>,
    /// Minimum time between announcements of alerts that join later.
    pub interval: Option<DurationLit>,
    /// The whole declaration.
    pub span: Span,
}

/// An expression node.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// What the node is.
    pub kind: ExprKind,
    /// Where it was written (parentheses excluded).
    pub span: Span,
}

/// The kinds of expression.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// `a or b or ...`: two or more operands, in order. A chain is one
    /// node, not a nested pair per `or`, so a long chain is a wide tree,
    /// never a deep one; parentheses (`(a or b) or c`) nest.
    Or(Vec<Expr>),
    /// `a and b and ...`: two or more operands, in order (as `Or`).
    And(Vec<Expr>),
    /// `not a`
    Not(Box<Expr>),
    /// `a OP b` for `== != =~ !~ < <= > >=`.
    Compare {
        /// The operator.
        op: CmpOp,
        /// The left operand.
        lhs: Box<Expr>,
        /// The right operand.
        rhs: Box<Expr>,
    },
    /// `a in [x, y]` or `a not in [x, y]`.
    In {
        /// `not in`.
        negated: bool,
        /// The value tested.
        value: Box<Expr>,
        /// The literals listed, in order.
        list: Vec<Expr>,
    },
    /// `labels.NAME`: the label's value, `""` when missing.
    Label(String),
    /// `annotations.NAME`: the annotation's value, `""` when missing.
    Annotation(String),
    /// A string literal.
    Str(String),
    /// A number literal.
    Number(f64),
    /// A percentage literal; the value is the number before `%`.
    Percent(f64),
    /// A duration literal in seconds.
    Duration(u64),
    /// `burn("slo", 1h)`: the SLO's burn rate over the window.
    Burn {
        /// The SLO's name.
        slo: Name,
        /// The window the rate is measured over.
        window: DurationLit,
    },
    /// `budget_remaining("slo")`: fraction of the period's budget left.
    BudgetRemaining {
        /// The SLO's name.
        slo: Name,
    },
    /// `firing_for`: how long the alert has been firing at evaluation time.
    FiringFor,
}

impl SloSourceSpec {
    /// Where the source clause was written.
    pub fn span(&self) -> Span {
        match self {
            SloSourceSpec::Push { span }
            | SloSourceSpec::Alerts { span }
            | SloSourceSpec::Prometheus { span, .. } => *span,
        }
    }
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `=~`: fully anchored regex match.
    Match,
    /// `!~`: fully anchored regex non-match.
    NotMatch,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    /// Every operator, the two-character ones first, so that matching the
    /// text against them in order reads `<=` as one operator, not `<`.
    /// The parser's one table of comparison operators.
    pub const ALL: [CmpOp; 8] = [
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Match,
        CmpOp::NotMatch,
        CmpOp::Le,
        CmpOp::Ge,
        CmpOp::Lt,
        CmpOp::Gt,
    ];

    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Match => "=~",
            CmpOp::NotMatch => "!~",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}
