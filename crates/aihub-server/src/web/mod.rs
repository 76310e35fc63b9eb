//! The web dashboard, served at `/` by the same binary: server-rendered pages (askama templates
//! in `templates/`, checked at compile time), our own CSS and JS embedded under `/assets/`,
//! English and Simplified Chinese (`i18n`).
//!
//! Pages call the same services as the JSON API, with the same `OrgScope` capability; the
//! services decide what a role may do, and a refusal is rendered as an error page. Pages need
//! the session cookie; without a valid one they redirect to `/login`. Every unsafe request
//! passes the CSRF checks in [`csrf::protect`] before reaching a handler.

pub mod account;
pub mod admin;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod budgets;
pub mod chart;
pub mod csrf;
pub mod i18n;
pub mod invitations;
pub mod keys;
pub mod limits;
pub mod org;
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
        .route("/org", get(org::settings))
        .route("/org/rename", post(org::rename))
        .route("/org/create", post(org::create))
        .route("/org/leave", post(org::leave))
        .route("/org/transfer", post(org::transfer))
        .route("/org/delete", post(org::delete))
        .route("/org/members", get(org::members))
        .route("/org/members/{user_id}", post(org::update_member))
        .route(
            "/org/members/{user_id}/remove",
            get(org::confirm_remove_member).post(org::remove_member),
        )
        .route("/org/teams", get(org::teams).post(org::create_team))
        .route(
            "/org/teams/{team_id}",
            get(org::team).post(org::rename_team),
        )
        .route("/org/teams/{team_id}/members", post(org::add_team_member))
        .route(
            "/org/teams/{team_id}/members/{user_id}/remove",
            post(org::remove_team_member),
        )
        .route(
            "/org/teams/{team_id}/delete",
            get(org::confirm_delete_team).post(org::delete_team),
        )
        .route("/org/invitations", get(org::invitations).post(org::invite))
        .route(
            "/org/invitations/{invitation_id}/resend",
            post(org::resend_invitation),
        )
        .route(
            "/org/invitations/{invitation_id}/revoke",
            post(org::revoke_invitation),
        )
        .route("/account", get(account::show))
        .route("/account/password", post(account::change_password))
        .route("/audit", get(audit::show))
        .route("/audit/export", get(audit::export))
        .route("/admin", get(admin::index))
        .route("/admin/users", get(admin::users::list))
        .route(
            "/admin/users/{id}/disable",
            get(admin::users::confirm_disable).post(admin::users::disable),
        )
        .route("/admin/users/{id}/enable", post(admin::users::enable))
        .route("/admin/orgs", get(admin::orgs::list))
        .route("/admin/orgs/{id}/plan", post(admin::orgs::assign_plan))
        .route(
            "/admin/plans",
            get(admin::plans::list).post(admin::plans::create),
        )
        .route(
            "/admin/plans/{id}",
            get(admin::plans::edit).post(admin::plans::update),
        )
        .route(
            "/admin/providers",
            get(admin::catalog::providers).post(admin::catalog::create_provider),
        )
        .route(
            "/admin/providers/{name}",
            get(admin::catalog::edit_provider).post(admin::catalog::update_provider),
        )
        .route(
            "/admin/models",
            get(admin::catalog::models).post(admin::catalog::create_model),
        )
        .route(
            "/admin/models/{name}",
            get(admin::catalog::edit_model).post(admin::catalog::update_model),
        )
        .route(
            "/admin/prices",
            get(admin::catalog::prices).post(admin::catalog::add_price),
        )
        .route("/keys/{id}", get(keys::show).post(keys::update))
        .route("/keys/{id}/limits", post(keys::set_limits))
        .route("/keys/{id}/budget", post(keys::set_budget))
        .route("/keys/{id}/budget/delete", post(keys::remove_budget))
        .route(
            "/keys/{id}/rotate",
            get(keys::confirm_rotate).post(keys::rotate),
        )
        .route("/budgets", get(budgets::list).post(budgets::create))
        .route("/budgets/{id}", get(budgets::show).post(budgets::update))
        .route("/budgets/{id}/rotate-secret", post(budgets::rotate_secret))
        .route("/budgets/{id}/delete", post(budgets::delete))
        .route("/limits", get(limits::list).post(limits::create))
        .route("/limits/{id}", post(limits::update))
        .route("/limits/{id}/delete", post(limits::delete))
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
