//! `container_import`: recreate a container from an archive that
//! `container_export` wrote (or from a plain rootfs tarball).
//!
//! # Body
//!
//! `{type, name, image, tag, path, ...create fields}`:
//! - `type`: `docker` (default) or `lxc`; the runtime the files are imported into.
//! - `name` (required): the new container's name.
//! - `path` (required): the archive, relative to the share root.
//! - `image`: the `repository[:tag]` the imported files are given; `tag`, when
//!   present, wins over a tag inside `image`; without a tag it is `latest`.
//!   Without `image` the files become `<name>:imported` (the name lowercased,
//!   trailing `.`, `_`, `-` dropped).
//! - any field of `create` (`network`, `resource`, `volume`, `environment`,
//!   `command`, `autostart`, ...; see `create_spec`), laid over the settings the
//!   archive recorded: objects merge key by key (`{"network": {"hostname": "x"}}`
//!   keeps the recorded ports), anything else replaces the recorded value.
//!   `repository`, `registry_name` and `download` are ignored: the image
//!   comes from the archive.
//!
//! # The recorded settings: what the host's `read-archive-config` returns
//!
//! `containers::read_archive_config(path)` returns `None` for an archive
//! without recorded settings (a plain rootfs tar, a `docker save` archive),
//! else this JSON object, which `containers::export_to_path` writes into the
//! archive from the container's inspect data:
//!
//! ```json
//! {
//!   "version": 1,
//!   "image": "busybox:latest",
//!   "create": {
//!     "type": "docker",
//!     "name": "web",
//!     "autostart": true,
//!     "privileged": false,
//!     "entrypoint": ["/bin/sh", "-c"],
//!     "command": ["httpd -f -p 80"],
//!     "user": "1000:1000",
//!     "working_dir": "/srv",
//!     "environment": ["A=1"],
//!     "links": {"db": "database"},
//!     "labels": {"team": "infra"},
//!     "network": {"dns": ["10.0.0.2"], "expose_port": [9000], "hostname": "web",
//!                 "port": [[8080, 80, "tcp"]]},
//!     "resource": {"limit": {"cpuweight": 512, "cputime": 500, "memory": 805306368},
//!                  "device": ["c 81:* rw"]},
//!     "volume": {"host": {"/Public/www": {"bind": "/srv/www", "ro": true}},
//!                "container": ["data:ro"], "new": ["/cache"]}
//!   }
//! }
//! ```
//!
//! - `create` is exactly the params shape of the `create` category (as in
//!   `POST background/create`), so whatever `create` accepts the archive may
//!   record: `entrypoint`/`command` as lists (never re-split), `memory` as
//!   bytes (a number) or `"768m"`, `device` entries as cgroup rule strings
//!   (`"c 81:* rw"`, as the engine reports them) or Container Station's
//!   `["allow", "name_(81)", "rw"]`, `volume.host` keys relative to the
//!   share root (a bind from outside the share root is left out).
//! - Settings the container does not have are left out, or `null`: do not
//!   write `0` for an unset `cpuweight`/`cputime`, which `create` refuses.
//!   `cputime` is milliseconds of CPU per 1000 ms (quota/period × 1000).
//! - `type`, `name`, `image`, `tag`, `repository`, `registry_name` and
//!   `download` inside `create` are ignored on import (the request names the
//!   container and the image); `image` at the top is informational.
//! - `version` is 1; another version is refused. A bare create-params object
//!   (no `create` key) is read as `create` itself.
//!
//! # Run
//!
//! `read_archive_config` → merge and check the settings (before any slow
//! work) → `import_image_from_path(type, path, repository, tag)` (the host
//! must leave the files named `repository:tag`) → `containers::create` with
//! image `repository:tag` → `containers::start`.

use create_spec::{create_and_start, merge, plan, without, Body, Plan};
use serde_json::{Map, Value};
use stevedore_sdk::{check, containers, task, Category, Error, RuntimeKind};

/// Fields of the recorded `create` object that an import does not take.
const RECORD_IGNORED: &[&str] = &[
    "type",
    "name",
    "image",
    "tag",
    "repository",
    "registry_name",
    "download",
];
/// Fields of the request that are not create fields for the new container.
const REQUEST_OWN: &[&str] = &[
    "path",
    "image",
    "tag",
    "repository",
    "registry_name",
    "download",
];

/// An import, once the request is checked.
#[derive(Debug, Clone)]
pub struct Import {
    /// Runtime to import into.
    pub runtime: RuntimeKind,
    /// Container name.
    pub name: String,
    /// Archive path, relative to the share root.
    pub path: String,
    /// Repository given to the imported files.
    pub repository: String,
    /// Tag given to the imported files.
    pub tag: String,
    /// The request's create fields.
    pub fields: Map<String, Value>,
}

fn text<'a>(body: &'a Body, field: &str) -> Result<Option<&'a str>, Error> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Error::invalid(field, "must be a string")),
    }
}

/// Split `repository[:tag]` (a `:` after the last `/` starts the tag).
pub fn split_reference(reference: &str) -> (&str, Option<&str>) {
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(i) => (&reference[..slash + i], Some(&reference[slash + i + 1..])),
        None => (reference, None),
    }
}

