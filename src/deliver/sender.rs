//! One HTTP attempt to a destination: the async edge of the deliver stage.
//! [`WebhookSender::send_prepared`] sends a request a vendor format built
//! ([`PreparedRequest`]) and lets the format's classifier read the answer
//! ([`Reply`]: status, `Retry-After`, the start of the body) into an
//! outcome; [`WebhookSender::send`] is the Standard Webhooks case. Whatever
//! happens (a status, a timeout, a refused connection) becomes an
//! [`Attempt`]. It neither retries nor sleeps nor logs: the outbox worker
//! decides what to do with the attempt, and logs it under the
//! destination's name.
//!
//! Destination URLs may embed tokens (Slack, Discord and Teams webhook URLs
//! are bearer secrets), so nothing this module returns contains the URL or
//! the signing secret: transport errors are described without their URL,
//! and response excerpts are scrubbed of both and of every secret the
//! request names (routing keys, API keys).

use std::sync::Once;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use thiserror::Error;

use super::backoff::{Outcome, RetryPolicy, TransportFailure, classify_status, classify_transport};
use super::signing::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, WebhookSecret, sign};

/// Longest response excerpt kept, in bytes.
pub const EXCERPT_MAX_BYTES: usize = 512;

/// A sensible per-attempt timeout: the spec recommends 15 to 30 seconds
/// so receivers have time to answer; callers may pass another.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// The `user-agent` of every request: `sevroute/<crate version>`.
pub const USER_AGENT: &str = concat!("sevroute/", env!("CARGO_PKG_VERSION"));

/// What replaces a secret or URL found in an excerpt.
const REDACTED: &str = "[redacted]";

/// Why a sender could not be created.
#[derive(Debug, Error)]
pub enum SenderError {
    /// reqwest could not build its client (TLS setup failed).
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// One attempt's result, safe to log and to store with a dead letter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// What the attempt means for the delivery.
    pub outcome: Outcome,
    /// The HTTP status, when the receiver answered.
    pub status: Option<u16>,
    /// Time from starting the request to the outcome.
    pub elapsed: Duration,
    /// The start of the response body (or, without a response, what went
    /// wrong), at most [`EXCERPT_MAX_BYTES`] bytes, with the URL and secret
    /// replaced by `[redacted]`.
    pub response_excerpt: String,
    /// The response headers as `name: value` lines, at most
    /// [`EXCERPT_MAX_BYTES`] bytes, scrubbed as the excerpt is; empty
    /// without a response. Cookies are left out.
    pub response_headers: String,
}

/// Installs ring as rustls' process-wide crypto provider, once.
///
/// reqwest is built with `rustls-no-provider` (so that aws-lc-rs, a slow C
/// build, stays out of the tree) and panics when it builds a client with no
/// provider installed, even for plain `http://`. Safe to call any number of
/// times from any thread; a provider someone else installed first is kept.
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Err means a provider is already installed: exactly what we want.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Sends webhook requests over one shared connection pool.
#[derive(Clone, Debug)]
pub struct WebhookSender {
    client: reqwest::Client,
    policy: RetryPolicy,
}

