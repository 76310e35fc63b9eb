//! The overview: today's and this month's requests, tokens and spend of the selected
//! organization, from the usage service's daily rollups (UTC days).

use aihub_core::money::format_decimal_micros;
use aihub_core::time::now;
use aihub_store::{UsageGroup, UsageGrouping, UsageTotals};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{Datelike, NaiveDate};
use serde::Deserialize;

use super::pages::{Ctx, Session, render, select_org};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct OrgQuery {
    pub org: Option<String>,
}

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
    fn add(&mut self, row: &UsageTotals) {
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

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    ctx: Ctx,
    org_name: String,
    periods: Vec<PeriodView>,
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
    let org_query = format!("?org={}", scope.org_id());
    let mut ctx = session.ctx(&format!("/{org_query}"), "overview");
    ctx.orgs = orgs;
    ctx.org_query = org_query;
    let t = session.lang.strings();
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
