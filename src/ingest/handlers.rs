//! Request handlers. Each checks its token, reads and validates its input,
//! and calls the pipeline or the store; errors become [`ApiError`]s.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, authorize};
use crate::ingest::{ApiError, query_or_400};
use crate::metrics::SeverityLabel;
use crate::model::{Alert, Severity, Source};
use crate::normalize;
use crate::pipeline::SloSample;
use crate::route::{Event, IncidentStatus};
use crate::rules::load_paths;
use crate::store::IncidentFilter;

type Shared = State<Arc<AppState>>;

/// Reads a JSON body: 413 past the size limit, 415 for a content type
/// other than JSON (a missing one is accepted, as curl users expect).
fn json_body(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("expected Content-Type application/json, got {essence:?}"),
            ));
        }
    }
    body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "body_too_large",
                "the request body is larger than server.max_body_bytes",
            )
        } else {
            ApiError::new(status, "unreadable_body", rejection.body_text())
        }
    })
}

async fn ingest(
    state: &AppState,
    source: Source,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    parse: impl FnOnce(&[u8]) -> Result<Vec<Alert>, normalize::NormalizeError>,
) -> Result<Response, ApiError> {
    authorize(headers, state.auth.ingest_token_for(source))?;
    let body = json_body(headers, body)?;
    let alerts = match parse(&body) {
        Ok(alerts) => alerts,
        Err(e) => {
            state.metrics.count_alerts(source.as_str(), "rejected", 1);
            return Err(e.into());
        }
    };
    let alerts: Vec<Alert> = alerts.into_iter().map(|a| Alert { source, ..a }).collect();
    let n = alerts.len();
    let outcome = state.pipeline.ingest(alerts).await?;
    state.metrics.count_alerts(source.as_str(), "accepted", n);
    for severity in Severity::ALL {
        let classified = outcome.by_severity[severity.index()];
        let label = SeverityLabel {
            severity: severity.to_string(),
        };
        state
            .metrics
            .classifications
            .get_or_create(&label)
            .inc_by(classified as u64);
    }
    let unclassified = n - outcome.by_severity.iter().sum::<usize>();
    if unclassified > 0 {
        let label = SeverityLabel {
            severity: "none".into(),
        };
        state
            .metrics
            .classifications
            .get_or_create(&label)
            .inc_by(unclassified as u64);
    }
    tracing::debug!(
        source = source.as_str(),
        alerts = n,
        routed = outcome.routed,
        "Alerts committed."
    );
    Ok((
        StatusCode::OK,
        Json(json!({ "status": "success", "alerts": n, "routed": outcome.routed, "unrouted": outcome.unrouted })),
    )
        .into_response())
}

/// `POST /api/v2/alerts`: what Prometheus sends to an Alertmanager.
pub async fn prometheus(
    State(state): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let resolve_timeout = state.resolve_timeout;
    ingest(&state, Source::Prometheus, &headers, body, |b| {
        normalize::prometheus_v2(b, now, resolve_timeout)
    })
    .await
}

/// `POST /api/v1/ingest/alertmanager`: Alertmanager's webhook.
pub async fn alertmanager(
    State(state): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    ingest(
        &state,
        Source::Alertmanager,
        &headers,
        body,
        normalize::alertmanager_webhook,
    )
    .await
}

/// `POST /api/v1/ingest/grafana`: Grafana's webhook contact point.
pub async fn grafana(
    State(state): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    ingest(&state, Source::Grafana, &headers, body, normalize::grafana).await
}

/// `POST /api/v1/ingest/generic`: the documented generic JSON alert.
pub async fn generic(
    State(state): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    ingest(&state, Source::Generic, &headers, body, |b| {
        normalize::generic(b, now)
    })
    .await
}

/// Query of `GET /api/v1/incidents`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    severity: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/incidents?status=open&severity=SEV1&limit=50`
pub async fn list_incidents(
    State(state): Shared,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&headers, state.auth.admin_token.as_deref())?;
    let query = query_or_400(query)?;
    let status = match query.status.as_deref() {
        None => None,
        Some(s) => Some(
            [
                IncidentStatus::Gathering,
                IncidentStatus::Open,
                IncidentStatus::Resolved,
            ]
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| ApiError::bad_field("status", "expected gathering, open or resolved"))?,
        ),
    };
    let severity = match query.severity.as_deref() {
        None => None,
        Some(s) => Some(
            Severity::parse(s)
                .ok_or_else(|| ApiError::bad_field("severity", "expected SEV1, SEV2 or SEV3"))?,
        ),
    };
    let filter = IncidentFilter {
        status,
        severity,
        limit: query.limit.unwrap_or(100).min(1000),
    };
    let store = state.store.clone();
    let incidents = tokio::task::spawn_blocking(move || store.incidents(&filter))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(store_error)?;
    Ok(Json(json!({ "incidents": incidents })).into_response())
}

fn store_error(e: crate::store::StoreError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        e.to_string(),
    )
}

fn incident_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no incident {raw:?}"),
        )
    })
}

