//! Rate limits, budgets and plans: validation into the domain rules of
//! [`aihub_core::governance`], the permission checks, and an [`Invalidation::Policy`] after every
//! change so the gateway enforces the new rules on the next request. Plans are platform-wide and
//! edited by platform admins only. [`Governance::org_policy`], [`Governance::spent_since`] and
//! [`Governance::tokens_since`] are the gateway's reads and check no permission. Every change is
//! recorded in the audit log: limits, budgets and plan assignments in the organization's chain,
//! plans in the platform chain.
//!
//! A caller who manages rules only on their own keys (`*.manage_own`, not Owner or Admin) cannot
//! give a key more than the tightest rule of the same kind on their own user scope: a key's
//! limits and budgets stay within what the organization gave its owner.

use aihub_core::governance::{
    BudgetPolicy, BudgetRule, DEFAULT_THRESHOLDS, LimitRule, OrgPolicy, Period, Plan, ScopeType,
};
use aihub_core::money::{format_decimal_micros, parse_decimal_micros};
use aihub_core::secret::Secret;
use aihub_core::time::now;
use aihub_core::{Currency, Email, KeyId, OrgId, UserId};
use aihub_store::{Store, StoreError};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::json;
use uuid::Uuid;

use crate::accounts::Actor;
use crate::admin::require_platform_admin;
use crate::audit::{Audit, Change};
use crate::crypto;
use crate::error::{Result, ServiceError};
use crate::events::{Events, Invalidation};
use crate::orgs::OrgScope;
use crate::policy::Action;

pub const MAX_MODEL_NAME_CHARS: usize = 128;
pub const MAX_BUDGET_NAME_CHARS: usize = 100;
pub const MAX_THRESHOLDS: usize = 10;
pub const MAX_THRESHOLD_PCT: u32 = 1000;
pub const MAX_WEBHOOK_URL_CHARS: usize = 2048;
pub const MAX_ALERT_EMAILS: usize = 20;
pub const MAX_PLAN_NAME_CHARS: usize = 64;
/// Webhook signing secrets start with this.
pub const WEBHOOK_SECRET_PREFIX: &str = "whsec_";
/// The default `limits.default_plan`: the plan of orgs given none.
pub const DEFAULT_PLAN: &str = "free";

#[derive(Clone)]
pub struct Governance {
    store: Store,
    events: Events,
    audit: Audit,
    /// `limits.default_plan`: the plan of orgs given none (`None`: no plan limits).
    default_plan: Option<String>,
}

/// A new rate limit, as received.
#[derive(Debug, Clone, Default)]
pub struct CreateLimit {
    /// `key`, `user`, `team` or `org`.
    pub scope_type: String,
    /// The key, user or team; for `org` absent or the org's own id.
    pub scope_id: Option<Uuid>,
    /// One model only; `None` for every model.
    pub model: Option<String>,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub concurrency: Option<i64>,
}

/// An edit of a limit: `None` leaves a field alone, `Some(None)` clears it. The scope is fixed.
#[derive(Debug, Clone, Default)]
pub struct UpdateLimit {
    pub model: Option<Option<String>>,
    pub rpm: Option<Option<i64>>,
    pub tpm: Option<Option<i64>>,
    pub concurrency: Option<Option<i64>>,
}

/// A new budget, as received. The amount is given once: as a decimal string in `amount` or in
/// micro-units in `amount_micros`.
#[derive(Debug, Clone, Default)]
pub struct CreateBudget {
    pub scope_type: String,
    pub scope_id: Option<Uuid>,
    pub name: Option<String>,
    pub amount: Option<String>,
    pub amount_micros: Option<i64>,
    /// Default `USD`.
    pub currency: Option<String>,
    /// Default `monthly`.
    pub period: Option<String>,
    /// Default `block`.
    pub policy: Option<String>,
    pub throttle_rpm: Option<i64>,
    /// Default [`DEFAULT_THRESHOLDS`].
    pub thresholds: Option<Vec<i64>>,
    pub webhook_url: Option<String>,
    pub alert_emails: Option<Vec<String>>,
}

/// An edit of a budget: `None` leaves a field alone, `Some(None)` clears it. The scope is fixed.
#[derive(Debug, Clone, Default)]
pub struct UpdateBudget {
    pub name: Option<Option<String>>,
    pub amount: Option<String>,
    pub amount_micros: Option<i64>,
    pub currency: Option<String>,
    pub period: Option<String>,
    pub policy: Option<String>,
    pub throttle_rpm: Option<Option<i64>>,
    pub thresholds: Option<Vec<i64>>,
    pub webhook_url: Option<Option<String>>,
    pub alert_emails: Option<Vec<String>>,
}

/// A budget, with its webhook secret when it was just minted (create, rotate, or an edit that
/// gave the budget its first webhook). The secret is never available again.
pub struct BudgetWithSecret {
    pub budget: BudgetRule,
    pub webhook_secret: Option<SecretString>,
}

/// A new plan, as received. The monthly spend quota is given as a decimal string or in
/// micro-units, not both.
#[derive(Debug, Clone, Default)]
pub struct CreatePlan {
    pub name: String,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub concurrency: Option<i64>,
    pub monthly_tokens: Option<i64>,
    pub monthly_spend: Option<String>,
    pub monthly_spend_micros: Option<i64>,
    pub currency: Option<String>,
}

