//! `sevroute replay FILE`: run recorded alerts through classification and
//! incident logic on a simulated clock, without delivering. Each line of
//! FILE is one JSON payload in any ingest format, optionally wrapped as
//! `{"at": "RFC 3339", "source": "prometheus", "body": ...}`. Prints every
//! decision and a summary table; shows a progress bar on a terminal.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::classify::{BurnSnapshot, classify};
use crate::cli::check::report;
use crate::cli::{Format, OK, failed, write_stdout};
use crate::model::{Alert, Severity, Source};
use crate::normalize;
use crate::route::{self, ActionKind, ClassifiedAlert, Decision, Event, Incident, TimelineKind};
use crate::rules::{EnvPolicy, RuleSet, load_paths};

/// Options of `replay`.
pub struct ReplayOptions {
    /// The rule folder.
    pub rules: PathBuf,
    /// The recording (JSON lines).
    pub file: PathBuf,
    /// Alertmanager's resolve_timeout for alerts without endsAt, seconds.
    pub resolve_timeout_secs: u64,
    /// Print only the summary.
    pub quiet: bool,
}

/// Totals of a replay.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Alerts read.
    pub alerts: usize,
    /// Incidents opened, by the highest severity each reached.
    pub incidents: BTreeMap<Severity, usize>,
    /// Actions owed, by kind.
    pub actions: BTreeMap<&'static str, usize>,
    /// Severity changes (escalations and de-escalations).
    pub escalations: usize,
    /// Incidents resolved by the end.
    pub resolved: usize,
}

/// Runs `replay`; returns the exit code.
pub fn run(options: &ReplayOptions) -> Result<ExitCode> {
    let loaded = load_paths(std::slice::from_ref(&options.rules), EnvPolicy::Warn);
    let Some(ruleset) = &loaded.ruleset else {
        eprint!("{}", report(&loaded, Format::Text));
        return Ok(failed());
    };
    let text = std::fs::read_to_string(&options.file)
        .with_context(|| format!("cannot read {}", options.file.display()))?;
    let progress = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(text.lines().count() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let resolve_timeout =
        time::Duration::seconds(i64::try_from(options.resolve_timeout_secs).unwrap_or(300));
    let name = options.file.display().to_string();
    let (mut out, summary) = replay(
        ruleset,
        &text,
        &name,
        resolve_timeout,
        options.quiet,
        &progress,
    )?;
    progress.finish_and_clear();
    out.push_str(&summary.table());
    write_stdout(&out);
    Ok(OK)
}

/// Replays the lines of a recording; returns the decisions as text and the
/// summary.
pub fn replay(
    ruleset: &RuleSet,
    text: &str,
    name: &str,
    resolve_timeout: time::Duration,
    quiet: bool,
    progress: &indicatif::ProgressBar,
) -> Result<(String, Summary)> {
    let mut sim = Simulation::new(ruleset);
    let mut out = String::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let (at, alerts) = read_line(line, sim.now, resolve_timeout)
            .with_context(|| format!("{name}:{}", number + 1))?;
        sim.advance_to(at, &mut out, quiet);
        sim.ingest(alerts, &mut out, quiet);
        // Timers due at this very moment (a zero group wait) fire now.
        sim.advance_to(at, &mut out, quiet);
        progress.inc(1);
    }
    Ok((out, sim.summary()))
}

