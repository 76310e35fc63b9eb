//! Turning a handler's result into an HTTP response: the two providers' error shapes, JSON and
//! SSE responses, and the per-request context that decides how a fault bends the answer.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::{BufMut as _, Bytes, BytesMut};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::Fault;
use crate::body::{MockBody, Render, SseStream, StreamFault};
use crate::state::{Charge, Shared};

/// Which provider's conventions a response follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    OpenAi,
    Azure,
    Anthropic,
}

impl Dialect {
    fn request_id_header(self) -> HeaderName {
        match self {
            Self::OpenAi | Self::Azure => HeaderName::from_static("x-request-id"),
            Self::Anthropic => HeaderName::from_static("request-id"),
        }
    }
}

/// What a handler wants done.
pub(crate) enum Outcome {
    Respond(Response<MockBody>),
    /// Never answer.
    Hang,
}

impl From<Response<MockBody>> for Outcome {
    fn from(r: Response<MockBody>) -> Self {
        Self::Respond(r)
    }
}

/// Everything about the request at hand that is not its body.
pub(crate) struct Ctx<'a> {
    pub shared: &'a Arc<Shared>,
    pub dialect: Dialect,
    pub fault: Fault,
    /// The path as it goes into the ledger.
    pub path: Cow<'static, str>,
    pub request_id: Option<String>,
    /// Azure: the deployment, which stands in for the model.
    pub deployment: Option<&'a str>,
}

impl Ctx<'_> {
    pub fn omit_usage(&self) -> bool {
        self.fault == Fault::OmitUsage
    }

    /// The model a response names: the deployment on Azure, else the requested one.
    pub fn model(&self, requested: Option<&str>) -> Option<Arc<str>> {
        self.deployment
            .or(requested)
            .map(|name| self.shared.model(name))
    }

    pub fn charge(
        &self,
        model: &Arc<str>,
        stream: bool,
        prompt_tokens: u32,
        cached_tokens: u32,
        completion_tokens: u32,
    ) -> Charge {
        Charge {
            request_id: self.request_id.clone(),
            path: self.path.clone(),
            model: Arc::clone(model),
            stream,
            prompt_tokens,
            cached_tokens,
            completion_tokens,
        }
    }

    /// A JSON document answer, bent by the fault in force.
    pub fn document<T: Serialize>(&self, charge: Charge, doc: &T) -> Outcome {
        if matches!(self.fault, Fault::StallAfterChunks(_)) {
            return Outcome::Hang;
        }
        let bytes = match serde_json::to_vec(doc) {
            Ok(b) => b,
            Err(e) => {
                return self
                    .error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
                    .into();
            }
        };
        let slot = self.shared.charge(charge);
        let body = match self.fault {
            Fault::CloseAfterChunks(_) => {
                let len = bytes.len() as u64;
                let mut bytes = Bytes::from(bytes);
                MockBody::Truncated {
                    head: Some(bytes.split_to(bytes.len() / 2)),
                    len,
                    flushed: false,
                }
            }
            Fault::MalformedSse => {
                let mut bytes = bytes;
                bytes.truncate(bytes.len() / 2);
                bytes.extend_from_slice(b"\"broken: ");
                MockBody::Full {
                    data: Some(bytes.into()),
                    slot: Some(slot),
                }
            }
            _ => MockBody::Full {
                data: Some(bytes.into()),
                slot: Some(slot),
            },
        };
        let mut response = Response::new(body);
        set_json(&mut response);
        self.stamp(&mut response);
        response.into()
    }

    /// A server-sent event stream, bent by the fault in force.
    pub fn stream<R: Render>(&self, charge: Charge, render: R) -> Outcome {
        let fault = match self.fault {
            Fault::StallAfterChunks(n) => StreamFault::Stall(n),
            Fault::CloseAfterChunks(n) => StreamFault::Close(n),
            Fault::MalformedSse => StreamFault::Malformed,
            _ => StreamFault::None,
        };
        let slot = self.shared.charge(charge);
        let body = SseStream::new(render, fault, self.shared.options.chunk_interval, slot).boxed();
        let mut response = Response::new(body);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        self.stamp(&mut response);
        response.into()
    }

    /// An error in this provider's shape.
    pub fn error(&self, status: StatusCode, message: &str) -> Response<MockBody> {
        let mut response = error_response(self.dialect, status, message);
        self.stamp(&mut response);
        response
    }

    fn stamp(&self, response: &mut Response<MockBody>) {
        let id = self.shared.next_id();
        if let Ok(value) = HeaderValue::from_str(&format!("req_{id}")) {
            response
                .headers_mut()
                .insert(self.dialect.request_id_header(), value);
        }
    }
}

