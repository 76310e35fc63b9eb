//! Routers: one module per domain noun, each with its own `router()`. Route files only map
//! paths to handlers; handlers extract input, call one service, and map the result.

pub mod admin;
pub mod alerts;
pub mod audit;
pub mod auth;
pub mod budgets;
pub mod catalog;
pub mod health;
pub mod invitations;
pub mod keys;
pub mod limits;
pub mod me;
pub mod members;
pub mod orgs;
pub mod plans;
pub mod teams;
pub mod usage;
pub mod v1;
pub mod views;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, Uri};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::{ApiError, V1Error};
use crate::middleware::edge;
use crate::session::require_session;
use crate::state::AppState;

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(auth::router())
        .merge(me::router())
        .merge(orgs::router())
        .merge(members::router())
        .merge(teams::router())
        .merge(invitations::router())
        .merge(keys::router())
        .merge(admin::router())
        .merge(catalog::router())
        .merge(usage::router())
        .merge(alerts::router())
        .merge(limits::router())
        .merge(budgets::router())
        .merge(plans::router())
        .merge(audit::router())
        .layer(DefaultBodyLimit::max(state.config.server.max_body_bytes))
        .layer(from_fn_with_state(state.clone(), require_session));
    // `/v1` bodies are read by the handlers, bounded by `gateway.max_request_bytes`.
    // The API key is checked by the handlers' `ApiKey` extractor, before the body is read.
    let gateway = v1::router().layer(DefaultBodyLimit::disable());
    Router::new()
        .merge(health::router())
        .merge(api)
        .merge(gateway)
        .merge(crate::web::router(state.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(CatchPanicLayer::custom(|_| panic_response()))
        .layer(from_fn_with_state(state.clone(), edge))
        .with_state(state)
}

async fn not_found(uri: Uri) -> Response {
    if is_v1(&uri) {
        V1Error::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_url",
            format!("Unknown request URL: {}", uri.path()),
        )
        .into_response()
    } else {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route").into_response()
    }
}

async fn method_not_allowed(uri: Uri) -> Response {
    if is_v1(&uri) {
        V1Error::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            "This method is not allowed on this URL.",
        )
        .into_response()
    } else {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this route",
        )
        .into_response()
    }
}

fn is_v1(uri: &Uri) -> bool {
    uri.path() == "/v1" || uri.path().starts_with("/v1/")
}

fn panic_response() -> Response {
    tracing::error!("handler panicked");
    ApiError::internal().into_response()
}
