//! Installed applications and the templates they come from: the host side
//! of the `repository` and `app-store` capabilities.
//!
//! Templates are the `type: "app"` entries of the `qnap` repository's
//! `list.json` ([`Catalog`]); each is the folder `template/<name>/` beside
//! `list.json`, whatever the entry's `location` (a web page). Every installed application has a folder
//! `<data>/apps/<name>/`: a copy of its template's files, the rendered
//! `docker-compose.yml`, and its record [`RECORD_FILE`] (JSON written by the
//! application plugins). Relative bind mounts of the compose file resolve
//! inside that folder; absolute host paths must lie under the share root
//! unless the operator trusts the repository (`[catalog] trusted = true`).

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;

use super::app_secrets;
use super::beneath;
use super::catalog::{Catalog, CatalogSwitch, Location};
use super::pins::{self, Pins};
use super::storage::ShareRoot;
use super::{
    AppFile, AppFolders, CallContext, Error, InstallTemplate, MountSource, RtResult, Template,
    Templates,
};

/// The record of an application, inside its folder.
pub use stevedore_contract::files::APP_RECORD as RECORD_FILE;

/// A template's compose file (the `qnap` repository format).
pub const TEMPLATE_COMPOSE: &str = "docker-compose.yml";

/// Files a template served over HTTP may have (a folder can't be listed there).
const KNOWN_FILES: &[&str] = &[
    TEMPLATE_COMPOSE,
    "wizard/stage/install.json",
    "wizard/install.json",
];

/// The application store and template repository.
pub struct AppStore {
    dir: PathBuf,
    catalog: CatalogSwitch,
    share: ShareRoot,
    trusted: bool,
    /// Mount sources pinned for the engine.
    pins: Pins,
    /// Seals the secret wizard answers of the records ([`app_secrets`]).
    secrets: crate::store::secret::SecretBox,
}

/// Whether `name` is a valid application name (Container Station's rule).
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    (2..=64).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// `path` as a clean relative path (no `..`, not absolute, not empty).
fn relative(what: &str, path: &str) -> RtResult<PathBuf> {
    let mut clean = PathBuf::new();
    for part in Path::new(path).components() {
        match part {
            Component::Normal(p) => clean.push(p),
            Component::CurDir => {}
            _ => {
                return Err(Error::Denied(format!(
                    "{what} `{path}`: must be relative and stay inside"
                )))
            }
        }
    }
    if clean.as_os_str().is_empty() {
        return Err(Error::Denied(format!("{what} `{path}`: names no file")));
    }
    Ok(clean)
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
    move |e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound(format!("{what}")),
        _ => Error::Other(format!("{what}: {e}")),
    }
}

