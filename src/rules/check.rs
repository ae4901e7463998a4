//! The checker: turns the parsed files of a rule set into a compiled
//! [`RuleSet`], or reports why it cannot. It collects every problem before
//! reporting (names, types, SLO maths, actions), so one run of `check`
//! shows them all. A rule set with any error is never built.

use std::collections::HashMap;
use std::sync::Arc;

use regex::Regex;

use crate::model::Severity;
use crate::rules::ast::{
    self, CmpOp, DestinationDecl, Expr, ExprKind, Item, Name, SettingValue, SeverityStmt,
    SloSourceSpec, SloStmt,
};
use crate::rules::diagnostics::{Code, Diagnostic};
use crate::rules::load::EnvPolicy;
use crate::rules::printer::format_number;
use crate::rules::ruleset::{
    AckTimeout, Cond, Destination, DestinationKind, Grouping, LabelIndex, NumOp, NumOperand, Role,
    Rule, RuleSet, Secret, SeverityPolicy, Slo, SloSource, StrOperand, Value,
};
use crate::rules::source::Span;
use crate::rules::suggest::closest;
use crate::rules::template::{MessageTemplates, TEMPLATE_SETTINGS};

/// Reads an environment variable; injected so tests need not touch the
/// process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Checks parsed files (in rule-set order) and compiles them.
///
/// Returns the rule set only when no error was found, together with every
/// diagnostic (warnings included).
pub fn check(
    files: &[ast::File],
    policy: EnvPolicy,
    env: EnvLookup<'_>,
) -> (Option<RuleSet>, Vec<Diagnostic>) {
    let mut checker = Checker {
        policy,
        env,
        diags: Vec::new(),
        regexes: HashMap::new(),
        templates: MessageTemplates::new(),
    };
    let ruleset = checker.run(files);
    let has_errors = checker.diags.iter().any(Diagnostic::is_error);
    (if has_errors { None } else { ruleset }, checker.diags)
}

/// Value types of the expression language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Str,
    Num,
    Dur,
    Bool,
}

impl Ty {
    fn describe(self) -> &'static str {
        match self {
            Ty::Str => "a string",
            Ty::Num => "a number",
            Ty::Dur => "a duration",
            Ty::Bool => "a condition (true/false)",
        }
    }
}

/// A type-checked sub-expression.
enum Typed {
    Str(StrOperand),
    Num(NumOperand),
    Dur(NumOperand),
    Bool(Cond),
}

impl Typed {
    fn ty(&self) -> Ty {
        match self {
            Typed::Str(_) => Ty::Str,
            Typed::Num(_) => Ty::Num,
            Typed::Dur(_) => Ty::Dur,
            Typed::Bool(_) => Ty::Bool,
        }
    }
}

/// Settings a destination kind accepts.
struct SettingSpec {
    key: &'static str,
    ty: SettingTy,
    required: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SettingTy {
    /// A string or `env("VAR")`.
    Text,
    Duration,
    /// One of these strings, literally (never from the environment: a
    /// typo must fail `check`, not the first page).
    Choice(&'static [&'static str]),
    /// A string literal holding a message template (never `env`: it is
    /// compiled when the rule set is checked).
    Template,
    /// A plain number greater than zero.
    Number,
}

impl SettingTy {
    fn describe(self) -> String {
        match self {
            SettingTy::Text => "a string or env(\"VAR\")".to_string(),
            SettingTy::Duration => "a duration".to_string(),
            SettingTy::Choice(options) => {
                let quoted: Vec<String> = options.iter().map(|o| format!("\"{o}\"")).collect();
                format!("one of {}", quoted.join(", "))
            }
            SettingTy::Template => "a template string".to_string(),
            SettingTy::Number => "a number greater than 0".to_string(),
        }
    }
}

/// PagerDuty event severities.
const PD_SEVERITIES: &[&str] = &["critical", "error", "warning", "info"];
/// Opsgenie alert priorities.
const OPSGENIE_PRIORITIES: &[&str] = &["P1", "P2", "P3", "P4", "P5"];

const fn req(key: &'static str, ty: SettingTy) -> SettingSpec {
    SettingSpec {
        key,
        ty,
        required: true,
    }
}

const fn opt(key: &'static str, ty: SettingTy) -> SettingSpec {
    SettingSpec {
        key,
        ty,
        required: false,
    }
}

const PAGERDUTY_SETTINGS: &[SettingSpec] = &[
    req("routing_key", SettingTy::Text),
    opt("url", SettingTy::Text),
    opt("timeout", SettingTy::Duration),
    opt("source", SettingTy::Text),
    opt("sev1", SettingTy::Choice(PD_SEVERITIES)),
    opt("sev2", SettingTy::Choice(PD_SEVERITIES)),
    opt("sev3", SettingTy::Choice(PD_SEVERITIES)),
];
const OPSGENIE_SETTINGS: &[SettingSpec] = &[
    req("api_key", SettingTy::Text),
    opt("url", SettingTy::Text),
    opt("timeout", SettingTy::Duration),
    opt("source", SettingTy::Text),
    opt("sev1", SettingTy::Choice(OPSGENIE_PRIORITIES)),
    opt("sev2", SettingTy::Choice(OPSGENIE_PRIORITIES)),
    opt("sev3", SettingTy::Choice(OPSGENIE_PRIORITIES)),
];
const CHAT_SETTINGS: &[SettingSpec] = &[
    req("url", SettingTy::Text),
    opt("timeout", SettingTy::Duration),
];
const WEBHOOK_SETTINGS: &[SettingSpec] = &[
    req("url", SettingTy::Text),
    opt("secret", SettingTy::Text),
    opt("timeout", SettingTy::Duration),
    opt("signature", SettingTy::Choice(&["standard", "github"])),
];

/// The message-template settings every kind accepts (`title`, `text_sev1`,
/// ...; see `docs/templates.md`).
const TEMPLATE_SPECS: [SettingSpec; 8] = {
    let mut specs = [const { opt("", SettingTy::Template) }; 8];
    let mut i = 0;
    while i < specs.len() {
        specs[i].key = TEMPLATE_SETTINGS[i];
        i += 1;
    }
    specs
};

/// Isolation settings every kind accepts, overriding the worker's
/// defaults for that kind: requests in flight at once, messages a second,
/// and how many may go at once after a quiet spell.
const ISOLATION_SETTINGS: &[SettingSpec] = &[
    opt("concurrency", SettingTy::Number),
    opt("rate", SettingTy::Number),
    opt("burst", SettingTy::Number),
];

/// The settings each kind accepts, besides the template and isolation settings. `url` is
/// the vendor endpoint (overridable so tests can point at a local
/// receiver); `timeout` bounds one request.
fn setting_specs(kind: DestinationKind) -> &'static [SettingSpec] {
    match kind {
        DestinationKind::PagerDuty => PAGERDUTY_SETTINGS,
        DestinationKind::Opsgenie => OPSGENIE_SETTINGS,
        DestinationKind::Slack | DestinationKind::Teams | DestinationKind::Discord => CHAT_SETTINGS,
        DestinationKind::Webhook => WEBHOOK_SETTINGS,
    }
}

struct Checker<'a> {
    policy: EnvPolicy,
    env: EnvLookup<'a>,
    diags: Vec<Diagnostic>,
    /// Compiled regexes by pattern: compiling dominates checking, and large
    /// rule sets repeat patterns. Shared, not cloned: a `Regex` clone
    /// shares the program but builds its own cache pool.
    regexes: HashMap<String, Arc<Regex>>,
    /// Message templates compiled so far, by destination and setting.
    templates: MessageTemplates,
}

/// Declarations gathered from every file, in rule-set order.
#[derive(Default)]
struct Gathered<'f> {
    slos: Vec<&'f ast::SloDecl>,
    destinations: Vec<&'f DestinationDecl>,
    severities: Vec<&'f ast::SeverityDecl>,
    rules: Vec<&'f ast::RuleDecl>,
    otherwise: Vec<&'f ast::OtherwiseDecl>,
    groups: Vec<&'f ast::GroupDecl>,
}

impl<'a> Checker<'a> {
    fn emit(&mut self, diag: Diagnostic) {
        self.diags.push(diag);
    }

