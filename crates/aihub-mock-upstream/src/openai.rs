//! The OpenAI wire protocol (also served on Azure OpenAI paths): chat completions, legacy text
//! completions, embeddings and the model list, streaming included.

use std::sync::Arc;

use base64::Engine as _;
use bytes::BytesMut;
use hyper::StatusCode;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq as _, Serializer};
use serde::{Deserialize, Serialize};

use crate::body::{Plan, Render, Slot};
use crate::respond::{Ctx, FrameTemplate, Outcome};
use crate::state::unix_now;
use crate::tokens::{
    FNV_OFFSET, Name, TOKENS_PER_MESSAGE, TOOL_ARGUMENT_FRAGMENTS, TOOL_ARGUMENTS,
    TOOL_CALL_TOKENS, TextStats, answer, cached_tokens, completion_length, fnv1a, splitmix64,
    word_chunk,
};

/// Most choices a request may ask for.
const MAX_CHOICES: u32 = 128;
/// Embedding width when the request does not say.
const DEFAULT_DIMENSIONS: u32 = 8;
const MAX_DIMENSIONS: u32 = 8192;
const SYSTEM_FINGERPRINT: &str = "fp_aihub_mock";

/// Models `GET /v1/models` always lists, before any seen in requests.
pub(crate) const FIXED_MODELS: [&str; 5] = [
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "claude-sonnet-4-5",
];

// ---------------------------------------------------------------------------------------------
// Requests

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct ChatRequest<'a> {
    #[serde(borrow)]
    model: Option<Name<'a>>,
    messages: Vec<ChatMessage>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    n: Option<u32>,
    #[serde(borrow)]
    tools: Option<Vec<ChatTool<'a>>>,
}

#[derive(Deserialize)]
struct ChatMessage {
    #[serde(default)]
    role: Role,
    #[serde(default)]
    content: TextStats,
}

#[derive(Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    User,
    #[default]
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct ChatTool<'a> {
    #[serde(borrow)]
    function: Option<FunctionName<'a>>,
}

#[derive(Deserialize)]
struct FunctionName<'a> {
    #[serde(borrow)]
    name: Name<'a>,
}

#[derive(Deserialize)]
struct CompletionRequest<'a> {
    #[serde(borrow)]
    model: Option<Name<'a>>,
    prompt: Option<PromptStats>,
    max_tokens: Option<u64>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    n: Option<u32>,
}

#[derive(Deserialize)]
struct EmbeddingRequest<'a> {
    #[serde(borrow)]
    model: Option<Name<'a>>,
    input: EmbeddingInputs,
    #[serde(borrow)]
    encoding_format: Option<Name<'a>>,
    dimensions: Option<u32>,
}

fn stream_flags(stream: Option<bool>, options: Option<&StreamOptions>) -> (bool, bool) {
    let stream = stream.unwrap_or(false);
    let include_usage = stream && options.and_then(|o| o.include_usage).unwrap_or(false);
    (stream, include_usage)
}

fn bad_request(ctx: &Ctx<'_>, message: &str) -> Outcome {
    ctx.error(StatusCode::BAD_REQUEST, message).into()
}

fn invalid_json(ctx: &Ctx<'_>, e: &serde_json::Error) -> Outcome {
    bad_request(
        ctx,
        &format!(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.) {e}"
        ),
    )
}

/// The number of choices asked for, or why it is not acceptable.
fn choices(n: Option<u32>) -> Result<u32, String> {
    match n.unwrap_or(1) {
        n @ 1..=MAX_CHOICES => Ok(n),
        n => Err(format!(
            "{n} is not a valid value for 'n': it must be between 1 and {MAX_CHOICES}"
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Responses

#[derive(Serialize, Clone, Copy)]
struct Usage {
    prompt_tokens: u32,
    completion_tokens: u32,
    total_tokens: u32,
    prompt_tokens_details: PromptTokensDetails,
    completion_tokens_details: CompletionTokensDetails,
}

#[derive(Serialize, Clone, Copy)]
struct PromptTokensDetails {
    cached_tokens: u32,
    audio_tokens: u32,
}

#[derive(Serialize, Clone, Copy)]
struct CompletionTokensDetails {
    reasoning_tokens: u32,
    audio_tokens: u32,
    accepted_prediction_tokens: u32,
    rejected_prediction_tokens: u32,
}

impl Usage {
    fn new(prompt: u32, completion: u32, cached: u32) -> Self {
        Self {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt.saturating_add(completion),
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: cached,
                audio_tokens: 0,
            },
            completion_tokens_details: CompletionTokensDetails {
                reasoning_tokens: 0,
                audio_tokens: 0,
                accepted_prediction_tokens: 0,
                rejected_prediction_tokens: 0,
            },
        }
    }
}

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChatChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
    system_fingerprint: &'static str,
}

#[derive(Serialize)]
struct ChatChoice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCall<'a>; 1]>,
    refusal: Option<()>,
}

#[derive(Serialize)]
struct ToolCall<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionCall<'a>,
}

