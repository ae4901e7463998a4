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
use eval::{EvalCtx, holds, trace, trends};

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
    if let Some(slo) = alert.slo_rule_alert_of() {
        return classify_slo_alert(ruleset, slo, &ctx);
    }
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
            .get(name)
            .and_then(|by_value| by_value.get(value));
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
    decide(ruleset, matched, ruleset.otherwise, &ctx)
}

/// Classifies the alert an SLO rule raised: only the SLO's own rules
/// apply, and `otherwise` does not (an SLO whose rules no longer hold has
/// no severity; its incident resolves after the hold-down).
fn classify_slo_alert(ruleset: &RuleSet, slo: &str, ctx: &EvalCtx<'_>) -> Classification {
    let matched: Vec<usize> = ruleset
        .slo_rules()
        .find(|(i, _)| ruleset.slos[*i].name == slo)
        .map(|(_, rules)| {
            rules
                .iter()
                .copied()
                .filter(|&i| holds(&ruleset.rules[i].when, ctx))
                .collect()
        })
        .unwrap_or_default();
    decide(ruleset, matched, None, ctx)
}

/// The verdict from the rules that matched (sorted, in file order).
fn decide(
    ruleset: &RuleSet,
    matched: Vec<usize>,
    otherwise: Option<Severity>,
    ctx: &EvalCtx<'_>,
) -> Classification {
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
        None => match otherwise {
            Some(s) => (Some(s), Decision::Otherwise),
            None => (None, Decision::NoMatch),
        },
    };
    let matched = matched
        .into_iter()
        .map(|i| {
            let rule = &ruleset.rules[i];
            let mut evidence = Vec::new();
            trace(&rule.when, ctx, &mut evidence);
            evidence.extend(trends(&rule.when, ctx));
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
                        " (the most severe of {} matching rules",
                        self.matched.len()
                    );
                    // Only worth saying when it decided something.
                    let tied = self.matched.iter().filter(|m| m.severity == sev).count();
                    if tied > 1 {
                        let _ = write!(
                            out,
                            "; {tied} match at {sev} and ties go to the earlier rule"
                        );
                    }
                    out.push(')');
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

#[cfg(test)]
mod tests {

    use time::macros::datetime;

    use super::*;
    use crate::rules::{EnvPolicy, Sources, load_sources_with_env};

    const RULES: &str = r#"
slo "checkout" { objective 99.9%; period 30d }
destination "pd" pagerduty { routing_key "k" }
destination "exec" slack { url "https://hooks.example/exec" }
severity SEV1 { page "pd"; notify "exec"; cadence 15m; ack timeout 5m escalate "exec"; roles split commander, operations }
severity SEV2 { page "pd"; cadence 30m }
severity SEV3 { notify "exec"; cadence 4h }

rule "checkout burning fast" {
  when labels.service == "checkout"
   and burn("checkout", 1h) > 14.4
   and burn("checkout", 5m) > 14.4
  then SEV1
}
rule "data loss" { when annotations.data_loss == "true" and budget_remaining("checkout") < 50% then SEV1 }
rule "critical"  { when labels.severity == "critical" and burn("checkout", 6h) > 6 then SEV2 }
rule "long runner" { when firing_for >= 2h and labels.env =~ "prod|staging" then SEV3 }
rule "not ours" { when not (labels.team in ["payments", "search"]) and labels.service != "" then SEV3 }
otherwise SEV3
"#;

    fn ruleset(text: &str) -> RuleSet {
        let mut sources = Sources::new();
        sources.add("t.sev", text);
        let loaded = load_sources_with_env(sources, EnvPolicy::Warn, &|_| None);
        let report = loaded.render();
        loaded.ruleset.unwrap_or_else(|| panic!("{report}"))
    }

    fn alert(labels: &[(&str, &str)]) -> Alert {
        Alert {
            labels: labels.iter().copied().collect(),
            ..Alert::default()
        }
    }

    const NOW: OffsetDateTime = datetime!(2026-11-27 12:00 UTC);

    #[test]
    fn the_most_severe_match_wins_and_every_match_is_explained() {
        let rs = ruleset(RULES);
        let mut burn = BurnSnapshot::new();
        burn.set_burn("checkout", 3600, 22.1);
        burn.set_burn("checkout", 300, 30.0);
        burn.set_burn("checkout", 6 * 3600, 7.5);
        let a = alert(&[
            ("service", "checkout"),
            ("severity", "critical"),
            ("team", "payments"),
        ]);
        let c = classify(&rs, &a, &burn, NOW);
        assert_eq!(c.severity, Some(Severity::Sev1));
        assert_eq!(
            c.decided_by,
            Decision::Rule {
                index: 0,
                name: "checkout burning fast".into()
            }
        );
        let names: Vec<&str> = c.matched.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, vec!["checkout burning fast", "critical"]);
        assert_eq!(
            c.matched[0].evidence,
            vec![
                r#"labels.service = "checkout" == "checkout""#,
                "burn(checkout, 1h) = 22.1 > 14.4",
                "burn(checkout, 5m) = 30 > 14.4",
                "checkout is rising: burn over 5m = 30 against 22.1 over 1h",
            ]
        );
        assert_eq!(c.matched[1].evidence[1], "burn(checkout, 6h) = 7.5 > 6");
        // The same rule while the short window eases off: recovering.
        burn.set_burn("checkout", 300, 15.0);
        let c = classify(&rs, &a, &burn, NOW);
        assert_eq!(
            c.matched[0].evidence.last().map(String::as_str),
            Some("checkout is recovering: burn over 5m = 15 against 22.1 over 1h")
        );
        let text = c.explain();
        assert!(
            text.starts_with(
                "SEV1 by rule \"checkout burning fast\" (the most severe of 2 matching rules)\n"
            ),
            "no tie at SEV1, so nothing about ties: {text}"
        );
    }

    #[test]
    fn ties_go_to_the_earlier_rule() {
        let rs = ruleset(&RULES.replace("then SEV2 }", "then SEV1 }"));
        let mut burn = BurnSnapshot::new();
        burn.set_burn("checkout", 6 * 3600, 7.0);
        burn.set_budget_remaining("checkout", 0.2);
        let mut a = alert(&[("severity", "critical"), ("team", "search")]);
        a.annotations.insert("data_loss", "true");
        let c = classify(&rs, &a, &burn, NOW);
        assert_eq!(c.matched.len(), 2);
        assert_eq!(
            c.decided_by,
            Decision::Rule {
                index: 1,
                name: "data loss".into()
            }
        );
        assert_eq!(
            c.matched[0].evidence[1],
            "budget_remaining(checkout) = 20% < 50%"
        );
        let text = c.explain();
        assert!(
            text.starts_with(
                "SEV1 by rule \"data loss\" (the most severe of 2 matching rules; \
                 2 match at SEV1 and ties go to the earlier rule)\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn missing_burn_data_never_matches_and_is_never_explained() {
        let rs = ruleset(RULES);
        let mut burn = BurnSnapshot::new();
        burn.set_burn("checkout", 3600, 50.0); // the 5m window has no data
        let a = alert(&[("service", "checkout"), ("team", "payments")]);
        let c = classify(&rs, &a, &burn, NOW);
        assert_eq!(c.severity, Some(Severity::Sev3));
        assert_eq!(c.decided_by, Decision::Otherwise);
        assert!(c.matched.is_empty());
        // Only matched rules are explained, and a condition that holds
        // never rests on a part without data.
        assert_eq!(c.explain(), "SEV3 by `otherwise`: no rule matched\n");
    }

    #[test]
    fn a_negated_or_is_explained_one_failed_part_per_line() {
        let rs = ruleset(
            r#"
destination "chat" slack { url "u" }
severity SEV3 { notify "chat" }
rule "neither" { when not (labels.a == "x" or labels.b == "y") then SEV3 }
rule "not both" { when not (labels.a == "" and labels.b == "y") then SEV3 }
"#,
        );
        let c = classify(&rs, &alert(&[("b", "z")]), &BurnSnapshot::new(), NOW);
        assert_eq!(c.matched.len(), 2, "{}", c.explain());
        assert_eq!(
            c.matched[0].evidence,
            vec![
                r#"not (labels.a = "" == "x")"#,
                r#"not (labels.b = "z" == "y")"#,
            ]
        );
        // Only the part that failed explains a negated `and`.
        assert_eq!(
            c.matched[1].evidence,
            vec![r#"not (labels.b = "z" == "y")"#]
        );
    }

    #[test]
    fn firing_for_uses_the_injected_time_and_regex_is_anchored() {
        let rs = ruleset(RULES);
        let mut a = alert(&[("env", "prod"), ("team", "payments")]);
        a.starts_at = Some(datetime!(2026-11-27 09:30 UTC));
        let c = classify(&rs, &a, &BurnSnapshot::new(), NOW);
        assert_eq!(c.matched.len(), 1, "{}", c.explain());
        assert_eq!(c.matched[0].evidence[0], "firing_for = 2h30m >= 2h");
        // One hour earlier it had fired for only 1h30m.
        let c = classify(
            &rs,
            &a,
            &BurnSnapshot::new(),
            datetime!(2026-11-27 11:00 UTC),
        );
        assert!(c.matched.is_empty());
        // "production" contains "prod" but the anchored regex does not match it.
        a.labels.insert("env", "production");
        let c = classify(&rs, &a, &BurnSnapshot::new(), NOW);
        assert!(c.matched.is_empty(), "{}", c.explain());
    }

    #[test]
    fn regexes_match_whole_values_and_dot_matches_newline_as_in_prometheus() {
        let rs = ruleset(
            r#"
destination "chat" slack { url "u" }
severity SEV3 { notify "chat" }
rule "tiers" { when labels.env =~ "(?x) prod | staging  # paging tiers" then SEV3 }
rule "disk" { when annotations.summary =~ "disk.*full" then SEV3 }
"#,
        );
        let names = |a: &Alert| -> Vec<String> {
            let c = classify(&rs, a, &BurnSnapshot::new(), NOW);
            c.matched.iter().map(|m| m.name.clone()).collect()
        };
        assert_eq!(names(&alert(&[("env", "prod")])), vec!["tiers"]);
        assert_eq!(names(&alert(&[("env", "staging")])), vec!["tiers"]);
        assert!(names(&alert(&[("env", "production-eu")])).is_empty());
        assert!(names(&alert(&[("env", "pre-staging")])).is_empty());
        let mut a = alert(&[]);
        a.annotations.insert("summary", "disk /var\nnearly full");
        assert_eq!(names(&a), vec!["disk"], "`.` matches a newline");
    }

    #[test]
    fn missing_labels_read_as_empty_and_not_is_explained() {
        let rs = ruleset(RULES);
        let c = classify(
            &rs,
            &alert(&[("service", "cart")]),
            &BurnSnapshot::new(),
            NOW,
        );
        assert_eq!(c.matched.len(), 1);
        assert_eq!(c.matched[0].name, "not ours");
        assert_eq!(
            c.matched[0].evidence,
            vec![
                r#"not (labels.team = "" in ["payments", "search"])"#,
                r#"labels.service = "cart" != """#,
            ]
        );
        // No service label at all: "" != "" is false.
        let c = classify(&rs, &alert(&[("team", "x")]), &BurnSnapshot::new(), NOW);
        assert!(c.matched.is_empty());
    }

    #[test]
    fn no_data_never_matches_even_under_not() {
        let rs = ruleset(
            r#"
slo "s" { objective 99%; period 30d }
destination "chat" slack { url "u" }
severity SEV3 { notify "chat" }
rule "healthy" { when labels.team != "z" and not burn("s", 1h) > 1 then SEV3 }
rule "either" { when burn("s", 5m) > 1 or labels.team == "x" then SEV3 }
"#,
        );
        let names = |c: &Classification| -> Vec<String> {
            c.matched.iter().map(|m| m.name.clone()).collect()
        };
        let a = alert(&[("team", "x")]);
        // No data at all: `not unknown` is unknown, `unknown or true` is true.
        let c = classify(&rs, &a, &BurnSnapshot::new(), NOW);
        assert_eq!(names(&c), vec!["either"]);
        assert_eq!(c.matched[0].evidence, vec![r#"labels.team = "x" == "x""#]);
        // With data the negation holds.
        let mut burn = BurnSnapshot::new();
        burn.set_burn("s", 3600, 0.5);
        let c = classify(&rs, &alert(&[("team", "y")]), &burn, NOW);
        assert_eq!(names(&c), vec!["healthy"]);
        assert_eq!(
            c.matched[0].evidence.last().map(String::as_str),
            Some("not (burn(s, 1h) = 0.5 > 1)")
        );
    }

    #[test]
    fn a_burn_floor_decides_the_comparisons_it_can_and_no_others() {
        let rs = ruleset(
            r#"
slo "s" { objective 99.9%; period 30d; source alerts }
destination "chat" slack { url "u" }
severity SEV1 { notify "chat" }
severity SEV2 { notify "chat" }
severity SEV3 { notify "chat" }
rule "fast" { when labels.team == "x" and burn("s", 1h) > 14.4 and burn("s", 5m) >= 14.4 then SEV1 }
rule "faster" { when labels.team == "x" and burn("s", 1h) > 20 then SEV1 }
rule "calm" { when labels.team == "x" and burn("s", 1h) < 10 then SEV2 }
rule "not calm" { when labels.team == "x" and not 10 > burn("s", 1h) then SEV3 }
"#,
        );
        let mut burn = BurnSnapshot::new();
        burn.raise_floor("s", 3600, 14.4);
        burn.raise_floor("s", 300, 14.4);
        burn.raise_floor("s", 300, 6.0);
        assert_eq!(burn.floor("s", 300), Some(14.4), "the highest floor stands");
        let c = classify(&rs, &alert(&[("team", "x")]), &burn, NOW);
        let names: Vec<&str> = c.matched.iter().map(|m| m.name.as_str()).collect();
        // Above 14.4 says nothing about 20; it does say "not below 10".
        assert_eq!(names, vec!["fast", "not calm"]);
        assert_eq!(
            c.matched[0].evidence[1],
            "burn(s, 1h) above 14.4 (a firing burn-rate alert says) > 14.4"
        );
        // A measured value wins over a floor.
        burn.set_burn("s", 3600, 25.0);
        let c = classify(&rs, &alert(&[("team", "x")]), &burn, NOW);
        let names: Vec<&str> = c.matched.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, vec!["fast", "faster", "not calm"]);
    }

    #[test]
    fn rules_that_read_only_slos_classify_the_slos_own_alert_and_no_other() {
        use crate::model::AlertStatus;
        let rs = ruleset(
            r#"
slo "s" { objective 99%; period 30d }
slo "t" { objective 99%; period 30d }
destination "chat" slack { url "u" }
severity SEV1 { notify "chat" }
severity SEV3 { notify "chat" }
rule "s burns" { when burn("s", 1h) > 10 then SEV1 }
rule "s and t" { when burn("s", 1h) > 1 and budget_remaining("t") < 50% then SEV3 }
rule "t burns" { when burn("t", 1h) > 10 then SEV1 }
otherwise SEV3
"#,
        );
        // Each SLO rule belongs to the first SLO it reads.
        let by_slo: Vec<(usize, Vec<usize>)> =
            rs.slo_rules().map(|(s, r)| (s, r.to_vec())).collect();
        assert_eq!(by_slo, vec![(0, vec![0, 1]), (1, vec![2])]);

        let mut burn = BurnSnapshot::new();
        burn.set_burn("s", 3600, 20.0);
        burn.set_budget_remaining("t", 0.2);
        // An alert from outside is not touched by SLO rules: `otherwise`.
        let c = classify(&rs, &alert(&[("team", "x")]), &burn, NOW);
        assert_eq!(c.decided_by, Decision::Otherwise);
        assert!(c.matched.is_empty());
        // The SLO's own alert is classified by its rules, most severe first.
        let own = Alert::for_slo("s", AlertStatus::Firing, NOW);
        let c = classify(&rs, &own, &burn, NOW);
        assert_eq!(c.severity, Some(Severity::Sev1));
        let names: Vec<&str> = c.matched.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, vec!["s burns", "s and t"]);
        // No rule of t holds and `otherwise` does not apply to SLO alerts.
        let c = classify(
            &rs,
            &Alert::for_slo("t", AlertStatus::Firing, NOW),
            &burn,
            NOW,
        );
        assert_eq!(c.severity, None);
        assert_eq!(c.decided_by, Decision::NoMatch);
    }

    #[test]
    fn without_otherwise_an_unmatched_alert_has_no_severity() {
        let rs = ruleset(&RULES.replace("otherwise SEV3", ""));
        let c = classify(
            &rs,
            &alert(&[("team", "payments")]),
            &BurnSnapshot::new(),
            NOW,
        );
        assert_eq!(c.severity, None);
        assert_eq!(c.decided_by, Decision::NoMatch);
        assert!(c.explain().starts_with("no severity"));
    }

    #[test]
    fn indexed_and_unindexed_rules_agree_with_evaluating_every_rule() {
        // The index must never change the verdict: compare with brute force.
        let rs = ruleset(RULES);
        let mut burn = BurnSnapshot::new();
        burn.set_burn("checkout", 3600, 20.0);
        burn.set_burn("checkout", 300, 20.0);
        burn.set_burn("checkout", 6 * 3600, 8.0);
        let services = ["checkout", "cart", ""];
        let severities = ["critical", "warning", ""];
        let teams = ["payments", "search", "other", ""];
        for s in services {
            for sev in severities {
                for t in teams {
                    let mut labels = vec![];
                    for (k, v) in [("service", s), ("severity", sev), ("team", t)] {
                        if !v.is_empty() {
                            labels.push((k, v));
                        }
                    }
                    let a = alert(&labels);
                    let ctx = EvalCtx {
                        ruleset: &rs,
                        alert: &a,
                        burn: &burn,
                        now: NOW,
                    };
                    let brute: Vec<usize> = (0..rs.rules.len())
                        .filter(|&i| holds(&rs.rules[i].when, &ctx))
                        .collect();
                    let got: Vec<usize> = classify(&rs, &a, &burn, NOW)
                        .matched
                        .iter()
                        .map(|m| m.index)
                        .collect();
                    assert_eq!(got, brute, "labels {labels:?}");
                }
            }
        }
    }

    #[test]
    fn actions_resolve_destinations_by_name() {
        let rs = ruleset(RULES);
        let a = actions_for(&rs, Severity::Sev1).unwrap().summary();
        assert_eq!(a.page, vec!["pd"]);
        assert_eq!(a.notify, vec!["exec"]);
        assert_eq!(a.cadence_secs, Some(900));
        assert_eq!(a.ack_timeout_secs, Some(300));
        assert_eq!(a.escalate, vec!["exec"]);
        assert_eq!(a.roles, vec!["commander", "operations"]);
        assert!(a.split_roles);
        assert!(a.postmortem_required);
        let a3 = actions_for(&rs, Severity::Sev3).unwrap().summary();
        assert!(a3.page.is_empty());
        assert!(!a3.postmortem_required);
    }
}