    fn run(&mut self, files: &[ast::File]) -> Option<RuleSet> {
        let mut g = Gathered::default();
        for file in files {
            for item in &file.items {
                match item {
                    Item::Slo(d) => g.slos.push(d),
                    Item::Destination(d) => g.destinations.push(d),
                    Item::Severity(d) => g.severities.push(d),
                    Item::Rule(d) => g.rules.push(d),
                    Item::Otherwise(d) => g.otherwise.push(d),
                    Item::Group(d) => g.groups.push(d),
                }
            }
        }

        let slo_names =
            self.unique_names(g.slos.iter().map(|d| &d.name), Code::DuplicateSlo, "SLO");
        let slos: Vec<Option<Slo>> = g.slos.iter().map(|d| self.slo(d)).collect();

        let dest_names = self.unique_names(
            g.destinations.iter().map(|d| &d.name),
            Code::DuplicateDestination,
            "destination",
        );
        let destinations: Vec<Option<Destination>> =
            g.destinations.iter().map(|d| self.destination(d)).collect();
        let mut dest_used = vec![false; g.destinations.len()];

        // Severity blocks.
        let mut severities: [Option<SeverityPolicy>; 3] = [None, None, None];
        let mut severity_spans: [Option<Span>; 3] = [None, None, None];
        for decl in &g.severities {
            let level = decl.severity.severity;
            if let Some(first) = severity_spans[level.index()] {
                self.emit(
                    Diagnostic::new(
                        Code::DuplicateSeverity,
                        format!("severity {level} is defined twice"),
                    )
                    .at(decl.severity.span, "defined again here")
                    .also(first, "first defined here"),
                );
                // Still check its statements, to report every problem at once.
                self.severity(decl, &dest_names, &mut dest_used);
                continue;
            }
            severity_spans[level.index()] = Some(decl.severity.span);
            severities[level.index()] = self.severity(decl, &dest_names, &mut dest_used);
        }

        // Rules.
        self.unique_names(g.rules.iter().map(|d| &d.name), Code::DuplicateRule, "rule");
        let mut rules = Vec::new();
        for decl in &g.rules {
            self.severity_defined(decl.then, &severity_spans, "rule");
            let ctx = ExprCtx {
                slo_names: &slo_names,
                slos: &slos,
            };
            let when = self.condition(&decl.when, &ctx);
            let tied_to_slo = requires_slo(&decl.when);
            if decl.then.severity <= Severity::Sev2 && !tied_to_slo {
                self.emit(
                    Diagnostic::new(
                        Code::NoBurnCondition,
                        format!(
                            "rule \"{}\" assigns {} without any SLO burn condition",
                            decl.name.value, decl.then.severity
                        ),
                    )
                    .at(decl.then.span, "no SLO burn condition")
                    .note("tie paging thresholds to error budgets: add a burn(\"SLO\", WINDOW) > K condition"),
                );
            }
            if let Some(when) = when {
                rules.push(Rule {
                    name: decl.name.value.clone(),
                    when,
                    severity: decl.then.severity,
                    span: decl.span,
                });
            }
        }

        // otherwise.
        let mut otherwise = None;
        if let Some(decl) = self.once_per_rule_set(&g.otherwise, |d| d.span, "otherwise") {
            self.severity_defined(decl.severity, &severity_spans, "otherwise");
            otherwise = Some(decl.severity.severity);
        }
        if g.otherwise.is_empty() && !files.is_empty() {
            // A rule-set-wide omission: no single place to point at.
            self.emit(
                Diagnostic::new(
                    Code::NoOtherwise,
                    "no `otherwise` severity: alerts that match no rule get no severity and are not routed",
                )
                .note("add a line such as `otherwise SEV3`"),
            );
        }

        // group.
        let mut grouping = Grouping::default();
        if let Some(decl) = self.once_per_rule_set(&g.groups, |d| d.span, "group") {
            grouping = self.grouping(decl);
        }

        // Unused destinations.
        for (i, (decl, used)) in g.destinations.iter().zip(&dest_used).enumerate() {
            // A duplicate already has its own error.
            if !used && dest_names.get(decl.name.value.as_str()) == Some(&i) {
                self.emit(
                    Diagnostic::new(
                        Code::UnusedDestination,
                        format!(
                            "destination \"{}\" is never paged, notified or escalated to",
                            decl.name.value
                        ),
                    )
                    .at(decl.name.span, "declared here"),
                );
            }
        }

        let slos: Vec<Slo> = slos.into_iter().collect::<Option<_>>()?;
        let destinations: Vec<Destination> = destinations.into_iter().collect::<Option<_>>()?;
        let index = build_index(&rules);
        Some(RuleSet {
            slos,
            destinations,
            severities,
            rules,
            otherwise,
            grouping,
            index,
            templates: std::mem::take(&mut self.templates),
        })
    }

