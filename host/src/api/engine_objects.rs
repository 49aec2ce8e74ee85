//! What the `networks` and `volumes` routes do alike: list, look up,
//! remove after a look-up, and prune one object at a time, each through
//! its own runtime calls ([`EngineObjects`]).

use axum::Json;
use serde_json::{json, Value};

use super::containers::context;
use super::networks::area_error;
use super::session::CurrentUser;
use super::{AppError, AppState};
use crate::runtime::guard::networks::{acts_on, is_own};
use crate::runtime::{CallContext, RtResult};

/// A kind of engine object the API lists, inspects and removes by one key.
pub(super) trait EngineObjects {
    /// What it is called in logs: `network`, `volume`.
    const NOUN: &'static str;
    /// The reason of a 404 for it.
    const UNKNOWN: &'static str;
    /// Every object, as the engine lists it.
    fn details(
        state: &AppState,
        cx: &CallContext,
    ) -> impl std::future::Future<Output = RtResult<Vec<Value>>> + Send;
    /// One object, as the engine inspects it.
    fn inspect(
        state: &AppState,
        cx: &CallContext,
        key: String,
    ) -> impl std::future::Future<Output = RtResult<Value>> + Send;
    /// Remove one object.
    fn remove(
        state: &AppState,
        cx: &CallContext,
        key: String,
    ) -> impl std::future::Future<Output = RtResult<()>> + Send;
}

/// The networks of the engine.
pub(super) struct Networks;

impl EngineObjects for Networks {
    const NOUN: &'static str = "network";
    const UNKNOWN: &'static str = "unknown_network";
    async fn details(state: &AppState, cx: &CallContext) -> RtResult<Vec<Value>> {
        state.runtime.networks.network_details(cx).await
    }
    async fn inspect(state: &AppState, cx: &CallContext, key: String) -> RtResult<Value> {
        state.runtime.networks.network_inspect(cx, key).await
    }
    async fn remove(state: &AppState, cx: &CallContext, key: String) -> RtResult<()> {
        state.runtime.networks.network_remove(cx, key).await
    }
}

/// The volumes of the engine.
pub(super) struct Volumes;

impl EngineObjects for Volumes {
    const NOUN: &'static str = "volume";
    const UNKNOWN: &'static str = "unknown_volume";
    async fn details(state: &AppState, cx: &CallContext) -> RtResult<Vec<Value>> {
        state.runtime.volumes.volume_details(cx).await
    }
    async fn inspect(state: &AppState, cx: &CallContext, key: String) -> RtResult<Value> {
        state.runtime.volumes.volume_inspect(cx, key).await
    }
    async fn remove(state: &AppState, cx: &CallContext, key: String) -> RtResult<()> {
        state.runtime.volumes.volume_remove(cx, key).await
    }
}

/// Every object of kind `K` the caller sees (the guard filters).
pub(super) async fn all<K: EngineObjects>(
    state: &AppState,
    cx: &CallContext,
) -> Result<Vec<Value>, AppError> {
    K::details(state, cx)
        .await
        .map_err(|e| area_error(e, K::UNKNOWN))
}

/// One object of kind `K`, as the engine inspects it.
pub(super) async fn found<K: EngineObjects>(
    state: &AppState,
    cx: &CallContext,
    key: String,
) -> Result<Value, AppError> {
    K::inspect(state, cx, key)
        .await
        .map_err(|e| area_error(e, K::UNKNOWN))
}

/// Remove one object of kind `K`, looked up first so that an unknown one is
/// 404 whoever asks; answers `{}`.
pub(super) async fn removed<K: EngineObjects>(
    state: &AppState,
    user: &CurrentUser,
    key: String,
) -> Result<Json<Value>, AppError> {
    let cx = context(user);
    found::<K>(state, &cx, key.clone()).await?;
    K::remove(state, &cx, key)
        .await
        .map_err(|e| area_error(e, K::UNKNOWN))?;
    Ok(Json(json!({})))
}

/// Remove the unused objects of kind `K` the caller may act on (an admin:
/// every one the policy reaches; anyone else: their own), one at a time.
/// `key` names an object's `(removal key, name)`, `None` to leave it alone.
/// Answers the names removed; one in use or gone meanwhile is left alone.
pub(super) async fn pruned<K: EngineObjects>(
    state: &AppState,
    user: &CurrentUser,
    key: impl Fn(&Value) -> Option<(&str, &str)>,
) -> Result<Vec<String>, AppError> {
    let cx = context(user);
    let policy = state.policies.of(&user.0.username);
    let mut deleted = Vec::new();
    for object in all::<K>(state, &cx).await? {
        let mine = if policy.admin {
            acts_on(&policy, &object)
        } else {
            is_own(&policy, &object)
        };
        let Some((key, name)) = key(&object).filter(|_| mine) else {
            continue;
        };
        match K::remove(state, &cx, key.to_string()).await {
            Ok(()) => deleted.push(name.to_string()),
            Err(e) => tracing::debug!(
                kind = K::NOUN,
                name,
                error = %e.message(),
                "prune left a {}",
                K::NOUN
            ),
        }
    }
    Ok(deleted)
}
