//! `/admin/users`: every account, newest first, found by e-mail; disabling (after a
//! confirmation page) and re-enabling through the admin service, which refuses to disable the
//! operator's own account.

use aihub_core::UserId;
use aihub_service::ServiceError;
use aihub_store::User;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::super::pages::path_id;
use super::{AdminSession, DoneQuery, admin_ctx};
use crate::state::AppState;
use crate::web::i18n::Strings;
use crate::web::pages::{Ctx, Session, redirect, render, urlencode};

/// Users per page.
const PAGE: u32 = 50;

pub struct UserRow {
    pub id: String,
    pub email: String,
    pub name: String,
    pub admin: bool,
    pub disabled: bool,
    pub status: &'static str,
    pub created: String,
    pub can_disable: bool,
}

fn row(t: &'static Strings, me: UserId, u: &User) -> UserRow {
    let disabled = u.disabled_at.is_some();
    UserRow {
        id: u.id.to_string(),
        email: u.email.as_str().to_owned(),
        name: u.name.clone(),
        admin: u.is_platform_admin,
        disabled,
        status: if disabled {
            t.admin_disabled
        } else {
            t.status_active
        },
        created: u.created_at.format("%Y-%m-%d").to_string(),
        can_disable: !disabled && u.id != me,
    }
}

#[derive(Template)]
#[template(path = "admin_users.html")]
struct UsersPage {
    ctx: Ctx,
    tab: &'static str,
    search: String,
    rows: Vec<UserRow>,
    next_cursor: Option<String>,
    notice: Option<&'static str>,
}

#[derive(Debug, Default, Deserialize)]
pub struct UsersQuery {
    #[serde(default)]
    q: String,
    cursor: Option<String>,
    #[serde(flatten)]
    done: DoneQuery,
}

pub async fn list(
    State(state): State<AppState>,
    AdminSession(session): AdminSession,
    Query(q): Query<UsersQuery>,
) -> Response {
    let t = session.lang.strings();
    let admin = &state.services.admin;
    let me = session.actor.user_id;
    let result = async {
        if q.q.trim().is_empty() {
            let cursor = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
                Some(c) => Some(path_id::<UserId>(c)?),
                None => None,
            };
            let page = admin.list_users(&session.actor, cursor, PAGE).await?;
            Ok::<_, ServiceError>((
                page.data.iter().map(|u| row(t, me, u)).collect(),
                page.next_cursor.map(|c| c.to_string()),
            ))
        } else {
            let found = admin.find_user(&session.actor, &q.q).await?;
            Ok((found.iter().map(|u| row(t, me, u)).collect(), None))
        }
    }
    .await;
    let (rows, next_cursor) = match result {
        Ok(v) => v,
        Err(e) => return session.error(e),
    };
    let here = if q.q.is_empty() {
        "/admin/users".to_owned()
    } else {
        format!("/admin/users?q={}", urlencode(&q.q))
    };
    let page = UsersPage {
        ctx: admin_ctx(&session, &here),
        tab: "users",
        notice: q.done.notice(t),
        search: q.q,
        rows,
        next_cursor,
    };
    render(StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "admin_user_disable.html")]
struct DisablePage {
    ctx: Ctx,
    user: UserRow,
}

async fn user_row(state: &AppState, session: &Session, id: &str) -> Result<UserRow, ServiceError> {
    let id = path_id::<UserId>(id)?;
    let user = state.services.admin.user(&session.actor, id).await?;
    Ok(row(session.lang.strings(), session.actor.user_id, &user))
}

/// Asks for confirmation before disabling an account.
pub async fn confirm_disable(
    State(state): State<AppState>,
    AdminSession(session): AdminSession,
    Path(id): Path<String>,
) -> Response {
    match user_row(&state, &session, &id).await {
        Ok(user) => {
            let page = DisablePage {
                ctx: admin_ctx(&session, "/admin/users"),
                user,
            };
            render(StatusCode::OK, &page)
        }
        Err(e) => session.error(e),
    }
}

async fn set_disabled(state: &AppState, session: &Session, id: &str, disabled: bool) -> Response {
    let result = async {
        let id = path_id::<UserId>(id)?;
        state
            .services
            .admin
            .set_user_disabled(&session.actor, id, disabled)
            .await
    }
    .await;
    match result {
        Ok(_) => redirect("/admin/users?done=1"),
        Err(e) => session.error(e),
    }
}

pub async fn disable(
    State(state): State<AppState>,
    AdminSession(session): AdminSession,
    Path(id): Path<String>,
) -> Response {
    set_disabled(&state, &session, &id, true).await
}

pub async fn enable(
    State(state): State<AppState>,
    AdminSession(session): AdminSession,
    Path(id): Path<String>,
) -> Response {
    set_disabled(&state, &session, &id, false).await
}
