//! A simulated runtime for plugin authors and plugin unit tests: it records
//! every call and answers from a script, with no Docker at hand.
//!
//! A script is a JSON object from call name to answer. An answer is
//! `{"ok": value}` or `{"err": {"NotFound": "message"}}` (the WIT `error`
//! cases in PascalCase), or a list of answers used in order (the last one
//! repeats). `"progress": [[percent, "detail"], ...]` inside an answer is
//! reported to the task before the call returns. Unscripted calls succeed
//! with a plausible value.
//!
//! Images are tracked as an engine tracks them: a reference that
//! `images.inspect` answered as not found is missing until a pull brings
//! it, and a pull names the image as the Docker backend does (`image:tag`
//! from Docker Hub; `<registry>/<image>:<tag>` from the `qnap` or a
//! `private` registry, the registry as `images.resolve` answers). Creating
//! a container from a missing reference fails with the engine's `No such
//! image`, whatever the script says about `containers.create`.
//!
//! Unscripted, an image's registry digest (`images.repo-digests`) is the
//! one the registry serves (`images.remote-digest`): no update; a
//! recreate keeps the previous container aside under
//! `<name>-replaced-<id>` and answers a new id, and a container is
//! running without a health check, as a real engine answers for an
//! image without `HEALTHCHECK`.
//!
//! A followed container's logs (`containers.follow-logs`, the logs route's
//! `follow`) come as an engine sends them: the last `tail` lines of what the
//! script says it wrote, then each of its later writes, cut into whole
//! lines, then the end (the container stopped).
//!
//! ```json
//! {
//!   "images.remove": [{"ok": ["sha256:1"]}, {"err": {"NotFound": "no such image: b:latest"}}],
//!   "images.pull": {"ok": {"id": "sha256:2", "tags": ["busybox:latest"], "size": 1, "created": 0},
//!                    "progress": [[50, "downloading"], [100, "pulled"]]}
//! }
//! ```

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::log_lines::{last_lines, whole_lines};
use super::subtree;
use super::traits::{app_folders, containers, credentials, images, networks, templates, volumes};
use super::{AppFile, InstallTemplate, Label, Labelled};
use super::{
    AppFolders, CallContext, ContainerLogs, ContainerRef, ContainerSpec, ContainerSummary,
    Containers, CreateOnNetwork, CreateWith, Credential, Credentials, Error, ExportContainer,
    ExportSubtree, ExportVolume, ImageInfo, ImageRef, Images, ImportImage, ImportSubtree,
    ImportVolume, LabelQuery, LogStream, NetworkInfo, Networks, PullRequest, PushImage,
    RemoveContainer, RemoveImage, RtResult, RuntimeKind, SaveImages, Source, StopContainer,
    TagImage, Template, Templates, VolumeInfo, Volumes,
};
use super::{ContainerHealth, Recreate, Replacement, Restore};

/// The compose file an unscripted `repository.read-file` answers with.
pub const DEFAULT_COMPOSE: &str =
    "version: \"3\"\nservices:\n  web:\n    image: busybox:latest\n    command: httpd -f -p 80\n";

/// A container spec with nothing set but its runtime, its name and the
/// image `busybox:latest`: where unit tests start from.
#[cfg(test)]
pub(crate) fn test_spec(runtime: RuntimeKind, name: &str) -> ContainerSpec {
    ContainerSpec::new(runtime, name, "busybox:latest")
}

/// One recorded host call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// `interface.function`, e.g. `images.pull`.
    pub call: String,
    /// The arguments, as JSON.
    pub args: Value,
}

#[derive(Debug, Clone, Deserialize)]
struct Answer {
    #[serde(default)]
    ok: Option<Value>,
    #[serde(default)]
    err: Option<Error>,
    #[serde(default)]
    progress: Vec<(i32, String)>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Scripted {
    One(Answer),
    Many(Vec<Answer>),
}

/// A script's answer to `containers.follow-logs`: what the container wrote
/// before it is followed (`written`), then each write it makes while
/// followed (`then`), after which it stops. A plain string is `written`
/// alone: `{"ok": "a\nb\n"}`, `{"ok": {"written": "a\n", "then": ["b\n", "c"]}}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum FollowScript {
    Written(String),
    Writes {
        #[serde(default)]
        written: String,
        #[serde(default)]
        then: Vec<String>,
    },
}

