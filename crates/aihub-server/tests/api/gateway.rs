//! The gateway against real HTTP upstreams (the mock OpenAI / Azure / Anthropic server):
//! pass-through, streaming, usage metering, fault mapping, client disconnects.

use std::time::Duration;

use aihub_core::config::{Config, ModelConfig, ProviderConfig, ProviderKind};
use aihub_core::secret::Secret;
use aihub_mock_upstream::{Fault, MockOptions, MockUpstream};
use aihub_store::BackendKind;
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, api_tests, captured_logs, request_id, spawn_app_with};

api_tests!(
    chat_passes_through_and_is_metered,
    streams_forward_chunks_and_meter_usage,
    missing_usage_is_estimated_with_a_tokenizer,
    upstream_faults_map_to_openai_errors,
    stream_faults_end_with_an_error_event,
    embeddings_and_completions,
    anthropic_is_translated_both_ways,
    azure_uses_deployment_urls,
    allow_lists_and_unknown_models,
    the_body_cannot_redirect_the_upstream,
    disconnected_streams_are_still_billed_in_full,
    a_client_that_leaves_before_the_answer_is_still_billed,
    streams_beyond_the_draining_limit_are_closed_and_estimated,
    total_timeout_bounds_slow_streams,
    shutdown_finishes_streams_and_meters_them,
    the_hot_path_needs_no_database,
    the_direct_path_answers_as_the_router_does,
);

const PROVIDER_KEY: &str = "upstream-provider-secret-0123456789";

async fn setup(
    kind: BackendKind,
    provider: ProviderKind,
    tweak: impl FnOnce(&mut Config),
) -> (TestApp, MockUpstream) {
    setup_with(kind, provider, MockOptions::default(), tweak).await
}

/// An app with provider `up` of `provider`'s kind pointing at a fresh mock upstream, and models
/// `gpt-test` (upstream name `gpt-4o-2024-08-06`) and `embed-test` routed to it.
async fn setup_with(
    kind: BackendKind,
    provider: ProviderKind,
    options: MockOptions,
    tweak: impl FnOnce(&mut Config),
) -> (TestApp, MockUpstream) {
    let mock = MockUpstream::start(MockOptions {
        record_requests: true,
        api_key: Some(PROVIDER_KEY.into()),
        ..options
    })
    .await
    .unwrap();
    let base = match provider {
        ProviderKind::Openai => format!("{}/v1", mock.url()),
        _ => mock.url(),
    };
    let app = spawn_app_with(kind, |c| {
        c.providers.push(ProviderConfig {
            name: "up".into(),
            kind: provider,
            base_url: Some(base),
            api_key: Some(Secret::new(PROVIDER_KEY.into())),
            first_byte_timeout_ms: 1_000,
            total_timeout_ms: 5_000,
            ..ProviderConfig::default()
        });
        c.models.push(ModelConfig {
            name: "gpt-test".into(),
            provider: "up".into(),
            upstream_model: Some("gpt-4o-2024-08-06".into()),
        });
        c.models.push(ModelConfig {
            name: "embed-test".into(),
            provider: "up".into(),
            upstream_model: None,
        });
        tweak(c);
    })
    .await;
    (app, mock)
}

/// Prices for the test models, effective now, through the admin API.
async fn price_models(app: &TestApp) {
    let root = app.platform_admin().await;
    for (model, input, cached, output) in [
        ("gpt-test", "2.50", "1.25", "10"),
        ("embed-test", "0.1", "0.1", "0"),
    ] {
        let r = app
            .post("/api/v1/admin/prices", &root, json!({"model": model, "currency": "USD", "input": input, "cached_input": cached, "output": output}))
            .await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
    }
}

