//! Upstream providers: a closed enum over one [`Adapter`] trait, one module per wire protocol.
//! Every adapter speaks OpenAI's format towards the gateway: complete bodies are OpenAI JSON,
//! streams are OpenAI `chat.completion.chunk` (or `text_completion`) server-sent events.

pub mod anthropic;
pub mod azure;
pub mod http;
pub mod mock;
pub mod openai;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aihub_core::config::ProviderKind;
use aihub_service::catalog::ProviderSpec;
use bytes::Bytes;
use futures_util::Stream;
use uuid::Uuid;

use crate::body::RequestBody;
use crate::error::GatewayError;

/// The `/v1` operations that reach a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
}

impl Endpoint {
    /// The name stored in usage records.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat.completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
        }
    }

    /// The path below an OpenAI-style base URL.
    #[must_use]
    pub const fn path(&self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat/completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
        }
    }
}

/// Token counts of one response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
}

/// One request as an adapter sees it.
pub struct Call<'a> {
    pub endpoint: Endpoint,
    pub body: &'a RequestBody<'a>,
    pub upstream_model: &'a str,
    pub request_id: Uuid,
}

/// What a provider answered.
pub enum Reply {
    /// A whole OpenAI-format body. `usage` is set when the adapter already knows it.
    Complete { body: Bytes, usage: Option<Usage> },
    /// OpenAI-format events, in order.
    Stream(EventStream),
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamItem, StreamFault>> + Send>>;

/// An element of a translated stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamItem {
    /// An event to forward: the complete frame (`data: …\n\n`) and its data.
    Event { frame: Bytes, data: Bytes },
    /// Usage known to the adapter (translated protocols); not forwarded as such.
    Usage(Usage),
    /// The upstream's end marker (`data: [DONE]`).
    Done,
}

/// Why a stream stopped early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamFault {
    #[error("the upstream stopped sending")]
    Timeout,
    #[error("the upstream connection failed")]
    Transport,
    #[error("the upstream sent an oversized event")]
    TooLarge,
    #[error("the upstream reported an error: {0}")]
    Upstream(String),
}

impl StreamFault {
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            StreamFault::Timeout => "upstream_timeout",
            StreamFault::Transport => "upstream_unavailable",
            StreamFault::TooLarge | StreamFault::Upstream(_) => "upstream_error",
        }
    }
}

/// What every provider does: send one call and answer in OpenAI's format.
pub trait Adapter: Send + Sync {
    fn send<'a>(
        &'a self,
        call: Call<'a>,
    ) -> impl Future<Output = Result<Reply, GatewayError>> + Send + 'a;

    /// Whether the provider serves this endpoint at all.
    fn supports(&self, endpoint: Endpoint) -> bool;
}

/// A configured provider, ready to call.
pub enum Provider {
    Openai(openai::OpenAi),
    Azure(azure::Azure),
    Anthropic(anthropic::Anthropic),
    Mock(mock::Mock),
}

impl Provider {
    /// Builds the provider (and its HTTP connection pool) from its catalog entry.
    pub fn build(spec: &Arc<ProviderSpec>) -> Result<Self, GatewayError> {
        Ok(match spec.kind {
            ProviderKind::Openai => Provider::Openai(openai::OpenAi::new(spec.clone())?),
            ProviderKind::Azure => Provider::Azure(azure::Azure::new(spec.clone())?),
            ProviderKind::Anthropic => {
                Provider::Anthropic(anthropic::Anthropic::new(spec.clone())?)
            }
            ProviderKind::Mock => Provider::Mock(mock::Mock::new(spec.clone())),
        })
    }

    pub async fn send(&self, call: Call<'_>) -> Result<Reply, GatewayError> {
        match self {
            Provider::Openai(p) => p.send(call).await,
            Provider::Azure(p) => p.send(call).await,
            Provider::Anthropic(p) => p.send(call).await,
            Provider::Mock(p) => p.send(call).await,
        }
    }

    #[must_use]
    pub fn supports(&self, endpoint: Endpoint) -> bool {
        match self {
            Provider::Openai(p) => p.supports(endpoint),
            Provider::Azure(p) => p.supports(endpoint),
            Provider::Anthropic(p) => p.supports(endpoint),
            Provider::Mock(p) => p.supports(endpoint),
        }
    }
}