/// An edit of a plan: `None` leaves a field alone, `Some(None)` removes that limit or quota.
#[derive(Debug, Clone, Default)]
pub struct UpdatePlan {
    pub name: Option<String>,
    pub rpm: Option<Option<i64>>,
    pub tpm: Option<Option<i64>>,
    pub concurrency: Option<Option<i64>>,
    pub monthly_tokens: Option<Option<i64>>,
    pub monthly_spend: Option<Option<String>>,
    pub monthly_spend_micros: Option<Option<i64>>,
    pub currency: Option<String>,
}

/// A plan named by id or by name.
#[derive(Debug, Clone)]
pub enum PlanRef {
    Id(Uuid),
    Name(String),
}

/// An org's plan (if any) and how much of its monthly quota is used.
#[derive(Debug, Clone)]
pub struct Quota {
    pub plan: Option<Plan>,
    pub period_start: DateTime<Utc>,
    pub period_end: Option<DateTime<Utc>>,
    pub tokens_used: i64,
    /// Spend this month in the plan's currency.
    pub spend_used_micros: i64,
}

impl Governance {
    #[must_use]
    pub fn new(store: Store, events: Events, audit: Audit) -> Self {
        Self {
            store,
            events,
            audit,
            default_plan: Some(DEFAULT_PLAN.to_owned()),
        }
    }

    /// Puts orgs that were given no plan on `plan` (by name), or on none.
    #[must_use]
    pub fn with_default_plan(mut self, plan: Option<String>) -> Self {
        self.default_plan = plan;
        self
    }

    // ---- The gateway's reads: no permission check. ----

    /// Everything the gateway enforces for `org`: its plan, limits and budgets (with webhook
    /// secrets). Cache it; [`Invalidation::Policy`] says when to read it again.
    pub async fn org_policy(&self, org: OrgId) -> Result<OrgPolicy> {
        Ok(self
            .store
            .org_policy(org, self.default_plan.as_deref())
            .await?)
    }

    /// Spend in `currency` of (`scope`, `scope_id`) in `org` since the UTC day of `since`, in
    /// micro-units, from the stored daily rollups (usage still in the journal is not included).
    pub async fn spent_since(
        &self,
        org: OrgId,
        scope: ScopeType,
        scope_id: Uuid,
        since: DateTime<Utc>,
        currency: Currency,
    ) -> Result<i64> {
        Ok(self
            .store
            .spent_since(org, scope, scope_id, since, currency)
            .await?)
    }

    /// Tokens (prompt + completion) used by `org` since the UTC day of `since`.
    pub async fn tokens_since(&self, org: OrgId, since: DateTime<Utc>) -> Result<i64> {
        Ok(self.store.tokens_since(org, since).await?)
    }

    // ---- Rate limits. ----

    pub async fn list_limits(&self, scope: &OrgScope) -> Result<Vec<LimitRule>> {
        scope.require(Action::LimitsRead)?;
        Ok(self.store.list_limits(scope.org_id()).await?)
    }

    pub async fn get_limit(&self, scope: &OrgScope, id: Uuid) -> Result<LimitRule> {
        scope.require(Action::LimitsRead)?;
        self.store
            .limit(scope.org_id(), id)
            .await?
            .ok_or(ServiceError::NotFound)
    }

    pub async fn create_limit(&self, scope: &OrgScope, input: CreateLimit) -> Result<LimitRule> {
        require_any(scope, Action::LimitsManage, Action::LimitsManageOwn)?;
        let (scope_type, scope_id) = self
            .parse_scope(scope, &input.scope_type, input.scope_id)
            .await?;
        self.require_manage(
            scope,
            scope_type,
            scope_id,
            Action::LimitsManage,
            Action::LimitsManageOwn,
        )
        .await?;
        let t = now();
        let rule = LimitRule {
            id: Uuid::now_v7(),
            org_id: scope.org_id(),
            scope: scope_type,
            scope_id,
            model: input.model.as_deref().map(parse_model).transpose()?,
            rpm: positive("rpm", input.rpm)?,
            tpm: positive("tpm", input.tpm)?,
            concurrency: positive("concurrency", input.concurrency)?,
            created_at: t,
            updated_at: t,
        };
        require_some_limit(&rule)?;
        self.cap_own_limit(scope, &rule, None).await?;
        self.store
            .insert_limit(&rule)
            .await
            .map_err(limit_conflict)?;
        self.changed(scope.org_id());
        tracing::info!(org_id = %rule.org_id, limit_id = %rule.id, scope = rule.scope.as_str(), "rate limit created");
        self.audit
            .record(
                scope.actor(),
                Change::new(Some(rule.org_id), "limit.create", "limit", rule.id).after(&rule),
            )
            .await?;
        Ok(rule)
    }

