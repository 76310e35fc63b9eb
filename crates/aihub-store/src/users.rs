//! Users: accounts that sign in. Creating a user also creates their personal organization, in
//! one transaction, so no user ever exists without a tenant.

use aihub_core::time::{from_millis, to_millis};
use aihub_core::{Email, OrgId, UserId};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::orgs::Org;
use crate::{Result, Store, StoreError, on_backend};

/// A stored user. `password_hash` is a PHC string; `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub name: String,
    pub password_hash: String,
    pub is_platform_admin: bool,
    pub disabled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("name", &self.name)
            .field("password_hash", &"[REDACTED]")
            .field("is_platform_admin", &self.is_platform_admin)
            .field("disabled_at", &self.disabled_at)
            .finish_non_exhaustive()
    }
}

/// What the accounts service hands the store to create a user with a personal organization.
pub struct NewUser {
    pub user: User,
    pub personal_org: Org,
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: Uuid,
    email: String,
    name: String,
    password_hash: String,
    is_platform_admin: bool,
    disabled_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(r: UserRow) -> Result<Self> {
        Ok(User {
            id: UserId::from_uuid(r.id),
            email: Email::parse(&r.email).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            name: r.name,
            password_hash: r.password_hash,
            is_platform_admin: r.is_platform_admin,
            disabled_at: r.disabled_at.map(from_millis),
            created_at: from_millis(r.created_at),
            updated_at: from_millis(r.updated_at),
        })
    }
}

/// Column list of [`UserRow`], spliced into statements with `concat!` so SQL stays static text.
macro_rules! user_columns {
    () => {
        "id, email, name, password_hash, is_platform_admin, disabled_at, created_at, updated_at"
    };
}

impl Store {
    /// Inserts the user, their personal organization and their Owner membership atomically.
    /// Fails with [`StoreError::Conflict`] if the e-mail address is taken.
    pub async fn create_user_with_personal_org(&self, new: &NewUser) -> Result<()> {
        let u = &new.user;
        let o = &new.personal_org;
        on_backend!(self.writer(), |p| {
            let mut tx = p.begin().await?;
            sqlx::query(
                "INSERT INTO users (id, email, name, password_hash, is_platform_admin, \
                 disabled_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(u.id.as_uuid())
            .bind(u.email.as_str())
            .bind(&u.name)
            .bind(&u.password_hash)
            .bind(u.is_platform_admin)
            .bind(u.disabled_at.map(to_millis))
            .bind(to_millis(u.created_at))
            .bind(to_millis(u.updated_at))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_write)?;
            sqlx::query(
                "INSERT INTO orgs (id, name, is_personal, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(o.id.as_uuid())
            .bind(&o.name)
            .bind(o.is_personal)
            .bind(to_millis(o.created_at))
            .bind(to_millis(o.updated_at))
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO org_members (org_id, user_id, role, created_at) \
                 VALUES ($1, $2, 'owner', $3)",
            )
            .bind(o.id.as_uuid())
            .bind(u.id.as_uuid())
            .bind(to_millis(o.created_at))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn user_by_id(&self, id: UserId) -> Result<Option<User>> {
        let row: Option<UserRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE id = $1"
            ))
            .bind(id.as_uuid())
            .fetch_optional(p)
            .await
        })?;
        row.map(User::try_from).transpose()
    }

    pub async fn user_by_email(&self, email: &Email) -> Result<Option<User>> {
        let row: Option<UserRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE email = $1"
            ))
            .bind(email.as_str())
            .fetch_optional(p)
            .await
        })?;
        row.map(User::try_from).transpose()
    }

    /// Users newest first, `limit` at a time, starting after `before` (a cursor).
    pub async fn list_users(&self, before: Option<UserId>, limit: u32) -> Result<Vec<User>> {
        let rows: Vec<UserRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"
            ))
            .bind(before.map(|b| b.as_uuid()))
            .bind(i64::from(limit))
            .fetch_all(p)
            .await
        })?;
        rows.into_iter().map(User::try_from).collect()
    }

    pub async fn set_password_hash(
        &self,
        id: UserId,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let done = on_backend!(self.writer(), |p| {
            sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1")
                .bind(id.as_uuid())
                .bind(password_hash)
                .bind(to_millis(now))
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(done == 1)
    }

    /// Disables (`Some(time)`) or re-enables (`None`) a user and, when disabling, deletes every
    /// session of theirs in the same transaction. Returns false if the user does not exist.
    pub async fn set_user_disabled(
        &self,
        id: UserId,
        disabled_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let done = on_backend!(self.writer(), |p| {
            let mut tx = p.begin().await?;
            let n = sqlx::query("UPDATE users SET disabled_at = $2, updated_at = $3 WHERE id = $1")
                .bind(id.as_uuid())
                .bind(disabled_at.map(to_millis))
                .bind(to_millis(now))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if disabled_at.is_some() {
                sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            n
        });
        Ok(done == 1)
    }

    pub async fn set_platform_admin(
        &self,
        id: UserId,
        admin: bool,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let done = on_backend!(self.writer(), |p| {
            sqlx::query("UPDATE users SET is_platform_admin = $2, updated_at = $3 WHERE id = $1")
                .bind(id.as_uuid())
                .bind(admin)
                .bind(to_millis(now))
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(done == 1)
    }

    /// The organization created with the user at registration.
    pub async fn personal_org_of(&self, user: UserId) -> Result<Option<OrgId>> {
        let id: Option<Uuid> = on_backend!(self.reader(), |p| {
            sqlx::query_scalar(
                "SELECT o.id FROM orgs o JOIN org_members m ON m.org_id = o.id \
                 WHERE m.user_id = $1 AND m.role = 'owner' AND o.is_personal = TRUE \
                 AND o.deleted_at IS NULL ORDER BY o.id LIMIT 1",
            )
            .bind(user.as_uuid())
            .fetch_optional(p)
            .await
        })?;
        Ok(id.map(OrgId::from_uuid))
    }
}