#[derive(Serialize)]
struct FunctionCall<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize)]
struct ChatChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: &'a [ChunkChoice<'a>],
    /// Absent unless usage was asked for; `null` on all but the last chunk then.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDelta<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolCallDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

// ---------------------------------------------------------------------------------------------
// Chat completions

/// `POST /v1/chat/completions` and its Azure twin.
pub(crate) fn chat(ctx: &Ctx<'_>, body: &[u8]) -> Outcome {
    let req: ChatRequest<'_> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return invalid_json(ctx, &e),
    };
    let Some(model) = ctx.model(req.model.as_ref().map(Name::as_str)) else {
        return bad_request(ctx, "you must provide a model parameter");
    };
    let Some(last) = req.messages.last() else {
        return bad_request(ctx, "[] is too short - 'messages'");
    };
    let choices = match choices(req.n) {
        Ok(n) => n,
        Err(message) => return bad_request(ctx, &message),
    };

    let mut stats = TextStats::default();
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
        .map(|tool| tool.function.as_ref().map_or("tool", |f| f.name.as_str()));
    let tool_name = tool_name.filter(|_| last.role == Role::User && last.content.call_tool);
    let (words, limited) = completion_length(
        req.max_completion_tokens.or(req.max_tokens),
        ctx.shared.options.default_max_tokens,
    );
    let (items, finish_reason) = match tool_name {
        Some(_) => (TOOL_CALL_TOKENS, "tool_calls"),
        None => (words, if limited { "length" } else { "stop" }),
    };
    let completion_tokens = items.saturating_mul(choices);
    let (stream, include_usage) = stream_flags(req.stream, req.stream_options.as_ref());
    let usage = (!ctx.omit_usage()).then(|| Usage::new(prompt_tokens, completion_tokens, cached));
    let suffix = ctx.shared.next_id();
    let id = format!("chatcmpl-{suffix}");
    let call_id = |choice: u32| format!("call_{suffix}_{choice}");
    let created = unix_now();

    if stream {
        let charge = ctx.charge(&model, true, prompt_tokens, cached, 0);
        let render = ChatStream {
            id,
            call_id_prefix: format!("call_{suffix}_"),
            model,
            created,
            choices,
            items,
            tool_name: tool_name.map(str::to_owned),
            finish_reason,
            usage: usage.filter(|_| include_usage),
            templates: Vec::new(),
        };
        let mut render = render;
        if render.tool_name.is_none() {
            render.templates = (0..choices)
                .map_while(|c| FrameTemplate::new(|text, out| render.text_chunk(c, text, out)))
                .collect();
        }
        return ctx.stream(charge, render);
    }

    let content = answer(words);
    let doc = ChatCompletion {
        id: &id,
        object: "chat.completion",
        created,
        model: &model,
        choices: (0..choices)
            .map(|index| ChatChoice {
                index,
                message: match tool_name {
                    Some(name) => AssistantMessage {
                        role: "assistant",
                        content: None,
                        tool_calls: Some([ToolCall {
                            id: call_id(index),
                            kind: "function",
                            function: FunctionCall {
                                name,
                                arguments: TOOL_ARGUMENTS,
                            },
                        }]),
                        refusal: None,
                    },
                    None => AssistantMessage {
                        role: "assistant",
                        content: Some(content),
                        tool_calls: None,
                        refusal: None,
                    },
                },
                logprobs: None,
                finish_reason,
            })
            .collect(),
        usage,
        system_fingerprint: SYSTEM_FINGERPRINT,
    };
    let charge = ctx.charge(&model, false, prompt_tokens, cached, completion_tokens);
    ctx.document(charge, &doc)
}

