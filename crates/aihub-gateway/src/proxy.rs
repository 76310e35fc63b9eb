//! The per-request path of `/v1/chat/completions`, `/v1/completions` and `/v1/embeddings`.
//!
//! Each request runs in the client connection's task until the response head is ready; if the
//! client goes away first, the rest moves to a task of its own that still finishes metering
//! (`proxy/detached.rs`). It writes a `Start` journal entry before calling the upstream and the
//! `Finish` entry before the response completes: a non-streaming body is released only after its
//! record is written. A stream's body reads the upstream as the client reads it and writes its
//! record before the final `[DONE]`; a client that leaves mid-stream hands the upstream to a task
//! that reads it to its end, so the usage it reports is billed exactly (see `proxy/relay.rs`).
//! Limits and budgets are checked and reserved (see [`crate::governor`]) after routing and
//! before the `Start` entry, and settled when the record is made. Nothing here touches the
//! database, except the governor on a cold cache (an org's policy, a budget's past spend).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aihub_core::config::{GatewayConfig, LimitsConfig};
use aihub_core::governance::RequestScopes;
use aihub_core::{Currency, time};
use aihub_service::catalog::{Catalog, CatalogSnapshot, Price, ProviderSpec};
use aihub_store::{KeyAuth, UsageRecord};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::body::RequestBody;
use crate::error::GatewayError;
use crate::governor::{Admission, Demand, Governor, RateHeaders};
use crate::journal::{Entry, Journal, StartEntry};
use crate::providers::{Call, Endpoint, Provider, Reply, Usage};
use crate::{scan, tokens};

mod detached;
mod relay;

use detached::Detached;

pub use relay::EventBody;
use relay::Relay;

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Upstream token counts above this are treated as garbage and estimated instead.
const MAX_REPORTED_TOKENS: u64 = 100_000_000;

/// What the HTTP edge sends back.
pub struct GatewayResponse {
    pub status: StatusCode,
    pub body: ResponseBody,
    pub retry_after: Option<u64>,
    /// `x-ratelimit-*` figures of the binding limits.
    pub rate: RateHeaders,
    /// Retrying cannot help (`x-should-retry: false`).
    pub final_answer: bool,
}

pub enum ResponseBody {
    /// A JSON body (success or OpenAI-shaped error).
    Json(Bytes),
    /// Server-sent events, read from the upstream as the client reads them.
    Events(EventBody),
}

impl GatewayResponse {
    fn error(e: &GatewayError) -> Self {
        let body = serde_json::json!({ "error": e.to_json() });
        Self {
            status: e.status,
            body: ResponseBody::Json(Bytes::from(body.to_string())),
            retry_after: e.retry_after,
            rate: RateHeaders::default(),
            final_answer: e.final_answer,
        }
    }
}

/// A request id as a header value (`x-request-id` to the client, `x-aihub-request-id` to the
/// upstream), encoded on the stack rather than through a `String`.
#[must_use]
pub fn request_id_value(id: Uuid) -> Option<http::HeaderValue> {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    http::HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf)).ok()
}

/// A model a key may call, for `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    pub id: String,
    pub owned_by: String,
}

/// Live providers (with their HTTP connection pools) for one catalog version.
struct Providers {
    version: u64,
    map: HashMap<String, (Arc<ProviderSpec>, Arc<Provider>)>,
}

pub struct Gateway {
    catalog: Catalog,
    journal: Arc<Journal>,
    providers: ArcSwap<Providers>,
    rebuild: Mutex<()>,
    tasks: TaskTracker,
    draining: Arc<Semaphore>,
    max_response: usize,
    governor: Governor,
    default_max_output: u64,
}

/// Everything a usage record needs that is known when the request arrives.
struct Meter {
    request_id: Uuid,
    key: Arc<KeyAuth>,
    endpoint: Endpoint,
    model: String,
    provider: Option<String>,
    upstream_model: Option<String>,
    price: Option<Price>,
    streamed: bool,
    started: Instant,
    created_at_ms: i64,
    ttft: Option<Duration>,
    /// The hold on limits and budgets, settled when the record is made.
    admission: Mutex<Option<Admission>>,
    rate: RateHeaders,
}

impl Meter {
    /// The model name that picks the tokenizer: the upstream's own name when routed.
    fn tokenizer_model(&self) -> &str {
        self.upstream_model.as_deref().unwrap_or(&self.model)
    }

