//! `stevedore task submit|list|watch|delete`.

use super::client::{Client, Login};
use super::watch::follow;
use crate::queue::Task;

/// `task submit CATEGORY JSON [--wait]`: prints the new task (JSON), or with
/// `wait` follows it to its end.
pub async fn submit(login: &Login, category: &str, params: &str, wait: bool) -> anyhow::Result<()> {
    serde_json::from_str::<serde_json::Value>(params)
        .map_err(|e| anyhow::anyhow!("JSON: not valid JSON: {e}"))?;
    let client = Client::login(login).await?;
    if !wait {
        let task = client.submit(category, params).await?;
        println!("{}", serde_json::to_string_pretty(&task)?);
        return Ok(());
    }
    // Subscribe first, so the task's end cannot pass unseen.
    let events = client.events().await?;
    let task = client.submit(category, params).await?;
    follow(&client, events, task.id).await.map(|_| ())
}

/// `task watch ID`.
pub async fn watch(login: &Login, id: i64) -> anyhow::Result<()> {
    let client = Client::login(login).await?;
    let events = client.events().await?;
    follow(&client, events, id).await.map(|_| ())
}

/// `task list [--category C]`: a table, newest first.
pub async fn list(login: &Login, category: Option<&str>) -> anyhow::Result<()> {
    let client = Client::login(login).await?;
    print!("{}", table(&client.list(category).await?));
    Ok(())
}

/// `task delete [ID|CATEGORY]`: prints the ids deleted.
pub async fn delete(login: &Login, target: Option<&str>) -> anyhow::Result<()> {
    let client = Client::login(login).await?;
    let ids = client.delete(target).await?;
    if ids.is_empty() {
        println!("nothing deleted");
    } else {
        let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
        println!("deleted {}", ids.join(" "));
    }
    Ok(())
}

/// The task list as a table with a header line.
pub fn table(tasks: &[Task]) -> String {
    let mut out = format!(
        "{:>5}  {:<9}  {:>4}  {:<18}  {:<24}  {}\n",
        "ID", "STATE", "PCT", "CATEGORY", "NAME", "DETAIL"
    );
    for t in tasks {
        let pct = if t.progress >= 0 {
            format!("{}%", t.progress)
        } else {
            "?".into()
        };
        out.push_str(&format!(
            "{:>5}  {:<9}  {:>4}  {:<18}  {:<24}  {}\n",
            t.id,
            t.state.as_str(),
            pct,
            t.category,
            t.name,
            t.detail_state
        ));
    }
    out
}
