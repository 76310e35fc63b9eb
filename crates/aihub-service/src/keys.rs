//! API keys: create (the secret is returned exactly once), list, read, edit, rotate, revoke; and
//! the rule that decides whether a presented key may be used, shared with the gateway.

use aihub_core::time::now;
use aihub_core::{KeyId, TeamId};
use aihub_store::{ApiKey, KeyAuth, KeyChanges, NewApiKey, Store};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::json;

use crate::audit::{Audit, Change};
use crate::crypto;
use crate::error::{Result, ServiceError};
use crate::events::{Events, Invalidation};
use crate::orgs::OrgScope;
use crate::page::Page;
use crate::policy::Action;

pub const MAX_KEY_NAME_CHARS: usize = 100;
pub const MAX_MODELS_PER_KEY: usize = 100;
pub const MAX_MODEL_NAME_CHARS: usize = 128;

#[derive(Clone)]
pub struct Keys {
    store: Store,
    events: Events,
    audit: Audit,
}

/// Input for a new key, as received (validated by [`Keys::create`]).
#[derive(Debug, Clone, Default)]
pub struct CreateKey {
    pub name: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub models: Option<Vec<String>>,
    /// A team of the organization whose limits and budgets the key's requests count against.
    /// Callers without `keys.manage_all` must be members of that team.
    pub team_id: Option<TeamId>,
}

/// Input for an edit: `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct UpdateKey {
    pub name: Option<String>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub models: Option<Option<Vec<String>>>,
}

/// A key together with its secret, returned by create and rotate only.
pub struct KeyWithSecret {
    pub key: ApiKey,
    pub secret: SecretString,
}

/// Why a presented key is refused by the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRejection {
    Unknown,
    Revoked,
    Expired,
    /// Its owner was disabled or left the organization.
    OwnerInactive,
}

impl KeyRejection {
    #[must_use]
    pub const fn message(&self) -> &'static str {
        match self {
            KeyRejection::Unknown => "Incorrect API key provided.",
            KeyRejection::Revoked => "This API key has been revoked.",
            KeyRejection::Expired => "This API key has expired.",
            KeyRejection::OwnerInactive => "This API key belongs to an inactive account.",
        }
    }
}

/// Whether a key found by hash may be used at `at`. Called on every gateway request with the
/// cached [`KeyAuth`], so expiry is checked against the current time, not the time of caching.
pub fn check_usable(auth: &KeyAuth, at: DateTime<Utc>) -> Result<(), KeyRejection> {
    if auth.key.revoked_at.is_some() {
        return Err(KeyRejection::Revoked);
    }
    if auth.key.expires_at.is_some_and(|e| e <= at) {
        return Err(KeyRejection::Expired);
    }
    if auth.owner_disabled || !auth.owner_is_member {
        return Err(KeyRejection::OwnerInactive);
    }
    Ok(())
}

impl Keys {
    #[must_use]
    pub fn new(store: Store, events: Events, audit: Audit) -> Self {
        Self {
            store,
            events,
            audit,
        }
    }

    pub async fn create(&self, scope: &OrgScope, input: CreateKey) -> Result<KeyWithSecret> {
        scope.require(Action::KeysCreate)?;
        let t = now();
        let name = parse_key_name(&input.name)?;
        let expires_at = input.expires_at.map(|e| parse_expiry(e, t)).transpose()?;
        let models = self
            .within_member_models(scope, input.models.map(parse_models).transpose()?)
            .await?;
        if let Some(team) = input.team_id {
            self.check_team(scope, team).await?;
        }
        let minted = crypto::mint_api_key()?;
        let creator = scope.actor().user_id;
        // A platform admin acting in an organization they do not belong to creates a key owned
        // by the organization, not by themselves (a personal key of a non-member would be
        // refused by the gateway).
        let owner = scope.role().map(|_| creator);
        let key = ApiKey {
            id: KeyId::new(),
            org_id: scope.org_id(),
            team_id: input.team_id,
            owner_user_id: owner,
            created_by: creator,
            name,
            prefix: minted.prefix,
            models,
            expires_at,
            revoked_at: None,
            last_used_at: None,
            created_at: t,
            updated_at: t,
        };
        self.store
            .insert_key(&NewApiKey {
                key: key.clone(),
                key_hash: minted.hash,
            })
            .await?;
        tracing::info!(org_id = %key.org_id, key_id = %key.id, prefix = %key.prefix, "api key created");
        self.audit
            .record(
                scope.actor(),
                Change::new(Some(key.org_id), "key.create", "api_key", key.id)
                    .after(snapshot(&key)),
            )
            .await?;
        Ok(KeyWithSecret {
            key,
            secret: minted.secret,
        })
    }

