//! The `prometheus` SLI source's task: the I/O half of
//! [`crate::slo::prometheus`]. Every `slo.prometheus_interval_secs` it
//! samples each `source prometheus` SLO's `errors` and `total` expressions
//! with `/api/v1/query` and hands the increases to the router. The first
//! time it sees an SLO (at start, or when its period or expressions
//! change) it rebuilds the SLO's whole period with `/api/v1/query_range`,
//! so a restart forgets nothing Prometheus still holds; after a gap (a
//! failed Prometheus, a slow loop) it fills the gap the same way before
//! sampling on, so the gap's events land in the buckets they happened in
//! instead of in one burst.
//!
//! Both expressions are evaluated at the same `time` (sevroute's clock),
//! so they read the same scrape. Anything that keeps a sample from being
//! read — no URL, a refused, failed or timed-out query, an empty or
//! non-scalar answer (Prometheus answers nothing for a series it has not
//! scraped within its lookback, or marked stale after a failed scrape), an
//! answer older than the staleness bound (a caching proxy in front of
//! Prometheus) — marks the SLO stale at once (never zero errors), and the
//! next try of that SLO backs off: the interval, doubling per failure up
//! to [`MAX_BACKOFF`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::config::SloSettings;
use crate::deliver::sender::USER_AGENT;
use crate::pipeline::{Clock, Pipeline, PipelineError, SourceUpdate};
use crate::rules::{RuleSet, SloSource};
use crate::slo::EngineConfig;
use crate::slo::prometheus::{
    AnswerError, CounterChain, Point, RangeQuery, check_fresh, join, parse_instant, parse_range,
    plan_history,
};

/// The longest wait between tries of a failing SLO.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The largest answer read from Prometheus: a range query at the point
/// limit is well under 1 MiB.
const MAX_ANSWER_BYTES: usize = 32 << 20;

/// The source task's settings and handles.
pub struct PrometheusSource {
    client: reqwest::Client,
    /// Base URL without credentials; `None` when `slo.prometheus_url` is
    /// not set.
    base: Option<reqwest::Url>,
    /// Basic auth taken out of the URL.
    auth: Option<(String, Option<String>)>,
    interval: Duration,
    timeout: Duration,
    stale_after_secs: u64,
    engine: EngineConfig,
    ruleset: Arc<ArcSwap<RuleSet>>,
    pipeline: Pipeline,
    clock: Arc<dyn Clock>,
}

/// What the task remembers of one SLO between samples.
struct Tracked {
    /// Period and expressions: a change rebuilds the history.
    definition: (u64, String, String),
    chain: CounterChain,
    /// The time up to which the history has been read; `None` until the
    /// whole period has been.
    synced_to: Option<i64>,
    failures: u32,
    retry_at: Option<tokio::time::Instant>,
}

/// Which of an SLO's two expressions a query is for, in messages.
#[derive(Clone, Copy)]
enum Which {
    Errors,
    Total,
}

impl Which {
    fn as_str(self) -> &'static str {
        match self {
            Which::Errors => "errors",
            Which::Total => "total",
        }
    }
}

impl PrometheusSource {
    /// The task, not yet running. Fails only if the HTTP client cannot be
    /// built.
    pub fn new(
        settings: &SloSettings,
        engine: EngineConfig,
        ruleset: Arc<ArcSwap<RuleSet>>,
        pipeline: Pipeline,
        clock: Arc<dyn Clock>,
    ) -> Result<PrometheusSource, reqwest::Error> {
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(settings.prometheus_timeout())
            .build()
            .map_err(reqwest::Error::without_url)?;
        let (base, auth) = match settings
            .prometheus_url
            .as_deref()
            .and_then(|u| reqwest::Url::parse(u).ok())
        {
            Some(mut url) => {
                let auth = (!url.username().is_empty()).then(|| {
                    (
                        url.username().to_string(),
                        url.password().map(str::to_string),
                    )
                });
                let _ = url.set_username("");
                let _ = url.set_password(None);
                (Some(url), auth)
            }
            None => (None, None),
        };
        Ok(PrometheusSource {
            client,
            base,
            auth,
            interval: settings.prometheus_interval(),
            timeout: settings.prometheus_timeout(),
            stale_after_secs: settings.prometheus_stale_after_secs,
            engine,
            ruleset,
            pipeline,
            clock,
        })
    }

