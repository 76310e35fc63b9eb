//! API keys per protocol, and the Azure OpenAI deployment paths.

use aihub_mock_upstream::MockOptions;
use serde_json::{Value, json};

use crate::helpers::{client, sse, start_with};

fn chat() -> Value {
    json!({"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn each_protocol_checks_its_own_header() {
    let mock = start_with(MockOptions {
        api_key: Some("sk-good".to_owned()),
        record_requests: true,
        ..MockOptions::default()
    })
    .await;
    let url = |p: &str| format!("{}{p}", mock.url());

    // OpenAI: Authorization: Bearer
    let missing = client()
        .post(url("/v1/chat/completions"))
        .json(&chat())
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let wrong = client()
        .post(url("/v1/chat/completions"))
        .bearer_auth("sk-bad")
        .json(&chat())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let wrong_header = client()
        .post(url("/v1/chat/completions"))
        .header("x-api-key", "sk-good")
        .json(&chat())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_header.status(), 401);
    let good = client()
        .post(url("/v1/chat/completions"))
        .bearer_auth("sk-good")
        .json(&chat())
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200);

    // Anthropic: x-api-key
    let missing = client()
        .post(url("/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .bearer_auth("sk-good")
        .json(&chat())
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "authentication_error");
    let good = client()
        .post(url("/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .header("x-api-key", "sk-good")
        .json(&chat())
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200);

    // Azure: api-key
    let azure = url("/openai/deployments/dep/chat/completions?api-version=2024-10-21");
    let missing = client()
        .post(&azure)
        .bearer_auth("sk-good")
        .json(&chat())
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    let body: Value = missing.json().await.unwrap();
    assert!(body["error"]["message"].is_string());
    let good = client()
        .post(&azure)
        .header("api-key", "sk-good")
        .json(&chat())
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200);

    // The model list is protected too.
    let models = client().get(url("/v1/models")).send().await.unwrap();
    assert_eq!(models.status(), 401);

    assert_eq!(
        mock.ledger().len(),
        3,
        "only authenticated requests are charged"
    );
    assert_eq!(mock.request_count(), 9);
}

#[tokio::test]
async fn azure_paths_answer_as_the_deployment() {
    let mock = start_with(MockOptions {
        record_requests: true,
        ..MockOptions::default()
    })
    .await;
    let base = format!("{}/openai/deployments/my-gpt4o", mock.url());

    let body: Value = client()
        .post(format!("{base}/chat/completions?api-version=2024-10-21"))
        .json(&json!({"messages": [{"role": "user", "content": "a b"}], "max_tokens": 3}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["model"], "my-gpt4o");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "tok1 tok2 tok3");

    let frames = sse(client()
        .post(format!("{base}/chat/completions?api-version=2024-10-21"))
        .json(&json!({"model": "ignored", "stream": true, "max_tokens": 2,
                          "messages": [{"role": "user", "content": "a b"}]}))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(frames[0].json()["model"], "my-gpt4o");
    assert_eq!(frames.last().unwrap().data, "[DONE]");

    let embeddings: Value = client()
        .post(format!("{base}/embeddings?api-version=2024-10-21"))
        .json(&json!({"input": "x y z"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(embeddings["model"], "my-gpt4o");
    assert_eq!(embeddings["usage"]["prompt_tokens"], 3);

    let completion: Value = client()
        .post(format!("{base}/completions"))
        .json(&json!({"prompt": "x", "max_tokens": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(completion["choices"][0]["text"], "tok1");

    let requests = mock.requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(
        requests[0].path,
        "/openai/deployments/my-gpt4o/chat/completions"
    );
    assert_eq!(requests[0].query_param("api-version"), Some("2024-10-21"));
    assert_eq!(requests[3].query_param("api-version"), None);
    assert_eq!(requests[3].query, None);

    let ledger = mock.ledger();
    assert_eq!(ledger.len(), 4);
    assert!(ledger.iter().all(|e| e.model == "my-gpt4o"));
    assert_eq!(ledger[2].path, "/openai/deployments/my-gpt4o/embeddings");

    let unknown = client()
        .post(format!("{base}/images/generations"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}
