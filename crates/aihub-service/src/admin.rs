//! Platform administration: operator-level actions on users. Only platform admins (a flag on
//! the user, not an organization role) may call these. Changes are recorded in the platform
//! chain of the audit log.

use aihub_core::time::now;
use aihub_core::{OrgId, UserId};
use aihub_store::{Org, Store, User};

use crate::accounts::{Actor, audit_view};
use crate::audit::{Audit, Change};
use crate::error::{Result, ServiceError};
use crate::events::{Events, Invalidation};
use crate::page::Page;

/// `Forbidden` unless `actor` is a platform admin.
pub fn require_platform_admin(actor: &Actor) -> Result<()> {
    if actor.is_platform_admin {
        Ok(())
    } else {
        Err(ServiceError::Forbidden)
    }
}

#[derive(Clone)]
pub struct Admin {
    store: Store,
    events: Events,
    audit: Audit,
}

impl Admin {
    #[must_use]
    pub fn new(store: Store, events: Events, audit: Audit) -> Self {
        Self {
            store,
            events,
            audit,
        }
    }

    pub async fn list_users(
        &self,
        actor: &Actor,
        cursor: Option<UserId>,
        limit: u32,
    ) -> Result<Page<User, UserId>> {
        require_platform_admin(actor)?;
        let rows = self.store.list_users(cursor, limit + 1).await?;
        Ok(Page::from_overfetch(rows, limit, |u| u.id))
    }

    /// One user, by id.
    pub async fn user(&self, actor: &Actor, id: UserId) -> Result<User> {
        require_platform_admin(actor)?;
        self.store
            .user_by_id(id)
            .await?
            .ok_or(ServiceError::NotFound)
    }

    /// The user with this e-mail address, if any: the operator's search. Text that is not an
    /// e-mail address finds nobody.
    pub async fn find_user(&self, actor: &Actor, email: &str) -> Result<Option<User>> {
        require_platform_admin(actor)?;
        let Ok(email) = aihub_core::Email::parse(email.trim()) else {
            return Ok(None);
        };
        Ok(self.store.user_by_email(&email).await?)
    }

    /// Every live organization, newest first: the operator's view across tenants.
    pub async fn list_orgs(
        &self,
        actor: &Actor,
        cursor: Option<OrgId>,
        limit: u32,
    ) -> Result<Page<Org, OrgId>> {
        require_platform_admin(actor)?;
        let rows = self.store.list_orgs(cursor, limit + 1).await?;
        Ok(Page::from_overfetch(rows, limit, |o| o.id))
    }

    /// Grants or revokes platform-admin rights; returns the user before and after. For the
    /// operator CLI, which runs with direct access to the database and so needs no acting user
    /// (it records the change itself, as the system).
    pub async fn set_platform_admin_by_email(
        &self,
        email: &str,
        value: bool,
    ) -> Result<(User, User)> {
        let email = aihub_core::Email::parse(email)
            .map_err(|e| ServiceError::invalid("invalid_email", e.to_string()))?;
        let user = self
            .store
            .user_by_email(&email)
            .await?
            .ok_or(ServiceError::NotFound)?;
        self.store.set_platform_admin(user.id, value, now()).await?;
        self.events.publish(Invalidation::User(user.id));
        tracing::info!(user_id = %user.id, value, "platform admin rights changed");
        let after = self
            .store
            .user_by_id(user.id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        Ok((user, after))
    }

    /// Disables or re-enables a user. Disabling ends all their sessions in the same transaction
    /// and stops their keys at once (the gateway's cache is told); re-enabling restores keys, not
    /// sessions.
    pub async fn set_user_disabled(
        &self,
        actor: &Actor,
        user: UserId,
        disabled: bool,
    ) -> Result<User> {
        require_platform_admin(actor)?;
        if disabled && user == actor.user_id {
            return Err(ServiceError::Conflict {
                code: "cannot_disable_self",
                message: "you cannot disable your own account".into(),
            });
        }
        let before = self
            .store
            .user_by_id(user)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let t = now();
        if !self
            .store
            .set_user_disabled(user, disabled.then_some(t), t)
            .await?
        {
            return Err(ServiceError::NotFound);
        }
        self.events.publish(Invalidation::User(user));
        tracing::info!(actor = %actor.user_id, user_id = %user, disabled, "user status changed");
        let after = self
            .store
            .user_by_id(user)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let action = if disabled {
            "user.disable"
        } else {
            "user.enable"
        };
        self.audit
            .record(
                actor,
                Change::new(None, action, "user", user)
                    .before(audit_view(&before))
                    .after(audit_view(&after)),
            )
            .await?;
        Ok(after)
    }
}
