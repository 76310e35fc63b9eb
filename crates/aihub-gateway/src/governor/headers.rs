//! OpenAI's rate-limit response headers: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`
//! for the binding limit of each kind. Resets are written the way OpenAI writes them: `20ms`,
//! `1.5s`, `6m0s`, `1h2m3s`.

use std::fmt::Write;

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

    /// Header names and values, in a fixed order.
    #[must_use]
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(6);
        if let Some(w) = self.requests {
            out.push(("x-ratelimit-limit-requests", w.limit.to_string()));
            out.push(("x-ratelimit-remaining-requests", w.remaining.to_string()));
            out.push(("x-ratelimit-reset-requests", format_reset(w.reset_us)));
        }
        if let Some(w) = self.tokens {
            out.push(("x-ratelimit-limit-tokens", w.limit.to_string()));
            out.push(("x-ratelimit-remaining-tokens", w.remaining.to_string()));
            out.push(("x-ratelimit-reset-tokens", format_reset(w.reset_us)));
        }
        out
    }
}

/// `20ms`, `1.5s`, `6m0s`, `1h2m3s` (a duration as OpenAI's headers write it).
#[must_use]
pub fn format_reset(us: i64) -> String {
    let ms = (us.max(0) + 999) / 1000;
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, frac) = (rest / 1000, rest % 1000);
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if h > 0 || m > 0 {
        let _ = write!(out, "{m}m");
    }
    if frac == 0 {
        let _ = write!(out, "{s}s");
    } else {
        let digits = format!("{frac:03}");
        let _ = write!(out, "{s}.{}s", digits.trim_end_matches('0'));
    }
    out
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
    }

    #[test]
    fn the_binding_window_is_the_one_with_least_left() {
        let mut h = RateHeaders::default();
        assert!(h.pairs().is_empty());
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
        let names: Vec<_> = h.pairs().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests"
            ]
        );
    }
}
