//! Budget alerts: the listing API (pagination, budget filter, tenant isolation) and delivery end
//! to end — a real webhook receiver that checks the signature and fails once, and the SMTP sink.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aihub_core::config::SmtpSecurity;
use aihub_core::governance::{BudgetPolicy, BudgetRule, Period, ScopeType};
use aihub_core::secret::Secret;
use aihub_core::time::now;
use aihub_core::{Currency, OrgId};
use aihub_mock_upstream::smtp::SmtpSink;
use aihub_service::alerts::Crossing;
use aihub_service::notify::webhook::verify;
use aihub_store::{BackendKind, DeliveryStatus};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use reqwest::StatusCode;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::{TestApp, api_tests, captured_logs, spawn_app, spawn_app_with};

api_tests!(
    alerts_list_paginate_and_filter,
    alerts_are_invisible_to_other_orgs,
    a_crossing_is_delivered_once_by_webhook_and_email,
);

const SECRET: &str = "whsec_alerts_test_secret_0123456789";

fn budget(org: OrgId) -> BudgetRule {
    let t = now();
    BudgetRule {
        id: Uuid::now_v7(),
        org_id: org,
        scope: ScopeType::Org,
        scope_id: org.as_uuid(),
        name: Some("Monthly spend".into()),
        amount_micros: 15_000_000,
        currency: Currency::parse("USD").unwrap(),
        period: Period::Monthly,
        policy: BudgetPolicy::Block,
        throttle_rpm: None,
        thresholds: vec![50, 80, 100],
        webhook_url: None,
        webhook_secret: None,
        alert_emails: vec![],
        created_at: t,
        updated_at: t,
    }
}

fn crossing(b: &BudgetRule, pct: u32) -> Crossing {
    Crossing {
        budget: b.clone(),
        period_start: b.period.start(now()),
        threshold_pct: pct,
        spent_micros: i64::from(pct) * b.amount_micros / 100,
    }
}

/// Records a crossing without delivery channels, the way the worker does.
async fn record(app: &TestApp, b: &BudgetRule, pct: u32) -> Uuid {
    app.state
        .services
        .alerts
        .process(crossing(b, pct), &CancellationToken::new())
        .await
        .expect("a new alert")
        .id
}

fn org_of(id: &str) -> OrgId {
    OrgId::from_uuid(Uuid::parse_str(id).unwrap())
}

