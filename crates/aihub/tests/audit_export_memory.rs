//! Exports stream: 100,000 audit records of one organization, downloaded as CSV and as JSON from
//! a running `aihub serve`, arrive complete and in order while the server's peak resident memory
//! (VmHWM) grows by less than a few pages' worth — nowhere near the size of the export.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::path::Path;
use std::time::Instant;

use aihub_core::OrgId;
use aihub_core::time::now;
use aihub_store::BackendKind;
use aihub_store::audit::{ActorType, AuditRecord, GENESIS, NewAuditRecord, record_hash};
use aihub_store::testing::TestDb;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

mod common;

use common::{aihub, serve};

const PASSWORD: &str = "export test password";
const ROWS: i64 = 100_000;
/// How much the server's peak RSS may grow over both downloads. A server that held the export
/// would grow by its size: ~70 MB of CSV, more as JSON values.
const MAX_GROWTH_KIB: u64 = 32 * 1024;

/// A `/proc/<pid>/status` figure in KiB: `VmHWM` (peak resident set size) or `VmRSS`.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM")
}

/// Resets the peak to the current resident size, so what is measured next is the export's and
/// not an earlier peak (the argon2 hash of the sign-in alone takes ~19 MiB).
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
}

/// `ROWS` valid, chained records of `org`, written straight into the database.
async fn seed(db: &TestDb, org: OrgId) {
    let store = db.store().await;
    let chain = org.as_uuid();
    let actor = Uuid::now_v7();
    let mut prev = GENESIS.to_vec();
    let mut batch = Vec::with_capacity(10_000);
    for seq in 1..=ROWS {
        let record = NewAuditRecord {
            id: Uuid::now_v7(),
            org_id: Some(org),
            at: now(),
            actor_type: ActorType::User,
            actor_id: Some(actor),
            actor_label: Some("owner@example.com".to_owned()),
            action: "key.update".to_owned(),
            target_type: "api_key".to_owned(),
            target_id: Some(Uuid::now_v7().to_string()),
            before: Some(json!({"name": format!("key {seq}"), "models": ["mock-chat"], "expires_at": null}).to_string()),
            after: Some(json!({"name": format!("key {}", seq + 1), "models": ["mock-chat", "mock-embedding"], "expires_at": null}).to_string()),
            ip: Some("203.0.113.9".to_owned()),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) audit-export-test".to_owned()),
            request_id: Some(Uuid::now_v7()),
        };
        let hash = record_hash(&prev, chain, seq, &record);
        batch.push(AuditRecord {
            chain_id: chain,
            seq,
            record,
            prev_hash: std::mem::replace(&mut prev, hash.to_vec()),
            hash: hash.to_vec(),
        });
        if batch.len() == 10_000 {
            store.insert_audit_rows(&batch).await.unwrap();
            batch.clear();
        }
    }
    store.insert_audit_rows(&batch).await.unwrap();
    store.close().await;
}

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

/// Downloads `url` chunk by chunk, keeping only what `f` keeps; returns the byte count.
async fn download(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    mut f: impl FnMut(&[u8]),
) -> usize {
    let r = client.get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"audit-log-")
    );
    let mut stream = r.bytes_stream();
    let mut bytes = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        bytes += chunk.len();
        f(&chunk);
    }
    bytes
}

#[derive(Deserialize)]
struct Seq {
    seq: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_of_100k_records_streams_in_flat_memory() {
    let db = TestDb::new(BackendKind::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &db.config.url);
    let out = aihub(dir.path())
        .args(["admin", "create-user", "--email", "owner@example.com"])
        .env("AIHUB_ADMIN_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // "created user <id> <email> with organization <org>"
    let org: OrgId = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap()
        .parse()
        .unwrap();
    let started = Instant::now();
    seed(&db, org).await;
    println!("seeded {ROWS} records in {:?}", started.elapsed());

    let mut cmd = aihub(dir.path());
    cmd.arg("serve");
    let (mut child, base) = serve(cmd);
    let pid = child.id();
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
    let export = format!("{base}/api/v1/orgs/{org}/audit-logs/export");

    // Warm up: a page of the list and a small export, so what is measured is the downloads.
    let page: Value = client
        .get(format!("{base}/api/v1/orgs/{org}/audit-logs?limit=100"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"][0]["seq"], ROWS);
    download(
        &client,
        &format!("{export}?format=csv&since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z"),
        &token,
        |_| {},
    )
    .await;
    reset_peak(pid);
    let before = peak_rss_kib(pid);
    let rss_before = status_kib(pid, "VmRSS");

    let t = Instant::now();
    let mut lines = 0usize;
    let mut last = 0u8;
    let csv_bytes = download(&client, &format!("{export}?format=csv"), &token, |c| {
        lines += c.windows(2).filter(|w| w == b"\r\n").count();
        // A CRLF split across two chunks.
        if last == b'\r' && c.first() == Some(&b'\n') {
            lines += 1;
        }
        last = *c.last().unwrap_or(&last);
    })
    .await;
    let csv_time = t.elapsed();
    let after_csv = peak_rss_kib(pid);
    assert_eq!(
        lines,
        usize::try_from(ROWS).unwrap() + 1,
        "header and one line per record"
    );

    let t = Instant::now();
    let mut body = Vec::new();
    let json_bytes = download(&client, &format!("{export}?format=json"), &token, |c| {
        body.extend_from_slice(c);
    })
    .await;
    let json_time = t.elapsed();
    let after = peak_rss_kib(pid);
    let records: Vec<Seq> = serde_json::from_slice(&body).unwrap();
    assert_eq!(records.len(), usize::try_from(ROWS).unwrap());
    assert!(
        records.iter().zip(1..).all(|(r, seq)| r.seq == seq),
        "oldest first, none missing or repeated"
    );

    let growth = after.saturating_sub(before);
    println!(
        "server peak RSS (VmHWM): {before} KiB before (VmRSS {rss_before} KiB), {after_csv} KiB \
         after the CSV export ({csv_bytes} bytes in {csv_time:?}), {after} KiB after the JSON \
         export ({json_bytes} bytes in {json_time:?}); growth {growth} KiB, VmRSS now {} KiB",
        status_kib(pid, "VmRSS")
    );
    assert!(
        growth < MAX_GROWTH_KIB,
        "peak RSS grew by {growth} KiB while exporting {csv_bytes} + {json_bytes} bytes"
    );
    assert!(
        csv_bytes > 40 * 1024 * 1024,
        "the export is far larger than the bound"
    );

    child.kill().unwrap();
    child.wait().unwrap();
}
