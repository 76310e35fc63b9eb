//! Budget alerts: an append-only record of each threshold a budget crossed within one period,
//! and how its webhook and e-mails were delivered. The unique (budget, period start, threshold)
//! key makes the insert the once-per-period decision, across every gateway instance.

use aihub_core::governance::{Period, ScopeType};
use aihub_core::time::{from_millis, to_millis};
use aihub_core::{Currency, OrgId};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Result, Store, StoreError, on_backend};

/// Where one channel (webhook or e-mail) of an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not delivered yet; attempts may be under way.
    Pending,
    Delivered,
    /// Every attempt failed, or the receiver refused it for good.
    Failed,
    /// Nothing to deliver on this channel (no webhook, no recipients, or e-mail not configured).
    None,
}

impl DeliveryStatus {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::None => "none",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed, Self::None]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// The delivery state of one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// A short description of the last failure; never contains a secret.
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl Delivery {
    /// A channel with nothing attempted yet.
    #[must_use]
    pub const fn initial(status: DeliveryStatus) -> Self {
        Self {
            status,
            attempts: 0,
            last_error: None,
            delivered_at: None,
        }
    }
}

/// Which delivery channel of an alert an update is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertChannel {
    Webhook,
    Email,
}

/// One threshold crossing of one budget in one period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetAlert {
    pub id: Uuid,
    pub org_id: OrgId,
    pub budget_id: Uuid,
    /// The budget's name when the alert fired.
    pub budget_name: Option<String>,
    pub scope: ScopeType,
    pub scope_id: Uuid,
    pub period: Period,
    pub period_start: DateTime<Utc>,
    pub threshold_pct: u32,
    /// Spend in the period when the crossing was seen, in micro-units of `currency`.
    pub spent_micros: i64,
    pub amount_micros: i64,
    pub currency: Currency,
    pub created_at: DateTime<Utc>,
    pub webhook: Delivery,
    pub email: Delivery,
}

/// An alert to record; its channels start with nothing attempted.
pub type NewBudgetAlert = BudgetAlert;

#[derive(sqlx::FromRow)]
struct AlertRow {
    id: Uuid,
    org_id: Uuid,
    budget_id: Uuid,
    budget_name: Option<String>,
    scope_type: String,
    scope_id: Uuid,
    period: String,
    period_start: i64,
    threshold_pct: i64,
    spent_micros: i64,
    amount_micros: i64,
    currency: String,
    created_at: i64,
    webhook_status: String,
    webhook_attempts: i64,
    webhook_last_error: Option<String>,
    webhook_delivered_at: Option<i64>,
    email_status: String,
    email_attempts: i64,
    email_last_error: Option<String>,
    email_delivered_at: Option<i64>,
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("budget_alerts.{what}: {value:?}"))
}

fn delivery(
    status: &str,
    attempts: i64,
    last_error: Option<String>,
    delivered_at: Option<i64>,
) -> Result<Delivery> {
    Ok(Delivery {
        status: DeliveryStatus::parse(status).ok_or_else(|| corrupt("status", status))?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        last_error,
        delivered_at: delivered_at.map(from_millis),
    })
}

impl TryFrom<AlertRow> for BudgetAlert {
    type Error = StoreError;

    fn try_from(r: AlertRow) -> Result<Self> {
        Ok(BudgetAlert {
            id: r.id,
            org_id: OrgId::from_uuid(r.org_id),
            budget_id: r.budget_id,
            budget_name: r.budget_name,
            scope: ScopeType::parse(&r.scope_type)
                .ok_or_else(|| corrupt("scope_type", &r.scope_type))?,
            scope_id: r.scope_id,
            period: Period::parse(&r.period).ok_or_else(|| corrupt("period", &r.period))?,
            period_start: from_millis(r.period_start),
            threshold_pct: u32::try_from(r.threshold_pct)
                .map_err(|_| corrupt("threshold_pct", &r.threshold_pct.to_string()))?,
            spent_micros: r.spent_micros,
            amount_micros: r.amount_micros,
            currency: Currency::parse(&r.currency).map_err(|_| corrupt("currency", &r.currency))?,
            created_at: from_millis(r.created_at),
            webhook: delivery(
                &r.webhook_status,
                r.webhook_attempts,
                r.webhook_last_error,
                r.webhook_delivered_at,
            )?,
            email: delivery(
                &r.email_status,
                r.email_attempts,
                r.email_last_error,
                r.email_delivered_at,
            )?,
        })
    }
}

