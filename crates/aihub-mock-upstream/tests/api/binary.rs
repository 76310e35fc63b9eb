//! The `aihub-mock-upstream` binary, driven only over HTTP as the benchmark and the crash tests
//! drive it.

use std::process::Stdio;
use std::time::Duration;

use aihub_mock_upstream::LedgerEntry;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

use crate::helpers::{client, frames};

#[tokio::test]
async fn binary_serves_and_exposes_control_endpoints() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aihub-mock-upstream"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--api-key",
            "sk-bin",
            "--chunk-interval-ms",
            "1",
        ])
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("binary exited early");
            if let Some(i) = line.find("http://") {
                let url: String = line[i..]
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '"')
                    .collect();
                return url;
            }
        }
    })
    .await
    .unwrap();

    let chat = json!({"model": "bench", "stream": true, "max_tokens": 3,
                      "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "hi"}]});
    let unauthorized = client()
        .post(format!("{base}/v1/chat/completions"))
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);

    let text = client()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth("sk-bin")
        .header("x-aihub-request-id", "crash-1")
        .json(&chat)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(frames(&text).len(), 1 + 3 + 1 + 1 + 1);

    let set = client()
        .post(format!("{base}/__mock/fault"))
        .json(&json!({"fault": "status", "status": 502, "times": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let failed = client()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth("sk-bin")
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 502);
    let body: Value = failed.json().await.unwrap();
    assert_eq!(body["error"]["type"], "server_error");

    let ledger: Vec<LedgerEntry> = client()
        .get(format!("{base}/__mock/ledger"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].request_id.as_deref(), Some("crash-1"));
    assert_eq!(ledger[0].completion_tokens, 3);
    assert!(ledger[0].completed);

    let reset = client()
        .post(format!("{base}/__mock/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    let ledger: Vec<LedgerEntry> = client()
        .get(format!("{base}/__mock/ledger"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(ledger.is_empty());

    child.kill().await.unwrap();
}
