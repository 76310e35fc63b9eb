//! Budgets of an organization: how much a key, a member, a team or the organization may spend
//! per period, and what has been spent so far. The webhook signing secret is in the body of
//! create, rotate-secret, and an edit that adds the first webhook — never anywhere else.

use aihub_core::OrgId;
use aihub_core::governance::BudgetRule;
use aihub_core::money::format_decimal_micros;
use aihub_core::time::now;
use aihub_service::governance::{BudgetWithSecret, CreateBudget, UpdateBudget};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::present;
use crate::extract::{ApiJson, ApiPath, CurrentUser};
use crate::routes::views::PageView;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs/{org_id}/budgets", get(list).post(create))
        .route(
            "/api/v1/orgs/{org_id}/budgets/{budget_id}",
            get(get_one).patch(update).delete(remove),
        )
        .route(
            "/api/v1/orgs/{org_id}/budgets/{budget_id}/rotate-secret",
            post(rotate_secret),
        )
}

/// Spend counted against `b` in its current period, and spend reserved by requests in flight,
/// in micro-units of the budget's currency. The one place budget status is computed.
async fn live_status(state: &AppState, b: &BudgetRule) -> Result<(i64, i64), ApiError> {
    let s = state.governor.budget_status(b).await?;
    Ok((s.spent_micros, s.reserved_micros))
}

#[derive(Debug, Serialize)]
pub struct BudgetView {
    pub id: Uuid,
    pub org_id: OrgId,
    pub scope_type: &'static str,
    pub scope_id: Uuid,
    pub name: Option<String>,
    /// Decimal in whole units, e.g. `"12.5"`.
    pub amount: String,
    pub amount_micros: i64,
    pub currency: String,
    pub period: &'static str,
    pub policy: &'static str,
    pub throttle_rpm: Option<u64>,
    pub thresholds: Vec<u32>,
    pub webhook_url: Option<String>,
    pub has_webhook_secret: bool,
    pub alert_emails: Vec<String>,
    pub period_start: DateTime<Utc>,
    /// `null` for `total` budgets, which never reset.
    pub period_end: Option<DateTime<Utc>>,
    pub spent: String,
    pub spent_micros: i64,
    pub reserved: String,
    pub reserved_micros: i64,
    /// Never below zero.
    pub remaining: String,
    pub remaining_micros: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

async fn view(state: &AppState, b: &BudgetRule) -> Result<BudgetView, ApiError> {
    let (spent, reserved) = live_status(state, b).await?;
    let remaining = b
        .amount_micros
        .saturating_sub(spent)
        .saturating_sub(reserved)
        .max(0);
    let t = now();
    Ok(BudgetView {
        id: b.id,
        org_id: b.org_id,
        scope_type: b.scope.as_str(),
        scope_id: b.scope_id,
        name: b.name.clone(),
        amount: format_decimal_micros(b.amount_micros),
        amount_micros: b.amount_micros,
        currency: b.currency.to_string(),
        period: b.period.as_str(),
        policy: b.policy.as_str(),
        throttle_rpm: b.throttle_rpm,
        thresholds: b.thresholds.clone(),
        webhook_url: b.webhook_url.clone(),
        has_webhook_secret: b.webhook_secret.is_some(),
        alert_emails: b.alert_emails.clone(),
        period_start: b.period.start(t),
        period_end: b.period.end(t),
        spent: format_decimal_micros(spent),
        spent_micros: spent,
        reserved: format_decimal_micros(reserved),
        reserved_micros: reserved,
        remaining: format_decimal_micros(remaining),
        remaining_micros: remaining,
        created_at: b.created_at,
        updated_at: b.updated_at,
    })
}

/// A budget and, once, its new webhook signing secret.
#[derive(Debug, Serialize)]
pub struct BudgetWithSecretView {
    #[serde(flatten)]
    pub budget: BudgetView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

async fn with_secret(
    state: &AppState,
    b: &BudgetWithSecret,
) -> Result<BudgetWithSecretView, ApiError> {
    Ok(BudgetWithSecretView {
        budget: view(state, &b.budget).await?,
        webhook_secret: b
            .webhook_secret
            .as_ref()
            .map(|s| s.expose_secret().to_owned()),
    })
}

async fn list(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(org_id): ApiPath<OrgId>,
) -> Result<Json<PageView<BudgetView>>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let budgets = state.services.governance.list_budgets(&scope).await?;
    let mut data = Vec::with_capacity(budgets.len());
    for b in &budgets {
        data.push(view(&state, b).await?);
    }
    Ok(Json(PageView {
        data,
        next_cursor: None,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    scope_type: String,
    scope_id: Option<Uuid>,
    name: Option<String>,
    amount: Option<String>,
    amount_micros: Option<i64>,
    currency: Option<String>,
    period: Option<String>,
    policy: Option<String>,
    throttle_rpm: Option<i64>,
    thresholds: Option<Vec<i64>>,
    webhook_url: Option<String>,
    alert_emails: Option<Vec<String>>,
}

async fn create(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(org_id): ApiPath<OrgId>,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<(StatusCode, Json<BudgetWithSecretView>), ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let created = state
        .services
        .governance
        .create_budget(
            &scope,
            CreateBudget {
                scope_type: body.scope_type,
                scope_id: body.scope_id,
                name: body.name,
                amount: body.amount,
                amount_micros: body.amount_micros,
                currency: body.currency,
                period: body.period,
                policy: body.policy,
                throttle_rpm: body.throttle_rpm,
                thresholds: body.thresholds,
                webhook_url: body.webhook_url,
                alert_emails: body.alert_emails,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(with_secret(&state, &created).await?),
    ))
}

async fn get_one(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath((org_id, budget_id)): ApiPath<(OrgId, Uuid)>,
) -> Result<Json<BudgetView>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let b = state
        .services
        .governance
        .get_budget(&scope, budget_id)
        .await?;
    Ok(Json(view(&state, &b).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
    amount: Option<String>,
    amount_micros: Option<i64>,
    currency: Option<String>,
    period: Option<String>,
    policy: Option<String>,
    #[serde(default, deserialize_with = "present")]
    throttle_rpm: Option<Option<i64>>,
    thresholds: Option<Vec<i64>>,
    #[serde(default, deserialize_with = "present")]
    webhook_url: Option<Option<String>>,
    alert_emails: Option<Vec<String>>,
}

async fn update(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath((org_id, budget_id)): ApiPath<(OrgId, Uuid)>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<Json<BudgetWithSecretView>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let updated = state
        .services
        .governance
        .update_budget(
            &scope,
            budget_id,
            UpdateBudget {
                name: body.name,
                amount: body.amount,
                amount_micros: body.amount_micros,
                currency: body.currency,
                period: body.period,
                policy: body.policy,
                throttle_rpm: body.throttle_rpm,
                thresholds: body.thresholds,
                webhook_url: body.webhook_url,
                alert_emails: body.alert_emails,
            },
        )
        .await?;
    Ok(Json(with_secret(&state, &updated).await?))
}

async fn rotate_secret(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath((org_id, budget_id)): ApiPath<(OrgId, Uuid)>,
) -> Result<Json<BudgetWithSecretView>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let rotated = state
        .services
        .governance
        .rotate_webhook_secret(&scope, budget_id)
        .await?;
    Ok(Json(with_secret(&state, &rotated).await?))
}

async fn remove(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath((org_id, budget_id)): ApiPath<(OrgId, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    state
        .services
        .governance
        .delete_budget(&scope, budget_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
