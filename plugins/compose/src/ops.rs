//! The application categories' work against the host: checking params at
//! submit time, installing a project, and upgrading it in place.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use stevedore_sdk::containers::{self, Mount, MountSource};
use stevedore_sdk::health::Gate;
use stevedore_sdk::images::{self, PullRequest, Source};
use stevedore_sdk::repository::{self, Template};
use stevedore_sdk::{app_store, check, networks, task, volumes, Error, RuntimeKind};

use crate::plan::{self, network_labels, volume_labels, Context, Project, ServicePlan};
use crate::render;
use crate::wizard::Wizard;

/// The record of an application, `.stevedore-app.json` in its folder. The
/// host adds `created` and `updated` (epoch seconds) when it is written.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// Application (and compose project) name as the user gave it.
    pub name: String,
    /// Compose project name.
    pub project: String,
    /// Template name.
    pub template: String,
    /// Template version installed.
    pub version: String,
    /// The wizard's answers, kept for upgrades. The host keeps secret ones
    /// sealed: [`load_record`] shows them as `"******"`, [`load_full_record`]
    /// (the owner's task) has them.
    pub binding: Map<String, Json>,
    /// The answers the template's wizard says are secret (`password`
    /// fields): the host seals them, besides those named like secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Reverse-proxy path, if any.
    #[serde(default)]
    pub virtual_path: Option<String>,
    /// The application's HTTP port, if any.
    #[serde(default)]
    pub port: Option<u16>,
    /// Restart with the engine.
    #[serde(default)]
    pub autostart: bool,
    /// `creating` while installing, then `installed`.
    pub state: String,
    /// Services in start order.
    #[serde(default)]
    pub services: Vec<String>,
    /// Container names, in start order.
    #[serde(default)]
    pub containers: Vec<String>,
    /// Set by the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
}

/// The rendered compose file in the application folder.
pub use stevedore_sdk::contract::files::APP_COMPOSE as COMPOSE_FILE;
/// The record's file name in the application folder.
pub use stevedore_sdk::contract::files::APP_RECORD as RECORD_FILE;

/// A template read from the repository.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Name, version, files.
    pub template: Template,
    /// `docker-compose.yml` as written.
    pub compose: String,
    /// The wizard ([`WIZARD_FILES`]: the 2.0 format wins), if any.
    pub wizard: Wizard,
}

/// Where a template's wizard may be, the one that wins first: the 2.0
/// format (`wizard/stage/install.json`), then `wizard/install.json`, which
/// on QNAP's `master` branch may be an older format (`app`,
/// `wizard[].items[].subitems[]`) whose pages hold no `schema`: read alone,
/// it is a wizard with no fields.
pub const WIZARD_FILES: [&str; 2] = ["wizard/stage/install.json", "wizard/install.json"];

/// Read template `name`; a missing one is `template: ...` (invalid params).
pub fn load_template(name: &str) -> Result<Loaded, Error> {
    let template = repository::get(name).map_err(|e| match e {
        Error::NotFound(_) => Error::invalid(
            "template",
            format!("no template `{name}` in the repository"),
        ),
        Error::InvalidParams(m) | Error::Other(m) | Error::Runtime(m) => {
            Error::invalid("template", m)
        }
        other => other,
    })?;
    let compose = repository::read_file(name, COMPOSE_FILE)?;
    let wizard_file = WIZARD_FILES
        .into_iter()
        .find(|f| template.files.iter().any(|t| t == f));
    let wizard = match wizard_file {
        Some(f) => Wizard::parse(&repository::read_file(name, f)?)
            .map_err(|m| Error::Other(format!("template {name}: {m}")))?,
        None => Wizard::default(),
    };
    Ok(Loaded {
        template,
        compose,
        wizard,
    })
}

/// The stored record of application `name`, if it exists.
pub fn load_record(name: &str) -> Result<Option<Record>, Error> {
    match app_store::record(name)? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Other(format!("application {name}: record: {e}"))),
    }
}

/// What the host shows instead of a secret answer.
pub const MASK: &str = "******";

