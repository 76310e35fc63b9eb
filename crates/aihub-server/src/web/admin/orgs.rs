//! `/admin/orgs`: every organization, newest first, with the plan it is on, and the form that
//! puts it on another plan (the governance service records the change).

use std::str::FromStr;

use super::super::pages::Form;
use aihub_core::OrgId;
use aihub_service::ServiceError;
use aihub_service::governance::PlanRef;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use uuid::Uuid;

use super::super::pages::path_id;
use super::{AdminSession, DoneQuery, admin_ctx};
use crate::state::AppState;
use crate::web::pages::{Ctx, redirect, render};

/// Organizations per page.
const PAGE: u32 = 50;

pub struct OrgRow {
    pub id: String,
    pub name: String,
    pub personal: bool,
    pub created: String,
    /// The plan's id and name; `None`: on no plan.
    pub plan_id: Option<String>,
    pub plan: Option<String>,
}

pub struct PlanChoice {
    pub id: String,
    pub name: String,
}

#[derive(Template)]
#[template(path = "admin_orgs.html")]
struct OrgsPage {
    ctx: Ctx,
    tab: &'static str,
    rows: Vec<OrgRow>,
    plans: Vec<PlanChoice>,
    next_cursor: Option<String>,
    notice: Option<&'static str>,
}

#[derive(Debug, Default, Deserialize)]
pub struct OrgsQuery {
    cursor: Option<String>,
    #[serde(flatten)]
    done: DoneQuery,
}

pub async fn list(
    State(state): State<AppState>,
    AdminSession(session): AdminSession,
    Query(q): Query<OrgsQuery>,
) -> Response {
    let result = async {
        let cursor = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => Some(path_id::<OrgId>(c)?),
            None => None,
        };
        let page = state
            .services
            .admin
            .list_orgs(&session.actor, cursor, PAGE)
            .await?;
        let mut rows = Vec::with_capacity(page.data.len());
        for org in &page.data {
            let plan = state.services.governance.org_policy(org.id).await?.plan;
            rows.push(OrgRow {
                id: org.id.to_string(),
                name: org.name.clone(),
                personal: org.is_personal,
                created: org.created_at.format("%Y-%m-%d").to_string(),
                plan_id: plan.as_ref().map(|p| p.id.to_string()),
                plan: plan.map(|p| p.name),
            });
        }
        let plans = state.services.governance.list_plans().await?;
        Ok::<_, ServiceError>((rows, plans, page.next_cursor.map(|c| c.to_string())))
    }
    .await;
    let (rows, plans, next_cursor) = match result {
        Ok(v) => v,
        Err(e) => return session.error(e),
    };
    let page = OrgsPage {
        ctx: admin_ctx(&session, "/admin/orgs"),
        tab: "orgs",
        rows,
        plans: plans
            .into_iter()
            .map(|p| PlanChoice {
                id: p.id.to_string(),
                name: p.name,
            })
            .collect(),
        next_cursor,
        notice: q.done.notice(session.lang.strings()),
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
pub struct AssignForm {
    plan_id: String,
}

/// Puts the organization on the chosen plan.
pub async fn assign_plan(
    State(state): State<AppState>,
    AdminSession(session): AdminSession,
    Path(id): Path<String>,
    Form(form): Form<AssignForm>,
) -> Response {
    let result = async {
        let org = path_id::<OrgId>(&id)?;
        let plan = Uuid::from_str(form.plan_id.trim())
            .map_err(|_| ServiceError::invalid("unknown_plan", "there is no such plan"))?;
        state
            .services
            .governance
            .set_org_plan(&session.actor, org, PlanRef::Id(plan))
            .await
    }
    .await;
    match result {
        Ok(_) => redirect("/admin/orgs?done=1"),
        Err(e) => session.error(e),
    }
}
