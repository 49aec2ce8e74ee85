//! [`Guarded`]: the runtime every plugin and container route reaches,
//! enforcing the calling user's [`Policy`] on each call before it goes on
//! to the real backends. The user comes from the [`CallContext`] (the
//! task's submitter, or the session of a container route), never from the
//! plugin, so a plugin cannot ask on someone else's behalf.
//!
//! - `containers.create`: privileged, devices, host folders (scoped to the
//!   user's share folder), containers it links to or takes volumes from
//!   (the user's own), memory and CPU caps; the container is labelled with
//!   its owner ([`OWNER_LABEL`]), replacing any such label a plugin set;
//!   published host ports in the policy's range, and never the server's own
//!   listen port (for anyone: it would take the API away).
//! - every call naming a container: the user's own, unless the policy
//!   reaches all containers; `list` shows only those.
//! - every `path` (saves, exports, imports): inside the user's share folder.
//! - pulls and pushes: allowed registries only, the registry read from the
//!   final reference as the engine reads it ([`images`]).
//! - image names: a non-admin gives new content (import, load, tag) only to
//!   a name that is new or that the host recorded as theirs, and uses no
//!   image another user made or pulled with credentials
//!   ([`crate::runtime::image_owners`]).
//! - `create-on-network` gets the `create` checks; joining another
//!   container's network is acting on that container (the user's own);
//!   a host interface (a macvlan network on the host's LAN, made by the
//!   host) only for a policy that reaches all containers or allows
//!   privileged ones: such a container is on the LAN with every port,
//!   outside the NAT and the policy's published-port range.
//! - applications: `create-with` gets the `create` checks, and its host
//!   folders must be in the user's share folder; networks and volumes are
//!   labelled with their owner and only the owner may join, mount or remove
//!   them; an application's folder records its owner ([`APP_OWNER_FILE`],
//!   written by the host, never by a plugin), and only the owner may change
//!   or remove it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use super::image_owners::ImageOwners;
use super::storage::{confined, ShareRoot};
use super::traits::images::{CommitImage, SearchRegistry};
use super::traits::networks::{Attach, NetworkSpec};
use super::traits::volumes::VolumeSpec;
use super::{AppFile, InstallTemplate, Label, Labelled};
use super::{
    AppFolders, Backends, CallContext, ChangeSettings, ContainerEntry, ContainerLogs, ContainerRef,
    ContainerSpec, ContainerSummary, Containers, CreateOnNetwork, CreateWith, Credential,
    Credentials, DeleteContainer, Error, ExportContainer, ExportSubtree, ExportVolume, ImageInfo,
    ImageRef, Images, ImportImage, ImportSubtree, ImportVolume, LabelQuery, Limits, LogStream,
    MountSource, NetworkInfo, NetworkMode, Networks, PullRequest, PushImage, RemoveContainer,
    RemoveImage, RtResult, RuntimeKind, SaveImages, SettingsChange, Source, StopContainer,
    TagImage, UsageQuery, Usages, VolumeInfo, Volumes,
};
use super::{ContainerHealth, Recreate, Replacement, Restore};
use crate::policy::{ContainerScope, Policies, Policy, Refused, APP_OWNER_FILE, OWNER_LABEL};

mod images;
pub mod networks;

/// The backends behind a check of the caller's policy: it wraps the
/// interfaces where policy applies and forwards to `inner`. Templates are
/// configuration and pass unwrapped ([`Guarded::backends`]).
pub struct Guarded {
    inner: Backends,
    policies: Arc<Policies>,
    share_root: PathBuf,
    /// Registry host (as image references spell it) → configured name.
    registry_names: BTreeMap<String, String>,
    /// Who set which image name.
    owners: Arc<ImageOwners>,
    /// Host ports no container may publish (the server's own).
    reserved_ports: Vec<u16>,
}

/// `req` labelled as the caller's: the host sets the owner label, whatever
/// the plugin put there.
fn owned(cx: &CallContext, mut req: Labelled) -> Labelled {
    req.labels.retain(|(k, _)| k != OWNER_LABEL);
    req.labels.push((OWNER_LABEL.to_string(), cx.user.clone()));
    req
}

/// The owner label among `(key, value)` labels (summaries, networks, volumes).
fn owner_in(labels: &[(String, String)]) -> Option<&str> {
    labels
        .iter()
        .find(|(k, _)| k == OWNER_LABEL)
        .map(|(_, v)| v.as_str())
}

fn denied(r: Refused) -> Error {
    Error::Denied(r.message)
}

impl Guarded {
    /// Guard `inner` with `policies`; paths are confined below
    /// `share_root`; `registry_names` maps registry hosts to their names in
    /// the configuration (for pushes, which name a registry by address).
    pub fn new(
        inner: Backends,
        policies: Arc<Policies>,
        share_root: PathBuf,
        registry_names: BTreeMap<String, String>,
    ) -> Guarded {
        Guarded {
            inner,
            policies,
            share_root,
            registry_names,
            owners: Arc::new(ImageOwners::in_memory()),
            reserved_ports: Vec::new(),
        }
    }

    /// The guarded backends: every interface but the templates goes
    /// through this guard.
    pub fn backends(self) -> Backends {
        let templates = self.inner.templates.clone();
        let guarded = Arc::new(self);
        Backends {
            images: guarded.clone(),
            containers: guarded.clone(),
            networks: guarded.clone(),
            volumes: guarded.clone(),
            templates,
            apps: guarded.clone(),
            credentials: guarded,
        }
    }

    /// Keep the records of who set which image name in `owners` (the
    /// server's: [`ImageOwners::open`] in the data folder).
    pub fn with_image_owners(mut self, owners: ImageOwners) -> Guarded {
        self.owners = Arc::new(owners);
        self
    }

    /// `req` if the caller may read the container's logs (as its entry:
    /// their own, unless their policy lets them see all), naming the
    /// container by its resolved id: the container checked is the one read.
    async fn readable_logs(
        &self,
        cx: &CallContext,
        mut req: ContainerLogs,
    ) -> RtResult<ContainerLogs> {
        let policy = self.policy(cx);
        let entry = self
            .inner
            .containers
            .container_entry(cx, &req.container)
            .await?;
        policy
            .allows_container(&entry.name, entry.owner())
            .map_err(denied)?;
        req.container.id = entry.id;
        Ok(req)
    }

    /// Refuse containers that publish any of `ports` on the host (the
    /// server's own listen port).
    pub fn reserving_ports(mut self, ports: impl IntoIterator<Item = u16>) -> Guarded {
        self.reserved_ports
            .extend(ports.into_iter().filter(|p| *p != 0));
        self
    }

    /// Published host ports: in the policy's range, none of the reserved ones.
    fn check_ports(&self, policy: &Policy, spec: &ContainerSpec) -> RtResult<()> {
        for (i, p) in spec.ports.iter().enumerate() {
            policy.allows_host_port(i, p.host_port).map_err(denied)?;
            if self.reserved_ports.contains(&p.host_port) {
                return Err(Error::Denied(format!(
                    "network.port[{i}]: host port {} is the server's own port",
                    p.host_port
                )));
            }
        }
        Ok(())
    }

