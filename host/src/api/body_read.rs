//! Whether a request's body was read to its end.
//!
//! A handler that answers without reading the body (no session, wrong
//! method, a route that takes none) leaves bytes on the connection, and the
//! server closes it after the answer. Saying `Connection: close` in that
//! answer keeps a client from sending its next request on a connection
//! about to close (which it would see as a dropped request).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use hyper::body::{Body as HttpBody, Frame, SizeHint};

/// A request body that records when it reached its end.
pub struct Tracked {
    inner: Body,
    done: Arc<AtomicBool>,
}

impl Tracked {
    /// Wrap `inner`; the flag turns true at its end.
    pub fn new(inner: Body) -> (Tracked, Arc<AtomicBool>) {
        let done = Arc::new(AtomicBool::new(inner.is_end_stream()));
        (
            Tracked {
                inner,
                done: done.clone(),
            },
            done,
        )
    }
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.done.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Bytes past the body limit still read (and dropped) before answering
/// 413, so that a client sending a slightly too large body reads the answer
/// instead of failing to write into a closed connection.
const DRAIN_PAST_LIMIT: usize = 8 << 20;

/// Read every request body whole (up to the limit in `limit`) before the
/// handler runs: a handler that answers without reading it (no session,
/// wrong method or path) then leaves nothing on the connection. A body over
/// the limit is read on for a while and answered 413.
pub async fn whole_body(
    axum::extract::State(limit): axum::extract::State<usize>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use http_body_util::BodyExt;
    let (parts, mut body) = req.into_parts();
    if body.is_end_stream() {
        return next
            .run(axum::extract::Request::from_parts(parts, body))
            .await;
    }
    let mut bytes = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return super::error::AppError::bad_request(
                "invalid_body",
                "could not read the request body",
            )
            .into_response();
        };
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen <= limit {
                bytes.extend_from_slice(&data);
            } else if seen > limit + DRAIN_PAST_LIMIT {
                break;
            }
        }
    }
    if seen > limit {
        return super::error::AppError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "request body is too large",
        )
        .into_response();
    }
    next.run(axum::extract::Request::from_parts(parts, Body::from(bytes)))
        .await
}

use axum::response::IntoResponse as _;
