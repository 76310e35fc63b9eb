//! The usage page: a range of UTC days split by model, key, user or team, drawn as per-day SVG
//! charts of requests, tokens and cost, a totals table per group, the range's requests (newest
//! first, with an "older" link), and the same split as a CSV download. Totals come from the
//! usage service's daily rollups, never from the raw records.

use std::collections::{BTreeMap, HashMap};

use aihub_core::money::format_decimal_micros;
use aihub_service::ServiceError;
use aihub_service::orgs::OrgScope;
use aihub_store::usage::DailyTotals;
use aihub_store::{UsageGroup, UsageGrouping, UsageRecord};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::chart::{Chart, Spec, stacked};
use super::i18n::Strings;
use super::overview::Period;
use super::pages::path_id;
use super::pages::{Ctx, OrgChoice, Session, render, select_org};
use crate::csv::csv_line;
use crate::state::AppState;

/// Requests per page of the request table.
const REQUESTS_PAGE: u32 = 25;
/// Groups drawn as series of their own; the rest are drawn together as "other".
const TOP_SERIES: usize = 5;

/// How the page splits the range (`?by=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Model,
    Key,
    User,
    Team,
}

impl By {
    const ALL: [By; 4] = [By::Model, By::Key, By::User, By::Team];

    fn parse(s: Option<&str>) -> Option<By> {
        match s.unwrap_or_default() {
            "" | "model" => Some(By::Model),
            "key" => Some(By::Key),
            "user" => Some(By::User),
            "team" => Some(By::Team),
            _ => None,
        }
    }

