//! The audit log over HTTP: an organization's chain (Owners and Admins) and the platform chain
//! (platform admins), as pages newest first, or exported whole — CSV or one JSON array, oldest
//! first — streamed page by page so an export never sits in memory.

use std::fmt::Write as _;

use aihub_core::OrgId;
use aihub_service::audit::ChainReader;
use aihub_service::page::{Page, clamp_limit};
use aihub_store::audit::{AuditFilter, AuditRecord};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::csv::csv_line;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery, CurrentUser};
use crate::routes::views::PageView;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs/{org_id}/audit-logs", get(list))
        .route("/api/v1/orgs/{org_id}/audit-logs/export", get(export))
        .route("/api/v1/admin/audit-logs", get(list_platform))
        .route("/api/v1/admin/audit-logs/export", get(export_platform))
}

const MAX_NAME_CHARS: usize = 64;
const MAX_TARGET_ID_CHARS: usize = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    actor_id: Option<Uuid>,
    action: Option<String>,
    target_type: Option<String>,
    target_id: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    cursor: Option<i64>,
    limit: Option<u32>,
}

#[derive(Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Format {
    #[default]
    Json,
    Csv,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    #[serde(default)]
    format: Format,
    actor_id: Option<Uuid>,
    action: Option<String>,
    target_type: Option<String>,
    target_id: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

impl ListQuery {
    fn filter(&self) -> Result<AuditFilter, ApiError> {
        parse_filter(
            self.actor_id,
            self.action.as_deref(),
            self.target_type.as_deref(),
            self.target_id.as_deref(),
            self.since,
            self.until,
        )
    }
}

impl ExportQuery {
    fn filter(&self) -> Result<AuditFilter, ApiError> {
        parse_filter(
            self.actor_id,
            self.action.as_deref(),
            self.target_type.as_deref(),
            self.target_id.as_deref(),
            self.since,
            self.until,
        )
    }
}

fn invalid_filter(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_filter", message)
}