async fn chat_passes_through_and_is_metered(kind: BackendKind) {
    let (app, mock) = setup(kind, ProviderKind::Openai, |_| {}).await;
    price_models(&app).await;
    let (who, key) = app.user_with_key("a@example.com", None).await;
    let body = json!({
        "model": "gpt-test",
        "messages": [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hello there friend CACHEHIT"}],
        "max_tokens": 7,
        "n": 2,
        "stop": ["\n\n"],
        "response_format": {"type": "json_object"},
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
        "temperature": 0.3,
        "x_vendor_field": {"nested": [1, 2, 3]}
    });
    let r = app.v1("/v1/chat/completions", &key, body.clone()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let rid = request_id(&r);
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["object"], "chat.completion");
    assert_eq!(out["choices"].as_array().unwrap().len(), 2);

    // What the upstream received: our credential, the upstream model, every other field as sent.
    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {PROVIDER_KEY}").as_str())
    );
    assert_eq!(sent.header("x-aihub-request-id"), Some(rid.as_str()));
    let authority = mock.url().trim_start_matches("http://").to_owned();
    assert_eq!(sent.header("host"), Some(authority.as_str()));
    let mut expected = body.clone();
    expected["model"] = json!("gpt-4o-2024-08-06");
    assert_eq!(sent.body.unwrap(), expected);

    // The usage record: exact tokens and cost, from the upstream's usage.
    let rec = app.usage_record(&rid).await;
    let ledger = mock.ledger().pop().unwrap();
    assert_eq!(rec.prompt_tokens, i64::from(ledger.prompt_tokens));
    assert_eq!(rec.completion_tokens, i64::from(ledger.completion_tokens));
    assert_eq!(rec.cached_tokens, i64::from(ledger.cached_tokens));
    assert_eq!(rec.completion_tokens, 14, "7 tokens × n = 2");
    assert!(rec.cached_tokens > 0);
    // 2.50 $/M uncached input, 1.25 $/M cached input, 10 $/M output, in micro-dollars.
    let p = rec.prompt_tokens - rec.cached_tokens;
    let expected_cost =
        (p * 2_500_000 + rec.cached_tokens * 1_250_000 + 14 * 10_000_000 + 500_000) / 1_000_000;
    assert!(
        (rec.cost_micros - expected_cost).abs() <= 1,
        "{} vs {expected_cost}",
        rec.cost_micros
    );
    assert_eq!(rec.currency.as_str(), "USD");
    assert_eq!(
        (
            rec.status,
            rec.error_code.as_deref(),
            rec.streamed,
            rec.estimated
        ),
        (200, None, false, false)
    );
    assert_eq!(rec.model, "gpt-test");
    assert_eq!(rec.upstream_model.as_deref(), Some("gpt-4o-2024-08-06"));
    assert_eq!(rec.provider.as_deref(), Some("up"));
    assert_eq!(rec.org_id.to_string(), who.org_id);
    assert_eq!(rec.user_id.unwrap().to_string(), who.user_id);

    // The usage API reports it.
    let sum: Value = app
        .get(
            &format!("/api/v1/orgs/{}/usage?group_by=model", who.org_id),
            &who.token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sum["data"][0]["group"], "gpt-test");
    assert_eq!(sum["data"][0]["requests"], 1);
    assert_eq!(sum["data"][0]["cost_micros"], rec.cost_micros);
    let list: Value = app
        .get(
            &format!("/api/v1/orgs/{}/usage/requests", who.org_id),
            &who.token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"][0]["request_id"], rid);
    // The provider's secret is nowhere in our logs.
    assert!(!captured_logs().contains(PROVIDER_KEY));
}

async fn read_events(r: reqwest::Response) -> Vec<String> {
    let text = r.text().await.unwrap();
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| e.trim_start_matches("data: ").to_owned())
        .collect()
}

async fn streams_forward_chunks_and_meter_usage(kind: BackendKind) {
    let (app, mock) = setup(kind, ProviderKind::Openai, |_| {}).await;
    let (_, key) = app.user_with_key("s@example.com", None).await;
    let body = json!({"model": "gpt-test", "stream": true, "max_tokens": 5, "messages": [{"role": "user", "content": "count to five"}]});

    // Without include_usage: the client gets no usage chunk, but the upstream was asked for one.
    let r = app.v1("/v1/chat/completions", &key, body.clone()).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let rid = request_id(&r);
    let events = read_events(r).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| !c["choices"].as_array().unwrap().is_empty()),
        "no usage-only chunk"
    );
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content.split_whitespace().count(), 5);
    let sent = mock.requests().pop().unwrap().body.unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let rec = app.usage_record(&rid).await;
    assert_eq!(
        (rec.completion_tokens, rec.streamed, rec.estimated),
        (5, true, false)
    );
    assert!(rec.ttft_ms.is_some());

    // With include_usage: the usage chunk is passed on.
    let mut with_usage = body.clone();
    with_usage["stream_options"] = json!({"include_usage": true});
    let r = app.v1("/v1/chat/completions", &key, with_usage).await;
    let events = read_events(r).await;
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 5);

    // Chunks arrive as they are produced, not buffered to the end.
    let slow = MockUpstream::start(MockOptions {
        chunk_interval: Duration::from_millis(150),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let app2 = spawn_app_with(BackendKind::Sqlite, |c| {
        c.providers.push(ProviderConfig {
            name: "slow".into(),
            base_url: Some(format!("{}/v1", slow.url())),
            ..ProviderConfig::default()
        });
        c.models.push(ModelConfig {
            name: "slow".into(),
            provider: "slow".into(),
            upstream_model: None,
        });
    })
    .await;
    let (_, key2) = app2.user_with_key("t@example.com", None).await;
    let started = std::time::Instant::now();
    let r = app2
        .v1(
            "/v1/chat/completions",
            &key2,
            json!({"model": "slow", "stream": true, "max_tokens": 10, "messages": []}),
        )
        .await;
    let mut stream = r.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "first chunk after {:?}",
        started.elapsed()
    );
}

