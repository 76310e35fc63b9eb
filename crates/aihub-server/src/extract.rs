//! Extractors whose rejections speak the API's error shape: JSON bodies, paths, queries, the
//! signed-in user, and where the request came from.

use std::net::{IpAddr, SocketAddr};

use aihub_service::accounts::{Actor, ClientInfo};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body. Malformed JSON is 400 `invalid_json`; a body of the wrong shape (wrong types,
/// missing or unknown fields) is 422 `invalid_request`; a missing `Content-Type:
/// application/json` is 415; a body over `server.max_body_bytes` is 413.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

pub(crate) fn json_rejection(rejection: &JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            // serde's message names the offending field and what was expected.
            std::error::Error::source(e).map_or_else(|| e.body_text(), ToString::to_string),
        ),
        JsonRejection::JsonSyntaxError(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the request body is not valid JSON",
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `Content-Type: application/json`",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is too large",
            )
        }
        _ => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "the request body could not be read",
        ),
    }
}

/// Path parameters. An id that does not parse names no object: 404, like an id of another
/// organization.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| Self(v))
            .map_err(|_: PathRejection| ApiError::not_found())
    }
}

/// Query parameters; a bad one is 400 `invalid_query`.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(|e: QueryRejection| {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text())
            })
    }
}

/// The signed-in user, put in place by the session middleware. Missing only on a public route,
/// where asking for it is a bug: answered 401.
pub struct CurrentUser(pub Actor);

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Actor>()
            .cloned()
            .map(Self)
            .ok_or_else(ApiError::unauthorized)
    }
}

/// The client's address (behind trusted proxies, the first untrusted hop of
/// `X-Forwarded-For`), its user agent, and whether it reached us over TLS.
pub struct Client {
    pub info: ClientInfo,
    pub tls: bool,
}

impl FromRequestParts<AppState> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(client_of(parts, state))
    }
}

pub(crate) fn client_of(parts: &Parts, state: &AppState) -> Client {
    let server = &state.config.server;
    let peer = peer_ip(&parts.extensions);
    let ip = if from_trusted_proxy(peer, state) {
        forwarded_client(parts, &server.trusted_proxies).or(peer)
    } else {
        peer
    };
    Client {
        info: ClientInfo {
            ip,
            user_agent: parts
                .headers
                .get(axum::http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            request_id: parts
                .extensions
                .get::<crate::middleware::RequestId>()
                .map(|id| id.0),
        },
        tls: is_tls(parts, state),
    }
}

/// The TCP peer's address, which the serve loop puts in the extensions of every request that
/// goes through the router.
pub(crate) fn peer_ip(extensions: &Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip())
}

fn from_trusted_proxy(peer: Option<IpAddr>, state: &AppState) -> bool {
    peer.is_some_and(|p| state.config.server.trusted_proxies.contains(&p))
}

/// Whether the client reached us over HTTPS, as far as the server can tell: configured so
/// (`server.secure_cookies`, an `https://` `server.public_url`) or told so by a trusted proxy
/// (`X-Forwarded-Proto: https`).
pub(crate) fn is_tls(parts: &Parts, state: &AppState) -> bool {
    is_tls_from(&parts.headers, peer_ip(&parts.extensions), state)
}

/// [`is_tls`] for a request with `headers` from the TCP peer `peer`.
pub(crate) fn is_tls_from(headers: &HeaderMap, peer: Option<IpAddr>, state: &AppState) -> bool {
    let server = &state.config.server;
    server.secure_cookies
        || server
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
        || (from_trusted_proxy(peer, state)
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("https")))
}

/// The right-most address in `X-Forwarded-For` that is not one of our proxies. Entries left of
/// it were written by the client and are never consulted; if that entry does not parse, there
/// is no trustworthy client address and the caller falls back to the peer.
fn forwarded_client(parts: &Parts, trusted: &[IpAddr]) -> Option<IpAddr> {
    let mut hops: Vec<&str> = Vec::new();
    for v in parts.headers.get_all("x-forwarded-for") {
        hops.extend(v.to_str().ok()?.split(',').map(str::trim));
    }
    for hop in hops.into_iter().rev() {
        let ip: IpAddr = hop.parse().ok()?;
        if !trusted.contains(&ip) {
            return Some(ip);
        }
    }
    None
}

/// For `#[serde(default, deserialize_with = "present")]` on an `Option<Option<T>>` field of an
/// edit body: absent leaves the field alone (`None`), present-and-null clears it
/// (`Some(None)`), a value sets it.
pub(crate) fn present<'de, T: serde::Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(xff: &[&str]) -> Parts {
        let mut b = axum::http::Request::builder();
        for v in xff {
            b = b.header("x-forwarded-for", *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn forwarded_for_is_read_from_the_right() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let trusted = [proxy];
        // The client forged a left-most entry; the proxy appended the real address.
        let p = parts(&["6.6.6.6, 203.0.113.5", "10.0.0.1"]);
        assert_eq!(
            forwarded_client(&p, &trusted),
            Some("203.0.113.5".parse().unwrap())
        );
        // Garbage on the client's side of the chain does not matter.
        let p = parts(&["not-an-ip, 203.0.113.5"]);
        assert_eq!(
            forwarded_client(&p, &trusted),
            Some("203.0.113.5".parse().unwrap())
        );
        // Garbage where the real address should be: no client address.
        let p = parts(&["203.0.113.5, garbage"]);
        assert_eq!(forwarded_client(&p, &trusted), None);
        assert_eq!(forwarded_client(&parts(&[]), &trusted), None);
        assert_eq!(forwarded_client(&parts(&["10.0.0.1"]), &trusted), None);
    }
}