    pub async fn list(
        &self,
        scope: &OrgScope,
        cursor: Option<KeyId>,
        limit: u32,
    ) -> Result<Page<ApiKey, KeyId>> {
        scope.require(Action::KeysRead)?;
        let rows = self
            .store
            .list_keys(scope.org_id(), cursor, limit + 1)
            .await?;
        Ok(Page::from_overfetch(rows, limit, |k| k.id))
    }

    pub async fn get(&self, scope: &OrgScope, id: KeyId) -> Result<ApiKey> {
        scope.require(Action::KeysRead)?;
        self.store
            .key(scope.org_id(), id)
            .await?
            .ok_or(ServiceError::NotFound)
    }

    /// Loads a key and checks that the caller may manage it.
    async fn manageable(&self, scope: &OrgScope, id: KeyId) -> Result<ApiKey> {
        let key = self.get(scope, id).await?;
        let own = key.owner_user_id == Some(scope.actor().user_id);
        if scope.can(Action::KeysManageAll) || (own && scope.can(Action::KeysManageOwn)) {
            Ok(key)
        } else {
            Err(ServiceError::Forbidden)
        }
    }

    pub async fn update(&self, scope: &OrgScope, id: KeyId, input: UpdateKey) -> Result<ApiKey> {
        let key = self.manageable(scope, id).await?;
        if key.revoked_at.is_some() {
            return Err(revoked());
        }
        let t = now();
        let changes = KeyChanges {
            name: input.name.as_deref().map(parse_key_name).transpose()?,
            expires_at: input
                .expires_at
                .map(|e| e.map(|e| parse_expiry(e, t)).transpose())
                .transpose()?,
            models: match input.models {
                None => None,
                Some(m) => Some(
                    self.within_member_models(scope, m.map(parse_models).transpose()?)
                        .await?,
                ),
            },
        };
        let updated = self
            .store
            .update_key(scope.org_id(), id, &changes, t)
            .await?
            .ok_or_else(revoked)?;
        // Expiry and model changes must reach the gateway now, not after the cache TTL.
        self.events.publish(Invalidation::Org(scope.org_id()));
        self.audit
            .record(
                scope.actor(),
                Change::new(Some(updated.org_id), "key.update", "api_key", updated.id)
                    .before(snapshot(&key))
                    .after(snapshot(&updated)),
            )
            .await?;
        Ok(updated)
    }

    /// Revokes a key; it stops working at once on this instance. Revoking twice is harmless.
    pub async fn revoke(&self, scope: &OrgScope, id: KeyId) -> Result<ApiKey> {
        let before = self.manageable(scope, id).await?;
        let (key, hash) = self
            .store
            .revoke_key(scope.org_id(), id, now())
            .await?
            .ok_or(ServiceError::NotFound)?;
        self.publish_hash(&hash);
        // Revoking an already revoked key changes nothing, so it records nothing.
        if before.revoked_at.is_none() {
            tracing::info!(org_id = %key.org_id, key_id = %key.id, "api key revoked");
            self.audit
                .record(
                    scope.actor(),
                    Change::new(Some(key.org_id), "key.revoke", "api_key", key.id)
                        .before(snapshot(&before))
                        .after(snapshot(&key)),
                )
                .await?;
        }
        Ok(key)
    }

    /// Gives a key a new secret; the old one stops working at once on this instance.
    pub async fn rotate(&self, scope: &OrgScope, id: KeyId) -> Result<KeyWithSecret> {
        let key = self.manageable(scope, id).await?;
        if key.revoked_at.is_some() {
            return Err(revoked());
        }
        let minted = crypto::mint_api_key()?;
        let (key, old_hash) = self
            .store
            .rotate_key(scope.org_id(), id, &minted.prefix, &minted.hash, now())
            .await?
            .ok_or_else(revoked)?;
        self.publish_hash(&old_hash);
        tracing::info!(org_id = %key.org_id, key_id = %key.id, "api key rotated");
        self.audit
            .record(
                scope.actor(),
                Change::new(Some(key.org_id), "key.rotate", "api_key", key.id)
                    .after(json!({ "prefix": key.prefix })),
            )
            .await?;
        Ok(KeyWithSecret {
            key,
            secret: minted.secret,
        })
    }

