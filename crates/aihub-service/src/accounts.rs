//! Accounts and sessions: registration (with a personal organization), sign-in with throttling,
//! session authentication, sign-out, password change. Each of them is recorded in the platform
//! chain of the audit log, every sign-in attempt included.

use std::net::IpAddr;
use std::sync::Arc;

use aihub_core::config::AuthConfig;
use aihub_core::password::{NewPassword, check_length};
use aihub_core::time::now;
use aihub_core::{Email, OrgId, SessionId, UserId};
use aihub_store::{NewUser, Org, Session, Store, StoreError, User};
use chrono::Duration;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::audit::{Audit, Change, SignIn};
use crate::crypto::{self, PasswordHasher};
use crate::error::{Result, ServiceError};
use crate::events::{Events, Invalidation};
use crate::throttle::LoginThrottle;

/// Who is calling the management API: a signed-in user, through one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub user_id: UserId,
    pub email: Email,
    pub name: String,
    pub is_platform_admin: bool,
    pub session_id: SessionId,
    /// Where this request came from; audit records carry it.
    pub client: ClientInfo,
}

/// Where a request came from, for sessions, throttling and audit records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// The id AI Hub gave this request (`x-request-id`).
    pub request_id: Option<uuid::Uuid>,
}

pub struct Registration {
    pub email: String,
    pub password: SecretString,
    pub name: Option<String>,
}

/// A successful sign-in. `token` is the session's bearer secret; it exists only here.
pub struct LoginOutcome {
    pub token: SecretString,
    pub session: Session,
    pub user: User,
}

/// Writes of `last_seen_at` are skipped when the previous one is this recent.
const TOUCH_INTERVAL_SECS: i64 = 60;
const MAX_NAME_CHARS: usize = 100;

#[derive(Clone)]
pub struct Accounts {
    store: Store,
    config: AuthConfig,
    hasher: Arc<PasswordHasher>,
    throttle: Arc<LoginThrottle>,
    events: Events,
    audit: Audit,
}

/// What the audit log keeps of a user: never the password hash.
#[must_use]
pub fn audit_view(user: &User) -> Value {
    json!({
        "id": user.id,
        "email": user.email.as_str(),
        "name": user.name,
        "is_platform_admin": user.is_platform_admin,
        "disabled_at": user.disabled_at,
    })
}

/// What the audit log keeps of a new account: the user and their personal organization.
#[must_use]
pub fn new_account_view(user: &User, org: &Org) -> Value {
    json!({
        "user": audit_view(user),
        "personal_org": { "id": org.id, "name": org.name },
    })
}

impl Accounts {
    #[must_use]
    pub fn new(
        store: Store,
        config: AuthConfig,
        hasher: Arc<PasswordHasher>,
        events: Events,
        audit: Audit,
    ) -> Self {
        let throttle = Arc::new(LoginThrottle::new(config.login_throttle.clone()));
        Self {
            store,
            config,
            hasher,
            throttle,
            events,
            audit,
        }
    }

    /// Self-service sign-up; refused when registration is turned off in config. Recorded as
    /// `auth.register`, done by the new user from `client`.
    pub async fn register(&self, input: Registration, client: &ClientInfo) -> Result<(User, Org)> {
        if !self.config.allow_registration {
            return Err(ServiceError::RegistrationDisabled);
        }
        let (user, org) = self.create_user(input, false).await?;
        // Nobody is signed in yet: the record names the account that was just created, which
        // is who did it.
        self.audit
            .record_user(
                user.id,
                &user.email,
                client,
                Change::new(None, "auth.register", "user", user.id)
                    .after(new_account_view(&user, &org)),
            )
            .await?;
        Ok((user, org))
    }

