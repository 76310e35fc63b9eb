//! The Anthropic Messages API: `POST /v1/messages` as a whole message or as its event stream
//! (`message_start` … `message_stop`), tool use included, and the Anthropic model list.

use std::sync::Arc;

use bytes::BytesMut;
use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use crate::body::{Plan, Render, Slot};
use crate::openai::{Role, model_names};
use crate::respond::{Ctx, FrameTemplate, Outcome, event_frame};
use crate::tokens::{
    Name, TOKENS_PER_MESSAGE, TOOL_ARGUMENT_FRAGMENTS, TOOL_CALL_TOKENS, TextStats, answer,
    cached_tokens, completion_length, word_chunk,
};

#[derive(Deserialize)]
struct MessagesRequest<'a> {
    #[serde(borrow)]
    model: Option<Name<'a>>,
    messages: Vec<Message>,
    #[serde(default)]
    system: TextStats,
    max_tokens: Option<u64>,
    stream: Option<bool>,
    #[serde(borrow)]
    tools: Option<Vec<Tool<'a>>>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    role: Role,
    #[serde(default)]
    content: TextStats,
}

#[derive(Deserialize)]
struct Tool<'a> {
    #[serde(borrow)]
    name: Option<Name<'a>>,
}

#[derive(Serialize, Clone, Copy)]
struct Usage {
    input_tokens: u32,
    cache_creation_input_tokens: u32,
    cache_read_input_tokens: u32,
    output_tokens: u32,
}

#[derive(Serialize)]
struct MessageDoc<'a, C: Serialize> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: C,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<()>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentBlock<'a, I: Serialize> {
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: I,
    },
}

/// The canned tool input; the same document as [`crate::tokens::TOOL_ARGUMENTS`].
#[derive(Serialize)]
struct ToolInput {
    city: &'static str,
    unit: &'static str,
}

const TOOL_INPUT: ToolInput = ToolInput {
    city: "Paris",
    unit: "celsius",
};

/// `{}`: the input of a `tool_use` block before its JSON has streamed in.
#[derive(Serialize)]
struct EmptyObject {}

#[derive(Serialize)]
struct MessageStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: MessageDoc<'a, [u8; 0]>,
}

#[derive(Serialize)]
struct ContentBlockStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    content_block: ContentBlock<'a, EmptyObject>,
}

