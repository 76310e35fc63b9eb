//! `/admin/plans`: the plan catalogue, a form for a new plan, and an edit page per plan. The
//! monthly spend is typed as a decimal amount and parsed to integer micro-units by the
//! governance service (`aihub_core::money`), never through floating point.

use super::super::pages::Form;
use aihub_core::governance::Plan;
use aihub_core::money::format_decimal_micros;
use aihub_service::ServiceError;
use aihub_service::governance::{CreatePlan, UpdatePlan};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use uuid::Uuid;

use super::super::pages::path_id;
use super::{
    AdminSession, After, DoneQuery, FormError, admin_ctx, after_form, given, number, show_again,
};
use crate::state::AppState;
use crate::web::pages::{Ctx, Session, render};

/// The plan form, as typed (and shown again after a refusal).
#[derive(Debug, Default, Deserialize)]
pub struct PlanForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    rpm: String,
    #[serde(default)]
    tpm: String,
    #[serde(default)]
    concurrency: String,
    #[serde(default)]
    monthly_tokens: String,
    #[serde(default)]
    monthly_spend: String,
    #[serde(default)]
    currency: String,
}

fn text<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

impl PlanForm {
    fn of(p: &Plan) -> Self {
        Self {
            name: p.name.clone(),
            rpm: text(p.rpm),
            tpm: text(p.tpm),
            concurrency: text(p.concurrency),
            monthly_tokens: text(p.monthly_tokens),
            monthly_spend: text(p.monthly_spend_micros.map(format_decimal_micros)),
            currency: p.currency.to_string(),
        }
    }

    fn create(&self) -> Result<CreatePlan, ServiceError> {
        Ok(CreatePlan {
            name: self.name.trim().to_owned(),
            rpm: number("rpm", &self.rpm)?,
            tpm: number("tpm", &self.tpm)?,
            concurrency: number("concurrency", &self.concurrency)?,
            monthly_tokens: number("monthly_tokens", &self.monthly_tokens)?,
            monthly_spend: given(&self.monthly_spend),
            monthly_spend_micros: None,
            currency: given(&self.currency),
        })
    }

    /// Every field is set as the form shows it: an empty limit removes that limit.
    fn update(&self) -> Result<UpdatePlan, ServiceError> {
        Ok(UpdatePlan {
            name: Some(self.name.trim().to_owned()),
            rpm: Some(number("rpm", &self.rpm)?),
            tpm: Some(number("tpm", &self.tpm)?),
            concurrency: Some(number("concurrency", &self.concurrency)?),
            monthly_tokens: Some(number("monthly_tokens", &self.monthly_tokens)?),
            monthly_spend: Some(given(&self.monthly_spend)),
            monthly_spend_micros: None,
            currency: given(&self.currency),
        })
    }
}

pub struct PlanRow {
    pub id: String,
    pub name: String,
    pub rpm: String,
    pub tpm: String,
    pub concurrency: String,
    pub monthly_tokens: String,
    pub monthly_spend: String,
}

fn row(p: &Plan, unlimited: &'static str) -> PlanRow {
    let or = |v: Option<u64>| v.map_or_else(|| unlimited.to_owned(), |v| v.to_string());
    PlanRow {
        id: p.id.to_string(),
        name: p.name.clone(),
        rpm: or(p.rpm),
        tpm: or(p.tpm),
        concurrency: or(p.concurrency),
        monthly_tokens: or(p.monthly_tokens),
        monthly_spend: p.monthly_spend_micros.map_or_else(
            || unlimited.to_owned(),
            |m| format!("{} {}", format_decimal_micros(m), p.currency),
        ),
    }
}

#[derive(Template)]
#[template(path = "admin_plans.html")]
struct PlansPage {
    ctx: Ctx,
    tab: &'static str,
    rows: Vec<PlanRow>,
    form: PlanForm,
    error: Option<FormError>,
    notice: Option<&'static str>,
}

async fn plans_page(
    state: &AppState,
    session: &Session,
    form: PlanForm,
    error: Option<FormError>,
    notice: Option<&'static str>,
) -> Result<PlansPage, ServiceError> {
    let t = session.lang.strings();
    let plans = state.services.governance.list_plans().await?;
    Ok(PlansPage {
        ctx: admin_ctx(session, "/admin/plans"),
        tab: "plans",
        rows: plans.iter().map(|p| row(p, t.admin_unlimited)).collect(),
        form,
        error,
        notice,
    })
}

pub async fn list(
    State(state): State<AppState>,
    AdminSession(session): AdminSession,
    Query(q): Query<DoneQuery>,
) -> Response {
    let form = PlanForm {
        currency: "USD".into(),
        ..PlanForm::default()
    };
    let notice = q.notice(session.lang.strings());
    session.page(plans_page(&state, &session, form, None, notice).await)
}

pub async fn create(
    State(state): State<AppState>,
    AdminSession(session): AdminSession,
    Form(form): Form<PlanForm>,
) -> Response {
    let result = match form.create() {
        Ok(input) => {
            state
                .services
                .governance
                .create_plan(&session.actor, input)
                .await
        }
        Err(e) => Err(e),
    };
    let refusal = match after_form(&session, result, "/admin/plans?done=1") {
        After::Again(e) => e,
        After::Done(answer) => return answer,
    };
    show_again(
        &session,
        plans_page(&state, &session, form, Some(refusal), None).await,
    )
}

#[derive(Template)]
#[template(path = "admin_plan_edit.html")]
struct EditPage {
    ctx: Ctx,
    id: String,
    form: PlanForm,
    error: Option<FormError>,
}

pub async fn edit(
    State(state): State<AppState>,
    AdminSession(session): AdminSession,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let id = path_id::<Uuid>(&id)?;
        let plans = state.services.governance.list_plans().await?;
        plans
            .into_iter()
            .find(|p| p.id == id)
            .ok_or(ServiceError::NotFound)
    }
    .await;
    match result {
        Ok(plan) => {
            let page = EditPage {
                ctx: admin_ctx(&session, &format!("/admin/plans/{}", plan.id)),
                id: plan.id.to_string(),
                form: PlanForm::of(&plan),
                error: None,
            };
            render(StatusCode::OK, &page)
        }
        Err(e) => session.error(e),
    }
}

pub async fn update(
    State(state): State<AppState>,
    AdminSession(session): AdminSession,
    Path(id): Path<String>,
    Form(form): Form<PlanForm>,
) -> Response {
    let result = async {
        let id = path_id::<Uuid>(&id)?;
        let input = form.update()?;
        state
            .services
            .governance
            .update_plan(&session.actor, id, input)
            .await
    }
    .await;
    let refusal = match after_form(&session, result, "/admin/plans?done=1") {
        After::Again(e) => e,
        After::Done(answer) => return answer,
    };
    show_again(
        &session,
        Ok::<_, ServiceError>(EditPage {
            ctx: admin_ctx(&session, &format!("/admin/plans/{id}")),
            id,
            form,
            error: Some(refusal),
        }),
    )
}
