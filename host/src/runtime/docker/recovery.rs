//! Start-up recovery of the recreates a crash interrupted.
//!
//! A recreate ([`super::settings`]) renames the old container
//! `<name>-replaced-<short id>`, creates the new one as `<name>` with the
//! labels below (the old id, whether the old one ran, which server made
//! it, the task that asked), stops the old one and starts the new one.
//! Once the change is kept the old container is removed; when that removal
//! fails it is renamed `<name>-retired-<short id>` instead. A server killed
//! in between leaves the old container aside, stopped, with nothing to put
//! it back. At start, before the queue runs a task or the API answers,
//! [`DockerRuntime::recover_recreates`] looks at every container under an
//! aside name:
//!
//! - retired: the change was kept; it is removed;
//! - a new container this server made holds the name and the task that
//!   asked for it completed: the change is finished (the old one removed);
//! - a new container this server made holds the name otherwise (the task
//!   was interrupted or failed, or a settings route never answered): it is
//!   removed, the old container gets its name back and starts again if it
//!   ran;
//! - no container holds the name (the crash came before the create): the
//!   old container, never stopped, gets its name back;
//! - another server's new container holds the name (several servers on
//!   one engine): left for that server's own start, which knows its tasks;
//! - a container no recreate made holds the name: left alone.
//!
//! The old container keeps its id, volumes and writable layer. Each step
//! is one engine call a second run finds done, so a crash during the
//! recovery is recovered at the next start.

use std::collections::HashMap;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    ListContainersOptions, RemoveContainerOptions, RenameContainerOptions,
};
use sha2::{Digest, Sha256};

use super::{engine, DockerRuntime};
use crate::runtime::{Error, RtResult};
use crate::store::tasks::{TaskState, TaskStore};

/// What an old container is named while a recreate may still put it back.
pub const ASIDE: &str = "-replaced-";

/// What an old container is named once the change is kept and its removal failed.
pub const RETIRED: &str = "-retired-";

/// The labels a recreate gives the new container start with this.
pub const LABEL_PREFIX: &str = "io.stevedore.recreate.";

/// Label: the id of the container the new one replaces.
pub const REPLACES: &str = "io.stevedore.recreate.replaces";

/// Label: `true` when the replaced container ran (it is started again on a roll-back).
pub const WAS_RUNNING: &str = "io.stevedore.recreate.was-running";

/// Label: which server made the new container ([`maker_id`]).
pub const MAKER: &str = "io.stevedore.recreate.maker";

/// Label: the task that asked for the recreate (none for a settings route).
pub const TASK: &str = "io.stevedore.recreate.task";

/// `<name><marker><short id>`.
fn marked(name: &str, marker: &str, id: &str) -> String {
    let short: String = id.chars().take(12).collect();
    format!("{name}{marker}{short}")
}

/// What a replaced container is named while it is aside.
pub fn aside_name(name: &str, old_id: &str) -> String {
    marked(name, ASIDE, old_id)
}

/// What a replaced container is named when the change was kept and it
/// could not be removed.
pub fn retired_name(name: &str, old_id: &str) -> String {
    marked(name, RETIRED, old_id)
}

/// A name a recreate gave container `id`: the original name, and whether
/// it is retired (else aside). `None` for any other name, and for an aside
/// name whose short id is not `id`'s (a user's container named alike).
pub fn parse_aside(name: &str, id: &str) -> Option<(String, bool)> {
    let name = name.trim_start_matches('/');
    for (marker, retired) in [(ASIDE, false), (RETIRED, true)] {
        if let Some((original, short)) = name.rsplit_once(marker) {
            let ok = !original.is_empty()
                && short.len() == 12
                && short.bytes().all(|b| b.is_ascii_hexdigit())
                && id.starts_with(short);
            if ok {
                return Some((original.to_string(), retired));
            }
        }
    }
    None
}

/// This server's mark on what it recreates: a hash of its node name and
/// data folder, so that servers sharing an engine (and task ids from
/// different stores) never take each other's recreates for their own.
pub fn maker_id(node: &str, data_dir: &std::path::Path) -> String {
    let mut h = Sha256::new();
    h.update(node.as_bytes());
    h.update([0]);
    h.update(data_dir.as_os_str().as_encoded_bytes());
    hex::encode(&h.finalize()[..8])
}

/// Label the new container of a recreate (see the module's doc).
pub fn label_new(
    body: &mut ContainerCreateBody,
    old_id: &str,
    was_running: bool,
    maker: &str,
    task: i64,
) {
    let labels = body.labels.get_or_insert_with(HashMap::new);
    labels.retain(|k, _| !k.starts_with(LABEL_PREFIX));
    labels.insert(REPLACES.into(), old_id.into());
    labels.insert(WAS_RUNNING.into(), was_running.to_string());
    labels.insert(MAKER.into(), maker.into());
    if task > 0 {
        labels.insert(TASK.into(), task.to_string());
    }
}

/// The container that holds the original name: its id and labels.
#[derive(Debug, Clone, Default)]
pub struct Holder {
    /// Its id.
    pub id: String,
    /// Its labels.
    pub labels: HashMap<String, String>,
}

