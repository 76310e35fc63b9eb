//! The `aihub` binary: parses the command line, loads configuration, sets up logging, and hands
//! over to the library crates. Everything of substance lives in them.

mod admin;
mod audit;
mod cli;
mod config;

use std::process::ExitCode;

use aihub_core::config::{Config, LogFormat};
use aihub_server::Application;
use anyhow::Context;
use clap::Parser;

use crate::cli::{Cli, Command};

/// jemalloc instead of the system allocator. A `/v1` request makes about 140 allocations; with
/// glibc's malloc they were the largest single item of the gateway's CPU profile (11 µs of
/// ~130 µs per request), and jemalloc took about a tenth off the CPU per request at the same
/// peak RSS (mimalloc saved nothing measurable and doubled it). Figures: docs/benchmarks.md.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match config::load(&cli) {
        Ok(c) => c,
        Err(e) => {
            // Logging is not configured yet; this is the one message that goes out raw.
            let _ =
                std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("aihub: {e:#}\n"));
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "could not start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command.unwrap_or_default(), config)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(_) => {
            let app = Application::build(config).await?;
            app.run_until(shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let store = aihub_store::Store::connect(&config.database)
                .await
                .context("opening the database")?;
            store.migrate().await.context("applying migrations")?;
            store.close().await;
            tracing::info!("database is up to date");
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin(cmd) => admin::run(cmd, config).await.map(|()| ExitCode::SUCCESS),
        Command::Audit(cmd) => audit::run(cmd, config).await,
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}
