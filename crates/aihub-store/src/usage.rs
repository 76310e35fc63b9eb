//! Usage records and their daily rollups. Records arrive in batches from the gateway's journal
//! loader; inserting is idempotent on the request id, and only rows actually inserted are added
//! to the rollups, so a replayed batch changes nothing.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::sync::OnceLock;

use aihub_core::time::{from_millis, to_millis};
use aihub_core::{Currency, KeyId, OrgId, TeamId, UserId};
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use crate::{Result, Store, StoreError, on_backend};

/// One metered request. Also the `Finish` line of the gateway's usage journal (hence serde).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UsageRecord {
    pub request_id: Uuid,
    pub org_id: OrgId,
    pub user_id: Option<UserId>,
    pub key_id: Option<KeyId>,
    pub team_id: Option<TeamId>,
    /// `chat.completions`, `completions` or `embeddings`.
    pub endpoint: String,
    /// The model the client asked for.
    pub model: String,
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cost_micros: i64,
    pub currency: Currency,
    /// HTTP status given to the client (0: none, the gateway stopped first).
    pub status: i32,
    pub error_code: Option<String>,
    pub latency_ms: i64,
    pub ttft_ms: Option<i64>,
    pub streamed: bool,
    /// Token counts were estimated (the upstream reported none).
    pub estimated: bool,
    pub created_at: DateTime<Utc>,
}

impl UsageRecord {
    #[must_use]
    pub fn is_error(&self) -> bool {
        !(200..300).contains(&self.status) || self.error_code.is_some()
    }
}

/// Days since the Unix epoch (UTC) of `t`: the rollup bucket.
#[must_use]
pub fn day_of(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(86_400)
}

/// The calendar date of a rollup day number.
#[must_use]
pub fn date_of_day(day: i64) -> NaiveDate {
    DateTime::<Utc>::UNIX_EPOCH.date_naive() + chrono::Days::new(u64::try_from(day).unwrap_or(0))
}

#[derive(sqlx::FromRow)]
struct UsageRow {
    request_id: Uuid,
    org_id: Uuid,
    user_id: Option<Uuid>,
    key_id: Option<Uuid>,
    team_id: Option<Uuid>,
    endpoint: String,
    model: String,
    provider: Option<String>,
    upstream_model: Option<String>,
    prompt_tokens: i64,
    completion_tokens: i64,
    cached_tokens: i64,
    cost_micros: i64,
    currency: String,
    status: i32,
    error_code: Option<String>,
    latency_ms: i64,
    ttft_ms: Option<i64>,
    streamed: bool,
    estimated: bool,
    created_at: i64,
}

impl TryFrom<UsageRow> for UsageRecord {
    type Error = StoreError;

    fn try_from(r: UsageRow) -> Result<Self> {
        Ok(UsageRecord {
            request_id: r.request_id,
            org_id: OrgId::from_uuid(r.org_id),
            user_id: r.user_id.map(UserId::from_uuid),
            key_id: r.key_id.map(KeyId::from_uuid),
            team_id: r.team_id.map(TeamId::from_uuid),
            endpoint: r.endpoint,
            model: r.model,
            provider: r.provider,
            upstream_model: r.upstream_model,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            cached_tokens: r.cached_tokens,
            cost_micros: r.cost_micros,
            currency: Currency::parse(&r.currency)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            status: r.status,
            error_code: r.error_code,
            latency_ms: r.latency_ms,
            ttft_ms: r.ttft_ms,
            streamed: r.streamed,
            estimated: r.estimated,
            created_at: from_millis(r.created_at),
        })
    }
}

macro_rules! usage_columns {
    () => {
        "request_id, org_id, user_id, key_id, team_id, endpoint, model, provider, upstream_model, \
         prompt_tokens, completion_tokens, cached_tokens, cost_micros, currency, status, \
         error_code, latency_ms, ttft_ms, streamed, estimated, created_at"
    };
}

