//! The one error type of the HTTP edge. It logs its details and answers
//! with a stable JSON body: `{ "error": { "code", "message", "details" } }`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::normalize::NormalizeError;
use crate::pipeline::PipelineError;
use crate::route::RouteError;
use crate::slo::SloError;

/// An error answered to an HTTP client.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code such as `invalid_alert`.
    pub code: &'static str,
    /// One sentence for people.
    pub message: String,
    /// Structured details (the field, the alert index, diagnostics).
    pub details: Value,
}

impl ApiError {
    /// An error with no details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Value::Null,
        }
    }

    /// Adds structured details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// 401: a bearer token is required or wrong.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required (Authorization: Bearer <token>)",
        )
    }

    /// 400: a request body field is missing or wrong.
    pub fn bad_field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("{field}: {message}"),
        )
        .with_details(json!({ "field": field }))
    }
}

/// A query string as its handler declares it, or a `400 invalid_query`
/// naming what is wrong with it (an unknown key, a value of the wrong type).
pub fn query_or_400<T>(
    query: Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    query
        .map(|axum::extract::Query(q)| q)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, code = self.code, message = %self.message, "The request failed.");
        } else {
            tracing::info!(status = %self.status, code = self.code, message = %self.message, "The request was refused.");
        }
        let body = json!({
            "error": { "code": self.code, "message": self.message, "details": self.details }
        });
        (self.status, Json(body)).into_response()
    }
}

impl From<NormalizeError> for ApiError {
    fn from(e: NormalizeError) -> Self {
        let (index, field) = e.location();
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_alert", e.to_string())
            .with_details(json!({ "index": index, "field": field }))
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        match &e {
            PipelineError::NoIncident(id) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
                    .with_details(json!({ "incident": id }))
            }
            PipelineError::Route(
                RouteError::Resolved(_) | RouteError::AlreadyAcked(_) | RouteError::NotPaged(_),
            ) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            PipelineError::Store(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the store failed; nothing was committed, retry later",
            ),
            PipelineError::Slo(SloError::UnknownSlo { .. }) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            PipelineError::Slo(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_slo_event", e.to_string())
            }
            PipelineError::Stopped => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                e.to_string(),
            ),
        }
    }
}
