//! `POST login`, `GET login_refresh`, `PUT logout`, and the [`CurrentUser`] extractor.

use crate::clock::format_local;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;

use super::{body_error, AppError, AppState};
use crate::auth::{Identity, COOKIE_NAME};
use crate::queue::Viewer;
use crate::store::tasks::Owner;

/// The logged-in user of a request; rejects with 401 when there is no live session.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub Identity);

impl CurrentUser {
    /// The queue's view of this user.
    pub fn viewer(&self) -> Viewer {
        Viewer {
            user: self.0.username.clone(),
            is_admin: self.0.is_admin,
        }
    }

    /// Whose objects a listing with `?user=` shows: an admin's, everyone's
    /// or the named user's; anyone else's, their own, and naming another
    /// user is a 403 `not_yours` (`what`: the objects, e.g. `webhooks`).
    pub fn listed_owner<'a>(
        &'a self,
        wanted: Option<&'a str>,
        what: &str,
    ) -> Result<Owner<'a>, AppError> {
        let wanted = wanted.filter(|u| !u.is_empty());
        match (self.0.is_admin, wanted) {
            (true, None) => Ok(Owner::Anyone),
            (true, Some(u)) => Ok(Owner::User(u)),
            (false, Some(u)) if u != self.0.username => Err(AppError::new(
                StatusCode::FORBIDDEN,
                "not_yours",
                format!("user: only an admin lists another user's {what}"),
            )),
            (false, _) => Ok(Owner::User(&self.0.username)),
        }
    }
}

/// The session id from the `Cookie` header(s), if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // Checked already by `RequireSession` for this request (only the
        // server sets extensions): one session lookup per request, not two.
        if let Some(user) = parts.extensions.remove::<CurrentUser>() {
            return Ok(user);
        }
        let id = session_cookie(&parts.headers).ok_or_else(AppError::unauthorized)?;
        state
            .auth
            .identify(&id)
            .await
            .map(CurrentUser)
            .ok_or_else(AppError::unauthorized)
    }
}

/// What login and `login_refresh` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoginInfo {
    /// User name.
    pub username: String,
    /// Whether the user is an admin.
    #[serde(rename = "isAdmin")]
    pub is_admin: bool,
    /// Always false: every session is a named user.
    pub anonymous: bool,
    /// Login time, `YYYY-MM-DD HH:MM:SS` in the server's local time (as
    /// Container Station answers it).
    pub logintime: String,
}

impl LoginInfo {
    fn of(id: &Identity) -> Self {
        LoginInfo {
            username: id.username.clone(),
            is_admin: id.is_admin,
            anonymous: false,
            logintime: format_local(id.login_time),
        }
    }
}

fn set_cookie(value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

/// Parse login fields: form-encoded (`username=..&password=..`), or a JSON object.
fn login_fields(body: &[u8]) -> Result<(String, String), AppError> {
    let trimmed = body.trim_ascii_start();
    let fields: HashMap<String, serde_json::Value> = if trimmed.first() == Some(&b'{') {
        serde_json::from_slice(trimmed)
            .map_err(|e| AppError::bad_request("invalid_json", format!("login body: {e}")))?
    } else {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
            .map_err(|_| {
                AppError::bad_request(
                    "invalid_form",
                    "login body: expected form fields username and password",
                )
            })?
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect()
    };
    let get = |name: &str| -> Result<String, AppError> {
        match fields.get(name) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(serde_json::Value::String(_)) | None => Err(AppError::bad_request(
                "missing_field",
                format!("{name}: required"),
            )),
            Some(_) => Err(AppError::bad_request(
                "wrong_type",
                format!("{name}: must be a string"),
            )),
        }
    };
    Ok((get("username")?, get("password")?))
}