    /// Reports duplicate names; returns each name's first declaration index.
    fn unique_names<'n>(
        &mut self,
        names: impl Iterator<Item = &'n Name>,
        code: Code,
        what: &str,
    ) -> HashMap<&'n str, usize> {
        let mut seen: HashMap<&'n str, usize> = HashMap::new();
        let mut spans: Vec<Span> = Vec::new();
        for (i, name) in names.enumerate() {
            spans.push(name.span);
            if let Some(&first) = seen.get(name.value.as_str()) {
                self.emit(
                    Diagnostic::new(code, format!("{what} \"{}\" is defined twice", name.value))
                        .at(name.span, "defined again here")
                        .also(spans[first], "first defined here"),
                );
            } else {
                seen.insert(&name.value, i);
            }
        }
        seen
    }

    /// For a declaration allowed once per rule set: reports every
    /// repetition (E207) and returns the first, if there is one.
    fn once_per_rule_set<'d, T>(
        &mut self,
        decls: &[&'d T],
        span: fn(&T) -> Span,
        what: &str,
    ) -> Option<&'d T> {
        let (first, again) = decls.split_first()?;
        for decl in again {
            self.emit(
                Diagnostic::new(
                    Code::DuplicateDeclaration,
                    format!("`{what}` is given more than once"),
                )
                .at(span(decl), "given again here")
                .also(span(first), "first given here"),
            );
        }
        Some(first)
    }

    fn severity_defined(&mut self, lit: ast::SeverityLit, defined: &[Option<Span>; 3], user: &str) {
        if defined[lit.severity.index()].is_none() {
            self.emit(
                Diagnostic::new(
                    Code::UndefinedSeverity,
                    format!(
                        "{user} uses {} but the rule set has no `severity {}` block",
                        lit.severity, lit.severity
                    ),
                )
                .at(lit.span, "no actions defined for this severity")
                .note(format!(
                    "add `severity {} {{ page \"...\" }}` naming who is paged or notified",
                    lit.severity
                )),
            );
        }
    }

    fn slo(&mut self, decl: &ast::SloDecl) -> Option<Slo> {
        let mut objective: Option<(f64, Span)> = None;
        let mut period: Option<(u64, Span)> = None;
        let mut source: Option<(SloSource, Span)> = None;
        let mut ok = true;
        for stmt in &decl.stmts {
            match stmt {
                SloStmt::Objective(p) => {
                    if self.once(&objective.map(|o| o.1), p.span, "objective") {
                        // Rounded so that 99.9% is the f64 nearest 0.999, not
                        // 0.9990000000000001 (which would skew every burn
                        // rate). The range is checked after rounding: 1.0
                        // would make the highest burn infinite.
                        let fraction = (p.percent / 100.0 * 1e12).round() / 1e12;
                        if !(fraction > 0.0 && fraction < 1.0) {
                            let mut diag = Diagnostic::new(
                                Code::BadObjective,
                                format!("objective {}% is out of range", p.percent),
                            )
                            .at(p.span, "must be above 0% and below 100%");
                            if p.percent > 0.0 && p.percent < 100.0 {
                                diag = diag.note(format!(
                                    "objectives are kept to 12 decimal places of a fraction, \
                                     where this one is {}",
                                    if fraction >= 1.0 { "100%" } else { "0%" }
                                ));
                            }
                            self.emit(diag);
                            ok = false;
                        }
                        objective = Some((fraction, p.span));
                    } else {
                        ok = false;
                    }
                }
                SloStmt::Period(d) => {
                    if self.once(&period.map(|o| o.1), d.span, "period") {
                        if d.secs == 0 {
                            self.emit(
                                Diagnostic::new(Code::BadPeriod, "SLO period is zero")
                                    .at(d.span, "must be a positive duration such as 30d"),
                            );
                            ok = false;
                        }
                        period = Some((d.secs, d.span));
                    } else {
                        ok = false;
                    }
                }
                SloStmt::Source(spec) => {
                    let span = spec.span();
                    if !self.once(&source.as_ref().map(|s| s.1), span, "source") {
                        ok = false;
                        continue;
                    }
                    match self.slo_source(spec) {
                        Some(s) => source = Some((s, span)),
                        None => ok = false,
                    }
                }
            }
        }
        if objective.is_none() {
            self.emit(
                Diagnostic::new(
                    Code::BadObjective,
                    format!("SLO \"{}\" has no objective", decl.name.value),
                )
                .at(decl.name.span, "add `objective 99.9%` (for example)"),
            );
            ok = false;
        }
        if period.is_none() {
            self.emit(
                Diagnostic::new(
                    Code::BadPeriod,
                    format!("SLO \"{}\" has no period", decl.name.value),
                )
                .at(decl.name.span, "add `period 30d` (for example)"),
            );
            ok = false;
        }
        if !ok {
            return None;
        }
        Some(Slo {
            name: decl.name.value.clone(),
            objective: objective?.0,
            period_secs: period?.0,
            // An SLO without a source receives pushed counts.
            source: source.map(|s| s.0).unwrap_or(SloSource::Push),
        })
    }

    /// True when `first` is empty; otherwise reports a duplicate statement.
    fn once(&mut self, first: &Option<Span>, span: Span, what: &str) -> bool {
        match first {
            None => true,
            Some(first) => {
                self.emit(
                    Diagnostic::new(
                        Code::DuplicateStatement,
                        format!("`{what}` is given twice in one block"),
                    )
                    .at(span, "given again here")
                    .also(*first, "first given here"),
                );
                false
            }
        }
    }

    fn slo_source(&mut self, spec: &SloSourceSpec) -> Option<SloSource> {
        match spec {
            SloSourceSpec::Push { .. } => Some(SloSource::Push),
            SloSourceSpec::Alerts { .. } => Some(SloSource::Alerts),
            SloSourceSpec::Prometheus { queries, span } => {
                let mut errors: Option<&ast::PrometheusQuery> = None;
                let mut total: Option<&ast::PrometheusQuery> = None;
                let mut ok = true;
                for q in queries {
                    let (slot, word) = match q.kind {
                        ast::QueryKind::Errors => (&mut errors, "errors"),
                        ast::QueryKind::Total => (&mut total, "total"),
                    };
                    if let Some(first) = slot {
                        let first = first.span;
                        self.emit(
                            Diagnostic::new(
                                Code::DuplicateStatement,
                                format!("`{word}` is given twice in one block"),
                            )
                            .at(q.span, "given again here")
                            .also(first, "first given here"),
                        );
                        ok = false;
                    } else {
                        *slot = Some(q);
                    }
                }
                for (slot, word) in [(&errors, "errors"), (&total, "total")] {
                    if slot.is_none() {
                        self.emit(
                            Diagnostic::new(
                                Code::BadSloSource,
                                format!("prometheus source has no `{word}` query"),
                            )
                            .at(*span, format!("add `{word} \"<PromQL>\"`")),
                        );
                        ok = false;
                    }
                }
                if !ok {
                    return None;
                }
                Some(SloSource::Prometheus {
                    errors: errors?.query.value.clone(),
                    total: total?.query.value.clone(),
                })
            }
        }
    }

    fn destination(&mut self, decl: &DestinationDecl) -> Option<Destination> {
        let Some(kind) = DestinationKind::parse(&decl.kind.value) else {
            let kinds: Vec<&str> = DestinationKind::ALL.iter().map(|k| k.as_str()).collect();
            self.emit(
                Diagnostic::new(
                    Code::UnknownDestinationKind,
                    format!("unknown destination kind `{}`", decl.kind.value),
                )
                .at(decl.kind.span, "not a destination kind")
                .note(format!("expected one of: {}", kinds.join(", "))),
            );
            return None;
        };
        let specs = setting_specs(kind);
        let mut ok = true;
        let mut seen: HashMap<&str, Span> = HashMap::new();
        let mut settings = Vec::new();
        for setting in &decl.settings {
            let key = setting.key.value.as_str();
            if let Some(first) = seen.get(key) {
                self.emit(
                    Diagnostic::new(
                        Code::DuplicateStatement,
                        format!("setting `{key}` is given twice"),
                    )
                    .at(setting.key.span, "given again here")
                    .also(*first, "first given here"),
                );
                ok = false;
                continue;
            }
            seen.insert(key, setting.key.span);
            let spec = specs
                .iter()
                .chain(&TEMPLATE_SPECS)
                .chain(ISOLATION_SETTINGS)
                .find(|s| s.key == key);
            let Some(spec) = spec else {
                let keys: Vec<&str> = specs
                    .iter()
                    .chain(&TEMPLATE_SPECS)
                    .chain(ISOLATION_SETTINGS)
                    .map(|s| s.key)
                    .collect();
                self.emit(
                    Diagnostic::new(
                        Code::BadSetting,
                        format!("{} destinations have no setting `{key}`", kind.as_str()),
                    )
                    .at(setting.key.span, "unknown setting")
                    .note(format!("expected one of: {}", keys.join(", "))),
                );
                ok = false;
                continue;
            };
            match self.setting_value(spec, &setting.value, setting.span) {
                Some(v) => settings.push((key.to_string(), v)),
                None => ok = false,
            }
            if let (SettingTy::Template, SettingValue::Str(text)) = (spec.ty, &setting.value) {
                ok &= self.template(&decl.name.value, key, text);
            }
        }
        for spec in specs.iter().filter(|s| s.required) {
            if !seen.contains_key(spec.key) {
                self.emit(
                    Diagnostic::new(
                        Code::BadSetting,
                        format!(
                            "{} destination \"{}\" needs `{}`",
                            kind.as_str(),
                            decl.name.value,
                            spec.key
                        ),
                    )
                    .at(decl.name.span, format!("missing `{}`", spec.key)),
                );
                ok = false;
            }
        }
        // A GitHub-style signature needs a secret; without one the request
        // would go unsigned, which the receiver refuses at 3 a.m.
        let github = settings
            .iter()
            .any(|(k, v)| k == "signature" && matches!(v, Value::Text(t) if t == "github"));
        if github && !seen.contains_key("secret") {
            self.emit(
                Diagnostic::new(
                    Code::BadSetting,
                    format!(
                        "webhook destination \"{}\" signs with `signature \"github\"` but has no `secret`",
                        decl.name.value
                    ),
                )
                .at(decl.name.span, "missing `secret`"),
            );
            ok = false;
        }
        ok.then(|| Destination {
            name: decl.name.value.clone(),
            kind,
            settings,
        })
    }

    fn setting_value(
        &mut self,
        spec: &SettingSpec,
        value: &SettingValue,
        span: Span,
    ) -> Option<Value> {
        let resolved = match (spec.ty, value) {
            (SettingTy::Text, SettingValue::Str(s)) => Some(Value::Text(s.value.clone())),
            (SettingTy::Text, SettingValue::Env(var)) => Some(self.env_value(var)?),
            (SettingTy::Duration, SettingValue::Duration(d)) => Some(Value::Duration(d.secs)),
            (SettingTy::Choice(options), SettingValue::Str(s)) => options
                .contains(&s.value.as_str())
                .then(|| Value::Text(s.value.clone())),
            (SettingTy::Template, SettingValue::Str(s)) => Some(Value::Text(s.value.clone())),
            (SettingTy::Number, SettingValue::Number { value, .. })
                if value.is_finite() && *value > 0.0 =>
            {
                Some(Value::Number(*value))
            }
            _ => None,
        };
        if resolved.is_none() {
            self.emit(
                Diagnostic::new(
                    Code::BadSetting,
                    format!("setting `{}` takes {}", spec.key, spec.ty.describe()),
                )
                .at(span, format!("expected {}", spec.ty.describe())),
            );
        }
        resolved
    }

    /// Compiles one message template: a syntax error is an error pointing
    /// into the string; an undocumented variable a warning. Returns false
    /// on error.
    fn template(&mut self, destination: &str, setting: &str, text: &Name) -> bool {
        match self.templates.add(destination, setting, &text.value) {
            Err(e) => {
                let span = match e.range {
                    Some(range) => span_in_string(text, range),
                    None => text.span,
                };
                self.emit(
                    Diagnostic::new(
                        Code::BadTemplate,
                        format!("template `{setting}` does not compile: {}", e.message),
                    )
                    .at(span, e.message)
                    .note("templates use minijinja syntax: {{ incident.title }}, {% if reason %}...{% endif %}; see docs/templates.md"),
                );
                false
            }
            Ok(unknown) => {
                for path in unknown {
                    let span = find_in_string(text, &path)
                        .or_else(|| find_in_string(text, path.split('.').next().unwrap_or(&path)))
                        .unwrap_or(text.span);
                    let top = path.split('.').next().unwrap_or(&path);
                    let known = crate::rules::template::VARIABLES;
                    let mut diag = Diagnostic::new(
                        Code::UnknownTemplateVariable,
                        format!(
                            "template `{setting}` uses `{path}`, which is not a template variable"
                        ),
                    )
                    .at(span, "not a documented variable; it renders as empty");
                    if let Some(best) = closest(top, known.iter().copied()) {
                        diag = diag.note(format!("did you mean `{best}`?"));
                    }
                    self.emit(diag.note(format!("variables: {}", known.join(", "))));
                }
                true
            }
        }
    }

    /// Resolves `env("VAR")`. The message names the variable, never a value.
    fn env_value(&mut self, var: &Name) -> Option<Value> {
        let value = (self.env)(&var.value);
        if value.is_none() {
            let code = match self.policy {
                EnvPolicy::Require => Code::MissingEnv,
                EnvPolicy::Warn => Code::EnvNotSet,
            };
            self.emit(
                Diagnostic::new(
                    code,
                    format!("environment variable {} is not set", var.value),
                )
                .at(var.span, "read here"),
            );
            if self.policy == EnvPolicy::Require {
                return None;
            }
        }
        Some(Value::Secret {
            var: var.value.clone(),
            value: value.map(Secret::new),
        })
    }

    fn severity(
        &mut self,
        decl: &ast::SeverityDecl,
        dest_names: &HashMap<&str, usize>,
        dest_used: &mut [bool],
    ) -> Option<SeverityPolicy> {
        let level = decl.severity.severity;
        let mut page: Option<(Vec<usize>, Span)> = None;
        let mut notify: Option<(Vec<usize>, Span)> = None;
        let mut cadence: Option<(u64, Span)> = None;
        let mut ack: Option<(AckTimeout, Span)> = None;
        let mut roles: Option<(Vec<Role>, bool, Span)> = None;
        let mut postmortem: Option<(bool, Span)> = None;
        let mut fallback: Option<(usize, Span)> = None;
        let mut ok = true;
        let mut resolve = |this: &mut Self, targets: &[Name]| -> Option<Vec<usize>> {
            let mut out = Vec::new();
            let mut all = true;
            for t in targets {
                match dest_names.get(t.value.as_str()) {
                    Some(&idx) => {
                        dest_used[idx] = true;
                        out.push(idx);
                    }
                    None => {
                        this.unknown_name(
                            Code::UnknownDestination,
                            "destination",
                            t,
                            dest_names.keys(),
                        );
                        all = false;
                    }
                }
            }
            all.then_some(out)
        };
        for stmt in &decl.stmts {
            match stmt {
                SeverityStmt::Page { targets, span } => {
                    // Resolved even when repeated, so every name is checked
                    // and marked used.
                    let resolved = resolve(self, targets);
                    if self.once(&page.as_ref().map(|p| p.1), *span, "page") {
                        match resolved {
                            Some(t) => page = Some((t, *span)),
                            None => ok = false,
                        }
                    } else {
                        ok = false;
                    }
                }
                SeverityStmt::Notify { targets, span } => {
                    let resolved = resolve(self, targets);
                    if self.once(&notify.as_ref().map(|p| p.1), *span, "notify") {
                        match resolved {
                            Some(t) => notify = Some((t, *span)),
                            None => ok = false,
                        }
                    } else {
                        ok = false;
                    }
                }
                SeverityStmt::Cadence { every, span } => {
                    if self.once(&cadence.map(|c| c.1), *span, "cadence") {
                        if every.secs == 0 {
                            self.zero_duration(every.span, "cadence");
                            ok = false;
                        }
                        cadence = Some((every.secs, *span));
                    } else {
                        ok = false;
                    }
                }
                SeverityStmt::AckTimeout {
                    timeout,
                    escalate,
                    span,
                } => {
                    if self.once(&ack.as_ref().map(|a| a.1), *span, "ack timeout") {
                        if timeout.secs == 0 {
                            self.zero_duration(timeout.span, "ack timeout");
                            ok = false;
                        }
                        match resolve(self, escalate) {
                            Some(t) => {
                                ack = Some((
                                    AckTimeout {
                                        after_secs: timeout.secs,
                                        escalate: t,
                                    },
                                    *span,
                                ))
                            }
                            None => ok = false,
                        }
                    } else {
                        ok = false;
                    }
                }
                SeverityStmt::Roles {
                    split,
                    roles: names,
                    span,
                } => {
                    if !self.once(&roles.as_ref().map(|r| r.2), *span, "roles") {
                        ok = false;
                        continue;
                    }
                    let mut list: Vec<(Role, Span)> = Vec::new();
                    for name in names {
                        match Role::parse(&name.value) {
                            None => {
                                let all: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                                self.emit(
                                    Diagnostic::new(
                                        Code::UnknownRole,
                                        format!("unknown incident role `{}`", name.value),
                                    )
                                    .at(name.span, "not a role")
                                    .note(format!("expected one of: {}", all.join(", "))),
                                );
                                ok = false;
                            }
                            Some(role) => {
                                if let Some((_, first)) = list.iter().find(|(r, _)| *r == role) {
                                    self.emit(
                                        Diagnostic::new(
                                            Code::DuplicateRole,
                                            format!("role `{}` is listed twice", name.value),
                                        )
                                        .at(name.span, "listed again here")
                                        .also(*first, "first listed here"),
                                    );
                                    ok = false;
                                } else {
                                    list.push((role, name.span));
                                }
                            }
                        }
                    }
                    // The commander is always among the roles, written or not.
                    let distinct =
                        list.len() + usize::from(!list.iter().any(|(r, _)| *r == Role::Commander));
                    if *split && distinct < 2 {
                        self.emit(
                            Diagnostic::new(
                                Code::SplitTooFewRoles,
                                "`roles split` needs at least two roles to split between people",
                            )
                            .at(*span, "fewer than two roles")
                            .note("list the roles to hold separately, e.g. `roles split commander, operations`"),
                        );
                        ok = false;
                    }
                    roles = Some((list.into_iter().map(|(r, _)| r).collect(), *split, *span));
                }
                SeverityStmt::Fallback { target, span } => {
                    let first = fallback.map(|f| f.1);
                    // Known names go through `resolve`, which marks them used.
                    let known = dest_names.contains_key(target.value.as_str());
                    match known
                        .then(|| resolve(self, std::slice::from_ref(target)))
                        .flatten()
                    {
                        Some(idx) => {
                            if self.once(&first, *span, "fallback") {
                                fallback = Some((idx[0], *span));
                            } else {
                                ok = false;
                            }
                        }
                        None => {
                            self.unknown_name(
                                Code::UnknownFallback,
                                "fallback destination",
                                target,
                                dest_names.keys(),
                            );
                            ok = false;
                        }
                    }
                }
                SeverityStmt::Postmortem { required, span } => {
                    if self.once(&postmortem.map(|p| p.1), *span, "postmortem") {
                        postmortem = Some((*required, *span));
                    } else {
                        ok = false;
                    }
                }
            }
        }
        let page_span = page.as_ref().map(|p| p.1);
        let page = page.map(|p| p.0).unwrap_or_default();
        let notify = notify.map(|n| n.0).unwrap_or_default();
        if let (Some((idx, span)), Some(page_span)) = (fallback, page_span)
            && page.contains(&idx)
        {
            self.emit(
                Diagnostic::new(
                    Code::FallbackAlsoPaged,
                    format!("severity {level}'s fallback is one of the destinations it pages"),
                )
                .at(span, "already paged")
                .also(page_span, "paged here")
                .note("a failed page would fail over to where it already went; name another destination"),
            );
        }
        let names_someone = decl
            .stmts
            .iter()
            .any(|s| matches!(s, SeverityStmt::Page { .. } | SeverityStmt::Notify { .. }));
        if !names_someone {
            self.emit(
                Diagnostic::new(
                    Code::NoAction,
                    format!("severity {level} pages and notifies no one"),
                )
                .at(decl.severity.span, "a severity with no action is noise")
                .note("add `page \"DEST\"` or `notify \"DEST\"`"),
            );
            ok = false;
        }
        if !ok {
            return None;
        }
        let (roles, split_roles) = match roles {
            Some((r, split, _)) => {
                // The commander role is never left empty: it is implied.
                let mut r = r;
                if !r.contains(&Role::Commander) {
                    r.insert(0, Role::Commander);
                }
                (r, split)
            }
            None => (Role::ALL.to_vec(), false),
        };
        Some(SeverityPolicy {
            page,
            notify,
            cadence_secs: cadence.map(|c| c.0),
            ack_timeout: ack.map(|a| a.0),
            roles,
            split_roles,
            // By default SEV1 and SEV2 require a postmortem.
            postmortem_required: postmortem.map(|p| p.0).unwrap_or(level <= Severity::Sev2),
            fallback: fallback.map(|f| f.0),
        })
    }

    fn zero_duration(&mut self, span: Span, what: &str) {
        self.emit(
            Diagnostic::new(
                Code::ZeroDuration,
                format!("{what} must be longer than zero"),
            )
            .at(span, "zero"),
        );
    }

    fn unknown_name<'k>(
        &mut self,
        code: Code,
        what: &str,
        name: &Name,
        known: impl Iterator<Item = &'k &'k str>,
    ) {
        let known: Vec<&str> = known.copied().collect();
        let mut diag = Diagnostic::new(code, format!("unknown {what} \"{}\"", name.value))
            .at(name.span, format!("no {what} has this name"));
        if let Some(best) = closest(&name.value, known.iter().copied()) {
            diag = diag.note(format!("did you mean \"{best}\"?"));
        } else if known.is_empty() {
            diag = diag.note(format!("the rule set declares no {what}"));
        }
        self.emit(diag);
    }

    fn grouping(&mut self, decl: &ast::GroupDecl) -> Grouping {
        let defaults = Grouping::default();
        if let Some(interval) = decl.interval
            && interval.secs == 0
        {
            self.zero_duration(interval.span, "group interval");
        }
        Grouping {
            by: decl.by.iter().map(|n| n.value.clone()).collect(),
            wait_secs: decl.wait.map(|w| w.secs).unwrap_or(defaults.wait_secs),
            interval_secs: decl
                .interval
                .map(|i| i.secs)
                .unwrap_or(defaults.interval_secs),
        }
    }

    // ----- expressions -----

    fn condition(&mut self, expr: &Expr, ctx: &ExprCtx<'_>) -> Option<Cond> {
        match self.expr(expr, ctx)? {
            Typed::Bool(c) => Some(c),
            other => {
                self.emit(
                    Diagnostic::new(
                        Code::NotBoolean,
                        format!(
                            "a `when` condition must be true or false, but this is {}",
                            other.ty().describe()
                        ),
                    )
                    .at(expr.span, "not a condition")
                    .note("compare it, e.g. `labels.severity == \"critical\"`"),
                );
                None
            }
        }
    }

    fn expr(&mut self, expr: &Expr, ctx: &ExprCtx<'_>) -> Option<Typed> {
        match &expr.kind {
            ExprKind::Or(terms) | ExprKind::And(terms) => {
                let is_or = matches!(expr.kind, ExprKind::Or(..));
                // Check every term even when one fails, to report all problems.
                let checked: Vec<Option<Cond>> =
                    terms.iter().map(|t| self.condition(t, ctx)).collect();
                let mut parts = Vec::with_capacity(checked.len());
                for part in checked {
                    // A parenthesised chain of the same operator joins this one.
                    match (is_or, part?) {
                        (true, Cond::Or(inner)) | (false, Cond::And(inner)) => parts.extend(inner),
                        (_, other) => parts.push(other),
                    }
                }
                Some(Typed::Bool(if is_or {
                    Cond::Or(parts)
                } else {
                    Cond::And(parts)
                }))
            }
            ExprKind::Not(inner) => Some(Typed::Bool(Cond::Not(Box::new(
                self.condition(inner, ctx)?,
            )))),
            ExprKind::Compare { op, lhs, rhs } => self.compare(*op, lhs, rhs, ctx).map(Typed::Bool),
            ExprKind::In {
                negated,
                value,
                list,
            } => self.membership(*negated, value, list, ctx).map(Typed::Bool),
            ExprKind::Label(name) => Some(Typed::Str(StrOperand::Label(name.clone()))),
            ExprKind::Annotation(name) => Some(Typed::Str(StrOperand::Annotation(name.clone()))),
            ExprKind::Str(s) => Some(Typed::Str(StrOperand::Literal(s.clone()))),
            ExprKind::Number(n) => Some(Typed::Num(NumOperand::Literal(*n))),
            ExprKind::Percent(p) => Some(Typed::Num(NumOperand::Percent(p / 100.0))),
            ExprKind::Duration(secs) => Some(Typed::Dur(NumOperand::Duration(*secs))),
            ExprKind::FiringFor => Some(Typed::Dur(NumOperand::FiringFor)),
            ExprKind::Burn { slo, window } => {
                let idx = self.slo_ref(slo, ctx)?;
                let slo_def = ctx.slos[idx].as_ref();
                if window.secs == 0 {
                    self.zero_duration(window.span, "burn window");
                    return None;
                }
                if let Some(def) = slo_def
                    && window.secs > def.period_secs
                {
                    self.emit(
                        Diagnostic::new(
                            Code::WindowTooLong,
                            format!(
                                "burn window {} is longer than the period {} of SLO \"{}\"",
                                crate::rules::printer::print_duration(window.secs),
                                crate::rules::printer::print_duration(def.period_secs),
                                def.name
                            ),
                        )
                        .at(window.span, "longer than the SLO period"),
                    );
                    return None;
                }
                Some(Typed::Num(NumOperand::Burn {
                    slo: idx,
                    window_secs: window.secs,
                }))
            }
            ExprKind::BudgetRemaining { slo } => {
                let idx = self.slo_ref(slo, ctx)?;
                Some(Typed::Num(NumOperand::BudgetRemaining { slo: idx }))
            }
        }
    }

    fn slo_ref(&mut self, name: &Name, ctx: &ExprCtx<'_>) -> Option<usize> {
        if let Some(&idx) = ctx.slo_names.get(name.value.as_str()) {
            Some(idx)
        } else {
            self.unknown_name(Code::UnknownSlo, "SLO", name, ctx.slo_names.keys());
            None
        }
    }

    /// `value =~ "PATTERN"` (`!~` when negated): the pattern must be a
    /// string literal, compiled once here.
    fn regex_match(
        &mut self,
        negated: bool,
        lhs: &Expr,
        rhs: &Expr,
        ctx: &ExprCtx<'_>,
    ) -> Option<Cond> {
        let symbol = if negated { "!~" } else { "=~" };
        let value = self.expr(lhs, ctx);
        let ExprKind::Str(pattern) = &rhs.kind else {
            self.emit(
                Diagnostic::new(
                    Code::RegexNotLiteral,
                    format!("the right side of `{symbol}` must be a string literal"),
                )
                .at(rhs.span, "not a string literal")
                .note("regexes are compiled once at load, so they cannot come from labels"),
            );
            return None;
        };
        let compiled = match self.regexes.get(pattern.as_str()) {
            Some(r) => Ok(r.clone()),
            None => compile_anchored(pattern).map(Arc::new),
        };
        let regex = match compiled {
            Ok(r) => {
                self.regexes.insert(pattern.clone(), r.clone());
                Some(r)
            }
            Err(problem) => {
                self.emit(
                    Diagnostic::new(
                        Code::BadRegex,
                        format!("invalid regular expression {pattern:?}"),
                    )
                    .at(rhs.span, problem),
                );
                None
            }
        };
        let value = match value? {
            Typed::Str(s) => s,
            other => {
                let ty = other.ty();
                self.type_mismatch(
                    format!("`{symbol}` matches strings, not {}", ty.describe()),
                    &[(lhs, ty)],
                );
                return None;
            }
        };
        Some(Cond::Regex {
            negated,
            value,
            regex: regex?,
            pattern: pattern.clone(),
        })
    }

    fn compare(&mut self, op: CmpOp, lhs: &Expr, rhs: &Expr, ctx: &ExprCtx<'_>) -> Option<Cond> {
        let op = match op {
            CmpOp::Match => return self.regex_match(false, lhs, rhs, ctx),
            CmpOp::NotMatch => return self.regex_match(true, lhs, rhs, ctx),
            CmpOp::Eq => NumOp::Eq,
            CmpOp::Ne => NumOp::Ne,
            CmpOp::Lt => NumOp::Lt,
            CmpOp::Le => NumOp::Le,
            CmpOp::Gt => NumOp::Gt,
            CmpOp::Ge => NumOp::Ge,
        };
        let left = self.expr(lhs, ctx);
        let right = self.expr(rhs, ctx);
        let (left, right) = (left?, right?);
        match (left, right) {
            (Typed::Str(l), Typed::Str(r)) => match op {
                NumOp::Eq | NumOp::Ne => Some(Cond::StrCmp {
                    negated: op == NumOp::Ne,
                    lhs: l,
                    rhs: r,
                }),
                _ => {
                    self.type_mismatch(
                        format!(
                            "`{}` orders numbers and durations, not strings",
                            op.symbol()
                        ),
                        &[(lhs, Ty::Str), (rhs, Ty::Str)],
                    );
                    None
                }
            },
            (Typed::Num(l), Typed::Num(r)) => {
                self.check_slo_threshold(op, &l, &r, rhs.span, ctx);
                self.check_slo_threshold(op.flipped(), &r, &l, lhs.span, ctx);
                Some(Cond::NumCmp { op, lhs: l, rhs: r })
            }
            (Typed::Dur(l), Typed::Dur(r)) => Some(Cond::NumCmp { op, lhs: l, rhs: r }),
            (l, r) => {
                let (l, r) = (l.ty(), r.ty());
                self.type_mismatch(
                    format!("cannot compare {} with {}", l.describe(), r.describe()),
                    &[(lhs, l), (rhs, r)],
                );
                None
            }
        }
    }

    /// Reports operands of the wrong types, each labelled with its type.
    fn type_mismatch(&mut self, message: String, operands: &[(&Expr, Ty)]) {
        let mut diag = Diagnostic::new(Code::TypeMismatch, message);
        for (i, (expr, ty)) in operands.iter().enumerate() {
            let label = format!("this is {}", ty.describe());
            diag = if i == 0 {
                diag.at(expr.span, label)
            } else {
                diag.also(expr.span, label)
            };
        }
        self.emit(diag);
    }

    /// Checks `subject OP threshold` where the subject reads an SLO and the
    /// threshold is a number or percentage literal (at `span`): a burn
    /// threshold the SLO can never reach (E304) and a budget compared as if
    /// it were a percentage (W104). `in` lists come here item by item as
    /// `==` (`!=` for `not in`).
    fn check_slo_threshold(
        &mut self,
        op: NumOp,
        subject: &NumOperand,
        threshold: &NumOperand,
        span: Span,
        ctx: &ExprCtx<'_>,
    ) {
        let k = match threshold {
            NumOperand::Literal(k) | NumOperand::Percent(k) => *k,
            _ => return,
        };
        // Formatted only for a diagnostic: most thresholds are fine.
        let written = || match threshold {
            NumOperand::Percent(k) => format!("{}%", format_number(k * 100.0)),
            _ => format_number(k),
        };
        match subject {
            NumOperand::Burn { slo, .. } => {
                if let Some(def) = ctx.slos[*slo].as_ref() {
                    self.check_burn_reachable(op, def, k, written, span);
                }
            }
            NumOperand::BudgetRemaining { .. } => {
                self.check_budget_ratio(threshold, k, written, span);
            }
            _ => {}
        }
    }

    /// `burn(S, W) > k` with k at or above the SLO's maximum burn rate
    /// (every event failing) can never hold.
    fn check_burn_reachable(
        &mut self,
        op: NumOp,
        def: &Slo,
        k: f64,
        written: impl Fn() -> String,
        span: Span,
    ) {
        let max = def.max_burn();
        // Tolerance: 1/(1-0.999) is 1000.0000000000009 in floating point.
        let tolerance = max * 1e-9;
        let unreachable = match op {
            NumOp::Gt => k >= max - tolerance,
            NumOp::Ge | NumOp::Eq => k > max + tolerance,
            NumOp::Lt | NumOp::Le | NumOp::Ne => false,
        };
        if unreachable {
            let objective = format_number(def.objective * 100.0);
            self.emit(
                Diagnostic::new(
                    Code::UnreachableBurn,
                    format!(
                        "burn threshold {} can never be reached by SLO \"{}\"",
                        written(),
                        def.name
                    ),
                )
                .at(
                    span,
                    format!("the highest possible burn is {}", format_number(max)),
                )
                .note(format!(
                    "with objective {objective}% every request failing burns at \
                     1/(1-{objective}%) = {}",
                    format_number(max)
                )),
            );
        }
    }

    /// `budget_remaining` is a fraction; a threshold above 1 (or 100%) was
    /// most likely meant as a percentage.
    fn check_budget_ratio(
        &mut self,
        threshold: &NumOperand,
        k: f64,
        written: impl Fn() -> String,
        span: Span,
    ) {
        if k <= 1.0 {
            return;
        }
        let written = written();
        let label = match threshold {
            NumOperand::Percent(_) => "more than the whole budget".to_string(),
            _ => format!("did you mean {written}%?"),
        };
        self.emit(
            Diagnostic::new(
                Code::RatioAsNumber,
                format!(
                    "budget_remaining is a fraction from 0 to 1 (0% to 100%), compared here with {written}"
                ),
            )
            .at(span, label),
        );
    }

    fn membership(
        &mut self,
        negated: bool,
        value: &Expr,
        list: &[Expr],
        ctx: &ExprCtx<'_>,
    ) -> Option<Cond> {
        let value_typed = self.expr(value, ctx)?;
        if list.is_empty() {
            self.emit(
                Diagnostic::new(
                    Code::BadList,
                    "an `in` list is empty, so it can never match",
                )
                .at(value.span, "compared with an empty list"),
            );
            return None;
        }
        let mut strings = Vec::new();
        let mut numbers = Vec::new();
        let mut ok = true;
        for item in list {
            let got = match (&value_typed, &item.kind) {
                (Typed::Str(_), ExprKind::Str(s)) => {
                    strings.push(s.clone());
                    continue;
                }
                (Typed::Num(_), ExprKind::Number(n)) => {
                    numbers.push(*n);
                    continue;
                }
                (Typed::Num(_), ExprKind::Percent(p)) => {
                    numbers.push(p / 100.0);
                    continue;
                }
                (Typed::Dur(_), ExprKind::Duration(d)) => {
                    numbers.push(*d as f64);
                    continue;
                }
                (_, ExprKind::Str(_)) => Ty::Str,
                (_, ExprKind::Number(_) | ExprKind::Percent(_)) => Ty::Num,
                (_, ExprKind::Duration(_)) => Ty::Dur,
                _ => Ty::Bool,
            };
            self.emit(
                Diagnostic::new(
                    Code::BadList,
                    format!(
                        "list item is {}, but the value tested is {}",
                        got.describe(),
                        value_typed.ty().describe()
                    ),
                )
                .at(item.span, "wrong type"),
            );
            ok = false;
        }
        if !ok {
            return None;
        }
        if let Typed::Num(subject) = &value_typed {
            let op = if negated { NumOp::Ne } else { NumOp::Eq };
            for item in list {
                let threshold = match item.kind {
                    ExprKind::Number(n) => NumOperand::Literal(n),
                    ExprKind::Percent(p) => NumOperand::Percent(p / 100.0),
                    _ => continue,
                };
                self.check_slo_threshold(op, subject, &threshold, item.span, ctx);
            }
        }
        match value_typed {
            Typed::Str(v) => Some(Cond::StrIn {
                negated,
                value: v,
                list: strings,
            }),
            Typed::Num(v) | Typed::Dur(v) => Some(Cond::NumIn {
                negated,
                value: v,
                list: numbers,
            }),
            Typed::Bool(_) => {
                self.emit(
                    Diagnostic::new(Code::BadList, "`in` tests a value, not a condition")
                        .at(value.span, "a condition"),
                );
                None
            }
        }
    }
}

