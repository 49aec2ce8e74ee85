//! `stevedore user add|passwd`: write a user's argon2id hash into
//! `[users.NAME]` of the configuration file, where the server reads users
//! (restart the server to apply). The rest of the file, comments included,
//! is kept as it was.

use std::io::{BufRead, IsTerminal};
use std::path::Path;

use anyhow::{bail, Context as _};
use toml_edit::{value, DocumentMut, Item, Table};

/// A user name the server accepts ([`crate::user_name::check_user_name`]).
fn check_name(name: &str) -> anyhow::Result<()> {
    crate::user_name::check_user_name(name).map_err(|why| anyhow::anyhow!("NAME: {why}"))
}

/// The new password: prompted twice on a terminal, else stdin's first line.
pub fn read_password(name: &str) -> anyhow::Result<String> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("New password for {name}: "))?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            bail!("the passwords differ");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    if password.is_empty() {
        bail!("password: must not be empty");
    }
    Ok(password)
}

/// `user add NAME [--admin]` (`add`), or `user passwd NAME`: set the
/// user's hash in `config`, creating the file if needed. `add` refuses an
/// existing user; `passwd` a missing one.
pub fn set(
    config: &Path,
    name: &str,
    admin: Option<bool>,
    add: bool,
    password: &str,
) -> anyhow::Result<()> {
    check_name(name)?;
    let text = match std::fs::read_to_string(config) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && add => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", config.display())),
    };
    let mut doc: DocumentMut = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", config.display()))?;
    let users = doc
        .entry("users")
        .or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        })
        .as_table_mut()
        .context("users: must be a table")?;
    match (users.contains_key(name), add) {
        (true, true) => bail!("user {name} exists: use `stevedore user passwd {name}`"),
        (false, false) => bail!(
            "no user {name} in {}: use `stevedore user add {name}`",
            config.display()
        ),
        _ => {}
    }
    let user = users
        .entry(name)
        .or_insert_with(|| Item::Table(Table::new()))
        .as_table_mut()
        .with_context(|| format!("users.{name}: must be a table"))?;
    user["password_hash"] = value(crate::auth::password::hash(password)?);
    if let Some(admin) = admin {
        user["admin"] = value(admin);
    }
    write(config, &doc.to_string())
}

/// Write through a temporary file and a rename, readable by the owner only
/// (the file holds password hashes): the file is created 0600, before a
/// byte is written, so it is never readable by others.
fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    crate::auth::write_private(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_then_passwd_keeps_the_rest_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stevedore.toml");
        std::fs::write(&file, "# mine\n[server]\nlisten = \"127.0.0.1:1\"\n").unwrap();
        set(&file, "bob", Some(true), true, "pw1").unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("# mine\n[server]"), "{text}");
        let doc: toml::Value = toml::from_str(&text).unwrap();
        let hash = doc["users"]["bob"]["password_hash"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(crate::auth::password::verify("pw1", &hash));
        assert_eq!(doc["users"]["bob"]["admin"].as_bool(), Some(true));

        assert!(set(&file, "bob", None, true, "x")
            .unwrap_err()
            .to_string()
            .contains("exists"));
        set(&file, "bob", None, false, "pw2").unwrap();
        let doc: toml::Value = toml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let hash = doc["users"]["bob"]["password_hash"].as_str().unwrap();
        assert!(crate::auth::password::verify("pw2", hash));
        assert_eq!(doc["users"]["bob"]["admin"].as_bool(), Some(true), "kept");
        assert!(set(&file, "eve", None, false, "x")
            .unwrap_err()
            .to_string()
            .contains("no user eve"));
        assert!(set(&file, "a b", None, true, "x").is_err());
        for name in [".", "..", "a/b", "", "a\0b"] {
            let e = set(&file, name, None, true, "x").unwrap_err().to_string();
            assert!(e.contains("user name"), "{name:?}: {e}");
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