    fn policy(&self, cx: &CallContext) -> std::borrow::Cow<'_, Policy> {
        self.policies.of(&cx.user)
    }

    /// `path` moved into the user's share folder, checked there (no `..`,
    /// no link out of the folder), as a path relative to the share root.
    fn scoped(&self, policy: &Policy, path: &str) -> RtResult<String> {
        if policy.share.is_empty() {
            return Ok(path.to_string());
        }
        let folder = ShareRoot::new(&self.share_root.join(&policy.share)).map_err(|e| {
            Error::Other(format!("creating the share folder of {}: {e}", policy.user))
        })?;
        folder.resolve(path)?;
        Ok(policy.scope_path(path))
    }

    /// Refuse a container the user may not act on.
    async fn check_owner(
        &self,
        cx: &CallContext,
        policy: &Policy,
        kind: RuntimeKind,
        container: &str,
    ) -> RtResult<()> {
        if policy.containers == crate::policy::ContainerScope::All {
            return Ok(());
        }
        let entry = self
            .inner
            .containers
            .container_entry(cx, &ContainerRef::new(kind, container))
            .await?;
        policy
            .allows_container(container, entry.owner())
            .map_err(denied)
    }

    /// Refuse a container the calling user may not act on.
    async fn check_owned(&self, cx: &CallContext, c: &ContainerRef) -> RtResult<()> {
        self.check_owner(cx, &self.policy(cx), c.kind, &c.id).await
    }

    fn registry_name(&self, source: &Source) -> String {
        match source {
            Source::Dockerhub => "dockerhub".into(),
            Source::Qnap => "qnap".into(),
            Source::Private(name) => name.clone(),
        }
    }

    fn all_containers(policy: &Policy) -> bool {
        policy.containers == ContainerScope::All
    }

    /// Refuse a network or volume that exists and is someone else's.
    fn check_labelled(
        policy: &Policy,
        what: &str,
        name: &str,
        found: Option<&[(String, String)]>,
    ) -> RtResult<()> {
        let Some(labels) = found else { return Ok(()) };
        let owner = owner_in(labels);
        if Self::all_containers(policy) || owner == Some(policy.user.as_str()) {
            Ok(())
        } else {
            Err(Error::Denied(format!(
                "{what} {name} was not created by user {}",
                policy.user
            )))
        }
    }

    async fn check_network(&self, cx: &CallContext, policy: &Policy, name: &str) -> RtResult<()> {
        if Self::all_containers(policy) {
            return Ok(());
        }
        // `container:<name or id prefix>` shares that container's network.
        if let Some(container) = name.strip_prefix("container:") {
            return self
                .check_owner(cx, policy, RuntimeKind::Docker, container)
                .await;
        }
        let all = self
            .inner
            .networks
            .network_list(cx, Label::default())
            .await?;
        // What the engine joins: the network with this id, else this name,
        // else those whose id starts with it.
        let exact: Vec<&NetworkInfo> = all
            .iter()
            .filter(|n| n.id == name)
            .chain(all.iter().filter(|n| n.name == name).take(1))
            .take(1)
            .collect();
        let found = if exact.is_empty() {
            all.iter().filter(|n| n.id.starts_with(name)).collect()
        } else {
            exact
        };
        for n in found {
            Self::check_labelled(policy, "network", name, Some(n.labels.as_slice()))?;
        }
        Ok(())
    }

    async fn check_volume(&self, cx: &CallContext, policy: &Policy, name: &str) -> RtResult<()> {
        if Self::all_containers(policy) {
            return Ok(());
        }
        let all = self.inner.volumes.volume_list(cx, Label::default()).await?;
        let found = all.iter().find(|v| v.name == name);
        Self::check_labelled(policy, "volume", name, found.map(|v| v.labels.as_slice()))
    }

    /// Whether volume `name` exists, once the caller may back it up or
    /// restore into it: a volume labelled theirs, or an unlabelled one that
    /// only their containers mount (pausing them is acting on them). A
    /// missing one is `false` (an import creates it as theirs).
    async fn backs_up(&self, cx: &CallContext, policy: &Policy, name: &str) -> RtResult<bool> {
        let all = self.inner.volumes.volume_list(cx, Label::default()).await?;
        let Some(found) = all.iter().find(|v| v.name == name) else {
            return Ok(false);
        };
        if Self::all_containers(policy) {
            return Ok(true);
        }
        match owner_in(&found.labels) {
            Some(owner) if owner == policy.user => return Ok(true),
            Some(_) => return Err(not_created_by(policy, "volume", name)),
            None => {}
        }
        let users = self
            .inner
            .volumes
            .volume_users(cx, name.to_string())
            .await?;
        let only_theirs = !users.is_empty()
            && users
                .iter()
                .all(|c| owner_in(&c.labels) == Some(policy.user.as_str()));
        if only_theirs {
            Ok(true)
        } else {
            Err(Error::Denied(format!(
                "volume {name} was not created by user {} and is not mounted by their containers only",
                policy.user
            )))
        }
    }

    /// Who installed application `name` (none: no such app, or one from
    /// before owners were recorded).
    async fn app_owner(&self, cx: &CallContext, name: &str) -> Option<String> {
        self.inner
            .apps
            .app_read_file(cx, AppFile::new(name, APP_OWNER_FILE))
            .await
            .ok()
            .map(|s| s.trim().to_string())
    }

    async fn check_app(&self, cx: &CallContext, policy: &Policy, name: &str) -> RtResult<()> {
        if Self::all_containers(policy) {
            return Ok(());
        }
        match self.app_owner(cx, name).await {
            Some(owner) if owner == policy.user => Ok(()),
            // A new application: nobody owns it yet.
            None if self
                .inner
                .apps
                .app_record(name.to_string())
                .await?
                .is_none() =>
            {
                Ok(())
            }
            _ => Err(Error::Denied(format!(
                "application {name} was not installed by user {}",
                policy.user
            ))),
        }
    }

    /// The checks and rewrites of `containers.create` applied to one
    /// changed setting: it is put in an otherwise empty spec that goes
    /// through [`Guarded::admit`], and taken back out rewritten (host
    /// folders moved into the user's share folder, limits capped: dropping
    /// a limit gives the policy's cap, as a create without one does).
    async fn admit_change(
        &self,
        cx: &CallContext,
        policy: &Policy,
        c: &ContainerRef,
        change: SettingsChange,
    ) -> RtResult<SettingsChange> {
        let mut spec = ContainerSpec::new(c.kind, c.id.clone(), String::new());
        // What the checked spec gives back: the setting, rewritten.
        let back: fn(ContainerSpec) -> SettingsChange = match change {
            SettingsChange::Autostart(on) => return Ok(SettingsChange::Autostart(on)),
            SettingsChange::Ports(p) => {
                spec.ports = p;
                |s| SettingsChange::Ports(s.ports)
            }
            SettingsChange::Devices(d) => {
                spec.device_rules = d;
                |s| SettingsChange::Devices(s.device_rules)
            }
            SettingsChange::Limits(l) => {
                spec.cpu_shares = l.cpu_shares;
                spec.cpu_time_ms = l.cpu_time_ms;
                spec.memory_bytes = l.memory_bytes;
                |s| {
                    SettingsChange::Limits(Limits {
                        cpu_shares: s.cpu_shares,
                        cpu_time_ms: s.cpu_time_ms,
                        memory_bytes: s.memory_bytes,
                    })
                }
            }
            SettingsChange::HostBinds(b) => {
                spec.binds = b;
                |s| SettingsChange::HostBinds(s.binds)
            }
        };
        Ok(back(self.admit(cx, policy, spec).await?))
    }

    /// The checks and rewrites of `containers.create`.
    async fn admit(
        &self,
        cx: &CallContext,
        policy: &Policy,
        mut spec: ContainerSpec,
    ) -> RtResult<ContainerSpec> {
        policy.allows_privileged(spec.privileged).map_err(denied)?;
        self.check_ports(policy, &spec)?;
        for rule in &spec.device_rules {
            policy.allows_device(rule).map_err(denied)?;
        }
        for bind in &mut spec.binds {
            bind.host_path = self.scoped(policy, &bind.host_path)?;
        }
        let others: Vec<String> = spec
            .volumes_from
            .iter()
            .cloned()
            .chain(spec.links.iter().map(|(c, _)| c.clone()))
            .collect();
        for other in others {
            self.check_owner(cx, policy, spec.runtime, &other).await?;
        }
        policy
            .cap_resources(
                &mut spec.memory_bytes,
                &mut spec.cpu_shares,
                &mut spec.cpu_time_ms,
            )
            .map_err(denied)?;
        spec.labels.retain(|(k, _)| k != OWNER_LABEL);
        spec.labels.push((OWNER_LABEL.to_string(), cx.user.clone()));
        Ok(spec)
    }
}

