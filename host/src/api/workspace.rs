//! `GET wizard/workspace` and `GET wizard/workspace/status`: where this
//! server keeps its images' and containers' data (its data folder), as
//! Container Station's first-run wizard reads it. The folder cannot be
//! moved through the API, so the status is always a finished one.

use axum::extract::State;
use axum::http::Method;
use axum::Json;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::routes::{entry, Access, Entry};
use super::session::CurrentUser;
use super::AppState;

/// `GET wizard/workspace`, as recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct Workspace {
    /// The data folder, ending in `/`.
    data_path: String,
}

/// `GET wizard/workspace/status`, as recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceStatus {
    /// Whether the folder is reachable.
    access: bool,
    /// The data folder, ending in `/`.
    data_path: String,
    /// Always `false`.
    is_support_zfs: bool,
    /// A move's progress: `""` (none under way).
    percentage: String,
    /// A move's speed: `""`.
    speed: String,
    /// `"success"`: no move under way.
    status: String,
    /// `""`.
    total_size: String,
    /// `""`.
    transfer_size: String,
}

fn data_path(state: &AppState) -> String {
    let mut path = state.data_dir.display().to_string();
    if !path.ends_with('/') {
        path.push('/');
    }
    path
}

/// `GET wizard/workspace`.
#[utoipa::path(get, path = "/wizard/workspace", tag = "system",
    summary = "Where images and containers are kept",
    responses(
        (status = 200, description = "The data folder", body = Workspace),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
    ))]
pub async fn workspace(State(state): State<AppState>, _user: CurrentUser) -> Json<Workspace> {
    Json(Workspace {
        data_path: data_path(&state),
    })
}

/// `GET wizard/workspace/status`.
#[utoipa::path(get, path = "/wizard/workspace/status", tag = "system",
    summary = "The data folder, and that no move of it is under way",
    responses(
        (status = 200, description = "The status", body = WorkspaceStatus),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
    ))]
pub async fn status(State(state): State<AppState>, _user: CurrentUser) -> Json<WorkspaceStatus> {
    Json(WorkspaceStatus {
        access: state.data_dir.is_dir(),
        data_path: data_path(&state),
        is_support_zfs: false,
        percentage: String::new(),
        speed: String::new(),
        status: "success".into(),
        total_size: String::new(),
        transfer_size: String::new(),
    })
}

/// The routes of this area.
pub(super) fn routes() -> Vec<Entry> {
    vec![
        entry(Method::GET, "/wizard/workspace", Access::Session, workspace),
        entry(
            Method::GET,
            "/wizard/workspace/status",
            Access::Session,
            status,
        ),
    ]
}

#[derive(OpenApi)]
#[openapi(
    paths(workspace, status),
    components(schemas(Workspace, WorkspaceStatus))
)]
struct Doc;

/// The OpenAPI document of this area.
pub(super) fn doc() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}
