//! Teams of an organization: create, rename, delete (revoking the team's keys), and who is in
//! them. Only members of the organization can be added to its teams.

use aihub_core::time::now;
use aihub_core::{TeamId, UserId};
use aihub_store::{Store, StoreError, Team, TeamMember};
use serde_json::json;

use crate::accounts::parse_name;
use crate::audit::{Audit, Change};
use crate::error::{Result, ServiceError};
use crate::events::{Events, Invalidation};
use crate::orgs::{OrgScope, not_a_member};
use crate::page::Page;
use crate::policy::Action;

#[derive(Clone)]
pub struct Teams {
    store: Store,
    events: Events,
    audit: Audit,
}

impl Teams {
    #[must_use]
    pub fn new(store: Store, events: Events, audit: Audit) -> Self {
        Self {
            store,
            events,
            audit,
        }
    }

    pub async fn list(
        &self,
        scope: &OrgScope,
        cursor: Option<TeamId>,
        limit: u32,
    ) -> Result<Page<Team, TeamId>> {
        scope.require(Action::TeamsRead)?;
        let rows = self.store.teams(scope.org_id(), cursor, limit + 1).await?;
        Ok(Page::from_overfetch(rows, limit, |t| t.id))
    }

    pub async fn get(&self, scope: &OrgScope, id: TeamId) -> Result<Team> {
        scope.require(Action::TeamsRead)?;
        self.store
            .team(scope.org_id(), id)
            .await?
            .ok_or(ServiceError::NotFound)
    }

    pub async fn create(&self, scope: &OrgScope, name: &str) -> Result<Team> {
        scope.require(Action::TeamsManage)?;
        let t = now();
        let team = Team {
            id: TeamId::new(),
            org_id: scope.org_id(),
            name: parse_name(name)?,
            member_count: 0,
            created_at: t,
            updated_at: t,
        };
        self.store.insert_team(&team).await.map_err(name_taken)?;
        self.audit
            .record(
                scope.actor(),
                Change::new(Some(team.org_id), "team.create", "team", team.id)
                    .after(json!({"name": team.name})),
            )
            .await?;
        Ok(team)
    }

    pub async fn rename(&self, scope: &OrgScope, id: TeamId, name: &str) -> Result<Team> {
        scope.require(Action::TeamsManage)?;
        let name = parse_name(name)?;
        let before = self.get(scope, id).await?;
        let team = self
            .store
            .rename_team(scope.org_id(), id, &name, now())
            .await
            .map_err(name_taken)?
            .ok_or(ServiceError::NotFound)?;
        self.audit
            .record(
                scope.actor(),
                Change::new(Some(team.org_id), "team.update", "team", team.id)
                    .before(json!({"name": before.name}))
                    .after(json!({"name": team.name})),
            )
            .await?;
        Ok(team)
    }

    /// Deletes a team and revokes its keys in the same transaction; they stop working at once.
    pub async fn delete(&self, scope: &OrgScope, id: TeamId) -> Result<Team> {
        scope.require(Action::TeamsManage)?;
        let deleted = self
            .store
            .delete_team(scope.org_id(), id, now())
            .await?
            .ok_or(ServiceError::NotFound)?;
        for hash in &deleted.revoked_key_hashes {
            if let Ok(h) = <[u8; 32]>::try_from(hash.as_slice()) {
                self.events.publish(Invalidation::KeyHash(h));
            }
        }
        self.events.publish(Invalidation::Org(scope.org_id()));
        let team = deleted.team;
        tracing::info!(
            org_id = %team.org_id,
            team_id = %team.id,
            revoked_keys = deleted.revoked_key_hashes.len(),
            "team deleted"
        );
        self.audit
            .record(
                scope.actor(),
                Change::new(Some(team.org_id), "team.delete", "team", team.id).before(json!({
                    "name": team.name,
                    "member_count": team.member_count,
                    "revoked_keys": deleted.revoked_key_hashes.len(),
                })),
            )
            .await?;
        Ok(team)
    }

    pub async fn members(
        &self,
        scope: &OrgScope,
        team: TeamId,
        cursor: Option<UserId>,
        limit: u32,
    ) -> Result<Page<TeamMember, UserId>> {
        self.get(scope, team).await?;
        let rows = self
            .store
            .team_members(scope.org_id(), team, cursor, limit + 1)
            .await?;
        Ok(Page::from_overfetch(rows, limit, |m| m.user_id))
    }

    /// Adds a member of the organization to the team.
    pub async fn add_member(
        &self,
        scope: &OrgScope,
        team: TeamId,
        user: UserId,
    ) -> Result<TeamMember> {
        scope.require(Action::TeamsManage)?;
        self.get(scope, team).await?;
        let added = match self
            .store
            .add_team_member(scope.org_id(), team, user, now())
            .await
        {
            Ok(Some(m)) => m,
            Ok(None) => return Err(not_a_member()),
            Err(StoreError::Conflict) => {
                return Err(ServiceError::Conflict {
                    code: "already_in_team",
                    message: "this user is already in the team".into(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        self.audit
            .record(
                scope.actor(),
                Change::new(Some(scope.org_id()), "team.member_add", "team", team)
                    .after(json!({"user_id": user})),
            )
            .await?;
        Ok(added)
    }

    pub async fn remove_member(&self, scope: &OrgScope, team: TeamId, user: UserId) -> Result<()> {
        scope.require(Action::TeamsManage)?;
        self.get(scope, team).await?;
        if !self
            .store
            .remove_team_member(scope.org_id(), team, user)
            .await?
        {
            return Err(ServiceError::NotFound);
        }
        self.audit
            .record(
                scope.actor(),
                Change::new(Some(scope.org_id()), "team.member_remove", "team", team)
                    .before(json!({"user_id": user})),
            )
            .await?;
        Ok(())
    }
}

fn name_taken(e: StoreError) -> ServiceError {
    match e {
        StoreError::Conflict => ServiceError::Conflict {
            code: "team_exists",
            message: "the organization already has a team of this name".into(),
        },
        e => e.into(),
    }
}
