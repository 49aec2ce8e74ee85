//! The route table: every method and path the server answers, who may call
//! it, and its handler. [`super::app`] builds the router by walking this
//! table, and [`list`] gives the same table without handlers, so that a test
//! can try every route and a new route cannot be served without saying who
//! may call it.
//!
//! A [`Access::Session`] route is wrapped in [`RequireSession`] here, before
//! any handler or extractor runs: without a live session it answers 401 JSON
//! (`not_logged_in`) whatever its path parameters or body.

use std::convert::Infallible;

use axum::extract::{FromRequestParts, Request};
use axum::handler::Handler;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use tower::Service;

use super::around::{Around, AroundLayer};
use super::session::CurrentUser;
use super::{
    apps, container_create, containers, openapi, ports, session, system, tasks, AppState, PREFIXES,
};
use crate::dashboard;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone; the text says why that is safe.
    Public(&'static str),
    /// Only a caller with a live session.
    Session,
}

/// Where a route's path lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Under each of [`PREFIXES`].
    Api,
    /// At the root, as written.
    Root,
}

/// One method on one path, as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRoute {
    /// The method.
    pub method: Method,
    /// The full path, with axum's `{param}` placeholders
    /// (e.g. `/api/v1/background/{target}`).
    pub path: String,
    /// Who may call it.
    pub access: Access,
}

/// One route of the table, with its handler.
pub(super) struct Entry {
    method: Method,
    path: &'static str,
    scope: Scope,
    access: Access,
    handler: MethodRouter<AppState>,
}

/// A route under every API prefix.
pub(super) fn entry<H, T>(method: Method, path: &'static str, access: Access, handler: H) -> Entry
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone())
        .unwrap_or_else(|_| panic!("{method} is not a routable method"));
    Entry {
        method,
        path,
        scope: Scope::Api,
        access,
        handler: on(filter, handler),
    }
}

const LOGIN: Access = Access::Public("logging in is how a caller gets a session");
const LOGOUT: Access = Access::Public(
    "idempotent: it ends the session named by the cookie, if any, and clears the cookie; \
     without one there is nothing to end and it reveals nothing",
);
const OPENAPI: Access = Access::Public(
    "the API's own description, the same for every caller; tools read it before they log in",
);
const DASHBOARD: Access = Access::Public(
    "the dashboard's static page, scripts and style, embedded in the binary; \
     it holds no data and logs in through the API",
);
const METRICS: Access = Access::Public(
    "Prometheus scrapes without a cookie; it holds counts by category and state, \
     no task, user, parameter or secret",
);

/// The route lists of the areas that keep theirs beside their handlers.
const AREAS: &[fn() -> Vec<Entry>] = &[
    super::audit::routes,
    super::bridge::routes,
    super::catalog::routes,
    super::events::routes,
    super::images::routes,
    super::networks::routes,
    super::preferences::routes,
    super::registries::routes,
    super::report::routes,
    super::resources::routes,
    super::schedules::routes,
    super::sharefolder::routes,
    super::volumes::routes,
    super::webhooks::routes,
    super::workspace::routes,
];

