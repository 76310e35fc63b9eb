//! The service error vocabulary. Each variant maps to one HTTP status and one stable error code
//! at the API edge; internal causes are logged there and never shown to callers.

use std::time::Duration;

use aihub_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Input that parses but breaks a rule (422).
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// No valid credentials were presented (401).
    #[error("authentication required")]
    Unauthenticated,
    /// Sign-in with a wrong e-mail/password pair (401). Same answer for unknown accounts.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// The account exists but a platform admin disabled it (403).
    #[error("this account is disabled")]
    AccountDisabled,
    /// The caller may see the object but not perform the action (403).
    #[error("you do not have permission to do this")]
    Forbidden,
    /// No such object for this caller, including objects of other organizations (404).
    #[error("not found")]
    NotFound,
    /// The request conflicts with the current state (409).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("registration is disabled on this server")]
    RegistrationDisabled,
    /// Too many attempts; try again after the given time (429).
    #[error("too many attempts, try again later")]
    Throttled { retry_after: Duration },
    /// A failure that is not the caller's (500). The cause is logged, not returned.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ServiceError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ServiceError::Invalid {
            code,
            message: message.into(),
        }
    }

    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ServiceError::Internal(Box::new(e))
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        ServiceError::internal(e)
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;
