//! The applications' reverse proxy: `http://<proxy>/<virtual_path>/...`
//! goes to the application's HTTP port, as Container Station's web server
//! did for `virtual_path`.
//!
//! - It listens on its own address (`[proxy] listen`,
//!   `STEVEDORE_PROXY_LISTEN`; off by default), plain HTTP/1, with the
//!   API's header read time limit and body size limit.
//! - Each request reads the application records afresh ([`routes`]), so
//!   an application installed, moved to another path or deleted changes
//!   the routes at once, with no cache to go stale. `/<virtual_path>`
//!   alone is redirected to `/<virtual_path>/`; the application gets the
//!   path after the prefix, and `X-Forwarded-Prefix` names the prefix.
//! - It forwards only to the host port a running container of the
//!   application publishes ([`upstream`]), found through the policy guard
//!   as the application's owner.
//! - Bodies stream both ways; a `101 Switching Protocols` (WebSocket)
//!   becomes a tunnel ([`forward`]).
//! - Stevedore's session cookie is never passed on, nor may an answer set
//!   it ([`headers`]).
//! - An unknown path is a 404 JSON error (`unknown_path`), an application
//!   that is stopped or does not answer a 502 (`app_down`), shaped as the
//!   API's errors.
//!
//! The client side is hyper-util's pooled client and hyper's upgrades,
//! already this server's HTTP stack (axum serves the API on them): no
//! second HTTP implementation, and `hyper-reverse-proxy` is still on hyper
//! 0.14.

pub mod config;
pub mod forward;
pub mod headers;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio_util::sync::CancellationToken;

use crate::apps::virtual_paths::{self, Match};
use crate::runtime::apps::AppStore;
use crate::runtime::{AppFolders, Backends};
use upstream::Upstreams;

/// How long connecting to an application may take before it is "down".
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The proxy's state, shared by its connections.
pub struct Proxy {
    upstreams: Upstreams,
    client: forward::Upstream,
    /// Largest request body passed on, in bytes (the API's `max_body_bytes`).
    body_limit: usize,
    /// Cancelled when the server stops: open tunnels end.
    stop: CancellationToken,
}

impl Proxy {
    /// A proxy to the applications of `apps`, whose containers are looked
    /// up in `runtime` (the guarded one); `docker_host` is the engine's
    /// endpoint (where published ports are, for a remote engine).
    pub fn new(
        runtime: Backends,
        apps: Arc<AppStore>,
        docker_host: Option<&str>,
        body_limit: usize,
        stop: CancellationToken,
    ) -> Proxy {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Proxy {
            upstreams: Upstreams {
                runtime,
                apps,
                unspecified: upstream::engine_host(docker_host),
            },
            client,
            body_limit,
            stop,
        }
    }

    /// Answer one request from `remote`.
    pub async fn handle(&self, req: Request<Incoming>, remote: SocketAddr) -> Response<Body> {
        let records = match self.upstreams.apps.app_records().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("proxy: reading the application records: {e}");
                return forward::down("the application records cannot be read");
            }
        };
        let table = virtual_paths::routes(&records);
        let path = req.uri().path().to_string();
        match virtual_paths::find(&table, &path) {
            None => forward::error(
                StatusCode::NOT_FOUND,
                "unknown_path",
                format!("no application is served at `{path}`"),
            ),
            Some(Match::Bare(route)) => {
                let query = req
                    .uri()
                    .query()
                    .map(|q| format!("?{q}"))
                    .unwrap_or_default();
                let to = format!("{}/{query}", route.prefix);
                let mut resp = Response::new(Body::empty());
                *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
                if let Ok(v) = HeaderValue::from_str(&to) {
                    resp.headers_mut().insert(header::LOCATION, v);
                }
                resp
            }
            Some(Match::Forward { route, rest }) => match self.upstreams.resolve(route).await {
                Ok(authority) => forward::forward(self, req, route, rest, &authority, remote).await,
                Err(why) => forward::down(why),
            },
        }
    }
}

/// Serve `proxy` on every connection `listener` accepts until `stop` is
/// cancelled, then let each connection end the request it is answering.
/// A client must send a request's headers within `header_timeout`, as on
/// the API's listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    proxy: Arc<Proxy>,
    header_timeout: Duration,
    stop: CancellationToken,
) {
    crate::api::listen::serve(listener, header_timeout, stop, "proxy: ", |remote| {
        let proxy = proxy.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let proxy = proxy.clone();
            async move { Ok::<_, std::convert::Infallible>(proxy.handle(req, remote).await) }
        })
    })
    .await
}