impl Holder {
    /// The task its recreate was made for, if a task asked.
    pub fn task(&self) -> Option<i64> {
        self.labels.get(TASK).and_then(|t| t.parse().ok())
    }
}

/// What recovery does with one container under an aside name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Remove it: the change was kept.
    Finish,
    /// Remove the new container (if any), give the old one its name back,
    /// and start it if it ran.
    RollBack {
        /// The new container.
        new: Option<String>,
        /// Start the old one again.
        start: bool,
    },
    /// Leave it alone, for this reason.
    Leave(&'static str),
}

/// Decide for the container `aside_id` (retired or aside), given what holds
/// its original name now, the state of the task that holder's recreate
/// was for (when it has one), and this server's [`maker_id`].
pub fn plan(
    aside_id: &str,
    retired: bool,
    holder: Option<&Holder>,
    task: Option<TaskState>,
    me: &str,
) -> Plan {
    if retired {
        return Plan::Finish;
    }
    let Some(holder) = holder else {
        return Plan::RollBack {
            new: None,
            start: false,
        };
    };
    if holder.labels.get(REPLACES).map(String::as_str) != Some(aside_id) {
        return Plan::Leave("a container no recreate of it made holds its name");
    }
    if holder.labels.get(MAKER).map(String::as_str) != Some(me) {
        return Plan::Leave("another server made its replacement; that server recovers it");
    }
    if holder.task().is_some() && task == Some(TaskState::Completed) {
        return Plan::Finish;
    }
    Plan::RollBack {
        new: Some(holder.id.clone()),
        start: holder.labels.get(WAS_RUNNING).map(String::as_str) == Some("true"),
    }
}

/// Remove, whatever its state, keeping its volumes; one already gone is fine.
fn removal() -> RemoveContainerOptions {
    RemoveContainerOptions {
        v: false,
        force: true,
        link: false,
    }
}

impl DockerRuntime {
    /// Finish or roll back every recreate a crash interrupted (see the
    /// module's doc), reading task states from `tasks`. Run at start, before
    /// the queue and the API. Returns how many containers it acted on.
    pub async fn recover_recreates(&self, tasks: &dyn TaskStore) -> RtResult<usize> {
        let filters = HashMap::from([(
            "name".to_string(),
            vec![ASIDE.to_string(), RETIRED.to_string()],
        )]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let listed = self
            .api
            .list_containers(Some(options))
            .await
            .map_err(engine)?;
        let mut acted = 0;
        for c in listed {
            let (Some(id), Some(name)) = (c.id, c.names.and_then(|n| n.into_iter().next())) else {
                continue;
            };
            let Some((original, retired)) = parse_aside(&name, &id) else {
                continue;
            };
            let name = name.trim_start_matches('/');
            match self.recover_one(tasks, &id, name, &original, retired).await {
                Ok(true) => acted += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    container = %name,
                    "recovering an interrupted recreate: {}",
                    e.message()
                ),
            }
        }
        Ok(acted)
    }

    /// Recover the container `id` named `name` (aside or retired from
    /// `original`). Returns whether it acted.
    async fn recover_one(
        &self,
        tasks: &dyn TaskStore,
        id: &str,
        name: &str,
        original: &str,
        retired: bool,
    ) -> RtResult<bool> {
        let holder = match self.api.inspect_container(original, None).await {
            Ok(i) => Some(Holder {
                id: i.id.unwrap_or_default(),
                labels: i.config.and_then(|c| c.labels).unwrap_or_default(),
            }),
            Err(e) => match engine(e) {
                Error::NotFound(_) => None,
                other => return Err(other),
            },
        };
        let task = match holder.as_ref().and_then(Holder::task) {
            Some(t) => tasks
                .get(t)
                .await
                .map_err(|e| Error::Other(format!("reading task {t}: {e:#}")))?
                .map(|t| t.state),
            None => None,
        };
        match plan(id, retired, holder.as_ref(), task, &self.maker) {
            Plan::Leave(why) => {
                tracing::warn!(container = %name, "left aside: {why}");
                Ok(false)
            }
            Plan::Finish => {
                let sources = self.bind_sources(id).await.unwrap_or_default();
                let kept = match &holder {
                    Some(h) => self.bind_sources(&h.id).await.unwrap_or_default(),
                    None => Vec::new(),
                };
                self.api
                    .remove_container(id, Some(removal()))
                    .await
                    .map_err(engine)?;
                self.release_unshared(&sources, &kept);
                tracing::info!(container = %name, name = %original, "interrupted recreate finished: the replaced container was removed");
                Ok(true)
            }
            Plan::RollBack { new, start } => {
                if let Some(new) = &new {
                    let sources = self.bind_sources(new).await.unwrap_or_default();
                    let kept = self.bind_sources(id).await.unwrap_or_default();
                    match self.api.remove_container(new, Some(removal())).await {
                        Ok(()) => {}
                        Err(e) => match engine(e) {
                            Error::NotFound(_) => {}
                            other => return Err(other),
                        },
                    }
                    self.release_unshared(&sources, &kept);
                    tracing::info!(container = %original, new = %new, "interrupted recreate: removed the new container");
                }
                let rename = RenameContainerOptions {
                    name: original.to_string(),
                };
                self.api
                    .rename_container(id, rename)
                    .await
                    .map_err(engine)?;
                tracing::info!(container = %original, was = %name, "interrupted recreate: the replaced container has its name back");
                if start {
                    let sources = self.bind_sources(id).await?;
                    self.pins.refresh(sources.iter().map(String::as_str))?;
                    self.api.start_container(id, None).await.map_err(engine)?;
                    tracing::info!(container = %original, "interrupted recreate: the replaced container runs again");
                }
                Ok(true)
            }
        }
    }

