//! `GET system/report`: a diagnosis archive for an admin to attach to a
//! bug report (`stevedore-report.tar.gz`):
//!
//! - `versions.json`: this server, the engines (as `GET system` reads them),
//!   the kernel, the loaded task categories;
//! - `config.txt`: the effective configuration, every secret and password
//!   hash shown as `******`;
//! - `log.txt`: the last lines the server logged ([`crate::log_tail`]).
//!
//! Nothing in it is a secret: the configuration's secrets are [`Secret`]s,
//! whose `Debug` hides them, and password hashes are hidden when the text
//! is made ([`config_text`]).
//!
//! [`Secret`]: crate::secret::Secret

use axum::extract::State;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa::OpenApi;

use super::containers::context;
use super::routes::{entry, Access, Entry};
use super::session::CurrentUser;
use super::{AppError, AppState};
use crate::runtime::RuntimeKind;

/// The configuration as the report shows it: its `Debug` text (secrets are
/// already hidden there) with every password hash hidden too.
pub fn config_text(debug: &str) -> String {
    debug
        .lines()
        .map(|line| match line.split_once("password_hash: ") {
            Some((before, _)) => format!("{before}password_hash: \"******\","),
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn kernel() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{} {}", std::env::consts::OS, release.trim())
}

fn add(
    archive: &mut tar::Builder<impl std::io::Write>,
    name: &str,
    data: &[u8],
) -> std::io::Result<()> {
    let mut head = tar::Header::new_gnu();
    head.set_size(data.len() as u64);
    head.set_mode(0o600);
    head.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    head.set_cksum();
    archive.append_data(&mut head, name, data)
}

fn archive(files: &[(&str, Vec<u8>)]) -> std::io::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, data) in files {
        add(&mut tar, name, data)?;
    }
    tar.into_inner()?.finish()
}

/// `GET system/report`.
#[utoipa::path(get, path = "/system/report", tag = "system",
    summary = "A diagnosis archive (admins only)",
    responses(
        (status = 200, description = "`stevedore-report.tar.gz`: versions.json, config.txt (secrets hidden), log.txt", content_type = "application/gzip", body = Vec<u8>),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
        (status = 403, description = "Not an admin", body = super::error::ErrorBody),
    ))]
pub async fn report(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Response, AppError> {
    if !user.0.is_admin {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "admin_only",
            "the diagnosis report is for admins only",
        ));
    }
    let cx = context(&user);
    let containers = &state.runtime.containers;
    let (docker, lxc) = tokio::join!(
        containers.engine_version(&cx, RuntimeKind::Docker),
        containers.engine_version(&cx, RuntimeKind::Lxc)
    );
    let engine = |v: crate::runtime::RtResult<String>| match v {
        Ok(v) => json!({"version": v}),
        Err(e) => json!({"error": e.message()}),
    };
    let categories: Vec<String> = state
        .queue
        .category_docs()
        .into_iter()
        .map(|c| c.name)
        .collect();
    let versions = json!({
        "stevedore": env!("CARGO_PKG_VERSION"),
        "kernel": kernel(),
        "docker": engine(docker),
        "lxc": engine(lxc),
        "categories": categories,
    });
    let mut log = crate::log_tail::lines().join("\n");
    log.push('\n');
    let files = [
        (
            "versions.json",
            serde_json::to_vec_pretty(&versions).unwrap_or_default(),
        ),
        ("config.txt", state.config_text.clone().into_bytes()),
        ("log.txt", log.into_bytes()),
    ];
    let body = tokio::task::spawn_blocking(move || archive(&files))
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"stevedore-report.tar.gz\"",
            ),
        ],
        body,
    )
        .into_response())
}

/// The routes of this area.
pub(super) fn routes() -> Vec<Entry> {
    vec![entry(
        Method::GET,
        "/system/report",
        Access::Session,
        report,
    )]
}

#[derive(OpenApi)]
#[openapi(paths(report))]
struct Doc;

/// The OpenAPI document of this area.
pub(super) fn doc() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hashes_are_hidden() {
        let debug = "Config {\n    users: {\n        \"alice\": UserConfig {\n            password_hash: \"$argon2id$v=19$m=1$salt$hash\",\n            admin: false,\n        },\n    },\n}";
        let text = config_text(debug);
        assert!(!text.contains("argon2"), "{text}");
        assert!(text.contains("password_hash: \"******\","), "{text}");
        assert!(text.contains("admin: false"), "{text}");
    }

    #[test]
    fn the_archive_holds_each_file() {
        let bytes = archive(&[("a.txt", b"hello".to_vec()), ("b.json", b"{}".to_vec())]).unwrap();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let names: Vec<String> = tar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["a.txt", "b.json"]);
    }
}
