//! The organization pages: settings (rename, create another, leave, transfer ownership, delete),
//! members and roles, teams and their members, and invitations (send, resend, revoke).
//!
//! Every form posts back to a route here and answers with a redirect to the page it came from
//! (`?done=` names what happened, `?error=` the API's error code for invalid input, both turned
//! into translated text from a fixed list). Refusals by the services (403, 404) are error pages.
//! Which controls a page shows follows the viewer's role; the services decide regardless.

use std::str::FromStr;

use super::pages::Form;
use aihub_core::time::now;
use aihub_core::{Role, TeamId, UserId};
use aihub_service::ServiceError;
use aihub_service::invitations::{CreateInvitation, InvitationState, Sent};
use aihub_service::orgs::{OrgScope, TenancyError, UpdateMember};
use aihub_service::policy::Action;
use aihub_store::{Invitation, Member, Team, TeamMember};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::i18n::Strings;
use super::pages::{Ctx, OrgChoice, Session, message_for, model_list, redirect, select_org};
use super::pages::{OrgForm, path_id};
use crate::error::ApiError;
use crate::state::AppState;

/// Rows per page of the members, teams and invitations lists.
const PAGE: u32 = 100;

/// `?org=…&cursor=…&done=…&error=…` of every organization page.
#[derive(Debug, Default, Deserialize)]
pub struct OrgPageQuery {
    org: Option<String>,
    cursor: Option<String>,
    done: Option<String>,
    error: Option<String>,
}

/// What a form did, as the notice the page shows after the redirect. Only these names are
/// shown; anything else in `?done=` is ignored.
fn notice(t: &'static Strings, done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "renamed" => t.org_done_renamed,
        "created" => t.org_done_created,
        "transferred" => t.org_done_transferred,
        "member" => t.org_done_member,
        "removed" => t.org_done_removed,
        "team" => t.org_done_team,
        "team_deleted" => t.org_done_team_deleted,
        "invited" => t.org_done_invited,
        "invited_unsent" => t.org_done_invited_unsent,
        "revoked" => t.org_done_revoked,
        _ => return None,
    })
}

