//! `stevedore plugin check|test`, for plugin authors.

use std::path::Path;

/// `stevedore plugin check FILE`.
pub async fn check(_file: &Path) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}

/// `stevedore plugin test FILE --params JSON [--script FILE]`.
pub async fn test(_file: &Path, _params: &str, _script: Option<&Path>) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
