//! Sign-in sessions. The bearer token is random; only its SHA-256 is stored, so a database dump
//! cannot be replayed as a login. Deleting the row ends the session everywhere at once.

use aihub_core::time::{from_millis, to_millis};
use aihub_core::{SessionId, UserId};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::users::UserRow;
use crate::{Result, Store, StoreError, User, on_backend};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A session found by its token hash, with its user.
#[derive(Debug, Clone)]
pub struct SessionAuth {
    pub session: Session,
    pub user: User,
}

#[derive(sqlx::FromRow)]
struct SessionUserRow {
    session_id: Uuid,
    session_created_at: i64,
    expires_at: i64,
    last_seen_at: i64,
    ip: Option<String>,
    user_agent: Option<String>,
    #[sqlx(flatten)]
    user: UserRow,
}

impl Store {
    pub async fn insert_session(&self, s: &Session, token_hash: &[u8; 32]) -> Result<()> {
        on_backend!(self.writer(), |p| {
            sqlx::query(
                "INSERT INTO sessions (id, user_id, token_hash, created_at, expires_at, \
                 last_seen_at, ip, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(s.id.as_uuid())
            .bind(s.user_id.as_uuid())
            .bind(&token_hash[..])
            .bind(to_millis(s.created_at))
            .bind(to_millis(s.expires_at))
            .bind(to_millis(s.last_seen_at))
            .bind(s.ip.as_deref())
            .bind(s.user_agent.as_deref())
            .execute(p)
            .await
            .map(|_| ())
            .map_err(StoreError::from_write)
        })?;
        Ok(())
    }

    pub async fn session_by_token_hash(
        &self,
        token_hash: &[u8; 32],
    ) -> Result<Option<SessionAuth>> {
        let row: Option<SessionUserRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(
                "SELECT s.id AS session_id, s.created_at AS session_created_at, s.expires_at, \
                 s.last_seen_at, s.ip, s.user_agent, u.id, u.email, u.name, u.password_hash, \
                 u.is_platform_admin, u.disabled_at, u.created_at, u.updated_at \
                 FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1",
            )
            .bind(&token_hash[..])
            .fetch_optional(p)
            .await
        })?;
        let Some(r) = row else { return Ok(None) };
        let user = User::try_from(r.user)?;
        Ok(Some(SessionAuth {
            session: Session {
                id: SessionId::from_uuid(r.session_id),
                user_id: user.id,
                created_at: from_millis(r.session_created_at),
                expires_at: from_millis(r.expires_at),
                last_seen_at: from_millis(r.last_seen_at),
                ip: r.ip,
                user_agent: r.user_agent,
            },
            user,
        }))
    }

    pub async fn touch_session(&self, id: SessionId, now: DateTime<Utc>) -> Result<()> {
        on_backend!(self.writer(), |p| {
            sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE id = $1")
                .bind(id.as_uuid())
                .bind(to_millis(now))
                .execute(p)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    pub async fn delete_session(&self, id: SessionId) -> Result<bool> {
        let n = on_backend!(self.writer(), |p| {
            sqlx::query("DELETE FROM sessions WHERE id = $1")
                .bind(id.as_uuid())
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(n == 1)
    }

    /// Ends every session of `user` except `keep` (the one making the request, if any).
    pub async fn delete_user_sessions(&self, user: UserId, keep: Option<SessionId>) -> Result<u64> {
        let n = on_backend!(self.writer(), |p| {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND ($2 IS NULL OR id <> $2)")
                .bind(user.as_uuid())
                .bind(keep.map(|k| k.as_uuid()))
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(n)
    }

    /// Deletes sessions past their absolute expiry or idle since `idle_before`.
    pub async fn delete_stale_sessions(
        &self,
        now: DateTime<Utc>,
        idle_before: DateTime<Utc>,
    ) -> Result<u64> {
        let n = on_backend!(self.writer(), |p| {
            sqlx::query("DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at < $2")
                .bind(to_millis(now))
                .bind(to_millis(idle_before))
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(n)
    }
}
