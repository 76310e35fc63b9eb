//! What HTTP providers share: one connection pool per provider, the connect / first-byte /
//! total timeouts, bounded body reads, SSE reading with an idle timeout, and the mapping of
//! upstream errors — whose bodies are never echoed verbatim, since they can carry credentials.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aihub_core::errors::ErrorChain;
use aihub_service::catalog::ProviderSpec;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::uri::Authority;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use http_body_util::{BodyDataStream, BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

use crate::error::GatewayError;
use crate::providers::StreamFault;
use crate::sse::{Event, SseParser};

/// Most bytes read of an upstream error body.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Longest upstream error message passed on.
const MAX_ERROR_MESSAGE: usize = 512;

/// An upstream's answer: its head, and a body read as it arrives.
pub type Response = http::Response<Incoming>;

/// One provider's HTTP client: hyper's pooled client over plain TCP or rustls (HTTP/1.1, and
/// HTTP/2 where the server offers it by ALPN). hyper directly rather than through a wrapper
/// such as reqwest, which re-parses the URL and runs a redirect layer on every request — about
/// 8 % of the gateway's CPU time under load and 34 allocations per call (docs/benchmarks.md).
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    pub spec: Arc<ProviderSpec>,
    /// The `Host` header of the provider's plain-HTTP URLs (they share one authority), worked
    /// out from the first URL parsed: hyper's client would otherwise format it on every request.
    host: OnceLock<(Authority, HeaderValue)>,
}

impl Upstream {
    pub fn new(spec: Arc<ProviderSpec>) -> Result<Self, GatewayError> {
        let mut tcp = HttpConnector::new();
        tcp.set_connect_timeout(Some(spec.connect_timeout));
        tcp.set_nodelay(true);
        // The scheme is checked by the HTTPS layer (`https_or_http`), not here.
        tcp.enforce_http(false);
        // ring, named rather than left to rustls's process-wide default: that default panics
        // when more than one provider is compiled in.
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| {
                tracing::error!(provider = %spec.name, error = %e, "could not set up TLS");
                GatewayError::upstream_unavailable("The upstream provider is misconfigured.")
            })?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        // hyper never follows redirects: a redirect could send the credential elsewhere, and
        // providers do not redirect API calls.
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .build(tls);
        Ok(Self {
            client,
            spec,
            host: OnceLock::new(),
        })
    }

    /// Parses an endpoint URL once, when the provider is built, so that requests do not. Only
    /// absolute `http` and `https` URLs are accepted.
    pub fn url(&self, url: &str) -> Result<Uri, GatewayError> {
        let invalid = |reason: &dyn std::fmt::Display| {
            tracing::error!(provider = %self.spec.name, error = %reason, "the provider's URL is invalid");
            GatewayError::upstream_unavailable("The upstream provider is misconfigured.")
        };
        let uri: Uri = url.parse().map_err(|e| invalid(&e))?;
        let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
        if !scheme_ok || uri.host().is_none_or(str::is_empty) {
            return Err(invalid(&"not an absolute http or https URL"));
        }
        if self.host.get().is_none()
            && let Some(host) = host_header(&uri)
        {
            let _ = self.host.set(host);
        }
        Ok(uri)
    }

    /// Sends a POST and waits for the response headers within the first-byte timeout (and
    /// before `deadline`, the end of the total timeout). A non-2xx answer becomes a
    /// [`GatewayError`].
    pub async fn post(
        &self,
        url: &Uri,
        headers: HeaderMap,
        body: Vec<u8>,
        deadline: Instant,
    ) -> Result<Response, GatewayError> {
        let mut req = http::Request::new(Full::new(Bytes::from(body)));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = url.clone();
        *req.headers_mut() = headers;
        if let Some((authority, host)) = self.host.get()
            && url.authority() == Some(authority)
        {
            req.headers_mut().insert(header::HOST, host.clone());
        }
        let send = self.client.request(req);
        let wait = deadline.min(Instant::now() + self.spec.first_byte_timeout);
        let resp = match tokio::time::timeout_at(wait, send).await {
            Err(_) => return Err(GatewayError::upstream_timeout()),
            Ok(Err(e)) => return Err(transport_error(&self.spec.name, &e)),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = tokio::time::timeout(
            self.spec.first_byte_timeout,
            read_capped(resp, MAX_ERROR_BODY),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
        Err(map_upstream_error(&self.spec, status, &body, retry_after))
    }

    /// Reads a whole response body, at most `cap` bytes, before `deadline`.
    pub async fn read_body(
        &self,
        resp: Response,
        cap: usize,
        deadline: Instant,
    ) -> Result<Bytes, GatewayError> {
        match tokio::time::timeout_at(deadline, read_capped(resp, cap)).await {
            Err(_) => Err(GatewayError::upstream_timeout()),
            Ok(Err(ReadError::TooLarge)) => Err(GatewayError::upstream_error(
                "The upstream response was too large.",
            )),
            Ok(Err(ReadError::Transport)) => Err(GatewayError::upstream_unavailable(
                "The upstream connection failed while reading the response.",
            )),
            Ok(Ok(b)) => Ok(b),
        }
    }

    /// The response as server-sent events. Each read must arrive within the first-byte timeout
    /// (an upstream stalled that long is dead) and all of them before `deadline`.
    pub fn events(
        &self,
        resp: Response,
        deadline: Instant,
    ) -> impl Stream<Item = Result<Event, StreamFault>> + Send + 'static {
        let idle = self.spec.first_byte_timeout;
        let state = (
            BodyDataStream::new(resp.into_body()),
            SseParser::new(),
            false,
        );
        futures_util::stream::unfold(state, move |(mut body, mut parser, ended)| async move {
            if ended {
                return None;
            }
            loop {
                if let Some(ev) = parser.next_event() {
                    return Some((Ok(ev), (body, parser, false)));
                }
                let wait = deadline.min(Instant::now() + idle);
                match tokio::time::timeout_at(wait, body.next()).await {
                    Err(_) => return Some((Err(StreamFault::Timeout), (body, parser, true))),
                    Ok(None) => return None,
                    Ok(Some(Err(_))) => {
                        return Some((Err(StreamFault::Transport), (body, parser, true)));
                    }
                    Ok(Some(Ok(chunk))) => {
                        if parser.push(&chunk).is_err() {
                            return Some((Err(StreamFault::TooLarge), (body, parser, true)));
                        }
                    }
                }
            }
        })
    }
}

