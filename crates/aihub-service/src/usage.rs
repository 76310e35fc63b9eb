//! Usage reporting for an organization's members: totals per day, model or key from the daily
//! rollups, and the individual request records.

use aihub_core::time::now;
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
        let today = now().date_naive();
        let to = to.unwrap_or(today);
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
        let day = |d: NaiveDate| day_of(Utc.from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN)));
        let totals = self
            .store
            .usage_totals(scope.org_id(), day(from), day(to), grouping)
            .await?;
        Ok((from, to, totals))
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
