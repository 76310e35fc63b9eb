//! The audit log page: an organization's records (Owners and Admins; platform admins may also
//! read the platform chain), newest first, with filters, "older" pagination, the redacted
//! before/after states of each record, and CSV / JSON downloads streamed by the same code as
//! the JSON API's export.

use std::str::FromStr;

use aihub_service::ServiceError;
use aihub_service::audit::ChainReader;
use aihub_store::audit::{AuditFilter, AuditRecord};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::i18n::Strings;
use super::pages::{Ctx, OrgChoice, Session, error_page_in, render, select_org, urlencode};
use crate::error::ApiError;
use crate::routes::audit::{Format, parse_filter, stream_export};
use crate::state::AppState;

/// Records per page.
const PAGE: u32 = 50;

/// The page's query: which chain, the filters as typed in the form, and the cursor.
#[derive(Default, Deserialize)]
pub struct AuditQuery {
    org: Option<String>,
    /// `platform` for the platform chain (platform admins only).
    chain: Option<String>,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    target_type: String,
    #[serde(default)]
    target_id: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    cursor: Option<i64>,
    #[serde(default)]
    format: Format,
}

impl AuditQuery {
    fn platform(&self) -> bool {
        self.chain.as_deref() == Some("platform")
    }

    /// The filter the form describes; `Err` is the English reason it is refused.
    fn filter(&self) -> Result<AuditFilter, String> {
        let actor = match self.actor.trim() {
            "" => None,
            s => Some(Uuid::from_str(s).map_err(|_| "actor must be a user id".to_owned())?),
        };
        let since = parse_time(&self.from).map_err(|()| "from is not a date and time")?;
        let until = parse_time(&self.to).map_err(|()| "to is not a date and time")?;
        parse_filter(
            actor,
            Some(self.action.trim()),
            Some(self.target_type.trim()),
            Some(self.target_id.trim()),
            since,
            until,
        )
        .map_err(|e| e.message)
    }

    /// The filters as a query string, for the "older" and export links.
    fn filter_query(&self) -> String {
        let mut q = String::new();
        let fields = [
            ("actor", self.actor.trim()),
            ("action", self.action.trim()),
            ("target_type", self.target_type.trim()),
            ("target_id", self.target_id.trim()),
            ("from", self.from.trim()),
            ("to", self.to.trim()),
        ];
        for (name, value) in fields.into_iter().filter(|(_, v)| !v.is_empty()) {
            q.push('&');
            q.push_str(name);
            q.push('=');
            q.push_str(&urlencode(value));
        }
        q
    }
}

/// A time from a form: `YYYY-MM-DDTHH:MM[:SS]` (a `datetime-local` input) or a date, UTC.
pub(crate) fn parse_time(s: &str) -> Result<Option<DateTime<Utc>>, ()> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .map(|d| d.and_time(chrono::NaiveTime::MIN))
        })
        .map(|t| Some(t.and_utc()))
        .ok_or(())
}

/// A stored before/after state, indented for reading (as stored if it is not JSON).
fn pretty(state: Option<&str>) -> Option<String> {
    state.map(|text| {
        serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| text.to_owned())
    })
}

