//! Rate limits, budgets and plans, and the spend and token sums budgets and quotas are checked
//! against. Every limit and budget query is scoped by org; plans are global. An org without a
//! plan of its own (`orgs.plan_id` NULL) is on the default plan named by the caller (the
//! `limits.default_plan` setting), or on none.

use aihub_core::governance::{
    BudgetPolicy, BudgetRule, LimitRule, OrgPolicy, Period, Plan, ScopeType,
};
use aihub_core::secret::Secret;
use aihub_core::time::{from_millis, to_millis};
use aihub_core::{Currency, OrgId};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::usage::day_of;
use crate::{Result, Store, StoreError, on_backend};

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// A stored count (always positive, checked by the schema) as the domain's `u64`.
fn count(what: &str, v: Option<i64>) -> Result<Option<u64>> {
    v.map(|v| u64::try_from(v).map_err(|e| corrupt(what, e)))
        .transpose()
}

/// A domain count as a column value; counts beyond `i64::MAX` are stored as `i64::MAX`, which
/// is no limit in practice.
fn column(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn currency(s: &str) -> Result<Currency> {
    Currency::parse(s).map_err(|e| corrupt("currency", e))
}

fn scope_type(s: &str) -> Result<ScopeType> {
    ScopeType::parse(s).ok_or_else(|| corrupt("scope_type", s))
}

#[derive(sqlx::FromRow)]
struct PlanRow {
    id: Uuid,
    name: String,
    rpm: Option<i64>,
    tpm: Option<i64>,
    concurrency: Option<i64>,
    monthly_tokens: Option<i64>,
    monthly_spend_micros: Option<i64>,
    currency: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<PlanRow> for Plan {
    type Error = StoreError;

    fn try_from(r: PlanRow) -> Result<Self> {
        Ok(Plan {
            id: r.id,
            name: r.name,
            rpm: count("plans.rpm", r.rpm)?,
            tpm: count("plans.tpm", r.tpm)?,
            concurrency: count("plans.concurrency", r.concurrency)?,
            monthly_tokens: count("plans.monthly_tokens", r.monthly_tokens)?,
            monthly_spend_micros: r.monthly_spend_micros,
            currency: currency(&r.currency)?,
            created_at: from_millis(r.created_at),
            updated_at: from_millis(r.updated_at),
        })
    }
}

macro_rules! plan_columns {
    () => {
        "p.id, p.name, p.rpm, p.tpm, p.concurrency, p.monthly_tokens, p.monthly_spend_micros, \
         p.currency, p.created_at, p.updated_at"
    };
}

#[derive(sqlx::FromRow)]
struct LimitRow {
    id: Uuid,
    org_id: Uuid,
    scope_type: String,
    scope_id: Uuid,
    model: String,
    rpm: Option<i64>,
    tpm: Option<i64>,
    concurrency: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<LimitRow> for LimitRule {
    type Error = StoreError;

    fn try_from(r: LimitRow) -> Result<Self> {
        Ok(LimitRule {
            id: r.id,
            org_id: OrgId::from_uuid(r.org_id),
            scope: scope_type(&r.scope_type)?,
            scope_id: r.scope_id,
            // '' stands for "every model", so that the unique constraint also covers that rule.
            model: Some(r.model).filter(|m| !m.is_empty()),
            rpm: count("rate_limits.rpm", r.rpm)?,
            tpm: count("rate_limits.tpm", r.tpm)?,
            concurrency: count("rate_limits.concurrency", r.concurrency)?,
            created_at: from_millis(r.created_at),
            updated_at: from_millis(r.updated_at),
        })
    }
}

macro_rules! limit_columns {
    () => {
        "id, org_id, scope_type, scope_id, model, rpm, tpm, concurrency, created_at, updated_at"
    };
}

#[derive(sqlx::FromRow)]
struct BudgetRow {
    id: Uuid,
    org_id: Uuid,
    scope_type: String,
    scope_id: Uuid,
    name: Option<String>,
    amount_micros: i64,
    currency: String,
    period: String,
    policy: String,
    throttle_rpm: Option<i64>,
    thresholds: String,
    webhook_url: Option<String>,
    webhook_secret: Option<String>,
    alert_emails: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<BudgetRow> for BudgetRule {
    type Error = StoreError;

    fn try_from(r: BudgetRow) -> Result<Self> {
        Ok(BudgetRule {
            id: r.id,
            org_id: OrgId::from_uuid(r.org_id),
            scope: scope_type(&r.scope_type)?,
            scope_id: r.scope_id,
            name: r.name,
            amount_micros: r.amount_micros,
            currency: currency(&r.currency)?,
            period: Period::parse(&r.period).ok_or_else(|| corrupt("budgets.period", &r.period))?,
            policy: BudgetPolicy::parse(&r.policy)
                .ok_or_else(|| corrupt("budgets.policy", &r.policy))?,
            throttle_rpm: count("budgets.throttle_rpm", r.throttle_rpm)?,
            thresholds: serde_json::from_str(&r.thresholds)
                .map_err(|e| corrupt("budgets.thresholds", e))?,
            webhook_url: r.webhook_url,
            webhook_secret: r.webhook_secret.map(Secret::new),
            alert_emails: serde_json::from_str(&r.alert_emails)
                .map_err(|e| corrupt("budgets.alert_emails", e))?,
            created_at: from_millis(r.created_at),
            updated_at: from_millis(r.updated_at),
        })
    }
}

macro_rules! budget_columns {
    () => {
        "id, org_id, scope_type, scope_id, name, amount_micros, currency, period, policy, \
         throttle_rpm, thresholds, webhook_url, webhook_secret, alert_emails, created_at, \
         updated_at"
    };
}

fn json<T: serde::Serialize>(v: &T) -> String {
    // Lists of numbers and strings always serialize.
    serde_json::to_string(v).unwrap_or_else(|_| "[]".to_owned())
}

/// Plans.
impl Store {
    /// Every plan, by name.
    pub async fn list_plans(&self) -> Result<Vec<Plan>> {
        let rows: Vec<PlanRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                plan_columns!(),
                " FROM plans p ORDER BY p.name"
            ))
            .fetch_all(p)
            .await
        })?;
        rows.into_iter().map(Plan::try_from).collect()
    }

    pub async fn plan(&self, id: Uuid) -> Result<Option<Plan>> {
        let row: Option<PlanRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                plan_columns!(),
                " FROM plans p WHERE p.id = $1"
            ))
            .bind(id)
            .fetch_optional(p)
            .await
        })?;
        row.map(Plan::try_from).transpose()
    }

    pub async fn plan_by_name(&self, name: &str) -> Result<Option<Plan>> {
        let row: Option<PlanRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                plan_columns!(),
                " FROM plans p WHERE p.name = $1"
            ))
            .bind(name)
            .fetch_optional(p)
            .await
        })?;
        row.map(Plan::try_from).transpose()
    }

    /// `Conflict` if the name is taken.
    pub async fn insert_plan(&self, plan: &Plan) -> Result<()> {
        on_backend!(self.writer(), |p| {
            sqlx::query(
                "INSERT INTO plans (id, name, rpm, tpm, concurrency, monthly_tokens, \
                 monthly_spend_micros, currency, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(plan.id)
            .bind(&plan.name)
            .bind(column(plan.rpm))
            .bind(column(plan.tpm))
            .bind(column(plan.concurrency))
            .bind(column(plan.monthly_tokens))
            .bind(plan.monthly_spend_micros)
            .bind(plan.currency.as_str())
            .bind(to_millis(plan.created_at))
            .bind(to_millis(plan.updated_at))
            .execute(p)
            .await
            .map(|_| ())
            .map_err(StoreError::from_write)
        })
    }

    /// Writes every field of `plan` but its id and creation time; `false` if there is no such
    /// plan, `Conflict` if the new name is taken.
    pub async fn update_plan(&self, plan: &Plan) -> Result<bool> {
        on_backend!(self.writer(), |p| {
            sqlx::query(
                "UPDATE plans SET name = $2, rpm = $3, tpm = $4, concurrency = $5, \
                 monthly_tokens = $6, monthly_spend_micros = $7, currency = $8, updated_at = $9 \
                 WHERE id = $1",
            )
            .bind(plan.id)
            .bind(&plan.name)
            .bind(column(plan.rpm))
            .bind(column(plan.tpm))
            .bind(column(plan.concurrency))
            .bind(column(plan.monthly_tokens))
            .bind(plan.monthly_spend_micros)
            .bind(plan.currency.as_str())
            .bind(to_millis(plan.updated_at))
            .execute(p)
            .await
            .map(|r| r.rows_affected() == 1)
            .map_err(StoreError::from_write)
        })
    }

    /// Puts a live org on `plan`; `false` if there is no such org.
    pub async fn set_org_plan(&self, org: OrgId, plan: Uuid, now: DateTime<Utc>) -> Result<bool> {
        on_backend!(self.writer(), |p| {
            sqlx::query(
                "UPDATE orgs SET plan_id = $2, updated_at = $3 \
                 WHERE id = $1 AND deleted_at IS NULL",
            )
            .bind(org.as_uuid())
            .bind(plan)
            .bind(to_millis(now))
            .execute(p)
            .await
            .map(|r| r.rows_affected() == 1)
            .map_err(StoreError::from_write)
        })
    }

    /// The plan `org` is on: its own, else the plan named `default_plan`; `None` if neither
    /// exists.
    pub async fn org_plan(&self, org: OrgId, default_plan: Option<&str>) -> Result<Option<Plan>> {
        let row: Option<PlanRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                plan_columns!(),
                " FROM orgs o JOIN plans p ON p.id = o.plan_id \
                   OR (o.plan_id IS NULL AND p.name = $2) \
                 WHERE o.id = $1"
            ))
            .bind(org.as_uuid())
            .bind(default_plan)
            .fetch_optional(p)
            .await
        })?;
        row.map(Plan::try_from).transpose()
    }

    /// Live orgs on `plan` (including, when it is named `default_plan`, those given none).
    pub async fn orgs_on_plan(&self, plan: Uuid, default_plan: Option<&str>) -> Result<Vec<OrgId>> {
        let ids: Vec<Uuid> = on_backend!(self.reader(), |p| {
            sqlx::query_scalar(
                "SELECT o.id FROM orgs o JOIN plans p ON p.id = $1 \
                 WHERE o.deleted_at IS NULL \
                   AND (o.plan_id = p.id OR (o.plan_id IS NULL AND p.name = $2))",
            )
            .bind(plan)
            .bind(default_plan)
            .fetch_all(p)
            .await
        })?;
        Ok(ids.into_iter().map(OrgId::from_uuid).collect())
    }
}

