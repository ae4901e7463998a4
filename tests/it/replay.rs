//! `sevroute replay`: recorded payloads (the real Alertmanager and
//! Prometheus fixtures) through classification and incidents on a
//! simulated clock.

use std::process::Command;

use serde_json::{Value, json};

const RULES: &str = r#"
destination "pd" webhook { url "http://127.0.0.1:9/pd" }
destination "chat" webhook { url "http://127.0.0.1:9/chat" }
severity SEV1 { page "pd"; notify "chat"; cadence 15m }
severity SEV3 { notify "chat" }
rule "critical" { when labels.severity == "critical" then SEV1 }
otherwise SEV3
group by service wait 30s interval 5m
"#;

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("../shared/fixtures/{name}")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn replay_prints_each_decision_and_a_summary_on_a_simulated_clock() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/main.sev"), RULES).unwrap();

    let firing = fixture("alertmanager-0.25-webhook-firing.json");
    let mut resolved = firing.clone();
    for alert in resolved["alerts"].as_array_mut().unwrap() {
        alert["status"] = json!("resolved");
        alert["endsAt"] = json!("2026-11-27T12:40:00Z");
    }
    let lines = [
        json!({ "at": "2026-11-27T12:00:00Z", "source": "alertmanager", "body": firing }),
        // Prometheus' own list, as posted to /api/v2/alerts, detected by shape.
        json!({ "at": "2026-11-27T12:01:00Z", "body": fixture("prometheus-2.42-api-v2-alerts.json") }),
        json!({ "at": "2026-11-27T12:40:00Z", "body": resolved }),
    ];
    let recording = dir.path().join("recording.jsonl");
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(
        &recording,
        format!("# recorded on a test machine\n{}\n", text.join("\n")),
    )
    .unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_sevroute"))
        .args(["replay", "--rules"])
        .arg(dir.path().join("rules"))
        .arg(&recording)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The group wait holds the first page 30s on the simulated clock.
    assert!(
        stdout.contains("2026-11-27T12:00:30Z incident 1 SEV1 page -> pd"),
        "{stdout}"
    );
    // Cadence reminders fall due every 15m until the resolve at 12:40.
    assert!(
        stdout.contains("2026-11-27T12:15:30Z incident 1 SEV1 update_due -> chat"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2026-11-27T12:40:00Z incident 1 SEV1 resolve -> pd"),
        "{stdout}"
    );
    let summary = stdout.split("summary").nth(1).unwrap();
    let figure = |label: &str| -> u64 {
        let line = summary
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap();
        line.split_whitespace().last().unwrap().parse().unwrap()
    };
    // 3 from the webhook, 1 from the Prometheus list, 3 resolved.
    assert_eq!(figure("alerts read"), 7);
    assert_eq!(figure("incidents SEV1"), 1);
    assert_eq!(figure("pages"), 1);
    assert_eq!(figure("update reminders"), 2);
    assert_eq!(figure("resolves"), 1);
    assert_eq!(figure("incidents resolved"), 1);
}

#[test]
fn replay_names_the_line_of_a_bad_payload() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/main.sev"), RULES).unwrap();
    let recording = dir.path().join("bad.jsonl");
    std::fs::write(&recording, "[{\"labels\":{\"a\":\"b\"}}]\n{\"labels\":\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sevroute"))
        .args(["replay", "--rules"])
        .arg(dir.path().join("rules"))
        .arg(&recording)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.jsonl:2"), "{stderr}");
}

#[test]
fn a_bare_prometheus_line_takes_its_time_from_starts_at() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/main.sev"), RULES).unwrap();
    let recording = dir.path().join("bare.jsonl");
    let line = json!([{ "labels": { "alertname": "A", "severity": "critical", "service": "x" }, "startsAt": "2026-11-27T10:00:00Z" }]);
    std::fs::write(&recording, format!("{line}\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sevroute"))
        .args(["replay", "--rules"])
        .arg(dir.path().join("rules"))
        .arg(&recording)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The 30s group wait runs from the alert's own startsAt.
    assert!(
        stdout.contains("2026-11-27T10:00:00Z incident 1 declared"),
        "{stdout}"
    );
}
