//! Legacy `POST /v1/completions`, `POST /v1/embeddings` and `GET /v1/models`.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::helpers::{client, only_entry, post_openai, sse, start};

#[tokio::test]
async fn legacy_completion_whole() {
    let mock = start().await;
    let body: Value = post_openai(
        &mock,
        "/v1/completions",
        &json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say this is a test", "max_tokens": 4}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(body["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["model"], "gpt-3.5-turbo-instruct");
    assert_eq!(body["choices"][0]["text"], "tok1 tok2 tok3 tok4");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["choices"][0]["logprobs"], Value::Null);
    assert_eq!(body["usage"]["prompt_tokens"], 5);
    assert_eq!(body["usage"]["completion_tokens"], 4);
    let entry = only_entry(&mock);
    assert_eq!(entry.path, "/v1/completions");
    assert!(entry.completed);
}

#[tokio::test]
async fn legacy_completion_prompt_arrays_give_a_choice_each() {
    let mock = start().await;
    let body: Value = post_openai(
        &mock,
        "/v1/completions",
        &json!({"model": "m", "prompt": ["a b", "c"], "max_tokens": 2}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["choices"].as_array().unwrap().len(), 2);
    assert_eq!(body["usage"]["prompt_tokens"], 3);
    assert_eq!(body["usage"]["completion_tokens"], 4);

    let body: Value = post_openai(
        &mock,
        "/v1/completions",
        &json!({"model": "m", "prompt": [1, 2, 3, 4], "max_tokens": 1}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["usage"]["prompt_tokens"], 4);
}

#[tokio::test]
async fn legacy_completion_stream_with_and_without_usage() {
    let mock = start().await;
    let plain = sse(post_openai(
        &mock,
        "/v1/completions",
        &json!({"model": "m", "prompt": "x", "stream": true, "max_tokens": 5}),
    )
    .await)
    .await;
    // 5 words, finish chunk, [DONE]
    assert_eq!(plain.len(), 7);
    let text: String = plain[..5]
        .iter()
        .map(|f| f.json()["choices"][0]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, "tok1 tok2 tok3 tok4 tok5");
    assert_eq!(plain[0].json()["object"], "text_completion");
    assert_eq!(plain[5].json()["choices"][0]["finish_reason"], "length");
    assert_eq!(plain[6].data, "[DONE]");
    assert!(plain[..6].iter().all(|f| f.json().get("usage").is_none()));

    let with_usage = sse(post_openai(
        &mock,
        "/v1/completions",
        &json!({"model": "m", "prompt": "x y", "stream": true, "max_tokens": 2,
                    "stream_options": {"include_usage": true}}),
    )
    .await)
    .await;
    assert_eq!(with_usage.len(), 2 + 1 + 1 + 1);
    let usage = with_usage[3].json();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 2);
    assert_eq!(usage["usage"]["completion_tokens"], 2);
    let ledger = mock.ledger();
    assert_eq!(ledger.len(), 2);
    assert!(ledger.iter().all(|e| e.stream && e.completed));
    assert_eq!(ledger[0].completion_tokens, 5);
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[tokio::test]
async fn embeddings_are_deterministic_per_text() {
    let mock = start().await;
    let body: Value = post_openai(
        &mock,
        "/v1/embeddings",
        &json!({"model": "text-embedding-3-small", "input": ["hello world", "other text here", "hello world"]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "text-embedding-3-small");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d["object"], "embedding");
        assert_eq!(d["index"], i);
        assert_eq!(d["embedding"].as_array().unwrap().len(), 8);
    }
    assert_eq!(data[0]["embedding"], data[2]["embedding"]);
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);
    assert_eq!(body["usage"]["prompt_tokens"], 7);
    assert_eq!(body["usage"]["total_tokens"], 7);
    let entry = only_entry(&mock);
    assert_eq!((entry.prompt_tokens, entry.completion_tokens), (7, 0));
    assert!(entry.completed);

    let single: Value = post_openai(
        &mock,
        "/v1/embeddings",
        &json!({"model": "text-embedding-3-small", "input": "hello world", "dimensions": 16}),
    )
    .await
    .json()
    .await
    .unwrap();
    let v = floats(&single["data"][0]["embedding"]);
    assert_eq!(v.len(), 16);
    let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-3);
}

#[tokio::test]
async fn embeddings_base64_is_little_endian_f32() {
    let mock = start().await;
    let request = |format: &str| json!({"model": "e", "input": [[1, 2, 3], [4]], "encoding_format": format, "dimensions": 4});
    let as_floats: Value = post_openai(&mock, "/v1/embeddings", &request("float"))
        .await
        .json()
        .await
        .unwrap();
    let as_base64: Value = post_openai(&mock, "/v1/embeddings", &request("base64"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(as_floats["usage"]["prompt_tokens"], 4);
    for i in 0..2 {
        let expected = floats(&as_floats["data"][i]["embedding"]);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(as_base64["data"][i]["embedding"].as_str().unwrap())
            .unwrap();
        let decoded: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(decoded, expected);
    }
    let bad = post_openai(&mock, "/v1/embeddings", &request("hex")).await;
    assert_eq!(bad.status(), 400);
    let empty = post_openai(&mock, "/v1/embeddings", &json!({"model": "e", "input": []})).await;
    assert_eq!(empty.status(), 400);
}

#[tokio::test]
async fn models_lists_fixed_and_seen_models_in_both_shapes() {
    let mock = start().await;
    post_openai(
        &mock,
        "/v1/chat/completions",
        &json!({"model": "my-special-model", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    let body: Value = client()
        .get(format!("{}/v1/models", mock.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"gpt-4o-mini"));
    assert!(ids.contains(&"my-special-model"));
    assert_eq!(body["data"][0]["object"], "model");

    let anthropic: Value = client()
        .get(format!("{}/v1/models", mock.url()))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(anthropic["data"][0]["type"], "model");
    assert_eq!(anthropic["has_more"], false);
    assert_eq!(mock.ledger().len(), 1, "listing models is not charged");
}
