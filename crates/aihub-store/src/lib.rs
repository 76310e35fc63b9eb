//! AI Hub storage. One [`Store`] speaks to either SQLite (the default, a file under `./data/`) or
//! PostgreSQL (scale-out), chosen by the URL scheme. SQL is written once in the dialect both
//! backends share (`$n` parameters, `RETURNING`, `ON CONFLICT`, times as integer milliseconds);
//! the schema lives in one migration folder per backend. Services mint ids and timestamps and
//! the store writes them as given.
//!
//! Queries are grouped by domain noun: [`users`], [`orgs`], [`keys`], [`sessions`], [`usage`],
//! [`catalog`], [`governance`], [`alerts`].

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use aihub_core::config::DatabaseConfig;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub mod alerts;
pub mod audit;
pub mod catalog;
pub mod governance;
pub mod invitations;
pub mod keys;
pub mod orgs;
mod priority;
pub mod sessions;
pub mod teams;
#[cfg(feature = "testing")]
pub mod testing;
pub mod usage;
pub mod users;

pub use alerts::{AlertChannel, BudgetAlert, Delivery, DeliveryStatus, NewBudgetAlert};
pub use catalog::{ModelRecord, PriceRecord, ProviderRecord};
pub use invitations::{Invitation, InvitationStatus, NewInvitation};
pub use keys::{ApiKey, KeyAuth, KeyChanges, NewApiKey};
pub use orgs::{Guarded, Member, MemberChanges, Membership, Org};
pub use sessions::{Session, SessionAuth};
pub use teams::{DeletedTeam, Team, TeamMember};
pub use usage::{UsageGroup, UsageGrouping, UsageRecord, UsageTotals};
pub use users::{NewUser, User};

/// Errors from the store. Database details stay inside `Database` and are logged, never shown
/// to API callers.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint was violated (e.g. an e-mail address already registered).
    #[error("conflict on a unique value")]
    Conflict,
    /// A row held a value the domain types reject; only possible after manual tampering.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("unsupported database url (expected sqlite://<file> or postgres://…)")]
    UnsupportedUrl,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("could not create the database directory: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    fn from_write(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
            _ => StoreError::Database(e),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
enum Backend {
    /// SQLite allows one writer at a time; a dedicated single-connection pool serializes writes in
    /// process (no `SQLITE_BUSY` between our own writers), while reads run in parallel.
    Sqlite {
        read: SqlitePool,
        write: SqlitePool,
    },
    Postgres(PgPool),
}

/// A borrowed pool of one backend, for [`on_backend!`].
#[doc(hidden)]
pub enum PoolRef<'a> {
    Sqlite(&'a SqlitePool),
    Postgres(&'a PgPool),
}

/// Runs the same statement text on whichever backend `$pool` is. The body is expanded once per
/// backend, so each expansion is fully typed for its driver.
#[macro_export]
#[doc(hidden)]
macro_rules! on_backend {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            $crate::PoolRef::Sqlite($p) => $body,
            $crate::PoolRef::Postgres($p) => $body,
        }
    };
}

/// Handle to the database. Cheap to clone; every clone shares the pools.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("kind", &self.kind()).finish()
    }
}

impl Store {
    /// Opens the database named by `config.url`, creating a SQLite file (and its directory) if
    /// it does not exist. Does not migrate; call [`Store::migrate`].
    pub async fn connect(config: &DatabaseConfig) -> Result<Self> {
        let acquire = Duration::from_secs(config.acquire_timeout_secs.max(1));
        if let Some(rest) = config.url.strip_prefix("sqlite:") {
            let path = rest.trim_start_matches("//");
            // An in-memory database would be a different one per pool: not a usable store.
            if path.is_empty() || path.contains(":memory:") || path.contains("mode=memory") {
                return Err(StoreError::UnsupportedUrl);
            }
            let path = path.split('?').next().unwrap_or(path);
            if let Some(parent) = Path::new(path).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent)?;
            }
            let options = SqliteConnectOptions::from_str(&config.url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a commit is on disk when it returns, even across an OS crash or power loss.
                // The usage loader deletes journal segments once their records are committed, so
                // a commit must not be lost after the fact. Writes are batched, so the fsync per
                // commit is cheap.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_millis(config.busy_timeout_ms))
                .foreign_keys(true);
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(acquire)
                // The writer's thread yields the CPU to request handling (see `priority`); set
                // on every connect, so a reconnected writer gets it too.
                .after_connect(|_, _| {
                    Box::pin(async {
                        priority::lower_threads(priority::WRITER_THREAD, priority::WRITER_NICE);
                        Ok(())
                    })
                })
                .connect_with(options.clone().thread_name(priority::writer_thread_name))
                .await?;
            let read = SqlitePoolOptions::new()
                .max_connections(config.max_connections.max(1))
                .acquire_timeout(acquire)
                .connect_with(
                    options
                        .create_if_missing(false)
                        .read_only(true)
                        .thread_name(priority::reader_thread_name),
                )
                .await?;
            Ok(Self {
                backend: Backend::Sqlite { read, write },
            })
        } else if config.url.starts_with("postgres:") || config.url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(&config.url)?;
            let pool = PgPoolOptions::new()
                .max_connections(config.max_connections.max(1))
                .acquire_timeout(acquire)
                .connect_with(options)
                .await?;
            Ok(Self {
                backend: Backend::Postgres(pool),
            })
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    /// Applies the embedded migrations of this backend. Safe to run from several instances at
    /// once: sqlx takes an advisory lock on PostgreSQL, and SQLite has one writer.
    pub async fn migrate(&self) -> Result<()> {
        match &self.backend {
            Backend::Sqlite { write, .. } => {
                sqlx::migrate!("./migrations/sqlite").run(write).await?
            }
            Backend::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// A trivial query, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        on_backend!(self.reader(), |p| sqlx::query("SELECT 1")
            .execute(p)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    #[must_use]
    pub fn kind(&self) -> BackendKind {
        match self.backend {
            Backend::Sqlite { .. } => BackendKind::Sqlite,
            Backend::Postgres(_) => BackendKind::Postgres,
        }
    }

    /// Closes every pool, waiting for checked-out connections to return.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Backend::Postgres(pool) => pool.close().await,
        }
    }

    #[doc(hidden)]
    pub fn reader(&self) -> PoolRef<'_> {
        match &self.backend {
            Backend::Sqlite { read, .. } => PoolRef::Sqlite(read),
            Backend::Postgres(pool) => PoolRef::Postgres(pool),
        }
    }

    #[doc(hidden)]
    pub fn writer(&self) -> PoolRef<'_> {
        match &self.backend {
            Backend::Sqlite { write, .. } => PoolRef::Sqlite(write),
            Backend::Postgres(pool) => PoolRef::Postgres(pool),
        }
    }
}

/// Converts a stored role string; a bad value means the row was tampered with.
fn parse_role(s: &str) -> Result<aihub_core::Role> {
    s.parse()
        .map_err(|e: aihub_core::role::UnknownRole| StoreError::Corrupt(e.to_string()))
}
