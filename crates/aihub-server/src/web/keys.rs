//! API keys of the selected organization: the list (with each key's rate limits and budget),
//! the create form (the secret is shown once, on the page that answers the form), a page per key
//! to edit it, set its limits and budget, rotate its secret (shown once) and revoke it, each
//! after a confirmation page where it cannot be undone. Which buttons show follows the caller's
//! role; the keys and governance services decide what is allowed.

use std::str::FromStr;

use super::pages::Form;
use aihub_core::governance::{LimitRule, Period, ScopeType};
use aihub_core::time::now;
use aihub_core::{Currency, KeyId, TeamId};
use aihub_service::ServiceError;
use aihub_service::governance::{CreateBudget, CreateLimit, UpdateBudget, UpdateLimit};
use aihub_service::keys::{CreateKey, UpdateKey};
use aihub_service::orgs::OrgScope;
use aihub_service::policy::Action;
use aihub_store::ApiKey;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use secrecy::ExposeSecret;
use serde::Deserialize;
use uuid::Uuid;

use super::budgets::{
    BudgetRow, FormError, budget_row, currency_choices, may_manage, parse_amount, period_choices,
    when,
};
use super::i18n::Strings;
use super::limits::{LimitRow, limit_row, parse_count};
use super::pages::{
    Ctx, OrgChoice, Session, message_for, model_list, redirect, render, select_org,
};
use super::pages::{OrgForm, OrgQuery, path_id};
use crate::error::ApiError;
use crate::state::AppState;

/// Keys per page of the list.
const PAGE: u32 = 50;

/// Teams offered by the create form.
const TEAMS_SHOWN: u32 = 100;

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
    /// The key's rate limits, e.g. `60 RPM · 10000 TPM`.
    pub limits: String,
    /// The key's budget: spent / amount, currency and period.
    pub budget: String,
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
        limits: "—".to_owned(),
        budget: "—".to_owned(),
    }
}

/// The rate limits and budgets of the organization's keys (every key's, for the list).
struct KeyRules {
    limits: Vec<LimitRule>,
    /// The key a budget is on, and the budget.
    budgets: Vec<(Uuid, BudgetRow)>,
}

async fn key_rules(
    state: &AppState,
    t: &'static Strings,
    scope: &OrgScope,
) -> Result<KeyRules, ServiceError> {
    let governance = &state.services.governance;
    let limits = governance
        .list_limits(scope)
        .await?
        .into_iter()
        .filter(|l| l.scope == ScopeType::Key)
        .collect();
    let mut budgets = Vec::new();
    for b in governance.list_budgets(scope).await? {
        if b.scope == ScopeType::Key {
            let can = may_manage(
                state,
                scope,
                b.scope,
                b.scope_id,
                Action::BudgetsManage,
                Action::BudgetsManageOwn,
            )
            .await;
            budgets.push((b.scope_id, budget_row(state, t, &b, can).await?));
        }
    }
    Ok(KeyRules { limits, budgets })
}

impl KeyRules {
    /// `60 RPM · 10000 TPM`, per rule, prefixed by the model of a one-model rule.
    fn limits_text(&self, t: &'static Strings, key: Uuid) -> String {
        let text: Vec<String> = self
            .limits
            .iter()
            .filter(|l| l.scope_id == key)
            .map(|l| {
                let parts: Vec<String> = [
                    (l.rpm, t.keys_rpm),
                    (l.tpm, t.keys_tpm),
                    (l.concurrency, t.keys_concurrent),
                ]
                .into_iter()
                .filter_map(|(v, unit)| v.map(|v| format!("{v} {unit}")))
                .collect();
                match &l.model {
                    Some(m) => format!("{m}: {}", parts.join(" · ")),
                    None => parts.join(" · "),
                }
            })
            .collect();
        if text.is_empty() {
            "—".to_owned()
        } else {
            text.join("; ")
        }
    }