async fn alerts_list_paginate_and_filter(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let alice = app.signup("alice@example.com").await;
    let org = org_of(&alice.org_id);
    let b1 = budget(org);
    let b2 = budget(org);
    let a1 = record(&app, &b1, 50).await;
    let a2 = record(&app, &b2, 50).await;
    let a3 = record(&app, &b1, 80).await;

    let base = format!("/api/v1/orgs/{}/alerts", alice.org_id);
    let r = app.get(&format!("{base}?limit=2"), &alice.token).await;
    assert_eq!(r.status(), StatusCode::OK);
    let page: Value = r.json().await.unwrap();
    let ids: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![a3.to_string(), a2.to_string()]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let r = app
        .get(&format!("{base}?limit=2&cursor={cursor}"), &alice.token)
        .await;
    let page2: Value = r.json().await.unwrap();
    assert_eq!(page2["data"][0]["id"], a1.to_string());
    assert!(page2["next_cursor"].is_null());

    let first = &page["data"][0];
    assert_eq!(first["type"], "budget.threshold_crossed");
    assert_eq!(first["budget_id"], b1.id.to_string());
    assert_eq!(first["budget_name"], "Monthly spend");
    assert_eq!(first["scope_type"], "org");
    assert_eq!(first["period"], "monthly");
    assert_eq!(first["threshold_percent"], 80);
    assert_eq!(first["amount"], "15");
    assert_eq!(first["spent"], "12");
    assert_eq!(first["spent_micros"], 12_000_000);
    assert_eq!(first["currency"], "USD");
    assert_eq!(first["webhook"]["status"], "none");
    assert_eq!(first["email"]["status"], "none");
    assert!(first["period_end"].is_string());

    let r = app
        .get(&format!("{base}?budget_id={}", b2.id), &alice.token)
        .await;
    let only_b2: Value = r.json().await.unwrap();
    assert_eq!(only_b2["data"].as_array().unwrap().len(), 1);
    assert_eq!(only_b2["data"][0]["id"], a2.to_string());

    let r = app.get(&format!("{base}/{a1}"), &alice.token).await;
    assert_eq!(r.status(), StatusCode::OK);
    let one: Value = r.json().await.unwrap();
    assert_eq!(one["threshold_percent"], 50);

    // The same crossing again is not a new alert.
    let again = app
        .state
        .services
        .alerts
        .process(crossing(&b1, 80), &CancellationToken::new())
        .await;
    assert!(again.is_none());

    let r = app.get(&format!("{base}?bogus=1"), &alice.token).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A malformed id names no object, like an unknown one.
    let r = app.get(&format!("{base}/not-a-uuid"), &alice.token).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app
        .get(&format!("{base}/{}", Uuid::now_v7()), &alice.token)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn alerts_are_invisible_to_other_orgs(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let alice = app.signup("alice@example.com").await;
    let mallory = app.signup("mallory@example.com").await;
    let alice_alert = record(&app, &budget(org_of(&alice.org_id)), 80).await;

    // Not a member: the organization's alerts do not exist.
    let r = app
        .get(
            &format!("/api/v1/orgs/{}/alerts", alice.org_id),
            &mallory.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app
        .get(
            &format!("/api/v1/orgs/{}/alerts/{alice_alert}", alice.org_id),
            &mallory.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Another org's alert id under one's own org is not found either, and never listed.
    let r = app
        .get(
            &format!("/api/v1/orgs/{}/alerts/{alice_alert}", mallory.org_id),
            &mallory.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app
        .get(
            &format!("/api/v1/orgs/{}/alerts", mallory.org_id),
            &mallory.token,
        )
        .await;
    let page: Value = r.json().await.unwrap();
    assert!(page["data"].as_array().unwrap().is_empty());

    // Without a session: 401.
    let r = app
        .req(
            reqwest::Method::GET,
            &format!("/api/v1/orgs/{}/alerts", alice.org_id),
            None,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// What the webhook receiver saw.
#[derive(Default)]
struct Receiver {
    calls: AtomicU32,
    /// Bodies of requests whose signature and headers checked out.
    verified: std::sync::Mutex<Vec<Value>>,
    bad: AtomicU32,
}

async fn receive(
    axum::extract::State(rx): axum::extract::State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> AxumStatus {
    let call = rx.calls.fetch_add(1, Ordering::SeqCst);
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let ts: i64 = header("aihub-webhook-timestamp").parse().unwrap_or(0);
    let sig = header("aihub-signature");
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let ok = header("content-type") == "application/json"
        && sig.starts_with(&format!("t={ts},v1="))
        && verify(
            SECRET,
            sig,
            &body,
            chrono::Utc::now().timestamp(),
            Duration::from_secs(300),
        )
        && json
            .as_ref()
            .is_some_and(|j| j["id"].as_str() == Some(header("aihub-webhook-id")));
    if !ok {
        rx.bad.fetch_add(1, Ordering::SeqCst);
        return AxumStatus::UNAUTHORIZED;
    }
    if call == 0 {
        // The first attempt fails: the sender must retry.
        return AxumStatus::INTERNAL_SERVER_ERROR;
    }
    rx.verified.lock().unwrap().push(json.unwrap_or_default());
    AxumStatus::NO_CONTENT
}

async fn a_crossing_is_delivered_once_by_webhook_and_email(kind: BackendKind) {
    let sink = SmtpSink::start().await.unwrap();
    let smtp_port = sink.port();
    let app = spawn_app_with(kind, move |c| {
        c.smtp.host = Some("127.0.0.1".into());
        c.smtp.port = smtp_port;
        c.smtp.security = SmtpSecurity::None;
        c.smtp.from = "AI Hub <alerts@aihub.test>".into();
        c.alerts.retry_base_ms = 50;
        c.alerts.max_attempts = 4;
    })
    .await;
    let stop = CancellationToken::new();
    // Returns at once if the application already runs the worker.
    let worker = tokio::spawn(app.state.services.alerts.clone().run(stop.clone()));

    let rx = Arc::new(Receiver::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hooks/aihub", listener.local_addr().unwrap());
    let router = axum::Router::new()
        .route("/hooks/aihub", axum::routing::post(receive))
        .with_state(Arc::clone(&rx));
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let alice = app.signup("alice@example.com").await;
    let mut b = budget(org_of(&alice.org_id));
    b.webhook_url = Some(hook_url);
    b.webhook_secret = Some(Secret::new(SECRET.into()));
    b.alert_emails = vec!["ops@example.com".into(), "cfo@example.com".into()];

    // The same crossing reported twice (two instances, or two requests settling together).
    app.state.services.alerts.notify(crossing(&b, 80));
    app.state.services.alerts.notify(crossing(&b, 80));

    let mails = sink
        .wait_for(1, Duration::from_secs(10))
        .await
        .expect("an alert e-mail");
    let alert_id = wait_until_delivered(&app, &alice.org_id).await;
    // Give a duplicate delivery every chance to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_eq!(sink.messages().len(), 1, "one e-mail");
    let mail = &mails[0];
    assert_eq!(mail.from, "alerts@aihub.test");
    assert_eq!(mail.to, vec!["ops@example.com", "cfo@example.com"]);
    assert_eq!(
        mail.header("subject").unwrap(),
        "[AI Hub] Budget \"Monthly spend\" reached 80% (12.00 of 15.00 USD)"
    );
    assert!(mail.body().contains(&alert_id.to_string()));

    assert_eq!(rx.bad.load(Ordering::SeqCst), 0, "every signature verified");
    assert_eq!(
        rx.calls.load(Ordering::SeqCst),
        2,
        "one failure, one success"
    );
    let events = rx.verified.lock().unwrap().clone();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["type"], "budget.threshold_crossed");
    assert_eq!(e["id"], alert_id.to_string());
    assert_eq!(e["data"]["budget_id"], b.id.to_string());
    assert_eq!(e["data"]["org_id"], alice.org_id);
    assert_eq!(e["data"]["threshold_percent"], 80);
    assert_eq!(e["data"]["amount"], "15");
    assert_eq!(e["data"]["spent_micros"], 12_000_000);
    assert_eq!(e["data"]["period"], "monthly");
    assert_eq!(e["data"]["scope_type"], "org");

    let r = app
        .get(
            &format!("/api/v1/orgs/{}/alerts/{alert_id}", alice.org_id),
            &alice.token,
        )
        .await;
    let text = r.text().await.unwrap();
    assert!(!text.contains(SECRET));
    let view: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(view["webhook"]["status"], "delivered");
    assert_eq!(view["webhook"]["attempts"], 2);
    assert_eq!(view["webhook"]["last_error"], "HTTP 500");
    assert_eq!(view["email"]["status"], "delivered");
    assert_eq!(view["email"]["attempts"], 1);
    assert!(
        !captured_logs().contains(SECRET),
        "the webhook secret is never logged"
    );

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .unwrap()
        .unwrap();
    server.abort();
}

/// The id of the org's only alert once both of its channels are delivered.
async fn wait_until_delivered(app: &TestApp, org_id: &str) -> Uuid {
    let org = org_of(org_id);
    for _ in 0..200 {
        let alerts = app
            .state
            .services
            .store
            .list_budget_alerts(org, None, None, 10)
            .await
            .unwrap();
        assert!(alerts.len() <= 1, "one alert per crossing");
        if let Some(a) = alerts.first()
            && a.webhook.status == DeliveryStatus::Delivered
            && a.email.status == DeliveryStatus::Delivered
        {
            return a.id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the alert was not delivered within 10 s");
}
