//! Organizations and the access check into them. [`Orgs::scope`] is the only way to obtain an
//! [`OrgScope`], and every org-owned operation takes one: a handler cannot reach an
//! organization's data without passing the membership check first.
//!
//! Also the organization's life (create, rename, delete, transfer) and its members (list, change
//! role and model list, remove, leave). Two rules sit on top of the policy table: only an Owner
//! acts on Owners or grants the Owner role, and an organization always keeps an Owner (checked
//! by the store inside the change's transaction).

use aihub_core::time::now;
use aihub_core::{OrgId, Role, UserId};
use aihub_store::{Guarded, Member, MemberChanges, Membership, Org, Store, StoreError};
use serde_json::json;

use crate::accounts::{Actor, parse_name};
use crate::audit::{Audit, Change};
use crate::error::{Result, ServiceError};
use crate::events::{Events, Invalidation};
use crate::keys::parse_models;
use crate::page::Page;
use crate::policy::{Action, allows};

#[derive(Clone)]
pub struct Orgs {
    store: Store,
    events: Events,
    audit: Audit,
}

/// Errors of organization and invitation operations whose HTTP status the shared
/// [`ServiceError`] vocabulary has no variant for.
#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    /// The request can never succeed, whatever the state (400): deleting a personal
    /// organization.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// The object existed but is over for good (410): an invitation that expired, was revoked,
    /// or was already answered.
    #[error("{message}")]
    Gone { code: &'static str, message: String },
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<StoreError> for TenancyError {
    fn from(e: StoreError) -> Self {
        TenancyError::Service(e.into())
    }
}

/// A change to a member: `None` leaves a field alone; `models: Some(None)` allows every model.
#[derive(Debug, Clone, Default)]
pub struct UpdateMember {
    pub role: Option<Role>,
    pub models: Option<Option<Vec<String>>>,
}

/// Proof that `actor` may act in `org`, with the role they act as. `role` is `None` when a
/// platform admin acts in an organization they are not a member of.
#[derive(Debug, Clone)]
pub struct OrgScope {
    org: Org,
    role: Option<Role>,
    actor: Actor,
}

impl OrgScope {
    #[must_use]
    pub fn org(&self) -> &Org {
        &self.org
    }

    #[must_use]
    pub fn org_id(&self) -> OrgId {
        self.org.id
    }

    #[must_use]
    pub fn role(&self) -> Option<Role> {
        self.role
    }

    #[must_use]
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// Whether the caller may perform `action` here. Platform admins may do everything, whatever
    /// their own role in the organization.
    #[must_use]
    pub fn can(&self, action: Action) -> bool {
        self.actor.is_platform_admin || self.role.is_some_and(|role| allows(role, action))
    }

    /// `Forbidden` unless the caller may perform `action` here.
    pub fn require(&self, action: Action) -> Result<()> {
        if self.can(action) {
            Ok(())
        } else {
            Err(ServiceError::Forbidden)
        }
    }

    /// Whether the caller has an Owner's say over people: an Owner, or a platform admin. Only
    /// they may act on Owners or make someone an Owner.
    #[must_use]
    pub fn acts_as_owner(&self) -> bool {
        self.actor.is_platform_admin || self.role == Some(Role::Owner)
    }
}

impl Orgs {
    #[must_use]
    pub fn new(store: Store, events: Events, audit: Audit) -> Self {
        Self {
            store,
            events,
            audit,
        }
    }

    /// The organizations `actor` belongs to, with their role in each.
    pub async fn list(&self, actor: &Actor) -> Result<Vec<Membership>> {
        Ok(self.store.memberships_of(actor.user_id).await?)
    }

    /// Checks that `actor` may act in `org` and returns the capability to do so. Not a member
    /// (and not a platform admin): `NotFound`, whether or not the organization exists.
    pub async fn scope(&self, actor: &Actor, org: OrgId) -> Result<OrgScope> {
        if let Some(m) = self.store.membership(org, actor.user_id).await? {
            return Ok(OrgScope {
                org: m.org,
                role: Some(m.role),
                actor: actor.clone(),
            });
        }
        if actor.is_platform_admin
            && let Some(org) = self.store.org(org).await?
        {
            return Ok(OrgScope {
                org,
                role: None,
                actor: actor.clone(),
            });
        }
        Err(ServiceError::NotFound)
    }
}

impl Orgs {
    /// Creates an organization with the caller as its Owner.
    pub async fn create(&self, actor: &Actor, name: &str) -> Result<Membership> {
        let name = parse_name(name)?;
        let t = now();
        let org = Org {
            id: OrgId::new(),
            name,
            is_personal: false,
            created_at: t,
            updated_at: t,
        };
        self.store.create_org(&org, actor.user_id).await?;
        tracing::info!(org_id = %org.id, "organization created");
        self.audit
            .record(
                actor,
                Change::new(Some(org.id), "org.create", "org", org.id)
                    .after(json!({"name": org.name, "owner": actor.user_id})),
            )
            .await?;
        Ok(Membership {
            org,
            role: Role::Owner,
        })
    }

    pub async fn rename(&self, scope: &OrgScope, name: &str) -> Result<Org> {
        scope.require(Action::OrgUpdate)?;
        let name = parse_name(name)?;
        let org = self
            .store
            .rename_org(scope.org_id(), &name, now())
            .await?
            .ok_or(ServiceError::NotFound)?;
        self.audit
            .record(
                scope.actor(),
                Change::new(Some(org.id), "org.update", "org", org.id)
                    .before(json!({"name": scope.org().name}))
                    .after(json!({"name": org.name})),
            )
            .await?;
        Ok(org)
    }

    /// Deletes the organization (softly: its rows stay for the records). `confirm` must be its
    /// exact name. Its keys stop working at once: the key lookup ignores deleted organizations,
    /// and this instance's key cache forgets them now.
    pub async fn delete(&self, scope: &OrgScope, confirm: &str) -> Result<Org, TenancyError> {
        scope.require(Action::OrgDelete)?;
        if scope.org().is_personal {
            return Err(TenancyError::BadRequest {
                code: "personal_org",
                message: "a personal organization cannot be deleted".into(),
            });
        }
        if confirm != scope.org().name {
            return Err(ServiceError::invalid(
                "confirmation_mismatch",
                "confirm must be the organization's exact name",
            )
            .into());
        }
        let org = self
            .store
            .soft_delete_org(scope.org_id(), now())
            .await?
            .ok_or(ServiceError::NotFound)?;
        self.events.publish(Invalidation::Org(org.id));
        tracing::info!(org_id = %org.id, "organization deleted");
        self.audit
            .record(
                scope.actor(),
                Change::new(Some(org.id), "org.delete", "org", org.id)
                    .before(json!({"name": org.name})),
            )
            .await?;
        Ok(org)
    }

    /// Makes member `to` an Owner and the caller (if a member) an Admin, in one transaction.
    pub async fn transfer(&self, scope: &OrgScope, to: UserId) -> Result<Member> {
        scope.require(Action::OrgTransfer)?;
        let me = scope.actor().user_id;
        if to == me {
            return Err(ServiceError::invalid(
                "invalid_transfer",
                "transfer ownership to another member of the organization",
            ));
        }
        let from = scope.role().map(|_| me);
        let owner = match self
            .store
            .transfer_ownership(scope.org_id(), from, to)
            .await?
        {
            Guarded::Done(m) => m,
            Guarded::NotMember => return Err(not_a_member()),
            // The caller stopped being an Owner since the request began.
            Guarded::OwnerProtected | Guarded::LastOwner => return Err(ServiceError::Forbidden),
        };
        tracing::info!(org_id = %scope.org_id(), "organization ownership transferred");
        self.audit
            .record(
                scope.actor(),
                Change::new(Some(scope.org_id()), "org.transfer", "org", scope.org_id())
                    .before(json!({"owner": from}))
                    .after(json!({"owner": to, "previous_owner_role": from.map(|_| Role::Admin)})),
            )
            .await?;
        Ok(owner)
    }

    pub async fn members(
        &self,
        scope: &OrgScope,
        cursor: Option<UserId>,
        limit: u32,
    ) -> Result<Page<Member, UserId>> {
        scope.require(Action::MembersRead)?;
        let rows = self
            .store
            .members(scope.org_id(), cursor, limit + 1)
            .await?;
        Ok(Page::from_overfetch(rows, limit, |m| m.user_id))
    }

    pub async fn member(&self, scope: &OrgScope, user: UserId) -> Result<Member> {
        scope.require(Action::MembersRead)?;
        self.store
            .member(scope.org_id(), user)
            .await?
            .ok_or(ServiceError::NotFound)
    }

    /// Changes a member's role and/or model list. A model list narrows the member's own keys in
    /// the organization at once.
    pub async fn update_member(
        &self,
        scope: &OrgScope,
        user: UserId,
        input: UpdateMember,
    ) -> Result<Member> {
        scope.require(Action::MembersManage)?;
        let before = self.member(scope, user).await?;
        if input.role == Some(Role::Owner) && !scope.acts_as_owner() {
            return Err(ServiceError::Forbidden);
        }
        let changes = MemberChanges {
            role: input.role,
            models: input
                .models
                .map(|m| m.map(parse_models).transpose())
                .transpose()?,
        };
        let updated = self
            .store
            .update_member(
                scope.org_id(),
                user,
                &changes,
                !scope.acts_as_owner(),
                now(),
            )
            .await
            .map(guarded)??;
        if changes.models.is_some() {
            self.events.publish(Invalidation::User(user));
        }
        self.audit
            .record(
                scope.actor(),
                Change::new(Some(scope.org_id()), "member.update", "user", user)
                    .before(member_state(&before))
                    .after(member_state(&updated)),
            )
            .await?;
        Ok(updated)
    }

    /// Removes a member from the organization and its teams. Their sessions lose the
    /// organization on their next request; their keys in it stop working at once.
    pub async fn remove_member(&self, scope: &OrgScope, user: UserId) -> Result<Member> {
        scope.require(Action::MembersManage)?;
        let removed = self
            .store
            .remove_member(scope.org_id(), user, !scope.acts_as_owner())
            .await
            .map(guarded)??;
        self.events.publish(Invalidation::User(user));
        tracing::info!(org_id = %scope.org_id(), user_id = %user, "member removed");
        self.audit
            .record(
                scope.actor(),
                Change::new(Some(scope.org_id()), "member.remove", "user", user)
                    .before(member_state(&removed)),
            )
            .await?;
        Ok(removed)
    }

    /// The caller leaves the organization (and its teams). Allowed to every role; the last Owner
    /// must hand over first.
    pub async fn leave(&self, scope: &OrgScope) -> Result<()> {
        let me = scope.actor().user_id;
        if scope.role().is_none() {
            // A platform admin looking in from outside has nothing to leave.
            return Err(ServiceError::NotFound);
        }
        let left = self
            .store
            .remove_member(scope.org_id(), me, false)
            .await
            .map(guarded)??;
        self.events.publish(Invalidation::User(me));
        tracing::info!(org_id = %scope.org_id(), user_id = %me, "member left");
        self.audit
            .record(
                scope.actor(),
                Change::new(Some(scope.org_id()), "member.leave", "user", me)
                    .before(member_state(&left)),
            )
            .await?;
        Ok(())
    }
}

/// Maps the store's guarded outcome to the API's answers.
fn guarded(outcome: Guarded<Member>) -> Result<Member> {
    match outcome {
        Guarded::Done(m) => Ok(m),
        Guarded::NotMember => Err(ServiceError::NotFound),
        Guarded::OwnerProtected => Err(ServiceError::Forbidden),
        Guarded::LastOwner => Err(ServiceError::Conflict {
            code: "last_owner",
            message: "an organization must keep an owner: make another member owner first".into(),
        }),
    }
}

fn member_state(m: &Member) -> serde_json::Value {
    json!({"email": m.email.as_str(), "role": m.role, "models": m.models})
}

pub(crate) fn not_a_member() -> ServiceError {
    ServiceError::invalid(
        "not_a_member",
        "user_id must be a member of the organization",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(parse_name("  Acme  ").unwrap(), "Acme");
        assert!(parse_name(" ").is_err());
        assert!(parse_name("a\nb").is_err());
        assert!(parse_name(&"n".repeat(101)).is_err());
        assert!(parse_name(&"n".repeat(100)).is_ok());
    }

    #[test]
    fn model_lists_follow_the_key_rules() {
        assert_eq!(
            parse_models(vec!["a".into(), " b ".into(), "a".into()]).unwrap(),
            vec!["a".to_owned(), "b".to_owned()]
        );
        assert!(parse_models(vec![]).is_err());
        assert!(parse_models(vec!["a b".into()]).is_err());
        assert!(parse_models((0..101).map(|i| i.to_string()).collect()).is_err());
    }
}