    pub async fn update_limit(
        &self,
        scope: &OrgScope,
        id: Uuid,
        input: UpdateLimit,
    ) -> Result<LimitRule> {
        let mut rule = self.get_limit(scope, id).await?;
        self.require_manage(
            scope,
            rule.scope,
            rule.scope_id,
            Action::LimitsManage,
            Action::LimitsManageOwn,
        )
        .await?;
        let before = rule.clone();
        if let Some(model) = input.model {
            rule.model = model.as_deref().map(parse_model).transpose()?;
        }
        if let Some(rpm) = input.rpm {
            rule.rpm = positive("rpm", rpm)?;
        }
        if let Some(tpm) = input.tpm {
            rule.tpm = positive("tpm", tpm)?;
        }
        if let Some(c) = input.concurrency {
            rule.concurrency = positive("concurrency", c)?;
        }
        require_some_limit(&rule)?;
        self.cap_own_limit(scope, &rule, Some(&before)).await?;
        rule.updated_at = now();
        if !self
            .store
            .update_limit(&rule)
            .await
            .map_err(limit_conflict)?
        {
            return Err(ServiceError::NotFound);
        }
        self.changed(scope.org_id());
        self.audit
            .record(
                scope.actor(),
                Change::new(Some(rule.org_id), "limit.update", "limit", rule.id)
                    .before(&before)
                    .after(&rule),
            )
            .await?;
        Ok(rule)
    }

    pub async fn delete_limit(&self, scope: &OrgScope, id: Uuid) -> Result<()> {
        let rule = self.get_limit(scope, id).await?;
        self.require_manage(
            scope,
            rule.scope,
            rule.scope_id,
            Action::LimitsManage,
            Action::LimitsManageOwn,
        )
        .await?;
        if !self.store.delete_limit(scope.org_id(), id).await? {
            return Err(ServiceError::NotFound);
        }
        self.changed(scope.org_id());
        tracing::info!(org_id = %scope.org_id(), limit_id = %id, "rate limit deleted");
        self.audit
            .record(
                scope.actor(),
                Change::new(Some(scope.org_id()), "limit.delete", "limit", id).before(&rule),
            )
            .await?;
        Ok(())
    }

    // ---- Budgets. ----

    /// Budgets of the org. Their webhook secrets are loaded but must never be shown.
    pub async fn list_budgets(&self, scope: &OrgScope) -> Result<Vec<BudgetRule>> {
        scope.require(Action::BudgetsRead)?;
        Ok(self.store.list_budgets(scope.org_id()).await?)
    }

    pub async fn get_budget(&self, scope: &OrgScope, id: Uuid) -> Result<BudgetRule> {
        scope.require(Action::BudgetsRead)?;
        self.store
            .budget(scope.org_id(), id)
            .await?
            .ok_or(ServiceError::NotFound)
    }

    pub async fn create_budget(
        &self,
        scope: &OrgScope,
        input: CreateBudget,
    ) -> Result<BudgetWithSecret> {
        require_any(scope, Action::BudgetsManage, Action::BudgetsManageOwn)?;
        let (scope_type, scope_id) = self
            .parse_scope(scope, &input.scope_type, input.scope_id)
            .await?;
        self.require_manage(
            scope,
            scope_type,
            scope_id,
            Action::BudgetsManage,
            Action::BudgetsManageOwn,
        )
        .await?;
        let policy = input
            .policy
            .as_deref()
            .map(parse_policy)
            .transpose()?
            .unwrap_or_default();
        let webhook_url = input
            .webhook_url
            .as_deref()
            .map(parse_webhook_url)
            .transpose()?;
        let secret = webhook_url
            .as_ref()
            .map(|_| mint_webhook_secret())
            .transpose()?;
        let t = now();
        let rule = BudgetRule {
            id: Uuid::now_v7(),
            org_id: scope.org_id(),
            scope: scope_type,
            scope_id,
            name: input.name.as_deref().map(parse_budget_name).transpose()?,
            amount_micros: parse_amount("amount", input.amount.as_deref(), input.amount_micros)?
                .ok_or_else(|| {
                    ServiceError::invalid("invalid_amount", "give `amount` or `amount_micros`")
                })?,
            currency: parse_currency(input.currency.as_deref())?,
            period: input
                .period
                .as_deref()
                .map(parse_period)
                .transpose()?
                .unwrap_or(Period::Monthly),
            policy,
            throttle_rpm: parse_throttle(policy, input.throttle_rpm)?,
            thresholds: parse_thresholds(input.thresholds)?,
            webhook_url,
            webhook_secret: secret.as_ref().map(|s| Secret::new(s.clone())),
            alert_emails: parse_emails(input.alert_emails.unwrap_or_default())?,
            created_at: t,
            updated_at: t,
        };
        self.cap_own_budget(scope, &rule, None).await?;
        self.store.insert_budget(&rule).await?;
        self.changed(scope.org_id());
        tracing::info!(org_id = %rule.org_id, budget_id = %rule.id, scope = rule.scope.as_str(), "budget created");
        self.audit
            .record(
                scope.actor(),
                Change::new(Some(rule.org_id), "budget.create", "budget", rule.id).after(&rule),
            )
            .await?;
        Ok(BudgetWithSecret {
            budget: rule,
            webhook_secret: secret.map(SecretString::from),
        })
    }

