//! The built-in `mock` provider: no network, deterministic answers with realistic usage, an
//! optional delay before answering and between streamed chunks. For offline demos, tests and
//! load tests.
//!
//! Counting rules: prompt tokens are the whitespace-separated words of all message contents
//! (chat), the prompt (completions) or the input (embeddings), plus 4 per chat message; a reply
//! has `max_completion_tokens` / `max_tokens` words (capped at 4096) or 16 when unset, per
//! choice, one word per streamed chunk.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aihub_service::catalog::ProviderSpec;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::body::RequestBody;
use crate::error::GatewayError;
use crate::providers::{Adapter, Call, Endpoint, EventStream, Reply, StreamItem, Usage};

const WORDS: [&str; 12] = [
    "The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "and", "keeps",
    "running",
];
const DEFAULT_WORDS: u64 = 16;
const MAX_WORDS: u64 = 4096;
const EMBEDDING_DIMENSIONS: usize = 16;

pub struct Mock {
    spec: Arc<ProviderSpec>,
}

impl Mock {
    #[must_use]
    pub fn new(spec: Arc<ProviderSpec>) -> Self {
        Self { spec }
    }
}

fn words_in(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Words of every text in a JSON value (strings, arrays, `text` parts).
fn words_of_value(v: &Value) -> u64 {
    match v {
        Value::String(s) => words_in(s),
        Value::Array(items) => items.iter().map(words_of_value).sum(),
        Value::Object(o) => o.get("text").map_or(0, words_of_value),
        _ => 0,
    }
}

fn prompt_tokens(endpoint: Endpoint, body: &RequestBody<'_>) -> u64 {
    let field = |name| {
        body.raw(name)
            .and_then(|r| serde_json::from_str::<Value>(r).ok())
    };
    match endpoint {
        Endpoint::ChatCompletions => match field("messages") {
            Some(Value::Array(msgs)) => msgs
                .iter()
                .map(|m| 4 + m.get("content").map_or(0, words_of_value))
                .sum(),
            _ => 0,
        },
        Endpoint::Completions => field("prompt").as_ref().map_or(0, words_of_value),
        Endpoint::Embeddings => field("input").as_ref().map_or(0, words_of_value),
    }
}

fn answer(words: u64) -> String {
    (0..words)
        .map(|i| {
            WORDS
                .get(usize::try_from(i).unwrap_or(0) % WORDS.len())
                .copied()
                .unwrap_or("word")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn frame(v: &Value) -> StreamItem {
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

/// A deterministic unit-length vector for `text`.
fn embedding(text: &str, dims: usize) -> Vec<f32> {
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        state = (state ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            f32::from(u16::try_from(state >> 48).unwrap_or(0)) / f32::from(u16::MAX) - 0.5
        })
        .collect();
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    for x in &mut v {
        *x /= norm;
    }
    v
}

impl Adapter for Mock {
    async fn send<'a>(&'a self, call: Call<'a>) -> Result<Reply, GatewayError> {
        if !self.spec.mock_latency.is_zero() {
            tokio::time::sleep(self.spec.mock_latency).await;
        }
        let body = call.body;
        let model = call.upstream_model;
        let prompt = prompt_tokens(call.endpoint, body);
        let id = format!("mock-{}", call.request_id.simple());
        let created = unix_now();

        if call.endpoint == Endpoint::Embeddings {
            let inputs: Vec<String> = match body
                .raw("input")
                .and_then(|r| serde_json::from_str::<Value>(r).ok())
            {
                Some(Value::String(s)) => vec![s],
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect(),
                _ => {
                    return Err(GatewayError::invalid(
                        "invalid_value",
                        Some("input"),
                        "`input` is required.",
                    ));
                }
            };
            let dims = body
                .raw("dimensions")
                .and_then(|d| d.parse::<usize>().ok())
                .filter(|d| (1..=4096).contains(d))
                .unwrap_or(EMBEDDING_DIMENSIONS);
            let data: Vec<Value> = inputs
                .iter()
                .enumerate()
                .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": embedding(t, dims)}))
                .collect();
            let usage = Usage {
                prompt_tokens: prompt,
                completion_tokens: 0,
                cached_tokens: 0,
            };
            let out = json!({
                "object": "list", "data": data, "model": model,
                "usage": {"prompt_tokens": prompt, "total_tokens": prompt}
            });
            return Ok(Reply::Complete {
                body: Bytes::from(out.to_string()),
                usage: Some(usage),
            });
        }

        let words = body.max_tokens.unwrap_or(DEFAULT_WORDS).min(MAX_WORDS);
        let finish = if body.max_tokens.is_some() {
            "length"
        } else {
            "stop"
        };
        let usage = Usage {
            prompt_tokens: prompt,
            completion_tokens: words * body.n,
            cached_tokens: 0,
        };
        let usage_json = json!({
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0}
        });
        let chat = call.endpoint == Endpoint::ChatCompletions;
        let text = answer(words);

        if !body.stream {
            let choices: Vec<Value> = (0..body.n)
                .map(|i| {
                    if chat {
                        json!({"index": i, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": finish})
                    } else {
                        json!({"index": i, "text": text, "logprobs": null, "finish_reason": finish})
                    }
                })
                .collect();
            let object = if chat {
                "chat.completion"
            } else {
                "text_completion"
            };
            let out = json!({"id": id, "object": object, "created": created, "model": model, "choices": choices, "usage": usage_json});
            return Ok(Reply::Complete {
                body: Bytes::from(out.to_string()),
                usage: Some(usage),
            });
        }

        let object = if chat {
            "chat.completion.chunk"
        } else {
            "text_completion"
        };
        let chunk = |choices: Value, usage: Value| {
            frame(
                &json!({"id": id, "object": object, "created": created, "model": model, "choices": choices, "usage": usage}),
            )
        };
        let mut items = Vec::with_capacity(usize::try_from(words * body.n).unwrap_or(0) + 4);
        for i in 0..body.n {
            if chat {
                items.push(chunk(json!([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]), Value::Null));
            }
            for (w, word) in text.split(' ').enumerate() {
                let piece = if w == 0 {
                    word.to_owned()
                } else {
                    format!(" {word}")
                };
                let choice = if chat {
                    json!([{"index": i, "delta": {"content": piece}, "finish_reason": null}])
                } else {
                    json!([{"index": i, "text": piece, "finish_reason": null}])
                };
                items.push(chunk(choice, Value::Null));
            }
            let last = if chat {
                json!([{"index": i, "delta": {}, "finish_reason": finish}])
            } else {
                json!([{"index": i, "text": "", "finish_reason": finish}])
            };
            items.push(chunk(last, Value::Null));
        }
        items.push(chunk(json!([]), usage_json));
        items.push(StreamItem::Done);
        let interval = self.spec.mock_chunk_interval;
        let stream: EventStream = futures_util::stream::iter(items.into_iter().enumerate())
            .then(move |(i, item)| async move {
                if i > 0 && interval > Duration::ZERO {
                    tokio::time::sleep(interval).await;
                }
                Ok(item)
            })
            .boxed();
        Ok(Reply::Stream(stream))
    }

    fn supports(&self, _: Endpoint) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_rules() {
        let b = serde_json::to_vec(&json!({"model": "m", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hello there world"}]}
        ]}))
        .unwrap();
        let body = RequestBody::parse(&b).unwrap();
        assert_eq!(
            prompt_tokens(Endpoint::ChatCompletions, &body),
            4 + 2 + 4 + 3
        );
        assert_eq!(answer(3), "The quick brown");
        assert_eq!(answer(0), "");
        let e = embedding("x", 8);
        assert_eq!(e.len(), 8);
        assert_eq!(e, embedding("x", 8), "deterministic");
        assert_ne!(e, embedding("y", 8));
        assert!((e.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-3);
    }
}