/// The record of application `name` with its secret answers, as the host
/// gives it to a task of the application's owner.
pub fn load_full_record(name: &str) -> Result<Record, Error> {
    let text = app_store::read_file(name, RECORD_FILE)?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Other(format!("application {name}: record: {e}")))
}

/// Render and plan `loaded` with `answers` for application `app`.
pub fn prepare(
    loaded: &Loaded,
    app: &str,
    answers: &Map<String, Json>,
    autostart: bool,
) -> Result<(String, Project), Error> {
    let template = &loaded.template.name;
    let doc = render::render(&loaded.compose, &loaded.wizard, answers)
        .map_err(|m| Error::Other(format!("template {template}: {m}")))?;
    let text = render::to_text(&doc).map_err(Error::Other)?;
    let cx = Context {
        app: app.to_string(),
        folder: app_store::folder(app)?,
        autostart,
    };
    let project =
        plan::plan(&doc, &cx).map_err(|m| Error::Other(format!("template {template}: {m}")))?;
    Ok((text, project))
}

/// The `application` params.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
pub struct InstallParams {
    /// Template name in the repository.
    pub template: String,
    /// Application and compose project name.
    pub name: String,
    /// Restart the containers with the engine.
    #[serde(default)]
    pub autostart: bool,
    /// Reverse-proxy path; unique among applications.
    #[serde(default)]
    pub virtual_path: Option<String>,
    /// HTTP port; unique among applications.
    #[serde(default)]
    pub port: Option<u16>,
    /// The wizard's answers.
    #[serde(default)]
    pub binding: Map<String, Json>,
}

/// Submit-time checks of `application`: the name, the template, every
/// answer against the wizard, and `virtual_path` / `port` against the
/// other applications. Only lookups: nothing touches the engine.
pub fn validate_install(p: &InstallParams) -> Result<Loaded, Error> {
    check::name("name", &p.name)?;
    if plan::project_name(&p.name).is_empty() {
        return Err(Error::invalid("name", "must contain a letter or digit"));
    }
    if let Some(vp) = &p.virtual_path {
        if !vp.starts_with('/')
            || vp.len() < 2
            || vp
                .chars()
                .any(|c| c.is_whitespace() || c == '?' || c == '#')
        {
            return Err(Error::invalid("virtual_path", "must be a path like /myapp"));
        }
    }
    if p.port == Some(0) {
        return Err(Error::invalid("port", "must be 1..=65535"));
    }
    let loaded = load_template(&p.template)?;
    loaded
        .wizard
        .check(&p.binding)
        .map_err(|(field, m)| Error::invalid(&field, m))?;
    for name in loaded.wizard.secret_fields() {
        if p.binding.contains_key(&name) {
            task::mark_secret(&task::pointer("/binding", &name));
        }
    }
    for (name, text) in app_store::records()? {
        if name == p.name || plan::project_name(&name) == plan::project_name(&p.name) {
            return Err(Error::invalid(
                "name",
                format!("application `{name}` already exists"),
            ));
        }
        let Ok(other) = serde_json::from_str::<Record>(&text) else {
            continue;
        };
        if p.virtual_path.is_some() && other.virtual_path == p.virtual_path {
            return Err(Error::invalid(
                "virtual_path",
                format!("application `{name}` already uses it"),
            ));
        }
        if p.port.is_some() && other.port == p.port {
            return Err(Error::invalid(
                "port",
                format!("application `{name}` already uses it"),
            ));
        }
    }
    // The template must render and plan with these answers.
    prepare(&loaded, &p.name, &p.binding, p.autostart).map_err(|e| match e {
        Error::Other(m) => Error::invalid("template", m),
        other => other,
    })?;
    Ok(loaded)
}

/// `repository:tag` of an image reference (tag `latest` when none).
pub fn split_image(reference: &str) -> (String, String) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
        _ => (reference.to_string(), "latest".to_string()),
    }
}