    pub async fn update_budget(
        &self,
        scope: &OrgScope,
        id: Uuid,
        input: UpdateBudget,
    ) -> Result<BudgetWithSecret> {
        let mut rule = self.get_budget(scope, id).await?;
        self.require_manage(
            scope,
            rule.scope,
            rule.scope_id,
            Action::BudgetsManage,
            Action::BudgetsManageOwn,
        )
        .await?;
        let before = rule.clone();
        if let Some(name) = input.name {
            rule.name = name.as_deref().map(parse_budget_name).transpose()?;
        }
        if let Some(amount) = parse_amount("amount", input.amount.as_deref(), input.amount_micros)?
        {
            rule.amount_micros = amount;
        }
        if let Some(c) = input.currency.as_deref() {
            rule.currency = parse_currency(Some(c))?;
        }
        if let Some(p) = input.period.as_deref() {
            rule.period = parse_period(p)?;
        }
        if let Some(p) = input.policy.as_deref() {
            rule.policy = parse_policy(p)?;
        }
        rule.throttle_rpm = match input.throttle_rpm {
            Some(rpm) => parse_throttle(rule.policy, rpm)?,
            // Switching to `block` drops a throttle rate nobody asked to keep.
            None if rule.policy == BudgetPolicy::Block => None,
            None => parse_throttle(rule.policy, rule.throttle_rpm.map(saturating_i64))?,
        };
        if let Some(t) = input.thresholds {
            rule.thresholds = parse_thresholds(Some(t))?;
        }
        if let Some(e) = input.alert_emails {
            rule.alert_emails = parse_emails(e)?;
        }
        let mut minted = None;
        if let Some(url) = input.webhook_url {
            rule.webhook_url = url.as_deref().map(parse_webhook_url).transpose()?;
            if rule.webhook_url.is_none() {
                rule.webhook_secret = None;
            } else if rule.webhook_secret.is_none() {
                let s = mint_webhook_secret()?;
                rule.webhook_secret = Some(Secret::new(s.clone()));
                minted = Some(SecretString::from(s));
            }
        }
        self.cap_own_budget(scope, &rule, Some(&before)).await?;
        rule.updated_at = now();
        if !self.store.update_budget(&rule).await? {
            return Err(ServiceError::NotFound);
        }
        self.changed(scope.org_id());
        self.audit
            .record(
                scope.actor(),
                Change::new(Some(rule.org_id), "budget.update", "budget", rule.id)
                    .before(&before)
                    .after(&rule),
            )
            .await?;
        Ok(BudgetWithSecret {
            budget: rule,
            webhook_secret: minted,
        })
    }

    /// Replaces a budget's webhook signing secret; the old one stops being used at once.
    pub async fn rotate_webhook_secret(
        &self,
        scope: &OrgScope,
        id: Uuid,
    ) -> Result<BudgetWithSecret> {
        let mut rule = self.get_budget(scope, id).await?;
        self.require_manage(
            scope,
            rule.scope,
            rule.scope_id,
            Action::BudgetsManage,
            Action::BudgetsManageOwn,
        )
        .await?;
        if rule.webhook_url.is_none() {
            return Err(ServiceError::Conflict {
                code: "no_webhook",
                message: "this budget has no webhook_url, so it has no signing secret".into(),
            });
        }
        let s = mint_webhook_secret()?;
        rule.webhook_secret = Some(Secret::new(s.clone()));
        rule.updated_at = now();
        if !self.store.update_budget(&rule).await? {
            return Err(ServiceError::NotFound);
        }
        self.changed(scope.org_id());
        tracing::info!(org_id = %rule.org_id, budget_id = %rule.id, "budget webhook secret rotated");
        // The secret itself is never recorded; that it changed is.
        self.audit
            .record(
                scope.actor(),
                Change::new(Some(rule.org_id), "budget.rotate_secret", "budget", rule.id),
            )
            .await?;
        Ok(BudgetWithSecret {
            budget: rule,
            webhook_secret: Some(SecretString::from(s)),
        })
    }

    pub async fn delete_budget(&self, scope: &OrgScope, id: Uuid) -> Result<()> {
        let rule = self.get_budget(scope, id).await?;
        self.require_manage(
            scope,
            rule.scope,
            rule.scope_id,
            Action::BudgetsManage,
            Action::BudgetsManageOwn,
        )
        .await?;
        if !self.store.delete_budget(scope.org_id(), id).await? {
            return Err(ServiceError::NotFound);
        }
        self.changed(scope.org_id());
        tracing::info!(org_id = %scope.org_id(), budget_id = %id, "budget deleted");
        self.audit
            .record(
                scope.actor(),
                Change::new(Some(scope.org_id()), "budget.delete", "budget", id).before(&rule),
            )
            .await?;
        Ok(())
    }

    // ---- Plans and quota. ----

    /// Every plan; any signed-in user may see them.
    pub async fn list_plans(&self) -> Result<Vec<Plan>> {
        Ok(self.store.list_plans().await?)
    }

    /// The org's plan and its use of the monthly quota so far (from stored usage).
    pub async fn quota(&self, scope: &OrgScope) -> Result<Quota> {
        scope.require(Action::UsageRead)?;
        let org = scope.org_id();
        let plan = self
            .store
            .org_plan(org, self.default_plan.as_deref())
            .await?;
        let t = now();
        let start = Period::Monthly.start(t);
        let tokens_used = self.store.tokens_since(org, start).await?;
        let spend_used_micros = self
            .store
            .spent_since(
                org,
                ScopeType::Org,
                org.as_uuid(),
                start,
                plan.as_ref().map_or(Currency::USD, |p| p.currency),
            )
            .await?;
        Ok(Quota {
            plan,
            period_start: start,
            period_end: Period::Monthly.end(t),
            tokens_used,
            spend_used_micros,
        })
    }

