//! A minimal HTTP/1 client on the engine's Unix socket, for the calls bollard
//! cannot make right: those carrying `X-Registry-Auth` (see [`super::auth`])
//! and those streaming a request body from a file.
//!
//! An engine that dies closes its socket, and the call fails at once. One
//! that stops answering without closing it (frozen, or wedged) is caught by
//! a stall limit: when no byte has moved either way (request body sent or
//! answer received) for that long, the call fails, and the connection is
//! closed. Every long call goes through here: pulls, pushes, saves,
//! exports, imports.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, BodyStream, Empty};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::runtime::Error;

/// Engine API version spoken (Docker Engine 20.10 and later).
pub const API_VERSION: &str = "v1.41";

/// Bytes read from the engine socket at a time.
const READ_BUFFER: usize = 256 << 10;

/// A request body.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// An empty request body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// How long a call may go without a byte moving before it fails, unless
/// configured (`STEVEDORE_DOCKER_STALL_SECS`): long enough for an engine
/// that works silently (loading a large image it was sent).
pub const DEFAULT_STALL: Duration = Duration::from_secs(120);

/// Talks HTTP to the engine over its Unix socket.
#[derive(Debug, Clone)]
pub struct RawClient {
    socket: PathBuf,
    stall: Duration,
}

/// When a byte last moved on one call's connection.
struct Activity {
    since: Instant,
    /// Milliseconds after `since`.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            since: Instant::now(),
            last: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let now = self.since.elapsed().as_millis() as u64;
        self.last.fetch_max(now, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.since.elapsed().saturating_sub(last)
    }

    /// Resolves once nothing has moved for `limit`.
    async fn stalled(&self, limit: Duration) {
        loop {
            let idle = self.idle();
            if idle >= limit {
                return;
            }
            tokio::time::sleep(limit - idle).await;
        }
    }
}

fn stall_error(limit: Duration) -> Error {
    Error::Runtime(format!(
        "the Docker engine stopped answering: nothing moved for {} s",
        limit.as_secs_f64()
    ))
}

/// Aborts the connection task when the response is dropped, so a dropped
/// pull or push closes the socket and the engine stops the operation.
struct ConnGuard(tokio::task::JoinHandle<()>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A streaming response whose connection lives as long as it does.
pub struct Streaming {
    response: Response<hyper::body::Incoming>,
    _conn: ConnGuard,
    activity: Arc<Activity>,
    stall: Duration,
}

impl RawClient {
    /// A client for the engine listening on `socket`; a call fails once
    /// nothing has moved on its connection for `stall`.
    pub fn new(socket: PathBuf, stall: Duration) -> RawClient {
        RawClient { socket, stall }
    }

    /// Send one request; a non-2xx answer becomes an error with the engine's message.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Result<Streaming, Error> {
        let stream = UnixStream::connect(&self.socket).await.map_err(|e| {
            Error::Runtime(format!(
                "cannot reach the Docker engine at {}: {e}",
                self.socket.display()
            ))
        })?;
        // Large reads: a save or export moves hundreds of MiB through here.
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .read_buf_exact_size(Some(READ_BUFFER))
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Error::Runtime(format!("Docker engine handshake: {e}")))?;
        let conn = ConnGuard(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://localhost/{API_VERSION}{path_and_query}"))
            .header(hyper::header::HOST, "localhost");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        // Every frame of the body handed to the connection counts as
        // movement (the connection takes the next only once this one is
        // written, so a frozen engine stops the frames too).
        let activity = Activity::new();
        let sent = activity.clone();
        let body = body
            .map_frame(move |frame| {
                sent.touch();
                frame
            })
            .boxed();
        let request = request
            .body(body)
            .map_err(|e| Error::Other(format!("request: {e}")))?;
        let response = tokio::select! {
            r = sender.send_request(request) => r
                .map_err(|e| Error::Runtime(format!("Docker engine request failed: {e}")))?,
            () = activity.stalled(self.stall) => return Err(stall_error(self.stall)),
        };
        activity.touch();
        let status = response.status();
        if status.is_success() {
            return Ok(Streaming {
                response,
                _conn: conn,
                activity,
                stall: self.stall,
            });
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Err(engine_error(status, &body))
    }
}

/// Map an engine error answer to a WIT error carrying the engine's message.
pub fn engine_error(status: StatusCode, body: &[u8]) -> Error {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    match status {
        StatusCode::NOT_FOUND => Error::NotFound(message),
        StatusCode::CONFLICT => Error::Conflict(message),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::Denied(message),
        StatusCode::BAD_REQUEST => Error::InvalidParams(message),
        _ => Error::Runtime(message),
    }
}

impl Streaming {
    /// The body as byte chunks; an error, then the end, once nothing has
    /// come for the stall limit.
    pub fn bytes(self) -> impl Stream<Item = Result<Bytes, Error>> + Send {
        let Streaming {
            response,
            _conn: guard,
            activity,
            stall,
        } = self;
        let frames = BodyStream::new(response.into_body());
        futures::stream::unfold(
            Some((Box::pin(frames), guard, activity)),
            move |state| async move {
                let (mut frames, guard, activity) = state?;
                loop {
                    let frame = tokio::select! {
                        f = frames.next() => f,
                        () = activity.stalled(stall) => {
                            // Closing the connection (the guard) stops the engine's side too.
                            drop(guard);
                            return Some((Err(stall_error(stall)), None));
                        }
                    };
                    activity.touch();
                    match frame {
                        None => return None,
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                return Some((Ok(data), Some((frames, guard, activity))));
                            }
                        }
                        Some(Err(e)) => {
                            let e = Error::Runtime(format!("Docker engine stream: {e}"));
                            return Some((Err(e), None));
                        }
                    }
                }
            },
        )
    }

    /// The body as a stream of newline-separated JSON messages.
    pub fn json_lines<T: DeserializeOwned + Send + 'static>(
        self,
    ) -> impl Stream<Item = Result<T, Error>> + Send {
        let mut buffer = Vec::new();
        self.bytes()
            .map(move |chunk| {
                let mut out = Vec::new();
                match chunk {
                    Err(e) => out.push(Err(e)),
                    Ok(bytes) => {
                        buffer.extend_from_slice(&bytes);
                        while let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = buffer.drain(..=pos).collect();
                            if line.iter().all(u8::is_ascii_whitespace) {
                                continue;
                            }
                            out.push(serde_json::from_slice(&line).map_err(|e| {
                                Error::Runtime(format!("unexpected engine message: {e}"))
                            }));
                        }
                    }
                }
                futures::stream::iter(out)
            })
            .flatten()
    }
}

/// Percent-encode a query value.
pub fn query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
