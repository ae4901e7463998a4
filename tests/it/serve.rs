//! `sevroute serve` end to end: the real binary on 127.0.0.1:0 with a
//! temporary store, and a real webhook receiver on loopback. Every wait is
//! a bounded poll; nothing sleeps longer than it must.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use sevroute::deliver::signing::{DEFAULT_TOLERANCE, SignedHeaders, WebhookSecret, verify};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// One request the receiver got.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub(crate) path: String,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: Value,
    raw: Vec<u8>,
    answered: u16,
}

impl Received {
    pub(crate) fn kind(&self) -> &str {
        self.body["type"].as_str().unwrap_or("")
    }
}

/// A webhook receiver on loopback that records requests and answers with
/// a status the test sets.
pub(crate) struct Receiver {
    addr: std::net::SocketAddr,
    log: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
}

#[derive(Clone)]
struct ReceiverState {
    log: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
}

async fn record(
    State(state): State<ReceiverState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let status = state.status.load(Ordering::SeqCst);
    state.log.lock().unwrap().push(Received {
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw: body.to_vec(),
        answered: status,
    });
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    pub(crate) async fn start() -> Receiver {
        let log = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        let app = Router::new().fallback(record).with_state(ReceiverState {
            log: log.clone(),
            status: status.clone(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { addr, log, status }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (bounded) until `pred` holds for the requests received.
    async fn wait_for(&self, what: &str, pred: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.received();
            if pred(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; received: {got:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A running `sevroute serve` process; killed (SIGKILL) on drop.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
}

impl Server {
    pub(crate) fn start(dir: &Path, extra_config: &str) -> Server {
        Self::start_with_env(dir, extra_config, &[])
    }

    /// Starts with extra environment (`SEVROUTE__SECTION__KEY` settings).
    pub(crate) fn start_with_env(dir: &Path, extra_config: &str, env: &[(&str, &str)]) -> Server {
        Self::spawn(dir, extra_config, env, Stdio::inherit())
    }

    /// Starts logging at `info` into the file `log`, for tests that read
    /// the logs.
    pub(crate) fn start_logging_to(dir: &Path, extra_config: &str, log: &Path) -> Server {
        Self::start_logging_to_with_env(dir, extra_config, &[], log)
    }

    /// Starts with extra environment, its log (at `info`, as in
    /// production) written to `log` for the test to read.
    pub(crate) fn start_logging_to_with_env(
        dir: &Path,
        extra_config: &str,
        env: &[(&str, &str)],
        log: &Path,
    ) -> Server {
        let file = std::fs::File::create(log).unwrap();
        let mut env = env.to_vec();
        env.push(("SEVROUTE_LOG", "info"));
        Self::spawn(dir, extra_config, &env, Stdio::from(file))
    }

    fn spawn(dir: &Path, extra_config: &str, env: &[(&str, &str)], stderr: Stdio) -> Server {
        let config = dir.join("sevroute.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[server]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:9797"
[rules]
path = "{rules}"
[store]
path = "{store}"
[timers]
tick_ms = 50
slo_evaluation_secs = 1
[delivery]
backoff_initial_ms = 50
backoff_max_secs = 1
request_timeout_secs = 2
{extra_config}
"#,
                rules = dir.join("rules").display(),
                store = dir.join("data/sevroute.db").display(),
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sevroute"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("SEVROUTE_LOG", "error")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start sevroute serve");
        // The first line of stdout names the bound address.
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server {
            child,
            base: format!("http://{addr}"),
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    pub(crate) async fn terminate(mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "sevroute did not stop within 10s of SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(status.success(), "exit status {status}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) fn client() -> reqwest::Client {
    sevroute::deliver::install_crypto_provider();
    // No connection reuse: a server that refuses a body (413) closes the
    // connection, and a reused one would fail the next request.
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

pub(crate) fn write_rules(dir: &Path, text: &str) -> PathBuf {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("main.sev"), text).unwrap();
    rules
}

pub(crate) fn rules_for(receiver: &Receiver, severities: &str, group: &str) -> String {
    format!(
        r#"
destination "pd" webhook {{ url "{pd}" secret "{SECRET}" }}
destination "backup" webhook {{ url "{backup}" secret "{SECRET}" }}
destination "chat" webhook {{ url "{chat}" }}
{severities}
rule "critical" {{ when labels.severity == "critical" then SEV1 }}
rule "warning" {{ when labels.severity == "warning" then SEV2 }}
otherwise SEV3
{group}
"#,
        pd = receiver.url("/pd"),
        backup = receiver.url("/backup"),
        chat = receiver.url("/chat"),
    )
}

pub(crate) const SEVERITIES: &str = r#"
severity SEV1 { page "pd"; notify "chat"; ack timeout 1h escalate "backup" }
severity SEV2 { page "pd" }
severity SEV3 { notify "chat" }
"#;

pub(crate) fn alert(instance: &str, severity: &str) -> Value {
    json!({
        "labels": { "alertname": "HighErrorRate", "service": "checkout", "instance": instance, "severity": severity },
        "annotations": { "summary": "errors are high" },
        "generatorURL": "http://prometheus/graph"
    })
}

/// GET a JSON answer.
pub(crate) async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

pub(crate) async fn get_text(client: &reqwest::Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

pub(crate) async fn post(client: &reqwest::Client, url: &str, body: &Value) -> reqwest::Response {
    client.post(url).json(body).send().await.unwrap()
}

pub(crate) fn on(path: &str, got: &[Received]) -> Vec<Received> {
    got.iter().filter(|r| r.path == path).cloned().collect()
}

pub(crate) fn assert_signed(r: &Received) {
    let secret = WebhookSecret::parse(SECRET).unwrap();
    let headers = SignedHeaders::from_lookup(|name| r.headers.get(name).map(String::as_str));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    verify(&secret, &headers, &r.raw, now, DEFAULT_TOLERANCE).expect("the signature verifies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_alert_becomes_one_signed_page_and_an_escalation_pages_again() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_rules(
        dir.path(),
        &rules_for(
            &receiver,
            SEVERITIES,
            "group by service wait 0s interval 5m",
        ),
    );
    let server = Server::start(dir.path(), "");
    let http = client();
    let url = format!("{}/api/v2/alerts", server.base);

    let resp = post(&http, &url, &json!([alert("a", "warning")])).await;
    assert_eq!(resp.status(), 200);
    let got = receiver
        .wait_for("the first page", |g| on("/pd", g).len() == 1)
        .await;
    let page = &on("/pd", &got)[0];
    assert_signed(page);
    assert_eq!(page.kind(), "page");
    assert_eq!(page.body["incident"]["severity"], "SEV2");
    assert_eq!(
        page.headers["webhook-id"],
        page.body["id"].as_str().unwrap()
    );
    let explanation = page.body["explanation"].to_string();
    assert!(
        explanation.contains("SEV2 by rule \\\"warning\\\""),
        "{explanation}"
    );
    assert_eq!(page.body["alerts"][0]["labels"]["instance"], "a");

    // Prometheus re-sends firing alerts every evaluation: no second page.
    for _ in 0..3 {
        assert_eq!(
            post(&http, &url, &json!([alert("a", "warning")]))
                .await
                .status(),
            200
        );
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        on("/pd", &receiver.received()).len(),
        1,
        "a re-sent alert paged again"
    );

    // A critical alert joins: the incident escalates and pages at once.
    assert_eq!(
        post(&http, &url, &json!([alert("b", "critical")]))
            .await
            .status(),
        200
    );
    let got = receiver
        .wait_for("the escalation page", |g| {
            on("/pd", g).len() == 2 && !on("/chat", g).is_empty()
        })
        .await;
    let escalation = &on("/pd", &got)[1];
    assert_signed(escalation);
    assert_eq!(escalation.body["incident"]["severity"], "SEV1");
    assert_eq!(
        escalation.body["incident"]["id"],
        page.body["incident"]["id"]
    );
    assert!(
        escalation.body["reason"]
            .as_str()
            .unwrap()
            .starts_with("escalated from SEV2 to SEV1"),
        "{}",
        escalation.body["reason"]
    );
    assert_ne!(escalation.headers["webhook-id"], page.headers["webhook-id"]);
    // The chat destination has no secret: unsigned, but still identified.
    let chat = &on("/chat", &got)[0];
    assert!(chat.headers.contains_key("webhook-id"));
    assert!(!chat.headers.contains_key("webhook-signature"));

    let incidents: Value = get_json(
        &http,
        &format!("{}/api/v1/incidents?status=open", server.base),
    )
    .await;
    let list = incidents["incidents"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["severity"], "SEV1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cadence_reminders_ack_timeout_and_resolve_reach_the_receiver() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let severities = r#"
severity SEV1 { page "pd"; notify "chat"; cadence 1s; ack timeout 1s escalate "backup" }
severity SEV2 { page "pd" }
severity SEV3 { notify "chat" }
"#;
    write_rules(
        dir.path(),
        &rules_for(
            &receiver,
            severities,
            "group by service wait 0s interval 5m",
        ),
    );
    let server = Server::start(dir.path(), "");
    let http = client();
    let url = format!("{}/api/v2/alerts", server.base);
    assert_eq!(
        post(&http, &url, &json!([alert("a", "critical")]))
            .await
            .status(),
        200
    );

    let got = receiver
        .wait_for("a cadence reminder and the ack-timeout escalation", |g| {
            on("/chat", g).iter().any(|r| r.kind() == "update_due") && !on("/backup", g).is_empty()
        })
        .await;
    let escalation = &on("/backup", &got)[0];
    assert_eq!(escalation.kind(), "escalate");
    assert_signed(escalation);

    // Prometheus resolves by sending endsAt in the past.
    let mut resolved = alert("a", "critical");
    resolved["endsAt"] = json!("2020-01-01T00:00:00Z");
    resolved["startsAt"] = json!("2019-12-31T23:00:00Z");
    assert_eq!(post(&http, &url, &json!([resolved])).await.status(), 200);
    let got = receiver
        .wait_for("resolve events to everything paged", |g| {
            on("/pd", g).iter().any(|r| r.kind() == "resolve")
                && on("/backup", g).iter().any(|r| r.kind() == "resolve")
        })
        .await;
    let resolve = on("/pd", &got)
        .into_iter()
        .find(|r| r.kind() == "resolve")
        .unwrap();
    assert_eq!(resolve.body["incident"]["status"], "resolved");

    // Once resolved, reminders stop.
    let reminders = on("/chat", &receiver.received())
        .iter()
        .filter(|r| r.kind() == "update_due")
        .count();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = on("/chat", &receiver.received())
        .iter()
        .filter(|r| r.kind() == "update_due")
        .count();
    assert_eq!(
        reminders, later,
        "a resolved incident still sends reminders"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_after_accepting_loses_no_page_and_sends_none_twice() {
    let receiver = Receiver::start().await;
    // The receiver is failing: deliveries stay in the outbox, retried.
    receiver.status.store(503, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    write_rules(
        dir.path(),
        &rules_for(
            &receiver,
            SEVERITIES,
            "group by instance wait 0s interval 5m",
        ),
    );
    // A timeout after the receiver accepted would be retried and seen
    // twice (delivery is at least once); on a loaded machine 2 s is short,
    // and this test is about restarts, not timeouts.
    let slow_ok = [("SEVROUTE__DELIVERY__REQUEST_TIMEOUT_SECS", "20")];
    let mut server = Server::start_with_env(dir.path(), "", &slow_ok);
    let http = client();
    let url = format!("{}/api/v2/alerts", server.base);
    let batch = json!([
        alert("a", "critical"),
        alert("b", "warning"),
        alert("c", "critical")
    ]);
    assert_eq!(post(&http, &url, &batch).await.status(), 200);
    // Killed the moment the 200 arrives: whatever was acknowledged must
    // already be in the store.
    server.kill();

    // The receiver recovers; sevroute restarts on the same store.
    receiver.status.store(200, Ordering::SeqCst);
    let _server = Server::start_with_env(dir.path(), "", &slow_ok);
    let got = receiver
        .wait_for("all three pages delivered", |g| {
            let delivered: std::collections::BTreeSet<String> = on("/pd", g)
                .into_iter()
                .filter(|r| r.answered == 200)
                .map(|r| r.headers["webhook-id"].clone())
                .collect();
            delivered.len() == 3
        })
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let got = if got.len() == receiver.received().len() {
        got
    } else {
        receiver.received()
    };
    let mut accepted: BTreeMap<String, usize> = BTreeMap::new();
    for r in on("/pd", &got).iter().filter(|r| r.answered == 200) {
        *accepted.entry(r.headers["webhook-id"].clone()).or_default() += 1;
    }
    assert_eq!(accepted.len(), 3);
    assert!(
        accepted.values().all(|&n| n == 1),
        "a webhook-id was accepted twice: {accepted:?}"
    );
    // Retries kept their webhook-id: every attempt's id is one of the three.
    for r in on("/pd", &got) {
        assert!(
            accepted.contains_key(&r.headers["webhook-id"]),
            "unknown id {:?}",
            r.headers["webhook-id"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_status_and_leaves_the_store_as_it_was() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_rules(
        dir.path(),
        &rules_for(
            &receiver,
            SEVERITIES,
            "group by service wait 0s interval 5m",
        ),
    );
    let server = Server::start(
        dir.path(),
        "[auth]\ningest_token = \"ingest-secret\"\nadmin_token = \"admin-secret\"\n",
    );
    let http = client();
    let url = format!("{}/api/v2/alerts", server.base);
    let send = |body: String, content_type: &'static str, token: Option<&'static str>| {
        let mut req = http
            .post(&url)
            .header("content-type", content_type)
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let error_of = |v: &Value| {
        (
            v["error"]["code"].as_str().unwrap_or("").to_string(),
            v["error"]["details"].clone(),
        )
    };

    // 401: no token, or the admin token is not an ingest token.
    let ok_body = json!([alert("a", "critical")]).to_string();
    assert_eq!(
        send(ok_body.clone(), "application/json", None)
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        send(ok_body.clone(), "application/json", Some("admin-secret"))
            .await
            .unwrap()
            .status(),
        401
    );

    // 400: malformed JSON; a bad label name in the second alert names it.
    let resp = send("[{".into(), "application/json", Some("ingest-secret"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body = json!([alert("a", "critical"), { "labels": { "0bad": "x" } }]).to_string();
    let resp = send(body, "application/json", Some("ingest-secret"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let (code, details) = error_of(&resp.json().await.unwrap());
    assert_eq!(code, "invalid_alert");
    assert_eq!(details["index"], 1);
    assert_eq!(details["field"], "labels.0bad");

    // 415 and 413.
    let resp = send(ok_body.clone(), "text/plain", Some("ingest-secret"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let huge = json!([{ "labels": { "alertname": "x".repeat(5 * 1024 * 1024) } }]).to_string();
    let resp = send(huge, "application/json", Some("ingest-secret"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(error_of(&resp.json().await.unwrap()).0, "body_too_large");

    // Nothing of the refused batches was kept: no incident, no delivery.
    let list = |token: &'static str| {
        http.get(format!("{}/api/v1/incidents", server.base))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(
        list("ingest-secret").await.unwrap().status(),
        401,
        "an ingest token cannot read incidents"
    );
    let incidents: Value = list("admin-secret").await.unwrap().json().await.unwrap();
    assert_eq!(incidents["incidents"].as_array().unwrap().len(), 0);
    assert!(receiver.received().is_empty());

    // The good batch goes through; an ingest token cannot resolve it.
    assert_eq!(
        send(ok_body, "application/json", Some("ingest-secret"))
            .await
            .unwrap()
            .status(),
        200
    );
    let incidents: Value = list("admin-secret").await.unwrap().json().await.unwrap();
    let id = incidents["incidents"][0]["id"].as_i64().unwrap();
    let resolve = |token: &'static str, body: Value| {
        http.post(format!("{}/api/v1/incidents/{id}/resolve", server.base))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    assert_eq!(
        resolve("ingest-secret", json!({ "by": "ann" }))
            .await
            .unwrap()
            .status(),
        401
    );
    let resp = resolve("admin-secret", json!({})).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(error_of(&resp.json().await.unwrap()).1["field"], "by");
    assert_eq!(
        resolve("admin-secret", json!({ "by": "ann" }))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        resolve("admin-secret", json!({ "by": "ann" }))
            .await
            .unwrap()
            .status(),
        409
    );
    let missing = http
        .post(format!("{}/api/v1/incidents/999/ack", server.base))
        .bearer_auth("admin-secret")
        .json(&json!({ "by": "ann" }))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_refuses_a_broken_rule_set_and_keeps_the_running_one() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(
        dir.path(),
        &rules_for(
            &receiver,
            SEVERITIES,
            "group by service wait 0s interval 5m",
        ),
    );
    let server = Server::start(dir.path(), "");
    let http = client();
    std::fs::write(
        rules.join("main.sev"),
        "rule \"broken\" { when labels.x == then SEV1 }",
    )
    .unwrap();
    let resp = http
        .post(format!("{}/-/reload", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rules_refused");
    assert_eq!(body["error"]["details"]["diagnostics"][0]["code"], "E100");
    // The running rule set still routes.
    let url = format!("{}/api/v2/alerts", server.base);
    assert_eq!(
        post(&http, &url, &json!([alert("a", "warning")]))
            .await
            .status(),
        200
    );
    receiver
        .wait_for("a page under the old rules", |g| on("/pd", g).len() == 1)
        .await;
    // The worker counts a delivery just after the receiver answered: poll.
    let deadline = Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        let text = http
            .get(format!("{}/metrics", server.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains(r#"sevroute_deliveries_total{destination="pd",outcome="delivered"} 1"#)
            || Instant::now() > deadline
        {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        metrics.contains(r#"sevroute_rule_reloads_total{outcome="refused"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"sevroute_alerts_received_total{source="prometheus",outcome="accepted"} 1"#
        ),
        "{metrics}"
    );
    for expected in [
        r#"sevroute_classifications_total{severity="SEV2"} 1"#,
        r#"sevroute_incidents_open{severity="SEV2"} 1"#,
        "sevroute_rules_loaded_timestamp_seconds ",
        "sevroute_outbox_depth ",
        "sevroute_outbox_oldest_age_seconds ",
        r#"sevroute_deliveries_total{destination="pd",outcome="delivered"} 1"#,
        r#"sevroute_delivery_latency_seconds_count{destination="pd"} 1"#,
    ] {
        assert!(metrics.contains(expected), "missing {expected}: {metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_grafana_and_generic_payloads_open_incidents() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_rules(
        dir.path(),
        &rules_for(
            &receiver,
            SEVERITIES,
            "group by alertname wait 0s interval 5m",
        ),
    );
    let server = Server::start(dir.path(), "");
    let http = client();
    let read = |path: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };

    // Alertmanager's webhook: three critical alerts, one alertname.
    let am = read("../shared/fixtures/alertmanager-0.25-webhook-firing.json");
    let resp = post(
        &http,
        &format!("{}/api/v1/ingest/alertmanager", server.base),
        &am,
    )
    .await;
    assert_eq!(resp.status(), 200);
    // Grafana: two firing alert names (the third alert is resolved).
    let grafana = read("tests/fixtures/grafana-webhook.json");
    let resp = post(
        &http,
        &format!("{}/api/v1/ingest/grafana", server.base),
        &grafana,
    )
    .await;
    assert_eq!(resp.status(), 200);
    // The generic format.
    let generic = json!({ "alerts": [{ "labels": { "alertname": "DiskFull", "severity": "warning" }, "status": "firing" }] });
    let resp = post(
        &http,
        &format!("{}/api/v1/ingest/generic", server.base),
        &generic,
    )
    .await;
    assert_eq!(resp.status(), 200);

    let got = receiver
        .wait_for("a delivery for each incident", |g| {
            let ids: std::collections::BTreeSet<i64> = g
                .iter()
                .filter_map(|r| r.body["incident"]["id"].as_i64())
                .collect();
            ids.len() == 4
        })
        .await;
    let titles: std::collections::BTreeSet<String> = got
        .iter()
        .map(|r| r.body["incident"]["title"].as_str().unwrap().to_string())
        .collect();
    for name in [
        "HighErrorBudgetBurn",
        "High memory usage",
        "High CPU usage",
        "DiskFull",
    ] {
        assert!(
            titles.contains(name),
            "no incident titled {name}: {titles:?}"
        );
    }
    let am_page = got
        .iter()
        .find(|r| r.path == "/pd" && r.body["incident"]["title"] == "HighErrorBudgetBurn")
        .unwrap();
    assert_eq!(am_page.kind(), "page");
    assert_eq!(am_page.body["alerts"].as_array().unwrap().len(), 3);
    // Fingerprints match Alertmanager's own.
    let fingerprints: std::collections::BTreeSet<&str> = am_page.body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["fingerprint"].as_str().unwrap())
        .collect();
    let expected: std::collections::BTreeSet<&str> = am["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["fingerprint"].as_str().unwrap())
        .collect();
    assert_eq!(fingerprints, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_server_gracefully() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_rules(
        dir.path(),
        &rules_for(&receiver, SEVERITIES, "group by service wait 0s"),
    );
    let mut server = Server::start(dir.path(), "");
    let http = client();
    assert_eq!(
        http.get(format!("{}/readyz", server.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "sevroute did not stop within 10s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status}");
    // Nothing listens any more.
    assert!(
        http.get(format!("{}/healthz", server.base))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_ack_update_and_override_through_the_api() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let severities = r#"
severity SEV1 { page "pd"; notify "chat"; ack timeout 4s escalate "backup" }
severity SEV2 { page "pd" }
severity SEV3 { notify "chat"; cadence 1h }
"#;
    write_rules(
        dir.path(),
        &rules_for(
            &receiver,
            severities,
            "group by service wait 0s interval 5m",
        ),
    );
    let server = Server::start(dir.path(), "");
    let http = client();
    let url = format!("{}/api/v2/alerts", server.base);
    assert_eq!(
        post(&http, &url, &json!([alert("a", "info")]))
            .await
            .status(),
        200
    );
    receiver
        .wait_for("the SEV3 notification", |g| on("/chat", g).len() == 1)
        .await;
    let incidents: Value = get_json(&http, &format!("{}/api/v1/incidents", server.base)).await;
    let id = incidents["incidents"][0]["id"].as_i64().unwrap();
    let act = |action: &str, body: Value| {
        http.post(format!("{}/api/v1/incidents/{id}/{action}", server.base))
            .json(&body)
            .send()
    };

    // A status update is posted to the notify destinations.
    let resp = act(
        "updates",
        json!({ "by": "ann", "text": "rolling back the deploy" }),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let got = receiver
        .wait_for("the status update", |g| on("/chat", g).len() == 2)
        .await;
    assert_eq!(
        on("/chat", &got)[1].body["reason"],
        "status update from ann: rolling back the deploy"
    );

    // A person raises the severity: it pages at once and stays pinned.
    let resp = act(
        "severity",
        json!({ "by": "ann", "severity": "SEV1", "reason": "customers report errors" }),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    receiver
        .wait_for("the override's page", |g| on("/pd", g).len() == 1)
        .await;
    // Acknowledged within the ack timeout: no escalation to the backup.
    assert_eq!(
        act("ack", json!({ "by": "ann" })).await.unwrap().status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert!(
        on("/backup", &receiver.received()).is_empty(),
        "an acknowledged page escalated"
    );

    let detail: Value = get_json(&http, &format!("{}/api/v1/incidents/{id}", server.base)).await;
    assert_eq!(detail["incident"]["severity"], "SEV1");
    assert_eq!(detail["incident"]["pinned"], "SEV1");
    let kinds: Vec<&str> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "declared",
        "opened",
        "status_update",
        "severity_override",
        "escalated",
        "acknowledged",
    ] {
        assert!(kinds.contains(&kind), "timeline lacks {kind}: {kinds:?}");
    }
    let override_entry = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "severity_override")
        .unwrap();
    assert_eq!(override_entry["actor"], "ann");
    let deliveries = detail["deliveries"].as_array().unwrap();
    assert!(
        deliveries.iter().any(|d| d["destination"] == "pd"
            && d["action"] == "page"
            && d["status"] == "delivered")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_set_before_a_restart_fires_after_it() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The first page waits 2s for related alerts: a timer in the store.
    write_rules(
        dir.path(),
        &rules_for(
            &receiver,
            SEVERITIES,
            "group by service wait 2s interval 5m",
        ),
    );
    let mut server = Server::start(dir.path(), "");
    let http = client();
    let url = format!("{}/api/v2/alerts", server.base);
    assert_eq!(
        post(&http, &url, &json!([alert("a", "critical")]))
            .await
            .status(),
        200
    );
    server.kill();
    assert!(
        receiver.received().is_empty(),
        "paged before the group wait ended"
    );

    let _server = Server::start(dir.path(), "");
    let got = receiver
        .wait_for("the page after the restart", |g| on("/pd", g).len() == 1)
        .await;
    assert_eq!(on("/pd", &got)[0].body["incident"]["severity"], "SEV1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signing_secret_missing_from_the_environment_never_sends_unsigned() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let rules = format!(
        r#"
destination "pd" webhook {{ url "{pd}" secret env("SEVROUTE_TEST_NEVER_SET") }}
severity SEV1 {{ page "pd" }}
otherwise SEV1
group by service wait 0s
"#,
        pd = receiver.url("/pd")
    );
    write_rules(dir.path(), &rules);
    let server = Server::start(dir.path(), "");
    let http = client();
    let url = format!("{}/api/v2/alerts", server.base);
    assert_eq!(
        post(&http, &url, &json!([alert("a", "critical")]))
            .await
            .status(),
        200
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let detail = loop {
        let detail: Value = get_json(&http, &format!("{}/api/v1/incidents/1", server.base)).await;
        if detail["deliveries"][0]["status"] == "dead" || Instant::now() > deadline {
            break detail;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(detail["deliveries"][0]["status"], "dead", "{detail:#}");
    assert!(
        receiver.received().is_empty(),
        "an unsigned request went out"
    );
    // A wrong method gets the JSON error body too.
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_rules() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(
        dir.path(),
        &rules_for(&receiver, SEVERITIES, "group by instance wait 0s"),
    );
    let server = Server::start(dir.path(), "");
    let http = client();
    let url = format!("{}/api/v2/alerts", server.base);
    // Under the first rules, a "page" severity label is SEV3: a notification.
    assert_eq!(
        post(&http, &url, &json!([alert("a", "page")]))
            .await
            .status(),
        200
    );
    receiver
        .wait_for("the SEV3 notification", |g| on("/chat", g).len() == 1)
        .await;

    let text = rules_for(&receiver, SEVERITIES, "group by instance wait 0s").replace(
        r#"labels.severity == "critical""#,
        r#"labels.severity in ["critical", "page"]"#,
    );
    std::fs::write(rules.join("main.sev"), text).unwrap();
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    // The reload is asynchronous: post until the new rules classify.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut instance = 0;
    while on("/pd", &receiver.received()).is_empty() {
        assert!(Instant::now() < deadline, "the reloaded rules never paged");
        instance += 1;
        let body = json!([alert(&format!("b{instance}"), "page")]);
        assert_eq!(post(&http, &url, &body).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = &on("/pd", &receiver.received())[0];
    assert_eq!(page.body["incident"]["severity"], "SEV1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_sli_counts_raise_the_burn_and_the_incident_escalates() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let rules = format!(
        r#"
slo "api" {{ objective 99.9%; period 30d; source push }}
destination "pd" webhook {{ url "{pd}" secret "{SECRET}" }}
destination "chat" webhook {{ url "{chat}" }}
severity SEV1 {{ page "pd"; notify "chat" }}
severity SEV3 {{ notify "chat" }}
rule "fast burn" {{ when labels.service == "checkout" and burn("api", 5m) > 14.4 then SEV1 }}
otherwise SEV3
group by service wait 0s
"#,
        pd = receiver.url("/pd"),
        chat = receiver.url("/chat"),
    );
    write_rules(dir.path(), &rules);
    let server = Server::start(dir.path(), "");
    let http = client();
    // With no burn data yet the alert is SEV3: a notification, no page.
    let url = format!("{}/api/v2/alerts", server.base);
    assert_eq!(
        post(&http, &url, &json!([alert("a", "none")]))
            .await
            .status(),
        200
    );
    receiver
        .wait_for("the SEV3 notification", |g| on("/chat", g).len() == 1)
        .await;
    assert!(on("/pd", &receiver.received()).is_empty());

    // Every request failed in the last minute: burn 1000 over 5m.
    let events = format!("{}/api/v1/slos/api/events", server.base);
    let resp = post(&http, &events, &json!({ "good": 0, "total": 200 })).await;
    assert_eq!(resp.status(), 200);
    let got = receiver
        .wait_for("the escalation page", |g| on("/pd", g).len() == 1)
        .await;
    let page = &on("/pd", &got)[0];
    assert_signed(page);
    assert_eq!(page.body["incident"]["severity"], "SEV1");
    let reason = page.body["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("escalated from SEV3 to SEV1: SLO burn changed"),
        "{reason}"
    );
    assert!(
        page.body["explanation"]
            .to_string()
            .contains("burn(api, 5m) = 1000 > 14.4"),
        "{}",
        page.body["explanation"]
    );
    // The same rate, structured, for vendor formats and receivers.
    let burn = &page.body["burn"];
    assert_eq!(burn.as_array().map(Vec::len), Some(1), "{burn}");
    assert_eq!(burn[0]["slo"], "api");
    assert_eq!(burn[0]["window"], "5m");
    assert_eq!(burn[0]["window_secs"], 300);
    let rate = burn[0]["rate"].as_f64().unwrap();
    assert!((rate - 1000.0).abs() < 1e-6, "{rate}");

    let status: Value = get_json(&http, &format!("{}/api/v1/slos/api", server.base)).await;
    assert_eq!(status["slo"]["name"], "api");
    // Bad samples are refused by name; an unknown SLO is 404.
    let resp = post(&http, &events, &json!({ "good": 5, "total": 2 })).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_slo_event");
    let resp = post(&http, &events, &json!({ "total": 2 })).await;
    assert_eq!(resp.status(), 400);
    let resp = post(
        &http,
        &format!("{}/api/v1/slos/nope/events", server.base),
        &json!({ "good": 1, "total": 2 }),
    )
    .await;
    assert_eq!(resp.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_outlives_the_timeout_gets_408_and_commits_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_rules(
        dir.path(),
        &rules_for(&receiver, SEVERITIES, "group by service wait 0s"),
    );
    let server = Server::start_with_env(
        dir.path(),
        "",
        &[("SEVROUTE__SERVER__REQUEST_TIMEOUT_SECS", "1")],
    );
    // A body that promises 100 bytes and sends 10, then stalls.
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v2/alerts HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[{{\"labels\""
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 10s");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""code":"request_timeout""#), "{text}");
    let incidents: Value = get_json(&client(), &format!("{}/api/v1/incidents", server.base)).await;
    assert_eq!(incidents["incidents"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_string_the_endpoint_does_not_take_is_a_400_naming_it() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_rules(
        dir.path(),
        &rules_for(&receiver, SEVERITIES, "group by instance"),
    );
    let server = Server::start(dir.path(), "");
    let http = client();
    for (path, names) in [
        ("/api/v1/incidents?colour=red", "colour"),
        ("/api/v1/deliveries?limit=many", "limit"),
        ("/api/v1/deliveries?sinse=2026-11-27T00:00:00Z", "sinse"),
    ] {
        let resp = http
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_query", "{path}: {body}");
        assert!(body.to_string().contains(names), "{path}: {body}");
    }
    let resp = http
        .post(format!(
            "{}/api/v1/deliveries/retry?when=yesterday",
            server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}
