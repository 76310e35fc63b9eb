//! Regression guard for the `/v1` hot path: counts the heap allocations AI Hub's own threads make
//! per request and fails when a figure grows past `budget.toml` by more than its tolerance.
//!
//! Allocation counts do not depend on the speed or load of the machine, so unlike latency they can
//! gate CI. The real `Application` runs on a Tokio runtime of its own whose threads are marked
//! (thread-local flag set in `on_thread_start`); the client and the mock upstream run on another,
//! unmarked runtime, so only allocations made by AI Hub are counted. Requests are sent one at a
//! time over kept-alive connections after a warm-up, with AI Hub's background tasks (usage
//! loader, fsync, `last_used_at` writer) set to intervals far longer than the test, so the count
//! per request is the same from run to run.
//!
//! Re-measure (prints every figure; add `AIHUB_GUARD_UPDATE=1` to rewrite the budget for the
//! current profile): `cargo test -p aihub-bench-guard -- --nocapture`.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests: a failed step should fail the test loudly"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aihub_core::config::{Config, ModelConfig, ProviderConfig, ProviderKind};
use aihub_mock_upstream::{MockOptions, MockUpstream};
use aihub_server::Application;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// The counting allocator.

/// Forwards to the system allocator; counts calls made on marked threads.
struct Counting;

/// `alloc`, `alloc_zeroed` and `realloc` calls on marked threads.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes asked for by those calls (for `realloc`, the new size).
static BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// True on the threads of AI Hub's runtime. `const`-initialized and without a destructor,
    /// so reading it never allocates and works during thread teardown.
    static MARKED: Cell<bool> = const { Cell::new(false) };
}

fn note(size: usize) {
    if MARKED.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(size as u64, Ordering::Relaxed);
    }
}

#[expect(
    unsafe_code,
    reason = "`GlobalAlloc` is an unsafe trait; every method forwards its arguments unchanged to \
              `System`, so the caller's guarantees carry over"
)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as this method; forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as this method; forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: `ptr` came from `System` through this allocator, with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counters() -> (u64, u64) {
    (
        ALLOCATIONS.load(Ordering::SeqCst),
        BYTES.load(Ordering::SeqCst),
    )
}

// ---------------------------------------------------------------------------------------------
// The budget.

/// Requests sent before counting: connections, pools, caches and buffers settle.
const WARMUP: u64 = 200;
/// Requests counted per scenario.
const MEASURED: u64 = 1000;

const BUDGET_FILE: &str = "budget.toml";

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Figures {
    /// Allocator calls per request.
    allocations: f64,
    /// Bytes requested per request.
    bytes: f64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Budget {
    /// Allowed growth over a budget figure before the guard fails (0.10 = 10 %).
    tolerance: f64,
    /// Per build profile (`debug` for `cargo test`, `release` for `cargo test --release`: code
    /// generation changes a few allocations), per scenario.
    profiles: BTreeMap<String, BTreeMap<String, Figures>>,
}

fn budget_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(BUDGET_FILE)
}

fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// Writes to the real stderr, past the test harness's capture, so the figures show in CI logs
/// even when the test passes.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

// ---------------------------------------------------------------------------------------------
// The application under test.

/// One kind of `/v1` request.
struct Scenario {
    name: &'static str,
    model: &'static str,
    stream: bool,
}

const SCENARIOS: &[Scenario] = &[
    // The hot path: key from the cache, body parsed and rewritten, journal, HTTP upstream.
    Scenario {
        name: "chat",
        model: "bench-chat",
        stream: false,
    },
    // The same as a server-sent event stream, usage included.
    Scenario {
        name: "chat_stream",
        model: "bench-chat",
        stream: true,
    },
    // The built-in `mock` provider: everything but the HTTP hop to the upstream.
    Scenario {
        name: "chat_builtin_mock",
        model: "mock-chat",
        stream: false,
    },
];