#[derive(Serialize)]
struct ContentBlockDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: BlockDelta<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta<'a> {
    TextDelta { text: &'a str },
    InputJsonDelta { partial_json: &'a str },
}

#[derive(Serialize)]
struct Indexed {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
}

#[derive(Serialize)]
struct TypeOnly {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct MessageDelta {
    #[serde(rename = "type")]
    kind: &'static str,
    delta: StopDelta,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<OutputUsage>,
}

#[derive(Serialize)]
struct StopDelta {
    stop_reason: &'static str,
    stop_sequence: Option<()>,
}

#[derive(Serialize)]
struct OutputUsage {
    output_tokens: u32,
}

fn bad_request(ctx: &Ctx<'_>, message: &str) -> Outcome {
    ctx.error(StatusCode::BAD_REQUEST, message).into()
}

/// `POST /v1/messages`.
pub(crate) fn messages(ctx: &Ctx<'_>, body: &[u8]) -> Outcome {
    let req: MessagesRequest<'_> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return bad_request(ctx, &format!("invalid request body: {e}")),
    };
    let Some(model) = ctx.model(req.model.as_ref().map(Name::as_str)) else {
        return bad_request(ctx, "model: Field required");
    };
    let Some(last) = req.messages.last() else {
        return bad_request(ctx, "messages: at least one message is required");
    };
    let mut stats = req.system;
    for message in &req.messages {
        stats.merge(message.content);
    }
    let messages = u32::try_from(req.messages.len()).unwrap_or(u32::MAX);
    let prompt_tokens = stats
        .words
        .saturating_add(TOKENS_PER_MESSAGE.saturating_mul(messages));
    let cached = cached_tokens(prompt_tokens, stats.cache_hit);
    let tool_name = req
        .tools
        .as_ref()
        .and_then(|tools| tools.first())
        .map(|tool| tool.name.as_ref().map_or("tool", Name::as_str))
        .filter(|_| last.role == Role::User && last.content.call_tool);
    let (words, limited) = completion_length(req.max_tokens, ctx.shared.options.default_max_tokens);
    let (output_tokens, stop_reason) = match tool_name {
        Some(_) => (TOOL_CALL_TOKENS, "tool_use"),
        None => (words, if limited { "max_tokens" } else { "end_turn" }),
    };
    // Anthropic's input_tokens excludes what was read from the cache.
    let usage = (!ctx.omit_usage()).then_some(Usage {
        input_tokens: prompt_tokens - cached,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: cached,
        output_tokens,
    });
    let suffix = ctx.shared.next_id();
    let id = format!("msg_{suffix}");
    let tool_use_id = format!("toolu_{suffix}");

    if req.stream.unwrap_or(false) {
        let charge = ctx.charge(&model, true, prompt_tokens, cached, 0);
        let render = MessageStream {
            id,
            tool_use_id,
            model,
            items: output_tokens,
            tool_name: tool_name.map(str::to_owned),
            stop_reason,
            usage,
            template: None,
        };
        let mut render = render;
        if render.tool_name.is_none() {
            render.template = FrameTemplate::new(|text, out| render.text_delta(text, out));
        }
        return ctx.stream(charge, render);
    }

    let charge = ctx.charge(&model, false, prompt_tokens, cached, output_tokens);
    let doc = |content| MessageDoc {
        id: &id,
        kind: "message",
        role: "assistant",
        model: &model,
        content,
        stop_reason: Some(stop_reason),
        stop_sequence: None,
        usage,
    };
    match tool_name {
        Some(name) => ctx.document(
            charge,
            &doc([ContentBlock::ToolUse {
                id: &tool_use_id,
                name,
                input: TOOL_INPUT,
            }]),
        ),
        None => ctx.document(
            charge,
            &doc([ContentBlock::Text {
                text: answer(words),
            }]),
        ),
    }
}

/// Frames of a streamed message: `message_start`, `content_block_start`, `ping`, one
/// `content_block_delta` per word (or tool input fragment), `content_block_stop`,
/// `message_delta`, `message_stop`.
struct MessageStream {
    id: String,
    tool_use_id: String,
    model: Arc<str>,
    items: u32,
    tool_name: Option<String>,
    stop_reason: &'static str,
    usage: Option<Usage>,
    /// The `text_delta` event, pre-rendered around its text.
    template: Option<FrameTemplate>,
}

impl MessageStream {
    fn text_delta(&self, text: &str, out: &mut BytesMut) -> Result<(), serde_json::Error> {
        event_frame(
            out,
            "content_block_delta",
            &ContentBlockDelta {
                kind: "content_block_delta",
                index: 0,
                delta: BlockDelta::TextDelta { text },
            },
        )
    }
}

impl Render for MessageStream {
    fn plan(&self) -> Plan {
        Plan {
            pre: 3,
            items: self.items,
            choices: 1,
            post: 3,
        }
    }

    fn render(&self, slot: Slot, out: &mut BytesMut) -> Result<(), serde_json::Error> {
        match slot {
            Slot::Pre(0) => event_frame(
                out,
                "message_start",
                &MessageStart {
                    kind: "message_start",
                    message: MessageDoc {
                        id: &self.id,
                        kind: "message",
                        role: "assistant",
                        model: &self.model,
                        content: [],
                        stop_reason: None,
                        stop_sequence: None,
                        usage: self.usage.map(|u| Usage {
                            output_tokens: 1,
                            ..u
                        }),
                    },
                },
            ),
            Slot::Pre(1) => event_frame(
                out,
                "content_block_start",
                &ContentBlockStart {
                    kind: "content_block_start",
                    index: 0,
                    content_block: match &self.tool_name {
                        Some(name) => ContentBlock::ToolUse {
                            id: &self.tool_use_id,
                            name,
                            input: EmptyObject {},
                        },
                        None => ContentBlock::Text { text: "" },
                    },
                },
            ),
            Slot::Pre(_) => event_frame(out, "ping", &TypeOnly { kind: "ping" }),
            Slot::Content { item, .. } => match (&self.template, &self.tool_name) {
                (Some(template), None) => {
                    template.write(word_chunk(item), out);
                    Ok(())
                }
                (_, None) => self.text_delta(word_chunk(item), out),
                (_, Some(_)) => event_frame(
                    out,
                    "content_block_delta",
                    &ContentBlockDelta {
                        kind: "content_block_delta",
                        index: 0,
                        delta: BlockDelta::InputJsonDelta {
                            partial_json: TOOL_ARGUMENT_FRAGMENTS
                                .get(item as usize)
                                .copied()
                                .unwrap_or_default(),
                        },
                    },
                ),
            },
            Slot::Post(0) => event_frame(
                out,
                "content_block_stop",
                &Indexed {
                    kind: "content_block_stop",
                    index: 0,
                },
            ),
            Slot::Post(1) => event_frame(
                out,
                "message_delta",
                &MessageDelta {
                    kind: "message_delta",
                    delta: StopDelta {
                        stop_reason: self.stop_reason,
                        stop_sequence: None,
                    },
                    usage: self.usage.map(|u| OutputUsage {
                        output_tokens: u.output_tokens,
                    }),
                },
            ),
            Slot::Post(_) => event_frame(
                out,
                "message_stop",
                &TypeOnly {
                    kind: "message_stop",
                },
            ),
        }
    }

    fn malformed(&self, out: &mut BytesMut) {
        out.extend_from_slice(
            b"event: content_block_delta\ndata: {\"type\": \"content_block_delta\", broken\n\n",
        );
    }
}

#[derive(Serialize)]
struct ModelList<'a> {
    data: Vec<ModelInfo<'a>>,
    has_more: bool,
    first_id: Option<&'a str>,
    last_id: Option<&'a str>,
}

