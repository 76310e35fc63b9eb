//! Organizations: creating (several per user), renaming, deleting with confirmation (keys stop at
//! once, personal organizations stay), and transferring ownership.

use aihub_core::Role;
use aihub_store::BackendKind;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{api_tests, error_code, spawn_app};
use crate::members::{add_member, audited, chat_status, create_org, crew, key_in};

api_tests!(
    organizations_are_created_and_renamed,
    deleting_an_organization_stops_its_keys_at_once,
    ownership_is_transferred_in_one_step,
);

async fn organizations_are_created_and_renamed(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let ann = app.signup("ann@example.com").await;

    let r = app
        .post("/api/v1/orgs", &ann.token, json!({"name": "  Acme  "}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let acme: Value = r.json().await.unwrap();
    assert_eq!(acme["name"], "Acme");
    assert_eq!(acme["role"], "owner");
    assert_eq!(acme["is_personal"], false);
    let acme_id = acme["id"].as_str().unwrap().to_owned();
    // A user may own several.
    let second = create_org(&app, &ann, "Second").await;
    let list: Value = app
        .get("/api/v1/orgs", &ann.token)
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "personal, Acme, Second: {names:?}");
    assert!(names.contains(&"Acme") && names.contains(&"Second"));
    let members: Value = app
        .get(&format!("/api/v1/orgs/{acme_id}/members"), &ann.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(members["data"][0]["user_id"], ann.user_id);
    assert_eq!(members["data"][0]["role"], "owner");

    // Validation.
    for (body, code) in [
        (json!({"name": ""}), "invalid_name"),
        (json!({"name": "   "}), "invalid_name"),
        (json!({"name": "x".repeat(101)}), "invalid_name"),
        (json!({"name": "a\u{7}b"}), "invalid_name"),
        (json!({}), "invalid_request"),
        (json!({"name": "ok", "plan": "pro"}), "invalid_request"),
    ] {
        let r = app.post("/api/v1/orgs", &ann.token, body.clone()).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(error_code(r).await, code, "{body}");
    }

    // Rename: Owner and Admin yes, Member and Viewer no, outsiders see nothing.
    let path = format!("/api/v1/orgs/{acme_id}");
    let admin = app.signup("admin@example.com").await;
    let member = app.signup("member@example.com").await;
    let viewer = app.signup("viewer@example.com").await;
    add_member(&app, &acme_id, &admin, Role::Admin).await;
    add_member(&app, &acme_id, &member, Role::Member).await;
    add_member(&app, &acme_id, &viewer, Role::Viewer).await;
    let r = app
        .patch(&path, &ann.token, json!({"name": "Acme Inc"}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let renamed: Value = r.json().await.unwrap();
    assert_eq!(renamed["name"], "Acme Inc");
    assert_eq!(renamed["role"], "owner");
    let r = app
        .patch(&path, &admin.token, json!({"name": "Acme Ltd"}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    for who in [&member, &viewer] {
        let r = app.patch(&path, &who.token, json!({"name": "Mine"})).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(error_code(r).await, "forbidden");
    }
    let r = app.patch(&path, &ann.token, json!({"name": ""})).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let outsider = app.signup("outsider@example.com").await;
    let r = app
        .patch(&path, &outsider.token, json!({"name": "Taken"}))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app
        .patch(
            &format!("/api/v1/orgs/{}", outsider.org_id),
            &ann.token,
            json!({"name": "Taken"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let got: Value = app.get(&path, &viewer.token).await.json().await.unwrap();
    assert_eq!(got["name"], "Acme Ltd");
    assert_eq!(got["role"], "viewer");

    assert_eq!(
        audited(&app, &acme_id).await,
        ["org.create", "org.update", "org.update"]
    );
    assert_eq!(audited(&app, &second).await, ["org.create"]);
}

async fn deleting_an_organization_stops_its_keys_at_once(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let c = crew(&app).await;
    let path = format!("/api/v1/orgs/{}", c.org);
    let (_, owner_key) = key_in(&app, &c.owner, &c.org, json!({"name": "o"})).await;
    let (_, member_key) = key_in(&app, &c.member, &c.org, json!({"name": "m"})).await;
    let (_, personal_key) = app.create_key(&c.owner, json!({"name": "p"})).await;
    for k in [&owner_key, &member_key, &personal_key] {
        assert_eq!(chat_status(&app, k).await, StatusCode::OK, "cache warm");
    }
    let delete = |token: String, body: Value| {
        let app = &app;
        let path = path.clone();
        async move {
            app.req(Method::DELETE, &path, Some(&token))
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };

    // Only the Owner; Admins, Members and Viewers are refused, outsiders see nothing.
    for who in [&c.admin, &c.member, &c.viewer] {
        let r = delete(who.token.clone(), json!({"confirm": "Acme"})).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    let outsider = app.signup("outsider@example.com").await;
    let r = delete(outsider.token.clone(), json!({"confirm": "Acme"})).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The confirmation must be the exact name.
    for wrong in ["acme", "Acme ", ""] {
        let r = delete(c.owner.token.clone(), json!({"confirm": wrong})).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error_code(r).await, "confirmation_mismatch");
    }
    let r = delete(c.owner.token.clone(), json!({})).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(r).await, "invalid_request");
    assert_eq!(chat_status(&app, &owner_key).await, StatusCode::OK);

    let r = delete(c.owner.token.clone(), json!({"confirm": "Acme"})).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Every key of the organization is refused on the very next request.
    for k in [&owner_key, &member_key] {
        let r = app
            .v1("/v1/chat/completions", k, crate::members::chat())
            .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_api_key");
    }
    assert_eq!(chat_status(&app, &personal_key).await, StatusCode::OK);
    // The organization is gone for everyone.
    for who in [&c.owner, &c.member] {
        assert_eq!(
            app.get(&path, &who.token).await.status(),
            StatusCode::NOT_FOUND
        );
        let list: Value = app
            .get("/api/v1/orgs", &who.token)
            .await
            .json()
            .await
            .unwrap();
        assert!(
            list["data"]
                .as_array()
                .unwrap()
                .iter()
                .all(|o| o["id"] != c.org.as_str())
        );
    }
    let r = delete(c.owner.token.clone(), json!({"confirm": "Acme"})).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "deleted once");

    // A personal organization cannot be deleted.
    let r = app
        .req(
            Method::DELETE,
            &format!("/api/v1/orgs/{}", c.owner.org_id),
            Some(&c.owner.token),
        )
        .json(&json!({"confirm": "owner@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "personal_org");
    assert_eq!(
        app.get(&format!("/api/v1/orgs/{}", c.owner.org_id), &c.owner.token)
            .await
            .status(),
        StatusCode::OK
    );

    assert_eq!(audited(&app, &c.org).await, ["org.create", "org.delete"]);
}

async fn ownership_is_transferred_in_one_step(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let c = crew(&app).await;
    let transfer = format!("/api/v1/orgs/{}/transfer", c.org);
    let member_path = |id: &str| format!("/api/v1/orgs/{}/members/{id}", c.org);

    // Only an Owner.
    for who in [&c.admin, &c.member, &c.viewer] {
        let r = app
            .post(&transfer, &who.token, json!({"user_id": who.user_id}))
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    // The target must be another member.
    let outsider = app.signup("outsider@example.com").await;
    let r = app
        .post(
            &transfer,
            &c.owner.token,
            json!({"user_id": outsider.user_id}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(r).await, "not_a_member");
    let r = app
        .post(
            &transfer,
            &c.owner.token,
            json!({"user_id": c.owner.user_id}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(r).await, "invalid_transfer");
    let r = app
        .post(&transfer, &c.owner.token, json!({"user_id": "nope"}))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(r).await, "invalid_request");
    let r = app
        .post(
            &transfer,
            &outsider.token,
            json!({"user_id": c.owner.user_id}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let r = app
        .post(
            &transfer,
            &c.owner.token,
            json!({"user_id": c.viewer.user_id}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let new_owner: Value = r.json().await.unwrap();
    assert_eq!(new_owner["user_id"], c.viewer.user_id);
    assert_eq!(new_owner["role"], "owner");
    let old: Value = app
        .get(&member_path(&c.owner.user_id), &c.viewer.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(old["role"], "admin");
    // The former Owner is an Admin now: no second transfer, no deletion.
    let r = app
        .post(
            &transfer,
            &c.owner.token,
            json!({"user_id": c.member.user_id}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The new Owner is the last one.
    let r = app
        .post(
            &format!("/api/v1/orgs/{}/leave", c.org),
            &c.viewer.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(audited(&app, &c.org).await, ["org.create", "org.transfer"]);
}
