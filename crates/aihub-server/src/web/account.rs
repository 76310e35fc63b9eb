//! The signed-in user's account page: their profile (name, e-mail) and the password change.
//! The accounts service checks the current password and the new one's length, and ends every
//! other session of the user; this browser's session is kept, so it stays signed in.

use super::pages::Form;
use aihub_core::password::{PasswordError, check_length};
use aihub_service::ServiceError;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::i18n::Strings;
use super::pages::{Ctx, Session, redirect, render};
use crate::extract::Client;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    ctx: Ctx,
    name: String,
    email: String,
    since: String,
    notice: Option<&'static str>,
    error: Option<&'static str>,
}

#[derive(Debug, Default, Deserialize)]
pub struct AccountQuery {
    changed: Option<String>,
}

async fn page(
    state: &AppState,
    session: &Session,
    notice: Option<&'static str>,
    error: Option<&'static str>,
) -> Result<AccountPage, ServiceError> {
    let user = state.services.accounts.me(&session.actor).await?;
    Ok(AccountPage {
        ctx: session.ctx("/account", "account"),
        name: user.name,
        email: user.email.as_str().to_owned(),
        since: user.created_at.format("%Y-%m-%d").to_string(),
        notice,
        error,
    })
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<AccountQuery>,
) -> Response {
    let notice = q
        .changed
        .map(|_| session.lang.strings().account_password_changed);
    session.page(page(&state, &session, notice, None).await)
}

#[derive(Deserialize)]
pub struct PasswordForm {
    current: SecretString,
    new: SecretString,
    repeat: SecretString,
}

/// Why a new password is refused, in the reader's language.
fn length_message(t: &'static Strings, new: &str) -> &'static str {
    match check_length(new) {
        Err(PasswordError::TooLong) => t.account_password_too_long,
        _ => t.account_password_too_short,
    }
}

/// Changes the password. A wrong current password, a new one of the wrong length, or a repeat
/// that differs shows the page again with the reason, and changes nothing.
pub async fn change_password(
    State(state): State<AppState>,
    session: Session,
    client: Client,
    Form(form): Form<PasswordForm>,
) -> Response {
    let t = session.lang.strings();
    let refusal = if form.new.expose_secret() == form.repeat.expose_secret() {
        // Chosen before the new password moves into the service; shown only if it refuses it.
        let length_refusal = length_message(t, form.new.expose_secret());
        match state
            .services
            .accounts
            .change_password(&session.actor, &form.current, form.new, &client.info)
            .await
        {
            Ok(()) => return redirect("/account?changed=1"),
            Err(ServiceError::Invalid {
                code: "wrong_password",
                ..
            }) => t.account_wrong_password,
            Err(ServiceError::Invalid {
                code: "invalid_password",
                ..
            }) => length_refusal,
            Err(e) => return session.error(e),
        }
    } else {
        t.account_password_mismatch
    };
    match page(&state, &session, None, Some(refusal)).await {
        Ok(p) => render(StatusCode::UNPROCESSABLE_ENTITY, &p),
        Err(e) => session.error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::i18n::Lang;

    #[test]
    fn length_refusals_say_which_way() {
        let t = Lang::En.strings();
        assert_eq!(length_message(t, "short"), t.account_password_too_short);
        assert_eq!(
            length_message(t, &"x".repeat(129)),
            t.account_password_too_long
        );
    }
}