async fn missing_usage_is_estimated_with_a_tokenizer(kind: BackendKind) {
    let (app, mock) = setup(kind, ProviderKind::Openai, |_| {}).await;
    let (_, key) = app.user_with_key("e@example.com", None).await;
    mock.set_fault(Fault::OmitUsage);
    let body = json!({"model": "gpt-test", "max_tokens": 6, "messages": [{"role": "user", "content": "hello world"}]});
    let r = app.v1("/v1/chat/completions", &key, body.clone()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let rec = app.usage_record(&request_id(&r)).await;
    assert!(rec.estimated);
    // "hello world" = 2 tokens + 3 per message + 3 for the reply. The output ("tok1 … tok6")
    // is counted by the tokenizer, not by words.
    assert_eq!(rec.prompt_tokens, 8);
    assert!(rec.completion_tokens >= 6, "{}", rec.completion_tokens);
    let non_streamed = rec.completion_tokens;

    let mut stream = body;
    stream["stream"] = json!(true);
    let r = app.v1("/v1/chat/completions", &key, stream).await;
    let rid = request_id(&r);
    let events = read_events(r).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let rec = app.usage_record(&rid).await;
    assert!(rec.estimated && rec.streamed);
    assert_eq!(rec.prompt_tokens, 8);
    assert_eq!(rec.completion_tokens, non_streamed, "same text, same count");
}

async fn upstream_faults_map_to_openai_errors(kind: BackendKind) {
    let (app, mock) = setup(kind, ProviderKind::Openai, |_| {}).await;
    let (_, key) = app.user_with_key("f@example.com", None).await;
    let body = json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]});
    let cases = [
        (
            Fault::Status {
                status: 429,
                retry_after: Some(7),
            },
            StatusCode::TOO_MANY_REQUESTS,
            "upstream_rate_limited",
            "rate_limit_error",
        ),
        (
            Fault::Status {
                status: 500,
                retry_after: None,
            },
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "api_error",
        ),
        (
            Fault::Status {
                status: 503,
                retry_after: None,
            },
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "api_error",
        ),
        (
            Fault::Status {
                status: 400,
                retry_after: None,
            },
            StatusCode::BAD_REQUEST,
            "upstream_invalid_request",
            "invalid_request_error",
        ),
        (
            Fault::ErrorBodyWithSecret,
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "api_error",
        ),
        (
            Fault::HangBeforeHeaders,
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            "api_error",
        ),
    ];
    for (fault, status, code, kind_) in cases {
        mock.set_fault(fault.clone());
        let started = std::time::Instant::now();
        let r = app.v1("/v1/chat/completions", &key, body.clone()).await;
        assert_eq!(r.status(), status, "{fault:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{fault:?} took {:?}",
            started.elapsed()
        );
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(r.headers()["retry-after"], "7");
        }
        let rid = request_id(&r);
        let text = r.text().await.unwrap();
        assert!(
            !text.contains(PROVIDER_KEY),
            "{fault:?} leaked the provider key: {text}"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (v["error"]["code"].as_str(), v["error"]["type"].as_str()),
            (Some(code), Some(kind_)),
            "{fault:?}"
        );
        let rec = app.usage_record(&rid).await;
        assert_eq!(rec.status, i32::from(status.as_u16()));
        assert_eq!(rec.error_code.as_deref(), Some(code));
        assert_eq!(
            rec.cost_micros, 0,
            "no charge when the upstream produced nothing"
        );
    }
    // Connection refused: 502, quickly.
    drop(mock);
    let r = app.v1("/v1/chat/completions", &key, body).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_unavailable");
}

async fn stream_faults_end_with_an_error_event(kind: BackendKind) {
    let (app, mock) = setup(kind, ProviderKind::Openai, |_| {}).await;
    let (_, key) = app.user_with_key("g@example.com", None).await;
    let body = json!({"model": "gpt-test", "stream": true, "max_tokens": 8, "messages": [{"role": "user", "content": "go"}]});

    // Stall mid-stream: the chunks sent so far arrive, then an error event after the idle timeout.
    mock.set_fault(Fault::StallAfterChunks(3));
    let r = app.v1("/v1/chat/completions", &key, body.clone()).await;
    let rid = request_id(&r);
    let events = read_events(r).await;
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout");
    let rec = app.usage_record(&rid).await;
    assert_eq!(rec.error_code.as_deref(), Some("upstream_timeout"));
    assert!(rec.estimated && rec.completion_tokens >= 3, "{rec:?}");

    // Connection dropped mid-stream.
    mock.set_fault(Fault::CloseAfterChunks(2));
    let r = app.v1("/v1/chat/completions", &key, body.clone()).await;
    let rid = request_id(&r);
    let events = read_events(r).await;
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_unavailable");
    assert_eq!(
        app.usage_record(&rid).await.error_code.as_deref(),
        Some("upstream_unavailable")
    );

    // Malformed SSE: the broken event is dropped, the rest arrives, usage is exact.
    mock.set_fault(Fault::MalformedSse);
    let r = app.v1("/v1/chat/completions", &key, body.clone()).await;
    let rid = request_id(&r);
    let events = read_events(r).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    for e in &events[..events.len() - 1] {
        serde_json::from_str::<Value>(e)
            .unwrap_or_else(|_| panic!("client received a malformed event: {e}"));
    }
    let rec = app.usage_record(&rid).await;
    assert_eq!(
        (rec.completion_tokens, rec.estimated, rec.error_code),
        (8, false, None)
    );
}

