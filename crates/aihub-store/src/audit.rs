//! The audit log: append-only records in one hash chain per organization (and one platform
//! chain for records outside any organization). [`Store::append_audit`] is the only writer; it
//! links each record to its chain's head inside one transaction. [`record_hash`] is the chain's
//! definition, used by the writer and by verification alike.

use aihub_core::OrgId;
use aihub_core::time::{from_millis, to_millis};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{PoolRef, Result, Store, StoreError, on_backend};

/// The chain of records that belong to no organization (sign-ins, platform administration).
pub const PLATFORM_CHAIN: Uuid = Uuid::nil();

/// The hash a chain starts from.
pub const GENESIS: [u8; 32] = [0; 32];

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorType {
    /// A signed-in user (`actor_id` is their user id).
    User,
    /// The operator's command line or the server itself.
    System,
    /// Nobody signed in: a failed sign-in, say.
    Anonymous,
}

impl ActorType {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ActorType::User => "user",
            ActorType::System => "system",
            ActorType::Anonymous => "anonymous",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "user" => Ok(ActorType::User),
            "system" => Ok(ActorType::System),
            "anonymous" => Ok(ActorType::Anonymous),
            other => Err(StoreError::Corrupt(format!("audit actor type {other:?}"))),
        }
    }
}

/// What a service asks to record. `before` and `after` are JSON text, already redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditRecord {
    pub id: Uuid,
    pub org_id: Option<OrgId>,
    pub at: DateTime<Utc>,
    pub actor_type: ActorType,
    pub actor_id: Option<Uuid>,
    pub actor_label: Option<String>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<Uuid>,
}

/// A stored record with its place in its chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub chain_id: Uuid,
    pub seq: i64,
    pub record: NewAuditRecord,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// The head of one chain: its last sequence number and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub chain_id: Uuid,
    pub seq: i64,
    pub hash: Vec<u8>,
}

/// Which records of a chain to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor_id: Option<Uuid>,
    /// An exact action (`key.create`), or every action of a noun when it ends with a dot
    /// (`key.`).
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// Inclusive lower bound on `at`.
    pub since: Option<DateTime<Utc>>,
    /// Exclusive upper bound on `at`.
    pub until: Option<DateTime<Utc>>,
}

/// Reading direction through a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Newest first; the cursor is an exclusive upper bound on `seq`.
    NewestFirst,
    /// Oldest first; the cursor is an exclusive lower bound on `seq`.
    OldestFirst,
}

/// The chain a record of `org` belongs to.
#[must_use]
pub fn chain_of(org: Option<OrgId>) -> Uuid {
    org.map_or(PLATFORM_CHAIN, |o| o.as_uuid())
}

/// The chain's definition: SHA-256 over the previous hash, then every field of the record in a
/// fixed order, each as a JSON value of a JSON array (unambiguous: strings are quoted and
/// escaped, absent values are `null`).
#[must_use]
pub fn record_hash(prev_hash: &[u8], chain_id: Uuid, seq: i64, r: &NewAuditRecord) -> [u8; 32] {
    let fields = serde_json::json!([
        r.id,
        chain_id,
        seq,
        r.org_id.map(|o| o.as_uuid()),
        to_millis(r.at),
        r.actor_type.as_str(),
        r.actor_id,
        r.actor_label,
        r.action,
        r.target_type,
        r.target_id,
        r.before,
        r.after,
        r.ip,
        r.user_agent,
        r.request_id,
    ]);
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(fields.to_string().as_bytes());
    h.finalize().into()
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: Uuid,
    chain_id: Uuid,
    seq: i64,
    org_id: Option<Uuid>,
    at: i64,
    actor_type: String,
    actor_id: Option<Uuid>,
    actor_label: Option<String>,
    action: String,
    target_type: String,
    target_id: Option<String>,
    before_json: Option<String>,
    after_json: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    request_id: Option<Uuid>,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
}

impl TryFrom<AuditRow> for AuditRecord {
    type Error = StoreError;

    fn try_from(r: AuditRow) -> Result<Self> {
        Ok(AuditRecord {
            chain_id: r.chain_id,
            seq: r.seq,
            record: NewAuditRecord {
                id: r.id,
                org_id: r.org_id.map(OrgId::from_uuid),
                at: from_millis(r.at),
                actor_type: ActorType::parse(&r.actor_type)?,
                actor_id: r.actor_id,
                actor_label: r.actor_label,
                action: r.action,
                target_type: r.target_type,
                target_id: r.target_id,
                before: r.before_json,
                after: r.after_json,
                ip: r.ip,
                user_agent: r.user_agent,
                request_id: r.request_id,
            },
            prev_hash: r.prev_hash,
            hash: r.hash,
        })
    }
}

