//! The catalog: which providers exist, which models route to them, and what tokens cost. It is
//! held as an immutable [`CatalogSnapshot`] behind an `ArcSwap`, so the gateway reads it per
//! request without a lock or a database round trip. Providers and models come from configuration
//! (read-only here) and from the admin API (stored); prices come from the shipped defaults and
//! from the admin API. Every admin change rebuilds the snapshot before the call returns, and is
//! recorded in the platform chain of the audit log (credentials never are: a provider record
//! names where its key is read from, not the key).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aihub_core::config::{ModelConfig, ProviderConfig, ProviderKind};
use aihub_core::money::{format_decimal_micros, parse_decimal_micros};
use aihub_core::secret::Secret;
use aihub_core::time::now;
use aihub_core::{Currency, Money};
use aihub_store::{ModelRecord, PriceRecord, ProviderRecord, Store, StoreError};
use arc_swap::ArcSwap;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::accounts::Actor;
use crate::admin::require_platform_admin;
use crate::audit::{Audit, Change};
use crate::error::{Result, ServiceError};

/// The shipped default prices (see the file for sources).
const DEFAULT_PRICES: &str = include_str!("../prices/defaults.toml");

/// Where an entry came from. Configuration entries cannot be changed through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Config,
    Admin,
}

impl Source {
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Admin => "admin",
        }
    }
}

/// A provider ready to be called: its credential resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderSpec {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: Option<String>,
    pub api_key: Option<Secret>,
    pub api_key_env: Option<String>,
    pub api_key_file: Option<String>,
    pub api_version: Option<String>,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub total_timeout: Duration,
    pub mock_latency: Duration,
    pub mock_chunk_interval: Duration,
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRoute {
    /// The name clients send.
    pub name: String,
    pub provider: String,
    /// The provider's own name (Azure: the deployment).
    pub upstream_model: String,
    pub source: Source,
}

/// A price per million tokens, in micro-units of `currency`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    pub id: Uuid,
    pub model: String,
    pub currency: Currency,
    pub input_micros: i64,
    pub cached_input_micros: Option<i64>,
    pub output_micros: i64,
    pub effective_from: DateTime<Utc>,
    pub source: String,
}

impl Price {
    /// Cost of one request: uncached prompt tokens at the input price, cached ones at the cached
    /// price (the input price when there is none), completion tokens at the output price. Each
    /// part is rounded half-to-even to a micro-unit.
    pub fn cost(&self, prompt_tokens: u64, cached_tokens: u64, completion_tokens: u64) -> Money {
        let cached = cached_tokens.min(prompt_tokens);
        let parts = [
            (prompt_tokens - cached, self.input_micros),
            (
                cached,
                self.cached_input_micros.unwrap_or(self.input_micros),
            ),
            (completion_tokens, self.output_micros),
        ];
        let mut micros: i64 = 0;
        for (tokens, rate) in parts {
            let part =
                Money::for_tokens(tokens, rate, self.currency).map_or(i64::MAX, |m| m.micros);
            micros = micros.saturating_add(part);
        }
        Money::new(micros, self.currency)
    }
}

/// One immutable view of the catalog.
#[derive(Debug, Default)]
pub struct CatalogSnapshot {
    /// Increases with every rebuild; lets caches of derived state (HTTP clients) notice change.
    pub version: u64,
    pub providers: HashMap<String, Arc<ProviderSpec>>,
    pub models: HashMap<String, ModelRoute>,
    /// Per model, sorted by `effective_from`.
    pub prices: HashMap<String, Vec<Price>>,
}

impl CatalogSnapshot {
    #[must_use]
    pub fn route(&self, model: &str) -> Option<&ModelRoute> {
        self.models.get(model)
    }

    /// The price of `model` in effect at `at`.
    #[must_use]
    pub fn price_at(&self, model: &str, at: DateTime<Utc>) -> Option<&Price> {
        self.prices
            .get(model)?
            .iter()
            .rev()
            .find(|p| p.effective_from <= at)
    }
}

