//! Typed configuration. Every section rejects unknown keys, and every key has a default, so an
//! empty configuration is a working single-node setup. Loading the layers (defaults → file → env
//! → flags) happens in the binary; docs/configuration.md documents each key.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub gateway: GatewayConfig,
    pub usage: UsageConfig,
    pub log: LogConfig,
    pub limits: LimitsConfig,
    pub redis: RedisConfig,
    pub smtp: SmtpConfig,
    pub alerts: AlertsConfig,
    /// Upstream providers declared in configuration (more can be added at run time through the
    /// admin API). The default is the built-in offline `mock` provider.
    pub providers: Vec<ProviderConfig>,
    /// Models clients may ask for, each routed to a provider. The default serves the `mock`
    /// provider as `mock-chat` and `mock-embedding`.
    pub models: Vec<ModelConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            auth: AuthConfig::default(),
            gateway: GatewayConfig::default(),
            usage: UsageConfig::default(),
            log: LogConfig::default(),
            limits: LimitsConfig::default(),
            redis: RedisConfig::default(),
            smtp: SmtpConfig::default(),
            alerts: AlertsConfig::default(),
            providers: vec![ProviderConfig {
                name: "mock".to_owned(),
                kind: ProviderKind::Mock,
                ..ProviderConfig::default()
            }],
            models: vec![
                ModelConfig {
                    name: "mock-chat".to_owned(),
                    provider: "mock".to_owned(),
                    upstream_model: None,
                },
                ModelConfig {
                    name: "mock-embedding".to_owned(),
                    provider: "mock".to_owned(),
                    upstream_model: None,
                },
            ],
        }
    }
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
    /// How long an invitation into an organization can be accepted after it was (re)sent.
    pub invitation_ttl_hours: u64,
    pub login_throttle: LoginThrottleConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            allow_registration: true,
            session_ttl_hours: 24 * 7,
            session_idle_minutes: 24 * 60,
            invitation_ttl_hours: 72,
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
    /// Largest `/v1` request body accepted, in bytes (413 above it).
    pub max_request_bytes: usize,
    /// Largest non-streaming upstream response accepted, in bytes (502 above it).
    pub max_response_bytes: usize,
    /// When a client disconnects mid-stream, keep reading the upstream to its end so that the
    /// usage it reports is billed exactly. At most this many streams drain at once; beyond
    /// that, the upstream is closed and the tokens produced so far are billed (estimated).
    pub max_draining_streams: usize,
    /// Directory from which providers created through the admin API may read credential files
    /// (`api_key_file` is relative to it).
    pub secrets_dir: PathBuf,
    /// How often the catalog (providers, models, prices) is re-read from the database, so that
    /// changes made through another instance arrive. Changes made through this instance apply
    /// at once.
    pub catalog_refresh_secs: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            key_cache_ttl_secs: 10,
            key_cache_capacity: 100_000,
            last_used_flush_secs: 30,
            max_request_bytes: 10 * 1024 * 1024,
            max_response_bytes: 32 * 1024 * 1024,
            max_draining_streams: 256,
            secrets_dir: PathBuf::from("secrets"),
            catalog_refresh_secs: 30,
        }
    }
}

/// The usage journal: every metered request is appended here before its response completes,
/// then loaded into the database in batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsageConfig {
    /// Directory of the journal's segment files (local disk; one per instance).
    pub journal_dir: PathBuf,
    /// How often appended records are forced to stable storage (`fdatasync`). A process crash
    /// loses nothing written; only an OS crash or power loss can lose at most this window.
    pub fsync_interval_ms: u64,
    /// A segment file is closed and a new one started past this size.
    pub segment_max_bytes: u64,
    /// Most records loaded into the database per transaction.
    pub load_batch: usize,
    /// How often the loader looks for new records.
    pub load_interval_ms: u64,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self {
            journal_dir: PathBuf::from("data/journal"),
            fsync_interval_ms: 200,
            segment_max_bytes: 64 * 1024 * 1024,
            load_batch: 1000,
            load_interval_ms: 200,
        }
    }
}

/// The wire protocol of an upstream provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Any OpenAI-compatible API: OpenAI, DeepSeek, Qwen (DashScope compatible mode), Moonshot,
    /// Zhipu, vLLM, Ollama, …
    #[default]
    Openai,
    /// Azure OpenAI: deployment URLs, `api-version`, `api-key` header.
    Azure,
    /// Anthropic's Messages API, translated to and from chat completions.
    Anthropic,
    /// Built in, no network: deterministic answers with realistic usage.
    Mock,
}

impl std::str::FromStr for ProviderKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            ProviderKind::Openai,
            ProviderKind::Azure,
            ProviderKind::Anthropic,
            ProviderKind::Mock,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| format!("unknown provider kind {s:?}"))
    }
}

