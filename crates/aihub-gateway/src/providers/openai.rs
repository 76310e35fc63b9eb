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
    /// The URL of each endpoint, parsed once: chat completions, completions, embeddings.
    urls: [http::Uri; 3],
    /// `Authorization: Bearer …`, built once.
    auth: Option<HeaderValue>,
}

impl OpenAi {
    pub fn new(spec: Arc<ProviderSpec>) -> Result<Self, GatewayError> {
        let base_url = spec.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
        let auth = spec.api_key.as_ref().and_then(|key| {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", key.expose())).ok()?;
            v.set_sensitive(true);
            Some(v)
        });
        let upstream = Upstream::new(spec.clone())?;
        let url = |e: Endpoint| upstream.url(&format!("{base_url}/{}", e.path()));
        let urls = [
            url(Endpoint::ChatCompletions)?,
            url(Endpoint::Completions)?,
            url(Endpoint::Embeddings)?,
        ];
        Ok(Self {
            upstream,
            urls,
            auth,
        })
    }

    fn url(&self, endpoint: Endpoint) -> &http::Uri {
        let [chat, completions, embeddings] = &self.urls;
        match endpoint {
            Endpoint::ChatCompletions => chat,
            Endpoint::Completions => completions,
            Endpoint::Embeddings => embeddings,
        }
    }
}

/// Headers every OpenAI-style call carries; `auth` adds the credential in the provider's way.
pub fn base_headers(call: &Call<'_>) -> HeaderMap {
    // Room for these, the credential, and what the client adds (`Host`, `Content-Length`), so
    // the map is sized once instead of growing on the way.
    let mut h = HeaderMap::with_capacity(8);
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
    if let Some(v) = crate::proxy::request_id_value(call.request_id) {
        h.insert(REQUEST_ID_HEADER, v);
    }
    h
}

/// Sends an OpenAI-format call to `url` and wraps the reply.
pub async fn exchange(
    upstream: &Upstream,
    url: &http::Uri,
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
        let mut headers = base_headers(&call);
        if let Some(v) = &self.auth {
            headers.insert(header::AUTHORIZATION, v.clone());
        }
        exchange(
            &self.upstream,
            self.url(call.endpoint),
            headers,
            &call,
            MAX_RESPONSE,
        )
        .await
    }

    fn supports(&self, _: Endpoint) -> bool {
        true
    }
}
