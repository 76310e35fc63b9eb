//! Organizations and the access check into them. [`Orgs::scope`] is the only way to obtain an
//! [`OrgScope`], and every org-owned operation takes one: a handler cannot reach an
//! organization's data without passing the membership check first.

use aihub_core::{OrgId, Role};
use aihub_store::{Membership, Org, Store};

use crate::accounts::Actor;
use crate::error::{Result, ServiceError};
use crate::policy::{Action, allows};

#[derive(Clone)]
pub struct Orgs {
    store: Store,
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
}

impl Orgs {
    #[must_use]
    pub fn new(store: Store) -> Self {
        Self { store }
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