    /// `2.5 / 10 USD · Monthly`, per budget.
    fn budget_text(&self, key: Uuid) -> String {
        let text: Vec<String> = self
            .budgets
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, b)| format!("{} / {} {} · {}", b.spent, b.amount, b.currency, b.period))
            .collect();
        if text.is_empty() {
            "—".to_owned()
        } else {
            text.join("; ")
        }
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
    /// `(id, name, selected)` of the teams a key may count against.
    teams: Vec<(String, String, bool)>,
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
    team: String,
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
        Some(c) => Some(path_id::<KeyId>(c)?),
        None => None,
    };
    let page = state.services.keys.list(scope, cursor, PAGE).await?;
    let t = session.lang.strings();
    let rules = key_rules(state, t, scope).await?;
    let teams = state.services.teams.list(scope, None, TEAMS_SHOWN).await?;
    let at = now();
    let org_query = format!("?org={}", scope.org_id());
    let mut ctx = session.ctx(&format!("/keys{org_query}"), "keys");
    ctx.orgs = orgs;
    ctx.org_query = org_query;
    Ok(KeysPage {
        ctx,
        org_id: scope.org_id().to_string(),
        rows: page
            .data
            .iter()
            .map(|k| KeyRow {
                limits: rules.limits_text(t, k.id.as_uuid()),
                budget: rules.budget_text(k.id.as_uuid()),
                ..row(t, scope, k, at)
            })
            .collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
        can_create: scope.can(Action::KeysCreate),
        notice,
        error: refill.error,
        detail: refill.detail,
        form_name: refill.name,
        form_models: refill.models,
        form_expires: refill.expires,
        teams: teams
            .data
            .iter()
            .map(|team| {
                let id = team.id.to_string();
                let selected = id == refill.team;
                (id, team.name.clone(), selected)
            })
            .collect(),
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
    session.page(result)
}

#[derive(Deserialize)]
pub struct CreateForm {
    org: String,
    name: String,
    #[serde(default)]
    models: String,
    #[serde(default)]
    expires: String,
    #[serde(default)]
    team: String,
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
    let team_id = match form.team.trim() {
        "" => Ok(None),
        s => TeamId::from_str(s)
            .map(Some)
            .map_err(|_| ServiceError::invalid("invalid_team", "the team is not a team id")),
    };
    let input = parse_expires(&form.expires).and_then(|expires_at| {
        Ok(CreateKey {
            name: form.name.clone(),
            expires_at,
            models: model_list(&form.models),
            team_id: team_id?,
        })
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
                team: form.team,
            };
            match list_page(&state, &session, &scope, orgs, None, None, refill).await {
                Ok(page) => render(StatusCode::UNPROCESSABLE_ENTITY, &page),
                Err(e) => session.error(e),
            }
        }
        Err(e) => session.error(e),
    }
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
    match confirming(&state, &session, &id, q.org.as_deref(), false).await {
        Ok((ctx, org_id, key)) => render(StatusCode::OK, &RevokePage { ctx, org_id, key }),
        Err(e) => session.error(e),
    }
}

/// What a confirmation page about one key shows: its layout context (the language links come
/// back to the key's page when `on_key_page`, else to the list), the organization, the key.
async fn confirming(
    state: &AppState,
    session: &Session,
    id: &str,
    org: Option<&str>,
    on_key_page: bool,
) -> Result<(Ctx, String, KeyRow), ServiceError> {
    let id = path_id::<KeyId>(id)?;
    let (scope, _) = select_org(state, session, org).await?;
    let key = state.services.keys.get(&scope, id).await?;
    let org_query = format!("?org={}", scope.org_id());
    let here = if on_key_page {
        format!("/keys/{}{org_query}", key.id)
    } else {
        format!("/keys{org_query}")
    };
    let mut ctx = session.ctx(&here, "keys");
    ctx.org_query = org_query;
    let row = row(session.lang.strings(), &scope, &key, now());
    Ok((ctx, scope.org_id().to_string(), row))
}

