//! The terminal client: `stevedore task ...` against a running server, and
//! `stevedore user ...` on its configuration file.
//!
//! - `task submit CATEGORY JSON [--wait]`, `task list [--category C]`,
//!   `task watch ID`, `task delete [ID|CATEGORY]`: the server and login come
//!   from `--url`, `--user`, `--password` or `STEVEDORE_URL`,
//!   `STEVEDORE_USER`, `STEVEDORE_PASSWORD`. `--wait` and `watch` draw a
//!   progress bar and exit non-zero when the task ends in error.
//! - `user add NAME [--admin]`, `user passwd NAME`: a password, prompted
//!   twice on a terminal or read from stdin's first line, hashed with
//!   argon2id into `[users.NAME]` of the configuration file.

pub mod client;
pub mod tasks;
pub mod users;
pub mod watch;
