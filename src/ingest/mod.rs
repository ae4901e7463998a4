//! Ingest: the HTTP edge. Bytes in; a validated batch of alerts handed to
//! the pipeline, or a clear 4xx. Also the incident API, health, metrics
//! and reload. Nothing past this module sees HTTP types.

mod deliveries;
mod error;
mod handlers;

pub use handlers::reload_rules;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use subtle::ConstantTimeEq;
use tower_http::timeout::TimeoutLayer;

pub use error::{ApiError, query_or_400};

use crate::config::AuthSettings;
use crate::metrics::Metrics;
use crate::pipeline::{Clock, Pipeline};
use crate::store::Store;

/// Checks `Authorization: Bearer <token>` against `expected`, in constant
/// time. No token configured means no check.
pub(crate) fn authorize(
    headers: &axum::http::HeaderMap,
    expected: Option<&str>,
) -> Result<(), ApiError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme is case-insensitive (RFC 9110 §11.1).
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

/// Everything the handlers share.
pub struct AppState {
    /// The pipeline to hand alerts and actions to.
    pub pipeline: Pipeline,
    /// The store, for reads.
    pub store: Arc<dyn Store>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Bearer tokens (per ingest source, and for the admin endpoints).
    pub auth: AuthSettings,
    /// Alertmanager's resolve_timeout for alerts without endsAt.
    pub resolve_timeout: time::Duration,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Where the rule set is read from on reload.
    pub rules_path: PathBuf,
    /// What an unset `env("VAR")` secret does on reload.
    pub env_policy: crate::rules::EnvPolicy,
    /// Serialises reloads.
    pub reload_lock: tokio::sync::Mutex<()>,
}

/// Limits of the HTTP edge.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest accepted body; larger gets 413.
    pub max_body_bytes: usize,
    /// Longest a request may take; longer gets 408.
    pub request_timeout: Duration,
}

/// The HTTP routes.
pub fn router(state: Arc<AppState>, limits: Limits) -> Router {
    Router::new()
        .route("/api/v2/alerts", post(handlers::prometheus))
        .route("/api/v1/ingest/alertmanager", post(handlers::alertmanager))
        .route("/api/v1/ingest/grafana", post(handlers::grafana))
        .route("/api/v1/ingest/generic", post(handlers::generic))
        .route("/api/v1/incidents", get(handlers::list_incidents))
        .route("/api/v1/incidents/{id}", get(handlers::get_incident))
        .route("/api/v1/incidents/{id}/ack", post(handlers::ack))
        .route("/api/v1/incidents/{id}/resolve", post(handlers::resolve))
        .route(
            "/api/v1/incidents/{id}/updates",
            post(handlers::status_update),
        )
        .route(
            "/api/v1/incidents/{id}/severity",
            post(handlers::set_severity),
        )
        .route("/api/v1/deliveries", get(deliveries::list))
        .route("/api/v1/deliveries/retry", post(deliveries::retry_since))
        .route("/api/v1/deliveries/{id}", get(deliveries::get))
        .route("/api/v1/deliveries/{id}/retry", post(deliveries::retry_one))
        .route(
            "/api/v1/destinations/disabled",
            get(deliveries::list_disabled),
        )
        .route(
            "/api/v1/destinations/{name}/enable",
            post(deliveries::enable),
        )
        .route("/api/v1/slos", get(handlers::list_slos))
        .route("/api/v1/slos/{name}", get(handlers::get_slo))
        .route("/api/v1/slos/{name}/events", post(handlers::slo_events))
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .route("/-/reload", post(handlers::reload))
        .fallback(handlers::not_found)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state)
}

/// Gives the answers axum and tower make on their own (wrong method,
/// timeout) the same JSON error body as every other error.
async fn json_errors(response: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse;
    let has_body_type = response
        .headers()
        .contains_key(axum::http::header::CONTENT_TYPE);
    match response.status() {
        StatusCode::METHOD_NOT_ALLOWED if !has_body_type => ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this endpoint does not accept that method",
        )
        .into_response(),
        StatusCode::REQUEST_TIMEOUT if !has_body_type => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request took longer than server.request_timeout_secs",
        )
        .into_response(),
        _ => response,
    }
}