/// Frames of a streamed chat completion: a role chunk per choice, one chunk per word (or tool
/// argument fragment) per choice, a finish chunk per choice, the usage chunk if asked for, and
/// `[DONE]`.
struct ChatStream {
    id: String,
    call_id_prefix: String,
    model: Arc<str>,
    created: u64,
    choices: u32,
    items: u32,
    tool_name: Option<String>,
    finish_reason: &'static str,
    usage: Option<Usage>,
    /// Per choice: the word chunk, pre-rendered around its text.
    templates: Vec<FrameTemplate>,
}

impl ChatStream {
    fn text_chunk(
        &self,
        choice: u32,
        text: &str,
        out: &mut BytesMut,
    ) -> Result<(), serde_json::Error> {
        let delta = Delta {
            content: Some(Some(text)),
            ..Delta::default()
        };
        self.chunk(out, &[choice_delta(choice, delta, None)], None)
    }

    fn chunk(
        &self,
        out: &mut BytesMut,
        choices: &[ChunkChoice<'_>],
        usage: Option<Usage>,
    ) -> Result<(), serde_json::Error> {
        crate::respond::data_frame(
            out,
            &ChatChunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                system_fingerprint: SYSTEM_FINGERPRINT,
                choices,
                usage: self.usage.map(|_| usage),
            },
        )
    }
}

impl Render for ChatStream {
    fn plan(&self) -> Plan {
        Plan {
            pre: self.choices,
            items: self.items,
            choices: self.choices,
            post: self.choices + u32::from(self.usage.is_some()) + 1,
        }
    }

    fn render(&self, slot: Slot, out: &mut BytesMut) -> Result<(), serde_json::Error> {
        match slot {
            Slot::Pre(choice) => {
                let call_id = format!("{}{choice}", self.call_id_prefix);
                let delta = match &self.tool_name {
                    Some(name) => Delta {
                        role: Some("assistant"),
                        content: Some(None),
                        tool_calls: Some([ToolCallDelta {
                            index: 0,
                            id: Some(&call_id),
                            kind: Some("function"),
                            function: FunctionDelta {
                                name: Some(name),
                                arguments: "",
                            },
                        }]),
                    },
                    None => Delta {
                        role: Some("assistant"),
                        content: Some(Some("")),
                        tool_calls: None,
                    },
                };
                self.chunk(out, &[choice_delta(choice, delta, None)], None)
            }
            Slot::Content { item, choice } => {
                if let Some(template) = self.templates.get(choice as usize) {
                    template.write(word_chunk(item), out);
                    return Ok(());
                }
                let delta = match self.tool_name {
                    Some(_) => Delta {
                        tool_calls: Some([ToolCallDelta {
                            index: 0,
                            id: None,
                            kind: None,
                            function: FunctionDelta {
                                name: None,
                                arguments: TOOL_ARGUMENT_FRAGMENTS
                                    .get(item as usize)
                                    .copied()
                                    .unwrap_or_default(),
                            },
                        }]),
                        ..Delta::default()
                    },
                    None => Delta {
                        content: Some(Some(word_chunk(item))),
                        ..Delta::default()
                    },
                };
                self.chunk(out, &[choice_delta(choice, delta, None)], None)
            }
            Slot::Post(i) if i < self.choices => self.chunk(
                out,
                &[choice_delta(i, Delta::default(), Some(self.finish_reason))],
                None,
            ),
            Slot::Post(i) if i == self.choices && self.usage.is_some() => {
                self.chunk(out, &[], self.usage)
            }
            Slot::Post(_) => {
                out.extend_from_slice(b"data: [DONE]\n\n");
                Ok(())
            }
        }
    }

    fn malformed(&self, out: &mut BytesMut) {
        out.extend_from_slice(b"data: {\"id\": broken, \"choices\": [\n\n");
    }
}

fn choice_delta<'a>(
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'static str>,
) -> ChunkChoice<'a> {
    ChunkChoice {
        index,
        delta,
        logprobs: None,
        finish_reason,
    }
}