    /// The caller's model allow-list applied to a key's: a member limited to some models cannot
    /// give a key more (a key for every model gets the member's list). Platform admins acting
    /// outside their own memberships are not limited.
    async fn within_member_models(
        &self,
        scope: &OrgScope,
        models: Option<Vec<String>>,
    ) -> Result<Option<Vec<String>>> {
        if scope.role().is_none() {
            return Ok(models);
        }
        let allowed = self
            .store
            .member(scope.org_id(), scope.actor().user_id)
            .await?
            .and_then(|m| m.models);
        let Some(allowed) = allowed else {
            return Ok(models);
        };
        match models {
            None => Ok(Some(allowed)),
            Some(list) => {
                let beyond: Vec<&str> = list
                    .iter()
                    .filter(|m| !allowed.contains(m))
                    .map(String::as_str)
                    .collect();
                if beyond.is_empty() {
                    Ok(Some(list))
                } else {
                    Err(ServiceError::invalid(
                        "models_not_allowed",
                        format!(
                            "you may only give keys models you may use yourself; not allowed: {}",
                            beyond.join(", ")
                        ),
                    ))
                }
            }
        }
    }

    /// A key may name a team of its organization; callers who cannot manage every key must be
    /// in that team. Another organization's team is not found.
    async fn check_team(&self, scope: &OrgScope, team: TeamId) -> Result<()> {
        if self.store.team(scope.org_id(), team).await?.is_none() {
            return Err(ServiceError::NotFound);
        }
        if scope.can(Action::KeysManageAll)
            || self
                .store
                .is_team_member(scope.org_id(), team, scope.actor().user_id)
                .await?
        {
            Ok(())
        } else {
            Err(ServiceError::Forbidden)
        }
    }

    fn publish_hash(&self, hash: &[u8]) {
        if let Ok(h) = <[u8; 32]>::try_from(hash) {
            self.events.publish(Invalidation::KeyHash(h));
        }
    }

    /// The gateway's uncached lookup: the stored key behind a presented secret, or `None` when
    /// the string is not a key at all or matches no key.
    pub async fn find_by_secret(&self, presented: &str) -> Result<Option<([u8; 32], KeyAuth)>> {
        if !crypto::looks_like_api_key(presented) {
            return Ok(None);
        }
        let hash = crypto::sha256(presented.as_bytes());
        let found = self.store.key_auth_by_hash(&hash).await?;
        Ok(found
            .filter(|auth| crypto::digest_eq(&auth.key_hash, &hash))
            .map(|auth| (hash, auth)))
    }

    /// Batched write-back of `last_used_at`, off the request path.
    pub async fn record_used(&self, used: &[(KeyId, DateTime<Utc>)]) -> Result<()> {
        Ok(self.store.record_keys_used(used).await?)
    }
}

/// What the audit log keeps of a key: everything but its secret and hash.
fn snapshot(k: &ApiKey) -> serde_json::Value {
    json!({
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "team_id": k.team_id,
        "owner_user_id": k.owner_user_id,
        "models": k.models,
        "expires_at": k.expires_at,
        "revoked_at": k.revoked_at,
    })
}

fn revoked() -> ServiceError {
    ServiceError::Conflict {
        code: "key_revoked",
        message: "this key is revoked and can no longer be changed".into(),
    }
}

fn parse_key_name(raw: &str) -> Result<String> {
    let name = raw.trim();
    if name.is_empty()
        || name.chars().count() > MAX_KEY_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(ServiceError::invalid(
            "invalid_name",
            format!("name must be 1 to {MAX_KEY_NAME_CHARS} characters without control characters"),
        ));
    }
    Ok(name.to_owned())
}

