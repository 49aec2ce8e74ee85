//! For tests: a fresh database on the test PostgreSQL that `cargo xtask
//! test` (or `cargo xtask services start`) runs, named by
//! `STEVEDORE_TEST_DATABASE_URL`. Each test makes its own, so tests run in
//! parallel without seeing each other's tasks or notifications.

use anyhow::{bail, Context};
use tokio_postgres::NoTls;

/// The variable that names the test PostgreSQL.
pub const TEST_DATABASE_URL: &str = "STEVEDORE_TEST_DATABASE_URL";

/// The URL of a new, empty database `<prefix>_<pid>_<random>` on the test
/// PostgreSQL. Fails (never skips) when `STEVEDORE_TEST_DATABASE_URL` is unset.
pub async fn fresh_database(prefix: &str) -> anyhow::Result<String> {
    let Some(base) = std::env::var(TEST_DATABASE_URL)
        .ok()
        .filter(|u| !u.is_empty())
    else {
        bail!(
            "{TEST_DATABASE_URL} is not set: run the tests with `cargo xtask test`, or \
             `cargo xtask services start && eval \"$(cargo xtask services env)\"` first"
        );
    };
    let (client, connection) = tokio_postgres::connect(&base, NoTls)
        .await
        .with_context(|| format!("connecting to the test PostgreSQL at {base}"))?;
    let driver = tokio::spawn(connection);
    let name = format!(
        "{}_{}_{:08x}",
        prefix.to_ascii_lowercase(),
        std::process::id(),
        rand::random::<u32>()
    );
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .with_context(|| format!("creating database {name}"))?;
    drop(client);
    let _ = driver.await;
    let Some((server, _db)) = base.rsplit_once('/') else {
        bail!("{TEST_DATABASE_URL}: expected postgres://.../DATABASE, got {base}");
    };
    Ok(format!("{server}/{name}"))
}
