//! Which application a request's path names: every recorded application
//! with a `virtual_path`, the longest matching one first.

use serde_json::Value;

/// An application the proxy serves, from its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Application name.
    pub app: String,
    /// Its `virtual_path` without trailing `/` (`/myapp`).
    pub prefix: String,
    /// Its Compose project (the label on its containers).
    pub project: String,
    /// Its HTTP port (`port` of the `application` task), if it has one.
    pub port: Option<u16>,
}

/// What a path asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Match<'a> {
    /// `/<prefix>/<rest>`: forward `/<rest>` to the application.
    Forward {
        /// The application.
        route: &'a Route,
        /// The path the application gets, starting with `/`.
        rest: &'a str,
    },
    /// Exactly `/<prefix>`: answered with a redirect to `/<prefix>/`, so
    /// that the application's relative links resolve under the prefix.
    Bare(&'a Route),
}

/// The routes of `records` (`(name, record JSON)`, as
/// [`crate::runtime::AppFolders::app_records`] gives them): those with a
/// `virtual_path`, longest prefix first.
pub fn routes(records: &[(String, String)]) -> Vec<Route> {
    let mut out: Vec<Route> = records
        .iter()
        .filter_map(|(name, text)| {
            let record: Value = serde_json::from_str(text).ok()?;
            let prefix = record.get("virtual_path")?.as_str()?.trim_end_matches('/');
            if !prefix.starts_with('/') || prefix.len() < 2 {
                return None;
            }
            let project = record
                .get("project")
                .and_then(Value::as_str)
                .unwrap_or(name)
                .to_string();
            let port = record
                .get("port")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0);
            Some(Route {
                app: name.clone(),
                prefix: prefix.to_string(),
                project,
                port,
            })
        })
        .collect();
    out.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
    out
}

/// The route `path` falls under, if any: `prefix` itself or `prefix/...`.
pub fn find<'a>(routes: &'a [Route], path: &'a str) -> Option<Match<'a>> {
    routes.iter().find_map(|route| {
        let rest = path.strip_prefix(route.prefix.as_str())?;
        if rest.is_empty() {
            Some(Match::Bare(route))
        } else if rest.starts_with('/') {
            Some(Match::Forward { route, rest })
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<(String, String)> {
        vec![
            (
                "blog".into(),
                r#"{"project": "blog", "virtual_path": "/blog/", "port": 18080}"#.into(),
            ),
            (
                "blogadmin".into(),
                r#"{"project": "blogadmin", "virtual_path": "/blog/admin", "port": 18081}"#.into(),
            ),
            ("noport".into(), r#"{"virtual_path": "/np"}"#.into()),
            ("nopath".into(), r#"{"port": 18082}"#.into()),
            ("root".into(), r#"{"virtual_path": "/", "port": 1}"#.into()),
            ("broken".into(), "not json".into()),
        ]
    }

    #[test]
    fn only_records_with_a_path_route_and_the_longest_prefix_wins() {
        let r = routes(&records());
        let names: Vec<&str> = r.iter().map(|r| r.app.as_str()).collect();
        assert_eq!(names, ["blogadmin", "blog", "noport"]);
        assert_eq!(r[1].prefix, "/blog");
        assert_eq!(r[1].port, Some(18080));
        assert_eq!(r[2].port, None);
        assert_eq!(
            r[2].project, "noport",
            "the name when no project is recorded"
        );
        let Some(Match::Forward { route, rest }) = find(&r, "/blog/admin/x") else {
            panic!()
        };
        assert_eq!((route.app.as_str(), rest), ("blogadmin", "/x"));
        let Some(Match::Forward { route, rest }) = find(&r, "/blog/post/1") else {
            panic!()
        };
        assert_eq!((route.app.as_str(), rest), ("blog", "/post/1"));
        assert_eq!(find(&r, "/blog"), Some(Match::Bare(&r[1])));
        assert_eq!(find(&r, "/blogger/x"), None, "a prefix ends at a `/`");
        assert_eq!(find(&r, "/"), None);
        assert_eq!(find(&r, "/other/"), None);
    }
}
