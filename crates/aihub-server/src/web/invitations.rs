//! The page an invitation e-mail links to (`/invitations/accept?token=…`): the signed-in
//! invitee accepts or declines. Signed-out visitors are sent to sign in first and come back
//! here. The invitations service checks that the invitation names the caller's address.

use super::pages::Form;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::pages::{Ctx, Session, redirect, render, urlencode};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

#[derive(Template)]
#[template(path = "invitation.html")]
struct InvitationPage {
    ctx: Ctx,
    token: String,
}

/// Shows the invitation with its accept and decline buttons.
pub async fn show(session: Session, Query(q): Query<TokenQuery>) -> Response {
    let token = q.token.unwrap_or_default();
    let here = format!("/invitations/accept?token={}", urlencode(&token));
    let page = InvitationPage {
        ctx: session.ctx(&here, ""),
        token,
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
pub struct TokenForm {
    token: String,
}

/// Accepts, then opens the organization joined.
pub async fn accept(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<TokenForm>,
) -> Response {
    match state
        .services
        .invitations
        .accept(&session.actor, &form.token)
        .await
    {
        Ok((_, membership)) => redirect(&format!("/?org={}", membership.org.id)),
        Err(e) => session.tenancy_error(e),
    }
}

/// Declines, then goes to the overview.
pub async fn decline(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<TokenForm>,
) -> Response {
    match state
        .services
        .invitations
        .decline(&session.actor, &form.token)
        .await
    {
        Ok(_) => redirect("/"),
        Err(e) => session.tenancy_error(e),
    }
}
