//! Task starts become webhook deliveries, and task ends wake the sender:
//! [`run`] follows the queue's events.
//!
//! A task's end is no event of this loop: the store writes its deliveries
//! in the transaction that stores the end ([`crate::store::webhooks`]), so
//! an end is never lost to a crash or to this loop falling behind. Here an
//! end only wakes the sender, which then finds its deliveries (on
//! PostgreSQL every node's sender is woken by the transaction's own
//! [`crate::store::Notice::Deliveries`] too).
//!
//! A start (`task.started`) is recorded here, right after the claim is
//! stored (the start is announced only once it is), one delivery per
//! webhook that wants it. The event ids are the task's id and the event
//! (`task-42-started`), so the same start recorded twice (a repeated
//! announcement) is one delivery per webhook. Events queue up while a
//! write is under way and are recorded together in the next one. When
//! this loop falls behind the queue's event channel by more than its
//! capacity, the starts it missed are not recorded (it says so, with how
//! many events it missed, at `warn`), and the sender is woken anyway so
//! that no end's delivery waits. So is a task of this node cancelled while
//! waiting (deleted before it ran: no end is stored, its `task.error` is
//! announced only).
//!
//! What a run finds ([`Finding`]: an update the image check saw) becomes
//! deliveries here too, as soon as it is announced
//! (`image.update_available`, see [`finding_event`]). A crash between the
//! announcement and this write loses it; the next check finds it again.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use serde_json::{Map, Value};

use super::{task_event, Event, Webhooks, IMAGE_UPDATE, TASK_ERROR, TASK_STARTED};
use crate::queue::{Finding, FindingEvent, Queue, Task, TaskEvent, TaskState};

/// Most events recorded in one write.
const BATCH: usize = 512;

/// What this loop does with a task change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Record this event now.
    Record(&'static str),
    /// An end the store recorded: wake the sender.
    Wake,
    /// Nothing.
    Skip,
}

/// What a task change is to this loop; `started` holds the tasks whose
/// start was recorded (a running task is announced at each progress).
fn step_of(task: &Task, started: &mut HashSet<i64>) -> Step {
    match task.state {
        TaskState::Running => match started.insert(task.id) {
            true => Step::Record(TASK_STARTED),
            false => Step::Skip,
        },
        // Deleted while waiting: never started, no end stored.
        TaskState::Error if task.start.is_none() => Step::Record(TASK_ERROR),
        TaskState::Completed | TaskState::Error => {
            started.remove(&task.id);
            Step::Wake
        }
        TaskState::Waiting => Step::Skip,
    }
}

/// Record the starts of the queue's tasks, and wake the sender at their
/// ends, until `stop`.
pub async fn run(queue: Arc<Queue>, hub: Arc<Webhooks>, stop: CancellationToken) {
    if queue.webhooks().is_none() {
        return;
    }
    let mut events = queue.subscribe();
    // Only this node's runs' findings come here: each node records its own.
    let mut findings = queue.subscribe_findings();
    let mut findings_open = true;
    let me = queue.node().map(str::to_string);
    let mut started = HashSet::new();
    loop {
        let first = tokio::select! {
            e = events.recv() => e,
            f = findings.recv(), if findings_open => {
                match f {
                    Ok(f) => {
                        let event = finding_event(&f, crate::store::task_log::now_ms());
                        if let Some(store) = queue.webhooks() {
                            if let Err(e) = hub.publish(store, &[event]).await {
                                tracing::error!(error = %format!("{e:#}"), task = f.id, "recording a finding's webhook deliveries failed");
                            }
                        }
                    }
                    Err(RecvError::Lagged(n)) => tracing::warn!(
                        missed = n,
                        "webhooks fell behind the tasks' findings: those missed were not recorded"
                    ),
                    Err(RecvError::Closed) => findings_open = false,
                }
                continue;
            }
            _ = stop.cancelled() => break,
        };
        let mut batch = Vec::new();
        let mut wake = false;
        let mut take = |e: Result<TaskEvent, RecvError>, batch: &mut Vec<Event>| match e {
            Ok(ev) => {
                // Another node's task is recorded by that node.
                if ev.deleted || ev.task.node != me {
                    return true;
                }
                match step_of(&ev.task, &mut started) {
                    Step::Record(name) => {
                        batch.push(task_event(&ev.task, name, crate::store::task_log::now_ms()))
                    }
                    Step::Wake => wake = true,
                    Step::Skip => {}
                }
                true
            }
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "webhooks fell behind the task events: the task starts among them \
                     were not recorded (ends are recorded with the end itself)"
                );
                wake = true;
                true
            }
            Err(RecvError::Closed) => false,
        };
        if !take(first, &mut batch) {
            break;
        }
        while batch.len() < BATCH {
            match events.try_recv() {
                Ok(e) => {
                    take(Ok(e), &mut batch);
                }
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => {
                    take(Err(RecvError::Lagged(n)), &mut batch);
                }
                Err(_) => break,
            }
        }
        if wake {
            hub.wake.notify_one();
        }
        if started.len() > 100_000 {
            // Starts whose end this node never saw (deleted meanwhile).
            started.clear();
        }
        if batch.is_empty() {
            continue;
        }
        let Some(store) = queue.webhooks() else { break };
        if let Err(e) = hub.publish(store, &batch).await {
            tracing::error!(error = %format!("{e:#}"), events = batch.len(), "recording webhook deliveries failed");
        }
    }
}