/// Most rows per multi-row INSERT (21 parameters each: 21,504, well under SQLite's 32,766 and
/// PostgreSQL's 65,535). Each statement is a round trip to the database, and under load the
/// trip costs more than the rows (with SQLite it is a hand-over to the writer's thread, which at
/// saturation gets only the CPU the requests leave): a batch of up to this many records is one
/// statement. Its rows are the next power of two, padded by repeating the last record;
/// `ON CONFLICT (request_id) DO NOTHING` drops the copies. So only the eleven statements of
/// 1, 2, 4, … 1,024 rows are ever prepared, each reused from the connection's statement cache
/// (one per batch size would be parsed and planned anew for nearly every batch), and padding
/// adds less than one row per row.
const INSERT_MAX: usize = 1024;
/// The statement sizes: 2⁰ to [`INSERT_MAX`] rows.
const INSERT_SIZES: usize = INSERT_MAX.trailing_zeros() as usize + 1;

/// Ids per name lookup (`… IN (…)`); these run for reports, not on the metering path.
const NAME_LOOKUP_CHUNK: usize = 500;

/// How a statement writes its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholders {
    /// `$1, $2, …` (PostgreSQL).
    Numbered,
    /// `?, ?, …` (SQLite: a numbered or named parameter costs SQLite a search through every
    /// name of the statement when the driver binds it, quadratic in a 5,376-value insert).
    Anonymous,
}

/// The multi-row `INSERT … ON CONFLICT (request_id) DO NOTHING` of `rows` records, with
/// `RETURNING request_id` when `returning`. The text for each statement size (see [`INSERT_MAX`]) is
/// built once for the process.
fn insert_sql(style: Placeholders, rows: usize, returning: bool) -> Cow<'static, str> {
    const COLUMNS: usize = 21;
    static BUILT: [[[OnceLock<String>; 2]; INSERT_SIZES]; 2] =
        [const { [const { [const { OnceLock::new() }; 2] }; INSERT_SIZES] }; 2];
    let build = || {
        let mut sql = String::with_capacity(96 + rows * COLUMNS * 5);
        sql.push_str(concat!(
            "INSERT INTO usage_records (",
            usage_columns!(),
            ") VALUES "
        ));
        for row in 0..rows {
            sql.push_str(if row == 0 { "(" } else { ", (" });
            for column in 0..COLUMNS {
                if column > 0 {
                    sql.push_str(", ");
                }
                match style {
                    Placeholders::Numbered => {
                        let _ = write!(sql, "${}", row * COLUMNS + column + 1);
                    }
                    Placeholders::Anonymous => sql.push('?'),
                }
            }
            sql.push(')');
        }
        sql.push_str(" ON CONFLICT (request_id) DO NOTHING");
        if returning {
            sql.push_str(" RETURNING request_id");
        }
        sql
    };
    let cell = rows
        .is_power_of_two()
        .then(|| rows.trailing_zeros() as usize)
        .and_then(|size| {
            BUILT
                .get(usize::from(style == Placeholders::Anonymous))?
                .get(size)
        })
        .and_then(|cells| cells.get(usize::from(returning)));
    match cell {
        Some(cell) => Cow::Borrowed(cell.get_or_init(build).as_str()),
        None => Cow::Owned(build()),
    }
}

/// `records` cut into statements, in order: each chunk of at most [`INSERT_MAX`] records with
/// the statement's rows, the next power of two.
fn insert_chunks<T>(mut records: &[T]) -> impl Iterator<Item = (&[T], usize)> {
    std::iter::from_fn(move || {
        if records.is_empty() {
            return None;
        }
        let (chunk, rest) = records.split_at(records.len().min(INSERT_MAX));
        records = rest;
        Some((chunk, chunk.len().next_power_of_two()))
    })
}

/// `chunk`'s records, then its last one again until there are `rows`: the copies conflict with
/// it and are dropped by the statement (see [`INSERT_MAX`]).
fn padded<T>(chunk: &[T], rows: usize) -> impl Iterator<Item = &T> {
    let copies = rows.saturating_sub(chunk.len());
    chunk
        .iter()
        .chain(chunk.last().into_iter().cycle().take(copies))
}

/// How a usage summary is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGrouping {
    Day,
    Model,
    Key,
    User,
    Team,
}

/// The group a row of a usage summary belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UsageGroup {
    Day(NaiveDate),
    Model(String),
    /// `None`: requests made without a key.
    Key(Option<KeyId>),
    /// `None`: requests no user is accountable for.
    User(Option<UserId>),
    /// `None`: requests outside any team.
    Team(Option<TeamId>),
}

