//! The signed-in user: profile and password.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::SecretString;
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{ApiJson, Client, CurrentUser};
use crate::routes::views::UserView;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me", get(me))
        .route("/api/v1/me/password", post(change_password))
}

async fn me(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
) -> Result<Json<UserView>, ApiError> {
    let user = state.services.accounts.me(&actor).await?;
    Ok(Json(UserView::from(&user)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    current_password: SecretString,
    new_password: SecretString,
}

/// Changes the password; every other session of the user ends.
async fn change_password(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    client: Client,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .accounts
        .change_password(
            &actor,
            &body.current_password,
            body.new_password,
            &client.info,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