/// Admin input for a provider created at run time. Credentials are never accepted as values:
/// they are read from an environment variable or a file under `gateway.secrets_dir`.
#[derive(Debug, Clone, Default)]
pub struct ProviderInput {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    pub api_key_file: Option<String>,
    pub api_version: Option<String>,
    pub connect_timeout_ms: Option<u64>,
    pub first_byte_timeout_ms: Option<u64>,
    pub total_timeout_ms: Option<u64>,
    pub mock_latency_ms: Option<u64>,
    pub mock_chunk_interval_ms: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct ModelInput {
    pub name: String,
    pub provider: String,
    pub upstream_model: Option<String>,
}

/// Admin input for a new price: decimal strings per million tokens.
#[derive(Debug, Clone, Default)]
pub struct PriceInput {
    pub model: String,
    pub currency: String,
    pub input: String,
    pub cached_input: Option<String>,
    pub output: String,
    /// Defaults to now.
    pub effective_from: Option<DateTime<Utc>>,
}

#[derive(Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    config_providers: Vec<ProviderConfig>,
    config_models: Vec<ModelConfig>,
    secrets_dir: PathBuf,
    snapshot: ArcSwap<CatalogSnapshot>,
    /// Serializes rebuilds so versions increase with the data they reflect.
    rebuild: tokio::sync::Mutex<u64>,
    audit: Audit,
}

impl Catalog {
    /// Seeds the shipped default prices (idempotently) and builds the first snapshot. Fails if a
    /// configured provider is invalid or its credential cannot be read.
    pub async fn load(
        store: Store,
        providers: Vec<ProviderConfig>,
        models: Vec<ModelConfig>,
        secrets_dir: PathBuf,
        audit: Audit,
    ) -> Result<Self> {
        let defaults =
            default_prices().map_err(|e| ServiceError::internal(std::io::Error::other(e)))?;
        let seeded = store.seed_prices(&defaults).await?;
        if seeded > 0 {
            tracing::info!(prices = seeded, "default prices seeded");
        }
        let catalog = Self {
            inner: Arc::new(Inner {
                store,
                config_providers: providers,
                config_models: models,
                secrets_dir,
                snapshot: ArcSwap::from_pointee(CatalogSnapshot::default()),
                rebuild: tokio::sync::Mutex::new(0),
                audit,
            }),
        };
        catalog.reload().await?;
        Ok(catalog)
    }

    /// The current snapshot: a lock-free load.
    #[must_use]
    pub fn snapshot(&self) -> Arc<CatalogSnapshot> {
        self.inner.snapshot.load_full()
    }

    /// Rebuilds the snapshot from configuration and the database.
    pub async fn reload(&self) -> Result<()> {
        let mut version = self.inner.rebuild.lock().await;
        let mut providers = HashMap::new();
        for p in &self.inner.config_providers {
            let spec = spec_from_config(p)?;
            if providers
                .insert(spec.name.clone(), Arc::new(spec))
                .is_some()
            {
                return Err(ServiceError::invalid(
                    "invalid_config",
                    format!("provider {:?} is declared twice", p.name),
                ));
            }
        }
        for r in self.inner.store.providers().await? {
            if providers.contains_key(&r.name) {
                continue;
            }
            match spec_from_record(&r, &self.inner.secrets_dir) {
                Ok(spec) => {
                    providers.insert(spec.name.clone(), Arc::new(spec));
                }
                // A credential that disappeared must not take the whole gateway down.
                Err(e) => tracing::error!(provider = %r.name, error = %e, "provider skipped"),
            }
        }
        let mut models = HashMap::new();
        for m in &self.inner.config_models {
            if !providers.contains_key(&m.provider) {
                return Err(ServiceError::invalid(
                    "invalid_config",
                    format!("model {:?} names unknown provider {:?}", m.name, m.provider),
                ));
            }
            let route = ModelRoute {
                name: m.name.clone(),
                provider: m.provider.clone(),
                upstream_model: m.upstream_model.clone().unwrap_or_else(|| m.name.clone()),
                source: Source::Config,
            };
            if models.insert(m.name.clone(), route).is_some() {
                return Err(ServiceError::invalid(
                    "invalid_config",
                    format!("model {:?} is declared twice", m.name),
                ));
            }
        }
        for m in self.inner.store.models().await? {
            if models.contains_key(&m.name) {
                continue;
            }
            models.insert(
                m.name.clone(),
                ModelRoute {
                    upstream_model: m.upstream_model.clone().unwrap_or_else(|| m.name.clone()),
                    name: m.name,
                    provider: m.provider,
                    source: Source::Admin,
                },
            );
        }
        let mut prices: HashMap<String, Vec<Price>> = HashMap::new();
        for p in self.inner.store.prices().await? {
            prices.entry(p.model.clone()).or_default().push(Price {
                id: p.id,
                model: p.model,
                currency: p.currency,
                input_micros: p.input_micros,
                cached_input_micros: p.cached_input_micros,
                output_micros: p.output_micros,
                effective_from: p.effective_from,
                source: p.source,
            });
        }
        for list in prices.values_mut() {
            list.sort_by_key(|p| p.effective_from);
        }
        *version += 1;
        self.inner.snapshot.store(Arc::new(CatalogSnapshot {
            version: *version,
            providers,
            models,
            prices,
        }));
        Ok(())
    }

