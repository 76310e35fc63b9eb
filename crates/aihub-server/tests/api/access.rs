//! Access control over the whole management API, generated from the routes the code declares
//! (see `surface.rs`): a route added tomorrow is walked by these tests without anyone listing it
//! here — and fails them until it has a fixture and a body.
//!
//! - Every route that takes an id, called by an owner and a member of another organization, a
//!   Viewer of the same organization, an anonymous caller, a revoked API key and an expired
//!   session: each forbidden call answers 404 (other organization), 403 (lacking role) or 401
//!   (no valid session) and changes no row of any table.
//! - Every write body with protected fields added (`role`, `org_id`, `owner_id`, `spent`,
//!   `is_platform_admin`, `key_hash`, …) persists none of them.
//! - Every mutating route leaves exactly one audit record, with no secret in it.
//! - Every cell of the endpoint table in docs/permissions.md holds against the running server.

use std::collections::BTreeMap;

use aihub_core::config::SmtpSecurity;
use aihub_core::governance::{Period, ScopeType};
use aihub_core::time::now;
use aihub_core::{Currency, Email, OrgId, Role, UserId};
use aihub_mock_upstream::smtp::SmtpSink;
use aihub_store::{
    BackendKind, BudgetAlert, Delivery, DeliveryStatus, NewUser, Org, PoolRef, User,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{PASSWORD, Signed, TestApp, api_tests, spawn_app_with};
use crate::surface::{Route, digest, endpoint_table, management_routes};

api_tests!(
    every_id_route_refuses_outsiders_and_changes_nothing,
    write_bodies_never_assign_protected_fields,
    every_mutation_leaves_exactly_one_audit_record,
    roles_get_exactly_what_the_endpoint_table_says,
);

/// Fields a client must never be able to set through a body, with values an attacker would
/// like (`victim` is another organization's id).
fn protected_fields(victim: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("role", json!("owner")),
        ("org_id", json!(victim)),
        ("owner_id", json!(Uuid::now_v7())),
        ("owner_user_id", json!(Uuid::now_v7())),
        ("created_by", json!(Uuid::now_v7())),
        ("user_id", json!(Uuid::now_v7())),
        ("id", json!(Uuid::now_v7())),
        ("spent", json!(0)),
        ("spent_micros", json!(0)),
        ("is_platform_admin", json!(true)),
        ("key_hash", json!("00")),
        ("password_hash", json!("x")),
        ("token_hash", json!("00")),
        ("created_at", json!("2020-01-01T00:00:00Z")),
        ("revoked_at", json!(null)),
        ("deleted_at", json!(null)),
        ("status", json!("accepted")),
        ("is_personal", json!(false)),
    ]
}

/// Users and objects every test starts from: organization A (owner, admin, member, viewer),
/// organization B (owner, member), a platform admin, and one object of every kind in A.
pub(crate) struct World {
    pub(crate) app: TestApp,
    pub(crate) owner: Signed,
    pub(crate) admin: Signed,
    pub(crate) member: Signed,
    pub(crate) viewer: Signed,
    pub(crate) outsider: Signed,
    pub(crate) outsider_member: Signed,
    pub(crate) root: String,
    pub(crate) org: String,
    pub(crate) seq: std::sync::atomic::AtomicU32,
    pub(crate) smtp: SmtpSink,
}

impl World {
    pub(crate) async fn build(kind: BackendKind) -> World {
        let smtp = SmtpSink::start().await.unwrap();
        let port = smtp.port();
        let app = spawn_app_with(kind, |c| {
            c.smtp.host = Some("127.0.0.1".into());
            c.smtp.port = port;
            c.smtp.security = SmtpSecurity::None;
            c.smtp.from = "AI Hub <noreply@aihub.test>".into();
        })
        .await;
        let owner = app.signup("owner@a.example").await;
        let admin = app.signup("admin@a.example").await;
        let member = app.signup("member@a.example").await;
        let viewer = app.signup("viewer@a.example").await;
        let outsider = app.signup("owner@b.example").await;
        let outsider_member = app.signup("member@b.example").await;
        let root = app.platform_admin().await;
        let r = app
            .post("/api/v1/orgs", &owner.token, json!({"name": "Org A"}))
            .await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
        let org = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let w = World {
            app,
            owner,
            admin,
            member,
            viewer,
            outsider,
            outsider_member,
            root,
            org,
            seq: std::sync::atomic::AtomicU32::new(0),
            smtp,
        };
        let a = w.org.clone();
        w.add_member(&a, &w.admin.user_id, Role::Admin).await;
        w.add_member(&a, &w.member.user_id, Role::Member).await;
        w.add_member(&a, &w.viewer.user_id, Role::Viewer).await;
        let b = w.outsider.org_id.clone();
        w.add_member(&b, &w.outsider_member.user_id, Role::Member)
            .await;
        w
    }