/// One record as a row of the table, with its detail.
pub struct AuditRow {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub target: String,
    pub ip: String,
    pub request_id: String,
    pub user_agent: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

fn row(t: &'static Strings, r: &AuditRecord) -> AuditRow {
    let rec = &r.record;
    let actor = rec.actor_label.clone().unwrap_or_else(|| {
        rec.actor_id
            .map_or_else(|| t.audit_system.to_owned(), |id| id.to_string())
    });
    let target = match &rec.target_id {
        Some(id) => format!("{}:{id}", rec.target_type),
        None => rec.target_type.clone(),
    };
    AuditRow {
        seq: r.seq,
        at: rec.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        actor,
        actor_id: rec.actor_id.map(|id| id.to_string()),
        action: rec.action.clone(),
        target,
        ip: rec.ip.clone().unwrap_or_default(),
        request_id: rec.request_id.map(|id| id.to_string()).unwrap_or_default(),
        user_agent: rec.user_agent.clone().unwrap_or_default(),
        before: pretty(rec.before.as_deref()),
        after: pretty(rec.after.as_deref()),
    }
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    ctx: Ctx,
    org_id: String,
    platform: bool,
    q: AuditQuery,
    /// `org=…` (and `chain=platform`) plus the filters, for links.
    link_query: String,
    rows: Vec<AuditRow>,
    next_cursor: Option<i64>,
    error: Option<&'static str>,
    detail: Option<String>,
}

/// The selected organization and the switcher's entries. The platform chain is for platform
/// admins only; to anyone else it does not exist.
async fn chain_of(
    state: &AppState,
    session: &Session,
    q: &AuditQuery,
) -> Result<(aihub_service::orgs::OrgScope, Vec<OrgChoice>), ServiceError> {
    if q.platform() && !session.actor.is_platform_admin {
        return Err(ServiceError::NotFound);
    }
    select_org(state, session, q.org.as_deref()).await
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<AuditQuery>,
) -> Response {
    let (scope, orgs) = match chain_of(&state, &session, &q).await {
        Ok(v) => v,
        Err(e) => return session.error(e),
    };
    let t = session.lang.strings();
    let org_id = scope.org_id().to_string();
    let platform = q.platform();
    let chain = if platform { "&chain=platform" } else { "" };
    let link_query = format!("org={org_id}{chain}{}", q.filter_query());
    let mut ctx = session.ctx(&format!("/audit?{link_query}"), "audit");
    ctx.orgs = orgs;
    ctx.org_query = format!("?org={org_id}");
    let (status, rows, next_cursor, error, detail) = match q.filter() {
        Err(reason) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Vec::new(),
            None,
            Some(t.audit_invalid_filter),
            Some(reason),
        ),
        Ok(filter) => {
            let audit = &state.services.audit;
            let result = if platform {
                audit
                    .list_platform(&session.actor, &filter, q.cursor, PAGE)
                    .await
            } else {
                audit.list(&scope, &filter, q.cursor, PAGE).await
            };
            match result {
                Ok(records) => (
                    StatusCode::OK,
                    records.data.iter().map(|r| row(t, r)).collect(),
                    records.next_cursor,
                    None,
                    None,
                ),
                Err(e) => return session.error(e),
            }
        }
    };
    let page = AuditPage {
        ctx,
        org_id,
        platform,
        q,
        link_query,
        rows,
        next_cursor,
        error,
        detail,
    };
    render(status, &page)
}

/// The filtered records as a CSV or JSON download, oldest first, streamed page by page.
pub async fn export(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<AuditQuery>,
) -> Response {
    let result = async {
        let (scope, _) = chain_of(&state, &session, &q).await?;
        let filter = q
            .filter()
            .map_err(|reason| ServiceError::invalid("invalid_filter", reason))?;
        let audit = &state.services.audit;
        let reader: ChainReader = if q.platform() {
            audit.export_platform(&session.actor, filter)?
        } else {
            audit.export(&scope, filter)?
        };
        let chain = if q.platform() {
            "platform".to_owned()
        } else {
            scope.org_id().to_string()
        };
        Ok::<_, ServiceError>((reader, chain))
    }
    .await;
    let (reader, chain) = match result {
        Ok(v) => v,
        Err(e) => return session.error(e),
    };
    match stream_export(reader, q.format, &chain).await {
        Ok(resp) => resp,
        Err(ApiError { status, code, .. }) => {
            error_page_in(session.ctx("/audit", "audit"), status, code, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_times_are_utc() {
        assert_eq!(parse_time(""), Ok(None));
        let t = |s: &str| parse_time(s).unwrap().unwrap().to_rfc3339();
        assert_eq!(t("2026-03-04T05:06"), "2026-03-04T05:06:00+00:00");
        assert_eq!(t("2026-03-04T05:06:07"), "2026-03-04T05:06:07+00:00");
        assert_eq!(t("2026-03-04"), "2026-03-04T00:00:00+00:00");
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn filters_are_kept_in_links() {
        let q = AuditQuery {
            action: "key.".into(),
            target_id: "a b&c".into(),
            ..AuditQuery::default()
        };
        assert_eq!(q.filter_query(), "&action=key.&target_id=a%20b%26c");
        assert_eq!(q.filter().unwrap().action.as_deref(), Some("key."));
        let bad = AuditQuery {
            actor: "someone".into(),
            ..AuditQuery::default()
        };
        assert!(bad.filter().is_err());
    }

    #[test]
    fn states_are_indented() {
        assert_eq!(pretty(None), None);
        assert_eq!(pretty(Some("{\"a\":1}")).unwrap(), "{\n  \"a\": 1\n}");
        assert_eq!(pretty(Some("not json")).unwrap(), "not json");
    }
}
