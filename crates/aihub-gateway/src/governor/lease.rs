//! Leases: this instance's own share of the limits and budgets kept in Redis, so that in a
//! cluster most requests are admitted and settled in this process, without a Redis round trip.
//!
//! A lease is taken from the shared counters by the renewal script ([`super::shared`]), so the
//! shares of all instances together never exceed a limit or a budget:
//! - a rate cell's lease is a number of units (requests or tokens) taken from the cell ahead of
//!   use; unused units go back when the instance falls idle;
//! - a concurrency cell's lease is a number of slots, held as members of the cell's set;
//! - a ledger's lease is a reservation like a request's, with a deadline: if the instance dies,
//!   it is released like any reservation. Spend settled against it reaches Redis with the next
//!   renewal (every [`RENEW_EVERY`] while there is traffic), which also frees the old lease and
//!   reserves the next one: what is in flight and what the lease has free (it goes on admitting
//!   from that while the renewal is on its way), topped up to its size (256 requests of the
//!   largest cost seen, or more at a busy instance: what its requests asked for in two
//!   renewal periods at the pace seen since the last renewal) by at most
//!   `1/LEDGER_SHARE` of the headroom left, or by nothing once that is less than
//!   [`LEDGER_LEAST_REQUESTS`] requests (then it keeps only what is in flight).
//!
//! So a lease never lets more through than the shared counters hold; what it changes is that
//! near a limit, units another instance holds may refuse a request this one would have taken.
//! Leases are therefore small (a sixty-fourth of a rate, a sixteenth of a budget's headroom),
//! a budget close to its end stops being leased (requests go to Redis one by one again, exact),
//! and limits too small to share this way are never leased. A request is admitted from leases
//! only if every one of its checks is; otherwise it takes the one-by-one path.
//!
//! A renewal that fails is retried as it was (the script keeps its answer, so nothing counts
//! twice); meanwhile the instance admits from its leases only what they already cover. A
//! renewal that cannot reach Redis for [`GIVE_UP`] is dropped, its leases with it: they expire
//! in Redis at their deadline, and spend not yet carried there stays in the database (the
//! system of record) and is read again when the ledger is next rebuilt.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aihub_core::OrgId;
use rustc_hash::FxHashMap;
use tokio::sync::Notify;

use super::checks::{Cell, CellKind, Checks, LedgerCheck, LedgerKey};
use super::shared::{ConcurrencyRenewal, LedgerRenewal, RateRenewal, Renewal, Renewed, Shared};
use super::{RateHeaders, Settled};

/// A lease not renewed for this long (its instance died) is released by Redis.
pub(super) const LEASE_TTL: Duration = Duration::from_secs(10);
/// A lease is used here only until this long before its deadline in Redis could pass.
const LEASE_MARGIN: Duration = Duration::from_secs(2);
/// How often leases with traffic are renewed (and their spend carried to Redis).
pub(super) const RENEW_EVERY: Duration = Duration::from_millis(100);
/// The shortest time between two renewals of one organization asked for by requests.
const RENEW_GAP: Duration = Duration::from_millis(10);
/// Leases unused for this long are given back.
const IDLE: Duration = Duration::from_secs(2);
/// A renewal that has not reached Redis for this long is dropped with its leases.
const GIVE_UP: Duration = Duration::from_secs(30);
/// A rate lease takes `1/RATE_SHARE` of the per-minute limit; a limit whose share covers fewer
/// than `RATE_LEAST_REQUESTS` requests is not leased.
const RATE_SHARE: u64 = 64;
const RATE_LEAST_REQUESTS: u64 = 8;
/// Concurrency limits below this are not leased; above it, an instance holds up to
/// `limit / CONCURRENCY_SHARE` (at most [`CONCURRENCY_MAX_SPARE`]) slots beyond those in use.
const CONCURRENCY_LEAST_LIMIT: u64 = 128;
const CONCURRENCY_SHARE: u64 = 64;
const CONCURRENCY_MAX_SPARE: u64 = 64;
/// A ledger lease takes at most `1/LEDGER_SHARE` of the headroom, covers up to
/// `LEDGER_WANT_REQUESTS` requests of the largest cost seen or what requests asked for in
/// [`LEDGER_COVER`] at the pace seen since the last renewal (whichever is more), and is not
/// taken if it would cover fewer than `LEDGER_LEAST_REQUESTS`.
const LEDGER_SHARE: i64 = 16;
const LEDGER_WANT_REQUESTS: i64 = 256;
const LEDGER_LEAST_REQUESTS: i64 = 8;
/// Two renewal periods: a lease sized to the pace lasts until the renewal after next, so busy
/// instances do not run dry between renewals and send requests to Redis one by one.
const LEDGER_COVER: Duration = RENEW_EVERY.saturating_mul(2);

