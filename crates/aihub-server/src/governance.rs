//! Wires the gateway's limit and budget enforcer to the services: policies and past spend come
//! from the governance service, policy changes made through this instance reach the enforcer
//! at once, and budget threshold crossings go to the alert worker.

use std::sync::Arc;
use std::time::Duration;

use aihub_core::config::Config;
use aihub_core::governance::{OrgPolicy, ScopeType};
use aihub_core::{Currency, OrgId};
use aihub_gateway::governor::{BudgetCrossing, Governor, PolicySource};
use aihub_service::events::Invalidation;
use aihub_service::{ServiceError, Services};
use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often idle in-process counters are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

struct Source(aihub_service::governance::Governance);

impl PolicySource for Source {
    fn org_policy(&self, org: OrgId) -> BoxFuture<'_, Result<OrgPolicy, ServiceError>> {
        self.0.org_policy(org).boxed()
    }

    fn spent_since(
        &self,
        org: OrgId,
        scope: ScopeType,
        scope_id: Uuid,
        since: DateTime<Utc>,
        currency: Currency,
    ) -> BoxFuture<'_, Result<i64, ServiceError>> {
        self.0
            .spent_since(org, scope, scope_id, since, currency)
            .boxed()
    }

    fn tokens_since(
        &self,
        org: OrgId,
        since: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<i64, ServiceError>> {
        self.0.tokens_since(org, since).boxed()
    }
}

/// The enforcer for `config`, subscribed to policy changes and feeding alerts.
pub fn build_governor(services: &Services, config: &Config) -> anyhow::Result<Governor> {
    let governor = Governor::new(
        Arc::new(Source(services.governance.clone())),
        &config.limits,
        &config.redis,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let g = governor.clone();
    services.events.subscribe(move |event| match event {
        Invalidation::Policy(_) | Invalidation::Org(_) => g.invalidate(),
        Invalidation::KeyHash(_) | Invalidation::User(_) => {}
    });
    let alerts = services.alerts.clone();
    governor.set_alert_hook(Arc::new(move |c: BudgetCrossing| {
        alerts.notify(aihub_service::alerts::Crossing {
            budget: (*c.budget).clone(),
            period_start: c.period_start,
            threshold_pct: c.threshold_pct,
            spent_micros: c.spent_micros,
        });
    }));
    Ok(governor)
}

/// Drops idle in-process counters periodically.
pub async fn sweep(governor: Governor, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => governor.sweep(),
        }
    }
}
