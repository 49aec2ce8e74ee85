//! One proxied exchange: the request passed on with its body streamed, the
//! answer streamed back, and a `101 Switching Protocols` (WebSocket)
//! turned into a tunnel of bytes between the two upgraded connections.

use std::net::SocketAddr;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use super::headers;
use super::Proxy;
use crate::api::AppError;
use crate::apps::virtual_paths::Route;

/// The HTTP client to applications: hyper-util's pooled client over plain
/// TCP (applications speak HTTP/1 on their published port).
pub type Upstream = Client<HttpConnector, Body>;

/// The 502 for an application that cannot be reached.
pub fn down(message: impl Into<String>) -> Response<Body> {
    error(StatusCode::BAD_GATEWAY, "app_down", message)
}

/// A JSON error shaped as the API's ([`AppError`]).
pub fn error(
    status: StatusCode,
    reason: &'static str,
    message: impl Into<String>,
) -> Response<Body> {
    axum::response::IntoResponse::into_response(AppError::new(status, reason, message))
}

/// Pass `req` from `remote` (its path relative to the application:
/// `rest`) to the application at `authority`. The proxy's body limit caps
/// the request body, which is streamed, never held whole.
pub async fn forward(
    proxy: &Proxy,
    mut req: Request<Incoming>,
    route: &Route,
    rest: &str,
    authority: &str,
    remote: SocketAddr,
) -> Response<Body> {
    let body_limit = proxy.body_limit;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > body_limit as u64) {
        let mut resp = error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "request body is too large",
        );
        // The body is left unread: this connection cannot carry another request.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return resp;
    }
    let upgrade = headers::upgrade_of(req.headers());
    let client_side = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let uri: Uri = match format!("http://{authority}{rest}{query}").parse() {
        Ok(u) => u,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_path",
                "the request path cannot be passed on",
            )
        }
    };
    let (mut parts, body) = req.into_parts();
    let mut h = std::mem::take(&mut parts.headers);
    headers::remove_hop_by_hop(&mut h);
    headers::strip_session_cookies(&mut h);
    headers::set_forwarded(&mut h, remote, &route.prefix);
    if let Some(protocol) = &upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, protocol.clone());
    }
    let mut out = Request::new(Body::new(http_body_util::Limited::new(body, body_limit)));
    *out.method_mut() = parts.method;
    *out.uri_mut() = uri;
    *out.headers_mut() = h;
    let mut resp = match proxy.client.request(out).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(app = %route.app, "proxy: {e:?}");
            return down(format!(
                "application {} did not answer on {authority}",
                route.app
            ));
        }
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_side) = client_side else {
            return down(format!(
                "application {} switched protocols unasked",
                route.app
            ));
        };
        let app_side = hyper::upgrade::on(&mut resp);
        tunnel(client_side, app_side, route.app.clone(), proxy.stop.clone());
        let (mut parts, _) = resp.into_parts();
        let protocol = parts.headers.get(header::UPGRADE).cloned();
        headers::remove_hop_by_hop(&mut parts.headers);
        headers::strip_session_set_cookies(&mut parts.headers);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(p) = protocol {
            parts.headers.insert(header::UPGRADE, p);
        }
        return Response::from_parts(parts, Body::empty());
    }
    let (mut parts, body) = resp.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers);
    headers::strip_session_set_cookies(&mut parts.headers);
    Response::from_parts(parts, Body::new(body))
}

/// Copy bytes both ways between the client's and the application's
/// upgraded connections until either closes or the server stops.
fn tunnel(
    client_side: hyper::upgrade::OnUpgrade,
    app_side: hyper::upgrade::OnUpgrade,
    app: String,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let (client_io, app_io) = match tokio::try_join!(client_side, app_side) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(%app, "proxy: upgrade failed: {e}");
                return;
            }
        };
        let mut client_io = TokioIo::new(client_io);
        let mut app_io = TokioIo::new(app_io);
        tokio::select! {
            r = tokio::io::copy_bidirectional(&mut client_io, &mut app_io) => {
                if let Err(e) = r {
                    tracing::debug!(%app, "proxy: tunnel ended: {e}");
                }
            }
            _ = stop.cancelled() => {}
        }
    });
}
