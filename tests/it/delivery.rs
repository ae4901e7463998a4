//! Delivery under faults, end to end: the real `sevroute serve` against a
//! fault-injecting loopback receiver that answers each path from a script
//! (5xx bursts, 429 with Retry-After, 400, 410, slow answers past the
//! timeout). Every wait is bounded.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::serve::{Server, alert, client, get_json, post, write_rules};

/// How the receiver answers one request.
#[derive(Clone, Debug)]
struct Reply {
    status: u16,
    retry_after: Option<&'static str>,
    delay: Duration,
}

fn reply(status: u16) -> Reply {
    Reply {
        status,
        retry_after: None,
        delay: Duration::ZERO,
    }
}

/// One request received.
#[derive(Clone, Debug)]
struct Hit {
    path: String,
    webhook_id: String,
    body: Value,
    at: Instant,
}

#[derive(Clone, Default)]
struct Script {
    /// Replies to use first, by path, in order.
    queued: Arc<Mutex<HashMap<String, VecDeque<Reply>>>>,
    /// The reply once the queue is empty, by path (200 when unset).
    default: Arc<Mutex<HashMap<String, Reply>>>,
    hits: Arc<Mutex<Vec<Hit>>>,
}

async fn answer(
    State(script): State<Script>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    script.hits.lock().unwrap().push(Hit {
        path: path.clone(),
        webhook_id: headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        at: Instant::now(),
    });
    let next = script
        .queued
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    let reply = next
        .or_else(|| script.default.lock().unwrap().get(&path).cloned())
        .unwrap_or(reply(200));
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    // The answer quotes the request path, as some receivers' errors do:
    // a token in the URL must not reach a dead letter through it.
    let mut response = (
        StatusCode::from_u16(reply.status).unwrap(),
        format!(r#"{{"echo":"receiver says no","path":"{path}"}}"#),
    )
        .into_response();
    if let Some(after) = reply.retry_after {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static(after));
    }
    response
}

/// A loopback receiver whose answers the test scripts per path.
struct FaultReceiver {
    addr: std::net::SocketAddr,
    script: Script,
}

impl FaultReceiver {
    async fn start() -> FaultReceiver {
        let script = Script::default();
        let app = Router::new().fallback(answer).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FaultReceiver { addr, script }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn queue(&self, path: &str, replies: Vec<Reply>) {
        self.script
            .queued
            .lock()
            .unwrap()
            .insert(path.to_string(), replies.into());
    }

    fn always(&self, path: &str, reply: Reply) {
        self.script
            .default
            .lock()
            .unwrap()
            .insert(path.to_string(), reply);
    }

    fn hits(&self, path: &str) -> Vec<Hit> {
        self.script
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == path)
            .cloned()
            .collect()
    }

