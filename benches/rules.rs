//! Rules-language benchmarks: parse + check a 10,000-rule file, and one
//! classification against 10, 1,000 and 10,000 label rules, with the
//! label index and (the peer in the same run) without it.
//!
//! Run: `cargo bench --bench rules`. Numbers go in docs/performance.md.

use std::hint::black_box;

use sevroute::classify::{BurnSnapshot, classify};
use sevroute::model::{Alert, StrMap};
use sevroute::rules::{EnvPolicy, LabelIndex, RuleSet, Sources, load_sources_with_env};
use time::macros::datetime;

fn main() {
    divan::main();
}

const PRELUDE: &str = r#"
slo "api" { objective 99.9%; period 30d }
destination "pd" pagerduty { routing_key "k" }
destination "chat" slack { url "https://hooks.example/chat" }
severity SEV1 { page "pd"; notify "chat"; cadence 15m }
severity SEV2 { page "pd"; cadence 30m }
severity SEV3 { notify "chat"; cadence 4h }
otherwise SEV3
"#;

/// Distinct regex patterns among the generated rules: large rule sets
/// repeat patterns, and the checker compiles each distinct one once.
const DISTINCT_PATTERNS: usize = 50;

/// `n` rules of the shapes SREs write: a service equality, usually a burn
/// condition, sometimes a regex or a list.
fn rule_text(n: usize) -> String {
    let mut text = String::from(PRELUDE);
    for i in 0..n {
        let rule = match i % 4 {
            0 => format!(
                "rule \"r{i}\" {{ when labels.service == \"svc{i}\" and burn(\"api\", 1h) > 14.4 and burn(\"api\", 5m) > 14.4 then SEV1 }}\n"
            ),
            1 => format!(
                "rule \"r{i}\" {{ when labels.service == \"svc{i}\" and labels.severity =~ \"crit.*|page{}\" and burn(\"api\", 6h) > 6 then SEV2 }}\n",
                i % DISTINCT_PATTERNS
            ),
            2 => format!(
                "rule \"r{i}\" {{ when labels.service == \"svc{i}\" and labels.env in [\"prod\", \"staging\"] then SEV3 }}\n"
            ),
            _ => format!(
                "rule \"r{i}\" {{\n  when labels.service == \"svc{i}\"\n   and (annotations.data_loss == \"true\" or firing_for > 30m)\n   and budget_remaining(\"api\") < 50%\n  then SEV1\n}}\n"
            ),
        };
        text.push_str(&rule);
    }
    text
}

fn load(text: &str) -> RuleSet {
    let mut sources = Sources::new();
    sources.add("bench.sev", text.to_string());
    let loaded = load_sources_with_env(sources, EnvPolicy::Warn, &|_| None);
    loaded.ruleset.expect("the generated rule set checks")
}

#[divan::bench(sample_count = 20)]
fn parse_and_check_10k_rules(bencher: divan::Bencher) {
    let text = rule_text(10_000);
    bencher.bench(|| {
        let mut sources = Sources::new();
        sources.add("bench.sev", black_box(text.clone()));
        let loaded = load_sources_with_env(sources, EnvPolicy::Warn, &|_| None);
        assert!(loaded.ruleset.is_some());
    });
}

/// The parse alone, to show how the 10k-rule budget splits.
#[divan::bench(sample_count = 20)]
fn parse_only_10k_rules(bencher: divan::Bencher) {
    let text = rule_text(10_000);
    bencher.bench(|| {
        let (file, diags) = sevroute::rules::parser::parse_file(0, black_box(&text));
        assert!(diags.is_empty());
        file
    });
}

/// The check alone, on files parsed once: the rest of the 10k-rule budget.
#[divan::bench(sample_count = 20)]
fn check_only_10k_rules(bencher: divan::Bencher) {
    let text = rule_text(10_000);
    let (file, diags) = sevroute::rules::parser::parse_file(0, &text);
    assert!(diags.is_empty());
    let files = [file];
    bencher.bench(|| {
        let (ruleset, _) =
            sevroute::rules::check::check(black_box(&files), EnvPolicy::Warn, &|_| None);
        ruleset.expect("checks")
    });
}

fn alert() -> Alert {
    let labels: StrMap = [
        ("alertname", "HighErrorRate"),
        ("service", "svc1"),
        ("severity", "critical"),
        ("env", "prod"),
        ("instance", "10.0.0.7:9090"),
        ("job", "checkout"),
    ]
    .into_iter()
    .collect();
    Alert {
        labels,
        starts_at: Some(datetime!(2026-11-27 11:00 UTC)),
        ..Alert::default()
    }
}

fn burn() -> BurnSnapshot {
    let mut burn = BurnSnapshot::new();
    burn.set_burn("api", 3600, 20.0);
    burn.set_burn("api", 300, 25.0);
    burn.set_burn("api", 6 * 3600, 7.0);
    burn.set_budget_remaining("api", 0.4);
    burn
}

#[divan::bench(args = [10, 1_000, 10_000])]
fn classify_indexed(bencher: divan::Bencher, rules: usize) {
    let rs = load(&rule_text(rules));
    let (alert, burn) = (alert(), burn());
    let now = datetime!(2026-11-27 12:00 UTC);
    bencher.bench(|| classify(black_box(&rs), black_box(&alert), &burn, now));
}

/// The peer: the same rules evaluated one by one, index disabled.
#[divan::bench(args = [10, 1_000, 10_000])]
fn classify_every_rule(bencher: divan::Bencher, rules: usize) {
    let mut rs = load(&rule_text(rules));
    rs.index = LabelIndex {
        by_label: Default::default(),
        unindexed: (0..rs.rules.len()).collect(),
        by_slo: Vec::new(),
    };
    let (alert, burn) = (alert(), burn());
    let now = datetime!(2026-11-27 12:00 UTC);
    bencher.bench(|| classify(black_box(&rs), black_box(&alert), &burn, now));
}
