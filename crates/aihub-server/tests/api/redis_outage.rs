//! Redis unreachable or frozen: no request waits past `redis.timeout_ms`; rate limits fail open
//! (this instance's own counters apply), budgets fail closed (503 `budget_unavailable`); when
//! Redis is back, and even empty, budgets are rebuilt from the database. These tests start
//! their own `redis-server` on a free port and never touch the shared one.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aihub_store::BackendKind;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, spawn_app_with};

struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for the Redis outage tests");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    fn stop(mut self) -> u16 {
        self.signal("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn chat() -> Value {
    json!({"model": "mock-chat", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
}

/// Sends a request and returns its status, error code and how long it took.
async fn timed(app: &TestApp, key: &str) -> (StatusCode, String, Duration) {
    let t = Instant::now();
    let r = app.v1("/v1/chat/completions", key, chat()).await;
    let status = r.status();
    let code = if status.is_success() {
        String::new()
    } else {
        error_code(r).await
    };
    (status, code, t.elapsed())
}

#[cfg_attr(
    not(aihub_redis),
    ignore = "set AIHUB_TEST_REDIS_URL (redis-server installed) to run Redis tests"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_or_stopped_follows_the_fail_modes() {
    let redis = RedisServer::start(free_port());
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let app = spawn_app_with(BackendKind::Sqlite, move |c| {
        c.redis.url = Some(aihub_core::secret::Secret::new(url));
        c.redis.timeout_ms = 50;
        c.redis.retry_after_failure_ms = 300;
        // Every request goes to Redis (with leases, requests the leases cover would still
        // be served while it is down).
        c.limits.leases = false;
    })
    .await;
    let (who, limited) = app.user_with_key("redis@example.com", None).await;
    let (limited_id, _) = {
        let keys: Value = app
            .get(&format!("/api/v1/orgs/{}/keys", who.org_id), &who.token)
            .await
            .json()
            .await
            .unwrap();
        (keys["data"][0]["id"].as_str().unwrap().to_owned(), ())
    };
    let r = app
        .post(
            &format!("/api/v1/orgs/{}/limits", who.org_id),
            &who.token,
            json!({"scope_type": "key", "scope_id": limited_id, "rpm": 10000}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (budgeted_id, budgeted) = app.create_key(&who, json!({"name": "budgeted"})).await;
    let r = app
        .post(
            &format!("/api/v1/orgs/{}/budgets", who.org_id),
            &who.token,
            json!({"scope_type": "key", "scope_id": budgeted_id, "amount": "1", "currency": "USD"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let budget: Value = r.json().await.unwrap();

    // Healthy: both served, limits counted in Redis.
    for key in [&limited, &budgeted] {
        let (s, _, _) = timed(&app, key).await;
        assert_eq!(s, StatusCode::OK);
    }

    // Frozen (SIGSTOP): the connection is open but nothing answers.
    redis.signal("STOP");
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let (s, code, took) = timed(&app, &budgeted).await;
        assert_eq!(
            (s, code.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "budget_unavailable")
        );
        slowest = slowest.max(took);
        let (s, _, took) = timed(&app, &limited).await;
        assert_eq!(s, StatusCode::OK, "limits fail open");
        slowest = slowest.max(took);
    }
    println!("Redis frozen: slowest request {slowest:?}");
    assert!(slowest < Duration::from_millis(500), "{slowest:?}");

    // Thawed: after the cool-down, back to normal.
    redis.signal("CONT");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (s, _, _) = timed(&app, &budgeted).await;
    assert_eq!(s, StatusCode::OK);

    // Stopped: connection refused, the same fail modes, no waiting.
    let port = redis.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let (s, code, took) = timed(&app, &budgeted).await;
        assert_eq!(
            (s, code.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "budget_unavailable")
        );
        slowest = slowest.max(took);
        let (s, _, took) = timed(&app, &limited).await;
        assert_eq!(s, StatusCode::OK);
        slowest = slowest.max(took);
    }
    println!("Redis stopped: slowest request {slowest:?}");
    assert!(slowest < Duration::from_millis(500), "{slowest:?}");

    // Back, and empty: the budget's spend is rebuilt from the database.
    let _redis = RedisServer::start(port);
    let mut served = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if timed(&app, &budgeted).await.0 == StatusCode::OK {
            served = true;
            break;
        }
    }
    assert!(served, "requests are served again once Redis is back");
    // Three successful budgeted requests in all; their spend is in the rebuilt ledger once the
    // database has them (the first two were loaded before Redis came back).
    let path = format!(
        "/api/v1/orgs/{}/budgets/{}",
        who.org_id,
        budget["id"].as_str().unwrap()
    );
    let mut spent = 0;
    for _ in 0..40 {
        let v: Value = app.get(&path, &who.token).await.json().await.unwrap();
        spent = v["spent_micros"].as_i64().unwrap();
        if spent > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(spent > 0, "spend rebuilt from the database");
}

/// The other fail modes: limits closed, budgets open, against a Redis address where nothing
/// listens (no server needed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fail_modes_can_be_reversed() {
    let port = free_port();
    let app = spawn_app_with(BackendKind::Sqlite, move |c| {
        c.redis.url = Some(aihub_core::secret::Secret::new(format!(
            "redis://127.0.0.1:{port}"
        )));
        c.redis.timeout_ms = 50;
        c.limits.on_redis_error_limits = aihub_core::config::FailMode::Closed;
        c.limits.on_redis_error_budgets = aihub_core::config::FailMode::Open;
    })
    .await;
    let who = app.signup("modes@example.com").await;
    let (limited_id, limited) = app.create_key(&who, json!({"name": "limited"})).await;
    let r = app
        .post(
            &format!("/api/v1/orgs/{}/limits", who.org_id),
            &who.token,
            json!({"scope_type": "key", "scope_id": limited_id, "rpm": 100}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (budgeted_id, budgeted) = app.create_key(&who, json!({"name": "budgeted"})).await;
    let r = app
        .post(
            &format!("/api/v1/orgs/{}/budgets", who.org_id),
            &who.token,
            json!({"scope_type": "key", "scope_id": budgeted_id, "amount": "1", "currency": "USD"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (_, plain) = app.create_key(&who, json!({"name": "plain"})).await;
    for _ in 0..3 {
        let (s, code, took) = timed(&app, &limited).await;
        assert_eq!(
            (s, code.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "limits_unavailable")
        );
        assert!(took < Duration::from_millis(500), "{took:?}");
        let (s, _, _) = timed(&app, &budgeted).await;
        assert_eq!(s, StatusCode::OK, "budgets fail open");
        // Nothing to check: Redis is not consulted at all.
        let (s, _, _) = timed(&app, &plain).await;
        assert_eq!(s, StatusCode::OK);
    }
}
