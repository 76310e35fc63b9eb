//! Azure OpenAI: the OpenAI wire format at deployment URLs
//! (`{base}/openai/deployments/{deployment}/{operation}?api-version=…`) with an `api-key` header.
//! The model's `upstream_model` is the deployment name.

use std::sync::Arc;

use aihub_service::catalog::ProviderSpec;
use http::HeaderValue;

use crate::error::GatewayError;
use crate::providers::http::Upstream;
use crate::providers::openai::{MAX_RESPONSE, base_headers, exchange};
use crate::providers::{Adapter, Call, Endpoint, Reply};

/// Used when the provider sets no `api_version`.
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

pub struct Azure {
    upstream: Upstream,
    base_url: String,
    api_version: String,
}

impl Azure {
    pub fn new(spec: Arc<ProviderSpec>) -> Result<Self, GatewayError> {
        let base_url = spec.base_url.clone().ok_or_else(|| {
            GatewayError::upstream_unavailable("The upstream provider is misconfigured.")
        })?;
        let api_version = spec
            .api_version
            .clone()
            .unwrap_or_else(|| DEFAULT_API_VERSION.to_owned());
        Ok(Self {
            upstream: Upstream::new(spec)?,
            base_url,
            api_version,
        })
    }
}

/// Percent-encodes a path segment (deployment names are plain, but never trust that).
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Adapter for Azure {
    async fn send<'a>(&'a self, call: Call<'a>) -> Result<Reply, GatewayError> {
        // The deployment is the model's, so the URL is parsed per request.
        let url = self.upstream.url(&format!(
            "{}/openai/deployments/{}/{}?api-version={}",
            self.base_url,
            segment(call.upstream_model),
            call.endpoint.path(),
            segment(&self.api_version)
        ))?;
        let mut headers = base_headers(&call);
        if let Some(key) = &self.upstream.spec.api_key
            && let Ok(mut v) = HeaderValue::from_str(key.expose())
        {
            v.set_sensitive(true);
            headers.insert("api-key", v);
        }
        exchange(&self.upstream, &url, headers, &call, MAX_RESPONSE).await
    }

    fn supports(&self, _: Endpoint) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::segment;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(segment("gpt-4o_prod.v2"), "gpt-4o_prod.v2");
        assert_eq!(segment("a/../b?x"), "a%2F..%2Fb%3Fx");
    }
}
