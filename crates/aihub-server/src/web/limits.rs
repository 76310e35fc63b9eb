//! Rate limits of the selected organization: every rule by scope (requests per minute, tokens
//! per minute, concurrent requests, for one model or all), with create, edit and delete forms
//! for the roles the governance service allows.

use std::num::ParseIntError;
use std::str::FromStr;

use super::pages::Form;
use aihub_core::governance::{LimitRule, ScopeType};
use aihub_service::ServiceError;
use aihub_service::governance::{CreateLimit, UpdateLimit};
use aihub_service::orgs::OrgScope;
use aihub_service::policy::Action;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use uuid::Uuid;

use super::budgets::{FormError, ScopeNames, may_manage, scope_label};
use super::i18n::Strings;
use super::pages::{Ctx, OrgChoice, Session, redirect, render, select_org};
use super::pages::{OrgForm, path_id};
use crate::state::AppState;

/// One rule as the page shows it; empty strings for metrics it does not limit.
pub struct LimitRow {
    pub id: String,
    pub scope: &'static str,
    pub scope_id: String,
    /// The name of the key, member, team or organization, where the list knows it.
    pub target: String,
    pub model: String,
    pub rpm: String,
    pub tpm: String,
    pub concurrency: String,
    pub can_manage: bool,
}

