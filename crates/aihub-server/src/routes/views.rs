//! Response bodies of the management API. Built from domain records field by field, so nothing
//! is serialized by accident (no password hash, no key hash, no secret).

use aihub_core::{KeyId, OrgId, Role, TeamId, UserId};
use aihub_service::invitations::InvitationState;
use aihub_store::{ApiKey, Invitation, Member, Membership, Org, Team, TeamMember, User};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

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

/// A member of an organization.
#[derive(Debug, Serialize)]
pub struct MemberView {
    pub user_id: UserId,
    pub email: String,
    pub name: String,
    pub role: Role,
    /// Models the member may use in the organization; `null` means all.
    pub models: Option<Vec<String>>,
    pub joined_at: DateTime<Utc>,
}

impl From<&Member> for MemberView {
    fn from(m: &Member) -> Self {
        Self {
            user_id: m.user_id,
            email: m.email.to_string(),
            name: m.name.clone(),
            role: m.role,
            models: m.models.clone(),
            joined_at: m.joined_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct TeamView {
    pub id: TeamId,
    pub org_id: OrgId,
    pub name: String,
    pub member_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Team> for TeamView {
    fn from(t: &Team) -> Self {
        Self {
            id: t.id,
            org_id: t.org_id,
            name: t.name.clone(),
            member_count: t.member_count,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// A member of a team, with their role in the organization.
#[derive(Debug, Serialize)]
pub struct TeamMemberView {
    pub user_id: UserId,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub added_at: DateTime<Utc>,
}

impl From<&TeamMember> for TeamMemberView {
    fn from(m: &TeamMember) -> Self {
        Self {
            user_id: m.user_id,
            email: m.email.to_string(),
            name: m.name.clone(),
            role: m.role,
            added_at: m.added_at,
        }
    }
}

/// An invitation. Never carries its token.
#[derive(Debug, Serialize)]
pub struct InvitationView {
    pub id: Uuid,
    pub org_id: OrgId,
    pub org_name: String,
    pub email: String,
    pub role: Role,
    /// `pending`, `expired`, `accepted`, `declined` or `revoked`.
    pub status: &'static str,
    pub invited_by: Option<UserId>,
    pub invited_by_name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// When it was accepted, declined or revoked.
    pub closed_at: Option<DateTime<Utc>>,
}

impl InvitationView {
    /// The invitation as it stands at `at` (a pending one past its expiry is `expired`).
    #[must_use]
    pub fn at(i: &Invitation, at: DateTime<Utc>) -> Self {
        Self {
            id: i.id,
            org_id: i.org_id,
            org_name: i.org_name.clone(),
            email: i.email.to_string(),
            role: i.role,
            status: InvitationState::of(i, at).as_str(),
            invited_by: i.invited_by,
            invited_by_name: i.invited_by_name.clone(),
            created_at: i.created_at,
            expires_at: i.expires_at,
            closed_at: i.closed_at,
        }
    }
}

/// An invitation just created or resent.
#[derive(Debug, Serialize)]
pub struct InvitationSentView {
    #[serde(flatten)]
    pub invitation: InvitationView,
    /// Whether the e-mail was handed to the SMTP relay (`false` when SMTP is not configured or
    /// the relay refused; resend later).
    pub email_sent: bool,
}

/// A page of a list.
#[derive(Debug, Serialize)]
pub struct PageView<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}