impl UsageGroup {
    /// The id of a key, user or team group (`None` for the other kinds and for "no key" etc.).
    #[must_use]
    pub fn id(&self) -> Option<Uuid> {
        match self {
            UsageGroup::Day(_) | UsageGroup::Model(_) => None,
            UsageGroup::Key(k) => k.map(|k| k.as_uuid()),
            UsageGroup::User(u) => u.map(|u| u.as_uuid()),
            UsageGroup::Team(t) => t.map(|t| t.as_uuid()),
        }
    }
}

/// Totals of one day and one group (and currency): a point of a usage chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyTotals {
    pub day: NaiveDate,
    pub totals: UsageTotals,
}

/// Totals of one group (and currency) of a usage summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageTotals {
    pub group: UsageGroup,
    pub currency: String,
    pub requests: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cost_micros: i64,
}

type TotalsRow<G> = (G, String, i64, i64, i64, i64, i64, i64);
type DailyRow<G> = (i64, G, String, i64, i64, i64, i64, i64, i64);

/// The group of a stored id column, where the nil UUID means "none".
fn id_group(grouping: UsageGrouping, id: Uuid) -> UsageGroup {
    let id = (!id.is_nil()).then_some(id);
    match grouping {
        UsageGrouping::User => UsageGroup::User(id.map(UserId::from_uuid)),
        UsageGrouping::Team => UsageGroup::Team(id.map(TeamId::from_uuid)),
        _ => UsageGroup::Key(id.map(KeyId::from_uuid)),
    }
}

fn daily<G>(row: DailyRow<G>, group: impl FnOnce(G) -> UsageGroup) -> DailyTotals {
    let (day, g, currency, requests, errors, prompt, completion, cached, cost) = row;
    DailyTotals {
        day: date_of_day(day),
        totals: totals(
            (
                g, currency, requests, errors, prompt, completion, cached, cost,
            ),
            group,
        ),
    }
}

fn totals<G>(row: TotalsRow<G>, group: impl FnOnce(G) -> UsageGroup) -> UsageTotals {
    let (
        g,
        currency,
        requests,
        errors,
        prompt_tokens,
        completion_tokens,
        cached_tokens,
        cost_micros,
    ) = row;
    UsageTotals {
        group: group(g),
        currency,
        requests,
        errors,
        prompt_tokens,
        completion_tokens,
        cached_tokens,
        cost_micros,
    }
}

#[derive(Default)]
struct Rollup {
    requests: i64,
    errors: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    cached_tokens: i64,
    cost_micros: i64,
}

impl Rollup {
    /// One record's contribution.
    fn of(r: &UsageRecord) -> Self {
        Self {
            requests: 1,
            errors: i64::from(r.is_error()),
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            cached_tokens: r.cached_tokens,
            cost_micros: r.cost_micros,
        }
    }

    fn merge(&mut self, other: &Self) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cached_tokens += other.cached_tokens;
        self.cost_micros += other.cost_micros;
    }
}

/// A daily rollup's identity, borrowed from the record (no allocation per record).
type RollupKey<'a> = (Uuid, i64, Uuid, Uuid, Uuid, &'a str, &'a str);

fn rollup_key(r: &UsageRecord) -> RollupKey<'_> {
    (
        r.org_id.as_uuid(),
        day_of(r.created_at),
        r.user_id.map_or(Uuid::nil(), |u| u.as_uuid()),
        r.team_id.map_or(Uuid::nil(), |t| t.as_uuid()),
        r.key_id.map_or(Uuid::nil(), |k| k.as_uuid()),
        &r.model,
        r.currency.as_str(),
    )
}