/// Every regular file under `dir`, relative, `/`-separated, sorted. Links are skipped.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_dir() {
                walk(base, &path, out);
            } else if kind.is_file() {
                if let Ok(rel) = path.strip_prefix(base) {
                    out.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

impl AppStore {
    /// The store in `data_dir/apps`, templates from `catalog` (none: every
    /// template lookup fails saying no repository is configured).
    pub fn new(
        data_dir: &Path,
        catalog: Option<Catalog>,
        share_root: &Path,
        trusted: bool,
    ) -> std::io::Result<AppStore> {
        let dir = data_dir.join("apps");
        std::fs::create_dir_all(&dir)?;
        let key = data_dir.join(crate::store::secret::KEY_FILE);
        let secrets = crate::store::secret::SecretBox::load_or_create(&key)
            .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        Ok(AppStore {
            dir: dir.canonicalize()?,
            catalog: CatalogSwitch::new(catalog),
            share: ShareRoot::new(share_root)?,
            trusted,
            // Application containers are Docker's.
            pins: Pins::new(data_dir, "docker")?,
            secrets,
        })
    }

    /// Read templates from the repository `switch` holds at each lookup
    /// (shared with the API, which may replace it while the server runs).
    pub fn with_catalog(mut self, switch: CatalogSwitch) -> Self {
        self.catalog = switch;
        self
    }

    fn catalog(&self) -> RtResult<Catalog> {
        self.catalog.current().ok_or_else(|| {
            Error::Other(
                "no application repository is configured (set STEVEDORE_CATALOG or [catalog] url)"
                    .into(),
            )
        })
    }

    /// The folder of application `name` (which must be a valid name).
    pub fn folder_of(&self, name: &str) -> RtResult<PathBuf> {
        if !valid_name(name) {
            return Err(Error::InvalidParams(format!(
                "name: must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]{{1,63}}$ (got `{name}`)"
            )));
        }
        Ok(self.dir.join(name))
    }

    /// The template entry `name` and where its folder is.
    async fn locate(&self, name: &str) -> RtResult<(Template, Location)> {
        let catalog = self.catalog()?;
        let entry = catalog
            .find("app", name, "latest")
            .await
            .map_err(|e| match e {
                super::catalog::CatalogError::NotFound { .. } => {
                    Error::NotFound(format!("template `{name}` is not in the repository"))
                }
                other => Error::Other(other.to_string()),
            })?;
        // Always `template/<name>/` beside list.json: an app entry's
        // `location` is its web page (QNAP's point at Docker Hub), never the
        // template, so it is not read here.
        let location = catalog
            .template_folder(&entry.name)
            .map_err(|e| Error::Other(format!("template `{name}`: {e}")))?;
        let files = match &location {
            Location::File(dir) => files_under(dir),
            Location::Url(_) => {
                let mut found = Vec::new();
                for f in KNOWN_FILES {
                    if self.fetch(&location, f).await.is_ok() {
                        found.push(f.to_string());
                    }
                }
                found
            }
        };
        if !files.iter().any(|f| f == TEMPLATE_COMPOSE) {
            return Err(Error::NotFound(format!(
                "template `{name}` has no docker-compose.yml"
            )));
        }
        let template = Template {
            name: entry.name.clone(),
            version: entry.version.clone().unwrap_or_default(),
            files,
        };
        Ok((template, location))
    }

    async fn fetch(&self, folder: &Location, path: &str) -> RtResult<Vec<u8>> {
        let rel = relative("path", path)?;
        match folder {
            Location::File(dir) => {
                let full = dir.join(&rel);
                let meta = std::fs::symlink_metadata(&full).map_err(io(format!("file {path}")))?;
                if !meta.is_file() {
                    return Err(Error::Denied(format!("{path}: not a regular file")));
                }
                std::fs::read(&full).map_err(io(format!("file {path}")))
            }
            Location::Url(base) => {
                let mut base = base.clone();
                if !base.path().ends_with('/') {
                    let p = format!("{}/", base.path());
                    base.set_path(&p);
                }
                let url = base
                    .join(&rel.to_string_lossy())
                    .map_err(|e| Error::Other(format!("{path}: {e}")))?;
                let bytes =
                    self.catalog()?
                        .read(&Location::Url(url))
                        .await
                        .map_err(|e| match e {
                            super::catalog::CatalogError::Status { status: 404, .. } => {
                                Error::NotFound(format!("file {path}"))
                            }
                            other => Error::Other(other.to_string()),
                        })?;
                Ok(bytes.to_vec())
            }
        }
    }

    /// Where a mount source of application `app` is on the host: an
    /// `app-path` inside the application's folder (created when missing), a
    /// `host-path` under the share root unless the repository is trusted;
    /// either pinned ([`super::pins`]): the engine gets its staging folder.
    /// Volumes (and a trusted repository's host paths) are returned unchanged.
    pub fn resolve_mount(&self, app: &str, source: MountSource) -> RtResult<MountSource> {
        let pinned = match source {
            MountSource::Volume(v) => return Ok(MountSource::Volume(v)),
            MountSource::AppPath(rel) => {
                if app.is_empty() {
                    return Err(Error::InvalidParams(format!(
                        "volumes: `{rel}` is relative but no application was named"
                    )));
                }
                let folder = self.folder_of(app)?;
                let trimmed = rel.trim_end_matches('/');
                let path = if trimmed.is_empty() || trimmed == "." {
                    PathBuf::new()
                } else {
                    relative("volumes", trimmed).map_err(|_| {
                        Error::Denied(format!(
                            "volumes: `{rel}` leaves the folder of application {app}"
                        ))
                    })?
                };
                pins::Source { folder, path }
            }
            MountSource::HostPath(abs) => {
                let path = Path::new(&abs);
                if !path.is_absolute() {
                    return Err(Error::InvalidParams(format!(
                        "volumes: `{abs}` must be absolute"
                    )));
                }
                if self.trusted {
                    return Ok(MountSource::HostPath(abs));
                }
                let inside = path
                    .strip_prefix(self.share.root())
                    .ok()
                    .map(|rel| self.share.pin_source(&rel.to_string_lossy()));
                match inside {
                    Some(Ok(source)) => source,
                    _ => return Err(Error::Denied(format!(
                        "volumes: host path `{abs}` is outside the share root (set [catalog] trusted = true to allow it)"
                    ))),
                }
            }
        };
        let staged = self.pins.pin(&[pinned])?;
        Ok(MountSource::HostPath(staged[0].display().to_string()))
    }

    /// Release the pins among `mounts` (their create failed).
    pub fn release_mounts(&self, mounts: &[super::Mount]) {
        self.pins
            .release(mounts.iter().filter_map(|m| match &m.source {
                MountSource::HostPath(p) => Some(p.as_str()),
                _ => None,
            }));
    }
}

/// A record with the host's times: `created` kept from the `existing`
/// record (or now), `updated` now, in epoch seconds.
fn stamp(existing: Option<&[u8]>, content: &str) -> RtResult<String> {
    let mut record: serde_json::Map<String, serde_json::Value> = serde_json::from_str(content)
        .map_err(|e| Error::InvalidParams(format!("record: must be a JSON object: {e}")))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let created = existing
        .and_then(|t| serde_json::from_slice::<serde_json::Value>(t).ok())
        .and_then(|v| v.get("created").and_then(|c| c.as_i64()))
        .unwrap_or(now);
    record.insert("created".into(), created.into());
    record.insert("updated".into(), now.into());
    serde_json::to_string_pretty(&record).map_err(|e| Error::Other(e.to_string()))
}

/// The error for a file of an application's folder: a link on the way is
/// refused (`Denied`), a missing file is `NotFound`.
fn in_app(name: &str, path: &str) -> impl FnOnce(std::io::Error) -> Error {
    let (name, path) = (name.to_string(), path.to_string());
    move |e| {
        if beneath::escaped(&e) {
            Error::Denied(format!(
                "application {name}: `{path}` is or passes through a symbolic link"
            ))
        } else if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound(format!("application {name}: {path}"))
        } else {
            Error::Other(format!("application {name}: {path}: {e}"))
        }
    }
}

impl AppStore {
    /// The folder of application `name`, opened without following a link.
    /// Its files may be changed by the application's containers (which may
    /// mount it), so every file in it is reached beneath this descriptor,
    /// no link followed ([`beneath`]).
    fn open_folder(&self, name: &str) -> RtResult<OwnedFd> {
        let folder = self.folder_of(name)?;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&folder)
            .map(OwnedFd::from)
            .map_err(in_app(name, "."))
    }

    /// The file `path` of application `name`.
    fn read_in(&self, name: &str, path: &str) -> RtResult<Vec<u8>> {
        let folder = self.open_folder(name)?;
        let rel = relative("path", path)?;
        beneath::read(folder.as_fd(), &rel).map_err(in_app(name, path))
    }

    /// Replace the file `path` of application `name` with `content`.
    fn write_in(&self, name: &str, path: &str, content: &[u8]) -> RtResult<()> {
        let folder = self.open_folder(name)?;
        let rel = relative("path", path)?;
        beneath::write_replace(folder.as_fd(), &rel, content, 0o644).map_err(in_app(name, path))
    }
}

