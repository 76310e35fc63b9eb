//! Sign-in throttling: growing delays after repeated failures, per account and per client IP.
//! Never a permanent lockout — every delay is capped and failures are forgotten `window_secs`
//! after the last one — so an attacker can slow a victim's sign-in down but not lock it for
//! good. State is in process memory; in a cluster each instance throttles on its own.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aihub_core::config::LoginThrottleConfig;

use crate::error::{Result, ServiceError};

/// Entries are pruned when a table grows past this many.
const PRUNE_THRESHOLD: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    blocked_until: Instant,
}

struct Table<K> {
    entries: Mutex<HashMap<K, Entry>>,
    free_attempts: u32,
}

impl<K: Eq + Hash + Clone> Table<K> {
    fn new(free_attempts: u32) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            free_attempts,
        }
    }

    fn blocked_for(&self, key: &K, now: Instant) -> Option<Duration> {
        let map = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = map.get(key)?;
        (e.blocked_until > now).then(|| e.blocked_until - now)
    }

    fn fail(&self, key: K, now: Instant, cfg: &LoginThrottleConfig) {
        let window = Duration::from_secs(cfg.window_secs);
        let mut map = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= PRUNE_THRESHOLD {
            map.retain(|_, e| e.last_failure + window > now || e.blocked_until > now);
        }
        let e = map.entry(key).or_insert(Entry {
            failures: 0,
            last_failure: now,
            blocked_until: now,
        });
        if e.last_failure + window <= now {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last_failure = now;
        if e.failures > self.free_attempts {
            e.blocked_until = now + delay_after(e.failures - self.free_attempts, cfg);
        }
    }

    fn clear(&self, key: &K) {
        let mut map = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(key);
    }
}

/// Delay after the `n`-th failure beyond the free ones: base · 2ⁿ⁻¹, capped.
fn delay_after(n: u32, cfg: &LoginThrottleConfig) -> Duration {
    let exp = n.saturating_sub(1).min(30);
    let secs = cfg.base_delay_secs.saturating_mul(1u64 << exp);
    Duration::from_secs(secs.min(cfg.max_delay_secs))
}

pub struct LoginThrottle {
    cfg: LoginThrottleConfig,
    accounts: Table<String>,
    ips: Table<IpAddr>,
}

impl LoginThrottle {
    #[must_use]
    pub fn new(cfg: LoginThrottleConfig) -> Self {
        Self {
            accounts: Table::new(cfg.account_free_attempts),
            ips: Table::new(cfg.ip_free_attempts),
            cfg,
        }
    }

    /// `Throttled` with the time to wait if the account or the IP is in a delay.
    pub fn check(&self, account: &str, ip: Option<IpAddr>) -> Result<()> {
        self.check_at(account, ip, Instant::now())
    }

    fn check_at(&self, account: &str, ip: Option<IpAddr>, now: Instant) -> Result<()> {
        let by_account = self.accounts.blocked_for(&account.to_owned(), now);
        let by_ip = ip.and_then(|ip| self.ips.blocked_for(&ip, now));
        match by_account.max(by_ip) {
            Some(wait) => Err(ServiceError::Throttled {
                // Round up so that a client waiting `Retry-After` seconds is never early.
                retry_after: Duration::from_secs(
                    wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                ),
            }),
            None => Ok(()),
        }
    }

    pub fn record_failure(&self, account: &str, ip: Option<IpAddr>) {
        self.record_failure_at(account, ip, Instant::now());
    }

    fn record_failure_at(&self, account: &str, ip: Option<IpAddr>, now: Instant) {
        self.accounts.fail(account.to_owned(), now, &self.cfg);
        if let Some(ip) = ip {
            self.ips.fail(ip, now, &self.cfg);
        }
    }

    /// A correct password clears the account's failures (not the IP's: one good account must
    /// not launder a credential-stuffing source).
    pub fn record_success(&self, account: &str) {
        self.accounts.clear(&account.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LoginThrottleConfig {
        LoginThrottleConfig {
            account_free_attempts: 3,
            ip_free_attempts: 5,
            base_delay_secs: 1,
            max_delay_secs: 60,
            window_secs: 600,
        }
    }

    fn wait(r: Result<()>) -> Option<u64> {
        match r {
            Ok(()) => None,
            Err(ServiceError::Throttled { retry_after }) => Some(retry_after.as_secs()),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let t = LoginThrottle::new(cfg());
        let t0 = Instant::now();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(wait(t.check_at("a", Some(ip), t0)), None);
            t.record_failure_at("a", Some(ip), t0);
        }
        assert_eq!(
            wait(t.check_at("a", None, t0)),
            None,
            "free attempts cost nothing"
        );
        t.record_failure_at("a", None, t0);
        assert_eq!(wait(t.check_at("a", None, t0)), Some(1));
        t.record_failure_at("a", None, t0);
        assert_eq!(wait(t.check_at("a", None, t0)), Some(2));
        t.record_failure_at("a", None, t0);
        assert_eq!(wait(t.check_at("a", None, t0)), Some(4));
        for _ in 0..20 {
            t.record_failure_at("a", None, t0);
        }
        assert_eq!(
            wait(t.check_at("a", None, t0)),
            Some(60),
            "capped at max_delay"
        );
        // Never permanent: after the delay the account may try again.
        assert_eq!(
            wait(t.check_at("a", None, t0 + Duration::from_secs(61))),
            None
        );
        // Other accounts are unaffected.
        assert_eq!(wait(t.check_at("b", None, t0)), None);
    }

    #[test]
    fn failures_are_forgotten_after_the_window_and_on_success() {
        let t = LoginThrottle::new(cfg());
        let t0 = Instant::now();
        for _ in 0..4 {
            t.record_failure_at("a", None, t0);
        }
        assert!(wait(t.check_at("a", None, t0)).is_some());
        let later = t0 + Duration::from_secs(601);
        t.record_failure_at("a", None, later);
        assert_eq!(
            wait(t.check_at("a", None, later)),
            None,
            "window restarted the count"
        );
        for _ in 0..4 {
            t.record_failure_at("a", None, later);
        }
        t.record_success("a");
        assert_eq!(wait(t.check_at("a", None, later)), None);
    }

    #[test]
    fn ip_throttling_spans_accounts() {
        let t = LoginThrottle::new(cfg());
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for i in 0..6 {
            t.record_failure_at(&format!("user{i}"), Some(ip), t0);
        }
        assert_eq!(wait(t.check_at("fresh", Some(ip), t0)), Some(1));
        assert_eq!(wait(t.check_at("fresh", None, t0)), None);
        t.record_success("user0");
        assert_eq!(
            wait(t.check_at("fresh", Some(ip), t0)),
            Some(1),
            "success does not clear the IP"
        );
    }

    #[test]
    fn tables_are_pruned() {
        let t = LoginThrottle::new(LoginThrottleConfig {
            window_secs: 1,
            ..cfg()
        });
        let t0 = Instant::now();
        for i in 0..PRUNE_THRESHOLD {
            t.record_failure_at(&i.to_string(), None, t0);
        }
        t.record_failure_at("late", None, t0 + Duration::from_secs(5));
        let len = t.accounts.entries.lock().unwrap().len();
        assert_eq!(len, 1);
    }
}
