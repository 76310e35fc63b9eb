//! API keys of an organization. The secret is in the body of create and rotate only.

use aihub_core::{KeyId, OrgId, TeamId};
use aihub_service::keys::{CreateKey, KeyWithSecret, UpdateKey};
use aihub_service::page::clamp_limit;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::extract::present;

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, CurrentUser};
use crate::routes::views::{KeyView, KeyWithSecretView, PageView};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs/{org_id}/keys", get(list).post(create))
        .route(
            "/api/v1/orgs/{org_id}/keys/{key_id}",
            get(get_one).patch(update).delete(revoke),
        )
        .route("/api/v1/orgs/{org_id}/keys/{key_id}/rotate", post(rotate))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    expires_at: Option<DateTime<Utc>>,
    models: Option<Vec<String>>,
    team_id: Option<TeamId>,
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
        .keys
        .create(
            &scope,
            CreateKey {
                name: body.name,
                expires_at: body.expires_at,
                models: body.models,
                team_id: body.team_id,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(with_secret(&created))).into_response())
}

fn with_secret(k: &KeyWithSecret) -> KeyWithSecretView {
    KeyWithSecretView {
        key: KeyView::from(&k.key),
        secret: k.secret.expose_secret().to_owned(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<u32>,
    cursor: Option<KeyId>,
}

async fn list(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(org_id): ApiPath<OrgId>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<PageView<KeyView>>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let page = state
        .services
        .keys
        .list(&scope, q.cursor, clamp_limit(q.limit))
        .await?;
    Ok(Json(PageView {
        data: page.data.iter().map(KeyView::from).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

async fn get_one(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath((org_id, key_id)): ApiPath<(OrgId, KeyId)>,
) -> Result<Json<KeyView>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let key = state.services.keys.get(&scope, key_id).await?;
    Ok(Json(KeyView::from(&key)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    expires_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "present")]
    models: Option<Option<Vec<String>>>,
}

async fn update(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath((org_id, key_id)): ApiPath<(OrgId, KeyId)>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<Json<KeyView>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let key = state
        .services
        .keys
        .update(
            &scope,
            key_id,
            UpdateKey {
                name: body.name,
                expires_at: body.expires_at,
                models: body.models,
            },
        )
        .await?;
    Ok(Json(KeyView::from(&key)))
}

/// Revokes the key (it stays listed, marked revoked). Revoking twice is harmless.
async fn revoke(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath((org_id, key_id)): ApiPath<(OrgId, KeyId)>,
) -> Result<Json<KeyView>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let key = state.services.keys.revoke(&scope, key_id).await?;
    Ok(Json(KeyView::from(&key)))
}

async fn rotate(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath((org_id, key_id)): ApiPath<(OrgId, KeyId)>,
) -> Result<Json<KeyWithSecretView>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let rotated = state.services.keys.rotate(&scope, key_id).await?;
    Ok(Json(with_secret(&rotated)))
}
