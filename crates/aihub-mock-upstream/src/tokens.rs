//! The deterministic token arithmetic shared by both protocols: how prompts are counted, what the
//! answer text is, and the canned tool call. Everything here is computed once per process.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::LazyLock;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Longest answer the mock will produce, whatever the request asks for.
pub const MAX_COMPLETION_TOKENS: u32 = 4096;

/// Tokens each message costs on top of its words.
pub const TOKENS_PER_MESSAGE: u32 = 4;

/// Most prompt tokens a `CACHEHIT` prompt reports as served from the cache.
pub const MAX_CACHED_TOKENS: u32 = 64;

/// Word in a prompt that makes the mock report cached prompt tokens.
const CACHE_HIT_MARKER: &str = "CACHEHIT";

/// Word in the final user message that makes the mock answer with a tool call.
const CALL_TOOL_MARKER: &str = "CALLTOOL";

/// The arguments of the canned tool call, split the way a provider streams them. Joined they are
/// `{"city": "Paris", "unit": "celsius"}`.
pub const TOOL_ARGUMENT_FRAGMENTS: [&str; 5] = [
    "{\"city\"",
    ": \"Paris\"",
    ", \"unit\"",
    ": \"celsius\"",
    "}",
];

/// The canned tool call's arguments as one JSON document.
pub const TOOL_ARGUMENTS: &str = "{\"city\": \"Paris\", \"unit\": \"celsius\"}";

/// Completion tokens a tool call costs per choice: one per streamed argument fragment.
pub const TOOL_CALL_TOKENS: u32 = TOOL_ARGUMENT_FRAGMENTS.len() as u32;

/// `tok1 tok2 … tok4096`, with the end offset of every word, so an answer of `n` words and the
/// text of streamed chunk `i` are both plain slices.
struct Answer {
    text: String,
    ends: Vec<usize>,
}

static ANSWER: LazyLock<Answer> = LazyLock::new(|| {
    let mut text = String::with_capacity(MAX_COMPLETION_TOKENS as usize * 9);
    let mut ends = Vec::with_capacity(MAX_COMPLETION_TOKENS as usize);
    for i in 1..=MAX_COMPLETION_TOKENS {
        if i > 1 {
            text.push(' ');
        }
        // Writing into a String cannot fail.
        let _ = write!(text, "tok{i}");
        ends.push(text.len());
    }
    Answer { text, ends }
});

/// The answer of `words` words: `"tok1 tok2 … tokN"`.
pub fn answer(words: u32) -> &'static str {
    let answer = &*ANSWER;
    let end = match (words as usize).checked_sub(1) {
        Some(last) => answer.ends.get(last).copied().unwrap_or(answer.text.len()),
        None => 0,
    };
    answer.text.get(..end).unwrap_or_default()
}

/// The text of streamed content chunk `index` (0-based): the word with a leading space, except
/// for the first.
pub fn word_chunk(index: u32) -> &'static str {
    let answer = &*ANSWER;
    let i = index as usize;
    let start = match i.checked_sub(1) {
        Some(prev) => answer.ends.get(prev).copied().unwrap_or(0),
        None => 0,
    };
    let end = answer.ends.get(i).copied().unwrap_or(start);
    answer.text.get(start..end).unwrap_or_default()
}

/// Completion length for a request: its own limit (capped), else the server default.
pub fn completion_length(requested: Option<u64>, default: u32) -> (u32, bool) {
    match requested {
        Some(n) => (
            u32::try_from(n)
                .unwrap_or(MAX_COMPLETION_TOKENS)
                .min(MAX_COMPLETION_TOKENS),
            true,
        ),
        None => (default.min(MAX_COMPLETION_TOKENS), false),
    }
}

/// Cached prompt tokens for a prompt of `prompt_tokens` tokens.
pub fn cached_tokens(prompt_tokens: u32, cache_hit: bool) -> u32 {
    if cache_hit {
        prompt_tokens.min(MAX_CACHED_TOKENS)
    } else {
        0
    }
}

/// What the mock needs to know about a piece of text content: its word count and whether it
/// carries one of the magic words. Deserializes from a string, `null`, or any nesting of content
/// blocks (`{"type":"text","text":…}`, Anthropic `tool_result` blocks with `content`, …) without
/// keeping the text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TextStats {
    pub words: u32,
    pub cache_hit: bool,
    pub call_tool: bool,
}