/// The event a run's finding is: `image.update_available` for an update
/// the image check found, with the task, the image, the containers using
/// it and the digest the registry serves. Its id names the task, the image
/// and that digest, so the same finding recorded twice is one delivery per
/// webhook.
pub fn finding_event(f: &FindingEvent, time: i64) -> Event {
    match &f.finding {
        Finding::UpdateAvailable {
            image,
            containers,
            remote_digest,
        } => {
            let mut payload = Map::new();
            payload.insert("task_id".into(), Value::from(f.id));
            payload.insert("category".into(), Value::from(f.category.clone()));
            payload.insert("image".into(), Value::from(image.clone()));
            payload.insert("containers".into(), Value::from(containers.clone()));
            payload.insert("remote_digest".into(), Value::from(remote_digest.clone()));
            Event {
                id: format!("task-{}-update-{image}-{remote_digest}", f.id),
                name: IMAGE_UPDATE.to_string(),
                owner: f.user.clone(),
                category: Some(f.category.clone()),
                time,
                payload,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::queue::JsonText;

    fn task(id: i64, state: TaskState) -> Task {
        Task {
            id,
            category: "noop".into(),
            state,
            detail_state: String::new(),
            progress: 0,
            result: None,
            deletable: true,
            user: "alice".into(),
            name: String::new(),
            params: JsonText::new(r#"{"password":"******"}"#.into()).unwrap(),
            init: 1,
            start: None,
            end: None,
            node: None,
        }
    }

    #[test]
    fn a_start_is_one_event_however_often_progress_is_announced_and_an_end_wakes() {
        let mut started = HashSet::new();
        assert_eq!(
            step_of(&task(1, TaskState::Waiting), &mut started),
            Step::Skip
        );
        assert_eq!(
            step_of(&task(1, TaskState::Running), &mut started),
            Step::Record(TASK_STARTED)
        );
        assert_eq!(
            step_of(&task(1, TaskState::Running), &mut started),
            Step::Skip
        );
        let ended = |state| Task {
            start: Some(1),
            ..task(1, state)
        };
        assert_eq!(
            step_of(&ended(TaskState::Completed), &mut started),
            Step::Wake
        );
        assert!(started.is_empty());
        assert_eq!(step_of(&ended(TaskState::Error), &mut started), Step::Wake);
        // Cancelled while waiting: announced only, recorded here.
        assert_eq!(
            step_of(&task(2, TaskState::Error), &mut started),
            Step::Record(TASK_ERROR)
        );
    }

    #[test]
    fn an_update_found_is_an_image_update_event_of_the_tasks_owner() {
        let f = FindingEvent {
            id: 9,
            user: "alice".into(),
            category: "image_check".into(),
            finding: Finding::UpdateAvailable {
                image: "reg/app:v1".into(),
                containers: vec!["web".into()],
                remote_digest: "sha256:ab".into(),
            },
        };
        let e = finding_event(&f, 1_700_000_000_000);
        assert_eq!(e.name, IMAGE_UPDATE);
        assert_eq!(e.owner, "alice");
        assert_eq!(e.id, "task-9-update-reg/app:v1-sha256:ab");
        let body: Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(body["event"], IMAGE_UPDATE);
        assert_eq!(body["task_id"], 9);
        assert_eq!(body["image"], "reg/app:v1");
        assert_eq!(body["containers"], serde_json::json!(["web"]));
        assert_eq!(body["remote_digest"], "sha256:ab");
        let alice = super::super::Hook {
            id: 1,
            owner: "alice".into(),
            all_users: false,
            events: vec![IMAGE_UPDATE.into()],
            categories: None,
        };
        let bob = super::super::Hook {
            id: 2,
            owner: "bob".into(),
            ..alice.clone()
        };
        let d = e.deliveries([&alice, &bob]);
        assert_eq!(d.len(), 1, "the owner's webhook only");
        assert_eq!(d[0].webhook, 1);
    }

    #[test]
    fn a_task_event_carries_the_task_as_shown() {
        let e = task_event(
            &task(7, TaskState::Completed),
            super::super::TASK_COMPLETED,
            5,
        );
        assert_eq!(e.id, "task-7-completed");
        assert_eq!(e.category.as_deref(), Some("noop"));
        let body: Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(body["task"]["id"], 7);
        assert_eq!(body["task"]["params"]["password"], "******");
    }
}