async fn embeddings_and_completions(kind: BackendKind) {
    let (app, mock) = setup(kind, ProviderKind::Openai, |_| {}).await;
    price_models(&app).await;
    let (_, key) = app.user_with_key("h@example.com", None).await;
    let r = app
        .v1(
            "/v1/embeddings",
            &key,
            json!({"model": "embed-test", "input": ["one two", "three"], "dimensions": 4}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let rid = request_id(&r);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(mock.requests().pop().unwrap().path, "/v1/embeddings");
    let rec = app.usage_record(&rid).await;
    assert_eq!(
        (
            rec.endpoint.as_str(),
            rec.prompt_tokens,
            rec.completion_tokens
        ),
        ("embeddings", 3, 0)
    );
    let r = app
        .v1(
            "/v1/embeddings",
            &key,
            json!({"model": "embed-test", "input": "x", "stream": true}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let r = app
        .v1(
            "/v1/completions",
            &key,
            json!({"model": "gpt-test", "prompt": "once upon a time", "max_tokens": 4}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let rid = request_id(&r);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "text_completion");
    let rec = app.usage_record(&rid).await;
    assert_eq!(
        (
            rec.endpoint.as_str(),
            rec.prompt_tokens,
            rec.completion_tokens
        ),
        ("completions", 4, 4)
    );
    let r = app
        .v1(
            "/v1/completions",
            &key,
            json!({"model": "gpt-test", "prompt": "a b", "max_tokens": 3, "stream": true}),
        )
        .await;
    let rid = request_id(&r);
    assert_eq!(read_events(r).await.last().unwrap(), "[DONE]");
    assert_eq!(app.usage_record(&rid).await.completion_tokens, 3);
}

async fn anthropic_is_translated_both_ways(kind: BackendKind) {
    let (app, mock) = setup(kind, ProviderKind::Anthropic, |_| {}).await;
    let (_, key) = app.user_with_key("i@example.com", None).await;
    let tools = json!([{"type": "function", "function": {"name": "weather", "description": "w", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let body = json!({
        "model": "gpt-test", "max_tokens": 6,
        "messages": [{"role": "system", "content": "brief"}, {"role": "user", "content": "hello CACHEHIT"}]
    });
    let r = app.v1("/v1/chat/completions", &key, body.clone()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let rid = request_id(&r);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .count(),
        6
    );
    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(PROVIDER_KEY));
    assert!(sent.header("anthropic-version").is_some());
    let sent = sent.body.unwrap();
    assert_eq!(sent["system"], "brief");
    assert_eq!(sent["model"], "gpt-4o-2024-08-06");
    let rec = app.usage_record(&rid).await;
    let ledger = mock.ledger().pop().unwrap();
    assert_eq!(
        rec.prompt_tokens,
        i64::from(ledger.prompt_tokens),
        "prompt = input + cache read"
    );
    assert_eq!(rec.cached_tokens, i64::from(ledger.cached_tokens));
    assert!(rec.cached_tokens > 0);
    assert_eq!(rec.completion_tokens, 6);

    // Tool calls, streamed: the arguments reassemble into the JSON the upstream produced.
    let mut tool_body = json!({"model": "gpt-test", "stream": true, "tools": tools, "messages": [{"role": "user", "content": "CALLTOOL please"}]});
    let r = app
        .v1("/v1/chat/completions", &key, tool_body.clone())
        .await;
    let rid = request_id(&r);
    let events = read_events(r).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let args: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        serde_json::from_str::<Value>(aihub_mock_upstream::TOOL_ARGUMENTS).unwrap()
    );
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "tool_calls")
    );
    let rec = app.usage_record(&rid).await;
    assert_eq!((rec.streamed, rec.estimated), (true, false));
    assert_eq!(
        rec.completion_tokens,
        i64::from(mock.ledger().pop().unwrap().completion_tokens)
    );

    // Non-streaming tool call, and the tool result sent back.
    tool_body["stream"] = json!(false);
    let v: Value = app
        .v1("/v1/chat/completions", &key, tool_body)
        .await
        .json()
        .await
        .unwrap();
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "weather");
    let follow = json!({"model": "gpt-test", "tools": tools, "messages": [
        {"role": "user", "content": "CALLTOOL please"},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}
    ]});
    let r = app.v1("/v1/chat/completions", &key, follow).await;
    assert_eq!(r.status(), StatusCode::OK);
    let sent = mock.requests().pop().unwrap().body.unwrap();
    assert_eq!(sent["messages"][1]["content"][0]["type"], "tool_use");
    assert_eq!(sent["messages"][2]["content"][0]["type"], "tool_result");
    // Endpoints Anthropic does not serve.
    let r = app
        .v1(
            "/v1/embeddings",
            &key,
            json!({"model": "embed-test", "input": "x"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unsupported_endpoint");
    // Upstream errors in Anthropic's shape map like any other.
    mock.set_fault(Fault::Status {
        status: 529,
        retry_after: None,
    });
    let r = app.v1("/v1/chat/completions", &key, body).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
}

async fn azure_uses_deployment_urls(kind: BackendKind) {
    let (app, mock) = setup(kind, ProviderKind::Azure, |c| {
        c.providers.last_mut().unwrap().api_version = Some("2024-10-21".into());
    })
    .await;
    let (_, key) = app.user_with_key("j@example.com", None).await;
    let r = app.v1("/v1/chat/completions", &key, json!({"model": "gpt-test", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let sent = mock.requests().pop().unwrap();
    assert_eq!(
        sent.path,
        "/openai/deployments/gpt-4o-2024-08-06/chat/completions"
    );
    assert_eq!(sent.query_param("api-version"), Some("2024-10-21"));
    assert_eq!(sent.header("api-key"), Some(PROVIDER_KEY));
    assert!(sent.header("authorization").is_none());
    let rec = app.usage_record(&request_id(&r)).await;
    assert_eq!(rec.completion_tokens, 2);
}

async fn allow_lists_and_unknown_models(kind: BackendKind) {
    let (app, mock) = setup(kind, ProviderKind::Openai, |_| {}).await;
    let (_, key) = app
        .user_with_key("k@example.com", Some(&["embed-test"]))
        .await;
    let models: Value = app
        .req(reqwest::Method::GET, "/v1/models", Some(&key))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["embed-test"]);
    let r = app
        .v1(
            "/v1/chat/completions",
            &key,
            json!({"model": "gpt-test", "messages": []}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let rid = request_id(&r);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["error"]["code"].as_str(), v["error"]["param"].as_str()),
        (Some("model_not_allowed"), Some("model"))
    );
    assert_eq!(app.usage_record(&rid).await.status, 403);
    let (_, all) = app.user_with_key("l@example.com", None).await;
    let models: Value = app
        .req(reqwest::Method::GET, "/v1/models", Some(&all))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        models["data"].as_array().unwrap().len(),
        4,
        "mock-chat, mock-embedding, gpt-test, embed-test"
    );
    let r = app
        .v1(
            "/v1/chat/completions",
            &all,
            json!({"model": "nope", "messages": []}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "model_not_found");
    // Bad bodies: OpenAI-shaped 400s, metered, never sent upstream.
    let before = mock.request_count();
    for (body, code) in [
        (json!({"messages": []}), "missing_model"),
        (
            json!({"model": "gpt-test", "stream": "yes"}),
            "invalid_type",
        ),
        (
            json!({"model": "gpt-test", "max_tokens": -1}),
            "invalid_value",
        ),
    ] {
        let r = app.v1("/v1/chat/completions", &all, body).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], code);
    }
    let r = app
        .req(reqwest::Method::POST, "/v1/chat/completions", Some(&all))
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(mock.request_count(), before);
}

async fn the_body_cannot_redirect_the_upstream(kind: BackendKind) {
    let (app, mock) = setup(kind, ProviderKind::Openai, |c| {
        c.gateway.max_request_bytes = 64 * 1024
    })
    .await;
    let (_, key) = app.user_with_key("m@example.com", None).await;
    let body = json!({
        "model": "gpt-test", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}],
        "api_base": "http://127.0.0.1:1/evil", "base_url": "http://127.0.0.1:1/evil",
        "api_key": "attacker", "headers": {"Authorization": "Bearer attacker"}, "extra_headers": {"x": "y"}
    });
    let r = app.v1("/v1/chat/completions", &key, body).await;
    assert_eq!(r.status(), StatusCode::OK);
    let sent = mock.requests().pop().unwrap();
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {PROVIDER_KEY}").as_str())
    );
    assert_eq!(sent.path, "/v1/chat/completions");
    // Oversized bodies: 413 in OpenAI's shape.
    let big =
        json!({"model": "gpt-test", "messages": [{"role": "user", "content": "x".repeat(70_000)}]});
    let r = app.v1("/v1/chat/completions", &key, big).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "request_too_large");
}

/// Policy: when a client disconnects mid-stream, the gateway keeps reading the upstream to its
/// end and bills the usage the upstream reports — what the provider will charge.
async fn disconnected_streams_are_still_billed_in_full(kind: BackendKind) {
    let options = MockOptions {
        chunk_interval: Duration::from_millis(20),
        ..MockOptions::default()
    };
    let (app, slow) = setup_with(kind, ProviderKind::Openai, options, |_| {}).await;
    let (_, key) = app.user_with_key("n@example.com", None).await;
    let body = json!({"model": "gpt-test", "stream": true, "max_tokens": 40, "messages": [{"role": "user", "content": "tell a story"}]});
    for after in [0usize, 1, 10] {
        let r = app.v1("/v1/chat/completions", &key, body.clone()).await;
        let rid = request_id(&r);
        let mut stream = r.bytes_stream();
        let mut events = 0;
        while events < after {
            let chunk = stream.next().await.unwrap().unwrap();
            events += chunk.windows(2).filter(|w| w == b"\n\n").count();
        }
        drop(stream);
        let started = std::time::Instant::now();
        let rec = app.usage_record(&rid).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            rec.completion_tokens, 40,
            "after {after} chunks: billed what the upstream produced"
        );
        assert!(!rec.estimated);
        assert_eq!(
            rec.error_code.as_deref(),
            Some("client_disconnected"),
            "after {after} chunks"
        );
    }
    let ledger = slow.ledger();
    assert_eq!(ledger.len(), 3);
    assert!(
        ledger
            .iter()
            .all(|l| l.completed && l.completion_tokens == 40),
        "{ledger:?}"
    );
}

/// Policy: a non-streaming request whose client leaves before the answer (its connection
/// closes while the upstream works) runs to its end in a task of its own and is billed in full.
async fn a_client_that_leaves_before_the_answer_is_still_billed(kind: BackendKind) {
    let options = MockOptions {
        latency: Duration::from_millis(400),
        ..MockOptions::default()
    };
    let (app, slow) = setup_with(kind, ProviderKind::Openai, options, |_| {}).await;
    let (_, key) = app.user_with_key("leaver@example.com", None).await;
    let body = json!({"model": "gpt-test", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}]});
    let gone = app
        .req(reqwest::Method::POST, "/v1/chat/completions", Some(&key))
        .json(&body)
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(
        gone.is_err_and(|e| e.is_timeout()),
        "the client gave up first"
    );
    // The upstream was called, answered in full after the client had gone (the mock marks
    // its ledger entry before handing the body over), and the answer was metered as an
    // ordinary success.
    let sent = slow.requests();
    let rid = sent
        .iter()
        .find(|r| r.path == "/v1/chat/completions")
        .and_then(|r| r.header("x-aihub-request-id"))
        .expect("the request id is sent upstream")
        .to_owned();
    let rec = app.usage_record(&rid).await;
    let ledger = slow.ledger();
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert!(ledger[0].completed, "{ledger:?}");
    assert_eq!(rec.status, 200);
    assert_eq!(rec.error_code, None);
    assert_eq!(rec.completion_tokens, 9);
    assert_eq!(rec.prompt_tokens, i64::from(ledger[0].prompt_tokens));
    assert!(!rec.estimated);
}