    const fn as_str(self) -> &'static str {
        match self {
            By::Model => "model",
            By::Key => "key",
            By::User => "user",
            By::Team => "team",
        }
    }

    const fn grouping(self) -> UsageGrouping {
        match self {
            By::Model => UsageGrouping::Model,
            By::Key => UsageGrouping::Key,
            By::User => UsageGrouping::User,
            By::Team => UsageGrouping::Team,
        }
    }

    fn label(self, t: &'static Strings) -> &'static str {
        match self {
            By::Model => t.usage_by_model,
            By::Key => t.usage_by_key,
            By::User => t.usage_by_user,
            By::Team => t.usage_by_team,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct UsageQuery {
    org: Option<String>,
    from: Option<String>,
    to: Option<String>,
    by: Option<String>,
    cursor: Option<String>,
}

/// The form's values as typed (shown again when refused) and as understood.
struct Filter {
    from_text: String,
    to_text: String,
    by: By,
}

/// A date field: empty means the default, anything else must be `YYYY-MM-DD`.
fn parse_date(s: Option<&str>) -> Result<Option<NaiveDate>, ()> {
    match s.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| ()),
    }
}

/// Why a report could not be made: input the page explains, or a service refusal.
enum Refusal {
    Input(&'static str),
    Service(ServiceError),
}

impl From<ServiceError> for Refusal {
    fn from(e: ServiceError) -> Self {
        Refusal::Service(e)
    }
}

/// The range's rows and the names of what they are split by.
struct Loaded {
    from: NaiveDate,
    to: NaiveDate,
    rows: Vec<DailyTotals>,
    names: HashMap<Uuid, String>,
}

/// Reads the range's per-day rows and the names of their groups.
async fn load(
    state: &AppState,
    scope: &OrgScope,
    t: &'static Strings,
    q: &UsageQuery,
    by: By,
) -> Result<Loaded, Refusal> {
    let (Ok(from), Ok(to)) = (parse_date(q.from.as_deref()), parse_date(q.to.as_deref())) else {
        return Err(Refusal::Input(t.usage_err_date));
    };
    let usage = &state.services.usage;
    let (from, to, rows) = match usage.daily(scope, from, to, by.grouping()).await {
        Ok(v) => v,
        Err(ServiceError::Invalid {
            code: "invalid_range",
            ..
        }) => {
            let reversed = matches!((from, to), (Some(a), Some(b)) if a > b)
                || (to.is_none() && from.is_some_and(|f| f > aihub_core::time::now().date_naive()));
            return Err(Refusal::Input(if reversed {
                t.usage_err_reversed
            } else {
                t.usage_err_too_long
            }));
        }
        Err(e) => return Err(e.into()),
    };
    let mut ids: Vec<Uuid> = rows.iter().filter_map(|r| r.totals.group.id()).collect();
    ids.sort_unstable();
    ids.dedup();
    let names = usage
        .group_names(scope, by.grouping(), &ids)
        .await?
        .into_iter()
        .collect();
    Ok(Loaded {
        from,
        to,
        rows,
        names,
    })
}

/// The last characters of an id: enough to tell things apart (the first ones of a UUIDv7 are
/// its time, shared by ids made together).
fn short_id(id: Uuid) -> String {
    let s = id.simple().to_string();
    s.get(s.len().saturating_sub(8)..).unwrap_or(&s).to_owned()
}

/// How a group is shown: a day, a model, or the name of a key, user or team ("no key", or
/// "deleted …" with a short id when it no longer has a name).
#[must_use]
pub fn group_label(
    t: &'static Strings,
    group: &UsageGroup,
    names: &HashMap<Uuid, String>,
) -> String {
    let named = |id: Uuid, deleted: &str| {
        names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("{deleted} {}", short_id(id)))
    };
    match group {
        UsageGroup::Day(d) => d.to_string(),
        UsageGroup::Model(m) if m.is_empty() => t.usage_no_model.to_owned(),
        UsageGroup::Model(m) => m.clone(),
        UsageGroup::Key(None) => t.usage_no_key.to_owned(),
        UsageGroup::Key(Some(k)) => named(k.as_uuid(), t.usage_deleted_key),
        UsageGroup::User(None) => t.usage_no_user.to_owned(),
        UsageGroup::User(Some(u)) => named(u.as_uuid(), t.usage_deleted_user),
        UsageGroup::Team(None) => t.usage_no_team.to_owned(),
        UsageGroup::Team(Some(g)) => named(g.as_uuid(), t.usage_deleted_team),
    }
}

/// One row of the totals table.
pub struct GroupRow {
    pub label: String,
    pub period: Period,
}

/// Totals per group over the range (all currencies of a group in one row), most requests
/// first.
#[must_use]
pub fn group_rows(
    t: &'static Strings,
    rows: &[DailyTotals],
    names: &HashMap<Uuid, String>,
) -> Vec<GroupRow> {
    let mut groups: BTreeMap<&UsageGroup, Period> = BTreeMap::new();
    for r in rows {
        groups.entry(&r.totals.group).or_default().add(&r.totals);
    }
    let mut out: Vec<GroupRow> = groups
        .into_iter()
        .map(|(g, period)| GroupRow {
            label: group_label(t, g, names),
            period,
        })
        .collect();
    out.sort_by_key(|g| std::cmp::Reverse(g.period.requests));
    out
}

/// One chart of the range: `value` of each row (rows it gives `None` for are left out).
fn chart(
    t: &'static Strings,
    l: &Loaded,
    id: String,
    title: String,
    value: &dyn Fn(&DailyTotals) -> Option<i64>,
    format: &dyn Fn(i64) -> String,
) -> Chart {
    let label = |g: &UsageGroup| group_label(t, g, &l.names);
    stacked(Spec {
        id,
        title,
        from: l.from,
        to: l.to,
        points: l
            .rows
            .iter()
            .filter_map(|r| Some((r.day, r.totals.group.clone(), value(r)?)))
            .collect(),
        top: TOP_SERIES,
        other: t.usage_other,
        label: &label,
        format,
    })
}

/// The requests, tokens and cost charts (one cost chart per currency).
fn charts(t: &'static Strings, l: &Loaded) -> Vec<Chart> {
    let count = |v: i64| v.to_string();
    let money = |v: i64| format_decimal_micros(v);
    let mut out = vec![
        chart(
            t,
            l,
            "chart-requests".to_owned(),
            t.requests.to_owned(),
            &|r: &DailyTotals| Some(r.totals.requests),
            &count,
        ),
        chart(
            t,
            l,
            "chart-tokens".to_owned(),
            t.tokens.to_owned(),
            &|r: &DailyTotals| Some(r.totals.prompt_tokens + r.totals.completion_tokens),
            &count,
        ),
    ];
    let mut currencies: Vec<&str> = l.rows.iter().map(|r| r.totals.currency.as_str()).collect();
    currencies.sort_unstable();
    currencies.dedup();
    for currency in currencies {
        out.push(chart(
            t,
            l,
            format!("chart-cost-{currency}"),
            format!("{} ({currency})", t.usage_cost),
            &|r: &DailyTotals| (r.totals.currency == currency).then_some(r.totals.cost_micros),
            &money,
        ));
    }
    out
}

/// One row of the request table.
pub struct RequestRow {
    pub id: String,
    pub time: String,
    pub model: String,
    pub key: String,
    pub status: i32,
    pub error: bool,
    pub latency_ms: i64,
    pub tokens: i64,
    pub cost: String,
}

fn request_row(t: &'static Strings, r: &UsageRecord, keys: &HashMap<Uuid, String>) -> RequestRow {
    RequestRow {
        id: r.request_id.to_string(),
        time: r.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
        model: group_label(t, &UsageGroup::Model(r.model.clone()), keys),
        key: group_label(t, &UsageGroup::Key(r.key_id), keys),
        status: r.status,
        error: r.is_error(),
        latency_ms: r.latency_ms,
        tokens: r.prompt_tokens + r.completion_tokens,
        cost: format!("{} {}", r.currency, format_decimal_micros(r.cost_micros)),
    }
}

/// What the page shows for a range it could read.
struct Report {
    from: NaiveDate,
    to: NaiveDate,
    total: Period,
    charts: Vec<Chart>,
    groups: Vec<GroupRow>,
    requests: Vec<RequestRow>,
    older: Option<String>,
    csv: String,
}

#[derive(Template)]
#[template(path = "usage.html")]
struct UsagePage {
    ctx: Ctx,
    org_id: String,
    from: String,
    to: String,
    by: &'static str,
    by_label: &'static str,
    bys: Vec<(&'static str, &'static str)>,
    error: Option<&'static str>,
    report: Option<Report>,
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(NaiveTime::MIN).and_utc()
}

async fn report(
    state: &AppState,
    scope: &OrgScope,
    t: &'static Strings,
    q: &UsageQuery,
    by: By,
) -> Result<Report, Refusal> {
    let loaded = load(state, scope, t, q, by).await?;
    let cursor = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(path_id::<Uuid>(c)?),
        None => None,
    };
    let usage = &state.services.usage;
    let page = usage
        .requests(
            scope,
            cursor,
            REQUESTS_PAGE,
            Some(midnight(loaded.from)),
            Some(midnight(loaded.to + chrono::Days::new(1))),
        )
        .await?;
    let mut key_ids: Vec<Uuid> = page
        .data
        .iter()
        .filter_map(|r| r.key_id.map(|k| k.as_uuid()))
        .collect();
    key_ids.sort_unstable();
    key_ids.dedup();
    let keys: HashMap<Uuid, String> = usage
        .group_names(scope, UsageGrouping::Key, &key_ids)
        .await?
        .into_iter()
        .collect();
    let mut total = Period::default();
    for r in &loaded.rows {
        total.add(&r.totals);
    }
    let base = format!(
        "org={}&from={}&to={}&by={}",
        scope.org_id(),
        loaded.from,
        loaded.to,
        by.as_str()
    );
    Ok(Report {
        from: loaded.from,
        to: loaded.to,
        total,
        charts: charts(t, &loaded),
        groups: group_rows(t, &loaded.rows, &loaded.names),
        requests: page.data.iter().map(|r| request_row(t, r, &keys)).collect(),
        older: page
            .next_cursor
            .map(|c| format!("/usage?{base}&cursor={c}")),
        csv: format!("/usage.csv?{base}"),
    })
}

