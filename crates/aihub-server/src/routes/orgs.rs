//! Organizations the caller belongs to.

use aihub_core::OrgId;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use crate::error::ApiError;
use crate::extract::{ApiPath, CurrentUser};
use crate::routes::views::{OrgView, PageView};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs", get(list))
        .route("/api/v1/orgs/{org_id}", get(get_one))
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

async fn get_one(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(org_id): ApiPath<OrgId>,
) -> Result<Json<OrgView>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    scope.require(aihub_service::policy::Action::OrgRead)?;
    Ok(Json(OrgView::new(scope.org(), scope.role())))
}
