//! The `/v1` request body, read without building a tree: top-level fields are kept as raw JSON
//! slices in their original order, the few the gateway needs (`model`, `stream`, max tokens,
//! `n`) are decoded, and the body sent upstream is re-emitted with only `model` replaced and
//! `stream_options.include_usage` forced on — every other field passes through byte for byte.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::GatewayError;

/// Most completions any request may ask for with `n`.
pub const MAX_N: u64 = 128;

/// A parsed request body, borrowing from the bytes it came from.
pub struct RequestBody<'a> {
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
    pub model: String,
    pub stream: bool,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u64>,
    pub n: u64,
    /// The client itself asked for usage in the stream (`stream_options.include_usage`).
    pub include_usage: bool,
}

struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((k, v)) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    if out.iter().any(|(seen, _): &(Cow<'de, str>, _)| *seen == k) {
                        return Err(de::Error::custom(format!("duplicate field `{k}`")));
                    }
                    out.push((k, v));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> RequestBody<'a> {
    /// Parses and validates the fields the gateway acts on.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, GatewayError> {
        let Fields(fields) = serde_json::from_slice(bytes).map_err(|e| {
            GatewayError::invalid(
                "invalid_json",
                None,
                format!("We could not parse the JSON body of your request: {e}"),
            )
        })?;
        let raw = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.get());
        let model = match raw("model") {
            Some(v) => serde_json::from_str::<String>(v)
                .ok()
                .filter(|m| !m.is_empty())
                .ok_or_else(|| {
                    GatewayError::invalid(
                        "invalid_type",
                        Some("model"),
                        "`model` must be a non-empty string.",
                    )
                })?,
            None => {
                return Err(GatewayError::invalid(
                    "missing_model",
                    Some("model"),
                    "You must provide a model parameter.",
                ));
            }
        };
        let stream = match raw("stream") {
            None | Some("null") => false,
            Some(v) => serde_json::from_str::<bool>(v).map_err(|_| {
                GatewayError::invalid(
                    "invalid_type",
                    Some("stream"),
                    "`stream` must be a boolean.",
                )
            })?,
        };
        let positive = |name: &'static str| -> Result<Option<u64>, GatewayError> {
            match raw(name) {
                None | Some("null") => Ok(None),
                Some(v) => serde_json::from_str::<u64>(v)
                    .ok()
                    .filter(|n| *n >= 1)
                    .map(Some)
                    .ok_or_else(|| {
                        GatewayError::invalid(
                            "invalid_value",
                            Some(name),
                            format!("`{name}` must be a positive integer."),
                        )
                    }),
            }
        };
        let max_tokens = positive("max_completion_tokens")?.or(positive("max_tokens")?);
        let n = positive("n")?.unwrap_or(1);
        if n > MAX_N {
            return Err(GatewayError::invalid(
                "invalid_value",
                Some("n"),
                format!("`n` must be at most {MAX_N}."),
            ));
        }
        #[derive(Deserialize)]
        struct StreamOptions {
            #[serde(default)]
            include_usage: Option<bool>,
        }
        let include_usage = raw("stream_options")
            .and_then(|v| serde_json::from_str::<StreamOptions>(v).ok())
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        Ok(Self {
            fields,
            model,
            stream,
            max_tokens,
            n,
            include_usage,
        })
    }

    /// The raw JSON of a top-level field.
    #[must_use]
    pub fn raw(&self, name: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.get())
    }

    /// The whole body as a JSON tree, for adapters that translate every field.
    pub fn to_value(&self) -> serde_json::Result<serde_json::Value> {
        let mut map = serde_json::Map::with_capacity(self.fields.len());
        for (k, v) in &self.fields {
            map.insert(k.to_string(), serde_json::from_str(v.get())?);
        }
        Ok(serde_json::Value::Object(map))
    }

    /// The body to send upstream: `model` set to `upstream_model`; for streams, when
    /// `force_usage`, `stream_options.include_usage = true` (other stream options kept).
    #[must_use]
    pub fn rewrite(&self, upstream_model: &str, force_usage: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.fields
                .iter()
                .map(|(k, v)| k.len() + v.get().len() + 4)
                .sum::<usize>()
                + 64,
        );
        out.push(b'{');
        let mut first = true;
        let mut sep = |out: &mut Vec<u8>| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
        };
        let mut saw_options = false;
        for (k, v) in &self.fields {
            sep(&mut out);
            write_json_str(&mut out, k);
            out.push(b':');
            match k.as_ref() {
                "model" => write_json_str(&mut out, upstream_model),
                "stream_options" if self.stream && force_usage => {
                    saw_options = true;
                    let mut opts: serde_json::Map<String, serde_json::Value> =
                        serde_json::from_str(v.get()).unwrap_or_default();
                    opts.insert("include_usage".into(), serde_json::Value::Bool(true));
                    // Serializing a map of JSON values cannot fail.
                    let _ = serde_json::to_writer(&mut out, &opts);
                }
                _ => out.extend_from_slice(v.get().as_bytes()),
            }
        }
        if self.stream && force_usage && !saw_options {
            sep(&mut out);
            out.extend_from_slice(br#""stream_options":{"include_usage":true}"#);
        }
        out.push(b'}');
        out
    }
}

fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // Serializing a string cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    type Parsed = (Vec<u8>, String, bool, Option<u64>, u64);

    fn parse(v: &Value) -> Result<Parsed, GatewayError> {
        let bytes = serde_json::to_vec(v).unwrap();
        let b = RequestBody::parse(&bytes)?;
        Ok((
            b.rewrite("upstream-x", true),
            b.model.clone(),
            b.stream,
            b.max_tokens,
            b.n,
        ))
    }

    #[test]
    fn everything_but_model_passes_through() {
        let req = json!({
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "hi \"there\" 你好"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "response_format": {"type": "json_object"},
            "n": 2, "stop": ["\n"], "temperature": 0.25, "seed": 7, "logit_bias": {"50256": -100},
            "x_vendor_extension": {"deep": [1, 2, {"a": null}]}
        });
        let (out, model, stream, max, n) = parse(&req).unwrap();
        assert_eq!((model.as_str(), stream, max, n), ("gpt-4o", false, None, 2));
        let mut expected = req.clone();
        expected["model"] = json!("upstream-x");
        let got: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(got, expected);
        assert!(
            got.get("stream_options").is_none(),
            "non-streaming requests are not given options"
        );
    }

    #[test]
    fn streams_always_ask_for_usage() {
        let (out, ..) = parse(&json!({"model": "m", "stream": true})).unwrap();
        let got: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(got["stream_options"], json!({"include_usage": true}));
        let (out, ..) = parse(&json!({"model": "m", "stream": true, "stream_options": {"include_usage": false, "x": 1}})).unwrap();
        let got: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            got["stream_options"],
            json!({"include_usage": true, "x": 1})
        );
        let bytes = serde_json::to_vec(&json!({"model": "m", "stream": true})).unwrap();
        let b = RequestBody::parse(&bytes).unwrap();
        let untouched: Value = serde_json::from_slice(&b.rewrite("m", false)).unwrap();
        assert!(untouched.get("stream_options").is_none());
    }

    #[test]
    fn max_tokens_prefers_max_completion_tokens() {
        assert_eq!(
            parse(&json!({"model": "m", "max_tokens": 10})).unwrap().3,
            Some(10)
        );
        assert_eq!(
            parse(&json!({"model": "m", "max_tokens": 10, "max_completion_tokens": 5}))
                .unwrap()
                .3,
            Some(5)
        );
        assert_eq!(
            parse(&json!({"model": "m", "max_tokens": null})).unwrap().3,
            None
        );
    }

    #[test]
    fn bad_bodies_are_rejected_with_the_offending_param() {
        let cases = [
            (json!([1, 2]), "invalid_json", None),
            (json!({"messages": []}), "missing_model", Some("model")),
            (json!({"model": 5}), "invalid_type", Some("model")),
            (json!({"model": ""}), "invalid_type", Some("model")),
            (
                json!({"model": "m", "stream": "yes"}),
                "invalid_type",
                Some("stream"),
            ),
            (
                json!({"model": "m", "max_tokens": 0}),
                "invalid_value",
                Some("max_tokens"),
            ),
            (
                json!({"model": "m", "max_tokens": -3}),
                "invalid_value",
                Some("max_tokens"),
            ),
            (json!({"model": "m", "n": 129}), "invalid_value", Some("n")),
        ];
        for (body, code, param) in cases {
            let err = parse(&body).err().unwrap();
            assert_eq!((err.code, err.param), (code, param), "{body}");
            assert_eq!(err.status, http::StatusCode::BAD_REQUEST);
        }
        assert_eq!(
            RequestBody::parse(b"{not json").err().unwrap().code,
            "invalid_json"
        );
        assert_eq!(
            RequestBody::parse(br#"{"model":"a","model":"b"}"#)
                .err()
                .unwrap()
                .code,
            "invalid_json"
        );
        assert_eq!(RequestBody::parse(b"").err().unwrap().code, "invalid_json");
    }

    #[test]
    fn escaped_keys_and_raw_access() {
        let bytes = br#"{"mo\u0064el":"m","stream":null,"user":"u1"}"#;
        let b = RequestBody::parse(bytes).unwrap();
        assert_eq!(b.model, "m");
        assert_eq!(b.raw("user"), Some("\"u1\""));
        let out: Value = serde_json::from_slice(&b.rewrite("z", true)).unwrap();
        assert_eq!(out, json!({"model": "z", "stream": null, "user": "u1"}));
    }
}
