//! The one error type of the API: every error is JSON
//! `{"error": {"code": <status>, "message": "...", "reason": "<machine-readable>"}}`.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::auth::LoginError;
use crate::queue::QueueError;

/// Every error's body, as Container Station shapes it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// The HTTP status.
    pub code: u16,
    /// For people; a bad field is named first (`name: must match ...`).
    pub message: String,
    /// Machine-readable, e.g. `invalid_params`, `not_logged_in`.
    pub reason: String,
}

/// An API error: a status, a machine-readable reason and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable reason, e.g. `invalid_json`, `not_logged_in`.
    pub reason: &'static str,
    /// Human-readable message; never contains secrets or internal details.
    pub message: String,
    /// Seconds to wait, sent as `Retry-After` (429).
    pub retry_after: Option<u64>,
}

impl AppError {
    /// An error with the given status, reason and message.
    pub fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        AppError {
            status,
            reason,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400.
    pub fn bad_request(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason, message)
    }

    /// 401: no valid session.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "not_logged_in",
            "not logged in: POST login first and send its session cookie",
        )
    }

    /// 404.
    pub fn not_found(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, reason, message)
    }

    /// 500: the detail is logged here and not shown.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {detail}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error (see the server log)",
        )
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!(ErrorBody {
            error: ErrorDetail {
                code: self.status.as_u16(),
                message: self.message.clone(),
                reason: self.reason.to_string(),
            }
        })
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.reason,
            self.message
        )
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut resp = Response::new(Body::from(self.body().to_string()));
        *resp.status_mut() = self.status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<QueueError> for AppError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::UnknownCategory(c) => {
                AppError::not_found("unknown_category", format!("unknown category `{c}`"))
            }
            QueueError::Invalid(m) => AppError::bad_request("invalid_params", m),
            e @ QueueError::UnknownNode { .. } => {
                AppError::bad_request("unknown_node", e.to_string())
            }
            QueueError::NotFound(id) => {
                AppError::not_found("unknown_task", format!("task {id} not found"))
            }
            QueueError::Conflict(m) => AppError::new(StatusCode::CONFLICT, "conflict", m),
            QueueError::Plugin(m) => {
                tracing::warn!("plugin failed while validating: {m}");
                AppError::new(StatusCode::SERVICE_UNAVAILABLE, "plugin_failed", m)
            }
            QueueError::Store(e) => AppError::internal(format!("store: {e:#}")),
        }
    }
}

impl From<LoginError> for AppError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::BadCredentials => {
                AppError::new(StatusCode::UNAUTHORIZED, "bad_credentials", e.to_string())
            }
            LoginError::LockedOut(wait) => {
                let mut err = AppError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_attempts",
                    e.to_string(),
                );
                err.retry_after = Some(wait.as_secs().max(1));
                err
            }
            LoginError::Busy => {
                let mut err =
                    AppError::new(StatusCode::TOO_MANY_REQUESTS, "login_busy", e.to_string());
                err.retry_after = Some(1);
                err
            }
            LoginError::Store(e) => AppError::internal(format!("session store: {e:#}")),
        }
    }
}

/// A machine-readable reason for a bare status (used for axum's own rejections).
pub fn reason_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "not_logged_in",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "error",
    }
}

/// The error answers the container and application calls document beside
/// their own success answer: a bad path or query, no session, the caller's
/// policy refusing, no such container or application, no such runtime,
/// the engine failing. Each is an [`ErrorBody`].
pub struct RuntimeErrors;

impl utoipa::IntoResponses for RuntimeErrors {
    fn responses() -> std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    > {
        [
            ("400", "A path segment or query is not valid"),
            ("401", "Not logged in"),
            ("403", "Not the caller's (policy `containers`)"),
            ("404", "No such container or application"),
            ("501", "This server has no such runtime"),
            ("502", "The engine refused or failed"),
        ]
        .into_iter()
        .map(|(status, description)| (status.to_string(), error_response(description).into()))
        .collect()
    }
}

/// A documented error answer: `description`, with an [`ErrorBody`] as JSON.
fn error_response(description: &str) -> utoipa::openapi::response::Response {
    use utoipa::openapi::{Content, Ref, ResponseBuilder};
    let body = Ref::from_schema_name(<ErrorBody as utoipa::ToSchema>::name());
    ResponseBuilder::new()
        .description(description)
        .content("application/json", Content::new(Some(body)))
        .build()
}
