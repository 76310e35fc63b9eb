//! API keys: the secret shown once, listing, editing, rotation, revocation, expiry, and the
//! gateway refusing what it must refuse.

use std::time::Duration;

use aihub_store::BackendKind;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{api_tests, captured_logs, error_code, spawn_app};
use crate::limits::join;

api_tests!(
    key_lifecycle,
    secrets_appear_only_at_creation,
    key_input_is_validated,
    expired_keys_are_refused,
    keys_paginate,
    last_used_is_recorded_off_the_hot_path,
    gateway_errors_speak_openai,
    team_keys_need_the_team,
    keys_get_no_more_models_than_their_creator,
);

async fn key_lifecycle(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let who = app.signup("owner@example.com").await;
    let base = format!("/api/v1/orgs/{}/keys", who.org_id);

    let r = app
        .post(
            &base,
            &who.token,
            json!({"name": "ci", "models": ["gpt-4o-mini", "deepseek-chat"]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["key"].as_str().unwrap().to_owned();
    assert!(
        secret.starts_with("sk-aihub-") && secret.len() >= 9 + 22,
        "≥128 bits: {secret}"
    );
    assert!(secret.starts_with(created["prefix"].as_str().unwrap()));
    assert_eq!(created["models"], json!(["gpt-4o-mini", "deepseek-chat"]));
    assert_eq!(created["revoked"], false);
    assert_eq!(created["org_id"].as_str().unwrap(), who.org_id);
    assert_eq!(created["owner_user_id"].as_str().unwrap(), who.user_id);
    assert_eq!(app.models_status(&secret).await, StatusCode::OK);

    // Read one.
    let one: Value = app
        .get(&format!("{base}/{id}"), &who.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["name"], "ci");
    assert!(one.get("key").is_none());

    // Edit: rename, set expiry, widen models; then clear them.
    let expiry = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let r = app
        .patch(
            &format!("{base}/{id}"),
            &who.token,
            json!({"name": "ci-2", "expires_at": expiry, "models": null}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let edited: Value = r.json().await.unwrap();
    assert_eq!(edited["name"], "ci-2");
    assert!(edited["expires_at"].is_string());
    assert_eq!(edited["models"], Value::Null);
    let r = app
        .patch(
            &format!("{base}/{id}"),
            &who.token,
            json!({"expires_at": null}),
        )
        .await;
    let edited: Value = r.json().await.unwrap();
    assert_eq!(edited["expires_at"], Value::Null);
    assert_eq!(edited["name"], "ci-2", "absent fields stay");
    assert_eq!(app.models_status(&secret).await, StatusCode::OK);

    // Rotate: new secret works, old one is refused at once.
    let r = app
        .post(&format!("{base}/{id}/rotate"), &who.token, json!({}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let rotated: Value = r.json().await.unwrap();
    let new_secret = rotated["key"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    assert_eq!(rotated["id"].as_str().unwrap(), id, "same key, new secret");
    assert_eq!(app.models_status(&secret).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.models_status(&new_secret).await, StatusCode::OK);

    // Revoke: refused at once, still listed as revoked; idempotent.
    let r = app.delete(&format!("{base}/{id}"), &who.token).await;
    assert_eq!(r.status(), StatusCode::OK);
    let revoked: Value = r.json().await.unwrap();
    assert_eq!(revoked["revoked"], true);
    let r = app
        .req(Method::GET, "/v1/models", Some(&new_secret))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(body["error"]["message"], "This API key has been revoked.");
    let again = app.delete(&format!("{base}/{id}"), &who.token).await;
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(
        again["revoked_at"], revoked["revoked_at"],
        "first revocation time kept"
    );
    let list: Value = app.get(&base, &who.token).await.json().await.unwrap();
    assert_eq!(list["data"][0]["revoked"], true);

    // A revoked key cannot be edited or rotated.
    let r = app
        .patch(
            &format!("{base}/{id}"),
            &who.token,
            json!({"name": "zombie"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(r).await, "key_revoked");
    let r = app
        .post(&format!("{base}/{id}/rotate"), &who.token, json!({}))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // Unknown ids: 404.
    let missing = uuid::Uuid::now_v7();
    assert_eq!(
        app.get(&format!("{base}/{missing}"), &who.token)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("{base}/not-a-uuid"), &who.token)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

async fn secrets_appear_only_at_creation(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let who = app.signup("secret@example.com").await;
    let base = format!("/api/v1/orgs/{}/keys", who.org_id);
    let (id, secret) = app.create_key(&who, json!({"name": "one"})).await;
    let (_, _) = app.create_key(&who, json!({"name": "two"})).await;
    app.models_status(&secret).await;
    let random_part = &secret["sk-aihub-".len()..];
    let bodies = [
        app.get(&base, &who.token).await.text().await.unwrap(),
        app.get(&format!("{base}/{id}"), &who.token)
            .await
            .text()
            .await
            .unwrap(),
        app.patch(
            &format!("{base}/{id}"),
            &who.token,
            json!({"name": "renamed"}),
        )
        .await
        .text()
        .await
        .unwrap(),
        app.patch(&format!("{base}/{id}"), &who.token, json!({"bogus": 1}))
            .await
            .text()
            .await
            .unwrap(),
        app.delete(&format!("{base}/{id}"), &who.token)
            .await
            .text()
            .await
            .unwrap(),
        app.req(Method::GET, "/v1/models", Some(&secret))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    ];
    for body in &bodies {
        assert!(!body.contains(random_part), "secret leaked in {body}");
        assert!(!body.contains("key_hash"), "{body}");
    }
    // Nor in any log line, nor the session token or password.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let logs = captured_logs();
    assert!(!logs.is_empty());
    assert!(!logs.contains(random_part), "API key in logs");
    assert!(
        !logs.contains(&who.token["aihub-sess-".len()..]),
        "session token in logs"
    );
    assert!(!logs.contains(&who.password), "password in logs");
}

async fn key_input_is_validated(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let who = app.signup("v@example.com").await;
    let base = format!("/api/v1/orgs/{}/keys", who.org_id);
    let past = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let cases = [
        (json!({}), "invalid_request"),
        (json!({"name": ""}), "invalid_name"),
        (json!({"name": "x".repeat(101)}), "invalid_name"),
        (
            json!({"name": "k", "expires_at": past}),
            "invalid_expires_at",
        ),
        (
            json!({"name": "k", "expires_at": "tomorrow"}),
            "invalid_request",
        ),
        (
            json!({"name": "k", "models": ["has space"]}),
            "invalid_models",
        ),
        (json!({"name": "k", "models": "gpt-4o"}), "invalid_request"),
        // Mass assignment: none of these may be set by the caller.
        (
            json!({"name": "k", "org_id": uuid::Uuid::now_v7()}),
            "invalid_request",
        ),
        (
            json!({"name": "k", "owner_user_id": uuid::Uuid::now_v7()}),
            "invalid_request",
        ),
        (json!({"name": "k", "key_hash": "00"}), "invalid_request"),
        (json!({"name": "k", "revoked": true}), "invalid_request"),
        (
            json!({"name": "k", "prefix": "sk-aihub-mine"}),
            "invalid_request",
        ),
        (
            json!({"name": "k", "key": "sk-aihub-chosen"}),
            "invalid_request",
        ),
    ];
    for (body, code) in cases {
        let r = app.post(&base, &who.token, body.clone()).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(error_code(r).await, code, "{body}");
    }
    let list: Value = app.get(&base, &who.token).await.json().await.unwrap();
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        0,
        "nothing was created"
    );

    let (id, _) = app.create_key(&who, json!({"name": "k"})).await;
    for body in [
        json!({"org_id": uuid::Uuid::now_v7()}),
        json!({"revoked_at": null}),
        json!({"name": 5}),
    ] {
        let r = app
            .patch(&format!("{base}/{id}"), &who.token, body.clone())
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    let key: Value = app
        .get(&format!("{base}/{id}"), &who.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(key["org_id"].as_str().unwrap(), who.org_id);
    assert_eq!(key["name"], "k");
    let r = app.get(&format!("{base}?limit=abc"), &who.token).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "invalid_query");
}

async fn expired_keys_are_refused(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let who = app.signup("x@example.com").await;
    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
    let (_, secret) = app
        .create_key(&who, json!({"name": "short-lived", "expires_at": soon}))
        .await;
    assert_eq!(app.models_status(&secret).await, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1700)).await;
    // Still cached, but expiry is checked at request time.
    let r = app
        .req(Method::GET, "/v1/models", Some(&secret))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["message"], "This API key has expired.");
}

async fn keys_paginate(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let who = app.signup("p@example.com").await;
    let base = format!("/api/v1/orgs/{}/keys", who.org_id);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            app.create_key(&who, json!({"name": format!("k{i}")}))
                .await
                .0,
        );
    }
    let p1: Value = app
        .get(&format!("{base}?limit=2"), &who.token)
        .await
        .json()
        .await
        .unwrap();
    let names = |p: &Value| {
        p["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&p1), ["k4", "k3"]);
    let c1 = p1["next_cursor"].as_str().unwrap();
    let p2: Value = app
        .get(&format!("{base}?limit=2&cursor={c1}"), &who.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(names(&p2), ["k2", "k1"]);
    let c2 = p2["next_cursor"].as_str().unwrap();
    let p3: Value = app
        .get(&format!("{base}?limit=2&cursor={c2}"), &who.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(names(&p3), ["k0"]);
    assert_eq!(p3["next_cursor"], Value::Null);
    let all: Value = app
        .get(&format!("{base}?limit=1000"), &who.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        all["data"].as_array().unwrap().len(),
        5,
        "limit is clamped, not rejected"
    );
}

async fn last_used_is_recorded_off_the_hot_path(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let who = app.signup("lu@example.com").await;
    let (id, secret) = app.create_key(&who, json!({"name": "k"})).await;
    let path = format!("/api/v1/orgs/{}/keys/{id}", who.org_id);
    let before: Value = app.get(&path, &who.token).await.json().await.unwrap();
    assert_eq!(before["last_used_at"], Value::Null);
    assert_eq!(app.models_status(&secret).await, StatusCode::OK);
    // Written back by the background flusher (every second in tests).
    let mut seen = Value::Null;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now: Value = app.get(&path, &who.token).await.json().await.unwrap();
        if !now["last_used_at"].is_null() {
            seen = now["last_used_at"].clone();
            break;
        }
    }
    assert!(seen.is_string(), "last_used_at was never recorded");
}

async fn gateway_errors_speak_openai(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let cases: [(Option<&str>, &str); 4] = [
        (None, "You didn't provide an API key"),
        (Some("sk-aihub-notarealkey"), "Incorrect API key provided."),
        (
            Some("sk-aihub-000000000000000000000000000000000"),
            "Incorrect API key provided.",
        ),
        (Some("aihub-sess-xyz"), "Incorrect API key provided."),
    ];
    for (key, msg) in cases {
        let r = app
            .req(Method::GET, "/v1/models", key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().get("x-request-id").is_some());
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "invalid_api_key");
        assert!(body["error"]["param"].is_null());
        assert!(
            body["error"]["message"].as_str().unwrap().starts_with(msg),
            "{body}"
        );
    }
    let r = app.client.get(app.url("/v1/nope")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_url");
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

/// A key may belong to a team of its organization (its requests then count against the team's
/// limits and budgets); a member must be in the team, an admin need not, and another
/// organization's team is not found.
async fn team_keys_need_the_team(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let owner = app.signup("owner@example.com").await;
    let member = app.signup("member@example.com").await;
    let admin = app.signup("admin@example.com").await;
    let other = app.signup("other@example.com").await;
    join(&app, &owner.org_id, &member, aihub_core::Role::Member).await;
    join(&app, &owner.org_id, &admin, aihub_core::Role::Admin).await;
    let org = &owner.org_id;
    let r = app
        .post(
            &format!("/api/v1/orgs/{org}/teams"),
            &owner.token,
            json!({"name": "research"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let team = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .post(
            &format!("/api/v1/orgs/{}/teams", other.org_id),
            &other.token,
            json!({"name": "theirs"}),
        )
        .await;
    let foreign_team = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let keys = format!("/api/v1/orgs/{org}/keys");

    // Not in the team yet: refused; another organization's team: not found.
    let r = app
        .post(&keys, &member.token, json!({"name": "k", "team_id": team}))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .post(
            &keys,
            &owner.token,
            json!({"name": "k", "team_id": foreign_team}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // An admin may make a key for any team; a member once they are in it.
    let r = app
        .post(&keys, &admin.token, json!({"name": "a", "team_id": team}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .post(
            &format!("/api/v1/orgs/{org}/teams/{team}/members"),
            &owner.token,
            json!({"user_id": member.user_id}),
        )
        .await;
    assert!(r.status().is_success());
    let r = app
        .post(&keys, &member.token, json!({"name": "m", "team_id": team}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let key: Value = r.json().await.unwrap();
    assert_eq!(key["team_id"], json!(team));
    // The team key works at the gateway.
    let secret = key["key"].as_str().unwrap();
    assert_eq!(app.models_status(secret).await, StatusCode::OK);

    // Deleting the team revokes its keys at once.
    let r = app
        .delete(&format!("/api/v1/orgs/{org}/teams/{team}"), &owner.token)
        .await;
    assert!(r.status().is_success());
    assert_eq!(app.models_status(secret).await, StatusCode::UNAUTHORIZED);
}

/// A member limited to some models cannot give a key more: a key for every model gets the
/// member's list, a wider list is refused, on create and on edit.
async fn keys_get_no_more_models_than_their_creator(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let owner = app.signup("owner@example.com").await;
    let member = app.signup("member@example.com").await;
    join(&app, &owner.org_id, &member, aihub_core::Role::Member).await;
    let org = &owner.org_id;
    let r = app
        .patch(
            &format!("/api/v1/orgs/{org}/members/{}", member.user_id),
            &owner.token,
            json!({"models": ["mock-chat"]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let keys = format!("/api/v1/orgs/{org}/keys");

    let r = app.post(&keys, &member.token, json!({"name": "any"})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let key: Value = r.json().await.unwrap();
    assert_eq!(key["models"], json!(["mock-chat"]));
    let id = key["id"].as_str().unwrap().to_owned();

    let r = app
        .post(
            &keys,
            &member.token,
            json!({"name": "wide", "models": ["mock-chat", "mock-embedding"]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(r).await, "models_not_allowed");

    let r = app
        .patch(
            &format!("{keys}/{id}"),
            &member.token,
            json!({"models": ["mock-embedding"]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .patch(
            &format!("{keys}/{id}"),
            &member.token,
            json!({"models": null}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap()["models"],
        json!(["mock-chat"])
    );

    // The owner is not limited by the member's list.
    let r = app
        .post(
            &keys,
            &owner.token,
            json!({"name": "wide", "models": ["mock-chat", "mock-embedding"]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}
