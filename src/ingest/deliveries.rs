//! The delivery API: list deliveries by status (dead letters above all),
//! show one with every attempt, replay dead or failed-over deliveries
//! (keeping their webhook-id), and re-enable destinations their receivers
//! disabled. Admin token required throughout. Nothing here returns a URL,
//! a header sent, or a secret: the stored request is the body only, and
//! secret-looking fields in it are redacted.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{AppState, authorize};
use crate::ingest::{ApiError, query_or_400};
use crate::store::{AttemptLog, Delivery, DeliveryFilter, DeliveryStatus, StoreError};

type Shared = State<Arc<AppState>>;

/// Body keys whose values are never shown (vendor credentials that some
/// bodies carry, such as PagerDuty's `routing_key`).
const SECRET_KEYS: &[&str] = &[
    "routing_key",
    "api_key",
    "secret",
    "token",
    "password",
    "authorization",
];

fn store_error(e: StoreError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        e.to_string(),
    )
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(store_error)
}

fn rfc3339(t: OffsetDateTime) -> Value {
    t.format(&Rfc3339).map_or(Value::Null, Value::String)
}

/// Replaces the values of secret-looking keys, at any depth.
fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if SECRET_KEYS.contains(&key.to_ascii_lowercase().as_str()) {
                    *v = Value::String("[redacted]".into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// A delivery as the API shows it; `body` is the request kept with it.
fn delivery_json(d: &Delivery) -> Value {
    let mut body = serde_json::from_str(&d.body).unwrap_or_else(|_| Value::String(d.body.clone()));
    redact(&mut body);
    json!({
        "id": d.id,
        "incident_id": d.incident_id,
        "destination": d.destination,
        "action": d.kind.as_str(),
        "webhook_id": d.webhook_id,
        "status": d.status.as_str(),
        "attempts": d.attempts,
        "created_at": rfc3339(d.created_at),
        "next_attempt_at": (d.status == DeliveryStatus::Pending).then(|| rfc3339(d.next_attempt_at)),
        "finished_at": d.finished_at.map(rfc3339),
        "last_http_status": d.last_http_status,
        "last_error": d.last_error,
        "failover_of": d.failover_of,
        "request": { "body": body },
    })
}

fn attempt_json(a: &AttemptLog) -> Value {
    json!({
        "at": rfc3339(a.at),
        "status": a.status.as_str(),
        "outcome": a.outcome,
        "http_status": a.http_status,
        "error": a.error,
        "elapsed_ms": a.elapsed_ms,
        "response_headers": a.response_headers,
        "response_excerpt": a.response_excerpt,
    })
}

fn parse_since(raw: &str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(raw, &Rfc3339).map_err(|_| {
        ApiError::bad_field(
            "since",
            format!("expected an RFC 3339 time such as 2026-11-27T12:00:00Z, found {raw:?}"),
        )
    })
}

fn delivery_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no delivery {raw:?}"),
        )
    })
}

/// Query of `GET /api/v1/deliveries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/deliveries?status=dead&since=RFC3339&limit=100`
pub async fn list(
    State(state): Shared,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&headers, state.auth.admin_token.as_deref())?;
    let query = query_or_400(query)?;
    let status = match query.status.as_deref() {
        None => None,
        Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
            ApiError::bad_field(
                "status",
                "expected pending, delivered, dead, skipped or failed_over",
            )
        })?),
    };
    let filter = DeliveryFilter {
        status,
        since: query.since.as_deref().map(parse_since).transpose()?,
        limit: query.limit.unwrap_or(100).clamp(1, 1000),
    };
    let store = state.store.clone();
    let found = blocking(move || store.deliveries(&filter)).await?;
    let list: Vec<Value> = found.iter().map(delivery_json).collect();
    Ok(Json(json!({ "deliveries": list })).into_response())
}