/// Pull the project's images, reporting `Download image: N%`. Without
/// `always`, images already present are not pulled (what `up` does).
pub fn pull_images(project: &Project, always: bool) -> Result<(), Error> {
    let wanted: BTreeSet<&str> = project
        .services
        .iter()
        .map(|s| s.spec.image.as_str())
        .collect();
    let count = wanted.len().max(1);
    for (i, reference) in wanted.into_iter().enumerate() {
        let percent = (i * 100 / count) as i8;
        task::progress(percent, &format!("Download image: {percent}%"));
        if !always && images::inspect(RuntimeKind::Docker, reference).is_ok() {
            continue;
        }
        pull(reference)?;
    }
    task::progress(100, "Download image: 100%");
    Ok(())
}

/// Pull one image reference (progress goes to the task from the host).
pub fn pull(reference: &str) -> Result<(), Error> {
    let (image, tag) = split_image(reference);
    images::pull(&PullRequest {
        runtime: RuntimeKind::Docker,
        image,
        tag,
        source: Source::Dockerhub,
        credential: None,
    })
    .map(|_| ())
    .map_err(|e| match e {
        Error::Cancelled => Error::Cancelled,
        e => Error::Runtime(format!("could not pull image {reference}: {}", message(&e))),
    })
}

/// An error's words, whatever its case.
pub fn message(e: &Error) -> String {
    match e {
        Error::InvalidParams(m) | Error::Runtime(m) | Error::Other(m) => m.clone(),
        Error::NotFound(m) => format!("not found: {m}"),
        Error::Conflict(m) => format!("conflict: {m}"),
        Error::Denied(m) => format!("denied: {m}"),
        Error::Cancelled => "cancelled".into(),
    }
}

/// What a run created, to remove on failure.
#[derive(Debug, Default)]
pub struct Undo {
    containers: Vec<String>,
    networks: Vec<String>,
    volumes: Vec<String>,
}

impl Undo {
    /// Remove it all, newest first; errors are logged, not returned.
    pub fn run(self) {
        for id in self.containers.iter().rev() {
            if let Err(e) = containers::remove(RuntimeKind::Docker, id, true) {
                task::log(
                    stevedore_sdk::Level::Warn,
                    &format!("removing container {id}: {}", message(&e)),
                );
            }
        }
        for n in self.networks.iter().rev() {
            let _ = networks::remove(n);
        }
        for v in self.volumes.iter().rev() {
            let _ = volumes::remove(v);
        }
    }
}

