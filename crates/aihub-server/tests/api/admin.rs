//! Platform administration: disabling a user ends their sessions and stops their keys at once.

use aihub_store::BackendKind;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, api_tests, error_code, spawn_app};

api_tests!(
    disabled_users_lose_sessions_and_keys_at_once,
    admin_routes_need_a_platform_admin,
    platform_admins_see_and_manage_every_org
);

/// The operator lists every organization (not only their own) and acts in any of them as an
/// Owner would; nobody else lists them.
async fn platform_admins_see_and_manage_every_org(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let root = app.platform_admin().await;
    let a = app.signup("a@example.com").await;
    let b = app.signup("b@example.com").await;
    let r = app
        .post("/api/v1/orgs", &b.token, json!({"name": "B's team org"}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let team_org = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let r = app.get("/api/v1/admin/orgs", &a.token).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Pages of two, newest first, until every organization was seen once.
    let mut seen = Vec::new();
    let mut path = "/api/v1/admin/orgs?limit=2".to_owned();
    loop {
        let page: Value = app.get(&path, &root).await.json().await.unwrap();
        for o in page["data"].as_array().unwrap() {
            assert!(
                o.get("role").is_none(),
                "no role of the operator's own: {o}"
            );
            seen.push(o["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/admin/orgs?limit=2&cursor={c}"),
            None => break,
        }
    }
    for org in [&a.org_id, &b.org_id, &team_org] {
        assert_eq!(seen.iter().filter(|s| *s == org).count(), 1, "{org} once");
    }
    let mut sorted = seen.clone();
    sorted.sort_by(|x, y| y.cmp(x));
    assert_eq!(seen, sorted, "newest first");

    // And manages one of them: renames it, which B sees.
    let r = app
        .patch(
            &format!("/api/v1/orgs/{team_org}"),
            &root,
            json!({"name": "Renamed by the operator"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let org: Value = app
        .get(&format!("/api/v1/orgs/{team_org}"), &b.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(org["name"], "Renamed by the operator");

    // A deleted organization is no longer listed.
    let r = app
        .req(
            reqwest::Method::DELETE,
            &format!("/api/v1/orgs/{team_org}"),
            Some(&root),
        )
        .json(&json!({"confirm": "Renamed by the operator"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let page: Value = app
        .get("/api/v1/admin/orgs?limit=100", &root)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["id"] != team_org.as_str())
    );
}

async fn disabled_users_lose_sessions_and_keys_at_once(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let root = app.platform_admin().await;
    let u = app.signup("user@example.com").await;
    let second_session = app.token("user@example.com", PASSWORD).await;
    let (_, key) = app.create_key(&u, json!({"name": "k"})).await;
    assert_eq!(
        app.models_status(&key).await,
        StatusCode::OK,
        "key is cached now"
    );

    let r = app
        .post(
            &format!("/api/v1/admin/users/{}/disable", u.user_id),
            &root,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["disabled"], true);

    assert_eq!(
        app.get("/api/v1/me", &u.token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/api/v1/me", &second_session).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .req(Method::GET, "/v1/models", Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "cached key must stop at once"
    );
    let r = app.login("user@example.com", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(r).await, "account_disabled");
    // A wrong password still gets the generic answer (no account-state oracle).
    let r = app.login("user@example.com", "wrong password").await;
    assert_eq!(error_code(r).await, "invalid_credentials");

    let listed: Value = app
        .get("/api/v1/admin/users", &root)
        .await
        .json()
        .await
        .unwrap();
    let entry = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == u.user_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["disabled"], true);

    // Re-enabling restores keys, not sessions.
    let r = app
        .post(
            &format!("/api/v1/admin/users/{}/enable", u.user_id),
            &root,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.models_status(&key).await, StatusCode::OK);
    assert_eq!(
        app.get("/api/v1/me", &u.token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("user@example.com", PASSWORD).await.status(),
        StatusCode::OK
    );
}

async fn admin_routes_need_a_platform_admin(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let root = app.platform_admin().await;
    let u = app.signup("plain@example.com").await;
    let v = app.signup("victim@example.com").await;
    let r = app.get("/api/v1/admin/users", &u.token).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(r).await, "forbidden");
    let r = app
        .post(
            &format!("/api/v1/admin/users/{}/disable", v.user_id),
            &u.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/api/v1/me", &v.token).await.status(),
        StatusCode::OK,
        "nothing changed"
    );

    // Admins cannot lock themselves out; unknown users are 404.
    let me: Value = app.get("/api/v1/me", &root).await.json().await.unwrap();
    assert_eq!(me["is_platform_admin"], true);
    let r = app
        .post(
            &format!("/api/v1/admin/users/{}/disable", me["id"].as_str().unwrap()),
            &root,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(r).await, "cannot_disable_self");
    let r = app
        .post(
            &format!("/api/v1/admin/users/{}/disable", uuid::Uuid::now_v7()),
            &root,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Pagination over users.
    let p1: Value = app
        .get("/api/v1/admin/users?limit=2", &root)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p1["data"].as_array().unwrap().len(), 2);
    let cursor = p1["next_cursor"].as_str().unwrap();
    let p2: Value = app
        .get(
            &format!("/api/v1/admin/users?limit=2&cursor={cursor}"),
            &root,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p2["data"].as_array().unwrap().len(), 1);
    assert!(p2["data"][0].get("password_hash").is_none());

    // A platform admin may act in any organization.
    let r = app
        .get(&format!("/api/v1/orgs/{}/keys", u.org_id), &root)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let org: Value = app
        .get(&format!("/api/v1/orgs/{}", u.org_id), &root)
        .await
        .json()
        .await
        .unwrap();
    assert!(org.get("role").is_none(), "not a member: no role");
}