/// `GET /api/v1/deliveries/{id}`: one delivery and every attempt.
pub async fn get(
    State(state): Shared,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&headers, state.auth.admin_token.as_deref())?;
    let id = delivery_id(&raw)?;
    let store = state.store.clone();
    let Some((delivery, attempts)) = blocking(move || store.delivery(id)).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no delivery {id}"),
        ));
    };
    let mut out = delivery_json(&delivery);
    out["attempt_log"] = attempts.iter().map(attempt_json).collect();
    Ok(Json(json!({ "delivery": out })).into_response())
}

/// `POST /api/v1/deliveries/{id}/retry`: replays a dead or failed-over
/// delivery with its original webhook-id.
pub async fn retry_one(
    State(state): Shared,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&headers, state.auth.admin_token.as_deref())?;
    let id = delivery_id(&raw)?;
    let store = state.store.clone();
    let now = state.clock.now();
    match blocking(move || store.requeue(id, now)).await? {
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no delivery {id}"),
        )),
        Some(false) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_replayable",
            format!("delivery {id} is neither dead nor failed over; only those can be retried"),
        )),
        Some(true) => {
            state.pipeline.deliveries_ready.notify_one();
            tracing::info!(delivery = id, "A dead letter was put back in the outbox.");
            Ok(Json(json!({ "requeued": [id] })).into_response())
        }
    }
}

/// Query of `POST /api/v1/deliveries/retry`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryQuery {
    since: Option<String>,
}

/// `POST /api/v1/deliveries/retry?since=RFC3339`: replays every dead or
/// failed-over delivery that finished since then.
pub async fn retry_since(
    State(state): Shared,
    headers: HeaderMap,
    query: Result<Query<RetryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&headers, state.auth.admin_token.as_deref())?;
    let query = query_or_400(query)?;
    let raw = query
        .since
        .ok_or_else(|| ApiError::bad_field("since", "required: an RFC 3339 time"))?;
    let since = parse_since(&raw)?;
    let store = state.store.clone();
    let now = state.clock.now();
    let ids = blocking(move || store.requeue_since(since, now)).await?;
    if !ids.is_empty() {
        state.pipeline.deliveries_ready.notify_one();
        tracing::info!(
            count = ids.len(),
            "Dead letters were put back in the outbox."
        );
    }
    Ok(Json(json!({ "requeued": ids })).into_response())
}

/// `GET /api/v1/destinations/disabled`
pub async fn list_disabled(State(state): Shared, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&headers, state.auth.admin_token.as_deref())?;
    let store = state.store.clone();
    let disabled = blocking(move || store.disabled_destinations()).await?;
    Ok(Json(json!({ "disabled": disabled })).into_response())
}

/// `POST /api/v1/destinations/{name}/enable`: sends to a disabled
/// destination again.
pub async fn enable(
    State(state): Shared,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&headers, state.auth.admin_token.as_deref())?;
    let store = state.store.clone();
    let owned = name.clone();
    if blocking(move || store.enable_destination(&owned)).await? {
        tracing::warn!(destination = %name, "A disabled destination was re-enabled through the API.");
        state.pipeline.deliveries_ready.notify_one();
        Ok(Json(json!({ "enabled": name })).into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_disabled",
            format!("destination {name:?} is not disabled"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_are_redacted_at_any_depth() {
        let mut body = json!({
            "routing_key": "R0ut1ngKey",
            "payload": { "summary": "disk full", "API_KEY": "k", "list": [{"token": "t"}] },
        });
        redact(&mut body);
        assert_eq!(body["routing_key"], "[redacted]");
        assert_eq!(body["payload"]["API_KEY"], "[redacted]");
        assert_eq!(body["payload"]["list"][0]["token"], "[redacted]");
        assert_eq!(body["payload"]["summary"], "disk full");
    }

    #[test]
    fn since_must_be_rfc3339() {
        assert!(parse_since("2026-11-27T12:00:00Z").is_ok());
        let err = parse_since("yesterday").unwrap_err();
        assert!(format!("{err:?}").contains("since"), "{err:?}");
    }
}
