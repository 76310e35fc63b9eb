//! Plans: the catalogue every signed-in user may read, platform-admin edits, putting an
//! organization on a plan, and an organization's use of its monthly quota.

use aihub_core::governance::Plan;
use aihub_core::money::format_decimal_micros;
use aihub_core::{Currency, OrgId};
use aihub_service::governance::{CreatePlan, PlanRef, UpdatePlan};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch, post, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::present;
use crate::extract::{ApiJson, ApiPath, CurrentUser};
use crate::routes::views::PageView;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/plans", get(list))
        .route("/api/v1/admin/plans", post(create))
        .route("/api/v1/admin/plans/{plan_id}", patch(update))
        .route("/api/v1/admin/orgs/{org_id}/plan", put(assign))
        .route("/api/v1/orgs/{org_id}/quota", get(quota))
}

#[derive(Debug, Serialize)]
pub struct PlanView {
    pub id: Uuid,
    pub name: String,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub concurrency: Option<u64>,
    pub monthly_tokens: Option<u64>,
    pub monthly_spend: Option<String>,
    pub monthly_spend_micros: Option<i64>,
    pub currency: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Plan> for PlanView {
    fn from(p: &Plan) -> Self {
        Self {
            id: p.id,
            name: p.name.clone(),
            rpm: p.rpm,
            tpm: p.tpm,
            concurrency: p.concurrency,
            monthly_tokens: p.monthly_tokens,
            monthly_spend: p.monthly_spend_micros.map(format_decimal_micros),
            monthly_spend_micros: p.monthly_spend_micros,
            currency: p.currency.to_string(),
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

async fn list(
    State(state): State<AppState>,
    CurrentUser(_): CurrentUser,
) -> Result<Json<PageView<PlanView>>, ApiError> {
    let plans = state.services.governance.list_plans().await?;
    Ok(Json(PageView {
        data: plans.iter().map(PlanView::from).collect(),
        next_cursor: None,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    rpm: Option<i64>,
    tpm: Option<i64>,
    concurrency: Option<i64>,
    monthly_tokens: Option<i64>,
    monthly_spend: Option<String>,
    monthly_spend_micros: Option<i64>,
    currency: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<(StatusCode, Json<PlanView>), ApiError> {
    let plan = state
        .services
        .governance
        .create_plan(
            &actor,
            CreatePlan {
                name: body.name,
                rpm: body.rpm,
                tpm: body.tpm,
                concurrency: body.concurrency,
                monthly_tokens: body.monthly_tokens,
                monthly_spend: body.monthly_spend,
                monthly_spend_micros: body.monthly_spend_micros,
                currency: body.currency,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(PlanView::from(&plan))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    rpm: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    tpm: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    concurrency: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    monthly_tokens: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    monthly_spend: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    monthly_spend_micros: Option<Option<i64>>,
    currency: Option<String>,
}

async fn update(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(plan_id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<Json<PlanView>, ApiError> {
    let plan = state
        .services
        .governance
        .update_plan(
            &actor,
            plan_id,
            UpdatePlan {
                name: body.name,
                rpm: body.rpm,
                tpm: body.tpm,
                concurrency: body.concurrency,
                monthly_tokens: body.monthly_tokens,
                monthly_spend: body.monthly_spend,
                monthly_spend_micros: body.monthly_spend_micros,
                currency: body.currency,
            },
        )
        .await?;
    Ok(Json(PlanView::from(&plan)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    plan_id: Option<Uuid>,
    plan: Option<String>,
}

#[derive(Debug, Serialize)]
struct OrgPlanView {
    org_id: OrgId,
    plan: PlanView,
}

async fn assign(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(org_id): ApiPath<OrgId>,
    ApiJson(body): ApiJson<AssignBody>,
) -> Result<Json<OrgPlanView>, ApiError> {
    let plan = match (body.plan_id, body.plan) {
        (Some(id), None) => PlanRef::Id(id),
        (None, Some(name)) => PlanRef::Name(name),
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                "give either `plan_id` or `plan` (a plan name)",
            ));
        }
    };
    let plan = state
        .services
        .governance
        .set_org_plan(&actor, org_id, plan)
        .await?;
    Ok(Json(OrgPlanView {
        org_id,
        plan: PlanView::from(&plan),
    }))
}

#[derive(Debug, Serialize)]
struct QuotaView {
    /// `null`: the org is on no plan (no default plan is configured).
    plan: Option<PlanView>,
    period_start: DateTime<Utc>,
    period_end: Option<DateTime<Utc>>,
    tokens_used: i64,
    /// `null`: no token quota.
    tokens_limit: Option<u64>,
    currency: String,
    spend_used: String,
    spend_used_micros: i64,
    /// `null`: no spend quota.
    spend_limit: Option<String>,
    spend_limit_micros: Option<i64>,
}

async fn quota(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(org_id): ApiPath<OrgId>,
) -> Result<Json<QuotaView>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let q = state.services.governance.quota(&scope).await?;
    let plan = q.plan.as_ref();
    let spend_limit_micros = plan.and_then(|p| p.monthly_spend_micros);
    Ok(Json(QuotaView {
        period_start: q.period_start,
        period_end: q.period_end,
        tokens_used: q.tokens_used,
        tokens_limit: plan.and_then(|p| p.monthly_tokens),
        currency: plan.map_or(Currency::USD, |p| p.currency).to_string(),
        spend_used: format_decimal_micros(q.spend_used_micros),
        spend_used_micros: q.spend_used_micros,
        spend_limit: spend_limit_micros.map(format_decimal_micros),
        spend_limit_micros,
        plan: plan.map(PlanView::from),
    }))
}
