//! The progress bar every page draws for a quota or a budget: how much of a limit is used, with
//! marks at 80 % and 100 %. Rendered by `templates/progress.html` as an inline SVG whose sizes are
//! attributes, so it needs no inline style under the CSP.

/// A used amount against a limit, reduced to what the bar draws. Amounts are integers in the
/// limit's own unit (micros of a currency, requests, tokens), so nothing is rounded before the
/// percentage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Used share in whole percent, not clamped (a spent budget can be past 100).
    pub percent: u64,
    /// The bar's filled width in percent of the track, 0 to 100.
    pub fill: u64,
    /// `ok`, `warn` (80 % or more) or `over` (100 % or more): the bar's class.
    pub state: &'static str,
}

/// Where the warning mark sits, in percent.
pub const WARN_PERCENT: u64 = 80;

impl Progress {
    /// `used` of `limit`. A limit of zero or less is full as soon as anything is used; negative
    /// usage (a refund larger than the spend) counts as none.
    #[must_use]
    pub fn new(used: i64, limit: i64) -> Self {
        let used = u128::try_from(used).unwrap_or(0);
        let percent = match u128::try_from(limit) {
            Ok(limit) if limit > 0 => used.saturating_mul(100) / limit,
            _ if used > 0 => 100,
            _ => 0,
        };
        let percent = u64::try_from(percent).unwrap_or(u64::MAX);
        let state = if percent >= 100 {
            "over"
        } else if percent >= WARN_PERCENT {
            "warn"
        } else {
            "ok"
        };
        Self {
            percent,
            fill: percent.min(100),
            state,
        }
    }

    /// The warning mark's position, for the template.
    #[must_use]
    pub const fn warn_mark(&self) -> u64 {
        WARN_PERCENT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_states() {
        assert_eq!(
            Progress::new(0, 1_000),
            Progress {
                percent: 0,
                fill: 0,
                state: "ok"
            }
        );
        assert_eq!(Progress::new(799, 1_000).state, "ok");
        assert_eq!(Progress::new(799, 1_000).percent, 79, "rounded down");
        assert_eq!(Progress::new(800, 1_000).state, "warn");
        assert_eq!(Progress::new(999, 1_000).state, "warn");
        let over = Progress::new(2_500, 1_000);
        assert_eq!((over.percent, over.fill, over.state), (250, 100, "over"));
    }

    #[test]
    fn edge_amounts() {
        assert_eq!(Progress::new(-5, 1_000).percent, 0, "refunds count as none");
        assert_eq!(Progress::new(1, 0).state, "over", "no allowance at all");
        assert_eq!(Progress::new(0, 0).state, "ok");
        assert_eq!(Progress::new(0, -3).percent, 0);
        let huge = Progress::new(i64::MAX, 1);
        assert_eq!((huge.fill, huge.state), (100, "over"));
        assert_eq!(Progress::new(i64::MAX, i64::MAX).percent, 100);
    }
}
