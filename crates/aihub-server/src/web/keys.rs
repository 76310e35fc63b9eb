//! API keys of the selected organization: the list, the create form (the secret is shown once,
//! on the page that answers the form), and revocation after a confirmation page. Which buttons
//! show follows the caller's role; the keys service decides what is allowed.

use std::str::FromStr;

use aihub_core::KeyId;
use aihub_core::time::now;
use aihub_service::ServiceError;
use aihub_service::keys::CreateKey;
use aihub_service::orgs::OrgScope;
use aihub_service::policy::Action;
use aihub_store::ApiKey;
use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::i18n::Strings;
use super::pages::{Ctx, OrgChoice, Session, message_for, redirect, render, select_org};
use crate::error::ApiError;
use crate::state::AppState;

/// Keys per page of the list.
const PAGE: u32 = 50;

/// One row of the list.
pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub models: String,
    pub created: String,
    pub last_used: String,
    pub expires: String,
    pub status: &'static str,
    pub status_class: &'static str,
    pub can_revoke: bool,
}

fn when(t: Option<DateTime<Utc>>, none: &'static str) -> String {
    t.map_or_else(
        || none.to_owned(),
        |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

fn can_manage(scope: &OrgScope, key: &ApiKey) -> bool {
    let own = key.owner_user_id == Some(scope.actor().user_id);
    scope.can(Action::KeysManageAll) || (own && scope.can(Action::KeysManageOwn))
}

fn row(t: &'static Strings, scope: &OrgScope, key: &ApiKey, at: DateTime<Utc>) -> KeyRow {
    let (status, status_class) = if key.revoked_at.is_some() {
        (t.status_revoked, "revoked")
    } else if key.expires_at.is_some_and(|e| e <= at) {
        (t.status_expired, "expired")
    } else {
        (t.status_active, "active")
    };
    KeyRow {
        id: key.id.to_string(),
        name: key.name.clone(),
        prefix: key.prefix.clone(),
        models: key
            .models
            .as_ref()
            .map_or_else(|| t.all_models.to_owned(), |m| m.join(", ")),
        created: when(Some(key.created_at), t.never),
        last_used: when(key.last_used_at, t.never),
        expires: when(key.expires_at, "—"),
        status,
        status_class,
        can_revoke: key.revoked_at.is_none() && can_manage(scope, key),
    }
}

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    ctx: Ctx,
    org_id: String,
    rows: Vec<KeyRow>,
    next_cursor: Option<String>,
    can_create: bool,
    notice: Option<&'static str>,
    error: Option<&'static str>,
    detail: Option<String>,
    form_name: String,
    form_models: String,
    form_expires: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    org: Option<String>,
    cursor: Option<String>,
    revoked: Option<String>,
}

/// The values a failed create form is shown again with.
#[derive(Default)]
struct Refill {
    error: Option<&'static str>,
    detail: Option<String>,
    name: String,
    models: String,
    expires: String,
}

async fn list_page(
    state: &AppState,
    session: &Session,
    scope: &OrgScope,
    orgs: Vec<OrgChoice>,
    cursor: Option<&str>,
    notice: Option<&'static str>,
    refill: Refill,
) -> Result<KeysPage, ServiceError> {
    let cursor = match cursor.filter(|c| !c.is_empty()) {
        Some(c) => Some(KeyId::from_str(c).map_err(|_| ServiceError::NotFound)?),
        None => None,
    };
    let page = state.services.keys.list(scope, cursor, PAGE).await?;
    let t = session.lang.strings();
    let at = now();
    let org_query = format!("?org={}", scope.org_id());
    let mut ctx = session.ctx(&format!("/keys{org_query}"), "keys");
    ctx.orgs = orgs;
    ctx.org_query = org_query;
    Ok(KeysPage {
        ctx,
        org_id: scope.org_id().to_string(),
        rows: page.data.iter().map(|k| row(t, scope, k, at)).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
        can_create: scope.can(Action::KeysCreate),
        notice,
        error: refill.error,
        detail: refill.detail,
        form_name: refill.name,
        form_models: refill.models,
        form_expires: refill.expires,
    })
}

pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> Response {
    let result = async {
        let (scope, orgs) = select_org(&state, &session, q.org.as_deref()).await?;
        let notice = q.revoked.map(|_| session.lang.strings().key_revoked);
        list_page(
            &state,
            &session,
            &scope,
            orgs,
            q.cursor.as_deref(),
            notice,
            Refill::default(),
        )
        .await
    }
    .await;
    match result {
        Ok(page) => render(StatusCode::OK, &page),
        Err(e) => session.error(e),
    }
}

#[derive(Deserialize)]
pub struct CreateForm {
    org: String,
    name: String,
    #[serde(default)]
    models: String,
    #[serde(default)]
    expires: String,
}

#[derive(Template)]
#[template(path = "key_created.html")]
struct CreatedPage {
    ctx: Ctx,
    name: String,
    secret: String,
}

/// Parses the optional expiry date (`YYYY-MM-DD`, from a date input): the key stops working
/// at the start of that day, UTC.
fn parse_expires(s: &str) -> Result<Option<DateTime<Utc>>, ServiceError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| Some(d.and_time(chrono::NaiveTime::MIN).and_utc()))
        .map_err(|_| ServiceError::invalid("invalid_expires_at", "the expiry is not a date"))
}

