//! The layer on every response: a gateway-minted request id (UUIDv7) as `x-request-id` and in
//! the log span, one access-log line, and security headers.

use std::net::IpAddr;
use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use uuid::Uuid;

/// The id of one request, minted here — never taken from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId(pub Uuid);

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The one layer every request passes (one layer, not three, because each layer costs a boxed
/// future and a state clone per request):
/// - mints the request id, runs the request inside a span that carries it, returns it as
///   `x-request-id` and logs one line. Only the method and path are logged: never headers,
///   query strings or bodies, which may hold credentials;
/// - adds the security headers, and `Cache-Control: no-store` on the JSON API;
/// - closes the connection after a 413 (`Connection: close`): the refused body was not read;
/// - adds `Strict-Transport-Security` to responses to requests that came over HTTPS (as far as
///   the server can tell: `server.public_url`, `server.secure_cookies`, or
///   `X-Forwarded-Proto: https` from a trusted proxy). Browsers ignore it over plain HTTP.
///
/// The `/v1` calls that go straight to their handler (see [`crate::serve`]) get the same
/// through [`Edge`] without the layer.
pub async fn edge(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    req: Request,
    next: Next,
) -> Response {
    let (edge, req) = Edge::begin(&state, req);
    let resp = next.run(req).instrument(edge.span.clone()).await;
    edge.finish(resp)
}

/// What the edge keeps of a request until its response: [`Edge::begin`] (router) or
/// [`Edge::open`] (the direct `/v1` path) when it arrives, [`Edge::finish`] on its response.
pub struct Edge {
    pub id: RequestId,
    /// The request's span: run the request in it.
    pub span: tracing::Span,
    is_api: bool,
    tls: bool,
    start: Instant,
}

impl Edge {
    /// For a request through the router: [`Edge::open`], with the request id also put in the
    /// request's extensions (handlers and audit rows read it there).
    pub fn begin(state: &crate::state::AppState, mut req: Request) -> (Self, Request) {
        let peer = crate::extract::peer_ip(req.extensions());
        let edge = Self::open(state, req.method(), req.uri().path(), req.headers(), peer);
        req.extensions_mut().insert(edge.id);
        (edge, req)
    }

    /// Mints the request id and opens the span, for a request from `peer` (its TCP peer, which
    /// decides whether its `X-Forwarded-Proto` is trusted).
    pub fn open(
        state: &crate::state::AppState,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Self {
        let id = RequestId(Uuid::now_v7());
        let span = tracing::info_span!(
            "request",
            request_id = %id.0,
            method = %method,
            path = %path,
        );
        Self {
            id,
            span,
            is_api: path.starts_with("/api/"),
            tls: crate::extract::is_tls_from(headers, peer, state),
            start: Instant::now(),
        }
    }

    /// Adds the edge's headers to the response and logs the request's line.
    pub fn finish(self, mut resp: Response) -> Response {
        let status = resp.status();
        let h = resp.headers_mut();
        if let Some(v) = aihub_gateway::request_id_value(self.id.0) {
            h.insert(X_REQUEST_ID.clone(), v);
        }
        for (name, value) in &SECURITY_HEADERS {
            h.entry(name)
                .or_insert_with(|| HeaderValue::from_static(value));
        }
        if self.is_api {
            h.entry(header::CACHE_CONTROL)
                .or_insert_with(|| HeaderValue::from_static("no-store"));
        }
        // A body refused for its size was not read to its end, so the connection cannot carry
        // another request: say so, or a client reusing it races the close and sees a broken
        // reply.
        if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.tls {
            h.insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000; includeSubDomains"),
            );
        }
        let status = status.as_u16();
        let latency_us = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.span
            .in_scope(|| tracing::info!(status, latency_us, "request finished"));
        resp
    }
}

/// Set on every response that does not carry its own.
static SECURITY_HEADERS: [(HeaderName, &str); 6] = [
    (header::CONTENT_SECURITY_POLICY, CSP),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    ),
    (
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    ),
];

/// Content-Security-Policy for everything we serve: our own assets only, no framing.
pub const CSP: &str = "default-src 'self'; object-src 'none'; base-uri 'none'; \
                       frame-ancestors 'none'; form-action 'self'";
