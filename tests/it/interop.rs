//! Interop with real peers: Debian's `prometheus` and
//! `prometheus-alertmanager`, unmodified, run as child processes on
//! loopback with their own temporary directories and free ports.
//!
//! - A real Prometheus with an always-firing rule lists sevroute under
//!   `alerting.alertmanagers` (API v2) and must cause exactly one signed
//!   page, however often it re-sends the alert.
//! - A real Prometheus, scraping counters from a loopback server every
//!   second, answers an SLO's `source prometheus` queries: the burn
//!   sevroute reports is the counters' by hand, and the SLO goes stale
//!   when Prometheus goes away.
//! - A real Alertmanager forwards to sevroute's webhook ingest
//!   (`webhook_configs`, `send_resolved`): an alert posted to Alertmanager
//!   becomes a signed page, and its resolve a resolve event.
//!
//! A test skips (with a `SKIP:` line) when its binary is missing, unless
//! `SEVROUTE_REQUIRE_INTEROP` is set (`.ci/run` sets it): then a missing
//! binary fails the test. `SEVROUTE_PROMETHEUS_BIN` and
//! `SEVROUTE_ALERTMANAGER_BIN` override the lookup (a path that does not
//! exist counts as "not installed"). Every wait is bounded and every peer
//! is killed on drop, on failure too.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::serve::{
    Received, Receiver, SEVERITIES, Server, assert_signed, client, get_json, on, rules_for,
    write_rules,
};

/// How long a peer may take to become ready, and an alert to travel from
/// a peer through sevroute to the receiver. Prometheus needs a few
/// seconds (its alertmanager discovery syncs every 5 s); the bound is for
/// a loaded CI machine.
const PEER_TIMEOUT: Duration = Duration::from_secs(60);

/// A peer program, found through [`find_binary`].
struct PeerBin {
    /// The Debian package (and program) name, for messages.
    name: &'static str,
    /// An environment variable that, when set, is the program's path and
    /// replaces the lookup.
    env: &'static str,
    /// Program names to look for on `PATH`, then in `/usr/bin`.
    candidates: &'static [&'static str],
}

const PROMETHEUS: PeerBin = PeerBin {
    name: "prometheus",
    env: "SEVROUTE_PROMETHEUS_BIN",
    candidates: &["prometheus"],
};

const ALERTMANAGER: PeerBin = PeerBin {
    name: "prometheus-alertmanager",
    env: "SEVROUTE_ALERTMANAGER_BIN",
    // Debian names it prometheus-alertmanager; upstream's tarball, alertmanager.
    candidates: &["prometheus-alertmanager", "alertmanager"],
};

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// The peer's path: `$env` if set (`None` when it is not an executable
/// file), else the first candidate on `PATH` or in `/usr/bin`.
fn find_binary(bin: &PeerBin) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(bin.env) {
        let path = PathBuf::from(path);
        return is_executable(&path).then_some(path);
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path_var)
        .chain([PathBuf::from("/usr/bin")])
        .collect();
    bin.candidates.iter().find_map(|name| {
        dirs.iter()
            .map(|dir| dir.join(name))
            .find(|p| is_executable(p))
    })
}

