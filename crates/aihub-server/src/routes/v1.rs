//! The OpenAI-compatible surface, authenticated by AI Hub API keys
//! (`Authorization: Bearer sk-aihub-…`). Handlers read the body (bounded by
//! `gateway.max_request_bytes`) and hand it to the gateway; the gateway never touches the
//! database on this path.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;

use aihub_core::time::now;
use aihub_gateway::keys::KeyAuthError;
use aihub_gateway::{AuthenticatedKey, Endpoint, GatewayResponse, ResponseBody};
use axum::BoxError;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures_util::FutureExt;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;
use uuid::Uuid;

use crate::error::{ErrorChain, V1Error};
use crate::middleware::{Edge, RequestId};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/models", get(models))
        .route(
            "/v1/chat/completions",
            post(|s, k, id, r| proxy(s, k, id, r, Endpoint::ChatCompletions)),
        )
        .route(
            "/v1/completions",
            post(|s, k, id, r| proxy(s, k, id, r, Endpoint::Completions)),
        )
        .route(
            "/v1/embeddings",
            post(|s, k, id, r| proxy(s, k, id, r, Endpoint::Embeddings)),
        )
        .layer(CatchPanicLayer::custom(|_| handler_panicked()))
}

/// The caller's API key, authenticated from the in-memory key cache (a database read only on a
/// cache miss), its use noted for the batched `last_used_at` write. An extractor rather than a
/// middleware layer: a layer costs a boxed future, a state clone and a trip through the
/// request's extensions on every request. It runs before the body is read; unknown `/v1`
/// paths and wrong methods never reach it (`404`, `405` without authentication).
pub struct ApiKey(pub AuthenticatedKey);

impl FromRequestParts<AppState> for ApiKey {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        authenticate(&parts.headers, state).await.map(Self)
    }
}

async fn authenticate(headers: &HeaderMap, state: &AppState) -> Result<AuthenticatedKey, Response> {
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(presented) = presented.filter(|p| !p.is_empty()) else {
        return Err(V1Error::invalid_api_key(
            "You didn't provide an API key. Send it as `Authorization: Bearer sk-aihub-…`.",
        )
        .into_response());
    };
    let t = now();
    match state.key_cache.authenticate(presented, t).await {
        Ok(key) => {
            state.last_used.touch(key.key.id, t);
            Ok(key)
        }
        Err(KeyAuthError::Rejected(r)) => {
            Err(V1Error::invalid_api_key(r.message()).into_response())
        }
        Err(KeyAuthError::Lookup(e)) => {
            tracing::error!(error = %ErrorChain(&*e), "api key lookup failed");
            Err(V1Error::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                "service_unavailable",
                "The service is temporarily unavailable. Please retry.",
            )
            .into_response())
        }
    }
}

/// The models this key may use.
async fn models(State(state): State<AppState>, ApiKey(key): ApiKey) -> Json<Value> {
    let data: Vec<Value> = state
        .gateway
        .models_for(&key)
        .into_iter()
        .map(|m| json!({ "id": m.id, "object": "model", "created": 0, "owned_by": m.owned_by }))
        .collect();
    Json(json!({ "object": "list", "data": data }))
}

async fn proxy(
    State(state): State<AppState>,
    ApiKey(key): ApiKey,
    Extension(RequestId(request_id)): Extension<RequestId>,
    req: Request,
    endpoint: Endpoint,
) -> Response {
    forward(&state, key, request_id, req.into_body(), endpoint).await
}

/// Reads the body (bounded by `gateway.max_request_bytes`) and hands the call to the gateway.
async fn forward<B>(
    state: &AppState,
    key: AuthenticatedKey,
    request_id: Uuid,
    body: B,
    endpoint: Endpoint,
) -> Response
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let limit = state.config.gateway.max_request_bytes;
    let body = match Limited::new(body, limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if is_length_limit(&*e) => {
            return V1Error::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "request_too_large",
                format!("The request body is larger than {limit} bytes."),
            )
            .into_response();
        }
        Err(_) => {
            return V1Error::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_body",
                "The request body could not be read.",
            )
            .into_response();
        }
    };
    into_response(state.gateway.handle(endpoint, key, request_id, body).await)
}