    pub fn list_providers(&self, actor: &Actor) -> Result<Vec<Arc<ProviderSpec>>> {
        require_platform_admin(actor)?;
        let snap = self.snapshot();
        let mut list: Vec<_> = snap.providers.values().cloned().collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(list)
    }

    /// Creates (`existing = false`) or replaces (`true`) an admin-managed provider.
    pub async fn put_provider(
        &self,
        actor: &Actor,
        input: ProviderInput,
        existing: bool,
    ) -> Result<Arc<ProviderSpec>> {
        require_platform_admin(actor)?;
        validate_name(&input.name)?;
        self.refuse_config_provider(&input.name)?;
        let stored = self.inner.store.providers().await?;
        let current = stored.iter().find(|p| p.name == input.name);
        match (existing, current) {
            (true, None) => return Err(ServiceError::NotFound),
            (false, Some(_)) => {
                return Err(ServiceError::Conflict {
                    code: "provider_exists",
                    message: format!("provider {:?} already exists", input.name),
                });
            }
            _ => {}
        }
        let t = now();
        let defaults = ProviderConfig::default();
        let record = ProviderRecord {
            id: current.map_or_else(Uuid::now_v7, |c| c.id),
            name: input.name.clone(),
            kind: input.kind,
            base_url: input.base_url,
            api_key_env: input.api_key_env,
            api_key_file: input.api_key_file,
            api_version: input.api_version,
            connect_timeout_ms: ms(input.connect_timeout_ms, defaults.connect_timeout_ms),
            first_byte_timeout_ms: ms(input.first_byte_timeout_ms, defaults.first_byte_timeout_ms),
            total_timeout_ms: ms(input.total_timeout_ms, defaults.total_timeout_ms),
            mock_latency_ms: ms(input.mock_latency_ms, 0),
            mock_chunk_interval_ms: ms(input.mock_chunk_interval_ms, 0),
            created_at: current.map_or(t, |c| c.created_at),
            updated_at: t,
        };
        // Validates the URL and that the credential can be read, before anything is stored.
        spec_from_record(&record, &self.inner.secrets_dir)?;
        self.inner
            .store
            .upsert_provider(&record)
            .await
            .map_err(conflict(
                "provider_exists",
                "a provider with this name already exists",
            ))?;
        self.reload().await?;
        tracing::info!(actor = %actor.user_id, provider = %record.name, "provider saved");
        let action = if existing {
            "provider.update"
        } else {
            "provider.create"
        };
        let mut change = Change::new(None, action, "provider", &record.name);
        if let Some(c) = current {
            change = change.before(provider_view(c));
        }
        self.inner
            .audit
            .record(actor, change.after(provider_view(&record)))
            .await?;
        self.snapshot()
            .providers
            .get(&record.name)
            .cloned()
            .ok_or(ServiceError::NotFound)
    }