impl WebhookSender {
    /// A sender whose `Retry-After` readings are clamped by `policy`.
    ///
    /// Redirects are not followed: the spec counts a 3xx as a failure
    /// ("update the webhook URL instead"), and following one would send the
    /// signed body, and any token in the URL's successor, somewhere the
    /// operator did not configure.
    pub fn new(policy: RetryPolicy) -> Result<WebhookSender, SenderError> {
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SenderError::Client(e.without_url()))?;
        Ok(WebhookSender { client, policy })
    }

    /// Posts `body` to `url` once, within `timeout` (connecting, sending and
    /// reading the answer's excerpt).
    ///
    /// Headers: `content-type: application/json`, `user-agent`,
    /// `webhook-id: msg_id`, `webhook-timestamp: timestamp` and, when
    /// `secret` is given, `webhook-signature` over exactly `body`. Without a
    /// secret the request goes unsigned but keeps the id and timestamp, so
    /// receivers can still dedupe.
    pub async fn send(
        &self,
        url: &str,
        secret: Option<&WebhookSecret>,
        msg_id: &str,
        timestamp: i64,
        body: &[u8],
        timeout: Duration,
    ) -> Attempt {
        let mut headers = vec![
            (HEADER_ID.to_string(), msg_id.to_string()),
            (HEADER_TIMESTAMP.to_string(), timestamp.to_string()),
        ];
        let mut secrets = Vec::new();
        if let Some(secret) = secret {
            headers.push((
                HEADER_SIGNATURE.to_string(),
                sign(secret, msg_id, timestamp, body),
            ));
            secrets.extend(secret.redaction_needles());
        }
        let request = PreparedRequest {
            method: Method::Post,
            url: url.to_string(),
            headers,
            body: body.to_vec(),
            secrets,
        };
        self.send_prepared(&request, timeout, |reply| {
            classify_status(reply.status, reply.retry_after)
        })
        .await
    }

    /// Sends a request a vendor format prepared, once, within `timeout`,
    /// and lets `classify` read the answer (status, `Retry-After`, the
    /// start of the body) into an [`Outcome`]. `content-type:
    /// application/json` and `user-agent` are always set. Transport
    /// failures are classified as for webhooks.
    pub async fn send_prepared(
        &self,
        request: &PreparedRequest,
        timeout: Duration,
        classify: impl FnOnce(&Reply) -> Outcome,
    ) -> Attempt {
        let started = Instant::now();
        let scrubber = Scrubber::new(&request.url, &request.secrets);

        let mut builder = match request.method {
            Method::Post => self.client.post(&request.url),
        }
        .timeout(timeout)
        .header(CONTENT_TYPE, "application/json");
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let result = builder.body(request.body.clone()).send().await;

        let mut response = match result {
            Ok(response) => response,
            Err(error) => {
                return Attempt {
                    outcome: classify_transport(transport_failure(&error)),
                    status: None,
                    elapsed: started.elapsed(),
                    response_excerpt: scrubber.excerpt(describe(error).as_bytes(), true),
                    response_headers: String::new(),
                };
            }
        };

        let status = response.status().as_u16();
        let headers: String = response
            .headers()
            .iter()
            .filter(|(name, _)| *name != reqwest::header::SET_COOKIE)
            .map(|(name, value)| format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())))
            .collect();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| self.policy.parse_retry_after(v, SystemTime::now()));
        // The status decides the outcome; a body that breaks off or times
        // out afterwards only shortens the excerpt.
        let (head, complete) = read_head(&mut response, scrubber.read_limit()).await;
        let reply = Reply {
            status,
            retry_after,
            body: head,
            complete,
        };
        Attempt {
            outcome: classify(&reply),
            status: Some(status),
            elapsed: started.elapsed(),
            response_excerpt: scrubber.excerpt(&reply.body, complete),
            response_headers: scrubber.excerpt(headers.as_bytes(), true),
        }
    }
}

/// The HTTP methods vendor APIs are called with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Every vendor call sevroute makes is a POST.
    Post,
}

/// A request ready to send: what a vendor format builds from a message.
///
/// `Debug` prints neither the URL nor the headers: both may carry secrets
/// (a Slack webhook token, a `GenieKey`).
#[derive(Clone, PartialEq, Eq)]
pub struct PreparedRequest {
    /// The method.
    pub method: Method,
    /// The full URL (it may embed a token).
    pub url: String,
    /// Headers besides `content-type` and `user-agent`.
    pub headers: Vec<(String, String)>,
    /// The exact body bytes.
    pub body: Vec<u8>,
    /// Secret strings besides the URL (keys, signing secrets) to scrub from
    /// anything the attempt returns.
    pub secrets: Vec<String>,
}

impl std::fmt::Debug for PreparedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedRequest")
            .field("method", &self.method)
            .field("url", &REDACTED)
            .field("headers", &self.headers.len())
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// What the receiver answered, for a vendor's classification. The body is
/// raw (unscrubbed): read it, never log it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The `Retry-After` header, parsed and clamped, when given.
    pub retry_after: Option<Duration>,
    /// The start of the body (a bounded read).
    pub body: Vec<u8>,
    /// Whether `body` is the whole body.
    pub complete: bool,
}

impl Reply {
    /// The body as text, trimmed (Slack answers `ok` or an error code).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim().to_string()
    }
}

