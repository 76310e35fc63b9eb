//! The generic cell rate algorithm (GCRA), the rate limiter behind every requests-per-minute
//! and tokens-per-minute limit. A limit of `L` per minute is a bucket of capacity `L` that
//! refills continuously at `L` per minute: a request costing `c` is allowed when the bucket
//! holds at least `c`. GCRA keeps one number per limit, the theoretical arrival time (TAT):
//! the instant at which the bucket would be full again.
//!
//! Times are integer microseconds so that this code and the Redis script (`redis.rs`), which
//! does the same arithmetic in Lua, agree exactly.

/// Microseconds per minute.
pub const MINUTE_US: i64 = 60_000_000;

/// What a GCRA check decided, with the figures the `x-ratelimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The TAT to store if the request goes ahead (unchanged state if it does not).
    pub new_tat: i64,
    /// Units left in the bucket after this request (or now, if refused).
    pub remaining: u64,
    /// Microseconds until the bucket is full again.
    pub reset_us: i64,
    /// When refused: microseconds until the request would be allowed (`None` if it never can,
    /// because it costs more than the whole limit).
    pub retry_after_us: Option<i64>,
}

/// Emission interval: microseconds one unit takes to refill (at least 1).
fn interval(limit_per_minute: u64) -> i64 {
    let l = i64::try_from(limit_per_minute.max(1)).unwrap_or(i64::MAX);
    (MINUTE_US / l).max(1)
}

/// Checks a request costing `cost` units against a limit of `limit_per_minute`, given the
/// stored TAT (`None` for a bucket never used, i.e. full) at time `now` (µs).
#[must_use]
pub fn check(limit_per_minute: u64, tat: Option<i64>, cost: u64, now: i64) -> Decision {
    let t = interval(limit_per_minute);
    let capacity = i64::try_from(limit_per_minute).unwrap_or(i64::MAX);
    let tolerance = t.saturating_mul(capacity);
    let tat = tat.unwrap_or(now).max(now);
    let cost_i = i64::try_from(cost).unwrap_or(i64::MAX);
    let new_tat = tat.saturating_add(t.saturating_mul(cost_i));
    let remaining_after = |tat_after: i64| {
        let free = tolerance.saturating_sub(tat_after - now);
        u64::try_from((free / t).max(0)).unwrap_or(0)
    };
    if new_tat - now <= tolerance {
        Decision {
            allowed: true,
            new_tat,
            remaining: remaining_after(new_tat),
            reset_us: new_tat - now,
            retry_after_us: None,
        }
    } else {
        Decision {
            allowed: false,
            new_tat: tat,
            remaining: remaining_after(tat),
            reset_us: tat - now,
            retry_after_us: (cost <= limit_per_minute).then(|| new_tat - now - tolerance),
        }
    }
}

/// The TAT after correcting an admitted request's cost from `charged` to `actual` units (the
/// tokens-per-minute estimate made before the call versus the usage reported after it).
#[must_use]
pub fn correct(limit_per_minute: u64, tat: i64, charged: u64, actual: u64, now: i64) -> i64 {
    let t = interval(limit_per_minute);
    let delta = i64::try_from(actual)
        .unwrap_or(i64::MAX)
        .saturating_sub(i64::try_from(charged).unwrap_or(i64::MAX));
    // A refund cannot fill the bucket beyond full.
    tat.saturating_add(delta.saturating_mul(t)).max(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn a_fresh_bucket_allows_exactly_the_limit_at_once() {
        let mut tat = None;
        let mut allowed = 0;
        for _ in 0..100 {
            let d = check(60, tat, 1, 0);
            if d.allowed {
                allowed += 1;
                tat = Some(d.new_tat);
            }
        }
        assert_eq!(allowed, 60);
        let d = check(60, tat, 1, 0);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        // One unit refills every second at 60/min.
        assert_eq!(d.retry_after_us, Some(S));
        assert_eq!(d.reset_us, 60 * S);
    }

    #[test]
    fn the_bucket_refills_continuously() {
        let mut tat = None;
        for _ in 0..60 {
            tat = Some(check(60, tat, 1, 0).new_tat);
        }
        assert!(!check(60, tat, 1, S / 2).allowed);
        let d = check(60, tat, 1, S);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        // After a full minute idle, the whole limit is available again.
        let d = check(60, Some(d.new_tat), 1, 62 * S);
        assert!(d.allowed);
        assert_eq!(d.remaining, 59);
    }

    #[test]
    fn weighted_costs_and_requests_larger_than_the_limit() {
        let d = check(1000, None, 400, 0);
        assert!(d.allowed);
        assert_eq!(d.remaining, 600);
        let d = check(1000, Some(d.new_tat), 700, 0);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 600);
        // 100 tokens short; at 1000/min one token refills every 60 ms.
        assert_eq!(d.retry_after_us, Some(100 * 60_000));
        let d = check(1000, None, 1001, 0);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_us, None);
    }

    #[test]
    fn corrections_charge_more_or_refund() {
        let d = check(1000, None, 500, 0);
        let more = correct(1000, d.new_tat, 500, 800, 0);
        assert_eq!(check(1000, Some(more), 0, 0).remaining, 200);
        let less = correct(1000, d.new_tat, 500, 100, 0);
        assert_eq!(check(1000, Some(less), 0, 0).remaining, 900);
        // Refunds never go beyond a full bucket.
        assert_eq!(correct(1000, d.new_tat, 500, 0, 10 * S), 10 * S);
    }
}