/// Create the project's networks and named volumes that do not exist yet
/// (existing volumes are reused, as `up` does: data survives a reinstall).
pub fn ensure_resources(project: &Project, undo: &mut Undo) -> Result<(), Error> {
    let present: BTreeSet<String> = networks::list(plan::PROJECT, &project.name)?
        .into_iter()
        .map(|n| n.name)
        .collect();
    for n in project.networks.iter().filter(|n| !n.external) {
        if !present.contains(&n.name) {
            networks::create(&n.name, &network_labels(&project.name, &n.key))?;
            undo.networks.push(n.name.clone());
        }
    }
    for v in project.volumes.iter().filter(|v| !v.external) {
        match volumes::create(&v.name, &volume_labels(&project.name, &v.key)) {
            Ok(()) => undo.volumes.push(v.name.clone()),
            Err(Error::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Create and start one service's container, with extra mounts.
pub fn start_service(s: &ServicePlan, carried: &[Mount], undo: &mut Undo) -> Result<String, Error> {
    let mut spec = s.spec.clone();
    let mut extra = s.extra.clone();
    for m in carried {
        spec.new_volumes
            .retain(|p| p.trim_end_matches('/') != m.target.trim_end_matches('/'));
        extra.mounts.push(m.clone());
    }
    let id = containers::create_with(&spec, &extra).map_err(|e| {
        Error::Runtime(format!("creating container {}: {}", spec.name, message(&e)))
    })?;
    undo.containers.push(id.clone());
    containers::start(RuntimeKind::Docker, &id).map_err(|e| {
        Error::Runtime(format!("starting container {}: {}", spec.name, message(&e)))
    })?;
    Ok(id)
}

fn write_record(record: &Record) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(record).map_err(|e| Error::Other(e.to_string()))?;
    app_store::write_file(&record.name, RECORD_FILE, &text)
}

/// Install: claim the folder, render, pull, lay out and start. Any failure
/// removes what this run created (a cancellation is undone by the host).
pub fn install(p: &InstallParams) -> Result<String, Error> {
    let loaded = load_template(&p.template)?;
    app_store::install_template(&p.name, &p.template, false).map_err(|e| match e {
        Error::Conflict(m) => Error::invalid("name", m),
        other => other,
    })?;
    let mut undo = Undo::default();
    let result = install_into(p, &loaded, &mut undo);
    if let Err(e) = &result {
        if !matches!(e, Error::Cancelled) {
            task::log(
                stevedore_sdk::Level::Error,
                &format!("install failed: {}; removing what it created", message(e)),
            );
            undo.run();
            let _ = app_store::remove(&p.name);
        }
    }
    result
}

fn install_into(p: &InstallParams, loaded: &Loaded, undo: &mut Undo) -> Result<String, Error> {
    let (text, project) = prepare(loaded, &p.name, &p.binding, p.autostart)?;
    let mut record = Record {
        name: p.name.clone(),
        project: project.name.clone(),
        template: p.template.clone(),
        version: loaded.template.version.clone(),
        binding: p.binding.clone(),
        secrets: loaded.wizard.secret_fields(),
        virtual_path: p.virtual_path.clone(),
        port: p.port,
        autostart: p.autostart,
        state: "creating".into(),
        services: project.services.iter().map(|s| s.service.clone()).collect(),
        containers: project
            .services
            .iter()
            .map(|s| s.spec.name.clone())
            .collect(),
        created: None,
    };
    write_record(&record)?;
    app_store::write_file(&p.name, COMPOSE_FILE, &text)?;
    // As `up` does: networks and volumes first, then each service in
    // dependency order, its image pulled just before when it is missing.
    ensure_resources(&project, undo)?;
    let count = project.services.len().max(1);
    for (i, s) in project.services.iter().enumerate() {
        let percent = (i * 100 / count) as i8;
        if images::inspect(RuntimeKind::Docker, &s.spec.image).is_err() {
            task::progress(percent, &format!("Download image: {percent}%"));
            pull(&s.spec.image)?;
        }
        task::check_cancelled()?;
        task::progress(percent, &format!("Create container: {}", s.spec.name));
        start_service(s, &[], undo)?;
    }
    record.state = "installed".into();
    write_record(&record)?;
    task::progress(100, &format!("application {} installed", p.name));
    Ok(format!(
        "installed application {} ({} {}): {}",
        p.name,
        p.template,
        record.version,
        record.containers.join(", ")
    ))
}

/// The `application_upgrade` params.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
pub struct UpgradeParams {
    /// Template name; must be the one the application was installed from.
    pub template: String,
    /// Application name.
    pub name: String,
    /// Most seconds to wait for a recreated container's health check to
    /// pass (default 60, at most 3600).
    #[serde(default)]
    pub health_timeout_secs: Option<u64>,
    /// Seconds a recreated container without a health check must keep
    /// running (default 10, at most 3600).
    #[serde(default)]
    pub stable_secs: Option<u64>,
}

/// Most seconds of a health gate's wait.
const MAX_GATE_SECS: u64 = 3600;

impl UpgradeParams {
    /// The health gate the recreated containers must pass.
    pub fn gate(&self) -> Result<Gate, Error> {
        let seconds = |field: &str, v: Option<u64>, default: u64| match v.unwrap_or(default) {
            0 => Err(Error::invalid(field, "must be at least 1")),
            s if s > MAX_GATE_SECS => Err(Error::invalid(
                field,
                format!("must be at most {MAX_GATE_SECS}"),
            )),
            s => Ok(s * 1000),
        };
        Ok(Gate {
            timeout_ms: seconds("health_timeout_secs", self.health_timeout_secs, 60)?,
            stable_ms: seconds("stable_secs", self.stable_secs, 10)?,
            poll_ms: 500,
        })
    }
}

/// Submit-time checks of `application_upgrade`.
pub fn validate_upgrade(p: &UpgradeParams) -> Result<Record, Error> {
    check::name("name", &p.name)?;
    p.gate()?;
    let record = load_record(&p.name)?
        .ok_or_else(|| Error::invalid("name", format!("no application `{}`", p.name)))?;
    if record.template != p.template {
        return Err(Error::invalid(
            "template",
            format!(
                "application `{}` was installed from template `{}`",
                p.name, record.template
            ),
        ));
    }
    if record.state != "installed" {
        return Err(Error::invalid(
            "name",
            format!("application `{}` is still being installed", p.name),
        ));
    }
    load_template(&p.template)?;
    Ok(record)
}

/// Anonymous volumes of a container (by inspect), as mounts to carry over
/// to its replacement, except at paths `covered` by the new configuration.
fn anonymous_volumes(container: &str, covered: &BTreeSet<String>) -> Vec<Mount> {
    let Ok(text) = containers::inspect(RuntimeKind::Docker, container) else {
        return Vec::new();
    };
    let Ok(json) = serde_json::from_str::<Json>(&text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for m in json["Mounts"].as_array().into_iter().flatten() {
        let (Some(kind), Some(name), Some(dest)) = (
            m["Type"].as_str(),
            m["Name"].as_str(),
            m["Destination"].as_str(),
        ) else {
            continue;
        };
        let anonymous = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
        if kind == "volume" && anonymous && !covered.contains(dest.trim_end_matches('/')) {
            out.push(Mount {
                source: MountSource::Volume(name.to_string()),
                target: dest.to_string(),
                read_only: false,
            });
        }
    }
    out
}

/// Upgrade: re-render the repository's current template with the stored
/// answers; recreate only services whose config hash changed (named
/// volumes kept, anonymous ones carried over); on failure put the previous
/// containers back and say what failed.
pub fn upgrade(p: &UpgradeParams) -> Result<String, Error> {
    let mut record = validate_upgrade(p)?;
    let gate = p.gate()?;
    if record.binding.values().any(|v| v.as_str() == Some(MASK)) {
        record = load_full_record(&p.name)?;
    }
    let loaded = load_template(&p.template)?;
    for name in loaded.wizard.secret_fields() {
        if !record.secrets.contains(&name) {
            record.secrets.push(name);
        }
    }
    task::progress(
        0,
        &format!("rendering {} {}", p.template, loaded.template.version),
    );
    let (new_text, new_project) = prepare(&loaded, &p.name, &record.binding, record.autostart)?;
    let old_text = app_store::read_file(&p.name, COMPOSE_FILE)?;
    let old_doc = serde_norway::from_str(&old_text)
        .map_err(|e| Error::Other(format!("{COMPOSE_FILE}: {e}")))
        .and_then(|d| render::normalise(d).map_err(Error::Other))?;
    let cx = Context {
        app: p.name.clone(),
        folder: app_store::folder(&p.name)?,
        autostart: record.autostart,
    };
    let old_project = plan::plan(&old_doc, &cx).map_err(Error::Other)?;
    let names = |pr: &Project| -> BTreeSet<String> {
        pr.services.iter().map(|s| s.service.clone()).collect()
    };
    let (old_names, new_names) = (names(&old_project), names(&new_project));
    if old_names != new_names {
        let added: Vec<&String> = new_names.difference(&old_names).collect();
        let removed: Vec<&String> = old_names.difference(&new_names).collect();
        return Err(Error::Other(format!(
            "upgrade refused: template {} {} changes the services (added: {added:?}, removed: {removed:?}); the application was left as it was",
            p.template, loaded.template.version
        )));
    }
    pull_images(&new_project, true).map_err(|e| {
        Error::Runtime(format!(
            "upgrade failed: {}; the application was left as it was",
            message(&e)
        ))
    })?;

    let existing: BTreeMap<String, (String, String)> =
        containers::list_labelled(RuntimeKind::Docker, plan::PROJECT, &new_project.name)?
            .into_iter()
            .filter_map(|c| {
                let service = c.labels.iter().find(|(k, _)| k == plan::SERVICE)?.1.clone();
                let hash = c
                    .labels
                    .iter()
                    .find(|(k, _)| k == plan::CONFIG_HASH)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                Some((service, (c.id, hash)))
            })
            .collect();
    let changed: Vec<&ServicePlan> = new_project
        .services
        .iter()
        .filter(|s| {
            existing
                .get(&s.service)
                .is_none_or(|(_, hash)| *hash != s.hash)
        })
        .collect();

    let mut undo = Undo::default();
    let mut replaced: Vec<(String, Vec<Mount>)> = Vec::new();
    let outcome = (|| -> Result<(), Error> {
        ensure_resources(&new_project, &mut undo)?;
        for s in &changed {
            task::progress(90, &format!("Recreate container: {}", s.spec.name));
            let mut carried = Vec::new();
            if let Some((id, _)) = existing.get(&s.service) {
                let covered: BTreeSet<String> = s
                    .extra
                    .mounts
                    .iter()
                    .map(|m| m.target.trim_end_matches('/').to_string())
                    .collect();
                carried = anonymous_volumes(id, &covered);
                let _ = containers::stop(RuntimeKind::Docker, id, 10);
                containers::remove(RuntimeKind::Docker, id, true)?;
                replaced.push((s.service.clone(), carried.clone()));
            }
            start_service(s, &carried, &mut undo)?;
        }
        // The health gate: every recreated container healthy, or running
        // for a while without a health check; else the previous version.
        let recreated: Vec<String> = changed.iter().map(|s| s.spec.name.clone()).collect();
        if !recreated.is_empty() {
            task::progress(95, "waiting for the recreated containers to be healthy");
        }
        gate.wait_all(RuntimeKind::Docker, &recreated)
            .map_err(|(container, failed)| {
                let service = changed
                    .iter()
                    .find(|s| s.spec.name == container)
                    .map_or(container.as_str(), |s| s.service.as_str());
                Error::Runtime(format!("service {service}: {}", failed.reason()))
            })
    })();
    if let Err(e) = outcome {
        // Put the previous containers back, from the previous compose file.
        undo.run();
        let mut restore = Undo::default();
        let mut not_restored = Vec::new();
        for old in &old_project.services {
            if let Some((_, carried)) = replaced.iter().find(|(s, _)| *s == old.service) {
                if let Err(re) = start_service(old, carried, &mut restore) {
                    not_restored.push(format!("{}: {}", old.service, message(&re)));
                }
            }
        }
        let restored = if not_restored.is_empty() {
            "the previous version was restored".to_string()
        } else {
            format!(
                "restoring the previous version failed too ({})",
                not_restored.join("; ")
            )
        };
        return Err(Error::Runtime(format!(
            "upgrade failed: {}; {restored}",
            message(&e)
        )));
    }
    app_store::install_template(&p.name, &p.template, true)?;
    app_store::write_file(&p.name, COMPOSE_FILE, &new_text)?;
    let from = std::mem::replace(&mut record.version, loaded.template.version.clone());
    record.services = new_project
        .services
        .iter()
        .map(|s| s.service.clone())
        .collect();
    record.containers = new_project
        .services
        .iter()
        .map(|s| s.spec.name.clone())
        .collect();
    write_record(&record)?;
    let recreated: Vec<&str> = changed.iter().map(|s| s.service.as_str()).collect();
    task::progress(100, "upgraded");
    Ok(format!(
        "upgraded application {} from {from} to {}; recreated: {}",
        p.name,
        record.version,
        if recreated.is_empty() {
            "none".to_string()
        } else {
            recreated.join(", ")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_split() {
        assert_eq!(split_image("busybox"), ("busybox".into(), "latest".into()));
        assert_eq!(split_image("a/b:1.2"), ("a/b".into(), "1.2".into()));
        assert_eq!(
            split_image("127.0.0.1:5000/x"),
            ("127.0.0.1:5000/x".into(), "latest".into())
        );
        assert_eq!(
            split_image("127.0.0.1:5000/x:v2"),
            ("127.0.0.1:5000/x".into(), "v2".into())
        );
    }

    #[test]
    fn records_round_trip() {
        let r = Record {
            name: "a1".into(),
            state: "installed".into(),
            ..Default::default()
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), r);
    }
}
