//! `sevroute explain --rules DIR ALERT.json [--burn SLO:WINDOW=VALUE ...]`:
//! classify the alerts of a payload and say why, with the actions owed.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::classify::{ActionSummary, BurnSnapshot, actions_for, classify};
use crate::cli::check::report;
use crate::cli::{Format, OK, failed, write_stdout};
use crate::normalize::alerts_from_json;
use crate::rules::parser::parse_duration;
use crate::rules::printer::print_duration;
use crate::rules::{EnvPolicy, load_paths};

/// Options of `explain`.
pub struct ExplainOptions {
    /// The rule folder (or files).
    pub rules: Vec<PathBuf>,
    /// A JSON file with one alert, a list, or an Alertmanager webhook body.
    pub alert_file: PathBuf,
    /// `SLO:WINDOW=VALUE` burn rates.
    pub burns: Vec<String>,
    /// `SLO=FRACTION` or `SLO=PERCENT%` budget remaining.
    pub budgets: Vec<String>,
    /// Evaluation time (RFC 3339); the current time when absent.
    pub at: Option<String>,
    /// Output format.
    pub format: Format,
}

/// Runs `explain`; returns the exit code.
pub fn run(options: &ExplainOptions) -> Result<ExitCode> {
    let loaded = load_paths(&options.rules, EnvPolicy::Warn);
    let Some(ruleset) = &loaded.ruleset else {
        eprint!("{}", report(&loaded, Format::Text));
        return Ok(failed());
    };
    let text = std::fs::read_to_string(&options.alert_file)
        .with_context(|| format!("cannot read {}", options.alert_file.display()))?;
    let alerts = alerts_from_json(&text)
        .with_context(|| format!("cannot read alerts from {}", options.alert_file.display()))?;
    let burn = snapshot(&options.burns, &options.budgets)?;
    let now = match &options.at {
        Some(at) => OffsetDateTime::parse(at, &Rfc3339)
            .with_context(|| format!("--at {at:?} is not an RFC 3339 time"))?,
        None => OffsetDateTime::now_utc(),
    };

    let mut json = Vec::new();
    let mut text = String::new();
    for (i, alert) in alerts.iter().enumerate() {
        let c = classify(ruleset, alert, &burn, now);
        let actions = c.severity.and_then(|s| actions_for(ruleset, s));
        match options.format {
            Format::Json => json.push(serde_json::json!({
                "labels": alert.labels,
                "fingerprint": alert.fingerprint().to_string(),
                "classification": c,
                "actions": actions.map(|a| a.summary()),
            })),
            Format::Text => {
                let labels: Vec<String> = alert
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect();
                let _ = writeln!(text, "alert {} {{{}}}", i + 1, labels.join(", "));
                text.push_str(&indent(&c.explain()));
                if let Some(a) = actions {
                    text.push_str(&describe_actions(&a.summary()));
                }
                text.push('\n');
            }
        }
    }
    if options.format == Format::Json {
        text = format!("{:#}\n", serde_json::Value::Array(json));
    }
    write_stdout(&text);
    Ok(OK)
}

/// The actions owed, one per line.
fn describe_actions(s: &ActionSummary) -> String {
    let mut out = String::from("  actions:\n");
    let _ = writeln!(out, "    page:       {}", list(&s.page));
    let _ = writeln!(out, "    notify:     {}", list(&s.notify));
    if let Some(c) = s.cadence_secs {
        let _ = writeln!(
            out,
            "    cadence:    status update every {}",
            print_duration(c)
        );
    }
    if let Some(t) = s.ack_timeout_secs {
        let _ = writeln!(
            out,
            "    ack:        within {}, else escalate to {}",
            print_duration(t),
            list(&s.escalate)
        );
    }
    let split = if s.split_roles {
        " (held by different people)"
    } else {
        ""
    };
    let _ = writeln!(out, "    roles:      {}{split}", s.roles.join(", "));
    let postmortem = if s.postmortem_required {
        "required"
    } else {
        "optional"
    };
    let _ = writeln!(out, "    postmortem: {postmortem}");
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".to_string()
    } else {
        names.join(", ")
    }
}

/// Builds a burn snapshot from `SLO:WINDOW=VALUE` and `SLO=FRACTION` flags.
pub fn snapshot(burns: &[String], budgets: &[String]) -> Result<BurnSnapshot> {
    let mut snap = BurnSnapshot::new();
    for flag in burns {
        let Some((key, value)) = flag.rsplit_once('=') else {
            bail!("--burn {flag:?}: expected SLO:WINDOW=VALUE, e.g. checkout:1h=14.4");
        };
        let Some((slo, window)) = key.rsplit_once(':') else {
            bail!("--burn {flag:?}: expected SLO:WINDOW=VALUE, e.g. checkout:1h=14.4");
        };
        let window = parse_duration(window).with_context(|| {
            format!("--burn {flag:?}: {window:?} is not a duration such as 5m or 1h")
        })?;
        let value: f64 = value
            .trim()
            .parse()
            .with_context(|| format!("--burn {flag:?}: {value:?} is not a number"))?;
        let value = valid_burn(value).map_err(|e| anyhow!("--burn {flag:?}: {e}"))?;
        snap.set_burn(slo, window, value);
    }
    for flag in budgets {
        let Some((slo, value)) = flag.rsplit_once('=') else {
            bail!("--budget {flag:?}: expected SLO=FRACTION or SLO=PERCENT%, e.g. checkout=25%");
        };
        let fraction = parse_fraction(value).with_context(|| {
            format!("--budget {flag:?}: {value:?} is not a fraction (0.25) or a percentage (25%)")
        })?;
        let fraction = valid_budget(fraction).map_err(|e| anyhow!("--budget {flag:?}: {e}"))?;
        snap.set_budget_remaining(slo, fraction);
    }
    Ok(snap)
}

/// A burn rate as given by a person (`--burn`, a rule test): a finite
/// number, 0 or more. The error says why, for the caller to name the flag
/// or field.
pub fn valid_burn(rate: f64) -> Result<f64, String> {
    if rate.is_finite() && rate >= 0.0 {
        Ok(rate)
    } else {
        Err(format!(
            "a burn rate is a finite number, 0 or more, not {rate}"
        ))
    }
}

/// A budget remaining as given by a person: a fraction from 0 to 1.
pub fn valid_budget(fraction: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&fraction) {
        Ok(fraction)
    } else {
        Err(format!(
            "the budget remaining is a fraction from 0 to 1 (0% to 100%), not {}",
            crate::rules::printer::format_number(fraction)
        ))
    }
}

/// `0.25` or `25%` -> 0.25.
pub fn parse_fraction(text: &str) -> Option<f64> {
    let text = text.trim();
    match text.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().ok().map(|p| p / 100.0),
        None => text.parse().ok(),
    }
}
