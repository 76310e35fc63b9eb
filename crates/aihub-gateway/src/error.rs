//! Errors a `/v1` request can end with, in OpenAI's vocabulary (`type`, `code`, `param`).
//! The HTTP edge renders them as `{"error": {"message", "type", "param", "code"}}`.

use http::StatusCode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    pub status: StatusCode,
    /// OpenAI's `type`: `invalid_request_error`, `rate_limit_error`, `api_error`, …
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
    pub param: Option<&'static str>,
    /// Seconds, for `Retry-After` on 429/503.
    pub retry_after: Option<u64>,
    /// Retrying cannot help (a spent budget, a request larger than a limit): answered with
    /// `x-should-retry: false`, which OpenAI's SDKs honour.
    pub final_answer: bool,
}

impl GatewayError {
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
            retry_after: None,
            final_answer: false,
        }
    }

    pub fn invalid(
        code: &'static str,
        param: Option<&'static str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            param,
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                code,
                message,
            )
        }
    }

    /// Marks the error as one that retrying cannot fix.
    #[must_use]
    pub fn no_retry(mut self) -> Self {
        self.final_answer = true;
        self
    }

    #[must_use]
    pub fn with_retry_after(mut self, secs: Option<u64>) -> Self {
        self.retry_after = secs;
        self
    }

    pub fn upstream_unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "api_error",
            "upstream_unavailable",
            message,
        )
    }

    pub fn upstream_error(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "api_error",
            "upstream_error",
            message,
        )
    }

    #[must_use]
    pub fn upstream_timeout() -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "api_error",
            "upstream_timeout",
            "The upstream provider did not answer in time.",
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

    /// The error as an OpenAI error object (the value of `"error"`).
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        })
    }
}
