//! Sign-in, sign-up and sign-out pages. Sign-in sets the same session cookie as
//! `POST /api/v1/auth/login`; sign-out ends the session on the server.

use super::pages::Form;
use aihub_service::accounts::Registration;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::csrf;
use super::i18n::Lang;
use super::pages::{Ctx, Session, local_path, message_for, redirect, render, service_error_page};
use crate::error::ApiError;
use crate::extract::Client;
use crate::session::{clear_cookie, session_cookie};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    ctx: Ctx,
    email: String,
    next: String,
    notice: Option<&'static str>,
    error: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage {
    ctx: Ctx,
    email: String,
    name: String,
    error: Option<&'static str>,
    detail: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    created: Option<String>,
}

/// The sign-in form (or, when already signed in, straight on to `next`). Also mints the
/// pre-session CSRF secret if the browser has none.
pub async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: Client,
    Query(q): Query<LoginQuery>,
) -> Response {
    let lang = Lang::negotiate(&headers);
    if let Some(token) = csrf::session_cookie(&headers)
        && state
            .services
            .accounts
            .authenticate(&token, client.info.clone())
            .await
            .is_ok()
    {
        return redirect(&local_path(q.next.as_deref()));
    }
    let (secret, cookie) = match csrf::secret_or_mint(&headers, client.tls) {
        Ok(v) => v,
        Err(e) => return service_error_page(lang, e),
    };
    let next = local_path(q.next.as_deref());
    let page = LoginPage {
        ctx: Ctx::public(lang, &here("/login", &next), csrf::token_for(&secret)),
        email: String::new(),
        next,
        notice: q.created.map(|_| lang.strings().account_created),
        error: None,
    };
    with_cookie(render(StatusCode::OK, &page), cookie)
}

#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: SecretString,
    next: Option<String>,
}

/// Signs in through the accounts service (throttled and audited like the API) and sets the
/// session cookie.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: Client,
    Form(form): Form<LoginForm>,
) -> Response {
    let lang = Lang::negotiate(&headers);
    let next = local_path(form.next.as_deref());
    match state
        .services
        .accounts
        .login(&form.email, &form.password, &client.info)
        .await
    {
        Ok(outcome) => {
            let token = outcome.token.expose_secret();
            let mut resp = redirect(&next);
            if let Some((name, value)) =
                session_cookie(token, outcome.session.expires_at, client.tls)
            {
                resp.headers_mut().append(name, value);
            }
            resp
        }
        Err(e) => {
            let api = ApiError::from(e);
            let t = lang.strings();
            let secret = csrf::secret_of(&headers).unwrap_or_default();
            let page = LoginPage {
                ctx: Ctx::public(lang, &here("/login", &next), csrf::token_for(&secret)),
                email: form.email,
                next,
                notice: None,
                error: Some(message_for(t, api.status, api.code)),
            };
            render(api.status, &page)
        }
    }
}

/// The sign-up form.
pub async fn signup_page(headers: HeaderMap, client: Client) -> Response {
    let lang = Lang::negotiate(&headers);
    let (secret, cookie) = match csrf::secret_or_mint(&headers, client.tls) {
        Ok(v) => v,
        Err(e) => return service_error_page(lang, e),
    };
    let page = SignupPage {
        ctx: Ctx::public(lang, "/signup", csrf::token_for(&secret)),
        email: String::new(),
        name: String::new(),
        error: None,
        detail: None,
    };
    with_cookie(render(StatusCode::OK, &page), cookie)
}

#[derive(Deserialize)]
pub struct SignupForm {
    email: String,
    password: SecretString,
    #[serde(default)]
    name: String,
}

/// Creates the account (with its personal organization) and sends the user to sign in.
pub async fn signup(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: Client,
    Form(form): Form<SignupForm>,
) -> Response {
    let lang = Lang::negotiate(&headers);
    let name = form.name.trim().to_owned();
    let registration = Registration {
        email: form.email.clone(),
        password: form.password,
        name: (!name.is_empty()).then(|| name.clone()),
    };
    match state
        .services
        .accounts
        .register(registration, &client.info)
        .await
    {
        Ok(_) => redirect("/login?created=1"),
        Err(e) => {
            let api = ApiError::from(e);
            let t = lang.strings();
            let secret = csrf::secret_of(&headers).unwrap_or_default();
            let detail = (api.status == StatusCode::UNPROCESSABLE_ENTITY && lang == Lang::En)
                .then(|| api.message.clone());
            let page = SignupPage {
                ctx: Ctx::public(lang, "/signup", csrf::token_for(&secret)),
                email: form.email,
                name,
                error: Some(message_for(t, api.status, api.code)),
                detail,
            };
            render(api.status, &page)
        }
    }
}

/// Ends the session on the server and clears the cookie.
pub async fn logout(State(state): State<AppState>, session: Session) -> Response {
    if let Err(e) = state.services.accounts.logout(&session.actor).await {
        return session.error(e);
    }
    let mut resp = redirect("/login");
    let (name, value) = clear_cookie(session.tls);
    resp.headers_mut().append(name, value);
    resp
}

fn here(path: &str, next: &str) -> String {
    if next == "/" {
        path.to_owned()
    } else {
        format!("{path}?next={}", super::pages::urlencode(next))
    }
}

fn with_cookie(
    mut resp: Response,
    cookie: Option<(axum::http::HeaderName, axum::http::HeaderValue)>,
) -> Response {
    if let Some((name, value)) = cookie {
        resp.headers_mut().append(name, value);
    }
    resp
}