/// Every route, with its handler, by area. A listing answers with and
/// without its final `/`.
fn table() -> Vec<Entry> {
    use Access::Session as S;
    use Method as M;
    let mut all = vec![
        entry(M::POST, "/login", LOGIN, session::login),
        entry(M::GET, "/login_refresh", S, session::login_refresh),
        entry(M::PUT, "/logout", LOGOUT, session::logout),
        entry(M::GET, "/me", S, session::me),
        entry(M::GET, "/openapi.json", OPENAPI, openapi::serve),
    ];
    for path in ["/background", "/background/"] {
        all.push(entry(M::GET, path, S, tasks::list));
        all.push(entry(M::DELETE, path, S, tasks::delete_finished));
    }
    all.extend([
        entry(M::GET, "/background/events", S, tasks::events),
        entry(M::POST, "/background/{target}", S, tasks::submit),
        entry(M::DELETE, "/background/{target}", S, tasks::delete_one),
        entry(M::GET, "/background/{target}/log", S, tasks::log),
    ]);
    for path in ["/container", "/container/"] {
        all.push(entry(M::GET, path, S, containers::list));
    }
    all.extend([
        entry(M::POST, "/container", S, container_create::create),
        entry(
            M::GET,
            "/container/docker/getid/{name}",
            S,
            containers::get_id,
        ),
        entry(M::GET, "/container/{type}/{id}", S, containers::get),
        entry(M::DELETE, "/container/{type}/{id}", S, containers::delete),
        entry(
            M::GET,
            "/container/{type}/{id}/inspect",
            S,
            containers::inspect,
        ),
        entry(M::GET, "/container/{type}/{id}/logs", S, containers::logs),
        entry(
            M::PUT,
            "/container/{type}/{id}/{action}",
            S,
            containers::action,
        ),
    ]);
    for path in ["/apps", "/apps/"] {
        all.push(entry(M::GET, path, S, apps::list));
    }
    all.extend([
        entry(M::GET, "/apps/{name}", S, apps::get),
        entry(M::DELETE, "/apps/{name}", S, apps::delete),
        entry(M::PUT, "/apps/{name}/{action}", S, apps::action),
        entry(M::GET, "/template/{name}/wizard", S, apps::template_wizard),
    ]);
    all.extend([
        entry(M::GET, "/system", S, system::info),
        entry(M::GET, "/system/resource", S, system::resource),
        entry(M::GET, "/system/port/{protocol}/{port}", S, ports::port),
    ]);
    // The areas of the API v1 beyond the background tasks, each in its own
    // module with its own routes.
    for area in AREAS {
        all.extend(area());
    }
    let root = |e: Entry| Entry {
        scope: Scope::Root,
        ..e
    };
    all.extend([
        root(entry(M::GET, "/metrics", METRICS, super::metrics)),
        root(entry(M::GET, "/", DASHBOARD, dashboard::index)),
        root(entry(
            M::GET,
            "/dashboard/{file}",
            DASHBOARD,
            dashboard::file,
        )),
    ]);
    all
}

/// Every route the server answers, each prefix spelled out.
pub fn list() -> Vec<ApiRoute> {
    let mut out = Vec::new();
    for e in table() {
        let paths: Vec<String> = match e.scope {
            Scope::Api => PREFIXES.iter().map(|p| format!("{p}{}", e.path)).collect(),
            Scope::Root => vec![e.path.to_string()],
        };
        for path in paths {
            out.push(ApiRoute {
                method: e.method.clone(),
                path,
                access: e.access,
            });
        }
    }
    out
}

/// The router of the whole table (handlers still need the state). Each API
/// route is registered under each prefix on one flat router: a nested router
/// per prefix cost a second route lookup, a prefix strip and a clone of the
/// nested service on every request.
pub(super) fn router(state: &AppState) -> Router<AppState> {
    let mut root = Router::new();
    for e in table() {
        let handler = match e.access {
            Access::Public(_) => e.handler,
            Access::Session => e
                .handler
                .route_layer(AroundLayer(RequireSession(state.clone()))),
        };
        // Routes on one path with different methods merge.
        match e.scope {
            Scope::Api => {
                for prefix in PREFIXES {
                    root = root.route(&format!("{prefix}{}", e.path), handler.clone());
                }
            }
            Scope::Root => root = root.route(e.path, handler),
        }
    }
    root
}

/// Refuses a request without a live session (401 JSON) before its handler
/// and extractors run, and hands the caller's identity to the handler's
/// [`CurrentUser`] through the request's extensions (one session lookup per
/// request).
#[derive(Clone)]
struct RequireSession(AppState);

impl Around for RequireSession {
    async fn around<S>(self, request: Request, mut inner: S) -> Response
    where
        S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        S::Future: Send,
    {
        let (mut parts, body) = request.into_parts();
        match CurrentUser::from_request_parts(&mut parts, &self.0).await {
            Ok(user) => {
                // The audit record of the call names its user.
                if let Some(who) = parts.extensions.get::<super::audit::Who>() {
                    who.set(&user.0.username);
                }
                parts.extensions.insert(user);
                let Ok(answer) = inner.call(Request::from_parts(parts, body)).await;
                answer
            }
            Err(refused) => refused.into_response(),
        }
    }
}
