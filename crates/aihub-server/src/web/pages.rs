//! What every page shares: the layout context ([`Ctx`]), the signed-in [`Session`] extractor
//! (redirecting to `/login` without one), rendering, redirects, the organization switcher, and
//! error pages whose status and code are those of the JSON API.

use std::str::FromStr;

use aihub_core::OrgId;
use aihub_service::ServiceError;
use aihub_service::accounts::Actor;
use aihub_service::orgs::{OrgScope, TenancyError};
use aihub_service::policy::Action;
use askama::Template;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::assets;
use super::csrf;
use super::i18n::{Lang, Strings};
use crate::error::ApiError;
use crate::extract::client_of;
use crate::state::AppState;

/// A form body, as axum's `Form` reads it, except that a malformed one (a missing field, a
/// number that is not one) answers the error page (422 `invalid_form`) in the visitor's
/// language instead of axum's plain-text rejection.
pub struct Form<T>(pub T);

impl<T, S> FromRequest<S> for Form<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let lang = Lang::negotiate(req.headers());
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(value)) => Ok(Form(value)),
            Err(rejection) => Err(error_page(
                lang,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_form",
                Some(rejection.body_text()),
            )),
        }
    }
}

/// `?org=…`: the organization a page shows (else the personal one).
#[derive(Debug, Deserialize)]
pub struct OrgQuery {
    pub org: Option<String>,
}

/// A form whose only field is the organization it acts in (deletions, revocations,
/// rotations, leaving).
#[derive(Debug, Deserialize)]
pub struct OrgForm {
    pub org: String,
}

/// `?next=…`: where to go after signing in or switching language.
#[derive(Debug, Deserialize)]
pub struct NextQuery {
    pub next: Option<String>,
}

/// One entry of the language switcher.
pub struct LangLink {
    pub tag: &'static str,
    pub name: &'static str,
    pub current: bool,
}

/// One entry of the organization switcher.
pub struct OrgChoice {
    pub id: String,
    pub name: String,
    pub personal: bool,
    pub selected: bool,
    /// Whether the viewer may read this organization's audit log (set for the selected one).
    pub can_audit: bool,
    /// Whether the viewer may see this organization's invitations (set for the selected one).
    pub can_invite: bool,
}

/// What the layout (`base.html`) needs on every page.
pub struct Ctx {
    pub t: &'static Strings,
    pub lang: Lang,
    /// This page's path and query, for the language links to come back to.
    pub here: String,
    /// The signed-in user's display name (their e-mail if they gave none).
    pub user: Option<String>,
    /// The token for this page's forms.
    pub csrf: String,
    /// Which navigation entry is current: `overview`, `keys`, or empty.
    pub nav: &'static str,
    pub orgs: Vec<OrgChoice>,
    /// Whether the viewer is a platform admin (the navigation shows the admin pages).
    pub platform_admin: bool,
    /// `?org=…` of the selected organization, for links between pages.
    pub org_query: String,
    pub css: &'static str,
    pub js: &'static str,
}

impl Ctx {
    /// The context of a page seen without signing in.
    #[must_use]
    pub fn public(lang: Lang, here: &str, csrf: String) -> Self {
        Self {
            t: lang.strings(),
            lang,
            here: here.to_owned(),
            user: None,
            csrf,
            nav: "",
            orgs: Vec::new(),
            platform_admin: false,
            org_query: String::new(),
            css: assets::css_url(),
            js: assets::js_url(),
        }
    }

    /// Where the organization switcher goes: the first page of the current section, so that a
    /// page about one object of the old organization is never asked for in the new one.
    #[must_use]
    pub fn section_path(&self) -> &'static str {
        match self.nav {
            "usage" => "/usage",
            "keys" => "/keys",
            "budgets" => "/budgets",
            "limits" => "/limits",
            "org" => "/org",
            "audit" => "/audit",
            _ => "/",
        }
    }

    #[must_use]
    pub fn langs(&self) -> Vec<LangLink> {
        Lang::ALL
            .into_iter()
            .map(|l| LangLink {
                tag: l.tag(),
                name: l.native_name(),
                current: l == self.lang,
            })
            .collect()
    }
}

/// A signed-in browser: the session cookie resolved by the accounts service. Without a valid
/// one, a page request is redirected to `/login` (with `?next=` for a `GET`).
pub struct Session {
    pub actor: Actor,
    pub lang: Lang,
    /// The token for this session's forms.
    pub csrf: String,
    /// Whether the browser reached us over HTTPS (for cookie attributes).
    pub tls: bool,
}

