//! The test PostgreSQL 15 (Debian `postgresql-15`): its own data folder in
//! `target/services/postgres`, on loopback port [`PORT`] and a socket folder
//! in `/run/stevedore-test/postgres`, run as the `postgres` user with trust
//! authentication on loopback only. It starts from an empty data folder, as
//! the test engine does; tests make a database each.
//!
//! Shared like the other services: a start finds a running one (from any
//! clone; the folder it runs from is written to `RUN_DIR/postgres.datadir`)
//! and joins it.

use crate::install;
use crate::services::RUN_DIR;
use crate::util::{output, repo_root, run_ok, tail};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// The loopback port (not 5432, which a system PostgreSQL may hold).
pub const PORT: u16 = 5433;
/// The database the URL names.
pub const DATABASE: &str = "stevedore";
/// The Debian packages.
pub const PACKAGES: &[&str] = &["postgresql-15"];
const BIN: &str = "/usr/lib/postgresql/15/bin";

/// The URL tests get as `STEVEDORE_TEST_DATABASE_URL`.
pub fn url() -> String {
    format!("postgres://postgres@127.0.0.1:{PORT}/{DATABASE}")
}

/// `target/services/postgres`, or, when the `postgres` user cannot reach
/// the tree (a clone under a private home), `/var/tmp/stevedore-test-postgres`.
fn state_dir() -> PathBuf {
    let services = repo_root().join("target/services");
    let reachable = Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(&services)
        .status()
        .is_ok_and(|s| s.success());
    if reachable {
        services.join("postgres")
    } else {
        PathBuf::from("/var/tmp/stevedore-test-postgres")
    }
}

fn socket_dir() -> PathBuf {
    PathBuf::from(RUN_DIR).join("postgres")
}

fn datadir_note() -> PathBuf {
    PathBuf::from(RUN_DIR).join("postgres.datadir")
}

/// As the `postgres` user.
fn as_postgres(program: &str) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--", &format!("{BIN}/{program}")]);
    cmd
}

/// Whether a PostgreSQL answers on our port.
pub fn running() -> bool {
    Command::new(format!("{BIN}/pg_isready"))
        .args(["-q", "-h", "127.0.0.1", "-p", &PORT.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// Start it unless it runs; returns whether it started it.
pub fn start() -> Result<bool> {
    if running() {
        return Ok(false);
    }
    install::ensure(PACKAGES)?;
    fs::create_dir_all(repo_root().join("target/services"))?;
    let state = state_dir();
    let data = state.join("data");
    let log = state.join("postgres.log");
    // A throwaway cluster: start from empty.
    if data.exists() {
        fs::remove_dir_all(&data).with_context(|| format!("cannot clear {}", data.display()))?;
    }
    for d in [&state, &socket_dir()] {
        fs::create_dir_all(d)?;
        run_ok(Command::new("chown").args(["postgres:postgres"]).arg(d))?;
    }
    let started = Instant::now();
    output(as_postgres("initdb").arg("-D").arg(&data).args([
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--no-sync",
    ]))
    .context("initdb")?;
    let options = format!(
        "-c listen_addresses=127.0.0.1 -p {PORT} -k {} -c max_connections=400 -c shared_buffers=128MB",
        socket_dir().display()
    );
    let status = as_postgres("pg_ctl")
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(&log)
        .args(["-o", &options, "-w", "-t", "60", "start"])
        .status()?;
    if !status.success() || !running() {
        bail!(
            "PostgreSQL did not start on 127.0.0.1:{PORT}; the end of {}:\n{}",
            log.display(),
            tail(&log, 20)
        );
    }
    fs::write(datadir_note(), data.to_string_lossy().as_bytes())?;
    output(Command::new(format!("{BIN}/psql")).args([
        "-h",
        "127.0.0.1",
        "-p",
        &PORT.to_string(),
        "-U",
        "postgres",
        "-q",
        "-c",
        &format!("CREATE DATABASE {DATABASE}"),
    ]))
    .context("creating the test database")?;
    eprintln!(
        "==> PostgreSQL ready at {} in {:.2?}",
        url(),
        started.elapsed()
    );
    Ok(true)
}

/// Stop it (the one whose data folder was noted when it started).
pub fn stop() {
    let Ok(data) = fs::read_to_string(datadir_note()) else {
        return;
    };
    if running() {
        let _ = as_postgres("pg_ctl")
            .args(["-D", data.trim(), "-m", "fast", "-w", "-t", "30", "stop"])
            .status();
    }
    let _ = fs::remove_file(datadir_note());
}

/// One line for `services status`.
pub fn status_line() -> String {
    let up = if running() { "running" } else { "stopped" };
    format!(
        "postgresql     {up:8} {} (log {})",
        url(),
        state_dir().join("postgres.log").display()
    )
}
