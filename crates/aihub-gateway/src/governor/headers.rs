//! OpenAI's rate-limit response headers: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`
//! for the binding limit of each kind. Resets are written the way OpenAI writes them: `20ms`,
//! `1.5s`, `6m0s`, `1h2m3s`.

use std::fmt::Write;
use std::ops::Range;

use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue};

/// One limit's state after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub limit: u64,
    pub remaining: u64,
    /// Microseconds until the limit is back to its full value.
    pub reset_us: i64,
}

impl Window {
    /// Keeps whichever of `self` and `other` binds more (fewer units left; on a tie, the
    /// smaller limit).
    #[must_use]
    pub fn tighter(self, other: Self) -> Self {
        if (other.remaining, other.limit) < (self.remaining, self.limit) {
            other
        } else {
            self
        }
    }
}

/// The binding request and token limits of one request, if any limit of that kind applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<Window>,
    pub tokens: Option<Window>,
}

impl RateHeaders {
    pub(crate) fn merge_requests(&mut self, w: Window) {
        self.requests = Some(self.requests.map_or(w, |cur| cur.tighter(w)));
    }

    pub(crate) fn merge_tokens(&mut self, w: Window) {
        self.tokens = Some(self.tokens.map_or(w, |cur| cur.tighter(w)));
    }

    /// Sets the headers on a response: the request limit's three, then the token limit's.
    /// Names are static; the values are written into one buffer and each header holds a slice
    /// of it, so the (up to) six values cost two allocations, not one or two each.
    pub fn write_to(&self, h: &mut HeaderMap) {
        if self.requests.is_none() && self.tokens.is_none() {
            return;
        }
        let windows = [
            (self.requests, &REQUEST_HEADERS),
            (self.tokens, &TOKEN_HEADERS),
        ];
        let mut buf = BytesMut::with_capacity(VALUES_CAPACITY);
        let mut values: [Option<(&'static HeaderName, Range<usize>)>; 6] = Default::default();
        let mut slots = values.iter_mut();
        for (window, [limit, remaining, reset]) in windows {
            let Some(w) = window else { continue };
            for (name, value) in [(limit, w.limit), (remaining, w.remaining)] {
                let start = buf.len();
                buf.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
                if let Some(slot) = slots.next() {
                    *slot = Some((name, start..buf.len()));
                }
            }
            let start = buf.len();
            write_reset(&mut buf, w.reset_us);
            if let Some(slot) = slots.next() {
                *slot = Some((reset, start..buf.len()));
            }
        }
        let buf = buf.freeze();
        for (name, range) in values.into_iter().flatten() {
            // Digits and ASCII letters: always a valid value.
            if let Ok(v) = HeaderValue::from_maybe_shared(buf.slice(range)) {
                h.insert(name.clone(), v);
            }
        }
    }
}

/// Room for all six values: two 20-digit numbers and a reset such as `1000h59m59.999s`, twice.
const VALUES_CAPACITY: usize = 2 * (20 + 20 + 24);

static REQUEST_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-reset-requests"),
];
static TOKEN_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-tokens"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
];

/// `20ms`, `1.5s`, `6m0s`, `1h2m3s` (a duration as OpenAI's headers write it).
#[must_use]
pub fn format_reset(us: i64) -> String {
    let mut out = String::new();
    write_reset(&mut out, us);
    out
}

/// Writes a reset as [`format_reset`] does, to `out`.
fn write_reset(out: &mut impl Write, us: i64) {
    let ms = us.max(0).saturating_add(999) / 1000;
    // Writing to memory cannot fail.
    if ms < 1000 {
        let _ = write!(out, "{ms}ms");
        return;
    }
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, frac) = (rest / 1000, rest % 1000);
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if h > 0 || m > 0 {
        let _ = write!(out, "{m}m");
    }
    if frac == 0 {
        let _ = write!(out, "{s}s");
    } else {
        // Milliseconds as a decimal fraction without trailing zeros: 250 → .25, 5 → .005.
        let (mut digits, mut width) = (frac, 3);
        while digits % 10 == 0 {
            digits /= 10;
            width -= 1;
        }
        let _ = write!(out, "{s}.{digits:0width$}s");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_are_written_like_openai() {
        assert_eq!(format_reset(0), "0ms");
        assert_eq!(format_reset(20_000), "20ms");
        assert_eq!(format_reset(19_001), "20ms");
        assert_eq!(format_reset(1_000_000), "1s");
        assert_eq!(format_reset(1_500_000), "1.5s");
        assert_eq!(format_reset(6 * 60_000_000), "6m0s");
        assert_eq!(format_reset(60_250_000), "1m0.25s");
        assert_eq!(format_reset(3_723_000_000), "1h2m3s");
        assert_eq!(format_reset(-5), "0ms");
        assert_eq!(format_reset(1_005_000), "1.005s");
        assert_eq!(format_reset(1_050_000), "1.05s");
        assert_eq!(format_reset(59_999_000), "59.999s");
        assert_eq!(format_reset(i64::MAX), "2562047788h0m54.775s");
    }

    #[test]
    fn the_binding_window_is_the_one_with_least_left() {
        let mut h = RateHeaders::default();
        let mut map = HeaderMap::new();
        h.write_to(&mut map);
        assert!(map.is_empty());
        h.merge_requests(Window {
            limit: 100,
            remaining: 50,
            reset_us: 1,
        });
        h.merge_requests(Window {
            limit: 10,
            remaining: 9,
            reset_us: 2,
        });
        h.merge_requests(Window {
            limit: 1000,
            remaining: 900,
            reset_us: 3,
        });
        assert_eq!(h.requests.unwrap().limit, 10);
        h.write_to(&mut map);
        let written: Vec<(&str, &str)> = map
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            written,
            [
                ("x-ratelimit-limit-requests", "10"),
                ("x-ratelimit-remaining-requests", "9"),
                ("x-ratelimit-reset-requests", "1ms"),
            ]
        );
        h.merge_tokens(Window {
            limit: 40_000,
            remaining: 39_000,
            reset_us: 1_500_000,
        });
        let mut map = HeaderMap::new();
        h.write_to(&mut map);
        assert_eq!(map.len(), 6);
        assert_eq!(map["x-ratelimit-limit-tokens"], "40000");
        assert_eq!(map["x-ratelimit-remaining-tokens"], "39000");
        assert_eq!(map["x-ratelimit-reset-tokens"], "1.5s");
    }
}
