//! The commands as a user runs them: exit codes and what they print.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn sevroute(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sevroute"))
        .args(args)
        .output()
        .expect("run sevroute")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const SMALL_RULES: &str = r#"
slo "api" { objective 99.9%; period 30d }
destination "pd" pagerduty { routing_key "k" }
destination "chat" slack { url "https://hooks.example/chat" }
severity SEV1 { page "pd"; notify "chat"; cadence 15m }
severity SEV2 { page "pd"; cadence 30m }
severity SEV3 { notify "chat"; cadence 4h }
rule "fast burn" { when labels.service == "api" and burn("api", 1h) > 14.4 and burn("api", 5m) > 14.4 then SEV1 }
rule "slow burn" { when burn("api", 6h) > 6 and burn("api", 30m) > 6 then SEV2 }
otherwise SEV3
"#;

fn rules_dir(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("main.sev"), text).unwrap();
    dir
}

#[test]
fn check_accepts_the_shipped_rules() {
    let out = sevroute(&["check", "rules"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("ok: "), "{text}");
    assert!(!text.contains("error["), "{text}");
    // The only warnings allowed are secrets not set in this environment.
    let out = sevroute(&["check", "--format", "json", "rules"]);
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for diag in body["diagnostics"].as_array().unwrap() {
        assert_eq!(diag["code"], "W103", "{diag:#}");
    }
}

#[test]
fn check_points_at_a_typo_with_a_caret_and_exits_1() {
    let dir = rules_dir(&SMALL_RULES.replace("then SEV2", "than SEV2"));
    let path = dir.path().join("main.sev");
    let out = sevroute(&["check", dir.path().to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("error[E100]: expected `then`, found `than`"),
        "{text}"
    );
    assert!(text.contains(&format!("{}:9:", path.display())), "{text}");
    assert!(text.contains("^^^^"), "{text}");
    assert!(text.contains("refused: 1 error(s)"), "{text}");
}

#[test]
fn warnings_pass_unless_denied() {
    let dir = rules_dir(&SMALL_RULES.replace("otherwise SEV3", ""));
    let path = dir.path().to_str().unwrap();
    let out = sevroute(&["check", path]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("warning[W102]"));
    let out = sevroute(&["check", "--deny-warnings", path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out)
            .contains("refused: 1 warning(s) in 1 file(s), and --deny-warnings denies them"),
        "{}",
        stdout(&out)
    );
    // The JSON verdict agrees with the exit code.
    let out = sevroute(&["check", "--format", "json", "--deny-warnings", path]);
    assert_eq!(out.status.code(), Some(1));
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["ok"], false, "{body:#}");
    assert_eq!(body["warnings"], 1);
    let out = sevroute(&["check", "--format", "json", path]);
    assert_eq!(out.status.code(), Some(0));
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["ok"], true, "{body:#}");
}

