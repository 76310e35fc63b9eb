//! AI Hub API keys. Only the SHA-256 of a key is stored; the secret exists once, in the
//! response that created it. Every query but the gateway's lookup-by-hash is scoped by org.

use aihub_core::time::{from_millis, to_millis};
use aihub_core::{KeyId, OrgId, TeamId, UserId};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Result, Store, StoreError, on_backend};

/// A key as the management API sees it: never its secret, never its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: KeyId,
    pub org_id: OrgId,
    pub team_id: Option<TeamId>,
    /// The user whose key this is; their losing access (disabled, removed) stops the key.
    pub owner_user_id: Option<UserId>,
    pub created_by: UserId,
    pub name: String,
    /// Non-secret leading characters shown in lists, e.g. `sk-aihub-AbC123`.
    pub prefix: String,
    /// Models the key may call; `None` means every model.
    pub models: Option<Vec<String>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub struct NewApiKey {
    pub key: ApiKey,
    pub key_hash: [u8; 32],
}

/// A partial update; `None` leaves a field unchanged, `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct KeyChanges {
    pub name: Option<String>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub models: Option<Option<Vec<String>>>,
}

/// What the gateway needs to decide whether a presented key may be used.
#[derive(Debug, Clone)]
pub struct KeyAuth {
    pub key: ApiKey,
    pub key_hash: Vec<u8>,
    /// The owner's account is disabled by a platform admin.
    pub owner_disabled: bool,
    /// The owner is still a member of the key's organization.
    pub owner_is_member: bool,
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: Uuid,
    org_id: Uuid,
    team_id: Option<Uuid>,
    owner_user_id: Option<Uuid>,
    created_by: Uuid,
    name: String,
    prefix: String,
    models: Option<String>,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<KeyRow> for ApiKey {
    type Error = StoreError;

    fn try_from(r: KeyRow) -> Result<Self> {
        let models = r
            .models
            .map(|m| serde_json::from_str::<Vec<String>>(&m))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("api_keys.models: {e}")))?;
        Ok(ApiKey {
            id: KeyId::from_uuid(r.id),
            org_id: OrgId::from_uuid(r.org_id),
            team_id: r.team_id.map(TeamId::from_uuid),
            owner_user_id: r.owner_user_id.map(UserId::from_uuid),
            created_by: UserId::from_uuid(r.created_by),
            name: r.name,
            prefix: r.prefix,
            models,
            expires_at: r.expires_at.map(from_millis),
            revoked_at: r.revoked_at.map(from_millis),
            last_used_at: r.last_used_at.map(from_millis),
            created_at: from_millis(r.created_at),
            updated_at: from_millis(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
struct KeyAuthRow {
    #[sqlx(flatten)]
    key: KeyRow,
    key_hash: Vec<u8>,
    owner_disabled: bool,
    owner_is_member: bool,
}

macro_rules! key_columns {
    () => {
        "k.id, k.org_id, k.team_id, k.owner_user_id, k.created_by, k.name, k.prefix, k.models, \
         k.expires_at, k.revoked_at, k.last_used_at, k.created_at, k.updated_at"
    };
}

/// The same columns unqualified: SQLite's `RETURNING` does not accept table aliases.
macro_rules! key_returning {
    () => {
        "id, org_id, team_id, owner_user_id, created_by, name, prefix, models, expires_at, \
         revoked_at, last_used_at, created_at, updated_at"
    };
}

fn models_json(models: Option<&Vec<String>>) -> Option<String> {
    // Serializing a list of strings cannot fail.
    models.map(|m| serde_json::to_string(m).unwrap_or_else(|_| "[]".to_owned()))
}

impl Store {
    pub async fn insert_key(&self, new: &NewApiKey) -> Result<()> {
        let k = &new.key;
        on_backend!(self.writer(), |p| {
            sqlx::query(
                "INSERT INTO api_keys (id, org_id, team_id, owner_user_id, created_by, name, \
                 prefix, key_hash, models, expires_at, revoked_at, last_used_at, created_at, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(k.id.as_uuid())
            .bind(k.org_id.as_uuid())
            .bind(k.team_id.map(|t| t.as_uuid()))
            .bind(k.owner_user_id.map(|u| u.as_uuid()))
            .bind(k.created_by.as_uuid())
            .bind(&k.name)
            .bind(&k.prefix)
            .bind(&new.key_hash[..])
            .bind(models_json(k.models.as_ref()))
            .bind(k.expires_at.map(to_millis))
            .bind(k.revoked_at.map(to_millis))
            .bind(k.last_used_at.map(to_millis))
            .bind(to_millis(k.created_at))
            .bind(to_millis(k.updated_at))
            .execute(p)
            .await
            .map(|_| ())
            .map_err(StoreError::from_write)
        })?;
        Ok(())
    }

    /// Keys of `org`, newest first, after the cursor `before`.
    pub async fn list_keys(
        &self,
        org: OrgId,
        before: Option<KeyId>,
        limit: u32,
    ) -> Result<Vec<ApiKey>> {
        let rows: Vec<KeyRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                key_columns!(),
                " FROM api_keys k WHERE k.org_id = $1 AND ($2 IS NULL OR k.id < $2) \
                 ORDER BY k.id DESC LIMIT $3"
            ))
            .bind(org.as_uuid())
            .bind(before.map(|b| b.as_uuid()))
            .bind(i64::from(limit))
            .fetch_all(p)
            .await
        })?;
        rows.into_iter().map(ApiKey::try_from).collect()
    }

    /// One key of `org`. A key of another organization is simply not found.
    pub async fn key(&self, org: OrgId, id: KeyId) -> Result<Option<ApiKey>> {
        let row: Option<KeyRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                key_columns!(),
                " FROM api_keys k WHERE k.org_id = $1 AND k.id = $2"
            ))
            .bind(org.as_uuid())
            .bind(id.as_uuid())
            .fetch_optional(p)
            .await
        })?;
        row.map(ApiKey::try_from).transpose()
    }

    /// Whether `user` is in `team` of `org`.
    pub async fn is_team_member(&self, org: OrgId, team: TeamId, user: UserId) -> Result<bool> {
        let found: i64 = on_backend!(self.reader(), |p| {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM team_members \
                 WHERE org_id = $1 AND team_id = $2 AND user_id = $3",
            )
            .bind(org.as_uuid())
            .bind(team.as_uuid())
            .bind(user.as_uuid())
            .fetch_one(p)
            .await
        })?;
        Ok(found > 0)
    }

    /// Applies `changes` to a live (unrevoked) key of `org`; `None` if there is no such key.
    pub async fn update_key(
        &self,
        org: OrgId,
        id: KeyId,
        changes: &KeyChanges,
        now: DateTime<Utc>,
    ) -> Result<Option<ApiKey>> {
        let row: Option<KeyRow> = on_backend!(self.writer(), |p| {
            sqlx::query_as(concat!(
                "UPDATE api_keys SET name = COALESCE($3, name), \
                 expires_at = CASE WHEN $4 THEN $5 ELSE expires_at END, \
                 models = CASE WHEN $6 THEN $7 ELSE models END, updated_at = $8 \
                 WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING ",
                key_returning!()
            ))
            .bind(org.as_uuid())
            .bind(id.as_uuid())
            .bind(changes.name.as_deref())
            .bind(changes.expires_at.is_some())
            .bind(changes.expires_at.flatten().map(to_millis))
            .bind(changes.models.is_some())
            .bind(models_json(
                changes.models.as_ref().and_then(Option::as_ref),
            ))
            .bind(to_millis(now))
            .fetch_optional(p)
            .await
        })?;
        row.map(ApiKey::try_from).transpose()
    }

    /// Revokes a key of `org` (idempotent: the first revocation time is kept). Returns the key and
    /// its hash so caches can forget it, or `None` if `org` has no such key.
    pub async fn revoke_key(
        &self,
        org: OrgId,
        id: KeyId,
        now: DateTime<Utc>,
    ) -> Result<Option<(ApiKey, Vec<u8>)>> {
        let row: Option<(KeyRow, Vec<u8>)> = on_backend!(self.writer(), |p| {
            sqlx::query_as::<_, KeyHashRow>(concat!(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3), \
                 updated_at = $3 WHERE org_id = $1 AND id = $2 RETURNING ",
                key_returning!(),
                ", key_hash"
            ))
            .bind(org.as_uuid())
            .bind(id.as_uuid())
            .bind(to_millis(now))
            .fetch_optional(p)
            .await
            .map(|r| r.map(|r| (r.key, r.key_hash)))
        })?;
        row.map(|(k, h)| Ok((ApiKey::try_from(k)?, h))).transpose()
    }

    /// Replaces the secret of a live key of `org`. Returns the updated key and the *old* hash, so
    /// caches can forget the old secret at once.
    pub async fn rotate_key(
        &self,
        org: OrgId,
        id: KeyId,
        new_prefix: &str,
        new_hash: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Option<(ApiKey, Vec<u8>)>> {
        let row: Option<(KeyRow, Vec<u8>)> = on_backend!(self.writer(), |p| {
            let mut tx = p.begin().await?;
            let old: Option<Vec<u8>> = sqlx::query_scalar(
                "SELECT key_hash FROM api_keys WHERE org_id = $1 AND id = $2 \
                 AND revoked_at IS NULL",
            )
            .bind(org.as_uuid())
            .bind(id.as_uuid())
            .fetch_optional(&mut *tx)
            .await?;
            match old {
                None => None,
                Some(old) => {
                    let row: KeyRow = sqlx::query_as(concat!(
                        "UPDATE api_keys SET prefix = $3, key_hash = $4, updated_at = $5 \
                         WHERE org_id = $1 AND id = $2 RETURNING ",
                        key_returning!()
                    ))
                    .bind(org.as_uuid())
                    .bind(id.as_uuid())
                    .bind(new_prefix)
                    .bind(&new_hash[..])
                    .bind(to_millis(now))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(StoreError::from_write)?;
                    tx.commit().await?;
                    Some((row, old))
                }
            }
        });
        row.map(|(k, h)| Ok((ApiKey::try_from(k)?, h))).transpose()
    }

    /// The gateway's lookup: a key by the SHA-256 of its secret, with what decides whether it may
    /// still be used. Not org-scoped: the hash *is* the credential.
    pub async fn key_auth_by_hash(&self, hash: &[u8; 32]) -> Result<Option<KeyAuth>> {
        let row: Option<KeyAuthRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                key_columns!(),
                ", k.key_hash, \
                 (u.disabled_at IS NOT NULL) AS owner_disabled, \
                 (k.owner_user_id IS NULL OR m.user_id IS NOT NULL) AS owner_is_member \
                 FROM api_keys k \
                 JOIN orgs o ON o.id = k.org_id AND o.deleted_at IS NULL \
                 LEFT JOIN users u ON u.id = k.owner_user_id \
                 LEFT JOIN org_members m ON m.org_id = k.org_id AND m.user_id = k.owner_user_id \
                 WHERE k.key_hash = $1"
            ))
            .bind(&hash[..])
            .fetch_optional(p)
            .await
        })?;
        row.map(|r| {
            Ok(KeyAuth {
                key: ApiKey::try_from(r.key)?,
                key_hash: r.key_hash,
                owner_disabled: r.owner_disabled,
                owner_is_member: r.owner_is_member,
            })
        })
        .transpose()
    }

    /// Writes back when keys were last used, in one transaction; never moves a time backwards.
    pub async fn record_keys_used(&self, used: &[(KeyId, DateTime<Utc>)]) -> Result<()> {
        if used.is_empty() {
            return Ok(());
        }
        on_backend!(self.writer(), |p| {
            let mut tx = p.begin().await?;
            for (id, at) in used {
                sqlx::query(
                    "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 \
                     AND (last_used_at IS NULL OR last_used_at < $2)",
                )
                .bind(id.as_uuid())
                .bind(to_millis(*at))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}

#[derive(sqlx::FromRow)]
struct KeyHashRow {
    #[sqlx(flatten)]
    key: KeyRow,
    key_hash: Vec<u8>,
}