/// Reads at most `limit` bytes of the body, then stops (dropping the
/// response closes the connection rather than draining a huge body).
/// Returns the bytes and whether they are the whole body.
async fn read_head(response: &mut reqwest::Response, limit: usize) -> (Vec<u8>, bool) {
    let mut head = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - head.len();
                if chunk.len() >= room {
                    head.extend_from_slice(&chunk[..room]);
                    return (head, false);
                }
                head.extend_from_slice(&chunk);
            }
            Ok(None) => return (head, true),
            // A body cut off by a reset or the timeout: what arrived is
            // still worth showing, but it is not the whole text.
            Err(_) => return (head, false),
        }
    }
}

fn transport_failure(error: &reqwest::Error) -> TransportFailure {
    // Timeout first: a connect timeout is both, and is a timeout to the
    // operator.
    if error.is_timeout() {
        TransportFailure::Timeout
    } else if error.is_connect() {
        TransportFailure::Connect
    } else if error.is_builder() {
        TransportFailure::InvalidRequest
    } else {
        TransportFailure::Other
    }
}

/// The error and its causes in one line, without the URL reqwest attaches
/// (the scrubber still runs over the result, for causes that quote it).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Removes a destination's sensitive strings from text bound for logs and
/// dead letters.
struct Scrubber {
    /// Longest first, so a whole URL is replaced before its parts.
    needles: Vec<String>,
}

impl Scrubber {
    fn new(url: &str, secrets: &[String]) -> Scrubber {
        let mut needles = vec![url.to_string()];
        if let Ok(parsed) = reqwest::Url::parse(url) {
            needles.push(parsed.as_str().to_string());
            if let Some((_, rest)) = parsed.as_str().split_once("://") {
                needles.push(rest.to_string());
            }
            if parsed.path().len() > 1 {
                needles.push(parsed.path().to_string());
            }
            needles.extend(parsed.query().map(str::to_string));
            needles.extend(parsed.password().map(str::to_string));
            // Tokens usually sit in path segments (Slack's
            // /services/T.../B.../<token>); short segments such as "hooks"
            // are left alone so excerpts stay readable.
            if let Some(segments) = parsed.path_segments() {
                needles.extend(segments.filter(|s| s.len() >= 8).map(str::to_string));
            }
        }
        needles.extend(secrets.iter().cloned());
        needles.retain(|n| n.len() >= 4);
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        needles.dedup();
        Scrubber { needles }
    }

    /// How many body bytes to read: enough that a needle starting inside
    /// the kept excerpt is seen whole, with room to spare for replacements
    /// shorter than what they replace.
    fn read_limit(&self) -> usize {
        2 * EXCERPT_MAX_BYTES + self.longest()
    }

    fn longest(&self) -> usize {
        self.needles.first().map_or(0, String::len)
    }

