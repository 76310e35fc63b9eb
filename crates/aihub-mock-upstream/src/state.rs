//! The mock's shared state: the current fault, the charge ledger, the recorded requests and the
//! models seen. Request handlers touch it through a few short critical sections.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Fault, LedgerEntry, MockOptions, RecordedRequest};

/// Completion length used when neither the request nor the options say.
const DEFAULT_MAX_TOKENS: u32 = 16;

pub(crate) struct Shared {
    pub options: MockOptions,
    fault: Mutex<FaultState>,
    /// Lets the hot path skip the fault lock while no fault is set.
    fault_active: AtomicBool,
    ledger: Mutex<VecDeque<Arc<LedgerSlot>>>,
    requests: Mutex<Vec<RecordedRequest>>,
    request_count: AtomicU64,
    sequence: AtomicU64,
    /// Distinguishes ids minted by different runs of the mock.
    id_prefix: u64,
    models: RwLock<Vec<Arc<str>>>,
}

struct FaultState {
    fault: Fault,
    remaining: Option<u32>,
}

/// One ledger entry while its response is still being written.
pub(crate) struct LedgerSlot {
    request_id: Option<String>,
    path: Cow<'static, str>,
    model: Arc<str>,
    stream: bool,
    prompt_tokens: u32,
    cached_tokens: u32,
    completion_tokens: AtomicU32,
    completed: AtomicBool,
}

/// What a handler knows when it starts charging for a request.
pub(crate) struct Charge {
    pub request_id: Option<String>,
    pub path: Cow<'static, str>,
    pub model: Arc<str>,
    pub stream: bool,
    pub prompt_tokens: u32,
    pub cached_tokens: u32,
    pub completion_tokens: u32,
}

impl LedgerSlot {
    pub fn set_completion_tokens(&self, tokens: u32) {
        self.completion_tokens.store(tokens, Ordering::Relaxed);
    }

    pub fn mark_completed(&self) {
        self.completed.store(true, Ordering::Release);
    }