/// `GET /api/v1/incidents/{id}`: the incident, its timeline and its deliveries.
pub async fn get_incident(
    State(state): Shared,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&headers, state.auth.admin_token.as_deref())?;
    let id = incident_id(&raw)?;
    let store = state.store.clone();
    let found = tokio::task::spawn_blocking(move || -> Result<_, crate::store::StoreError> {
        let Some((incident, timeline)) = store.incident(id)? else {
            return Ok(None);
        };
        let deliveries = store.deliveries_for(id)?;
        Ok(Some((incident, timeline, deliveries)))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    .map_err(store_error)?;
    let Some((incident, timeline, deliveries)) = found else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no incident {id}"),
        ));
    };
    let deliveries: Vec<Value> = deliveries
        .iter()
        .map(|d| {
            json!({
                "id": d.id, "destination": d.destination, "action": d.kind.as_str(),
                "webhook_id": d.webhook_id, "status": d.status.as_str(), "attempts": d.attempts,
            })
        })
        .collect();
    Ok(
        Json(json!({ "incident": incident, "timeline": timeline, "deliveries": deliveries }))
            .into_response(),
    )
}

/// Reads a JSON object body for an incident action.
fn action_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let body = json_body(headers, body)?;
    if body.is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_field("body", "expected a JSON object")),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("invalid JSON: {e}"),
        )),
    }
}

fn text_field(
    body: &serde_json::Map<String, Value>,
    field: &str,
    required: bool,
) -> Result<Option<String>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) if required => Err(ApiError::bad_field(field, "missing")),
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(ApiError::bad_field(field, "must not be empty"))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_field(field, "expected a string")),
    }
}

async fn act(state: &AppState, raw: &str, event: Event) -> Result<Response, ApiError> {
    let id = incident_id(raw)?;
    state.pipeline.act(id, event).await?;
    Ok(Json(json!({ "status": "success", "incident": id })).into_response())
}

/// `POST /api/v1/incidents/{id}/ack` `{"by": "ann"}`
pub async fn ack(
    State(state): Shared,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(&headers, state.auth.admin_token.as_deref())?;
    let body = action_body(&headers, body)?;
    let by = text_field(&body, "by", true)?.unwrap_or_default();
    act(&state, &raw, Event::Ack { by }).await
}

/// `POST /api/v1/incidents/{id}/resolve` `{"by": "ann", "reason": "..."}`
pub async fn resolve(
    State(state): Shared,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(&headers, state.auth.admin_token.as_deref())?;
    let body = action_body(&headers, body)?;
    let by = text_field(&body, "by", true)?.unwrap_or_default();
    let reason = text_field(&body, "reason", false)?;
    act(&state, &raw, Event::Resolve { by, reason }).await
}

/// `POST /api/v1/incidents/{id}/updates` `{"by": "ann", "text": "..."}`
pub async fn status_update(
    State(state): Shared,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(&headers, state.auth.admin_token.as_deref())?;
    let body = action_body(&headers, body)?;
    let by = text_field(&body, "by", true)?.unwrap_or_default();
    let text = text_field(&body, "text", true)?.unwrap_or_default();
    act(&state, &raw, Event::StatusUpdate { by, text }).await
}

/// `POST /api/v1/incidents/{id}/severity` `{"by": "ann", "severity": "SEV1", "reason": "..."}`
pub async fn set_severity(
    State(state): Shared,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(&headers, state.auth.admin_token.as_deref())?;
    let body = action_body(&headers, body)?;
    let by = text_field(&body, "by", true)?.unwrap_or_default();
    let severity = text_field(&body, "severity", true)?.unwrap_or_default();
    let severity = Severity::parse(&severity)
        .ok_or_else(|| ApiError::bad_field("severity", "expected SEV1, SEV2 or SEV3"))?;
    let reason = text_field(&body, "reason", true)?.unwrap_or_default();
    act(
        &state,
        &raw,
        Event::SetSeverity {
            by,
            severity,
            reason,
        },
    )
    .await
}

/// `POST /api/v1/slos/{name}/events`: one SLI sample for a `push` SLO:
/// `{"good": 990, "total": 1000}` for an interval ending now (or at
/// `"timestamp"`: RFC 3339 or unix seconds), or with `"cumulative": true`
/// the current values of good and total counters.
pub async fn slo_events(
    State(state): Shared,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(&headers, state.auth.ingest_token_for(Source::Generic))?;
    let body = action_body(&headers, body)?;
    let number = |field: &str| -> Result<f64, ApiError> {
        match body.get(field) {
            None | Some(Value::Null) => Err(ApiError::bad_field(field, "missing")),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| ApiError::bad_field(field, "expected a number")),
        }
    };
    let (good, total) = (number("good")?, number("total")?);
    let cumulative = match body.get("cumulative") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_field("cumulative", "expected true or false")),
    };
    let at = match body.get("timestamp") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_i64()
                .ok_or_else(|| ApiError::bad_field("timestamp", "expected whole unix seconds"))?,
        ),
        Some(Value::String(s)) => Some(
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|_| {
                    ApiError::bad_field("timestamp", format!("{s:?} is not an RFC 3339 time"))
                })?
                .unix_timestamp(),
        ),
        Some(_) => {
            return Err(ApiError::bad_field(
                "timestamp",
                "expected RFC 3339 text or unix seconds",
            ));
        }
    };
    let sample = if cumulative {
        SloSample::Cumulative { good, total }
    } else {
        SloSample::Interval { good, total }
    };
    let recorded = state.pipeline.record_slo(name, at, sample).await?;
    Ok(Json(json!({ "status": "success", "recorded": recorded })).into_response())
}

