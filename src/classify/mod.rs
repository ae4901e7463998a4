//! Classification: `(rule set, alert, burn snapshot, now) -> Classification`.
//! Pure: it never reads the clock (`now` is an argument, so rule tests can
//! simulate time) and performs no I/O.
//!
//! Every rule is evaluated; the most severe match wins and ties go to the
//! earlier rule. Rules narrowed by a label equality are found through the
//! rule set's label index, so rules that cannot match cost nothing.

mod actions;
mod burn;
mod eval;

use std::fmt::Write as _;

use serde::Serialize;
use time::OffsetDateTime;

pub use actions::{ActionSummary, Actions, Escalation, actions_for};
pub use burn::BurnSnapshot;

use crate::model::{Alert, Severity};
use crate::rules::RuleSet;
use eval::{EvalCtx, holds, trace};

/// The outcome of classifying one alert.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Classification {
    /// The severity, or `None` when nothing matched and there is no
    /// `otherwise`.
    pub severity: Option<Severity>,
    /// What decided the severity.
    pub decided_by: Decision,
    /// Every rule that matched, in file order, with the values it saw.
    pub matched: Vec<RuleMatch>,
}

/// What decided a classification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Decision {
    /// The most severe matching rule (the earliest among equals).
    Rule {
        /// Index into the rule set's rules.
        index: usize,
        /// The rule's name.
        name: String,
    },
    /// No rule matched; the rule set's `otherwise` applied.
    Otherwise,
    /// No rule matched and the rule set has no `otherwise`.
    NoMatch,
}

/// A rule that matched, with the evidence.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleMatch {
    /// Index into the rule set's rules (file order).
    pub index: usize,
    /// The rule's name.
    pub name: String,
    /// The severity it assigns.
    pub severity: Severity,
    /// The values it saw, in plain words, e.g.
    /// `burn(checkout-availability, 1h) = 22.1 > 14.4`.
    pub evidence: Vec<String>,
}

/// Classifies `alert` against `ruleset` with the burn values in `burn`, as
/// of `now`.
pub fn classify(
    ruleset: &RuleSet,
    alert: &Alert,
    burn: &BurnSnapshot,
    now: OffsetDateTime,
) -> Classification {
    let ctx = EvalCtx {
        ruleset,
        alert,
        burn,
        now,
    };
    let mut matched: Vec<usize> = ruleset
        .index
        .unindexed
        .iter()
        .copied()
        .filter(|&i| holds(&ruleset.rules[i].when, &ctx))
        .collect();
    for (name, value) in &alert.labels {
        let candidates = ruleset
            .index
            .by_label
            .get(name.as_str())
            .and_then(|by_value| by_value.get(value.as_str()));
        if let Some(candidates) = candidates {
            matched.extend(
                candidates
                    .iter()
                    .copied()
                    .filter(|&i| holds(&ruleset.rules[i].when, &ctx)),
            );
        }
    }
    // Each rule is indexed under one label only, so there are no duplicates.
    matched.sort_unstable();

    let winner = matched
        .iter()
        .copied()
        .min_by_key(|&i| (ruleset.rules[i].severity, i));
    let (severity, decided_by) = match winner {
        Some(i) => (
            Some(ruleset.rules[i].severity),
            Decision::Rule {
                index: i,
                name: ruleset.rules[i].name.clone(),
            },
        ),
        None => match ruleset.otherwise {
            Some(s) => (Some(s), Decision::Otherwise),
            None => (None, Decision::NoMatch),
        },
    };
    let matched = matched
        .into_iter()
        .map(|i| {
            let rule = &ruleset.rules[i];
            let mut evidence = Vec::new();
            trace(&rule.when, &ctx, &mut evidence);
            RuleMatch {
                index: i,
                name: rule.name.clone(),
                severity: rule.severity,
                evidence,
            }
        })
        .collect();
    Classification {
        severity,
        decided_by,
        matched,
    }
}

impl Classification {
    /// The explanation in plain words, one fact per line.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        match (&self.decided_by, self.severity) {
            (Decision::Rule { name, .. }, Some(sev)) => {
                let _ = write!(out, "{sev} by rule \"{name}\"");
                if self.matched.len() > 1 {
                    let _ = write!(
                        out,
                        " (the most severe of {} matching rules; ties go to the earlier rule)",
                        self.matched.len()
                    );
                }
                out.push('\n');
            }
            (Decision::Otherwise, Some(sev)) => {
                let _ = writeln!(out, "{sev} by `otherwise`: no rule matched");
            }
            _ => out.push_str("no severity: no rule matched and the rule set has no `otherwise`\n"),
        }
        for m in &self.matched {
            let _ = writeln!(out, "  matched \"{}\" -> {}", m.name, m.severity);
            for line in &m.evidence {
                let _ = writeln!(out, "    {line}");
            }
        }
        out
    }
}
