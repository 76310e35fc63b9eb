//! Limits and budgets enforced on `/v1` requests, end to end: headers and 429s, the plan's
//! limits and quota, a budget under 64 concurrent clients, alerts crossing their thresholds,
//! and the official SDK's view of a 429.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aihub_mock_upstream::smtp::SmtpSink;
use aihub_store::BackendKind;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, api_tests, error_code, request_id, spawn_app, spawn_app_with};

api_tests!(
    rate_limits_answer_with_headers_and_429s,
    the_plan_applies_when_assigned,
    a_plan_quota_refuses_once_used,
    a_budget_holds_under_64_concurrent_clients,
    alerts_fire_once_per_threshold,
);

fn chat(max_tokens: u64) -> Value {
    json!({
        "model": "mock-chat",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "Say something."}]
    })
}

async fn add_limit(app: &TestApp, token: &str, org: &str, body: Value) -> Value {
    let r = app
        .post(&format!("/api/v1/orgs/{org}/limits"), token, body)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json().await.unwrap()
}

async fn add_budget(app: &TestApp, token: &str, org: &str, body: Value) -> Value {
    let r = app
        .post(&format!("/api/v1/orgs/{org}/budgets"), token, body)
        .await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{v}");
    v
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

async fn rate_limits_answer_with_headers_and_429s(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let (who, key) = app.user_with_key("rl@example.com", None).await;
    let keys: Value = app
        .get(&format!("/api/v1/orgs/{}/keys", who.org_id), &who.token)
        .await
        .json()
        .await
        .unwrap();
    let key_id = keys["data"][0]["id"].as_str().unwrap().to_owned();
    add_limit(
        &app,
        &who.token,
        &who.org_id,
        json!({"scope_type": "key", "scope_id": key_id, "rpm": 3, "tpm": 100000}),
    )
    .await;
    for left in (0..3).rev() {
        let r = app.v1("/v1/chat/completions", &key, chat(8)).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "x-ratelimit-limit-requests"), "3");
        assert_eq!(
            header(&r, "x-ratelimit-remaining-requests"),
            left.to_string()
        );
        let reset = header(&r, "x-ratelimit-reset-requests");
        assert!(reset.ends_with('s'), "{reset}");
        assert_eq!(header(&r, "x-ratelimit-limit-tokens"), "100000");
        let tokens_left: u64 = header(&r, "x-ratelimit-remaining-tokens").parse().unwrap();
        assert!(tokens_left < 100_000);
    }
    let r = app.v1("/v1/chat/completions", &key, chat(8)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "0");
    let id = request_id(&r);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rpm_limit_exceeded");
    assert_eq!(v["error"]["type"], "requests");
    // The refused request has its usage record too, costing nothing.
    let rec = app.usage_record(&id).await;
    assert_eq!(rec.status, 429);
    assert_eq!(rec.error_code.as_deref(), Some("rpm_limit_exceeded"));
    assert_eq!(rec.cost_micros, 0);

    // A prompt plus max_tokens larger than the whole TPM limit can never pass.
    let (_, key2) = {
        let (id2, k2) = app.create_key(&who, json!({"name": "small"})).await;
        add_limit(
            &app,
            &who.token,
            &who.org_id,
            json!({"scope_type": "key", "scope_id": id2, "tpm": 50}),
        )
        .await;
        (id2, k2)
    };
    let r = app.v1("/v1/chat/completions", &key2, chat(100)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "x-should-retry"), "false");
    assert_eq!(error_code(r).await, "tpm_limit_exceeded");
}

async fn the_plan_applies_when_assigned(kind: BackendKind) {
    let app = spawn_app_with(kind, |c| c.limits.default_plan = Some("free".into())).await;
    let (_, key) = app.user_with_key("plan@example.com", None).await;
    // The free plan: 20 requests per minute, 2 at once.
    let r = app.v1("/v1/chat/completions", &key, chat(4)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "x-ratelimit-limit-requests"), "20");
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "19");
    let mut refused = 0;
    for _ in 0..25 {
        let r = app.v1("/v1/chat/completions", &key, chat(4)).await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
            assert_eq!(error_code(r).await, "rpm_limit_exceeded");
        }
    }
    // 20 in the bucket, one already used, and at most one refilled during the loop.
    assert!((5..=6).contains(&refused), "{refused}");
}

