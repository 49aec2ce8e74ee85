//! What happens around every request, in one layer: refuse cross-site
//! state changes ([`super::origin`]), read the body whole before the
//! handler ([`super::body_read`]) within a time limit, count the answer, log the
//! request (never its body), and turn any error answer that is not already
//! JSON into the JSON error shape. An [`Around`] rather than
//! `middleware::from_fn` (see [`super::around`]).

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tower::Service;

use super::around::Around;
use super::{body_read, error, origin, AppError};

/// What happens around every request; `limit` is the largest body read.
#[derive(Clone, Copy)]
pub(super) struct Envelope {
    /// Largest accepted request body, in bytes.
    pub limit: usize,
    /// How long a request body may take to arrive whole.
    pub body_timeout: Duration,
}

impl Around for Envelope {
    async fn around<S>(self, request: Request, inner: S) -> Response
    where
        S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        S::Future: Send,
    {
        envelope(self, request, inner).await
    }
}

/// The body of `req`, read whole within the envelope's limits; the error
/// answer otherwise (the body left unread).
async fn read_body(
    envelope: Envelope,
    parts: &axum::http::request::Parts,
    body: axum::body::Body,
) -> Result<axum::body::Body, AppError> {
    origin::check(&parts.method, &parts.headers)?;
    match tokio::time::timeout(
        envelope.body_timeout,
        body_read::whole(body, envelope.limit),
    )
    .await
    {
        Ok(read) => read,
        Err(_) => Err(AppError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the request body did not arrive within {} s",
                envelope.body_timeout.as_secs()
            ),
        )),
    }
}

async fn envelope<S>(envelope: Envelope, req: Request, mut inner: S) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    // Kept for the debug log only (a copy of the path is an allocation
    // per request).
    let logged = tracing::enabled!(tracing::Level::DEBUG)
        .then(|| (req.method().clone(), req.uri().path().to_string()));
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let (mut resp, unread) = match read_body(envelope, &parts, body).await {
        Ok(body) => {
            let Ok(resp) = inner.call(Request::from_parts(parts, body)).await;
            (resp, false)
        }
        Err(refused) => (refused.into_response(), true),
    };
    let status = resp.status();
    if unread || status == StatusCode::PAYLOAD_TOO_LARGE {
        // The rest of the body is unread: the server closes the connection
        // after this answer, so say so (see `body_read`).
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    crate::metrics::http_response(status.as_u16());
    if let Some((method, path)) = logged {
        tracing::debug!(%method, %path, status = status.as_u16(), ms = started.elapsed().as_secs_f64() * 1000.0, "request");
    }
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .unwrap_or_else(|_| Bytes::new());
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = if text.is_empty() || text.len() > 300 || text.contains('<') {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let err = AppError::new(status, error::reason_for(status), message);
    let mut out = err.into_response();
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}
