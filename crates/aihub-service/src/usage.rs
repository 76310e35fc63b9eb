//! Usage reporting for an organization's members: totals per day, model, key, user or team from
//! the daily rollups, the same split per day for charts, the individual request records and the
//! last failed ones, and the names of the keys, users and teams a report shows.

use aihub_core::time::now;
use aihub_store::usage::DailyTotals;
use aihub_store::usage::day_of;
use aihub_store::{Store, UsageGrouping, UsageRecord, UsageTotals};
use chrono::{NaiveDate, TimeZone, Utc};
use uuid::Uuid;

use crate::error::{Result, ServiceError};
use crate::orgs::OrgScope;
use crate::page::Page;
use crate::policy::Action;

/// Longest range a summary may cover.
pub const MAX_RANGE_DAYS: i64 = 366;

#[derive(Clone)]
pub struct Usage {
    store: Store,
}

impl Usage {
    #[must_use]
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Totals between `from` and `to` (inclusive dates, UTC; default: the last 30 days).
    pub async fn summary(
        &self,
        scope: &OrgScope,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
        grouping: UsageGrouping,
    ) -> Result<(NaiveDate, NaiveDate, Vec<UsageTotals>)> {
        scope.require(Action::UsageRead)?;
        let (from, to) = range(from, to)?;
        let totals = self
            .store
            .usage_totals(scope.org_id(), day(from), day(to), grouping)
            .await?;
        Ok((from, to, totals))
    }

    /// Totals per day and group between `from` and `to` (as for [`Usage::summary`]), ordered
    /// by day: what a chart of the range draws.
    pub async fn daily(
        &self,
        scope: &OrgScope,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
        grouping: UsageGrouping,
    ) -> Result<(NaiveDate, NaiveDate, Vec<DailyTotals>)> {
        scope.require(Action::UsageRead)?;
        let (from, to) = range(from, to)?;
        let rows = self
            .store
            .usage_daily(scope.org_id(), day(from), day(to), grouping)
            .await?;
        Ok((from, to, rows))
    }

    /// The last `limit` failed requests, newest first.
    pub async fn recent_errors(&self, scope: &OrgScope, limit: u32) -> Result<Vec<UsageRecord>> {
        scope.require(Action::UsageRead)?;
        Ok(self.store.usage_errors(scope.org_id(), limit).await?)
    }

    /// Names of the keys, users or teams `ids` as a usage report shows them; needs the right to
    /// read that kind of thing. Ids that name nothing any more are absent from the answer.
    pub async fn group_names(
        &self,
        scope: &OrgScope,
        grouping: UsageGrouping,
        ids: &[Uuid],
    ) -> Result<Vec<(Uuid, String)>> {
        match grouping {
            UsageGrouping::Day | UsageGrouping::Model => return Ok(Vec::new()),
            UsageGrouping::Key => scope.require(Action::KeysRead)?,
            UsageGrouping::User => scope.require(Action::MembersRead)?,
            UsageGrouping::Team => scope.require(Action::TeamsRead)?,
        }
        Ok(self
            .store
            .usage_group_names(scope.org_id(), grouping, ids)
            .await?)
    }

    /// Individual requests, newest first.
    pub async fn requests(
        &self,
        scope: &OrgScope,
        cursor: Option<Uuid>,
        limit: u32,
        from: Option<chrono::DateTime<Utc>>,
        to: Option<chrono::DateTime<Utc>>,
    ) -> Result<Page<UsageRecord, Uuid>> {
        scope.require(Action::UsageRead)?;
        let rows = self
            .store
            .usage_records(scope.org_id(), cursor, from, to, limit + 1)
            .await?;
        Ok(Page::from_overfetch(rows, limit, |r| r.request_id))
    }
}

/// The inclusive range `from..=to` with its defaults (the 30 days up to today, UTC), refused
/// when reversed or longer than [`MAX_RANGE_DAYS`].
pub fn range(from: Option<NaiveDate>, to: Option<NaiveDate>) -> Result<(NaiveDate, NaiveDate)> {
    let to = to.unwrap_or_else(|| now().date_naive());
    let from = from.unwrap_or(to - chrono::Days::new(29));
    if from > to {
        return Err(ServiceError::invalid(
            "invalid_range",
            "`from` must not be after `to`",
        ));
    }
    if (to - from).num_days() >= MAX_RANGE_DAYS {
        return Err(ServiceError::invalid(
            "invalid_range",
            format!("a range covers at most {MAX_RANGE_DAYS} days"),
        ));
    }
    Ok((from, to))
}

/// The rollup day number of a date.
fn day(d: NaiveDate) -> i64 {
    day_of(Utc.from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_default_to_thirty_days_and_are_bounded() {
        let d = |y, m, n| NaiveDate::from_ymd_opt(y, m, n).unwrap();
        let (from, to) = range(None, Some(d(2026, 11, 30))).unwrap();
        assert_eq!((from, to), (d(2026, 11, 1), d(2026, 11, 30)));
        assert!(range(Some(d(2026, 11, 2)), Some(d(2026, 11, 1))).is_err());
        assert!(range(Some(d(2025, 1, 1)), Some(d(2026, 1, 1))).is_ok());
        assert!(range(Some(d(2025, 1, 1)), Some(d(2026, 1, 2))).is_err());
        assert_eq!(day(d(1970, 1, 2)), 1);
    }
}