/// Rate limits.
impl Store {
    /// Limits of `org`, oldest first.
    pub async fn list_limits(&self, org: OrgId) -> Result<Vec<LimitRule>> {
        let rows: Vec<LimitRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                limit_columns!(),
                " FROM rate_limits WHERE org_id = $1 ORDER BY id"
            ))
            .bind(org.as_uuid())
            .fetch_all(p)
            .await
        })?;
        rows.into_iter().map(LimitRule::try_from).collect()
    }

    pub async fn limit(&self, org: OrgId, id: Uuid) -> Result<Option<LimitRule>> {
        let row: Option<LimitRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                limit_columns!(),
                " FROM rate_limits WHERE org_id = $1 AND id = $2"
            ))
            .bind(org.as_uuid())
            .bind(id)
            .fetch_optional(p)
            .await
        })?;
        row.map(LimitRule::try_from).transpose()
    }

    /// `Conflict` if the scope already has a limit for the same model (or for every model).
    pub async fn insert_limit(&self, l: &LimitRule) -> Result<()> {
        on_backend!(self.writer(), |p| {
            sqlx::query(concat!(
                "INSERT INTO rate_limits (",
                limit_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ))
            .bind(l.id)
            .bind(l.org_id.as_uuid())
            .bind(l.scope.as_str())
            .bind(l.scope_id)
            .bind(l.model.as_deref().unwrap_or(""))
            .bind(column(l.rpm))
            .bind(column(l.tpm))
            .bind(column(l.concurrency))
            .bind(to_millis(l.created_at))
            .bind(to_millis(l.updated_at))
            .execute(p)
            .await
            .map(|_| ())
            .map_err(StoreError::from_write)
        })
    }

    /// Writes the model and the limits of `l` (its scope never changes); `false` if `l.org_id`
    /// has no such limit, `Conflict` if the scope already has a limit for the new model.
    pub async fn update_limit(&self, l: &LimitRule) -> Result<bool> {
        on_backend!(self.writer(), |p| {
            sqlx::query(
                "UPDATE rate_limits SET model = $3, rpm = $4, tpm = $5, concurrency = $6, \
                 updated_at = $7 WHERE org_id = $1 AND id = $2",
            )
            .bind(l.org_id.as_uuid())
            .bind(l.id)
            .bind(l.model.as_deref().unwrap_or(""))
            .bind(column(l.rpm))
            .bind(column(l.tpm))
            .bind(column(l.concurrency))
            .bind(to_millis(l.updated_at))
            .execute(p)
            .await
            .map(|r| r.rows_affected() == 1)
            .map_err(StoreError::from_write)
        })
    }

    /// `false` if `org` has no such limit.
    pub async fn delete_limit(&self, org: OrgId, id: Uuid) -> Result<bool> {
        on_backend!(self.writer(), |p| {
            sqlx::query("DELETE FROM rate_limits WHERE org_id = $1 AND id = $2")
                .bind(org.as_uuid())
                .bind(id)
                .execute(p)
                .await
                .map(|r| r.rows_affected() == 1)
                .map_err(StoreError::from_write)
        })
    }
}