fn set_json(response: &mut Response<MockBody>) {
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
}

/// A JSON response with the given status.
pub(crate) fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<MockBody> {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut response = Response::new(MockBody::full(bytes));
            *response.status_mut() = status;
            set_json(&mut response);
            response
        }
        Err(e) => error_response(
            Dialect::OpenAi,
            StatusCode::INTERNAL_SERVER_ERROR,
            &e.to_string(),
        ),
    }
}

#[derive(Serialize)]
struct OpenAiError<'a> {
    error: OpenAiErrorBody<'a>,
}

#[derive(Serialize)]
struct OpenAiErrorBody<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

#[derive(Serialize)]
struct AnthropicError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicErrorBody<'a>,
}

#[derive(Serialize)]
struct AnthropicErrorBody<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

/// `(type, code)` of an OpenAI error with this status.
fn openai_kind(status: StatusCode) -> (&'static str, Option<&'static str>) {
    match status.as_u16() {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        403 => ("invalid_request_error", Some("permission_denied")),
        404 => ("invalid_request_error", Some("not_found")),
        429 => ("requests", Some("rate_limit_exceeded")),
        s if s >= 500 => ("server_error", None),
        _ => ("invalid_request_error", None),
    }
}

fn anthropic_kind(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

/// An error body in `dialect`'s shape, without per-request headers.
pub(crate) fn error_response(
    dialect: Dialect,
    status: StatusCode,
    message: &str,
) -> Response<MockBody> {
    let bytes = match dialect {
        Dialect::OpenAi | Dialect::Azure => {
            let (kind, code) = openai_kind(status);
            serde_json::to_vec(&OpenAiError {
                error: OpenAiErrorBody {
                    message,
                    kind,
                    param: None,
                    code,
                },
            })
        }
        Dialect::Anthropic => serde_json::to_vec(&AnthropicError {
            kind: "error",
            error: AnthropicErrorBody {
                kind: anthropic_kind(status),
                message,
            },
        }),
    };
    let mut response = Response::new(MockBody::full(bytes.unwrap_or_default()));
    *response.status_mut() = status;
    set_json(&mut response);
    response
}

/// Adds `Retry-After: seconds`.
pub(crate) fn with_retry_after(
    mut response: Response<MockBody>,
    seconds: u32,
) -> Response<MockBody> {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// Appends one SSE `data:` frame holding `value` as JSON.
pub(crate) fn data_frame<T: Serialize>(
    out: &mut BytesMut,
    value: &T,
) -> Result<(), serde_json::Error> {
    out.extend_from_slice(b"data: ");
    serde_json::to_writer((&mut *out).writer(), value)?;
    out.extend_from_slice(b"\n\n");
    Ok(())
}

/// Appends one SSE frame with an `event:` line.
pub(crate) fn event_frame<T: Serialize>(
    out: &mut BytesMut,
    event: &str,
    value: &T,
) -> Result<(), serde_json::Error> {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\n");
    data_frame(out, value)
}

/// A frame that differs between chunks only in its text: rendered once with a marker, then
/// copied around each word, which saves serializing the whole frame per word.
pub(crate) struct FrameTemplate {
    prefix: Vec<u8>,
    suffix: Vec<u8>,
}

impl FrameTemplate {
    /// `"\0"` serializes as `\u0000`; the text field comes after every other string, so the
    /// last occurrence is the marker even if a model name contains the same characters.
    const MARKER: &'static str = "\u{0}";
    const RENDERED: &'static [u8] = b"\\u0000";

    /// Renders a frame with the marker as its text and splits it there; `None` if the frame
    /// does not contain the marker (or cannot be rendered), so callers fall back to serde.
    pub fn new(
        render: impl FnOnce(&'static str, &mut BytesMut) -> Result<(), serde_json::Error>,
    ) -> Option<Self> {
        let mut buf = BytesMut::new();
        render(Self::MARKER, &mut buf).ok()?;
        let at = buf
            .windows(Self::RENDERED.len())
            .rposition(|w| w == Self::RENDERED)?;
        Some(Self {
            prefix: buf.get(..at)?.to_vec(),
            suffix: buf.get(at + Self::RENDERED.len()..)?.to_vec(),
        })
    }

    /// Appends the frame for `text`, which must need no JSON escaping (answer words do not).
    pub fn write(&self, text: &str, out: &mut BytesMut) {
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(&self.suffix);
    }
}
