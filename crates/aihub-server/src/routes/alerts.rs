//! Budget alerts of an organization: each threshold a budget crossed in a period, and how its
//! webhook and e-mails were delivered. Read-only; alerts are created by the gateway's budget
//! accounting.

use aihub_core::OrgId;
use aihub_core::money::format_decimal_micros;
use aihub_service::page::clamp_limit;
use aihub_store::{BudgetAlert, Delivery};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery, CurrentUser};
use crate::routes::views::PageView;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs/{org_id}/alerts", get(list))
        .route("/api/v1/orgs/{org_id}/alerts/{alert_id}", get(get_one))
}

#[derive(Debug, Serialize)]
struct DeliveryView {
    /// `pending`, `delivered`, `failed` or `none` (nothing to deliver on this channel).
    status: &'static str,
    attempts: u32,
    last_error: Option<String>,
    delivered_at: Option<DateTime<Utc>>,
}

impl From<&Delivery> for DeliveryView {
    fn from(d: &Delivery) -> Self {
        Self {
            status: d.status.as_str(),
            attempts: d.attempts,
            last_error: d.last_error.clone(),
            delivered_at: d.delivered_at,
        }
    }
}

#[derive(Debug, Serialize)]
struct AlertView {
    id: Uuid,
    #[serde(rename = "type")]
    kind: &'static str,
    org_id: OrgId,
    budget_id: Uuid,
    budget_name: Option<String>,
    scope_type: &'static str,
    scope_id: Uuid,
    period: &'static str,
    period_start: DateTime<Utc>,
    period_end: Option<DateTime<Utc>>,
    threshold_percent: u32,
    amount: String,
    amount_micros: i64,
    spent: String,
    spent_micros: i64,
    currency: String,
    created_at: DateTime<Utc>,
    webhook: DeliveryView,
    email: DeliveryView,
}

impl From<&BudgetAlert> for AlertView {
    fn from(a: &BudgetAlert) -> Self {
        Self {
            id: a.id,
            kind: aihub_service::notify::THRESHOLD_CROSSED,
            org_id: a.org_id,
            budget_id: a.budget_id,
            budget_name: a.budget_name.clone(),
            scope_type: a.scope.as_str(),
            scope_id: a.scope_id,
            period: a.period.as_str(),
            period_start: a.period_start,
            period_end: a.period.end(a.period_start),
            threshold_percent: a.threshold_pct,
            amount: format_decimal_micros(a.amount_micros),
            amount_micros: a.amount_micros,
            spent: format_decimal_micros(a.spent_micros),
            spent_micros: a.spent_micros,
            currency: a.currency.to_string(),
            created_at: a.created_at,
            webhook: DeliveryView::from(&a.webhook),
            email: DeliveryView::from(&a.email),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    budget_id: Option<Uuid>,
    limit: Option<u32>,
    cursor: Option<Uuid>,
}

async fn list(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(org_id): ApiPath<OrgId>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<PageView<AlertView>>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let page = state
        .services
        .alerts
        .list(&scope, q.budget_id, q.cursor, clamp_limit(q.limit))
        .await?;
    Ok(Json(PageView {
        data: page.data.iter().map(AlertView::from).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

async fn get_one(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath((org_id, alert_id)): ApiPath<(OrgId, Uuid)>,
) -> Result<Json<AlertView>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let alert = state.services.alerts.get(&scope, alert_id).await?;
    Ok(Json(AlertView::from(&alert)))
}