/// `POST login`.
#[utoipa::path(post, path = "/login", tag = "session",
    summary = "Log in",
    description = "Form fields `username` and `password` (Container Station 1.x), or the same as a JSON object (2.x; `curl -d` sends it with the form content type). Sets the session cookie `CS_SESS_ID` (HttpOnly, SameSite=Strict). `logintime` is in the server's local time.",
    request_body(content(
        (super::openapi::LoginRequest = "application/x-www-form-urlencoded"),
        (super::openapi::LoginRequest = "application/json"),
    )),
    security(()),
    responses(
        (status = 200, description = "Logged in; the session cookie is set", body = LoginInfo),
        (status = 400, description = "A field is missing or not a string", body = super::error::ErrorBody),
        (status = 401, description = "Wrong user name or password", body = super::error::ErrorBody),
        (status = 429, description = "Too many failed attempts (`too_many_attempts`), or every password check is busy (`login_busy`); see `Retry-After`", body = super::error::ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let body = body.map_err(body_error)?;
    let (username, password) = login_fields(&body)?;
    let ip: Option<IpAddr> = connect.map(|Extension(ConnectInfo(addr))| addr.ip());
    let identity = state.auth.login(&username, &password, ip).await?;
    tracing::info!(user = %identity.username, "login");
    let mut resp = Json(LoginInfo::of(&identity)).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(
            &identity.session_id,
            state.auth.cookie_max_age(&identity),
            state.secure_cookies,
        ),
    );
    Ok(resp)
}

/// `GET login_refresh`: the login object of the current session, whose expiry moves forward.
#[utoipa::path(get, path = "/login_refresh", tag = "session",
    summary = "The current session's login object; its expiry moves forward",
    responses(
        (status = 200, description = "The session's login object", body = LoginInfo),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
    ))]
pub async fn login_refresh(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Response, AppError> {
    state
        .auth
        .refresh(&user.0.session_id)
        .await
        .map_err(AppError::internal)?;
    let mut resp = Json(LoginInfo::of(&user.0)).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(
            &user.0.session_id,
            state.auth.cookie_max_age(&user.0),
            state.secure_cookies,
        ),
    );
    Ok(resp)
}

/// `GET me`: the caller and their effective policy, so that a dashboard can
/// hide what they may not do.
#[utoipa::path(get, path = "/me", tag = "session",
    summary = "The caller and their effective policy",
    responses(
        (status = 200, description = "The caller", body = super::openapi::Me),
        (status = 401, description = "Not logged in", body = super::error::ErrorBody),
    ))]
pub async fn me(State(state): State<AppState>, user: CurrentUser) -> Json<serde_json::Value> {
    let policy = state.policies.of(&user.0.username);
    Json(serde_json::json!({
        "username": user.0.username,
        "isAdmin": user.0.is_admin,
        "policy": policy,
    }))
}

/// `PUT logout`: ends the session (if any) and clears the cookie. Idempotent.
#[utoipa::path(put, path = "/logout", tag = "session",
    summary = "End the session (idempotent)",
    security((), ("session" = [])),
    responses(
        (status = 200, description = "Logged out; the cookie is cleared", body = super::openapi::Logout),
    ))]
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let mut username = None;
    if let Some(id) = session_cookie(&headers) {
        username = state.auth.identify(&id).await.map(|i| i.username);
        state.auth.logout(&id).await.map_err(AppError::internal)?;
        state.streams.end_session(&id);
    }
    if let Some(u) = &username {
        tracing::info!(user = %u, "logout");
    }
    let mut resp = Json(serde_json::json!({ "username": username })).into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, set_cookie("", 0, state.secure_cookies));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_login_fields() {
        assert_eq!(
            login_fields(b"username=admin&password=a%26b+c").unwrap(),
            ("admin".to_string(), "a&b c".to_string())
        );
        assert_eq!(
            login_fields(br#"{"username":"u","password":"p"}"#).unwrap(),
            ("u".to_string(), "p".to_string())
        );
        assert_eq!(
            login_fields(b"username=admin").unwrap_err().reason,
            "missing_field"
        );
        assert_eq!(
            login_fields(br#"{"username":1,"password":"p"}"#)
                .unwrap_err()
                .reason,
            "wrong_type"
        );
    }

    #[test]
    fn reads_the_session_cookie() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; CS_SESS_ID=abc123; c=d"),
        );
        assert_eq!(session_cookie(&h).as_deref(), Some("abc123"));
        h.insert(header::COOKIE, HeaderValue::from_static("a=b"));
        assert_eq!(session_cookie(&h), None);
    }
}
