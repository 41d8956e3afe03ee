//! The `basalt` binary: parses the command line, loads the configuration and
//! runs one subcommand. Everything it does is in the feature folders.

use basalt_server::{serve, settings, telemetry};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "basalt",
    version,
    about = "Basalt: a self-hosted backend-as-a-service on PostgreSQL"
)]
struct Cli {
    /// TOML config file (also BASALT_CONFIG).
    #[arg(long, global = true, env = "BASALT_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory: embedded PostgreSQL, generated secrets (also BASALT_DATA_DIR).
    #[arg(long, global = true)]
    data_dir: Option<String>,
    /// HTTP listen address, IP:PORT (also BASALT_HTTP).
    #[arg(long, global = true)]
    http: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (on the embedded PostgreSQL unless DATABASE_URL is set).
    Serve,
    /// Apply Basalt's schema migrations and exit.
    Migrate {
        /// List the pending migrations without applying them.
        #[arg(long)]
        dry_run: bool,
        /// Write the app's schema history (changes made through
        /// /admin/v1/tables) as numbered SQL files into this directory.
        #[arg(long, value_name = "DIR")]
        export: Option<std::path::PathBuf>,
    },
    /// Print the anon and service_role API keys.
    Keys,
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the effective configuration as TOML, secrets redacted.
    Show,
}

fn main() -> ExitCode {
    // Password hashes take `auth.argon2_memory_kib` (19 MiB by default) each.
    // glibc would soon serve such blocks from its per-thread heaps and keep
    // them after use; with a fixed mmap threshold they go back to the system
    // when a hash is done, so memory after a burst of sign-ins falls again.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
    // Two TLS providers are linked (ring, and aws-lc-rs through the S3
    // client); rustls needs one chosen before any TLS config is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let mut flags = Vec::new();
    if let Some(http) = &cli.http {
        flags.push(("http".to_owned(), "--http".to_owned(), http.clone()));
    }
    if let Some(data_dir) = &cli.data_dir {
        flags.push((
            "data_dir".to_owned(),
            "--data-dir".to_owned(),
            data_dir.clone(),
        ));
    }
    let loaded = match settings::load(cli.config.as_deref(), flags) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = telemetry::init_logging(&loaded.config.log) {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let config = loaded.config;
    let result = match cli.command {
        Command::Config {
            action: ConfigAction::Show,
        } => {
            print!("{}", config.redacted_toml());
            Ok(())
        }
        Command::Keys => serve::print_keys(&config),
        Command::Migrate { dry_run, export } => {
            run_async(serve::migrate_command(config, dry_run, export))
        }
        Command::Serve => run_async(serve::serve(config)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_async<F: std::future::Future<Output = anyhow::Result<()>>>(future: F) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(future)
}