enum ReadError {
    TooLarge,
    Transport,
}

async fn read_capped(resp: Response, cap: usize) -> Result<Bytes, ReadError> {
    let declared = resp
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|l| l > cap as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut body = resp.into_body();
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ReadError::Transport)?;
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        if buf.len() + chunk.len() > cap {
            return Err(ReadError::TooLarge);
        }
        if buf.is_empty() && declared == Some(chunk.len() as u64) {
            // The whole body in one frame (the common case): no copy.
            return Ok(chunk);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The `Host` header hyper's client would send for a plain `http` URL: the host, with the port
/// unless it is 80; with the authority it is for. Plain HTTP is always HTTP/1 here (HTTP/2 is
/// only negotiated over TLS), where the header is required; `https` URLs are left to hyper,
/// which sends `Host` only on an HTTP/1 connection (HTTP/2 carries `:authority` instead).
fn host_header(uri: &Uri) -> Option<(Authority, HeaderValue)> {
    if uri.scheme_str() != Some("http") {
        return None;
    }
    let authority = uri.authority()?.clone();
    let value = match uri.port_u16() {
        Some(port) if port != 80 => HeaderValue::from_str(&format!("{}:{port}", authority.host())),
        _ => HeaderValue::from_str(authority.host()),
    };
    Some((authority, value.ok()?))
}

fn transport_error(provider: &str, e: &hyper_util::client::legacy::Error) -> GatewayError {
    // The log line keeps the cause; the client does not see it.
    tracing::warn!(provider, error = %ErrorChain(e), "upstream request failed");
    if caused_by_timeout(e) {
        GatewayError::upstream_timeout()
    } else if e.is_connect() {
        GatewayError::upstream_unavailable("Could not connect to the upstream provider.")
    } else {
        GatewayError::upstream_unavailable("The upstream request failed.")
    }
}

/// Whether an I/O timeout (the connect timeout) is somewhere in the error's causes.
fn caused_by_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Maps an upstream error. Client errors keep their status and a cleaned message (the caller
/// can fix their request); credential problems and server errors become 502 with a message of
/// our own; rate limits stay 429 with `Retry-After`.
#[must_use]
pub fn map_upstream_error(
    spec: &ProviderSpec,
    status: StatusCode,
    body: &[u8],
    retry_after: Option<u64>,
) -> GatewayError {
    tracing::warn!(provider = %spec.name, status = status.as_u16(), "upstream returned an error");
    match status.as_u16() {
        429 => GatewayError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "upstream_rate_limited",
            "The upstream provider is rate limiting requests. Please retry later.",
        )
        .with_retry_after(retry_after),
        401 | 403 => GatewayError::upstream_error(
            "The upstream provider rejected the gateway's credentials.",
        ),
        400 | 404 | 409 | 413 | 422 => {
            let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_REQUEST);
            let message = upstream_message(body)
                .map(|m| sanitize(&m, spec))
                .unwrap_or_else(|| "The upstream provider rejected the request.".to_owned());
            GatewayError::new(
                status,
                "invalid_request_error",
                "upstream_invalid_request",
                message,
            )
        }
        s => GatewayError::upstream_error(format!(
            "The upstream provider returned an error (HTTP {s})."
        )),
    }
}