/// The peer's path, or `None` after printing why the test skips. Fails the
/// test instead when `SEVROUTE_REQUIRE_INTEROP` is set.
fn peer_or_skip(bin: &PeerBin) -> Option<PathBuf> {
    if let Some(path) = find_binary(bin) {
        return Some(path);
    }
    let required = std::env::var_os("SEVROUTE_REQUIRE_INTEROP").is_some_and(|v| !v.is_empty());
    let looked = match std::env::var_os(bin.env) {
        Some(path) => format!("${} = {path:?} is not an executable file", bin.env),
        None => format!("none of {:?} on PATH or in /usr/bin", bin.candidates),
    };
    assert!(
        !required,
        "{} not installed ({looked}) and SEVROUTE_REQUIRE_INTEROP is set: \
         apt-get install prometheus prometheus-alertmanager",
        bin.name
    );
    eprintln!(
        "SKIP: {} not installed (apt-get install prometheus prometheus-alertmanager); \
         set SEVROUTE_REQUIRE_INTEROP=1 to make this an error",
        bin.name
    );
    None
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HTTP client for talking to the peers: short timeout, no proxy.
fn peer_client() -> reqwest::Client {
    sevroute::deliver::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .unwrap()
}

/// A running peer process with its output in a log file; killed
/// (SIGKILL) on drop.
struct Peer {
    name: &'static str,
    child: Child,
    base: String,
    log: PathBuf,
}

impl Peer {
    /// Starts `bin` with `args(listen_address)` on a free loopback port and
    /// waits (bounded) until its `GET /-/ready` answers 200. A peer that
    /// exits because another process took the port in the meantime is
    /// started again on a new one.
    async fn start(
        name: &'static str,
        bin: &Path,
        dir: &Path,
        args: impl Fn(&str) -> Vec<String>,
    ) -> Peer {
        let http = peer_client();
        for attempt in 1..=3 {
            let addr = format!("127.0.0.1:{}", free_port());
            let log = dir.join(format!("{name}.{attempt}.log"));
            let out = std::fs::File::create(&log).unwrap();
            let child = Command::new(bin)
                .args(args(&addr))
                .current_dir(dir)
                .env_remove("HTTP_PROXY")
                .env_remove("HTTPS_PROXY")
                .env_remove("http_proxy")
                .env_remove("https_proxy")
                .env_remove("ALL_PROXY")
                .env_remove("all_proxy")
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("start {name} ({}): {e}", bin.display()));
            let mut peer = Peer {
                name,
                child,
                base: format!("http://{addr}"),
                log,
            };
            let deadline = Instant::now() + PEER_TIMEOUT;
            loop {
                if let Some(status) = peer.child.try_wait().unwrap() {
                    let log = peer.log_tail();
                    if log.contains("address already in use") && attempt < 3 {
                        break;
                    }
                    panic!("{name} exited ({status}) before it was ready; its log:\n{log}");
                }
                let ready = http.get(format!("{}/-/ready", peer.base)).send().await;
                if ready.is_ok_and(|r| r.status() == 200) {
                    return peer;
                }
                assert!(
                    Instant::now() < deadline,
                    "{name} not ready within {PEER_TIMEOUT:?}; its log:\n{}",
                    peer.log_tail()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The last lines of the peer's log, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The sum of a counter's samples in the peer's `/metrics`, over the
    /// samples whose label text contains `labels`.
    async fn counter(&self, http: &reqwest::Client, name: &str, labels: &str) -> f64 {
        let text = http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let rest = series.strip_prefix(name)?;
                (rest.is_empty() || rest.starts_with('{') && rest.contains(labels))
                    .then(|| value.parse::<f64>().ok())?
            })
            .sum()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (bounded by [`PEER_TIMEOUT`]) until the receiver's requests
/// satisfy `pred`; on timeout, fails with what arrived and the peer's log.
async fn wait_for(
    receiver: &Receiver,
    peer: &Peer,
    what: &str,
    pred: impl Fn(&[Received]) -> bool,
) -> Vec<Received> {
    let deadline = Instant::now() + PEER_TIMEOUT;
    loop {
        let got = receiver.received();
        if pred(&got) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {PEER_TIMEOUT:?} waiting for {what}; received: {:#?}\n{} log:\n{}",
            got.iter().map(|r| (&r.path, &r.body)).collect::<Vec<_>>(),
            peer.name,
            peer.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a webhook body carries an alert named `alertname`.
fn carries(r: &Received, alertname: &str) -> bool {
    r.body["alerts"]
        .as_array()
        .is_some_and(|alerts| alerts.iter().any(|a| a["labels"]["alertname"] == alertname))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_with_sevroute_as_its_alertmanager_pages_once() {
    let Some(bin) = peer_or_skip(&PROMETHEUS) else {
        return;
    };
    const ALERTNAME: &str = "SevrouteInteropAlwaysFiring";
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_rules(
        dir.path(),
        &rules_for(&receiver, SEVERITIES, "group by alertname wait 0s"),
    );
    let server = Server::start(dir.path(), "");
    let sevroute = server.base.strip_prefix("http://").unwrap();

    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let rule_file = prom_dir.join("alerts.yml");
    std::fs::write(
        &rule_file,
        format!(
            r#"groups:
  - name: sevroute-interop
    interval: 1s
    rules:
      - alert: {ALERTNAME}
        expr: vector(1)
        for: 0s
        labels:
          severity: critical
        annotations:
          summary: always firing
"#
        ),
    )
    .unwrap();
    let config = prom_dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            r#"global:
  evaluation_interval: 1s
rule_files:
  - {rules}
alerting:
  alertmanagers:
    - scheme: http
      api_version: v2
      timeout: 5s
      static_configs:
        - targets: ["{sevroute}"]
"#,
            rules = rule_file.display(),
        ),
    )
    .unwrap();
    let tsdb = prom_dir.join("tsdb");
    let prometheus = Peer::start("prometheus", &bin, &prom_dir, |addr| {
        vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", tsdb.display()),
            format!("--web.listen-address={addr}"),
            // Else generator URLs name the machine's hostname.
            format!("--web.external-url=http://{addr}/"),
            // Re-send firing alerts at every evaluation, each second
            // (default 1m; a delay equal to the interval would skip every
            // other one): the first send can precede alertmanager
            // discovery, and the re-sends exercise dedup.
            "--rules.alert.resend-delay=500ms".to_string(),
        ]
    })
    .await;

    let got = wait_for(
        &receiver,
        &prometheus,
        "a page for the Prometheus alert",
        |g| on("/pd", g).iter().any(|r| carries(r, ALERTNAME)),
    )
    .await;
    let page = &on("/pd", &got)[0];
    assert_signed(page);
    assert_eq!(page.kind(), "page");
    assert_eq!(page.body["incident"]["severity"], "SEV1");
    assert_eq!(page.body["incident"]["status"], "open");
    assert_eq!(
        page.headers["webhook-id"],
        page.body["id"].as_str().unwrap()
    );
    let alert = &page.body["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], ALERTNAME);
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["annotations"]["summary"], "always firing");
    assert_eq!(alert["status"], "firing");
    assert!(
        alert["generator_url"]
            .as_str()
            .is_some_and(|u| u.starts_with(&prometheus.base)),
        "{alert}"
    );

    // Prometheus keeps re-sending the firing alert: no second page.
    let http = peer_client();
    let am = format!("alertmanager=\"http://{sevroute}/api/v2/alerts\"");
    let sent = "prometheus_notifications_sent_total";
    let sent_at_page = prometheus.counter(&http, sent, &am).await;
    let deadline = Instant::now() + PEER_TIMEOUT;
    loop {
        let now = prometheus.counter(&http, sent, &am).await;
        if now >= sent_at_page + 3.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not re-send ({sent_at_page} then {now}); its log:\n{}",
            prometheus.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let pd = on("/pd", &receiver.received());
    assert_eq!(
        pd.len(),
        1,
        "a re-sent alert paged again: {:#?}",
        pd.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    let errors = prometheus
        .counter(&http, "prometheus_notifications_errors_total", &am)
        .await;
    assert_eq!(
        errors,
        0.0,
        "sevroute refused some of Prometheus's sends; its log:\n{}",
        prometheus.log_tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_alertmanager_forwards_a_page_and_its_resolve() {
    let Some(bin) = peer_or_skip(&ALERTMANAGER) else {
        return;
    };
    const ALERTNAME: &str = "SevrouteInteropForwarded";
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_rules(
        dir.path(),
        &rules_for(&receiver, SEVERITIES, "group by alertname wait 0s"),
    );
    let server = Server::start(dir.path(), "");

    let am_dir = dir.path().join("alertmanager");
    std::fs::create_dir_all(&am_dir).unwrap();
    let config = am_dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            r#"route:
  receiver: sevroute
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: sevroute
    webhook_configs:
      - url: {base}/api/v1/ingest/alertmanager
        send_resolved: true
"#,
            base = server.base,
        ),
    )
    .unwrap();
    let storage = am_dir.join("data");
    let alertmanager = Peer::start("alertmanager", &bin, &am_dir, |addr| {
        vec![
            format!("--config.file={}", config.display()),
            format!("--storage.path={}", storage.display()),
            format!("--web.listen-address={addr}"),
            // Empty: no clustering, so no gossip port and no peer wait.
            "--cluster.listen-address=".to_string(),
        ]
    })
    .await;

    // Post an alert to Alertmanager's own API v2, as Prometheus would.
    let http = peer_client();
    let alerts_url = format!("{}/api/v2/alerts", alertmanager.base);
    let starts_at = rfc3339(OffsetDateTime::now_utc() - time::Duration::minutes(5));
    let mut alert = json!({
        "labels": { "alertname": ALERTNAME, "severity": "critical", "service": "interop" },
        "annotations": { "summary": "forwarded by a real Alertmanager" },
        "startsAt": starts_at,
        "generatorURL": "http://prometheus.invalid/graph"
    });
    let resp = http
        .post(&alerts_url)
        .json(&json!([alert]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    let got = wait_for(
        &receiver,
        &alertmanager,
        "a page for the forwarded alert",
        |g| on("/pd", g).iter().any(|r| carries(r, ALERTNAME)),
    )
    .await;
    let page = on("/pd", &got)[0].clone();
    assert_signed(&page);
    assert_eq!(page.kind(), "page");
    assert_eq!(page.body["incident"]["severity"], "SEV1");
    let sent = &page.body["alerts"][0];
    assert_eq!(sent["labels"]["service"], "interop");
    assert_eq!(
        sent["annotations"]["summary"],
        "forwarded by a real Alertmanager"
    );
    assert_eq!(sent["generator_url"], "http://prometheus.invalid/graph");
    // sevroute's fingerprint is Alertmanager's.
    let listed: Value = http
        .get(&alerts_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed[0]["fingerprint"], sent["fingerprint"],
        "Alertmanager lists {listed}"
    );

    // Resolve it at Alertmanager (endsAt in the past); send_resolved
    // forwards the resolve, and sevroute resolves the incident.
    alert["endsAt"] = json!(rfc3339(
        OffsetDateTime::now_utc() - time::Duration::seconds(1)
    ));
    let resp = http
        .post(&alerts_url)
        .json(&json!([alert]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let got = wait_for(&receiver, &alertmanager, "the resolve event", |g| {
        on("/pd", g).iter().any(|r| r.kind() == "resolve")
    })
    .await;
    let pd = on("/pd", &got);
    let resolve = pd.iter().find(|r| r.kind() == "resolve").unwrap();
    assert_signed(resolve);
    assert_eq!(resolve.body["incident"]["id"], page.body["incident"]["id"]);
    assert_eq!(resolve.body["incident"]["status"], "resolved");
    assert_eq!(resolve.body["alerts"][0]["status"], "resolved");
    assert_eq!(
        pd.iter().filter(|r| r.kind() == "page").count(),
        1,
        "paged twice: {:#?}",
        pd.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    let failed = alertmanager
        .counter(
            &http,
            "alertmanager_notifications_failed_total",
            "integration=\"webhook\"",
        )
        .await;
    assert_eq!(
        failed,
        0.0,
        "sevroute refused some of Alertmanager's webhooks; its log:\n{}",
        alertmanager.log_tail()
    );
}

/// Polls an SLO's status (bounded by [`PEER_TIMEOUT`]) until `pred` holds
/// for it; on timeout, fails with the status and `log()`.
async fn wait_slo(
    http: &reqwest::Client,
    url: &str,
    what: &str,
    log: &dyn Fn() -> String,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + PEER_TIMEOUT;
    loop {
        let status = get_json(http, url).await;
        if pred(&status["slo"]) {
            return status["slo"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; status: {status:#}\nprometheus log:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Counters a real Prometheus scrapes: constant until `grow` is set, then
/// each scrape adds 10 errors and 100 events, for [`GROWTH_SCRAPES`]
/// scrapes, then constant again.
#[derive(Clone)]
struct ScrapedCounters {
    grow: Arc<AtomicBool>,
    grown: Arc<AtomicU64>,
}

const GROWTH_SCRAPES: u64 = 5;

async fn exposition(State(c): State<ScrapedCounters>) -> String {
    let grown = if c.grow.load(Ordering::SeqCst) {
        // Only Prometheus scrapes this path.
        let before = c
            .grown
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < GROWTH_SCRAPES).then_some(n + 1)
            })
            .unwrap_or(GROWTH_SCRAPES);
        (before + 1).min(GROWTH_SCRAPES)
    } else {
        0
    };
    format!(
        "# TYPE interop_errors_total counter\ninterop_errors_total {}\n\
         # TYPE interop_requests_total counter\ninterop_requests_total {}\n",
        7 + 10 * grown,
        1_000 + 100 * grown
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prometheus_slo_source_reads_burn_from_a_real_prometheus() {
    let Some(bin) = peer_or_skip(&PROMETHEUS) else {
        return;
    };
    let counters = ScrapedCounters {
        grow: Arc::new(AtomicBool::new(false)),
        grown: Arc::new(AtomicU64::new(0)),
    };
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(exposition))
        .with_state(counters.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let config = prom_dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            r#"global:
  scrape_interval: 1s
scrape_configs:
  - job_name: interop
    static_configs:
      - targets: ["{target}"]
"#
        ),
    )
    .unwrap();
    let tsdb = prom_dir.join("tsdb");
    let prometheus = Peer::start("prometheus", &bin, &prom_dir, |addr| {
        vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", tsdb.display()),
            format!("--web.listen-address={addr}"),
        ]
    })
    .await;

    write_rules(
        dir.path(),
        r#"
slo "interop" {
  objective 99%
  period    1d
  source    prometheus {
    errors "sum(interop_errors_total)"
    total  "sum(interop_requests_total)"
  }
}
destination "chat" webhook { url "http://127.0.0.1:9/chat" }
severity SEV3 { notify "chat" }
otherwise SEV3
"#,
    );
    let server = Server::start_with_env(
        dir.path(),
        "",
        &[
            ("SEVROUTE__SLO__PROMETHEUS_URL", prometheus.base.as_str()),
            ("SEVROUTE__SLO__PROMETHEUS_INTERVAL_SECS", "1"),
        ],
    );
    let http = client();
    let status_url = format!("{}/api/v1/slos/interop", server.base);
    let log = || prometheus.log_tail();
    // Until Prometheus has scraped, the SLO is stale (no series); then
    // the counters stand still: zero traffic, a baseline to grow from.
    wait_slo(
        &http,
        &status_url,
        "zero traffic from constant counters",
        &log,
        |s| s["state"] == "zero_traffic",
    )
    .await;
    counters.grow.store(true, Ordering::SeqCst);
    // 5 scrapes later: 50 errors in 500 events. Ratio 0.1, objective
    // 99%: burn 0.1 / 0.01 = 10 over every window.
    let slo = wait_slo(&http, &status_url, "the counters' growth", &log, |s| {
        s["burns"][0]["counts"]["total"] == 500
    })
    .await;
    assert_eq!(slo["state"], "ok", "{slo:#}");
    for b in slo["burns"].as_array().unwrap() {
        assert_eq!(b["counts"], json!({ "good": 450, "total": 500 }), "{b}");
        let burn = b["burn"]["value"].as_f64().unwrap();
        assert!((burn - 10.0).abs() < 1e-9, "{b}");
    }
    let left = slo["budget_remaining"]["value"].as_f64().unwrap();
    assert!((left - (1.0 - 10.0)).abs() < 1e-9, "{slo:#}");

    // Prometheus goes away: stale, not healthy.
    drop(prometheus);
    let gone = || "(stopped)".to_string();
    let slo = wait_slo(
        &http,
        &status_url,
        "stale once Prometheus is gone",
        &gone,
        |s| s["state"] == "stale",
    )
    .await;
    assert!(
        slo["stale"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("query \"sum(interop_")),
        "{slo:#}"
    );
}
