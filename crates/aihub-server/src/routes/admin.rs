//! Platform administration (operators only): users and organizations. The catalog (providers,
//! models, prices) is in `catalog.rs`; plans in `plans.rs`; the platform audit chain in
//! `audit.rs`.

use aihub_core::{OrgId, UserId};
use aihub_service::page::clamp_limit;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery, CurrentUser};
use crate::routes::views::{OrgView, PageView, UserView};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/users", get(list_users))
        .route("/api/v1/admin/orgs", get(list_orgs))
        .route("/api/v1/admin/users/{user_id}/disable", post(disable))
        .route("/api/v1/admin/users/{user_id}/enable", post(enable))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<u32>,
    cursor: Option<UserId>,
}

async fn list_users(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<PageView<UserView>>, ApiError> {
    let page = state
        .services
        .admin
        .list_users(&actor, q.cursor, clamp_limit(q.limit))
        .await?;
    Ok(Json(PageView {
        data: page.data.iter().map(UserView::from).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrgListQuery {
    limit: Option<u32>,
    cursor: Option<OrgId>,
}

/// Every organization, for operators (each can then be read and managed through
/// `/api/v1/orgs/{org_id}/…` like an Owner would).
async fn list_orgs(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiQuery(q): ApiQuery<OrgListQuery>,
) -> Result<Json<PageView<OrgView>>, ApiError> {
    let page = state
        .services
        .admin
        .list_orgs(&actor, q.cursor, clamp_limit(q.limit))
        .await?;
    Ok(Json(PageView {
        data: page.data.iter().map(|o| OrgView::new(o, None)).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

/// Disables a user: their sessions end and their keys stop working at once.
async fn disable(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(user_id): ApiPath<UserId>,
) -> Result<Json<UserView>, ApiError> {
    let user = state
        .services
        .admin
        .set_user_disabled(&actor, user_id, true)
        .await?;
    Ok(Json(UserView::from(&user)))
}

async fn enable(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(user_id): ApiPath<UserId>,
) -> Result<Json<UserView>, ApiError> {
    let user = state
        .services
        .admin
        .set_user_disabled(&actor, user_id, false)
        .await?;
    Ok(Json(UserView::from(&user)))
}