#[derive(Serialize)]
struct ModelInfo<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    display_name: &'a str,
    created_at: &'static str,
}

/// `GET /v1/models` with an `anthropic-version` header.
pub(crate) fn models(ctx: &Ctx<'_>) -> Outcome {
    let seen = ctx.shared.models_seen();
    let names = model_names(&seen);
    let list = ModelList {
        first_id: names.first().copied(),
        last_id: names.last().copied(),
        data: names
            .iter()
            .map(|id| ModelInfo {
                kind: "model",
                id,
                display_name: id,
                created_at: "2025-01-01T00:00:00Z",
            })
            .collect(),
        has_more: false,
    };
    crate::respond::json_response(StatusCode::OK, &list).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_input_matches_streamed_arguments() {
        let whole = serde_json::to_value(TOOL_INPUT).unwrap();
        let streamed: serde_json::Value =
            serde_json::from_str(&TOOL_ARGUMENT_FRAGMENTS.concat()).unwrap();
        assert_eq!(whole, streamed);
    }

    #[test]
    fn content_blocks_are_tagged() {
        let block: ContentBlock<'_, EmptyObject> = ContentBlock::Text { text: "hi" };
        let v = serde_json::to_value(block).unwrap();
        assert_eq!(v, serde_json::json!({"type": "text", "text": "hi"}));
        let v = serde_json::to_value(ContentBlock::ToolUse {
            id: "toolu_1",
            name: "get_weather",
            input: EmptyObject {},
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}})
        );
    }
}
