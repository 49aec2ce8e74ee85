//! The parts every configuration section is built from: an environment
//! variable bound to the file key it overrides ([`EnvVar`]), and the value
//! parsers the sections share.
//!
//! Each section lists its variables once, beside its struct; the
//! configuration applies them and the README's table is tested against them.

use std::net::SocketAddr;
use std::str::FromStr;

/// An environment variable that overrides one key of a section `S`.
pub struct EnvVar<S> {
    /// The variable, e.g. `STEVEDORE_WORKERS`.
    pub name: &'static str,
    /// The file key it overrides, as error messages name it
    /// (`queue.workers`); empty for a setting the file cannot hold.
    pub key: &'static str,
    /// Parse the value into the section; the error says what the value
    /// should have been.
    pub set: fn(&mut S, &str) -> Result<(), String>,
}

/// A table of [`EnvVar`]s, one a line:
/// `"NAME", "key" => |section, value| assignment;`, where the assignment
/// may use `?` on a `Result<_, String>`.
macro_rules! env_vars {
    ($($name:literal, $key:literal => |$s:ident, $v:ident| $set:expr;)*) => {
        &[$($crate::setting::EnvVar {
            name: $name,
            key: $key,
            set: |$s, $v| {
                $set;
                Ok(())
            },
        }),*]
    };
}
pub(crate) use env_vars;

/// Apply each of `vars` that `env` sets to a non-empty value to `section`;
/// an error names the variable.
pub fn apply_env<S>(
    vars: &[EnvVar<S>],
    section: &mut S,
    env: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    for var in vars {
        if let Some(value) = env(var.name).filter(|v| !v.is_empty()) {
            (var.set)(section, &value).map_err(|why| anyhow::anyhow!("{}: {why}", var.name))?;
        }
    }
    Ok(())
}

/// A number of type `T`, or "`text` is not `what`".
pub fn parse_number<T: FromStr>(text: &str, what: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("`{text}` is not {what}"))
}

/// `127.0.0.1:8080`, `[::1]:8080`, or a host name with a port (`localhost:8080`).
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    text.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| format!("listen: `{text}` is not an address like 127.0.0.1:8080"))
}

/// Deserialize a listen address ([`parse_listen`]) from a TOML string.
pub fn listen_from_toml<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    use serde::Deserialize;
    let text = String::deserialize(d)?;
    parse_listen(&text).map_err(serde::de::Error::custom)
}

/// [`listen_from_toml`] for an optional key.
pub fn optional_listen_from_toml<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    listen_from_toml(d).map(Some)
}