#[derive(Debug)]
struct RateLease {
    per_minute: u64,
    /// Units taken from the cell and not used yet (negative: tokens used beyond the estimates).
    units: i64,
    /// Units left in the shared cell after the last renewal (for the response headers).
    left: u64,
    /// Given back: no admissions until the renewal returns.
    frozen: bool,
    last_use: Instant,
}

#[derive(Debug)]
struct ConcurrencyLease {
    limit: u64,
    slots: u64,
    inflight: u64,
    frozen: bool,
    last_use: Instant,
}

#[derive(Debug)]
struct LedgerLease {
    check: LedgerCheck,
    /// The lease in Redis: its renewal's sequence number and amount.
    held: Option<(u64, i64)>,
    total: i64,
    /// Reserved by admitted requests not settled yet.
    inflight: i64,
    /// Settled and not yet carried to Redis.
    used: i64,
    /// The size wanted: the larger of `base` and the pace of `demand`.
    want: i64,
    /// `LEDGER_WANT_REQUESTS` requests of the largest cost seen.
    base: i64,
    /// Asked for by requests (admitted here or not) since the last renewal was built.
    demand: i64,
    least: i64,
    /// While a renewal is in flight: what may still be admitted.
    flight: Option<i64>,
    /// The last renewal found too little headroom to lease.
    tight: bool,
    last_use: Instant,
}

impl LedgerLease {
    fn free(&self) -> i64 {
        self.total - self.inflight - self.used
    }
}

#[derive(Debug)]
struct Pending {
    renewal: Renewal,
    since: Instant,
    sending: bool,
    /// Gives every lease back (shutdown): they are dropped once it is done.
    release: bool,
}

#[derive(Debug, Default)]
struct OrgLeases {
    rates: FxHashMap<Cell, RateLease>,
    concurrency: FxHashMap<Cell, ConcurrencyLease>,
    ledgers: FxHashMap<LedgerKey, LedgerLease>,
    /// A renewal sent and not acknowledged yet.
    pending: Option<Pending>,
    /// A request found a lease missing or short.
    wanted: bool,
    renewed_at: Option<Instant>,
    /// Until when the ledger and concurrency leases are surely still held in Redis (the last
    /// acknowledged renewal was sent no earlier than [`LEASE_TTL`] before their deadline).
    valid_until: Option<Instant>,
}

impl OrgLeases {
    fn is_empty(&self) -> bool {
        self.rates.is_empty() && self.concurrency.is_empty() && self.ledgers.is_empty()
    }
}

/// What a request found in the leases.
#[derive(Debug)]
pub(super) enum Leased {
    /// Admitted from the leases (everything it needs is taken).
    Admitted(RateHeaders),
    /// Not now (a lease is missing or short; a renewal was asked for).
    Miss,
    /// Some check of the request is never leased.
    Never,
}

/// This instance's leases, by organization. Keyed by ids the server minted.
#[derive(Debug, Default)]
pub(super) struct Leases {
    orgs: Mutex<FxHashMap<OrgId, OrgLeases>>,
    seq: AtomicU64,
    pub(super) kick: Notify,
    pub(super) started: AtomicBool,
}

fn rate_want(per_minute: u64) -> u64 {
    per_minute / RATE_SHARE
}

fn spare_slots(limit: u64) -> u64 {
    (limit / CONCURRENCY_SHARE).min(CONCURRENCY_MAX_SPARE)
}

/// Whether every check of `c` can be leased.
fn leasable(c: &Checks) -> bool {
    !(c.rates.is_empty() && c.concurrency.is_empty() && c.ledgers.is_empty())
        && c.rates
            .iter()
            .all(|r| rate_want(r.per_minute) >= RATE_LEAST_REQUESTS * r.cost.max(1))
        && c.concurrency
            .iter()
            .all(|k| k.limit >= CONCURRENCY_LEAST_LIMIT)
        && c.ledgers.iter().all(|l| l.throttle.is_none())
}

fn headers_of(c: &Checks, org: &OrgLeases) -> RateHeaders {
    let mut h = RateHeaders::default();
    for r in &c.rates {
        let Some(l) = org.rates.get(&r.cell) else {
            continue;
        };
        let remaining = (l.left + u64::try_from(l.units).unwrap_or(0)).min(l.per_minute);
        let t = (super::gcra::MINUTE_US / i64::try_from(l.per_minute.max(1)).unwrap_or(1)).max(1);
        let missing = i64::try_from(l.per_minute - remaining).unwrap_or(i64::MAX);
        let w = super::checks::window(r.per_minute, remaining, missing.saturating_mul(t));
        match r.cell.kind {
            CellKind::Tpm => h.merge_tokens(w),
            _ => h.merge_requests(w),
        }
    }
    h
}

