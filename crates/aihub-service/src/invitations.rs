//! Invitations into an organization by e-mail. The invitee receives a link with a random token
//! (256 bits; only its SHA-256 is stored) and accepts or declines it while signed in with the
//! invited address. Sending, resending and revoking need `invitations.manage`; only an Owner
//! invites Owners (or resends and revokes their invitations). A resend mints a new token, so the
//! old link stops working.

use aihub_core::config::{AuthConfig, ServerConfig, SmtpConfig};
use aihub_core::time::{from_millis, now};
use aihub_core::{Email, Role};
use aihub_store::{Invitation, InvitationStatus, Membership, NewInvitation, Store, StoreError};
use chrono::{DateTime, Duration, Utc};
use lettre::message::Mailbox;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use uuid::Uuid;

use crate::accounts::Actor;
use crate::audit::{Audit, Change};
use crate::crypto;
use crate::error::{Result, ServiceError};
use crate::notify::mail::Mailer;
use crate::orgs::{OrgScope, TenancyError};
use crate::page::Page;
use crate::policy::Action;

/// Invitation tokens start with this, so they are recognizable in a leak scanner.
pub const INVITATION_TOKEN_PREFIX: &str = "aihub-inv-";
/// Base62 characters after the prefix: 256 random bits.
const TOKEN_RANDOM_CHARS: usize = 43;

#[derive(Clone)]
pub struct Invitations {
    store: Store,
    audit: Audit,
    /// `None`: no `smtp.host`; invitations are created but not e-mailed.
    mailer: Option<Mailer>,
    ttl: Duration,
    /// Where links point: `server.public_url`, else `http://<server.listen>`.
    link_base: String,
}

/// Where an invitation stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationState {
    Pending,
    Expired,
    Accepted,
    Declined,
    Revoked,
}

impl InvitationState {
    #[must_use]
    pub fn of(i: &Invitation, at: DateTime<Utc>) -> Self {
        match i.status {
            InvitationStatus::Pending if i.expires_at <= at => InvitationState::Expired,
            InvitationStatus::Pending => InvitationState::Pending,
            InvitationStatus::Accepted => InvitationState::Accepted,
            InvitationStatus::Declined => InvitationState::Declined,
            InvitationStatus::Revoked => InvitationState::Revoked,
        }
    }

    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            InvitationState::Pending => "pending",
            InvitationState::Expired => "expired",
            InvitationState::Accepted => "accepted",
            InvitationState::Declined => "declined",
            InvitationState::Revoked => "revoked",
        }
    }
}

/// An invitation just sent (or resent), and whether the e-mail went out.
#[derive(Debug, Clone)]
pub struct Sent {
    pub invitation: Invitation,
    pub email_sent: bool,
}

/// Input for a new invitation, as received.
#[derive(Debug, Clone)]
pub struct CreateInvitation {
    pub email: String,
    pub role: Role,
}

impl Invitations {
    /// Fails on unusable SMTP settings (a bad `smtp.from`).
    pub fn new(
        store: Store,
        audit: Audit,
        smtp: &SmtpConfig,
        server: &ServerConfig,
        auth: &AuthConfig,
    ) -> Result<Self> {
        let mailer = Mailer::new(smtp)
            .map_err(|e| ServiceError::invalid("invalid_config", e.to_string()))?;
        let link_base = server
            .public_url
            .as_deref()
            .filter(|u| !u.is_empty())
            .map_or_else(
                || format!("http://{}", server.listen),
                |u| u.trim_end_matches('/').to_owned(),
            );
        let hours = i64::try_from(auth.invitation_ttl_hours).unwrap_or(i64::MAX);
        Ok(Self {
            store,
            audit,
            mailer,
            ttl: Duration::try_hours(hours).unwrap_or(Duration::MAX),
            link_base,
        })
    }

    pub async fn list(
        &self,
        scope: &OrgScope,
        cursor: Option<Uuid>,
        limit: u32,
    ) -> Result<Page<Invitation, Uuid>> {
        scope.require(Action::InvitationsRead)?;
        let rows = self
            .store
            .invitations(scope.org_id(), cursor, limit + 1)
            .await?;
        Ok(Page::from_overfetch(rows, limit, |i| i.id))
    }

