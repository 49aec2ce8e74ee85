//! A logged-in HTTP session with the server's API.

use anyhow::{bail, Context as _};
use futures::StreamExt;
use serde_json::Value;

use crate::queue::Task;

/// Where the server is and who logs in.
#[derive(Debug, Clone)]
pub struct Login {
    /// The server's root, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

/// A session with the API (`{url}/api/v1`), its cookie kept.
pub struct Client {
    http: reqwest::Client,
    api: String,
}

impl Client {
    /// Log in; fails with the server's message (`bad credentials`, ...).
    pub async fn login(login: &Login) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            // The server closes a connection idle for its header read
            // timeout (10 s); reusing one it is closing races that close.
            .pool_idle_timeout(std::time::Duration::from_secs(5))
            .build()
            .context("HTTP client")?;
        let api = format!("{}/api/v1", login.url.trim_end_matches('/'));
        let client = Client { http, api };
        let body = serde_json::json!({"username": login.user, "password": login.password});
        client
            .call(reqwest::Method::POST, "login", Some(body.to_string()))
            .await
            .with_context(|| format!("logging in to {} as {}", login.url, login.user))?;
        Ok(client)
    }

    /// One call; the JSON answer, or an error carrying the server's message.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<Value> {
        let mut req = self.http.request(method, format!("{}/{path}", self.api));
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.api))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let message = value["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string());
            bail!("{} ({})", message, status.as_u16());
        }
        Ok(value)
    }

    /// `POST background/{category}`.
    pub async fn submit(&self, category: &str, params: &str) -> anyhow::Result<Task> {
        let task = self
            .call(
                reqwest::Method::POST,
                &format!("background/{category}"),
                Some(params.to_string()),
            )
            .await?;
        Ok(serde_json::from_value(task)?)
    }

    /// `GET background/` (optionally of one category), newest first.
    pub async fn list(&self, category: Option<&str>) -> anyhow::Result<Vec<Task>> {
        let path = match category {
            Some(c) => format!("background/?category={c}"),
            None => "background/".to_string(),
        };
        let tasks = self.call(reqwest::Method::GET, &path, None).await?;
        Ok(serde_json::from_value(tasks)?)
    }

    /// One task by id, if the caller may see it.
    pub async fn task(&self, id: i64) -> anyhow::Result<Option<Task>> {
        Ok(self.list(None).await?.into_iter().find(|t| t.id == id))
    }

    /// `DELETE background/` or `background/{target}`: the ids deleted.
    pub async fn delete(&self, target: Option<&str>) -> anyhow::Result<Vec<i64>> {
        let path = format!("background/{}", target.unwrap_or(""));
        let ids = self.call(reqwest::Method::DELETE, &path, None).await?;
        Ok(serde_json::from_value(ids)?)
    }

    /// `GET background/{id}/log`: the task's log lines so far.
    pub async fn log(&self, id: i64) -> anyhow::Result<Vec<LogEntry>> {
        let answer = self
            .call(reqwest::Method::GET, &format!("background/{id}/log"), None)
            .await?;
        serde_json::from_value(answer["lines"].clone()).context("a task log")
    }

    /// The task event stream (`GET background/events?logs=1`: changes and
    /// log lines), opened now: every change from here on arrives, so a task
    /// looked up after this call cannot end unseen.
    pub async fn events(&self) -> anyhow::Result<Events> {
        let resp = self
            .http
            .get(format!("{}/background/events?logs=1", self.api))
            .send()
            .await
            .context("opening the event stream")?;
        if !resp.status().is_success() {
            bail!("the event stream answered {}", resp.status());
        }
        Ok(Events {
            body: Box::pin(resp.bytes_stream()),
            buffer: String::new(),
        })
    }
}

type Bytes = futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>;

/// Server-Sent Events of tasks.
pub struct Events {
    body: Bytes,
    buffer: String,
}

/// One line of a task's log, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct LogEntry {
    /// The task (absent in `GET background/{id}/log`, whose answer names it).
    #[serde(default)]
    pub id: i64,
    /// RFC 3339 time.
    pub ts: String,
    /// `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// The text.
    pub message: String,
}

/// What the event stream brings.
#[derive(Debug)]
pub enum Update {
    /// A task changed.
    Task(Task),
    /// A task logged a line.
    Log(LogEntry),
}

impl Events {
    /// The next `task` or `log` event; `None` when the stream ends.
    pub async fn next(&mut self) -> anyhow::Result<Option<Update>> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(update) = update_of(&block)? {
                    return Ok(Some(update));
                }
            }
            match self.body.next().await {
                Some(chunk) => {
                    let chunk = chunk.context("reading the event stream")?;
                    self.buffer
                        .push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
                }
                None => return Ok(None),
            }
        }
    }
}

/// What one event block brings, if it is a `task` or `log` event.
fn update_of(block: &str) -> anyhow::Result<Option<Update>> {
    let mut event = "message";
    let mut data = String::new();
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            event = v.trim();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    if data.is_empty() {
        return Ok(None);
    }
    Ok(match event {
        "task" => Some(Update::Task(
            serde_json::from_str(&data).context("a task event")?,
        )),
        "log" => Some(Update::Log(
            serde_json::from_str(&data).context("a log event")?,
        )),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_task_and_log_events_only() {
        let task = r#"{"id":3,"category":"noop","state":"running","detail_state":"","progress":5,"deletable":false,"user":"a","name":"","params":{},"init":1}"#;
        let Some(Update::Task(t)) =
            update_of(&format!("event: task\nid: 3\ndata: {task}\n\n")).unwrap()
        else {
            panic!("a task event");
        };
        assert_eq!((t.id, t.progress), (3, 5));
        let line = r#"{"id":3,"ts":"2026-12-07T17:03:52.123Z","level":"info","message":"hi"}"#;
        let Some(Update::Log(l)) =
            update_of(&format!("event: log\nid: 3\ndata: {line}\n\n")).unwrap()
        else {
            panic!("a log event");
        };
        assert_eq!(
            (l.id, l.level.as_str(), l.message.as_str()),
            (3, "info", "hi")
        );
        assert!(update_of("event: lagged\ndata: {\"missed\":2}\n\n")
            .unwrap()
            .is_none());
        assert!(update_of(": keep-alive\n\n").unwrap().is_none());
    }
}