impl ProviderKind {
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Azure => "azure",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Mock => "mock",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    /// Unique name, referenced by models.
    pub name: String,
    pub kind: ProviderKind,
    /// Base URL, e.g. `https://api.openai.com/v1`, `https://api.deepseek.com/v1`,
    /// `https://{resource}.openai.azure.com`, `https://api.anthropic.com`. Not used by `mock`.
    pub base_url: Option<String>,
    /// The provider credential. Prefer `api_key_env` or `api_key_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// Name of an environment variable holding the credential.
    pub api_key_env: Option<String>,
    /// File holding the credential (trailing newline ignored).
    pub api_key_file: Option<PathBuf>,
    /// Azure `api-version` query parameter, or the `anthropic-version` header.
    pub api_version: Option<String>,
    pub connect_timeout_ms: u64,
    /// Until the response headers arrive; also the longest silence allowed between two chunks
    /// of a stream.
    pub first_byte_timeout_ms: u64,
    /// The whole exchange: headers, body, every chunk of a stream.
    pub total_timeout_ms: u64,
    /// `mock` only: delay before answering.
    pub mock_latency_ms: u64,
    /// `mock` only: delay between streamed chunks.
    pub mock_chunk_interval_ms: u64,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            kind: ProviderKind::default(),
            base_url: None,
            api_key: None,
            api_key_env: None,
            api_key_file: None,
            api_version: None,
            connect_timeout_ms: 5_000,
            first_byte_timeout_ms: 120_000,
            total_timeout_ms: 600_000,
            mock_latency_ms: 0,
            mock_chunk_interval_ms: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The name clients send as `model`.
    pub name: String,
    /// The provider serving it.
    pub provider: String,
    /// The provider's own name for it (Azure: the deployment); defaults to `name`.
    #[serde(default)]
    pub upstream_model: Option<String>,
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

/// What the gateway does with a request when the shared limit store (Redis) cannot answer in
/// time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Let the request through (rate limits fall back to this instance's own counters).
    Open,
    /// Refuse it with 503 `limits_unavailable` / `budget_unavailable`.
    Closed,
}

/// Rate limits, budgets and quotas on the request path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// The plan of organizations that were not given one (by name, e.g. `free`). Without it,
    /// such organizations have no plan limits or quota, only the limits and budgets set on them.
    pub default_plan: Option<String>,
    /// Completion tokens assumed for a request that sets no `max_tokens` (or
    /// `max_completion_tokens`), when reserving budget and tokens-per-minute before the call.
    pub default_max_output_tokens: u64,
    /// How long an organization's limits, budgets and plan stay cached. Changes made through
    /// this instance apply at once; this bounds how long other instances take to see them.
    pub policy_cache_ttl_secs: u64,
    /// A reservation not settled within this time (its instance died) is released.
    pub reservation_ttl_secs: u64,
    /// With Redis: each instance leases small shares of the shared rate limits, concurrency
    /// limits and budgets and admits most requests from them, without a Redis round trip per
    /// request (shares never add up to more than a limit; near a limit, requests go to Redis
    /// one by one again). `false`: every request is checked in Redis.
    pub leases: bool,
    /// With Redis unreachable or too slow: rate limits (default `open`: this instance's own
    /// counters apply).
    pub on_redis_error_limits: FailMode,
    /// With Redis unreachable or too slow: budgets and quotas (default `closed`: money is never
    /// spent unchecked).
    pub on_redis_error_budgets: FailMode,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            default_plan: Some("free".to_owned()),
            default_max_output_tokens: 4096,
            policy_cache_ttl_secs: 10,
            reservation_ttl_secs: 900,
            leases: true,
            on_redis_error_limits: FailMode::Open,
            on_redis_error_budgets: FailMode::Closed,
        }
    }
}

/// Shared limit and budget counters for running several instances. Without `url`, each
/// instance counts on its own (exact on a single node).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db` (or `rediss://` for TLS). May carry a password.
    pub url: Option<Secret>,
    /// Longest wait for one Redis answer on the request path.
    pub timeout_ms: u64,
    /// After a failure, Redis is not tried again for this long (requests follow the fail mode
    /// without waiting).
    pub retry_after_failure_ms: u64,
    /// Prefix of every key AI Hub writes.
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            timeout_ms: 50,
            retry_after_failure_ms: 1000,
            key_prefix: "aihub:".to_owned(),
        }
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (required).
    #[default]
    Starttls,
    /// TLS from the first byte (usually port 465).
    Tls,
    /// No encryption: only for a relay on localhost or a test sink.
    None,
}

/// Outgoing e-mail (budget alerts, later invitations). Without `host`, no e-mail is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: Option<String>,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Sender, e.g. `AI Hub <alerts@example.com>`.
    pub from: String,
    pub timeout_secs: u64,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: None,
            port: 587,
            security: SmtpSecurity::Starttls,
            username: None,
            password: None,
            from: "AI Hub <aihub@localhost>".to_owned(),
            timeout_secs: 10,
        }
    }
}

/// Delivery of budget alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Attempts per webhook or e-mail before it is marked failed.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled after each failed attempt.
    pub retry_base_ms: u64,
    /// Timeout of one webhook POST.
    pub webhook_timeout_ms: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            retry_base_ms: 1000,
            webhook_timeout_ms: 5000,
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
