//! The overview: today's and this month's requests, tokens and spend of the selected
//! organization, from the usage service's daily rollups (UTC days); the plan's monthly quota and
//! every budget of the organization as progress bars; and the last failed requests.

use std::collections::HashMap;

use aihub_core::governance::{BudgetRule, Period as BudgetPeriod, ScopeType};
use aihub_core::money::format_decimal_micros;
use aihub_core::time::now;
use aihub_service::ServiceError;
use aihub_service::governance::Quota;
use aihub_service::orgs::OrgScope;
use aihub_service::policy::Action;
use aihub_store::{UsageGroup, UsageGrouping, UsageRecord, UsageTotals};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{Datelike, NaiveDate};
use uuid::Uuid;

use super::i18n::Strings;
use super::pages::{Ctx, OrgQuery, Session, render, select_org};
use super::progress::Progress;
use super::usage::group_label;
use crate::state::AppState;

/// Failed requests listed under "recent errors".
const RECENT_ERRORS: u32 = 10;

/// Totals of one period, spend kept apart per currency.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Period {
    pub requests: i64,
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// `(currency, micros)`, in order of first appearance.
    spend: Vec<(String, i64)>,
}

impl Period {
    pub fn add(&mut self, row: &UsageTotals) {
        self.requests += row.requests;
        self.errors += row.errors;
        self.input_tokens += row.prompt_tokens;
        self.output_tokens += row.completion_tokens;
        match self.spend.iter_mut().find(|(c, _)| *c == row.currency) {
            Some((_, micros)) => *micros += row.cost_micros,
            None => self.spend.push((row.currency.clone(), row.cost_micros)),
        }
    }

    #[must_use]
    pub fn tokens(&self) -> i64 {
        self.input_tokens + self.output_tokens
    }

    /// Spend per currency, e.g. `USD 0.000016`; `0` when nothing was spent.
    #[must_use]
    pub fn spend(&self) -> Vec<String> {
        if self.spend.is_empty() {
            return vec!["0".to_owned()];
        }
        self.spend
            .iter()
            .map(|(c, m)| format!("{c} {}", format_decimal_micros(*m)))
            .collect()
    }
}

/// Splits the month's daily rows into today and the whole month.
#[must_use]
pub fn periods(rows: &[UsageTotals], today: NaiveDate) -> (Period, Period) {
    let mut day = Period::default();
    let mut month = Period::default();
    for row in rows {
        month.add(row);
        if row.group == UsageGroup::Day(today) {
            day.add(row);
        }
    }
    (day, month)
}

/// One progress bar: a quota or a budget, used against its limit.
pub struct Meter {
    /// The element id (`quota-tokens`, `quota-spend`, `budget-<id>`).
    pub id: String,
    pub label: String,
    pub used: String,
    pub limit: String,
    pub bar: Progress,
}

/// The plan's monthly quota as bars: tokens and spend, each when the plan sets it.
#[must_use]
pub fn quota_meters(t: &'static Strings, quota: &Quota) -> Vec<Meter> {
    let Some(plan) = &quota.plan else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(limit) = plan.monthly_tokens {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        out.push(Meter {
            id: "quota-tokens".to_owned(),
            label: t.tokens.to_owned(),
            used: quota.tokens_used.to_string(),
            limit: limit.to_string(),
            bar: Progress::new(quota.tokens_used, limit),
        });
    }
    if let Some(limit) = plan.monthly_spend_micros {
        let money = |m| format!("{} {}", plan.currency, format_decimal_micros(m));
        out.push(Meter {
            id: "quota-spend".to_owned(),
            label: t.spend.to_owned(),
            used: money(quota.spend_used_micros),
            limit: money(limit),
            bar: Progress::new(quota.spend_used_micros, limit),
        });
    }
    out
}