fn runtime(marked: bool) -> tokio::runtime::Runtime {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(1).enable_all();
    if marked {
        b.thread_name("aihub-app")
            .on_thread_start(|| MARKED.with(|m| m.set(true)));
    } else {
        b.thread_name("guard-client");
    }
    b.build().unwrap()
}

fn config(dir: &Path, upstream: &str) -> Config {
    // Longer than the test: no background work runs while allocations are counted.
    const QUIET_MS: u64 = 3_600_000;
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.server.shutdown_grace_secs = 1;
    c.database.url = format!("sqlite://{}", dir.join("aihub.db").display());
    c.gateway.key_cache_ttl_secs = QUIET_MS / 1000;
    c.gateway.last_used_flush_secs = QUIET_MS / 1000;
    c.gateway.secrets_dir = dir.join("secrets");
    c.usage.journal_dir = dir.join("journal");
    c.usage.fsync_interval_ms = QUIET_MS;
    c.usage.load_interval_ms = QUIET_MS;
    // Nor early: the loader also runs once a full batch waits (two entries per record).
    c.usage.load_batch = 100_000;
    // Every check on: the enterprise plan's RPM, TPM and concurrency limits apply to each
    // request (its quota is unlimited, so no budget ledger is read from the database).
    c.limits.default_plan = Some("enterprise".to_owned());
    c.providers = vec![
        ProviderConfig {
            name: "upstream".into(),
            kind: ProviderKind::Openai,
            base_url: Some(format!("{upstream}/v1")),
            ..ProviderConfig::default()
        },
        ProviderConfig {
            name: "mock".into(),
            kind: ProviderKind::Mock,
            ..ProviderConfig::default()
        },
    ];
    c.models = vec![
        ModelConfig {
            name: "bench-chat".into(),
            provider: "upstream".into(),
            upstream_model: Some("gpt-4o-mini".into()),
        },
        ModelConfig {
            name: "mock-chat".into(),
            provider: "mock".into(),
            upstream_model: None,
        },
    ];
    c
}