impl Store {
    /// Inserts the records whose request id is new and adds exactly those to the daily rollups,
    /// in one transaction. Returns how many were new.
    ///
    /// Usually every record is new, and the inserts' row counts say so: no row comes back per
    /// record (with SQLite each returned row is a message between threads, which cost more than
    /// the insert). When a count falls short — a journal replayed after a crash between commit
    /// and checkpoint, or an id twice in one batch — the transaction starts over with inserts
    /// that return the ids they stored, and only those records are rolled up.
    pub async fn insert_usage(&self, records: &[UsageRecord]) -> Result<u64> {
        if records.is_empty() {
            return Ok(0);
        }
        // `$query` with the values of `$rows` (`&UsageRecord`s) bound, in `insert_sql`'s order.
        macro_rules! bind_rows {
            ($query:expr, $rows:expr) => {{
                let mut q = $query;
                for r in $rows {
                    q = q
                        .bind(r.request_id)
                        .bind(r.org_id.as_uuid())
                        .bind(r.user_id.map(|u| u.as_uuid()))
                        .bind(r.key_id.map(|k| k.as_uuid()))
                        .bind(r.team_id.map(|t| t.as_uuid()))
                        // Strings as `&str`: a `&String` is bound as a copy of it.
                        .bind(r.endpoint.as_str())
                        .bind(r.model.as_str())
                        .bind(r.provider.as_deref())
                        .bind(r.upstream_model.as_deref())
                        .bind(r.prompt_tokens)
                        .bind(r.completion_tokens)
                        .bind(r.cached_tokens)
                        .bind(r.cost_micros)
                        .bind(r.currency.as_str())
                        .bind(r.status)
                        .bind(r.error_code.as_deref())
                        .bind(r.latency_ms)
                        .bind(r.ttft_ms)
                        .bind(r.streamed)
                        .bind(r.estimated)
                        .bind(to_millis(r.created_at));
                }
                q
            }};
        }
        let style = match self.kind() {
            crate::BackendKind::Sqlite => Placeholders::Anonymous,
            crate::BackendKind::Postgres => Placeholders::Numbered,
        };
        let inserted = on_backend!(self.writer(), |p| {
            let mut tx = p.begin().await?;
            let mut all_new = true;
            for (chunk, rows) in insert_chunks(records) {
                let sql = insert_sql(style, rows, false);
                let added = bind_rows!(sqlx::query(&sql), padded(chunk, rows))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if usize::try_from(added).ok() != Some(chunk.len()) {
                    all_new = false;
                    break;
                }
            }
            let inserted: Vec<&UsageRecord> = if all_new {
                records.iter().collect()
            } else {
                tx.rollback().await?;
                tx = p.begin().await?;
                let mut new_ids: HashSet<Uuid> = HashSet::with_capacity(records.len());
                for (chunk, rows) in insert_chunks(records) {
                    let sql = insert_sql(style, rows, true);
                    let ids: Vec<Uuid> = bind_rows!(sqlx::query_scalar(&sql), padded(chunk, rows))
                        .fetch_all(&mut *tx)
                        .await?;
                    new_ids.extend(ids);
                }
                // Each stored id once, even when the batch holds it twice.
                records
                    .iter()
                    .filter(|r| new_ids.remove(&r.request_id))
                    .collect()
            };
            // SipHash kept: model names come from requests. Records of one rollup usually come
            // in runs (one key calling one model), so a run is summed before the map is
            // touched: hashing the 100-byte key cost more than the rest of a record's rollup.
            let mut rollups: HashMap<RollupKey<'_>, Rollup> = HashMap::new();
            let mut run: Option<(RollupKey<'_>, Rollup)> = None;
            for r in &inserted {
                let (k, one) = (rollup_key(r), Rollup::of(r));
                match &mut run {
                    Some((current, t)) if *current == k => t.merge(&one),
                    _ => {
                        if let Some((done, sum)) = run.replace((k, one)) {
                            rollups.entry(done).or_default().merge(&sum);
                        }
                    }
                }
            }
            if let Some((done, sum)) = run {
                rollups.entry(done).or_default().merge(&sum);
            }
            for ((org, day, user, team, key, model, currency), t) in &rollups {
                sqlx::query(
                    "INSERT INTO usage_daily (org_id, day, user_id, team_id, key_id, model, currency, \
                     requests, errors, prompt_tokens, completion_tokens, cached_tokens, cost_micros) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                     ON CONFLICT (org_id, day, user_id, team_id, key_id, model, currency) DO UPDATE SET \
                     requests = usage_daily.requests + excluded.requests, \
                     errors = usage_daily.errors + excluded.errors, \
                     prompt_tokens = usage_daily.prompt_tokens + excluded.prompt_tokens, \
                     completion_tokens = usage_daily.completion_tokens + excluded.completion_tokens, \
                     cached_tokens = usage_daily.cached_tokens + excluded.cached_tokens, \
                     cost_micros = usage_daily.cost_micros + excluded.cost_micros",
                )
                .bind(org)
                .bind(day)
                .bind(user)
                .bind(team)
                .bind(key)
                .bind(*model)
                .bind(*currency)
                .bind(t.requests)
                .bind(t.errors)
                .bind(t.prompt_tokens)
                .bind(t.completion_tokens)
                .bind(t.cached_tokens)
                .bind(t.cost_micros)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            inserted.len()
        });
        Ok(u64::try_from(inserted).unwrap_or(u64::MAX))
    }

    /// Raw records of `org`, newest first, optionally within `[from, to)`.
    pub async fn usage_records(
        &self,
        org: OrgId,
        before: Option<Uuid>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<UsageRecord>> {
        let rows: Vec<UsageRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                usage_columns!(),
                " FROM usage_records WHERE org_id = $1 AND ($2 IS NULL OR request_id < $2) \
                 AND ($3 IS NULL OR created_at >= $3) AND ($4 IS NULL OR created_at < $4) \
                 ORDER BY request_id DESC LIMIT $5"
            ))
            .bind(org.as_uuid())
            .bind(before)
            .bind(from.map(to_millis))
            .bind(to.map(to_millis))
            .bind(i64::from(limit))
            .fetch_all(p)
            .await
        })?;
        rows.into_iter().map(UsageRecord::try_from).collect()
    }

    /// One record by request id, whatever its organization (tests and operators).
    pub async fn usage_record(&self, request_id: Uuid) -> Result<Option<UsageRecord>> {
        let row: Option<UsageRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                usage_columns!(),
                " FROM usage_records WHERE request_id = $1"
            ))
            .bind(request_id)
            .fetch_optional(p)
            .await
        })?;
        row.map(UsageRecord::try_from).transpose()
    }

    /// Number of usage records (all organizations).
    pub async fn usage_count(&self) -> Result<i64> {
        Ok(on_backend!(self.reader(), |p| {
            sqlx::query_scalar("SELECT COUNT(*) FROM usage_records")
                .fetch_one(p)
                .await
        })?)
    }

    /// Totals of `org` between day numbers `from_day` and `to_day` (inclusive), read from the
    /// rollups, never from raw records.
    pub async fn usage_totals(
        &self,
        org: OrgId,
        from_day: i64,
        to_day: i64,
        grouping: UsageGrouping,
    ) -> Result<Vec<UsageTotals>> {
        macro_rules! totals_sql {
            ($group:literal) => {
                concat!(
                    "SELECT ",
                    $group,
                    ", currency, CAST(SUM(requests) AS BIGINT), CAST(SUM(errors) AS BIGINT), \
                     CAST(SUM(prompt_tokens) AS BIGINT), CAST(SUM(completion_tokens) AS BIGINT), \
                     CAST(SUM(cached_tokens) AS BIGINT), CAST(SUM(cost_micros) AS BIGINT) \
                     FROM usage_daily WHERE org_id = $1 AND day >= $2 AND day <= $3 GROUP BY ",
                    $group,
                    ", currency ORDER BY ",
                    $group,
                    ", currency"
                )
            };
        }
        macro_rules! fetch {
            ($sql:expr, $g:ty) => {
                on_backend!(self.reader(), |p| {
                    sqlx::query_as::<_, TotalsRow<$g>>($sql)
                        .bind(org.as_uuid())
                        .bind(from_day)
                        .bind(to_day)
                        .fetch_all(p)
                        .await
                })?
            };
        }
        let by_id = |sql| async move {
            let rows: Vec<TotalsRow<Uuid>> = fetch!(sql, Uuid);
            Ok::<_, StoreError>(
                rows.into_iter()
                    .map(|r| totals(r, |id| id_group(grouping, id)))
                    .collect(),
            )
        };
        Ok(match grouping {
            UsageGrouping::Day => fetch!(totals_sql!("day"), i64)
                .into_iter()
                .map(|r| totals(r, |d| UsageGroup::Day(date_of_day(d))))
                .collect(),
            UsageGrouping::Model => fetch!(totals_sql!("model"), String)
                .into_iter()
                .map(|r| totals(r, UsageGroup::Model))
                .collect(),
            UsageGrouping::Key => by_id(totals_sql!("key_id")).await?,
            UsageGrouping::User => by_id(totals_sql!("user_id")).await?,
            UsageGrouping::Team => by_id(totals_sql!("team_id")).await?,
        })
    }

    /// Totals of `org` per day and group (and currency) between day numbers `from_day` and
    /// `to_day` (inclusive), ordered by day, from the rollups: the points of a usage chart.
    pub async fn usage_daily(
        &self,
        org: OrgId,
        from_day: i64,
        to_day: i64,
        grouping: UsageGrouping,
    ) -> Result<Vec<DailyTotals>> {
        macro_rules! daily_sql {
            ($group:literal) => {
                concat!(
                    "SELECT day, ",
                    $group,
                    ", currency, CAST(SUM(requests) AS BIGINT), CAST(SUM(errors) AS BIGINT), \
                     CAST(SUM(prompt_tokens) AS BIGINT), CAST(SUM(completion_tokens) AS BIGINT), \
                     CAST(SUM(cached_tokens) AS BIGINT), CAST(SUM(cost_micros) AS BIGINT) \
                     FROM usage_daily WHERE org_id = $1 AND day >= $2 AND day <= $3 GROUP BY day, ",
                    $group,
                    ", currency ORDER BY day, ",
                    $group,
                    ", currency"
                )
            };
        }
        macro_rules! fetch {
            ($sql:expr, $g:ty) => {
                on_backend!(self.reader(), |p| {
                    sqlx::query_as::<_, DailyRow<$g>>($sql)
                        .bind(org.as_uuid())
                        .bind(from_day)
                        .bind(to_day)
                        .fetch_all(p)
                        .await
                })?
            };
        }
        let by_id = |sql| async move {
            let rows: Vec<DailyRow<Uuid>> = fetch!(sql, Uuid);
            Ok::<_, StoreError>(
                rows.into_iter()
                    .map(|r| daily(r, |id| id_group(grouping, id)))
                    .collect(),
            )
        };
        Ok(match grouping {
            UsageGrouping::Day => fetch!(daily_sql!("day"), i64)
                .into_iter()
                .map(|r| daily(r, |d| UsageGroup::Day(date_of_day(d))))
                .collect(),
            UsageGrouping::Model => fetch!(daily_sql!("model"), String)
                .into_iter()
                .map(|r| daily(r, UsageGroup::Model))
                .collect(),
            UsageGrouping::Key => by_id(daily_sql!("key_id")).await?,
            UsageGrouping::User => by_id(daily_sql!("user_id")).await?,
            UsageGrouping::Team => by_id(daily_sql!("team_id")).await?,
        })
    }

    /// The last `limit` failed requests of `org` (not 2xx, or with an error code), newest
    /// first, through the partial index `usage_records_errors`.
    pub async fn usage_errors(&self, org: OrgId, limit: u32) -> Result<Vec<UsageRecord>> {
        let rows: Vec<UsageRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                usage_columns!(),
                " FROM usage_records WHERE org_id = $1 \
                 AND (status < 200 OR status >= 300 OR error_code IS NOT NULL) \
                 ORDER BY request_id DESC LIMIT $2"
            ))
            .bind(org.as_uuid())
            .bind(i64::from(limit))
            .fetch_all(p)
            .await
        })?;
        rows.into_iter().map(UsageRecord::try_from).collect()
    }

    /// Display names of the keys, users or teams `ids` of `org` (a user's e-mail when they gave
    /// no name). Ids that name nothing (a deleted team, another organization's key, a user who
    /// is neither a member of `org` nor has usage there) are left out. Days and models have no names: nothing is returned.
    pub async fn usage_group_names(
        &self,
        org: OrgId,
        grouping: UsageGrouping,
        ids: &[Uuid],
    ) -> Result<Vec<(Uuid, String)>> {
        // Each statement is its parts joined by the organization id; the id list follows.
        let parts: &[&str] = match grouping {
            UsageGrouping::Day | UsageGrouping::Model => return Ok(Vec::new()),
            UsageGrouping::Key => &[
                "SELECT id, name FROM api_keys WHERE org_id = ",
                " AND id IN (",
            ],
            UsageGrouping::Team => &["SELECT id, name FROM teams WHERE org_id = ", " AND id IN ("],
            // Members, and former members who left usage behind.
            UsageGrouping::User => &[
                "SELECT u.id, CASE WHEN u.name = '' THEN u.email ELSE u.name END FROM users u \
                 WHERE (EXISTS (SELECT 1 FROM org_members m WHERE m.user_id = u.id AND m.org_id = ",
                ") OR EXISTS (SELECT 1 FROM usage_daily d WHERE d.user_id = u.id AND d.org_id = ",
                ")) AND u.id IN (",
            ],
        };
        let mut names = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(NAME_LOOKUP_CHUNK) {
            let rows: Vec<(Uuid, String)> = on_backend!(self.reader(), |p| {
                let mut qb = sqlx::QueryBuilder::new("");
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 {
                        qb.push_bind(org.as_uuid());
                    }
                    qb.push(*part);
                }
                let mut list = qb.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                qb.push(")");
                qb.build_query_as().fetch_all(p).await
            })?;
            names.extend(rows);
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_cut_into_few_padded_statements_of_the_cached_sizes() {
        use Placeholders::Numbered;
        for len in [
            0usize, 1, 2, 3, 4, 5, 17, 64, 65, 257, 400, 1000, 1024, 1025, 2100, 3072,
        ] {
            let rows: Vec<usize> = (0..len).collect();
            let chunks: Vec<(&[usize], usize)> = insert_chunks(&rows).collect();
            // As few statements as the largest size allows, in order, every record once.
            assert_eq!(chunks.len(), len.div_ceil(INSERT_MAX), "{len} rows");
            let joined: Vec<usize> = chunks.iter().flat_map(|(c, _)| c.iter().copied()).collect();
            assert_eq!(joined, rows, "{len} rows");
            for (chunk, size) in &chunks {
                // The smallest cached size that holds the chunk.
                assert!(size.is_power_of_two() && *size <= INSERT_MAX);
                assert!(matches!(
                    insert_sql(Numbered, *size, false),
                    Cow::Borrowed(_)
                ));
                assert!(*size >= chunk.len() && *size < 2 * chunk.len());
                let p: Vec<usize> = padded(chunk, *size).copied().collect();
                assert_eq!(p.len(), *size);
                assert_eq!(p.get(..chunk.len()), Some(*chunk));
                assert!(p.iter().skip(chunk.len()).all(|r| Some(r) == chunk.last()));
            }
        }
        let sizes = |n: usize| {
            let rows = vec![0u8; n];
            insert_chunks(&rows)
                .map(|(c, size)| (c.len(), size))
                .collect::<Vec<_>>()
        };
        assert_eq!(sizes(1000), [(1000, 1024)]);
        assert_eq!(sizes(2100), [(1024, 1024), (1024, 1024), (52, 64)]);
        assert_eq!(sizes(5), [(5, 8)]);
        assert_eq!(sizes(400), [(400, 512)]);
        assert_eq!(sizes(0), []);
    }

    #[test]
    fn insert_statements_place_every_value_and_are_built_once() {
        use Placeholders::{Anonymous, Numbered};
        let one = insert_sql(Numbered, 1, false);
        assert!(one.starts_with("INSERT INTO usage_records (request_id, org_id, "));
        assert!(one.ends_with(
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18, $19, $20, $21) ON CONFLICT (request_id) DO NOTHING"
        ));
        let four = insert_sql(Numbered, 4, true);
        assert!(four.contains("$21), ($22, "));
        assert!(four.ends_with("$84) ON CONFLICT (request_id) DO NOTHING RETURNING request_id"));
        assert_eq!(four.matches('$').count(), 4 * 21);
        let anonymous = insert_sql(Anonymous, 16, true);
        assert_eq!(anonymous.matches('?').count(), 16 * 21);
        assert!(!anonymous.contains('$'));
        assert!(anonymous.ends_with("?) ON CONFLICT (request_id) DO NOTHING RETURNING request_id"));
        // The sizes batches are cut into come from the cache, per style; any other is built
        // each time.
        assert!(matches!(
            insert_sql(Anonymous, INSERT_MAX, false),
            Cow::Borrowed(_)
        ));
        assert!(std::ptr::eq(
            insert_sql(Numbered, 64, true).as_ref(),
            insert_sql(Numbered, 64, true).as_ref()
        ));
        assert_ne!(
            insert_sql(Numbered, 64, true),
            insert_sql(Anonymous, 64, true)
        );
        let odd = insert_sql(Numbered, 3, false);
        assert!(matches!(odd, Cow::Owned(_)));
        assert_eq!(odd.matches('$').count(), 63);
    }
}