// ---------------------------------------------------------------------------------------------
// Legacy completions

/// The `prompt` of a legacy completion: a string, strings, a token array or token arrays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct PromptStats {
    prompts: u32,
    tokens: u32,
    cache_hit: bool,
}

impl<'de> Deserialize<'de> for PromptStats {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PromptVisitor;
        impl<'de> Visitor<'de> for PromptVisitor {
            type Value = PromptStats;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, an array of strings, or token arrays")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PromptStats, E> {
                let s = TextStats::of(v);
                Ok(PromptStats {
                    prompts: 1,
                    tokens: s.words,
                    cache_hit: s.cache_hit,
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PromptStats, A::Error> {
                let mut stats = PromptStats::default();
                let mut flat_tokens = 0u32;
                while let Some(item) = seq.next_element::<Input>()? {
                    match item {
                        Input::Text { hash: _, stats: s } => {
                            stats.prompts += 1;
                            stats.tokens = stats.tokens.saturating_add(s.words);
                            stats.cache_hit |= s.cache_hit;
                        }
                        Input::Token(_) => flat_tokens = flat_tokens.saturating_add(1),
                        Input::Tokens { hash: _, len } => {
                            stats.prompts += 1;
                            stats.tokens = stats.tokens.saturating_add(len);
                        }
                    }
                }
                if flat_tokens > 0 {
                    stats.prompts += 1;
                    stats.tokens = stats.tokens.saturating_add(flat_tokens);
                }
                stats.prompts = stats.prompts.max(1);
                Ok(stats)
            }
        }
        deserializer.deserialize_any(PromptVisitor)
    }
}

#[derive(Serialize)]
struct TextCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<TextChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
    system_fingerprint: &'static str,
}

#[derive(Serialize)]
struct TextChoice<'a> {
    text: &'a str,
    index: u32,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct TextChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: &'a [TextChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

/// `POST /v1/completions` and its Azure twin.
pub(crate) fn completions(ctx: &Ctx<'_>, body: &[u8]) -> Outcome {
    let req: CompletionRequest<'_> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return invalid_json(ctx, &e),
    };
    let Some(model) = ctx.model(req.model.as_ref().map(Name::as_str)) else {
        return bad_request(ctx, "you must provide a model parameter");
    };
    let n = match choices(req.n) {
        Ok(n) => n,
        Err(message) => return bad_request(ctx, &message),
    };
    let prompt = req.prompt.unwrap_or(PromptStats {
        prompts: 1,
        tokens: 0,
        cache_hit: false,
    });
    let choices = n.saturating_mul(prompt.prompts);
    let prompt_tokens = prompt.tokens;
    let cached = cached_tokens(prompt_tokens, prompt.cache_hit);
    let (words, limited) = completion_length(req.max_tokens, ctx.shared.options.default_max_tokens);
    let finish_reason = if limited { "length" } else { "stop" };
    let completion_tokens = words.saturating_mul(choices);
    let (stream, include_usage) = stream_flags(req.stream, req.stream_options.as_ref());
    let usage = (!ctx.omit_usage()).then(|| Usage::new(prompt_tokens, completion_tokens, cached));
    let id = format!("cmpl-{}", ctx.shared.next_id());
    let created = unix_now();

    if stream {
        let charge = ctx.charge(&model, true, prompt_tokens, cached, 0);
        let render = TextStream {
            id,
            model,
            created,
            choices,
            words,
            finish_reason,
            usage: usage.filter(|_| include_usage),
            templates: Vec::new(),
        };
        let mut render = render;
        render.templates = (0..choices)
            .map_while(|c| {
                FrameTemplate::new(|text, out| {
                    render.chunk(out, &[text_choice(c, text, None)], None)
                })
            })
            .collect();
        return ctx.stream(charge, render);
    }
    let text = answer(words);
    let doc = TextCompletion {
        id: &id,
        object: "text_completion",
        created,
        model: &model,
        choices: (0..choices)
            .map(|index| TextChoice {
                text,
                index,
                logprobs: None,
                finish_reason: Some(finish_reason),
            })
            .collect(),
        usage,
        system_fingerprint: SYSTEM_FINGERPRINT,
    };
    let charge = ctx.charge(&model, false, prompt_tokens, cached, completion_tokens);
    ctx.document(charge, &doc)
}

