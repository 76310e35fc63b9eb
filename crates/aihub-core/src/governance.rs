//! Rate limits, budgets and plans: the rules an organization's requests are held to. The
//! control plane stores and edits them; the gateway enforces them on every `/v1` request
//! (see `aihub_gateway::governor`). Pure data and calendar arithmetic, no I/O.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::Currency;
use crate::secret::Secret;
use crate::{KeyId, OrgId};

/// What a limit or budget is attached to. The scope id is the id of that object (for `Org`,
/// the organization's own id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeType {
    Key,
    User,
    Team,
    Org,
}

impl ScopeType {
    pub const ALL: [Self; 4] = [Self::Key, Self::User, Self::Team, Self::Org];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::User => "user",
            Self::Team => "team",
            Self::Org => "org",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// The scopes one request is governed by: its key, the key's user within the org, the key's
/// team, and the org.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestScopes {
    pub org: OrgId,
    pub key: KeyId,
    pub user: Option<Uuid>,
    pub team: Option<Uuid>,
}

impl RequestScopes {
    /// Whether a rule attached to (`scope`, `id`) applies to this request.
    #[must_use]
    pub fn covers(&self, scope: ScopeType, id: Uuid) -> bool {
        match scope {
            ScopeType::Key => self.key.as_uuid() == id,
            ScopeType::User => self.user == Some(id),
            ScopeType::Team => self.team == Some(id),
            ScopeType::Org => self.org.as_uuid() == id,
        }
    }
}

/// How long a budget's or quota's spend accumulates before it starts again from zero. Periods
/// are calendar periods in UTC: a day starts at 00:00, a week on Monday, a month on the 1st.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Daily,
    Weekly,
    Monthly,
    /// Never resets.
    Total,
}

impl Period {
    pub const ALL: [Self; 4] = [Self::Daily, Self::Weekly, Self::Monthly, Self::Total];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
            Self::Total => "total",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Start of the period containing `t` (the Unix epoch for `Total`).
    #[must_use]
    pub fn start(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let day = t.date_naive();
        let first = match self {
            Self::Daily => day,
            Self::Weekly => day - Duration::days(i64::from(day.weekday().num_days_from_monday())),
            Self::Monthly => day.with_day(1).unwrap_or(day),
            Self::Total => return DateTime::<Utc>::UNIX_EPOCH,
        };
        midnight(first)
    }

    /// End of the period containing `t` (exclusive), or `None` for `Total`.
    #[must_use]
    pub fn end(self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = self.start(t).date_naive();
        let next = match self {
            Self::Daily => start + Duration::days(1),
            Self::Weekly => start + Duration::days(7),
            Self::Monthly => {
                let (y, m) = if start.month() == 12 {
                    (start.year() + 1, 1)
                } else {
                    (start.year(), start.month() + 1)
                };
                NaiveDate::from_ymd_opt(y, m, 1)?
            }
            Self::Total => return None,
        };
        Some(midnight(next))
    }
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
}

/// What happens to requests once a budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPolicy {
    /// Refuse them (429 `budget_exceeded`).
    #[default]
    Block,
    /// Let them through at no more than the budget's `throttle_rpm`.
    Throttle,
}

impl BudgetPolicy {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Throttle => "throttle",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "block" => Some(Self::Block),
            "throttle" => Some(Self::Throttle),
            _ => None,
        }
    }
}

/// Requests per minute, tokens per minute and concurrent requests on one scope, optionally for
/// one model only. `None` means "no limit of this kind here".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitRule {
    pub id: Uuid,
    pub org_id: OrgId,
    pub scope: ScopeType,
    pub scope_id: Uuid,
    /// Only requests for this model; `None` for all models.
    pub model: Option<String>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub concurrency: Option<u64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Default budget alert thresholds, in percent of the amount.
pub const DEFAULT_THRESHOLDS: [u32; 2] = [80, 100];