impl super::Backend for AppStore {}

#[async_trait]
impl Templates for AppStore {
    async fn template_list(&self) -> RtResult<Vec<Template>> {
        let entries = self
            .catalog()?
            .entries()
            .await
            .map_err(|e| Error::Other(e.to_string()))?;
        let mut out = Vec::new();
        for entry in entries.iter().filter(|e| e.kind == "app") {
            if let Ok((t, _)) = self.locate(&entry.name).await {
                out.push(t);
            }
        }
        Ok(out)
    }

    async fn template_get(&self, name: String) -> RtResult<Template> {
        Ok(self.locate(&name).await?.0)
    }

    async fn template_read(&self, name: String, path: String) -> RtResult<String> {
        let (_, location) = self.locate(&name).await?;
        let bytes = self.fetch(&location, &path).await?;
        String::from_utf8(bytes)
            .map_err(|_| Error::Other(format!("template {name}: {path} is not UTF-8 text")))
    }
}

#[async_trait]
impl AppFolders for AppStore {
    async fn app_record(&self, name: String) -> RtResult<Option<String>> {
        match self.read_in(&name, RECORD_FILE) {
            Ok(text) => Ok(Some(app_secrets::shown(&String::from_utf8_lossy(&text)))),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn app_records(&self) -> RtResult<Vec<(String, String)>> {
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(io(self.dir.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !valid_name(&name) {
                continue;
            }
            if let Ok(text) = self.read_in(&name, RECORD_FILE) {
                out.push((name, app_secrets::shown(&String::from_utf8_lossy(&text))));
            }
        }
        out.sort();
        Ok(out)
    }

    async fn app_folder(&self, name: String) -> RtResult<String> {
        Ok(self.folder_of(&name)?.display().to_string())
    }

    async fn app_install_template(&self, _cx: &CallContext, req: InstallTemplate) -> RtResult<()> {
        let InstallTemplate {
            app: name,
            template,
            replace,
        } = req;
        let folder = self.folder_of(&name)?;
        let (t, location) = self.locate(&template).await?;
        if !replace {
            // create_dir (not _all) is the atomic claim of the name.
            std::fs::create_dir(&folder).map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    Error::Conflict(format!("application {name} already exists"))
                }
                _ => Error::Other(format!("application {name}: {e}")),
            })?;
        }
        for file in &t.files {
            let content = self.fetch(&location, file).await?;
            self.write_in(&name, file, &content)?;
        }
        Ok(())
    }

