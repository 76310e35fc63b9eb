//! Teams of an organization and their members.

use aihub_core::{OrgId, TeamId, UserId};
use aihub_service::page::clamp_limit;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, CurrentUser};
use crate::routes::views::{PageView, TeamMemberView, TeamView};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs/{org_id}/teams", get(list).post(create))
        .route(
            "/api/v1/orgs/{org_id}/teams/{team_id}",
            get(get_one).patch(update).delete(remove),
        )
        .route(
            "/api/v1/orgs/{org_id}/teams/{team_id}/members",
            get(members).post(add_member),
        )
        .route(
            "/api/v1/orgs/{org_id}/teams/{team_id}/members/{user_id}",
            delete(remove_member),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<u32>,
    cursor: Option<TeamId>,
}

async fn list(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(org_id): ApiPath<OrgId>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<PageView<TeamView>>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let page = state
        .services
        .teams
        .list(&scope, q.cursor, clamp_limit(q.limit))
        .await?;
    Ok(Json(PageView {
        data: page.data.iter().map(TeamView::from).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameBody {
    name: String,
}

async fn create(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(org_id): ApiPath<OrgId>,
    ApiJson(body): ApiJson<NameBody>,
) -> Result<Response, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let team = state.services.teams.create(&scope, &body.name).await?;
    Ok((StatusCode::CREATED, Json(TeamView::from(&team))).into_response())
}

async fn get_one(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath((org_id, team_id)): ApiPath<(OrgId, TeamId)>,
) -> Result<Json<TeamView>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let team = state.services.teams.get(&scope, team_id).await?;
    Ok(Json(TeamView::from(&team)))
}

async fn update(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath((org_id, team_id)): ApiPath<(OrgId, TeamId)>,
    ApiJson(body): ApiJson<NameBody>,
) -> Result<Json<TeamView>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let team = state
        .services
        .teams
        .rename(&scope, team_id, &body.name)
        .await?;
    Ok(Json(TeamView::from(&team)))
}

/// Deletes the team and revokes its keys.
async fn remove(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath((org_id, team_id)): ApiPath<(OrgId, TeamId)>,
) -> Result<StatusCode, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    state.services.teams.delete(&scope, team_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MembersQuery {
    limit: Option<u32>,
    cursor: Option<UserId>,
}

async fn members(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath((org_id, team_id)): ApiPath<(OrgId, TeamId)>,
    ApiQuery(q): ApiQuery<MembersQuery>,
) -> Result<Json<PageView<TeamMemberView>>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let page = state
        .services
        .teams
        .members(&scope, team_id, q.cursor, clamp_limit(q.limit))
        .await?;
    Ok(Json(PageView {
        data: page.data.iter().map(TeamMemberView::from).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMemberBody {
    user_id: UserId,
}

async fn add_member(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath((org_id, team_id)): ApiPath<(OrgId, TeamId)>,
    ApiJson(body): ApiJson<AddMemberBody>,
) -> Result<Response, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let member = state
        .services
        .teams
        .add_member(&scope, team_id, body.user_id)
        .await?;
    Ok((StatusCode::CREATED, Json(TeamMemberView::from(&member))).into_response())
}

async fn remove_member(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath((org_id, team_id, user_id)): ApiPath<(OrgId, TeamId, UserId)>,
) -> Result<StatusCode, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    state
        .services
        .teams
        .remove_member(&scope, team_id, user_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