    fn finish(
        &self,
        status: StatusCode,
        error: Option<&str>,
        usage: Usage,
        estimated: bool,
    ) -> UsageRecord {
        let (cost, currency) = match &self.price {
            Some(p) => {
                let m = p.cost(
                    usage.prompt_tokens,
                    usage.cached_tokens,
                    usage.completion_tokens,
                );
                (m.micros, m.currency)
            }
            None => (0, Currency::USD),
        };
        let admission = self
            .admission
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(a) = admission {
            a.settle(
                usage.prompt_tokens.saturating_add(usage.completion_tokens),
                cost,
            );
        }
        let k = &self.key.key;
        UsageRecord {
            request_id: self.request_id,
            org_id: k.org_id,
            user_id: k.owner_user_id,
            key_id: Some(k.id),
            team_id: k.team_id,
            endpoint: self.endpoint.as_str().to_owned(),
            model: self.model.clone(),
            provider: self.provider.clone(),
            upstream_model: self.upstream_model.clone(),
            prompt_tokens: as_i64(usage.prompt_tokens),
            completion_tokens: as_i64(usage.completion_tokens),
            cached_tokens: as_i64(usage.cached_tokens),
            cost_micros: cost,
            currency,
            status: i32::from(status.as_u16()),
            error_code: error.map(str::to_owned),
            latency_ms: millis(self.started.elapsed()),
            ttft_ms: self.ttft.map(millis),
            streamed: self.streamed,
            estimated,
            created_at: time::from_millis(self.created_at_ms),
        }
    }

    fn start(&self, boot: Uuid, prompt_estimate: u64) -> StartEntry {
        let (cost, currency) = match &self.price {
            Some(p) => {
                let m = p.cost(prompt_estimate, 0, 0);
                (m.micros, m.currency)
            }
            None => (0, Currency::USD),
        };
        let k = &self.key.key;
        StartEntry {
            request_id: self.request_id,
            boot,
            org_id: k.org_id,
            user_id: k.owner_user_id,
            key_id: Some(k.id),
            team_id: k.team_id,
            endpoint: self.endpoint.as_str().to_owned(),
            model: self.model.clone(),
            provider: self.provider.clone(),
            upstream_model: self.upstream_model.clone(),
            streamed: self.streamed,
            prompt_tokens: prompt_estimate,
            prompt_cost_micros: cost,
            currency,
            created_at_ms: self.created_at_ms,
        }
    }
}

impl Gateway {
    #[must_use]
    pub fn new(
        catalog: Catalog,
        journal: Arc<Journal>,
        config: &GatewayConfig,
        governor: Governor,
        limits: &LimitsConfig,
    ) -> Self {
        Self {
            catalog,
            journal,
            providers: ArcSwap::from_pointee(Providers {
                version: 0,
                map: HashMap::new(),
            }),
            rebuild: Mutex::new(()),
            tasks: TaskTracker::new(),
            draining: Arc::new(Semaphore::new(config.max_draining_streams)),
            max_response: config.max_response_bytes,
            governor,
            default_max_output: limits.default_max_output_tokens,
        }
    }

    /// Handles one request up to its response head (a stream's body then reads the upstream
    /// itself). The work runs in the caller's task, with no spawn and no channel; if the caller
    /// is dropped first (the client left), the rest of the work moves to a task of its own and
    /// still meters the request (see [`Detached`]).
    pub async fn handle(
        self: &Arc<Self>,
        endpoint: Endpoint,
        key: Arc<KeyAuth>,
        request_id: Uuid,
        body: Bytes,
    ) -> GatewayResponse {
        // Boxed: the request's state machine is several kilobytes; the caller's future and a
        // detached task then hold a pointer to it, not the whole of it.
        let run = Box::pin(self.clone().run(endpoint, key, request_id, body));
        Detached::new(run, self.tasks.token()).await
    }

    /// Waits until every request has finished, in its connection or detached (after the server
    /// stopped accepting).
    pub async fn drain(&self, grace: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(grace, self.tasks.wait()).await.is_ok()
    }

    /// The models `key` may call, sorted by name.
    #[must_use]
    pub fn models_for(&self, key: &KeyAuth) -> Vec<ModelInfo> {
        let snap = self.catalog.snapshot();
        let mut list: Vec<ModelInfo> = snap
            .models
            .values()
            .filter(|m| {
                key.key
                    .models
                    .as_ref()
                    .is_none_or(|allowed| allowed.contains(&m.name))
            })
            .map(|m| ModelInfo {
                id: m.name.clone(),
                owned_by: m.provider.clone(),
            })
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }

    fn provider(&self, snap: &CatalogSnapshot, name: &str) -> Result<Arc<Provider>, GatewayError> {
        let missing =
            || GatewayError::upstream_unavailable("The model's provider is not available.");
        let current = self.providers.load();
        if current.version == snap.version {
            return current
                .map
                .get(name)
                .map(|(_, p)| p.clone())
                .ok_or_else(missing);
        }
        let _guard = self
            .rebuild
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.providers.load();
        if current.version != snap.version {
            let mut map = HashMap::with_capacity(snap.providers.len());
            for (n, spec) in &snap.providers {
                // An unchanged provider keeps its connection pool.
                if let Some((old_spec, old)) = current.map.get(n)
                    && old_spec == spec
                {
                    map.insert(n.clone(), (spec.clone(), old.clone()));
                    continue;
                }
                match Provider::build(spec) {
                    Ok(p) => {
                        map.insert(n.clone(), (spec.clone(), Arc::new(p)));
                    }
                    Err(e) => {
                        tracing::error!(provider = %n, error = %e.message, "provider unavailable")
                    }
                }
            }
            self.providers.store(Arc::new(Providers {
                version: snap.version,
                map,
            }));
        }
        self.providers
            .load()
            .map
            .get(name)
            .map(|(_, p)| p.clone())
            .ok_or_else(missing)
    }