impl Session {
    /// The layout context for a page of this session.
    #[must_use]
    pub fn ctx(&self, here: &str, nav: &'static str) -> Ctx {
        let name = if self.actor.name.trim().is_empty() {
            self.actor.email.as_str().to_owned()
        } else {
            self.actor.name.clone()
        };
        Ctx {
            user: Some(name),
            nav,
            platform_admin: self.actor.is_platform_admin,
            ..Ctx::public(self.lang, here, self.csrf.clone())
        }
    }

    /// A page, or the error page for the service's refusal.
    #[must_use]
    pub fn page(&self, result: Result<impl Template, ServiceError>) -> Response {
        match result {
            Ok(page) => render(StatusCode::OK, &page),
            Err(e) => self.error(e),
        }
    }

    /// The page for a refusal of the tenancy services: spent invitations are `410`, refused
    /// organization changes `400`, the rest as [`Session::error`].
    #[must_use]
    pub fn tenancy_error(&self, e: TenancyError) -> Response {
        match e {
            TenancyError::Service(e) => self.error(e),
            TenancyError::Gone { code, .. } => {
                error_page_in(self.ctx("/", ""), StatusCode::GONE, code, None)
            }
            TenancyError::BadRequest { code, .. } => {
                error_page_in(self.ctx("/", ""), StatusCode::BAD_REQUEST, code, None)
            }
        }
    }

    /// An error page for a service refusal, in this session's language, with the navigation
    /// and the sign-out button.
    #[must_use]
    pub fn error(&self, e: ServiceError) -> Response {
        error_response(self.ctx("/", ""), e)
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let lang = Lang::negotiate(&parts.headers);
        let to_login = || {
            if parts.method == Method::GET {
                let here = parts
                    .uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_owned();
                if here == "/" {
                    redirect("/login")
                } else {
                    redirect(&format!("/login?next={}", urlencode(&here)))
                }
            } else {
                redirect("/login")
            }
        };
        let Some(token) = csrf::session_cookie(&parts.headers) else {
            return Err(to_login());
        };
        let client = client_of(parts, state);
        match state
            .services
            .accounts
            .authenticate(&token, client.info)
            .await
        {
            Ok(actor) => Ok(Session {
                actor,
                lang,
                csrf: csrf::token_for(&token),
                tls: client.tls,
            }),
            Err(ServiceError::Unauthenticated) => Err(to_login()),
            Err(e) => Err(service_error_page(lang, e)),
        }
    }
}

/// The organization a page shows (`?org=`, else the personal one, else the first), the
/// capability to act in it, and the switcher's entries.
pub async fn select_org(
    state: &AppState,
    session: &Session,
    requested: Option<&str>,
) -> Result<(OrgScope, Vec<OrgChoice>), ServiceError> {
    let memberships = state.services.orgs.list(&session.actor).await?;
    let id = match requested.filter(|s| !s.is_empty()) {
        Some(s) => path_id::<OrgId>(s)?,
        None => memberships
            .iter()
            .find(|m| m.org.is_personal)
            .or_else(|| memberships.first())
            .map(|m| m.org.id)
            .ok_or(ServiceError::NotFound)?,
    };
    let scope = state.services.orgs.scope(&session.actor, id).await?;
    let can_audit = scope.can(Action::AuditRead);
    let can_invite = scope.can(Action::InvitationsRead);
    let mut choices: Vec<OrgChoice> = memberships
        .iter()
        .map(|m| OrgChoice {
            id: m.org.id.to_string(),
            name: m.org.name.clone(),
            personal: m.org.is_personal,
            selected: m.org.id == id,
            can_audit: m.org.id == id && can_audit,
            can_invite: m.org.id == id && can_invite,
        })
        .collect();
    // A platform admin may look at an organization they are not a member of.
    if !choices.iter().any(|c| c.selected) {
        choices.push(OrgChoice {
            id: id.to_string(),
            name: scope.org().name.clone(),
            personal: scope.org().is_personal,
            selected: true,
            can_audit,
            can_invite,
        });
    }
    Ok((scope, choices))
}

/// An id from a path or a form field; one that does not parse names nothing here: not found.
pub fn path_id<T: FromStr>(raw: &str) -> Result<T, ServiceError> {
    T::from_str(raw.trim()).map_err(|_| ServiceError::NotFound)
}

/// A comma-separated form field (`a, b`), trimmed, empty entries dropped.
#[must_use]
pub fn comma_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A model allow-list field: `None` (every model) when it names none.
#[must_use]
pub fn model_list(raw: &str) -> Option<Vec<String>> {
    Some(comma_list(raw)).filter(|m| !m.is_empty())
}

