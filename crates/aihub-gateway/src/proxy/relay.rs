//! A streamed reply, relayed event by event as the client reads it.
//!
//! The response body pulls the upstream's events itself: each poll from the client's
//! connection reads the next event, checks it, keeps what metering needs and hands the frame
//! on — no task and no channel between the two connections. When the upstream ends, the body
//! writes the usage record and only then yields the last frame (`[DONE]`, or an error event of
//! ours). If the client leaves first (the body is dropped unfinished), a task takes the upstream
//! over and reads it to its end, so the usage the upstream reports is billed exactly — up to
//! `gateway.max_draining_streams` at once; beyond that the upstream is closed and the tokens
//! that arrived are billed, estimated.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::StreamExt;
use http::StatusCode;
use hyper::body::{Body, Frame};
use memchr::memmem::Finder;
use serde::Deserialize;
use serde::de::IgnoredAny;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::{Gateway, Meter, UsageJson, prompt_estimate, push_choices_text};
use crate::body::RequestBody;
use crate::error::GatewayError;
use crate::providers::{EventStream, StreamFault, StreamItem, Usage};
use crate::tokens;

/// Most bytes of streamed data kept for estimating usage when the upstream reports none.
const MAX_COLLECTED: usize = 8 * 1024 * 1024;

/// The body of a streamed `/v1` response (`text/event-stream`).
pub struct EventBody {
    /// `None` once the record is written (the last frame, if any, goes out after that). Boxed:
    /// it is most of a stream's state, and the response moves through several hands before the
    /// first poll.
    relay: Option<Box<Relay>>,
}

impl EventBody {
    pub(super) fn new(relay: Relay) -> Self {
        Self {
            relay: Some(Box::new(relay)),
        }
    }
}

