//! `stevedore serve`: load configuration, open the store, load plugins, serve. OWNER: api helper.

/// Serve until interrupted.
pub async fn run() -> anyhow::Result<()> {
    anyhow::bail!("serve is not wired yet")
}
