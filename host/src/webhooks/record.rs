//! Task events become webhook deliveries: [`run`] follows the queue's
//! events and records, for each task of this node that starts, completes
//! or fails, one delivery per webhook that wants it, right after the
//! change is stored (the event is announced only once it is).
//!
//! The event ids are the task's id and the event (`task-42-completed`), so
//! the same change recorded twice (a repeated announcement) is one
//! delivery per webhook. Events queue up while a write is under way and
//! are recorded together in the next one.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::{Event, Webhooks, TASK_COMPLETED, TASK_ERROR, TASK_STARTED};
use crate::queue::{Queue, Task, TaskEvent, TaskState};

/// Most events recorded in one write.
const BATCH: usize = 512;

/// The webhook event a task change is, if any; `started` holds the tasks
/// whose start was recorded (a running task is announced at each progress).
fn event_of(task: &Task, started: &mut HashSet<i64>) -> Option<&'static str> {
    match task.state {
        TaskState::Running => started.insert(task.id).then_some(TASK_STARTED),
        TaskState::Completed => {
            started.remove(&task.id);
            Some(TASK_COMPLETED)
        }
        TaskState::Error => {
            started.remove(&task.id);
            Some(TASK_ERROR)
        }
        TaskState::Waiting => None,
    }
}

/// The event of `name` about `task` (its params masked, as `GET
/// background/{id}` shows it).
pub fn task_event(task: &Task, name: &str, time: i64) -> Event {
    let mut payload = Map::new();
    payload.insert(
        "task".into(),
        serde_json::to_value(task).unwrap_or(Value::Null),
    );
    Event {
        id: format!("task-{}-{}", task.id, name.trim_start_matches("task.")),
        name: name.to_string(),
        owner: task.user.clone(),
        category: Some(task.category.clone()),
        time,
        payload,
    }
}

/// Record the deliveries of the queue's task events until `stop`.
pub async fn run(queue: Arc<Queue>, hub: Arc<Webhooks>, stop: CancellationToken) {
    if queue.webhooks().is_none() {
        return;
    }
    let mut events = queue.subscribe();
    let me = queue.node().map(str::to_string);
    let mut started = HashSet::new();
    loop {
        let first = tokio::select! {
            e = events.recv() => e,
            _ = stop.cancelled() => break,
        };
        let mut batch = Vec::new();
        let mut take = |e: Result<TaskEvent, RecvError>, batch: &mut Vec<Event>| match e {
            Ok(ev) => {
                // Another node's task is recorded by that node.
                if ev.deleted || ev.task.node != me {
                    return true;
                }
                if let Some(name) = event_of(&ev.task, &mut started) {
                    batch.push(task_event(&ev.task, name, crate::store::task_log::now_ms()));
                }
                true
            }
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "webhooks fell behind the task events; some were not recorded"
                );
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

#[cfg(test)]
mod tests {
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
    fn a_start_is_one_event_however_often_progress_is_announced() {
        let mut started = HashSet::new();
        assert_eq!(event_of(&task(1, TaskState::Waiting), &mut started), None);
        assert_eq!(
            event_of(&task(1, TaskState::Running), &mut started),
            Some(TASK_STARTED)
        );
        assert_eq!(event_of(&task(1, TaskState::Running), &mut started), None);
        assert_eq!(
            event_of(&task(1, TaskState::Completed), &mut started),
            Some(TASK_COMPLETED)
        );
        assert!(started.is_empty());
        assert_eq!(
            event_of(&task(2, TaskState::Error), &mut started),
            Some(TASK_ERROR)
        );
    }

    #[test]
    fn a_task_event_carries_the_task_as_shown() {
        let e = task_event(&task(7, TaskState::Completed), TASK_COMPLETED, 5);
        assert_eq!(e.id, "task-7-completed");
        assert_eq!(e.category.as_deref(), Some("noop"));
        let body: Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(body["task"]["id"], 7);
        assert_eq!(body["task"]["params"]["password"], "******");
    }
}
