//! `POST /v1/chat/completions`: whole answers, streams, `n`, caching and tool calls.

use aihub_mock_upstream::answer;
use serde_json::{Value, json};

use crate::helpers::{chat_deltas, client, only_entry, post_openai, sse, start};

fn two_messages() -> Value {
    json!([
        {"role": "system", "content": "You are helpful"},
        {"role": "user", "content": "hello there world"}
    ])
}

#[tokio::test]
async fn whole_answer_follows_the_token_rule() {
    let mock = start().await;
    let response = client()
        .post(format!("{}/v1/chat/completions", mock.url()))
        .header("x-aihub-request-id", "req-42")
        .json(&json!({"model": "gpt-4o-mini", "messages": two_messages(), "max_tokens": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();

    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["object"], "chat.completion");
    assert!(body["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(body["model"], "gpt-4o-mini");
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "tok1 tok2 tok3 tok4 tok5");
    assert_eq!(choice["finish_reason"], "length");
    // 3 + 3 words, plus 4 per message.
    assert_eq!(body["usage"]["prompt_tokens"], 14);
    assert_eq!(body["usage"]["completion_tokens"], 5);
    assert_eq!(body["usage"]["total_tokens"], 19);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 0);

    let entry = only_entry(&mock);
    assert_eq!(entry.request_id.as_deref(), Some("req-42"));
    assert_eq!(entry.path, "/v1/chat/completions");
    assert_eq!(entry.model, "gpt-4o-mini");
    assert!(!entry.stream);
    assert_eq!(
        (
            entry.prompt_tokens,
            entry.completion_tokens,
            entry.cached_tokens
        ),
        (14, 5, 0)
    );
    assert!(entry.completed);
}

#[tokio::test]
async fn same_request_same_answer_and_default_length() {
    let mock = start().await;
    let request = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let a: Value = post_openai(&mock, "/v1/chat/completions", &request)
        .await
        .json()
        .await
        .unwrap();
    let b: Value = post_openai(&mock, "/v1/chat/completions", &request)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(a["choices"], b["choices"]);
    assert_eq!(a["usage"], b["usage"]);
    assert_ne!(a["id"], b["id"], "ids are unique per response");
    assert_eq!(a["choices"][0]["message"]["content"], answer(16));
    assert_eq!(a["choices"][0]["finish_reason"], "stop");
    assert_eq!(a["usage"]["completion_tokens"], 16);
    assert_eq!(a["usage"]["prompt_tokens"], 5);
}

#[tokio::test]
async fn max_completion_tokens_wins_and_content_parts_count() {
    let mock = start().await;
    let body: Value = post_openai(
        &mock,
        "/v1/chat/completions",
        &json!({
            "model": "m",
            "max_tokens": 9,
            "max_completion_tokens": 3,
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "one two"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                {"type": "text", "text": "three"}
            ]}]
        }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["usage"]["completion_tokens"], 3);
    assert_eq!(body["usage"]["prompt_tokens"], 3 + 4);
}

#[tokio::test]
async fn n_choices_multiply_completion_tokens() {
    let mock = start().await;
    let body: Value = post_openai(
        &mock,
        "/v1/chat/completions",
        &json!({"model": "m", "n": 3, "max_tokens": 4, "messages": two_messages()}),
    )
    .await
    .json()
    .await
    .unwrap();
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["message"]["content"], "tok1 tok2 tok3 tok4");
    }
    assert_eq!(body["usage"]["completion_tokens"], 12);
    assert_eq!(only_entry(&mock).completion_tokens, 12);
}

#[tokio::test]
async fn stream_has_one_word_per_chunk_and_no_usage_unless_asked() {
    let mock = start().await;
    let frames = sse(post_openai(
        &mock,
        "/v1/chat/completions",
        &json!({"model": "gpt-4o", "stream": true, "max_tokens": 7, "messages": two_messages()}),
    )
    .await)
    .await;

    // role chunk + 7 words + finish chunk + [DONE]
    assert_eq!(frames.len(), 10, "{frames:#?}");
    assert!(frames.iter().all(|f| f.event.is_none()));
    assert_eq!(frames.last().unwrap().data, "[DONE]");
    let chunks: Vec<Value> = frames[..frames.len() - 1]
        .iter()
        .map(|f| f.json())
        .collect();
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], id);
        assert_eq!(c["model"], "gpt-4o");
        assert!(c["created"].as_u64().is_some());
        assert!(
            c.get("usage").is_none(),
            "no usage key without include_usage"
        );
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let words = chat_deltas(&frames);
    assert_eq!(words.len(), 7);
    for (i, w) in words.iter().enumerate() {
        let expected = if i == 0 {
            "tok1".to_owned()
        } else {
            format!(" tok{}", i + 1)
        };
        assert_eq!(*w, expected);
    }
    assert_eq!(words.concat(), answer(7));
    let last = &chunks[chunks.len() - 1];
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    assert_eq!(last["choices"][0]["delta"], json!({}));

    let entry = only_entry(&mock);
    assert!(entry.stream && entry.completed);
    assert_eq!(entry.completion_tokens, 7);
    assert_eq!(entry.prompt_tokens, 14);
}

