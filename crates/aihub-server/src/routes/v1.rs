//! The OpenAI-compatible surface, authenticated by AI Hub API keys
//! (`Authorization: Bearer sk-aihub-…`).

use aihub_core::time::now;
use aihub_gateway::AuthenticatedKey;
use aihub_gateway::keys::KeyAuthError;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

use crate::error::{ErrorChain, V1Error};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/models", get(models))
}

/// Authenticates every `/v1` request by its API key, from the in-memory key cache (a database
/// read only on a cache miss), and notes the key's use for the batched `last_used_at` write.
pub async fn require_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(presented) = presented.filter(|p| !p.is_empty()) else {
        return V1Error::invalid_api_key(
            "You didn't provide an API key. Send it as `Authorization: Bearer sk-aihub-…`.",
        )
        .into_response();
    };
    let t = now();
    match state.key_cache.authenticate(presented, t).await {
        Ok(key) => {
            state.last_used.touch(key.key.id, t);
            req.extensions_mut().insert::<AuthenticatedKey>(key);
            next.run(req).await
        }
        Err(KeyAuthError::Rejected(r)) => V1Error::invalid_api_key(r.message()).into_response(),
        Err(KeyAuthError::Lookup(e)) => {
            tracing::error!(error = %ErrorChain(&*e), "api key lookup failed");
            V1Error::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                "service_unavailable",
                "The service is temporarily unavailable. Please retry.",
            )
            .into_response()
        }
    }
}

/// The models this key may use. No upstream providers are configured yet, so the list is empty.
async fn models(Extension(_key): Extension<AuthenticatedKey>) -> Json<Value> {
    Json(json!({ "object": "list", "data": [] }))
}
