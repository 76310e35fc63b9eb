//! Leases of the shared counters: what is leased and what is not, that leased requests never
//! take more than Redis holds (across instances), that spend reaches Redis and leases go back,
//! and that renewals count once; and, without leases, that an admission whose reply timed out
//! holds nothing. Every test but the first needs `AIHUB_TEST_REDIS_URL`.

use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use aihub_core::config::RedisConfig;
use aihub_core::governance::{BudgetPolicy, BudgetRule, LimitRule, Period, RequestScopes};
use aihub_core::secret::Secret;
use aihub_core::{Currency, KeyId};
use futures_util::FutureExt;

use super::checks::{Cell, CellKind, ConcurrencyCheck, LedgerCheck, Origin, RateCheck};
use super::lease::{Leased, Leases};
use super::*;

/// Policies and past spend of one organization, from memory.
struct Fixed {
    policy: OrgPolicy,
    spent: i64,
    reads: AtomicUsize,
}

impl PolicySource for Fixed {
    fn org_policy(&self, _org: OrgId) -> BoxFuture<'_, Result<OrgPolicy, ServiceError>> {
        let p = self.policy.clone();
        async move { Ok(p) }.boxed()
    }

    fn spent_since(
        &self,
        _org: OrgId,
        _scope: ScopeType,
        _scope_id: Uuid,
        _since: DateTime<Utc>,
        _currency: Currency,
    ) -> BoxFuture<'_, Result<i64, ServiceError>> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let s = self.spent;
        async move { Ok(s) }.boxed()
    }

    fn tokens_since(
        &self,
        _org: OrgId,
        _since: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<i64, ServiceError>> {
        async { Ok(0) }.boxed()
    }
}

struct Org {
    scopes: RequestScopes,
    source: Arc<Fixed>,
    budget: Arc<BudgetRule>,
}

/// An organization with a key limited to `rpm`, `tpm` and `concurrency`, and a monthly budget
/// of `budget` micro-dollars on the key.
fn org(rpm: u64, tpm: u64, concurrency: u64, budget: i64) -> Org {
    let org = OrgId::new();
    let key = KeyId::new();
    let now = Utc::now();
    let rule = LimitRule {
        id: Uuid::now_v7(),
        org_id: org,
        scope: ScopeType::Key,
        scope_id: key.as_uuid(),
        model: None,
        rpm: Some(rpm),
        tpm: Some(tpm),
        concurrency: Some(concurrency),
        created_at: now,
        updated_at: now,
    };
    let b = BudgetRule {
        id: Uuid::now_v7(),
        org_id: org,
        scope: ScopeType::Key,
        scope_id: key.as_uuid(),
        name: None,
        amount_micros: budget,
        currency: Currency::USD,
        period: Period::Monthly,
        policy: BudgetPolicy::Block,
        throttle_rpm: None,
        thresholds: vec![50, 100],
        webhook_url: None,
        webhook_secret: None,
        alert_emails: Vec::new(),
        created_at: now,
        updated_at: now,
    };
    Org {
        scopes: RequestScopes {
            org,
            key,
            user: None,
            team: None,
        },
        source: Arc::new(Fixed {
            policy: OrgPolicy {
                plan: None,
                limits: vec![rule],
                budgets: vec![b.clone()],
            },
            spent: 0,
            reads: AtomicUsize::new(0),
        }),
        budget: Arc::new(b),
    }
}

fn redis_url() -> String {
    std::env::var("AIHUB_TEST_REDIS_URL").unwrap()
}

/// A governor on Redis under `prefix` (instances sharing a prefix share counters).
fn instance(o: &Org, url: &str, prefix: &str, leases: bool) -> Governor {
    let redis = RedisConfig {
        url: Some(Secret::new(url.to_owned())),
        timeout_ms: 2000,
        key_prefix: prefix.to_owned(),
        ..RedisConfig::default()
    };
    governor(o, &redis, leases)
}

fn governor(o: &Org, redis: &RedisConfig, leases: bool) -> Governor {
    let limits = LimitsConfig {
        leases,
        ..LimitsConfig::default()
    };
    Governor::new(o.source.clone(), &limits, redis).unwrap()
}

fn prefix() -> String {
    format!("aihub-test:{}:", Uuid::now_v7().simple())
}

