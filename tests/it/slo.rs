//! SLO sources end to end: pushed SLI samples surviving a restart, and
//! the `prometheus` source against a fake Prometheus on loopback (the real
//! one is in `interop.rs`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
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

/// A fake Prometheus on loopback: `sum(errors)` and `sum(total)` are
/// counters that have counted one event a second, one in ten an error,
/// since 40 days ago, scraped every 10 s (so values step at multiples of
/// 10 s). Any other expression has no series. It logs the requests and
/// fails (503 with Prometheus' error JSON) while `failing` is set.
struct FakePrometheus {
    addr: std::net::SocketAddr,
    log: Arc<Mutex<Vec<HashMap<String, String>>>>,
    failing: Arc<AtomicBool>,
}

#[derive(Clone)]
struct FakeState {
    log: Arc<Mutex<Vec<HashMap<String, String>>>>,
    failing: Arc<AtomicBool>,
    origin: i64,
}

/// The fake counters' value of `expr` at unix second `t`, if it exists.
fn fake_value(origin: i64, expr: &str, t: i64) -> Option<i64> {
    let scrapes = (t.div_euclid(10) * 10 - origin) / 10;
    match expr {
        "sum(errors)" => Some(scrapes),
        "sum(total)" => Some(scrapes * 10),
        _ => None,
    }
}

async fn fake_api(
    State(state): State<FakeState>,
    uri: axum::http::Uri,
    Query(params): Query<HashMap<String, String>>,
) -> (StatusCode, String) {
    let mut logged = params.clone();
    logged.insert("path".into(), uri.path().to_string());
    state.log.lock().unwrap().push(logged);
    if state.failing.load(Ordering::SeqCst) {
        let body =
            json!({"status": "error", "errorType": "unavailable", "error": "the fake is down"});
        return (StatusCode::SERVICE_UNAVAILABLE, body.to_string());
    }
    let expr = params.get("query").cloned().unwrap_or_default();
    let body = if uri.path() == "/api/v1/query" {
        // Evaluated at `time` (sevroute always sends it), else now.
        let t: f64 = params.get("time").map_or_else(
            || time::OffsetDateTime::now_utc().unix_timestamp() as f64,
            |t| t.parse().unwrap(),
        );
        let result: Vec<Value> = fake_value(state.origin, &expr, t.floor() as i64)
            .map(|v| json!({"metric": {}, "value": [t, v.to_string()]}))
            .into_iter()
            .collect();
        json!({"status": "success", "data": {"resultType": "vector", "result": result}})
    } else {
        let num = |k: &str| params.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap();
        let (start, end, step) = (num("start"), num("end"), num("step"));
        let values: Vec<Value> = (0..)
            .map(|i| start + i * step)
            .take_while(|t| *t <= end)
            .filter_map(|t| fake_value(state.origin, &expr, t).map(|v| json!([t, v.to_string()])))
            .collect();
        let result: Vec<Value> = if values.is_empty() {
            vec![]
        } else {
            vec![json!({"metric": {}, "values": values})]
        };
        json!({"status": "success", "data": {"resultType": "matrix", "result": result}})
    };
    (StatusCode::OK, body.to_string())
}

