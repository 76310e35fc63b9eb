//! The two error shapes of the HTTP edge, one per API surface:
//! - `/api/v1/*`: `{"error": {"code": "snake_case", "message": "…"}}` ([`ApiError`]);
//! - `/v1/*`: OpenAI's `{"error": {"message", "type", "param", "code"}}` ([`V1Error`]).
//!
//! Service errors are mapped here, and this is where an internal error is logged — once, inside
//! the request's span, so the log line carries the request id. Callers only ever see a generic
//! message for a 500. Every code is listed in docs/errors.md.

use std::time::Duration;

use aihub_service::ServiceError;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error of the management API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    #[must_use]
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "not found")
    }

    #[must_use]
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "sign in first: send a session token as `Authorization: Bearer …` or the session cookie",
        )
    }

    #[must_use]
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error",
        )
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        use ServiceError as E;
        match e {
            E::Invalid { code, message } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
            }
            E::Unauthenticated => Self::unauthorized(),
            E::InvalidCredentials => Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                e.to_string(),
            ),
            E::AccountDisabled => {
                Self::new(StatusCode::FORBIDDEN, "account_disabled", e.to_string())
            }
            E::Forbidden => Self::new(StatusCode::FORBIDDEN, "forbidden", e.to_string()),
            E::NotFound => Self::not_found(),
            E::Conflict { code, message } => Self::new(StatusCode::CONFLICT, code, message),
            E::RegistrationDisabled => Self::new(
                StatusCode::FORBIDDEN,
                "registration_disabled",
                e.to_string(),
            ),
            E::Throttled { retry_after } => Self {
                retry_after: Some(retry_after),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_attempts",
                    e.to_string(),
                )
            },
            E::Internal(source) => {
                tracing::error!(error = %ErrorChain(&*source), "internal error");
                Self::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(wait) = self.retry_after {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(wait.as_secs().max(1)),
            );
        }
        resp
    }
}

/// Displays an error with its causes, `outer: inner: …`.
pub use aihub_core::errors::ErrorChain;

/// An error of the OpenAI-compatible surface.
#[derive(Debug)]
pub struct V1Error {
    pub status: StatusCode,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `permission_error`,
    /// `not_found_error`, `rate_limit_error`, `api_error`.
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
    pub param: Option<&'static str>,
}

impl V1Error {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            code,
            message: message.into(),
            param: None,
        }
    }

    pub fn invalid_api_key(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            message,
        )
    }

    #[must_use]
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "internal_error",
            "The server had an error while processing your request.",
        )
    }
}

impl IntoResponse for V1Error {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        });
        (self.status, Json(body)).into_response()
    }
}
