//! The accept loop shared by the API's listener and the applications'
//! proxy: plain HTTP/1 with a header read time limit, one task per
//! connection, and a graceful end when the server stops.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};

/// Serve every connection `listener` accepts with the service
/// `service(remote)` builds for it, until `stop` is cancelled; then let
/// each connection end the request it is answering and wait for them all.
///
/// A client must send a request's headers within `header_timeout` or its
/// connection is closed, so connections that never finish a request do not
/// pile up. Connections are served with upgrades, as axum's `serve` does:
/// a service that answers `101 Switching Protocols` gets the connection.
/// `log_prefix` starts the log lines about accepting and ending
/// connections (`"proxy: "` for the proxy, empty for the API).
pub async fn serve<S, B>(
    listener: tokio::net::TcpListener,
    header_timeout: Duration,
    stop: tokio_util::sync::CancellationToken,
    log_prefix: &'static str,
    service: impl Fn(SocketAddr) -> S,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // HTTP/1 only, served as such from the first byte: hyper-util's
    // `auto` builder would first read the client's opening bytes to tell
    // HTTP/1 from HTTP/2, with no time limit, so a silent connection would
    // stay open for good.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let builder = Arc::new(builder);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, most likely: back off a moment
                // instead of spinning on the error.
                tracing::warn!("{log_prefix}accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = service(remote);
        let builder = builder.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%remote, "{log_prefix}connection ended: {e}");
                    }
                    return;
                }
                _ = stop.cancelled() => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
    while connections.join_next().await.is_some() {}
}
