//! Shared test plumbing: starting a mock, sending JSON, and splitting SSE bodies into frames.

use std::time::Duration;

use aihub_mock_upstream::{LedgerEntry, MockOptions, MockUpstream};
use serde_json::Value;

/// A mock that records requests, with default options otherwise.
pub async fn start() -> MockUpstream {
    start_with(MockOptions {
        record_requests: true,
        ..MockOptions::default()
    })
    .await
}

pub async fn start_with(options: MockOptions) -> MockUpstream {
    MockUpstream::start(options).await.unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// POSTs `body` to `path` with the headers an OpenAI client sends.
pub async fn post_openai(mock: &MockUpstream, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", mock.url()))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// POSTs `body` to `/v1/messages` with the headers an Anthropic client sends.
pub async fn post_anthropic(mock: &MockUpstream, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/v1/messages", mock.url()))
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

/// One server-sent event: its `event:` name if any, and its `data:` payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub event: Option<String>,
    pub data: String,
}

impl Frame {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("frame is not JSON ({e}): {:?}", self.data))
    }
}

/// Splits an SSE body into frames, checking that every frame is `event:`/`data:` lines
/// terminated by a blank line.
pub fn frames(body: &str) -> Vec<Frame> {
    assert!(body.ends_with("\n\n"), "stream must end with a blank line");
    body.split_terminator("\n\n")
        .map(|raw| {
            let mut frame = Frame {
                event: None,
                data: String::new(),
            };
            for line in raw.split('\n') {
                if let Some(e) = line.strip_prefix("event: ") {
                    frame.event = Some(e.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    frame.data = d.to_owned();
                } else {
                    panic!("unexpected SSE line {line:?} in {raw:?}");
                }
            }
            frame
        })
        .collect()
}

/// Reads a whole SSE response, checking the content type.
pub async fn sse(response: reqwest::Response) -> Vec<Frame> {
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    frames(&response.text().await.unwrap())
}

/// The single ledger entry, asserting there is exactly one.
pub fn only_entry(mock: &MockUpstream) -> LedgerEntry {
    let ledger = mock.ledger();
    assert_eq!(ledger.len(), 1, "ledger: {ledger:?}");
    ledger.into_iter().next().unwrap()
}

/// Polls the ledger until `pred` holds for its last entry, or fails after two seconds.
pub async fn wait_for_entry(
    mock: &MockUpstream,
    pred: impl Fn(&LedgerEntry) -> bool,
) -> LedgerEntry {
    for _ in 0..200 {
        if let Some(entry) = mock.ledger().last()
            && pred(entry)
        {
            return entry.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "ledger never reached the expected state: {:?}",
        mock.ledger()
    );
}

/// Content words carried by OpenAI chat chunks, in order.
pub fn chat_deltas(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .filter(|f| f.data != "[DONE]")
        .filter_map(|f| serde_json::from_str::<Value>(&f.data).ok())
        .filter_map(|v| {
            v["choices"]
                .get(0)
                .and_then(|c| c["delta"]["content"].as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        })
        .collect()
}