/// The simulated runtime.
#[derive(Default)]
pub struct Simulator {
    script: Mutex<HashMap<String, (Vec<Answer>, usize)>>,
    calls: Mutex<Vec<Call>>,
    /// References known to be absent (inspected as not found, not pulled since).
    missing: Mutex<HashSet<String>>,
}

impl Simulator {
    /// A simulator answering from `script` (see the module docs).
    pub fn from_script(script: &str) -> anyhow::Result<Simulator> {
        let parsed: HashMap<String, Scripted> =
            serde_json::from_str(script).map_err(|e| anyhow::anyhow!("simulator script: {e}"))?;
        let script = parsed
            .into_iter()
            .map(|(k, v)| {
                let answers = match v {
                    Scripted::One(a) => vec![a],
                    Scripted::Many(list) => list,
                };
                (k, (answers, 0))
            })
            .collect();
        Ok(Simulator {
            script: Mutex::new(script),
            calls: Mutex::new(Vec::new()),
            missing: Mutex::new(HashSet::new()),
        })
    }

    /// The calls made so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().clone()
    }

    /// The registry `source` resolves to, as `images.resolve` would answer
    /// now (the script's next answer, else the default), without recording
    /// or consuming a call.
    fn registry_of(&self, source: &Source) -> String {
        let scripted = self
            .script
            .lock()
            .get(images::RESOLVE)
            .and_then(|(a, next)| {
                a.get((*next).min(a.len().saturating_sub(1)))
                    .and_then(|a| a.ok.as_ref())
                    .and_then(|v| v.as_str().map(str::to_string))
            });
        scripted.unwrap_or_else(|| match source {
            Source::Dockerhub => String::new(),
            Source::Qnap => "qnap".to_string(),
            Source::Private(name) => name.clone(),
        })
    }

    /// The reference a pull of `req` gives the image, as the engine names it.
    fn pulled_reference(&self, req: &PullRequest) -> String {
        let tag = if req.tag.is_empty() {
            "latest"
        } else {
            &req.tag
        };
        let registry = match req.source {
            Source::Dockerhub => String::new(),
            _ if req.runtime != RuntimeKind::Docker => String::new(),
            _ => self.registry_of(&req.source),
        };
        if registry.is_empty() {
            format!("{}:{tag}", req.image)
        } else {
            format!("{registry}/{}:{tag}", req.image)
        }
    }

    /// Refuse to create from an image the engine does not have.
    fn check_image(&self, image: &str) -> RtResult<()> {
        if self.missing.lock().contains(image) {
            Err(Error::NotFound(format!("No such image: {image}")))
        } else {
            Ok(())
        }
    }

    /// A create call: recorded and answered (by default `simulated-<name>`),
    /// then refused if `spec` names an image the engine does not have.
    fn create(
        &self,
        cx: &CallContext,
        call: &str,
        args: Value,
        spec: &ContainerSpec,
    ) -> RtResult<String> {
        let created = self.answer(cx, call, args, || format!("simulated-{}", spec.name));
        self.check_image(&spec.image)?;
        created
    }

    fn answer<T: DeserializeOwned>(
        &self,
        cx: &CallContext,
        call: &str,
        args: Value,
        default: impl FnOnce() -> T,
    ) -> RtResult<T> {
        self.record_and_answer(call, args, Some(cx), default)
    }

    /// Record the call; answer from the script (reporting its progress to
    /// `cx`, if any) or with `default`.
    fn record_and_answer<T: DeserializeOwned>(
        &self,
        call: &str,
        args: Value,
        cx: Option<&CallContext>,
        default: impl FnOnce() -> T,
    ) -> RtResult<T> {
        self.calls.lock().push(Call {
            call: call.to_string(),
            args,
        });
        let scripted = {
            let mut script = self.script.lock();
            script.get_mut(call).and_then(|(answers, next)| {
                let answer = answers
                    .get((*next).min(answers.len().saturating_sub(1)))
                    .cloned();
                *next += 1;
                answer
            })
        };
        let Some(answer) = scripted else {
            return Ok(default());
        };
        if let Some(cx) = cx {
            for (percent, detail) in &answer.progress {
                cx.reporter.progress(*percent, detail);
            }
        }
        if let Some(err) = answer.err {
            return Err(err);
        }
        match answer.ok {
            None | Some(Value::Null) => Ok(default()),
            Some(v) => serde_json::from_value(v).map_err(|e| {
                Error::Other(format!(
                    "simulator script: answer to {call} does not fit: {e}"
                ))
            }),
        }
    }
}

