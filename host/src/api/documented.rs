//! Container Station's documented routes (its HTTP routing table, in
//! `docs/container-station-routes.txt`) against the routes this server
//! serves ([`super::routes::list`]) and what the OpenAPI document says of
//! each. The page `docs/api-routes.md` is written from here, and a test
//! fails when a documented route has no route of ours or when the page no
//! longer matches the table it was written from.

use serde_json::Value;

use super::routes;

/// The documented routes, one `METHOD /path` a line, paths after the
/// prefix, parameters as `{name}`.
pub const DOCUMENTED: &str = include_str!("../../../docs/container-station-routes.txt");

/// How we answer one documented route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    /// The method, as documented.
    pub method: String,
    /// The documented path (after the prefix).
    pub documented: String,
    /// The path of our route that serves it (after the prefix), if any.
    pub served_by: Option<String>,
    /// Our OpenAPI summary of that route.
    pub summary: String,
    /// Whether that route only answers 501 (not supported here).
    pub unsupported: bool,
}

/// Whether a request on `documented` would reach our route `ours`: as many
/// segments, each one equal, or a parameter in ours (a documented literal
/// such as `restart` reaches our `{action}`; a documented parameter needs
/// one of ours).
fn reaches(documented: &str, ours: &str) -> bool {
    let param = |s: &str| s.starts_with('{') && s.ends_with('}');
    let (d, o): (Vec<&str>, Vec<&str>) =
        (documented.split('/').collect(), ours.split('/').collect());
    d.len() == o.len()
        && d.iter().zip(&o).all(|(d, o)| {
            if param(d) {
                param(o)
            } else {
                d == o || param(o)
            }
        })
}

/// Among the routes that reach `documented`, the one the router picks: the
/// most literal segments, taken from the left (axum prefers a literal to a
/// parameter at each segment).
fn pick<'a>(documented: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let rank = |p: &str| -> Vec<bool> { p.split('/').map(|s| !s.starts_with('{')).collect() };
    candidates
        .iter()
        .filter(|ours| reaches(documented, ours))
        .max_by_key(|ours| rank(ours))
        .copied()
}

/// Every documented route, with ours.
pub fn coverage() -> Vec<Coverage> {
    let prefix = super::openapi::PREFIX;
    let served: Vec<(String, String)> = routes::list()
        .into_iter()
        .filter_map(|r| {
            let path = r.path.strip_prefix(prefix)?.to_string();
            Some((r.method.to_string(), path))
        })
        .collect();
    let doc = super::openapi::document(&[]);
    DOCUMENTED
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (method, documented) = line.split_once(' ').unwrap_or((line, ""));
            let candidates: Vec<&str> = served
                .iter()
                .filter(|(m, _)| m == method)
                .map(|(_, p)| p.as_str())
                .collect();
            let served_by = pick(documented, &candidates).map(str::to_string);
            let op = served_by
                .as_ref()
                .map(|p| &doc["paths"][format!("{prefix}{p}")][method.to_lowercase()])
                .unwrap_or(&Value::Null);
            let responses = op["responses"].as_object();
            let unsupported = responses
                .is_some_and(|r| r.contains_key("501") && !r.keys().any(|k| k.starts_with('2')));
            Coverage {
                method: method.to_string(),
                documented: documented.to_string(),
                served_by,
                summary: op["summary"].as_str().unwrap_or_default().to_string(),
                unsupported,
            }
        })
        .collect()
}

/// The page `docs/api-routes.md`.
pub fn page() -> String {
    let rows = coverage();
    let served = rows
        .iter()
        .filter(|r| r.served_by.is_some() && !r.unsupported)
        .count();
    let unsupported = rows.iter().filter(|r| r.unsupported).count();
    let mut out = String::from(
        "# Container Station's documented routes, and ours\n\n\
         Written by `STEVEDORE_WRITE_DOCS=1 cargo test -p stevedore --lib documented` \
         from the route table and the OpenAPI document; a test fails when it is out of date \
         or when a documented route has no route of ours. Every path is served under \
         `/api/v1`, `/container-station/api/v1` and `/containerstation/api/v1`.\n\n",
    );
    out.push_str(&format!(
        "{} documented routes: {served} served, {unsupported} answer 501 (not supported here), {} missing.\n\n",
        rows.len(),
        rows.len() - served - unsupported,
    ));
    out.push_str("| method | documented path | our route | status |\n|---|---|---|---|\n");
    for r in &rows {
        let status = match (&r.served_by, r.unsupported) {
            (None, _) => "**missing**".to_string(),
            (Some(_), true) => format!("501: {}", r.summary),
            (Some(_), false) => r.summary.clone(),
        };
        out.push_str(&format!(
            "| {} | `{}` | {} | {} |\n",
            r.method,
            r.documented,
            r.served_by
                .as_ref()
                .map_or("—".to_string(), |p| format!("`{p}`")),
            status.replace('|', "\\|"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_documented_literal_reaches_our_parameter_but_not_the_reverse() {
        assert!(reaches(
            "/container/{t}/{i}/restart",
            "/container/{type}/{id}/{action}"
        ));
        assert!(!reaches("/image/{name}/tags", "/image/docker/tags"));
        assert!(!reaches("/a/b", "/a/b/c"));
        assert_eq!(
            pick(
                "/background/application",
                &["/background/{target}", "/background/events"]
            ),
            Some("/background/{target}")
        );
        assert_eq!(
            pick(
                "/background/events",
                &["/background/{target}", "/background/events"]
            ),
            Some("/background/events")
        );
    }

    #[test]
    fn every_documented_route_has_one_of_ours() {
        let missing: Vec<String> = coverage()
            .into_iter()
            .filter(|c| c.served_by.is_none())
            .map(|c| format!("{} {}", c.method, c.documented))
            .collect();
        assert!(
            missing.is_empty(),
            "documented routes we do not serve: {missing:#?}"
        );
    }

    #[test]
    fn the_routes_page_is_up_to_date() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api-routes.md");
        let want = page();
        if std::env::var_os("STEVEDORE_WRITE_DOCS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "docs/api-routes.md is out of date: run \
             `STEVEDORE_WRITE_DOCS=1 cargo test -p stevedore --lib documented`"
        );
    }
}