#[async_trait]
impl Images for Guarded {
    fn resolve_source(&self, source: &Source) -> RtResult<String> {
        self.inner.images.resolve_source(source)
    }

    async fn image_pull(&self, cx: &CallContext, req: PullRequest) -> RtResult<ImageInfo> {
        let policy = self.policy(cx);
        let Some(target) = self.check_pull(&policy, &req)? else {
            return self.inner.images.image_pull(cx, req).await;
        };
        let with_credentials = req.credential.is_some()
            || self
                .inner
                .credentials
                .credential_lookup(cx, target.credential_host.clone())
                .await
                .is_some();
        let info = self.inner.images.image_pull(cx, req).await?;
        for name in &target.names {
            self.owners
                .pulled(name, &info.id, &cx.user, with_credentials);
        }
        Ok(info)
    }

    async fn image_inspect(&self, cx: &CallContext, image: ImageRef) -> RtResult<ImageInfo> {
        self.inner.images.image_inspect(cx, image).await
    }

    /// A caller whose policy does not reach every container sees the
    /// images the image rules let them use (not another user's private ones).
    async fn image_list(&self, cx: &CallContext, kind: RuntimeKind) -> RtResult<Vec<ImageInfo>> {
        let mut all = self.inner.images.image_list(cx, kind).await?;
        if !Self::all_containers(&self.policy(cx)) {
            all.retain(|info| self.may_see(cx, kind, info));
        }
        Ok(all)
    }

    async fn image_remove(&self, cx: &CallContext, req: RemoveImage) -> RtResult<Vec<String>> {
        if !Self::all_containers(&self.policy(cx)) {
            self.check_use(cx, req.image.kind, &req.image.reference)
                .await?;
        }
        self.inner.images.image_remove(cx, req).await
    }

    async fn image_tag(&self, cx: &CallContext, req: TagImage) -> RtResult<()> {
        let policy = self.policy(cx);
        if !Self::all_containers(&policy) {
            self.check_use(cx, RuntimeKind::Docker, &req.source).await?;
        }
        let target = self
            .check_replace(
                cx,
                &policy,
                RuntimeKind::Docker,
                "newImage",
                &format!("{}:{}", req.repository, req.tag),
            )
            .await?;
        self.inner.images.image_tag(cx, req).await?;
        if !Self::all_containers(&policy) {
            self.record_made(cx, &target).await;
        }
        Ok(())
    }

    async fn image_push(&self, cx: &CallContext, req: PushImage) -> RtResult<()> {
        let policy = self.policy(cx);
        self.check_push(&policy, &req.repository, &req.tag, &req.registry)?;
        if !Self::all_containers(&policy) {
            let pushed = format!("{}:{}", req.repository, req.tag);
            self.check_use(cx, RuntimeKind::Docker, &pushed).await?;
        }
        self.inner.images.image_push(cx, req).await
    }

    async fn image_repo_digests(&self, cx: &CallContext, image: ImageRef) -> RtResult<Vec<String>> {
        if !Self::all_containers(&self.policy(cx)) {
            self.check_use(cx, image.kind, &image.reference).await?;
        }
        self.inner.images.image_repo_digests(cx, image).await
    }

    /// The registry asked must be one the caller may pull from.
    async fn image_remote_digest(&self, cx: &CallContext, image: ImageRef) -> RtResult<String> {
        self.check_registry_of(&self.policy(cx), image.kind, &image.reference)?;
        self.inner.images.image_remote_digest(cx, image).await
    }

    async fn image_save(&self, cx: &CallContext, mut req: SaveImages) -> RtResult<u64> {
        let policy = self.policy(cx);
        req.file.path = self.scoped(&policy, &req.file.path)?;
        if !Self::all_containers(&policy) {
            for r in &req.references {
                self.check_use(cx, RuntimeKind::Docker, r).await?;
            }
        }
        confined(&policy.share, self.inner.images.image_save(cx, req)).await
    }

    // The synchronous image routes' calls.

    fn search_registries(&self) -> Vec<SearchRegistry> {
        self.inner.images.search_registries()
    }

    async fn image_inspect_json(&self, cx: &CallContext, image: ImageRef) -> RtResult<String> {
        if !Self::all_containers(&self.policy(cx)) {
            self.check_use(cx, image.kind, &image.reference).await?;
        }
        self.inner.images.image_inspect_json(cx, image).await
    }

    /// The container must be the caller's, and the new name new or theirs;
    /// the new image is recorded as the caller's own.
    async fn image_commit(&self, cx: &CallContext, req: CommitImage) -> RtResult<String> {
        let policy = self.policy(cx);
        self.check_owner(cx, &policy, req.container.kind, &req.container.id)
            .await?;
        let target = self
            .check_replace(
                cx,
                &policy,
                RuntimeKind::Docker,
                "repository",
                &format!("{}:{}", req.repository, req.tag),
            )
            .await?;
        let id = self.inner.images.image_commit(cx, req).await?;
        if !Self::all_containers(&policy) {
            self.record_made(cx, &target).await;
        }
        Ok(id)
    }
}