    pub async fn delete_provider(&self, actor: &Actor, name: &str) -> Result<()> {
        require_platform_admin(actor)?;
        self.refuse_config_provider(name)?;
        let snap = self.snapshot();
        if let Some(m) = snap.models.values().find(|m| m.provider == name) {
            return Err(ServiceError::Conflict {
                code: "provider_in_use",
                message: format!("model {:?} still routes to this provider", m.name),
            });
        }
        let before = self
            .inner
            .store
            .providers()
            .await?
            .into_iter()
            .find(|p| p.name == name);
        if !self.inner.store.delete_provider(name).await? {
            return Err(ServiceError::NotFound);
        }
        self.reload().await?;
        tracing::info!(actor = %actor.user_id, provider = %name, "provider deleted");
        let mut change = Change::new(None, "provider.delete", "provider", name);
        if let Some(b) = &before {
            change = change.before(provider_view(b));
        }
        self.inner.audit.record(actor, change).await?;
        Ok(())
    }

    pub fn list_models(&self, actor: &Actor) -> Result<Vec<ModelRoute>> {
        require_platform_admin(actor)?;
        let mut list: Vec<_> = self.snapshot().models.values().cloned().collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(list)
    }

    pub async fn put_model(
        &self,
        actor: &Actor,
        input: ModelInput,
        existing: bool,
    ) -> Result<ModelRoute> {
        require_platform_admin(actor)?;
        validate_model_name(&input.name)?;
        if let Some(u) = &input.upstream_model {
            validate_model_name(u)?;
        }
        if self
            .inner
            .config_models
            .iter()
            .any(|m| m.name == input.name)
        {
            return Err(managed_by_config());
        }
        if !self.snapshot().providers.contains_key(&input.provider) {
            return Err(ServiceError::invalid(
                "unknown_provider",
                format!("no provider named {:?}", input.provider),
            ));
        }
        let stored = self.inner.store.models().await?;
        let current = stored.iter().find(|m| m.name == input.name);
        match (existing, current) {
            (true, None) => return Err(ServiceError::NotFound),
            (false, Some(_)) => {
                return Err(ServiceError::Conflict {
                    code: "model_exists",
                    message: format!("model {:?} already exists", input.name),
                });
            }
            _ => {}
        }
        let t = now();
        let record = ModelRecord {
            id: current.map_or_else(Uuid::now_v7, |c| c.id),
            name: input.name.clone(),
            provider: input.provider,
            upstream_model: input.upstream_model,
            created_at: current.map_or(t, |c| c.created_at),
            updated_at: t,
        };
        self.inner
            .store
            .upsert_model(&record)
            .await
            .map_err(conflict(
                "model_exists",
                "a model with this name already exists",
            ))?;
        self.reload().await?;
        tracing::info!(actor = %actor.user_id, model = %record.name, "model saved");
        let action = if existing {
            "model.update"
        } else {
            "model.create"
        };
        let mut change = Change::new(None, action, "model", &record.name);
        if let Some(c) = current {
            change = change.before(model_view(c));
        }
        self.inner
            .audit
            .record(actor, change.after(model_view(&record)))
            .await?;
        self.snapshot()
            .models
            .get(&record.name)
            .cloned()
            .ok_or(ServiceError::NotFound)
    }

    pub async fn delete_model(&self, actor: &Actor, name: &str) -> Result<()> {
        require_platform_admin(actor)?;
        if self.inner.config_models.iter().any(|m| m.name == name) {
            return Err(managed_by_config());
        }
        let before = self
            .inner
            .store
            .models()
            .await?
            .into_iter()
            .find(|m| m.name == name);
        if !self.inner.store.delete_model(name).await? {
            return Err(ServiceError::NotFound);
        }
        self.reload().await?;
        tracing::info!(actor = %actor.user_id, model = %name, "model deleted");
        let mut change = Change::new(None, "model.delete", "model", name);
        if let Some(b) = &before {
            change = change.before(model_view(b));
        }
        self.inner.audit.record(actor, change).await?;
        Ok(())
    }

    /// Every price row (current and historical), by model then date.
    pub fn list_prices(&self, actor: &Actor) -> Result<Vec<Price>> {
        require_platform_admin(actor)?;
        let snap = self.snapshot();
        let mut list: Vec<Price> = snap.prices.values().flatten().cloned().collect();
        list.sort_by(|a, b| (&a.model, a.effective_from).cmp(&(&b.model, b.effective_from)));
        Ok(list)
    }

