//! Organizations (tenants) and memberships. Every tenant-owned row elsewhere carries an
//! `org_id`; membership rows are what access checks read.

use aihub_core::time::{from_millis, to_millis};
use aihub_core::{Email, OrgId, Role, UserId};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{BackendKind, Result, Store, StoreError, on_backend, parse_role};

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
    /// Live organizations, newest first, before the cursor `before` (platform admins only).
    pub async fn list_orgs(&self, before: Option<OrgId>, limit: u32) -> Result<Vec<Org>> {
        let rows: Vec<OrgRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(
                "SELECT id, name, is_personal, created_at, updated_at FROM orgs \
                 WHERE deleted_at IS NULL AND ($1 IS NULL OR id < $1) \
                 ORDER BY id DESC LIMIT $2",
            )
            .bind(before.map(|b| b.as_uuid()))
            .bind(i64::from(limit))
            .fetch_all(p)
            .await
        })?;
        Ok(rows.into_iter().map(Org::from).collect())
    }

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
            .bind(to_millis(now))
            .execute(p)
            .await
            .map(|_| ())
            .map_err(StoreError::from_write)
        })
    }
}

/// A member of an organization as the members API sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: UserId,
    pub email: Email,
    pub name: String,
    pub role: Role,
    /// Models the member may use in the organization; `None` means every model.
    pub models: Option<Vec<String>>,
    pub joined_at: DateTime<Utc>,
}

/// A change to a membership; `None` leaves a field alone, `Some(None)` clears `models`.
#[derive(Debug, Clone, Default)]
pub struct MemberChanges {
    pub role: Option<Role>,
    pub models: Option<Option<Vec<String>>>,
}

/// The outcome of a membership change that must keep the organization owned. The checks run
/// inside the change's transaction, with the organization's row locked on PostgreSQL, so two
/// concurrent changes cannot both pass them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guarded<T> {
    Done(T),
    /// The user is not a member of the organization.
    NotMember,
    /// The member is an Owner and the caller asked to leave Owners alone.
    OwnerProtected,
    /// The change would leave the organization without an Owner.
    LastOwner,
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    user_id: Uuid,
    email: String,
    name: String,
    role: String,
    models: Option<String>,
    created_at: i64,
}

impl TryFrom<MemberRow> for Member {
    type Error = StoreError;

    fn try_from(r: MemberRow) -> Result<Self> {
        Ok(Member {
            user_id: UserId::from_uuid(r.user_id),
            email: Email::parse(&r.email).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            name: r.name,
            role: parse_role(&r.role)?,
            models: parse_models_json(r.models.as_deref(), "org_members.models")?,
            joined_at: from_millis(r.created_at),
        })
    }
}