fn demand(o: &Org, tokens: u64, cost: i64) -> Demand<'static> {
    Demand {
        scopes: o.scopes,
        model: "m",
        tokens_estimate: tokens,
        tokens_max: tokens,
        cost_max: Some((cost, Currency::USD)),
        now: Utc::now(),
    }
}

fn via(a: &Admission) -> Via {
    a.inner.as_ref().unwrap().limits_via
}

/// Admits until a request comes through the leases (the first ones take the Redis path and
/// ask for leases); returns how many took the Redis path.
async fn warm(g: &Governor, d: &Demand<'_>) -> usize {
    for n in 0..200 {
        let a = g.admit(Uuid::now_v7(), d).await.unwrap();
        let leased = via(&a) == Via::Leased;
        a.settle(0, 0);
        if leased {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no request was admitted from leases");
}

async fn budget_figures(g: &Governor, b: &BudgetRule) -> (i64, i64) {
    let s = g.budget_status(b).await.unwrap();
    (s.spent_micros, s.reserved_micros)
}

#[test]
fn only_limits_large_enough_to_share_are_leased() {
    let leases = Leases::default();
    let org = OrgId::new();
    let cell = |kind| Cell {
        id: Uuid::now_v7(),
        plan: false,
        kind,
    };
    let rate = |per_minute, cost| RateCheck {
        cell: cell(CellKind::Rpm),
        per_minute,
        cost,
        origin: Origin::Plan,
        per_model: false,
    };
    let conc = |limit| ConcurrencyCheck {
        cell: cell(CellKind::Concurrency),
        limit,
        origin: Origin::Plan,
        per_model: false,
    };
    let with = |rates, concurrency, ledgers| Checks {
        org,
        rates,
        concurrency,
        ledgers,
    };
    let now = Instant::now();
    let never = |c: &Checks| matches!(leases.try_admit(c, now), Leased::Never);
    // Nothing to check, a rate whose 64th covers fewer than 8 requests, a small concurrency
    // limit, a throttle budget: never leased.
    assert!(never(&with(vec![], vec![], vec![])));
    assert!(never(&with(vec![rate(511, 1)], vec![], vec![])));
    assert!(never(&with(vec![rate(64_000, 126)], vec![], vec![])));
    assert!(never(&with(vec![], vec![conc(127)], vec![])));
    let budget = |throttle| LedgerCheck {
        key: LedgerKey {
            id: Uuid::now_v7(),
            kind: LedgerKind::Budget,
            period_start_ms: 0,
        },
        limit: 1_000_000,
        amount: 10,
        period_start: Utc::now(),
        period_end: None,
        budget: None,
        currency: Some(Currency::USD),
        throttle,
    };
    assert!(never(&with(
        vec![],
        vec![],
        vec![budget(Some(rate(600, 1)))]
    )));
    // Large enough: the first request finds no lease and asks for one.
    let big = with(
        vec![rate(512, 1), rate(64_000, 125)],
        vec![conc(128)],
        vec![budget(None)],
    );
    assert!(matches!(leases.try_admit(&big, now), Leased::Miss));
    assert!(matches!(leases.try_admit(&big, now), Leased::Miss));
    assert!(!leases.is_empty());
}

#[cfg_attr(
    not(aihub_redis),
    ignore = "set AIHUB_TEST_REDIS_URL to run Redis tests"
)]
#[tokio::test]
async fn leased_requests_skip_redis_and_their_spend_reaches_it() {
    let o = org(64_000, 100_000_000, 1000, 100_000_000);
    let g = instance(&o, &redis_url(), &prefix(), true);
    let crossings = Arc::new(Mutex::new(Vec::new()));
    let seen = crossings.clone();
    g.set_alert_hook(Arc::new(move |c: BudgetCrossing| {
        seen.lock().unwrap().push(c.threshold_pct);
    }));
    let d = demand(&o, 100, 1000);
    let first = warm(&g, &d).await;
    assert!(first >= 1, "the first request cannot find a lease");
    // With leases in hand, requests are admitted here, ten at a time (the concurrency lease
    // holds 15 slots: a 64th of the limit); their headers come from the leases.
    for round in 0..5 {
        let mut held = Vec::new();
        for _ in 0..10 {
            let a = g.admit(Uuid::now_v7(), &d).await.unwrap();
            assert_eq!(via(&a), Via::Leased);
            let h = a.headers();
            let requests = h.requests.unwrap();
            assert_eq!(requests.limit, 64_000);
            assert!(requests.remaining > 60_000 && requests.remaining < 64_000);
            assert!(h.tokens.unwrap().remaining > 99_000_000);
            held.push(a);
        }
        if round == 0 {
            // The key's budget in Redis holds the lease: what the requests reserved and more.
            let (spent, reserved) = budget_figures(&g, &o.budget).await;
            assert_eq!(spent, 0);
            assert!(reserved >= 10 * 1000, "reserved {reserved}");
        }
        for a in held {
            a.settle(80, 700);
        }
    }
    // The next renewal carries the spend to Redis (within a few renewal periods).
    let mut spent = 0;
    for _ in 0..100 {
        tokio::time::sleep(lease::RENEW_EVERY).await;
        spent = budget_figures(&g, &o.budget).await.0;
        if spent == 50 * 700 {
            break;
        }
    }
    assert_eq!(spent, 50 * 700);
    // Given back on shutdown: nothing stays reserved, nothing is counted twice.
    g.release_leases(Duration::from_secs(5)).await;
    assert!(g.inner.leases.as_ref().unwrap().is_empty());
    assert_eq!(budget_figures(&g, &o.budget).await, (50 * 700, 0));
    assert!(crossings.lock().unwrap().is_empty());
    // The database was read when the ledger was first built (by the first request, and
    // perhaps by the first renewal at the same time), never again.
    let reads = o.source.reads.load(Ordering::Relaxed);
    assert!((1..=2).contains(&reads), "{reads} reads");

    // No concurrency slot is left held.
    let shared = g.inner.shared.as_ref().unwrap();
    let rule = &o.source.policy.limits[0];
    let slots = Cell {
        id: rule.id,
        plan: false,
        kind: CellKind::Concurrency,
    };
    assert!(shared.cell_members(o.scopes.org, &slots).await.is_empty());
}

