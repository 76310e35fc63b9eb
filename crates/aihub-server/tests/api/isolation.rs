//! Tenant isolation: a user of one organization can neither see nor change nor use anything of
//! another's. Every id-taking route answers 404 across tenants and changes nothing.

use aihub_store::BackendKind;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{api_tests, error_code, spawn_app};

api_tests!(
    other_tenants_get_404_and_change_nothing,
    lists_never_mix_tenants
);

async fn other_tenants_get_404_and_change_nothing(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let a = app.signup("a@tenant-a.example").await;
    let b = app.signup("b@tenant-b.example").await;
    let (a_key_id, a_secret) = app.create_key(&a, json!({"name": "a-key"})).await;
    let (b_key_id, _) = app.create_key(&b, json!({"name": "b-key"})).await;
    let a_org = &a.org_id;
    let b_org = &b.org_id;
    let before: Value = app
        .get(&format!("/api/v1/orgs/{a_org}/keys/{a_key_id}"), &a.token)
        .await
        .json()
        .await
        .unwrap();

    let patch = json!({"name": "pwned", "expires_at": null, "models": []});
    let attempts: Vec<(Method, String, Value)> = vec![
        (Method::GET, format!("/api/v1/orgs/{a_org}"), json!({})),
        (Method::GET, format!("/api/v1/orgs/{a_org}/keys"), json!({})),
        (
            Method::POST,
            format!("/api/v1/orgs/{a_org}/keys"),
            json!({"name": "intruder"}),
        ),
        (
            Method::GET,
            format!("/api/v1/orgs/{a_org}/keys/{a_key_id}"),
            json!({}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/orgs/{a_org}/keys/{a_key_id}"),
            patch.clone(),
        ),
        (
            Method::DELETE,
            format!("/api/v1/orgs/{a_org}/keys/{a_key_id}"),
            json!({}),
        ),
        (
            Method::POST,
            format!("/api/v1/orgs/{a_org}/keys/{a_key_id}/rotate"),
            json!({}),
        ),
        // A's key addressed through B's own organization.
        (
            Method::GET,
            format!("/api/v1/orgs/{b_org}/keys/{a_key_id}"),
            json!({}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/orgs/{b_org}/keys/{a_key_id}"),
            patch.clone(),
        ),
        (
            Method::DELETE,
            format!("/api/v1/orgs/{b_org}/keys/{a_key_id}"),
            json!({}),
        ),
        (
            Method::POST,
            format!("/api/v1/orgs/{b_org}/keys/{a_key_id}/rotate"),
            json!({}),
        ),
        // B's key addressed through A's organization.
        (
            Method::GET,
            format!("/api/v1/orgs/{a_org}/keys/{b_key_id}"),
            json!({}),
        ),
        // A's usage.
        (
            Method::GET,
            format!("/api/v1/orgs/{a_org}/usage"),
            json!({}),
        ),
        (
            Method::GET,
            format!("/api/v1/orgs/{a_org}/usage?group_by=key"),
            json!({}),
        ),
        (
            Method::GET,
            format!("/api/v1/orgs/{a_org}/usage/requests"),
            json!({}),
        ),
    ];
    let mut failures = 0;
    for (method, path, body) in &attempts {
        let r = app
            .req(method.clone(), path, Some(&b.token))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        if status != StatusCode::NOT_FOUND || text.contains(&a_key_id) || text.contains("a-key") {
            failures += 1;
            eprintln!("cross-tenant {method} {path} answered {status}: {text}");
        }
    }
    println!(
        "cross-tenant attempts: {}, failures: {failures}",
        attempts.len()
    );
    assert_eq!(failures, 0);

    // A's key is exactly as it was and still works; A's org has no intruder key.
    let after: Value = app
        .get(&format!("/api/v1/orgs/{a_org}/keys/{a_key_id}"), &a.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(before, after);
    assert_eq!(app.models_status(&a_secret).await, StatusCode::OK);
    let list: Value = app
        .get(&format!("/api/v1/orgs/{a_org}/keys"), &a.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    // Non-existent org: same 404 as a foreign one.
    let ghost = uuid::Uuid::now_v7();
    let r = app
        .get(&format!("/api/v1/orgs/{ghost}/keys"), &b.token)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "not_found");
}

async fn lists_never_mix_tenants(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let a = app.signup("a@example.com").await;
    let b = app.signup("b@example.com").await;
    for i in 0..3 {
        app.create_key(&a, json!({"name": format!("a{i}")})).await;
        app.create_key(&b, json!({"name": format!("b{i}")})).await;
    }
    for (who, prefix, other_org) in [(&a, "a", &b.org_id), (&b, "b", &a.org_id)] {
        let orgs: Value = app
            .get("/api/v1/orgs", &who.token)
            .await
            .json()
            .await
            .unwrap();
        let orgs = orgs["data"].as_array().unwrap();
        assert_eq!(orgs.len(), 1);
        assert_ne!(orgs[0]["id"].as_str().unwrap(), other_org);
        let keys: Value = app
            .get(&format!("/api/v1/orgs/{}/keys", who.org_id), &who.token)
            .await
            .json()
            .await
            .unwrap();
        let keys = keys["data"].as_array().unwrap();
        assert_eq!(keys.len(), 3);
        assert!(
            keys.iter()
                .all(|k| k["name"].as_str().unwrap().starts_with(prefix))
        );
        assert!(
            keys.iter()
                .all(|k| k["org_id"].as_str().unwrap() == who.org_id)
        );
    }
}