/// With `max_draining_streams` reached, a stream whose client left is not read on: the
/// upstream is closed at once and what arrived is billed, estimated.
async fn streams_beyond_the_draining_limit_are_closed_and_estimated(kind: BackendKind) {
    let options = MockOptions {
        chunk_interval: Duration::from_millis(20),
        ..MockOptions::default()
    };
    let (app, slow) = setup_with(kind, ProviderKind::Openai, options, |c| {
        c.gateway.max_draining_streams = 0;
    })
    .await;
    let (_, key) = app.user_with_key("n2@example.com", None).await;
    let body = json!({"model": "gpt-test", "stream": true, "max_tokens": 40, "messages": [{"role": "user", "content": "tell a story"}]});
    let r = app.v1("/v1/chat/completions", &key, body).await;
    let rid = request_id(&r);
    let mut stream = r.bytes_stream();
    let mut events = 0;
    while events < 5 {
        let chunk = stream.next().await.unwrap().unwrap();
        events += chunk.windows(2).filter(|w| w == b"\n\n").count();
    }
    drop(stream);
    let rec = app.usage_record(&rid).await;
    assert_eq!(rec.error_code.as_deref(), Some("client_disconnected"));
    assert!(rec.estimated);
    assert!(
        (4..40).contains(&rec.completion_tokens),
        "billed what arrived: {}",
        rec.completion_tokens
    );
    assert!(rec.prompt_tokens > 0);
    // The upstream was closed long before its 40 chunks (800 ms) were out.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ledger = slow.ledger();
    assert_eq!(ledger.len(), 1);
    assert!(!ledger[0].completed, "{ledger:?}");
    assert!(ledger[0].completion_tokens < 40, "{ledger:?}");
}