    /// Adds a price effective from `effective_from` (default: now). Past prices are never
    /// changed, so usage already served keeps its cost.
    pub async fn add_price(&self, actor: &Actor, input: PriceInput) -> Result<Price> {
        require_platform_admin(actor)?;
        validate_model_name(&input.model)?;
        let amount = |field: &'static str, s: &str| {
            parse_decimal_micros(s)
                .map_err(|e| ServiceError::invalid("invalid_price", format!("{field}: {e}")))
        };
        let t = now();
        let effective_from = input
            .effective_from
            .map_or(t, |e| aihub_core::time::from_millis(e.timestamp_millis()));
        if effective_from < t - chrono::Duration::minutes(1) {
            return Err(ServiceError::invalid(
                "invalid_price",
                "effective_from cannot be in the past: past usage keeps the price it was served at",
            ));
        }
        let record = PriceRecord {
            id: Uuid::now_v7(),
            model: input.model,
            currency: Currency::parse(&input.currency)
                .map_err(|e| ServiceError::invalid("invalid_price", e.to_string()))?,
            input_micros: amount("input", &input.input)?,
            cached_input_micros: input
                .cached_input
                .as_deref()
                .map(|c| amount("cached_input", c))
                .transpose()?,
            output_micros: amount("output", &input.output)?,
            effective_from,
            source: "admin".to_owned(),
            created_by: Some(actor.user_id),
            created_at: t,
        };
        self.inner
            .store
            .insert_price(&record)
            .await
            .map_err(conflict(
                "price_exists",
                "this model already has a price effective from that instant",
            ))?;
        self.reload().await?;
        tracing::info!(actor = %actor.user_id, model = %record.model, "price added");
        self.inner
            .audit
            .record(
                actor,
                Change::new(None, "price.create", "price", record.id).after(price_view(&record)),
            )
            .await?;
        Ok(Price {
            id: record.id,
            model: record.model,
            currency: record.currency,
            input_micros: record.input_micros,
            cached_input_micros: record.cached_input_micros,
            output_micros: record.output_micros,
            effective_from: record.effective_from,
            source: record.source,
        })
    }

    fn refuse_config_provider(&self, name: &str) -> Result<()> {
        if self.inner.config_providers.iter().any(|p| p.name == name) {
            Err(managed_by_config())
        } else {
            Ok(())
        }
    }
}

/// What the audit log keeps of a provider: where its key is read from, never the key.
fn provider_view(r: &ProviderRecord) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "kind": r.kind,
        "base_url": r.base_url,
        "api_key_env": r.api_key_env,
        "api_key_file": r.api_key_file,
        "api_version": r.api_version,
        "connect_timeout_ms": r.connect_timeout_ms,
        "first_byte_timeout_ms": r.first_byte_timeout_ms,
        "total_timeout_ms": r.total_timeout_ms,
        "mock_latency_ms": r.mock_latency_ms,
        "mock_chunk_interval_ms": r.mock_chunk_interval_ms,
    })
}

fn model_view(r: &ModelRecord) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "provider": r.provider,
        "upstream_model": r.upstream_model,
    })
}

fn price_view(r: &PriceRecord) -> Value {
    json!({
        "id": r.id,
        "model": r.model,
        "currency": r.currency,
        "input_micros": r.input_micros,
        "cached_input_micros": r.cached_input_micros,
        "output_micros": r.output_micros,
        "effective_from": r.effective_from,
    })
}

fn managed_by_config() -> ServiceError {
    ServiceError::Conflict {
        code: "managed_by_config",
        message: "this entry is declared in the configuration file; change it there".into(),
    }
}

fn conflict(code: &'static str, message: &'static str) -> impl Fn(StoreError) -> ServiceError {
    move |e| match e {
        StoreError::Conflict => ServiceError::Conflict {
            code,
            message: message.into(),
        },
        other => other.into(),
    }
}

fn ms(v: Option<u64>, default: u64) -> i64 {
    i64::try_from(v.unwrap_or(default)).unwrap_or(i64::MAX)
}

fn dur(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            "invalid_name",
            "provider names are 1 to 64 characters of a-z, 0-9, '-', '_' and '.'",
        ))
    }
}

