//! Token counting for when an upstream reports no usage: a real BPE tokenizer (tiktoken's
//! `o200k_base`, or `cl100k_base` for older OpenAI models), loaded on first use only. Records
//! counted this way are marked `estimated`.

use serde::Deserialize;
use serde_json::value::RawValue;
use tiktoken_rs::CoreBPE;

use crate::body::RequestBody;

/// Tokens OpenAI adds per chat message and per reply for the chat format.
const TOKENS_PER_MESSAGE: u64 = 3;
const TOKENS_PER_REPLY: u64 = 3;

fn bpe_for(model: &str) -> &'static CoreBPE {
    let legacy = model.starts_with("gpt-3.5")
        || (model.starts_with("gpt-4")
            && !model.starts_with("gpt-4o")
            && !model.starts_with("gpt-4.1"))
        || model.starts_with("text-embedding");
    if legacy {
        tiktoken_rs::cl100k_base_singleton()
    } else {
        tiktoken_rs::o200k_base_singleton()
    }
}

#[must_use]
pub fn count_text(model: &str, text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    u64::try_from(bpe_for(model).count_ordinary(text)).unwrap_or(u64::MAX)
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tool_calls: Option<&'a RawValue>,
    #[serde(default)]
    name: Option<String>,
}

/// Text inside a `content` value: a string, or an array of parts whose `text` fields count.
fn content_text(raw: &RawValue, out: &mut String) {
    if let Ok(s) = serde_json::from_str::<String>(raw.get()) {
        out.push_str(&s);
        return;
    }
    #[derive(Deserialize)]
    struct Part {
        #[serde(default)]
        text: Option<String>,
    }
    if let Ok(parts) = serde_json::from_str::<Vec<Part>>(raw.get()) {
        for p in parts.into_iter().filter_map(|p| p.text) {
            out.push_str(&p);
            out.push('\n');
        }
    }
}

/// Prompt tokens of a chat request, following OpenAI's counting of the chat format.
#[must_use]
pub fn chat_prompt(model: &str, body: &RequestBody<'_>) -> u64 {
    let Some(messages) = body.raw("messages") else {
        return 0;
    };
    let Ok(messages) = serde_json::from_str::<Vec<Message<'_>>>(messages) else {
        return 0;
    };
    let mut total = TOKENS_PER_REPLY;
    let mut text = String::new();
    for m in &messages {
        total += TOKENS_PER_MESSAGE;
        text.clear();
        if let Some(c) = m.content {
            content_text(c, &mut text);
        }
        if let Some(t) = m.tool_calls {
            text.push_str(t.get());
        }
        if let Some(n) = &m.name {
            text.push_str(n);
        }
        total += count_text(model, &text);
    }
    if let Some(tools) = body.raw("tools") {
        total += count_text(model, tools);
    }
    total
}

/// Prompt tokens of a legacy completion (`prompt`: a string or an array of strings).
#[must_use]
pub fn completion_prompt(model: &str, body: &RequestBody<'_>) -> u64 {
    texts_or_token_arrays(model, body.raw("prompt"))
}

/// Input tokens of an embeddings request (`input`: string, strings, token array(s)).
#[must_use]
pub fn embedding_input(model: &str, body: &RequestBody<'_>) -> u64 {
    texts_or_token_arrays(model, body.raw("input"))
}

fn texts_or_token_arrays(model: &str, raw: Option<&str>) -> u64 {
    let Some(raw) = raw else { return 0 };
    if let Ok(s) = serde_json::from_str::<String>(raw) {
        return count_text(model, &s);
    }
    if let Ok(list) = serde_json::from_str::<Vec<String>>(raw) {
        return list.iter().map(|s| count_text(model, s)).sum();
    }
    if let Ok(tokens) = serde_json::from_str::<Vec<u64>>(raw) {
        return u64::try_from(tokens.len()).unwrap_or(u64::MAX);
    }
    if let Ok(lists) = serde_json::from_str::<Vec<Vec<u64>>>(raw) {
        return lists
            .iter()
            .map(|l| u64::try_from(l.len()).unwrap_or(u64::MAX))
            .sum();
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn counts_with_a_real_tokenizer() {
        assert_eq!(count_text("gpt-4o", ""), 0);
        assert_eq!(count_text("gpt-4o", "hello world"), 2);
        assert_eq!(count_text("gpt-4", "hello world"), 2);
        assert!(count_text("gpt-4o", "The quick brown fox jumps over the lazy dog.") >= 9);
        assert!(count_text("deepseek-chat", "你好，世界") >= 2);
    }

    #[test]
    fn chat_prompts_follow_the_chat_format() {
        let b = body(json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": [{"type": "text", "text": "hello world"}, {"type": "image_url", "image_url": {"url": "x"}}]}
        ]}));
        let parsed = RequestBody::parse(&b).unwrap();
        let n = chat_prompt("gpt-4o", &parsed);
        // 3 per reply + 2 × 3 per message + "You are helpful." (4) + "hello world\n" (3)
        assert_eq!(n, 3 + 6 + 4 + 3);
        let none = body(json!({"model": "m"}));
        assert_eq!(chat_prompt("m", &RequestBody::parse(&none).unwrap()), 0);
    }

    #[test]
    fn embedding_and_completion_inputs() {
        let cases = [
            (json!({"model": "m", "input": "hello world"}), 2),
            (json!({"model": "m", "input": ["hello", "world"]}), 2),
            (json!({"model": "m", "input": [1, 2, 3]}), 3),
            (json!({"model": "m", "input": [[1, 2], [3]]}), 3),
            (json!({"model": "m", "input": {"weird": true}}), 0),
        ];
        for (v, n) in cases {
            let b = body(v.clone());
            assert_eq!(
                embedding_input("m", &RequestBody::parse(&b).unwrap()),
                n,
                "{v}"
            );
        }
        let b = body(json!({"model": "m", "prompt": "hello world"}));
        assert_eq!(completion_prompt("m", &RequestBody::parse(&b).unwrap()), 2);
    }
}
