//! Teams inside an organization and their members. A team's members must be members of its
//! organization; leaving the organization removes them from its teams (see
//! [`Store::remove_member`]). Team names are unique within an organization.

use aihub_core::time::{from_millis, to_millis};
use aihub_core::{Email, OrgId, Role, TeamId, UserId};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Result, Store, StoreError, on_backend, parse_role};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    pub id: TeamId,
    pub org_id: OrgId,
    pub name: String,
    /// How many members the team has (as read; `0` for a team just created).
    pub member_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A member of a team, with their role in the team's organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamMember {
    pub user_id: UserId,
    pub email: Email,
    pub name: String,
    pub role: Role,
    pub added_at: DateTime<Utc>,
}

/// What deleting a team did: the team as it was, and the hashes of the team's keys it revoked.
#[derive(Debug, Clone)]
pub struct DeletedTeam {
    pub team: Team,
    pub revoked_key_hashes: Vec<Vec<u8>>,
}

#[derive(sqlx::FromRow)]
struct TeamRow {
    id: Uuid,
    org_id: Uuid,
    name: String,
    member_count: i64,
    created_at: i64,
    updated_at: i64,
}

impl From<TeamRow> for Team {
    fn from(r: TeamRow) -> Self {
        Team {
            id: TeamId::from_uuid(r.id),
            org_id: OrgId::from_uuid(r.org_id),
            name: r.name,
            member_count: r.member_count,
            created_at: from_millis(r.created_at),
            updated_at: from_millis(r.updated_at),
        }
    }
}

#[derive(sqlx::FromRow)]
struct TeamMemberRow {
    user_id: Uuid,
    email: String,
    name: String,
    role: String,
    created_at: i64,
}

impl TryFrom<TeamMemberRow> for TeamMember {
    type Error = StoreError;

    fn try_from(r: TeamMemberRow) -> Result<Self> {
        Ok(TeamMember {
            user_id: UserId::from_uuid(r.user_id),
            email: Email::parse(&r.email).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            name: r.name,
            role: parse_role(&r.role)?,
            added_at: from_millis(r.created_at),
        })
    }
}

macro_rules! team_select {
    () => {
        "SELECT t.id, t.org_id, t.name, t.created_at, t.updated_at, \
         (SELECT COUNT(*) FROM team_members tm WHERE tm.team_id = t.id) AS member_count \
         FROM teams t WHERE t.org_id = $1"
    };
}

macro_rules! team_member_select {
    () => {
        "SELECT tm.user_id, u.email, u.name, m.role, tm.created_at \
         FROM team_members tm JOIN users u ON u.id = tm.user_id \
         JOIN org_members m ON m.org_id = tm.org_id AND m.user_id = tm.user_id \
         WHERE tm.org_id = $1 AND tm.team_id = $2"
    };
}

