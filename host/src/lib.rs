//! Stevedore: a background-task server for containers.
//!
//! The crate is laid out as its architecture:
//! - [`api`]: HTTP routes, login and sessions, JSON errors, the OpenAPI document;
//! - [`dashboard`]: the web app served at `/`;
//! - [`cli`]: the terminal client (`stevedore task ...`, `stevedore user ...`);
//! - [`queue`]: the task state machine and scheduler;
//! - [`schedule`]: scheduled tasks (cron in a time zone) and the loop that fires them;
//! - [`webhooks`]: signed deliveries of task events to users' URLs, from a durable outbox;
//! - [`store`]: durable tasks, sessions and credentials, one driver per database;
//! - [`plugins`]: the wasmtime engine that loads category plugins and runs them sandboxed;
//! - [`apps`]: installed applications (records, actions, removal) over the runtime;
//! - [`runtime`]: the container runtimes plugins reach through WIT capabilities.

pub mod api;
pub mod apps;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod log_tail;
pub mod metrics;
pub mod plugins;
pub mod policy;
pub mod proxy;
pub mod queue;
pub mod runtime;
pub mod schedule;
pub mod secret;
pub mod server;
pub mod setting;
pub mod store;
pub mod timing;
pub mod user_name;
pub mod webhooks;
pub mod wit;

/// The PostgreSQL driver of [`store`] (the `[database]` section is
/// [`pg::config::DatabaseSection`]).
pub use store::postgres as pg;