fn validate_model_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.chars().count() <= 128
        && !name.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            "invalid_model",
            "model names are 1 to 128 characters without spaces",
        ))
    }
}

/// A base URL must be absolute http(s), without credentials, query or fragment.
fn validate_base_url(kind: ProviderKind, url: Option<&str>) -> Result<Option<String>> {
    let Some(url) = url else {
        return match kind {
            ProviderKind::Azure => Err(ServiceError::invalid(
                "invalid_base_url",
                "azure providers need base_url",
            )),
            _ => Ok(None),
        };
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| {
            ServiceError::invalid(
                "invalid_base_url",
                "base_url must start with http:// or https://",
            )
        })?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty()
        || host.contains('@')
        || url.contains(['?', '#'])
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ServiceError::invalid(
            "invalid_base_url",
            "base_url must be an absolute URL without credentials, query or fragment",
        ));
    }
    Ok(Some(url.trim_end_matches('/').to_owned()))
}

fn spec_from_config(p: &ProviderConfig) -> Result<ProviderSpec> {
    validate_name(&p.name).map_err(|_| {
        ServiceError::invalid(
            "invalid_config",
            format!("provider name {:?} is not valid", p.name),
        )
    })?;
    let base_url = validate_base_url(p.kind, p.base_url.as_deref())?;
    let api_key = match (&p.api_key, &p.api_key_env, &p.api_key_file) {
        (Some(k), _, _) => Some(k.clone()),
        (None, Some(env), _) => Some(read_env(env)?),
        (None, None, Some(file)) => Some(read_file(file)?),
        (None, None, None) => None,
    };
    Ok(ProviderSpec {
        name: p.name.clone(),
        kind: p.kind,
        base_url,
        api_key,
        api_key_env: p.api_key_env.clone(),
        api_key_file: p.api_key_file.as_ref().map(|f| f.display().to_string()),
        api_version: p.api_version.clone(),
        connect_timeout: Duration::from_millis(p.connect_timeout_ms),
        first_byte_timeout: Duration::from_millis(p.first_byte_timeout_ms),
        total_timeout: Duration::from_millis(p.total_timeout_ms),
        mock_latency: Duration::from_millis(p.mock_latency_ms),
        mock_chunk_interval: Duration::from_millis(p.mock_chunk_interval_ms),
        source: Source::Config,
    })
}

/// Admin-created providers may read credentials only from environment variables named
/// `AIHUB_PROVIDER_*` or `*_API_KEY` (never AI Hub's own `AIHUB__*` settings), and only from
/// files inside `secrets_dir`, so the admin API cannot be used to send other server secrets —
/// the database URL, say — to an arbitrary URL.
fn spec_from_record(r: &ProviderRecord, secrets_dir: &Path) -> Result<ProviderSpec> {
    let base_url = validate_base_url(r.kind, r.base_url.as_deref())?;
    let api_key = match (&r.api_key_env, &r.api_key_file) {
        (Some(_), Some(_)) => {
            return Err(ServiceError::invalid(
                "invalid_api_key_source",
                "give api_key_env or api_key_file, not both",
            ));
        }
        (Some(env), None) => {
            let allowed = (env.starts_with("AIHUB_PROVIDER_") || env.ends_with("_API_KEY"))
                && !env.starts_with("AIHUB__")
                && env
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if !allowed {
                return Err(ServiceError::invalid(
                    "invalid_api_key_source",
                    "api_key_env must be an upper-case variable named AIHUB_PROVIDER_* or *_API_KEY",
                ));
            }
            Some(read_env(env)?)
        }
        (None, Some(file)) => {
            let rel = Path::new(file);
            if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
                return Err(ServiceError::invalid(
                    "invalid_api_key_source",
                    "api_key_file must be a relative path inside gateway.secrets_dir",
                ));
            }
            Some(read_file(&secrets_dir.join(rel))?)
        }
        (None, None) => None,
    };
    Ok(ProviderSpec {
        name: r.name.clone(),
        kind: r.kind,
        base_url,
        api_key,
        api_key_env: r.api_key_env.clone(),
        api_key_file: r.api_key_file.clone(),
        api_version: r.api_version.clone(),
        connect_timeout: dur(r.connect_timeout_ms),
        first_byte_timeout: dur(r.first_byte_timeout_ms),
        total_timeout: dur(r.total_timeout_ms),
        mock_latency: dur(r.mock_latency_ms),
        mock_chunk_interval: dur(r.mock_chunk_interval_ms),
        source: Source::Admin,
    })
}

