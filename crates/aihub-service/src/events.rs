//! Invalidation events. A service that changes who may use what (revoking or rotating a key,
//! editing one, disabling a user) publishes an event; caches subscribe and forget the affected
//! entries. Subscribers run synchronously inside `publish`, so when a service call returns, every
//! cache of this instance has already forgotten — "revoked" means refused on the very next
//! request. Other instances' caches expire entries within `gateway.key_cache_ttl_secs`.

use std::sync::{Arc, RwLock};

use aihub_core::{OrgId, UserId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// A key, by the SHA-256 of its secret, changed (revoked, rotated away).
    KeyHash([u8; 32]),
    /// Everything that depends on this user (their keys) may have changed.
    User(UserId),
    /// Everything that depends on this organization may have changed.
    Org(OrgId),
    /// This organization's rate limits, budgets or plan changed (keys are unaffected).
    Policy(OrgId),
}

type Subscriber = Arc<dyn Fn(&Invalidation) + Send + Sync>;

/// The in-process event bus. Cheap to clone; clones share subscribers.
#[derive(Clone, Default)]
pub struct Events {
    subscribers: Arc<RwLock<Vec<Subscriber>>>,
}

impl Events {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `f` to be called with every event. Subscribers must be quick and must not
    /// block: they run on the publisher's task.
    pub fn subscribe(&self, f: impl Fn(&Invalidation) + Send + Sync + 'static) {
        self.subscribers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Arc::new(f));
    }

    pub fn publish(&self, event: Invalidation) {
        let subscribers = self
            .subscribers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for s in subscribers {
            s(&event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn subscribers_see_every_event_synchronously() {
        let events = Events::new();
        events.publish(Invalidation::User(UserId::new())); // nobody listening: fine
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        events.subscribe(move |e| s.lock().unwrap().push(e.clone()));
        let org = OrgId::new();
        events.clone().publish(Invalidation::Org(org));
        events.publish(Invalidation::KeyHash([1; 32]));
        assert_eq!(
            *seen.lock().unwrap(),
            vec![Invalidation::Org(org), Invalidation::KeyHash([1; 32])]
        );
    }
}
