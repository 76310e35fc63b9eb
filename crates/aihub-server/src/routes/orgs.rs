//! Organizations: the caller's list, creating one, renaming, deleting and handing it over.

use aihub_core::{OrgId, UserId};
use aihub_service::orgs::TenancyError;
use aihub_service::policy::Action;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, CurrentUser};
use crate::routes::views::{MemberView, OrgView, PageView};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs", get(list).post(create))
        .route(
            "/api/v1/orgs/{org_id}",
            get(get_one).patch(update).delete(remove),
        )
        .route("/api/v1/orgs/{org_id}/transfer", post(transfer))
}

/// Tenancy refusals the shared error vocabulary has no status for: 400 and 410.
impl From<TenancyError> for ApiError {
    fn from(e: TenancyError) -> Self {
        match e {
            TenancyError::BadRequest { code, message } => {
                ApiError::new(StatusCode::BAD_REQUEST, code, message)
            }
            TenancyError::Gone { code, message } => ApiError::new(StatusCode::GONE, code, message),
            TenancyError::Service(e) => e.into(),
        }
    }
}

async fn list(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
) -> Result<Json<PageView<OrgView>>, ApiError> {
    let orgs = state.services.orgs.list(&actor).await?;
    Ok(Json(PageView {
        data: orgs.iter().map(OrgView::from).collect(),
        next_cursor: None,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameBody {
    name: String,
}

/// Creates an organization; the caller is its Owner.
async fn create(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiJson(body): ApiJson<NameBody>,
) -> Result<Response, ApiError> {
    let created = state.services.orgs.create(&actor, &body.name).await?;
    Ok((StatusCode::CREATED, Json(OrgView::from(&created))).into_response())
}

async fn get_one(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(org_id): ApiPath<OrgId>,
) -> Result<Json<OrgView>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    scope.require(Action::OrgRead)?;
    Ok(Json(OrgView::new(scope.org(), scope.role())))
}

async fn update(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(org_id): ApiPath<OrgId>,
    ApiJson(body): ApiJson<NameBody>,
) -> Result<Json<OrgView>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let org = state.services.orgs.rename(&scope, &body.name).await?;
    Ok(Json(OrgView::new(&org, scope.role())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteBody {
    /// The organization's exact name.
    confirm: String,
}

async fn remove(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(org_id): ApiPath<OrgId>,
    ApiJson(body): ApiJson<DeleteBody>,
) -> Result<StatusCode, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    state.services.orgs.delete(&scope, &body.confirm).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    user_id: UserId,
}

/// Makes another member an Owner; the caller becomes an Admin. Answers the new Owner.
async fn transfer(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(org_id): ApiPath<OrgId>,
    ApiJson(body): ApiJson<TransferBody>,
) -> Result<Json<MemberView>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let owner = state.services.orgs.transfer(&scope, body.user_id).await?;
    Ok(Json(MemberView::from(&owner)))
}