/// The registry digest the simulator answers for every image.
pub const SIMULATED_DIGEST: &str =
    "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";

/// `reference` without its tag or digest: the repository a repo digest names.
fn repository_of(reference: &str) -> &str {
    let name = reference.split('@').next().unwrap_or(reference);
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    }
}

fn image(reference: &str) -> ImageInfo {
    ImageInfo {
        id: "sha256:0000000000000000000000000000000000000000000000000000000000000000".into(),
        tags: vec![reference.to_string()],
        size: 0,
        created: 0,
    }
}

#[async_trait]
impl Images for Simulator {
    fn resolve_source(&self, source: &Source) -> RtResult<String> {
        // Any name resolves, to itself, unless the script says otherwise.
        let args = json!({"source": source});
        let fallback = match source {
            Source::Dockerhub => String::new(),
            Source::Qnap => "qnap".to_string(),
            Source::Private(name) => name.clone(),
        };
        self.record_and_answer(images::RESOLVE, args, None, move || fallback)
    }

    async fn image_pull(&self, cx: &CallContext, req: PullRequest) -> RtResult<ImageInfo> {
        let reference = self.pulled_reference(&req);
        // Credentials are recorded only as present or not: never their values.
        let args = json!({"runtime": req.runtime, "image": req.image, "tag": req.tag, "source": req.source, "credential": req.credential.is_some()});
        let pulled = self.answer(cx, images::PULL, args, || image(&reference))?;
        self.missing.lock().remove(&reference);
        Ok(pulled)
    }
    async fn image_inspect(&self, cx: &CallContext, req: ImageRef) -> RtResult<ImageInfo> {
        let ImageRef { kind, reference } = req;
        let found = self.answer(
            cx,
            images::INSPECT,
            json!({"runtime": kind, "reference": reference}),
            || image(&reference),
        );
        if let Err(Error::NotFound(_)) = found {
            self.missing.lock().insert(reference);
        }
        found
    }
    async fn image_list(&self, cx: &CallContext, kind: RuntimeKind) -> RtResult<Vec<ImageInfo>> {
        self.answer(cx, images::LIST, json!({"runtime": kind}), Vec::new)
    }
    async fn image_remove(&self, cx: &CallContext, req: RemoveImage) -> RtResult<Vec<String>> {
        let ImageRef { kind, reference } = req.image;
        let args = json!({"runtime": kind, "reference": reference, "force": req.force});
        self.answer(cx, images::REMOVE, args, || vec![reference.clone()])
    }
    async fn image_tag(&self, cx: &CallContext, req: TagImage) -> RtResult<()> {
        let args = json!({"source": req.source, "repository": req.repository, "tag": req.tag});
        self.answer(cx, images::TAG, args, || ())
    }
    async fn image_push(&self, cx: &CallContext, req: PushImage) -> RtResult<()> {
        let args = json!({"repository": req.repository, "tag": req.tag, "registry": req.registry, "credential": req.credential.is_some()});
        self.answer(cx, images::PUSH, args, || ())
    }
    async fn image_save(&self, cx: &CallContext, req: SaveImages) -> RtResult<u64> {
        let file = req.file;
        let args = json!({"references": req.references, "path": file.path, "gzip": file.gzip, "overwrite": file.overwrite});
        self.answer(cx, images::SAVE_TO_PATH, args, || 0)
    }
    async fn image_repo_digests(&self, cx: &CallContext, req: ImageRef) -> RtResult<Vec<String>> {
        let ImageRef { kind, reference } = req;
        let args = json!({"runtime": kind, "reference": reference});
        self.answer(cx, images::REPO_DIGESTS, args, || {
            vec![format!("{}@{SIMULATED_DIGEST}", repository_of(&reference))]
        })
    }
    async fn image_remote_digest(&self, cx: &CallContext, req: ImageRef) -> RtResult<String> {
        let args = json!({"runtime": req.kind, "reference": req.reference});
        self.answer(cx, images::REMOTE_DIGEST, args, || {
            SIMULATED_DIGEST.to_string()
        })
    }
}

