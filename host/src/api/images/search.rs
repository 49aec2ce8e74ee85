//! Asking registries what they hold: a registry's catalog
//! (`/v2/_catalog`) and a repository's tags (`/v2/<name>/tags/list`), and
//! Docker Hub's search. Every request has a short timeout, so an
//! unreachable registry answers an error quickly instead of holding the
//! listing.

use std::sync::OnceLock;
use std::time::Duration;

use futures::StreamExt;
use serde::Deserialize;

use crate::runtime::traits::images::SearchRegistry;

/// How long one request to a registry may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting to a registry may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long asking one registry may take in all (its catalog and tags).
pub const REGISTRY_TIMEOUT: Duration = Duration::from_secs(8);
/// The most repositories whose tags one search asks for.
pub const MAX_REPOSITORIES: usize = 100;
/// The most tag requests to one registry at a time.
const CONCURRENT_TAGS: usize = 8;
/// Docker Hub's name in answers and in `?registry=`.
pub const DOCKER_HUB: &str = "Docker Hub";
/// Docker Hub's search API.
const HUB_SEARCH: &str = "https://index.docker.io/v1/search";
/// Docker Hub's repository API (tags).
const HUB_REPOSITORIES: &str = "https://hub.docker.com/v2/repositories";

/// Why a registry could not be asked: its message names the registry, never
/// its login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchError {
    /// No answer (connection refused, timeout, TLS) or an answer not
    /// understood.
    Unreachable(String),
    /// The registry has no such repository.
    NotFound(String),
    /// The registry refused the login (or wants one).
    Refused(String),
}

impl SearchError {
    /// The message.
    pub fn message(&self) -> &str {
        match self {
            SearchError::Unreachable(m) | SearchError::NotFound(m) | SearchError::Refused(m) => m,
        }
    }
}

/// One registry endpoint to ask: a configured registry, or Docker Hub's mirror.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The name answers show.
    pub name: String,
    /// The base URLs to try in order (`https://` then `http://` when the
    /// configuration gives no scheme, as the engine tries them).
    pub bases: Vec<String>,
    /// The host as image references spell it.
    pub host: String,
    /// The configured login.
    pub login: Option<(String, crate::secret::Secret)>,
}

impl Endpoint {
    /// The endpoint of configured registry `r`.
    pub fn of(r: &SearchRegistry) -> Endpoint {
        Endpoint::at(&r.name, &r.url, r.login.clone())
    }

    /// The endpoint named `name` at `url` (`scheme://host[:port]` or `host[:port]`).
    pub fn at(name: &str, url: &str, login: Option<(String, crate::secret::Secret)>) -> Endpoint {
        let url = url.trim().trim_end_matches('/');
        // A login written into the URL is not shown (answers name `host`).
        let (scheme, rest) = match url.split_once("://") {
            Some((scheme, rest)) => (Some(scheme), rest),
            None => (None, url),
        };
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((userinfo, host)) => (Some(userinfo), host),
            None => (None, rest),
        };
        // ...but still sent, when the configuration gives no other login.
        let login = login.or_else(|| {
            let (user, password) = userinfo?.split_once(':')?;
            Some((
                user.to_string(),
                crate::secret::Secret(password.to_string()),
            ))
        });
        let (bases, host) = match scheme {
            Some(scheme) => (vec![format!("{scheme}://{rest}")], rest.to_string()),
            None => (
                vec![format!("https://{rest}"), format!("http://{rest}")],
                rest.to_string(),
            ),
        };
        Endpoint {
            name: name.to_string(),
            bases,
            host,
            login,
        }
    }
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .user_agent(concat!("stevedore/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .unwrap_or_default()
    })
}

