//! Rate limits of an organization: requests per minute, tokens per minute and concurrent
//! requests on a key, a member, a team or the whole organization, for one model or all.

use aihub_core::OrgId;
use aihub_core::governance::LimitRule;
use aihub_service::governance::{CreateLimit, UpdateLimit};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::extract::present;
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, CurrentUser};
use crate::routes::views::PageView;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs/{org_id}/limits", get(list).post(create))
        .route(
            "/api/v1/orgs/{org_id}/limits/{limit_id}",
            get(get_one).patch(update).delete(remove),
        )
}

#[derive(Debug, Serialize)]
pub struct LimitView {
    pub id: Uuid,
    pub org_id: OrgId,
    pub scope_type: &'static str,
    pub scope_id: Uuid,
    /// `null`: every model.
    pub model: Option<String>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub concurrency: Option<u64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&LimitRule> for LimitView {
    fn from(l: &LimitRule) -> Self {
        Self {
            id: l.id,
            org_id: l.org_id,
            scope_type: l.scope.as_str(),
            scope_id: l.scope_id,
            model: l.model.clone(),
            rpm: l.rpm,
            tpm: l.tpm,
            concurrency: l.concurrency,
            created_at: l.created_at,
            updated_at: l.updated_at,
        }
    }
}

async fn list(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(org_id): ApiPath<OrgId>,
) -> Result<Json<PageView<LimitView>>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let limits = state.services.governance.list_limits(&scope).await?;
    Ok(Json(PageView {
        data: limits.iter().map(LimitView::from).collect(),
        next_cursor: None,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    scope_type: String,
    scope_id: Option<Uuid>,
    model: Option<String>,
    rpm: Option<i64>,
    tpm: Option<i64>,
    concurrency: Option<i64>,
}

async fn create(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(org_id): ApiPath<OrgId>,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<(StatusCode, Json<LimitView>), ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let limit = state
        .services
        .governance
        .create_limit(
            &scope,
            CreateLimit {
                scope_type: body.scope_type,
                scope_id: body.scope_id,
                model: body.model,
                rpm: body.rpm,
                tpm: body.tpm,
                concurrency: body.concurrency,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(LimitView::from(&limit))))
}

async fn get_one(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath((org_id, limit_id)): ApiPath<(OrgId, Uuid)>,
) -> Result<Json<LimitView>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let limit = state
        .services
        .governance
        .get_limit(&scope, limit_id)
        .await?;
    Ok(Json(LimitView::from(&limit)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    #[serde(default, deserialize_with = "present")]
    model: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    rpm: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    tpm: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    concurrency: Option<Option<i64>>,
}

async fn update(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath((org_id, limit_id)): ApiPath<(OrgId, Uuid)>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<Json<LimitView>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let limit = state
        .services
        .governance
        .update_limit(
            &scope,
            limit_id,
            UpdateLimit {
                model: body.model,
                rpm: body.rpm,
                tpm: body.tpm,
                concurrency: body.concurrency,
            },
        )
        .await?;
    Ok(Json(LimitView::from(&limit)))
}

async fn remove(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath((org_id, limit_id)): ApiPath<(OrgId, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    state
        .services
        .governance
        .delete_limit(&scope, limit_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