    /// What a request may consume at most, for limits and budget reservations. The prompt's
    /// byte length bounds its token count (every token is at least one byte), so a budget's
    /// reservation covers the real cost whenever the upstream honours `max_tokens`.
    fn demand<'a>(
        &self,
        meter: &Meter,
        body: &'a RequestBody<'_>,
        endpoint: Endpoint,
        raw_len: usize,
        prompt_estimate: u64,
    ) -> Demand<'a> {
        let k = &meter.key.key;
        let max_out = if endpoint == Endpoint::Embeddings {
            0
        } else {
            body.max_tokens
                .unwrap_or(self.default_max_output)
                .saturating_mul(body.n.max(1))
        };
        let prompt_max = u64::try_from(raw_len).unwrap_or(u64::MAX);
        Demand {
            scopes: RequestScopes {
                org: k.org_id,
                key: k.id,
                user: k.owner_user_id.map(|u| u.as_uuid()),
                team: k.team_id.map(|t| t.as_uuid()),
            },
            model: &body.model,
            tokens_estimate: prompt_estimate.saturating_add(max_out),
            tokens_max: prompt_max.saturating_add(max_out),
            cost_max: meter.price.as_ref().map(|p| {
                let m = p.cost(prompt_max, 0, max_out);
                (m.micros, m.currency)
            }),
            now: time::from_millis(meter.created_at_ms),
        }
    }

    fn record(&self, entry: UsageRecord) {
        let request_id = entry.request_id;
        if let Err(e) = self.journal.append(Entry::Finish(entry)) {
            tracing::error!(error = %e, %request_id, "could not write usage to the journal");
        }
    }

    /// [`Gateway::record`] in a request's own task: its write may carry others' entries.
    async fn record_grouped(&self, entry: UsageRecord) {
        let request_id = entry.request_id;
        if let Err(e) = self.journal.append_grouped(Entry::Finish(entry)).await {
            tracing::error!(error = %e, %request_id, "could not write usage to the journal");
        }
    }

    /// Ends a request with an error response and its usage record.
    fn reject(&self, meter: &Meter, e: &GatewayError) -> GatewayResponse {
        self.record(meter.finish(e.status, Some(e.code), Usage::default(), false));
        let mut resp = GatewayResponse::error(e);
        resp.rate = meter.rate;
        resp
    }

    async fn run(
        self: Arc<Self>,
        endpoint: Endpoint,
        key: Arc<KeyAuth>,
        request_id: Uuid,
        raw: Bytes,
    ) -> GatewayResponse {
        let snap = self.catalog.snapshot();
        let mut meter = Meter {
            request_id,
            key,
            endpoint,
            model: String::new(),
            provider: None,
            upstream_model: None,
            price: None,
            streamed: false,
            started: Instant::now(),
            created_at_ms: time::to_millis(time::now()),
            ttft: None,
            admission: Mutex::new(None),
            rate: RateHeaders::default(),
        };
        let body = match RequestBody::parse(&raw) {
            Ok(b) => b,
            Err(e) => return self.reject(&meter, &e),
        };
        meter.model.clone_from(&body.model);
        meter.streamed = body.stream;
        if let Some(allowed) = &meter.key.key.models
            && !allowed.contains(&body.model)
        {
            let e = GatewayError {
                param: Some("model"),
                ..GatewayError::new(
                    StatusCode::FORBIDDEN,
                    "invalid_request_error",
                    "model_not_allowed",
                    format!(
                        "This API key is not allowed to use the model `{}`.",
                        body.model
                    ),
                )
            };
            return self.reject(&meter, &e);
        }
        let Some(route) = snap.route(&body.model) else {
            let e = GatewayError {
                param: Some("model"),
                ..GatewayError::new(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    "model_not_found",
                    format!(
                        "The model `{}` does not exist or you do not have access to it.",
                        body.model
                    ),
                )
            };
            return self.reject(&meter, &e);
        };
        meter.provider = Some(route.provider.clone());
        meter.upstream_model = Some(route.upstream_model.clone());
        meter.price = snap
            .price_at(&body.model, time::from_millis(meter.created_at_ms))
            .cloned();
        let provider = match self.provider(&snap, &route.provider) {
            Ok(p) => p,
            Err(e) => return self.reject(&meter, &e),
        };
        if !provider.supports(endpoint) || (endpoint == Endpoint::Embeddings && body.stream) {
            let e = GatewayError::invalid(
                "unsupported_endpoint",
                Some("model"),
                format!(
                    "The model `{}` does not support this endpoint{}.",
                    body.model,
                    if body.stream { " with streaming" } else { "" }
                ),
            );
            return self.reject(&meter, &e);
        }

        // Limits and budgets: checked and reserved in one step, settled with the record.
        let prompt_estimate = u64::try_from(raw.len() / 4).unwrap_or(u64::MAX);
        let demand = self.demand(&meter, &body, endpoint, raw.len(), prompt_estimate);
        match self.governor.admit(request_id, &demand).await {
            Ok(a) => {
                meter.rate = a.headers();
                *meter
                    .admission
                    .get_mut()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(a);
            }
            Err(rejection) => {
                meter.rate = rejection.headers;
                return self.reject(&meter, &rejection.error);
            }
        }

        // Billing must be able to survive a crash from here on: no journal, no upstream call.
        if let Err(e) = self
            .journal
            .append_grouped(Entry::Start(
                meter.start(self.journal.boot(), prompt_estimate),
            ))
            .await
        {
            tracing::error!(error = %e, "usage journal unavailable; refusing the request");
            let e = GatewayError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                "metering_unavailable",
                "Usage metering is unavailable, so the request was not sent. Please retry.",
            );
            return GatewayResponse::error(&e);
        }

        let call = Call {
            endpoint,
            body: &body,
            upstream_model: &route.upstream_model,
            request_id,
        };
        let reply = provider.send(call).await;
        match reply {
            Err(e) => self.reject(&meter, &e),
            Ok(Reply::Complete { body: out, usage }) => {
                if out.len() > self.max_response {
                    let e = GatewayError::upstream_error("The upstream response was too large.");
                    return self.reject(&meter, &e);
                }
                let (usage, estimated) = match usage.or_else(|| usage_in_body(&out)) {
                    Some(u) => (u, false),
                    None => (
                        estimate_complete(endpoint, &route.upstream_model, &body, &out),
                        true,
                    ),
                };
                self.record_grouped(meter.finish(StatusCode::OK, None, usage, estimated))
                    .await;
                GatewayResponse {
                    status: StatusCode::OK,
                    body: ResponseBody::Json(out),
                    retry_after: None,
                    rate: meter.rate,
                    final_answer: false,
                }
            }
            Ok(Reply::Stream(events)) => {
                let include_usage = body.include_usage;
                drop(body);
                let rate = meter.rate;
                let relay = Relay::new(self, meter, events, raw, include_usage);
                // If the client left before the head, the body is dropped unsent and the stream
                // is read on without it (see `Detached`).
                GatewayResponse {
                    status: StatusCode::OK,
                    body: ResponseBody::Events(EventBody::new(relay)),
                    retry_after: None,
                    rate,
                    final_answer: false,
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct UsageJson {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<Details>,
}

#[derive(Deserialize)]
struct Details {
    cached_tokens: Option<u64>,
}

impl UsageJson {
    /// The usage, unless the numbers are missing or absurd.
    fn checked(self) -> Option<Usage> {
        let prompt = self.prompt_tokens?;
        let completion = self.completion_tokens.unwrap_or(0);
        let cached = self
            .prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0);
        if prompt > MAX_REPORTED_TOKENS || completion > MAX_REPORTED_TOKENS {
            tracing::warn!(prompt, completion, "ignoring implausible upstream usage");
            return None;
        }
        Some(Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cached_tokens: cached.min(prompt),
        })
    }
}

/// The usage a reply reports in its top-level `usage` member. Only that member is parsed (see
/// [`scan`]); the whole reply only when a scan cannot tell where the member is.
fn usage_in_body(body: &[u8]) -> Option<Usage> {
    let usage = match scan::member(body, b"usage") {
        scan::Member::Value(rest) => {
            Option::<UsageJson>::deserialize(&mut serde_json::Deserializer::from_slice(rest))
                .ok()?
        }
        scan::Member::Absent => None,
        scan::Member::Unsure => usage_by_full_parse(body),
    };
    usage?.checked()
}

/// The top-level `usage` of a reply parsed whole (`None` when the reply is not a JSON object,
/// has no usage, or has it twice).
fn usage_by_full_parse(body: &[u8]) -> Option<UsageJson> {
    #[derive(Deserialize)]
    struct WithUsage {
        usage: Option<UsageJson>,
    }
    serde_json::from_slice::<WithUsage>(body).ok()?.usage
}

/// `model` is the upstream's name for the model: it decides the tokenizer.
fn prompt_estimate(endpoint: Endpoint, model: &str, body: &RequestBody<'_>) -> u64 {
    match endpoint {
        Endpoint::ChatCompletions => tokens::chat_prompt(model, body),
        Endpoint::Completions => tokens::completion_prompt(model, body),
        Endpoint::Embeddings => tokens::embedding_input(model, body),
    }
}

#[derive(Deserialize, Default)]
struct Choice {
    #[serde(default)]
    message: Option<Text>,
    #[serde(default)]
    delta: Option<Text>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize, Default)]
