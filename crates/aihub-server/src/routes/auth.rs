//! Sign-up, sign-in and sign-out.

use aihub_service::accounts::Registration;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::{ApiJson, Client, CurrentUser};
use crate::routes::views::{OrgView, UserView};
use crate::session::{clear_cookie, session_cookie};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/register", post(register))
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    email: String,
    password: SecretString,
    name: Option<String>,
}

#[derive(Serialize)]
struct RegisterResponse {
    user: UserView,
    org: OrgView,
}

async fn register(
    State(state): State<AppState>,
    client: Client,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<Response, ApiError> {
    let (user, org) = state
        .services
        .accounts
        .register(
            Registration {
                email: body.email,
                password: body.password,
                name: body.name,
            },
            &client.info,
        )
        .await?;
    let body = RegisterResponse {
        user: UserView::from(&user),
        org: OrgView::new(&org, Some(aihub_core::Role::Owner)),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    email: String,
    password: SecretString,
}

#[derive(Serialize)]
struct LoginResponse {
    /// Send as `Authorization: Bearer <token>`; the same value is set as the session cookie.
    token: String,
    expires_at: DateTime<Utc>,
    user: UserView,
}

async fn login(
    State(state): State<AppState>,
    client: Client,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Response, ApiError> {
    let outcome = state
        .services
        .accounts
        .login(&body.email, &body.password, &client.info)
        .await?;
    let token = outcome.token.expose_secret().to_owned();
    let cookie = session_cookie(&token, outcome.session.expires_at, client.tls);
    let body = LoginResponse {
        token,
        expires_at: outcome.session.expires_at,
        user: UserView::from(&outcome.user),
    };
    let mut resp = Json(body).into_response();
    if let Some((name, value)) = cookie {
        resp.headers_mut().insert(name, value);
    }
    Ok(resp)
}

/// Ends the session on the server and clears the cookie.
async fn logout(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    client: Client,
) -> Result<Response, ApiError> {
    state.services.accounts.logout(&actor).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let (name, value) = clear_cookie(client.tls);
    resp.headers_mut().insert(name, value);
    Ok(resp)
}