/// Revokes the key through the keys service, then goes back to the list.
pub async fn revoke(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<OrgForm>,
) -> Response {
    let result = async {
        let id = path_id::<KeyId>(&id)?;
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

#[derive(Debug, Default, Deserialize)]
pub struct KeyQuery {
    org: Option<String>,
    done: Option<String>,
}

/// Which form of the key page a message belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Edit,
    Limits,
    Budget,
}

#[derive(Template)]
#[template(path = "key_page.html")]
struct KeyPage {
    ctx: Ctx,
    org_id: String,
    key: KeyRow,
    team: String,
    form_name: String,
    form_models: String,
    form_expires: String,
    can_edit: bool,
    /// The key's rule for every model, which the limits form edits.
    limit: Option<LimitRow>,
    /// Every rule on the key, for every model or one.
    limit_rows: Vec<LimitRow>,
    can_limits: bool,
    /// The key's budget, which the budget form edits.
    budget: Option<BudgetRow>,
    can_budget: bool,
    periods: Vec<(&'static str, &'static str, bool)>,
    currencies: Vec<(String, bool)>,
    notice: Option<&'static str>,
    edit_error: Option<FormError>,
    limits_error: Option<FormError>,
    budget_error: Option<FormError>,
}

/// The key's rules: its every-model limit (if any), and its budget (the first, if any).
async fn own_rules(
    state: &AppState,
    scope: &OrgScope,
    id: KeyId,
) -> Result<(Vec<LimitRule>, Option<aihub_core::governance::BudgetRule>), ServiceError> {
    let key = id.as_uuid();
    let limits = state
        .services
        .governance
        .list_limits(scope)
        .await?
        .into_iter()
        .filter(|l| l.scope == ScopeType::Key && l.scope_id == key)
        .collect();
    let budget = state
        .services
        .governance
        .list_budgets(scope)
        .await?
        .into_iter()
        .find(|b| b.scope == ScopeType::Key && b.scope_id == key);
    Ok((limits, budget))
}

async fn key_page(
    state: &AppState,
    session: &Session,
    scope: &OrgScope,
    id: KeyId,
    notice: Option<&'static str>,
    error: Option<(Section, FormError)>,
) -> Result<KeyPage, ServiceError> {
    let t = session.lang.strings();
    let key = state.services.keys.get(scope, id).await?;
    let (limits, budget) = own_rules(state, scope, id).await?;
    let team = match key.team_id {
        Some(team) => state.services.teams.get(scope, team).await?.name,
        None => "—".to_owned(),
    };
    let manage = |all, own| may_manage(state, scope, ScopeType::Key, id.as_uuid(), all, own);
    let can_limits = manage(Action::LimitsManage, Action::LimitsManageOwn).await;
    let can_budget = manage(Action::BudgetsManage, Action::BudgetsManageOwn).await;
    let live = key.revoked_at.is_none();
    let budget = match &budget {
        Some(b) => Some(budget_row(state, t, b, can_budget).await?),
        None => None,
    };
    let (period, currency) = budget
        .as_ref()
        .map_or((Period::Monthly, Currency::USD), |b| {
            (
                Period::parse(b.period_code).unwrap_or(Period::Monthly),
                Currency::parse(&b.currency).unwrap_or(Currency::USD),
            )
        });
    let (mut edit_error, mut limits_error, mut budget_error) = (None, None, None);
    match error {
        Some((Section::Edit, e)) => edit_error = Some(e),
        Some((Section::Limits, e)) => limits_error = Some(e),
        Some((Section::Budget, e)) => budget_error = Some(e),
        None => {}
    }
    let org_query = format!("?org={}", scope.org_id());
    let mut ctx = session.ctx(&format!("/keys/{id}{org_query}"), "keys");
    ctx.org_query = org_query;
    Ok(KeyPage {
        ctx,
        org_id: scope.org_id().to_string(),
        team,
        form_name: key.name.clone(),
        form_models: key
            .models
            .as_ref()
            .map(|m| m.join(", "))
            .unwrap_or_default(),
        form_expires: key
            .expires_at
            .map(|e| e.format("%Y-%m-%d").to_string())
            .unwrap_or_default(),
        can_edit: live && can_manage(scope, &key),
        limit: limits
            .iter()
            .find(|l| l.model.is_none())
            .map(|l| limit_row(t, l, can_limits)),
        limit_rows: limits.iter().map(|l| limit_row(t, l, can_limits)).collect(),
        can_limits: live && can_limits,
        budget,
        can_budget: live && can_budget,
        periods: period_choices(t, period),
        currencies: currency_choices(currency),
        notice,
        edit_error,
        limits_error,
        budget_error,
        key: row(t, scope, &key, now()),
    })
}

/// The key page, or an error page.
async fn key_response(
    state: &AppState,
    session: &Session,
    scope: &OrgScope,
    id: KeyId,
    status: StatusCode,
    notice: Option<&'static str>,
    error: Option<(Section, FormError)>,
) -> Response {
    match key_page(state, session, scope, id, notice, error).await {
        Ok(page) => render(status, &page),
        Err(e) => session.error(e),
    }
}

/// One key: its details, the edit, limits and budget forms, rotation and revocation.
pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<KeyQuery>,
) -> Response {
    let t = session.lang.strings();
    let notice = match q.done.as_deref() {
        Some("saved") => Some(t.keys_saved),
        Some("limits") => Some(t.limit_saved),
        Some("budget") => Some(t.budget_saved),
        _ => None,
    };
    let loaded = async {
        let id = path_id::<KeyId>(&id)?;
        let (scope, _) = select_org(&state, &session, q.org.as_deref()).await?;
        Ok::<_, ServiceError>((scope, id))
    }
    .await;
    match loaded {
        Ok((scope, id)) => {
            key_response(&state, &session, &scope, id, StatusCode::OK, notice, None).await
        }
        Err(e) => session.error(e),
    }
}

