//! The headers a proxied request and its answer carry: hop-by-hop headers
//! dropped (RFC 9110 §7.6.1), the Stevedore session cookie never passed
//! on, and `X-Forwarded-*` saying where the request came from.

use std::net::SocketAddr;

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Cookies that are Stevedore's sessions, never given to an application:
/// the API's cookie ([`crate::auth::COOKIE_NAME`]), Container Station's name
/// for it and the name it had before. Browsers send a host's cookies to
/// every port of it, so the API's cookie reaches the proxy too.
pub const SESSION_COOKIES: &[&str] = &[crate::auth::COOKIE_NAME, "CS_SESS_ID", "stevedore_sid"];

/// Headers that concern one connection only (RFC 9110 §7.6.1, and the
/// `Keep-Alive` / `Proxy-Connection` of older clients).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn is_session_cookie(name: &str) -> bool {
    SESSION_COOKIES.contains(&name.trim())
}

/// The items of every `name` header, split at `separator` and trimmed
/// (values that are not text are passed over).
fn tokens(headers: &HeaderMap, name: HeaderName, separator: char) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(move |v| v.split(separator))
        .map(str::trim)
}

/// Remove the session cookies from the `Cookie` header(s), keeping the
/// others (joined into one header); no header is left when none remain.
pub fn strip_session_cookies(headers: &mut HeaderMap) {
    let kept: Vec<String> = tokens(headers, header::COOKIE, ';')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| !is_session_cookie(pair.split_once('=').map_or(*pair, |(k, _)| k)))
        .map(str::to_string)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&kept.join("; ")) {
            headers.insert(header::COOKIE, v);
        }
    }
}

/// Remove the `Set-Cookie` headers of an answer that would set a session
/// cookie: an application must not plant a session on the API's host.
pub fn strip_session_set_cookies(headers: &mut HeaderMap) {
    let kept: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| {
            let name = v
                .to_str()
                .ok()
                .and_then(|s| s.split(';').next())
                .and_then(|pair| pair.split_once('='))
                .map_or("", |(k, _)| k);
            !is_session_cookie(name)
        })
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for v in kept {
        headers.append(header::SET_COOKIE, v);
    }
}

/// The protocol a request asks to switch to (`Upgrade`, with `upgrade`
/// among the `Connection` tokens), e.g. `websocket`.
pub fn upgrade_of(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = tokens(headers, header::CONNECTION, ',').any(|t| t.eq_ignore_ascii_case("upgrade"));
    asks.then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Remove the hop-by-hop headers and those the `Connection` header names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = tokens(headers, header::CONNECTION, ',')
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// Set `X-Forwarded-For` (the client's address appended to what earlier
/// proxies said), `X-Forwarded-Host` (the `Host` the client asked for),
/// `X-Forwarded-Proto` (`http`: the listener speaks plain HTTP) and
/// `X-Forwarded-Prefix` (the application's `virtual_path`, which the
/// application does not see in its paths).
pub fn set_forwarded(headers: &mut HeaderMap, client: SocketAddr, prefix: &str) {
    let ip = client.ip().to_canonical().to_string();
    let chain = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(before) if !before.trim().is_empty() => format!("{}, {ip}", before.trim()),
        _ => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&chain) {
        headers.insert("x-forwarded-for", v);
    }
    match headers.get(header::HOST).cloned() {
        Some(host) => {
            headers.insert("x-forwarded-host", host);
        }
        None => {
            headers.remove("x-forwarded-host");
        }
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    match HeaderValue::from_str(prefix) {
        Ok(v) => {
            headers.insert("x-forwarded-prefix", v);
        }
        Err(_) => {
            headers.remove("x-forwarded-prefix");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::header_map as map;

    #[test]
    fn session_cookies_go_and_the_others_stay() {
        let mut h = map(&[
            ("cookie", "theme=dark; CS_SESS_ID=abc"),
            ("cookie", "stevedore_sid=def;lang=fr"),
        ]);
        strip_session_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "theme=dark; lang=fr");
        let mut h = map(&[("cookie", "CS_SESS_ID=abc; stevedore_sid=x")]);
        strip_session_cookies(&mut h);
        assert!(h.get("cookie").is_none());
        assert!(SESSION_COOKIES.contains(&crate::auth::COOKIE_NAME));

        let mut h = map(&[
            ("set-cookie", "CS_SESS_ID=planted; Path=/"),
            ("set-cookie", "app=1; Path=/"),
        ]);
        strip_session_set_cookies(&mut h);
        let left: Vec<_> = h.get_all("set-cookie").iter().collect();
        assert_eq!(left, ["app=1; Path=/"]);
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_go() {
        let mut h = map(&[
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic eA=="),
            ("accept", "*/*"),
        ]);
        assert_eq!(upgrade_of(&h), None);
        remove_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["accept"]);
        let h = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert_eq!(upgrade_of(&h).unwrap(), "websocket");
        assert_eq!(upgrade_of(&map(&[("upgrade", "websocket")])), None);
    }

    #[test]
    fn forwarded_headers_say_who_asked_for_what() {
        let mut h = map(&[
            ("host", "nas.local:8081"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-proto", "https"),
        ]);
        set_forwarded(&mut h, "127.0.0.1:5555".parse().unwrap(), "/blog");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-host"], "nas.local:8081");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-prefix"], "/blog");
        let mut h = map(&[("x-forwarded-host", "forged")]);
        set_forwarded(&mut h, "[::ffff:10.1.2.3]:1".parse().unwrap(), "/b");
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert!(h.get("x-forwarded-host").is_none());
    }
}
