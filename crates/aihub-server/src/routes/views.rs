//! Response bodies of the management API. Built from domain records field by field, so nothing
//! is serialized by accident (no password hash, no key hash, no secret).

use aihub_core::{KeyId, OrgId, Role, TeamId, UserId};
use aihub_store::{ApiKey, Membership, Org, User};
use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct UserView {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub is_platform_admin: bool,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id,
            email: u.email.to_string(),
            name: u.name.clone(),
            is_platform_admin: u.is_platform_admin,
            disabled: u.disabled_at.is_some(),
            created_at: u.created_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct OrgView {
    pub id: OrgId,
    pub name: String,
    pub is_personal: bool,
    /// The caller's role; absent when a platform admin views an org they do not belong to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    pub created_at: DateTime<Utc>,
}

impl OrgView {
    #[must_use]
    pub fn new(org: &Org, role: Option<Role>) -> Self {
        Self {
            id: org.id,
            name: org.name.clone(),
            is_personal: org.is_personal,
            role,
            created_at: org.created_at,
        }
    }
}

impl From<&Membership> for OrgView {
    fn from(m: &Membership) -> Self {
        Self::new(&m.org, Some(m.role))
    }
}

#[derive(Debug, Serialize)]
pub struct KeyView {
    pub id: KeyId,
    pub org_id: OrgId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_id: Option<TeamId>,
    pub owner_user_id: Option<UserId>,
    pub name: String,
    /// Non-secret leading characters, for recognizing the key.
    pub prefix: String,
    /// Models this key may call; `null` means all.
    pub models: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked: bool,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<&ApiKey> for KeyView {
    fn from(k: &ApiKey) -> Self {
        Self {
            id: k.id,
            org_id: k.org_id,
            team_id: k.team_id,
            owner_user_id: k.owner_user_id,
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            models: k.models.clone(),
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            expires_at: k.expires_at,
            revoked: k.revoked_at.is_some(),
            revoked_at: k.revoked_at,
        }
    }
}

/// A key with its secret: the body of create and rotate, the only place the secret appears.
#[derive(Serialize)]
pub struct KeyWithSecretView {
    #[serde(flatten)]
    pub key: KeyView,
    /// The full key. Store it now: it is never shown again.
    #[serde(rename = "key")]
    pub secret: String,
}

/// A page of a list.
#[derive(Debug, Serialize)]
pub struct PageView<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}
