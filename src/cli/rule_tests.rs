//! `sevroute test FILE...`: rule unit tests in the spirit of
//! `promtool test rules`. A test file (TOML) names the rule folder and
//! lists cases; each case gives an evaluation time, burn values and
//! alerts, and each alert states what it expects. See `docs/rules.md`.
//!
//! ```toml
//! rules = ".."                      # rule folder, relative to this file
//!
//! [[case]]
//! name = "fast burn pages"
//! eval_time = "2026-11-27T12:00:00Z"
//! burn = { "checkout-availability" = { "1h" = 20.0, "5m" = 18.0 } }
//! budget_remaining = { "checkout-availability" = "40%" }
//!
//! [[case.alerts]]
//! labels = { alertname = "HighErrorRate", service = "checkout" }
//! starts_at = "2026-11-27T11:50:00Z"
//! expect = { severity = "SEV1", rules = ["checkout burning fast"], page = ["payments-pd"] }
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::classify::{ActionSummary, BurnSnapshot, actions_for, classify};
use crate::cli::check::report;
use crate::cli::explain::{parse_fraction, valid_budget, valid_burn};
use crate::cli::{Format, OK, failed, write_stdout};
use crate::model::{Alert, AlertStatus, Severity};
use crate::normalize::{NormalizeError, timestamp};
use crate::rules::parser::parse_duration;
use crate::rules::printer::print_duration;
use crate::rules::{EnvPolicy, RuleSet, load_paths};

/// A test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    /// Rule folders or files, relative to the test file (default `..`).
    #[serde(default = "default_rules")]
    rules: OneOrMany,
    /// The cases.
    #[serde(default)]
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

fn default_rules() -> OneOrMany {
    OneOrMany::One("..".to_string())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// RFC 3339 evaluation time.
    eval_time: String,
    /// SLO -> window -> burn rate.
    #[serde(default)]
    burn: BTreeMap<String, BTreeMap<String, f64>>,
    /// SLO -> fraction (0.4) or percentage ("40%").
    #[serde(default)]
    budget_remaining: BTreeMap<String, Fraction>,
    #[serde(default)]
    alerts: Vec<TestAlert>,
    /// SLOs whose own incident (raised by SLO rules) is checked.
    #[serde(default)]
    slos: Vec<TestSlo>,
}

/// An SLO whose SLO rules (rules reading only SLOs) are checked: what the
/// alert sevroute raises for it would be classified as.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestSlo {
    name: String,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Fraction {
    Number(f64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestAlert {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    starts_at: Option<String>,
    expect: Expect,
}

/// What an alert expects. Only the fields given are compared.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// `SEV1`..`SEV3`, or `none`.
    severity: String,
    /// Every matched rule, in file order.
    rules: Option<Vec<String>>,
    page: Option<Vec<String>>,
    notify: Option<Vec<String>>,
    /// A duration, or `none`.
    cadence: Option<String>,
    /// A duration, or `none`.
    ack_timeout: Option<String>,
    escalate: Option<Vec<String>>,
    roles: Option<Vec<String>>,
    split_roles: Option<bool>,
    postmortem: Option<bool>,
}

/// Totals over a run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Alerts whose expectations held.
    pub passed: usize,
    /// Alerts whose expectations did not hold.
    pub failed: usize,
    /// Cases, alerts or whole files that could not be run (a bad time,
    /// burn value or expectation; a rule set that does not check).
    pub errors: usize,
}

impl Totals {
    fn add(&mut self, other: &Totals) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.errors += other.errors;
    }

    /// The closing line: `N passed, N failed`, and `, N error(s)` when
    /// something could not be run.
    pub fn summary(&self) -> String {
        let mut line = format!("{} passed, {} failed", self.passed, self.failed);
        if self.errors > 0 {
            let _ = write!(line, ", {} error(s)", self.errors);
        }
        line
    }
}

/// Runs the test files (folders contribute their `*.toml` files); prints
/// failures, errors and a summary line; returns the exit code.
pub fn run(paths: &[PathBuf]) -> Result<ExitCode> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot list {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            found.sort();
            if found.is_empty() {
                bail!("no *.toml test files in {}", path.display());
            }
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let mut totals = Totals::default();
    let mut report = String::new();
    for file in &files {
        match run_file(file) {
            Ok((t, out)) => {
                report.push_str(&out);
                totals.add(&t);
            }
            Err(e) => {
                totals.errors += 1;
                let _ = writeln!(report, "ERROR {}: {e:#}", file.display());
            }
        }
    }
    let _ = writeln!(report, "{}", totals.summary());
    write_stdout(&report);
    Ok(if totals.failed > 0 || totals.errors > 0 {
        failed()
    } else {
        OK
    })
}

