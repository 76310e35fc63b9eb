//! Anthropic's Messages API behind the chat-completions interface: requests are translated to
//! `/v1/messages` (system prompt, content parts, images, tools, tool results, stop sequences),
//! replies and streams back to `chat.completion` / `chat.completion.chunk`, tool calls
//! included. Usage: prompt = input + cache-read + cache-creation tokens; cached = cache-read.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aihub_service::catalog::ProviderSpec;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, header};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::error::GatewayError;
use crate::providers::http::Upstream;
use crate::providers::openai::{MAX_RESPONSE, REQUEST_ID_HEADER};
use crate::providers::{
    Adapter, Call, Endpoint, EventStream, Reply, StreamFault, StreamItem, Usage,
};
use crate::proxy::request_id_value;
use crate::sse::Event;

pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
pub const DEFAULT_VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens`; used when the client sets none.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

pub struct Anthropic {
    upstream: Upstream,
    /// `{base_url}/v1/messages`, parsed once.
    messages_url: http::Uri,
    version: String,
}

impl Anthropic {
    pub fn new(spec: Arc<ProviderSpec>) -> Result<Self, GatewayError> {
        let base_url = spec.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
        let version = spec
            .api_version
            .clone()
            .unwrap_or_else(|| DEFAULT_VERSION.to_owned());
        let upstream = Upstream::new(spec.clone())?;
        let messages_url = upstream.url(&format!("{base_url}/v1/messages"))?;
        Ok(Self {
            upstream,
            messages_url,
            version,
        })
    }
}

fn bad(param: &'static str, message: impl Into<String>) -> GatewayError {
    GatewayError::invalid("invalid_value", Some(param), message)
}

/// Text of an OpenAI `content` (string or parts).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// An OpenAI content part as an Anthropic content block.
fn block_of(part: &Value) -> Result<Option<Value>, GatewayError> {
    match part.get("type").and_then(Value::as_str) {
        Some("text") => Ok(Some(
            json!({"type": "text", "text": part.get("text").and_then(Value::as_str).unwrap_or_default()}),
        )),
        Some("image_url") => {
            let url = part
                .get("image_url")
                .and_then(|i| i.get("url").or(Some(i)))
                .and_then(Value::as_str)
                .ok_or_else(|| bad("messages", "image_url parts need a url"))?;
            if let Some(rest) = url.strip_prefix("data:") {
                let (meta, data) = rest
                    .split_once(',')
                    .ok_or_else(|| bad("messages", "malformed data URL"))?;
                let media = meta
                    .strip_suffix(";base64")
                    .ok_or_else(|| bad("messages", "image data URLs must be base64"))?;
                Ok(Some(
                    json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}),
                ))
            } else {
                Ok(Some(
                    json!({"type": "image", "source": {"type": "url", "url": url}}),
                ))
            }
        }
        _ => Ok(None),
    }
}

fn content_blocks(content: &Value) -> Result<Vec<Value>, GatewayError> {
    match content {
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![json!({"type": "text", "text": s})]),
        Value::Array(parts) => Ok(parts
            .iter()
            .map(block_of)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect()),
        Value::Null => Ok(Vec::new()),
        _ => Err(bad(
            "messages",
            "content must be a string or an array of parts",
        )),
    }
}

/// Appends blocks to the last message if it has the same role (Anthropic wants alternation).
fn push(messages: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = messages.last_mut()
        && last.get("role").and_then(Value::as_str) == Some(role)
        && let Some(Value::Array(existing)) = last.get_mut("content")
    {
        existing.extend(blocks);
        return;
    }
    messages.push(json!({"role": role, "content": blocks}));
}

/// Translates a chat-completions request into a Messages API request.
pub fn to_messages_request(
    req: &Value,
    upstream_model: &str,
    max_tokens: Option<u64>,
    stream: bool,
) -> Result<Value, GatewayError> {
    let msgs = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("messages", "`messages` must be an array"))?;
    if req.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(bad("n", "this model supports only n = 1"));
    }
    let mut system: Vec<String> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for m in msgs {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => system.push(text_of(content)),
            "user" => push(&mut messages, "user", content_blocks(content)?),
            "assistant" => {
                let mut blocks = content_blocks(content)?;
                for tc in m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let f = tc.get("function").unwrap_or(&Value::Null);
                    let args = f.get("arguments").and_then(Value::as_str).unwrap_or("{}");
                    let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": tc.get("id").and_then(Value::as_str).unwrap_or_default(),
                        "name": f.get("name").and_then(Value::as_str).unwrap_or_default(),
                        "input": input,
                    }));
                }
                push(&mut messages, "assistant", blocks);
            }
            "tool" => {
                let block = json!({
                    "type": "tool_result",
                    "tool_use_id": m.get("tool_call_id").and_then(Value::as_str).unwrap_or_default(),
                    "content": text_of(content),
                });
                push(&mut messages, "user", vec![block]);
            }
            other => {
                return Err(bad(
                    "messages",
                    format!("unsupported message role {other:?}"),
                ));
            }
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));
    out.insert(
        "max_tokens".into(),
        json!(max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
    );
    out.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        out.insert("system".into(), json!(system.join("\n\n")));
    }
    if stream {
        out.insert("stream".into(), json!(true));
    }
    for key in ["temperature", "top_p", "top_k"] {
        if let Some(v) = req.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), v.clone());
        }
    }
    match req.get("stop") {
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            out.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(user) = req.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    if let Some(tools) = req.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .filter_map(|t| t.get("function"))
            .map(|f| {
                let mut t = json!({
                    "name": f.get("name").cloned().unwrap_or(Value::Null),
                    "input_schema": f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                });
                if let (Some(d), Some(obj)) = (f.get("description"), t.as_object_mut()) {
                    obj.insert("description".into(), d.clone());
                }
                t
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = req.get("tool_choice") {
        let mapped = match choice {
            Value::String(s) if s == "auto" => Some(json!({"type": "auto"})),
            Value::String(s) if s == "required" => Some(json!({"type": "any"})),
            Value::String(s) if s == "none" => Some(json!({"type": "none"})),
            Value::Object(o) => o
                .get("function")
                .and_then(|f| f.get("name"))
                .map(|n| json!({"type": "tool", "name": n})),
            _ => None,
        };
        if let Some(m) = mapped {
            out.insert("tool_choice".into(), m);
        }
    }
    Ok(Value::Object(out))
}

fn finish_reason(stop: Option<&str>) -> &'static str {
    match stop {
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

fn usage_of(u: &Value) -> Usage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cached = n("cache_read_input_tokens");
    Usage {
        prompt_tokens: n("input_tokens") + cached + n("cache_creation_input_tokens"),
        completion_tokens: n("output_tokens"),
        cached_tokens: cached,
    }
}

fn usage_json(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Translates a Messages API reply into a `chat.completion`.
pub fn from_messages_response(resp: &Value, model: &str) -> (Value, Usage) {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in resp
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or_default()),
            Some("tool_use") => tool_calls.push(json!({
                "id": block.get("id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": block.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": block.get("input").map_or_else(|| "{}".to_owned(), Value::to_string),
                },
            })),
            _ => {}
        }
    }
    let usage = usage_of(resp.get("usage").unwrap_or(&Value::Null));
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { json!(text) }});
    if !tool_calls.is_empty()
        && let Some(obj) = message.as_object_mut()
    {
        obj.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    let id = resp.get("id").and_then(Value::as_str).unwrap_or_default();
    let out = json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(resp.get("stop_reason").and_then(Value::as_str)),
        }],
        "usage": usage_json(usage),
    });
    (out, usage)
}

/// Streaming translation state: Anthropic events in, OpenAI chunks out.
pub struct StreamTranslator {
    id: String,
    model: String,
    created: u64,
    usage: Usage,
    /// Anthropic content-block index → OpenAI tool-call index.
    tool_index: Vec<(u64, usize)>,
}

impl StreamTranslator {
    #[must_use]
    pub fn new(model: &str) -> Self {
        Self {
            id: String::new(),
            model: model.to_owned(),
            created: unix_now(),
            usage: Usage::default(),
            tool_index: Vec::new(),
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> StreamItem {
        let v = json!({
            "id": format!("chatcmpl-{}", self.id),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        sse_item(&v)
    }

    /// Translates one upstream event into zero or more items.
    pub fn translate(&mut self, ev: &Event) -> Result<Vec<StreamItem>, StreamFault> {
        let v: Value = serde_json::from_slice(&ev.data)
            .map_err(|_| StreamFault::Upstream("malformed event".into()))?;
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .or(ev.name.as_deref())
            .unwrap_or_default();
        Ok(match kind {
            "message_start" => {
                let msg = v.get("message").unwrap_or(&Value::Null);
                self.id = msg
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let u = usage_of(msg.get("usage").unwrap_or(&Value::Null));
                self.usage.prompt_tokens = u.prompt_tokens;
                self.usage.cached_tokens = u.cached_tokens;
                self.usage.completion_tokens = u.completion_tokens;
                vec![self.chunk(json!({"role": "assistant", "content": ""}), None)]
            }
            "content_block_start" => {
                let block = v.get("content_block").unwrap_or(&Value::Null);
                if block.get("type").and_then(Value::as_str) == Some("tool_use") {
                    let idx = self.tool_index.len();
                    self.tool_index
                        .push((v.get("index").and_then(Value::as_u64).unwrap_or(0), idx));
                    vec![self.chunk(
                        json!({"tool_calls": [{
                            "index": idx,
                            "id": block.get("id").cloned().unwrap_or(Value::Null),
                            "type": "function",
                            "function": {"name": block.get("name").cloned().unwrap_or(Value::Null), "arguments": ""},
                        }]}),
                        None,
                    )]
                } else {
                    Vec::new()
                }
            }
            "content_block_delta" => {
                let delta = v.get("delta").unwrap_or(&Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => vec![self.chunk(
                        json!({"content": delta.get("text").cloned().unwrap_or(json!(""))}),
                        None,
                    )],
                    Some("input_json_delta") => {
                        let block = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let idx = self
                            .tool_index
                            .iter()
                            .find(|(b, _)| *b == block)
                            .map_or(0, |(_, i)| *i);
                        vec![self.chunk(
                            json!({"tool_calls": [{"index": idx, "function": {"arguments": delta.get("partial_json").cloned().unwrap_or(json!(""))}}]}),
                            None,
                        )]
                    }
                    _ => Vec::new(),
                }
            }
            "message_delta" => {
                if let Some(out) = v
                    .get("usage")
                    .and_then(|u| u.get("output_tokens"))
                    .and_then(Value::as_u64)
                {
                    self.usage.completion_tokens = out;
                }
                let stop = v
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str);
                vec![self.chunk(json!({}), Some(finish_reason(stop)))]
            }
            "message_stop" => {
                let usage_chunk = json!({
                    "id": format!("chatcmpl-{}", self.id),
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": usage_json(self.usage),
                });
                vec![
                    StreamItem::Usage(self.usage),
                    sse_item(&usage_chunk),
                    StreamItem::Done,
                ]
            }
            "error" => {
                let msg = v
                    .get("error")
                    .and_then(|e| e.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("error");
                return Err(StreamFault::Upstream(msg.to_owned()));
            }
            _ => Vec::new(),
        })
    }
}

fn sse_item(v: &Value) -> StreamItem {
    let data = Bytes::from(v.to_string());
    let mut f = Vec::with_capacity(data.len() + 8);
    f.extend_from_slice(b"data: ");
    f.extend_from_slice(&data);
    f.extend_from_slice(b"\n\n");
    StreamItem::Event {
        frame: Bytes::from(f),
        data,
    }
}

impl Adapter for Anthropic {
    async fn send<'a>(&'a self, call: Call<'a>) -> Result<Reply, GatewayError> {
        let deadline = Instant::now() + self.upstream.spec.total_timeout;
        let parsed = full_body(&call)?;
        let model = call.body.model.clone();
        let req = to_messages_request(
            &parsed,
            call.upstream_model,
            call.body.max_tokens,
            call.body.stream,
        )?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(v) = HeaderValue::from_str(&self.version) {
            headers.insert("anthropic-version", v);
        }
        if let Some(key) = &self.upstream.spec.api_key
            && let Ok(mut v) = HeaderValue::from_str(key.expose())
        {
            v.set_sensitive(true);
            headers.insert("x-api-key", v);
        }
        if let Some(v) = request_id_value(call.request_id) {
            headers.insert(REQUEST_ID_HEADER, v);
        }
        let body = serde_json::to_vec(&req).map_err(|_| GatewayError::internal())?;
        let resp = self
            .upstream
            .post(&self.messages_url, headers, body, deadline)
            .await?;
        if !call.body.stream {
            let bytes = self
                .upstream
                .read_body(resp, MAX_RESPONSE, deadline)
                .await?;
            let v: Value = serde_json::from_slice(&bytes).map_err(|_| {
                GatewayError::upstream_error("The upstream provider sent an unreadable reply.")
            })?;
            let (out, usage) = from_messages_response(&v, &model);
            return Ok(Reply::Complete {
                body: Bytes::from(out.to_string()),
                usage: Some(usage),
            });
        }
        let mut translator = StreamTranslator::new(&model);
        let events: EventStream = self
            .upstream
            .events(resp, deadline)
            .flat_map(move |ev| {
                let items: Vec<Result<StreamItem, StreamFault>> =
                    match ev.and_then(|ev| translator.translate(&ev)) {
                        Ok(items) => items.into_iter().map(Ok).collect(),
                        Err(f) => vec![Err(f)],
                    };
                futures_util::stream::iter(items)
            })
            .boxed();
        Ok(Reply::Stream(events))
    }

    fn supports(&self, endpoint: Endpoint) -> bool {
        endpoint == Endpoint::ChatCompletions
    }
}

/// The whole request body as a JSON tree (translation needs every field).
fn full_body(call: &Call<'_>) -> Result<Value, GatewayError> {
    call.body.to_value().map_err(|_| {
        GatewayError::invalid(
            "invalid_json",
            None,
            "We could not parse the JSON body of your request.",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_translate_with_system_tools_and_results() {
        let req = json!({
            "model": "claude", "max_tokens": 100, "temperature": 0.2, "stop": "END", "user": "u-1",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Weather?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "user", "content": "thanks"}
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "description": "w", "parameters": {"type": "object"}}}],
            "tool_choice": "required"
        });
        let out = to_messages_request(&req, "claude-sonnet-4-5", Some(100), false).unwrap();
        assert_eq!(out["model"], "claude-sonnet-4-5");
        assert_eq!(out["max_tokens"], 100);
        assert_eq!(out["system"], "Be brief.");
        assert_eq!(out["stop_sequences"], json!(["END"]));
        assert_eq!(out["metadata"]["user_id"], "u-1");
        assert_eq!(out["tool_choice"], json!({"type": "any"}));
        assert_eq!(out["tools"][0]["input_schema"], json!({"type": "object"}));
        let msgs = out["messages"].as_array().unwrap();
        assert_eq!(
            msgs.len(),
            3,
            "tool result and next user turn merge: {msgs:?}"
        );
        assert_eq!(
            msgs[0]["content"][1]["source"],
            json!({"type": "base64", "media_type": "image/png", "data": "AAAA"})
        );
        assert_eq!(msgs[1]["content"][0]["type"], "tool_use");
        assert_eq!(msgs[1]["content"][0]["input"], json!({"city": "Paris"}));
        assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
        assert_eq!(msgs[2]["content"][1]["text"], "thanks");
        assert!(out.get("stream").is_none());
        let err = to_messages_request(
            &json!({"model": "m", "messages": [], "n": 2}),
            "x",
            None,
            false,
        )
        .unwrap_err();
        assert_eq!(err.param, Some("n"));
        let default = to_messages_request(
            &json!({"messages": [{"role": "user", "content": "hi"}]}),
            "x",
            None,
            true,
        )
        .unwrap();
        assert_eq!(default["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(default["stream"], true);
    }

    #[test]
    fn replies_translate_with_usage_and_tool_calls() {
        let resp = json!({
            "id": "msg_1", "type": "message", "role": "assistant",
            "content": [{"type": "text", "text": "Let me check."}, {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 3, "cache_creation_input_tokens": 2}
        });
        let (out, usage) = from_messages_response(&resp, "claude");
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 15,
                completion_tokens: 5,
                cached_tokens: 3
            }
        );
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(out["choices"][0]["message"]["content"], "Let me check.");
        let tc = &out["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(tc["function"]["name"], "weather");
        let args: Value =
            serde_json::from_str(tc["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"city": "Paris"}));
        assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 3);
        assert_eq!(out["model"], "claude");
    }

    fn ev(name: &str, data: Value) -> Event {
        let data = Bytes::from(data.to_string());
        Event {
            raw: data.clone(),
            name: Some(name.into()),
            data,
        }
    }

    #[test]
    fn streams_translate_text_tools_and_usage() {
        let mut t = StreamTranslator::new("claude");
        let mut items = Vec::new();
        for e in [
            ev(
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_9", "usage": {"input_tokens": 7, "output_tokens": 1}}}),
            ),
            ev("ping", json!({"type": "ping"})),
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
            ),
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_2", "name": "f", "input": {}}}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
            ),
            ev(
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 12}}),
            ),
            ev("message_stop", json!({"type": "message_stop"})),
        ] {
            items.extend(t.translate(&e).unwrap());
        }
        let chunks: Vec<Value> = items
            .iter()
            .filter_map(|i| match i {
                StreamItem::Event { data, .. } => Some(serde_json::from_slice(data).unwrap()),
                _ => None,
            })
            .collect();
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Hi");
        assert_eq!(
            chunks[2]["choices"][0]["delta"]["tool_calls"][0]["id"],
            "toolu_2"
        );
        let args: String = chunks[3..5]
            .iter()
            .map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(args, "{\"a\":1}");
        assert_eq!(chunks[5]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks[6]["usage"]["completion_tokens"], 12);
        assert!(items.contains(&StreamItem::Usage(Usage {
            prompt_tokens: 7,
            completion_tokens: 12,
            cached_tokens: 0
        })));
        assert_eq!(items.last(), Some(&StreamItem::Done));
        let err = t
            .translate(&ev(
                "error",
                json!({"type": "error", "error": {"type": "overloaded_error"}}),
            ))
            .unwrap_err();
        assert_eq!(err, StreamFault::Upstream("overloaded_error".into()));
        assert!(
            t.translate(&Event {
                raw: Bytes::new(),
                name: None,
                data: Bytes::from_static(b"{bad")
            })
            .is_err()
        );
    }
}