/// A stream that keeps trickling never exceeds the provider's total timeout.
async fn total_timeout_bounds_slow_streams(kind: BackendKind) {
    let options = MockOptions {
        chunk_interval: Duration::from_millis(100),
        ..MockOptions::default()
    };
    let (app, _mock) = setup_with(kind, ProviderKind::Openai, options, |c| {
        c.providers.last_mut().unwrap().total_timeout_ms = 700;
    })
    .await;
    let (_, key) = app.user_with_key("o@example.com", None).await;
    let started = std::time::Instant::now();
    let r = app.v1("/v1/chat/completions", &key, json!({"model": "gpt-test", "stream": true, "max_tokens": 50, "messages": [{"role": "user", "content": "slowly"}]})).await;
    let rid = request_id(&r);
    let events = read_events(r).await;
    assert!(
        started.elapsed() < Duration::from_millis(2_000),
        "took {:?}",
        started.elapsed()
    );
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout");
    let rec = app.usage_record(&rid).await;
    assert_eq!(rec.error_code.as_deref(), Some("upstream_timeout"));
    assert!(
        rec.completion_tokens > 0 && rec.completion_tokens < 50,
        "billed what arrived: {}",
        rec.completion_tokens
    );
}

/// A shutdown lets a stream in flight run to its `[DONE]`, waits for a stream whose client left
/// to drain, and stops only after both usage records are in the database.
async fn shutdown_finishes_streams_and_meters_them(kind: BackendKind) {
    let options = MockOptions {
        chunk_interval: Duration::from_millis(20),
        ..MockOptions::default()
    };
    let (mut app, slow) = setup_with(kind, ProviderKind::Openai, options, |c| {
        c.server.shutdown_grace_secs = 10;
    })
    .await;
    let (_, key) = app.user_with_key("sd@example.com", None).await;
    let body = json!({"model": "gpt-test", "stream": true, "max_tokens": 40, "messages": [{"role": "user", "content": "tell a story"}]});
    // The stream read to its end is the shorter one: the shutdown must wait for the other
    // after the last connection closed.
    let mut short = body.clone();
    short["max_tokens"] = json!(10);
    let read = app.v1("/v1/chat/completions", &key, short).await;
    let read_id = request_id(&read);
    let reader = tokio::spawn(read_events(read));
    let left = app.v1("/v1/chat/completions", &key, body).await;
    let left_id = request_id(&left);
    let mut stream = left.bytes_stream();
    let _ = stream.next().await.unwrap().unwrap();
    drop(stream);

    let started = std::time::Instant::now();
    app.shut_down().await;
    // The drained stream takes 40 chunks × 20 ms; the shutdown waited for it.
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    let events = reader.await.unwrap();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let store = app.reopen_store().await;
    let record = |id: &str| {
        let id = uuid::Uuid::parse_str(id).unwrap();
        let store = store.clone();
        async move {
            store
                .usage_record(id)
                .await
                .unwrap()
                .expect("record loaded before stop")
        }
    };
    let read = record(&read_id).await;
    assert_eq!(read.completion_tokens, 10);
    assert_eq!(read.error_code, None);
    let left = record(&left_id).await;
    assert_eq!(left.completion_tokens, 40);
    assert!(!left.estimated);
    assert_eq!(left.error_code.as_deref(), Some("client_disconnected"));
    assert!(
        slow.ledger().iter().all(|l| l.completed),
        "{:?}",
        slow.ledger()
    );
}

