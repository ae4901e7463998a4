//! Every vendor destination kind end to end: the real `sevroute serve`
//! pages one destination of each kind, each pointed (through its `url`
//! setting) at a loopback receiver that answers as that vendor does; an
//! acknowledgement and a resolve through the API follow. The test checks
//! what each "vendor" received, that a Slack "channel_not_found" is a dead
//! letter after one attempt, and that Discord's `retry_after` is honoured.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sevroute::deliver::signing::{WebhookSecret, sign_github};

use crate::serve::{Server, get_text, write_rules};

const PD_KEY: &str = "pdRoutingKey0123456789abcdefABCD";
const OG_KEY: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const SLACK_TOKEN: &str = "SlackT0kenXXXXXXXXXXXXXX";
const DISCORD_TOKEN: &str = "DiscordT0kenYYYYYYYYYYYY";
const GITHUB_SECRET: &str = "It's a Secret to Everybody";

/// One request a "vendor" got.
#[derive(Clone, Debug)]
struct Got {
    path: String,
    query: String,
    headers: BTreeMap<String, String>,
    raw: Vec<u8>,
    body: Value,
    at: Instant,
}

#[derive(Clone, Default)]
struct Vendors {
    log: Arc<Mutex<Vec<Got>>>,
    /// Discord answers 429 with `retry_after` this many times first.
    discord_limited: Arc<Mutex<u32>>,
}

