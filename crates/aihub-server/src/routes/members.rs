//! Members of an organization: list, read, change role and model list, remove, leave.

use aihub_core::{OrgId, Role, UserId};
use aihub_service::orgs::UpdateMember;
use aihub_service::page::clamp_limit;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, CurrentUser, present};
use crate::routes::views::{MemberView, PageView};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs/{org_id}/members", get(list))
        .route(
            "/api/v1/orgs/{org_id}/members/{user_id}",
            get(get_one).patch(update).delete(remove),
        )
        .route("/api/v1/orgs/{org_id}/leave", post(leave))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<u32>,
    cursor: Option<UserId>,
}

async fn list(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(org_id): ApiPath<OrgId>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<PageView<MemberView>>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let page = state
        .services
        .orgs
        .members(&scope, q.cursor, clamp_limit(q.limit))
        .await?;
    Ok(Json(PageView {
        data: page.data.iter().map(MemberView::from).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

async fn get_one(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath((org_id, user_id)): ApiPath<(OrgId, UserId)>,
) -> Result<Json<MemberView>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let member = state.services.orgs.member(&scope, user_id).await?;
    Ok(Json(MemberView::from(&member)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    role: Option<Role>,
    #[serde(default, deserialize_with = "present")]
    models: Option<Option<Vec<String>>>,
}

async fn update(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath((org_id, user_id)): ApiPath<(OrgId, UserId)>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<Json<MemberView>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let member = state
        .services
        .orgs
        .update_member(
            &scope,
            user_id,
            UpdateMember {
                role: body.role,
                models: body.models,
            },
        )
        .await?;
    Ok(Json(MemberView::from(&member)))
}

async fn remove(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath((org_id, user_id)): ApiPath<(OrgId, UserId)>,
) -> Result<StatusCode, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    state.services.orgs.remove_member(&scope, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn leave(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(org_id): ApiPath<OrgId>,
) -> Result<StatusCode, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    state.services.orgs.leave(&scope).await?;
    Ok(StatusCode::NO_CONTENT)
}