    async fn app_read_file(&self, _cx: &CallContext, file: AppFile) -> RtResult<String> {
        let AppFile { app: name, path } = file;
        let bytes = self.read_in(&name, &path)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::Other(format!("application {name}: {path} is not UTF-8 text")))?;
        if relative("path", &path)? == Path::new(RECORD_FILE) {
            return app_secrets::open(&self.secrets, &name, &text);
        }
        Ok(text)
    }

    async fn app_write_file(&self, _cx: &CallContext, file: AppFile, text: String) -> RtResult<()> {
        let (AppFile { app: name, path }, content) = (file, text);
        self.open_folder(&name)
            .map_err(|_| Error::NotFound(format!("application {name}")))?;
        if relative("path", &path)? == Path::new(RECORD_FILE) {
            let existing = self.read_in(&name, RECORD_FILE).ok();
            let stamped = stamp(existing.as_deref(), &content)?;
            let stored = existing.map(|b| String::from_utf8_lossy(&b).into_owned());
            let sealed = app_secrets::seal(&self.secrets, &name, &stamped, stored.as_deref())?;
            return self.write_in(&name, RECORD_FILE, sealed.as_bytes());
        }
        self.write_in(&name, &path, content.as_bytes())
    }

    async fn app_remove(&self, _cx: &CallContext, name: String) -> RtResult<()> {
        let folder = self.folder_of(&name)?;
        match std::fs::remove_dir_all(&folder) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Other(format!("application {name}: {e}"))),
        }
    }
}