impl Leases {
    fn lock(&self) -> std::sync::MutexGuard<'_, FxHashMap<OrgId, OrgLeases>> {
        self.orgs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits `c` from this instance's leases if they cover all of it; otherwise notes what
    /// is missing for the next renewal.
    pub(super) fn try_admit(&self, c: &Checks, now: Instant) -> Leased {
        if !leasable(c) {
            return Leased::Never;
        }
        let mut orgs = self.lock();
        let org = orgs.entry(c.org).or_default();
        let valid = org.valid_until.is_some_and(|v| now < v)
            || (c.concurrency.is_empty() && c.ledgers.is_empty());
        let rates_ok = c.rates.iter().all(|r| {
            org.rates
                .get(&r.cell)
                .is_some_and(|l| !l.frozen && l.units >= i64::try_from(r.cost).unwrap_or(i64::MAX))
        });
        let conc_ok = c.concurrency.iter().all(|k| {
            org.concurrency
                .get(&k.cell)
                .is_some_and(|l| !l.frozen && l.inflight < l.slots)
        });
        let ledgers_ok = c.ledgers.iter().all(|x| {
            org.ledgers
                .get(&x.key)
                .is_some_and(|l| l.free() >= x.amount && l.flight.is_none_or(|d| x.amount <= d))
        });
        if valid && rates_ok && conc_ok && ledgers_ok {
            for r in &c.rates {
                if let Some(l) = org.rates.get_mut(&r.cell) {
                    l.units = l
                        .units
                        .saturating_sub(i64::try_from(r.cost).unwrap_or(i64::MAX));
                    l.per_minute = r.per_minute;
                    l.last_use = now;
                }
            }
            for k in &c.concurrency {
                if let Some(l) = org.concurrency.get_mut(&k.cell) {
                    l.inflight += 1;
                    l.limit = k.limit;
                    l.last_use = now;
                }
            }
            for x in &c.ledgers {
                if let Some(l) = org.ledgers.get_mut(&x.key) {
                    l.inflight = l.inflight.saturating_add(x.amount);
                    l.demand = l.demand.saturating_add(x.amount);
                    if let Some(d) = &mut l.flight {
                        *d = d.saturating_sub(x.amount);
                    }
                    l.check.limit = x.limit;
                    l.last_use = now;
                }
            }
            return Leased::Admitted(headers_of(c, org));
        }
        for r in &c.rates {
            org.rates.entry(r.cell).or_insert_with(|| RateLease {
                per_minute: r.per_minute,
                units: 0,
                left: r.per_minute,
                frozen: false,
                last_use: now,
            });
        }
        for k in &c.concurrency {
            org.concurrency
                .entry(k.cell)
                .or_insert_with(|| ConcurrencyLease {
                    limit: k.limit,
                    slots: 0,
                    inflight: 0,
                    frozen: false,
                    last_use: now,
                });
        }
        for x in &c.ledgers {
            let l = org.ledgers.entry(x.key).or_insert_with(|| LedgerLease {
                check: x.clone(),
                held: None,
                total: 0,
                inflight: 0,
                used: 0,
                want: 0,
                base: 0,
                demand: 0,
                least: 0,
                flight: None,
                tight: false,
                last_use: now,
            });
            l.check.limit = x.limit;
            l.demand = l.demand.saturating_add(x.amount);
            l.base = l.base.max(x.amount.saturating_mul(LEDGER_WANT_REQUESTS));
            l.least = l.least.max(x.amount.saturating_mul(LEDGER_LEAST_REQUESTS));
            l.last_use = now;
        }
        org.wanted = true;
        Leased::Miss
    }

    /// Ends a request admitted from the leases: token estimates are corrected, slots and
    /// reservations freed, the actual spend kept for the next renewal.
    pub(super) fn settle(&self, c: &Checks, tokens: u64, cost: i64) {
        let mut orgs = self.lock();
        let Some(org) = orgs.get_mut(&c.org) else {
            return;
        };
        for r in c.rates.iter().filter(|r| r.cell.kind == CellKind::Tpm) {
            if let Some(l) = org.rates.get_mut(&r.cell) {
                let estimate = i64::try_from(r.cost).unwrap_or(i64::MAX);
                let used = i64::try_from(tokens).unwrap_or(i64::MAX);
                l.units = l.units.saturating_add(estimate.saturating_sub(used));
            }
        }
        for k in &c.concurrency {
            if let Some(l) = org.concurrency.get_mut(&k.cell) {
                l.inflight = l.inflight.saturating_sub(1);
            }
        }
        for x in &c.ledgers {
            if let Some(l) = org.ledgers.get_mut(&x.key) {
                l.inflight = (l.inflight - x.amount).max(0);
                let actual = if x.counts_tokens() {
                    i64::try_from(tokens).unwrap_or(i64::MAX)
                } else {
                    cost
                };
                l.used = l.used.saturating_add(actual);
            }
        }
    }