/// `GET <base><path>` of `endpoint` as JSON, trying each base URL until one
/// answers.
async fn get_json<T: serde::de::DeserializeOwned>(
    endpoint: &Endpoint,
    path: &str,
) -> Result<T, SearchError> {
    let mut last = SearchError::Unreachable(format!("registry {}: no address", endpoint.name));
    for base in &endpoint.bases {
        let mut request = client().get(format!("{base}{path}"));
        if let Some((user, password)) = &endpoint.login {
            request = request.basic_auth(user, Some(password.expose()));
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                last = SearchError::Unreachable(format!(
                    "registry {} ({}) does not answer: {}",
                    endpoint.name,
                    endpoint.host,
                    describe(&e)
                ));
                continue;
            }
        };
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(SearchError::NotFound(format!(
                "registry {} has no {}",
                endpoint.name,
                path.trim_start_matches("/v2/")
            )));
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(SearchError::Refused(format!(
                "registry {} refused the {} (HTTP {}): configure its username and password",
                endpoint.name,
                if endpoint.login.is_some() {
                    "configured login"
                } else {
                    "request without a login"
                },
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(SearchError::Unreachable(format!(
                "registry {} answered HTTP {}",
                endpoint.name,
                status.as_u16()
            )));
        }
        return response.json::<T>().await.map_err(|e| {
            SearchError::Unreachable(format!(
                "registry {} answered what is not a registry's JSON: {}",
                endpoint.name,
                describe(&e)
            ))
        });
    }
    Err(last)
}

/// A request error without its URL's query (no secret is ever in a URL
/// here, but the message stays short).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_decode() {
        "cannot read the answer"
    } else {
        "request failed"
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind} ({detail})")
    }
}

#[derive(Deserialize)]
struct Catalog {
    #[serde(default)]
    repositories: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// A repository a registry holds, with its tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its path in the registry (`stevedore/x`, `library/busybox`).
    pub repository: String,
    /// Its tags, sorted.
    pub tags: Vec<String>,
}

/// Whether repository `name` matches the search text (case-insensitive
/// substring; an empty text matches everything).
pub fn matches(name: &str, filter: &str) -> bool {
    filter.is_empty() || name.to_lowercase().contains(&filter.to_lowercase())
}

/// The repositories of `endpoint` whose name matches `filter`, each with
/// its tags (at most [`MAX_REPOSITORIES`]).
pub async fn search_catalog(endpoint: &Endpoint, filter: &str) -> Result<Vec<Found>, SearchError> {
    let asked = async {
        let catalog: Catalog = get_json(endpoint, "/v2/_catalog?n=1000").await?;
        let names: Vec<String> = catalog
            .repositories
            .unwrap_or_default()
            .into_iter()
            .filter(|n| matches(n, filter))
            .take(MAX_REPOSITORIES)
            .collect();
        let found: Vec<Found> = futures::stream::iter(names)
            .map(|repository| async move {
                // A repository listed but emptied since has no tags: left out.
                let tags = tags_of(endpoint, &repository).await.unwrap_or_default();
                Found { repository, tags }
            })
            .buffered(CONCURRENT_TAGS)
            .filter(|f| futures::future::ready(!f.tags.is_empty()))
            .collect()
            .await;
        Ok(found)
    };
    tokio::time::timeout(REGISTRY_TIMEOUT, asked)
        .await
        .unwrap_or_else(|_| {
            Err(SearchError::Unreachable(format!(
                "registry {} did not answer within {} s",
                endpoint.name,
                REGISTRY_TIMEOUT.as_secs()
            )))
        })
}

/// The tags of `repository` in `endpoint`, sorted.
pub async fn tags_of(endpoint: &Endpoint, repository: &str) -> Result<Vec<String>, SearchError> {
    let list: TagList = get_json(endpoint, &format!("/v2/{repository}/tags/list")).await?;
    let mut tags = list.tags.unwrap_or_default();
    tags.sort();
    Ok(tags)
}

/// One result of Docker Hub's search.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct HubResult {
    /// `owner/name`, or `name` for an official image.
    pub name: String,
    /// Its short description.
    #[serde(default)]
    pub description: String,
    /// Its stars.
    #[serde(default)]
    pub star_count: i64,
    /// An official image.
    #[serde(default)]
    pub is_official: bool,
    /// Built automatically.
    #[serde(default)]
    pub is_automated: bool,
}

