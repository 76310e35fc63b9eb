//! Rate limits, concurrency limits, budgets and plan quotas on the request path.
//!
//! Before the upstream call, [`Governor::admit`] checks every limit that applies to the
//! request (its key, its user in the org, its team, its org, its plan — each for all models
//! and for this model) and reserves the request's largest possible cost against every budget
//! and quota in its chain, in one atomic step: all pass and are taken, or nothing is. The
//! [`Admission`] it returns is settled when the usage record is written: token charges are
//! corrected to the real usage, reservations become the actual cost, the rest is released.
//! Dropping an admission without settling it (a failed request) releases everything.
//!
//! Counters live in this process ([`local`], exact on one node) or in Redis ([`shared`], one
//! script and one round trip per admission, exact across instances). With Redis, each instance
//! also leases small shares of the shared counters ([`lease`]) and admits most requests from
//! them without a round trip. Nothing here reads the database per request: an organization's
//! policy is cached, and a budget's spend is read once per period and then kept current by the
//! settlements.

mod checks;
pub mod gcra;
mod headers;
mod lease;
mod local;
mod shared;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use aihub_core::config::{FailMode, LimitsConfig, RedisConfig};
use aihub_core::governance::{BudgetRule, OrgPolicy, Period, ScopeType};
use aihub_core::{Currency, OrgId};
use aihub_service::ServiceError;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use http::StatusCode;
use moka::future::Cache;
use uuid::Uuid;

pub use checks::{CellKind, Demand, Origin};
pub use headers::{RateHeaders, Window, format_reset};

use checks::{Checks, LedgerCheck, LedgerKey, LedgerKind, Refusal};
use local::{Local, Outcome, Parts};
use shared::Settlement;

use crate::error::GatewayError;

/// Attempts at settling a request in Redis, the wait before the first retry, and the longest
/// wait between two (each wait doubles the one before).
const SETTLE_ATTEMPTS: u32 = 8;
const SETTLE_FIRST_RETRY: Duration = Duration::from_millis(100);
const SETTLE_MAX_RETRY: Duration = Duration::from_secs(30);

/// The longest time from a settlement's first attempt in Redis to its last, when each attempt
/// may take up to `timeout`: Redis must remember that a request was settled at least this long,
/// or a retry after a lost reply would count it twice.
fn settle_retry_window(timeout: Duration) -> Duration {
    let mut window = timeout;
    let mut delay = SETTLE_FIRST_RETRY;
    for _ in 1..SETTLE_ATTEMPTS {
        window += delay + timeout;
        delay = (delay * 2).min(SETTLE_MAX_RETRY);
    }
    window
}

/// Where the gateway reads policies and past spend from (the services, over the database).
pub trait PolicySource: Send + Sync + 'static {
    fn org_policy(&self, org: OrgId) -> BoxFuture<'_, Result<OrgPolicy, ServiceError>>;
    /// Spend of `scope` since `since`, in micro-units of `currency`.
    fn spent_since(
        &self,
        org: OrgId,
        scope: ScopeType,
        scope_id: Uuid,
        since: DateTime<Utc>,
        currency: Currency,
    ) -> BoxFuture<'_, Result<i64, ServiceError>>;
    /// Tokens (prompt + completion) the organization used since `since`.
    fn tokens_since(
        &self,
        org: OrgId,
        since: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<i64, ServiceError>>;
}

/// A settled request took a budget's spend across one of its alert thresholds.
#[derive(Debug, Clone)]
pub struct BudgetCrossing {
    pub budget: Arc<BudgetRule>,
    pub period_start: DateTime<Utc>,
    pub threshold_pct: u32,
    pub spent_micros: i64,
}

pub type AlertHook = Arc<dyn Fn(BudgetCrossing) + Send + Sync>;

/// A ledger's spend before and after one settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    pub index: usize,
    pub before: i64,
    pub after: i64,
}

/// A budget's figures for the current period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetStatus {
    pub spent_micros: i64,
    pub reserved_micros: i64,
    pub period_start: DateTime<Utc>,
    pub period_end: Option<DateTime<Utc>>,
}

/// A refused request: the error to answer with, and the rate-limit headers.
#[derive(Debug)]
pub struct Rejection {
    pub error: GatewayError,
    pub headers: RateHeaders,
}