/// Compiles the pattern of `=~`/`!~` as Prometheus matches label values:
/// fully anchored, with `.` matching a newline too (Prometheus 3 compiles
/// `^(?s:PATTERN)$`; `(?-s)` turns it off).
///
/// The pattern is parsed on its own and the anchors are added to its
/// syntax tree, not pasted around its text: pasted, `prod)|(x` would read
/// `^(?:prod)|(x)$` (anchored on one side only, matching `production`),
/// and an `(?x)` comment would swallow the closing `)$`. The tree is
/// printed back as an equivalent pattern for `regex`, which the
/// `regex-syntax` printer exists for. The error is the problem alone, for
/// a label under the pattern.
fn compile_anchored(pattern: &str) -> Result<Regex, String> {
    use regex_syntax::hir::{Hir, Look};
    let hir = regex_syntax::ParserBuilder::new()
        .dot_matches_new_line(true)
        .build()
        .parse(pattern)
        .map_err(|e| match &e {
            regex_syntax::Error::Parse(e) => e.kind().to_string(),
            regex_syntax::Error::Translate(e) => e.kind().to_string(),
            other => other.to_string(),
        })?;
    let anchored = Hir::concat(vec![Hir::look(Look::Start), hir, Hir::look(Look::End)]);
    Regex::new(&anchored.to_string()).map_err(|e| {
        // Only limits are left to fail here (a pattern too big to compile).
        let detail = e.to_string();
        detail.lines().last().unwrap_or("").trim().to_string()
    })
}