const COLUMNS: &str = "id, chain_id, seq, org_id, at, actor_type, actor_id, actor_label, action, \
     target_type, target_id, before_json, after_json, ip, user_agent, request_id, prev_hash, hash";

const INSERT: &str = "INSERT INTO audit_logs (id, chain_id, seq, org_id, at, actor_type, \
     actor_id, actor_label, action, target_type, target_id, before_json, after_json, ip, \
     user_agent, request_id, prev_hash, hash) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)";

const CREATE_HEAD: &str =
    "INSERT INTO audit_heads (chain_id, seq, hash) VALUES ($1, 0, $2) ON CONFLICT DO NOTHING";
const UPDATE_HEAD: &str = "UPDATE audit_heads SET seq = $2, hash = $3 WHERE chain_id = $1";

macro_rules! insert_record {
    ($tx:expr, $chain:expr, $seq:expr, $r:expr, $prev:expr, $hash:expr) => {
        sqlx::query(INSERT)
            .bind($r.id)
            .bind($chain)
            .bind($seq)
            .bind($r.org_id.map(|o| o.as_uuid()))
            .bind(to_millis($r.at))
            .bind($r.actor_type.as_str())
            .bind($r.actor_id)
            .bind($r.actor_label.as_deref())
            .bind($r.action.as_str())
            .bind($r.target_type.as_str())
            .bind($r.target_id.as_deref())
            .bind($r.before.as_deref())
            .bind($r.after.as_deref())
            .bind($r.ip.as_deref())
            .bind($r.user_agent.as_deref())
            .bind($r.request_id)
            .bind($prev)
            .bind($hash)
            .execute(&mut *$tx)
            .await
            .map_err(StoreError::from_write)
    };
}

impl Store {
    /// Appends a record to its organization's chain (or the platform chain) and returns it with
    /// its sequence number and hash. The chain head is locked for the transaction, so concurrent
    /// appends — from this or any other instance — are linked one after another.
    pub async fn append_audit(&self, record: &NewAuditRecord) -> Result<AuditRecord> {
        let chain = chain_of(record.org_id);
        let (seq, prev, hash) = match self.writer() {
            PoolRef::Postgres(p) => {
                let mut tx = p.begin().await?;
                sqlx::query(CREATE_HEAD)
                    .bind(chain)
                    .bind(&GENESIS[..])
                    .execute(&mut *tx)
                    .await?;
                let (head_seq, prev): (i64, Vec<u8>) = sqlx::query_as(
                    "SELECT seq, hash FROM audit_heads WHERE chain_id = $1 FOR UPDATE",
                )
                .bind(chain)
                .fetch_one(&mut *tx)
                .await?;
                let seq = head_seq + 1;
                let hash = record_hash(&prev, chain, seq, record);
                insert_record!(tx, chain, seq, record, &prev[..], &hash[..])?;
                sqlx::query(UPDATE_HEAD)
                    .bind(chain)
                    .bind(seq)
                    .bind(&hash[..])
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                (seq, prev, hash)
            }
            // One writer connection: the transaction is the only one running.
            PoolRef::Sqlite(p) => {
                let mut tx = p.begin().await?;
                sqlx::query(CREATE_HEAD)
                    .bind(chain)
                    .bind(&GENESIS[..])
                    .execute(&mut *tx)
                    .await?;
                let (head_seq, prev): (i64, Vec<u8>) =
                    sqlx::query_as("SELECT seq, hash FROM audit_heads WHERE chain_id = $1")
                        .bind(chain)
                        .fetch_one(&mut *tx)
                        .await?;
                let seq = head_seq + 1;
                let hash = record_hash(&prev, chain, seq, record);
                insert_record!(tx, chain, seq, record, &prev[..], &hash[..])?;
                sqlx::query(UPDATE_HEAD)
                    .bind(chain)
                    .bind(seq)
                    .bind(&hash[..])
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                (seq, prev, hash)
            }
        };
        Ok(AuditRecord {
            chain_id: chain,
            seq,
            record: record.clone(),
            prev_hash: prev,
            hash: hash.to_vec(),
        })
    }