fn page_of(
    session: &Session,
    scope: &OrgScope,
    orgs: Vec<OrgChoice>,
    filter: Filter,
    error: Option<&'static str>,
    report: Option<Report>,
) -> UsagePage {
    let t = session.lang.strings();
    let org_query = format!("?org={}", scope.org_id());
    let mut ctx = session.ctx(&format!("/usage{org_query}"), "usage");
    ctx.orgs = orgs;
    ctx.org_query = org_query;
    UsagePage {
        ctx,
        org_id: scope.org_id().to_string(),
        from: filter.from_text,
        to: filter.to_text,
        by: filter.by.as_str(),
        by_label: filter.by.label(t),
        bys: By::ALL.iter().map(|b| (b.as_str(), b.label(t))).collect(),
        error,
        report,
    }
}

/// `GET /usage`: the report of a range (default: the last 30 days, by model).
pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<UsageQuery>,
) -> Response {
    let (scope, orgs) = match select_org(&state, &session, q.org.as_deref()).await {
        Ok(v) => v,
        Err(e) => return session.error(e),
    };
    let t = session.lang.strings();
    let mut filter = Filter {
        from_text: q.from.clone().unwrap_or_default(),
        to_text: q.to.clone().unwrap_or_default(),
        by: By::Model,
    };
    let Some(by) = By::parse(q.by.as_deref()) else {
        let page = page_of(&session, &scope, orgs, filter, Some(t.usage_err_by), None);
        return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
    };
    filter.by = by;
    match report(&state, &scope, t, &q, by).await {
        Ok(report) => {
            // Show the range actually read (the defaults filled in).
            filter.from_text = report.from.to_string();
            filter.to_text = report.to.to_string();
            let page = page_of(&session, &scope, orgs, filter, None, Some(report));
            render(StatusCode::OK, &page)
        }
        Err(Refusal::Input(message)) => {
            let page = page_of(&session, &scope, orgs, filter, Some(message), None);
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(Refusal::Service(e)) => session.error(e),
    }
}

/// The CSV columns, one line per day × group × currency.
const CSV_COLUMNS: [&str; 12] = [
    "day",
    "group_by",
    "group_id",
    "group",
    "currency",
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_micros",
    "cost",
];

/// The range's rows as CSV. Names (of models, keys, users, teams) are typed by people, so every
/// cell goes through [`csv_line`], which defuses spreadsheet formulas.
#[must_use]
pub fn csv_body(
    t: &'static Strings,
    by: By,
    rows: &[DailyTotals],
    names: &HashMap<Uuid, String>,
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64 * (rows.len() + 1));
    csv_line(&mut buf, &CSV_COLUMNS);
    for r in rows {
        let x = &r.totals;
        csv_line(
            &mut buf,
            &[
                r.day.to_string(),
                by.as_str().to_owned(),
                x.group.id().map(|id| id.to_string()).unwrap_or_default(),
                group_label(t, &x.group, names),
                x.currency.clone(),
                x.requests.to_string(),
                x.errors.to_string(),
                x.prompt_tokens.to_string(),
                x.completion_tokens.to_string(),
                x.cached_tokens.to_string(),
                x.cost_micros.to_string(),
                format_decimal_micros(x.cost_micros),
            ],
        );
    }
    buf
}