    pub async fn create_plan(&self, actor: &Actor, input: CreatePlan) -> Result<Plan> {
        require_platform_admin(actor)?;
        let t = now();
        let plan = Plan {
            id: Uuid::now_v7(),
            name: parse_plan_name(&input.name)?,
            rpm: positive("rpm", input.rpm)?,
            tpm: positive("tpm", input.tpm)?,
            concurrency: positive("concurrency", input.concurrency)?,
            monthly_tokens: positive("monthly_tokens", input.monthly_tokens)?,
            monthly_spend_micros: parse_amount(
                "monthly_spend",
                input.monthly_spend.as_deref(),
                input.monthly_spend_micros,
            )?,
            currency: parse_currency(input.currency.as_deref())?,
            created_at: t,
            updated_at: t,
        };
        self.store.insert_plan(&plan).await.map_err(plan_conflict)?;
        tracing::info!(actor = %actor.user_id, plan = %plan.name, "plan created");
        self.audit
            .record(
                actor,
                Change::new(None, "plan.create", "plan", plan.id).after(&plan),
            )
            .await?;
        Ok(plan)
    }

    pub async fn update_plan(&self, actor: &Actor, id: Uuid, input: UpdatePlan) -> Result<Plan> {
        require_platform_admin(actor)?;
        let mut plan = self.store.plan(id).await?.ok_or(ServiceError::NotFound)?;
        let before = plan.clone();
        if let Some(name) = input.name {
            let name = parse_plan_name(&name)?;
            if self.default_plan.as_deref() == Some(plan.name.as_str()) && name != plan.name {
                return Err(ServiceError::invalid(
                    "invalid_name",
                    "this plan is the configured default plan (limits.default_plan) and cannot be renamed",
                ));
            }
            plan.name = name;
        }
        if let Some(v) = input.rpm {
            plan.rpm = positive("rpm", v)?;
        }
        if let Some(v) = input.tpm {
            plan.tpm = positive("tpm", v)?;
        }
        if let Some(v) = input.concurrency {
            plan.concurrency = positive("concurrency", v)?;
        }
        if let Some(v) = input.monthly_tokens {
            plan.monthly_tokens = positive("monthly_tokens", v)?;
        }
        match (input.monthly_spend, input.monthly_spend_micros) {
            (Some(_), Some(_)) => {
                return Err(ServiceError::invalid(
                    "invalid_amount",
                    "give `monthly_spend` or `monthly_spend_micros`, not both",
                ));
            }
            (Some(s), None) => {
                plan.monthly_spend_micros = parse_amount("monthly_spend", s.as_deref(), None)?;
            }
            (None, Some(m)) => {
                plan.monthly_spend_micros = parse_amount("monthly_spend", None, m)?;
            }
            (None, None) => {}
        }
        if let Some(c) = input.currency.as_deref() {
            plan.currency = parse_currency(Some(c))?;
        }
        plan.updated_at = now();
        if !self.store.update_plan(&plan).await.map_err(plan_conflict)? {
            return Err(ServiceError::NotFound);
        }
        for org in self
            .store
            .orgs_on_plan(plan.id, self.default_plan.as_deref())
            .await?
        {
            self.changed(org);
        }
        tracing::info!(actor = %actor.user_id, plan = %plan.name, "plan updated");
        self.audit
            .record(
                actor,
                Change::new(None, "plan.update", "plan", plan.id)
                    .before(&before)
                    .after(&plan),
            )
            .await?;
        Ok(plan)
    }

    /// Puts an organization on a plan.
    pub async fn set_org_plan(&self, actor: &Actor, org: OrgId, plan: PlanRef) -> Result<Plan> {
        require_platform_admin(actor)?;
        let plan = match plan {
            PlanRef::Id(id) => self.store.plan(id).await?,
            PlanRef::Name(name) => self.store.plan_by_name(name.trim()).await?,
        }
        .ok_or_else(|| ServiceError::invalid("unknown_plan", "there is no such plan"))?;
        let before = self
            .store
            .org_plan(org, self.default_plan.as_deref())
            .await?;
        if !self.store.set_org_plan(org, plan.id, now()).await? {
            return Err(ServiceError::NotFound);
        }
        self.changed(org);
        tracing::info!(actor = %actor.user_id, org_id = %org, plan = %plan.name, "org plan set");
        let named = |p: &Plan| json!({ "id": p.id, "name": p.name });
        self.audit
            .record(
                actor,
                Change::new(Some(org), "org.plan_assign", "org", org)
                    .before(json!({ "plan": before.as_ref().map(named) }))
                    .after(json!({ "plan": named(&plan) })),
            )
            .await?;
        Ok(plan)
    }

    // ---- Helpers. ----

    fn changed(&self, org: OrgId) {
        self.events.publish(Invalidation::Policy(org));
    }