/// Which store holds an admission's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Local,
    Shared,
    /// From this instance's leases of the shared counters.
    Leased,
    /// Not taken anywhere (Redis failed and the fail mode let the request through).
    Skipped,
}

#[derive(Clone)]
struct CachedPolicy {
    policy: Arc<OrgPolicy>,
    budgets: Arc<[Arc<BudgetRule>]>,
    generation: u64,
}

struct Inner {
    source: Arc<dyn PolicySource>,
    config: LimitsConfig,
    policies: Cache<OrgId, CachedPolicy>,
    /// Bumped by every invalidation; a cached policy read before the latest one is reloaded.
    generation: AtomicU64,
    local: Local,
    shared: Option<shared::Shared>,
    /// With Redis and `limits.leases`.
    leases: Option<Arc<lease::Leases>>,
    alerts: std::sync::RwLock<Option<AlertHook>>,
    /// (budget, period start) pairs whose refusal already raised the 100% alert here.
    exhausted: std::sync::Mutex<std::collections::HashSet<(Uuid, i64)>>,
}

/// The limit and budget enforcer. Cheap to clone.
#[derive(Clone)]
pub struct Governor {
    inner: Arc<Inner>,
}

fn now_us(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

impl Governor {
    /// A governor counting in this process, or in Redis when `redis.url` is set.
    pub fn new(
        source: Arc<dyn PolicySource>,
        config: &LimitsConfig,
        redis: &RedisConfig,
    ) -> Result<Self, String> {
        let shared = match &redis.url {
            Some(url) => Some(shared::Shared::new(url.expose(), redis)?),
            None => None,
        };
        let leases = (shared.is_some() && config.leases).then(Arc::default);
        let policies = Cache::builder()
            .max_capacity(100_000)
            .time_to_live(Duration::from_secs(config.policy_cache_ttl_secs.max(1)))
            .build();
        Ok(Self {
            inner: Arc::new(Inner {
                source,
                config: config.clone(),
                policies,
                generation: AtomicU64::new(0),
                local: Local::default(),
                shared,
                leases,
                alerts: std::sync::RwLock::new(None),
                exhausted: std::sync::Mutex::default(),
            }),
        })
    }

    /// Where budget threshold crossings go.
    pub fn set_alert_hook(&self, hook: AlertHook) {
        *self
            .inner
            .alerts
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(hook);
    }

    /// A policy changed: every cached policy read before now is read again on its next use
    /// (changes are rare, so one counter for all orgs is enough).
    pub fn invalidate(&self) {
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
    }

    async fn policy(&self, org: OrgId) -> Result<CachedPolicy, GatewayError> {
        let inner = &self.inner;
        let load = || async {
            let generation = inner.generation.load(Ordering::Acquire);
            let policy = inner.source.org_policy(org).await?;
            let budgets = policy.budgets.iter().cloned().map(Arc::new).collect();
            Ok::<_, ServiceError>(CachedPolicy {
                policy: Arc::new(policy),
                budgets,
                generation,
            })
        };
        let fail = |e: Arc<ServiceError>| {
            tracing::error!(error = %e, %org, "could not read the organization's limits");
            GatewayError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                "limits_unavailable",
                "Rate limits and budgets could not be checked. Please retry.",
            )
        };
        let cached = inner
            .policies
            .try_get_with(org, load())
            .await
            .map_err(fail)?;
        if cached.generation < inner.generation.load(Ordering::Acquire) {
            inner.policies.invalidate(&org).await;
            return inner.policies.try_get_with(org, load()).await.map_err(fail);
        }
        Ok(cached)
    }

    /// Checks and reserves everything `demand` is subject to.
    pub async fn admit(
        &self,
        request_id: Uuid,
        demand: &Demand<'_>,
    ) -> Result<Admission, Rejection> {
        let cached = self
            .policy(demand.scopes.org)
            .await
            .map_err(|error| Rejection {
                error,
                headers: RateHeaders::default(),
            })?;
        let checks = Arc::new(checks::derive(&cached.policy, &cached.budgets, demand));
        let done = |headers, limits_via, ledgers_via| Admission {
            inner: Some(Pending {
                governor: self.clone(),
                request_id,
                checks: checks.clone(),
                limits_via,
                ledgers_via,
            }),
            headers,
        };
        if checks.is_empty() {
            return Ok(done(RateHeaders::default(), Via::Skipped, Via::Skipped));
        }
        let now = now_us(demand.now);
        if let Some(leases) = &self.inner.leases {
            match leases.try_admit(&checks, Instant::now()) {
                lease::Leased::Admitted(h) => return Ok(done(h, Via::Leased, Via::Leased)),
                lease::Leased::Miss => self.start_leases(leases),
                lease::Leased::Never => {}
            }
        }
        if let Some(shared) = &self.inner.shared {
            match self.admit_shared(shared, request_id, &checks).await {
                Ok(Outcome::Admitted(h)) => return Ok(done(h, Via::Shared, Via::Shared)),
                Ok(Outcome::Refused(r, h)) => return Err(self.rejection(&checks, &r, h, demand)),
                Ok(Outcome::NeedBase(_)) => unreachable_need_base(),
                Err(e) => {
                    tracing::warn!(error = %e, "shared limits unavailable; applying the fail modes");
                    if e.maybe_ran() {
                        // Redis may have admitted it after all: free what that would hold (on
                        // the same connection, so after the admission), or it stays reserved
                        // until `reservation_ttl_secs`.
                        self.settle_shared(request_id, checks.clone(), Settlement::Release);
                    }
                    let limits_open = self.inner.config.on_redis_error_limits == FailMode::Open;
                    let budgets_open = self.inner.config.on_redis_error_budgets == FailMode::Open;
                    if !checks.ledgers.is_empty() && !budgets_open {
                        return Err(unavailable("budget_unavailable", "Budgets"));
                    }
                    if (!checks.rates.is_empty() || !checks.concurrency.is_empty()) && !limits_open
                    {
                        return Err(unavailable("limits_unavailable", "Rate limits"));
                    }
                    // Limits fall back to this instance's own counters; budgets (open) go
                    // unchecked until Redis is back.
                    let parts = Parts {
                        limits: true,
                        ledgers: false,
                    };
                    return match self.inner.local.admit(&checks, parts, now) {
                        Outcome::Admitted(h) => Ok(done(h, Via::Local, Via::Skipped)),
                        Outcome::Refused(r, h) => Err(self.rejection(&checks, &r, h, demand)),
                        Outcome::NeedBase(_) => unreachable_need_base(),
                    };
                }
            }
        }
        let parts = Parts {
            limits: true,
            ledgers: true,
        };
        loop {
            match self.inner.local.admit(&checks, parts, now) {
                Outcome::Admitted(h) => return Ok(done(h, Via::Local, Via::Local)),
                Outcome::Refused(r, h) => return Err(self.rejection(&checks, &r, h, demand)),
                Outcome::NeedBase(missing) => {
                    for l in missing.iter().filter_map(|&i| checks.ledgers.get(i)) {
                        let spent = self.base(checks.org, l).await.map_err(|e| {
                            tracing::error!(error = %e, "could not read past spend");
                            unavailable("budget_unavailable", "Budgets")
                        })?;
                        self.inner.local.seed(l.key, spent, expiry_ms(l));
                    }
                }
            }
        }
    }

    async fn admit_shared(
        &self,
        shared: &shared::Shared,
        request_id: Uuid,
        checks: &Checks,
    ) -> Result<Outcome, shared::SharedError> {
        let ttl = self.inner.config.reservation_ttl_secs;
        let mut bases: Vec<Option<i64>> = vec![None; checks.ledgers.len()];
        for _ in 0..3 {
            match shared.admit(request_id, checks, &bases, ttl).await? {
                Outcome::NeedBase(missing) => {
                    for i in missing {
                        let (Some(l), Some(slot)) = (checks.ledgers.get(i), bases.get_mut(i))
                        else {
                            return Err(shared::SharedError::Redis("bad ledger index".into()));
                        };
                        let spent = self
                            .base(checks.org, l)
                            .await
                            .map_err(|e| shared::SharedError::Base(e.to_string()))?;
                        *slot = Some(spent);
                    }
                }
                other => return Ok(other),
            }
        }
        Err(shared::SharedError::Base(
            "spend could not be loaded".into(),
        ))
    }

    /// A ledger's spend from the database (the system of record).
    async fn base(&self, org: OrgId, l: &LedgerCheck) -> Result<i64, ServiceError> {
        let src = &self.inner.source;
        match (&l.budget, l.currency) {
            (Some(b), _) => {
                src.spent_since(org, b.scope, b.scope_id, l.period_start, b.currency)
                    .await
            }
            // The plan's spend quota: the whole org's spend in the plan's currency.
            (None, Some(currency)) => {
                src.spent_since(org, ScopeType::Org, org.as_uuid(), l.period_start, currency)
                    .await
            }
            (None, None) => src.tokens_since(org, l.period_start).await,
        }
    }

    fn rejection(
        &self,
        checks: &Checks,
        r: &Refusal,
        headers: RateHeaders,
        demand: &Demand<'_>,
    ) -> Rejection {
        if let Refusal::Ledger { index, spent } = r
            && let Some(l) = checks.ledgers.get(*index)
        {
            self.exhausted(l, *spent);
        }
        Rejection {
            error: refusal_error(checks, r, demand.now),
            headers,
        }
    }

    fn settle(&self, p: &Pending, tokens: u64, cost: i64) {
        if p.limits_via == Via::Leased {
            if let Some(leases) = &self.inner.leases {
                leases.settle(&p.checks, tokens, cost);
            }
            return;
        }
        let now = now_us(aihub_core::time::now());
        let local = Parts {
            limits: p.limits_via == Via::Local,
            ledgers: p.ledgers_via == Via::Local,
        };
        if local.limits || local.ledgers {
            let settled = self.inner.local.settle(&p.checks, local, tokens, cost, now);
            self.crossings(&p.checks, &settled);
        }
        if p.limits_via == Via::Shared || p.ledgers_via == Via::Shared {
            self.settle_shared(
                p.request_id,
                p.checks.clone(),
                Settlement::Used { tokens, cost },
            );
        }
    }

    /// Settles a request in Redis in the background, retrying for a while if Redis fails (the
    /// settlement counts once however often it is sent).
    fn settle_shared(&self, request_id: Uuid, checks: Arc<Checks>, settlement: Settlement) {
        let Some(shared) = self.inner.shared.clone() else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let mut delay = SETTLE_FIRST_RETRY;
            for attempt in 1..=SETTLE_ATTEMPTS {
                match shared.settle(request_id, &checks, settlement).await {
                    Ok(settled) => {
                        this.crossings(&checks, &settled);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, attempt, %request_id, "settling in Redis failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(SETTLE_MAX_RETRY);
                    }
                }
            }
            tracing::error!(%request_id, "settlement abandoned; the reservation expires on its own");
        });
    }

    /// A budget refused a request: with reservations never exceeding the amount, spend may stop
    /// just short of 100%, so the first refusal in a period is what fires the 100% threshold.
    fn exhausted(&self, l: &LedgerCheck, spent: i64) {
        let Some(budget) = &l.budget else { return };
        if !budget.thresholds.contains(&100) {
            return;
        }
        let key = (budget.id, l.key.period_start_ms);
        {
            let mut fired = self
                .inner
                .exhausted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if fired.len() > 100_000 {
                fired.clear();
            }
            if !fired.insert(key) {
                return;
            }
        }
        let hook = self
            .inner
            .alerts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(hook) = hook {
            hook(BudgetCrossing {
                budget: budget.clone(),
                period_start: l.period_start,
                threshold_pct: 100,
                spent_micros: spent,
            });
        }
    }

    fn crossings(&self, checks: &Checks, settled: &[Settled]) {
        let hook = self
            .inner
            .alerts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let Some(hook) = hook else { return };
        for s in settled {
            let Some(l) = checks.ledgers.get(s.index) else {
                continue;
            };
            let Some(budget) = &l.budget else { continue };
            for &pct in &budget.thresholds {
                let mark = threshold_amount(budget.amount_micros, pct);
                if s.before < mark && s.after >= mark {
                    hook(BudgetCrossing {
                        budget: budget.clone(),
                        period_start: l.period_start,
                        threshold_pct: pct,
                        spent_micros: s.after,
                    });
                }
            }
        }
    }

    /// A budget's spent and reserved amounts in its current period: live figures from the
    /// counters when they are loaded, else the database's.
    pub async fn budget_status(&self, b: &BudgetRule) -> Result<BudgetStatus, ServiceError> {
        let now = aihub_core::time::now();
        let start = b.period.start(now);
        let key = LedgerKey {
            id: b.id,
            kind: LedgerKind::Budget,
            period_start_ms: start.timestamp_millis(),
        };
        let status = |spent, reserved| BudgetStatus {
            spent_micros: spent,
            reserved_micros: reserved,
            period_start: start,
            period_end: b.period.end(now),
        };
        if let Some(shared) = &self.inner.shared {
            if let Ok(Some((spent, reserved))) = shared.ledger(b.org_id, &key).await {
                return Ok(status(spent, reserved));
            }
        } else if let Some(s) = self.inner.local.status(&key) {
            return Ok(status(s.spent, s.reserved));
        }
        let spent = self
            .inner
            .source
            .spent_since(b.org_id, b.scope, b.scope_id, start, b.currency)
            .await?;
        Ok(status(spent, 0))
    }

    /// Asks for a renewal of leases, starting the task that renews them on first use.
    fn start_leases(&self, leases: &Arc<lease::Leases>) {
        if !leases.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(renew_leases(Arc::downgrade(&self.inner), leases.clone()));
        }
        leases.kick.notify_one();
    }

    /// Renews the leases that are due (with `release`, gives every lease back), and waits for
    /// those renewals.
    async fn renew(&self, release: bool) {
        let (Some(shared), Some(leases)) = (&self.inner.shared, &self.inner.leases) else {
            return;
        };
        let due = leases.take_due(
            shared,
            Instant::now(),
            release,
            self.inner.config.reservation_ttl_secs,
        );
        let runs = due
            .into_iter()
            .map(|(org, r)| self.renew_org(shared, leases, org, r));
        futures_util::future::join_all(runs).await;
    }

    async fn renew_org(
        &self,
        shared: &shared::Shared,
        leases: &lease::Leases,
        org: OrgId,
        mut r: shared::Renewal,
    ) {
        for _ in 0..3 {
            match shared.renew(org, &r).await {
                Ok(shared::Renewed::NeedBase(missing)) => {
                    for i in missing {
                        let Some(x) = r.ledgers.get_mut(i) else { break };
                        let Some(check) = lease::ledger_check(leases, org, &x.key) else {
                            break;
                        };
                        match self.base(org, &check).await {
                            Ok(spent) => x.base = Some(spent),
                            Err(e) => {
                                tracing::warn!(error = %e, "could not read past spend for a lease");
                                leases.failed(org, r);
                                return;
                            }
                        }
                    }
                }
                Ok(granted) => {
                    let moved = leases.apply(org, &r, &granted, Instant::now());
                    for (check, settled) in moved {
                        let c = Checks {
                            org,
                            rates: Vec::new(),
                            concurrency: Vec::new(),
                            ledgers: vec![check],
                        };
                        self.crossings(&c, &[settled]);
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, %org, "renewing leases in Redis failed; retrying");
                    leases.failed(org, r);
                    return;
                }
            }
        }
        leases.failed(org, r);
    }

    /// Gives every lease back to Redis (carrying the spend settled against them), for a
    /// graceful shutdown; waits at most `within`.
    pub async fn release_leases(&self, within: Duration) {
        let Some(leases) = &self.inner.leases else {
            return;
        };
        let deadline = Instant::now() + within;
        while !leases.is_empty() && Instant::now() < deadline {
            self.renew(true).await;
            if !leases.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Drops idle in-process state; run periodically.
    pub fn sweep(&self) {
        self.inner.local.sweep(now_us(aihub_core::time::now()));
    }
}

/// Renews this instance's leases: every [`lease::RENEW_EVERY`], and when a request asks.
async fn renew_leases(inner: Weak<Inner>, leases: Arc<lease::Leases>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(lease::RENEW_EVERY) => {}
            () = leases.kick.notified() => {}
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        Governor { inner }.renew(false).await;
    }
}

