//! The `stevedore` command: `serve`; `task ...` and `user ...` (the terminal
//! client, see `stevedore::cli`); and `plugin check|test` for plugin authors.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Background tasks for containers, run by sandboxed WebAssembly plugins.
#[derive(Parser)]
#[command(name = "stevedore", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the REST API (configuration: STEVEDORE_CONFIG and STEVEDORE_* variables).
    Serve,
    /// Submit, list, watch and delete tasks on a running server.
    Task {
        #[command(flatten)]
        login: LoginArgs,
        #[command(subcommand)]
        command: TaskCommand,
    },
    /// Add users and set their passwords in the configuration file.
    User {
        /// The configuration file the server reads (`STEVEDORE_CONFIG`).
        #[arg(long, env = "STEVEDORE_CONFIG")]
        config: PathBuf,
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Tools for plugin authors.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

/// The server and who logs in to it.
#[derive(clap::Args)]
struct LoginArgs {
    /// The server's root URL.
    #[arg(
        long,
        env = "STEVEDORE_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// User name.
    #[arg(long, env = "STEVEDORE_USER", default_value = "admin", global = true)]
    user: String,
    /// Password.
    #[arg(
        long,
        env = "STEVEDORE_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    password: Option<String>,
}

#[derive(Subcommand)]
enum TaskCommand {
    /// Submit a task; print it, or with --wait follow it to its end.
    Submit {
        /// The category, e.g. `image_download`.
        category: String,
        /// Its params, JSON text.
        json: String,
        /// Draw a progress bar until the task ends; exit non-zero if it ends in error.
        #[arg(long)]
        wait: bool,
    },
    /// List tasks, newest first.
    List {
        /// Only tasks of this category.
        #[arg(long)]
        category: Option<String>,
    },
    /// Draw a task's progress bar until it ends; exit non-zero if it ends in error.
    Watch {
        /// The task id.
        id: i64,
    },
    /// Delete one task by id, the finished tasks of a category, or (no argument) every finished task.
    Delete {
        /// A task id or a category.
        target: Option<String>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password is prompted (or read from stdin).
    Add {
        /// User name.
        name: String,
        /// Make the user an admin.
        #[arg(long)]
        admin: bool,
    },
    /// Set a user's password; prompted (or read from stdin).
    Passwd {
        /// User name.
        name: String,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Check that a component fits the `category` world; print its category, deletable flag, imports and params schema.
    Check {
        /// The component (`.wasm`).
        file: PathBuf,
    },
    /// Run `validate` then `run` against the simulated runtime; print the calls made and the result.
    Test {
        /// The component (`.wasm`).
        file: PathBuf,
        /// Task params, JSON text.
        #[arg(long)]
        params: String,
        /// Simulator script (JSON) with canned answers; see the README.
        #[arg(long)]
        script: Option<PathBuf>,
    },
    /// Scaffold a category in a new folder NAME: source, build file, a simulator script and a test.
    New {
        /// Category name (lower-case letters, digits, `_`).
        name: String,
        /// Language of the category: `rust` or `python`.
        #[arg(long, default_value = "rust")]
        lang: stevedore::plugins::author::scaffold::Lang,
    },
    /// Build the category in DIR (default: the current folder) into DIR/NAME.wasm.
    Build {
        /// The category's folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
}

async fn task(login: LoginArgs, command: TaskCommand) -> anyhow::Result<()> {
    use stevedore::cli::tasks;
    let login = stevedore::cli::client::Login {
        url: login.url,
        user: login.user,
        password: login.password.ok_or_else(|| {
            anyhow::anyhow!("no password: set STEVEDORE_PASSWORD or pass --password")
        })?,
    };
    match command {
        TaskCommand::Submit {
            category,
            json,
            wait,
        } => tasks::submit(&login, &category, &json, wait).await,
        TaskCommand::List { category } => tasks::list(&login, category.as_deref()).await,
        TaskCommand::Watch { id } => tasks::watch(&login, id).await,
        TaskCommand::Delete { target } => tasks::delete(&login, target.as_deref()).await,
    }
}

fn user(config: &std::path::Path, command: UserCommand) -> anyhow::Result<()> {
    use stevedore::cli::users;
    let (name, admin, add) = match command {
        UserCommand::Add { name, admin } => (name, Some(admin), true),
        UserCommand::Passwd { name } => (name, None, false),
    };
    let password = users::read_password(&name)?;
    users::set(config, &name, admin, add, &password)?;
    println!(
        "{} user {name} in {}; restart the server to apply",
        if add { "added" } else { "updated" },
        config.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    stevedore::server::tune_allocator();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the tokio runtime")
        .block_on(run())
}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve => stevedore::server::run().await,
        Command::Task { login, command } => task(login, command).await,
        Command::User { config, command } => user(&config, command),
        Command::Plugin { command } => match command {
            PluginCommand::Check { file } => stevedore::plugins::cli::check(&file).await,
            PluginCommand::Test {
                file,
                params,
                script,
            } => stevedore::plugins::cli::test(&file, &params, script.as_deref()).await,
            PluginCommand::New { name, lang } => {
                stevedore::plugins::author::scaffold::new(std::path::Path::new("."), &name, lang)
                    .map(drop)
            }
            PluginCommand::Build { dir } => stevedore::plugins::author::build(&dir).map(drop),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stevedore: {e:#}");
            ExitCode::FAILURE
        }
    }
}