    pub(crate) fn next(&self) -> u32 {
        self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn store(&self) -> &aihub_store::Store {
        &self.app.state.services.store
    }

    pub(crate) async fn add_member(&self, org: &str, user: &str, role: Role) {
        self.store()
            .add_member(
                OrgId::from_uuid(org.parse().unwrap()),
                UserId::from_uuid(user.parse().unwrap()),
                role,
                now(),
            )
            .await
            .unwrap();
    }

    /// A user who exists only in the database (cannot sign in): a target for member routes.
    pub(crate) async fn bare_user(&self) -> String {
        let n = self.next();
        let t = now();
        let user = User {
            id: UserId::new(),
            email: Email::parse(&format!("target{n}@a.example")).unwrap(),
            name: format!("Target {n}"),
            password_hash: "unusable".into(),
            is_platform_admin: false,
            disabled_at: None,
            created_at: t,
            updated_at: t,
        };
        let id = user.id.to_string();
        self.store()
            .create_user_with_personal_org(&NewUser {
                personal_org: Org {
                    id: OrgId::new(),
                    name: format!("Target {n}'s organization"),
                    is_personal: true,
                    created_at: t,
                    updated_at: t,
                },
                user,
            })
            .await
            .unwrap();
        id
    }

    /// `POST path` as `token`, expecting 201; the created object's `id`.
    pub(crate) async fn create(&self, path: &str, token: &str, body: Value) -> String {
        let r = self.app.post(path, token, body).await;
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert!(status.is_success(), "POST {path}: {status} {v}");
        v["id"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v["name"].as_str().unwrap().to_owned())
    }

    /// Fresh ids for every placeholder of `route` in organization `org`, created by its owner
    /// (or the platform admin for platform objects), so that a destructive call has its own.
    /// `subject` is who will call the route: objects it acts on are never theirs nor an Owner's.
    pub(crate) async fn fixtures(&self, route: &Route, org: &str) -> BTreeMap<String, String> {
        let mut ids = BTreeMap::new();
        ids.insert("org_id".to_owned(), org.to_owned());
        let n = self.next();
        let owner = &self.owner.token;
        for p in route.placeholders() {
            let value = match p.as_str() {
                "org_id" => continue,
                "key_id" => {
                    // A key of a plain member, so that only keys.manage_all reaches it.
                    let user = self.bare_user().await;
                    self.add_member(org, &user, Role::Member).await;
                    let id = self
                        .create(
                            &format!("/api/v1/orgs/{org}/keys"),
                            owner,
                            json!({"name": format!("key {n}")}),
                        )
                        .await;
                    // Hand the key to that member, as if they had created it.
                    match self.store().writer() {
                        PoolRef::Sqlite(p) => {
                            sqlx::query("UPDATE api_keys SET owner_user_id = $1 WHERE id = $2")
                                .bind(user.parse::<Uuid>().unwrap())
                                .bind(id.parse::<Uuid>().unwrap())
                                .execute(p)
                                .await
                                .unwrap();
                        }
                        PoolRef::Postgres(p) => {
                            sqlx::query("UPDATE api_keys SET owner_user_id = $1 WHERE id = $2")
                                .bind(user.parse::<Uuid>().unwrap())
                                .bind(id.parse::<Uuid>().unwrap())
                                .execute(p)
                                .await
                                .unwrap();
                        }
                    }
                    id
                }
                "user_id" if route.path.starts_with("/api/v1/admin/") => self.bare_user().await,
                "user_id" => {
                    let user = self.bare_user().await;
                    self.add_member(org, &user, Role::Member).await;
                    if let Some(team) = ids.get("team_id") {
                        let r = self
                            .app
                            .post(
                                &format!("/api/v1/orgs/{org}/teams/{team}/members"),
                                owner,
                                json!({"user_id": user}),
                            )
                            .await;
                        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
                    }
                    user
                }
                "team_id" => {
                    self.create(
                        &format!("/api/v1/orgs/{org}/teams"),
                        owner,
                        json!({"name": format!("team {n}")}),
                    )
                    .await
                }
                "invitation_id" => {
                    self.create(
                        &format!("/api/v1/orgs/{org}/invitations"),
                        owner,
                        json!({"email": format!("invitee{n}@c.example"), "role": "member"}),
                    )
                    .await
                }
                "limit_id" => {
                    self.create(
                        &format!("/api/v1/orgs/{org}/limits"),
                        owner,
                        json!({"scope_type": "org", "model": format!("fx-{n}"), "rpm": 1000 + n}),
                    )
                    .await
                }
                "budget_id" => {
                    self.create(
                        &format!("/api/v1/orgs/{org}/budgets"),
                        owner,
                        json!({"scope_type": "org", "amount": "100", "currency": "USD",
                               "period": "monthly", "name": format!("budget {n}"),
                               "webhook_url": "https://hooks.example.com/aihub"}),
                    )
                    .await
                }
                "alert_id" => self.alert(org).await,
                "plan_id" => {
                    self.create(
                        "/api/v1/admin/plans",
                        &self.root,
                        json!({"name": format!("plan-{n}"), "rpm": 100}),
                    )
                    .await
                }
                "name" if route.path.contains("/providers/") => {
                    self.create(
                        "/api/v1/admin/providers",
                        &self.root,
                        json!({"name": format!("prov{n}"), "kind": "mock"}),
                    )
                    .await
                }
                "name" if route.path.contains("/models/") => {
                    self.create(
                        "/api/v1/admin/models",
                        &self.root,
                        json!({"name": format!("model-{n}"), "provider": "mock"}),
                    )
                    .await
                }
                other => panic!("no fixture for {{{other}}} in {route}: add one to access.rs"),
            };
            ids.insert(p, value);
        }
        ids
    }

    /// Invites the world's member into a new organization and returns the token from the mail.
    async fn invitation_for_member(&self) -> String {
        let n = self.next();
        let org = self
            .create(
                "/api/v1/orgs",
                &self.owner.token,
                json!({"name": format!("inviting {n}")}),
            )
            .await;
        let before = self.smtp.messages().len();
        self.create(
            &format!("/api/v1/orgs/{org}/invitations"),
            &self.owner.token,
            json!({"email": "member@a.example", "role": "viewer"}),
        )
        .await;
        let mails = self
            .smtp
            .wait_for(before + 1, std::time::Duration::from_secs(10))
            .await
            .expect("the invitation e-mail");
        // Undo quoted-printable, which may fold the link and escape its `=`.
        let body = mails
            .last()
            .unwrap()
            .body()
            .replace("=\r\n", "")
            .replace("=3D", "=");
        let at = body.find("token=").expect("a token link in the e-mail") + "token=".len();
        body[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    }

    async fn alert(&self, org: &str) -> String {
        let t = now();
        let org = OrgId::from_uuid(org.parse().unwrap());
        let alert = BudgetAlert {
            id: Uuid::now_v7(),
            org_id: org,
            budget_id: Uuid::now_v7(),
            budget_name: Some("monthly".into()),
            scope: ScopeType::Org,
            scope_id: org.as_uuid(),
            period: Period::Monthly,
            period_start: Period::Monthly.start(t),
            threshold_pct: 80,
            spent_micros: 80,
            amount_micros: 100,
            currency: Currency::parse("USD").unwrap(),
            created_at: t,
            webhook: Delivery::initial(DeliveryStatus::None),
            email: Delivery::initial(DeliveryStatus::None),
        };
        assert!(self.store().insert_budget_alert(&alert).await.unwrap());
        alert.id.to_string()
    }

    /// A valid body for a write route (the tests must fail on authorization, not on input),
    /// or `None` for routes that read no body.
    async fn body(&self, route: &Route, ids: &BTreeMap<String, String>) -> Option<Value> {
        let n = self.next();
        let org = ids.get("org_id").cloned().unwrap_or_default();
        let body = match route.key().as_str() {
            "POST /api/v1/orgs" => json!({"name": format!("org {n}")}),
            "PATCH /api/v1/orgs/{org_id}" => json!({"name": format!("renamed {n}")}),
            "DELETE /api/v1/orgs/{org_id}" => {
                let r = self
                    .app
                    .get(&format!("/api/v1/orgs/{org}"), &self.root)
                    .await;
                let name = r.json::<Value>().await.unwrap()["name"].clone();
                json!({"confirm": name})
            }
            "POST /api/v1/orgs/{org_id}/transfer" => {
                let user = self.bare_user().await;
                self.add_member(&org, &user, Role::Member).await;
                json!({"user_id": user})
            }
            "PATCH /api/v1/orgs/{org_id}/members/{user_id}" => json!({"role": "viewer"}),
            "POST /api/v1/orgs/{org_id}/teams" => json!({"name": format!("team x{n}")}),
            "PATCH /api/v1/orgs/{org_id}/teams/{team_id}" => json!({"name": format!("team y{n}")}),
            "POST /api/v1/orgs/{org_id}/teams/{team_id}/members" => {
                let user = self.bare_user().await;
                self.add_member(&org, &user, Role::Member).await;
                json!({"user_id": user})
            }
            "POST /api/v1/orgs/{org_id}/invitations" => {
                json!({"email": format!("new{n}@c.example"), "role": "viewer"})
            }
            "POST /api/v1/orgs/{org_id}/keys" => json!({"name": format!("key x{n}")}),
            "PATCH /api/v1/orgs/{org_id}/keys/{key_id}" => json!({"name": format!("key y{n}")}),
            "POST /api/v1/orgs/{org_id}/limits" => {
                json!({"scope_type": "org", "model": format!("bd-{n}"), "rpm": 500 + n})
            }
            "PATCH /api/v1/orgs/{org_id}/limits/{limit_id}" => json!({"rpm": 400 + n}),
            "POST /api/v1/orgs/{org_id}/budgets" => json!({
                "scope_type": "org", "amount": "5", "currency": "USD", "period": "daily",
                "name": format!("b{n}")
            }),
            "PATCH /api/v1/orgs/{org_id}/budgets/{budget_id}" => json!({"name": format!("c{n}")}),
            "POST /api/v1/admin/plans" => json!({"name": format!("p{n}"), "rpm": 10}),
            "PATCH /api/v1/admin/plans/{plan_id}" => json!({"rpm": 20 + n}),
            "PUT /api/v1/admin/orgs/{org_id}/plan" => json!({"plan": "pro"}),
            "POST /api/v1/admin/providers" => json!({"name": format!("pv{n}"), "kind": "mock"}),
            "PUT /api/v1/admin/providers/{name}" => json!({"kind": "mock", "mock_latency_ms": n}),
            "POST /api/v1/admin/models" => {
                json!({"name": format!("md-{n}"), "provider": "mock"})
            }
            "PUT /api/v1/admin/models/{name}" => {
                json!({"provider": "mock", "upstream_model": format!("up-{n}")})
            }
            "POST /api/v1/admin/prices" => json!({
                "model": "mock-chat", "currency": "USD", "input": format!("0.{n}1"),
                "output": "2"
            }),
            "POST /api/v1/auth/register" => {
                json!({"email": format!("reg{n}@d.example"), "password": PASSWORD})
            }
            "POST /api/v1/auth/login" => json!({"email": "owner@a.example", "password": PASSWORD}),
            "POST /api/v1/invitations/accept" | "POST /api/v1/invitations/decline" => {
                json!({"token": self.invitation_for_member().await})
            }
            "POST /api/v1/me/password" => json!({
                "current_password": PASSWORD, "new_password": PASSWORD
            }),
            _ if READS_NO_BODY.contains(&route.key().as_str()) => return None,
            _ => panic!("no body for {route}: add one to access.rs"),
        };
        Some(body)
    }
}

/// Write routes whose handlers read no body.
const READS_NO_BODY: &[&str] = &[
    "DELETE /api/v1/orgs/{org_id}/keys/{key_id}",
    "POST /api/v1/orgs/{org_id}/keys/{key_id}/rotate",
    "DELETE /api/v1/orgs/{org_id}/limits/{limit_id}",
    "DELETE /api/v1/orgs/{org_id}/budgets/{budget_id}",
    "POST /api/v1/orgs/{org_id}/budgets/{budget_id}/rotate-secret",
    "DELETE /api/v1/orgs/{org_id}/members/{user_id}",
    "POST /api/v1/orgs/{org_id}/leave",
    "DELETE /api/v1/orgs/{org_id}/teams/{team_id}",
    "DELETE /api/v1/orgs/{org_id}/teams/{team_id}/members/{user_id}",
    "DELETE /api/v1/orgs/{org_id}/invitations/{invitation_id}",
    "POST /api/v1/orgs/{org_id}/invitations/{invitation_id}/resend",
    "DELETE /api/v1/admin/providers/{name}",
    "DELETE /api/v1/admin/models/{name}",
    "POST /api/v1/admin/users/{user_id}/disable",
    "POST /api/v1/admin/users/{user_id}/enable",
    "POST /api/v1/auth/logout",
];

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut req = app.req(method, path, token);
    if let Some(b) = body {
        req = req.json(b);
    }
    req.send().await.unwrap()
}

/// Who calls, and what every forbidden call must answer.
enum Expect {
    /// 404 for the organization's routes; 403 or 404 for platform routes.
    OtherOrg,
    /// As the endpoint table says for a Viewer: denied cells answer 403.
    Viewer,
    Unauthenticated,
}

async fn every_id_route_refuses_outsiders_and_changes_nothing(kind: BackendKind) {
    let w = World::build(kind).await;
    let app = &w.app;
    let table = endpoint_table();

    // A revoked key of organization A, and an expired session of its owner.
    let (key_id, revoked_key) = app.create_key(&w.owner, json!({"name": "to revoke"})).await;
    let r = app
        .delete(
            &format!("/api/v1/orgs/{}/keys/{key_id}", w.owner.org_id),
            &w.owner.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let expired = app.token("owner@a.example", PASSWORD).await;
    let expired_hash = aihub_service::crypto::sha256(expired.as_bytes());
    match w.store().writer() {
        PoolRef::Sqlite(p) => {
            sqlx::query("UPDATE sessions SET expires_at = 1 WHERE token_hash = $1")
                .bind(&expired_hash[..])
                .execute(p)
                .await
                .unwrap();
        }
        PoolRef::Postgres(p) => {
            sqlx::query("UPDATE sessions SET expires_at = 1 WHERE token_hash = $1")
                .bind(&expired_hash[..])
                .execute(p)
                .await
                .unwrap();
        }
    }

    let routes: Vec<Route> = management_routes()
        .into_iter()
        .filter(|r| !r.placeholders().is_empty())
        .collect();
    assert!(routes.len() >= 30, "found only {} id routes", routes.len());
    let callers: Vec<(&str, Option<String>, Expect)> = vec![
        (
            "owner of another org",
            Some(w.outsider.token.clone()),
            Expect::OtherOrg,
        ),
        (
            "member of another org",
            Some(w.outsider_member.token.clone()),
            Expect::OtherOrg,
        ),
        (
            "viewer of the org",
            Some(w.viewer.token.clone()),
            Expect::Viewer,
        ),
        ("anonymous", None, Expect::Unauthenticated),
        ("revoked key", Some(revoked_key), Expect::Unauthenticated),
        (
            "expired session",
            Some(expired.clone()),
            Expect::Unauthenticated,
        ),
    ];

    let mut attempts = 0;
    let mut failures = Vec::new();
    for route in &routes {
        let ids = w.fixtures(route, &w.org).await;
        let path = route.fill(&ids);
        let body = if route.is_write() {
            w.body(route, &ids).await
        } else {
            None
        };
        for (who, token, expect) in &callers {
            let platform = route.path.starts_with("/api/v1/admin/");
            let allowed: &[StatusCode] = match expect {
                Expect::Unauthenticated => &[StatusCode::UNAUTHORIZED],
                Expect::OtherOrg if platform => &[StatusCode::FORBIDDEN, StatusCode::NOT_FOUND],
                Expect::OtherOrg => &[StatusCode::NOT_FOUND],
                Expect::Viewer if platform => &[StatusCode::FORBIDDEN, StatusCode::NOT_FOUND],
                Expect::Viewer => {
                    let rule = table
                        .iter()
                        .find(|r| r.route == *route)
                        .unwrap_or_else(|| panic!("{route} is missing from docs/permissions.md"));
                    if rule.allowed[3] {
                        continue; // not a forbidden call
                    }
                    &[StatusCode::FORBIDDEN]
                }
            };
            attempts += 1;
            let before = digest(w.store()).await;
            let r = call(app, route.method(), &path, token.as_deref(), body.as_ref()).await;
            let status = r.status();
            let text = r.text().await.unwrap();
            let after = digest(w.store()).await;
            if !allowed.contains(&status) {
                failures.push(format!("{route} as {who}: {status} {text}"));
            } else if before != after {
                failures.push(format!(
                    "{route} as {who}: answered {status} but changed data"
                ));
            } else if serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
                .is_none()
            {
                failures.push(format!("{route} as {who}: {status} without an error body"));
            }
        }
    }
    println!(
        "route walk: {} routes with ids, {attempts} forbidden attempts, {} failures",
        routes.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

async fn write_bodies_never_assign_protected_fields(kind: BackendKind) {
    let w = World::build(kind).await;
    let app = &w.app;
    let victim = w.outsider.org_id.clone();
    let mut attempts = 0;
    let mut failures = Vec::new();
    for route in management_routes().iter().filter(|r| r.is_write()) {
        let ids = w.fixtures(route, &w.org).await;
        let path = route.fill(&ids);
        let Some(body) = w.body(route, &ids).await else {
            continue;
        };
        let token = caller_for(&w, route);
        for (field, value) in protected_fields(&victim) {
            // A field the route legitimately takes is not an injection.
            if body.get(field).is_some() {
                continue;
            }
            let mut b = body.clone();
            b[field] = value.clone();
            attempts += 1;
            let before = digest(w.store()).await;
            let r = call(app, route.method(), &path, token, Some(&b)).await;
            let status = r.status();
            let text = r.text().await.unwrap();
            let after = digest(w.store()).await;
            // Unknown fields are refused as a whole: nothing may have been written.
            if status != StatusCode::BAD_REQUEST && status != StatusCode::UNPROCESSABLE_ENTITY {
                failures.push(format!("{route} with {field}: {status} {text}"));
            } else if before != after {
                failures.push(format!("{route} with {field}: refused but changed data"));
            }
        }
    }
    println!(
        "mass assignment: {attempts} bodies with a protected field, {} failures",
        failures.len()
    );
    assert!(attempts > 100, "only {attempts} attempts");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Who may make a successful call to `route` in the world's organization.
fn caller_for<'a>(w: &'a World, route: &Route) -> Option<&'a str> {
    if route.path.starts_with("/api/v1/admin/") {
        Some(&w.root)
    } else if route.path.starts_with("/api/v1/invitations/") {
        Some(&w.member.token)
    } else if route.path.starts_with("/api/v1/auth/register")
        || route.path.starts_with("/api/v1/auth/login")
    {
        None
    } else {
        Some(&w.owner.token)
    }
}

/// Total records in every audit chain.
async fn audit_count(w: &World) -> i64 {
    w.store()
        .audit_heads()
        .await
        .unwrap()
        .iter()
        .map(|h| h.seq)
        .sum()
}

async fn every_mutation_leaves_exactly_one_audit_record(kind: BackendKind) {
    let w = World::build(kind).await;
    let app = &w.app;
    let mut checked = 0;
    let mut failures = Vec::new();
    // Secrets that exist in this world; none may reach the log.
    let mut secrets = vec![PASSWORD.to_owned(), w.owner.token.clone(), w.root.clone()];
    for route in management_routes().iter().filter(|r| r.is_write()) {
        // Each call gets its own organization where it could destroy the shared one.
        let org = if route.path.starts_with("/api/v1/orgs/{org_id}")
            && (route.method == "DELETE" && route.path == "/api/v1/orgs/{org_id}"
                || route.path.ends_with("/transfer")
                || route.path.ends_with("/leave"))
        {
            let org = w
                .create(
                    "/api/v1/orgs",
                    &w.owner.token,
                    json!({"name": format!("own {}", w.next())}),
                )
                .await;
            w.add_member(&org, &w.admin.user_id, Role::Admin).await;
            org
        } else {
            w.org.clone()
        };
        let ids = w.fixtures(route, &org).await;
        let path = route.fill(&ids);
        let body = w.body(route, &ids).await;
        // Leaving is done by a non-owner; everything else by whoever may do it.
        let token = if route.path.ends_with("/leave") {
            Some(w.admin.token.as_str())
        } else if route.key() == "POST /api/v1/auth/logout" {
            // A session of its own, so the world's owner stays signed in.
            secrets.push(w.app.token("owner@a.example", PASSWORD).await);
            secrets.last().map(String::as_str)
        } else {
            caller_for(&w, route)
        };
        let before = audit_count(&w).await;
        let r = call(app, route.method(), &path, token, body.as_ref()).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        if !status.is_success() {
            failures.push(format!("{route}: setup call failed: {status} {text}"));
            continue;
        }
        // Secrets the call returned (a key, a session) must not be in the log either.
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            for field in ["key", "token", "secret", "webhook_secret"] {
                if let Some(s) = v[field].as_str() {
                    secrets.push(s.to_owned());
                }
            }
        }
        let after = audit_count(&w).await;
        checked += 1;
        if after - before != 1 {
            failures.push(format!("{route}: {} audit records", after - before));
        }
    }
    // No record anywhere holds a secret.
    let dump = audit_dump(&w).await;
    for s in &secrets {
        if dump.contains(s.as_str()) {
            failures.push(format!("a secret starting {} is in the audit log", &s[..8]));
        }
    }
    for needle in [
        "password_hash",
        "key_hash",
        "token_hash",
        "sk-aihub-",
        "aihub-sess-",
        "aihub-inv-",
        "whsec",
    ] {
        if dump.contains(needle) {
            failures.push(format!("the audit log contains {needle}"));
        }
    }
    println!(
        "audit: {checked} mutating routes called, {} failures",
        failures.len()
    );
    assert!(checked >= 30, "only {checked} mutating routes");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every column of every audit record, as text.
async fn audit_dump(w: &World) -> String {
    let sql = "SELECT COALESCE(actor_label, '') || ' ' || action || ' ' || \
               COALESCE(target_id, '') || ' ' || COALESCE(before_json, '') || ' ' || \
               COALESCE(after_json, '') || ' ' || COALESCE(user_agent, '') FROM audit_logs";
    let rows: Vec<String> = match w.store().reader() {
        PoolRef::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
        PoolRef::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
    };
    assert!(!rows.is_empty());
    rows.join("\n")
}

async fn roles_get_exactly_what_the_endpoint_table_says(kind: BackendKind) {
    let w = World::build(kind).await;
    let app = &w.app;
    let table = endpoint_table();
    let declared: Vec<Route> = management_routes()
        .into_iter()
        .filter(|r| r.path.starts_with("/api/v1/orgs/{org_id}"))
        .collect();
    // The table covers every organization route, and names no route that does not exist.
    for r in &declared {
        assert!(
            table.iter().any(|t| t.route == *r),
            "{r} is missing from the endpoint table in docs/permissions.md"
        );
    }
    for t in &table {
        assert!(
            management_routes().contains(&t.route),
            "docs/permissions.md lists {} which is not a route",
            t.route
        );
    }
    let mut cells = 0;
    let mut failures = Vec::new();
    for rule in &table {
        // One organization per row: destructive cells (delete, transfer, leave) cannot spoil
        // another row. Owner acts last, so the row's organization outlives the others' calls.
        let org = w
            .create(
                "/api/v1/orgs",
                &w.owner.token,
                json!({"name": format!("row {}", w.next())}),
            )
            .await;
        // A second Owner, so that "leave" and demotions are not refused as the last Owner's.
        let co_owner = w.bare_user().await;
        w.add_member(&org, &co_owner, Role::Owner).await;
        w.add_member(&org, &w.admin.user_id, Role::Admin).await;
        w.add_member(&org, &w.member.user_id, Role::Member).await;
        w.add_member(&org, &w.viewer.user_id, Role::Viewer).await;
        for (i, (role, who)) in [
            ("viewer", &w.viewer),
            ("member", &w.member),
            ("admin", &w.admin),
            ("owner", &w.owner),
        ]
        .into_iter()
        .enumerate()
        {
            let allowed = rule.allowed[3 - i];
            let ids = w.fixtures(&rule.route, &org).await;
            let path = rule.route.fill(&ids);
            let body = if rule.route.is_write() {
                w.body(&rule.route, &ids).await
            } else {
                None
            };
            let r = call(
                app,
                rule.route.method(),
                &path,
                Some(&who.token),
                body.as_ref(),
            )
            .await;
            let status = r.status();
            cells += 1;
            let ok = if allowed {
                status.is_success()
            } else {
                status == StatusCode::FORBIDDEN
            };
            if !ok {
                let text = r.text().await.unwrap();
                failures.push(format!(
                    "{} as {role}: table says {}, got {status} {text}",
                    rule.route,
                    if allowed { "allow" } else { "deny" }
                ));
            }
        }
    }
    println!(
        "permission matrix: {} endpoints × 4 roles = {cells} cells, {} failures",
        table.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
