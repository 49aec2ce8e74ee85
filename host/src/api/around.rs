//! Code that runs around a request, as a plain tower layer.
//!
//! `middleware::from_fn` does the same job, but besides boxing its future it
//! boxes the wrapped service again for its `Next` and runs its extractors
//! through their generic machinery on every request. Here an [`Around`]
//! gets the request and the wrapped service itself, ready to call; one box
//! per request remains (the future).

use std::convert::Infallible;
use std::future::Future;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use futures::future::BoxFuture;
use tower::{Layer, Service};

/// What runs around the requests of the service it wraps.
pub(super) trait Around: Clone + Send + 'static {
    /// Answer `request`, calling `inner` (ready) for it or not.
    fn around<S>(self, request: Request, inner: S) -> impl Future<Output = Response> + Send
    where
        S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        S::Future: Send;
}

/// Wraps a service in an [`Around`].
#[derive(Clone)]
pub(super) struct AroundLayer<A>(pub A);

impl<A: Clone, S> Layer<S> for AroundLayer<A> {
    type Service = AroundService<A, S>;
    fn layer(&self, inner: S) -> AroundService<A, S> {
        AroundService {
            around: self.0.clone(),
            inner,
        }
    }
}

/// The service of [`AroundLayer`].
#[derive(Clone)]
pub(super) struct AroundService<A, S> {
    around: A,
    inner: S,
}

impl<A, S> Service<Request> for AroundService<A, S>
where
    A: Around,
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The service that was made ready is the one to call (tower's rule);
        // a clone takes its place.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let around = self.around.clone();
        Box::pin(async move { Ok(around.around(request, inner).await) })
    }
}