    fn snapshot(&self) -> LedgerEntry {
        LedgerEntry {
            request_id: self.request_id.clone(),
            path: self.path.to_string(),
            model: self.model.to_string(),
            stream: self.stream,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens.load(Ordering::Relaxed),
            cached_tokens: self.cached_tokens,
            completed: self.completed.load(Ordering::Acquire),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub fn new(mut options: MockOptions) -> Self {
        if options.default_max_tokens == 0 {
            options.default_max_tokens = DEFAULT_MAX_TOKENS;
        }
        let id_prefix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            & 0xffff_ffff_ffff;
        Self {
            options,
            fault: Mutex::new(FaultState {
                fault: Fault::None,
                remaining: None,
            }),
            fault_active: AtomicBool::new(false),
            ledger: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            request_count: AtomicU64::new(0),
            sequence: AtomicU64::new(0),
            id_prefix,
            models: RwLock::new(Vec::new()),
        }
    }

    pub fn set_fault(&self, fault: Fault, remaining: Option<u32>) {
        let mut state = lock(&self.fault);
        let active = fault != Fault::None && remaining != Some(0);
        state.fault = if active { fault } else { Fault::None };
        state.remaining = remaining.filter(|_| active);
        self.fault_active.store(active, Ordering::Release);
    }

    /// The fault for the request at hand, counting it against `set_fault_for`'s budget.
    pub fn take_fault(&self) -> Fault {
        if !self.fault_active.load(Ordering::Acquire) {
            return Fault::None;
        }
        let mut state = lock(&self.fault);
        let fault = state.fault.clone();
        if let Some(remaining) = state.remaining.as_mut() {
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 {
                state.fault = Fault::None;
                state.remaining = None;
                self.fault_active.store(false, Ordering::Release);
            }
        }
        fault
    }

    pub fn count_request(&self) {
        self.request_count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn request_count(&self) -> u64 {
        self.request_count.load(Ordering::Relaxed)
    }

    pub fn record(&self, request: RecordedRequest) {
        lock(&self.requests).push(request);
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.requests).clone()
    }

    pub fn charge(&self, charge: Charge) -> Arc<LedgerSlot> {
        let slot = Arc::new(LedgerSlot {
            request_id: charge.request_id,
            path: charge.path,
            model: charge.model,
            stream: charge.stream,
            prompt_tokens: charge.prompt_tokens,
            cached_tokens: charge.cached_tokens,
            completion_tokens: AtomicU32::new(charge.completion_tokens),
            completed: AtomicBool::new(false),
        });
        match self.options.ledger_capacity {
            Some(0) => {}
            Some(capacity) => {
                let mut ledger = lock(&self.ledger);
                if ledger.len() >= capacity {
                    ledger.pop_front();
                }
                ledger.push_back(Arc::clone(&slot));
            }
            None => lock(&self.ledger).push_back(Arc::clone(&slot)),
        }
        slot
    }

    pub fn ledger(&self) -> Vec<LedgerEntry> {
        lock(&self.ledger).iter().map(|s| s.snapshot()).collect()
    }

    pub fn reset(&self) {
        self.set_fault(Fault::None, None);
        lock(&self.ledger).clear();
        lock(&self.requests).clear();
        self.request_count.store(0, Ordering::Relaxed);
    }

    /// A fresh id suffix, unique within this process and unlikely to repeat across runs.
    pub fn next_id(&self) -> String {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        format!("mock{:012x}{n:08x}", self.id_prefix)
    }

    /// The shared copy of a model name, remembering it for `GET /v1/models`.
    pub fn model(&self, name: &str) -> Arc<str> {
        {
            let models = self.models.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(m) = models.iter().find(|m| &***m == name) {
                return Arc::clone(m);
            }
        }
        let mut models = self.models.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = models.iter().find(|m| &***m == name) {
            return Arc::clone(m);
        }
        let m: Arc<str> = Arc::from(name);
        // A benchmark may send arbitrary names; the list is for tests, so keep it bounded.
        if models.len() < 1024 {
            models.push(Arc::clone(&m));
        }
        m
    }

    pub fn models_seen(&self) -> Vec<Arc<str>> {
        self.models
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Seconds since the Unix epoch, for `created` fields.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_for_runs_out() {
        let s = Shared::new(MockOptions::default());
        assert_eq!(s.options.default_max_tokens, 16);
        s.set_fault(Fault::OmitUsage, Some(2));
        assert_eq!(s.take_fault(), Fault::OmitUsage);
        assert_eq!(s.take_fault(), Fault::OmitUsage);
        assert_eq!(s.take_fault(), Fault::None);
        s.set_fault(Fault::MalformedSse, None);
        for _ in 0..5 {
            assert_eq!(s.take_fault(), Fault::MalformedSse);
        }
        s.set_fault(Fault::MalformedSse, Some(0));
        assert_eq!(s.take_fault(), Fault::None);
    }

    #[test]
    fn ledger_capacity_keeps_the_newest() {
        let s = Shared::new(MockOptions {
            ledger_capacity: Some(2),
            ..MockOptions::default()
        });
        for tokens in 1..=3 {
            s.charge(Charge {
                request_id: None,
                path: Cow::Borrowed("/p"),
                model: Arc::from("m"),
                stream: false,
                prompt_tokens: tokens,
                cached_tokens: 0,
                completion_tokens: 0,
            });
        }
        let kept: Vec<u32> = s.ledger().iter().map(|e| e.prompt_tokens).collect();
        assert_eq!(kept, vec![2, 3]);
    }

    #[test]
    fn models_are_interned() {
        let s = Shared::new(MockOptions::default());
        let a = s.model("gpt-x");
        let b = s.model("gpt-x");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(s.models_seen().len(), 1);
    }
}