/// The documented shape of a request: `create`'s fields, plus `path` (the
/// archive), with `name` and `path` required.
pub fn params_schema() -> String {
    let text = stevedore_sdk::schema_json::<create_spec::CreateParams>();
    let Ok(mut schema) = serde_json::from_str::<Value>(&text) else {
        return text;
    };
    schema["title"] = Value::from("ImportParams");
    schema["properties"]["path"] = serde_json::json!({
        "type": "string",
        "description": "The archive to import (a container export, or a plain rootfs tar, gzip allowed), relative to the share root."
    });
    schema["properties"]["name"]["description"] = Value::from("Name of the new container.");
    schema["required"] = serde_json::json!(["name", "path"]);
    schema.to_string()
}

/// Check the request's own fields and its create fields.
pub fn import(body: &Body) -> Result<Import, Error> {
    let runtime = check::runtime("type", text(body, "type")?.unwrap_or("docker"))?;
    let name = text(body, "name")?.ok_or_else(|| Error::invalid("name", "is required"))?;
    check::name("name", name)?;
    let path = text(body, "path")?.ok_or_else(|| Error::invalid("path", "is required"))?;
    check::share_path("path", path)?;
    let (repository, tag) = match text(body, "image")? {
        Some(image) => {
            let (repository, tag) = split_reference(image);
            check::repository("image", repository)?;
            (
                repository.to_string(),
                text(body, "tag")?.or(tag).unwrap_or("latest").to_string(),
            )
        }
        None => {
            let repository = name
                .to_ascii_lowercase()
                .trim_end_matches(['.', '_', '-'])
                .to_string();
            (
                repository,
                text(body, "tag")?.unwrap_or("imported").to_string(),
            )
        }
    };
    check::tag("tag", &tag)?;
    let import = Import {
        runtime,
        name: name.to_string(),
        path: path.to_string(),
        repository,
        tag,
        fields: without(body.clone(), REQUEST_OWN),
    };
    plan_with(&import, None)?;
    Ok(import)
}

/// Read what `read_archive_config` returned: the `create` object of the
/// format in the crate docs.
pub fn parse_recorded(text: &str) -> Result<Map<String, Value>, Error> {
    let bad = |why: String| Error::Other(format!("the settings recorded in the archive {why}"));
    let value: Value = serde_json::from_str(text).map_err(|e| bad(format!("are not JSON: {e}")))?;
    let Value::Object(mut top) = value else {
        return Err(bad("are not a JSON object".into()));
    };
    match top.get("version") {
        None | Some(Value::Null) => {}
        Some(v) if v.as_u64() == Some(1) => {}
        Some(v) => {
            return Err(bad(format!(
                "have version {v}, and only version 1 is supported"
            )))
        }
    }
    match top.remove("create") {
        Some(Value::Object(create)) => Ok(create),
        Some(_) => Err(bad("have a `create` that is not an object".into())),
        None => {
            top.remove("version");
            Ok(top)
        }
    }
}

/// The create plan: the recorded settings, the request's fields over them,
/// and the imported image.
pub fn plan_with(import: &Import, recorded: Option<&Map<String, Value>>) -> Result<Plan, Error> {
    let mut merged = Value::Object(
        recorded
            .map(|r| without(r.clone(), RECORD_IGNORED))
            .unwrap_or_default(),
    );
    merge(&mut merged, &Value::Object(import.fields.clone()));
    let Value::Object(mut body) = merged else {
        unreachable!("merging objects gives an object")
    };
    let kind = match import.runtime {
        RuntimeKind::Docker => "docker",
        RuntimeKind::Lxc => "lxc",
    };
    body.insert("type".into(), kind.into());
    body.insert("image".into(), import.repository.clone().into());
    body.insert("tag".into(), import.tag.clone().into());
    let params = create_spec::decode(&body);
    let result = params.and_then(|p| plan(&p));
    match (result, recorded) {
        // The request alone passed validation, so the recorded part is at fault.
        (Err(Error::InvalidParams(m)), Some(_)) => Err(Error::InvalidParams(format!(
            "{m} (in the settings recorded in the archive, or the request's fields over them)"
        ))),
        (other, _) => other,
    }
}

/// The category.
pub struct ContainerImport;

impl Category for ContainerImport {
    const NAME: &'static str = "container_import";
    const SUMMARY: &'static str =
        "Import an exported container's files as an image and recreate the container with its recorded settings";
    const CAPABILITIES: &'static [&'static str] = &["containers"];
    type Params = Body;

    /// The body is read as a raw object; its documented shape is the
    /// create fields plus `path`.
    fn params_schema() -> String {
        params_schema()
    }

    fn validate(body: &Body) -> Result<(), Error> {
        import(body).map(|_| ())
    }

    fn run(body: Body) -> Result<Option<String>, Error> {
        let import = import(&body)?;
        let shown = format!("/{}", import.path.trim_start_matches('/'));
        task::progress(0, &format!("reading the settings recorded in {shown}"));
        let recorded = containers::read_archive_config(&import.path)?
            .map(|t| parse_recorded(&t))
            .transpose()?;
        if recorded.is_none() {
            task::info(&format!(
                "{shown} records no settings; creating the container from the request's fields"
            ));
        }
        let plan = plan_with(&import, recorded.as_ref())?;
        task::check_cancelled()?;
        let reference = format!("{}:{}", import.repository, import.tag);
        task::progress(5, &format!("importing {shown} as image {reference}"));
        let id = containers::import_image_from_path(
            import.runtime,
            &import.path,
            &import.repository,
            &import.tag,
        )?;
        task::info(&format!("imported {shown} as image {reference} ({id})"));
        create_and_start(&plan).map(Some)
    }
}

stevedore_sdk::category!(ContainerImport);

#[cfg(test)]
mod tests;
