//! Rate limits and plans: CRUD, validation, roles, tenant isolation, platform-admin-only plan
//! edits, quotas, and the policy invalidations the gateway relies on.

use std::sync::{Arc, Mutex};

use aihub_core::{OrgId, Role, UserId};
use aihub_service::events::Invalidation;
use aihub_store::BackendKind;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Signed, TestApp, api_tests, error_code, spawn_app_with};

api_tests!(
    limit_lifecycle,
    limit_input_is_validated,
    limits_follow_roles_and_tenants,
    plans_are_edited_by_platform_admins_only,
);

/// The app with orgs given no plan on the shipped `free` plan (the default configuration).
pub async fn spawn(kind: BackendKind) -> TestApp {
    spawn_app_with(kind, |c| c.limits.default_plan = Some("free".into())).await
}

/// Makes `who` a member of `org` with `role`.
pub async fn join(app: &TestApp, org: &str, who: &Signed, role: Role) {
    app.state
        .services
        .store
        .add_member(
            org.parse::<OrgId>().unwrap(),
            who.user_id.parse::<UserId>().unwrap(),
            role,
            aihub_core::time::now(),
        )
        .await
        .unwrap();
}

/// Every `Invalidation::Policy` published from now on.
pub fn policy_events(app: &TestApp) -> Arc<Mutex<Vec<OrgId>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    app.state.services.events.subscribe(move |e| {
        if let Invalidation::Policy(org) = e {
            s.lock().unwrap().push(*org);
        }
    });
    seen
}

