//! The web dashboard, served at `/` by the same binary: server-rendered pages (askama templates
//! in `templates/`, checked at compile time), our own CSS and JS embedded under `/assets/`,
//! English and Simplified Chinese (`i18n`).
//!
//! Pages call the same services as the JSON API, with the same `OrgScope` capability; the
//! services decide what a role may do, and a refusal is rendered as an error page. Pages need
//! the session cookie; without a valid one they redirect to `/login`. Every unsafe request
//! passes the CSRF checks in [`csrf::protect`] before reaching a handler.

pub mod assets;
pub mod auth;
pub mod chart;
pub mod csrf;
pub mod i18n;
pub mod invitations;
pub mod keys;
pub mod overview;
pub mod pages;
pub mod progress;
pub mod usage;

use axum::Router;
use axum::extract::{Path, Query, Request};
use axum::http::header::{CACHE_CONTROL, SET_COOKIE, VARY};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::Response;
use axum::routing::{get, post};

use crate::extract::Client;
use crate::state::AppState;
use i18n::{LANG_COOKIE, Lang};
use pages::{NextQuery, error_page, local_path, redirect};

/// The dashboard's routes. They sit outside `/api/v1` and its `require_session` layer: pages
/// authenticate with [`pages::Session`] and redirect to `/login` instead of answering 401.
pub fn router(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/", get(overview::show))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/signup", get(auth::signup_page).post(auth::signup))
        .route("/logout", post(auth::logout))
        .route("/keys", get(keys::list).post(keys::create))
        .route(
            "/keys/{id}/revoke",
            get(keys::confirm_revoke).post(keys::revoke),
        )
        .route(
            "/invitations/accept",
            get(invitations::show).post(invitations::accept),
        )
        .route("/invitations/decline", post(invitations::decline))
        .route("/usage", get(usage::show))
        .route("/usage.csv", get(usage::csv))
        .route("/lang/{tag}", get(set_lang))
        .layer(from_fn_with_state(state, csrf::protect))
        .layer(from_fn(private_pages));
    pages.merge(assets::router())
}

/// Pages carry CSRF tokens, and one shows a new key's secret: never stored by a cache. They
/// differ by language (cookie or `Accept-Language`).
async fn private_pages(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(VARY, HeaderValue::from_static("Cookie, Accept-Language"));
    resp
}

/// The language switcher: remembers the choice in the `lang` cookie for a year and goes back to
/// the page it was chosen on. A display preference kept by the browser, so a plain link.
async fn set_lang(
    Path(tag): Path<String>,
    Query(q): Query<NextQuery>,
    client: Client,
    headers: HeaderMap,
) -> Response {
    let Some(lang) = Lang::ALL.into_iter().find(|l| l.tag() == tag) else {
        return error_page(
            Lang::negotiate(&headers),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        );
    };
    let secure = if client.tls { "; Secure" } else { "" };
    let cookie = format!(
        "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax{secure}",
        lang.tag()
    );
    let mut resp = redirect(&local_path(q.next.as_deref()));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(SET_COOKIE, v);
    }
    resp
}
