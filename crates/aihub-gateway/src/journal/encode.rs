//! Writes a journal line by hand: the same bytes `serde_json::to_writer` writes for an
//! [`Entry`] (a test holds the two equal), at a fraction of the cost. Keys are literals, ids go
//! out through `uuid`'s own encoder, numbers through `itoa`, and strings are escaped only when
//! they hold a byte that needs it. Every line is parsed back by serde, so lines written by
//! either encoder load the same.

use aihub_core::Currency;
use chrono::{DateTime, Datelike, Timelike, Utc};
use uuid::Uuid;

use super::{Entry, StartEntry};
use aihub_store::UsageRecord;

/// `,"name":` as one literal, written with one copy: names are ASCII identifiers, never
/// escaped.
macro_rules! key {
    ($out:expr, $name:literal) => {
        $out.extend_from_slice(concat!(",\"", $name, "\":").as_bytes())
    };
}

/// Appends `entry` as one JSON object (no line break).
pub(super) fn entry(out: &mut Vec<u8>, entry: &Entry) {
    match entry {
        Entry::Start(s) => start(out, s),
        Entry::Finish(r) => finish(out, r),
    }
}

fn start(out: &mut Vec<u8>, s: &StartEntry) {
    out.extend_from_slice(br#"{"t":"start","request_id":"#);
    uuid(out, s.request_id);
    key!(out, "boot");
    uuid(out, s.boot);
    key!(out, "org_id");
    uuid(out, s.org_id.as_uuid());
    key!(out, "user_id");
    opt_uuid(out, s.user_id.map(|u| u.as_uuid()));
    key!(out, "key_id");
    opt_uuid(out, s.key_id.map(|k| k.as_uuid()));
    key!(out, "team_id");
    opt_uuid(out, s.team_id.map(|t| t.as_uuid()));
    key!(out, "endpoint");
    string(out, &s.endpoint);
    key!(out, "model");
    string(out, &s.model);
    key!(out, "provider");
    opt_string(out, s.provider.as_deref());
    key!(out, "upstream_model");
    opt_string(out, s.upstream_model.as_deref());
    key!(out, "streamed");
    boolean(out, s.streamed);
    key!(out, "prompt_tokens");
    int(out, s.prompt_tokens);
    key!(out, "prompt_cost_micros");
    int(out, s.prompt_cost_micros);
    key!(out, "currency");
    currency(out, s.currency);
    key!(out, "created_at_ms");
    int(out, s.created_at_ms);
    out.push(b'}');
}

fn finish(out: &mut Vec<u8>, r: &UsageRecord) {
    out.extend_from_slice(br#"{"t":"finish","request_id":"#);
    uuid(out, r.request_id);
    key!(out, "org_id");
    uuid(out, r.org_id.as_uuid());
    key!(out, "user_id");
    opt_uuid(out, r.user_id.map(|u| u.as_uuid()));
    key!(out, "key_id");
    opt_uuid(out, r.key_id.map(|k| k.as_uuid()));
    key!(out, "team_id");
    opt_uuid(out, r.team_id.map(|t| t.as_uuid()));
    key!(out, "endpoint");
    string(out, &r.endpoint);
    key!(out, "model");
    string(out, &r.model);
    key!(out, "provider");
    opt_string(out, r.provider.as_deref());
    key!(out, "upstream_model");
    opt_string(out, r.upstream_model.as_deref());
    key!(out, "prompt_tokens");
    int(out, r.prompt_tokens);
    key!(out, "completion_tokens");
    int(out, r.completion_tokens);
    key!(out, "cached_tokens");
    int(out, r.cached_tokens);
    key!(out, "cost_micros");
    int(out, r.cost_micros);
    key!(out, "currency");
    currency(out, r.currency);
    key!(out, "status");
    int(out, r.status);
    key!(out, "error_code");
    opt_string(out, r.error_code.as_deref());
    key!(out, "latency_ms");
    int(out, r.latency_ms);
    key!(out, "ttft_ms");
    match r.ttft_ms {
        Some(ms) => int(out, ms),
        None => out.extend_from_slice(b"null"),
    }
    key!(out, "streamed");
    boolean(out, r.streamed);
    key!(out, "estimated");
    boolean(out, r.estimated);
    key!(out, "created_at");
    timestamp(out, r.created_at);
    out.push(b'}');
}

fn uuid(out: &mut Vec<u8>, id: Uuid) {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.push(b'"');
    out.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
    out.push(b'"');
}

fn opt_uuid(out: &mut Vec<u8>, id: Option<Uuid>) {
    match id {
        Some(id) => uuid(out, id),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string. Names of models and providers rarely need escaping; when one does, serde
/// writes it, so the escapes are exactly serde's.
fn string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
        return;
    }
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

fn opt_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn boolean(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

fn currency(out: &mut Vec<u8>, c: Currency) {
    string(out, c.as_str());
}

/// RFC 3339 in UTC as chrono's serde writes it: `Z`, and 0, 3, 6 or 9 digits of fraction, the
/// fewest that hold the value.
fn timestamp(out: &mut Vec<u8>, t: DateTime<Utc>) {
    let year = t.year();
    if !(0..=9999).contains(&year) {
        let _ = serde_json::to_writer(&mut *out, &t);
        return;
    }
    // `n` in exactly `width` digits, zero-padded (`n` < 10^width).
    let digits = |out: &mut Vec<u8>, n: u32, width: u32| {
        let mut place = 10u32.pow(width.saturating_sub(1));
        while place > 0 {
            out.push(b'0' + u8::try_from(n / place % 10).unwrap_or(0));
            place /= 10;
        }
    };
    out.push(b'"');
    digits(out, year.unsigned_abs(), 4);
    out.push(b'-');
    digits(out, t.month(), 2);
    out.push(b'-');
    digits(out, t.day(), 2);
    out.push(b'T');
    digits(out, t.hour(), 2);
    out.push(b':');
    digits(out, t.minute(), 2);
    out.push(b':');
    // A leap second is carried in the nanoseconds (≥ 1e9): chrono writes it as second 60.
    let nanos = t.nanosecond();
    let (second, nanos) = if nanos >= 1_000_000_000 {
        (t.second() + 1, nanos - 1_000_000_000)
    } else {
        (t.second(), nanos)
    };
    digits(out, second, 2);
    if nanos != 0 {
        out.push(b'.');
        if nanos % 1_000_000 == 0 {
            digits(out, nanos / 1_000_000, 3);
        } else if nanos % 1_000 == 0 {
            digits(out, nanos / 1_000, 6);
        } else {
            digits(out, nanos, 9);
        }
    }
    out.extend_from_slice(b"Z\"");
}

#[cfg(test)]
mod tests {
    use aihub_core::{KeyId, OrgId, TeamId, UserId};
    use chrono::TimeZone;

    use super::*;

    fn record(model: &str, created_at: DateTime<Utc>) -> UsageRecord {
        UsageRecord {
            request_id: Uuid::now_v7(),
            org_id: OrgId::new(),
            user_id: Some(UserId::new()),
            key_id: Some(KeyId::new()),
            team_id: Some(TeamId::new()),
            endpoint: "chat.completions".into(),
            model: model.into(),
            provider: Some("upstream".into()),
            upstream_model: Some(format!("{model}-2025")),
            prompt_tokens: i64::MAX,
            completion_tokens: -1,
            cached_tokens: 0,
            cost_micros: 123_456_789,
            currency: Currency::CNY,
            status: 429,
            error_code: Some("rate_limited".into()),
            latency_ms: 17,
            ttft_ms: Some(3),
            streamed: true,
            estimated: true,
            created_at,
        }
    }

    fn bare(model: &str, created_at: DateTime<Utc>) -> UsageRecord {
        UsageRecord {
            user_id: None,
            key_id: None,
            team_id: None,
            provider: None,
            upstream_model: None,
            error_code: None,
            ttft_ms: None,
            streamed: false,
            estimated: false,
            currency: Currency::USD,
            ..record(model, created_at)
        }
    }

    fn start_of(r: &UsageRecord) -> StartEntry {
        StartEntry {
            request_id: r.request_id,
            boot: Uuid::now_v7(),
            org_id: r.org_id,
            user_id: r.user_id,
            key_id: r.key_id,
            team_id: r.team_id,
            endpoint: r.endpoint.clone(),
            model: r.model.clone(),
            provider: r.provider.clone(),
            upstream_model: r.upstream_model.clone(),
            streamed: r.streamed,
            prompt_tokens: u64::MAX,
            prompt_cost_micros: i64::MIN,
            currency: r.currency,
            created_at_ms: r.created_at.timestamp_millis(),
        }
    }

    #[test]
    fn lines_are_byte_for_byte_what_serde_writes() {
        let base = Utc.with_ymd_and_hms(2026, 2, 3, 4, 5, 6).unwrap();
        let times = [
            base,
            base + chrono::Duration::milliseconds(120),
            base + chrono::Duration::microseconds(1_500),
            base + chrono::Duration::nanoseconds(7),
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap(),
            DateTime::from_timestamp(1_483_228_799, 1_500_000_000).unwrap(),
            aihub_core::time::now(),
        ];
        let models = [
            "gpt-4o-mini",
            "",
            "quote\" back\\slash",
            "tab\tnewline\ncontrol\u{1}",
            "模型 é ✓ 🚀",
        ];
        let mut entries = Vec::new();
        for t in times {
            for m in models {
                let full = record(m, t);
                let none = bare(m, t);
                entries.push(Entry::Start(start_of(&full)));
                entries.push(Entry::Start(start_of(&none)));
                entries.push(Entry::Finish(full));
                entries.push(Entry::Finish(none));
            }
        }
        let mut out = Vec::new();
        for e in &entries {
            out.clear();
            entry(&mut out, e);
            let expected = serde_json::to_vec(e).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&expected)
            );
            let back: Entry = serde_json::from_slice(&out).unwrap();
            assert_eq!(&back, e);
        }
    }
}
