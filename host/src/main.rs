//! The `stevedore` command: `serve`, and `plugin check|test` for plugin authors.

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
    /// Tools for plugin authors.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Check that a component fits the `category` world; print its category, deletable flag and imports.
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
}

/// Keep the resident set small on a long-running server: large transient
/// buffers (argon2's 19 MiB per password check, the compiler's arenas at a
/// cold start) are mapped and returned to the system when freed, instead of
/// staying in glibc's heap, and threads share two arenas instead of one each.
fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    tune_allocator();
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
        Command::Plugin { command } => match command {
            PluginCommand::Check { file } => stevedore::plugins::cli::check(&file).await,
            PluginCommand::Test {
                file,
                params,
                script,
            } => stevedore::plugins::cli::test(&file, &params, script.as_deref()).await,
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
