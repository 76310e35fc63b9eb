//! Usage of an organization: totals by day, model, key, user or team (from the daily rollups) and the
//! individual request records.

use aihub_core::OrgId;
use aihub_core::money::format_decimal_micros;
use aihub_service::page::clamp_limit;
use aihub_store::{UsageGroup, UsageGrouping, UsageRecord};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery, CurrentUser};
use crate::routes::views::PageView;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs/{org_id}/usage", get(summary))
        .route("/api/v1/orgs/{org_id}/usage/requests", get(requests))
}

#[derive(Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "snake_case")]
enum GroupBy {
    #[default]
    Day,
    Model,
    Key,
    User,
    Team,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SummaryQuery {
    /// First day (UTC), inclusive. Default: 29 days before `to`.
    from: Option<NaiveDate>,
    /// Last day (UTC), inclusive. Default: today.
    to: Option<NaiveDate>,
    #[serde(default)]
    group_by: GroupBy,
}

#[derive(Serialize)]
struct Bucket {
    /// `YYYY-MM-DD` (by day), the model name, or the key, user or team id (`null`: none).
    group: Option<String>,
    currency: String,
    requests: i64,
    errors: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    cached_tokens: i64,
    cost_micros: i64,
    /// `cost_micros` as a decimal amount of `currency`.
    cost: String,
}

#[derive(Serialize)]
struct Summary {
    from: NaiveDate,
    to: NaiveDate,
    group_by: &'static str,
    data: Vec<Bucket>,
}

async fn summary(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(org_id): ApiPath<OrgId>,
    ApiQuery(q): ApiQuery<SummaryQuery>,
) -> Result<Json<Summary>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let (grouping, name) = match q.group_by {
        GroupBy::Day => (UsageGrouping::Day, "day"),
        GroupBy::Model => (UsageGrouping::Model, "model"),
        GroupBy::Key => (UsageGrouping::Key, "key"),
        GroupBy::User => (UsageGrouping::User, "user"),
        GroupBy::Team => (UsageGrouping::Team, "team"),
    };
    let (from, to, totals) = state
        .services
        .usage
        .summary(&scope, q.from, q.to, grouping)
        .await?;
    let data = totals
        .into_iter()
        .map(|t| Bucket {
            group: match t.group {
                UsageGroup::Day(d) => Some(d.to_string()),
                UsageGroup::Model(m) => Some(m),
                UsageGroup::Key(_) | UsageGroup::User(_) | UsageGroup::Team(_) => {
                    t.group.id().map(|id| id.to_string())
                }
            },
            currency: t.currency,
            requests: t.requests,
            errors: t.errors,
            prompt_tokens: t.prompt_tokens,
            completion_tokens: t.completion_tokens,
            cached_tokens: t.cached_tokens,
            cost: format_decimal_micros(t.cost_micros),
            cost_micros: t.cost_micros,
        })
        .collect();
    Ok(Json(Summary {
        from,
        to,
        group_by: name,
        data,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestsQuery {
    limit: Option<u32>,
    cursor: Option<Uuid>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
struct RequestView {
    request_id: Uuid,
    created_at: DateTime<Utc>,
    endpoint: String,
    model: String,
    provider: Option<String>,
    upstream_model: Option<String>,
    key_id: Option<String>,
    user_id: Option<String>,
    status: i32,
    error_code: Option<String>,
    prompt_tokens: i64,
    completion_tokens: i64,
    cached_tokens: i64,
    cost_micros: i64,
    cost: String,
    currency: String,
    latency_ms: i64,
    ttft_ms: Option<i64>,
    streamed: bool,
    estimated: bool,
}

impl From<&UsageRecord> for RequestView {
    fn from(r: &UsageRecord) -> Self {
        Self {
            request_id: r.request_id,
            created_at: r.created_at,
            endpoint: r.endpoint.clone(),
            model: r.model.clone(),
            provider: r.provider.clone(),
            upstream_model: r.upstream_model.clone(),
            key_id: r.key_id.map(|k| k.to_string()),
            user_id: r.user_id.map(|u| u.to_string()),
            status: r.status,
            error_code: r.error_code.clone(),
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            cached_tokens: r.cached_tokens,
            cost_micros: r.cost_micros,
            cost: format_decimal_micros(r.cost_micros),
            currency: r.currency.to_string(),
            latency_ms: r.latency_ms,
            ttft_ms: r.ttft_ms,
            streamed: r.streamed,
            estimated: r.estimated,
        }
    }
}

async fn requests(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(org_id): ApiPath<OrgId>,
    ApiQuery(q): ApiQuery<RequestsQuery>,
) -> Result<Json<PageView<RequestView>>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let page = state
        .services
        .usage
        .requests(&scope, q.cursor, clamp_limit(q.limit), q.from, q.to)
        .await?;
    Ok(Json(PageView {
        data: page.data.iter().map(RequestView::from).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}