#[async_trait]
impl Containers for Simulator {
    async fn container_create(&self, cx: &CallContext, spec: ContainerSpec) -> RtResult<String> {
        let args = serde_json::to_value(&spec).unwrap_or(Value::Null);
        self.create(cx, containers::CREATE, args, &spec)
    }
    async fn container_start(&self, cx: &CallContext, c: &ContainerRef) -> RtResult<()> {
        self.answer(
            cx,
            containers::START,
            json!({"runtime": c.kind, "container": c.id}),
            || (),
        )
    }
    async fn container_stop(&self, cx: &CallContext, req: StopContainer) -> RtResult<()> {
        let c = req.container;
        let args = json!({"runtime": c.kind, "container": c.id, "timeout_secs": req.timeout_secs});
        self.answer(cx, containers::STOP, args, || ())
    }
    async fn container_remove(&self, cx: &CallContext, req: RemoveContainer) -> RtResult<()> {
        let c = req.container;
        let args = json!({"runtime": c.kind, "container": c.id, "force": req.force});
        self.answer(cx, containers::REMOVE, args, || ())
    }
    async fn container_inspect(&self, cx: &CallContext, c: &ContainerRef) -> RtResult<String> {
        self.answer(
            cx,
            containers::INSPECT,
            json!({"runtime": c.kind, "container": c.id}),
            || "{}".to_string(),
        )
    }
    async fn container_logs(&self, cx: &CallContext, req: ContainerLogs) -> RtResult<String> {
        let c = req.container;
        let args = json!({"runtime": c.kind, "container": c.id, "tail": req.tail});
        self.answer(cx, containers::LOGS, args, String::new)
    }
    /// As an engine follows a container's logs: the last `tail` lines of
    /// what it wrote, then each write made while it is followed, as whole
    /// lines; then the stream ends (the container stopped). Unscripted: a
    /// container that wrote nothing and stopped.
    async fn container_follow_logs(
        &self,
        cx: &CallContext,
        req: ContainerLogs,
    ) -> RtResult<LogStream> {
        let c = req.container;
        let args = json!({"runtime": c.kind, "container": c.id, "tail": req.tail});
        let (written, then) = match self.answer(cx, containers::FOLLOW_LOGS, args, || {
            FollowScript::Written(String::new())
        })? {
            FollowScript::Written(written) => (written, Vec::new()),
            FollowScript::Writes { written, then } => (written, then),
        };
        let writes = std::iter::once(last_lines(&written, req.tail)).chain(then);
        Ok(whole_lines(futures::stream::iter(writes.map(Ok))))
    }
    async fn container_export(&self, cx: &CallContext, req: ExportContainer) -> RtResult<u64> {
        let (c, file) = (req.container, req.file);
        let args = json!({"runtime": c.kind, "container": c.id, "path": file.path, "gzip": file.gzip, "overwrite": file.overwrite});
        self.answer(cx, containers::EXPORT_TO_PATH, args, || 0)
    }
    /// Unscripted: an empty folder, written as an empty tar (1,024 bytes).
    /// A subtree that is not an absolute path inside the root is refused as
    /// the LXC runtime refuses it, before anything is recorded.
    async fn container_subtree_export(
        &self,
        cx: &CallContext,
        req: ExportSubtree,
    ) -> RtResult<u64> {
        subtree::relative(&req.subtree)?;
        let (c, file) = (req.container, req.file);
        let args = json!({"runtime": c.kind, "container": c.id, "subtree": req.subtree, "path": file.path, "gzip": file.gzip, "overwrite": file.overwrite, "live": req.live});
        self.answer(cx, volumes::EXPORT_SUBTREE_TO_PATH, args, || 1024)
    }
    /// Unscripted: the archive's size is not known here; 1,024.
    async fn container_subtree_import(
        &self,
        cx: &CallContext,
        req: ImportSubtree,
    ) -> RtResult<u64> {
        subtree::relative(&req.subtree)?;
        let c = req.container;
        let args = json!({"runtime": c.kind, "container": c.id, "subtree": req.subtree, "path": req.path, "overwrite": req.overwrite});
        self.answer(cx, volumes::IMPORT_SUBTREE_FROM_PATH, args, || 1024)
    }
    async fn archive_config(&self, cx: &CallContext, path: String) -> RtResult<Option<String>> {
        self.answer(
            cx,
            containers::READ_ARCHIVE_CONFIG,
            json!({"path": path}),
            || None,
        )
    }
    async fn image_import(&self, cx: &CallContext, req: ImportImage) -> RtResult<String> {
        let args = json!({"runtime": req.kind, "path": req.path, "repository": req.repository, "tag": req.tag});
        self.answer(cx, containers::IMPORT_IMAGE_FROM_PATH, args, || {
            "sha256:imported".to_string()
        })
    }
    async fn container_create_with(&self, cx: &CallContext, req: CreateWith) -> RtResult<String> {
        let args = json!({"spec": req.spec, "extra": req.extra});
        self.create(cx, containers::CREATE_WITH, args, &req.spec)
    }
    async fn container_create_on_network(
        &self,
        cx: &CallContext,
        req: CreateOnNetwork,
    ) -> RtResult<String> {
        let args = json!({"spec": req.spec, "network": req.network});
        self.create(cx, containers::CREATE_ON_NETWORK, args, &req.spec)
    }
    async fn container_list_labelled(
        &self,
        cx: &CallContext,
        req: LabelQuery,
    ) -> RtResult<Vec<ContainerSummary>> {
        let args = json!({"runtime": req.kind, "key": req.key, "value": req.value});
        self.answer(cx, containers::LIST_LABELLED, args, Vec::new)
    }
    /// As the engine: an image it lacks is `No such image`, whatever the script says.
    async fn container_recreate(&self, cx: &CallContext, req: Recreate) -> RtResult<Replacement> {
        let c = &req.container;
        let args = json!({"runtime": c.kind, "container": c.id, "image": req.image});
        let replaced = self.answer(cx, containers::RECREATE, args, || Replacement {
            id: format!("simulated-{}-new", c.id),
            previous: c.id.clone(),
            aside_name: format!(
                "{}-replaced-{}",
                c.id,
                c.id.chars().take(12).collect::<String>()
            ),
            was_running: true,
        });
        self.check_image(&req.image)?;
        replaced
    }
    async fn container_restore(&self, cx: &CallContext, req: Restore) -> RtResult<()> {
        let args = json!({"runtime": req.kind, "replaced": req.replaced});
        self.answer(cx, containers::RESTORE, args, || ())
    }
    async fn container_health(
        &self,
        cx: &CallContext,
        c: &ContainerRef,
    ) -> RtResult<ContainerHealth> {
        let args = json!({"runtime": c.kind, "container": c.id});
        self.answer(cx, containers::HEALTH, args, || ContainerHealth {
            status: "running".into(),
            running: true,
            exit_code: 0,
            health: None,
            failing_streak: 0,
            last_probe_output: String::new(),
        })
    }
}