#[async_trait]
impl Containers for Guarded {
    async fn container_create(&self, cx: &CallContext, spec: ContainerSpec) -> RtResult<String> {
        let policy = self.policy(cx);
        let spec = self.admit(cx, &policy, spec).await?;
        self.check_use(cx, spec.runtime, &spec.image).await?;
        confined(
            &policy.share,
            self.inner.containers.container_create(cx, spec),
        )
        .await
    }

    async fn container_start(&self, cx: &CallContext, c: &ContainerRef) -> RtResult<()> {
        self.check_owned(cx, c).await?;
        self.inner.containers.container_start(cx, c).await
    }

    async fn container_stop(&self, cx: &CallContext, req: StopContainer) -> RtResult<()> {
        self.check_owned(cx, &req.container).await?;
        self.inner.containers.container_stop(cx, req).await
    }

    async fn container_restart(&self, cx: &CallContext, req: StopContainer) -> RtResult<()> {
        self.check_owned(cx, &req.container).await?;
        self.inner.containers.container_restart(cx, req).await
    }

    async fn container_remove(&self, cx: &CallContext, req: RemoveContainer) -> RtResult<()> {
        self.check_owned(cx, &req.container).await?;
        self.inner.containers.container_remove(cx, req).await
    }

    async fn container_delete(&self, cx: &CallContext, req: DeleteContainer) -> RtResult<()> {
        self.check_owned(cx, &req.container).await?;
        self.inner.containers.container_delete(cx, req).await
    }

    async fn container_list(
        &self,
        cx: &CallContext,
        kind: RuntimeKind,
    ) -> RtResult<Vec<ContainerEntry>> {
        let policy = self.policy(cx);
        let mut all = self.inner.containers.container_list(cx, kind).await?;
        all.retain(|e| policy.allows_container(&e.name, e.owner()).is_ok());
        Ok(all)
    }

    async fn container_entry(
        &self,
        cx: &CallContext,
        c: &ContainerRef,
    ) -> RtResult<ContainerEntry> {
        let policy = self.policy(cx);
        let entry = self.inner.containers.container_entry(cx, c).await?;
        policy
            .allows_container(&entry.name, entry.owner())
            .map_err(denied)?;
        Ok(entry)
    }

    /// Only the containers the caller may see are sampled: a caller who may
    /// not see all of them has `containers` checked against one listing.
    async fn container_usage(&self, cx: &CallContext, mut req: UsageQuery) -> RtResult<Usages> {
        let policy = self.policy(cx);
        if !Self::all_containers(&policy) {
            let visible: std::collections::HashSet<String> = self
                .inner
                .containers
                .container_list(cx, req.kind)
                .await?
                .into_iter()
                .filter(|e| policy.allows_container(&e.name, e.owner()).is_ok())
                .flat_map(|e| [e.id, e.name])
                .collect();
            req.containers.retain(|c| visible.contains(c));
        }
        self.inner.containers.container_usage(cx, req).await
    }

    /// A container's logs are read like its entry: only the caller's own,
    /// unless their policy lets them see all.
    async fn container_logs(&self, cx: &CallContext, req: ContainerLogs) -> RtResult<String> {
        let req = self.readable_logs(cx, req).await?;
        self.inner.containers.container_logs(cx, req).await
    }

    /// Followed, as [`Containers::container_logs`].
    async fn container_follow_logs(
        &self,
        cx: &CallContext,
        req: ContainerLogs,
    ) -> RtResult<LogStream> {
        let req = self.readable_logs(cx, req).await?;
        self.inner.containers.container_follow_logs(cx, req).await
    }

    /// The container must be the caller's, and the image one they may use
    /// (as at `create`); the image is pinned to the id checked here.
    async fn container_recreate(
        &self,
        cx: &CallContext,
        mut req: Recreate,
    ) -> RtResult<Replacement> {
        let policy = self.policy(cx);
        let c = &req.container;
        self.check_owner(cx, &policy, c.kind, &c.id).await?;
        self.check_use(cx, c.kind, &req.image).await?;
        let info = self
            .inner
            .images
            .image_inspect(cx, ImageRef::new(c.kind, &req.image))
            .await?;
        req.pinned = Some(info.id);
        confined(
            &policy.share,
            self.inner.containers.container_recreate(cx, req),
        )
        .await
    }

    /// Both containers must be the caller's.
    async fn container_restore(&self, cx: &CallContext, req: Restore) -> RtResult<()> {
        let policy = self.policy(cx);
        for id in [&req.replaced.id, &req.replaced.previous] {
            self.check_owner(cx, &policy, req.kind, id).await?;
        }
        self.inner.containers.container_restore(cx, req).await
    }

    async fn container_health(
        &self,
        cx: &CallContext,
        c: &ContainerRef,
    ) -> RtResult<ContainerHealth> {
        self.check_owned(cx, c).await?;
        self.inner.containers.container_health(cx, c).await
    }

    /// Configuration, not a container: anyone logged in may know it.
    async fn engine_version(&self, cx: &CallContext, kind: RuntimeKind) -> RtResult<String> {
        self.inner.containers.engine_version(cx, kind).await
    }

    async fn container_inspect(&self, cx: &CallContext, c: &ContainerRef) -> RtResult<String> {
        self.check_owned(cx, c).await?;
        self.inner.containers.container_inspect(cx, c).await
    }

    async fn container_export(&self, cx: &CallContext, mut req: ExportContainer) -> RtResult<u64> {
        let policy = self.policy(cx);
        let c = &req.container;
        self.check_owner(cx, &policy, c.kind, &c.id).await?;
        req.file.path = self.scoped(&policy, &req.file.path)?;
        confined(
            &policy.share,
            self.inner.containers.container_export(cx, req),
        )
        .await
    }

    async fn container_subtree_export(
        &self,
        cx: &CallContext,
        mut req: ExportSubtree,
    ) -> RtResult<u64> {
        let policy = self.policy(cx);
        let c = &req.container;
        self.check_owner(cx, &policy, c.kind, &c.id).await?;
        req.file.path = self.scoped(&policy, &req.file.path)?;
        confined(
            &policy.share,
            self.inner.containers.container_subtree_export(cx, req),
        )
        .await
    }

    async fn container_subtree_import(
        &self,
        cx: &CallContext,
        mut req: ImportSubtree,
    ) -> RtResult<u64> {
        let policy = self.policy(cx);
        let c = &req.container;
        self.check_owner(cx, &policy, c.kind, &c.id).await?;
        req.path = self.scoped(&policy, &req.path)?;
        confined(
            &policy.share,
            self.inner.containers.container_subtree_import(cx, req),
        )
        .await
    }

    async fn archive_config(&self, cx: &CallContext, path: String) -> RtResult<Option<String>> {
        let policy = self.policy(cx);
        let path = self.scoped(&policy, &path)?;
        confined(
            &policy.share,
            self.inner.containers.archive_config(cx, path),
        )
        .await
    }

