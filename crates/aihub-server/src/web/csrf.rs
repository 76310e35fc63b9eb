//! CSRF protection for every dashboard form. Two checks run on every unsafe request to a page,
//! before any handler (so a new form is protected without doing anything):
//!
//! 1. the same-origin check of the JSON API (`Sec-Fetch-Site`, else `Origin`);
//! 2. a token in the form's hidden `csrf` field, derived from a secret the browser holds in an
//!    `HttpOnly` cookie: the session token once signed in, before that a random pre-session
//!    cookie (so sign-in and sign-up forms are covered too). Another site can neither read the
//!    cookie nor the page, so it cannot produce the token.
//!
//! The token is `SHA-256(label ‖ secret)` of a 256-bit random secret. It needs no server-side
//! key or state, so it holds across restarts and instances, and it dies with the session.

use aihub_service::crypto;
use axum::body::{Body, to_bytes};
use axum::extract::{FromRequest, Request, State};
use axum::http::header::{CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde::Deserialize;

use super::i18n::{Lang, cookie};
use super::pages::error_page;
use crate::session::{COOKIE_NAME, SECURE_COOKIE_NAME};
use crate::state::AppState;

/// The hidden form field carrying the token.
pub const FIELD: &str = "csrf";
/// The pre-session secret's cookie over plain HTTP.
pub const PRE_SESSION_COOKIE: &str = "aihub_csrf";
/// The pre-session secret's cookie over HTTPS (`__Host-`: our host only, `Secure`, path `/`).
pub const SECURE_PRE_SESSION_COOKIE: &str = "__Host-aihub_csrf";
/// Largest form body a page accepts.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

const LABEL: &[u8] = b"aihub-dashboard-csrf-v1\0";

/// The session token from the session cookie (never from an `Authorization` header: the
/// dashboard is a browser surface).
#[must_use]
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SECURE_COOKIE_NAME).or_else(|| cookie(headers, COOKIE_NAME))
}

/// The secret this browser's form tokens are bound to, if it holds one.
#[must_use]
pub fn secret_of(headers: &HeaderMap) -> Option<String> {
    session_cookie(headers)
        .or_else(|| cookie(headers, SECURE_PRE_SESSION_COOKIE))
        .or_else(|| cookie(headers, PRE_SESSION_COOKIE))
}

/// The form token for `secret`.
#[must_use]
pub fn token_for(secret: &str) -> String {
    let mut input = Vec::with_capacity(LABEL.len() + secret.len());
    input.extend_from_slice(LABEL);
    input.extend_from_slice(secret.as_bytes());
    crypto::base62(&crypto::sha256(&input), 43)
}

/// Whether `presented` is the token for `secret`, compared in constant time.
#[must_use]
pub fn verify(secret: &str, presented: &str) -> bool {
    crypto::digest_eq(token_for(secret).as_bytes(), presented.as_bytes())
}

/// The secret for a page that shows a form, minting a pre-session one (and its `Set-Cookie`)
/// when the browser has none yet.
pub fn secret_or_mint(
    headers: &HeaderMap,
    tls: bool,
) -> Result<(String, Option<(HeaderName, HeaderValue)>), aihub_service::ServiceError> {
    if let Some(secret) = secret_of(headers) {
        return Ok((secret, None));
    }
    let secret = crypto::base62(&crypto::random_bytes::<32>()?, 43);
    let value = if tls {
        format!("{SECURE_PRE_SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax; Secure")
    } else {
        format!("{PRE_SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax")
    };
    let header = HeaderValue::from_str(&value).ok().map(|v| (SET_COOKIE, v));
    Ok((secret, header))
}

#[derive(Deserialize)]
struct TokenField {
    csrf: Option<String>,
}

/// Refuses, with a 403 page, every unsafe request that fails either check. The form body is
/// read here (up to [`MAX_FORM_BYTES`]) and handed on unchanged.
pub async fn protect(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let lang = Lang::negotiate(req.headers());
    let refused = || error_page(lang, StatusCode::FORBIDDEN, "csrf_failed", None);
    if !crate::session::same_origin(req.headers(), state.config.server.public_url.as_deref()) {
        return refused();
    }
    let Some(secret) = secret_of(req.headers()) else {
        return refused();
    };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_FORM_BYTES).await else {
        return error_page(
            lang,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            None,
        );
    };
    let mut probe = Request::new(Body::from(bytes.clone()));
    *probe.method_mut() = Method::POST;
    if let Some(ct) = parts.headers.get(CONTENT_TYPE) {
        probe.headers_mut().insert(CONTENT_TYPE, ct.clone());
    }
    let presented = match axum::Form::<TokenField>::from_request(probe, &()).await {
        Ok(axum::Form(TokenField { csrf: Some(t) })) => t,
        _ => return refused(),
    };
    if !verify(&secret, &presented) {
        return refused();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_their_secret() {
        let a = token_for("secret-a");
        assert_eq!(a.len(), 43);
        assert_eq!(a, token_for("secret-a"));
        assert_ne!(a, token_for("secret-b"));
        assert!(verify("secret-a", &a));
        assert!(!verify("secret-b", &a));
        assert!(!verify("secret-a", ""));
        assert!(!verify("secret-a", &a[..42]));
    }

    #[test]
    fn the_session_cookie_wins_over_the_pre_session_one() {
        let mut h = HeaderMap::new();
        assert_eq!(secret_of(&h), None);
        h.insert("cookie", HeaderValue::from_static("aihub_csrf=pre"));
        assert_eq!(secret_of(&h).as_deref(), Some("pre"));
        h.insert(
            "cookie",
            HeaderValue::from_static("aihub_csrf=pre; aihub_session=sess"),
        );
        assert_eq!(secret_of(&h).as_deref(), Some("sess"));
        // A bearer header is not a browser secret.
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer x"));
        assert_eq!(secret_of(&h), None);
    }

    #[test]
    fn minting_happens_once() {
        let (secret, cookie) = secret_or_mint(&HeaderMap::new(), true).unwrap();
        let cookie = cookie.unwrap().1;
        let cookie = cookie.to_str().unwrap();
        assert!(cookie.starts_with(&format!("__Host-aihub_csrf={secret};")));
        assert!(cookie.contains("HttpOnly") && cookie.ends_with("Secure"));
        let mut h = HeaderMap::new();
        h.insert(
            "cookie",
            HeaderValue::from_str(&format!("aihub_csrf={secret}")).unwrap(),
        );
        let (again, none) = secret_or_mint(&h, false).unwrap();
        assert_eq!(again, secret);
        assert!(none.is_none());
    }

    #[test]
    fn cross_site_requests_are_told_apart() {
        let check = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (n, v) in pairs {
                h.insert(*n, HeaderValue::from_static(v));
            }
            crate::session::same_origin(&h, Some("https://hub.example.com/"))
        };
        assert!(check(&[]));
        assert!(check(&[("sec-fetch-site", "same-origin")]));
        assert!(!check(&[("sec-fetch-site", "cross-site")]));
        assert!(!check(&[("sec-fetch-site", "same-site")]));
        assert!(check(&[("origin", "https://hub.example.com")]));
        assert!(check(&[("origin", "http://h:1"), ("host", "h:1")]));
        assert!(!check(&[
            ("origin", "https://evil.example"),
            ("host", "h:1")
        ]));
    }
}
