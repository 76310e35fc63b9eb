//! The `/__mock/*` control endpoints and request recording.

use aihub_mock_upstream::{LedgerEntry, MockOptions, RecordedRequest};
use serde_json::{Value, json};

use crate::helpers::{client, post_openai, start, start_with};

fn chat(stream: bool) -> Value {
    json!({"model": "m", "stream": stream, "max_tokens": 4,
           "messages": [{"role": "user", "content": "hi"}]})
}

async fn set_fault(base: &str, command: Value) {
    let response = client()
        .post(format!("{base}/__mock/fault"))
        .json(&command)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn faults_ledger_and_reset_over_http() {
    let mock = start().await;
    let base = mock.url();

    set_fault(
        &base,
        json!({"fault": "status", "status": 503, "retry_after": 2, "times": 1}),
    )
    .await;
    let failed = post_openai(&mock, "/v1/chat/completions", &chat(false)).await;
    assert_eq!(failed.status(), 503);
    assert_eq!(failed.headers()["retry-after"], "2");
    assert_eq!(
        post_openai(&mock, "/v1/chat/completions", &chat(false))
            .await
            .status(),
        200
    );

    set_fault(
        &base,
        json!({"fault": "close", "after_chunks": 1, "times": 1}),
    )
    .await;
    let cut = post_openai(&mock, "/v1/chat/completions", &chat(true)).await;
    assert!(cut.text().await.is_err());

    let ledger: Vec<LedgerEntry> = client()
        .get(format!("{base}/__mock/ledger"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ledger, mock.ledger());
    assert_eq!(ledger.len(), 2);
    assert!(ledger[0].completed);
    assert!(!ledger[1].completed);
    assert_eq!(ledger[1].completion_tokens, 1);

    let stats: Value = client()
        .get(format!("{base}/__mock/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stats["request_count"], 3,
        "control requests are not counted"
    );

    let requests: Vec<RecordedRequest> = client()
        .get(format!("{base}/__mock/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(requests.len(), 3);

    for (command, expect_status) in [
        (json!({"fault": "explode"}), 400),
        (json!({"fault": "none", "unknown": true}), 400),
    ] {
        let response = client()
            .post(format!("{base}/__mock/fault"))
            .json(&command)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expect_status);
    }

    set_fault(&base, json!({"fault": "status", "status": 500})).await;
    let reset = client()
        .post(format!("{base}/__mock/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    assert!(mock.ledger().is_empty());
    assert_eq!(
        post_openai(&mock, "/v1/chat/completions", &chat(false))
            .await
            .status(),
        200
    );
    let unknown = client()
        .get(format!("{base}/__mock/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn recorded_requests_keep_method_path_headers_and_body() {
    let mock = start().await;
    client()
        .post(format!("{}/v1/chat/completions?trace=1", mock.url()))
        .header("X-Custom-Header", "Value")
        .bearer_auth("sk-abc")
        .json(&chat(false))
        .send()
        .await
        .unwrap();
    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.query.as_deref(), Some("trace=1"));
    assert!(
        r.headers
            .iter()
            .any(|(n, v)| n == "x-custom-header" && v == "Value")
    );
    assert_eq!(r.header("Authorization"), Some("Bearer sk-abc"));
    assert_eq!(r.body.as_ref().unwrap()["model"], "m");
    assert_eq!(mock.request_count(), 1);

    let quiet = start_with(MockOptions::default()).await;
    post_openai(&quiet, "/v1/chat/completions", &chat(false)).await;
    assert!(quiet.requests().is_empty());
    assert_eq!(quiet.request_count(), 1);
    assert_eq!(quiet.ledger().len(), 1, "the ledger is kept either way");
}
