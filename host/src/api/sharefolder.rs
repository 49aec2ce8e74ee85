//! `GET sharefolder/`: the caller's part of the share root, as Container
//! Station's create wizard browses it to pick a folder to mount.
//!
//! | method and path (after a prefix) | answer |
//! |---|---|
//! | `GET sharefolder/` (`?path=`, `?size=true`) | `[{name, isDir, write}]`, folders first; with `size`, each entry also has `totalSize` (its file system) and `usedSize` (`"565.9G"`, `"711M"`) |
//!
//! `path` is relative to the caller's share folder (their policy's `share`;
//! an admin's is the whole root), and is resolved beneath it by the kernel
//! with no link followed ([`crate::runtime::folders`]): a link is listed,
//! never entered. A caller whose folder does not exist yet sees an empty
//! list. Everything the caller can list is theirs to write.

use axum::extract::{Query, State};
use axum::http::Method;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::containers::runtime_error;
use super::extract::Api;
use super::routes::{entry, Access, Entry};
use super::session::CurrentUser;
use super::{AppError, AppState};
use crate::runtime::folders::Folder;
use crate::runtime::Error as RtError;

/// The query of `GET sharefolder/`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// A folder beneath the caller's share folder (default: the folder itself).
    path: Option<String>,
    /// `true`: add `totalSize` and `usedSize` to each entry.
    size: Option<String>,
}

/// One entry, as recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShareEntry {
    /// Its name.
    name: String,
    /// Whether it is a folder.
    #[serde(rename = "isDir")]
    is_dir: bool,
    /// Whether the caller may write it.
    write: bool,
    /// The size of its file system (`"217.3G"`), with `size=true`.
    #[serde(rename = "totalSize", skip_serializing_if = "Option::is_none")]
    total_size: Option<String>,
    /// What it uses (`"711M"`), with `size=true`.
    #[serde(rename = "usedSize", skip_serializing_if = "Option::is_none")]
    used_size: Option<String>,
}

/// Bytes as Container Station shows them: the largest unit that keeps the
/// number at 1 or more, one decimal below 1000 and none at 1000 or more
/// would round oddly (`"2.7G"`, `"12G"`, `"711M"`, `"565.9G"`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "K", "M", "G", "T", "P"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes}B");
    }
    let rounded = (value * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}{}", UNITS[unit])
    } else {
        format!("{rounded:.1}{}", UNITS[unit])
    }
}

fn flag(name: &str, value: Option<&str>) -> Result<bool, AppError> {
    match value {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(_) => Err(AppError::bad_request(
            "invalid_params",
            format!("{name}: must be true or false"),
        )),
    }
}

fn entries(folder: Folder) -> Vec<ShareEntry> {
    let total = folder.total_bytes.map(human_size);
    folder
        .entries
        .into_iter()
        .map(|e| ShareEntry {
            name: e.name,
            is_dir: e.is_dir,
            write: true,
            total_size: total.clone(),
            used_size: e.used_bytes.map(human_size),
        })
        .collect()
}

/// `GET sharefolder/`.
#[utoipa::path(get, path = "/sharefolder/", tag = "system",
    summary = "The caller's share folder",
    params(ListQuery),
    responses(
        (status = 200, description = "Its entries, folders first", body = [ShareEntry]),
        (status = 400, description = "`path` is not a folder, or leaves the share folder", body = super::error::ErrorBody),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "`path` leads out of the share folder through a link", body = super::error::ErrorBody),
        (status = 404, description = "No such folder", body = super::error::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    Api(Query(q)): Api<Query<ListQuery>>,
) -> Result<Json<Vec<ShareEntry>>, AppError> {
    let sizes = flag("size", q.size.as_deref())?;
    let asked = q.path.unwrap_or_default();
    if asked.contains('\0') || asked.split('/').any(|p| p == "..") {
        return Err(AppError::bad_request(
            "invalid_params",
            "path: must be a folder beneath your share folder, without `..`",
        ));
    }
    let policy = state.policies.of(&user.0.username);
    let own = policy.share.clone();
    let rel = policy.scope_path(&asked);
    let share = state.share.clone();
    let shown = asked.clone();
    let listed = tokio::task::spawn_blocking(move || share.list_folder(&rel, &shown, sizes))
        .await
        .map_err(AppError::internal)?;
    match listed {
        Ok(folder) => Ok(Json(entries(folder))),
        // A caller's own folder that was never made holds nothing yet.
        Err(RtError::NotFound(_)) if asked.trim_matches('/').is_empty() && !own.is_empty() => {
            Ok(Json(Vec::new()))
        }
        Err(RtError::NotFound(m)) => Err(AppError::not_found("unknown_folder", m)),
        Err(e) => Err(runtime_error(e)),
    }
}

/// The routes of this area.
pub(super) fn routes() -> Vec<Entry> {
    vec![
        entry(Method::GET, "/sharefolder/", Access::Session, list),
        entry(Method::GET, "/sharefolder", Access::Session, list),
    ]
}

#[derive(OpenApi)]
#[openapi(paths(list), components(schemas(ShareEntry)))]
struct Doc;

/// The OpenAPI document of this area.
pub(super) fn doc() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_recorded() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(711 * 1024 * 1024), "711M");
        assert_eq!(human_size(12 * 1024 * 1024 * 1024), "12G");
        assert_eq!(human_size(2_899_102_924), "2.7G");
        assert_eq!(human_size(4096), "4K");
    }
}
