//! Providers, models and prices managed at run time by a platform admin: changes apply to the
//! very next request, credentials are never accepted or shown as values, and past usage keeps the
//! price it was served at.

use aihub_mock_upstream::{MockOptions, MockUpstream};
use aihub_store::BackendKind;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{api_tests, error_code, request_id, spawn_app};

api_tests!(
    providers_and_models_change_without_restart,
    prices_apply_from_their_effective_time,
    usage_reports_and_their_limits,
);

async fn providers_and_models_change_without_restart(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let mock = MockUpstream::start(MockOptions {
        record_requests: true,
        api_key: Some("file-secret-abcdef".into()),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let root = app.platform_admin().await;
    let (who, key) = app.user_with_key("u@example.com", None).await;

    // Credentials: only from a file in secrets_dir (or an allowed env var), never a value.
    let secrets = app.dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("up.key"), "file-secret-abcdef\n").unwrap();
    let provider = json!({"name": "deep", "kind": "openai", "base_url": format!("{}/v1", mock.url()), "api_key_file": "up.key"});
    for (bad, code) in [
        (
            json!({"name": "deep", "kind": "openai", "api_key": "literal"}),
            "invalid_request",
        ),
        (
            json!({"name": "deep", "kind": "openai", "api_key_file": "../../etc/passwd"}),
            "invalid_api_key_source",
        ),
        (
            json!({"name": "deep", "kind": "openai", "api_key_env": "HOME"}),
            "invalid_api_key_source",
        ),
        (
            json!({"name": "deep", "kind": "openai", "base_url": "ftp://x"}),
            "invalid_base_url",
        ),
        (
            json!({"name": "Deep Seek", "kind": "openai"}),
            "invalid_name",
        ),
        (json!({"name": "mock", "kind": "mock"}), "managed_by_config"),
    ] {
        let r = app
            .post("/api/v1/admin/providers", &root, bad.clone())
            .await;
        assert!(r.status().is_client_error(), "{bad}");
        assert_eq!(error_code(r).await, code, "{bad}");
    }
    // Only platform admins.
    let r = app
        .post("/api/v1/admin/providers", &who.token, provider.clone())
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let r = app
        .post("/api/v1/admin/providers", &root, provider.clone())
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    assert_eq!(
        (created["has_api_key"].as_bool(), created["source"].as_str()),
        (Some(true), Some("admin"))
    );
    let listed = app
        .get("/api/v1/admin/providers", &root)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !listed.contains("file-secret-abcdef"),
        "the credential is never returned"
    );
    assert_eq!(
        app.post("/api/v1/admin/providers", &root, provider)
            .await
            .status(),
        StatusCode::CONFLICT
    );

    // A model routed to it works on the next request.
    let r = app
        .post(
            "/api/v1/admin/models",
            &root,
            json!({"name": "deep-chat", "provider": "deep", "upstream_model": "deepseek-chat"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app.v1("/v1/chat/completions", &key, json!({"model": "deep-chat", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let sent = mock.requests().pop().unwrap();
    assert_eq!(
        sent.header("authorization"),
        Some("Bearer file-secret-abcdef")
    );
    assert_eq!(sent.body.unwrap()["model"], "deepseek-chat");

    // Re-point the model; then delete it.
    let r = app
        .req(Method::PUT, "/api/v1/admin/models/deep-chat", Some(&root))
        .json(&json!({"provider": "mock"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let before = mock.request_count();
    let r = app.v1("/v1/chat/completions", &key, json!({"model": "deep-chat", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        mock.request_count(),
        before,
        "now served by the built-in mock"
    );
    assert_eq!(
        app.delete("/api/v1/admin/providers/deep", &root)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete("/api/v1/admin/models/deep-chat", &root)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let r = app
        .v1(
            "/v1/chat/completions",
            &key,
            json!({"model": "deep-chat", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Config-declared entries are read-only here; unknown ones are 404.
    assert_eq!(
        error_code(app.delete("/api/v1/admin/models/mock-chat", &root).await).await,
        "managed_by_config"
    );
    assert_eq!(
        app.delete("/api/v1/admin/models/ghost", &root)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let r = app
        .post(
            "/api/v1/admin/models",
            &root,
            json!({"name": "x", "provider": "ghost"}),
        )
        .await;
    assert_eq!(error_code(r).await, "unknown_provider");
    let models: Value = app
        .get("/api/v1/admin/models", &root)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"].as_array().unwrap().len(), 2);
}

async fn prices_apply_from_their_effective_time(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let root = app.platform_admin().await;
    let (_, key) = app.user_with_key("p@example.com", None).await;
    let body = json!({"model": "mock-chat", "max_tokens": 10, "messages": [{"role": "user", "content": "one two"}]});

    // Shipped default price for mock-chat: 1 $/M input, 2 $/M output. 6 prompt + 10 output
    // tokens = 6 + 20 micro-dollars.
    let r = app.v1("/v1/chat/completions", &key, body.clone()).await;
    let first = app.usage_record(&request_id(&r)).await;
    assert_eq!(
        (
            first.prompt_tokens,
            first.completion_tokens,
            first.cost_micros
        ),
        (6, 10, 26)
    );

    let prices: Value = app
        .get("/api/v1/admin/prices", &root)
        .await
        .json()
        .await
        .unwrap();
    let count = prices["data"].as_array().unwrap().len();
    assert!(count > 60, "the shipped catalog is seeded: {count}");
    for (bad, code) in [
        (
            json!({"model": "mock-chat", "currency": "USD", "input": "1.5e3", "output": "1"}),
            "invalid_price",
        ),
        (
            json!({"model": "mock-chat", "currency": "DOLLARS", "input": "1", "output": "1"}),
            "invalid_price",
        ),
        (
            json!({"model": "mock-chat", "currency": "USD", "input": "1", "output": "1", "effective_from": "2020-01-01T00:00:00Z"}),
            "invalid_price",
        ),
        (
            json!({"model": "mock-chat", "currency": "USD", "input": 1, "output": "1"}),
            "invalid_request",
        ),
    ] {
        let r = app.post("/api/v1/admin/prices", &root, bad.clone()).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(error_code(r).await, code, "{bad}");
    }
    let r = app
        .post(
            "/api/v1/admin/prices",
            &root,
            json!({"model": "mock-chat", "currency": "USD", "input": "100", "output": "200.5"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let p: Value = r.json().await.unwrap();
    assert_eq!(
        (
            p["input_micros"].as_i64(),
            p["output_micros"].as_i64(),
            p["output"].as_str()
        ),
        (Some(100_000_000), Some(200_500_000), Some("200.5"))
    );

    let r = app.v1("/v1/chat/completions", &key, body).await;
    let second = app.usage_record(&request_id(&r)).await;
    assert_eq!(
        second.cost_micros,
        6 * 100 + 10 * 200 + 5,
        "6 × 100 + 10 × 200.5 micro-dollars"
    );
    // The earlier request keeps the price it was served at.
    let again = app
        .state
        .services
        .store
        .usage_record(first.request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.cost_micros, 26);
}

/// The usage API: ranges, groupings, pagination, and its validation.
async fn usage_reports_and_their_limits(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let (who, key) = app.user_with_key("r@example.com", None).await;
    let (_, other_key) = app.user_with_key("r2@example.com", None).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let model = if i == 2 {
            "mock-embedding"
        } else {
            "mock-chat"
        };
        let body = if i == 2 {
            json!({"model": model, "input": "a b c"})
        } else {
            json!({"model": model, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})
        };
        let path = if i == 2 {
            "/v1/embeddings"
        } else {
            "/v1/chat/completions"
        };
        let r = app.v1(path, &key, body).await;
        assert_eq!(r.status(), StatusCode::OK);
        ids.push(request_id(&r));
    }
    let r = app
        .v1(
            "/v1/chat/completions",
            &other_key,
            json!({"model": "mock-chat", "messages": []}),
        )
        .await;
    app.usage_record(&request_id(&r)).await;
    for id in &ids {
        app.usage_record(id).await;
    }
    let base = format!("/api/v1/orgs/{}/usage", who.org_id);
    let by_day: Value = app.get(&base, &who.token).await.json().await.unwrap();
    assert_eq!(by_day["group_by"], "day");
    assert_eq!(by_day["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        by_day["data"][0]["requests"], 3,
        "the other org's request is not counted"
    );
    let by_model: Value = app
        .get(&format!("{base}?group_by=model"), &who.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_model["data"].as_array().unwrap().len(), 2);
    let by_key: Value = app
        .get(&format!("{base}?group_by=key"), &who.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_key["data"].as_array().unwrap().len(), 1);
    assert_eq!(by_key["data"][0]["requests"], 3);
    let today = chrono::Utc::now().date_naive();
    let past: Value = app
        .get(
            &format!(
                "{base}?from={}&to={}",
                today - chrono::Days::new(10),
                today - chrono::Days::new(1)
            ),
            &who.token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(past["data"].as_array().unwrap().is_empty());
    for (query, code) in [
        (
            format!("?from={today}&to={}", today - chrono::Days::new(1)),
            "invalid_range",
        ),
        (
            format!("?from={}&to={today}", today - chrono::Days::new(400)),
            "invalid_range",
        ),
        ("?group_by=hour".to_owned(), "invalid_query"),
        ("?from=yesterday".to_owned(), "invalid_query"),
    ] {
        let r = app.get(&format!("{base}{query}"), &who.token).await;
        assert!(r.status().is_client_error(), "{query}");
        assert_eq!(error_code(r).await, code, "{query}");
    }
    let p1: Value = app
        .get(&format!("{base}/requests?limit=2"), &who.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p1["data"].as_array().unwrap().len(), 2);
    assert_eq!(p1["data"][0]["request_id"], ids[2].as_str(), "newest first");
    let cursor = p1["next_cursor"].as_str().unwrap();
    let p2: Value = app
        .get(
            &format!("{base}/requests?limit=2&cursor={cursor}"),
            &who.token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p2["data"].as_array().unwrap().len(), 1);
    assert_eq!(p2["next_cursor"], Value::Null);
    let since: Value = app
        .get(
            &format!(
                "{base}/requests?from={}",
                (chrono::Utc::now() + chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ")
            ),
            &who.token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(since["data"].as_array().unwrap().is_empty());
}