/// `error.message` of an OpenAI- or Anthropic-shaped error body.
fn upstream_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("error")?.get("message")?.as_str().map(str::to_owned)
}

/// Removes anything credential-like and bounds the length.
#[must_use]
pub fn sanitize(message: &str, spec: &ProviderSpec) -> String {
    let mut out = message.to_owned();
    if let Some(key) = &spec.api_key
        && key.expose().len() >= 4
    {
        out = out.replace(key.expose(), "[REDACTED]");
    }
    let redacted: Vec<String> = out
        .split(' ')
        .map(|word| {
            let w = word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_');
            let secretish = (w.starts_with("sk-") && w.len() > 10)
                || (w.starts_with("key-") && w.len() > 10)
                || w.contains("key=")
                || w.starts_with("AIza")
                || (w.len() >= 32
                    && w.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
            if secretish {
                "[REDACTED]".to_owned()
            } else {
                word.to_owned()
            }
        })
        .collect();
    let mut out = redacted.join(" ");
    if let Some(i) = out.to_lowercase().find("bearer ") {
        out.truncate(i);
        out.push_str("[REDACTED]");
    }
    if out.chars().count() > MAX_ERROR_MESSAGE {
        out = out.chars().take(MAX_ERROR_MESSAGE).collect::<String>() + "…";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aihub_core::config::ProviderKind;
    use aihub_core::secret::Secret;
    use aihub_service::catalog::Source;

    fn spec() -> ProviderSpec {
        ProviderSpec {
            name: "p".into(),
            kind: ProviderKind::Openai,
            base_url: None,
            api_key: Some(Secret::new("prov-secret-123".into())),
            api_key_env: None,
            api_key_file: None,
            api_version: None,
            connect_timeout: Duration::from_secs(1),
            first_byte_timeout: Duration::from_secs(1),
            total_timeout: Duration::from_secs(1),
            mock_latency: Duration::ZERO,
            mock_chunk_interval: Duration::ZERO,
            source: Source::Config,
        }
    }

    #[test]
    fn the_host_header_is_worked_out_once_for_plain_http_urls_only() {
        let host = |url: &str| {
            host_header(&url.parse().unwrap())
                .map(|(a, v)| (a.to_string(), v.to_str().unwrap().to_owned()))
        };
        let pair = |a: &str, v: &str| Some((a.to_owned(), v.to_owned()));
        assert_eq!(
            host("http://127.0.0.1:9/v1"),
            pair("127.0.0.1:9", "127.0.0.1:9")
        );
        assert_eq!(
            host("http://llm.internal/v1"),
            pair("llm.internal", "llm.internal")
        );
        // The scheme's default port is left out, as hyper does; never the user info.
        assert_eq!(
            host("http://llm.internal:80/v1"),
            pair("llm.internal:80", "llm.internal")
        );
        assert_eq!(
            host("http://u:p@[::1]:8000/v1"),
            pair("u:p@[::1]:8000", "[::1]:8000")
        );
        // HTTPS may become HTTP/2, which has no Host header: left to hyper.
        assert_eq!(host("https://api.openai.com/v1"), None);

        let upstream = Upstream::new(Arc::new(spec())).unwrap();
        upstream.url("http://10.0.0.1:8000/v1/embeddings").unwrap();
        upstream.url("http://10.0.0.2/v1/embeddings").unwrap();
        let (authority, value) = upstream.host.get().unwrap();
        assert_eq!(
            (authority.as_str(), value.to_str().unwrap()),
            ("10.0.0.1:8000", "10.0.0.1:8000")
        );
    }

    #[test]
    fn endpoint_urls_are_parsed_once_and_bad_ones_refuse_the_provider() {
        let good = Arc::new(ProviderSpec {
            base_url: Some("http://127.0.0.1:9/v1".into()),
            ..spec()
        });
        let upstream = Upstream::new(good.clone()).unwrap();
        assert_eq!(
            upstream
                .url("http://127.0.0.1:9/v1/chat/completions")
                .unwrap()
                .path(),
            "/v1/chat/completions"
        );
        assert!(crate::providers::openai::OpenAi::new(good).is_ok());
        let bad = Arc::new(ProviderSpec {
            base_url: Some("not a url".into()),
            ..spec()
        });
        for bad_url in [
            "not a url/chat/completions",
            "/v1/chat/completions",
            "ftp://127.0.0.1/v1/chat/completions",
            "127.0.0.1:9",
        ] {
            let e = upstream.url(bad_url).unwrap_err();
            assert_eq!(e.code, "upstream_unavailable", "{bad_url}");
        }
        assert!(upstream.url("https://api.example.com/v1/messages").is_ok());
        assert!(crate::providers::openai::OpenAi::new(bad.clone()).is_err());
        assert!(crate::providers::anthropic::Anthropic::new(bad).is_err());
    }

    #[test]
    fn a_timeout_anywhere_in_the_causes_is_a_timeout() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("tcp connect error")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let timed_out = Outer(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "deadline has elapsed",
        ));
        assert!(caused_by_timeout(&timed_out));
        assert_eq!(
            ErrorChain(&timed_out).to_string(),
            "tcp connect error: deadline has elapsed"
        );
        let refused = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(!caused_by_timeout(&refused));
    }

    #[tokio::test]
    async fn refused_and_failed_tls_connections_are_unavailable() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let upstream = Upstream::new(Arc::new(spec())).unwrap();
        let url = upstream
            .url(&format!("http://127.0.0.1:{port}/v1/chat/completions"))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let e = upstream
            .post(&url, HeaderMap::new(), b"{}".to_vec(), deadline)
            .await
            .unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_GATEWAY, "upstream_unavailable")
        );
        assert_eq!(e.message, "Could not connect to the upstream provider.");

        // https goes through TLS: a server that answers in plain HTTP fails the handshake.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                    .await;
            }
        });
        let url = upstream
            .url(&format!("https://127.0.0.1:{port}/v1/chat/completions"))
            .unwrap();
        let e = upstream
            .post(&url, HeaderMap::new(), b"{}".to_vec(), deadline)
            .await
            .unwrap_err();
        assert_eq!(e.code, "upstream_unavailable");
    }

    #[test]
    fn messages_lose_their_secrets() {
        let s = spec();
        let m = sanitize(
            "Incorrect API key provided: sk-proj-abcdefghijklmnop. Also prov-secret-123 here",
            &s,
        );
        assert!(
            !m.contains("abcdefghijklmnop") && !m.contains("prov-secret-123"),
            "{m}"
        );
        let m = sanitize("header was Authorization: Bearer abc.def", &s);
        assert!(!m.contains("abc.def"), "{m}");
        let m = sanitize(&"x ".repeat(1000), &s);
        assert!(m.chars().count() <= MAX_ERROR_MESSAGE + 1);
        assert_eq!(
            sanitize("max_tokens is too large", &s),
            "max_tokens is too large"
        );
    }

    #[test]
    fn statuses_map_as_documented() {
        let s = spec();
        let body = br#"{"error":{"message":"bad value sk-live-aaaaaaaaaaaaaaaa","type":"invalid_request_error"}}"#;
        let e = map_upstream_error(&s, StatusCode::BAD_REQUEST, body, None);
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_REQUEST, "upstream_invalid_request")
        );
        assert!(!e.message.contains("aaaaaaaa"));
        let e = map_upstream_error(&s, StatusCode::TOO_MANY_REQUESTS, b"", Some(7));
        assert_eq!(
            (e.status, e.retry_after),
            (StatusCode::TOO_MANY_REQUESTS, Some(7))
        );
        let e = map_upstream_error(&s, StatusCode::UNAUTHORIZED, body, None);
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_GATEWAY, "upstream_error")
        );
        let e = map_upstream_error(&s, StatusCode::INTERNAL_SERVER_ERROR, body, None);
        assert_eq!(e.status, StatusCode::BAD_GATEWAY);
        assert!(
            !e.message.contains("bad value"),
            "5xx bodies are not passed on"
        );
        let e = map_upstream_error(&s, StatusCode::NOT_FOUND, b"not json", None);
        assert_eq!(e.message, "The upstream provider rejected the request.");
    }
}