/// Answers as each vendor documents: PagerDuty 202 JSON, Opsgenie 202
/// JSON, Slack `ok` (or `channel_not_found` on the gone hook), Teams 202,
/// Discord 200 with the message (`?wait=true`) after an optional 429.
async fn answer(State(v): State<Vendors>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    v.log.lock().unwrap().push(Got {
        path: path.clone(),
        query: uri.query().unwrap_or("").to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        raw: body.to_vec(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        at: Instant::now(),
    });
    let json = |status: u16, value: Value| {
        (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/json")],
            value.to_string(),
        )
            .into_response()
    };
    if path.starts_with("/pd/") {
        json(
            202,
            json!({"status": "success", "message": "Event processed", "dedup_key": "x"}),
        )
    } else if path.starts_with("/og/") {
        json(
            202,
            json!({"result": "Request will be processed", "took": 0.1, "requestId": "r"}),
        )
    } else if path.starts_with("/slack-gone/") {
        (StatusCode::NOT_FOUND, "channel_not_found").into_response()
    } else if path.starts_with("/slack/") {
        (StatusCode::OK, "ok").into_response()
    } else if path.starts_with("/teams/") {
        StatusCode::ACCEPTED.into_response()
    } else if path.starts_with("/discord/") {
        let mut limited = v.discord_limited.lock().unwrap();
        if *limited > 0 {
            *limited -= 1;
            return json(
                429,
                json!({"message": "You are being rate limited.", "retry_after": 0.5, "global": false}),
            );
        }
        json(200, json!({"id": "1", "type": 0, "content": "x"}))
    } else {
        StatusCode::OK.into_response()
    }
}

impl Vendors {
    async fn start() -> (Vendors, String) {
        let vendors = Vendors {
            discord_limited: Arc::new(Mutex::new(1)),
            ..Vendors::default()
        };
        let app = Router::new().fallback(answer).with_state(vendors.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (vendors, format!("http://{addr}"))
    }

    fn got(&self) -> Vec<Got> {
        self.log.lock().unwrap().clone()
    }

    fn on(&self, prefix: &str) -> Vec<Got> {
        self.got()
            .into_iter()
            .filter(|g| g.path.starts_with(prefix))
            .collect()
    }

    /// Waits (bounded) until every prefix has received `n` requests.
    async fn wait_for(&self, what: &str, want: &[(&str, usize)]) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if want.iter().all(|(p, n)| self.on(p).len() >= *n) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; received: {:#?}",
                self.got()
                    .iter()
                    .map(|g| (&g.path, &g.body))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn rules(base: &str) -> String {
    format!(
        r#"
destination "pd" pagerduty {{ routing_key env("IT_PD_KEY") url "{base}/pd/v2/enqueue" }}
destination "og" opsgenie {{ api_key env("IT_OG_KEY") url "{base}/og" sev1 "P2" }}
destination "slack" slack {{ url "{base}/slack/services/T0/B0/{SLACK_TOKEN}" }}
destination "teams" teams {{ url "{base}/teams/workflows/abc" }}
destination "discord" discord {{ url "{base}/discord/api/webhooks/1/{DISCORD_TOKEN}" }}
destination "gh" webhook {{ url "{base}/hook" secret "{GITHUB_SECRET}" signature "github" }}
destination "gone" slack {{ url "{base}/slack-gone/services/T0/B0/{SLACK_TOKEN}" }}
severity SEV1 {{ page "pd", "og", "slack", "teams", "discord", "gh"; notify "gone" }}
rule "critical" {{ when labels.severity == "critical" then SEV1 }}
otherwise SEV1
group by service wait 0s interval 5m
"#
    )
}

fn client() -> reqwest::Client {
    sevroute::deliver::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_vendor_receives_its_documented_page_ack_and_resolve() {
    let (vendors, base) = Vendors::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_rules(dir.path(), &rules(&base));
    let log = dir.path().join("sevroute.log");
    let server = Server::start_logging_to_with_env(
        dir.path(),
        "",
        &[("IT_PD_KEY", PD_KEY), ("IT_OG_KEY", OG_KEY)],
        &log,
    );
    let http = client();
    let resp = http
        .post(format!("{}/api/v2/alerts", server.base))
        .json(&json!([{
            "labels": {"alertname": "CheckoutDown", "service": "checkout", "severity": "critical"},
            "annotations": {"summary": "checkout <is> down & out"},
            "generatorURL": "http://prometheus/graph?g0.expr=up&g0.tab=1"
        }]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Pages: one request per kind (Discord twice: a 429 first).
    vendors
        .wait_for(
            "the pages",
            &[
                ("/pd/", 1),
                ("/og/", 1),
                ("/slack/", 1),
                ("/teams/", 1),
                ("/discord/", 2),
                ("/hook", 1),
                ("/slack-gone/", 1),
            ],
        )
        .await;
    let incidents: Value = http
        .get(format!("{}/api/v1/incidents", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let incident = &incidents["incidents"][0];
    let id = incident["id"].as_i64().unwrap();
    let key = incident["key"].as_str().unwrap().to_string();
    let incident_url = format!("http://127.0.0.1:9797/api/v1/incidents/{id}");

    let pd = &vendors.on("/pd/")[0];
    assert_eq!(pd.path, "/pd/v2/enqueue");
    assert_eq!(pd.body["routing_key"], PD_KEY);
    assert_eq!(pd.body["event_action"], "trigger");
    assert_eq!(pd.body["dedup_key"], key.as_str());
    assert_eq!(pd.body["payload"]["severity"], "critical");
    assert_eq!(pd.body["payload"]["source"], "sevroute");
    assert_eq!(pd.body["payload"]["component"], "checkout");
    assert!(
        pd.body["payload"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("[SEV1] Page: ")
    );
    assert_eq!(pd.body["links"][0]["href"], incident_url.as_str());
    assert_eq!(
        pd.body["links"][1]["href"],
        "http://prometheus/graph?g0.expr=up&g0.tab=1"
    );

    let og = &vendors.on("/og/")[0];
    assert_eq!(og.path, "/og/v2/alerts");
    assert_eq!(og.headers["authorization"], format!("GenieKey {OG_KEY}"));
    assert_eq!(og.body["alias"], key.as_str());
    assert_eq!(og.body["priority"], "P2", "the sev1 setting overrides P1");
    assert!(og.body["message"].as_str().unwrap().chars().count() <= 130);

    let slack = &vendors.on("/slack/")[0];
    assert_eq!(slack.path, format!("/slack/services/T0/B0/{SLACK_TOKEN}"));
    assert_eq!(slack.body["blocks"][0]["type"], "header");
    assert!(
        slack.body["text"]
            .as_str()
            .unwrap()
            .starts_with("[SEV1] Page: ")
    );

    let teams = &vendors.on("/teams/")[0];
    assert_eq!(teams.body["type"], "message");
    assert_eq!(
        teams.body["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(
        teams.body["attachments"][0]["content"]["type"],
        "AdaptiveCard"
    );

    let discord = vendors.on("/discord/");
    assert_eq!(discord[0].query, "wait=true");
    assert_eq!(discord[0].body["allowed_mentions"], json!({"parse": []}));
    assert_eq!(
        discord[1].raw, discord[0].raw,
        "the retry sends the same body"
    );
    let waited = discord[1].at - discord[0].at;
    // Measured from the first request's arrival, not its start: allow for
    // the time the request took to arrive. Without retry_after the first
    // retry would come within the 50 ms backoff.
    assert!(
        waited >= Duration::from_millis(400),
        "retry_after 0.5 s was not honoured: {waited:?}"
    );

    let hook = &vendors.on("/hook")[0];
    assert_eq!(hook.body["type"], "page");
    let key_bytes = WebhookSecret::from_bytes(GITHUB_SECRET.as_bytes().to_vec()).unwrap();
    assert_eq!(
        hook.headers["x-hub-signature-256"],
        sign_github(&key_bytes, &hook.raw)
    );
    assert!(!hook.headers.contains_key("webhook-signature"));

    // Acknowledged through the API: every paged destination is told.
    let ack = http
        .post(format!("{}/api/v1/incidents/{id}/ack", server.base))
        .json(&json!({"by": "ann"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ack.status(), 200);
    vendors
        .wait_for(
            "the acknowledgements",
            &[
                ("/pd/", 2),
                ("/og/", 2),
                ("/slack/", 2),
                ("/teams/", 2),
                ("/discord/", 3),
                ("/hook", 2),
            ],
        )
        .await;
    let pd = &vendors.on("/pd/")[1];
    assert_eq!(
        pd.body,
        json!({"routing_key": PD_KEY, "event_action": "acknowledge", "dedup_key": key})
    );
    let og = &vendors.on("/og/")[1];
    let alias_path = reqwest::Url::parse("http://x/")
        .unwrap()
        .join(&key)
        .unwrap()
        .path()
        .to_string();
    assert_eq!(og.path, format!("/og/v2/alerts{alias_path}/acknowledge"));
    assert_eq!(og.query, "identifierType=alias");
    assert!(
        og.body["note"]
            .as_str()
            .unwrap()
            .contains("acknowledged by ann")
    );
    assert!(
        vendors.on("/slack/")[1].body["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("Acknowledged")
    );
    assert_eq!(vendors.on("/hook")[1].body["type"], "acknowledge");
    assert_eq!(vendors.on("/hook")[1].body["reason"], "acknowledged by ann");

    // Resolved: PagerDuty resolves, Opsgenie closes, chats say so.
    let resolve = http
        .post(format!("{}/api/v1/incidents/{id}/resolve", server.base))
        .json(&json!({"by": "ann", "reason": "rolled back"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resolve.status(), 200);
    vendors
        .wait_for(
            "the resolves",
            &[
                ("/pd/", 3),
                ("/og/", 3),
                ("/slack/", 3),
                ("/teams/", 3),
                ("/discord/", 4),
                ("/hook", 3),
            ],
        )
        .await;
    assert_eq!(vendors.on("/pd/")[2].body["event_action"], "resolve");
    assert!(vendors.on("/og/")[2].path.ends_with("/close"));
    assert_eq!(vendors.on("/hook")[2].body["type"], "resolve");
    let teams = &vendors.on("/teams/")[2];
    assert_eq!(
        teams.body["attachments"][0]["content"]["body"][1]["facts"][1]["value"],
        "resolved"
    );

    // The gone Slack hook got each message once, never a retry (a dead
    // letter that disables the destination), and the metrics count it
    // without its token.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let gone = vendors.on("/slack-gone/");
    assert!(!gone.is_empty());
    for (i, a) in gone.iter().enumerate() {
        assert!(
            gone[i + 1..].iter().all(|b| b.raw != a.raw),
            "a message to the gone hook was retried"
        );
    }
    let metrics = get_text(&http, &format!("{}/metrics", server.base)).await;
    let dead = metrics
        .lines()
        .find(|l| {
            l.contains("deliveries_total")
                && l.contains(r#"destination="gone""#)
                && l.contains(r#"outcome="dead""#)
        })
        .unwrap_or_else(|| panic!("no dead letters for \"gone\" in\n{metrics}"));
    assert!(!dead.ends_with(" 0"), "{dead}");
    // Nor in the log (at info, as in production: it reports the gone
    // hook), nor in what the deliveries API shows of every attempt.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("gone"),
        "the disabled hook is not in the log:\n{logged}"
    );
    let deliveries = get_text(
        &http,
        &format!("{}/api/v1/deliveries?limit=100", server.base),
    )
    .await;
    let mut details = String::new();
    let listed: Value = serde_json::from_str(&deliveries).unwrap();
    for d in listed["deliveries"].as_array().unwrap() {
        let one = get_text(
            &http,
            &format!("{}/api/v1/deliveries/{}", server.base, d["id"]),
        )
        .await;
        details.push_str(&one);
    }
    assert!(details.contains("attempt_log"), "{details}");
    for secret in [PD_KEY, OG_KEY, SLACK_TOKEN, DISCORD_TOKEN, GITHUB_SECRET] {
        assert!(!metrics.contains(secret), "a secret is in the metrics");
        assert!(
            !logged.contains(secret),
            "{secret} is in the log:\n{logged}"
        );
        assert!(
            !deliveries.contains(secret),
            "{secret} is in the deliveries list"
        );
        assert!(
            !details.contains(secret),
            "{secret} is in a delivery's attempts"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_word_messages_and_a_failing_one_still_delivers_the_builtin_words() {
    let (vendors, base) = Vendors::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_rules(
        dir.path(),
        &format!(
            r#"
destination "worded" slack {{
  url "{base}/slack/services/T0/B0/worded"
  title "{{{{ incident.severity }}}} on {{{{ incident.title | upper }}}}"
  title_sev2 "never used: this page is SEV1"
}}
destination "broken" slack {{
  url "{base}/slack/services/T0/B0/broken"
  title "{{{{ incident.title.nope.deeper }}}}"
}}
severity SEV1 {{ page "worded", "broken" }}
otherwise SEV1
group by service wait 0s
"#
        ),
    );
    let server = Server::start(dir.path(), "");
    let http = client();
    let resp = http
        .post(format!("{}/api/v2/alerts", server.base))
        .json(&json!([{"labels": {"alertname": "CheckoutDown", "service": "checkout"}}]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    vendors.wait_for("both pages", &[("/slack/", 2)]).await;
    let text_to = |hook: &str| -> String {
        let got = vendors.on("/slack/");
        let page = got.iter().find(|g| g.path.ends_with(hook)).unwrap();
        page.body["text"].as_str().unwrap().to_string()
    };
    // Slack's fallback text: the title line, then the built-in body.
    let worded = text_to("/worded");
    assert_eq!(
        worded.lines().next(),
        Some("SEV1 on CHECKOUTDOWN (SERVICE=CHECKOUT)"),
        "{worded}"
    );
    assert!(
        text_to("/broken").starts_with("[SEV1] Page: CheckoutDown"),
        "{}",
        text_to("/broken")
    );
    let metrics = get_text(&http, &format!("{}/metrics", server.base)).await;
    assert!(
        metrics.contains("sevroute_template_failures_total{destination=\"broken\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("sevroute_template_failures_total{destination=\"worded\"}"));
}
