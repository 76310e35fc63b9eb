//! Members of an organization: listing, roles and model lists, the Owner rules (Admins leave
//! Owners alone, the last Owner stays), and removal or leaving taking access away at once.

use std::str::FromStr;

use aihub_core::time::now;
use aihub_core::{OrgId, Role, UserId};
use aihub_store::BackendKind;
use aihub_store::audit::{AuditFilter, Order};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Signed, TestApp, api_tests, error_code, spawn_app};

api_tests!(
    members_are_listed_and_read,
    roles_follow_the_owner_rules,
    the_last_owner_stays,
    concurrent_demotions_keep_an_owner,
    removal_takes_access_away_at_once,
    leaving_takes_access_away_at_once,
    member_models_narrow_their_keys,
);

// ---- Helpers shared with the other tenancy tests. ----

pub fn org_id(id: &str) -> OrgId {
    OrgId::from_str(id).unwrap()
}

pub fn user_id(who: &Signed) -> UserId {
    UserId::from_str(&who.user_id).unwrap()
}

/// Makes `who` a member of `org` with `role`, directly in the store (the invitation flow has its
/// own tests).
pub async fn add_member(app: &TestApp, org: &str, who: &Signed, role: Role) {
    app.state
        .services
        .store
        .add_member(org_id(org), user_id(who), role, now())
        .await
        .unwrap();
}

