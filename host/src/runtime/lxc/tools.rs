//! Running LXC's command-line tools (`lxc-start`, `lxc-stop`, ...) and the
//! few host tools the network needs (`ip`, `nft`, `dnsmasq`, `iptables`).
//!
//! Every child is killed when its future is dropped (a cancelled task), and
//! a tool that is not installed is a clear error naming it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::runtime::Error;

/// Why a tool failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Not found on `PATH`.
    #[error("`{tool}` is not installed on this server ({hint})")]
    Missing {
        /// The program.
        tool: String,
        /// How to get it.
        hint: &'static str,
    },
    /// Could not be run.
    #[error("running `{tool}`: {source}")]
    Spawn {
        /// The program.
        tool: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line (no secrets are ever passed to these tools).
        command: String,
        /// Exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr (trimmed).
        stderr: String,
    },
}

impl From<ToolError> for Error {
    fn from(e: ToolError) -> Error {
        Error::Runtime(e.to_string())
    }
}

/// The Debian package that provides `tool`.
fn hint(tool: &str) -> &'static str {
    match tool {
        t if t.starts_with("lxc-") => "Debian: apt-get install lxc",
        "nft" => "Debian: apt-get install nftables",
        "dnsmasq" => "Debian: apt-get install dnsmasq-base",
        "iptables" => "Debian: apt-get install iptables",
        "ip" => "Debian: apt-get install iproute2",
        "tar" => "Debian: apt-get install tar",
        _ => "install it",
    }
}

/// `tool`'s path on `PATH`, if any.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// A command for `tool`, or the error naming it when it is missing.
pub fn command(tool: &str) -> Result<tokio::process::Command, ToolError> {
    let path = which(tool).ok_or_else(|| ToolError::Missing {
        tool: tool.to_string(),
        hint: hint(tool),
    })?;
    let mut cmd = tokio::process::Command::new(path);
    cmd.kill_on_drop(true)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Ok(cmd)
}

/// Run `tool args...`; its stdout on success.
pub async fn run<I, S>(tool: &str, args: I) -> Result<String, ToolError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let mut cmd = command(tool)?;
    cmd.args(&args);
    let out = cmd.output().await.map_err(|e| ToolError::Spawn {
        tool: tool.to_string(),
        source: e,
    })?;
    if !out.status.success() {
        let shown: Vec<String> = std::iter::once(tool.to_string())
            .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect();
        return Err(ToolError::Failed {
            command: shown.join(" "),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `lxc-<verb> -P <path> -n <name> extra...`.
pub async fn lxc(verb: &str, path: &Path, name: &str, extra: &[&str]) -> Result<String, ToolError> {
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("-P"),
        path.as_os_str(),
        OsStr::new("-n"),
        OsStr::new(name),
    ];
    args.extend(extra.iter().map(OsStr::new));
    run(&format!("lxc-{verb}"), args).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_tool_is_named() {
        let e = run("lxc-no-such-tool", ["x"]).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "`lxc-no-such-tool` is not installed on this server (Debian: apt-get install lxc)"
        );
        let e = run("sh", ["-c", "echo oops >&2; exit 3"])
            .await
            .unwrap_err();
        assert!(e.to_string().ends_with(": oops"), "{e}");
    }
}
