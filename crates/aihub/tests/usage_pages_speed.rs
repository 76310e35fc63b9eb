//! The dashboard's usage pages stay fast on a busy organization: 1,000,000 usage records over 90
//! days (with their daily rollups), several models, keys, users and teams, on SQLite, served by
//! a running `aihub serve`. The overview, the usage page for each split and the CSV download
//! are timed; each must answer well within a second, because they read the rollups and indexed
//! queries, never a scan of the records.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::path::Path;
use std::time::{Duration, Instant};

use aihub_core::OrgId;
use aihub_core::time::now;
use aihub_store::BackendKind;
use aihub_store::testing::{SyntheticUsage, TestDb};
use aihub_store::usage::day_of;
use serde_json::{Value, json};
use uuid::Uuid;

mod common;

use common::{aihub, serve};

const PASSWORD: &str = "speed test password";
const ROWS: i64 = 1_000_000;
const DAYS: i64 = 90;
/// Each page must answer within this, in a debug build on a small shared machine.
const BOUND: Duration = Duration::from_secs(1);

fn write_config(dir: &Path, db_url: &str) {
    std::fs::write(
        dir.join("aihub.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[database]\nurl = \"{db_url}\"\n\
             [usage]\njournal_dir = \"{}\"\n[log]\nlevel = \"info\"\n[limits]\ndefault_plan = \"\"\n",
            dir.join("journal").display()
        ),
    )
    .unwrap();
}

async fn created_id(r: reqwest::Response) -> Uuid {
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    v["id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_pages_of_a_million_records_render_within_a_second() {
    let db = TestDb::new(BackendKind::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &db.config.url);
    let out = aihub(dir.path())
        .args(["admin", "create-user", "--email", "owner@example.com"])
        .env("AIHUB_ADMIN_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let org: OrgId = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap()
        .parse()
        .unwrap();

    let mut cmd = aihub(dir.path());
    cmd.arg("serve");
    let (child, base) = serve(cmd);
    let child = Stopped(child);
    let client = reqwest::Client::new();
    let login: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": "owner@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_owned();
    let me: Value = client
        .get(format!("{base}/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let owner: Uuid = me["id"].as_str().unwrap().parse().unwrap();

    // Named keys and teams, a budget on each kind of scope, and a plan quota.
    let api = format!("{base}/api/v1/orgs/{org}");
    let post = |path: &str, body: Value| {
        client
            .post(format!("{api}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let mut teams = Vec::new();
    for name in ["red", "green", "blue"] {
        teams.push(created_id(post("/teams", json!({"name": name})).await.unwrap()).await);
    }
    let mut keys = Vec::new();
    for i in 0..8 {
        keys.push(
            created_id(
                post("/keys", json!({"name": format!("key {i}")}))
                    .await
                    .unwrap(),
            )
            .await,
        );
    }
    for body in [
        json!({"scope_type": "org", "amount": "1000", "period": "monthly"}),
        json!({"scope_type": "key", "scope_id": keys[0], "amount": "10", "period": "daily"}),
        json!({"scope_type": "team", "scope_id": teams[0], "amount": "100", "period": "weekly"}),
        json!({"scope_type": "user", "scope_id": owner, "amount": "500", "period": "total"}),
    ] {
        created_id(post("/budgets", body).await.unwrap()).await;
    }
    // Six users (one real, five gone), each key used by one of them in one team; and requests
    // without a key.
    let users: Vec<Uuid> = std::iter::once(owner)
        .chain((0..5).map(|_| Uuid::now_v7()))
        .collect();
    let mut callers: Vec<(Option<Uuid>, Option<Uuid>, Option<Uuid>)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            (
                Some(users[i % users.len()]),
                Some(teams[i % teams.len()]),
                Some(*k),
            )
        })
        .collect();
    callers.push((Some(owner), None, None));
    callers.push((None, None, None));
    let today = day_of(now());
    let load = SyntheticUsage {
        org,
        rows: ROWS,
        first_day: today - DAYS + 1,
        days: DAYS,
        callers,
        models: [
            "gpt-4o",
            "gpt-4o-mini",
            "claude-sonnet",
            "deepseek-chat",
            "mock-chat",
        ]
        .map(str::to_owned)
        .to_vec(),
    };
    let started = Instant::now();
    let store = db.store().await;
    store.insert_synthetic_usage(&load).await.unwrap();
    assert_eq!(store.usage_count().await.unwrap(), ROWS);
    store.close().await;
    println!(
        "seeded {ROWS} usage records over {DAYS} days in {:?}",
        started.elapsed()
    );

    let cookie = format!("aihub_session={token}");
    let get = |path: String| {
        let client = client.clone();
        let cookie = cookie.clone();
        let base = base.clone();
        async move {
            let t = Instant::now();
            let r = client
                .get(format!("{base}{path}"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body = r.text().await.unwrap();
            (t.elapsed(), status, body)
        }
    };
    // Warm up the connection, the session and the page cache.
    let (_, status, _) = get(format!("/?org={org}")).await;
    assert_eq!(status, 200);

    let first = aihub_store::usage::date_of_day(load.first_day);
    let last = aihub_store::usage::date_of_day(today);
    let range = format!("org={org}&from={first}&to={last}");
    let mut pages = vec![("overview".to_owned(), format!("/?org={org}"))];
    for by in ["model", "key", "user", "team"] {
        pages.push((format!("usage by {by}"), format!("/usage?{range}&by={by}")));
    }
    pages.push((
        "usage, default range".to_owned(),
        format!("/usage?org={org}"),
    ));
    pages.push((
        "usage.csv by key".to_owned(),
        format!("/usage.csv?{range}&by=key"),
    ));
    pages.push((
        "usage.csv by model".to_owned(),
        format!("/usage.csv?{range}&by=model"),
    ));
    let mut slowest = Duration::ZERO;
    for (name, path) in pages {
        let (took, status, body) = get(path.clone()).await;
        assert_eq!(status, 200, "{path}: {body}");
        println!(
            "{name:>22}: {:>6.1} ms ({} bytes)",
            took.as_secs_f64() * 1000.0,
            body.len()
        );
        if path.starts_with("/usage?") && path.contains("&from=") {
            assert!(body.contains("<svg id=\"chart-requests\""), "{name}");
            assert!(
                body.contains("id=\"usage-older\""),
                "{name}: the request table pages"
            );
        }
        if name == "overview" {
            assert!(body.contains("id=\"recent-errors\""));
            assert_eq!(body.matches("<tr id=\"error-").count(), 10);
            assert!(body.contains("data-state="), "budget bars");
        }
        if name == "usage.csv by model" {
            // 90 days × 5 models, one currency.
            assert_eq!(body.lines().count(), 1 + 90 * 5, "{name}");
        }
        if name == "usage by model" {
            let total: i64 = body
                .split("id=\"usage-total-requests\">")
                .nth(1)
                .and_then(|s| s.split('<').next())
                .and_then(|s| s.parse().ok())
                .unwrap();
            assert_eq!(total, ROWS, "every record is counted, from the rollups");
        }
        slowest = slowest.max(took);
        assert!(took < BOUND, "{name} took {took:?}");
    }
    println!("slowest page: {slowest:?}");
    drop(child);
}

/// The server, stopped when the test ends, also when it fails (a server left running would
/// hold the test's output open).
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
