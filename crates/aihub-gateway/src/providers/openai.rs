//! OpenAI-compatible providers (OpenAI, DeepSeek, Qwen in compatible mode, Moonshot, Zhipu,
//! vLLM, Ollama, …): the request body goes upstream as received, with only `model` replaced and
//! usage reporting switched on for streams; replies come back untouched.

use std::sync::Arc;

use aihub_service::catalog::ProviderSpec;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, header};
use tokio::time::Instant;

use crate::error::GatewayError;
use crate::providers::http::Upstream;
use crate::providers::{Adapter, Call, Endpoint, EventStream, Reply, StreamItem};

pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// Header carrying the gateway's request id to the upstream, for correlation.
pub const REQUEST_ID_HEADER: &str = "x-aihub-request-id";

pub struct OpenAi {
    upstream: Upstream,
    base_url: String,
}

impl OpenAi {
    pub fn new(spec: Arc<ProviderSpec>) -> Result<Self, GatewayError> {
        let base_url = spec
            .base_url
            .clone()
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
        Ok(Self {
            upstream: Upstream::new(spec)?,
            base_url,
        })
    }
}

/// Headers every OpenAI-style call carries; `auth` adds the credential in the provider's way.
pub fn base_headers(call: &Call<'_>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if call.body.stream {
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&call.request_id.to_string()) {
        h.insert(REQUEST_ID_HEADER, v);
    }
    h
}

/// Sends an OpenAI-format call to `url` and wraps the reply.
pub async fn exchange(
    upstream: &Upstream,
    url: &str,
    headers: HeaderMap,
    call: &Call<'_>,
    max_response: usize,
) -> Result<Reply, GatewayError> {
    let deadline = Instant::now() + upstream.spec.total_timeout;
    let body = call.body.rewrite(call.upstream_model, true);
    let resp = upstream.post(url, headers, body, deadline).await?;
    if call.body.stream && call.endpoint != Endpoint::Embeddings {
        let events: EventStream = upstream
            .events(resp, deadline)
            .map(|ev| {
                ev.map(|ev| {
                    if ev.is_done() {
                        StreamItem::Done
                    } else {
                        StreamItem::Event {
                            frame: ev.raw,
                            data: ev.data,
                        }
                    }
                })
            })
            .boxed();
        Ok(Reply::Stream(events))
    } else {
        let body = upstream.read_body(resp, max_response, deadline).await?;
        Ok(Reply::Complete { body, usage: None })
    }
}

/// Largest non-streaming reply read (the gateway's own cap is applied on top).
pub const MAX_RESPONSE: usize = 64 * 1024 * 1024;

impl Adapter for OpenAi {
    async fn send<'a>(&'a self, call: Call<'a>) -> Result<Reply, GatewayError> {
        let url = format!("{}/{}", self.base_url, call.endpoint.path());
        let mut headers = base_headers(&call);
        if let Some(key) = &self.upstream.spec.api_key
            && let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
        {
            v.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, v);
        }
        exchange(&self.upstream, &url, headers, &call, MAX_RESPONSE).await
    }

    fn supports(&self, _: Endpoint) -> bool {
        true
    }
}