/// Budgets.
impl Store {
    /// Budgets of `org`, oldest first, with their webhook secrets.
    pub async fn list_budgets(&self, org: OrgId) -> Result<Vec<BudgetRule>> {
        let rows: Vec<BudgetRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                budget_columns!(),
                " FROM budgets WHERE org_id = $1 ORDER BY id"
            ))
            .bind(org.as_uuid())
            .fetch_all(p)
            .await
        })?;
        rows.into_iter().map(BudgetRule::try_from).collect()
    }

    pub async fn budget(&self, org: OrgId, id: Uuid) -> Result<Option<BudgetRule>> {
        let row: Option<BudgetRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                budget_columns!(),
                " FROM budgets WHERE org_id = $1 AND id = $2"
            ))
            .bind(org.as_uuid())
            .bind(id)
            .fetch_optional(p)
            .await
        })?;
        row.map(BudgetRule::try_from).transpose()
    }

    pub async fn insert_budget(&self, b: &BudgetRule) -> Result<()> {
        on_backend!(self.writer(), |p| {
            sqlx::query(concat!(
                "INSERT INTO budgets (",
                budget_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
            ))
            .bind(b.id)
            .bind(b.org_id.as_uuid())
            .bind(b.scope.as_str())
            .bind(b.scope_id)
            .bind(b.name.as_deref())
            .bind(b.amount_micros)
            .bind(b.currency.as_str())
            .bind(b.period.as_str())
            .bind(b.policy.as_str())
            .bind(column(b.throttle_rpm))
            .bind(json(&b.thresholds))
            .bind(b.webhook_url.as_deref())
            .bind(b.webhook_secret.as_ref().map(Secret::expose))
            .bind(json(&b.alert_emails))
            .bind(to_millis(b.created_at))
            .bind(to_millis(b.updated_at))
            .execute(p)
            .await
            .map(|_| ())
            .map_err(StoreError::from_write)
        })
    }

    /// Writes every field of `b` but its scope and creation time (the webhook secret included);
    /// `false` if `b.org_id` has no such budget.
    pub async fn update_budget(&self, b: &BudgetRule) -> Result<bool> {
        on_backend!(self.writer(), |p| {
            sqlx::query(
                "UPDATE budgets SET name = $3, amount_micros = $4, currency = $5, period = $6, \
                 policy = $7, throttle_rpm = $8, thresholds = $9, webhook_url = $10, \
                 webhook_secret = $11, alert_emails = $12, updated_at = $13 \
                 WHERE org_id = $1 AND id = $2",
            )
            .bind(b.org_id.as_uuid())
            .bind(b.id)
            .bind(b.name.as_deref())
            .bind(b.amount_micros)
            .bind(b.currency.as_str())
            .bind(b.period.as_str())
            .bind(b.policy.as_str())
            .bind(column(b.throttle_rpm))
            .bind(json(&b.thresholds))
            .bind(b.webhook_url.as_deref())
            .bind(b.webhook_secret.as_ref().map(Secret::expose))
            .bind(json(&b.alert_emails))
            .bind(to_millis(b.updated_at))
            .execute(p)
            .await
            .map(|r| r.rows_affected() == 1)
            .map_err(StoreError::from_write)
        })
    }

    /// `false` if `org` has no such budget.
    pub async fn delete_budget(&self, org: OrgId, id: Uuid) -> Result<bool> {
        on_backend!(self.writer(), |p| {
            sqlx::query("DELETE FROM budgets WHERE org_id = $1 AND id = $2")
                .bind(org.as_uuid())
                .bind(id)
                .execute(p)
                .await
                .map(|r| r.rows_affected() == 1)
                .map_err(StoreError::from_write)
        })
    }
}