    async fn image_import(&self, cx: &CallContext, mut req: ImportImage) -> RtResult<String> {
        let policy = self.policy(cx);
        req.path = self.scoped(&policy, &req.path)?;
        let reference = match req.kind {
            RuntimeKind::Docker => format!("{}:{}", req.repository, req.tag),
            RuntimeKind::Lxc => super::lxc::images::reference(&req.repository, &req.tag),
        };
        let target = self
            .check_replace(cx, &policy, req.kind, "image", &reference)
            .await?;
        let id = confined(&policy.share, self.inner.containers.image_import(cx, req)).await?;
        // An admin's names stay public: only a non-admin's are recorded.
        if !Self::all_containers(&policy) {
            self.owners.set_local(&target, &id, &cx.user);
        }
        Ok(id)
    }

    async fn container_create_with(
        &self,
        cx: &CallContext,
        mut req: CreateWith,
    ) -> RtResult<String> {
        let policy = self.policy(cx);
        req.spec = self.admit(cx, &policy, req.spec).await?;
        self.check_use(cx, req.spec.runtime, &req.spec.image)
            .await?;
        let extra = &req.extra;
        for net in &extra.networks {
            self.check_network(cx, &policy, &net.network).await?;
        }
        for mount in &extra.mounts {
            match &mount.source {
                MountSource::Volume(name) => self.check_volume(cx, &policy, name).await?,
                MountSource::HostPath(path) if !policy.share.is_empty() => {
                    let folder = self.share_root.join(&policy.share);
                    let inside = std::path::Path::new(path)
                        .canonicalize()
                        .ok()
                        .zip(folder.canonicalize().ok())
                        .is_some_and(|(p, f)| p.starts_with(f));
                    if !inside {
                        return Err(Error::Denied(format!(
                            "host folder `{path}` is outside the share folder of user {}",
                            policy.user
                        )));
                    }
                }
                _ => {}
            }
        }
        if !extra.app.is_empty() {
            self.check_app(cx, &policy, &extra.app).await?;
        }
        confined(
            &policy.share,
            self.inner.containers.container_create_with(cx, req),
        )
        .await
    }

    async fn container_create_on_network(
        &self,
        cx: &CallContext,
        mut req: CreateOnNetwork,
    ) -> RtResult<String> {
        let policy = self.policy(cx);
        req.spec = self.admit(cx, &policy, req.spec).await?;
        let spec = &req.spec;
        self.check_use(cx, spec.runtime, &spec.image).await?;
        match &req.network.mode {
            NetworkMode::Nat => {}
            NetworkMode::Join(other) => self
                .check_owner(cx, &policy, spec.runtime, other)
                .await
                .map_err(|e| match e {
                    Error::Denied(m) | Error::NotFound(m) => {
                        Error::InvalidParams(format!("network.join: {m}"))
                    }
                    other => other,
                })?,
            NetworkMode::HostInterface(_) => {
                if !Self::all_containers(&policy) && !policy.privileged {
                    return Err(Error::Denied(format!(
                        "network.interface: containers on a host interface are not allowed for user {} \
                         (they are on the host's network with every port, outside the NAT and the allowed port range)",
                        policy.user
                    )));
                }
            }
        }
        let create = self.inner.containers.container_create_on_network(cx, req);
        confined(&policy.share, create).await
    }

    /// A container's settings are read like its inspect: the caller's own,
    /// unless their policy reaches all containers.
    async fn container_settings(
        &self,
        cx: &CallContext,
        c: &ContainerRef,
    ) -> RtResult<serde_json::Value> {
        self.check_owned(cx, c).await?;
        self.inner.containers.container_settings(cx, c).await
    }

    /// A change is the caller's own container's, and its new setting
    /// passes the checks of `containers.create` ([`Guarded::admit_change`]).
    async fn container_change_settings(
        &self,
        cx: &CallContext,
        mut req: ChangeSettings,
    ) -> RtResult<()> {
        let policy = self.policy(cx);
        let c = &req.container;
        self.check_owner(cx, &policy, c.kind, &c.id).await?;
        req.change = self
            .admit_change(cx, &policy, c, req.change.clone())
            .await?;
        confined(
            &policy.share,
            self.inner.containers.container_change_settings(cx, req),
        )
        .await
    }

    async fn container_list_labelled(
        &self,
        cx: &CallContext,
        req: LabelQuery,
    ) -> RtResult<Vec<ContainerSummary>> {
        let policy = self.policy(cx);
        let mut all = self
            .inner
            .containers
            .container_list_labelled(cx, req)
            .await?;
        all.retain(|c| {
            policy
                .allows_container(&c.name, owner_in(&c.labels))
                .is_ok()
        });
        Ok(all)
    }
}

#[async_trait]
impl Networks for Guarded {
    async fn network_create(&self, cx: &CallContext, req: Labelled) -> RtResult<String> {
        self.inner.networks.network_create(cx, owned(cx, req)).await
    }

    async fn network_remove(&self, cx: &CallContext, name: String) -> RtResult<()> {
        self.check_network(cx, &self.policy(cx), &name).await?;
        self.inner.networks.network_remove(cx, name).await
    }

    async fn network_list(&self, cx: &CallContext, label: Label) -> RtResult<Vec<NetworkInfo>> {
        self.inner.networks.network_list(cx, label).await
    }

    // The API's `networks` routes: a user sees and acts on what
    // [`networks`] says.

    async fn network_details(&self, cx: &CallContext) -> RtResult<Vec<serde_json::Value>> {
        let policy = self.policy(cx);
        let mut all = self.inner.networks.network_details(cx).await?;
        all.retain(|n| networks::sees_network(&policy, n));
        Ok(all)
    }

    async fn network_inspect(&self, cx: &CallContext, id: String) -> RtResult<serde_json::Value> {
        let policy = self.policy(cx);
        let network = self.inner.networks.network_inspect(cx, id.clone()).await?;
        if networks::sees_network(&policy, &network) {
            Ok(network)
        } else {
            Err(not_created_by(&policy, "network", &id))
        }
    }

    async fn network_create_spec(
        &self,
        cx: &CallContext,
        mut spec: NetworkSpec,
    ) -> RtResult<serde_json::Value> {
        let policy = self.policy(cx);
        if let Some(refusal) = networks::network_refusal(&policy, &spec) {
            return Err(Error::Denied(refusal));
        }
        let labels = std::mem::take(&mut spec.labels);
        let name = spec.name.clone();
        spec.labels = owned(cx, Labelled { name, labels }).labels;
        self.inner.networks.network_create_spec(cx, spec).await
    }

    async fn network_connect(&self, cx: &CallContext, req: Attach) -> RtResult<()> {
        self.check_attach(cx, &req).await?;
        self.inner.networks.network_connect(cx, req).await
    }

    async fn network_disconnect(&self, cx: &CallContext, req: Attach) -> RtResult<()> {
        self.check_attach(cx, &req).await?;
        self.inner.networks.network_disconnect(cx, req).await
    }
}

