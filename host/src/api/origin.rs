//! Refuses cross-site state changes: a `POST`, `PUT`, `DELETE` or `PATCH`
//! whose `Origin` is not the server's own, or whose `Sec-Fetch-Site` says
//! another site sent it, answers 403 (`cross_site`) before its body is read.
//!
//! Cookies ignore ports: a page served by any container on the NAS (another
//! port of the same host) is "same site" to a browser, which would send the
//! admin's session cookie with a form it posts here. Browsers put `Origin`
//! on every cross-origin `POST`, `PUT`, `DELETE` and `PATCH` and cannot be
//! made to leave it out or forge it; `curl`, the CLI and scripts send none
//! and keep working. The server's own origin is the request's `Host` (or
//! `X-Forwarded-Host`, set by a reverse proxy: a browser cannot add that
//! header to a cross-site request without a CORS preflight, which this
//! server never grants).

use axum::http::{header, HeaderMap, Method};

use super::AppError;

/// Whether `method` changes state (the methods a cross-site page may send
/// with cookies, `GET` and `HEAD` aside, which change nothing here).
fn changes_state(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::DELETE | Method::PATCH
    )
}

/// `Err(403 cross_site)` when a state-changing request comes from another
/// site or origin.
pub(super) fn check(method: &Method, headers: &HeaderMap) -> Result<(), AppError> {
    if !changes_state(method) {
        return Ok(());
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        if matches!(site.as_bytes(), b"cross-site" | b"same-site") {
            return Err(refused(
                "Sec-Fetch-Site: the request came from another site",
            ));
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    let own = [header::HOST.as_str(), "x-forwarded-host"]
        .into_iter()
        .filter_map(|name| headers.get(name)?.to_str().ok())
        .any(|host| same_origin(origin, host));
    if own {
        Ok(())
    } else {
        Err(refused(
            "Origin: the request came from a page of another origin",
        ))
    }
}

fn refused(why: &str) -> AppError {
    AppError::new(
        axum::http::StatusCode::FORBIDDEN,
        "cross_site",
        format!("{why}; state changes are accepted only from this server's own pages or without an Origin (curl, the CLI)"),
    )
}

/// Whether `origin` (`scheme://host[:port]`) names the server that `host`
/// (a `Host` header, `host[:port]`) addresses: the same host and port, a
/// missing port being the scheme's default.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false; // `null`, or not an origin at all
    };
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    match (host_port(authority, default), host_port(host, default)) {
        (Some((oh, op)), Some((hh, hp))) => oh.eq_ignore_ascii_case(hh) && op == hp,
        _ => false,
    }
}

/// `host[:port]` or `[v6][:port]` as host and port (`default` when absent).
fn host_port(authority: &str, default: u16) -> Option<(&str, u16)> {
    if authority.is_empty() || authority.contains(['/', '@', '?', '#']) {
        return None;
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        match after {
            "" => (v6, None),
            _ => (v6, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => default,
        Some(p) => p.parse().ok()?,
    };
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::header_map as headers;

    #[test]
    fn same_origin_needs_host_and_port() {
        assert!(same_origin("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(same_origin("http://NAS", "nas:80"));
        assert!(same_origin("https://nas", "nas"));
        assert!(same_origin("http://[::1]:9", "[::1]:9"));
        assert!(!same_origin("http://127.0.0.1:9999", "127.0.0.1:8080"));
        assert!(!same_origin("http://localhost:8080", "127.0.0.1:8080"));
        assert!(!same_origin("https://nas", "nas:80"));
        assert!(!same_origin("null", "nas"));
        assert!(!same_origin("http://a@nas", "nas"));
        assert!(!same_origin("file://", "nas"));
    }

    #[test]
    fn refuses_cross_site_state_changes_only() {
        let post = Method::POST;
        let cross = headers(&[("host", "nas:8080"), ("origin", "http://nas:9999")]);
        assert_eq!(check(&post, &cross).unwrap_err().reason, "cross_site");
        assert!(check(&Method::GET, &cross).is_ok(), "reads are not refused");
        assert!(check(&post, &headers(&[("host", "nas:8080")])).is_ok());
        let own = headers(&[("host", "nas:8080"), ("origin", "http://nas:8080")]);
        assert!(check(&Method::DELETE, &own).is_ok());
        let proxied = headers(&[
            ("host", "127.0.0.1:8080"),
            ("x-forwarded-host", "nas.example"),
            ("origin", "https://nas.example"),
        ]);
        assert!(check(&Method::PUT, &proxied).is_ok(), "behind a proxy");
        for site in ["cross-site", "same-site"] {
            let h = headers(&[("host", "nas"), ("sec-fetch-site", site)]);
            assert!(check(&post, &h).is_err(), "{site}");
        }
        for site in ["same-origin", "none"] {
            let h = headers(&[("host", "nas"), ("sec-fetch-site", site)]);
            assert!(check(&post, &h).is_ok(), "{site}");
        }
    }
}