/// A plan with a small monthly token quota, assigned by the platform admin: requests pass until
/// the quota cannot cover one more (prompt bytes + max_tokens reserved), then `quota_exceeded`.
async fn a_plan_quota_refuses_once_used(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let root = app.platform_admin().await;
    let (who, key) = app.user_with_key("quota@example.com", None).await;
    let r = app
        .post(
            "/api/v1/admin/plans",
            &root,
            json!({"name": "tiny", "monthly_tokens": 1000}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .req(
            reqwest::Method::PUT,
            &format!("/api/v1/admin/orgs/{}/plan", who.org_id),
            Some(&root),
        )
        .json(&json!({"plan": "tiny"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut served = 0;
    let code = loop {
        let r = app.v1("/v1/chat/completions", &key, chat(20)).await;
        if r.status() != StatusCode::OK {
            assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(header(&r, "x-should-retry"), "false");
            let retry: u64 = header(&r, "retry-after").parse().unwrap();
            assert!(retry <= 31 * 86_400, "{retry}");
            break error_code(r).await;
        }
        served += 1;
        assert!(served < 100, "the quota never refused");
    };
    assert_eq!(code, "quota_exceeded");
    // Each request reserves ~100 prompt bytes + 20 tokens and uses ~30: several fit in 1000.
    assert!(served >= 5, "served {served}");
    // The quota endpoint reports the plan and what was used.
    for _ in 0..100 {
        let v: Value = app
            .get(&format!("/api/v1/orgs/{}/quota", who.org_id), &who.token)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["plan"]["name"], "tiny", "{v}");
        let used = v["tokens_used"].as_i64().unwrap();
        if used > 0 {
            assert!(used <= 1000, "{used}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("quota usage never appeared");
}

/// 64 clients hammer one key whose budget fits a known number of requests. With an upstream
/// that honours `max_tokens` (the mock does), spend never exceeds the budget.
async fn a_budget_holds_under_64_concurrent_clients(kind: BackendKind) {
    let app = spawn_app(kind).await;
    let (who, key) = app.user_with_key("budget@example.com", None).await;
    let keys: Value = app
        .get(&format!("/api/v1/orgs/{}/keys", who.org_id), &who.token)
        .await
        .json()
        .await
        .unwrap();
    let key_id = keys["data"][0]["id"].as_str().unwrap().to_owned();
    // One request costs about 20 prompt tokens at $1/M plus 50 completion tokens at $2/M,
    // ~120 micro-USD: 0.006 USD fits about 50 of them.
    let budget = add_budget(
        &app,
        &who.token,
        &who.org_id,
        json!({"scope_type": "key", "scope_id": key_id, "amount": "0.006", "currency": "USD", "period": "monthly"}),
    )
    .await;
    let budget_id = budget["id"].as_str().unwrap().to_owned();
    let ok = Arc::new(AtomicU64::new(0));
    let app = Arc::new(app);
    let mut clients = Vec::new();
    for _ in 0..64 {
        let (app, key, ok) = (app.clone(), key.clone(), ok.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let r = app.v1("/v1/chat/completions", &key, chat(50)).await;
                match r.status() {
                    StatusCode::OK => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    StatusCode::TOO_MANY_REQUESTS => {
                        assert_eq!(error_code(r).await, "budget_exceeded");
                        return;
                    }
                    s => panic!("unexpected {s}"),
                }
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let served = ok.load(Ordering::Relaxed);
    // Every record loaded: the database's spend is the truth.
    let mut spent = 0;
    for _ in 0..200 {
        let (loaded, cost) = org_usage(&app, &who).await;
        if loaded >= served {
            spent = cost;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    println!("budget 6000 micro-USD: {served} requests served, {spent} micro-USD spent");
    assert!(
        served >= 20,
        "the budget should fit dozens of requests, served {served}"
    );
    assert!(spent > 0 && spent <= 6000, "spent {spent} of a 6000 budget");
    // The live figures agree with the database once nothing is in flight.
    let v: Value = app
        .get(
            &format!("/api/v1/orgs/{}/budgets/{budget_id}", who.org_id),
            &who.token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["spent_micros"], spent);
    assert_eq!(v["reserved_micros"], 0);
    assert_eq!(v["remaining_micros"], 6000 - spent);
}

/// Successful requests and their cost in the organization's stored usage.
async fn org_usage(app: &TestApp, who: &crate::helpers::Signed) -> (u64, i64) {
    let v: Value = app
        .get(
            &format!("/api/v1/orgs/{}/usage?group_by=model", who.org_id),
            &who.token,
        )
        .await
        .json()
        .await
        .unwrap();
    let mut ok = 0;
    let mut cost = 0;
    for b in v["data"].as_array().unwrap() {
        ok += b["requests"].as_u64().unwrap() - b["errors"].as_u64().unwrap();
        cost += b["cost_micros"].as_i64().unwrap();
    }
    (ok, cost)
}

/// One webhook call as received.
#[derive(Clone)]
struct Call {
    signature: String,
    body: Vec<u8>,
}

impl Call {
    /// Checks `aihub-signature: t=<ts>,v1=<hex>` against HMAC-SHA256(secret, "<ts>.<body>"),
    /// computed here independently of the sender's code.
    fn verify(&self, secret: &str) -> bool {
        use hmac::{Hmac, Mac};
        let mut ts = None;
        let mut v1 = None;
        for part in self.signature.split(',') {
            match part.split_once('=') {
                Some(("t", t)) => ts = Some(t.to_owned()),
                Some(("v1", h)) => v1 = Some(h.to_owned()),
                _ => {}
            }
        }
        let (Some(ts), Some(v1)) = (ts, v1) else {
            return false;
        };
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(ts.as_bytes());
        mac.update(b".");
        mac.update(&self.body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        hex == v1
    }
}

/// A webhook receiver on a real port that records every call.
struct Hooks {
    url: String,
    calls: Arc<std::sync::Mutex<Vec<Call>>>,
}

impl Hooks {
    async fn start() -> Self {
        let calls: Arc<std::sync::Mutex<Vec<Call>>> = Arc::default();
        let seen = calls.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let seen = seen.clone();
                    async move {
                        let signature = headers
                            .get("aihub-signature")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        seen.lock().unwrap().push(Call {
                            signature,
                            body: body.to_vec(),
                        });
                        StatusCode::NO_CONTENT
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, calls }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize, timeout: Duration) -> Option<Vec<Call>> {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            let calls = self.calls();
            if calls.len() >= n {
                return Some(calls);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

async fn alerts_fire_once_per_threshold(kind: BackendKind) {
    let sink = SmtpSink::start().await.unwrap();
    let hooks = Hooks::start().await;
    let port = sink.port();
    let app = spawn_app_with(kind, move |c| {
        c.smtp.host = Some("127.0.0.1".into());
        c.smtp.port = port;
        c.smtp.security = aihub_core::config::SmtpSecurity::None;
        c.alerts.retry_base_ms = 20;
    })
    .await;
    let (who, key) = app.user_with_key("alerts@example.com", None).await;
    let budget = add_budget(
        &app,
        &who.token,
        &who.org_id,
        json!({
            "scope_type": "org", "amount": "0.001", "currency": "USD", "period": "daily",
            "webhook_url": hooks.url, "alert_emails": ["finance@example.com"]
        }),
    )
    .await;
    let secret = budget["webhook_secret"].as_str().unwrap().to_owned();
    // ~120 micro-USD each: 80% (800) is crossed after 7 requests, 100% after 9; the budget then
    // refuses. Keep going past both marks.
    for _ in 0..15 {
        let r = app.v1("/v1/chat/completions", &key, chat(50)).await;
        assert!(r.status() == StatusCode::OK || r.status() == StatusCode::TOO_MANY_REQUESTS);
    }
    let mails = sink
        .wait_for(2, Duration::from_secs(10))
        .await
        .expect("two alert e-mails");
    let calls = hooks
        .wait_for(2, Duration::from_secs(10))
        .await
        .expect("two webhooks");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.messages().len(), 2, "exactly one e-mail per threshold");
    assert_eq!(hooks.calls().len(), 2, "exactly one webhook per threshold");
    let mut thresholds: Vec<u64> = calls
        .iter()
        .map(|c| {
            assert!(c.verify(&secret), "webhook signature must verify");
            let v: Value = serde_json::from_slice(&c.body).unwrap();
            v["data"]["threshold_percent"].as_u64().unwrap()
        })
        .collect();
    thresholds.sort_unstable();
    assert_eq!(thresholds, [80, 100]);
    assert!(
        mails
            .iter()
            .all(|m| m.to.iter().any(|t| t.contains("finance@example.com")))
    );
    let listed: Value = app
        .get(&format!("/api/v1/orgs/{}/alerts", who.org_id), &who.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
}

/// The same refusals with counters in this process and in Redis: a rate limit, a concurrency
/// limit, a spent `total` budget with the `throttle` policy, and a plan's spend quota.
async fn refusals_match_across_counter_stores(redis: Option<String>) {
    let app = spawn_app_with(BackendKind::Sqlite, move |c| {
        if let Some(url) = redis {
            c.redis.url = Some(aihub_core::secret::Secret::new(url));
            c.redis.timeout_ms = 2000;
            c.redis.key_prefix = format!("aihub-test:{}:", uuid::Uuid::now_v7().simple());
        }
        // Slow enough for two requests to overlap.
        c.providers[0].mock_latency_ms = 300;
    })
    .await;
    let root = app.platform_admin().await;
    let who = app.signup("stores@example.com").await;
    let org = who.org_id.clone();

    // Concurrency: one at a time on this key.
    let (id, key) = app.create_key(&who, json!({"name": "one"})).await;
    add_limit(
        &app,
        &who.token,
        &org,
        json!({"scope_type": "key", "scope_id": id, "concurrency": 1}),
    )
    .await;
    let (a, b) = tokio::join!(
        app.v1("/v1/chat/completions", &key, chat(4)),
        app.v1("/v1/chat/completions", &key, chat(4))
    );
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS]);
    let refused = if a.status() == StatusCode::OK { b } else { a };
    assert_eq!(header(&refused, "retry-after"), "1");
    assert_eq!(error_code(refused).await, "concurrency_limit_exceeded");
    // The slot is free again once the first has finished and been settled (with Redis, the
    // settlement runs right after the response: a loaded machine may take a moment).
    let mut third = app.v1("/v1/chat/completions", &key, chat(4)).await;
    for _ in 0..20 {
        if third.status() == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        third = app.v1("/v1/chat/completions", &key, chat(4)).await;
    }
    assert_eq!(
        third.status(),
        StatusCode::OK,
        "{}",
        third.text().await.unwrap()
    );

    // A per-model rate limit binds only that model.
    let (id, key) = app.create_key(&who, json!({"name": "per-model"})).await;
    add_limit(
        &app,
        &who.token,
        &org,
        json!({"scope_type": "key", "scope_id": id, "model": "mock-chat", "rpm": 1}),
    )
    .await;
    assert_eq!(
        app.v1("/v1/chat/completions", &key, chat(4)).await.status(),
        StatusCode::OK
    );
    let r = app.v1("/v1/chat/completions", &key, chat(4)).await;
    assert_eq!(error_code(r).await, "rpm_limit_exceeded");
    let emb = app
        .v1(
            "/v1/embeddings",
            &key,
            json!({"model": "mock-embedding", "input": "x"}),
        )
        .await;
    assert_eq!(emb.status(), StatusCode::OK);

    // A total budget of one micro-dollar with the throttle policy: spent at once, then one
    // request per minute still passes; the next is refused with no Retry-After (never resets).
    let (id, key) = app.create_key(&who, json!({"name": "throttled"})).await;
    add_budget(
        &app,
        &who.token,
        &org,
        json!({"scope_type": "key", "scope_id": id, "name": "tiny", "amount": "0.000001",
               "currency": "USD", "period": "total", "policy": "throttle", "throttle_rpm": 1}),
    )
    .await;
    assert_eq!(
        app.v1("/v1/chat/completions", &key, chat(4)).await.status(),
        StatusCode::OK
    );
    let r = app.v1("/v1/chat/completions", &key, chat(4)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get("retry-after").is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "budget_exceeded");
    assert_eq!(v["error"]["type"], "insufficient_quota");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"tiny\"") && message.contains("in total"),
        "{message}"
    );

    // A plan with a monthly spend quota.
    let r = app
        .post(
            "/api/v1/admin/plans",
            &root,
            json!({"name": "pennies", "monthly_spend": "0.0005"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .req(
            reqwest::Method::PUT,
            &format!("/api/v1/admin/orgs/{org}/plan"),
            Some(&root),
        )
        .json(&json!({"plan": "pennies"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, key) = app.create_key(&who, json!({"name": "quota"})).await;
    let mut served = 0;
    loop {
        let r = app.v1("/v1/chat/completions", &key, chat(20)).await;
        if r.status() != StatusCode::OK {
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "quota_exceeded");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("spend quota")
            );
            break;
        }
        served += 1;
        assert!(served < 50, "the spend quota never refused");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_with_in_process_counters() {
    refusals_match_across_counter_stores(None).await;
}

#[cfg_attr(
    not(aihub_redis),
    ignore = "set AIHUB_TEST_REDIS_URL to run Redis tests"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_with_redis_counters() {
    refusals_match_across_counter_stores(std::env::var("AIHUB_TEST_REDIS_URL").ok()).await;
}
