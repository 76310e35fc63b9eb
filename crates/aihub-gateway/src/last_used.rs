//! `last_used_at` of API keys, kept off the hot path: requests note the time in memory and a
//! background task writes the batch back every `gateway.last_used_flush_secs`, and once more on
//! shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aihub_core::KeyId;
use aihub_service::keys::Keys;
use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;
use tokio_util::sync::CancellationToken;

pub struct LastUsed {
    keys: Keys,
    /// Keyed by key ids from the database, so a fast hash is safe.
    pending: Mutex<FxHashMap<KeyId, DateTime<Utc>>>,
}

impl LastUsed {
    #[must_use]
    pub fn new(keys: Keys) -> Self {
        Self {
            keys,
            pending: Mutex::new(FxHashMap::default()),
        }
    }

    /// Notes that `key` was used at `at`. O(1), no I/O.
    pub fn touch(&self, key: KeyId, at: DateTime<Utc>) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pending
            .entry(key)
            .and_modify(|t| *t = (*t).max(at))
            .or_insert(at);
    }

    /// Writes the pending times; on failure they are put back for the next attempt.
    pub async fn flush(&self) -> usize {
        let batch: Vec<(KeyId, DateTime<Utc>)> = {
            let mut pending = self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            pending.drain().collect()
        };
        if batch.is_empty() {
            return 0;
        }
        match self.keys.record_used(&batch).await {
            Ok(()) => batch.len(),
            Err(e) => {
                tracing::warn!(error = %e, keys = batch.len(), "could not record key usage times; will retry");
                for (k, t) in batch {
                    self.touch(k, t);
                }
                0
            }
        }
    }

    /// Flushes every `every` until `stop`, then flushes a last time.
    pub async fn run(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => { self.flush().await; }
            }
        }
        self.flush().await;
    }
}