fn unreachable_need_base() -> ! {
    // Only ledger checks can need a base, and those are loaded before returning.
    unreachable!("spend is loaded before an outcome is returned")
}

fn expiry_ms(l: &LedgerCheck) -> Option<i64> {
    l.period_end.map(|e| e.timestamp_millis() + 86_400_000)
}

/// `pct` percent of `amount`, rounded up (a threshold is reached at or beyond it).
fn threshold_amount(amount: i64, pct: u32) -> i64 {
    let v = i128::from(amount) * i128::from(pct);
    i64::try_from((v + 99) / 100).unwrap_or(i64::MAX)
}

fn unavailable(code: &'static str, what: &str) -> Rejection {
    Rejection {
        error: GatewayError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            code,
            format!(
                "{what} could not be checked right now, so the request was not sent. Please retry."
            ),
        )
        .with_retry_after(Some(1)),
        headers: RateHeaders::default(),
    }
}

fn secs_ceil(us: i64) -> u64 {
    u64::try_from((us.max(0) + 999_999) / 1_000_000)
        .unwrap_or(u64::MAX)
        .max(1)
}

fn refusal_error(checks: &Checks, r: &Refusal, now: DateTime<Utc>) -> GatewayError {
    let too_many = |kind, code, message: String| {
        GatewayError::new(StatusCode::TOO_MANY_REQUESTS, kind, code, message)
    };
    match r {
        Refusal::Rate {
            kind,
            per_minute,
            origin,
            per_model,
            retry_after_us,
        } => {
            let whose = origin.describe(*per_model);
            let (unit, code, ty) = match kind {
                CellKind::Tpm => ("tokens per minute (TPM)", "tpm_limit_exceeded", "tokens"),
                _ => ("requests per minute (RPM)", "rpm_limit_exceeded", "requests"),
            };
            match retry_after_us {
                Some(us) => too_many(
                    ty,
                    code,
                    format!(
                        "Rate limit reached for {unit} on {whose}: limit {per_minute}. Please try again in {}.",
                        format_reset(*us)
                    ),
                )
                .with_retry_after(Some(secs_ceil(*us))),
                None => too_many(
                    ty,
                    code,
                    format!(
                        "This request alone needs more than the {unit} limit of {whose} ({per_minute}). Lower `max_tokens` or the prompt size."
                    ),
                )
                .no_retry(),
            }
        }
        Refusal::Concurrency {
            limit,
            origin,
            per_model,
        } => too_many(
            "requests",
            "concurrency_limit_exceeded",
            format!(
                "Too many concurrent requests on {}: limit {limit}. Please retry when one has finished.",
                origin.describe(*per_model)
            ),
        )
        .with_retry_after(Some(1)),
        Refusal::Ledger { index, .. } => {
            let Some(l) = checks.ledgers.get(*index) else {
                return GatewayError::internal();
            };
            let retry = l
                .period_end
                .map(|e| secs_ceil(now_us(e) - now_us(now)));
            let (code, message) = match (&l.budget, l.key.kind) {
                (Some(b), _) => {
                    let name = b.name.as_deref().map(|n| format!(" \"{n}\"")).unwrap_or_default();
                    let period = match b.period {
                        Period::Total => "in total".to_owned(),
                        p => format!("for this {} period", p.as_str()),
                    };
                    (
                        "budget_exceeded",
                        format!(
                            "The {} budget{name} of {} {} {period} does not cover this request.",
                            b.scope.as_str(),
                            aihub_core::money::format_decimal_micros(b.amount_micros),
                            b.currency.as_str(),
                        ),
                    )
                }
                (None, LedgerKind::QuotaTokens) => (
                    "quota_exceeded",
                    "Your organization's monthly token quota does not cover this request."
                        .to_owned(),
                ),
                (None, _) => (
                    "quota_exceeded",
                    "Your organization's monthly spend quota does not cover this request."
                        .to_owned(),
                ),
            };
            let mut e = too_many("insufficient_quota", code, message).no_retry();
            e.retry_after = retry;
            e
        }
    }
}

/// An admitted request's hold on limits and budgets. Settle it with the real usage; dropping
/// it unsettled releases everything (the request failed before costing anything).
pub struct Admission {
    inner: Option<Pending>,
    headers: RateHeaders,
}

struct Pending {
    governor: Governor,
    request_id: Uuid,
    checks: Arc<Checks>,
    limits_via: Via,
    ledgers_via: Via,
}

impl Admission {
    /// The `x-ratelimit-*` figures after this request.
    #[must_use]
    pub fn headers(&self) -> RateHeaders {
        self.headers
    }

    /// Ends the request with what it actually used.
    pub fn settle(mut self, tokens: u64, cost_micros: i64) {
        if let Some(p) = self.inner.take() {
            p.governor.settle(&p, tokens, cost_micros.max(0));
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(p) = self.inner.take() {
            p.governor.settle(&p, 0, 0);
        }
    }
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod lease_tests;
#[cfg(test)]
mod tests;
