//! A fake LLM provider for AI Hub's tests and load benchmark: a real HTTP server speaking the
//! OpenAI, Azure OpenAI and Anthropic wire protocols with deterministic answers and token counts,
//! injectable faults, and a ledger of every request it "charged" for.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use aihub_mock_upstream::{Fault, MockOptions, MockUpstream};
//! let mock = MockUpstream::start(MockOptions { record_requests: true, ..Default::default() }).await?;
//! let base_url = mock.url(); // point the gateway's provider at this
//! mock.set_fault_for(Fault::Status { status: 429, retry_after: Some(1) }, 1);
//! // … drive the gateway …
//! let charged = mock.ledger();
//! # Ok(()) }
//! ```
//!
//! Token rule: `prompt_tokens` = whitespace-separated words of all text content (system
//! included) + 4 per message; the answer is `tok1 tok2 … tokN` with N = the request's
//! `max_completion_tokens`/`max_tokens` (capped at 4096) or [`MockOptions::default_max_tokens`].

mod anthropic;
mod body;
mod control;
mod openai;
mod respond;
mod server;
pub mod smtp;
mod state;
mod tokens;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::state::Shared;

pub use crate::tokens::{MAX_CACHED_TOKENS, MAX_COMPLETION_TOKENS, TOKENS_PER_MESSAGE};
pub use crate::tokens::{TOOL_ARGUMENTS, TOOL_CALL_TOKENS, answer};

/// How the mock behaves when no fault is set.
#[derive(Clone, Debug, Default)]
pub struct MockOptions {
    /// Fixed delay before the response headers of every inference request.
    pub latency: Duration,
    /// Delay between streamed frames. With zero, frames are written in batches.
    pub chunk_interval: Duration,
    /// Keep a [`RecordedRequest`] copy of every request (tests: yes; benchmark: no).
    pub record_requests: bool,
    /// Completion length when the request sets no max tokens; 16 if 0.
    pub default_max_tokens: u32,
    /// If set, require `Authorization: Bearer <key>` (OpenAI paths), `x-api-key: <key>`
    /// (Anthropic) or `api-key: <key>` (Azure), else answer 401 in that provider's shape.
    pub api_key: Option<String>,
    /// Keep only the newest this many ledger entries (`Some(0)`: none), so a long benchmark
    /// does not grow without bound. `None` keeps them all.
    pub ledger_capacity: Option<usize>,
}

/// What goes wrong with inference requests (`/v1/chat/completions`, `/v1/completions`,
/// `/v1/embeddings`, `/v1/messages` and the Azure paths). Model lists and `/__mock/*` are never
/// faulted, and requests rejected before the fault is looked at (401, missing
/// `anthropic-version`, unknown path) do not use up a [`MockUpstream::set_fault_for`] budget.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// An error in the provider's error shape, with `Retry-After` if set. Not charged.
    Status {
        status: u16,
        retry_after: Option<u32>,
    },
    /// Accept the request and never answer. Not charged.
    HangBeforeHeaders,
    /// Streams: N content chunks, then silence. Non-streaming: like `HangBeforeHeaders`.
    StallAfterChunks(u32),
    /// Streams: N content chunks, then the connection is dropped. Non-streaming: the headers
    /// announce the whole body, half of it is sent, then the connection is dropped (charged in
    /// full, `completed: false`).
    CloseAfterChunks(u32),
    /// Streams: a syntactically broken `data:` frame halfway, then the rest as normal.
    /// Non-streaming: a 200 whose JSON body is cut off and broken.
    MalformedSse,
    /// Never report usage: no usage object, no usage chunk or fields in streams.
    OmitUsage,
    /// A 500 whose error message contains the request's credential header verbatim. Not
    /// charged.
    ErrorBodyWithSecret,
}

/// One request the mock charged for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The `x-aihub-request-id` request header, if sent.
    pub request_id: Option<String>,
    pub path: String,
    /// The requested model (the deployment on Azure paths).
    pub model: String,
    pub stream: bool,
    /// All prompt tokens, cached ones included (Anthropic's `input_tokens` +
    /// `cache_read_input_tokens`).
    pub prompt_tokens: u32,
    /// For streams: content chunks actually handed to the connection so far.
    pub completion_tokens: u32,
    pub cached_tokens: u32,
    /// The whole response, up to the final usage / `[DONE]` / `message_stop`, was written.
    pub completed: bool,
}

/// A request as the mock received it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON; `None` if empty or not JSON.
    pub body: Option<serde_json::Value>,
}

impl RecordedRequest {
    fn from_http(parts: &hyper::http::request::Parts, body: &[u8]) -> Self {
        Self {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts
                .headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: serde_json::from_slice(body).ok(),
        }
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The raw value of query parameter `name`, if present.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }
}

/// A running mock provider. Dropping it stops the server and drops its connections.
pub struct MockUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for MockUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockUpstream")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockUpstream {
    /// Binds `127.0.0.1:0` and serves in a background task until dropped.
    pub async fn start(options: MockOptions) -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        Self::start_on(listener, options)
    }

    /// Serves on `listener` in a background task until dropped. Must be called within a Tokio
    /// runtime.
    pub fn start_on(listener: TcpListener, options: MockOptions) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared::new(options));
        let task = runtime.spawn(server::run(
            listener,
            Arc::clone(&shared),
            std::future::pending(),
        ));
        Ok(Self { addr, shared, task })
    }

    /// Serves on `listener` until `shutdown` resolves, then lets open connections finish for a
    /// moment. Faults and the ledger are reachable through the `/__mock/*` endpoints.
    pub async fn serve(
        listener: TcpListener,
        options: MockOptions,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        listener.local_addr()?;
        server::run(listener, Arc::new(Shared::new(options)), shutdown).await;
        Ok(())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Applies `fault` to subsequent inference requests until changed.
    pub fn set_fault(&self, fault: Fault) {
        self.shared.set_fault(fault, None);
    }

    /// Applies `fault` to the next `times` inference requests only, then back to `Fault::None`.
    pub fn set_fault_for(&self, fault: Fault, times: u32) {
        self.shared.set_fault(fault, Some(times));
    }

    /// Every request charged so far, in the order charging began.
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        self.shared.ledger()
    }

    /// Every request received (outside `/__mock/*`), if [`MockOptions::record_requests`].
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// Requests received outside `/__mock/*`, recorded or not.
    pub fn request_count(&self) -> u64 {
        self.shared.request_count()
    }

    /// Clears the ledger, the recorded requests and the request count; fault back to none.
    pub fn reset(&self) {
        self.shared.reset();
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