impl Body for EventBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        let end = match this.relay.as_mut() {
            None => return Poll::Ready(None),
            Some(relay) => loop {
                match ready!(relay.events.poll_next_unpin(cx)) {
                    None => break StreamEnd::Complete,
                    Some(item) => match relay.step(item) {
                        Step::Forward(frame) => return Poll::Ready(Some(Ok(Frame::data(frame)))),
                        Step::Skip => {}
                        Step::End(end) => break end,
                    },
                }
            },
        };
        let tail = this.relay.take().and_then(|r| r.finish(end, false));
        Poll::Ready(tail.map(|t| Ok(Frame::data(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.relay.is_none()
    }
}

impl Drop for EventBody {
    fn drop(&mut self) {
        if let Some(relay) = self.relay.take() {
            relay.client_left();
        }
    }
}

/// What one upstream event asks of the relay.
enum Step {
    Forward(Bytes),
    Skip,
    End(StreamEnd),
}

/// A stream in flight: the upstream, the request's meter and what metering keeps.
pub(super) struct Relay {
    gateway: Arc<Gateway>,
    meter: Meter,
    events: EventStream,
    /// The request body, parsed again only if usage has to be estimated.
    request: Bytes,
    /// The client asked for the usage chunk itself (`stream_options.include_usage`).
    include_usage: bool,
    reported: Option<Usage>,
    collected: Vec<Bytes>,
    collected_bytes: usize,
    done: bool,
    malformed: u32,
    /// Keeps [`Gateway::drain`] waiting until the record is written.
    _tracked: TaskTrackerToken,
}

impl Relay {
    pub(super) fn new(
        gateway: Arc<Gateway>,
        meter: Meter,
        events: EventStream,
        request: Bytes,
        include_usage: bool,
    ) -> Self {
        let tracked = gateway.tasks.token();
        Self {
            gateway,
            meter,
            events,
            request,
            include_usage,
            reported: None,
            collected: Vec::new(),
            collected_bytes: 0,
            done: false,
            malformed: 0,
            _tracked: tracked,
        }
    }

    fn step(&mut self, item: Result<StreamItem, StreamFault>) -> Step {
        let (frame, data) = match item {
            Ok(StreamItem::Event { frame, data }) => (frame, data),
            Ok(StreamItem::Usage(u)) => {
                self.reported = Some(u);
                return Step::Skip;
            }
            Ok(StreamItem::Done) => {
                self.done = true;
                return Step::Skip;
            }
            Err(fault) => return Step::End(StreamEnd::Fault(fault)),
        };
        if serde_json::from_slice::<IgnoredAny>(&data).is_err() {
            self.malformed += 1;
            return Step::Skip;
        }
        if is_error_event(&data) {
            // An upstream's own error event is not passed on verbatim (it could carry
            // secrets); the stream ends with an error event of ours.
            return Step::End(StreamEnd::Fault(StreamFault::Upstream(
                "error event".into(),
            )));
        }
        if self.meter.ttft.is_none() {
            self.meter.ttft = Some(self.meter.started.elapsed());
        }
        if has_usage_object(&data) {
            if let Ok(chunk) = serde_json::from_slice::<UsageChunk>(&data) {
                if let Some(u) = chunk.usage.and_then(UsageJson::checked) {
                    self.reported = Some(u);
                }
                // Usage the client did not ask for (we always ask upstream) stays here.
                if !self.include_usage && chunk.choices.is_some_and(|c| c.is_empty()) {
                    return Step::Skip;
                }
            }
        } else if self.reported.is_none() && self.collected_bytes < MAX_COLLECTED {
            self.collected_bytes += data.len();
            self.collected.push(data);
        }
        Step::Forward(frame)
    }

    /// The client is gone with the stream unfinished: read the upstream to its end in a task of
    /// its own, or close it if too many streams are draining already.
    fn client_left(self: Box<Self>) {
        let Ok(permit) = self.gateway.draining.clone().try_acquire_owned() else {
            self.finish(StreamEnd::Abandoned, true);
            return;
        };
        // Dropped outside a runtime (it is shutting down): nothing can read on.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.finish(StreamEnd::Abandoned, true);
            return;
        };
        let tasks = self.gateway.tasks.clone();
        tasks.spawn_on(Box::pin(self.drain(permit)), &runtime);
    }

    async fn drain(mut self: Box<Self>, permit: OwnedSemaphorePermit) {
        let end = loop {
            match self.events.next().await {
                None => break StreamEnd::Complete,
                Some(item) => {
                    if let Step::End(end) = self.step(item) {
                        break end;
                    }
                }
            }
        };
        self.finish(end, true);
        // Held until here: this stream counted against `max_draining_streams` while it drained.
        drop(permit);
    }

    /// Writes the record and returns the stream's last frame, if the client is to get one.
    fn finish(self: Box<Self>, end: StreamEnd, client_gone: bool) -> Option<Bytes> {
        if self.malformed > 0 {
            tracing::warn!(request_id = %self.meter.request_id, malformed = self.malformed, "dropped malformed upstream events");
        }
        let end = match end {
            StreamEnd::Complete if !self.done && self.reported.is_none() => StreamEnd::Incomplete,
            end => end,
        };
        let end = match end {
            StreamEnd::Complete | StreamEnd::Incomplete if client_gone => StreamEnd::Disconnected,
            end => end,
        };
        let (usage, estimated) = match self.reported {
            Some(u) => (u, false),
            None => (self.estimate(), true),
        };
        self.gateway.record(
            self.meter
                .finish(StatusCode::OK, end.code(), usage, estimated),
        );
        match &end {
            StreamEnd::Fault(f) => {
                let e = GatewayError::new(
                    StatusCode::BAD_GATEWAY,
                    "api_error",
                    f.code(),
                    f.to_string(),
                );
                Some(Bytes::from(format!(
                    "data: {}\n\n",
                    serde_json::json!({ "error": e.to_json() })
                )))
            }
            StreamEnd::Complete | StreamEnd::Incomplete => {
                Some(Bytes::from_static(b"data: [DONE]\n\n"))
            }
            StreamEnd::Disconnected | StreamEnd::Abandoned => None,
        }
    }

    /// Usage from the request and the text that arrived, for an upstream that reported none.
    fn estimate(&self) -> Usage {
        let model = self.meter.tokenizer_model();
        // The request was parsed once already; it parses again.
        let prompt = RequestBody::parse(&self.request)
            .map(|body| prompt_estimate(self.meter.endpoint, model, &body))
            .unwrap_or(0);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: tokens::count_text(model, &streamed_text(&self.collected)),
            cached_tokens: 0,
        }
    }
}