    /// The renewals due now, one per organization (with `release`, every lease is given back).
    /// Their leases are marked as in flight until [`Leases::apply`] or [`Leases::failed`].
    pub(super) fn take_due(
        &self,
        shared: &Shared,
        now: Instant,
        release: bool,
        key_ttl_secs: u64,
    ) -> Vec<(OrgId, Renewal)> {
        let mut out = Vec::new();
        let mut orgs = self.lock();
        orgs.retain(|id, org| {
            if let Some(p) = &mut org.pending {
                if p.sending {
                    return true;
                }
                if now.duration_since(p.since) > GIVE_UP {
                    tracing::error!(org = %id, "lease renewal abandoned; the leases expire in Redis");
                    return false;
                }
                p.sending = true;
                out.push((*id, p.renewal.clone()));
                return true;
            }
            if org.is_empty() {
                return false;
            }
            if !release && !org_due(org, now) {
                return true;
            }
            let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
            let renewal = build(org, shared, seq, now, release, key_ttl_secs);
            org.wanted = false;
            org.renewed_at = Some(now);
            org.pending = Some(Pending {
                renewal: renewal.clone(),
                since: now,
                sending: true,
                release,
            });
            out.push((*id, renewal));
            true
        });
        out
    }

    /// A renewal failed: it is sent again, as it was, on the next round.
    pub(super) fn failed(&self, org: OrgId, renewal: Renewal) {
        let mut orgs = self.lock();
        if let Some(p) = orgs.get_mut(&org).and_then(|o| o.pending.as_mut()) {
            p.renewal = renewal;
            p.sending = false;
        }
    }

    /// A renewal was done: the leases take what it granted. Returns the ledgers whose spend
    /// moved (for budget alerts).
    pub(super) fn apply(
        &self,
        org_id: OrgId,
        r: &Renewal,
        granted: &Renewed,
        now: Instant,
    ) -> Vec<(LedgerCheck, Settled)> {
        let Renewed::Granted {
            rates,
            concurrency,
            ledgers,
        } = granted
        else {
            return Vec::new();
        };
        let mut moved = Vec::new();
        let mut orgs = self.lock();
        let Some(org) = orgs.get_mut(&org_id) else {
            return moved;
        };
        let (release, since) = org
            .pending
            .take()
            .map_or((false, now), |p| (p.release, p.since));
        org.valid_until = Some(since + LEASE_TTL - LEASE_MARGIN);
        for (x, &(units, left)) in r.rates.iter().zip(rates) {
            if let Some(l) = org.rates.get_mut(&x.cell) {
                l.units = l.units - x.give + i64::try_from(units).unwrap_or(0);
                l.left = left;
                l.frozen = false;
            }
        }
        for (x, &slots) in r.concurrency.iter().zip(concurrency) {
            if let Some(l) = org.concurrency.get_mut(&x.cell) {
                l.slots = slots;
                l.frozen = false;
            }
        }
        for (x, &(total, before, after)) in r.ledgers.iter().zip(ledgers) {
            if let Some(l) = org.ledgers.get_mut(&x.key) {
                l.total = total;
                l.held = (total > 0).then_some((r.seq, total));
                l.used -= x.used;
                l.flight = None;
                l.tight = x.want > 0 && total - x.keep < x.least.max(1);
                if after != before {
                    moved.push((
                        l.check.clone(),
                        Settled {
                            index: 0,
                            before,
                            after,
                        },
                    ));
                }
            }
        }
        let idle = |last: Instant| release || now.duration_since(last) >= IDLE;
        org.rates.retain(|_, l| l.units != 0 || !idle(l.last_use));
        org.concurrency
            .retain(|_, l| l.slots != 0 || l.inflight != 0 || !idle(l.last_use));
        org.ledgers
            .retain(|_, l| l.total != 0 || l.inflight != 0 || l.used != 0 || !idle(l.last_use));
        if org.is_empty() {
            orgs.remove(&org_id);
        }
        moved
    }

