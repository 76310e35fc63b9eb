//! What one request is checked against, derived from its organization's policy: every
//! applicable rate and concurrency limit, and every budget or quota it must reserve money or
//! tokens from. Both counter stores (in-process and Redis) evaluate the same [`Checks`].

use std::sync::Arc;

use aihub_core::governance::{BudgetPolicy, BudgetRule, OrgPolicy, RequestScopes, ScopeType};
use aihub_core::{Currency, OrgId};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::gcra::MINUTE_US;

/// Which counter of an object a rate or concurrency check uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CellKind {
    Rpm,
    Tpm,
    Concurrency,
    /// The requests-per-minute allowed by a spent budget with the `throttle` policy.
    Throttle,
}

impl CellKind {
    pub(crate) const fn tag(self) -> &'static str {
        match self {
            Self::Rpm => "r",
            Self::Tpm => "t",
            Self::Concurrency => "c",
            Self::Throttle => "h",
        }
    }
}

/// One counter: a limit rule's (or the plan's, or a budget's) counter of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cell {
    /// The rule's id; for the plan's limits, the organization's id.
    pub id: Uuid,
    pub plan: bool,
    pub kind: CellKind,
}

/// Where a limit comes from, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Scope(ScopeType),
    Plan,
}

impl Origin {
    pub(crate) fn describe(self, per_model: bool) -> String {
        let what = match self {
            Self::Scope(ScopeType::Key) => "this API key",
            Self::Scope(ScopeType::User) => "your user in this organization",
            Self::Scope(ScopeType::Team) => "your team",
            Self::Scope(ScopeType::Org) => "your organization",
            Self::Plan => "your organization's plan",
        };
        if per_model {
            format!("{what} for this model")
        } else {
            what.to_owned()
        }
    }
}

/// A requests- or tokens-per-minute limit.
#[derive(Debug, Clone)]
pub struct RateCheck {
    pub cell: Cell,
    pub per_minute: u64,
    pub cost: u64,
    pub origin: Origin,
    pub per_model: bool,
}

/// A concurrent-requests limit.
#[derive(Debug, Clone)]
pub struct ConcurrencyCheck {
    pub cell: Cell,
    pub limit: u64,
    pub origin: Origin,
    pub per_model: bool,
}

/// What a ledger counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LedgerKind {
    /// A budget, in micro-units of its currency.
    Budget,
    /// The plan's monthly token quota.
    QuotaTokens,
    /// The plan's monthly spend quota, in micro-units of the plan's currency.
    QuotaSpend,
}

impl LedgerKind {
    pub(crate) const fn tag(self) -> &'static str {
        match self {
            Self::Budget => "b",
            Self::QuotaTokens => "qt",
            Self::QuotaSpend => "qs",
        }
    }
}

/// One period of a budget or quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LedgerKey {
    /// The budget's id; for quotas, the organization's id.
    pub id: Uuid,
    pub kind: LedgerKind,
    /// Start of the period (Unix ms).
    pub period_start_ms: i64,
}

/// A reservation against a budget or quota.
#[derive(Debug, Clone)]
pub struct LedgerCheck {
    pub key: LedgerKey,
    pub limit: i64,
    /// Reserved before the call: the most the request can cost (or tokens it can use).
    pub amount: i64,
    pub period_start: DateTime<Utc>,
    pub period_end: Option<DateTime<Utc>>,
    /// The budget itself (for alerts and messages); `None` for quotas.
    pub budget: Option<Arc<BudgetRule>>,
    /// The currency of a money ledger (`None`: it counts tokens).
    pub currency: Option<Currency>,
    /// For a `throttle` budget: the rate allowed once it is spent.
    pub throttle: Option<RateCheck>,
}

impl LedgerCheck {
    /// Whether the ledger counts tokens (else money).
    pub(crate) fn counts_tokens(&self) -> bool {
        self.currency.is_none()
    }
}

/// Everything one request is checked against.
#[derive(Debug, Clone)]
pub struct Checks {
    pub org: OrgId,
    pub rates: Vec<RateCheck>,
    pub concurrency: Vec<ConcurrencyCheck>,
    pub ledgers: Vec<LedgerCheck>,
}

impl Checks {
    pub(crate) fn is_empty(&self) -> bool {
        self.rates.is_empty() && self.concurrency.is_empty() && self.ledgers.is_empty()
    }
}

/// What a request may consume, estimated before the call.
#[derive(Debug, Clone)]
pub struct Demand<'a> {
    pub scopes: RequestScopes,
    pub model: &'a str,
    /// Prompt tokens plus the most completion tokens the request allows: charged to
    /// tokens-per-minute limits, corrected after the call.
    pub tokens_estimate: u64,
    /// An upper bound of the tokens the request can use (token quota reservation).
    pub tokens_max: u64,
    /// An upper bound of its cost, with the currency of its price; `None` if the model has no
    /// price (it then costs nothing and reserves nothing).
    pub cost_max: Option<(i64, Currency)>,
    pub now: DateTime<Utc>,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The checks `policy` imposes on `demand`.
