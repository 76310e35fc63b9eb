//! Counters shared by every instance, in Redis. One Lua script checks and takes all of a
//! request's limits and reservations atomically, in one round trip (`ADMIT`); another settles
//! it (`SETTLE`), at most once per request id (a marker key per request, kept for twice the time
//! a settlement may be retried); a third renews an instance's leases of one organization
//! (`LEASE`, see [`super::lease`]). The arithmetic is the same as in [`super::gcra`] and
//! [`super::local`]; the clock is Redis's own (`TIME`), so instances with skewed clocks still
//! share one timeline.
//!
//! Redis's own CPU is what limits a cluster: each `redis.call` inside a script costs about as
//! much as the work it does, so the scripts read and write with as few calls as they can (one
//! `MGET` for the rate cells, one `HMGET` and one `HSET` per ledger).
//!
//! Keys of one request all carry the organization's id as a hash tag (`{…}`), so they live in
//! one slot. A budget's ledger is a hash (`spent`, `reserved`, `sweep_at`) plus a sorted set of
//! reservation deadlines whose members are `<request id>:<amount>`: a reservation whose
//! instance died is released once its deadline passes, and the settlement, which knows the
//! amount it reserved, frees it only if its member is still there. `sweep_at` is never later
//! than the earliest deadline, so admissions look for expired reservations only once it has
//! passed. (Reservations made before amounts travelled in the member have an `r:<request id>`
//! field with the amount; a sweep still reads it.) Missing ledgers are rebuilt from the
//! database (the system of record), which the script asks for by returning their indices.
//!
//! Every call is bounded by `redis.timeout_ms`; after a failure Redis is left alone for
//! `redis.retry_after_failure_ms`, so an unreachable or frozen Redis costs requests nothing
//! beyond the fail mode configured in `[limits]`.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use aihub_core::OrgId;
use aihub_core::config::RedisConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use uuid::Uuid;

use super::checks::{CellKind, Checks, LedgerKey, Refusal};
use super::local::Outcome;
use super::{RateHeaders, Settled};

/// How a request admitted in Redis ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// It ran and used this much: tokens (per-minute token cells and token quotas are corrected
    /// to them) and cost in micro-units.
    Used { tokens: u64, cost: i64 },
    /// Its admission's reply never arrived, so whether Redis ran it is unknown: free the
    /// reservations and the concurrency slot it may hold, charge nothing. Harmless if it never
    /// ran (each is freed only while its member is there); its rate units stay taken.
    Release,
}

impl SharedError {
    /// Whether the script may have run although no reply came (sent, then timed out or cut).
    #[must_use]
    pub fn maybe_ran(&self) -> bool {
        matches!(self, Self::Timeout(_) | Self::Redis(_))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("redis did not answer within {0} ms")]
    Timeout(u64),
    #[error("redis is marked down after a recent failure")]
    Down,
    #[error("redis: {0}")]
    Redis(String),
    #[error("past spend: {0}")]
    Base(String),
}

/// What the admission and lease scripts share: the time, and the release of a ledger's
/// reservations (requests' or leases') whose deadline passed.
const PRELUDE: &str = r"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local now_ms = math.floor(now / 1000)
-- `sweep_at` of a ledger without reservations: later than any deadline (2^53 - 1 ms)
local NEVER = 9007199254740991

-- The reply asking for the spend of the ledgers Redis does not hold (their 0-based indices):
-- nothing has been written.
local function need_bases(missing)
  local r = {2}
  for _, i in ipairs(missing) do r[#r + 1] = i end
  return r
end

-- Releases the reservations of ledger `h` whose deadline (in `z`) passed, and returns the
-- ledger's `reserved` and `sweep_at` after it. `sweep_at` is never later than the earliest
-- deadline, so before it there is nothing to release and nothing to read.
local function sweep(h, z, reserved, sweep_at)
  if sweep_at and sweep_at > now_ms then return reserved, sweep_at end
  local expired = redis.call('ZRANGEBYSCORE', z, '-inf', now_ms)
  for _, m in ipairs(expired) do
    local amt = tonumber(string.match(m, ':(%d+)$'))
    if not amt then
      -- a reservation made before amounts travelled in the member: the amount is a field
      amt = tonumber(redis.call('HGET', h, 'r:' .. m))
      redis.call('HDEL', h, 'r:' .. m)
    end
    if amt then reserved = reserved - amt end
  end
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now_ms)
  end
  local first = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
  sweep_at = tonumber(first[2]) or NEVER
  redis.call('HSET', h, 'reserved', reserved, 'sweep_at', sweep_at)
  return reserved, sweep_at
end
";

const ADMIT: &str = r"
local req = ARGV[1]
local ttl_ms = tonumber(ARGV[2])
local a = 3
local k = 1