/// Runs one test file; returns its totals and the text to print. A file
/// that cannot be run at all (unreadable, invalid TOML, no rule files, a
/// rule set that does not check, no cases) is an error; a case or an
/// alert that cannot be run is reported as an `ERROR` line and counted in
/// [`Totals::errors`], and the others still run.
pub fn run_file(path: &Path) -> Result<(Totals, String)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: TestFile =
        toml::from_str(&text).with_context(|| format!("invalid test file {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let rule_paths: Vec<PathBuf> = match &file.rules {
        OneOrMany::One(p) => vec![base.join(p)],
        OneOrMany::Many(ps) => ps.iter().map(|p| base.join(p)).collect(),
    };
    if rule_paths.is_empty() {
        bail!("no rule files: `rules` is an empty list");
    }
    let loaded = load_paths(&rule_paths, EnvPolicy::Warn);
    let Some(ruleset) = &loaded.ruleset else {
        bail!(
            "its rule set does not check:\n{}",
            report(&loaded, Format::Text)
        );
    };
    if file.case.is_empty() {
        bail!("it has no [[case]]");
    }
    let mut totals = Totals::default();
    let mut out = String::new();
    for case in &file.case {
        let (now, burn) = match case_inputs(case) {
            Ok(inputs) => inputs,
            Err(e) => {
                totals.errors += 1;
                let _ = writeln!(out, "ERROR {}: case {:?}: {e:#}", path.display(), case.name);
                continue;
            }
        };
        if case.alerts.is_empty() && case.slos.is_empty() {
            totals.errors += 1;
            let _ = writeln!(
                out,
                "ERROR {}: case {:?}: it has no [[case.alerts]] and no [[case.slos]]",
                path.display(),
                case.name
            );
            continue;
        }
        for test_slo in &case.slos {
            let name = &test_slo.name;
            let outcome = if ruleset.slos.iter().any(|s| &s.name == name) {
                let alert = Alert::for_slo(name, AlertStatus::Firing, now);
                check_alert(ruleset, &alert, &burn, now, &test_slo.expect)
            } else {
                Err(anyhow!("the rule set declares no slo {name:?}"))
            };
            match outcome {
                Err(e) => {
                    totals.errors += 1;
                    let _ = writeln!(
                        out,
                        "ERROR {}: case {:?}, slo {name:?}: {e:#}",
                        path.display(),
                        case.name
                    );
                }
                Ok(problems) if problems.is_empty() => totals.passed += 1,
                Ok(problems) => {
                    totals.failed += 1;
                    let _ = writeln!(
                        out,
                        "FAIL {}: case {:?}, slo {name:?}",
                        path.display(),
                        case.name
                    );
                    out.push_str(&problems);
                }
            }
        }
        for (i, test_alert) in case.alerts.iter().enumerate() {
            // Alerts are numbered from 1, as people count them.
            let n = i + 1;
            let outcome = test_alert_of(i, test_alert).and_then(|alert| {
                let problems = check_alert(ruleset, &alert, &burn, now, &test_alert.expect)?;
                Ok((alert, problems))
            });
            match outcome {
                Err(e) => {
                    totals.errors += 1;
                    let _ = writeln!(
                        out,
                        "ERROR {}: case {:?}, alert {n}: {e:#}",
                        path.display(),
                        case.name
                    );
                }
                Ok((_, problems)) if problems.is_empty() => totals.passed += 1,
                Ok((alert, problems)) => {
                    totals.failed += 1;
                    let _ = writeln!(
                        out,
                        "FAIL {}: case {:?}, alert {n} {:?}",
                        path.display(),
                        case.name,
                        alert.labels
                    );
                    out.push_str(&problems);
                }
            }
        }
    }
    Ok((totals, out))
}

/// The alert a test alert describes (`index` is its 0-based position).
fn test_alert_of(index: usize, test_alert: &TestAlert) -> Result<Alert> {
    let starts_at =
        timestamp(index, "starts_at", test_alert.starts_at.clone()).map_err(|e| match e {
            // The caller names the alert; keep the field and the problem.
            NormalizeError::Field { field, message, .. } => anyhow!("{field}: {message}"),
            other => anyhow!(other),
        })?;
    Ok(Alert {
        labels: test_alert.labels.clone().into(),
        annotations: test_alert.annotations.clone().into(),
        starts_at,
        ..Alert::default()
    })
}