/// The endpoint of a proxied call (`POST` to one of the paths [`router`] sends to `proxy`),
/// which the server hands straight to [`direct`]. Anything else, other methods on these paths
/// included, goes through the router. (The routes are spelled out in [`router`], where the
/// route-surface tests read them.)
pub(crate) fn direct_endpoint(method: &Method, path: &str) -> Option<Endpoint> {
    if method != Method::POST {
        return None;
    }
    match path {
        "/v1/chat/completions" => Some(Endpoint::ChatCompletions),
        "/v1/completions" => Some(Endpoint::Completions),
        "/v1/embeddings" => Some(Endpoint::Embeddings),
        _ => None,
    }
}

/// A proxied call without the router: what [`router`]'s handler for it does inside the edge
/// layer ([`crate::middleware::edge`]) and the panic layers, done in one function. The router
/// would add a boxed future and a service clone per layer, the route lookup and the extractors'
/// clones to every call; the answer is the same, headers included (an API test compares them).
pub(crate) async fn direct(
    state: AppState,
    endpoint: Endpoint,
    req: http::Request<Incoming>,
    peer: SocketAddr,
) -> Response {
    let (parts, body) = req.into_parts();
    let edge = Edge::open(
        &state,
        &parts.method,
        parts.uri.path(),
        &parts.headers,
        Some(peer.ip()),
    );
    let request_id = edge.id.0;
    let call = async {
        match authenticate(&parts.headers, &state).await {
            Ok(key) => forward(&state, key, request_id, body, endpoint).await,
            Err(refused) => refused,
        }
    };
    let resp = AssertUnwindSafe(call.instrument(edge.span.clone()))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| handler_panicked());
    edge.finish(resp)
}

fn handler_panicked() -> Response {
    tracing::error!("gateway handler panicked");
    V1Error::internal().into_response()
}

/// Whether reading a body failed because it exceeded the limit (not because the client left).
fn is_length_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Headers a `/v1` response carries at most, here and in the edge layer.
const RESPONSE_HEADERS: usize = 20;

fn into_response(r: GatewayResponse) -> Response {
    // Room for everything added on the way out (these, the request id, the security headers),
    // so the map is allocated once instead of growing.
    let mut h = HeaderMap::with_capacity(RESPONSE_HEADERS);
    let body = match r.body {
        ResponseBody::Json(bytes) => {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Body::from(bytes)
        }
        ResponseBody::Events(events) => {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert("x-accel-buffering", HeaderValue::from_static("no"));
            Body::new(events)
        }
    };
    if let Some(secs) = r.retry_after {
        h.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    if r.final_answer {
        h.insert("x-should-retry", HeaderValue::from_static("false"));
    }
    r.rate.write_to(&mut h);
    let mut resp = Response::new(body);
    *resp.status_mut() = r.status;
    *resp.headers_mut() = h;
    resp
}

#[cfg(test)]
mod tests {
    use http_body_util::Full;

    use super::*;

    /// A body over the limit answers 413 whether its error comes bare (the direct path reads
    /// hyper's body through `Limited`) or wrapped (axum's body); any other read error is not
    /// one.
    #[tokio::test]
    async fn a_body_over_the_limit_is_told_apart_from_a_broken_one() {
        let over = Limited::new(Full::new(Bytes::from_static(b"12345")), 4)
            .collect()
            .await
            .expect_err("five bytes are over a limit of four");
        assert!(is_length_limit(&*over));
        assert!(is_length_limit(&axum::Error::new(over)));
        assert!(!is_length_limit(&std::io::Error::other(
            "the client went away"
        )));
        assert!(!is_length_limit(&axum::Error::new(std::io::Error::other(
            "the client went away"
        ))));
    }
}