async fn limit_lifecycle(kind: BackendKind) {
    let app = spawn(kind).await;
    let who = app.signup("owner@example.com").await;
    let (key_id, _) = app.create_key(&who, json!({"name": "ci"})).await;
    let base = format!("/api/v1/orgs/{}/limits", who.org_id);
    let events = policy_events(&app);

    let r = app
        .post(
            &base,
            &who.token,
            json!({"scope_type": "key", "scope_id": key_id, "rpm": 60, "concurrency": 2}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["scope_type"], "key");
    assert_eq!(created["scope_id"], key_id.as_str());
    assert_eq!(created["org_id"], who.org_id.as_str());
    assert_eq!(created["model"], Value::Null);
    assert_eq!(
        (created["rpm"].clone(), created["tpm"].clone()),
        (json!(60), Value::Null)
    );
    let org: OrgId = who.org_id.parse().unwrap();
    assert_eq!(*events.lock().unwrap(), vec![org]);

    // An org-wide limit for one model; the scope id defaults to the org.
    let r = app
        .post(
            &base,
            &who.token,
            json!({"scope_type": "org", "model": "mock-chat", "tpm": 1000}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let org_rule: Value = r.json().await.unwrap();
    assert_eq!(org_rule["scope_id"], who.org_id.as_str());

    let list: Value = app.get(&base, &who.token).await.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert_eq!(list["data"][0]["id"], id.as_str());

    // Edit: clear rpm, set tpm; at least one limit must remain.
    let r = app
        .patch(
            &format!("{base}/{id}"),
            &who.token,
            json!({"rpm": null, "tpm": 5000}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let edited: Value = r.json().await.unwrap();
    assert_eq!(
        (edited["rpm"].clone(), edited["tpm"].clone()),
        (Value::Null, json!(5000))
    );
    assert_eq!(edited["concurrency"], 2);
    let r = app
        .patch(
            &format!("{base}/{id}"),
            &who.token,
            json!({"tpm": null, "concurrency": null}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(r).await, "invalid_limit");

    // The gateway's read sees both rules.
    let policy = app.state.services.governance.org_policy(org).await.unwrap();
    assert_eq!(policy.limits.len(), 2);
    assert_eq!(policy.plan.unwrap().name, "free");

    let r = app.delete(&format!("{base}/{id}"), &who.token).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app.get(&format!("{base}/{id}"), &who.token).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app.delete(&format!("{base}/{id}"), &who.token).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        events.lock().unwrap().len(),
        4,
        "create, create, edit, delete"
    );
}

async fn limit_input_is_validated(kind: BackendKind) {
    let app = spawn(kind).await;
    let who = app.signup("owner@example.com").await;
    let other = app.signup("other@example.com").await;
    let (key_id, _) = app.create_key(&who, json!({"name": "ci"})).await;
    let (foreign_key, _) = app.create_key(&other, json!({"name": "theirs"})).await;
    let base = format!("/api/v1/orgs/{}/limits", who.org_id);
    let cases = [
        (
            json!({"scope_type": "key", "scope_id": key_id}),
            "invalid_limit",
        ),
        (
            json!({"scope_type": "key", "scope_id": key_id, "rpm": 0}),
            "invalid_limit",
        ),
        (
            json!({"scope_type": "key", "scope_id": key_id, "tpm": -5}),
            "invalid_limit",
        ),
        (json!({"scope_type": "project", "rpm": 1}), "invalid_scope"),
        (json!({"scope_type": "key", "rpm": 1}), "invalid_scope"),
        (
            json!({"scope_type": "key", "scope_id": foreign_key, "rpm": 1}),
            "invalid_scope",
        ),
        (
            json!({"scope_type": "user", "scope_id": other.user_id, "rpm": 1}),
            "invalid_scope",
        ),
        (
            json!({"scope_type": "team", "scope_id": key_id, "rpm": 1}),
            "invalid_scope",
        ),
        (
            json!({"scope_type": "org", "scope_id": other.org_id, "rpm": 1}),
            "invalid_scope",
        ),
        (
            json!({"scope_type": "key", "scope_id": key_id, "rpm": 1, "model": " "}),
            "invalid_model",
        ),
        // Mass assignment: fields the API does not take are refused, not ignored.
        (
            json!({"scope_type": "org", "rpm": 1, "org_id": other.org_id}),
            "invalid_request",
        ),
        (
            json!({"scope_type": "org", "rpm": 1, "id": key_id}),
            "invalid_request",
        ),
        (
            json!({"scope_type": "org", "rpm": "many"}),
            "invalid_request",
        ),
    ];
    for (body, code) in cases {
        let r = app.post(&base, &who.token, body.clone()).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(error_code(r).await, code, "{body}");
    }
    let r = app
        .req(reqwest::Method::POST, &base, Some(&who.token))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // One all-models rule and one per model on a scope.
    let ok = json!({"scope_type": "user", "scope_id": who.user_id, "rpm": 10});
    assert_eq!(
        app.post(&base, &who.token, ok.clone()).await.status(),
        StatusCode::CREATED
    );
    let r = app.post(&base, &who.token, ok).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(r).await, "limit_exists");
    let per_model =
        json!({"scope_type": "user", "scope_id": who.user_id, "model": "mock-chat", "rpm": 5});
    assert_eq!(
        app.post(&base, &who.token, per_model).await.status(),
        StatusCode::CREATED
    );
    // The scope cannot be changed by an edit.
    let list: Value = app.get(&base, &who.token).await.json().await.unwrap();
    let id = list["data"][0]["id"].as_str().unwrap();
    let r = app
        .patch(
            &format!("{base}/{id}"),
            &who.token,
            json!({"scope_type": "org"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .patch(
            &format!("{base}/{id}"),
            &who.token,
            json!({"model": "mock-chat"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
}

async fn limits_follow_roles_and_tenants(kind: BackendKind) {
    let app = spawn(kind).await;
    let owner = app.signup("owner@example.com").await;
    let member = app.signup("member@example.com").await;
    let viewer = app.signup("viewer@example.com").await;
    let stranger = app.signup("stranger@example.com").await;
    join(&app, &owner.org_id, &member, Role::Member).await;
    join(&app, &owner.org_id, &viewer, Role::Viewer).await;
    let base = format!("/api/v1/orgs/{}/limits", owner.org_id);
    let (owner_key, _) = app.create_key(&owner, json!({"name": "owner's"})).await;
    // The member's key in the shared org.
    let r = app
        .post(
            &format!("/api/v1/orgs/{}/keys", owner.org_id),
            &member.token,
            json!({"name": "member's"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let member_key = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let on = |key: &str| json!({"scope_type": "key", "scope_id": key, "rpm": 5});
    // A member manages limits on their own keys only.
    let r = app.post(&base, &member.token, on(&member_key)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let own_rule = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for body in [on(&owner_key), json!({"scope_type": "org", "rpm": 5})] {
        let r = app.post(&base, &member.token, body).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(error_code(r).await, "forbidden");
    }
    let r = app.post(&base, &owner.token, on(&owner_key)).await;
    let owner_rule = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .patch(
            &format!("{base}/{owner_rule}"),
            &member.token,
            json!({"rpm": 500}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .delete(&format!("{base}/{owner_rule}"), &member.token)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .patch(
            &format!("{base}/{own_rule}"),
            &member.token,
            json!({"rpm": 6}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    // A viewer reads, and changes nothing.
    let r = app.get(&base, &viewer.token).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap()["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let r = app.post(&base, &viewer.token, on(&member_key)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .delete(&format!("{base}/{own_rule}"), &viewer.token)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Another tenant sees nothing: the org and its limits are not found.
    for r in [
        app.get(&base, &stranger.token).await,
        app.get(&format!("{base}/{own_rule}"), &stranger.token)
            .await,
        app.post(
            &base,
            &stranger.token,
            json!({"scope_type": "org", "rpm": 1}),
        )
        .await,
        app.delete(&format!("{base}/{own_rule}"), &stranger.token)
            .await,
    ] {
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    // A limit id of one org under another org's path is not found either.
    let theirs = format!("/api/v1/orgs/{}/limits/{own_rule}", stranger.org_id);
    assert_eq!(
        app.get(&theirs, &stranger.token).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.patch(&theirs, &stranger.token, json!({"rpm": 1}))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

async fn plans_are_edited_by_platform_admins_only(kind: BackendKind) {
    let app = spawn(kind).await;
    let who = app.signup("owner@example.com").await;
    let root = app.platform_admin().await;
    let events = policy_events(&app);

    let plans: Value = app
        .get("/api/v1/plans", &who.token)
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = plans["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["enterprise", "free", "pro"]);
    let pro = plans["data"][2].clone();
    assert_eq!(pro["monthly_spend"], "500");
    assert_eq!(pro["monthly_spend_micros"], 500_000_000);
    assert_eq!(
        app.req(reqwest::Method::GET, "/api/v1/plans", None)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );

    // Quota on the default plan.
    let quota_path = format!("/api/v1/orgs/{}/quota", who.org_id);
    let q: Value = app.get(&quota_path, &who.token).await.json().await.unwrap();
    assert_eq!(q["plan"]["name"], "free");
    assert_eq!(q["tokens_limit"], 1_000_000);
    assert_eq!(q["tokens_used"], 0);
    assert_eq!(q["spend_limit"], Value::Null);

    // Only platform admins create, edit and assign plans.
    let new_plan = json!({"name": "team", "rpm": 100, "monthly_spend": "50.25", "currency": "EUR"});
    let r = app
        .post("/api/v1/admin/plans", &who.token, new_plan.clone())
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .post("/api/v1/admin/plans", &root, new_plan.clone())
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let team: Value = r.json().await.unwrap();
    assert_eq!(team["monthly_spend_micros"], 50_250_000);
    assert_eq!(team["currency"], "EUR");
    let r = app.post("/api/v1/admin/plans", &root, new_plan).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(r).await, "plan_exists");
    for bad in [
        json!({"name": "Bad Name"}),
        json!({"name": "x", "rpm": 0}),
        json!({"name": "x", "currency": "XXY"}),
        json!({"name": "x", "monthly_spend": "1.5", "monthly_spend_micros": 1}),
    ] {
        let r = app.post("/api/v1/admin/plans", &root, bad.clone()).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }

    let team_path = format!("/api/v1/admin/plans/{}", team["id"].as_str().unwrap());
    let r = app.patch(&team_path, &who.token, json!({"rpm": 1})).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .patch(&team_path, &root, json!({"rpm": null, "tpm": 9000}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let edited: Value = r.json().await.unwrap();
    assert_eq!(
        (edited["rpm"].clone(), edited["tpm"].clone()),
        (Value::Null, json!(9000))
    );
    let free_id = plans["data"][1]["id"].as_str().unwrap();
    let r = app
        .patch(
            &format!("/api/v1/admin/plans/{free_id}"),
            &root,
            json!({"name": "gratis"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .patch(
            &format!("/api/v1/admin/plans/{}", uuid::Uuid::now_v7()),
            &root,
            json!({"rpm": 1}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Editing the free plan invalidates the policy of every org on it.
    let org: OrgId = who.org_id.parse().unwrap();
    events.lock().unwrap().clear();
    let r = app
        .patch(
            &format!("/api/v1/admin/plans/{free_id}"),
            &root,
            json!({"rpm": 30}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(events.lock().unwrap().contains(&org));

    // Assigning: by name or id; platform admins only; unknown plan 422, unknown org 404.
    let assign = format!("/api/v1/admin/orgs/{}/plan", who.org_id);
    let put = |path: String, token: String, body: Value| {
        let app = &app;
        async move {
            app.req(reqwest::Method::PUT, &path, Some(&token))
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let r = put(
        assign.clone(),
        who.token.clone(),
        json!({"plan": "enterprise"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    events.lock().unwrap().clear();
    let r = put(assign.clone(), root.clone(), json!({"plan": "pro"})).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["plan"]["name"], "pro");
    assert_eq!(*events.lock().unwrap(), vec![org]);
    let q: Value = app.get(&quota_path, &who.token).await.json().await.unwrap();
    assert_eq!(q["plan"]["name"], "pro");
    assert_eq!(q["spend_limit"], "500");
    assert_eq!(q["spend_used"], "0");
    assert_eq!(q["tokens_limit"], Value::Null);
    let r = put(assign.clone(), root.clone(), json!({"plan_id": team["id"]})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = put(assign.clone(), root.clone(), json!({"plan": "nope"})).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(r).await, "unknown_plan");
    let r = put(assign.clone(), root.clone(), json!({})).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = put(
        format!("/api/v1/admin/orgs/{}/plan", OrgId::new()),
        root.clone(),
        json!({"plan": "pro"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let policy = app.state.services.governance.org_policy(org).await.unwrap();
    assert_eq!(policy.plan.unwrap().name, "team");
}
