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

use aihub_core::OrgId;
use uuid::Uuid;

use crate::{BackendKind, Result, Store, on_backend};

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

/// A synthetic usage load for performance tests: `rows` requests of `org` spread evenly over
/// `days` UTC days from day number `first_day`, cycling through `callers` (user, team, key) and
/// `models`; every 97th request failed (502, `upstream_error`).
#[derive(Debug, Clone)]
pub struct SyntheticUsage {
    pub org: OrgId,
    pub rows: i64,
    pub first_day: i64,
    pub days: i64,
    pub callers: Vec<(Option<Uuid>, Option<Uuid>, Option<Uuid>)>,
    pub models: Vec<String>,
}

/// Marks synthetic records, so their rollups are computed from them alone.
const SYNTHETIC_PROVIDER: &str = "synthetic";

impl Store {
    /// Writes `load` as raw usage records and their matching daily rollups, generated inside the
    /// database in one transaction (a million rows take seconds, even in a debug build). Call it
    /// once per organization, before any real usage of that organization's days.
    ///
    /// # Errors
    /// A database error.
    pub async fn insert_synthetic_usage(&self, load: &SyntheticUsage) -> Result<()> {
        if load.callers.is_empty() || load.models.is_empty() || load.rows <= 0 || load.days <= 0 {
            return Ok(());
        }
        // A UUIDv7-shaped id whose first 48 bits are the time, so ids sort like `created_at`.
        let request_id = match self.kind() {
            BackendKind::Sqlite => "unhex(printf('%012x7000%016x', t.ms, t.i))",
            BackendKind::Postgres => {
                "(lpad(to_hex(t.ms), 12, '0') || '7000' || lpad(to_hex(t.i), 16, '0'))::uuid"
            }
        };
        let callers = i64::try_from(load.callers.len()).unwrap_or(1);
        let models = i64::try_from(load.models.len()).unwrap_or(1);
        on_backend!(self.writer(), |p| {
            let mut tx = p.begin().await?;
            let mut qb = sqlx::QueryBuilder::new(
                "WITH RECURSIVE n(i) AS (SELECT CAST(0 AS BIGINT) UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ",
            );
            qb.push_bind(load.rows);
            qb.push("), callers(idx, user_id, team_id, key_id) AS (");
            qb.push_values(
                load.callers.iter().enumerate(),
                |mut b, (idx, (u, t, k))| {
                    b.push_bind(i64::try_from(idx).unwrap_or(0))
                        .push_bind(*u)
                        .push_bind(*t)
                        .push_bind(*k);
                },
            );
            qb.push("), models(idx, model) AS (");
            qb.push_values(load.models.iter().enumerate(), |mut b, (idx, m)| {
                b.push_bind(i64::try_from(idx).unwrap_or(0)).push_bind(m);
            });
            qb.push("), t AS (SELECT n.i, ");
            qb.push_bind(load.first_day * 86_400_000);
            qb.push(" + n.i * ");
            qb.push_bind(load.days * 86_400_000);
            qb.push(" / ");
            qb.push_bind(load.rows);
            qb.push(" AS ms FROM n) INSERT INTO usage_records (request_id, org_id, user_id, key_id, team_id, \
                 endpoint, model, provider, upstream_model, prompt_tokens, completion_tokens, \
                 cached_tokens, cost_micros, currency, status, error_code, latency_ms, ttft_ms, \
                 streamed, estimated, created_at) SELECT ");
            qb.push(request_id);
            qb.push(", ");
            qb.push_bind(load.org.as_uuid());
            qb.push(", c.user_id, c.key_id, c.team_id, 'chat.completions', m.model, ");
            qb.push_bind(SYNTHETIC_PROVIDER);
            qb.push(
                ", m.model, 100 + t.i % 50, 20 + t.i % 30, 0, 150 + t.i % 100, 'USD', \
                 CASE WHEN t.i % 97 = 0 THEN 502 ELSE 200 END, \
                 CASE WHEN t.i % 97 = 0 THEN 'upstream_error' END, 50 + t.i % 500, NULL, \
                 (t.i % 2 = 0), FALSE, t.ms FROM t JOIN callers c ON c.idx = t.i % ",
            );
            qb.push_bind(callers);
            qb.push(" JOIN models m ON m.idx = (t.i / ");
            qb.push_bind(callers);
            qb.push(") % ");
            qb.push_bind(models);
            qb.build().execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO usage_daily (org_id, day, user_id, team_id, key_id, model, currency, \
                 requests, errors, prompt_tokens, completion_tokens, cached_tokens, cost_micros) \
                 SELECT org_id, created_at / 86400000, COALESCE(user_id, $3), COALESCE(team_id, $3), \
                 COALESCE(key_id, $3), model, currency, COUNT(*), \
                 SUM(CASE WHEN status < 200 OR status >= 300 OR error_code IS NOT NULL THEN 1 ELSE 0 END), \
                 SUM(prompt_tokens), SUM(completion_tokens), SUM(cached_tokens), SUM(cost_micros) \
                 FROM usage_records WHERE org_id = $1 AND provider = $2 \
                 GROUP BY org_id, created_at / 86400000, COALESCE(user_id, $3), COALESCE(team_id, $3), \
                 COALESCE(key_id, $3), model, currency",
            )
            .bind(load.org.as_uuid())
            .bind(SYNTHETIC_PROVIDER)
            .bind(Uuid::nil())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
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
