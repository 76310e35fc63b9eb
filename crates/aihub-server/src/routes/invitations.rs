//! Invitations: an organization's (send, list, resend, revoke) and the signed-in user's own
//! (list, accept, decline). The token is never in a response; it travels in the e-mail.

use aihub_core::time::now;
use aihub_core::{OrgId, Role};
use aihub_service::invitations::{CreateInvitation, Sent};
use aihub_service::page::clamp_limit;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, CurrentUser};
use crate::routes::views::{InvitationSentView, InvitationView, OrgView, PageView};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs/{org_id}/invitations", get(list).post(create))
        .route(
            "/api/v1/orgs/{org_id}/invitations/{invitation_id}",
            delete(revoke),
        )
        .route(
            "/api/v1/orgs/{org_id}/invitations/{invitation_id}/resend",
            post(resend),
        )
        .route("/api/v1/invitations", get(mine))
        .route("/api/v1/invitations/accept", post(accept))
        .route("/api/v1/invitations/decline", post(decline))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<u32>,
    cursor: Option<Uuid>,
}

async fn list(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(org_id): ApiPath<OrgId>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<PageView<InvitationView>>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let page = state
        .services
        .invitations
        .list(&scope, q.cursor, clamp_limit(q.limit))
        .await?;
    let t = now();
    Ok(Json(PageView {
        data: page.data.iter().map(|i| InvitationView::at(i, t)).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    email: String,
    role: Role,
}

fn sent(s: &Sent) -> InvitationSentView {
    InvitationSentView {
        invitation: InvitationView::at(&s.invitation, now()),
        email_sent: s.email_sent,
    }
}

async fn create(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(org_id): ApiPath<OrgId>,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let created = state
        .services
        .invitations
        .create(
            &scope,
            CreateInvitation {
                email: body.email,
                role: body.role,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(sent(&created))).into_response())
}

async fn revoke(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath((org_id, invitation_id)): ApiPath<(OrgId, Uuid)>,
) -> Result<Json<InvitationView>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let revoked = state
        .services
        .invitations
        .revoke(&scope, invitation_id)
        .await?;
    Ok(Json(InvitationView::at(&revoked, now())))
}

async fn resend(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath((org_id, invitation_id)): ApiPath<(OrgId, Uuid)>,
) -> Result<Json<InvitationSentView>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let resent = state
        .services
        .invitations
        .resend(&scope, invitation_id)
        .await?;
    Ok(Json(sent(&resent)))
}

/// Pending invitations addressed to the signed-in user.
async fn mine(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
) -> Result<Json<PageView<InvitationView>>, ApiError> {
    let pending = state.services.invitations.mine(&actor).await?;
    let t = now();
    Ok(Json(PageView {
        data: pending.iter().map(|i| InvitationView::at(i, t)).collect(),
        next_cursor: None,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    token: String,
}

#[derive(Serialize)]
struct AcceptedView {
    invitation: InvitationView,
    /// The organization joined, with the caller's role in it.
    org: OrgView,
}

async fn accept(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiJson(body): ApiJson<TokenBody>,
) -> Result<Json<AcceptedView>, ApiError> {
    let (invitation, membership) = state
        .services
        .invitations
        .accept(&actor, &body.token)
        .await?;
    Ok(Json(AcceptedView {
        invitation: InvitationView::at(&invitation, now()),
        org: OrgView::from(&membership),
    }))
}

async fn decline(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiJson(body): ApiJson<TokenBody>,
) -> Result<Json<InvitationView>, ApiError> {
    let declined = state
        .services
        .invitations
        .decline(&actor, &body.token)
        .await?;
    Ok(Json(InvitationView::at(&declined, now())))
}
