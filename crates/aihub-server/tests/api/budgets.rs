//! Budgets: CRUD, validation, the webhook secret shown once, spend computed from usage, roles
//! and tenant isolation.

use aihub_core::governance::Period;
use aihub_core::time::now;
use aihub_core::{Currency, KeyId, OrgId, Role, UserId};
use aihub_store::{BackendKind, UsageRecord};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{api_tests, captured_logs, error_code};
use crate::limits::{join, policy_events, spawn};

api_tests!(
    budget_lifecycle_and_secret_once,
    budget_input_is_validated,
    budgets_show_spend_from_usage,
    budgets_follow_roles_and_tenants,
);

async fn budget_lifecycle_and_secret_once(kind: BackendKind) {
    let app = spawn(kind).await;
    let who = app.signup("owner@example.com").await;
    let base = format!("/api/v1/orgs/{}/budgets", who.org_id);
    let events = policy_events(&app);

    let r = app
        .post(
            &base,
            &who.token,
            json!({
                "scope_type": "org",
                "name": "team cap",
                "amount": "12.50",
                "period": "monthly",
                "policy": "throttle",
                "throttle_rpm": 3,
                "thresholds": [100, 50, 50],
                "webhook_url": "https://hooks.example.com/budget",
                "alert_emails": ["Ops@Example.com"],
            }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["webhook_secret"].as_str().unwrap().to_owned();
    assert!(
        secret.starts_with("whsec_") && secret.len() == 6 + 43,
        "{secret}"
    );
    assert_eq!(created["amount"], "12.5");
    assert_eq!(created["amount_micros"], 12_500_000);
    assert_eq!(created["currency"], "USD");
    assert_eq!(created["scope_id"], who.org_id.as_str());
    assert_eq!(created["thresholds"], json!([50, 100]));
    assert_eq!(created["alert_emails"], json!(["ops@example.com"]));
    assert_eq!(created["has_webhook_secret"], true);
    assert_eq!(created["spent_micros"], 0);
    assert_eq!(created["remaining"], "12.5");
    let t = now();
    assert_eq!(
        created["period_start"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap(),
        Period::Monthly.start(t)
    );
    let org: OrgId = who.org_id.parse().unwrap();
    assert_eq!(*events.lock().unwrap(), vec![org]);
    // The gateway's read carries the secret; the API never shows it again.
    let policy = app.state.services.governance.org_policy(org).await.unwrap();
    assert_eq!(
        policy.budgets[0].webhook_secret.as_ref().unwrap().expose(),
        secret
    );

    let one = app
        .get(&format!("{base}/{id}"), &who.token)
        .await
        .text()
        .await
        .unwrap();
    let list = app.get(&base, &who.token).await.text().await.unwrap();
    for body in [&one, &list] {
        assert!(
            !body.contains(&secret) && !body.contains("\"webhook_secret\""),
            "{body}"
        );
        assert!(body.contains("\"has_webhook_secret\":true"));
    }

    // Edits: amount in micro-units, switch to block (the throttle rate goes with it).
    let r = app
        .patch(
            &format!("{base}/{id}"),
            &who.token,
            json!({"amount_micros": 2_000_000, "policy": "block", "name": null}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let edited: Value = r.json().await.unwrap();
    assert_eq!(edited["amount"], "2");
    assert_eq!(edited["policy"], "block");
    assert_eq!(edited["throttle_rpm"], Value::Null);
    assert_eq!(edited["name"], Value::Null);
    assert!(
        edited.get("webhook_secret").is_none(),
        "no new secret on a plain edit"
    );

    // Rotation shows a new secret once.
    let r = app
        .post(&format!("{base}/{id}/rotate-secret"), &who.token, json!({}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let rotated = r.json::<Value>().await.unwrap()["webhook_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(rotated, secret);
    // Removing the webhook drops its secret; adding one mints a new secret, shown once.
    let r = app
        .patch(
            &format!("{base}/{id}"),
            &who.token,
            json!({"webhook_url": null}),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["has_webhook_secret"], false);
    let r = app
        .post(&format!("{base}/{id}/rotate-secret"), &who.token, json!({}))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = app
        .patch(
            &format!("{base}/{id}"),
            &who.token,
            json!({"webhook_url": "http://hooks.internal:8080/x"}),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    let third = v["webhook_secret"].as_str().unwrap().to_owned();
    assert!(third.starts_with("whsec_"));

    let logs = captured_logs();
    for s in [&secret, &rotated, &third] {
        assert!(!logs.contains(s.as_str()), "a webhook secret was logged");
    }

    let r = app.delete(&format!("{base}/{id}"), &who.token).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("{base}/{id}"), &who.token).await.status(),
        StatusCode::NOT_FOUND
    );
    assert!(
        app.state
            .services
            .governance
            .org_policy(org)
            .await
            .unwrap()
            .budgets
            .is_empty()
    );
}

async fn budget_input_is_validated(kind: BackendKind) {
    let app = spawn(kind).await;
    let who = app.signup("owner@example.com").await;
    let other = app.signup("other@example.com").await;
    let (foreign_key, _) = app.create_key(&other, json!({"name": "theirs"})).await;
    let base = format!("/api/v1/orgs/{}/budgets", who.org_id);
    let ok = json!({"scope_type": "org", "amount": "10"});
    let with = |patch: Value| {
        let mut b = ok.clone();
        for (k, v) in patch.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let cases = [
        (json!({"scope_type": "org"}), "invalid_amount"),
        (with(json!({"amount": "0"})), "invalid_amount"),
        (with(json!({"amount": "-1"})), "invalid_amount"),
        (with(json!({"amount": "1.0000001"})), "invalid_amount"),
        (with(json!({"amount_micros": 5})), "invalid_amount"),
        (with(json!({"currency": "ABC"})), "invalid_currency"),
        (with(json!({"period": "yearly"})), "invalid_period"),
        (with(json!({"policy": "warn"})), "invalid_policy"),
        (with(json!({"policy": "throttle"})), "invalid_throttle_rpm"),
        (with(json!({"throttle_rpm": 5})), "invalid_throttle_rpm"),
        (with(json!({"thresholds": []})), "invalid_thresholds"),
        (with(json!({"thresholds": [0]})), "invalid_thresholds"),
        (with(json!({"thresholds": [1001]})), "invalid_thresholds"),
        (
            with(json!({"thresholds": [1,2,3,4,5,6,7,8,9,10,11]})),
            "invalid_thresholds",
        ),
        (
            with(json!({"webhook_url": "ftp://example.com"})),
            "invalid_webhook_url",
        ),
        (
            with(json!({"webhook_url": format!("https://x.example/{}", "a".repeat(2048))})),
            "invalid_webhook_url",
        ),
        (
            with(json!({"alert_emails": ["nope"]})),
            "invalid_alert_emails",
        ),
        (with(json!({"name": ""})), "invalid_name"),
        (
            with(json!({"scope_type": "key", "scope_id": foreign_key})),
            "invalid_scope",
        ),
        (
            with(json!({"scope_type": "user", "scope_id": other.user_id})),
            "invalid_scope",
        ),
        (with(json!({"spent_micros": 0})), "invalid_request"),
        (with(json!({"org_id": other.org_id})), "invalid_request"),
        (
            with(json!({"webhook_secret": "whsec_mine"})),
            "invalid_request",
        ),
    ];
    for (body, code) in cases {
        let r = app.post(&base, &who.token, body.clone()).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(error_code(r).await, code, "{body}");
    }
    // Defaults: USD, monthly, block, thresholds 80 and 100, no webhook.
    let r = app.post(&base, &who.token, ok).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let b: Value = r.json().await.unwrap();
    assert_eq!(
        (
            b["currency"].clone(),
            b["period"].clone(),
            b["policy"].clone(),
            b["thresholds"].clone()
        ),
        (
            json!("USD"),
            json!("monthly"),
            json!("block"),
            json!([80, 100])
        )
    );
    assert!(b.get("webhook_secret").is_none());
    assert_eq!(b["has_webhook_secret"], false);
    let id = b["id"].as_str().unwrap();
    for body in [
        json!({"scope_id": other.org_id}),
        json!({"reserved_micros": 1}),
    ] {
        let r = app.patch(&format!("{base}/{id}"), &who.token, body).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    let r = app
        .patch(
            &format!("{base}/{id}"),
            &who.token,
            json!({"policy": "throttle"}),
        )
        .await;
    assert_eq!(error_code(r).await, "invalid_throttle_rpm");
}

fn usage(org: OrgId, user: UserId, key: KeyId, cost: i64, currency: Currency) -> UsageRecord {
    UsageRecord {
        request_id: uuid::Uuid::now_v7(),
        org_id: org,
        user_id: Some(user),
        key_id: Some(key),
        team_id: None,
        endpoint: "chat.completions".into(),
        model: "mock-chat".into(),
        provider: Some("mock".into()),
        upstream_model: None,
        prompt_tokens: 100,
        completion_tokens: 20,
        cached_tokens: 0,
        cost_micros: cost,
        currency,
        status: 200,
        error_code: None,
        latency_ms: 5,
        ttft_ms: None,
        streamed: false,
        estimated: false,
        created_at: now(),
    }
}

async fn budgets_show_spend_from_usage(kind: BackendKind) {
    let app = spawn(kind).await;
    let who = app.signup("owner@example.com").await;
    let (k1, _) = app.create_key(&who, json!({"name": "one"})).await;
    let (k2, _) = app.create_key(&who, json!({"name": "two"})).await;
    let org: OrgId = who.org_id.parse().unwrap();
    let user: UserId = who.user_id.parse().unwrap();
    let (key1, key2): (KeyId, KeyId) = (k1.parse().unwrap(), k2.parse().unwrap());
    app.state
        .services
        .store
        .insert_usage(&[
            usage(org, user, key1, 1_250_000, Currency::USD),
            usage(org, user, key1, 250_000, Currency::USD),
            usage(org, user, key2, 100_000, Currency::USD),
            usage(org, user, key1, 9_000_000, Currency::CNY),
        ])
        .await
        .unwrap();
    let base = format!("/api/v1/orgs/{}/budgets", who.org_id);
    let create = |body: Value| {
        let app = &app;
        let base = base.clone();
        let token = who.token.clone();
        async move {
            let r = app.post(&base, &token, body).await;
            assert_eq!(r.status(), StatusCode::CREATED);
            r.json::<Value>().await.unwrap()
        }
    };
    let on_key =
        create(json!({"scope_type": "key", "scope_id": k1, "amount": "1", "period": "daily"}))
            .await;
    assert_eq!(on_key["spent_micros"], 1_500_000);
    assert_eq!(on_key["spent"], "1.5");
    assert_eq!(on_key["reserved_micros"], 0);
    assert_eq!(on_key["remaining_micros"], 0, "never below zero");
    let on_user = create(
        json!({"scope_type": "user", "scope_id": who.user_id, "amount": "10", "period": "weekly"}),
    )
    .await;
    assert_eq!(on_user["spent_micros"], 1_600_000);
    assert_eq!(on_user["remaining"], "8.4");
    let in_cny =
        create(json!({"scope_type": "org", "amount": "100", "currency": "CNY", "period": "total"}))
            .await;
    assert_eq!(in_cny["spent_micros"], 9_000_000);
    assert_eq!(in_cny["period_end"], Value::Null);

    let list: Value = app.get(&base, &who.token).await.json().await.unwrap();
    let spent: Vec<i64> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["spent_micros"].as_i64().unwrap())
        .collect();
    assert_eq!(spent, [1_500_000, 1_600_000, 9_000_000]);

    // The monthly quota counts tokens of every currency and spend in the plan's currency.
    let q: Value = app
        .get(&format!("/api/v1/orgs/{}/quota", who.org_id), &who.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(q["tokens_used"], 4 * 120);
    assert_eq!(q["spend_used_micros"], 1_600_000);
    assert_eq!(q["currency"], "USD");
}

async fn budgets_follow_roles_and_tenants(kind: BackendKind) {
    let app = spawn(kind).await;
    let owner = app.signup("owner@example.com").await;
    let member = app.signup("member@example.com").await;
    let viewer = app.signup("viewer@example.com").await;
    let stranger = app.signup("stranger@example.com").await;
    join(&app, &owner.org_id, &member, Role::Member).await;
    join(&app, &owner.org_id, &viewer, Role::Viewer).await;
    let base = format!("/api/v1/orgs/{}/budgets", owner.org_id);
    let r = app
        .post(
            &format!("/api/v1/orgs/{}/keys", owner.org_id),
            &member.token,
            json!({"name": "member's"}),
        )
        .await;
    let member_key = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let r = app
        .post(
            &base,
            &member.token,
            json!({"scope_type": "key", "scope_id": member_key, "amount": "5"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let own = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for body in [
        json!({"scope_type": "org", "amount": "5"}),
        json!({"scope_type": "user", "scope_id": member.user_id, "amount": "5"}),
    ] {
        let r = app.post(&base, &member.token, body).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    let r = app
        .post(
            &base,
            &owner.token,
            json!({"scope_type": "org", "amount": "50"}),
        )
        .await;
    let org_budget = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .delete(&format!("{base}/{org_budget}"), &member.token)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .patch(
            &format!("{base}/{own}"),
            &member.token,
            json!({"amount": "6"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    assert_eq!(app.get(&base, &viewer.token).await.status(), StatusCode::OK);
    let r = app
        .patch(
            &format!("{base}/{own}"),
            &viewer.token,
            json!({"amount": "1"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .post(
            &base,
            &viewer.token,
            json!({"scope_type": "org", "amount": "1"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    for r in [
        app.get(&base, &stranger.token).await,
        app.get(&format!("{base}/{own}"), &stranger.token).await,
        app.post(
            &format!("{base}/{own}/rotate-secret"),
            &stranger.token,
            json!({}),
        )
        .await,
        app.get(
            &format!("/api/v1/orgs/{}/budgets/{own}", stranger.org_id),
            &stranger.token,
        )
        .await,
        app.delete(
            &format!("/api/v1/orgs/{}/budgets/{own}", stranger.org_id),
            &stranger.token,
        )
        .await,
        app.get(
            &format!("/api/v1/orgs/{}/quota", owner.org_id),
            &stranger.token,
        )
        .await,
    ] {
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
}