/// Reads a stored JSON list of model names.
pub(crate) fn parse_models_json(raw: Option<&str>, column: &str) -> Result<Option<Vec<String>>> {
    raw.map(serde_json::from_str::<Vec<String>>)
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

/// Writes a list of model names as JSON. Serializing strings cannot fail.
pub(crate) fn models_to_json(models: Option<&Vec<String>>) -> Option<String> {
    models.map(|m| serde_json::to_string(m).unwrap_or_else(|_| "[]".to_owned()))
}

/// The models a key keeps when its owner is limited to `allowed`: the key's own list in its
/// order, less what is not allowed; a key for every model gets the member's list.
fn narrowed(key: Option<Vec<String>>, allowed: &[String]) -> Vec<String> {
    match key {
        None => allowed.to_vec(),
        Some(list) => list.into_iter().filter(|m| allowed.contains(m)).collect(),
    }
}

macro_rules! member_select {
    () => {
        "SELECT m.user_id, u.email, u.name, m.role, m.models, m.created_at \
         FROM org_members m JOIN users u ON u.id = m.user_id WHERE m.org_id = $1"
    };
}

impl Store {
    /// Creates an organization with `owner` as its Owner, in one transaction.
    pub async fn create_org(&self, org: &Org, owner: UserId) -> Result<()> {
        on_backend!(self.writer(), |p| {
            let mut tx = p.begin().await?;
            sqlx::query(
                "INSERT INTO orgs (id, name, is_personal, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(org.id.as_uuid())
            .bind(&org.name)
            .bind(org.is_personal)
            .bind(to_millis(org.created_at))
            .bind(to_millis(org.updated_at))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_write)?;
            sqlx::query(
                "INSERT INTO org_members (org_id, user_id, role, created_at) \
                 VALUES ($1, $2, 'owner', $3)",
            )
            .bind(org.id.as_uuid())
            .bind(owner.as_uuid())
            .bind(to_millis(org.created_at))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_write)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Renames a live organization; `None` if there is none.
    pub async fn rename_org(
        &self,
        id: OrgId,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Org>> {
        let row: Option<OrgRow> = on_backend!(self.writer(), |p| {
            sqlx::query_as(
                "UPDATE orgs SET name = $2, updated_at = $3 WHERE id = $1 AND deleted_at IS NULL \
                 RETURNING id, name, is_personal, created_at, updated_at",
            )
            .bind(id.as_uuid())
            .bind(name)
            .bind(to_millis(now))
            .fetch_optional(p)
            .await
        })?;
        Ok(row.map(Org::from))
    }

    /// Marks a live organization deleted. From then on it is invisible to every query that
    /// reads live organizations, the gateway's key lookup included. `None` if there is none.
    pub async fn soft_delete_org(&self, id: OrgId, now: DateTime<Utc>) -> Result<Option<Org>> {
        let row: Option<OrgRow> = on_backend!(self.writer(), |p| {
            sqlx::query_as(
                "UPDATE orgs SET deleted_at = $2, updated_at = $2 \
                 WHERE id = $1 AND deleted_at IS NULL \
                 RETURNING id, name, is_personal, created_at, updated_at",
            )
            .bind(id.as_uuid())
            .bind(to_millis(now))
            .fetch_optional(p)
            .await
        })?;
        Ok(row.map(Org::from))
    }

    /// Members of `org` in the order they joined, after the member `after`.
    pub async fn members(
        &self,
        org: OrgId,
        after: Option<UserId>,
        limit: u32,
    ) -> Result<Vec<Member>> {
        let rows: Vec<MemberRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                member_select!(),
                " AND ($2 IS NULL OR (m.created_at, m.user_id) > \
                 (SELECT c.created_at, c.user_id FROM org_members c \
                  WHERE c.org_id = $1 AND c.user_id = $2)) \
                 ORDER BY m.created_at, m.user_id LIMIT $3"
            ))
            .bind(org.as_uuid())
            .bind(after.map(|a| a.as_uuid()))
            .bind(i64::from(limit))
            .fetch_all(p)
            .await
        })?;
        rows.into_iter().map(Member::try_from).collect()
    }

    /// One member of `org`.
    pub async fn member(&self, org: OrgId, user: UserId) -> Result<Option<Member>> {
        let row: Option<MemberRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(member_select!(), " AND m.user_id = $2"))
                .bind(org.as_uuid())
                .bind(user.as_uuid())
                .fetch_optional(p)
                .await
        })?;
        row.map(Member::try_from).transpose()
    }

    /// Whether someone with this e-mail address is a member of `org`.
    pub async fn is_member_email(&self, org: OrgId, email: &Email) -> Result<bool> {
        let found: Option<Uuid> = on_backend!(self.reader(), |p| {
            sqlx::query_scalar(
                "SELECT m.user_id FROM org_members m JOIN users u ON u.id = m.user_id \
                 WHERE m.org_id = $1 AND u.email = $2",
            )
            .bind(org.as_uuid())
            .bind(email.as_str())
            .fetch_optional(p)
            .await
        })?;
        Ok(found.is_some())
    }

    /// Changes a member's role and/or model list. Demoting the last Owner is refused
    /// (`LastOwner`); with `protect_owners`, any change to an Owner is (`OwnerProtected`).
    /// Setting a model list narrows the member's live keys in `org` to it in the same
    /// transaction (see [`narrowed`]); clearing it leaves keys as they are.
    pub async fn update_member(
        &self,
        org: OrgId,
        user: UserId,
        changes: &MemberChanges,
        protect_owners: bool,
        now: DateTime<Utc>,
    ) -> Result<Guarded<Member>> {
        let postgres = self.kind() == BackendKind::Postgres;
        let row: Guarded<MemberRow> = on_backend!(self.writer(), |p| {
            let mut tx = p.begin().await?;
            if postgres {
                sqlx::query("SELECT id FROM orgs WHERE id = $1 FOR UPDATE")
                    .bind(org.as_uuid())
                    .execute(&mut *tx)
                    .await?;
            }
            let current: Option<String> = sqlx::query_scalar(
                "SELECT role FROM org_members WHERE org_id = $1 AND user_id = $2",
            )
            .bind(org.as_uuid())
            .bind(user.as_uuid())
            .fetch_optional(&mut *tx)
            .await?;
            let owners: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM org_members WHERE org_id = $1 AND role = 'owner'",
            )
            .bind(org.as_uuid())
            .fetch_one(&mut *tx)
            .await?;
            let is_owner = current.as_deref() == Some(Role::Owner.as_str());
            let demoted = is_owner && changes.role.is_some_and(|r| r != Role::Owner);
            if current.is_none() {
                Guarded::NotMember
            } else if is_owner && protect_owners {
                Guarded::OwnerProtected
            } else if demoted && owners <= 1 {
                Guarded::LastOwner
            } else {
                sqlx::query(
                    "UPDATE org_members SET role = COALESCE($3, role), \
                     models = CASE WHEN $4 THEN $5 ELSE models END \
                     WHERE org_id = $1 AND user_id = $2",
                )
                .bind(org.as_uuid())
                .bind(user.as_uuid())
                .bind(changes.role.map(|r| r.as_str()))
                .bind(changes.models.is_some())
                .bind(models_to_json(
                    changes.models.as_ref().and_then(Option::as_ref),
                ))
                .execute(&mut *tx)
                .await?;
                if let Some(Some(allowed)) = &changes.models {
                    let keys: Vec<(Uuid, Option<String>)> = sqlx::query_as(
                        "SELECT id, models FROM api_keys WHERE org_id = $1 \
                         AND owner_user_id = $2 AND revoked_at IS NULL",
                    )
                    .bind(org.as_uuid())
                    .bind(user.as_uuid())
                    .fetch_all(&mut *tx)
                    .await?;
                    for (id, models) in keys {
                        let current = parse_models_json(models.as_deref(), "api_keys.models")?;
                        let next = narrowed(current.clone(), allowed);
                        if current.as_ref() != Some(&next) {
                            sqlx::query(
                                "UPDATE api_keys SET models = $2, updated_at = $3 WHERE id = $1",
                            )
                            .bind(id)
                            .bind(models_to_json(Some(&next)))
                            .bind(to_millis(now))
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
                }
                let row: MemberRow =
                    sqlx::query_as(concat!(member_select!(), " AND m.user_id = $2"))
                        .bind(org.as_uuid())
                        .bind(user.as_uuid())
                        .fetch_one(&mut *tx)
                        .await?;
                tx.commit().await?;
                Guarded::Done(row)
            }
        });
        row.try_map(Member::try_from)
    }

    /// Removes a member from `org` and from every team of `org`, in one transaction. Removing
    /// the last Owner is refused (`LastOwner`); with `protect_owners`, removing any Owner is
    /// (`OwnerProtected`). Returns the member as they were.
    pub async fn remove_member(
        &self,
        org: OrgId,
        user: UserId,
        protect_owners: bool,
    ) -> Result<Guarded<Member>> {
        let postgres = self.kind() == BackendKind::Postgres;
        let row: Guarded<MemberRow> = on_backend!(self.writer(), |p| {
            let mut tx = p.begin().await?;
            if postgres {
                sqlx::query("SELECT id FROM orgs WHERE id = $1 FOR UPDATE")
                    .bind(org.as_uuid())
                    .execute(&mut *tx)
                    .await?;
            }
            let current: Option<MemberRow> =
                sqlx::query_as(concat!(member_select!(), " AND m.user_id = $2"))
                    .bind(org.as_uuid())
                    .bind(user.as_uuid())
                    .fetch_optional(&mut *tx)
                    .await?;
            let owners: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM org_members WHERE org_id = $1 AND role = 'owner'",
            )
            .bind(org.as_uuid())
            .fetch_one(&mut *tx)
            .await?;
            match current {
                None => Guarded::NotMember,
                Some(m) if m.role == Role::Owner.as_str() && protect_owners => {
                    Guarded::OwnerProtected
                }
                Some(m) if m.role == Role::Owner.as_str() && owners <= 1 => Guarded::LastOwner,
                Some(m) => {
                    sqlx::query("DELETE FROM team_members WHERE org_id = $1 AND user_id = $2")
                        .bind(org.as_uuid())
                        .bind(user.as_uuid())
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("DELETE FROM org_members WHERE org_id = $1 AND user_id = $2")
                        .bind(org.as_uuid())
                        .bind(user.as_uuid())
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Guarded::Done(m)
                }
            }
        });
        row.try_map(Member::try_from)
    }

    /// Makes `to` an Owner of `org` and, when `from` is given, turns `from` from Owner into
    /// Admin, in one transaction. `NotMember` if `to` is not a member; `OwnerProtected` if
    /// `from` is no longer an Owner. Returns the new Owner.
    pub async fn transfer_ownership(
        &self,
        org: OrgId,
        from: Option<UserId>,
        to: UserId,
    ) -> Result<Guarded<Member>> {
        let postgres = self.kind() == BackendKind::Postgres;
        let row: Guarded<MemberRow> = on_backend!(self.writer(), |p| {
            let mut tx = p.begin().await?;
            if postgres {
                sqlx::query("SELECT id FROM orgs WHERE id = $1 FOR UPDATE")
                    .bind(org.as_uuid())
                    .execute(&mut *tx)
                    .await?;
            }
            let target: Option<String> = sqlx::query_scalar(
                "SELECT role FROM org_members WHERE org_id = $1 AND user_id = $2",
            )
            .bind(org.as_uuid())
            .bind(to.as_uuid())
            .fetch_optional(&mut *tx)
            .await?;
            let source: Option<String> = match from {
                Some(from) => {
                    sqlx::query_scalar(
                        "SELECT role FROM org_members WHERE org_id = $1 AND user_id = $2",
                    )
                    .bind(org.as_uuid())
                    .bind(from.as_uuid())
                    .fetch_optional(&mut *tx)
                    .await?
                }
                None => Some(Role::Owner.as_str().to_owned()),
            };
            if target.is_none() {
                Guarded::NotMember
            } else if source.as_deref() != Some(Role::Owner.as_str()) {
                Guarded::OwnerProtected
            } else {
                sqlx::query(
                    "UPDATE org_members SET role = 'owner' WHERE org_id = $1 AND user_id = $2",
                )
                .bind(org.as_uuid())
                .bind(to.as_uuid())
                .execute(&mut *tx)
                .await?;
                if let Some(from) = from {
                    sqlx::query(
                        "UPDATE org_members SET role = 'admin' WHERE org_id = $1 AND user_id = $2",
                    )
                    .bind(org.as_uuid())
                    .bind(from.as_uuid())
                    .execute(&mut *tx)
                    .await?;
                }
                let row: MemberRow =
                    sqlx::query_as(concat!(member_select!(), " AND m.user_id = $2"))
                        .bind(org.as_uuid())
                        .bind(to.as_uuid())
                        .fetch_one(&mut *tx)
                        .await?;
                tx.commit().await?;
                Guarded::Done(row)
            }
        });
        row.try_map(Member::try_from)
    }
}

impl<T> Guarded<T> {
    fn try_map<U>(self, f: impl FnOnce(T) -> Result<U>) -> Result<Guarded<U>> {
        Ok(match self {
            Guarded::Done(t) => Guarded::Done(f(t)?),
            Guarded::NotMember => Guarded::NotMember,
            Guarded::OwnerProtected => Guarded::OwnerProtected,
            Guarded::LastOwner => Guarded::LastOwner,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::narrowed;

    #[test]
    fn narrowing_keeps_the_key_order_and_fills_open_keys() {
        let allowed = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(narrowed(None, &allowed), allowed);
        assert_eq!(
            narrowed(Some(vec!["c".into(), "b".into(), "a".into()]), &allowed),
            vec!["b".to_owned(), "a".to_owned()]
        );
        assert!(narrowed(Some(vec!["c".into()]), &allowed).is_empty());
    }
}