/// Reads one line: its time and its alerts.
fn read_line(
    line: &str,
    now: Option<OffsetDateTime>,
    resolve_timeout: time::Duration,
) -> Result<(OffsetDateTime, Vec<Alert>)> {
    let value: Value = serde_json::from_str(line).context("not JSON")?;
    let (at, source, body) = match &value {
        Value::Object(map) if map.contains_key("body") => {
            let at = match map.get("at") {
                Some(Value::String(s)) => Some(
                    OffsetDateTime::parse(s, &Rfc3339)
                        .with_context(|| format!("at {s:?} is not an RFC 3339 time"))?,
                ),
                None => None,
                Some(_) => bail!("at: expected an RFC 3339 string"),
            };
            let source = match map.get("source").and_then(Value::as_str) {
                None => None,
                Some(s) => Some(parse_source(s)?),
            };
            (at, source, map["body"].clone())
        }
        _ => (None, None, value),
    };
    let source = source.unwrap_or_else(|| detect(&body));
    let bytes = serde_json::to_vec(&body)?;
    // Without an explicit time, the payload's own latest time (startsAt,
    // or endsAt of an alert that says it resolved) is the clock; it is read before
    // normalizing, because Prometheus' format needs "now" to read endsAt.
    let at = at
        .or_else(|| latest_time(&body).map(|t| now.map_or(t, |n| n.max(t))))
        .or(now)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let alerts = match source {
        Source::Prometheus => normalize::prometheus_v2(&bytes, at, resolve_timeout)?,
        Source::Alertmanager => normalize::alertmanager_webhook(&bytes)?,
        Source::Grafana => normalize::grafana(&bytes)?,
        Source::Generic => normalize::generic(&bytes, at)?,
        Source::Slo => bail!("source \"slo\" is sevroute's own; a payload cannot claim it"),
    };
    Ok((
        at,
        alerts.into_iter().map(|a| Alert { source, ..a }).collect(),
    ))
}

/// The latest start, or end, written in a payload's alerts.
fn latest_time(body: &Value) -> Option<OffsetDateTime> {
    let alerts: Vec<&Value> = match body {
        Value::Array(items) => items.iter().collect(),
        Value::Object(map) => match map.get("alerts") {
            Some(Value::Array(items)) => items.iter().collect(),
            _ => vec![body],
        },
        _ => Vec::new(),
    };
    alerts
        .into_iter()
        .flat_map(|a| {
            // An end only counts for an alert that says it resolved: a
            // firing alert's endsAt is a lease into the future.
            let resolved = a.get("status").and_then(Value::as_str) == Some("resolved");
            let ends = if resolved {
                ["endsAt", "ends_at"]
            } else {
                ["", ""]
            };
            ["startsAt", "starts_at", ends[0], ends[1]].map(|k| a.get(k))
        })
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        // Go's zero time means "not set".
        .filter(|t| t.year() > 1)
        .max()
}

fn parse_source(s: &str) -> Result<Source> {
    Ok(match s {
        "prometheus" => Source::Prometheus,
        "alertmanager" => Source::Alertmanager,
        "grafana" => Source::Grafana,
        "generic" => Source::Generic,
        other => bail!("source {other:?}: expected prometheus, alertmanager, grafana or generic"),
    })
}

/// Guesses the ingest format of a payload from its shape.
fn detect(body: &Value) -> Source {
    match body {
        Value::Array(_) => Source::Prometheus,
        Value::Object(map)
            if map.contains_key("orgId")
                || map.get("version").and_then(Value::as_str) == Some("1") =>
        {
            Source::Grafana
        }
        Value::Object(map)
            if map.contains_key("groupKey")
                || map.get("version").and_then(Value::as_str) == Some("4") =>
        {
            Source::Alertmanager
        }
        _ => Source::Generic,
    }
}

/// Incident routing on a simulated clock, in memory.
struct Simulation<'r> {
    ruleset: &'r RuleSet,
    now: Option<OffsetDateTime>,
    active: HashMap<String, Incident>,
    next_id: i64,
    /// Highest severity each incident reached.
    peak: BTreeMap<i64, Severity>,
    summary: Summary,
}

impl<'r> Simulation<'r> {
    fn new(ruleset: &'r RuleSet) -> Self {
        Simulation {
            ruleset,
            now: None,
            active: HashMap::new(),
            next_id: 1,
            peak: BTreeMap::new(),
            summary: Summary::default(),
        }
    }