/// `GET /usage.csv`: the page's range and split as a CSV attachment. A refused range answers
/// the page with its message, as `GET /usage` would.
pub async fn csv(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<UsageQuery>,
) -> Response {
    let (scope, orgs) = match select_org(&state, &session, q.org.as_deref()).await {
        Ok(v) => v,
        Err(e) => return session.error(e),
    };
    let t = session.lang.strings();
    let filter = |by| Filter {
        from_text: q.from.clone().unwrap_or_default(),
        to_text: q.to.clone().unwrap_or_default(),
        by,
    };
    let Some(by) = By::parse(q.by.as_deref()) else {
        let page = page_of(
            &session,
            &scope,
            orgs,
            filter(By::Model),
            Some(t.usage_err_by),
            None,
        );
        return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
    };
    match load(&state, &scope, t, &q, by).await {
        Ok(l) => {
            let body = csv_body(t, by, &l.rows, &l.names);
            let name = format!(
                "attachment; filename=\"usage-{}-{}-{}.csv\"",
                l.from,
                l.to,
                by.as_str()
            );
            let mut resp = (
                [(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/csv; charset=utf-8"),
                )],
                body,
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&name) {
                resp.headers_mut().insert(CONTENT_DISPOSITION, v);
            }
            resp
        }
        Err(Refusal::Input(message)) => {
            let page = page_of(&session, &scope, orgs, filter(by), Some(message), None);
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(Refusal::Service(e)) => session.error(e),
    }
}

#[cfg(test)]
mod tests {
    use aihub_core::KeyId;
    use aihub_store::UsageTotals;

    use super::*;
    use crate::web::i18n::Lang;

    fn row(day: u32, group: UsageGroup, currency: &str, requests: i64) -> DailyTotals {
        DailyTotals {
            day: NaiveDate::from_ymd_opt(2026, 11, day).unwrap(),
            totals: UsageTotals {
                group,
                currency: currency.to_owned(),
                requests,
                errors: 0,
                prompt_tokens: 3,
                completion_tokens: 4,
                cached_tokens: 0,
                cost_micros: 1_500_000,
            },
        }
    }

    #[test]
    fn groups_are_named_and_missing_ones_explained() {
        let t = Lang::En.strings();
        let known = KeyId::new();
        let gone = KeyId::new();
        let names = HashMap::from([(known.as_uuid(), "ci".to_owned())]);
        assert_eq!(group_label(t, &UsageGroup::Key(Some(known)), &names), "ci");
        assert_eq!(
            group_label(t, &UsageGroup::Key(None), &names),
            t.usage_no_key
        );
        let deleted = group_label(t, &UsageGroup::Key(Some(gone)), &names);
        assert!(deleted.starts_with(t.usage_deleted_key), "{deleted}");
        assert!(
            gone.to_string()
                .ends_with(deleted.rsplit(' ').next().unwrap())
        );
        assert_eq!(
            group_label(t, &UsageGroup::Model(String::new()), &names),
            t.usage_no_model
        );
        assert_eq!(
            group_label(t, &UsageGroup::Team(None), &names),
            t.usage_no_team
        );
    }

    #[test]
    fn totals_per_group_add_days_and_keep_currencies_apart() {
        let t = Lang::En.strings();
        let m = |s: &str| UsageGroup::Model(s.to_owned());
        let rows = [
            row(1, m("a"), "USD", 1),
            row(2, m("a"), "CNY", 1),
            row(2, m("b"), "USD", 5),
        ];
        let groups = group_rows(t, &rows, &HashMap::new());
        assert_eq!(groups[0].label, "b");
        assert_eq!(groups[1].label, "a");
        assert_eq!(groups[1].period.requests, 2);
        assert_eq!(groups[1].period.spend(), ["USD 1.5", "CNY 1.5"]);
    }

    #[test]
    fn csv_has_a_line_per_day_group_and_currency_with_formulas_defused() {
        let t = Lang::En.strings();
        let rows = [
            row(
                1,
                UsageGroup::Model("=cmd|' /C calc'!A0".to_owned()),
                "USD",
                2,
            ),
            row(1, UsageGroup::Key(None), "CNY", 1),
        ];
        let body = String::from_utf8(csv_body(t, By::Model, &rows, &HashMap::new())).unwrap();
        let lines: Vec<&str> = body.split("\r\n").collect();
        assert_eq!(lines.len(), 4, "{body}");
        assert!(lines[0].starts_with("day,group_by,group_id,group,currency,requests"));
        assert_eq!(
            lines[1],
            "2026-11-01,model,,'=cmd|' /C calc'!A0,USD,2,0,3,4,0,1500000,1.5"
        );
        assert_eq!(
            lines[2],
            format!(
                "2026-11-01,model,,{},CNY,1,0,3,4,0,1500000,1.5",
                t.usage_no_key
            )
        );
        assert_eq!(lines[3], "");
    }

    #[test]
    fn the_split_and_dates_are_parsed() {
        assert_eq!(By::parse(None), Some(By::Model));
        assert_eq!(By::parse(Some("team")), Some(By::Team));
        assert_eq!(By::parse(Some("week")), None);
        assert_eq!(parse_date(Some(" ")), Ok(None));
        assert!(parse_date(Some("2026-02-30")).is_err());
        assert_eq!(
            parse_date(Some("2026-02-28")),
            Ok(NaiveDate::from_ymd_opt(2026, 2, 28))
        );
    }
}
