//! `sevroute import`: realistic Sloth, Pyrra and OpenSLO files (under
//! `tests/fixtures/import/`, modelled on each project's docs) become rules
//! that `sevroute check` accepts next to the shipped severities.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sevroute(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sevroute"))
        .args(args)
        .output()
        .expect("run sevroute")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> String {
    root()
        .join("tests/fixtures/import")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Imports `file`, then checks the output in a rule set made of the shipped
/// destinations and severities: returns the imported text and stderr.
fn import_and_check(format: &str, file: &str) -> (String, String) {
    let out = sevroute(&["import", format, &fixture(file)]);
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "import {format} {file} failed: {stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    for shipped in ["destinations.sev", "severities.sev"] {
        fs::copy(root().join("rules").join(shipped), dir.path().join(shipped)).unwrap();
    }
    fs::write(dir.path().join("otherwise.sev"), "otherwise SEV3\n").unwrap();
    fs::write(dir.path().join("imported.sev"), &text).unwrap();
    let check = sevroute(&["check", "--format", "json", dir.path().to_str().unwrap()]);
    let report: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert!(check.status.success(), "{report:#}\n{text}");
    for diag in report["diagnostics"].as_array().unwrap() {
        // Only the shipped destinations' unset secrets.
        assert_eq!(diag["code"], "W103", "{diag:#}\n{text}");
    }
    (text, stderr)
}

/// The lines of the `slo` block named `name`.
fn slo_block<'t>(text: &'t str, name: &str) -> Vec<&'t str> {
    let start = format!("slo \"{name}\" {{");
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == start)
        .unwrap_or_else(|| panic!("no {start}\n{text}"));
    let end = at + lines[at..].iter().position(|l| *l == "}").unwrap();
    lines[at..=end].to_vec()
}

#[test]
fn sloth_getting_started_becomes_a_prometheus_slo_with_the_workbook_tiers() {
    let (text, stderr) = import_and_check("sloth", "sloth-getting-started.yml");
    assert_eq!(stderr, "");
    assert_eq!(
        slo_block(&text, "myservice-requests-availability"),
        [
            "slo \"myservice-requests-availability\" {",
            "  objective 99.9%",
            "  period    30d",
            "  source    prometheus {",
            r#"    errors "sum(http_request_duration_seconds_count{job=\"myservice\",code=~\"(5..|429)\"})""#,
            r#"    total  "sum(http_request_duration_seconds_count{job=\"myservice\"})""#,
            "  }",
            "}",
        ]
    );
    for (long, short, burn, severity) in [
        ("1h", "5m", "14.4", "SEV1"),
        ("6h", "30m", "6", "SEV2"),
        ("3d", "6h", "1", "SEV3"),
    ] {
        let rule = format!(
            "  when burn(\"myservice-requests-availability\", {long}) > {burn}\n   and burn(\"myservice-requests-availability\", {short}) > {burn}\n  then {severity}\n"
        );
        assert!(text.contains(&rule), "{rule}\n{text}");
    }
    assert!(text.contains("# From Sloth service \"myservice\", SLO \"requests-availability\""));
}

#[test]
fn sloth_crd_raw_ratio_becomes_push_with_the_query_quoted_and_a_note() {
    let (text, stderr) = import_and_check("sloth", "sloth-k8s.yml");
    assert_eq!(
        slo_block(&text, "k8s-apiserver-requests-availability")[4],
        r#"    errors "sum(apiserver_request_total{code=~\"(5..|429)\"})""#
    );
    let latency = slo_block(&text, "k8s-apiserver-requests-latency");
    assert_eq!(latency[3], "  source    push");
    assert!(text.contains("#   ( sum(rate(apiserver_request_duration_seconds_count{verb!=\"WATCH\"}[{{.window}}]))"), "{text}");
    assert!(stderr.starts_with("note: "), "{stderr}");
    assert!(
        stderr.contains("\"k8s-apiserver-requests-latency\" uses `source push`"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn pyrra_selectors_are_summed_with_their_grouping_and_thresholds_follow_the_window() {
    let (text, stderr) = import_and_check("pyrra", "pyrra.yaml");
    assert_eq!(stderr, "");
    let api = slo_block(&text, "pyrra-api-errors");
    assert_eq!(api[1..3], ["  objective 99%", "  period    2w"]);
    assert_eq!(
        api[4],
        r#"    errors "sum(http_requests_total{job=\"pyrra\",code=~\"5..\"})""#
    );
    // 2% of a 14-day budget in one hour is a burn of 0.02 x 336 = 6.72.
    assert!(
        text.contains("burn(\"pyrra-api-errors\", 1h) > 6.72"),
        "{text}"
    );
    let parca = slo_block(&text, "parca-grpc-queryrange-errors");
    assert!(
        parca[5].starts_with(r#"    total  "sum by (grpc_method) (grpc_server_handled_total{"#),
        "{}",
        parca[5]
    );
    let latency = slo_block(&text, "prometheus-api-query-latency");
    assert_eq!(
        latency[4],
        r#"    errors "sum(prometheus_http_request_duration_seconds_count{handler=\"/api/v1/query\"}) - sum(prometheus_http_request_duration_seconds_bucket{handler=\"/api/v1/query\",le=\"1\"})""#
    );
}

#[test]
fn openslo_inline_and_referenced_slis_become_counter_sources() {
    let (text, stderr) = import_and_check("openslo", "openslo.yaml");
    assert_eq!(stderr, "");
    let web = slo_block(&text, "web-availability");
    assert_eq!(web[1..3], ["  objective 99.5%", "  period    4w"]);
    assert_eq!(
        web[4],
        r#"    errors "sum(http_requests_total{service=\"web\"}) - sum(http_requests_total{service=\"web\",code!~\"5..\"})""#
    );
    let checkout = slo_block(&text, "checkout-availability");
    assert_eq!(
        checkout[4],
        r#"    errors "sum(checkout_requests_total{code=~\"5..\"})""#
    );
    assert!(
        text.contains("burn(\"checkout-availability\", 1h) > 3.36"),
        "{text}"
    );
}

#[test]
fn a_bad_file_fails_with_the_file_and_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("slo.yaml");
    fs::write(
        &file,
        "version: prometheus/v1\nservice: api\nslos:\n  - name: avail\n    objective: 99.9\n",
    )
    .unwrap();
    let out = sevroute(&["import", "sloth", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        format!("error: {}: slos[0].sli: missing (required)", file.display())
    );
    let missing = sevroute(&[
        "import",
        "pyrra",
        &Path::new("no-such-file.yaml").display().to_string(),
    ]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .starts_with("error: no-such-file.yaml: cannot read: ")
    );
}

#[test]
fn the_example_in_the_docs_is_what_the_command_prints() {
    let doc = fs::read_to_string(root().join("docs/import.md")).unwrap();
    let start = doc.find("```sev\n").expect("a sev block in docs/import.md") + "```sev\n".len();
    let example = &doc[start..start + doc[start..].find("```").unwrap()];
    let (text, _) = import_and_check("sloth", "sloth-getting-started.yml");
    assert!(
        text.contains(example),
        "docs/import.md's example differs from the output:\n{text}"
    );
}
