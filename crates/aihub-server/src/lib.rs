//! The AI Hub application: wiring (store → services → gateway caches → routers), background
//! tasks, and the HTTP server. The binary and the tests both start it through [`Application`].

pub mod csv;
pub mod error;
pub mod extract;
pub mod governance;
pub mod middleware;
pub mod routes;
pub mod serve;
pub mod session;
pub mod state;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aihub_core::config::Config;
use aihub_gateway::journal::Journal;
use aihub_gateway::last_used::LastUsed;
use aihub_gateway::loader::Loader;
use aihub_gateway::{Gateway, KeyCache};
use aihub_service::Services;
use aihub_store::Store;
use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::state::AppState;

/// A built, bound, not yet serving application.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    tasks: TaskTracker,
    stop_tasks: CancellationToken,
}

/// How often expired and idle sessions are deleted.
const SESSION_SWEEP_EVERY: Duration = Duration::from_secs(15 * 60);

impl Application {
    /// Connects to the database, applies migrations, wires services and caches, starts the
    /// background tasks, and binds `server.listen` (port 0 picks a free port).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let store = Store::connect(&config.database)
            .await
            .context("opening the database")?;
        store
            .migrate()
            .await
            .context("applying database migrations")?;
        let services = Services::build(store.clone(), &config)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("loading providers, models and prices")?;
        let key_cache = KeyCache::new(services.keys.clone(), &config.gateway);
        key_cache.subscribe_to(&services.events);
        let last_used = Arc::new(LastUsed::new(services.keys.clone()));

        // Usage: the journal first, then load what an earlier run left in it, so that the
        // database is up to date before serving.
        let journal = Arc::new(Journal::open(&config.usage).with_context(|| {
            format!(
                "opening the usage journal in {}",
                config.usage.journal_dir.display()
            )
        })?);
        let mut loader = Loader::new(journal.clone(), store, config.usage.load_batch)
            .context("reading the journal checkpoint")?;
        match loader.step().await {
            Ok(n) if n > 0 => tracing::info!(records = n, "usage recovered from the journal"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not replay the usage journal yet"),
        }
        let governor = governance::build_governor(&services, &config)
            .context("setting up rate limits and budgets")?;
        let gateway = Arc::new(Gateway::new(
            services.catalog.clone(),
            journal.clone(),
            &config.gateway,
            governor.clone(),
            &config.limits,
        ));

        let tasks = TaskTracker::new();
        let stop_tasks = CancellationToken::new();
        tasks.spawn(last_used.clone().run(
            Duration::from_secs(config.gateway.last_used_flush_secs.max(1)),
            stop_tasks.clone(),
        ));
        tasks.spawn(sweep_sessions(services.clone(), stop_tasks.clone()));
        tasks.spawn(governance::sweep(governor.clone(), stop_tasks.clone()));
        tasks.spawn(services.alerts.clone().run(stop_tasks.clone()));
        tasks.spawn(refresh_catalog(
            services.clone(),
            Duration::from_secs(config.gateway.catalog_refresh_secs.max(1)),
            stop_tasks.clone(),
        ));
        tasks.spawn(journal.clone().run_sync(
            Duration::from_millis(config.usage.fsync_interval_ms),
            stop_tasks.clone(),
        ));
        tasks.spawn(loader.run(
            Duration::from_millis(config.usage.load_interval_ms),
            stop_tasks.clone(),
            Duration::from_secs(config.server.shutdown_grace_secs.max(1)),
        ));

        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("binding {}", config.server.listen))?;
        Ok(Self {
            listener,
            state: AppState::new(state::Shared {
                config: Arc::new(config),
                services,
                key_cache,
                last_used,
                gateway,
                governor,
            }),
            tasks,
            stop_tasks,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    #[must_use]
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, drains in-flight requests (and request tasks whose
    /// clients left), gives limit and budget leases back, then stops the background tasks —
    /// which flush what they hold: key usage times, the journal's last fsync, the last usage
    /// batch — and closes the database.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let grace = Duration::from_secs(self.state.config.server.shutdown_grace_secs);
        tracing::info!(listen = %self.listener.local_addr()?, "AI Hub is serving");
        serve::serve(self.listener, self.state.clone(), shutdown, grace).await;
        if !self.state.gateway.drain(grace).await {
            tracing::warn!("request tasks still running after the grace period");
        }
        // Leases go back to Redis with the spend settled against them, so other instances
        // can use them at once.
        self.state.governor.release_leases(grace).await;
        self.stop_tasks.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.state.services.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

async fn sweep_sessions(services: Services, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SESSION_SWEEP_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => match services.accounts.sweep_sessions().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "stale sessions deleted"),
                Err(e) => tracing::warn!(error = %e, "session sweep failed"),
            },
        }
    }
}

/// Re-reads the catalog periodically, so that changes made through other instances arrive.
async fn refresh_catalog(services: Services, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = services.catalog.reload().await {
                    tracing::warn!(error = %e, "catalog refresh failed; keeping the current one");
                }
            }
        }
    }
}