fn case_inputs(case: &Case) -> Result<(OffsetDateTime, BurnSnapshot)> {
    let now = OffsetDateTime::parse(&case.eval_time, &Rfc3339)
        .with_context(|| format!("eval_time {:?} is not an RFC 3339 time", case.eval_time))?;
    let mut burn = BurnSnapshot::new();
    for (slo, windows) in &case.burn {
        for (window, rate) in windows {
            let secs = parse_duration(window)
                .with_context(|| format!("burn window {window:?} of {slo:?} is not a duration"))?;
            let rate = valid_burn(*rate).map_err(|e| anyhow!("burn.{slo}.{window}: {e}"))?;
            burn.set_burn(slo, secs, rate);
        }
    }
    for (slo, value) in &case.budget_remaining {
        let fraction = match value {
            Fraction::Number(n) => *n,
            Fraction::Text(t) => parse_fraction(t)
                .with_context(|| format!("budget_remaining {t:?} of {slo:?} is not 0.25 or 25%"))?,
        };
        let fraction =
            valid_budget(fraction).map_err(|e| anyhow!("budget_remaining.{slo}: {e}"))?;
        burn.set_budget_remaining(slo, fraction);
    }
    Ok((now, burn))
}

/// Compares one alert's classification with its expectation; returns the
/// differences as printable text (empty when it passed).
fn check_alert(
    ruleset: &RuleSet,
    alert: &Alert,
    burn: &BurnSnapshot,
    now: OffsetDateTime,
    expect: &Expect,
) -> Result<String> {
    let expected_severity =
        match expect.severity.as_str() {
            "none" => None,
            s => Some(Severity::parse(s).with_context(|| {
                format!("expect.severity {s:?} is not SEV1, SEV2, SEV3 or none")
            })?),
        };
    let c = classify(ruleset, alert, burn, now);
    let actions = c
        .severity
        .and_then(|s| actions_for(ruleset, s))
        .map(|a| a.summary())
        .unwrap_or_default();
    let mut diff = Diff::default();
    diff.field(
        "severity",
        &show_sev(expected_severity),
        &show_sev(c.severity),
    );
    if let Some(rules) = &expect.rules {
        let got: Vec<String> = c.matched.iter().map(|m| m.name.clone()).collect();
        diff.list("matched rules", rules, &got);
    }
    compare_actions(&mut diff, expect, &actions)?;
    if diff.0.is_empty() {
        return Ok(String::new());
    }
    let mut out = diff.0;
    out.push_str("  explanation:\n");
    for line in c.explain().lines() {
        let _ = writeln!(out, "    {line}");
    }
    Ok(out)
}

fn compare_actions(diff: &mut Diff, expect: &Expect, got: &ActionSummary) -> Result<()> {
    if let Some(page) = &expect.page {
        diff.list("page", page, &got.page);
    }
    if let Some(notify) = &expect.notify {
        diff.list("notify", notify, &got.notify);
    }
    if let Some(escalate) = &expect.escalate {
        diff.list("escalate", escalate, &got.escalate);
    }
    if let Some(roles) = &expect.roles {
        diff.list("roles", roles, &got.roles);
    }
    for (what, expected, got) in [
        ("cadence", &expect.cadence, got.cadence_secs),
        ("ack_timeout", &expect.ack_timeout, got.ack_timeout_secs),
    ] {
        if let Some(text) = expected {
            let expected = match text.as_str() {
                "none" => "none".to_string(),
                _ => print_duration(parse_duration(text).with_context(|| {
                    format!("expect.{what} {text:?} is not a duration or \"none\"")
                })?),
            };
            let got = got
                .map(print_duration)
                .unwrap_or_else(|| "none".to_string());
            diff.field(what, &expected, &got);
        }
    }
    if let Some(split) = expect.split_roles {
        diff.field(
            "split_roles",
            &split.to_string(),
            &got.split_roles.to_string(),
        );
    }
    if let Some(pm) = expect.postmortem {
        diff.field(
            "postmortem",
            &pm.to_string(),
            &got.postmortem_required.to_string(),
        );
    }
    Ok(())
}

fn show_sev(s: Option<Severity>) -> String {
    s.map(|s| s.to_string())
        .unwrap_or_else(|| "none".to_string())
}

/// Accumulated differences, already formatted.
#[derive(Default)]
struct Diff(String);

impl Diff {
    fn field(&mut self, what: &str, expected: &str, got: &str) {
        if expected != got {
            let _ = writeln!(self.0, "  {what}: expected {expected}, got {got}");
        }
    }

    fn list(&mut self, what: &str, expected: &[String], got: &[String]) {
        if expected != got {
            let _ = writeln!(
                self.0,
                "  {what}:\n    expected: {expected:?}\n    got:      {got:?}"
            );
        }
    }
}
