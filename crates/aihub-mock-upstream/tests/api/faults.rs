//! Every fault, on streams and whole answers, and what each leaves in the ledger.

use std::time::Duration;

use aihub_mock_upstream::{Fault, MockOptions};
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::helpers::{
    chat_deltas, client, frames, only_entry, post_anthropic, post_openai, start, start_with,
    wait_for_entry,
};

fn chat(stream: bool, max_tokens: u32) -> Value {
    json!({
        "model": "m", "stream": stream, "max_tokens": max_tokens,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "hi"}]
    })
}

fn messages(stream: bool, max_tokens: u32) -> Value {
    json!({"model": "c", "stream": stream, "max_tokens": max_tokens,
           "messages": [{"role": "user", "content": "hi"}]})
}

/// Reads a streamed body until it ends, fails, or goes quiet for `quiet`.
/// Returns the text received and whether the body ended with an error.
async fn read_until_quiet(response: reqwest::Response, quiet: Duration) -> (String, Option<bool>) {
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    loop {
        match tokio::time::timeout(quiet, stream.next()).await {
            Ok(Some(Ok(bytes))) => text.push_str(std::str::from_utf8(&bytes).unwrap()),
            Ok(Some(Err(_))) => return (text, Some(true)),
            Ok(None) => return (text, Some(false)),
            Err(_) => return (text, None),
        }
    }
}

/// Answer words (`tokN`) in a raw body; `input_tokens` and the like do not count.
fn count_words(text: &str) -> usize {
    text.match_indices("tok")
        .filter(|(i, _)| text.as_bytes().get(i + 3).is_some_and(u8::is_ascii_digit))
        .count()
}

#[tokio::test]
async fn status_fault_for_a_number_of_requests() {
    let mock = start().await;
    mock.set_fault_for(
        Fault::Status {
            status: 429,
            retry_after: Some(7),
        },
        2,
    );
    for _ in 0..2 {
        let response = post_openai(&mock, "/v1/chat/completions", &chat(false, 1)).await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "7");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        assert!(body["error"]["message"].is_string());
    }
    let ok = post_openai(&mock, "/v1/chat/completions", &chat(false, 1)).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(
        only_entry(&mock).completion_tokens,
        1,
        "errors are not charged"
    );

    mock.set_fault(Fault::Status {
        status: 529,
        retry_after: None,
    });
    for _ in 0..3 {
        let response = post_anthropic(&mock, &messages(false, 1)).await;
        assert_eq!(response.status(), 529);
        assert!(!response.headers().contains_key("retry-after"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "overloaded_error");
    }
    mock.set_fault(Fault::None);
    assert_eq!(
        post_anthropic(&mock, &messages(false, 1)).await.status(),
        200
    );
}