/// After a form of the key page: back to it with a notice, or the page again with the form's
/// message (`422`), or an error page for a refusal.
async fn answer<T>(
    state: &AppState,
    session: &Session,
    scope: &OrgScope,
    id: KeyId,
    section: Section,
    result: Result<T, Result<FormError, ServiceError>>,
) -> Response {
    let done = match section {
        Section::Edit => "saved",
        Section::Limits => "limits",
        Section::Budget => "budget",
    };
    match result {
        Ok(_) => redirect(&format!("/keys/{id}?org={}&done={done}", scope.org_id())),
        Err(Ok(error)) => {
            key_response(
                state,
                session,
                scope,
                id,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                Some((section, error)),
            )
            .await
        }
        Err(Err(e)) => session.error(e),
    }
}

/// A service's answer, with its input refusals as form messages.
fn form_result<T>(
    lang: super::i18n::Lang,
    r: Result<T, ServiceError>,
) -> Result<T, Result<FormError, ServiceError>> {
    r.map_err(|e| FormError::from_service(lang, e))
}

/// Resolves the key and organization of a form post, or the error page to answer.
async fn posted(
    state: &AppState,
    session: &Session,
    id: &str,
    org: &str,
) -> Result<(OrgScope, KeyId), Response> {
    let loaded = async {
        let id = path_id::<KeyId>(id)?;
        let (scope, _) = select_org(state, session, Some(org)).await?;
        Ok::<_, ServiceError>((scope, id))
    }
    .await;
    loaded.map_err(|e| session.error(e))
}

/// `Forbidden` unless the caller may manage rules on the key.
async fn allowed(
    state: &AppState,
    scope: &OrgScope,
    id: KeyId,
    all: Action,
    own: Action,
) -> Result<(), ServiceError> {
    if may_manage(state, scope, ScopeType::Key, id.as_uuid(), all, own).await {
        Ok(())
    } else {
        Err(ServiceError::Forbidden)
    }
}

#[derive(Deserialize)]
pub struct EditForm {
    org: String,
    name: String,
    #[serde(default)]
    models: String,
    #[serde(default)]
    expires: String,
}

/// Saves the key's name, models and expiry (empty: every model, no expiry).
pub async fn update(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<EditForm>,
) -> Response {
    let (scope, id) = match posted(&state, &session, &id, &form.org).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let result = match parse_expires(&form.expires) {
        Ok(expires_at) => {
            let input = UpdateKey {
                name: Some(form.name),
                expires_at: Some(expires_at),
                models: Some(model_list(&form.models)),
            };
            state.services.keys.update(&scope, id, input).await
        }
        Err(e) => Err(e),
    };
    let result = form_result(session.lang, result);
    answer(&state, &session, &scope, id, Section::Edit, result).await
}

#[derive(Deserialize)]
pub struct LimitsForm {
    org: String,
    #[serde(default)]
    rpm: String,
    #[serde(default)]
    tpm: String,
}

/// Sets, replaces or (both fields empty) removes the key's requests and tokens per minute for
/// every model, through the governance service and its caps on one's own keys.
pub async fn set_limits(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<LimitsForm>,
) -> Response {
    let (scope, id) = match posted(&state, &session, &id, &form.org).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let t = session.lang.strings();
    let (Ok(rpm), Ok(tpm)) = (parse_count(&form.rpm), parse_count(&form.tpm)) else {
        let error = Err(Ok(FormError::local(t.limit_bad_value)));
        return answer::<()>(&state, &session, &scope, id, Section::Limits, error).await;
    };
    let result = async {
        // Loaded through the keys service first, so another organization's key is not found.
        state.services.keys.get(&scope, id).await?;
        let (limits, _) = own_rules(&state, &scope, id).await?;
        let governance = &state.services.governance;
        match limits.into_iter().find(|l| l.model.is_none()) {
            Some(l) if rpm.is_none() && tpm.is_none() && l.concurrency.is_none() => {
                governance.delete_limit(&scope, l.id).await
            }
            Some(l) => {
                let input = UpdateLimit {
                    rpm: Some(rpm),
                    tpm: Some(tpm),
                    ..UpdateLimit::default()
                };
                governance.update_limit(&scope, l.id, input).await.map(drop)
            }
            // Nothing to remove: still refused to a caller who could not have set one.
            None if rpm.is_none() && tpm.is_none() => {
                allowed(
                    &state,
                    &scope,
                    id,
                    Action::LimitsManage,
                    Action::LimitsManageOwn,
                )
                .await
            }
            None => {
                let input = CreateLimit {
                    scope_type: ScopeType::Key.as_str().to_owned(),
                    scope_id: Some(id.as_uuid()),
                    rpm,
                    tpm,
                    ..CreateLimit::default()
                };
                governance.create_limit(&scope, input).await.map(drop)
            }
        }
    }
    .await;
    let result = form_result(session.lang, result);
    answer(&state, &session, &scope, id, Section::Limits, result).await
}