fn read_env(name: &str) -> Result<Secret> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .map(Secret::new)
        .ok_or_else(|| {
            ServiceError::invalid(
                "invalid_api_key_source",
                format!("environment variable {name} is not set"),
            )
        })
}

fn read_file(path: &Path) -> Result<Secret> {
    let content = std::fs::read_to_string(path).map_err(|_| {
        ServiceError::invalid(
            "invalid_api_key_source",
            format!("cannot read {}", path.display()),
        )
    })?;
    let key = content.trim_end_matches(['\n', '\r']).to_owned();
    if key.is_empty() {
        return Err(ServiceError::invalid(
            "invalid_api_key_source",
            format!("{} is empty", path.display()),
        ));
    }
    Ok(Secret::new(key))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    price: Vec<PriceEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceEntry {
    model: String,
    #[expect(
        dead_code,
        reason = "documents the vendor in the file; routing decides the provider"
    )]
    provider: String,
    currency: String,
    input: String,
    cached_input: Option<String>,
    output: String,
    effective_from: NaiveDate,
    #[expect(dead_code, reason = "the citation lives in the file")]
    source: String,
}

/// The shipped default prices as rows (stable ids are not needed: rows are unique by model and
/// effective date).
pub fn default_prices() -> std::result::Result<Vec<PriceRecord>, String> {
    let file: PriceFile =
        toml::from_str(DEFAULT_PRICES).map_err(|e| format!("default prices: {e}"))?;
    let t = now();
    file.price
        .into_iter()
        .map(|p| {
            let amount = |s: &str| parse_decimal_micros(s).map_err(|e| format!("{}: {e}", p.model));
            Ok(PriceRecord {
                id: Uuid::now_v7(),
                currency: Currency::parse(&p.currency).map_err(|e| format!("{}: {e}", p.model))?,
                input_micros: amount(&p.input)?,
                cached_input_micros: p.cached_input.as_deref().map(amount).transpose()?,
                output_micros: amount(&p.output)?,
                effective_from: p
                    .effective_from
                    .and_hms_opt(0, 0, 0)
                    .map(|d| d.and_utc())
                    .ok_or_else(|| format!("{}: bad date", p.model))?,
                source: "default".to_owned(),
                created_by: None,
                created_at: t,
                model: p.model,
            })
        })
        .collect()
}