/// The text of streamed chunks' choices, joined.
fn streamed_text(chunks: &[Bytes]) -> String {
    let mut text = String::new();
    for data in chunks {
        push_choices_text(data, &mut text);
    }
    text
}

/// How a stream ended.
enum StreamEnd {
    Complete,
    /// The upstream closed without `[DONE]` or usage.
    Incomplete,
    Fault(StreamFault),
    /// The client left; the upstream was read to its end.
    Disconnected,
    /// The client left and too many streams were draining: the upstream was closed.
    Abandoned,
}

impl StreamEnd {
    fn code(&self) -> Option<&'static str> {
        match self {
            StreamEnd::Complete => None,
            StreamEnd::Incomplete => Some("upstream_incomplete"),
            StreamEnd::Fault(f) => Some(f.code()),
            StreamEnd::Disconnected | StreamEnd::Abandoned => Some("client_disconnected"),
        }
    }
}

#[derive(Deserialize)]
struct UsageChunk {
    #[serde(default)]
    choices: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    usage: Option<UsageJson>,
}

/// Searchers for the keys looked up in every streamed event, built once: building one costs
/// more than a search through a typical event.
static USAGE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));
static ERROR_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));

/// Whether an event's JSON has `"usage": {` (not `"usage": null`), without parsing it.
fn has_usage_object(data: &[u8]) -> bool {
    let Some(at) = USAGE_KEY.find(data) else {
        return false;
    };
    data.get(at + 7..)
        .into_iter()
        .flatten()
        .find(|b| !b.is_ascii_whitespace() && **b != b':')
        .is_some_and(|b| *b == b'{')
}

/// Whether a stream event is an error object (`{"error": …}`) rather than a chunk.
fn is_error_event(data: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct MaybeError {
        #[serde(default)]
        error: Option<IgnoredAny>,
        #[serde(default)]
        choices: Option<IgnoredAny>,
    }
    ERROR_KEY.find(data).is_some()
        && serde_json::from_slice::<MaybeError>(data)
            .is_ok_and(|e| e.error.is_some() && e.choices.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_objects_are_found_without_parsing() {
        assert!(has_usage_object(
            br#"{"choices":[],"usage":{"prompt_tokens":1}}"#
        ));
        assert!(has_usage_object(br#"{"usage" : {"a":1}}"#));
        assert!(!has_usage_object(
            br#"{"choices":[{"delta":{}}],"usage":null}"#
        ));
        assert!(!has_usage_object(br#"{"choices":[]}"#));
        assert!(!has_usage_object(br#"{"usage""#));
    }

    #[test]
    fn error_events_are_recognized() {
        assert!(is_error_event(
            br#"{"error":{"message":"boom sk-secret","type":"server_error"}}"#
        ));
        assert!(!is_error_event(
            br#"{"choices":[{"delta":{"content":"the \"error\" word"}}]}"#
        ));
        assert!(!is_error_event(
            br#"{"choices":[],"usage":{"prompt_tokens":1}}"#
        ));
    }

    #[test]
    fn streamed_text_joins_the_choices() {
        let chunks = [
            Bytes::from_static(br#"{"choices":[{"delta":{"content":"hello"}}]}"#),
            Bytes::from_static(br#"{"choices":[{"delta":{"content":" world"}}]}"#),
            Bytes::from_static(b"not json"),
        ];
        assert_eq!(streamed_text(&chunks), "hello world");
        assert_eq!(
            tokens::count_text("gpt-4o", &streamed_text(&chunks)),
            2,
            "two tokens"
        );
    }
}