    /// Fires every timer due up to `at`, in time order, then moves the clock.
    fn advance_to(&mut self, at: OffsetDateTime, out: &mut String, quiet: bool) {
        loop {
            let next = self
                .active
                .iter()
                .filter_map(|(k, i)| i.next_due().map(|t| (t, k.clone())))
                .filter(|(t, _)| *t <= at)
                .min();
            let Some((due, key)) = next else {
                break;
            };
            let Some(incident) = self.active.get_mut(&key) else {
                break;
            };
            if let Ok(decision) = route::apply(incident, Event::Tick, self.ruleset, due) {
                let incident = incident.clone();
                self.note(&incident, &decision, due, out, quiet);
            }
            self.active.retain(|_, i| i.is_active());
        }
        self.now = Some(self.now.map_or(at, |now| now.max(at)));
    }

    fn ingest(&mut self, alerts: Vec<Alert>, out: &mut String, quiet: bool) {
        let now = self.now.unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let burn = BurnSnapshot::new();
        for alert in alerts {
            self.summary.alerts += 1;
            let c = classify(self.ruleset, &alert, &burn, now);
            let classified = ClassifiedAlert::new(alert, &c);
            let (key, _) = route::group_key(&self.ruleset.grouping, &classified.alert);
            let routed = match self.active.get_mut(&key) {
                Some(incident) => {
                    route::apply(incident, Event::Alert(classified), self.ruleset, now)
                        .ok()
                        .map(|d| (incident.clone(), d))
                }
                None => route::declare(self.next_id, classified, self.ruleset, now).map(
                    |(incident, d)| {
                        self.next_id += 1;
                        self.active.insert(key, incident.clone());
                        (incident, d)
                    },
                ),
            };
            if let Some((incident, decision)) = routed {
                self.note(&incident, &decision, now, out, quiet);
            }
            self.active.retain(|_, i| i.is_active());
        }
    }

    fn note(
        &mut self,
        incident: &Incident,
        decision: &Decision,
        at: OffsetDateTime,
        out: &mut String,
        quiet: bool,
    ) {
        if let Some(sev) = incident.severity {
            let peak = self.peak.entry(incident.id).or_insert(sev);
            *peak = (*peak).min(sev);
        }
        let when = at.format(&Rfc3339).unwrap_or_default();
        for entry in &decision.timeline {
            match entry.kind {
                TimelineKind::Escalated | TimelineKind::Deescalated => {
                    self.summary.escalations += 1
                }
                TimelineKind::Resolved => self.summary.resolved += 1,
                _ => {}
            }
            if !quiet {
                let _ = writeln!(
                    out,
                    "{when} incident {} {}",
                    incident.id,
                    entry.text_in(incident)
                );
            }
        }
        for action in &decision.actions {
            *self
                .summary
                .actions
                .entry(action.kind.as_str())
                .or_default() += 1;
            if !quiet {
                let _ = writeln!(
                    out,
                    "{when} incident {} {} {} -> {}",
                    incident.id,
                    incident.severity.map(|s| s.as_str()).unwrap_or("-"),
                    action.kind.as_str(),
                    action.destination
                );
            }
        }
    }

    fn summary(mut self) -> Summary {
        for sev in self.peak.values() {
            *self.summary.incidents.entry(*sev).or_default() += 1;
        }
        self.summary
    }
}

impl Summary {
    /// The summary as a table.
    pub fn table(&self) -> String {
        let mut out = String::from("\nsummary\n");
        let _ = writeln!(out, "  alerts read           {:>6}", self.alerts);
        for sev in Severity::ALL {
            let _ = writeln!(
                out,
                "  incidents {}         {:>6}",
                sev,
                self.incidents.get(&sev).copied().unwrap_or(0)
            );
        }
        for (kind, label) in [
            (ActionKind::Page, "pages"),
            (ActionKind::Notify, "notifications"),
            (ActionKind::UpdateDue, "update reminders"),
            (ActionKind::Escalate, "escalations"),
            (ActionKind::Resolve, "resolves"),
            (ActionKind::Acknowledge, "acknowledgements"),
        ] {
            let _ = writeln!(
                out,
                "  {label:<21} {:>6}",
                self.actions.get(kind.as_str()).copied().unwrap_or(0)
            );
        }
        let _ = writeln!(out, "  severity changes      {:>6}", self.escalations);
        let _ = writeln!(out, "  incidents resolved    {:>6}", self.resolved);
        out
    }
}