    /// Invites `email` with `role` and e-mails the link (when SMTP is configured).
    pub async fn create(&self, scope: &OrgScope, input: CreateInvitation) -> Result<Sent> {
        scope.require(Action::InvitationsManage)?;
        if input.role == Role::Owner && !scope.acts_as_owner() {
            return Err(ServiceError::Forbidden);
        }
        let email = Email::parse(&input.email)
            .map_err(|e| ServiceError::invalid("invalid_email", e.to_string()))?;
        if self.store.is_member_email(scope.org_id(), &email).await? {
            return Err(ServiceError::Conflict {
                code: "already_member",
                message: "someone with this e-mail address is already a member".into(),
            });
        }
        let (token, hash) = mint_token()?;
        let t = now();
        let invitation = Invitation {
            id: Uuid::now_v7(),
            org_id: scope.org_id(),
            org_name: scope.org().name.clone(),
            email,
            role: input.role,
            invited_by: Some(scope.actor().user_id),
            invited_by_name: Some(scope.actor().name.clone()),
            status: InvitationStatus::Pending,
            created_at: t,
            updated_at: t,
            expires_at: self.expiry(t),
            closed_at: None,
        };
        match self
            .store
            .insert_invitation(&NewInvitation {
                invitation: invitation.clone(),
                token_hash: hash,
            })
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                return Err(ServiceError::Conflict {
                    code: "invitation_exists",
                    message: "this address already has a pending invitation: resend or revoke it"
                        .into(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        let email_sent = self.send(&invitation, scope.actor(), &token).await;
        tracing::info!(org_id = %invitation.org_id, invitation_id = %invitation.id, email_sent, "invitation created");
        self.audit
            .record(
                scope.actor(),
                Change::new(
                    Some(invitation.org_id),
                    "invitation.create",
                    "invitation",
                    invitation.id,
                )
                .after(json!({
                    "email": invitation.email.as_str(),
                    "role": invitation.role,
                    "expires_at": invitation.expires_at,
                    "email_sent": email_sent,
                })),
            )
            .await?;
        Ok(Sent {
            invitation,
            email_sent,
        })
    }

    /// Loads an invitation of the organization and checks the caller may manage it.
    async fn manageable(&self, scope: &OrgScope, id: Uuid) -> Result<Invitation> {
        scope.require(Action::InvitationsManage)?;
        let invitation = self
            .store
            .invitation(scope.org_id(), id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        if invitation.role == Role::Owner && !scope.acts_as_owner() {
            return Err(ServiceError::Forbidden);
        }
        Ok(invitation)
    }

    /// Sends the invitation again with a new token and a new expiry; the old token is dead.
    /// Works on expired invitations too; not on answered or revoked ones.
    pub async fn resend(&self, scope: &OrgScope, id: Uuid) -> Result<Sent> {
        let before = self.manageable(scope, id).await?;
        let (token, hash) = mint_token()?;
        let t = now();
        let invitation = self
            .store
            .reissue_invitation(scope.org_id(), id, &hash, self.expiry(t), t)
            .await?
            .ok_or_else(closed)?;
        let email_sent = self.send(&invitation, scope.actor(), &token).await;
        tracing::info!(org_id = %invitation.org_id, invitation_id = %invitation.id, email_sent, "invitation resent");
        self.audit
            .record(
                scope.actor(),
                Change::new(
                    Some(invitation.org_id),
                    "invitation.resend",
                    "invitation",
                    invitation.id,
                )
                .before(json!({"expires_at": before.expires_at}))
                .after(json!({"expires_at": invitation.expires_at, "email_sent": email_sent})),
            )
            .await?;
        Ok(Sent {
            invitation,
            email_sent,
        })
    }

    /// Revokes a pending (or expired) invitation; its link stops working.
    pub async fn revoke(&self, scope: &OrgScope, id: Uuid) -> Result<Invitation> {
        self.manageable(scope, id).await?;
        let invitation = self
            .store
            .close_invitation(scope.org_id(), id, InvitationStatus::Revoked, now())
            .await?
            .ok_or_else(closed)?;
        self.audit
            .record(
                scope.actor(),
                Change::new(
                    Some(invitation.org_id),
                    "invitation.revoke",
                    "invitation",
                    invitation.id,
                )
                .before(json!({"email": invitation.email.as_str(), "role": invitation.role})),
            )
            .await?;
        Ok(invitation)
    }

    /// Pending invitations addressed to the caller's e-mail.
    pub async fn mine(&self, actor: &Actor) -> Result<Vec<Invitation>> {
        Ok(self
            .store
            .pending_invitations_for(&actor.email, now())
            .await?)
    }

    /// Finds the open invitation behind `token` for the caller. Someone else's token, an unknown
    /// one, or one into a deleted organization: `NotFound`. Over: `Gone`.
    async fn open_for(
        &self,
        actor: &Actor,
        token: &str,
    ) -> Result<(Invitation, [u8; 32]), TenancyError> {
        let found = self.by_token(actor, token).await?;
        let (invitation, hash) = found.ok_or(ServiceError::NotFound)?;
        match InvitationState::of(&invitation, now()) {
            InvitationState::Pending => Ok((invitation, hash)),
            state => Err(gone(state)),
        }
    }

    async fn by_token(&self, actor: &Actor, token: &str) -> Result<Option<(Invitation, [u8; 32])>> {
        if !looks_like_token(token) {
            return Ok(None);
        }
        let hash = crypto::sha256(token.as_bytes());
        Ok(self
            .store
            .invitation_by_token(&hash)
            .await?
            .filter(|i| i.email == actor.email)
            .map(|i| (i, hash)))
    }

    /// When a conditional update found the invitation no longer open: why, as of now.
    async fn why_not(&self, actor: &Actor, token: &str) -> TenancyError {
        match self.by_token(actor, token).await {
            Ok(Some((i, _))) => gone(InvitationState::of(&i, now())),
            Ok(None) => ServiceError::NotFound.into(),
            Err(e) => e.into(),
        }
    }

    /// Accepts an invitation addressed to the caller: they become a member with the invited
    /// role.
    pub async fn accept(
        &self,
        actor: &Actor,
        token: &str,
    ) -> Result<(Invitation, Membership), TenancyError> {
        let (invitation, hash) = self.open_for(actor, token).await?;
        if self
            .store
            .membership(invitation.org_id, actor.user_id)
            .await?
            .is_some()
        {
            return Err(already_member().into());
        }
        let accepted = match self
            .store
            .accept_invitation(invitation.id, &hash, actor.user_id, now())
            .await
        {
            Ok(Some(done)) => done,
            Ok(None) => return Err(self.why_not(actor, token).await),
            Err(StoreError::Conflict) => return Err(already_member().into()),
            Err(e) => return Err(e.into()),
        };
        let (invitation, member) = accepted;
        tracing::info!(org_id = %invitation.org_id, invitation_id = %invitation.id, "invitation accepted");
        self.audit
            .record(
                actor,
                Change::new(
                    Some(invitation.org_id),
                    "invitation.accept",
                    "invitation",
                    invitation.id,
                )
                .after(json!({"user_id": actor.user_id, "role": member.role})),
            )
            .await?;
        let membership = self
            .store
            .membership(invitation.org_id, actor.user_id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        Ok((invitation, membership))
    }

    /// Declines an invitation addressed to the caller.
    pub async fn decline(&self, actor: &Actor, token: &str) -> Result<Invitation, TenancyError> {
        let (invitation, hash) = self.open_for(actor, token).await?;
        let declined = match self
            .store
            .decline_invitation(invitation.id, &hash, now())
            .await?
        {
            Some(i) => i,
            None => return Err(self.why_not(actor, token).await),
        };
        self.audit
            .record(
                actor,
                Change::new(
                    Some(declined.org_id),
                    "invitation.decline",
                    "invitation",
                    declined.id,
                )
                .after(json!({"user_id": actor.user_id})),
            )
            .await?;
        Ok(declined)
    }

    fn expiry(&self, from: DateTime<Utc>) -> DateTime<Utc> {
        let at = from
            .checked_add_signed(self.ttl)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        // Storage keeps milliseconds.
        from_millis(at.timestamp_millis())
    }

    /// The accept link for a token.
    fn link(&self, token: &SecretString) -> String {
        format!(
            "{}/invitations/accept?token={}",
            self.link_base,
            token.expose_secret()
        )
    }

    /// One attempt to e-mail the invitation; `false` if e-mail is off or the relay refused. The
    /// invitation stands either way and can be resent.
    async fn send(&self, i: &Invitation, inviter: &Actor, token: &SecretString) -> bool {
        let Some(mailer) = &self.mailer else {
            return false;
        };
        let Ok(to) = i.email.as_str().parse::<Mailbox>() else {
            tracing::warn!(invitation_id = %i.id, "invitation address is not a mailbox");
            return false;
        };
        let org = one_line(&i.org_name);
        let who = one_line(&inviter.name);
        let subject = format!("[AI Hub] {who} invited you to {org}");
        let body = format!(
            "{who} ({email}) invited you to join the organization \"{org}\" on AI Hub as {role}.\n\
             \n\
             To accept or decline, open this link while signed in as {to}:\n\
             \n\
             {link}\n\
             \n\
             The invitation expires at {expires}. No account yet? Register with this e-mail \
             address first, then open the link.\n\
             \n\
             If you did not expect this invitation, ignore this e-mail.\n\
             \n\
             -- \n\
             AI Hub\n",
            email = inviter.email,
            role = i.role,
            to = i.email,
            link = self.link(token),
            expires = i.expires_at.format("%Y-%m-%d %H:%M UTC"),
        );
        match mailer.send(&[to], &subject, &body).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(invitation_id = %i.id, error = ?e, "invitation e-mail not sent");
                false
            }
        }
    }
}

/// A new invitation token and its hash.
fn mint_token() -> Result<(SecretString, [u8; 32])> {
    let token = format!(
        "{INVITATION_TOKEN_PREFIX}{}",
        crypto::base62(&crypto::random_bytes::<32>()?, TOKEN_RANDOM_CHARS)
    );
    let hash = crypto::sha256(token.as_bytes());
    Ok((SecretString::from(token), hash))
}

fn looks_like_token(s: &str) -> bool {
    s.len() == INVITATION_TOKEN_PREFIX.len() + TOKEN_RANDOM_CHARS
        && s.starts_with(INVITATION_TOKEN_PREFIX)
        && s.bytes()
            .skip(INVITATION_TOKEN_PREFIX.len())
            .all(|b| b.is_ascii_alphanumeric())
}

/// A name for a mail header or line: no line breaks.
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

fn closed() -> ServiceError {
    ServiceError::Conflict {
        code: "invitation_closed",
        message: "this invitation was already accepted, declined or revoked".into(),
    }
}

fn already_member() -> ServiceError {
    ServiceError::Conflict {
        code: "already_member",
        message: "you are already a member of this organization".into(),
    }
}

fn gone(state: InvitationState) -> TenancyError {
    let (code, message) = match state {
        InvitationState::Expired => (
            "invitation_expired",
            "this invitation has expired: ask for it to be resent",
        ),
        InvitationState::Revoked => ("invitation_revoked", "this invitation was revoked"),
        InvitationState::Accepted | InvitationState::Declined | InvitationState::Pending => (
            "invitation_used",
            "this invitation was already accepted or declined",
        ),
    };
    TenancyError::Gone {
        code,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bits_and_recognizable() {
        let (t, h) = mint_token().unwrap();
        assert!(looks_like_token(t.expose_secret()));
        assert_eq!(h, crypto::sha256(t.expose_secret().as_bytes()));
        assert_ne!(mint_token().unwrap().1, h);
        assert!(!looks_like_token("aihub-inv-short"));
        assert!(!looks_like_token(&format!("aihub-sess-{}", "a".repeat(43))));
    }

    #[test]
    fn header_values_lose_line_breaks() {
        assert_eq!(one_line("Acme\r\nBcc: x"), "Acme  Bcc: x");
    }
}
