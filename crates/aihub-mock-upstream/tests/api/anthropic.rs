//! `POST /v1/messages`: whole messages, the event stream, tool use and caching.

use aihub_mock_upstream::answer;
use serde_json::{Value, json};

use crate::helpers::{client, only_entry, post_anthropic, sse, start};

#[tokio::test]
async fn whole_message_with_system_string_and_blocks() {
    let mock = start().await;
    let response = post_anthropic(
        &mock,
        &json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 6,
            "system": "Be brief please",
            "messages": [
                {"role": "user", "content": "hello there"},
                {"role": "assistant", "content": [{"type": "text", "text": "hi"}]},
                {"role": "user", "content": [{"type": "text", "text": "one more thing"}]}
            ]
        }),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("request-id"));
    let body: Value = response.json().await.unwrap();
    assert!(body["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(
        body["content"],
        json!([{"type": "text", "text": answer(6)}])
    );
    assert_eq!(body["stop_reason"], "max_tokens");
    assert_eq!(body["stop_sequence"], Value::Null);
    // 3 system + 2 + 1 + 3 words, plus 4 per message.
    assert_eq!(
        body["usage"],
        json!({"input_tokens": 21, "output_tokens": 6,
               "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
    );
    let entry = only_entry(&mock);
    assert_eq!(entry.path, "/v1/messages");
    assert_eq!((entry.prompt_tokens, entry.completion_tokens), (21, 6));
    assert!(entry.completed && !entry.stream);

    let blocks: Value = post_anthropic(
        &mock,
        &json!({
            "model": "claude-sonnet-4-5",
            "system": [{"type": "text", "text": "Be brief please", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "hello there"}]
        }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(blocks["usage"]["input_tokens"], 9);
    assert_eq!(blocks["usage"]["output_tokens"], 16);
    assert_eq!(blocks["stop_reason"], "end_turn");
}

#[tokio::test]
async fn cache_reads_are_split_out_of_input_tokens() {
    let mock = start().await;
    let body: Value = post_anthropic(
        &mock,
        &json!({"model": "c", "max_tokens": 1,
                "messages": [{"role": "user", "content": "CACHEHIT a b c"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["usage"]["cache_read_input_tokens"], 8);
    assert_eq!(body["usage"]["input_tokens"], 0);
    let entry = only_entry(&mock);
    assert_eq!((entry.prompt_tokens, entry.cached_tokens), (8, 8));
}

#[tokio::test]
async fn version_header_is_required_and_errors_have_anthropic_shape() {
    let mock = start().await;
    let response = client()
        .post(format!("{}/v1/messages", mock.url()))
        .json(
            &json!({"model": "c", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("anthropic-version")
    );

    let response = client()
        .post(format!("{}/v1/messages", mock.url()))
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body("[oops")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(mock.ledger().is_empty());
}

#[tokio::test]
async fn stream_event_sequence() {
    let mock = start().await;
    let frames = sse(post_anthropic(
        &mock,
        &json!({"model": "claude-x", "max_tokens": 4, "stream": true,
                    "messages": [{"role": "user", "content": "tell me"}]}),
    )
    .await)
    .await;
    let events: Vec<&str> = frames.iter().map(|f| f.event.as_deref().unwrap()).collect();
    assert_eq!(
        events,
        vec![
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    let data: Vec<Value> = frames.iter().map(|f| f.json()).collect();
    for (f, d) in frames.iter().zip(&data) {
        assert_eq!(
            d["type"],
            f.event.as_deref().unwrap(),
            "event name matches type"
        );
    }
    let start = &data[0]["message"];
    assert!(start["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(start["model"], "claude-x");
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["usage"]["input_tokens"], 6);
    assert_eq!(start["usage"]["output_tokens"], 1);
    assert_eq!(
        data[1]["content_block"],
        json!({"type": "text", "text": ""})
    );
    let text: String = data[3..7]
        .iter()
        .map(|d| {
            assert_eq!(d["index"], 0);
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, "tok1 tok2 tok3 tok4");
    assert_eq!(data[7]["index"], 0);
    assert_eq!(data[8]["delta"]["stop_reason"], "max_tokens");
    assert_eq!(data[8]["usage"]["output_tokens"], 4);

    let entry = only_entry(&mock);
    assert!(entry.stream && entry.completed);
    assert_eq!((entry.prompt_tokens, entry.completion_tokens), (6, 4));
}

fn tool_request(stream: bool) -> Value {
    json!({
        "model": "claude-x", "max_tokens": 100, "stream": stream,
        "tools": [{"name": "get_weather", "description": "d", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "weather in Paris? CALLTOOL"}]}]
    })
}

#[tokio::test]
async fn tool_use_whole_and_streamed() {
    let mock = start().await;
    let body: Value = post_anthropic(&mock, &tool_request(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["stop_reason"], "tool_use");
    let block = &body["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert!(block["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], json!({"city": "Paris", "unit": "celsius"}));

    let frames = sse(post_anthropic(&mock, &tool_request(true)).await).await;
    let data: Vec<Value> = frames.iter().map(|f| f.json()).collect();
    let start = &data[1]["content_block"];
    assert_eq!(start["type"], "tool_use");
    assert_eq!(start["name"], "get_weather");
    assert_eq!(start["input"], json!({}));
    let partials: Vec<&str> = data
        .iter()
        .filter(|d| d["type"] == "content_block_delta")
        .map(|d| {
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().unwrap()
        })
        .collect();
    assert!(partials.len() >= 2);
    let input: Value = serde_json::from_str(&partials.concat()).unwrap();
    assert_eq!(input, json!({"city": "Paris", "unit": "celsius"}));
    let delta = data.iter().find(|d| d["type"] == "message_delta").unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(
        delta["usage"]["output_tokens"],
        aihub_mock_upstream::TOOL_CALL_TOKENS
    );

    // A tool result in the last user turn gets a text answer, not another call.
    let mut followup = tool_request(false);
    followup["messages"] = json!([
        {"role": "user", "content": "weather? CALLTOOL"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny and warm"}]}
    ]);
    let answered: Value = post_anthropic(&mock, &followup).await.json().await.unwrap();
    assert_eq!(answered["content"][0]["type"], "text");
    // 2 + 0 + 3 words (tool_result content counts), plus 4 per message.
    assert_eq!(answered["usage"]["input_tokens"], 17);
}