/// Renders a page as `text/html`.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => (
            status,
            [(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// `303 See Other` to a path of ours.
#[must_use]
pub fn redirect(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

/// `next` if it is a path on this site, else `/`: never an open redirect.
#[must_use]
pub fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.starts_with("/\\")
                && !p.chars().any(char::is_control) =>
        {
            p.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// Percent-encodes everything but unreserved characters and `/`.
#[must_use]
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    ctx: Ctx,
    message: &'static str,
    code: &'static str,
    detail: Option<String>,
}

/// The translated message for an error code of the API (docs/errors.md).
#[must_use]
pub fn message_for(t: &'static Strings, status: StatusCode, code: &str) -> &'static str {
    match code {
        "invalid_credentials" => t.err_invalid_credentials,
        "too_many_attempts" => t.err_too_many_attempts,
        "account_disabled" => t.err_account_disabled,
        "registration_disabled" => t.err_registration_disabled,
        "email_taken" => t.err_email_taken,
        "invalid_email" => t.err_invalid_email,
        "invalid_password" => t.err_invalid_password,
        "unauthorized" => t.err_unauthorized,
        "forbidden" => t.err_forbidden,
        "not_found" => t.err_not_found,
        "csrf_failed" => t.err_csrf,
        "invitation_used" | "invitation_revoked" | "invitation_expired" => t.err_invitation_gone,
        "internal_error" => t.err_internal,
        _ => match status {
            StatusCode::UNPROCESSABLE_ENTITY => t.err_invalid_input,
            StatusCode::CONFLICT => t.err_conflict,
            StatusCode::FORBIDDEN => t.err_forbidden,
            StatusCode::NOT_FOUND => t.err_not_found,
            s if s.is_server_error() => t.err_internal,
            _ => t.err_bad_request,
        },
    }
}

/// An error page for a visitor who is not signed in.
#[must_use]
pub fn error_page(
    lang: Lang,
    status: StatusCode,
    code: &'static str,
    detail: Option<String>,
) -> Response {
    error_page_in(Ctx::public(lang, "/", String::new()), status, code, detail)
}

/// An error page. `detail` is the service's own (English) message, shown to English readers.
pub fn error_page_in(
    ctx: Ctx,
    status: StatusCode,
    code: &'static str,
    detail: Option<String>,
) -> Response {
    let page = ErrorPage {
        message: message_for(ctx.t, status, code),
        code,
        detail: detail.filter(|_| ctx.lang == Lang::En),
        ctx,
    };
    render(status, &page)
}

/// A service error as a page, with the status and code the JSON API would answer. Internal
/// errors are logged here, once, by the API's own mapping.
#[must_use]
pub fn service_error_page(lang: Lang, e: ServiceError) -> Response {
    error_response(Ctx::public(lang, "/", String::new()), e)
}

fn error_response(ctx: Ctx, e: ServiceError) -> Response {
    let api = ApiError::from(e);
    let detail = (api.status == StatusCode::UNPROCESSABLE_ENTITY).then(|| api.message.clone());
    let mut resp = error_page_in(ctx, api.status, api.code, detail);
    if let Some(wait) = api.retry_after {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(local_path(Some("/keys?org=1")), "/keys?org=1");
        assert_eq!(local_path(None), "/");
        assert_eq!(local_path(Some("https://evil.example")), "/");
        assert_eq!(local_path(Some("//evil.example")), "/");
        assert_eq!(local_path(Some("/\\evil.example")), "/");
        assert_eq!(local_path(Some("/a\r\nSet-Cookie: x")), "/");
    }

    #[test]
    fn comma_lists_are_parsed() {
        assert_eq!(comma_list(" a@x.io, ,b@x.io "), vec!["a@x.io", "b@x.io"]);
        assert!(comma_list(" , ").is_empty());
        assert_eq!(model_list(" a, ,b "), Some(vec!["a".into(), "b".into()]));
        assert_eq!(model_list(" , "), None);
    }

    #[test]
    fn paths_are_encoded() {
        assert_eq!(urlencode("/keys?org=a&b"), "/keys%3Forg%3Da%26b");
        assert_eq!(urlencode("/中"), "/%E4%B8%AD");
    }

    #[test]
    fn every_error_code_has_a_message_in_every_language() {
        for lang in Lang::ALL {
            let t = lang.strings();
            assert_eq!(
                message_for(t, StatusCode::FORBIDDEN, "csrf_failed"),
                t.err_csrf
            );
            assert_eq!(
                message_for(t, StatusCode::UNPROCESSABLE_ENTITY, "invalid_name"),
                t.err_invalid_input
            );
        }
    }
}
