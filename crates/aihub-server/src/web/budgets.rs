//! Budgets of the selected organization: every budget the viewer may see with what has been
//! spent in its period (a progress bar with the 80% and 100% marks), the create form, a page per
//! budget to edit its amount and alert settings, rotate its webhook secret (shown once) or
//! delete it, and the alerts already fired. Also the pieces the key page shares: budget rows,
//! amounts typed in the currency's decimals, and form messages for the services' refusals.

use std::collections::HashMap;
use std::str::FromStr;

use super::pages::Form;
use aihub_core::governance::{BudgetRule, Period, ScopeType};
use aihub_core::money::{format_decimal_micros, parse_decimal_micros};
use aihub_core::{Currency, KeyId};
use aihub_service::ServiceError;
use aihub_service::governance::{BudgetWithSecret, CreateBudget, UpdateBudget};
use aihub_service::orgs::OrgScope;
use aihub_service::policy::Action;
use aihub_store::{BudgetAlert, DeliveryStatus};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::Deserialize;
use uuid::Uuid;

use super::i18n::{Lang, Strings};
use super::pages::{
    Ctx, OrgChoice, Session, comma_list, message_for, redirect, render, select_org,
};
use super::pages::{OrgForm, OrgQuery, path_id};
use super::progress::Progress;
use crate::error::ApiError;
use crate::state::AppState;

/// Alerts shown under the budgets (newest first).
const ALERTS_SHOWN: u32 = 50;

/// Keys, teams and members whose names the lists show (rules on others show their ids).
const NAMES_LOADED: u32 = 200;

/// Currencies offered by the forms.
pub const CURRENCIES: [Currency; 3] = [Currency::USD, Currency::CNY, Currency::EUR];

/// A message shown above a form that was refused, in the reader's language; `detail` is the
/// service's own English text, kept for English readers.
pub struct FormError {
    pub message: &'static str,
    pub detail: Option<String>,
}

impl FormError {
    #[must_use]
    pub fn local(message: &'static str) -> Self {
        Self {
            message,
            detail: None,
        }
    }

    /// A refusal of the input (`422`) or a conflict (`409`) becomes a form message; anything
    /// else (forbidden, not found, internal) stays an error to show as a page.
    pub fn from_service(lang: Lang, e: ServiceError) -> Result<Self, ServiceError> {
        if !matches!(
            e,
            ServiceError::Invalid { .. } | ServiceError::Conflict { .. }
        ) {
            return Err(e);
        }
        let api = ApiError::from(e);
        let t = lang.strings();
        let message = match api.code {
            "above_user_budget" => t.budget_above_user,
            "above_user_limit" => t.limit_above_user,
            "limit_exists" => t.limit_exists,
            "invalid_thresholds" => t.alert_bad_thresholds,
            "invalid_webhook_url" => t.alert_bad_webhook,
            "invalid_alert_emails" => t.alert_bad_emails,
            "invalid_scope" => t.budget_bad_scope,
            "invalid_limit" => t.limit_bad_value,
            "invalid_model" => t.limit_bad_model,
            code => message_for(t, api.status, code),
        };
        Ok(Self {
            message,
            detail: (lang == Lang::En).then_some(api.message),
        })
    }
}

/// Why a typed amount was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountError {
    NotANumber,
    Negative,
    TooManyDecimals,
    Zero,
}

impl AmountError {
    #[must_use]
    pub fn message(self, t: &'static Strings) -> &'static str {
        match self {
            AmountError::NotANumber => t.budget_amount_not_number,
            AmountError::Negative => t.budget_amount_negative,
            AmountError::TooManyDecimals => t.budget_amount_decimals,
            AmountError::Zero => t.budget_amount_zero,
        }
    }
}

/// An amount typed in whole units of `currency` (`12`, `12.5`, `0.99`) as exact micro-units:
/// positive, with no more decimals than the currency's minor unit, never through a float.
pub fn parse_amount(raw: &str, currency: Currency) -> Result<i64, AmountError> {
    let s = raw.trim();
    if s.starts_with('-') {
        return Err(AmountError::Negative);
    }
    let decimals = s.split_once('.').map_or(0, |(_, frac)| frac.len());
    let micros = parse_decimal_micros(s).map_err(|_| {
        if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') && decimals > 6 {
            AmountError::TooManyDecimals
        } else {
            AmountError::NotANumber
        }
    })?;
    if u32::try_from(decimals).map_or(true, |d| d > currency.minor_unit_digits()) {
        return Err(AmountError::TooManyDecimals);
    }
    if micros <= 0 {
        return Err(AmountError::Zero);
    }
    Ok(micros)
}