    /// Parses a rule's scope and checks that its object belongs to this org: a key of the org,
    /// a member of it, one of its teams, or the org itself.
    async fn parse_scope(
        &self,
        scope: &OrgScope,
        scope_type: &str,
        scope_id: Option<Uuid>,
    ) -> Result<(ScopeType, Uuid)> {
        let kind = ScopeType::parse(scope_type).ok_or_else(|| {
            ServiceError::invalid(
                "invalid_scope",
                "scope_type must be one of key, user, team, org",
            )
        })?;
        let org = scope.org_id();
        if kind == ScopeType::Org {
            return match scope_id {
                None => Ok((kind, org.as_uuid())),
                Some(id) if id == org.as_uuid() => Ok((kind, id)),
                Some(_) => Err(ServiceError::invalid(
                    "invalid_scope",
                    "for scope_type org, scope_id must be this organization's id (or absent)",
                )),
            };
        }
        let id = scope_id.ok_or_else(|| {
            ServiceError::invalid("invalid_scope", "scope_id is required for this scope_type")
        })?;
        let exists = match kind {
            ScopeType::Key => self.store.key(org, KeyId::from_uuid(id)).await?.is_some(),
            ScopeType::User => self
                .store
                .membership(org, UserId::from_uuid(id))
                .await?
                .is_some(),
            ScopeType::Team => self.store.team_exists(org, id).await?,
            ScopeType::Org => true,
        };
        if exists {
            Ok((kind, id))
        } else {
            let what = match kind {
                ScopeType::Key => "an API key of this organization",
                ScopeType::User => "a member of this organization",
                ScopeType::Team | ScopeType::Org => "a team of this organization",
            };
            Err(ServiceError::invalid(
                "invalid_scope",
                format!("scope_id is not {what}"),
            ))
        }
    }