fn number(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

#[must_use]
pub fn limit_row(t: &'static Strings, l: &LimitRule, can_manage: bool) -> LimitRow {
    LimitRow {
        id: l.id.to_string(),
        scope: scope_label(t, l.scope),
        scope_id: l.scope_id.to_string(),
        target: String::new(),
        model: l.model.clone().unwrap_or_else(|| t.all_models.to_owned()),
        rpm: number(l.rpm),
        tpm: number(l.tpm),
        concurrency: number(l.concurrency),
        can_manage,
    }
}

/// A count typed in a form: `Ok(None)` when left empty, `Err` when it is not a whole number.
pub fn parse_count(raw: &str) -> Result<Option<i64>, ParseIntError> {
    let s = raw.trim();
    if s.is_empty() {
        return Ok(None);
    }
    s.parse::<i64>().map(Some)
}

#[derive(Template)]
#[template(path = "limits.html")]
struct LimitsPage {
    ctx: Ctx,
    org_id: String,
    rows: Vec<LimitRow>,
    can_create: bool,
    notice: Option<&'static str>,
    error: Option<FormError>,
    /// The create form's values: empty, or what a refused form held.
    form: CreateForm,
    /// Suggestions for the scope id: `(id, name)`.
    targets: Vec<(String, String)>,
    scopes: Vec<(&'static str, &'static str, bool)>,
}

async fn list_page(
    state: &AppState,
    session: &Session,
    scope: &OrgScope,
    orgs: Vec<OrgChoice>,
    notice: Option<&'static str>,
    refused: Option<(FormError, CreateForm)>,
) -> Result<LimitsPage, ServiceError> {
    let t = session.lang.strings();
    let limits = state.services.governance.list_limits(scope).await?;
    let names = ScopeNames::load(state, scope).await?;
    let mut rows = Vec::with_capacity(limits.len());
    for l in &limits {
        let can = may_manage(
            state,
            scope,
            l.scope,
            l.scope_id,
            Action::LimitsManage,
            Action::LimitsManageOwn,
        )
        .await;
        rows.push(LimitRow {
            target: names.of(l.scope_id),
            ..limit_row(t, l, can)
        });
    }
    let all = scope.can(Action::LimitsManage);
    let (error, form) = refused.map_or((None, CreateForm::default()), |(e, f)| (Some(e), f));
    let org_query = format!("?org={}", scope.org_id());
    let mut ctx = session.ctx(&format!("/limits{org_query}"), "limits");
    ctx.orgs = orgs;
    ctx.org_query = org_query;
    Ok(LimitsPage {
        ctx,
        org_id: scope.org_id().to_string(),
        rows,
        can_create: all || scope.can(Action::LimitsManageOwn),
        notice,
        error,
        scopes: ScopeType::ALL
            .into_iter()
            .filter(|s| all || *s == ScopeType::Key)
            .map(|s| (s.as_str(), scope_label(t, s), s.as_str() == form.scope_type))
            .collect(),
        form,
        targets: names.choices(),
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    org: Option<String>,
    done: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> Response {
    let t = session.lang.strings();
    let notice = match q.done.as_deref() {
        Some("created") => Some(t.limit_created),
        Some("saved") => Some(t.limit_saved),
        Some("deleted") => Some(t.limit_deleted),
        _ => None,
    };
    let result = async {
        let (scope, orgs) = select_org(&state, &session, q.org.as_deref()).await?;
        list_page(&state, &session, &scope, orgs, notice, None).await
    }
    .await;
    session.page(result)
}

/// The three counts of a form.
struct Counts {
    rpm: Option<i64>,
    tpm: Option<i64>,
    concurrency: Option<i64>,
}

fn counts(rpm: &str, tpm: &str, concurrency: &str) -> Result<Counts, ParseIntError> {
    Ok(Counts {
        rpm: parse_count(rpm)?,
        tpm: parse_count(tpm)?,
        concurrency: parse_count(concurrency)?,
    })
}

#[derive(Default, Deserialize)]
pub struct CreateForm {
    org: String,
    scope_type: String,
    #[serde(default)]
    scope_id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    rpm: String,
    #[serde(default)]
    tpm: String,
    #[serde(default)]
    concurrency: String,
}

/// Shows the list again with a message (and the create form as it was sent, if it was that
/// form), answering `422`; other refusals are error pages.
async fn refused(
    state: &AppState,
    session: &Session,
    scope: &OrgScope,
    orgs: Vec<OrgChoice>,
    error: Result<FormError, ServiceError>,
    form: Option<CreateForm>,
) -> Response {
    let error = match error {
        Ok(error) => error,
        Err(e) => return session.error(e),
    };
    let refused = Some((error, form.unwrap_or_default()));
    match list_page(state, session, scope, orgs, None, refused).await {
        Ok(page) => render(StatusCode::UNPROCESSABLE_ENTITY, &page),
        Err(e) => session.error(e),
    }
}

pub async fn create(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<CreateForm>,
) -> Response {
    let (scope, orgs) = match select_org(&state, &session, Some(&form.org)).await {
        Ok(v) => v,
        Err(e) => return session.error(e),
    };
    let t = session.lang.strings();
    let scope_id = match form.scope_id.trim() {
        "" => Ok(None),
        s => Uuid::from_str(s).map(Some).map_err(|_| t.budget_bad_scope),
    };
    let input = scope_id.and_then(|scope_id| {
        let c = counts(&form.rpm, &form.tpm, &form.concurrency).map_err(|_| t.limit_bad_value)?;
        let model = form.model.trim();
        Ok(CreateLimit {
            scope_type: form.scope_type.clone(),
            scope_id,
            model: (!model.is_empty()).then(|| model.to_owned()),
            rpm: c.rpm,
            tpm: c.tpm,
            concurrency: c.concurrency,
        })
    });
    let input = match input {
        Ok(input) => input,
        Err(message) => {
            return refused(
                &state,
                &session,
                &scope,
                orgs,
                Ok(FormError::local(message)),
                Some(form),
            )
            .await;
        }
    };
    match state.services.governance.create_limit(&scope, input).await {
        Ok(_) => redirect(&format!("/limits?org={}&done=created", scope.org_id())),
        Err(e) => {
            refused(
                &state,
                &session,
                &scope,
                orgs,
                FormError::from_service(session.lang, e),
                Some(form),
            )
            .await
        }
    }
}

#[derive(Deserialize)]
pub struct UpdateForm {
    org: String,
    #[serde(default)]
    rpm: String,
    #[serde(default)]
    tpm: String,
    #[serde(default)]
    concurrency: String,
}

/// Saves a rule's counts; an emptied field removes that metric from the rule.
pub async fn update(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<UpdateForm>,
) -> Response {
    let (scope, orgs) = match select_org(&state, &session, Some(&form.org)).await {
        Ok(v) => v,
        Err(e) => return session.error(e),
    };
    let Ok(id) = Uuid::from_str(&id) else {
        return session.error(ServiceError::NotFound);
    };
    let t = session.lang.strings();
    let Ok(c) = counts(&form.rpm, &form.tpm, &form.concurrency) else {
        return refused(
            &state,
            &session,
            &scope,
            orgs,
            Ok(FormError::local(t.limit_bad_value)),
            None,
        )
        .await;
    };
    let input = UpdateLimit {
        model: None,
        rpm: Some(c.rpm),
        tpm: Some(c.tpm),
        concurrency: Some(c.concurrency),
    };
    match state
        .services
        .governance
        .update_limit(&scope, id, input)
        .await
    {
        Ok(_) => redirect(&format!("/limits?org={}&done=saved", scope.org_id())),
        Err(e) => {
            refused(
                &state,
                &session,
                &scope,
                orgs,
                FormError::from_service(session.lang, e),
                None,
            )
            .await
        }
    }
}

/// Deletes a rule (the form asks for confirmation first), then back to the list.
pub async fn delete(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<OrgForm>,
) -> Response {
    let result = async {
        let id = path_id::<Uuid>(&id)?;
        let (scope, _) = select_org(&state, &session, Some(&form.org)).await?;
        state.services.governance.delete_limit(&scope, id).await?;
        Ok::<_, ServiceError>(scope.org_id())
    }
    .await;
    match result {
        Ok(org) => redirect(&format!("/limits?org={org}&done=deleted")),
        Err(e) => session.error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_whole_numbers_or_empty() {
        assert_eq!(parse_count(" 60 "), Ok(Some(60)));
        assert_eq!(parse_count(""), Ok(None));
        assert_eq!(parse_count("-1"), Ok(Some(-1)), "the service refuses it");
        assert!(parse_count("sixty").is_err());
        assert!(parse_count("1.5").is_err());
    }
}