macro_rules! alert_columns {
    () => {
        "id, org_id, budget_id, budget_name, scope_type, scope_id, period, period_start, \
         threshold_pct, spent_micros, amount_micros, currency, created_at, webhook_status, \
         webhook_attempts, webhook_last_error, webhook_delivered_at, email_status, \
         email_attempts, email_last_error, email_delivered_at"
    };
}

impl Store {
    /// Records an alert unless one exists for the same budget, period start and threshold.
    /// Returns whether this call inserted it; a duplicate is `false`, not an error.
    pub async fn insert_budget_alert(&self, a: &NewBudgetAlert) -> Result<bool> {
        let inserted = on_backend!(self.writer(), |p| {
            sqlx::query(concat!(
                "INSERT INTO budget_alerts (",
                alert_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                 $16, $17, $18, $19, $20, $21) \
                 ON CONFLICT (budget_id, period_start, threshold_pct) DO NOTHING"
            ))
            .bind(a.id)
            .bind(a.org_id.as_uuid())
            .bind(a.budget_id)
            .bind(a.budget_name.as_deref())
            .bind(a.scope.as_str())
            .bind(a.scope_id)
            .bind(a.period.as_str())
            .bind(to_millis(a.period_start))
            .bind(i64::from(a.threshold_pct))
            .bind(a.spent_micros)
            .bind(a.amount_micros)
            .bind(a.currency.to_string())
            .bind(to_millis(a.created_at))
            .bind(a.webhook.status.as_str())
            .bind(i64::from(a.webhook.attempts))
            .bind(a.webhook.last_error.as_deref())
            .bind(a.webhook.delivered_at.map(to_millis))
            .bind(a.email.status.as_str())
            .bind(i64::from(a.email.attempts))
            .bind(a.email.last_error.as_deref())
            .bind(a.email.delivered_at.map(to_millis))
            .execute(p)
            .await
            .map(|r| r.rows_affected() == 1)
            .map_err(StoreError::from_write)
        })?;
        Ok(inserted)
    }

    /// Records the delivery state of one channel of an alert. Returns whether the alert exists.
    pub async fn update_alert_delivery(
        &self,
        id: Uuid,
        channel: AlertChannel,
        d: &Delivery,
    ) -> Result<bool> {
        let sql = match channel {
            AlertChannel::Webhook => {
                "UPDATE budget_alerts SET webhook_status = $2, webhook_attempts = $3, \
                 webhook_last_error = $4, webhook_delivered_at = $5 WHERE id = $1"
            }
            AlertChannel::Email => {
                "UPDATE budget_alerts SET email_status = $2, email_attempts = $3, \
                 email_last_error = $4, email_delivered_at = $5 WHERE id = $1"
            }
        };
        let updated = on_backend!(self.writer(), |p| {
            sqlx::query(sql)
                .bind(id)
                .bind(d.status.as_str())
                .bind(i64::from(d.attempts))
                .bind(d.last_error.as_deref())
                .bind(d.delivered_at.map(to_millis))
                .execute(p)
                .await
                .map(|r| r.rows_affected() == 1)
        })?;
        Ok(updated)
    }

    /// Alerts of `org` (optionally of one budget), newest first, after the cursor `before`.
    pub async fn list_budget_alerts(
        &self,
        org: OrgId,
        budget_id: Option<Uuid>,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<BudgetAlert>> {
        let rows: Vec<AlertRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                alert_columns!(),
                " FROM budget_alerts WHERE org_id = $1 AND ($2 IS NULL OR budget_id = $2) \
                 AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
            ))
            .bind(org.as_uuid())
            .bind(budget_id)
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await
        })?;
        rows.into_iter().map(BudgetAlert::try_from).collect()
    }

    /// One alert of `org`. An alert of another organization is simply not found.
    pub async fn get_budget_alert(&self, org: OrgId, id: Uuid) -> Result<Option<BudgetAlert>> {
        let row: Option<AlertRow> = on_backend!(self.reader(), |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                alert_columns!(),
                " FROM budget_alerts WHERE org_id = $1 AND id = $2"
            ))
            .bind(org.as_uuid())
            .bind(id)
            .fetch_optional(p)
            .await
        })?;
        row.map(BudgetAlert::try_from).transpose()
    }
}