local function gcra(limit, tat, cost)
  local t = math.max(math.floor(60000000 / limit), 1)
  local tol = t * limit
  if tat == nil or tat < now then tat = now end
  local new_tat = tat + t * cost
  local function rem(x)
    local free = tol - (x - now)
    if free < 0 then return 0 end
    return math.floor(free / t)
  end
  if new_tat - now <= tol then
    return true, new_tat, rem(new_tat), new_tat - now, -1
  end
  local ra = -2
  if cost <= limit then ra = new_tat - now - tol end
  return false, tat, rem(tat), tat - now, ra
end

local out = {}
local refusal = {0, 0, 0}
local sets = {}

-- rate limits: their cells are the first keys, read in one call
local nrates = tonumber(ARGV[a]); a = a + 1
local tats = {}
if nrates > 0 then
  tats = redis.call('MGET', unpack(KEYS, 1, nrates))
end
for i = 1, nrates do
  local limit = tonumber(ARGV[a]); local cost = tonumber(ARGV[a + 1]); a = a + 2
  local key = KEYS[k]; k = k + 1
  local tat = tonumber(tats[i])
  local ok, new_tat, remaining, reset, ra = gcra(limit, tat, cost)
  out[#out + 1] = remaining
  out[#out + 1] = reset
  if ok then
    sets[#sets + 1] = {key, new_tat}
  elseif refusal[1] == 0 or (refusal[3] >= 0 and (ra < 0 or ra > refusal[3])) then
    -- keep the most binding refusal: one that can never pass, else the longest wait
    refusal = {1, i - 1, ra}
  end
end

-- concurrency
local nconc = tonumber(ARGV[a]); a = a + 1
local conc_keys = {}
for i = 1, nconc do
  local limit = tonumber(ARGV[a]); a = a + 1
  local key = KEYS[k]; k = k + 1
  conc_keys[#conc_keys + 1] = key
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms)
  if refusal[1] == 0 and redis.call('ZCARD', key) >= limit then
    refusal = {2, i - 1, 0}
  end
end

-- budgets and quotas
local nled = tonumber(ARGV[a]); a = a + 1
local ledgers = {}
local missing = {}
for i = 1, nled do
  local limit = tonumber(ARGV[a]); local amount_s = ARGV[a + 1]; local amount = tonumber(amount_s)
  local base = ARGV[a + 2]; local expire_at = ARGV[a + 3]; local throttle = tonumber(ARGV[a + 4])
  a = a + 5
  local h = KEYS[k]; local z = KEYS[k + 1]; local tk = KEYS[k + 2]; k = k + 3
  -- a ledger is created with both fields: no `spent`, no ledger
  local held = redis.call('HMGET', h, 'spent', 'reserved', 'sweep_at')
  local spent, reserved, sweep_at = tonumber(held[1]), tonumber(held[2]) or 0, tonumber(held[3])
  if not spent then
    if base == '' then
      missing[#missing + 1] = i - 1
    else
      redis.call('HSET', h, 'spent', base, 'reserved', 0)
      if expire_at ~= '' then
        redis.call('PEXPIREAT', h, expire_at)
      end
      -- deadlines left from a ledger that is gone would free what this one never reserved
      redis.call('DEL', z)
      spent, reserved, sweep_at = tonumber(base), 0, nil
    end
  end
  -- the reservation's deadline member carries its amount (the argument's own digits)
  local member = req .. ':' .. amount_s
  ledgers[#ledgers + 1] = {h, z, tk, limit, amount, throttle, expire_at, spent, reserved, sweep_at, member}
end
if #missing > 0 then return need_bases(missing) end
for i, l in ipairs(ledgers) do
  -- release reservations whose instance never settled them
  l[9], l[10] = sweep(l[1], l[2], l[9], l[10])
  if refusal[1] == 0 and l[5] > 0 then
    local spent, reserved = l[8], l[9]
    if spent + reserved + l[5] > l[4] then
      local passed = false
      if l[6] > 0 then
        local tat = tonumber(redis.call('GET', l[3]))
        local ok, new_tat = gcra(l[6], tat, 1)
        if ok then
          sets[#sets + 1] = {l[3], new_tat}
          passed = true
        end
      end
      if not passed then refusal = {3, i - 1, spent} end
    end
  end
end

if refusal[1] ~= 0 then
  local r = {0, refusal[1], refusal[2], refusal[3]}
  for _, v in ipairs(out) do r[#r + 1] = v end
  return r
end
for _, s in ipairs(sets) do
  redis.call('SET', s[1], s[2], 'PX', math.floor((s[2] - now) / 1000) + 1000)
end
for _, key in ipairs(conc_keys) do
  redis.call('ZADD', key, now_ms + ttl_ms, req)
  redis.call('PEXPIRE', key, ttl_ms)
end
for _, l in ipairs(ledgers) do
  if l[5] > 0 then
    local deadline = now_ms + ttl_ms
    if deadline < l[10] then
      redis.call('HSET', l[1], 'reserved', l[9] + l[5], 'sweep_at', deadline)
    else
      redis.call('HSET', l[1], 'reserved', l[9] + l[5])
    end
    redis.call('ZADD', l[2], deadline, l[11])
    if l[7] ~= '' then redis.call('PEXPIREAT', l[2], l[7]) end
  end
end
local r = {1, 0, 0, 0}
for _, v in ipairs(out) do r[#r + 1] = v end
return r
";

const SETTLE: &str = r"
local marker = KEYS[1]
if not redis.call('SET', marker, 1, 'NX', 'PX', ARGV[4]) then
  return {0}
end
local req = ARGV[1]
local tokens = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local a = 5
local k = 2
local nrates = tonumber(ARGV[a]); a = a + 1
local now, tats = 0, {}
if nrates > 0 then
  local now_parts = redis.call('TIME')
  now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
  tats = redis.call('MGET', unpack(KEYS, 2, nrates + 1))
end
for i = 1, nrates do
  local limit = tonumber(ARGV[a]); local charged = tonumber(ARGV[a + 1]); a = a + 2
  local key = KEYS[k]; k = k + 1
  local tat = tonumber(tats[i])
  if tat then
    local t = math.max(math.floor(60000000 / limit), 1)
    local new_tat = math.max(tat + (tokens - charged) * t, now)
    redis.call('SET', key, new_tat, 'PX', math.floor((new_tat - now) / 1000) + 1000)
  end
end
local nconc = tonumber(ARGV[a]); a = a + 1
for i = 1, nconc do
  redis.call('ZREM', KEYS[k], req); k = k + 1
end
local nled = tonumber(ARGV[a]); a = a + 1
local r = {1}
for i = 1, nled do
  local counts_tokens = tonumber(ARGV[a]); local reserved_arg = ARGV[a + 1]; a = a + 2
  local h = KEYS[k]; local z = KEYS[k + 1]; k = k + 2
  local actual = cost
  if counts_tokens == 1 then actual = tokens end
  local held = redis.call('HMGET', h, 'spent', 'reserved')
  local before = tonumber(held[1])
  if before then
    local after = before + actual
    local amt = tonumber(reserved_arg)
    -- the reservation is freed once, and only while its deadline member (`<request id>:<amount>`,
    -- built from the same argument digits as in the admission script) is there: a sweep may
    -- have released it already
    if amt > 0 and redis.call('ZREM', z, req .. ':' .. reserved_arg) == 1 then
      redis.call('HSET', h, 'spent', after, 'reserved', (tonumber(held[2]) or 0) - amt)
    else
      redis.call('HSET', h, 'spent', after)
    end
    r[#r + 1] = before
    r[#r + 1] = after
  else
    r[#r + 1] = -1
    r[#r + 1] = -1
  end
end
return r
";

/// Renews an instance's leases of one organization (see [`super::lease`]): for each rate cell,
/// gives back the units the instance did not use and takes up to `want` more; for each
/// concurrency cell, replaces the instance's slot members `<instance>:<n>`; for each ledger,
/// frees the old lease, adds the spend settled against it, and reserves the amounts still in
/// flight plus a new share of the headroom (at most `1/share` of it, nothing if less than
/// `least`) under the member `<instance>-<seq>:<amount>`, with a deadline like a request's.
/// Idempotent: the reply is kept under a marker per renewal, so a retry after a lost reply gets
/// the same answer and changes nothing.
const LEASE: &str = r"
local done = redis.call('GET', KEYS[1])
if done then
  local r = {}
  for v in string.gmatch(done, '-?%d+') do r[#r + 1] = tonumber(v) end
  return r
end
local inst = ARGV[1]
local seq = ARGV[2]
local deadline = now_ms + tonumber(ARGV[3])
local key_ttl_ms = tonumber(ARGV[4])
local marker_ttl_ms = ARGV[5]
local share = tonumber(ARGV[6])
local a = 7
local k = 2

local rates, concs, leds, missing = {}, {}, {}, {}
local nrates = tonumber(ARGV[a]); a = a + 1
for i = 1, nrates do
  rates[i] = {KEYS[k], tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])}
  k = k + 1; a = a + 3
end
local nconc = tonumber(ARGV[a]); a = a + 1
for i = 1, nconc do
  concs[i] = {KEYS[k], tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]),
              tonumber(ARGV[a + 3])}
  k = k + 1; a = a + 4
end
local nled = tonumber(ARGV[a]); a = a + 1
for i = 1, nled do
  local l = {h = KEYS[k], z = KEYS[k + 1], limit = tonumber(ARGV[a]), old = ARGV[a + 1],
             used = tonumber(ARGV[a + 2]), keep = tonumber(ARGV[a + 3]),
             want = tonumber(ARGV[a + 4]), least = tonumber(ARGV[a + 5]), base = ARGV[a + 6],
             expire_at = ARGV[a + 7]}
  k = k + 2; a = a + 8
  local held = redis.call('HMGET', l.h, 'spent', 'reserved', 'sweep_at')
  l.spent, l.reserved, l.sweep_at = tonumber(held[1]), tonumber(held[2]) or 0, tonumber(held[3])
  if not l.spent then
    if l.base == '' then missing[#missing + 1] = i - 1 else l.rebuild = true end
  end
  leds[i] = l
end
if #missing > 0 then return need_bases(missing) end

local r = {1}
for _, c in ipairs(rates) do
  local key, limit, give, want = c[1], c[2], c[3], c[4]
  local t = math.max(math.floor(60000000 / limit), 1)
  local tol = t * limit
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  -- units given back (negative: tokens used beyond the estimate) move the cell back
  tat = math.max(tat - give * t, now)
  local g = math.max(math.min(want, math.floor((tol - (tat - now)) / t)), 0)
  tat = tat + g * t
  redis.call('SET', key, tat, 'PX', math.floor((tat - now) / 1000) + 1000)
  r[#r + 1] = g
  r[#r + 1] = math.max(math.floor((tol - (tat - now)) / t), 0)
end
for _, c in ipairs(concs) do
  local key, limit, old_n, keep, want = c[1], c[2], c[3], c[4], c[5]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms)
  if old_n > 0 then
    local ms = {}
    for j = 1, old_n do ms[j] = inst .. ':' .. j end
    redis.call('ZREM', key, unpack(ms))
  end
  local g = math.max(math.min(want, limit - redis.call('ZCARD', key)), keep)
  if g > 0 then
    local args = {}
    for j = 1, g do
      args[#args + 1] = deadline
      args[#args + 1] = inst .. ':' .. j
    end
    redis.call('ZADD', key, unpack(args))
    redis.call('PEXPIRE', key, key_ttl_ms)
  end
  r[#r + 1] = g
end
for _, l in ipairs(leds) do
  local spent, reserved, sweep_at = l.spent, l.reserved, l.sweep_at
  if l.rebuild then
    redis.call('HSET', l.h, 'spent', l.base, 'reserved', 0)
    if l.expire_at ~= '' then redis.call('PEXPIREAT', l.h, l.expire_at) end
    redis.call('DEL', l.z)
    spent, reserved, sweep_at = tonumber(l.base), 0, nil
  end
  reserved, sweep_at = sweep(l.h, l.z, reserved, sweep_at)
  -- the old lease is freed once, and only if a sweep did not release it already
  if l.old ~= '' and redis.call('ZREM', l.z, l.old) == 1 then
    reserved = reserved - tonumber(string.match(l.old, ':(%d+)$'))
  end
  local before = spent
  spent = spent + l.used
  local headroom = math.max(l.limit - spent - reserved - l.keep, 0)
  local g = math.min(l.want, math.floor(headroom / share))
  if g < l.least then g = 0 end
  local total = l.keep + g
  if total > 0 then
    reserved = reserved + total
    redis.call('ZADD', l.z, deadline, inst .. '-' .. seq .. ':' .. string.format('%d', total))
    if deadline < sweep_at then sweep_at = deadline end
    if l.expire_at ~= '' then redis.call('PEXPIREAT', l.z, l.expire_at) end
  end
  redis.call('HSET', l.h, 'spent', spent, 'reserved', reserved, 'sweep_at', sweep_at)
  r[#r + 1] = total
  r[#r + 1] = before
  r[#r + 1] = spent
end
local kept = {}
for i, v in ipairs(r) do kept[i] = string.format('%d', v) end
redis.call('SET', KEYS[1], table.concat(kept, ','), 'PX', marker_ttl_ms)
return r
";

/// The shortest wait for a lease renewal's answer (else 20 times `redis.timeout_ms`).
const BACKGROUND_TIMEOUT_MIN: Duration = Duration::from_secs(1);

/// The shortest time a settlement marker (`s:<request id>`, one small key per request) is kept.
const MARKER_TTL_MIN: Duration = Duration::from_secs(60);

/// How long Redis keeps the marker of a settled request: twice the longest a settlement can be
/// retried, and at least [`MARKER_TTL_MIN`] (60 s with the default 50 ms timeout). A retry
/// finds the marker and counts nothing twice; markers do not pile up (at 2,000 requests/s,
/// about 120,000 keys).
pub(super) fn marker_ttl(timeout: Duration) -> Duration {
    (super::settle_retry_window(timeout) * 2).max(MARKER_TTL_MIN)
}

#[derive(Clone)]
pub struct Shared {
    conn: ConnectionManager,
    /// Lease renewals: off the request path, on a connection of their own with a longer
    /// timeout ([`BACKGROUND_TIMEOUT_MIN`]), and never marking Redis down for requests.
    background: ConnectionManager,
    background_timeout: Duration,
    admit: Arc<redis::Script>,
    settle: Arc<redis::Script>,
    lease: Arc<redis::Script>,
    /// This process's name in lease members (new at every start).
    instance: Arc<str>,
    prefix: Arc<str>,
    timeout: Duration,
    /// How long Redis remembers that a request was settled, in ms (see [`marker_ttl`]).
    marker_ttl_ms: u64,
    cooldown_us: i64,
    epoch: Instant,
    /// Microseconds since `epoch` before which Redis is not tried (after a failure).
    down_until: Arc<AtomicI64>,
}

impl Shared {
    pub fn new(url: &str, config: &RedisConfig) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("invalid redis.url: {e}"))?;
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        let manager = |timeout| {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(200));
            ConnectionManager::new_lazy_with_config(client.clone(), config)
                .map_err(|e| format!("redis: {e}"))
        };
        let background_timeout = (timeout * 20).max(BACKGROUND_TIMEOUT_MIN);
        Ok(Self {
            conn: manager(timeout)?,
            background: manager(background_timeout)?,
            background_timeout,
            admit: Arc::new(redis::Script::new(&format!("{PRELUDE}{ADMIT}"))),
            settle: Arc::new(redis::Script::new(SETTLE)),
            lease: Arc::new(redis::Script::new(&format!("{PRELUDE}{LEASE}"))),
            instance: Uuid::now_v7().simple().to_string().into(),
            prefix: config.key_prefix.clone().into(),
            timeout,
            marker_ttl_ms: u64::try_from(marker_ttl(timeout).as_millis()).unwrap_or(u64::MAX),
            cooldown_us: i64::try_from(config.retry_after_failure_ms)
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000),
            epoch: Instant::now(),
            down_until: Arc::new(AtomicI64::new(0)),
        })
    }

    fn elapsed_us(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(i64::MAX)
    }

    /// Runs one background script invocation (a lease renewal): a slow answer is waited for,
    /// and a failure does not keep requests away from Redis.
    async fn run_background<T: redis::FromRedisValue>(
        &self,
        inv: redis::ScriptInvocation<'_>,
    ) -> Result<T, SharedError> {
        invoke(&self.background, inv, self.background_timeout).await
    }

    /// Runs one script invocation within the timeout, honouring and updating the cool-down.
    async fn run<T: redis::FromRedisValue>(
        &self,
        inv: redis::ScriptInvocation<'_>,
    ) -> Result<T, SharedError> {
        if self.elapsed_us() < self.down_until.load(Ordering::Acquire) {
            return Err(SharedError::Down);
        }
        let result = invoke(&self.conn, inv, self.timeout).await;
        if result.is_err() {
            self.down_until
                .store(self.elapsed_us() + self.cooldown_us, Ordering::Release);
        }
        result
    }

    fn org_prefix(&self, org: OrgId) -> String {
        format!("{}{{{}}}:", self.prefix, org.as_uuid().simple())
    }

    fn cell_key(p: &str, c: &super::checks::Cell) -> String {
        format!(
            "{p}c:{}:{}:{}",
            c.id.simple(),
            if c.plan { "p" } else { "s" },
            c.kind.tag()
        )
    }

    fn ledger_key(p: &str, l: &LedgerKey) -> String {
        format!(
            "{p}l:{}:{}:{}",
            l.id.simple(),
            l.kind.tag(),
            l.period_start_ms
        )
    }

    /// Checks and takes everything in `c` for `request_id`. `bases[i]` is the spend of ledger
    /// `i` read from the database, used only if Redis does not hold it.
    pub async fn admit(
        &self,
        request_id: Uuid,
        c: &Checks,
        bases: &[Option<i64>],
        reservation_ttl_secs: u64,
    ) -> Result<Outcome, SharedError> {
        let p = self.org_prefix(c.org);
        let mut inv = self.admit.prepare_invoke();
        inv.arg(request_id.simple().to_string())
            .arg(reservation_ttl_secs.saturating_mul(1000));
        inv.arg(c.rates.len());
        for r in &c.rates {
            inv.key(Self::cell_key(&p, &r.cell))
                .arg(r.per_minute.max(1))
                .arg(r.cost);
        }
        inv.arg(c.concurrency.len());
        for k in &c.concurrency {
            inv.key(Self::cell_key(&p, &k.cell)).arg(k.limit);
        }
        inv.arg(c.ledgers.len());
        for (i, l) in c.ledgers.iter().enumerate() {
            let h = Self::ledger_key(&p, &l.key);
            let mut z = h.clone();
            z.push_str(":rz");
            let throttle_key = match &l.throttle {
                Some(t) => Self::cell_key(&p, &t.cell),
                None => format!("{p}unused"),
            };
            inv.key(h).key(z).key(throttle_key);
            inv.arg(l.limit)
                .arg(l.amount)
                .arg(
                    bases
                        .get(i)
                        .copied()
                        .flatten()
                        .map_or(String::new(), |b| b.to_string()),
                )
                .arg(super::expiry_ms(l).map_or(String::new(), |e| e.to_string()))
                .arg(l.throttle.as_ref().map_or(0, |t| t.per_minute));
        }
        let reply: Vec<i64> = self.run(inv).await?;
        decode_admit(c, &reply)
    }

    /// Settles `request_id` (at most once, however often it is called).
    pub async fn settle(
        &self,
        request_id: Uuid,
        c: &Checks,
        settlement: Settlement,
    ) -> Result<Vec<Settled>, SharedError> {
        // A release leaves the rate cells alone: the units stay taken if the admission ran,
        // and nothing is given back that was never taken if it did not.
        let (tokens, cost, correct_tpm) = match settlement {
            Settlement::Used { tokens, cost } => (tokens, cost, true),
            Settlement::Release => (0, 0, false),
        };
        let p = self.org_prefix(c.org);
        let mut inv = self.settle.prepare_invoke();
        let mut marker = p.clone();
        let _ = write!(marker, "s:{}", request_id.simple());
        inv.key(marker)
            .arg(request_id.simple().to_string())
            .arg(tokens)
            .arg(cost)
            .arg(self.marker_ttl_ms);
        let tpm: Vec<_> = c
            .rates
            .iter()
            .filter(|r| correct_tpm && r.cell.kind == CellKind::Tpm)
            .collect();
        inv.arg(tpm.len());
        for r in tpm {
            inv.key(Self::cell_key(&p, &r.cell))
                .arg(r.per_minute.max(1))
                .arg(r.cost);
        }
        inv.arg(c.concurrency.len());
        for k in &c.concurrency {
            inv.key(Self::cell_key(&p, &k.cell));
        }
        inv.arg(c.ledgers.len());
        for l in &c.ledgers {
            let h = Self::ledger_key(&p, &l.key);
            let mut z = h.clone();
            z.push_str(":rz");
            inv.key(h)
                .key(z)
                .arg(i32::from(l.counts_tokens()))
                .arg(l.amount);
        }
        let reply: Vec<i64> = self.run(inv).await?;
        let mut out = Vec::new();
        if reply.first() == Some(&1) {
            for (index, pair) in reply.get(1..).unwrap_or_default().chunks(2).enumerate() {
                if let [before, after] = pair
                    && *before >= 0
                {
                    out.push(Settled {
                        index,
                        before: *before,
                        after: *after,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The deadline member of this instance's lease `seq` of `amount` on a ledger.
    pub fn lease_member(&self, seq: u64, amount: i64) -> String {
        format!("{}-{seq}:{amount}", self.instance)
    }

    /// Renews this instance's leases of one organization (idempotent per `seq`).
    pub async fn renew(&self, org: OrgId, r: &Renewal) -> Result<Renewed, SharedError> {
        let p = self.org_prefix(org);
        let mut inv = self.lease.prepare_invoke();
        inv.key(format!("{p}ls:{}-{}", self.instance, r.seq));
        inv.arg(&*self.instance)
            .arg(r.seq)
            .arg(u64::try_from(r.ttl.as_millis()).unwrap_or(u64::MAX))
            .arg(r.key_ttl_secs.saturating_mul(1000))
            .arg(self.marker_ttl_ms)
            .arg(r.share);
        inv.arg(r.rates.len());
        for x in &r.rates {
            inv.key(Self::cell_key(&p, &x.cell))
                .arg(x.per_minute.max(1))
                .arg(x.give)
                .arg(x.want);
        }
        inv.arg(r.concurrency.len());
        for x in &r.concurrency {
            inv.key(Self::cell_key(&p, &x.cell))
                .arg(x.limit)
                .arg(x.old)
                .arg(x.keep)
                .arg(x.want);
        }
        inv.arg(r.ledgers.len());
        for x in &r.ledgers {
            let h = Self::ledger_key(&p, &x.key);
            let mut z = h.clone();
            z.push_str(":rz");
            inv.key(h).key(z);
            inv.arg(x.limit)
                .arg(x.old.as_deref().unwrap_or(""))
                .arg(x.used)
                .arg(x.keep)
                .arg(x.want)
                .arg(x.least)
                .arg(x.base.map_or(String::new(), |b| b.to_string()))
                .arg(x.expire_at.map_or(String::new(), |e| e.to_string()));
        }
        let reply: Vec<i64> = self.run_background(inv).await?;
        decode_renewal(r, &reply)
    }

    /// A ledger's `(spent, reserved)`, if Redis holds it.
    pub async fn ledger(
        &self,
        org: OrgId,
        key: &LedgerKey,
    ) -> Result<Option<(i64, i64)>, SharedError> {
        if self.elapsed_us() < self.down_until.load(Ordering::Acquire) {
            return Err(SharedError::Down);
        }
        let h = Self::ledger_key(&self.org_prefix(org), key);
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(&h).arg("spent").arg("reserved");
        let cmd = cmd.query_async::<(Option<i64>, Option<i64>)>(&mut conn);
        match tokio::time::timeout(self.timeout, cmd).await {
            Ok(Ok((Some(spent), reserved))) => Ok(Some((spent, reserved.unwrap_or(0)))),
            Ok(Ok((None, _))) => Ok(None),
            Ok(Err(e)) => Err(SharedError::Redis(e.to_string())),
            Err(_) => Err(SharedError::Timeout(
                u64::try_from(self.timeout.as_millis()).unwrap_or(0),
            )),
        }
    }
}

/// One renewal of an instance's leases of an organization (see [`Shared::renew`]).
#[derive(Debug, Clone)]
pub struct Renewal {
    pub seq: u64,
    /// How long a lease lasts if it is not renewed (its instance died).
    pub ttl: Duration,
    /// Lifetime of a concurrency cell's key (the reservation TTL, as for requests).
    pub key_ttl_secs: u64,
    /// A ledger lease takes at most `1/share` of the ledger's headroom.
    pub share: i64,
    pub rates: Vec<RateRenewal>,
    pub concurrency: Vec<ConcurrencyRenewal>,
    pub ledgers: Vec<LedgerRenewal>,
}

#[derive(Debug, Clone)]
pub struct RateRenewal {
    pub cell: super::checks::Cell,
    pub per_minute: u64,
    /// Units given back (negative: used beyond what was taken).
    pub give: i64,
    pub want: u64,
}

#[derive(Debug, Clone)]
pub struct ConcurrencyRenewal {
    pub cell: super::checks::Cell,
    pub limit: u64,
    /// Slots the instance held until now.
    pub old: u64,
    /// Slots in use, kept whatever the limit.
    pub keep: u64,
    /// Slots wanted in all.
    pub want: u64,
}

#[derive(Debug, Clone)]
pub struct LedgerRenewal {
    pub key: LedgerKey,
    pub limit: i64,
    /// The member of the lease being replaced.
    pub old: Option<String>,
    /// Spend settled against the old lease since the last renewal.
    pub used: i64,
    /// Amounts reserved by requests still in flight, kept whatever the headroom.
    pub keep: i64,
    pub want: i64,
    pub least: i64,
    /// Spend read from the database, used only if Redis does not hold the ledger.
    pub base: Option<i64>,
    pub expire_at: Option<i64>,
}

/// What a renewal granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewed {
    /// Nothing was done: these ledgers (indices into `Renewal::ledgers`) need their spend.
    NeedBase(Vec<usize>),
    Granted {
        /// Per rate cell: units granted, and units left in the cell after it.
        rates: Vec<(u64, u64)>,
        /// Per concurrency cell: slots now held.
        concurrency: Vec<u64>,
        /// Per ledger: the new lease's amount (0: none), the spend before and after.
        ledgers: Vec<(i64, i64, i64)>,
    },
}

fn decode_renewal(r: &Renewal, reply: &[i64]) -> Result<Renewed, SharedError> {
    let bad = || SharedError::Redis("unexpected reply from the lease script".into());
    let to_u64 = |v: i64| u64::try_from(v).map_err(|_| bad());
    match reply {
        [2, missing @ ..] => Ok(Renewed::NeedBase(
            missing
                .iter()
                .map(|&i| usize::try_from(i).map_err(|_| bad()))
                .collect::<Result<_, _>>()?,
        )),
        [1, rest @ ..]
            if rest.len() == 2 * r.rates.len() + r.concurrency.len() + 3 * r.ledgers.len() =>
        {
            let (rates, rest) = rest.split_at(2 * r.rates.len());
            let (conc, leds) = rest.split_at(r.concurrency.len());
            Ok(Renewed::Granted {
                rates: rates
                    .chunks_exact(2)
                    .map(|c| match *c {
                        [granted, left] => Ok((to_u64(granted)?, to_u64(left)?)),
                        _ => Err(bad()),
                    })
                    .collect::<Result<_, SharedError>>()?,
                concurrency: conc.iter().map(|&c| to_u64(c)).collect::<Result<_, _>>()?,
                ledgers: leds
                    .chunks_exact(3)
                    .map(|c| match *c {
                        [total, before, after] => Ok((total, before, after)),
                        _ => Err(bad()),
                    })
                    .collect::<Result<_, SharedError>>()?,
            })
        }
        _ => Err(bad()),
    }
}

/// Runs one script invocation on `conn`, waiting at most `timeout`.
async fn invoke<T: redis::FromRedisValue>(
    conn: &ConnectionManager,
    inv: redis::ScriptInvocation<'_>,
    timeout: Duration,
) -> Result<T, SharedError> {
    let mut conn = conn.clone();
    match tokio::time::timeout(timeout, inv.invoke_async(&mut conn)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(SharedError::Redis(e.to_string())),
        Err(_) => Err(SharedError::Timeout(
            u64::try_from(timeout.as_millis()).unwrap_or(0),
        )),
    }
}

fn decode_admit(c: &Checks, reply: &[i64]) -> Result<Outcome, SharedError> {
    let bad = || SharedError::Redis("unexpected reply from the admission script".into());
    let status = *reply.first().ok_or_else(bad)?;
    if status == 2 {
        let missing = reply
            .get(1..)
            .unwrap_or_default()
            .iter()
            .map(|i| usize::try_from(*i).map_err(|_| bad()))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Outcome::NeedBase(missing));
    }
    let [_, kind, index, retry, rest @ ..] = reply else {
        return Err(bad());
    };
    let mut headers = RateHeaders::default();
    for (r, pair) in c.rates.iter().zip(rest.chunks(2)) {
        let [remaining, reset] = pair else {
            return Err(bad());
        };
        let w = super::checks::window(r.per_minute, u64::try_from(*remaining).unwrap_or(0), *reset);
        match r.cell.kind {
            CellKind::Tpm => headers.merge_tokens(w),
            _ => headers.merge_requests(w),
        }
    }
    if status == 1 {
        return Ok(Outcome::Admitted(headers));
    }
    let index = usize::try_from(*index).map_err(|_| bad())?;
    let refusal = match kind {
        1 => {
            let r = c.rates.get(index).ok_or_else(bad)?;
            Refusal::Rate {
                kind: r.cell.kind,
                per_minute: r.per_minute,
                origin: r.origin,
                per_model: r.per_model,
                retry_after_us: (*retry >= 0).then_some(*retry),
            }
        }
        2 => {
            let k = c.concurrency.get(index).ok_or_else(bad)?;
            Refusal::Concurrency {
                limit: k.limit,
                origin: k.origin,
                per_model: k.per_model,
            }
        }
        3 if index < c.ledgers.len() => Refusal::Ledger {
            index,
            spent: *retry,
        },
        _ => return Err(bad()),
    };
    Ok(Outcome::Refused(refusal, headers))
}

#[cfg(test)]
impl Shared {
    /// Milliseconds until the settlement marker of `request_id` expires (Redis's `PTTL`: -2
    /// when there is none).
    pub(super) async fn marker_pttl(&self, org: OrgId, request_id: Uuid) -> i64 {
        let key = format!("{}s:{}", self.org_prefix(org), request_id.simple());
        redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut self.conn.clone())
            .await
            .unwrap()
    }

    /// A ledger's `(spent, reserved)`, its reservations' deadline members, and its fields.
    pub(super) async fn ledger_state(
        &self,
        org: OrgId,
        key: &LedgerKey,
    ) -> (i64, i64, Vec<String>, Vec<String>) {
        let h = Self::ledger_key(&self.org_prefix(org), key);
        let mut conn = self.conn.clone();
        let mut fields: Vec<String> = redis::cmd("HKEYS")
            .arg(&h)
            .query_async(&mut conn)
            .await
            .unwrap();
        fields.sort();
        let deadlines: Vec<String> = redis::cmd("ZRANGE")
            .arg(format!("{h}:rz"))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap();
        let (spent, reserved) = self.ledger(org, key).await.unwrap().unwrap();
        (spent, reserved, deadlines, fields)
    }

    /// Adds a reservation as the previous version of the admission script wrote it (its amount
    /// in an `r:<request id>` field, the request id alone as its deadline member), due already.
    pub(super) async fn add_old_reservation(
        &self,
        org: OrgId,
        key: &LedgerKey,
        request_id: Uuid,
        amount: i64,
    ) {
        let h = Self::ledger_key(&self.org_prefix(org), key);
        let id = request_id.simple().to_string();
        let mut conn = self.conn.clone();
        let () = redis::pipe()
            .cmd("HINCRBY")
            .arg(&h)
            .arg("reserved")
            .arg(amount)
            .ignore()
            .cmd("HSET")
            .arg(&h)
            .arg(format!("r:{id}"))
            .arg(amount)
            .ignore()
            .cmd("ZADD")
            .arg(format!("{h}:rz"))
            .arg(0)
            .arg(&id)
            .ignore()
            .cmd("HDEL")
            .arg(&h)
            .arg("sweep_at")
            .ignore()
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    /// A rate cell's theoretical arrival time in Redis's clock (µs), and Redis's clock now.
    pub(super) async fn cell_tat(
        &self,
        org: OrgId,
        cell: &super::checks::Cell,
    ) -> (Option<i64>, i64) {
        let mut conn = self.conn.clone();
        let tat: Option<i64> = redis::cmd("GET")
            .arg(Self::cell_key(&self.org_prefix(org), cell))
            .query_async(&mut conn)
            .await
            .unwrap();
        let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
        (tat, secs * 1_000_000 + micros)
    }

    /// The members of a concurrency cell (requests and lease slots).
    pub(super) async fn cell_members(&self, org: OrgId, cell: &super::checks::Cell) -> Vec<String> {
        redis::cmd("ZRANGE")
            .arg(Self::cell_key(&self.org_prefix(org), cell))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn.clone())
            .await
            .unwrap()
    }

    /// Replaces a ledger's hash with a string, so that every script touching it fails.
    pub(super) async fn break_ledger(&self, org: OrgId, key: &LedgerKey) {
        let h = Self::ledger_key(&self.org_prefix(org), key);
        let () = redis::cmd("SET")
            .arg(&h)
            .arg("not a ledger")
            .query_async(&mut self.conn.clone())
            .await
            .unwrap();
    }

    /// Drops a ledger's hash but not its deadlines (what an eviction would do).
    pub(super) async fn evict_ledger(&self, org: OrgId, key: &LedgerKey) {
        let h = Self::ledger_key(&self.org_prefix(org), key);
        let () = redis::cmd("DEL")
            .arg(&h)
            .query_async(&mut self.conn.clone())
            .await
            .unwrap();
    }
}