fn period_label(t: &'static Strings, p: BudgetPeriod) -> &'static str {
    match p {
        BudgetPeriod::Daily => t.overview_period_daily,
        BudgetPeriod::Weekly => t.overview_period_weekly,
        BudgetPeriod::Monthly => t.overview_period_monthly,
        BudgetPeriod::Total => t.overview_period_total,
    }
}

/// A budget as a bar: "Key ci · nightly", spent this period against its amount.
#[must_use]
pub fn budget_meter(t: &'static Strings, b: &BudgetRule, target: &str, spent_micros: i64) -> Meter {
    let scope = match b.scope {
        ScopeType::Org => t.organization,
        ScopeType::Team => t.usage_by_team,
        ScopeType::User => t.usage_by_user,
        ScopeType::Key => t.usage_by_key,
    };
    let mut label = format!("{scope}: {target}");
    if let Some(name) = b.name.as_deref().filter(|n| !n.is_empty()) {
        label = format!("{label} · {name}");
    }
    let money = |m| format!("{} {}", b.currency, format_decimal_micros(m));
    Meter {
        id: format!("budget-{}", b.id),
        label,
        used: money(spent_micros),
        limit: format!("{} {}", money(b.amount_micros), period_label(t, b.period)),
        bar: Progress::new(spent_micros, b.amount_micros),
    }
}

/// Every budget of the organization the viewer may see, with what was spent against each in its
/// current period.
async fn budgets(
    state: &AppState,
    scope: &OrgScope,
    t: &'static Strings,
) -> Result<Vec<Meter>, ServiceError> {
    if !scope.can(Action::BudgetsRead) {
        return Ok(Vec::new());
    }
    let governance = &state.services.governance;
    let rules = governance.list_budgets(scope).await?;
    let mut names: HashMap<Uuid, String> = HashMap::new();
    for (kind, grouping) in [
        (ScopeType::Key, UsageGrouping::Key),
        (ScopeType::User, UsageGrouping::User),
        (ScopeType::Team, UsageGrouping::Team),
    ] {
        let ids: Vec<Uuid> = rules
            .iter()
            .filter(|b| b.scope == kind)
            .map(|b| b.scope_id)
            .collect();
        if !ids.is_empty() {
            names.extend(
                state
                    .services
                    .usage
                    .group_names(scope, grouping, &ids)
                    .await?,
            );
        }
    }
    let at = now();
    let mut out = Vec::with_capacity(rules.len());
    for b in &rules {
        let spent = governance
            .spent_since(
                scope.org_id(),
                b.scope,
                b.scope_id,
                b.period.start(at),
                b.currency,
            )
            .await?;
        let target = match b.scope {
            ScopeType::Org => scope.org().name.clone(),
            ScopeType::Key => group_label(
                t,
                &UsageGroup::Key(Some(aihub_core::KeyId::from_uuid(b.scope_id))),
                &names,
            ),
            ScopeType::User => group_label(
                t,
                &UsageGroup::User(Some(aihub_core::UserId::from_uuid(b.scope_id))),
                &names,
            ),
            ScopeType::Team => group_label(
                t,
                &UsageGroup::Team(Some(aihub_core::TeamId::from_uuid(b.scope_id))),
                &names,
            ),
        };
        out.push(budget_meter(t, b, &target, spent));
    }
    Ok(out)
}

/// One line of "recent errors".
pub struct ErrorRow {
    pub id: String,
    pub time: String,
    pub model: String,
    pub status: i32,
    pub code: String,
}

fn error_row(t: &'static Strings, r: &UsageRecord) -> ErrorRow {
    ErrorRow {
        id: r.request_id.to_string(),
        time: r.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        model: group_label(t, &UsageGroup::Model(r.model.clone()), &HashMap::new()),
        status: r.status,
        code: r.error_code.clone().unwrap_or_else(|| "—".to_owned()),
    }
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    ctx: Ctx,
    org_name: String,
    periods: Vec<PeriodView>,
    plan: Option<String>,
    quota: Vec<Meter>,
    budgets: Vec<Meter>,
    errors: Vec<ErrorRow>,
}

/// One card of the overview; `id` prefixes the element ids (`today-requests`, …).
struct PeriodView {
    id: &'static str,
    label: &'static str,
    period: Period,
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<OrgQuery>,
) -> Response {
    let (scope, orgs) = match select_org(&state, &session, q.org.as_deref()).await {
        Ok(v) => v,
        Err(e) => return session.error(e),
    };
    let today = now().date_naive();
    let month_start = today.with_day(1).unwrap_or(today);
    let rows = match state
        .services
        .usage
        .summary(&scope, Some(month_start), Some(today), UsageGrouping::Day)
        .await
    {
        Ok((_, _, rows)) => rows,
        Err(e) => return session.error(e),
    };
    let (today, month) = periods(&rows, today);
    let t = session.lang.strings();
    let extras = async {
        let quota = state.services.governance.quota(&scope).await?;
        let budgets = budgets(&state, &scope, t).await?;
        let errors = state
            .services
            .usage
            .recent_errors(&scope, RECENT_ERRORS)
            .await?;
        Ok::<_, ServiceError>((quota, budgets, errors))
    };
    let (quota, budgets, errors) = match extras.await {
        Ok(v) => v,
        Err(e) => return session.error(e),
    };
    let org_query = format!("?org={}", scope.org_id());
    let mut ctx = session.ctx(&format!("/{org_query}"), "overview");
    ctx.orgs = orgs;
    ctx.org_query = org_query;
    let page = OverviewPage {
        ctx,
        org_name: scope.org().name.clone(),
        periods: vec![
            PeriodView {
                id: "today",
                label: t.today,
                period: today,
            },
            PeriodView {
                id: "month",
                label: t.this_month,
                period: month,
            },
        ],
        plan: quota.plan.as_ref().map(|p| p.name.clone()),
        quota: quota_meters(t, &quota),
        budgets,
        errors: errors.iter().map(|r| error_row(t, r)).collect(),
    };
    render(StatusCode::OK, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(day: NaiveDate, currency: &str, requests: i64, micros: i64) -> UsageTotals {
        UsageTotals {
            group: UsageGroup::Day(day),
            currency: currency.to_owned(),
            requests,
            errors: 1,
            prompt_tokens: 10,
            completion_tokens: 5,
            cached_tokens: 0,
            cost_micros: micros,
        }
    }

    #[test]
    fn today_and_month_are_split_and_currencies_kept_apart() {
        let d = |n| NaiveDate::from_ymd_opt(2026, 11, n).unwrap();
        let rows = [
            row(d(1), "USD", 3, 1_500_000),
            row(d(25), "USD", 2, 16),
            row(d(25), "CNY", 1, 2_000_000),
        ];
        let (today, month) = periods(&rows, d(25));
        assert_eq!(today.requests, 3);
        assert_eq!(today.tokens(), 30);
        assert_eq!(today.spend(), ["USD 0.000016", "CNY 2"]);
        assert_eq!(month.requests, 6);
        assert_eq!(month.errors, 3);
        assert_eq!(month.spend(), ["USD 1.500016", "CNY 2"]);
        assert_eq!(Period::default().spend(), ["0"]);
    }
}
