//! The counter stores, exercised directly: the in-process one always, and the Redis one (with
//! the same scenarios, so the two behave alike) when `AIHUB_TEST_REDIS_URL` is set.

use std::collections::HashMap;

use aihub_core::config::RedisConfig;
use aihub_core::governance::ScopeType;
use chrono::TimeZone;

use super::checks::{
    Cell, CellKind, Checks, ConcurrencyCheck, LedgerCheck, LedgerKey, LedgerKind, Origin,
    RateCheck, Refusal,
};
use super::local::{Local, Outcome, Parts};
use super::shared::{Settlement, Shared};
use super::*;

const ALL: Parts = Parts {
    limits: true,
    ledgers: true,
};

enum Counters {
    Local(Local),
    Shared(Shared),
}

impl Counters {
    /// Admits, loading missing ledgers from `bases` like the governor does from the database.
    async fn admit(&self, req: Uuid, c: &Checks, bases: &HashMap<LedgerKey, i64>) -> Outcome {
        let now = chrono::Utc::now().timestamp_micros();
        match self {
            Self::Local(l) => loop {
                match l.admit(c, ALL, now) {
                    Outcome::NeedBase(missing) => {
                        for i in missing {
                            let k = c.ledgers[i].key;
                            l.seed(k, bases.get(&k).copied().unwrap_or(0), None);
                        }
                    }
                    other => return other,
                }
            },
            Self::Shared(s) => {
                let mut b = vec![None; c.ledgers.len()];
                loop {
                    match s.admit(req, c, &b, 60).await.unwrap() {
                        Outcome::NeedBase(missing) => {
                            for i in missing {
                                b[i] = Some(bases.get(&c.ledgers[i].key).copied().unwrap_or(0));
                            }
                        }
                        other => return other,
                    }
                }
            }
        }
    }

    async fn settle(&self, req: Uuid, c: &Checks, tokens: u64, cost: i64) -> Vec<Settled> {
        match self {
            Self::Local(l) => l.settle(c, ALL, tokens, cost, chrono::Utc::now().timestamp_micros()),
            Self::Shared(s) => s.settle(req, c, used(tokens, cost)).await.unwrap(),
        }
    }
}

fn checks(rates: Vec<RateCheck>, conc: Vec<ConcurrencyCheck>, ledgers: Vec<LedgerCheck>) -> Checks {
    Checks {
        org: OrgId::new(),
        rates,
        concurrency: conc,
        ledgers,
    }
}

fn rate(kind: CellKind, per_minute: u64, cost: u64) -> RateCheck {
    RateCheck {
        cell: Cell {
            id: Uuid::now_v7(),
            plan: false,
            kind,
        },
        per_minute,
        cost,
        origin: Origin::Scope(ScopeType::Key),
        per_model: false,
    }
}

fn ledger(limit: i64, amount: i64, throttle: Option<RateCheck>) -> LedgerCheck {
    let start = chrono::Utc.timestamp_millis_opt(0).unwrap();
    LedgerCheck {
        key: LedgerKey {
            id: Uuid::now_v7(),
            kind: LedgerKind::Budget,
            period_start_ms: 0,
        },
        limit,
        amount,
        period_start: start,
        period_end: None,
        budget: None,
        currency: Some(aihub_core::Currency::USD),
        throttle,
    }
}

/// A settlement of what a request used.
fn used(tokens: u64, cost: i64) -> Settlement {
    Settlement::Used { tokens, cost }
}

/// What settling a request with one ledger reports: its spend moved from `before` to `after`.
fn spend_moved(before: i64, after: i64) -> Vec<Settled> {
    vec![Settled {
        index: 0,
        before,
        after,
    }]
}

async fn each_store(f: impl AsyncFn(Counters)) {
    f(Counters::Local(Local::default())).await;
    if let Ok(url) = std::env::var("AIHUB_TEST_REDIS_URL") {
        f(Counters::Shared(redis_store(&url))).await;
    }
}

/// The Redis store at `url`, under a key prefix of its own.
fn redis_store(url: &str) -> Shared {
    let config = RedisConfig {
        timeout_ms: 2000,
        key_prefix: format!("aihub-test:{}:", Uuid::now_v7().simple()),
        ..RedisConfig::default()
    };
    Shared::new(url, &config).unwrap()
}