struct ExprCtx<'c> {
    slo_names: &'c HashMap<&'c str, usize>,
    slos: &'c [Option<Slo>],
}

/// True when the condition cannot hold unless an SLO alarm holds: one in
/// a conjunction, or one in every branch of a disjunction. An alarm is a
/// threshold on an unhealthy SLO, `burn(...) > k` (or `>=`) or
/// `budget_remaining(...) < k` (or `<=`), either way round; `burn(...) < 1`
/// holds while the SLO is healthy and does not count, nor does an alarm
/// under `not` (the rule would page when the SLO is healthy), an equality,
/// or an `in` list.
fn requires_slo(expr: &Expr) -> bool {
    match &expr.kind {
        ExprKind::And(terms) => terms.iter().any(requires_slo),
        ExprKind::Or(terms) => terms.iter().all(requires_slo),
        ExprKind::Compare { op, lhs, rhs } => slo_alarm(*op, lhs, rhs),
        _ => false,
    }
}

/// `lhs OP rhs` is an SLO alarm (see [`requires_slo`]): a burn above a
/// literal threshold or a budget below one, either way round.
fn slo_alarm(op: CmpOp, lhs: &Expr, rhs: &Expr) -> bool {
    let literal = |e: &Expr| matches!(e.kind, ExprKind::Number(_) | ExprKind::Percent(_));
    let burn = |e: &Expr| matches!(e.kind, ExprKind::Burn { .. });
    let budget = |e: &Expr| matches!(e.kind, ExprKind::BudgetRemaining { .. });
    match op {
        CmpOp::Gt | CmpOp::Ge => (burn(lhs) && literal(rhs)) || (literal(lhs) && budget(rhs)),
        CmpOp::Lt | CmpOp::Le => (budget(lhs) && literal(rhs)) || (literal(lhs) && burn(rhs)),
        CmpOp::Eq | CmpOp::Ne | CmpOp::Match | CmpOp::NotMatch => false,
    }
}