    /// Up to `limit` records of `chain` matching `filter`, from `cursor` (exclusive) in `order`.
    pub async fn list_audit(
        &self,
        chain: Uuid,
        filter: &AuditFilter,
        cursor: Option<i64>,
        order: Order,
        limit: u32,
    ) -> Result<Vec<AuditRecord>> {
        let (bound, direction) = match order {
            Order::NewestFirst => ("seq < $2", "DESC"),
            Order::OldestFirst => ("seq > $2", "ASC"),
        };
        let cursor = cursor.unwrap_or(match order {
            Order::NewestFirst => i64::MAX,
            Order::OldestFirst => 0,
        });
        let (exact, prefix) = match filter.action.as_deref() {
            // `_` and `%` in the noun are literal, not wildcards.
            Some(a) if a.ends_with('.') => (
                None,
                Some(format!(
                    "{}%",
                    a.replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_")
                )),
            ),
            Some(a) => (Some(a), None),
            None => (None, None),
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_logs WHERE chain_id = $1 AND {bound} \
             AND ($3 IS NULL OR actor_id = $3) \
             AND ($4 IS NULL OR action = $4) \
             AND ($5 IS NULL OR action LIKE $5 ESCAPE '\\') \
             AND ($6 IS NULL OR target_type = $6) \
             AND ($7 IS NULL OR target_id = $7) \
             AND ($8 IS NULL OR at >= $8) \
             AND ($9 IS NULL OR at < $9) \
             ORDER BY seq {direction} LIMIT $10"
        );
        let rows: Vec<AuditRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(&sql)
                .bind(chain)
                .bind(cursor)
                .bind(filter.actor_id)
                .bind(exact)
                .bind(prefix.as_deref())
                .bind(filter.target_type.as_deref())
                .bind(filter.target_id.as_deref())
                .bind(filter.since.map(to_millis))
                .bind(filter.until.map(to_millis))
                .bind(i64::from(limit))
                .fetch_all(p)
                .await
        })?;
        rows.into_iter().map(AuditRecord::try_from).collect()
    }

    /// Every chain's head, platform chain included.
    pub async fn audit_heads(&self) -> Result<Vec<ChainHead>> {
        let rows: Vec<(Uuid, i64, Vec<u8>)> = on_backend!(self.reader(), |p| {
            sqlx::query_as("SELECT chain_id, seq, hash FROM audit_heads ORDER BY chain_id")
                .fetch_all(p)
                .await
        })?;
        Ok(rows
            .into_iter()
            .map(|(chain_id, seq, hash)| ChainHead {
                chain_id,
                seq,
                hash,
            })
            .collect())
    }

    /// Chains that have records but no head (a head row deleted by hand).
    pub async fn audit_chains_without_head(&self) -> Result<Vec<Uuid>> {
        on_backend!(self.reader(), |p| {
            sqlx::query_scalar(
                "SELECT DISTINCT l.chain_id FROM audit_logs l \
                 LEFT JOIN audit_heads h ON h.chain_id = l.chain_id \
                 WHERE h.chain_id IS NULL ORDER BY l.chain_id",
            )
            .fetch_all(p)
            .await
        })
        .map_err(StoreError::from)
    }
}

/// Test support: writing the log the way someone with access to the database could, outside the
/// rules [`Store::append_audit`] keeps.
#[cfg(feature = "testing")]
impl Store {
    /// Writes stored records exactly as given — sequence numbers, links and hashes included — and
    /// moves each chain's head to the last of them, in one transaction: for tests that need a
    /// long chain quickly, or a broken one.
    pub async fn insert_audit_rows(&self, rows: &[AuditRecord]) -> Result<()> {
        const SET_HEAD: &str = "INSERT INTO audit_heads (chain_id, seq, hash) VALUES ($1, $2, $3) \
             ON CONFLICT (chain_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash";
        // Only each chain's last record moves its head.
        let mut heads = std::collections::BTreeMap::new();
        for r in rows {
            heads.insert(r.chain_id, (r.seq, &r.hash[..]));
        }
        on_backend!(self.writer(), |p| {
            let mut tx = p.begin().await?;
            for r in rows {
                insert_record!(
                    tx,
                    r.chain_id,
                    r.seq,
                    r.record,
                    &r.prev_hash[..],
                    &r.hash[..]
                )?;
            }
            for (chain, (seq, hash)) in &heads {
                sqlx::query(SET_HEAD)
                    .bind(*chain)
                    .bind(*seq)
                    .bind(*hash)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Runs `sql` — one or more statements, no binds — as written: to tamper with the log in a
    /// test (drop a trigger, then alter or delete a row).
    pub async fn tamper_with_audit_log(&self, sql: &str) -> Result<()> {
        on_backend!(self.writer(), |p| sqlx::raw_sql(sql)
            .execute(p)
            .await
            .map(|_| ()))?;
        Ok(())
    }
}