/// An amount of money a scope may spend per period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetRule {
    pub id: Uuid,
    pub org_id: OrgId,
    pub scope: ScopeType,
    pub scope_id: Uuid,
    pub name: Option<String>,
    /// Micro-units of `currency`. Only spend priced in this currency counts against it.
    pub amount_micros: i64,
    pub currency: Currency,
    pub period: Period,
    pub policy: BudgetPolicy,
    /// With `policy = throttle`: requests per minute allowed once the budget is spent.
    pub throttle_rpm: Option<u64>,
    /// Alert thresholds in percent of the amount, ascending (default 80 and 100).
    pub thresholds: Vec<u32>,
    /// Where alerts are POSTed, signed with `webhook_secret`.
    pub webhook_url: Option<String>,
    /// HMAC-SHA256 key for webhook signatures; shown once when created, never returned again.
    #[serde(skip)]
    pub webhook_secret: Option<Secret>,
    /// Who receives alert e-mails.
    pub alert_emails: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A subscription plan: default rate limits for every org on it and a monthly quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub id: Uuid,
    /// Unique name, e.g. `free`, `pro`, `enterprise`.
    pub name: String,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub concurrency: Option<u64>,
    /// Tokens (prompt + completion) per calendar month (UTC).
    pub monthly_tokens: Option<u64>,
    /// Spend per calendar month, in micro-units of `currency`.
    pub monthly_spend_micros: Option<i64>,
    pub currency: Currency,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Everything the gateway enforces for one organization, read in one go and cached.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OrgPolicy {
    pub plan: Option<Plan>,
    pub limits: Vec<LimitRule>,
    pub budgets: Vec<BudgetRule>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn periods_are_utc_calendar_periods() {
        // 2026-11-25 is a Wednesday.
        let t = at("2026-11-25T17:30:00Z");
        assert_eq!(Period::Daily.start(t), at("2026-11-25T00:00:00Z"));
        assert_eq!(Period::Daily.end(t), Some(at("2026-11-26T00:00:00Z")));
        assert_eq!(Period::Weekly.start(t), at("2026-11-23T00:00:00Z"));
        assert_eq!(Period::Weekly.end(t), Some(at("2026-11-30T00:00:00Z")));
        assert_eq!(Period::Monthly.start(t), at("2026-11-01T00:00:00Z"));
        assert_eq!(Period::Monthly.end(t), Some(at("2026-12-01T00:00:00Z")));
        let dec = at("2026-12-31T23:59:59Z");
        assert_eq!(Period::Monthly.end(dec), Some(at("2027-01-01T00:00:00Z")));
        assert_eq!(Period::Total.start(t), DateTime::<Utc>::UNIX_EPOCH);
        assert_eq!(Period::Total.end(t), None);
        // A period's first instant belongs to it.
        let monday = at("2026-11-23T00:00:00Z");
        assert_eq!(Period::Weekly.start(monday), monday);
    }

    #[test]
    fn names_round_trip() {
        for p in Period::ALL {
            assert_eq!(Period::parse(p.as_str()), Some(p));
        }
        for s in ScopeType::ALL {
            assert_eq!(ScopeType::parse(s.as_str()), Some(s));
        }
        for b in [BudgetPolicy::Block, BudgetPolicy::Throttle] {
            assert_eq!(BudgetPolicy::parse(b.as_str()), Some(b));
        }
        assert_eq!(Period::parse("yearly"), None);
        assert_eq!(ScopeType::parse("project"), None);
        assert_eq!(BudgetPolicy::parse("warn"), None);
    }

    #[test]
    fn scopes_cover_their_own_objects_only() {
        let s = RequestScopes {
            org: OrgId::new(),
            key: KeyId::new(),
            user: Some(Uuid::now_v7()),
            team: None,
        };
        assert!(s.covers(ScopeType::Org, s.org.as_uuid()));
        assert!(s.covers(ScopeType::Key, s.key.as_uuid()));
        assert!(s.covers(ScopeType::User, s.user.unwrap()));
        assert!(!s.covers(ScopeType::Team, Uuid::now_v7()));
        assert!(!s.covers(ScopeType::Org, s.key.as_uuid()));
    }
}