/// Scope objects.
impl Store {
    /// Whether `team` is a team of `org`.
    pub async fn team_exists(&self, org: OrgId, team: Uuid) -> Result<bool> {
        let found: Option<Uuid> = on_backend!(self.reader(), |p| {
            sqlx::query_scalar("SELECT id FROM teams WHERE org_id = $1 AND id = $2")
                .bind(org.as_uuid())
                .bind(team)
                .fetch_optional(p)
                .await
        })?;
        Ok(found.is_some())
    }
}

/// What the gateway reads.
impl Store {
    /// Everything enforced for `org`: its plan (resolved as in [`Store::org_plan`]), limits and
    /// budgets (with webhook secrets). Three queries.
    pub async fn org_policy(&self, org: OrgId, default_plan: Option<&str>) -> Result<OrgPolicy> {
        Ok(OrgPolicy {
            plan: self.org_plan(org, default_plan).await?,
            limits: self.list_limits(org).await?,
            budgets: self.list_budgets(org).await?,
        })
    }

    /// Spend in `currency` of one scope of `org` from the UTC day containing `since` on, in
    /// micro-units, from the daily rollups (so the day of `since` counts whole). For
    /// `ScopeType::Org`, `scope_id` is ignored and every row of the org counts.
    pub async fn spent_since(
        &self,
        org: OrgId,
        scope: ScopeType,
        scope_id: Uuid,
        since: DateTime<Utc>,
        currency: Currency,
    ) -> Result<i64> {
        macro_rules! spent {
            ($filter:literal) => {
                concat!(
                    "SELECT CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) FROM usage_daily \
                     WHERE org_id = $1 AND day >= $2 AND currency = $3",
                    $filter
                )
            };
        }
        let sql = match scope {
            ScopeType::Key => spent!(" AND key_id = $4"),
            ScopeType::User => spent!(" AND user_id = $4"),
            ScopeType::Team => spent!(" AND team_id = $4"),
            ScopeType::Org => spent!(" AND $4 = $4"),
        };
        let sum: i64 = on_backend!(self.reader(), |p| {
            sqlx::query_scalar(sql)
                .bind(org.as_uuid())
                .bind(day_of(since))
                .bind(currency.as_str())
                .bind(scope_id)
                .fetch_one(p)
                .await
        })?;
        Ok(sum)
    }

    /// Tokens (prompt + completion) used by `org` from the UTC day containing `since` on.
    pub async fn tokens_since(&self, org: OrgId, since: DateTime<Utc>) -> Result<i64> {
        let sum: i64 = on_backend!(self.reader(), |p| {
            sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS BIGINT) \
                 FROM usage_daily WHERE org_id = $1 AND day >= $2",
            )
            .bind(org.as_uuid())
            .bind(day_of(since))
            .fetch_one(p)
            .await
        })?;
        Ok(sum)
    }
}