impl FakePrometheus {
    async fn start() -> FakePrometheus {
        let log = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(AtomicBool::new(false));
        let origin = (now_secs() - 40 * 86_400).div_euclid(10) * 10;
        let app = Router::new().fallback(fake_api).with_state(FakeState {
            log: log.clone(),
            failing: failing.clone(),
            origin,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakePrometheus { addr, log, failing }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<HashMap<String, String>> {
        self.log.lock().unwrap().clone()
    }
}

/// Polls `GET /api/v1/slos/NAME` (bounded) until `pred` holds.
async fn wait_for_slo(
    http: &reqwest::Client,
    server: &Server,
    name: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let url = format!("{}/api/v1/slos/{name}", server.base);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = get_json(http, &url).await;
        if pred(&status["slo"]) {
            return status["slo"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last status: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[track_caller]
fn assert_close(got: &Value, want: f64) {
    let got = got
        .as_f64()
        .unwrap_or_else(|| panic!("{got} is not a number"));
    assert!(
        (got - want).abs() <= 1e-9 * want.abs().max(1.0),
        "got {got}, want {want}"
    );
}

fn prometheus_rules(dir: &Path) {
    write_rules(
        dir,
        r#"
slo "db" {
  objective 99%
  period    30d
  source    prometheus { errors "sum(errors)" total "sum(total)" }
}
slo "typo" {
  objective 99%
  period    30d
  source    prometheus { errors "sum(errros)" total "sum(total)" }
}
destination "chat" webhook { url "http://127.0.0.1:9/chat" }
severity SEV3 { notify "chat" }
otherwise SEV3
"#,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prometheus_source_rebuilds_the_period_samples_on_and_goes_stale_when_prometheus_fails()
{
    let prometheus = FakePrometheus::start().await;
    let dir = tempfile::tempdir().unwrap();
    prometheus_rules(dir.path());
    let url = prometheus.url();
    let server = Server::start_with_env(
        dir.path(),
        "",
        &[
            ("SEVROUTE__SLO__PROMETHEUS_URL", url.as_str()),
            ("SEVROUTE__SLO__PROMETHEUS_INTERVAL_SECS", "1"),
        ],
    );
    let http = client();
    let db = wait_for_slo(&http, &server, "db", "db to read ok", |s| {
        s["state"] == "ok"
    })
    .await;
    // One error in ten events, objective 99%: burn 0.1 / 0.01 = 10 over
    // every window, and over the 30-day period, so the budget left is
    // 1 - 10 = -9.
    let burns = db["burns"].as_array().unwrap();
    assert_eq!(burns.len(), 6);
    for b in burns {
        assert_eq!(b["burn"]["state"], "ok", "{b}");
        assert_close(&b["burn"]["value"], 10.0);
    }
    assert_close(&db["budget_remaining"]["value"], -9.0);
    // The 3-day window holds 3 days of history at one event a second
    // (read back from query_range, not sampled since start): 259,200,
    // plus at most one 10-minute bucket at the window's old edge, less
    // the newest scrape's 10 s.
    let three_days = &burns[5];
    assert_eq!(three_days["window_secs"], 259_200);
    let total = three_days["counts"]["total"].as_u64().unwrap();
    assert!(
        (259_200 - 10..=259_200 + 600).contains(&total),
        "{total} events in 3 days"
    );
    // The history came coarse to fine, each range under Prometheus'
    // point limit.
    let ranges: Vec<HashMap<String, String>> = prometheus
        .requests()
        .into_iter()
        .filter(|r| r["path"] == "/api/v1/query_range" && r["query"] == "sum(total)")
        .collect();
    let steps: Vec<&str> = ranges.iter().map(|r| r["step"].as_str()).collect();
    assert_eq!(&steps[..4], ["3600", "600", "60", "10"], "{ranges:?}");
    for r in &ranges {
        let n = |k: &str| r[k].parse::<i64>().unwrap();
        assert!((n("end") - n("start")) / n("step") < 11_000, "{r:?}");
    }

    // Instant queries pin their time, the same for both expressions.
    let instants: Vec<HashMap<String, String>> = prometheus
        .requests()
        .into_iter()
        .filter(|r| r["path"] == "/api/v1/query")
        .collect();
    assert!(!instants.is_empty());
    assert!(
        instants.iter().all(|r| r.contains_key("time")),
        "{instants:?}"
    );

    // An expression with no series is stale, and says how to fix it.
    let typo = wait_for_slo(&http, &server, "typo", "typo to be stale", |s| {
        s["state"] == "stale"
    })
    .await;
    let reason = typo["stale"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("errors query \"sum(errros)\": the query returned no series"),
        "{reason}"
    );
    assert_eq!(typo["budget_remaining"]["state"], "stale");

    // The same on /metrics.
    let metrics = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let gauge = |series: &str| -> Value {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| json!(v.parse::<f64>().unwrap()))
            .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
    };
    assert_close(
        &gauge(r#"sevroute_slo_burn_rate{slo="db",window="1h"}"#),
        10.0,
    );
    assert_close(&gauge(r#"sevroute_slo_budget_remaining{slo="db"}"#), -9.0);
    assert_close(
        &gauge(r#"sevroute_slo_data_state{slo="typo",state="stale"}"#),
        1.0,
    );

    // Pushes to a prometheus SLO are refused.
    let resp = post(
        &http,
        &format!("{}/api/v1/slos/db/events", server.base),
        &json!({ "good": 1, "total": 1 }),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("reads its data from prometheus"),
        "{body}"
    );

    // Prometheus fails: the SLO is stale, not healthy, with the reason.
    prometheus.failing.store(true, Ordering::SeqCst);
    let db = wait_for_slo(&http, &server, "db", "db to be stale", |s| {
        s["state"] == "stale"
    })
    .await;
    let reason = db["stale"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("Prometheus refused the query (unavailable): the fake is down"),
        "{reason}"
    );
    assert!(
        db["burns"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["burn"]["state"] == "stale"),
        "{db:#}"
    );
    // Down for longer than three intervals, so the sampling has a gap.
    tokio::time::sleep(Duration::from_secs(4)).await;
    // And back: fresh again, the gap filled from query_range at the
    // finest step, the burn as before.
    let recovered_at = prometheus.requests().len();
    prometheus.failing.store(false, Ordering::SeqCst);
    let db = wait_for_slo(&http, &server, "db", "db to recover", |s| {
        s["state"] == "ok"
    })
    .await;
    assert_eq!(db["stale"], Value::Null);
    assert_close(&db["burns"][0]["burn"]["value"], 10.0);
    let after: Vec<HashMap<String, String>> = prometheus.requests()[recovered_at..].to_vec();
    assert!(
        after
            .iter()
            .any(|r| r["path"] == "/api/v1/query_range" && r["step"] == "10"),
        "no gap fill: {after:?}"
    );
    assert!(
        !after
            .iter()
            .any(|r| r.get("step").is_some_and(|s| s == "3600")),
        "a gap refetches only the gap, not the period: {after:?}"
    );
}
