//! Test support: a fresh, migrated database per test, on SQLite (a temporary file) or on
//! PostgreSQL (a new database on the server named by `AIHUB_TEST_DATABASE_URL`), dropped when
//! the test ends.
#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "test support: a test cannot proceed without its database, so setup failures panic"
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aihub_core::config::DatabaseConfig;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::{BackendKind, Store};

/// Environment variable holding an admin URL of the PostgreSQL server used by tests.
pub const PG_URL_ENV: &str = "AIHUB_TEST_DATABASE_URL";

/// A database that exists for one test. Keep it alive as long as the test uses the store.
pub struct TestDb {
    pub config: DatabaseConfig,
    kind: BackendKind,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl TestDb {
    /// Creates an empty database (not yet migrated).
    ///
    /// # Panics
    /// On setup failure: a test cannot proceed without its database.
    pub async fn new(kind: BackendKind) -> Self {
        match kind {
            BackendKind::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("aihub.db").display());
                TestDb {
                    config: DatabaseConfig {
                        url,
                        ..DatabaseConfig::default()
                    },
                    kind,
                    _dir: Some(dir),
                    pg: None,
                }
            }
            BackendKind::Postgres => {
                let admin = std::env::var(PG_URL_ENV)
                    .unwrap_or_else(|_| panic!("{PG_URL_ENV} must be set for PostgreSQL tests"));
                let secs = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                let name = format!(
                    "aihub_test_{secs}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed)
                );
                let mut conn = PgConnection::connect(&admin)
                    .await
                    .expect("connect to the PostgreSQL test server");
                drop_stale_databases(&mut conn, secs).await;
                // Identifiers cannot be bound; `name` is generated above, never external input.
                let create = format!("CREATE DATABASE {name}");
                sqlx::query(&create)
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let _ = conn.close().await;
                let url = with_database(&admin, &name);
                TestDb {
                    config: DatabaseConfig {
                        url,
                        max_connections: 5,
                        ..DatabaseConfig::default()
                    },
                    kind,
                    _dir: None,
                    pg: Some((admin, name)),
                }
            }
        }
    }

    /// Connects and migrates.
    ///
    /// # Panics
    /// On failure, as above.
    pub async fn store(&self) -> Store {
        let store = Store::connect(&self.config).await.expect("connect");
        store.migrate().await.expect("migrate");
        store
    }

    #[must_use]
    pub fn kind(&self) -> BackendKind {
        self.kind
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg.take() else {
            return;
        };
        // Drop runs inside the test's runtime; do the async clean-up on a thread of its own.
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(&drop).execute(&mut conn).await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = handle.join();
    }
}

/// Replaces the database name in a PostgreSQL URL.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{name}?{q}"),
        None => format!("{host_part}/{name}"),
    }
}

/// Test databases left behind by crashed runs (older than six hours) are dropped.
async fn drop_stale_databases(conn: &mut PgConnection, now_secs: u64) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'aihub_test_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    for name in names {
        let created = name
            .strip_prefix("aihub_test_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|s| s.parse::<u64>().ok());
        if created.is_some_and(|c| c + 6 * 3600 < now_secs) {
            let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            let _ = sqlx::query(&drop).execute(&mut *conn).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