impl TextStats {
    pub fn of(text: &str) -> Self {
        let mut words = 0u32;
        let mut cache_hit = false;
        let mut call_tool = false;
        for word in text.split_whitespace() {
            words = words.saturating_add(1);
            cache_hit |= word.contains(CACHE_HIT_MARKER);
            call_tool |= word.contains(CALL_TOOL_MARKER);
        }
        Self {
            words,
            cache_hit,
            call_tool,
        }
    }

    pub fn merge(&mut self, other: Self) {
        self.words = self.words.saturating_add(other.words);
        self.cache_hit |= other.cache_hit;
        self.call_tool |= other.call_tool;
    }
}

impl<'de> Deserialize<'de> for TextStats {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextStatsVisitor)
    }
}

struct TextStatsVisitor;

impl<'de> Visitor<'de> for TextStatsVisitor {
    type Value = TextStats;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("text content: a string or content blocks")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<TextStats, E> {
        Ok(TextStats::of(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<TextStats, E> {
        Ok(TextStats::default())
    }

    fn visit_none<E: de::Error>(self) -> Result<TextStats, E> {
        Ok(TextStats::default())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<TextStats, E> {
        Ok(TextStats::default())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<TextStats, E> {
        Ok(TextStats::default())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<TextStats, E> {
        Ok(TextStats::default())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<TextStats, E> {
        Ok(TextStats::default())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TextStats, A::Error> {
        let mut stats = TextStats::default();
        while let Some(part) = seq.next_element::<TextStats>()? {
            stats.merge(part);
        }
        Ok(stats)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TextStats, A::Error> {
        let mut stats = TextStats::default();
        while let Some(key) = map.next_key::<BlockKey>()? {
            match key {
                BlockKey::Text => stats.merge(map.next_value::<TextStats>()?),
                BlockKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(stats)
    }
}

/// Keys of a content block whose value is (or contains) prompt text.
enum BlockKey {
    Text,
    Other,
}

impl<'de> Deserialize<'de> for BlockKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = BlockKey;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<BlockKey, E> {
                Ok(match v {
                    "text" | "content" => BlockKey::Text,
                    _ => BlockKey::Other,
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// A string from the request body, borrowed from it unless it had to be unescaped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name<'a>(pub Cow<'a, str>);

impl<'a> Name<'a> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Name<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

/// 64-bit FNV-1a, the seed of the embedding vectors.
pub fn fnv1a(bytes: &[u8], mut hash: u64) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// FNV-1a offset basis.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// SplitMix64: turns a seed into a well-spread stream of numbers.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_prefixes_of_one_text() {
        assert_eq!(answer(0), "");
        assert_eq!(answer(1), "tok1");
        assert_eq!(answer(3), "tok1 tok2 tok3");
        assert_eq!(answer(4096).split(' ').count(), 4096);
        assert_eq!(answer(5000), answer(4096));
    }

    #[test]
    fn chunks_concatenate_to_the_answer() {
        assert_eq!(word_chunk(0), "tok1");
        assert_eq!(word_chunk(1), " tok2");
        let joined: String = (0..20).map(word_chunk).collect();
        assert_eq!(joined, answer(20));
    }

    #[test]
    fn completion_length_caps_and_defaults() {
        assert_eq!(completion_length(None, 16), (16, false));
        assert_eq!(completion_length(Some(5), 16), (5, true));
        assert_eq!(completion_length(Some(1 << 40), 16), (4096, true));
    }

    #[test]
    fn text_stats_reads_strings_and_blocks() {
        let s: TextStats = serde_json::from_str(r#""hello big world""#).unwrap();
        assert_eq!(s.words, 3);
        let s: TextStats = serde_json::from_str(
            r#"[{"type":"text","text":"a b CACHEHIT"},{"type":"image_url","image_url":{"url":"x y"}},
               {"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"c CALLTOOL"}]}]"#,
        )
        .unwrap();
        assert_eq!(
            s,
            TextStats {
                words: 5,
                cache_hit: true,
                call_tool: true
            }
        );
        let s: TextStats = serde_json::from_str("null").unwrap();
        assert_eq!(s.words, 0);
    }

    #[test]
    fn tool_fragments_join_into_valid_json() {
        let joined: String = TOOL_ARGUMENT_FRAGMENTS.concat();
        assert_eq!(joined, TOOL_ARGUMENTS);
        let v: serde_json::Value = serde_json::from_str(&joined).unwrap();
        assert_eq!(v["city"], "Paris");
    }
}