/// Frames of a streamed legacy completion: one chunk per word per choice, a finish chunk per
/// choice, the usage chunk if asked for, and `[DONE]`.
struct TextStream {
    id: String,
    model: Arc<str>,
    created: u64,
    choices: u32,
    words: u32,
    finish_reason: &'static str,
    usage: Option<Usage>,
    /// Per choice: the word chunk, pre-rendered around its text.
    templates: Vec<FrameTemplate>,
}

fn text_choice<'a>(
    index: u32,
    text: &'a str,
    finish_reason: Option<&'static str>,
) -> TextChoice<'a> {
    TextChoice {
        text,
        index,
        logprobs: None,
        finish_reason,
    }
}

impl TextStream {
    fn chunk(
        &self,
        out: &mut BytesMut,
        choices: &[TextChoice<'_>],
        usage: Option<Usage>,
    ) -> Result<(), serde_json::Error> {
        crate::respond::data_frame(
            out,
            &TextChunk {
                id: &self.id,
                object: "text_completion",
                created: self.created,
                model: &self.model,
                system_fingerprint: SYSTEM_FINGERPRINT,
                choices,
                usage: self.usage.map(|_| usage),
            },
        )
    }
}

impl Render for TextStream {
    fn plan(&self) -> Plan {
        Plan {
            pre: 0,
            items: self.words,
            choices: self.choices,
            post: self.choices + u32::from(self.usage.is_some()) + 1,
        }
    }

    fn render(&self, slot: Slot, out: &mut BytesMut) -> Result<(), serde_json::Error> {
        match slot {
            Slot::Content { item, choice } => match self.templates.get(choice as usize) {
                Some(template) => {
                    template.write(word_chunk(item), out);
                    Ok(())
                }
                None => self.chunk(out, &[text_choice(choice, word_chunk(item), None)], None),
            },
            Slot::Post(i) if i < self.choices => {
                self.chunk(out, &[text_choice(i, "", Some(self.finish_reason))], None)
            }
            Slot::Post(i) if i == self.choices && self.usage.is_some() => {
                self.chunk(out, &[], self.usage)
            }
            Slot::Pre(_) | Slot::Post(_) => {
                out.extend_from_slice(b"data: [DONE]\n\n");
                Ok(())
            }
        }
    }