/// Builds the label equality index over the rules.
fn build_index(rules: &[Rule]) -> LabelIndex {
    let mut index = LabelIndex::default();
    for (i, rule) in rules.iter().enumerate() {
        if let Some(slo) = rule.slo_rule_of() {
            match index.by_slo.binary_search_by_key(&slo, |(s, _)| *s) {
                Ok(at) => index.by_slo[at].1.push(i),
                Err(at) => index.by_slo.insert(at, (slo, vec![i])),
            }
            continue;
        }
        match anchor(&rule.when) {
            Some((label, values)) => {
                // Most rules share a few labels: allocate the key once.
                if !index.by_label.contains_key(label) {
                    index.by_label.insert(label.to_string(), HashMap::new());
                }
                let Some(by_value) = index.by_label.get_mut(label) else {
                    continue;
                };
                for v in values {
                    by_value.entry(v.to_string()).or_default().push(i);
                }
            }
            None => index.unindexed.push(i),
        }
    }
    index
}

/// A label equality that must hold for the condition to hold: the first
/// `labels.X == "v"` or `labels.X in [...]` in a top-level conjunction.
/// Matchers against `""` are not used: an alert missing the label reads
/// `""` but has no entry to look up.
fn anchor(cond: &Cond) -> Option<(&str, Vec<&str>)> {
    match cond {
        Cond::And(parts) => parts.iter().find_map(anchor),
        Cond::StrCmp {
            negated: false,
            lhs,
            rhs,
        } => match (lhs, rhs) {
            (StrOperand::Label(l), StrOperand::Literal(v))
            | (StrOperand::Literal(v), StrOperand::Label(l))
                if !v.is_empty() =>
            {
                Some((l, vec![v]))
            }
            _ => None,
        },
        Cond::StrIn {
            negated: false,
            value: StrOperand::Label(l),
            list,
        } if list.iter().all(|v| !v.is_empty()) => {
            let mut values: Vec<&str> = list.iter().map(String::as_str).collect();
            values.sort_unstable();
            values.dedup();
            Some((l, values))
        }
        _ => None,
    }
}

/// The bytes a decoded string character takes in a rule file, written the
/// canonical way (`\"`, `\\`, `\n`, `\t`, `\r` escaped; anything else as
/// itself).
fn written_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\t' | '\r' => 2,
        c => c.len_utf8(),
    }
}

/// The span in the rule file of a byte range inside a string literal's
/// decoded value. When the literal was not written the canonical way (a
/// `\u{...}` escape), the whole literal is the best we can point at.
fn span_in_string(lit: &Name, range: std::ops::Range<usize>) -> Span {
    let value = &lit.value;
    let written: usize = value.chars().map(written_len).sum();
    if written + 2 != lit.span.end.saturating_sub(lit.span.start)
        || range.start > range.end
        || range.end > value.len()
        || !value.is_char_boundary(range.start)
        || !value.is_char_boundary(range.end)
    {
        return lit.span;
    }
    let offset = |byte: usize| -> usize { value[..byte].chars().map(written_len).sum() };
    let start = lit.span.start + 1 + offset(range.start);
    let end = lit.span.start + 1 + offset(range.end);
    // An empty range (an unexpected end) still gets one column to point at.
    Span::new(lit.span.file, start, end.max(start + 1).min(lit.span.end))
}

