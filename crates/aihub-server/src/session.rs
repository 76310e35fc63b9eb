//! Session authentication for the management API and the session cookie.
//!
//! A session is presented either as `Authorization: Bearer aihub-sess-…` (API clients) or as the
//! session cookie (the dashboard). Every `/api/v1` route requires one, except those in
//! [`PUBLIC_ROUTES`]. Cookie-authenticated writes must also come from our own origin
//! (`Sec-Fetch-Site` / `Origin` checks), on top of `SameSite=Lax` and JSON-only bodies.

use aihub_service::accounts::Actor;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use crate::error::ApiError;
use crate::state::AppState;

/// Routes that answer without a session. Everything else under `/api/v1` requires one.
pub const PUBLIC_ROUTES: &[&str] = &["/api/v1/auth/register", "/api/v1/auth/login"];

/// Cookie name over plain HTTP (development).
pub const COOKIE_NAME: &str = "aihub_session";
/// Cookie name over HTTPS: the `__Host-` prefix pins it to our host, path `/`, `Secure`.
pub const SECURE_COOKIE_NAME: &str = "__Host-aihub_session";

/// How the session was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionSource {
    Header,
    Cookie,
}

/// Finds a session token in the request.
pub fn session_token(headers: &HeaderMap) -> Option<(String, SessionSource)> {
    if let Some(v) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Some(token) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
    {
        return Some((token.trim().to_owned(), SessionSource::Header));
    }
    for header in headers.get_all(COOKIE) {
        let Ok(s) = header.to_str() else { continue };
        for pair in s.split(';') {
            if let Some((name, value)) = pair.trim().split_once('=')
                && (name == COOKIE_NAME || name == SECURE_COOKIE_NAME)
                && !value.is_empty()
            {
                return Some((value.to_owned(), SessionSource::Cookie));
            }
        }
    }
    None
}

/// Requires a valid session on every `/api/v1` route not listed in [`PUBLIC_ROUTES`].
pub async fn require_session(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let public = req
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|p| PUBLIC_ROUTES.contains(&p.as_str()));
    if public {
        return next.run(req).await;
    }
    let Some((token, source)) = session_token(req.headers()) else {
        return ApiError::unauthorized().into_response();
    };
    if source == SessionSource::Cookie
        && !is_safe(req.method())
        && !same_origin(req.headers(), state.config.server.public_url.as_deref())
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf_failed",
            "cross-site request refused: cookie-authenticated changes must come from this site",
        )
        .into_response();
    }
    let (parts, body) = req.into_parts();
    let client = crate::extract::client_of(&parts, &state).info;
    let mut req = Request::from_parts(parts, body);
    match state.services.accounts.authenticate(&token, client).await {
        Ok(actor) => {
            req.extensions_mut().insert::<Actor>(actor);
            req.extensions_mut().insert(source);
            next.run(req).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether a browser request comes from our own origin (`Sec-Fetch-Site`, else `Origin` against
/// `server.public_url` or the `Host`). Non-browser clients send neither header and are not a
/// CSRF vector. The JSON API and the dashboard's form check share this rule.
#[must_use]
pub fn same_origin(headers: &HeaderMap, public_url: Option<&str>) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return site == "same-origin" || site == "none";
    }
    let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if let Some(public) = public_url
        && origin.eq_ignore_ascii_case(public.trim_end_matches('/'))
    {
        return true;
    }
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or(origin);
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

/// `Set-Cookie` for a new session.
pub fn session_cookie(
    token: &str,
    expires_at: DateTime<Utc>,
    secure: bool,
) -> Option<(axum::http::HeaderName, HeaderValue)> {
    let max_age = (expires_at - Utc::now()).num_seconds().max(0);
    let value = if secure {
        format!(
            "{SECURE_COOKIE_NAME}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax; Secure"
        )
    } else {
        format!("{COOKIE_NAME}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax")
    };
    HeaderValue::from_str(&value).ok().map(|v| (SET_COOKIE, v))
}

/// `Set-Cookie` that removes the session cookie.
#[must_use]
pub fn clear_cookie(secure: bool) -> (axum::http::HeaderName, HeaderValue) {
    let value = if secure {
        HeaderValue::from_static(
            "__Host-aihub_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; Secure",
        )
    } else {
        HeaderValue::from_static("aihub_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax")
    };
    (SET_COOKIE, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_header_or_cookie() {
        let mut h = HeaderMap::new();
        assert_eq!(session_token(&h), None);
        h.insert(
            COOKIE,
            HeaderValue::from_static("theme=dark; aihub_session=abc"),
        );
        assert_eq!(
            session_token(&h),
            Some(("abc".into(), SessionSource::Cookie))
        );
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer xyz"));
        assert_eq!(
            session_token(&h),
            Some(("xyz".into(), SessionSource::Header))
        );
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("__Host-aihub_session=s"));
        assert_eq!(session_token(&h), Some(("s".into(), SessionSource::Cookie)));
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("aihub_session="));
        assert_eq!(session_token(&h), None);
    }

    #[test]
    fn cookies_carry_the_required_attributes() {
        let exp = Utc::now() + chrono::Duration::hours(1);
        let (_, plain) = session_cookie("t", exp, false).unwrap();
        let plain = plain.to_str().unwrap();
        assert!(plain.starts_with("aihub_session=t;"));
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Lax"));
        assert!(!plain.contains("Secure"));
        let (_, secure) = session_cookie("t", exp, true).unwrap();
        let secure = secure.to_str().unwrap();
        assert!(secure.starts_with("__Host-aihub_session=t;") && secure.ends_with("Secure"));
        assert!(clear_cookie(true).1.to_str().unwrap().contains("Max-Age=0"));
    }
}