#[async_trait]
impl Networks for Simulator {
    async fn network_create(&self, cx: &CallContext, req: Labelled) -> RtResult<String> {
        let id = format!("simulated-{}", req.name);
        self.answer(cx, networks::CREATE, json!(req), || id)
    }
    async fn network_remove(&self, cx: &CallContext, name: String) -> RtResult<()> {
        self.answer(cx, networks::REMOVE, json!({"name": name}), || ())
    }
    async fn network_list(&self, cx: &CallContext, label: Label) -> RtResult<Vec<NetworkInfo>> {
        self.answer(cx, networks::LIST, json!(label), Vec::new)
    }
}

#[async_trait]
impl Volumes for Simulator {
    async fn volume_create(&self, cx: &CallContext, req: Labelled) -> RtResult<()> {
        self.answer(cx, volumes::CREATE, json!(req), || ())
    }
    async fn volume_remove(&self, cx: &CallContext, name: String) -> RtResult<()> {
        self.answer(cx, volumes::REMOVE, json!({"name": name}), || ())
    }
    async fn volume_list(&self, cx: &CallContext, label: Label) -> RtResult<Vec<VolumeInfo>> {
        self.answer(cx, volumes::LIST, json!(label), Vec::new)
    }
    /// Unscripted: an empty volume, written as an empty tar (1,024 bytes,
    /// the end-of-archive blocks an engine's archive ends with).
    async fn volume_export(&self, cx: &CallContext, req: ExportVolume) -> RtResult<u64> {
        let file = req.file;
        let args = json!({"volume": req.volume, "path": file.path, "gzip": file.gzip, "overwrite": file.overwrite, "live": req.live});
        self.answer(cx, volumes::EXPORT_TO_PATH, args, || 1024)
    }
    async fn volume_import(&self, cx: &CallContext, req: ImportVolume) -> RtResult<u64> {
        let args = json!({"volume": req.volume, "path": req.path, "overwrite": req.overwrite, "labels": req.labels});
        self.answer(cx, volumes::IMPORT_FROM_PATH, args, || 1024)
    }
    async fn volume_users(
        &self,
        cx: &CallContext,
        name: String,
    ) -> RtResult<Vec<ContainerSummary>> {
        self.answer(cx, volumes::USERS, json!({"name": name}), Vec::new)
    }
}