/// Registers a user and returns a new API key of their organization.
async fn api_key(client: &reqwest::Client, base: &str) -> String {
    let creds = json!({"email": "guard@example.com", "password": "correct horse battery staple"});
    let r = client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&creds)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "register: {}", r.status());
    let org = r.json::<Value>().await.unwrap()["org"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&creds)
        .send()
        .await
        .unwrap();
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = client
        .post(format!("{base}/api/v1/orgs/{org}/keys"))
        .bearer_auth(token)
        .json(&json!({"name": "guard"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "create key: {}", r.status());
    r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Sends `n` requests one after another and reads every response to its end.
async fn drive(client: &reqwest::Client, addr: SocketAddr, key: &str, s: &Scenario, n: u64) {
    let mut body = json!({
        "model": s.model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Say hello to the load benchmark, please."}
        ],
        "max_tokens": 16,
    });
    if s.stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    let body = serde_json::to_vec(&body).unwrap();
    let url = format!("http://{addr}/v1/chat/completions");
    for _ in 0..n {
        let r = client
            .post(&url)
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.bytes().await.unwrap();
        assert!(
            status.is_success(),
            "{}: {status} {}",
            s.name,
            String::from_utf8_lossy(&text)
        );
        if s.stream {
            assert!(
                text.ends_with(b"data: [DONE]\n\n"),
                "{}: stream cut",
                s.name
            );
        }
    }
}

/// Counts per request for every scenario.
fn measure() -> BTreeMap<String, Figures> {
    let dir = tempfile::tempdir().unwrap();
    let client_rt = runtime(false);
    let app_rt = runtime(true);

    let mock = client_rt
        .block_on(MockUpstream::start(MockOptions {
            ledger_capacity: Some(0),
            ..MockOptions::default()
        }))
        .unwrap();
    let app = app_rt
        .block_on(Application::build(config(dir.path(), &mock.url())))
        .unwrap();
    let addr = app.local_addr().unwrap();
    app_rt.spawn(app.run_until(std::future::pending()));

    let mut out = BTreeMap::new();
    client_rt.block_on(async {
        let client = reqwest::Client::new();
        let key = api_key(&client, &format!("http://{addr}")).await;
        for s in SCENARIOS {
            drive(&client, addr, &key, s, WARMUP).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let (a0, b0) = counters();
            drive(&client, addr, &key, s, MEASURED).await;
            // Lets the last request's task finish its bookkeeping inside the window.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let (a1, b1) = counters();
            out.insert(
                s.name.to_owned(),
                Figures {
                    allocations: (a1 - a0) as f64 / MEASURED as f64,
                    bytes: (b1 - b0) as f64 / MEASURED as f64,
                },
            );
        }
    });
    app_rt.shutdown_timeout(Duration::from_secs(1));
    drop(mock);
    client_rt.shutdown_timeout(Duration::from_secs(1));
    out
}

#[test]
fn v1_allocations_per_request_stay_within_budget() {
    let measured = measure();
    let path = budget_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut budget: Budget = toml::from_str(&text).unwrap();
    let profile = profile();

    if std::env::var_os("AIHUB_GUARD_UPDATE").is_some() {
        // Rounded up so that the budget is a ceiling of what was measured.
        let rounded = measured
            .iter()
            .map(|(k, f)| {
                (
                    k.clone(),
                    Figures {
                        allocations: f.allocations.ceil(),
                        bytes: (f.bytes / 64.0).ceil() * 64.0,
                    },
                )
            })
            .collect();
        budget.profiles.insert(profile.to_owned(), rounded);
        let header = text
            .lines()
            .take_while(|l| l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let body = toml::to_string_pretty(&budget).unwrap();
        std::fs::write(&path, format!("{header}\n\n{body}")).unwrap();
        report(&format!("alloc guard: budget for `{profile}` rewritten"));
    }

    let tolerance = budget.tolerance;
    let Some(limits) = budget.profiles.get(profile) else {
        // Budgets are kept for the profiles CI builds; another profile only reports.
        report(&format!(
            "alloc guard: no budget for the `{profile}` profile in {}; measured only:",
            path.display()
        ));
        for (name, m) in &measured {
            report(&format!(
                "  {name:<18} {:>7.1} allocations/request, {:>8.0} bytes/request",
                m.allocations, m.bytes
            ));
        }
        return;
    };
    let mut failures = Vec::new();
    report(&format!(
        "alloc guard ({profile} build, {MEASURED} requests each, tolerance {:.0} %):",
        tolerance * 100.0
    ));
    for s in SCENARIOS {
        let m = measured[s.name];
        let Some(b) = limits.get(s.name) else {
            failures.push(format!("{}: no budget for the `{profile}` profile", s.name));
            continue;
        };
        report(&format!(
            "  {:<18} {:>7.1} allocations/request (budget {:>5}), {:>8.0} bytes/request (budget {:>6})",
            s.name, m.allocations, b.allocations, m.bytes, b.bytes
        ));
        for (what, got, allowed) in [
            ("allocations", m.allocations, b.allocations),
            ("bytes", m.bytes, b.bytes),
        ] {
            if got > allowed * (1.0 + tolerance) {
                failures.push(format!(
                    "{}: {got:.1} {what} per request, budget {allowed} + {:.0} %",
                    s.name,
                    tolerance * 100.0
                ));
            } else if got < allowed * (1.0 - 2.0 * tolerance) {
                report(&format!(
                    "  note: {} uses far fewer {what} than budgeted ({got:.1} < {allowed}); \
                     lower the budget to keep the guard tight (AIHUB_GUARD_UPDATE=1)",
                    s.name
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "the /v1 hot path allocates more than its budget ({}):\n  {}\n\
         If the growth is intended, re-measure with \
         `AIHUB_GUARD_UPDATE=1 cargo test -p aihub-bench-guard -- --nocapture` and commit \
         bench/guard/budget.toml with the reason.",
        path.display(),
        failures.join("\n  ")
    );
}
