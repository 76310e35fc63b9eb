//! The run-time catalog: providers and models added through the admin API (those declared in
//! configuration are not stored), and prices. Price rows are immutable; a new price is a new row
//! with a later `effective_from`.

use aihub_core::config::ProviderKind;
use aihub_core::time::{from_millis, to_millis};
use aihub_core::{Currency, UserId};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Result, Store, StoreError, on_backend};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRecord {
    pub id: Uuid,
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: Option<String>,
    /// Where the credential is read from; the credential itself is never stored.
    pub api_key_env: Option<String>,
    pub api_key_file: Option<String>,
    pub api_version: Option<String>,
    pub connect_timeout_ms: i64,
    pub first_byte_timeout_ms: i64,
    pub total_timeout_ms: i64,
    pub mock_latency_ms: i64,
    pub mock_chunk_interval_ms: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRecord {
    pub id: Uuid,
    pub name: String,
    pub provider: String,
    pub upstream_model: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A price per million tokens, in micro-units of `currency`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceRecord {
    pub id: Uuid,
    pub model: String,
    pub currency: Currency,
    pub input_micros: i64,
    pub cached_input_micros: Option<i64>,
    pub output_micros: i64,
    pub effective_from: DateTime<Utc>,
    /// `default` (shipped catalog) or `admin`.
    pub source: String,
    pub created_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct ProviderRow {
    id: Uuid,
    name: String,
    kind: String,
    base_url: Option<String>,
    api_key_env: Option<String>,
    api_key_file: Option<String>,
    api_version: Option<String>,
    connect_timeout_ms: i64,
    first_byte_timeout_ms: i64,
    total_timeout_ms: i64,
    mock_latency_ms: i64,
    mock_chunk_interval_ms: i64,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<ProviderRow> for ProviderRecord {
    type Error = StoreError;

    fn try_from(r: ProviderRow) -> Result<Self> {
        Ok(ProviderRecord {
            id: r.id,
            name: r.name,
            kind: r.kind.parse().map_err(StoreError::Corrupt)?,
            base_url: r.base_url,
            api_key_env: r.api_key_env,
            api_key_file: r.api_key_file,
            api_version: r.api_version,
            connect_timeout_ms: r.connect_timeout_ms,
            first_byte_timeout_ms: r.first_byte_timeout_ms,
            total_timeout_ms: r.total_timeout_ms,
            mock_latency_ms: r.mock_latency_ms,
            mock_chunk_interval_ms: r.mock_chunk_interval_ms,
            created_at: from_millis(r.created_at),
            updated_at: from_millis(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
struct ModelRow {
    id: Uuid,
    name: String,
    provider: String,
    upstream_model: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl From<ModelRow> for ModelRecord {
    fn from(r: ModelRow) -> Self {
        ModelRecord {
            id: r.id,
            name: r.name,
            provider: r.provider,
            upstream_model: r.upstream_model,
            created_at: from_millis(r.created_at),
            updated_at: from_millis(r.updated_at),
        }
    }
}

#[derive(sqlx::FromRow)]
struct PriceRow {
    id: Uuid,
    model: String,
    currency: String,
    input_micros: i64,
    cached_input_micros: Option<i64>,
    output_micros: i64,
    effective_from: i64,
    source: String,
    created_by: Option<Uuid>,
    created_at: i64,
}

impl TryFrom<PriceRow> for PriceRecord {
    type Error = StoreError;

    fn try_from(r: PriceRow) -> Result<Self> {
        Ok(PriceRecord {
            id: r.id,
            model: r.model,
            currency: Currency::parse(&r.currency)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            input_micros: r.input_micros,
            cached_input_micros: r.cached_input_micros,
            output_micros: r.output_micros,
            effective_from: from_millis(r.effective_from),
            source: r.source,
            created_by: r.created_by.map(UserId::from_uuid),
            created_at: from_millis(r.created_at),
        })
    }
}

macro_rules! provider_columns {
    () => {
        "id, name, kind, base_url, api_key_env, api_key_file, api_version, connect_timeout_ms, \
         first_byte_timeout_ms, total_timeout_ms, mock_latency_ms, mock_chunk_interval_ms, \
         created_at, updated_at"
    };
}

macro_rules! price_columns {
    () => {
        "id, model, currency, input_micros, cached_input_micros, output_micros, effective_from, \
         source, created_by, created_at"
    };
}

impl Store {
    pub async fn providers(&self) -> Result<Vec<ProviderRecord>> {
        let rows: Vec<ProviderRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                provider_columns!(),
                " FROM providers ORDER BY name"
            ))
            .fetch_all(p)
            .await
        })?;
        rows.into_iter().map(ProviderRecord::try_from).collect()
    }

    /// Inserts a provider, or replaces the one with the same id. A name taken by another row is a
    /// [`StoreError::Conflict`].
    pub async fn upsert_provider(&self, r: &ProviderRecord) -> Result<()> {
        on_backend!(self.writer(), |p| {
            sqlx::query(concat!(
                "INSERT INTO providers (",
                provider_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, kind = excluded.kind, \
                 base_url = excluded.base_url, api_key_env = excluded.api_key_env, \
                 api_key_file = excluded.api_key_file, api_version = excluded.api_version, \
                 connect_timeout_ms = excluded.connect_timeout_ms, \
                 first_byte_timeout_ms = excluded.first_byte_timeout_ms, \
                 total_timeout_ms = excluded.total_timeout_ms, \
                 mock_latency_ms = excluded.mock_latency_ms, \
                 mock_chunk_interval_ms = excluded.mock_chunk_interval_ms, \
                 updated_at = excluded.updated_at"
            ))
            .bind(r.id)
            .bind(&r.name)
            .bind(r.kind.as_str())
            .bind(&r.base_url)
            .bind(&r.api_key_env)
            .bind(&r.api_key_file)
            .bind(&r.api_version)
            .bind(r.connect_timeout_ms)
            .bind(r.first_byte_timeout_ms)
            .bind(r.total_timeout_ms)
            .bind(r.mock_latency_ms)
            .bind(r.mock_chunk_interval_ms)
            .bind(to_millis(r.created_at))
            .bind(to_millis(r.updated_at))
            .execute(p)
            .await
            .map(|_| ())
            .map_err(StoreError::from_write)
        })?;
        Ok(())
    }

    pub async fn delete_provider(&self, name: &str) -> Result<bool> {
        let n = on_backend!(self.writer(), |p| {
            sqlx::query("DELETE FROM providers WHERE name = $1")
                .bind(name)
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(n == 1)
    }

    pub async fn models(&self) -> Result<Vec<ModelRecord>> {
        let rows: Vec<ModelRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(
                "SELECT id, name, provider, upstream_model, created_at, updated_at FROM models \
                 ORDER BY name",
            )
            .fetch_all(p)
            .await
        })?;
        Ok(rows.into_iter().map(ModelRecord::from).collect())
    }

    /// Inserts a model, or replaces the one with the same id.
    pub async fn upsert_model(&self, r: &ModelRecord) -> Result<()> {
        on_backend!(self.writer(), |p| {
            sqlx::query(
                "INSERT INTO models (id, name, provider, upstream_model, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET \
                 name = excluded.name, provider = excluded.provider, \
                 upstream_model = excluded.upstream_model, updated_at = excluded.updated_at",
            )
            .bind(r.id)
            .bind(&r.name)
            .bind(&r.provider)
            .bind(&r.upstream_model)
            .bind(to_millis(r.created_at))
            .bind(to_millis(r.updated_at))
            .execute(p)
            .await
            .map(|_| ())
            .map_err(StoreError::from_write)
        })?;
        Ok(())
    }

    pub async fn delete_model(&self, name: &str) -> Result<bool> {
        let n = on_backend!(self.writer(), |p| {
            sqlx::query("DELETE FROM models WHERE name = $1")
                .bind(name)
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(n == 1)
    }

    /// Every price row, ordered by model and effective date.
    pub async fn prices(&self) -> Result<Vec<PriceRecord>> {
        let rows: Vec<PriceRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                price_columns!(),
                " FROM prices ORDER BY model, effective_from"
            ))
            .fetch_all(p)
            .await
        })?;
        rows.into_iter().map(PriceRecord::try_from).collect()
    }

    /// Inserts price rows, skipping any whose (model, effective_from) already exists. Returns how
    /// many were new. `insert_price` is the strict variant.
    pub async fn seed_prices(&self, prices: &[PriceRecord]) -> Result<u64> {
        let mut n = 0;
        for r in prices {
            n += self.insert_price_inner(r, true).await?;
        }
        Ok(n)
    }

    /// Inserts a price; one already effective from the same instant is a
    /// [`StoreError::Conflict`].
    pub async fn insert_price(&self, r: &PriceRecord) -> Result<()> {
        self.insert_price_inner(r, false).await.map(|_| ())
    }

    async fn insert_price_inner(&self, r: &PriceRecord, skip_existing: bool) -> Result<u64> {
        let n = on_backend!(self.writer(), |p| {
            let sql = if skip_existing {
                concat!(
                    "INSERT INTO prices (",
                    price_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (model, effective_from) DO NOTHING"
                )
            } else {
                concat!(
                    "INSERT INTO prices (",
                    price_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                )
            };
            sqlx::query(sql)
                .bind(r.id)
                .bind(&r.model)
                .bind(r.currency.to_string())
                .bind(r.input_micros)
                .bind(r.cached_input_micros)
                .bind(r.output_micros)
                .bind(to_millis(r.effective_from))
                .bind(&r.source)
                .bind(r.created_by.map(|u| u.as_uuid()))
                .bind(to_millis(r.created_at))
                .execute(p)
                .await
                .map(|r| r.rows_affected())
                .map_err(StoreError::from_write)
        })?;
        Ok(n)
    }
}