impl Guarded {
    /// A container joins or leaves a network only when both are the
    /// user's own (or the policy reaches all containers).
    async fn check_attach(&self, cx: &CallContext, req: &Attach) -> RtResult<()> {
        let policy = self.policy(cx);
        if Self::all_containers(&policy) {
            return Ok(());
        }
        let network = self
            .inner
            .networks
            .network_inspect(cx, req.network.clone())
            .await?;
        if !networks::acts_on(&policy, &network) {
            return Err(not_created_by(&policy, "network", &req.network));
        }
        self.check_owner(cx, &policy, RuntimeKind::Docker, &req.container)
            .await
    }
}

/// The refusal of another user's network or volume.
fn not_created_by(policy: &Policy, what: &str, name: &str) -> Error {
    Error::Denied(format!(
        "{what} {name} was not created by user {}",
        policy.user
    ))
}

#[async_trait]
impl Volumes for Guarded {
    async fn volume_create(&self, cx: &CallContext, req: Labelled) -> RtResult<()> {
        self.check_volume(cx, &self.policy(cx), &req.name).await?;
        self.inner.volumes.volume_create(cx, owned(cx, req)).await
    }

    async fn volume_remove(&self, cx: &CallContext, name: String) -> RtResult<()> {
        self.check_volume(cx, &self.policy(cx), &name).await?;
        self.inner.volumes.volume_remove(cx, name).await
    }

    async fn volume_list(&self, cx: &CallContext, label: Label) -> RtResult<Vec<VolumeInfo>> {
        self.inner.volumes.volume_list(cx, label).await
    }

    async fn volume_export(&self, cx: &CallContext, mut req: ExportVolume) -> RtResult<u64> {
        let policy = self.policy(cx);
        if !self.backs_up(cx, &policy, &req.volume).await? {
            return Err(Error::NotFound(format!(
                "volume {}: no such volume",
                req.volume
            )));
        }
        req.file.path = self.scoped(&policy, &req.file.path)?;
        confined(&policy.share, self.inner.volumes.volume_export(cx, req)).await
    }

    async fn volume_import(&self, cx: &CallContext, mut req: ImportVolume) -> RtResult<u64> {
        let policy = self.policy(cx);
        self.backs_up(cx, &policy, &req.volume).await?;
        req.path = self.scoped(&policy, &req.path)?;
        let name = req.volume.clone();
        req.labels = owned(
            cx,
            Labelled {
                name,
                labels: req.labels,
            },
        )
        .labels;
        confined(&policy.share, self.inner.volumes.volume_import(cx, req)).await
    }

    async fn volume_users(
        &self,
        cx: &CallContext,
        name: String,
    ) -> RtResult<Vec<ContainerSummary>> {
        self.inner.volumes.volume_users(cx, name).await
    }

    // The API's `volumes` routes: a user sees what [`networks`] says.

    async fn volume_details(&self, cx: &CallContext) -> RtResult<Vec<serde_json::Value>> {
        let policy = self.policy(cx);
        let mut all = self.inner.volumes.volume_details(cx).await?;
        all.retain(|v| networks::sees_volume(&policy, v));
        Ok(all)
    }

    async fn volume_inspect(&self, cx: &CallContext, name: String) -> RtResult<serde_json::Value> {
        let policy = self.policy(cx);
        let volume = self.inner.volumes.volume_inspect(cx, name.clone()).await?;
        if networks::sees_volume(&policy, &volume) {
            Ok(volume)
        } else {
            Err(not_created_by(&policy, "volume", &name))
        }
    }

    async fn volume_create_spec(
        &self,
        cx: &CallContext,
        mut spec: VolumeSpec,
    ) -> RtResult<serde_json::Value> {
        let policy = self.policy(cx);
        if let Some(refusal) = networks::volume_refusal(&policy, &spec) {
            return Err(Error::Denied(refusal));
        }
        let labels = std::mem::take(&mut spec.labels);
        let name = spec.name.clone();
        spec.labels = owned(cx, Labelled { name, labels }).labels;
        self.inner.volumes.volume_create_spec(cx, spec).await
    }
}

#[async_trait]
impl AppFolders for Guarded {
    async fn app_record(&self, name: String) -> RtResult<Option<String>> {
        self.inner.apps.app_record(name).await
    }

    async fn app_records(&self) -> RtResult<Vec<(String, String)>> {
        self.inner.apps.app_records().await
    }

    async fn app_folder(&self, name: String) -> RtResult<String> {
        self.inner.apps.app_folder(name).await
    }

    async fn app_install_template(&self, cx: &CallContext, req: InstallTemplate) -> RtResult<()> {
        let policy = self.policy(cx);
        self.check_app(cx, &policy, &req.app).await?;
        let owner = match self.app_owner(cx, &req.app).await {
            Some(o) => o,
            None => cx.user.clone(),
        };
        let name = req.app.clone();
        self.inner.apps.app_install_template(cx, req).await?;
        // Written by the host after the template's files, so no template
        // and no plugin decides who owns the application.
        let file = AppFile::new(name, APP_OWNER_FILE);
        self.inner.apps.app_write_file(cx, file, owner).await
    }

    async fn app_read_file(&self, cx: &CallContext, file: AppFile) -> RtResult<String> {
        // The record read this way holds the secret answers in clear.
        self.check_app(cx, &self.policy(cx), &file.app).await?;
        self.inner.apps.app_read_file(cx, file).await
    }

    async fn app_write_file(&self, cx: &CallContext, file: AppFile, text: String) -> RtResult<()> {
        if file.path.trim_start_matches("./") == APP_OWNER_FILE {
            return Err(Error::Denied(format!(
                "`{APP_OWNER_FILE}` is written by the host only"
            )));
        }
        self.check_app(cx, &self.policy(cx), &file.app).await?;
        self.inner.apps.app_write_file(cx, file, text).await
    }

    async fn app_remove(&self, cx: &CallContext, name: String) -> RtResult<()> {
        self.check_app(cx, &self.policy(cx), &name).await?;
        self.inner.apps.app_remove(cx, name).await
    }
}

impl super::Backend for Guarded {}

#[async_trait]
impl Credentials for Guarded {
    async fn credential_lookup(&self, cx: &CallContext, registry: String) -> Option<Credential> {
        // Credentials reach a plugin only for a registry the user may use.
        let name = self.domain_name(&super::reference::registry_domain(&registry));
        if self.policy(cx).allows_registry(&name).is_err() {
            return None;
        }
        self.inner.credentials.credential_lookup(cx, registry).await
    }