#[tokio::test]
async fn stream_usage_chunk_only_with_include_usage() {
    let mock = start().await;
    let frames = sse(post_openai(
        &mock,
        "/v1/chat/completions",
        &json!({
            "model": "m", "stream": true, "max_tokens": 3,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "count these CACHEHIT words"}]
        }),
    )
    .await)
    .await;
    assert_eq!(frames.len(), 1 + 3 + 1 + 1 + 1);
    assert_eq!(frames[frames.len() - 1].data, "[DONE]");
    let usage_chunk = frames[frames.len() - 2].json();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], 8);
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 3);
    assert_eq!(usage_chunk["usage"]["total_tokens"], 11);
    assert_eq!(
        usage_chunk["usage"]["prompt_tokens_details"]["cached_tokens"],
        8
    );
    for f in &frames[..frames.len() - 2] {
        assert_eq!(f.json()["usage"], Value::Null);
    }
    assert_eq!(only_entry(&mock).cached_tokens, 8);
}

#[tokio::test]
async fn cached_tokens_are_capped() {
    let mock = start().await;
    let long = format!("CACHEHIT {}", "word ".repeat(100));
    let body: Value = post_openai(
        &mock,
        "/v1/chat/completions",
        &json!({"model": "m", "messages": [{"role": "user", "content": long}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["usage"]["prompt_tokens"], 105);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 64);
}

fn tool_request(stream: bool) -> Value {
    json!({
        "model": "gpt-4o",
        "stream": stream,
        "messages": [{"role": "user", "content": "What is the weather? CALLTOOL"}],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
            {"type": "function", "function": {"name": "other"}}
        ]
    })
}

#[tokio::test]
async fn tool_call_whole() {
    let mock = start().await;
    let body: Value = post_openai(&mock, "/v1/chat/completions", &tool_request(false))
        .await
        .json()
        .await
        .unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args["city"], "Paris");
    assert_eq!(
        body["usage"]["completion_tokens"],
        aihub_mock_upstream::TOOL_CALL_TOKENS
    );
}

#[tokio::test]
async fn tool_call_stream_reassembles_into_json() {
    let mock = start().await;
    let frames = sse(post_openai(&mock, "/v1/chat/completions", &tool_request(true)).await).await;
    let chunks: Vec<Value> = frames
        .iter()
        .filter(|f| f.data != "[DONE]")
        .map(|f| f.json())
        .collect();
    let first = &chunks[0]["choices"][0]["delta"];
    assert_eq!(first["role"], "assistant");
    let header = &first["tool_calls"][0];
    assert!(header["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(header["function"]["name"], "get_weather");

    let mut arguments = String::new();
    let mut pieces = 0;
    for c in &chunks {
        if let Some(calls) = c["choices"][0]["delta"]["tool_calls"].as_array() {
            assert_eq!(calls[0]["index"], 0);
            let piece = calls[0]["function"]["arguments"].as_str().unwrap();
            if !piece.is_empty() {
                pieces += 1;
            }
            arguments.push_str(piece);
        }
    }
    assert!(pieces >= 2, "arguments must be split over several chunks");
    let args: Value = serde_json::from_str(&arguments).unwrap();
    assert_eq!(args, json!({"city": "Paris", "unit": "celsius"}));
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
    assert!(chat_deltas(&frames).is_empty());
}

#[tokio::test]
async fn calltool_without_tools_or_after_a_tool_result_is_text() {
    let mock = start().await;
    let no_tools: Value = post_openai(
        &mock,
        "/v1/chat/completions",
        &json!({"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": "CALLTOOL"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(no_tools["choices"][0]["message"]["content"], "tok1 tok2");

    let mut followup = tool_request(false);
    followup["messages"] = json!([
        {"role": "user", "content": "weather? CALLTOOL"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    ]);
    let answered: Value = post_openai(&mock, "/v1/chat/completions", &followup)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answered["choices"][0]["finish_reason"], "stop");
    assert!(answered["choices"][0]["message"]["content"].is_string());
}

#[tokio::test]
async fn bad_requests_use_the_openai_error_shape() {
    let mock = start().await;
    let response = client()
        .post(format!("{}/v1/chat/completions", mock.url()))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("JSON"));
    assert!(body["error"].get("param").is_some());
    assert!(body["error"].get("code").is_some());

    let response = post_openai(
        &mock,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(response.status(), 400);
    let response = post_openai(
        &mock,
        "/v1/chat/completions",
        &json!({"model": "m", "messages": []}),
    )
    .await;
    assert_eq!(response.status(), 400);
    let response = post_openai(
        &mock,
        "/v1/chat/completions",
        &json!({"model": "m", "n": 0, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(response.status(), 400);
    let response = client()
        .get(format!("{}/v1/chat/completions", mock.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let response = client()
        .post(format!("{}/v2/whatever", mock.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(mock.ledger().is_empty(), "errors are not charged");
}
