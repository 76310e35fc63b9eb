//! Typed configuration. Every section rejects unknown keys, and every key has a default, so an
//! empty configuration is a working single-node setup. Loading the layers (defaults → file → env
//! → flags) happens in the binary; docs/configuration.md documents each key.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub gateway: GatewayConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the HTTP server binds to.
    pub listen: SocketAddr,
    /// Public base URL (e.g. `https://ai.example.com`). Used to decide cookie security and the
    /// origin accepted on cookie-authenticated writes. Optional.
    pub public_url: Option<String>,
    /// Force the `Secure` attribute on session cookies even when the request arrived over plain
    /// HTTP (for deployments behind a TLS-terminating proxy that does not send
    /// `X-Forwarded-Proto`).
    pub secure_cookies: bool,
    /// Reverse proxies whose `X-Forwarded-For` / `X-Forwarded-Proto` headers are trusted.
    pub trusted_proxies: Vec<IpAddr>,
    /// Largest request body accepted on the management API, in bytes.
    pub max_body_bytes: usize,
    /// Seconds to let in-flight requests finish after SIGTERM / Ctrl-C.
    pub shutdown_grace_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            secure_cookies: false,
            trusted_proxies: Vec::new(),
            max_body_bytes: 1024 * 1024,
            shutdown_grace_secs: 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` (created if missing) or `postgres://user@host/db`.
    pub url: String,
    pub max_connections: u32,
    /// SQLite only: how long a writer waits for the lock before failing.
    pub busy_timeout_ms: u64,
    /// How long to wait for a connection from the pool.
    pub acquire_timeout_secs: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/aihub.db".to_owned(),
            max_connections: 10,
            busy_timeout_ms: 5_000,
            acquire_timeout_secs: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Whether `POST /api/v1/auth/register` accepts new accounts.
    pub allow_registration: bool,
    /// Absolute lifetime of a session.
    pub session_ttl_hours: u64,
    /// A session unused for this long ends.
    pub session_idle_minutes: u64,
    pub login_throttle: LoginThrottleConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            allow_registration: true,
            session_ttl_hours: 24 * 7,
            session_idle_minutes: 24 * 60,
            login_throttle: LoginThrottleConfig::default(),
        }
    }
}

/// Growing delays after failed sign-ins, per account and per client IP. Never a permanent lock:
/// the delay is capped and failures are forgotten after `window_secs` without one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginThrottleConfig {
    /// Failures on one account allowed before delays start.
    pub account_free_attempts: u32,
    /// Failures from one IP allowed before delays start.
    pub ip_free_attempts: u32,
    /// First delay; each further failure doubles it.
    pub base_delay_secs: u64,
    /// Upper bound of any delay.
    pub max_delay_secs: u64,
    /// Failures older than this (counted from the last failure) are forgotten.
    pub window_secs: u64,
}

impl Default for LoginThrottleConfig {
    fn default() -> Self {
        Self {
            account_free_attempts: 5,
            ip_free_attempts: 20,
            base_delay_secs: 1,
            max_delay_secs: 15 * 60,
            window_secs: 15 * 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// How long a resolved API key stays cached. Bounds how long a change made on another
    /// instance (revocation, expiry edit) takes to reach this one; changes made on this instance
    /// apply at once.
    pub key_cache_ttl_secs: u64,
    pub key_cache_capacity: u64,
    /// How often `last_used_at` of keys is written back (batched, off the hot path).
    pub last_used_flush_secs: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            key_cache_ttl_secs: 10,
            key_cache_capacity: 100_000,
            last_used_flush_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `info` or `info,aihub_gateway=debug`. `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_a_single_node_setup() {
        let c = Config::default();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database.url, "sqlite://data/aihub.db");
        assert!(c.auth.allow_registration);
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err = serde_json::from_str::<Config>(r#"{"server": {"listne": "0.0.0.0:1"}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("listne"), "{err}");
        let err = serde_json::from_str::<Config>(r#"{"severs": {}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("severs"), "{err}");
    }
}