/// Lower-case letters, digits and `_`, as action nouns and verbs and target types are.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Turns the query's filter parameters into a filter. An empty parameter is no filter. The
/// dashboard's audit page checks its form with it too.
pub(crate) fn parse_filter(
    actor_id: Option<Uuid>,
    action: Option<&str>,
    target_type: Option<&str>,
    target_id: Option<&str>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Result<AuditFilter, ApiError> {
    let given = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(str::to_owned);
    let action = given(action);
    if let Some(a) = &action {
        // `noun.verb`, or `noun.` for every action of that noun.
        let ok = a.len() <= MAX_NAME_CHARS
            && match a.split_once('.') {
                Some((noun, verb)) => is_name(noun) && (verb.is_empty() || is_name(verb)),
                None => false,
            };
        if !ok {
            return Err(invalid_filter(
                "action must be an action such as `key.create`, or a noun and a dot such as \
                 `key.` for all of its actions",
            ));
        }
    }
    let target_type = given(target_type);
    if target_type
        .as_deref()
        .is_some_and(|t| t.len() > MAX_NAME_CHARS || !is_name(t))
    {
        return Err(invalid_filter(
            "target_type must be lower-case letters, digits and `_`, such as `api_key`",
        ));
    }
    let target_id = given(target_id);
    if target_id
        .as_deref()
        .is_some_and(|t| t.chars().count() > MAX_TARGET_ID_CHARS || t.chars().any(char::is_control))
    {
        return Err(invalid_filter(format!(
            "target_id must be at most {MAX_TARGET_ID_CHARS} characters without control characters"
        )));
    }
    if let (Some(s), Some(u)) = (since, until)
        && s >= u
    {
        return Err(invalid_filter("since must be earlier than until"));
    }
    Ok(AuditFilter {
        actor_id,
        action,
        target_type,
        target_id,
        since,
        until,
    })
}

#[derive(Serialize)]
struct ActorView {
    /// `user`, `system` or `anonymous`.
    #[serde(rename = "type")]
    kind: &'static str,
    id: Option<Uuid>,
    /// The user's e-mail (for a failed sign-in: what was typed), or what the system was.
    label: Option<String>,
}

#[derive(Serialize)]
struct TargetView {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
}

/// One audit record as the API shows it.
#[derive(Serialize)]
struct RecordView {
    id: Uuid,
    seq: i64,
    at: DateTime<Utc>,
    org_id: Option<OrgId>,
    actor: ActorView,
    action: String,
    target: TargetView,
    before: Option<Value>,
    after: Option<Value>,
    ip: Option<String>,
    user_agent: Option<String>,
    request_id: Option<Uuid>,
    hash: String,
    prev_hash: String,
}

impl From<AuditRecord> for RecordView {
    fn from(r: AuditRecord) -> Self {
        let rec = r.record;
        Self {
            id: rec.id,
            seq: r.seq,
            at: rec.at,
            org_id: rec.org_id,
            actor: ActorView {
                kind: rec.actor_type.as_str(),
                id: rec.actor_id,
                label: rec.actor_label,
            },
            action: rec.action,
            target: TargetView {
                kind: rec.target_type,
                id: rec.target_id,
            },
            before: rec.before.map(json_value),
            after: rec.after.map(json_value),
            ip: rec.ip,
            user_agent: rec.user_agent,
            request_id: rec.request_id,
            hash: hex(&r.hash),
            prev_hash: hex(&r.prev_hash),
        }
    }
}

/// Stored states are JSON text written by the service; anything else is shown as the string
/// it is rather than hidden.
fn json_value(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn page_view(page: Page<AuditRecord, i64>) -> PageView<RecordView> {
    PageView {
        data: page.data.into_iter().map(RecordView::from).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }
}

async fn list(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(org_id): ApiPath<OrgId>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<PageView<RecordView>>, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let filter = q.filter()?;
    let page = state
        .services
        .audit
        .list(&scope, &filter, q.cursor, clamp_limit(q.limit))
        .await?;
    Ok(Json(page_view(page)))
}

async fn list_platform(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<PageView<RecordView>>, ApiError> {
    if !actor.is_platform_admin {
        return Err(ApiError::not_found());
    }
    let filter = q.filter()?;
    let page = state
        .services
        .audit
        .list_platform(&actor, &filter, q.cursor, clamp_limit(q.limit))
        .await?;
    Ok(Json(page_view(page)))
}

async fn export(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(org_id): ApiPath<OrgId>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let scope = state.services.orgs.scope(&actor, org_id).await?;
    let filter = q.filter()?;
    let reader = state.services.audit.export(&scope, filter)?;
    stream_export(reader, q.format, &org_id.to_string()).await
}

async fn export_platform(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    if !actor.is_platform_admin {
        return Err(ApiError::not_found());
    }
    let filter = q.filter()?;
    let reader = state.services.audit.export_platform(&actor, filter)?;
    stream_export(reader, q.format, "platform").await
}

/// Where an export is: before its first byte, inside, or finished.
struct Export {
    reader: ChainReader,
    format: Format,
    /// The first page, read before the response started.
    first: Option<Vec<AuditRecord>>,
    started: bool,
    done: bool,
    span: tracing::Span,
}

impl Export {
    /// The next piece of the body: one page of records (with the header or opening bracket
    /// before the first), then the closing bracket; `None` after that.
    async fn next_chunk(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if self.done {
            return None;
        }
        let batch = match self.first.take() {
            Some(b) => b,
            None => match self.reader.next_batch().await {
                Ok(b) => b,
                Err(e) => {
                    // The status went out with the first page; all that is left is to cut the
                    // body short, which the client sees as an incomplete download.
                    self.done = true;
                    self.span.in_scope(
                        || tracing::error!(error = %e, "audit export failed part way through"),
                    );
                    return Some(Err(std::io::Error::other("audit export failed")));
                }
            },
        };
        let mut buf = Vec::with_capacity(batch.len() * 512 + 256);
        let opening = !self.started;
        let last = batch.is_empty();
        self.started = true;
        match self.format {
            Format::Csv => {
                if opening {
                    csv_header(&mut buf);
                }
                for r in &batch {
                    csv_row(&mut buf, r);
                }
            }
            Format::Json => {
                if opening {
                    buf.extend_from_slice(b"[");
                }
                for (i, r) in batch.into_iter().enumerate() {
                    let lead: &[u8] = if opening && i == 0 { b"\n" } else { b",\n" };
                    buf.extend_from_slice(lead);
                    if let Err(e) = serde_json::to_writer(&mut buf, &RecordView::from(r)) {
                        self.done = true;
                        self.span.in_scope(
                            || tracing::error!(error = %e, "audit export failed part way through"),
                        );
                        return Some(Err(std::io::Error::other("audit export failed")));
                    }
                }
            }
        }
        if last {
            if self.format == Format::Json {
                buf.extend_from_slice(b"\n]\n");
            }
            self.done = true;
        }
        Some(Ok(Bytes::from(buf)))
    }
}

/// Answers with the whole range `reader` covers, one page at a time as the client reads. The
/// dashboard's export buttons answer with it too.
pub(crate) async fn stream_export(
    mut reader: ChainReader,
    format: Format,
    chain: &str,
) -> Result<Response, ApiError> {
    // Reading the first page before answering turns a failing database into an error status
    // instead of a download cut short.
    let first = reader.next_batch().await?;
    let state = Export {
        reader,
        format,
        first: Some(first),
        started: false,
        done: false,
        span: tracing::Span::current(),
    };
    let body = futures_util::stream::unfold(state, |mut s| async move {
        let chunk = s.next_chunk().await?;
        Some((chunk, s))
    });
    let (content_type, ext) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::Json => ("application/json", "json"),
    };
    let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
    let disposition = format!("attachment; filename=\"audit-log-{chain}-{stamp}.{ext}\"");
    let mut resp = Body::from_stream(body).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// The columns of a CSV export, in order.
const CSV_COLUMNS: [&str; 17] = [
    "id",
    "seq",
    "at",
    "org_id",
    "actor_type",
    "actor_id",
    "actor_label",
    "action",
    "target_type",
    "target_id",
    "before",
    "after",
    "ip",
    "user_agent",
    "request_id",
    "hash",
    "prev_hash",
];

fn csv_header(buf: &mut Vec<u8>) {
    csv_line(buf, &CSV_COLUMNS);
}

fn csv_row(buf: &mut Vec<u8>, r: &AuditRecord) {
    let rec = &r.record;
    let opt = |v: Option<&str>| v.unwrap_or_default().to_owned();
    let uuid = |v: Option<Uuid>| v.map(|u| u.to_string()).unwrap_or_default();
    let cells: [String; 17] = [
        rec.id.to_string(),
        r.seq.to_string(),
        rec.at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        uuid(rec.org_id.map(|o| o.as_uuid())),
        rec.actor_type.as_str().to_owned(),
        uuid(rec.actor_id),
        opt(rec.actor_label.as_deref()),
        rec.action.clone(),
        rec.target_type.clone(),
        opt(rec.target_id.as_deref()),
        opt(rec.before.as_deref()),
        opt(rec.after.as_deref()),
        opt(rec.ip.as_deref()),
        opt(rec.user_agent.as_deref()),
        uuid(rec.request_id),
        hex(&r.hash),
        hex(&r.prev_hash),
    ];
    csv_line(buf, &cells);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked() {
        let f = |action: &str| parse_filter(None, Some(action), None, None, None, None);
        assert!(f("key.create").is_ok());
        assert!(f("key.").is_ok());
        assert!(f("auth.login_failed").is_ok());
        assert_eq!(f("").unwrap().action, None);
        for bad in [
            "key",
            ".create",
            "key.create.x",
            "Key.create",
            "key.%",
            "key.cre ate",
        ] {
            assert!(f(bad).is_err(), "{bad}");
        }
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let since = t("2026-01-02T00:00:00Z");
        let until = t("2026-01-01T00:00:00Z");
        assert!(parse_filter(None, None, None, None, Some(since), Some(until)).is_err());
        assert!(parse_filter(None, None, None, None, Some(until), Some(since)).is_ok());
        assert!(parse_filter(None, None, Some("api key"), None, None, None).is_err());
        assert!(parse_filter(None, None, None, Some("a\nb"), None, None).is_err());
    }

    #[test]
    fn hex_is_lower_case_and_padded() {
        assert_eq!(hex(&[0, 1, 0xab, 0xff]), "0001abff");
    }
}