#[test]
fn check_reports_json_for_tools() {
    let dir = rules_dir(&SMALL_RULES.replace("burn(\"api\", 6h)", "burn(\"apx\", 6h)"));
    let out = sevroute(&["check", "--format", "json", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["ok"], false);
    let diag = &body["diagnostics"][0];
    assert_eq!(diag["code"], "E204");
    assert_eq!(diag["level"], "error");
    assert_eq!(diag["location"]["line"], 9);
    assert_eq!(diag["location"]["column"], 30);
    assert_eq!(diag["notes"][0], "did you mean \"api\"?");
}

#[test]
fn check_with_require_env_refuses_unset_secrets() {
    let dir = rules_dir(&SMALL_RULES.replace(
        "routing_key \"k\"",
        "routing_key env(\"SEVROUTE_TEST_UNSET\")",
    ));
    let path = dir.path().to_str().unwrap();
    assert!(sevroute(&["check", path]).status.success());
    let out = sevroute(&["check", "--require-env", path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("environment variable SEVROUTE_TEST_UNSET is not set"));
}

#[test]
fn shipped_rule_tests_pass() {
    let out = sevroute(&["test", "rules/tests"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.trim_end().ends_with(" passed, 0 failed"), "{text}");
}

const WRONG_EXPECTATION: &str = r#"
rules = "."

[[case]]
name = "fast burn"
eval_time = "2026-11-27T12:00:00Z"
burn = { api = { "1h" = 20.0, "5m" = 16.0 } }

[[case.alerts]]
labels = { service = "api" }
expect = { severity = "SEV2", rules = ["slow burn"], page = ["pd"] }

[[case.alerts]]
labels = { service = "web" }
expect = { severity = "SEV3", rules = [], notify = ["chat"], cadence = "4h" }
"#;

#[test]
fn a_wrong_expectation_fails_with_a_readable_diff() {
    let dir = rules_dir(SMALL_RULES);
    let test_file = dir.path().join("fast.toml");
    fs::write(&test_file, WRONG_EXPECTATION).unwrap();
    let out = sevroute(&["test", test_file.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL"), "{text}");
    assert!(text.contains("severity: expected SEV2, got SEV1"), "{text}");
    assert!(
        text.contains(
            "matched rules:\n    expected: [\"slow burn\"]\n    got:      [\"fast burn\"]"
        ),
        "{text}"
    );
    assert!(text.contains("burn(api, 1h) = 20 > 14.4"), "{text}");
    assert!(text.trim_end().ends_with("1 passed, 1 failed"), "{text}");
}

#[test]
fn explain_shows_the_values_behind_the_verdict() {
    let dir = rules_dir(&SMALL_RULES.replace("\"api\" and", "\"checkout\" and"));
    let fixture = Path::new("../shared/fixtures/alertmanager-0.25-webhook-firing.json");
    let out = sevroute(&[
        "explain",
        "--rules",
        dir.path().to_str().unwrap(),
        fixture.to_str().unwrap(),
        "--burn",
        "api:1h=22.1",
        "--burn",
        "api:5m=30",
        "--at",
        "2026-11-27T12:00:00Z",
    ]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("SEV1 by rule \"fast burn\""), "{text}");
    assert!(text.contains("burn(api, 1h) = 22.1 > 14.4"), "{text}");
    // Only matched rules are explained; the 6h window has no data.
    assert!(!text.contains("slow burn"), "{text}");
    assert!(text.contains("page:       pd"), "{text}");
    assert_eq!(
        text.matches("alert ").count(),
        3,
        "one verdict per alert: {text}"
    );
}

#[test]
fn explain_rejects_a_malformed_burn_flag_by_name() {
    let dir = rules_dir(SMALL_RULES);
    let alert = dir.path().join("alert.json");
    fs::write(&alert, r#"{"labels":{"service":"api"}}"#).unwrap();
    let out = sevroute(&[
        "explain",
        "--rules",
        dir.path().to_str().unwrap(),
        alert.to_str().unwrap(),
        "--burn",
        "api=3",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--burn \"api=3\": expected SLO:WINDOW=VALUE"),
        "{err}"
    );
}

#[test]
fn explain_rejects_burns_and_budgets_that_cannot_be_real() {
    let dir = rules_dir(SMALL_RULES);
    let alert = dir.path().join("alert.json");
    fs::write(&alert, r#"{"labels":{"service":"api"}}"#).unwrap();
    for (flag, value, says) in [
        ("--burn", "api:1h=NaN", "not NaN"),
        ("--burn", "api:1h=inf", "not inf"),
        ("--burn", "api:1h=-2", "not -2"),
        ("--budget", "api=150%", "not 1.5"),
        ("--budget", "api=-0.1", "not -0.1"),
        ("--budget", "api=NaN", "not NaN"),
    ] {
        let out = sevroute(&[
            "explain",
            "--rules",
            dir.path().to_str().unwrap(),
            alert.to_str().unwrap(),
            flag,
            value,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag} {value}: {err}");
        assert!(err.contains(&format!("{flag} {value:?}: ")), "{err}");
        assert!(err.contains(says), "{err}");
    }
}

const CASES_WITH_ONE_BAD: &str = r#"
rules = "."

[[case]]
name = "bad burn"
eval_time = "2026-11-27T12:00:00Z"
burn = { api = { "1h" = nan, "5m" = 16.0 } }

[[case.alerts]]
labels = { service = "api" }
expect = { severity = "SEV1" }

[[case]]
name = "bad start"
eval_time = "2026-11-27T12:00:00Z"

[[case.alerts]]
labels = { service = "web" }
expect = { severity = "SEV3" }

[[case.alerts]]
labels = { service = "web" }
starts_at = "yesterday"
expect = { severity = "SEV3" }

[[case]]
name = "budget"
eval_time = "2026-11-27T12:00:00Z"
budget_remaining = { api = 2.5 }

[[case.alerts]]
labels = { service = "web" }
expect = { severity = "SEV3" }

[[case]]
name = "fine"
eval_time = "2026-11-27T12:00:00Z"

[[case.alerts]]
labels = { service = "web" }
expect = { severity = "SEV3" }
"#;

#[test]
fn a_bad_case_is_an_error_for_that_case_and_the_others_still_run() {
    let dir = rules_dir(SMALL_RULES);
    let test_file = dir.path().join("cases.toml");
    fs::write(&test_file, CASES_WITH_ONE_BAD).unwrap();
    let out = sevroute(&["test", test_file.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let shown = test_file.display();
    assert!(
        text.contains(&format!(
            "ERROR {shown}: case \"bad burn\": burn.api.1h: a burn rate is a finite number, 0 or more, not NaN"
        )),
        "{text}"
    );
    // Alerts are counted from 1, as in FAIL lines.
    assert!(
        text.contains(&format!(
            "ERROR {shown}: case \"bad start\", alert 2: starts_at: "
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "ERROR {shown}: case \"budget\": budget_remaining.api: "
        )),
        "{text}"
    );
    assert!(
        text.trim_end().ends_with("2 passed, 0 failed, 3 error(s)"),
        "{text}"
    );
}

#[test]
fn a_test_file_with_no_rule_files_is_an_error() {
    let dir = rules_dir(SMALL_RULES);
    let test_file = dir.path().join("empty.toml");
    fs::write(
        &test_file,
        WRONG_EXPECTATION.replace("rules = \".\"", "rules = []"),
    )
    .unwrap();
    let out = sevroute(&["test", test_file.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("no rule files"), "{text}");
    assert!(
        text.trim_end().ends_with("0 passed, 0 failed, 1 error(s)"),
        "{text}"
    );
}

#[test]
fn slo_cases_check_the_slos_own_alert_and_name_unknown_slos() {
    let dir = rules_dir(SMALL_RULES);
    let test_file = dir.path().join("slo.toml");
    fs::write(
        &test_file,
        r#"
rules = "."

[[case]]
name = "slow burn on api"
eval_time = "2026-11-27T12:00:00Z"
burn = { api = { "6h" = 7.0, "30m" = 8.0 } }

[[case.slos]]
name = "api"
expect = { severity = "SEV1", rules = ["slow burn"] }

[[case.slos]]
name = "apii"
expect = { severity = "none" }
"#,
    )
    .unwrap();
    let out = sevroute(&["test", test_file.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL") && text.contains("slo \"api\""),
        "{text}"
    );
    // "slow burn" reads only the SLO: it classifies the SLO's own alert.
    assert!(text.contains("severity: expected SEV1, got SEV2"), "{text}");
    assert!(
        text.contains("slo \"apii\": the rule set declares no slo \"apii\""),
        "{text}"
    );
    assert!(
        text.trim_end().ends_with("0 passed, 1 failed, 1 error(s)"),
        "{text}"
    );
}
