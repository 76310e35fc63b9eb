//! Cursor pagination shared by every list: newest first, `limit` between 1 and 100, and the id of
//! the last item as the cursor for the next page.

use serde::Serialize;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 100;

/// One page of a list.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T, C> {
    pub data: Vec<T>,
    /// Pass as `cursor` to get the next page; `None` on the last page.
    pub next_cursor: Option<C>,
}

/// Clamps a requested page size into `1..=MAX_LIMIT`.
#[must_use]
pub fn clamp_limit(limit: Option<u32>) -> u32 {
    limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

impl<T, C> Page<T, C> {
    /// Builds a page from up to `limit + 1` fetched rows: the extra row only tells that another
    /// page exists.
    pub fn from_overfetch(mut rows: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> C) -> Self {
        let limit = limit as usize;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if more {
            rows.last().map(cursor_of)
        } else {
            None
        };
        Page {
            data: rows,
            next_cursor,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U, C> {
        Page {
            data: self.data.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_clamped() {
        assert_eq!(clamp_limit(None), DEFAULT_LIMIT);
        assert_eq!(clamp_limit(Some(0)), 1);
        assert_eq!(clamp_limit(Some(1_000)), MAX_LIMIT);
        assert_eq!(clamp_limit(Some(7)), 7);
    }

    #[test]
    fn overfetch_decides_the_cursor() {
        let p = Page::from_overfetch(vec![5, 4, 3], 2, |x| *x);
        assert_eq!(p.data, vec![5, 4]);
        assert_eq!(p.next_cursor, Some(4));
        let last = Page::from_overfetch(vec![2, 1], 2, |x| *x);
        assert_eq!(last.next_cursor, None);
        assert_eq!(last.map(|x| x * 10).data, vec![20, 10]);
    }
}
