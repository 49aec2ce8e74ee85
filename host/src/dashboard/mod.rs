//! The dashboard: a small web app served at `GET /`, embedded in the
//! binary (the files beside this module), that talks only to this server's
//! API. Its files carry a Content-Security-Policy that allows nothing from
//! elsewhere; icons from the repository come through the API
//! (`catalog/icon/...`), never from their own hosts.
//!
//! The script is a set of ES modules, one per view, loaded by `main.js`:
//! `core.js` (calls, elements, times, the task stream), `form.js` (forms
//! from a JSON Schema), `tasks.js`,
//! `store.js` with `wizard.js`, `apps.js`, `containers.js` and `images.js`.
//!
//! Each file is answered with an `ETag` (a hash of its text) and
//! `Cache-Control: no-cache`: a browser keeps it and asks again with
//! `If-None-Match`, which costs a 304 and no body until the binary changes.
//!
//! `STEVEDORE_DASHBOARD_DIR`, when set, names a folder whose files of the
//! same names are served instead, read at each request: for working on the
//! dashboard without rebuilding the server. Only the names below are ever
//! read from it.

use std::borrow::Cow;
use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// Everything from this server only; `data:` for the empty favicon.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; form-action 'self'; \
                   base-uri 'none'; frame-ancestors 'none'";

/// One embedded file: its name under `/dashboard/`, type and text.
struct File {
    name: &'static str,
    content_type: &'static str,
    text: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// A [`File`] embedded from this folder.
macro_rules! embed {
    ($name:literal, $type:expr) => {
        File {
            name: $name,
            content_type: $type,
            text: include_str!($name),
        }
    };
}

/// Every file of the dashboard. `index.html` is served at `/`.
const FILES: &[File] = &[
    embed!("index.html", HTML),
    embed!("app.css", CSS),
    embed!("main.js", JS),
    embed!("core.js", JS),
    embed!("form.js", JS),
    embed!("tasks.js", JS),
    embed!("store.js", JS),
    embed!("wizard.js", JS),
    embed!("apps.js", JS),
    embed!("containers.js", JS),
    embed!("images.js", JS),
];

/// Each embedded file's `ETag`, in the order of [`FILES`].
static TAGS: LazyLock<Vec<HeaderValue>> =
    LazyLock::new(|| FILES.iter().map(|f| etag(f.text.as_bytes())).collect());

/// The folder of `STEVEDORE_DASHBOARD_DIR`, if set.
static DEV_DIR: LazyLock<Option<std::path::PathBuf>> =
    LazyLock::new(|| std::env::var_os("STEVEDORE_DASHBOARD_DIR").map(Into::into));

fn etag(bytes: &[u8]) -> HeaderValue {
    let hash = Sha256::digest(bytes);
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header value")
}

/// `GET /`: the page.
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /dashboard/{file}`: a script or style of the page.
pub async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

fn serve(name: &str, request: &HeaderMap) -> Response {
    let Some(index) = FILES.iter().position(|f| f.name == name) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let file = &FILES[index];
    // The embedded text is answered as is, without a copy per request.
    let embedded = || (Cow::Borrowed(file.text), TAGS[index].clone());
    let (body, tag): (Cow<'static, str>, HeaderValue) = match DEV_DIR.as_ref() {
        Some(dir) => match std::fs::read_to_string(dir.join(file.name)) {
            Ok(text) => {
                let tag = etag(text.as_bytes());
                (Cow::Owned(text), tag)
            }
            Err(e) => {
                tracing::warn!(file = file.name, "STEVEDORE_DASHBOARD_DIR: {e}");
                embedded()
            }
        },
        None => embedded(),
    };
    let fresh = request.get(header::IF_NONE_MATCH).is_some_and(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii() == tag.as_bytes())
    });
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        body.into_response()
    };
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(file.content_type),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::ETAG, tag);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files() {
        // The only absolute addresses allowed: SVG's namespace (a name, never
        // fetched), and the links to an application's ports on this host.
        let allowed = ["www.w3.org/2000/svg\"", "${location.hostname}"];
        for file in FILES {
            for scheme in ["http://", "https://"] {
                for (at, _) in file.text.match_indices(scheme) {
                    let rest = &file.text[at + scheme.len()..];
                    assert!(
                        allowed.iter().any(|a| rest.starts_with(a)),
                        "{} names a remote URL: {}",
                        file.name,
                        &rest[..rest.len().min(40)]
                    );
                }
            }
        }
        let index = FILES[0].text;
        assert!(index.contains(r#"src="/dashboard/main.js""#));
        assert!(index.contains(r#"href="/dashboard/app.css""#));
    }

    #[test]
    fn every_module_imported_is_served() {
        for file in FILES.iter().filter(|f| f.name.ends_with(".js")) {
            for line in file.text.lines() {
                if let Some(rest) = line.split(" from \"./").nth(1) {
                    let name = rest.split('"').next().unwrap();
                    assert!(
                        FILES.iter().any(|f| f.name == name),
                        "{} imports {name}, which is not served",
                        file.name
                    );
                }
            }
        }
    }

    #[test]
    fn the_page_weighs_under_150_kib() {
        let weight: usize = FILES
            .iter()
            .filter(|f| !f.name.ends_with(".html"))
            .map(|f| f.text.len())
            .sum();
        assert!(weight < 150 * 1024, "JS and CSS weigh {weight} bytes");
    }

    #[tokio::test]
    async fn an_unchanged_file_is_a_304() {
        let first = serve("core.js", &HeaderMap::new());
        assert_eq!(first.status(), StatusCode::OK);
        let tag = first.headers()[header::ETAG].clone();
        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, tag);
        assert_eq!(serve("core.js", &again).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(serve("../mod.rs", &again).status(), StatusCode::NOT_FOUND);
    }
}