#[async_trait]
impl Templates for Simulator {
    async fn template_list(&self) -> RtResult<Vec<Template>> {
        self.record_and_answer(templates::LIST, json!({}), None, Vec::new)
    }
    async fn template_get(&self, name: String) -> RtResult<Template> {
        let args = json!({"name": name});
        self.record_and_answer(templates::GET, args, None, || Template {
            name: name.clone(),
            version: "1".into(),
            files: vec!["docker-compose.yml".into()],
        })
    }
    async fn template_read(&self, name: String, path: String) -> RtResult<String> {
        let args = json!({"name": name, "path": path});
        let fallback = if path == "docker-compose.yml" {
            DEFAULT_COMPOSE.to_string()
        } else {
            "{}".to_string()
        };
        self.record_and_answer(templates::READ_FILE, args, None, || fallback)
    }
}

#[async_trait]
impl AppFolders for Simulator {
    async fn app_record(&self, name: String) -> RtResult<Option<String>> {
        self.record_and_answer(app_folders::RECORD, json!({"name": name}), None, || None)
    }
    async fn app_records(&self) -> RtResult<Vec<(String, String)>> {
        self.record_and_answer(app_folders::RECORDS, json!({}), None, Vec::new)
    }
    async fn app_folder(&self, name: String) -> RtResult<String> {
        let fallback = format!("/simulated/apps/{name}");
        self.record_and_answer(app_folders::FOLDER, json!({"name": name}), None, || {
            fallback
        })
    }
    async fn app_install_template(&self, cx: &CallContext, req: InstallTemplate) -> RtResult<()> {
        let args = json!({"name": req.app, "template": req.template, "replace": req.replace});
        self.answer(cx, app_folders::INSTALL_TEMPLATE, args, || ())
    }
    async fn app_read_file(&self, cx: &CallContext, file: AppFile) -> RtResult<String> {
        let args = json!({"name": file.app, "path": file.path});
        self.answer(cx, app_folders::READ_FILE, args, String::new)
    }
    async fn app_write_file(&self, cx: &CallContext, file: AppFile, text: String) -> RtResult<()> {
        let args = json!({"name": file.app, "path": file.path, "bytes": text.len()});
        self.answer(cx, app_folders::WRITE_FILE, args, || ())
    }
    async fn app_remove(&self, cx: &CallContext, name: String) -> RtResult<()> {
        self.answer(cx, app_folders::REMOVE, json!({"name": name}), || ())
    }
}