#[derive(Deserialize)]
struct HubSearch {
    #[serde(default)]
    results: Vec<HubResult>,
}

fn hub_unreachable(e: &reqwest::Error) -> SearchError {
    SearchError::Unreachable(format!(
        "{DOCKER_HUB} does not answer from this server: {}",
        describe(e)
    ))
}

/// Docker Hub's search for `text`.
pub async fn search_hub(text: &str) -> Result<Vec<HubResult>, SearchError> {
    let response = client()
        .get(HUB_SEARCH)
        .query(&[("q", text), ("n", "25")])
        .send()
        .await
        .map_err(|e| hub_unreachable(&e))?;
    if !response.status().is_success() {
        return Err(SearchError::Unreachable(format!(
            "{DOCKER_HUB} answered HTTP {}",
            response.status().as_u16()
        )));
    }
    let found: HubSearch = response.json().await.map_err(|e| hub_unreachable(&e))?;
    Ok(found.results)
}

#[derive(Deserialize)]
struct HubTags {
    #[serde(default)]
    results: Vec<HubTag>,
}

#[derive(Deserialize)]
struct HubTag {
    name: String,
}

/// The tags of `repository` on Docker Hub (official images under `library/`).
pub async fn hub_tags(repository: &str) -> Result<Vec<String>, SearchError> {
    let path = if repository.contains('/') {
        repository.to_string()
    } else {
        format!("library/{repository}")
    };
    let response = client()
        .get(format!("{HUB_REPOSITORIES}/{path}/tags"))
        .query(&[("page_size", "100")])
        .send()
        .await
        .map_err(|e| hub_unreachable(&e))?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Err(SearchError::NotFound(format!(
            "{DOCKER_HUB} has no {repository}"
        )));
    }
    if !response.status().is_success() {
        return Err(SearchError::Unreachable(format!(
            "{DOCKER_HUB} answered HTTP {}",
            response.status().as_u16()
        )));
    }
    let found: HubTags = response.json().await.map_err(|e| hub_unreachable(&e))?;
    let mut tags: Vec<String> = found.results.into_iter().map(|t| t.name).collect();
    tags.sort();
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_try_https_then_http_without_a_scheme() {
        let e = Endpoint::at("local", "127.0.0.1:5000/", None);
        assert_eq!(e.bases, ["https://127.0.0.1:5000", "http://127.0.0.1:5000"]);
        assert_eq!(e.host, "127.0.0.1:5000");
        let e = Endpoint::at("x", "http://r.example:5000", None);
        assert_eq!(e.bases, ["http://r.example:5000"]);
        assert_eq!(e.host, "r.example:5000");
        let e = Endpoint::at("x", "https://u:secret@r.example", None);
        assert_eq!(e.bases, ["https://r.example"]);
        assert_eq!(e.host, "r.example");
        let (user, password) = e.login.unwrap();
        assert_eq!((user.as_str(), password.expose()), ("u", "secret"));
    }

    #[test]
    fn filter_is_a_case_insensitive_substring() {
        assert!(matches("stevedore/Abc", ""));
        assert!(matches("stevedore/Abc", "abc"));
        assert!(!matches("stevedore/abc", "xyz"));
    }

    #[tokio::test]
    async fn an_unreachable_registry_is_an_error_quickly() {
        // A port nothing listens on: refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = Endpoint::at("gone", &format!("127.0.0.1:{port}"), None);
        let started = std::time::Instant::now();
        let err = search_catalog(&e, "").await.unwrap_err();
        assert!(matches!(err, SearchError::Unreachable(_)), "{err:?}");
        assert!(err.message().contains("registry gone"), "{err:?}");
        assert!(started.elapsed() < REGISTRY_TIMEOUT);
    }
}
