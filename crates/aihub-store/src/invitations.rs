//! E-mail invitations into organizations. Only the SHA-256 of an invitation's token is stored;
//! the token travels in the e-mail alone. Changes of state are conditional updates, so an
//! invitation is accepted, declined or revoked at most once, whatever runs concurrently.

use aihub_core::time::{from_millis, to_millis};
use aihub_core::{Email, OrgId, Role, UserId};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::orgs::Member;
use crate::{Result, Store, StoreError, on_backend, parse_role};

/// Where an invitation stands. A `Pending` invitation past its `expires_at` is expired; that is
/// decided when it is read, not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationStatus {
    Pending,
    Accepted,
    Declined,
    Revoked,
}

impl InvitationStatus {
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            InvitationStatus::Pending => "pending",
            InvitationStatus::Accepted => "accepted",
            InvitationStatus::Declined => "declined",
            InvitationStatus::Revoked => "revoked",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(InvitationStatus::Pending),
            "accepted" => Ok(InvitationStatus::Accepted),
            "declined" => Ok(InvitationStatus::Declined),
            "revoked" => Ok(InvitationStatus::Revoked),
            other => Err(StoreError::Corrupt(format!(
                "org_invitations.status: {other:?}"
            ))),
        }
    }
}

/// An invitation, never with its token or the token's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub id: Uuid,
    pub org_id: OrgId,
    /// The organization's name, for the invitee's list and the e-mail.
    pub org_name: String,
    pub email: Email,
    pub role: Role,
    pub invited_by: Option<UserId>,
    /// The inviter's name, if they still exist.
    pub invited_by_name: Option<String>,
    pub status: InvitationStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// When it was accepted, declined or revoked.
    pub closed_at: Option<DateTime<Utc>>,
}

/// What the store needs to insert an invitation.
pub struct NewInvitation {
    pub invitation: Invitation,
    pub token_hash: [u8; 32],
}

#[derive(sqlx::FromRow)]
struct InvitationRow {
    id: Uuid,
    org_id: Uuid,
    org_name: String,
    email: String,
    role: String,
    invited_by: Option<Uuid>,
    invited_by_name: Option<String>,
    status: String,
    created_at: i64,
    updated_at: i64,
    expires_at: i64,
    closed_at: Option<i64>,
}

impl TryFrom<InvitationRow> for Invitation {
    type Error = StoreError;

    fn try_from(r: InvitationRow) -> Result<Self> {
        Ok(Invitation {
            id: r.id,
            org_id: OrgId::from_uuid(r.org_id),
            org_name: r.org_name,
            email: Email::parse(&r.email).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            role: parse_role(&r.role)?,
            invited_by: r.invited_by.map(UserId::from_uuid),
            invited_by_name: r.invited_by_name,
            status: InvitationStatus::parse(&r.status)?,
            created_at: from_millis(r.created_at),
            updated_at: from_millis(r.updated_at),
            expires_at: from_millis(r.expires_at),
            closed_at: r.closed_at.map(from_millis),
        })
    }
}

/// Invitations of live organizations, with the names people want to see.
macro_rules! invitation_select {
    () => {
        "SELECT i.id, i.org_id, o.name AS org_name, i.email, i.role, i.invited_by, \
         u.name AS invited_by_name, i.status, i.created_at, i.updated_at, i.expires_at, \
         i.closed_at \
         FROM org_invitations i JOIN orgs o ON o.id = i.org_id AND o.deleted_at IS NULL \
         LEFT JOIN users u ON u.id = i.invited_by"
    };
}