impl super::Backend for Simulator {}

#[async_trait]
impl Credentials for Simulator {
    async fn credential_lookup(&self, cx: &CallContext, registry: String) -> Option<Credential> {
        self.answer(
            cx,
            credentials::LOOKUP,
            json!({"registry": registry}),
            || None,
        )
        .ok()
        .flatten()
    }
    async fn credential_remember(&self, cx: &CallContext, credential: Credential) -> RtResult<()> {
        self.answer(
            cx,
            credentials::REMEMBER,
            json!({"registry": credential.registry, "username": credential.username}),
            || (),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn cx() -> CallContext {
        struct Quiet;
        impl crate::queue::Reporter for Quiet {
            fn progress(&self, _percent: i32, _detail: &str) {}
            fn log(&self, _level: crate::queue::LogLevel, _message: &str) {}
        }
        CallContext {
            task_id: 0,
            user: "t".into(),
            cancel: Default::default(),
            reporter: std::sync::Arc::new(Quiet),
        }
    }

    async fn followed(sim: &Simulator, tail: u32) -> RtResult<Vec<String>> {
        let req = ContainerLogs {
            container: ContainerRef::new(RuntimeKind::Docker, "web"),
            tail,
        };
        let stream = sim.container_follow_logs(&cx(), req).await?;
        stream.collect::<Vec<_>>().await.into_iter().collect()
    }

    #[tokio::test]
    async fn a_follow_answers_the_tail_then_each_later_line_then_ends() {
        let sim = Simulator::from_script(
            r#"{"containers.follow-logs": {"ok": {"written": "1\n2\n3\n", "then": ["4\n5", "\n", "6"]}}}"#,
        )
        .unwrap();
        assert_eq!(
            followed(&sim, 2).await.unwrap(),
            ["2\n3\n", "4\n", "5\n", "6\n"]
        );
        let call = &sim.calls()[0];
        assert_eq!(call.call, "containers.follow-logs");
        assert_eq!(call.args["tail"], 2);
        assert_eq!(call.args["container"], "web");
    }

    #[tokio::test]
    async fn a_follow_of_a_stopped_or_unknown_container() {
        // Written before, nothing after: the tail, then the end.
        let stopped =
            Simulator::from_script(r#"{"containers.follow-logs": {"ok": "a\nb\n"}}"#).unwrap();
        assert_eq!(followed(&stopped, 1).await.unwrap(), ["b\n"]);
        assert!(followed(&stopped, 0).await.unwrap().is_empty());
        // Unscripted: nothing written.
        assert!(followed(&Simulator::default(), 100)
            .await
            .unwrap()
            .is_empty());
        let unknown = Simulator::from_script(
            r#"{"containers.follow-logs": {"err": {"NotFound": "no such container: web"}}}"#,
        )
        .unwrap();
        assert!(matches!(
            followed(&unknown, 5).await,
            Err(Error::NotFound(_))
        ));
    }
}
