//! Finding one member of a JSON object without parsing the rest of it.
//!
//! A non-streaming reply is passed to the client as the upstream sent it; AI Hub only needs its
//! top-level `usage`. Deserializing the whole reply to find it walked every value and validated
//! every string, the generated text included. [`member`] instead reads the document backwards
//! from its closing brace and stops at the member: OpenAI's replies end with `usage` (and
//! `system_fingerprint`), so only those bytes are read, and serde parses only the member's value.
//!
//! Reading backwards is exact for valid JSON: outside strings there is no backslash, so a quote
//! preceded by an even number of backslashes is a string's delimiter and any other is escaped
//! content. A key is a string at the object's top level followed by `:`. What a backward read
//! cannot answer exactly — a top-level key written with escapes after the member, or a document
//! that does not end its object where it should — is [`Member::Unsure`], and the caller parses
//! the whole document instead. A member given twice counts as its last occurrence, as
//! JavaScript's `JSON.parse` (and so most clients) read it. Beyond the member, the document is
//! not validated: a reply malformed before its usage still yields that usage.

/// Where a top-level member of a JSON object is, as far as a scan can tell.
#[derive(Debug, PartialEq, Eq)]
pub enum Member<'a> {
    /// The document from the member's value on (the value, then whatever follows it).
    Value(&'a [u8]),
    /// The object has no such member.
    Absent,
    /// Only a full parse can tell.
    Unsure,
}

/// Finds the last top-level member `key` (unescaped, as it would appear between the quotes) of
/// the object `json`.
#[must_use]
pub fn member<'a>(json: &'a [u8], key: &[u8]) -> Member<'a> {
    let Some(last) = json.iter().rposition(|b| !is_whitespace(*b)) else {
        return Member::Unsure;
    };
    // The document up to its final byte, which must close the object.
    let (Some(b'}'), Some(body)) = (json.get(last), json.get(..last)) else {
        return Member::Unsure;
    };
    // Braces open between the read position and the end of the document, the final one
    // included.
    let mut depth = 1usize;
    let mut at = body.len();
    while let Some(next) = at.checked_sub(1) {
        at = next;
        match body.get(at) {
            Some(b'}') => depth += 1,
            Some(b'{') => {
                depth -= 1;
                if depth == 0 {
                    let before = body.get(..at).unwrap_or_default();
                    return if before.iter().all(|b| is_whitespace(*b)) {
                        Member::Absent
                    } else {
                        Member::Unsure
                    };
                }
            }
            Some(b'"') => {
                let close = at;
                let Some(open) = string_start(body, close) else {
                    return Member::Unsure;
                };
                at = open;
                if depth != 1 {
                    continue;
                }
                let colon = skip_whitespace(json, close + 1);
                if json.get(colon) != Some(&b':') {
                    // A value (or an array's element) at the top level, not a key.
                    continue;
                }
                let name = body.get(open + 1..close).unwrap_or_default();
                if name == key {
                    let value = skip_whitespace(json, colon + 1);
                    return Member::Value(json.get(value..).unwrap_or_default());
                }
                if name.contains(&b'\\') {
                    return Member::Unsure;
                }
            }
            _ => {}
        }
    }
    Member::Unsure
}

/// The index of the quote that opens the string closed by the quote at `close`: the nearest
/// quote before it that is not escaped (not preceded by an odd number of backslashes).
fn string_start(json: &[u8], close: usize) -> Option<usize> {
    let mut end = close;
    loop {
        let before = json.get(..end)?;
        let quote = memchr::memrchr(b'"', before)?;
        let backslashes = before
            .iter()
            .take(quote)
            .rev()
            .take_while(|b| **b == b'\\')
            .count();
        if backslashes % 2 == 0 {
            return Some(quote);
        }
        end = quote;
    }
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_whitespace(json: &[u8], mut at: usize) -> usize {
    while json.get(at).is_some_and(|b| is_whitespace(*b)) {
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_of(json: &str) -> Member<'_> {
        member(json.as_bytes(), b"usage")
    }

    fn found(json: &str) -> &str {
        match value_of(json) {
            Member::Value(rest) => std::str::from_utf8(rest).unwrap(),
            other => panic!("{json}: {other:?}"),
        }
    }

    #[test]
    fn the_top_level_member_is_found_wherever_it_is() {
        assert_eq!(found(r#"{"usage":{"a":1}}"#), r#"{"a":1}}"#);
        assert_eq!(found(r#"{"id":"x","usage":7,"z":[1]}"#), r#"7,"z":[1]}"#);
        assert_eq!(
            found(" \n{ \"usage\" :\t null }\r\n"),
            "null }\r\n",
            "whitespace anywhere JSON allows it"
        );
        assert_eq!(
            found(r#"{"choices":[{"usage":1,"text":"}{\"usage\":2"}],"usage":3}"#),
            "3}",
            "members of nested objects and braces, quotes and keys inside strings do not count"
        );
        assert_eq!(
            found(r#"{"a":{"b":{"usage":1}},"c":[[{"usage":2}]],"usage":{"d":{}}}"#),
            r#"{"d":{}}}"#
        );
        assert_eq!(
            found(r#"{"usage":1,"s":"a\\","t":"say \"usage\": \\\"x\"","u":"\\"}"#),
            r#"1,"s":"a\\","t":"say \"usage\": \\\"x\"","u":"\\"}"#,
            "escaped quotes are string contents; an escaped backslash does not escape the quote"
        );
        assert_eq!(
            found(r#"{"k0":"\"","usage":0,"z0":"\""}"#),
            r#"0,"z0":"\""}"#,
            "a quote after one backslash is content, not the string's start"
        );
        assert_eq!(
            found(r#"{"usage":1,"usage":2}"#),
            "2}",
            "a member given twice counts as its last, as JSON.parse reads it"
        );
    }

    #[test]
    fn absent_only_when_the_object_is_whole_and_has_no_such_member() {
        assert_eq!(value_of("{}"), Member::Absent);
        assert_eq!(
            value_of(r#"{"tags":["usage","x"],"v":"usage","w":{"usage":1}}"#),
            Member::Absent,
            "strings that are values or elements, and nested keys, are not the member"
        );
        assert_eq!(value_of(r#"{"usages":1,"usag":2}"#), Member::Absent);
    }

    #[test]
    fn anything_a_scan_cannot_answer_exactly_is_unsure() {
        for json in [
            "",
            "  ",
            "[]",
            r#""usage""#,
            "null",
            r#"{"usage":1"#,
            r#"{"usage":"1}"#,
            r#"{"usage":1}}"#,
            r#"{"usage":1} {"#,
            r#"{"usage":1} x"#,
            r#"x{"a":1}"#,
            r#"{"us\u0061ge":1}"#,
            r#"{"a\"b":1}"#,
            r#"{"a":"\"#,
        ] {
            assert_eq!(value_of(json), Member::Unsure, "{json}");
        }
    }
}