    async fn credential_remember(&self, cx: &CallContext, credential: Credential) -> RtResult<()> {
        self.inner
            .credentials
            .credential_remember(cx, credential)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyConfig;
    use crate::queue::{LogLevel, Reporter};
    use crate::runtime::simulated::{test_spec, Simulator};
    use crate::runtime::{ArchiveFile, BindMount};

    struct Quiet;
    impl Reporter for Quiet {
        fn progress(&self, _: i32, _: &str) {}
        fn log(&self, _: LogLevel, _: &str) {}
    }

    fn cx(user: &str) -> CallContext {
        CallContext {
            task_id: 1,
            user: user.into(),
            cancel: tokio_util::sync::CancellationToken::new(),
            reporter: Arc::new(Quiet),
        }
    }

    fn spec(name: &str) -> ContainerSpec {
        ContainerSpec {
            labels: vec![(OWNER_LABEL.into(), "admin".into())],
            ..test_spec(RuntimeKind::Docker, name)
        }
    }

    /// A guard over the simulator, `admin` an admin and `bob` not, with
    /// a 1 GiB memory cap for non-admins.
    fn guarded(dir: &std::path::Path) -> (Guarded, Arc<Simulator>) {
        let sim = Arc::new(Simulator::default());
        let default = PolicyConfig {
            limits: Some(crate::policy::LimitsConfig {
                memory: Some("1g".into()),
                ..Default::default()
            }),
            registries: Some(vec!["local".into()]),
            ..Default::default()
        };
        let policies = Policies::new(
            [("admin".into(), true, None), ("bob".into(), false, None)],
            Some(default),
        )
        .unwrap();
        let names = BTreeMap::from([("127.0.0.1:5000".to_string(), "local".to_string())]);
        let g = Guarded::new(
            Backends::all(sim.clone()),
            Arc::new(policies),
            dir.to_path_buf(),
            names,
        );
        (g, sim)
    }

    fn calls(sim: &Simulator, name: &str) -> Vec<serde_json::Value> {
        sim.calls()
            .into_iter()
            .filter(|c| c.call == name)
            .map(|c| c.args)
            .collect()
    }

    #[tokio::test]
    async fn whichever_plugin_asks_the_users_policy_holds() {
        let dir = tempfile::tempdir().unwrap();
        let (g, sim) = guarded(dir.path());
        let mut s = spec("p");
        s.privileged = true;
        let e = g.container_create(&cx("bob"), s.clone()).await.unwrap_err();
        assert_eq!(
            e,
            Error::Denied("privileged containers are not allowed for user bob".into())
        );
        let mut d = spec("d");
        d.device_rules = vec!["c 81:* rw".into()];
        assert!(matches!(
            g.container_create(&cx("bob"), d).await,
            Err(Error::Denied(_))
        ));
        let mut m = spec("m");
        m.memory_bytes = Some(2 << 30);
        assert_eq!(
            g.container_create(&cx("bob"), m).await.unwrap_err(),
            Error::Denied("memory 2g is over the limit 1g for user bob".into())
        );
        assert!(
            calls(&sim, "containers.create").is_empty(),
            "nothing reached the runtime"
        );

        // Allowed: the owner label is the caller's, binds move into the
        // caller's folder, the memory cap fills in.
        let mut ok = spec("ok");
        ok.binds = vec![BindMount {
            host_path: "/data".into(),
            container_path: "/data".into(),
            read_only: false,
        }];
        g.container_create(&cx("bob"), ok).await.unwrap();
        let made = &calls(&sim, "containers.create")[0];
        assert_eq!(made["labels"], serde_json::json!([[OWNER_LABEL, "bob"]]));
        assert_eq!(made["binds"][0]["host_path"], "bob/data");
        assert_eq!(made["memory_bytes"], 1u64 << 30);

        // The admin may do what bob may not.
        g.container_create(&cx("admin"), s).await.unwrap();
        assert_eq!(calls(&sim, "containers.create").len(), 2);
    }

    #[tokio::test]
    async fn published_ports_obey_the_policy_and_spare_the_servers_own() {
        let dir = tempfile::tempdir().unwrap();
        let (g, sim) = guarded(dir.path());
        let g = g.reserving_ports([8080]);
        let with_port = |name: &str, port: u16| {
            let mut s = spec(name);
            s.ports = vec![crate::runtime::PortBinding {
                host_port: port,
                container_port: 80,
                protocol: "tcp".into(),
            }];
            s
        };
        let e = g
            .container_create(&cx("bob"), with_port("low", 80))
            .await
            .unwrap_err();
        assert!(matches!(&e, Error::Denied(m) if m.starts_with("network.port[0]: host port 80")));
        for user in ["bob", "admin"] {
            let e = g
                .container_create(&cx(user), with_port("api", 8080))
                .await
                .unwrap_err();
            assert_eq!(
                e,
                Error::Denied("network.port[0]: host port 8080 is the server's own port".into())
            );
        }
        assert!(calls(&sim, "containers.create").is_empty());
        g.container_create(&cx("bob"), with_port("ok", 18080))
            .await
            .unwrap();
        g.container_create(&cx("admin"), with_port("ok2", 80))
            .await
            .unwrap();
        assert_eq!(calls(&sim, "containers.create").len(), 2);
    }

    #[tokio::test]
    async fn a_changed_setting_gets_the_checks_of_a_create() {
        let dir = tempfile::tempdir().unwrap();
        let (g, _) = guarded(dir.path());
        let c = ContainerRef::new(RuntimeKind::Docker, "web");
        let change = |user: &str, change: SettingsChange| {
            let (g, c, policy) = (&g, &c, g.policies.of(user).into_owned());
            async move { g.admit_change(&cx(&policy.user), &policy, c, change).await }
        };
        let port = |host_port| {
            SettingsChange::Ports(vec![crate::runtime::PortBinding {
                host_port,
                container_port: 80,
                protocol: "tcp".into(),
            }])
        };
        assert!(matches!(
            change("bob", port(80)).await,
            Err(Error::Denied(_))
        ));
        assert_eq!(change("bob", port(18080)).await.unwrap(), port(18080));
        assert_eq!(change("admin", port(80)).await.unwrap(), port(80));
        let device = SettingsChange::Devices(vec!["c 81:* rw".into()]);
        assert!(matches!(
            change("bob", device.clone()).await,
            Err(Error::Denied(_))
        ));
        assert_eq!(change("admin", device.clone()).await.unwrap(), device);
        // Dropping the memory limit leaves the policy's cap; more is refused.
        assert_eq!(
            change("bob", SettingsChange::Limits(Limits::default()))
                .await
                .unwrap(),
            SettingsChange::Limits(Limits {
                memory_bytes: Some(1 << 30),
                ..Default::default()
            })
        );
        let more = Limits {
            memory_bytes: Some(2 << 30),
            ..Default::default()
        };
        assert!(matches!(
            change("bob", SettingsChange::Limits(more)).await,
            Err(Error::Denied(_))
        ));
        // Host folders move into the user's folder; none may leave it.
        let bind = |path: &str| {
            SettingsChange::HostBinds(vec![BindMount {
                host_path: path.into(),
                container_path: "/data".into(),
                read_only: false,
            }])
        };
        assert_eq!(
            change("bob", bind("/data")).await.unwrap(),
            bind("bob/data")
        );
        assert!(change("bob", bind("../alice")).await.is_err());
    }

    /// Save the image `a` to `path`, neither compressed nor overwriting.
    fn save_a(path: &str) -> SaveImages {
        let file = ArchiveFile {
            path: path.into(),
            gzip: false,
            overwrite: false,
        };
        let references = vec!["a".into()];
        SaveImages { references, file }
    }

    #[tokio::test]
    async fn paths_stay_in_the_users_folder() {
        let dir = tempfile::tempdir().unwrap();
        let (g, sim) = guarded(dir.path());
        g.image_save(&cx("bob"), save_a("out/a.tar")).await.unwrap();
        g.image_save(&cx("admin"), save_a("/out/a.tar"))
            .await
            .unwrap();
        let paths: Vec<_> = calls(&sim, "images.save-to-path")
            .iter()
            .map(|a| a["path"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(paths, ["bob/out/a.tar", "/out/a.tar"]);

        std::fs::create_dir_all(dir.path().join("alice")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("alice"), dir.path().join("bob/alice")).unwrap();
        for bad in ["../alice/x.tar", "alice/x.tar", "alice"] {
            let e = g.image_save(&cx("bob"), save_a(bad)).await.unwrap_err();
            assert!(matches!(e, Error::Denied(_)), "{bad}: {e:?}");
        }
        assert_eq!(calls(&sim, "images.save-to-path").len(), 2);
    }

    #[tokio::test]
    async fn registries_by_name_or_address() {
        let dir = tempfile::tempdir().unwrap();
        let (g, _) = guarded(dir.path());
        let push = |user: &str, repository: &str, registry: &str| {
            let g = &g;
            let cx = cx(user);
            let (repository, registry) = (repository.to_string(), registry.to_string());
            async move {
                let req = PushImage {
                    repository,
                    tag: "t".into(),
                    registry,
                    credential: None,
                };
                g.image_push(&cx, req).await
            }
        };
        assert!(push("bob", "127.0.0.1:5000/r", "127.0.0.1:5000")
            .await
            .is_ok());
        assert!(push("bob", "127.0.0.1:5000/r", "http://127.0.0.1:5000/")
            .await
            .is_ok());
        assert_eq!(
            push("bob", "r", "").await.unwrap_err(),
            Error::Denied("registry dockerhub is not allowed for user bob".into())
        );
        assert!(push("admin", "r", "").await.is_ok());
        // The registry contacted is the repository's, whatever `registry` says.
        assert_eq!(
            push("bob", "127.0.0.1:5900/r", "").await.unwrap_err(),
            Error::Denied(
                "127.0.0.1:5900/r would be pushed to the registry 127.0.0.1:5900, not to `Docker Hub`"
                    .into()
            )
        );
        assert!(matches!(
            push("admin", "127.0.0.1:5900/r", "127.0.0.1:5000").await,
            Err(Error::Denied(_))
        ));
    }

    #[tokio::test]
    async fn pulls_are_checked_against_the_registry_in_the_image_name() {
        let dir = tempfile::tempdir().unwrap();
        let (g, sim) = guarded(dir.path());
        let pull = |image: &str| PullRequest {
            runtime: RuntimeKind::Docker,
            image: image.into(),
            tag: "latest".into(),
            source: Source::Dockerhub,
            credential: None,
        };
        // bob may use `local` (127.0.0.1:5000) only.
        assert!(g
            .image_pull(&cx("bob"), pull("127.0.0.1:5000/library/busybox"))
            .await
            .is_ok());
        assert_eq!(
            g.image_pull(&cx("bob"), pull("127.0.0.1:5900/library/busybox"))
                .await
                .unwrap_err(),
            Error::Denied("registry 127.0.0.1:5900 is not allowed for user bob".into())
        );
        assert!(matches!(
            g.image_pull(&cx("bob"), pull("busybox")).await,
            Err(Error::Denied(_))
        ));
        assert_eq!(calls(&sim, "images.pull").len(), 1);
    }

    #[tokio::test]
    async fn volume_backups_reach_the_users_own_volumes_in_their_folder() {
        let dir = tempfile::tempdir().unwrap();
        let script = serde_json::json!({
            "volumes.list": {"ok": [
                {"name": "bobs", "labels": [[OWNER_LABEL, "bob"]]},
                {"name": "alices", "labels": [[OWNER_LABEL, "alice"]]},
                {"name": "shared", "labels": []},
                {"name": "mounted", "labels": []}
            ]},
            "volumes.users": [
                {"ok": [{"id": "1", "name": "a", "image": "i", "running": true, "labels": [[OWNER_LABEL, "alice"]]},
                        {"id": "2", "name": "b", "image": "i", "running": true, "labels": [[OWNER_LABEL, "bob"]]}]},
                {"ok": [{"id": "2", "name": "b", "image": "i", "running": true, "labels": [[OWNER_LABEL, "bob"]]}]}
            ]
        });
        let sim = Arc::new(Simulator::from_script(&script.to_string()).unwrap());
        let (g, _) = guarded(dir.path());
        let g = Guarded {
            inner: Backends::all(sim.clone()),
            ..g
        };
        let export = |volume: &str, path: &str| ExportVolume {
            volume: volume.into(),
            file: ArchiveFile {
                path: path.into(),
                gzip: false,
                overwrite: false,
            },
            live: false,
        };
        let bob = cx("bob");
        g.volume_export(&bob, export("bobs", "b.tar"))
            .await
            .unwrap();
        assert_eq!(
            calls(&sim, "volumes.export-to-path")[0]["path"],
            "bob/b.tar",
            "the path is moved into bob's folder"
        );
        for theirs in ["alices", "shared"] {
            let e = g
                .volume_export(&bob, export(theirs, "x.tar"))
                .await
                .unwrap_err();
            assert!(matches!(e, Error::Denied(_)), "{theirs}: {e:?}");
        }
        // Unlabelled, mounted by bob's container alone: his.
        g.volume_export(&bob, export("mounted", "m.tar"))
            .await
            .unwrap();
        let e = g
            .volume_export(&bob, export("gone", "x.tar"))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e:?}");
        assert!(g
            .volume_export(&bob, export("bobs", "../x.tar"))
            .await
            .is_err());
        assert_eq!(calls(&sim, "volumes.export-to-path").len(), 2);

        // An import into a new volume makes it bob's; into another's, refused.
        let import = |volume: &str| ImportVolume {
            volume: volume.into(),
            path: "b.tar".into(),
            overwrite: false,
            labels: vec![(OWNER_LABEL.into(), "mallory".into())],
        };
        g.volume_import(&bob, import("fresh")).await.unwrap();
        let done = &calls(&sim, "volumes.import-from-path")[0];
        assert_eq!(done["path"], "bob/b.tar");
        assert_eq!(done["labels"], serde_json::json!([[OWNER_LABEL, "bob"]]));
        assert!(matches!(
            g.volume_import(&bob, import("alices")).await,
            Err(Error::Denied(_))
        ));
        // The admin reaches every volume.
        g.volume_export(&cx("admin"), export("alices", "a.tar"))
            .await
            .unwrap();
    }
}