#[cfg_attr(
    not(aihub_redis),
    ignore = "set AIHUB_TEST_REDIS_URL to run Redis tests"
)]
#[tokio::test]
async fn a_budget_shared_by_leasing_instances_is_spent_exactly_to_its_amount() {
    // 1,000 requests of 1,000 fit in the budget; two instances race for them.
    let o = org(10_000_000, 10_000_000_000, 10_000, 1_000_000);
    let p = prefix();
    let url = redis_url();
    let instances = [instance(&o, &url, &p, true), instance(&o, &url, &p, true)];
    let crossings = Arc::new(Mutex::new(Vec::new()));
    for g in &instances {
        let seen = crossings.clone();
        g.set_alert_hook(Arc::new(move |c: BudgetCrossing| {
            seen.lock().unwrap().push(c.threshold_pct);
        }));
    }
    let d = demand(&o, 10, 1000);
    let admitted = Arc::new(AtomicUsize::new(0));
    let leased = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for g in &instances {
        for _ in 0..4 {
            let (g, d, admitted, leased) = (g.clone(), d.clone(), admitted.clone(), leased.clone());
            tasks.push(tokio::spawn(async move {
                // Keep asking until refusals have lasted long enough for every lease of the
                // other instance to have gone back.
                let mut refused_since: Option<Instant> = None;
                loop {
                    match g.admit(Uuid::now_v7(), &d).await {
                        Ok(a) => {
                            refused_since = None;
                            admitted.fetch_add(1, Ordering::Relaxed);
                            if via(&a) == Via::Leased {
                                leased.fetch_add(1, Ordering::Relaxed);
                            }
                            tokio::task::yield_now().await;
                            a.settle(10, 1000);
                        }
                        Err(r) => {
                            assert_eq!(r.error.code, "budget_exceeded");
                            let since = *refused_since.get_or_insert_with(Instant::now);
                            if since.elapsed() > Duration::from_secs(4) {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    for g in &instances {
        g.release_leases(Duration::from_secs(5)).await;
    }
    assert_eq!(admitted.load(Ordering::Relaxed), 1000);
    // (Here requests come faster than leases are renewed, so many take the Redis path.)
    assert!(
        leased.load(Ordering::Relaxed) > 100,
        "only {} of 1000 requests were leased",
        leased.load(Ordering::Relaxed)
    );
    assert_eq!(
        budget_figures(&instances[0], &o.budget).await,
        (1_000_000, 0)
    );
    let mut seen = crossings.lock().unwrap().clone();
    seen.sort_unstable();
    // 50 % once (by a renewal or a settlement), 100 % at least once (the first refusal of
    // each instance, or the settlement that reached it).
    assert_eq!(seen.iter().filter(|&&p| p == 50).count(), 1, "{seen:?}");
    assert!(seen.contains(&100), "{seen:?}");
}

#[cfg_attr(
    not(aihub_redis),
    ignore = "set AIHUB_TEST_REDIS_URL to run Redis tests"
)]
#[tokio::test]
async fn a_rate_shared_by_leasing_instances_lets_through_no_more_than_its_limit() {
    // 1,280 requests per minute (a lease is 20); GCRA lets a minute's worth through at once.
    let o = org(1280, 100_000_000, 10_000, 1_000_000_000_000);
    let p = prefix();
    let url = redis_url();
    let instances = [instance(&o, &url, &p, true), instance(&o, &url, &p, true)];
    let d = demand(&o, 10, 1);
    let started = Instant::now();
    let admitted = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for g in &instances {
        let (g, d, admitted) = (g.clone(), d.clone(), admitted.clone());
        tasks.push(tokio::spawn(async move {
            let mut refusals = 0;
            while refusals < 30 {
                match g.admit(Uuid::now_v7(), &d).await {
                    Ok(a) => {
                        admitted.fetch_add(1, Ordering::Relaxed);
                        a.settle(10, 1);
                    }
                    Err(r) => {
                        assert_eq!(r.error.code, "rpm_limit_exceeded");
                        refusals += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let n = admitted.load(Ordering::Relaxed);
    // The burst, plus what the minute's rate adds back while the test runs.
    let refill = usize::try_from(elapsed.as_millis() * 1280 / 60_000).unwrap() + 1;
    assert!(n <= 1280 + refill, "{n} admitted in {elapsed:?}");
    // Leases held by the other instance may refuse a few requests early, never many.
    assert!(n >= 1280 - 2 * 20, "{n} admitted in {elapsed:?}");
    for g in &instances {
        g.release_leases(Duration::from_secs(5)).await;
        assert!(g.inner.leases.as_ref().unwrap().is_empty());
    }
}

fn renewal(seq: u64, ttl: Duration, ledgers: Vec<shared::LedgerRenewal>) -> shared::Renewal {
    shared::Renewal {
        seq,
        ttl,
        key_ttl_secs: 60,
        share: 16,
        rates: Vec::new(),
        concurrency: Vec::new(),
        ledgers,
    }
}

fn ledger_renewal(
    key: LedgerKey,
    old: Option<String>,
    used: i64,
    keep: i64,
) -> shared::LedgerRenewal {
    shared::LedgerRenewal {
        key,
        limit: 1_000_000,
        old,
        used,
        keep,
        want: 10_000,
        least: 800,
        base: Some(100_000),
        expire_at: None,
    }
}

#[cfg_attr(
    not(aihub_redis),
    ignore = "set AIHUB_TEST_REDIS_URL to run Redis tests"
)]
#[tokio::test]
async fn a_renewal_counts_once_and_a_dead_instances_lease_is_released() {
    let o = org(64_000, 100_000_000, 1000, 1_000_000);
    let g = instance(&o, &redis_url(), &prefix(), true);
    let s = g.inner.shared.as_ref().unwrap();
    let org = o.scopes.org;
    let key = LedgerKey {
        id: o.budget.id,
        kind: LedgerKind::Budget,
        period_start_ms: 0,
    };
    // A ledger Redis does not hold needs its spend first; nothing is done until then.
    let mut first = renewal(
        1,
        Duration::from_secs(60),
        vec![ledger_renewal(key, None, 0, 0)],
    );
    first.ledgers[0].base = None;
    assert_eq!(
        s.renew(org, &first).await.unwrap(),
        shared::Renewed::NeedBase(vec![0])
    );
    // With it: 10,000 granted (less than a sixteenth of the 900,000 headroom).
    first.ledgers[0].base = Some(100_000);
    let granted = shared::Renewed::Granted {
        rates: vec![],
        concurrency: vec![],
        ledgers: vec![(10_000, 100_000, 100_000)],
    };
    assert_eq!(s.renew(org, &first).await.unwrap(), granted);
    // Carrying 4,000 of spend, keeping 1,000 in flight: the old lease is freed, the new one
    // holds the 1,000 and a new share.
    let second = renewal(
        2,
        Duration::from_secs(60),
        vec![ledger_renewal(
            key,
            Some(s.lease_member(1, 10_000)),
            4000,
            1000,
        )],
    );
    let again = shared::Renewed::Granted {
        rates: vec![],
        concurrency: vec![],
        ledgers: vec![(11_000, 100_000, 104_000)],
    };
    assert_eq!(s.renew(org, &second).await.unwrap(), again);
    // Sent again (a lost reply): the same answer, and the spend is not counted twice.
    assert_eq!(s.renew(org, &second).await.unwrap(), again);
    let (spent, reserved, members, _) = s.ledger_state(org, &key).await;
    assert_eq!((spent, reserved), (104_000, 11_000));
    assert_eq!(members, vec![s.lease_member(2, 11_000)]);
    // Near the end of the budget, a share smaller than `least` is not granted: only what is in
    // flight stays reserved.
    let mut tight = ledger_renewal(key, Some(s.lease_member(2, 11_000)), 880_000, 500);
    tight.want = 1_000_000;
    tight.least = 1000;
    let third = renewal(3, Duration::ZERO, vec![tight]);
    let last = shared::Renewed::Granted {
        rates: vec![],
        concurrency: vec![],
        ledgers: vec![(500, 104_000, 984_000)],
    };
    assert_eq!(s.renew(org, &third).await.unwrap(), last);
    // That lease had no time to live (its instance "died"): the next admission releases it.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let c = Checks {
        org,
        rates: vec![],
        concurrency: vec![],
        ledgers: vec![LedgerCheck {
            key,
            limit: 1_000_000,
            amount: 16_000,
            period_start: Utc::now(),
            period_end: None,
            budget: None,
            currency: Some(Currency::USD),
            throttle: None,
        }],
    };
    assert!(matches!(
        s.admit(Uuid::now_v7(), &c, &[None], 60).await.unwrap(),
        local::Outcome::Admitted(_)
    ));
    let (spent, reserved, members, _) = s.ledger_state(org, &key).await;
    assert_eq!((spent, reserved, members.len()), (984_000, 16_000, 1));
}

#[cfg_attr(
    not(aihub_redis),
    ignore = "set AIHUB_TEST_REDIS_URL to run Redis tests"
)]
#[tokio::test]
async fn a_failed_renewal_is_sent_again_and_the_leases_cover_only_what_they_hold() {
    let o = org(64_000, 100_000_000, 1000, 100_000_000);
    let g = instance(&o, &redis_url(), &prefix(), true);
    let s = g.inner.shared.as_ref().unwrap();
    let key = LedgerKey {
        id: o.budget.id,
        kind: LedgerKind::Budget,
        period_start_ms: Period::Monthly.start(Utc::now()).timestamp_millis(),
    };
    let d = demand(&o, 100, 1000);
    warm(&g, &d).await;
    let leased = || async {
        let a = g.admit(Uuid::now_v7(), &d).await.unwrap();
        assert_eq!(via(&a), Via::Leased);
        a.settle(80, 700);
    };
    for _ in 0..5 {
        leased().await;
    }
    // Redis now fails every script on the ledger: renewals fail and are kept for a retry.
    s.break_ledger(o.scopes.org, &key).await;
    tokio::time::sleep(lease::RENEW_EVERY * 3).await;
    // Meanwhile the leases still admit what they have free (which the renewal in flight keeps
    // reserved: at most the 256 requests the ledger lease wants), and no more.
    let mut admitted = 0;
    loop {
        let a = g.admit(Uuid::now_v7(), &d).await;
        match a {
            Ok(a) if via(&a) == Via::Leased => {
                admitted += 1;
                a.settle(80, 700);
            }
            // The Redis path fails on the broken ledger (budgets fail closed).
            Err(r) => {
                assert_eq!(r.error.code, "budget_unavailable");
                break;
            }
            Ok(a) => panic!("admitted through {:?}", via(&a)),
        }
        assert!(admitted <= 256, "the leases admitted more than they hold");
    }
    assert!(admitted >= 1, "nothing was admitted from the leases");
    // Repaired (the ledger is rebuilt from the database, which knows of no spend here): the
    // retried renewal carries what was settled before, the next ones the rest.
    s.evict_ledger(o.scopes.org, &key).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    g.release_leases(Duration::from_secs(5)).await;
    let total = i64::from(5 + admitted) * 700;
    assert_eq!(budget_figures(&g, &o.budget).await, (total, 0));
}

#[cfg_attr(
    not(aihub_redis),
    ignore = "set AIHUB_TEST_REDIS_URL to run Redis tests"
)]
#[tokio::test]
async fn a_busy_instances_budget_lease_grows_with_its_pace() {
    // Tens of requests a millisecond (a pause every 200), far more than 256 requests (the
    // least a ledger lease is sized for) between two renewals: sized to the pace, the lease
    // lasts, and requests stop going to Redis one by one (sized to 256 requests, about 6 % of
    // them did, and the loop ran half as fast).
    let o = org(100_000_000, 100_000_000_000, 100_000, 100_000_000_000);
    let g = instance(&o, &redis_url(), &prefix(), true);
    let d = demand(&o, 100, 1000);
    warm(&g, &d).await;
    let start = Instant::now();
    let (mut late, mut late_in_redis) = (0, 0);
    let mut n = 0;
    while start.elapsed() < Duration::from_millis(1200) {
        let a = g.admit(Uuid::now_v7(), &d).await.unwrap();
        if start.elapsed() > Duration::from_millis(600) {
            late += 1;
            late_in_redis += usize::from(via(&a) != Via::Leased);
        }
        a.settle(100, 1000);
        n += 1;
        if n % 200 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert!(late > 2000, "only {late} requests in the last 600 ms");
    assert!(
        late_in_redis * 100 <= late,
        "{late_in_redis} of the last {late} requests went to Redis one by one"
    );
    g.release_leases(Duration::from_secs(5)).await;
    assert_eq!(
        budget_figures(&g, &o.budget).await,
        (i64::from(n) * 1000, 0)
    );
}

/// Keeps Redis busy (a script spinning on its clock) for ARGV[1] milliseconds.
const BUSY: &str = r"
local t = redis.call('TIME')
local stop = t[1] * 1000000 + t[2] + ARGV[1] * 1000
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= stop
return 1
";

#[cfg_attr(
    not(aihub_redis),
    ignore = "set AIHUB_TEST_REDIS_URL to run Redis tests"
)]
#[tokio::test]
async fn an_admission_whose_reply_timed_out_holds_nothing() {
    // 60 requests a minute: one unit is a second of the cell's clock, so Redis's rate cell
    // shows whether an admission ran.
    let o = org(60, 100_000_000, 1000, 100_000_000);
    let url = redis_url();
    let redis = RedisConfig {
        url: Some(Secret::new(url.clone())),
        timeout_ms: 20,
        retry_after_failure_ms: 50,
        key_prefix: prefix(),
    };
    let g = governor(&o, &redis, false);
    let shared = g.inner.shared.clone().unwrap();
    let d = demand(&o, 100, 1000);
    g.admit(Uuid::now_v7(), &d).await.unwrap().settle(100, 1000);
    let deadline = Instant::now() + Duration::from_secs(2);
    while budget_figures(&g, &o.budget).await != (1000, 0) {
        assert!(
            Instant::now() < deadline,
            "the first request was not settled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Redis is busy for 300 ms: the admission is sent, its reply does not come within 20 ms,
    // and the default fail mode refuses the request. Redis runs it once it is free.
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let busy = tokio::spawn(async move {
        redis::cmd("EVAL")
            .arg(BUSY)
            .arg(0)
            .arg(300)
            .query_async::<i64>(&mut conn)
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let refused = g.admit(Uuid::now_v7(), &d).await.unwrap_err();
    assert_eq!(refused.error.code, "budget_unavailable");
    assert_eq!(busy.await.unwrap().unwrap(), 1);

    // It ran: two requests' units are taken (about two seconds of the cell's clock ahead).
    let rule = &o.source.policy.limits[0];
    let cell = |kind| Cell {
        id: rule.id,
        plan: false,
        kind,
    };
    let (tat, now) = shared.cell_tat(o.scopes.org, &cell(CellKind::Rpm)).await;
    let ahead = tat.unwrap() - now;
    assert!(ahead > 1_200_000, "the admission did not run: {ahead} us");
    // And it is released: nothing reserved or spent for it, no concurrency slot held.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let figures = budget_figures(&g, &o.budget).await;
        let slots = shared
            .cell_members(o.scopes.org, &cell(CellKind::Concurrency))
            .await;
        if figures == (1000, 0) && slots.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still held: {figures:?} (spent, reserved), slots {slots:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