/// The span of the first whole-word occurrence of `needle` in a string
/// literal, if any.
fn find_in_string(lit: &Name, needle: &str) -> Option<Span> {
    let value = &lit.value;
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(found) = value[from..].find(needle) {
        let start = from + found;
        let end = start + needle.len();
        let before = value[..start].chars().next_back();
        let after = value[end..].chars().next();
        if !before.is_some_and(|c| is_word(c) || c == '.') && !after.is_some_and(is_word) {
            return Some(span_in_string(lit, start..end));
        }
        from = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::rules::diagnostics::{Code, Level};
    use crate::rules::load::{EnvPolicy, Loaded, load_sources_with_env};
    use crate::rules::ruleset::{DestinationKind, Role, SloSource, Value};
    use crate::rules::source::Sources;

    /// A small valid prelude: one SLO, two destinations, three severities.
    const PRELUDE: &str = r#"
slo "api" { objective 99.9%; period 30d; source push }
destination "pd" pagerduty { routing_key env("PD_KEY") }
destination "chat" slack { url "https://hooks.example/x" }
severity SEV1 { page "pd"; notify "chat"; cadence 15m; ack timeout 5m escalate "chat"; roles split commander, communications, operations }
severity SEV2 { page "pd"; cadence 30m }
severity SEV3 { notify "chat"; cadence 4h; postmortem optional }
otherwise SEV3
"#;

    fn load_with(text: &str, policy: EnvPolicy, env: &dyn Fn(&str) -> Option<String>) -> Loaded {
        let mut sources = Sources::new();
        sources.add("test.sev", text);
        load_sources_with_env(sources, policy, env)
    }

    fn load(text: &str) -> Loaded {
        load_with(text, EnvPolicy::Warn, &|_| Some("secret-value".to_string()))
    }

    fn codes(loaded: &Loaded) -> Vec<Code> {
        loaded.diagnostics.iter().map(|d| d.code).collect()
    }

    fn with_prelude(rules: &str) -> String {
        format!("{PRELUDE}\n{rules}")
    }

    #[test]
    fn a_valid_rule_set_compiles_with_resolved_names() {
        let loaded = load(&with_prelude(
            r#"rule "fast" { when labels.service == "api" and burn("api", 1h) > 14.4 then SEV1 }
               group by service wait 10s"#,
        ));
        assert_eq!(codes(&loaded), vec![], "{}", loaded.render());
        let rs = loaded.ruleset.expect("rule set");
        assert_eq!(rs.slos[0].objective, 0.999);
        assert_eq!(rs.slos[0].period_secs, 30 * 86_400);
        assert_eq!(rs.slos[0].source, SloSource::Push);
        assert_eq!(rs.destinations[0].kind, DestinationKind::PagerDuty);
        match rs.destinations[0].setting("routing_key") {
            Some(Value::Secret { var, value }) => {
                assert_eq!(var, "PD_KEY");
                assert_eq!(value.as_ref().unwrap().expose(), "secret-value");
            }
            other => panic!("unexpected {other:?}"),
        }
        let sev1 = rs.policy(crate::model::Severity::Sev1).unwrap();
        assert_eq!(sev1.page, vec![0]);
        assert_eq!(sev1.ack_timeout.as_ref().unwrap().escalate, vec![1]);
        assert!(sev1.split_roles);
        assert!(
            sev1.postmortem_required,
            "SEV1 requires a postmortem by default"
        );
        let sev3 = rs.policy(crate::model::Severity::Sev3).unwrap();
        assert!(!sev3.postmortem_required);
        assert_eq!(
            sev3.roles,
            Role::ALL.to_vec(),
            "one person holds every role by default"
        );
        assert_eq!(rs.grouping.by, vec!["service".to_string()]);
        assert_eq!(rs.grouping.wait_secs, 10);
        assert_eq!(rs.grouping.interval_secs, 300, "interval keeps its default");
        assert_eq!(rs.index.by_label["service"]["api"], vec![0]);
    }

    #[test]
    fn duplicates_and_unknown_names_are_all_reported() {
        let loaded = load(&with_prelude(
            r#"slo "api" { objective 99%; period 7d }
               destination "pd" slack { url "u" }
               severity SEV3 { notify "chat" }
               rule "r" { when burn("apii", 1h) > 2 then SEV3 }
               rule "r" { when labels.a == "b" then SEV3 }
               otherwise SEV2
               severity SEV2 { page "nobody" }"#,
        ));
        let found = codes(&loaded);
        for code in [
            Code::DuplicateSlo,
            Code::DuplicateDestination,
            Code::DuplicateSeverity,
            Code::UnknownSlo,
            Code::DuplicateRule,
            Code::DuplicateDeclaration,
            Code::UnknownDestination,
        ] {
            assert!(found.contains(&code), "missing {code}: {}", loaded.render());
        }
        assert!(loaded.ruleset.is_none());
        let unknown = loaded
            .diagnostics
            .iter()
            .find(|d| d.code == Code::UnknownSlo)
            .unwrap();
        assert_eq!(unknown.notes, vec!["did you mean \"api\"?".to_string()]);
    }

    #[test]
    fn a_severity_without_page_or_notify_is_an_error() {
        let loaded = load(
            r#"destination "chat" slack { url "u" }
               severity SEV3 { cadence 4h }
               severity SEV2 { notify "chat" }
               otherwise SEV2"#,
        );
        assert_eq!(codes(&loaded), vec![Code::NoAction], "{}", loaded.render());
    }

    #[test]
    fn roles_split_needs_two_known_distinct_roles() {
        let loaded = load(&with_prelude(
            r#"severity SEV1 { page "pd"; roles split commander }
               severity SEV2 { page "pd"; roles commander, scribe, commander }"#,
        ));
        let found = codes(&loaded);
        assert!(
            found.contains(&Code::SplitTooFewRoles),
            "{}",
            loaded.render()
        );
        assert!(found.contains(&Code::UnknownRole));
        assert!(found.contains(&Code::DuplicateRole));
    }

    #[test]
    fn paging_rules_without_burn_warn_but_still_load() {
        let loaded = load(&with_prelude(
            r#"rule "critical" { when labels.severity == "critical" then SEV2 }
               rule "minor" { when labels.severity == "warning" then SEV3 }"#,
        ));
        assert_eq!(
            codes(&loaded),
            vec![Code::NoBurnCondition],
            "{}",
            loaded.render()
        );
        assert_eq!(loaded.diagnostics[0].level, Level::Warning);
        assert!(loaded.ruleset.is_some());
    }

    #[test]
    fn unreachable_burn_thresholds_and_long_windows_are_errors() {
        // 99.9% over 30d: the highest possible burn is 1000.
        let loaded = load(&with_prelude(
            r#"rule "a" { when burn("api", 1h) > 1000 then SEV1 }
               rule "b" { when 2000 < burn("api", 5m) then SEV1 }
               rule "c" { when burn("api", 31d) > 1 then SEV3 }
               rule "ok" { when burn("api", 1h) > 999.9 and burn("api", 30d) >= 1000 then SEV1 }"#,
        ));
        let found = codes(&loaded);
        assert_eq!(
            found
                .iter()
                .filter(|c| **c == Code::UnreachableBurn)
                .count(),
            2,
            "{}",
            loaded.render()
        );
        assert!(found.contains(&Code::WindowTooLong));
        assert_eq!(found.len(), 3, "{}", loaded.render());
    }

    #[test]
    fn unreachable_burn_counts_percentages_and_in_lists() {
        // 99.9%: the highest possible burn is 1000, which is 100000%.
        let loaded = load(&with_prelude(
            r#"rule "pct" { when burn("api", 1h) > 100000% then SEV1 }
               rule "list" { when burn("api", 1h) in [14.4, 2000] then SEV1 }
               rule "not in" { when labels.a == "b" and burn("api", 1h) not in [2000] then SEV3 }
               rule "ok" { when burn("api", 1h) > 99999% and burn("api", 5m) in [1000] then SEV1 }"#,
        ));
        let unreachable: Vec<_> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.code == Code::UnreachableBurn)
            .collect();
        assert_eq!(unreachable.len(), 2, "{}", loaded.render());
        assert_eq!(
            unreachable[0].message,
            "burn threshold 100000% can never be reached by SLO \"api\""
        );
        assert_eq!(
            unreachable[1].message,
            "burn threshold 2000 can never be reached by SLO \"api\""
        );
        let rendered = loaded.render();
        let at = rendered.find("2000]").expect("the list item is shown");
        assert!(rendered[at..].contains('^'), "{rendered}");
    }

    #[test]
    fn a_budget_above_100_percent_warns() {
        let loaded = load(&with_prelude(
            r#"rule "r" { when budget_remaining("api") < 2000% then SEV2 }
               rule "s" { when budget_remaining("api") in [0.5, 30] then SEV3 }
               rule "ok" { when budget_remaining("api") < 100% then SEV2 }"#,
        ));
        assert_eq!(
            codes(&loaded),
            vec![Code::RatioAsNumber, Code::RatioAsNumber],
            "{}",
            loaded.render()
        );
        assert!(
            loaded.diagnostics[0]
                .message
                .ends_with("compared here with 2000%")
        );
    }

    #[test]
    fn an_objective_that_rounds_to_100_percent_is_out_of_range() {
        let loaded = load(&with_prelude(
            r#"slo "tight" { objective 99.99999999999999%; period 30d }
               slo "loose" { objective 0.0000000000001%; period 30d }
               rule "r" { when burn("tight", 1h) > 1000000 then SEV1 }"#,
        ));
        let found = codes(&loaded);
        assert_eq!(
            found.iter().filter(|c| **c == Code::BadObjective).count(),
            2,
            "{}",
            loaded.render()
        );
        assert!(loaded.ruleset.is_none());
    }

    #[test]
    fn a_chain_of_thousands_of_terms_checks_into_one_condition() {
        let chain = (0..5_000)
            .map(|i| format!("labels.team == \"t{i}\""))
            .collect::<Vec<_>>()
            .join(" or ");
        let loaded = load(&with_prelude(&format!(
            r#"rule "teams" {{ when ({chain}) and burn("api", 1h) > 2 then SEV1 }}"#
        )));
        assert_eq!(codes(&loaded), vec![], "{}", loaded.render());
        let rs = loaded.ruleset.expect("loads");
        let crate::rules::Cond::And(parts) = &rs.rules[0].when else {
            panic!("{:?}", rs.rules[0].when)
        };
        assert!(matches!(&parts[0], crate::rules::Cond::Or(terms) if terms.len() == 5_000));
    }

    #[test]
    fn type_errors_point_at_the_operands() {
        let loaded = load(&with_prelude(
            r#"rule "a" { when labels.x > 3 then SEV3 }
               rule "b" { when burn("api", 1h) > 5m then SEV3 }
               rule "c" { when labels.x =~ labels.y then SEV3 }
               rule "d" { when labels.x =~ "([a-z" then SEV3 }
               rule "e" { when labels.x then SEV3 }
               rule "f" { when labels.x in ["a", 3] then SEV3 }
               rule "g" { when firing_for > 10m and labels.x in [] then SEV3 }"#,
        ));
        let found = codes(&loaded);
        assert_eq!(
            found.iter().filter(|c| **c == Code::TypeMismatch).count(),
            2,
            "{}",
            loaded.render()
        );
        for code in [
            Code::RegexNotLiteral,
            Code::BadRegex,
            Code::NotBoolean,
            Code::BadList,
        ] {
            assert!(found.contains(&code), "missing {code}: {}", loaded.render());
        }
        assert_eq!(found.iter().filter(|c| **c == Code::BadList).count(), 2);
    }

    #[test]
    fn a_regex_is_checked_alone_so_it_cannot_escape_its_anchors() {
        // Pasted into `^(?:...)$` this compiled, as `^(?:prod)|(x)$`, and
        // matched `production-eu`.
        let loaded = load(&with_prelude(
            r#"rule "a" { when labels.env =~ "prod)|(x" then SEV3 }"#,
        ));
        assert_eq!(codes(&loaded), vec![Code::BadRegex], "{}", loaded.render());
        let label = &loaded.diagnostics[0].primary.as_ref().unwrap().message;
        assert!(label.contains("unopened group"), "{label}");
        // A comment in verbose mode ends the pattern, not the anchors.
        let loaded = load(&with_prelude(
            r#"rule "b" { when labels.env =~ "(?x) prod | staging  # paging tiers" then SEV3 }"#,
        ));
        assert_eq!(codes(&loaded), vec![], "{}", loaded.render());
    }

    #[test]
    fn missing_env_is_a_warning_for_check_and_an_error_for_the_service() {
        let text = with_prelude("");
        let warned = load_with(&text, EnvPolicy::Warn, &|_| None);
        assert_eq!(codes(&warned), vec![Code::EnvNotSet]);
        assert!(warned.ruleset.is_some());
        let refused = load_with(&text, EnvPolicy::Require, &|_| None);
        assert_eq!(codes(&refused), vec![Code::MissingEnv]);
        assert!(refused.ruleset.is_none());
        let message = &refused.diagnostics[0].message;
        assert!(message.contains("PD_KEY"), "{message}");
    }

    #[test]
    fn secret_values_never_reach_diagnostics_or_debug_output() {
        let loaded = load_with(
            &with_prelude(r#"destination "bad" webhook { url env("HOOK") secret 5m }"#),
            EnvPolicy::Require,
            &|_| Some("hunter2".to_string()),
        );
        assert!(!loaded.render().contains("hunter2"));
        let ok = load_with(&with_prelude(""), EnvPolicy::Require, &|_| {
            Some("hunter2".to_string())
        });
        let debug = format!("{:?}", ok.ruleset.unwrap());
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"));
    }

    #[test]
    fn destination_settings_are_checked_per_kind() {
        let loaded = load(&with_prelude(
            r#"destination "x" pagerduty { url "u" colour "red" }
               destination "y" carrier_pigeon { }
               destination "z" slack { url 5m }"#,
        ));
        let found = codes(&loaded);
        assert_eq!(
            found.iter().filter(|c| **c == Code::BadSetting).count(),
            3,
            "missing key, unknown key, wrong type: {}",
            loaded.render()
        );
        assert!(found.contains(&Code::UnknownDestinationKind));
    }

    /// The text a diagnostic's primary span covers.
    fn pointed_at<'t>(text: &'t str, d: &crate::rules::Diagnostic) -> &'t str {
        let span = d.primary.as_ref().expect("a location").span;
        &text[span.start..span.end]
    }

    #[test]
    fn templates_compile_into_the_rule_set_for_every_kind() {
        let loaded = load(&with_prelude(
            r#"destination "ops" webhook { url "https://ops.example/x" title "[{{ incident.severity }}] {{ incident.title }}" text_sev1 "PAGE\n{{ reason }}" }
               destination "team" teams { url "https://teams.example/x" text "{{ explanation | join('\n') }}" }"#,
        ));
        let rs = loaded.ruleset.as_ref().expect("rule set");
        use crate::model::Severity;
        use crate::rules::template::TextPart;
        let select = |d, p, s| rs.templates.select(d, p, s).map(|(setting, _)| setting);
        assert_eq!(
            select("ops", TextPart::Title, Severity::Sev3),
            Some("title")
        );
        assert_eq!(
            select("ops", TextPart::Text, Severity::Sev1),
            Some("text_sev1")
        );
        assert_eq!(select("ops", TextPart::Text, Severity::Sev2), None);
        assert_eq!(select("team", TextPart::Text, Severity::Sev2), Some("text"));
        assert_eq!(
            rs.destination("ops").unwrap().setting("text_sev1"),
            Some(&Value::Text("PAGE\n{{ reason }}".to_string()))
        );
        let template_codes: Vec<Code> = codes(&loaded)
            .into_iter()
            .filter(|c| matches!(c, Code::BadTemplate | Code::UnknownTemplateVariable))
            .collect();
        assert_eq!(template_codes, vec![]);
    }

    #[test]
    fn a_template_syntax_error_is_an_error_pointing_into_the_string() {
        // The `\"` escape before the error shifts source columns from
        // template offsets; the span must still land on the bad token.
        let text = with_prelude(
            r#"destination "ops" webhook { url "https://ops.example/x" title "say \"hi\" {{ incident.title | }}" }"#,
        );
        let loaded = load(&text);
        assert!(loaded.ruleset.is_none());
        let d = loaded
            .diagnostics
            .iter()
            .find(|d| d.code == Code::BadTemplate)
            .unwrap_or_else(|| panic!("no E211: {}", loaded.render()));
        assert_eq!(d.level, Level::Error);
        assert!(
            d.message.starts_with("template `title` does not compile: "),
            "{}",
            d.message
        );
        assert_eq!(pointed_at(&text, d), "}}", "{}", loaded.render());
    }

    #[test]
    fn a_template_in_env_is_refused_and_an_undocumented_variable_warns() {
        let text = with_prelude(
            r#"destination "ops" webhook { url "https://ops.example/x" title env("TITLE") text "{{ incident.titel }} on {{ labels.service }}" }"#,
        );
        let loaded = load(&text);
        let bad = loaded
            .diagnostics
            .iter()
            .find(|d| d.code == Code::BadSetting)
            .expect("E209");
        assert_eq!(bad.message, "setting `title` takes a template string");
        let warnings: Vec<_> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.code == Code::UnknownTemplateVariable)
            .collect();
        assert_eq!(warnings.len(), 2, "{}", loaded.render());
        assert_eq!(warnings[0].level, Level::Warning);
        assert_eq!(pointed_at(&text, warnings[0]), "incident.titel");
        assert_eq!(pointed_at(&text, warnings[1]), "labels.service");
        assert!(
            warnings[1].notes.iter().any(|n| n.contains("alerts")),
            "{:?}",
            warnings[1].notes
        );
    }

    #[test]
    fn vendor_settings_take_documented_choices_only() {
        let loaded = load(&with_prelude(
            r#"destination "pd" pagerduty { routing_key "k" sev1 "error" sev3 "info" source "eu" }
               destination "og" opsgenie { api_key "k" sev2 "P4" url "http://127.0.0.1:1" }
               destination "gh" webhook { url "http://127.0.0.1:1" secret "s" signature "github" }"#,
        ));
        assert!(
            !codes(&loaded).contains(&Code::BadSetting),
            "{}",
            loaded.render()
        );
        let bad = load(&with_prelude(
            r#"destination "pd" pagerduty { routing_key "k" sev1 "urgent" }
               destination "og" opsgenie { api_key "k" sev2 "P9" }
               destination "gh" webhook { url "u" signature env("SIG") }
               destination "nosecret" webhook { url "u" signature "github" }"#,
        ));
        assert_eq!(
            codes(&bad)
                .iter()
                .filter(|c| **c == Code::BadSetting)
                .count(),
            4,
            "{}",
            bad.render()
        );
        let text = bad.render();
        assert!(
            text.contains(r#"setting `sev1` takes one of "critical", "error", "warning", "info""#),
            "{text}"
        );
        assert!(
            text.contains(r#"one of "P1", "P2", "P3", "P4", "P5""#),
            "{text}"
        );
        assert!(text.contains(r#"one of "standard", "github""#), "{text}");
        assert!(text.contains("has no `secret`"), "{text}");
    }

    #[test]
    fn a_fallback_resolves_to_a_destination_and_counts_as_used() {
        let loaded = load(
            r#"destination "pd" webhook { url "u" }
               destination "backup" webhook { url "v" rate 0.5 burst 2 concurrency 1 }
               severity SEV1 { page "pd"; fallback "backup" }
               otherwise SEV1"#,
        );
        assert_eq!(codes(&loaded), vec![], "{}", loaded.render());
        let rs = loaded.ruleset.expect("rule set");
        assert_eq!(
            rs.policy(crate::model::Severity::Sev1).unwrap().fallback,
            Some(1)
        );
        assert_eq!(
            rs.destinations[1].setting("rate"),
            Some(&Value::Number(0.5))
        );
        assert_eq!(
            rs.destinations[1].setting("concurrency"),
            Some(&Value::Number(1.0))
        );
    }

    #[test]
    fn an_unknown_fallback_has_its_own_code_and_a_paged_one_warns() {
        let loaded = load(
            r#"destination "pd" webhook { url "u" }
               severity SEV1 { page "pd"; fallback "pdd" }
               severity SEV2 { page "pd"; fallback "pd"; fallback "pd" }
               otherwise SEV1"#,
        );
        let found = codes(&loaded);
        assert!(
            found.contains(&Code::UnknownFallback),
            "{}",
            loaded.render()
        );
        assert!(
            found.contains(&Code::DuplicateStatement),
            "{}",
            loaded.render()
        );
        let rendered = loaded.render();
        assert!(rendered.contains("did you mean \"pd\"?"), "{rendered}");
        let loaded = load(
            r#"destination "pd" webhook { url "u" }
               severity SEV1 { page "pd"; fallback "pd" }
               otherwise SEV1"#,
        );
        assert_eq!(
            codes(&loaded),
            vec![Code::FallbackAlsoPaged],
            "{}",
            loaded.render()
        );
        assert!(loaded.ruleset.is_some());
    }

    #[test]
    fn isolation_settings_must_be_positive_numbers() {
        let loaded = load(
            r#"destination "chat" slack { url "u" rate 0 burst "x" concurrency 5m }
               severity SEV3 { notify "chat" }
               otherwise SEV3"#,
        );
        let found = codes(&loaded);
        assert_eq!(
            found.iter().filter(|c| **c == Code::BadSetting).count(),
            3,
            "{}",
            loaded.render()
        );
    }

    #[test]
    fn slo_blocks_need_objective_and_period_in_range() {
        let loaded = load(&with_prelude(
            r#"slo "a" { objective 100%; period 0s }
               slo "b" { source prometheus { errors "x" } }
               slo "c" { objective 99%; objective 98%; period 1d }"#,
        ));
        let found = codes(&loaded);
        for code in [
            Code::BadObjective,
            Code::BadPeriod,
            Code::BadSloSource,
            Code::DuplicateStatement,
        ] {
            assert!(found.contains(&code), "missing {code}: {}", loaded.render());
        }
    }

    #[test]
    fn unused_destinations_and_missing_otherwise_warn() {
        let loaded = load(
            r#"destination "chat" slack { url "u" }
               destination "spare" slack { url "v" }
               severity SEV3 { notify "chat" }
               rule "r" { when labels.a == "b" then SEV3 }"#,
        );
        assert_eq!(
            codes(&loaded),
            vec![Code::NoOtherwise, Code::UnusedDestination],
            "{}",
            loaded.render()
        );
    }

    #[test]
    fn the_burn_warning_looks_at_what_the_condition_requires() {
        let loaded = load(&with_prelude(
            r#"rule "or label" { when labels.a == "b" or burn("api", 1h) > 2 then SEV1 }
               rule "negated" { when not burn("api", 1h) > 2 then SEV2 }
               rule "both branches" { when burn("api", 1h) > 2 or budget_remaining("api") < 10% then SEV1 }
               rule "conjunction" { when labels.a == "b" and (burn("api", 1h) > 2 or burn("api", 6h) > 1) then SEV2 }"#,
        ));
        let warned: Vec<&str> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.code == Code::NoBurnCondition)
            .map(|d| d.message.as_str())
            .collect();
        assert_eq!(warned.len(), 2, "{}", loaded.render());
        assert!(warned[0].contains("\"or label\""));
        assert!(warned[1].contains("\"negated\""));
    }

    #[test]
    fn only_thresholds_on_an_unhealthy_slo_count_as_burn_conditions() {
        let loaded = load(&with_prelude(
            r#"rule "healthy" { when burn("api", 1h) < 1 then SEV1 }
               rule "flipped healthy" { when 1 > burn("api", 1h) then SEV1 }
               rule "budget left" { when budget_remaining("api") > 50% then SEV2 }
               rule "equal" { when burn("api", 1h) == 2 then SEV2 }
               rule "listed" { when burn("api", 1h) in [2, 3] then SEV2 }
               rule "burning" { when burn("api", 1h) >= 2 then SEV1 }
               rule "flipped burning" { when 2 < burn("api", 1h) then SEV1 }
               rule "spent" { when budget_remaining("api") <= 10% then SEV2 }
               rule "flipped spent" { when 10% > budget_remaining("api") then SEV2 }"#,
        ));
        let warned: Vec<&str> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.code == Code::NoBurnCondition)
            .map(|d| d.message.split('"').nth(1).unwrap())
            .collect();
        assert_eq!(
            warned,
            vec![
                "healthy",
                "flipped healthy",
                "budget left",
                "equal",
                "listed"
            ],
            "{}",
            loaded.render()
        );
        let label = &loaded.diagnostics[0].primary.as_ref().unwrap().message;
        assert_eq!(label, "no SLO burn condition");
    }

    #[test]
    fn repeated_statements_still_mark_destinations_used_and_no_action_is_always_reported() {
        let loaded = load(
            r#"destination "a" slack { url "u" }
               destination "b" slack { url "v" }
               severity SEV3 { notify "a"; notify "b" }
               severity SEV2 { cadence 0s }
               otherwise SEV3"#,
        );
        assert_eq!(
            codes(&loaded),
            vec![Code::DuplicateStatement, Code::ZeroDuration, Code::NoAction],
            "{}",
            loaded.render()
        );
    }

    #[test]
    fn the_implied_commander_counts_for_roles_split() {
        let loaded = load(&with_prelude(
            r#"severity SEV2 { page "pd"; roles split operations }"#,
        ));
        assert!(
            !codes(&loaded).contains(&Code::SplitTooFewRoles),
            "{}",
            loaded.render()
        );
        let loaded = load(&with_prelude(
            r#"severity SEV2 { page "pd"; roles split commander }"#,
        ));
        assert!(codes(&loaded).contains(&Code::SplitTooFewRoles));
    }

    #[test]
    fn budget_compared_to_a_whole_number_suggests_a_percentage() {
        let loaded = load(&with_prelude(
            r#"rule "r" { when budget_remaining("api") < 25 then SEV2 }"#,
        ));
        assert_eq!(
            codes(&loaded),
            vec![Code::RatioAsNumber],
            "{}",
            loaded.render()
        );
    }

    #[test]
    fn the_index_keeps_rules_that_equality_cannot_narrow_unindexed() {
        let loaded = load(&with_prelude(
            r#"rule "eq" { when labels.team == "a" and burn("api", 1h) > 2 then SEV3 }
               rule "in" { when labels.team in ["b", "c"] then SEV3 }
               rule "or" { when labels.team == "a" or labels.team == "d" then SEV3 }
               rule "empty" { when labels.team == "" then SEV3 }
               rule "neg" { when labels.team != "a" then SEV3 }"#,
        ));
        let rs = loaded.ruleset.expect("loads");
        assert_eq!(rs.index.by_label["team"]["a"], vec![0]);
        assert_eq!(rs.index.by_label["team"]["b"], vec![1]);
        assert_eq!(rs.index.by_label["team"]["c"], vec![1]);
        assert_eq!(rs.index.unindexed, vec![2, 3, 4]);
    }
}