    /// Scrubs `raw`, then cuts to [`EXCERPT_MAX_BYTES`] at a character
    /// boundary. `complete` says whether `raw` is the whole text; when it
    /// is not, its last bytes may hold the start of a needle whose rest was
    /// never read, so output stops before any position where a needle
    /// could begin unseen. Scanning once (rather than `str::replace` per
    /// needle, then cutting) keeps that boundary exact: replacements change
    /// lengths and would pull an unseen fragment into the kept part.
    fn excerpt(&self, raw: &[u8], complete: bool) -> String {
        let safe_end = if complete {
            raw.len()
        } else {
            raw.len().saturating_sub(self.longest().saturating_sub(1))
        };
        let mut out = Vec::with_capacity(EXCERPT_MAX_BYTES);
        let mut i = 0;
        while i < safe_end && out.len() < EXCERPT_MAX_BYTES {
            let rest = &raw[i..];
            match self.needles.iter().find(|n| rest.starts_with(n.as_bytes())) {
                Some(needle) => {
                    out.extend_from_slice(REDACTED.as_bytes());
                    i += needle.len();
                }
                None => {
                    out.push(raw[i]);
                    i += 1;
                }
            }
        }
        let mut text = String::from_utf8_lossy(&out).into_owned();
        if text.len() > EXCERPT_MAX_BYTES {
            let mut cut = EXCERPT_MAX_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;

    use super::*;
    use crate::deliver::backoff::{RetryReason, TerminalReason};
    use crate::deliver::signing::{DEFAULT_TOLERANCE, SignedHeaders, verify};

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const TOKEN: &str = "T0k3nInTheUrl-9f8e7d6c5b4a";
    const MSG_ID: &str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
    const BODY: &[u8] = br#"{"version":1,"type":"page"}"#;
    const TIMEOUT: Duration = Duration::from_millis(1500);

    /// What the receiver answers next.
    enum Script {
        Reply {
            status: u16,
            headers: Vec<(&'static str, String)>,
            body: String,
        },
        /// Never answer (a receiver stuck on a slow backend).
        Hang,
    }

    fn reply(status: u16) -> Script {
        Script::Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    /// A request as the receiver saw it.
    struct Received {
        headers: HeaderMap,
        body: Bytes,
    }

    #[derive(Clone, Default)]
    struct Receiver {
        script: Arc<Mutex<VecDeque<Script>>>,
        seen: Arc<Mutex<Vec<Received>>>,
    }

    async fn handle(
        State(receiver): State<Receiver>,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        receiver
            .seen
            .lock()
            .unwrap()
            .push(Received { headers, body });
        let next = receiver.script.lock().unwrap().pop_front();
        match next {
            Some(Script::Reply {
                status,
                headers,
                body,
            }) => {
                let body = body.replace("{uri}", &uri.to_string());
                let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
                for (name, value) in headers {
                    response.headers_mut().insert(name, value.parse().unwrap());
                }
                response
            }
            Some(Script::Hang) => std::future::pending().await,
            None => StatusCode::OK.into_response(),
        }
    }

    /// Starts a receiver on 127.0.0.1:0 answering `script` in order; returns
    /// it and a URL carrying a token, as chat webhook URLs do.
    async fn start(script: Vec<Script>) -> (Receiver, String) {
        let receiver = Receiver {
            script: Arc::new(Mutex::new(script.into())),
            ..Receiver::default()
        };
        let app = Router::new()
            .route("/hooks/{token}", post(handle))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, format!("http://{addr}/hooks/{TOKEN}?key={TOKEN}"))
    }

    fn sender() -> WebhookSender {
        WebhookSender::new(RetryPolicy::default()).unwrap()
    }

    fn secret() -> WebhookSecret {
        WebhookSecret::parse(SECRET).unwrap()
    }

    fn now() -> i64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    async fn send_once(url: &str, timeout: Duration) -> Attempt {
        sender()
            .send(url, Some(&secret()), MSG_ID, now(), BODY, timeout)
            .await
    }

    fn assert_clean(attempt: &Attempt) {
        let shown = format!("{attempt:?}");
        assert!(!shown.contains(TOKEN), "token leaked: {shown}");
        assert!(
            !shown.contains("C2FVsBQIhrscChlQIMV"),
            "secret leaked: {shown}"
        );
        assert!(attempt.response_excerpt.len() <= EXCERPT_MAX_BYTES);
    }

    #[tokio::test]
    async fn signed_request_verifies_and_200_is_delivered() {
        let (receiver, url) = start(vec![Script::Reply {
            status: 200,
            headers: Vec::new(),
            body: "ok".to_string(),
        }])
        .await;
        let sent_at = now();
        let attempt = sender()
            .send(&url, Some(&secret()), MSG_ID, sent_at, BODY, TIMEOUT)
            .await;
        assert_eq!(attempt.outcome, Outcome::Delivered);
        assert_eq!(attempt.status, Some(200));
        assert_eq!(attempt.response_excerpt, "ok");
        assert!(attempt.elapsed < TIMEOUT);

        let seen = receiver.seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let request = &seen[0];
        assert_eq!(&request.body[..], BODY);
        let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(header("content-type"), Some("application/json"));
        assert_eq!(header("user-agent"), Some(USER_AGENT));
        assert_eq!(header("webhook-id"), Some(MSG_ID));
        assert_eq!(
            header("webhook-timestamp"),
            Some(sent_at.to_string().as_str())
        );
        let headers = SignedHeaders::from_lookup(header);
        assert_eq!(
            verify(&secret(), &headers, &request.body, now(), DEFAULT_TOLERANCE),
            Ok(())
        );
        // A different secret does not verify it.
        let other = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert!(verify(&other, &headers, &request.body, now(), DEFAULT_TOLERANCE).is_err());
    }

    #[tokio::test]
    async fn unsigned_request_keeps_id_and_timestamp() {
        let (receiver, url) = start(vec![reply(204)]).await;
        let attempt = sender()
            .send(&url, None, MSG_ID, 1_700_000_000, BODY, TIMEOUT)
            .await;
        assert_eq!(attempt.outcome, Outcome::Delivered);
        let seen = receiver.seen.lock().unwrap();
        let headers = &seen[0].headers;
        assert_eq!(headers.get("webhook-id").unwrap(), MSG_ID);
        assert_eq!(headers.get("webhook-timestamp").unwrap(), "1700000000");
        assert!(headers.get("webhook-signature").is_none());
    }

    #[tokio::test]
    async fn scripted_statuses_are_classified() {
        let (receiver, url) = start(vec![
            reply(503),
            Script::Reply {
                status: 429,
                headers: vec![("retry-after", "7".to_string())],
                body: String::new(),
            },
            reply(400),
            reply(410),
        ])
        .await;
        let s = sender();
        let mut outcomes = Vec::new();
        for _ in 0..4 {
            let attempt = s
                .send(&url, Some(&secret()), MSG_ID, now(), BODY, TIMEOUT)
                .await;
            assert_clean(&attempt);
            outcomes.push((attempt.status, attempt.outcome));
        }
        assert_eq!(
            outcomes,
            vec![
                (
                    Some(503),
                    Outcome::Retry {
                        after: None,
                        reason: RetryReason::Status(503)
                    }
                ),
                (
                    Some(429),
                    Outcome::Retry {
                        after: Some(Duration::from_secs(7)),
                        reason: RetryReason::Status(429)
                    }
                ),
                (
                    Some(400),
                    Outcome::Terminal {
                        reason: TerminalReason::Status(400)
                    }
                ),
                (
                    Some(410),
                    Outcome::Terminal {
                        reason: TerminalReason::Gone
                    }
                ),
            ]
        );
        // Every attempt of one message carries the same webhook-id.
        let seen = receiver.seen.lock().unwrap();
        assert_eq!(seen.len(), 4);
        assert!(
            seen.iter()
                .all(|r| r.headers.get("webhook-id").unwrap() == MSG_ID)
        );
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let (receiver, url) = start(vec![Script::Reply {
            status: 307,
            headers: vec![("location", "/hooks/elsewhere-entirely".to_string())],
            body: String::new(),
        }])
        .await;
        let attempt = send_once(&url, TIMEOUT).await;
        assert_eq!(
            attempt.outcome,
            Outcome::Terminal {
                reason: TerminalReason::Status(307)
            }
        );
        assert_eq!(receiver.seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn excerpt_is_bounded_and_scrubbed() {
        // The receiver echoes the request URI (token included) and the
        // secret, then pads far past the excerpt limit.
        let echo = format!(
            "no such hook {{uri}} (secret {SECRET}) {}",
            "é".repeat(2000)
        );
        let (_receiver, url) = start(vec![Script::Reply {
            status: 404,
            headers: Vec::new(),
            body: echo,
        }])
        .await;
        let attempt = send_once(&url, TIMEOUT).await;
        assert_eq!(attempt.status, Some(404));
        assert_clean(&attempt);
        assert!(
            attempt
                .response_excerpt
                .starts_with("no such hook [redacted]")
        );
        assert!(attempt.response_excerpt.contains("(secret [redacted])"));
        assert!(attempt.response_excerpt.len() > EXCERPT_MAX_BYTES - 2);
    }

    #[tokio::test]
    async fn closed_port_is_a_connection_error_to_retry() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url = format!("http://{addr}/hooks/{TOKEN}");
        let attempt = send_once(&url, TIMEOUT).await;
        assert_eq!(
            attempt.outcome,
            Outcome::Retry {
                after: None,
                reason: RetryReason::Connect
            }
        );
        assert_eq!(attempt.status, None);
        assert!(!attempt.response_excerpt.is_empty());
        assert_clean(&attempt);
    }

    #[tokio::test]
    async fn slow_receiver_times_out_to_retry() {
        let (receiver, url) = start(vec![Script::Hang]).await;
        let timeout = Duration::from_millis(300);
        let attempt = send_once(&url, timeout).await;
        assert_eq!(
            attempt.outcome,
            Outcome::Retry {
                after: None,
                reason: RetryReason::Timeout
            }
        );
        assert!(attempt.elapsed >= timeout);
        assert!(attempt.elapsed < TIMEOUT, "{:?}", attempt.elapsed);
        assert_eq!(receiver.seen.lock().unwrap().len(), 1);
        assert_clean(&attempt);
    }

    #[tokio::test]
    async fn invalid_url_or_id_is_terminal() {
        for (url, id) in [
            ("not a url", MSG_ID),
            ("http://127.0.0.1:9/hooks/x", "msg_bad\nid"),
        ] {
            let attempt = sender()
                .send(url, Some(&secret()), id, now(), BODY, TIMEOUT)
                .await;
            assert_eq!(
                attempt.outcome,
                Outcome::Terminal {
                    reason: TerminalReason::InvalidRequest
                },
                "{url:?} {id:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_prepared_request_sends_its_headers_and_never_leaks_its_secrets() {
        const KEY: &str = "GenieKeyValue-0123456789";
        let (receiver, url) = start(vec![Script::Reply {
            status: 422,
            headers: Vec::new(),
            body: format!("{{\"message\":\"bad key GenieKey {KEY} for {{uri}}\"}}"),
        }])
        .await;
        let request = PreparedRequest {
            method: Method::Post,
            url: url.clone(),
            headers: vec![("Authorization".into(), format!("GenieKey {KEY}"))],
            body: BODY.to_vec(),
            secrets: vec![KEY.to_string()],
        };
        let mut seen_body = String::new();
        let attempt = sender()
            .send_prepared(&request, TIMEOUT, |reply| {
                seen_body = reply.text();
                classify_status(reply.status, reply.retry_after)
            })
            .await;
        // The classifier reads the raw answer; the attempt shows it scrubbed.
        assert!(seen_body.contains(KEY), "{seen_body}");
        assert_eq!(
            attempt.outcome,
            Outcome::Terminal {
                reason: TerminalReason::Status(422)
            }
        );
        assert!(
            attempt
                .response_excerpt
                .starts_with("{\"message\":\"bad key GenieKey [redacted] for [redacted]"),
            "{}",
            attempt.response_excerpt
        );
        assert_clean(&attempt);
        assert!(!format!("{attempt:?}").contains(KEY));
        assert!(!format!("{request:?}").contains(KEY));
        assert!(!format!("{request:?}").contains(TOKEN));
        let seen = receiver.seen.lock().unwrap();
        assert_eq!(seen[0].headers["authorization"], format!("GenieKey {KEY}"));
        assert_eq!(seen[0].headers["content-type"], "application/json");
        assert!(seen[0].headers.get("webhook-signature").is_none());
    }

    #[test]
    fn crypto_provider_install_is_idempotent() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }

    #[test]
    fn scrubber_removes_url_parts_and_secret_forms() {
        let url = format!(
            "https://user:hunter2pass@hooks.example.com/services/T000/B000/{TOKEN}?sig={TOKEN}"
        );
        let scrubber = Scrubber::new(&url, &secret().redaction_needles());
        let text = format!(
            "a {url} b /services/T000/B000/{TOKEN} c {TOKEN} d hunter2pass e C2FVsBQIhrscChlQIMV+b5sSYspob7oD f"
        );
        let out = scrubber.excerpt(text.as_bytes(), true);
        assert!(!out.contains(TOKEN), "{out}");
        assert!(!out.contains("hunter2pass"), "{out}");
        assert!(!out.contains("C2FVsBQ"), "{out}");
        assert!(out.starts_with("a [redacted] b"), "{out}");
        assert!(out.ends_with(" f"), "{out}");
    }

    #[test]
    fn a_needle_cut_off_by_the_read_limit_never_leaks() {
        // Many long needles shrink to "[redacted]" and pull later text
        // forward; the token's first half at the very end of an incomplete
        // read must not be pulled into the excerpt.
        let url = format!("http://127.0.0.1/hooks/{TOKEN}");
        let scrubber = Scrubber::new(&url, &[]);
        let mut raw = url.repeat(40).into_bytes();
        raw.truncate(scrubber.read_limit() - TOKEN.len() / 2);
        raw.extend_from_slice(&TOKEN.as_bytes()[..TOKEN.len() / 2]);
        let out = scrubber.excerpt(&raw, false);
        assert!(!out.contains(&TOKEN[..TOKEN.len() / 2]), "{out}");
        assert!(out.len() <= EXCERPT_MAX_BYTES);
    }
}