    /// Waits (bounded) until `path` has at least `n` requests.
    async fn wait_hits(&self, path: &str, n: usize, within: Duration) -> Vec<Hit> {
        let deadline = Instant::now() + within;
        loop {
            let hits = self.hits(path);
            if hits.len() >= n {
                return hits;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {n} requests on {path}; got {}",
                hits.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Rules with a page destination, a backup, and a chat-like destination
/// (given `chat_settings`), all webhooks on the receiver.
fn rules(receiver: &FaultReceiver, chat_settings: &str, severity: &str) -> String {
    format!(
        r#"
destination "pd" webhook {{ url "{pd}" }}
destination "backup" webhook {{ url "{backup}" }}
destination "chat" webhook {{ url "{chat}" {chat_settings} }}
{severity}
otherwise SEV1
group by instance wait 0s
"#,
        pd = receiver.url("/pd"),
        backup = receiver.url("/backup"),
        chat = receiver.url("/chat"),
    )
}

const PAGE_NOTIFY_FALLBACK: &str =
    r#"severity SEV1 { page "pd"; notify "chat"; fallback "backup" }"#;

/// Polls `GET url` (bounded) until `pred` holds for the answer.
async fn poll_json(http: &reqwest::Client, url: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = get_json(http, url).await;
        if pred(&got) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "timed out polling {url}: {got:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn start(dir: &Path, receiver: &FaultReceiver, chat: &str, severity: &str, extra: &str) -> Server {
    write_rules(dir, &rules(receiver, chat, severity));
    Server::start(dir, &format!("min_penalty_secs = 0\n{extra}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_arrive_on_time_while_a_chat_destination_is_slow_and_failing() {
    let receiver = FaultReceiver::start().await;
    // The chat answers 503 after 1.5 s: slow and failing, every time.
    receiver.always(
        "/chat",
        Reply {
            delay: Duration::from_millis(1500),
            ..reply(503)
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &receiver,
        "",
        r#"severity SEV1 { page "pd"; notify "chat" }"#,
        "workers = 4\n",
    );
    let http = client();
    let url = format!("{}/api/v2/alerts", server.base);
    // Six incidents, one after another: each owes a page and a chat
    // message; the chat's retries pile up behind its two slots.
    for i in 0..6 {
        let sent = Instant::now();
        let resp = post(
            &http,
            &url,
            &json!([alert(&format!("host-{i}"), "critical")]),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let pages = receiver
            .wait_hits("/pd", i + 1, Duration::from_secs(5))
            .await;
        let late = pages[i].at.saturating_duration_since(sent);
        assert!(
            late < Duration::from_millis(1000),
            "page {i} took {late:?} while the chat was failing"
        );
    }
    // The chat was tried, and never with more than its two slots at once.
    assert!(!receiver.hits("/chat").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_page_fails_over_to_the_fallback_after_the_configured_attempts() {
    let receiver = FaultReceiver::start().await;
    receiver.always("/pd", reply(503));
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &receiver,
        "",
        PAGE_NOTIFY_FALLBACK,
        "page_failover_attempts = 3\nbreaker_failures = 0\n",
    );
    let http = client();
    let resp = post(
        &http,
        &format!("{}/api/v2/alerts", server.base),
        &json!([alert("db-1", "critical")]),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let backup = receiver
        .wait_hits("/backup", 1, Duration::from_secs(10))
        .await;
    let pd = receiver.hits("/pd");
    assert_eq!(pd.len(), 3, "three attempts, then the failover");
    assert!(pd.iter().all(|h| h.webhook_id == pd[0].webhook_id));
    assert_eq!(backup[0].webhook_id, format!("{}_fo", pd[0].webhook_id));
    assert_eq!(
        backup[0].body, pd[0].body,
        "the fallback gets the same message"
    );
    assert_eq!(backup[0].body["type"], "page");

    let failed = get_json(
        &http,
        &format!("{}/api/v1/deliveries?status=failed_over", server.base),
    )
    .await;
    let original = &failed["deliveries"][0];
    assert_eq!(original["destination"], "pd");
    assert_eq!(original["attempts"], 3);
    let all = poll_json(
        &http,
        &format!("{}/api/v1/deliveries?status=delivered", server.base),
        |v| {
            v["deliveries"]
                .as_array()
                .is_some_and(|a| a.iter().any(|d| d["destination"] == "backup"))
        },
    )
    .await;
    let copy = all["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["destination"] == "backup")
        .unwrap();
    assert_eq!(copy["failover_of"], original["id"]);
    let incident = get_json(
        &http,
        &format!(
            "{}/api/v1/incidents/{}",
            server.base, original["incident_id"]
        ),
    )
    .await;
    let timeline = incident["timeline"].to_string();
    assert!(timeline.contains("failed_over"), "{timeline}");
    assert!(
        timeline.contains(r#"failed over to \"backup\""#),
        "{timeline}"
    );

    // Resolving the incident closes the fallback's alert too, after its page.
    let resp = post(
        &http,
        &format!(
            "{}/api/v1/incidents/{}/resolve",
            server.base, original["incident_id"]
        ),
        &json!({"by": "ann"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let backup = receiver
        .wait_hits("/backup", 2, Duration::from_secs(10))
        .await;
    assert_eq!(backup[1].body["type"], "resolve");
    assert!(
        backup[1].webhook_id.ends_with("_fo"),
        "{}",
        backup[1].webhook_id
    );
    assert!(
        receiver
            .hits("/pd")
            .iter()
            .any(|h| h.body["type"] == "resolve")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_5xx_timeouts_and_429_are_retried_until_delivered() {
    let receiver = FaultReceiver::start().await;
    receiver.queue("/pd", vec![reply(500), reply(502), reply(503), reply(200)]);
    // A 429 asking for a second, then an answer slower than the 2 s
    // request timeout, then success.
    receiver.queue(
        "/chat",
        vec![
            Reply {
                retry_after: Some("1"),
                ..reply(429)
            },
            Reply {
                delay: Duration::from_millis(2500),
                ..reply(200)
            },
            reply(200),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &receiver,
        "",
        r#"severity SEV1 { page "pd"; notify "chat" }"#,
        "",
    );
    let http = client();
    let resp = post(
        &http,
        &format!("{}/api/v2/alerts", server.base),
        &json!([alert("web-1", "critical")]),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let pd = receiver.wait_hits("/pd", 4, Duration::from_secs(10)).await;
    assert!(pd.iter().all(|h| h.webhook_id == pd[0].webhook_id));
    let chat = receiver
        .wait_hits("/chat", 3, Duration::from_secs(15))
        .await;
    let waited = chat[1].at - chat[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 was honoured, waited {waited:?}"
    );
    let delivered = poll_json(
        &http,
        &format!("{}/api/v1/deliveries?status=delivered", server.base),
        |v| v["deliveries"].as_array().is_some_and(|a| a.len() == 2),
    )
    .await;
    let chat_delivery = delivered["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["destination"] == "chat")
        .unwrap()
        .clone();
    let detail = get_json(
        &http,
        &format!("{}/api/v1/deliveries/{}", server.base, chat_delivery["id"]),
    )
    .await;
    let outcomes: Vec<&str> = detail["delivery"]["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, vec!["http_429", "timeout", "delivered"]);
    let first = &detail["delivery"]["attempt_log"][0];
    assert!(
        first["response_headers"]
            .as_str()
            .unwrap()
            .contains("retry-after: 1"),
        "{first:#}"
    );
    assert_eq!(
        first["response_excerpt"],
        r#"{"echo":"receiver says no","path":"[redacted]"}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_is_a_dead_letter_that_replays_with_the_same_webhook_id() {
    let receiver = FaultReceiver::start().await;
    receiver.queue("/pd", vec![reply(400)]);
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &receiver,
        "",
        r#"severity SEV1 { page "pd" }"#,
        "",
    );
    let http = client();
    let before = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    let resp = post(
        &http,
        &format!("{}/api/v2/alerts", server.base),
        &json!([alert("api-1", "critical"), alert("api-2", "critical")]),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let dead = poll_json(
        &http,
        &format!("{}/api/v1/deliveries?status=dead", server.base),
        |v| v["deliveries"].as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;
    let letter = &dead["deliveries"][0];
    assert_eq!(letter["attempts"], 1, "a 400 is not retried");
    assert_eq!(letter["last_http_status"], 400);
    assert_eq!(letter["request"]["body"]["type"], "page");
    let first = receiver.hits("/pd");
    let dead_id = letter["webhook_id"].as_str().unwrap().to_string();
    assert!(first.iter().any(|h| h.webhook_id == dead_id));

    // Replayed through the API: the receiver sees the same webhook-id.
    let url = format!("{}/api/v1/deliveries/{}/retry", server.base, letter["id"]);
    let resp = http.post(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let hits = receiver.wait_hits("/pd", 3, Duration::from_secs(5)).await;
    assert_eq!(hits[2].webhook_id, dead_id);
    // Retrying what is not dead is refused.
    let resp = http.post(&url).send().await.unwrap();
    assert_eq!(resp.status(), 409);

    // And through the CLI: make one more dead letter, list, retry --since.
    receiver.queue("/pd", vec![reply(422)]);
    let resp = post(
        &http,
        &format!("{}/api/v2/alerts", server.base),
        &json!([alert("api-3", "critical")]),
    )
    .await;
    assert_eq!(resp.status(), 200);
    poll_json(
        &http,
        &format!("{}/api/v1/deliveries?status=dead", server.base),
        |v| v["deliveries"].as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sevroute"))
            .arg("deliveries")
            .args(args)
            .args(["--url", &server.base])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, listed) = cli(&["list", "--status", "dead"]);
    assert_eq!(code, Some(0), "{listed}");
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(listed.contains("http_422"), "{listed}");
    let since = before
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (code, out) = cli(&["retry", "--since", &since]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("requeued 1 deliveries"), "{out}");
    let hits = receiver.wait_hits("/pd", 5, Duration::from_secs(5)).await;
    assert_eq!(hits[4].webhook_id, hits[3].webhook_id);
    let (code, _) = cli(&["retry", "--since", "yesterday"]);
    assert_eq!(code, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_disables_the_destination_until_re_enabled_and_no_secret_is_logged() {
    let receiver = FaultReceiver::start().await;
    receiver.always("/chat/T0KENSECRET123", reply(410));
    let dir = tempfile::tempdir().unwrap();
    let rules = format!(
        r#"
destination "pd" webhook {{ url "{pd}" }}
destination "backup" webhook {{ url "{backup}" }}
destination "chat" webhook {{ url "{chat}" secret "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD" }}
{PAGE_NOTIFY_FALLBACK}
otherwise SEV1
group by instance wait 0s
"#,
        pd = receiver.url("/pd"),
        backup = receiver.url("/backup"),
        chat = receiver.url("/chat/T0KENSECRET123"),
    );
    write_rules(dir.path(), &rules);
    let log = dir.path().join("server.log");
    let server = Server::start_logging_to(dir.path(), "min_penalty_secs = 0\n", &log);
    let http = client();
    let alerts = format!("{}/api/v2/alerts", server.base);
    let resp = post(&http, &alerts, &json!([alert("q-1", "critical")])).await;
    assert_eq!(resp.status(), 200);
    // The chat's 410 disables it; its message goes to the fallback.
    let backup = receiver
        .wait_hits("/backup", 1, Duration::from_secs(10))
        .await;
    assert_eq!(backup[0].body["type"], "notify");
    let disabled = get_json(
        &http,
        &format!("{}/api/v1/destinations/disabled", server.base),
    )
    .await;
    assert_eq!(disabled["disabled"][0]["name"], "chat");
    let metrics = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"sevroute_destination_disabled{destination="chat"} 1"#),
        "{metrics}"
    );
    // While disabled, nothing more goes to it.
    let resp = post(&http, &alerts, &json!([alert("q-2", "critical")])).await;
    assert_eq!(resp.status(), 200);
    receiver
        .wait_hits("/backup", 2, Duration::from_secs(10))
        .await;
    assert_eq!(receiver.hits("/chat/T0KENSECRET123").len(), 1);
    // Re-enabled through the API, it is sent to again.
    receiver.always("/chat/T0KENSECRET123", reply(200));
    let resp = http
        .post(format!("{}/api/v1/destinations/chat/enable", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = post(&http, &alerts, &json!([alert("q-3", "critical")])).await;
    assert_eq!(resp.status(), 200);
    receiver
        .wait_hits("/chat/T0KENSECRET123", 2, Duration::from_secs(10))
        .await;

    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("disabled"),
        "the disable is logged: {logged}"
    );
    for secret in ["T0KENSECRET123", "C2FVsBQIhrscChlQIMV"] {
        assert!(
            !logged.contains(secret),
            "{secret} leaked into the logs:\n{logged}"
        );
    }
    let all = get_json(
        &http,
        &format!("{}/api/v1/deliveries?limit=50", server.base),
    )
    .await;
    let moved = all["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        // Newest first: the last is the chat's first message, the one sent.
        .rfind(|d| d["status"] == "failed_over")
        .expect("the chat's first message was sent, then failed over");
    let detail = get_json(
        &http,
        &format!("{}/api/v1/deliveries/{}", server.base, moved["id"]),
    )
    .await;
    let attempt = &detail["delivery"]["attempt_log"][0];
    assert_eq!(attempt["outcome"], "gone");
    assert_eq!(attempt["http_status"], 410);
    assert!(
        attempt["response_excerpt"]
            .as_str()
            .unwrap()
            .contains(r#""path":"[redacted]""#),
        "{attempt:#}"
    );
    for answer in [all.to_string(), detail.to_string()] {
        assert!(!answer.contains("T0KENSECRET123"), "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_spaces_one_destination_and_delays_no_other() {
    let receiver = FaultReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &receiver,
        "rate 2 burst 1",
        r#"severity SEV1 { page "pd"; notify "chat" }"#,
        "",
    );
    let http = client();
    let alerts: Vec<Value> = (0..4)
        .map(|i| alert(&format!("r-{i}"), "critical"))
        .collect();
    let sent = Instant::now();
    let resp = post(
        &http,
        &format!("{}/api/v2/alerts", server.base),
        &json!(alerts),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let pages = receiver.wait_hits("/pd", 4, Duration::from_secs(5)).await;
    let last_page = pages[3].at.saturating_duration_since(sent);
    assert!(
        last_page < Duration::from_millis(1000),
        "pages took {last_page:?}"
    );
    let chat = receiver
        .wait_hits("/chat", 4, Duration::from_secs(10))
        .await;
    // Two a second: one token every 500 ms, so the four go out over at
    // least 1.5 s. Arrival times carry each request's own transit delay,
    // which on a loaded machine can bunch two neighbours; the span of all
    // four cannot shrink by more than one such delay.
    let span = chat[3].at - chat[0].at;
    assert!(
        span >= Duration::from_millis(1200),
        "four chat requests within {span:?}: {:?}",
        chat.windows(2)
            .map(|p| p[1].at - p[0].at)
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_stops_sending_to_a_failing_destination() {
    let receiver = FaultReceiver::start().await;
    receiver.always("/chat", reply(503));
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &receiver,
        "",
        r#"severity SEV1 { page "pd"; notify "chat" }"#,
        "breaker_failures = 2\nbreaker_cooldown_secs = 60\n",
    );
    let http = client();
    let resp = post(
        &http,
        &format!("{}/api/v2/alerts", server.base),
        &json!([alert("c-1", "critical"), alert("c-2", "critical")]),
    )
    .await;
    assert_eq!(resp.status(), 200);
    receiver.wait_hits("/chat", 2, Duration::from_secs(5)).await;
    receiver.wait_hits("/pd", 2, Duration::from_secs(5)).await;
    let metrics = || async {
        http.get(format!("{}/metrics", server.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // The circuit opens at the second failure. The first delivery's
    // retry (full jitter: 0-50 ms after its failure) may have gone out
    // before the second's failure was counted; nothing goes once it is
    // open. What was in flight then lands within the grace below.
    let open = r#"sevroute_circuit_state{destination="chat"} 1"#;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !metrics().await.contains(open) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the circuit never opened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = receiver.hits("/chat").len();
    assert!(sent == 2 || sent == 3, "{sent} requests to chat");
    // Backoff alone would retry within a second (50 ms doubling to 1 s);
    // the open circuit holds everything for the 60 s cooldown.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.hits("/chat").len(), sent);
    let metrics = metrics().await;
    assert!(metrics.contains(open), "{metrics}");
    assert!(
        metrics.contains(&format!(
            r#"sevroute_delivery_failures_total{{destination="chat",kind="webhook",reason="http_503"}} {sent}"#
        )),
        "{metrics}"
    );
}