/// The wizard of a template as `GET template/{name}/wizard` answers it, and
/// what the application routes read from a rendered compose file.
pub mod wizard {
    use serde_json::{json, Map, Value};
    use serde_norway::Value as Yaml;

    /// Where a template's wizard may be, the one that wins first: the 2.0
    /// format, then `wizard/install.json` (on QNAP's `master` branch an
    /// older format with no `schema`, read as no fields).
    pub const FILES: [&str; 2] = ["wizard/stage/install.json", "wizard/install.json"];

    /// Whether `lang` is a language code as QTS spells them (`eng`, `cht`, ...).
    pub fn valid_lang(lang: &str) -> bool {
        (2..=8).contains(&lang.len()) && lang.bytes().all(|b| b.is_ascii_lowercase())
    }

    /// Every `{{KEY}}` in the strings of `value` replaced by `strings[KEY]`;
    /// a key the strings lack is left as written.
    pub fn translate(value: &mut Value, strings: &Map<String, Value>) {
        match value {
            Value::String(s) => {
                let mut out = String::with_capacity(s.len());
                let mut rest = s.as_str();
                while let Some(start) = rest.find("{{") {
                    let Some(len) = rest[start + 2..].find("}}") else {
                        break;
                    };
                    let key = rest[start + 2..start + 2 + len].trim();
                    out.push_str(&rest[..start]);
                    match strings.get(key).and_then(Value::as_str) {
                        Some(text) => out.push_str(text),
                        None => out.push_str(&rest[start..start + 4 + len]),
                    }
                    rest = &rest[start + 4 + len..];
                }
                out.push_str(rest);
                *s = out;
            }
            Value::Array(items) => items.iter_mut().for_each(|v| translate(v, strings)),
            Value::Object(map) => map.values_mut().for_each(|v| translate(v, strings)),
            _ => {}
        }
    }

    /// One step of a binding path (`gitlab.ports[0]`, `web.environment.PORT`).
    enum Step<'a> {
        Key(&'a str),
        Index(usize),
    }