    /// Samples every interval until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut tracked: HashMap<String, Tracked> = HashMap::new();
        if self.base.is_none()
            && self
                .ruleset
                .load()
                .slos
                .iter()
                .any(|s| matches!(s.source, SloSource::Prometheus { .. }))
        {
            tracing::warn!(
                "slo.prometheus_url is not set: every SLO with source prometheus reads as stale."
            );
        }
        loop {
            // A shutdown does not wait for a round of queries to finish:
            // what it would read is Prometheus' to give again at start.
            tokio::select! {
                polled = self.poll_all(&mut tracked) => {
                    if polled.is_err() {
                        return;
                    }
                }
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                }
            }
        }
    }

    /// One round over the declared prometheus SLOs; `Err` once the
    /// router stopped.
    async fn poll_all(&self, tracked: &mut HashMap<String, Tracked>) -> Result<(), ()> {
        let ruleset = self.ruleset.load_full();
        let slos: Vec<(String, (u64, String, String))> = ruleset
            .slos
            .iter()
            .filter_map(|s| match &s.source {
                SloSource::Prometheus { errors, total } => Some((
                    s.name.clone(),
                    (s.period_secs, errors.clone(), total.clone()),
                )),
                _ => None,
            })
            .collect();
        tracked.retain(|name, _| slos.iter().any(|(n, _)| n == name));
        for (name, definition) in slos {
            let t = tracked.entry(name.clone()).or_insert_with(|| Tracked {
                definition: definition.clone(),
                chain: CounterChain::default(),
                synced_to: None,
                failures: 0,
                retry_at: None,
            });
            if t.definition != definition {
                *t = Tracked {
                    definition,
                    chain: CounterChain::default(),
                    synced_to: None,
                    failures: 0,
                    retry_at: None,
                };
            }
            if t.retry_at
                .is_some_and(|at| tokio::time::Instant::now() < at)
            {
                continue;
            }
            let update = self.poll(t).await;
            // Any other error is an SLO a reload just removed: nothing to do.
            if let Err(PipelineError::Stopped) = self.pipeline.update_slo_source(name, update).await
            {
                return Err(());
            }
        }
        Ok(())
    }

    /// Reads one SLO: history when it is missing or has a gap, then the
    /// current sample. On failure the SLO goes stale and backs off.
    async fn poll(&self, t: &mut Tracked) -> SourceUpdate {
        let now = self.clock.now().unix_timestamp();
        let update = self.read(t, now).await;
        match &update.stale {
            None => {
                t.failures = 0;
                t.retry_at = None;
            }
            Some(reason) => {
                t.failures = t.failures.saturating_add(1);
                t.retry_at = Some(tokio::time::Instant::now() + self.backoff(t.failures));
                // A missing URL is said once, at start, not at every try.
                if self.base.is_some() {
                    tracing::warn!(reason = %reason, "A prometheus SLO source could not be read; its data is stale.");
                }
            }
        }
        update
    }

    /// The wait before the next try after `failures` failures in a row.
    fn backoff(&self, failures: u32) -> Duration {
        let doubled = self
            .interval
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        doubled.min(MAX_BACKOFF).max(self.interval)
    }

    /// History (when missing or after a gap), then the current sample.
    /// History read is kept even when the current sample then fails, so a
    /// failing expression does not refetch the whole period at each try.
    async fn read(&self, t: &mut Tracked, now: i64) -> SourceUpdate {
        let replace = t.synced_to.is_none();
        let stale = |replace, records, reason| SourceUpdate {
            replace,
            records,
            stale: Some(reason),
            valid_until: None,
        };
        let Some(base) = &self.base else {
            return stale(
                false,
                Vec::new(),
                "slo.prometheus_url is not set".to_string(),
            );
        };
        let (period, errors, total) = t.definition.clone();
        let mut records = Vec::new();
        let gap = self.interval.as_secs().saturating_mul(3).max(1) as i64;
        let from = match t.synced_to {
            None => Some(now - period as i64),
            Some(synced) if now - synced > gap => Some(synced),
            Some(_) => None,
        };
        if let Some(from) = from {
            // On a copy, kept only if every range succeeds: a failed read
            // must not move the baseline past events never handed over.
            let mut chain = if replace {
                CounterChain::default()
            } else {
                t.chain
            };
            for q in plan_history(&self.engine.layout(period), from, now) {
                let ranges = tokio::try_join!(
                    self.range(base, Which::Errors, &errors, q),
                    self.range(base, Which::Total, &total, q),
                );
                let (e, tot) = match ranges {
                    Ok(ranges) => ranges,
                    Err(reason) => return stale(false, Vec::new(), reason),
                };
                for (at, e, tot) in join(&e, &tot) {
                    records.extend(chain.push(at, e, tot));
                }
            }
            t.chain = chain;
            t.synced_to = Some(now);
        }
        // Both at the same instant, so both read the same scrape: two
        // evaluations a scrape apart would pair counters that disagree.
        let sample = tokio::try_join!(
            self.instant(base, Which::Errors, &errors, now),
            self.instant(base, Which::Total, &total, now),
        )
        .and_then(|(e, tot)| {
            for (which, expr, p) in [(Which::Errors, &errors, e), (Which::Total, &total, tot)] {
                check_fresh(p.at, now, self.stale_after_secs)
                    .map_err(|err| describe(which, expr, &err.to_string()))?;
            }
            Ok((e, tot))
        });
        let (e, tot) = match sample {
            Ok(sample) => sample,
            Err(reason) => return stale(replace, records, reason),
        };
        records.extend(t.chain.push(e.at.max(tot.at), e.value, tot.value));
        t.synced_to = Some(now);
        SourceUpdate {
            replace,
            records,
            stale: None,
            // Current for the staleness bound past the sample, unless a
            // newer one comes.
            valid_until: Some(
                e.at.min(tot.at)
                    .saturating_add(self.stale_after_secs as i64),
            ),
        }
    }

    async fn instant(
        &self,
        base: &reqwest::Url,
        which: Which,
        expr: &str,
        at: i64,
    ) -> Result<Point, String> {
        let params = [("query", expr.to_string()), ("time", at.to_string())];
        let body = self
            .get(base, "api/v1/query", &params)
            .await
            .map_err(|e| describe(which, expr, &e))?;
        parse_instant(&body).map_err(|e| describe(which, expr, &e.to_string()))
    }

    async fn range(
        &self,
        base: &reqwest::Url,
        which: Which,
        expr: &str,
        q: RangeQuery,
    ) -> Result<Vec<Point>, String> {
        let params = [
            ("query", expr.to_string()),
            ("start", q.start.to_string()),
            ("end", q.end.to_string()),
            ("step", q.step.to_string()),
        ];
        let body = self
            .get(base, "api/v1/query_range", &params)
            .await
            .map_err(|e| describe(which, expr, &e))?;
        parse_range(&body).map_err(|e| describe(which, expr, &e.to_string()))
    }

    /// GETs `path` under the base URL; the body of a 2xx, or of an error
    /// answer that is Prometheus' error JSON, else why not.
    async fn get(
        &self,
        base: &reqwest::Url,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<Vec<u8>, String> {
        let mut url = base.clone();
        // Keep a path prefix (https://host/prometheus/): join relative.
        if !url.path().ends_with('/') {
            let with_slash = format!("{}/", url.path());
            url.set_path(&with_slash);
        }
        let mut url = url.join(path).map_err(|e| e.to_string())?;
        url.query_pairs_mut()
            .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
        let mut request = self.client.get(url);
        if let Some((user, password)) = &self.auth {
            request = request.basic_auth(user, password.as_deref());
        }
        let mut response = request.send().await.map_err(|e| self.http_error(e))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.http_error(e))? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(format!(
                    "the answer is larger than {MAX_ANSWER_BYTES} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok(body);
        }
        // Prometheus answers 400/422/503 with its error JSON: its text says
        // more than the status.
        match parse_instant(&body) {
            Err(refused @ AnswerError::Refused { .. }) => Err(refused.to_string()),
            _ => Err(format!("Prometheus answered HTTP {status}")),
        }
    }

    /// A transport error's text: without the URL (it may carry a
    /// password), and a timeout named as one.
    fn http_error(&self, e: reqwest::Error) -> String {
        if e.is_timeout() {
            format!(
                "no answer within slo.prometheus_timeout_secs ({} s)",
                self.timeout.as_secs()
            )
        } else {
            let e = e.without_url();
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}

fn describe(which: Which, expr: &str, error: &str) -> String {
    format!("{} query {expr:?}: {error}", which.as_str())
}
