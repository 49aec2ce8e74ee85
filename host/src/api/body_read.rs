//! Every request body read whole before its handler runs.
//!
//! A handler that answers without reading the body (no session, wrong
//! method or path) would leave bytes on the connection, and the server
//! would close it after the answer. Reading every body first (up to the
//! limit) leaves nothing behind. When a body cannot be read whole (over the
//! limit, or broken), the answer says `Connection: close`, which keeps a
//! client from sending its next request on a connection about to close
//! (it would see that as a dropped request).

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use bytes::BytesMut;
use http_body_util::BodyExt;
use hyper::body::Body as _;

use super::error::AppError;

/// Bytes past the body limit still read (and dropped) before answering
/// 413, so that a client sending a slightly too large body reads the answer
/// instead of failing to write into a closed connection.
const DRAIN_PAST_LIMIT: usize = 8 << 20;

/// Read `body` whole, up to `limit` bytes: the same body, in memory. A body
/// over the limit is read on for a while and refused with 413; one that
/// breaks off, with 400. Either way the rest of it is left unread.
pub async fn whole(mut body: Body, limit: usize) -> Result<Body, AppError> {
    if body.is_end_stream() {
        return Ok(body);
    }
    // Most bodies arrive in one frame: kept as it is, without a copy.
    let mut first: Option<Bytes> = None;
    let mut more = BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(AppError::bad_request(
                "invalid_body",
                "could not read the request body",
            ));
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen > limit {
            if seen > limit + DRAIN_PAST_LIMIT {
                break;
            }
            continue;
        }
        match &first {
            None if more.is_empty() => first = Some(data),
            _ => {
                if let Some(f) = first.take() {
                    more.extend_from_slice(&f);
                }
                more.extend_from_slice(&data);
            }
        }
    }
    if seen > limit {
        return Err(AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "request body is too large",
        ));
    }
    Ok(Body::from(first.unwrap_or_else(|| more.freeze())))
}