/// `GET /api/v1/slos`: every SLO's objective, data state, burns, budget
/// and exhaustion.
pub async fn list_slos(State(state): Shared, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&headers, state.auth.admin_token.as_deref())?;
    let slos = state.pipeline.slo_status(None).await?;
    Ok(Json(json!({ "slos": slos })).into_response())
}

/// `GET /api/v1/slos/{name}`
pub async fn get_slo(
    State(state): Shared,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&headers, state.auth.admin_token.as_deref())?;
    let mut slos = state.pipeline.slo_status(Some(name)).await?;
    Ok(Json(json!({ "slo": slos.pop() })).into_response())
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: the store answers.
pub async fn readyz(State(state): Shared) -> Result<&'static str, ApiError> {
    if !state.pipeline.is_running() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the router stopped; nothing can be ingested",
        ));
    }
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || store.max_incident_id())
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", e.to_string()))?;
    Ok("ready\n")
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): Shared) -> Response {
    let store = state.store.clone();
    let now = state.clock.now();
    let figures = tokio::task::spawn_blocking(move || {
        let open = store.incidents(&IncidentFilter {
            status: Some(IncidentStatus::Open),
            severity: None,
            limit: usize::MAX >> 1,
        });
        (open, store.outbox_stats(now))
    })
    .await;
    // SLO gauges from the router's engine, as of this scrape.
    if let Ok(statuses) = state.pipeline.slo_status(None).await {
        state.metrics.set_slos(&statuses);
    }
    if let Ok((Ok(open), Ok(stats))) = figures {
        for sev in Severity::ALL {
            let n = open.iter().filter(|i| i.severity == Some(sev)).count();
            state
                .metrics
                .incidents_open
                .get_or_create(&SeverityLabel {
                    severity: sev.to_string(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        state
            .metrics
            .outbox_depth
            .set(i64::try_from(stats.pending).unwrap_or(i64::MAX));
        state
            .metrics
            .outbox_oldest_age
            .set(i64::try_from(stats.oldest_pending_age_secs).unwrap_or(i64::MAX));
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// `POST /-/reload`: re-read the rules; a rule set that fails its check is
/// refused with its diagnostics and the running one stays.
pub async fn reload(State(state): Shared, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&headers, state.auth.admin_token.as_deref())?;
    match reload_rules(&state).await {
        Ok(rules) => Ok(Json(json!({ "status": "success", "rules": rules })).into_response()),
        Err(diagnostics) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "rules_refused",
            "the new rule set failed its check; the running one stays",
        )
        .with_details(json!({ "diagnostics": diagnostics }))),
    }
}

/// Re-reads the rule set and swaps it in when it checks; returns its rule
/// count, or the diagnostics as JSON. Shared by `/-/reload` and SIGHUP.
pub async fn reload_rules(state: &AppState) -> Result<usize, Vec<Value>> {
    let _guard = state.reload_lock.lock().await;
    let path = state.rules_path.clone();
    let policy = state.env_policy;
    let loaded = tokio::task::spawn_blocking(move || load_paths(&[path], policy))
        .await
        .map_err(|e| vec![json!({ "message": e.to_string() })])?;
    let outcome = |o: &str| crate::metrics::ReloadOutcome {
        outcome: o.to_string(),
    };
    let warnings = loaded.warning_count();
    match loaded.ruleset {
        Some(ruleset) => {
            let rules = ruleset.rules.len();
            state.pipeline.ruleset.store(Arc::new(ruleset));
            // A reload re-enables destinations their receivers disabled
            // (the operator may have fixed their URLs).
            let store = state.store.clone();
            if !matches!(
                tokio::task::spawn_blocking(move || store.enable_all_destinations()).await,
                Ok(Ok(()))
            ) {
                tracing::error!("Re-enabling disabled destinations after the reload failed.");
            }
            state
                .metrics
                .rule_reloads
                .get_or_create(&outcome("success"))
                .inc();
            state
                .metrics
                .rules_loaded_timestamp
                .set(state.clock.now().unix_timestamp());
            tracing::info!(rules, warnings, "The rule set was reloaded.");
            Ok(rules)
        }
        None => {
            state
                .metrics
                .rule_reloads
                .get_or_create(&outcome("refused"))
                .inc();
            tracing::error!(
                errors = loaded.error_count(),
                diagnostics = %loaded.summary_lines(),
                "The new rule set was refused; the running one stays."
            );
            Err(loaded
                .diagnostics
                .iter()
                .map(|d| serde_json::to_value(d.to_json(&loaded.sources)).unwrap_or(Value::Null))
                .collect())
        }
    }
}

/// Any other path.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}