    /// Refuses a limit that a caller managing only their own keys sets on one of them above the
    /// tightest limit of the same kind on their user scope. A limit "of the same kind" counts the
    /// same metric (rpm, tpm, concurrency) for the same model, or for every model. Only values
    /// that are new or raised are checked, so lowering a limit an Admin set higher is allowed.
    async fn cap_own_limit(
        &self,
        scope: &OrgScope,
        rule: &LimitRule,
        before: Option<&LimitRule>,
    ) -> Result<()> {
        if scope.can(Action::LimitsManage) || rule.scope != ScopeType::Key {
            return Ok(());
        }
        let me = scope.actor().user_id.as_uuid();
        let caps: Vec<LimitRule> = self
            .store
            .list_limits(scope.org_id())
            .await?
            .into_iter()
            .filter(|u| {
                u.scope == ScopeType::User
                    && u.scope_id == me
                    && (u.model.is_none() || u.model == rule.model)
            })
            .collect();
        let model_changed = before.is_none_or(|b| b.model != rule.model);
        let metrics: [(&str, Metric); 3] = [
            ("rpm", |r| r.rpm),
            ("tpm", |r| r.tpm),
            ("concurrency", |r| r.concurrency),
        ];
        for (metric, value) in metrics {
            let Some(new) = value(rule) else { continue };
            let raised = model_changed || before.and_then(value).is_none_or(|old| new > old);
            let tightest = caps
                .iter()
                .filter_map(|u| value(u).map(|v| (v, u.id)))
                .min_by_key(|(v, _)| *v);
            if raised
                && let Some((cap, cap_id)) = tightest
                && new > cap
            {
                return Err(ServiceError::invalid(
                    "above_user_limit",
                    format!(
                        "{metric} {new} is above the {metric} of {cap} that your own rate limit \
                         {cap_id} allows; only an Owner or Admin can set a key's limit higher"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Refuses a budget that a caller managing only their own keys sets on one of them above the
    /// tightest budget on their user scope with the same period and currency. Checked when the
    /// budget is created, its amount raised, or its period or currency changed.
    async fn cap_own_budget(
        &self,
        scope: &OrgScope,
        rule: &BudgetRule,
        before: Option<&BudgetRule>,
    ) -> Result<()> {
        if scope.can(Action::BudgetsManage) || rule.scope != ScopeType::Key {
            return Ok(());
        }
        let raised = before.is_none_or(|b| {
            b.period != rule.period
                || b.currency != rule.currency
                || rule.amount_micros > b.amount_micros
        });
        if !raised {
            return Ok(());
        }
        let me = scope.actor().user_id.as_uuid();
        let tightest = self
            .store
            .list_budgets(scope.org_id())
            .await?
            .into_iter()
            .filter(|u| {
                u.scope == ScopeType::User
                    && u.scope_id == me
                    && u.period == rule.period
                    && u.currency == rule.currency
            })
            .min_by_key(|u| u.amount_micros);
        match tightest {
            Some(cap) if rule.amount_micros > cap.amount_micros => Err(ServiceError::invalid(
                "above_user_budget",
                format!(
                    "{} {} {} is above the {} {} {} of your own budget {}; only an Owner \
                         or Admin can give a key a larger budget",
                    format_decimal_micros(rule.amount_micros),
                    rule.currency,
                    rule.period.as_str(),
                    format_decimal_micros(cap.amount_micros),
                    cap.currency,
                    cap.period.as_str(),
                    cap.id
                ),
            )),
            _ => Ok(()),
        }
    }

    /// `Forbidden` unless the caller may manage rules on this scope: `all` anywhere, `own` on
    /// keys they own.
    async fn require_manage(
        &self,
        scope: &OrgScope,
        kind: ScopeType,
        id: Uuid,
        all: Action,
        own: Action,
    ) -> Result<()> {
        if scope.can(all) {
            return Ok(());
        }
        if kind == ScopeType::Key && scope.can(own) {
            let key = self.store.key(scope.org_id(), KeyId::from_uuid(id)).await?;
            if key.is_some_and(|k| k.owner_user_id == Some(scope.actor().user_id)) {
                return Ok(());
            }
        }
        Err(ServiceError::Forbidden)
    }
}

/// One metric of a rate limit.
type Metric = fn(&LimitRule) -> Option<u64>;

fn require_any(scope: &OrgScope, all: Action, own: Action) -> Result<()> {
    if scope.can(all) || scope.can(own) {
        Ok(())
    } else {
        Err(ServiceError::Forbidden)
    }
}

fn limit_conflict(e: StoreError) -> ServiceError {
    match e {
        StoreError::Conflict => ServiceError::Conflict {
            code: "limit_exists",
            message: "this scope already has a rate limit for this model; edit that one".into(),
        },
        e => e.into(),
    }
}

fn plan_conflict(e: StoreError) -> ServiceError {
    match e {
        StoreError::Conflict => ServiceError::Conflict {
            code: "plan_exists",
            message: "a plan with this name already exists".into(),
        },
        e => e.into(),
    }
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `whsec_` and 32 random bytes in unpadded base64url.
fn mint_webhook_secret() -> Result<String> {
    let bytes = crypto::random_bytes::<32>()?;
    Ok(format!(
        "{WEBHOOK_SECRET_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// A count that must be at least 1 when given.
fn positive(field: &'static str, v: Option<i64>) -> Result<Option<u64>> {
    match v {
        None => Ok(None),
        Some(v) if v >= 1 => Ok(u64::try_from(v).ok()),
        Some(_) => Err(ServiceError::invalid(
            "invalid_limit",
            format!("{field} must be at least 1 (or null for no limit)"),
        )),
    }
}

fn require_some_limit(rule: &LimitRule) -> Result<()> {
    if rule.rpm.is_none() && rule.tpm.is_none() && rule.concurrency.is_none() {
        return Err(ServiceError::invalid(
            "invalid_limit",
            "set at least one of rpm, tpm and concurrency",
        ));
    }
    Ok(())
}

fn parse_model(raw: &str) -> Result<String> {
    let m = raw.trim();
    if m.is_empty()
        || m.chars().count() > MAX_MODEL_NAME_CHARS
        || m.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(ServiceError::invalid(
            "invalid_model",
            format!(
                "model must be 1 to {MAX_MODEL_NAME_CHARS} characters without spaces, or null for every model"
            ),
        ));
    }
    Ok(m.to_owned())
}

/// An amount given as a decimal string or in micro-units (at most one of them); positive.
fn parse_amount(field: &str, decimal: Option<&str>, micros: Option<i64>) -> Result<Option<i64>> {
    let micros = match (decimal, micros) {
        (Some(_), Some(_)) => {
            return Err(ServiceError::invalid(
                "invalid_amount",
                format!("give `{field}` or `{field}_micros`, not both"),
            ));
        }
        (Some(d), None) => Some(
            parse_decimal_micros(d.trim())
                .map_err(|e| ServiceError::invalid("invalid_amount", format!("{field}: {e}")))?,
        ),
        (None, m) => m,
    };
    match micros {
        Some(m) if m <= 0 => Err(ServiceError::invalid(
            "invalid_amount",
            format!("{field} must be greater than zero"),
        )),
        m => Ok(m),
    }
}

fn parse_currency(raw: Option<&str>) -> Result<Currency> {
    raw.map_or(Ok(Currency::USD), |c| {
        Currency::parse(c.trim())
            .map_err(|e| ServiceError::invalid("invalid_currency", e.to_string()))
    })
}

fn parse_period(raw: &str) -> Result<Period> {
    Period::parse(raw).ok_or_else(|| {
        ServiceError::invalid(
            "invalid_period",
            "period must be one of daily, weekly, monthly, total",
        )
    })
}

fn parse_policy(raw: &str) -> Result<BudgetPolicy> {
    BudgetPolicy::parse(raw)
        .ok_or_else(|| ServiceError::invalid("invalid_policy", "policy must be block or throttle"))
}

/// `throttle_rpm` is required with `throttle` and refused with `block`.
fn parse_throttle(policy: BudgetPolicy, rpm: Option<i64>) -> Result<Option<u64>> {
    match (policy, rpm) {
        (BudgetPolicy::Throttle, None) => Err(ServiceError::invalid(
            "invalid_throttle_rpm",
            "throttle_rpm is required when policy is throttle",
        )),
        (BudgetPolicy::Throttle, Some(r)) if r >= 1 => Ok(u64::try_from(r).ok()),
        (BudgetPolicy::Throttle, Some(_)) => Err(ServiceError::invalid(
            "invalid_throttle_rpm",
            "throttle_rpm must be at least 1",
        )),
        (BudgetPolicy::Block, None) => Ok(None),
        (BudgetPolicy::Block, Some(_)) => Err(ServiceError::invalid(
            "invalid_throttle_rpm",
            "throttle_rpm is only allowed when policy is throttle",
        )),
    }
}

/// 1 to 10 percentages in 1..=1000, returned sorted and without duplicates; default 80 and 100.
fn parse_thresholds(raw: Option<Vec<i64>>) -> Result<Vec<u32>> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_THRESHOLDS.to_vec());
    };
    let bad = || {
        ServiceError::invalid(
            "invalid_thresholds",
            format!(
                "thresholds must be 1 to {MAX_THRESHOLDS} percentages between 1 and {MAX_THRESHOLD_PCT}"
            ),
        )
    };
    if raw.is_empty() || raw.len() > MAX_THRESHOLDS {
        return Err(bad());
    }
    let mut out = raw
        .into_iter()
        .map(|p| {
            u32::try_from(p)
                .ok()
                .filter(|p| (1..=MAX_THRESHOLD_PCT).contains(p))
                .ok_or_else(bad)
        })
        .collect::<Result<Vec<u32>>>()?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn parse_webhook_url(raw: &str) -> Result<String> {
    let url = raw.trim();
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    if url.len() > MAX_WEBHOOK_URL_CHARS
        || host.is_none_or(str::is_empty)
        || url.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(ServiceError::invalid(
            "invalid_webhook_url",
            format!(
                "webhook_url must be an http:// or https:// URL of at most {MAX_WEBHOOK_URL_CHARS} characters"
            ),
        ));
    }
    Ok(url.to_owned())
}

fn parse_emails(raw: Vec<String>) -> Result<Vec<String>> {
    if raw.len() > MAX_ALERT_EMAILS {
        return Err(ServiceError::invalid(
            "invalid_alert_emails",
            format!("at most {MAX_ALERT_EMAILS} alert e-mail addresses"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for e in raw {
        let email = Email::parse(&e).map_err(|err| {
            ServiceError::invalid("invalid_alert_emails", format!("alert_emails: {err}"))
        })?;
        let email = email.to_string();
        if !out.contains(&email) {
            out.push(email);
        }
    }
    Ok(out)
}

fn parse_budget_name(raw: &str) -> Result<String> {
    let name = raw.trim();
    if name.is_empty()
        || name.chars().count() > MAX_BUDGET_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(ServiceError::invalid(
            "invalid_name",
            format!(
                "name must be 1 to {MAX_BUDGET_NAME_CHARS} characters without control characters"
            ),
        ));
    }
    Ok(name.to_owned())
}

/// Lower-case letters, digits, `-` and `_`, 1 to 64 characters.
fn parse_plan_name(raw: &str) -> Result<String> {
    let name = raw.trim();
    if name.is_empty()
        || name.len() > MAX_PLAN_NAME_CHARS
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(ServiceError::invalid(
            "invalid_name",
            format!(
                "plan names are 1 to {MAX_PLAN_NAME_CHARS} lower-case letters, digits, - and _"
            ),
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_sorted_deduplicated_and_bounded() {
        assert_eq!(parse_thresholds(None).unwrap(), vec![80, 100]);
        assert_eq!(
            parse_thresholds(Some(vec![100, 50, 100, 1000])).unwrap(),
            vec![50, 100, 1000]
        );
        for bad in [vec![], vec![0], vec![1001], vec![-5], (1..=11).collect()] {
            assert!(parse_thresholds(Some(bad)).is_err());
        }
    }

    #[test]
    fn amounts_are_exact_and_positive() {
        assert_eq!(
            parse_amount("amount", Some("12.50"), None).unwrap(),
            Some(12_500_000)
        );
        assert_eq!(parse_amount("amount", None, Some(7)).unwrap(), Some(7));
        assert_eq!(parse_amount("amount", None, None).unwrap(), None);
        assert!(parse_amount("amount", Some("0"), None).is_err());
        assert!(parse_amount("amount", None, Some(-1)).is_err());
        assert!(parse_amount("amount", Some("1.5"), Some(1)).is_err());
        assert!(parse_amount("amount", Some("1e3"), None).is_err());
        assert!(parse_amount("amount", Some("0.0000001"), None).is_err());
    }

    #[test]
    fn throttle_rpm_goes_with_the_throttle_policy() {
        assert_eq!(
            parse_throttle(BudgetPolicy::Throttle, Some(5)).unwrap(),
            Some(5)
        );
        assert!(parse_throttle(BudgetPolicy::Throttle, None).is_err());
        assert!(parse_throttle(BudgetPolicy::Throttle, Some(0)).is_err());
        assert_eq!(parse_throttle(BudgetPolicy::Block, None).unwrap(), None);
        assert!(parse_throttle(BudgetPolicy::Block, Some(5)).is_err());
    }

    #[test]
    fn webhook_urls_emails_and_names() {
        assert!(parse_webhook_url("https://hooks.example.com/x?y=1").is_ok());
        assert!(parse_webhook_url("http://10.0.0.1:8080").is_ok());
        for bad in [
            "ftp://x",
            "https://",
            "https:///path",
            "javascript:alert(1)",
            "https://a b",
        ] {
            assert!(parse_webhook_url(bad).is_err(), "{bad}");
        }
        assert!(parse_webhook_url(&format!("https://x/{}", "a".repeat(2048))).is_err());
        assert_eq!(
            parse_emails(vec!["Ops@Example.com".into(), "ops@example.com".into()])
                .unwrap()
                .len(),
            1
        );
        assert!(parse_emails(vec!["not an email".into()]).is_err());
        assert!(parse_plan_name("team-2").is_ok());
        assert!(parse_plan_name("Team").is_err());
        assert!(parse_budget_name(" ").is_err());
        assert!(parse_model("gpt-4o").is_ok());
        assert!(parse_model("").is_err());
    }

    #[test]
    fn webhook_secrets_are_prefixed_and_random() {
        let a = mint_webhook_secret().unwrap();
        let b = mint_webhook_secret().unwrap();
        assert!(a.starts_with(WEBHOOK_SECRET_PREFIX));
        assert_eq!(a.len(), WEBHOOK_SECRET_PREFIX.len() + 43);
        assert_ne!(a, b);
    }
}