fn parse_expiry(at: DateTime<Utc>, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    if at <= now {
        return Err(ServiceError::invalid(
            "invalid_expires_at",
            "expires_at must be in the future",
        ));
    }
    // Storage keeps milliseconds.
    Ok(aihub_core::time::from_millis(at.timestamp_millis()))
}

/// Validates a model allow-list (a key's or a member's): 1–100 distinct names, each 1–128
/// visible characters. Order is kept; duplicates are dropped. (`null` instead of a list means
/// every model.)
pub(crate) fn parse_models(models: Vec<String>) -> Result<Vec<String>> {
    if models.is_empty() {
        return Err(ServiceError::invalid(
            "invalid_models",
            "give at least one model, or null to allow every model",
        ));
    }
    if models.len() > MAX_MODELS_PER_KEY {
        return Err(ServiceError::invalid(
            "invalid_models",
            format!("at most {MAX_MODELS_PER_KEY} models"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(models.len());
    for m in models {
        let m = m.trim();
        if m.is_empty()
            || m.chars().count() > MAX_MODEL_NAME_CHARS
            || m.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(ServiceError::invalid(
                "invalid_models",
                format!(
                    "model names must be 1 to {MAX_MODEL_NAME_CHARS} characters without spaces"
                ),
            ));
        }
        if !out.iter().any(|o| o == m) {
            out.push(m.to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aihub_core::{OrgId, UserId, time};
    use chrono::Duration;

    fn auth() -> KeyAuth {
        let t = time::now();
        let u = UserId::new();
        KeyAuth {
            key: ApiKey {
                id: KeyId::new(),
                org_id: OrgId::new(),
                team_id: None,
                owner_user_id: Some(u),
                created_by: u,
                name: "k".into(),
                prefix: "sk-aihub-x".into(),
                models: None,
                expires_at: None,
                revoked_at: None,
                last_used_at: None,
                created_at: t,
                updated_at: t,
            },
            key_hash: vec![0; 32],
            owner_disabled: false,
            owner_is_member: true,
        }
    }

    #[test]
    fn usability_rules() {
        let t = time::now();
        assert_eq!(check_usable(&auth(), t), Ok(()));
        let mut a = auth();
        a.key.revoked_at = Some(t);
        assert_eq!(check_usable(&a, t), Err(KeyRejection::Revoked));
        let mut a = auth();
        a.key.expires_at = Some(t);
        assert_eq!(check_usable(&a, t), Err(KeyRejection::Expired));
        a.key.expires_at = Some(t + Duration::seconds(1));
        assert_eq!(check_usable(&a, t), Ok(()));
        let mut a = auth();
        a.owner_disabled = true;
        assert_eq!(check_usable(&a, t), Err(KeyRejection::OwnerInactive));
        let mut a = auth();
        a.owner_is_member = false;
        assert_eq!(check_usable(&a, t), Err(KeyRejection::OwnerInactive));
        for r in [
            KeyRejection::Unknown,
            KeyRejection::Revoked,
            KeyRejection::Expired,
            KeyRejection::OwnerInactive,
        ] {
            assert!(!r.message().is_empty());
        }
    }

    #[test]
    fn model_lists_are_validated_and_deduplicated() {
        let ok = parse_models(vec![
            "gpt-4o".into(),
            " claude-3-5-sonnet ".into(),
            "gpt-4o".into(),
        ])
        .unwrap();
        assert_eq!(
            ok,
            vec!["gpt-4o".to_owned(), "claude-3-5-sonnet".to_owned()]
        );
        assert!(parse_models(vec![String::new()]).is_err());
        assert!(parse_models(vec!["has space".into()]).is_err());
        assert!(parse_models(vec!["x".repeat(129)]).is_err());
        assert!(parse_models((0..101).map(|i| i.to_string()).collect()).is_err());
        assert!(
            parse_models(vec![]).is_err(),
            "an empty list would make a useless key"
        );
    }

    #[test]
    fn names_and_expiry() {
        assert_eq!(parse_key_name("  prod  ").unwrap(), "prod");
        assert!(parse_key_name("   ").is_err());
        assert!(parse_key_name("a\u{7}b").is_err());
        assert!(parse_key_name(&"n".repeat(101)).is_err());
        let t = time::now();
        assert!(parse_expiry(t, t).is_err());
        assert!(parse_expiry(t + Duration::days(1), t).is_ok());
    }
}
