//! Platform administration pages (operators only): users, organizations and their plans, the
//! plan catalogue, and the gateway's catalog of providers, models and prices. Anyone who is not
//! a platform admin gets the not-found page for every one of them, as the JSON API answers
//! 404; the admin services check the flag again on every call.

pub mod catalog;
pub mod orgs;
pub mod plans;
pub mod users;

use aihub_service::ServiceError;
use askama::Template;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use serde::Deserialize;

use super::i18n::{Lang, Strings};
use super::pages::{Ctx, Session, error_page_in, message_for, redirect, render};
use crate::error::ApiError;
use crate::state::AppState;

/// The session of a platform admin. Anyone else signed in gets the not-found page, as the JSON
/// API answers 404, and before the handler's form is read; signed-out visitors go to sign-in.
/// Every admin page takes this instead of [`Session`]; the admin services check the flag again.
pub struct AdminSession(pub Session);

impl FromRequestParts<AppState> for AdminSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let session = Session::from_request_parts(parts, state).await?;
        if session.actor.is_platform_admin {
            Ok(AdminSession(session))
        } else {
            Err(error_page_in(
                session.ctx("/", ""),
                StatusCode::NOT_FOUND,
                "not_found",
                None,
            ))
        }
    }
}

/// The layout context of an admin page.
fn admin_ctx(session: &Session, here: &str) -> Ctx {
    session.ctx(here, "admin")
}

/// `/admin`: the first admin page.
pub async fn index(_: AdminSession) -> Response {
    redirect("/admin/users")
}

/// `?done=1` after a successful form: the notice to show.
#[derive(Debug, Default, Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
}

impl DoneQuery {
    fn notice(&self, t: &'static Strings) -> Option<&'static str> {
        self.done.as_ref().map(|_| t.admin_saved)
    }
}

/// A form the service refused: its translated reason, and the service's own words for English
/// readers.
pub struct FormError {
    pub message: &'static str,
    pub detail: Option<String>,
}

/// The refusal to show beside a form for invalid input or a conflict; any other error (a
/// refusal of the caller, a failure) is the caller's to turn into an error page.
fn form_error(lang: Lang, e: ServiceError) -> Result<FormError, ServiceError> {
    match e {
        e @ (ServiceError::Invalid { .. } | ServiceError::Conflict { .. }) => {
            let api = ApiError::from(e);
            Ok(FormError {
                message: message_for(lang.strings(), api.status, api.code),
                detail: (lang == Lang::En).then_some(api.message),
            })
        }
        e => Err(e),
    }
}

/// What follows a form's service call.
enum After {
    /// Answer with this: a redirect to the next page, or an error page for a refusal of the
    /// caller.
    Done(Response),
    /// Show the form again with this reason.
    Again(FormError),
}

fn after_form<T>(session: &Session, result: Result<T, ServiceError>, done: &str) -> After {
    match result {
        Ok(_) => After::Done(redirect(done)),
        Err(e) => match form_error(session.lang, e) {
            Ok(refusal) => After::Again(refusal),
            Err(e) => After::Done(session.error(e)),
        },
    }
}

/// A form shown again with its refusal (`422`).
fn show_again(session: &Session, page: Result<impl Template, ServiceError>) -> Response {
    match page {
        Ok(page) => render(StatusCode::UNPROCESSABLE_ENTITY, &page),
        Err(e) => session.error(e),
    }
}

/// An optional text field: trimmed, empty means not given.
fn given(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// An optional whole-number field; the service checks the range.
fn number<T: std::str::FromStr>(field: &str, s: &str) -> Result<Option<T>, ServiceError> {
    match s.trim() {
        "" => Ok(None),
        s => s.parse().map(Some).map_err(|_| {
            ServiceError::invalid("invalid_number", format!("{field} must be a whole number"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_fields_are_parsed() {
        assert_eq!(given("  "), None);
        assert_eq!(given(" a ").as_deref(), Some("a"));
        assert_eq!(number::<i64>("rpm", " ").unwrap(), None);
        assert_eq!(number::<i64>("rpm", " 60 ").unwrap(), Some(60));
        assert!(number::<i64>("rpm", "1.5").is_err());
        assert!(number::<u64>("ms", "-1").is_err());
    }

    #[test]
    fn only_input_errors_stay_on_the_form() {
        let e = ServiceError::invalid("invalid_name", "bad name");
        let shown = form_error(Lang::En, e).ok().unwrap();
        assert_eq!(shown.detail.as_deref(), Some("bad name"));
        let zh = form_error(Lang::ZhCn, ServiceError::invalid("x", "y"))
            .ok()
            .unwrap();
        assert_eq!(zh.detail, None);
        assert!(form_error(Lang::En, ServiceError::Forbidden).is_err());
    }
}