/// Proof that a request does not wait on the database: with the key cached, the database pools
/// are closed, and requests (streaming and not) are still served and journaled.
async fn the_hot_path_needs_no_database(kind: BackendKind) {
    let (app, mock) = setup(kind, ProviderKind::Openai, |_| {}).await;
    let (_, key) = app.user_with_key("q@example.com", None).await;
    let body = json!({"model": "gpt-test", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(
        app.v1("/v1/chat/completions", &key, body.clone())
            .await
            .status(),
        StatusCode::OK
    );
    app.state.services.store.close().await;
    assert!(
        app.state.services.store.ping().await.is_err(),
        "the database is unreachable now"
    );
    let mut stream = body.clone();
    stream["stream"] = json!(true);
    for i in 0..20 {
        let b = if i % 2 == 0 { &body } else { &stream };
        let r = app.v1("/v1/chat/completions", &key, b.clone()).await;
        assert_eq!(r.status(), StatusCode::OK, "request {i}");
        let _ = r.bytes().await.unwrap();
    }
    assert_eq!(mock.ledger().len(), 21);
    // Their usage waits in the journal (21 starts + 21 finishes, one line each).
    let journal = app.dir.path().join("journal");
    let lines: usize = std::fs::read_dir(&journal)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap().lines().count())
        .sum();
    assert!(lines >= 40, "{lines} journal lines");
}

/// What a response is made of, for comparing two: status, headers (sorted; those that differ
/// from call to call or that only the HTTP server adds left out) and body (for JSON, without the
/// upstream's per-reply `id` and `created`; for events, the events' `data` kinds).
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    headers: std::collections::BTreeMap<String, String>,
    body: Value,
}

