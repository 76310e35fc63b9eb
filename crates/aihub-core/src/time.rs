//! Timestamps. Services take the time once per operation and pass it down; storage keeps Unix
//! milliseconds so that SQLite and PostgreSQL compare and index them the same way.

use chrono::{DateTime, TimeZone, Utc};

/// Current time truncated to milliseconds, the precision storage keeps.
#[must_use]
pub fn now() -> DateTime<Utc> {
    from_millis(Utc::now().timestamp_millis())
}

#[must_use]
pub fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Converts stored milliseconds back; out-of-range values clamp to the Unix epoch rather than
/// panic (they can only come from a corrupted row).
#[must_use]
pub fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip() {
        let t = now();
        assert_eq!(from_millis(to_millis(t)), t);
        assert_eq!(from_millis(i64::MAX), DateTime::<Utc>::UNIX_EPOCH);
    }
}
