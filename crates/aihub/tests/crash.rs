//! Crash safety of metering: under concurrent load (streaming and not), the gateway process is
//! killed with SIGKILL, then started again. Every request whose response the client received
//! completely has exactly one usage record; every request the upstream served (its ledger) has
//! one too — those cut off by the crash are billed from their journal `Start` entry as
//! `interrupted`; nothing is counted twice, in the records or in the daily rollups.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aihub_core::config::DatabaseConfig;
use aihub_mock_upstream::{MockOptions, MockUpstream};
use aihub_store::{Store, UsageGrouping};
use futures_util::StreamExt;
use serde_json::{Value, json};

mod common;

use common::{aihub, serve};

const PASSWORD: &str = "crash test password";

/// Starts `aihub serve` and returns it with its address once it is serving.
fn start(dir: &Path) -> (Child, String) {
    let mut cmd = aihub(dir);
    cmd.arg("serve");
    serve(cmd)
}

#[derive(Default)]
struct Outcomes {
    /// Request ids whose response the client received completely.
    completed: Vec<String>,
    attempted: usize,
}

async fn load(
    base: String,
    key: String,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Outcomes>>,
    worker: usize,
) {
    let client = reqwest::Client::new();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let stream = (i + worker).is_multiple_of(2);
        let body = json!({"model": "m", "stream": stream, "max_tokens": 12, "messages": [{"role": "user", "content": format!("request {worker}-{i}")}]});
        out.lock().unwrap().attempted += 1;
        let Ok(r) = client
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
        else {
            continue;
        };
        let id = r
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let ok = r.status().is_success();
        let complete = if stream {
            let mut buf = Vec::new();
            let mut s = r.bytes_stream();
            let mut failed = false;
            while let Some(chunk) = s.next().await {
                match chunk {
                    Ok(c) => buf.extend_from_slice(&c),
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            !failed && buf.ends_with(b"data: [DONE]\n\n")
        } else {
            r.json::<Value>()
                .await
                .is_ok_and(|v| v["usage"]["completion_tokens"] == 12)
        };
        if ok
            && complete
            && let Some(id) = id
        {
            out.lock().unwrap().completed.push(id);
        }
    }
}

async fn login_and_key(base: &str) -> String {
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
    let token = login["token"].as_str().unwrap();
    let orgs: Value = client
        .get(format!("{base}/api/v1/orgs"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let org = orgs["data"][0]["id"].as_str().unwrap();
    let key: Value = client
        .post(format!("{base}/api/v1/orgs/{org}/keys"))
        .bearer_auth(token)
        .json(&json!({"name": "load"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    key["key"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockUpstream::start(MockOptions {
        chunk_interval: Duration::from_millis(3),
        latency: Duration::from_millis(2),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("aihub.db").display());
    std::fs::write(
        dir.path().join("aihub.toml"),
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace_secs = 2
[database]
url = "{db_url}"
[usage]
journal_dir = "{journal}"
load_interval_ms = 50
[log]
level = "info"
[limits]
default_plan = ""
[[providers]]
name = "up"
kind = "openai"
base_url = "{mock}/v1"
[[models]]
name = "m"
provider = "up"
"#,
            journal = dir.path().join("journal").display(),
            mock = mock.url(),
        ),
    )
    .unwrap();
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

    let (mut child, base) = start(dir.path());
    let key = login_and_key(&base).await;
    let out = Arc::new(Mutex::new(Outcomes::default()));
    let mut all_completed: Vec<String> = Vec::new();
    let mut served = base;
    for round in 0..2 {
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..16)
            .map(|w| {
                tokio::spawn(load(
                    served.clone(),
                    key.clone(),
                    stop.clone(),
                    out.clone(),
                    w,
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(1_500 + 300 * round)).await;
        // SIGKILL in the middle of the load.
        Command::new("kill")
            .arg("-KILL")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.await.unwrap();
        }
        let (c, s) = start(dir.path());
        child = c;
        served = s;
    }
    {
        let o = out.lock().unwrap();
        all_completed.extend(o.completed.iter().cloned());
        println!(
            "requests attempted {}, completed by the client {}",
            o.attempted,
            o.completed.len()
        );
    }
    let completed: HashSet<String> = all_completed.iter().cloned().collect();
    assert_eq!(
        completed.len(),
        all_completed.len(),
        "request ids are unique"
    );
    assert!(
        completed.len() > 100,
        "the load ran: {} completed",
        completed.len()
    );

    // Read the database while the restarted gateway loads what the journal holds.
    let store = Store::connect(&DatabaseConfig {
        url: db_url,
        ..DatabaseConfig::default()
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut missing: Vec<String>;
    loop {
        missing = Vec::new();
        for id in &completed {
            if store
                .usage_record(uuid::Uuid::parse_str(id).unwrap())
                .await
                .unwrap()
                .is_none()
            {
                missing.push(id.clone());
            }
        }
        if missing.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        missing.is_empty(),
        "{} completed requests have no usage record, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    for id in &completed {
        let r = store
            .usage_record(uuid::Uuid::parse_str(id).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.completion_tokens, 12, "{r:?}");
    }

    // Every request the upstream served is billed (those the crash cut off as `interrupted`).
    let charged: Vec<String> = mock
        .ledger()
        .into_iter()
        .filter_map(|l| l.request_id)
        .collect();
    let mut unbilled = 0;
    let mut interrupted = 0;
    for id in &charged {
        match store
            .usage_record(uuid::Uuid::parse_str(id).unwrap())
            .await
            .unwrap()
        {
            None => unbilled += 1,
            Some(r) if r.error_code.as_deref() == Some("interrupted") => interrupted += 1,
            Some(_) => {}
        }
    }
    let records = store.usage_count().await.unwrap();
    println!(
        "upstream charged {}, usage records {records}, completed {}, interrupted {interrupted}, unbilled {unbilled}",
        charged.len(),
        completed.len()
    );
    assert_eq!(
        unbilled, 0,
        "every request the upstream served has a usage record"
    );

    // No double counting: the rollups add up to the records exactly.
    let org = store
        .usage_record(uuid::Uuid::parse_str(&all_completed[0]).unwrap())
        .await
        .unwrap()
        .unwrap()
        .org_id;
    let day = aihub_store::usage::day_of(aihub_core::time::now());
    let totals = store
        .usage_totals(org, day - 1, day + 1, UsageGrouping::Day)
        .await
        .unwrap();
    let rolled: i64 = totals.iter().map(|t| t.requests).sum();
    assert_eq!(rolled, records, "daily rollups count each record once");

    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}