    /// Creates a user with their personal organization (Owner). Used by sign-up and by the admin
    /// CLI, which may create platform admins and ignores `allow_registration`.
    pub async fn create_user(
        &self,
        input: Registration,
        platform_admin: bool,
    ) -> Result<(User, Org)> {
        let email = Email::parse(&input.email)
            .map_err(|e| ServiceError::invalid("invalid_email", e.to_string()))?;
        let password = NewPassword::parse(input.password)
            .map_err(|e| ServiceError::invalid("invalid_password", e.to_string()))?;
        let name = match input.name {
            Some(n) => parse_name(&n)?,
            None => email
                .as_str()
                .split('@')
                .next()
                .unwrap_or_default()
                .chars()
                .take(MAX_NAME_CHARS)
                .collect(),
        };
        let password_hash = self.hasher.hash(password.secret()).await?;
        let t = now();
        let user = User {
            id: UserId::new(),
            email,
            name,
            password_hash,
            is_platform_admin: platform_admin,
            disabled_at: None,
            created_at: t,
            updated_at: t,
        };
        let org = Org {
            id: OrgId::new(),
            name: format!("{}'s organization", user.name),
            is_personal: true,
            created_at: t,
            updated_at: t,
        };
        let new = NewUser {
            user,
            personal_org: org,
        };
        match self.store.create_user_with_personal_org(&new).await {
            Ok(()) => Ok((new.user, new.personal_org)),
            Err(StoreError::Conflict) => Err(ServiceError::Conflict {
                code: "email_taken",
                message: "an account with this email already exists".into(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Signs in with e-mail and password. Unknown accounts and wrong passwords get the same
    /// error after the same argon2 work; repeated failures are throttled per account and per IP.
    /// Every attempt is recorded (`auth.login` or `auth.login_failed` with its reason).
    pub async fn login(
        &self,
        email: &str,
        password: &SecretString,
        client: &ClientInfo,
    ) -> Result<LoginOutcome> {
        let account_key = email.trim().to_lowercase();
        if let Err(e) = self.throttle.check(&account_key, client.ip) {
            self.audit
                .record_sign_in(SignIn::Throttled, None, email, client)
                .await?;
            return Err(e);
        }

        let user = match self.check_password(email, password).await? {
            Checked::Match(user) => user,
            Checked::Mismatch(found) => {
                self.throttle.record_failure(&account_key, client.ip);
                tracing::info!(ip = ?client.ip, "sign-in failed");
                self.audit
                    .record_sign_in(SignIn::WrongCredentials, found.map(|u| u.id), email, client)
                    .await?;
                return Err(ServiceError::InvalidCredentials);
            }
        };
        self.throttle.record_success(&account_key);
        if user.disabled_at.is_some() {
            self.audit
                .record_sign_in(SignIn::Disabled, Some(user.id), email, client)
                .await?;
            return Err(ServiceError::AccountDisabled);
        }

        let (token, hash) = crypto::mint_session_token()?;
        let t = now();
        let session = Session {
            id: SessionId::new(),
            user_id: user.id,
            created_at: t,
            expires_at: t + hours(self.config.session_ttl_hours),
            last_seen_at: t,
            ip: client.ip.map(|ip| ip.to_string()),
            user_agent: client
                .user_agent
                .as_ref()
                .map(|ua| ua.chars().take(256).collect()),
        };
        self.store.insert_session(&session, &hash).await?;
        tracing::info!(user_id = %user.id, session_id = %session.id, "signed in");
        self.audit
            .record_sign_in(SignIn::Succeeded, Some(user.id), email, client)
            .await?;
        Ok(LoginOutcome {
            token,
            session,
            user,
        })
    }

    /// Whether `password` is the password of the account `email`, after equal work whether or
    /// not that account exists.
    async fn check_password(&self, email: &str, password: &SecretString) -> Result<Checked> {
        let user = match Email::parse(email) {
            Ok(email) => self.store.user_by_email(&email).await?,
            Err(_) => None,
        };
        // Oversized input never reaches the hasher; the answer is the same as a wrong password.
        if check_length(password.expose_secret()).is_err() {
            return Ok(Checked::Mismatch(user));
        }
        match user {
            Some(user) => {
                if self.hasher.verify(password, &user.password_hash).await? {
                    Ok(Checked::Match(user))
                } else {
                    Ok(Checked::Mismatch(Some(user)))
                }
            }
            None => {
                self.hasher.verify_dummy(password).await?;
                Ok(Checked::Mismatch(None))
            }
        }
    }

    /// Resolves a session token into the acting user; `Unauthenticated` if it is unknown,
    /// expired, idle too long, or its user is disabled.
    pub async fn authenticate(&self, token: &str, client: ClientInfo) -> Result<Actor> {
        if !token.starts_with(crypto::SESSION_TOKEN_PREFIX) || token.len() > 128 {
            return Err(ServiceError::Unauthenticated);
        }
        let hash = crypto::sha256(token.as_bytes());
        let Some(found) = self.store.session_by_token_hash(&hash).await? else {
            return Err(ServiceError::Unauthenticated);
        };
        let t = now();
        let s = &found.session;
        let idle_limit = minutes(self.config.session_idle_minutes);
        // Refused, not deleted: a refused request writes nothing (the periodic sweep removes
        // stale sessions; a disabled user's sessions were ended when they were disabled).
        if s.expires_at <= t || s.last_seen_at + idle_limit <= t || found.user.disabled_at.is_some()
        {
            return Err(ServiceError::Unauthenticated);
        }
        if (t - s.last_seen_at).num_seconds() >= TOUCH_INTERVAL_SECS {
            self.store.touch_session(s.id, t).await?;
        }
        Ok(Actor {
            user_id: found.user.id,
            email: found.user.email,
            name: found.user.name,
            is_platform_admin: found.user.is_platform_admin,
            session_id: s.id,
            client,
        })
    }

    /// Ends the caller's session on the server; the token is useless afterwards.
    pub async fn logout(&self, actor: &Actor) -> Result<()> {
        self.store.delete_session(actor.session_id).await?;
        self.audit
            .record(
                actor,
                Change::new(None, "auth.logout", "user", actor.user_id)
                    .after(json!({ "session_id": actor.session_id })),
            )
            .await?;
        Ok(())
    }

    pub async fn me(&self, actor: &Actor) -> Result<User> {
        self.store
            .user_by_id(actor.user_id)
            .await?
            .ok_or(ServiceError::Unauthenticated)
    }

    /// Changes the caller's password after checking the current one, and ends every other
    /// session of theirs.
    pub async fn change_password(
        &self,
        actor: &Actor,
        current: &SecretString,
        new: SecretString,
        client: &ClientInfo,
    ) -> Result<()> {
        let account_key = actor.email.as_str().to_owned();
        self.throttle.check(&account_key, client.ip)?;
        let user = self.me(actor).await?;
        let current_ok = check_length(current.expose_secret()).is_ok()
            && self.hasher.verify(current, &user.password_hash).await?;
        if !current_ok {
            self.throttle.record_failure(&account_key, client.ip);
            return Err(ServiceError::invalid(
                "wrong_password",
                "the current password is not correct",
            ));
        }
        self.throttle.record_success(&account_key);
        let new = NewPassword::parse(new)
            .map_err(|e| ServiceError::invalid("invalid_password", e.to_string()))?;
        let hash = self.hasher.hash(new.secret()).await?;
        self.store.set_password_hash(user.id, &hash, now()).await?;
        let ended = self
            .store
            .delete_user_sessions(user.id, Some(actor.session_id))
            .await?;
        self.events.publish(Invalidation::User(user.id));
        tracing::info!(user_id = %user.id, sessions_ended = ended, "password changed");
        self.audit
            .record(
                actor,
                Change::new(None, "user.password_change", "user", user.id)
                    .after(json!({ "other_sessions_ended": ended })),
            )
            .await?;
        Ok(())
    }

    /// Deletes expired and idle sessions; run periodically.
    pub async fn sweep_sessions(&self) -> Result<u64> {
        let t = now();
        Ok(self
            .store
            .delete_stale_sessions(t, t - minutes(self.config.session_idle_minutes))
            .await?)
    }

    #[must_use]
    pub fn session_ttl(&self) -> Duration {
        hours(self.config.session_ttl_hours)
    }
}

/// The outcome of a password check: the account's user when the password is theirs; otherwise
/// the account, if there is one, whose password it is not.
enum Checked {
    Match(User),
    Mismatch(Option<User>),
}

/// A person's, organization's or team's name: 1–100 characters after trimming, no control
/// characters.
pub(crate) fn parse_name(raw: &str) -> Result<String> {
    let name = raw.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(ServiceError::invalid(
            "invalid_name",
            format!("name must be 1 to {MAX_NAME_CHARS} characters without control characters"),
        ));
    }
    Ok(name.to_owned())
}

fn hours(h: u64) -> Duration {
    Duration::hours(
        i64::try_from(h)
            .unwrap_or(i64::MAX / 3_600_000)
            .min(24 * 365 * 10),
    )
}

fn minutes(m: u64) -> Duration {
    Duration::minutes(
        i64::try_from(m)
            .unwrap_or(i64::MAX / 60_000)
            .min(60 * 24 * 365 * 10),
    )
}