    fn steps(path: &str) -> Option<Vec<Step<'_>>> {
        let mut out = Vec::new();
        for part in path.split('.') {
            let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
            if !key.is_empty() {
                out.push(Step::Key(key));
            }
            while let Some(inner) = rest.strip_prefix('[') {
                let end = inner.find(']')?;
                out.push(Step::Index(inner[..end].parse().ok()?));
                rest = &inner[end + 1..];
            }
            if !rest.is_empty() {
                return None;
            }
        }
        (!out.is_empty()).then_some(out)
    }

    fn scalar(v: &Yaml) -> Option<String> {
        match v {
            Yaml::String(s) => Some(s.clone()),
            Yaml::Number(n) => Some(n.to_string()),
            Yaml::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// What an answer at a list entry replaces: the host side of a port
    /// `H:C` / `IP:H:C`, the source of a volume `S:D:mode`, the `V` of `K=V`.
    fn entry_value(entry: &str) -> Option<String> {
        if let Some((k, v)) = entry.split_once('=') {
            if !k.contains(':') {
                return Some(v.to_string());
            }
        }
        let parts: Vec<&str> = entry.split(':').collect();
        match parts.as_slice() {
            [h, _] => Some(h.to_string()),
            [s, _, m] if matches!(*m, "ro" | "rw" | "z" | "Z") => Some(s.to_string()),
            [_, h, _] => Some(h.to_string()),
            _ => None,
        }
    }

    /// The template's value at binding `path` of a compose document, as
    /// text: what the field's answer would replace.
    pub fn value_at(doc: &Yaml, path: &str) -> Option<String> {
        let steps = steps(path)?;
        let (last, parents) = steps.split_last()?;
        let mut node = doc;
        for step in parents {
            node = match step {
                Step::Key(k) => node.as_mapping()?.get(*k)?,
                Step::Index(i) => node.as_sequence()?.get(*i)?,
            };
        }
        match (last, node) {
            (Step::Key(k), Yaml::Mapping(m)) => scalar(m.get(*k)?),
            (Step::Key(k), Yaml::Sequence(list)) => {
                let prefix = format!("{k}=");
                list.iter()
                    .filter_map(Yaml::as_str)
                    .find_map(|e| e.strip_prefix(&prefix).map(str::to_string))
            }
            (Step::Index(i), Yaml::Sequence(list)) => entry_value(&scalar(list.get(*i)?)?),
            _ => None,
        }
    }

    /// `text` as the JSON value of a field of type `kind`.
    fn typed(text: &str, kind: Option<&str>) -> Value {
        match kind {
            Some("integer") => text.trim().parse::<i64>().map_or(text.into(), Value::from),
            Some("number") => text.trim().parse::<f64>().map_or(text.into(), Value::from),
            Some("boolean") => text.trim().parse::<bool>().map_or(text.into(), Value::from),
            _ => text.into(),
        }
    }

    /// The services of a compose document, v1 (at the top) or not.
    fn services(doc: &Yaml) -> Option<&serde_norway::Mapping> {
        let top = doc.as_mapping()?;
        match top.get("services") {
            Some(s) => s.as_mapping(),
            None => Some(top),
        }
    }

    /// The first published host port of a compose file, services in file order.
    pub fn first_host_port(compose: &str) -> Option<u16> {
        let doc: Yaml = serde_norway::from_str(compose).ok()?;
        services(&doc)?.values().find_map(|service| {
            service
                .get("ports")?
                .as_sequence()?
                .iter()
                .filter_map(scalar)
                .find_map(|p| {
                    let parts: Vec<&str> = p.split(':').collect();
                    let host = match parts.as_slice() {
                        [h, _] | [_, h, _] => *h,
                        _ => return None,
                    };
                    host.parse::<u16>().ok()
                })
        })
    }

    /// The translated wizard: `install` (the 2.0 `install.json`) with its
    /// `{{KEY}}` strings from `strings`, each page's `schema` as a JSON
    /// schema object (`{"type": "object", "properties": ...}`), `default`
    /// holding each bound field's value in the template's `compose` text (or
    /// the field's own `default`), `description` the template's text, and no
    /// `binding`. An `install.json` of the older format (pages with no
    /// `schema`) shows no pages: the install accepts no answers for it.
    pub fn answer(
        template: &str,
        mut install: Value,
        strings: &Map<String, Value>,
        description: &str,
        compose: &str,
    ) -> Value {
        translate(&mut install, strings);
        let mut install = match install {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let doc: Option<Yaml> = serde_norway::from_str(compose).ok();
        let binding = install.remove("binding");
        let paths = binding
            .as_ref()
            .and_then(|b| b.get("data"))
            .and_then(Value::as_object);
        let mut defaults = Map::new();
        let mut pages = Vec::new();
        let raw_pages = match install.remove("wizard") {
            Some(Value::Array(p)) => p,
            _ => Vec::new(),
        };
        for mut page in raw_pages {
            let Some(Value::Object(schema)) = page.get_mut("schema").map(Value::take) else {
                // The older format: no schema, no fields.
                continue;
            };
            let properties = match schema.get("properties") {
                Some(Value::Object(p)) if schema.get("type").is_some() => p.clone(),
                _ => schema.clone(),
            };
            for (field, spec) in &properties {
                let kind = spec.get("type").and_then(Value::as_str);
                let own = spec.get("default").cloned();
                let bound = paths
                    .and_then(|p| p.get(field))
                    .and_then(Value::as_array)
                    .and_then(|list| list.first())
                    .and_then(Value::as_str)
                    .zip(doc.as_ref())
                    .and_then(|(path, doc)| value_at(doc, path))
                    .map(|text| typed(&text, kind));
                // A secret field proposes nothing, not even the template's value.
                if kind == Some("password") {
                    continue;
                }
                if let Some(v) = own.or(bound) {
                    defaults.insert(field.clone(), v);
                }
            }
            page["schema"] = json!({"type": "object", "properties": properties});
            pages.push(page);
        }
        install.entry("api_version").or_insert_with(|| "v1".into());
        install
            .entry("title")
            .or_insert_with(|| template.to_string().into());
        install.insert("description".into(), description.into());
        install.insert("default".into(), Value::Object(defaults));
        install.insert("wizard".into(), Value::Array(pages));
        // The older format's other keys (`app`, `env`) mean nothing here.
        install.remove("app");
        install.remove("env");
        Value::Object(install)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(trusted: bool) -> (tempfile::TempDir, AppStore) {
        let dir = tempfile::tempdir().unwrap();
        let cat = dir.path().join("cat");
        std::fs::create_dir_all(cat.join("template/web/conf")).unwrap();
        std::fs::write(
            cat.join("list.json"),
            r#"[{"name": "web", "type": "app", "version": "2"}]"#,
        )
        .unwrap();
        std::fs::write(cat.join("template/web/docker-compose.yml"), "web: {}\n").unwrap();
        std::fs::write(cat.join("template/web/conf/a.conf"), "x").unwrap();
        let catalog = Catalog::new(&cat.display().to_string()).unwrap();
        let s = AppStore::new(
            &dir.path().join("data"),
            Some(catalog),
            &dir.path().join("share"),
            trusted,
        )
        .unwrap();
        (dir, s)
    }

    #[tokio::test]
    async fn templates_are_found_read_and_copied() {
        let (_d, s) = store(false);
        let t = s.template_get("web".into()).await.unwrap();
        assert_eq!(t.version, "2");
        assert_eq!(t.files, ["conf/a.conf", "docker-compose.yml"]);
        assert!(matches!(
            s.template_get("nope".into()).await,
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            s.template_read("web".into(), "../list.json".into()).await,
            Err(Error::Denied(_))
        ));
        struct Quiet;
        impl crate::queue::Reporter for Quiet {
            fn progress(&self, _percent: i32, _detail: &str) {}
            fn log(&self, _level: crate::queue::LogLevel, _message: &str) {}
        }
        let cx = CallContext {
            task_id: 0,
            user: "t".into(),
            cancel: Default::default(),
            reporter: std::sync::Arc::new(Quiet),
        };
        let install = InstallTemplate {
            app: "app1".into(),
            template: "web".into(),
            replace: false,
        };
        s.app_install_template(&cx, install.clone()).await.unwrap();
        assert!(matches!(
            s.app_install_template(&cx, install).await,
            Err(Error::Conflict(_))
        ));
        assert_eq!(
            s.app_read_file(&cx, AppFile::new("app1", "conf/a.conf"))
                .await
                .unwrap(),
            "x"
        );
        s.app_write_file(&cx, AppFile::new("app1", RECORD_FILE), "{}".into())
            .await
            .unwrap();
        let records = s.app_records().await.unwrap();
        assert_eq!(records.len(), 1);
        let record: serde_json::Value = serde_json::from_str(&records[0].1).unwrap();
        assert!(record["created"].as_i64().unwrap() > 0);
        s.app_remove(&cx, "app1".into()).await.unwrap();
        assert_eq!(s.app_record("app1".into()).await.unwrap(), None);
    }

    #[test]
    fn the_wizard_is_translated_shaped_and_defaulted_as_recorded() {
        use serde_json::json;
        let install = json!({"api_version": "v1", "title": "{{NAME}}",
            "wizard": [{"title": "{{CONF}}", "schema": {
                "http_port": {"type": "integer", "title": "HTTP Port",
                              "description": "{{PORT_DESC}}", "required": true, "maximum": 65535},
                "ssh_port": {"type": "integer", "title": "SSH Port", "required": true}},
              "form": ["*"]}],
            "binding": {"type": "yaml", "file": "docker-compose.yml",
              "data": {"http_port": ["git.ports[0]", "git.environment.GIT_PORT"],
                       "ssh_port": ["git.environment.GIT_SSH_PORT", "git.ports[1]"]}}});
        let strings = json!({"NAME": "Git", "CONF": "Configure", "PORT_DESC": "The port."});
        let compose = "db:\n  image: pg\ngit:\n  image: git:1\n  ports:\n    - \"12080:80\"\n    - 127.0.0.1:12022:22\n  environment:\n    - GIT_PORT=12080\n    - GIT_SSH_PORT=12022\n";
        let got = wizard::answer(
            "git",
            install,
            strings.as_object().unwrap(),
            "## About\n",
            compose,
        );
        assert_eq!(
            got,
            json!({"api_version": "v1", "title": "Git", "description": "## About\n",
                "default": {"http_port": 12080, "ssh_port": 12022},
                "wizard": [{"title": "Configure", "form": ["*"], "schema": {"type": "object",
                  "properties": {
                    "http_port": {"type": "integer", "title": "HTTP Port",
                      "description": "The port.", "required": true, "maximum": 65535},
                    "ssh_port": {"type": "integer", "title": "SSH Port", "required": true}}}}]})
        );
        // The older format alone: no pages, nothing to answer.
        let old = json!({"app": {}, "wizard": [{"step_title": "{{'X' | translate}}", "items": []}], "env": {}});
        let got = wizard::answer("j", old, &serde_json::Map::new(), "", "web: {}\n");
        assert_eq!(
            got,
            json!({"api_version": "v1", "title": "j", "description": "", "default": {}, "wizard": []})
        );
        let mut v = json!(["{{A}} and {{ B }} and {{C}}", "{{unclosed"]);
        wizard::translate(&mut v, json!({"A": "1", "B": "2"}).as_object().unwrap());
        assert_eq!(v, json!(["1 and 2 and {{C}}", "{{unclosed"]));
        assert_eq!(wizard::first_host_port(compose), Some(12080));
        assert_eq!(
            wizard::first_host_port("version: '3'\nservices:\n  a:\n    ports: ['80']\n  b:\n    ports: ['0.0.0.0:8081:80']\n"),
            Some(8081)
        );
        assert!(
            wizard::valid_lang("eng") && !wizard::valid_lang("../x") && !wizard::valid_lang("ENG")
        );
    }

    #[test]
    fn mounts_stay_inside_unless_trusted() {
        let (d, s) = store(false);
        std::fs::create_dir_all(s.folder_of("app1").unwrap()).unwrap();
        assert!(matches!(
            s.resolve_mount("app1", MountSource::AppPath("../x".into())),
            Err(Error::Denied(_))
        ));
        let MountSource::HostPath(p) = s
            .resolve_mount("app1", MountSource::AppPath("./data".into()))
            .unwrap()
        else {
            panic!()
        };
        assert!(p.contains("/binds/"), "{p}");
        assert_eq!(
            s.pins.original(&p).unwrap(),
            s.folder_of("app1").unwrap().join("data")
        );
        assert!(s.folder_of("app1").unwrap().join("data").is_dir());
        assert!(matches!(
            s.resolve_mount("app1", MountSource::HostPath("/etc".into())),
            Err(Error::Denied(_))
        ));
        let inside = format!("{}/media", s.share.root().display());
        let MountSource::HostPath(media) = s
            .resolve_mount("app1", MountSource::HostPath(inside))
            .unwrap()
        else {
            panic!()
        };
        s.pins.release([p.as_str(), media.as_str()]);
        drop((d, s));
        let (_d, trusting) = store(true);
        assert!(trusting
            .resolve_mount("app1", MountSource::HostPath("/etc".into()))
            .is_ok());
    }
}