#[must_use]
pub fn derive(policy: &OrgPolicy, budgets: &[Arc<BudgetRule>], demand: &Demand<'_>) -> Checks {
    let s = &demand.scopes;
    let org = s.org.as_uuid();
    let mut c = Checks {
        org: s.org,
        rates: Vec::new(),
        concurrency: Vec::new(),
        ledgers: Vec::new(),
    };
    let mut add = |id: Uuid,
                   plan: bool,
                   origin: Origin,
                   per_model: bool,
                   rpm: Option<u64>,
                   tpm: Option<u64>,
                   conc: Option<u64>| {
        let cell = |kind| Cell { id, plan, kind };
        if let Some(l) = rpm {
            c.rates.push(RateCheck {
                cell: cell(CellKind::Rpm),
                per_minute: l,
                cost: 1,
                origin,
                per_model,
            });
        }
        if let Some(l) = tpm {
            c.rates.push(RateCheck {
                cell: cell(CellKind::Tpm),
                per_minute: l,
                cost: demand.tokens_estimate,
                origin,
                per_model,
            });
        }
        if let Some(l) = conc {
            c.concurrency.push(ConcurrencyCheck {
                cell: cell(CellKind::Concurrency),
                limit: l,
                origin,
                per_model,
            });
        }
    };
    if let Some(p) = &policy.plan {
        add(org, true, Origin::Plan, false, p.rpm, p.tpm, p.concurrency);
    }
    for r in &policy.limits {
        let model_ok = r.model.as_deref().is_none_or(|m| m == demand.model);
        if model_ok && s.covers(r.scope, r.scope_id) {
            add(
                r.id,
                false,
                Origin::Scope(r.scope),
                r.model.is_some(),
                r.rpm,
                r.tpm,
                r.concurrency,
            );
        }
    }
    if let Some((cost, currency)) = demand.cost_max {
        for b in budgets {
            if b.currency != currency || !s.covers(b.scope, b.scope_id) {
                continue;
            }
            let start = b.period.start(demand.now);
            let throttle = match (b.policy, b.throttle_rpm) {
                (BudgetPolicy::Throttle, Some(rpm)) => Some(RateCheck {
                    cell: Cell {
                        id: b.id,
                        plan: false,
                        kind: CellKind::Throttle,
                    },
                    per_minute: rpm,
                    cost: 1,
                    origin: Origin::Scope(b.scope),
                    per_model: false,
                }),
                _ => None,
            };
            c.ledgers.push(LedgerCheck {
                key: LedgerKey {
                    id: b.id,
                    kind: LedgerKind::Budget,
                    period_start_ms: ms(start),
                },
                limit: b.amount_micros,
                amount: cost,
                period_start: start,
                period_end: b.period.end(demand.now),
                budget: Some(b.clone()),
                currency: Some(b.currency),
                throttle,
            });
        }
    }
    if let Some(p) = &policy.plan {
        let month = aihub_core::governance::Period::Monthly;
        let start = month.start(demand.now);
        let quota = |kind, limit, amount, currency| LedgerCheck {
            key: LedgerKey {
                id: org,
                kind,
                period_start_ms: ms(start),
            },
            limit,
            amount,
            period_start: start,
            period_end: month.end(demand.now),
            budget: None,
            currency,
            throttle: None,
        };
        if let Some(t) = p.monthly_tokens {
            c.ledgers.push(quota(
                LedgerKind::QuotaTokens,
                i64::try_from(t).unwrap_or(i64::MAX),
                i64::try_from(demand.tokens_max).unwrap_or(i64::MAX),
                None,
            ));
        }
        if let (Some(m), Some((cost, currency))) = (p.monthly_spend_micros, demand.cost_max)
            && currency == p.currency
        {
            c.ledgers
                .push(quota(LedgerKind::QuotaSpend, m, cost, Some(currency)));
        }
    }
    c
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Rate {
        kind: CellKind,
        per_minute: u64,
        origin: Origin,
        per_model: bool,
        /// `None`: the request alone exceeds the limit and can never pass.
        retry_after_us: Option<i64>,
    },
    Concurrency {
        limit: u64,
        origin: Origin,
        per_model: bool,
    },
    /// A budget or quota that cannot cover the request: index into [`Checks::ledgers`], and
    /// the ledger's spend at that moment.
    Ledger { index: usize, spent: i64 },
}

/// A rate decision turned into header figures.
pub(crate) fn window(per_minute: u64, remaining: u64, reset_us: i64) -> super::Window {
    super::Window {
        limit: per_minute,
        remaining,
        reset_us: reset_us.clamp(0, MINUTE_US),
    }
}