    fn malformed(&self, out: &mut BytesMut) {
        out.extend_from_slice(b"data: {\"id\": broken, \"choices\": [\n\n");
    }
}

// ---------------------------------------------------------------------------------------------
// Embeddings

/// One element of an `input`/`prompt` array.
enum Input {
    Text { hash: u64, stats: TextStats },
    Token(u64),
    Tokens { hash: u64, len: u32 },
}

impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InputVisitor;
        impl<'de> Visitor<'de> for InputVisitor {
            type Value = Input;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, a token, or an array of tokens")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Input, E> {
                Ok(Input::Text {
                    hash: fnv1a(v.as_bytes(), FNV_OFFSET),
                    stats: TextStats::of(v),
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Input, E> {
                Ok(Input::Token(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Input, E> {
                u64::try_from(v)
                    .map(Input::Token)
                    .map_err(|_| E::custom("token ids must not be negative"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Input, A::Error> {
                let mut hash = FNV_OFFSET;
                let mut len = 0u32;
                while let Some(token) = seq.next_element::<u64>()? {
                    hash = fnv1a(&token.to_le_bytes(), hash);
                    len = len.saturating_add(1);
                }
                Ok(Input::Tokens { hash, len })
            }
        }
        deserializer.deserialize_any(InputVisitor)
    }
}

/// The texts (or token arrays) to embed: a hash and a token count each.
struct EmbeddingInputs(Vec<(u64, u32)>);

impl<'de> Deserialize<'de> for EmbeddingInputs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InputsVisitor;
        impl<'de> Visitor<'de> for InputsVisitor {
            type Value = EmbeddingInputs;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, an array of strings, or token arrays")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EmbeddingInputs, E> {
                Ok(EmbeddingInputs(vec![(
                    fnv1a(v.as_bytes(), FNV_OFFSET),
                    TextStats::of(v).words,
                )]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EmbeddingInputs, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(1024));
                let mut flat: Option<(u64, u32)> = None;
                while let Some(item) = seq.next_element::<Input>()? {
                    match item {
                        Input::Text { hash, stats } => items.push((hash, stats.words)),
                        Input::Tokens { hash, len } => items.push((hash, len)),
                        Input::Token(t) => {
                            let (hash, len) = flat.get_or_insert((FNV_OFFSET, 0));
                            *hash = fnv1a(&t.to_le_bytes(), *hash);
                            *len = len.saturating_add(1);
                        }
                    }
                }
                match (flat, items.is_empty()) {
                    (Some(tokens), true) => items.push(tokens),
                    (Some(_), false) => {
                        return Err(de::Error::custom(
                            "'input' mixes token ids with strings or token arrays",
                        ));
                    }
                    (None, _) => {}
                }
                Ok(EmbeddingInputs(items))
            }
        }
        deserializer.deserialize_any(InputsVisitor)
    }
}

/// A deterministic unit vector of `dims` floats seeded by `hash`.
#[derive(Clone, Copy)]
struct Vector {
    hash: u64,
    dims: u32,
    norm: f32,
}

impl Vector {
    fn new(hash: u64, dims: u32) -> Self {
        let mut v = Self {
            hash,
            dims,
            norm: 1.0,
        };
        let norm = v.raw().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.norm = norm;
        }
        v
    }

    fn raw(&self) -> impl Iterator<Item = f32> + use<> {
        let hash = self.hash;
        (0..u64::from(self.dims)).map(move |i| {
            let bits = splitmix64(hash ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 40;
            (bits as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
    }

    fn values(&self) -> impl Iterator<Item = f32> + use<> {
        let norm = self.norm;
        self.raw().map(move |x| x / norm)
    }

    fn base64(&self) -> String {
        let mut bytes = Vec::with_capacity(self.dims as usize * 4);
        for x in self.values() {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}

impl Serialize for Vector {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.dims as usize))?;
        for x in self.values() {
            seq.serialize_element(&x)?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum EmbeddingValue {
    Floats(Vector),
    Base64(String),
}

#[derive(Serialize)]
struct Embedding {
    object: &'static str,
    index: u32,
    embedding: EmbeddingValue,
}

#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<Embedding>,
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<EmbeddingUsage>,
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u32,
    total_tokens: u32,
}

/// `POST /v1/embeddings` and its Azure twin.
pub(crate) fn embeddings(ctx: &Ctx<'_>, body: &[u8]) -> Outcome {
    let req: EmbeddingRequest<'_> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return invalid_json(ctx, &e),
    };
    let Some(model) = ctx.model(req.model.as_ref().map(Name::as_str)) else {
        return bad_request(ctx, "you must provide a model parameter");
    };
    if req.input.0.is_empty() {
        return bad_request(ctx, "'input' must not be empty");
    }
    let dims = req.dimensions.unwrap_or(DEFAULT_DIMENSIONS);
    if !(1..=MAX_DIMENSIONS).contains(&dims) {
        return bad_request(
            ctx,
            &format!("'dimensions' must be between 1 and {MAX_DIMENSIONS}"),
        );
    }
    let base64 = match req.encoding_format.as_ref().map(Name::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return bad_request(
                ctx,
                &format!("'{other}' is not one of ['float', 'base64'] - 'encoding_format'"),
            );
        }
    };
    let prompt_tokens = req
        .input
        .0
        .iter()
        .fold(0u32, |acc, (_, tokens)| acc.saturating_add(*tokens));
    let data = req
        .input
        .0
        .iter()
        .zip(0u32..)
        .map(|(&(hash, _), index)| {
            let vector = Vector::new(hash, dims);
            Embedding {
                object: "embedding",
                index,
                embedding: if base64 {
                    EmbeddingValue::Base64(vector.base64())
                } else {
                    EmbeddingValue::Floats(vector)
                },
            }
        })
        .collect();
    let doc = EmbeddingList {
        object: "list",
        data,
        model: &model,
        usage: (!ctx.omit_usage()).then_some(EmbeddingUsage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        }),
    };
    let charge = ctx.charge(&model, false, prompt_tokens, 0, 0);
    ctx.document(charge, &doc)
}

// ---------------------------------------------------------------------------------------------
// Models

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<Model<'a>>,
}

#[derive(Serialize)]
struct Model<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

/// Fixed models first, then those seen in requests, without repeats.
pub(crate) fn model_names(seen: &[Arc<str>]) -> Vec<&str> {
    let mut names: Vec<&str> = FIXED_MODELS.to_vec();
    for m in seen {
        if !names.contains(&&**m) {
            names.push(m);
        }
    }
    names
}

/// `GET /v1/models`.
pub(crate) fn models(ctx: &Ctx<'_>) -> Outcome {
    let seen = ctx.shared.models_seen();
    let list = ModelList {
        object: "list",
        data: model_names(&seen)
            .into_iter()
            .map(|id| Model {
                id,
                object: "model",
                created: 1_700_000_000,
                owned_by: "aihub-mock",
            })
            .collect(),
    };
    crate::respond::json_response(StatusCode::OK, &list).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat_stream(model: &str, choices: u32) -> ChatStream {
        ChatStream {
            id: "chatcmpl-x".to_owned(),
            call_id_prefix: "call_x_".to_owned(),
            model: Arc::from(model),
            created: 1,
            choices,
            items: 3,
            tool_name: None,
            finish_reason: "stop",
            usage: Some(Usage::new(1, 2, 0)),
            templates: Vec::new(),
        }
    }

    #[test]
    fn templated_chunks_match_serialized_ones() {
        // A model name that contains the marker's rendering must not confuse the template.
        for model in ["gpt-4o", "we\\u0000ird\u{0}"] {
            let plain = chat_stream(model, 2);
            let mut fast = chat_stream(model, 2);
            fast.templates = (0..2)
                .map_while(|c| FrameTemplate::new(|t, out| fast.text_chunk(c, t, out)))
                .collect();
            assert_eq!(fast.templates.len(), 2);
            for (item, choice) in [(0, 0), (1, 1), (2, 0)] {
                let slot = Slot::Content { item, choice };
                let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
                plain.render(slot, &mut a).unwrap();
                fast.render(slot, &mut b).unwrap();
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn vectors_are_unit_length_and_deterministic() {
        let a = Vector::new(42, 8);
        let b = Vector::new(42, 8);
        let va: Vec<f32> = a.values().collect();
        let vb: Vec<f32> = b.values().collect();
        assert_eq!(va, vb);
        let norm: f32 = va.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        assert_ne!(va, Vector::new(43, 8).values().collect::<Vec<_>>());
    }

    #[test]
    fn embedding_inputs_accept_every_shape() {
        let one: EmbeddingInputs = serde_json::from_str(r#""a b c""#).unwrap();
        assert_eq!(one.0.len(), 1);
        assert_eq!(one.0[0].1, 3);
        let many: EmbeddingInputs = serde_json::from_str(r#"["a", "b c"]"#).unwrap();
        assert_eq!(many.0.iter().map(|x| x.1).collect::<Vec<_>>(), vec![1, 2]);
        let tokens: EmbeddingInputs = serde_json::from_str("[1, 2, 3]").unwrap();
        assert_eq!(tokens.0.len(), 1);
        assert_eq!(tokens.0[0].1, 3);
        let arrays: EmbeddingInputs = serde_json::from_str("[[1, 2], [3]]").unwrap();
        assert_eq!(arrays.0.iter().map(|x| x.1).collect::<Vec<_>>(), vec![2, 1]);
        assert!(serde_json::from_str::<EmbeddingInputs>(r#"[1, "a"]"#).is_err());
    }

    #[test]
    fn prompts_count_prompts_and_tokens() {
        let p: PromptStats = serde_json::from_str(r#""one two""#).unwrap();
        assert_eq!((p.prompts, p.tokens), (1, 2));
        let p: PromptStats = serde_json::from_str(r#"["one two", "three"]"#).unwrap();
        assert_eq!((p.prompts, p.tokens), (2, 3));
        let p: PromptStats = serde_json::from_str("[5, 6, 7]").unwrap();
        assert_eq!((p.prompts, p.tokens), (1, 3));
        let p: PromptStats = serde_json::from_str("[[5, 6], [7]]").unwrap();
        assert_eq!((p.prompts, p.tokens), (2, 3));
    }
}
