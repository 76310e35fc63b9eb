//! Three gateway processes sharing one PostgreSQL database and one Redis: a budget holds
//! exactly across them under 64 concurrent clients, and a rate limit allows between L and
//! 1.02·L requests in its window, not three times L.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aihub_store::BackendKind;
use aihub_store::testing::TestDb;
use serde_json::{Value, json};

mod common;

use common::{aihub, serve};

const PASSWORD: &str = "cluster test password";

struct Instance {
    child: Child,
    base: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, n: usize) -> Instance {
    let mut cmd = aihub(dir);
    cmd.arg("serve").env(
        "AIHUB__USAGE__JOURNAL_DIR",
        dir.join(format!("journal-{n}")),
    );
    let (child, base) = serve(cmd);
    Instance { child, base }
}

struct Admin {
    client: reqwest::Client,
    base: String,
    token: String,
    org: String,
}

impl Admin {
    async fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    async fn get(&self, path: &str) -> Value {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A new key and its id.
    async fn key(&self, name: &str) -> (String, String) {
        let k = self
            .post(
                &format!("/api/v1/orgs/{}/keys", self.org),
                json!({"name": name}),
            )
            .await;
        (
            k["id"].as_str().unwrap().to_owned(),
            k["key"].as_str().unwrap().to_owned(),
        )
    }
}

async fn sign_in(base: &str) -> Admin {
    let client = reqwest::Client::new();
    let login: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": "ops@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_owned();
    let orgs: Value = client
        .get(format!("{base}/api/v1/orgs"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Admin {
        org: orgs["data"][0]["id"].as_str().unwrap().to_owned(),
        client,
        base: base.to_owned(),
        token,
    }
}

fn chat(max_tokens: u64) -> Value {
    json!({
        "model": "mock-chat",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "Say something."}]
    })
}

async fn code(r: reqwest::Response) -> String {
    let v: Value = r.json().await.unwrap_or_default();
    v["error"]["code"].as_str().unwrap_or_default().to_owned()
}

#[cfg_attr(
    not(all(aihub_pg, aihub_redis)),
    ignore = "set AIHUB_TEST_DATABASE_URL and AIHUB_TEST_REDIS_URL to run the cluster test"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_budgets_and_limits() {
    let db = TestDb::new(BackendKind::Postgres).await;
    let redis = std::env::var("AIHUB_TEST_REDIS_URL").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("aihub.toml"),
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace_secs = 1
[database]
url = "{db}"
[redis]
url = "{redis}"
timeout_ms = 500
key_prefix = "aihub-cluster-test:{run}:"
[usage]
load_interval_ms = 50
[limits]
default_plan = ""
policy_cache_ttl_secs = 1
[log]
level = "info"
"#,
            db = db.config.url,
            run = uuid::Uuid::now_v7().simple(),
        ),
    )
    .unwrap();
    let migrated = aihub(dir.path()).arg("migrate").output().unwrap();
    assert!(migrated.status.success());
    let created = aihub(dir.path())
        .args(["admin", "create-user", "--email", "ops@example.com"])
        .env("AIHUB_ADMIN_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let nodes: Vec<Instance> = (0..3).map(|n| start(dir.path(), n)).collect();
    let bases: Arc<Vec<String>> = Arc::new(nodes.iter().map(|n| n.base.clone()).collect());
    let admin = sign_in(&bases[0]).await;

    // A budget of 0.006 USD on one key, hammered by 64 clients spread over the three nodes.
    let (key_id, key) = admin.key("budget").await;
    let budget = admin
        .post(
            &format!("/api/v1/orgs/{}/budgets", admin.org),
            json!({"scope_type": "key", "scope_id": key_id, "amount": "0.006", "currency": "USD"}),
        )
        .await;
    let ok = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..64usize {
        let (bases, key, ok) = (bases.clone(), key.clone(), ok.clone());
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut i = c;
            loop {
                i += 1;
                let r = client
                    .post(format!("{}/v1/chat/completions", bases[i % 3]))
                    .bearer_auth(&key)
                    .json(&chat(50))
                    .send()
                    .await
                    .unwrap();
                match r.status().as_u16() {
                    200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    429 => {
                        assert_eq!(code(r).await, "budget_exceeded");
                        return;
                    }
                    s => panic!("unexpected status {s}: {}", code(r).await),
                }
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let served = ok.load(Ordering::Relaxed);
    let store = aihub_store::Store::connect(&db.config).await.unwrap();
    let org = aihub_core::OrgId::from_uuid(admin.org.parse().unwrap());
    let mut spent = -1;
    for _ in 0..200 {
        let totals = store
            .usage_totals(
                org,
                0,
                i64::from(i32::MAX),
                aihub_store::UsageGrouping::Model,
            )
            .await
            .unwrap();
        let loaded: i64 = totals.iter().map(|t| t.requests - t.errors).sum();
        if u64::try_from(loaded).unwrap() >= served {
            spent = totals.iter().map(|t| t.cost_micros).sum();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("3 nodes, budget 6000 micro-USD: {served} requests served, {spent} spent");
    assert!(served >= 20, "served only {served}");
    assert!(spent > 0 && spent <= 6000, "spent {spent} of 6000");
    let live = admin
        .get(&format!(
            "/api/v1/orgs/{}/budgets/{}",
            admin.org,
            budget["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(live["spent_micros"], spent, "{live}");
    assert_eq!(live["reserved_micros"], 0);

    // A rate limit of L requests per minute on a fresh key: 3 nodes together allow L (the
    // bucket) plus what refills while the burst lasts, never 3·L.
    let limit = 300u64;
    let (key_id, key) = admin.key("rate").await;
    admin
        .post(
            &format!("/api/v1/orgs/{}/limits", admin.org),
            json!({"scope_type": "key", "scope_id": key_id, "rpm": limit}),
        )
        .await;
    // The node that took the change applies it at once; the others within the policy cache's
    // lifetime (`limits.policy_cache_ttl_secs`).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let allowed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..48usize {
        let (bases, key, allowed) = (bases.clone(), key.clone(), allowed.clone());
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0..10usize {
                let r = client
                    .post(format!("{}/v1/chat/completions", bases[(c + i) % 3]))
                    .bearer_auth(&key)
                    .json(&chat(4))
                    .send()
                    .await
                    .unwrap();
                match r.status().as_u16() {
                    200 => {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                    429 => assert_eq!(code(r).await, "rpm_limit_exceeded"),
                    s => panic!("unexpected status {s}"),
                }
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let window = started.elapsed();
    let allowed = allowed.load(Ordering::Relaxed);
    // What refilled during the window (at L per minute), rounded up.
    let refill = (u128::from(limit) * window.as_millis()).div_ceil(60_000);
    let refill = u64::try_from(refill).unwrap();
    println!(
        "3 nodes, {limit} rpm: {allowed} of 480 allowed in {window:?} (refill {refill}, 1.02·L = {})",
        limit * 102 / 100
    );
    assert!(allowed >= limit, "allowed {allowed} < L = {limit}");
    assert!(
        allowed <= (limit * 102 / 100).max(limit + refill),
        "allowed {allowed} > max(1.02·L, L + refill {refill})"
    );
    drop(nodes);
}