impl Store {
    /// Inserts an invitation; `Conflict` if the organization already has a pending invitation
    /// for the address.
    pub async fn insert_invitation(&self, new: &NewInvitation) -> Result<()> {
        let i = &new.invitation;
        on_backend!(self.writer(), |p| {
            sqlx::query(
                "INSERT INTO org_invitations (id, org_id, email, role, token_hash, invited_by, \
                 status, created_at, updated_at, expires_at, closed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(i.id)
            .bind(i.org_id.as_uuid())
            .bind(i.email.as_str())
            .bind(i.role.as_str())
            .bind(&new.token_hash[..])
            .bind(i.invited_by.map(|u| u.as_uuid()))
            .bind(i.status.as_str())
            .bind(to_millis(i.created_at))
            .bind(to_millis(i.updated_at))
            .bind(to_millis(i.expires_at))
            .bind(i.closed_at.map(to_millis))
            .execute(p)
            .await
            .map(|_| ())
            .map_err(StoreError::from_write)
        })
    }

    /// Invitations of `org`, newest first, after the cursor `before`.
    pub async fn invitations(
        &self,
        org: OrgId,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Invitation>> {
        let rows: Vec<InvitationRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                invitation_select!(),
                " WHERE i.org_id = $1 AND ($2 IS NULL OR i.id < $2) ORDER BY i.id DESC LIMIT $3"
            ))
            .bind(org.as_uuid())
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await
        })?;
        rows.into_iter().map(Invitation::try_from).collect()
    }

    /// One invitation of `org`.
    pub async fn invitation(&self, org: OrgId, id: Uuid) -> Result<Option<Invitation>> {
        let row: Option<InvitationRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                invitation_select!(),
                " WHERE i.org_id = $1 AND i.id = $2"
            ))
            .bind(org.as_uuid())
            .bind(id)
            .fetch_optional(p)
            .await
        })?;
        row.map(Invitation::try_from).transpose()
    }

    /// Pending, unexpired invitations to `email`, into live organizations, newest first.
    pub async fn pending_invitations_for(
        &self,
        email: &Email,
        now: DateTime<Utc>,
    ) -> Result<Vec<Invitation>> {
        let rows: Vec<InvitationRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                invitation_select!(),
                " WHERE i.email = $1 AND i.status = 'pending' AND i.expires_at > $2 \
                 ORDER BY i.id DESC"
            ))
            .bind(email.as_str())
            .bind(to_millis(now))
            .fetch_all(p)
            .await
        })?;
        rows.into_iter().map(Invitation::try_from).collect()
    }

    /// The invitation (into a live organization) whose token has this hash.
    pub async fn invitation_by_token(&self, hash: &[u8; 32]) -> Result<Option<Invitation>> {
        let row: Option<InvitationRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(invitation_select!(), " WHERE i.token_hash = $1"))
                .bind(&hash[..])
                .fetch_optional(p)
                .await
        })?;
        row.map(Invitation::try_from).transpose()
    }

    /// Gives a pending invitation of `org` a new token and expiry; the old token stops
    /// matching. `None` if the invitation is not pending.
    pub async fn reissue_invitation(
        &self,
        org: OrgId,
        id: Uuid,
        token_hash: &[u8; 32],
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Invitation>> {
        let changed = on_backend!(self.writer(), |p| {
            sqlx::query(
                "UPDATE org_invitations SET token_hash = $3, expires_at = $4, updated_at = $5 \
                 WHERE org_id = $1 AND id = $2 AND status = 'pending'",
            )
            .bind(org.as_uuid())
            .bind(id)
            .bind(&token_hash[..])
            .bind(to_millis(expires_at))
            .bind(to_millis(now))
            .execute(p)
            .await
            .map(|r| r.rows_affected())
            .map_err(StoreError::from_write)
        })?;
        if changed == 0 {
            return Ok(None);
        }
        self.invitation(org, id).await
    }

    /// Closes a pending invitation of `org` as `status` (revoked or declined). `None` if it
    /// was not pending.
    pub async fn close_invitation(
        &self,
        org: OrgId,
        id: Uuid,
        status: InvitationStatus,
        now: DateTime<Utc>,
    ) -> Result<Option<Invitation>> {
        let changed = on_backend!(self.writer(), |p| {
            sqlx::query(
                "UPDATE org_invitations SET status = $3, closed_at = $4, updated_at = $4 \
                 WHERE org_id = $1 AND id = $2 AND status = 'pending'",
            )
            .bind(org.as_uuid())
            .bind(id)
            .bind(status.as_str())
            .bind(to_millis(now))
            .execute(p)
            .await
            .map(|r| r.rows_affected())
        })?;
        if changed == 0 {
            return Ok(None);
        }
        self.invitation(org, id).await
    }

    /// Accepts a pending, unexpired invitation whose token hash is still `token_hash`, making
    /// `user` a member of its organization with the invited role, in one transaction. `None`
    /// if the invitation was no longer open; `Conflict` if `user` is a member already.
    pub async fn accept_invitation(
        &self,
        id: Uuid,
        token_hash: &[u8; 32],
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Option<(Invitation, Member)>> {
        let accepted: Option<Uuid> = on_backend!(self.writer(), |p| {
            let mut tx = p.begin().await?;
            let claimed: Option<(Uuid, String)> = sqlx::query_as(
                "UPDATE org_invitations SET status = 'accepted', closed_at = $3, updated_at = $3 \
                 WHERE id = $1 AND token_hash = $2 AND status = 'pending' AND expires_at > $3 \
                 AND EXISTS (SELECT 1 FROM orgs o WHERE o.id = org_invitations.org_id AND o.deleted_at IS NULL) \
                 RETURNING org_id, role",
            )
            .bind(id)
            .bind(&token_hash[..])
            .bind(to_millis(now))
            .fetch_optional(&mut *tx)
            .await?;
            match claimed {
                None => None,
                Some((org, role)) => {
                    sqlx::query(
                        "INSERT INTO org_members (org_id, user_id, role, created_at) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(org)
                    .bind(user.as_uuid())
                    .bind(role)
                    .bind(to_millis(now))
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from_write)?;
                    tx.commit().await?;
                    Some(org)
                }
            }
        });
        let Some(org) = accepted else {
            return Ok(None);
        };
        let org = OrgId::from_uuid(org);
        let invitation = self.invitation(org, id).await?;
        let member = self.member(org, user).await?;
        Ok(invitation.zip(member))
    }

    /// Declines a pending, unexpired invitation whose token hash is still `token_hash`. `None`
    /// if it was no longer open.
    pub async fn decline_invitation(
        &self,
        id: Uuid,
        token_hash: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Option<Invitation>> {
        let org: Option<Uuid> = on_backend!(self.writer(), |p| {
            sqlx::query_scalar(
                "UPDATE org_invitations SET status = 'declined', closed_at = $3, updated_at = $3 \
                 WHERE id = $1 AND token_hash = $2 AND status = 'pending' AND expires_at > $3 \
                 RETURNING org_id",
            )
            .bind(id)
            .bind(&token_hash[..])
            .bind(to_millis(now))
            .fetch_optional(p)
            .await
        })?;
        match org {
            Some(org) => self.invitation(OrgId::from_uuid(org), id).await,
            None => Ok(None),
        }
    }
}