#[derive(Deserialize)]
pub struct BudgetForm {
    org: String,
    amount: String,
    #[serde(default)]
    period: String,
    #[serde(default)]
    currency: String,
}

/// Sets or replaces the key's budget (amount in the currency's decimals, period, currency).
pub async fn set_budget(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<BudgetForm>,
) -> Response {
    let (scope, id) = match posted(&state, &session, &id, &form.org).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let t = session.lang.strings();
    let currency = match form.currency.trim() {
        "" => Some(Currency::USD),
        c => Currency::parse(c).ok(),
    };
    let parsed = currency.ok_or(t.budget_bad_currency).and_then(|c| {
        parse_amount(&form.amount, c)
            .map(|a| (c, a))
            .map_err(|e| e.message(t))
    });
    let (currency, amount) = match parsed {
        Ok(v) => v,
        Err(message) => {
            let error = Err(Ok(FormError::local(message)));
            return answer::<()>(&state, &session, &scope, id, Section::Budget, error).await;
        }
    };
    let period = match form.period.trim() {
        "" => None,
        p => Some(p.to_owned()),
    };
    let result = async {
        state.services.keys.get(&scope, id).await?;
        let (_, budget) = own_rules(&state, &scope, id).await?;
        let governance = &state.services.governance;
        match budget {
            Some(b) => {
                let input = UpdateBudget {
                    amount_micros: Some(amount),
                    currency: Some(currency.to_string()),
                    period,
                    ..UpdateBudget::default()
                };
                governance
                    .update_budget(&scope, b.id, input)
                    .await
                    .map(drop)
            }
            None => {
                let input = CreateBudget {
                    scope_type: ScopeType::Key.as_str().to_owned(),
                    scope_id: Some(id.as_uuid()),
                    amount_micros: Some(amount),
                    currency: Some(currency.to_string()),
                    period,
                    ..CreateBudget::default()
                };
                governance.create_budget(&scope, input).await.map(drop)
            }
        }
    }
    .await;
    let result = form_result(session.lang, result);
    answer(&state, &session, &scope, id, Section::Budget, result).await
}

/// Removes the key's budget (the form asks for confirmation first).
pub async fn remove_budget(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<OrgForm>,
) -> Response {
    let (scope, id) = match posted(&state, &session, &id, &form.org).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let result = async {
        state.services.keys.get(&scope, id).await?;
        match own_rules(&state, &scope, id).await?.1 {
            Some(b) => state.services.governance.delete_budget(&scope, b.id).await,
            None => {
                allowed(
                    &state,
                    &scope,
                    id,
                    Action::BudgetsManage,
                    Action::BudgetsManageOwn,
                )
                .await
            }
        }
    }
    .await;
    match result {
        Ok(()) => redirect(&format!("/keys/{id}?org={}&done=budget", scope.org_id())),
        Err(e) => session.error(e),
    }
}

#[derive(Template)]
#[template(path = "key_rotate.html")]
struct RotatePage {
    ctx: Ctx,
    org_id: String,
    key: KeyRow,
}

/// Asks for confirmation before rotating: the current secret stops working.
pub async fn confirm_rotate(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<OrgQuery>,
) -> Response {
    match confirming(&state, &session, &id, q.org.as_deref(), true).await {
        Ok((ctx, org_id, key)) => render(StatusCode::OK, &RotatePage { ctx, org_id, key }),
        Err(e) => session.error(e),
    }
}

/// Gives the key a new secret and shows it once, like a new key's; the old one stops working.
pub async fn rotate(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<OrgForm>,
) -> Response {
    let (scope, id) = match posted(&state, &session, &id, &form.org).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    match state.services.keys.rotate(&scope, id).await {
        Ok(rotated) => {
            let org_query = format!("?org={}", scope.org_id());
            let mut ctx = session.ctx(&format!("/keys{org_query}"), "keys");
            ctx.org_query = org_query;
            let page = CreatedPage {
                ctx,
                name: rotated.key.name,
                secret: rotated.secret.expose_secret().to_owned(),
            };
            render(StatusCode::OK, &page)
        }
        Err(e) => session.error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_parsed() {
        assert_eq!(parse_expires("").unwrap(), None);
        assert_eq!(
            parse_expires("2030-01-02").unwrap().unwrap().to_rfc3339(),
            "2030-01-02T00:00:00+00:00"
        );
        assert!(parse_expires("tomorrow").is_err());
    }
}
