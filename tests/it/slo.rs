//! SLO sources end to end: pushed SLI samples surviving a restart, and
//! the `prometheus` source against a fake Prometheus on loopback (the real
//! one is in `interop.rs`).

use std::path::Path;

use serde_json::{Value, json};

use super::serve::{Server, client, get_json, post, write_rules};

/// Every window's counts and burn, and the budget, of one SLO status.
fn readings(status: &Value) -> Value {
    json!({
        "burns": status["slo"]["burns"],
        "budget_remaining": status["slo"]["budget_remaining"],
    })
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn push_rules(dir: &Path) {
    write_rules(
        dir,
        r#"
slo "api" { objective 99.9%; period 30d; source push }
destination "chat" webhook { url "http://127.0.0.1:9/chat" }
severity SEV3 { notify "chat" }
otherwise SEV3
"#,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_samples_survive_a_restart_and_counters_continue_from_them() {
    let dir = tempfile::tempdir().unwrap();
    push_rules(dir.path());
    let server = Server::start(dir.path(), "");
    let http = client();
    let events = format!("{}/api/v1/slos/api/events", server.base);
    let t = now_secs();
    for body in [
        json!({ "good": 990, "total": 1000, "timestamp": t - 20 }),
        json!({ "good": 0, "total": 0, "cumulative": true, "timestamp": t - 15 }),
        json!({ "good": 495, "total": 500, "cumulative": true, "timestamp": t - 10 }),
    ] {
        let resp = post(&http, &events, &body).await;
        assert_eq!(resp.status(), 200, "{body}");
    }
    let status = format!("{}/api/v1/slos/api", server.base);
    let before = get_json(&http, &status).await;
    // 15 bad of 1,500 over 5 minutes: ratio 0.01, burn 0.01 / 0.001 = 10.
    let five_minutes = &before["slo"]["burns"][0];
    assert_eq!(five_minutes["window_secs"], 300);
    assert_eq!(
        five_minutes["counts"],
        json!({ "good": 1485, "total": 1500 })
    );
    let burn = five_minutes["burn"]["value"].as_f64().unwrap();
    assert!((burn - 10.0).abs() < 1e-9, "{burn}");

    server.terminate().await;
    let server = Server::start(dir.path(), "");
    let status = format!("{}/api/v1/slos/api", server.base);
    let after = get_json(&http, &status).await;
    assert_eq!(readings(&after), readings(&before), "the burn is unchanged");

    // The counter baseline came back too: the next cumulative sample adds
    // only its increase (another 5 bad of 500).
    let events = format!("{}/api/v1/slos/api/events", server.base);
    let body = json!({ "good": 990, "total": 1000, "cumulative": true, "timestamp": t - 5 });
    assert_eq!(post(&http, &events, &body).await.status(), 200);
    let later = get_json(&http, &status).await;
    assert_eq!(
        later["slo"]["burns"][0]["counts"],
        json!({ "good": 1980, "total": 2000 })
    );
}
