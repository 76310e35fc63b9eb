//! AI Hub domain services. Handlers, the dashboard, the admin CLI and the gateway all call these;
//! none of them talks to the store for a decision of its own. Services mint ids and timestamps,
//! validate input into domain types, check the permission [`policy`], and publish
//! [`events::Invalidation`]s so caches (the gateway's key cache) forget what changed.

pub mod accounts;
pub mod admin;
pub mod alerts;
pub mod audit;
pub mod catalog;
pub mod crypto;
pub mod error;
pub mod events;
pub mod governance;
pub mod invitations;
pub mod keys;
pub mod notify;
pub mod orgs;
pub mod page;
pub mod policy;
pub mod teams;
pub mod throttle;
pub mod usage;

use std::sync::Arc;

use aihub_core::config::Config;
use aihub_store::Store;

pub use error::ServiceError;

/// Every service, wired to one store and one configuration. Cheap to clone.
#[derive(Clone)]
pub struct Services {
    pub store: Store,
    pub accounts: accounts::Accounts,
    pub orgs: orgs::Orgs,
    pub teams: teams::Teams,
    /// E-mail invitations into organizations.
    pub invitations: invitations::Invitations,
    pub keys: keys::Keys,
    pub admin: admin::Admin,
    pub catalog: catalog::Catalog,
    pub usage: usage::Usage,
    pub governance: governance::Governance,
    /// Budget alerts; the gateway reports crossings, a background worker delivers them.
    pub alerts: alerts::Alerts,
    /// The audit log: every control-plane change and sign-in attempt.
    pub audit: audit::Audit,
    pub events: events::Events,
}

impl Services {
    /// Wires every service. Loads the catalog (seeding default prices), so it fails on an
    /// invalid provider configuration.
    pub async fn build(store: Store, config: &Config) -> Result<Self, ServiceError> {
        let events = events::Events::new();
        let audit = audit::Audit::new(store.clone());
        let hasher = Arc::new(crypto::PasswordHasher::new());
        let accounts = accounts::Accounts::new(
            store.clone(),
            config.auth.clone(),
            hasher,
            events.clone(),
            audit.clone(),
        );
        let catalog = catalog::Catalog::load(
            store.clone(),
            config.providers.clone(),
            config.models.clone(),
            config.gateway.secrets_dir.clone(),
            audit.clone(),
        )
        .await?;
        let alerts = alerts::Alerts::new(store.clone(), &config.smtp, &config.alerts)?;
        Ok(Self {
            alerts,
            orgs: orgs::Orgs::new(store.clone(), events.clone(), audit.clone()),
            teams: teams::Teams::new(store.clone(), events.clone(), audit.clone()),
            invitations: invitations::Invitations::new(
                store.clone(),
                audit.clone(),
                &config.smtp,
                &config.server,
                &config.auth,
            )?,
            keys: keys::Keys::new(store.clone(), events.clone(), audit.clone()),
            admin: admin::Admin::new(store.clone(), events.clone(), audit.clone()),
            usage: usage::Usage::new(store.clone()),
            governance: governance::Governance::new(store.clone(), events.clone(), audit.clone())
                .with_default_plan(config.limits.default_plan.clone().filter(|p| !p.is_empty())),
            accounts,
            catalog,
            events,
            audit,
            store,
        })
    }
}