impl Answer {
    fn new(status: u16, headers: &http::HeaderMap, body: &[u8]) -> Self {
        let mut kept = std::collections::BTreeMap::new();
        for (name, value) in headers {
            let name = name.as_str();
            if matches!(name, "date" | "content-length" | "transfer-encoding") {
                continue;
            }
            let value = value.to_str().unwrap();
            let value = if name == "x-request-id" {
                assert!(uuid::Uuid::parse_str(value).is_ok(), "{value}");
                "<uuid>".to_owned()
            } else if name.starts_with("x-ratelimit-") {
                "<figure>".to_owned()
            } else {
                value.to_owned()
            };
            assert!(
                kept.insert(name.to_owned(), value).is_none(),
                "{name} twice"
            );
        }
        let body = match serde_json::from_slice::<Value>(body) {
            Ok(mut v) => {
                if let Some(o) = v.as_object_mut() {
                    o.remove("id");
                    o.remove("created");
                }
                v
            }
            Err(_) => Value::from(
                String::from_utf8_lossy(body)
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .map(|d| if d == "[DONE]" { "[DONE]" } else { "chunk" })
                    .collect::<Vec<_>>(),
            ),
        };
        Self {
            status,
            headers: kept,
            body,
        }
    }
}

/// Proxied calls go from the server straight to their handler (`routes::v1::direct`), past
/// the router, which still has their routes. Both answer alike — status, the edge's headers,
/// error bodies, replies — for successes, refusals and malformed or oversized bodies.
async fn the_direct_path_answers_as_the_router_does(kind: BackendKind) {
    use tower::ServiceExt;

    let (app, _mock) = setup(kind, ProviderKind::Openai, |c| {
        c.gateway.max_request_bytes = 4096;
    })
    .await;
    price_models(&app).await;
    let (_who, key) = app.user_with_key("a@example.com", None).await;
    let router = aihub_server::routes::router(app.state.clone());
    let chat = |extra: Value| {
        let mut body = json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body.to_string()
    };
    let cases: Vec<(&str, Option<&str>, String, u16)> = vec![
        ("/v1/chat/completions", Some(&key), chat(json!({})), 200),
        (
            "/v1/chat/completions",
            Some(&key),
            chat(json!({"stream": true, "stream_options": {"include_usage": true}})),
            200,
        ),
        (
            "/v1/completions",
            Some(&key),
            json!({"model": "gpt-test", "prompt": "hi", "max_tokens": 3}).to_string(),
            200,
        ),
        (
            "/v1/embeddings",
            Some(&key),
            json!({"model": "embed-test", "input": "hi"}).to_string(),
            200,
        ),
        ("/v1/chat/completions", None, chat(json!({})), 401),
        (
            "/v1/chat/completions",
            Some("sk-aihub-not-a-key"),
            chat(json!({})),
            401,
        ),
        ("/v1/chat/completions", Some(&key), "{not json".into(), 400),
        (
            "/v1/chat/completions",
            Some(&key),
            chat(json!({"model": "no-such-model"})),
            404,
        ),
        (
            "/v1/chat/completions",
            Some(&key),
            chat(json!({"pad": "x".repeat(5000)})),
            413,
        ),
    ];
    for (path, bearer, body, status) in cases {
        let mut over_http = app
            .client
            .post(app.url(path))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(b) = bearer {
            over_http = over_http.bearer_auth(b);
        }
        let r = over_http.send().await.unwrap();
        let (st, headers) = (r.status().as_u16(), r.headers().clone());
        let direct = Answer::new(st, &headers, &r.bytes().await.unwrap());

        let mut req = http::Request::post(path).header("content-type", "application/json");
        if let Some(b) = bearer {
            req = req.header("authorization", format!("Bearer {b}"));
        }
        let mut req = req.body(axum::body::Body::from(body)).unwrap();
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                9,
            ))));
        let resp = router.clone().oneshot(req).await.unwrap();
        let (parts, b) = resp.into_parts();
        let b = axum::body::to_bytes(b, usize::MAX).await.unwrap();
        let routed = Answer::new(parts.status.as_u16(), &parts.headers, &b);

        assert_eq!(direct.status, status, "{path} {bearer:?}: {direct:?}");
        assert_eq!(direct, routed, "{path} {bearer:?}");
        assert!(direct.headers.contains_key("x-content-type-options"));
    }
}
