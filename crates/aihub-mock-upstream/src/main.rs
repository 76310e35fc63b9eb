//! The `aihub-mock-upstream` binary: serves the mock provider on a fixed address until Ctrl-C or
//! SIGTERM, for the load benchmark and out-of-process tests (faults and the ledger are reachable
//! under `/__mock/*`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use aihub_mock_upstream::{MockOptions, MockUpstream};
use anyhow::Context as _;
use clap::Parser;

/// A fake OpenAI / Azure OpenAI / Anthropic provider with deterministic answers.
#[derive(Debug, Parser)]
#[command(name = "aihub-mock-upstream", version)]
struct Cli {
    /// Address to listen on (port 0 picks a free one; the log says which).
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Delay before the response headers, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Delay between streamed chunks, in milliseconds.
    #[arg(long, default_value_t = 0)]
    chunk_interval_ms: u64,
    /// Require this API key (Bearer, x-api-key or api-key depending on the protocol).
    #[arg(long, env = "AIHUB_MOCK_API_KEY")]
    api_key: Option<String>,
    /// Completion length when a request sets no max tokens.
    #[arg(long, default_value_t = 16)]
    default_max_tokens: u32,
    /// Keep a copy of every request (served at GET /__mock/requests); costs memory.
    #[arg(long)]
    record_requests: bool,
    /// Keep only the newest N ledger entries (0: none); all of them if unset.
    #[arg(long)]
    ledger_capacity: Option<usize>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
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
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let options = MockOptions {
        latency: Duration::from_millis(cli.latency_ms),
        chunk_interval: Duration::from_millis(cli.chunk_interval_ms),
        record_requests: cli.record_requests,
        default_max_tokens: cli.default_max_tokens,
        api_key: cli.api_key,
        ledger_capacity: cli.ledger_capacity,
    };
    tracing::info!(%addr, "aihub-mock-upstream listening on http://{addr}");
    MockUpstream::serve(listener, options, shutdown_signal())
        .await
        .context("serving")?;
    tracing::info!("stopped");
    Ok(())
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
}