/// A price as decimal text, for views.
#[must_use]
pub fn decimal(micros: i64) -> String {
    format_decimal_micros(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_prices_parse_and_are_unique() {
        let prices = default_prices().unwrap();
        assert!(prices.iter().any(|p| p.model == "mock-chat"));
        let mut seen = std::collections::HashSet::new();
        for p in &prices {
            assert!(
                seen.insert((p.model.clone(), p.effective_from)),
                "duplicate {}",
                p.model
            );
            assert!(p.input_micros >= 0 && p.output_micros >= 0);
        }
    }

    #[test]
    fn cost_uses_cached_and_output_prices() {
        let p = Price {
            id: Uuid::nil(),
            model: "m".into(),
            currency: Currency::USD,
            input_micros: 2_500_000,
            cached_input_micros: Some(1_250_000),
            output_micros: 10_000_000,
            effective_from: now(),
            source: "t".into(),
        };
        // 1000 prompt (200 cached) + 500 completion:
        // 800 × 2.5 + 200 × 1.25 + 500 × 10 = 2000 + 250 + 5000 micros.
        assert_eq!(p.cost(1_000, 200, 500).micros, 7_250);
        // Cached beyond the prompt is clamped; no cached price → input price.
        let no_cache = Price {
            cached_input_micros: None,
            ..p.clone()
        };
        assert_eq!(no_cache.cost(100, 500, 0).micros, 250);
        assert_eq!(p.cost(0, 0, 0).micros, 0);
        assert_eq!(
            p.cost(u64::MAX, 0, u64::MAX).micros,
            i64::MAX,
            "saturates, never wraps"
        );
    }

    #[test]
    fn price_lookup_respects_effective_dates() {
        let t = now();
        let mk = |from, input| Price {
            id: Uuid::nil(),
            model: "m".into(),
            currency: Currency::USD,
            input_micros: input,
            cached_input_micros: None,
            output_micros: 0,
            effective_from: from,
            source: "t".into(),
        };
        let mut snap = CatalogSnapshot::default();
        snap.prices.insert(
            "m".into(),
            vec![
                mk(t - chrono::Duration::days(10), 1),
                mk(t, 2),
                mk(t + chrono::Duration::days(1), 3),
            ],
        );
        assert_eq!(snap.price_at("m", t - chrono::Duration::days(11)), None);
        assert_eq!(
            snap.price_at("m", t - chrono::Duration::days(1))
                .unwrap()
                .input_micros,
            1
        );
        assert_eq!(snap.price_at("m", t).unwrap().input_micros, 2);
        assert_eq!(
            snap.price_at("m", t + chrono::Duration::days(2))
                .unwrap()
                .input_micros,
            3
        );
        assert!(snap.price_at("other", t).is_none());
    }

    #[test]
    fn base_urls_and_names() {
        assert_eq!(
            validate_base_url(ProviderKind::Openai, Some("https://api.openai.com/v1/")).unwrap(),
            Some("https://api.openai.com/v1".into())
        );
        assert!(validate_base_url(ProviderKind::Openai, Some("ftp://x")).is_err());
        assert!(validate_base_url(ProviderKind::Openai, Some("https://user:pw@x")).is_err());
        assert!(validate_base_url(ProviderKind::Openai, Some("https://x/v1?key=1")).is_err());
        assert!(validate_base_url(ProviderKind::Azure, None).is_err());
        assert_eq!(validate_base_url(ProviderKind::Mock, None).unwrap(), None);
        assert!(validate_name("deep-seek_1.x").is_ok());
        assert!(validate_name("Bad Name").is_err());
        assert!(validate_name("").is_err());
    }

    #[test]
    fn admin_credentials_are_confined() {
        let t = now();
        let rec = |env: Option<&str>, file: Option<&str>| ProviderRecord {
            id: Uuid::nil(),
            name: "p".into(),
            kind: ProviderKind::Openai,
            base_url: None,
            api_key_env: env.map(str::to_owned),
            api_key_file: file.map(str::to_owned),
            api_version: None,
            connect_timeout_ms: 1,
            first_byte_timeout_ms: 1,
            total_timeout_ms: 1,
            mock_latency_ms: 0,
            mock_chunk_interval_ms: 0,
            created_at: t,
            updated_at: t,
        };
        let dir = Path::new("/nonexistent");
        for (env, file) in [
            (Some("HOME"), None),
            (Some("AIHUB__DATABASE__URL"), None),
            (Some("AIHUB__X_API_KEY"), None),
            (Some("AIHUB_SECRET"), None),
            (Some("lower_API_KEY"), None),
            (None, Some("/etc/passwd")),
            (None, Some("../etc/passwd")),
            (Some("AIHUB_X"), Some("k")),
        ] {
            let err = spec_from_record(&rec(env, file), dir).unwrap_err();
            assert!(
                matches!(
                    err,
                    ServiceError::Invalid {
                        code: "invalid_api_key_source",
                        ..
                    }
                ),
                "{env:?} {file:?}"
            );
        }
        // Allowed names, but unset / missing: still a clear error, nothing read.
        assert!(spec_from_record(&rec(Some("AIHUB_PROVIDER_UNSET_FOR_TEST"), None), dir).is_err());
        assert!(spec_from_record(&rec(Some("UNSET_FOR_TEST_API_KEY"), None), dir).is_err());
        assert!(spec_from_record(&rec(None, Some("missing.key")), dir).is_err());
        assert!(
            spec_from_record(&rec(None, None), dir)
                .unwrap()
                .api_key
                .is_none()
        );
    }
}
