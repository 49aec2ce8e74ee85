//! Following a task to its end: a progress bar on a terminal (`indicatif`),
//! one line per change otherwise (logs, CI); the task's log lines printed
//! as they come (above the bar, which stays at the bottom).

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};

use super::client::{Client, Events, LogEntry, Update};
use crate::queue::{Task, TaskState};

/// Shows a task's progress.
enum Display {
    /// A bar on the terminal.
    Bar(ProgressBar),
    /// A line on stderr per change, for output that is not a terminal.
    Lines {
        last: Option<(TaskState, i32, String)>,
    },
}

impl Display {
    fn new(task: &Task) -> Display {
        if !std::io::stderr().is_terminal() {
            return Display::Lines { last: None };
        }
        let bar = ProgressBar::new(100);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {prefix} [{bar:30.cyan/blue}] {pos:>3}% {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("#{} {}", task.id, task.category));
        bar.enable_steady_tick(Duration::from_millis(120));
        Display::Bar(bar)
    }

    fn show(&mut self, task: &Task) {
        let detail = if task.detail_state.is_empty() {
            task.state.as_str().to_string()
        } else {
            task.detail_state.clone()
        };
        match self {
            Display::Bar(bar) => {
                if task.state == TaskState::Completed {
                    bar.set_position(100);
                } else if task.progress >= 0 {
                    bar.set_position(task.progress as u64);
                }
                bar.set_message(detail);
            }
            Display::Lines { last } => {
                let now = (task.state, task.progress, detail);
                if last.as_ref() != Some(&now) {
                    let percent = if now.1 >= 0 {
                        format!("{:>3}%", now.1)
                    } else {
                        "   ?".to_string()
                    };
                    eprintln!(
                        "task {} {:<9} {percent}  {}",
                        task.id,
                        now.0.as_str(),
                        now.2
                    );
                    *last = Some(now);
                }
            }
        }
    }

    /// Print one of the task's log lines.
    fn line(&self, l: &LogEntry) {
        let text = format!("{} {:<5} {}", l.ts, l.level, l.message);
        match self {
            Display::Bar(bar) => bar.println(text),
            Display::Lines { .. } => eprintln!("{text}"),
        }
    }

    fn finish(self) {
        if let Display::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// Follow task `id` until it ends. `events` must have been opened before
/// the task was looked up or submitted, so no change is missed. Prints the
/// end on stdout; a task that ends in error is an error carrying its message.
pub async fn follow(client: &Client, mut events: Events, id: i64) -> anyhow::Result<Task> {
    let mut task = client
        .task(id)
        .await?
        .ok_or_else(|| anyhow!("no task {id} (or it is not yours)"))?;
    let mut display = Display::new(&task);
    // The lines so far; the stream, opened before, repeats some of them.
    let earlier = client.log(id).await?;
    for l in &earlier {
        display.line(l);
    }
    let seen = |l: &LogEntry| {
        earlier
            .iter()
            .any(|e| (&e.ts, &e.level, &e.message) == (&l.ts, &l.level, &l.message))
    };
    display.show(&task);
    while !task.state.is_finished() {
        match events.next().await? {
            Some(Update::Task(t)) if t.id == id => {
                task = t;
                display.show(&task);
            }
            Some(Update::Log(l)) if l.id == id && !seen(&l) => display.line(&l),
            Some(_) => {}
            None => bail!("the server closed the event stream before task {id} ended"),
        }
    }
    display.finish();
    let detail = if task.detail_state.is_empty() {
        String::new()
    } else {
        format!(": {}", task.detail_state)
    };
    if task.state == TaskState::Error {
        bail!(
            "task {} ({}) ended in error{detail}",
            task.id,
            task.category
        );
    }
    println!("task {} ({}) completed{detail}", task.id, task.category);
    Ok(task)
}
