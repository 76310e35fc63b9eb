//! The AI Hub data plane: everything a `/v1` request does between the HTTP layer and the
//! upstream — key authentication from a cache, request parsing, provider adapters, streaming,
//! and metering through the usage journal. The hot path never waits on the database when its
//! caches are warm; see docs/architecture.md for the request flow.

pub mod body;
pub mod error;
pub mod governor;
pub mod journal;
pub mod keys;
pub mod last_used;
pub mod loader;
pub mod providers;
pub mod proxy;
pub mod scan;
pub mod sse;
pub mod tokens;

pub use error::GatewayError;
pub use keys::{AuthenticatedKey, KeyCache};
pub use providers::Endpoint;
pub use proxy::{Gateway, GatewayResponse, ModelInfo, ResponseBody, request_id_value};