/// The translated message for an error code carried back by a redirect.
fn form_error(t: &'static Strings, error: Option<&str>) -> Option<&'static str> {
    error
        .filter(|e| !e.is_empty())
        .map(|code| message_for(t, StatusCode::UNPROCESSABLE_ENTITY, code))
}

fn date(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn role_name(t: &'static Strings, role: Role) -> &'static str {
    match role {
        Role::Owner => t.org_role_owner,
        Role::Admin => t.org_role_admin,
        Role::Member => t.org_role_member,
        Role::Viewer => t.org_role_viewer,
    }
}

/// One choice of a role `<select>`.
pub struct RoleOption {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

/// The roles the viewer may give (only an Owner, or a platform admin, makes Owners).
fn role_options(t: &'static Strings, scope: &OrgScope, current: Role) -> Vec<RoleOption> {
    Role::ALL
        .into_iter()
        .filter(|r| *r != Role::Owner || scope.acts_as_owner())
        .map(|r| RoleOption {
            value: r.as_str(),
            label: role_name(t, r),
            selected: r == current,
        })
        .collect()
}

/// The layout context of an organization page, with its sub-navigation entry.
fn org_ctx(session: &Session, scope: &OrgScope, orgs: Vec<OrgChoice>, path: &str) -> Ctx {
    let org_query = format!("?org={}", scope.org_id());
    let mut ctx = session.ctx(&format!("{path}{org_query}"), "org");
    ctx.orgs = orgs;
    ctx.org_query = org_query;
    ctx
}

/// Where a form goes back to: `path?org=…` plus what happened.
fn back(path: &str, scope: &OrgScope, outcome: &str) -> Response {
    redirect(&format!("{path}?org={}&{outcome}", scope.org_id()))
}

/// The outcome of a form: a redirect back, with `done` on success, or with the error code for
/// invalid input; any other refusal as an error page.
fn answer(
    session: &Session,
    path: &str,
    scope: &OrgScope,
    result: Result<&str, ServiceError>,
) -> Response {
    match result {
        Ok(done) => back(path, scope, &format!("done={done}")),
        Err(e @ ServiceError::Invalid { .. }) => {
            let api = ApiError::from(e);
            back(path, scope, &format!("error={}", api.code))
        }
        Err(e) => session.error(e),
    }
}

/// The organization a form acts in (its `org` field), or the error page.
async fn form_scope(state: &AppState, session: &Session, org: &str) -> Result<OrgScope, Response> {
    select_org(state, session, Some(org))
        .await
        .map(|(scope, _)| scope)
        .map_err(|e| session.error(e))
}

/// The notice after sending or resending an invitation: whether its e-mail went out.
fn sent_outcome(sent: &Sent) -> &'static str {
    if sent.email_sent {
        "invited"
    } else {
        "invited_unsent"
    }
}

fn parse_role(s: &str) -> Result<Role, ServiceError> {
    Role::from_str(s.trim()).map_err(|_| ServiceError::invalid("invalid_role", "unknown role"))
}

fn cursor<T: FromStr>(q: &OrgPageQuery) -> Result<Option<T>, ServiceError> {
    q.cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(path_id)
        .transpose()
}

// ---------------------------------------------------------------------------------------------
// Settings

#[derive(Template)]
#[template(path = "org_settings.html")]
struct SettingsPage {
    ctx: Ctx,
    org_id: String,
    org_name: String,
    personal: bool,
    role: &'static str,
    notice: Option<&'static str>,
    error: Option<&'static str>,
    can_rename: bool,
    can_transfer: bool,
    can_delete: bool,
    can_leave: bool,
    /// Members who could receive the ownership (everyone but the viewer).
    heirs: Vec<(String, String)>,
}

pub async fn settings(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<OrgPageQuery>,
) -> Response {
    let result = async {
        let (scope, orgs) = select_org(&state, &session, q.org.as_deref()).await?;
        let t = session.lang.strings();
        let can_transfer = scope.can(Action::OrgTransfer) && !scope.org().is_personal;
        let heirs = if can_transfer {
            state
                .services
                .orgs
                .members(&scope, None, PAGE)
                .await?
                .data
                .into_iter()
                .filter(|m| m.user_id != scope.actor().user_id)
                .map(|m| (m.user_id.to_string(), member_label(&m)))
                .collect()
        } else {
            Vec::new()
        };
        Ok::<_, ServiceError>(SettingsPage {
            org_id: scope.org_id().to_string(),
            org_name: scope.org().name.clone(),
            personal: scope.org().is_personal,
            role: scope
                .role()
                .map_or(t.org_role_platform, |r| role_name(t, r)),
            notice: notice(t, q.done.as_deref()),
            error: form_error(t, q.error.as_deref()),
            can_rename: scope.can(Action::OrgUpdate),
            can_transfer,
            can_delete: scope.can(Action::OrgDelete) && !scope.org().is_personal,
            can_leave: scope.role().is_some() && !scope.org().is_personal,
            heirs,
            ctx: org_ctx(&session, &scope, orgs, "/org"),
        })
    }
    .await;
    session.page(result)
}

fn member_label(m: &Member) -> String {
    if m.name.trim().is_empty() {
        m.email.as_str().to_owned()
    } else {
        format!("{} <{}>", m.name, m.email.as_str())
    }
}

#[derive(Deserialize)]
pub struct NameForm {
    org: String,
    #[serde(default)]
    name: String,
}

pub async fn rename(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<NameForm>,
) -> Response {
    let scope = match form_scope(&state, &session, &form.org).await {
        Ok(scope) => scope,
        Err(page) => return page,
    };
    let result = state.services.orgs.rename(&scope, &form.name).await;
    answer(&session, "/org", &scope, result.map(|_| "renamed"))
}

/// Creates an organization owned by the viewer and switches to it. The form is on the
/// settings page of whichever organization was shown; invalid names go back there.
pub async fn create(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<NameForm>,
) -> Response {
    match state.services.orgs.create(&session.actor, &form.name).await {
        Ok(m) => redirect(&format!("/org?org={}&done=created", m.org.id)),
        Err(e @ ServiceError::Invalid { .. }) => {
            let code = ApiError::from(e).code;
            match select_org(&state, &session, Some(&form.org)).await {
                Ok((scope, _)) => back("/org", &scope, &format!("error={code}")),
                Err(e) => session.error(e),
            }
        }
        Err(e) => session.error(e),
    }
}

/// The viewer leaves the organization and lands on their personal one.
pub async fn leave(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<OrgForm>,
) -> Response {
    let result = async {
        let (scope, _) = select_org(&state, &session, Some(&form.org)).await?;
        state.services.orgs.leave(&scope).await
    }
    .await;
    match result {
        Ok(()) => redirect("/"),
        Err(e) => session.error(e),
    }
}

#[derive(Deserialize)]
pub struct TransferForm {
    org: String,
    #[serde(default)]
    user_id: String,
}

pub async fn transfer(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<TransferForm>,
) -> Response {
    let scope = match form_scope(&state, &session, &form.org).await {
        Ok(scope) => scope,
        Err(page) => return page,
    };
    let result = async {
        let to: UserId = path_id(&form.user_id)?;
        state.services.orgs.transfer(&scope, to).await
    }
    .await;
    answer(&session, "/org", &scope, result.map(|_| "transferred"))
}

#[derive(Deserialize)]
pub struct DeleteForm {
    org: String,
    #[serde(default)]
    confirm: String,
}

/// Deletes the organization when the exact name was typed; a wrong name changes nothing.
pub async fn delete(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<DeleteForm>,
) -> Response {
    let scope = match form_scope(&state, &session, &form.org).await {
        Ok(scope) => scope,
        Err(page) => return page,
    };
    match state.services.orgs.delete(&scope, &form.confirm).await {
        Ok(_) => redirect("/"),
        Err(TenancyError::Service(e @ ServiceError::Invalid { .. })) => {
            answer(&session, "/org", &scope, Err(e))
        }
        Err(e) => session.tenancy_error(e),
    }
}

// ---------------------------------------------------------------------------------------------
// Members

pub struct MemberRow {
    pub id: String,
    pub name: String,
    pub email: String,
    pub role: &'static str,
    pub models: String,
    pub joined: String,
    pub is_me: bool,
    /// Role and model controls and the remove button, for those who may manage this member.
    pub manageable: bool,
    pub roles: Vec<RoleOption>,
    pub models_value: String,
}

#[derive(Template)]
#[template(path = "org_members.html")]
struct MembersPage {
    ctx: Ctx,
    org_id: String,
    rows: Vec<MemberRow>,
    next_cursor: Option<String>,
    notice: Option<&'static str>,
    error: Option<&'static str>,
}

/// Whether the viewer may change this member: managers may, but only Owners touch Owners.
fn may_manage(scope: &OrgScope, m: &Member) -> bool {
    scope.can(Action::MembersManage) && (m.role != Role::Owner || scope.acts_as_owner())
}

fn member_row(t: &'static Strings, scope: &OrgScope, m: &Member) -> MemberRow {
    let models_value = m.models.as_ref().map(|v| v.join(", ")).unwrap_or_default();
    MemberRow {
        id: m.user_id.to_string(),
        name: m.name.clone(),
        email: m.email.as_str().to_owned(),
        role: role_name(t, m.role),
        models: m
            .models
            .as_ref()
            .map_or_else(|| t.all_models.to_owned(), |v| v.join(", ")),
        joined: date(m.joined_at),
        is_me: m.user_id == scope.actor().user_id,
        manageable: may_manage(scope, m),
        roles: role_options(t, scope, m.role),
        models_value,
    }
}

pub async fn members(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<OrgPageQuery>,
) -> Response {
    let result = async {
        let (scope, orgs) = select_org(&state, &session, q.org.as_deref()).await?;
        let page = state
            .services
            .orgs
            .members(&scope, cursor(&q)?, PAGE)
            .await?;
        let t = session.lang.strings();
        Ok::<_, ServiceError>(MembersPage {
            org_id: scope.org_id().to_string(),
            rows: page.data.iter().map(|m| member_row(t, &scope, m)).collect(),
            next_cursor: page.next_cursor.map(|c| c.to_string()),
            notice: notice(t, q.done.as_deref()),
            error: form_error(t, q.error.as_deref()),
            ctx: org_ctx(&session, &scope, orgs, "/org/members"),
        })
    }
    .await;
    session.page(result)
}

#[derive(Deserialize)]
pub struct MemberForm {
    org: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    models: String,
}

/// Saves a member's role and model allow-list (empty: every model).
pub async fn update_member(
    State(state): State<AppState>,
    session: Session,
    Path(user_id): Path<String>,
    Form(form): Form<MemberForm>,
) -> Response {
    let scope = match form_scope(&state, &session, &form.org).await {
        Ok(scope) => scope,
        Err(page) => return page,
    };
    let result = async {
        let user: UserId = path_id(&user_id)?;
        let role = parse_role(&form.role)?;
        let input = UpdateMember {
            role: Some(role),
            models: Some(model_list(&form.models)),
        };
        state.services.orgs.update_member(&scope, user, input).await
    }
    .await;
    answer(&session, "/org/members", &scope, result.map(|_| "member"))
}

#[derive(Template)]
#[template(path = "org_member_remove.html")]
struct RemoveMemberPage {
    ctx: Ctx,
    org_id: String,
    member: MemberRow,
}

/// Asks for confirmation before removing a member.
pub async fn confirm_remove_member(
    State(state): State<AppState>,
    session: Session,
    Path(user_id): Path<String>,
    Query(q): Query<OrgPageQuery>,
) -> Response {
    let result = async {
        let user: UserId = path_id(&user_id)?;
        let (scope, orgs) = select_org(&state, &session, q.org.as_deref()).await?;
        let m = state.services.orgs.member(&scope, user).await?;
        if !may_manage(&scope, &m) {
            return Err(ServiceError::Forbidden);
        }
        Ok(RemoveMemberPage {
            org_id: scope.org_id().to_string(),
            member: member_row(session.lang.strings(), &scope, &m),
            ctx: org_ctx(&session, &scope, orgs, "/org/members"),
        })
    }
    .await;
    session.page(result)
}

pub async fn remove_member(
    State(state): State<AppState>,
    session: Session,
    Path(user_id): Path<String>,
    Form(form): Form<OrgForm>,
) -> Response {
    let scope = match form_scope(&state, &session, &form.org).await {
        Ok(scope) => scope,
        Err(page) => return page,
    };
    let result = async {
        let user: UserId = path_id(&user_id)?;
        state.services.orgs.remove_member(&scope, user).await
    }
    .await;
    answer(&session, "/org/members", &scope, result.map(|_| "removed"))
}

// ---------------------------------------------------------------------------------------------
// Teams

pub struct TeamRow {
    pub id: String,
    pub name: String,
    pub members: i64,
    pub created: String,
}

fn team_row(team: &Team) -> TeamRow {
    TeamRow {
        id: team.id.to_string(),
        name: team.name.clone(),
        members: team.member_count,
        created: date(team.created_at),
    }
}

#[derive(Template)]
#[template(path = "org_teams.html")]
struct TeamsPage {
    ctx: Ctx,
    org_id: String,
    rows: Vec<TeamRow>,
    next_cursor: Option<String>,
    can_manage: bool,
    notice: Option<&'static str>,
    error: Option<&'static str>,
}

pub async fn teams(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<OrgPageQuery>,
) -> Response {
    let result = async {
        let (scope, orgs) = select_org(&state, &session, q.org.as_deref()).await?;
        let page = state.services.teams.list(&scope, cursor(&q)?, PAGE).await?;
        let t = session.lang.strings();
        Ok::<_, ServiceError>(TeamsPage {
            org_id: scope.org_id().to_string(),
            rows: page.data.iter().map(team_row).collect(),
            next_cursor: page.next_cursor.map(|c| c.to_string()),
            can_manage: scope.can(Action::TeamsManage),
            notice: notice(t, q.done.as_deref()),
            error: form_error(t, q.error.as_deref()),
            ctx: org_ctx(&session, &scope, orgs, "/org/teams"),
        })
    }
    .await;
    session.page(result)
}

pub async fn create_team(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<NameForm>,
) -> Response {
    let scope = match form_scope(&state, &session, &form.org).await {
        Ok(scope) => scope,
        Err(page) => return page,
    };
    let result = state.services.teams.create(&scope, &form.name).await;
    match result {
        Ok(team) => redirect(&format!(
            "/org/teams/{}?org={}&done=team",
            team.id,
            scope.org_id()
        )),
        Err(e) => answer(&session, "/org/teams", &scope, Err(e)),
    }
}

pub struct TeamMemberRow {
    pub id: String,
    pub name: String,
    pub email: String,
    pub role: &'static str,
    pub added: String,
}

fn team_member_row(t: &'static Strings, m: &TeamMember) -> TeamMemberRow {
    TeamMemberRow {
        id: m.user_id.to_string(),
        name: m.name.clone(),
        email: m.email.as_str().to_owned(),
        role: role_name(t, m.role),
        added: date(m.added_at),
    }
}

#[derive(Template)]
#[template(path = "org_team.html")]
struct TeamPage {
    ctx: Ctx,
    org_id: String,
    team: TeamRow,
    rows: Vec<TeamMemberRow>,
    next_cursor: Option<String>,
    /// Organization members not in the team yet, for the add form.
    candidates: Vec<(String, String)>,
    can_manage: bool,
    notice: Option<&'static str>,
    error: Option<&'static str>,
}

pub async fn team(
    State(state): State<AppState>,
    session: Session,
    Path(team_id): Path<String>,
    Query(q): Query<OrgPageQuery>,
) -> Response {
    let result = async {
        let id: TeamId = path_id(&team_id)?;
        let (scope, orgs) = select_org(&state, &session, q.org.as_deref()).await?;
        let team = state.services.teams.get(&scope, id).await?;
        let page = state
            .services
            .teams
            .members(&scope, id, cursor(&q)?, PAGE)
            .await?;
        let can_manage = scope.can(Action::TeamsManage);
        let candidates = if can_manage && scope.can(Action::MembersRead) {
            state
                .services
                .orgs
                .members(&scope, None, PAGE)
                .await?
                .data
                .into_iter()
                .filter(|m| !page.data.iter().any(|tm| tm.user_id == m.user_id))
                .map(|m| (m.user_id.to_string(), member_label(&m)))
                .collect()
        } else {
            Vec::new()
        };
        let t = session.lang.strings();
        Ok::<_, ServiceError>(TeamPage {
            org_id: scope.org_id().to_string(),
            team: team_row(&team),
            rows: page.data.iter().map(|m| team_member_row(t, m)).collect(),
            next_cursor: page.next_cursor.map(|c| c.to_string()),
            candidates,
            can_manage,
            notice: notice(t, q.done.as_deref()),
            error: form_error(t, q.error.as_deref()),
            ctx: org_ctx(&session, &scope, orgs, &format!("/org/teams/{id}")),
        })
    }
    .await;
    session.page(result)
}

pub async fn rename_team(
    State(state): State<AppState>,
    session: Session,
    Path(team_id): Path<String>,
    Form(form): Form<NameForm>,
) -> Response {
    let scope = match form_scope(&state, &session, &form.org).await {
        Ok(scope) => scope,
        Err(page) => return page,
    };
    let result = async {
        let id: TeamId = path_id(&team_id)?;
        state.services.teams.rename(&scope, id, &form.name).await
    }
    .await;
    let path = format!("/org/teams/{}", team_id.trim());
    answer(&session, &path, &scope, result.map(|_| "team"))
}

#[derive(Deserialize)]
pub struct TeamMemberForm {
    org: String,
    #[serde(default)]
    user_id: String,
}

pub async fn add_team_member(
    State(state): State<AppState>,
    session: Session,
    Path(team_id): Path<String>,
    Form(form): Form<TeamMemberForm>,
) -> Response {
    let scope = match form_scope(&state, &session, &form.org).await {
        Ok(scope) => scope,
        Err(page) => return page,
    };
    let result = async {
        let id: TeamId = path_id(&team_id)?;
        let user: UserId = path_id(&form.user_id)?;
        state.services.teams.add_member(&scope, id, user).await
    }
    .await;
    let path = format!("/org/teams/{}", team_id.trim());
    answer(&session, &path, &scope, result.map(|_| "team"))
}

pub async fn remove_team_member(
    State(state): State<AppState>,
    session: Session,
    Path((team_id, user_id)): Path<(String, String)>,
    Form(form): Form<OrgForm>,
) -> Response {
    let scope = match form_scope(&state, &session, &form.org).await {
        Ok(scope) => scope,
        Err(page) => return page,
    };
    let result = async {
        let id: TeamId = path_id(&team_id)?;
        let user: UserId = path_id(&user_id)?;
        state.services.teams.remove_member(&scope, id, user).await
    }
    .await;
    let path = format!("/org/teams/{}", team_id.trim());
    answer(&session, &path, &scope, result.map(|()| "removed"))
}

#[derive(Template)]
#[template(path = "org_team_delete.html")]
struct DeleteTeamPage {
    ctx: Ctx,
    org_id: String,
    team: TeamRow,
}

/// Asks for confirmation before deleting a team (its keys are revoked with it).
pub async fn confirm_delete_team(
    State(state): State<AppState>,
    session: Session,
    Path(team_id): Path<String>,
    Query(q): Query<OrgPageQuery>,
) -> Response {
    let result = async {
        let id: TeamId = path_id(&team_id)?;
        let (scope, orgs) = select_org(&state, &session, q.org.as_deref()).await?;
        // The team must be this organization's before the role matters: another org's id is 404.
        let team = state.services.teams.get(&scope, id).await?;
        scope.require(Action::TeamsManage)?;
        Ok::<_, ServiceError>(DeleteTeamPage {
            org_id: scope.org_id().to_string(),
            team: team_row(&team),
            ctx: org_ctx(&session, &scope, orgs, "/org/teams"),
        })
    }
    .await;
    session.page(result)
}

pub async fn delete_team(
    State(state): State<AppState>,
    session: Session,
    Path(team_id): Path<String>,
    Form(form): Form<OrgForm>,
) -> Response {
    let scope = match form_scope(&state, &session, &form.org).await {
        Ok(scope) => scope,
        Err(page) => return page,
    };
    let result = async {
        let id: TeamId = path_id(&team_id)?;
        state.services.teams.delete(&scope, id).await
    }
    .await;
    answer(
        &session,
        "/org/teams",
        &scope,
        result.map(|_| "team_deleted"),
    )
}

// ---------------------------------------------------------------------------------------------
// Invitations

pub struct InvitationRow {
    pub id: String,
    pub email: String,
    pub role: &'static str,
    pub state: &'static str,
    pub state_class: &'static str,
    pub invited_by: String,
    pub expires: String,
    pub pending: bool,
}

fn invitation_row(t: &'static Strings, i: &Invitation, at: DateTime<Utc>) -> InvitationRow {
    let state = InvitationState::of(i, at);
    InvitationRow {
        id: i.id.to_string(),
        email: i.email.as_str().to_owned(),
        role: role_name(t, i.role),
        state: match state {
            InvitationState::Pending => t.org_invite_pending,
            InvitationState::Expired => t.org_invite_expired,
            InvitationState::Accepted => t.org_invite_accepted,
            InvitationState::Declined => t.org_invite_declined,
            InvitationState::Revoked => t.org_invite_revoked,
        },
        state_class: state.as_str(),
        invited_by: i.invited_by_name.clone().unwrap_or_default(),
        expires: date(i.expires_at),
        pending: state == InvitationState::Pending || state == InvitationState::Expired,
    }
}

#[derive(Template)]
#[template(path = "org_invitations.html")]
struct InvitationsPage {
    ctx: Ctx,
    org_id: String,
    rows: Vec<InvitationRow>,
    next_cursor: Option<String>,
    can_manage: bool,
    roles: Vec<RoleOption>,
    notice: Option<&'static str>,
    error: Option<&'static str>,
}

pub async fn invitations(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<OrgPageQuery>,
) -> Response {
    let result = async {
        let (scope, orgs) = select_org(&state, &session, q.org.as_deref()).await?;
        let page = state
            .services
            .invitations
            .list(&scope, cursor::<Uuid>(&q)?, PAGE)
            .await?;
        let t = session.lang.strings();
        let at = now();
        Ok::<_, ServiceError>(InvitationsPage {
            org_id: scope.org_id().to_string(),
            rows: page.data.iter().map(|i| invitation_row(t, i, at)).collect(),
            next_cursor: page.next_cursor.map(|c| c.to_string()),
            can_manage: scope.can(Action::InvitationsManage),
            roles: role_options(t, &scope, Role::Member),
            notice: notice(t, q.done.as_deref()),
            error: form_error(t, q.error.as_deref()),
            ctx: org_ctx(&session, &scope, orgs, "/org/invitations"),
        })
    }
    .await;
    session.page(result)
}

#[derive(Deserialize)]
pub struct InviteForm {
    org: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

/// Sends an invitation; the notice says whether the e-mail went out.
pub async fn invite(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<InviteForm>,
) -> Response {
    let scope = match form_scope(&state, &session, &form.org).await {
        Ok(scope) => scope,
        Err(page) => return page,
    };
    let result = async {
        let role = parse_role(&form.role)?;
        let input = CreateInvitation {
            email: form.email.clone(),
            role,
        };
        state.services.invitations.create(&scope, input).await
    }
    .await;
    let result = result.map(|sent| sent_outcome(&sent));
    answer(&session, "/org/invitations", &scope, result)
}

pub async fn resend_invitation(
    State(state): State<AppState>,
    session: Session,
    Path(invitation_id): Path<String>,
    Form(form): Form<OrgForm>,
) -> Response {
    let scope = match form_scope(&state, &session, &form.org).await {
        Ok(scope) => scope,
        Err(page) => return page,
    };
    let result = async {
        let id: Uuid = path_id(&invitation_id)?;
        state.services.invitations.resend(&scope, id).await
    }
    .await;
    let result = result.map(|sent| sent_outcome(&sent));
    answer(&session, "/org/invitations", &scope, result)
}

pub async fn revoke_invitation(
    State(state): State<AppState>,
    session: Session,
    Path(invitation_id): Path<String>,
    Form(form): Form<OrgForm>,
) -> Response {
    let scope = match form_scope(&state, &session, &form.org).await {
        Ok(scope) => scope,
        Err(page) => return page,
    };
    let result = async {
        let id: Uuid = path_id(&invitation_id)?;
        state.services.invitations.revoke(&scope, id).await
    }
    .await;
    answer(
        &session,
        "/org/invitations",
        &scope,
        result.map(|_| "revoked"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::i18n::Lang;

    #[test]
    fn only_known_outcomes_are_shown() {
        let t = Lang::En.strings();
        assert_eq!(notice(t, Some("renamed")), Some(t.org_done_renamed));
        assert_eq!(notice(t, Some("<script>")), None);
        assert_eq!(notice(t, None), None);
        assert_eq!(form_error(t, Some("")), None);
        assert_eq!(
            form_error(t, Some("invalid_name")),
            Some(t.err_invalid_input)
        );
    }

    #[test]
    fn roles_and_ids_are_parsed() {
        assert_eq!(parse_role("viewer").unwrap(), Role::Viewer);
        assert!(matches!(
            parse_role("god"),
            Err(ServiceError::Invalid { .. })
        ));
        assert!(matches!(
            path_id::<UserId>("nope"),
            Err(ServiceError::NotFound)
        ));
    }
}