    /// Release the pins among `removed` (a removed container's bind
    /// sources) that `kept` (the other container's) does not use.
    fn release_unshared(&self, removed: &[String], kept: &[String]) {
        let in_use = self.pins.tokens(kept.iter().map(String::as_str));
        let unshared: Vec<&str> = removed
            .iter()
            .map(String::as_str)
            .filter(|p| self.pins.tokens([*p]).iter().all(|t| !in_use.contains(t)))
            .collect();
        self.pins.release(unshared);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(replaces: &str, maker: &str, task: Option<i64>, ran: bool) -> Holder {
        let mut labels = HashMap::from([
            (REPLACES.to_string(), replaces.to_string()),
            (MAKER.to_string(), maker.to_string()),
            (WAS_RUNNING.to_string(), ran.to_string()),
        ]);
        if let Some(t) = task {
            labels.insert(TASK.into(), t.to_string());
        }
        Holder {
            id: "new1".into(),
            labels,
        }
    }

    #[test]
    fn aside_names_are_recognised_only_with_their_own_short_id() {
        let id = "0123456789abcdef0123";
        assert_eq!(
            parse_aside(&aside_name("web", id), id),
            Some(("web".into(), false))
        );
        assert_eq!(
            parse_aside(&format!("/{}", retired_name("my-replaced-app", id)), id),
            Some(("my-replaced-app".into(), true))
        );
        assert_eq!(parse_aside(&aside_name("web", id), "ffff"), None);
        assert_eq!(parse_aside("web-replaced-xyz", id), None);
        assert_eq!(parse_aside("-replaced-0123456789ab", id), None);
        assert_eq!(parse_aside("web", id), None);
    }

    #[test]
    fn the_plan_follows_the_engine_and_the_task() {
        let me = "me";
        let rb = |new: Option<&str>, start| Plan::RollBack {
            new: new.map(str::to_string),
            start,
        };
        assert_eq!(plan("old", true, None, None, me), Plan::Finish);
        assert_eq!(plan("old", false, None, None, me), rb(None, false));
        // An interrupted (or failed) task, or a settings route: rolled back.
        let h = holder("old", me, Some(7), true);
        assert_eq!(
            plan("old", false, Some(&h), Some(TaskState::Error), me),
            rb(Some("new1"), true)
        );
        assert_eq!(
            plan("old", false, Some(&h), Some(TaskState::Running), me),
            rb(Some("new1"), true)
        );
        assert_eq!(
            plan("old", false, Some(&h), None, me),
            rb(Some("new1"), true)
        );
        let h = holder("old", me, None, false);
        assert_eq!(
            plan("old", false, Some(&h), Some(TaskState::Completed), me),
            rb(Some("new1"), false),
            "no task: nothing says the change was kept"
        );
        // A completed task: finished.
        let h = holder("old", me, Some(7), true);
        assert_eq!(
            plan("old", false, Some(&h), Some(TaskState::Completed), me),
            Plan::Finish
        );
        // Not ours, or not a replacement of this one: left alone.
        let h = holder("old", "other", Some(7), true);
        assert!(matches!(
            plan("old", false, Some(&h), Some(TaskState::Error), me),
            Plan::Leave(_)
        ));
        let h = holder("another", me, Some(7), true);
        assert!(matches!(
            plan("old", false, Some(&h), Some(TaskState::Completed), me),
            Plan::Leave(_)
        ));
        let stranger = Holder::default();
        assert!(matches!(
            plan("old", false, Some(&stranger), None, me),
            Plan::Leave(_)
        ));
    }

    #[test]
    fn a_recreate_labels_replace_earlier_ones() {
        let mut body = ContainerCreateBody {
            labels: Some(HashMap::from([
                ("owner".to_string(), "bob".to_string()),
                (TASK.to_string(), "3".to_string()),
            ])),
            ..Default::default()
        };
        label_new(&mut body, "old", true, "me", 0);
        let labels = body.labels.unwrap();
        assert_eq!(labels["owner"], "bob");
        assert_eq!(labels[REPLACES], "old");
        assert_eq!(labels[WAS_RUNNING], "true");
        assert!(!labels.contains_key(TASK), "no task asked this time");
        assert_ne!(
            maker_id("n", std::path::Path::new("/a")),
            maker_id("n", std::path::Path::new("/b"))
        );
    }
}
