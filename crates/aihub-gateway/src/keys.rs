//! The API-key cache. A presented key is hashed (SHA-256) and looked up here; only a miss reads
//! the database, and concurrent misses for one key share a single read. Entries live for
//! `gateway.key_cache_ttl_secs`; changes made through this instance's services (revoke, rotate,
//! edit, user disabled) evict affected entries before the service call returns, through
//! [`Invalidation`] events. Unknown keys are cached too (as misses), so a flood of made-up keys
//! cannot reach the database.

use std::sync::Arc;
use std::time::Duration;

use aihub_core::config::GatewayConfig;
use aihub_service::ServiceError;
use aihub_service::events::{Events, Invalidation};
use aihub_service::keys::{KeyRejection, Keys, check_usable};
use aihub_store::KeyAuth;
use chrono::{DateTime, Utc};
use moka::future::Cache;

/// A cached lookup result: the key, or the fact that no key has this hash.
#[derive(Clone)]
enum Entry {
    Found(Arc<KeyAuth>),
    Missing,
}

/// A key that passed every check for this request.
pub type AuthenticatedKey = Arc<KeyAuth>;

#[derive(Debug, thiserror::Error)]
pub enum KeyAuthError {
    #[error("{}", .0.message())]
    Rejected(KeyRejection),
    #[error("key lookup failed")]
    Lookup(#[source] Arc<ServiceError>),
}

#[derive(Clone)]
pub struct KeyCache {
    keys: Keys,
    cache: Cache<[u8; 32], Entry>,
}

impl KeyCache {
    #[must_use]
    pub fn new(keys: Keys, config: &GatewayConfig) -> Self {
        let cache = Cache::builder()
            .max_capacity(config.key_cache_capacity)
            .time_to_live(Duration::from_secs(config.key_cache_ttl_secs.max(1)))
            .support_invalidation_closures()
            .build();
        Self { keys, cache }
    }

    /// Resolves a presented bearer secret into a usable key at `now`.
    pub async fn authenticate(
        &self,
        presented: &str,
        now: DateTime<Utc>,
    ) -> Result<AuthenticatedKey, KeyAuthError> {
        if !aihub_service::crypto::looks_like_api_key(presented) {
            return Err(KeyAuthError::Rejected(KeyRejection::Unknown));
        }
        let hash = aihub_service::crypto::sha256(presented.as_bytes());
        let keys = self.keys.clone();
        let owned = presented.to_owned();
        let entry = self
            .cache
            .try_get_with(hash, async move {
                keys.find_by_secret(&owned).await.map(|found| match found {
                    Some((_, auth)) => Entry::Found(Arc::new(auth)),
                    None => Entry::Missing,
                })
            })
            .await
            .map_err(KeyAuthError::Lookup)?;
        match entry {
            Entry::Missing => Err(KeyAuthError::Rejected(KeyRejection::Unknown)),
            Entry::Found(auth) => {
                check_usable(&auth, now).map_err(KeyAuthError::Rejected)?;
                Ok(auth)
            }
        }
    }

    /// Subscribes this cache to `events`.
    pub fn subscribe_to(&self, events: &Events) {
        let this = self.clone();
        events.subscribe(move |e| this.apply(e));
    }

    /// Applies one invalidation event. moka's predicate invalidation takes effect for reads at
    /// once (entries are dropped lazily afterwards), which is what makes revocation immediate.
    pub fn apply(&self, event: &Invalidation) {
        let result = match event {
            Invalidation::KeyHash(hash) => {
                let hash = *hash;
                self.cache.invalidate_entries_if(move |k, _| *k == hash)
            }
            Invalidation::User(user) => {
                let user = *user;
                self.cache.invalidate_entries_if(
                    move |_, e| matches!(e, Entry::Found(a) if a.key.owner_user_id == Some(user)),
                )
            }
            Invalidation::Org(org) => {
                let org = *org;
                self.cache.invalidate_entries_if(
                    move |_, e| matches!(e, Entry::Found(a) if a.key.org_id == org),
                )
            }
        };
        if result.is_err() {
            // Too many pending predicates: forget everything rather than serve a stale key.
            self.cache.invalidate_all();
        }
    }

    /// Number of cached entries (approximate), for metrics and tests.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.cache.entry_count()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