/// A comma-separated model list; empty means every model.
fn parse_models(s: &str) -> Option<Vec<String>> {
    let models: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect();
    (!models.is_empty()).then_some(models)
}

/// Creates a key and answers with the page that shows its secret, the only time it is shown.
/// Invalid input shows the list again with the form filled in; a refusal is an error page.
pub async fn create(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<CreateForm>,
) -> Response {
    let (scope, orgs) = match select_org(&state, &session, Some(&form.org)).await {
        Ok(v) => v,
        Err(e) => return session.error(e),
    };
    let input = parse_expires(&form.expires).map(|expires_at| CreateKey {
        name: form.name.clone(),
        expires_at,
        models: parse_models(&form.models),
        ..CreateKey::default()
    });
    let created = match input {
        Ok(input) => state.services.keys.create(&scope, input).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(created) => {
            let org_query = format!("?org={}", scope.org_id());
            let mut ctx = session.ctx(&format!("/keys{org_query}"), "keys");
            ctx.org_query = org_query;
            let page = CreatedPage {
                ctx,
                name: created.key.name,
                secret: created.secret.expose_secret().to_owned(),
            };
            render(StatusCode::CREATED, &page)
        }
        Err(e @ ServiceError::Invalid { .. }) => {
            let api = ApiError::from(e);
            let t = session.lang.strings();
            let refill = Refill {
                error: Some(message_for(t, api.status, api.code)),
                detail: Some(api.message),
                name: form.name,
                models: form.models,
                expires: form.expires,
            };
            match list_page(&state, &session, &scope, orgs, None, None, refill).await {
                Ok(page) => render(StatusCode::UNPROCESSABLE_ENTITY, &page),
                Err(e) => session.error(e),
            }
        }
        Err(e) => session.error(e),
    }
}

#[derive(Debug, Deserialize)]
pub struct OrgQuery {
    org: Option<String>,
}

#[derive(Template)]
#[template(path = "key_revoke.html")]
struct RevokePage {
    ctx: Ctx,
    org_id: String,
    key: KeyRow,
}

/// Asks for confirmation before revoking.
pub async fn confirm_revoke(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<OrgQuery>,
) -> Response {
    let result = async {
        let id = KeyId::from_str(&id).map_err(|_| ServiceError::NotFound)?;
        let (scope, _) = select_org(&state, &session, q.org.as_deref()).await?;
        let key = state.services.keys.get(&scope, id).await?;
        Ok::<_, ServiceError>((scope, key))
    }
    .await;
    let (scope, key) = match result {
        Ok(v) => v,
        Err(e) => return session.error(e),
    };
    let org_query = format!("?org={}", scope.org_id());
    let mut ctx = session.ctx(&format!("/keys{org_query}"), "keys");
    ctx.org_query = org_query;
    let page = RevokePage {
        ctx,
        org_id: scope.org_id().to_string(),
        key: row(session.lang.strings(), &scope, &key, now()),
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
pub struct RevokeForm {
    org: String,
}

/// Revokes the key through the keys service, then goes back to the list.
pub async fn revoke(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<RevokeForm>,
) -> Response {
    let result = async {
        let id = KeyId::from_str(&id).map_err(|_| ServiceError::NotFound)?;
        let (scope, _) = select_org(&state, &session, Some(&form.org)).await?;
        state.services.keys.revoke(&scope, id).await?;
        Ok::<_, ServiceError>(scope.org_id())
    }
    .await;
    match result {
        Ok(org) => redirect(&format!("/keys?org={org}&revoked=1")),
        Err(e) => session.error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_parsed() {
        assert_eq!(parse_models(" a, ,b "), Some(vec!["a".into(), "b".into()]));
        assert_eq!(parse_models(" , "), None);
        assert_eq!(parse_expires("").unwrap(), None);
        assert_eq!(
            parse_expires("2030-01-02").unwrap().unwrap().to_rfc3339(),
            "2030-01-02T00:00:00+00:00"
        );
        assert!(parse_expires("tomorrow").is_err());
    }
}
