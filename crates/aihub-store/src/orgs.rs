//! Organizations (tenants) and memberships. Every tenant-owned row elsewhere carries an
//! `org_id`; membership rows are what access checks read.

use aihub_core::time::from_millis;
use aihub_core::{OrgId, Role, UserId};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Result, Store, on_backend, parse_role};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    pub id: OrgId,
    pub name: String,
    /// Created with its user at registration.
    pub is_personal: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An organization seen through one member: the org and that member's role in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub org: Org,
    pub role: Role,
}

#[derive(sqlx::FromRow)]
struct MembershipRow {
    id: Uuid,
    name: String,
    is_personal: bool,
    created_at: i64,
    updated_at: i64,
    role: String,
}

impl TryFrom<MembershipRow> for Membership {
    type Error = crate::StoreError;

    fn try_from(r: MembershipRow) -> Result<Self> {
        Ok(Membership {
            role: parse_role(&r.role)?,
            org: Org {
                id: OrgId::from_uuid(r.id),
                name: r.name,
                is_personal: r.is_personal,
                created_at: from_millis(r.created_at),
                updated_at: from_millis(r.updated_at),
            },
        })
    }
}

macro_rules! membership_select {
    () => {
        "SELECT o.id, o.name, o.is_personal, o.created_at, o.updated_at, m.role \
         FROM org_members m JOIN orgs o ON o.id = m.org_id \
         WHERE m.user_id = $1 AND o.deleted_at IS NULL"
    };
}

impl Store {
    /// Every live organization `user` belongs to, oldest first.
    pub async fn memberships_of(&self, user: UserId) -> Result<Vec<Membership>> {
        let rows: Vec<MembershipRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(membership_select!(), " ORDER BY o.id"))
                .bind(user.as_uuid())
                .fetch_all(p)
                .await
        })?;
        rows.into_iter().map(Membership::try_from).collect()
    }

    /// `user`'s membership of `org`, if any. The one query every org-scoped access check runs.
    pub async fn membership(&self, org: OrgId, user: UserId) -> Result<Option<Membership>> {
        let row: Option<MembershipRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(membership_select!(), " AND m.org_id = $2"))
                .bind(user.as_uuid())
                .bind(org.as_uuid())
                .fetch_optional(p)
                .await
        })?;
        row.map(Membership::try_from).transpose()
    }
}

#[derive(sqlx::FromRow)]
struct OrgRow {
    id: Uuid,
    name: String,
    is_personal: bool,
    created_at: i64,
    updated_at: i64,
}

impl From<OrgRow> for Org {
    fn from(r: OrgRow) -> Self {
        Org {
            id: OrgId::from_uuid(r.id),
            name: r.name,
            is_personal: r.is_personal,
            created_at: from_millis(r.created_at),
            updated_at: from_millis(r.updated_at),
        }
    }
}

impl Store {
    /// A live organization by id, without any membership check (platform admins only).
    pub async fn org(&self, id: OrgId) -> Result<Option<Org>> {
        let row: Option<OrgRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(
                "SELECT id, name, is_personal, created_at, updated_at FROM orgs \
                 WHERE id = $1 AND deleted_at IS NULL",
            )
            .bind(id.as_uuid())
            .fetch_optional(p)
            .await
        })?;
        Ok(row.map(Org::from))
    }
}

impl Store {
    /// Adds `user` to `org` with `role`; `Conflict` if they are already a member.
    pub async fn add_member(
        &self,
        org: OrgId,
        user: UserId,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<()> {
        on_backend!(self.writer(), |p| {
            sqlx::query(
                "INSERT INTO org_members (org_id, user_id, role, created_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(org.as_uuid())
            .bind(user.as_uuid())
            .bind(role.as_str())
            .bind(aihub_core::time::to_millis(now))
            .execute(p)
            .await
            .map(|_| ())
            .map_err(crate::StoreError::from_write)
        })
    }
}