/// Whole numbers separated by commas (`80, 100`); `None` when one is not a number.
#[must_use]
pub fn parse_numbers(raw: &str) -> Option<Vec<i64>> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<i64>().ok())
        .collect()
}

/// A scope's name in the reader's language.
#[must_use]
pub fn scope_label(t: &'static Strings, s: ScopeType) -> &'static str {
    match s {
        ScopeType::Key => t.budget_scope_key,
        ScopeType::User => t.budget_scope_user,
        ScopeType::Team => t.budget_scope_team,
        ScopeType::Org => t.budget_scope_org,
    }
}

/// A period's name in the reader's language.
#[must_use]
pub fn period_label(t: &'static Strings, p: Period) -> &'static str {
    match p {
        Period::Daily => t.budget_period_daily,
        Period::Weekly => t.budget_period_weekly,
        Period::Monthly => t.budget_period_monthly,
        Period::Total => t.budget_period_total,
    }
}

/// `(value, label, selected)` for a `<select>` of periods.
#[must_use]
pub fn period_choices(
    t: &'static Strings,
    current: Period,
) -> Vec<(&'static str, &'static str, bool)> {
    Period::ALL
        .into_iter()
        .map(|p| (p.as_str(), period_label(t, p), p == current))
        .collect()
}

/// `(code, selected)` for a `<select>` of currencies.
#[must_use]
pub fn currency_choices(current: Currency) -> Vec<(String, bool)> {
    CURRENCIES
        .into_iter()
        .map(|c| (c.as_str().to_owned(), c == current))
        .collect()
}

#[must_use]
pub fn when(t: Option<DateTime<Utc>>, none: &'static str) -> String {
    t.map_or_else(
        || none.to_owned(),
        |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

/// One budget as the pages show it.
pub struct BudgetRow {
    pub id: String,
    pub name: String,
    pub scope: &'static str,
    pub scope_id: String,
    /// The name of the key, member, team or organization, where the list knows it.
    pub target: String,
    pub period: &'static str,
    pub period_code: &'static str,
    pub currency: String,
    pub amount: String,
    pub spent: String,
    pub resets: String,
    pub thresholds: String,
    pub webhook_url: String,
    pub has_webhook: bool,
    pub alert_emails: String,
    pub bar: Progress,
    pub can_manage: bool,
}

/// The row of `b`, with its spend in the current period as the gateway counts it.
pub async fn budget_row(
    state: &AppState,
    t: &'static Strings,
    b: &BudgetRule,
    can_manage: bool,
) -> Result<BudgetRow, ServiceError> {
    let status = state.governor.budget_status(b).await?;
    let spent = status.spent_micros.saturating_add(status.reserved_micros);
    Ok(BudgetRow {
        id: b.id.to_string(),
        name: b.name.clone().unwrap_or_default(),
        scope: scope_label(t, b.scope),
        scope_id: b.scope_id.to_string(),
        target: String::new(),
        period: period_label(t, b.period),
        period_code: b.period.as_str(),
        currency: b.currency.to_string(),
        amount: format_decimal_micros(b.amount_micros),
        spent: format_decimal_micros(spent),
        resets: when(status.period_end, t.budget_never_resets),
        thresholds: b
            .thresholds
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        webhook_url: b.webhook_url.clone().unwrap_or_default(),
        has_webhook: b.webhook_url.is_some(),
        alert_emails: b.alert_emails.join(", "),
        bar: Progress::new(spent, b.amount_micros),
        can_manage,
    })
}

/// Names of what rules apply to, so a row reads "API key: ci" rather than an id: the
/// organization, and the first [`NAMES_LOADED`] keys, teams and members.
pub struct ScopeNames(HashMap<Uuid, String>);

impl ScopeNames {
    pub async fn load(state: &AppState, scope: &OrgScope) -> Result<Self, ServiceError> {
        let s = &state.services;
        let mut names = HashMap::new();
        names.insert(scope.org_id().as_uuid(), scope.org().name.clone());
        for k in s.keys.list(scope, None, NAMES_LOADED).await?.data {
            names.insert(k.id.as_uuid(), format!("{} ({}…)", k.name, k.prefix));
        }
        for team in s.teams.list(scope, None, NAMES_LOADED).await?.data {
            names.insert(team.id.as_uuid(), team.name);
        }
        for m in s.orgs.members(scope, None, NAMES_LOADED).await?.data {
            let name = if m.name.trim().is_empty() {
                m.email.to_string()
            } else {
                m.name
            };
            names.insert(m.user_id.as_uuid(), name);
        }
        Ok(Self(names))
    }

    /// `(id, name)` of everything named, by name: suggestions for a form's scope id.
    #[must_use]
    pub fn choices(&self) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = self
            .0
            .iter()
            .map(|(id, name)| (id.to_string(), name.clone()))
            .collect();
        all.sort_by(|a, b| a.1.cmp(&b.1));
        all
    }

    /// The name of `id`, or empty when it is not known.
    #[must_use]
    pub fn of(&self, id: Uuid) -> String {
        self.0.get(&id).cloned().unwrap_or_default()
    }
}

/// Whether the caller may change rules on (`kind`, `id`): `all` anywhere, `own` on their own
/// keys. Only decides what the page offers; the governance service decides again.
pub async fn may_manage(
    state: &AppState,
    scope: &OrgScope,
    kind: ScopeType,
    id: Uuid,
    all: Action,
    own: Action,
) -> bool {
    if scope.can(all) {
        return true;
    }
    if kind != ScopeType::Key || !scope.can(own) {
        return false;
    }
    state
        .services
        .keys
        .get(scope, KeyId::from_uuid(id))
        .await
        .is_ok_and(|k| k.owner_user_id == Some(scope.actor().user_id))
}

/// One alert already fired.
pub struct AlertRow {
    pub id: String,
    pub at: String,
    pub budget_id: String,
    pub budget: String,
    pub threshold: u32,
    pub spent: String,
    pub amount: String,
    pub currency: String,
    pub webhook: &'static str,
    pub email: &'static str,
}

fn delivery_label(t: &'static Strings, s: DeliveryStatus) -> &'static str {
    match s {
        DeliveryStatus::Pending => t.alert_pending,
        DeliveryStatus::Delivered => t.alert_delivered,
        DeliveryStatus::Failed => t.alert_failed,
        DeliveryStatus::None => t.alert_not_sent,
    }
}

fn alert_row(t: &'static Strings, a: &BudgetAlert) -> AlertRow {
    AlertRow {
        id: a.id.to_string(),
        at: when(Some(a.created_at), t.never),
        budget_id: a.budget_id.to_string(),
        budget: a
            .budget_name
            .clone()
            .unwrap_or_else(|| a.budget_id.to_string()),
        threshold: a.threshold_pct,
        spent: format_decimal_micros(a.spent_micros),
        amount: format_decimal_micros(a.amount_micros),
        currency: a.currency.to_string(),
        webhook: delivery_label(t, a.webhook.status),
        email: delivery_label(t, a.email.status),
    }
}

#[derive(Template)]
#[template(path = "budgets.html")]
struct BudgetsPage {
    ctx: Ctx,
    org_id: String,
    rows: Vec<BudgetRow>,
    alerts: Vec<AlertRow>,
    can_create: bool,
    notice: Option<&'static str>,
    error: Option<FormError>,
    /// The create form's values: the defaults, or what a refused form held.
    form: CreateForm,
    /// Suggestions for the scope id: `(id, name)`.
    targets: Vec<(String, String)>,
    scopes: Vec<(&'static str, &'static str, bool)>,
    periods: Vec<(&'static str, &'static str, bool)>,
    currencies: Vec<(String, bool)>,
}

fn page_ctx(session: &Session, scope: &OrgScope, path: &str, orgs: Vec<OrgChoice>) -> Ctx {
    let org_query = format!("?org={}", scope.org_id());
    let mut ctx = session.ctx(&format!("{path}{org_query}"), "budgets");
    ctx.orgs = orgs;
    ctx.org_query = org_query;
    ctx
}

async fn list_page(
    state: &AppState,
    session: &Session,
    scope: &OrgScope,
    orgs: Vec<OrgChoice>,
    notice: Option<&'static str>,
    refused: Option<(FormError, CreateForm)>,
) -> Result<BudgetsPage, ServiceError> {
    let t = session.lang.strings();
    let budgets = state.services.governance.list_budgets(scope).await?;
    let names = ScopeNames::load(state, scope).await?;
    let mut rows = Vec::with_capacity(budgets.len());
    for b in &budgets {
        let can = may_manage(
            state,
            scope,
            b.scope,
            b.scope_id,
            Action::BudgetsManage,
            Action::BudgetsManageOwn,
        )
        .await;
        rows.push(BudgetRow {
            target: names.of(b.scope_id),
            ..budget_row(state, t, b, can).await?
        });
    }
    let alerts = state
        .services
        .alerts
        .list(scope, None, None, ALERTS_SHOWN)
        .await?;
    let all = scope.can(Action::BudgetsManage);
    let (error, form) = match refused {
        Some((error, form)) => (Some(error), form),
        None => (None, CreateForm::blank()),
    };
    let scopes = ScopeType::ALL
        .into_iter()
        .filter(|s| all || *s == ScopeType::Key)
        .map(|s| (s.as_str(), scope_label(t, s), s.as_str() == form.scope_type))
        .collect();
    let period = Period::parse(&form.period).unwrap_or(Period::Monthly);
    let currency = form_currency(&form.currency).unwrap_or(Currency::USD);
    Ok(BudgetsPage {
        ctx: page_ctx(session, scope, "/budgets", orgs),
        org_id: scope.org_id().to_string(),
        rows,
        alerts: alerts.data.iter().map(|a| alert_row(t, a)).collect(),
        can_create: all || scope.can(Action::BudgetsManageOwn),
        notice,
        error,
        form,
        targets: names.choices(),
        scopes,
        periods: period_choices(t, period),
        currencies: currency_choices(currency),
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    org: Option<String>,
    done: Option<String>,
}

fn notice_for(t: &'static Strings, done: Option<&str>) -> Option<&'static str> {
    match done? {
        "created" => Some(t.budget_created),
        "saved" => Some(t.budget_saved),
        "deleted" => Some(t.budget_deleted),
        _ => None,
    }
}

pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> Response {
    let result = async {
        let (scope, orgs) = select_org(&state, &session, q.org.as_deref()).await?;
        let notice = notice_for(session.lang.strings(), q.done.as_deref());
        list_page(&state, &session, &scope, orgs, notice, None).await
    }
    .await;
    session.page(result)
}

#[derive(Default, Deserialize)]
pub struct CreateForm {
    org: String,
    scope_type: String,
    #[serde(default)]
    scope_id: String,
    #[serde(default)]
    name: String,
    amount: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    period: String,
    #[serde(default)]
    thresholds: String,
    #[serde(default)]
    webhook_url: String,
    #[serde(default)]
    alert_emails: String,
}

impl CreateForm {
    /// The form as first shown.
    fn blank() -> Self {
        Self {
            thresholds: "80, 100".to_owned(),
            ..Self::default()
        }
    }
}

/// An optional text field: `None` when left empty.
fn filled(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// The form's currency, `USD` when none was chosen; `None` when it is not one we know.
fn form_currency(raw: &str) -> Option<Currency> {
    filled(raw).map_or(Some(Currency::USD), |c| Currency::parse(&c).ok())
}

/// Parses the create form into the service's input, or a message for the form.
fn create_input(t: &'static Strings, f: &CreateForm) -> Result<CreateBudget, &'static str> {
    let currency = form_currency(&f.currency).ok_or(t.budget_bad_currency)?;
    let amount = parse_amount(&f.amount, currency).map_err(|e| e.message(t))?;
    let scope_id = match filled(&f.scope_id) {
        Some(s) => Some(Uuid::from_str(&s).map_err(|_| t.budget_bad_scope)?),
        None => None,
    };
    let thresholds = match filled(&f.thresholds) {
        Some(s) => Some(parse_numbers(&s).ok_or(t.alert_bad_thresholds)?),
        None => None,
    };
    Ok(CreateBudget {
        scope_type: f.scope_type.clone(),
        scope_id,
        name: filled(&f.name),
        amount_micros: Some(amount),
        currency: Some(currency.to_string()),
        period: filled(&f.period),
        thresholds,
        webhook_url: filled(&f.webhook_url),
        alert_emails: Some(comma_list(&f.alert_emails)),
        ..CreateBudget::default()
    })
}

#[derive(Template)]
#[template(path = "budget_secret.html")]
struct SecretPage {
    ctx: Ctx,
    budget_id: String,
    name: String,
    secret: String,
}

/// After a change that minted a webhook secret: the page that shows it, the only time.
fn secret_page(
    session: &Session,
    scope: &OrgScope,
    b: &BudgetWithSecret,
    status: StatusCode,
) -> Option<Response> {
    let secret = b.webhook_secret.as_ref()?;
    let page = SecretPage {
        ctx: page_ctx(session, scope, "/budgets", Vec::new()),
        budget_id: b.budget.id.to_string(),
        name: b.budget.name.clone().unwrap_or_default(),
        secret: secret.expose_secret().to_owned(),
    };
    Some(render(status, &page))
}

/// Shows the list again with a message above the create form, answering `422`.
async fn refused(
    state: &AppState,
    session: &Session,
    scope: &OrgScope,
    orgs: Vec<OrgChoice>,
    error: FormError,
    form: CreateForm,
) -> Response {
    match list_page(state, session, scope, orgs, None, Some((error, form))).await {
        Ok(page) => render(StatusCode::UNPROCESSABLE_ENTITY, &page),
        Err(e) => session.error(e),
    }
}

/// Creates a budget. Bad input shows the list again with a message; a webhook secret minted
/// with it is shown once.
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
    let input = match create_input(t, &form) {
        Ok(input) => input,
        Err(message) => {
            return refused(
                &state,
                &session,
                &scope,
                orgs,
                FormError::local(message),
                form,
            )
            .await;
        }
    };
    match state.services.governance.create_budget(&scope, input).await {
        Ok(created) => secret_page(&session, &scope, &created, StatusCode::CREATED)
            .unwrap_or_else(|| redirect(&format!("/budgets?org={}&done=created", scope.org_id()))),
        Err(e) => match FormError::from_service(session.lang, e) {
            Ok(error) => refused(&state, &session, &scope, orgs, error, form).await,
            Err(e) => session.error(e),
        },
    }
}

#[derive(Template)]
#[template(path = "budget_edit.html")]
struct EditPage {
    ctx: Ctx,
    org_id: String,
    b: BudgetRow,
    alerts: Vec<AlertRow>,
    error: Option<FormError>,
}

async fn edit_page(
    state: &AppState,
    session: &Session,
    scope: &OrgScope,
    id: Uuid,
    error: Option<FormError>,
) -> Result<EditPage, ServiceError> {
    let t = session.lang.strings();
    let b = state.services.governance.get_budget(scope, id).await?;
    let can = may_manage(
        state,
        scope,
        b.scope,
        b.scope_id,
        Action::BudgetsManage,
        Action::BudgetsManageOwn,
    )
    .await;
    let alerts = state
        .services
        .alerts
        .list(scope, Some(id), None, ALERTS_SHOWN)
        .await?;
    Ok(EditPage {
        ctx: page_ctx(session, scope, &format!("/budgets/{id}"), Vec::new()),
        org_id: scope.org_id().to_string(),
        b: BudgetRow {
            target: ScopeNames::load(state, scope).await?.of(b.scope_id),
            ..budget_row(state, t, &b, can).await?
        },
        alerts: alerts.data.iter().map(|a| alert_row(t, a)).collect(),
        error,
    })
}

/// One budget: its figures, the edit form, the webhook secret rotation and deletion.
pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<OrgQuery>,
) -> Response {
    let result = async {
        let id = path_id::<Uuid>(&id)?;
        let (scope, _) = select_org(&state, &session, q.org.as_deref()).await?;
        edit_page(&state, &session, &scope, id, None).await
    }
    .await;
    session.page(result)
}

#[derive(Deserialize)]
pub struct UpdateForm {
    org: String,
    #[serde(default)]
    name: String,
    amount: String,
    #[serde(default)]
    thresholds: String,
    #[serde(default)]
    webhook_url: String,
    #[serde(default)]
    alert_emails: String,
}

/// Saves the amount, name and alert settings. An emptied webhook URL removes the webhook.
pub async fn update(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<UpdateForm>,
) -> Response {
    let t = session.lang.strings();
    let loaded = async {
        let id = path_id::<Uuid>(&id)?;
        let (scope, _) = select_org(&state, &session, Some(&form.org)).await?;
        let b = state.services.governance.get_budget(&scope, id).await?;
        Ok::<_, ServiceError>((scope, b))
    }
    .await;
    let (scope, b) = match loaded {
        Ok(v) => v,
        Err(e) => return session.error(e),
    };
    let input = parse_amount(&form.amount, b.currency)
        .map_err(|e| e.message(t))
        .and_then(|amount| {
            let thresholds = parse_numbers(&form.thresholds).ok_or(t.alert_bad_thresholds)?;
            Ok(UpdateBudget {
                name: Some(filled(&form.name)),
                amount_micros: Some(amount),
                thresholds: (!thresholds.is_empty()).then_some(thresholds),
                webhook_url: Some(filled(&form.webhook_url)),
                alert_emails: Some(comma_list(&form.alert_emails)),
                ..UpdateBudget::default()
            })
        });
    let result = match input {
        Ok(input) => state
            .services
            .governance
            .update_budget(&scope, b.id, input)
            .await
            .map_err(|e| FormError::from_service(session.lang, e)),
        Err(message) => Err(Ok(FormError::local(message))),
    };
    match result {
        Ok(updated) => secret_page(&session, &scope, &updated, StatusCode::OK)
            .unwrap_or_else(|| redirect(&format!("/budgets?org={}&done=saved", scope.org_id()))),
        Err(Ok(error)) => match edit_page(&state, &session, &scope, b.id, Some(error)).await {
            Ok(page) => render(StatusCode::UNPROCESSABLE_ENTITY, &page),
            Err(e) => session.error(e),
        },
        Err(Err(e)) => session.error(e),
    }
}

/// Replaces the webhook signing secret and shows the new one, once.
pub async fn rotate_secret(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<OrgForm>,
) -> Response {
    let result = async {
        let id = path_id::<Uuid>(&id)?;
        let (scope, _) = select_org(&state, &session, Some(&form.org)).await?;
        let rotated = state
            .services
            .governance
            .rotate_webhook_secret(&scope, id)
            .await?;
        Ok::<_, ServiceError>((scope, rotated))
    }
    .await;
    match result {
        Ok((scope, rotated)) => secret_page(&session, &scope, &rotated, StatusCode::OK)
            .unwrap_or_else(|| session.error(ServiceError::NotFound)),
        Err(e) => session.error(e),
    }
}

/// Deletes the budget (the form asks for confirmation first), then back to the list.
pub async fn delete(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<OrgForm>,
) -> Response {
    let result = async {
        let id = path_id::<Uuid>(&id)?;
        let (scope, _) = select_org(&state, &session, Some(&form.org)).await?;
        state.services.governance.delete_budget(&scope, id).await?;
        Ok::<_, ServiceError>(scope.org_id())
    }
    .await;
    match result {
        Ok(org) => redirect(&format!("/budgets?org={org}&done=deleted")),
        Err(e) => session.error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_micros_in_the_currency_decimals() {
        assert_eq!(parse_amount("12", Currency::USD), Ok(12_000_000));
        assert_eq!(parse_amount(" 0.99 ", Currency::USD), Ok(990_000));
        assert_eq!(parse_amount("12.5", Currency::CNY), Ok(12_500_000));
        assert_eq!(
            parse_amount("-1", Currency::USD),
            Err(AmountError::Negative)
        );
        assert_eq!(
            parse_amount("1.234", Currency::USD),
            Err(AmountError::TooManyDecimals)
        );
        assert_eq!(
            parse_amount("1.0000001", Currency::USD),
            Err(AmountError::TooManyDecimals)
        );
        assert_eq!(
            parse_amount("ten", Currency::USD),
            Err(AmountError::NotANumber)
        );
        assert_eq!(
            parse_amount("", Currency::USD),
            Err(AmountError::NotANumber)
        );
        assert_eq!(
            parse_amount("1e3", Currency::USD),
            Err(AmountError::NotANumber)
        );
        assert_eq!(parse_amount("0.00", Currency::USD), Err(AmountError::Zero));
    }

    #[test]
    fn lists_are_parsed() {
        assert_eq!(parse_numbers("80, 100,"), Some(vec![80, 100]));
        assert_eq!(parse_numbers(""), Some(vec![]));
        assert_eq!(parse_numbers("80, lots"), None);
    }
}
