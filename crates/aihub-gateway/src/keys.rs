//! The API-key cache. A presented key is hashed (SHA-256) and looked up here; only a miss reads
//! the database, and concurrent misses for one key share a single read. Entries live for
//! `gateway.key_cache_ttl_secs`; changes made through this instance's services (revoke, rotate,
//! edit, user disabled) evict affected entries before the service call returns, through
//! [`Invalidation`] events. Unknown keys are cached too (as misses), so a flood of made-up keys
//! cannot reach the database.
//!
//! A lookup that read the database just before a revocation committed could otherwise put the
//! stale key back after the eviction. Every entry therefore records the invalidation generation
//! current when its database read began; an entry older than the latest invalidation is checked
//! against the recent invalidations and reloaded if one of them concerns it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
enum Found {
    Key(Arc<KeyAuth>),
    Missing,
}

#[derive(Clone)]
struct Entry {
    found: Found,
    /// Invalidation generation when the database read began.
    generation: u64,
}

/// Invalidations remembered for the stale-entry check (older ones are covered by the TTL).
const RECENT_INVALIDATIONS: usize = 4096;

fn concerns(event: &Invalidation, hash: &[u8; 32], found: &Found) -> bool {
    match (event, found) {
        (Invalidation::KeyHash(h), _) => h == hash,
        (Invalidation::User(u), Found::Key(a)) => a.key.owner_user_id == Some(*u),
        (Invalidation::Org(o), Found::Key(a)) => a.key.org_id == *o,
        (Invalidation::Policy(_), _) | (_, Found::Missing) => false,
    }
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
    generation: Arc<AtomicU64>,
    recent: Arc<Mutex<VecDeque<(u64, Invalidation)>>>,
}

impl KeyCache {
    #[must_use]
    pub fn new(keys: Keys, config: &GatewayConfig) -> Self {
        let cache = Cache::builder()
            .max_capacity(config.key_cache_capacity)
            .time_to_live(Duration::from_secs(config.key_cache_ttl_secs.max(1)))
            .support_invalidation_closures()
            .build();
        Self {
            keys,
            cache,
            generation: Arc::new(AtomicU64::new(0)),
            recent: Arc::new(Mutex::new(VecDeque::new())),
        }
    }

    /// Whether an invalidation newer than `entry` concerns it.
    fn is_stale(&self, hash: &[u8; 32], entry: &Entry) -> bool {
        if entry.generation == self.generation.load(Ordering::Acquire) {
            return false;
        }
        let recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let oldest = recent.front().map_or(u64::MAX, |(g, _)| *g);
        // Older than anything remembered: cannot tell, so reload.
        entry.generation + 1 < oldest
            || recent
                .iter()
                .any(|(g, ev)| *g > entry.generation && concerns(ev, hash, &entry.found))
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
        let mut entry = self.lookup(hash, presented).await?;
        if self.is_stale(&hash, &entry) {
            self.cache.invalidate(&hash).await;
            entry = self.lookup(hash, presented).await?;
        }
        match entry.found {
            Found::Missing => Err(KeyAuthError::Rejected(KeyRejection::Unknown)),
            Found::Key(auth) => {
                check_usable(&auth, now).map_err(KeyAuthError::Rejected)?;
                Ok(auth)
            }
        }
    }

    async fn lookup(&self, hash: [u8; 32], presented: &str) -> Result<Entry, KeyAuthError> {
        // A hit needs no loader: building one costs a copy of the secret and a boxed future.
        if let Some(entry) = self.cache.get(&hash).await {
            return Ok(entry);
        }
        let keys = self.keys.clone();
        let owned = presented.to_owned();
        let generation = self.generation.clone();
        self.cache
            .try_get_with(hash, async move {
                let generation = generation.load(Ordering::Acquire);
                keys.find_by_secret(&owned).await.map(|found| Entry {
                    found: match found {
                        Some((_, auth)) => Found::Key(Arc::new(auth)),
                        None => Found::Missing,
                    },
                    generation,
                })
            })
            .await
            .map_err(KeyAuthError::Lookup)
    }

    /// Subscribes this cache to `events`.
    pub fn subscribe_to(&self, events: &Events) {
        let this = self.clone();
        events.subscribe(move |e| this.apply(e));
    }

    /// Applies one invalidation event. moka's predicate invalidation takes effect for reads at
    /// once (entries are dropped lazily afterwards), which is what makes revocation immediate.
    pub fn apply(&self, event: &Invalidation) {
        if matches!(event, Invalidation::Policy(_)) {
            return; // keys are unaffected
        }
        {
            let mut recent = self
                .recent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
            recent.push_back((generation, event.clone()));
            if recent.len() > RECENT_INVALIDATIONS {
                recent.pop_front();
            }
        }
        let result = match event {
            Invalidation::KeyHash(hash) => {
                let hash = *hash;
                self.cache.invalidate_entries_if(move |k, _| *k == hash)
            }
            Invalidation::User(user) => {
                let user = *user;
                self.cache.invalidate_entries_if(
                    move |_, e| matches!(&e.found, Found::Key(a) if a.key.owner_user_id == Some(user)),
                )
            }
            Invalidation::Org(org) => {
                let org = *org;
                self.cache.invalidate_entries_if(
                    move |_, e| matches!(&e.found, Found::Key(a) if a.key.org_id == org),
                )
            }
            Invalidation::Policy(_) => return,
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