    /// Whether any lease or renewal is held.
    pub(super) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

fn org_due(org: &OrgLeases, now: Instant) -> bool {
    let since = org
        .renewed_at
        .map_or(Duration::MAX, |t| now.duration_since(t));
    if org.wanted && since >= RENEW_GAP {
        return true;
    }
    if since < RENEW_EVERY {
        return false;
    }
    let idle = |last: Instant| now.duration_since(last) >= IDLE;
    let stale = since >= LEASE_TTL / 4;
    org.rates.values().any(|l| {
        l.units < 0
            || (!idle(l.last_use)
                && u64::try_from(l.units).unwrap_or(0) < rate_want(l.per_minute) / 2)
            || (l.units != 0 && idle(l.last_use))
    }) || org.concurrency.values().any(|l| {
        (!idle(l.last_use) && l.slots < l.inflight + spare_slots(l.limit) / 2)
            || (l.slots > l.inflight && idle(l.last_use))
            || (l.slots != 0 && stale)
    }) || org.ledgers.values().any(|l| {
        l.used != 0
            || (!idle(l.last_use) && !l.tight && l.free() < l.want / 2)
            || (l.total != 0 && (idle(l.last_use) || stale))
    })
}

/// The renewal of one organization's leases, marking them as in flight.
fn build(
    org: &mut OrgLeases,
    shared: &Shared,
    seq: u64,
    now: Instant,
    release: bool,
    key_ttl_secs: u64,
) -> Renewal {
    let idle = |last: Instant| release || now.duration_since(last) >= IDLE;
    // The time the demand since the last renewal was asked for in.
    let period = org
        .renewed_at
        .map_or(RENEW_EVERY, |t| now.duration_since(t))
        .max(RENEW_GAP);
    let mut r = Renewal {
        seq,
        ttl: LEASE_TTL,
        key_ttl_secs,
        share: LEDGER_SHARE,
        rates: Vec::new(),
        concurrency: Vec::new(),
        ledgers: Vec::new(),
    };
    for (cell, l) in &mut org.rates {
        let (give, want) = if idle(l.last_use) {
            l.frozen = true;
            (l.units, 0)
        } else {
            let want = rate_want(l.per_minute);
            (
                l.units.min(0),
                want.saturating_sub(u64::try_from(l.units).unwrap_or(0)),
            )
        };
        r.rates.push(RateRenewal {
            cell: *cell,
            per_minute: l.per_minute,
            give,
            want,
        });
    }
    for (cell, l) in &mut org.concurrency {
        let (keep, want) = if idle(l.last_use) {
            l.frozen = true;
            (l.inflight, l.inflight)
        } else {
            (l.slots.max(l.inflight), l.inflight + spare_slots(l.limit))
        };
        r.concurrency.push(ConcurrencyRenewal {
            cell: *cell,
            limit: l.limit,
            old: l.slots,
            keep,
            want,
        });
    }
    for (key, l) in &mut org.ledgers {
        // While the renewal is in flight, the lease goes on admitting from what it has free,
        // which the renewal keeps reserved; it asks for the rest of what it wants. Idle, or
        // near the end of the ledger, it keeps only what is in flight.
        let flight = if idle(l.last_use) || l.tight {
            0
        } else {
            l.free().max(0)
        };
        l.flight = Some(flight);
        l.want = l.base.max(paced(l.demand, period));
        l.demand = 0;
        let want = if idle(l.last_use) {
            0
        } else {
            (l.want - flight).max(0)
        };
        r.ledgers.push(LedgerRenewal {
            key: *key,
            limit: l.check.limit,
            old: l.held.map(|(seq, amount)| shared.lease_member(seq, amount)),
            used: l.used,
            keep: l.inflight + flight,
            want,
            least: l.least.min(want),
            base: None,
            expire_at: super::expiry_ms(&l.check),
        });
    }
    r
}

/// What `demand`, asked for in `period`, comes to in [`LEDGER_COVER`] at the same pace.
fn paced(demand: i64, period: Duration) -> i64 {
    let cover = i128::try_from(LEDGER_COVER.as_micros()).unwrap_or(i128::MAX);
    let period = i128::try_from(period.as_micros())
        .unwrap_or(i128::MAX)
        .max(1);
    i64::try_from(i128::from(demand) * cover / period).unwrap_or(i64::MAX)
}

/// The ledger checks of a renewal, to load missing spend with.
pub(super) fn ledger_check(leases: &Leases, org: OrgId, key: &LedgerKey) -> Option<LedgerCheck> {
    leases
        .lock()
        .get(&org)
        .and_then(|o| o.ledgers.get(key))
        .map(|l| l.check.clone())
}