impl Store {
    /// Inserts a team; `Conflict` if its organization has a team of that name.
    pub async fn insert_team(&self, team: &Team) -> Result<()> {
        on_backend!(self.writer(), |p| {
            sqlx::query(
                "INSERT INTO teams (id, org_id, name, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(team.id.as_uuid())
            .bind(team.org_id.as_uuid())
            .bind(&team.name)
            .bind(to_millis(team.created_at))
            .bind(to_millis(team.updated_at))
            .execute(p)
            .await
            .map(|_| ())
            .map_err(StoreError::from_write)
        })
    }

    /// Teams of `org`, newest first, after the cursor `before`.
    pub async fn teams(&self, org: OrgId, before: Option<TeamId>, limit: u32) -> Result<Vec<Team>> {
        let rows: Vec<TeamRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                team_select!(),
                " AND ($2 IS NULL OR t.id < $2) ORDER BY t.id DESC LIMIT $3"
            ))
            .bind(org.as_uuid())
            .bind(before.map(|b| b.as_uuid()))
            .bind(i64::from(limit))
            .fetch_all(p)
            .await
        })?;
        Ok(rows.into_iter().map(Team::from).collect())
    }

    /// One team of `org`. A team of another organization is simply not found.
    pub async fn team(&self, org: OrgId, id: TeamId) -> Result<Option<Team>> {
        let row: Option<TeamRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(team_select!(), " AND t.id = $2"))
                .bind(org.as_uuid())
                .bind(id.as_uuid())
                .fetch_optional(p)
                .await
        })?;
        Ok(row.map(Team::from))
    }

    /// Renames a team of `org`; `None` if there is no such team, `Conflict` if the name is
    /// taken in the organization.
    pub async fn rename_team(
        &self,
        org: OrgId,
        id: TeamId,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Team>> {
        let row: Option<TeamRow> = on_backend!(self.writer(), |p| {
            let mut tx = p.begin().await?;
            let updated = sqlx::query(
                "UPDATE teams SET name = $3, updated_at = $4 WHERE org_id = $1 AND id = $2",
            )
            .bind(org.as_uuid())
            .bind(id.as_uuid())
            .bind(name)
            .bind(to_millis(now))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_write)?;
            if updated.rows_affected() == 0 {
                None
            } else {
                let row: TeamRow = sqlx::query_as(concat!(team_select!(), " AND t.id = $2"))
                    .bind(org.as_uuid())
                    .bind(id.as_uuid())
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Some(row)
            }
        });
        Ok(row.map(Team::from))
    }

    /// Deletes a team of `org` and revokes every live key that belongs to it, in one
    /// transaction. Its memberships go with it. `None` if there is no such team.
    pub async fn delete_team(
        &self,
        org: OrgId,
        id: TeamId,
        now: DateTime<Utc>,
    ) -> Result<Option<DeletedTeam>> {
        let deleted: Option<(TeamRow, Vec<Vec<u8>>)> = on_backend!(self.writer(), |p| {
            let mut tx = p.begin().await?;
            let team: Option<TeamRow> = sqlx::query_as(concat!(team_select!(), " AND t.id = $2"))
                .bind(org.as_uuid())
                .bind(id.as_uuid())
                .fetch_optional(&mut *tx)
                .await?;
            match team {
                None => None,
                Some(team) => {
                    let hashes: Vec<Vec<u8>> = sqlx::query_scalar(
                        "UPDATE api_keys SET revoked_at = $3, updated_at = $3 \
                         WHERE org_id = $1 AND team_id = $2 AND revoked_at IS NULL \
                         RETURNING key_hash",
                    )
                    .bind(org.as_uuid())
                    .bind(id.as_uuid())
                    .bind(to_millis(now))
                    .fetch_all(&mut *tx)
                    .await?;
                    sqlx::query("DELETE FROM teams WHERE org_id = $1 AND id = $2")
                        .bind(org.as_uuid())
                        .bind(id.as_uuid())
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Some((team, hashes))
                }
            }
        });
        Ok(deleted.map(|(team, revoked_key_hashes)| DeletedTeam {
            team: Team::from(team),
            revoked_key_hashes,
        }))
    }

    /// Members of a team of `org`, in the order they were added, after the member `after`.
    pub async fn team_members(
        &self,
        org: OrgId,
        team: TeamId,
        after: Option<UserId>,
        limit: u32,
    ) -> Result<Vec<TeamMember>> {
        let rows: Vec<TeamMemberRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                team_member_select!(),
                " AND ($3 IS NULL OR (tm.created_at, tm.user_id) > \
                 (SELECT c.created_at, c.user_id FROM team_members c \
                  WHERE c.team_id = $2 AND c.user_id = $3)) \
                 ORDER BY tm.created_at, tm.user_id LIMIT $4"
            ))
            .bind(org.as_uuid())
            .bind(team.as_uuid())
            .bind(after.map(|a| a.as_uuid()))
            .bind(i64::from(limit))
            .fetch_all(p)
            .await
        })?;
        rows.into_iter().map(TeamMember::try_from).collect()
    }

    /// Adds `user` to a team of `org` if they are a member of `org`. `Ok(None)` if they are
    /// not (or the team is not `org`'s); `Conflict` if they are in the team already.
    pub async fn add_team_member(
        &self,
        org: OrgId,
        team: TeamId,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Option<TeamMember>> {
        let row: Option<TeamMemberRow> = on_backend!(self.writer(), |p| {
            let mut tx = p.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO team_members (team_id, org_id, user_id, created_at) \
                 SELECT t.id, t.org_id, m.user_id, $4 FROM teams t \
                 JOIN org_members m ON m.org_id = t.org_id AND m.user_id = $3 \
                 WHERE t.org_id = $1 AND t.id = $2",
            )
            .bind(org.as_uuid())
            .bind(team.as_uuid())
            .bind(user.as_uuid())
            .bind(to_millis(now))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_write)?;
            if inserted.rows_affected() == 0 {
                None
            } else {
                let row: TeamMemberRow =
                    sqlx::query_as(concat!(team_member_select!(), " AND tm.user_id = $3"))
                        .bind(org.as_uuid())
                        .bind(team.as_uuid())
                        .bind(user.as_uuid())
                        .fetch_one(&mut *tx)
                        .await?;
                tx.commit().await?;
                Some(row)
            }
        });
        row.map(TeamMember::try_from).transpose()
    }

    /// Removes `user` from a team of `org`; `false` if they were not in it.
    pub async fn remove_team_member(&self, org: OrgId, team: TeamId, user: UserId) -> Result<bool> {
        let done = on_backend!(self.writer(), |p| {
            sqlx::query(
                "DELETE FROM team_members WHERE org_id = $1 AND team_id = $2 AND user_id = $3",
            )
            .bind(org.as_uuid())
            .bind(team.as_uuid())
            .bind(user.as_uuid())
            .execute(p)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(done > 0)
    }
}
