//! What an application is asked to do: start, stop, restart or kill its
//! containers in dependency order, or be removed.

use std::str::FromStr;

use stevedore_contract::labels::{COMPOSE_PROJECT, COMPOSE_SERVICE};

use super::{containers_of, AppsError, Record, APP_RUNTIME};
use crate::runtime::{
    Backends, CallContext, ContainerRef, ContainerSummary, DeleteContainer, Label, RtResult,
    StopContainer, STOP_TIMEOUT_SECS,
};

/// What `PUT apps/{name}/{action}` asks of an application's containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start each, in dependency order.
    Start,
    /// Stop each, in reverse dependency order.
    Stop,
    /// Stop each (reverse order), then start each (dependency order).
    Restart,
    /// Stop each with no grace period (a force stop), in reverse order.
    Kill,
}

impl FromStr for Action {
    type Err = AppsError;

    fn from_str(action: &str) -> Result<Action, AppsError> {
        match action {
            "start" => Ok(Action::Start),
            "stop" => Ok(Action::Stop),
            "restart" => Ok(Action::Restart),
            "kill" => Ok(Action::Kill),
            other => Err(AppsError::UnknownAction {
                action: other.to_string(),
            }),
        }
    }
}

/// The container `c` of an application, as the runtime calls name it.
fn container_ref(c: &ContainerSummary) -> ContainerRef {
    ContainerRef::new(APP_RUNTIME, c.id.clone())
}

/// The service a container runs (its Compose label), else its name.
fn service_of(c: &ContainerSummary) -> String {
    c.labels
        .iter()
        .find(|(k, _)| k == COMPOSE_SERVICE)
        .map_or_else(|| c.name.clone(), |(_, v)| v.clone())
}

/// Do `action` to the application's containers; what was acted on, as the
/// recorded answers have it: the services started (`["web"]`), or the
/// containers stopped, restarted or killed (`["joomla_web_1"]`).
pub async fn act(
    rt: &Backends,
    cx: &CallContext,
    record: &Record,
    action: Action,
) -> Result<Vec<String>, AppsError> {
    let containers = containers_of(rt, cx, record).await?;
    let mut done = Vec::new();
    // Stop (all but `start`), in reverse dependency order; kill: no grace
    // period, as a force stop. A restart answers what it starts again.
    let timeout = if action == Action::Kill {
        0
    } else {
        STOP_TIMEOUT_SECS
    };
    if action != Action::Start {
        for c in containers.iter().rev() {
            let req = StopContainer::new(container_ref(c), timeout);
            rt.containers.container_stop(cx, req).await?;
            if action != Action::Restart {
                done.push(c.name.clone());
            }
        }
    }
    // Start (`start`, `restart`), in dependency order.
    if matches!(action, Action::Start | Action::Restart) {
        for c in &containers {
            rt.containers.container_start(cx, &container_ref(c)).await?;
            done.push(if action == Action::Start {
                service_of(c)
            } else {
                c.name.clone()
            });
        }
    }
    Ok(done)
}

/// Remove the application: its containers (reverse dependency order), the
/// project's networks, its volumes (named and anonymous) when
/// `remove_volumes`, then its folder. The names of the containers removed.
pub async fn remove(
    rt: &Backends,
    cx: &CallContext,
    record: &Record,
    remove_volumes: bool,
) -> Result<Vec<String>, AppsError> {
    let mut removed = Vec::new();
    for c in containers_of(rt, cx, record).await?.iter().rev() {
        let req = DeleteContainer {
            container: container_ref(c),
            remove_volumes,
        };
        rt.containers.container_delete(cx, req).await?;
        removed.push(c.name.clone());
    }
    let project = || Label::new(COMPOSE_PROJECT, record.project());
    for n in rt.networks.network_list(cx, project()).await? {
        rt.networks.network_remove(cx, n.name).await?;
    }
    if remove_volumes {
        for v in rt.volumes.volume_list(cx, project()).await? {
            rt.volumes.volume_remove(cx, v.name).await?;
        }
    }
    remove_folder(rt, cx, record.name.clone()).await?;
    Ok(removed)
}

/// Remove application `name`'s folder (its record, compose file and
/// data), leaving its containers, networks and volumes alone: the last
/// step of [`remove`], and what undoing an install's folder removes.
pub async fn remove_folder(rt: &Backends, cx: &CallContext, name: String) -> RtResult<()> {
    rt.apps.app_remove(cx, name).await
}