#[tokio::test]
async fn hang_before_headers_is_not_charged() {
    let mock = start().await;
    mock.set_fault_for(Fault::HangBeforeHeaders, 1);
    let result = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", mock.url()))
        .timeout(Duration::from_millis(300))
        .json(&chat(true, 3))
        .send()
        .await;
    assert!(result.unwrap_err().is_timeout());
    assert!(mock.ledger().is_empty());
    assert_eq!(mock.request_count(), 1);
    assert_eq!(
        post_openai(&mock, "/v1/chat/completions", &chat(false, 1))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn stall_after_chunks_streams_then_goes_quiet() {
    let mock = start().await;
    mock.set_fault_for(Fault::StallAfterChunks(3), 2);
    let response = post_openai(&mock, "/v1/chat/completions", &chat(true, 10)).await;
    assert_eq!(response.status(), 200);
    let (text, ended) = read_until_quiet(response, Duration::from_millis(300)).await;
    assert_eq!(ended, None, "the stream must stall, not end");
    assert_eq!(count_words(&text), 3);
    assert!(!text.contains("[DONE]"));
    let entry = only_entry(&mock);
    assert!(!entry.completed);
    assert_eq!(entry.completion_tokens, 3);

    // Not streaming: nothing at all.
    let result = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", mock.url()))
        .timeout(Duration::from_millis(300))
        .json(&chat(false, 10))
        .send()
        .await;
    assert!(result.unwrap_err().is_timeout());
    assert_eq!(mock.ledger().len(), 1);
}

#[tokio::test]
async fn close_after_chunks_drops_the_connection() {
    let mock = start().await;
    mock.set_fault(Fault::CloseAfterChunks(2));
    let response = post_openai(&mock, "/v1/chat/completions", &chat(true, 10)).await;
    assert_eq!(response.status(), 200);
    let (text, ended) = read_until_quiet(response, Duration::from_secs(5)).await;
    assert_eq!(ended, Some(true), "the body must end in an error");
    assert_eq!(count_words(&text), 2);
    let entry = only_entry(&mock);
    assert!(!entry.completed);
    assert_eq!(entry.completion_tokens, 2);

    let response = post_anthropic(&mock, &messages(true, 10)).await;
    let (text, ended) = read_until_quiet(response, Duration::from_secs(5)).await;
    assert_eq!(ended, Some(true));
    assert_eq!(count_words(&text), 2);
    assert!(text.contains("event: message_start"));
    assert!(!text.contains("message_stop"));

    // Not streaming: a truncated body.
    let response = post_openai(&mock, "/v1/chat/completions", &chat(false, 10)).await;
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.is_err());
    let last = mock.ledger().pop().unwrap();
    assert!(!last.stream && !last.completed);
}

#[tokio::test]
async fn malformed_sse_breaks_one_frame_only() {
    let mock = start().await;
    mock.set_fault(Fault::MalformedSse);
    let text = post_openai(&mock, "/v1/chat/completions", &chat(true, 6))
        .await
        .text()
        .await
        .unwrap();
    let all = frames(&text);
    let broken: Vec<_> = all
        .iter()
        .filter(|f| f.data != "[DONE]" && serde_json::from_str::<Value>(&f.data).is_err())
        .collect();
    assert_eq!(broken.len(), 1, "{all:#?}");
    assert!(broken[0].data.starts_with('{'));
    assert_eq!(chat_deltas(&all).len(), 6);
    assert_eq!(all.last().unwrap().data, "[DONE]");
    assert!(only_entry(&mock).completed);

    let text = post_anthropic(&mock, &messages(true, 4))
        .await
        .text()
        .await
        .unwrap();
    let all = frames(&text);
    let broken: Vec<_> = all
        .iter()
        .filter(|f| serde_json::from_str::<Value>(&f.data).is_err())
        .collect();
    assert_eq!(broken.len(), 1);
    assert_eq!(
        all.iter()
            .filter(|f| serde_json::from_str::<Value>(&f.data)
                .is_ok_and(|v| v["type"] == "content_block_delta"))
            .count(),
        4
    );
    assert_eq!(all.last().unwrap().event.as_deref(), Some("message_stop"));

    let whole = post_openai(&mock, "/v1/chat/completions", &chat(false, 3)).await;
    assert_eq!(whole.status(), 200);
    assert!(whole.json::<Value>().await.is_err());
}

#[tokio::test]
async fn omit_usage_everywhere_but_the_ledger() {
    let mock = start().await;
    mock.set_fault(Fault::OmitUsage);
    let body: Value = post_openai(&mock, "/v1/chat/completions", &chat(false, 2))
        .await
        .json()
        .await
        .unwrap();
    assert!(body.get("usage").is_none());
    assert_eq!(body["choices"][0]["message"]["content"], "tok1 tok2");

    let text = post_openai(&mock, "/v1/chat/completions", &chat(true, 2))
        .await
        .text()
        .await
        .unwrap();
    assert!(!text.contains("usage"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"));

    let body: Value = post_anthropic(&mock, &messages(false, 2))
        .await
        .json()
        .await
        .unwrap();
    assert!(body.get("usage").is_none());
    let text = post_anthropic(&mock, &messages(true, 2))
        .await
        .text()
        .await
        .unwrap();
    assert!(!text.contains("usage"), "{text}");

    let embeddings: Value = post_openai(
        &mock,
        "/v1/embeddings",
        &json!({"model": "e", "input": "a b"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(embeddings.get("usage").is_none());

    let ledger = mock.ledger();
    assert_eq!(ledger.len(), 5);
    assert!(ledger.iter().all(|e| e.completed));
    assert_eq!(ledger[1].completion_tokens, 2);
    assert_eq!(ledger[4].prompt_tokens, 2);
}

#[tokio::test]
async fn error_body_with_secret_echoes_the_credential() {
    let mock = start().await;
    mock.set_fault(Fault::ErrorBodyWithSecret);
    let response = client()
        .post(format!("{}/v1/chat/completions", mock.url()))
        .bearer_auth("sk-very-secret-123")
        .json(&chat(false, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sk-very-secret-123")
    );

    let response = client()
        .post(format!("{}/v1/messages", mock.url()))
        .header("anthropic-version", "2023-06-01")
        .header("x-api-key", "sk-ant-secret-456")
        .json(&messages(false, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sk-ant-secret-456")
    );
    assert!(mock.ledger().is_empty());
}

#[tokio::test]
async fn client_dropping_mid_stream_leaves_an_incomplete_entry() {
    let mock = start_with(MockOptions {
        chunk_interval: Duration::from_millis(25),
        ..MockOptions::default()
    })
    .await;
    let response = post_openai(&mock, "/v1/chat/completions", &chat(true, 50)).await;
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    while count_words(&text) < 3 {
        let bytes = stream.next().await.unwrap().unwrap();
        text.push_str(std::str::from_utf8(&bytes).unwrap());
    }
    drop(stream);

    tokio::time::sleep(Duration::from_millis(200)).await;
    let entry = wait_for_entry(&mock, |e| !e.completed).await;
    let settled = entry.completion_tokens;
    assert!(
        (3..10).contains(&settled),
        "about as many chunks as were read, not 50: {entry:?}"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let later = only_entry(&mock);
    assert_eq!(
        later.completion_tokens, settled,
        "the mock stopped generating"
    );
    assert!(!later.completed);
}

#[tokio::test]
async fn reset_clears_everything() {
    let mock = start().await;
    post_openai(&mock, "/v1/chat/completions", &chat(false, 1)).await;
    mock.set_fault(Fault::Status {
        status: 500,
        retry_after: None,
    });
    mock.reset();
    assert!(mock.ledger().is_empty());
    assert!(mock.requests().is_empty());
    assert_eq!(mock.request_count(), 0);
    assert_eq!(
        post_openai(&mock, "/v1/chat/completions", &chat(false, 1))
            .await
            .status(),
        200
    );
}
