//! The AI Hub data plane: everything a `/v1` request does between the HTTP layer and the
//! upstream. The hot path never waits on the database when its caches are warm; see
//! docs/architecture.md for the request flow.

pub mod keys;
pub mod last_used;

pub use keys::{AuthenticatedKey, KeyCache};