struct Text {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Choices {
    #[serde(default)]
    choices: Vec<Choice>,
}

/// Appends the text of a reply's or a chunk's choices (content, tool calls, completion text)
/// to `out`; JSON of another shape adds nothing.
fn push_choices_text(json: &[u8], out: &mut String) {
    let Ok(Choices { choices }) = serde_json::from_slice::<Choices>(json) else {
        return;
    };
    for c in choices {
        for t in [c.message, c.delta].into_iter().flatten() {
            if let Some(s) = t.content {
                out.push_str(&s);
            }
            if let Some(tc) = t.tool_calls {
                out.push_str(&tc.to_string());
            }
        }
        if let Some(s) = c.text {
            out.push_str(&s);
        }
    }
}

fn estimate_complete(endpoint: Endpoint, model: &str, body: &RequestBody<'_>, out: &[u8]) -> Usage {
    let mut text = String::new();
    if endpoint != Endpoint::Embeddings {
        push_choices_text(out, &mut text);
    }
    Usage {
        prompt_tokens: prompt_estimate(endpoint, model, body),
        completion_tokens: tokens::count_text(model, &text),
        cached_tokens: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_usage_is_checked() {
        assert_eq!(
            usage_in_body(br#"{"usage":{"prompt_tokens":10,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":20}}}"#),
            Some(Usage { prompt_tokens: 10, completion_tokens: 5, cached_tokens: 10 })
        );
        assert_eq!(
            usage_in_body(br#"{"usage":{"prompt_tokens":-1,"completion_tokens":5}}"#),
            None
        );
        assert_eq!(
            usage_in_body(br#"{"usage":{"prompt_tokens":1000000000000,"completion_tokens":5}}"#),
            None
        );
        assert_eq!(usage_in_body(br#"{"usage":null}"#), None);
        assert_eq!(usage_in_body(b"not json"), None);
        assert_eq!(
            usage_in_body(br#"{"usage":{"prompt_tokens":7}}"#),
            Some(Usage {
                prompt_tokens: 7,
                completion_tokens: 0,
                cached_tokens: 0
            })
        );
    }

    #[test]
    fn the_scanned_usage_is_the_fully_parsed_usage() {
        use serde_json::{Value, json};
        // A small deterministic generator (xorshift), so a failure reproduces.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let strings = [
            "usage",
            "}{",
            "\"usage\":{",
            "a\\",
            "\u{e9}t\u{e9}\n\u{1}",
            "",
            "[{\"usage\":1}]",
            "\"",
        ];
        fn value(next: &mut dyn FnMut(u64) -> u64, strings: &[&str], depth: u32) -> Value {
            match next(if depth > 3 { 4 } else { 7 }) {
                0 => Value::Null,
                1 => json!(next(1000)),
                2 => json!(strings[usize::try_from(next(8)).unwrap()]),
                3 => json!(next(2) == 0),
                4 => Value::Array(
                    (0..next(4))
                        .map(|_| value(next, strings, depth + 1))
                        .collect(),
                ),
                5 => json!({"usage": {"prompt_tokens": next(50), "completion_tokens": 1}}),
                _ => {
                    let mut m = serde_json::Map::new();
                    for i in 0..next(4) {
                        let key = if next(3) == 0 {
                            "usage".to_owned()
                        } else {
                            format!("k{i}")
                        };
                        m.insert(key, value(next, strings, depth + 1));
                    }
                    Value::Object(m)
                }
            }
        }
        let mut reported = 0;
        for round in 0..3000 {
            let mut top = serde_json::Map::new();
            for i in 0..next(6) {
                top.insert(format!("m{i}"), value(&mut next, &strings, 1));
            }
            let usage = match next(5) {
                0 => None,
                1 => Some(Value::Null),
                2 => Some(json!({"prompt_tokens": -1, "completion_tokens": 2})),
                3 => Some(value(&mut next, &strings, 1)),
                _ => Some(
                    json!({"prompt_tokens": next(100), "completion_tokens": next(100),
                    "prompt_tokens_details": {"cached_tokens": next(100)}}),
                ),
            };
            if let Some(u) = usage {
                top.insert("usage".to_owned(), u);
                for i in 0..next(3) {
                    top.insert(format!("z{i}"), value(&mut next, &strings, 1));
                }
            }
            let doc = Value::Object(top);
            let text = if round % 2 == 0 {
                serde_json::to_vec(&doc).unwrap()
            } else {
                serde_json::to_vec_pretty(&doc).unwrap()
            };
            // Valid JSON whose top-level keys have no escapes: the scan answers it alone.
            assert_ne!(
                scan::member(&text, b"usage"),
                scan::Member::Unsure,
                "{}",
                String::from_utf8_lossy(&text)
            );
            // The reference: the whole reply parsed, as before the scan.
            let expected = usage_by_full_parse(&text).and_then(UsageJson::checked);
            reported += usize::from(expected.is_some());
            assert_eq!(
                usage_in_body(&text),
                expected,
                "{}",
                String::from_utf8_lossy(&text)
            );
        }
        assert!(reported > 500, "too few documents with usage: {reported}");
    }

    #[test]
    fn a_key_the_scan_cannot_read_is_left_to_the_full_parse() {
        assert_eq!(
            usage_in_body(br#"{"us\u0061ge":{"prompt_tokens":4,"completion_tokens":1}}"#),
            Some(Usage {
                prompt_tokens: 4,
                completion_tokens: 1,
                cached_tokens: 0
            })
        );
        assert_eq!(
            usage_in_body(br#"{"usage":{"prompt_tokens":4},"usage":{"prompt_tokens":5}}"#),
            Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 0,
                cached_tokens: 0
            }),
            "a key given twice counts as its last"
        );
        assert_eq!(usage_in_body(br#"{"usage":{"prompt_tokens":4}"#), None);
    }

    #[test]
    fn estimates_count_prompt_and_output_text() {
        let raw = serde_json::to_vec(&serde_json::json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hello world"}]})).unwrap();
        let body = RequestBody::parse(&raw).unwrap();
        let out =
            br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"hello world"}}]}"#;
        let u = estimate_complete(Endpoint::ChatCompletions, "gpt-4o", &body, out);
        assert_eq!(
            u,
            Usage {
                prompt_tokens: 3 + 3 + 2,
                completion_tokens: 2,
                cached_tokens: 0
            }
        );
    }
}