#[tokio::test]
async fn requests_per_minute_allow_exactly_the_limit_and_report_headers() {
    each_store(async |s| {
        let c = checks(vec![rate(CellKind::Rpm, 5, 1)], vec![], vec![]);
        for i in 0..5u64 {
            let Outcome::Admitted(h) = s.admit(Uuid::now_v7(), &c, &HashMap::new()).await else {
                panic!("request {i} refused");
            };
            let w = h.requests.unwrap();
            assert_eq!((w.limit, w.remaining), (5, 4 - i));
            assert!(h.tokens.is_none());
        }
        match s.admit(Uuid::now_v7(), &c, &HashMap::new()).await {
            Outcome::Refused(
                Refusal::Rate {
                    kind,
                    retry_after_us: Some(us),
                    ..
                },
                h,
            ) => {
                assert_eq!(kind, CellKind::Rpm);
                assert!(us > 11_000_000 && us <= 12_000_000, "{us}");
                assert_eq!(h.requests.unwrap().remaining, 0);
            }
            other => panic!("{other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn tokens_per_minute_are_corrected_after_the_call() {
    each_store(async |s| {
        let c = checks(vec![rate(CellKind::Tpm, 1000, 600)], vec![], vec![]);
        let r = Uuid::now_v7();
        assert!(matches!(
            s.admit(r, &c, &HashMap::new()).await,
            Outcome::Admitted(_)
        ));
        // 600 charged, 400 left: a second estimate of 600 does not fit...
        assert!(matches!(
            s.admit(Uuid::now_v7(), &c, &HashMap::new()).await,
            Outcome::Refused(..)
        ));
        // ...until the first is corrected to the 100 it really used.
        s.settle(r, &c, 100, 0).await;
        let Outcome::Admitted(h) = s.admit(Uuid::now_v7(), &c, &HashMap::new()).await else {
            panic!("refused after the correction");
        };
        let left = h.tokens.unwrap().remaining;
        assert!((299..=301).contains(&left), "{left}");
        // A request larger than the whole limit can never pass.
        let big = Checks {
            rates: vec![RateCheck {
                cost: 1001,
                ..c.rates[0].clone()
            }],
            ..c.clone()
        };
        assert!(matches!(
            s.admit(Uuid::now_v7(), &big, &HashMap::new()).await,
            Outcome::Refused(
                Refusal::Rate {
                    retry_after_us: None,
                    ..
                },
                _
            )
        ));
    })
    .await;
}

#[tokio::test]
async fn concurrency_slots_are_taken_and_freed() {
    each_store(async |s| {
        let cell = Cell {
            id: Uuid::now_v7(),
            plan: true,
            kind: CellKind::Concurrency,
        };
        let c = checks(
            vec![],
            vec![ConcurrencyCheck {
                cell,
                limit: 2,
                origin: Origin::Plan,
                per_model: false,
            }],
            vec![],
        );
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert!(matches!(
            s.admit(a, &c, &HashMap::new()).await,
            Outcome::Admitted(_)
        ));
        assert!(matches!(
            s.admit(b, &c, &HashMap::new()).await,
            Outcome::Admitted(_)
        ));
        assert!(matches!(
            s.admit(Uuid::now_v7(), &c, &HashMap::new()).await,
            Outcome::Refused(Refusal::Concurrency { limit: 2, .. }, _)
        ));
        s.settle(a, &c, 0, 0).await;
        assert!(matches!(
            s.admit(Uuid::now_v7(), &c, &HashMap::new()).await,
            Outcome::Admitted(_)
        ));
        if let Counters::Local(l) = &s {
            assert_eq!(l.running(&cell), 2);
        }
    })
    .await;
}

#[tokio::test]
async fn budgets_reserve_the_maximum_and_settle_the_actual_cost() {
    each_store(async |s| {
        let l = ledger(1000, 300, None);
        let bases = HashMap::from([(l.key, 100)]);
        let c = checks(vec![], vec![], vec![l]);
        let (a, b, d) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        // 100 spent before: room for three reservations of 300.
        assert!(matches!(s.admit(a, &c, &bases).await, Outcome::Admitted(_)));
        assert!(matches!(s.admit(b, &c, &bases).await, Outcome::Admitted(_)));
        assert!(matches!(s.admit(d, &c, &bases).await, Outcome::Admitted(_)));
        assert!(matches!(
            s.admit(Uuid::now_v7(), &c, &bases).await,
            Outcome::Refused(
                Refusal::Ledger {
                    index: 0,
                    spent: 100
                },
                _
            )
        ));
        // Settling at 50 frees 250; settling twice changes nothing in Redis (idempotent).
        assert_eq!(s.settle(a, &c, 0, 50).await, spend_moved(100, 150));
        if matches!(s, Counters::Shared(_)) {
            assert!(s.settle(a, &c, 0, 50).await.is_empty());
        }
        // A failed request releases all it held.
        s.settle(b, &c, 0, 0).await;
        // 150 spent + 300 reserved: one more fits (750), a second does not (1050).
        assert!(matches!(
            s.admit(Uuid::now_v7(), &c, &bases).await,
            Outcome::Admitted(_)
        ));
        assert!(matches!(
            s.admit(Uuid::now_v7(), &c, &bases).await,
            Outcome::Refused(..)
        ));
    })
    .await;
}

#[tokio::test]
async fn a_spent_throttle_budget_lets_requests_through_at_its_rate() {
    each_store(async |s| {
        let l = ledger(100, 50, Some(rate(CellKind::Throttle, 2, 1)));
        let bases = HashMap::from([(l.key, 100)]);
        let c = checks(vec![], vec![], vec![l]);
        assert!(matches!(
            s.admit(Uuid::now_v7(), &c, &bases).await,
            Outcome::Admitted(_)
        ));
        assert!(matches!(
            s.admit(Uuid::now_v7(), &c, &bases).await,
            Outcome::Admitted(_)
        ));
        assert!(matches!(
            s.admit(Uuid::now_v7(), &c, &bases).await,
            Outcome::Refused(Refusal::Ledger { .. }, _)
        ));
    })
    .await;
}

#[tokio::test]
async fn a_refusal_takes_nothing() {
    each_store(async |s| {
        let rpm = rate(CellKind::Rpm, 10, 1);
        let l = ledger(100, 60, None);
        let bases = HashMap::from([(l.key, 0)]);
        let c = checks(vec![rpm], vec![], vec![l]);
        assert!(matches!(s.admit(Uuid::now_v7(), &c, &bases).await, Outcome::Admitted(h) if h.requests.unwrap().remaining == 9));
        // The budget refuses the second request: its rate cell must not have advanced.
        assert!(matches!(s.admit(Uuid::now_v7(), &c, &bases).await, Outcome::Refused(Refusal::Ledger { .. }, h) if h.requests.unwrap().remaining == 8));
        let only_rate = Checks { ledgers: vec![], ..c.clone() };
        assert!(matches!(s.admit(Uuid::now_v7(), &only_rate, &bases).await, Outcome::Admitted(h) if h.requests.unwrap().remaining == 8));
    })
    .await;
}

#[test]
fn thresholds_round_up() {
    assert_eq!(threshold_amount(1000, 80), 800);
    assert_eq!(threshold_amount(999, 80), 800);
    assert_eq!(threshold_amount(5, 100), 5);
    assert_eq!(threshold_amount(i64::MAX, 1000), i64::MAX);
}

#[cfg_attr(
    not(aihub_redis),
    ignore = "set AIHUB_TEST_REDIS_URL to run Redis tests"
)]
#[tokio::test]
async fn redis_is_reachable_for_the_shared_scenarios() {
    // The scenarios above run against Redis only when it is configured; this test makes the
    // configuration visible in the test report.
    let s = redis_store(&std::env::var("AIHUB_TEST_REDIS_URL").unwrap());
    let c = checks(vec![rate(CellKind::Rpm, 1, 1)], vec![], vec![]);
    assert!(matches!(
        s.admit(Uuid::now_v7(), &c, &[], 60).await.unwrap(),
        Outcome::Admitted(_)
    ));
}

#[test]
fn settlement_markers_outlive_every_retry() {
    // 8 attempts of up to 50 ms, with waits of 0.1, 0.2, … 6.4 s between them.
    assert_eq!(
        settle_retry_window(Duration::from_millis(50)),
        Duration::from_millis(8 * 50 + 12_700)
    );
    assert_eq!(
        shared::marker_ttl(Duration::from_millis(50)),
        Duration::from_secs(60)
    );
    assert_eq!(
        shared::marker_ttl(Duration::from_secs(10)),
        Duration::from_millis(2 * (8 * 10_000 + 12_700))
    );
}

/// Admits `id` in Redis, which must accept it.
async fn admitted(s: &Shared, id: Uuid, c: &Checks, bases: &[Option<i64>], ttl_secs: u64) {
    assert!(matches!(
        s.admit(id, c, bases, ttl_secs).await.unwrap(),
        Outcome::Admitted(_)
    ));
}

#[cfg_attr(
    not(aihub_redis),
    ignore = "set AIHUB_TEST_REDIS_URL to run Redis tests"
)]
#[tokio::test]
async fn redis_releases_what_a_dead_instance_held_and_settles_once() {
    let s = redis_store(&std::env::var("AIHUB_TEST_REDIS_URL").unwrap());
    let l = ledger(1000, 500, None);
    let key = l.key;
    let slot = ConcurrencyCheck {
        cell: Cell {
            id: Uuid::now_v7(),
            plan: false,
            kind: CellKind::Concurrency,
        },
        limit: 1,
        origin: Origin::Scope(ScopeType::Key),
        per_model: false,
    };
    let c = checks(
        vec![
            rate(CellKind::Rpm, 1000, 1),
            rate(CellKind::Tpm, 1_000_000, 100),
        ],
        vec![slot],
        vec![l],
    );
    let bases = [Some(100)];
    let member = |id: Uuid| format!("{}:500", id.simple());
    let fields = ["reserved", "spent", "sweep_at"].map(String::from).to_vec();
    // An instance admits a request and dies: its reservation's deadline is already due.
    let dead = Uuid::now_v7();
    admitted(&s, dead, &c, &bases, 0).await;
    assert_eq!(
        s.ledger_state(c.org, &key).await,
        (100, 500, vec![member(dead)], fields.clone())
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    // The next request gets the slot and the budget back: 100 + 500 + 500 would be over 1000.
    let live = Uuid::now_v7();
    admitted(&s, live, &c, &bases, 60).await;
    assert_eq!(
        s.ledger_state(c.org, &key).await,
        (100, 500, vec![member(live)], fields.clone())
    );
    // Settled at 200: the reservation becomes the cost, once however often it is sent.
    assert_eq!(
        s.settle(live, &c, used(60, 200)).await.unwrap(),
        spend_moved(100, 300)
    );
    assert!(s.settle(live, &c, used(60, 200)).await.unwrap().is_empty());
    assert_eq!(
        s.ledger_state(c.org, &key).await,
        (300, 0, vec![], fields.clone())
    );
    // Its marker lives long enough for every retry, and not a day.
    let ttl = s.marker_pttl(c.org, live).await;
    assert!(ttl > 50_000 && ttl <= 60_000, "marker PTTL {ttl} ms");
    // The dead instance's request, settled late, adds its cost without a reservation to free.
    assert_eq!(
        s.settle(dead, &c, used(60, 100)).await.unwrap(),
        spend_moved(300, 400)
    );
    assert_eq!(
        s.ledger_state(c.org, &key).await,
        (400, 0, vec![], fields.clone())
    );

    // A due reservation written the way the previous version did (amount in an `r:` field, no
    // `sweep_at`) is released by the next admission, field and all.
    let old = Uuid::now_v7();
    s.add_old_reservation(c.org, &key, old, 300).await;
    let next = Uuid::now_v7();
    admitted(&s, next, &c, &bases, 60).await;
    assert_eq!(
        s.ledger_state(c.org, &key).await,
        (400, 500, vec![member(next)], fields.clone())
    );

    // A ledger rebuilt from the database (its hash evicted) drops the deadlines it did not
    // reserve: settling a request of the lost ledger frees nothing of the new one.
    s.evict_ledger(c.org, &key).await;
    let fresh = Uuid::now_v7();
    // (`next` still holds the one concurrency slot.)
    let budget_only = Checks {
        concurrency: vec![],
        ..c.clone()
    };
    admitted(&s, fresh, &budget_only, &bases, 60).await;
    assert_eq!(
        s.ledger_state(c.org, &key).await,
        (100, 500, vec![member(fresh)], fields.clone())
    );
    assert_eq!(
        s.settle(next, &c, used(60, 50)).await.unwrap(),
        spend_moved(100, 150)
    );
    assert_eq!(
        s.ledger_state(c.org, &key).await,
        (150, 500, vec![member(fresh)], fields)
    );
}