/// Creates a shared organization owned by `owner`; returns its id.
pub async fn create_org(app: &TestApp, owner: &Signed, name: &str) -> String {
    let r = app
        .post("/api/v1/orgs", &owner.token, json!({"name": name}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}

/// Creates a key for `who` in `org`; returns (key id, secret).
pub async fn key_in(app: &TestApp, who: &Signed, org: &str, body: Value) -> (String, String) {
    let r = app
        .post(&format!("/api/v1/orgs/{org}/keys"), &who.token, body)
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let v: Value = r.json().await.unwrap();
    (
        v["id"].as_str().unwrap().to_owned(),
        v["key"].as_str().unwrap().to_owned(),
    )
}

pub fn chat() -> Value {
    json!({
        "model": "mock-chat",
        "max_tokens": 4,
        "messages": [{"role": "user", "content": "Hello"}]
    })
}

/// The status of a chat completion with `key`.
pub async fn chat_status(app: &TestApp, key: &str) -> StatusCode {
    app.v1("/v1/chat/completions", key, chat()).await.status()
}

/// The tenancy actions recorded in `org`'s audit chain, oldest first.
pub async fn audited(app: &TestApp, org: &str) -> Vec<String> {
    let records = app
        .state
        .services
        .store
        .list_audit(
            org_id(org).as_uuid(),
            &AuditFilter::default(),
            None,
            Order::OldestFirst,
            1000,
        )
        .await
        .unwrap();
    records
        .into_iter()
        .map(|r| r.record.action)
        .filter(|a| {
            ["org.", "member.", "team.", "invitation."]
                .iter()
                .any(|p| a.starts_with(p))
        })
        .collect()
}

fn members_path(org: &str) -> String {
    format!("/api/v1/orgs/{org}/members")
}

/// An organization with an Owner, an Admin, a Member and a Viewer.
pub struct Crew {
    pub org: String,
    pub owner: Signed,
    pub admin: Signed,
    pub member: Signed,
    pub viewer: Signed,
}

pub async fn crew(app: &TestApp) -> Crew {
    let owner = app.signup("owner@example.com").await;
    let admin = app.signup("admin@example.com").await;
    let member = app.signup("member@example.com").await;
    let viewer = app.signup("viewer@example.com").await;
    let org = create_org(app, &owner, "Acme").await;
    add_member(app, &org, &admin, Role::Admin).await;
    add_member(app, &org, &member, Role::Member).await;
    add_member(app, &org, &viewer, Role::Viewer).await;
    Crew {
        org,
        owner,
        admin,
        member,
        viewer,
    }
}

// ---- Tests. ----

async fn members_are_listed_and_read(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let c = crew(&app).await;
    let base = members_path(&c.org);

    // Every role may list, in the order they joined.
    for who in [&c.owner, &c.admin, &c.member, &c.viewer] {
        let r = app.get(&base, &who.token).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let list: Value = app.get(&base, &c.viewer.token).await.json().await.unwrap();
    let rows = list["data"].as_array().unwrap();
    let emails: Vec<&str> = rows.iter().map(|m| m["email"].as_str().unwrap()).collect();
    assert_eq!(
        emails,
        [
            "owner@example.com",
            "admin@example.com",
            "member@example.com",
            "viewer@example.com"
        ]
    );
    let roles: Vec<&str> = rows.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["owner", "admin", "member", "viewer"]);
    let first = &rows[0];
    assert_eq!(first["user_id"], c.owner.user_id);
    assert!(first["name"].is_string());
    assert_eq!(first["models"], Value::Null);
    assert!(first["joined_at"].is_string());

    // Pages of two.
    let page: Value = app
        .get(&format!("{base}?limit=2"), &c.owner.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap();
    assert_eq!(cursor, c.admin.user_id);
    let page2: Value = app
        .get(&format!("{base}?limit=2&cursor={cursor}"), &c.owner.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page2["data"][0]["email"], "member@example.com");
    assert_eq!(page2["data"][1]["email"], "viewer@example.com");
    assert!(page2["next_cursor"].is_null());

    // One member.
    let r = app
        .get(&format!("{base}/{}", c.member.user_id), &c.viewer.token)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let one: Value = r.json().await.unwrap();
    assert_eq!(one["role"], "member");

    // Someone who is not a member, another org's member, a bad id: 404.
    let outsider = app.signup("outsider@example.com").await;
    for path in [
        format!("{base}/{}", outsider.user_id),
        format!("{base}/{}", uuid::Uuid::now_v7()),
        format!("{base}/not-a-uuid"),
    ] {
        assert_eq!(
            app.get(&path, &c.owner.token).await.status(),
            StatusCode::NOT_FOUND
        );
    }
    // Outsiders do not see the org's members at all.
    let r = app.get(&base, &outsider.token).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app
        .get(&format!("{base}/{}", c.owner.user_id), &outsider.token)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Nor does a member of this org see members through another org's path.
    let r = app
        .get(
            &format!("{}/{}", members_path(&outsider.org_id), outsider.user_id),
            &c.owner.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn roles_follow_the_owner_rules(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let c = crew(&app).await;
    let base = members_path(&c.org);
    let at = |who: &Signed| format!("{base}/{}", who.user_id);

    // Members and Viewers change nobody, themselves included.
    for who in [&c.member, &c.viewer] {
        for target in [&c.viewer, &c.member] {
            let r = app
                .patch(&at(target), &who.token, json!({"role": "viewer"}))
                .await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN);
            assert_eq!(error_code(r).await, "forbidden");
            let r = app.delete(&at(target), &who.token).await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN);
        }
    }

    // An Admin manages non-Owners…
    let r = app
        .patch(&at(&c.member), &c.admin.token, json!({"role": "viewer"}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["role"], "viewer");
    let r = app
        .patch(&at(&c.member), &c.admin.token, json!({"role": "admin"}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // …but cannot make an Owner, nor touch one.
    let r = app
        .patch(&at(&c.viewer), &c.admin.token, json!({"role": "owner"}))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .patch(&at(&c.owner), &c.admin.token, json!({"role": "admin"}))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .patch(
            &at(&c.owner),
            &c.admin.token,
            json!({"models": ["mock-chat"]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app.delete(&at(&c.owner), &c.admin.token).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let owner: Value = app
        .get(&at(&c.owner), &c.owner.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(owner["role"], "owner", "unchanged");
    assert_eq!(owner["models"], Value::Null, "unchanged");

    // The Owner may make an Owner; that Owner is then out of the Admin's reach too.
    let r = app
        .patch(&at(&c.viewer), &c.owner.token, json!({"role": "owner"}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.delete(&at(&c.viewer), &c.admin.token).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // An Owner may demote another Owner, and remove an Admin.
    let r = app
        .patch(&at(&c.viewer), &c.owner.token, json!({"role": "member"}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.delete(&at(&c.admin), &c.owner.token).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // Validation: unknown role, unknown field, unknown member.
    let r = app
        .patch(&at(&c.member), &c.owner.token, json!({"role": "root"}))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(r).await, "invalid_request");
    let r = app
        .patch(&at(&c.member), &c.owner.token, json!({"rank": "admin"}))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .patch(&at(&c.admin), &c.owner.token, json!({"role": "member"}))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "removed above");

    // Each change is one audit record.
    assert_eq!(
        audited(&app, &c.org).await,
        [
            "org.create",
            "member.update",
            "member.update",
            "member.update",
            "member.update",
            "member.remove"
        ]
    );
}

async fn the_last_owner_stays(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let c = crew(&app).await;
    let base = members_path(&c.org);
    let me = format!("{base}/{}", c.owner.user_id);
    let leave = format!("/api/v1/orgs/{}/leave", c.org);

    let r = app
        .patch(&me, &c.owner.token, json!({"role": "admin"}))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(r).await, "last_owner");
    let r = app.delete(&me, &c.owner.token).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(r).await, "last_owner");
    let r = app.post(&leave, &c.owner.token, json!({})).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(r).await, "last_owner");
    // The personal organization's only Owner cannot leave it either.
    let r = app
        .post(
            &format!("/api/v1/orgs/{}/leave", c.owner.org_id),
            &c.owner.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // With a second Owner, the first may step down, and then the second is the last.
    let r = app
        .patch(
            &format!("{base}/{}", c.admin.user_id),
            &c.owner.token,
            json!({"role": "owner"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .patch(&me, &c.owner.token, json!({"role": "admin"}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.post(&leave, &c.admin.token, json!({})).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    // Setting the last Owner's role to owner again is no demotion.
    let r = app
        .patch(
            &format!("{base}/{}", c.admin.user_id),
            &c.admin.token,
            json!({"role": "owner"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let list: Value = app.get(&base, &c.admin.token).await.json().await.unwrap();
    let owners = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "owner")
        .count();
    assert_eq!(owners, 1);
}

async fn concurrent_demotions_keep_an_owner(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let c = crew(&app).await;
    let base = members_path(&c.org);
    // Two Owners each demote the other at the same moment, many times over.
    for round in 0..8 {
        for who in [&c.owner, &c.admin] {
            app.state
                .services
                .store
                .update_member(
                    org_id(&c.org),
                    user_id(who),
                    &aihub_store::MemberChanges {
                        role: Some(Role::Owner),
                        models: None,
                    },
                    false,
                    now(),
                )
                .await
                .unwrap();
        }
        let (admin_at, owner_at) = (
            format!("{base}/{}", c.admin.user_id),
            format!("{base}/{}", c.owner.user_id),
        );
        let a = app.patch(&admin_at, &c.owner.token, json!({"role": "member"}));
        let b = app.patch(&owner_at, &c.admin.token, json!({"role": "member"}));
        let (a, b) = tokio::join!(a, b);
        let mut statuses = [a.status(), b.status()];
        statuses.sort();
        // Either one demotion wins and the other finds the last Owner (409), or the second
        // finds its caller already demoted (403).
        assert_eq!(statuses[0], StatusCode::OK, "round {round}");
        assert!(
            statuses[1] == StatusCode::CONFLICT || statuses[1] == StatusCode::FORBIDDEN,
            "round {round}: {statuses:?}"
        );
        let list: Value = app.get(&base, &c.member.token).await.json().await.unwrap();
        let owners = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "owner")
            .count();
        assert_eq!(owners, 1, "round {round}");
    }
}

async fn removal_takes_access_away_at_once(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let c = crew(&app).await;
    let (_, key) = key_in(&app, &c.member, &c.org, json!({"name": "m"})).await;
    assert_eq!(chat_status(&app, &key).await, StatusCode::OK, "cache warm");
    let team: Value = app
        .post(
            &format!("/api/v1/orgs/{}/teams", c.org),
            &c.owner.token,
            json!({"name": "core"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let team_members = format!(
        "/api/v1/orgs/{}/teams/{}/members",
        c.org,
        team["id"].as_str().unwrap()
    );
    let r = app
        .post(
            &team_members,
            &c.owner.token,
            json!({"user_id": c.member.user_id}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let org_path = format!("/api/v1/orgs/{}", c.org);
    assert_eq!(
        app.get(&org_path, &c.member.token).await.status(),
        StatusCode::OK
    );

    let r = app
        .delete(
            &format!("{}/{}", members_path(&c.org), c.member.user_id),
            &c.admin.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // The key is refused on the very next request, the session no longer reaches the org, and
    // the team lost them.
    let r = app.v1("/v1/chat/completions", &key, chat()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(
        app.get(&org_path, &c.member.token).await.status(),
        StatusCode::NOT_FOUND
    );
    let list: Value = app
        .get(&team_members, &c.owner.token)
        .await
        .json()
        .await
        .unwrap();
    assert!(list["data"].as_array().unwrap().is_empty());
    let orgs: Value = app
        .get("/api/v1/orgs", &c.member.token)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        orgs["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["id"] != c.org.as_str())
    );
    // Removing again: not a member.
    let r = app
        .delete(
            &format!("{}/{}", members_path(&c.org), c.member.user_id),
            &c.admin.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn leaving_takes_access_away_at_once(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let c = crew(&app).await;
    let (_, key) = key_in(&app, &c.admin, &c.org, json!({"name": "a"})).await;
    assert_eq!(chat_status(&app, &key).await, StatusCode::OK);
    let leave = format!("/api/v1/orgs/{}/leave", c.org);
    for who in [&c.viewer, &c.admin] {
        let r = app.post(&leave, &who.token, json!({})).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(chat_status(&app, &key).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get(&format!("/api/v1/orgs/{}", c.org), &c.admin.token)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    // Leaving twice: no longer a member.
    let r = app.post(&leave, &c.viewer.token, json!({})).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let list: Value = app
        .get(&members_path(&c.org), &c.owner.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        audited(&app, &c.org).await,
        ["org.create", "member.leave", "member.leave"]
    );
}

async fn member_models_narrow_their_keys(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let c = crew(&app).await;
    let (open_id, open) = key_in(&app, &c.member, &c.org, json!({"name": "open"})).await;
    let (wide_id, _) = key_in(
        &app,
        &c.member,
        &c.org,
        json!({"name": "wide", "models": ["mock-embedding", "mock-chat", "other"]}),
    )
    .await;
    let (other_id, _) = key_in(
        &app,
        &c.member,
        &c.org,
        json!({"name": "other", "models": ["other"]}),
    )
    .await;
    // Someone else's key in the org is not touched.
    let (admin_key_id, _) = key_in(&app, &c.admin, &c.org, json!({"name": "admin"})).await;
    let embed = json!({"model": "mock-embedding", "input": "hi"});
    assert_eq!(
        app.v1("/v1/embeddings", &open, embed.clone())
            .await
            .status(),
        StatusCode::OK,
        "cache warm"
    );

    let at = format!("{}/{}", members_path(&c.org), c.member.user_id);
    // Validation first.
    for bad in [json!([]), json!(["has space"]), json!([""])] {
        let r = app.patch(&at, &c.admin.token, json!({"models": bad})).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error_code(r).await, "invalid_models");
    }
    let r = app
        .patch(
            &at,
            &c.admin.token,
            json!({"models": ["mock-chat", "mock-chat"]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["models"], json!(["mock-chat"]));
    assert_eq!(m["role"], "member", "role left alone");

    let key = |id: String| {
        let app = &app;
        let org = c.org.clone();
        let token = c.owner.token.clone();
        async move {
            app.get(&format!("/api/v1/orgs/{org}/keys/{id}"), &token)
                .await
                .json::<Value>()
                .await
                .unwrap()["models"]
                .clone()
        }
    };
    assert_eq!(key(open_id.clone()).await, json!(["mock-chat"]));
    assert_eq!(key(wide_id.clone()).await, json!(["mock-chat"]));
    assert_eq!(key(other_id.clone()).await, json!([]));
    assert_eq!(key(admin_key_id).await, Value::Null);
    // At once, despite the warm cache.
    let r = app.v1("/v1/embeddings", &open, embed).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_allowed");
    assert_eq!(chat_status(&app, &open).await, StatusCode::OK);

    // Clearing the list allows every model again; keys keep what they have.
    let r = app
        .patch(&at, &c.admin.token, json!({"models": null}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["models"], Value::Null);
    assert_eq!(key(open_id).await, json!(["mock-chat"]));
    // A role change alone leaves the list alone.
    let r = app
        .patch(&at, &c.admin.token, json!({"models": ["mock-chat"]}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .patch(&at, &c.admin.token, json!({"role": "viewer"}))
        .await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["models"],
        json!(["mock-chat"])
    );
}
